//! The session core: what every session has, whatever its protocol. A session actor is its
//! protocol state, its [`Output`](super::output::Output) and one [`SessionCore`]; everything
//! below is written once here:
//!
//! - identity: the clientid the hooks see, the peer, the connection's tracing span;
//! - the hook calls of a play or publish and what follows them ([`request_play`],
//!   [`request_publish`]: hook first, nothing revealed or claimed before its answer), under
//!   the stream a hook's redirect renamed it to ([`Allowed`]);
//! - the active play or publish ([`Active`]), which owes exactly one `on_done` from the
//!   moment a hook allowed it ([`SessionCore::begin`]) to [`SessionCore::finish`];
//! - usage: start time, bytes in and out, frames dropped ([`Usage`]);
//! - the publisher's side of ingest (frames to the stream, a busy stream logged, not fatal),
//!   and the checks every session runs on its arbiter's one-second tick ([`SessionCore::tick`]);
//! - what a kick and the end of a stream under a player do.

use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use actix::{Actor, Addr, Arbiter, Recipient};
use streamgate_actors::media::{MediaFrame, StreamKey};
use streamgate_actors::notify::{self, Decision, DenyReason, NotifyActor};
use streamgate_actors::registry::{ClaimPublish, PublishRefused};
use streamgate_actors::session::{next_client_id, ClientId, Protocol, SessionInfo};
use streamgate_actors::stream::{
    Deliver, Kick, PublishFrame, PublishMetadata, Snapshot, StreamActor, StreamEnded, Subscribe,
    Unpublish, Unsubscribe,
};
use streamgate_actors::usage::{EndReason, UsageReport, Used};
use tracing::field::Empty;

use super::output::{Backlog, Gone, Output, PlayerLimits, SendError};
use super::{fanout, table, SessionContext};
use crate::cluster::Claim;
use crate::limits::Admission;

/// Mailbox capacity of every session: live frames (and control messages) waiting for it.
pub const SESSION_MAILBOX: usize = 1024;
/// A publisher that sends no media for this long is dropped, whatever else it still sends.
pub const PUBLISH_IDLE: Duration = Duration::from_secs(30);

/// A session's counts, in one allocation its parts share on its arbiter (its output counts
/// the bytes it writes, its drop policy the frames it drops, wherever they run).
#[derive(Debug, Default)]
pub struct Counts {
    /// Bytes received on the client's connection.
    pub bytes_in: Cell<u64>,
    /// Bytes handed to the client's connection.
    pub bytes_out: Cell<u64>,
    /// Frames a player's drop policy left out.
    pub frames_dropped: Cell<u64>,
}

/// Which of a session's [`Counts`].
#[derive(Debug, Clone, Copy)]
pub enum Count {
    /// [`Counts::bytes_in`].
    BytesIn,
    /// [`Counts::bytes_out`].
    BytesOut,
    /// [`Counts::frames_dropped`].
    FramesDropped,
}

/// One of a session's counts, for the part of it that adds to it.
#[derive(Debug, Clone)]
pub struct Counter {
    counts: Rc<Counts>,
    count: Count,
}

impl Counter {
    fn cell(&self) -> &Cell<u64> {
        match self.count {
            Count::BytesIn => &self.counts.bytes_in,
            Count::BytesOut => &self.counts.bytes_out,
            Count::FramesDropped => &self.counts.frames_dropped,
        }
    }

    /// Adds `n`.
    pub fn add(&self, n: u64) {
        let cell = self.cell();
        cell.set(cell.get() + n);
    }
}

/// What one session used, from its start. The next callbacks (`on_update`, a usage-carrying
/// `on_done`) and the operator API report it.
#[derive(Debug, Clone)]
pub struct Usage {
    /// When the connection was accepted (wall clock, for reports).
    pub start: SystemTime,
    /// The same moment on the monotonic clock (for durations).
    pub started: Instant,
    /// Bytes in and out, frames dropped.
    pub counts: Rc<Counts>,
}

impl Usage {
    /// A session's usage from now, nothing counted yet.
    pub(crate) fn new() -> Self {
        Usage {
            start: SystemTime::now(),
            started: Instant::now(),
            counts: Rc::default(),
        }
    }

