//! The `streamgate` binary: reads the config (a file, or the embedded default), sets up
//! logging, starts the server in an actix System and runs until SIGINT or SIGTERM; SIGHUP
//! reads the config file again (see `server::reload`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;
use streamgate::config::Config;
use streamgate::server::{wait_for_signal, Server};

/// A live media server with HTTP Notify hooks.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    /// The XML config file; without it the embedded default config is used.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Validate this config file, report the result and exit.
    #[arg(long, value_name = "FILE", conflicts_with = "config")]
    check_config: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(path) = cli.check_config {
        return match load(&path) {
            Ok(_) => {
                println!("{}: ok", path.display());
                ExitCode::SUCCESS
            }
            Err(code) => code,
        };
    }
    let config = match &cli.config {
        Some(path) => match load(path) {
            Ok(config) => config,
            Err(code) => return code,
        },
        None => Config::embedded_default(),
    };
    init_tracing(&config);
    match run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("streamgate: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Reads and validates the config file, for `--check-config` and for start-up alike: a file
/// that checks is a file that starts. On an error, says why and gives the exit code (2).
fn load(path: &Path) -> Result<Config, ExitCode> {
    Config::load(path).map_err(|e| {
        eprintln!("streamgate: {e}");
        ExitCode::from(2)
    })
}

fn init_tracing(config: &Config) {
    streamgate::logging::init(config.log_level, config.log_format);
}

fn run(config: Config) -> anyhow::Result<()> {
    let system = actix::System::new();
    system.block_on(async move {
        let server = Server::start(&config).await.context("start-up failed")?;
        let stop = wait_for_signal();
        tokio::pin!(stop);
        let mut hangups = hangups();
        loop {
            tokio::select! {
                _ = &mut stop => break,
                Some(()) = hangups.recv() => {
                    tracing::info!("SIGHUP: reading the config file again");
                    // The outcome is logged by the reload itself.
                    let _ = server.reloader().reload().await;
                }
            }
        }
        tracing::info!("signal received");
        server.shutdown().await;
        anyhow::Ok(())
    })?;
    Ok(())
}

/// Every SIGHUP the process gets, from now on (none where there are no such signals).
fn hangups() -> tokio::sync::mpsc::Receiver<()> {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::hangup()) {
            Ok(mut hup) => {
                actix_rt::spawn(async move {
                    while hup.recv().await.is_some() {
                        // One reload queued is enough for any number of signals meanwhile.
                        let _ = tx.try_send(());
                    }
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "SIGHUP cannot be caught: reload through the API only")
            }
        }
    }
    #[cfg(not(unix))]
    drop(tx);
    rx
}
