//! Assertions on the fields of hook callbacks, shared by every protocol's tests.

use crate::config::TEST_NODE;
use crate::hooks::{Record, FORM};

/// The seed's fields of every callback, in its order: they come first, then `node`, then
/// (in `on_done`) [`USAGE_FIELDS`].
pub const SEED_FIELDS: [&str; 8] = [
    "protocol", "call", "addr", "app", "url", "name", "tcurl", "clientid",
];

/// The usage fields of `on_done`, in their order after `node`.
pub const USAGE_FIELDS: [&str; 5] = ["start", "duration_ms", "bytes_in", "bytes_out", "reason"];

/// The usage fields of `on_update`, in their order after `node`.
pub const RUNNING_FIELDS: [&str; 4] = ["start", "duration_ms", "bytes_in", "bytes_out"];

/// The reasons `on_done` may give.
pub const REASONS: [&str; 9] = [
    "closed",
    "lost",
    "kicked",
    "stream_ended",
    "stalled",
    "idle",
    "refused",
    "shutdown",
    "server_restart",
];

/// Asserts the order of the fields: the seed's eight first, in its order, then `node` (the
/// test server's [`TEST_NODE`]), then for `on_done` the usage fields, and nothing else.
pub fn assert_field_order(r: &Record) {
    let keys: Vec<&str> = r.pairs.iter().map(|(k, _)| k.as_str()).collect();
    let mut expected: Vec<&str> = SEED_FIELDS.to_vec();
    expected.push("node");
    match r.call() {
        "done" => expected.extend(USAGE_FIELDS),
        "update" => expected.extend(RUNNING_FIELDS),
        _ => {}
    }
    // A GET hook may carry the operator's own query before the fields.
    let ours = &keys[keys.len().saturating_sub(expected.len())..];
    assert_eq!(ours, expected.as_slice(), "field order of {r:?}");
    assert_eq!(r.field("node"), TEST_NODE, "node of {r:?}");
    if r.call() == "done" || r.call() == "update" {
        for k in RUNNING_FIELDS {
            let v = r.field(k);
            assert!(
                !v.is_empty() && v.chars().all(|c| c.is_ascii_digit()),
                "{k} must be a number: {r:?}"
            );
        }
    }
    if r.call() == "done" {
        assert!(REASONS.contains(&r.field("reason")), "reason of {r:?}");
    }
}

/// The numeric field `k` of `r`.
pub fn number(r: &Record, k: &str) -> u64 {
    r.field(k)
        .parse()
        .unwrap_or_else(|e| panic!("{k} of {r:?} is not a number: {e}"))
}

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
    assert_field_order(r);
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
    assert_field_order(done);
}

/// Whether `r` is the `on_done` of client `clientid`.
pub fn is_done_of(r: &Record, clientid: &str) -> bool {
    r.call() == "done" && r.clientid() == clientid
}

/// The `on_done` of client `clientid`, waited for (15 s); panics with every record and
/// `context()` (the server's log, say) when it does not come.
pub fn done_of(
    hook: &crate::hooks::HookServer,
    clientid: &str,
    context: impl FnOnce() -> String,
) -> Record {
    hook.wait_for(
        |r| is_done_of(r, clientid),
        std::time::Duration::from_secs(15),
    )
    .unwrap_or_else(|| panic!("no on_done of {clientid}: {}\n{}", hook.dump(), context()))
}
