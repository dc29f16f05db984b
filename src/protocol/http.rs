//! HTTP/1.1 for HTTP-FLV, sans-IO: parses one request head (RFC 9112) with httparse, maps
//! the path to a stream, and builds response heads. No socket, no clock.

use bytes::{BufMut, Bytes, BytesMut};

use crate::protocol::url;

/// Largest request head accepted (request line and headers).
pub const MAX_HEAD: usize = 16 << 10;
/// Most headers accepted in one request.
const MAX_HEADERS: usize = 64;

/// A request head that cannot be served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    /// Not a valid HTTP/1.x request head.
    #[error("malformed request: {0}")]
    Malformed(String),
    /// The head is larger than [`MAX_HEAD`].
    #[error("request head larger than {MAX_HEAD} bytes")]
    TooLarge,
}

/// The parts of a request head HTTP-FLV needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The method, e.g. `GET`.
    pub method: String,
    /// The request target as sent: path and query.
    pub target: String,
    /// The `Host` header, if any.
    pub host: Option<String>,
    /// The `Origin` header, if any (browsers).
    pub origin: Option<String>,
}

/// Parses a request head from the start of `buf`. `Ok(None)` until the head is complete;
/// then the request and the number of bytes it took.
pub fn parse_request(buf: &[u8]) -> Result<Option<(Request, usize)>, HttpError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => {
            let header = |name: &str| {
                req.headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case(name))
                    .and_then(|h| std::str::from_utf8(h.value).ok())
                    .map(|v| v.trim().to_owned())
            };
            let request = Request {
                method: req.method.unwrap_or_default().to_owned(),
                target: req.path.unwrap_or_default().to_owned(),
                host: header("host"),
                origin: header("origin"),
            };
            Ok(Some((request, len)))
        }
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => Err(HttpError::TooLarge),
        Ok(httparse::Status::Partial) => Ok(None),
        Err(e) => Err(HttpError::Malformed(e.to_string())),
    }
}

/// The stream an HTTP-FLV path names: `/{app}/{name}.flv`, with the query split off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlvPath {
    /// Application: every path segment before the last, joined with `/`.
    pub app: String,
    /// Stream name: the last segment without `.flv`.
    pub name: String,
    /// The query string, without `?`.
    pub query: String,
}

/// Maps a request target to a stream; `None` for anything but `/{app}/{name}.flv[?query]`.
/// Segments are percent-decoded.
pub fn flv_path(target: &str) -> Option<FlvPath> {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let path = path.strip_prefix('/')?;
    let (app, file) = path.rsplit_once('/')?;
    let name = file.strip_suffix(".flv")?;
    let (app, name) = stream_of(app, name)?;
    Some(FlvPath {
        app,
        name,
        query: query.to_owned(),
    })
}

/// The app (one or more path segments) and name (one segment) of a stream's URL path,
/// decoded; `None` for an empty, `.` or `..` segment or a bad escape.
fn stream_of(app: &str, name: &str) -> Option<(String, String)> {
    let app = percent_decode(app)?;
    let name = percent_decode(name)?;
    let bad = |s: &str| {
        s.is_empty()
            || s.split('/')
                .any(|seg| seg.is_empty() || seg == "." || seg == "..")
    };
    if bad(&app) || name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return None;
    }
    Some((app, name))
}

/// A request target of an HLS player: `/{app}/{name}/{file}[?query]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HlsPath {
    /// The stream's app (may hold `/`).
    pub app: String,
    /// The stream's name.
    pub name: String,
    /// The resource, as sent (not decoded): `index.m3u8`, `media.m3u8`, `seg3.m4s`, ...
    pub file: String,
    /// The raw query, without `?`.
    pub query: String,
}

/// The parts of an HLS request target; `None` when it is not `/{app}/{name}/{file}`.
pub fn hls_path(target: &str) -> Option<HlsPath> {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let path = path.strip_prefix('/')?;
    let (stream, file) = path.rsplit_once('/')?;
    let (app, name) = stream.rsplit_once('/')?;
    if file.is_empty() {
        return None;
    }
    let (app, name) = stream_of(app, name)?;
    Some(HlsPath {
        app,
        name,
        file: file.to_owned(),
        query: query.to_owned(),
    })
}

/// A path segment decoded; `None` for a stray `%`, invalid UTF-8 or a control character.
fn percent_decode(s: &str) -> Option<String> {
    if !url::escapes_complete(s) {
        return None;
    }
    let decoded = url::percent_decode(s)?.into_owned();
    (!decoded.chars().any(char::is_control)).then_some(decoded)
}

/// CORS headers that let a page on any origin play the stream.
pub const CORS: &[(&str, &str)] = &[
    ("Access-Control-Allow-Origin", "*"),
    ("Access-Control-Allow-Methods", "GET, HEAD, OPTIONS"),
    ("Access-Control-Allow-Headers", "*"),
    ("Access-Control-Max-Age", "86400"),
];

