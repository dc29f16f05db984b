//! Functional test of the load tool's HLS players: the real server (in process, HLS on a port
//! it picks), a real ffmpeg publisher, and the built tool run against `index.m3u8` with a few
//! Low-Latency and plain HLS players. The assertions are on what the tool counts (players,
//! errors, media, parts and segments, one connection each), never on how fast anything was:
//! timing belongs to the benchmark (`tests/bench/hls.sh`).

use streamgate_testkit::load::*;
use streamgate_testkit::*;

/// Asserts a clean run of `n` HLS players that all received media from a keyframe on.
fn assert_clean_hls(url: &str, n: usize, out: &process::Output, json: &str) {
    assert!(out.success(), "load tool failed against {url}: {out:?}");
    assert_eq!(raw(json, "protocol"), "\"hls\"", "{json}");
    for key in ["players", "connected", "playing", "with_keyframe"] {
        assert_eq!(num(json, key), n as f64, "{key} against {url}: {json}");
    }
    assert_eq!(num(json, "errors"), 0.0, "errors against {url}: {json}");
    // Keep-alive: every player's requests went over the one connection it opened.
    assert_eq!(num(json, "reconnects"), 0.0, "{json}");
    let players = per_player(json);
    assert_eq!(players.len(), n, "one entry per player: {json}");
    for p in &players {
        assert_eq!(raw(p, "error"), "null", "player {p}");
        assert!(num(p, "media_bytes") > 0.0, "player without media: {p}");
        assert!(
            num(p, "bitrate_kbps") > 0.0,
            "player without a bit rate: {p}"
        );
        let start = num(p, "play_start_ms");
        let key = num(p, "first_keyframe_ms");
        assert!(key >= start, "keyframe before play start: {p}");
    }
}

#[test]
fn low_latency_players_follow_the_live_edge_part_by_part() {
    let srv = InProcess::start(&Config::new().hls(""));
    let _publisher = publish(&srv.url("live/load"), 40);
    wait_live(&srv.url("live/load"));

    let url = srv.hls_url("live/load/index.m3u8?token=abc");
    let (out, json) = load(&url, 3, &["--duration", "4"]);
    assert_clean_hls(&url, 3, &out, &json);
    assert_eq!(raw(&json, "mode"), "\"play\"", "{json}");
    assert!(json.contains("\"hls\":{\"mode\":\"ll\""), "{json}");
    // 4 s of 200 ms parts: far more than the three a player starts with, each one after a
    // blocking reload; no whole segment fetched.
    let parts = num(&json, "parts");
    assert!(
        parts >= 3.0 * 8.0,
        "{parts} parts in 4 s for 3 players: {json}"
    );
    assert!(num(&json, "blocking_reloads") >= parts / 2.0, "{json}");
    assert_eq!(num(&json, "segments"), 0.0, "{json}");
    // Playlists are counted apart from the media.
    assert!(num(&json, "playlist_bytes") > 0.0, "{json}");
}

#[test]
fn plain_players_reload_about_every_target_duration_and_fetch_segments() {
    let srv = InProcess::start(&Config::new().hls("<low_latency>false</low_latency>"));
    let _publisher = publish(&srv.url("live/load"), 40);
    wait_live(&srv.url("live/load"));

    // The stream's packaging starts with these players: the first playlist may list no
    // complete segment yet.
    let url = srv.hls_url("live/load/index.m3u8");
    let (out, json) = load(&url, 2, &["--duration", "7", "--hls-mode", "plain"]);
    assert_clean_hls(&url, 2, &out, &json);
    assert!(json.contains("\"hls\":{\"mode\":\"plain\""), "{json}");
    assert_eq!(num(&json, "parts"), 0.0, "{json}");
    assert_eq!(num(&json, "blocking_reloads"), 0.0, "{json}");
    // Each player: the multivariant and media playlists, then a reload about every target
    // duration (2 s) while it plays (its first answer waits for the stream's first complete
    // segment, up to a segment's time: the players play less than 7 s), and the 2 s segments
    // they list.
    let started = per_player(&json)
        .iter()
        .map(|p| num(p, "play_start_ms"))
        .fold(0.0, f64::max);
    let played = 7.0 - started / 1000.0;
    assert!(played >= 4.0, "the players started late: {json}");
    let reloads = (played / 2.0).floor() - 1.0;
    assert!(num(&json, "playlists") >= 2.0 * (2.0 + reloads), "{json}");
    assert!(num(&json, "segments") >= 2.0 * 2.0, "{json}");

    // A Low-Latency player against a playlist without parts says so.
    let (out, json) = load(&url, 1, &["--duration", "2"]);
    assert!(!out.success(), "{out:?}");
    assert_eq!(num(&json, "errors"), 1.0, "{json}");
    assert!(json.contains("not Low-Latency HLS"), "{json}");
}

#[test]
fn refused_and_missing_streams_are_errors() {
    let srv = InProcess::start(&Config::new().hls(""));
    let url = srv.hls_url("live/nothing/index.m3u8");
    let (out, json) = load(&url, 2, &["--duration", "1"]);
    assert!(!out.success(), "{out:?}");
    assert_eq!(num(&json, "errors"), 2.0, "{json}");
    assert_eq!(num(&json, "playing"), 0.0, "{json}");
    assert!(json.contains("HTTP 404 for a playlist"), "{json}");
}
