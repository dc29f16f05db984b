//! [`SrtOut`]: the send side of an SRT connection, behind the shared drop policy.

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::mpsc;

use super::tcp::QUEUE_BUFFERS;
use super::{Output, SendError};
use crate::session::srt::connection::Timed;

/// Payloads handed to a connection per [`PACE_WINDOW`] at most.
pub const PACE_PAYLOADS: usize = 64;
/// The pacing window of [`PACE_PAYLOADS`].
pub const PACE_WINDOW: Duration = Duration::from_millis(5);

/// The send side of an accepted connection: a task on the session's arbiter that hands queued
/// payloads to the connection with the media time of what they carry (the connection stamps
/// them at that pace, [`MediaClock`](crate::protocol::srt::MediaClock), so the player's SRT receive buffer releases them one
/// latency later at the pace of the source). Bursts (the GOP a player starts with) are sent at
/// [`PACE_PAYLOADS`] payloads per
/// [`PACE_WINDOW`] (about 130 Mbit/s), so a large GOP does not hit the network and the UDP
/// buffers at line rate; live streams below that rate are never held back. Dropping it lets the
/// queue drain, waits about one latency so the last packets can still be retransmitted, and
/// closes the connection.
pub struct SrtOut {
    tx: mpsc::Sender<Timed>,
    pending: Rc<Cell<usize>>,
}

impl SrtOut {
    /// Starts the send task. The connection's protocol task counts what it sends (whole SRT
    /// packets, [`spawn_connection`](crate::session::srt::connection::spawn_connection)).
    pub fn spawn(sink: mpsc::Sender<Timed>, linger: Duration, span: tracing::Span) -> SrtOut {
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

    /// Queues a payload with the media time of what it carries.
    pub fn send(&self, dts: Option<i64>, payload: Bytes) -> Result<(), SendError> {
        let len = payload.len();
        match self.tx.try_send((dts, payload)) {
            Ok(()) => {
                self.pending.set(self.pending.get() + len);
                Ok(())
            }
            Err(mpsc::error::TrySendError::Full(_)) => Err(SendError::Full),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(SendError::Closed),
        }
    }
}

impl Output for SrtOut {
    fn pending_bytes(&self) -> usize {
        self.pending.get()
    }

    /// The connection task ended (the peer closed, or SRT timed it out).
    fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}
