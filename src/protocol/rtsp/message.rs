//! RTSP/1.0 messages on the wire (RFC 2326), sans-IO: requests and interleaved binary frames
//! read from one byte stream, responses and interleaved frames written to bytes, and the
//! `Transport` header (RFC 2326 §12.39).
//!
//! Owns framing only: where a request or a `$` frame starts and ends, its head and body, and
//! the bounds on both ([`MAX_HEAD`], [`MAX_BODY`]). Must not decide what a request means (that
//! is the connection state machine in the parent module) and reads no socket and no clock.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Largest request head accepted (request line and headers).
pub const MAX_HEAD: usize = 16 << 10;
/// Largest request body accepted (an ANNOUNCE's SDP, a SET_PARAMETER's text).
pub const MAX_BODY: usize = 64 << 10;
/// Most header lines accepted in one request.
pub const MAX_HEADERS: usize = 64;
/// The `Server` header of every response.
pub const SERVER: &str = concat!("streamgate/", env!("CARGO_PKG_VERSION"));
/// Seconds of silence after which a session may be ended; announced in the `Session` header.
pub const SESSION_TIMEOUT_SECS: u32 = 60;

/// Input that is not RTSP/1.0 or is larger than the bounds. Each one ends the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    /// The bytes cannot start or continue an RTSP message.
    #[error("malformed RTSP message: {0}")]
    Malformed(String),
    /// A request head larger than [`MAX_HEAD`].
    #[error("request head larger than {MAX_HEAD} bytes")]
    HeadTooLarge,
    /// A `Content-Length` larger than [`MAX_BODY`].
    #[error("request body of {0} bytes is larger than {MAX_BODY}")]
    BodyTooLarge(usize),
    /// More than [`MAX_HEADERS`] header lines.
    #[error("more than {MAX_HEADERS} headers")]
    TooManyHeaders,
    /// A protocol version other than RTSP/1.x.
    #[error("unsupported protocol version {0:?}")]
    Version(String),
}

/// An RTSP method (RFC 2326 §10).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Method {
    /// `OPTIONS`
    Options,
    /// `DESCRIBE`
    Describe,
    /// `ANNOUNCE`
    Announce,
    /// `SETUP`
    Setup,
    /// `PLAY`
    Play,
    /// `PAUSE`
    Pause,
    /// `RECORD`
    Record,
    /// `TEARDOWN`
    Teardown,
    /// `GET_PARAMETER`
    GetParameter,
    /// `SET_PARAMETER`
    SetParameter,
    /// Any other token (`REDIRECT`, extensions).
    Other(String),
}

impl Method {
    fn from_token(token: &str) -> Method {
        match token {
            "OPTIONS" => Method::Options,
            "DESCRIBE" => Method::Describe,
            "ANNOUNCE" => Method::Announce,
            "SETUP" => Method::Setup,
            "PLAY" => Method::Play,
            "PAUSE" => Method::Pause,
            "RECORD" => Method::Record,
            "TEARDOWN" => Method::Teardown,
            "GET_PARAMETER" => Method::GetParameter,
            "SET_PARAMETER" => Method::SetParameter,
            other => Method::Other(other.to_owned()),
        }
    }

    /// The method token as on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            Method::Options => "OPTIONS",
            Method::Describe => "DESCRIBE",
            Method::Announce => "ANNOUNCE",
            Method::Setup => "SETUP",
            Method::Play => "PLAY",
            Method::Pause => "PAUSE",
            Method::Record => "RECORD",
            Method::Teardown => "TEARDOWN",
            Method::GetParameter => "GET_PARAMETER",
            Method::SetParameter => "SET_PARAMETER",
            Method::Other(s) => s,
        }
    }
}

/// One RTSP request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The method.
    pub method: Method,
    /// The request URL as sent (`*` for a server-wide OPTIONS).
    pub url: String,
    /// Header lines in order, names as sent, values trimmed; continuation lines joined.
    pub headers: Vec<(String, String)>,
    /// The body (`Content-Length` bytes; empty when none).
    pub body: Bytes,
}

impl Request {
    /// The first header of that name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The `CSeq` header, which every response must echo.
    pub fn cseq(&self) -> Option<&str> {
        self.header("CSeq")
    }

    /// The session id of the `Session` header, without parameters such as `;timeout=`.
    pub fn session(&self) -> Option<&str> {
        self.header("Session")
            .map(|s| s.split(';').next().unwrap_or_default().trim())
    }
}

