//! The write side of a client connection: the session's queued buffers, written into the
//! socket with vectored writes by its arbiter, without a task per connection.
//!
//! The queue is state with the session on its own thread (no channel): the session appends,
//! and the bytes are written from the front as the socket takes them. Two kinds of sends:
//! - [`Writer::send`]: written once the current turn of the arbiter's event loop is over, by
//!   one flush for every connection of the arbiter that sent in that turn (answers, control
//!   messages, the replay a joining player gets);
//! - [`Writer::send_merged`]: live media, written within the connection's merge window. Every
//!   connection of an arbiter with a merged send waiting is written by one timer of that
//!   arbiter, so each connection makes one system call per window for all the frames of the
//!   window instead of one per frame. The kernel's cost of a TCP send was measured to be
//!   mostly per call, not per byte (on loopback, docs/benchmarks.md); on a network, fewer and
//!   larger writes also mean fewer, fuller packets.
//!
//! Both write directly (`try_write_vectored`) while the socket takes bytes. A socket that
//! takes less than it is offered gets a waiter, a task of its own that writes the rest as the
//! socket drains and ends once the queue is empty: a connection costs a task only while its
//! peer is behind, not for its whole life.
//!
//! Bounded: the queue holds at most [`QUEUE_BUFFERS`] buffers and [`MAX_QUEUE_BYTES`] bytes,
//! and the player's drop policy (in its session, or in its fan-out group's member) reads
//! [`Writer::pending_bytes`] before the queue fills. A session that answers what its client
//! sends reads that input through [`Writer::gate`]: while more than the read limit is unwritten,
//! the client's input is left in the socket, so a client that sends requests without reading
//! the answers fills its own socket buffers, not the server's memory. Queued bytes
//! that make no progress for [`WRITE_STALL`] end the connection ([`Writer::is_closed`], which
//! sessions check on their timer). Dropping the [`Writer`] writes what is queued and then
//! the socket is shut down (when the last of its holders lets go), so a refusal reaches the
//! client before the close; a peer that takes none of it for [`WRITE_STALL`] is cut off.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::io::IoSlice;
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes};
use futures_util::Stream;
use tokio::net::tcp::OwnedWriteHalf;

use super::{Output, SendError};
use crate::protocol::prefixed;
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

/// A unit of a connection's queue: bytes as they are, or a run of packets.
pub enum Part {
    /// Written as they are.
    Bytes(Bytes),
    /// See [`Packets`].
    Packets(Packets),
}

impl From<Bytes> for Part {
    fn from(bytes: Bytes) -> Part {
        Part::Bytes(bytes)
    }
}

impl From<Packets> for Part {
    fn from(packets: Packets) -> Part {
        Part::Packets(packets)
    }
}

impl Part {
    /// Bytes not yet written.
    fn len(&self) -> usize {
        match self {
            Part::Bytes(b) => b.len(),
            Part::Packets(p) => p.len(),
        }
    }
}

/// A connection's queued parts, in order. Bytes are queued as they are; a run of packets as an
/// empty buffer in their place (an empty part is never queued otherwise) and the run in a
/// queue of its own, so a queue's slot stays the size of a buffer (a connection's idle queue
/// keeps [`IDLE_CAPACITY`] slots) and a connection that never sends packets never allocates
/// that second queue.
#[derive(Default)]
struct Parts {
    bytes: VecDeque<Bytes>,
    packets: VecDeque<Packets>,
}

impl Parts {
    fn len(&self) -> usize {
        self.bytes.len()
    }

    fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    fn clear(&mut self) {
        self.bytes.clear();
        self.packets.clear();
    }

    /// Gives back what a burst grew, down to [`IDLE_CAPACITY`] slots.
    fn shrink(&mut self) {
        if self.bytes.capacity() > IDLE_CAPACITY {
            self.bytes.shrink_to(IDLE_CAPACITY);
        }
        if self.packets.capacity() > IDLE_CAPACITY {
            self.packets.shrink_to(IDLE_CAPACITY);
        }
    }

    /// Queues `parts`, `count` of them at least (room is made for them at once); empty ones
    /// are not queued: an empty buffer would read as a socket that takes no bytes.
    fn extend(&mut self, parts: impl Iterator<Item = Part>, count: usize) {
        self.bytes.reserve(count);
        for part in parts {
            match part {
                Part::Bytes(b) if !b.is_empty() => self.bytes.push_back(b),
                Part::Packets(p) if p.len() > 0 => {
                    self.bytes.push_back(Bytes::new());
                    self.packets.push_back(p);
                }
                _ => {}
            }
        }
    }

