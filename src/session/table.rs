//! The sessions of one worker arbiter, by clientid: what a server-wide kick (shutdown) and the
//! operator's view of the sessions reach. The table lives in the arbiter's
//! [`ArbiterState`](super::arbiter::ArbiterState), so a session registers with one map insert
//! on its own thread, and its usage counters are read there without a lock.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;

use actix::Recipient;
use streamgate_actors::session::{ClientId, Protocol, SessionInfo};
use streamgate_actors::stream::Kick;
use streamgate_actors::usage::EndReason;

use super::arbiter::ArbiterState;
use super::core::{Role, Usage};

/// One session as its arbiter's table holds it: shared with its core, which keeps `active`
/// current.
pub struct SessionView {
    /// The id the hooks see.
    pub clientid: ClientId,
    /// The protocol.
    pub protocol: Protocol,
    /// The client's address.
    pub peer: SocketAddr,
    /// Its usage counters (shared with the session).
    pub usage: Usage,
    /// The play or publish the hook allowed, while it runs.
    pub active: RefCell<Option<(Role, SessionInfo)>>,
    /// Ends the session.
    pub kick: Recipient<Kick>,
}

/// The name of a session's role in the API and `/metrics`: `connecting` until a play or
/// publish is allowed.
pub fn role_name(role: Option<Role>) -> &'static str {
    match role {
        Some(Role::Publisher) => "publisher",
        Some(Role::Player) => "player",
        None => "connecting",
    }
}

/// Adds a session to the current arbiter's table.
pub fn register(view: Rc<SessionView>) {
    ArbiterState::with(|s| s.sessions.borrow_mut().insert(view.clientid, view));
}

/// Takes a session out of the current arbiter's table (nothing while its thread is ending);
/// what it used joins the arbiter's totals of sessions gone.
pub fn unregister(clientid: ClientId) {
    ArbiterState::try_with(|s| {
        let Some(view) = s.sessions.borrow_mut().remove(&clientid) else {
            return;
        };
        let mut totals = s.totals.borrow_mut();
        let gone = totals.gone.entry(view.protocol.as_str()).or_default();
        gone.add(&view.usage);
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
        self.bytes_in += usage.bytes_in.get();
        self.bytes_out += usage.bytes_out.get();
        self.frames_dropped += usage.frames_dropped.get();
    }

    fn merge(&mut self, other: &Traffic) {
        self.bytes_in += other.bytes_in;
        self.bytes_out += other.bytes_out;
        self.frames_dropped += other.frames_dropped;
    }
}

/// What an arbiter's sessions that are gone did, kept for the counters of `/metrics`.
#[derive(Debug, Clone, Default)]
pub struct Totals {
    /// Traffic of the sessions gone, by protocol.
    pub gone: HashMap<&'static str, Traffic>,
    /// Plays and publishes ended, by protocol, role and reason.
    pub ended: HashMap<(&'static str, &'static str, &'static str), u64>,
}

/// The counts of `/metrics`, of one arbiter or (merged) of the server.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    /// Sessions now, by protocol and role (`connecting`, `publisher`, `player`).
    pub sessions: HashMap<(&'static str, &'static str), u64>,
    /// Traffic since the start, by protocol: the sessions gone and those live.
    pub traffic: HashMap<&'static str, Traffic>,
    /// Plays and publishes ended, by protocol, role and reason.
    pub ended: HashMap<(&'static str, &'static str, &'static str), u64>,
}

impl Stats {
    /// Adds `other`'s counts.
    pub fn merge(&mut self, other: Stats) {
        for (k, v) in other.sessions {
            *self.sessions.entry(k).or_default() += v;
        }
        for (k, v) in other.traffic {
            self.traffic.entry(k).or_default().merge(&v);
        }
        for (k, v) in other.ended {
            *self.ended.entry(k).or_default() += v;
        }
    }
}

/// The current arbiter's counts: read on its own thread, so a session that goes between two
/// reads moves from live to gone without being counted twice or lost.
pub fn stats() -> Stats {
    ArbiterState::with(|s| {
        let totals = s.totals.borrow();
        let mut stats = Stats {
            traffic: totals.gone.clone(),
            ended: totals.ended.clone(),
            ..Stats::default()
        };
        for view in s.sessions.borrow().values() {
            let role = role_name(view.active.borrow().as_ref().map(|(role, _)| *role));
            *stats
                .sessions
                .entry((view.protocol.as_str(), role))
                .or_default() += 1;
            stats
                .traffic
                .entry(view.protocol.as_str())
                .or_default()
                .add(&view.usage);
        }
        stats
    })
}

/// Sends `kick` to every session of the current arbiter; returns how many there were.
pub fn kick_all(kick: &Kick) -> usize {
    ArbiterState::with(|s| {
        let sessions = s.sessions.borrow();
        for view in sessions.values() {
            view.kick.do_send(kick.clone());
        }
        sessions.len()
    })
}

/// How many sessions the current arbiter has.
pub fn count() -> usize {
    ArbiterState::with(|s| s.sessions.borrow().len())
}

/// What the operator's view shows of one session: plain data, sent across threads (the
/// API's `Session`).
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
#[schema(as = Session)]
pub struct SessionSummary {
    /// The id the hooks saw.
    pub clientid: ClientId,
    /// `rtmp`, `rtsp`, `srt` or `httpflv`.
    pub protocol: &'static str,
    /// `connecting` (no play or publish allowed yet), `publisher` or `player`.
    pub role: &'static str,
    /// The client's IP address.
    pub addr: String,
    /// The stream's application (empty while connecting).
    pub app: String,
    /// The stream's name (empty while connecting).
    pub name: String,
    /// The URL the client asked for (empty while connecting).
    pub url: String,
    /// When the connection was accepted, Unix milliseconds.
    pub since: u64,
    /// Bytes received on the client's connection.
    pub bytes_in: u64,
    /// Bytes written to the client's connection.
    pub bytes_out: u64,
    /// Frames a player's drop policy left out.
    pub frames_dropped: u64,
}

impl SessionView {
    /// This session as the operator's view shows it.
    pub fn summary(&self) -> SessionSummary {
        let used = self.usage.used();
        let active = self.active.borrow();
        let role = role_name(active.as_ref().map(|(role, _)| *role));
        let info = active.as_ref().map(|(_, info)| info);
        SessionSummary {
            clientid: self.clientid,
            protocol: self.protocol.as_str(),
            role,
            addr: self.peer.ip().to_string(),
            app: info.map(|i| i.app.clone()).unwrap_or_default(),
            name: info.map(|i| i.name.clone()).unwrap_or_default(),
            url: info.map(|i| i.url.clone()).unwrap_or_default(),
            since: used.start,
            bytes_in: used.bytes_in,
            bytes_out: used.bytes_out,
            frames_dropped: self.usage.frames_dropped.get(),
        }
    }
}

/// Every session of the current arbiter, as the operator's view shows them.
pub fn snapshot() -> Vec<SessionSummary> {
    ArbiterState::with(|s| s.sessions.borrow().values().map(|v| v.summary()).collect())
}

/// Sends `kick` to session `clientid` if it is on the current arbiter; whether it is.
pub fn kick(clientid: ClientId, kick: &Kick) -> bool {
    ArbiterState::with(|s| match s.sessions.borrow().get(&clientid) {
        Some(view) => {
            view.kick.do_send(kick.clone());
            true
        }
        None => false,
    })
}
