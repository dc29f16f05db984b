//! The sessions of one worker arbiter, by clientid: what a server-wide kick (shutdown) and the
//! operator's view of the sessions reach. The table lives in the arbiter's
//! [`ArbiterState`](super::arbiter::ArbiterState), so a session registers with one map insert
//! on its own thread, and its usage counters are read there without a lock.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;

use actix::Recipient;
use serde::Serialize;
use streamgate_actors::session::{ClientId, Protocol, SessionInfo};
use streamgate_actors::stream::Kick;
use streamgate_actors::usage::EndReason;

use super::arbiter::ArbiterState;
use super::core::{Role, Usage};

/// One session as its arbiter's table holds it: shared with its core, which tells it when a
/// play or publish begins and ends ([`SessionView::begin`], [`SessionView::end`]).
///
/// What the operator's view shows of a session is written here once, when the session
/// connects and when a play or publish begins or ends, never per frame: its text fields as
/// shared strings, and the JSON of every field but the counters ([`SessionView::head`]), so
/// a page of sessions is copied out of the table without allocating or escaping per session.
pub struct SessionView {
    /// The id the hooks see.
    pub clientid: ClientId,
    /// The protocol.
    pub protocol: Protocol,
    /// The client's IP address, as text.
    pub addr: Arc<str>,
    /// Its usage counters (shared with the session).
    pub usage: Usage,
    /// When the connection was accepted, Unix milliseconds.
    since: u64,
    /// The play or publish the hook allowed, while it runs.
    active: RefCell<Option<ActiveView>>,
    /// The session's JSON up to its counters (see [`SessionView::head`]).
    head: RefCell<Arc<str>>,
    /// Kicks the session, and brings it its one-second checks ([`Control`]).
    pub control: Recipient<Control>,
}

/// What a session's arbiter tells it through its table entry.
#[derive(actix::Message, Debug, Clone)]
#[rtype(result = "()")]
pub enum Control {
    /// End the session (an operator's kick, the server stopping).
    Kick(Kick),
    /// The arbiter's one-second timer: the session's checks are due.
    Tick,
}

/// The play or publish a session runs, as the operator's view shows it.
struct ActiveView {
    role: Role,
    app: Arc<str>,
    name: Arc<str>,
    url: Arc<str>,
}

/// A protocol's place in the per-protocol counts, in the order of [`PROTOCOLS`].
fn protocol_index(protocol: Protocol) -> usize {
    match protocol {
        Protocol::Rtmp => 0,
        Protocol::Rtsp => 1,
        Protocol::Srt => 2,
        Protocol::HttpFlv => 3,
        Protocol::Hls => 4,
    }
}

/// A role's place in the per-role counts, in the order of [`ROLES`].
fn role_index(role: Option<Role>) -> usize {
    match role {
        None => 0,
        Some(Role::Publisher) => 1,
        Some(Role::Player) => 2,
    }
}

/// The protocols, in the order of the per-protocol counts.
pub const PROTOCOLS: [&str; 5] = ["rtmp", "rtsp", "srt", "httpflv", "hls"];
/// The roles, in the order of the per-role counts.
pub const ROLES: [&str; 3] = ["connecting", "publisher", "player"];

/// The name of a session's role in the API and `/metrics`: `connecting` until a play or
/// publish is allowed.
pub fn role_name(role: Option<Role>) -> &'static str {
    ROLES[role_index(role)]
}

/// The fields of a session's JSON that change only when a play or publish begins or ends,
/// in [`SessionSummary`]'s order.
#[derive(Serialize)]
struct Head<'a> {
    clientid: ClientId,
    protocol: &'static str,
    role: &'static str,
    addr: &'a str,
    app: &'a str,
    name: &'a str,
    url: &'a str,
    since: u64,
}

impl SessionView {
    /// The view of a session that has just connected (`connecting`).
    pub fn new(
        clientid: ClientId,
        protocol: Protocol,
        peer: SocketAddr,
        usage: Usage,
        control: Recipient<Control>,
    ) -> Self {
        let since = usage.used().start;
        let view = SessionView {
            clientid,
            protocol,
            addr: peer.ip().to_string().into(),
            usage,
            since,
            active: RefCell::new(None),
            head: RefCell::new(Arc::from("")),
            control,
        };
        view.write_head();
        view
    }

    /// Its role: `None` while connecting.
    fn role(&self) -> Option<Role> {
        self.active.borrow().as_ref().map(|a| a.role)
    }

