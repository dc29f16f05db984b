//! Several nodes as one server (`<cluster>`), on Redis: the directory of live streams under
//! leases, the one-publisher claim, relay pulls between nodes, clientids unique across the
//! cluster. docs/cluster.md says how to run it; docs/architecture.md why it is built so.
//!
//! - [`Cluster::claim`]: a publish the hook allowed is claimed in Redis (`SET NX PX`) before
//!   the local registry; taken elsewhere, the publisher is refused as on one node.
//! - The heartbeat renews every claim of this node in one script call per `<heartbeat_ms>`,
//!   writes again what Redis lost (a Redis restart) and releases claims whose stream ended.
//! - [`Cluster::pull`]: a player of a stream not live here finds its owner in the directory;
//!   one relay pull per stream per node feeds a local `StreamActor` (`relay.rs`), so every
//!   protocol, the fan-out and the GOP cache work on it as on a local publish.
//! - Clientids: blocks from a Redis counter (`ids.rs`).
//!
//! While Redis cannot be reached, what runs goes on; new publishes are refused and plays of
//! streams not live on this node are not found (counted and logged; docs/cluster.md). Nothing
//! here knows a protocol.

pub mod directory;
pub mod ids;
pub mod metrics;
pub mod relay;
pub mod wire;

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix::prelude::*;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ring::hmac;
use streamgate_actors::media::StreamKey;
use streamgate_actors::registry::Registry;
use streamgate_actors::session::ClientId;
use streamgate_actors::stream::StreamActor;
use tokio::sync::oneshot;

use crate::config::ClusterConfig;
use directory::{Directory, Entry, Owner};
use metrics::metrics;

/// Longest wait for one Redis operation before it counts as failed (Redis unreachable).
pub const REDIS_TIMEOUT: Duration = Duration::from_secs(1);

/// Why the cluster cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// `<redis>` is not a URL the client takes.
    #[error("<cluster><redis> cannot be used: {0}")]
    Redis(#[source] redis::RedisError),
    /// The relay listener cannot bind.
    #[error("cannot listen for relay connections on {address}: {source}")]
    Bind {
        /// `<listen>`.
        address: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Unix milliseconds now.
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// What a publish claim came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// The name is this publisher's, cluster-wide.
    Claimed,
    /// Another publisher (on any node) holds it.
    Taken,
    /// Redis cannot be reached: the claim cannot be made.
    Unavailable,
}

/// A claim this node holds.
struct Owned {
    /// The value written (an encoded [`Owner`]): renewed and released only while it is still
    /// this one.
    value: String,
    clientid: ClientId,
    /// The local stream, once the registry started it.
    stream: Option<Addr<StreamActor>>,
    /// When it was claimed: a claim whose publisher never got its stream (its session ended
    /// between the two steps) is given back after [`UNATTACHED_CLAIM`].
    claimed_at: std::time::Instant,
}

/// How long a claim may wait for its local stream before the heartbeat gives it back.
const UNATTACHED_CLAIM: Duration = Duration::from_secs(10);

/// A relay pull of one stream on this node.
enum Slot {
    /// Being set up; those waiting for it.
    Starting(Vec<oneshot::Sender<Option<Addr<StreamActor>>>>),
    /// Running: the local stream it feeds.
    Running(Addr<StreamActor>),
}

struct Inner {
    node: String,
    config: ClusterConfig,
    directory: Directory,
    registry: Addr<Registry>,
    secret: hmac::Key,
    owned: Mutex<HashMap<StreamKey, Owned>>,
    relays: Mutex<HashMap<StreamKey, Slot>>,
    redis_up: AtomicBool,
}

/// This node's membership of the cluster; cheap to clone, shared by every worker.
#[derive(Clone)]
pub struct Cluster(Arc<Inner>);

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("node", &self.0.node)
            .finish()
    }
}

/// Runs `op` within [`REDIS_TIMEOUT`]; a timeout is an error like any other.
async fn bounded<T>(op: impl Future<Output = redis::RedisResult<T>>) -> redis::RedisResult<T> {
    match tokio::time::timeout(REDIS_TIMEOUT, op).await {
        Ok(result) => result,
        Err(_) => Err(redis::RedisError::from((
            redis::ErrorKind::Io,
            "no answer from Redis in time",
        ))),
    }
}

