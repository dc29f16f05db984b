//! Harness of the end-to-end tests: a real HTTP business server ([`HookServer`]) that records
//! every callback, the real `streamgate` binary ([`Server`]) started on free ports with a config
//! written per test, and real `ffmpeg`/`ffprobe` clients, every one of them bounded by a timeout
//! and killed when it runs over or when the test ends.
//!
//! Nothing here uses `unsafe` (the workspace forbids it): signals go through `kill(1)`.

#![allow(dead_code)]

pub mod load;

use std::collections::BTreeSet;
use std::fmt;
use std::fs;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The server binary built by cargo for these tests.
pub const BIN: &str = env!("CARGO_BIN_EXE_streamgate");

/// The form content type every POST callback must carry.
pub const FORM: &str = "application/x-www-form-urlencoded";

/// A port nobody listens on right now (bind 127.0.0.1:0 and drop).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local_addr").port()
}

/// Seconds as a `Duration` (readability).
pub fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

/// Polls `f` every 20 ms until it returns `Some` or `timeout` passes.
pub fn poll<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let end = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= end {
            return None;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

// ------------------------------------------------------------------------------------------
// temp dirs

static UNIQUE: AtomicUsize = AtomicUsize::new(0);

/// A directory removed on drop (kept when the test panics, so its files can be read).
pub struct TempDir {
    pub path: PathBuf,
}

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path = std::env::temp_dir().join(format!(
            "streamgate-e2e-{tag}-{}-{}-{nanos}",
            std::process::id(),
            UNIQUE.fetch_add(1, Ordering::SeqCst)
        ));
        fs::create_dir_all(&path).expect("create temp dir");
        TempDir { path }
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!("(kept {} for inspection)", self.path.display());
        } else {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

// ------------------------------------------------------------------------------------------
// the business server

/// What the business server does with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// Answer at once with this status.
    Status(u16),
    /// Answer with this status after a delay.
    Delay(Duration, u16),
    /// Never answer; hold the connection open until the client gives up.
    Hang,
    /// An interim `1xx` answer (the first status) at once, then the final answer (the second)
    /// when the client sends its next request on this connection or after
    /// [`INTERIM_HOLD`], whichever comes first: a client that takes the interim answer as
    /// final reads this final answer as the answer to its next request.
    Interim(u16, u16),
    /// The answer (the first status), then [`EXTRA_AFTER`] later an unsolicited second answer
    /// (the second status) on the same connection, while no request is on it.
    Extra(u16, u16),
}

/// How long a [`Reply::Interim`] holds its final answer back, waiting for a next request.
pub const INTERIM_HOLD: Duration = Duration::from_millis(1500);

/// How long after its answer a [`Reply::Extra`] sends the unsolicited one.
pub const EXTRA_AFTER: Duration = Duration::from_millis(100);

/// One request the business server received.
#[derive(Clone)]
pub struct Record {
    /// Order of arrival (0-based).
    pub seq: usize,
    /// When the whole request (headers and body) had arrived.
    pub at: Instant,
    /// When the answer started to be written, so nothing that follows from it can be earlier
    /// (None while it is delayed, or never for `Reply::Hang`).
    pub answered_at: Option<Instant>,
    /// The reply chosen for it.
    pub reply: Reply,
    pub method: String,
    /// Path of the request target, without the query.
    pub path: String,
    /// Raw query string of the request target (without `?`), empty when none.
    pub query: String,
    pub content_type: Option<String>,
    pub connection_header: Option<String>,
    pub body: String,
    /// Decoded fields: the form body for POST, the query string for anything else.
    pub pairs: Vec<(String, String)>,
}

impl Record {
    /// The first value of field `k`.
    pub fn get(&self, k: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    }

    /// How many times field `k` occurs.
    pub fn occurrences(&self, k: &str) -> usize {
        self.pairs.iter().filter(|(key, _)| key == k).count()
    }

    /// The value of field `k`, which must occur exactly once.
    pub fn field(&self, k: &str) -> &str {
        assert_eq!(
            self.occurrences(k),
            1,
            "field {k:?} must occur exactly once in {self:?}"
        );
        self.get(k).unwrap_or_default()
    }

    pub fn call(&self) -> &str {
        self.get("call").unwrap_or("")
    }

    pub fn name(&self) -> &str {
        self.get("name").unwrap_or("")
    }

    pub fn clientid(&self) -> &str {
        self.get("clientid").unwrap_or("")
    }

    pub fn is(&self, call: &str, name: &str) -> bool {
        self.call() == call && self.name() == name
    }
}

impl fmt::Debug for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "#{} {} {}{}{} ctype={:?} reply={:?} fields={:?}",
            self.seq,
            self.method,
            self.path,
            if self.query.is_empty() { "" } else { "?" },
            self.query,
            self.content_type,
            self.reply,
            self.pairs
        )
    }
}

type Rule = Arc<dyn Fn(&Record) -> Option<Reply> + Send + Sync>;

struct HookInner {
    records: Mutex<Vec<Record>>,
    changed: Condvar,
    rules: Mutex<Vec<Rule>>,
    stop: AtomicBool,
    close_each: AtomicBool,
    connections: AtomicUsize,
}

/// A real HTTP/1.1 business server on 127.0.0.1, one thread per connection, keep-alive by
/// default (or `Connection: close` on every answer with [`HookServer::close_connections`]).
/// Every request is recorded; its answer is chosen by the first matching rule (default 200).
pub struct HookServer {
    pub port: u16,
    inner: Arc<HookInner>,
    acceptor: Option<JoinHandle<()>>,
}

impl HookServer {
    pub fn start() -> HookServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind hook server");
        let port = listener.local_addr().expect("local_addr").port();
        let inner = Arc::new(HookInner {
            records: Mutex::new(Vec::new()),
            changed: Condvar::new(),
            rules: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
            close_each: AtomicBool::new(false),
            connections: AtomicUsize::new(0),
        });
        let acc_inner = inner.clone();
        let acceptor = thread::Builder::new()
            .name(format!("hook-accept-{port}"))
            .spawn(move || {
                for conn in listener.incoming() {
                    if acc_inner.stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    acc_inner.connections.fetch_add(1, Ordering::SeqCst);
                    let ci = acc_inner.clone();
                    let _ = thread::Builder::new()
                        .name("hook-conn".into())
                        .spawn(move || serve_connection(conn, ci));
                }
            })
            .expect("spawn hook acceptor");
        HookServer {
            port,
            inner,
            acceptor: Some(acceptor),
        }
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    /// Answer every request with `Connection: close` and close it (instead of keep-alive).
    pub fn close_connections(&self, yes: bool) {
        self.inner.close_each.store(yes, Ordering::SeqCst);
    }

