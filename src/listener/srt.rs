//! The SRT listener: one UDP socket per server, and the task that owns it.
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
//! sends key material before anything is accepted ([`KeyMaterial`]). Dropped datagrams and
//! contained panics are logged at most once per [`REPORT_EVERY`] each, with counts.
//!
//! The listener task (on the arbiter the server is started on) parses datagrams, routes those
//! of open connections straight to their protocol task, and runs srt-protocol's
//! `MultiplexListener` for handshakes. A connection request becomes an [`SrtSession`] on the
//! next worker arbiter (round-robin: one UDP socket has no per-worker accept), which decides
//! it ([`Pending`]). A panic in the handshake state machine resets it (handshakes in progress
//! are lost, open connections go on); the task itself is supervised and started again if it
//! ever ends.

use std::collections::HashMap;
use std::io::{self, Cursor};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket as StdUdpSocket};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};
use streamgate_actors::metrics::metrics;

use bytes::BytesMut;
use futures_util::FutureExt;
use srt_protocol::connection::Connection;
use srt_protocol::listener::{
    AccessControlRequest, Action as MuxAction, Input as MuxInput, MultiplexListener, ResultOf,
    SessionId,
};
use srt_protocol::packet::{
    ControlPacket, ControlTypes, HandshakeVsInfo, Packet, ReceivePacketError, RejectReason,
    ServerRejectReason, ShakeType, SrtControlPacket,
};
use srt_protocol::protocol::handshake::Handshake;
use srt_protocol::settings::ConnInitSettings;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::sync::{mpsc, oneshot, watch};

use super::Worker;
use crate::protocol::contain;
use crate::protocol::srt::check_datagram;
use crate::protocol::srt::handshake::{announce_negotiated_latency, KeyMaterial};
use crate::session::srt::{Accepted, Pending, Response, SrtSession, SrtSettings};

/// Wait before starting the listener again after it ended.
pub const RESTART_DELAY: Duration = Duration::from_secs(1);
/// The UDP socket buffers asked for (the kernel may grant less).
const UDP_BUFFER_BYTES: usize = 4 << 20;
/// Datagrams queued for one connection's protocol task; more are dropped (SRT recovers them).
const CONNECTION_PACKETS: usize = 1024;
/// Conclusion handshakes remembered (by caller address) until their access request.
const MAX_HANDSHAKES: usize = 4096;
/// Decisions of sessions on their connection requests waiting for the listener, at most.
const RESPONSES: usize = 4096;
/// Datagrams dropped by the listener (refused, unparsable) and contained panics of the
/// handshake state machine are logged at most once per this interval each, with counts: one
/// client sending them at line rate must not write the log at line rate.
pub const REPORT_EVERY: Duration = Duration::from_secs(10);

/// An SRT port bound, its options checked against it, not yet served.
pub struct Bound {
    socket: StdUdpSocket,
    addr: SocketAddr,
}

/// Binds the SRT port on `address` (see [`bind_udp`]) and checks `settings` against it
/// (srt-protocol refuses options with port 0, so they are checked with the port bound).
pub fn bind(address: Option<IpAddr>, port: u16, settings: &SrtSettings) -> io::Result<Bound> {
    let socket = bind_udp(address, port)?;
    let addr = socket.local_addr()?;
    settings.connection_settings(addr)?;
    Ok(Bound { socket, addr })
}

/// What a serving listener is told: the settings for new callers, or to close (`None`).
type Control = Option<Arc<SrtSettings>>;

/// A serving SRT listener: its task and how to reconfigure or close it.
pub struct Serving {
    /// Where it listens.
    pub addr: SocketAddr,
    control: watch::Sender<Control>,
    task: actix_rt::task::JoinHandle<()>,
}

impl Serving {
    /// New callers get `settings` (a reload); connections open keep theirs.
    pub fn update(&self, settings: Arc<SrtSettings>) {
        self.control.send_replace(Some(settings));
    }

    /// Takes no new callers; the task ends, and the socket is closed, once the last of its
    /// connections has ended. Handshakes in progress are dropped (the caller tries again).
    pub fn close(&self) {
        self.control.send_replace(None);
    }

    /// Whether it has closed and its last connection ended.
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Ends it now, with every connection it carries (shutdown).
    pub fn abort(&self) {
        self.task.abort();
    }
}

