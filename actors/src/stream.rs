//! [`StreamActor`]: one live stream. Holds the publisher, the subscriber set, the codec
//! configuration, the metadata and the last GOP, and fans each frame out to every subscriber.
//!
//! Drop policy: media goes to subscribers with `try_send` into their bounded mailboxes. A
//! subscriber whose mailbox is full loses that frame and every frame after it until the next
//! video keyframe, where it resumes with the codec configuration sent again, so a slow player
//! never grows server memory and never slows the others. When the stream ends (publisher gone,
//! or the server shutting down) every subscriber gets [`StreamEnded`] and the actor stops.
//!
//! It must not know any protocol: frames arrive and leave in the [`crate::media`] model.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use actix::prelude::*;

use crate::media::{FrameKind, MediaFrame, Metadata, StreamKey, Track};
use crate::registry::{Registry, StreamStopped};
use crate::session::{ClientId, SubscriberId};
use crate::usage::EndReason;

/// Capacity of a stream's own mailbox (frames from the publisher).
pub const STREAM_MAILBOX: usize = 1024;

/// Most frames the GOP cache holds; past it the cache waits for the next keyframe.
pub const GOP_MAX_FRAMES: usize = 2048;
/// Most payload bytes the GOP cache holds; past it the cache waits for the next keyframe.
pub const GOP_MAX_BYTES: usize = 32 << 20;
/// Audio frames kept for a stream that has no video (about a second of AAC).
const AUDIO_ONLY_FRAMES: usize = 48;

/// Something a subscriber receives: a frame or new metadata.
#[derive(Debug, Clone)]
pub enum Delivery {
    /// Stream metadata changed (or is being replayed).
    Metadata(Arc<Metadata>),
    /// A media or configuration frame.
    Frame(MediaFrame),
}

/// Media for a subscriber; sent with `try_send` (see the drop policy).
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct Deliver {
    /// The frame or metadata.
    pub item: Delivery,
    /// The number of the publisher's frame this delivery belongs to (frames are numbered
    /// from 0 as the stream fans them out; metadata carries the next frame's number). A
    /// subscriber that several players share tells with it which frames a joining player's
    /// [`Snapshot`] already holds.
    pub seq: u64,
}

/// The stream a subscriber was attached to has ended; the subscriber should end its session.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct StreamEnded {
    /// Which stream ended.
    pub key: StreamKey,
    /// Why, as its players' `on_done` says: the publisher left, or the server is stopping.
    pub end: EndReason,
}

/// Told to a publisher whose stream is being ended by the server (shutdown).
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct Kick {
    /// Why, for the logs.
    pub reason: &'static str,
    /// Why, as the session's `on_done` says (`shutdown`, or `kicked`).
    pub end: EndReason,
}

/// A frame from the publisher.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct PublishFrame {
    /// The frame.
    pub frame: MediaFrame,
}

/// New metadata from the publisher.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct PublishMetadata {
    /// The metadata.
    pub metadata: Metadata,
}

/// The publisher left: end the stream.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct Unpublish {
    /// The publisher's client id (ignored when it is not this stream's publisher).
    pub clientid: ClientId,
}

/// End the stream now (server shutdown, an operator's kick): kick the publisher (its `on_done`
/// says `end`), end every subscriber (theirs say `shutdown` at shutdown, else `stream_ended`).
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct EndStream {
    /// Why, for the logs.
    pub reason: &'static str,
    /// Why, as the `on_done` of its publisher and players says.
    pub end: EndReason,
}

/// What the operator's view shows of a stream: asked with [`Describe`].
#[derive(Debug, Clone)]
pub struct StreamDescription {
    /// Its key.
    pub key: StreamKey,
    /// The publisher's clientid.
    pub publisher: ClientId,
    /// When its publish began, Unix milliseconds.
    pub since: u64,
    /// The video track's configuration record (its codec and parameters), once it came.
    pub video_config: Option<MediaFrame>,
    /// The audio track's configuration record, once it came.
    pub audio_config: Option<MediaFrame>,
    /// The publisher's metadata (width, height, frame rate, ... as it gave them).
    pub metadata: Option<Arc<Metadata>>,
    /// Video frames per second over the last full second.
    pub frame_rate: f64,
    /// Media payload bits per second over the last full second.
    pub bitrate: u64,
    /// Media payload bytes since the publish began.
    pub payload_bytes: u64,
    /// Subscribers: players, and fan-out groups of players.
    pub subscribers: usize,
}

/// Asks a stream for its [`StreamDescription`].
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "StreamDescription")]
pub struct Describe;

