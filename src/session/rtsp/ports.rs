//! [`RtpPorts`]: the UDP port pairs of one RTSP listener's `<rtp_port_min>`..`<rtp_port_max>`
//! range, handed to its sessions' tracks set up over UDP. The listener owns one (the server
//! makes it with the listener and gives every session of that listener a handle); nothing is
//! process-global, so two servers in one process (the tests) do not share ports or counts.
//!
//! One client address may hold at most a quarter of the range ([`RtpPorts::lease`]), so one
//! host cannot take the range from the others.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::UdpSocket;

/// The port pairs of one RTSP listener.
#[derive(Debug)]
pub struct RtpPorts {
    range: (u16, u16),
    /// Where the next search for a free pair starts.
    next: AtomicU32,
    /// Pairs held per client address.
    held: Mutex<HashMap<IpAddr, usize>>,
}

/// One UDP port pair counted against a client address; given back when dropped.
#[derive(Debug)]
pub struct PairLease {
    ports: Arc<RtpPorts>,
    ip: IpAddr,
}

impl RtpPorts {
    /// The pairs of `range` (inclusive; pairs start at even ports).
    pub fn new(range: (u16, u16)) -> Arc<Self> {
        Arc::new(RtpPorts {
            range,
            next: AtomicU32::new(0),
            held: Mutex::new(HashMap::new()),
        })
    }

    /// The range.
    pub fn range(&self) -> (u16, u16) {
        self.range
    }

    /// Most pairs one client address may hold at once: a quarter of the range (at least two,
    /// one audio/video session).
    pub fn per_ip(&self) -> usize {
        let pairs = usize::from((self.range.1 - self.range.0) / 2 + 1);
        (pairs / 4).max(2)
    }

    /// Counts a pair for `ip`, unless it already holds its share.
    pub fn lease(self: &Arc<Self>, ip: IpAddr) -> Option<PairLease> {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let count = held.entry(ip).or_insert(0);
        if *count >= self.per_ip() {
            return None;
        }
        *count += 1;
        Some(PairLease {
            ports: self.clone(),
            ip,
        })
    }

    /// Binds an RTP/RTCP pair (even, even + 1) from the range, starting after the last pair
    /// given, on the wildcard address of `client`'s family (`0.0.0.0`, or `::` for IPv6 only,
    /// so that the same port numbers stay free for an IPv4 client): the sockets and their
    /// ports.
    pub fn bind(&self, client: IpAddr) -> Option<(UdpSocket, UdpSocket, (u16, u16))> {
        let (low, high) = self.range;
        let pairs = u32::from((high - low) / 2 + 1).max(1);
        for _ in 0..pairs {
            let i = self.next.fetch_add(1, Ordering::Relaxed) % pairs;
            let rtp_port = low + (i * 2) as u16;
            let Some(rtcp_port) = rtp_port.checked_add(1).filter(|p| *p <= high) else {
                continue;
            };
            let bind = |port: u16| -> Option<UdpSocket> {
                let socket = bind_udp(client, port).ok()?;
                socket.set_nonblocking(true).ok()?;
                UdpSocket::from_std(socket).ok()
            };
            if let (Some(rtp), Some(rtcp)) = (bind(rtp_port), bind(rtcp_port)) {
                return Some((rtp, rtcp, (rtp_port, rtcp_port)));
            }
        }
        None
    }
}

/// A UDP socket on `port` of the wildcard address of `client`'s family.
fn bind_udp(client: IpAddr, port: u16) -> std::io::Result<std::net::UdpSocket> {
    use socket2::{Domain, Socket, Type};
    let addr = match client {
        IpAddr::V4(_) => SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)),
        IpAddr::V6(_) => SocketAddr::from((Ipv6Addr::UNSPECIFIED, port)),
    };
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, None)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

impl Drop for PairLease {
    fn drop(&mut self) {
        let mut held = self.ports.held.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = held.get_mut(&self.ip) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                held.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_pairs_per_client_address_are_capped_and_given_back() {
        // The default range (500 pairs) and test ranges.
        assert_eq!(RtpPorts::new((20000, 20999)).per_ip(), 125);
        assert_eq!(RtpPorts::new((40000, 40099)).per_ip(), 12);
        assert_eq!(RtpPorts::new((40000, 40003)).per_ip(), 2);
        let ports = RtpPorts::new((40000, 40023));
        assert_eq!(ports.per_ip(), 3);
        let ip: IpAddr = "192.0.2.77".parse().expect("an address");
        let other: IpAddr = "192.0.2.78".parse().expect("an address");
        let held: Vec<PairLease> = (0..3).filter_map(|_| ports.lease(ip)).collect();
        assert_eq!(held.len(), 3);
        assert!(ports.lease(ip).is_none(), "the address is at its cap");
        let kept = ports.lease(other);
        assert!(kept.is_some(), "another address is not");
        drop(held);
        assert!(ports.lease(ip).is_some(), "dropped leases are given back");
        // Another listener's range counts on its own.
        let elsewhere = RtpPorts::new((40000, 40023));
        let _full: Vec<PairLease> = (0..3).filter_map(|_| ports.lease(ip)).collect();
        assert!(elsewhere.lease(ip).is_some());
    }
}
