//! SRT: the listener (one per server), the protocol task of each connection, and
//! [`SrtSession`], the actor of one SRT connection.
//!
//! Built on srt-protocol's sans-IO state machines with our own IO, not on srt-tokio: srt-tokio
//! runs srt-protocol's listener in a task we cannot guard, and srt-protocol 0.4.4 has
//! `unimplemented!()` branches a caller can reach (a caller that encrypts when the listener is
//! told to accept without keys — with FFmpeg's default `pbkeylen=0` the handshake does not even
//! say so —, a key-size mismatch, a handshake extension it does not know, a few control
//! packets); one such panic there ends the listener and every SRT connection with it. Here
//! every datagram is checked before srt-protocol sees it and those it would panic on are
//! dropped ([`check_datagram`]), every srt-protocol call runs under [`contain`], and the
//! listener sees each caller's conclusion handshake itself, so it knows whether the caller
//! sends key material before anything is accepted ([`key_plan`]). Dropped datagrams and
//! contained panics are logged at most once per [`REPORT_EVERY`] each, with counts.
//!
//! - The listener task (on the arbiter the server is started on) owns the UDP socket: it parses
//!   datagrams, routes those of open connections straight to their protocol task, and runs
//!   srt-protocol's `MultiplexListener` for handshakes. A connection request becomes an
//!   [`SrtSession`] on the next worker arbiter (round-robin, like the TCP sessions). A panic in
//!   the handshake state machine resets it (handshakes in progress are lost, open connections go
//!   on); the task itself is supervised and started again if it ever ends.
//! - Each accepted connection gets a protocol task (srt-protocol's `DuplexConnection`: ARQ,
//!   TSBPD, keepalive and idle timeout, crypto) on its session's arbiter, sending through a
//!   clone of the listener's socket. A panic there ends that connection only.
//!
//! Every decision is made **before** the handshake is accepted: the caller keeps repeating its
//! conclusion handshake while the actor parses the streamid, checks the caller's encryption
//! against `<passphrase>`, asks `on_connect` and then `on_publish` or `on_play` (suspended with
//! `ctx.wait`), and claims or finds the stream. Only then is the request accepted, or rejected
//! with an SRT reject code the caller sees: 1400 for an unusable streamid, 1401 when a hook
//! answered 401, 1403 for any other refusal (another status, a timeout, an unreachable hook
//! server), 1404 for a play of a stream that is not live, 1409 for a second publisher of a live
//! name, 11 (`SRT_REJ_UNSECURE`) when one side encrypts and the other does not; SRT itself
//! answers a wrong passphrase with 10 (`SRT_REJ_BADSECRET`).
//!
//! A publisher's SRT payloads go through a [`TsDemuxer`] into frames for the `StreamActor` it
//! claimed. A player gets a [`TsMuxer`] set up from the stream's codec configs: configs and the
//! cached GOP first, then live frames, cut into SRT payloads of `<payload_size>` (whole TS
//! packets) and queued for the connection behind the shared drop policy ([`Backlog`]).
//!
//! `on_done` is sent once for every allowed publish or play, from [`SrtSession::finish`]: when
//! the caller closes, when SRT's idle timeout ends a connection whose peer vanished (kill -9),
//! when the stream ends under a player, when the publisher is kicked (shutdown), or when the
//! request is refused after the hook allowed it (1404, 1409).

use std::cell::Cell;
use std::collections::HashMap;
use std::io::{self, Cursor};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket as StdUdpSocket};
use std::panic::AssertUnwindSafe;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use bytes::{Bytes, BytesMut};
use futures_util::FutureExt;
use srt_protocol::connection::{Connection, DuplexConnection};
use srt_protocol::listener::{
    AccessControlRequest, AccessControlResponse, Action as MuxAction, Input as MuxInput,
    MultiplexListener, ResultOf, SessionId,
};
use srt_protocol::options::{KeySize, ListenerOptions, PacketSize, Passphrase, SocketOptions};
use srt_protocol::packet::{
    ControlPacket, ControlTypes, CoreRejectReason, HandshakeControlInfo, HandshakeVsInfo, Packet,
    ReceivePacketError, RejectReason, ServerRejectReason, ShakeType, SocketId, SrtControlPacket,
};
use srt_protocol::protocol::handshake::Handshake;
use srt_protocol::settings::{ConnInitSettings, KeySettings};
use streamgate_actors::media::Codec;
use streamgate_actors::media::{FrameKind, MediaFrame, MetaValue, Metadata, StreamKey, Track};
use streamgate_actors::notify::{self, Decision, DenyReason};
use streamgate_actors::registry::{ClaimPublish, PublishRefused};
use streamgate_actors::session::{next_client_id, ClientId, Protocol, SessionInfo};
use streamgate_actors::stream::{
    Deliver, Delivery, Kick, PublishFrame, PublishMetadata, Snapshot, StreamActor, StreamEnded,
};
use tokio::sync::{mpsc, oneshot};
use tracing::field::Empty;

use super::writer::QUEUE_BUFFERS;
use super::{
    ask, contain, request_play, Active, Attach, Backlog, PlayOutcome, PlayerLimits, Role,
    SessionContext,
};
use crate::config::SrtConfig;
use crate::limits::{Admission, ConnectionLimits};
use crate::listener::Worker;
use crate::protocol::codec::AacConfig;
use crate::protocol::srt::{check_datagram, FirstDataHold, MediaClock, Mode, StreamId};
use crate::protocol::ts::{TsDemuxer, TsMuxer, CHUNK_SIZE, PACKET_SIZE};
use crate::protocol::url::srt_url;

/// Mailbox capacity of a session: live frames waiting to be muxed.
pub const SESSION_MAILBOX: usize = 1024;
/// A publisher that sends no data for this long is dropped (SRT keepalives do not count).
pub const PUBLISH_IDLE: Duration = Duration::from_secs(30);
/// Time an accepted handshake has to turn into a connection.
pub const ACCEPT_DEADLINE: Duration = Duration::from_secs(10);
/// Wait before starting the listener again after it ended.
pub const RESTART_DELAY: Duration = Duration::from_secs(1);
/// Bytes the SRT sender keeps for retransmission, per connection (srt-protocol's default of
/// 46592 bytes is 32 packets, less than one GOP replay).
const SEND_BUFFER_BYTES: u64 = 8192 * 1500;
/// The UDP socket buffers asked for (the kernel may grant less).
const UDP_BUFFER_BYTES: usize = 4 << 20;
/// Datagrams queued for one connection's protocol task; more are dropped (SRT recovers them).
const CONNECTION_PACKETS: usize = 1024;
/// Payloads queued between a session and its protocol task, each way.
const CONNECTION_DATA: usize = 256;
/// Conclusion handshakes remembered (by caller address) until their access request.
const MAX_HANDSHAKES: usize = 4096;
/// Payloads handed to a connection per [`PACE_WINDOW`] at most.
pub const PACE_PAYLOADS: usize = 64;
/// The pacing window of [`PACE_PAYLOADS`].
pub const PACE_WINDOW: Duration = Duration::from_millis(5);
/// The longest a new connection's first data waits for the caller to show it completed the
/// handshake ([`FirstDataHold`]): well past what a jittery path reorders by. A libsrt player
/// shows it only with its first keepalive, 1 s after its last handshake; a caller whose
/// response was lost asks again when the data arrives, and what it dropped is retransmitted.
const FIRST_DATA_HOLD: Duration = Duration::from_millis(150);
/// How far ahead of the moment it is sent a player's media may be stamped ([`MediaClock`]): a
/// joining player's GOP is released over its own duration, up to this much; an older part of
/// it is released at once.
pub const MAX_LEAD: Duration = Duration::from_secs(3);
/// Added to the latency while a player's last packets drain before its connection is closed.
const LINGER_MARGIN: Duration = Duration::from_millis(200);
/// The longest such drain.
const MAX_LINGER: Duration = Duration::from_secs(3);
/// Datagrams dropped by the listener (refused, unparsable) and contained panics of the
/// handshake state machine are logged at most once per this interval each, with counts: one
/// client sending them at line rate must not write the log at line rate.
pub const REPORT_EVERY: Duration = Duration::from_secs(10);

/// What every SRT connection of the listener is set up with, from `<srt>`.
#[derive(Debug, Clone)]
pub struct SrtSettings {
    /// The UDP port.
    pub port: u16,
    /// `<latency_ms>`: offered as both the receive latency and the peer (send) latency.
    pub latency: Duration,
    /// `<passphrase>`: when set, every connection must be encrypted with it.
    pub passphrase: Option<Passphrase>,
    /// `<pbkeylen>`: the key length this server prefers, in bytes. A caller picks its key
    /// length in its handshake and is accepted with it (as libsrt listeners do).
    pub pbkeylen: u8,
    /// `<payload_size>`: the most TS bytes per SRT packet sent to players.
    pub payload_size: usize,
    /// The drop policy of players.
    pub limits: PlayerLimits,
    /// `<max_connections>` and `<max_connections_per_ip>`, checked before a handshake is
    /// handed to a session.
    pub connections: Arc<ConnectionLimits>,
}