/// Counts a stream's ingest over whole seconds: the frame rate and bit rate of the last one.
#[derive(Debug)]
struct IngestMeter {
    window: Instant,
    frames: u32,
    bytes: u64,
    frame_rate: f64,
    bitrate: u64,
    total: u64,
}

impl IngestMeter {
    fn new() -> Self {
        IngestMeter {
            window: Instant::now(),
            frames: 0,
            bytes: 0,
            frame_rate: 0.0,
            bitrate: 0,
            total: 0,
        }
    }

    fn count(&mut self, frame: &MediaFrame) {
        self.roll();
        let bytes = frame.payload.len() as u64;
        self.bytes += bytes;
        self.total += bytes;
        if frame.track == Track::Video && frame.kind == FrameKind::Media {
            self.frames += 1;
        }
    }

    /// Closes the window once a second has passed (a stream that stopped sending reads 0).
    fn roll(&mut self) {
        let elapsed = self.window.elapsed();
        if elapsed < Duration::from_secs(1) {
            return;
        }
        let secs = elapsed.as_secs_f64();
        if secs < 2.0 {
            self.frame_rate = f64::from(self.frames) / secs;
            self.bitrate = (self.bytes as f64 * 8.0 / secs) as u64;
        } else {
            (self.frame_rate, self.bitrate) = (0.0, 0);
        }
        self.window = Instant::now();
        (self.frames, self.bytes) = (0, 0);
    }
}

/// Everything a new player needs before live frames: sent as the reply to [`Subscribe`].
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// The stream's metadata, if the publisher sent any.
    pub metadata: Option<Arc<Metadata>>,
    /// The current configuration frames (video first).
    pub configs: Vec<MediaFrame>,
    /// The cached frames from the last video keyframe on, in order.
    pub gop: Vec<MediaFrame>,
    /// The [`Deliver::seq`] of the first live frame after this snapshot.
    pub next_seq: u64,
}

/// Attach a player, or a subscriber that several players share. The reply carries the
/// [`Snapshot`]; live frames follow as [`Deliver`]. Subscribing again with the same
/// `clientid` only takes a new snapshot: that is how a player joins a shared subscriber.
#[derive(Message, Debug)]
#[rtype(result = "Snapshot")]
pub struct Subscribe {
    /// The player's (or shared subscriber's) id.
    pub clientid: ClientId,
    /// Where media goes.
    pub media: Recipient<Deliver>,
    /// Where the end of the stream is told.
    pub ended: Recipient<StreamEnded>,
}

/// Detach a player.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct Unsubscribe {
    /// The player's client id.
    pub clientid: ClientId,
}

/// The frames a new player starts with: the last GOP, bounded in frames and bytes.
#[derive(Debug, Default)]
pub struct GopCache {
    frames: Vec<MediaFrame>,
    bytes: usize,
    seen_video: bool,
    /// True after an overflow, until the next keyframe.
    overflowed: bool,
}

impl GopCache {
    /// Offers a frame to the cache. A video keyframe starts a new GOP; frames before the first
    /// keyframe are not kept; a stream without video keeps its last second of audio.
    pub fn push(&mut self, frame: &MediaFrame) {
        if frame.kind == FrameKind::Config {
            return;
        }
        if frame.track == Track::Video {
            self.seen_video = true;
            if frame.keyframe {
                self.clear();
                self.overflowed = false;
            }
        }
        if !self.seen_video {
            self.append(frame);
            if self.frames.len() > AUDIO_ONLY_FRAMES {
                let gone = self.frames.remove(0);
                self.bytes -= gone.payload.len();
            }
            return;
        }
        if self.overflowed || self.frames.is_empty() && !frame.is_video_keyframe() {
            return;
        }
        self.append(frame);
        if self.frames.len() > GOP_MAX_FRAMES || self.bytes > GOP_MAX_BYTES {
            tracing::warn!(
                frames = self.frames.len(),
                bytes = self.bytes,
                "GOP too long to cache; new players wait for the next keyframe"
            );
            self.clear();
            self.overflowed = true;
        }
    }

    fn append(&mut self, frame: &MediaFrame) {
        self.bytes += frame.payload.len();
        self.frames.push(frame.clone());
    }

    fn clear(&mut self) {
        self.frames.clear();
        self.bytes = 0;
    }

    /// The cached frames, oldest first.
    pub fn frames(&self) -> &[MediaFrame] {
        &self.frames
    }

