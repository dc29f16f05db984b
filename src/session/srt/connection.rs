//! The protocol task of one accepted SRT connection, on its session's arbiter: srt-protocol's
//! `DuplexConnection` (ARQ, TSBPD, keepalive and idle timeout, crypto) driven with our own IO,
//! sending through a clone of the listener's socket. A panic there ends that connection only.

use std::cell::Cell;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use srt_protocol::connection::DuplexConnection;
use srt_protocol::packet::{ControlPacket, ControlTypes, Packet, ReceivePacketError};
use tokio::sync::mpsc;

use super::handover::Accepted;
use crate::protocol::contain;
use crate::protocol::srt::handshake::{is_handshake, readdress_repeated_conclusion};
use crate::protocol::srt::{FirstDataHold, MediaClock};
use crate::session::core::Counter;

/// Payloads queued between a session and its protocol task, each way.
const CONNECTION_DATA: usize = 256;
/// The longest a new connection's first data waits for the caller to show it completed the
/// handshake ([`FirstDataHold`]): well past what a jittery path reorders by. A libsrt player
/// shows it only with its first keepalive, 1 s after its last handshake; a caller whose
/// response was lost asks again when the data arrives, and what it dropped is retransmitted.
const FIRST_DATA_HOLD: Duration = Duration::from_millis(150);
/// How far ahead of the moment it is sent a player's media may be stamped ([`MediaClock`]): a
/// joining player's GOP is released over its own duration, up to this much; an older part of
/// it is released at once.
pub const MAX_LEAD: Duration = Duration::from_secs(3);

/// A payload to send and the media time (DTS, µs) of the frame it carries, if any.
pub type Timed = (Option<i64>, Bytes);

/// The session's side of a connection's protocol task.
pub struct Link {
    /// Payloads to send, each with the media time (DTS, µs) of what it carries, if any.
    pub data: mpsc::Sender<Timed>,
    /// Payloads received, in order, at their TSBPD release time.
    pub received: mpsc::Receiver<(Instant, Bytes)>,
    /// Set when the peer sent SRT's shutdown: it ended the connection, not a timeout.
    pub goodbye: Rc<Cell<bool>>,
}

/// The IPv4 and UDP headers srt-protocol's `wire_size` adds to an SRT packet's own size.
const IP_UDP_HEADERS: usize = 28;

/// Starts the protocol task of an accepted connection on the current arbiter. It counts the
/// whole SRT packets (16-byte header included; data and control, retransmissions too) it
/// receives into `bytes_in` and sends into `bytes_out`, without the IP and UDP headers.
pub fn spawn_connection(
    accepted: Accepted,
    span: tracing::Span,
    bytes_in: Counter,
    bytes_out: Counter,
) -> Link {
    let (data_tx, data_rx) = mpsc::channel(CONNECTION_DATA);
    let (received_tx, received_rx) = mpsc::channel(CONNECTION_DATA);
    let goodbye = Rc::new(Cell::new(false));
    let counters = (bytes_in, bytes_out, goodbye.clone());
    actix_rt::spawn(drive(accepted, data_rx, received_tx, span, counters));
    Link {
        data: data_tx,
        received: received_rx,
        goodbye,
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
    (bytes_in, bytes_out, goodbye): (Counter, Counter, Rc<Cell<bool>>),
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
            if socket.send_to(&buf, to).is_ok() {
                bytes_out.add(buf.len() as u64);
            }
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
                let size = packet.0.wire_size().saturating_sub(IP_UDP_HEADERS);
                bytes_in.add(size as u64);
                if let Packet::Control(ControlPacket {
                    control_type: ControlTypes::Shutdown,
                    ..
                }) = &packet.0
                {
                    goodbye.set(true);
                }
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

fn connection_panicked(span: &tracing::Span, panic: &str) {
    let _s = span.clone().entered();
    tracing::error!(%panic, "srt-protocol panicked in this connection; closing it only");
}
