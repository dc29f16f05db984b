//! HTTP Notify: the [`NotifyActor`] puts each connect, play, publish and done event to the
//! operator's HTTP endpoint and answers a [`Decision`].
//!
//! It owns the wire format (form-urlencoded POST body, or the same fields in a GET query
//! string), the per-hook timeout and the failure policy, which is fail closed: a timeout, a
//! refused connection or any status other than 200 denies. `Done` is informational: its answer
//! is never checked.
//!
//! One `NotifyActor` runs per worker, on an arbiter of its own beside it (so hook answers do not
//! wait behind the worker's media work); each keeps its own keep-alive pool. Every request runs as its
//! own future, so a slow hook delays only the session that asked. It must not know any
//! protocol's wire format.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::CONTENT_TYPE;
use hyper::Request;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use serde::Serialize;
use tokio::sync::Semaphore;

use crate::session::{Protocol, SessionInfo};
use crate::usage::{EndReason, UsageReport, Used};

/// How the fields travel to the business server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NotifyMethod {
    /// Fields in the query string.
    Get,
    /// Fields in an `application/x-www-form-urlencoded` body (the default).
    #[default]
    Post,
}

/// Most HTTP connections one worker's notifier keeps open to hook servers.
pub const HOOK_CONNECTIONS: usize = 256;

/// How long an idle keep-alive connection to a hook server is kept for the next call. Common
/// servers close theirs after 5 to 75 s; an idle connection is closed within twice this.
pub const HOOK_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// The default time a hook has to answer before the session is refused.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(5000);

/// The default time between two `on_update` calls of one session (and between two usage
/// checkpoints of its `on_done`).
pub const DEFAULT_UPDATE_INTERVAL: Duration = Duration::from_millis(30_000);

/// The `<http_notify>` settings of one protocol. A `None` URL disables that callback: the
/// event is allowed without a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyConfig {
    /// URL called when a client connects.
    pub on_connect: Option<String>,
    /// URL called when a client asks to play.
    pub on_play: Option<String>,
    /// URL called when a client asks to publish.
    pub on_publish: Option<String>,
    /// URL called when a play or publish session ends.
    pub on_done: Option<String>,
    /// URL called every `update_interval` for every active play and publish.
    pub on_update: Option<String>,
    /// Time between two `on_update` calls of one session.
    pub update_interval: Duration,
    /// GET or POST.
    pub method: NotifyMethod,
    /// How long a hook may take to answer; past it the session is refused.
    pub timeout: Duration,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            on_connect: None,
            on_play: None,
            on_publish: None,
            on_done: None,
            on_update: None,
            update_interval: DEFAULT_UPDATE_INTERVAL,
            method: NotifyMethod::Post,
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

/// The hook settings of every protocol, shared by all `NotifyActor`s.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HookTable {
    /// `<rtmp><http_notify>`.
    pub rtmp: NotifyConfig,
    /// `<rtsp><http_notify>`.
    pub rtsp: NotifyConfig,
    /// `<srt><http_notify>`.
    pub srt: NotifyConfig,
    /// `<httpflv><http_notify>`.
    pub httpflv: NotifyConfig,
    /// `<node_id>`: the `node` field of every callback.
    pub node: String,
}

impl HookTable {
    /// The settings for one protocol.
    pub fn get(&self, protocol: Protocol) -> &NotifyConfig {
        match protocol {
            Protocol::Rtmp => &self.rtmp,
            Protocol::Rtsp => &self.rtsp,
            Protocol::Srt => &self.srt,
            Protocol::HttpFlv => &self.httpflv,
        }
    }
}

/// The callback being made; its lowercase name is the `call` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Call {
    /// A client connected.
    Connect,
    /// A client asked to play.
    Play,
    /// A client asked to publish.
    Publish,
    /// A play or publish session ended.
    Done,
    /// A play or publish session is still running.
    Update,
}

impl Call {
    fn url(self, config: &NotifyConfig) -> Option<&str> {
        match self {
            Call::Connect => config.on_connect.as_deref(),
            Call::Play => config.on_play.as_deref(),
            Call::Publish => config.on_publish.as_deref(),
            Call::Done => config.on_done.as_deref(),
            Call::Update => config.on_update.as_deref(),
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Call::Connect => "connect",
            Call::Play => "play",
            Call::Publish => "publish",
            Call::Done => "done",
            Call::Update => "update",
        }
    }
}

