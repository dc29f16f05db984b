//! The operator's HTTP API (`<api>`): JSON under `/api/v1/` on actix-web, with its OpenAPI
//! document at `/api/v1/openapi.json`, derived from the handlers and types by utoipa so the
//! two cannot drift apart.
//!
//! It reads what the server already keeps: the sessions from each worker arbiter's table
//! (`session::table`, asked on the arbiter's own thread, so the media path takes no lock for
//! it), the streams from the registry and each `StreamActor`. A kick is the same `Kick` every
//! other end of a session uses, so its `on_done` follows as always.

mod cluster;
mod dashboard;
mod metrics;
pub mod model;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use actix::Addr;
use actix_rt::ArbiterHandle;
use actix_web::body::{BoxBody, EitherBody, MessageBody};
use actix_web::dev::{ServerHandle, ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::{web, App, HttpResponse, HttpServer};
use arc_swap::ArcSwap;
use serde::Deserialize;
use streamgate_actors::media::{Codec, MetaValue, StreamKey};
use streamgate_actors::registry::{ListStreams, Registry};
use streamgate_actors::session::Protocol;
use streamgate_actors::stream::{Describe, EndStream, Kick, StreamDescription};
use streamgate_actors::usage::EndReason;
use utoipa::{IntoParams, OpenApi};

use crate::config::ApiConfig;
use crate::protocol::codec;
use crate::server::Reloader;
use crate::session::core::Role;
use crate::session::table::{self, SessionSummary};
use model::{
    Audio, Kicked, Problem, Publisher, Reloaded, ServerInfo, Session, SessionPage, Stream,
    StreamList, Video,
};

/// The most sessions on one page, and the default page size.
pub const MAX_PAGE: usize = 1000;
const DEFAULT_PAGE: usize = 100;

/// What the handlers reach.
#[derive(Clone)]
pub struct ApiState {
    /// The worker arbiters, whose tables hold the sessions.
    pub workers: Arc<Vec<ArbiterHandle>>,
    /// The stream registry.
    pub registry: Addr<Registry>,
    /// `<api><token>`: when set, `/api/*` needs `Authorization: Bearer <token>`. A reload
    /// replaces it.
    pub token: Arc<ArcSwap<Option<Arc<str>>>>,
    /// The server's name and listeners, as they are bound now.
    pub server: Arc<ArcSwap<ServerInfo>>,
    /// Reads the config file again (`POST /api/v1/reload`).
    pub reloader: Reloader,
    /// The cluster this node is in (`<cluster>`).
    pub cluster: Option<crate::cluster::Cluster>,
}

/// A running API server.
pub struct Api {
    /// Stops it.
    pub handle: ServerHandle,
    /// Where it listens.
    pub addr: SocketAddr,
}

/// Binds `<api>` and starts serving on one worker thread of actix-web's own.
pub fn start(config: &ApiConfig, state: ApiState) -> std::io::Result<Api> {
    let data = web::Data::new(state);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .app_data(web::PathConfig::default().error_handler(|e, _| {
                json_error(actix_web::http::StatusCode::NOT_FOUND, e.to_string())
            }))
            .app_data(web::QueryConfig::default().error_handler(|e, _| {
                json_error(actix_web::http::StatusCode::BAD_REQUEST, e.to_string())
            }))
            .route("/metrics", web::get().to(metrics::metrics))
            .route("/", web::get().to(dashboard::page))
            .route("/dashboard/app.js", web::get().to(dashboard::script))
            .route("/dashboard/mpegts.js", web::get().to(dashboard::player))
            .service(
                web::scope("/api/v1")
                    .wrap(actix_web::middleware::from_fn(authorize))
                    .service(resource("/openapi.json").get(openapi))
                    .service(resource("/server").get(server_info))
                    .service(resource("/reload").post(reload))
                    .service(resource("/sessions").get(list_sessions))
                    .service(
                        resource("/sessions/{clientid}")
                            .get(get_session)
                            .delete(kick_session),
                    )
                    .service(resource("/streams").get(list_streams))
                    .service(resource("/cluster/streams").get(cluster::list_cluster_streams))
                    .service(
                        resource("/streams/{path:.+}")
                            .get(get_stream)
                            .delete(end_stream),
                    ),
            )
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(1)
    .bind((config.address, config.port))?;
    let addr = server.addrs().first().copied().ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::AddrNotAvailable, "no API address bound")
    })?;
    let server = server.run();
    let handle = server.handle();
    actix_rt::spawn(server);
    tracing::info!(%addr, "API listening");
    Ok(Api { handle, addr })
}

