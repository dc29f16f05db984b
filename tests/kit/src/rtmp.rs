//! Raw sockets, and a blocking RTMP client that shows exactly what the server sends and when:
//! a thin IO shell over the protocol code's client ([`streamgate::protocol::rtmp::client`]):
//! its handshake, its command encoding, and its message reader in a thread that keeps every
//! message whole.

use std::collections::HashMap;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rml_amf0::Amf0Value;
use streamgate::protocol::rtmp::chunk::{encode_message, ChunkHeader};
use streamgate::protocol::rtmp::client::{
    self, as_str, command_values, field, string, Bodies, ClientError, ClientHandshake,
    HandshakeStep, Incoming, MessageReader,
};

/// Connects to 127.0.0.1:port with short timeouts.
pub fn connect(port: u16) -> io::Result<TcpStream> {
    let s = TcpStream::connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_secs(3),
    )?;
    s.set_read_timeout(Some(Duration::from_secs(3)))?;
    s.set_write_timeout(Some(Duration::from_secs(3)))?;
    Ok(s)
}

/// Connects to 127.0.0.1:port from `local`, another address of the loopback range (another
/// client host to the server), with short timeouts.
pub fn connect_from(local: [u8; 4], port: u16) -> io::Result<TcpStream> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    socket.bind(&SocketAddr::from((local, 0)).into())?;
    socket.connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], port)).into(),
        Duration::from_secs(3),
    )?;
    let s: TcpStream = socket.into();
    s.set_read_timeout(Some(Duration::from_secs(3)))?;
    s.set_write_timeout(Some(Duration::from_secs(3)))?;
    Ok(s)
}

/// The chunk size [`RtmpClient::open`] announces for what it sends.
const CHUNK_SIZE: u32 = 65536;

fn invalid(e: ClientError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

/// The client side of the RTMP handshake; returns what the server sent after it.
fn handshake(s: &mut TcpStream) -> io::Result<Vec<u8>> {
    let (mut hs, c0c1) = ClientHandshake::start().map_err(invalid)?;
    s.write_all(&c0c1)?;
    let mut buf = vec![0u8; 8192];
    loop {
        let n = s.read(&mut buf)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the server closed the connection during the handshake",
            ));
        }
        match hs.feed(&buf[..n]).map_err(invalid)? {
            HandshakeStep::InProgress(reply) => s.write_all(&reply)?,
            HandshakeStep::Done { reply, rest } => {
                s.write_all(&reply)?;
                return Ok(rest);
            }
        }
    }
}

/// Performs the client side of the RTMP handshake (C0 C1, S0 S1 S2, C2).
pub fn rtmp_handshake(s: &mut TcpStream) -> io::Result<()> {
    handshake(s).map(|_| ())
}

/// One whole message the server sent.
#[derive(Clone)]
pub struct RtmpMsg {
    /// When the read that completed it returned.
    pub at: Instant,
    pub type_id: u8,
    pub stream_id: u32,
    pub payload: Vec<u8>,
}

impl RtmpMsg {
    pub const AUDIO: u8 = client::AUDIO;
    pub const VIDEO: u8 = client::VIDEO;
    pub const DATA: u8 = client::DATA;
    pub const COMMAND: u8 = client::COMMAND;

    pub fn is_media(&self) -> bool {
        matches!(self.type_id, Self::AUDIO | Self::VIDEO | Self::DATA)
    }

    /// The AMF0 values of a command message (empty for other types or when they do not
    /// decode).
    pub fn values(&self) -> Vec<Amf0Value> {
        if self.type_id == Self::COMMAND {
            command_values(self.type_id, &self.payload).unwrap_or_default()
        } else {
            Vec::new()
        }
    }

    /// The command name (`_result`, `_error`, `onStatus`, ...).
    pub fn command(&self) -> Option<String> {
        self.values()
            .first()
            .and_then(|v| as_str(v).map(str::to_string))
    }

    /// The `code` of the info object of an `onStatus`/`_result`/`_error`.
    pub fn code(&self) -> Option<String> {
        self.values()
            .iter()
            .find_map(|v| field(Some(v), "code").map(str::to_string))
    }

    /// The `description` of an `onStatus` / `_error` info object.
    pub fn description(&self) -> Option<String> {
        self.values()
            .iter()
            .find_map(|v| field(Some(v), "description").map(str::to_string))
    }
}

impl fmt::Debug for RtmpMsg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.type_id == Self::COMMAND {
            write!(f, "cmd(sid {}) {:?}", self.stream_id, self.values())
        } else {
            write!(
                f,
                "type {} (sid {}) {} bytes",
                self.type_id,
                self.stream_id,
                self.payload.len()
            )
        }
    }
}

#[derive(Default)]
struct RtmpInbox {
    msgs: Vec<RtmpMsg>,
    closed_at: Option<Instant>,
    error: Option<String>,
    /// While set, the reader thread stops reading the socket (a player that stalls).
    paused: bool,
    /// Every byte read from the socket, the handshake's included.
    bytes_read: u64,
}