/// The fields of one callback, in the order they are sent.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct NotifyFields<'a> {
    /// `rtmp`, `rtsp`, `srt` or `httpflv`.
    pub protocol: &'static str,
    /// `connect`, `play`, `publish` or `done`.
    pub call: Call,
    /// The client's IP address.
    pub addr: String,
    /// Application name.
    pub app: &'a str,
    /// The full URL the client asked for.
    pub url: &'a str,
    /// Stream name.
    pub name: &'a str,
    /// RTMP tcUrl, or empty.
    pub tcurl: &'a str,
    /// The session's unique id.
    pub clientid: u64,
    /// The server's `<node_id>`: (`node`, `clientid`) names one session.
    pub node: &'a str,
    /// `on_update` and `on_done`: what the session used.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub used: Option<Used>,
    /// `on_done` only: why it ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<EndReason>,
}

impl<'a> NotifyFields<'a> {
    /// The fields for `call` about `info`, from server `node`.
    pub fn new(call: Call, info: &'a SessionInfo, node: &'a str) -> Self {
        NotifyFields {
            node,
            used: None,
            reason: None,
            protocol: info.protocol.as_str(),
            call,
            addr: info.addr.to_string(),
            app: &info.app,
            url: &info.url,
            name: &info.name,
            tcurl: &info.tcurl,
            clientid: info.clientid,
        }
    }

    /// The same fields with the usage of an `on_done`.
    pub fn with_usage(mut self, usage: UsageReport) -> Self {
        self.used = Some(usage.used);
        self.reason = Some(usage.reason);
        self
    }

    /// The same fields with the running usage of an `on_update`.
    pub fn with_used(mut self, used: Used) -> Self {
        self.used = Some(used);
        self
    }

    /// The fields form-urlencoded: the POST body, or the query appended for GET.
    pub fn encode(&self) -> String {
        // Serializing a flat struct of strings and integers cannot fail.
        serde_urlencoded::to_string(self).unwrap_or_default()
    }
}

/// The hook URL for a GET: the operator's own query (if any) kept, our fields appended.
pub fn get_url(hook: &str, fields: &NotifyFields<'_>) -> String {
    let (base, fragment) = match hook.find('#') {
        Some(i) => hook.split_at(i),
        None => (hook, ""),
    };
    let sep = if !base.contains('?') {
        "?"
    } else if base.ends_with('?') || base.ends_with('&') {
        ""
    } else {
        "&"
    };
    format!("{base}{sep}{}{fragment}", fields.encode())
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DenyReason {
    /// The business server answered with this status (anything but 200).
    Status(u16),
    /// The business server did not answer within the timeout.
    Timeout,
    /// The business server could not be reached, or the exchange failed.
    Unreachable(String),
}

/// The answer to `Connect`, `Play` or `Publish`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// 200 (or no hook configured): go on.
    Allow,
    /// Anything else: refuse the client.
    Deny(DenyReason),
}

impl Decision {
    /// True when the session may go on.
    pub fn is_allow(&self) -> bool {
        matches!(self, Decision::Allow)
    }

    /// The status a protocol with HTTP-like codes should answer with: 401 when the hook
    /// said 401, 403 otherwise.
    pub fn deny_status(&self) -> u16 {
        match self {
            Decision::Deny(DenyReason::Status(401)) => 401,
            _ => 403,
        }
    }
}

/// A client connected: may it go on?
#[derive(Message, Debug, Clone)]
#[rtype(result = "Decision")]
pub struct Connect {
    /// The session; `name` is empty.
    pub info: SessionInfo,
}

/// A client asked to play a stream: may it?
#[derive(Message, Debug, Clone)]
#[rtype(result = "Decision")]
pub struct Play {
    /// The session and the stream it asked for.
    pub info: SessionInfo,
}

/// A client asked to publish a stream: may it?
#[derive(Message, Debug, Clone)]
#[rtype(result = "Decision")]
pub struct Publish {
    /// The session and the stream it asked for.
    pub info: SessionInfo,
}

/// A play or publish session ended. Fire and forget; sent exactly once per session that a
/// `Play` or `Publish` allowed.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct Done {
    /// The session that ended, with the same fields as its play or publish.
    pub info: SessionInfo,
    /// What it used and why it ended.
    pub usage: UsageReport,
}

