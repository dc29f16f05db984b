//! The cluster's counters on `/metrics`: relay pulls, directory lookups, publish claims, Redis
//! errors, clientid blocks. One set per process, registered by `crate::api::metrics` when the
//! node is in a cluster. Labels are bounded: results and Redis operations, never a stream.

use std::sync::OnceLock;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// A result label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    /// What came of it.
    pub result: &'static str,
}

/// A Redis operation label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpLabel {
    /// `claim`, `renew`, `release`, `lookup`, `clientid` or `list`.
    pub op: &'static str,
}

/// The cluster's counters.
#[derive(Default)]
pub struct ClusterMetrics {
    /// Relay pulls running on this node (streams it pulls from their owners).
    pub relay_pulls: Gauge,
    /// Relay pulls started, by result (`started`, `not_found`, `failed`).
    pub relay_pull_starts: Family<ResultLabel, Counter>,
    /// Relay connections this node serves as a stream's owner.
    pub relays_served: Gauge,
    /// Relay connections refused (signature, clock, stream not here).
    pub relays_refused: Counter,
    /// Directory lookups of a stream not live on this node, by result (`found`, `not_found`,
    /// `error`).
    pub lookups: Family<ResultLabel, Counter>,
    /// Publish claims by result (`claimed`, `taken`, `unavailable`).
    pub claims: Family<ResultLabel, Counter>,
    /// Failed Redis operations, by operation.
    pub redis_errors: Family<OpLabel, Counter>,
    /// 1 while the last Redis operation succeeded, 0 after one failed.
    pub redis_up: Gauge,
    /// Claims the heartbeat wrote again after Redis had lost them (a Redis restart).
    pub reregistered: Counter,
    /// Clientids given from the node's own counter because no Redis block was left.
    pub clientid_fallbacks: Counter,
}

/// The process's cluster counters.
pub fn metrics() -> &'static ClusterMetrics {
    static METRICS: OnceLock<ClusterMetrics> = OnceLock::new();
    METRICS.get_or_init(ClusterMetrics::default)
}

impl ClusterMetrics {
    /// Counts a lookup.
    pub fn lookup(&self, result: &'static str) {
        self.lookups.get_or_create(&ResultLabel { result }).inc();
    }

    /// Counts a claim.
    pub fn claim(&self, result: &'static str) {
        self.claims.get_or_create(&ResultLabel { result }).inc();
    }

    /// Counts a relay pull's start.
    pub fn pull_start(&self, result: &'static str) {
        self.relay_pull_starts
            .get_or_create(&ResultLabel { result })
            .inc();
    }

    /// Counts a failed Redis operation.
    pub fn redis_error(&self, op: &'static str) {
        self.redis_errors.get_or_create(&OpLabel { op }).inc();
        self.redis_up.set(0);
    }

    /// Registers the counters in `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "streamgate_cluster_relay_pulls",
            "Relay pulls running on this node",
            self.relay_pulls.clone(),
        );
        registry.register(
            "streamgate_cluster_relay_pull_starts",
            "Relay pulls asked for, by result",
            self.relay_pull_starts.clone(),
        );
        registry.register(
            "streamgate_cluster_relays_served",
            "Relay connections this node serves as a stream's owner",
            self.relays_served.clone(),
        );
        registry.register(
            "streamgate_cluster_relays_refused",
            "Relay connections refused (signature, clock, stream not here)",
            self.relays_refused.clone(),
        );
        registry.register(
            "streamgate_cluster_directory_lookups",
            "Directory lookups of streams not live on this node, by result",
            self.lookups.clone(),
        );
        registry.register(
            "streamgate_cluster_claims",
            "Publish claims in the directory, by result",
            self.claims.clone(),
        );
        registry.register(
            "streamgate_cluster_redis_errors",
            "Failed Redis operations, by operation",
            self.redis_errors.clone(),
        );
        registry.register(
            "streamgate_cluster_redis_up",
            "1 while Redis answers, 0 after a failed operation",
            self.redis_up.clone(),
        );
        registry.register(
            "streamgate_cluster_reregistered",
            "Claims written again after Redis lost them",
            self.reregistered.clone(),
        );
        registry.register(
            "streamgate_cluster_clientid_fallbacks",
            "Clientids given from the node's own counter for want of a Redis block",
            self.clientid_fallbacks.clone(),
        );
    }
}
