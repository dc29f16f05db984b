//! The business server of the tests: a real HTTP/1.1 server that records every callback the
//! server under test makes and answers each by the first matching rule.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use streamgate::protocol::url::percent_decode as url_decode;

/// The form content type every POST callback must carry.
pub const FORM: &str = "application/x-www-form-urlencoded";

/// The content type of a POST callback with `<notify_format>json</notify_format>`.
pub const JSON: &str = "application/json";

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
    /// Answer at once with this status (a `3xx`) and, when given, this `Location` header.
    Redirect(u16, Option<&'static str>),
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
    /// Decoded fields: the form body for POST, the query string for anything else; for a
    /// JSON body, its members in order (strings as they are, numbers in decimal).
    pub pairs: Vec<(String, String)>,
    /// Every header, as received.
    pub headers: Vec<(String, String)>,
    /// A JSON body, parsed (members in their order), when the content type is JSON.
    pub json: Option<serde_json::Value>,
}

impl Record {
    /// `X-Streamgate-Attempt` as a number (0 when absent or not a number).
    pub fn attempt(&self) -> u32 {
        self.header("x-streamgate-attempt")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

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

    /// The first header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
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
    /// Down: the port refuses connections and open ones are closed.
    down: AtomicBool,
    close_each: AtomicBool,
    connections: AtomicUsize,
}

/// A real HTTP/1.1 business server on 127.0.0.1, one thread per connection, keep-alive by
/// default (or `Connection: close` on every answer with [`HookServer::close_connections`]).
/// Every request is recorded; its answer is chosen by the first matching rule (default 200).
pub struct HookServer {
    pub port: u16,
    /// The address it listens on (127.0.0.1 unless [`HookServer::start_on`] said another).
    pub ip: std::net::IpAddr,
    inner: Arc<HookInner>,
    acceptor: Option<JoinHandle<()>>,
}

impl HookServer {
    pub fn start() -> HookServer {
        HookServer::start_on(std::net::Ipv4Addr::LOCALHOST.into())
    }

    /// A hook server on `ip` (an address of a test network that servers in other network
    /// namespaces reach).
    pub fn start_on(ip: std::net::IpAddr) -> HookServer {
        let listener = TcpListener::bind((ip, 0)).expect("bind hook server");
        let port = listener.local_addr().expect("local_addr").port();
        let inner = Arc::new(HookInner {
            records: Mutex::new(Vec::new()),
            changed: Condvar::new(),
            rules: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
            down: AtomicBool::new(false),
            close_each: AtomicBool::new(false),
            connections: AtomicUsize::new(0),
        });
        let acceptor = Some(spawn_acceptor(listener, port, inner.clone()));
        HookServer {
            port,
            ip,
            inner,
            acceptor,
        }
    }

    /// Takes the server down: its port refuses connections (the listener is closed) and every
    /// open connection is closed, as when a business server stops. [`HookServer::up`] brings
    /// it back on the same port.
    pub fn down(&mut self) {
        self.inner.down.store(true, Ordering::SeqCst);
        self.wake_acceptor();
        if let Some(h) = self.acceptor.take() {
            let _ = h.join();
        }
        // Connection threads see the flag within their read timeout.
        thread::sleep(Duration::from_millis(400));
    }

    /// Brings the server back on the same port after [`HookServer::down`].
    pub fn up(&mut self) {
        let end = Instant::now() + Duration::from_secs(10);
        let listener = loop {
            match TcpListener::bind((self.ip, self.port)) {
                Ok(l) => break l,
                Err(e) if Instant::now() < end => {
                    let _ = e;
                    thread::sleep(Duration::from_millis(50));
                }
                Err(e) => panic!("hook server: cannot listen on {} again: {e}", self.port),
            }
        };
        self.inner.down.store(false, Ordering::SeqCst);
        self.acceptor = Some(spawn_acceptor(listener, self.port, self.inner.clone()));
    }

    fn wake_acceptor(&self) {
        let _ = TcpStream::connect_timeout(
            &SocketAddr::new(self.ip, self.port),
            Duration::from_millis(200),
        );
    }

