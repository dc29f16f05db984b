//! The HTTP side of HLS (actix-web): every request of every viewer.
//!
//! - `GET /{app}/{name}/index.m3u8[?query]` without a session id starts a viewer (hooks
//!   first: `401`/`403` when one refuses, `404` when the stream is not live, `503` past
//!   `<max_connections>`) and answers the multivariant playlist, whose one variant is
//!   `media.m3u8?s=<id>`;
//! - with `s=<id>`: `index.m3u8`, `media.m3u8` (blocking reload with `_HLS_msn` /
//!   `_HLS_part`, delta updates with `_HLS_skip`), `init.mp4`, `seg<n>.m4s|ts`,
//!   `part<n>.<i>.m4s|ts` (a part not complete yet, such as the preload hint, is held until it
//!   is). A forged or expired id, or one whose session has ended, is `403`;
//! - `OPTIONS` is a CORS preflight (`204`); other methods `405`.
//!
//! A media playlist is rendered once per state of the stream's segmenter, with a mark where
//! each viewer's URI suffix goes ([`PlaylistCache`]); a request copies it with its own suffix.
//!
//! Playlists are `no-cache`; init segments, segments and parts are cacheable for as long as
//! they are listed, so a CDN can sit in front. Every answer has the CORS headers of
//! HTTP-FLV.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use actix_web::http::{Method, StatusCode};
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use bytes::Bytes;
use streamgate_actors::metrics::metrics;

use super::packager::{HlsStream, Packaged};
use super::viewer::{Begin, Begun, HlsViewer, Served, Unservable};
use super::Hls;
use crate::protocol::hls::playlist::{
    self, blocking, media_playlist, multivariant_playlist, Blocking, Directives, LiveEdge,
    MediaOptions, Resource,
};
use crate::protocol::hls::segmenter::Segmenter;
use crate::protocol::hls::session_id::Refused;
use crate::protocol::hls::Container;
use crate::protocol::http::{hls_path, CORS};

/// How long a new viewer's first request waits for its stream's first complete segment.
const READY_WAIT: Duration = Duration::from_secs(6);
/// The `BANDWIDTH` of a multivariant playlist before a segment was measured.
const FALLBACK_BANDWIDTH: u64 = 2_000_000;
/// The multivariant playlist's one variant.
const MEDIA_PLAYLIST: &str = "media.m3u8";

/// A running HLS listener.
pub struct Serving {
    /// Its address.
    pub addr: SocketAddr,
    /// Stops it.
    pub handle: actix_web::dev::ServerHandle,
}

/// Serves HLS on `listener` with `threads` HTTP threads.
pub fn start(
    listener: std::net::TcpListener,
    hls: Arc<Hls>,
    threads: usize,
) -> std::io::Result<Serving> {
    let addr = listener.local_addr()?;
    let data = web::Data::from(hls);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .default_service(web::to(handle))
    })
    .workers(threads.max(1))
    .disable_signals()
    .shutdown_timeout(1)
    .listen(listener)?
    .run();
    let handle = server.handle();
    actix_rt::spawn(server);
    Ok(Serving { addr, handle })
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A response with the CORS headers.
fn answer(status: StatusCode) -> actix_web::HttpResponseBuilder {
    let mut builder = HttpResponse::build(status);
    for &(name, value) in CORS {
        builder.insert_header((name, value));
    }
    builder
}

fn error(status: u16, message: &str) -> HttpResponse {
    answer(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .insert_header(("Content-Type", "text/plain; charset=utf-8"))
        .insert_header(("Cache-Control", "no-cache"))
        .body(format!("{message}\n"))
}

/// The `s` parameter of a query.
fn session_param(query: &str) -> Option<&str> {
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix("s="))
        .filter(|s| !s.is_empty())
}

/// What a request is answered with, and its body size for the viewer's usage.
struct Body {
    content_type: &'static str,
    /// `Cache-Control`.
    cache: String,
    bytes: Bytes,
}

fn playlist_body(text: String) -> Body {
    Body {
        content_type: "application/vnd.apple.mpegurl",
        cache: "no-cache".to_owned(),
        bytes: Bytes::from(text),
    }
}

/// How long media of `segmenter` stays listed: what a cache may keep it for.
fn media_cache(segmenter: &Segmenter) -> String {
    let config = segmenter.config();
    let listed = config.segment_us.max(1) as u128 * config.segments_kept as u128 / 1_000_000;
    format!("public, max-age={}", listed.max(1))
}

fn media_type(resource: Resource, container: Container) -> &'static str {
    match (resource, container) {
        (Resource::Init, _) => "video/mp4",
        (_, Container::Fmp4) => "video/iso.segment",
        (_, Container::Ts) => "video/mp2t",
    }
}