/// A resource whose other methods are answered `405 Method Not Allowed` with `Allow`.
struct Resource {
    path: &'static str,
    methods: Vec<(&'static str, actix_web::Route)>,
}

fn resource(path: &'static str) -> Resource {
    Resource {
        path,
        methods: Vec::new(),
    }
}

impl Resource {
    fn get<F, Args>(mut self, handler: F) -> Self
    where
        F: actix_web::Handler<Args>,
        Args: actix_web::FromRequest + 'static,
        F::Output: actix_web::Responder + 'static,
    {
        self.methods.push(("GET", web::get().to(handler)));
        self
    }

    fn post<F, Args>(mut self, handler: F) -> Self
    where
        F: actix_web::Handler<Args>,
        Args: actix_web::FromRequest + 'static,
        F::Output: actix_web::Responder + 'static,
    {
        self.methods.push(("POST", web::post().to(handler)));
        self
    }

    fn delete<F, Args>(mut self, handler: F) -> Self
    where
        F: actix_web::Handler<Args>,
        Args: actix_web::FromRequest + 'static,
        F::Output: actix_web::Responder + 'static,
    {
        self.methods.push(("DELETE", web::delete().to(handler)));
        self
    }
}

impl actix_web::dev::HttpServiceFactory for Resource {
    fn register(self, config: &mut actix_web::dev::AppService) {
        let allow = self
            .methods
            .iter()
            .map(|(m, _)| *m)
            .collect::<Vec<_>>()
            .join(", ");
        let mut resource = web::resource(self.path);
        for (_, route) in self.methods {
            resource = resource.route(route);
        }
        resource
            .default_service(web::to(move || {
                let allow = allow.clone();
                async move {
                    HttpResponse::MethodNotAllowed()
                        .insert_header((header::ALLOW, allow))
                        .json(Problem {
                            error: "method not allowed".into(),
                        })
                }
            }))
            .register(config);
    }
}

/// An extractor's error as `{"error": ...}` with `status`.
fn json_error(status: actix_web::http::StatusCode, error: String) -> actix_web::Error {
    actix_web::error::InternalError::from_response(error.clone(), problem(status, error)).into()
}

/// `/api/*` with a token configured: `Authorization: Bearer <token>`, or `401` and nothing else.
async fn authorize(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody, BoxBody>>, actix_web::Error> {
    let state = req.app_data::<web::Data<ApiState>>().cloned();
    let token = state.as_ref().and_then(|s| s.token.load().as_ref().clone());
    if let Some(token) = token {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !same(given.as_bytes(), token.as_bytes()) {
            let response = HttpResponse::Unauthorized()
                .insert_header((header::WWW_AUTHENTICATE, "Bearer"))
                .finish();
            return Ok(req.into_response(response).map_into_right_body());
        }
    }
    Ok(next.call(req).await?.map_into_left_body())
}

/// Compares two secrets in time that does not depend on where they differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Runs `f` on every worker arbiter and collects what each returned.
async fn on_workers<T, F>(workers: &[ArbiterHandle], f: F) -> Vec<T>
where
    F: Fn() -> T + Clone + Send + 'static,
    T: Send + 'static,
{
    let mut answers = Vec::with_capacity(workers.len());
    for worker in workers {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let f = f.clone();
        if worker.spawn_fn(move || {
            let _ = tx.send(f());
        }) {
            answers.push(rx);
        }
    }
    let mut out = Vec::with_capacity(answers.len());
    for rx in answers {
        if let Ok(v) = rx.await {
            out.push(v);
        }
    }
    out
}

/// Every session of the server.
async fn all_sessions(state: &ApiState) -> Vec<SessionSummary> {
    let mut all: Vec<SessionSummary> = on_workers(&state.workers, table::snapshot)
        .await
        .into_iter()
        .flatten()
        .collect();
    all.sort_by_key(|s| s.clientid);
    all
}

fn problem(status: actix_web::http::StatusCode, error: impl Into<String>) -> HttpResponse {
    HttpResponse::build(status).json(Problem {
        error: error.into(),
    })
}

/// The filters and the page of `GET /api/v1/sessions`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SessionFilter {
    /// Only sessions of this application.
    app: Option<String>,
    /// Only sessions of this stream name.
    name: Option<String>,
    /// Only this protocol.
    protocol: Option<ProtocolName>,
    /// Only this role.
    role: Option<RoleName>,
    /// Skip this many matching sessions (default 0; at most 2^31 - 1, far more sessions than
    /// a server holds).
    #[param(minimum = 0, maximum = 2147483647)]
    offset: Option<usize>,
    /// At most this many on the page (1 to 1000, default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
}

/// A protocol, as the API and the hooks name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ProtocolName {
    /// RTMP.
    Rtmp,
    /// RTSP.
    Rtsp,
    /// SRT.
    Srt,
    /// HTTP-FLV.
    Httpflv,
    /// HLS.
    Hls,
}

