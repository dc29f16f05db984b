//! HTTP Notify: the [`NotifyActor`] puts each connect, play, publish and done event to the
//! operator's HTTP endpoint and answers a [`Decision`].
//!
//! It owns the wire format (form-urlencoded or JSON POST body, or the same fields in a GET
//! query string), the signature of each request (`X-Streamgate-Signature`, when the protocol
//! has a `<secret>`), the per-hook timeout and the failure policy, which is fail closed: a
//! timeout, a refused connection or any status other than 200 denies, except that a `3xx`
//! with a usable `Location` renames a play or publish ([`Decision::Rename`]). `Done` is
//! informational: its answer is never checked.
//!
//! One `NotifyActor` runs per worker, on an arbiter of its own beside it (so hook answers do not
//! wait behind the worker's media work); each keeps its own keep-alive pool. Every request runs as its
//! own future, so a slow hook delays only the session that asked. It must not know any
//! protocol's wire format.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix::prelude::*;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{HeaderValue, CONTENT_TYPE, LOCATION};
use hyper::Request;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use ring::hmac;
use serde::Serialize;
use tokio::sync::Semaphore;

use crate::names::StreamTarget;
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

/// How a POST carries the fields (`<notify_format>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NotifyFormat {
    /// An `application/x-www-form-urlencoded` body (the default).
    #[default]
    Form,
    /// An `application/json` body: one object, the same names in the same order, numbers as
    /// JSON numbers. POST only.
    Json,
}

/// The header that carries a callback's signature when its protocol has a `<secret>`.
pub const SIGNATURE_HEADER: &str = "x-streamgate-signature";

/// The secret length below which start-up warns: shorter HMAC keys are easier to guess.
pub const MIN_SECRET_LEN: usize = 16;

/// `<secret>` and `<secret_id>`: signs every callback of one protocol with HMAC-SHA256
/// (`X-Streamgate-Signature: t=<unix seconds>,kid=<secret_id>,v1=<hex>`, without `kid=` when
/// there is no `<secret_id>`). Its `Debug` never shows the secret.
#[derive(Clone)]
pub struct Signer {
    secret: Vec<u8>,
    id: Option<String>,
    key: hmac::Key,
}

impl Signer {
    /// A signer with the key `secret` (its bytes as they are) and the key id `id`.
    pub fn new(secret: &[u8], id: Option<String>) -> Self {
        Signer {
            secret: secret.to_vec(),
            id,
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
        }
    }

    /// The secret's length in bytes.
    pub fn secret_len(&self) -> usize {
        self.secret.len()
    }

    /// The `<secret_id>`, if any.
    pub fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }

    /// Lowercase hex of HMAC-SHA256(secret, `<t>.` + `signed`).
    pub fn v1(&self, t: u64, signed: &[u8]) -> String {
        let mut context = hmac::Context::with_key(&self.key);
        context.update(t.to_string().as_bytes());
        context.update(b".");
        context.update(signed);
        let tag = context.sign();
        let mut hex = String::with_capacity(2 * tag.as_ref().len());
        for b in tag.as_ref() {
            hex.push(char::from(HEX[usize::from(b >> 4)]));
            hex.push(char::from(HEX[usize::from(b & 0xf)]));
        }
        hex
    }

    /// The value of [`SIGNATURE_HEADER`] for `signed` (the POST body, or the GET query string
    /// after `?`) at Unix time `t` (seconds).
    pub fn header(&self, t: u64, signed: &[u8]) -> String {
        let v1 = self.v1(t, signed);
        match &self.id {
            Some(id) => format!("t={t},kid={id},v1={v1}"),
            None => format!("t={t},v1={v1}"),
        }
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

impl PartialEq for Signer {
    fn eq(&self, other: &Self) -> bool {
        self.secret == other.secret && self.id == other.id
    }
}

impl Eq for Signer {}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field(
                "secret",
                &format_args!("({} bytes, hidden)", self.secret.len()),
            )
            .field("id", &self.id)
            .finish()
    }
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
    /// Form or JSON body (POST).
    pub format: NotifyFormat,
    /// Signs every request when set (`<secret>`, `<secret_id>`).
    pub signer: Option<Signer>,
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
            format: NotifyFormat::Form,
            signer: None,
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
    /// `<hls><http_notify>`.
    pub hls: NotifyConfig,
    /// `<node_id>`: the `node` field of every callback.
    pub node: String,
}