    /// Payload bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

struct Subscriber {
    media: Recipient<Deliver>,
    ended: Recipient<StreamEnded>,
    /// Lost a frame: skip until the next keyframe, then resend the configs.
    resync: bool,
    dropped: u64,
}

/// One live stream.
pub struct StreamActor {
    key: StreamKey,
    id: u64,
    publisher: ClientId,
    kick: Recipient<Kick>,
    registry: Addr<Registry>,
    subscribers: HashMap<ClientId, Subscriber>,
    metadata: Option<Arc<Metadata>>,
    video_config: Option<MediaFrame>,
    audio_config: Option<MediaFrame>,
    gop: GopCache,
    has_video: bool,
    ended: bool,
    /// Why it ends, as its players are told ([`StreamEnded::end`]).
    ending: EndReason,
    /// The number the next frame fanned out gets.
    next_seq: u64,
    /// When the publish began.
    since: SystemTime,
    ingest: IngestMeter,
}

impl StreamActor {
    /// A stream published by `publisher`; `id` tells this instance apart in the registry.
    pub fn new(
        key: StreamKey,
        id: u64,
        publisher: ClientId,
        kick: Recipient<Kick>,
        registry: Addr<Registry>,
    ) -> Self {
        StreamActor {
            key,
            id,
            publisher,
            kick,
            registry,
            subscribers: HashMap::new(),
            metadata: None,
            video_config: None,
            audio_config: None,
            gop: GopCache::default(),
            has_video: false,
            ended: false,
            ending: EndReason::StreamEnded,
            next_seq: 0,
            since: SystemTime::now(),
            ingest: IngestMeter::new(),
        }
    }

    fn configs(&self) -> Vec<MediaFrame> {
        self.video_config
            .iter()
            .chain(self.audio_config.iter())
            .cloned()
            .collect()
    }

    /// A point where a subscriber that lost frames may resume.
    fn is_resume_point(&self, frame: &MediaFrame) -> bool {
        frame.is_video_keyframe() || (!self.has_video && frame.track == Track::Audio)
    }

    fn fan_out(&mut self, frame: MediaFrame) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let resume = self.is_resume_point(&frame);
        let configs = if resume && self.subscribers.values().any(|s| s.resync) {
            self.configs()
        } else {
            Vec::new()
        };
        let key = &self.key;
        self.subscribers.retain(|clientid, sub| {
            if sub.resync {
                if !resume {
                    return true;
                }
                sub.resync = false;
                for config in &configs {
                    if !offer(sub, clientid, key, Delivery::Frame(config.clone()), seq) {
                        return false;
                    }
                    if sub.resync {
                        return true;
                    }
                }
                tracing::info!(subscriber = %SubscriberId(*clientid), stream = %key, dropped = sub.dropped, "player caught up at a keyframe");
            }
            offer(sub, clientid, key, Delivery::Frame(frame.clone()), seq)
        });
    }

    fn end(&mut self, ctx: &mut Context<Self>, reason: &'static str) {
        if self.ended {
            return;
        }
        self.ended = true;
        tracing::info!(stream = %self.key, publisher = self.publisher, reason, players = self.subscribers.len(), "stream ending");
        ctx.stop();
    }
}

/// Offers one item to a subscriber. Returns false when the subscriber is gone; marks it for
/// resync when its mailbox is full.
fn offer(
    sub: &mut Subscriber,
    clientid: &ClientId,
    key: &StreamKey,
    item: Delivery,
    seq: u64,
) -> bool {
    match sub.media.try_send(Deliver { item, seq }) {
        Ok(()) => true,
        Err(SendError::Full(_)) => {
            if !sub.resync {
                tracing::warn!(subscriber = %SubscriberId(*clientid), stream = %key, "player is behind; dropping to the next keyframe");
            }
            sub.resync = true;
            sub.dropped += 1;
            true
        }
        Err(SendError::Closed(_)) => false,
    }
}

impl Actor for StreamActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(STREAM_MAILBOX);
        tracing::info!(stream = %self.key, publisher = self.publisher, "stream started");
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        for sub in self.subscribers.values() {
            sub.ended.do_send(StreamEnded {
                key: self.key.clone(),
                end: self.ending,
            });
        }
        self.registry.do_send(StreamStopped {
            key: self.key.clone(),
            id: self.id,
        });
        tracing::info!(stream = %self.key, publisher = self.publisher, "stream stopped");
    }
}

impl Handler<PublishFrame> for StreamActor {
    type Result = ();

    fn handle(&mut self, msg: PublishFrame, _ctx: &mut Self::Context) {
        let frame = msg.frame.with_own_payload();
        if frame.track == Track::Video {
            self.has_video = true;
        }
        if frame.kind == FrameKind::Config {
            match frame.track {
                Track::Video => self.video_config = Some(frame.clone()),
                Track::Audio => self.audio_config = Some(frame.clone()),
            }
        }
        self.ingest.count(&frame);
        self.gop.push(&frame);
        self.fan_out(frame);
    }
}

