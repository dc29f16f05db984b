//! A real browser in the tests: Debian's Chromium, headless ([`Browser`]), on a page of
//! `tests/browser` served by a tiny HTTP server of the test ([`PageServer`]), which also
//! records what the page reports (`GET /report?k=v&...`, see `tests/browser/*.js`).
//!
//! The page is on another origin than the server under test, so CORS is exercised too.

use std::fs;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::hooks::parse_form;
use crate::process::Proc;
use crate::util::{repo_file, TempDir};

/// One `GET /report?...` of the page.
#[derive(Debug, Clone)]
pub struct Report {
    pub at: Instant,
    pub pairs: Vec<(String, String)>,
}

impl Report {
    /// The value of `k`.
    pub fn get(&self, k: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    }

    /// The `kind` of the report (`state`, `video-event`, ...).
    pub fn kind(&self) -> &str {
        self.get("kind").unwrap_or("")
    }

    /// The value of `k` as a number.
    pub fn num(&self, k: &str) -> Option<f64> {
        self.get(k).and_then(|v| v.parse().ok())
    }
}

struct PageInner {
    /// `tests/browser`.
    root: PathBuf,
    /// Paths served from elsewhere under the root (`/hls.js` from `node_modules/...`).
    aliases: Vec<(String, String)>,
    reports: Mutex<Vec<Report>>,
    /// Every request line, in order.
    requests: Mutex<Vec<String>>,
    stop: AtomicBool,
}

/// Serves the files at the top of `tests/browser` (`/player.html`, ...), the aliases it was
/// given (`/hls.js` → `node_modules/hls.js/dist/hls.js`), and records `/report`.
pub struct PageServer {
    pub port: u16,
    inner: Arc<PageInner>,
    started: Instant,
    acceptor: Option<JoinHandle<()>>,
}

impl PageServer {
    /// A page server on a free port of 127.0.0.1; `aliases` are `(path, file under
    /// tests/browser)`.
    pub fn start(aliases: &[(&str, &str)]) -> PageServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind page server");
        let port = listener.local_addr().expect("local_addr").port();
        let inner = Arc::new(PageInner {
            root: repo_file("tests/browser"),
            aliases: aliases
                .iter()
                .map(|(p, f)| ((*p).to_owned(), (*f).to_owned()))
                .collect(),
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

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    /// The reports so far.
    pub fn reports(&self) -> Vec<Report> {
        self.inner.reports.lock().expect("reports lock").clone()
    }

    /// Every request and every report, one a line, with its time since the server started.
    pub fn dump(&self) -> String {
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

/// The `Content-Type` of a page file.
fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("json" | "map") => "application/json",
        _ => "application/octet-stream",
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

    let file = |rel: &str| match fs::read(inner.root.join(rel)) {
        Ok(body) => (200, content_type(rel), body),
        Err(e) => (404, "text/plain", format!("{rel}: {e}\n").into_bytes()),
    };
    let top_level = path
        .strip_prefix('/')
        .filter(|f| !f.is_empty() && !f.contains('/') && !f.starts_with('.'));
    let (code, ctype, body): (u16, &str, Vec<u8>) = match (method, path) {
        ("GET", "/report") => {
            inner.reports.lock().expect("reports lock").push(Report {
                at: Instant::now(),
                pairs: parse_form(query),
            });
            (200, "text/plain", b"ok\n".to_vec())
        }
        ("GET", _) => match inner.aliases.iter().find(|(p, _)| p == path) {
            Some((_, rel)) => file(rel),
            None => match top_level {
                Some(f) => file(f),
                None => (404, "text/plain", b"not found\n".to_vec()),
            },
        },
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

/// Percent-encodes a query-string value.
pub fn encode_component(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Headless Chromium in its own process group, with a fresh profile; the whole group is killed
/// on drop.
pub struct Browser {
    proc: Proc,
    _profile: TempDir,
}

impl Browser {
    /// Opens `url` in a new headless Chromium (autoplay allowed).
    pub fn open(url: &str) -> Browser {
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

    /// Still running.
    pub fn running(&mut self) -> bool {
        self.proc.running()
    }

    /// What it printed on stderr.
    pub fn stderr(&self) -> String {
        self.proc.stderr()
    }

    /// SIGKILL to the whole process group (browser, renderers, GPU and utility processes).
    pub fn kill(&mut self) {
        let group = format!("-{}", self.proc.pid());
        let _ = Command::new("kill")
            .args(["-s", "KILL", "--", &group])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
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