impl SrtSettings {
    /// The settings of `<srt>`. Fails for a passphrase SRT cannot use (10 to 79 bytes), which
    /// the config refuses first.
    pub fn from_config(config: &SrtConfig) -> io::Result<SrtSettings> {
        let passphrase = match &config.options.passphrase {
            None => None,
            Some(p) => Some(Passphrase::try_from(p.clone()).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("<srt><passphrase>: {e:?}"),
                )
            })?),
        };
        Ok(SrtSettings {
            port: config.port,
            latency: config.options.latency,
            passphrase,
            pbkeylen: config.options.pbkeylen,
            payload_size: config.options.payload_size,
            limits: PlayerLimits {
                queue_bytes: config.queue_bytes,
                stall_timeout: config.stall_timeout,
            },
            connections: ConnectionLimits::new(
                "srt",
                config.max_connections,
                config.max_connections_per_ip,
            ),
        })
    }

    /// Bytes of TS per SRT payload sent: `<payload_size>` rounded down to whole TS packets.
    pub fn chunk_size(&self) -> usize {
        (self.payload_size / PACKET_SIZE).max(1) * PACKET_SIZE
    }

    /// srt-protocol's settings for new connections.
    fn connection_settings(&self, local: SocketAddr) -> io::Result<ConnInitSettings> {
        let mut options = SocketOptions::default();
        options.receiver.latency = self.latency;
        options.sender.peer_latency = self.latency;
        options.sender.max_payload_size = PacketSize(self.payload_size as u64);
        options.sender.buffer_size = srt_protocol::options::ByteCount(SEND_BUFFER_BYTES);
        let valid = ListenerOptions::with(local, options).map_err(|e| {
            io::Error::new(io::ErrorKind::InvalidInput, format!("SRT options: {e:?}"))
        })?;
        Ok(ConnInitSettings::from(valid.into_value().socket))
    }
}

// ------------------------------------------------------------------------------------------
// the listener

/// Binds the SRT port and starts the supervised listener task on the current arbiter. Each
/// connection request becomes an [`SrtSession`] on the next worker of `workers`.
pub async fn listen(
    config: &SrtConfig,
    workers: Vec<Worker>,
) -> io::Result<(SocketAddr, actix_rt::task::JoinHandle<()>)> {
    let settings = Arc::new(SrtSettings::from_config(config)?);
    if workers.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "no worker arbiter for SRT sessions",
        ));
    }
    let addr = SocketAddr::from((Ipv4Addr::UNSPECIFIED, settings.port));
    settings.connection_settings(addr)?;
    let socket = bind_udp(addr)?;
    tracing::info!(
        protocol = "srt",
        port = settings.port,
        latency_ms = settings.latency.as_millis() as u64,
        encrypted = settings.passphrase.is_some(),
        payload_size = settings.chunk_size(),
        "listening (UDP)"
    );
    let task = actix_rt::spawn(supervise(Arc::new(socket), settings, workers.into()));
    Ok((addr, task))
}

/// A non-blocking UDP socket with large buffers. Clones of it (which share the non-blocking
/// flag) send for the connections; a send that would block drops the datagram, which SRT
/// retransmits.
fn bind_udp(addr: SocketAddr) -> io::Result<StdUdpSocket> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, None)?;
    // The kernel caps these at its maximum; smaller buffers are fine on a quiet host.
    let _ = socket.set_recv_buffer_size(UDP_BUFFER_BYTES);
    let _ = socket.set_send_buffer_size(UDP_BUFFER_BYTES);
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// Runs the listener; if it ever ends (a bug of ours: srt-protocol's panics are contained
/// inside it), says so loudly and starts it again on the same socket. Ends only when aborted
/// (shutdown), which drops the listener and so ends every SRT connection.
async fn supervise(socket: Arc<StdUdpSocket>, settings: Arc<SrtSettings>, workers: Arc<[Worker]>) {
    loop {
        let run = Listener::run(socket.clone(), settings.clone(), workers.clone());
        let ended = AssertUnwindSafe(run).catch_unwind().await;
        let why = match ended {
            Ok(Ok(())) => "ended".to_owned(),
            Ok(Err(e)) => format!("failed: {e}"),
            Err(panic) => format!(
                "panicked: {}",
                panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default()
            ),
        };
        tracing::error!(
            protocol = "srt",
            port = settings.port,
            why,
            "the SRT listener stopped: every SRT connection on this port was lost; restarting it"
        );
        actix_rt::time::sleep(RESTART_DELAY).await;
    }
}

/// What a caller's conclusion handshake carried as key material.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyMaterial {
    /// None: the caller does not encrypt.
    None,
    /// A key material request: the caller encrypts.
    Request,
    /// Something else where the request belongs (no libsrt sends that).
    Malformed,
}

/// A session's answer to its connection request.
struct Response {
    session: SessionId,
    response: AccessControlResponse,
    /// Where the accepted connection is handed over.
    accepted: Option<oneshot::Sender<Accepted>>,
}

/// An accepted connection, handed from the listener to its session.
struct Accepted {
    connection: Connection,
    packets: mpsc::Receiver<(Packet, SocketAddr)>,
    socket: Arc<StdUdpSocket>,
}

/// A connection request waiting for its session's decision.
pub struct Pending {
    session: SessionId,
    request: AccessControlRequest,
    key_material: KeyMaterial,
    responses: mpsc::UnboundedSender<Response>,
}

impl Pending {
    fn reject(self, reason: RejectReason) {
        let _ = self.responses.send(Response {
            session: self.session,
            response: AccessControlResponse::Rejected(reason),
            accepted: None,
        });
    }

    fn accept(self, keys: Option<KeySettings>) -> oneshot::Receiver<Accepted> {
        let (tx, rx) = oneshot::channel();
        let _ = self.responses.send(Response {
            session: self.session,
            response: AccessControlResponse::Accepted(keys),
            accepted: Some(tx),
        });
        rx
    }
}

/// What the multiplexer asked for, without its borrow.
enum Step {
    Send((Packet, SocketAddr)),
    RequestAccess(SessionId, AccessControlRequest),
    Reject(SessionId, Option<(Packet, SocketAddr)>),
    Open(SessionId, Option<(Packet, SocketAddr)>, Box<Connection>),
    Delegate(SessionId, (Packet, SocketAddr)),
    Drop(SessionId),
    Statistics,
    Wait,
    Close,
}

impl Step {
    fn of(action: MuxAction<'_>) -> Step {
        match action {
            MuxAction::SendPacket(p) => Step::Send(p),
            MuxAction::RequestAccess(id, r) => Step::RequestAccess(id, r),
            MuxAction::RejectConnection(id, p) => Step::Reject(id, p),
            MuxAction::OpenConnection(id, opened) => {
                let (p, c) = *opened;
                Step::Open(id, p, Box::new(c))
            }
            MuxAction::DelegatePacket(id, p) => Step::Delegate(id, p),
            MuxAction::DropConnection(id) => Step::Drop(id),
            MuxAction::UpdateStatistics(_) => Step::Statistics,
            MuxAction::WaitForInput => Step::Wait,
            MuxAction::Close => Step::Close,
        }
    }
}

struct Listener {
    recv: tokio::net::UdpSocket,
    send: Arc<StdUdpSocket>,
    local: SocketAddr,
    init: ConnInitSettings,
    mux: MultiplexListener,
    settings: Arc<SrtSettings>,
    workers: Arc<[Worker]>,
    next_worker: usize,
    /// Key material of each caller's last conclusion handshake, until its access request.
    key_material: HashMap<SocketAddr, KeyMaterial>,
    responses_tx: mpsc::UnboundedSender<Response>,
    responses: mpsc::UnboundedReceiver<Response>,
    /// Sessions that accepted, waiting for their connection.
    awaiting: HashMap<SessionId, oneshot::Sender<Accepted>>,
    /// Open connections: their protocol task's packet queue, by caller address.
    open: HashMap<SocketAddr, mpsc::Sender<(Packet, SocketAddr)>>,
    /// Inputs owed to the multiplexer (connections that ended).
    owed: Vec<MuxInput>,
    /// Datagrams refused before srt-protocol saw them ([`check_datagram`]).
    refused: Throttle,
    /// Datagrams srt-protocol could not parse.
    unparsable: Throttle,
    /// Panics of the handshake state machine.
    panics: Throttle,
}

/// Counts events of one kind and says when one is to be logged: the first, then at most one
/// per [`REPORT_EVERY`], each with the number of events since the last line.
#[derive(Debug, Default)]
pub struct Throttle {
    total: u64,
    since_report: u64,
    reported_at: Option<Instant>,
}

impl Throttle {
    /// Counts one event at `now`; `Some(events since the last report, this one included)`
    /// when it is to be logged.
    pub fn note(&mut self, now: Instant) -> Option<u64> {
        self.total += 1;
        self.since_report += 1;
        if self
            .reported_at
            .is_some_and(|at| now.saturating_duration_since(at) < REPORT_EVERY)
        {
            return None;
        }
        self.reported_at = Some(now);
        Some(std::mem::take(&mut self.since_report))
    }

    /// Every event counted.
    pub fn total(&self) -> u64 {
        self.total
    }
}

