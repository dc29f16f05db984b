//! What one play or publish used and why it ended, as its `on_done` reports it: a plain
//! struct the sessions fill and the notifier sends. Knows no protocol.

use serde::Serialize;

/// Why a session ended: the `reason` field of `on_done`. The first cause wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// The client ended it in its protocol's words (or, for HTTP-FLV, closed the connection).
    Closed,
    /// The connection failed or timed out without the protocol's goodbye.
    Lost,
    /// Ended by a kick other than the server's shutdown.
    Kicked,
    /// The stream under a player ended: its publisher left.
    StreamEnded,
    /// A player too far behind for its stall timeout, or a write that made no progress.
    Stalled,
    /// A publisher without media, or a client that neither played nor published in time.
    Idle,
    /// The hook allowed it but the server could not (not live, name taken, server stopping).
    Refused,
    /// The server is stopping.
    Shutdown,
    /// A previous run of the server ended (a crash, `kill -9`) before the session did: sent by
    /// the next run from the outbox, with the usage of the session's last checkpoint.
    ServerRestart,
}

impl EndReason {
    /// The name `on_done` sends.
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Closed => "closed",
            EndReason::Lost => "lost",
            EndReason::Kicked => "kicked",
            EndReason::StreamEnded => "stream_ended",
            EndReason::Stalled => "stalled",
            EndReason::Idle => "idle",
            EndReason::Refused => "refused",
            EndReason::Shutdown => "shutdown",
            EndReason::ServerRestart => "server_restart",
        }
    }

    /// Every reason.
    pub const ALL: [EndReason; 9] = [
        EndReason::Closed,
        EndReason::Lost,
        EndReason::Kicked,
        EndReason::StreamEnded,
        EndReason::Stalled,
        EndReason::Idle,
        EndReason::Refused,
        EndReason::Shutdown,
        EndReason::ServerRestart,
    ];

    /// The reason `on_done` calls `name`.
    pub fn from_name(name: &str) -> Option<EndReason> {
        EndReason::ALL.into_iter().find(|r| r.as_str() == name)
    }
}

/// What a session has used so far: the usage fields of `on_update`, and of `on_done` before
/// its reason, after the seed's fields and `node`, in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Used {
    /// When the connection was accepted, Unix milliseconds.
    pub start: u64,
    /// How long the session has run, milliseconds.
    pub duration_ms: u64,
    /// Bytes received on the client's connection.
    pub bytes_in: u64,
    /// Bytes written to the client's connection.
    pub bytes_out: u64,
}

/// The usage `on_done` reports: what the session used, then why it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct UsageReport {
    /// What it used.
    #[serde(flatten)]
    pub used: Used,
    /// Why it ended.
    pub reason: EndReason,
}
