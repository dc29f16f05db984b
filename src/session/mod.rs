//! One actor per client connection, one file per protocol: thin IO shells over the sans-IO
//! cores in `protocol/`. They own the socket, feed bytes to their core, drain all of its
//! outputs after every input, and ask the core actors for every decision: hooks through the
//! arbiter's `NotifyActor`, streams through the `Registry`. They never decide policy.

pub mod fanout;
pub mod httpflv;
pub mod rtmp;
pub mod rtsp;
pub mod srt;
pub mod writer;

use std::time::{Duration, Instant};

use actix::{Addr, Recipient};
use bytes::{Bytes, BytesMut};
use streamgate_actors::media::{Codec, FrameKind, MediaFrame, StreamKey, Track};
use streamgate_actors::notify::{self, Decision, DenyReason, DoneTracker, NotifyActor};
use streamgate_actors::registry::{Lookup, Registry};
use streamgate_actors::session::SessionInfo;
use streamgate_actors::stream::{
    Deliver, Snapshot, StreamActor, StreamEnded, Subscribe, Unpublish, Unsubscribe,
};

/// Bytes read from a client socket at most per read. Players, by far the most connections,
/// send almost nothing after their request, and a read buffer stays allocated for the life of
/// the connection: tokio-util's default of 8 KiB was the largest single share of a player's
/// memory (valgrind massif at 300 players). A publisher at 8 Mbit/s needs about 1000 reads a
/// second with it, a cost counted in publishers, not players.
pub const READ_BUFFER: usize = 1024;

/// The framed reader of a session's socket: every read handed over as it came.
pub fn reader<R: tokio::io::AsyncRead>(
    read: R,
) -> tokio_util::codec::FramedRead<R, tokio_util::codec::BytesCodec> {
    tokio_util::codec::FramedRead::with_capacity(
        read,
        tokio_util::codec::BytesCodec::new(),
        READ_BUFFER,
    )
}

/// What every session on one arbiter shares.
#[derive(Clone)]
pub struct SessionContext {
    /// This arbiter's notifier.
    pub notify: Addr<NotifyActor>,
    /// The server's stream registry.
    pub registry: Addr<Registry>,
    /// Counts `on_done` calls owed, for shutdown.
    pub done: DoneTracker,
}

/// Whether a session publishes or plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Sends a stream in.
    Publisher,
    /// Takes a stream out.
    Player,
}

/// An allowed play or publish. From [`Active::begin`] on it owes exactly one `on_done`, which
/// [`Active::finish`] sends; consuming `self` there makes a second one impossible.
#[derive(Debug)]
pub struct Active {
    /// Publisher or player.
    pub role: Role,
    /// The fields its hooks were (and its `on_done` will be) sent with.
    pub info: SessionInfo,
    /// The stream it is attached to, once it is.
    pub stream: Option<Addr<StreamActor>>,
}

impl Active {
    /// A play or publish the hook allowed: counts its `on_done` as owed.
    pub fn begin(
        shared: &SessionContext,
        role: Role,
        info: SessionInfo,
        stream: Option<Addr<StreamActor>>,
    ) -> Active {
        shared.done.begin();
        Active { role, info, stream }
    }

    /// Leaves the stream (a publisher's leaving ends it) and sends the one `on_done`.
    pub fn finish(self, shared: &SessionContext, why: &str) {
        let clientid = self.info.clientid;
        if let Some(stream) = &self.stream {
            match self.role {
                Role::Publisher => stream.do_send(Unpublish { clientid }),
                Role::Player => stream.do_send(Unsubscribe { clientid }),
            }
        }
        tracing::info!(role = ?self.role, why, "session done");
        shared.notify.do_send(notify::Done { info: self.info });
    }
}

/// How much a player may fall behind: from the protocol's `<queue_bytes>` and
/// `<stall_timeout_ms>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlayerLimits {
    /// Unwritten output above which the player drops media until the next keyframe.
    pub queue_bytes: usize,
    /// A player over its queue for this long is disconnected.
    pub stall_timeout: Duration,
}

/// What a listener's sessions need from its config section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionSettings {
    /// How far a player may fall behind.
    pub player: PlayerLimits,
    /// RTSP: the UDP ports RTP/RTCP pairs are taken from.
    pub rtp_ports: (u16, u16),
    /// `<write_merge_ms>`: live media waits at most this long to be written together with
    /// the rest of its window ([`writer::Writer::send_merged`]).
    pub write_merge: Duration,
}

