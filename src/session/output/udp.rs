//! [`UdpOut`]: RTP or RTCP datagrams of one RTSP track over UDP, to the port the client
//! announced in its SETUP.
//!
//! UDP keeps no queue of its own here: a datagram the socket buffer cannot take is dropped at
//! once (a UDP player lives with loss, and RTP's sequence numbers tell it), and the player's
//! drop policy is told its output is full, so it goes on at the next keyframe instead of
//! sending the rest of a frame it cannot decode.

use std::io;
use std::net::SocketAddr;
use std::rc::Rc;

use tokio::net::UdpSocket;

use super::{Output, SendError};
use crate::session::core::Counter;

/// One UDP socket of a track and where its datagrams go.
#[derive(Debug)]
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
                self.written.set(self.written.get() + n as u64);
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Err(SendError::Full),
            Err(_) => Ok(()),
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