    /// Fills `slices` with what is not yet written, from the front; returns how many it filled.
    fn slices<'a>(&'a self, slices: &mut [IoSlice<'a>]) -> usize {
        let mut packets = self.packets.iter();
        let mut n = 0;
        for b in &self.bytes {
            if n == slices.len() {
                break;
            }
            if b.is_empty() {
                let run = packets.next().expect("a run of packets per empty buffer");
                n += run.slices(&mut slices[n..]);
            } else {
                slices[n] = IoSlice::new(b);
                n += 1;
            }
        }
        n
    }

    /// Lets go of `written` bytes from the front.
    fn advance(&mut self, mut written: usize) {
        while written > 0 {
            let front = self.bytes.front_mut().expect("written bytes were queued");
            if !front.is_empty() {
                if written < front.len() {
                    front.advance(written);
                    return;
                }
                written -= front.len();
            } else {
                let run = self.packets.front_mut().expect("a run per empty buffer");
                if written < run.len() {
                    run.written += written;
                    return;
                }
                written -= run.len();
                self.packets.pop_front();
            }
            self.bytes.pop_front();
        }
    }
}

/// Packets queued as one part, each written as a head of the connection's own and a body from
/// a buffer other connections share: the `n`-th packet is the `n`-th `head` bytes of `heads`,
/// then the `n`-th item of `bodies` ([`prefixed`]) without its first `skip` bytes. A frame's
/// RTP packets for one RTSP player go so: one part (two buffers' reference counts) instead of
/// two buffers per packet.
pub struct Packets {
    heads: Box<[u8]>,
    bodies: Bytes,
    head: u8,
    skip: u8,
    /// Bytes of all the packets, and of them written so far.
    len: usize,
    written: usize,
}

impl Packets {
    /// One packet per `head` bytes of `heads` (its items beyond those are not written), each
    /// followed by its item of `bodies` less its first `skip` bytes. `head` is not zero.
    pub fn new(heads: Vec<u8>, head: u8, bodies: Bytes, skip: u8) -> Packets {
        assert!(head > 0, "a packet has a head");
        let count = heads.len() / usize::from(head);
        let (mut len, mut packets) = (0, 0);
        for item in prefixed::items(&bodies).take(count) {
            len += usize::from(head) + item.len().saturating_sub(usize::from(skip));
            packets += 1;
        }
        let mut heads = heads;
        heads.truncate(packets * usize::from(head));
        Packets {
            heads: heads.into_boxed_slice(),
            bodies,
            head,
            skip,
            len,
            written: 0,
        }
    }

    /// Bytes not yet written.
    fn len(&self) -> usize {
        self.len - self.written
    }

    /// Fills `slices` with what is not yet written, from the front; returns how many it filled
    /// (all of them when there is more).
    fn slices<'a>(&'a self, slices: &mut [IoSlice<'a>]) -> usize {
        let (head, skip) = (usize::from(self.head), usize::from(self.skip));
        let written = self.written;
        let (mut at, mut filled) = (0, 0);
        let heads = self.heads.chunks_exact(head);
        for (own, item) in heads.zip(prefixed::items(&self.bodies)) {
            let body = &self.bodies[(item.start + skip).min(item.end)..item.end];
            for segment in [own, body] {
                let end = at + segment.len();
                if end > written && !segment.is_empty() {
                    let Some(slot) = slices.get_mut(filled) else {
                        return filled;
                    };
                    *slot = IoSlice::new(&segment[written.saturating_sub(at)..]);
                    filled += 1;
                }
                at = end;
            }
        }
        filled
    }
}

/// What the session, its arbiter's writes and its waiter share (one thread). The socket's
/// write half is shut down when the last of them lets go.
struct Queue {
    socket: OwnedWriteHalf,
    queue: RefCell<Parts>,
    /// Bytes queued and not yet written.
    pending: Cell<usize>,
    /// When the socket last took bytes (or the queue last went from empty to not empty).
    progress: Cell<Instant>,
    /// In its arbiter's list of queues written at the end of the turn.
    listed: Cell<bool>,
    /// Waiting in this arbiter's merge list.
    merging: Cell<bool>,
    /// The socket took less than it was offered: the waiter writes the rest.
    blocked: Cell<bool>,
    /// The waiter, while there is one.
    waiter: Cell<Option<actix_rt::task::JoinHandle<()>>>,
    /// The session let go.
    released: Cell<bool>,
    /// Nothing more is written (a write failed, or the peer took nothing for too long).
    ended: Cell<bool>,
    /// The error that ended the writes, if one did.
    error: Cell<Option<std::io::ErrorKind>>,
    /// Unwritten bytes above which a [`Gated`] input is not read.
    read_limit: Cell<usize>,
    /// The [`Gated`] input waiting for the queue to go under the read limit.
    read_waker: Cell<Option<Waker>>,
    /// Bytes the socket took, over the connection (the session's usage).
    written: Counter,
}

