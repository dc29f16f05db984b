//! The interop matrix: every common client, run as the real program a user would run, publishes
//! or plays at least once, and each player decodes video and audio from a stream whatever
//! protocol it came in on. Publishers: FFmpeg 5.1 (RTMP), GStreamer (`rtmp2sink`, `srtsink`,
//! `rtspclientsink` over TCP), srt-live-transmit (SRT). Players: FFmpeg 5.1, GStreamer
//! (`rtmp2src`, `rtmpsrc`, `souphttpsrc` + `flvdemux`, `rtspsrc` over TCP and UDP with its
//! default depayloaders, `srtsrc`), srt-live-transmit, mpv. tests/run.sh installs them from
//! Debian's packages. docs/protocols.md has the table these tests stand behind.

use std::fs;
use std::process::Command;
use std::time::Duration;

use streamgate_testkit::*;

/// How long to wait for a callback that must come.
const HOOK_WAIT: Duration = Duration::from_secs(15);

/// How long each player reads before it is stopped (its own media time or wall time).
const PLAY_SECONDS: f64 = 3.0;

/// A player decodes at least this many video frames of the 25 fps stream in its run.
const MIN_VIDEO: usize = 25;

/// ... and at least this many audio frames (AAC at 44.1 kHz is 43 a second).
const MIN_AUDIO: usize = 20;

/// The SRT streamid of a publisher or player of `live/{name}`, in the access-control syntax
/// with a literal `#` (as GStreamer, srt-live-transmit and VLC send it) and a token.
fn streamid(name: &str, mode: &str) -> String {
    format!("#!::r=live/{name}?token=abc,m={mode}")
}

/// The server with every protocol on and every hook going to `hook`.
fn server(hook: &HookServer) -> Server {
    Server::start(
        &Config::new()
            .hooks(&hook.url("/rtmp"), "")
            .httpflv_hooks(&hook.url("/httpflv"), "")
            .rtsp_hooks(&hook.url("/rtsp"), "")
            .srt_hooks(&hook.url("/srt"), ""),
    )
}

/// A GStreamer live test source: 320x240 H.264 at 25 fps (a keyframe a second) and mono AAC at
/// 44.1 kHz, each branch ending in `! queue ! {video_to}` / `! queue ! {audio_to}`.
fn gst_sources(video_to: &str, audio_to: &str) -> Vec<String> {
    let pipeline = format!(
        "videotestsrc is-live=true ! video/x-raw,format=I420,width=320,height=240,framerate=25/1 \
         ! x264enc tune=zerolatency key-int-max=25 ! h264parse ! queue ! {video_to} \
         audiotestsrc is-live=true ! audio/x-raw,rate=44100,channels=1 ! avenc_aac ! aacparse \
         ! queue ! {audio_to}"
    );
    pipeline.split_whitespace().map(str::to_string).collect()
}

/// Runs `gst-launch-1.0` with `args` as a publisher.
fn gst_publish(what: &str, args: Vec<String>) -> Proc {
    let mut cmd = Command::new("gst-launch-1.0");
    cmd.arg("-q").args(args);
    Proc::spawn(what, &mut cmd)
}

/// One player of a matrix row: runs the client and reports what it decoded.
type Player<'a> = Box<dyn Fn() -> Got + 'a>;

/// What a player decoded.
#[derive(Debug)]
struct Got {
    video: usize,
    audio: usize,
    log: String,
}

impl Got {
    fn assert_plays(&self, who: &str, srv: &Server) {
        assert!(
            self.video >= MIN_VIDEO && self.audio >= MIN_AUDIO,
            "{who} decoded {} video and {} audio frames:\n{}\nserver log:\n{}",
            self.video,
            self.audio,
            self.log,
            srv.log_tail(40)
        );
    }
}

