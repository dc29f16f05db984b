//! The write side of a client connection: a task on the session's arbiter that drains the
//! session's queued buffers into the socket with vectored writes.
//!
//! The queue is state with the session on its own thread (no channel): the session appends,
//! the task takes from the front as the socket accepts bytes. Two kinds of sends:
//! - [`Writer::send`]: written as soon as the task runs (answers, control messages, the
//!   replay a joining player gets);
//! - [`Writer::send_merged`]: live media, written within the connection's merge window. Every
//!   connection of an arbiter with a merged send waiting is flushed by one timer of that
//!   arbiter, so each connection makes one system call per window for all the frames of the
//!   window instead of one per frame. The kernel's cost of a TCP send was measured to be
//!   mostly per call, not per byte (on loopback, docs/benchmarks.md); on a network, fewer and
//!   larger writes also mean fewer, fuller packets.
//!
//! Bounded: the queue holds at most [`QUEUE_BUFFERS`] buffers and [`MAX_QUEUE_BYTES`] bytes,
//! and the player's drop policy (in its session, or in its fan-out group's member) reads
//! [`Writer::pending_bytes`] before the queue fills. A session that answers what its client
//! sends reads that input through [`Writer::gate`]: while more than the read limit is unwritten,
//! the client's input is left in the socket, so a client that sends requests without reading
//! the answers fills its own socket buffers, not the server's memory. Queued bytes
//! that make no progress for [`WRITE_STALL`] end the connection ([`Writer::is_closed`], which
//! sessions check on their timer). Dropping the [`Writer`] flushes what is queued and then
//! shuts the socket down, so a refusal reaches the client before the close.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::poll_fn;
use std::io::IoSlice;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes};
use futures_util::Stream;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;

use super::{Output, SendError};
use crate::session::arbiter::ArbiterState;
use crate::session::core::Counter;

/// Most buffers queued for one connection.
pub const QUEUE_BUFFERS: usize = 8192;
/// Queued bytes that make no progress into the socket for this long end the connection.
pub const WRITE_STALL: Duration = Duration::from_secs(20);
/// Most bytes queued for one connection. Players drop media past their `<queue_bytes>` and a
/// joining player's replay is at most the GOP cache (32 MiB), so only a client that does not
/// read reaches this.
pub const MAX_QUEUE_BYTES: usize = 64 << 20;
/// The read limit of [`Writer::gate`] until the session sets another: answers to a client's
/// requests wait in the queue up to this much before its input stops being read.
pub const DEFAULT_READ_LIMIT: usize = 64 << 10;
/// Buffers joined into one vectored write at most.
const BATCH: usize = 64;
/// Queue capacity kept for an idle connection; a burst's larger capacity is given back.
const IDLE_CAPACITY: usize = 4;

/// What the session and its write task share (one thread).
struct Queue {
    queue: RefCell<VecDeque<Bytes>>,
    /// Bytes queued and not yet written.
    pending: Cell<usize>,
    /// When the socket last took bytes (or the queue last went from empty to not empty).
    progress: Cell<Instant>,
    /// The queue is to be written now.
    due: Cell<bool>,
    /// Waiting in this arbiter's merge list.
    merging: Cell<bool>,
    /// The session let go: flush, then shut the socket down.
    released: Cell<bool>,
    /// The task has ended (write failed, or done after release).
    ended: Cell<bool>,
    waker: Cell<Option<Waker>>,
    /// Unwritten bytes above which a [`Gated`] input is not read.
    read_limit: Cell<usize>,
    /// The [`Gated`] input waiting for the queue to go under the read limit.
    read_waker: Cell<Option<Waker>>,
    /// Bytes the socket took, over the connection (the session's usage).
    written: Counter,
}

impl Queue {
    fn make_due(&self) {
        self.due.set(true);
        if let Some(waker) = self.waker.take() {
            waker.wake();
        }
    }

    /// Whether the gated input may be read now.
    fn readable(&self) -> bool {
        self.ended.get() || self.pending.get() <= self.read_limit.get()
    }

    /// Lets a gated input that waits read again, if it may.
    fn wake_reader(&self) {
        if self.readable() {
            if let Some(waker) = self.read_waker.take() {
                waker.wake();
            }
        }
    }
}

