//! End-to-end tests of Enhanced RTMP (veovera Enhanced RTMP v1/v2): FFmpeg 9 (PyPI's
//! imageio-ffmpeg) publishes H.265 (`hvc1`), AV1 (`av01`) and Opus over RTMP, and FFmpeg 9
//! players over RTMP and HTTP-FLV decode them; Debian's FFmpeg 5.1 plays what can go on over
//! RTSP and SRT, and publishes H.265 over RTSP and SRT to FFmpeg 9's RTMP and HTTP-FLV
//! players. The hooks are answered by the real test hook server.

use std::process::Command;
use std::time::Duration;

use streamgate_testkit::encoders::*;
use streamgate_testkit::*;

/// Seconds each player decodes.
const PLAY: f64 = 3.0;
/// Video frames a player must decode in [`PLAY`] seconds at 25 fps (the GOP burst comes
/// first, so a player gets at least this many).
const MIN_VIDEO: usize = 50;
/// Audio frames a player must decode in [`PLAY`] seconds (AAC at 44.1 kHz: 43 a second; Opus
/// at 20 ms: 50 a second).
const MIN_AUDIO: usize = 80;

/// An FFmpeg 9 player of `url` decodes `video` (a codec name, or none) and `audio` (likewise).
fn assert_decodes(srv: &Server, what: &str, url: &str, video: Option<&str>, audio: Option<&str>) {
    let pre: &[&str] = if url.starts_with("rtsp:") {
        &["-rtsp_transport", "tcp"]
    } else {
        &[]
    };
    let d = ffmpeg9_decode(url, pre, PLAY);
    let expected: std::collections::BTreeSet<String> = video
        .iter()
        .chain(audio.iter())
        .map(|c| c.to_string())
        .collect();
    assert_eq!(
        d.codecs,
        expected,
        "{what}: the player's streams\n{}\n{}",
        d.out.stderr,
        srv.log_tail(30)
    );
    if video.is_some() {
        assert!(
            d.video >= MIN_VIDEO,
            "{what}: {} video frames decoded\n{}\n{}",
            d.video,
            d.out.stderr,
            srv.log_tail(30)
        );
    }
    if audio.is_some() {
        assert!(
            d.audio >= MIN_AUDIO,
            "{what}: {} audio frames decoded\n{}\n{}",
            d.audio,
            d.out.stderr,
            srv.log_tail(30)
        );
    }
}

/// `codec_name`s Debian's ffprobe sees in `url`, and pictures Debian's ffmpeg decodes from it.
fn debian_player(url: &str, pre: &[&str]) -> (std::collections::BTreeSet<String>, usize, String) {
    let (codecs, out) = probe_codecs_with(url, pre);
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-nostdin", "-loglevel", "error"])
        .args(pre)
        .args(["-i", url, "-t", "2", "-map", "0:v:0", "-f", "framemd5", "-"]);
    let played = finish_player(Proc::spawn(&format!("play {url}"), &mut cmd), secs(25.0));
    (
        codecs,
        played.frames,
        format!("{}\n{}", out.stderr, played.out.stderr),
    )
}

/// H.265 + AAC from FFmpeg 9 over Enhanced RTMP: FFmpeg 9 decodes both over RTMP and
/// HTTP-FLV, and Debian's FFmpeg 5.1 plays the H.265 over RTSP (RFC 7798) and SRT (0x24).
#[test]
fn h265_and_aac_published_over_enhanced_rtmp_play_everywhere() {
    let hook = HookServer::start();
    let srv = hooked_server(&hook);
    let mut publisher = encoder_publisher(
        &ffmpeg9(),
        X265,
        AAC,
        &["-f", "flv", &srv.url("live/ehevc")],
    );
    wait_publishing(&hook, &srv, &mut publisher, "ehevc");

    assert_decodes(
        &srv,
        "RTMP",
        &srv.url("live/ehevc"),
        Some("hevc"),
        Some("aac"),
    );
    assert_decodes(
        &srv,
        "HTTP-FLV",
        &srv.flv_url("live/ehevc.flv"),
        Some("hevc"),
        Some("aac"),
    );

    let (codecs, frames, err) =
        debian_player(&srv.rtsp_url("live/ehevc"), &["-rtsp_transport", "tcp"]);
    assert!(
        codecs.contains("hevc") && codecs.contains("aac") && frames >= 40,
        "RTSP: {codecs:?}, {frames} pictures: {err}\n{}",
        srv.log_tail(30)
    );
    let (codecs, frames, err) = debian_player(&srt_play_url(&srv, "ehevc"), &[]);
    assert!(
        codecs.contains("hevc") && codecs.contains("aac") && frames >= 40,
        "SRT: {codecs:?}, {frames} pictures: {err}\n{}",
        srv.log_tail(30)
    );
    publisher.kill();
}

