//! `<log_format>json</log_format>`: the real binary's log is one JSON object per line, and a
//! session's lines carry its span fields (clientid, protocol, peer, app, name) as the hooks
//! saw them. A bad `<log_format>` is refused with its line.

use std::time::Duration;

use serde_json::Value;
use streamgate_testkit::*;

#[test]
fn every_log_line_is_json_with_the_session_span_fields() {
    let hook = HookServer::start();
    let cfg = Config::new()
        .hooks(&hook.url("/rtmp"), "")
        .srt_hooks(&hook.url("/srt"), "")
        .log_format("json");
    let mut srv = Server::start(&cfg);
    let mut publisher = publish(&srv.url("live/jsonlog"), 30);
    let publish = hook
        .wait_call("publish", "jsonlog", HOOK_WAIT)
        .unwrap_or_else(|| panic!("no on_publish: {}\n{}", hook.dump(), publisher.stderr()));
    let (frames, err) = read_frames(&srv.url("live/jsonlog"), 1.0, Duration::from_secs(30));
    assert!(frames > 0, "the player decoded nothing: {err}");
    publisher.kill();
    hook.wait_for(|r| is_done_of(r, publish.clientid()), HOOK_WAIT)
        .unwrap_or_else(|| panic!("no on_done: {}", hook.dump()));
    srv.stop_graceful().expect("the server stops");

    let log = srv.log();
    let lines: Vec<Value> = log
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(lines.len() > 5, "{log}");
    for line in &lines {
        assert!(line["timestamp"].is_string(), "{line}");
        assert!(line["level"].is_string(), "{line}");
        assert!(line["fields"].is_object(), "{line}");
    }
    let clientid: u64 = publish.clientid().parse().expect("a number");
    let of_session: Vec<&Value> = lines
        .iter()
        .filter(|l| l["span"]["clientid"].as_u64() == Some(clientid))
        .collect();
    assert!(!of_session.is_empty(), "no line of {clientid}: {log}");
    let allowed = of_session
        .iter()
        .find(|l| l["fields"]["message"] == "allowed" && l["fields"]["call"] == "publish")
        .unwrap_or_else(|| panic!("no 'allowed' line of {clientid}: {log}"));
    let span = &allowed["span"];
    assert_eq!(span["protocol"], "rtmp", "{allowed}");
    assert_eq!(span["app"], "live", "{allowed}");
    assert_eq!(span["name"], "jsonlog", "{allowed}");
    let peer = span["peer"].as_str().unwrap_or_default();
    assert!(peer.starts_with("127.0.0.1:"), "{allowed}");
    assert_eq!(
        allowed["spans"],
        serde_json::json!(["session"]),
        "{allowed}"
    );
    // The SRT listener's line, which the kit also waits for, is JSON too.
    assert!(
        lines
            .iter()
            .any(|l| l["fields"]["message"] == "listening (UDP)"),
        "{log}"
    );
}

#[test]
fn a_bad_log_format_is_refused_with_its_line() {
    let dir = TempDir::new("logfmt");
    let xml =
        "<config>\n  <log_level>info</log_level>\n  <log_format>yaml</log_format>\n</config>\n";
    let (out, file) = check_config(&dir, "streamgate.xml", xml);
    assert_eq!(out.status.and_then(|s| s.code()), Some(2), "{out:?}");
    let want = format!("{}:3: <log_format>: \"yaml\"", file.display());
    assert!(out.stderr.contains(&want), "{want} in {out:?}");
}
