//! The server's protocol listeners, as a reload finds and leaves them.
//!
//! Each protocol has one [`Listening`] for the life of the server: its connection limits and
//! the settings its new sessions get, which a reload replaces in place, and its socket while
//! it is enabled. A reload first binds every socket the new config asks for ([`Listeners::
//! prepare`]): when one cannot be bound, nothing has changed and the reload fails. Only then
//! does it apply ([`Listeners::apply`]): new settings and limits for new sessions, new sockets
//! served, old ones closed. Closing a listener ends no session: a TCP listener's sessions own
//! their sockets; an SRT listener's one UDP socket carries its connections, so a closed SRT
//! listener takes no new callers and keeps serving the ones it has until the last has ended.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use super::ServerError;
use crate::config::{Config, Section};
use crate::limits::ConnectionLimits;
use crate::listener::srt::{self, Serving};
use crate::listener::{self, Admit, Refuse, StartSession, Worker};
use crate::session::hls::{serve as hls_serve, Hls};
use crate::session::httpflv::HttpFlvSession;
use crate::session::output::PlayerLimits;
use crate::session::rtmp::RtmpSession;
use crate::session::rtsp::ports::RtpPorts;
use crate::session::rtsp::RtspSession;
use crate::session::srt::SrtSettings;
use crate::session::SessionSettings;

/// Pending connections the kernel queues per listening socket.
const LISTEN_BACKLOG: i32 = 1024;

/// Where a listener listens: `<enable>`, `<address>` and `<port>`. A reload that changes it
/// opens or closes the listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Place {
    address: Option<IpAddr>,
    port: u16,
}

fn place<P>(section: &Section<P>) -> Option<Place> {
    section.enable.then_some(Place {
        address: section.address,
        port: section.port,
    })
}

/// A TCP listener serving, and where it was asked to listen.
struct OpenTcp {
    place: Place,
    addr: SocketAddr,
    /// Dropped to close the listening socket.
    _serving: listener::Serving,
}

/// One TCP protocol's listener.
struct TcpListening {
    protocol: &'static str,
    start: StartSession,
    refuse: Refuse,
    /// What new sessions get; a reload replaces it.
    settings: Arc<ArcSwap<SessionSettings>>,
    limits: Arc<ConnectionLimits>,
    open: Option<OpenTcp>,
}

/// SRT's listener: the one serving (if enabled) and the closed ones still carrying
/// connections.
struct SrtListening {
    /// Its connection limits, kept across reloads so held connections still count.
    limits: Arc<ConnectionLimits>,
    open: Option<(Place, Serving)>,
    closing: Vec<Serving>,
}

/// HLS's listener: actix-web on threads of its own, its viewers' sessions on the workers.
struct HlsListening {
    hls: Arc<Hls>,
    threads: usize,
    open: Option<(Place, hls_serve::Serving)>,
}

impl HlsListening {
    fn prepare(&self, config: &Config) -> Result<Option<Bound>, ServerError> {
        let wanted = place(&config.hls);
        if wanted == self.open.as_ref().map(|(place, _)| *place) {
            return Ok(None);
        }
        match wanted {
            Some(place) => Ok(Some(Bound::Tcp(place, bind_tcp("hls", place)?))),
            None => Ok(None),
        }
    }

    fn apply(
        &mut self,
        config: &Config,
        bound: Option<Bound>,
        changes: &mut Vec<String>,
    ) -> Result<(), ServerError> {
        self.hls.set(config.hls.options.clone());
        self.hls.limits.set(
            config.hls.max_connections,
            config.hls.max_connections_per_ip,
        );
        let wanted = place(&config.hls);
        if wanted == self.open.as_ref().map(|(place, _)| *place) {
            return Ok(());
        }
        if let Some((_, old)) = self.open.take() {
            // Viewers' sessions go on; their next requests go to where the file now says.
            actix_rt::spawn(old.handle.stop(false));
            tracing::info!(protocol = "hls", addr = %old.addr, "listener closed");
            changes.push(format!("hls listener closed on {}", old.addr));
        }
        if let Some(Bound::Tcp(place, socket)) = bound {
            let serving =
                hls_serve::start(socket, self.hls.clone(), self.threads).map_err(|source| {
                    ServerError::Bind {
                        protocol: "hls",
                        port: place.port,
                        source,
                    }
                })?;
            tracing::info!(
                protocol = "hls",
                port = serving.addr.port(),
                address = %serving.addr.ip(),
                "listening"
            );
            changes.push(format!("hls listener opened on {}", serving.addr));
            self.open = Some((place, serving));
        }
        Ok(())
    }