impl Handler<Describe> for StreamActor {
    type Result = MessageResult<Describe>;

    fn handle(&mut self, _: Describe, _ctx: &mut Self::Context) -> Self::Result {
        self.ingest.roll();
        MessageResult(StreamDescription {
            key: self.key.clone(),
            publisher: self.publisher,
            since: self
                .since
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            video_config: self.video_config.clone(),
            audio_config: self.audio_config.clone(),
            metadata: self.metadata.clone(),
            frame_rate: self.ingest.frame_rate,
            bitrate: self.ingest.bitrate,
            payload_bytes: self.ingest.total,
            subscribers: self.subscribers.len(),
        })
    }
}

impl Handler<PublishMetadata> for StreamActor {
    type Result = ();

    fn handle(&mut self, msg: PublishMetadata, _ctx: &mut Self::Context) {
        let metadata = Arc::new(msg.metadata);
        self.metadata = Some(metadata.clone());
        let key = &self.key;
        let seq = self.next_seq;
        self.subscribers.retain(|clientid, sub| {
            sub.resync
                || offer(
                    sub,
                    clientid,
                    key,
                    Delivery::Metadata(metadata.clone()),
                    seq,
                )
        });
    }
}

impl Handler<Subscribe> for StreamActor {
    type Result = MessageResult<Subscribe>;

    fn handle(&mut self, msg: Subscribe, _ctx: &mut Self::Context) -> Self::Result {
        if let std::collections::hash_map::Entry::Vacant(entry) =
            self.subscribers.entry(msg.clientid)
        {
            tracing::info!(subscriber = %SubscriberId(msg.clientid), stream = %self.key, cached = self.gop.frames().len(), "subscriber attached");
            entry.insert(Subscriber {
                media: msg.media,
                ended: msg.ended,
                resync: false,
                dropped: 0,
            });
        }
        MessageResult(Snapshot {
            metadata: self.metadata.clone(),
            configs: self.configs(),
            gop: self.gop.frames().to_vec(),
            next_seq: self.next_seq,
        })
    }
}

impl Handler<Unsubscribe> for StreamActor {
    type Result = ();

    fn handle(&mut self, msg: Unsubscribe, _ctx: &mut Self::Context) {
        if self.subscribers.remove(&msg.clientid).is_some() {
            tracing::info!(subscriber = %SubscriberId(msg.clientid), stream = %self.key, "subscriber detached");
        }
    }
}

impl Handler<Unpublish> for StreamActor {
    type Result = ();

    fn handle(&mut self, msg: Unpublish, ctx: &mut Self::Context) {
        if msg.clientid == self.publisher {
            self.end(ctx, "publisher left");
        }
    }
}

impl Handler<EndStream> for StreamActor {
    type Result = ();