    /// How many TCP connections the server has accepted so far.
    pub fn connections(&self) -> usize {
        self.inner.connections.load(Ordering::SeqCst)
    }

    /// Adds a rule; rules are tried in the order they were added, the first `Some` wins.
    pub fn rule(&self, f: impl Fn(&Record) -> Option<Reply> + Send + Sync + 'static) {
        self.inner
            .rules
            .lock()
            .expect("rules lock")
            .push(Arc::new(f));
    }

    /// Requests whose path starts with `prefix` get `reply`.
    pub fn on_path(&self, prefix: &str, reply: Reply) {
        let prefix = prefix.to_string();
        self.rule(move |r| r.path.starts_with(&prefix).then_some(reply));
    }

    /// Requests with field `key` equal to `value` (and path starting with `prefix`) get `reply`.
    pub fn on_field(&self, prefix: &str, key: &str, value: &str, reply: Reply) {
        let (prefix, key, value) = (prefix.to_string(), key.to_string(), value.to_string());
        self.rule(move |r| {
            (r.path.starts_with(&prefix) && r.get(&key) == Some(value.as_str())).then_some(reply)
        });
    }

    pub fn records(&self) -> Vec<Record> {
        self.inner.records.lock().expect("records lock").clone()
    }

    pub fn count(&self, pred: impl Fn(&Record) -> bool) -> usize {
        self.records().iter().filter(|r| pred(r)).count()
    }

    pub fn find(&self, pred: impl Fn(&Record) -> bool) -> Vec<Record> {
        self.records().into_iter().filter(|r| pred(r)).collect()
    }

    /// The first record matching `pred`, waiting up to `timeout` for it to arrive.
    pub fn wait_for(&self, pred: impl Fn(&Record) -> bool, timeout: Duration) -> Option<Record> {
        let end = Instant::now() + timeout;
        let mut recs = self.inner.records.lock().expect("records lock");
        loop {
            if let Some(r) = recs.iter().find(|r| pred(r)) {
                return Some(r.clone());
            }
            let now = Instant::now();
            if now >= end {
                return None;
            }
            recs = self
                .inner
                .changed
                .wait_timeout(recs, end - now)
                .expect("records wait")
                .0;
        }
    }

    /// `wait_for` a record with fields `call` and `name`.
    pub fn wait_call(&self, call: &str, name: &str, timeout: Duration) -> Option<Record> {
        self.wait_for(|r| r.is(call, name), timeout)
    }

    /// Every record, one a line (for assertion messages).
    pub fn dump(&self) -> String {
        self.records()
            .iter()
            .map(|r| format!("  {r:?}\n"))
            .collect()
    }
}

impl Drop for HookServer {
    fn drop(&mut self) {
        self.inner.stop.store(true, Ordering::SeqCst);
        self.inner.changed.notify_all();
        // Wake the acceptor so it sees the flag.
        let _ = TcpStream::connect_timeout(
            &SocketAddr::from(([127, 0, 0, 1], self.port)),
            Duration::from_millis(200),
        );
        if let Some(h) = self.acceptor.take() {
            let _ = h.join();
        }
        if thread::panicking() {
            eprintln!("---- hook records ----\n{}", self.dump());
        }
    }
}

/// Reads more bytes into `buf`; Ok(false) on EOF or when the server stops.
fn fill(stream: &mut TcpStream, buf: &mut Vec<u8>, stop: &AtomicBool) -> io::Result<bool> {
    let mut chunk = [0u8; 8192];
    loop {
        if stop.load(Ordering::SeqCst) {
            return Ok(false);
        }
        match stream.read(&mut chunk) {
            Ok(0) => return Ok(false),
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                return Ok(true);
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                continue
            }
            Err(e) => return Err(e),
        }
    }
}

