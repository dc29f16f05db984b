//! Real HLS players against the server, for a stream published over RTMP, RTSP and SRT:
//!
//! - hls.js (`tests/browser/node_modules/hls.js`, installed by `tests/run.sh`) in Debian's
//!   Chromium, headless, in low-latency mode: `currentTime` advances by several seconds at the
//!   source's size, hls.js loaded partial segments, and its latency to the live edge is
//!   printed (`hls.latency`, and the wall clock against `hls.playingDate`, which comes from
//!   `EXT-X-PROGRAM-DATE-TIME`);
//! - ffprobe and ffmpeg reading the playlist: codecs and size right, seconds of frames decoded
//!   without an error, for fMP4 and for the MPEG-TS container;
//! - GStreamer 1.22's HLS demuxers: `hlsdemux2` (gstreamer1.0-plugins-good) for CMAF fMP4 and
//!   `hlsdemux` (gstreamer1.0-plugins-bad) for MPEG-TS segments, decoding video.
//!
//! Every request of every player goes through the kit's [`HlsProxy`], which checks each media
//! playlist served against the RFC 8216 / 8216bis rules players rely on; each test asserts it
//! saw media playlists and no violation (and, for hls.js, blocking reloads).

use std::process::Command;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use streamgate_testkit::browser::{encode_component, Browser, PageServer, Report};
use streamgate_testkit::hls::{HlsProxy, LlViewer, ProxyReport};
use streamgate_testkit::*;

/// The size of [`TESTSRC`].
const WIDTH: u32 = 640;
const HEIGHT: u32 = 360;

/// How far the browser's `currentTime` must advance.
const MIN_ADVANCE_S: f64 = 4.0;

/// How long a publisher runs at most (each test kills its own once done).
const PUBLISH_S: u32 = 90;

/// Browser and GStreamer tests one at a time: the machines the suite runs on have few cores,
/// and a starved player is a false failure.
static HEAVY: Mutex<()> = Mutex::new(());

fn heavy() -> MutexGuard<'static, ()> {
    HEAVY.lock().unwrap_or_else(PoisonError::into_inner)
}

/// How the stream reaches the server.
#[derive(Clone, Copy, Debug)]
enum Ingest {
    Rtmp,
    Rtsp,
    Srt,
}

/// A server with RTMP, RTSP, SRT and HLS (`hls_options` added to `<hls>`), no hooks.
fn server(hls_options: &str) -> Server {
    Server::start(&Config::new().rtsp().srt().hls(hls_options))
}

/// FFmpeg publishing the synthetic 640x360 H.264 + AAC stream to `live/{name}` over `ingest`,
/// in real time, a keyframe a second.
fn publisher(srv: &Server, ingest: Ingest, name: &str) -> Proc {
    let (format, url): (&[&str], String) = match ingest {
        Ingest::Rtmp => (&["-f", "flv"], srv.url(&format!("live/{name}"))),
        Ingest::Rtsp => (
            &["-f", "rtsp", "-rtsp_transport", "tcp"],
            format!(
                "rtsp://127.0.0.1:{}/live/{name}",
                srv.rtsp_port.expect("RTSP is enabled")
            ),
        ),
        Ingest::Srt => (&["-f", "mpegts"], srt_publish_url(srv, name)),
    };
    let output: Vec<&str> = format.iter().copied().chain([url.as_str()]).collect();
    let mut cmd = publisher_command_to("ffmpeg", PUBLISH_S, TESTSRC, 25, &output);
    Proc::spawn(&format!("publish {ingest:?} {url}"), &mut cmd)
}

/// A published stream, its server and the validating proxy in front of the server's HLS port.
struct Live {
    srv: Server,
    proxy: HlsProxy,
    publisher: Proc,
    name: String,
}

