//! SRT players: `srt://host:port?streamid=...`.
//!
//! Each player is an SRT caller on its own connected UDP socket, driven by srt-protocol's
//! sans-IO state machines: its caller handshake (`Connect`, induction then conclusion, resent
//! every [`HANDSHAKE_RESEND`] until answered), then its `DuplexConnection` through
//! `handle_input`, which asks for every packet to send (ACKs, ACK2s, NAKs, keepalives), every
//! payload to release (at its TSBPD time, one latency after it was sent) and how long to wait.
//! No encryption, [`LATENCY`] both ways, the URL's `streamid`. Released payloads are MPEG-TS,
//! read by the server's own [`TsDemuxer`] into frames.
//!
//! Connect and play start are both the end of the handshake (SRT has no separate play
//! command: an accepted handshake is a playing connection). A frame's arrival is the release
//! of the payload that completed it, so it includes the receive latency, as a real player's.
//!
//! srt-protocol 0.4 panics (`todo!`, `unimplemented!`) on some control packets a peer can send;
//! those are dropped before they reach it (a player neither encrypts nor needs them), and every
//! call into it still runs under [`contain`], so a panic ends that player with an error rather
//! than the run.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use srt_protocol::connection::{Action, Connection, DuplexConnection, Input};
use srt_protocol::options::{CallerOptions, SocketOptions};
use srt_protocol::packet::{
    ControlPacket, ControlTypes, Packet, RejectReason, SeqNumber, TimeStamp,
};
use srt_protocol::protocol::pending_connection::connect::Connect;
use srt_protocol::protocol::pending_connection::{ConnectionReject, ConnectionResult};
use srt_protocol::settings::ConnInitSettings;
use streamgate::protocol::contain;
use streamgate::protocol::srt::handshake::libsrt_code;
use streamgate::protocol::ts::TsDemuxer;
use streamgate_actors::media::{FrameKind, Track};
use tokio::net::UdpSocket;
use tokio::time::Sleep;

use crate::{PlayerStats, Res, Target};

/// Receive latency asked for, and the latency offered to the server as its send latency.
const LATENCY: Duration = Duration::from_millis(120);
/// How often an unanswered handshake packet is sent again (libsrt's interval).
const HANDSHAKE_RESEND: Duration = Duration::from_millis(250);
/// Room for one datagram: SRT packets are at most 1500 bytes (the MSS); larger datagrams are not
/// SRT and are cut short, then fail to parse.
const DATAGRAM: usize = 2048;
/// The UDP receive buffer asked for (the kernel may grant less): the GOP a player starts with
/// arrives as a burst.
const UDP_RECV_BUFFER: usize = 2 << 20;

/// One player.
pub async fn session(
    t: &Target,
    st: &mut PlayerStats,
    timer: &mut Pin<&mut Sleep>,
    start_timeout: f64,
) -> Res<()> {
    let sock = udp_socket(t.addr)?;
    let remote = sock.peer_addr().map_err(|e| format!("socket: {e}"))?;
    let mut buf = vec![0u8; DATAGRAM];
    let mut out = BytesMut::with_capacity(DATAGRAM);
    let connection = handshake(t, &sock, remote, &mut buf, &mut out, timer, start_timeout).await?;
    let now = Instant::now();
    st.tcp_connect = Some(now - st.t0);
    st.started_playing(now);
    let conn = contain(move || DuplexConnection::new(connection))
        .map_err(|p| format!("srt-protocol panicked: {p}"))?;
    let mut player = Player {
        sock: &sock,
        remote,
        conn,
        out,
        demux: TsDemuxer::new(),
        last_received: now,
        shutdown: false,
    };
    player.play(&mut buf, st).await
}

/// A UDP socket connected to the server: only its datagrams come in, and an ICMP port
/// unreachable (nothing listening, server gone) surfaces as an error on the next call.
fn udp_socket(to: SocketAddr) -> Res<UdpSocket> {
    use socket2::{Domain, Socket, Type};
    let any: SocketAddr = if to.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = Socket::new(Domain::for_address(to), Type::DGRAM, None)
        .map_err(|e| format!("socket: {e}"))?;
    // A small grant only means more retransmissions on a busy host.
    let _ = socket.set_recv_buffer_size(UDP_RECV_BUFFER);
    socket
        .set_nonblocking(true)
        .and_then(|()| socket.bind(&any.into()))
        .and_then(|()| socket.connect(&to.into()))
        .map_err(|e| format!("socket: {e}"))?;
    UdpSocket::from_std(socket.into()).map_err(|e| format!("socket: {e}"))
}

