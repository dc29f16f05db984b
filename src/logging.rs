//! The server's log output: `tracing` events as text lines on stderr, with every control
//! character escaped.
//!
//! Stream names, URLs, user agents and other client text reach log fields as the client sent
//! them. Escaping them where each is logged would have to be remembered at every call site;
//! instead the writer escapes each formatted event as a whole, so one line is always one event
//! and no client can forge a line, hide one (`\r`) or send the operator's terminal an escape
//! sequence. Colours are off for the same reason: their escape sequences would be escaped too.
//! This module must not know what is logged.

use std::io::{self, Write};

use tracing_subscriber::fmt::MakeWriter;

/// `event` with its control characters written as escapes: `\n` (except the one that ends
/// the event), `\r`, `\0`, `\xNN` for the other C0 controls and DEL, `\u{NNNN}` for the C1
/// controls and the Unicode line and paragraph separators. Tabs and everything else pass.
pub fn escape_event(event: &[u8]) -> Vec<u8> {
    let (body, end) = match event.split_last() {
        Some((b'\n', body)) => (body, &b"\n"[..]),
        _ => (event, &b""[..]),
    };
    let mut out = Vec::with_capacity(event.len() + 8);
    let mut i = 0;
    while i < body.len() {
        let b = body[i];
        match b {
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            0 => out.extend_from_slice(b"\\0"),
            b'\t' => out.push(b),
            0x00..=0x1f | 0x7f => out.extend_from_slice(format!("\\x{b:02x}").as_bytes()),
            // U+0080..U+009F (C1 controls) in UTF-8.
            0xc2 if matches!(body.get(i + 1), Some(0x80..=0x9f)) => {
                out.extend_from_slice(format!("\\u{{{:04x}}}", body[i + 1]).as_bytes());
                i += 1;
            }
            // U+2028 LINE SEPARATOR and U+2029 PARAGRAPH SEPARATOR, which some viewers break on.
            0xe2 if body.get(i + 1) == Some(&0x80)
                && matches!(body.get(i + 2), Some(0xa8 | 0xa9)) =>
            {
                out.extend_from_slice(format!("\\u{{20{:02x}}}", body[i + 2] - 0x80).as_bytes());
                i += 2;
            }
            _ => out.push(b),
        }
        i += 1;
    }
    out.extend_from_slice(end);
    out
}

/// Makes [`EscapingWriter`]s over another writer maker.
pub struct Escaping<M>(pub M);

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for Escaping<M> {
    type Writer = EscapingWriter<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        EscapingWriter(self.0.make_writer())
    }
}

/// Writes each buffer it is given through [`escape_event`]. The formatter hands it one whole
/// event per `write`, ending with its newline.
pub struct EscapingWriter<W>(W);

impl<W: Write> Write for EscapingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write_all(&escape_event(buf))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

/// Sets the process's log output: `default_filter` unless `RUST_LOG` says otherwise, to
/// stderr through [`Escaping`].
pub fn init(default_filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(Escaping(io::stderr))
        .with_ansi(false)
        .init();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn esc(s: &str) -> String {
        String::from_utf8(escape_event(s.as_bytes())).expect("escaping keeps UTF-8")
    }

    #[test]
    fn a_forged_line_stays_inside_its_event() {
        assert_eq!(
            esc("INFO play name=a\r\nERROR forged\n"),
            "INFO play name=a\\r\\nERROR forged\n"
        );
    }

    #[test]
    fn controls_are_escaped_and_text_passes() {
        assert_eq!(esc("a\0b\x1b[2Jc\x7f\td\n"), "a\\0b\\x1b[2Jc\\x7f\td\n");
        assert_eq!(esc("ü 名前 ok\n"), "ü 名前 ok\n");
        assert_eq!(
            esc("x\u{85}y\u{2028}z\u{2029}\n"),
            "x\\u{0085}y\\u{2028}z\\u{2029}\n"
        );
        // U+2020 and U+00A0 share a lead byte with the escaped ones and pass.
        assert_eq!(esc("\u{2020}\u{a0}\n"), "\u{2020}\u{a0}\n");
    }

    #[test]
    fn only_the_final_newline_is_kept() {
        assert_eq!(esc("a\n\n"), "a\\n\n");
        assert_eq!(esc("no newline"), "no newline");
        assert_eq!(esc(""), "");
    }

    #[test]
    fn the_writer_escapes_each_event_whole() {
        let mut out = Vec::new();
        let mut w = EscapingWriter(&mut out);
        w.write_all(b"one\r\ntwo\n").expect("write");
        assert_eq!(out, b"one\\r\\ntwo\n");
    }
}