impl Queue {
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

    /// Ends the writes: what is queued is let go and a gated input reads on (to its end).
    fn end(&self, error: Option<std::io::ErrorKind>) {
        self.ended.set(true);
        if self.error.get().is_none() {
            self.error.set(error);
        }
        self.queue.borrow_mut().clear();
        self.wake_reader();
    }
}

/// Queue handle held by the session actor.
pub struct Writer {
    state: Rc<Queue>,
    merge: Duration,
}

impl Writer {
    /// The output of `socket` on the current arbiter. `merge` is the connection's merge window
    /// for [`Writer::send_merged`] (zero: no merging).
    /// Every byte the socket takes is counted into `written`.
    pub fn new(socket: OwnedWriteHalf, merge: Duration, written: Counter) -> Writer {
        let state = Rc::new(Queue {
            socket,
            queue: RefCell::new(Parts::default()),
            pending: Cell::new(0),
            progress: Cell::new(Instant::now()),
            listed: Cell::new(false),
            merging: Cell::new(false),
            blocked: Cell::new(false),
            waiter: Cell::new(None),
            released: Cell::new(false),
            ended: Cell::new(false),
            error: Cell::new(None),
            read_limit: Cell::new(DEFAULT_READ_LIMIT),
            read_waker: Cell::new(None),
            written,
        });
        Writer { state, merge }
    }

    /// Queues bytes to be written at the end of the arbiter's current turn.
    pub fn send(&self, bytes: Bytes) -> Result<(), SendError> {
        self.push(bytes)?;
        write_soon(&self.state);
        Ok(())
    }

    /// Queues live media: written within the merge window, together with whatever else this
    /// connection queued in it.
    pub fn send_merged(&self, bytes: Bytes) -> Result<(), SendError> {
        self.push(bytes)?;
        self.merge_soon();
        Ok(())
    }

    /// Queues `parts` (taken out of the vector) all or none, so a unit split over parts
    /// (the frames the join pacer released together) is never queued in part: live media
    /// (`merged`, as [`Self::send_merged`]) or written at the end of the turn (as
    /// [`Self::send`]).
    pub fn send_parts(&self, parts: &mut Vec<Part>, merged: bool) -> Result<(), SendError> {
        let bytes: usize = parts.iter().map(Part::len).sum();
        if let Err(e) = self.room(parts.len(), bytes) {
            parts.clear();
            return Err(e);
        }
        // Room for all of them was checked at once, not again per part.
        self.enqueue(parts.drain(..), bytes);
        if merged {
            self.merge_soon();
        } else {
            write_soon(&self.state);
        }
        Ok(())
    }

    /// Has what is queued written within the merge window.
    fn merge_soon(&self) {
        let state = &self.state;
        if self.merge.is_zero() {
            write_soon(state);
        } else if !(state.listed.get() || state.merging.get() || state.blocked.get()) {
            state.merging.set(true);
            merge_later(self.merge, state.clone());
        }
    }

    /// Whether `buffers` more buffers, `bytes` in all, may be queued: `Closed` once the
    /// writes ended, `Full` past [`QUEUE_BUFFERS`] or [`MAX_QUEUE_BYTES`].
    fn room(&self, buffers: usize, bytes: usize) -> Result<(), SendError> {
        let state = &self.state;
        if state.ended.get() {
            return Err(SendError::Closed);
        }
        if state.queue.borrow().len() + buffers > QUEUE_BUFFERS
            || state.pending.get() + bytes > MAX_QUEUE_BYTES
        {
            return Err(SendError::Full);
        }
        Ok(())
    }

    fn push(&self, bytes: Bytes) -> Result<(), SendError> {
        // An empty buffer takes no room (it is not queued) but a closed output still refuses it.
        self.room(usize::from(!bytes.is_empty()), bytes.len())?;
        let len = bytes.len();
        self.enqueue(std::iter::once(Part::Bytes(bytes)), len);
        Ok(())
    }