/// FFmpeg (`exe`) decodes `PLAY_SECONDS` of `url`: frames per stream from framemd5 (stream 0
/// video, 1 audio, as mapped).
fn ffmpeg_play(exe: &str, pre: &[&str], url: &str) -> Got {
    let mut cmd = Command::new(exe);
    cmd.args(["-hide_banner", "-nostdin", "-loglevel", "error"])
        .args(pre)
        .args(["-i", url, "-t", &PLAY_SECONDS.to_string()])
        .args(["-map", "0:v:0", "-map", "0:a:0", "-f", "framemd5", "-"]);
    let out = run(&format!("{exe} {url}"), &mut cmd, secs(30.0));
    framemd5_counts(&out.stdout, out.text())
}

/// Video (stream 0) and audio (stream 1) lines of a framemd5 listing.
fn framemd5_counts(stdout: &str, log: String) -> Got {
    let count = |index: &str| {
        stdout
            .lines()
            .filter(|l| l.split(',').next().map(str::trim) == Some(index))
            .count()
    };
    Got {
        video: count("0"),
        audio: count("1"),
        log,
    }
}

/// GStreamer plays with `source` (elements up to the point where the pipeline splits, ending
/// in an element named `d`) and the video and audio branches after it, for `PLAY_SECONDS` of
/// wall time plus a start-up allowance; frames are counted at two fakesinks.
fn gst_play(source: &str, video: &str, audio: &str) -> Got {
    let pipeline = format!(
        "{source} d. ! queue ! {video} ! fakesink name=vs silent=false \
         d. ! queue ! {audio} ! fakesink name=as silent=false"
    );
    let mut cmd = Command::new("timeout");
    cmd.args(["-k", "3", "-s", "INT", &format!("{}", PLAY_SECONDS + 3.0)])
        .args(["gst-launch-1.0", "-v", "-e"])
        .args(pipeline.split_whitespace());
    let out = run(&format!("gst {source}"), &mut cmd, secs(30.0));
    let count = |sink: &str| {
        out.stdout
            .lines()
            .filter(|l| l.contains(&format!("({sink}:sink)")) && l.contains("chain"))
            .count()
    };
    Got {
        video: count("vs"),
        audio: count("as"),
        log: out.stderr.lines().take(30).collect::<Vec<_>>().join("\n"),
    }
}

/// GStreamer's H.264 and AAC decoding branches after an FLV or MPEG-TS demuxer.
const GST_H264: &str = "h264parse ! avdec_h264";
const GST_AAC: &str = "aacparse ! avdec_aac";

/// mpv plays `url` until it has shown 50 video frames (written as images: each one decoded)
/// while its audio goes to a PCM file.
fn mpv_play(url: &str) -> Got {
    let dir = TempDir::new("mpv");
    let pcm = dir.file("audio.pcm");
    let mut cmd = Command::new("mpv");
    cmd.args(["--no-config", "--really-quiet", "--frames=50"])
        .args(["--vo=image", "--vo-image-format=png"])
        .args(["--audio-format=s16", "--audio-channels=mono"])
        .arg("--audio-samplerate=44100")
        .arg(format!("--vo-image-outdir={}", dir.file("").display()))
        .args(["--ao=pcm", "--ao-pcm-waveheader=no"])
        .arg(format!("--ao-pcm-file={}", pcm.display()))
        .arg(url);
    let out = run(&format!("mpv {url}"), &mut cmd, secs(30.0));
    let images = fs::read_dir(dir.file(""))
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.path().extension().is_some_and(|x| x == "png"))
                .count()
        })
        .unwrap_or(0);
    // Mono 16-bit PCM at 44.1 kHz, counted in AAC frames (1024 samples).
    let pcm_bytes = fs::metadata(&pcm).map(|m| m.len() as usize).unwrap_or(0);
    let audio_frames = pcm_bytes / (1024 * 2);
    Got {
        video: images,
        audio: audio_frames,
        log: out.text(),
    }
}