    /// A handle that adds to `count`.
    pub fn counter(&self, count: Count) -> Counter {
        Counter {
            counts: self.counts.clone(),
            count,
        }
    }

    /// How long the session has run.
    pub fn duration(&self) -> Duration {
        self.started.elapsed()
    }

    /// What `on_update` reports: the usage so far.
    pub fn used(&self) -> Used {
        let start = self
            .start
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        Used {
            start,
            duration_ms: self.duration().as_millis() as u64,
            bytes_in: self.counts.bytes_in.get(),
            bytes_out: self.counts.bytes_out.get(),
        }
    }

    /// What `on_done` reports: the usage so far and why the session ended.
    pub fn report(&self, reason: EndReason) -> UsageReport {
        UsageReport {
            used: self.used(),
            reason,
        }
    }
}

/// Whether a session publishes or plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Sends a stream in.
    Publisher,
    /// Takes a stream out.
    Player,
}

/// An allowed play or publish. From [`SessionCore::begin`] on it owes exactly one `on_done`,
/// which [`Active::finish`] sends; consuming `self` there makes a second one impossible.
#[derive(Debug)]
pub struct Active {
    /// Publisher or player.
    pub role: Role,
    /// The fields its hooks were (and its `on_done` will be) sent with.
    pub info: SessionInfo,
    /// The stream it is attached to, once it is.
    pub stream: Option<Addr<StreamActor>>,
}

impl Active {
    /// Leaves the stream (a publisher's leaving ends it) and sends the one `on_done`.
    fn finish(self, context: &SessionContext, usage: UsageReport) {
        let clientid = self.info.clientid;
        if let Some(stream) = &self.stream {
            match self.role {
                Role::Publisher => stream.do_send(Unpublish { clientid }),
                Role::Player => stream.do_send(Unsubscribe { clientid }),
            }
        }
        if let (Some(cluster), Role::Publisher) = (&context.cluster, self.role) {
            cluster.release(&StreamKey::new(&*self.info.app, &*self.info.name), clientid);
        }
        tracing::info!(role = ?self.role, reason = usage.reason.as_str(), "session done");
        match recorded(context, self.info.protocol) {
            // Stored first, then delivered (and retried) from the outbox.
            Some(outbox) => outbox.done(self.info, usage),
            // Without an on_done URL the notifier would only count it delivered: no message
            // to its thread (a wake-up per ended session) for that.
            None if context
                .hooks
                .load()
                .get(self.info.protocol)
                .on_done
                .is_none() =>
            {
                context.done.finish()
            }
            None => context.notify.do_send(notify::Done {
                info: self.info,
                usage,
            }),
        }
    }
}

/// The outbox a session of `protocol` is recorded in: there is one and the protocol has an
/// `on_done` URL.
fn recorded(
    context: &SessionContext,
    protocol: Protocol,
) -> Option<&streamgate_actors::outbox::Outbox> {
    context
        .outbox
        .as_ref()
        .filter(|_| context.hooks.load().get(protocol).on_done.is_some())
}

/// What every session has; see the module documentation.
pub struct SessionCore {
    /// The id the hooks see.
    pub clientid: ClientId,
    /// The client's address.
    pub peer: SocketAddr,
    /// The protocol, as the hooks name it.
    pub protocol: Protocol,
    /// The connection's span: every log line of the session is in it.
    pub span: tracing::Span,
    /// The arbiter's notifier, the registry and the `on_done` count.
    pub context: SessionContext,
    /// What the session used.
    pub usage: Usage,
    /// A player's drop and stall policy over its output (with a fan-out group, its member
    /// drops frames; this one still judges the stall).
    pub backlog: Backlog,
    /// The protocol section's player limits.
    pub limits: PlayerLimits,
    active: Option<Active>,
    /// What ended the session, once something did: the first cause wins, and the `on_done`
    /// of the active play or publish carries it.
    end: Option<EndReason>,
    /// A player's place in its arbiter's fan-out group (leaving it is dropping it).
    membership: Option<fanout::Membership>,
    /// When a publisher's last media arrived (or its publish was allowed).
    last_media: Instant,
    /// When the active play or publish's next `on_update` is due (none without `on_update`).
    next_update: Option<Instant>,
    /// When its usage is next checkpointed in the outbox (none when it is not recorded).
    next_checkpoint: Option<Instant>,
    /// Counts the plays and publishes begun on this connection, so an `on_update` answer
    /// applies only to the one it was asked about.
    term: u64,
    dropped_ingest: u64,
    /// Its entry in its arbiter's session table, once registered.
    view: Option<Rc<table::SessionView>>,
    /// Its place within the section's connection limits, given back when the session ends.
    _admission: Admission,
}

