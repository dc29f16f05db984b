//! Stream names as clients and hook servers write them: the one percent-decoder of the server
//! (its protocols, its load tool and its tests use it through `streamgate::protocol::url`),
//! and the stream a hook's redirect names in its `Location` ([`StreamTarget`]). Pure string
//! functions; no protocol's wire format.

use std::borrow::Cow;

use percent_encoding::percent_decode_str;

use crate::media::StreamKey;

/// `%XX` escapes decoded by the `percent-encoding` crate: a `%` not followed by two hex digits
/// stays as it is. `None` when the decoded bytes are not UTF-8. What a decoded name may
/// contain (control characters, `/`) is each caller's rule, not this function's.
pub fn percent_decode(s: &str) -> Option<Cow<'_, str>> {
    percent_decode_str(s).decode_utf8().ok()
}

/// Whether every `%` in `s` starts a `%XX` escape, for callers that refuse a stray `%` instead
/// of keeping it ([`percent_decode`] keeps it).
pub fn escapes_complete(s: &str) -> bool {
    s.split('%')
        .skip(1)
        .all(|rest| rest.len() >= 2 && rest.as_bytes()[..2].iter().all(u8::is_ascii_hexdigit))
}

/// The stream a hook's redirect (`3xx` with `Location`) names for a play or publish: the
/// session goes on under it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamTarget {
    /// The app, or `None` for a bare `name`: the app the client asked for.
    pub app: Option<String>,
    /// The stream name.
    pub name: String,
}

/// Why a `Location` names no stream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LocationError {
    /// The header was empty.
    #[error("empty Location")]
    Empty,
    /// The header was not visible ASCII text.
    #[error("Location is not text")]
    NotText,
    /// An absolute URL whose scheme is not followed by `//host`.
    #[error("Location {0:?} is a URL without a host")]
    NoAuthority(String),
    /// The path has a number of segments other than `name`, `app/name` or `/app/name`.
    #[error("Location {0:?} names no `name`, `app/name` or `/app/name`")]
    Segments(String),
    /// A segment is empty, `.` or `..`, has a stray `%`, does not decode to UTF-8, or
    /// decodes to a control character or `/`.
    #[error("Location {0:?} has an invalid app or stream name")]
    BadName(String),
}

impl StreamTarget {
    /// The stream `location` names: `name` (the client's app), `app/name`, `/app/name`, or
    /// an absolute URL (`scheme://host/app/name`, or `//host/app/name`) whose path is
    /// `/app/name`. A query and a fragment are ignored. Each segment is percent-decoded as
    /// a client's URL is and must be a valid name: not empty, `.` or `..`, no stray `%`,
    /// UTF-8, no control character and no `/` once decoded.
    pub fn from_location(location: &[u8]) -> Result<StreamTarget, LocationError> {
        let text = std::str::from_utf8(location).map_err(|_| LocationError::NotText)?;
        let text = text.trim();
        if text.is_empty() {
            return Err(LocationError::Empty);
        }
        if !text.bytes().all(|b| b.is_ascii_graphic() || b == b' ') {
            return Err(LocationError::NotText);
        }
        let owned = || text.to_owned();
        let reference = text.split('#').next().unwrap_or_default();
        let reference = reference.split('?').next().unwrap_or_default();
        let (path, absolute) = match split_scheme(reference) {
            Some(rest) => (
                after_authority(rest).ok_or_else(|| LocationError::NoAuthority(owned()))?,
                true,
            ),
            None => match after_authority(reference) {
                Some(path) => (path, true),
                None => (reference, reference.starts_with('/')),
            },
        };
        let path = if absolute {
            path.strip_prefix('/').unwrap_or(path)
        } else {
            path
        };
        let segments: Vec<&str> = path.split('/').collect();
        let decode = |s: &str| decode_segment(s).ok_or_else(|| LocationError::BadName(owned()));
        match segments.as_slice() {
            [name] if !absolute => Ok(StreamTarget {
                app: None,
                name: decode(name)?,
            }),
            [app, name] => Ok(StreamTarget {
                app: Some(decode(app)?),
                name: decode(name)?,
            }),
            _ => Err(LocationError::Segments(owned())),
        }
    }

    /// The stream's key, a bare name in `app` (the app the client asked for).
    pub fn key(&self, app: &str) -> StreamKey {
        StreamKey::new(self.app.as_deref().unwrap_or(app), self.name.as_str())
    }
}