/// srt-live-transmit reads `url` and sends the MPEG-TS it gets to a local UDP port, where
/// FFmpeg decodes it (`PLAY_SECONDS` of media).
fn slt_play(url: &str) -> Got {
    let port = free_udp_port();
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-nostdin", "-loglevel", "error"])
        .args(["-i", &format!("udp://127.0.0.1:{port}")])
        .args(["-t", &PLAY_SECONDS.to_string()])
        .args(["-map", "0:v:0", "-map", "0:a:0", "-f", "framemd5", "-"]);
    let decoder = Proc::spawn("FFmpeg after srt-live-transmit", &mut cmd);
    let mut slt = Proc::spawn(
        "srt-live-transmit player",
        Command::new("srt-live-transmit").args(["-q", url, &format!("udp://127.0.0.1:{port}")]),
    );
    let out = decoder.finish(secs(30.0));
    slt.kill();
    framemd5_counts(&out.stdout, format!("{}\n{}", out.stderr, slt.stderr()))
}

/// The `url` hook field of an SRT client that sent `streamid` (with the token `abc`) reads
/// back as sent.
fn assert_srt_url(record: &Record, streamid: &str) {
    assert_srt_url_parses(record.field("url"), streamid, Some("abc"));
}

/// An FFmpeg 5.1 RTMP publisher; every player of every protocol decodes video and audio:
/// GStreamer's five players, mpv over RTMP and HTTP-FLV, srt-live-transmit, FFmpeg 9 over
/// every protocol. The SRT players' hooks carry a URL every parser reads.
#[test]
fn an_rtmp_stream_reaches_every_player() {
    let hook = HookServer::start();
    let srv = server(&hook);
    let mut publisher = publish_with(
        &srv.url("live/matrix"),
        120,
        "testsrc=size=320x240:rate=25",
        25,
    );
    hook.wait_call("publish", "matrix", HOOK_WAIT)
        .unwrap_or_else(|| panic!("on_publish:\n{}", srv.log()));
    let rtsp = srv.rtsp_url("live/matrix");
    let srt_port = srv.srt_port.expect("srt");
    let ff9 = ffmpeg9();

    let gst_rtsp = |proto: &str| {
        gst_play(
            &format!("rtspsrc location={rtsp} protocols={proto} name=d"),
            &format!("rtph264depay ! {GST_H264}"),
            &format!("rtpmp4gdepay ! {GST_AAC}"),
        )
    };
    let cases: Vec<(&str, Player)> = vec![
        (
            "GStreamer rtmp2src",
            Box::new(|| {
                gst_play(
                    &format!(
                        "rtmp2src location={} ! flvdemux name=d",
                        srv.url("live/matrix")
                    ),
                    GST_H264,
                    GST_AAC,
                )
            }),
        ),
        (
            "GStreamer rtmpsrc",
            Box::new(|| {
                gst_play(
                    &format!(
                        "rtmpsrc location={} ! flvdemux name=d",
                        srv.url("live/matrix")
                    ),
                    GST_H264,
                    GST_AAC,
                )
            }),
        ),
        (
            "GStreamer souphttpsrc (HTTP-FLV)",
            Box::new(|| {
                gst_play(
                    &format!(
                        "souphttpsrc location={} ! flvdemux name=d",
                        srv.flv_url("live/matrix.flv")
                    ),
                    GST_H264,
                    GST_AAC,
                )
            }),
        ),
        ("GStreamer rtspsrc TCP", Box::new(|| gst_rtsp("tcp"))),
        ("GStreamer rtspsrc UDP", Box::new(|| gst_rtsp("udp"))),
        (
            "GStreamer srtsrc",
            Box::new(|| {
                gst_play(
                    &format!(
                        "srtsrc uri=srt://127.0.0.1:{srt_port} streamid={} ! tsdemux name=d",
                        streamid("matrix", "request")
                    ),
                    GST_H264,
                    GST_AAC,
                )
            }),
        ),
        (
            "srt-live-transmit",
            Box::new(|| {
                slt_play(&format!(
                    "srt://127.0.0.1:{srt_port}?streamid={}",
                    streamid("matrix", "request")
                ))
            }),
        ),
        ("mpv RTMP", Box::new(|| mpv_play(&srv.url("live/matrix")))),
        (
            "mpv HTTP-FLV",
            Box::new(|| mpv_play(&srv.flv_url("live/matrix.flv"))),
        ),
        (
            "FFmpeg 9 RTMP",
            Box::new(|| ffmpeg_play(&ff9, &[], &srv.url("live/matrix"))),
        ),
        (
            "FFmpeg 9 HTTP-FLV",
            Box::new(|| ffmpeg_play(&ff9, &[], &srv.flv_url("live/matrix.flv"))),
        ),
        (
            "FFmpeg 9 RTSP",
            Box::new(|| ffmpeg_play(&ff9, &["-rtsp_transport", "tcp"], &rtsp)),
        ),
        (
            "FFmpeg 9 SRT",
            Box::new(|| ffmpeg_play(&ff9, &[], &srv.srt_url("%23!::r=live/matrix,m=request"))),
        ),
    ];
    for (who, play) in &cases {
        play().assert_plays(who, &srv);
    }

    // Both SRT players sent a literal `#`: their hooks' url reads back as sent.
    let srt_plays = hook.find(|r| r.path == "/srt/play" && r.field("url").contains("token"));
    assert_eq!(srt_plays.len(), 2, "{}", hook.dump());
    for play in &srt_plays {
        assert_srt_url(play, &streamid("matrix", "request"));
    }
    assert!(publisher.running(), "{}", publisher.stderr());
    publisher.kill();
}