impl ProtocolName {
    fn protocol(self) -> Protocol {
        match self {
            ProtocolName::Rtmp => Protocol::Rtmp,
            ProtocolName::Rtsp => Protocol::Rtsp,
            ProtocolName::Srt => Protocol::Srt,
            ProtocolName::Httpflv => Protocol::HttpFlv,
            ProtocolName::Hls => Protocol::Hls,
        }
    }
}

/// A session's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RoleName {
    /// Connected; no play or publish allowed yet.
    Connecting,
    /// Publishing.
    Publisher,
    /// Playing.
    Player,
}

impl RoleName {
    fn role(self) -> Option<Role> {
        match self {
            RoleName::Connecting => None,
            RoleName::Publisher => Some(Role::Publisher),
            RoleName::Player => Some(Role::Player),
        }
    }
}

pub(crate) use table::{PROTOCOLS, ROLES};

/// The head of a page of sessions: [`SessionPage`]'s fields before `sessions`.
#[derive(serde::Serialize)]
struct PageHead {
    total: usize,
    offset: usize,
    limit: usize,
}

/// Every connection, filtered and paged.
/// The largest `offset` of a sessions page (the OpenAPI document says the same).
const MAX_OFFSET: usize = i32::MAX as usize;

#[utoipa::path(
    get,
    path = "/api/v1/sessions",
    params(SessionFilter),
    responses(
        (status = 200, description = "A page of sessions, by clientid", body = SessionPage),
        (status = 400, description = "A filter or the page is not valid", body = Problem),
        (status = 401, description = "The token is missing or wrong")
    ),
    security((), ("bearer" = []))
)]
async fn list_sessions(
    state: web::Data<ApiState>,
    filter: web::Query<SessionFilter>,
) -> HttpResponse {
    use actix_web::http::StatusCode;
    let limit = filter.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return problem(
            StatusCode::BAD_REQUEST,
            format!("limit {limit} is not within 1 to {MAX_PAGE}"),
        );
    }
    let offset = filter.offset.unwrap_or(0);
    if offset > MAX_OFFSET {
        return problem(
            StatusCode::BAD_REQUEST,
            format!("offset {offset} is over {MAX_OFFSET}"),
        );
    }
    let filter = table::Filter {
        app: filter.app.clone(),
        name: filter.name.clone(),
        protocol: filter.protocol.map(ProtocolName::protocol),
        role: filter.role.map(RoleName::role),
    };
    // Each worker filters its own sessions and sends only the first `offset + limit` of them,
    // by clientid: the page is among those.
    let first = offset.saturating_add(limit);
    let mut total = 0;
    let mut entries = Vec::new();
    for (count, page) in on_workers(&state.workers, move || table::page(&filter, first)).await {
        total += count;
        entries.extend(page);
    }
    // Sorted runs, one per worker: a stable sort merges them.
    entries.sort_by_key(|e| e.clientid);
    let page = entries.get(offset..).unwrap_or_default();
    let page = &page[..page.len().min(limit)];
    HttpResponse::Ok()
        .content_type(header::ContentType::json())
        .body(page_json(total, offset, limit, page))
}