/// Queue handle held by the session actor.
pub struct Writer {
    state: Rc<Queue>,
    merge: Duration,
    task: Option<actix_rt::task::JoinHandle<()>>,
}

impl Writer {
    /// Starts the write task on the current arbiter. `merge` is the connection's merge window
    /// for [`Writer::send_merged`] (zero: no merging).
    /// Every byte the socket takes is counted into `written`.
    pub fn spawn(
        mut socket: OwnedWriteHalf,
        span: tracing::Span,
        merge: Duration,
        written: Counter,
    ) -> Writer {
        let state = Rc::new(Queue {
            queue: RefCell::new(VecDeque::new()),
            pending: Cell::new(0),
            progress: Cell::new(Instant::now()),
            due: Cell::new(false),
            merging: Cell::new(false),
            released: Cell::new(false),
            ended: Cell::new(false),
            waker: Cell::new(None),
            read_limit: Cell::new(DEFAULT_READ_LIMIT),
            read_waker: Cell::new(None),
            written,
        });
        let task_state = state.clone();
        let task = actix_rt::spawn(async move {
            let state = task_state;
            let result = poll_fn(|cx| drain(&state, &mut socket, cx)).await;
            match result {
                Ok(()) => {
                    // Boxed: a timer held inline would sit in every connection's task for its
                    // whole life, though only its last moment uses it.
                    let _ = Box::pin(tokio::time::timeout(WRITE_STALL, socket.shutdown())).await;
                }
                Err(e) => {
                    let _s = span.enter();
                    tracing::debug!(error = %e, "write failed; closing");
                }
            }
            state.ended.set(true);
            state.queue.borrow_mut().clear();
            state.wake_reader();
        });
        Writer {
            state,
            merge,
            task: Some(task),
        }
    }

    /// Queues bytes to be written as soon as the write task runs.
    pub fn send(&self, bytes: Bytes) -> Result<(), SendError> {
        self.push(bytes)?;
        self.state.make_due();
        Ok(())
    }

    /// Queues live media: written within the merge window, together with whatever else this
    /// connection queued in it.
    pub fn send_merged(&self, bytes: Bytes) -> Result<(), SendError> {
        self.push(bytes)?;
        let state = &self.state;
        if self.merge.is_zero() {
            state.make_due();
        } else if !state.due.get() && !state.merging.get() {
            state.merging.set(true);
            merge_later(self.merge, state.clone());
        }
        Ok(())
    }

    fn push(&self, bytes: Bytes) -> Result<(), SendError> {
        let state = &self.state;
        if state.ended.get() {
            return Err(SendError::Closed);
        }
        if bytes.is_empty() {
            // Nothing to write; queued, it would read as a socket that takes no bytes.
            return Ok(());
        }
        let mut queue = state.queue.borrow_mut();
        if queue.len() >= QUEUE_BUFFERS || state.pending.get() + bytes.len() > MAX_QUEUE_BYTES {
            return Err(SendError::Full);
        }
        if state.pending.get() == 0 {
            state.progress.set(Instant::now());
        }
        state.pending.set(state.pending.get() + bytes.len());
        queue.push_back(bytes);
        Ok(())
    }

    /// Bytes queued and not yet written.
    pub fn pending_bytes(&self) -> usize {
        self.state.pending.get()
    }

    /// The connection's input, read only while at most the read limit
    /// ([`DEFAULT_READ_LIMIT`], or [`Self::set_read_limit`]) is unwritten. A client that
    /// pipelines requests and never reads the answers stops being read once its answers fill
    /// the limit; the rest stays in the kernel's socket buffers, then in the client.
    pub fn gate<S: Stream + Unpin>(&self, input: S) -> Gated<S> {
        Gated {
            input,
            state: self.state.clone(),
        }
    }

    /// Sets the read limit of [`Self::gate`] (a player raises it to its queue, so a player
    /// that is a little behind still has its keep-alives read).
    pub fn set_read_limit(&self, bytes: usize) {
        self.state.read_limit.set(bytes);
        self.state.wake_reader();
    }

    /// True when the socket's write task has ended, or when queued bytes have made no
    /// progress into the socket for [`WRITE_STALL`] (the session then closes). Sessions check
    /// this on their timer, so no timer is armed per write.
    pub fn is_closed(&self) -> bool {
        let state = &self.state;
        state.ended.get()
            || (state.pending.get() > 0 && state.progress.get().elapsed() > WRITE_STALL)
    }
}