/// GStreamer publishes over RTMP (`rtmp2sink`), SRT (`srtsink`, a literal `#` in its streamid)
/// and RTSP over TCP (`rtspclientsink` with its default payloads), srt-live-transmit over SRT;
/// players of other protocols decode each (FFmpeg 5.1, mpv, GStreamer).
#[test]
fn gstreamer_and_srt_live_transmit_publish_to_players_of_other_protocols() {
    let hook = HookServer::start();
    let srv = server(&hook);
    let srt_port = srv.srt_port.expect("srt");

    let mut rtmp2sink = gst_publish(
        "GStreamer rtmp2sink",
        gst_sources(
            "m.",
            &format!(
                "m. flvmux name=m streamable=true ! rtmp2sink location={}",
                srv.url("live/g_rtmp")
            ),
        ),
    );
    // `alignment=7`: seven TS packets (1316 bytes) per buffer, each one SRT message; larger
    // buffers (every keyframe) do not fit a live-mode message and srtsink drops them.
    let srt_pub_id = streamid("g_srt", "publish");
    let mut srtsink = gst_publish(
        "GStreamer srtsink",
        gst_sources(
            "m.",
            &format!("m. mpegtsmux name=m alignment=7 ! srtsink uri=srt://127.0.0.1:{srt_port} streamid={srt_pub_id}"),
        ),
    );
    let mut rtspclientsink = gst_publish(
        "GStreamer rtspclientsink",
        gst_sources(
            "s.sink_0",
            &format!(
                "s.sink_1 rtspclientsink name=s protocols=tcp location={}",
                srv.rtsp_url("live/g_rtsp")
            ),
        ),
    );
    let slt_id = streamid("slt", "publish");
    // srt-live-transmit takes the MPEG-TS FFmpeg sends it over local UDP.
    let ts_port = free_udp_port();
    let mut slt = Proc::spawn(
        "srt-live-transmit publisher",
        Command::new("srt-live-transmit").args([
            "-q".to_string(),
            format!("udp://127.0.0.1:{ts_port}"),
            format!("srt://127.0.0.1:{srt_port}?streamid={slt_id}"),
        ]),
    );
    let mut slt_source = Proc::spawn(
        "FFmpeg feeding srt-live-transmit",
        &mut publisher_command(
            "ffmpeg",
            &format!("udp://127.0.0.1:{ts_port}?pkt_size=1316"),
            120,
            "testsrc=size=320x240:rate=25",
            25,
            "mpegts",
        ),
    );
    for name in ["g_rtmp", "g_srt", "g_rtsp", "slt"] {
        hook.wait_call("publish", name, HOOK_WAIT)
            .unwrap_or_else(|| panic!("on_publish of {name}:\n{}\n{}", hook.dump(), srv.log()));
    }
    let g_srt = hook
        .wait_call("publish", "g_srt", HOOK_WAIT)
        .expect("g_srt");
    assert_srt_url(&g_srt, &srt_pub_id);
    let slt_rec = hook.wait_call("publish", "slt", HOOK_WAIT).expect("slt");
    assert_srt_url(&slt_rec, &slt_id);

    // Give each stream a keyframe in the cache before the first player joins.
    std::thread::sleep(secs(1.5));
    let tcp = ["-rtsp_transport", "tcp"];
    ffmpeg_play("ffmpeg", &tcp, &srv.rtsp_url("live/g_rtmp"))
        .assert_plays("FFmpeg 5.1 RTSP of GStreamer's RTMP", &srv);
    mpv_play(&srv.flv_url("live/g_rtmp.flv"))
        .assert_plays("mpv HTTP-FLV of GStreamer's RTMP", &srv);
    ffmpeg_play("ffmpeg", &[], &srv.url("live/g_srt"))
        .assert_plays("FFmpeg 5.1 RTMP of GStreamer's SRT", &srv);
    gst_play(
        &format!(
            "rtspsrc location={} protocols=tcp name=d",
            srv.rtsp_url("live/g_srt")
        ),
        &format!("rtph264depay ! {GST_H264}"),
        &format!("rtpmp4gdepay ! {GST_AAC}"),
    )
    .assert_plays("GStreamer rtspsrc of GStreamer's SRT", &srv);
    ffmpeg_play("ffmpeg", &[], &srv.flv_url("live/g_rtsp.flv"))
        .assert_plays("FFmpeg 5.1 HTTP-FLV of GStreamer's RTSP", &srv);
    mpv_play(&srv.srt_url("%23!::r=live/g_rtsp,m=request"))
        .assert_plays("mpv SRT of GStreamer's RTSP", &srv);
    gst_play(
        &format!(
            "rtmp2src location={} ! flvdemux name=d",
            srv.url("live/slt")
        ),
        GST_H264,
        GST_AAC,
    )
    .assert_plays("GStreamer rtmp2src of srt-live-transmit's SRT", &srv);
    mpv_play(&srv.rtsp_url("live/slt")).assert_plays("mpv RTSP of srt-live-transmit's SRT", &srv);

    for (p, what) in [
        (&mut rtmp2sink, "rtmp2sink"),
        (&mut srtsink, "srtsink"),
        (&mut rtspclientsink, "rtspclientsink"),
        (&mut slt, "srt-live-transmit"),
        (&mut slt_source, "FFmpeg feeding srt-live-transmit"),
    ] {
        assert!(p.running(), "{what} still publishes: {}", p.stderr());
        p.kill();
    }
    assert!(
        !srv.log().contains("request refused"),
        "nothing was refused:\n{}",
        srv.log()
    );
}