    fn close(&mut self) {
        if let Some((_, serving)) = self.open.take() {
            actix_rt::spawn(serving.handle.stop(false));
        }
    }
}

/// A socket bound for a reload, not yet served.
enum Bound {
    Tcp(Place, std::net::TcpListener),
    Srt(Place, srt::Bound),
}

/// The sockets a new config needs, bound: [`Listeners::apply`] serves them.
pub struct Prepared {
    rtmp: Option<Bound>,
    httpflv: Option<Bound>,
    rtsp: Option<Bound>,
    srt: Option<Bound>,
    hls: Option<Bound>,
    /// `<srt>`'s settings for new connections.
    srt_settings: Arc<SrtSettings>,
}

/// Where each protocol listens now (None: not listening).
#[derive(Debug, Clone, Copy, Default)]
pub struct Addresses {
    /// RTMP.
    pub rtmp: Option<SocketAddr>,
    /// HTTP-FLV.
    pub httpflv: Option<SocketAddr>,
    /// RTSP.
    pub rtsp: Option<SocketAddr>,
    /// SRT (UDP).
    pub srt: Option<SocketAddr>,
    /// HLS.
    pub hls: Option<SocketAddr>,
}

/// Every protocol's listener.
pub struct Listeners {
    workers: Vec<Worker>,
    rtmp: TcpListening,
    httpflv: TcpListening,
    rtsp: TcpListening,
    srt: SrtListening,
    hls: HlsListening,
}

fn bind_tcp(protocol: &'static str, place: Place) -> Result<std::net::TcpListener, ServerError> {
    // A backlog of 1024 rather than std's 128: a burst of players connecting at once would
    // otherwise lose SYNs and retry a second later.
    crate::listener::bind::tcp(place.address, place.port, LISTEN_BACKLOG, protocol).map_err(
        |source| ServerError::Bind {
            protocol,
            port: place.port,
            source,
        },
    )
}

fn session_settings<P>(
    section: &Section<P>,
    write_merge: Duration,
    rtp_ports: Option<Arc<RtpPorts>>,
) -> SessionSettings {
    SessionSettings {
        player: PlayerLimits {
            queue_bytes: section.queue_bytes,
            stall_timeout: section.stall_timeout,
        },
        rtp_ports,
        write_merge,
    }
}

impl TcpListening {
    fn new<P>(
        protocol: &'static str,
        section: &Section<P>,
        settings: SessionSettings,
        start: StartSession,
        refuse: Refuse,
    ) -> Self {
        TcpListening {
            protocol,
            start,
            refuse,
            settings: Arc::new(ArcSwap::from_pointee(settings)),
            limits: ConnectionLimits::new(
                protocol,
                section.max_connections,
                section.max_connections_per_ip,
            ),
            open: None,
        }
    }

    /// Binds the socket `section` asks for, when it asks for one this listener does not have.
    fn prepare<P>(&self, section: &Section<P>) -> Result<Option<Bound>, ServerError> {
        let wanted = place(section);
        if wanted == self.open.as_ref().map(|open| open.place) {
            return Ok(None);
        }
        match wanted {
            Some(place) => Ok(Some(Bound::Tcp(place, bind_tcp(self.protocol, place)?))),
            None => Ok(None),
        }
    }

    /// New settings and limits for new sessions; the prepared socket served and the old one
    /// closed when `section` moved or disabled the listener. Says what changed.
    fn apply<P>(
        &mut self,
        section: &Section<P>,
        settings: SessionSettings,
        bound: Option<Bound>,
        workers: &[Worker],
        changes: &mut Vec<String>,
    ) -> Result<(), ServerError> {
        self.settings.store(Arc::new(settings));
        self.limits
            .set(section.max_connections, section.max_connections_per_ip);
        let wanted = place(section);
        if wanted == self.open.as_ref().map(|open| open.place) {
            return Ok(());
        }
        if let Some(old) = self.open.take() {
            // The workers' accept loops own the listening socket: ending them closes the port.
            // Sessions own their own sockets and go on.
            let addr = old.addr;
            drop(old);
            tracing::info!(protocol = self.protocol, %addr, "listener closed");
            changes.push(format!("{} listener closed on {addr}", self.protocol));
        }
        if let Some(Bound::Tcp(place, socket)) = bound {
            let addr = self.serve(place, socket, workers)?;
            changes.push(format!("{} listener opened on {addr}", self.protocol));
        }
        Ok(())
    }

