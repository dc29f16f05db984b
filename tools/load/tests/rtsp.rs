//! Functional test of the load tool's RTSP players (`streamgate-load --url rtsp://...`): the
//! real server (in process) with RTSP enabled, a real ffmpeg publisher (H.264 and AAC over RTMP), and the
//! built tool playing it over RTSP with TCP-interleaved RTP. The assertions are on what the
//! tool counts (players, errors, media, frames, keyframes), never on how fast anything was:
//! timing belongs to the benchmark.

use streamgate_testkit::load::*;
use streamgate_testkit::*;

#[test]
fn counts_what_a_live_stream_sends_to_rtsp_players() {
    let srv = InProcess::start(&Config::new().rtsp());
    let _publisher = publish(&srv.url("live/x"), 40);
    wait_live(&srv.url("live/x"));

    let plain = srv.rtsp_url("live/x");
    // A query stays on the URL: the track URLs are built from the server's Content-Base.
    let query = srv.rtsp_url("live/x?sig=1");
    let cases: [(&str, usize, &[&str]); 3] = [
        (&plain, 3, &["--duration", "2"]),
        (&query, 2, &["--duration", "1.5"]),
        (&plain, 3, &["--ramp", "20", "--duration", "1"]),
    ];
    for (url, n, extra) in cases {
        let (out, json) = load(url, n, extra);
        assert_clean(url, n, &out, &json);
        assert!(out.stdout.contains("\"protocol\":\"rtsp\""), "{json}");
    }
}

#[test]
fn counts_refused_rtsp_players_as_errors() {
    let srv = InProcess::start(&Config::new().rtsp());

    // No publisher: DESCRIBE is answered 404.
    let (out, json) = load(&srv.rtsp_url("live/absent"), 2, &["--duration", "1"]);
    assert!(out.failed(), "errors make the tool exit non-zero: {out:?}");
    assert_eq!(num(&json, "connected"), 2.0, "{json}");
    assert_eq!(num(&json, "playing"), 0.0, "{json}");
    assert_eq!(num(&json, "errors"), 2.0, "{json}");
    assert_eq!(num(&json, "media_bytes"), 0.0, "{json}");
    assert!(out.stdout.contains("\"protocol\":\"rtsp\""), "{json}");
    for p in per_player(&json) {
        assert_eq!(raw(&p, "error"), "\"RTSP 404\"", "player {p}");
    }

    // Nobody listening: not connected, one error each.
    let url = format!("rtsp://127.0.0.1:{}/live/x", free_port());
    let (out, json) = load(&url, 2, &["--duration", "1"]);
    assert!(out.failed(), "{out:?}");
    assert_eq!(num(&json, "connected"), 0.0, "{json}");
    assert_eq!(num(&json, "errors"), 2.0, "{json}");
}
