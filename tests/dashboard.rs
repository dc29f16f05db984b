//! The dashboard in a real browser: Playwright (playwright-core from npm, installed in
//! tests/browser by tests/run.sh) drives Debian's Chromium through `tests/browser/dashboard.mjs`
//! while ffmpeg publishes: the stream's row shows its codecs and size, the page's own HTTP-FLV
//! player (mpegts.js, served by the server) advances, and the kick button of a player's row
//! ends that player (its ffmpeg exits, its `on_done` says `kicked`) and the row goes. The
//! screenshot of the run is written to `target/dashboard.png` (docs/dashboard.png is one).

use std::process::Command;
use std::time::Duration;

use streamgate_testkit::*;

const HOOK_WAIT: Duration = Duration::from_secs(15);

#[test]
fn the_dashboard_shows_plays_and_kicks_in_chromium() {
    let hook = HookServer::start();
    let srv = Server::start(
        &Config::new()
            .hooks(&hook.url("/rtmp"), "")
            .httpflv_hooks(&hook.url("/httpflv"), ""),
    );
    let mut publisher = publish(&srv.url("live/cam"), 90);
    hook.wait_call("publish", "cam", HOOK_WAIT)
        .expect("on_publish");
    let mut player = spawn_player(&srv.url("live/cam?who=kickme"), 90.0);
    let play = hook
        .wait_for(
            |r| r.call() == "play" && r.field("url").ends_with("who=kickme"),
            HOOK_WAIT,
        )
        .expect("on_play of the player to kick");

    let screenshot = repo_file("target/dashboard.png");
    let out = run(
        "dashboard in chromium",
        Command::new("node")
            .arg(repo_file("tests/browser/dashboard.mjs"))
            .arg(format!("http://127.0.0.1:{}/", srv.api_port))
            .arg("live/cam")
            .arg(play.clientid())
            .arg(&screenshot),
        secs(120.0),
    );
    assert!(
        out.success(),
        "the page did what it should: {}\n{}",
        out.text(),
        srv.log_tail(30)
    );
    let seen: Value = serde_json::from_str(out.stdout.trim()).expect("the script's report");
    let video = seen["video"].as_str().unwrap_or_default();
    assert!(video.starts_with("h264 640x360"), "codec and size: {seen}");
    assert!(
        seen["audio"]
            .as_str()
            .unwrap_or_default()
            .starts_with("aac 44100 Hz"),
        "{seen}"
    );
    assert!(
        seen["to"].as_f64() > seen["from"].as_f64(),
        "the page's player advanced: {seen}"
    );
    let urls: Vec<&str> = seen["urls"]
        .as_array()
        .expect("urls")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(urls.contains(&srv.url("live/cam").as_str()), "{urls:?}");
    assert!(
        urls.contains(&srv.flv_url("live/cam.flv").as_str()),
        "{urls:?}"
    );
    // The page played over HTTP-FLV: a session like any other, with its hooks.
    assert!(
        hook.count(|r| r.call() == "play" && r.field("protocol") == "httpflv") >= 1,
        "{}",
        hook.dump()
    );

    // The kicked player: its on_done says so and its ffmpeg ended.
    let done = hook
        .wait_for(|r| is_done_of(r, play.clientid()), HOOK_WAIT)
        .expect("on_done of the kicked player");
    assert_eq!(done.field("reason"), "kicked", "{done:?}");
    player
        .wait_timeout(secs(10.0))
        .expect("the kicked player's ffmpeg ends");
    assert!(std::fs::metadata(&screenshot).is_ok_and(|m| m.len() > 10_000));
    publisher.kill();
}
