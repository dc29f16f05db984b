//! A real browser plays a live stream over HTTP-FLV.
//!
//! ffmpeg publishes the synthetic 640x360 stream over RTMP; headless Chromium (Debian's
//! `chromium`) loads `tests/browser/player.html` from a tiny HTTP server of this test, and the
//! page plays `http://127.0.0.1:PORT/live/cam1.flv` from streamgate (in process) with mpegts.js (installed in
//! `tests/browser/node_modules` by `tests/run.sh`). The page is on another origin than the
//! stream, so CORS is exercised too. It reports what its `<video>` element does to the test's
//! server (`GET /report?...` every 250 ms, and on every event); the test asserts that
//! `currentTime` advances by at least a second and that `videoWidth`x`videoHeight` is the
//! source's, with no error on the way.

use std::fs;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};
use streamgate_testkit::*;

/// The size of [`TESTSRC`].
const WIDTH: u32 = 640;
const HEIGHT: u32 = 360;

/// How far `currentTime` must advance across the reports.
const MIN_ADVANCE_S: f64 = 1.0;

/// Report kinds that mean the page saw something go wrong.
const ERROR_KINDS: &[&str] = &[
    "fatal",
    "js-error",
    "mpegts-error",
    "video-error",
    "play-rejected",
];

// ------------------------------------------------------------------------------------------
// the page's HTTP server

/// One `GET /report?...` of the page.
#[derive(Clone)]
struct Report {
    at: Instant,
    pairs: Vec<(String, String)>,
}

impl Report {
    fn get(&self, k: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    }

    fn kind(&self) -> &str {
        self.get("kind").unwrap_or("")
    }

    fn num(&self, k: &str) -> Option<f64> {
        self.get(k).and_then(|v| v.parse().ok())
    }

    /// A `state` report showing the source's size.
    fn has_source_size(&self) -> bool {
        self.kind() == "state"
            && self.num("videoWidth") == Some(f64::from(WIDTH))
            && self.num("videoHeight") == Some(f64::from(HEIGHT))
    }
}

struct PageInner {
    /// `tests/browser`.
    root: PathBuf,
    reports: Mutex<Vec<Report>>,
    /// Every request line, in order.
    requests: Mutex<Vec<String>>,
    stop: AtomicBool,
}

/// Serves the page, its script and mpegts.js from `tests/browser`, and records `/report`.
struct PageServer {
    port: u16,
    inner: Arc<PageInner>,
    started: Instant,
    acceptor: Option<JoinHandle<()>>,
}

