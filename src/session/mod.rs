//! One actor per client connection, one file per protocol: thin IO shells over the sans-IO
//! cores in `protocol/`. They own the socket, feed bytes to their core, drain all of its
//! outputs after every input, and ask the core actors for every decision: hooks through the
//! arbiter's `NotifyActor`, streams through the `Registry`. They never decide policy.

pub mod rtmp;
pub mod writer;

use actix::Addr;
use streamgate_actors::notify::{DoneTracker, NotifyActor};
use streamgate_actors::registry::Registry;

/// What every session on one arbiter shares.
#[derive(Clone)]
pub struct SessionContext {
    /// This arbiter's notifier.
    pub notify: Addr<NotifyActor>,
    /// The server's stream registry.
    pub registry: Addr<Registry>,
    /// Counts `on_done` calls owed, for shutdown.
    pub done: DoneTracker,
}