/// The hook table in force, shared by every notifier, session and the outbox. A reload puts
/// a new table in its place ([`Hooks::store`]); each call reads the table in force when it is
/// made, without a lock, so a session's next call (its `on_update`, its `on_done`) goes where
/// the operator now says, as it would after a restart.
#[derive(Debug, Clone, Default)]
pub struct Hooks(Arc<arc_swap::ArcSwap<HookTable>>);

impl Hooks {
    /// Hooks with `table` in force.
    pub fn new(table: HookTable) -> Self {
        Hooks(Arc::new(arc_swap::ArcSwap::from_pointee(table)))
    }

    /// The table in force now.
    pub fn load(&self) -> Arc<HookTable> {
        self.0.load_full()
    }

    /// Puts `table` in force for every call made from now on.
    pub fn store(&self, table: HookTable) {
        self.0.store(Arc::new(table));
    }
}

impl HookTable {
    /// The settings for one protocol.
    pub fn get(&self, protocol: Protocol) -> &NotifyConfig {
        match protocol {
            Protocol::Rtmp => &self.rtmp,
            Protocol::Rtsp => &self.rtsp,
            Protocol::Srt => &self.srt,
            Protocol::HttpFlv => &self.httpflv,
            Protocol::Hls => &self.hls,
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

    /// The fields as one JSON object: the same names in the same order, numbers as numbers.
    pub fn json(&self) -> Vec<u8> {
        // Serializing a flat struct of strings and integers cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
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
    /// The business server answered this `3xx` without a `Location` that names a stream
    /// (`problem` says what was wrong), or to a call that cannot be renamed (`on_connect`).
    Redirect {
        /// The status it answered.
        status: u16,
        /// Why the redirect was not followed.
        problem: String,
    },
}

/// The answer to `Connect`, `Play` or `Publish`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// 200 (or no hook configured): go on.
    Allow,
    /// A `3xx` to `on_play` or `on_publish` whose `Location` names a stream: go on, as a
    /// play or publish of that stream.
    Rename {
        /// The status the business server answered.
        status: u16,
        /// The stream its `Location` names.
        target: StreamTarget,
    },
    /// Anything else: refuse the client.
    Deny(DenyReason),
}

impl Decision {
    /// True when the session may go on (under its own name or a renamed one).
    pub fn is_allow(&self) -> bool {
        matches!(self, Decision::Allow | Decision::Rename { .. })
    }

    /// The status the business server answered with, whatever the decision made of it
    /// (`200` for [`Decision::Allow`], also when no hook was called); `None` when it did not
    /// answer (a timeout, an unreachable server, an exchange that failed).
    pub fn answered(&self) -> Option<u16> {
        match self {
            Decision::Allow => Some(200),
            Decision::Rename { status, .. }
            | Decision::Deny(DenyReason::Status(status) | DenyReason::Redirect { status, .. }) => {
                Some(*status)
            }
            Decision::Deny(DenyReason::Timeout | DenyReason::Unreachable(_)) => None,
        }
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

    /// A session's `Done` was delivered, or has nowhere to go.
    pub fn finish(&self) {
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
    hooks: Hooks,
    client: HookClient,
    /// One permit per hook call in flight (HOOK_CONNECTIONS): more wait for a permit.
    permits: Arc<Semaphore>,
    done: DoneTracker,
}

impl NotifyActor {
    /// A notifier for the current arbiter. Redirects are not followed: only a 200 from the
    /// configured URL allows, and a `3xx`'s `Location` is read as the stream a play or publish
    /// goes on as ([`Decision::Rename`]), never fetched. `https://` hooks use `tls` (see
    /// [`tls_client_config`]).
    ///
    /// hyper's client skips interim `1xx` answers and takes the final one (RFC 9110 §15.2),
    /// and a pooled connection that receives bytes while no request is on it is closed, never
    /// reused, so a hook server's late or unsolicited answer can not be read as the answer to
    /// another session's request.
    pub fn new(hooks: Hooks, done: DoneTracker, tls: Arc<rustls::ClientConfig>) -> Self {
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
        let hooks = self.hooks.load();
        let config = hooks.get(info.protocol);
        let Some(url) = call.url(config) else {
            return Box::pin(async { Decision::Allow });
        };
        let fields = NotifyFields::new(call, &info, &hooks.node);
        let request = send(&self.client, &self.permits, config, url, &fields);
        let url = url.to_owned();
        Box::pin(async move {
            let mut decision = request.await;
            if let (Call::Connect, Decision::Rename { status, .. }) = (call, &decision) {
                // Only a play or publish names a stream to go on as.
                decision = Decision::Deny(DenyReason::Redirect {
                    status: *status,
                    problem: "on_connect cannot rename".into(),
                });
            }
            match &decision {
                Decision::Allow => tracing::debug!(
                    clientid = info.clientid,
                    protocol = %info.protocol,
                    call = call.as_str(),
                    %url,
                    "hook allowed"
                ),
                Decision::Rename { status, target } => tracing::debug!(
                    clientid = info.clientid,
                    protocol = %info.protocol,
                    call = call.as_str(),
                    %url,
                    status,
                    to = %target.key(&info.app),
                    "hook renamed the stream"
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

/// Builds the request of one call: the fields as a form or JSON body (POST) or query (GET),
/// signed with the protocol's secret (if any) at the time of building, so a retry carries a
/// fresh `t`.
pub(crate) fn build_request(
    config: &NotifyConfig,
    url: &str,
    fields: &NotifyFields<'_>,
) -> Result<Request<Full<Bytes>>, hyper::http::Error> {
    let (builder, body) = match (config.method, config.format) {
        (NotifyMethod::Post, NotifyFormat::Form) => (
            Request::post(url).header(CONTENT_TYPE, "application/x-www-form-urlencoded"),
            Bytes::from(fields.encode()),
        ),
        (NotifyMethod::Post, NotifyFormat::Json) => (
            Request::post(url).header(CONTENT_TYPE, "application/json"),
            Bytes::from(fields.json()),
        ),
        // The config refuses GET with JSON: a GET carries the fields in its query.
        (NotifyMethod::Get, _) => (Request::get(get_url(url, fields)), Bytes::new()),
    };
    let mut request = builder.body(Full::new(body.clone()))?;
    if let Some(signer) = &config.signer {
        let value = sign(signer, &request, &body, unix_seconds());
        request
            .headers_mut()
            .insert(SIGNATURE_HEADER, HeaderValue::try_from(value)?);
    }
    Ok(request)
}

/// The signature header of `request`: over its `body` for a POST, over the query string of
/// its target (after `?`, the operator's own query included) as it goes on the wire for a GET.
fn sign(signer: &Signer, request: &Request<Full<Bytes>>, body: &[u8], t: u64) -> String {
    if request.method() == hyper::Method::GET {
        let query = request.uri().query().unwrap_or_default();
        signer.header(t, query.as_bytes())
    } else {
        signer.header(t, body)
    }
}

/// Now, in whole seconds since the Unix epoch (0 for a clock before it).
fn unix_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
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
    let (protocol, call) = (fields.protocol, fields.call.as_str());
    let asked = std::time::Instant::now();
    let exchange = exchange(client, permits, timeout, request);
    async move {
        let decision = exchange.await;
        let result = match &decision {
            // A rename allows; a redirect it could not follow refuses, as any other status.
            Decision::Allow | Decision::Rename { .. } => "allow",
            Decision::Deny(DenyReason::Status(_) | DenyReason::Redirect { .. }) => "deny",
            Decision::Deny(DenyReason::Timeout) => "timeout",
            Decision::Deny(DenyReason::Unreachable(_)) => "error",
        };
        let labels = crate::metrics::HookLabels {
            protocol,
            call,
            result,
        };
        crate::metrics::metrics().hook_call(labels, asked.elapsed());
        decision
    }
}

/// The exchange of one call: its decision.
async fn exchange(
    client: HookClient,
    permits: Arc<Semaphore>,
    timeout: Duration,
    request: Result<Request<Full<Bytes>>, hyper::http::Error>,
) -> Decision {
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
        let decision = decision_of(status, response.headers().get(LOCATION));
        actix_rt::spawn(async move {
            let body = Limited::new(response.into_body(), 1 << 16);
            let _ = actix_rt::time::timeout(timeout, body.collect()).await;
            drop(permit);
        });
        Ok(decision)
    };
    match actix_rt::time::timeout(timeout, exchange).await {
        Ok(Ok(decision)) => decision,
        Ok(Err(reason)) => Decision::Deny(reason),
        Err(_) => Decision::Deny(DenyReason::Timeout),
    }
}

/// The decision a final answer makes: 200 allows; a `3xx` renames to the stream its
/// `Location` names ([`StreamTarget::from_location`]), and refuses without a usable one;
/// anything else refuses.
fn decision_of(status: u16, location: Option<&hyper::header::HeaderValue>) -> Decision {
    match status {
        200 => Decision::Allow,
        300..=399 => {
            let target = location
                .map(|l| StreamTarget::from_location(l.as_bytes()).map_err(|e| e.to_string()))
                .unwrap_or_else(|| Err("no Location".into()));
            match target {
                Ok(target) => Decision::Rename { status, target },
                Err(problem) => Decision::Deny(DenyReason::Redirect { status, problem }),
            }
        }
        _ => Decision::Deny(DenyReason::Status(status)),
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
            let decision = decision_of(status, response.headers().get(LOCATION));
            let _ = Limited::new(response.into_body(), 1 << 16).collect().await;
            Ok::<Decision, DenyReason>(decision)
        };
        match tokio::time::timeout(Duration::from_secs(1), exchange).await {
            Ok(Ok(decision)) => decision,
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
        let hooks = self.hooks.load();
        let config = hooks.get(info.protocol);
        let Some(url) = Call::Update.url(config) else {
            return Box::pin(async { UpdateAnswer::Keep });
        };
        let fields = NotifyFields::new(Call::Update, &info, &hooks.node).with_used(msg.used);
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
    if matches!(decision, Decision::Allow) {
        return UpdateAnswer::Keep;
    }
    match decision.answered() {
        // A 3xx renames only a play or publish request: to on_update it is an answer other
        // than 200, whatever its Location.
        Some(status) if status < 500 => UpdateAnswer::End(status),
        _ => {
            let unanswered = UPDATES_UNANSWERED.fetch_add(1, Ordering::Relaxed) + 1;
            tracing::warn!(
                ?decision,
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
        let hooks = self.hooks.load();
        let config = hooks.get(info.protocol);
        let tracker = self.done.clone();
        let Some(url) = Call::Done.url(config) else {
            tracker.finish();
            return;
        };
        let fields = NotifyFields::new(Call::Done, &info, &hooks.node).with_usage(msg.usage);
        let request = send(&self.client, &self.permits, config, url, &fields);
        let url = url.to_owned();
        actix_rt::spawn(async move {
            match request.await {
                Decision::Allow => {
                    tracing::debug!(clientid = info.clientid, %url, "on_done delivered")
                }
                // The answer to on_done is not checked; a failure to deliver is still logged.
                decision => match decision.answered() {
                    Some(status) => {
                        tracing::debug!(clientid = info.clientid, %url, status, "on_done answered")
                    }
                    None => tracing::warn!(
                        clientid = info.clientid,
                        %url,
                        ?decision,
                        "on_done not delivered"
                    ),
                },
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

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    #[test]
    fn signature_is_hmac_sha256_of_t_dot_signed_bytes() {
        // The same value as Python's
        // hmac.new(SECRET, b"1787568000.protocol=rtmp&call=done", hashlib.sha256).hexdigest()
        let v1 = "8bbe070fd684b653d105dd95d4e758709fc9273805b6517eb445396e24edc377";
        let signed = b"protocol=rtmp&call=done";
        let with_id = Signer::new(SECRET, Some("k1".into()));
        assert_eq!(
            with_id.header(1_787_568_000, signed),
            format!("t=1787568000,kid=k1,v1={v1}")
        );
        let without = Signer::new(SECRET, None);
        assert_eq!(
            without.header(1_787_568_000, signed),
            format!("t=1787568000,v1={v1}")
        );
        assert_ne!(without.v1(1_787_568_001, signed), v1);
        assert_ne!(without.v1(1_787_568_000, b"protocol=rtmp&call=done "), v1);
    }

    #[test]
    fn signer_debug_hides_the_secret() {
        let text = format!("{:?}", Signer::new(b"sk-very-secret-value", None));
        assert!(!text.contains("very-secret"), "{text}");
        assert!(text.contains("20 bytes"), "{text}");
    }

    /// The `t` and `v1` of a request's signature header.
    fn signature_of(request: &Request<Full<Bytes>>) -> (u64, String, String) {
        let header = request
            .headers()
            .get(SIGNATURE_HEADER)
            .and_then(|v| v.to_str().ok())
            .expect("a signature header")
            .to_owned();
        let t = header
            .split(',')
            .find_map(|p| p.strip_prefix("t="))
            .and_then(|t| t.parse().ok())
            .expect("t=");
        let v1 = header
            .split(',')
            .find_map(|p| p.strip_prefix("v1="))
            .expect("v1=")
            .to_owned();
        (t, v1, header)
    }

    async fn body_of(request: Request<Full<Bytes>>) -> Bytes {
        request
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default()
    }

    #[actix_rt::test]
    async fn every_request_is_signed_over_what_goes_on_the_wire() {
        let i = info();
        let fields = NotifyFields::new(Call::Done, &i, "edge-1").with_usage(UsageReport {
            used: Used {
                start: 1,
                duration_ms: 2,
                bytes_in: 3,
                bytes_out: 4,
            },
            reason: crate::usage::EndReason::Closed,
        });
        let signer = Signer::new(SECRET, Some("k1".into()));
        let before = unix_seconds();
        for format in [NotifyFormat::Form, NotifyFormat::Json] {
            let config = NotifyConfig {
                format,
                signer: Some(signer.clone()),
                ..NotifyConfig::default()
            };
            let request = build_request(&config, "http://h/done?key=s", &fields).expect("built");
            let (t, v1, header) = signature_of(&request);
            assert!(t >= before && t <= unix_seconds(), "{header}");
            assert!(header.starts_with(&format!("t={t},kid=k1,v1=")), "{header}");
            let body = body_of(request).await;
            assert_eq!(v1, signer.v1(t, &body), "{format:?}");
        }
        // GET: the query after `?`, the operator's own query included, as sent; a fragment in
        // the hook URL is not sent, so it is not signed.
        for hook in ["http://h/done?key=s", "http://h/done?key=s#frag"] {
            let config = NotifyConfig {
                method: NotifyMethod::Get,
                signer: Some(signer.clone()),
                ..NotifyConfig::default()
            };
            let request = build_request(&config, hook, &fields).expect("built");
            let query = request.uri().query().expect("a query").to_owned();
            assert!(
                query.starts_with("key=s&protocol=rtmp&call=done&"),
                "{query}"
            );
            assert!(query.ends_with("&reason=closed"), "{query}");
            let (t, v1, _) = signature_of(&request);
            assert_eq!(v1, signer.v1(t, query.as_bytes()), "{hook}");
        }
        // No secret: no header.
        let request =
            build_request(&NotifyConfig::default(), "http://h/done", &fields).expect("built");
        assert!(request.headers().get(SIGNATURE_HEADER).is_none());
    }

    #[test]
    fn json_body_has_the_same_names_in_order_and_numbers_as_numbers() {
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
        let done = NotifyFields::new(Call::Done, &i, "edge-1").with_usage(usage);
        assert_eq!(
            String::from_utf8(done.json()).expect("UTF-8"),
            r#"{"protocol":"rtmp","call":"done","addr":"192.168.1.100","app":"live","url":"rtmp://host:1935/live/cam 1?token=a&b=c","name":"cam 1","tcurl":"rtmp://host:1935/live","clientid":42,"node":"edge-1","start":1700000000123,"duration_ms":4500,"bytes_in":10,"bytes_out":20000,"reason":"stream_ended"}"#
        );
        let play = NotifyFields::new(Call::Play, &i, "edge-1");
        let text = String::from_utf8(play.json()).expect("UTF-8");
        assert!(
            text.ends_with(r#""clientid":42,"node":"edge-1"}"#),
            "{text}"
        );
        let config = NotifyConfig {
            format: NotifyFormat::Json,
            ..NotifyConfig::default()
        };
        let request = build_request(&config, "http://h/play", &play).expect("built");
        assert_eq!(
            request.headers().get(CONTENT_TYPE).map(|v| v.as_bytes()),
            Some(&b"application/json"[..])
        );
    }

    #[test]
    fn a_3xx_with_a_location_renames_and_without_one_refuses() {
        let renamed = decide_answer(
            b"HTTP/1.1 302 Found\r\nLocation: /live/alice?x=1\r\nContent-Length: 0\r\n\r\n",
        );
        assert_eq!(
            renamed,
            Decision::Rename {
                status: 302,
                target: StreamTarget {
                    app: Some("live".into()),
                    name: "alice".into()
                }
            }
        );
        assert!(renamed.is_allow());
        let bare = decide_answer(b"HTTP/1.1 307 Temporary Redirect\r\nlocation: alice\r\n\r\n");
        assert!(
            matches!(&bare, Decision::Rename { status: 307, target } if target.app.is_none()),
            "{bare:?}"
        );
        for unusable in [
            &b"HTTP/1.1 302 Found\r\nContent-Length: 0\r\n\r\n"[..],
            b"HTTP/1.1 302 Found\r\nLocation: \r\nContent-Length: 0\r\n\r\n",
            b"HTTP/1.1 301 Moved\r\nLocation: a/b/c\r\nContent-Length: 0\r\n\r\n",
            b"HTTP/1.1 303 See Other\r\nLocation: live/a%2\r\nContent-Length: 0\r\n\r\n",
        ] {
            let decision = decide_answer(unusable);
            assert!(
                matches!(decision, Decision::Deny(DenyReason::Redirect { .. })),
                "{decision:?}"
            );
            assert_eq!(decision.deny_status(), 403);
            assert!(decision.answered().is_some_and(|s| (300..400).contains(&s)));
        }
        // A Location on anything but a 3xx changes nothing.
        assert_eq!(
            decide_answer(
                b"HTTP/1.1 403 Forbidden\r\nLocation: alice\r\nContent-Length: 0\r\n\r\n"
            ),
            Decision::Deny(DenyReason::Status(403))
        );
        assert_eq!(
            decide_answer(b"HTTP/1.1 200 OK\r\nLocation: alice\r\nContent-Length: 0\r\n\r\n"),
            Decision::Allow
        );
    }

    #[test]
    fn deny_status_maps_401_and_everything_else() {
        assert_eq!(Decision::Deny(DenyReason::Status(401)).deny_status(), 401);
        assert_eq!(Decision::Deny(DenyReason::Status(500)).deny_status(), 403);
        assert_eq!(Decision::Deny(DenyReason::Timeout).deny_status(), 403);
    }
}