fn find_subslice(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

struct RawRequest {
    method: String,
    target: String,
    version: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl RawRequest {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Reads one request from the connection (`buf` carries bytes over between requests).
fn read_request(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    stop: &AtomicBool,
) -> io::Result<Option<RawRequest>> {
    let head_end = loop {
        if let Some(p) = find_subslice(buf, b"\r\n\r\n") {
            break p;
        }
        if !fill(stream, buf, stop)? {
            return Ok(None);
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    buf.drain(..head_end + 4);
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let target = parts.next().unwrap_or_default().to_string();
    let version = parts.next().unwrap_or("HTTP/1.0").to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut req = RawRequest {
        method,
        target,
        version,
        headers,
        body: Vec::new(),
    };
    let chunked = req
        .header("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    if chunked {
        loop {
            let line_end = loop {
                if let Some(p) = find_subslice(buf, b"\r\n") {
                    break p;
                }
                if !fill(stream, buf, stop)? {
                    return Ok(None);
                }
            };
            let size_line = String::from_utf8_lossy(&buf[..line_end]).to_string();
            buf.drain(..line_end + 2);
            let size = usize::from_str_radix(size_line.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad chunk size"))?;
            if size == 0 {
                // Trailers end with an empty line.
                loop {
                    if let Some(p) = find_subslice(buf, b"\r\n") {
                        let empty = p == 0;
                        buf.drain(..p + 2);
                        if empty {
                            break;
                        }
                        continue;
                    }
                    if !fill(stream, buf, stop)? {
                        return Ok(None);
                    }
                }
                break;
            }
            while buf.len() < size + 2 {
                if !fill(stream, buf, stop)? {
                    return Ok(None);
                }
            }
            req.body.extend_from_slice(&buf[..size]);
            buf.drain(..size + 2);
        }
    } else {
        let len: usize = req
            .header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        while buf.len() < len {
            if !fill(stream, buf, stop)? {
                return Ok(None);
            }
        }
        req.body = buf.drain(..len).collect();
    }
    Ok(Some(req))
}

fn reason(code: u16) -> &'static str {
    match code {
        100 => "Continue",
        102 => "Processing",
        103 => "Early Hints",
        200 => "OK",
        403 => "Forbidden",
        404 => "Not Found",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

fn serve_connection(mut stream: TcpStream, inner: Arc<HookInner>) {
    let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
    let _ = stream.set_nodelay(true);
    let mut buf = Vec::new();
    loop {
        let req = match read_request(&mut stream, &mut buf, &inner.stop) {
            Ok(Some(r)) => r,
            _ => return,
        };
        let (path, query) = match req.target.split_once('?') {
            Some((p, q)) => (p.to_string(), q.to_string()),
            None => (req.target.clone(), String::new()),
        };
        let body = String::from_utf8_lossy(&req.body).to_string();
        let pairs = if req.method == "POST" {
            parse_form(&body)
        } else {
            parse_form(&query)
        };
        let mut rec = Record {
            seq: 0,
            at: Instant::now(),
            answered_at: None,
            reply: Reply::Status(200),
            method: req.method.clone(),
            path,
            query,
            content_type: req.header("content-type").map(str::to_string),
            connection_header: req.header("connection").map(str::to_string),
            body,
            pairs,
        };
        let rules: Vec<Rule> = inner.rules.lock().expect("rules lock").clone();
        rec.reply = rules
            .iter()
            .find_map(|rule| rule(&rec))
            .unwrap_or(Reply::Status(200));
        let seq = {
            let mut recs = inner.records.lock().expect("records lock");
            rec.seq = recs.len();
            recs.push(rec.clone());
            inner.changed.notify_all();
            rec.seq
        };
        let code = match rec.reply {
            Reply::Status(c) | Reply::Extra(c, _) => c,
            Reply::Interim(interim, c) => {
                let head = format!("HTTP/1.1 {interim} {}\r\n\r\n", reason(interim));
                if stream.write_all(head.as_bytes()).is_err() {
                    return;
                }
                // Hold the final answer until the client's next request (kept in `buf` for the
                // next turn of the loop) or the hold time: a client that took the interim
                // answer as final has sent that request by then on this connection.
                let end = Instant::now() + INTERIM_HOLD;
                let before = buf.len();
                while buf.len() == before && Instant::now() < end {
                    let mut chunk = [0u8; 8192];
                    match stream.read(&mut chunk) {
                        Ok(0) => break,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        Err(e)
                            if matches!(
                                e.kind(),
                                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                            ) => {}
                        Err(_) => return,
                    }
                }
                c
            }
            Reply::Delay(d, c) => {
                let end = Instant::now() + d;
                while Instant::now() < end && !inner.stop.load(Ordering::SeqCst) {
                    thread::sleep(Duration::from_millis(10));
                }
                c
            }
            Reply::Hang => {
                // Hold the connection open until the client closes it or we stop.
                let mut sink = Vec::new();
                while let Ok(true) = fill(&mut stream, &mut sink, &inner.stop) {
                    sink.clear();
                }
                return;
            }
        };
        let close = inner.close_each.load(Ordering::SeqCst)
            || req.version == "HTTP/1.0"
            || req
                .header("connection")
                .is_some_and(|v| v.eq_ignore_ascii_case("close"));
        let body = if code == 200 { "OK" } else { "Denied" };
        let resp = format!(
            "HTTP/1.1 {code} {}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n{}\r\n{body}",
            reason(code),
            body.len(),
            if close { "Connection: close\r\n" } else { "" }
        );
        // Taken before the write: once the bytes are out, the media server may act on them
        // (and its client see the result) before this thread runs again.
        let answering = Instant::now();
        let ok = stream.write_all(resp.as_bytes()).is_ok() && stream.flush().is_ok();
        {
            let mut recs = inner.records.lock().expect("records lock");
            if let Some(r) = recs.get_mut(seq) {
                r.answered_at = Some(answering);
            }
            inner.changed.notify_all();
        }
        if !ok || close {
            let _ = stream.shutdown(Shutdown::Both);
            return;
        }
        if let Reply::Extra(_, extra) = rec.reply {
            thread::sleep(EXTRA_AFTER);
            let body = if extra == 200 { "OK" } else { "Denied" };
            let resp = format!(
                "HTTP/1.1 {extra} {}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
                reason(extra),
                body.len()
            );
            if stream.write_all(resp.as_bytes()).is_err() {
                return;
            }
        }
    }
}

/// Decodes `application/x-www-form-urlencoded` (also used for query strings).
pub fn parse_form(s: &str) -> Vec<(String, String)> {
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

/// Percent- and plus-decoding.
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' if i + 2 < b.len() => {
                let hex = |c: u8| (c as char).to_digit(16);
                match (hex(b[i + 1]), hex(b[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 3;
                    }
                    _ => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).to_string()
}

// ------------------------------------------------------------------------------------------
// the server under test

/// The XML config of one test's server.
#[derive(Debug, Clone)]
pub struct Config {
    pub workers: usize,
    pub log_level: String,
    pub port: u16,
    pub on_connect: Option<String>,
    pub on_play: Option<String>,
    pub on_publish: Option<String>,
    pub on_done: Option<String>,
    pub method: Option<String>,
    pub timeout_ms: Option<u64>,
    /// `<rtmp><queue_bytes>` and `<stall_timeout_ms>`, when set.
    pub rtmp_limits: Option<(u64, u64)>,
    /// Extra environment variables for the server process.
    pub env: Vec<(String, String)>,
    /// The `<httpflv>` section, when enabled.
    pub httpflv: Option<HttpFlv>,
    /// The `<rtsp>` section, when enabled.
    pub rtsp: Option<Rtsp>,
    /// The `<srt>` section, when enabled.
    pub srt: Option<Srt>,
    /// `(section, xml)`: more elements written at the start of a section.
    pub extra: Vec<(String, String)>,
}

/// The `<httpflv>` section of a test's config.
#[derive(Debug, Clone, Default)]
pub struct HttpFlv {
    pub port: u16,
    /// `(base, suffix)`: hooks at `{base}/connect{suffix}` and so on.
    pub hooks: Option<(String, String)>,
    pub queue_bytes: Option<u64>,
    pub stall_timeout_ms: Option<u64>,
}

impl Config {
    /// RTMP on a free port, no hooks, 2 workers, debug logs.
    pub fn new() -> Config {
        Config {
            workers: 2,
            log_level: "debug".into(),
            port: free_port(),
            on_connect: None,
            on_play: None,
            on_publish: None,
            on_done: None,
            method: None,
            timeout_ms: None,
            rtmp_limits: None,
            env: Vec::new(),
            httpflv: None,
            rtsp: None,
            srt: None,
            extra: Vec::new(),
        }
    }

    /// Writes `xml` (elements) at the start of `<section>` (which must be enabled).
    pub fn section_xml(mut self, section: &str, xml: &str) -> Config {
        self.extra.push((section.into(), xml.into()));
        self
    }

    /// Enables SRT on a free UDP port (keeps the section if already enabled).
    pub fn srt(mut self) -> Config {
        self.srt.get_or_insert_with(|| Srt {
            port: free_udp_port(),
            ..Srt::default()
        });
        self
    }

    /// Enables SRT with its four hooks at `{base}/connect{suffix}`, ...
    pub fn srt_hooks(self, base: &str, suffix: &str) -> Config {
        let mut c = self.srt();
        if let Some(s) = c.srt.as_mut() {
            s.hooks = Some((base.into(), suffix.into()));
        }
        c
    }

    /// Enables SRT with `<passphrase>` (and `<pbkeylen>` when given).
    pub fn srt_passphrase(self, passphrase: &str, pbkeylen: Option<u8>) -> Config {
        let mut c = self.srt();
        if let Some(s) = c.srt.as_mut() {
            s.passphrase = Some(passphrase.into());
            s.pbkeylen = pbkeylen;
        }
        c
    }

    /// The `<srt>` section of the XML (empty when SRT is not enabled).
    fn srt_xml(&self) -> String {
        let Some(s) = &self.srt else {
            return String::new();
        };
        let esc = |v: &str| {
            v.replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;")
        };
        let mut inner = String::new();
        if let Some((base, suffix)) = &s.hooks {
            for call in ["connect", "play", "publish", "done"] {
                let url = esc(&format!("{base}/{call}{suffix}"));
                inner.push_str(&format!("      <on_{call}>{url}</on_{call}>\n"));
            }
        }
        let mut extra = String::new();
        if let Some(p) = &s.passphrase {
            extra.push_str(&format!("    <passphrase>{}</passphrase>\n", esc(p)));
        }
        if let Some(k) = s.pbkeylen {
            extra.push_str(&format!("    <pbkeylen>{k}</pbkeylen>\n"));
        }
        if let Some(l) = s.latency_ms {
            extra.push_str(&format!("    <latency_ms>{l}</latency_ms>\n"));
        }
        format!(
            "  <srt>\n    <enable>true</enable>\n    <port>{}</port>\n{extra}    <http_notify>\n{inner}    </http_notify>\n  </srt>\n",
            s.port
        )
    }

    /// Enables HTTP-FLV on a free port (keeps the section if already enabled).
    pub fn httpflv(mut self) -> Config {
        self.httpflv.get_or_insert_with(|| HttpFlv {
            port: free_port(),
            ..HttpFlv::default()
        });
        self
    }

    /// Enables HTTP-FLV with its four hooks at `{base}/connect{suffix}`, ...
    pub fn httpflv_hooks(self, base: &str, suffix: &str) -> Config {
        let mut c = self.httpflv();
        if let Some(h) = c.httpflv.as_mut() {
            h.hooks = Some((base.into(), suffix.into()));
        }
        c
    }

    /// Enables HTTP-FLV with a player queue of `queue_bytes` and a stall timeout.
    pub fn httpflv_limits(self, queue_bytes: u64, stall_timeout_ms: u64) -> Config {
        let mut c = self.httpflv();
        if let Some(h) = c.httpflv.as_mut() {
            h.queue_bytes = Some(queue_bytes);
            h.stall_timeout_ms = Some(stall_timeout_ms);
        }
        c
    }

    /// Enables RTSP on a free TCP port with 100 UDP ports for RTP/RTCP from a random even
    /// base in 40000..59000 (keeps the section if already enabled).
    pub fn rtsp(mut self) -> Config {
        self.rtsp.get_or_insert_with(|| {
            let min = rtp_port_base();
            Rtsp {
                port: free_port(),
                rtp_port_min: min,
                rtp_port_max: min + 99,
                hooks: None,
            }
        });
        self
    }

    /// Enables RTSP with its four hooks at `{base}/connect{suffix}`, ...
    pub fn rtsp_hooks(self, base: &str, suffix: &str) -> Config {
        let mut c = self.rtsp();
        if let Some(r) = c.rtsp.as_mut() {
            r.hooks = Some((base.into(), suffix.into()));
        }
        c
    }

    /// The `<rtsp>` section of the XML (empty when RTSP is not enabled).
    fn rtsp_xml(&self) -> String {
        let Some(r) = &self.rtsp else {
            return String::new();
        };
        let mut inner = String::new();
        if let Some((base, suffix)) = &r.hooks {
            for call in ["connect", "play", "publish", "done"] {
                let url = format!("{base}/{call}{suffix}")
                    .replace('&', "&amp;")
                    .replace('<', "&lt;")
                    .replace('>', "&gt;");
                inner.push_str(&format!("      <on_{call}>{url}</on_{call}>\n"));
            }
        }
        format!(
            "  <rtsp>\n    <enable>true</enable>\n    <port>{}</port>\n    <rtp_port_min>{}</rtp_port_min>\n    <rtp_port_max>{}</rtp_port_max>\n    <http_notify>\n{inner}    </http_notify>\n  </rtsp>\n",
            r.port, r.rtp_port_min, r.rtp_port_max
        )
    }

    /// Sets an environment variable of the server process.
    pub fn env(mut self, key: &str, value: &str) -> Config {
        self.env.push((key.into(), value.into()));
        self
    }

    /// All four hooks at `{base}/connect`, `{base}/play`, ... followed by `suffix` (e.g. a query).
    pub fn hooks(mut self, base: &str, suffix: &str) -> Config {
        self.on_connect = Some(format!("{base}/connect{suffix}"));
        self.on_play = Some(format!("{base}/play{suffix}"));
        self.on_publish = Some(format!("{base}/publish{suffix}"));
        self.on_done = Some(format!("{base}/done{suffix}"));
        self
    }

    pub fn method(mut self, m: &str) -> Config {
        self.method = Some(m.into());
        self
    }

    pub fn timeout_ms(mut self, ms: u64) -> Config {
        self.timeout_ms = Some(ms);
        self
    }

    /// RTMP players' `<queue_bytes>` and `<stall_timeout_ms>`.
    pub fn rtmp_limits(mut self, queue_bytes: u64, stall_timeout_ms: u64) -> Config {
        self.rtmp_limits = Some((queue_bytes, stall_timeout_ms));
        self
    }

    pub fn workers(mut self, n: usize) -> Config {
        self.workers = n;
        self
    }

    pub fn to_xml(&self) -> String {
        let mut xml = self.sections_xml();
        for (section, extra) in &self.extra {
            let open = format!("<{section}>\n");
            xml = xml.replacen(&open, &format!("{open}    {extra}\n"), 1);
        }
        xml
    }

    fn sections_xml(&self) -> String {
        fn esc(s: &str) -> String {
            s.replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;")
        }
        let mut notify = String::new();
        for (tag, v) in [
            ("on_connect", &self.on_connect),
            ("on_play", &self.on_play),
            ("on_publish", &self.on_publish),
            ("on_done", &self.on_done),
        ] {
            if let Some(url) = v {
                notify.push_str(&format!("      <{tag}>{}</{tag}>\n", esc(url)));
            }
        }
        if let Some(m) = &self.method {
            notify.push_str(&format!("      <notify_method>{m}</notify_method>\n"));
        }
        if let Some(t) = self.timeout_ms {
            notify.push_str(&format!("      <timeout_ms>{t}</timeout_ms>\n"));
        }
        let mut httpflv = String::new();
        if let Some(h) = &self.httpflv {
            let mut inner = String::new();
            if let Some((base, suffix)) = &h.hooks {
                for call in ["connect", "play", "publish", "done"] {
                    inner.push_str(&format!(
                        "      <on_{call}>{}</on_{call}>\n",
                        esc(&format!("{base}/{call}{suffix}"))
                    ));
                }
            }
            let mut limits = String::new();
            if let Some(q) = h.queue_bytes {
                limits.push_str(&format!("    <queue_bytes>{q}</queue_bytes>\n"));
            }
            if let Some(t) = h.stall_timeout_ms {
                limits.push_str(&format!("    <stall_timeout_ms>{t}</stall_timeout_ms>\n"));
            }
            httpflv = format!(
                "  <httpflv>\n    <enable>true</enable>\n    <port>{}</port>\n{limits}    <http_notify>\n{inner}    </http_notify>\n  </httpflv>\n",
                h.port
            );
        }
        let rtmp_limits = self.rtmp_limits.map_or(String::new(), |(q, t)| {
            format!("    <queue_bytes>{q}</queue_bytes>\n    <stall_timeout_ms>{t}</stall_timeout_ms>\n")
        });
        format!(
            "<config>\n  <workers>{}</workers>\n  <log_level>{}</log_level>\n  <rtmp>\n    <enable>true</enable>\n    <port>{}</port>\n{rtmp_limits}    <http_notify>\n{notify}    </http_notify>\n  </rtmp>\n{httpflv}{rtsp}{srt}</config>\n",
            self.workers,
            self.log_level,
            self.port,
            rtsp = self.rtsp_xml(),
            srt = self.srt_xml()
        )
    }
}

/// The `<rtsp>` section of a test's config.
#[derive(Debug, Clone, Default)]
pub struct Rtsp {
    pub port: u16,
    /// The UDP ports RTP/RTCP pairs are taken from (`rtp_port_min` even).
    pub rtp_port_min: u16,
    pub rtp_port_max: u16,
    /// `(base, suffix)`: hooks at `{base}/connect{suffix}` and so on.
    pub hooks: Option<(String, String)>,
}

/// The `<srt>` section of a test's config.
#[derive(Debug, Clone, Default)]
pub struct Srt {
    /// The UDP port.
    pub port: u16,
    /// `(base, suffix)`: hooks at `{base}/connect{suffix}` and so on.
    pub hooks: Option<(String, String)>,
    pub passphrase: Option<String>,
    pub pbkeylen: Option<u8>,
    pub latency_ms: Option<u64>,
}

/// A UDP port nobody uses right now (bind 127.0.0.1:0 and drop).
pub fn free_udp_port() -> u16 {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind udp 127.0.0.1:0");
    s.local_addr().expect("local_addr").port()
}

/// A random even port in 40000..59000 (per process, per call), the base of a test's RTP range.
fn rtp_port_base() -> u16 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let mut rng = Rng::new(
        u64::from(nanos)
            ^ (u64::from(std::process::id()) << 32)
            ^ ((UNIQUE.fetch_add(1, Ordering::SeqCst) as u64) << 20),
    );
    rng.next_u64();
    40000 + 2 * (rng.next_u64() % 9500) as u16
}

impl Default for Config {
    fn default() -> Self {
        Config::new()
    }
}

/// The real `streamgate` binary, started with a config written for this test.
pub struct Server {
    pub port: u16,
    /// The HTTP-FLV port, when enabled.
    pub httpflv_port: Option<u16>,
    /// The RTSP port, when enabled.
    pub rtsp_port: Option<u16>,
    /// The SRT (UDP) port, when enabled.
    pub srt_port: Option<u16>,
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
        fs::write(&config_path, cfg.to_xml()).expect("write config");
        let log_path = dir.file("server.log");
        let log = fs::File::create(&log_path).expect("create log");
        let log2 = log.try_clone().expect("clone log");
        let child = Command::new(BIN)
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
            dir,
            config_path,
            log_path,
            child,
            exit: None,
        };
        let ports: Vec<u16> = std::iter::once(srv.port)
            .chain(srv.httpflv_port)
            .chain(srv.rtsp_port)
            .collect();
        let end = Instant::now() + Duration::from_secs(20);
        loop {
            let up = |port: u16| {
                let addr = SocketAddr::from(([127, 0, 0, 1], port));
                TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
            };
            // SRT is UDP: its listener logs the port once it is bound.
            let srt_up = || {
                srv.srt_port.is_none_or(|p| {
                    srv.log()
                        .lines()
                        .any(|l| l.contains("listening (UDP)") && l.contains(&format!("port={p}")))
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

    /// `rtmp://127.0.0.1:PORT/{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("rtmp://127.0.0.1:{}/{}", self.port, path)
    }

    /// `http://127.0.0.1:HTTPFLV_PORT/{path}` (HTTP-FLV must be enabled).
    pub fn flv_url(&self, path: &str) -> String {
        let port = self
            .httpflv_port
            .expect("HTTP-FLV is enabled in this test's config");
        format!("http://127.0.0.1:{port}/{path}")
    }

    /// `rtsp://127.0.0.1:RTSP_PORT/{path}` (RTSP must be enabled).
    pub fn rtsp_url(&self, path: &str) -> String {
        let port = self
            .rtsp_port
            .expect("RTSP is enabled in this test's config");
        format!("rtsp://127.0.0.1:{port}/{path}")
    }

    /// `srt://127.0.0.1:SRT_PORT?streamid={streamid}` (SRT must be enabled); options such as
    /// `&latency=...` may follow.
    pub fn srt_url(&self, streamid: &str) -> String {
        let port = self.srt_port.expect("SRT is enabled in this test's config");
        format!("srt://127.0.0.1:{port}?streamid={streamid}")
    }

    /// `rtmp://127.0.0.1:PORT/live` (the tcUrl ffmpeg sends for app `live`).
    pub fn tcurl(&self) -> String {
        format!("rtmp://127.0.0.1:{}/live", self.port)
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

// ------------------------------------------------------------------------------------------
// ffmpeg / ffprobe

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
        .args(["-t", &seconds.to_string(), "-f", format, url]);
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

// ------------------------------------------------------------------------------------------
// raw sockets

/// A small xorshift generator for garbage bytes (deterministic per seed).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| (self.next_u64() >> 24) as u8).collect()
    }
}

/// Connects to 127.0.0.1:port with short timeouts.
pub fn connect(port: u16) -> io::Result<TcpStream> {
    let s = TcpStream::connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_secs(3),
    )?;
    s.set_read_timeout(Some(Duration::from_secs(3)))?;
    s.set_write_timeout(Some(Duration::from_secs(3)))?;
    Ok(s)
}

/// Connects to 127.0.0.1:port from `local`, another address of the loopback range (another
/// client host to the server), with short timeouts.
pub fn connect_from(local: [u8; 4], port: u16) -> io::Result<TcpStream> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    socket.bind(&SocketAddr::from((local, 0)).into())?;
    socket.connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], port)).into(),
        Duration::from_secs(3),
    )?;
    let s: TcpStream = socket.into();
    s.set_read_timeout(Some(Duration::from_secs(3)))?;
    s.set_write_timeout(Some(Duration::from_secs(3)))?;
    Ok(s)
}

/// Performs the client side of the RTMP simple handshake (C0 C1, S0 S1 S2, C2).
pub fn rtmp_handshake(s: &mut TcpStream, rng: &mut Rng) -> io::Result<()> {
    let mut c0c1 = vec![3u8];
    c0c1.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0]);
    c0c1.extend_from_slice(&rng.bytes(1528));
    s.write_all(&c0c1)?;
    let mut s012 = vec![0u8; 1 + 1536 + 1536];
    s.read_exact(&mut s012)?;
    if s012[0] != 3 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("S0 is {} not 3", s012[0]),
        ));
    }
    // C2 echoes S1.
    s.write_all(&s012[1..1537])?;
    Ok(())
}

