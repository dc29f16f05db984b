//! One stream's HLS output: a [`Packager`] actor subscribed to the stream feeds every frame
//! to the stream's [`Segmenter`], which lives in an [`HlsStream`] that the HTTP handlers of
//! every viewer read (a read lock per request; segments and parts are shared `Bytes`, built
//! once). A watch channel counts the segmenter's progress, so a blocked playlist or part
//! request wakes when what it waits for may exist.
//!
//! A packager starts with the first viewer of its stream and stops when the stream ends or
//! when no viewer has been with it for [`LINGER`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use actix::prelude::*;
use streamgate_actors::media::{FrameKind, MediaFrame, StreamKey, Track};
use streamgate_actors::session::{next_internal_id, ClientId};
use streamgate_actors::stream::{
    Deliver, Delivery, StreamActor, StreamEnded, Subscribe, Unsubscribe,
};
use streamgate_actors::usage::EndReason;
use tokio::sync::watch;

use super::serve::PlaylistCache;
use crate::protocol::hls::segmenter::Segmenter;
use crate::protocol::hls::{HlsConfig, HlsError};

/// How long a packager stays after its last viewer left, for the next one to find its
/// segments.
pub const LINGER: Duration = Duration::from_secs(10);

/// The end of an HLS stream, told to its viewers: the stream ended (or its packaging did).
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct HlsEnded(pub StreamEnded);

/// What the segmenter holds, or why there is none.
pub enum Packaged {
    /// Waiting for the stream's snapshot.
    Starting,
    /// Segments and parts.
    Ready(Box<Segmenter>),
    /// The stream cannot be packaged (no track HLS carries, an unreadable codec config).
    Failed(String),
}

struct Members {
    /// The viewers, told when the stream ends.
    viewers: HashMap<ClientId, Recipient<HlsEnded>>,
    /// When the last viewer left (none while there are viewers).
    empty_since: Option<Instant>,
    /// No viewer can join any more: the packager has stopped or is stopping.
    closed: bool,
    /// How the stream ended, once it has.
    ended: Option<StreamEnded>,
}

/// One stream's HLS output, shared by its packager and every request of its viewers.
pub struct HlsStream {
    /// The stream.
    pub key: StreamKey,
    state: RwLock<Packaged>,
    progress: watch::Sender<u64>,
    members: Mutex<Members>,
    /// Its last media playlist, shared by the viewers' requests.
    pub playlist: PlaylistCache,
}

impl HlsStream {
    fn new(key: StreamKey) -> Arc<Self> {
        Arc::new(HlsStream {
            key,
            state: RwLock::new(Packaged::Starting),
            progress: watch::channel(0).0,
            playlist: PlaylistCache::default(),
            members: Mutex::new(Members {
                viewers: HashMap::new(),
                empty_since: Some(Instant::now()),
                closed: false,
                ended: None,
            }),
        })
    }

    /// The segmenter's state, for one request.
    pub fn read(&self) -> RwLockReadGuard<'_, Packaged> {
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// A receiver that sees the next progress of the segmenter (take it before reading the
    /// state, so nothing between is missed).
    pub fn watch(&self) -> watch::Receiver<u64> {
        self.progress.subscribe()
    }

    fn members(&self) -> std::sync::MutexGuard<'_, Members> {
        self.members.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds a viewer, told through `ended` when the stream ends. False when the packager has
    /// stopped (the caller starts a new one).
    pub fn join(&self, clientid: ClientId, ended: Recipient<HlsEnded>) -> bool {
        let mut members = self.members();
        if members.closed {
            return false;
        }
        if let Some(end) = &members.ended {
            ended.do_send(HlsEnded(end.clone()));
        }
        members.viewers.insert(clientid, ended);
        members.empty_since = None;
        true
    }

    /// Takes a viewer out.
    pub fn leave(&self, clientid: ClientId) {
        let mut members = self.members();
        members.viewers.remove(&clientid);
        if members.viewers.is_empty() && members.empty_since.is_none() {
            members.empty_since = Some(Instant::now());
        }
    }

    fn update(&self, f: impl FnOnce(&mut Packaged) -> bool) {
        let changed = {
            let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
            f(&mut state)
        };
        if changed {
            self.progress.send_modify(|n| *n += 1);
        }
    }

    /// Ends the output: the playlist gets `EXT-X-ENDLIST`, blocked requests are answered and
    /// every viewer is told.
    fn end(&self, end: StreamEnded) {
        self.update(|state| {
            if let Packaged::Ready(segmenter) = state {
                let _ = segmenter.finish();
            }
            true
        });
        let mut members = self.members();
        members.closed = true;
        for viewer in members.viewers.values() {
            viewer.do_send(HlsEnded(end.clone()));
        }
        members.ended = Some(end);
    }
}