impl PageServer {
    fn start() -> PageServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind page server");
        let port = listener.local_addr().expect("local_addr").port();
        let inner = Arc::new(PageInner {
            root: repo_file("tests/browser"),
            reports: Mutex::new(Vec::new()),
            requests: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
        });
        let acc = inner.clone();
        let acceptor = thread::Builder::new()
            .name(format!("page-accept-{port}"))
            .spawn(move || {
                for conn in listener.incoming() {
                    if acc.stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    let ci = acc.clone();
                    let _ = thread::Builder::new()
                        .name("page-conn".into())
                        .spawn(move || serve_page_request(conn, &ci));
                }
            })
            .expect("spawn page acceptor");
        PageServer {
            port,
            inner,
            started: Instant::now(),
            acceptor: Some(acceptor),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    fn reports(&self) -> Vec<Report> {
        self.inner.reports.lock().expect("reports lock").clone()
    }

    /// Every request and every report, one a line, with its time since the server started.
    fn dump(&self) -> String {
        let mut s = String::from("---- page requests ----\n");
        let requests = self.inner.requests.lock().expect("requests lock").clone();
        for r in requests.iter().filter(|r| !r.starts_with("GET /report?")) {
            s.push_str(&format!("  {r}\n"));
        }
        s.push_str("---- page reports (seconds since the page server started) ----\n");
        for r in self.reports() {
            let fields: Vec<String> = r
                .pairs
                .iter()
                .filter(|(k, _)| k != "kind")
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            s.push_str(&format!(
                "  {:7.3} {:<22} {}\n",
                (r.at - self.started).as_secs_f64(),
                r.kind(),
                fields.join(" ")
            ));
        }
        s
    }
}

impl Drop for PageServer {
    fn drop(&mut self) {
        self.inner.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(h) = self.acceptor.take() {
            let _ = h.join();
        }
    }
}

/// Answers one request and closes the connection.
fn serve_page_request(mut conn: TcpStream, inner: &PageInner) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
    let mut head = Vec::new();
    let mut chunk = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 64 * 1024 {
        match conn.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&chunk[..n]),
        }
    }
    let head = String::from_utf8_lossy(&head).to_string();
    let line = head.lines().next().unwrap_or("").to_string();
    inner
        .requests
        .lock()
        .expect("requests lock")
        .push(line.clone());
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("");
    let target = parts.next().unwrap_or("");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));

    let file = |rel: &str, ctype: &'static str| match fs::read(inner.root.join(rel)) {
        Ok(body) => (200, ctype, body),
        Err(e) => (404, "text/plain", format!("{rel}: {e}\n").into_bytes()),
    };
    let (code, ctype, body): (u16, &str, Vec<u8>) = match (method, path) {
        ("GET", "/report") => {
            inner.reports.lock().expect("reports lock").push(Report {
                at: Instant::now(),
                pairs: parse_form(query),
            });
            (200, "text/plain", b"ok\n".to_vec())
        }
        ("GET", "/player.html") => file("player.html", "text/html; charset=utf-8"),
        ("GET", "/player.js") => file("player.js", "text/javascript; charset=utf-8"),
        ("GET", "/mpegts.js") => file(
            "node_modules/mpegts.js/dist/mpegts.js",
            "text/javascript; charset=utf-8",
        ),
        _ => (404, "text/plain", b"not found\n".to_vec()),
    };
    let head = format!(
        "HTTP/1.1 {code} {}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
        if code == 200 { "OK" } else { "Not Found" },
        body.len()
    );
    let _ = conn.write_all(head.as_bytes());
    let _ = conn.write_all(&body);
    let _ = conn.flush();
    let _ = conn.shutdown(Shutdown::Write);
}

// ------------------------------------------------------------------------------------------
// the browser

/// Headless Chromium in its own process group, with a fresh profile; the whole group is killed
/// on drop.
struct Browser {
    proc: Proc,
    _profile: TempDir,
}

impl Browser {
    fn open(url: &str) -> Browser {
        let profile = TempDir::new("chromium");
        let mut cmd = Command::new("chromium");
        cmd.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--autoplay-policy=no-user-gesture-required",
        ])
        .arg(format!("--user-data-dir={}", profile.path.display()))
        .arg(url)
        .process_group(0);
        let proc = Proc::spawn("chromium", &mut cmd);
        Browser {
            proc,
            _profile: profile,
        }
    }

    fn running(&mut self) -> bool {
        self.proc.running()
    }

    fn stderr(&self) -> String {
        self.proc.stderr()
    }

    /// SIGKILL to the whole process group (browser, renderers, GPU and utility processes).
    fn kill(&mut self) {
        let group = format!("-{}", self.proc.pid());
        let _ = Command::new("kill")
            .args(["-s", "KILL", "--", &group])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
        self.proc.kill();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The profile (a TempDir) is removed after the whole group is gone.
        self.kill();
    }
}

// ------------------------------------------------------------------------------------------
// the stream

/// Percent-encodes a query-string value.
fn encode_component(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// One plain `GET` of the HTTP-FLV URL (as a player would, from another origin): the response
/// head and the first body bytes, read for up to 5 s, then the connection is closed.
fn probe_flv(port: u16, path: &str) -> Result<(String, Vec<u8>), String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nOrigin: http://127.0.0.1\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes())
        .map_err(|e| format!("write: {e}"))?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            // The FLV header (9 bytes) and its PreviousTagSize0 (4 bytes).
            if buf.len() >= p + 4 + 13 || !buf.starts_with(b"HTTP/1.1 200") {
                let head = String::from_utf8_lossy(&buf[..p]).to_string();
                let body = buf[p + 4..].to_vec();
                let _ = s.shutdown(Shutdown::Both);
                return Ok((head, body));
            }
        }
        if Instant::now() >= end {
            return Err(format!(
                "no complete answer within 5 s; got {} bytes: {:?}",
                buf.len(),
                String::from_utf8_lossy(&buf[..buf.len().min(512)])
            ));
        }
        match s.read(&mut chunk) {
            Ok(0) => {
                return Err(format!(
                    "closed after {} bytes: {:?}",
                    buf.len(),
                    String::from_utf8_lossy(&buf[..buf.len().min(512)])
                ))
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(format!("read: {e} after {} bytes", buf.len())),
        }
    }
}