/// Whether the text names line `line` ("line 7", "line: 7", "7:" after a file name, ":7:", ...).
pub fn mentions_line(text: &str, line: usize) -> bool {
    let lower = text.to_lowercase();
    let b = lower.as_bytes();
    let n = line.to_string();
    for (i, _) in lower.match_indices(&n) {
        let before = if i > 0 { Some(b[i - 1]) } else { None };
        let after = b.get(i + n.len()).copied();
        if before.is_some_and(|c| c.is_ascii_digit()) || after.is_some_and(|c| c.is_ascii_digit()) {
            continue;
        }
        let ctx_start = i.saturating_sub(10);
        let ctx = &b[ctx_start..i];
        let ctx = String::from_utf8_lossy(ctx);
        if ctx.contains("line") || (before == Some(b':') && after == Some(b':')) {
            return true;
        }
    }
    false
}

/// The 1-based line of the first occurrence of `needle` in `text`.
pub fn line_of(text: &str, needle: &str) -> usize {
    let at = text
        .find(needle)
        .unwrap_or_else(|| panic!("{needle:?} not in text"));
    text[..at].matches('\n').count() + 1
}

/// Absolute path of a file of the repository.
pub fn repo_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

// ------------------------------------------------------------------------------------------
// a minimal RTMP client, to see exactly what the server sends and when

