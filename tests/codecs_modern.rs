//! End-to-end tests of the modern codecs on the protocols that carry them besides Enhanced
//! RTMP: Opus in MPEG-TS (SRT in and out: stream type 0x06 with the `Opus` registration, as
//! FFmpeg writes it) and AV1 over RTSP (the AOM's RTP payload format for AV1). FFmpeg 9
//! (PyPI's imageio-ffmpeg) publishes and plays; Debian's FFmpeg 5.1 plays Opus over SRT. Every
//! player decodes, and the test counts its decoded frames and checks its codec names.

use std::collections::BTreeSet;
use std::process::Command;

use streamgate_testkit::encoders::*;
use streamgate_testkit::*;

/// Seconds each player decodes.
const PLAY: f64 = 3.0;
/// Video frames a player must decode in [`PLAY`] seconds at 25 fps (the GOP comes first).
const MIN_VIDEO: usize = 50;
/// Opus packets (20 ms) a player must decode in [`PLAY`] seconds.
const MIN_AUDIO: usize = 80;

/// What a player decoded: frames of its first video and first audio stream, and the codec
/// names of the input streams it found.
struct Decoded {
    video: usize,
    audio: usize,
    codecs: BTreeSet<String>,
    stderr: String,
}

/// Decodes `seconds` of `url` with `bin` (`pre` before `-i`), mapping the first video and
/// first audio stream when present, and counts the decoded frames of each (framecrc lines).
fn decode(bin: &str, url: &str, pre: &[&str], seconds: f64) -> Decoded {
    let mut cmd = Command::new(bin);
    cmd.args(["-hide_banner", "-nostdin", "-loglevel", "info"])
        .args(pre)
        .args(["-i", url, "-t", &seconds.to_string()])
        .args(["-map", "0:v:0?", "-map", "0:a:0?", "-f", "framecrc", "-"]);
    let out = run(&format!("{bin} play {url}"), &mut cmd, secs(seconds + 25.0));
    let count = |index: &str| {
        out.stdout
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter(|l| l.split(',').next().map(str::trim) == Some(index))
            .count()
    };
    let inputs: Vec<&str> = out
        .stderr
        .lines()
        .take_while(|l| !l.starts_with("Output #0") && !l.starts_with("Stream mapping"))
        .filter(|l| l.trim_start().starts_with("Stream #0:"))
        .collect();
    let has_video = inputs.iter().any(|l| l.contains(": Video: "));
    let (video, audio) = if has_video {
        (count("0"), count("1"))
    } else {
        (0, count("0"))
    };
    let codecs = inputs
        .iter()
        .filter_map(|l| {
            let kind = l
                .split(": Video: ")
                .nth(1)
                .or(l.split(": Audio: ").nth(1))?;
            Some(kind.split([' ', ',']).next()?.to_owned())
        })
        .collect();
    Decoded {
        video,
        audio,
        codecs,
        stderr: out.stderr,
    }
}

/// `bin` playing `url` decodes `video` and `audio` (codec names): exactly those streams, and
/// at least [`MIN_VIDEO`] / [`MIN_AUDIO`] frames of each.
fn assert_decodes(
    srv: &Server,
    bin: &str,
    what: &str,
    url: &str,
    video: Option<&str>,
    audio: Option<&str>,
) {
    let pre: &[&str] = if url.starts_with("rtsp:") {
        &["-rtsp_transport", "tcp"]
    } else {
        &[]
    };
    let d = decode(bin, url, pre, PLAY);
    let expected: BTreeSet<String> = video
        .iter()
        .chain(audio.iter())
        .map(|c| c.to_string())
        .collect();
    assert_eq!(
        d.codecs,
        expected,
        "{what}: the player's streams\n{}\n{}",
        d.stderr,
        srv.log_tail(30)
    );
    if video.is_some() {
        assert!(
            d.video >= MIN_VIDEO,
            "{what}: {} video frames decoded\n{}\n{}",
            d.video,
            d.stderr,
            srv.log_tail(30)
        );
    }
    if audio.is_some() {
        assert!(
            d.audio >= MIN_AUDIO,
            "{what}: {} audio frames decoded\n{}\n{}",
            d.audio,
            d.stderr,
            srv.log_tail(30)
        );
    }
}