    /// Queues `buffers`, `bytes` in all, that [`Self::room`] made room for.
    fn enqueue(&self, buffers: impl Iterator<Item = Part>, bytes: usize) {
        let state = &self.state;
        if bytes > 0 && state.pending.get() == 0 {
            state.progress.set(Instant::now());
        }
        state.pending.set(state.pending.get() + bytes);
        let mut queue = state.queue.borrow_mut();
        // Grown once for all of them, not a doubling at a time.
        let count = buffers.size_hint().0;
        queue.extend(buffers, count);
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

    /// True when the writes have ended (the socket failed), or when queued bytes have made no
    /// progress into the socket for [`WRITE_STALL`] (the session then closes). Sessions check
    /// this on their timer, so no timer is armed per write.
    pub fn is_closed(&self) -> bool {
        self.state.ended.get() || Output::write_stalled(self)
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
        self.waiting_for()
            .is_some_and(|waited| waited > WRITE_STALL)
    }

    fn write_error(&self) -> Option<std::io::ErrorKind> {
        self.state.error.get()
    }

    fn waiting_for(&self) -> Option<Duration> {
        let state = &self.state;
        (!state.ended.get() && state.pending.get() > 0).then(|| state.progress.get().elapsed())
    }
}

impl Drop for Writer {
    /// What is queued is still written (a refusal must reach the client); a peer that takes
    /// none of it for [`WRITE_STALL`] is cut off.
    fn drop(&mut self) {
        let state = &self.state;
        state.released.set(true);
        if state.blocked.get() {
            cut_off_later(state);
        } else if state.pending.get() > 0 {
            write_soon(state);
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
            // Woken when the queue drains under the limit (or the writes end).
            self.state.read_waker.set(Some(cx.waker().clone()));
            return Poll::Pending;
        }
        Pin::new(&mut self.input).poll_next(cx)
    }
}

/// Writes the queue while the socket takes bytes: ready when it is empty, pending when the
/// socket is full, `Err` when it fails.
fn write_some(state: &Queue) -> Poll<std::io::Result<()>> {
    let mut queue = state.queue.borrow_mut();
    loop {
        if queue.is_empty() {
            queue.shrink();
            return Poll::Ready(Ok(()));
        }
        // On the stack: no allocation per write.
        let mut slices = [IoSlice::new(&[]); BATCH];
        let n = queue.slices(&mut slices);
        let written = match state.socket.try_write_vectored(&slices[..n]) {
            Ok(0) => return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into())),
            Ok(written) => written,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Poll::Pending,
            Err(e) => return Poll::Ready(Err(e)),
        };
        state.progress.set(Instant::now());
        state.written.add(written as u64);
        state
            .pending
            .set(state.pending.get().saturating_sub(written));
        state.wake_reader();
        queue.advance(written);
    }
}

/// Writes what `state` has queued, now; a socket that is full gets a waiter for the rest.
fn write_out(state: &Rc<Queue>) {
    if state.blocked.get() || state.ended.get() {
        return;
    }
    match write_some(state) {
        Poll::Ready(Ok(())) => {}
        Poll::Ready(Err(e)) => state.end(Some(e.kind())),
        Poll::Pending => {
            state.blocked.set(true);
            state.waiter.set(Some(actix_rt::spawn(wait(state.clone()))));
            if state.released.get() {
                cut_off_later(state);
            }
        }
    }
}

/// The waiter of a full socket: writes as the socket drains, until the queue is empty.
async fn wait(state: Rc<Queue>) {
    loop {
        if let Err(e) = state.socket.writable().await {
            state.end(Some(e.kind()));
            break;
        }
        match write_some(&state) {
            Poll::Pending => continue,
            Poll::Ready(Ok(())) => break,
            Poll::Ready(Err(e)) => {
                state.end(Some(e.kind()));
                break;
            }
        }
    }
    state.blocked.set(false);
    // Its own handle: dropping it lets the task run to its end.
    drop(state.waiter.take());
}

/// A released queue whose socket is full: its waiter is ended after [`WRITE_STALL`] unless
/// the socket took everything by then. Holds it weakly, so a socket that did is shut down
/// at once.
fn cut_off_later(state: &Rc<Queue>) {
    let state = Rc::downgrade(state);
    actix_rt::spawn(async move {
        actix_rt::time::sleep(WRITE_STALL).await;
        let Some(state) = Weak::upgrade(&state) else {
            return;
        };
        if let Some(waiter) = state.waiter.take() {
            waiter.abort();
        }
        state.blocked.set(false);
        state.end(None);
    });
}