/// A play or publish session is still running: may it go on? Sent every `update_interval`.
#[derive(Message, Debug, Clone)]
#[rtype(result = "UpdateAnswer")]
pub struct Update {
    /// The session, with the same fields as its play or publish.
    pub info: SessionInfo,
    /// What it has used so far.
    pub used: Used,
}

/// The answer to an `Update`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateAnswer {
    /// 200, no `on_update` configured, or no usable answer (timeout, unreachable, a 5xx): the
    /// session goes on. An outage of the business server must not end every session.
    Keep,
    /// The business server answered this status (not 200, below 500): end the session.
    End(u16),
}

/// The calls to `on_update` that got no usable answer (timeout, unreachable, 5xx), counted
/// across the server.
static UPDATES_UNANSWERED: AtomicUsize = AtomicUsize::new(0);

/// How many `on_update` calls got no usable answer since the server started.
pub fn updates_unanswered() -> usize {
    UPDATES_UNANSWERED.load(Ordering::Relaxed)
}

/// Counts play/publish sessions whose `on_done` has not yet been delivered, so shutdown can
/// wait for them. Shared by every arbiter.
#[derive(Debug, Clone, Default)]
pub struct DoneTracker(Arc<AtomicUsize>);

impl DoneTracker {
    /// A session began: its `Done` is now owed.
    pub fn begin(&self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }

    pub(crate) fn finish(&self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }

