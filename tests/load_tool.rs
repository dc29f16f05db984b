//! Functional test of the load tool (`streamgate-load`): the real server, a real ffmpeg
//! publisher, and the built tool run against it with a few players over RTMP and HTTP-FLV. The
//! assertions are on what the tool counts (players, errors, media, keyframes), never on how
//! fast anything was: timing belongs to the benchmark (`tests/bench/first_frame.sh`).

mod common;

use common::load::*;
use common::*;

#[test]
fn counts_what_a_live_stream_sends_to_rtmp_and_httpflv_players() {
    let srv = Server::start(&Config::new().httpflv());
    let _publisher = publish(&srv.url("live/load"), 40);
    wait_live(&srv.url("live/load"));

    let rtmp = srv.url("live/load");
    let flv = srv.flv_url("live/load.flv");
    let cases: [(&str, usize, &[&str]); 3] = [
        (&rtmp, 4, &["--duration", "2"]),
        (&flv, 3, &["--duration", "2"]),
        (&rtmp, 3, &["--ramp", "20", "--duration", "1"]),
    ];
    for (url, n, extra) in cases {
        let (out, json) = load(url, n, extra);
        assert_clean(url, n, &out, &json);
        assert!(
            out.stdout.contains(&format!(
                "\"protocol\":\"{}\"",
                if url.starts_with("rtmp") {
                    "rtmp"
                } else {
                    "httpflv"
                }
            )),
            "{json}"
        );
    }

    // A measurement window inside the run: part of the media, every player through it.
    let (out, json) = load(
        &rtmp,
        2,
        &["--duration", "2.5", "--window-start", "1", "--window", "1"],
    );
    assert_clean(&rtmp, 2, &out, &json);
    let window = &json[json
        .find("\"window\":{")
        .unwrap_or_else(|| panic!("no window in {json}"))..];
    assert_eq!(num(window, "players_through"), 2.0, "{json}");
    let in_window = num(window, "media_bytes");
    assert!(
        in_window > 0.0 && in_window < num(&json, "media_bytes"),
        "window bytes {in_window} against all of {json}"
    );
    assert!(num(window, "gbps") > 0.0, "{json}");
}

#[test]
fn counts_refused_and_unreachable_players_as_errors() {
    let srv = Server::start(&Config::new().httpflv());

    // No publisher: RTMP play is refused with an onStatus error, HTTP-FLV with 404.
    let (out, json) = load(&srv.url("live/absent"), 2, &["--duration", "1"]);
    assert!(out.failed(), "errors make the tool exit non-zero: {out:?}");
    assert_eq!(num(&json, "connected"), 2.0, "{json}");
    assert_eq!(num(&json, "playing"), 0.0, "{json}");
    assert_eq!(num(&json, "errors"), 2.0, "{json}");
    for p in per_player(&json) {
        assert!(raw(&p, "error").contains("refused"), "player {p}");
    }

    let (out, json) = load(&srv.flv_url("live/absent.flv"), 2, &["--duration", "1"]);
    assert!(out.failed(), "{out:?}");
    assert_eq!(num(&json, "errors"), 2.0, "{json}");
    for p in per_player(&json) {
        assert_eq!(raw(&p, "error"), "\"HTTP 404\"", "player {p}");
    }

    // Nobody listening: not connected, one error each.
    let url = format!("rtmp://127.0.0.1:{}/live/x", free_port());
    let (out, json) = load(&url, 3, &["--duration", "1"]);
    assert!(out.failed(), "{out:?}");
    assert_eq!(num(&json, "connected"), 0.0, "{json}");
    assert_eq!(num(&json, "errors"), 3.0, "{json}");
}
