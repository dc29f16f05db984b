//! Interop with clients other than FFmpeg, each run as the real program a user would run:
//! GStreamer's `rtspclientsink` publishing with its default payloads, and what FFmpeg players
//! over RTMP and RTSP then get. tests/run.sh installs the Debian packages they need.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use streamgate_testkit::*;

/// How long to wait for a callback that must come.
const HOOK_WAIT: Duration = Duration::from_secs(15);

/// GStreamer publishes H.264 + AAC to `url` with `rtspclientsink`'s defaults (transport, and
/// its AAC payloader: MP4A-LATM) for `seconds`. The live sources are paced like a camera.
fn gst_rtsp_publish(url: &str, seconds: u32) -> Proc {
    let video_buffers = (seconds * 25).to_string();
    let audio_buffers = (seconds * 44100 / 1024).to_string();
    let mut cmd = Command::new("gst-launch-1.0");
    cmd.arg("-q")
        .args(["videotestsrc", "is-live=true"])
        .arg(format!("num-buffers={video_buffers}"))
        .args([
            "!",
            "video/x-raw,format=I420,width=320,height=240,framerate=25/1",
        ])
        .args(["!", "x264enc", "tune=zerolatency", "key-int-max=25"])
        .args(["!", "queue", "!", "s.sink_0"])
        .args(["audiotestsrc", "is-live=true"])
        .arg(format!("num-buffers={audio_buffers}"))
        .args(["!", "audio/x-raw,rate=44100,channels=1"])
        .args(["!", "avenc_aac", "!", "queue", "!", "s.sink_1"])
        .args(["rtspclientsink", "name=s"])
        .arg(format!("location={url}"));
    Proc::spawn(&format!("gst publish {url}"), &mut cmd)
}

/// Audio frames FFmpeg decodes from `url` in `seconds` (framemd5 of the first audio track).
fn audio_frames(url: &str, pre: &[&str], seconds: f64) -> (usize, Output) {
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-nostdin", "-loglevel", "error"])
        .args(pre)
        .args(["-i", url])
        .args(["-t", &format!("{seconds}")])
        .args(["-map", "0:a:0", "-f", "framemd5", "-"]);
    let out = run(&format!("audio of {url}"), &mut cmd, secs(30.0));
    (count_frames(&out.stdout), out)
}

/// GStreamer's `rtspclientsink` with a query in its URL (SETUP `…/live/gst/stream=0?token=abc`)
/// and its default AAC payload (MP4A-LATM): the publish is accepted, and players over RTMP and
/// RTSP get both H.264 and AAC and decode the audio.
#[test]
fn gstreamer_rtsp_publish_with_latm_audio_reaches_rtmp_and_rtsp_players() {
    let hook = HookServer::start();
    let srv = Server::start(
        &Config::new()
            .hooks(&hook.url("/rtmp"), "")
            .rtsp_hooks(&hook.url("/rtsp"), ""),
    );
    let pub_url = srv.rtsp_url("live/gst?token=abc");
    let mut publisher = gst_rtsp_publish(&pub_url, 30);
    let pubrec = hook
        .wait_call("publish", "gst", HOOK_WAIT)
        .unwrap_or_else(|| panic!("on_publish for gst:\n{}\n{}", hook.dump(), srv.log()));
    assert_eq!(pubrec.path, "/rtsp/publish");
    assert_eq!(pubrec.field("protocol"), "rtsp");
    assert_eq!(pubrec.field("app"), "live");
    assert_eq!(pubrec.field("name"), "gst");
    assert_eq!(
        pubrec.field("url"),
        pub_url,
        "the URL as sent, query included"
    );
    assert_eq!(pubrec.field("tcurl"), "");

    let want: BTreeSet<String> = ["h264", "aac"].iter().map(|s| s.to_string()).collect();
    let rtmp = srv.url("live/gst");
    let rtsp = srv.rtsp_url("live/gst");
    let mut last = String::new();
    let seen = poll(secs(20.0), || {
        let (c, out) = probe_codecs_with(&rtmp, &[]);
        last = format!("{c:?} {}", out.text());
        want.is_subset(&c).then_some(())
    });
    assert!(
        seen.is_some(),
        "ffprobe over RTMP sees h264 and aac: {last}\n{}",
        srv.log()
    );
    let (c, out) = probe_codecs_with(&rtsp, &["-rtsp_transport", "tcp"]);
    assert!(
        want.is_subset(&c),
        "ffprobe over RTSP sees h264 and aac, saw {c:?}: {}",
        out.text()
    );

    for (url, pre, what) in [
        (&rtmp, &[][..], "RTMP"),
        (&rtsp, &["-rtsp_transport", "tcp"][..], "RTSP"),
    ] {
        let (frames, out) = audio_frames(url, pre, 2.0);
        // 2 s of 44.1 kHz AAC is 86 frames.
        assert!(
            frames >= 40,
            "{what}: {frames} audio frames decoded: {}",
            out.text()
        );
    }
    assert!(
        publisher.running(),
        "GStreamer still publishes: {}",
        publisher.stderr()
    );
    assert!(
        !srv.log().contains("request refused"),
        "nothing of GStreamer's was refused:\n{}",
        srv.log()
    );
    publisher.kill();
}