/// The drop policy of one player's output: past `queue_bytes` of unwritten output it drops
/// media until a keyframe arrives while the backlog is under half the limit; codec configs
/// always pass. A stream without video resumes at any audio frame.
#[derive(Debug)]
pub struct Backlog {
    limits: PlayerLimits,
    span: tracing::Span,
    resync: bool,
    seen_video: bool,
    full_since: Option<Instant>,
    dropped: u64,
}

impl Backlog {
    /// A player's policy.
    pub fn new(limits: PlayerLimits) -> Self {
        Backlog {
            limits,
            span: tracing::Span::none(),
            resync: false,
            seen_video: false,
            full_since: None,
            dropped: 0,
        }
    }

    /// The same policy, logging in the player's `span`.
    pub fn in_span(mut self, span: tracing::Span) -> Self {
        self.span = span;
        self
    }

    /// Whether to write `frame` with `pending` bytes still unwritten. Logs the moments the
    /// player falls behind and catches up.
    pub fn admit(&mut self, frame: &MediaFrame, pending: usize) -> bool {
        if frame.kind == FrameKind::Config {
            return true;
        }
        self.seen_video |= frame.track == Track::Video;
        if !self.resync && pending > self.limits.queue_bytes {
            self.resync = true;
            let _s = self.span.enter();
            tracing::warn!(pending, "player is behind; dropping to the next keyframe");
        }
        if self.resync {
            let resume_point = frame.is_video_keyframe() || !self.seen_video;
            if !resume_point || pending > self.limits.queue_bytes / 2 {
                self.dropped += 1;
                return false;
            }
            self.resync = false;
            let _s = self.span.enter();
            tracing::info!(dropped = self.dropped, "player caught up at a keyframe");
        }
        true
    }

    /// Marks the player behind (its write queue refused a buffer).
    pub fn overflowed(&mut self) {
        self.resync = true;
    }

    /// Whether a connection's output is over: its writer ended or made no progress for
    /// [`writer::WRITE_STALL`], or (a player) it has been over its queue for the stall
    /// timeout, which is logged. Every session asks this on its one-second timer.
    pub fn output_gone(&mut self, writer: &writer::Writer) -> bool {
        if writer.is_closed() {
            return true;
        }
        let pending = writer.pending_bytes();
        if self.stalled(pending, Instant::now()) {
            tracing::warn!(pending, "player stalled; closing");
            return true;
        }
        false
    }

    /// True when the player has been over its queue for longer than the stall timeout.
    pub fn stalled(&mut self, pending: usize, now: Instant) -> bool {
        if pending <= self.limits.queue_bytes {
            self.full_since = None;
            return false;
        }
        let since = *self.full_since.get_or_insert(now);
        now.duration_since(since) > self.limits.stall_timeout
    }
}

/// How a player takes live frames.
pub enum Attach {
    /// As `Deliver` messages to its own session.
    Own {
        /// Where media goes.
        media: Recipient<Deliver>,
        /// Where the end of the stream is told.
        ended: Recipient<StreamEnded>,
    },
    /// Through its arbiter's [`fanout`] group, which writes them to its socket.
    Shared,
}

/// How a play request ended.
pub enum PlayOutcome {
    /// The hook refused.
    Denied(Decision),
    /// The hook allowed, but no such stream is live.
    NotFound,
    /// Attached: write the snapshot, then live frames arrive as `Deliver` ([`Attach::Own`]),
    /// or (with [`Attach::Shared`]) activate the [`fanout::Joining`].
    Playing(Addr<StreamActor>, Snapshot, Option<fanout::Joining>),
}

/// Asks the hook about a play, then finds the stream and subscribes to it. Every protocol's
/// player goes through here, so the order (hook first, nothing revealed before it) is one.
pub async fn request_play(
    shared: SessionContext,
    info: SessionInfo,
    key: StreamKey,
    attach: Attach,
) -> PlayOutcome {
    let clientid = info.clientid;
    let decision = ask(shared.notify.send(notify::Play { info })).await;
    if !decision.is_allow() {
        return PlayOutcome::Denied(decision);
    }
    let Ok(Some(stream)) = shared.registry.send(Lookup { key }).await else {
        return PlayOutcome::NotFound;
    };
    match attach {
        Attach::Own { media, ended } => match stream
            .send(Subscribe {
                clientid,
                media,
                ended,
            })
            .await
        {
            Ok(snapshot) => PlayOutcome::Playing(stream, snapshot, None),
            Err(_) => PlayOutcome::NotFound,
        },
        Attach::Shared => match fanout::join(stream.clone()).await {
            Some((snapshot, joining)) => PlayOutcome::Playing(stream, snapshot, Some(joining)),
            None => PlayOutcome::NotFound,
        },
    }
}