/// FFmpeg 9 publishes H.264 + AAC over RTMP (its chunk streams interleaved as OBS sends them);
/// FFmpeg 5.1 over SRT and GStreamer over RTSP decode it.
#[test]
fn ffmpeg_9_publishes_to_older_players() {
    let hook = HookServer::start();
    let srv = server(&hook);
    let ff9 = ffmpeg9();
    let mut cmd = publisher_command(
        &ff9,
        &srv.url("live/ff9"),
        60,
        "testsrc2=size=320x240:rate=25",
        25,
        "flv",
    );
    let mut publisher = Proc::spawn("FFmpeg 9 publisher", &mut cmd);
    hook.wait_call("publish", "ff9", HOOK_WAIT)
        .unwrap_or_else(|| panic!("on_publish:\n{}", srv.log()));
    std::thread::sleep(secs(1.0));
    ffmpeg_play("ffmpeg", &[], &srv.srt_url("%23!::r=live/ff9,m=request"))
        .assert_plays("FFmpeg 5.1 SRT of FFmpeg 9's RTMP", &srv);
    gst_play(
        &format!(
            "rtspsrc location={} protocols=tcp name=d",
            srv.rtsp_url("live/ff9")
        ),
        &format!("rtph264depay ! {GST_H264}"),
        &format!("rtpmp4gdepay ! {GST_AAC}"),
    )
    .assert_plays("GStreamer rtspsrc of FFmpeg 9's RTMP", &srv);
    assert!(publisher.running(), "{}", publisher.stderr());
    publisher.kill();
}