/// A response head with `Connection: close`, the CORS headers and `extra`.
pub fn response_head(status: u16, extra: &[(&str, &str)]) -> Bytes {
    let reason = match status {
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        503 => "Service Unavailable",
        _ => "Error",
    };
    let mut out = BytesMut::with_capacity(256);
    out.put_slice(format!("HTTP/1.1 {status} {reason}\r\n").as_bytes());
    for (k, v) in CORS.iter().chain(extra) {
        out.put_slice(k.as_bytes());
        out.put_slice(b": ");
        out.put_slice(v.as_bytes());
        out.put_slice(b"\r\n");
    }
    out.put_slice(b"Connection: close\r\n\r\n");
    out.freeze()
}

/// A complete error response with a short text body.
pub fn error_response(status: u16, message: &str) -> Bytes {
    let length = (message.len() + 1).to_string();
    let head = response_head(
        status,
        &[
            ("Content-Type", "text/plain; charset=utf-8"),
            ("Content-Length", &length),
        ],
    );
    let mut out = BytesMut::from(&head[..]);
    out.put_slice(message.as_bytes());
    out.put_u8(b'\n');
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_request_split_anywhere() {
        let wire = b"GET /live/cam1.flv?token=abc HTTP/1.1\r\nHost: example.com:8080\r\nOrigin: http://page\r\n\r\nextra";
        for split in 0..wire.len() - 5 {
            assert_eq!(parse_request(&wire[..split]), Ok(None), "split {split}");
        }
        let (req, len) = parse_request(wire).expect("valid").expect("complete");
        assert_eq!(len, wire.len() - 5);
        assert_eq!(req.method, "GET");
        assert_eq!(req.target, "/live/cam1.flv?token=abc");
        assert_eq!(req.host.as_deref(), Some("example.com:8080"));
        assert_eq!(req.origin.as_deref(), Some("http://page"));
    }

    #[test]
    fn rejects_garbage_and_oversized_heads() {
        assert!(matches!(
            parse_request(b"\x16\x03\x01\x02\x00\x01\x00\r\n\r\n"),
            Err(HttpError::Malformed(_))
        ));
        let mut big = b"GET / HTTP/1.1\r\nX: ".to_vec();
        big.extend(std::iter::repeat_n(b'a', MAX_HEAD));
        assert_eq!(parse_request(&big), Err(HttpError::TooLarge));
    }

    #[test]
    fn hls_paths() {
        assert_eq!(
            hls_path("/live/cam1/index.m3u8?token=abc"),
            Some(HlsPath {
                app: "live".into(),
                name: "cam1".into(),
                file: "index.m3u8".into(),
                query: "token=abc".into()
            })
        );
        let deep = hls_path("/a/b/c%20d/seg3.m4s").expect("an app of two segments");
        assert_eq!((deep.app.as_str(), deep.name.as_str()), ("a/b", "c d"));
        for bad in [
            "/cam1/index.m3u8",
            "/live/cam1/",
            "live/cam1/index.m3u8",
            "/live/../index.m3u8",
            "//cam1/index.m3u8",
            "/live/%zz/index.m3u8",
        ] {
            assert_eq!(hls_path(bad), None, "{bad}");
        }
    }

    #[test]
    fn flv_paths() {
        assert_eq!(
            flv_path("/live/cam1.flv?token=abc"),
            Some(FlvPath {
                app: "live".into(),
                name: "cam1".into(),
                query: "token=abc".into()
            })
        );
        assert_eq!(
            flv_path("/a/b/cam%201.flv").map(|p| (p.app, p.name)),
            Some(("a/b".into(), "cam 1".into()))
        );
        for bad in [
            "/cam1.flv",
            "/live/cam1",
            "/live/.flv",
            "live/cam1.flv",
            "//cam1.flv",
            "/../x/cam1.flv",
            "/live/cam%2.flv",
            "/live/cam%0a.flv",
            "/live/a%2Fb.flv",
        ] {
            assert_eq!(flv_path(bad), None, "{bad}");
        }
    }

    #[test]
    fn responses_close_and_allow_any_origin() {
        let head = response_head(200, &[("Content-Type", "video/x-flv")]);
        let text = std::str::from_utf8(&head).expect("ascii");
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(text.contains("Access-Control-Allow-Origin: *\r\n"));
        assert!(text.contains("Content-Type: video/x-flv\r\n"));
        assert!(text.ends_with("Connection: close\r\n\r\n"));
        let err = error_response(403, "forbidden");
        assert!(err.starts_with(b"HTTP/1.1 403 Forbidden\r\n"));
        assert!(err.ends_with(b"\r\n\r\nforbidden\n"));
    }
}