impl Drop for SessionCore {
    fn drop(&mut self) {
        if self.view.is_some() {
            table::unregister(self.clientid);
        }
    }
}

impl SessionCore {
    /// The core of a new connection: a clientid of its own and a span that names it.
    pub fn new(
        protocol: Protocol,
        peer: SocketAddr,
        context: SessionContext,
        limits: PlayerLimits,
        admission: Admission,
    ) -> Self {
        let clientid = next_client_id();
        let span = tracing::info_span!(
            "session",
            clientid,
            peer = %peer,
            protocol = protocol.as_str(),
            app = Empty,
            name = Empty
        );
        let usage = Usage::new();
        let backlog =
            Backlog::new(limits, usage.counter(Count::FramesDropped)).in_span(span.clone());
        SessionCore {
            clientid,
            peer,
            protocol,
            span,
            context,
            usage,
            backlog,
            limits,
            active: None,
            end: None,
            membership: None,
            last_media: Instant::now(),
            next_update: None,
            next_checkpoint: None,
            term: 0,
            dropped_ingest: 0,
            view: None,
            _admission: admission,
        }
    }

    /// The hook fields of this session for `app`, `name`, `url` (RTMP also has a `tcurl`).
    pub fn info(&self, app: &str, name: &str, url: &str, tcurl: &str) -> SessionInfo {
        SessionInfo {
            protocol: self.protocol,
            clientid: self.clientid,
            addr: self.peer.ip(),
            app: app.to_owned(),
            url: url.to_owned(),
            name: name.to_owned(),
            tcurl: tcurl.to_owned(),
        }
    }

    /// Enters the session into its arbiter's table, where a kick of every session (shutdown),
    /// the operator's view and the arbiter's one-second timer reach it, through `control`.
    pub fn register(&mut self, control: Recipient<table::Control>) {
        let view = Rc::new(table::SessionView::new(
            self.clientid,
            self.protocol,
            self.peer,
            self.usage.clone(),
            control,
        ));
        table::register(view.clone());
        self.view = Some(view);
    }

    /// Enters the session's span (for a log line).
    pub fn enter(&self) -> tracing::span::EnteredSpan {
        self.span.clone().entered()
    }

    /// Logs a hook's answer to `call`.
    pub fn log_decision(&self, call: &str, decision: &Decision) {
        let _s = self.enter();
        match decision {
            // A rename is logged where it takes effect ([`SessionCore::begin`]).
            Decision::Allow | Decision::Rename { .. } => tracing::info!(call, "allowed"),
            Decision::Deny(DenyReason::Redirect { status, problem }) => tracing::info!(
                call,
                status,
                %problem,
                "refused: a redirect without a usable Location"
            ),
            Decision::Deny(reason) => tracing::info!(call, ?reason, "refused"),
        }
    }

    /// A drop policy for this player's frames that counts into its usage (a fan-out member's).
    pub fn player_backlog(&self) -> Backlog {
        Backlog::new(self.limits, self.usage.counter(Count::FramesDropped))
            .in_span(self.span.clone())
    }

    /// An allowed play of a stream that is not live: the play begins (so its `on_done` says
    /// what was asked) and ends at once, refused. The protocol answers its client.
    pub fn play_not_found(&mut self, allowed: Allowed) {
        self.log_decision("play", &Decision::Allow);
        self.begin(Role::Player, allowed, None);
        let _s = self.enter();
        tracing::info!("no such stream");
        drop(_s);
        self.ending(EndReason::Refused);
    }

