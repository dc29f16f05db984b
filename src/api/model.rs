//! The JSON the API answers with, and its OpenAPI schemas (derived from these types, so the
//! document at `/api/v1/openapi.json` is what the server sends).

use std::collections::BTreeMap;

use serde::Serialize;
use utoipa::ToSchema;

/// One connection: the session table's summary of it.
pub use crate::session::table::SessionSummary as Session;

/// A page of sessions.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SessionPage {
    /// Sessions matching the filters, on every page.
    pub total: usize,
    /// The first of them on this page (0-based).
    pub offset: usize,
    /// The most on one page.
    pub limit: usize,
    /// This page, by clientid.
    pub sessions: Vec<Session>,
}

/// The publisher of a stream.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Publisher {
    /// Its clientid.
    pub clientid: u64,
    /// Its protocol.
    pub protocol: String,
    /// Its IP address.
    pub addr: String,
}

/// A stream's video track.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Video {
    /// `h264`, `h265` or `av1`.
    pub codec: String,
    /// Width in pixels, when known.
    pub width: Option<u32>,
    /// Height in pixels, when known.
    pub height: Option<u32>,
    /// Frames per second over the last full second.
    pub frame_rate: f64,
}

/// A stream's audio track.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Audio {
    /// `aac` or `opus`.
    pub codec: String,
    /// Samples per second, when known.
    pub sample_rate: Option<u32>,
    /// Channels, when known.
    pub channels: Option<u32>,
}

/// A live stream.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Stream {
    /// Application.
    pub app: String,
    /// Name.
    pub name: String,
    /// Who publishes it.
    pub publisher: Publisher,
    /// When its publish began, Unix milliseconds.
    pub since: u64,
    /// Its video track, once its configuration arrived.
    pub video: Option<Video>,
    /// Its audio track, once its configuration arrived.
    pub audio: Option<Audio>,
    /// Media bits per second coming in over the last full second.
    pub bitrate: u64,
    /// Bytes received on the publisher's connection.
    pub bytes_in: u64,
    /// Its players by protocol (`rtmp`, `rtsp`, `srt`, `httpflv`).
    pub players: BTreeMap<String, usize>,
}

/// The live streams.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StreamList {
    /// Every live stream, by app and name.
    pub streams: Vec<Stream>,
}

/// What a request did not find or could not do.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    /// Why.
    pub error: String,
}

/// What a kick did.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Kicked {
    /// The session kicked (a stream's: its publisher).
    pub clientid: u64,
}

/// The ports the server's listeners are bound to (`null`: the protocol is not enabled).
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct Listeners {
    /// RTMP (TCP).
    pub rtmp: Option<u16>,
    /// RTSP (TCP).
    pub rtsp: Option<u16>,
    /// SRT (UDP).
    pub srt: Option<u16>,
    /// HTTP-FLV (TCP).
    pub httpflv: Option<u16>,
    /// HLS (HTTP over TCP).
    pub hls: Option<u16>,
}

/// The server: its name, version and listeners.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct ServerInfo {
    /// `<node_id>` (the `node` field of its callbacks).
    pub node: String,
    /// streamgate's version.
    pub version: String,
    /// Its listeners' ports.
    pub listeners: Listeners,
}

/// What a reload put in force.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Reloaded {
    /// The config file read.
    pub file: String,
    /// What changed: `hooks`, `<protocol> settings`, listeners opened or closed, `log level
    /// <level>`, `api token`, the API's address.
    pub applied: Vec<String>,
    /// Elements that changed in the file but only take effect at the next restart
    /// (`<workers>`, `<node_id>`, `<data_dir>`, `<outbox_max_events>`, `<log_format>`).
    pub restart_required: Vec<String>,
}
