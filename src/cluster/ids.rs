//! Clientids unique across the cluster: each node takes blocks of [`BLOCK`] ids from the
//! Redis counter (`INCRBY`) and hands them out from memory, fetching the next block when half
//! of what it holds is used, so a connection never waits for Redis.
//!
//! When a node has used every id it holds and Redis cannot be reached, the node's own
//! clock-based counter gives the id (counted, logged once): such an id may equal one another
//! node gives (docs/cluster.md).

use std::collections::VecDeque;
use std::ops::RangeInclusive;
use std::sync::{Arc, Mutex};

use streamgate_actors::session::{ClientId, ClientIdSource};
use tokio::sync::Notify;

use super::directory::Directory;
use super::metrics::metrics;

/// Ids per block.
pub const BLOCK: u64 = 4096;

/// The blocks a node holds.
#[derive(Default)]
pub struct Blocks {
    ranges: Mutex<VecDeque<RangeInclusive<ClientId>>>,
    /// Woken when the ids held fall under half a block.
    low: Notify,
    warned: std::sync::atomic::AtomicBool,
}

impl Blocks {
    fn held(ranges: &VecDeque<RangeInclusive<ClientId>>) -> u64 {
        ranges.iter().map(|r| r.end() - r.start() + 1).sum()
    }

    /// Adds the block that ends at `last`.
    pub fn add(&self, last: ClientId) {
        let first = last.saturating_sub(BLOCK - 1).max(1);
        if let Ok(mut ranges) = self.ranges.lock() {
            ranges.push_back(first..=last);
        }
        self.warned
            .store(false, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether fewer than half a block of ids is held.
    pub fn low(&self) -> bool {
        self.ranges
            .lock()
            .map(|r| Self::held(&r) < BLOCK / 2)
            .unwrap_or(false)
    }
}

/// The process's clientid source over shared [`Blocks`].
pub struct BlockSource(pub Arc<Blocks>);

impl ClientIdSource for BlockSource {
    fn next(&self) -> Option<ClientId> {
        self.0.next_id()
    }
}

impl Blocks {
    /// The next id held, if any (then the next block is fetched when few are left).
    pub fn next_id(&self) -> Option<ClientId> {
        let (id, low) = {
            let mut ranges = self.ranges.lock().ok()?;
            let id = loop {
                let Some(range) = ranges.front_mut() else {
                    break None;
                };
                match range.next() {
                    Some(id) => break Some(id),
                    None => {
                        ranges.pop_front();
                    }
                }
            };
            (id, Blocks::held(&ranges) < BLOCK / 2)
        };
        if low {
            self.low.notify_one();
        }
        if id.is_none() {
            metrics().clientid_fallbacks.inc();
            if !self.warned.swap(true, std::sync::atomic::Ordering::Relaxed) {
                tracing::warn!(
                    "no clientid block from Redis left: ids come from this node's own counter \
                     until Redis answers (they may repeat another node's)"
                );
            }
        }
        id
    }
}

/// Keeps `blocks` filled from `directory`: takes a block whenever fewer than half a block is
/// held, retrying every second while Redis fails. Runs until the process ends.
pub async fn refill(blocks: Arc<Blocks>, directory: Directory) {
    loop {
        while blocks.low() {
            let first = streamgate_actors::session::first_client_id(super::unix_ms());
            match directory.clientid_block(BLOCK, first).await {
                Ok(last) => blocks.add(last),
                Err(e) => {
                    metrics().redis_error("clientid");
                    tracing::warn!(error = %e, "cannot take a clientid block from Redis");
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                }
            }
        }
        blocks.low.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_come_from_the_blocks_in_order_then_none() {
        let blocks = Arc::new(Blocks::default());
        assert!(blocks.low());
        blocks.add(BLOCK * 3);
        assert!(!blocks.low());
        assert_eq!(blocks.next_id(), Some(BLOCK * 2 + 1));
        for _ in 0..BLOCK / 2 {
            blocks.next_id();
        }
        assert!(blocks.low(), "half used: time for the next block");
        blocks.add(BLOCK * 7);
        for _ in BLOCK / 2 + 1..BLOCK {
            blocks.next_id();
        }
        assert_eq!(
            blocks.next_id(),
            Some(BLOCK * 6 + 1),
            "the next block follows"
        );
        for _ in 1..BLOCK {
            blocks.next_id();
        }
        assert_eq!(blocks.next_id(), None);
    }
}