/// Opus published over SRT (FFmpeg 9, `-c:a libopus -f mpegts`: stream type 0x06 with the
/// `Opus` registration) beside H.264: FFmpeg 9 decodes both over RTMP (Opus as Enhanced RTMP),
/// HTTP-FLV and RTSP (RFC 7587), and Debian's FFmpeg 5.1 over SRT (Opus in MPEG-TS again).
#[test]
fn opus_published_over_srt_plays_everywhere() {
    let hook = HookServer::start();
    let srv = hooked_server(&hook);
    let f9 = ffmpeg9();
    let url = srt_publish_url(&srv, "sopus");
    let mut publisher = encoder_publisher(&f9, X264, OPUS, &["-f", "mpegts", &url]);
    wait_publishing(&hook, &srv, &mut publisher, "sopus");

    assert_decodes(
        &srv,
        &f9,
        "RTMP",
        &srv.url("live/sopus"),
        Some("h264"),
        Some("opus"),
    );
    assert_decodes(
        &srv,
        &f9,
        "HTTP-FLV",
        &srv.flv_url("live/sopus.flv"),
        Some("h264"),
        Some("opus"),
    );
    assert_decodes(
        &srv,
        &f9,
        "RTSP",
        &srv.rtsp_url("live/sopus"),
        Some("h264"),
        Some("opus"),
    );
    assert_decodes(
        &srv,
        "ffmpeg",
        "SRT",
        &srt_play_url(&srv, "sopus"),
        Some("h264"),
        Some("opus"),
    );
    // GStreamer's srtsrc + tsdemux reads the Opus by its registration and opusdec decodes
    // it (buffers reaching each sink, as the interop matrix counts them).
    let (video, audio, log) = gst_srt_play(&srv, "sopus");
    assert!(
        video >= MIN_VIDEO && audio >= MIN_AUDIO,
        "GStreamer srtsrc: {video} pictures, {audio} Opus frames\n{log}\n{}",
        srv.log_tail(30)
    );
    assert!(
        !srv.log().contains("streams this server cannot carry"),
        "the publisher's Opus is read: {}",
        srv.log_tail(30)
    );
    publisher.kill();
}

/// GStreamer 1.22 plays `name` over SRT for [`PLAY`] seconds (`srtsrc`, `tsdemux`, H.264
/// and Opus decoders): (decoded pictures, decoded audio buffers, its log).
fn gst_srt_play(srv: &Server, name: &str) -> (usize, usize, String) {
    let url = srv.srt_url("");
    let uri = url.split('?').next().unwrap_or_default();
    let pipeline = format!(
        "srtsrc uri={uri} streamid=#!::r=live/{name},m=request latency=120 ! tsdemux name=d \
         d. ! queue ! h264parse ! avdec_h264 ! fakesink name=vs silent=false \
         d. ! queue ! opusparse ! opusdec ! fakesink name=as silent=false"
    );
    let mut cmd = Command::new("timeout");
    cmd.args(["-k", "3", "-s", "INT", &format!("{}", PLAY + 3.0)])
        .args(["gst-launch-1.0", "-v", "-e"])
        .args(pipeline.split_whitespace());
    let out = run(&format!("gst srtsrc {name}"), &mut cmd, secs(30.0));
    let count = |sink: &str| {
        out.stdout
            .lines()
            .filter(|l| l.contains(&format!("({sink}:sink)")) && l.contains("chain"))
            .count()
    };
    (count("vs"), count("as"), out.stderr)
}

