//! What the codec tests share: a server with every protocol hooked, the encoder arguments of
//! the modern codecs, an FFmpeg publisher of the test pattern with any of them, the wait for a
//! publish to be live, and the SRT URLs with the tests' latency.

use std::process::Command;
use std::thread;
use std::time::Duration;

use crate::config::Config;
use crate::hooks::HookServer;
use crate::inprocess::Endpoints;
use crate::process::{Proc, Server};
use crate::util::secs;

/// How long a test waits for a hook call.
pub const HOOK_WAIT: Duration = Duration::from_secs(15);
/// FFmpeg's SRT latency option (microseconds): 120 ms.
pub const SRT_OPTS: &str = "&latency=120000";

/// Encoder arguments of the codecs under test.
pub mod encoders {
    /// H.264 (x264).
    pub const X264: &[&str] = &["-c:v", "libx264", "-preset", "ultrafast"];
    /// H.265 (x265), a keyframe a second at 25 fps.
    pub const X265: &[&str] = &[
        "-c:v",
        "libx265",
        "-preset",
        "ultrafast",
        "-x265-params",
        "log-level=error:keyint=25",
    ];
    /// AV1 (SVT-AV1, fastest preset, one thread).
    pub const SVT_AV1: &[&str] = &[
        "-c:v",
        "libsvtav1",
        "-preset",
        "12",
        "-svtav1-params",
        "lp=1",
    ];
    /// AAC.
    pub const AAC: &[&str] = &["-c:a", "aac", "-b:a", "64k"];
    /// Opus (libopus).
    pub const OPUS: &[&str] = &["-c:a", "libopus", "-b:a", "64k"];
}

/// A server with RTMP, HTTP-FLV, RTSP and SRT, every section's hooks at `hook`.
pub fn hooked_server(hook: &HookServer) -> Server {
    Server::start(
        &Config::new()
            .hooks(&hook.url("/rtmp"), "")
            .httpflv()
            .httpflv_hooks(&hook.url("/flv"), "")
            .rtsp_hooks(&hook.url("/rtsp"), "")
            .srt_hooks(&hook.url("/srt"), ""),
    )
}

/// `bin` (FFmpeg 9 or Debian's 5.1) publishing the test pattern and a 48 kHz tone, encoded
/// with `video` and `audio`, to `format` (`-f` and what follows: format and URL), for at most
/// 40 s (the test kills it once done).
pub fn encoder_publisher(bin: &str, video: &[&str], audio: &[&str], format: &[&str]) -> Proc {
    let mut cmd = Command::new(bin);
    cmd.args(["-hide_banner", "-nostdin", "-loglevel", "error", "-re"])
        .args(["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
        .args(video)
        .args(["-g", "25", "-pix_fmt", "yuv420p"])
        .args(audio)
        .args(["-t", "40"])
        .args(format);
    Proc::spawn(&format!("{bin} publish {format:?}"), &mut cmd)
}

/// Waits for `on_publish` of `name`, then a moment for the first GOP; on no call, kills the
/// publisher and fails with what the hook server, the publisher and the server said.
pub fn wait_publishing(hook: &HookServer, srv: &Server, publisher: &mut Proc, name: &str) {
    if hook.wait_call("publish", name, HOOK_WAIT).is_none() {
        publisher.kill();
        panic!(
            "no on_publish for {name}: {}\n{}\n{}",
            hook.dump(),
            publisher.stderr(),
            srv.log_tail(40)
        );
    }
    thread::sleep(secs(2.5));
}

/// The SRT URL of a player of `live/{name}`, with the tests' latency.
pub fn srt_play_url(srv: &impl Endpoints, name: &str) -> String {
    format!(
        "{}{SRT_OPTS}",
        srv.srt_url(&format!("#!::r=live/{name},m=request"))
    )
}

/// The SRT URL of a publisher of `live/{name}` (whole TS packets per payload), with the
/// tests' latency.
pub fn srt_publish_url(srv: &impl Endpoints, name: &str) -> String {
    format!(
        "{}&pkt_size=1316{SRT_OPTS}",
        srv.srt_url(&format!("#!::r=live/{name},m=publish"))
    )
}