/// The JSON of a [`SessionPage`], written from the table's entries: what serializing the page
/// of their summaries writes, without building them.
fn page_json(total: usize, offset: usize, limit: usize, page: &[table::PageEntry]) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + page.iter().map(|e| e.json_len() + 1).sum::<usize>());
    if serde_json::to_writer(
        &mut out,
        &PageHead {
            total,
            offset,
            limit,
        },
    )
    .is_ok()
    {
        // `{"total":..,"limit":N}` -> `{"total":..,"limit":N,"sessions":[`
        out.pop();
    }
    out.extend_from_slice(b",\"sessions\":[");
    for (i, entry) in page.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        entry.write(&mut out);
    }
    out.extend_from_slice(b"]}");
    out
}

/// One connection.
#[utoipa::path(
    get,
    path = "/api/v1/sessions/{clientid}",
    params(("clientid" = u64, Path, description = "The session's clientid")),
    responses(
        (status = 200, description = "The session", body = Session),
        (status = 404, description = "No such session", body = Problem),
        (status = 401, description = "The token is missing or wrong")
    ),
    security((), ("bearer" = []))
)]
async fn get_session(state: web::Data<ApiState>, clientid: web::Path<u64>) -> HttpResponse {
    let clientid = clientid.into_inner();
    match on_workers(&state.workers, move || table::find(clientid))
        .await
        .into_iter()
        .flatten()
        .next()
    {
        Some(s) => HttpResponse::Ok().json(s),
        None => no_session(clientid),
    }
}

fn no_session(clientid: u64) -> HttpResponse {
    problem(
        actix_web::http::StatusCode::NOT_FOUND,
        format!("no session {clientid}"),
    )
}

/// Ends a session: its `on_done` says `kicked`.
#[utoipa::path(
    delete,
    path = "/api/v1/sessions/{clientid}",
    params(("clientid" = u64, Path, description = "The session's clientid")),
    responses(
        (status = 202, description = "The session is being ended", body = Kicked),
        (status = 404, description = "No such session", body = Problem),
        (status = 401, description = "The token is missing or wrong")
    ),
    security((), ("bearer" = []))
)]
async fn kick_session(state: web::Data<ApiState>, clientid: web::Path<u64>) -> HttpResponse {
    let clientid = clientid.into_inner();
    let kick = Kick {
        reason: "Ended by the operator.",
        end: EndReason::Kicked,
    };
    let found = on_workers(&state.workers, move || table::kick(clientid, &kick)).await;
    if found.into_iter().any(|f| f) {
        tracing::info!(clientid, "session kicked through the API");
        HttpResponse::Accepted().json(Kicked { clientid })
    } else {
        no_session(clientid)
    }
}

/// The name of a codec in the API.
fn codec_name(codec: Codec) -> &'static str {
    match codec {
        Codec::H264 => "h264",
        Codec::H265 => "h265",
        Codec::Av1 => "av1",
        Codec::Aac => "aac",
        Codec::Opus => "opus",
    }
}

/// A number the publisher's metadata gives under `key`.
fn meta_number(d: &StreamDescription, key: &str) -> Option<f64> {
    d.metadata
        .as_ref()?
        .entries
        .iter()
        .find_map(|(k, v)| match v {
            MetaValue::Number(n) if k == key && n.is_finite() && *n > 0.0 => Some(*n),
            _ => None,
        })
}

/// A stream as the API shows it, from its description and the server's sessions.
fn stream_view(d: &StreamDescription, sessions: &[SessionSummary]) -> Stream {
    let publisher = sessions.iter().find(|s| s.clientid == d.publisher);
    let mut players: BTreeMap<String, usize> =
        PROTOCOLS.iter().map(|p| ((*p).to_owned(), 0)).collect();
    for s in sessions
        .iter()
        .filter(|s| s.role == "player" && *s.app == *d.key.app && *s.name == *d.key.name)
    {
        *players.entry(s.protocol.to_owned()).or_default() += 1;
    }
    let video = d.video_config.as_ref().map(|config| {
        let dimensions = codec::video_dimensions(config.codec, &config.payload);
        let from_meta = |k| meta_number(d, k).map(|n| n as u32);
        Video {
            codec: codec_name(config.codec).to_owned(),
            width: dimensions.map(|(w, _)| w).or_else(|| from_meta("width")),
            height: dimensions.map(|(_, h)| h).or_else(|| from_meta("height")),
            frame_rate: (d.frame_rate * 100.0).round() / 100.0,
        }
    });
    let audio = d.audio_config.as_ref().map(|config| {
        let (sample_rate, channels) = codec::audio_parameters(config.codec, &config.payload)
            .map_or((None, None), |(r, c)| (Some(r), Some(c)));
        Audio {
            codec: codec_name(config.codec).to_owned(),
            sample_rate,
            channels,
        }
    });
    Stream {
        app: d.key.app.clone(),
        name: d.key.name.clone(),
        publisher: Publisher {
            clientid: d.publisher,
            protocol: publisher.map(|p| p.protocol).unwrap_or_default().to_owned(),
            addr: publisher.map(|p| p.addr.to_string()).unwrap_or_default(),
        },
        since: d.since,
        video,
        audio,
        bitrate: d.bitrate,
        bytes_in: publisher.map_or(0, |p| p.bytes_in),
        players,
    }
}

