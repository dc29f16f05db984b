//! Functional test of the load tool's SRT players (`streamgate-load --url srt://...`): the real
//! server (in process) with SRT enabled, a real ffmpeg publisher over RTMP, and the built tool playing the
//! stream over SRT. The assertions are on what the tool counts (players, errors, media,
//! keyframes) and on how refusals read, never on how fast anything was.

use streamgate_testkit::load::*;
use streamgate_testkit::*;

#[test]
fn counts_what_a_live_stream_sends_to_srt_players() {
    let srv = InProcess::start(&Config::new().srt());
    let _publisher = publish(&srv.url("live/x"), 40);
    wait_live(&srv.url("live/x"));

    let url = srv.srt_url("#!::r=live/x,m=request");
    let (out, json) = load(&url, 3, &["--duration", "2"]);
    assert_clean(&url, 3, &out, &json);
    assert!(out.stdout.contains("\"protocol\":\"srt\""), "{json}");

    // The streamid as URLs usually carry it, with the `#` percent-encoded.
    let url = srv.srt_url("%23!::r=live/x,m=request");
    let (out, json) = load(&url, 1, &["--duration", "1"]);
    assert_clean(&url, 1, &out, &json);
}

#[test]
fn counts_refused_and_unreachable_srt_players_as_errors() {
    let srv = InProcess::start(&Config::new().srt());

    // No such stream: the server refuses the handshake with 1404, which every player reports.
    let url = srv.srt_url("#!::r=live/absent,m=request");
    let (out, json) = load(&url, 3, &["--duration", "1"]);
    assert!(out.failed(), "errors make the tool exit non-zero: {out:?}");
    assert_eq!(num(&json, "connected"), 0.0, "{json}");
    assert_eq!(num(&json, "playing"), 0.0, "{json}");
    assert_eq!(num(&json, "errors"), 3.0, "{json}");
    assert!(out.stdout.contains("\"protocol\":\"srt\""), "{json}");
    for p in per_player(&json) {
        let error = raw(&p, "error");
        assert!(
            error.contains("refused") && error.contains("1404"),
            "player {p}"
        );
    }

    // Nobody listening on the port: not connected, one error each.
    let url = format!(
        "srt://127.0.0.1:{}?streamid=#!::r=live/x,m=request",
        free_udp_port()
    );
    let (out, json) = load(&url, 2, &["--duration", "1", "--start-timeout", "5"]);
    assert!(out.failed(), "{out:?}");
    assert_eq!(num(&json, "connected"), 0.0, "{json}");
    assert_eq!(num(&json, "errors"), 2.0, "{json}");
}

/// Against libsrt on the other side, not streamgate: ffmpeg as an SRT listener sending
/// MPEG-TS (1316 bytes per message) to the one caller it accepts.
#[test]
fn plays_from_a_libsrt_listener() {
    let port = free_udp_port();
    let listen = format!("srt://127.0.0.1:{port}?mode=listener");
    let mut cmd = publisher_command_to("ffmpeg", 20, TESTSRC, 25, &["-f", "mpegts", &listen]);
    let _listener = Proc::spawn("ffmpeg as an SRT listener", &mut cmd);

    let url = format!("srt://127.0.0.1:{port}?streamid=live/x");
    let played = poll(secs(15.0), || {
        let (out, json) = load(&url, 1, &["--duration", "2", "--start-timeout", "3"]);
        (num(&json, "playing") == 1.0).then_some((out, json))
    });
    let (out, json) = played.expect("the player never connected to ffmpeg's SRT listener");
    assert_clean(&url, 1, &out, &json);
}
