//! One actor per client connection, one module per protocol: thin IO shells over the sans-IO
//! cores in `protocol/`. They own the socket, feed bytes to their core, drain all of its
//! outputs after every input, and ask the core actors for every decision: hooks through the
//! arbiter's `NotifyActor`, streams through the `Registry`. They never decide policy.
//!
//! What every session has (clientid, span, usage, the active play or publish and its one
//! `on_done`, `request_play` / `request_publish`, kick and stream end) is the [`core`]; how
//! its output falls behind, drops and stalls is [`output`]. A session actor is its protocol
//! state, one output and one core.

pub mod arbiter;
pub mod core;
pub mod fanout;
pub mod httpflv;
pub mod output;
pub mod rtmp;
pub mod rtsp;
pub mod srt;

use std::time::Duration;

use actix::Addr;
use bytes::BytesMut;
use streamgate_actors::media::{Codec, MediaFrame, Track};
use streamgate_actors::notify::{DoneTracker, NotifyActor};
use streamgate_actors::registry::Registry;

use output::PlayerLimits;

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

/// What a listener's sessions need from its config section.
#[derive(Debug, Clone)]
pub struct SessionSettings {
    /// How far a player may fall behind.
    pub player: PlayerLimits,
    /// RTSP: the listener's UDP port pairs for RTP/RTCP.
    pub rtp_ports: Option<std::sync::Arc<rtsp::ports::RtpPorts>>,
    /// `<write_merge_ms>`: live media waits at most this long to be written together with
    /// the rest of its window ([`output::tcp::Writer::send_merged`]).
    pub write_merge: Duration,
}

/// The bytes of one socket read, counted into the session's usage; a failed read is logged
/// in the connection's span and stops the session.
pub fn read_or_stop<A>(
    item: std::io::Result<BytesMut>,
    core: &core::SessionCore,
    ctx: &mut actix::Context<A>,
) -> Option<BytesMut>
where
    A: actix::Actor<Context = actix::Context<A>>,
{
    use actix::ActorContext;
    match item {
        Ok(bytes) => {
            core.received(bytes.len());
            Some(bytes)
        }
        Err(e) => {
            let _s = core.enter();
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

/// Runs a protocol-core call with panics caught: `Err` carries the panic message. Protocol
/// cores parse bytes from untrusted clients (and rml_rtmp may panic on input it did not
/// expect), so a panic there must end only the connection that sent the bytes.
pub fn contain<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|panic| {
        panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".to_owned())
    })
}

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