/// Starts the supervised listener task on `bound`'s socket on the current arbiter. Each
/// connection request becomes an [`SrtSession`] on the next worker of `workers`.
pub fn serve(
    bound: Bound,
    settings: Arc<SrtSettings>,
    workers: Vec<Worker>,
) -> io::Result<Serving> {
    if workers.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "no worker arbiter for SRT sessions",
        ));
    }
    tracing::info!(
        protocol = "srt",
        port = bound.addr.port(),
        address = %bound.addr.ip(),
        latency_ms = settings.latency.as_millis() as u64,
        encrypted = settings.passphrase.is_some(),
        payload_size = settings.chunk_size(),
        "listening (UDP)"
    );
    let (control, commands) = watch::channel(Some(settings));
    let task = actix_rt::spawn(supervise(Arc::new(bound.socket), commands, workers.into()));
    Ok(Serving {
        addr: bound.addr,
        control,
        task,
    })
}

/// A non-blocking UDP socket with large buffers on `<address>` (by default dual-stack `::`,
/// see [`super::bind`]). Clones of it (which share the non-blocking flag) send for the
/// connections; a send that would block drops the datagram, which SRT retransmits.
///
/// On a dual-stack socket an IPv4 caller's address is IPv4-mapped (`::ffff:a.b.c.d`): the
/// listener and srt-protocol key connections and send by that address as the socket gives
/// it; only the session (the hooks' `addr`, the limits) knows the caller by its canonical one.
fn bind_udp(address: Option<IpAddr>, port: u16) -> io::Result<StdUdpSocket> {
    let socket = super::bind::bind(address, port, socket2::Type::DGRAM, "srt", |socket| {
        // The kernel caps these at its maximum; smaller buffers are fine on a quiet host.
        let _ = socket.set_recv_buffer_size(UDP_BUFFER_BYTES);
        let _ = socket.set_send_buffer_size(UDP_BUFFER_BYTES);
        socket.set_nonblocking(true)
    })?;
    Ok(socket.into())
}

/// The listener's receive side of the one socket every SRT connection also sends through,
/// registered with the reactor for reading only. Registered for writing too (as a
/// `tokio::net::UdpSocket` is), the socket's readiness to write woke the listener's thread
/// each time the kernel let go of a datagram a connection sent (on loopback, at once): a
/// wake-up per packet sent, nobody waiting to write. Read-only, the kernel's write-space
/// notices do not match the registration and wake nobody.
struct Receiver(AsyncFd<StdUdpSocket>);

impl Receiver {
    /// `socket` must be non-blocking.
    fn new(socket: StdUdpSocket) -> io::Result<Self> {
        // `AsyncFd::register_with_interest`, the form tokio keeps, is `unsafe` because it
        // takes any descriptor, which the caller must keep open while registered; this crate
        // has no `unsafe`. The deprecated safe form is sound here: the `AsyncFd` owns the
        // socket, and deregisters it before closing it.
        #[allow(deprecated)]
        let fd = AsyncFd::with_interest(socket, Interest::READABLE)?;
        Ok(Self(fd))
    }

    async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        loop {
            let mut ready = self.0.readable().await?;
            // Would block: the readiness is cleared and the next wait is for a new datagram.
            if let Ok(received) = ready.try_io(|socket| socket.get_ref().recv_from(buf)) {
                return received;
            }
        }
    }
}