    /// How many `Done`s are still owed or in flight.
    pub fn pending(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

/// TLS settings for `https://` hooks: rustls (ring) trusting the system's root certificates,
/// which honours `SSL_CERT_FILE` and `SSL_CERT_DIR` so an operator's private CA can be added.
/// Built once at start-up and shared by every arbiter.
pub fn tls_client_config() -> Result<Arc<rustls::ClientConfig>, rustls::Error> {
    let mut roots = rustls::RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    for e in &found.errors {
        tracing::warn!(error = %e, "a system root certificate could not be loaded");
    }
    let (added, ignored) = roots.add_parsable_certificates(found.certs);
    tracing::debug!(added, ignored, "root certificates for https hooks");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The HTTP client of one notifier: hyper's HTTP/1.1 client over plain TCP or rustls.
pub(crate) type HookClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// The HTTP client of one notifier (or of the outbox's delivery): plain TCP or rustls, a
/// keep-alive pool of [`HOOK_CONNECTIONS`] per host.
pub(crate) fn hook_client(tls: &Arc<rustls::ClientConfig>) -> HookClient {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config((**tls).clone())
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(HOOK_IDLE_TIMEOUT)
        .pool_max_idle_per_host(HOOK_CONNECTIONS)
        .build(https)
}

/// Makes the HTTP calls of one arbiter.
pub struct NotifyActor {
    hooks: Arc<HookTable>,
    client: HookClient,
    /// One permit per hook call in flight (HOOK_CONNECTIONS): more wait for a permit.
    permits: Arc<Semaphore>,
    done: DoneTracker,
}

impl NotifyActor {
    /// A notifier for the current arbiter. Redirects are not followed: only a 200 from the
    /// configured URL allows. `https://` hooks use `tls` (see [`tls_client_config`]).
    ///
    /// hyper's client skips interim `1xx` answers and takes the final one (RFC 9110 §15.2),
    /// and a pooled connection that receives bytes while no request is on it is closed, never
    /// reused, so a hook server's late or unsolicited answer can not be read as the answer to
    /// another session's request.
    pub fn new(hooks: Arc<HookTable>, done: DoneTracker, tls: Arc<rustls::ClientConfig>) -> Self {
        let client = hook_client(&tls);
        NotifyActor {
            hooks,
            client,
            // Up to HOOK_CONNECTIONS calls in flight per notifier; more wait for a permit. A
            // pool of 100 made new players queue behind slow calls; 1024 made a burst open so
            // many connections at once that it was slower still (docs/benchmarks.md).
            permits: Arc::new(Semaphore::new(HOOK_CONNECTIONS)),
            done,
        }
    }

    fn decide(&self, call: Call, info: SessionInfo) -> Pin<Box<dyn Future<Output = Decision>>> {
        let config = self.hooks.get(info.protocol);
        let Some(url) = call.url(config) else {
            return Box::pin(async { Decision::Allow });
        };
        let fields = NotifyFields::new(call, &info, &self.hooks.node);
        let request = send(&self.client, &self.permits, config, url, &fields);
        let url = url.to_owned();
        Box::pin(async move {
            let decision = request.await;
            match &decision {
                Decision::Allow => tracing::debug!(
                    clientid = info.clientid,
                    protocol = %info.protocol,
                    call = call.as_str(),
                    %url,
                    "hook allowed"
                ),
                Decision::Deny(reason) => tracing::warn!(
                    clientid = info.clientid,
                    protocol = %info.protocol,
                    call = call.as_str(),
                    %url,
                    ?reason,
                    "hook refused the session"
                ),
            }
            decision
        })
    }
}

/// Builds the request of one call: the fields as a form body (POST) or query (GET).
pub(crate) fn build_request(
    config: &NotifyConfig,
    url: &str,
    fields: &NotifyFields<'_>,
) -> Result<Request<Full<Bytes>>, hyper::http::Error> {
    match config.method {
        NotifyMethod::Post => Request::post(url)
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Full::new(Bytes::from(fields.encode()))),
        NotifyMethod::Get => Request::get(get_url(url, fields)).body(Full::default()),
    }
}

/// An error and its causes on one line ("client error (Connect): tcp connect error: ...").
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// Makes one call and maps its outcome to a decision; the timeout covers waiting for a
/// connection permit, connecting and the answer's head. The response body is drained in the
/// background (at most 64 KiB, within the timeout) so the connection can go back to the
/// keep-alive pool; its permit is held until then.
fn send(
    client: &HookClient,
    permits: &Arc<Semaphore>,
    config: &NotifyConfig,
    url: &str,
    fields: &NotifyFields<'_>,
) -> impl Future<Output = Decision> + 'static {
    let timeout = config.timeout;
    let request = build_request(config, url, fields);
    let client = client.clone();
    let permits = Arc::clone(permits);
    async move {
        let request = match request {
            Ok(r) => r,
            Err(e) => return Decision::Deny(DenyReason::Unreachable(error_chain(&e))),
        };
        let exchange = async move {
            let permit = permits
                .acquire_owned()
                .await
                .map_err(|e| DenyReason::Unreachable(e.to_string()))?;
            let response = client
                .request(request)
                .await
                .map_err(|e| DenyReason::Unreachable(error_chain(&e)))?;
            let status = response.status().as_u16();
            actix_rt::spawn(async move {
                let body = Limited::new(response.into_body(), 1 << 16);
                let _ = actix_rt::time::timeout(timeout, body.collect()).await;
                drop(permit);
            });
            Ok(status)
        };
        match actix_rt::time::timeout(timeout, exchange).await {
            Ok(Ok(status)) => decision_of(status),
            Ok(Err(reason)) => Decision::Deny(reason),
            Err(_) => Decision::Deny(DenyReason::Timeout),
        }
    }
}

/// The decision a final answer's status makes: only 200 allows.
fn decision_of(status: u16) -> Decision {
    if status == 200 {
        Decision::Allow
    } else {
        Decision::Deny(DenyReason::Status(status))
    }
}

/// The decision the hook client makes of `answer`, the bytes a business server sends back to
/// one POST: hyper's HTTP/1.1 client over an in-memory connection (the same response parser
/// as the pooled client's), then [`decision_of`]; a connection that ends or an answer that
/// does not parse refuses, as it does for real. For the fuzz target `hook_answer`: any input
/// must give a decision, not a panic or a hang.
pub fn decide_answer(answer: &[u8]) -> Decision {
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
    else {
        return Decision::Deny(DenyReason::Unreachable("no runtime".into()));
    };
    let answer = answer.to_vec();
    runtime.block_on(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (client, mut server) = tokio::io::duplex(1 << 16);
        let exchange = async move {
            let (mut sender, connection) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(client))
                    .await
                    .map_err(|e| DenyReason::Unreachable(error_chain(&e)))?;
            tokio::spawn(connection);
            tokio::spawn(async move {
                // Take the request head, then answer with the given bytes and hang up.
                let mut head = [0u8; 4096];
                let _ = server.read(&mut head).await;
                let _ = server.write_all(&answer).await;
                let _ = server.shutdown().await;
            });
            let request = Request::post("http://hooks/on_play")
                .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Full::new(Bytes::from_static(b"call=play")))
                .map_err(|e| DenyReason::Unreachable(error_chain(&e)))?;
            let response = sender
                .send_request(request)
                .await
                .map_err(|e| DenyReason::Unreachable(error_chain(&e)))?;
            let status = response.status().as_u16();
            let _ = Limited::new(response.into_body(), 1 << 16).collect().await;
            Ok::<u16, DenyReason>(status)
        };
        match tokio::time::timeout(Duration::from_secs(1), exchange).await {
            Ok(Ok(status)) => decision_of(status),
            Ok(Err(reason)) => Decision::Deny(reason),
            Err(_) => Decision::Deny(DenyReason::Timeout),
        }
    })
}

