//! Raw sockets, and a bare blocking RTMP client that shows exactly what the server sends and
//! when: simple handshake, commands in one chunk each, and a reader thread that reassembles
//! every message.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::util::Rng;

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

/// Performs the client side of the RTMP simple handshake (C0 C1, S0 S1 S2, C2).
pub fn rtmp_handshake(s: &mut TcpStream, rng: &mut Rng) -> io::Result<()> {
    let mut c0c1 = vec![3u8];
    c0c1.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0]);
    c0c1.extend_from_slice(&rng.bytes(1528));
    s.write_all(&c0c1)?;
    let mut s012 = vec![0u8; 1 + 1536 + 1536];
    s.read_exact(&mut s012)?;
    if s012[0] != 3 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("S0 is {} not 3", s012[0]),
        ));
    }
    // C2 echoes S1.
    s.write_all(&s012[1..1537])?;
    Ok(())
}

/// An AMF0 value (the subset RTMP commands use).
#[derive(Debug, Clone, PartialEq)]
pub enum Amf {
    Number(f64),
    Bool(bool),
    Str(String),
    Object(Vec<(String, Amf)>),
    Null,
    Undefined,
}

impl Amf {
    pub fn obj(pairs: &[(&str, Amf)]) -> Amf {
        Amf::Object(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        )
    }

