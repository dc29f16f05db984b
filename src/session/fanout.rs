//! Arbiter-local fan-out: the players of one stream on one arbiter share one subscriber.
//!
//! Without it a stream sends one actix message per frame to every player, and each message
//! wakes that player's actor, which polls its mailbox, its socket reader and its timers
//! before it writes. With it the [`StreamActor`] sends one [`Deliver`] per frame to a
//! [`FanoutGroup`] on each arbiter that has players of the stream (one cross-thread hop per
//! frame per arbiter), and the group hands the frame to every local player's writer in one
//! loop: drop policy, the frame in the encoding those players share, a queued write.
//!
//! Joining without a gap or a duplicate: frames are numbered ([`Deliver::seq`]). A player
//! asks the stream for a [`Snapshot`] through its arbiter's group, which tells it the number
//! of the first live frame after the snapshot; it writes the snapshot, then becomes a
//! [`Member`] that takes frames from that number on. Frames the group handled between the
//! snapshot and the player's activation are replayed from the group's short history; a
//! player that missed more than that waits for the next keyframe.
//!
//! Everything here lives on one arbiter thread: the group's state is shared with its players'
//! sessions through `Rc`, and only [`Deliver`] and [`StreamEnded`] cross threads.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

use actix::prelude::*;
use bytes::Bytes;
use streamgate_actors::media::MediaFrame;
use streamgate_actors::session::next_internal_id;
use streamgate_actors::stream::{
    Deliver, Delivery, Snapshot, StreamActor, StreamEnded, Subscribe, Unsubscribe,
};

use super::arbiter::ArbiterState;
use super::output::tcp::Writer;
use super::output::{Backlog, SendError};

/// Frames a group keeps for players whose snapshot is older than the group's last frame:
/// about 2 s of a 25 fps stream with AAC audio, far more than the time between a snapshot and
/// the player's activation even when 1000 players join at once. A player that missed more
/// resumes at the next keyframe. Every frame kept here also keeps its shared encodings.
const HISTORY: usize = 128;
/// Payload bytes the history keeps at most, so a stream of very large frames cannot make each
/// group hold 128 of them; a joining player that missed more resumes at a keyframe, as above.
const HISTORY_BYTES: usize = 8 << 20;
/// Frames from the stream a group may have waiting before the stream drops to a keyframe.
const GROUP_MAILBOX: usize = 1024;

/// How a member's players want their frames on the wire.
pub trait Encode {
    /// Queues `frame` on `writer` as live media, in this player's wire form (nothing when it
    /// has none).
    fn write(&mut self, frame: &MediaFrame, writer: &Writer) -> Result<(), SendError>;
}

/// A player whose frames are one buffer each, shared by the players of its form.
pub trait Frames {
    /// `frame` in this player's wire form, or `None` when it has no such form.
    fn encode(&self, frame: &MediaFrame) -> Option<Bytes>;
}

impl<T: Frames> Encode for T {
    fn write(&mut self, frame: &MediaFrame, writer: &Writer) -> Result<(), SendError> {
        match self.encode(frame) {
            Some(bytes) => writer.send_merged(bytes),
            None => Ok(()),
        }
    }
}

/// One player of a group: where its frames go and how.
pub struct Member {
    /// The player's output.
    pub writer: Rc<Writer>,
    /// Its drop policy.
    pub backlog: Backlog,
    /// Its wire form.
    pub encoder: Box<dyn Encode>,
    /// The number of the first live frame it takes (its snapshot's [`Snapshot::next_seq`]).
    pub from_seq: u64,
    /// The player's session: the stream's metadata and its end are told to it.
    pub news: Recipient<News>,
}

/// What a group tells a member's session besides its media, through one address (every
/// handle on a session's address is an allocation the player holds for its life).
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub enum News {
    /// The stream's metadata changed.
    Metadata(Deliver),
    /// The stream ended.
    Ended(StreamEnded),
}

/// Writes a session's [`News`] handler: each piece goes to its `Deliver` or `StreamEnded`
/// handler.
macro_rules! group_member {
    ($session:ty) => {
        impl actix::Handler<$crate::session::fanout::News> for $session {
            type Result = ();

            fn handle(&mut self, msg: $crate::session::fanout::News, ctx: &mut Self::Context) {
                use streamgate_actors::stream::{Deliver, StreamEnded};
                match msg {
                    $crate::session::fanout::News::Metadata(m) => {
                        <Self as actix::Handler<Deliver>>::handle(self, m, ctx)
                    }
                    $crate::session::fanout::News::Ended(e) => {
                        <Self as actix::Handler<StreamEnded>>::handle(self, e, ctx)
                    }
                }
            }
        }
    };
}
pub(crate) use group_member;