    /// `http://127.0.0.1:PORT{path}` (its own address when not loopback).
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", SocketAddr::new(self.ip, self.port), path)
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
        if self.acceptor.is_some() {
            self.wake_acceptor();
        }
        if let Some(h) = self.acceptor.take() {
            let _ = h.join();
        }
        if thread::panicking() {
            eprintln!("---- hook records ----\n{}", self.dump());
        }
    }
}

/// Accepts connections until the server stops or goes down (then the listener is closed).
fn spawn_acceptor(listener: TcpListener, port: u16, inner: Arc<HookInner>) -> JoinHandle<()> {
    thread::Builder::new()
        .name(format!("hook-accept-{port}"))
        .spawn(move || {
            for conn in listener.incoming() {
                if inner.stop.load(Ordering::SeqCst) || inner.down.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                inner.connections.fetch_add(1, Ordering::SeqCst);
                let ci = inner.clone();
                let _ = thread::Builder::new()
                    .name("hook-conn".into())
                    .spawn(move || serve_connection(conn, ci));
            }
        })
        .expect("spawn hook acceptor")
}

/// Reads more bytes into `buf`; Ok(false) on EOF or when the server stops or goes down.
fn fill(stream: &mut TcpStream, buf: &mut Vec<u8>, inner: &HookInner) -> io::Result<bool> {
    let mut chunk = [0u8; 8192];
    loop {
        if inner.stop.load(Ordering::SeqCst) || inner.down.load(Ordering::SeqCst) {
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
    inner: &HookInner,
) -> io::Result<Option<RawRequest>> {
    let head_end = loop {
        if let Some(p) = find_subslice(buf, b"\r\n\r\n") {
            break p;
        }
        if !fill(stream, buf, inner)? {
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
                if !fill(stream, buf, inner)? {
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
                    if !fill(stream, buf, inner)? {
                        return Ok(None);
                    }
                }
                break;
            }
            while buf.len() < size + 2 {
                if !fill(stream, buf, inner)? {
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
            if !fill(stream, buf, inner)? {
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
        301 => "Moved Permanently",
        302 => "Found",
        307 => "Temporary Redirect",
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
        let req = match read_request(&mut stream, &mut buf, &inner) {
            Ok(Some(r)) => r,
            _ => return,
        };
        let (path, query) = match req.target.split_once('?') {
            Some((p, q)) => (p.to_string(), q.to_string()),
            None => (req.target.clone(), String::new()),
        };
        let body = String::from_utf8_lossy(&req.body).to_string();
        let json = req
            .header("content-type")
            .filter(|t| t.starts_with(JSON))
            .and_then(|_| serde_json::from_str::<serde_json::Value>(&body).ok());
        let pairs = match (&json, req.method.as_str()) {
            (Some(serde_json::Value::Object(members)), _) => members
                .iter()
                .map(|(k, v)| {
                    let v = match v {
                        serde_json::Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    (k.clone(), v)
                })
                .collect(),
            (_, "POST") => parse_form(&body),
            _ => parse_form(&query),
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
            headers: req.headers.clone(),
            json,
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
        let location = match rec.reply {
            Reply::Redirect(_, Some(location)) => format!("Location: {location}\r\n"),
            _ => String::new(),
        };
        let code = match rec.reply {
            Reply::Status(c) | Reply::Extra(c, _) | Reply::Redirect(c, _) => c,
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
                while let Ok(true) = fill(&mut stream, &mut sink, &inner) {
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
            "HTTP/1.1 {code} {}\r\n{location}Content-Type: text/plain\r\nContent-Length: {}\r\n{}\r\n{body}",
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
            (form_decode(k), form_decode(v))
        })
        .collect()
}

/// Plus- and percent-decoding (the server's own percent-decoder); text that does not decode
/// to UTF-8 is kept as sent.
pub fn form_decode(s: &str) -> String {
    let spaced = s.replace('+', " ");
    url_decode(&spaced).map_or_else(|| spaced.clone(), |d| d.into_owned())
}