/// Lists `state` to be written once the arbiter's current turn is over: the first
/// connection listed in a turn starts the one flush that writes them all.
fn write_soon(state: &Rc<Queue>) {
    if state.listed.get() || state.blocked.get() || state.ended.get() {
        return;
    }
    // None while the arbiter's thread is ending (a writer let go with its fan-out group):
    // nothing runs after that to write it.
    let first = ArbiterState::try_with(|arbiter| {
        let mut due = arbiter.due.borrow_mut();
        due.0.push(state.clone());
        due.0.len() == 1
    });
    state.listed.set(first.is_some());
    if first == Some(true) {
        actix_rt::spawn(async {
            let due = ArbiterState::with(|arbiter| std::mem::take(&mut arbiter.due.borrow_mut().0));
            for state in due {
                state.listed.set(false);
                write_out(&state);
            }
        });
    }
}

/// The connections listed to be written at the end of the arbiter's turn ([`write_soon`]).
#[derive(Default)]
pub struct DueList(Vec<Rc<Queue>>);

/// The connections of one merge window waiting on this arbiter, and whether its timer runs.
pub struct MergeList {
    window: Duration,
    waiting: Vec<Rc<Queue>>,
    armed: bool,
}

/// Writes `state` when this arbiter's timer for `window` fires: the first connection to wait
/// arms it, every later one joins the same list.
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
                write_out(&state);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::core::{Count, Usage};
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
            Writer::new(write, merge, Usage::new().counter(Count::BytesOut)),
            client,
        )
    }

    /// Everything the client reads until the server shuts the socket down.
    async fn read_to_close(client: &mut TcpStream) -> Vec<u8> {
        let mut got = Vec::new();
        client
            .read_to_end(&mut got)
            .await
            .expect("read until the close");
        got
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
        let got = read_to_close(&mut client).await;
        assert_eq!(got, b"one two three now last");
    }

    #[actix_rt::test]
    async fn parts_are_queued_all_or_none() {
        let (writer, mut client) = pair(Duration::from_millis(30)).await;
        let mut parts: Vec<Part> = vec![
            Bytes::from_static(b"$head ").into(),
            Bytes::from_static(b"payload ").into(),
        ];
        writer.send_parts(&mut parts, true).expect("queued");
        assert!(parts.is_empty(), "taken out of the vector");
        // More buffers than a queue holds: none of them is queued.
        let mut too_many: Vec<Part> = (0..QUEUE_BUFFERS)
            .map(|_| Bytes::from_static(b"x").into())
            .collect();
        assert!(matches!(
            writer.send_parts(&mut too_many, true),
            Err(SendError::Full)
        ));
        assert!(too_many.is_empty());
        let mut last: Vec<Part> = vec![
            Bytes::from_static(b"$next ").into(),
            Bytes::from_static(b"end").into(),
        ];
        writer.send_parts(&mut last, false).expect("queued");
        drop(writer);
        let got = read_to_close(&mut client).await;
        assert_eq!(got, b"$head payload $next end");
    }

    /// `count` packets of `size`-byte bodies behind a `skip`-byte prefix, and 3-byte heads:
    /// the part, and the bytes it stands for.
    fn packets(count: usize, size: usize, skip: u8) -> (Packets, Vec<u8>) {
        let (mut heads, mut bodies, mut expected) = (Vec::new(), Vec::new(), Vec::new());
        for n in 0..count {
            let head = [b'<', n as u8, b'>'];
            let body: Vec<u8> = (0..size).map(|i| (i + n) as u8).collect();
            let mut item = vec![0xee; usize::from(skip)];
            item.extend_from_slice(&body);
            prefixed::put(&mut bodies, &item);
            heads.extend_from_slice(&head);
            expected.extend_from_slice(&head);
            expected.extend_from_slice(&body);
        }
        let part = Packets::new(heads, 3, Bytes::from(bodies), skip);
        (part, expected)
    }

    #[test]
    fn packets_stand_for_their_heads_and_bodies_between_other_parts() {
        let (run, expected) = packets(5, 10, 2);
        let mut queue = Parts::default();
        let parts: Vec<Part> = vec![
            Bytes::from_static(b"[").into(),
            run.into(),
            Bytes::new().into(),
            Bytes::from_static(b"]").into(),
        ];
        queue.extend(parts.into_iter(), 4);
        assert_eq!(queue.len(), 3, "the empty buffer is not queued");
        let whole: Vec<u8> = [&b"["[..], &expected, b"]"].concat();
        let unwritten = |queue: &Parts| {
            let mut slices = [IoSlice::new(&[]); 16];
            let n = queue.slices(&mut slices);
            let bytes: Vec<u8> = slices[..n].iter().flat_map(|s| s.to_vec()).collect();
            (n, bytes)
        };
        let (n, joined) = unwritten(&queue);
        assert_eq!(n, 12, "a head and a body per packet, and the two buffers");
        assert_eq!(joined, whole);
        // Fewer slots than slices: the front of it, then the rest after partial writes.
        let mut few = [IoSlice::new(&[]); 3];
        assert_eq!(queue.slices(&mut few), 3);
        let mut at = 0;
        for step in [1, 3, 4, 30, 1] {
            queue.advance(step);
            at += step;
            assert_eq!(unwritten(&queue).1, whole[at..], "after {at} bytes");
        }
        queue.advance(whole.len() - at);
        assert!(queue.is_empty() && queue.packets.is_empty());
        // Heads beyond the bodies' items, and items beyond the heads, are not written.
        let (short, _) = packets(2, 4, 0);
        let run = Packets::new(vec![b'h'; 9], 3, short.bodies.clone(), 0);
        assert_eq!(run.len(), 2 * (3 + 4));
        let run = Packets::new(vec![b'h'; 3], 3, short.bodies, 0);
        assert_eq!(run.len(), 3 + 4);
    }

    #[actix_rt::test]
    async fn packets_go_out_whole_through_a_full_socket_and_between_other_sends() {
        let (writer, mut client) = pair(Duration::from_millis(10)).await;
        let mut expected = Vec::new();
        for round in 0..40 {
            // Many packets per part (more slices than one write takes) and large bodies (more
            // than the socket takes while the client does not read).
            let (part, bytes) = packets(100 + round, 1400, 6);
            let mut parts = vec![Part::from(part)];
            writer
                .send_parts(&mut parts, round % 2 == 0)
                .expect("queued");
            expected.extend_from_slice(&bytes);
            writer
                .send(Bytes::from(vec![round as u8; 7]))
                .expect("queued");
            expected.extend_from_slice(&[round as u8; 7]);
        }
        assert!(writer.pending_bytes() > 0);
        drop(writer);
        let got = read_to_close(&mut client).await;
        assert_eq!(got.len(), expected.len());
        assert!(got == expected, "every byte in order");
    }

    #[actix_rt::test]
    async fn what_a_full_socket_did_not_take_is_written_as_it_drains_even_after_a_drop() {
        let (writer, mut client) = pair(Duration::ZERO).await;
        // Far more than the socket buffers take while the client does not read.
        let chunk = Bytes::from((0..1u32 << 20).map(|i| i as u8).collect::<Vec<u8>>());
        for _ in 0..16 {
            writer.send(chunk.clone()).expect("queued");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        let waiting = writer.pending_bytes();
        assert!(waiting > 0, "the socket could not take it all");
        assert!(writer.state.blocked.get(), "a waiter writes the rest");
        let state = Rc::downgrade(&writer.state);
        drop(writer);
        let got = read_to_close(&mut client).await;
        assert_eq!(got.len(), 16 << 20);
        assert!(got.chunks(1 << 20).all(|c| c == &chunk[..]));
        assert!(
            state.upgrade().is_none(),
            "the queue is let go once written"
        );
    }

    #[actix_rt::test]
    async fn queued_bytes_count_their_wait_until_the_socket_takes_some() {
        let (writer, mut client) = pair(Duration::ZERO).await;
        assert_eq!(Output::waiting_for(&writer), None, "nothing queued");
        let chunk = Bytes::from(vec![0u8; 1 << 20]);
        for _ in 0..16 {
            writer.send(chunk.clone()).expect("queued");
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let waited = Output::waiting_for(&writer).expect("the client reads none of it");
        assert!(waited >= Duration::from_millis(200), "{waited:?}");
        // The client reads a little: the socket takes more, and the wait starts again.
        let mut buf = vec![0u8; 4 << 20];
        let mut read = 0;
        while read < buf.len() {
            read += client.read(&mut buf[read..]).await.expect("read");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        let waited = Output::waiting_for(&writer).expect("still more queued than read");
        assert!(waited < Duration::from_millis(200), "{waited:?}");
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