    /// A play or publish the hook allowed: from here on exactly one `on_done` is owed, with
    /// the fields it was allowed as. A rename is logged and put in the session's span.
    pub fn begin(&mut self, role: Role, allowed: Allowed, stream: Option<Addr<StreamActor>>) {
        let Allowed { info, renamed_from } = allowed;
        if let Some(from) = renamed_from {
            let _s = self.enter();
            let to = StreamKey::new(&*info.app, &*info.name);
            tracing::info!(%from, %to, "renamed by the hook");
            drop(_s);
            // From here on the span names the stream the session plays or publishes. A field
            // recorded again is shown again after the first (tracing appends): only what
            // changed is, so the last `app` and `name` of a line are the stream's.
            if from.app != to.app {
                self.span.record("app", to.app.as_str());
            }
            if from.name != to.name {
                self.span.record("name", to.name.as_str());
            }
        }
        self.context.done.begin();
        self.last_media = Instant::now();
        self.term += 1;
        if let Some(view) = &self.view {
            view.begin(role, &info);
        }
        let table = self.context.hooks.load();
        let hooks = table.get(self.protocol);
        self.next_update = hooks
            .on_update
            .as_ref()
            .map(|_| self.last_media + hooks.update_interval);
        self.next_checkpoint = recorded(&self.context, self.protocol).map(|outbox| {
            outbox.begin(&info, self.usage.used());
            self.last_media + hooks.update_interval
        });
        self.active = Some(Active { role, info, stream });
    }

    /// Takes the outcome of a publish request ([`request_publish`], or the `call` before it
    /// that refused): logs the hook's answer and, when it allowed, begins the publish (from
    /// here on one `on_done` is owed) and attaches it to its stream. Returns what the
    /// protocol is to answer.
    pub fn publish_answered(&mut self, call: &str, outcome: PublishOutcome) -> PublishAnswer {
        let (allowed, answer, stream) = match outcome {
            PublishOutcome::Denied(decision) => {
                self.log_decision(call, &decision);
                return PublishAnswer::Denied(decision);
            }
            PublishOutcome::Publishing(allowed, stream) => {
                (allowed, PublishAnswer::Publish, Some(stream))
            }
            PublishOutcome::Taken(allowed) => (allowed, PublishAnswer::Taken, None),
            PublishOutcome::Unavailable(allowed) => (allowed, PublishAnswer::Unavailable, None),
        };
        self.log_decision(call, &Decision::Allow);
        let key = allowed.key();
        self.begin(Role::Publisher, allowed, None);
        match stream {
            Some(stream) => self.attach(stream),
            None => self.ending(EndReason::Refused),
        }
        if matches!(answer, PublishAnswer::Taken) {
            let _s = self.enter();
            tracing::info!(stream = %key, "already published by another client");
        }
        answer
    }

    /// Attaches the active play or publish to its stream.
    pub fn attach(&mut self, stream: Addr<StreamActor>) {
        if let Some(active) = self.active.as_mut() {
            active.stream = Some(stream);
        }
    }

    /// Makes this player a member of its arbiter's fan-out group (its snapshot written, the
    /// group writes its live frames to `writer` in the form `encoder` makes, from frame
    /// `from_seq` on); `session` is told metadata and the end of the stream.
    pub fn join_group<A>(
        &mut self,
        joining: fanout::Joining,
        writer: Rc<super::output::tcp::Writer>,
        encoder: Box<dyn fanout::Encode>,
        from_seq: u64,
        session: &Addr<A>,
    ) where
        A: Actor + actix::Handler<fanout::News>,
        A::Context: actix::dev::ToEnvelope<A, fanout::News>,
    {
        let member = fanout::Member {
            writer,
            backlog: self.player_backlog(),
            encoder,
            from_seq,
            news: session.clone().recipient(),
        };
        self.membership = Some(joining.activate(member));
    }

    /// Notes what ends the session (its `on_done` reason), unless something already did:
    /// the first cause wins.
    pub fn ending(&mut self, reason: EndReason) {
        self.end.get_or_insert(reason);
    }

    /// Why the session ends, once something noted it ([`SessionCore::ending`]).
    pub fn end_reason(&self) -> Option<EndReason> {
        self.end
    }

