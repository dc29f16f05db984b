//! The SRT `streamid` a caller sends in its handshake, read into what it asks for: publish or
//! play, which stream, and the extra keys the HTTP hooks report.
//!
//! Accepted forms:
//! - the SRT access-control syntax (SRT `docs/features/access-control.md`, "General Syntax"
//!   and "Standard Keys"): `#!::r=app/name,m=publish|request,u=user,s=session,...` —
//!   comma-separated `key=value` pairs; `m` defaults to `request` (play);
//! - `publish:app/name`, `read:app/name` and `play:app/name`, optionally followed by
//!   `:user:pass` as MediaMTX writes it;
//! - plain `app/name`, which plays.
//!
//! Escaping: the access-control document defines none, and FFmpeg URL-decodes the `streamid`
//! query parameter before libsrt sends it, so a `,` inside a value cannot be told from a
//! separator. In the `#!::` form, keys and values are therefore percent-decoded after
//! splitting (`%2C` is a literal `,`, `%3D` a literal `=`, `%25` a literal `%`); a `%` not
//! followed by two hex digits stays as it is. A value may contain `=` unescaped (only the
//! first `=` of a pair separates).
//!
//! Pure string functions: no sockets, no SRT state, no hook policy (which codes to reject
//! with is the session's business).

use crate::protocol::url::{app_and_name, split_query};

/// Longest streamid SRT carries (libsrt's `SRTO_STREAMID` limit).
pub const MAX_STREAMID: usize = 512;

/// What the caller wants to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Send a stream to the server (`m=publish`, `publish:`).
    Publish,
    /// Receive a stream (`m=request`, `read:`, `play:`, plain names).
    Play,
}

/// A parsed streamid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamId {
    /// Publish or play.
    pub mode: Mode,
    /// The application: every segment of the resource's path before the last (`live/a` for
    /// `live/a/b`), as for every protocol ([`app_and_name`]).
    pub app: String,
    /// The stream name: the last segment of the resource's path, without any query.
    pub name: String,
    /// The query that followed the resource (without `?`; empty when none).
    pub query: String,
    /// `u=` (or the user of the `publish:path:user:pass` form).
    pub user: Option<String>,
    /// `s=`.
    pub session: Option<String>,
    /// Every other key in the order sent (`h`, `t`, custom keys; `pass` for the
    /// `mode:path:user:pass` form), for the hooks.
    pub extra: Vec<(String, String)>,
}

/// Why a streamid is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamIdError {
    /// No streamid, or only whitespace.
    #[error("empty streamid")]
    Empty,
    /// Longer than [`MAX_STREAMID`] bytes.
    #[error("streamid is {0} bytes, more than 512")]
    TooLong(usize),
    /// A mode other than publish or request/read/play (including `bidirectional`).
    #[error("unknown mode {0:?} (expected publish or request)")]
    UnknownMode(String),
    /// A `#!::` streamid without an `r=` key.
    #[error("streamid has no resource (r=app/name)")]
    MissingResource,
    /// A resource that is not `app/name` with both parts non-empty.
    #[error("resource {0:?} is not app/name")]
    BadResource(String),
    /// A `t=` type other than `stream` (files and auth exchanges are not media).
    #[error("unsupported connection type {0:?} (only stream)")]
    UnsupportedType(String),
    /// Anything else that cannot be read: control characters, a pair without `=`, an empty
    /// or repeated key, the nested `#!:{` syntax, invalid UTF-8 after percent-decoding.
    #[error("malformed streamid: {0}")]
    Malformed(String),
}