/// Runs the listener; if it ever ends (a bug of ours: srt-protocol's panics are contained
/// inside it), says so loudly and starts it again on the same socket. Ends when closed and
/// its last connection has ended, or when aborted (shutdown), which drops the listener and so
/// ends every SRT connection.
async fn supervise(
    socket: Arc<StdUdpSocket>,
    control: watch::Receiver<Control>,
    workers: Arc<[Worker]>,
) {
    let port = socket.local_addr().map(|a| a.port()).unwrap_or_default();
    loop {
        let run = Listener::run(socket.clone(), control.clone(), workers.clone());
        let ended = AssertUnwindSafe(run).catch_unwind().await;
        if matches!(ended, Ok(Ok(()))) && control.borrow().is_none() {
            tracing::info!(
                protocol = "srt",
                port,
                "closed listener's last connection ended"
            );
            return;
        }
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
            port,
            why,
            "the SRT listener stopped: every SRT connection on this port was lost; restarting it"
        );
        actix_rt::time::sleep(RESTART_DELAY).await;
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
    recv: Receiver,
    send: Arc<StdUdpSocket>,
    local: SocketAddr,
    init: ConnInitSettings,
    mux: MultiplexListener,
    settings: Arc<SrtSettings>,
    /// New settings, or the word to close.
    control: watch::Receiver<Control>,
    /// Closed: no new callers; ends when `open` is empty.
    closed: bool,
    workers: Arc<[Worker]>,
    next_worker: usize,
    /// Key material of each caller's last conclusion handshake, until its access request.
    key_material: HashMap<SocketAddr, KeyMaterial>,
    responses_tx: mpsc::Sender<Response>,
    responses: mpsc::Receiver<Response>,
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
        mut control: watch::Receiver<Control>,
        workers: Arc<[Worker]>,
    ) -> io::Result<()> {
        // Closed before (re)starting: nothing to serve.
        let Some(settings) = control.borrow_and_update().clone() else {
            return Ok(());
        };
        let local = socket.local_addr()?;
        let recv = Receiver::new(socket.try_clone()?)?;
        let init = settings.connection_settings(local)?;
        // Control path, not media: each pending handshake sends exactly one decision, and the
        // listener takes them as they come. Bounded all the same: past RESPONSES waiting, a
        // decision is lost and its caller's handshake times out (the caller may try again).
        let (responses_tx, responses) = mpsc::channel(RESPONSES);
        let mut listener = Listener {
            recv,
            send: socket,
            local,
            mux: MultiplexListener::new(Instant::now(), local, init.clone()),
            init,
            settings,
            control,
            closed: false,
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
            if self.closed && self.open.is_empty() {
                return;
            }
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
                            changed = self.control.changed(), if !self.closed => {
                                match changed {
                                    Ok(()) => self.reconfigure(Instant::now()),
                                    // The server is gone; shutdown aborts this task next.
                                    Err(_) => self.closed = true,
                                }
                                MuxInput::Timer
                            }
                        }
                    }
                },
            };
        }
    }

    /// Takes the settings a reload sent, or closes. New options (latency, passphrase, payload
    /// size) need a new handshake state machine: handshakes in progress are lost then (their
    /// callers try again), open connections go on with what they agreed.
    fn reconfigure(&mut self, now: Instant) {
        let Some(settings) = self.control.borrow_and_update().clone() else {
            self.closed = true;
            self.awaiting.clear();
            self.key_material.clear();
            return;
        };
        match settings.connection_settings(self.local) {
            Ok(init) => {
                if settings.latency != self.settings.latency
                    || settings.passphrase != self.settings.passphrase
                    || settings.pbkeylen != self.settings.pbkeylen
                    || settings.payload_size != self.settings.payload_size
                {
                    self.mux = MultiplexListener::new(now, self.local, init.clone());
                    self.init = init;
                    self.awaiting.clear();
                }
                self.settings = settings;
            }
            Err(e) => tracing::error!(
                protocol = "srt",
                error = %e,
                "new SRT settings refused; the listener keeps its own"
            ),
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
        if self.closed {
            // A closed listener takes no new callers.
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
        let peer = super::bind::canonical(pending.request.remote);
        let admission = match self.settings.connections.admit(peer.ip()) {
            Ok(admission) => admission,
            Err(_) => {
                metrics().connection("srt", false);
                return pending.refuse(RejectReason::Server(ServerRejectReason::Down));
            }
        };
        metrics().connection("srt", true);
        let worker = &self.workers[self.next_worker % self.workers.len()];
        self.next_worker = self.next_worker.wrapping_add(1);
        let local = SocketAddr::new(local_ip_toward(peer), self.local.port());
        let context = worker.context.clone();
        let settings = self.settings.clone();
        let sent = worker.arbiter.spawn_fn(move || {
            SrtSession::start(pending, peer, local, context, settings, admission);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[actix_rt::test]
    async fn the_receiver_takes_every_datagram_as_it_comes() {
        let socket = StdUdpSocket::bind("127.0.0.1:0").expect("bind");
        socket.set_nonblocking(true).expect("non-blocking");
        let at = socket.local_addr().expect("address");
        let send = socket.try_clone().expect("clone");
        let recv = Receiver::new(socket).expect("registered");
        let peer = StdUdpSocket::bind("127.0.0.1:0").expect("bind");
        let mut buf = [0u8; 64];
        for round in 0..3u8 {
            // Two queued at once, then one after the receiver found the socket empty.
            peer.send_to(&[round, 1], at).expect("send");
            peer.send_to(&[round, 2], at).expect("send");
            for n in 1..=2 {
                let (len, from) = recv.recv_from(&mut buf).await.expect("received");
                assert_eq!(
                    (&buf[..len], from),
                    (&[round, n][..], peer.local_addr().expect("peer"))
                );
            }
            let later = async {
                actix_rt::time::sleep(Duration::from_millis(20)).await;
                peer.send_to(&[round, 3], at).expect("send");
            };
            let (received, ()) = tokio::join!(recv.recv_from(&mut buf), later);
            assert_eq!(&buf[..received.expect("received").0], &[round, 3]);
            // A datagram sent through the same socket between rounds: the receiver goes on
            // taking what arrives, in order.
            send.send_to(&[9], peer.local_addr().expect("peer"))
                .expect("send");
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