/// Opus published over Enhanced RTMP (FFmpeg 9, with H.265) and over RTSP (Debian's FFmpeg
/// 5.1, RFC 7587, with H.264) reaches SRT players: Debian's FFmpeg 5.1 decodes the Opus and
/// the video from the MPEG-TS the server writes, and no session says a track is left out.
#[test]
fn opus_published_over_rtmp_and_rtsp_plays_over_srt() {
    let hook = HookServer::start();
    let srv = hooked_server(&hook);
    let f9 = ffmpeg9();
    let rtmp = srv.url("live/ropus");
    let mut from_rtmp = encoder_publisher(&f9, X265, OPUS, &["-f", "flv", &rtmp]);
    let rtsp = srv.rtsp_url("live/topus");
    let mut from_rtsp = encoder_publisher(
        "ffmpeg",
        X264,
        OPUS,
        &["-f", "rtsp", "-rtsp_transport", "tcp", &rtsp],
    );
    wait_publishing(&hook, &srv, &mut from_rtmp, "ropus");
    wait_publishing(&hook, &srv, &mut from_rtsp, "topus");

    assert_decodes(
        &srv,
        "ffmpeg",
        "RTMP to SRT",
        &srt_play_url(&srv, "ropus"),
        Some("hevc"),
        Some("opus"),
    );
    assert_decodes(
        &srv,
        "ffmpeg",
        "RTSP to SRT",
        &srt_play_url(&srv, "topus"),
        Some("h264"),
        Some("opus"),
    );
    assert!(
        !srv.log().contains("MPEG-TS cannot carry this track"),
        "no SRT player is left without its Opus: {}",
        srv.log_tail(30)
    );
    from_rtmp.kill();
    from_rtsp.kill();
}

/// AV1 + Opus published over Enhanced RTMP (FFmpeg 9) plays over RTSP: FFmpeg 9 decodes the
/// AV1 (the AOM's RTP payload format, `AV1/90000`) and the Opus (RFC 7587) over TCP and UDP.
#[test]
fn av1_published_over_rtmp_plays_over_rtsp() {
    let hook = HookServer::start();
    let srv = hooked_server(&hook);
    let f9 = ffmpeg9();
    let rtmp = srv.url("live/rav1");
    let mut publisher = encoder_publisher(&f9, SVT_AV1, OPUS, &["-f", "flv", &rtmp]);
    wait_publishing(&hook, &srv, &mut publisher, "rav1");

    let rtsp = srv.rtsp_url("live/rav1");
    assert_decodes(&srv, &f9, "RTSP over TCP", &rtsp, Some("av1"), Some("opus"));
    let d = decode(&f9, &rtsp, &["-rtsp_transport", "udp"], PLAY);
    assert!(
        d.video >= MIN_VIDEO && d.audio >= MIN_AUDIO && d.codecs.contains("av1"),
        "RTSP over UDP: {} pictures, {} audio frames, {:?}\n{}\n{}",
        d.video,
        d.audio,
        d.codecs,
        d.stderr,
        srv.log_tail(30)
    );
    assert!(
        !srv.log().contains("RTSP cannot carry this track"),
        "no RTSP player is left without its AV1: {}",
        srv.log_tail(30)
    );
    publisher.kill();
}

/// AV1 published over RTSP (FFmpeg 9, `-strict experimental`: its AV1 RTP packetizer is
/// marked experimental) plays over RTMP and HTTP-FLV (Enhanced RTMP `av01`, with an
/// AV1CodecConfigurationRecord made from the in-band sequence header) and over RTSP again.
#[test]
fn av1_published_over_rtsp_plays_over_rtmp_and_rtsp() {
    let hook = HookServer::start();
    let srv = hooked_server(&hook);
    let f9 = ffmpeg9();
    let rtsp = srv.rtsp_url("live/tav1");
    let mut publisher = encoder_publisher(
        &f9,
        SVT_AV1,
        OPUS,
        &[
            "-strict",
            "experimental",
            "-f",
            "rtsp",
            "-rtsp_transport",
            "tcp",
            &rtsp,
        ],
    );
    wait_publishing(&hook, &srv, &mut publisher, "tav1");

    assert_decodes(
        &srv,
        &f9,
        "RTMP",
        &srv.url("live/tav1"),
        Some("av1"),
        Some("opus"),
    );
    assert_decodes(
        &srv,
        &f9,
        "HTTP-FLV",
        &srv.flv_url("live/tav1.flv"),
        Some("av1"),
        Some("opus"),
    );
    assert_decodes(&srv, &f9, "RTSP", &rtsp, Some("av1"), Some("opus"));
    publisher.kill();
}