    /// Ends the active play or publish, if any: leaves the stream (and the fan-out group) and
    /// sends its one `on_done`, with the reason noted first ([`SessionCore::ending`]) or else
    /// `reason`. True when there was one. The connection may go on (an RTMP client that
    /// deleted its stream may play again): the next play or publish starts with no reason.
    pub fn finish(&mut self, reason: EndReason) -> bool {
        self.membership = None;
        self.next_update = None;
        self.next_checkpoint = None;
        if let Some(view) = &self.view {
            view.end();
        }
        let reason = self.end.take().unwrap_or(reason);
        let Some(active) = self.active.take() else {
            return false;
        };
        let _s = self.enter();
        table::ended(self.protocol, active.role, reason);
        active.finish(&self.context, self.usage.report(reason));
        true
    }

    /// Notes why a write to the client failed: a queue that stays full is a client not
    /// reading (`stalled`); a connection that is gone is [`SessionCore::client_gone`].
    pub fn send_failed(&mut self, error: SendError) {
        match error {
            SendError::Full => self.ending(EndReason::Stalled),
            SendError::Closed => self.client_gone(),
        }
    }

    /// How a client that went away without its protocol's goodbye ended its session: `closed`
    /// for HTTP-FLV, which has no other way to say it; `lost` for the others.
    pub fn client_gone(&mut self) {
        self.ending(match self.protocol {
            Protocol::HttpFlv => EndReason::Closed,
            _ => EndReason::Lost,
        });
    }

    /// The active play or publish.
    pub fn active(&self) -> Option<&Active> {
        self.active.as_ref()
    }

    /// Publisher or player, once a hook allowed one.
    pub fn role(&self) -> Option<Role> {
        self.active.as_ref().map(|a| a.role)
    }

    /// Whether the session has an allowed play.
    pub fn is_player(&self) -> bool {
        self.role() == Some(Role::Player)
    }

    /// Whether the session has an allowed publish.
    pub fn is_publisher(&self) -> bool {
        self.role() == Some(Role::Publisher)
    }

    /// The stream the session publishes, once it is claimed.
    pub fn publishing(&self) -> Option<&Addr<StreamActor>> {
        self.active
            .as_ref()
            .filter(|a| a.role == Role::Publisher)
            .and_then(|a| a.stream.as_ref())
    }

    /// Counts `bytes` received from the client.
    pub fn received(&self, bytes: usize) {
        let counted = &self.usage.counts.bytes_in;
        counted.set(counted.get() + bytes as u64);
    }

    /// Notes that the publisher's media (or its media-related traffic) arrived.
    pub fn media_arrived(&mut self) {
        self.last_media = Instant::now();
    }

    /// Hands a publisher's frame to its stream. A stream too busy to take it drops it (a
    /// publisher is never stopped for it), logged at every power of two.
    pub fn publish(&mut self, frame: MediaFrame) {
        let Some(stream) = self.publishing() else {
            return;
        };
        if stream.try_send(PublishFrame { frame }).is_ok() {
            return;
        }
        self.dropped_ingest += 1;
        if self.dropped_ingest.is_power_of_two() {
            let _s = self.enter();
            tracing::warn!(
                dropped = self.dropped_ingest,
                "stream busy; dropping frames"
            );
        }
    }

    /// Hands a publisher's metadata to its stream.
    pub fn publish_metadata(&self, metadata: streamgate_actors::media::Metadata) {
        if let Some(stream) = self.publishing() {
            stream.do_send(PublishMetadata { metadata });
        }
    }

    /// The checks every session runs on its arbiter's one-second tick: true when the session is to
    /// close, which is logged. A publisher whose media stopped for [`PUBLISH_IDLE`]; a
    /// connection whose output ended or made no progress; a player over its queue for its
    /// stall timeout.
    pub fn tick(&mut self, output: Option<&dyn Output>) -> bool {
        self.checkpoint();
        if self.is_publisher() && self.last_media.elapsed() > PUBLISH_IDLE {
            let _s = self.enter();
            tracing::info!("publisher sent no media for too long; closing");
            self.ending(EndReason::Idle);
            return true;
        }
        let Some(out) = output else {
            return false;
        };
        match self.backlog.output_gone(out) {
            Some(Gone::Stalled) => self.ending(EndReason::Stalled),
            Some(Gone::Closed) => self.client_gone(),
            None => return false,
        }
        true
    }