    /// A play or publish the hook allowed begins, with these fields.
    pub fn begin(&self, role: Role, info: &SessionInfo) {
        let was = self.role();
        *self.active.borrow_mut() = Some(ActiveView {
            role,
            app: info.app.as_str().into(),
            name: info.name.as_str().into(),
            url: info.url.as_str().into(),
        });
        self.write_head();
        self.moved(was);
    }

    /// The play or publish ended; the connection may go on (`connecting` again).
    pub fn end(&self) {
        let was = self.role();
        if self.active.borrow_mut().take().is_some() {
            self.write_head();
            self.moved(was);
        }
    }

    /// Moves the session's count on its arbiter from role `was` to its role now.
    fn moved(&self, was: Option<Role>) {
        let protocol = protocol_index(self.protocol);
        let now = role_index(self.role());
        ArbiterState::try_with(|s| {
            let mut totals = s.totals.borrow_mut();
            totals.live[protocol][role_index(was)] -= 1;
            totals.live[protocol][now] += 1;
        });
    }

    /// Writes [`SessionView::head`] again from the fields now.
    fn write_head(&self) {
        let active = self.active.borrow();
        let text = |f: fn(&ActiveView) -> &Arc<str>| active.as_ref().map_or("", |a| &**f(a));
        let head = Head {
            clientid: self.clientid,
            protocol: self.protocol.as_str(),
            role: role_name(active.as_ref().map(|a| a.role)),
            addr: &self.addr,
            app: text(|a| &a.app),
            name: text(|a| &a.name),
            url: text(|a| &a.url),
            since: self.since,
        };
        let mut json = serde_json::to_string(&head).unwrap_or_default();
        // `{...,"since":N}` -> `{...,"since":N,`: the counters follow.
        json.pop();
        json.push(',');
        *self.head.borrow_mut() = json.into();
    }

    /// The session's JSON ([`SessionSummary`]'s) up to its counters: `{"clientid":...,
    /// "since":N,`; [`PageEntry::write`] adds the counters and the closing brace.
    pub fn head(&self) -> Arc<str> {
        self.head.borrow().clone()
    }

    /// Whether the session matches `filter`.
    fn matches(&self, filter: &Filter) -> bool {
        if filter.protocol.is_some_and(|p| p != self.protocol) {
            return false;
        }
        let active = self.active.borrow();
        if filter
            .role
            .is_some_and(|r| r != active.as_ref().map(|a| a.role))
        {
            return false;
        }
        let text = |f: fn(&ActiveView) -> &Arc<str>| active.as_ref().map_or("", |a| &**f(a));
        filter
            .app
            .as_deref()
            .is_none_or(|app| text(|a| &a.app) == app)
            && filter
                .name
                .as_deref()
                .is_none_or(|name| text(|a| &a.name) == name)
    }

    /// This session as the operator's view shows it.
    pub fn summary(&self) -> SessionSummary {
        let active = self.active.borrow();
        let text = |f: fn(&ActiveView) -> &Arc<str>| {
            active
                .as_ref()
                .map_or_else(|| Arc::from(""), |a| f(a).clone())
        };
        SessionSummary {
            clientid: self.clientid,
            protocol: self.protocol.as_str(),
            role: role_name(active.as_ref().map(|a| a.role)),
            addr: self.addr.clone(),
            app: text(|a| &a.app),
            name: text(|a| &a.name),
            url: text(|a| &a.url),
            since: self.since,
            bytes_in: self.usage.counts.bytes_in.get(),
            bytes_out: self.usage.counts.bytes_out.get(),
            frames_dropped: self.usage.counts.frames_dropped.get(),
        }
    }
}

/// Adds a session to the current arbiter's table (the arbiter's one-second timer starts with
/// its first session).
pub fn register(view: Rc<SessionView>) {
    ArbiterState::with(|s| {
        if !s.ticking.replace(true) {
            actix_rt::spawn(tick_every_second());
        }
        let (protocol, role) = (protocol_index(view.protocol), role_index(view.role()));
        s.totals.borrow_mut().live[protocol][role] += 1;
        s.sessions.borrow_mut().insert(view.clientid, view);
    });
}

/// The arbiter's one-second timer: one [`Control::Tick`] to each of its sessions a second (one
/// timer per arbiter instead of one held by every session), for as long as the arbiter runs.
async fn tick_every_second() {
    let mut every = actix_rt::time::interval(std::time::Duration::from_secs(1));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick is at once (and sends nothing); then every second, so a session's first
    // checks come within a second of its start, and every second after.
    every.tick().await;
    loop {
        every.tick().await;
        ArbiterState::with(|s| {
            for view in s.sessions.borrow().values() {
                view.control.do_send(Control::Tick);
            }
        });
    }
}

