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