impl Cluster {
    /// Joins the cluster: the Redis connection (made lazily, reconnecting by itself), the
    /// first clientid block (when Redis answers), the heartbeat, the relay listener. Runs on
    /// the system arbiter.
    pub async fn start(
        config: &ClusterConfig,
        node: &str,
        registry: Addr<Registry>,
    ) -> Result<(Cluster, SocketAddr), ClusterError> {
        let client = redis::Client::open(config.redis.as_str()).map_err(ClusterError::Redis)?;
        let manager = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(REDIS_TIMEOUT))
            .set_response_timeout(Some(REDIS_TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let conn = ConnectionManager::new_lazy_with_config(client, manager)
            .map_err(ClusterError::Redis)?;
        let directory = Directory::new(conn, config.lease);
        let address = config.listen;
        let bind = |source| ClusterError::Bind { address, source };
        let ip = (!address.ip().is_unspecified() || address.is_ipv4()).then_some(address.ip());
        let listener = crate::listener::bind::tcp(ip, address.port(), 128, "relay")
            .and_then(tokio::net::TcpListener::from_std)
            .map_err(bind)?;
        let relay_addr = listener.local_addr().map_err(bind)?;
        let cluster = Cluster(Arc::new(Inner {
            node: node.to_owned(),
            config: config.clone(),
            directory: directory.clone(),
            registry,
            secret: hmac::Key::new(hmac::HMAC_SHA256, config.secret.as_bytes()),
            owned: Mutex::new(HashMap::new()),
            relays: Mutex::new(HashMap::new()),
            redis_up: AtomicBool::new(true),
        }));
        metrics().redis_up.set(1);

        let blocks = Arc::new(ids::Blocks::default());
        let first = streamgate_actors::session::first_client_id(unix_ms());
        match bounded(directory.clientid_block(ids::BLOCK, first)).await {
            Ok(last) => {
                blocks.add(last);
                cluster.redis_ok();
            }
            Err(e) => cluster.redis_failed("clientid", &e),
        }
        if !streamgate_actors::session::set_client_id_source(Box::new(ids::BlockSource(
            blocks.clone(),
        ))) {
            tracing::warn!("clientids already come from another cluster membership");
        }
        actix_rt::spawn(ids::refill(blocks, directory));
        actix_rt::spawn(cluster.clone().heartbeat());
        actix_rt::spawn(relay::accept(cluster.clone(), listener));
        tracing::info!(
            node,
            advertise = %config.advertise,
            relay = %relay_addr,
            "cluster joined"
        );
        Ok((cluster, relay_addr))
    }

    /// This node's `<node_id>`.
    pub fn node(&self) -> &str {
        &self.0.node
    }

    fn redis_ok(&self) {
        metrics().redis_up.set(1);
        if !self.0.redis_up.swap(true, Ordering::Relaxed) {
            tracing::info!("Redis answers again: the heartbeat writes this node's streams back");
        }
    }

    fn redis_failed(&self, op: &'static str, error: &redis::RedisError) {
        metrics().redis_error(op);
        if self.0.redis_up.swap(false, Ordering::Relaxed) {
            tracing::error!(
                op,
                %error,
                "Redis unreachable: running streams and players go on; new publishes are \
                 refused and streams not live on this node are not found until it answers"
            );
        } else {
            tracing::debug!(op, %error, "Redis still unreachable");
        }
    }

    /// Claims `key` for the publisher `clientid` (after its hook allowed it).
    pub async fn claim(&self, key: &StreamKey, clientid: ClientId) -> Claim {
        let owner = Owner {
            node: self.0.node.clone(),
            advertise: self.0.config.advertise.clone(),
            clientid,
            since: unix_ms(),
        };
        let value = serde_json::to_string(&owner).unwrap_or_default();
        match bounded(self.0.directory.claim(key, &value)).await {
            Ok(true) => {
                self.redis_ok();
                if let Ok(mut owned) = self.0.owned.lock() {
                    owned.insert(
                        key.clone(),
                        Owned {
                            value,
                            clientid,
                            stream: None,
                            claimed_at: std::time::Instant::now(),
                        },
                    );
                }
                metrics().claim("claimed");
                Claim::Claimed
            }
            Ok(false) => {
                self.redis_ok();
                metrics().claim("taken");
                Claim::Taken
            }
            Err(e) => {
                self.redis_failed("claim", &e);
                metrics().claim("unavailable");
                tracing::warn!(stream = %key, "publish refused: Redis unreachable, the name cannot be claimed");
                Claim::Unavailable
            }
        }
    }

    /// The local stream of a claim: the relay serves it, the heartbeat watches it.
    pub fn claimed_stream(&self, key: &StreamKey, clientid: ClientId, stream: Addr<StreamActor>) {
        if let Ok(mut owned) = self.0.owned.lock() {
            if let Some(claim) = owned.get_mut(key).filter(|c| c.clientid == clientid) {
                claim.stream = Some(stream);
            }
        }
    }

    /// Gives the claim of `key` back (its publisher stopped, or the local registry refused it),
    /// when it is still `clientid`'s.
    pub fn release(&self, key: &StreamKey, clientid: ClientId) {
        let value = match self.0.owned.lock() {
            Ok(mut owned) => match owned.get(key) {
                Some(claim) if claim.clientid == clientid => owned.remove(key).map(|c| c.value),
                _ => None,
            },
            Err(_) => None,
        };
        let Some(value) = value else {
            return;
        };
        let (cluster, key) = (self.clone(), key.clone());
        actix_rt::spawn(async move {
            match bounded(cluster.0.directory.release(&key, &value)).await {
                Ok(_) => cluster.redis_ok(),
                // Redis lost or will expire it within the lease.
                Err(e) => cluster.redis_failed("release", &e),
            }
        });
    }

    /// The stream `key` when this node owns it (the one a relay may serve).
    pub fn owned_stream(&self, key: &StreamKey) -> Option<Addr<StreamActor>> {
        self.0
            .owned
            .lock()
            .ok()?
            .get(key)?
            .stream
            .clone()
            .filter(|s| s.connected())
    }

    /// Renews this node's claims every `<heartbeat_ms>` (one script call), releasing those
    /// whose stream ended. Runs until the process ends.
    async fn heartbeat(self) {
        let mut tick = tokio::time::interval(self.0.config.heartbeat);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let mut gone = Vec::new();
            let claims: Vec<(StreamKey, String)> = match self.0.owned.lock() {
                Ok(owned) => owned
                    .iter()
                    .filter_map(|(key, claim)| match &claim.stream {
                        Some(stream) if !stream.connected() => {
                            gone.push((key.clone(), claim.clientid));
                            None
                        }
                        None if claim.claimed_at.elapsed() > UNATTACHED_CLAIM => {
                            gone.push((key.clone(), claim.clientid));
                            None
                        }
                        _ => Some((key.clone(), claim.value.clone())),
                    })
                    .collect(),
                Err(_) => continue,
            };
            for (key, clientid) in gone {
                self.release(&key, clientid);
            }
            if claims.is_empty() {
                // Still tell an outage's end (and its start) when nothing is claimed.
                match bounded(self.0.directory.ping()).await {
                    Ok(_) => self.redis_ok(),
                    Err(e) => self.redis_failed("renew", &e),
                }
                continue;
            }
            match bounded(self.0.directory.renew(&claims)).await {
                Ok(results) => {
                    self.redis_ok();
                    for ((key, value), result) in claims.iter().zip(results) {
                        match result {
                            2 => {
                                metrics().reregistered.inc();
                                tracing::info!(stream = %key, "claim written again in Redis");
                            }
                            0 => {
                                tracing::error!(
                                    stream = %key,
                                    "another node claimed this stream while Redis was \
                                     unreachable from here: this node takes no new relay of \
                                     it (its local players and running relays go on)"
                                );
                                if let Ok(mut owned) = self.0.owned.lock() {
                                    if owned.get(key).is_some_and(|c| &c.value == value) {
                                        owned.remove(key);
                                    }
                                }
                            }
                            _ => {}
                        }
                    }
                }
                Err(e) => self.redis_failed("renew", &e),
            }
        }
    }