impl Listener {
    async fn run(
        socket: Arc<StdUdpSocket>,
        settings: Arc<SrtSettings>,
        workers: Arc<[Worker]>,
    ) -> io::Result<()> {
        let local = socket.local_addr()?;
        let recv = tokio::net::UdpSocket::from_std(socket.try_clone()?)?;
        let init = settings.connection_settings(local)?;
        // Control path, not media: each pending handshake sends exactly one decision, so the
        // queue never holds more than the handshakes the listener itself has let wait.
        let (responses_tx, responses) = mpsc::unbounded_channel();
        let mut listener = Listener {
            recv,
            send: socket,
            local,
            mux: MultiplexListener::new(Instant::now(), local, init.clone()),
            init,
            settings,
            workers,
            next_worker: 0,
            key_material: HashMap::new(),
            responses_tx,
            responses,
            awaiting: HashMap::new(),
            open: HashMap::new(),
            owed: Vec::new(),
            refused: Throttle::default(),
            unparsable: Throttle::default(),
            panics: Throttle::default(),
        };
        listener.run_loop().await;
        Ok(())
    }

    fn send_packet(&self, (packet, to): &(Packet, SocketAddr)) -> io::Result<usize> {
        let mut buf = BytesMut::with_capacity(1500);
        packet.serialize(&mut buf);
        self.send.send_to(&buf, to)
    }

    async fn run_loop(&mut self) {
        let mut buf = vec![0u8; 65536];
        let mut tick = actix_rt::time::interval(Duration::from_millis(100));
        let mut input = MuxInput::Timer;
        loop {
            let now = Instant::now();
            let mux = &mut self.mux;
            let step = match contain(move || Step::of(mux.handle_input(now, input))) {
                Ok(step) => step,
                Err(panic) => {
                    if let Some(since_last) = self.panics.note(now) {
                        tracing::error!(
                            protocol = "srt",
                            %panic,
                            since_last,
                            total = self.panics.total(),
                            "srt-protocol panicked in the SRT handshake: resetting the handshake \
                             state (handshakes in progress are lost; open connections go on)"
                        );
                    }
                    self.mux = MultiplexListener::new(now, self.local, self.init.clone());
                    self.awaiting.clear();
                    Step::Wait
                }
            };
            input = match step {
                Step::Send(p) => {
                    let to = p.1;
                    outcome(ResultOf::SendPacket(to), self.send_packet(&p).is_ok())
                }
                Step::RequestAccess(id, request) => {
                    let key_material = self.key_material.remove(&id.0).unwrap_or(KeyMaterial::None);
                    self.dispatch(Pending {
                        session: id,
                        request,
                        key_material,
                        responses: self.responses_tx.clone(),
                    });
                    MuxInput::Success(ResultOf::RequestAccess(id))
                }
                Step::Reject(id, p) => {
                    self.awaiting.remove(&id);
                    if let Some(p) = p {
                        let _ = self.send_packet(&p);
                    }
                    MuxInput::Success(ResultOf::RejectConnection(id))
                }
                Step::Open(id, mut p, mut connection) => {
                    let send = connection.settings.send_tsbpd_latency;
                    let recv = connection.settings.recv_tsbpd_latency;
                    if let Some((Packet::Control(control), _)) = p.as_mut() {
                        announce_negotiated_latency(&mut control.control_type, send, recv);
                    }
                    if let Handshake::Listener(control) = &mut connection.handshake {
                        announce_negotiated_latency(control, send, recv);
                    }
                    if let Some(p) = p {
                        let _ = self.send_packet(&p);
                    }
                    let (tx, packets) = mpsc::channel(CONNECTION_PACKETS);
                    let accepted = Accepted {
                        connection: *connection,
                        packets,
                        socket: self.send.clone(),
                    };
                    let handed = self
                        .awaiting
                        .remove(&id)
                        .is_some_and(|waiter| waiter.send(accepted).is_ok());
                    if handed {
                        self.open.insert(id.0, tx);
                    }
                    outcome(ResultOf::OpenConnection(id), handed)
                }
                Step::Delegate(id, p) => {
                    let delivered = self.deliver(id.0, p);
                    outcome(ResultOf::DelegatePacket(id), delivered)
                }
                Step::Drop(id) => {
                    self.open.remove(&id.0);
                    MuxInput::Success(ResultOf::DropConnection(id))
                }
                Step::Statistics => MuxInput::Success(ResultOf::UpdateStatistics),
                Step::Close => {
                    self.mux = MultiplexListener::new(now, self.local, self.init.clone());
                    MuxInput::Timer
                }
                Step::Wait => match self.owed.pop() {
                    Some(owed) => owed,
                    None => {
                        tokio::select! {
                            received = self.recv.recv_from(&mut buf) => match received {
                                Ok((len, from)) => match self.datagram(&buf[..len], from) {
                                    Some(packet) => MuxInput::Packet(Ok((packet, from))),
                                    None => MuxInput::Timer,
                                },
                                Err(e) => MuxInput::Packet(Err(ReceivePacketError::Io(e))),
                            },
                            Some(response) = self.responses.recv() => {
                                if let Some(waiter) = response.accepted {
                                    self.awaiting.insert(response.session, waiter);
                                }
                                let answer = (response.session, response.response);
                                MuxInput::AccessResponse(Some(answer))
                            }
                            _ = tick.tick() => {
                                self.sweep();
                                MuxInput::Timer
                            }
                        }
                    }
                },
            };
        }
    }

    /// Reads one datagram: what srt-protocol cannot take is dropped; a packet of an open
    /// connection goes straight to it; anything else is for the multiplexer (handshakes). A
    /// conclusion handshake's key material is noted.
    fn datagram(&mut self, bytes: &[u8], from: SocketAddr) -> Option<Packet> {
        if let Err(e) = check_datagram(bytes) {
            if let Some(since_last) = self.refused.note(Instant::now()) {
                tracing::warn!(
                    protocol = "srt",
                    %from,
                    why = %e,
                    since_last,
                    total = self.refused.total(),
                    "dropping SRT packets this server does not take"
                );
            }
            return None;
        }
        let ipv6 = self.local.is_ipv6();
        let packet = match contain(|| Packet::parse(&mut Cursor::new(bytes), ipv6)) {
            Ok(Ok(packet)) => packet,
            Ok(Err(e)) => {
                self.unparsable(from, &format!("{e:?}"));
                return None;
            }
            Err(panic) => {
                self.unparsable(from, &format!("srt-protocol panicked: {panic}"));
                return None;
            }
        };
        if self.open.contains_key(&from) {
            self.deliver(from, (packet, from));
            return None;
        }
        if let Packet::Control(ControlPacket {
            control_type: ControlTypes::Handshake(shake),
            ..
        }) = &packet
        {
            if let (ShakeType::Conclusion, HandshakeVsInfo::V5(info)) =
                (shake.shake_type, &shake.info)
            {
                let km = match &info.ext_km {
                    None => KeyMaterial::None,
                    Some(SrtControlPacket::KeyRefreshRequest(_)) => KeyMaterial::Request,
                    Some(_) => KeyMaterial::Malformed,
                };
                if self.key_material.len() >= MAX_HANDSHAKES {
                    self.key_material.clear();
                }
                self.key_material.insert(from, km);
            }
        }
        Some(packet)
    }

    fn unparsable(&mut self, from: SocketAddr, why: &str) {
        if let Some(since_last) = self.unparsable.note(Instant::now()) {
            tracing::warn!(
                protocol = "srt",
                %from,
                why,
                since_last,
                total = self.unparsable.total(),
                "dropping datagrams that are not SRT packets"
            );
        }
    }

    /// Queues a packet for an open connection; false when it is gone.
    fn deliver(&mut self, to: SocketAddr, packet: (Packet, SocketAddr)) -> bool {
        let Some(tx) = self.open.get(&to) else {
            return false;
        };
        match tx.try_send(packet) {
            Ok(()) | Err(mpsc::error::TrySendError::Full(_)) => true,
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.open.remove(&to);
                self.owed
                    .push(MuxInput::Failure(ResultOf::DelegatePacket(SessionId(to))));
                false
            }
        }
    }

    /// Forgets ended connections and sessions that stopped waiting.
    fn sweep(&mut self) {
        let ended: Vec<SocketAddr> = self
            .open
            .iter()
            .filter(|(_, tx)| tx.is_closed())
            .map(|(addr, _)| *addr)
            .collect();
        for addr in ended {
            self.open.remove(&addr);
            // The multiplexer still holds the session as open: let it drop it.
            self.owed
                .push(MuxInput::Failure(ResultOf::DelegatePacket(SessionId(addr))));
        }
        self.awaiting.retain(|_, waiter| !waiter.is_closed());
    }

    fn dispatch(&mut self, pending: Pending) {
        // Past the limits the caller is refused here, before any session or hook: 1503
        // (SRT_REJX_DOWN, "service unavailable") as libsrt callers report it.
        let admission = match self.settings.connections.admit(pending.request.remote.ip()) {
            Ok(admission) => admission,
            Err(_) => return pending.reject(RejectReason::Server(ServerRejectReason::Down)),
        };
        let worker = &self.workers[self.next_worker % self.workers.len()];
        self.next_worker = self.next_worker.wrapping_add(1);
        let peer = pending.request.remote;
        let local = SocketAddr::new(local_ip_toward(peer), self.settings.port);
        let shared = worker.shared.clone();
        let settings = self.settings.clone();
        let sent = worker.arbiter.spawn_fn(move || {
            SrtSession::start(pending, peer, local, shared, settings, admission);
        });
        if !sent {
            tracing::warn!(
                protocol = "srt",
                %peer,
                "worker arbiter is gone; connection request dropped"
            );
        }
    }
}