/// One unit read from a client's byte stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// An RTSP request.
    Request(Request),
    /// An RTSP response (a client answering a server request); carries its status only.
    Response {
        /// The status code.
        status: u16,
    },
    /// A `$` frame (RFC 2326 §10.12): RTP or RTCP on an interleaved channel.
    Interleaved {
        /// The channel byte.
        channel: u8,
        /// The frame's data, sliced from the input without a copy.
        data: Bytes,
    },
}

/// Takes the next complete message off the front of `buf`. `Ok(None)` until one is complete
/// (nothing is consumed then). Empty lines between messages are skipped.
pub fn decode(buf: &mut BytesMut) -> Result<Option<Message>, MessageError> {
    // Stray line ends between messages (some clients end a body with an extra CRLF).
    let blank = buf
        .iter()
        .take_while(|b| matches!(b, b'\r' | b'\n'))
        .count();
    buf.advance(blank);
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    if first == b'$' {
        if buf.len() < 4 {
            return Ok(None);
        }
        let channel = buf[1];
        let len = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
        if buf.len() < 4 + len {
            return Ok(None);
        }
        buf.advance(4);
        let data = buf.split_to(len).freeze();
        return Ok(Some(Message::Interleaved { channel, data }));
    }
    check_start(buf)?;
    let Some((head_len, lines)) = head_lines(buf)? else {
        return Ok(None);
    };
    let head = parse_head(&lines)?;
    let body_len = match header_value(&head.headers, "Content-Length") {
        Some(v) => v
            .parse::<usize>()
            .map_err(|_| MessageError::Malformed(format!("Content-Length {v:?}")))?,
        None => 0,
    };
    if body_len > MAX_BODY {
        return Err(MessageError::BodyTooLarge(body_len));
    }
    if buf.len() < head_len + body_len {
        return Ok(None);
    }
    buf.advance(head_len);
    let body = buf.split_to(body_len).freeze();
    Ok(Some(match head.start {
        Start::Request { method, url } => Message::Request(Request {
            method,
            url,
            headers: head.headers,
            body,
        }),
        Start::Response { status } => Message::Response { status },
    }))
}

/// Refuses input that cannot be the start of an RTSP message as soon as that is certain, so a
/// TLS handshake or random bytes do not wait for [`MAX_HEAD`] bytes.
fn check_start(buf: &[u8]) -> Result<(), MessageError> {
    for (i, &b) in buf.iter().enumerate() {
        match b {
            b' ' if i > 0 => return Ok(()),
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'.' | b'/' if i < 32 => {}
            _ => {
                return Err(MessageError::Malformed(format!(
                    "byte {b:#04x} at {i} in the request line"
                )))
            }
        }
    }
    Ok(())
}

/// A complete head's length and its lines.
type HeadLines<'a> = (usize, Vec<&'a [u8]>);

/// Finds the end of the head (an empty line; lines end in CRLF or a bare LF, RFC 2326 §4) and
/// returns its length and its lines without line ends.
fn head_lines(buf: &[u8]) -> Result<Option<HeadLines<'_>>, MessageError> {
    let mut lines = Vec::new();
    let mut pos = 0;
    while let Some(nl) = buf[pos..].iter().position(|&b| b == b'\n') {
        let end = pos + nl;
        let line = &buf[pos..end];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        pos = end + 1;
        if pos > MAX_HEAD {
            return Err(MessageError::HeadTooLarge);
        }
        if line.is_empty() {
            return Ok(Some((pos, lines)));
        }
        if lines.len() > MAX_HEADERS {
            return Err(MessageError::TooManyHeaders);
        }
        lines.push(line);
    }
    if buf.len() > MAX_HEAD {
        return Err(MessageError::HeadTooLarge);
    }
    Ok(None)
}

enum Start {
    Request { method: Method, url: String },
    Response { status: u16 },
}

struct Head {
    start: Start,
    headers: Vec<(String, String)>,
}

fn text(line: &[u8]) -> Result<&str, MessageError> {
    std::str::from_utf8(line).map_err(|_| MessageError::Malformed("head is not UTF-8".into()))
}

fn check_version(version: &str) -> Result<(), MessageError> {
    match version.strip_prefix("RTSP/1.") {
        Some(minor) if !minor.is_empty() && minor.bytes().all(|b| b.is_ascii_digit()) => Ok(()),
        _ => Err(MessageError::Version(version.to_owned())),
    }
}

