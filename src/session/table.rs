//! The sessions of one worker arbiter, by clientid: what a server-wide kick (shutdown) and the
//! operator's view of the sessions reach. The table lives in the arbiter's
//! [`ArbiterState`](super::arbiter::ArbiterState), so a session registers with one map insert
//! on its own thread, and its usage counters are read there without a lock.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;

use actix::Recipient;
use streamgate_actors::session::{ClientId, Protocol, SessionInfo};
use streamgate_actors::stream::Kick;

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

/// Adds a session to the current arbiter's table.
pub fn register(view: Rc<SessionView>) {
    ArbiterState::with(|s| s.sessions.borrow_mut().insert(view.clientid, view));
}

/// Takes a session out of the current arbiter's table (nothing while its thread is ending).
pub fn unregister(clientid: ClientId) {
    ArbiterState::try_with(|s| s.sessions.borrow_mut().remove(&clientid));
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

/// What the operator's view shows of one session: plain data, sent across threads.
#[derive(Debug, Clone, serde::Serialize)]
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
        let (role, info) = match &*active {
            Some((Role::Publisher, info)) => ("publisher", Some(info)),
            Some((Role::Player, info)) => ("player", Some(info)),
            None => ("connecting", None),
        };
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