/// H.265 + Opus from FFmpeg 9: FFmpeg 9 decodes both over RTMP and HTTP-FLV; an RTSP player
/// gets both (Opus as RFC 7587 `opus/48000/2`); an SRT player gets both (Opus in MPEG-TS,
/// stream type 0x06 with the `Opus` registration).
#[test]
fn h265_and_opus_published_over_enhanced_rtmp() {
    let hook = HookServer::start();
    let srv = hooked_server(&hook);
    let mut publisher = encoder_publisher(
        &ffmpeg9(),
        X265,
        OPUS,
        &["-f", "flv", &srv.url("live/eopus")],
    );
    wait_publishing(&hook, &srv, &mut publisher, "eopus");

    assert_decodes(
        &srv,
        "RTMP",
        &srv.url("live/eopus"),
        Some("hevc"),
        Some("opus"),
    );
    assert_decodes(
        &srv,
        "HTTP-FLV",
        &srv.flv_url("live/eopus.flv"),
        Some("hevc"),
        Some("opus"),
    );
    let rtsp = srv.rtsp_url("live/eopus");
    assert_decodes(&srv, "RTSP", &rtsp, Some("hevc"), Some("opus"));

    // The play's answer tells an RTMP player which tracks come as Enhanced RTMP (a player
    // that predates it cannot decode them).
    let mut c = RtmpClient::open(srv.port).expect("RTMP client");
    let sid = c
        .connect_and_create_stream("live", &srv.tcurl())
        .expect("connect + createStream");
    c.send_play(sid, "eopus").expect("send play");
    let start = c
        .wait_status("NetStream.Play.Start", Duration::from_secs(10))
        .unwrap_or_else(|| panic!("NetStream.Play.Start: {:?}", c.messages()));
    let description = start.description().unwrap_or_default();
    assert!(
        description.contains("Sent as Enhanced RTMP: video H265, audio Opus."),
        "the play's answer names the Enhanced RTMP tracks: {description:?}"
    );
    let (codecs, frames, err) = debian_player(&srt_play_url(&srv, "eopus"), &[]);
    assert!(
        codecs.contains("hevc") && codecs.contains("opus") && frames >= 40,
        "SRT: {codecs:?}, {frames} pictures: {err}\n{}",
        srv.log_tail(30)
    );
    assert!(
        !srv.log().contains("MPEG-TS cannot carry this track"),
        "the SRT player gets every track: {}",
        srv.log_tail(30)
    );
    publisher.kill();
}

/// AV1 + Opus from FFmpeg 9: FFmpeg 9 decodes both over RTMP and HTTP-FLV, and over RTSP
/// (AV1 in the AOM's RTP payload format, Opus as RFC 7587).
#[test]
fn av1_and_opus_published_over_enhanced_rtmp() {
    let hook = HookServer::start();
    let srv = hooked_server(&hook);
    let mut publisher = encoder_publisher(
        &ffmpeg9(),
        SVT_AV1,
        OPUS,
        &["-f", "flv", &srv.url("live/eav1")],
    );
    wait_publishing(&hook, &srv, &mut publisher, "eav1");

    assert_decodes(
        &srv,
        "RTMP",
        &srv.url("live/eav1"),
        Some("av1"),
        Some("opus"),
    );
    assert_decodes(
        &srv,
        "HTTP-FLV",
        &srv.flv_url("live/eav1.flv"),
        Some("av1"),
        Some("opus"),
    );
    assert_decodes(
        &srv,
        "RTSP",
        &srv.rtsp_url("live/eav1"),
        Some("av1"),
        Some("opus"),
    );
    publisher.kill();
}

