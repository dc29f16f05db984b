//! [`UdpOut`]: RTP or RTCP datagrams of one RTSP track over UDP, to the port the client
//! announced in its SETUP.
//!
//! UDP keeps no queue of its own here: a datagram the socket buffer cannot take is dropped at
//! once (a UDP player lives with loss, and RTP's sequence numbers tell it), and the player's
//! drop policy is told its output is full, so it goes on at the next keyframe instead of
//! sending the rest of a frame it cannot decode.

use std::cell::Cell;
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::rc::Rc;

use nix::errno::Errno;
use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags, SockaddrStorage};

use tokio::net::UdpSocket;

use super::{Output, SendError};
use crate::session::core::Counter;

/// One UDP socket of a track and where its datagrams go.
#[derive(Debug, Clone)]
pub struct UdpOut {
    socket: Rc<UdpSocket>,
    to: SocketAddr,
    written: Counter,
}

impl UdpOut {
    /// Datagrams from `socket` to `to`, counted into `written`.
    pub fn new(socket: Rc<UdpSocket>, to: SocketAddr, written: Counter) -> Self {
        UdpOut {
            socket,
            to,
            written,
        }
    }

    /// The socket (the session also reads the client's datagrams from it).
    pub fn socket(&self) -> &Rc<UdpSocket> {
        &self.socket
    }

    /// The client's address for this socket.
    pub fn peer(&self) -> SocketAddr {
        self.to
    }

    /// Sends one datagram. `Full` when the socket buffer could not take it (it is dropped);
    /// any other failure (an ICMP error of an earlier datagram) is not the player's end: RTSP
    /// over UDP ends with the session.
    pub fn send(&self, datagram: &[u8]) -> Result<(), SendError> {
        match self.socket.try_send_to(datagram, self.to) {
            Ok(n) => {
                self.written.add(n as u64);
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Err(SendError::Full),
            Err(_) => Ok(()),
        }
    }
}

/// Most datagrams one segmented send carries (the kernel's `UDP_MAX_SEGMENTS`).
const MAX_SEGMENTS: usize = 64;
/// Most bytes one segmented send carries (under a UDP datagram's 65 507, for either IP).
const MAX_SEGMENTED_BYTES: usize = 65_000;

thread_local! {
    /// Whether this thread still sends with `UDP_SEGMENT`: off for good once the kernel
    /// refuses it (an old kernel, a socket type without it).
    static SEGMENTING: Cell<bool> = const { Cell::new(true) };
}

/// How many datagrams at the front of `datagrams` one segmented send can carry: the kernel
/// cuts the payload into pieces of the first datagram's size, so every one but the last must
/// have that size, and the last may be shorter.
fn segment_run(datagrams: &[&[u8]]) -> usize {
    let Some(first) = datagrams.first() else {
        return 0;
    };
    let size = first.len();
    let mut bytes = 0;
    let mut n = 0;
    for d in datagrams.iter().take(MAX_SEGMENTS) {
        if d.is_empty() || d.len() > size || bytes + d.len() > MAX_SEGMENTED_BYTES {
            break;
        }
        bytes += d.len();
        n += 1;
        if d.len() < size {
            break;
        }
    }
    n
}

impl UdpOut {
    /// Sends `datagrams` in order, runs of equal-sized ones (a frame's RTP packets: all of
    /// the packetizer's size but the last) in one `sendmsg` with `UDP_SEGMENT`, which the
    /// kernel cuts into the same datagrams: one system call and one pass through the UDP
    /// stack per run instead of per datagram. `Full` as soon as the socket buffer takes no
    /// more (the rest is dropped, as [`Self::send`] drops a datagram).
    pub fn send_all(&self, datagrams: &[&[u8]]) -> Result<(), SendError> {
        let mut rest = datagrams;
        while !rest.is_empty() {
            let run = segment_run(rest);
            if run > 1 && SEGMENTING.with(Cell::get) {
                match self.send_segmented(&rest[..run]) {
                    Ok(true) => {
                        rest = &rest[run..];
                        continue;
                    }
                    Ok(false) => SEGMENTING.with(|on| on.set(false)),
                    Err(e) => return Err(e),
                }
            }
            self.send(rest[0])?;
            rest = &rest[1..];
        }
        Ok(())
    }

    /// One segmented send; `Ok(false)` when the kernel does not do `UDP_SEGMENT`.
    fn send_segmented(&self, datagrams: &[&[u8]]) -> Result<bool, SendError> {
        let segment = datagrams[0].len() as u16;
        let slices: Vec<IoSlice<'_>> = datagrams.iter().map(|d| IoSlice::new(d)).collect();
        let to = SockaddrStorage::from(self.to);
        let sent = sendmsg(
            self.socket.as_raw_fd(),
            &slices,
            &[ControlMessage::UdpGsoSegments(&segment)],
            MsgFlags::MSG_DONTWAIT,
            Some(&to),
        );
        match sent {
            Ok(n) => {
                self.written.add(n as u64);
                Ok(true)
            }
            Err(Errno::EAGAIN) => Err(SendError::Full),
            Err(Errno::EINVAL | Errno::EIO | Errno::ENOPROTOOPT | Errno::EOPNOTSUPP) => Ok(false),
            // An ICMP error of an earlier datagram, as in `send`.
            Err(_) => Ok(true),
        }
    }
}

impl Output for UdpOut {
    /// Nothing waits: a datagram is sent or dropped at once.
    fn pending_bytes(&self) -> usize {
        0
    }

    fn is_closed(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::{segment_run, MAX_SEGMENTED_BYTES, MAX_SEGMENTS};

    fn run(sizes: &[usize]) -> usize {
        let bufs: Vec<Vec<u8>> = sizes.iter().map(|&n| vec![0u8; n]).collect();
        let slices: Vec<&[u8]> = bufs.iter().map(Vec::as_slice).collect();
        segment_run(&slices)
    }

    #[test]
    fn a_run_is_equal_sizes_and_a_shorter_last() {
        assert_eq!(run(&[]), 0);
        assert_eq!(run(&[1400]), 1);
        assert_eq!(run(&[1400, 1400, 1400, 600]), 4);
        assert_eq!(
            run(&[1400, 1400, 600, 1400]),
            3,
            "a shorter one ends the run"
        );
        assert_eq!(run(&[600, 1400]), 1, "a longer one cannot follow");
        assert_eq!(run(&[1400, 0, 1400]), 1, "an empty datagram is sent apart");
    }

    #[test]
    fn a_run_keeps_to_the_kernels_limits() {
        assert_eq!(run(&[100; 70]), MAX_SEGMENTS);
        let n = run(&[1400; 60]);
        assert_eq!(n, MAX_SEGMENTED_BYTES / 1400);
        assert!(n * 1400 <= MAX_SEGMENTED_BYTES);
    }
}
