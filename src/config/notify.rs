//! `<http_notify>`: the hook URLs, method, body format, timeout and signing secret of one
//! protocol section, read into the actors' [`NotifyConfig`]. A hook URL is checked here for what the notifier needs (a supported
//! scheme, a host, a valid port, nothing to percent-encode), so a bad one is refused at start-up
//! with its line rather than at the first call.

use streamgate_actors::notify::{NotifyConfig, NotifyFormat, NotifyMethod, Signer};

use super::error::{ConfigError, ErrorKind};
use super::tree::{Children, Element};
use super::{MAX_TIMEOUT_MS, SUPPORTED_HOOK_SCHEMES};

/// The elements `<http_notify>` may hold.
const ELEMENTS: [&str; 11] = [
    "on_connect",
    "on_play",
    "on_publish",
    "on_done",
    "on_update",
    "update_interval_ms",
    "notify_method",
    "timeout_ms",
    "notify_format",
    "secret",
    "secret_id",
];

/// The shortest and longest `<update_interval_ms>`: one second (the sessions' timer) to a day.
const UPDATE_INTERVAL_MS: (u64, u64) = (1000, 86_400_000);

/// The longest `<secret_id>` accepted.
const MAX_SECRET_ID_LEN: usize = 64;

/// Reads an `<http_notify>` element; absent children take [`NotifyConfig::default`].
pub(crate) fn read(el: &Element) -> Result<NotifyConfig, ConfigError> {
    let children = el.children(&ELEMENTS)?;
    let defaults = NotifyConfig::default();
    let method = match children.get("notify_method") {
        Some(el) => {
            let value = el.value()?;
            if value.eq_ignore_ascii_case("GET") {
                NotifyMethod::Get
            } else if value.eq_ignore_ascii_case("POST") {
                NotifyMethod::Post
            } else {
                return Err(el.error(ErrorKind::InvalidMethod {
                    value: value.to_owned(),
                }));
            }
        }
        None => defaults.method,
    };
    let timeout = match children.get("timeout_ms") {
        Some(el) => el.millis("timeout in milliseconds", 1, MAX_TIMEOUT_MS)?,
        None => defaults.timeout,
    };
    let update_interval = match children.get("update_interval_ms") {
        Some(el) => el.millis(
            "interval in milliseconds",
            UPDATE_INTERVAL_MS.0,
            UPDATE_INTERVAL_MS.1,
        )?,
        None => defaults.update_interval,
    };
    Ok(NotifyConfig {
        on_connect: hook_url(children.get("on_connect"))?,
        on_play: hook_url(children.get("on_play"))?,
        on_publish: hook_url(children.get("on_publish"))?,
        on_done: hook_url(children.get("on_done"))?,
        on_update: hook_url(children.get("on_update"))?,
        update_interval,
        method,
        timeout,
        format: format(&children, method)?,
        signer: signer(&children)?,
    })
}

/// `<notify_format>`: `form` (default) or `json`. JSON needs POST; the error names the
/// `<notify_format>` element whichever of the two comes first.
fn format(children: &Children<'_>, method: NotifyMethod) -> Result<NotifyFormat, ConfigError> {
    let Some(el) = children.get("notify_format") else {
        return Ok(NotifyFormat::default());
    };
    let value = el.value()?;
    let format = if value.eq_ignore_ascii_case("form") {
        NotifyFormat::Form
    } else if value.eq_ignore_ascii_case("json") {
        NotifyFormat::Json
    } else {
        return Err(el.error(ErrorKind::InvalidValue {
            value: value.to_owned(),
            reason: "the notify format is form or json".to_owned(),
        }));
    };
    if format == NotifyFormat::Json && method == NotifyMethod::Get {
        let at = children
            .get("notify_method")
            .map_or(String::new(), |m| format!(" (line {})", m.line));
        return Err(el.error(ErrorKind::InvalidValue {
            value: value.to_owned(),
            reason: format!(
                "a JSON body needs POST, but <notify_method>{at} is GET (a GET carries the \
                 fields in its query string)"
            ),
        }));
    }
    Ok(format)
}

