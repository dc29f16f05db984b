//! The real `streamgate` binary started with a config written for one test ([`Server`]), for
//! tests that need what only the process shows: its log lines, its exit status, its answer to
//! signals, its memory. And child processes with their output collected and a timeout
//! ([`Proc`], [`run`]).

use std::fs;
use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::inprocess::Endpoints;
use crate::util::{cargo_bin, poll, TempDir};

/// The real `streamgate` binary, started with a config written for this test.
pub struct Server {
    pub port: u16,
    /// The HTTP-FLV port, when enabled.
    pub httpflv_port: Option<u16>,
    /// The RTSP port, when enabled.
    pub rtsp_port: Option<u16>,
    /// The SRT (UDP) port, when enabled.
    pub srt_port: Option<u16>,
    /// The API's port.
    pub api_port: u16,
    /// The HLS port, when enabled.
    pub hls_port: Option<u16>,
    pub dir: TempDir,
    pub config_path: PathBuf,
    pub log_path: PathBuf,
    child: Child,
    exit: Option<(ExitStatus, Instant)>,
}

impl Server {
    /// Writes the config, spawns the binary and waits until the RTMP port accepts TCP.
    pub fn start(cfg: &Config) -> Server {
        let dir = TempDir::new("srv");
        let config_path = dir.file("streamgate.xml");
        // A data dir of its own unless the test gave one (two servers may not share one).
        let mut own = cfg.clone();
        if own.data_dir.is_none() {
            own.data_dir = Some(dir.file("data"));
        }
        let cfg = &own;
        fs::write(&config_path, cfg.to_xml()).expect("write config");
        let log_path = dir.file("server.log");
        let log = fs::File::create(&log_path).expect("create log");
        let log2 = log.try_clone().expect("clone log");
        let mut command = match &cfg.netns {
            Some((ns, _)) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(cargo_bin("streamgate"));
                c
            }
            None => Command::new(cargo_bin("streamgate")),
        };
        let host = cfg
            .netns
            .as_ref()
            .map_or(std::net::IpAddr::from([127, 0, 0, 1]), |(_, ip)| *ip);
        let child = command
            // The config's <log_level> decides, unless the test sets RUST_LOG itself.
            .env_remove("RUST_LOG")
            .envs(cfg.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .arg("--config")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log2))
            .spawn()
            .expect("spawn streamgate");
        let mut srv = Server {
            port: cfg.port,
            httpflv_port: cfg.httpflv.as_ref().map(|h| h.port),
            rtsp_port: cfg.rtsp.as_ref().map(|r| r.port),
            srt_port: cfg.srt.as_ref().map(|s| s.port),
            api_port: cfg.api_port,
            hls_port: cfg.hls.as_ref().map(|h| h.port),
            dir,
            config_path,
            log_path,
            child,
            exit: None,
        };
        let ports: Vec<u16> = std::iter::once(srv.port)
            .chain(srv.httpflv_port)
            .chain(srv.rtsp_port)
            .chain(srv.hls_port)
            .collect();
        let end = Instant::now() + Duration::from_secs(20);
        loop {
            let up = |port: u16| {
                let addr = SocketAddr::new(host, port);
                TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
            };
            // SRT is UDP: its listener logs the port once it is bound (a text or a JSON line).
            let srt_up = || {
                srv.srt_port.is_none_or(|p| {
                    srv.log().lines().any(|l| {
                        l.contains("listening (UDP)")
                            && (l.contains(&format!("port={p}"))
                                || l.contains(&format!("\"port\":{p}")))
                    })
                })
            };
            if ports.iter().all(|&p| up(p)) && srt_up() {
                break;
            }
            if !srv.alive() {
                panic!(
                    "streamgate exited before listening on {}: {:?}\n---- config ----\n{}\n---- log ----\n{}",
                    srv.port,
                    srv.exit,
                    cfg.to_xml(),
                    srv.log()
                );
            }
            if Instant::now() >= end {
                panic!(
                    "streamgate did not listen on {} within 20 s\n---- log ----\n{}",
                    srv.port,
                    srv.log()
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
        srv
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn alive(&mut self) -> bool {
        if self.exit.is_some() {
            return false;
        }
        match self.child.try_wait() {
            Ok(Some(st)) => {
                self.exit = Some((st, Instant::now()));
                false
            }
            _ => true,
        }
    }

    /// Exit status and when it was seen, once the process is gone.
    pub fn exit(&self) -> Option<(ExitStatus, Instant)> {
        self.exit
    }

    /// SIGINT, then wait up to 10 s; the exit status and when the exit was seen.
    pub fn stop_graceful(&mut self) -> Option<(ExitStatus, Instant)> {
        self.stop_with("INT", Duration::from_secs(10))
    }

    /// Sends `sig` (e.g. "INT", "TERM") and waits up to `timeout` for the exit.
    pub fn stop_with(&mut self, sig: &str, timeout: Duration) -> Option<(ExitStatus, Instant)> {
        if !self.alive() {
            return self.exit;
        }
        send_signal(self.pid(), sig);
        poll(timeout, || (!self.alive()).then_some(()))?;
        self.exit
    }

    /// The whole log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_else(|e| format!("(no log: {e})"))
    }

    /// The last `n` lines of the log.
    pub fn log_tail(&self, n: usize) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

impl Endpoints for Server {
    fn rtmp_port(&self) -> u16 {
        self.port
    }
    fn httpflv_port(&self) -> Option<u16> {
        self.httpflv_port
    }
    fn rtsp_port(&self) -> Option<u16> {
        self.rtsp_port
    }
    fn srt_port(&self) -> Option<u16> {
        self.srt_port
    }
    fn hls_port(&self) -> Option<u16> {
        self.hls_port
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.alive() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if thread::panicking() {
            eprintln!(
                "---- streamgate log ({}) ----\n{}\n---- end of log ----",
                self.log_path.display(),
                self.log_tail(300)
            );
        }
    }
}

/// Sends a signal by name through `kill(1)`.
pub fn send_signal(pid: u32, sig: &str) {
    let st = Command::new("kill")
        .arg("-s")
        .arg(sig)
        .arg(pid.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run kill");
    assert!(st.success() || sig == "KILL", "kill -s {sig} {pid} failed");
}

// ------------------------------------------------------------------------------------------
// child processes (ffmpeg, ffprobe, the server for --check-config)

/// A child process with its stdout/stderr collected by threads; killed on drop.
pub struct Proc {
    pub name: String,
    child: Child,
    out: Arc<Mutex<Vec<u8>>>,
    err: Arc<Mutex<Vec<u8>>>,
    readers: Vec<JoinHandle<()>>,
    pub started: Instant,
    exit: Option<(ExitStatus, Instant)>,
}

fn collect(mut r: impl Read + Send + 'static, into: Arc<Mutex<Vec<u8>>>) -> JoinHandle<()> {
    thread::spawn(move || {
        let mut chunk = [0u8; 8192];
        loop {
            match r.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => into
                    .lock()
                    .expect("output lock")
                    .extend_from_slice(&chunk[..n]),
            }
        }
    })
}

impl Proc {
    pub fn spawn(name: &str, cmd: &mut Command) -> Proc {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name} ({cmd:?}): {e}"));
        let out = Arc::new(Mutex::new(Vec::new()));
        let err = Arc::new(Mutex::new(Vec::new()));
        let mut readers = Vec::new();
        if let Some(o) = child.stdout.take() {
            readers.push(collect(o, out.clone()));
        }
        if let Some(e) = child.stderr.take() {
            readers.push(collect(e, err.clone()));
        }
        Proc {
            name: name.to_string(),
            child,
            out,
            err,
            readers,
            started: Instant::now(),
            exit: None,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The exit status, if it has exited.
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        if let Some((st, _)) = self.exit {
            return Some(st);
        }
        if let Ok(Some(st)) = self.child.try_wait() {
            self.exit = Some((st, Instant::now()));
            return Some(st);
        }
        None
    }

    pub fn running(&mut self) -> bool {
        self.try_exit().is_none()
    }

    /// When the exit was first seen (polling every 20 ms at most late).
    pub fn exited_at(&self) -> Option<Instant> {
        self.exit.map(|(_, t)| t)
    }

    /// Waits up to `timeout` for the exit (polling every 10 ms).
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let end = Instant::now() + timeout;
        loop {
            if let Some(st) = self.try_exit() {
                return Some(st);
            }
            if Instant::now() >= end {
                return None;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        if self.try_exit().is_none() {
            let _ = self.child.kill();
            if let Ok(st) = self.child.wait() {
                self.exit = Some((st, Instant::now()));
            }
        }
    }

    fn join_readers(&mut self) {
        for h in self.readers.drain(..) {
            let _ = h.join();
        }
    }

    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.out.lock().expect("output lock")).to_string()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.err.lock().expect("output lock")).to_string()
    }

    /// Waits up to `timeout`, kills it if it runs over, and returns everything it printed.
    pub fn finish(mut self, timeout: Duration) -> Output {
        let status = self.wait_timeout(timeout);
        let timed_out = status.is_none();
        if timed_out {
            self.kill();
        }
        self.join_readers();
        Output {
            status: if timed_out { None } else { status },
            timed_out,
            stdout: self.stdout(),
            stderr: self.stderr(),
            elapsed: self.exited_at().unwrap_or_else(Instant::now) - self.started,
            exited_at: self.exited_at(),
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
        self.join_readers();
    }
}

/// What a finished (or killed) child printed.
#[derive(Debug, Clone)]
pub struct Output {
    /// None when it was killed for running over its timeout.
    pub status: Option<ExitStatus>,
    pub timed_out: bool,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
    pub exited_at: Option<Instant>,
}

impl Output {
    pub fn success(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }

    /// Exited by itself with a failure status.
    pub fn failed(&self) -> bool {
        self.status.is_some_and(|s| !s.success())
    }

    pub fn text(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

/// Runs a command to completion, bounded by `timeout`.
pub fn run(name: &str, cmd: &mut Command, timeout: Duration) -> Output {
    Proc::spawn(name, cmd).finish(timeout)
}

/// `streamgate --check-config FILE`, with `xml` written to `dir` as `name`: its output (exit 0
/// when the file is valid, 2 with the element and line otherwise) and the file's path.
pub fn check_config(dir: &TempDir, name: &str, xml: &str) -> (Output, PathBuf) {
    let path = dir.file(name);
    fs::write(&path, xml).expect("write config");
    let out = run(
        "check-config",
        Command::new(cargo_bin("streamgate"))
            .arg("--check-config")
            .arg(&path),
        Duration::from_secs(20),
    );
    (out, path)
}