impl Member {
    fn take(&mut self, frame: &MediaFrame, seq: u64) {
        if seq < self.from_seq || !self.backlog.admit(frame, self.writer.pending_bytes()) {
            return;
        }
        match self.encoder.write(frame, &self.writer) {
            Ok(()) => {}
            Err(SendError::Full) => self.backlog.overflowed(),
            // The session sees its writer closed on its next timer tick and leaves.
            Err(SendError::Closed) => {}
        }
    }
}

pub(super) struct GroupState {
    /// The id the group subscribes to the stream with.
    id: u64,
    stream: Addr<StreamActor>,
    addr: Option<Addr<FanoutGroup>>,
    /// The members, by slot: a slot a member left is `None` until the next joins into it,
    /// so leaving costs the same whatever the number of members.
    members: Vec<Option<Member>>,
    /// The free slots of `members`.
    free: Vec<usize>,
    /// Players waiting for their snapshot through this group.
    joining: usize,
    /// The last frames handled, with their numbers.
    history: VecDeque<(u64, MediaFrame)>,
    /// Payload bytes in `history`.
    history_bytes: usize,
    /// Set when the stream has ended.
    ended: Option<StreamEnded>,
    /// Taken out of this arbiter's table.
    closed: bool,
}

impl GroupState {
    /// How many members there are: the slots less the free ones.
    fn members(&self) -> usize {
        self.members.len() - self.free.len()
    }
}

/// A group's state, shared by the group actor and its players' sessions on one arbiter.
pub(super) type Group = Rc<RefCell<GroupState>>;

/// The group of `stream`'s players on this arbiter, started if there is none.
fn group_for(stream: &Addr<StreamActor>) -> Group {
    ArbiterState::with(|arbiter| {
        arbiter
            .groups
            .borrow_mut()
            .entry(stream.clone())
            .or_insert_with(|| {
                let state = Rc::new(RefCell::new(GroupState {
                    id: next_internal_id(),
                    stream: stream.clone(),
                    addr: None,
                    members: Vec::new(),
                    free: Vec::new(),
                    joining: 0,
                    history: VecDeque::new(),
                    history_bytes: 0,
                    ended: None,
                    closed: false,
                }));
                let addr = FanoutGroup {
                    state: state.clone(),
                }
                .start();
                state.borrow_mut().addr = Some(addr);
                state
            })
            .clone()
    })
}

/// Leaves this arbiter's table and the stream once no player is in or joining the group.
fn close_if_empty(state: &Group) {
    let mut group = state.borrow_mut();
    if group.closed || group.joining > 0 || group.members() > 0 {
        return;
    }
    group.closed = true;
    // `try_with`: a group may be let go while the arbiter's thread is ending.
    let _ = ArbiterState::try_with(|arbiter| {
        let mut groups = arbiter.groups.borrow_mut();
        if groups
            .get(&group.stream)
            .is_some_and(|g| Rc::ptr_eq(g, state))
        {
            groups.remove(&group.stream);
        }
    });
    group.stream.do_send(Unsubscribe { clientid: group.id });
    // With the stream's recipient gone too, the group actor stops.
    group.addr = None;
    group.history.clear();
    group.history_bytes = 0;
}

/// Asks `stream` for a snapshot through this arbiter's group. `None` when the stream is gone.
pub async fn join(stream: Addr<StreamActor>) -> Option<(Snapshot, Joining)> {
    let state = group_for(&stream);
    let (id, addr) = {
        let mut group = state.borrow_mut();
        group.joining += 1;
        (group.id, group.addr.clone())
    };
    let joining = Joining { state: Some(state) };
    let addr = addr?;
    let snapshot = stream
        .send(Subscribe {
            clientid: id,
            media: addr.clone().recipient(),
            ended: addr.recipient(),
        })
        .await
        .ok()?;
    Some((snapshot, joining))
}

/// A player between its snapshot and its first live frame; dropping it gives up the join.
pub struct Joining {
    state: Option<Group>,
}

