//! RTMP server connection core, sans-IO: bytes in, [`Event`]s and bytes out.
//!
//! Built on rml_rtmp for the message bodies of protocol-control messages and commands, with
//! our own handshake ([`handshake`]), chunk layer ([`chunk`]) and AMF0 decoder ([`amf`]) where
//! rml_rtmp 0.8 falls short (see those modules),
//! and our own command handling: rml_rtmp's `ServerSession` drops the connect command's
//! `tcUrl`, which the hooks must report as the client sent it.
//!
//! The allow/deny hook point follows rml_rtmp's own pattern: a request event carries a
//! [`RequestId`]; input processing stops there until the application calls
//! [`ServerConnection::accept`] or [`ServerConnection::refuse`], so nothing the client sent
//! after `connect`, `publish` or `play` is acted on before the decision.
//!
//! The client side (the load tool's and the tests' one RTMP client) is [`client`].
//!
//! Owns no socket and reads no clock. Must not know about actors or hooks.

pub mod amf;
pub mod chunk;
pub mod client;
pub mod handshake;

use std::collections::{HashMap, VecDeque};

use bytes::{Bytes, BytesMut};
use rml_amf0::Amf0Value;
use rml_rtmp::messages::RtmpMessage;
use rml_rtmp::time::RtmpTimestamp;

use amf::Out;
use chunk::{encode_message, ChunkDecoder, ChunkHeader, RawMessage};
use client::{
    ACKNOWLEDGEMENT, COMMAND as AMF0_COMMAND, DATA as AMF0_DATA, SET_CHUNK_SIZE,
    SET_PEER_BANDWIDTH, USER_CONTROL, WINDOW_ACK_SIZE,
};

/// Identifies a request awaiting the application's decision.
pub type RequestId = u32;

/// The chunk size this server sends with.
pub const OUT_CHUNK_SIZE: u32 = 4096;
/// Window acknowledgement size and peer bandwidth announced to clients.
const WINDOW: u32 = 5_000_000;
/// Largest command or data message accepted (metadata included).
pub const MAX_COMMAND_SIZE: usize = 1 << 20;
/// Most message streams one connection may create.
const MAX_STREAMS: usize = 8;

const CSID_COMMAND: u32 = 3;
const CSID_AUDIO: u32 = 4;
const CSID_STREAM_COMMAND: u32 = 5;
const CSID_VIDEO: u32 = 6;

/// Which kind of media message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaKind {
    /// Message type 8.
    Audio,
    /// Message type 9.
    Video,
}

/// What the client did, for the application to act on.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// `connect`: allow or refuse with [`ServerConnection::accept`] / [`ServerConnection::refuse`].
    ConnectRequested {
        /// The request to answer.
        request: RequestId,
        /// The command object's `app`, as sent (it may carry a query).
        app: String,
        /// The command object's `tcUrl`, as sent; empty when the client sent none.
        tcurl: String,
    },
    /// `publish`: allow or refuse.
    PublishRequested {
        /// The request to answer.
        request: RequestId,
        /// The message stream it was sent on.
        stream_id: u32,
        /// The stream name as sent, query included.
        stream_name: String,
    },
    /// `play`: allow or refuse.
    PlayRequested {
        /// The request to answer.
        request: RequestId,
        /// The message stream it was sent on.
        stream_id: u32,
        /// The stream name as sent, query included.
        stream_name: String,
    },
    /// `@setDataFrame onMetaData` (or a bare `onMetaData`) on the publishing stream.
    Metadata {
        /// The metadata properties.
        properties: HashMap<String, Amf0Value>,
    },
    /// An audio or video message on the publishing stream.
    Media {
        /// Audio or video.
        kind: MediaKind,
        /// Message timestamp, milliseconds.
        timestamp: u32,
        /// The message body (an FLV tag body).
        data: Bytes,
    },
    /// `deleteStream` / `closeStream` / `FCUnpublish` ended the publish or play on `stream_id`.
    StreamClosed {
        /// The message stream.
        stream_id: u32,
    },
}

/// Why a request is refused; picks the status code the client sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// The business server said no.
    Unauthorized,
    /// Someone else publishes this stream.
    AlreadyPublishing,
    /// No such stream to play.
    NotFound,
    /// The server cannot take it now: it is going away, or (in a cluster) the name cannot be
    /// claimed while Redis is unreachable.
    Unavailable,
}

