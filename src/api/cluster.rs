//! `GET /api/v1/cluster/streams`: every live stream of the cluster, read from the directory in
//! Redis (`crate::cluster`), with the node that owns it. A node not in a cluster answers 404.

use actix_web::{web, HttpResponse};
use serde::Serialize;
use utoipa::ToSchema;

use super::{problem, ApiState};

/// A live stream of the cluster and its owner.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ClusterStream {
    /// The application.
    pub app: String,
    /// The stream name.
    pub name: String,
    /// The `<node_id>` of the node its publisher is connected to.
    pub node: String,
    /// That node's `<advertise>` address.
    pub advertise: String,
    /// The publisher's clientid.
    pub clientid: u64,
    /// When its publish began, Unix milliseconds.
    pub since: u64,
}

/// Every live stream of the cluster.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ClusterStreamList {
    /// The streams, by app and name.
    pub streams: Vec<ClusterStream>,
}

/// Every live stream of the cluster, from the directory.
#[utoipa::path(
    get,
    path = "/api/v1/cluster/streams",
    responses(
        (status = 200, description = "Every live stream of the cluster", body = ClusterStreamList),
        (status = 401, description = "The token is missing or wrong"),
        (status = 404, description = "This node is not in a cluster", body = super::model::Problem),
        (status = 503, description = "Redis cannot be reached", body = super::model::Problem)
    ),
    security((), ("bearer" = []))
)]
pub async fn list_cluster_streams(state: web::Data<ApiState>) -> HttpResponse {
    let Some(cluster) = &state.cluster else {
        return problem(
            actix_web::http::StatusCode::NOT_FOUND,
            "this node is not in a cluster (no <cluster> in its config)",
        );
    };
    match cluster.streams().await {
        Ok(mut entries) => {
            entries.sort_by(|a, b| a.key.cmp(&b.key));
            let streams = entries
                .into_iter()
                .map(|e| ClusterStream {
                    app: e.key.app,
                    name: e.key.name,
                    node: e.owner.node,
                    advertise: e.owner.advertise,
                    clientid: e.owner.clientid,
                    since: e.owner.since,
                })
                .collect();
            HttpResponse::Ok().json(ClusterStreamList { streams })
        }
        Err(e) => problem(
            actix_web::http::StatusCode::SERVICE_UNAVAILABLE,
            format!("Redis cannot be reached: {e}"),
        ),
    }
}