/// Takes a session out of the current arbiter's table (nothing while its thread is ending);
/// what it used joins the arbiter's totals of sessions gone.
pub fn unregister(clientid: ClientId) {
    ArbiterState::try_with(|s| {
        let Some(view) = s.sessions.borrow_mut().remove(&clientid) else {
            return;
        };
        let protocol = protocol_index(view.protocol);
        let mut totals = s.totals.borrow_mut();
        totals.live[protocol][role_index(view.role())] -= 1;
        totals.gone[protocol].add(&view.usage);
    });
}

/// Counts a play or publish that ended, by protocol, role and reason.
pub fn ended(protocol: Protocol, role: Role, reason: EndReason) {
    ArbiterState::try_with(|s| {
        let role = role_name(Some(role));
        *s.totals
            .borrow_mut()
            .ended
            .entry((protocol.as_str(), role, reason.as_str()))
            .or_default() += 1;
    });
}

/// Bytes and frames dropped of a set of sessions.
#[derive(Debug, Clone, Copy, Default)]
pub struct Traffic {
    /// Bytes received from their clients.
    pub bytes_in: u64,
    /// Bytes written to their clients.
    pub bytes_out: u64,
    /// Frames their drop policies left out.
    pub frames_dropped: u64,
}

impl Traffic {
    fn add(&mut self, usage: &Usage) {
        self.bytes_in += usage.counts.bytes_in.get();
        self.bytes_out += usage.counts.bytes_out.get();
        self.frames_dropped += usage.counts.frames_dropped.get();
    }

    fn merge(&mut self, other: &Traffic) {
        self.bytes_in += other.bytes_in;
        self.bytes_out += other.bytes_out;
        self.frames_dropped += other.frames_dropped;
    }
}

/// An arbiter's counts that its sessions keep up to date as they come, begin, end and go (never
/// per frame), for `/metrics`.
#[derive(Debug, Clone, Default)]
pub struct Totals {
    /// Sessions now, by protocol ([`PROTOCOLS`]) and role ([`ROLES`]).
    pub live: [[u64; 3]; PROTOCOLS.len()],
    /// Traffic of the sessions gone, by protocol ([`PROTOCOLS`]).
    pub gone: [Traffic; PROTOCOLS.len()],
    /// Plays and publishes ended, by protocol, role and reason.
    pub ended: HashMap<(&'static str, &'static str, &'static str), u64>,
}

/// The counts of `/metrics`, of one arbiter or (merged) of the server.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    /// Sessions now, by protocol ([`PROTOCOLS`]) and role ([`ROLES`]).
    pub sessions: [[u64; 3]; PROTOCOLS.len()],
    /// Traffic since the start, by protocol ([`PROTOCOLS`]): the sessions gone and those live.
    pub traffic: [Traffic; PROTOCOLS.len()],
    /// Plays and publishes ended, by protocol, role and reason.
    pub ended: HashMap<(&'static str, &'static str, &'static str), u64>,
}

impl Stats {
    /// Adds `other`'s counts.
    pub fn merge(&mut self, other: Stats) {
        for (mine, theirs) in self.sessions.iter_mut().zip(other.sessions) {
            for (m, t) in mine.iter_mut().zip(theirs) {
                *m += t;
            }
        }
        for (mine, theirs) in self.traffic.iter_mut().zip(&other.traffic) {
            mine.merge(theirs);
        }
        for (k, v) in other.ended {
            *self.ended.entry(k).or_default() += v;
        }
    }
}

/// The current arbiter's counts: read on its own thread, so a session that goes between two
/// reads moves from live to gone without being counted twice or lost. The session counts are
/// kept as sessions change ([`Totals`]); the traffic of the live sessions is their counters'
/// sum (the media path counts only each session's own).
pub fn stats() -> Stats {
    ArbiterState::with(|s| {
        let totals = s.totals.borrow();
        let mut stats = Stats {
            sessions: totals.live,
            traffic: totals.gone,
            ended: totals.ended.clone(),
        };
        for view in s.sessions.borrow().values() {
            stats.traffic[protocol_index(view.protocol)].add(&view.usage);
        }
        stats
    })
}

/// Sends `kick` to every session of the current arbiter; returns how many there were.
pub fn kick_all(kick: &Kick) -> usize {
    ArbiterState::with(|s| {
        let sessions = s.sessions.borrow();
        for view in sessions.values() {
            view.control.do_send(Control::Kick(kick.clone()));
        }
        sessions.len()
    })
}

/// How many sessions the current arbiter has.
pub fn count() -> usize {
    ArbiterState::with(|s| s.sessions.borrow().len())
}

// Its text fields are the table's own strings, shared (the documentation below is the OpenAPI
// document's description of a session).
/// What the operator's view shows of one session: plain data, sent across threads (the
/// API's `Session`).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(as = Session)]
pub struct SessionSummary {
    /// The id the hooks saw.
    pub clientid: ClientId,
    /// `rtmp`, `rtsp`, `srt` or `httpflv`.
    pub protocol: &'static str,
    /// `connecting` (no play or publish allowed yet), `publisher` or `player`.
    pub role: &'static str,
    /// The client's IP address.
    #[schema(value_type = String)]
    #[serde(serialize_with = "text")]
    pub addr: Arc<str>,
    /// The stream's application (empty while connecting).
    #[schema(value_type = String)]
    #[serde(serialize_with = "text")]
    pub app: Arc<str>,
    /// The stream's name (empty while connecting).
    #[schema(value_type = String)]
    #[serde(serialize_with = "text")]
    pub name: Arc<str>,
    /// The URL the client asked for (empty while connecting).
    #[schema(value_type = String)]
    #[serde(serialize_with = "text")]
    pub url: Arc<str>,
    /// When the connection was accepted, Unix milliseconds.
    pub since: u64,
    /// Bytes received on the client's connection.
    pub bytes_in: u64,
    /// Bytes written to the client's connection.
    pub bytes_out: u64,
    /// Frames a player's drop policy left out.
    pub frames_dropped: u64,
}

/// A shared string as a JSON string.
fn text<S: serde::Serializer>(value: &Arc<str>, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(value)
}

/// Every session of the current arbiter, as the operator's view shows them.
pub fn snapshot() -> Vec<SessionSummary> {
    ArbiterState::with(|s| s.sessions.borrow().values().map(|v| v.summary()).collect())
}

/// Session `clientid`, if it is on the current arbiter.
pub fn find(clientid: ClientId) -> Option<SessionSummary> {
    ArbiterState::with(|s| s.sessions.borrow().get(&clientid).map(|v| v.summary()))
}

/// Which sessions a page lists: every field that is set must match.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// The stream's application.
    pub app: Option<String>,
    /// The stream's name.
    pub name: Option<String>,
    /// The protocol.
    pub protocol: Option<Protocol>,
    /// The role (`None` inside: connecting).
    pub role: Option<Option<Role>>,
}