/// Debian's FFmpeg 5.1 publishes H.265 (libx265) + AAC over RTSP and over SRT; FFmpeg 9
/// players over RTMP and HTTP-FLV get it as Enhanced RTMP and decode both tracks.
#[test]
fn h265_published_over_rtsp_and_srt_plays_over_enhanced_rtmp() {
    let hook = HookServer::start();
    let srv = hooked_server(&hook);
    let encode = |cmd: &mut Command| {
        cmd.args(["-hide_banner", "-nostdin", "-loglevel", "error", "-re"])
            .args(["-f", "lavfi", "-i", "testsrc=size=320x240:rate=25"])
            .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"])
            .args(["-c:v", "libx265", "-preset", "ultrafast"])
            .args(["-x265-params", "log-level=error:keyint=25"])
            .args([
                "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "64k", "-t", "40",
            ]);
    };
    let mut cmd = Command::new("ffmpeg");
    encode(&mut cmd);
    cmd.args(["-f", "rtsp", "-rtsp_transport", "tcp"])
        .arg(srv.rtsp_url("live/hrtsp"));
    let mut rtsp = Proc::spawn("rtsp publish h265", &mut cmd);
    let mut cmd = Command::new("ffmpeg");
    encode(&mut cmd);
    cmd.args(["-f", "mpegts"]).arg(format!(
        "{}&pkt_size=1316{SRT_OPTS}",
        srv.srt_url("#!::r=live/hsrt,m=publish")
    ));
    let mut srt = Proc::spawn("srt publish h265", &mut cmd);
    wait_publishing(&hook, &srv, &mut rtsp, "hrtsp");
    wait_publishing(&hook, &srv, &mut srt, "hsrt");

    for name in ["hrtsp", "hsrt"] {
        assert_decodes(
            &srv,
            &format!("{name} over RTMP"),
            &srv.url(&format!("live/{name}")),
            Some("hevc"),
            Some("aac"),
        );
        assert_decodes(
            &srv,
            &format!("{name} over HTTP-FLV"),
            &srv.flv_url(&format!("live/{name}.flv")),
            Some("hevc"),
            Some("aac"),
        );
    }
    rtsp.kill();
    srt.kill();
}

/// Opus published over RTSP (RFC 7587, Debian's FFmpeg 5.1 with libopus) beside H.264:
/// FFmpeg 9 decodes both over RTMP (the Opus as Enhanced RTMP, with an OpusHead made from the
/// description) and an RTSP player gets `opus` back.
#[test]
fn opus_published_over_rtsp_plays_over_enhanced_rtmp_and_rtsp() {
    let hook = HookServer::start();
    let srv = hooked_server(&hook);
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-nostdin", "-loglevel", "error", "-re"])
        .args(["-f", "lavfi", "-i", "testsrc=size=320x240:rate=25"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-tune",
            "zerolatency",
        ])
        .args([
            "-g", "25", "-pix_fmt", "yuv420p", "-c:a", "libopus", "-b:a", "64k",
        ])
        .args(["-t", "40", "-f", "rtsp", "-rtsp_transport", "tcp"])
        .arg(srv.rtsp_url("live/ropus"));
    let mut publisher = Proc::spawn("rtsp publish h264+opus", &mut cmd);
    wait_publishing(&hook, &srv, &mut publisher, "ropus");

    assert_decodes(
        &srv,
        "RTMP",
        &srv.url("live/ropus"),
        Some("h264"),
        Some("opus"),
    );
    let (codecs, out) = probe_codecs_with(&srv.rtsp_url("live/ropus"), &["-rtsp_transport", "tcp"]);
    assert_eq!(
        codecs.into_iter().collect::<Vec<_>>(),
        ["h264", "opus"],
        "RTSP: {}\n{}",
        out.stderr,
        srv.log_tail(30)
    );
    publisher.kill();
}