    /// Whether a relay pull of `key` is starting on this node: its local stream is in the
    /// registry already, but the owner's snapshot (the codec configs, the GOP) is not in it
    /// yet, so a player finding it there waits for the pull ([`Cluster::pull`]) instead.
    pub fn is_starting(&self, key: &StreamKey) -> bool {
        self.0
            .relays
            .lock()
            .is_ok_and(|relays| matches!(relays.get(key), Some(Slot::Starting(_))))
    }

    /// The local stream of `key`, pulled from its owner: the running relay's, or a new one
    /// (one per stream per node; concurrent players wait for the same). `None` when no node
    /// publishes it, Redis cannot be reached or the owner cannot be pulled from.
    pub async fn pull(&self, key: &StreamKey) -> Option<Addr<StreamActor>> {
        let waiting = {
            let mut relays = self.0.relays.lock().ok()?;
            match relays.get_mut(key) {
                Some(Slot::Running(stream)) if stream.connected() => return Some(stream.clone()),
                Some(Slot::Starting(waiters)) => {
                    let (tx, rx) = oneshot::channel();
                    waiters.push(tx);
                    Some(rx)
                }
                _ => {
                    relays.insert(key.clone(), Slot::Starting(Vec::new()));
                    None
                }
            }
        };
        if let Some(rx) = waiting {
            return rx.await.ok().flatten();
        }
        let stream = self.start_pull(key).await;
        let waiters = match self.0.relays.lock() {
            Ok(mut relays) => {
                let slot = match &stream {
                    Some(stream) => relays.insert(key.clone(), Slot::Running(stream.clone())),
                    None => relays.remove(key),
                };
                match slot {
                    Some(Slot::Starting(waiters)) => waiters,
                    _ => Vec::new(),
                }
            }
            Err(_) => Vec::new(),
        };
        for waiter in waiters {
            let _ = waiter.send(stream.clone());
        }
        stream
    }