/// The HLS streams being packaged, by stream.
#[derive(Default)]
pub struct Streams(Mutex<HashMap<StreamKey, Arc<HlsStream>>>);

impl Streams {
    /// The output of `stream` (`key`) that `clientid` joins, started on this arbiter with
    /// `config` when there is none (or the one there is has stopped).
    pub fn join(
        self: &Arc<Self>,
        key: &StreamKey,
        stream: &Addr<StreamActor>,
        config: HlsConfig,
        clientid: ClientId,
        ended: Recipient<HlsEnded>,
    ) -> Arc<HlsStream> {
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(output) = map.get(key) {
            if output.join(clientid, ended.clone()) {
                return output.clone();
            }
        }
        let output = HlsStream::new(key.clone());
        output.join(clientid, ended);
        map.insert(key.clone(), output.clone());
        Packager {
            output: output.clone(),
            stream: stream.clone(),
            streams: self.clone(),
            config,
            id: next_internal_id(),
            waiting: None,
        }
        .start();
        output
    }

    /// Takes `output` out of the table, if it is still the one there.
    fn remove(&self, output: &Arc<HlsStream>) {
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if map.get(&output.key).is_some_and(|o| Arc::ptr_eq(o, output)) {
            map.remove(&output.key);
        }
    }

    /// How many streams are packaged now.
    pub fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// Whether no stream is packaged now.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// How long (in media time) a packager that has one track's codec config waits for the
/// other's before it starts without it: an MPEG-TS publisher's audio config comes with its
/// first audio frame, which may follow the first video frames.
const CONFIG_WAIT_US: i64 = 500_000;

/// Whether a packager waiting with `configs` (one per track) and the `frames` after them can
/// make its segmenter: both tracks' configs are known, or one's and [`CONFIG_WAIT_US`] of
/// media.
fn configs_known(configs: &[MediaFrame], frames: &[MediaFrame]) -> bool {
    let both = [Track::Video, Track::Audio]
        .iter()
        .all(|t| configs.iter().any(|c| c.track == *t));
    let waited = match (frames.first(), frames.last()) {
        (Some(first), Some(last)) => last.dts - first.dts >= CONFIG_WAIT_US,
        _ => false,
    };
    !configs.is_empty() && (both || waited)
}

/// Subscribes to one stream and feeds its segmenter.
struct Packager {
    output: Arc<HlsStream>,
    stream: Addr<StreamActor>,
    streams: Arc<Streams>,
    config: HlsConfig,
    /// The id it subscribes with.
    id: u64,
    /// Before the segmenter exists: the codec configs so far (one per track) and the frames
    /// that came after them.
    waiting: Option<(Vec<MediaFrame>, Vec<MediaFrame>)>,
}

fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Packager {
    /// Stops packaging: out of the table, no viewer joins any more; with `end`, the viewers
    /// are told and the playlist ends.
    fn close(&mut self, end: Option<StreamEnded>, ctx: &mut Context<Self>) {
        self.streams.remove(&self.output);
        match end {
            Some(end) => self.output.end(end),
            None => self.output.members().closed = true,
        }
        self.stream.do_send(Unsubscribe { clientid: self.id });
        ctx.stop();
    }

    /// Takes a frame while the segmenter does not exist yet, and makes it when
    /// [`configs_known`].
    fn wait_for_configs(&mut self, frame: &MediaFrame, ctx: &mut Context<Self>) {
        let Some((configs, frames)) = self.waiting.as_mut() else {
            return;
        };
        if frame.kind == FrameKind::Config {
            configs.retain(|c| c.track != frame.track);
            configs.push(frame.clone());
        } else {
            frames.push(frame.clone());
        }
        self.make_when_known(ctx);
    }

    /// Makes the segmenter from what it waited with, once [`configs_known`].
    fn make_when_known(&mut self, ctx: &mut Context<Self>) {
        if !self
            .waiting
            .as_ref()
            .is_some_and(|(configs, frames)| configs_known(configs, frames))
        {
            return;
        }
        let (configs, frames) = self.waiting.take().unwrap_or_default();
        self.make(&configs, &frames, ctx);
    }

    /// Makes the segmenter for `configs` and gives it `frames`.
    fn make(&mut self, configs: &[MediaFrame], frames: &[MediaFrame], ctx: &mut Context<Self>) {
        let made = Segmenter::new(self.config, configs).and_then(|mut segmenter| {
            for frame in frames {
                segmenter.push(frame)?;
            }
            segmenter.anchor_wall_clock(unix_ms());
            Ok(segmenter)
        });
        match made {
            Ok(segmenter) => {
                tracing::info!(stream = %self.output.key, "HLS output started");
                self.output.update(|state| {
                    *state = Packaged::Ready(Box::new(segmenter));
                    true
                });
            }
            Err(e) => {
                tracing::warn!(stream = %self.output.key, error = %e, "stream cannot be served as HLS");
                self.output.update(|state| {
                    *state = Packaged::Failed(e.to_string());
                    true
                });
                self.close(None, ctx);
            }
        }
    }

    fn push(&mut self, frame: &MediaFrame, ctx: &mut Context<Self>) {
        if self.waiting.is_some() {
            return self.wait_for_configs(frame, ctx);
        }
        let mut failed = None;
        self.output.update(|state| {
            let Packaged::Ready(segmenter) = state else {
                return false;
            };
            match segmenter.push(frame) {
                Ok(progress) => {
                    // A segmenter made before the stream's first frame is tied to the wall
                    // clock by its first frame (for EXT-X-PROGRAM-DATE-TIME).
                    if segmenter.wall_clock_ms(0).is_none() {
                        segmenter.anchor_wall_clock(unix_ms());
                    }
                    progress.any()
                }
                Err(e) => {
                    failed = Some(e);
                    false
                }
            }
        });
        let Some(e) = failed else {
            return;
        };
        // A codec change ends this output; the next viewer starts one with the new codecs.
        match e {
            HlsError::ConfigChanged(track) => {
                tracing::info!(stream = %self.output.key, ?track, "codec changed; HLS output restarts");
            }
            e => tracing::warn!(stream = %self.output.key, error = %e, "HLS packaging failed"),
        }
        let end = StreamEnded {
            key: self.output.key.clone(),
            end: EndReason::StreamEnded,
        };
        self.close(Some(end), ctx);
    }
}

impl Actor for Packager {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(crate::session::core::SESSION_MAILBOX);
        let subscribe = self.stream.send(Subscribe {
            clientid: self.id,
            media: ctx.address().recipient(),
            ended: ctx.address().recipient(),
        });
        ctx.wait(subscribe.into_actor(self).map(|snapshot, act, ctx| {
            let Ok(snapshot) = snapshot else {
                // The stream is gone already.
                let end = StreamEnded {
                    key: act.output.key.clone(),
                    end: EndReason::StreamEnded,
                };
                return act.close(Some(end), ctx);
            };
            // A stream that has just started has its codec configs still to come, and one
            // published in MPEG-TS (SRT) may have its video config and not yet its audio's:
            // the segmenter is made once both are known, or one has been alone long enough.
            act.waiting = Some((snapshot.configs, snapshot.gop));
            act.make_when_known(ctx);
        }));
        ctx.run_interval(Duration::from_secs(1), |act, ctx| {
            let idle = {
                let mut members = act.output.members();
                let idle = members.empty_since.is_some_and(|t| t.elapsed() >= LINGER);
                if idle {
                    members.closed = true;
                }
                idle
            };
            if idle {
                tracing::info!(stream = %act.output.key, "HLS output stopped: no viewers");
                act.close(None, ctx);
            }
        });
    }
}

