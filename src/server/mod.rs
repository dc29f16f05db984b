//! Wires the server together: the worker arbiters (each with a `NotifyActor` on a thread of
//! its own), the stream `Registry`, and one listener per enabled protocol; and takes it apart
//! again on shutdown, ending every stream and waiting for the `on_done` calls that are owed.
//!
//! Must run inside an actix `System`. Holds no protocol logic.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use streamgate_actors::notify::{
    tls_client_config, DoneTracker, HookTable, Hooks, NotifyActor, MIN_SECRET_LEN,
};
use streamgate_actors::outbox::{OutboxError, OutboxService};
use streamgate_actors::registry::{EndAll, Registry};
use streamgate_actors::stream::Kick;
use streamgate_actors::usage::EndReason;

mod listeners;
pub mod reload;

use crate::config::Config;
use crate::listener::Worker;
use crate::session::{SessionContext, SessionShared};
use listeners::Listeners;
pub use reload::{ReloadError, Reloader};

/// The server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A listening socket could not be bound.
    #[error("cannot listen for {protocol} on port {port}: {source}")]
    Bind {
        /// Which listener.
        protocol: &'static str,
        /// Which port.
        port: u16,
        /// The OS error.
        source: std::io::Error,
    },
    /// The API's socket could not be bound.
    #[error("cannot listen for the API on {address}: {source}")]
    Api {
        /// `<api><address>:<port>`.
        address: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The TLS client for `https://` hooks could not be set up.
    #[error("cannot set up TLS for https hooks: {0}")]
    Tls(#[from] rustls::Error),
    /// The outbox in `<data_dir>` could not be opened (or another server holds it).
    #[error(transparent)]
    Outbox(#[from] OutboxError),
    /// The cluster could not be joined (`<cluster>`).
    #[error(transparent)]
    Cluster(#[from] crate::cluster::ClusterError),
}

/// A running server.
pub struct Server {
    arbiters: Vec<Arbiter>,
    registry: Addr<Registry>,
    done: DoneTracker,
    outbox: OutboxService,
    hooks: Hooks,
    reloader: Reloader,
    /// The API's listening address, when the API is enabled.
    pub api_addr: Option<SocketAddr>,
    /// The RTMP listening address, when RTMP is enabled.
    pub rtmp_addr: Option<SocketAddr>,
    /// The HTTP-FLV listening address, when HTTP-FLV is enabled.
    pub httpflv_addr: Option<SocketAddr>,
    /// The RTSP listening address, when RTSP is enabled.
    pub rtsp_addr: Option<SocketAddr>,
    /// The SRT (UDP) listening address, when SRT is enabled.
    pub srt_addr: Option<SocketAddr>,
    /// The HLS listening address, when HLS is enabled.
    pub hls_addr: Option<SocketAddr>,
}

/// A `<secret>` shorter than [`MIN_SECRET_LEN`] bytes is allowed (an operator may have to
/// match an existing one) but easier to guess, so start-up says so once per protocol.
pub(crate) fn warn_short_secrets(hooks: &HookTable) {
    for (section, notify) in [
        ("rtmp", &hooks.rtmp),
        ("rtsp", &hooks.rtsp),
        ("srt", &hooks.srt),
        ("httpflv", &hooks.httpflv),
        ("hls", &hooks.hls),
    ] {
        if let Some(signer) = notify.signer.as_ref() {
            if signer.secret_len() < MIN_SECRET_LEN {
                tracing::warn!(
                    bytes = signer.secret_len(),
                    "<{section}><http_notify><secret> is shorter than {MIN_SECRET_LEN} bytes; \
                     a random secret of 32 bytes or more is advised"
                );
            }
        }
    }
}

impl Server {
    /// Starts the worker pool and binds every enabled listener.
    pub async fn start(config: &Config) -> Result<Server, ServerError> {
        let hooks = Hooks::new(config.hooks());
        warn_short_secrets(&hooks.load());
        let done = DoneTracker::default();
        let tls = tls_client_config()?;
        // The outbox first: a data dir that cannot be opened, or that another server holds,
        // stops the start-up before anything listens.
        let (outbox, outbox_service) = OutboxService::start(
            &config.data_dir,
            config.outbox_max_events,
            hooks.clone(),
            tls.clone(),
            done.clone(),
        )?;
        tracing::info!(data_dir = %config.data_dir.display(), "outbox open");
        let registry = Registry::default();
        let streams = registry.directory();
        let registry = registry.start();
        // In a cluster: Redis (connected lazily), the heartbeat and the relay listener.
        let cluster = match &config.cluster {
            Some(cluster) => Some(
                crate::cluster::Cluster::start(cluster, &config.node_id, registry.clone())
                    .await?
                    .0,
            ),
            None => None,
        };
        let mut arbiters = Vec::with_capacity(2 * config.workers);
        let mut workers = Vec::with_capacity(config.workers);
        for _ in 0..config.workers {
            let arbiter = Arbiter::new();
            let handle = arbiter.handle();
            let (table, tracker, tls) = (hooks.clone(), done.clone(), tls.clone());
            // Each worker's hook calls run on a thread of their own: when a burst of joins
            // keeps the worker busy, hook answers are still read and their next requests
            // sent, instead of queueing behind the worker's socket writes (1000 players at
            // once: +138 ms of hook overhead at p99 with the notifier on the worker, +34 ms on
            // its own thread; docs/benchmarks.md).
            let notify_arbiter = Arbiter::new();
            let notify = Supervisor::start_in_arbiter(&notify_arbiter.handle(), move |_| {
                NotifyActor::new(table.clone(), tracker.clone(), tls.clone())
            });
            workers.push(Worker {
                arbiter: handle,
                context: SessionContext::new(SessionShared {
                    notify,
                    registry: registry.clone(),
                    streams: streams.clone(),
                    done: done.clone(),
                    hooks: hooks.clone(),
                    outbox: Some(outbox.clone()),
                    cluster: cluster.clone(),
                }),
            });
            arbiters.push(arbiter);
            arbiters.push(notify_arbiter);
        }
        let (reloader, commands) = reload::channel();
        let api_state = crate::api::ApiState {
            workers: Arc::new(workers.iter().map(|w| w.arbiter.clone()).collect()),
            registry: registry.clone(),
            token: Arc::new(arc_swap::ArcSwap::from_pointee(
                config.api.token.as_deref().map(Arc::from),
            )),
            server: Default::default(),
            reloader: reloader.clone(),
            cluster: cluster.clone(),
        };
        let api = if config.api.enable {
            let api = crate::api::start(&config.api, api_state.clone()).map_err(|source| {
                ServerError::Api {
                    address: SocketAddr::new(config.api.address, config.api.port),
                    source,
                }
            })?;
            Some(api)
        } else {
            None
        };
        let listeners = Listeners::start(config, workers).await?;
        let addresses = listeners.addresses();
        api_state
            .server
            .store(Arc::new(reload::server_info(config, &listeners)));
        tracing::info!(workers = config.workers, "server started");
        let api_addr = api.as_ref().map(|a| a.addr);
        actix_rt::spawn(reload::serve(
            reload::Running {
                config: config.clone(),
                hooks: hooks.clone(),
                listeners,
                api,
                api_state,
            },
            commands,
        ));
        Ok(Server {
            api_addr,
            arbiters,
            registry,
            done,
            outbox: outbox_service,
            hooks,
            reloader,
            rtmp_addr: addresses.rtmp,
            httpflv_addr: addresses.httpflv,
            rtsp_addr: addresses.rtsp,
            srt_addr: addresses.srt,
            hls_addr: addresses.hls,
        })
    }

    /// Reads the config file again and puts it in force (SIGHUP, `POST /api/v1/reload`).
    pub fn reloader(&self) -> Reloader {
        self.reloader.clone()
    }

    /// Stops accepting, ends every stream (each of its sessions sends its `on_done`), waits
    /// until every owed `on_done` has been delivered or the grace time (longest hook timeout
    /// plus two seconds) is over, and stops the workers.
    pub async fn shutdown(self) {
        self.reloader.stop().await;
        let streams = self
            .registry
            .send(EndAll {
                reason: "server shutting down",
            })
            .await
            .unwrap_or(0);
        tracing::info!(streams, "shutting down: ending every stream");
        // Then every session, also those not on a stream (connecting, or an RTSP player
        // between DESCRIBE and PLAY): each says `shutdown` in its on_done.
        for arbiter in &self.arbiters {
            arbiter.spawn_fn(|| {
                crate::session::table::kick_all(&Kick {
                    reason: "server shutting down",
                    end: EndReason::Shutdown,
                });
            });
        }
        let table = self.hooks.load();
        let longest_hook = [
            &table.rtmp,
            &table.rtsp,
            &table.srt,
            &table.httpflv,
            &table.hls,
        ]
        .iter()
        .map(|notify| notify.timeout)
        .max()
        .unwrap_or_default();
        let deadline = Instant::now() + longest_hook + Duration::from_secs(2);
        // Ended sessions send their on_done from their own arbiters; give them a moment to
        // stop before the first look.
        actix_rt::time::sleep(Duration::from_millis(50)).await;
        while self.done.pending() > 0 && Instant::now() < deadline {
            actix_rt::time::sleep(Duration::from_millis(20)).await;
        }
        let left = self.done.pending();
        if left > 0 {
            tracing::warn!(
                left,
                "on_done calls still pending at shutdown; kept in the outbox for the next run"
            );
        } else {
            tracing::info!("every on_done delivered");
        }
        // What is still undelivered stays in the store; what sessions sent is committed.
        self.outbox.stop();
        for arbiter in self.arbiters {
            arbiter.stop();
            let _ = arbiter.join();
        }
    }
}

/// Waits for SIGINT or SIGTERM.
pub async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
