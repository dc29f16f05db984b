//! The server started inside the test, on port 0 for every protocol: the addresses it bound
//! come back from `streamgate::server::Server` itself, so nothing picks free ports in advance
//! or reads them from a log. And [`Endpoints`], the URLs of a server however it was started.
//!
//! The log lines of in-process servers go to one buffer per test binary (tracing's subscriber
//! is global): [`InProcess::log`] is exact in a test binary that runs one server at a time and
//! may show another test's lines otherwise.

use std::io;
use std::net::SocketAddr;
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use tokio::sync::oneshot;

use crate::config::Config;

/// The URLs of a running server, from the ports it listens on.
pub trait Endpoints {
    /// The RTMP port.
    fn rtmp_port(&self) -> u16;
    /// The HTTP-FLV port, when enabled.
    fn httpflv_port(&self) -> Option<u16>;
    /// The RTSP port, when enabled.
    fn rtsp_port(&self) -> Option<u16>;
    /// The SRT (UDP) port, when enabled.
    fn srt_port(&self) -> Option<u16>;
    /// The HLS port, when enabled.
    fn hls_port(&self) -> Option<u16>;

    /// `http://127.0.0.1:HLS_PORT/{path}` (HLS must be enabled).
    fn hls_url(&self, path: &str) -> String {
        let port = self
            .hls_port()
            .expect("HLS is enabled in this test's config");
        format!("http://127.0.0.1:{port}/{path}")
    }

    /// `rtmp://127.0.0.1:PORT/{path}`.
    fn url(&self, path: &str) -> String {
        format!("rtmp://127.0.0.1:{}/{}", self.rtmp_port(), path)
    }

    /// `http://127.0.0.1:HTTPFLV_PORT/{path}` (HTTP-FLV must be enabled).
    fn flv_url(&self, path: &str) -> String {
        let port = self
            .httpflv_port()
            .expect("HTTP-FLV is enabled in this test's config");
        format!("http://127.0.0.1:{port}/{path}")
    }

    /// `rtsp://127.0.0.1:RTSP_PORT/{path}` (RTSP must be enabled).
    fn rtsp_url(&self, path: &str) -> String {
        let port = self
            .rtsp_port()
            .expect("RTSP is enabled in this test's config");
        format!("rtsp://127.0.0.1:{port}/{path}")
    }

    /// `srt://127.0.0.1:SRT_PORT?streamid={streamid}` (SRT must be enabled); options such as
    /// `&latency=...` may follow.
    fn srt_url(&self, streamid: &str) -> String {
        let port = self
            .srt_port()
            .expect("SRT is enabled in this test's config");
        format!("srt://127.0.0.1:{port}?streamid={streamid}")
    }

    /// `rtmp://127.0.0.1:PORT/live` (the tcUrl ffmpeg sends for app `live`).
    fn tcurl(&self) -> String {
        format!("rtmp://127.0.0.1:{}/live", self.rtmp_port())
    }
}

/// The log lines of every in-process server of this test binary.
static LOG: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();

/// One writer into [`LOG`].
struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Ok(mut log) = self.0.lock() {
            log.extend_from_slice(buf);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The log buffer, with the subscriber that fills it installed on first use: the server's
/// own escaping writer and filter, at debug level.
fn log_buffer() -> Arc<Mutex<Vec<u8>>> {
    LOG.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sink = buf.clone();
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(
                "debug,srt_protocol::listener=error",
            ))
            .with_writer(streamgate::logging::Escaping(move || {
                LogWriter(sink.clone())
            }))
            .with_ansi(false)
            .try_init();
        buf
    })
    .clone()
}

/// The addresses the server bound: RTMP, HTTP-FLV, RTSP, SRT, the API, HLS.
type Bound = [Option<SocketAddr>; 6];

