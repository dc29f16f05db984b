//! `<max_connections>` of the SRT section: a caller past it is rejected at the handshake with
//! code 1503 before any hook, and the refusal is logged. The load tool is the SRT client (it
//! reports the reject code); the server runs in process, the only one of this test binary, so
//! its log is exactly its own.

use streamgate_testkit::load::*;
use streamgate_testkit::*;

#[test]
fn srt_callers_past_max_connections_are_rejected_with_1503_before_any_hook() {
    let hook = HookServer::start();
    let srv = InProcess::start(
        &Config::new()
            .srt_hooks(&hook.url("/srt"), "")
            .section_xml("srt", "<max_connections>1</max_connections>"),
    );
    let _publisher = publish(&srv.url("live/x"), 40);
    wait_live(&srv.url("live/x"));

    let url = srv.srt_url("#!::r=live/x,m=request");
    let (out, json) = load(&url, 2, &["--duration", "2"]);
    assert!(out.failed(), "one of two players is refused: {json}");
    assert_eq!(num(&json, "playing"), 1.0, "{json}");
    assert_eq!(num(&json, "errors"), 1.0, "{json}");
    let refused: Vec<String> = per_player(&json)
        .into_iter()
        .filter(|p| raw(p, "error").contains("refused"))
        .collect();
    assert_eq!(refused.len(), 1, "{json}");
    assert!(raw(&refused[0], "error").contains("1503"), "{}", refused[0]);
    // Only the admitted caller reached the business server.
    assert_eq!(hook.count(|r| r.call() == "connect"), 1, "{}", hook.dump());
    assert!(
        srv.log().contains("connection refused: limit reached"),
        "{}",
        srv.log_tail(20)
    );
}
