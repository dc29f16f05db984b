//! The client side of RTMP, sans IO: the handshake ([`ClientHandshake`]), the server's
//! messages read from its chunks ([`MessageReader`]), the commands a client sends
//! ([`command`], [`control`]), and the player's or publisher's conversation with the server
//! ([`ClientSession`]: connect → createStream → play or publish, acknowledgements, pings).
//!
//! The one RTMP client of the project: the load tool drives thousands of players with it (so
//! media payloads are walked in place, only their first bytes kept, unless the caller asks
//! for whole bodies) and the test kit reads every message the server sends with it. Built on
//! [`super::chunk`] and [`super::amf`], the server's own chunk and AMF code. Owns no socket and
//! reads no clock.

use std::collections::HashMap;

use bytes::BytesMut;
use rml_amf0::Amf0Value;
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};

use super::amf::{decode_all, AmfError};
use super::chunk::{encode_message, ChunkError, ChunkHeader, ChunkReader, Piece};

/// Set Chunk Size.
pub const SET_CHUNK_SIZE: u8 = 1;
/// Abort Message.
pub const ABORT: u8 = 2;
/// Acknowledgement.
pub const ACKNOWLEDGEMENT: u8 = 3;
/// User Control Message.
pub const USER_CONTROL: u8 = 4;
/// Window Acknowledgement Size.
pub const WINDOW_ACK_SIZE: u8 = 5;
/// Set Peer Bandwidth.
pub const SET_PEER_BANDWIDTH: u8 = 6;
/// Audio (an FLV audio tag body).
pub const AUDIO: u8 = 8;
/// Video (an FLV video tag body).
pub const VIDEO: u8 = 9;
/// AMF3 command.
pub const COMMAND_AMF3: u8 = 17;
/// AMF0 data (`@setDataFrame`, `onMetaData`).
pub const DATA: u8 = 18;
/// AMF0 command.
pub const COMMAND: u8 = 20;

/// Largest message other than audio and video a client reassembles.
pub const MAX_CONTROL_MESSAGE: usize = 1 << 20;
/// The first bytes of a media message kept in [`Bodies::Head`] mode: codec, frame type and
/// packet type, all a counting player looks at.
pub const MEDIA_HEAD: usize = 2;
/// The chunk size a client sends commands with until it announces another.
pub const DEFAULT_OUT_CHUNK_SIZE: u32 = 128;

/// Transaction id of `connect`.
const CONNECT_TXN: f64 = 1.0;
/// Transaction id of a player's `createStream`.
const PLAY_CREATE_TXN: f64 = 2.0;
/// Transaction id of a publisher's `createStream` (after `releaseStream` 2 and `FCPublish` 3).
const PUBLISH_CREATE_TXN: f64 = 4.0;

/// Why a client connection ends.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ClientError {
    /// The handshake failed.
    #[error("handshake: {0}")]
    Handshake(String),
    /// The server's chunk stream is malformed.
    #[error("{0}")]
    Chunk(#[from] ChunkError),
    /// A message other than media larger than [`MAX_CONTROL_MESSAGE`].
    #[error("message type {type_id} of {length} bytes is too large")]
    TooLarge {
        /// Message type id.
        type_id: u8,
        /// Declared length.
        length: usize,
    },
    /// A Set Chunk Size without its four bytes.
    #[error("short Set Chunk Size")]
    ShortSetChunkSize,
    /// A command that does not decode.
    #[error("bad command: {0}")]
    BadCommand(AmfError),
    /// The answer to `createStream` carries no stream id.
    #[error("createStream result without a stream id")]
    NoStreamId,
    /// The server refused `what` (`connect`, `createStream`, `play`, `publish`, `command`)
    /// with status `code`.
    #[error("{what} refused: {code}")]
    Refused {
        /// The refused step.
        what: &'static str,
        /// The status code the server gave.
        code: String,
    },
    /// The server ended the stream (`what`: `stream` for a player, `publish`) with `code`.
    #[error("{what} ended: {code}")]
    Ended {
        /// Which side ended.
        what: &'static str,
        /// The status code the server gave.
        code: String,
    },
    /// The server sent `close`.
    #[error("server sent close")]
    Closed,
}