/// `streamgate::server::Server` running in an actix system on a thread of the test, every
/// listener on a port the kernel picked. Shut down gracefully (every owed `on_done` sent) when
/// dropped. The config's `env` does not apply: there is no process to give it to.
pub struct InProcess {
    /// The RTMP port.
    pub port: u16,
    /// The HTTP-FLV port, when enabled.
    pub httpflv_port: Option<u16>,
    /// The RTSP port, when enabled.
    pub rtsp_port: Option<u16>,
    /// The SRT (UDP) port, when enabled.
    pub srt_port: Option<u16>,
    /// The API's port.
    pub api_port: Option<u16>,
    /// The HLS port, when enabled.
    pub hls_port: Option<u16>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
    /// Where this server's lines start in the log buffer.
    log_from: usize,
    /// Its data dir, when the test did not give one (removed after the server stops).
    _data_dir: Option<crate::util::TempDir>,
}

impl InProcess {
    /// Parses the test's config with the server's own parser, moves every listener to port 0,
    /// starts the server and returns once every listener is bound.
    pub fn start(cfg: &Config) -> InProcess {
        // A data dir of its own unless the test gave one (two servers may not share one).
        let data_dir = cfg
            .data_dir
            .is_none()
            .then(|| crate::util::TempDir::new("data"));
        let mut own = cfg.clone();
        if let Some(dir) = &data_dir {
            own.data_dir = Some(dir.path.clone());
        }
        let xml = own.to_xml();
        let mut config = streamgate::config::Config::parse(&xml)
            .unwrap_or_else(|e| panic!("the test's config does not parse: {e}\n{xml}"));
        config.rtmp.port = 0;
        config.httpflv.port = 0;
        config.rtsp.port = 0;
        config.srt.port = 0;
        config.api.port = 0;
        config.hls.port = 0;
        let log = log_buffer();
        let log_from = log.lock().map_or(0, |l| l.len());
        let (bound_tx, bound_rx) = mpsc::channel::<Result<Bound, String>>();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let thread = thread::spawn(move || {
            let system = actix::System::new();
            system.block_on(async move {
                match streamgate::server::Server::start(&config).await {
                    Ok(server) => {
                        let bound = [
                            server.rtmp_addr,
                            server.httpflv_addr,
                            server.rtsp_addr,
                            server.srt_addr,
                            server.api_addr,
                            server.hls_addr,
                        ];
                        let _ = bound_tx.send(Ok(bound));
                        // Dropped sender or a stop: either way, shut down.
                        let _ = stop_rx.await;
                        server.shutdown().await;
                    }
                    Err(e) => {
                        let _ = bound_tx.send(Err(e.to_string()));
                    }
                }
            });
        });
        let bound = match bound_rx.recv_timeout(Duration::from_secs(20)) {
            Ok(Ok(bound)) => bound,
            Ok(Err(e)) => panic!("the server did not start: {e}"),
            Err(e) => panic!("the server did not start within 20 s: {e}"),
        };
        let port = |a: Option<SocketAddr>| a.map(|a| a.port());
        InProcess {
            port: port(bound[0]).expect("RTMP is always enabled in a test's config"),
            httpflv_port: port(bound[1]),
            rtsp_port: port(bound[2]),
            srt_port: port(bound[3]),
            api_port: port(bound[4]),
            hls_port: port(bound[5]),
            stop: Some(stop_tx),
            thread: Some(thread),
            log_from,
            _data_dir: data_dir,
        }
    }

    /// The log lines written since this server started (see the module's note).
    pub fn log(&self) -> String {
        let log = log_buffer();
        let log = log.lock().map(|l| l.clone()).unwrap_or_default();
        String::from_utf8_lossy(log.get(self.log_from..).unwrap_or_default()).into_owned()
    }

    /// The last `n` lines of [`Self::log`].
    pub fn log_tail(&self, n: usize) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

impl Endpoints for InProcess {
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

impl Drop for InProcess {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!(
                "---- streamgate log (in process) ----\n{}\n---- end of log ----",
                self.log_tail(300)
            );
        }
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