fn parse_head(lines: &[&[u8]]) -> Result<Head, MessageError> {
    let Some((first, rest)) = lines.split_first() else {
        return Err(MessageError::Malformed("empty head".into()));
    };
    let first = text(first)?;
    let parts: Vec<&str> = first.split(' ').filter(|p| !p.is_empty()).collect();
    let start = match parts.as_slice() {
        [version, status, ..] if version.starts_with("RTSP/") => {
            check_version(version)?;
            let status = status
                .parse::<u16>()
                .map_err(|_| MessageError::Malformed(format!("status line {first:?}")))?;
            Start::Response { status }
        }
        [method, url, version] => {
            check_version(version)?;
            Start::Request {
                method: Method::from_token(method),
                url: (*url).to_owned(),
            }
        }
        _ => return Err(MessageError::Malformed(format!("request line {first:?}"))),
    };
    let mut headers: Vec<(String, String)> = Vec::with_capacity(rest.len());
    for line in rest {
        let line = text(line)?;
        if line.starts_with([' ', '\t']) {
            // A continuation line (RFC 2326 §4.2 via RFC 2616 §2.2).
            let Some((_, value)) = headers.last_mut() else {
                return Err(MessageError::Malformed(
                    "continuation before a header".into(),
                ));
            };
            value.push(' ');
            value.push_str(line.trim());
            continue;
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(MessageError::Malformed(format!("header line {line:?}")));
        };
        let name = name.trim();
        if name.is_empty() || name.contains([' ', '\t']) {
            return Err(MessageError::Malformed(format!("header name {name:?}")));
        }
        headers.push((name.to_owned(), value.trim().to_owned()));
    }
    Ok(Head { start, headers })
}

fn header_value<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// The reason phrase of a status code (RFC 2326 §7.1.1).
pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        415 => "Unsupported Media Type",
        453 => "Not Enough Bandwidth",
        454 => "Session Not Found",
        455 => "Method Not Valid in This State",
        459 => "Aggregate Operation Not Allowed",
        461 => "Unsupported Transport",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "RTSP Version Not Supported",
        551 => "Option not supported",
        _ => "Error",
    }
}

/// A response to build: `CSeq` is echoed, `Server` always sent, `Session` carries
/// `;timeout=` ([`SESSION_TIMEOUT_SECS`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The request's `CSeq`, echoed.
    pub cseq: Option<String>,
    /// The session id, when the request belongs to a session.
    pub session: Option<String>,
    /// Further headers.
    pub headers: Vec<(String, String)>,
    /// Content type and body.
    pub body: Option<(String, Bytes)>,
}

impl Response {
    /// A response to `request` with its `CSeq`.
    pub fn to(request: &Request, status: u16) -> Response {
        Response {
            status,
            cseq: request.cseq().map(str::to_owned),
            session: None,
            headers: Vec::new(),
            body: None,
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: impl Into<String>) -> Response {
        self.headers.push((name.to_owned(), value.into()));
        self
    }

    /// Sets the session id.
    pub fn session(mut self, id: Option<&str>) -> Response {
        self.session = id.map(str::to_owned);
        self
    }

    /// Sets the body and its content type.
    pub fn body(mut self, content_type: &str, body: impl Into<Bytes>) -> Response {
        self.body = Some((content_type.to_owned(), body.into()));
        self
    }

    /// Appends the response to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        out.put_slice(format!("RTSP/1.0 {} {}\r\n", self.status, reason(self.status)).as_bytes());
        let mut line = |name: &str, value: &str| {
            out.put_slice(name.as_bytes());
            out.put_slice(b": ");
            out.put_slice(value.as_bytes());
            out.put_slice(b"\r\n");
        };
        if let Some(cseq) = &self.cseq {
            line("CSeq", cseq);
        }
        line("Server", SERVER);
        if let Some(id) = &self.session {
            line("Session", &format!("{id};timeout={SESSION_TIMEOUT_SECS}"));
        }
        for (k, v) in &self.headers {
            line(k, v);
        }
        if let Some((content_type, body)) = &self.body {
            line("Content-Type", content_type);
            line("Content-Length", &body.len().to_string());
            out.put_slice(b"\r\n");
            out.put_slice(body);
        } else {
            out.put_slice(b"\r\n");
        }
    }

    /// The response as one buffer.
    pub fn to_bytes(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(256);
        self.encode(&mut out);
        out.freeze()
    }
}

