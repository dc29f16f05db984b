//! Real clients: `ffmpeg` publishers and players, `ffprobe`, and FFmpeg 9 (the modern client,
//! which speaks Enhanced RTMP), every one of them bounded by a timeout.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::process::{run, Output, Proc};
use crate::util::secs;

/// The synthetic video source of the publishers.
pub const TESTSRC: &str = "testsrc=size=640x360:rate=25";

/// Publishes the synthetic H.264+AAC stream to `url` for `seconds`.
pub fn publish(url: &str, seconds: u32) -> Proc {
    publish_with(url, seconds, TESTSRC, 25)
}

/// Publishes with another lavfi video source and GOP size.
pub fn publish_with(url: &str, seconds: u32, video: &str, gop: u32) -> Proc {
    let mut cmd = publisher_command("ffmpeg", url, seconds, video, gop, "flv");
    Proc::spawn(&format!("publish {url}"), &mut cmd)
}

/// The command of an FFmpeg (`exe`: Debian's `ffmpeg` or another build) publishing `seconds`
/// of the synthetic stream in real time: the lavfi `video` source as H.264 with a keyframe
/// every `gop` frames, a 440 Hz tone as AAC, in `format` (`flv`, `mpegts`, ...) to `url`.
pub fn publisher_command(
    exe: &str,
    url: &str,
    seconds: u32,
    video: &str,
    gop: u32,
    format: &str,
) -> Command {
    publisher_command_to(exe, seconds, video, gop, &["-f", format, url])
}

/// [`publisher_command`] with the output given whole: the muxer and its options, then the
/// URL (`["-f", "rtsp", "-rtsp_transport", "tcp", url]`).
pub fn publisher_command_to(
    exe: &str,
    seconds: u32,
    video: &str,
    gop: u32,
    output: &[&str],
) -> Command {
    let mut cmd = Command::new(exe);
    cmd.args(["-hide_banner", "-nostdin", "-loglevel", "error", "-re"])
        .args(["-f", "lavfi", "-i", video])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-tune",
            "zerolatency",
        ])
        .args(["-g", &gop.to_string(), "-pix_fmt", "yuv420p"])
        .args(["-c:a", "aac", "-b:a", "64k"])
        .args(["-t", &seconds.to_string()])
        .args(output);
    cmd
}

/// A player's result.
#[derive(Debug, Clone)]
pub struct Played {
    /// Video frames decoded.
    pub frames: usize,
    pub out: Output,
}

/// Starts a player decoding `seconds` of video from `url` (framemd5 on stdout).
pub fn spawn_player(url: &str, seconds: f64) -> Proc {
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-nostdin", "-loglevel", "error"])
        .args(["-i", url])
        .args(["-t", &format!("{seconds}")])
        .args(["-map", "0:v:0", "-f", "framemd5", "-"]);
    Proc::spawn(&format!("play {url}"), &mut cmd)
}

/// Counts the framemd5 lines of a player's stdout.
pub fn count_frames(stdout: &str) -> usize {
    stdout
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .count()
}

/// Waits for a player started by [`spawn_player`].
pub fn finish_player(p: Proc, timeout: Duration) -> Played {
    let out = p.finish(timeout);
    Played {
        frames: count_frames(&out.stdout),
        out,
    }
}

/// Plays `seconds` of `url`, bounded by `timeout`.
pub fn play(url: &str, seconds: f64, timeout: Duration) -> Played {
    finish_player(spawn_player(url, seconds), timeout)
}

/// (video frames decoded, stderr) for `seconds` of `url`, bounded by `timeout`.
pub fn read_frames(url: &str, seconds: f64, timeout: Duration) -> (usize, String) {
    let p = play(url, seconds, timeout);
    let err = if p.out.timed_out {
        format!("timeout; stderr: {}", p.out.stderr)
    } else {
        p.out.stderr
    };
    (p.frames, err)
}

/// Runs ffprobe with `args` before the URL, bounded by `timeout`.
pub fn ffprobe(url: &str, args: &[&str], timeout: Duration) -> Output {
    let mut cmd = Command::new("ffprobe");
    cmd.args(["-hide_banner", "-loglevel", "error"])
        .args(args)
        .arg(url);
    run(&format!("ffprobe {url}"), &mut cmd, timeout)
}