fn outcome(of: ResultOf, ok: bool) -> MuxInput {
    if ok {
        MuxInput::Success(of)
    } else {
        MuxInput::Failure(of)
    }
}

/// The local address a packet to `peer` leaves from, which for the usual symmetric routing is
/// the address the caller reached (the listener is bound to the wildcard address, and UDP does
/// not tell which of the host's addresses a datagram was sent to). Found by connecting a
/// throwaway UDP socket, which sends nothing.
fn local_ip_toward(peer: SocketAddr) -> IpAddr {
    let any: SocketAddr = if peer.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    StdUdpSocket::bind(any)
        .and_then(|s| {
            s.connect(peer)?;
            s.local_addr()
        })
        .map(|a| a.ip())
        .unwrap_or(any.ip())
}

/// The key settings to accept a caller with, or why it must be refused. `key_material` is what
/// its conclusion handshake carried, `caller` the key size it announced (0 when it left the
/// choice to the listener, as FFmpeg does by default).
///
/// This is what keeps srt-protocol 0.4.4's handshake away from its `unimplemented!()`
/// branches: it is never told to accept a caller that sent key material without keys
/// ("expected no secrets") or with other keys than a key material request ("Expected kmreq"),
/// and never with another key size than the caller's ("Key size mismatch").
///
/// - no `<passphrase>`, caller does not encrypt: accept without keys;
/// - no `<passphrase>`, caller encrypts: refuse with 11 (`SRT_REJ_UNSECURE`);
/// - `<passphrase>`, caller does not encrypt: refuse with 11;
/// - `<passphrase>`, caller encrypts: accept with the passphrase and the caller's key length,
///   whatever `<pbkeylen>` says (a wrong passphrase is then refused by SRT with 10,
///   `SRT_REJ_BADSECRET`).
pub fn key_plan(
    passphrase: Option<&Passphrase>,
    key_material: KeyMaterial,
    caller: KeySize,
) -> Result<Option<KeySettings>, (RejectReason, &'static str)> {
    let unsecure = RejectReason::Core(CoreRejectReason::Unsecure);
    match (passphrase, key_material) {
        (_, KeyMaterial::Malformed) => Err((
            unsecure,
            "the caller sent key material that is not a key material request",
        )),
        (None, KeyMaterial::None) => Ok(None),
        (None, KeyMaterial::Request) => Err((
            unsecure,
            "the caller encrypts (it set a passphrase) but this server has no <passphrase>",
        )),
        (Some(_), KeyMaterial::None) => Err((
            unsecure,
            "this server requires encryption (<passphrase>) but the caller set no passphrase",
        )),
        (Some(passphrase), KeyMaterial::Request) => Ok(Some(KeySettings {
            key_size: caller,
            passphrase: passphrase.clone(),
        })),
    }
}

/// The streamid to parse: FFmpeg before 6.0 sends the `streamid` URL option without
/// URL-decoding it, so `srt://host:port?streamid=%23!::r=live/cam,m=publish` — the way to put
/// a `#` in a URL — arrives as `%23!::...`. Such a streamid (one starting with `%23`) is
/// decoded once; any other is parsed as it came.
pub fn url_decoded_streamid(raw: &str) -> std::borrow::Cow<'_, str> {
    if !raw.get(..3).is_some_and(|p| p.eq_ignore_ascii_case("%23")) {
        return std::borrow::Cow::Borrowed(raw);
    }
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    match String::from_utf8(out) {
        Ok(decoded) => std::borrow::Cow::Owned(decoded),
        Err(_) => std::borrow::Cow::Borrowed(raw),
    }
}

/// The reject code a libsrt caller reports for `reason` (`srt_getrejectreason`): SRT carries
/// it in the handshake offset by 1000.
pub fn libsrt_code(reason: RejectReason) -> i32 {
    i32::from(reason) - 1000
}

fn deny_reason(decision: &Decision) -> RejectReason {
    match decision {
        Decision::Deny(DenyReason::Status(401)) => {
            RejectReason::Server(ServerRejectReason::Unauthorized)
        }
        _ => RejectReason::Server(ServerRejectReason::Forbidden),
    }
}

// ------------------------------------------------------------------------------------------
// the protocol task of one connection

/// A payload to send and the media time (DTS, µs) of the frame it carries, if any.
type Timed = (Option<i64>, Bytes);

/// The session's side of a connection's protocol task.
struct Link {
    /// Payloads to send, each with the media time (DTS, µs) of what it carries, if any.
    data: mpsc::Sender<Timed>,
    /// Payloads received, in order, at their TSBPD release time.
    received: mpsc::Receiver<(Instant, Bytes)>,
}

/// Starts the protocol task of an accepted connection on the current arbiter.
fn spawn_connection(accepted: Accepted, span: tracing::Span) -> Link {
    let (data_tx, data_rx) = mpsc::channel(CONNECTION_DATA);
    let (received_tx, received_rx) = mpsc::channel(CONNECTION_DATA);
    actix_rt::spawn(drive(accepted, data_rx, received_tx, span));
    Link {
        data: data_tx,
        received: received_rx,
    }
}

enum ConnInput {
    Timer,
    Packet(Option<Box<(Packet, SocketAddr)>>),
    Data(Option<Timed>),
}

/// Drives one `DuplexConnection` until it closes: the peer's packets in, our payloads out,
/// its timers. Every srt-protocol call is contained; a panic ends this connection only.
///
/// srt-protocol sends only from its timer handling (`check_timers`: the SND event sends new
/// data and the retransmissions a NAK asked for, the ACK and NAK events their reports), so
/// each turn runs the timers first and then sends everything they queued at once; a packet
/// queued by the timers must not wait for the next input or timer, which could be tens of
/// milliseconds away (a retransmission that waits is one the player's TSBPD may drop).
/// Payloads to send are not taken before the caller has shown it completed the handshake
/// ([`FirstDataHold`]), and each is stamped at the pace of its media time ([`MediaClock`]).
async fn drive(
    accepted: Accepted,
    mut data: mpsc::Receiver<Timed>,
    received: mpsc::Sender<(Instant, Bytes)>,
    span: tracing::Span,
) {
    let Accepted {
        connection,
        mut packets,
        socket,
    } = accepted;
    let (local_id, remote_id) = (
        connection.settings.local_sockid,
        connection.settings.remote_sockid,
    );
    let mut connection = match contain(move || DuplexConnection::new(connection)) {
        Ok(c) => c,
        Err(panic) => return connection_panicked(&span, &panic),
    };
    let mut buf = BytesMut::with_capacity(1500);
    let (mut packets_open, mut data_open) = (true, true);
    let mut hold = FirstDataHold::new(Instant::now(), FIRST_DATA_HOLD);
    let mut held_since = Some(Instant::now());
    let mut clock = MediaClock::new(MAX_LEAD);
    loop {
        let now = Instant::now();
        let conn = &mut connection;
        let step = contain(move || {
            if !conn.is_open() {
                return None;
            }
            // Timers first: what they queue is sent below, in this turn.
            let wake = conn.check_timers(now);
            let mut out = Vec::new();
            while let Some(packet) = conn.next_packet(now) {
                out.push(packet);
            }
            let mut released = Vec::new();
            while let Some(payload) = conn.next_data(now) {
                released.push(payload);
            }
            Some((out, released, wake))
        });
        let (out, released, wake) = match step {
            Ok(Some(step)) => step,
            Ok(None) => break,
            Err(panic) => return connection_panicked(&span, &panic),
        };
        for (packet, to) in out {
            buf.clear();
            packet.serialize(&mut buf);
            // Would block: the datagram is dropped and SRT retransmits it.
            let _ = socket.send_to(&buf, to);
        }
        for payload in released {
            // The session may be gone; the connection still closes in order.
            let _ = received.send(payload).await;
        }
        let sending = hold.released(Instant::now());
        if let Some(since) = held_since.filter(|_| sending) {
            held_since = None;
            let waited = since.elapsed();
            let _s = span.clone().entered();
            tracing::debug!(
                waited_ms = waited.as_millis() as u64,
                by_caller = waited < FIRST_DATA_HOLD,
                "the caller is connected: sending"
            );
        }
        let wake = match hold.deadline() {
            Some(until) => wake.min(until),
            None => wake,
        };
        let mut input = tokio::select! {
            _ = actix_rt::time::sleep_until(wake.into()) => ConnInput::Timer,
            packet = packets.recv(), if packets_open => ConnInput::Packet(packet.map(Box::new)),
            payload = data.recv(), if data_open && sending => ConnInput::Data(payload),
        };
        match &mut input {
            ConnInput::Packet(None) => packets_open = false,
            ConnInput::Packet(Some(packet)) => {
                hold.on_packet(Instant::now(), is_handshake(&packet.0));
                readdress_repeated_conclusion(&mut packet.0, local_id, remote_id);
            }
            ConnInput::Data(None) => data_open = false,
            _ => {}
        }
        let now = Instant::now();
        let conn = &mut connection;
        let clock = &mut clock;
        let handled = contain(move || match input {
            ConnInput::Timer => {}
            ConnInput::Packet(Some(packet)) => conn.handle_packet_input(now, Ok(*packet)),
            ConnInput::Packet(None) => conn.handle_packet_input(
                now,
                Err(ReceivePacketError::Io(io::Error::new(
                    io::ErrorKind::NotConnected,
                    "the SRT listener stopped",
                ))),
            ),
            ConnInput::Data(payload) => conn.handle_data_input(
                now,
                payload.map(|(dts, bytes)| (hold.stamp(clock.stamp(now, dts)), bytes)),
            ),
        });
        if let Err(panic) = handled {
            return connection_panicked(&span, &panic);
        }
    }
    let _s = span.entered();
    tracing::debug!("SRT connection closed");
}