/// AV1 over SRT is not carried: no client here reads AV1 back from MPEG-TS (FFmpeg 9 writes
/// it as unregistered private data and demuxes that as `bin_data`). An SRT player of an AV1 +
/// Opus stream gets the Opus, its PMT declares no video, and its session says why.
#[test]
fn av1_is_left_out_for_srt_players_and_said_so() {
    let hook = HookServer::start();
    let srv = hooked_server(&hook);
    let f9 = ffmpeg9();
    let rtmp = srv.url("live/sav1");
    let mut publisher = encoder_publisher(&f9, SVT_AV1, OPUS, &["-f", "flv", &rtmp]);
    wait_publishing(&hook, &srv, &mut publisher, "sav1");

    let url = srt_play_url(&srv, "sav1");
    let d = decode("ffmpeg", &url, &[], PLAY);
    assert_eq!(
        d.codecs.iter().map(String::as_str).collect::<Vec<_>>(),
        ["opus"],
        "SRT: the PMT declares the Opus only\n{}\n{}",
        d.stderr,
        srv.log_tail(30)
    );
    assert!(
        d.audio >= MIN_AUDIO,
        "SRT: {} audio frames\n{}",
        d.audio,
        d.stderr
    );
    assert!(
        srv.log()
            .lines()
            .any(|l| l.contains("MPEG-TS cannot carry this track") && l.contains("Av1")),
        "the SRT player's session says why it gets no video: {}",
        srv.log_tail(30)
    );
    publisher.kill();
}

/// GStreamer 1.22 publishes H.264 + Opus over SRT (`opusenc`, `mpegtsmux alignment=7`, which
/// writes the same registration and extension descriptors as FFmpeg): FFmpeg 9 decodes both
/// over RTMP, and the publisher's Opus is read, not reported as an unread stream type.
#[test]
fn gstreamer_publishes_opus_over_srt() {
    let hook = HookServer::start();
    let srv = hooked_server(&hook);
    let f9 = ffmpeg9();
    let url = srv.srt_url("");
    let uri = url.split('?').next().unwrap_or_default();
    let pipeline = format!(
        "videotestsrc is-live=true ! video/x-raw,format=I420,width=320,height=240,framerate=25/1 \
         ! x264enc tune=zerolatency key-int-max=25 ! h264parse ! queue ! m. \
         audiotestsrc is-live=true ! audio/x-raw,rate=48000,channels=2 ! opusenc ! opusparse \
         ! queue ! m. mpegtsmux name=m alignment=7 ! srtsink uri={uri} \
         streamid=#!::r=live/gopus,m=publish"
    );
    let mut cmd = Command::new("gst-launch-1.0");
    cmd.arg("-q").args(pipeline.split_whitespace());
    let mut publisher = Proc::spawn("GStreamer srtsink opus", &mut cmd);
    wait_publishing(&hook, &srv, &mut publisher, "gopus");

    assert_decodes(
        &srv,
        &f9,
        "RTMP",
        &srv.url("live/gopus"),
        Some("h264"),
        Some("opus"),
    );
    assert!(
        !srv.log().contains("streams this server cannot carry"),
        "the publisher's Opus is read: {}",
        srv.log_tail(30)
    );
    publisher.kill();
}