/// What the wait for success saw.
enum Outcome {
    /// `currentTime` went from `from` to `to` on reports showing the source size.
    Played {
        from: f64,
        to: f64,
    },
    /// The page reported an error.
    Error(Report),
    /// Chromium exited by itself.
    BrowserExited,
    TimedOut,
}

/// Watches the reports until playback at the source size has advanced by `MIN_ADVANCE_S`.
fn watch(page: &PageServer, browser: &mut Browser, timeout: Duration) -> Outcome {
    let end = Instant::now() + timeout;
    loop {
        let reports = page.reports();
        if let Some(r) = reports.iter().find(|r| ERROR_KINDS.contains(&r.kind())) {
            return Outcome::Error(r.clone());
        }
        let mut lowest: Option<f64> = None;
        for r in reports.iter().filter(|r| r.has_source_size()) {
            let Some(t) = r.num("currentTime") else {
                continue;
            };
            if let Some(from) = lowest {
                if t - from >= MIN_ADVANCE_S {
                    return Outcome::Played { from, to: t };
                }
            }
            lowest = Some(lowest.map_or(t, |l| l.min(t)));
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

#[test]
fn chromium_plays_live_httpflv_with_mpegts_js() {
    let mpegts = repo_file("tests/browser/node_modules/mpegts.js/dist/mpegts.js");
    assert!(
        mpegts.is_file(),
        "{} is missing: run `bash tests/run.sh` (it runs npm in tests/browser)",
        mpegts.display()
    );

    let page = PageServer::start();
    let srv = InProcess::start(&Config::new().httpflv());
    let flv_port = srv.httpflv_port.expect("HTTP-FLV port");
    let flv_url = srv.flv_url("live/cam1.flv");
    let mut publisher = publish(&srv.url("live/cam1"), 60);

    // Open the page only once the stream is live, so that the browser's first request finds it.
    let mut last_probe = String::new();
    let live = poll(Duration::from_secs(20), || {
        match probe_flv(flv_port, "/live/cam1.flv") {
            Ok((head, body)) => {
                last_probe = format!("{head}\r\n\r\n(body starts {:02x?})", &body);
                (head.starts_with("HTTP/1.1 200") && body.starts_with(b"FLV")).then_some(())
            }
            Err(e) => {
                last_probe = e;
                None
            }
        }
    });
    assert!(
        live.is_some(),
        "GET {flv_url} did not answer 200 with an FLV body within 20 s of the publish; \
         last answer:\n{last_probe}\n---- publisher stderr ----\n{}",
        publisher.stderr()
    );

    let page_url = page.url(&format!("/player.html?src={}", encode_component(&flv_url)));
    let started = Instant::now();
    let mut browser = Browser::open(&page_url);
    let outcome = watch(&page, &mut browser, Duration::from_secs(45));
    let elapsed = started.elapsed();
    browser.kill();
    let publisher_running = publisher.running();

    let context = || {
        format!(
            "page {page_url}\nfirst probe of the stream answered:\n{last_probe}\n\
             publisher running: {publisher_running}; its stderr:\n{}\n{}\
             ---- chromium stderr ----\n{}\n---- end of chromium stderr ----",
            publisher.stderr(),
            page.dump(),
            browser.stderr()
        )
    };
    match outcome {
        Outcome::Played { from, to } => {
            eprintln!(
                "chromium played {flv_url}: currentTime {from:.3} -> {to:.3} at {WIDTH}x{HEIGHT} \
                 within {:.1} s of opening the page",
                elapsed.as_secs_f64()
            );
        }
        Outcome::Error(r) => panic!(
            "the page reported an error ({}: {:?})\n{}",
            r.kind(),
            r.get("error"),
            context()
        ),
        Outcome::BrowserExited => panic!("chromium exited by itself\n{}", context()),
        Outcome::TimedOut => panic!(
            "within {:.0} s, no reports showed currentTime advancing by {MIN_ADVANCE_S} s at \
             {WIDTH}x{HEIGHT}\n{}",
            elapsed.as_secs_f64(),
            context()
        ),
    }
}
