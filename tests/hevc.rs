//! End-to-end tests of H.265 across protocols: FFmpeg (libx265) publishes H.265 over SRT
//! (MPEG-TS, stream type 0x24) and over RTSP (RFC 7798), and ffprobe / ffmpeg players over
//! SRT and RTSP (and HLS, for the SRT publish) see `hevc` and decode pictures. The operator's
//! hooks are answered by the real test hook server, which also tells when a publish is on.

use std::process::Command;
use std::thread;
use std::time::Duration;

use streamgate_testkit::*;

const HOOK_WAIT: Duration = Duration::from_secs(10);
/// FFmpeg's SRT latency option is in microseconds.
const SRT_OPTS: &str = "&latency=120000";

/// FFmpeg arguments encoding the test pattern as H.265 (a keyframe a second) and AAC.
fn hevc_encode(cmd: &mut Command, seconds: u32) {
    cmd.args(["-hide_banner", "-nostdin", "-loglevel", "error", "-re"])
        .args(["-f", "lavfi", "-i", "testsrc=size=320x240:rate=25"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"])
        .args(["-c:v", "libx265", "-preset", "ultrafast"])
        .args(["-x265-params", "log-level=error:keyint=25"])
        .args(["-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "64k"])
        .args(["-t", &seconds.to_string()]);
}

fn server(hook: &HookServer) -> Server {
    Server::start(
        &Config::new()
            .rtsp_hooks(&hook.url("/rtsp"), "")
            .srt_hooks(&hook.url("/srt"), "")
            .hls("<segment_duration_ms>1000</segment_duration_ms>"),
    )
}

/// Waits for `on_publish` of `name`, then a moment for the first GOP.
fn wait_publishing(hook: &HookServer, srv: &Server, name: &str) {
    hook.wait_call("publish", name, HOOK_WAIT)
        .unwrap_or_else(|| {
            panic!(
                "no on_publish for {name}: {}\n{}",
                hook.dump(),
                srv.log_tail(40)
            )
        });
    thread::sleep(secs(2.0));
}

/// `codec_name,codec_tag` of each stream ffprobe sees in `url`, with `args` before it.
fn probe_streams(url: &str, args: &[&str]) -> (Vec<String>, Output) {
    let mut all = args.to_vec();
    all.extend([
        "-show_entries",
        "stream=codec_name,codec_tag",
        "-of",
        "csv=p=0",
    ]);
    let out = ffprobe(url, &all, secs(20.0));
    let mut streams: Vec<String> = out
        .stdout
        .lines()
        .map(|l| l.trim().trim_end_matches(',').to_string())
        .filter(|l| !l.is_empty())
        .collect();
    streams.dedup();
    (streams, out)
}

/// Video pictures an ffmpeg player decodes from `seconds` of `url` (`args` before `-i`).
fn decoded_frames(url: &str, args: &[&str], seconds: f64) -> Played {
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-nostdin", "-loglevel", "error"])
        .args(args)
        .args(["-i", url, "-t", &seconds.to_string()])
        .args(["-map", "0:v:0", "-f", "framemd5", "-"]);
    finish_player(Proc::spawn(&format!("play {url}"), &mut cmd), secs(25.0))
}

fn srt_play_url(srv: &Server, name: &str) -> String {
    format!(
        "{}{SRT_OPTS}",
        srv.srt_url(&format!("#!::r=live/{name},m=request"))
    )
}

/// The SRT player's view: stream type 0x24 (ffprobe's codec tag of an MPEG-TS stream
/// without a registration descriptor is its stream type) under `hevc`, and decoded pictures.
fn assert_srt_player_gets_hevc(srv: &Server, name: &str) {
    let url = srt_play_url(srv, name);
    let (streams, out) = probe_streams(&url, &[]);
    assert!(
        streams.iter().any(|s| s == "hevc,0x0024"),
        "an SRT player sees H.265 under stream type 0x24: {streams:?} {}\n{}",
        out.stderr,
        srv.log_tail(20)
    );
    assert!(
        !streams.iter().any(|s| s.starts_with("h264")),
        "no H.264 is declared: {streams:?}"
    );
    let played = decoded_frames(&url, &[], 2.0);
    assert!(
        played.frames >= 40,
        "H.265 over SRT: {} pictures decoded: {}\n{}",
        played.frames,
        played.out.stderr,
        srv.log_tail(20)
    );
}

#[test]
fn h265_published_over_srt_plays_over_srt_and_rtsp() {
    let hook = HookServer::start();
    let srv = server(&hook);
    let mut cmd = Command::new("ffmpeg");
    hevc_encode(&mut cmd, 40);
    cmd.args(["-f", "mpegts"]).arg(format!(
        "{}&pkt_size=1316{SRT_OPTS}",
        srv.srt_url("#!::r=live/hevcsrt,m=publish")
    ));
    let mut publisher = Proc::spawn("srt publish h265", &mut cmd);
    wait_publishing(&hook, &srv, "hevcsrt");

    assert_srt_player_gets_hevc(&srv, "hevcsrt");

    // SRT carries no metadata: the API reads the picture size from the stream's own SPS.
    let stream = api_get(srv.api_port, "/api/v1/streams/live/hevcsrt");
    assert_eq!(stream.status, 200, "{}", stream.text);
    let video = &stream.body["video"];
    assert_eq!(video["codec"], "h265", "{}", stream.text);
    assert_eq!(
        (video["width"].as_u64(), video["height"].as_u64()),
        (Some(320), Some(240)),
        "{}",
        stream.text
    );

    let url = srv.rtsp_url("live/hevcsrt");
    let (streams, out) = probe_streams(&url, &["-rtsp_transport", "tcp"]);
    assert!(
        streams.iter().any(|s| s.starts_with("hevc,"))
            && streams.iter().any(|s| s.starts_with("aac,")),
        "an RTSP player of an SRT H.265 stream sees hevc and aac: {streams:?} {}\n{}",
        out.stderr,
        srv.log_tail(20)
    );
    let played = decoded_frames(&url, &["-rtsp_transport", "tcp"], 2.0);
    assert!(
        played.frames >= 40,
        "SRT H.265 over RTSP: {} pictures decoded: {}\n{}",
        played.frames,
        played.out.stderr,
        srv.log_tail(20)
    );
    // And over HLS: CMAF with hvc1 (what Apple's players take) and AAC.
    let url = srv.hls_url("live/hevcsrt/index.m3u8");
    let (streams, out) = probe_streams(&url, &[]);
    assert!(
        streams.iter().any(|s| s.starts_with("hevc,"))
            && streams.iter().any(|s| s.starts_with("aac,")),
        "an HLS player of an SRT H.265 stream sees hevc and aac: {streams:?} {}\n{}",
        out.stderr,
        srv.log_tail(20)
    );
    let played = decoded_frames(&url, &[], 2.0);
    assert!(
        played.frames >= 40,
        "SRT H.265 over HLS: {} pictures decoded: {}\n{}",
        played.frames,
        played.out.stderr,
        srv.log_tail(20)
    );
    publisher.kill();
}

#[test]
fn h265_published_over_rtsp_plays_over_srt() {
    let hook = HookServer::start();
    let srv = server(&hook);
    let mut cmd = Command::new("ffmpeg");
    hevc_encode(&mut cmd, 40);
    cmd.args(["-f", "rtsp", "-rtsp_transport", "tcp"])
        .arg(srv.rtsp_url("live/hevcrtsp"));
    let mut publisher = Proc::spawn("rtsp publish h265", &mut cmd);
    wait_publishing(&hook, &srv, "hevcrtsp");

    assert_srt_player_gets_hevc(&srv, "hevcrtsp");
    publisher.kill();
}

/// A publisher's MPEG-TS track of a codec the server cannot carry (MPEG-1 audio, stream
/// type 0x03) is not dropped silently: the session logs its stream type once, and the video
/// beside it goes on to players.
#[test]
fn an_srt_track_the_server_cannot_carry_is_logged() {
    let hook = HookServer::start();
    let srv = server(&hook);
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-nostdin", "-loglevel", "error", "-re"])
        .args(["-f", "lavfi", "-i", "testsrc=size=320x240:rate=25"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"])
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-g", "25"])
        .args([
            "-pix_fmt", "yuv420p", "-c:a", "mp2", "-t", "30", "-f", "mpegts",
        ])
        .arg(format!(
            "{}&pkt_size=1316{SRT_OPTS}",
            srv.srt_url("#!::r=live/mp2,m=publish")
        ));
    let mut publisher = Proc::spawn("srt publish h264+mp2", &mut cmd);
    wait_publishing(&hook, &srv, "mp2");
    let logged = |srv: &Server| {
        srv.log()
            .lines()
            .filter(|l| l.contains("cannot carry") && l.contains("stream_types=[3]"))
            .count()
    };
    assert!(
        poll(secs(5.0), || (logged(&srv) > 0).then_some(())).is_some(),
        "the dropped MPEG-1 audio track is logged: {}",
        srv.log_tail(30)
    );
    let played = decoded_frames(&srt_play_url(&srv, "mp2"), &[], 2.0);
    assert!(played.frames >= 40, "{}", played.out.stderr);
    assert_eq!(logged(&srv), 1, "logged once: {}", srv.log_tail(30));
    publisher.kill();
}