/// The metadata an SRT publisher's stream gets (MPEG-TS has none) names its Opus track, as an
/// RTMP publisher's `onMetaData` does (`audiocodecid`: the FourCC `Opus` as a number), so an
/// FLV player of an Opus-only stream is told at once that no video follows (the empty
/// `videocodecid` object FFmpeg's FLV demuxer reads) instead of waiting its analysis time.
#[test]
fn an_srt_publishers_opus_is_named_in_the_flv_metadata() {
    use std::io::{Read, Write};

    let hook = HookServer::start();
    let srv = hooked_server(&hook);
    let f9 = ffmpeg9();
    let url = srt_publish_url(&srv, "aopus");
    let mut cmd = Command::new(&f9);
    cmd.args(["-hide_banner", "-nostdin", "-loglevel", "error", "-re"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
        .args(OPUS)
        .args(["-t", "40", "-f", "mpegts", &url]);
    let mut publisher = Proc::spawn("ffmpeg9 publish opus over srt", &mut cmd);
    wait_publishing(&hook, &srv, &mut publisher, "aopus");

    let port = srv.httpflv_port.expect("HTTP-FLV");
    let mut s = connect(port).expect("HTTP-FLV port");
    s.write_all(b"GET /live/aopus.flv HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .expect("request");
    let mut got = Vec::new();
    let mut buf = [0u8; 16384];
    while got.len() < 32 * 1024 {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    let find = |needle: &[u8]| got.windows(needle.len()).position(|w| w == needle);
    // `audiocodecid`, AMF0 number 0x4F707573 ('Opus').
    let mut opus_id = b"audiocodecid\x00".to_vec();
    opus_id.extend_from_slice(&f64::from(u32::from_be_bytes(*b"Opus")).to_be_bytes());
    assert!(
        find(&opus_id).is_some(),
        "onMetaData names the Opus track: {:?}\n{}",
        String::from_utf8_lossy(&got[..got.len().min(600)]),
        srv.log_tail(30)
    );
    // The empty `videocodecid` object (AMF0 object 0x03, end 00 00 09).
    assert!(
        find(b"videocodecid\x03\x00\x00\x09").is_some(),
        "the player is told no video follows: {:?}",
        String::from_utf8_lossy(&got[..got.len().min(600)])
    );
    publisher.kill();
}

/// Opus of six channels (FFmpeg 9 over Enhanced RTMP) is more than RTSP carries (RFC 7587 is
/// stereo at most): an RTSP player's description leaves it out and says so in its session
/// information line, which FFmpeg reads as the input's `comment`; the video plays.
#[test]
fn a_track_rtsp_cannot_carry_is_named_in_the_description() {
    let hook = HookServer::start();
    let srv = hooked_server(&hook);
    let f9 = ffmpeg9();
    let rtmp = srv.url("live/surround");
    let surround = &[
        "-c:a",
        "libopus",
        "-b:a",
        "128k",
        "-ac",
        "6",
        "-mapping_family",
        "1",
    ];
    let mut publisher = encoder_publisher(&f9, X264, surround, &["-f", "flv", &rtmp]);
    wait_publishing(&hook, &srv, &mut publisher, "surround");

    let url = srv.rtsp_url("live/surround");
    let out = run(
        "ffprobe the RTSP description",
        Command::new("ffprobe").args([
            "-v",
            "error",
            "-rtsp_transport",
            "tcp",
            "-show_entries",
            "format_tags=comment:stream=codec_name",
            "-of",
            "default=noprint_wrappers=1",
            &url,
        ]),
        secs(20.0),
    );
    let text = format!("{}{}", out.stdout, out.stderr);
    assert!(
        text.contains("Left out (RTSP cannot carry them): audio Opus."),
        "the description names the track it leaves out: {text}\n{}",
        srv.log_tail(30)
    );
    assert!(
        text.contains("codec_name=h264") && !text.contains("codec_name=opus"),
        "only the video is described: {text}"
    );
    let d = decode("ffmpeg", &url, &["-rtsp_transport", "tcp"], PLAY);
    assert!(
        d.video >= MIN_VIDEO,
        "RTSP: {} pictures\n{}",
        d.video,
        d.stderr
    );
    publisher.kill();
}