impl Joining {
    /// Makes the player a member, after it has written its snapshot: frames the group
    /// already handled from the member's first number on are written to it now.
    pub fn activate(mut self, mut member: Member) -> Membership {
        let state = self.state.take().expect("activated once");
        let mut group = state.borrow_mut();
        group.joining -= 1;
        if let Some(ended) = &group.ended {
            member.news.do_send(News::Ended(ended.clone()));
        }
        let oldest = group.history.front().map(|(seq, _)| *seq);
        let newest = group.history.back().map(|(seq, _)| *seq);
        if let (Some(oldest), Some(newest)) = (oldest, newest) {
            if member.from_seq <= newest {
                if member.from_seq < oldest {
                    // More was missed than the history holds: resume at a keyframe.
                    member.backlog.overflowed();
                }
                for (seq, frame) in &group.history {
                    member.take(frame, *seq);
                }
            }
        }
        let slot = match group.free.pop() {
            Some(slot) => {
                group.members[slot] = Some(member);
                slot
            }
            None => {
                group.members.push(Some(member));
                group.members.len() - 1
            }
        };
        drop(group);
        Membership { state, slot }
    }
}

impl Drop for Joining {
    fn drop(&mut self) {
        if let Some(state) = self.state.take() {
            state.borrow_mut().joining -= 1;
            close_if_empty(&state);
        }
    }
}

/// A player's place in its group; dropping it leaves.
pub struct Membership {
    state: Group,
    /// Its slot in the group's members.
    slot: usize,
}

impl Drop for Membership {
    fn drop(&mut self) {
        let mut group = self.state.borrow_mut();
        let member = group.members[self.slot].take();
        group.free.push(self.slot);
        if group.members() == 0 {
            group.members.clear();
            group.free.clear();
        }
        drop(group);
        // Its writer and encoder are let go outside the group's borrow.
        drop(member);
        close_if_empty(&self.state);
    }
}

/// The subscriber the players of one stream on one arbiter share.
pub struct FanoutGroup {
    state: Group,
}

impl Actor for FanoutGroup {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(GROUP_MAILBOX);
    }
}

impl Handler<Deliver> for FanoutGroup {
    type Result = ();

    fn handle(&mut self, msg: Deliver, _ctx: &mut Self::Context) {
        let mut group = self.state.borrow_mut();
        match msg.item {
            Delivery::Frame(frame) => {
                for member in group.members.iter_mut().flatten() {
                    member.take(&frame, msg.seq);
                }
                group.history_bytes += frame.payload.len();
                group.history.push_back((msg.seq, frame));
                while group.history.len() > HISTORY
                    || (group.history_bytes > HISTORY_BYTES && group.history.len() > 1)
                {
                    let Some((_, old)) = group.history.pop_front() else {
                        break;
                    };
                    group.history_bytes -= old.payload.len();
                }
            }
            Delivery::Metadata(metadata) => {
                for member in group.members.iter().flatten() {
                    let _ = member.news.try_send(News::Metadata(Deliver {
                        item: Delivery::Metadata(metadata.clone()),
                        seq: msg.seq,
                    }));
                }
            }
        }
    }
}

impl Handler<StreamEnded> for FanoutGroup {
    type Result = ();

