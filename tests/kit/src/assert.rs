//! Assertions on the fields of hook callbacks, shared by every protocol's tests.

use crate::hooks::{Record, FORM};

/// An SRT client's `url` hook field, read by a WHATWG URL parser (the one of browsers and
/// Node's `new URL`): no fragment, its `streamid` pair the streamid that was sent, and its
/// `token` pair `token`.
pub fn assert_srt_url_parses(url: &str, streamid: &str, token: Option<&str>) {
    let parsed = url::Url::parse(url).unwrap_or_else(|e| panic!("{url} does not parse: {e}"));
    assert_eq!(parsed.fragment(), None, "{url} has no fragment");
    let pair = |key: &str| {
        parsed
            .query_pairs()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.into_owned())
    };
    assert_eq!(pair("streamid").as_deref(), Some(streamid), "{url}");
    assert_eq!(pair("token").as_deref(), token, "{url}");
}

/// Asserts the fields every callback of a `protocol` client carries, exactly: `call`, the
/// loopback `addr`, app `live`, `name`, `url`, `tcurl` (empty for every protocol but RTMP)
/// and a clientid that is a non-empty number.
pub fn assert_fields(r: &Record, protocol: &str, call: &str, name: &str, url: &str, tcurl: &str) {
    assert_eq!(r.field("protocol"), protocol, "protocol of {r:?}");
    assert_eq!(r.field("call"), call, "call of {r:?}");
    assert_eq!(r.field("addr"), "127.0.0.1", "addr of {r:?}");
    assert_eq!(r.field("app"), "live", "app of {r:?}");
    assert_eq!(r.field("name"), name, "name of {r:?}");
    assert_eq!(r.field("url"), url, "url of {r:?}");
    assert_eq!(r.field("tcurl"), tcurl, "tcurl of {r:?}");
    let id = r.field("clientid");
    assert!(
        !id.is_empty() && id.chars().all(|c| c.is_ascii_digit()),
        "clientid must be a non-empty number: {r:?}"
    );
}

/// Asserts a POST callback to `path` with the form content type.
pub fn assert_post(r: &Record, path: &str) {
    assert_eq!(r.method, "POST", "method of {r:?}");
    assert_eq!(r.path, path, "path of {r:?}");
    let ctype = r.content_type.clone().unwrap_or_default();
    assert_eq!(
        ctype.split(';').next().unwrap_or("").trim(),
        FORM,
        "content type of {r:?}"
    );
}

/// The `done` record must repeat the fields of its play/publish call.
pub fn assert_done_matches(done: &Record, call: &Record) {
    for k in [
        "protocol", "addr", "app", "name", "url", "tcurl", "clientid",
    ] {
        assert_eq!(
            done.field(k),
            call.field(k),
            "field {k} of done {done:?} must equal that of {call:?}"
        );
    }
    assert_eq!(done.field("call"), "done", "{done:?}");
}

/// Whether `r` is the `on_done` of client `clientid`.
pub fn is_done_of(r: &Record, clientid: &str) -> bool {
    r.call() == "done" && r.clientid() == clientid
}