/// Sends one packet. A datagram the socket cannot take now is dropped, as on a congested link:
/// SRT sends handshakes again and retransmits what the peer reports lost.
fn send(sock: &UdpSocket, packet: &Packet, out: &mut BytesMut) -> Res<()> {
    out.clear();
    packet.serialize(out);
    send_datagram(sock, out, "connect")
}

/// Sends one serialized packet, as [`send`] does; `what` heads an error.
fn send_datagram(sock: &UdpSocket, datagram: &[u8], what: &str) -> Res<()> {
    match sock.try_send(datagram) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
        Err(e) => Err(io_error(what, &e)),
    }
}

/// A socket error as the player's error; a refused datagram means an ICMP port unreachable came
/// back, which is worth saying in words.
fn io_error(what: &str, e: &io::Error) -> String {
    if e.kind() == io::ErrorKind::ConnectionRefused {
        format!("{what}: the server's UDP port is unreachable (nothing listening): {e}")
    } else {
        format!("{what}: {e}")
    }
}

/// One datagram as an SRT packet; `None` for anything else.
fn parse(datagram: &[u8], ipv6: bool) -> Option<Packet> {
    match contain(|| Packet::parse(&mut &datagram[..], ipv6)) {
        Ok(Ok(packet)) => Some(packet),
        _ => None,
    }
}

/// What the handshake waited for.
enum HandshakeEvent {
    Tick,
    Datagram(usize),
}

/// A player's handshake settings (no encryption, [`LATENCY`] both ways) and its streamid.
fn caller_settings(
    remote: SocketAddr,
    streamid: Option<&str>,
) -> Res<(ConnInitSettings, Option<String>)> {
    let mut options = SocketOptions::default();
    options.receiver.latency = LATENCY;
    options.sender.peer_latency = LATENCY;
    let options = CallerOptions::with(remote, streamid, options)
        .map_err(|e| format!("SRT options: {e}"))?
        .into_value();
    let mss = options.socket.session.max_segment_size;
    let mut init = ConnInitSettings::from(options.socket);
    // The handshake's size field is the MSS (a whole UDP datagram, 1500), from which libsrt
    // works out the largest payload it sends to this peer (MSS - 44). srt-protocol puts its
    // own sender's payload size (1316) there, and a libsrt server (SRS's 1.5.x) then refuses
    // to send its 1316-byte MPEG-TS messages. This player sends no data.
    init.max_packet_size = mss;
    Ok((init, options.stream_id.map(|s| s.to_string())))
}

/// Runs the caller handshake until the server accepts (the connection) or refuses (an error
/// with its reject code), or until the play-start timeout.
async fn handshake(
    t: &Target,
    sock: &UdpSocket,
    remote: SocketAddr,
    buf: &mut [u8],
    out: &mut BytesMut,
    timer: &mut Pin<&mut Sleep>,
    start_timeout: f64,
) -> Res<Connection> {
    let (init, streamid) = caller_settings(remote, t.streamid.as_deref())?;
    let local_ip = sock.local_addr().map_err(|e| format!("socket: {e}"))?.ip();
    // Any starting sequence number will do; a per-process random hash keeps players apart.
    let seq = {
        use std::hash::BuildHasher;
        let bits = std::collections::hash_map::RandomState::new().hash_one(init.local_sockid.0);
        SeqNumber::new_truncate(bits as u32)
    };
    let mut connect = Connect::new(remote, local_ip, init, streamid, seq);
    let mut resend = tokio::time::interval(HANDSHAKE_RESEND);
    resend.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let ipv6 = remote.is_ipv6();
    loop {
        let event = tokio::select! {
            _ = resend.tick() => HandshakeEvent::Tick,
            r = sock.recv(buf) => HandshakeEvent::Datagram(r.map_err(|e| io_error("connect", &e))?),
            _ = timer.as_mut() => return Err(format!("no play start within {start_timeout} s")),
        };
        let now = Instant::now();
        let result = match event {
            HandshakeEvent::Tick => contain(|| connect.handle_tick(now)),
            HandshakeEvent::Datagram(n) => match parse(&buf[..n], ipv6) {
                Some(packet) => contain(|| connect.handle_packet(Ok((packet, remote)), now)),
                None => continue,
            },
        }
        .map_err(|p| format!("srt-protocol panicked in the handshake: {p}"))?;
        match result {
            ConnectionResult::SendPacket((packet, _)) => send(sock, &packet, out)?,
            ConnectionResult::Connected(packet, connection) => {
                if let Some((packet, _)) = packet {
                    send(sock, &packet, out)?;
                }
                return Ok(connection);
            }
            ConnectionResult::Reject(packet, reject) => {
                if let Some((packet, _)) = packet {
                    let _ = send(sock, &packet, out);
                }
                let reason = match reject {
                    ConnectionReject::Rejected(r) | ConnectionReject::Rejecting(r) => r,
                };
                return Err(refused(reason));
            }
            ConnectionResult::Failure(e) => return Err(format!("connect: {e}")),
            // A stray or repeated packet; the next tick sends the handshake again.
            ConnectionResult::NotHandled(_)
            | ConnectionResult::NoAction
            | ConnectionResult::RequestAccess(_) => {}
        }
    }
}