/// Appends one interleaved frame (`$`, channel, 16-bit length, data) made of `parts`.
/// `None` (and nothing written) when the parts exceed 65535 bytes.
pub fn encode_interleaved(out: &mut BytesMut, channel: u8, parts: &[&[u8]]) -> Option<()> {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    let len = u16::try_from(len).ok()?;
    out.reserve(4 + usize::from(len));
    out.put_u8(b'$');
    out.put_u8(channel);
    out.put_u16(len);
    for p in parts {
        out.put_slice(p);
    }
    Some(())
}

/// How the client asks for RTP to be carried (one entry of the `Transport` header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportSpec {
    /// `RTP/AVP/TCP;interleaved=a-b`: `$` frames on this connection. `None` when the client
    /// left the channels to the server.
    Interleaved(Option<(u8, u8)>),
    /// `RTP/AVP[/UDP];unicast;client_port=a-b`: datagrams to the client's RTP and RTCP ports.
    Udp {
        /// The client's RTP and RTCP ports.
        client_port: (u16, u16),
    },
}

/// The transport a client asked for in SETUP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientTransport {
    /// Lower transport and its addressing.
    pub spec: TransportSpec,
    /// `mode=record` (or `mode="RECORD"`): the client will send media.
    pub record: bool,
}

impl ClientTransport {
    /// The first unicast RTP transport of a `Transport` header this server can serve
    /// (entries are tried in the client's order of preference); `None` when there is none
    /// (multicast only, SRTP, a missing `client_port`, ...).
    pub fn parse(header: &str) -> Option<ClientTransport> {
        header
            .split(',')
            .find_map(|entry| Self::parse_one(entry.trim()))
    }

    fn parse_one(entry: &str) -> Option<ClientTransport> {
        let mut params = entry.split(';').map(str::trim);
        let protocol = params.next()?.to_ascii_uppercase();
        let tcp = match protocol.as_str() {
            "RTP/AVP" | "RTP/AVP/UDP" | "RTP/AVPF" | "RTP/AVPF/UDP" => false,
            "RTP/AVP/TCP" | "RTP/AVPF/TCP" => true,
            _ => return None,
        };
        let mut interleaved = None;
        let mut client_port = None;
        let mut record = false;
        for param in params {
            let (key, value) = param.split_once('=').unwrap_or((param, ""));
            let value = value.trim().trim_matches('"');
            match key.trim().to_ascii_lowercase().as_str() {
                "multicast" => return None,
                "interleaved" => interleaved = Some(pair::<u8>(value)?),
                "client_port" => client_port = Some(pair::<u16>(value)?),
                "mode" => record = value.eq_ignore_ascii_case("record"),
                _ => {}
            }
        }
        let spec = if tcp {
            TransportSpec::Interleaved(interleaved)
        } else {
            TransportSpec::Udp {
                client_port: client_port?,
            }
        };
        Some(ClientTransport { spec, record })
    }
}

/// `a-b` or a lone `a` (then `b = a + 1`, RFC 2326 §12.39).
fn pair<T: std::str::FromStr + Copy + TryFrom<u32>>(value: &str) -> Option<(T, T)>
where
    u32: From<T>,
{
    match value.split_once('-') {
        Some((a, b)) => Some((a.trim().parse().ok()?, b.trim().parse().ok()?)),
        None => {
            let a: T = value.parse().ok()?;
            let b = T::try_from(u32::from(a) + 1).ok()?;
            Some((a, b))
        }
    }
}

/// The transport the server chose, answered in SETUP's `Transport` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerTransport {
    /// `$` frames on this connection with these RTP and RTCP channels.
    Interleaved {
        /// RTP and RTCP channels.
        channels: (u8, u8),
    },
    /// UDP datagrams between these port pairs.
    Udp {
        /// The client's RTP and RTCP ports.
        client_port: (u16, u16),
        /// The server's RTP and RTCP ports.
        server_port: (u16, u16),
    },
}