impl Output for Writer {
    fn pending_bytes(&self) -> usize {
        Writer::pending_bytes(self)
    }

    fn is_closed(&self) -> bool {
        Writer::is_closed(self)
    }

    fn write_stalled(&self) -> bool {
        let state = &self.state;
        !state.ended.get()
            && state.pending.get() > 0
            && state.progress.get().elapsed() > WRITE_STALL
    }
}

impl Drop for Writer {
    /// The task flushes what is queued (a refusal must reach the client) and then shuts the
    /// socket down; a peer that never reads gets [`WRITE_STALL`] before the task is ended.
    fn drop(&mut self) {
        self.state.released.set(true);
        self.state.make_due();
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

/// A connection's input behind its writer's read limit ([`Writer::gate`]).
pub struct Gated<S> {
    input: S,
    state: Rc<Queue>,
}

impl<S: Stream + Unpin> Stream for Gated<S> {
    type Item = S::Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        if !self.state.readable() {
            // Woken by the write task when the queue drains under the limit (or it ends).
            self.state.read_waker.set(Some(cx.waker().clone()));
            return Poll::Pending;
        }
        Pin::new(&mut self.input).poll_next(cx)
    }
}

/// Writes the queue while it is due and the socket takes bytes. Ready when the session has
/// let go and everything is written; `Err` when the socket fails.
fn drain(
    state: &Queue,
    socket: &mut OwnedWriteHalf,
    cx: &mut Context<'_>,
) -> Poll<std::io::Result<()>> {
    loop {
        let mut queue = state.queue.borrow_mut();
        if queue.is_empty() || !(state.due.get() || state.released.get()) {
            if queue.is_empty() {
                state.due.set(false);
                if queue.capacity() > IDLE_CAPACITY {
                    queue.shrink_to(IDLE_CAPACITY);
                }
                if state.released.get() {
                    return Poll::Ready(Ok(()));
                }
            }
            state.waker.set(Some(cx.waker().clone()));
            return Poll::Pending;
        }
        // On the stack: no allocation per write.
        let mut slices = [IoSlice::new(&[]); BATCH];
        let n = queue.len().min(BATCH);
        for (slot, b) in slices.iter_mut().zip(queue.iter()) {
            *slot = IoSlice::new(b);
        }
        let written = match Pin::new(&mut *socket).poll_write_vectored(cx, &slices[..n]) {
            Poll::Ready(Ok(0)) => return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into())),
            Poll::Ready(Ok(written)) => written,
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => {
                // Woken by the socket when it takes bytes again.
                return Poll::Pending;
            }
        };
        state.progress.set(Instant::now());
        state.written.set(state.written.get() + written as u64);
        state
            .pending
            .set(state.pending.get().saturating_sub(written));
        state.wake_reader();
        let mut left = written;
        while left > 0 {
            let front = queue.front_mut().expect("written bytes were queued");
            if left >= front.len() {
                left -= front.len();
                queue.pop_front();
            } else {
                front.advance(left);
                left = 0;
            }
        }
    }
}

/// The connections of one merge window waiting on this arbiter, and whether its timer runs.
pub struct MergeList {
    window: Duration,
    waiting: Vec<Rc<Queue>>,
    armed: bool,
}