/// A protocol violation or malformed input. Each one ends the connection.
#[derive(Debug, thiserror::Error)]
pub enum RtmpError {
    /// The handshake failed.
    #[error("handshake failed: {0}")]
    Handshake(String),
    /// A malformed chunk.
    #[error(transparent)]
    Chunk(#[from] chunk::ChunkError),
    /// A malformed AMF0 command or data message.
    #[error("type {type_id} message on stream {stream_id}: {source}")]
    Amf {
        /// Message type.
        type_id: u8,
        /// Message stream.
        stream_id: u32,
        /// What was wrong.
        source: amf::AmfError,
    },
    /// A control message body rml_rtmp could not read.
    #[error("type {type_id} message: {reason}")]
    Message {
        /// Message type.
        type_id: u8,
        /// What was wrong.
        reason: String,
    },
    /// A command message larger than [`MAX_COMMAND_SIZE`].
    #[error("type {type_id} message of {size} bytes is too large")]
    TooLarge {
        /// Message type.
        type_id: u8,
        /// Its size.
        size: usize,
    },
    /// A command out of order or with bad arguments.
    #[error("{0}")]
    Protocol(String),
    /// A request id that is not the one pending.
    #[error("no pending request {0}")]
    UnknownRequest(RequestId),
}

enum Phase {
    Handshake(handshake::ServerHandshake),
    Messages,
    Closed,
}

#[derive(Debug, Clone)]
enum Pending {
    Connect { txn: f64, encoding: f64 },
    Publish { stream_id: u32, name: String },
    Play { stream_id: u32, name: String },
}

/// One RTMP client connection, server side.
pub struct ServerConnection {
    phase: Phase,
    input: BytesMut,
    decoder: ChunkDecoder,
    output: BytesMut,
    out_chunk_size: u32,
    events: VecDeque<Event>,
    connected: bool,
    pending: Option<(RequestId, Pending)>,
    next_request: RequestId,
    streams: Vec<u32>,
    next_stream_id: u32,
    active: Option<(u32, Role)>,
    received: u64,
    ack_window: u32,
    acked: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Publishing,
    Playing,
}

impl Default for ServerConnection {
    fn default() -> Self {
        Self::new()
    }
}

/// The info object of an `onStatus` or `_error`.
fn status<'a>(level: &'a str, code: &'a str, description: &'a str) -> [(&'a str, Out<'a>); 3] {
    [
        ("level", Out::Str(level)),
        ("code", Out::Str(code)),
        ("description", Out::Str(description)),
    ]
}

// User control events.
const STREAM_BEGIN: u16 = 0;
const STREAM_EOF: u16 = 1;
/// Set Peer Bandwidth's limit type "dynamic".
const LIMIT_DYNAMIC: u8 = 2;

impl ServerConnection {
    /// A connection at the start of the handshake.
    pub fn new() -> Self {
        ServerConnection {
            phase: Phase::Handshake(handshake::ServerHandshake::new()),
            input: BytesMut::new(),
            decoder: ChunkDecoder::default(),
            output: BytesMut::new(),
            out_chunk_size: chunk::DEFAULT_CHUNK_SIZE,
            events: VecDeque::new(),
            connected: false,
            pending: None,
            next_request: 1,
            streams: Vec::new(),
            next_stream_id: 1,
            active: None,
            received: 0,
            ack_window: 0,
            acked: 0,
        }
    }

    /// Feeds bytes from the client. Afterwards drain [`Self::poll_event`] and
    /// [`Self::take_output`].
    pub fn handle_input(&mut self, bytes: &[u8]) -> Result<(), RtmpError> {
        self.received += bytes.len() as u64;
        if let Phase::Handshake(hs) = &mut self.phase {
            match hs.feed(bytes, &mut self.output) {
                Ok(handshake::Progress::InProgress) => return Ok(()),
                Ok(handshake::Progress::Done { consumed }) => {
                    self.phase = Phase::Messages;
                    self.input.extend_from_slice(&bytes[consumed..]);
                }
                Err(e) => return Err(RtmpError::Handshake(e.to_string())),
            }
        } else {
            self.input.extend_from_slice(bytes);
        }
        self.process()
    }

    /// The next event, in the order the client caused them.
    pub fn poll_event(&mut self) -> Option<Event> {
        let event = self.events.pop_front();
        if self.events.is_empty() && self.events.capacity() > 0 {
            // A player causes events at its start and hardly ever after: its queue is not
            // kept allocated for the connection's life.
            self.events = VecDeque::new();
        }
        event
    }

