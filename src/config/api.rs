//! `<api>`: the operator's HTTP API (see `crate::api`).

use std::net::{IpAddr, Ipv4Addr};

use super::error::{ConfigError, ErrorKind};
use super::section::{Placed, Transport};
use super::tree::Element;

/// Default `<api><port>`.
pub const DEFAULT_API_PORT: u16 = 9997;

/// `<api>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiConfig {
    /// `<enable>`: default true.
    pub enable: bool,
    /// `<address>`: the address to listen on; default `127.0.0.1` (loopback only).
    pub address: IpAddr,
    /// `<port>`: default 9997.
    pub port: u16,
    /// `<token>`: when set, `/api/*` needs `Authorization: Bearer <token>`.
    pub token: Option<String>,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            enable: true,
            address: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: DEFAULT_API_PORT,
            token: None,
        }
    }
}

const ELEMENTS: [&str; 4] = ["enable", "address", "port", "token"];

/// Reads `<api>` (absent: every default), and where its listener was set.
pub(crate) fn read(el: Option<&Element>) -> Result<(ApiConfig, Placed), ConfigError> {
    let mut api = ApiConfig::default();
    let mut placed = Placed {
        name: "api",
        transport: Transport::Tcp,
        enable: api.enable,
        port: api.port,
        section_line: el.map(|el| el.line),
        enable_line: None,
        port_line: None,
    };
    let Some(el) = el else {
        return Ok((api, placed));
    };
    let children = el.children(&ELEMENTS)?;
    if let Some(e) = children.get("enable") {
        api.enable = e.boolean()?;
        placed.enable_line = Some(e.line);
    }
    if let Some(e) = children.get("port") {
        api.port = e.port()?;
        placed.port_line = Some(e.line);
    }
    if let Some(e) = children.get("address") {
        let value = e.value()?.trim();
        let literal = value
            .strip_prefix('[')
            .and_then(|v| v.strip_suffix(']'))
            .unwrap_or(value);
        api.address = literal.parse().map_err(|_| {
            e.error(ErrorKind::InvalidValue {
                value: value.to_owned(),
                reason: "an IP address is needed, like 127.0.0.1 or ::1".into(),
            })
        })?;
    }
    if let Some(e) = children.get("token") {
        let token = e.value()?;
        if token.is_empty() {
            api.token = None;
        } else if token.bytes().any(|b| !b.is_ascii_graphic()) {
            return Err(e.error(ErrorKind::InvalidValue {
                value: "(the token)".into(),
                reason: "a token has only visible ASCII characters, no spaces".into(),
            }));
        } else {
            api.token = Some(token.to_owned());
        }
    }
    placed.enable = api.enable;
    placed.port = api.port;
    Ok((api, placed))
}