/// A caller whose conclusion response was lost repeats its conclusion request, addressed (as
/// every request before the connection exists) to socket id 0. srt-protocol's connection
/// answers a handshake with the conclusion response again, but drops any packet not addressed
/// to its own socket id first ("invalid socket id"), so the caller would never get the answer
/// and would repeat its request until it gives up. Such a request, from this connection's
/// caller (its socket id), is addressed to the connection, so that srt-protocol answers it.
/// True when the packet was changed.
fn readdress_repeated_conclusion(packet: &mut Packet, local: SocketId, remote: SocketId) -> bool {
    match packet {
        Packet::Control(ControlPacket {
            dest_sockid,
            control_type: ControlTypes::Handshake(shake),
            ..
        }) if *dest_sockid == SocketId(0)
            && shake.shake_type == ShakeType::Conclusion
            && shake.socket_id == remote =>
        {
            *dest_sockid = local;
            true
        }
        _ => false,
    }
}

/// srt-protocol 0.4.4's listener answers a conclusion with its own configured latencies in the
/// HSRSP extension, while the connection uses the larger of its own and the caller's
/// (`send_tsbpd_latency`, `recv_tsbpd_latency`), as SRT agrees them. A libsrt caller takes the
/// HSRSP's values as the agreement: a player that asked for 400 ms of a server configured with
/// 120 ms played with 120 ms of TSBPD latency (its retransmissions then came too late on a
/// lossy path), while the server's sender kept 400 ms. The response — and the copy the
/// connection answers a repeated conclusion with — is given the latencies the connection uses:
/// the caller's receive latency is the server's send latency and the other way round. True
/// when it changed anything.
fn announce_negotiated_latency(control: &mut ControlTypes, send: Duration, recv: Duration) -> bool {
    let ControlTypes::Handshake(HandshakeControlInfo {
        info: HandshakeVsInfo::V5(info),
        ..
    }) = control
    else {
        return false;
    };
    let Some(SrtControlPacket::HandshakeResponse(hs)) = &mut info.ext_hs else {
        return false;
    };
    let changed = hs.send_latency != send || hs.recv_latency != recv;
    hs.send_latency = send;
    hs.recv_latency = recv;
    changed
}

/// Whether `packet` is a handshake (a caller that may not have the conclusion response yet).
fn is_handshake(packet: &Packet) -> bool {
    matches!(
        packet,
        Packet::Control(ControlPacket {
            control_type: ControlTypes::Handshake(_),
            ..
        })
    )
}

fn connection_panicked(span: &tracing::Span, panic: &str) {
    let _s = span.clone().entered();
    tracing::error!(%panic, "srt-protocol panicked in this connection; closing it only");
}

// ------------------------------------------------------------------------------------------
// the session

/// The send side of an accepted connection: a task on the session's arbiter that hands queued
/// payloads to the connection with the media time of what they carry (the connection stamps
/// them at that pace, [`MediaClock`], so the player's SRT receive buffer releases them one
/// latency later at the pace of the source). Bursts (the GOP a player starts with) are sent at
/// [`PACE_PAYLOADS`] payloads per
/// [`PACE_WINDOW`] (about 130 Mbit/s), so a large GOP does not hit the network and the UDP
/// buffers at line rate; live streams below that rate are never held back. Dropping it lets the
/// queue drain, waits about one latency so the last packets can still be retransmitted, and
/// closes the connection.
struct SrtOut {
    tx: mpsc::Sender<Timed>,
    pending: Rc<Cell<usize>>,
}

/// Why a payload could not be queued.
enum QueueError {
    Full,
    Closed,
}

impl SrtOut {
    fn spawn(sink: mpsc::Sender<Timed>, linger: Duration, span: tracing::Span) -> SrtOut {
        let (tx, mut rx) = mpsc::channel::<Timed>(QUEUE_BUFFERS);
        let pending = Rc::new(Cell::new(0usize));
        let counter = pending.clone();
        actix_rt::spawn(async move {
            let mut sent = false;
            let (mut window, mut in_window) = (Instant::now(), 0usize);
            while let Some((dts, payload)) = rx.recv().await {
                if window.elapsed() >= PACE_WINDOW {
                    (window, in_window) = (Instant::now(), 0);
                } else if in_window >= PACE_PAYLOADS {
                    actix_rt::time::sleep_until((window + PACE_WINDOW).into()).await;
                    (window, in_window) = (Instant::now(), 0);
                }
                in_window += 1;
                let len = payload.len();
                let result = sink.send((dts, payload)).await;
                counter.set(counter.get().saturating_sub(len));
                if let Err(e) = result {
                    let _s = span.clone().entered();
                    tracing::debug!(error = %e, "the connection is gone; closing");
                    rx.close();
                    return;
                }
                sent = true;
            }
            if sent {
                actix_rt::time::sleep(linger).await;
            }
            // Dropping the sender closes the data stream: SRT shuts the connection down.
            drop(sink);
        });
        SrtOut { tx, pending }
    }

    fn send(&self, dts: Option<i64>, payload: Bytes) -> Result<(), QueueError> {
        let len = payload.len();
        match self.tx.try_send((dts, payload)) {
            Ok(()) => {
                self.pending.set(self.pending.get() + len);
                Ok(())
            }
            Err(mpsc::error::TrySendError::Full(_)) => Err(QueueError::Full),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(QueueError::Closed),
        }
    }

    fn pending_bytes(&self) -> usize {
        self.pending.get()
    }

    fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

/// One SRT connection, from its connection request to its end.
pub struct SrtSession {
    /// Its place within `<srt>`'s connection limits, given back when the session ends.
    _admission: Admission,
    clientid: ClientId,
    peer: SocketAddr,
    /// The server address the caller reached (for the hooks' `url`).
    local: SocketAddr,
    shared: SessionContext,
    settings: Arc<SrtSettings>,
    span: tracing::Span,
    /// The pending handshake, until it is accepted or rejected.
    request: Option<Pending>,
    mode: Option<Mode>,
    /// The allowed publish or play, which owes one `on_done`.
    active: Option<Active>,
    /// The accepted connection's send side.
    out: Option<SrtOut>,
    // publisher
    demuxer: TsDemuxer,
    video: Option<Codec>,
    audio: Option<AacConfig>,
    /// The channels of the publisher's Opus track (its audio when `audio` is `None`).
    opus: Option<u8>,
    last_input: Instant,
    dropped_ingest: u64,
    /// The ignored stream types last logged.
    reported_ignored: Vec<u8>,
    // player
    muxer: TsMuxer,
    backlog: Backlog,
    reported_unmuxable: bool,
}

impl SrtSession {
    /// Starts the session actor of a connection request on the current arbiter.
    pub fn start(
        request: Pending,
        peer: SocketAddr,
        local: SocketAddr,
        shared: SessionContext,
        settings: Arc<SrtSettings>,
        admission: Admission,
    ) -> Addr<Self> {
        let clientid = next_client_id();
        let span = tracing::info_span!(
            "session",
            clientid,
            peer = %peer,
            protocol = "srt",
            app = Empty,
            name = Empty
        );
        let backlog = Backlog::new(settings.limits);
        SrtSession {
            _admission: admission,
            clientid,
            peer,
            local,
            shared,
            settings,
            span,
            request: Some(request),
            mode: None,
            active: None,
            out: None,
            demuxer: TsDemuxer::new(),
            video: None,
            audio: None,
            opus: None,
            last_input: Instant::now(),
            dropped_ingest: 0,
            reported_ignored: Vec::new(),
            muxer: TsMuxer::new(),
            backlog,
            reported_unmuxable: false,
        }
        .start()
    }

    fn info(&self, app: &str, name: &str, url: &str) -> SessionInfo {
        SessionInfo {
            protocol: Protocol::Srt,
            clientid: self.clientid,
            addr: self.peer.ip(),
            app: app.to_owned(),
            url: url.to_owned(),
            name: name.to_owned(),
            tcurl: String::new(),
        }
    }

