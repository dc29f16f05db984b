//! The settings each protocol alone takes, one type per protocol section: its name, default
//! port, own elements, and their checks. Adding a protocol is one more type here and one field
//! in [`super::Config`].

use std::time::Duration;

use srt_protocol::options::Passphrase;

use super::error::{ConfigError, ErrorKind};
use super::section::{Protocol, Transport};
use super::tree::Children;
use super::{
    DEFAULT_HLS_PORT, DEFAULT_HTTPFLV_PORT, DEFAULT_RTMP_PORT, DEFAULT_RTP_PORTS,
    DEFAULT_RTSP_PORT, DEFAULT_SRT_PORT, DEFAULT_WRITE_MERGE, MAX_WRITE_MERGE_MS,
};

/// `<write_merge_ms>`, the TCP protocols' merge window.
fn write_merge(children: &Children<'_>) -> Result<Duration, ConfigError> {
    match children.get("write_merge_ms") {
        Some(el) => el.millis("merge window in milliseconds", 0, MAX_WRITE_MERGE_MS),
        None => Ok(DEFAULT_WRITE_MERGE),
    }
}

/// The settings only `<rtmp>` takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtmpOptions {
    /// `<write_merge_ms>`: live media waits at most this long to be written in one system
    /// call with the rest of the window's media; 0 writes every frame at once.
    pub write_merge: Duration,
}

impl Default for RtmpOptions {
    fn default() -> Self {
        RtmpOptions {
            write_merge: DEFAULT_WRITE_MERGE,
        }
    }
}

impl Protocol for RtmpOptions {
    const NAME: &'static str = "rtmp";
    const TRANSPORT: Transport = Transport::Tcp;
    const DEFAULT_PORT: u16 = DEFAULT_RTMP_PORT;
    const ENABLED_BY_DEFAULT: bool = true;
    const ELEMENTS: &'static [&'static str] = &["write_merge_ms"];

    fn read(children: &Children<'_>) -> Result<Self, ConfigError> {
        Ok(RtmpOptions {
            write_merge: write_merge(children)?,
        })
    }
}

/// The settings only `<httpflv>` takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpFlvOptions {
    /// `<write_merge_ms>`, as for RTMP.
    pub write_merge: Duration,
}

impl Default for HttpFlvOptions {
    fn default() -> Self {
        HttpFlvOptions {
            write_merge: DEFAULT_WRITE_MERGE,
        }
    }
}

impl Protocol for HttpFlvOptions {
    const NAME: &'static str = "httpflv";
    const TRANSPORT: Transport = Transport::Tcp;
    const DEFAULT_PORT: u16 = DEFAULT_HTTPFLV_PORT;
    const ENABLED_BY_DEFAULT: bool = false;
    const ELEMENTS: &'static [&'static str] = &["write_merge_ms"];

    fn read(children: &Children<'_>) -> Result<Self, ConfigError> {
        Ok(HttpFlvOptions {
            write_merge: write_merge(children)?,
        })
    }
}

/// The settings only `<rtsp>` takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtspOptions {
    /// `<write_merge_ms>`, as for RTMP (RTSP over TCP).
    pub write_merge: Duration,
    /// `<rtp_port_min>`..=`<rtp_port_max>`: the UDP ports RTP/RTCP pairs are taken from.
    pub rtp_ports: (u16, u16),
}

impl Default for RtspOptions {
    fn default() -> Self {
        RtspOptions {
            write_merge: DEFAULT_WRITE_MERGE,
            rtp_ports: DEFAULT_RTP_PORTS,
        }
    }
}

impl Protocol for RtspOptions {
    const NAME: &'static str = "rtsp";
    const TRANSPORT: Transport = Transport::Tcp;
    const DEFAULT_PORT: u16 = DEFAULT_RTSP_PORT;
    const ENABLED_BY_DEFAULT: bool = false;
    const ELEMENTS: &'static [&'static str] = &["write_merge_ms", "rtp_port_min", "rtp_port_max"];

    fn read(children: &Children<'_>) -> Result<Self, ConfigError> {
        let (min, max) = (children.get("rtp_port_min"), children.get("rtp_port_max"));
        let (mut low, mut high) = DEFAULT_RTP_PORTS;
        if let Some(el) = min {
            low = el.port()?;
        }
        if let Some(el) = max {
            high = el.port()?;
        }
        if let Some(el) = min.or(max) {
            if low % 2 != 0 || high <= low {
                return Err(el.error(ErrorKind::InvalidValue {
                    value: format!("{low}-{high}"),
                    reason: "the RTP port range must start on an even port and hold at least \
                             one even/odd pair (rtp_port_min even, rtp_port_max > rtp_port_min)"
                        .into(),
                }));
            }
        }
        Ok(RtspOptions {
            write_merge: write_merge(children)?,
            rtp_ports: (low, high),
        })
    }
}

/// The settings only `<srt>` takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrtOptions {
    /// `<latency_ms>`: the receive latency (TSBPD delay) offered in the handshake.
    pub latency: Duration,
    /// `<passphrase>`: encrypt with this passphrase (10 to 79 bytes of UTF-8); none by default.
    pub passphrase: Option<String>,
    /// `<pbkeylen>`: AES key length in bytes, 16, 24 or 32 (with a passphrase).
    pub pbkeylen: u8,
    /// `<payload_size>`: bytes of MPEG-TS per SRT packet sent to players (188 to 1456).
    pub payload_size: usize,
}

impl Default for SrtOptions {
    fn default() -> Self {
        SrtOptions {
            latency: Duration::from_millis(120),
            passphrase: None,
            pbkeylen: 16,
            payload_size: 1316,
        }
    }
}

