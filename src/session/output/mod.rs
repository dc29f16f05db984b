//! One output abstraction for every session: what a connection's output queue tells the drop
//! and stall policy ([`Output`]), and that policy itself ([`Backlog`]), so every player
//! (whatever its protocol and transport) falls behind, drops, catches up and is closed for
//! stalling by the same rules.
//!
//! The outputs:
//! - [`tcp::Writer`]: the queue of a TCP connection (RTMP, HTTP-FLV, RTSP), written with
//!   vectored writes, merged per window;
//! - [`srt::SrtOut`]: the paced send side of an SRT connection;
//! - [`udp::UdpOut`]: RTP and RTCP datagrams of an RTSP track over UDP.
//!
//! Each counts the bytes it hands to the connection into the session's usage.

pub mod srt;
pub mod tcp;
pub mod udp;

use std::time::{Duration, Instant};

use streamgate_actors::media::{FrameKind, MediaFrame, Track};

use super::core::Counter;

/// Why a buffer could not be queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The queue is full: the peer is not reading.
    #[error("output queue full")]
    Full,
    /// The connection is gone.
    #[error("connection closed")]
    Closed,
}

/// What the drop and stall policy needs to know of a connection's output.
pub trait Output {
    /// Bytes queued and not yet handed to the connection.
    fn pending_bytes(&self) -> usize;
    /// True when the connection is gone, or its queued bytes made no progress for too long.
    fn is_closed(&self) -> bool;
    /// True when it is closed because its queued bytes made no progress for too long.
    fn write_stalled(&self) -> bool {
        false
    }
    /// The error that ended the writes, if one did.
    fn write_error(&self) -> Option<std::io::ErrorKind> {
        None
    }
    /// How long the queued bytes have waited for the connection to take any of them: `None`
    /// when nothing is queued, or when the output cannot tell.
    fn waiting_for(&self) -> Option<Duration> {
        None
    }
}

/// Why a player's output ended its session ([`Backlog::output_gone`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gone {
    /// The connection is gone.
    Closed,
    /// Over its queue for the stall timeout, or a write that made no progress.
    Stalled,
}

/// How much a player may fall behind: from the protocol's `<queue_bytes>` and
/// `<stall_timeout_ms>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlayerLimits {
    /// Unwritten output above which the player drops media until the next keyframe.
    pub queue_bytes: usize,
    /// A player over its queue for this long, or over half of it with nothing written for
    /// this long, is disconnected.
    pub stall_timeout: Duration,
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
    /// Frames dropped (for the log line).
    dropped: u64,
    /// Frames dropped over the session (its usage).
    total: Counter,
}

impl Backlog {
    /// A player's policy, counting the frames it drops into `total`.
    pub fn new(limits: PlayerLimits, total: Counter) -> Self {
        Backlog {
            limits,
            span: tracing::Span::none(),
            resync: false,
            seen_video: false,
            full_since: None,
            dropped: 0,
            total,
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
                self.total.add(1);
                return false;
            }
            self.resync = false;
            let _s = self.span.enter();
            tracing::info!(dropped = self.dropped, "player caught up at a keyframe");
        }
        true
    }

    /// Marks the player behind (its output refused a buffer).
    pub fn overflowed(&mut self) {
        self.resync = true;
    }

    /// Takes the result of queueing media: a full queue marks the player behind (it then
    /// drops to the next keyframe). True when the connection is gone.
    pub fn sent(&mut self, result: Result<(), SendError>) -> bool {
        match result {
            Ok(()) => false,
            Err(SendError::Full) => {
                self.overflowed();
                false
            }
            Err(SendError::Closed) => true,
        }
    }

    /// Whether a connection's output is over: it ended or made no progress, or (a player) it
    /// stalled ([`Self::stalled`]), which is logged. Every session asks
    /// this on its arbiter's one-second tick ([`super::core::SessionCore::tick`]).
    pub fn output_gone(&mut self, output: &dyn Output) -> Option<Gone> {
        if output.write_stalled() {
            return Some(Gone::Stalled);
        }
        if output.is_closed() {
            if let Some(error) = output.write_error() {
                let _s = self.span.enter();
                tracing::debug!(%error, "write failed; closing");
            }
            return Some(Gone::Closed);
        }
        let pending = output.pending_bytes();
        if self.stalled(pending, output.waiting_for(), Instant::now()) {
            let _s = self.span.enter();
            tracing::warn!(pending, "player stalled; closing");
            return Some(Gone::Stalled);
        }
        None
    }

    /// True when the player has been over its queue for longer than the stall timeout, or
    /// over half of it while the connection took none of its bytes (`waiting`) for that long.
    /// The second is the player that stopped reading while between the two marks: behind, it
    /// takes no keyframe until under half its queue, so its backlog neither grows past the
    /// queue nor shrinks.
    pub fn stalled(&mut self, pending: usize, waiting: Option<Duration>, now: Instant) -> bool {
        let timeout = self.limits.stall_timeout;
        if pending > self.limits.queue_bytes / 2 && waiting.is_some_and(|w| w > timeout) {
            return true;
        }
        if pending <= self.limits.queue_bytes {
            self.full_since = None;
            return false;
        }
        let since = *self.full_since.get_or_insert(now);
        now.duration_since(since) > timeout
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::{Backlog, PlayerLimits};
    use crate::session::core::{Count, Usage};

    const QUEUE: usize = 1000;
    const TIMEOUT: Duration = Duration::from_secs(3);

    fn backlog() -> Backlog {
        let limits = PlayerLimits {
            queue_bytes: QUEUE,
            stall_timeout: TIMEOUT,
        };
        Backlog::new(limits, Usage::new().counter(Count::FramesDropped))
    }

    #[test]
    fn over_the_queue_for_the_stall_timeout_is_stalled_while_writing() {
        let mut b = backlog();
        let t0 = Instant::now();
        let moving = Some(Duration::from_millis(5));
        assert!(!b.stalled(QUEUE + 1, moving, t0));
        assert!(!b.stalled(QUEUE + 1, moving, t0 + TIMEOUT));
        assert!(b.stalled(QUEUE + 1, moving, t0 + TIMEOUT + Duration::from_millis(1)));
        // Back under the queue, the clock starts again.
        let t1 = t0 + 2 * TIMEOUT;
        assert!(!b.stalled(QUEUE, moving, t1));
        assert!(!b.stalled(QUEUE + 1, moving, t1));
        assert!(!b.stalled(QUEUE + 1, moving, t1 + TIMEOUT));
    }

    #[test]
    fn over_half_the_queue_with_nothing_written_for_the_stall_timeout_is_stalled() {
        let mut b = backlog();
        let now = Instant::now();
        let idle = Some(TIMEOUT + Duration::from_millis(1));
        assert!(b.stalled(QUEUE / 2 + 1, idle, now));
        assert!(!b.stalled(QUEUE / 2 + 1, Some(TIMEOUT), now));
        // At or under half its queue a player still takes keyframes: not this rule.
        assert!(!b.stalled(QUEUE / 2, idle, now));
        // An output that cannot tell how long its bytes waited: only the queue rule.
        assert!(!b.stalled(QUEUE, None, now + 10 * TIMEOUT));
    }
}