async fn handle(req: HttpRequest, hls: web::Data<Hls>) -> HttpResponse {
    let head_only = match *req.method() {
        Method::GET => false,
        Method::HEAD => true,
        Method::OPTIONS => return answer(StatusCode::NO_CONTENT).finish(),
        _ => {
            return answer(StatusCode::METHOD_NOT_ALLOWED)
                .insert_header(("Allow", "GET, HEAD, OPTIONS"))
                .finish()
        }
    };
    let target = req
        .uri()
        .path_and_query()
        .map_or_else(|| req.uri().path().to_owned(), |pq| pq.as_str().to_owned());
    let Some(path) = hls_path(&target) else {
        return error(404, "expected /{app}/{name}/index.m3u8");
    };
    let hls = hls.into_inner();
    let Some(id) = session_param(&path.query) else {
        if path.file != "index.m3u8" {
            return error(403, "no session: start at index.m3u8");
        }
        return start_viewer(&req, &hls, &target, path.app, path.name, head_only).await;
    };
    let clientid = match hls.ids.verify(id, unix_ms()) {
        Ok(clientid) => clientid,
        Err(refused @ (Refused::Forged | Refused::Expired)) => {
            return error(403, &refused.to_string())
        }
    };
    let Some(viewer) = hls.viewer(clientid) else {
        return error(403, "session ended");
    };
    if viewer.path != (path.app, path.name) {
        return error(403, "session id of another stream");
    }
    let suffix = format!("?s={id}");
    let low_latency = hls.settings().low_latency;
    let body = match path.file.as_str() {
        "index.m3u8" => multivariant(&viewer.output, &suffix),
        MEDIA_PLAYLIST => match Directives::parse(&path.query) {
            Ok(d) => media(&viewer.output, &d, &suffix, low_latency).await,
            Err(e) => Err((400, e.to_string())),
        },
        file => resource(&viewer.output, file, low_latency).await,
    };
    match body {
        Ok(body) => send(body, &viewer.addr, head_only),
        Err((status, message)) => error(status, &message),
    }
}

/// Sends `body` and tells the viewer's session what it was served.
fn send(body: Body, viewer: &actix::Addr<HlsViewer>, head_only: bool) -> HttpResponse {
    let bytes = if head_only {
        0
    } else {
        body.bytes.len() as u64
    };
    viewer.do_send(Served { bytes });
    answer(StatusCode::OK)
        .insert_header(("Content-Type", body.content_type))
        .insert_header(("Cache-Control", body.cache))
        .body(body.bytes)
}

/// The first request of a viewer: its session starts (hooks), then the multivariant
/// playlist.
async fn start_viewer(
    req: &HttpRequest,
    hls: &Arc<Hls>,
    target: &str,
    app: String,
    name: String,
    head_only: bool,
) -> HttpResponse {
    let Some(peer) = req.peer_addr().map(crate::listener::bind::canonical) else {
        return error(400, "no peer address");
    };
    let admission = match hls.limits.admit(peer.ip()) {
        Ok(admission) => admission,
        Err(_) => {
            metrics().connection("hls", false);
            return error(503, "too many viewers");
        }
    };
    metrics().connection("hls", true);
    let worker = hls.pick();
    let context = worker.context.clone();
    let shared = hls.clone();
    let viewer = <HlsViewer as actix::Actor>::start_in_arbiter(&worker.arbiter, move |_| {
        HlsViewer::new(shared, peer, context, admission)
    });
    let host = req.connection_info().host().to_owned();
    let begun = viewer
        .send(Begin {
            url: format!("http://{host}{target}"),
            path: (app, name),
        })
        .await;
    let (clientid, output) = match begun {
        Ok(Begun::Playing { clientid, output }) => (clientid, output),
        Ok(Begun::Refused(status)) => {
            return error(status, "refused by the server's access policy")
        }
        Ok(Begun::NotFound) => return error(404, "no such live stream"),
        Err(_) => return error(503, "the server is stopping"),
    };
    if let Err((status, message)) = ready(&output).await {
        viewer.do_send(Unservable);
        return error(status, &message);
    }
    let expires = unix_ms().saturating_add(hls.settings().session_lifetime.as_millis() as u64);
    let id = hls.ids.issue(clientid, expires);
    match multivariant(&output, &format!("?s={id}")) {
        Ok(body) => send(body, &viewer, head_only),
        Err((status, message)) => error(status, &message),
    }
}