impl Protocol for SrtOptions {
    const NAME: &'static str = "srt";
    const TRANSPORT: Transport = Transport::Udp;
    const DEFAULT_PORT: u16 = DEFAULT_SRT_PORT;
    const ENABLED_BY_DEFAULT: bool = false;
    const ELEMENTS: &'static [&'static str] =
        &["latency_ms", "passphrase", "pbkeylen", "payload_size"];

    fn read(children: &Children<'_>) -> Result<Self, ConfigError> {
        let mut srt = SrtOptions::default();
        if let Some(el) = children.get("latency_ms") {
            srt.latency = el.millis("latency in milliseconds", 0, 60_000)?;
        }
        if let Some(el) = children.get("pbkeylen") {
            let value = el.integer("key length in bytes", 16, 32)?;
            if ![16, 24, 32].contains(&value) {
                return Err(el.error(ErrorKind::InvalidValue {
                    value: value.to_string(),
                    reason: "the key length must be 16, 24 or 32 bytes".into(),
                }));
            }
            // 16, 24 or 32 by the check above.
            srt.pbkeylen = value as u8;
        }
        if let Some(el) = children.get("payload_size") {
            srt.payload_size = el.count("payload size in bytes", 188, 1456)?;
        }
        if let Some(el) = children.get("passphrase") {
            let value = el.value()?;
            if !value.is_empty() {
                // The rule the SRT listener applies when it starts (srt-protocol counts bytes),
                // so a passphrase that passes here is one the server takes.
                if Passphrase::try_from(value.to_owned()).is_err() {
                    return Err(el.error(ErrorKind::InvalidValue {
                        value: "(hidden)".into(),
                        reason: format!(
                            "a passphrase must be 10 to 79 bytes long (SRT counts bytes; a \
                             non-ASCII character takes 2 to 4), this one has {} bytes",
                            value.len()
                        ),
                    }));
                }
                srt.passphrase = Some(value.to_owned());
            }
        }
        Ok(srt)
    }
}

/// The container `<hls><container>` names: `fmp4` (CMAF, the default, needed for Low-Latency
/// HLS in most players) or `mpegts` (for old players).
pub use crate::protocol::hls::Container as HlsContainer;

/// The settings only `<hls>` takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HlsOptions {
    /// `<segment_duration_ms>`: a segment ends on the first keyframe at least this long after
    /// its start.
    pub segment: Duration,
    /// `<part_duration_ms>`: the partial segment target of Low-Latency HLS.
    pub part: Duration,
    /// `<segment_count>`: complete segments kept in memory and listed in the playlist.
    pub segments: usize,
    /// `<container>`: `fmp4` or `mpegts`.
    pub container: HlsContainer,
    /// `<low_latency>`: list partial segments, the preload hint and server control, and
    /// hold blocking playlist requests.
    pub low_latency: bool,
    /// `<idle_timeout_ms>`: a viewer that requests nothing for this long is done.
    pub idle_timeout: Duration,
    /// `<session_lifetime_s>`: how long a viewer's session id is accepted after it was issued.
    pub session_lifetime: Duration,
}

impl Default for HlsOptions {
    fn default() -> Self {
        HlsOptions {
            segment: Duration::from_secs(2),
            part: Duration::from_millis(200),
            segments: 7,
            container: HlsContainer::Fmp4,
            low_latency: true,
            idle_timeout: Duration::from_secs(10),
            session_lifetime: Duration::from_secs(86_400),
        }
    }
}

impl Protocol for HlsOptions {
    const NAME: &'static str = "hls";
    const TRANSPORT: Transport = Transport::Tcp;
    const DEFAULT_PORT: u16 = DEFAULT_HLS_PORT;
    const ENABLED_BY_DEFAULT: bool = false;
    const ELEMENTS: &'static [&'static str] = &[
        "segment_duration_ms",
        "part_duration_ms",
        "segment_count",
        "container",
        "low_latency",
        "idle_timeout_ms",
        "session_lifetime_s",
    ];

    fn read(children: &Children<'_>) -> Result<Self, ConfigError> {
        let mut hls = HlsOptions::default();
        if let Some(el) = children.get("segment_duration_ms") {
            hls.segment = el.millis("segment duration in milliseconds", 500, 30_000)?;
        }
        if let Some(el) = children.get("part_duration_ms") {
            hls.part = el.millis("part duration in milliseconds", 50, 5_000)?;
        }
        if hls.part > hls.segment {
            let el = children
                .get("part_duration_ms")
                .or(children.get("segment_duration_ms"));
            if let Some(el) = el {
                return Err(el.error(ErrorKind::InvalidValue {
                    value: format!("{} ms", hls.part.as_millis()),
                    reason: format!(
                        "a part ({} ms) cannot be longer than a segment ({} ms)",
                        hls.part.as_millis(),
                        hls.segment.as_millis()
                    ),
                }));
            }
        }
        if let Some(el) = children.get("segment_count") {
            hls.segments = el.count("number of segments", 2, 100)?;
        }
        if let Some(el) = children.get("container") {
            hls.container = match el.value()? {
                "fmp4" => HlsContainer::Fmp4,
                "mpegts" => HlsContainer::Ts,
                other => {
                    return Err(el.error(ErrorKind::InvalidValue {
                        value: other.to_owned(),
                        reason: "the container is fmp4 or mpegts".into(),
                    }))
                }
            };
        }
        if let Some(el) = children.get("low_latency") {
            hls.low_latency = el.boolean()?;
        }
        if let Some(el) = children.get("idle_timeout_ms") {
            hls.idle_timeout = el.millis("idle time in milliseconds", 1_000, 600_000)?;
        }
        if let Some(el) = children.get("session_lifetime_s") {
            hls.session_lifetime =
                Duration::from_secs(el.integer("session lifetime in seconds", 1, 604_800)?);
        }
        Ok(hls)
    }
}