// ------------------------------------------------------------------------------------------
// handshake

/// What a handshake step asks of the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandshakeStep {
    /// Send these bytes (possibly none) and read more.
    InProgress(Vec<u8>),
    /// Send `reply`; the handshake is over and `rest` is the start of the server's chunks.
    Done {
        /// Bytes to send.
        reply: Vec<u8>,
        /// What the server sent after its handshake.
        rest: Vec<u8>,
    },
}

/// The client side of the RTMP handshake, on rml_rtmp (which also speaks the Flash Player 9
/// digest handshake).
pub struct ClientHandshake {
    handshake: Handshake,
}

impl ClientHandshake {
    /// A handshake and its first bytes to send (C0 and C1).
    pub fn start() -> Result<(ClientHandshake, Vec<u8>), ClientError> {
        let mut handshake = Handshake::new(PeerType::Client);
        let c0c1 = handshake
            .generate_outbound_p0_and_p1()
            .map_err(|e| ClientError::Handshake(format!("{e:?}")))?;
        Ok((ClientHandshake { handshake }, c0c1))
    }

    /// Feeds bytes the server sent.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<HandshakeStep, ClientError> {
        match self
            .handshake
            .process_bytes(bytes)
            .map_err(|e| ClientError::Handshake(format!("{e:?}")))?
        {
            HandshakeProcessResult::InProgress { response_bytes } => {
                Ok(HandshakeStep::InProgress(response_bytes))
            }
            HandshakeProcessResult::Completed {
                response_bytes,
                remaining_bytes,
            } => Ok(HandshakeStep::Done {
                reply: response_bytes,
                rest: remaining_bytes,
            }),
        }
    }
}

// ------------------------------------------------------------------------------------------
// messages in

/// What a [`MessageReader`] keeps of audio and video messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bodies {
    /// Every body whole.
    Whole,
    /// The first [`MEDIA_HEAD`] bytes of audio and video; other messages whole.
    Head,
}

/// One whole message from the server (of audio and video, in [`Bodies::Head`] mode, only the
/// first bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Message<'a> {
    /// The chunk stream it arrived on.
    pub csid: u32,
    /// Timestamp in milliseconds.
    pub timestamp: u32,
    /// Message type id.
    pub type_id: u8,
    /// Message stream id.
    pub stream_id: u32,
    /// The body (or its head).
    pub body: &'a [u8],
}

/// What reading the server's bytes yields, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Incoming<'a> {
    /// This many payload bytes of audio or video arrived (counted as they come, before their
    /// message is whole).
    MediaBytes(usize),
    /// A whole message.
    Message(Message<'a>),
}

/// Reads the server's messages: chunks walked in place by [`ChunkReader`]; control messages
/// and commands reassembled (bounded by [`MAX_CONTROL_MESSAGE`]), media whole or by their
/// head. Applies Set Chunk Size and Abort itself, and hands them on too.
#[derive(Debug)]
pub struct MessageReader {
    chunks: ChunkReader,
    /// The partial body of each chunk stream with a message under way.
    partial: Vec<(u32, Vec<u8>)>,
    bodies: Bodies,
}

impl MessageReader {
    /// A reader keeping `bodies` of media.
    pub fn new(bodies: Bodies) -> MessageReader {
        MessageReader {
            chunks: ChunkReader::default(),
            partial: Vec::new(),
            bodies,
        }
    }