/// Waits until the output has a complete segment to list (players that do not read parts,
/// ffmpeg among them, give up on a live playlist without one), at most [`READY_WAIT`]; past
/// it, an output whose first segment is slow to complete (a publisher with a long GOP) is
/// served with the parts it has.
async fn ready(output: &HlsStream) -> Result<(), (u16, String)> {
    let deadline = Instant::now() + READY_WAIT;
    loop {
        let mut progress = output.watch();
        let late = Instant::now() >= deadline;
        match &*output.read() {
            Packaged::Ready(segmenter) if segmenter.ended() || !segmenter.segments().is_empty() => {
                return Ok(())
            }
            Packaged::Ready(segmenter) if late && segmenter.next_part().is_some() => return Ok(()),
            Packaged::Failed(why) => {
                return Err((404, format!("this stream cannot be served as HLS: {why}")))
            }
            _ if late => return Err((503, "the stream's HLS output is not ready".to_owned())),
            _ => {}
        }
        let wait = deadline.saturating_duration_since(Instant::now());
        // A timeout is looked at again, as late.
        let _ = actix_rt::time::timeout(wait, progress.changed()).await;
    }
}

fn multivariant(output: &HlsStream, suffix: &str) -> Result<Body, (u16, String)> {
    match &*output.read() {
        Packaged::Ready(segmenter) => Ok(playlist_body(multivariant_playlist(
            segmenter,
            &format!("{MEDIA_PLAYLIST}{suffix}"),
            FALLBACK_BANDWIDTH,
        ))),
        _ => Err((404, "no such live stream".to_owned())),
    }
}

/// Where a viewer's URI suffix goes in a cached media playlist: a character no playlist
/// has otherwise.
const SUFFIX_MARK: &str = "\0";

/// What a media playlist's text depends on besides the viewer's URI suffix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PlaylistKey {
    edge: LiveEdge,
    media_sequence: u64,
    init: bool,
    low_latency: bool,
    skip: bool,
    program_date_time: bool,
}

/// A media playlist without its viewer's URI suffixes, and where they go.
struct Unsuffixed {
    text: String,
    /// Byte offsets in `text` where a suffix goes, in order.
    at: Vec<usize>,
}

impl Unsuffixed {
    /// Reads a playlist rendered with [`SUFFIX_MARK`] as its suffix.
    fn of(marked: &str) -> Unsuffixed {
        let mut text = String::with_capacity(marked.len());
        let mut at = Vec::new();
        for (i, piece) in marked.split(SUFFIX_MARK).enumerate() {
            if i > 0 {
                at.push(text.len());
            }
            text.push_str(piece);
        }
        Unsuffixed { text, at }
    }

    /// The playlist with `suffix` in every place.
    fn with(&self, suffix: &str) -> String {
        let mut out = String::with_capacity(self.text.len() + self.at.len() * suffix.len());
        let mut from = 0;
        for &at in &self.at {
            out.push_str(&self.text[from..at]);
            out.push_str(suffix);
            from = at;
        }
        out.push_str(&self.text[from..]);
        out
    }
}

/// An output's last media playlist, rendered once for every viewer that asks while the
/// segmenter is in the same state (1000 Low-Latency viewers ask about five times a second
/// each, for a handful of states), without the viewers' URI suffixes: a request copies it
/// with its suffix put in instead of formatting every URI, duration and date of the
/// playlist again.
#[derive(Default)]
pub struct PlaylistCache(Mutex<Option<(PlaylistKey, Arc<Unsuffixed>)>>);

impl PlaylistCache {
    /// The media playlist of `segmenter` with `opts` (the same text as
    /// [`media_playlist`]).
    pub fn media(&self, segmenter: &Segmenter, opts: &MediaOptions<'_>) -> String {
        let key = PlaylistKey {
            edge: LiveEdge::of(segmenter),
            media_sequence: segmenter.media_sequence(),
            init: segmenter.init_segment().is_some(),
            low_latency: opts.low_latency,
            skip: opts.skip,
            program_date_time: opts.program_date_time,
        };
        let slot = || self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let cached = slot()
            .as_ref()
            .filter(|(k, _)| *k == key)
            .map(|(_, text)| text.clone());
        let template = cached.unwrap_or_else(|| {
            let marked = MediaOptions {
                suffix: SUFFIX_MARK,
                ..*opts
            };
            let text = Arc::new(Unsuffixed::of(&media_playlist(segmenter, &marked)));
            *slot() = Some((key, text.clone()));
            text
        });
        template.with(opts.suffix)
    }
}

/// What a blocking request does next.
enum Step<T> {
    Done(Result<T, (u16, String)>),
    Wait(Duration),
}