impl StreamId {
    /// Parses a streamid in any of the accepted forms.
    pub fn parse(s: &str) -> Result<StreamId, StreamIdError> {
        if s.len() > MAX_STREAMID {
            return Err(StreamIdError::TooLong(s.len()));
        }
        if s.trim().is_empty() {
            return Err(StreamIdError::Empty);
        }
        if s.chars().any(char::is_control) {
            return Err(StreamIdError::Malformed("control character".into()));
        }
        if let Some(list) = s.strip_prefix("#!::") {
            return parse_access_control(list);
        }
        if s.starts_with("#!") {
            return Err(StreamIdError::Malformed(
                "only the #!:: key=value syntax is supported".into(),
            ));
        }
        if let Some((prefix, rest)) = s.split_once(':').filter(|(p, _)| !p.contains('/')) {
            let mode = if prefix.eq_ignore_ascii_case("publish") {
                Mode::Publish
            } else if ["read", "play"]
                .iter()
                .any(|m| prefix.eq_ignore_ascii_case(m))
            {
                Mode::Play
            } else {
                return Err(StreamIdError::UnknownMode(prefix.to_string()));
            };
            return parse_prefixed(mode, rest);
        }
        let (app, name, query) = split_resource(s)?;
        Ok(StreamId {
            mode: Mode::Play,
            app,
            name,
            query,
            user: None,
            session: None,
            extra: Vec::new(),
        })
    }
}

/// `path[:user:pass[:query]]` after a `publish:` / `read:` / `play:` prefix.
fn parse_prefixed(mode: Mode, rest: &str) -> Result<StreamId, StreamIdError> {
    let parts: Vec<&str> = rest.split(':').collect();
    let (path, user, pass, extra_query) = match parts[..] {
        [path] => (path, None, None, ""),
        [path, user, pass] => (path, Some(user), Some(pass), ""),
        [path, user, pass, query] => (path, Some(user), Some(pass), query),
        _ => {
            return Err(StreamIdError::Malformed(
                "expected mode:app/name or mode:app/name:user:pass".into(),
            ))
        }
    };
    let (app, name, mut query) = split_resource(path)?;
    if !extra_query.is_empty() {
        if !query.is_empty() {
            query.push('&');
        }
        query.push_str(extra_query);
    }
    let mut extra = Vec::new();
    if let Some(pass) = pass {
        extra.push(("pass".to_string(), pass.to_string()));
    }
    Ok(StreamId {
        mode,
        app,
        name,
        query,
        user: user.map(str::to_string),
        session: None,
        extra,
    })
}

/// The comma-separated `key=value` list after `#!::`.
fn parse_access_control(list: &str) -> Result<StreamId, StreamIdError> {
    let mut resource = None;
    let mut mode = Mode::Play;
    let mut user = None;
    let mut session = None;
    let mut extra: Vec<(String, String)> = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    for item in list.split(',').filter(|i| !i.is_empty()) {
        let Some((k, v)) = item.split_once('=') else {
            return Err(StreamIdError::Malformed(format!(
                "{item:?} is not key=value"
            )));
        };
        let key = percent_decode(k)?;
        let value = percent_decode(v)?;
        if key.is_empty() {
            return Err(StreamIdError::Malformed(format!("empty key in {item:?}")));
        }
        if seen.contains(&key) {
            return Err(StreamIdError::Malformed(format!("key {key:?} given twice")));
        }
        seen.push(key.clone());
        match key.as_str() {
            "r" => resource = Some(value),
            "m" => {
                mode = if value.eq_ignore_ascii_case("publish") {
                    Mode::Publish
                } else if value.eq_ignore_ascii_case("request") {
                    Mode::Play
                } else {
                    return Err(StreamIdError::UnknownMode(value));
                }
            }
            "u" => user = Some(value),
            "s" => session = Some(value),
            "t" if !value.eq_ignore_ascii_case("stream") => {
                return Err(StreamIdError::UnsupportedType(value))
            }
            _ => extra.push((key, value)),
        }
    }
    let resource = resource.ok_or(StreamIdError::MissingResource)?;
    let (app, name, query) = split_resource(&resource)?;
    Ok(StreamId {
        mode,
        app,
        name,
        query,
        user,
        session,
        extra,
    })
}