    fn handle(&mut self, msg: StreamEnded, _ctx: &mut Self::Context) {
        let mut group = self.state.borrow_mut();
        for member in group.members.iter().flatten() {
            member.news.do_send(News::Ended(msg.clone()));
        }
        group.ended = Some(msg);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use streamgate_actors::media::{Codec, FrameKind, StreamKey, Track};
    use streamgate_actors::registry::Registry;
    use streamgate_actors::stream::{Kick, PublishFrame};
    use tokio::io::AsyncReadExt;
    use tokio::net::{TcpListener, TcpStream};

    use super::*;
    use crate::session::core::{Count, Usage};
    use crate::session::PlayerLimits;

    /// Stands in for a player's session: takes metadata, the end of the stream and kicks.
    struct Session;

    impl Actor for Session {
        type Context = Context<Self>;
    }

    impl Handler<Deliver> for Session {
        type Result = ();
        fn handle(&mut self, _: Deliver, _: &mut Self::Context) {}
    }

    impl Handler<StreamEnded> for Session {
        type Result = ();
        fn handle(&mut self, _: StreamEnded, _: &mut Self::Context) {}
    }

    impl Handler<Kick> for Session {
        type Result = ();
        fn handle(&mut self, _: Kick, _: &mut Self::Context) {}
    }

    group_member!(Session);

    /// Each frame on the wire is its 8-byte number.
    struct Numbers;

    impl Frames for Numbers {
        fn encode(&self, frame: &MediaFrame) -> Option<Bytes> {
            Some(frame.payload.clone())
        }
    }

    fn frame(n: u64) -> MediaFrame {
        MediaFrame {
            track: Track::Video,
            codec: Codec::H264,
            kind: FrameKind::Media,
            dts: n as i64 * 40_000,
            pts: n as i64 * 40_000,
            keyframe: n == 0,
            payload: Bytes::copy_from_slice(&n.to_be_bytes()),
        }
    }

    struct Player {
        writer: Rc<Writer>,
        client: TcpStream,
        joining: Option<(u64, Joining)>,
        membership: Option<Membership>,
    }

    /// A player over a real socket that joins `stream`: its snapshot is written at once.
    async fn join_player(stream: &Addr<StreamActor>) -> Player {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let client = TcpStream::connect(listener.local_addr().expect("addr"))
            .await
            .expect("connect");
        let (server, _) = listener.accept().await.expect("accept");
        let writer = Rc::new(Writer::new(
            server.into_split().1,
            Duration::ZERO,
            Usage::new().counter(Count::BytesOut),
        ));
        let (snapshot, joining) = join(stream.clone()).await.expect("the stream is live");
        for f in &snapshot.gop {
            writer.send(f.payload.clone()).expect("queued");
        }
        Player {
            writer,
            client,
            joining: Some((snapshot.next_seq, joining)),
            membership: None,
        }
    }

    fn activate(player: &mut Player, session: &Addr<Session>) {
        let (from_seq, joining) = player.joining.take().expect("joined");
        let limits = PlayerLimits {
            queue_bytes: 1 << 20,
            stall_timeout: Duration::from_secs(10),
        };
        let member = Member {
            writer: player.writer.clone(),
            backlog: Backlog::new(limits, Usage::new().counter(Count::FramesDropped)),
            encoder: Box::new(Numbers),
            from_seq,
            news: session.clone().recipient(),
        };
        player.membership = Some(joining.activate(member));
    }

    async fn received(player: Player) -> Vec<u64> {
        let Player {
            writer,
            mut client,
            membership,
            ..
        } = player;
        drop(membership);
        drop(writer);
        let mut bytes = Vec::new();
        client.read_to_end(&mut bytes).await.expect("read");
        bytes
            .chunks(8)
            .map(|b| u64::from_be_bytes(b.try_into().expect("whole numbers")))
            .collect()
    }

    /// Lets the stream and the group handle what was sent to them.
    async fn settle() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    #[actix_rt::test]
    async fn players_joining_and_leaving_at_any_moment_get_every_frame_once_and_in_order() {
        let session = Session.start();
        let stream = StreamActor::new(
            StreamKey::new("live", "n"),
            1,
            0,
            session.clone().recipient(),
            Registry::default().start(),
        )
        .start();
        let publish = |range: std::ops::Range<u64>| {
            for n in range {
                stream.do_send(PublishFrame { frame: frame(n) });
            }
        };
        publish(0..10);
        let mut first = join_player(&stream).await;
        activate(&mut first, &session);
        publish(10..20);
        settle().await;
        // The second player's snapshot is taken, then the group handles frames 20..25
        // before the player is active: they come from the group's history.
        let mut second = join_player(&stream).await;
        publish(20..25);
        settle().await;
        activate(&mut second, &session);
        // The third joins through the same group while frames are in flight.
        let mut third = join_player(&stream).await;
        activate(&mut third, &session);
        publish(25..30);
        settle().await;
        // The second leaves; a fourth joins into its slot.
        assert_eq!(received(second).await, (0..30).collect::<Vec<_>>());
        let mut fourth = join_player(&stream).await;
        activate(&mut fourth, &session);
        let slots = ArbiterState::with(|a| {
            let groups = a.groups.borrow();
            let group = groups.values().next().expect("one group").borrow();
            (group.members.len(), group.members())
        });
        assert_eq!(slots, (3, 3), "the fourth took the slot the second left");
        publish(30..35);
        settle().await;
        let all: Vec<u64> = (0..35).collect();
        assert_eq!(received(first).await, all);
        assert_eq!(received(third).await, all);
        assert_eq!(received(fourth).await, all);
        // Every player left: the group left the stream and this arbiter's table.
        assert!(ArbiterState::with(|a| a.groups.borrow().is_empty()));
    }
}