/// Decides `decide` against the output now and again at each of its progresses, until it
/// is done or three target durations have passed (then `503`, as rfc8216bis §6.2.5.2 lets a
/// server answer a request it cannot fulfil in time).
async fn blocked<T>(
    output: &HlsStream,
    decide: impl Fn(&Segmenter) -> Step<T>,
) -> Result<T, (u16, String)> {
    let started = Instant::now();
    loop {
        let mut progress = output.watch();
        let step = match &*output.read() {
            Packaged::Ready(segmenter) => decide(segmenter),
            _ => Step::Done(Err((404, "no such live stream".to_owned()))),
        };
        let limit = match step {
            Step::Done(result) => return result,
            Step::Wait(limit) => limit,
        };
        let wait = limit.saturating_sub(started.elapsed());
        if wait.is_zero()
            || actix_rt::time::timeout(wait, progress.changed())
                .await
                .is_err()
        {
            return Err((503, "not available in time".to_owned()));
        }
    }
}

/// The longest a request is held: three target durations.
fn hold_limit(segmenter: &Segmenter) -> Duration {
    Duration::from_secs(3 * playlist::target_duration(segmenter))
}

async fn media(
    output: &HlsStream,
    d: &Directives,
    suffix: &str,
    low_latency: bool,
) -> Result<Body, (u16, String)> {
    let opts = MediaOptions {
        suffix,
        low_latency,
        skip: d.skip,
        program_date_time: true,
    };
    blocked(output, |segmenter| {
        let decision = if low_latency {
            blocking(d, &LiveEdge::of(segmenter))
        } else {
            Blocking::Now
        };
        match decision {
            Blocking::Now => Step::Done(Ok(playlist_body(output.playlist.media(segmenter, &opts)))),
            Blocking::Wait => Step::Wait(hold_limit(segmenter)),
            Blocking::OutOfRange => Step::Done(Err((
                400,
                "_HLS_msn/_HLS_part too far ahead of the live edge".to_owned(),
            ))),
        }
    })
    .await
}

async fn resource(
    output: &HlsStream,
    file: &str,
    low_latency: bool,
) -> Result<Body, (u16, String)> {
    blocked(output, |segmenter| {
        let container = segmenter.config().container;
        let Some(resource) = Resource::parse(file, container) else {
            return Step::Done(Err((404, "no such resource".to_owned())));
        };
        let found = match resource {
            Resource::Init => segmenter.init_segment().cloned(),
            Resource::Segment(msn) => segmenter.segment(msn).map(|s| s.bytes.clone()),
            Resource::Part(at) => match segmenter.part(at) {
                Some(part) => Some(part.bytes.clone()),
                // A part not complete yet (the preload hint, or a little further): held
                // until it is, as a blocking playlist request would be.
                None if low_latency => {
                    let d = Directives {
                        msn: Some(at.msn),
                        part: Some(at.part),
                        skip: false,
                    };
                    if blocking(&d, &LiveEdge::of(segmenter)) == Blocking::Wait {
                        return Step::Wait(hold_limit(segmenter));
                    }
                    None
                }
                None => None,
            },
        };
        Step::Done(match found {
            Some(bytes) => Ok(Body {
                content_type: media_type(resource, container),
                cache: media_cache(segmenter),
                bytes,
            }),
            None => Err((404, "no such segment or part (any more)".to_owned())),
        })
    })
    .await
}

#[cfg(test)]
mod tests {
    use streamgate_actors::media::Track;

    use super::*;
    use crate::protocol::hls::fixtures::{config, stream};
    use crate::protocol::hls::HlsConfig;

    #[test]
    fn a_cached_playlist_is_the_rendered_one_with_each_viewers_suffix() {
        let config_ = HlsConfig {
            segment_us: 1_000_000,
            part_us: 250_000,
            segments_kept: 4,
            container: Container::Fmp4,
        };
        let mut segmenter = Segmenter::new(config_, &[config(Track::Video), config(Track::Audio)])
            .expect("segmenter");
        let cache = PlaylistCache::default();
        let opts = |suffix, low_latency, skip| MediaOptions {
            suffix,
            low_latency,
            skip,
            program_date_time: false,
        };
        let mut states = 0;
        for frame in stream(8.0, 25, 25, true, true) {
            if !segmenter.push(&frame).expect("push").any() {
                continue;
            }
            states += 1;
            // The first request of a state asks as the last one of the state before did:
            // it finds that state's playlist cached.
            for (ll, skip) in [(true, false), (true, true), (false, false), (true, false)] {
                for suffix in ["?s=first", "?s=second.viewer", ""] {
                    let o = opts(suffix, ll, skip);
                    assert_eq!(
                        cache.media(&segmenter, &o),
                        media_playlist(&segmenter, &o),
                        "state {states}, low latency {ll}, skip {skip}, suffix {suffix:?}"
                    );
                }
            }
        }
        assert!(states > 20, "{states} states");
    }
}