/// A bare RTMP client: handshake, commands one at a time as a test asks (after announcing a
/// 65536-byte chunk size), and a reader thread that keeps every message the server sends.
pub struct RtmpClient {
    stream: TcpStream,
    inbox: Arc<(Mutex<RtmpInbox>, Condvar)>,
    reader: Option<JoinHandle<()>>,
    txn: f64,
}

impl RtmpClient {
    /// TCP connect, handshake, and Set Chunk Size 65536 for what we send.
    pub fn open(port: u16) -> io::Result<RtmpClient> {
        let mut s = connect(port)?;
        s.set_nodelay(true)?;
        let rest = handshake(&mut s)?;
        let mut c = RtmpClient {
            stream: s.try_clone()?,
            inbox: Arc::new((Mutex::new(RtmpInbox::default()), Condvar::new())),
            reader: None,
            txn: 1.0,
        };
        let inbox = c.inbox.clone();
        s.set_read_timeout(None)?;
        c.reader = Some(thread::spawn(move || rtmp_reader(s, rest, inbox)));
        c.send_raw(2, 0, client::SET_CHUNK_SIZE, &CHUNK_SIZE.to_be_bytes())?;
        Ok(c)
    }

    /// Stops reading the socket from now on, as a player that stalls.
    pub fn pause_reading(&self) {
        self.inbox.0.lock().expect("inbox lock").paused = true;
    }

    /// Sends one message with timestamp 0 on chunk stream `csid`.
    pub fn send_raw(
        &mut self,
        csid: u8,
        stream_id: u32,
        type_id: u8,
        payload: &[u8],
    ) -> io::Result<()> {
        self.send_at(csid, stream_id, type_id, 0, payload)
    }

    /// Sends an AMF0 command; returns its transaction id.
    pub fn command(&mut self, stream_id: u32, name: &str, args: &[Amf0Value]) -> io::Result<f64> {
        let txn = self.txn;
        self.txn += 1.0;
        let mut values = vec![string(name), Amf0Value::Number(txn)];
        values.extend_from_slice(args);
        let csid = if stream_id == 0 { 3 } else { 8 };
        let mut out = BytesMut::new();
        client::command(&mut out, CHUNK_SIZE, csid, stream_id, &values);
        self.stream.write_all(&out)?;
        Ok(txn)
    }