    /// Checkpoints the usage of the active play or publish in the outbox every
    /// `update_interval` (whether or not `on_update` is configured): what a `server_restart`
    /// `on_done` reports if the server dies before the session ends.
    fn checkpoint(&mut self) {
        let Some(due) = self.next_checkpoint else {
            return;
        };
        let now = Instant::now();
        if now < due {
            return;
        }
        let Some(outbox) = recorded(&self.context, self.protocol) else {
            return;
        };
        outbox.checkpoint(self.clientid, self.usage.used());
        self.next_checkpoint =
            Some(now + self.context.hooks.load().get(self.protocol).update_interval);
    }

    /// The active play or publish's `on_update`, when one is due (every `update_interval` from
    /// its start): the message and the term it is about ([`SessionCore::is_term`]).
    pub fn update_due(&mut self) -> Option<(u64, notify::Update)> {
        let due = self.next_update?;
        let active = self.active.as_ref()?;
        let now = Instant::now();
        if now < due {
            return None;
        }
        let interval = self.context.hooks.load().get(self.protocol).update_interval;
        self.next_update = Some(now + interval);
        let update = notify::Update {
            info: active.info.clone(),
            used: self.usage.used(),
        };
        Some((self.term, update))
    }

    /// Whether `term` (from [`SessionCore::update_due`]) is the play or publish still active.
    pub fn is_term(&self, term: u64) -> bool {
        self.active.is_some() && self.term == term
    }

    /// Logs a kick (a publisher taken over at shutdown, or an operator's); the session then
    /// stops and its `on_done` follows.
    pub fn kicked(&mut self, msg: &Kick) {
        let _s = self.enter();
        tracing::info!(reason = msg.reason, "closing the session");
        drop(_s);
        self.ending(msg.end);
    }

    /// The stream under a player ended: logged and finished. False (nothing done) when the
    /// session is not a player.
    pub fn stream_ended(&mut self, msg: &StreamEnded) -> bool {
        if !self.is_player() {
            return false;
        }
        let _s = self.enter();
        tracing::info!(stream = %msg.key, "stream ended under the player");
        drop(_s);
        self.finish(msg.end);
        true
    }

    /// Logs the start of the connection.
    pub fn started(&self) {
        let _s = self.enter();
        tracing::info!("connection started");
    }

    /// Ends what is active and logs the end of the connection (from `Actor::stopped`).
    pub fn stopped(&mut self) {
        // Nothing noted a cause: the connection ended under the session.
        self.finish(EndReason::Lost);
        let _s = self.enter();
        tracing::info!(
            bytes_in = self.usage.counts.bytes_in.get(),
            bytes_out = self.usage.counts.bytes_out.get(),
            "connection stopped"
        );
    }
}

/// How a player takes live frames.
pub enum Attach {
    /// As `Deliver` messages to its own session.
    Own {
        /// Where media goes.
        media: Recipient<Deliver>,
        /// Where the end of the stream is told.
        ended: Recipient<StreamEnded>,
    },
    /// Through its arbiter's [`fanout`] group, which writes them to its socket.
    Shared,
}

/// A play or publish a hook allowed, as what it goes on: the session's fields (the ones its
/// `on_done` reports), under the stream a `3xx`'s `Location` named when the hook renamed it.
/// [`SessionCore::begin`] takes it.
#[derive(Debug, Clone)]
pub struct Allowed {
    /// The fields, with the `app` and `name` it plays or publishes (`url` and `tcurl` stay
    /// what the client sent).
    pub info: SessionInfo,
    /// The stream the client asked for, when the hook renamed it.
    pub renamed_from: Option<StreamKey>,
}

impl Allowed {
    /// `info` as `decision` (which allowed it) says: renamed for a [`Decision::Rename`].
    fn by(decision: &Decision, mut info: SessionInfo) -> Allowed {
        let Decision::Rename { target, .. } = decision else {
            return Allowed {
                info,
                renamed_from: None,
            };
        };
        let from = StreamKey::new(&*info.app, &*info.name);
        let to = target.key(&info.app);
        if to == from {
            return Allowed {
                info,
                renamed_from: None,
            };
        }
        info.app = to.app;
        info.name = to.name;
        Allowed {
            info,
            renamed_from: Some(from),
        }
    }