/// The error of a refused handshake: the reject code as libsrt callers report it (1404 for a
/// stream that is not live) and what SRT says it means.
fn refused(reason: RejectReason) -> String {
    format!(
        "refused by the server: SRT reject code {} ({reason:?}: {reason})",
        libsrt_code(reason)
    )
}

/// What `DuplexConnection` asked for, without its borrow.
enum Step {
    /// Send the datagram serialized into the player's buffer.
    Send,
    Release(Bytes),
    Statistics,
    Wait(Duration),
    Close,
}

impl Step {
    /// `action` as a step; a packet to send is serialized into `out`.
    fn of(action: Action<'_>, out: &mut BytesMut) -> Step {
        match action {
            Action::SendPacket((packet, _)) => {
                out.clear();
                packet.serialize(out);
                Step::Send
            }
            Action::ReleaseData((_, payload)) => Step::Release(payload),
            Action::UpdateStatistics(_) => Step::Statistics,
            Action::WaitForData(wait) => Step::Wait(wait),
            Action::Close => Step::Close,
        }
    }
}

/// An accepted connection. Dropped while still open (the run ended), it tells the server with
/// a Shutdown packet, as a closing libsrt caller does, so the server ends the session at once
/// rather than after its idle timeout.
struct Player<'a> {
    sock: &'a UdpSocket,
    remote: SocketAddr,
    conn: DuplexConnection,
    out: BytesMut,
    demux: TsDemuxer,
    /// When the last packet of this connection came in.
    last_received: Instant,
    /// The server sent a Shutdown.
    shutdown: bool,
}