/// What follows `scheme:` when `s` starts with a URI scheme (RFC 3986 §3.1: a letter, then
/// letters, digits, `+`, `-` or `.`).
fn split_scheme(s: &str) -> Option<&str> {
    let (scheme, rest) = s.split_once(':')?;
    let mut chars = scheme.chars();
    let first = chars.next()?;
    (first.is_ascii_alphabetic()
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
    .then_some(rest)
}

/// The path after `//host[:port]`, when `s` starts with `//` (RFC 3986 §3.2).
fn after_authority(s: &str) -> Option<&str> {
    let rest = s.strip_prefix("//")?;
    Some(rest.find('/').map_or("", |i| &rest[i..]))
}

/// One path segment decoded, or `None` when it is not a valid app or stream name.
fn decode_segment(s: &str) -> Option<String> {
    if s.is_empty() || s == "." || s == ".." || !escapes_complete(s) {
        return None;
    }
    let decoded = percent_decode(s)?;
    let bad = decoded.is_empty()
        || decoded.contains('/')
        || decoded.chars().any(char::is_control)
        || decoded == "."
        || decoded == "..";
    (!bad).then(|| decoded.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(location: &str) -> Result<StreamTarget, LocationError> {
        StreamTarget::from_location(location.as_bytes())
    }

    fn named(app: Option<&str>, name: &str) -> Result<StreamTarget, LocationError> {
        Ok(StreamTarget {
            app: app.map(str::to_owned),
            name: name.to_owned(),
        })
    }

    #[test]
    fn a_name_an_app_and_name_or_a_urls_path() {
        assert_eq!(target("alice"), named(None, "alice"));
        assert_eq!(target("live/alice"), named(Some("live"), "alice"));
        assert_eq!(target("/live/alice"), named(Some("live"), "alice"));
        assert_eq!(
            target("rtmp://edge.example:1935/live/alice"),
            named(Some("live"), "alice")
        );
        assert_eq!(
            target("https://example.com/pub/alice?token=x#frag"),
            named(Some("pub"), "alice")
        );
        assert_eq!(
            target("//example.com/live/alice"),
            named(Some("live"), "alice")
        );
        assert_eq!(target(" alice "), named(None, "alice"));
    }

    #[test]
    fn query_and_fragment_are_ignored() {
        assert_eq!(target("alice?sig=1"), named(None, "alice"));
        assert_eq!(target("live/alice#x"), named(Some("live"), "alice"));
        assert_eq!(target("/live/alice?a=b#c"), named(Some("live"), "alice"));
    }

    #[test]
    fn segments_are_percent_decoded_as_client_urls() {
        assert_eq!(target("cam%201"), named(None, "cam 1"));
        assert_eq!(target("/l%69ve/%C3%A9t%C3%A9"), named(Some("live"), "été"));
        for bad in ["a%2Fb", "a%2", "100%", "%ff", "a%0Ab", "%2E%2E"] {
            assert_eq!(
                target(bad),
                Err(LocationError::BadName(bad.to_owned())),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn unusable_locations_are_refused() {
        assert_eq!(target(""), Err(LocationError::Empty));
        assert_eq!(target("   "), Err(LocationError::Empty));
        assert_eq!(
            StreamTarget::from_location(b"caf\xc3\xa9"),
            Err(LocationError::NotText)
        );
        assert_eq!(
            StreamTarget::from_location(b"\xff"),
            Err(LocationError::NotText)
        );
        for too_many in [
            "live//",
            "a/b/c",
            "/a/b/c",
            "http://h/a/b/c",
            "/alice",
            "http://h/alice",
        ] {
            assert!(
                matches!(target(too_many), Err(LocationError::Segments(_))),
                "{too_many:?}"
            );
        }
        for empty in ["/", "http://h", "http://h/", "?x=1", "#x"] {
            assert!(target(empty).is_err(), "{empty:?}");
        }
        for bad in ["live/", "/live/", "./alice", "../alice", "live/.."] {
            assert!(
                matches!(target(bad), Err(LocationError::BadName(_))),
                "{bad:?}"
            );
        }
        assert!(matches!(
            target("mailto:alice"),
            Err(LocationError::NoAuthority(_))
        ));
    }

    #[test]
    fn a_bare_name_stays_in_the_clients_app() {
        let bare = target("alice").expect("a name");
        assert_eq!(bare.key("live").to_string(), "live/alice");
        let full = target("pub/alice").expect("app/name");
        assert_eq!(full.key("live").to_string(), "pub/alice");
    }
}
