//! Functional test of the load tool (`streamgate-load`): the real server (in process,
//! on ports it picks), a real ffmpeg publisher, and the built tool run against it with a few
//! players over RTMP and HTTP-FLV. The assertions are on what the tool counts (players,
//! errors, media, keyframes), never on how fast anything was: timing belongs to the benchmark
//! (`tests/bench/first_frame.sh`).

use streamgate_testkit::load::*;
use streamgate_testkit::*;

#[test]
fn counts_what_a_live_stream_sends_to_rtmp_and_httpflv_players() {
    let srv = InProcess::start(&Config::new().httpflv());
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
    let srv = InProcess::start(&Config::new().httpflv());

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

#[test]
fn after_keyframe_starts_the_players_once_a_pilot_has_seen_a_live_keyframe() {
    let hook = HookServer::start();
    let srv = InProcess::start(&Config::new().hooks(&hook.url("/rtmp"), ""));
    let url = srv.url("live/aligned");
    let _publisher = publish(&url, 40);
    wait_live(&url);
    let before = hook.records().len();

    let (out, json) = load(&url, 3, &["--duration", "1", "--after-keyframe", "300"]);
    assert_clean(&url, 3, &out, &json);
    assert_eq!(num(&json, "after_keyframe_ms"), 300.0, "{json}");

    // The server saw the pilot play and leave, then the three players.
    let plays = poll(secs(10.0), || {
        let plays = hook.find(|r| r.seq >= before && r.is("play", "aligned"));
        (plays.len() == 4).then_some(plays)
    })
    .unwrap_or_else(|| panic!("four on_play calls: {}", hook.dump()));
    let pilot = &plays[0];
    let pilot_done = hook
        .find(|r| r.call() == "done" && r.clientid() == pilot.clientid())
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("no on_done for the pilot: {}", hook.dump()));
    for p in &plays[1..] {
        assert!(
            p.seq > pilot_done.seq,
            "a player's play came before the pilot left: {}",
            hook.dump()
        );
        // Causal, not a speed check: the pilot waited at least 200 ms of play for a live
        // keyframe, and the players 300 ms after it.
        assert!(
            p.at - pilot.at >= secs(0.5),
            "players started {:?} after the pilot's play",
            p.at - pilot.at
        );
    }

    // No live keyframe to wait for: the tool says why and fails, without a report.
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_streamgate-load"));
    cmd.args(["--url", &srv.url("live/absent"), "--players", "2"])
        .args(["--after-keyframe", "0", "--start-timeout", "2", "--json"]);
    let out = run("streamgate-load", &mut cmd, secs(60.0));
    assert!(out.failed(), "{out:?}");
    assert!(
        out.stderr.contains("--after-keyframe") && out.stderr.contains("refused"),
        "{out:?}"
    );
    assert!(!out.stdout.contains('{'), "{out:?}");
}