/// An AMF0 value (the subset RTMP commands use).
#[derive(Debug, Clone, PartialEq)]
pub enum Amf {
    Number(f64),
    Bool(bool),
    Str(String),
    Object(Vec<(String, Amf)>),
    Null,
    Undefined,
}

impl Amf {
    pub fn obj(pairs: &[(&str, Amf)]) -> Amf {
        Amf::Object(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        )
    }

    pub fn str(s: &str) -> Amf {
        Amf::Str(s.to_string())
    }

    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Amf::Number(n) => {
                out.push(0);
                out.extend_from_slice(&n.to_be_bytes());
            }
            Amf::Bool(b) => out.extend_from_slice(&[1, u8::from(*b)]),
            Amf::Str(s) => {
                out.push(2);
                out.extend_from_slice(&(s.len() as u16).to_be_bytes());
                out.extend_from_slice(s.as_bytes());
            }
            Amf::Object(pairs) => {
                out.push(3);
                for (k, v) in pairs {
                    out.extend_from_slice(&(k.len() as u16).to_be_bytes());
                    out.extend_from_slice(k.as_bytes());
                    v.encode(out);
                }
                out.extend_from_slice(&[0, 0, 9]);
            }
            Amf::Null => out.push(5),
            Amf::Undefined => out.push(6),
        }
    }

    /// Decodes values until the input ends or an unknown marker is met.
    pub fn decode_all(mut b: &[u8]) -> Vec<Amf> {
        let mut out = Vec::new();
        while !b.is_empty() {
            match Amf::decode(&mut b) {
                Some(v) => out.push(v),
                None => break,
            }
        }
        out
    }

    fn decode(b: &mut &[u8]) -> Option<Amf> {
        fn take<'a>(b: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
            if b.len() < n {
                return None;
            }
            let (h, t) = b.split_at(n);
            *b = t;
            Some(h)
        }
        fn key(b: &mut &[u8]) -> Option<String> {
            let l = take(b, 2)?;
            let n = u16::from_be_bytes([l[0], l[1]]) as usize;
            Some(String::from_utf8_lossy(take(b, n)?).to_string())
        }
        fn pairs(b: &mut &[u8]) -> Option<Vec<(String, Amf)>> {
            let mut v = Vec::new();
            loop {
                let k = key(b)?;
                if k.is_empty() && b.first() == Some(&9) {
                    take(b, 1)?;
                    return Some(v);
                }
                v.push((k, Amf::decode(b)?));
            }
        }
        let marker = take(b, 1)?[0];
        Some(match marker {
            0 => {
                let n = take(b, 8)?;
                let mut a = [0u8; 8];
                a.copy_from_slice(n);
                Amf::Number(f64::from_be_bytes(a))
            }
            1 => Amf::Bool(take(b, 1)?[0] != 0),
            2 => Amf::Str(key(b)?),
            3 => Amf::Object(pairs(b)?),
            5 => Amf::Null,
            6 => Amf::Undefined,
            8 => {
                take(b, 4)?;
                Amf::Object(pairs(b)?)
            }
            _ => return None,
        })
    }

    /// Field `k` of an object.
    pub fn get(&self, k: &str) -> Option<&Amf> {
        match self {
            Amf::Object(p) => p.iter().find(|(key, _)| key == k).map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Amf::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_num(&self) -> Option<f64> {
        match self {
            Amf::Number(n) => Some(*n),
            _ => None,
        }
    }
}

/// One whole message the server sent.
#[derive(Clone)]
pub struct RtmpMsg {
    /// When its last byte arrived.
    pub at: Instant,
    pub type_id: u8,
    pub stream_id: u32,
    pub payload: Vec<u8>,
}

impl RtmpMsg {
    pub const AUDIO: u8 = 8;
    pub const VIDEO: u8 = 9;
    pub const DATA: u8 = 18;
    pub const COMMAND: u8 = 20;

    pub fn is_media(&self) -> bool {
        matches!(self.type_id, Self::AUDIO | Self::VIDEO | Self::DATA)
    }

    /// The AMF0 values of a command message (empty for other types).
    pub fn values(&self) -> Vec<Amf> {
        if self.type_id == Self::COMMAND {
            Amf::decode_all(&self.payload)
        } else {
            Vec::new()
        }
    }

    /// The command name (`_result`, `_error`, `onStatus`, ...).
    pub fn command(&self) -> Option<String> {
        self.values()
            .first()
            .and_then(|v| v.as_str().map(str::to_string))
    }

    /// The `code` of the info object of an `onStatus`/`_result`/`_error`.
    pub fn code(&self) -> Option<String> {
        self.values()
            .iter()
            .find_map(|v| v.get("code").and_then(|c| c.as_str().map(str::to_string)))
    }
}

impl fmt::Debug for RtmpMsg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.type_id == Self::COMMAND {
            write!(f, "cmd(sid {}) {:?}", self.stream_id, self.values())
        } else {
            write!(
                f,
                "type {} (sid {}) {} bytes",
                self.type_id,
                self.stream_id,
                self.payload.len()
            )
        }
    }
}