    fn role(&self) -> Option<Role> {
        self.active.as_ref().map(|a| a.role)
    }

    /// Parses the streamid, checks the caller's encryption, and asks the hooks.
    fn decide(&mut self, ctx: &mut Context<Self>) {
        let Some(request) = self.request.as_ref() else {
            ctx.stop();
            return;
        };
        let raw = request
            .request
            .stream_id
            .as_ref()
            .map(|s| s.to_string())
            .unwrap_or_default();
        let caller_key_size = request.request.key_size;
        let key_material = request.key_material;
        let _s = self.span.clone().entered();
        tracing::info!(
            streamid = %raw,
            key_size = caller_key_size.as_raw(),
            ?key_material,
            "connection requested"
        );
        let parsed = match contain(|| StreamId::parse(&url_decoded_streamid(&raw))) {
            Ok(Ok(parsed)) => parsed,
            Ok(Err(e)) => {
                let why = format!("unusable streamid {raw:?}: {e}");
                return self.reject(
                    ctx,
                    RejectReason::Server(ServerRejectReason::BadRequest),
                    &why,
                );
            }
            Err(panic) => {
                tracing::error!(%panic, "streamid parser panicked; refusing this connection only");
                return self.reject(
                    ctx,
                    RejectReason::Server(ServerRejectReason::BadRequest),
                    "unreadable streamid",
                );
            }
        };
        let keys = match key_plan(
            self.settings.passphrase.as_ref(),
            key_material,
            caller_key_size,
        ) {
            Ok(keys) => keys,
            Err((reason, why)) => return self.reject(ctx, reason, why),
        };
        if keys
            .as_ref()
            .is_some_and(|k| k.key_size.as_raw() != self.settings.pbkeylen)
        {
            tracing::debug!(
                caller = caller_key_size.as_raw(),
                pbkeylen = self.settings.pbkeylen,
                "accepting the caller's key length"
            );
        }
        self.span.record("app", parsed.app.as_str());
        self.span.record("name", parsed.name.as_str());
        drop(_s);
        let url = srt_url(
            &self.local.to_string(),
            &url_decoded_streamid(&raw),
            &parsed.query,
        );
        let connect_info = self.info(&parsed.app, "", &url);
        let info = self.info(&parsed.app, &parsed.name, &url);
        let key = StreamKey::new(parsed.app, parsed.name);
        self.mode = Some(parsed.mode);
        match parsed.mode {
            Mode::Publish => self.ask_publish(ctx, connect_info, info, key, keys),
            Mode::Play => self.ask_play(ctx, connect_info, info, key, keys),
        }
    }

    fn ask_publish(
        &mut self,
        ctx: &mut Context<Self>,
        connect_info: SessionInfo,
        info: SessionInfo,
        key: StreamKey,
        keys: Option<KeySettings>,
    ) {
        let shared = self.shared.clone();
        let kick = ctx.address().recipient::<Kick>();
        let arbiter = Arbiter::current();
        let clientid = self.clientid;
        let hook_info = info.clone();
        let asked = async move {
            let connect = ask(shared.notify.send(notify::Connect { info: connect_info })).await;
            if !connect.is_allow() {
                return Err(("connect", connect));
            }
            let publish = ask(shared.notify.send(notify::Publish { info: hook_info })).await;
            if !publish.is_allow() {
                return Err(("publish", publish));
            }
            Ok(shared
                .registry
                .send(ClaimPublish {
                    key,
                    clientid,
                    kick,
                    arbiter,
                })
                .await)
        };
        ctx.wait(asked.into_actor(self).map(move |result, act, ctx| {
            let claim = match result {
                Ok(claim) => claim,
                Err((call, decision)) => return act.denied(ctx, call, &decision),
            };
            act.allowed("publish");
            // The hook allowed this publish: from here on exactly one on_done is owed.
            act.active = Some(Active::begin(&act.shared, Role::Publisher, info, None));
            match claim {
                Ok(Ok(stream)) => {
                    if let Some(active) = act.active.as_mut() {
                        active.stream = Some(stream);
                    }
                    act.accept(ctx, keys, None);
                }
                Ok(Err(PublishRefused::AlreadyPublishing(key))) => act.reject(
                    ctx,
                    RejectReason::Server(ServerRejectReason::Conflict),
                    &format!("stream {key} is already being published by another client"),
                ),
                Err(_) => act.reject(
                    ctx,
                    RejectReason::Server(ServerRejectReason::Down),
                    "stream registry unavailable",
                ),
            }
        }));
    }

    fn ask_play(
        &mut self,
        ctx: &mut Context<Self>,
        connect_info: SessionInfo,
        info: SessionInfo,
        key: StreamKey,
        keys: Option<KeySettings>,
    ) {
        let shared = self.shared.clone();
        let (media, ended) = (ctx.address().recipient(), ctx.address().recipient());
        let play_info = info.clone();
        let asked = async move {
            let connect = ask(shared.notify.send(notify::Connect { info: connect_info })).await;
            if !connect.is_allow() {
                return ("connect", PlayOutcome::Denied(connect));
            }
            (
                "play",
                request_play(shared, play_info, key, Attach::Own { media, ended }).await,
            )
        };
        ctx.wait(
            asked
                .into_actor(self)
                .map(move |(call, outcome), act, ctx| match outcome {
                    PlayOutcome::Denied(decision) => act.denied(ctx, call, &decision),
                    PlayOutcome::NotFound => {
                        act.allowed("play");
                        act.active = Some(Active::begin(&act.shared, Role::Player, info, None));
                        act.reject(
                            ctx,
                            RejectReason::Server(ServerRejectReason::Notfound),
                            "no such live stream",
                        );
                    }
                    PlayOutcome::Playing(stream, snapshot, _) => {
                        act.allowed("play");
                        act.active =
                            Some(Active::begin(&act.shared, Role::Player, info, Some(stream)));
                        act.accept(ctx, keys, Some(snapshot));
                    }
                }),
        );
    }

    fn allowed(&self, call: &str) {
        let _s = self.span.clone().entered();
        tracing::info!(call, "allowed");
    }

    fn denied(&mut self, ctx: &mut Context<Self>, call: &str, decision: &Decision) {
        let _s = self.span.clone().entered();
        tracing::info!(call, ?decision, "refused by the hook");
        drop(_s);
        self.reject(ctx, deny_reason(decision), &format!("{call} refused"));
    }

    /// Rejects the pending handshake with `reason` and ends the session (an allowed play or
    /// publish still gets its `on_done` when the actor stops).
    fn reject(&mut self, ctx: &mut Context<Self>, reason: RejectReason, why: &str) {
        let _s = self.span.clone().entered();
        tracing::info!(reject = libsrt_code(reason), %reason, why, "handshake rejected");
        if let Some(request) = self.request.take() {
            request.reject(reason);
        }
        ctx.stop();
    }

    /// Accepts the pending handshake; a player then gets `snapshot` first.
    fn accept(
        &mut self,
        ctx: &mut Context<Self>,
        keys: Option<KeySettings>,
        snapshot: Option<Snapshot>,
    ) {
        let Some(request) = self.request.take() else {
            ctx.stop();
            return;
        };
        let accepted = actix_rt::time::timeout(ACCEPT_DEADLINE, request.accept(keys));
        ctx.wait(
            accepted
                .into_actor(self)
                .map(move |result, act, ctx| match result {
                    Ok(Ok(accepted)) => act.connected(ctx, accepted, snapshot),
                    Ok(Err(_)) => {
                        let _s = act.span.clone().entered();
                        tracing::info!(
                            "handshake not completed: SRT refused it (a wrong passphrase?) \
                             or the caller went away"
                        );
                        ctx.stop();
                    }
                    Err(_) => {
                        let _s = act.span.clone().entered();
                        tracing::info!("handshake not completed in time");
                        ctx.stop();
                    }
                }),
        );
    }

    fn connected(
        &mut self,
        ctx: &mut Context<Self>,
        accepted: Accepted,
        snapshot: Option<Snapshot>,
    ) {
        let settings = accepted.connection.settings.clone();
        let linger = (settings.send_tsbpd_latency + LINGER_MARGIN).min(MAX_LINGER);
        let _s = self.span.clone().entered();
        tracing::info!(
            recv_latency_ms = settings.recv_tsbpd_latency.as_millis() as u64,
            send_latency_ms = settings.send_tsbpd_latency.as_millis() as u64,
            encrypted = settings.cipher.is_some(),
            "connected"
        );
        drop(_s);
        let link = spawn_connection(accepted, self.span.clone());
        ctx.add_stream(futures_util::stream::unfold(
            link.received,
            |mut rx| async move { rx.recv().await.map(|item| (item, rx)) },
        ));
        self.out = Some(SrtOut::spawn(link.data, linger, self.span.clone()));
        self.last_input = Instant::now();
        if let Some(snapshot) = snapshot {
            self.replay(ctx, snapshot);
        }
    }

    // ---- publisher ----