    fn handle(&mut self, msg: EndStream, ctx: &mut Self::Context) {
        self.kick.do_send(Kick {
            reason: msg.reason,
            end: msg.end,
        });
        if !self.ended {
            // The publisher is kicked; its players' stream ended under them (at shutdown,
            // they say so too).
            self.ending = match msg.end {
                EndReason::Shutdown => EndReason::Shutdown,
                _ => EndReason::StreamEnded,
            };
        }
        self.end(ctx, msg.reason);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::Codec;
    use bytes::Bytes;

    fn video(dts: i64, key: bool, size: usize) -> MediaFrame {
        MediaFrame {
            track: Track::Video,
            codec: Codec::H264,
            kind: FrameKind::Media,
            dts,
            pts: dts,
            keyframe: key,
            payload: Bytes::from(vec![0u8; size]),
        }
    }

    fn audio(dts: i64) -> MediaFrame {
        MediaFrame {
            track: Track::Audio,
            codec: Codec::Aac,
            kind: FrameKind::Media,
            dts,
            pts: dts,
            keyframe: true,
            payload: Bytes::from_static(b"aac"),
        }
    }

    #[test]
    fn gop_starts_at_a_keyframe_and_restarts_at_the_next() {
        let mut gop = GopCache::default();
        gop.push(&video(0, false, 10)); // before any keyframe: not kept
        assert!(gop.frames().is_empty());
        gop.push(&video(40, true, 100));
        gop.push(&audio(50));
        gop.push(&video(80, false, 10));
        assert_eq!(gop.frames().len(), 3);
        assert!(gop.frames()[0].is_video_keyframe());
        gop.push(&video(120, true, 100));
        assert_eq!(gop.frames().len(), 1);
        assert_eq!(gop.frames()[0].dts, 120);
        assert_eq!(gop.bytes(), 100);
    }

    #[test]
    fn gop_ignores_config_frames() {
        let mut gop = GopCache::default();
        let mut config = video(0, true, 5);
        config.kind = FrameKind::Config;
        gop.push(&config);
        assert!(gop.frames().is_empty());
    }

    #[test]
    fn gop_overflow_waits_for_the_next_keyframe() {
        let mut gop = GopCache::default();
        gop.push(&video(0, true, GOP_MAX_BYTES - 10));
        gop.push(&video(40, false, 100)); // over the byte bound
        assert!(gop.frames().is_empty());
        gop.push(&video(80, false, 1)); // still waiting
        assert!(gop.frames().is_empty());
        gop.push(&video(120, true, 1));
        assert_eq!(gop.frames().len(), 1);
    }

    #[test]
    fn audio_only_stream_keeps_a_short_window() {
        let mut gop = GopCache::default();
        for i in 0..100 {
            gop.push(&audio(i));
        }
        assert_eq!(gop.frames().len(), AUDIO_ONLY_FRAMES);
        assert_eq!(gop.frames()[0].dts, 100 - AUDIO_ONLY_FRAMES as i64);
    }

    /// Records what a subscriber receives; pauses its mailbox on the first frame so the
    /// stream finds it full.
    struct SlowPlayer {
        got: std::rc::Rc<std::cell::RefCell<Vec<MediaFrame>>>,
        paused: bool,
    }

    impl Actor for SlowPlayer {
        type Context = Context<Self>;
        fn started(&mut self, ctx: &mut Self::Context) {
            ctx.set_mailbox_capacity(4);
        }
    }

    impl Handler<Deliver> for SlowPlayer {
        type Result = ();
        fn handle(&mut self, msg: Deliver, ctx: &mut Self::Context) {
            if let Delivery::Frame(f) = msg.item {
                self.got.borrow_mut().push(f);
            }
            if !self.paused {
                self.paused = true;
                ctx.wait(actix::fut::wrap_future(actix_rt::time::sleep(
                    std::time::Duration::from_millis(200),
                )));
            }
        }
    }

    impl Handler<StreamEnded> for SlowPlayer {
        type Result = ();
        fn handle(&mut self, _: StreamEnded, _: &mut Self::Context) {}
    }

    impl Handler<Kick> for SlowPlayer {
        type Result = ();
        fn handle(&mut self, _: Kick, _: &mut Self::Context) {}
    }

    fn config() -> MediaFrame {
        let mut c = video(0, true, 8);
        c.kind = FrameKind::Config;
        c
    }

    #[test]
    fn a_player_with_a_full_mailbox_resumes_at_the_next_keyframe_with_configs() {
        let got = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
        let seen = got.clone();
        actix::System::new().block_on(async move {
            let registry = Registry::default().start();
            let player = SlowPlayer {
                got: seen,
                paused: false,
            }
            .start();
            let stream = StreamActor::new(
                StreamKey::new("live", "t"),
                1,
                7,
                player.clone().recipient(),
                registry,
            )
            .start();
            stream.do_send(PublishFrame { frame: config() });
            stream
                .send(Subscribe {
                    clientid: 9,
                    media: player.clone().recipient(),
                    ended: player.clone().recipient(),
                })
                .await
                .expect("subscribed");
            // The player pauses on the first frame; the inter frames overflow its mailbox.
            stream.do_send(PublishFrame {
                frame: video(0, true, 10),
            });
            for i in 1..=20 {
                stream.do_send(PublishFrame {
                    frame: video(i * 40, false, 10),
                });
            }
            actix_rt::time::sleep(std::time::Duration::from_millis(400)).await;
            stream.do_send(PublishFrame {
                frame: video(840, true, 10),
            });
            stream.do_send(PublishFrame {
                frame: video(880, false, 10),
            });
            actix_rt::time::sleep(std::time::Duration::from_millis(100)).await;
        });
        let got = got.borrow();
        let dts: Vec<i64> = got.iter().map(|f| f.dts).collect();
        assert!(got.len() < 12, "the full mailbox dropped frames: {dts:?}");
        let resumed = got
            .iter()
            .position(|f| f.dts == 840)
            .unwrap_or_else(|| panic!("no resume at the next keyframe: {dts:?}"));
        assert_eq!(
            got[resumed - 1].kind,
            FrameKind::Config,
            "configs first: {dts:?}"
        );
        assert!(
            !got[..resumed - 1].iter().any(|f| f.dts > 400),
            "frames before the keyframe were delivered after the drop: {dts:?}"
        );
        assert_eq!(got.last().map(|f| f.dts), Some(880));
    }
}