#[derive(Default)]
struct RtmpInbox {
    msgs: Vec<RtmpMsg>,
    closed_at: Option<Instant>,
    error: Option<String>,
    /// While set, the reader thread stops reading the socket (a player that stalls).
    paused: bool,
}

/// A bare RTMP client: simple handshake, commands in one chunk each (after asking for a big
/// chunk size), and a reader thread that reassembles every message the server sends.
pub struct RtmpClient {
    stream: TcpStream,
    inbox: Arc<(Mutex<RtmpInbox>, Condvar)>,
    reader: Option<JoinHandle<()>>,
    txn: f64,
}

impl RtmpClient {
    /// TCP connect, handshake, and Set Chunk Size 65536 for what we send.
    pub fn open(port: u16) -> io::Result<RtmpClient> {
        let mut s = connect(port)?;
        s.set_nodelay(true)?;
        let mut rng = Rng::new(u64::from(port) * 7919 + 17);
        rtmp_handshake(&mut s, &mut rng)?;
        let mut c = RtmpClient {
            stream: s.try_clone()?,
            inbox: Arc::new((Mutex::new(RtmpInbox::default()), Condvar::new())),
            reader: None,
            txn: 1.0,
        };
        let inbox = c.inbox.clone();
        s.set_read_timeout(None)?;
        c.reader = Some(thread::spawn(move || rtmp_reader(s, inbox)));
        c.send_raw(2, 0, 1, &65536u32.to_be_bytes())?;
        Ok(c)
    }

