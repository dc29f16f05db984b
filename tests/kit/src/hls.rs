//! HLS in the tests: a validating proxy ([`HlsProxy`]) that every HLS player of a test goes
//! through, so that each playlist the server serves is checked against the RFC rules
//! players rely on (`streamgate::protocol::hls::validate`), and a Low-Latency HLS viewer of
//! the test's own ([`LlViewer`]) that follows the live edge with blocking reloads and fetches
//! every part, counting the bytes it was served.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use streamgate::protocol::hls::playlist::Directives;
use streamgate::protocol::hls::validate::{
    check_blocking_answer, check_media, check_succession, MediaPlaylist,
};

/// What the proxy saw.
#[derive(Debug, Default, Clone)]
pub struct ProxyReport {
    /// Requests forwarded.
    pub requests: usize,
    /// Media playlists checked.
    pub media_playlists: usize,
    /// Of them, answers to blocking reloads (`_HLS_msn`).
    pub blocking_answers: usize,
    /// Multivariant playlists served.
    pub multivariant_playlists: usize,
    /// Every rule broken, with the request that showed it.
    pub violations: Vec<String>,
    /// Body bytes served, by the session id (`s=`) of the request.
    pub bytes_by_session: HashMap<String, u64>,
    /// Responses by status.
    pub statuses: HashMap<u16, usize>,
}

#[derive(Default)]
struct ProxyState {
    report: ProxyReport,
    /// The last media playlist of each (path, session), for the succession checks.
    last: HashMap<String, MediaPlaylist>,
}

/// An HTTP proxy in front of the server's HLS port that checks every media playlist it
/// passes: each on its own, each against the one before it for the same viewer, and each
/// answer to a blocking reload against what was asked.
pub struct HlsProxy {
    /// The port players use.
    pub port: u16,
    state: Arc<Mutex<ProxyState>>,
    stop: Arc<AtomicBool>,
}

fn query_param<'a>(query: &'a str, key: &str) -> Option<&'a str> {
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix(key)?.strip_prefix('='))
}

impl HlsProxy {
    /// A proxy to `127.0.0.1:upstream`.
    pub fn start(upstream: u16) -> HlsProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the HLS proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let state = Arc::new(Mutex::new(ProxyState::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let agent = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(30))
            .build();
        {
            let (state, stop) = (state.clone(), stop.clone());
            thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    let (state, agent) = (state.clone(), agent.clone());
                    thread::spawn(move || serve(conn, upstream, &agent, &state));
                }
            });
        }
        HlsProxy { port, state, stop }
    }

    /// `http://127.0.0.1:PROXY/{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}/{path}", self.port)
    }

    /// What it saw so far.
    pub fn report(&self) -> ProxyReport {
        self.state
            .lock()
            .map(|s| s.report.clone())
            .unwrap_or_default()
    }

    /// Panics unless at least `min` media playlists passed and none broke a rule.
    pub fn assert_valid(&self, min: usize) -> ProxyReport {
        let report = self.report();
        assert!(
            report.violations.is_empty(),
            "served playlists broke HLS rules:\n{}",
            report.violations.join("\n")
        );
        assert!(
            report.media_playlists >= min,
            "only {} media playlists were served (at least {min} expected): {report:?}",
            report.media_playlists
        );
        report
    }
}