/// Makes `state` due when this arbiter's timer for `window` fires: the first connection to
/// wait arms it, every later one joins the same list.
fn merge_later(window: Duration, state: Rc<Queue>) {
    let arm = ArbiterState::with(|arbiter| {
        let mut lists = arbiter.merges.borrow_mut();
        let index = match lists.iter().position(|l| l.window == window) {
            Some(i) => i,
            None => {
                lists.push(MergeList {
                    window,
                    waiting: Vec::new(),
                    armed: false,
                });
                lists.len() - 1
            }
        };
        let list = &mut lists[index];
        list.waiting.push(state);
        !std::mem::replace(&mut list.armed, true)
    });
    if arm {
        actix_rt::spawn(async move {
            actix_rt::time::sleep(window).await;
            let due = ArbiterState::with(|arbiter| {
                let mut lists = arbiter.merges.borrow_mut();
                let list = lists
                    .iter_mut()
                    .find(|l| l.window == window)
                    .expect("an armed list stays");
                list.armed = false;
                std::mem::take(&mut list.waiting)
            });
            for state in due {
                state.merging.set(false);
                state.make_due();
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;
    use tokio::net::{TcpListener, TcpStream};

    async fn pair(merge: Duration) -> (Writer, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let client = TcpStream::connect(listener.local_addr().expect("addr"))
            .await
            .expect("connect");
        let (server, _) = listener.accept().await.expect("accept");
        let (_read, write) = server.into_split();
        // The read half may go: the socket stays open for writing.
        (
            Writer::spawn(write, tracing::Span::none(), merge, Default::default()),
            client,
        )
    }

    #[actix_rt::test]
    async fn merged_and_immediate_sends_arrive_in_order_and_a_drop_flushes() {
        let (writer, mut client) = pair(Duration::from_millis(30)).await;
        for part in [&b"one "[..], b"two ", b"", b"three "] {
            writer
                .send_merged(Bytes::from_static(part))
                .expect("queued");
        }
        writer.send(Bytes::from_static(b"now ")).expect("queued");
        writer
            .send_merged(Bytes::from_static(b"last"))
            .expect("queued");
        drop(writer);
        let mut got = Vec::new();
        client
            .read_to_end(&mut got)
            .await
            .expect("read until the close");
        assert_eq!(got, b"one two three now last");
    }

    #[actix_rt::test]
    async fn merged_sends_are_written_without_another_send() {
        let (writer, mut client) = pair(Duration::from_millis(20)).await;
        writer
            .send_merged(Bytes::from_static(b"frame"))
            .expect("queued");
        let mut got = [0u8; 5];
        client
            .read_exact(&mut got)
            .await
            .expect("the window's timer wrote it");
        assert_eq!(&got, b"frame");
        assert_eq!(writer.pending_bytes(), 0);
        assert!(!writer.is_closed());
    }

    #[actix_rt::test]
    async fn a_gated_input_waits_while_the_output_is_over_the_limit() {
        use futures_util::StreamExt;
        let (writer, mut client) = pair(Duration::ZERO).await;
        let mut input = writer.gate(futures_util::stream::iter([1, 2]));
        assert_eq!(input.next().await, Some(1));
        // More than the socket buffers take, while the client does not read.
        let chunk = Bytes::from(vec![0u8; 1 << 20]);
        for _ in 0..16 {
            writer.send(chunk.clone()).expect("queued");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(writer.pending_bytes() > DEFAULT_READ_LIMIT);
        let next = tokio::time::timeout(Duration::from_millis(200), input.next()).await;
        assert!(next.is_err(), "the input is not read while over the limit");
        actix_rt::spawn(async move {
            let mut buf = vec![0u8; 1 << 16];
            while client.read(&mut buf).await.is_ok_and(|n| n > 0) {}
        });
        let next = tokio::time::timeout(Duration::from_secs(10), input.next()).await;
        assert_eq!(next.expect("read again once the client reads"), Some(2));
    }

    #[actix_rt::test]
    async fn the_queue_is_bounded_in_bytes() {
        let (writer, _client) = pair(Duration::ZERO).await;
        let chunk = Bytes::from(vec![0u8; 1 << 20]);
        let mut result = Ok(());
        for _ in 0..(MAX_QUEUE_BYTES >> 20) * 2 {
            result = writer.send(chunk.clone());
            if result.is_err() {
                break;
            }
        }
        assert_eq!(result, Err(SendError::Full));
        assert!(writer.pending_bytes() <= MAX_QUEUE_BYTES);
    }

    #[actix_rt::test]
    async fn a_full_queue_and_a_closed_socket_are_reported() {
        let (writer, client) = pair(Duration::ZERO).await;
        drop(client);
        let chunk = Bytes::from(vec![0u8; 64 << 10]);
        let mut result = Ok(());
        for _ in 0..QUEUE_BUFFERS * 2 {
            result = writer.send(chunk.clone());
            if result.is_err() {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert!(
            matches!(result, Err(SendError::Closed) | Err(SendError::Full)),
            "{result:?}"
        );
        for _ in 0..100 {
            if writer.is_closed() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(writer.is_closed(), "a reset socket ends the writer");
    }
}