/// VLC's statistics after playing `url`'s SRT stream (`streamid`) for `seconds`: (video
/// decoded, frames displayed, frames lost), from its `stats` command. VLC refuses to run as
/// root, so it runs as `nobody`, with a home of its own (`home`, kept between runs: the first
/// start in a new home spends seconds on its plugin cache).
fn vlc_srt_stats(
    port: u16,
    streamid: &str,
    seconds: f64,
    home: &TempDir,
) -> (u64, u64, u64, String) {
    use std::io::Write;
    use std::os::unix::process::CommandExt;
    // Its own process group: runuser forks VLC, so killing the child alone would leave VLC
    // running with our end of its stdout open (and the output below never ending).
    let mut child = Command::new("runuser")
        .process_group(0)
        .args(["-u", "nobody", "--", "env"])
        .arg(format!("HOME={}", home.file("").display()))
        .args([
            "cvlc",
            "-I",
            "rc",
            "--rc-fake-tty",
            "--vout=dummy",
            "--aout=dummy",
        ])
        .arg(format!("--streamid={streamid}"))
        .arg(format!("srt://127.0.0.1:{port}"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("runuser and cvlc run (tests/run.sh installs VLC)");
    std::thread::sleep(secs(seconds));
    if let Some(mut stdin) = child.stdin.take() {
        // VLC prints its statistics a moment after the command: quit only after that.
        let _ = stdin.write_all(b"stats\n");
        let _ = stdin.flush();
        std::thread::sleep(secs(1.0));
        let _ = stdin.write_all(b"quit\n");
    }
    let deadline = std::time::Instant::now() + secs(5.0);
    while child.try_wait().ok().flatten().is_none() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    // Whatever of the group is left (nothing, when VLC quit as asked).
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", child.id())])
        .stderr(std::process::Stdio::null())
        .status();
    let out = child.wait_with_output().expect("VLC's output");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let stat = |key: &str| {
        text.lines()
            .find(|l| l.contains(key))
            .and_then(|l| l.rsplit(':').next())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    (
        stat("video decoded"),
        stat("frames displayed"),
        stat("frames lost"),
        text,
    )
}

/// VLC over SRT, joining a stream whose cached GOP (2 s long) is already over a second old,
/// decodes its start without losing frames: the GOP the server sends at once is stamped at the
/// pace of its media, so VLC's SRT receiver releases it as a live source's (before, released
/// all at once, VLC decoded far ahead and dropped 13 to 23 frames in its first 3 s).
#[test]
fn vlc_over_srt_loses_no_frames_at_join() {
    let hook = HookServer::start();
    let srv = server(&hook);
    let srt_port = srv.srt_port.expect("srt");
    let home = TempDir::new("vlc-home");
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(home.file(""), fs::Permissions::from_mode(0o777))
            .expect("VLC's home is writable by nobody");
    }
    // A first start builds VLC's plugin cache in its home, so the measured run starts at once.
    let _ = vlc_srt_stats(srt_port, "live/absent", 2.0, &home);
    let mut publisher = publish_with(&srv.url("live/vlc"), 60, "testsrc=size=320x240:rate=25", 50);
    hook.wait_call("publish", "vlc", HOOK_WAIT)
        .unwrap_or_else(|| panic!("on_publish:\n{}", srv.log()));
    std::thread::sleep(secs(3.2));
    let (decoded, displayed, lost, text) = vlc_srt_stats(srt_port, "live/vlc", 4.0, &home);
    assert!(
        decoded >= 50 && displayed >= 40,
        "VLC decoded {decoded} and displayed {displayed} frames:\n{text}\n{}",
        srv.log_tail(30)
    );
    assert!(lost <= 3, "VLC lost {lost} frames at its start:\n{text}");
    publisher.kill();
}