    /// Stops reading the socket from now on, as a player that stalls.
    pub fn pause_reading(&self) {
        self.inbox.0.lock().expect("inbox lock").paused = true;
    }

    /// Sends one message in a single chunk (fmt 0) on chunk stream `csid`.
    pub fn send_raw(
        &mut self,
        csid: u8,
        stream_id: u32,
        type_id: u8,
        payload: &[u8],
    ) -> io::Result<()> {
        let mut m = vec![csid & 0x3f, 0, 0, 0];
        let len = payload.len() as u32;
        m.extend_from_slice(&len.to_be_bytes()[1..]);
        m.push(type_id);
        m.extend_from_slice(&stream_id.to_le_bytes());
        m.extend_from_slice(payload);
        self.stream.write_all(&m)
    }

    /// Sends an AMF0 command; returns its transaction id.
    pub fn command(&mut self, stream_id: u32, name: &str, args: &[Amf]) -> io::Result<f64> {
        let txn = self.txn;
        self.txn += 1.0;
        let mut p = Vec::new();
        Amf::str(name).encode(&mut p);
        Amf::Number(txn).encode(&mut p);
        for a in args {
            a.encode(&mut p);
        }
        let csid = if stream_id == 0 { 3 } else { 8 };
        self.send_raw(csid, stream_id, 20, &p)?;
        Ok(txn)
    }

    /// Sends `connect` for `app` with tcUrl `tcurl`.
    pub fn send_connect(&mut self, app: &str, tcurl: &str) -> io::Result<f64> {
        self.command(
            0,
            "connect",
            &[Amf::obj(&[
                ("app", Amf::str(app)),
                ("type", Amf::str("nonprivate")),
                ("flashVer", Amf::str("FMLE/3.0 (compatible; e2e)")),
                ("tcUrl", Amf::str(tcurl)),
            ])],
        )
    }

    /// Every message received so far.
    pub fn messages(&self) -> Vec<RtmpMsg> {
        self.inbox.0.lock().expect("inbox lock").msgs.clone()
    }

    /// When the server closed the connection (None while open).
    pub fn closed_at(&self) -> Option<Instant> {
        self.inbox.0.lock().expect("inbox lock").closed_at
    }

    /// Waits for the connection to be closed by the server.
    pub fn wait_closed(&self, timeout: Duration) -> Option<Instant> {
        let end = Instant::now() + timeout;
        let (lock, cv) = &*self.inbox;
        let mut g = lock.lock().expect("inbox lock");
        loop {
            if let Some(t) = g.closed_at {
                return Some(t);
            }
            let now = Instant::now();
            if now >= end {
                return None;
            }
            g = cv.wait_timeout(g, end - now).expect("inbox wait").0;
        }
    }

    /// The first message matching `pred`, waiting up to `timeout`; None on timeout or close.
    pub fn wait_msg(&self, pred: impl Fn(&RtmpMsg) -> bool, timeout: Duration) -> Option<RtmpMsg> {
        let end = Instant::now() + timeout;
        let (lock, cv) = &*self.inbox;
        let mut g = lock.lock().expect("inbox lock");
        loop {
            if let Some(m) = g.msgs.iter().find(|m| pred(m)) {
                return Some(m.clone());
            }
            let now = Instant::now();
            if now >= end || g.closed_at.is_some() {
                return None;
            }
            g = cv.wait_timeout(g, end - now).expect("inbox wait").0;
        }
    }

    /// Waits for the `_result`/`_error` of transaction `txn`.
    pub fn wait_reply(&self, txn: f64, timeout: Duration) -> Option<RtmpMsg> {
        self.wait_msg(
            |m| {
                let v = m.values();
                matches!(
                    v.first().and_then(Amf::as_str),
                    Some("_result") | Some("_error")
                ) && v.get(1).and_then(Amf::as_num) == Some(txn)
            },
            timeout,
        )
    }