    /// Reads `data`, calling `sink` for what it yields; stops at the first error, the
    /// reader's or the sink's.
    pub fn feed<E: From<ClientError>>(
        &mut self,
        data: &[u8],
        mut sink: impl FnMut(Incoming<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut pos = 0;
        while let Some(piece) = self
            .chunks
            .next(data, &mut pos)
            .map_err(|e| E::from(e.into()))?
        {
            let media = matches!(piece.type_id, AUDIO | VIDEO);
            if media {
                sink(Incoming::MediaBytes(piece.data.len()))?;
            } else if piece.length > MAX_CONTROL_MESSAGE {
                return Err(E::from(ClientError::TooLarge {
                    type_id: piece.type_id,
                    length: piece.length,
                }));
            }
            let keep = if media && self.bodies == Bodies::Head {
                MEDIA_HEAD
            } else {
                usize::MAX
            };
            if piece.offset == 0 && piece.completes() {
                // The whole message in one piece: handed on from the input, not copied.
                let body = &piece.data[..piece.data.len().min(keep)];
                self.message(&piece, body, &mut sink)?;
                continue;
            }
            let at = match self.partial.iter().position(|(c, _)| *c == piece.csid) {
                Some(at) => at,
                None => {
                    self.partial.push((piece.csid, Vec::new()));
                    self.partial.len() - 1
                }
            };
            let buf = &mut self.partial[at].1;
            if piece.offset == 0 {
                buf.clear();
            }
            let room = keep.saturating_sub(buf.len()).min(piece.data.len());
            buf.extend_from_slice(&piece.data[..room]);
            if piece.completes() {
                let body = std::mem::take(buf);
                let result = self.message(&piece, &body, &mut sink);
                // Keep the allocation for the chunk stream's next message.
                if let Some((_, buf)) = self.partial.iter_mut().find(|(c, _)| *c == piece.csid) {
                    *buf = body;
                    buf.clear();
                }
                result?;
            }
        }
        Ok(())
    }

    /// A whole message: Set Chunk Size and Abort change the reader, then every message goes
    /// to the sink.
    fn message<E: From<ClientError>>(
        &mut self,
        piece: &Piece<'_>,
        body: &[u8],
        sink: &mut impl FnMut(Incoming<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        match piece.type_id {
            SET_CHUNK_SIZE => {
                let size = u32_at(body, 0).ok_or(ClientError::ShortSetChunkSize)?;
                self.chunks
                    .set_chunk_size(size & 0x7fff_ffff)
                    .map_err(ClientError::from)?;
            }
            ABORT => {
                if let Some(csid) = u32_at(body, 0) {
                    self.chunks.abort(csid);
                    if let Some((_, buf)) = self.partial.iter_mut().find(|(c, _)| *c == csid) {
                        buf.clear();
                    }
                }
            }
            _ => {}
        }
        sink(Incoming::Message(Message {
            csid: piece.csid,
            timestamp: piece.timestamp,
            type_id: piece.type_id,
            stream_id: piece.stream_id,
            body,
        }))
    }
}

/// The big-endian `u32` at `at` of `body`.
fn u32_at(body: &[u8], at: usize) -> Option<u32> {
    body.get(at..at + 4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

// ------------------------------------------------------------------------------------------
// messages out

/// Appends an AMF0 command (name, transaction id, arguments: `values`) on chunk stream
/// `csid` of message stream `stream_id`.
pub fn command(
    out: &mut BytesMut,
    chunk_size: u32,
    csid: u32,
    stream_id: u32,
    values: &[Amf0Value],
) {
    // Our own well-formed values: serialization cannot fail on them.
    let body = rml_amf0::serialize(&values.to_vec()).unwrap_or_default();
    encode_message(
        out,
        chunk_size,
        ChunkHeader {
            csid,
            timestamp: 0,
            type_id: COMMAND,
            stream_id,
        },
        &[&body],
    );
}

/// Appends a protocol-control or user-control message (chunk stream 2, message stream 0).
pub fn control(out: &mut BytesMut, chunk_size: u32, type_id: u8, body: &[u8]) {
    encode_message(
        out,
        chunk_size,
        ChunkHeader {
            csid: 2,
            timestamp: 0,
            type_id,
            stream_id: 0,
        },
        &[body],
    );
}

/// An AMF0 string.
pub fn string(s: &str) -> Amf0Value {
    Amf0Value::Utf8String(s.to_string())
}

/// The command object of `connect` to `app` with `tc_url`, as a Flash player or FFmpeg sends
/// it.
pub fn connect_object(app: &str, tc_url: &str, flash_ver: &str) -> Amf0Value {
    let mut o = HashMap::new();
    o.insert("app".to_string(), string(app));
    o.insert("flashVer".to_string(), string(flash_ver));
    o.insert("tcUrl".to_string(), string(tc_url));
    o.insert("fpad".to_string(), Amf0Value::Boolean(false));
    o.insert("capabilities".to_string(), Amf0Value::Number(15.0));
    o.insert("audioCodecs".to_string(), Amf0Value::Number(4071.0));
    o.insert("videoCodecs".to_string(), Amf0Value::Number(252.0));
    o.insert("videoFunction".to_string(), Amf0Value::Number(1.0));
    Amf0Value::Object(o)
}

/// The text of an AMF0 string.
pub fn as_str(v: &Amf0Value) -> Option<&str> {
    match v {
        Amf0Value::Utf8String(s) => Some(s),
        _ => None,
    }
}

/// Field `key` of an AMF0 object, when it is a string.
pub fn field<'a>(v: Option<&'a Amf0Value>, key: &str) -> Option<&'a str> {
    match v {
        Some(Amf0Value::Object(o)) => o.get(key).and_then(as_str),
        _ => None,
    }
}

/// The AMF0 values of a command message (type 17 carries a format byte before them).
pub fn command_values(type_id: u8, body: &[u8]) -> Result<Vec<Amf0Value>, AmfError> {
    let amf = if type_id == COMMAND_AMF3 {
        body.get(1..).unwrap_or_default()
    } else {
        body
    };
    decode_all(amf)
}

// ------------------------------------------------------------------------------------------
// a player's or publisher's conversation

/// What the client asks of the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// Play this stream name.
    Play(String),
    /// Publish to this stream name, sending media in chunks of `chunk_size`.
    Publish {
        /// The stream name.
        name: String,
        /// The chunk size announced before publishing.
        chunk_size: u32,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Connecting,
    CreatingStream,
    /// `play` (or `publish`) sent.
    Started,
}

/// What a [`ClientSession`] reports from the server's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientEvent<'a> {
    /// Payload bytes of audio or video arrived.
    MediaBytes(usize),
    /// A whole audio (8) or video (9) message: its type and first bytes.
    Media {
        /// Message type id.
        type_id: u8,
        /// The first [`MEDIA_HEAD`] bytes of its body.
        head: &'a [u8],
    },
    /// `NetStream.Play.Start` (player) or `NetStream.Publish.Start` (publisher).
    Started,
}

/// The command side of the conversation, apart from the reader so both can be borrowed at
/// once.
#[derive(Debug)]
struct Conversation {
    app: String,
    tc_url: String,
    role: Role,
    phase: Phase,
    started: bool,
    stream_id: u32,
    window: u64,
    bytes_in: u64,
    last_ack: u64,
    out_chunk_size: u32,
}

/// A player or publisher: after the handshake, [`Self::connect`] queues `connect`; each
/// [`Self::feed`] of the server's bytes answers what needs answering (createStream, play or
/// publish, acknowledgements, pings) into `out` and reports media and the start. The media a
/// publisher sends are the caller's, on [`Self::stream_id`] in [`Self::out_chunk_size`].
#[derive(Debug)]
pub struct ClientSession {
    reader: MessageReader,
    talk: Conversation,
}

impl ClientSession {
    /// A client of application `app` (`tc_url` as it would send it) in `role`.
    pub fn new(app: &str, tc_url: &str, role: Role) -> ClientSession {
        ClientSession {
            reader: MessageReader::new(Bodies::Head),
            talk: Conversation {
                app: app.to_string(),
                tc_url: tc_url.to_string(),
                role,
                phase: Phase::Connecting,
                started: false,
                stream_id: 0,
                window: 0,
                bytes_in: 0,
                last_ack: 0,
                out_chunk_size: DEFAULT_OUT_CHUNK_SIZE,
            },
        }
    }