impl Player<'_> {
    /// Plays until the connection closes or fails.
    async fn play(&mut self, buf: &mut [u8], st: &mut PlayerStats) -> Res<()> {
        let ipv6 = self.remote.is_ipv6();
        let wake = tokio::time::sleep(Duration::ZERO);
        tokio::pin!(wake);
        let mut input = Input::Timer;
        loop {
            let now = Instant::now();
            let (conn, out) = (&mut self.conn, &mut self.out);
            let step = contain(move || Step::of(conn.handle_input(now, input), out))
                .map_err(|p| format!("srt-protocol panicked: {p}"))?;
            input = match step {
                Step::Send => {
                    send_datagram(self.sock, &self.out, "connection lost")?;
                    Input::PacketSent
                }
                Step::Release(payload) => {
                    self.demux.push(&payload);
                    self.count_frames(st, now);
                    Input::DataReleased
                }
                Step::Statistics => Input::StatisticsUpdated,
                Step::Close => return Err(self.close_reason(now)),
                Step::Wait(wait) => match self.receive(buf, &mut wake, now + wait).await? {
                    Some(n) => match parse(&buf[..n], ipv6) {
                        Some(packet) => self.admit(packet)?,
                        None => Input::Timer,
                    },
                    None => Input::Timer,
                },
            };
        }
    }

    /// The next datagram, or `None` when `until` comes first. A datagram already queued is
    /// taken without arming the timer.
    async fn receive(
        &self,
        buf: &mut [u8],
        wake: &mut Pin<&mut Sleep>,
        until: Instant,
    ) -> Res<Option<usize>> {
        match self.sock.try_recv(buf) {
            Ok(n) => return Ok(Some(n)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(io_error("connection lost", &e)),
        }
        wake.as_mut().reset(tokio::time::Instant::from_std(until));
        tokio::select! {
            r = self.sock.recv(buf) => r.map(Some).map_err(|e| io_error("connection lost", &e)),
            _ = wake.as_mut() => Ok(None),
        }
    }

    /// The input for a packet from the server; control packets that would reach srt-protocol's
    /// `todo!()` / `unimplemented!()` branches are dropped here (congestion warnings, SRT
    /// extension messages: key material, stream ids, filters and groups, none of which an
    /// unencrypted player uses).
    fn admit(&mut self, packet: Packet) -> Res<Input> {
        let ours = packet.dest_sockid() == self.conn.settings().local_sockid;
        if let Packet::Control(ControlPacket { control_type, .. }) = &packet {
            match control_type {
                ControlTypes::CongestionWarning | ControlTypes::Srt(_) => return Ok(Input::Timer),
                ControlTypes::PeerError(code) if ours => {
                    return Err(format!("the server reported error {code}"))
                }
                ControlTypes::PeerError(_) => return Ok(Input::Timer),
                ControlTypes::Shutdown if ours => self.shutdown = true,
                _ => {}
            }
        }
        if ours {
            self.last_received = Instant::now();
        }
        Ok(Input::Packet(Ok((packet, self.remote))))
    }

    /// Counts the frames the demuxer completed (codec configs are bytes, not frames).
    fn count_frames(&mut self, st: &mut PlayerStats, now: Instant) {
        while let Some(frame) = self.demux.poll_frame() {
            st.media(frame.payload.len(), now);
            if matches!(frame.kind, FrameKind::Config) {
                continue;
            }
            match frame.track {
                Track::Video => st.video_frame(frame.keyframe, now),
                Track::Audio => st.audio_frame(),
            }
        }
    }

    /// Why the state machine closed the connection: the server said so (Shutdown), it went
    /// silent for the idle timeout, or neither as far as this player saw.
    fn close_reason(&self, now: Instant) -> String {
        let idle = self.conn.settings().peer_idle_timeout;
        if self.shutdown {
            "connection closed by server".into()
        } else if now.duration_since(self.last_received) >= idle {
            format!(
                "connection timed out: nothing from the server for {} s",
                idle.as_secs_f64()
            )
        } else {
            "connection closed".into()
        }
    }
}

impl Drop for Player<'_> {
    fn drop(&mut self) {
        if !self.conn.is_open() {
            return;
        }
        let settings = self.conn.settings();
        let shutdown = Packet::Control(ControlPacket {
            timestamp: TimeStamp::from_micros(
                settings.socket_start_time.elapsed().as_micros() as u32
            ),
            dest_sockid: settings.remote_sockid,
            control_type: ControlTypes::Shutdown,
        });
        self.out.clear();
        shutdown.serialize(&mut self.out);
        let _ = self.sock.try_send(&self.out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use srt_protocol::options::PacketSize;
    use srt_protocol::packet::ControlTypes;

    #[test]
    fn the_handshake_announces_a_whole_datagram_as_the_mss() {
        let remote = SocketAddr::from(([127, 0, 0, 1], 9000));
        let (init, streamid) =
            caller_settings(remote, Some("#!::r=live/x,m=request")).expect("settings");
        assert_eq!(streamid.as_deref(), Some("#!::r=live/x,m=request"));
        assert_eq!(init.max_packet_size, PacketSize(1500));

        // On the wire: the induction carries it (the conclusion is made from the same settings).
        let mut connect = Connect::new(
            remote,
            remote.ip(),
            init,
            streamid,
            SeqNumber::new_truncate(1),
        );
        let ConnectionResult::SendPacket((Packet::Control(induction), _)) =
            connect.handle_tick(Instant::now())
        else {
            panic!("no induction sent");
        };
        let ControlTypes::Handshake(hs) = induction.control_type else {
            panic!("not a handshake: {induction:?}");
        };
        assert_eq!(hs.max_packet_size, PacketSize(1500));
    }
}