    /// Bytes to send to the client, all at once.
    pub fn take_output(&mut self) -> Option<Bytes> {
        // `take`, not `split`: a split-off buffer keeps the whole allocation alive through
        // the capacity left behind, so one large burst (a GOP replay) would stay resident
        // for the life of the connection.
        (!self.output.is_empty()).then(|| std::mem::take(&mut self.output).freeze())
    }

    /// True while a request waits for [`Self::accept`] or [`Self::refuse`].
    pub fn is_suspended(&self) -> bool {
        self.pending.is_some()
    }

    fn process(&mut self) -> Result<(), RtmpError> {
        while self.pending.is_none() && matches!(self.phase, Phase::Messages) {
            let Some(msg) = self.decoder.decode(&mut self.input)? else {
                break;
            };
            self.handle_message(msg)?;
        }
        if self.input.is_empty() && self.input.capacity() > 0 {
            // Everything read was taken: the buffer goes until the next read (a player's
            // connection is otherwise quiet for its whole life).
            self.input = BytesMut::new();
        }
        if self.ack_window > 0 && self.received - self.acked >= u64::from(self.ack_window) {
            self.acked = self.received;
            self.control(ACKNOWLEDGEMENT, &(self.received as u32).to_be_bytes());
        }
        Ok(())
    }

    fn handle_message(&mut self, msg: RawMessage) -> Result<(), RtmpError> {
        match msg.type_id {
            1 | 2 | 5 => {
                let parsed = rml_rtmp::messages::MessagePayload {
                    timestamp: RtmpTimestamp::new(msg.timestamp),
                    type_id: msg.type_id,
                    message_stream_id: msg.stream_id,
                    data: msg.payload.clone(),
                }
                .to_rtmp_message()
                .map_err(|e| RtmpError::Message {
                    type_id: msg.type_id,
                    reason: e.to_string(),
                })?;
                match parsed {
                    RtmpMessage::SetChunkSize { size } => self.decoder.set_chunk_size(size)?,
                    RtmpMessage::Abort { stream_id } => self.decoder.abort(stream_id),
                    RtmpMessage::WindowAcknowledgement { size } => self.ack_window = size,
                    _ => {}
                }
            }
            8 | 9 => {
                if let Some((stream_id, Role::Publishing)) = self.active {
                    if msg.stream_id == stream_id && !msg.payload.is_empty() {
                        self.events.push_back(Event::Media {
                            kind: if msg.type_id == 8 {
                                MediaKind::Audio
                            } else {
                                MediaKind::Video
                            },
                            timestamp: msg.timestamp,
                            data: msg.payload,
                        });
                    }
                }
            }
            15 | 17 | 18 | 20 => {
                if msg.payload.len() > MAX_COMMAND_SIZE {
                    return Err(RtmpError::TooLarge {
                        type_id: msg.type_id,
                        size: msg.payload.len(),
                    });
                }
                // AMF3 variants (15, 17) start with a format byte, then AMF0.
                let body = if matches!(msg.type_id, 15 | 17) {
                    msg.payload.get(1..).unwrap_or_default()
                } else {
                    &msg.payload[..]
                };
                let values = amf::decode_all(body).map_err(|source| RtmpError::Amf {
                    type_id: msg.type_id,
                    stream_id: msg.stream_id,
                    source,
                })?;
                if matches!(msg.type_id, 15 | 18) {
                    self.handle_data(msg.stream_id, values);
                } else {
                    self.handle_command(msg.stream_id, values)?;
                }
            }
            // Acknowledgement, user control, peer bandwidth, aggregates and the rest: nothing
            // this server needs to act on.
            _ => {}
        }
        Ok(())
    }

    fn handle_data(&mut self, stream_id: u32, values: Vec<Amf0Value>) {
        let Some((active, Role::Publishing)) = self.active else {
            return;
        };
        if stream_id != active {
            return;
        }
        let mut values = values.into_iter().peekable();
        if matches!(values.peek(), Some(Amf0Value::Utf8String(s)) if s == "@setDataFrame") {
            values.next();
        }
        if !matches!(values.next(), Some(Amf0Value::Utf8String(s)) if s == "onMetaData") {
            return;
        }
        if let Some(Amf0Value::Object(properties)) = values.next() {
            self.events.push_back(Event::Metadata { properties });
        }
    }