    pub fn str(s: &str) -> Amf {
        Amf::Str(s.to_string())
    }

    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Amf::Number(n) => {
                out.push(0);
                out.extend_from_slice(&n.to_be_bytes());
            }
            Amf::Bool(b) => out.extend_from_slice(&[1, u8::from(*b)]),
            Amf::Str(s) => {
                out.push(2);
                out.extend_from_slice(&(s.len() as u16).to_be_bytes());
                out.extend_from_slice(s.as_bytes());
            }
            Amf::Object(pairs) => {
                out.push(3);
                for (k, v) in pairs {
                    out.extend_from_slice(&(k.len() as u16).to_be_bytes());
                    out.extend_from_slice(k.as_bytes());
                    v.encode(out);
                }
                out.extend_from_slice(&[0, 0, 9]);
            }
            Amf::Null => out.push(5),
            Amf::Undefined => out.push(6),
        }
    }

    /// Decodes values until the input ends or an unknown marker is met.
    pub fn decode_all(mut b: &[u8]) -> Vec<Amf> {
        let mut out = Vec::new();
        while !b.is_empty() {
            match Amf::decode(&mut b) {
                Some(v) => out.push(v),
                None => break,
            }
        }
        out
    }

    fn decode(b: &mut &[u8]) -> Option<Amf> {
        fn take<'a>(b: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
            if b.len() < n {
                return None;
            }
            let (h, t) = b.split_at(n);
            *b = t;
            Some(h)
        }
        fn key(b: &mut &[u8]) -> Option<String> {
            let l = take(b, 2)?;
            let n = u16::from_be_bytes([l[0], l[1]]) as usize;
            Some(String::from_utf8_lossy(take(b, n)?).to_string())
        }
        fn pairs(b: &mut &[u8]) -> Option<Vec<(String, Amf)>> {
            let mut v = Vec::new();
            loop {
                let k = key(b)?;
                if k.is_empty() && b.first() == Some(&9) {
                    take(b, 1)?;
                    return Some(v);
                }
                v.push((k, Amf::decode(b)?));
            }
        }
        let marker = take(b, 1)?[0];
        Some(match marker {
            0 => {
                let n = take(b, 8)?;
                let mut a = [0u8; 8];
                a.copy_from_slice(n);
                Amf::Number(f64::from_be_bytes(a))
            }
            1 => Amf::Bool(take(b, 1)?[0] != 0),
            2 => Amf::Str(key(b)?),
            3 => Amf::Object(pairs(b)?),
            5 => Amf::Null,
            6 => Amf::Undefined,
            8 => {
                take(b, 4)?;
                Amf::Object(pairs(b)?)
            }
            _ => return None,
        })
    }

    /// Field `k` of an object.
    pub fn get(&self, k: &str) -> Option<&Amf> {
        match self {
            Amf::Object(p) => p.iter().find(|(key, _)| key == k).map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Amf::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_num(&self) -> Option<f64> {
        match self {
            Amf::Number(n) => Some(*n),
            _ => None,
        }
    }
}

/// One whole message the server sent.
#[derive(Clone)]
pub struct RtmpMsg {
    /// When its last byte arrived.
    pub at: Instant,
    pub type_id: u8,
    pub stream_id: u32,
    pub payload: Vec<u8>,
}

impl RtmpMsg {
    pub const AUDIO: u8 = 8;
    pub const VIDEO: u8 = 9;
    pub const DATA: u8 = 18;
    pub const COMMAND: u8 = 20;

    pub fn is_media(&self) -> bool {
        matches!(self.type_id, Self::AUDIO | Self::VIDEO | Self::DATA)
    }

    /// The AMF0 values of a command message (empty for other types).
    pub fn values(&self) -> Vec<Amf> {
        if self.type_id == Self::COMMAND {
            Amf::decode_all(&self.payload)
        } else {
            Vec::new()
        }
    }

    /// The command name (`_result`, `_error`, `onStatus`, ...).
    pub fn command(&self) -> Option<String> {
        self.values()
            .first()
            .and_then(|v| v.as_str().map(str::to_string))
    }

    /// The `code` of the info object of an `onStatus`/`_result`/`_error`.
    pub fn code(&self) -> Option<String> {
        self.values()
            .iter()
            .find_map(|v| v.get("code").and_then(|c| c.as_str().map(str::to_string)))
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
}

/// A bare RTMP client: simple handshake, commands in one chunk each (after asking for a big
/// chunk size), and a reader thread that reassembles every message the server sends.
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
        let mut rng = Rng::new(u64::from(port) * 7919 + 17);
        rtmp_handshake(&mut s, &mut rng)?;
        let mut c = RtmpClient {
            stream: s.try_clone()?,
            inbox: Arc::new((Mutex::new(RtmpInbox::default()), Condvar::new())),
            reader: None,
            txn: 1.0,
        };
        let inbox = c.inbox.clone();
        s.set_read_timeout(None)?;
        c.reader = Some(thread::spawn(move || rtmp_reader(s, inbox)));
        c.send_raw(2, 0, 1, &65536u32.to_be_bytes())?;
        Ok(c)
    }

    /// Stops reading the socket from now on, as a player that stalls.
    pub fn pause_reading(&self) {
        self.inbox.0.lock().expect("inbox lock").paused = true;
    }

    /// Sends one message in a single chunk (fmt 0) on chunk stream `csid`.
    pub fn send_raw(
        &mut self,
        csid: u8,
        stream_id: u32,
        type_id: u8,
        payload: &[u8],
    ) -> io::Result<()> {
        let mut m = vec![csid & 0x3f, 0, 0, 0];
        let len = payload.len() as u32;
        m.extend_from_slice(&len.to_be_bytes()[1..]);
        m.push(type_id);
        m.extend_from_slice(&stream_id.to_le_bytes());
        m.extend_from_slice(payload);
        self.stream.write_all(&m)
    }

    /// Sends an AMF0 command; returns its transaction id.
    pub fn command(&mut self, stream_id: u32, name: &str, args: &[Amf]) -> io::Result<f64> {
        let txn = self.txn;
        self.txn += 1.0;
        let mut p = Vec::new();
        Amf::str(name).encode(&mut p);
        Amf::Number(txn).encode(&mut p);
        for a in args {
            a.encode(&mut p);
        }
        let csid = if stream_id == 0 { 3 } else { 8 };
        self.send_raw(csid, stream_id, 20, &p)?;
        Ok(txn)
    }

    /// Sends `connect` for `app` with tcUrl `tcurl`.
    pub fn send_connect(&mut self, app: &str, tcurl: &str) -> io::Result<f64> {
        self.command(
            0,
            "connect",
            &[Amf::obj(&[
                ("app", Amf::str(app)),
                ("type", Amf::str("nonprivate")),
                ("flashVer", Amf::str("FMLE/3.0 (compatible; e2e)")),
                ("tcUrl", Amf::str(tcurl)),
            ])],
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
                matches!(
                    v.first().and_then(Amf::as_str),
                    Some("_result") | Some("_error")
                ) && v.get(1).and_then(Amf::as_num) == Some(txn)
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
            .command(0, "createStream", &[Amf::Null])
            .map_err(|e| e.to_string())?;
        let r = self
            .wait_reply(t, Duration::from_secs(10))
            .ok_or_else(|| format!("no reply to createStream: {:?}", self.messages()))?;
        let sid = r
            .values()
            .get(3)
            .and_then(Amf::as_num)
            .ok_or_else(|| format!("createStream result without a stream id: {r:?}"))?;
        Ok(sid as u32)
    }

    pub fn send_play(&mut self, sid: u32, name: &str) -> io::Result<()> {
        self.command(
            sid,
            "play",
            &[Amf::Null, Amf::str(name), Amf::Number(-2000.0)],
        )
        .map(|_| ())
    }

    pub fn send_publish(&mut self, sid: u32, name: &str) -> io::Result<()> {
        self.command(
            sid,
            "publish",
            &[Amf::Null, Amf::str(name), Amf::str("live")],
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
        let csid = csid & 0x3f;
        let mut m = vec![csid];
        let ts = timestamp.min(0x00ff_fffe);
        m.extend_from_slice(&ts.to_be_bytes()[1..]);
        m.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
        m.push(type_id);
        m.extend_from_slice(&stream_id.to_le_bytes());
        for (i, part) in payload.chunks(65536).enumerate() {
            if i > 0 {
                m.push(0xc0 | csid);
            }
            m.extend_from_slice(part);
        }
        self.stream.write_all(&m)
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

struct ChunkState {
    timestamp_ext: bool,
    len: usize,
    type_id: u8,
    stream_id: u32,
    buf: Vec<u8>,
}

fn rtmp_reader(mut s: TcpStream, inbox: Arc<(Mutex<RtmpInbox>, Condvar)>) {
    let result = rtmp_read_loop(&mut s, &inbox);
    let (lock, cv) = &*inbox;
    let mut g = lock.lock().expect("inbox lock");
    g.closed_at = Some(Instant::now());
    g.error = result.err().map(|e| e.to_string());
    cv.notify_all();
}

fn rtmp_read_loop(s: &mut TcpStream, inbox: &Arc<(Mutex<RtmpInbox>, Condvar)>) -> io::Result<()> {
    let mut chunk_size = 128usize;
    let mut states: std::collections::HashMap<u32, ChunkState> = Default::default();
    let mut u = |n: usize| -> io::Result<Vec<u8>> {
        while inbox.0.lock().expect("inbox lock").paused {
            thread::sleep(Duration::from_millis(50));
        }
        let mut b = vec![0u8; n];
        s.read_exact(&mut b)?;
        Ok(b)
    };
    loop {
        let b0 = u(1)?[0];
        let fmt = b0 >> 6;
        let csid = match b0 & 0x3f {
            0 => 64 + u32::from(u(1)?[0]),
            1 => {
                let b = u(2)?;
                64 + u32::from(b[0]) + 256 * u32::from(b[1])
            }
            c => u32::from(c),
        };
        let st = states.entry(csid).or_insert(ChunkState {
            timestamp_ext: false,
            len: 0,
            type_id: 0,
            stream_id: 0,
            buf: Vec::new(),
        });
        let be24 = |b: &[u8]| (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        match fmt {
            0 => {
                let h = u(11)?;
                st.timestamp_ext = be24(&h[0..3]) == 0xff_ffff;
                st.len = be24(&h[3..6]) as usize;
                st.type_id = h[6];
                st.stream_id = u32::from_le_bytes([h[7], h[8], h[9], h[10]]);
            }
            1 => {
                let h = u(7)?;
                st.timestamp_ext = be24(&h[0..3]) == 0xff_ffff;
                st.len = be24(&h[3..6]) as usize;
                st.type_id = h[6];
            }
            2 => {
                let h = u(3)?;
                st.timestamp_ext = be24(&h[0..3]) == 0xff_ffff;
            }
            _ => {}
        }
        if st.timestamp_ext {
            u(4)?;
        }
        let want = (st.len - st.buf.len().min(st.len)).min(chunk_size);
        let part = u(want)?;
        st.buf.extend_from_slice(&part);
        if st.buf.len() >= st.len {
            let payload = std::mem::take(&mut st.buf);
            if st.type_id == 1 && payload.len() >= 4 {
                chunk_size = (u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]])
                    & 0x7fff_ffff) as usize;
            }
            let msg = RtmpMsg {
                at: Instant::now(),
                type_id: st.type_id,
                stream_id: st.stream_id,
                payload,
            };
            let (lock, cv) = &**inbox;
            lock.lock().expect("inbox lock").msgs.push(msg);
            cv.notify_all();
        }
    }
}