    fn publishing_stream(&self) -> Option<Addr<StreamActor>> {
        self.active
            .as_ref()
            .filter(|a| a.role == Role::Publisher)
            .and_then(|a| a.stream.clone())
    }

    fn ingest(&mut self, ctx: &mut Context<Self>, payload: &[u8]) {
        let demuxer = &mut self.demuxer;
        let frames = contain(|| {
            demuxer.push(payload);
            let mut frames = Vec::new();
            while let Some(frame) = demuxer.poll_frame() {
                frames.push(frame);
            }
            frames
        });
        let frames = match frames {
            Ok(frames) => frames,
            Err(panic) => {
                let _s = self.span.clone().entered();
                tracing::error!(
                    %panic,
                    "TS demuxer panicked on this caller's input; closing this connection only"
                );
                ctx.stop();
                return;
            }
        };
        if self.demuxer.ignored_stream_types() != self.reported_ignored {
            self.reported_ignored = self.demuxer.ignored_stream_types().to_vec();
            if !self.reported_ignored.is_empty() {
                let _s = self.span.clone().entered();
                tracing::warn!(
                    stream_types = ?self.reported_ignored,
                    "the MPEG-TS program has streams this server cannot carry; dropping them"
                );
            }
        }
        let Some(stream) = self.publishing_stream() else {
            return;
        };
        for frame in frames {
            if frame.kind == FrameKind::Config {
                self.note_config(&frame, &stream);
            }
            if stream.try_send(PublishFrame { frame }).is_err() {
                self.dropped_ingest += 1;
                if self.dropped_ingest.is_power_of_two() {
                    let _s = self.span.clone().entered();
                    tracing::warn!(
                        dropped = self.dropped_ingest,
                        "stream busy; dropping frames"
                    );
                }
            }
        }
    }

    /// Sends the stream a metadata object (MPEG-TS has none) when the tracks change, so FLV
    /// players see the codecs in `onMetaData` as they would from an RTMP publisher.
    fn note_config(&mut self, frame: &MediaFrame, stream: &Addr<StreamActor>) {
        let changed = match frame.track {
            Track::Video => self.video.replace(frame.codec) != Some(frame.codec),
            Track::Audio if frame.codec == Codec::Opus => {
                let channels = crate::protocol::codec::OpusHead::parse(&frame.payload)
                    .ok()
                    .map(|h| h.channels);
                let changed = channels.is_some() && channels != self.opus;
                if changed {
                    (self.opus, self.audio) = (channels, None);
                }
                changed
            }
            Track::Audio => {
                let config = AacConfig::parse(&frame.payload).ok();
                let changed = config.is_some() && config != self.audio;
                if changed {
                    (self.audio, self.opus) = (config, None);
                }
                changed
            }
        };
        if !changed {
            return;
        }
        let mut entries = Vec::new();
        // FLV players get H.265 as Enhanced RTMP, whose onMetaData names it by FourCC.
        if let Some(video) = self.video {
            entries.push((
                "videocodecid".to_owned(),
                MetaValue::Number(crate::protocol::flv::metadata_codec_id(video)),
            ));
        }
        if let Some(audio) = &self.audio {
            entries.push(("audiocodecid".to_owned(), MetaValue::Number(10.0)));
            entries.push((
                "audiosamplerate".to_owned(),
                MetaValue::Number(f64::from(audio.sample_rate)),
            ));
            entries.push(("stereo".to_owned(), MetaValue::Bool(audio.channels == 2)));
        }
        // Opus is named by FourCC, as FFmpeg's Enhanced RTMP onMetaData names it.
        if let Some(channels) = self.opus {
            let id = crate::protocol::flv::metadata_codec_id(Codec::Opus);
            entries.push(("audiocodecid".to_owned(), MetaValue::Number(id)));
            entries.push(("audiosamplerate".to_owned(), MetaValue::Number(48_000.0)));
            entries.push(("stereo".to_owned(), MetaValue::Bool(channels == 2)));
        }
        entries.push((
            "encoder".to_owned(),
            MetaValue::Text("streamgate (from SRT/MPEG-TS)".to_owned()),
        ));
        stream.do_send(PublishMetadata {
            metadata: Metadata { entries },
        });
    }

    // ---- player ----

    /// Writes what a joining player needs first: codec configs and the cached GOP, sent as one
    /// burst but stamped at the pace of its media, so the player's SRT buffer releases it one
    /// latency later over the GOP's own duration, as a live source would, and live frames follow
    /// at the same pace.
    fn replay(&mut self, ctx: &mut Context<Self>, snapshot: Snapshot) {
        let codec_of = |track| {
            let config = snapshot.configs.iter().find(|f| f.track == track);
            config.map(|f| f.codec)
        };
        let (video, audio) = (codec_of(Track::Video), codec_of(Track::Audio));
        for codec in [video, audio].into_iter().flatten() {
            if crate::protocol::ts::stream_type(codec).is_none() && !self.reported_unmuxable {
                self.reported_unmuxable = true;
                let _s = self.span.clone().entered();
                tracing::warn!(
                    ?codec,
                    "MPEG-TS cannot carry this track; playing without it"
                );
            }
        }
        self.muxer = TsMuxer::with_tracks(video, audio);
        for frame in &snapshot.configs {
            self.write_frame(ctx, frame, None);
        }
        // Paced at its media time (over its own duration, up to MAX_LEAD): what is older than
        // that goes without a media time, released at once.
        let newest = snapshot.gop.iter().map(|f| f.dts).max().unwrap_or(0);
        let oldest_paced = newest.saturating_sub(MAX_LEAD.as_micros() as i64);
        for frame in &snapshot.gop {
            let dts = Some(frame.dts).filter(|dts| *dts >= oldest_paced);
            self.write_frame(ctx, frame, dts);
        }
    }

    /// Muxes one frame and queues its TS packets as SRT payloads of whole packets, with `dts`
    /// as their media time.
    fn write_frame(&mut self, ctx: &mut Context<Self>, frame: &MediaFrame, dts: Option<i64>) {
        let muxer = &mut self.muxer;
        let mut out = Vec::new();
        let result = contain(|| {
            let result = muxer.mux(frame, &mut out);
            muxer.flush(&mut out);
            result
        });
        match result {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                if !self.reported_unmuxable {
                    self.reported_unmuxable = true;
                    let _s = self.span.clone().entered();
                    tracing::warn!(
                        error = %e,
                        "dropping media this server cannot carry in MPEG-TS"
                    );
                }
                return;
            }
            Err(panic) => {
                let _s = self.span.clone().entered();
                tracing::error!(%panic, "TS muxer panicked; closing this connection only");
                ctx.stop();
                return;
            }
        }
        let chunk = self.settings.chunk_size();
        if chunk == CHUNK_SIZE {
            // The muxer's own chunks: whole 1316-byte payloads and one shorter last one.
            for payload in out {
                self.send(ctx, dts, payload);
            }
            return;
        }
        let mut all = BytesMut::with_capacity(out.iter().map(Bytes::len).sum());
        for piece in &out {
            all.extend_from_slice(piece);
        }
        while !all.is_empty() {
            let payload = all.split_to(chunk.min(all.len())).freeze();
            self.send(ctx, dts, payload);
        }
    }

    fn send(&mut self, ctx: &mut Context<Self>, dts: Option<i64>, payload: Bytes) {
        let Some(out) = &self.out else {
            return;
        };
        match out.send(dts, payload) {
            Ok(()) => {}
            Err(QueueError::Full) => self.backlog.overflowed(),
            Err(QueueError::Closed) => ctx.stop(),
        }
    }

    /// Ends the allowed play or publish: leaves the stream and sends its one `on_done`.
    fn finish(&mut self, why: &str) {
        if let Some(active) = self.active.take() {
            let _s = self.span.clone().entered();
            active.finish(&self.shared, why);
        }
    }
}

impl Actor for SrtSession {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(SESSION_MAILBOX);
        ctx.run_interval(Duration::from_secs(1), |act, ctx| {
            let Some(out) = &act.out else {
                return;
            };
            let _s = act.span.clone().entered();
            if out.is_closed() {
                tracing::info!("connection lost");
                ctx.stop();
                return;
            }
            match act.role() {
                Some(Role::Publisher) if act.last_input.elapsed() > PUBLISH_IDLE => {
                    tracing::info!("publisher sent nothing for too long; closing");
                    ctx.stop();
                }
                Some(Role::Player) if act.backlog.stalled(out.pending_bytes(), Instant::now()) => {
                    tracing::warn!(pending = out.pending_bytes(), "player stalled; closing");
                    ctx.stop();
                }
                _ => {}
            }
        });
        self.decide(ctx);
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        if let Some(request) = self.request.take() {
            // Ended before a decision (a panic, a shutdown): answer the caller anyway.
            request.reject(RejectReason::Server(ServerRejectReason::Down));
        }
        // Dropping the send side drains it, lingers one latency and closes the connection.
        self.out = None;
        self.finish("connection closed");
        let _s = self.span.clone().entered();
        tracing::info!("connection stopped");
    }
}

