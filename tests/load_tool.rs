//! Functional test of the load tool (`streamgate-load`): the real server, a real ffmpeg
//! publisher, and the built tool run against it with a few players over RTMP and HTTP-FLV. The
//! assertions are on what the tool counts (players, errors, media, keyframes), never on how
//! fast anything was: timing belongs to the benchmark (`tests/bench/first_frame.sh`).

mod common;

use std::process::Command;

use common::*;

/// The load tool built by cargo for these tests.
const LOAD: &str = env!("CARGO_BIN_EXE_streamgate-load");

/// Runs the tool with `--json` against `url`; its output and the JSON line.
fn load(url: &str, players: usize, extra: &[&str]) -> (Output, String) {
    let mut cmd = Command::new(LOAD);
    cmd.args(["--url", url, "--players", &players.to_string(), "--json"])
        .args(extra);
    let out = run("streamgate-load", &mut cmd, secs(60.0));
    assert!(!out.timed_out, "the load tool ran over 60 s: {out:?}");
    let json = out
        .stdout
        .lines()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON report from the load tool: {out:?}"))
        .to_string();
    (out, json)
}

/// The raw value of `"key":` at its first occurrence in `json` (numbers, `null`, booleans and
/// strings without commas: all the tool writes for the keys read here).
fn raw<'a>(json: &'a str, key: &str) -> &'a str {
    let pat = format!("\"{key}\":");
    let at = json
        .find(&pat)
        .unwrap_or_else(|| panic!("no {key:?} in {json}"))
        + pat.len();
    let rest = &json[at..];
    let end = if let Some(string) = rest.strip_prefix('"') {
        string.find('"').map_or(rest.len(), |i| i + 2)
    } else {
        rest.find([',', '}', ']']).unwrap_or(rest.len())
    };
    &rest[..end]
}

/// A numeric field (panics on `null`).
fn num(json: &str, key: &str) -> f64 {
    let v = raw(json, key);
    v.parse()
        .unwrap_or_else(|_| panic!("{key} is {v:?}, not a number, in {json}"))
}

/// The per-player objects of the report.
fn per_player(json: &str) -> Vec<String> {
    let start = json
        .find("\"per_player\":[{")
        .unwrap_or_else(|| panic!("no per-player entries in {json}"))
        + "\"per_player\":[".len();
    let body = json[start..].trim_end_matches("]}");
    body.split("},{").map(str::to_string).collect()
}

/// Waits until one RTMP player can play `url` and sees a keyframe (the publisher is live).
fn wait_live(url: &str) {
    let live = poll(secs(30.0), || {
        let (_, json) = load(url, 1, &["--duration", "0.2", "--start-timeout", "5"]);
        (raw(&json, "with_keyframe") == "1").then_some(())
    });
    assert!(live.is_some(), "{url} never became playable");
}

/// Asserts a clean run of `n` players that all received media from a keyframe on.
fn assert_clean(url: &str, n: usize, out: &Output, json: &str) {
    assert!(out.success(), "load tool failed against {url}: {out:?}");
    for key in ["players", "connected", "playing", "with_keyframe"] {
        assert_eq!(num(json, key), n as f64, "{key} against {url}: {json}");
    }
    assert_eq!(num(json, "errors"), 0.0, "errors against {url}: {json}");
    assert!(
        num(json, "media_bytes") > 0.0,
        "no media from {url}: {json}"
    );
    let players = per_player(json);
    assert_eq!(players.len(), n, "one entry per player: {json}");
    for p in &players {
        assert_eq!(raw(p, "connected"), "true", "player {p}");
        assert_eq!(raw(p, "error"), "null", "player {p}");
        assert!(num(p, "media_bytes") > 0.0, "player without media: {p}");
        assert!(num(p, "video_frames") > 0.0, "player without video: {p}");
        assert!(num(p, "audio_frames") > 0.0, "player without audio: {p}");
        assert!(
            num(p, "bitrate_kbps") > 0.0,
            "player without a bit rate: {p}"
        );
        // Order, not speed: play starts before (or as) the first keyframe arrives.
        let start = num(p, "play_start_ms");
        let key = num(p, "first_keyframe_ms");
        assert!(key >= start, "keyframe before play start: {p}");
        // A gap needs two frames; every player got more than one.
        num(p, "max_frame_gap_ms");
    }
}

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