impl Drop for HlsProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Serves one client connection: requests one after another (keep-alive).
fn serve(mut conn: TcpStream, upstream: u16, agent: &ureq::Agent, state: &Mutex<ProxyState>) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(60)));
    let mut buf = Vec::new();
    loop {
        let (method, target, used) = loop {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut req = httparse::Request::new(&mut headers);
            match req.parse(&buf) {
                Ok(httparse::Status::Complete(used)) => {
                    let method = req.method.unwrap_or("GET").to_owned();
                    let target = req.path.unwrap_or("/").to_owned();
                    break (method, target, used);
                }
                Ok(httparse::Status::Partial) => {}
                Err(_) => return,
            }
            let mut chunk = [0u8; 4096];
            match conn.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        buf.drain(..used);
        let url = format!("http://127.0.0.1:{upstream}{target}");
        let answer = match agent.request(&method, &url).call() {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(_) => return,
        };
        let status = answer.status();
        let header = |name: &str| answer.header(name).map(str::to_owned);
        let (content_type, cache) = (header("content-type"), header("cache-control"));
        let mut body = Vec::new();
        if answer.into_reader().read_to_end(&mut body).is_err() {
            return;
        }
        check(state, &target, status, content_type.as_deref(), &body);
        let mut head = format!(
            "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nAccess-Control-Allow-Origin: *\r\n",
            body.len()
        );
        if let Some(t) = content_type {
            head.push_str(&format!("Content-Type: {t}\r\n"));
        }
        if let Some(c) = cache {
            head.push_str(&format!("Cache-Control: {c}\r\n"));
        }
        head.push_str("\r\n");
        if conn.write_all(head.as_bytes()).is_err() || conn.write_all(&body).is_err() {
            return;
        }
    }
}

/// Checks one answer and counts it.
fn check(
    state: &Mutex<ProxyState>,
    target: &str,
    status: u16,
    content_type: Option<&str>,
    body: &[u8],
) {
    let Ok(mut state) = state.lock() else { return };
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let session = query_param(query, "s").unwrap_or("").to_owned();
    let st = &mut *state;
    st.report.requests += 1;
    *st.report.statuses.entry(status).or_default() += 1;
    *st.report
        .bytes_by_session
        .entry(session.clone())
        .or_default() += body.len() as u64;
    if status != 200 || !content_type.is_some_and(|t| t.contains("mpegurl")) {
        return;
    }
    let text = String::from_utf8_lossy(body);
    if !text.contains("#EXT-X-TARGETDURATION") {
        st.report.multivariant_playlists += 1;
        return;
    }
    st.report.media_playlists += 1;
    let playlist = match check_media(&text) {
        Ok(p) => p,
        Err(violations) => {
            for v in violations {
                st.report.violations.push(format!("{target}: {v}\n{text}"));
            }
            return;
        }
    };
    if let Ok(d) = Directives::parse(query) {
        if d.msn.is_some() {
            st.report.blocking_answers += 1;
            if let Err(v) = check_blocking_answer(&d, &playlist) {
                st.report.violations.push(format!("{target}: {v}\n{text}"));
            }
        }
    }
    let key = format!("{path}?s={session}");
    if let Some(prev) = st.last.get(&key) {
        if let Err(violations) = check_succession(prev, &playlist) {
            for v in violations {
                st.report.violations.push(format!("{target}: {v}"));
            }
        }
    }
    // Delta updates list fewer segments: the next full playlist is checked against them all
    // the same, by the segments both list.
    st.last.insert(key, playlist);
}

/// An HTTP answer.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub status: u16,
    pub content_type: String,
    pub cache_control: String,
    pub cors: Option<String>,
    pub body: Vec<u8>,
}