/// Awaits a hook decision; a notifier that is gone refuses.
pub async fn ask<M>(request: actix::dev::Request<NotifyActor, M>) -> Decision
where
    M: actix::Message<Result = Decision> + Send + 'static,
    NotifyActor: actix::Handler<M>,
{
    request
        .await
        .unwrap_or_else(|e| Decision::Deny(DenyReason::Unreachable(e.to_string())))
}

/// Most encodings each arbiter keeps for [`shared_encoding`].
const ENCODING_CACHE: usize = 512;

/// A frame's encoding in one wire form, cached per arbiter.
struct Encoding {
    /// Holds the payload alive, so its address cannot be reused while the entry exists.
    payload: Bytes,
    dts: i64,
    form: u64,
    encoded: Bytes,
}

thread_local! {
    static ENCODINGS: std::cell::RefCell<std::collections::VecDeque<Encoding>> =
        std::cell::RefCell::new(std::collections::VecDeque::with_capacity(ENCODING_CACHE));
}

/// The wire bytes of `frame` in `form` (a protocol and whatever per-player setting shapes the
/// bytes): encoded by the first player on this arbiter that needs them, then shared by every
/// other player here as a reference-counted `Bytes`. Fan-out to many players of one protocol
/// thus encodes each frame once per arbiter instead of once per player.
pub fn shared_encoding(frame: &MediaFrame, form: u64, encode: impl FnOnce(&mut BytesMut)) -> Bytes {
    let same = |e: &Encoding| {
        e.form == form
            && e.dts == frame.dts
            && e.payload.len() == frame.payload.len()
            && e.payload.as_ptr() == frame.payload.as_ptr()
    };
    ENCODINGS.with(|cache| {
        let mut cache = cache.borrow_mut();
        // Newest first: the players of one frame ask for it one after another.
        if let Some(hit) = cache.iter().rev().find(|e| same(e)) {
            return hit.encoded.clone();
        }
        let mut out = BytesMut::new();
        encode(&mut out);
        let encoded = out.freeze();
        // A frame only the cache still holds has left the stream's GOP cache and every
        // group's history and queue: nobody can ask for its encoding again. Dropping those
        // keeps the cache at what joining players can still be sent, instead of holding
        // (and keeping alive) up to ENCODING_CACHE frames. `is_unique` may say false for a
        // payload that is still unused (one carved from a shared buffer); the count bound
        // then applies.
        cache.retain(|e| !e.payload.is_unique());
        if cache.len() == ENCODING_CACHE {
            cache.pop_front();
        }
        cache.push_back(Encoding {
            payload: frame.payload.clone(),
            dts: frame.dts,
            form,
            encoded: encoded.clone(),
        });
        encoded
    })
}

/// How many encodings this arbiter holds.
#[cfg(test)]
fn cached_encodings() -> usize {
    ENCODINGS.with(|cache| cache.borrow().len())
}

/// The bytes of one socket read; a failed read is logged in the connection's span and stops
/// the session.
pub fn read_or_stop<A>(
    item: std::io::Result<BytesMut>,
    span: &tracing::Span,
    ctx: &mut actix::Context<A>,
) -> Option<BytesMut>
where
    A: actix::Actor<Context = actix::Context<A>>,
{
    use actix::ActorContext;
    match item {
        Ok(bytes) => Some(bytes),
        Err(e) => {
            let _s = span.enter();
            tracing::info!(error = %e, "read failed");
            ctx.stop();
            None
        }
    }
}

/// How a guarded protocol-core call failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CoreFailure {
    /// The client's input broke the protocol: send what the core queued (its error answer),
    /// then close.
    Protocol,
    /// The core panicked: close without trusting its state.
    Panic,
}

/// Runs a protocol-core call with panics contained ([`contain`]) and logs a failure in the
/// connection's span; the session then closes its connection.
pub fn guard<C, T, E: std::fmt::Display>(
    core: &mut C,
    span: &tracing::Span,
    f: impl FnOnce(&mut C) -> Result<T, E>,
) -> Result<T, CoreFailure> {
    let result = contain(|| f(core));
    let _s = span.enter();
    match result {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => {
            tracing::info!(error = %e, "protocol error; closing");
            Err(CoreFailure::Protocol)
        }
        Err(panic) => {
            tracing::error!(%panic, "protocol core panicked on client input; closing this connection only");
            Err(CoreFailure::Panic)
        }
    }
}

