//! Functional test of the load tool's publisher mode (`streamgate-load --publish FILE`): an FLV
//! file made by ffmpeg, the real server (in process), the built tool publishing it as several streams, and
//! a real player on one of them. The assertions are on what the tool counts and on what the
//! player sees, never on how fast anything was.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;

use streamgate_testkit::load::*;
use streamgate_testkit::*;

/// Writes a few seconds of H.264 + AAC (one keyframe a second) as an FLV file into `dir`.
fn make_flv(dir: &TempDir) -> PathBuf {
    let path = dir.file("source.flv");
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-nostdin", "-loglevel", "error", "-y"])
        .args(["-f", "lavfi", "-i", "testsrc=size=320x180:rate=25"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"])
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-g", "25"])
        .args(["-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "64k"])
        .args(["-t", "3", "-f", "flv"])
        .arg(&path);
    let out = run("ffmpeg (make the FLV)", &mut cmd, secs(60.0));
    assert!(out.success(), "ffmpeg could not write the FLV: {out:?}");
    path
}

fn arg(p: &Path) -> String {
    p.to_str().expect("temp paths are UTF-8").to_string()
}

#[test]
fn publishers_send_a_file_that_the_server_plays_live() {
    let dir = TempDir::new("load-publish");
    let file = arg(&make_flv(&dir));
    let srv = InProcess::start(&Config::new());
    let url = srv.url("live/pub");

    let publishers = {
        let url = url.clone();
        thread::spawn(move || load(&url, 3, &["--publish", &file, "--duration", "3"]))
    };
    // A real player of one of the streams: it plays and gets a keyframe while the tool runs.
    wait_live(&srv.url("live/pub-1"));
    let (out, json) = publishers.join().expect("the publisher run");

    assert!(out.success(), "publishers failed against {url}: {out:?}");
    assert_eq!(raw(&json, "mode"), "\"publish\"", "{json}");
    for key in ["players", "connected", "playing", "with_keyframe"] {
        assert_eq!(num(&json, key), 3.0, "{key}: {json}");
    }
    assert_eq!(num(&json, "errors"), 0.0, "{json}");
    let players = per_player(&json);
    assert_eq!(players.len(), 3, "one entry per publisher: {json}");
    for p in &players {
        assert_eq!(raw(p, "error"), "null", "publisher {p}");
        assert!(num(p, "media_bytes") > 0.0, "publisher sent no media: {p}");
        assert!(num(p, "video_frames") > 0.0, "publisher sent no video: {p}");
        assert!(num(p, "audio_frames") > 0.0, "publisher sent no audio: {p}");
        // Order, not speed: the first keyframe goes out after the publish start.
        assert!(
            num(p, "first_keyframe_ms") >= num(p, "play_start_ms"),
            "keyframe before the publish start: {p}"
        );
    }
}

#[test]
fn refused_publishers_are_errors_and_bad_files_are_usage_errors() {
    let dir = TempDir::new("load-publish-refused");
    let file = make_flv(&dir);
    let hook = HookServer::start();
    hook.on_path("/rtmp/publish", Reply::Status(403));
    let srv = InProcess::start(&Config::new().hooks(&hook.url("/rtmp"), ""));

    let url = srv.url("live/denied");
    let (out, json) = load(&url, 2, &["--publish", &arg(&file), "--duration", "1"]);
    assert!(
        out.failed(),
        "refusals make the tool exit non-zero: {out:?}"
    );
    assert_eq!(num(&json, "connected"), 2.0, "{json}");
    assert_eq!(num(&json, "playing"), 0.0, "{json}");
    assert_eq!(num(&json, "errors"), 2.0, "{json}");
    for p in per_player(&json) {
        assert!(
            raw(&p, "error").contains("NetStream.Publish.Unauthorized"),
            "publisher {p}"
        );
    }
    assert!(
        hook.count(|r| r.call() == "publish") >= 2,
        "on_publish was asked:\n{}",
        hook.dump()
    );

    // Files that are not a whole FLV file: the run does not start (usage error, status 2).
    let not_flv = dir.file("not.flv");
    std::fs::write(&not_flv, b"plain text, not a video\n").expect("write the file");
    let data = std::fs::read(&file).expect("read the FLV");
    let truncated = dir.file("truncated.flv");
    std::fs::write(&truncated, &data[..data.len() / 2]).expect("write the file");
    for (bad, why) in [(&not_flv, "not an FLV"), (&truncated, "truncated")] {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_streamgate-load"));
        cmd.args(["--url", &url, "--publish", &arg(bad), "--duration", "1"]);
        let out = run("streamgate-load", &mut cmd, secs(30.0));
        assert_eq!(
            out.status.and_then(|s| s.code()),
            Some(2),
            "{why}: usage error: {out:?}"
        );
        assert!(out.stderr.contains(why), "{why}: {out:?}");
    }
}