    /// `connect` then `createStream`; the message stream id to play or publish on.
    pub fn connect_and_create_stream(&mut self, app: &str, tcurl: &str) -> Result<u32, String> {
        let t = self.send_connect(app, tcurl).map_err(|e| e.to_string())?;
        let r = self
            .wait_reply(t, Duration::from_secs(10))
            .ok_or_else(|| format!("no reply to connect: {:?}", self.messages()))?;
        if r.command().as_deref() != Some("_result") {
            return Err(format!("connect refused: {r:?}"));
        }
        let t = self
            .command(0, "createStream", &[Amf::Null])
            .map_err(|e| e.to_string())?;
        let r = self
            .wait_reply(t, Duration::from_secs(10))
            .ok_or_else(|| format!("no reply to createStream: {:?}", self.messages()))?;
        let sid = r
            .values()
            .get(3)
            .and_then(Amf::as_num)
            .ok_or_else(|| format!("createStream result without a stream id: {r:?}"))?;
        Ok(sid as u32)
    }

    pub fn send_play(&mut self, sid: u32, name: &str) -> io::Result<()> {
        self.command(
            sid,
            "play",
            &[Amf::Null, Amf::str(name), Amf::Number(-2000.0)],
        )
        .map(|_| ())
    }

    pub fn send_publish(&mut self, sid: u32, name: &str) -> io::Result<()> {
        self.command(
            sid,
            "publish",
            &[Amf::Null, Amf::str(name), Amf::str("live")],
        )
        .map(|_| ())
    }

    /// The first `onStatus` with this code.
    pub fn wait_status(&self, code: &str, timeout: Duration) -> Option<RtmpMsg> {
        self.wait_msg(|m| m.code().as_deref() == Some(code), timeout)
    }

    /// Sends one message with a timestamp (media: an FLV tag body as type 8 or 9), split into
    /// chunks of the 65536-byte chunk size [`Self::open`] announced.
    pub fn send_at(
        &mut self,
        csid: u8,
        stream_id: u32,
        type_id: u8,
        timestamp: u32,
        payload: &[u8],
    ) -> io::Result<()> {
        let csid = csid & 0x3f;
        let mut m = vec![csid];
        let ts = timestamp.min(0x00ff_fffe);
        m.extend_from_slice(&ts.to_be_bytes()[1..]);
        m.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
        m.push(type_id);
        m.extend_from_slice(&stream_id.to_le_bytes());
        for (i, part) in payload.chunks(65536).enumerate() {
            if i > 0 {
                m.push(0xc0 | csid);
            }
            m.extend_from_slice(part);
        }
        self.stream.write_all(&m)
    }
}

impl Drop for RtmpClient {
    fn drop(&mut self) {
        // A paused reader must run again to see the shutdown and end.
        if let Ok(mut g) = self.inbox.0.lock() {
            g.paused = false;
        }
        let _ = self.stream.shutdown(Shutdown::Both);
        if let Some(h) = self.reader.take() {
            let _ = h.join();
        }
    }
}

struct ChunkState {
    timestamp_ext: bool,
    len: usize,
    type_id: u8,
    stream_id: u32,
    buf: Vec<u8>,
}

fn rtmp_reader(mut s: TcpStream, inbox: Arc<(Mutex<RtmpInbox>, Condvar)>) {
    let result = rtmp_read_loop(&mut s, &inbox);
    let (lock, cv) = &*inbox;
    let mut g = lock.lock().expect("inbox lock");
    g.closed_at = Some(Instant::now());
    g.error = result.err().map(|e| e.to_string());
    cv.notify_all();
}

fn rtmp_read_loop(s: &mut TcpStream, inbox: &Arc<(Mutex<RtmpInbox>, Condvar)>) -> io::Result<()> {
    let mut chunk_size = 128usize;
    let mut states: std::collections::HashMap<u32, ChunkState> = Default::default();
    let mut u = |n: usize| -> io::Result<Vec<u8>> {
        while inbox.0.lock().expect("inbox lock").paused {
            thread::sleep(Duration::from_millis(50));
        }
        let mut b = vec![0u8; n];
        s.read_exact(&mut b)?;
        Ok(b)
    };
    loop {
        let b0 = u(1)?[0];
        let fmt = b0 >> 6;
        let csid = match b0 & 0x3f {
            0 => 64 + u32::from(u(1)?[0]),
            1 => {
                let b = u(2)?;
                64 + u32::from(b[0]) + 256 * u32::from(b[1])
            }
            c => u32::from(c),
        };
        let st = states.entry(csid).or_insert(ChunkState {
            timestamp_ext: false,
            len: 0,
            type_id: 0,
            stream_id: 0,
            buf: Vec::new(),
        });
        let be24 = |b: &[u8]| (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        match fmt {
            0 => {
                let h = u(11)?;
                st.timestamp_ext = be24(&h[0..3]) == 0xff_ffff;
                st.len = be24(&h[3..6]) as usize;
                st.type_id = h[6];
                st.stream_id = u32::from_le_bytes([h[7], h[8], h[9], h[10]]);
            }
            1 => {
                let h = u(7)?;
                st.timestamp_ext = be24(&h[0..3]) == 0xff_ffff;
                st.len = be24(&h[3..6]) as usize;
                st.type_id = h[6];
            }
            2 => {
                let h = u(3)?;
                st.timestamp_ext = be24(&h[0..3]) == 0xff_ffff;
            }
            _ => {}
        }
        if st.timestamp_ext {
            u(4)?;
        }
        let want = (st.len - st.buf.len().min(st.len)).min(chunk_size);
        let part = u(want)?;
        st.buf.extend_from_slice(&part);
        if st.buf.len() >= st.len {
            let payload = std::mem::take(&mut st.buf);
            if st.type_id == 1 && payload.len() >= 4 {
                chunk_size = (u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]])
                    & 0x7fff_ffff) as usize;
            }
            let msg = RtmpMsg {
                at: Instant::now(),
                type_id: st.type_id,
                stream_id: st.stream_id,
                payload,
            };
            let (lock, cv) = &**inbox;
            lock.lock().expect("inbox lock").msgs.push(msg);
            cv.notify_all();
        }
    }
}

/// An SRT client's `url` hook field, read by a WHATWG URL parser (the one of browsers and
/// Node's `new URL`): no fragment, its `streamid` pair the streamid that was sent, and its
/// `token` pair `token`.
pub fn assert_srt_url_parses(url: &str, streamid: &str, token: Option<&str>) {
    let parsed = url::Url::parse(url).unwrap_or_else(|e| panic!("{url} does not parse: {e}"));
    assert_eq!(parsed.fragment(), None, "{url} has no fragment");
    let pair = |key: &str| {
        parsed
            .query_pairs()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.into_owned())
    };
    assert_eq!(pair("streamid").as_deref(), Some(streamid), "{url}");
    assert_eq!(pair("token").as_deref(), token, "{url}");
}