impl Actor for NotifyActor {
    type Context = Context<Self>;

    fn started(&mut self, _ctx: &mut Self::Context) {
        tracing::debug!("notify actor started");
    }
}

impl Supervised for NotifyActor {
    fn restarting(&mut self, _ctx: &mut Self::Context) {
        tracing::warn!("notify actor restarting");
    }
}

impl Handler<Connect> for NotifyActor {
    type Result = ResponseFuture<Decision>;

    fn handle(&mut self, msg: Connect, _ctx: &mut Self::Context) -> Self::Result {
        self.decide(Call::Connect, msg.info)
    }
}

impl Handler<Play> for NotifyActor {
    type Result = ResponseFuture<Decision>;

    fn handle(&mut self, msg: Play, _ctx: &mut Self::Context) -> Self::Result {
        self.decide(Call::Play, msg.info)
    }
}

impl Handler<Publish> for NotifyActor {
    type Result = ResponseFuture<Decision>;

    fn handle(&mut self, msg: Publish, _ctx: &mut Self::Context) -> Self::Result {
        self.decide(Call::Publish, msg.info)
    }
}

impl Handler<Update> for NotifyActor {
    type Result = ResponseFuture<UpdateAnswer>;

    fn handle(&mut self, msg: Update, _ctx: &mut Self::Context) -> Self::Result {
        let info = msg.info;
        let config = self.hooks.get(info.protocol);
        let Some(url) = Call::Update.url(config) else {
            return Box::pin(async { UpdateAnswer::Keep });
        };
        let fields = NotifyFields::new(Call::Update, &info, &self.hooks.node).with_used(msg.used);
        let request = send(&self.client, &self.permits, config, url, &fields);
        let url = url.to_owned();
        Box::pin(async move {
            let answer = update_answer(&request.await);
            match answer {
                UpdateAnswer::End(status) => tracing::info!(
                    clientid = info.clientid,
                    %url,
                    status,
                    "on_update ends the session"
                ),
                UpdateAnswer::Keep => {}
            }
            answer
        })
    }
}

/// What an `on_update` outcome does to the session: a 200 keeps it, any other answer below
/// 500 ends it; no answer, a failed exchange or a 5xx (what a proxy says when the business
/// server behind it is down) keeps it, logged and counted.
fn update_answer(decision: &Decision) -> UpdateAnswer {
    match decision {
        Decision::Allow => UpdateAnswer::Keep,
        Decision::Deny(DenyReason::Status(status)) if *status < 500 => UpdateAnswer::End(*status),
        Decision::Deny(reason) => {
            let unanswered = UPDATES_UNANSWERED.fetch_add(1, Ordering::Relaxed) + 1;
            tracing::warn!(
                ?reason,
                unanswered,
                "on_update got no usable answer; the session goes on"
            );
            UpdateAnswer::Keep
        }
    }
}

impl Handler<Done> for NotifyActor {
    type Result = ();