    fn handle_command(&mut self, stream_id: u32, values: Vec<Amf0Value>) -> Result<(), RtmpError> {
        let mut values = values.into_iter();
        let Some(Amf0Value::Utf8String(name)) = values.next() else {
            return Err(RtmpError::Protocol("command without a name".into()));
        };
        let txn = match values.next() {
            Some(Amf0Value::Number(n)) => n,
            _ => 0.0,
        };
        let command_object = values.next();
        let args: Vec<Amf0Value> = values.collect();
        if name != "connect" && !self.connected {
            return Err(RtmpError::Protocol(format!("{name} before connect")));
        }
        match name.as_str() {
            "connect" => {
                if self.connected {
                    return Err(RtmpError::Protocol("second connect".into()));
                }
                let Some(Amf0Value::Object(props)) = command_object else {
                    return Err(RtmpError::Protocol(
                        "connect without a command object".into(),
                    ));
                };
                let field = |k: &str| match props.get(k) {
                    Some(Amf0Value::Utf8String(s)) => s.clone(),
                    _ => String::new(),
                };
                let encoding = match props.get("objectEncoding") {
                    Some(Amf0Value::Number(n)) => *n,
                    _ => 0.0,
                };
                let (app, tcurl) = (field("app"), field("tcUrl"));
                let request = self.suspend(Pending::Connect { txn, encoding });
                self.events.push_back(Event::ConnectRequested {
                    request,
                    app,
                    tcurl,
                });
            }
            "createStream" => {
                if self.streams.len() >= MAX_STREAMS {
                    return Err(RtmpError::Protocol("too many streams".into()));
                }
                let id = self.next_stream_id;
                self.next_stream_id += 1;
                self.streams.push(id);
                self.command_reply("_result", txn, Out::Null, Out::Number(f64::from(id)));
            }
            // FFmpeg's rtmpproto.c (and so mpv and VLC) reads this answer as
            // `_result, txn, null, <number>`, the duration in seconds, and warns on anything
            // else; a live stream has no length, so the number is 0 (as SRS answers).
            "getStreamLength" if txn != 0.0 => {
                self.command_reply("_result", txn, Out::Null, Out::Number(0.0));
            }
            "releaseStream" | "FCPublish" | "FCSubscribe" if txn != 0.0 => {
                self.command_reply("_result", txn, Out::Null, Out::Undefined);
            }
            "publish" | "play" => {
                let Some(Amf0Value::Utf8String(stream_name)) = args.into_iter().next() else {
                    return Err(RtmpError::Protocol(format!("{name} without a stream name")));
                };
                if !self.streams.contains(&stream_id) {
                    return Err(RtmpError::Protocol(format!(
                        "{name} on message stream {stream_id}, which was never created"
                    )));
                }
                if self.active.is_some() {
                    return Err(RtmpError::Protocol(format!(
                        "{name} while a publish or play is already active"
                    )));
                }
                let pending = if name == "publish" {
                    Pending::Publish {
                        stream_id,
                        name: stream_name.clone(),
                    }
                } else {
                    Pending::Play {
                        stream_id,
                        name: stream_name.clone(),
                    }
                };
                let request = self.suspend(pending);
                self.events.push_back(if name == "publish" {
                    Event::PublishRequested {
                        request,
                        stream_id,
                        stream_name,
                    }
                } else {
                    Event::PlayRequested {
                        request,
                        stream_id,
                        stream_name,
                    }
                });
            }
            "deleteStream" | "closeStream" | "FCUnpublish" => {
                let target = match (name.as_str(), args.first()) {
                    ("deleteStream", Some(Amf0Value::Number(n))) => *n as u32,
                    _ => stream_id,
                };
                if let Some((active, _)) = self.active {
                    if active == target || name == "FCUnpublish" {
                        self.active = None;
                        self.events
                            .push_back(Event::StreamClosed { stream_id: active });
                    }
                }
                if name == "deleteStream" {
                    self.streams.retain(|&s| s != target);
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn suspend(&mut self, pending: Pending) -> RequestId {
        let request = self.next_request;
        self.next_request += 1;
        self.pending = Some((request, pending));
        request
    }

    fn take_pending(&mut self, request: RequestId) -> Result<Pending, RtmpError> {
        match self.pending.take() {
            Some((id, pending)) if id == request => Ok(pending),
            other => {
                self.pending = other;
                Err(RtmpError::UnknownRequest(request))
            }
        }
    }

    /// Lets a pending request go on, answers the client, and resumes reading its input.
    pub fn accept(&mut self, request: RequestId) -> Result<(), RtmpError> {
        self.accept_noting(request, "")
    }

    /// [`Self::accept`], with `note` added to the description of a play's
    /// `NetStream.Play.Start` (what the player should know about the tracks it gets).
    pub fn accept_noting(&mut self, request: RequestId, note: &str) -> Result<(), RtmpError> {
        match self.take_pending(request)? {
            Pending::Connect { txn, encoding } => {
                self.control(WINDOW_ACK_SIZE, &WINDOW.to_be_bytes());
                let mut bandwidth = [LIMIT_DYNAMIC; 5];
                bandwidth[..4].copy_from_slice(&WINDOW.to_be_bytes());
                self.control(SET_PEER_BANDWIDTH, &bandwidth);
                // Set Chunk Size itself goes out at the old size; everything after at the new.
                self.control(SET_CHUNK_SIZE, &OUT_CHUNK_SIZE.to_be_bytes());
                self.out_chunk_size = OUT_CHUNK_SIZE;
                let properties = [
                    ("fmsVer", Out::Str("FMS/3,0,1,123")),
                    ("capabilities", Out::Number(31.0)),
                ];
                let info = [
                    ("level", Out::Str("status")),
                    ("code", Out::Str("NetConnection.Connect.Success")),
                    ("description", Out::Str("Connection succeeded.")),
                    ("objectEncoding", Out::Number(encoding)),
                ];
                self.command_reply("_result", txn, Out::Object(&properties), Out::Object(&info));
                self.connected = true;
            }
            Pending::Publish { stream_id, name } => {
                self.stream_begin(stream_id);
                let description = format!("{name} is now published.");
                self.on_status(
                    stream_id,
                    &status("status", "NetStream.Publish.Start", &description),
                );
                self.active = Some((stream_id, Role::Publishing));
            }
            Pending::Play { stream_id, name } => {
                self.stream_begin(stream_id);
                let description = format!("Playing and resetting {name}.");
                self.on_status(
                    stream_id,
                    &status("status", "NetStream.Play.Reset", &description),
                );
                let description = if note.is_empty() {
                    format!("Started playing {name}.")
                } else {
                    format!("Started playing {name}. {note}")
                };
                self.on_status(
                    stream_id,
                    &status("status", "NetStream.Play.Start", &description),
                );
                self.amf(
                    AMF0_DATA,
                    CSID_STREAM_COMMAND,
                    stream_id,
                    &[
                        Out::Str("|RtmpSampleAccess"),
                        Out::Bool(true),
                        Out::Bool(true),
                    ],
                );
                self.active = Some((stream_id, Role::Playing));
            }
        }
        self.process()
    }

    /// Refuses a pending request in RTMP's own words. The connection is finished: send the
    /// output, then close the socket.
    pub fn refuse(&mut self, request: RequestId, why: Rejection) -> Result<(), RtmpError> {
        let description = match why {
            Rejection::Unauthorized => "Refused by the server's access policy.",
            Rejection::AlreadyPublishing => "Stream is already being published.",
            Rejection::NotFound => "No such stream.",
            Rejection::Unavailable => "Server unavailable; try again later.",
        };
        match self.take_pending(request)? {
            Pending::Connect { txn, .. } => {
                let info = status("error", "NetConnection.Connect.Rejected", description);
                self.command_reply("_error", txn, Out::Null, Out::Object(&info));
            }
            Pending::Publish { stream_id, .. } => {
                let code = match why {
                    Rejection::AlreadyPublishing => "NetStream.Publish.BadName",
                    _ => "NetStream.Publish.Unauthorized",
                };
                self.on_status(stream_id, &status("error", code, description));
            }
            Pending::Play { stream_id, .. } => {
                let code = match why {
                    Rejection::NotFound => "NetStream.Play.StreamNotFound",
                    _ => "NetStream.Play.Failed",
                };
                self.on_status(stream_id, &status("error", code, description));
            }
        }
        self.phase = Phase::Closed;
        Ok(())
    }

    /// Sends stream metadata to a player as `onMetaData`.
    pub fn send_metadata(&mut self, stream_id: u32, properties: HashMap<String, Amf0Value>) {
        let properties = Amf0Value::Object(properties);
        self.amf(
            AMF0_DATA,
            CSID_STREAM_COMMAND,
            stream_id,
            &[Out::Str("onMetaData"), Out::Value(&properties)],
        );
    }

    /// Sends one audio or video message to a player; `parts` together form the FLV tag body.
    pub fn send_media(&mut self, stream_id: u32, kind: MediaKind, timestamp: u32, parts: &[&[u8]]) {
        encode_media(
            &mut self.output,
            self.out_chunk_size,
            stream_id,
            kind,
            timestamp,
            parts,
        );
    }

    /// The chunk size this connection's output uses now.
    pub fn out_chunk_size(&self) -> u32 {
        self.out_chunk_size
    }

    /// Tells a player its stream ended (the publisher left).
    pub fn end_of_stream(&mut self, stream_id: u32) {
        self.user_control(STREAM_EOF, stream_id);
        self.on_status(
            stream_id,
            &status(
                "status",
                "NetStream.Play.UnpublishNotify",
                "The stream was unpublished.",
            ),
        );
        self.on_status(
            stream_id,
            &status("status", "NetStream.Play.Stop", "Stopped playing."),
        );
        self.active = None;
    }

    /// Tells a player or publisher that the server ends its stream (a kick): an `onStatus`
    /// of level `error` (`NetStream.Play.Failed` for a player, `NetStream.Failed` for a
    /// publisher) with `description`, which clients show as the server's error.
    pub fn ended_by_server(&mut self, stream_id: u32, publishing: bool, description: &str) {
        let code = if publishing {
            "NetStream.Failed"
        } else {
            "NetStream.Play.Failed"
        };
        self.on_status(stream_id, &status("error", code, description));
        self.active = None;
    }

    fn stream_begin(&mut self, stream_id: u32) {
        self.user_control(STREAM_BEGIN, stream_id);
    }

    fn on_status(&mut self, stream_id: u32, info: &[(&str, Out<'_>)]) {
        self.amf(
            AMF0_COMMAND,
            CSID_STREAM_COMMAND,
            stream_id,
            &[
                Out::Str("onStatus"),
                Out::Number(0.0),
                Out::Null,
                Out::Object(info),
            ],
        );
    }

    fn command_reply(&mut self, name: &str, txn: f64, object: Out<'_>, info: Out<'_>) {
        self.amf(
            AMF0_COMMAND,
            CSID_COMMAND,
            0,
            &[Out::Str(name), Out::Number(txn), object, info],
        );
    }

    /// A user control event about a message stream (Stream Begin, Stream EOF).
    fn user_control(&mut self, event: u16, stream_id: u32) {
        let mut body = [0u8; 6];
        body[..2].copy_from_slice(&event.to_be_bytes());
        body[2..].copy_from_slice(&stream_id.to_be_bytes());
        self.control(USER_CONTROL, &body);
    }

    /// A protocol control message (chunk stream 2, message stream 0).
    fn control(&mut self, type_id: u8, body: &[u8]) {
        client::control(&mut self.output, self.out_chunk_size, type_id, body);
    }

    /// A command or data message of AMF0 values.
    fn amf(&mut self, type_id: u8, csid: u32, stream_id: u32, values: &[Out<'_>]) {
        let mut body = Vec::with_capacity(256);
        amf::encode(&mut body, values);
        self.message(type_id, csid, stream_id, &body);
    }

    /// Appends one of our own messages as chunks.
    fn message(&mut self, type_id: u8, csid: u32, stream_id: u32, body: &[u8]) {
        let header = ChunkHeader {
            csid,
            timestamp: 0,
            type_id,
            stream_id,
        };
        encode_message(&mut self.output, self.out_chunk_size, header, &[body]);
    }
}

/// Appends one audio or video message as chunks. Every message starts with a full (type 0)
/// header, so the bytes depend only on the arguments: players with the same message stream
/// id and chunk size can share one encoding of a frame.
pub fn encode_media(
    out: &mut BytesMut,
    chunk_size: u32,
    stream_id: u32,
    kind: MediaKind,
    timestamp: u32,
    parts: &[&[u8]],
) {
    let (csid, type_id) = match kind {
        MediaKind::Audio => (CSID_AUDIO, 8),
        MediaKind::Video => (CSID_VIDEO, 9),
    };
    encode_message(
        out,
        chunk_size,
        ChunkHeader {
            csid,
            timestamp,
            type_id,
            stream_id,
        },
        parts,
    );
}

#[cfg(test)]
mod tests;
