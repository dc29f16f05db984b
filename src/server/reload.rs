//! Reload: the config file read again and put in force without a restart.
//!
//! One task on the server's own arbiter owns what a reload changes (the config in force, the
//! listeners, the API server) and takes commands from a channel ([`Reloader`]): SIGHUP (from
//! `main`) and `POST /api/v1/reload` send the same command, so two reloads never run at once
//! and every socket is opened on the same arbiter. A reload first reads and checks the file
//! and binds every socket the new config needs; when any of that fails, nothing has changed.
//! Then it applies: the hook table in force ([`Hooks`]), every listener's settings and limits
//! for new sessions, the log level, listeners opened and closed, the API's token and address.
//! Sessions already running are not touched. What only a restart can change (workers, node
//! id, data dir, outbox size, log format) is kept as it runs, and said.

use std::path::PathBuf;

use std::sync::Arc;

use streamgate_actors::notify::Hooks;
use tokio::sync::{mpsc, oneshot};

use super::listeners::Listeners;
use super::{warn_short_secrets, ServerError};
use crate::api::model::{Reloaded, ServerInfo};
use crate::api::{Api, ApiState};
use crate::config::{Config, LoadError, Section};

/// Why a reload changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The server was started without a file (`--config`).
    #[error("the server runs on the embedded default config: there is no file to read again")]
    NoFile,
    /// The file cannot be read, or is refused (with its file and line).
    #[error(transparent)]
    Invalid(#[from] LoadError),
    /// A socket the new config asks for cannot be opened.
    #[error(transparent)]
    Listen(#[from] ServerError),
    /// The server is stopping.
    #[error("the server is shutting down")]
    Stopped,
}

impl ReloadError {
    /// Whether the file is to blame (and the operator can fix it there).
    pub fn is_config(&self) -> bool {
        matches!(self, ReloadError::NoFile | ReloadError::Invalid(_))
    }
}

enum Command {
    Reload(oneshot::Sender<Result<Reloaded, ReloadError>>),
    Stop(oneshot::Sender<()>),
}

/// Asks the running server to read its config file again, or to close its listeners.
#[derive(Clone, Debug)]
pub struct Reloader(mpsc::Sender<Command>);

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Command::Reload(_) => "Reload",
            Command::Stop(_) => "Stop",
        })
    }
}

impl Reloader {
    /// Reads the config file again and puts it in force; says what changed, or why nothing
    /// did.
    pub async fn reload(&self) -> Result<Reloaded, ReloadError> {
        let (tx, rx) = oneshot::channel();
        self.0
            .send(Command::Reload(tx))
            .await
            .map_err(|_| ReloadError::Stopped)?;
        rx.await.map_err(|_| ReloadError::Stopped)?
    }