/// `app/name?query` into its parts; one leading `/` is tolerated. The name is the last path
/// segment and the app everything before it, the rule of every protocol ([`app_and_name`]), so
/// `r=live/a/b` is the stream RTMP, RTSP and HTTP-FLV clients reach as `live/a/b`.
fn split_resource(resource: &str) -> Result<(String, String, String), StreamIdError> {
    let (path, query) = split_query(resource);
    match app_and_name(path) {
        Some((app, name)) => Ok((app.to_string(), name.to_string(), query.to_string())),
        None => Err(StreamIdError::BadResource(resource.to_string())),
    }
}

/// Decodes `%XX` escapes; a `%` without two hex digits after it is kept literally.
fn percent_decode(s: &str) -> Result<String, StreamIdError> {
    if !s.contains('%') {
        return Ok(s.to_string());
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    let decoded = String::from_utf8(out)
        .map_err(|_| StreamIdError::Malformed(format!("{s:?} decodes to invalid UTF-8")))?;
    if decoded.chars().any(char::is_control) {
        return Err(StreamIdError::Malformed(format!(
            "{s:?} decodes to a control character"
        )));
    }
    Ok(decoded)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(mode: Mode, app: &str, name: &str) -> StreamId {
        StreamId {
            mode,
            app: app.into(),
            name: name.into(),
            query: String::new(),
            user: None,
            session: None,
            extra: Vec::new(),
        }
    }

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn access_control_syntax() {
        assert_eq!(
            StreamId::parse("#!::r=live/cam3,m=publish"),
            Ok(id(Mode::Publish, "live", "cam3"))
        );
        assert_eq!(
            StreamId::parse("#!::r=live/cam3,m=request"),
            Ok(id(Mode::Play, "live", "cam3"))
        );
        // m defaults to request; keys in any order; case-insensitive mode values.
        assert_eq!(
            StreamId::parse("#!::r=live/cam3"),
            Ok(id(Mode::Play, "live", "cam3"))
        );
        assert_eq!(
            StreamId::parse("#!::m=PUBLISH,r=live/cam3"),
            Ok(id(Mode::Publish, "live", "cam3"))
        );
        let full = StreamId::parse(
            "#!::u=alice,r=live/cam3?token=abc&x=1,h=example.com,s=sess42,m=publish,t=stream,\
             acme_key=v=1==",
        )
        .expect("valid");
        assert_eq!(
            full,
            StreamId {
                mode: Mode::Publish,
                app: "live".into(),
                name: "cam3".into(),
                query: "token=abc&x=1".into(),
                user: Some("alice".into()),
                session: Some("sess42".into()),
                extra: pairs(&[("h", "example.com"), ("t", "stream"), ("acme_key", "v=1==")]),
            }
        );
        // A leading slash and a trailing comma are tolerated.
        assert_eq!(
            StreamId::parse("#!::r=/live/cam3,"),
            Ok(id(Mode::Play, "live", "cam3"))
        );
    }

    #[test]
    fn the_last_segment_is_the_name_as_for_every_protocol() {
        // As an RTMP, RTSP or HTTP-FLV path `live/a/b`: app `live/a`, name `b`.
        for s in [
            "#!::r=live/a/b,m=publish",
            "publish:live/a/b",
            "#!::r=/live/a/b,m=publish",
        ] {
            assert_eq!(
                StreamId::parse(s),
                Ok(id(Mode::Publish, "live/a", "b")),
                "{s}"
            );
        }
        assert_eq!(
            StreamId::parse("live/a/b/c"),
            Ok(id(Mode::Play, "live/a/b", "c"))
        );
        let s = StreamId::parse("#!::r=live/a/b?token=x/y").expect("valid");
        assert_eq!(
            (s.app.as_str(), s.name.as_str(), s.query.as_str()),
            ("live/a", "b", "token=x/y")
        );
        for bad in ["#!::r=live//b", "#!::r=live/a/", "live/a//"] {
            assert!(
                matches!(StreamId::parse(bad), Err(StreamIdError::BadResource(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn escaping() {
        let s = StreamId::parse("#!::r=live/cam%203,m=publish,token=a%2Cb%3Dc%25,u=bob%2C")
            .expect("valid");
        assert_eq!((s.app.as_str(), s.name.as_str()), ("live", "cam 3"));
        assert_eq!(s.extra, pairs(&[("token", "a,b=c%")]));
        assert_eq!(s.user.as_deref(), Some("bob,"));
        // A lone % stays literal; an escaped key works too.
        let s = StreamId::parse("#!::r=live/x,pct=100%,my%5Fkey=1").expect("valid");
        assert_eq!(s.extra, pairs(&[("pct", "100%"), ("my_key", "1")]));
        // Escapes must not smuggle in control characters or broken UTF-8.
        assert!(matches!(
            StreamId::parse("#!::r=live/x%0A"),
            Err(StreamIdError::Malformed(_))
        ));
        assert!(matches!(
            StreamId::parse("#!::r=live/x,k=%FF"),
            Err(StreamIdError::Malformed(_))
        ));
    }

    #[test]
    fn prefixed_and_plain_forms() {
        assert_eq!(
            StreamId::parse("publish:live/cam3"),
            Ok(id(Mode::Publish, "live", "cam3"))
        );
        assert_eq!(
            StreamId::parse("read:live/cam3"),
            Ok(id(Mode::Play, "live", "cam3"))
        );
        assert_eq!(
            StreamId::parse("play:live/cam3"),
            Ok(id(Mode::Play, "live", "cam3"))
        );
        assert_eq!(
            StreamId::parse("live/cam3"),
            Ok(id(Mode::Play, "live", "cam3"))
        );
        assert_eq!(
            StreamId::parse("live/cam:3"),
            Ok(id(Mode::Play, "live", "cam:3"))
        );
        let s = StreamId::parse("live/cam3?token=abc").expect("valid");
        assert_eq!((s.name.as_str(), s.query.as_str()), ("cam3", "token=abc"));
        let s = StreamId::parse("publish:live/cam3:alice:secret:token=t").expect("valid");
        assert_eq!(s.mode, Mode::Publish);
        assert_eq!(s.user.as_deref(), Some("alice"));
        assert_eq!(s.extra, pairs(&[("pass", "secret")]));
        assert_eq!(s.query, "token=t");
    }

    #[test]
    fn refusals_say_why() {
        assert_eq!(StreamId::parse(""), Err(StreamIdError::Empty));
        assert_eq!(StreamId::parse("   "), Err(StreamIdError::Empty));
        assert_eq!(
            StreamId::parse(&"a/".repeat(300)),
            Err(StreamIdError::TooLong(600))
        );
        assert_eq!(
            StreamId::parse("#!::r=live/cam3,m=bidirectional"),
            Err(StreamIdError::UnknownMode("bidirectional".into()))
        );
        assert_eq!(
            StreamId::parse("push:live/cam3"),
            Err(StreamIdError::UnknownMode("push".into()))
        );
        assert_eq!(
            StreamId::parse("#!::m=publish,u=alice"),
            Err(StreamIdError::MissingResource)
        );
        assert_eq!(StreamId::parse("#!::"), Err(StreamIdError::MissingResource));
        for bad in [
            "cam3",
            "live/",
            "/cam3",
            "#!::r=live",
            "publish:",
            "#!::r=live/?a=b",
        ] {
            assert!(
                matches!(StreamId::parse(bad), Err(StreamIdError::BadResource(_))),
                "{bad}"
            );
        }
        assert_eq!(
            StreamId::parse("#!::r=a/b,t=file"),
            Err(StreamIdError::UnsupportedType("file".into()))
        );
        for junk in [
            "#!::r=live/cam3,publish",
            "#!::=x,r=a/b",
            "#!::r=a/b,r=c/d",
            "#!:{r=a/b}",
            "#!x",
            "live/cam\n3",
            "live/cam\u{0}",
            "publish:a/b:c",
            "publish:a/b:u:p:q:extra",
        ] {
            assert!(
                matches!(StreamId::parse(junk), Err(StreamIdError::Malformed(_))),
                "{junk:?}"
            );
        }
        // Every error reads as a sentence for logs and hook denials.
        assert_eq!(
            StreamIdError::MissingResource.to_string(),
            "streamid has no resource (r=app/name)"
        );
    }
}