impl Handler<Deliver> for Packager {
    type Result = ();

    fn handle(&mut self, msg: Deliver, ctx: &mut Context<Self>) {
        if let Delivery::Frame(frame) = &msg.item {
            self.push(frame, ctx);
        }
    }
}

impl Handler<StreamEnded> for Packager {
    type Result = ();

    fn handle(&mut self, msg: StreamEnded, ctx: &mut Context<Self>) {
        tracing::info!(stream = %self.output.key, "HLS output ended with its stream");
        self.close(Some(msg), ctx);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use streamgate_actors::media::Codec;

    fn frame(track: Track, kind: FrameKind, dts_ms: i64) -> MediaFrame {
        MediaFrame {
            track,
            codec: match track {
                Track::Video => Codec::H264,
                Track::Audio => Codec::Aac,
            },
            kind,
            dts: dts_ms * 1000,
            pts: dts_ms * 1000,
            keyframe: true,
            payload: Bytes::from_static(b"x"),
        }
    }

    fn video(from_ms: i64, to_ms: i64) -> Vec<MediaFrame> {
        (from_ms..=to_ms)
            .step_by(40)
            .map(|ms| frame(Track::Video, FrameKind::Media, ms))
            .collect()
    }

    /// An MPEG-TS publisher's audio config comes after its first video frames: a snapshot
    /// with the video config alone does not make the segmenter yet.
    #[test]
    fn one_config_waits_for_the_other_for_half_a_second_of_media() {
        let v = frame(Track::Video, FrameKind::Config, 0);
        let a = frame(Track::Audio, FrameKind::Config, 0);
        assert!(!configs_known(&[], &video(0, 2000)), "no config at all");
        assert!(
            !configs_known(std::slice::from_ref(&v), &[]),
            "video config, no frame"
        );
        assert!(!configs_known(std::slice::from_ref(&v), &video(0, 440)));
        assert!(configs_known(&[v.clone(), a], &[]), "both configs");
        // A stream with one track only is packaged after half a second of it.
        assert!(configs_known(&[v], &video(0, 520)));
    }
}
