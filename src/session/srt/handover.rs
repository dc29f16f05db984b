//! The hand-over between the SRT listener and a session: a connection request waiting for
//! the session's decision ([`Pending`]), the decision going back ([`Response`]), and the
//! connection the listener hands over once it is accepted ([`Accepted`]).

use std::net::{SocketAddr, UdpSocket as StdUdpSocket};
use std::sync::Arc;

use srt_protocol::connection::Connection;
use srt_protocol::listener::{AccessControlRequest, AccessControlResponse, SessionId};
use srt_protocol::packet::{Packet, RejectReason};
use srt_protocol::settings::KeySettings;
use tokio::sync::{mpsc, oneshot};

use crate::protocol::srt::handshake::KeyMaterial;

/// A session's answer to its connection request.
pub struct Response {
    /// The handshake it answers.
    pub session: SessionId,
    /// Accept (with keys) or reject (with a reason).
    pub response: AccessControlResponse,
    /// Where the accepted connection is handed over.
    pub accepted: Option<oneshot::Sender<Accepted>>,
}

/// An accepted connection, handed from the listener to its session.
pub struct Accepted {
    /// srt-protocol's connection state.
    pub connection: Connection,
    /// The caller's datagrams, routed here by the listener.
    pub packets: mpsc::Receiver<(Packet, SocketAddr)>,
    /// The listener's socket, to send from.
    pub socket: Arc<StdUdpSocket>,
}

/// A connection request waiting for its session's decision.
pub struct Pending {
    /// The handshake waiting.
    pub session: SessionId,
    /// The caller's request: its streamid, address and key size.
    pub request: AccessControlRequest,
    /// What its conclusion handshake carried as key material.
    pub key_material: KeyMaterial,
    /// Where the decision goes.
    pub responses: mpsc::Sender<Response>,
}

impl Pending {
    /// Refuses the caller with `reason`.
    pub fn refuse(self, reason: RejectReason) {
        let _ = self.responses.try_send(Response {
            session: self.session,
            response: AccessControlResponse::Rejected(reason),
            accepted: None,
        });
    }

    /// Accepts the caller (with `keys` when it encrypts); the connection arrives on the
    /// returned channel once the handshake completes.
    pub fn accept(self, keys: Option<KeySettings>) -> oneshot::Receiver<Accepted> {
        let (tx, rx) = oneshot::channel();
        let _ = self.responses.try_send(Response {
            session: self.session,
            response: AccessControlResponse::Accepted(keys),
            accepted: Some(tx),
        });
        rx
    }
}