    fn handle(&mut self, msg: Done, _ctx: &mut Self::Context) {
        let info = msg.info;
        let config = self.hooks.get(info.protocol);
        let tracker = self.done.clone();
        let Some(url) = Call::Done.url(config) else {
            tracker.finish();
            return;
        };
        let fields = NotifyFields::new(Call::Done, &info, &self.hooks.node).with_usage(msg.usage);
        let request = send(&self.client, &self.permits, config, url, &fields);
        let url = url.to_owned();
        actix_rt::spawn(async move {
            match request.await {
                Decision::Allow => {
                    tracing::debug!(clientid = info.clientid, %url, "on_done delivered")
                }
                // The answer to on_done is not checked; a failure to deliver is still logged.
                Decision::Deny(DenyReason::Status(status)) => {
                    tracing::debug!(clientid = info.clientid, %url, status, "on_done answered")
                }
                Decision::Deny(reason) => {
                    tracing::warn!(clientid = info.clientid, %url, ?reason, "on_done not delivered")
                }
            }
            tracker.finish();
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};

    fn info() -> SessionInfo {
        SessionInfo {
            protocol: Protocol::Rtmp,
            clientid: 42,
            addr: IpAddr::V4(Ipv4Addr::new(192, 168, 1, 100)),
            app: "live".into(),
            url: "rtmp://host:1935/live/cam 1?token=a&b=c".into(),
            name: "cam 1".into(),
            tcurl: "rtmp://host:1935/live".into(),
        }
    }

    #[test]
    fn post_body_has_every_field_in_order_and_escaped() {
        let i = info();
        let body = NotifyFields::new(Call::Publish, &i, "edge-1").encode();
        assert_eq!(
            body,
            "protocol=rtmp&call=publish&addr=192.168.1.100&app=live&\
             url=rtmp%3A%2F%2Fhost%3A1935%2Flive%2Fcam+1%3Ftoken%3Da%26b%3Dc&name=cam+1&\
             tcurl=rtmp%3A%2F%2Fhost%3A1935%2Flive&clientid=42&node=edge-1"
        );
    }

    #[test]
    fn done_carries_node_and_usage_after_the_seeds_fields() {
        let i = info();
        let usage = UsageReport {
            used: Used {
                start: 1_700_000_000_123,
                duration_ms: 4_500,
                bytes_in: 10,
                bytes_out: 20_000,
            },
            reason: crate::usage::EndReason::StreamEnded,
        };
        let body = NotifyFields::new(Call::Done, &i, "edge-1")
            .with_usage(usage)
            .encode();
        assert!(
            body.starts_with("protocol=rtmp&call=done&addr=192.168.1.100&app=live&"),
            "{body}"
        );
        assert!(
            body.ends_with(
                "&clientid=42&node=edge-1&start=1700000000123&duration_ms=4500&\
                 bytes_in=10&bytes_out=20000&reason=stream_ended"
            ),
            "{body}"
        );
    }

    #[test]
    fn odd_characters_round_trip() {
        let mut i = info();
        i.name = "a=b&c+d%e/ü#".into();
        let body = NotifyFields::new(Call::Play, &i, "edge-1").encode();
        let back: Vec<(String, String)> =
            serde_urlencoded::from_str(&body).expect("own encoding decodes");
        assert!(back.contains(&("name".into(), "a=b&c+d%e/ü#".into())));
        assert!(back.contains(&("call".into(), "play".into())));
        // The client's own query cannot smuggle a field in.
        assert_eq!(back.iter().filter(|(k, _)| k == "call").count(), 1);
    }

    #[test]
    fn get_url_keeps_the_operators_query() {
        let i = info();
        let f = NotifyFields::new(Call::Done, &i, "edge-1");
        let plain = get_url("http://h/done", &f);
        assert!(plain.starts_with("http://h/done?protocol=rtmp&call=done&"));
        let with_q = get_url("http://h/done?key=s", &f);
        assert!(with_q.starts_with("http://h/done?key=s&protocol=rtmp&"));
        let with_frag = get_url("http://h/done#x", &f);
        assert!(with_frag.starts_with("http://h/done?protocol=rtmp"));
        assert!(with_frag.ends_with("clientid=42&node=edge-1#x"));
    }

    #[test]
    fn interim_answers_are_skipped_and_only_a_final_200_allows() {
        let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK";
        assert_eq!(decide_answer(ok), Decision::Allow);
        assert_eq!(
            decide_answer(
                b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n"
            ),
            Decision::Deny(DenyReason::Status(403))
        );
        assert_eq!(
            decide_answer(b"HTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
            Decision::Allow
        );
        // An interim answer and then nothing: refused, never taken as the answer.
        assert!(!decide_answer(b"HTTP/1.1 100 Continue\r\n\r\n").is_allow());
        assert!(!decide_answer(b"garbage\r\n\r\n").is_allow());
        assert!(!decide_answer(b"").is_allow());
    }

    #[test]
    fn deny_status_maps_401_and_everything_else() {
        assert_eq!(Decision::Deny(DenyReason::Status(401)).deny_status(), 401);
        assert_eq!(Decision::Deny(DenyReason::Status(500)).deny_status(), 403);
        assert_eq!(Decision::Deny(DenyReason::Timeout).deny_status(), 403);
    }
}
