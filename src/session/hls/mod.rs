//! HLS and Low-Latency HLS viewers: the IO shell over the sans-IO core in
//! [`crate::protocol::hls`].
//!
//! HLS is not one connection per player: a viewer fetches playlists, parts and segments in
//! many requests over one or several keep-alive connections. So the session here is the
//! viewer, not the connection:
//!
//! - the first request of a viewer (`/{app}/{name}/index.m3u8`, with whatever query the
//!   player's URL had) takes a place in `<hls>`'s connection limits and starts an
//!   [`viewer::HlsViewer`] on a worker arbiter, which asks `on_connect` and `on_play` while
//!   the request waits, exactly as every other protocol's player does;
//! - an allowed viewer gets a signed, expiring session id ([`SessionIds`]) in every URI the
//!   server hands it (the multivariant playlist points at `media.m3u8?s=<id>`, the media
//!   playlist's segment, part and init URIs carry it too); its later requests are served
//!   without any hook, each told to the viewer's session ([`viewer::Served`]) for its usage
//!   and to keep it alive; a forged or expired id is `403` before anything else is looked at;
//! - one [`packager::HlsStream`] per stream holds the segments, built once from the stream's
//!   frames and served to every viewer from memory.
//!
//! HTTP is actix-web ([`serve`]), on threads of its own (as many as `<workers>`): a request
//! reads the shared segmenter under a read lock and never waits on a viewer's actor, so a
//! slow hook or a busy worker stalls nobody's segments.

pub mod packager;
pub mod serve;
pub mod viewer;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use actix::Addr;
use arc_swap::ArcSwap;
use streamgate_actors::session::ClientId;

use crate::config::HlsOptions;
use crate::limits::ConnectionLimits;
use crate::listener::Worker;
use crate::protocol::hls::session_id::SessionIds;
use crate::protocol::hls::HlsConfig;
use packager::{HlsStream, Streams};
use viewer::HlsViewer;

/// A viewer, as its requests find it.
#[derive(Clone)]
pub struct Viewer {
    /// Its session.
    pub addr: Addr<HlsViewer>,
    /// The output it watches.
    pub output: Arc<HlsStream>,
    /// The app and name its URLs use (before any rename by the hook).
    pub path: (String, String),
}

/// What every HLS request shares: the viewers, the streams' outputs, the settings.
pub struct Hls {
    workers: Vec<Worker>,
    next: AtomicUsize,
    settings: ArcSwap<HlsOptions>,
    /// `<hls>`'s connection limits: one place per viewer.
    pub limits: Arc<ConnectionLimits>,
    ids: SessionIds,
    viewers: Mutex<HashMap<ClientId, Viewer>>,
    /// The streams being packaged.
    pub streams: Arc<Streams>,
}

impl Hls {
    /// The HLS state of a server whose sessions run on `workers`.
    pub fn new(
        workers: Vec<Worker>,
        options: HlsOptions,
        limits: Arc<ConnectionLimits>,
    ) -> Arc<Self> {
        let mut key = [0u8; 32];
        // The key lives as long as the process: ids of an earlier run are forged here.
        if ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut key).is_err() {
            tracing::error!("no system randomness for the HLS session key");
        }
        Arc::new(Hls {
            workers,
            next: AtomicUsize::new(0),
            settings: ArcSwap::from_pointee(options),
            limits,
            ids: SessionIds::new(&key),
            viewers: Mutex::new(HashMap::new()),
            streams: Arc::default(),
        })
    }

    /// Puts a reload's `<hls>` settings in force: for new outputs (durations, container) and
    /// every viewer's next check and request (idle time, low latency, lifetime).
    pub fn set(&self, options: HlsOptions) {
        self.settings.store(Arc::new(options));
    }

    /// The settings in force.
    pub fn settings(&self) -> Arc<HlsOptions> {
        self.settings.load_full()
    }

    /// How a new output cuts its stream.
    pub fn segmenter_config(&self) -> HlsConfig {
        let s = self.settings.load();
        HlsConfig {
            segment_us: s.segment.as_micros() as i64,
            part_us: s.part.as_micros() as i64,
            segments_kept: s.segments,
            container: s.container,
        }
    }

    /// How long a viewer may request nothing before it is done: `<idle_timeout_ms>`, but at
    /// least three segment durations, since a plain HLS player that is watching reloads its
    /// playlist only about once per target duration.
    pub fn idle_timeout(&self) -> Duration {
        let s = self.settings.load();
        s.idle_timeout.max(3 * s.segment)
    }

    /// The worker the next viewer lives on.
    fn pick(&self) -> &Worker {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.workers.len();
        &self.workers[i]
    }

    fn viewers(&self) -> std::sync::MutexGuard<'_, HashMap<ClientId, Viewer>> {
        self.viewers.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Makes a viewer findable by its requests.
    pub fn add_viewer(
        &self,
        clientid: ClientId,
        addr: Addr<HlsViewer>,
        output: Arc<HlsStream>,
        path: (String, String),
    ) {
        self.viewers()
            .insert(clientid, Viewer { addr, output, path });
    }

    /// A viewer whose session ended: its requests are refused from now on.
    pub fn remove_viewer(&self, clientid: ClientId) {
        self.viewers().remove(&clientid);
    }

    /// The viewer `clientid`, while its session runs.
    pub fn viewer(&self, clientid: ClientId) -> Option<Viewer> {
        self.viewers().get(&clientid).cloned()
    }

    /// Viewers now.
    pub fn viewer_count(&self) -> usize {
        self.viewers().len()
    }
}
