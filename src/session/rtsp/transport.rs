//! Where one RTSP track's RTP and RTCP go or come from ([`Link`]): `$` frames on the RTSP
//! connection, or a UDP port pair of the listener's range whose datagrams are read into the
//! session ([`Datagram`]) and sent through [`UdpOut`].

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;

use actix::prelude::*;
use bytes::Bytes;
use futures_util::StreamExt;
use tokio_util::codec::BytesCodec;
use tokio_util::udp::UdpFramed;

use super::ports::{PairLease, RtpPorts};
use crate::session::core::Counter;
use crate::session::output::udp::UdpOut;

/// Where a track's RTP and RTCP go or come from.
#[derive(Debug)]
pub enum Link {
    /// `$` frames on the RTSP connection with these channels.
    Interleaved {
        /// RTP's channel.
        rtp: u8,
        /// RTCP's channel.
        rtcp: u8,
    },
    /// UDP: our sockets and the client's addresses.
    Udp {
        /// RTP, to the client's RTP port.
        rtp: UdpOut,
        /// RTCP, to the client's RTCP port.
        rtcp: UdpOut,
        /// The streams reading both sockets (they hold the sockets too): cancelled when the
        /// track is set up again, so the pair is given back.
        readers: [SpawnHandle; 2],
        /// The pair counted against the client's address.
        _lease: PairLease,
    },
}

/// A datagram on one of the session's UDP sockets.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Datagram {
    /// The track whose pair it came in on.
    pub track: usize,
    /// On the RTCP socket.
    pub rtcp: bool,
    /// Its bytes.
    pub data: Bytes,
}

/// Why a UDP pair could not be given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PairRefused {
    /// The client's address holds its share of the range.
    Share(usize),
    /// No pair of the range is free.
    Exhausted,
}

/// A UDP pair for track `index` of a client at `peer` whose ports are `client_port`: bound
/// from `ports`, read into the session as [`Datagram`]s (only from the client's own ports),
/// sending through [`UdpOut`]s that count into `written`. Returns the link and our ports.
pub fn udp_pair<A>(
    ctx: &mut Context<A>,
    ports: &Arc<RtpPorts>,
    peer: SocketAddr,
    index: usize,
    client_port: (u16, u16),
    written: &Counter,
) -> Result<(Link, (u16, u16)), PairRefused>
where
    A: Actor<Context = Context<A>> + StreamHandler<Datagram>,
{
    let lease = ports
        .lease(peer.ip())
        .ok_or(PairRefused::Share(ports.per_ip()))?;
    let (rtp, rtcp, server_port) = ports.bind(peer.ip()).ok_or(PairRefused::Exhausted)?;
    let (rtp, rtcp) = (Rc::new(rtp), Rc::new(rtcp));
    let client_rtp = SocketAddr::new(peer.ip(), client_port.0);
    let client_rtcp = SocketAddr::new(peer.ip(), client_port.1);
    let mut readers = [SpawnHandle::default(); 2];
    for (reader, (socket, is_rtcp, source)) in readers.iter_mut().zip([
        (rtp.clone(), false, client_rtp),
        (rtcp.clone(), true, client_rtcp),
    ]) {
        // Only the port the client announced for this socket may feed it: any other sender,
        // even on the client's host, could inject media into the stream (or keep a player
        // alive).
        let datagrams = UdpFramed::new(socket, BytesCodec::new()).filter_map(move |item| {
            let datagram = item
                .ok()
                .filter(|(_, from)| same_source(*from, source))
                .map(|(data, _)| Datagram {
                    track: index,
                    rtcp: is_rtcp,
                    data: data.freeze(),
                });
            std::future::ready(datagram)
        });
        *reader = ctx.add_stream(datagrams);
    }
    let link = Link::Udp {
        rtp: UdpOut::new(rtp, client_rtp, written.clone()),
        rtcp: UdpOut::new(rtcp, client_rtcp, written.clone()),
        readers,
        _lease: lease,
    };
    Ok((link, server_port))
}

/// Whether a datagram from `from` comes from `expected` (an IPv4 peer may show as an
/// IPv4-mapped IPv6 address on a dual-stack socket).
pub fn same_source(from: SocketAddr, expected: SocketAddr) -> bool {
    from.port() == expected.port() && from.ip().to_canonical() == expected.ip().to_canonical()
}

#[cfg(test)]
mod tests {
    use super::same_source;

    #[test]
    fn udp_sources_match_address_and_port() {
        let expected: std::net::SocketAddr = "127.0.0.1:5000".parse().expect("an address");
        let mapped: std::net::SocketAddr = "[::ffff:127.0.0.1]:5000".parse().expect("an address");
        assert!(same_source(expected, expected));
        assert!(
            same_source(mapped, expected),
            "IPv4-mapped IPv6 is the same host"
        );
        assert!(!same_source(
            "127.0.0.1:5002".parse().expect("an address"),
            expected
        ));
        assert!(!same_source(
            "127.0.0.2:5000".parse().expect("an address"),
            expected
        ));
    }
}