impl Live {
    /// Starts the server, the publisher and the proxy, and waits until the stream's media
    /// playlist lists two complete segments (asked of the server directly, not through the
    /// proxy).
    fn start(ingest: Ingest, name: &str, hls_options: &str) -> Live {
        let srv = server(hls_options);
        let proxy = HlsProxy::start(srv.hls_port.expect("HLS is enabled"));
        let mut publisher = publisher(&srv, ingest, name);
        let index = srv.hls_url(&format!("live/{name}/index.m3u8"));
        let mut last = String::new();
        // Live, and two complete segments listed: players that start on a playlist without
        // any (ffmpeg's) end at once.
        let live = poll(Duration::from_secs(30), || match LlViewer::start(&index) {
            Ok(mut viewer) => {
                let media = viewer.media.clone();
                let answer = viewer.get(&media);
                last = format!("{} {}", answer.status, answer.text());
                (answer.status == 200 && answer.text().matches("#EXTINF").count() >= 2)
                    .then_some(())
            }
            Err(answer) => {
                last = format!("{} {}", answer.status, answer.text());
                None
            }
        });
        if live.is_none() {
            publisher.kill();
            panic!(
                "GET {index} did not list two segments within 30 s of the {ingest:?} publish; \
                 last answer: {last}\n---- publisher stderr ----\n{}\n---- server log ----\n{}",
                publisher.stderr(),
                srv.log_tail(40)
            );
        }
        Live {
            srv,
            proxy,
            publisher,
            name: name.to_owned(),
        }
    }

    /// The stream's `index.m3u8`, through the proxy.
    fn url(&self) -> String {
        self.proxy.url(&format!("live/{}/index.m3u8", self.name))
    }

    /// What went on, for a failure message.
    fn context(&mut self) -> String {
        format!(
            "publisher running: {}; its stderr:\n{}\nproxy: {:?}\n---- server log ----\n{}",
            self.publisher.running(),
            self.publisher.stderr(),
            self.proxy.report(),
            self.srv.log_tail(40)
        )
    }

    /// The media playlist carries `EXT-X-PROGRAM-DATE-TIME`, and the proxy saw at least `min`
    /// media playlists, none breaking a rule, and no answer other than `200`.
    fn assert_served(&self, min: usize) -> ProxyReport {
        // The media playlist ties its segments to the wall clock, which hls.js's
        // `playingDate` (and a player's latency display) needs.
        let index = self.srv.hls_url(&format!("live/{}/index.m3u8", self.name));
        let mut viewer = LlViewer::start(&index).unwrap_or_else(|a| panic!("{index}: {a:?}"));
        let media = viewer.media.clone();
        let playlist = viewer.get(&media).text();
        assert!(
            playlist.contains("#EXT-X-PROGRAM-DATE-TIME:"),
            "no EXT-X-PROGRAM-DATE-TIME in the media playlist:\n{playlist}"
        );
        let report = self.proxy.assert_valid(min);
        let refused: Vec<_> = report.statuses.iter().filter(|(s, _)| **s != 200).collect();
        assert!(
            refused.is_empty(),
            "answers other than 200 through the proxy: {refused:?} ({report:?})"
        );
        report
    }
}

// ------------------------------------------------------------------------------------------
// hls.js in Chromium

/// Report kinds that mean the page saw something go wrong.
const ERROR_KINDS: &[&str] = &[
    "fatal",
    "js-error",
    "hls-fatal",
    "video-error",
    "play-rejected",
];

/// What the wait for playback saw.
enum Outcome {
    /// `seconds` of playback on reports showing the source size, after hls.js loaded partial
    /// segments.
    Played {
        seconds: f64,
    },
    /// The page reported an error.
    Error(Report),
    /// Chromium exited by itself.
    BrowserExited,
    TimedOut,
}

fn has_source_size(r: &Report) -> bool {
    r.kind() == "state"
        && r.num("videoWidth") == Some(f64::from(WIDTH))
        && r.num("videoHeight") == Some(f64::from(HEIGHT))
}

/// Seconds of playback the reports show at the source size: the sum of `currentTime`'s
/// steps forward between consecutive reports, each counted no further than the wall clock
/// went (so that hls.js seeking to the live edge is not taken for playback).
fn played(reports: &[Report]) -> f64 {
    let sized: Vec<&Report> = reports.iter().filter(|r| has_source_size(r)).collect();
    sized
        .windows(2)
        .filter_map(|w| {
            let step = w[1].num("currentTime")? - w[0].num("currentTime")?;
            let wall = (w[1].at - w[0].at).as_secs_f64();
            (step > 0.0).then(|| step.min(wall * 1.25 + 0.05))
        })
        .sum()
}