impl ServerTransport {
    /// The `Transport` response header; `ssrc` is the server's SSRC for a player.
    pub fn header(&self, record: bool, ssrc: Option<u32>) -> String {
        let mut s = match self {
            ServerTransport::Interleaved { channels: (a, b) } => {
                format!("RTP/AVP/TCP;unicast;interleaved={a}-{b}")
            }
            ServerTransport::Udp {
                client_port: (c1, c2),
                server_port: (s1, s2),
            } => format!("RTP/AVP;unicast;client_port={c1}-{c2};server_port={s1}-{s2}"),
        };
        if let Some(ssrc) = ssrc {
            s.push_str(&format!(";ssrc={ssrc:08X}"));
        }
        if record {
            s.push_str(";mode=record");
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(wire: &[u8]) -> Result<Vec<Message>, MessageError> {
        let mut buf = BytesMut::from(wire);
        let mut out = Vec::new();
        while let Some(m) = decode(&mut buf)? {
            out.push(m);
        }
        assert!(buf.is_empty(), "left over: {:?}", &buf[..]);
        Ok(out)
    }

    const ANNOUNCE: &[u8] = b"ANNOUNCE rtsp://127.0.0.1:8554/live/cam2?token=abc RTSP/1.0\r\n\
Content-Type: application/sdp\r\nCSeq: 2\r\nUser-Agent: Lavf59.27.100\r\nContent-Length: 10\r\n\r\nv=0\r\ns=x\r\n";

    #[test]
    fn a_request_with_a_body() {
        let msgs = all(ANNOUNCE).expect("valid");
        let [Message::Request(req)] = msgs.as_slice() else {
            panic!("{msgs:?}")
        };
        assert_eq!(req.method, Method::Announce);
        assert_eq!(req.url, "rtsp://127.0.0.1:8554/live/cam2?token=abc");
        assert_eq!(req.cseq(), Some("2"));
        assert_eq!(req.header("content-type"), Some("application/sdp"));
        assert_eq!(&req.body[..], b"v=0\r\ns=x\r\n");
    }

    /// Requests, `$` frames between them and pipelined requests, fed split at every byte.
    #[test]
    fn split_at_every_byte_with_frames_and_pipelining() {
        let mut wire = Vec::new();
        wire.extend_from_slice(b"OPTIONS rtsp://h/a RTSP/1.0\r\nCSeq: 1\r\n\r\n");
        wire.extend_from_slice(ANNOUNCE);
        wire.extend_from_slice(b"$\x00\x00\x05hello$\x03\x00\x00");
        wire.extend_from_slice(
            b"GET_PARAMETER rtsp://h/a RTSP/1.0\nCSeq: 4\nSession: 12;timeout=60\n\n",
        );
        wire.extend_from_slice(b"RTSP/1.0 200 OK\r\nCSeq: 9\r\n\r\n");
        wire.extend_from_slice(
            b"\r\nTEARDOWN rtsp://h/a RTSP/1.0\r\nCSeq: 5\r\nX: a\r\n  b\r\n\r\n",
        );
        let expected = all(&wire).expect("valid");
        assert_eq!(expected.len(), 7);
        assert!(
            matches!(&expected[2], Message::Interleaved { channel: 0, data } if &data[..] == b"hello")
        );
        assert!(
            matches!(&expected[3], Message::Interleaved { channel: 3, data } if data.is_empty())
        );
        let Message::Request(get) = &expected[4] else {
            panic!()
        };
        assert_eq!(get.session(), Some("12"));
        assert_eq!(expected[5], Message::Response { status: 200 });
        let Message::Request(teardown) = &expected[6] else {
            panic!()
        };
        assert_eq!(teardown.header("x"), Some("a b"));
        for split in 0..=wire.len() {
            let mut buf = BytesMut::new();
            let mut got = Vec::new();
            for part in [&wire[..split], &wire[split..]] {
                buf.extend_from_slice(part);
                while let Some(m) = decode(&mut buf).expect("valid") {
                    got.push(m);
                }
            }
            assert_eq!(got, expected, "split at {split}");
        }
        // And one byte at a time.
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for b in &wire {
            buf.extend_from_slice(&[*b]);
            while let Some(m) = decode(&mut buf).expect("valid") {
                got.push(m);
            }
        }
        assert_eq!(got, expected);
    }

    #[test]
    fn garbage_and_oversized_input() {
        for garbage in [
            &b"\x16\x03\x01\x02\x00\x01\x00"[..],
            b"GET / HTTP/1.1\r\n\r\n",
            b"OPTIONS * RTSP/2.0\r\n\r\n",
            b"OPTIONS\r\n\r\n",
            b"OPTIONS * RTSP/1.0\r\nno colon\r\n\r\n",
            b"ANNOUNCE * RTSP/1.0\r\nContent-Length: x\r\n\r\n",
            b"\xff\xfe",
        ] {
            let mut buf = BytesMut::from(garbage);
            assert!(decode(&mut buf).is_err(), "{garbage:?}");
        }
        let mut big = BytesMut::from(&b"OPTIONS * RTSP/1.0\r\nX: "[..]);
        big.extend(std::iter::repeat_n(b'a', MAX_HEAD));
        assert_eq!(decode(&mut big), Err(MessageError::HeadTooLarge));
        let mut many = BytesMut::from(&b"OPTIONS * RTSP/1.0\r\n"[..]);
        for _ in 0..=MAX_HEADERS {
            many.extend_from_slice(b"X: y\r\n");
        }
        assert_eq!(decode(&mut many), Err(MessageError::TooManyHeaders));
        let mut body =
            BytesMut::from(&b"ANNOUNCE * RTSP/1.0\r\nContent-Length: 999999\r\n\r\n"[..]);
        assert_eq!(decode(&mut body), Err(MessageError::BodyTooLarge(999_999)));
        // A partial head that is still plausible waits.
        let mut partial = BytesMut::from(&b"OPTIONS rtsp://h/a RTSP/1.0\r\nCSeq: 1\r\n"[..]);
        assert_eq!(decode(&mut partial), Ok(None));
    }

    #[test]
    fn responses() {
        let req = Request {
            method: Method::Setup,
            url: "rtsp://h/a/trackID=0".into(),
            headers: vec![("CSeq".into(), "3".into())],
            body: Bytes::new(),
        };
        let wire = Response::to(&req, 200)
            .session(Some("abc"))
            .header("Transport", "RTP/AVP/TCP;unicast;interleaved=0-1")
            .to_bytes();
        assert_eq!(
            std::str::from_utf8(&wire).expect("utf8"),
            format!(
                "RTSP/1.0 200 OK\r\nCSeq: 3\r\nServer: {SERVER}\r\nSession: abc;timeout=60\r\n\
                 Transport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n\r\n"
            )
        );
        let wire = Response::to(&req, 404).body("text/plain", "x").to_bytes();
        assert!(wire.starts_with(b"RTSP/1.0 404 Not Found\r\nCSeq: 3\r\n"));
        assert!(wire.ends_with(b"Content-Type: text/plain\r\nContent-Length: 1\r\n\r\nx"));
        let mut out = BytesMut::new();
        assert_eq!(encode_interleaved(&mut out, 2, &[b"ab", b"c"]), Some(()));
        assert_eq!(&out[..], b"$\x02\x00\x03abc");
        assert_eq!(encode_interleaved(&mut out, 2, &[&[0; 65536]]), None);
        assert_eq!(out.len(), 7);
    }

    #[test]
    fn transports() {
        assert_eq!(
            ClientTransport::parse("RTP/AVP/TCP;unicast;interleaved=2-3;mode=record"),
            Some(ClientTransport {
                spec: TransportSpec::Interleaved(Some((2, 3))),
                record: true
            })
        );
        assert_eq!(
            ClientTransport::parse("RTP/AVP/UDP;unicast;client_port=24924-24925;mode=record"),
            Some(ClientTransport {
                spec: TransportSpec::Udp {
                    client_port: (24924, 24925)
                },
                record: true
            })
        );
        // Multicast first, then unicast: the unicast one is taken.
        assert_eq!(
            ClientTransport::parse("RTP/AVP;multicast,RTP/AVP;unicast;client_port=5000"),
            Some(ClientTransport {
                spec: TransportSpec::Udp {
                    client_port: (5000, 5001)
                },
                record: false
            })
        );
        assert_eq!(
            ClientTransport::parse("RTP/AVP/TCP;unicast").map(|t| t.spec),
            Some(TransportSpec::Interleaved(None))
        );
        assert_eq!(ClientTransport::parse("RTP/AVP;unicast"), None);
        assert_eq!(
            ClientTransport::parse("RTP/SAVP;unicast;client_port=1-2"),
            None
        );
        assert_eq!(
            ClientTransport::parse("RTP/AVP/TCP;interleaved=300-301"),
            None
        );
        assert_eq!(
            ServerTransport::Udp {
                client_port: (5000, 5001),
                server_port: (40000, 40001)
            }
            .header(false, Some(0xab)),
            "RTP/AVP;unicast;client_port=5000-5001;server_port=40000-40001;ssrc=000000AB"
        );
        assert_eq!(
            ServerTransport::Interleaved { channels: (0, 1) }.header(true, None),
            "RTP/AVP/TCP;unicast;interleaved=0-1;mode=record"
        );
    }
}