/// Every live stream, described.
async fn describe_all(state: &ApiState) -> Vec<StreamDescription> {
    let Ok(streams) = state.registry.send(ListStreams).await else {
        return Vec::new();
    };
    let asked = streams.iter().map(|s| s.send(Describe));
    let mut all: Vec<StreamDescription> = futures_util::future::join_all(asked)
        .await
        .into_iter()
        .filter_map(Result::ok)
        .collect();
    all.sort_by(|a, b| (&a.key.app, &a.key.name).cmp(&(&b.key.app, &b.key.name)));
    all
}

/// The live stream `key` and its description, found through the registry.
async fn describe_one(
    state: &ApiState,
    key: StreamKey,
) -> Option<(
    Addr<streamgate_actors::stream::StreamActor>,
    StreamDescription,
)> {
    let stream = state
        .registry
        .send(streamgate_actors::registry::Lookup { key })
        .await
        .ok()??;
    let description = stream.send(Describe).await.ok()?;
    Some((stream, description))
}

/// Every live stream.
#[utoipa::path(
    get,
    path = "/api/v1/streams",
    responses(
        (status = 200, description = "Every live stream", body = StreamList),
        (status = 401, description = "The token is missing or wrong")
    ),
    security((), ("bearer" = []))
)]
async fn list_streams(state: web::Data<ApiState>) -> HttpResponse {
    let described = describe_all(&state).await;
    let sessions = all_sessions(&state).await;
    let streams = described
        .iter()
        .map(|d| stream_view(d, &sessions))
        .collect();
    HttpResponse::Ok().json(StreamList { streams })
}

/// `{app}/{name}` (the app may have slashes) as a key.
fn stream_key(path: &str) -> Option<StreamKey> {
    let (app, name) = path.rsplit_once('/')?;
    (!app.is_empty() && !name.is_empty()).then(|| StreamKey::new(app, name))
}

fn no_stream(path: &str) -> HttpResponse {
    problem(
        actix_web::http::StatusCode::NOT_FOUND,
        format!("no live stream {path}"),
    )
}

/// One live stream.
#[utoipa::path(
    get,
    path = "/api/v1/streams/{app}/{name}",
    params(
        ("app" = String, Path, description = "Application"),
        ("name" = String, Path, description = "Stream name")
    ),
    responses(
        (status = 200, description = "The stream", body = Stream),
        (status = 404, description = "No such live stream", body = Problem),
        (status = 401, description = "The token is missing or wrong")
    ),
    security((), ("bearer" = []))
)]
async fn get_stream(state: web::Data<ApiState>, path: web::Path<String>) -> HttpResponse {
    let Some(key) = stream_key(&path) else {
        return no_stream(&path);
    };
    let Some((_, d)) = describe_one(&state, key).await else {
        return no_stream(&path);
    };
    let sessions = all_sessions(&state).await;
    HttpResponse::Ok().json(stream_view(&d, &sessions))
}