/// The codec names ffprobe sees in `url` (empty on failure or timeout).
pub fn probe_codecs(url: &str) -> BTreeSet<String> {
    probe_codecs_out(url).0
}

/// The codec names and ffprobe's output.
pub fn probe_codecs_out(url: &str) -> (BTreeSet<String>, Output) {
    probe_codecs_with(url, &[])
}

/// The codec names ffprobe finds in `url`, with `pre` (input options) before the URL, and its
/// output.
pub fn probe_codecs_with(url: &str, pre: &[&str]) -> (BTreeSet<String>, Output) {
    let mut args = pre.to_vec();
    args.extend(["-show_entries", "stream=codec_name", "-of", "csv=p=0"]);
    let out = ffprobe(url, &args, Duration::from_secs(20));
    let set = out
        .stdout
        .lines()
        .map(|l| l.trim().trim_end_matches(',').to_string())
        .filter(|l| !l.is_empty())
        .collect();
    (set, out)
}

/// The width and height of the first video stream of `url`.
pub fn probe_size(url: &str) -> (Option<(u32, u32)>, Output) {
    let out = ffprobe(
        url,
        &[
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=width,height",
            "-of",
            "csv=p=0",
        ],
        Duration::from_secs(20),
    );
    let size = out.stdout.lines().find_map(|l| {
        let mut it = l.trim().split(',');
        let w = it.next()?.trim().parse().ok()?;
        let h = it.next()?.trim().parse().ok()?;
        Some((w, h))
    });
    (size, out)
}

// ------------------------------------------------------------------------------------------
// FFmpeg 9 (PyPI's imageio-ffmpeg): the modern client, which speaks Enhanced RTMP

/// The path of the static FFmpeg 9 that PyPI's `imageio-ffmpeg` ships (tests/run.sh installs
/// it with pip). Panics when it is missing: a test that needs it must not pass without it.
pub fn ffmpeg9() -> String {
    static PATH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PATH.get_or_init(|| {
        let out = Command::new("python3")
            .args([
                "-c",
                "import imageio_ffmpeg as i; print(i.get_ffmpeg_exe())",
            ])
            .output()
            .expect("python3 runs");
        let path = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        assert!(
            out.status.success() && Path::new(&path).exists(),
            "FFmpeg 9 from imageio-ffmpeg is missing (pip install imageio-ffmpeg): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        path
    })
    .clone()
}

/// What an FFmpeg 9 player decoded: video and audio frames (framecrc lines of output streams
/// 0 and 1), and the codec names of the input streams it found (`hevc`, `av1`, `opus`, ...).
#[derive(Debug, Clone)]
pub struct Decoded {
    pub video: usize,
    pub audio: usize,
    pub codecs: BTreeSet<String>,
    pub out: Output,
}

/// Decodes `seconds` of `url` with FFmpeg 9 (`pre` before `-i`), mapping the first video and
/// first audio stream when present, and counts the decoded frames of each.
pub fn ffmpeg9_decode(url: &str, pre: &[&str], seconds: f64) -> Decoded {
    let mut cmd = Command::new(ffmpeg9());
    cmd.args(["-hide_banner", "-nostdin", "-loglevel", "info"])
        .args(pre)
        .args(["-i", url, "-t", &seconds.to_string()])
        .args(["-map", "0:v:0?", "-map", "0:a:0?", "-f", "framecrc", "-"]);
    let out = run(
        &format!("ffmpeg9 play {url}"),
        &mut cmd,
        secs(seconds + 25.0),
    );
    let count = |index: &str| {
        out.stdout
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter(|l| l.split(',').next().map(str::trim) == Some(index))
            .count()
    };
    // Output stream 0 is the video when the input has one, else the audio.
    let has_video = out
        .stderr
        .lines()
        .any(|l| l.contains("Stream #0:") && l.contains(": Video: "));
    let (video, audio) = if has_video {
        (count("0"), count("1"))
    } else {
        (0, count("0"))
    };
    let codecs = out
        .stderr
        .lines()
        .take_while(|l| !l.starts_with("Output #0") && !l.starts_with("Stream mapping"))
        .filter(|l| l.trim_start().starts_with("Stream #0:"))
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
        out,
    }
}