    /// Sends `connect` for `app` with tcUrl `tcurl`.
    pub fn send_connect(&mut self, app: &str, tcurl: &str) -> io::Result<f64> {
        let object: HashMap<String, Amf0Value> = [
            ("app", string(app)),
            ("type", string("nonprivate")),
            ("flashVer", string("FMLE/3.0 (compatible; e2e)")),
            ("tcUrl", string(tcurl)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        self.command(0, "connect", &[Amf0Value::Object(object)])
    }

    /// Every byte read from the server so far, the handshake's included.
    pub fn bytes_read(&self) -> u64 {
        self.inbox.0.lock().expect("inbox lock").bytes_read
    }

    /// Sends `deleteStream` for stream `sid` (the client's goodbye).
    pub fn delete_stream(&mut self, sid: u32) -> io::Result<f64> {
        self.command(
            0,
            "deleteStream",
            &[Amf0Value::Null, Amf0Value::Number(sid as f64)],
        )
    }

    /// Every message received so far.
    pub fn messages(&self) -> Vec<RtmpMsg> {
        self.inbox.0.lock().expect("inbox lock").msgs.clone()
    }

    /// When the server closed the connection (None while open).
    pub fn closed_at(&self) -> Option<Instant> {
        self.inbox.0.lock().expect("inbox lock").closed_at
    }

    /// Waits for the connection to be closed by the server.
    pub fn wait_closed(&self, timeout: Duration) -> Option<Instant> {
        let end = Instant::now() + timeout;
        let (lock, cv) = &*self.inbox;
        let mut g = lock.lock().expect("inbox lock");
        loop {
            if let Some(t) = g.closed_at {
                return Some(t);
            }
            let now = Instant::now();
            if now >= end {
                return None;
            }
            g = cv.wait_timeout(g, end - now).expect("inbox wait").0;
        }
    }

    /// The first message matching `pred`, waiting up to `timeout`; None on timeout or close.
    pub fn wait_msg(&self, pred: impl Fn(&RtmpMsg) -> bool, timeout: Duration) -> Option<RtmpMsg> {
        let end = Instant::now() + timeout;
        let (lock, cv) = &*self.inbox;
        let mut g = lock.lock().expect("inbox lock");
        loop {
            if let Some(m) = g.msgs.iter().find(|m| pred(m)) {
                return Some(m.clone());
            }
            let now = Instant::now();
            if now >= end || g.closed_at.is_some() {
                return None;
            }
            g = cv.wait_timeout(g, end - now).expect("inbox wait").0;
        }
    }

    /// Waits for the `_result`/`_error` of transaction `txn`.
    pub fn wait_reply(&self, txn: f64, timeout: Duration) -> Option<RtmpMsg> {
        self.wait_msg(
            |m| {
                let v = m.values();
                matches!(v.first().and_then(as_str), Some("_result") | Some("_error"))
                    && matches!(v.get(1), Some(Amf0Value::Number(n)) if *n == txn)
            },
            timeout,
        )
    }

    /// `connect` then `createStream`; the message stream id to play or publish on.
    pub fn connect_and_create_stream(&mut self, app: &str, tcurl: &str) -> Result<u32, String> {
        let t = self.send_connect(app, tcurl).map_err(|e| e.to_string())?;
        let r = self
            .wait_reply(t, Duration::from_secs(10))
            .ok_or_else(|| format!("no reply to connect: {:?}", self.messages()))?;
        if r.command().as_deref() != Some("_result") {
            return Err(format!("connect refused: {r:?}"));
        }
        let t = self
            .command(0, "createStream", &[Amf0Value::Null])
            .map_err(|e| e.to_string())?;
        let r = self
            .wait_reply(t, Duration::from_secs(10))
            .ok_or_else(|| format!("no reply to createStream: {:?}", self.messages()))?;
        match r.values().get(3) {
            Some(Amf0Value::Number(sid)) => Ok(*sid as u32),
            _ => Err(format!("createStream result without a stream id: {r:?}")),
        }
    }

    pub fn send_play(&mut self, sid: u32, name: &str) -> io::Result<()> {
        self.command(
            sid,
            "play",
            &[Amf0Value::Null, string(name), Amf0Value::Number(-2000.0)],
        )
        .map(|_| ())
    }

    pub fn send_publish(&mut self, sid: u32, name: &str) -> io::Result<()> {
        self.command(
            sid,
            "publish",
            &[Amf0Value::Null, string(name), string("live")],
        )
        .map(|_| ())
    }

    /// The first `onStatus` with this code.
    pub fn wait_status(&self, code: &str, timeout: Duration) -> Option<RtmpMsg> {
        self.wait_msg(|m| m.code().as_deref() == Some(code), timeout)
    }

    /// Sends one message with a timestamp (media: an FLV tag body as type 8 or 9), split into
    /// chunks of the 65536-byte chunk size [`Self::open`] announced.
    pub fn send_at(
        &mut self,
        csid: u8,
        stream_id: u32,
        type_id: u8,
        timestamp: u32,
        payload: &[u8],
    ) -> io::Result<()> {
        let header = ChunkHeader {
            csid: u32::from(csid & 0x3f),
            timestamp: timestamp.min(0x00ff_fffe),
            type_id,
            stream_id,
        };
        let mut out = BytesMut::new();
        encode_message(&mut out, CHUNK_SIZE, header, &[payload]);
        self.stream.write_all(&out)
    }
}

impl Drop for RtmpClient {
    fn drop(&mut self) {
        // A paused reader must run again to see the shutdown and end.
        if let Ok(mut g) = self.inbox.0.lock() {
            g.paused = false;
        }
        let _ = self.stream.shutdown(Shutdown::Both);
        if let Some(h) = self.reader.take() {
            let _ = h.join();
        }
    }
}

fn rtmp_reader(mut s: TcpStream, rest: Vec<u8>, inbox: Arc<(Mutex<RtmpInbox>, Condvar)>) {
    let result = rtmp_read_loop(&mut s, rest, &inbox);
    let (lock, cv) = &*inbox;
    let mut g = lock.lock().expect("inbox lock");
    g.closed_at = Some(Instant::now());
    g.error = result.err().map(|e| e.to_string());
    cv.notify_all();
}

fn rtmp_read_loop(
    s: &mut TcpStream,
    rest: Vec<u8>,
    inbox: &Arc<(Mutex<RtmpInbox>, Condvar)>,
) -> io::Result<()> {
    let mut reader = MessageReader::new(Bodies::Whole);
    // S0, S1 and S2, and what came with them.
    inbox.0.lock().expect("inbox lock").bytes_read = (1 + 2 * 1536 + rest.len()) as u64;
    deliver(&mut reader, &rest, inbox)?;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        while inbox.0.lock().expect("inbox lock").paused {
            thread::sleep(Duration::from_millis(50));
        }
        let n = s.read(&mut buf)?;
        inbox.0.lock().expect("inbox lock").bytes_read += n as u64;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "closed by the server",
            ));
        }
        deliver(&mut reader, &buf[..n], inbox)?;
    }
}

/// Reads `data` and puts every whole message in the inbox.
fn deliver(
    reader: &mut MessageReader,
    data: &[u8],
    inbox: &Arc<(Mutex<RtmpInbox>, Condvar)>,
) -> io::Result<()> {
    let at = Instant::now();
    let mut msgs = Vec::new();
    let read = reader.feed(data, |incoming| {
        if let Incoming::Message(m) = incoming {
            msgs.push(RtmpMsg {
                at,
                type_id: m.type_id,
                stream_id: m.stream_id,
                payload: m.body.to_vec(),
            });
        }
        Ok::<(), ClientError>(())
    });
    // The messages before a malformed one still count.
    if !msgs.is_empty() {
        let (lock, cv) = &**inbox;
        lock.lock().expect("inbox lock").msgs.extend(msgs);
        cv.notify_all();
    }
    read.map_err(invalid)
}