    async fn start_pull(&self, key: &StreamKey) -> Option<Addr<StreamActor>> {
        let owner = match bounded(self.0.directory.lookup(key)).await {
            Ok(Some(owner)) => {
                self.redis_ok();
                metrics().lookup("found");
                owner
            }
            Ok(None) => {
                self.redis_ok();
                metrics().lookup("not_found");
                return None;
            }
            Err(e) => {
                self.redis_failed("lookup", &e);
                metrics().lookup("error");
                tracing::warn!(stream = %key, "stream not found: Redis unreachable");
                return None;
            }
        };
        if owner.node == self.0.node {
            // Our own claim without a local stream: a publish being set up, or one that just
            // ended and is being released.
            metrics().pull_start("not_found");
            return None;
        }
        match relay::pull(self.clone(), key.clone(), owner.clone()).await {
            Ok(stream) => {
                metrics().pull_start("started");
                Some(stream)
            }
            Err(error) => {
                metrics().pull_start("failed");
                tracing::warn!(stream = %key, owner = %owner.node, advertise = %owner.advertise, %error, "relay pull failed");
                None
            }
        }
    }

    /// A relay pull ended: forget it (when `stream` is still the one it fed).
    fn relay_ended(&self, key: &StreamKey, stream: &Addr<StreamActor>) {
        if let Ok(mut relays) = self.0.relays.lock() {
            if matches!(relays.get(key), Some(Slot::Running(s)) if s == stream) {
                relays.remove(key);
            }
        }
    }

    /// Every live stream of the cluster, from the directory.
    pub async fn streams(&self) -> redis::RedisResult<Vec<Entry>> {
        match bounded(self.0.directory.list()).await {
            Ok(entries) => {
                self.redis_ok();
                Ok(entries)
            }
            Err(e) => {
                self.redis_failed("list", &e);
                Err(e)
            }
        }
    }
}
