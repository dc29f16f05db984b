//! `GET /metrics`: the server's counters in the Prometheus text format (OpenMetrics), encoded by
//! `prometheus-client`. The process's own counters (hook calls, connections) live in
//! `streamgate_actors::metrics`; the session counts and traffic are read from each worker
//! arbiter's table at the scrape ([`table::stats`]), so the media path counts nothing extra for
//! them. Labels are bounded: protocols, roles, calls, results, reasons.

use actix_web::{web, HttpResponse};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use streamgate_actors::registry::ListStreams;

use super::{on_workers, ApiState};
use crate::session::table::{self, Stats};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProtocolRole {
    protocol: &'static str,
    role: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProtocolOnly {
    protocol: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Ended {
    protocol: &'static str,
    role: &'static str,
    reason: &'static str,
}

/// The content type of the OpenMetrics text format.
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The page of `/metrics`.
pub async fn metrics(state: web::Data<ApiState>) -> HttpResponse {
    let mut stats = Stats::default();
    for one in on_workers(&state.workers, table::stats).await {
        stats.merge(one);
    }
    let streams = state
        .registry
        .send(ListStreams)
        .await
        .map_or(0, |s| s.len());
    let mut registry = Registry::default();
    streamgate_actors::metrics::metrics().register(&mut registry);
    if state.cluster.is_some() {
        crate::cluster::metrics::metrics().register(&mut registry);
    }

    let sessions = Family::<ProtocolRole, Gauge>::default();
    for (protocol, counts) in super::PROTOCOLS.into_iter().zip(stats.sessions) {
        for (role, n) in super::ROLES.into_iter().zip(counts) {
            sessions
                .get_or_create(&ProtocolRole { protocol, role })
                .set(n as i64);
        }
    }
    registry.register(
        "streamgate_sessions",
        "Connections now, by protocol and role (connecting, publisher, player)",
        sessions,
    );
    let (bytes_in, bytes_out, dropped) = (
        Family::<ProtocolOnly, Counter>::default(),
        Family::<ProtocolOnly, Counter>::default(),
        Family::<ProtocolOnly, Counter>::default(),
    );
    for (protocol, traffic) in super::PROTOCOLS.into_iter().zip(stats.traffic) {
        let labels = ProtocolOnly { protocol };
        bytes_in.get_or_create(&labels).inc_by(traffic.bytes_in);
        bytes_out.get_or_create(&labels).inc_by(traffic.bytes_out);
        dropped
            .get_or_create(&labels)
            .inc_by(traffic.frames_dropped);
    }
    registry.register(
        "streamgate_received_bytes",
        "Bytes received from clients, by protocol",
        bytes_in,
    );
    registry.register(
        "streamgate_sent_bytes",
        "Bytes written to clients, by protocol",
        bytes_out,
    );
    registry.register(
        "streamgate_frames_dropped",
        "Frames players' drop policies left out, by protocol",
        dropped,
    );
    let ended = Family::<Ended, Counter>::default();
    for ((protocol, role, reason), n) in &stats.ended {
        ended
            .get_or_create(&Ended {
                protocol,
                role,
                reason,
            })
            .inc_by(*n);
    }
    registry.register(
        "streamgate_sessions_ended",
        "Plays and publishes ended, by protocol, role and reason",
        ended,
    );
    let live = Gauge::<i64>::default();
    live.set(streams as i64);
    registry.register("streamgate_streams", "Live streams", live);
    let mut text = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &registry) {
        tracing::warn!(error = %e, "metrics could not be encoded");
        return HttpResponse::InternalServerError().finish();
    }
    HttpResponse::Ok().content_type(CONTENT_TYPE).body(text)
}