/// What the server cannot carry is refused at ANNOUNCE, never accepted and dropped: GStreamer
/// publishing G.711 A-law audio (PCMA) gets `415`, the log says which track and why, and no
/// stream is created (on_publish is not even asked). (Opus, once the example here, is carried
/// since Enhanced RTMP.)
#[test]
fn gstreamer_rtsp_publish_of_an_uncarried_codec_is_refused_at_announce() {
    let hook = HookServer::start();
    let srv = Server::start(&Config::new().rtsp_hooks(&hook.url("/rtsp"), ""));
    let url = srv.rtsp_url("live/pcma?token=abc");
    let mut cmd = Command::new("gst-launch-1.0");
    cmd.args(["audiotestsrc", "is-live=true", "num-buffers=250"])
        .args(["!", "alawenc", "!", "rtspclientsink"])
        .arg(format!("location={url}"));
    let out = run("gst publish pcma", &mut cmd, secs(30.0));
    assert!(
        !out.success(),
        "GStreamer's publish is refused: {}",
        out.text()
    );
    let log = srv.log();
    let line = log
        .lines()
        .find(|l| l.contains("request refused") && l.contains("status=415"))
        .unwrap_or_else(|| panic!("a log line for the 415:\n{log}"));
    assert!(line.contains("ANNOUNCE"), "{line}");
    assert!(line.to_uppercase().contains("PCMA"), "{line}");
    assert_eq!(
        hook.count(|r| r.call() == "publish"),
        0,
        "no on_publish for a refused description:\n{}",
        hook.dump()
    );
}

/// The PTS (seconds) of the buffers GStreamer's fakesink `sink` printed (`-v`, `silent=false`).
fn sink_pts(stdout: &str, sink: &str) -> Vec<f64> {
    stdout
        .lines()
        .filter(|l| l.contains(&format!("({sink}:sink)")) && l.contains("chain"))
        .filter_map(|l| {
            let t = l.split("pts: ").nth(1)?.split(',').next()?;
            let mut parts = t.split(':');
            let h: f64 = parts.next()?.parse().ok()?;
            let m: f64 = parts.next()?.parse().ok()?;
            let s: f64 = parts.next()?.parse().ok()?;
            Some(h * 3600.0 + m * 60.0 + s)
        })
        .collect()
}

/// GStreamer's `rtspsrc` joining a stream whose cached keyframe is 2.5 s old (a 10 s GOP) sees
/// a live timeline from its first packet: its jitter buffer, which derives time from arrival,
/// gives each frame its own timestamp 40 ms after the last, where a burst of the whole cached
/// GOP made it reset its timeline and give tens of frames one timestamp, and starts audio and
/// video together. Over TCP and UDP.
#[test]
fn gstreamer_rtspsrc_joining_mid_gop_sees_a_live_timeline() {
    let hook = HookServer::start();
    let srv = Server::start(&Config::new().hooks(&hook.url("/rtmp"), "").rtsp());
    let mut publisher = publish_with(
        &srv.url("live/gop"),
        60,
        "testsrc=size=320x240:rate=25",
        250,
    );
    hook.wait_call("publish", "gop", HOOK_WAIT)
        .unwrap_or_else(|| panic!("on_publish:\n{}", srv.log()));
    std::thread::sleep(secs(2.5));
    let url = srv.rtsp_url("live/gop");
    for proto in ["tcp", "udp"] {
        let mut cmd = Command::new("timeout");
        cmd.args(["-k", "3", "-s", "INT", "6"])
            .args(["gst-launch-1.0", "-v", "-e", "rtspsrc"])
            .arg(format!("location={url}"))
            .arg(format!("protocols={proto}"))
            .args(["name=d", "d.", "!", "rtph264depay", "!", "fakesink"])
            .args([
                "name=vs",
                "silent=false",
                "d.",
                "!",
                "rtpmp4gdepay",
                "!",
                "fakesink",
            ])
            .args(["name=as", "silent=false"]);
        let out = run(&format!("rtspsrc {proto}"), &mut cmd, secs(30.0));
        let video = sink_pts(&out.stdout, "vs");
        let audio = sink_pts(&out.stdout, "as");
        assert!(
            video.len() >= 60 && !audio.is_empty(),
            "{proto}: {} video and {} audio buffers: {}",
            video.len(),
            audio.len(),
            out.stderr
        );
        let mut longest = 1;
        let mut run_len = 1;
        for pair in video.windows(2) {
            run_len = if (pair[1] - pair[0]).abs() < 1e-6 {
                run_len + 1
            } else {
                1
            };
            longest = longest.max(run_len);
        }
        assert!(
            longest <= 3,
            "{proto}: {longest} video frames share one timestamp: {:?}",
            &video[..60]
        );
        let mut steps: Vec<f64> = video[..50].windows(2).map(|p| p[1] - p[0]).collect();
        steps.sort_by(f64::total_cmp);
        let median = steps[steps.len() / 2];
        assert!(
            (0.035..=0.045).contains(&median),
            "{proto}: the first frames are {median:.3} s apart, not 0.040: {:?}",
            &video[..50]
        );
        let offset = video[0] - audio[0];
        assert!(
            offset.abs() <= 0.15,
            "{proto}: video starts {offset:.3} s after audio"
        );
    }
    publisher.kill();
}
