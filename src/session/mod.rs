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

/// Runs a protocol-core call with panics caught: `Err` carries the panic message. Protocol
/// cores parse bytes from untrusted clients (and rml_rtmp may panic on input it did not
/// expect), so a panic there must end only the connection that sent the bytes.
pub fn contain<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|panic| {
        panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::contain;

    #[test]
    fn a_panic_becomes_an_error_and_the_caller_goes_on() {
        let hostile: &[u8] = &[0xFF];
        let result = contain(|| {
            let index = usize::from(hostile[0]);
            hostile[index] // out of bounds: panics
        });
        assert!(result
            .expect_err("the panic is caught")
            .contains("index out of bounds"));
        assert_eq!(contain(|| 7), Ok(7));
    }
}
