//! The server's log output: `tracing` events on stderr, as text lines with every control
//! character escaped, or (`<log_format>json</log_format>`) as one JSON object per line
//! ([`JsonLines`]).
//!
//! Stream names, URLs, user agents and other client text reach log fields as the client sent
//! them. Escaping them where each is logged would have to be remembered at every call site;
//! instead the writer escapes each formatted event as a whole, so one line is always one event
//! and no client can forge a line, hide one (`\r`) or send the operator's terminal an escape
//! sequence. Colours are off for the same reason: their escape sequences would be escaped too.
//! JSON lines get the same guarantee from JSON's own escapes ([`escape_json_line`]).
//! This module must not know what is logged.

use std::fmt::Write as _;
use std::io::{self, Write};

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields, MakeWriter};
use tracing_subscriber::registry::LookupSpan;

use std::sync::OnceLock;

use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, LogLevel};

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

/// `line` (one serialized JSON value) with the characters JSON lets through raw but a
/// terminal or a line-oriented viewer may act on written as `\uNNNN` escapes: DEL, the C1
/// controls and the Unicode line and paragraph separators. They can only stand inside JSON
/// strings, where the escape means the same character, so the line stays the same JSON.
/// (serde_json already escapes every other control character.)
pub fn escape_json_line(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    for c in line.chars() {
        match c {
            '\u{7f}' | '\u{80}'..='\u{9f}' | '\u{2028}' | '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            _ => out.push(c),
        }
    }
    out
}

/// An event's fields as JSON values: numbers and booleans as themselves, the rest as text.
struct JsonVisitor<'a>(&'a mut Map<String, Value>);

impl Visit for JsonVisitor<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        let value = serde_json::Number::from_f64(value).map_or(Value::Null, Value::Number);
        self.0.insert(field.name().to_owned(), value);
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_owned(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_owned(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_owned(), value.into());
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().to_owned(), format!("{value:?}").into());
    }
}

/// The JSON event format: one object per line,
/// `{"timestamp", "level", "target", "fields": {"message", ...}, "span": {...}, "spans": [...]}`.
/// `span` holds the fields of every span the event is in (an inner span's field wins), so a
/// session's `clientid`, `protocol`, `peer`, `app` and `name` are keys of it; `spans` names
/// those spans from the outermost.
///
/// tracing-subscriber's own JSON format is not used as it is: it writes a span's name under
/// the key `name` in the same object as the span's fields, so the session span's `name` field
/// (the stream name) would be a duplicate key that parsers resolve to the span's name.
#[derive(Debug, Default)]
pub struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let meta = event.metadata();
        let mut timestamp = String::new();
        SystemTime.format_time(&mut Writer::new(&mut timestamp))?;
        let mut fields = Map::new();
        event.record(&mut JsonVisitor(&mut fields));
        let mut span_fields = Map::new();
        let mut span_names = Vec::new();
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                span_names.push(Value::from(span.name()));
                let extensions = span.extensions();
                let recorded = extensions
                    .get::<FormattedFields<N>>()
                    .and_then(|f| serde_json::from_str::<Map<String, Value>>(&f.fields).ok());
                span_fields.extend(recorded.unwrap_or_default());
            }
        }
        let mut line = Map::new();
        line.insert("timestamp".into(), timestamp.into());
        line.insert("level".into(), meta.level().as_str().into());
        line.insert("target".into(), meta.target().into());
        line.insert("fields".into(), fields.into());
        if !span_names.is_empty() {
            line.insert("span".into(), span_fields.into());
            line.insert("spans".into(), span_names.into());
        }
        let json = serde_json::to_string(&line).map_err(|_| std::fmt::Error)?;
        writeln!(writer, "{}", escape_json_line(&json))
    }
}

/// The filter of `<log_level>`. srt-protocol's listener warns "failure - DelegatePacket"
/// whenever the SRT loop tells it a connection has ended (that is how it is told to drop one),
/// so at every normal close; only its errors are worth the operator's attention.
pub fn filter_for(level: LogLevel) -> String {
    format!("{},srt_protocol::listener=error", level.as_str())
}

/// Puts a new filter in force, from a reload.
type SetFilter = Box<dyn Fn(EnvFilter) -> Result<(), String> + Send + Sync>;

/// How the filter set by [`init`] is replaced; None when `RUST_LOG` set it (the environment
/// wins over the config file, at start and at every reload alike).
static SET_FILTER: OnceLock<Option<SetFilter>> = OnceLock::new();