    fn serve(
        &mut self,
        place: Place,
        socket: std::net::TcpListener,
        workers: &[Worker],
    ) -> Result<SocketAddr, ServerError> {
        let error = |source| ServerError::Bind {
            protocol: self.protocol,
            port: place.port,
            source,
        };
        let addr = socket.local_addr().map_err(error)?;
        tracing::info!(
            protocol = self.protocol,
            port = addr.port(),
            address = %addr.ip(),
            "listening"
        );
        let serving = listener::serve(
            socket,
            workers,
            self.protocol,
            self.settings.clone(),
            self.start,
            Admit {
                limits: self.limits.clone(),
                refuse: self.refuse,
            },
        )
        .map_err(error)?;
        self.open = Some(OpenTcp {
            place,
            addr,
            _serving: serving,
        });
        Ok(addr)
    }

    fn addr(&self) -> Option<SocketAddr> {
        self.open.as_ref().map(|open| open.addr)
    }

    fn close(&mut self) {
        // Dropping the listener ends the workers' accept loops, which closes its port.
        self.open = None;
    }
}

impl SrtListening {
    /// `<srt>`'s settings for new connections, counted in this listener's limits.
    fn settings(&self, config: &Config) -> Result<SrtSettings, ServerError> {
        let mut settings =
            SrtSettings::from_config(&config.srt).map_err(|source| ServerError::Bind {
                protocol: "srt",
                port: config.srt.port,
                source,
            })?;
        settings.connections = self.limits.clone();
        Ok(settings)
    }

    fn prepare(
        &self,
        config: &Config,
        settings: &SrtSettings,
    ) -> Result<Option<Bound>, ServerError> {
        let wanted = place(&config.srt);
        if wanted == self.open.as_ref().map(|(place, _)| *place) {
            return Ok(None);
        }
        match wanted {
            Some(place) => {
                let bound = srt::bind(place.address, place.port, settings).map_err(|source| {
                    ServerError::Bind {
                        protocol: "srt",
                        port: place.port,
                        source,
                    }
                })?;
                Ok(Some(Bound::Srt(place, bound)))
            }
            None => Ok(None),
        }
    }

    fn apply(
        &mut self,
        config: &Config,
        settings: Arc<SrtSettings>,
        bound: Option<Bound>,
        workers: &[Worker],
        changes: &mut Vec<String>,
    ) -> Result<(), ServerError> {
        self.limits.set(
            config.srt.max_connections,
            config.srt.max_connections_per_ip,
        );
        // Closed listeners whose last connection has ended are gone.
        self.closing.retain(|serving| !serving.is_finished());
        let wanted = place(&config.srt);
        if wanted == self.open.as_ref().map(|(place, _)| *place) {
            if let Some((_, serving)) = &self.open {
                serving.update(settings);
            }
            return Ok(());
        }
        if let Some((_, old)) = self.open.take() {
            tracing::info!(
                protocol = "srt",
                addr = %old.addr,
                "listener closed to new callers; its connections go on"
            );
            changes.push(format!("srt listener closed on {}", old.addr));
            old.close();
            self.closing.push(old);
        }
        if let Some(Bound::Srt(place, bound)) = bound {
            let serving = srt::serve(bound, settings, workers.to_vec()).map_err(|source| {
                ServerError::Bind {
                    protocol: "srt",
                    port: place.port,
                    source,
                }
            })?;
            changes.push(format!("srt listener opened on {}", serving.addr));
            self.open = Some((place, serving));
        }
        Ok(())
    }

    fn close(&mut self) {
        if let Some((_, serving)) = self.open.take() {
            serving.abort();
        }
        for serving in self.closing.drain(..) {
            serving.abort();
        }
    }
}

/// The write-merge window and RTP ports of each TCP protocol's sessions, and their settings.
fn rtmp_settings(config: &Config) -> SessionSettings {
    session_settings(&config.rtmp, config.rtmp.options.write_merge, None)
}

fn httpflv_settings(config: &Config) -> SessionSettings {
    session_settings(&config.httpflv, config.httpflv.options.write_merge, None)
}

fn rtsp_settings(config: &Config, ports: Option<Arc<RtpPorts>>) -> SessionSettings {
    session_settings(&config.rtsp, config.rtsp.options.write_merge, ports)
}

