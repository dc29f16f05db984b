//! A protocol section (`<rtmp>`, `<rtsp>`, `<srt>`, `<httpflv>`): [`Section`] holds the settings
//! every protocol takes (enable, address, port, hooks, player and connection limits) and, in
//! [`Section::options`], the settings of its own protocol, whose type ([`Protocol`]) names the
//! section, lists its own elements and reads and checks them.
//!
//! Checks across sections (two listeners on one port) are the config's, in `mod.rs`; this
//! module only says where each section's port was set, for those checks' messages.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use streamgate_actors::notify::NotifyConfig;

use super::error::{ConfigError, ErrorKind};
use super::tree::{Children, Element};
use super::{
    DEFAULT_MAX_CONNECTIONS, DEFAULT_QUEUE_BYTES, DEFAULT_STALL_TIMEOUT, MAX_CONNECTIONS_LIMIT,
    QUEUE_BYTES_RANGE, STALL_TIMEOUT_RANGE_MS,
};

/// What a listener's port is a port of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// RTMP, RTSP, HTTP-FLV.
    Tcp,
    /// SRT.
    Udp,
}

/// One protocol's own part of its section: its name, defaults, and the elements only it takes.
pub trait Protocol: Default + Clone + fmt::Debug + PartialEq {
    /// The section's element name, e.g. `rtmp`.
    const NAME: &'static str;
    /// What `<port>` is a port of.
    const TRANSPORT: Transport;
    /// `<port>` when absent.
    const DEFAULT_PORT: u16;
    /// `<enable>` when absent.
    const ENABLED_BY_DEFAULT: bool;
    /// The elements only this protocol's section takes, in the order error messages list them.
    const ELEMENTS: &'static [&'static str];

    /// Reads and checks this protocol's own elements of its section; absent ones take their
    /// defaults.
    fn read(children: &Children<'_>) -> Result<Self, ConfigError>;
}

/// The elements every section takes, listed before the protocol's own ones.
const COMMON_HEAD: [&str; 5] = [
    "enable",
    "port",
    "http_notify",
    "queue_bytes",
    "stall_timeout_ms",
];
/// The elements every section takes, listed after the protocol's own ones.
const COMMON_TAIL: [&str; 3] = ["max_connections", "max_connections_per_ip", "address"];

/// One protocol section: what every protocol takes, and its own options `P`.
#[derive(Debug, Clone, PartialEq)]
pub struct Section<P> {
    /// `<enable>`: whether to listen at all.
    pub enable: bool,
    /// `<port>`: TCP port (UDP for SRT), 1..=65535.
    pub port: u16,
    /// `<address>`: the IP address the listener binds; `None` (absent) is every address of
    /// both families, one dual-stack socket on `::` (IPv4 only where the host has no IPv6).
    pub address: Option<IpAddr>,
    /// `<http_notify>`: the hooks of this protocol.
    pub notify: NotifyConfig,
    /// `<queue_bytes>`: unwritten output a player may have before it drops frames until the
    /// next keyframe.
    pub queue_bytes: usize,
    /// `<stall_timeout_ms>`: a player whose queue stays full this long is disconnected.
    pub stall_timeout: Duration,
    /// `<max_connections>`: connections of this protocol at once; more are refused before
    /// any hook.
    pub max_connections: usize,
    /// `<max_connections_per_ip>`: connections from one client address at once; 0 (the
    /// default) sets no limit per address.
    pub max_connections_per_ip: usize,
    /// The settings only this protocol takes.
    pub options: P,
}

impl<P: Protocol> Default for Section<P> {
    fn default() -> Self {
        Section {
            enable: P::ENABLED_BY_DEFAULT,
            port: P::DEFAULT_PORT,
            address: None,
            notify: NotifyConfig::default(),
            queue_bytes: DEFAULT_QUEUE_BYTES,
            stall_timeout: DEFAULT_STALL_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_ip: 0,
            options: P::default(),
        }
    }
}

/// Where a section's listener was set in the document, for the checks across sections.
#[derive(Debug, Clone)]
pub(crate) struct Placed {
    pub(crate) name: &'static str,
    pub(crate) transport: Transport,
    pub(crate) enable: bool,
    pub(crate) port: u16,
    pub(crate) section_line: Option<usize>,
    pub(crate) enable_line: Option<usize>,
    pub(crate) port_line: Option<usize>,
}

impl<P: Protocol> Section<P> {
    /// The elements this section may hold.
    pub fn elements() -> Vec<&'static str> {
        COMMON_HEAD
            .iter()
            .chain(P::ELEMENTS)
            .chain(&COMMON_TAIL)
            .copied()
            .collect()
    }

    /// Reads the section `el` (absent: every default), and where its listener was set.
    pub(crate) fn read(el: Option<&Element>) -> Result<(Self, Placed), ConfigError> {
        let mut section = Section::<P>::default();
        let mut placed = Placed {
            name: P::NAME,
            transport: P::TRANSPORT,
            enable: section.enable,
            port: section.port,
            section_line: el.map(|el| el.line),
            enable_line: None,
            port_line: None,
        };
        let Some(el) = el else {
            return Ok((section, placed));
        };
        let children = el.children(&Self::elements())?;
        if let Some(el) = children.get("enable") {
            section.enable = el.boolean()?;
            placed.enable_line = Some(el.line);
        }
        if let Some(el) = children.get("port") {
            section.port = el.port()?;
            placed.port_line = Some(el.line);
        }
        if let Some(el) = children.get("http_notify") {
            section.notify = super::notify::read(el)?;
        }
        if let Some(el) = children.get("queue_bytes") {
            let (min, max) = QUEUE_BYTES_RANGE;
            section.queue_bytes = el.count("queue size in bytes", min, max)?;
        }
        if let Some(el) = children.get("stall_timeout_ms") {
            let (min, max) = STALL_TIMEOUT_RANGE_MS;
            section.stall_timeout = el.millis("stall timeout in milliseconds", min, max)?;
        }
        if let Some(el) = children.get("max_connections") {
            section.max_connections =
                el.count("number of connections", 1, MAX_CONNECTIONS_LIMIT)?;
        }
        if let Some(el) = children.get("max_connections_per_ip") {
            section.max_connections_per_ip =
                el.count("number of connections", 0, MAX_CONNECTIONS_LIMIT)?;
        }
        if let Some(el) = children.get("address") {
            section.address = Some(read_address(el)?);
        }
        section.options = P::read(&children)?;
        placed.enable = section.enable;
        placed.port = section.port;
        Ok((section, placed))
    }
}

/// `<address>`: an IPv4 or IPv6 address literal, without brackets or a zone. A host name is
/// refused: what it resolves to can change, and one name may stand for several addresses.
fn read_address(el: &Element) -> Result<IpAddr, ConfigError> {
    let value = el.value()?;
    let refuse = |reason: &str| {
        el.error(ErrorKind::InvalidValue {
            value: value.to_owned(),
            reason: reason.to_owned(),
        })
    };
    if value.starts_with('[') || value.ends_with(']') {
        return Err(refuse("write an IPv6 address without brackets, e.g. ::1"));
    }
    value.parse::<IpAddr>().map_err(|_| {
        refuse("expected an IPv4 or IPv6 address such as 0.0.0.0, 127.0.0.1, :: or ::1 (a host name is not taken)")
    })
}
