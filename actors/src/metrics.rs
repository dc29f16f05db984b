//! The counters the server keeps of what it does not otherwise hold: hook calls by call and
//! result with their latency, connections accepted and refused, the `on_done` outbox's
//! pending events, retries and drops. One set per process (the
//! `/metrics` page of its API), kept in `prometheus-client` types so they are encoded as it
//! defines them. Labels are bounded: calls, results and protocols, never a client.

use std::sync::OnceLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// The labels of a hook call.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HookLabels {
    /// `rtmp`, `rtsp`, `srt` or `httpflv`.
    pub protocol: &'static str,
    /// `connect`, `play`, `publish`, `update` or `done`.
    pub call: &'static str,
    /// `allow` (200), `deny` (another status), `timeout` or `error` (unreachable, a failed
    /// exchange).
    pub result: &'static str,
}

/// The labels of a connection's admission.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConnectionLabels {
    /// The listener's protocol.
    pub protocol: &'static str,
    /// `accepted`, or `refused` (past a connection limit).
    pub result: &'static str,
}

/// The process's counters.
pub struct Metrics {
    /// Hook calls by protocol, call and result.
    pub hook_calls: Family<HookLabels, Counter>,
    /// Hook call latency (from asking to the answer's head, or the failure), seconds.
    pub hook_seconds: Family<HookLabels, Histogram>,
    /// Connections by protocol and admission.
    pub connections: Family<ConnectionLabels, Counter>,
    /// `on_done` events waiting for delivery (in the outbox's delivery queue).
    pub on_done_pending: Gauge,
    /// `on_done` attempts that failed and were scheduled again.
    pub on_done_retries: Counter,
    /// `on_done` events dropped past `<outbox_max_events>`.
    pub on_done_dropped: Counter,
}

/// The latency buckets of hook calls, seconds: 1 ms to 10 s.
const HOOK_BUCKETS: [f64; 12] = [
    0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 10.0,
];

/// The process's counters.
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(|| Metrics {
        hook_calls: Family::default(),
        hook_seconds: Family::new_with_constructor(|| Histogram::new(HOOK_BUCKETS)),
        connections: Family::default(),
        on_done_pending: Gauge::default(),
        on_done_retries: Counter::default(),
        on_done_dropped: Counter::default(),
    })
}

impl Metrics {
    /// Counts one hook call.
    pub fn hook_call(&self, labels: HookLabels, took: Duration) {
        self.hook_seconds
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
        self.hook_calls.get_or_create(&labels).inc();
    }

    /// Counts one connection's admission.
    pub fn connection(&self, protocol: &'static str, accepted: bool) {
        let result = if accepted { "accepted" } else { "refused" };
        self.connections
            .get_or_create(&ConnectionLabels { protocol, result })
            .inc();
    }

    /// Registers the process's counters in `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "streamgate_hook_calls",
            "HTTP Notify calls by protocol, call and result",
            self.hook_calls.clone(),
        );
        registry.register(
            "streamgate_hook_duration_seconds",
            "HTTP Notify call latency by protocol, call and result",
            self.hook_seconds.clone(),
        );
        registry.register(
            "streamgate_connections",
            "Connections by protocol, accepted or refused by a connection limit",
            self.connections.clone(),
        );
        registry.register(
            "streamgate_on_done_pending",
            "on_done events waiting for delivery",
            self.on_done_pending.clone(),
        );
        registry.register(
            "streamgate_on_done_retries",
            "on_done attempts that failed and were scheduled again",
            self.on_done_retries.clone(),
        );
        registry.register(
            "streamgate_on_done_dropped",
            "on_done events dropped past outbox_max_events",
            self.on_done_dropped.clone(),
        );
    }
}