    /// Closes every listener and the API (shutdown); reloads after it fail.
    pub(super) async fn stop(&self) {
        let (tx, rx) = oneshot::channel();
        if self.0.send(Command::Stop(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }
}

/// A reloader and the commands it sends, for [`serve`].
pub(super) fn channel() -> (Reloader, Commands) {
    // Reloads are rare and each waits for its answer: a few may queue.
    let (tx, rx) = mpsc::channel(8);
    (Reloader(tx), Commands(rx))
}

/// The receiving end of a [`Reloader`].
pub(super) struct Commands(mpsc::Receiver<Command>);

/// What a reload changes, owned by the task that runs reloads.
pub(super) struct Running {
    /// The config in force.
    pub config: Config,
    pub hooks: Hooks,
    pub listeners: Listeners,
    pub api: Option<Api>,
    pub api_state: ApiState,
}

/// Runs reloads as they are asked for, one at a time, until stopped.
pub(super) async fn serve(mut running: Running, mut commands: Commands) {
    while let Some(command) = commands.0.recv().await {
        match command {
            Command::Reload(reply) => {
                let outcome = running.reload();
                match &outcome {
                    Ok(done) => tracing::info!(
                        file = %done.file,
                        applied = ?done.applied,
                        restart_required = ?done.restart_required,
                        "config reloaded"
                    ),
                    Err(e) => tracing::error!(error = %e, "reload refused; nothing changed"),
                }
                let _ = reply.send(outcome);
            }
            Command::Stop(reply) => {
                running.listeners.close();
                if let Some(api) = running.api.take() {
                    api.handle.stop(false).await;
                }
                let _ = reply.send(());
                return;
            }
        }
    }
}

/// Whether two sections differ in anything but their hooks (which the hook table covers) and
/// where they listen (which the listeners report).
fn settings_differ<P: PartialEq + Clone>(old: &Section<P>, new: &Section<P>) -> bool {
    let mut new = new.clone();
    new.notify = old.notify.clone();
    new.enable = old.enable;
    new.address = old.address;
    new.port = old.port;
    &new != old
}

/// The server's name, version and listening ports, for `GET /api/v1/server`.
pub(super) fn server_info(config: &Config, listeners: &Listeners) -> ServerInfo {
    let addresses = listeners.addresses();
    let port = |addr: Option<std::net::SocketAddr>| addr.map(|a| a.port());
    ServerInfo {
        node: config.node_id.clone(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        listeners: crate::api::model::Listeners {
            rtmp: port(addresses.rtmp),
            rtsp: port(addresses.rtsp),
            srt: port(addresses.srt),
            httpflv: port(addresses.httpflv),
            hls: port(addresses.hls),
        },
    }
}

impl Running {
    fn reload(&mut self) -> Result<Reloaded, ReloadError> {
        let path: PathBuf = self.config.source.clone().ok_or(ReloadError::NoFile)?;
        let mut new = Config::load(&path)?;
        let old = &self.config;

        // What only a restart changes is kept as it runs.
        let mut restart_required = Vec::new();
        macro_rules! kept {
            ($field:ident, $element:literal) => {
                if new.$field != old.$field {
                    restart_required.push($element.to_owned());
                    new.$field = old.$field.clone();
                }
            };
        }
        kept!(workers, "<workers>");
        kept!(node_id, "<node_id>");
        kept!(data_dir, "<data_dir>");
        kept!(outbox_max_events, "<outbox_max_events>");
        kept!(log_format, "<log_format>");
        kept!(cluster, "<cluster>");

        // Everything that can fail, before anything changes.
        let prepared = self.listeners.prepare(&new)?;
        let api_moved = (new.api.enable, new.api.address, new.api.port)
            != (old.api.enable, old.api.address, old.api.port);
        let new_api = match (api_moved, new.api.enable) {
            (true, true) => Some(crate::api::start(&new.api, self.api_state.clone()).map_err(
                |source| ServerError::Api {
                    address: std::net::SocketAddr::new(new.api.address, new.api.port),
                    source,
                },
            )?),
            _ => None,
        };

        let mut applied = Vec::new();
        let table = new.hooks();
        if table != old.hooks() {
            warn_short_secrets(&table);
            self.hooks.store(table);
            applied.push("hooks".to_owned());
        }
        for (name, differ) in [
            ("rtmp", settings_differ(&old.rtmp, &new.rtmp)),
            ("rtsp", settings_differ(&old.rtsp, &new.rtsp)),
            ("srt", settings_differ(&old.srt, &new.srt)),
            ("httpflv", settings_differ(&old.httpflv, &new.httpflv)),
            ("hls", settings_differ(&old.hls, &new.hls)),
        ] {
            if differ {
                applied.push(format!("{name} settings"));
            }
        }
        applied.extend(self.listeners.apply(&new, prepared)?);
        if new.log_level != old.log_level {
            match crate::logging::set_level(new.log_level) {
                Ok(true) => applied.push(format!("log level {}", new.log_level.as_str())),
                Ok(false) => {
                    tracing::warn!("RUST_LOG sets the log filter: <log_level> not applied")
                }
                Err(e) => tracing::error!(error = %e, "the new log level could not be set"),
            }
        }
        if new.api.token != old.api.token {
            self.api_state
                .token
                .store(Arc::new(new.api.token.as_deref().map(Arc::from)));
            applied.push("api token".to_owned());
        }
        if api_moved {
            if let Some(old_api) = self.api.take() {
                // Gracefully: a reload asked for through the old address still gets its
                // answer.
                let handle = old_api.handle;
                actix_rt::spawn(async move { handle.stop(true).await });
                applied.push(format!("api closed on {}", old_api.addr));
            }
            if let Some(api) = new_api {
                applied.push(format!("api opened on {}", api.addr));
                self.api = Some(api);
            }
        }
        for element in &restart_required {
            tracing::warn!(
                element,
                "changed in the file; takes effect at the next restart"
            );
        }
        self.api_state
            .server
            .store(Arc::new(server_info(&new, &self.listeners)));
        self.config = new;
        Ok(Reloaded {
            file: path.display().to_string(),
            applied,
            restart_required,
        })
    }
}