impl Fetched {
    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// GETs `url` (any status).
pub fn fetch(agent: &ureq::Agent, url: &str) -> Fetched {
    let answer = match agent.get(url).call() {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("GET {url}: {e}"),
    };
    let status = answer.status();
    let content_type = answer.header("content-type").unwrap_or("").to_owned();
    let cache_control = answer.header("cache-control").unwrap_or("").to_owned();
    let cors = answer
        .header("access-control-allow-origin")
        .map(str::to_owned);
    let mut body = Vec::new();
    answer
        .into_reader()
        .read_to_end(&mut body)
        .expect("read the body");
    Fetched {
        status,
        content_type,
        cache_control,
        cors,
        body,
    }
}

/// A Low-Latency HLS viewer of the test's own: it starts at `index.m3u8`, then follows the
/// live edge with blocking playlist reloads (`_HLS_msn` / `_HLS_part`) and fetches the init
/// segment and every new part, as a player does.
pub struct LlViewer {
    agent: ureq::Agent,
    /// `http://host:port/{app}/{name}/`.
    base: String,
    /// The media playlist's URI from the multivariant playlist (`media.m3u8?s=...`).
    pub media: String,
    /// The session id.
    pub session: String,
    /// Body bytes received (every answer, any status).
    pub bytes: u64,
    /// Requests made.
    pub requests: usize,
    /// Parts fetched.
    pub parts: usize,
    /// The last media playlist.
    pub last: Option<MediaPlaylist>,
}

impl LlViewer {
    /// Starts a viewer at `url` (`.../index.m3u8[?query]`): its first request. `Err` is the
    /// answer when it was not 200.
    pub fn start(url: &str) -> Result<LlViewer, Fetched> {
        let agent = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(30))
            .build();
        let first = fetch(&agent, url);
        if first.status != 200 {
            return Err(first);
        }
        let text = first.text();
        let media = text
            .lines()
            .find(|l| !l.starts_with('#') && !l.trim().is_empty())
            .unwrap_or_else(|| panic!("no variant in\n{text}"))
            .trim()
            .to_owned();
        let session = media
            .split_once("s=")
            .map(|(_, s)| s.split('&').next().unwrap_or("").to_owned())
            .unwrap_or_default();
        let base = url
            .rsplit_once('/')
            .map(|(b, _)| format!("{b}/"))
            .expect("a URL with a path");
        Ok(LlViewer {
            agent,
            base,
            media,
            session,
            bytes: first.body.len() as u64,
            requests: 1,
            parts: 0,
            last: None,
        })
    }

    /// GETs `uri` (relative to the stream) and counts it.
    pub fn get(&mut self, uri: &str) -> Fetched {
        let f = fetch(&self.agent, &format!("{}{uri}", self.base));
        self.bytes += f.body.len() as u64;
        self.requests += 1;
        f
    }

    /// Follows the live edge for `time`: blocking reloads for the next part, each new part
    /// fetched (and the init segment once). Panics on an answer that is not 200.
    pub fn follow(&mut self, time: Duration) {
        let end = Instant::now() + time;
        let mut fetched: std::collections::HashSet<String> = Default::default();
        let mut next: Option<(u64, usize)> = None;
        while Instant::now() < end {
            let uri = match next {
                Some((msn, part)) => format!("{}&_HLS_msn={msn}&_HLS_part={part}", self.media),
                None => self.media.clone(),
            };
            let answer = self.get(&uri);
            assert_eq!(answer.status, 200, "GET {uri}: {}", answer.text());
            let text = answer.text();
            let playlist =
                check_media(&text).unwrap_or_else(|v| panic!("invalid playlist {v:?}\n{text}"));
            if let Some(map) = text
                .lines()
                .find_map(|l| l.strip_prefix("#EXT-X-MAP:URI=\""))
                .and_then(|l| l.split('"').next())
            {
                if fetched.insert(map.to_owned()) {
                    let init = self.get(map);
                    assert_eq!(init.status, 200, "init segment");
                }
            }
            let mut uris: Vec<String> = playlist
                .segments
                .iter()
                .flat_map(|s| s.parts.iter().map(|p| p.uri.clone()))
                .collect();
            uris.extend(playlist.open_parts.iter().map(|p| p.uri.clone()));
            // The newest three parts: where a player at the live edge starts.
            let newest = uris.len().saturating_sub(3);
            for uri in &uris[newest..] {
                if fetched.insert(uri.clone()) {
                    let part = self.get(uri);
                    assert_eq!(part.status, 200, "part {uri}");
                    self.parts += 1;
                }
            }
            if playlist.ended {
                self.last = Some(playlist);
                return;
            }
            next = Some((playlist.open_msn(), playlist.open_parts.len()));
            self.last = Some(playlist);
        }
    }
}
