//! One actor per client connection, one module per protocol: thin IO shells over the sans-IO
//! cores in `protocol/`. They own the socket, feed bytes to their core, drain all of its
//! outputs after every input, and ask the core actors for every decision: hooks through the
//! arbiter's `NotifyActor`, streams through the `Registry`. They never decide policy.
//!
//! What every session has (clientid, span, usage, the active play or publish and its one
//! `on_done`, `request_play` / `request_publish`, kick and stream end) is the [`core`]; how
//! its output falls behind, drops and stalls is [`output`]. A session actor is its protocol
//! state, one output and one core.

pub mod actor;
pub mod arbiter;
pub mod core;
pub mod fanout;
pub mod hls;
pub mod httpflv;
pub mod output;
pub mod rtmp;
pub mod rtsp;
pub mod srt;
pub mod table;

use std::time::Duration;

use actix::Addr;
use bytes::BytesMut;
use streamgate_actors::media::{Codec, MediaFrame, Track};
use streamgate_actors::notify::{DoneTracker, Hooks, NotifyActor};
use streamgate_actors::registry::Registry;

use output::PlayerLimits;

/// Bytes read from a client socket at most per read, into one buffer per arbiter
/// ([`reader`]).
pub const READ_BUFFER: usize = 64 << 10;

thread_local! {
    /// The arbiter's read buffer: every socket read on this thread lands here first.
    static SCRATCH: std::cell::RefCell<Box<[u8]>> =
        std::cell::RefCell::new(vec![0; READ_BUFFER].into_boxed_slice());
}

/// A session's socket as a stream of reads, each handed over as it came.
///
/// A buffer held per connection stays allocated for the connection's life, and players, by
/// far the most connections, send almost nothing after their request: with tokio-util's
/// `FramedRead` it was the largest single share of a player's memory (8 KiB by default, 1 KiB
/// as it was set here). Reads land in one buffer of the arbiter's instead ([`READ_BUFFER`])
/// and only the bytes read are copied out: a player holds no read buffer at all, and a
/// publisher reads up to 64 KiB per system call.
pub struct Reader<R> {
    read: R,
    done: bool,
}

/// The [`Reader`] of a session's socket.
pub fn reader<R: tokio::io::AsyncRead + Unpin>(read: R) -> Reader<R> {
    Reader { read, done: false }
}

impl<R: tokio::io::AsyncRead + Unpin> futures_util::Stream for Reader<R> {
    type Item = std::io::Result<BytesMut>;

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::task::Poll;
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        SCRATCH.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            let mut buf = tokio::io::ReadBuf::new(&mut scratch[..]);
            match std::pin::Pin::new(&mut this.read).poll_read(cx, &mut buf) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(Err(e)) => Poll::Ready(Some(Err(e))),
                Poll::Ready(Ok(())) if buf.filled().is_empty() => {
                    this.done = true;
                    Poll::Ready(None)
                }
                Poll::Ready(Ok(())) => Poll::Ready(Some(Ok(BytesMut::from(buf.filled())))),
            }
        })
    }
}

/// What every session on one arbiter shares: made once per worker, held by each session as a
/// reference (cloning it allocates nothing; two actor addresses' clones did, per session).
#[derive(Clone)]
pub struct SessionContext(std::sync::Arc<SessionShared>);

impl SessionContext {
    /// The context of one worker's sessions.
    pub fn new(shared: SessionShared) -> Self {
        SessionContext(std::sync::Arc::new(shared))
    }
}

impl std::ops::Deref for SessionContext {
    type Target = SessionShared;

    fn deref(&self) -> &SessionShared {
        &self.0
    }
}

/// What a [`SessionContext`] holds.
pub struct SessionShared {
    /// This arbiter's notifier.
    pub notify: Addr<NotifyActor>,
    /// The server's stream registry.
    pub registry: Addr<Registry>,
    /// Its directory, read without a message to the registry's thread.
    pub streams: streamgate_actors::registry::Directory,
    /// Counts `on_done` calls owed, for shutdown.
    pub done: DoneTracker,
    /// Every protocol's hook settings, as a reload leaves them.
    pub hooks: Hooks,
    /// The outbox that makes `on_done` durable (for the protocols with an `on_done` URL).
    pub outbox: Option<streamgate_actors::outbox::Outbox>,
    /// The cluster this node is in (`<cluster>`): publish claims and remote streams.
    pub cluster: Option<crate::cluster::Cluster>,
}

