//! The write side of a client connection: a task on the session's arbiter that drains queued
//! buffers into the socket with vectored writes, so a burst of outgoing chunks becomes one
//! system call.
//!
//! Bounded: the queue holds at most [`QUEUE_BUFFERS`] buffers, and the session reads
//! [`Writer::pending_bytes`] to apply its drop policy before the queue fills. A write that makes
//! no progress for [`WRITE_STALL`] ends the connection. Dropping the [`Writer`] flushes what is
//! queued and then shuts the socket down, so a refusal reaches the client before the close.

use std::cell::Cell;
use std::io::IoSlice;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes};
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::mpsc;

/// Most buffers queued for one connection.
pub const QUEUE_BUFFERS: usize = 8192;
/// A write that cannot make progress for this long ends the connection.
pub const WRITE_STALL: Duration = Duration::from_secs(20);
/// Buffers joined into one vectored write at most.
const BATCH: usize = 64;

/// Why a buffer could not be queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    /// The queue is full: the peer is not reading.
    #[error("write queue full")]
    Full,
    /// The socket is gone.
    #[error("connection closed")]
    Closed,
}

/// Queue handle held by the session actor.
pub struct Writer {
    tx: mpsc::Sender<Bytes>,
    pending: Rc<Cell<usize>>,
    /// When the socket last took bytes (or the queue last went from empty to not empty).
    progress: Rc<Cell<Instant>>,
    task: Option<actix_rt::task::JoinHandle<()>>,
}

impl Writer {
    /// Starts the write task on the current arbiter.
    pub fn spawn(mut socket: OwnedWriteHalf, span: tracing::Span) -> Writer {
        let (tx, mut rx) = mpsc::channel::<Bytes>(QUEUE_BUFFERS);
        let pending = Rc::new(Cell::new(0usize));
        let counter = pending.clone();
        let progress = Rc::new(Cell::new(Instant::now()));
        let progressed = progress.clone();
        let task = actix_rt::spawn(async move {
            let mut batch: Vec<Bytes> = Vec::with_capacity(BATCH);
            while let Some(first) = rx.recv().await {
                batch.push(first);
                while batch.len() < BATCH {
                    match rx.try_recv() {
                        Ok(b) => batch.push(b),
                        Err(_) => break,
                    }
                }
                let size: usize = batch.iter().map(Bytes::len).sum();
                let result = write_all(&mut socket, &mut batch, &progressed).await;
                counter.set(counter.get().saturating_sub(size));
                if let Err(e) = result {
                    let _s = span.clone().entered();
                    tracing::debug!(error = %e, "write failed; closing");
                    rx.close();
                    return;
                }
            }
            let _ = tokio::time::timeout(WRITE_STALL, socket.shutdown()).await;
        });
        Writer {
            tx,
            pending,
            progress,
            task: Some(task),
        }
    }

    /// Queues bytes for the socket.
    pub fn send(&self, bytes: Bytes) -> Result<(), WriteError> {
        let len = bytes.len();
        match self.tx.try_send(bytes) {
            Ok(()) => {
                if self.pending.get() == 0 {
                    self.progress.set(Instant::now());
                }
                self.pending.set(self.pending.get() + len);
                Ok(())
            }
            Err(mpsc::error::TrySendError::Full(_)) => Err(WriteError::Full),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(WriteError::Closed),
        }
    }

    /// Bytes queued and not yet written.
    pub fn pending_bytes(&self) -> usize {
        self.pending.get()
    }

    /// True when the socket's write task has ended, or when queued bytes have made no
    /// progress into the socket for [`WRITE_STALL`] (the session then closes). Sessions check
    /// this on their timer, so no timer is armed per write.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
            || (self.pending.get() > 0 && self.progress.get().elapsed() > WRITE_STALL)
    }
}

impl Drop for Writer {
    /// The task flushes what is queued (a refusal must reach the client) and then shuts the
    /// socket down; a peer that never reads gets [`WRITE_STALL`] before the task is ended.
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            if !task.is_finished() {
                actix_rt::spawn(async move {
                    actix_rt::time::sleep(WRITE_STALL).await;
                    task.abort();
                });
            }
        }
    }
}

async fn write_all(
    socket: &mut OwnedWriteHalf,
    batch: &mut Vec<Bytes>,
    progress: &Cell<Instant>,
) -> std::io::Result<()> {
    let mut start = 0;
    while start < batch.len() {
        // On the stack: no allocation per write.
        let mut slices = [IoSlice::new(&[]); BATCH];
        let n = (batch.len() - start).min(BATCH);
        for (slot, b) in slices.iter_mut().zip(&batch[start..start + n]) {
            *slot = IoSlice::new(b);
        }
        let written = socket.write_vectored(&slices[..n]).await?;
        progress.set(Instant::now());
        if written == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        let mut left = written;
        while left > 0 {
            let b = &mut batch[start];
            if left >= b.len() {
                left -= b.len();
                start += 1;
            } else {
                b.advance(left);
                left = 0;
            }
        }
        while start < batch.len() && batch[start].is_empty() {
            start += 1;
        }
    }
    batch.clear();
    Ok(())
}
