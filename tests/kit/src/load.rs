//! Running the load tool (`streamgate-load`) from tests and reading its JSON report.

use std::process::Command;

use crate::process::{run, Output};
use crate::util::{cargo_bin, poll, secs};

/// Runs the tool with `--json` against `url`; its output and the JSON line.
pub fn load(url: &str, players: usize, extra: &[&str]) -> (Output, String) {
    let mut cmd = Command::new(cargo_bin("streamgate-load"));
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
pub fn raw<'a>(json: &'a str, key: &str) -> &'a str {
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
pub fn num(json: &str, key: &str) -> f64 {
    let v = raw(json, key);
    v.parse()
        .unwrap_or_else(|_| panic!("{key} is {v:?}, not a number, in {json}"))
}

/// The per-player objects of the report.
pub fn per_player(json: &str) -> Vec<String> {
    let start = json
        .find("\"per_player\":[{")
        .unwrap_or_else(|| panic!("no per-player entries in {json}"))
        + "\"per_player\":[".len();
    let body = json[start..].trim_end_matches("]}");
    body.split("},{").map(str::to_string).collect()
}

/// Waits until one RTMP player can play `url` and sees a keyframe (the publisher is live).
pub fn wait_live(url: &str) {
    let live = poll(secs(30.0), || {
        let (_, json) = load(url, 1, &["--duration", "0.2", "--start-timeout", "5"]);
        (raw(&json, "with_keyframe") == "1").then_some(())
    });
    assert!(live.is_some(), "{url} never became playable");
}

/// Asserts a clean run of `n` players that all received media from a keyframe on.
pub fn assert_clean(url: &str, n: usize, out: &Output, json: &str) {
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