pub use crate::protocol::contain;

/// What an FLV player (RTMP or HTTP-FLV: `what`) of a stream with `configs` gets, as
/// [`crate::protocol::flv::carried_tracks`] says, logged once at its start: the tracks FLV
/// cannot carry (left out) and those sent as Enhanced RTMP (which players without it cannot
/// decode).
pub(crate) fn flv_tracks(
    span: &tracing::Span,
    what: &str,
    configs: &[MediaFrame],
) -> (bool, bool, Vec<(Track, Codec)>) {
    let (has_audio, has_video, left_out) = crate::protocol::flv::carried_tracks(configs);
    let _s = span.enter();
    if !left_out.is_empty() {
        tracing::warn!(
            tracks = ?left_out,
            "{what} cannot carry these tracks; playing without them"
        );
    }
    let enhanced = crate::protocol::flv::enhanced_tracks(configs);
    if !enhanced.is_empty() {
        tracing::info!(
            tracks = ?enhanced,
            "sending these tracks as Enhanced RTMP (players without it cannot decode them)"
        );
    }
    (has_audio, has_video, left_out)
}

#[cfg(test)]
mod tests {
    use super::contain;

    #[test]
    fn one_encoding_per_frame_and_form() {
        use super::shared_encoding;
        use bytes::{BufMut, Bytes};
        use streamgate_actors::media::{Codec, FrameKind, MediaFrame, Track};
        let frame = |payload: Bytes, dts| MediaFrame {
            track: Track::Audio,
            codec: Codec::Aac,
            kind: FrameKind::Media,
            dts,
            pts: dts,
            keyframe: true,
            payload,
        };
        let a = frame(Bytes::from_static(b"same"), 0);
        let mut calls = 0;
        let mut enc = |form: u64, f: &MediaFrame| {
            shared_encoding(f, form, |out| {
                calls += 1;
                out.put_u64(form);
                out.put_slice(&f.payload);
            })
        };
        let first = enc(1, &a);
        let again = enc(1, &a.clone());
        assert_eq!(first, again);
        assert_eq!(first.as_ptr(), again.as_ptr(), "shared, not re-encoded");
        let other_form = enc(2, &a);
        assert_ne!(first, other_form);
        // Equal bytes in another buffer are another frame.
        let b = frame(Bytes::copy_from_slice(b"same"), 0);
        let _ = enc(1, &b);
        let later = frame(a.payload.clone(), 40);
        let _ = enc(1, &later);
        assert_eq!(calls, 4);
    }

    #[test]
    fn an_encoding_goes_when_nobody_else_holds_its_frame() {
        use super::{cached_encodings, shared_encoding};
        use bytes::{BufMut, Bytes};
        use streamgate_actors::media::{Codec, FrameKind, MediaFrame, Track};
        let frame = |n: u8| MediaFrame {
            track: Track::Video,
            codec: Codec::H264,
            kind: FrameKind::Media,
            dts: i64::from(n),
            pts: i64::from(n),
            keyframe: false,
            payload: Bytes::from(vec![n; 64]),
        };
        let enc = |f: &MediaFrame| shared_encoding(f, 7, |out| out.put_slice(&f.payload));
        let (a, b) = (frame(1), frame(2));
        let _ = enc(&a);
        let _ = enc(&b);
        assert_eq!(cached_encodings(), 2, "both frames are still held");
        drop(a);
        let c = frame(3);
        let _ = enc(&c);
        assert_eq!(
            cached_encodings(),
            2,
            "a's encoding went with its frame, b's and c's stay"
        );
        let mut calls = 0;
        let _ = shared_encoding(&b, 7, |_| calls += 1);
        assert_eq!(calls, 0, "b is still served from the cache");
    }

    #[test]
    fn a_panic_becomes_an_error_and_the_caller_goes_on() {
        let hostile: &[u8] = &[0xFF];
        let result = contain(|| {
            let index = usize::from(hostile[0]);
            hostile[index] // out of bounds: panics
        });
        assert!(result
            .expect_err("the panic is caught")
            .contains("index out of bounds"));
        assert_eq!(contain(|| 7), Ok(7));
    }
}