    /// The stream it plays or publishes.
    pub fn key(&self) -> StreamKey {
        StreamKey::new(&*self.info.app, &*self.info.name)
    }
}

/// How a play request ended.
pub enum PlayOutcome {
    /// The hook refused.
    Denied(Decision),
    /// The hook allowed, but no such stream is live.
    NotFound(Allowed),
    /// Attached: write the snapshot, then live frames arrive as `Deliver` ([`Attach::Own`]),
    /// or (with [`Attach::Shared`]) activate the [`fanout::Joining`].
    Playing(
        Allowed,
        Addr<StreamActor>,
        Snapshot,
        Option<fanout::Joining>,
    ),
}

/// Asks the hook about a play of the stream `info` names, then finds the stream (the one a
/// hook's redirect named, if it did) and subscribes to it. Every protocol's player goes
/// through here, so the order (hook first, nothing revealed before it) is one.
pub async fn request_play(
    context: SessionContext,
    info: SessionInfo,
    attach: Attach,
) -> PlayOutcome {
    let clientid = info.clientid;
    let (allowed, stream) = match find_play(&context, info).await {
        Ok(found) => found,
        Err(outcome) => return *outcome,
    };
    match attach {
        Attach::Own { media, ended } => match stream
            .send(Subscribe {
                clientid,
                media,
                ended,
            })
            .await
        {
            Ok(snapshot) => PlayOutcome::Playing(allowed, stream, snapshot, None),
            Err(_) => PlayOutcome::NotFound(allowed),
        },
        Attach::Shared => match fanout::join(stream.clone()).await {
            Some((snapshot, joining)) => {
                PlayOutcome::Playing(allowed, stream, snapshot, Some(joining))
            }
            None => PlayOutcome::NotFound(allowed),
        },
    }
}

/// The first half of [`request_play`]: asks the hook about a play of the stream `info` names,
/// then finds the stream (the one a hook's redirect named, if it did), here or (in a
/// cluster) pulled from the node that has it, without subscribing to it. `Err` is the
/// outcome when the hook refused or no such stream is live.
pub async fn find_play(
    context: &SessionContext,
    info: SessionInfo,
) -> Result<(Allowed, Addr<StreamActor>), Box<PlayOutcome>> {
    let decision = if hooked(context, info.protocol, |n| &n.on_play) {
        ask(context.notify.send(notify::Play { info: info.clone() })).await
    } else {
        Decision::Allow
    };
    if !decision.is_allow() {
        return Err(Box::new(PlayOutcome::Denied(decision)));
    }
    let allowed = Allowed::by(&decision, info);
    let key = allowed.key();
    let local = context.streams.lookup(&key);
    let stream = match (local, &context.cluster) {
        // A relay pull that is starting has its stream registered before the owner's
        // snapshot is in it: wait for the pull, as its other players do, so the player
        // starts with the codec configs (RTSP's DESCRIBE needs them at once).
        (Some(_), Some(cluster)) if cluster.is_starting(&key) => match cluster.pull(&key).await {
            Some(stream) => stream,
            None => return Err(Box::new(PlayOutcome::NotFound(allowed))),
        },
        (Some(stream), _) => stream,
        // Not live here: pulled from the node that has it, when one does.
        (None, Some(cluster)) => match cluster.pull(&key).await {
            Some(stream) => stream,
            None => return Err(Box::new(PlayOutcome::NotFound(allowed))),
        },
        _ => return Err(Box::new(PlayOutcome::NotFound(allowed))),
    };
    Ok((allowed, stream))
}

/// How a publish request ended.
pub enum PublishOutcome {
    /// The hook refused.
    Denied(Decision),
    /// The hook allowed and the name is this session's: frames go to the stream.
    Publishing(Allowed, Addr<StreamActor>),
    /// The hook allowed, but another client publishes the name.
    Taken(Allowed),
    /// The hook allowed, but the name cannot be claimed: the registry is gone (the server is
    /// stopping), or in a cluster Redis cannot be reached.
    Unavailable(Allowed),
}

/// What a protocol answers a publish request ([`SessionCore::publish_answered`]).
#[derive(Debug)]
pub enum PublishAnswer {
    /// The hook refused (its answer, for the status).
    Denied(Decision),
    /// Publishing: accept, frames go to the stream.
    Publish,
    /// Another client publishes the name.
    Taken,
    /// The name cannot be claimed now (the server is stopping, or Redis is unreachable).
    Unavailable,
}