/// Ends a live stream: its publisher's `on_done` says `kicked`, its players' `stream_ended`.
#[utoipa::path(
    delete,
    path = "/api/v1/streams/{app}/{name}",
    params(
        ("app" = String, Path, description = "Application"),
        ("name" = String, Path, description = "Stream name")
    ),
    responses(
        (status = 202, description = "The stream is being ended", body = Kicked),
        (status = 404, description = "No such live stream", body = Problem),
        (status = 401, description = "The token is missing or wrong")
    ),
    security((), ("bearer" = []))
)]
async fn end_stream(state: web::Data<ApiState>, path: web::Path<String>) -> HttpResponse {
    let Some(key) = stream_key(&path) else {
        return no_stream(&path);
    };
    let Some((stream, d)) = describe_one(&state, key).await else {
        return no_stream(&path);
    };
    stream.do_send(EndStream {
        reason: "Ended by the operator.",
        end: EndReason::Kicked,
    });
    tracing::info!(stream = %path, publisher = d.publisher, "stream ended through the API");
    HttpResponse::Accepted().json(Kicked {
        clientid: d.publisher,
    })
}

/// The server's name, version and listeners.
#[utoipa::path(
    get,
    path = "/api/v1/server",
    responses(
        (status = 200, description = "The server", body = ServerInfo),
        (status = 401, description = "The token is missing or wrong")
    ),
    security((), ("bearer" = []))
)]
async fn server_info(state: web::Data<ApiState>) -> HttpResponse {
    HttpResponse::Ok().json(state.server.load().as_ref())
}

/// Reads the config file again and puts it in force, as SIGHUP does: hook settings, limits,
/// queue and merge settings and the log level apply to new sessions at once; sessions
/// already running go on untouched; listeners whose `<enable>`, `<address>` or `<port>`
/// changed are opened or closed (closing one ends none of its sessions). An invalid file
/// changes nothing.
#[utoipa::path(
    post,
    path = "/api/v1/reload",
    responses(
        (status = 200, description = "The file is in force", body = Reloaded),
        (status = 400, description = "The file is invalid (its error names the file and line), or the server runs without a file; nothing changed", body = Problem),
        (status = 401, description = "The token is missing or wrong"),
        (status = 409, description = "A listener the file asks for cannot be opened; nothing changed", body = Problem),
        (status = 503, description = "The server is shutting down", body = Problem)
    ),
    security((), ("bearer" = []))
)]
async fn reload(state: web::Data<ApiState>) -> HttpResponse {
    use actix_web::http::StatusCode;
    match state.reloader.reload().await {
        Ok(done) => HttpResponse::Ok().json(done),
        Err(e) => {
            let status = if e.is_config() {
                StatusCode::BAD_REQUEST
            } else if matches!(e, crate::server::ReloadError::Stopped) {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::CONFLICT
            };
            problem(status, e.to_string())
        }
    }
}

/// The bearer token scheme of `<api><token>`.
struct Bearer;

impl utoipa::Modify for Bearer {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The OpenAPI document of the API.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "streamgate API",
        version = "1",
        description = "The live streams and sessions of one streamgate server. With `<api><token>` set, every request needs `Authorization: Bearer <token>`."
    ),
    paths(
        server_info,
        reload,
        list_sessions,
        get_session,
        kick_session,
        list_streams,
        get_stream,
        end_stream,
        cluster::list_cluster_streams
    ),
    components(schemas(ProtocolName, RoleName)),
    modifiers(&Bearer)
)]
pub struct ApiDoc;

/// The OpenAPI document.
async fn openapi() -> HttpResponse {
    HttpResponse::Ok().json(ApiDoc::openapi())
}

#[cfg(test)]
mod tests {
    use std::rc::Rc;

    use actix::{Actor, Context, Handler};
    use streamgate_actors::session::SessionInfo;

    use super::*;
    use crate::session::core::Usage;
    use crate::session::table::SessionView;

    struct Nobody;

    impl Actor for Nobody {
        type Context = Context<Self>;
    }

    impl Handler<table::Control> for Nobody {
        type Result = ();
        fn handle(&mut self, _: table::Control, _: &mut Context<Self>) {}
    }

    /// A session on this thread's table, playing or publishing `app`/`name` when `role` is set.
    fn session(
        protocol: Protocol,
        peer: &str,
        role: Option<(Role, &str, &str)>,
        bytes: u64,
    ) -> Rc<SessionView> {
        let usage = Usage::new();
        usage.counts.bytes_in.set(bytes);
        usage.counts.bytes_out.set(bytes * 1000);
        usage.counts.frames_dropped.set(bytes % 7);
        let view = Rc::new(SessionView::new(
            streamgate_actors::session::next_client_id(),
            protocol,
            peer.parse().expect("a socket address"),
            usage,
            Nobody.start().recipient(),
        ));
        table::register(view.clone());
        if let Some((role, app, name)) = role {
            view.begin(
                role,
                &SessionInfo {
                    protocol,
                    clientid: view.clientid,
                    addr: view.addr.parse().expect("an address"),
                    app: app.into(),
                    url: format!("{}://host/{app}/{name}?t=\"é\\\n", protocol.as_str()),
                    name: name.into(),
                    tcurl: String::new(),
                },
            );
        }
        view
    }