/// Sets the process's log output: `<log_level>`'s filter ([`filter_for`]) unless `RUST_LOG`
/// says otherwise, to stderr, as text or JSON lines. The filter can be replaced later
/// ([`set_level`]).
pub fn init(level: LogLevel, format: LogFormat) {
    let from_env = EnvFilter::try_from_default_env().ok();
    let set_by_env = from_env.is_some();
    let filter = from_env.unwrap_or_else(|| EnvFilter::new(filter_for(level)));
    let set: SetFilter = match format {
        LogFormat::Text => {
            let builder = tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_writer(Escaping(io::stderr))
                .with_ansi(false)
                .with_filter_reloading();
            let handle = builder.reload_handle();
            builder.init();
            Box::new(move |filter| handle.reload(filter).map_err(|e| e.to_string()))
        }
        LogFormat::Json => {
            let builder = tracing_subscriber::fmt()
                .with_env_filter(filter)
                .fmt_fields(JsonFields::new())
                .event_format(JsonLines)
                .with_writer(io::stderr)
                .with_filter_reloading();
            let handle = builder.reload_handle();
            builder.init();
            Box::new(move |filter| handle.reload(filter).map_err(|e| e.to_string()))
        }
    };
    let _ = SET_FILTER.set((!set_by_env).then_some(set));
}

/// Puts `<log_level>` `level` in force for every event from now on (a reload). Ok(false)
/// when `RUST_LOG` decides the filter, or logging was not set up by [`init`] (tests that run
/// the server in their own process).
pub fn set_level(level: LogLevel) -> Result<bool, String> {
    match SET_FILTER.get() {
        Some(Some(set)) => set(EnvFilter::new(filter_for(level))).map(|()| true),
        _ => Ok(false),
    }
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
    fn json_lines_escape_what_json_lets_through() {
        let line = serde_json::to_string(&serde_json::json!({
            "m": "a\u{7f}b\u{85}c\u{2028}d\re\u{1b}f\u{e9}"
        }))
        .expect("json");
        let escaped = escape_json_line(&line);
        assert_eq!(
            escaped,
            "{\"m\":\"a\\u007fb\\u0085c\\u2028d\\re\\u001bf\u{e9}\"}"
        );
        let back: serde_json::Value = serde_json::from_str(&escaped).expect("still JSON");
        assert_eq!(back["m"], "a\u{7f}b\u{85}c\u{2028}d\re\u{1b}f\u{e9}");
    }

    #[test]
    fn json_lines_carry_the_span_fields() {
        use std::sync::{Arc, Mutex};
        use tracing_subscriber::fmt::format::JsonFields;

        #[derive(Clone, Default)]
        struct Buffer(Arc<Mutex<Vec<u8>>>);
        impl Write for Buffer {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                self.0.lock().expect("lock").extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let buffer = Buffer::default();
        let sink = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .fmt_fields(JsonFields::new())
            .event_format(JsonLines)
            .with_writer(move || sink.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!(
                "session",
                clientid = 7u64,
                protocol = "rtmp",
                app = tracing::field::Empty,
                name = tracing::field::Empty
            );
            span.record("app", "live");
            span.record("name", "cam\n1");
            let _in = span.enter();
            tracing::info!(bytes = 5u64, "played \u{1b}[2J");
        });
        let out = String::from_utf8(buffer.0.lock().expect("lock").clone()).expect("utf8");
        assert_eq!(out.lines().count(), 1, "{out}");
        let line: serde_json::Value = serde_json::from_str(&out).expect("one JSON object");
        assert_eq!(line["level"], "INFO");
        assert_eq!(line["fields"]["message"], "played \u{1b}[2J");
        assert_eq!(line["fields"]["bytes"], 5);
        assert_eq!(line["span"]["clientid"], 7);
        assert_eq!(line["span"]["protocol"], "rtmp");
        assert_eq!(line["span"]["app"], "live");
        assert_eq!(line["span"]["name"], "cam\n1");
        assert_eq!(line["spans"], serde_json::json!(["session"]));
    }

    #[test]
    fn the_writer_escapes_each_event_whole() {
        let mut out = Vec::new();
        let mut w = EscapingWriter(&mut out);
        w.write_all(b"one\r\ntwo\n").expect("write");
        assert_eq!(out, b"one\\r\\ntwo\n");
    }
}