/// One session on a page: its JSON up to the counters, shared with the table, and the
/// counters read when the page was asked for.
#[derive(Debug, Clone)]
pub struct PageEntry {
    /// The session's clientid (the page's order).
    pub clientid: ClientId,
    head: Arc<str>,
    counters: [u64; 3],
}

impl PageEntry {
    /// Appends the session's JSON (what serializing its [`SessionSummary`] writes) to `out`.
    pub fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.head.as_bytes());
        let [bytes_in, bytes_out, frames_dropped] = self.counters;
        for (key, n) in [
            (&b"\"bytes_in\":"[..], bytes_in),
            (b",\"bytes_out\":", bytes_out),
            (b",\"frames_dropped\":", frames_dropped),
        ] {
            out.extend_from_slice(key);
            // A number never fails to serialize.
            let _ = serde_json::to_writer(&mut *out, &n);
        }
        out.push(b'}');
    }

    /// About how long its JSON is.
    pub fn json_len(&self) -> usize {
        self.head.len() + 96
    }
}

/// The current arbiter's sessions that match `filter`: how many, and the first `first` of
/// them by clientid (the table's order). Only those are copied out, and only their counters
/// are read.
pub fn page(filter: &Filter, first: usize) -> (usize, Vec<PageEntry>) {
    ArbiterState::with(|s| {
        let sessions = s.sessions.borrow();
        let mut total = 0;
        let mut entries = Vec::with_capacity(first.min(sessions.len()));
        for view in sessions.values().filter(|v| v.matches(filter)) {
            total += 1;
            if entries.len() < first {
                entries.push(PageEntry {
                    clientid: view.clientid,
                    head: view.head(),
                    counters: [
                        view.usage.counts.bytes_in.get(),
                        view.usage.counts.bytes_out.get(),
                        view.usage.counts.frames_dropped.get(),
                    ],
                });
            }
        }
        (total, entries)
    })
}

/// Sends `kick` to session `clientid` if it is on the current arbiter; whether it is.
pub fn kick(clientid: ClientId, kick: &Kick) -> bool {
    ArbiterState::with(|s| match s.sessions.borrow().get(&clientid) {
        Some(view) => {
            view.control.do_send(Control::Kick(kick.clone()));
            true
        }
        None => false,
    })
}