impl StreamHandler<(Instant, Bytes)> for SrtSession {
    fn handle(&mut self, (_, payload): (Instant, Bytes), ctx: &mut Self::Context) {
        self.last_input = Instant::now();
        if self.role() == Some(Role::Publisher) {
            self.ingest(ctx, &payload);
        }
    }

    fn finished(&mut self, ctx: &mut Self::Context) {
        let _s = self.span.clone().entered();
        tracing::info!("the connection closed (by the peer, or SRT timed it out)");
        ctx.stop();
    }
}

impl Handler<Deliver> for SrtSession {
    type Result = ();

    fn handle(&mut self, msg: Deliver, ctx: &mut Self::Context) {
        if self.role() != Some(Role::Player) {
            return;
        }
        let Some(pending) = self.out.as_ref().map(SrtOut::pending_bytes) else {
            return;
        };
        // MPEG-TS carries no metadata object.
        if let Delivery::Frame(frame) = msg.item {
            let _s = self.span.clone().entered();
            if !self.backlog.admit(&frame, pending) {
                return;
            }
            drop(_s);
            let dts = (frame.kind == FrameKind::Media).then_some(frame.dts);
            self.write_frame(ctx, &frame, dts);
        }
    }
}

impl Handler<StreamEnded> for SrtSession {
    type Result = ();

    fn handle(&mut self, msg: StreamEnded, ctx: &mut Self::Context) {
        if self.role() == Some(Role::Player) {
            let _s = self.span.clone().entered();
            tracing::info!(stream = %msg.key, "stream ended under the player");
            drop(_s);
            self.finish("stream ended");
            ctx.stop();
        }
    }
}

impl Handler<Kick> for SrtSession {
    type Result = ();

    fn handle(&mut self, msg: Kick, ctx: &mut Self::Context) {
        let _s = self.span.clone().entered();
        tracing::info!(reason = msg.reason, "closing the publisher");
        ctx.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handshake(shake_type: ShakeType, dest: u32, from: u32) -> Packet {
        use srt_protocol::options::PacketCount;
        use srt_protocol::packet::{HandshakeControlInfo, SeqNumber, SocketType, TimeStamp};
        Packet::Control(ControlPacket {
            timestamp: TimeStamp::from_micros(0),
            dest_sockid: SocketId(dest),
            control_type: ControlTypes::Handshake(HandshakeControlInfo {
                init_seq_num: SeqNumber::new_truncate(1),
                max_packet_size: PacketSize(1500),
                max_flow_size: PacketCount(8192),
                shake_type,
                socket_id: SocketId(from),
                syn_cookie: 7,
                peer_addr: Ipv4Addr::LOCALHOST.into(),
                info: HandshakeVsInfo::V4(SocketType::Datagram),
            }),
        })
    }

    #[test]
    fn a_repeated_conclusion_of_the_caller_is_addressed_to_its_connection() {
        let (local, remote) = (SocketId(11), SocketId(22));
        let mut repeated = handshake(ShakeType::Conclusion, 0, 22);
        assert!(readdress_repeated_conclusion(&mut repeated, local, remote));
        assert_eq!(repeated, handshake(ShakeType::Conclusion, 11, 22));
        // Already addressed, another caller's, or not a conclusion: left as they are.
        for (shake_type, dest, from) in [
            (ShakeType::Conclusion, 11, 22),
            (ShakeType::Conclusion, 0, 33),
            (ShakeType::Induction, 0, 22),
        ] {
            let mut packet = handshake(shake_type, dest, from);
            assert!(!readdress_repeated_conclusion(&mut packet, local, remote));
            assert_eq!(packet, handshake(shake_type, dest, from));
        }
    }

    #[test]
    fn the_conclusion_response_announces_the_latencies_the_connection_uses() {
        use srt_protocol::options::SrtVersion;
        use srt_protocol::packet::{HsV5Info, SrtHandshake, SrtShakeFlags};
        let ms = Duration::from_millis;
        let response = |send, recv| {
            let Packet::Control(mut control) = handshake(ShakeType::Conclusion, 22, 11) else {
                unreachable!("a control packet");
            };
            if let ControlTypes::Handshake(shake) = &mut control.control_type {
                shake.info = HandshakeVsInfo::V5(HsV5Info {
                    key_size: KeySize::Unspecified,
                    ext_hs: Some(SrtControlPacket::HandshakeResponse(SrtHandshake {
                        version: SrtVersion::CURRENT,
                        flags: SrtShakeFlags::SUPPORTED,
                        send_latency: send,
                        recv_latency: recv,
                    })),
                    ext_km: None,
                    ext_group: None,
                    sid: None,
                });
            }
            control.control_type
        };
        // Configured 120 ms, the caller asked for 400 ms: the connection uses 400 both ways.
        let mut answer = response(ms(120), ms(120));
        assert!(announce_negotiated_latency(&mut answer, ms(400), ms(400)));
        assert_eq!(answer, response(ms(400), ms(400)));
        assert!(!announce_negotiated_latency(&mut answer, ms(400), ms(400)));
        // Anything but a response with HSRSP is left alone.
        let Packet::Control(request) = handshake(ShakeType::Conclusion, 0, 22) else {
            unreachable!("a control packet");
        };
        let mut other = request.control_type.clone();
        assert!(!announce_negotiated_latency(&mut other, ms(400), ms(400)));
        assert_eq!(other, request.control_type);
    }

    fn passphrase() -> Passphrase {
        Passphrase::try_from("0123456789abc".to_owned()).expect("valid passphrase")
    }

    #[test]
    fn key_plan_never_accepts_a_mismatch() {
        use KeyMaterial::{Malformed, None as Plain, Request};
        let sizes = [
            KeySize::Unspecified,
            KeySize::AES128,
            KeySize::AES192,
            KeySize::AES256,
        ];
        for size in sizes {
            // Without a passphrase only a plain caller is accepted, and without keys.
            assert_eq!(key_plan(None, Plain, size), Ok(None));
            let (reason, _) = key_plan(None, Request, size).expect_err("encrypting caller");
            assert_eq!(libsrt_code(reason), 11, "SRT_REJ_UNSECURE");
            // With one, only an encrypting caller, always with its own key size.
            let keys = key_plan(Some(&passphrase()), Request, size)
                .expect("accepted")
                .expect("with keys");
            assert_eq!(keys.key_size, size, "always the caller's key size");
            let (reason, _) = key_plan(Some(&passphrase()), Plain, size).expect_err("plain caller");
            assert_eq!(reason, RejectReason::Core(CoreRejectReason::Unsecure));
            for passphrase in [None, Some(passphrase())] {
                assert!(key_plan(passphrase.as_ref(), Malformed, size).is_err());
            }
        }
    }

    #[test]
    fn a_url_encoded_streamid_is_decoded_once() {
        assert_eq!(
            url_decoded_streamid("%23!::r=live/cam3,m=publish"),
            "#!::r=live/cam3,m=publish"
        );
        assert_eq!(
            url_decoded_streamid("%23%21%3A%3Ar%3Dlive%2Fcam3%2Cm%3Drequest"),
            "#!::r=live/cam3,m=request"
        );
        // Anything else is parsed as sent (the #!:: parser decodes values itself).
        assert_eq!(
            url_decoded_streamid("#!::r=live/a%2Cb,m=publish"),
            "#!::r=live/a%2Cb,m=publish"
        );
        assert_eq!(url_decoded_streamid("live/cam%41"), "live/cam%41");
        assert_eq!(url_decoded_streamid("%2"), "%2");
        assert_eq!(
            url_decoded_streamid("%23%ff"),
            "%23%ff",
            "invalid UTF-8 stays raw"
        );
    }

    #[test]
    fn reject_codes_as_libsrt_reports_them() {
        let code = |d: &Decision| libsrt_code(deny_reason(d));
        assert_eq!(code(&Decision::Deny(DenyReason::Status(401))), 1401);
        assert_eq!(code(&Decision::Deny(DenyReason::Status(403))), 1403);
        assert_eq!(code(&Decision::Deny(DenyReason::Status(500))), 1403);
        assert_eq!(code(&Decision::Deny(DenyReason::Timeout)), 1403);
        assert_eq!(
            libsrt_code(RejectReason::Server(ServerRejectReason::Notfound)),
            1404
        );
    }

    #[test]
    fn payloads_are_whole_ts_packets() {
        let mut config = crate::config::Config::default().srt;
        for (payload_size, chunk) in [(1316, 1316), (1456, 1316), (188, 188), (1000, 940)] {
            config.options.payload_size = payload_size;
            let settings = SrtSettings::from_config(&config).expect("valid");
            assert_eq!(settings.chunk_size(), chunk);
        }
    }

    #[test]
    fn throttle_reports_once_per_interval_with_counts() {
        let mut t = Throttle::default();
        let start = Instant::now();
        assert_eq!(t.note(start), Some(1), "the first is reported");
        for i in 1..4000u32 {
            // 4000 events within one interval: none reported.
            let at = start + REPORT_EVERY * i / 4001;
            assert_eq!(t.note(at), None);
        }
        assert_eq!(t.note(start + REPORT_EVERY), Some(4000));
        assert_eq!(t.note(start + REPORT_EVERY), None);
        assert_eq!(t.total(), 4002);
    }
}