/// An accepted TCP connection, handed to its session's `start` on the arbiter it will live on.
pub struct TcpAccept {
    /// The socket, registered with this arbiter.
    pub socket: tokio::net::TcpStream,
    /// The client's address.
    pub peer: std::net::SocketAddr,
    /// This arbiter's notifier and the registry.
    pub context: SessionContext,
    /// The listener's settings.
    pub settings: SessionSettings,
    /// Its place within the section's connection limits.
    pub admission: crate::limits::Admission,
}

/// A TCP session's parts, made from its [`TcpAccept`].
pub struct TcpParts {
    /// The session core (its clientid taken, its span open).
    pub core: core::SessionCore,
    /// The socket's read half.
    pub read: tokio::net::tcp::OwnedReadHalf,
    /// The socket's writer, counting into the core's usage.
    pub writer: output::tcp::Writer,
    /// The listener's settings.
    pub settings: SessionSettings,
}

impl TcpParts {
    /// The server address the client reached (a system call: asked only by the protocols
    /// that use it).
    pub fn local(&self) -> std::net::SocketAddr {
        self.read
            .local_addr()
            .map(crate::listener::bind::canonical)
            .unwrap_or(self.core.peer)
    }
}

impl TcpAccept {
    /// Opens a session of `protocol` on this connection.
    pub fn open(self, protocol: streamgate_actors::session::Protocol) -> TcpParts {
        let TcpAccept {
            socket,
            peer,
            context,
            settings,
            admission,
        } = self;
        let core = core::SessionCore::new(protocol, peer, context, settings.player, admission);
        let (read, write) = socket.into_split();
        let writer = output::tcp::Writer::new(
            write,
            settings.write_merge,
            core.usage.counter(core::Count::BytesOut),
        );
        TcpParts {
            core,
            read,
            writer,
            settings,
        }
    }
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
    core: &mut core::SessionCore,
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
            drop(_s);
            // A reset is the client going away too (HTTP-FLV's `closed`, the others' `lost`).
            core.client_gone();
            ctx.stop();
            None
        }
    }
}

/// The reading side of a session over TCP: every read is counted and handed to the session's
/// `input(bytes, ctx)`; a failed read or the client's close ends the session.
macro_rules! tcp_input {
    ($session:ty) => {
        impl actix::StreamHandler<std::io::Result<bytes::BytesMut>> for $session {
            fn handle(&mut self, item: std::io::Result<bytes::BytesMut>, ctx: &mut Self::Context) {
                if let Some(bytes) = $crate::session::read_or_stop(item, &mut self.core, ctx) {
                    self.input(bytes, ctx);
                }
            }

            fn finished(&mut self, ctx: &mut Self::Context) {
                let _s = self.core.enter();
                tracing::debug!("client closed the connection");
                drop(_s);
                self.core.client_gone();
                actix::ActorContext::stop(ctx);
            }
        }
    };
}
pub(crate) use tcp_input;

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

/// A session over a sans-IO protocol connection that answers requests (RTMP, RTSP): every
/// call into it is [`guard`]ed, and a failure sends what the protocol queued (its error
/// answer) before the connection closes.
pub trait ProtocolShell: actix::Actor<Context = actix::Context<Self>> {
    /// The protocol connection.
    type Protocol;
    /// Its error.
    type Error: std::fmt::Display;

    /// The protocol connection and the span its failures are logged in.
    fn protocol(&mut self) -> (&mut Self::Protocol, &tracing::Span);

    /// Sends what the protocol queued.
    fn flush(&mut self, ctx: &mut actix::Context<Self>);

    /// Hands the client's bytes to the protocol connection.
    fn handle_input(protocol: &mut Self::Protocol, bytes: &[u8]) -> Result<(), Self::Error>;

    /// Acts on every event the protocol connection has after an input.
    fn pump(&mut self, ctx: &mut actix::Context<Self>);

    /// Feeds the client's bytes to the protocol and acts on what they caused.
    fn feed(&mut self, ctx: &mut actix::Context<Self>, bytes: &[u8]) {
        if self
            .guarded(ctx, |protocol| Self::handle_input(protocol, bytes))
            .is_some()
        {
            self.pump(ctx);
        }
    }

    /// Runs a call into the protocol with panics contained; any failure ends this
    /// connection (`None`).
    fn guarded<T>(
        &mut self,
        ctx: &mut actix::Context<Self>,
        f: impl FnOnce(&mut Self::Protocol) -> Result<T, Self::Error>,
    ) -> Option<T> {
        use actix::ActorContext;
        let (protocol, span) = self.protocol();
        match guard(protocol, span, f) {
            Ok(v) => Some(v),
            Err(failure) => {
                if failure == CoreFailure::Protocol {
                    self.flush(ctx);
                }
                ctx.stop();
                None
            }
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