/// `<secret>` and `<secret_id>`: the signer of every callback, or `None` without a secret.
fn signer(children: &Children<'_>) -> Result<Option<Signer>, ConfigError> {
    let id = match children.get("secret_id") {
        Some(el) => {
            let value = el.value()?;
            let valid = |b: u8| b.is_ascii_alphanumeric() || b"-._:".contains(&b);
            if value.is_empty() || value.len() > MAX_SECRET_ID_LEN || !value.bytes().all(valid) {
                return Err(el.error(ErrorKind::InvalidValue {
                    value: value.to_owned(),
                    reason: format!(
                        "a secret id is 1 to {MAX_SECRET_ID_LEN} letters, digits, '-', '.', \
                         '_' or ':'"
                    ),
                }));
            }
            Some((el, value.to_owned()))
        }
        None => None,
    };
    let Some(el) = children.get("secret") else {
        if let Some((el, _)) = id {
            return Err(el.error(ErrorKind::InvalidValue {
                value: el.value()?.to_owned(),
                reason: "a secret id names a <secret>, and this <http_notify> has none".to_owned(),
            }));
        }
        return Ok(None);
    };
    let secret = el.value()?;
    if secret.is_empty() {
        return Err(el.error(ErrorKind::InvalidValue {
            value: String::new(),
            reason: "an empty secret would sign with no key; remove <secret> to send unsigned \
                     callbacks"
                .to_owned(),
        }));
    }
    Ok(Some(Signer::new(
        secret.as_bytes(),
        id.map(|(_, value)| value),
    )))
}

/// A hook URL element: empty means no hook.
fn hook_url(el: Option<&Element>) -> Result<Option<String>, ConfigError> {
    let Some(el) = el else {
        return Ok(None);
    };
    let url = el.value()?;
    if url.is_empty() {
        return Ok(None);
    }
    check_hook_url(url).map_err(|reason| {
        el.error(ErrorKind::InvalidHookUrl {
            value: url.to_owned(),
            reason,
        })
    })?;
    Ok(Some(url.to_owned()))
}

/// `http://host[:port][/path][?query]`, or why not.
fn check_hook_url(url: &str) -> Result<(), String> {
    let supported = SUPPORTED_HOOK_SCHEMES.join(", ");
    if url.contains(char::is_whitespace) {
        return Err("it contains whitespace (percent-encode a space as %20)".to_owned());
    }
    if url.contains(char::is_control) {
        return Err("it contains a control character".to_owned());
    }
    if !url.is_ascii() {
        return Err("it contains non-ASCII characters (percent-encode them)".to_owned());
    }
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(format!(
            "it must start with a scheme and a host, like http://127.0.0.1:9000/on_publish \
             (supported schemes: {supported})"
        ));
    };
    if !SUPPORTED_HOOK_SCHEMES
        .iter()
        .any(|s| s.eq_ignore_ascii_case(scheme))
    {
        return Err(format!(
            "scheme {scheme:?} is not supported (supported schemes: {supported})"
        ));
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host, port) = if let Some(bracketed) = host_port.strip_prefix('[') {
        let Some((host, after)) = bracketed.split_once(']') else {
            return Err("its IPv6 host has no closing ]".to_owned());
        };
        if !host
            .bytes()
            .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return Err(format!("{host:?} is not an IPv6 address"));
        }
        match after.strip_prefix(':') {
            Some(port) => (host, Some(port)),
            None if after.is_empty() => (host, None),
            None => return Err(format!("unexpected {after:?} after the IPv6 host")),
        }
    } else {
        match host_port.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (host_port, None),
        }
    };
    if host.is_empty() {
        return Err("it has no host (write http://host[:port]/path)".to_owned());
    }
    if !host
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-._~%:".contains(&b))
    {
        return Err(format!("{host:?} is not a valid host name"));
    }
    if let Some(port) = port {
        match port.parse::<u16>() {
            Ok(p) if p != 0 && port.bytes().all(|b| b.is_ascii_digit()) => {}
            _ => return Err(format!("{port:?} is not a valid port (1-65535)")),
        }
    }
    Ok(())
}