impl Listeners {
    /// Opens every listener `config` enables. SRT sessions run on `workers` too.
    pub async fn start(config: &Config, workers: Vec<Worker>) -> Result<Listeners, ServerError> {
        let hls = HlsListening {
            hls: Hls::new(
                workers.clone(),
                config.hls.options.clone(),
                ConnectionLimits::new(
                    "hls",
                    config.hls.max_connections,
                    config.hls.max_connections_per_ip,
                ),
            ),
            threads: workers.len(),
            open: None,
        };
        let srt_limits = ConnectionLimits::new(
            "srt",
            config.srt.max_connections,
            config.srt.max_connections_per_ip,
        );
        let mut listeners = Listeners {
            workers,
            rtmp: TcpListening::new(
                "rtmp",
                &config.rtmp,
                rtmp_settings(config),
                |accepted| {
                    RtmpSession::start(accepted);
                },
                // RTMP has no way to say why before its handshake.
                Refuse::Close,
            ),
            httpflv: TcpListening::new(
                "httpflv",
                &config.httpflv,
                httpflv_settings(config),
                |accepted| {
                    HttpFlvSession::start(accepted);
                },
                Refuse::Http,
            ),
            rtsp: TcpListening::new(
                "rtsp",
                &config.rtsp,
                // The listener's own port pairs, handed to each of its sessions.
                rtsp_settings(config, Some(RtpPorts::new(config.rtsp.options.rtp_ports))),
                |accepted| {
                    RtspSession::start(accepted);
                },
                Refuse::Rtsp,
            ),
            srt: SrtListening {
                limits: srt_limits,
                open: None,
                closing: Vec::new(),
            },
            hls,
        };
        let prepared = listeners.prepare(config)?;
        listeners.apply(config, prepared)?;
        Ok(listeners)
    }

    /// Binds every socket `config` needs that is not open yet. Fails on the first that cannot
    /// be bound, dropping the others: nothing has changed then.
    pub fn prepare(&self, config: &Config) -> Result<Prepared, ServerError> {
        let srt_settings = self.srt.settings(config)?;
        Ok(Prepared {
            rtmp: self.rtmp.prepare(&config.rtmp)?,
            httpflv: self.httpflv.prepare(&config.httpflv)?,
            rtsp: self.rtsp.prepare(&config.rtsp)?,
            srt: self.srt.prepare(config, &srt_settings)?,
            hls: self.hls.prepare(config)?,
            srt_settings: Arc::new(srt_settings),
        })
    }

    /// Puts `config`'s listener settings in force for new sessions, serves the `prepared`
    /// sockets and closes the listeners `config` moved or disabled. Says what was opened or
    /// closed.
    pub fn apply(
        &mut self,
        config: &Config,
        prepared: Prepared,
    ) -> Result<Vec<String>, ServerError> {
        let mut changes = Vec::new();
        self.rtmp.apply(
            &config.rtmp,
            rtmp_settings(config),
            prepared.rtmp,
            &self.workers,
            &mut changes,
        )?;
        self.httpflv.apply(
            &config.httpflv,
            httpflv_settings(config),
            prepared.httpflv,
            &self.workers,
            &mut changes,
        )?;
        // The RTP port pairs stay the listener's own while their range is the same, so the
        // pairs its sessions hold stay counted.
        let current = self.rtsp.settings.load();
        let ports = match current.rtp_ports.as_ref() {
            Some(ports) if ports.range() == config.rtsp.options.rtp_ports => ports.clone(),
            _ => RtpPorts::new(config.rtsp.options.rtp_ports),
        };
        drop(current);
        self.rtsp.apply(
            &config.rtsp,
            rtsp_settings(config, Some(ports)),
            prepared.rtsp,
            &self.workers,
            &mut changes,
        )?;
        self.srt.apply(
            config,
            prepared.srt_settings,
            prepared.srt,
            &self.workers,
            &mut changes,
        )?;
        self.hls.apply(config, prepared.hls, &mut changes)?;
        Ok(changes)
    }

    /// Where each protocol listens now.
    pub fn addresses(&self) -> Addresses {
        Addresses {
            rtmp: self.rtmp.addr(),
            httpflv: self.httpflv.addr(),
            rtsp: self.rtsp.addr(),
            srt: self.srt.open.as_ref().map(|(_, serving)| serving.addr),
            hls: self.hls.open.as_ref().map(|(_, serving)| serving.addr),
        }
    }

    /// Closes every listener, SRT's with its connections (shutdown).
    pub fn close(&mut self) {
        self.rtmp.close();
        self.httpflv.close();
        self.rtsp.close();
        self.srt.close();
        self.hls.close();
    }
}