    /// Counts the handshake's bytes toward the acknowledgement window.
    pub fn handshake_bytes(&mut self, n: u64) {
        self.talk.bytes_in += n;
    }

    /// Queues `connect`.
    pub fn connect(&self, out: &mut BytesMut) {
        let t = &self.talk;
        command(
            out,
            t.out_chunk_size,
            3,
            0,
            &[
                string("connect"),
                Amf0Value::Number(CONNECT_TXN),
                connect_object(&t.app, &t.tc_url, "LNX 9,0,124,2"),
            ],
        );
    }

    /// The message stream id `createStream` gave (0 before).
    pub fn stream_id(&self) -> u32 {
        self.talk.stream_id
    }

    /// The chunk size of what this client sends now.
    pub fn out_chunk_size(&self) -> u32 {
        self.talk.out_chunk_size
    }

    /// Feeds bytes the server sent; answers go to `out`, what happened to `sink`.
    pub fn feed(
        &mut self,
        data: &[u8],
        out: &mut BytesMut,
        mut sink: impl FnMut(ClientEvent<'_>),
    ) -> Result<(), ClientError> {
        let talk = &mut self.talk;
        talk.bytes_in += data.len() as u64;
        self.reader.feed(data, |incoming| match incoming {
            Incoming::MediaBytes(n) => {
                sink(ClientEvent::MediaBytes(n));
                Ok(())
            }
            Incoming::Message(m) if matches!(m.type_id, AUDIO | VIDEO) => {
                sink(ClientEvent::Media {
                    type_id: m.type_id,
                    head: m.body,
                });
                Ok(())
            }
            Incoming::Message(m) => talk.message(&m, out, &mut sink),
        })?;
        if talk.window > 0 && talk.bytes_in - talk.last_ack >= talk.window {
            talk.last_ack = talk.bytes_in;
            control(
                out,
                talk.out_chunk_size,
                ACKNOWLEDGEMENT,
                &(talk.bytes_in as u32).to_be_bytes(),
            );
        }
        Ok(())
    }
}

impl Conversation {
    fn create_txn(&self) -> f64 {
        match self.role {
            Role::Play(_) => PLAY_CREATE_TXN,
            Role::Publish { .. } => PUBLISH_CREATE_TXN,
        }
    }