impl PublishOutcome {
    /// Whether the hook allowed it (and an `on_done` is owed, whatever followed).
    pub fn allowed(&self) -> bool {
        !matches!(self, PublishOutcome::Denied(_))
    }
}

/// Asks the hook about a publish of the stream `info` names, then claims the name (the one a
/// hook's redirect named, if it did: one publisher per name; a kick of the claim reaches
/// `kick`). Every protocol's publisher goes through here, so nothing is claimed before the
/// hook's answer.
pub async fn request_publish(
    context: SessionContext,
    info: SessionInfo,
    kick: Recipient<Kick>,
) -> PublishOutcome {
    let clientid = info.clientid;
    let arbiter = Arbiter::current();
    let decision = if hooked(&context, info.protocol, |n| &n.on_publish) {
        ask(context.notify.send(notify::Publish { info: info.clone() })).await
    } else {
        Decision::Allow
    };
    if !decision.is_allow() {
        return PublishOutcome::Denied(decision);
    }
    let allowed = Allowed::by(&decision, info);
    let key = allowed.key();
    // In a cluster the name is claimed cluster-wide first, then in the local registry.
    if let Some(cluster) = &context.cluster {
        match cluster.claim(&key, clientid).await {
            Claim::Claimed => {}
            Claim::Taken => return PublishOutcome::Taken(allowed),
            Claim::Unavailable => return PublishOutcome::Unavailable(allowed),
        }
    }
    let claim = context
        .registry
        .send(ClaimPublish {
            key: key.clone(),
            clientid,
            kick,
            arbiter,
        })
        .await;
    if let Some(cluster) = &context.cluster {
        match &claim {
            Ok(Ok(stream)) => cluster.claimed_stream(&key, clientid, stream.clone()),
            _ => cluster.release(&key, clientid),
        }
    }
    match claim {
        Ok(Ok(stream)) => PublishOutcome::Publishing(allowed, stream),
        Ok(Err(PublishRefused::AlreadyPublishing(_))) => PublishOutcome::Taken(allowed),
        Err(_) => PublishOutcome::Unavailable(allowed),
    }
}

/// Awaits a hook decision; a notifier that is gone refuses.
pub async fn ask<M>(request: actix::dev::Request<NotifyActor, M>) -> Decision
where
    M: actix::Message<Result = Decision> + Send + 'static,
    NotifyActor: actix::Handler<M>,
{
    request
        .await
        .unwrap_or_else(|e| Decision::Deny(DenyReason::Unreachable(e.to_string())))
}

/// Asks `on_connect` for `info` and, when it allows, goes on with `then` (the `call` that
/// follows: a play or publish request). Returns which call decided and the outcome (`denied`
/// makes one of a refused connect).
pub async fn after_connect<T>(
    context: SessionContext,
    info: SessionInfo,
    call: &'static str,
    then: impl std::future::Future<Output = T>,
    denied: impl FnOnce(Decision) -> T,
) -> (&'static str, T) {
    let connect = request_connect(&context, info).await;
    if !connect.is_allow() {
        return ("connect", denied(connect));
    }
    (call, then.await)
}

/// Asks `on_connect` for `info`.
pub fn request_connect(
    context: &SessionContext,
    info: SessionInfo,
) -> impl std::future::Future<Output = Decision> + 'static {
    let request = hooked(context, info.protocol, |n| &n.on_connect)
        .then(|| context.notify.send(notify::Connect { info }));
    async move {
        match request {
            Some(request) => ask(request).await,
            None => Decision::Allow,
        }
    }
}

/// Whether `protocol` has a URL for the callback `url` picks now. A callback without one is
/// allowed without asking the notifier (its answer would be `Allow`): a join with hooks off
/// then costs no round trip to the notifier's thread.
fn hooked(
    context: &SessionContext,
    protocol: streamgate_actors::session::Protocol,
    url: impl Fn(&notify::NotifyConfig) -> &Option<String>,
) -> bool {
    url(context.hooks.load().get(protocol)).is_some()
}