/// Watches the reports until `MIN_ADVANCE_S` of playback at the source size, with parts
/// loaded.
fn watch(page: &PageServer, browser: &mut Browser, timeout: Duration) -> Outcome {
    let end = Instant::now() + timeout;
    loop {
        let reports = page.reports();
        if let Some(r) = reports.iter().find(|r| ERROR_KINDS.contains(&r.kind())) {
            return Outcome::Error(r.clone());
        }
        let seconds = played(&reports);
        let last = reports.iter().rfind(|r| has_source_size(r));
        if seconds >= MIN_ADVANCE_S && last.is_some_and(|r| r.num("parts").unwrap_or(0.0) > 0.0) {
            return Outcome::Played { seconds };
        }
        if !browser.running() {
            return Outcome::BrowserExited;
        }
        if Instant::now() >= end {
            return Outcome::TimedOut;
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// The median of `values` (none when empty).
fn median(mut values: Vec<f64>) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied()
}

/// hls.js in low-latency mode plays the stream published over `ingest` through the proxy.
fn hlsjs_plays(ingest: Ingest, name: &str) {
    let hlsjs = repo_file("tests/browser/node_modules/hls.js/dist/hls.js");
    assert!(
        hlsjs.is_file(),
        "{} is missing: run `bash tests/run.sh` (it runs npm in tests/browser)",
        hlsjs.display()
    );
    let _heavy = heavy();
    let mut live = Live::start(ingest, name, "");
    let page = PageServer::start(&[("/hls.js", "node_modules/hls.js/dist/hls.js")]);
    let page_url = page.url(&format!(
        "/hls_player.html?src={}",
        encode_component(&live.url())
    ));
    let started = Instant::now();
    let mut browser = Browser::open(&page_url);
    let outcome = watch(&page, &mut browser, Duration::from_secs(40));
    let elapsed = started.elapsed();
    browser.kill();

    let context = |live: &mut Live, browser: &Browser| {
        format!(
            "page {page_url}\n{}\n{}---- chromium stderr ----\n{}\n---- end of chromium stderr ----",
            live.context(),
            page.dump(),
            browser.stderr()
        )
    };
    let seconds = match outcome {
        Outcome::Played { seconds } => seconds,
        Outcome::Error(r) => panic!(
            "the page reported an error ({}: {:?})\n{}",
            r.kind(),
            r.get("error"),
            context(&mut live, &browser)
        ),
        Outcome::BrowserExited => {
            panic!(
                "chromium exited by itself\n{}",
                context(&mut live, &browser)
            )
        }
        Outcome::TimedOut => panic!(
            "within {:.0} s, the reports did not show {MIN_ADVANCE_S} s of playback at \
             {WIDTH}x{HEIGHT} with partial segments loaded\n{}",
            elapsed.as_secs_f64(),
            context(&mut live, &browser)
        ),
    };
    let reports = page.reports();
    // hls.js saw a low-latency playlist: parts and blocking reloads offered.
    let level = reports
        .iter()
        .rfind(|r| r.kind() == "hls-level")
        .unwrap_or_else(|| panic!("no level loaded\n{}", page.dump()));
    assert_eq!(level.get("live"), Some("true"), "{level:?}");
    assert_eq!(level.get("canBlockReload"), Some("true"), "{level:?}");
    assert!(level.num("partTarget").unwrap_or(0.0) > 0.0, "{level:?}");
    let proxied = live.assert_served(5);
    assert!(
        proxied.blocking_answers > 0,
        "hls.js in low-latency mode made no blocking reload: {proxied:?}"
    );

    // The latency to the live edge, over the last two seconds of playback.
    let last: Vec<&Report> = reports
        .iter()
        .filter(|r| has_source_size(r))
        .rev()
        .take(8)
        .collect();
    let latency = median(last.iter().filter_map(|r| r.num("latency")).collect());
    let pdt = median(last.iter().filter_map(|r| r.num("pdtLatencyMs")).collect());
    assert!(
        pdt.is_some(),
        "hls.js had no playingDate (from EXT-X-PROGRAM-DATE-TIME)\n{}",
        page.dump()
    );
    let parts = last.first().and_then(|r| r.num("parts")).unwrap_or(0.0);
    eprintln!(
        "hls.js {} over {ingest:?}: {seconds:.1} s played at {WIDTH}x{HEIGHT} within {:.1} s of \
         opening the page; {parts} parts loaded; {} media playlists ({} blocking \
         reloads) through the proxy; latency to the live edge: hls.latency {} s, wall clock - \
         playingDate {} ms (medians of the last reports)",
        reports
            .iter()
            .find(|r| r.kind() == "start")
            .and_then(|r| r.get("version"))
            .unwrap_or("?"),
        elapsed.as_secs_f64(),
        proxied.media_playlists,
        proxied.blocking_answers,
        latency.map_or("?".into(), |l| format!("{l:.3}")),
        pdt.map_or("?".into(), |l| format!("{l:.0}")),
    );
}

#[test]
fn hlsjs_plays_a_stream_published_over_rtmp() {
    hlsjs_plays(Ingest::Rtmp, "js_rtmp");
}

#[test]
fn hlsjs_plays_a_stream_published_over_rtsp() {
    hlsjs_plays(Ingest::Rtsp, "js_rtsp");
}

#[test]
fn hlsjs_plays_a_stream_published_over_srt() {
    hlsjs_plays(Ingest::Srt, "js_srt");
}

// ------------------------------------------------------------------------------------------
// ffprobe and ffmpeg

/// ffprobe finds H.264 and AAC at the source's size, and ffmpeg decodes 4 s of video without
/// an error, through the proxy.
fn ffmpeg_reads(ingest: Ingest, name: &str, hls_options: &str) {
    let mut live = Live::start(ingest, name, hls_options);
    let url = live.url();
    let (codecs, probed) = probe_codecs_out(&url);
    let want: std::collections::BTreeSet<String> =
        ["aac", "h264"].iter().map(|s| (*s).to_owned()).collect();
    assert_eq!(
        codecs,
        want,
        "ffprobe {url}: {}\n{}",
        probed.text(),
        live.context()
    );
    let (size, probed) = probe_size(&url);
    assert_eq!(
        size,
        Some((WIDTH, HEIGHT)),
        "ffprobe {url}: {}\n{}",
        probed.text(),
        live.context()
    );
    let played = play(&url, 4.0, Duration::from_secs(30));
    assert!(
        played.out.success() && played.out.stderr.trim().is_empty(),
        "ffmpeg decoding {url}: {:?}\n{}\n{}",
        played.out.status,
        played.out.stderr,
        live.context()
    );
    // 4 s at 25 fps.
    assert!(
        played.frames >= 90,
        "ffmpeg decoded {} frames of 4 s at 25 fps from {url}\n{}",
        played.frames,
        live.context()
    );
    let proxied = live.assert_served(3);
    eprintln!(
        "ffmpeg over {ingest:?} {hls_options}: {codecs:?} at {WIDTH}x{HEIGHT}, {} frames \
         decoded; {} media playlists through the proxy",
        played.frames, proxied.media_playlists
    );
}

#[test]
fn ffmpeg_reads_a_stream_published_over_rtmp() {
    ffmpeg_reads(Ingest::Rtmp, "ff_rtmp", "");
}

#[test]
fn ffmpeg_reads_a_stream_published_over_rtsp() {
    ffmpeg_reads(Ingest::Rtsp, "ff_rtsp", "");
}

#[test]
fn ffmpeg_reads_a_stream_published_over_srt() {
    ffmpeg_reads(Ingest::Srt, "ff_srt", "");
}

#[test]
fn ffmpeg_reads_mpegts_segments() {
    ffmpeg_reads(Ingest::Rtmp, "ff_ts", "<container>mpegts</container>");
}

// ------------------------------------------------------------------------------------------
// GStreamer

/// The size of one decoded 640x360 I420 frame: what `fakesink silent=false` prints for each.
const I420_FRAME: &str = "345600 bytes";

/// Video frames decoded so far: the buffers of 640x360 I420 the video fakesink (`v`) got.
fn gst_video_frames(stdout: &str) -> usize {
    stdout
        .lines()
        .filter(|l| l.contains("GstFakeSink:v: last-message = chain") && l.contains(I420_FRAME))
        .count()
}

/// Runs `gst-launch-1.0 -v` with `pipeline` until its video sink has had 3 s of frames (at
/// the clock's pace, `sync=true`), then stops it; fails on an error or when 30 s pass first.
/// Returns its output.
fn gst_decodes(live: &mut Live, pipeline: &[String]) -> String {
    let mut cmd = Command::new("gst-launch-1.0");
    cmd.arg("-v").args(pipeline);
    let mut gst = Proc::spawn("gst-launch-1.0", &mut cmd);
    let want = 75;
    let decoded = poll(Duration::from_secs(30), || {
        let out = gst.stdout();
        if out.contains("ERROR:") || !gst.running() {
            return Some(false);
        }
        (gst_video_frames(&out) >= want).then_some(true)
    });
    gst.kill();
    let (out, err) = (gst.stdout(), gst.stderr());
    let errors: Vec<&str> = out
        .lines()
        .chain(err.lines())
        .filter(|l| l.starts_with("ERROR") || l.contains("WARNING: from element"))
        .collect();
    assert!(
        decoded == Some(true) && errors.is_empty(),
        "gst-launch-1.0 {}: {} video frames of {want} decoded; errors: {errors:#?}\n---- stderr \
         ----\n{err}\n---- the last lines ----\n{}\n{}",
        pipeline.join(" "),
        gst_video_frames(&out),
        out.lines()
            .rev()
            .filter(|l| !l.contains("last-message"))
            .take(20)
            .collect::<Vec<_>>()
            .join("\n"),
        live.context()
    );
    out
}

/// GStreamer's `playbin3`, which reads HLS with `hlsdemux2` (gstreamer1.0-plugins-good),
/// decodes the CMAF stream published over `ingest` through the proxy, video and audio at
/// the clock's pace.
fn gstreamer_hlsdemux2_decodes(ingest: Ingest, name: &str) {
    let _heavy = heavy();
    let mut live = Live::start(ingest, name, "");
    let pipeline: Vec<String> = [
        "playbin3".to_owned(),
        format!("uri={}", live.url()),
        "video-sink=fakesink name=v silent=false sync=true".to_owned(),
        "audio-sink=fakesink name=a sync=true".to_owned(),
    ]
    .into();
    let out = gst_decodes(&mut live, &pipeline);
    assert!(
        out.contains("GstHLSDemux2"),
        "playbin3 read the stream without hlsdemux2"
    );
    assert!(
        out.contains("video/x-h264") && out.contains("audio/mpeg"),
        "H.264 and AAC demuxed"
    );
    let proxied = live.assert_served(2);
    eprintln!(
        "GStreamer hlsdemux2 over {ingest:?}: {} video frames decoded; {} media playlists \
         through the proxy",
        gst_video_frames(&out),
        proxied.media_playlists
    );
}

#[test]
fn gstreamer_hlsdemux2_decodes_a_stream_published_over_rtmp() {
    gstreamer_hlsdemux2_decodes(Ingest::Rtmp, "gst_rtmp");
}

#[test]
fn gstreamer_hlsdemux2_decodes_a_stream_published_over_rtsp() {
    gstreamer_hlsdemux2_decodes(Ingest::Rtsp, "gst_rtsp");
}

#[test]
fn gstreamer_hlsdemux2_decodes_a_stream_published_over_srt() {
    gstreamer_hlsdemux2_decodes(Ingest::Srt, "gst_srt");
}

/// GStreamer's older `hlsdemux` (gstreamer1.0-plugins-bad), the one of players built on
/// GStreamer before 1.22, decodes MPEG-TS segments (`<container>mpegts</container>`).
#[test]
fn gstreamer_hlsdemux_decodes_mpegts_segments() {
    let _heavy = heavy();
    let mut live = Live::start(Ingest::Rtmp, "gst_ts", "<container>mpegts</container>");
    let pipeline: Vec<String> = [
        "souphttpsrc",
        &format!("location={}", live.url()),
        "!",
        "hlsdemux",
        "!",
        "decodebin",
        "name=d",
        "d.",
        "!",
        "video/x-raw",
        "!",
        "fakesink",
        "name=v",
        "silent=false",
        "sync=true",
        "d.",
        "!",
        "audio/x-raw",
        "!",
        "fakesink",
        "name=a",
        "sync=true",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let out = gst_decodes(&mut live, &pipeline);
    let proxied = live.assert_served(2);
    eprintln!(
        "GStreamer hlsdemux, MPEG-TS segments: {} video frames decoded; {} media playlists \
         through the proxy",
        gst_video_frames(&out),
        proxied.media_playlists
    );
}