    fn message(
        &mut self,
        m: &Message<'_>,
        out: &mut BytesMut,
        sink: &mut impl FnMut(ClientEvent<'_>),
    ) -> Result<(), ClientError> {
        match m.type_id {
            // User control: answer a ping request (6) with a ping response (7).
            USER_CONTROL if m.body.len() >= 6 && m.body[0] == 0 && m.body[1] == 6 => {
                let mut pong = [0u8; 6];
                pong[1] = 7;
                pong[2..6].copy_from_slice(&m.body[2..6]);
                control(out, self.out_chunk_size, USER_CONTROL, &pong);
            }
            WINDOW_ACK_SIZE => self.window = u64::from(u32_at(m.body, 0).unwrap_or(0)),
            COMMAND | COMMAND_AMF3 => {
                let values = command_values(m.type_id, m.body).map_err(ClientError::BadCommand)?;
                self.command(&values, out, sink)?;
            }
            _ => {}
        }
        Ok(())
    }

    fn command(
        &mut self,
        values: &[Amf0Value],
        out: &mut BytesMut,
        sink: &mut impl FnMut(ClientEvent<'_>),
    ) -> Result<(), ClientError> {
        let name = values.first().and_then(as_str).unwrap_or("");
        let txn = match values.get(1) {
            Some(Amf0Value::Number(n)) => *n,
            _ => -1.0,
        };
        let info = values.get(3);
        let publishing = matches!(self.role, Role::Publish { .. });
        match name {
            "_result" if txn == CONNECT_TXN && self.phase == Phase::Connecting => {
                self.phase = Phase::CreatingStream;
                if let Role::Publish { name, chunk_size } = &self.role {
                    // Media go out in large chunks; everything from here on uses the new size.
                    control(
                        out,
                        self.out_chunk_size,
                        SET_CHUNK_SIZE,
                        &chunk_size.to_be_bytes(),
                    );
                    self.out_chunk_size = *chunk_size;
                    // As encoders do: servers that track publishers by these expect them.
                    for (i, cmd) in ["releaseStream", "FCPublish"].into_iter().enumerate() {
                        let txn = Amf0Value::Number(2.0 + i as f64);
                        let args = [string(cmd), txn, Amf0Value::Null, string(name)];
                        command(out, self.out_chunk_size, 3, 0, &args);
                    }
                }
                let create = [
                    string("createStream"),
                    Amf0Value::Number(self.create_txn()),
                    Amf0Value::Null,
                ];
                command(out, self.out_chunk_size, 3, 0, &create);
            }
            "_result" if txn == self.create_txn() && self.phase == Phase::CreatingStream => {
                let sid = match info {
                    Some(Amf0Value::Number(n)) => *n as u32,
                    _ => return Err(ClientError::NoStreamId),
                };
                self.phase = Phase::Started;
                self.stream_id = sid;
                match &self.role {
                    Role::Publish { name, .. } => {
                        let zero = Amf0Value::Number(0.0);
                        let args = [
                            string("publish"),
                            zero,
                            Amf0Value::Null,
                            string(name),
                            string("live"),
                        ];
                        command(out, self.out_chunk_size, 8, sid, &args);
                    }
                    Role::Play(name) => {
                        let args = [
                            string("play"),
                            Amf0Value::Number(0.0),
                            Amf0Value::Null,
                            string(name),
                            Amf0Value::Number(-2000.0),
                        ];
                        command(out, self.out_chunk_size, 8, sid, &args);
                        // Set Buffer Length (user control 3), as ffmpeg sends it: 3000 ms.
                        let mut b = [0u8; 10];
                        b[1] = 3;
                        b[2..6].copy_from_slice(&sid.to_be_bytes());
                        b[6..10].copy_from_slice(&3000u32.to_be_bytes());
                        control(out, self.out_chunk_size, USER_CONTROL, &b);
                    }
                }
            }
            // Encoders carry on when a server refuses releaseStream or FCPublish.
            "_error" if publishing && (txn == 2.0 || txn == 3.0) => {}
            "_error" => {
                let what = if txn == CONNECT_TXN {
                    "connect"
                } else if txn == self.create_txn() {
                    "createStream"
                } else {
                    "command"
                };
                let code = field(info, "code").unwrap_or("?").to_string();
                return Err(ClientError::Refused { what, code });
            }
            "onStatus" if publishing => {
                let code = field(info, "code").unwrap_or("?");
                let level = field(info, "level").unwrap_or("");
                if !self.started {
                    // Before the start, anything but the start is the server saying no.
                    if code != "NetStream.Publish.Start" {
                        let code = code.to_string();
                        return Err(ClientError::Refused {
                            what: "publish",
                            code,
                        });
                    }
                    self.started = true;
                    sink(ClientEvent::Started);
                } else if level == "error" || code == "NetStream.Unpublish.Success" {
                    let code = code.to_string();
                    return Err(ClientError::Ended {
                        what: "publish",
                        code,
                    });
                }
            }
            "onStatus" => {
                let code = field(info, "code").unwrap_or("");
                let level = field(info, "level").unwrap_or("");
                match code {
                    "NetStream.Play.Start" => {
                        self.started = true;
                        sink(ClientEvent::Started);
                    }
                    "NetStream.Play.Stop"
                    | "NetStream.Play.UnpublishNotify"
                    | "NetStream.Play.Complete" => {
                        let code = code.to_string();
                        return Err(ClientError::Ended {
                            what: "stream",
                            code,
                        });
                    }
                    _ if level == "error" => {
                        let code = code.to_string();
                        return Err(ClientError::Refused { what: "play", code });
                    }
                    _ => {}
                }
            }
            "close" => return Err(ClientError::Closed),
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::rtmp::chunk::ChunkDecoder;

    fn encode(out: &mut BytesMut, chunk_size: u32, csid: u32, type_id: u8, ts: u32, body: &[u8]) {
        let header = ChunkHeader {
            csid,
            timestamp: ts,
            type_id,
            stream_id: 1,
        };
        encode_message(out, chunk_size, header, &[body]);
    }

    /// Two chunk streams interleaved chunk by chunk, as FFmpeg 6.1+ and OBS send them.
    fn interleaved() -> (BytesMut, Vec<(u8, u32, Vec<u8>)>) {
        let video: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
        let audio: Vec<u8> = (0..300u32).map(|i| (i % 13) as u8).collect();
        let mut v = BytesMut::new();
        encode(&mut v, 128, 6, VIDEO, 40, &video);
        let mut a = BytesMut::new();
        encode(&mut a, 128, 4, AUDIO, 0x0100_0000, &audio);
        // Splice the audio message's chunks between the video message's.
        let mut out = BytesMut::new();
        out.extend_from_slice(&v[..12 + 128]);
        out.extend_from_slice(&a[..16 + 128]);
        out.extend_from_slice(&v[12 + 128..12 + 128 + 1 + 128]);
        out.extend_from_slice(&a[16 + 128..]);
        out.extend_from_slice(&v[12 + 128 + 1 + 128..]);
        let expected = vec![(AUDIO, 0x0100_0000, audio), (VIDEO, 40, video)];
        (out, expected)
    }

    #[test]
    fn the_reader_agrees_with_the_servers_decoder_at_any_split() {
        let (wire, expected) = interleaved();
        let mut decoder = ChunkDecoder::default();
        let mut input = wire.clone();
        let mut decoded = Vec::new();
        while let Some(m) = decoder.decode(&mut input).expect("well-formed") {
            decoded.push((m.type_id, m.timestamp, m.payload.to_vec()));
        }
        assert_eq!(decoded, expected);
        for step in [1, 2, 7, 128, 4096] {
            let mut reader = MessageReader::new(Bodies::Whole);
            let mut got = Vec::new();
            let mut media = 0;
            for part in wire.chunks(step) {
                reader
                    .feed(part, |incoming| {
                        match incoming {
                            Incoming::MediaBytes(n) => media += n,
                            Incoming::Message(m) => {
                                got.push((m.type_id, m.timestamp, m.body.to_vec()))
                            }
                        }
                        Ok::<(), ClientError>(())
                    })
                    .expect("well-formed");
            }
            assert_eq!(got, expected, "fed {step} bytes at a time");
            assert_eq!(media, 1300, "fed {step} bytes at a time");
        }
    }

    #[test]
    fn media_heads_only_and_set_chunk_size_applies_to_what_follows() {
        let mut wire = BytesMut::new();
        encode(&mut wire, 128, 2, SET_CHUNK_SIZE, 0, &4096u32.to_be_bytes());
        let video: Vec<u8> = [0x17, 0x01].into_iter().chain([9u8; 3000]).collect();
        encode(&mut wire, 4096, 6, VIDEO, 0, &video);
        let mut reader = MessageReader::new(Bodies::Head);
        let mut heads = Vec::new();
        reader
            .feed(&wire, |incoming| {
                if let Incoming::Message(m) = incoming {
                    heads.push((m.type_id, m.body.to_vec()));
                }
                Ok::<(), ClientError>(())
            })
            .expect("well-formed");
        assert_eq!(
            heads,
            vec![
                (SET_CHUNK_SIZE, 4096u32.to_be_bytes().to_vec()),
                (VIDEO, vec![0x17, 0x01])
            ]
        );
    }

    #[test]
    fn a_command_larger_than_the_bound_ends_the_connection() {
        let mut wire = BytesMut::new();
        encode(
            &mut wire,
            128,
            3,
            COMMAND,
            0,
            &vec![0; MAX_CONTROL_MESSAGE + 1],
        );
        let mut reader = MessageReader::new(Bodies::Whole);
        let r = reader.feed(&wire, |_| Ok::<(), ClientError>(()));
        assert!(matches!(r, Err(ClientError::TooLarge { .. })), "{r:?}");
    }

    /// The values of every command in `out`, as the server would read them.
    fn commands(out: &mut BytesMut) -> Vec<Vec<Amf0Value>> {
        let mut decoder = ChunkDecoder::default();
        let mut found = Vec::new();
        while let Some(m) = decoder.decode(out).expect("well-formed") {
            if m.type_id == SET_CHUNK_SIZE {
                let size = u32_at(&m.payload, 0).expect("size");
                decoder.set_chunk_size(size).expect("valid size");
            }
            if m.type_id == COMMAND {
                found.push(decode_all(&m.payload).expect("AMF0"));
            }
        }
        out.clear();
        found
    }

    fn reply(name: &str, txn: f64, info: Amf0Value) -> BytesMut {
        let mut out = BytesMut::new();
        let values = [string(name), Amf0Value::Number(txn), Amf0Value::Null, info];
        command(&mut out, 128, 3, 0, &values);
        out
    }

    fn status(code: &str, level: &str) -> BytesMut {
        let mut info = HashMap::new();
        info.insert("code".to_string(), string(code));
        info.insert("level".to_string(), string(level));
        reply("onStatus", 0.0, Amf0Value::Object(info))
    }

    fn names(cmds: &[Vec<Amf0Value>]) -> Vec<&str> {
        cmds.iter()
            .filter_map(|c| c.first().and_then(as_str))
            .collect()
    }

    /// Feeds `bytes`, noting each event in `events`.
    fn feed(
        c: &mut ClientSession,
        bytes: &[u8],
        out: &mut BytesMut,
        events: &mut Vec<String>,
    ) -> Result<(), ClientError> {
        c.feed(bytes, out, |e| {
            events.push(match e {
                ClientEvent::MediaBytes(n) => format!("bytes {n}"),
                ClientEvent::Media { type_id, head } => format!("media {type_id} {head:?}"),
                ClientEvent::Started => "started".into(),
            })
        })
    }

    #[test]
    fn a_player_connects_creates_a_stream_plays_and_counts_media() {
        let mut c = ClientSession::new("live", "rtmp://h/live", Role::Play("cam".into()));
        let mut out = BytesMut::new();
        c.connect(&mut out);
        let sent = commands(&mut out);
        assert_eq!(names(&sent), ["connect"]);
        assert_eq!(field(sent[0].get(2), "tcUrl"), Some("rtmp://h/live"));

        let mut events = Vec::new();
        feed(
            &mut c,
            &reply("_result", 1.0, Amf0Value::Null),
            &mut out,
            &mut events,
        )
        .expect("connected");
        assert_eq!(names(&commands(&mut out)), ["createStream"]);
        feed(
            &mut c,
            &reply("_result", 2.0, Amf0Value::Number(5.0)),
            &mut out,
            &mut events,
        )
        .expect("stream");
        let sent = commands(&mut out);
        assert_eq!(names(&sent), ["play"]);
        assert_eq!(sent[0].get(3).and_then(as_str), Some("cam"));
        assert_eq!(c.stream_id(), 5);
        feed(
            &mut c,
            &status("NetStream.Play.Start", "status"),
            &mut out,
            &mut events,
        )
        .expect("start");
        let mut video = BytesMut::new();
        encode(&mut video, 128, 6, VIDEO, 0, &[0x17, 0x01, 0, 0, 0, 7]);
        feed(&mut c, &video, &mut out, &mut events).expect("media");
        assert_eq!(events, ["started", "bytes 6", "media 9 [23, 1]"]);

        let ended = feed(
            &mut c,
            &status("NetStream.Play.UnpublishNotify", "status"),
            &mut out,
            &mut events,
        );
        assert_eq!(
            ended.map_err(|e| e.to_string()),
            Err("stream ended: NetStream.Play.UnpublishNotify".to_string())
        );
    }

    #[test]
    fn refusals_name_the_step_and_the_code() {
        let mut out = BytesMut::new();
        let mut c = ClientSession::new("live", "rtmp://h/live", Role::Play("cam".into()));
        let mut info = HashMap::new();
        info.insert("code".to_string(), string("NetConnection.Connect.Rejected"));
        let r = c.feed(
            &reply("_error", 1.0, Amf0Value::Object(info)),
            &mut out,
            |_| {},
        );
        assert_eq!(
            r.map_err(|e| e.to_string()),
            Err("connect refused: NetConnection.Connect.Rejected".to_string())
        );

        let role = Role::Publish {
            name: "cam".into(),
            chunk_size: 4096,
        };
        let mut p = ClientSession::new("live", "rtmp://h/live", role);
        p.feed(&reply("_result", 1.0, Amf0Value::Null), &mut out, |_| {})
            .expect("connected");
        assert_eq!(
            names(&commands(&mut out)),
            ["releaseStream", "FCPublish", "createStream"]
        );
        assert_eq!(p.out_chunk_size(), 4096);
        p.feed(
            &reply("_result", 4.0, Amf0Value::Number(1.0)),
            &mut out,
            |_| {},
        )
        .expect("stream");
        assert_eq!(names(&commands(&mut out)), ["publish"]);
        let r = p.feed(
            &status("NetStream.Publish.BadName", "error"),
            &mut out,
            |_| {},
        );
        assert_eq!(
            r.map_err(|e| e.to_string()),
            Err("publish refused: NetStream.Publish.BadName".to_string())
        );
    }
}