    /// The page the old way: every summary, filtered, sorted, paged, serialized by serde.
    fn expected(
        all: &[SessionSummary],
        keep: impl Fn(&SessionSummary) -> bool,
        offset: usize,
        limit: usize,
    ) -> String {
        let mut matching: Vec<SessionSummary> = all.iter().filter(|s| keep(s)).cloned().collect();
        matching.sort_by_key(|s| s.clientid);
        let total = matching.len();
        let sessions = matching.into_iter().skip(offset).take(limit).collect();
        serde_json::to_string(&SessionPage {
            total,
            offset,
            limit,
            sessions,
        })
        .expect("JSON")
    }

    fn written(filter: &table::Filter, offset: usize, limit: usize) -> String {
        let (total, entries) = table::page(filter, offset + limit);
        let page = entries.get(offset..).unwrap_or_default();
        let page = &page[..page.len().min(limit)];
        String::from_utf8(page_json(total, offset, limit, page)).expect("UTF-8")
    }

    #[actix_rt::test]
    async fn a_page_written_from_the_table_is_what_serializing_its_summaries_writes() {
        let mut views = Vec::new();
        for i in 0..30u64 {
            let role = match i % 3 {
                0 => None,
                1 => Some((Role::Player, "live", "cam")),
                _ => Some((
                    Role::Publisher,
                    "li\"ve/ü",
                    if i % 2 == 0 { "a" } else { "b" },
                )),
            };
            let protocol = [
                Protocol::Rtmp,
                Protocol::Rtsp,
                Protocol::Srt,
                Protocol::HttpFlv,
            ][(i % 4) as usize];
            let peer = if i % 5 == 0 {
                "[::1]:4000"
            } else {
                "127.0.0.1:4000"
            };
            views.push(session(protocol, peer, role, i * 123_457));
        }
        // A play that ended: connecting again.
        views[4].end();
        let all = table::snapshot();
        assert_eq!(all.len(), 30);

        let no_filter = table::Filter::default();
        for (offset, limit) in [(0, 1000), (0, 1), (3, 5), (28, 10), (40, 10)] {
            assert_eq!(
                written(&no_filter, offset, limit),
                expected(&all, |_| true, offset, limit)
            );
        }
        let filter = table::Filter {
            app: Some("li\"ve/ü".into()),
            name: Some("a".into()),
            ..Default::default()
        };
        assert_eq!(
            written(&filter, 1, 3),
            expected(&all, |s| &*s.app == "li\"ve/ü" && &*s.name == "a", 1, 3)
        );
        let filter = table::Filter {
            protocol: Some(Protocol::Srt),
            role: Some(None),
            ..Default::default()
        };
        assert_eq!(
            written(&filter, 0, 100),
            expected(
                &all,
                |s| s.protocol == "srt" && s.role == "connecting",
                0,
                100
            )
        );

        // The counts kept as sessions change are what a walk of the table finds.
        let walked = |all: &[SessionSummary]| {
            let mut counts = [[0u64; 3]; PROTOCOLS.len()];
            for s in all {
                let p = PROTOCOLS
                    .iter()
                    .position(|p| *p == s.protocol)
                    .expect("protocol");
                let r = ROLES.iter().position(|r| *r == s.role).expect("role");
                counts[p][r] += 1;
            }
            counts
        };
        assert_eq!(table::stats().sessions, walked(&all));
        for view in views.iter().step_by(4) {
            view.end();
        }
        for view in views.iter().skip(1).step_by(3) {
            table::unregister(view.clientid);
        }
        assert_eq!(table::stats().sessions, walked(&table::snapshot()));
        for view in &views {
            table::unregister(view.clientid);
        }
        assert_eq!(table::stats().sessions, [[0; 3]; PROTOCOLS.len()]);
    }
}
