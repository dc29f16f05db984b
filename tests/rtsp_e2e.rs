//! End-to-end tests of RTSP publish/play with HTTP Notify: the real `streamgate` binary with
//! `<rtsp>` enabled on a free port and its own RTP port range, a real HTTP business server
//! ([`streamgate_testkit::HookServer`]), real ffmpeg / ffprobe publishers and players over RTSP (TCP
//! interleaved and UDP), RTMP and HTTP-FLV, and a raw RTSP client to see exactly what the
//! server answers and when.

use std::collections::BTreeSet;
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use streamgate_testkit::*;

/// How long to wait for a callback that must come.
const HOOK_WAIT: Duration = Duration::from_secs(10);

// ------------------------------------------------------------------------------------------
// ffmpeg over RTSP

/// Publishes the synthetic H.264+AAC stream over RTSP (`transport` is `tcp` or `udp`).
fn publish_rtsp(url: &str, transport: &str, seconds: u32) -> Proc {
    let output = ["-f", "rtsp", "-rtsp_transport", transport, url];
    let mut cmd = publisher_command_to("ffmpeg", seconds, TESTSRC, 25, &output);
    Proc::spawn(&format!("publish {url} ({transport})"), &mut cmd)
}

/// Starts a player decoding `seconds` of video from `url` over RTSP (framemd5 on stdout).
fn spawn_rtsp_player(url: &str, transport: &str, seconds: f64) -> Proc {
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-nostdin", "-loglevel", "error"])
        .args(["-rtsp_transport", transport, "-i", url])
        .args(["-t", &format!("{seconds}")])
        .args(["-map", "0:v:0", "-f", "framemd5", "-"]);
    Proc::spawn(&format!("play {url} ({transport})"), &mut cmd)
}

/// Plays `seconds` of `url` over RTSP, bounded by `timeout`.
fn play_rtsp(url: &str, transport: &str, seconds: f64, timeout: Duration) -> Played {
    finish_player(spawn_rtsp_player(url, transport, seconds), timeout)
}

/// The codec names ffprobe sees over RTSP, and its output.
fn probe_rtsp(url: &str, transport: &str) -> (BTreeSet<String>, Output) {
    let out = ffprobe(
        url,
        &[
            "-rtsp_transport",
            transport,
            "-show_entries",
            "stream=codec_name",
            "-of",
            "csv=p=0",
        ],
        secs(20.0),
    );
    let set = out
        .stdout
        .lines()
        .map(|l| l.trim().trim_end_matches(',').to_string())
        .filter(|l| !l.is_empty())
        .collect();
    (set, out)
}

fn assert_h264_aac(codecs: &BTreeSet<String>, what: &str, out: &Output) {
    assert!(
        codecs.contains("h264") && codecs.contains("aac"),
        "ffprobe over {what} sees h264 and aac, saw {codecs:?}: {}",
        out.text()
    );
}

/// `#dimensions 0: WxH` of a framemd5 output.
fn framemd5_dimensions(stdout: &str) -> Option<(u32, u32)> {
    let line = stdout.lines().find(|l| l.starts_with("#dimensions 0:"))?;
    let (w, h) = line.split(':').nth(1)?.trim().split_once('x')?;
    Some((w.trim().parse().ok()?, h.trim().parse().ok()?))
}

// ------------------------------------------------------------------------------------------
// a raw RTSP client

/// One response of the server.
#[derive(Debug, Clone)]
struct Resp {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<String> {
        header_of(&self.head, name)
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn cseq(&self) -> Option<u32> {
        self.header("cseq").and_then(|v| v.parse().ok())
    }

    /// The session id of a SETUP answer (without `;timeout=`).
    fn session(&self) -> Option<String> {
        self.header("session")
            .map(|s| s.split(';').next().unwrap_or("").trim().to_string())
    }
}

fn header_of(head: &str, name: &str) -> Option<String> {
    head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_owned())
    })
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A bare RTSP/1.0 client on one TCP connection; interleaved `$` frames are counted and
/// skipped while it looks for responses.
struct RawRtsp {
    s: TcpStream,
    buf: Vec<u8>,
    cseq: u32,
    closed: bool,
    /// When the first byte from the server arrived.
    first_byte_at: Option<Instant>,
    /// Interleaved frames received, by channel.
    frames: Vec<u8>,
    /// The payloads of the interleaved frames received, joined.
    frame_bytes: Vec<u8>,
}

impl RawRtsp {
    fn open(port: u16) -> RawRtsp {
        RawRtsp::over(connect(port).expect("connect to the RTSP port"))
    }

    /// A client over an established connection.
    fn over(s: TcpStream) -> RawRtsp {
        s.set_read_timeout(Some(Duration::from_millis(50)))
            .expect("read timeout");
        s.set_nodelay(true).expect("nodelay");
        RawRtsp {
            s,
            buf: Vec::new(),
            cseq: 0,
            closed: false,
            first_byte_at: None,
            frames: Vec::new(),
            frame_bytes: Vec::new(),
        }
    }

    /// Like [`Self::open`], from a local address of our choosing (another loopback address is
    /// another client host to the server).
    fn open_from(local: std::net::Ipv4Addr, port: u16) -> RawRtsp {
        RawRtsp::over(connect_from(local.octets(), port).expect("connect to the RTSP port"))
    }

    /// Sends raw bytes (errors mean the server hung up; they are not the test's concern here).
    fn send_raw(&mut self, bytes: &[u8]) -> bool {
        self.s.write_all(bytes).is_ok()
    }

    /// Sends a request with the next CSeq (and a Content-Length when there is a body).
    fn send(&mut self, method: &str, url: &str, headers: &[(&str, &str)], body: &str) -> u32 {
        self.cseq += 1;
        let mut req = format!("{method} {url} RTSP/1.0\r\nCSeq: {}\r\n", self.cseq);
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        if !body.is_empty() {
            req.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        req.push_str("\r\n");
        req.push_str(body);
        self.send_raw(req.as_bytes());
        self.cseq
    }

    /// One read (up to 50 ms); marks the connection closed on EOF or a hard error.
    fn fill(&mut self) {
        let mut chunk = [0u8; 16384];
        match self.s.read(&mut chunk) {
            Ok(0) => self.closed = true,
            Ok(n) => {
                self.first_byte_at.get_or_insert_with(Instant::now);
                self.buf.extend_from_slice(&chunk[..n]);
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => self.closed = true,
        }
    }

    /// A whole response from the buffer, skipping interleaved frames.
    fn parse(&mut self) -> Option<Resp> {
        loop {
            if self.buf.first() == Some(&b'$') {
                if self.buf.len() < 4 {
                    return None;
                }
                let n = usize::from(u16::from_be_bytes([self.buf[2], self.buf[3]]));
                if self.buf.len() < 4 + n {
                    return None;
                }
                self.frames.push(self.buf[1]);
                self.frame_bytes.extend_from_slice(&self.buf[4..4 + n]);
                self.buf.drain(..4 + n);
                continue;
            }
            let i = find(&self.buf, b"\r\n\r\n")?;
            let head = String::from_utf8_lossy(&self.buf[..i]).into_owned();
            let len: usize = header_of(&head, "content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            if self.buf.len() < i + 4 + len {
                return None;
            }
            let body = self.buf[i + 4..i + 4 + len].to_vec();
            self.buf.drain(..i + 4 + len);
            let status = head
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            return Some(Resp { status, head, body });
        }
    }

    /// The next response, or None when the server closes or `timeout` passes first.
    fn response(&mut self, timeout: Duration) -> Option<Resp> {
        let end = Instant::now() + timeout;
        loop {
            if let Some(r) = self.parse() {
                return Some(r);
            }
            if self.closed || Instant::now() >= end {
                return None;
            }
            self.fill();
        }
    }

    /// Sends a request and waits up to 10 s for its response (panics without one).
    fn request(&mut self, method: &str, url: &str, headers: &[(&str, &str)]) -> Resp {
        let cseq = self.send(method, url, headers, "");
        let r = self.response(secs(10.0)).unwrap_or_else(|| {
            panic!(
                "no response to {method} {url} (closed: {}, got {:?})",
                self.closed,
                String::from_utf8_lossy(&self.buf)
            )
        });
        assert_eq!(r.cseq(), Some(cseq), "CSeq echoed: {}", r.head);
        r
    }

    /// Whether the server closes the connection within `timeout` (reading what it sends).
    fn wait_closed(&mut self, timeout: Duration) -> bool {
        let end = Instant::now() + timeout;
        while !self.closed && Instant::now() < end {
            self.fill();
            self.parse();
        }
        self.closed
    }

    /// Waits until `n` interleaved frames have arrived.
    fn wait_frames(&mut self, n: usize, timeout: Duration) -> bool {
        let end = Instant::now() + timeout;
        loop {
            while self.parse().is_some() {}
            if self.frames.len() >= n {
                return true;
            }
            if self.closed || Instant::now() >= end {
                return false;
            }
            self.fill();
        }
    }
}

/// The control URLs of the media of a DESCRIBE answer, in SDP order.
fn track_urls(describe: &Resp, request_url: &str) -> Vec<String> {
    let base = describe
        .header("content-base")
        .unwrap_or_else(|| request_url.to_string());
    let mut controls: Vec<Option<String>> = Vec::new();
    for line in describe.text().lines() {
        let line = line.trim();
        if line.starts_with("m=") {
            controls.push(None);
        } else if let (Some(last), Some(c)) = (controls.last_mut(), line.strip_prefix("a=control:"))
        {
            *last = Some(c.trim().to_string());
        }
    }
    controls
        .into_iter()
        .map(|c| match c.as_deref() {
            Some(c) if c.starts_with("rtsp://") => c.to_string(),
            Some("*") | None => base.clone(),
            Some(c) => format!("{}/{}", base.trim_end_matches('/'), c),
        })
        .collect()
}

/// DESCRIBE `url` on a fresh connection.
fn describe(port: u16, url: &str) -> (RawRtsp, Resp) {
    let mut c = RawRtsp::open(port);
    let r = c.request("DESCRIBE", url, &[("Accept", "application/sdp")]);
    (c, r)
}

/// Waits until `path` is live over RTSP: a DESCRIBE of `{path}?probe=live` answers 200 with
/// an SDP. (Those probes are players too; their callbacks carry `probe=` in `url`.)
fn wait_live(srv: &Server, path: &str) -> Resp {
    let port = srv.rtsp_port.expect("rtsp enabled");
    let url = srv.rtsp_url(&format!("{path}?probe=live"));
    let mut last = None;
    let live = poll(secs(15.0), || {
        let mut c = RawRtsp::open(port);
        c.send("DESCRIBE", &url, &[("Accept", "application/sdp")], "");
        let r = c.response(secs(5.0));
        let ok = r.as_ref().is_some_and(|r| r.status == 200);
        last = r;
        if ok {
            last.clone()
        } else {
            thread::sleep(Duration::from_millis(150));
            None
        }
    });
    live.unwrap_or_else(|| {
        panic!(
            "{path} never went live over RTSP; last DESCRIBE answer {last:?}\n{}",
            srv.log_tail(40)
        )
    })
}

fn is_probe(r: &Record) -> bool {
    r.get("url").is_some_and(|u| u.contains("probe="))
}

/// The on_connect of the connection of `call` (same clientid), which must be unique.
fn connect_of(hook: &HookServer, call: &Record) -> Record {
    let conns = hook.find(|r| r.call() == "connect" && r.clientid() == call.clientid());
    assert_eq!(
        conns.len(),
        1,
        "exactly one on_connect for the connection of {call:?}:\n{}",
        hook.dump()
    );
    conns[0].clone()
}

/// Waits for the one on_done of `call`, checks it repeats its fields, then that no second
/// one follows within `settle`.
fn assert_one_done(hook: &HookServer, call: &Record, what: &str, settle: Duration) -> Record {
    let done = hook
        .wait_for(|r| is_done_of(r, call.clientid()), HOOK_WAIT)
        .unwrap_or_else(|| panic!("no on_done for {what} {call:?}:\n{}", hook.dump()));
    assert_done_matches(&done, call);
    assert!(done.at >= call.at, "on_done after its call");
    thread::sleep(settle);
    assert_eq!(
        hook.count(|r| is_done_of(r, call.clientid())),
        1,
        "exactly one on_done for {what}:\n{}",
        hook.dump()
    );
    done
}

// ------------------------------------------------------------------------------------------
// 1

#[test]
fn rtsp_publish_and_play_over_tcp_with_every_hook_field() {
    let hook = HookServer::start();
    let srv = Server::start(&Config::new().rtsp_hooks(&hook.url("/rtsp"), ""));
    let pub_url = srv.rtsp_url("live/cam2?token=abc");

    let mut publisher = publish_rtsp(&pub_url, "tcp", 20);
    let pubrec = hook
        .wait_call("publish", "cam2", HOOK_WAIT)
        .unwrap_or_else(|| panic!("on_publish for cam2:\n{}", hook.dump()));
    wait_live(&srv, "live/cam2");

    let (codecs, out) = probe_rtsp(&srv.rtsp_url("live/cam2"), "tcp");
    assert_h264_aac(&codecs, "RTSP/TCP", &out);

    let play_url = srv.rtsp_url("live/cam2?sig=1");
    let played = play_rtsp(&play_url, "tcp", 2.0, secs(20.0));
    assert!(
        played.frames >= 40,
        "decoded {} frames over RTSP/TCP: {:?}",
        played.frames,
        played.out
    );
    assert_eq!(
        framemd5_dimensions(&played.out.stdout),
        Some((640, 360)),
        "the picture size survives"
    );
    assert!(publisher.running(), "the publisher still runs");

    // on_connect and on_publish of the publisher: the request URL with its query.
    assert_post(&pubrec, "/rtsp/publish");
    assert_fields(&pubrec, "rtsp", "publish", "cam2", &pub_url, "");
    let pub_connect = connect_of(&hook, &pubrec);
    assert_post(&pub_connect, "/rtsp/connect");
    assert_fields(&pub_connect, "rtsp", "connect", "", &pub_url, "");
    assert!(pub_connect.seq < pubrec.seq, "connect comes before publish");

    // on_connect and on_play of the player.
    let playrec = hook
        .find(|r| r.call() == "play" && r.get("url") == Some(play_url.as_str()))
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("on_play with url {play_url}:\n{}", hook.dump()));
    assert_post(&playrec, "/rtsp/play");
    assert_fields(&playrec, "rtsp", "play", "cam2", &play_url, "");
    let play_connect = connect_of(&hook, &playrec);
    assert_post(&play_connect, "/rtsp/connect");
    assert_fields(&play_connect, "rtsp", "connect", "", &play_url, "");
    assert!(play_connect.seq < playrec.seq, "connect comes before play");
    assert_ne!(
        playrec.clientid(),
        pubrec.clientid(),
        "two connections, two clientids"
    );

    // The player ended (TEARDOWN): one on_done repeating its fields, with the POST form.
    let done = assert_one_done(&hook, &playrec, "the player", secs(1.0));
    assert_post(&done, "/rtsp/done");

    // Every connection got its own clientid; the publisher has no on_done while publishing.
    let connects = hook.find(|r| r.call() == "connect");
    let ids: BTreeSet<&str> = connects.iter().map(|r| r.clientid()).collect();
    assert_eq!(
        ids.len(),
        connects.len(),
        "clientids are unique:\n{}",
        hook.dump()
    );
    assert!(publisher.running(), "the publisher still runs");
    assert_eq!(
        hook.count(|r| is_done_of(r, pubrec.clientid())),
        0,
        "no on_done for a publisher that is still publishing:\n{}",
        hook.dump()
    );
    publisher.kill();
}

// ------------------------------------------------------------------------------------------
// 2

#[test]
fn rtsp_publish_and_play_over_udp_with_server_ports_from_the_range() {
    let hook = HookServer::start();
    let cfg = Config::new().rtsp_hooks(&hook.url("/rtsp"), "");
    let (min, max) = cfg
        .rtsp
        .as_ref()
        .map(|r| (r.rtp_port_min, r.rtp_port_max))
        .expect("rtsp section");
    let srv = Server::start(&cfg);
    let port = srv.rtsp_port.expect("rtsp");

    let mut publisher = publish_rtsp(&srv.rtsp_url("live/cam2u"), "udp", 20);
    hook.wait_call("publish", "cam2u", HOOK_WAIT)
        .unwrap_or_else(|| panic!("on_publish for cam2u:\n{}", hook.dump()));
    wait_live(&srv, "live/cam2u");

    let played = play_rtsp(&srv.rtsp_url("live/cam2u"), "udp", 2.0, secs(20.0));
    assert!(
        played.frames >= 40,
        "decoded {} frames over RTSP/UDP from a UDP publisher: {:?}",
        played.frames,
        played.out
    );
    assert!(publisher.running(), "the UDP publisher still runs");

    // A raw UDP player: the server's port pair comes from the configured range, and RTP
    // arrives at our client port from it.
    let (rtp, client_port) = (0..50)
        .find_map(|i| {
            let p = 30000 + 2 * ((u32::from(port) * 7 + i * 131) % 4000) as u16;
            let a = UdpSocket::bind(("127.0.0.1", p)).ok()?;
            let b = UdpSocket::bind(("127.0.0.1", p + 1)).ok()?;
            Some(((a, b), p))
        })
        .expect("a free even/odd UDP pair for the raw client");
    let url = srv.rtsp_url("live/cam2u");
    let (mut c, d) = describe(port, &url);
    assert_eq!(d.status, 200, "{}", d.head);
    let tracks = track_urls(&d, &url);
    assert_eq!(tracks.len(), 2, "two media in the SDP:\n{}", d.text());
    let transport = format!(
        "RTP/AVP;unicast;client_port={}-{}",
        client_port,
        client_port + 1
    );
    let setup = c.request("SETUP", &tracks[0], &[("Transport", &transport)]);
    assert_eq!(setup.status, 200, "UDP SETUP: {}", setup.head);
    let t = setup.header("transport").unwrap_or_default();
    let server_port = t
        .split(';')
        .find_map(|p| p.trim().strip_prefix("server_port="))
        .and_then(|p| p.split_once('-'))
        .and_then(|(a, b)| Some((a.parse::<u16>().ok()?, b.parse::<u16>().ok()?)))
        .unwrap_or_else(|| panic!("server_port in the SETUP answer: {}", setup.head));
    assert!(
        server_port.0 % 2 == 0
            && server_port.1 == server_port.0 + 1
            && (min..=max).contains(&server_port.0)
            && server_port.1 <= max,
        "server_port {server_port:?} is an even/odd pair inside {min}-{max}: {}",
        setup.head
    );
    let session = setup.session().expect("Session in the SETUP answer");
    let play = c.request(
        "PLAY",
        &url,
        &[("Session", &session), ("Range", "npt=0.000-")],
    );
    assert_eq!(play.status, 200, "PLAY: {}", play.head);
    rtp.0
        .set_read_timeout(Some(secs(5.0)))
        .expect("udp timeout");
    let mut pkt = [0u8; 2048];
    let (n, from) = rtp
        .0
        .recv_from(&mut pkt)
        .expect("RTP arrives at the raw client's UDP port");
    assert!(
        n >= 12 && pkt[0] >> 6 == 2,
        "an RTP version 2 packet: {:?}",
        &pkt[..n.min(16)]
    );
    assert_eq!(
        from.port(),
        server_port.0,
        "RTP comes from the server_port it announced"
    );
    let teardown = c.request("TEARDOWN", &url, &[("Session", &session)]);
    assert_eq!(teardown.status, 200, "TEARDOWN: {}", teardown.head);
    publisher.kill();
}

// ------------------------------------------------------------------------------------------
// 3

#[test]
fn rtsp_in_plays_over_rtmp_and_httpflv() {
    let hook = HookServer::start();
    let srv = Server::start(&Config::new().httpflv().rtsp_hooks(&hook.url("/rtsp"), ""));
    let mut publisher = publish_rtsp(&srv.rtsp_url("live/cam3"), "tcp", 20);
    hook.wait_call("publish", "cam3", HOOK_WAIT)
        .unwrap_or_else(|| panic!("on_publish for cam3:\n{}", hook.dump()));
    wait_live(&srv, "live/cam3");

    // RTMP and HTTP-FLV players at once.
    let rtmp = spawn_player(&srv.url("live/cam3"), 2.0);
    let flv = spawn_player(&srv.flv_url("live/cam3.flv"), 2.0);
    let rtmp = finish_player(rtmp, secs(20.0));
    let flv = finish_player(flv, secs(20.0));
    assert!(
        rtmp.frames >= 40,
        "decoded {} frames over RTMP from an RTSP publisher: {:?}",
        rtmp.frames,
        rtmp.out
    );
    assert!(
        flv.frames >= 40,
        "decoded {} frames over HTTP-FLV from an RTSP publisher: {:?}",
        flv.frames,
        flv.out
    );
    for p in [&rtmp, &flv] {
        assert_eq!(
            framemd5_dimensions(&p.out.stdout),
            Some((640, 360)),
            "{:?}",
            p.out.stdout.lines().take(8).collect::<Vec<_>>()
        );
    }
    let (codecs, out) = probe_codecs_out(&srv.url("live/cam3"));
    assert_h264_aac(&codecs, "RTMP", &out);
    let (codecs, out) = probe_codecs_out(&srv.flv_url("live/cam3.flv"));
    assert_h264_aac(&codecs, "HTTP-FLV", &out);
    assert!(publisher.running(), "the RTSP publisher still runs");
    publisher.kill();
}

// ------------------------------------------------------------------------------------------
// 4

#[test]
fn rtmp_in_plays_over_rtsp_tcp_and_udp() {
    let hook = HookServer::start();
    let srv = Server::start(&Config::new().rtsp_hooks(&hook.url("/rtsp"), ""));
    let mut publisher = publish(&srv.url("live/cam4"), 20);
    let sdp = wait_live(&srv, "live/cam4");
    let text = sdp.text();
    assert!(
        text.contains("m=video") && text.contains("m=audio"),
        "the SDP of an RTMP stream has video and audio:\n{text}"
    );
    assert!(
        text.contains("H264/90000") && text.to_lowercase().contains("mpeg4-generic/44100"),
        "H.264 at 90 kHz and AAC (mpeg4-generic) at 44.1 kHz:\n{text}"
    );

    let url = srv.rtsp_url("live/cam4");
    let tcp = spawn_rtsp_player(&url, "tcp", 2.0);
    let udp = spawn_rtsp_player(&url, "udp", 2.0);
    let tcp = finish_player(tcp, secs(20.0));
    let udp = finish_player(udp, secs(20.0));
    for (p, what) in [(&tcp, "TCP"), (&udp, "UDP")] {
        assert!(
            p.frames >= 40,
            "decoded {} frames over RTSP/{what} from an RTMP publisher: {:?}",
            p.frames,
            p.out
        );
        assert_eq!(framemd5_dimensions(&p.out.stdout), Some((640, 360)));
    }
    let (codecs, out) = probe_rtsp(&url, "tcp");
    assert_h264_aac(&codecs, "RTSP/TCP", &out);
    let (codecs, out) = probe_rtsp(&url, "udp");
    assert_h264_aac(&codecs, "RTSP/UDP", &out);
    assert!(publisher.running(), "the RTMP publisher still runs");
    publisher.kill();
}

/// RTSP players of one worker share each frame's packetization and write their own RTP
/// headers over it: several players that joined at different moments (so with different
/// sequence numbers, timestamps and SSRCs) each decode the stream over TCP without a gap in
/// their sequence numbers, which FFmpeg reports as "RTP: missed N packets".
#[test]
fn rtsp_players_on_one_worker_share_packets_under_their_own_headers() {
    let srv = Server::start(&Config::new().rtsp().workers(1));
    let mut publisher = publish(&srv.url("live/shared"), 20);
    wait_live(&srv, "live/shared");
    let url = srv.rtsp_url("live/shared");
    // Two players that start at the same keyframe are numbered alike: the same SSRC, and the
    // same first sequence number and RTP time (they send the same bytes). A keyframe may
    // come between two PLAYs: one pair of three is asked to.
    let port = srv.rtsp_port.expect("rtsp enabled");
    let start = |raw: &mut RawRtsp| {
        let d = raw.request("DESCRIBE", &url, &[("Accept", "application/sdp")]);
        let tracks = track_urls(&d, &url);
        let interleaved = [("Transport", "RTP/AVP/TCP;unicast;interleaved=0-1")];
        let setup = raw.request("SETUP", &tracks[0], &interleaved);
        let session = setup.session().expect("a session");
        let play = raw.request("PLAY", &url, &[("Session", &session)]);
        assert_eq!(play.status, 200, "PLAY: {}", play.head);
        (setup.header("transport"), play.header("rtp-info"))
    };
    let pairs: Vec<_> = (0..3)
        .map(|_| {
            let (mut a, mut b) = (RawRtsp::open(port), RawRtsp::open(port));
            (start(&mut a), start(&mut b))
        })
        .collect();
    assert!(
        pairs.iter().any(|(a, b)| a == b && a.1.is_some()),
        "no pair numbered alike: {pairs:?}"
    );
    let players: Vec<Proc> = (0..3)
        .map(|i| {
            // The last over UDP: the datagrams of the players numbered as it is.
            let transport = if i == 2 { "udp" } else { "tcp" };
            let mut cmd = Command::new("ffmpeg");
            cmd.args(["-hide_banner", "-nostdin", "-loglevel", "warning"])
                .args(["-rtsp_transport", transport, "-i", &url])
                .args(["-t", "3", "-map", "0:v:0", "-map", "0:a:0"])
                .args(["-f", "framemd5", "-"]);
            let player = Proc::spawn(&format!("play {url} ({transport}, player {i})"), &mut cmd);
            thread::sleep(Duration::from_millis(400));
            player
        })
        .collect();
    for (i, player) in players.into_iter().enumerate() {
        let played = finish_player(player, secs(30.0));
        let frames = |stream: &str| {
            let lines = played.out.stdout.lines();
            lines.filter(|l| l.starts_with(stream)).count()
        };
        let (video, audio) = (frames("0,"), frames("1,"));
        assert!(
            video >= 50 && audio >= 50,
            "player {i} decoded {video} video and {audio} audio frames: {:?}",
            played.out
        );
        assert!(
            !played.out.stderr.contains("missed"),
            "player {i} saw a gap in its RTP sequence numbers: {}",
            played.out.stderr
        );
    }
    assert!(publisher.running(), "the publisher still runs");
    publisher.kill();
}

// ------------------------------------------------------------------------------------------
// 5

#[test]
fn deny_publish_and_play_with_statuses_and_nothing_before_the_play_hook() {
    let hook = HookServer::start();
    let delay = secs(2.0);
    hook.on_field("/rtsp/publish", "name", "cam5", Reply::Status(403));
    let with_token = |token: &'static str, reply: Reply| {
        move |r: &Record| {
            (r.path.starts_with("/rtsp/play")
                && r.get("url")
                    .is_some_and(|u| u.ends_with(&format!("token={token}"))))
            .then_some(reply)
        }
    };
    hook.rule(with_token("bad", Reply::Status(403)));
    hook.rule(with_token("member", Reply::Status(401)));
    hook.rule(with_token("slow", Reply::Delay(delay, 200)));
    let mut srv = Server::start(&Config::new().rtsp_hooks(&hook.url("/rtsp"), ""));
    let port = srv.rtsp_port.expect("rtsp");

    // A live stream (published over RTMP, which has no hooks here).
    let mut publisher = publish(&srv.url("live/open"), 25);

    // Publish refused at ANNOUNCE: ffmpeg fails, no stream, no on_done.
    let pub_url = srv.rtsp_url("live/cam5?token=abc");
    let denied = publish_rtsp(&pub_url, "tcp", 15).finish(secs(8.0));
    assert!(
        denied.failed(),
        "a refused RTSP publisher fails at once: {denied:?}"
    );
    assert!(
        denied.stderr.contains("403"),
        "ffmpeg reports the 403: {}",
        denied.stderr
    );
    let pubrec = hook
        .wait_call("publish", "cam5", HOOK_WAIT)
        .expect("on_publish was asked");
    assert_eq!(pubrec.reply, Reply::Status(403));
    assert_fields(&pubrec, "rtsp", "publish", "cam5", &pub_url, "");
    let (_, missing) = describe(port, &srv.rtsp_url("live/cam5"));
    assert_eq!(
        missing.status, 404,
        "a refused publish creates no stream: {}",
        missing.head
    );
    let missing_play = hook
        .wait_for(|r| r.call() == "play" && r.name() == "cam5", HOOK_WAIT)
        .expect("on_play comes before the 404");
    assert!(
        hook.wait_for(|r| is_done_of(r, missing_play.clientid()), HOOK_WAIT)
            .is_some(),
        "the 404 player gets its on_done:\n{}",
        hook.dump()
    );

    wait_live(&srv, "live/open");

    // Play refused at DESCRIBE: ffmpeg fails with the 403.
    let bad_url = srv.rtsp_url("live/open?token=bad");
    let played = play_rtsp(&bad_url, "tcp", 2.0, secs(10.0));
    assert!(
        played.out.failed() && played.frames == 0,
        "a refused player fails without frames: {:?}",
        played.out
    );
    assert!(
        played.out.stderr.contains("403"),
        "ffmpeg reports the 403: {}",
        played.out.stderr
    );
    let bad = hook
        .wait_for(
            |r| r.call() == "play" && r.get("url") == Some(bad_url.as_str()),
            HOOK_WAIT,
        )
        .expect("on_play of the refused player");
    assert_fields(&bad, "rtsp", "play", "open", &bad_url, "");
    assert_eq!(bad.reply, Reply::Status(403));

    // The same refusals seen raw: the status line, the CSeq, no SDP, then the close.
    for (token, status) in [("bad", 403u16), ("member", 401)] {
        let url = srv.rtsp_url(&format!("live/open?token={token}"));
        let (mut c, r) = describe(port, &url);
        assert_eq!(r.status, status, "DESCRIBE {url}: {}", r.head);
        assert!(
            r.head.starts_with(&format!("RTSP/1.0 {status} ")),
            "status line: {}",
            r.head
        );
        assert!(
            !r.text().contains("m=") && r.header("content-type").is_none_or(|t| !t.contains("sdp")),
            "no SDP to a refused player: {r:?}"
        );
        assert!(
            c.wait_closed(secs(5.0)),
            "the server closes after refusing {url}"
        );
    }

    // Nothing is revealed before on_play answers: the DESCRIBE answer comes after the delay.
    let slow_url = srv.rtsp_url("live/open?token=slow");
    let mut c = RawRtsp::open(port);
    let cseq = c.send("DESCRIBE", &slow_url, &[("Accept", "application/sdp")], "");
    let slow = hook
        .wait_for(
            |r| r.call() == "play" && r.get("url") == Some(slow_url.as_str()),
            HOOK_WAIT,
        )
        .expect("on_play of the slow-hook player");
    let quiet_until = slow.at + delay;
    while Instant::now() < quiet_until - Duration::from_millis(100) && !c.closed {
        c.fill();
    }
    assert!(
        c.first_byte_at.is_none(),
        "no byte before on_play answers, got {:?}",
        String::from_utf8_lossy(&c.buf)
    );
    let r = c
        .response(secs(10.0))
        .expect("the DESCRIBE is answered once the hook allows it");
    assert_eq!(r.status, 200, "{}", r.head);
    assert_eq!(r.cseq(), Some(cseq));
    assert!(r.text().contains("m=video"), "the SDP: {}", r.text());
    let first = c.first_byte_at.expect("bytes arrived");
    assert!(
        first >= quiet_until,
        "the first byte came {:?} before the hook's answer",
        quiet_until.saturating_duration_since(first)
    );

    thread::sleep(secs(0.5));
    assert_eq!(
        hook.count(|r| is_done_of(r, pubrec.clientid()) || is_done_of(r, bad.clientid())),
        0,
        "no on_done for a refused publish or play:\n{}",
        hook.dump()
    );
    assert!(srv.alive(), "the server is alive");
    assert!(publisher.running(), "the RTMP publisher still runs");
    publisher.kill();
}

// ------------------------------------------------------------------------------------------
// 6

#[test]
fn on_done_once_on_teardown_of_player_and_publisher() {
    let hook = HookServer::start();
    let srv = Server::start(&Config::new().rtsp_hooks(&hook.url("/rtsp"), ""));

    let mut publisher = publish_rtsp(&srv.rtsp_url("live/cam6"), "tcp", 9);
    let pubrec = hook
        .wait_call("publish", "cam6", HOOK_WAIT)
        .expect("on_publish");
    wait_live(&srv, "live/cam6");
    let played = play_rtsp(&srv.rtsp_url("live/cam6"), "tcp", 1.5, secs(15.0));
    assert!(
        played.frames > 0,
        "the player decodes frames: {:?}",
        played.out
    );
    assert!(
        played.out.success(),
        "the player ends normally: {:?}",
        played.out
    );
    let playrec = hook
        .find(|r| r.call() == "play" && r.name() == "cam6" && !is_probe(r))
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("on_play of the player:\n{}", hook.dump()));
    let pdone = hook
        .wait_for(|r| is_done_of(r, playrec.clientid()), HOOK_WAIT)
        .unwrap_or_else(|| panic!("on_done after the player's TEARDOWN:\n{}", hook.dump()));
    assert_done_matches(&pdone, &playrec);
    if publisher.running() {
        assert_eq!(
            hook.count(|r| is_done_of(r, pubrec.clientid())),
            0,
            "the player's TEARDOWN ends only the player's session:\n{}",
            hook.dump()
        );
    }

    // A raw player: its TEARDOWN (answered 200) ends the session while this side still holds
    // the connection open; the close that follows sends no second on_done.
    let raw_url = srv.rtsp_url("live/cam6?who=raw");
    let mut raw = RawRtsp::open(srv.rtsp_port.expect("rtsp"));
    let d = raw.request("DESCRIBE", &raw_url, &[("Accept", "application/sdp")]);
    assert_eq!(d.status, 200, "{}", d.head);
    let tracks = track_urls(&d, &raw_url);
    let setup = raw.request(
        "SETUP",
        &tracks[0],
        &[("Transport", "RTP/AVP/TCP;unicast;interleaved=0-1")],
    );
    assert_eq!(setup.status, 200, "{}", setup.head);
    let session = setup.session().expect("Session");
    let play = raw.request("PLAY", &raw_url, &[("Session", &session)]);
    assert_eq!(play.status, 200, "{}", play.head);
    assert!(
        raw.wait_frames(5, secs(5.0)),
        "interleaved RTP flows: {:?}",
        raw.frames
    );
    let rawrec = hook
        .find(|r| r.call() == "play" && r.get("url") == Some(raw_url.as_str()))
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("on_play of the raw player:\n{}", hook.dump()));
    let teardown = raw.request("TEARDOWN", &raw_url, &[("Session", &session)]);
    assert_eq!(teardown.status, 200, "TEARDOWN: {}", teardown.head);
    let rdone = hook
        .wait_for(|r| is_done_of(r, rawrec.clientid()), HOOK_WAIT)
        .unwrap_or_else(|| {
            panic!(
                "on_done at TEARDOWN, connection still open:\n{}",
                hook.dump()
            )
        });
    assert_done_matches(&rdone, &rawrec);
    drop(raw);

    // The publisher's -t runs out: it sends TEARDOWN and closes.
    let st = publisher.wait_timeout(secs(15.0));
    assert!(
        st.is_some_and(|s| s.success()),
        "the publisher finishes its 9 s normally: {st:?} {}",
        publisher.stderr()
    );
    assert_one_done(&hook, &pubrec, "the publisher", secs(0.0));
    thread::sleep(secs(1.0));
    for (id, what) in [
        (pubrec.clientid(), "publisher"),
        (playrec.clientid(), "player"),
        (rawrec.clientid(), "raw player"),
    ] {
        assert_eq!(
            hook.count(|r| is_done_of(r, id)),
            1,
            "exactly one on_done for the {what}:\n{}",
            hook.dump()
        );
    }
    // After the end the stream is gone.
    let (_, r) = describe(srv.rtsp_port.expect("rtsp"), &srv.rtsp_url("live/cam6"));
    assert_eq!(
        r.status, 404,
        "no stream after the publisher's TEARDOWN: {}",
        r.head
    );
}

#[test]
fn on_done_once_on_kill_9_of_a_player_and_of_the_publisher() {
    let hook = HookServer::start();
    let srv = Server::start(&Config::new().rtsp_hooks(&hook.url("/rtsp"), ""));

    let mut publisher = publish_rtsp(&srv.rtsp_url("live/cam7"), "tcp", 30);
    let pubrec = hook
        .wait_call("publish", "cam7", HOOK_WAIT)
        .expect("on_publish");
    wait_live(&srv, "live/cam7");
    let play_rec = |who: &str| {
        let url = srv.rtsp_url(&format!("live/cam7?who={who}"));
        hook.wait_for(
            |r| r.call() == "play" && r.get("url") == Some(url.as_str()),
            HOOK_WAIT,
        )
        .unwrap_or_else(|| panic!("on_play of {who}:\n{}", hook.dump()))
    };
    let mut killed = spawn_rtsp_player(&srv.rtsp_url("live/cam7?who=killed"), "tcp", 30.0);
    let mut watching = spawn_rtsp_player(&srv.rtsp_url("live/cam7?who=watching"), "tcp", 30.0);
    let killed_rec = play_rec("killed");
    let watching_rec = play_rec("watching");
    thread::sleep(secs(1.5));
    assert!(killed.running(), "the player plays: {}", killed.stderr());
    assert!(
        watching.running(),
        "the player plays: {}",
        watching.stderr()
    );

    // kill -9 of a player: socket loss ends its session only.
    send_signal(killed.pid(), "KILL");
    killed.kill();
    assert_one_done(&hook, &killed_rec, "the killed player", secs(0.5));
    assert!(publisher.running(), "the publisher still runs");
    assert_eq!(
        hook.count(|r| is_done_of(r, pubrec.clientid()) || is_done_of(r, watching_rec.clientid())),
        0,
        "a player's kill ends only its own session:\n{}",
        hook.dump()
    );

    // kill -9 of the publisher: its on_done, and the stream ends under the watching player.
    let killed_at = Instant::now();
    send_signal(publisher.pid(), "KILL");
    publisher.kill();
    let pdone = hook
        .wait_for(|r| is_done_of(r, pubrec.clientid()), HOOK_WAIT)
        .unwrap_or_else(|| panic!("on_done for the killed publisher:\n{}", hook.dump()));
    assert!(pdone.at >= killed_at);
    let wdone = hook
        .wait_for(|r| is_done_of(r, watching_rec.clientid()), HOOK_WAIT)
        .unwrap_or_else(|| {
            panic!(
                "on_done for the player whose stream ended:\n{}",
                hook.dump()
            )
        });
    assert_done_matches(&pdone, &pubrec);
    assert_done_matches(&wdone, &watching_rec);
    let played = finish_player(watching, secs(10.0));
    assert!(
        !played.out.timed_out,
        "the player is ended when its stream ends: {:?}",
        played.out
    );
    assert!(played.frames > 0, "it had decoded frames: {:?}", played.out);
    thread::sleep(secs(1.0));
    for (id, what) in [
        (pubrec.clientid(), "publisher"),
        (killed_rec.clientid(), "killed player"),
        (watching_rec.clientid(), "watching player"),
    ] {
        assert_eq!(
            hook.count(|r| is_done_of(r, id)),
            1,
            "exactly one on_done for the {what}:\n{}",
            hook.dump()
        );
    }
}

// ------------------------------------------------------------------------------------------
// 7

/// What a hostile connection got: a response status, a close, or nothing.
#[derive(Debug, PartialEq)]
enum Outcome {
    Status(u16),
    Closed,
    Silent,
}

fn outcome(c: &mut RawRtsp, timeout: Duration) -> Outcome {
    match c.response(timeout) {
        Some(r) => Outcome::Status(r.status),
        None if c.closed => Outcome::Closed,
        None => Outcome::Silent,
    }
}

#[test]
fn garbage_and_half_open_connections_do_not_disturb_a_stream() {
    let hook = HookServer::start();
    let mut srv = Server::start(&Config::new().rtsp_hooks(&hook.url("/rtsp"), ""));
    let port = srv.rtsp_port.expect("rtsp");
    let base = srv.rtsp_url("live/steady");

    let mut publisher = publish_rtsp(&base, "tcp", 25);
    let pubrec = hook
        .wait_call("publish", "steady", HOOK_WAIT)
        .expect("on_publish steady");
    let sdp = wait_live(&srv, "live/steady");
    let player = spawn_rtsp_player(&srv.rtsp_url("live/steady?who=long"), "tcp", 8.0);

    let mut rng = Rng::new(0x7275_7370_0042);
    let mut held: Vec<RawRtsp> = Vec::new();

    // Random bytes (not starting with '$'), each ending like a request head.
    let mut garbage: Vec<RawRtsp> = Vec::new();
    for _ in 0..20 {
        let mut c = RawRtsp::open(port);
        let n = 64 + (rng.next_u64() % 8192) as usize;
        let mut bytes = vec![0x16];
        bytes.extend(rng.bytes(n));
        bytes.extend_from_slice(b"\r\n\r\n");
        c.send_raw(&bytes);
        garbage.push(c);
    }

    // RTSP-shaped hostility that must be refused (4xx/5xx) or hung up on.
    let huge =
        format!("DESCRIBE {base} RTSP/1.0\r\nCSeq: 1\r\nContent-Length: 99999999999\r\n\r\nxx");
    let many_headers = format!(
        "OPTIONS {base} RTSP/1.0\r\nCSeq: 1\r\n{}\r\n",
        (0..400)
            .map(|i| format!("X-Filler-{i}: {}\r\n", "a".repeat(1000)))
            .collect::<String>()
    );
    let bad_sdp = "v=9\r\nm=nonsense\r\n\x01\x02garbage\r\n";
    let bad_announce = format!(
        "ANNOUNCE {} RTSP/1.0\r\nCSeq: 1\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{bad_sdp}",
        srv.rtsp_url("live/other"),
        bad_sdp.len()
    );
    let refused: Vec<(&str, String)> = vec![
        ("a request line without a version", "GARBAGE\r\n\r\n".into()),
        (
            "an unknown protocol version",
            format!("OPTIONS {base} RTSP/9.9\r\nCSeq: 1\r\n\r\n"),
        ),
        ("a huge Content-Length", huge),
        ("400 headers of 1 KB", many_headers),
        ("an ANNOUNCE with a garbage SDP", bad_announce),
    ];
    let mut refusals = Vec::new();
    for (what, req) in &refused {
        let mut c = RawRtsp::open(port);
        c.send_raw(req.as_bytes());
        refusals.push((*what, c));
    }

    // A RECORD without an ANNOUNCE (after a SETUP in record mode) must never succeed, and
    // RTP-looking interleaved frames after it must not reach the stream.
    let mut hijack = RawRtsp::open(port);
    let tracks = track_urls(&sdp, &base);
    hijack.send(
        "SETUP",
        &tracks[0],
        &[(
            "Transport",
            "RTP/AVP/TCP;unicast;interleaved=0-1;mode=record",
        )],
        "",
    );
    let setup = hijack.response(secs(5.0));
    let session = setup
        .as_ref()
        .and_then(Resp::session)
        .unwrap_or_else(|| "12345678".into());
    hijack.send("RECORD", &base, &[("Session", &session)], "");
    let record = outcome(&mut hijack, secs(5.0));
    assert!(
        !matches!(record, Outcome::Status(200..=299)),
        "a RECORD without ANNOUNCE on a live stream is refused; SETUP got {setup:?}, RECORD got {record:?}"
    );
    for _ in 0..20 {
        let mut f = vec![b'$', 0, 0x05, 0xdc, 0x80, 0x60];
        f.extend(rng.bytes(1500 - 2));
        if !hijack.send_raw(&f) {
            break;
        }
    }

    // An interleaved frame before any request, claiming 64 KB of garbage.
    {
        let mut c = RawRtsp::open(port);
        let mut f = vec![b'$', 0, 0xff, 0xff];
        f.extend(rng.bytes(65535));
        c.send_raw(&f);
        held.push(c);
    }
    // A 1 MB request line with no end.
    let mut endless = RawRtsp::open(port);
    let _ = endless.s.set_write_timeout(Some(secs(3.0)));
    let mut line = b"DESCRIBE rtsp://127.0.0.1/".to_vec();
    line.extend(std::iter::repeat_n(b'a', 1 << 20));
    let wrote_all = endless.s.write_all(&line).is_ok();

    // Half-open: connections that send nothing, and ones that send half a request.
    let half_open: Vec<TcpStream> = (0..10)
        .map(|_| connect(port).expect("connect half-open"))
        .collect();
    for _ in 0..5 {
        let mut c = RawRtsp::open(port);
        c.send_raw(format!("DESCRIBE {base} RTSP/1.0\r\nCSeq: 2\r\nAccept: appl").as_bytes());
        held.push(c);
    }

    // A player that sets up and plays over TCP, then never reads again.
    let mut stalled = RawRtsp::open(port);
    let stalled_url = srv.rtsp_url("live/steady?who=stalled");
    let d = stalled.request("DESCRIBE", &stalled_url, &[("Accept", "application/sdp")]);
    assert_eq!(d.status, 200, "{}", d.head);
    let tracks = track_urls(&d, &stalled_url);
    let s1 = stalled.request(
        "SETUP",
        &tracks[0],
        &[("Transport", "RTP/AVP/TCP;unicast;interleaved=0-1")],
    );
    assert_eq!(s1.status, 200, "interleaved SETUP: {}", s1.head);
    let session = s1.session().expect("Session");
    if let Some(t) = tracks.get(1) {
        let s2 = stalled.request(
            "SETUP",
            t,
            &[
                ("Transport", "RTP/AVP/TCP;unicast;interleaved=2-3"),
                ("Session", &session),
            ],
        );
        assert_eq!(s2.status, 200, "second interleaved SETUP: {}", s2.head);
    }
    let p = stalled.request("PLAY", &stalled_url, &[("Session", &session)]);
    assert_eq!(p.status, 200, "PLAY: {}", p.head);
    assert!(
        stalled.wait_frames(10, secs(5.0)),
        "interleaved RTP flows to the raw player: {:?}",
        stalled.frames
    );

    // The server's answers to the hostile requests.
    for (what, c) in refusals.iter_mut() {
        let o = outcome(c, secs(5.0));
        assert!(
            matches!(o, Outcome::Closed | Outcome::Status(400..=599)),
            "{what}: refused or hung up on, got {o:?}"
        );
    }
    for c in garbage.iter_mut().take(5) {
        let o = outcome(c, secs(5.0));
        assert!(
            matches!(o, Outcome::Closed | Outcome::Status(400..=599)),
            "random bytes: refused or hung up on, got {o:?}"
        );
    }
    let hung_up = !wrote_all || endless.wait_closed(secs(5.0));
    assert!(hung_up, "the server hangs up on a 1 MB request line");

    // Through all that: the server lives, a new player joins, the first keeps full rate.
    assert!(srv.alive(), "the server survives hostile bytes");
    let joined = play_rtsp(&srv.rtsp_url("live/steady?who=new"), "tcp", 1.0, secs(20.0));
    assert!(
        joined.frames > 0,
        "a new player joins after the hostile bytes: {:?}",
        joined.out
    );
    let played = finish_player(player, secs(30.0));
    assert!(
        played.frames >= 180,
        "the player that ran through it all decoded its 8 s ({} of 200 frames): {:?}",
        played.frames,
        played.out.stderr
    );
    assert!(publisher.running(), "the publisher was not disturbed");
    assert_eq!(
        hook.count(|r| is_done_of(r, pubrec.clientid())),
        0,
        "the publisher's session goes on:\n{}",
        hook.dump()
    );
    drop(half_open);
    drop(held);
    drop(garbage);
    drop(stalled);
    drop(hijack);
    thread::sleep(secs(0.5));
    assert!(srv.alive(), "the server is alive after the sockets closed");
    assert_eq!(
        hook.count(|r| r.call() == "publish" && r.name() == "steady"),
        1,
        "garbage never reached a publish of the live stream:\n{}",
        hook.dump()
    );
    publisher.kill();
}

// ------------------------------------------------------------------------------------------
// H.265 pass-through

#[test]
fn h265_passes_through_rtsp_to_rtsp_players_over_tcp_and_udp() {
    let srv = Server::start(&Config::new().rtsp());
    let url = srv.rtsp_url("live/hevc");
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-nostdin", "-loglevel", "error", "-re"])
        .args(["-f", "lavfi", "-i", TESTSRC])
        .args(["-c:v", "libx265", "-preset", "ultrafast"])
        .args([
            "-x265-params",
            "log-level=error:keyint=25",
            "-pix_fmt",
            "yuv420p",
        ])
        .args(["-t", "15", "-f", "rtsp", "-rtsp_transport", "udp", &url]);
    let mut publisher = Proc::spawn("publish h265", &mut cmd);
    wait_live(&srv, "live/hevc");

    let (codecs, out) = probe_rtsp(&url, "tcp");
    assert!(
        codecs.contains("hevc"),
        "an RTSP player sees the H.265 track: {codecs:?} {out:?}"
    );
    for transport in ["tcp", "udp"] {
        let played = play_rtsp(&url, transport, 2.0, secs(20.0));
        assert!(
            played.frames >= 40,
            "H.265 over RTSP/{transport}: {} frames decoded: {:?}\n{}",
            played.frames,
            played.out.stderr,
            srv.log_tail(20)
        );
    }
    publisher.kill();
}

// ------------------------------------------------------------------------------------------
// hardening: hostile publishers and clients (issue 11)

/// An FLV file of `seconds` of H.264 only (320x240, 25 fps, a keyframe every second), made
/// by ffmpeg in `dir`.
fn h264_flv(dir: &TempDir, seconds: u32) -> std::path::PathBuf {
    let path = dir.file("video.flv");
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-nostdin", "-loglevel", "error", "-y"])
        .args(["-f", "lavfi", "-i", "testsrc=size=320x240:rate=25"])
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-g", "25"])
        .args(["-pix_fmt", "yuv420p", "-t", &seconds.to_string()])
        .args(["-f", "flv"])
        .arg(&path);
    let out = run("ffmpeg h264 flv", &mut cmd, secs(60.0));
    assert!(out.success(), "ffmpeg made the FLV file: {}", out.text());
    path
}

/// The video tags of an FLV file: (timestamp in ms, tag body).
fn flv_video_tags(path: &std::path::Path) -> Vec<(u32, Vec<u8>)> {
    let data = std::fs::read(path).expect("read the FLV file");
    let mut tags = Vec::new();
    let mut pos = 9 + 4;
    while pos + 11 <= data.len() {
        let kind = data[pos];
        let size = usize::from(data[pos + 1]) << 16
            | usize::from(data[pos + 2]) << 8
            | usize::from(data[pos + 3]);
        let ts = u32::from(data[pos + 7]) << 24
            | u32::from(data[pos + 4]) << 16
            | u32::from(data[pos + 5]) << 8
            | u32::from(data[pos + 6]);
        let Some(body) = data.get(pos + 11..pos + 11 + size) else {
            break;
        };
        if kind == 9 {
            tags.push((ts, body.to_vec()));
        }
        pos += 11 + size + 4;
    }
    tags
}

/// An AVC sequence header tag body whose record carries, beside each real parameter set of
/// `good` (a sequence header tag body), an empty one before it: SPS count and PPS count one
/// more each, with lengths 0.
fn with_empty_parameter_sets(good: &[u8]) -> Vec<u8> {
    let record = &good[5..];
    let mut pos = 6;
    let sps_count = usize::from(record[5] & 0x1f);
    let mut sps = Vec::new();
    for _ in 0..sps_count {
        let len = usize::from(u16::from_be_bytes([record[pos], record[pos + 1]]));
        sps.push(&record[pos + 2..pos + 2 + len]);
        pos += 2 + len;
    }
    let pps_count = usize::from(record[pos]);
    pos += 1;
    let mut pps = Vec::new();
    for _ in 0..pps_count {
        let len = usize::from(u16::from_be_bytes([record[pos], record[pos + 1]]));
        pps.push(&record[pos + 2..pos + 2 + len]);
        pos += 2 + len;
    }
    let mut out = good[..5].to_vec();
    out.extend_from_slice(&record[..5]);
    out.push(0xe0 | (sps_count as u8 + 1));
    out.extend_from_slice(&[0, 0]);
    for s in &sps {
        out.extend_from_slice(&(s.len() as u16).to_be_bytes());
        out.extend_from_slice(s);
    }
    out.push(pps_count as u8 + 1);
    out.extend_from_slice(&[0, 0]);
    for p in &pps {
        out.extend_from_slice(&(p.len() as u16).to_be_bytes());
        out.extend_from_slice(p);
    }
    // The high-profile extension, as it was.
    out.extend_from_slice(&record[pos..]);
    out
}

/// An RTMP publisher sends an AVC sequence header with an empty SPS and an empty PPS (besides
/// the real ones) in the middle of its stream: an RTSP player already playing and one that
/// joins after it both keep decoding until they are done.
#[test]
fn empty_parameter_sets_from_an_rtmp_publisher_do_not_cut_rtsp_players_off() {
    let hook = HookServer::start();
    let srv = Server::start(&Config::new().rtsp_hooks(&hook.url("/rtsp"), ""));
    let dir = TempDir::new("emptyps");
    let tags = flv_video_tags(&h264_flv(&dir, 14));
    assert!(
        tags.first().is_some_and(|(_, b)| b.len() > 5 && b[1] == 0),
        "the FLV file starts with an AVC sequence header"
    );
    let bad_header = with_empty_parameter_sets(&tags[0].1);

    let mut rtmp = RtmpClient::open(srv.port).expect("RTMP connect");
    let sid = rtmp
        .connect_and_create_stream("live", &srv.tcurl())
        .expect("connect and createStream");
    rtmp.send_publish(sid, "emptyps").expect("publish");
    assert!(
        rtmp.wait_status("NetStream.Publish.Start", HOOK_WAIT)
            .is_some(),
        "publish started: {:?}",
        rtmp.messages()
    );
    let (bad_sent_tx, bad_sent) = std::sync::mpsc::channel();
    let publisher = thread::spawn(move || {
        let start = Instant::now();
        let mut bad_sent_tx = Some(bad_sent_tx);
        for (ts, body) in &tags {
            let due = start + Duration::from_millis(u64::from(*ts));
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                thread::sleep(wait);
            }
            // At 3 s, just before a keyframe: the hostile sequence header.
            if *ts >= 3000 && body[0] >> 4 == 1 && body[1] == 1 {
                if let Some(tx) = bad_sent_tx.take() {
                    rtmp.send_at(6, sid, 9, *ts, &bad_header)
                        .expect("send the hostile sequence header");
                    let _ = tx.send(());
                }
            }
            if rtmp.send_at(6, sid, 9, *ts, body).is_err() {
                break;
            }
        }
        rtmp
    });

    wait_live(&srv, "live/emptyps");
    let url = srv.rtsp_url("live/emptyps");
    let playing = spawn_rtsp_player(&url, "tcp", 6.0);
    bad_sent
        .recv_timeout(secs(10.0))
        .expect("the hostile sequence header was sent");
    thread::sleep(Duration::from_millis(500));
    let joining = spawn_rtsp_player(&url, "udp", 5.0);
    let playing = finish_player(playing, secs(30.0));
    let joining = finish_player(joining, secs(30.0));
    for (p, what) in [
        (&playing, "playing before it (TCP)"),
        (&joining, "joining after it (UDP)"),
    ] {
        assert!(
            p.frames >= 100,
            "the RTSP player {what} decoded {} frames; it must not be cut off: {:?}\n{}",
            p.frames,
            p.out,
            srv.log_tail(30)
        );
    }
    assert!(
        !srv.log().contains("panicked"),
        "no panic in the server:\n{}",
        srv.log_tail(30)
    );
    let _ = publisher.join();
}

/// What a raw client sent to every even port of `range` from its own UDP port: H.264 IDR
/// packets (single NAL unit, marker bit) whose body holds `mark`, with sequence numbers spread
/// over the whole 16-bit space so that some land just ahead of any receiver's.
fn spray_rtp(from: &UdpSocket, range: (u16, u16), mark: &[u8], round: u32) {
    for k in 0..8u16 {
        let mut pkt = vec![0x80, 0x80 | 96];
        pkt.extend_from_slice(&(k * 8192 + round as u16).to_be_bytes());
        pkt.extend_from_slice(&(round * 3600).to_be_bytes());
        pkt.extend_from_slice(&0x5eed_0001u32.to_be_bytes());
        pkt.extend_from_slice(&[0x65, 0x88]);
        pkt.extend_from_slice(mark);
        for port in (range.0..=range.1).step_by(2) {
            let _ = from.send_to(&pkt, ("127.0.0.1", port));
        }
    }
}

/// RTP sent to a UDP publisher's server ports from another port of its address never reaches
/// players, and the real publisher (ffmpeg over UDP) goes on working.
#[test]
fn rtp_from_another_port_of_a_udp_publisher_is_ignored() {
    let hook = HookServer::start();
    let cfg = Config::new().rtsp_hooks(&hook.url("/rtsp"), "");
    let range = cfg
        .rtsp
        .as_ref()
        .map(|r| (r.rtp_port_min, r.rtp_port_max))
        .expect("rtsp section");
    let srv = Server::start(&cfg);
    let port = srv.rtsp_port.expect("rtsp");
    let url = srv.rtsp_url("live/spoofed");
    let mut publisher = publish_rtsp(&url, "udp", 30);
    let d = wait_live(&srv, "live/spoofed");

    // A raw player over TCP sees every byte the stream sends.
    let mut watcher = RawRtsp::open(port);
    let d2 = watcher.request("DESCRIBE", &url, &[("Accept", "application/sdp")]);
    assert_eq!(d2.status, 200, "{}", d2.head);
    let tracks = track_urls(&d, &url);
    let mut session = String::new();
    for (i, t) in tracks.iter().enumerate() {
        let transport = format!("RTP/AVP/TCP;unicast;interleaved={}-{}", 2 * i, 2 * i + 1);
        let mut headers = vec![("Transport", transport.as_str())];
        if !session.is_empty() {
            headers.push(("Session", session.as_str()));
        }
        let r = watcher.request("SETUP", t, &headers);
        assert_eq!(r.status, 200, "SETUP {t}: {}", r.head);
        session = r.session().expect("a session id");
    }
    let play = watcher.request("PLAY", &url, &[("Session", &session)]);
    assert_eq!(play.status, 200, "PLAY: {}", play.head);
    assert!(
        watcher.wait_frames(20, secs(10.0)),
        "the raw player gets the stream"
    );

    let mark = b"SPOOFED-RTP-FROM-ANOTHER-PORT";
    let spoofer = UdpSocket::bind("127.0.0.1:0").expect("bind a UDP port");
    for round in 0..15 {
        spray_rtp(&spoofer, range, mark, round);
        thread::sleep(Duration::from_millis(200));
        while watcher.parse().is_some() {}
        watcher.fill();
    }
    let until = Instant::now() + secs(1.0);
    while Instant::now() < until {
        while watcher.parse().is_some() {}
        watcher.fill();
    }
    assert!(
        find(&watcher.frame_bytes, mark).is_none(),
        "RTP from another port reached a player"
    );
    let played = play_rtsp(&url, "tcp", 3.0, secs(20.0));
    assert!(
        played.frames >= 60,
        "the real UDP publisher still reaches players: {} frames, {:?}",
        played.frames,
        played.out
    );
    assert!(publisher.running(), "the UDP publisher still runs");
    publisher.kill();
}

/// An SDP announcing `n` H.264 tracks (controls `trackID=0..n`).
fn sdp_with_tracks(n: usize) -> String {
    let mut sdp =
        String::from("v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=x\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n");
    for i in 0..n {
        sdp.push_str(&format!(
            "m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=fmtp:96 packetization-mode=1\r\na=control:trackID={i}\r\n"
        ));
    }
    sdp
}

/// One client host (127.0.0.2) opens 14 publishing sessions of 8 tracks each and sets every
/// track up over UDP three times: it must not be able to take the RTP port range, and a real
/// ffmpeg UDP publisher from another host (127.0.0.1) still gets its ports and plays.
#[test]
fn repeated_udp_setups_and_many_sessions_do_not_exhaust_the_rtp_ports() {
    let hook = HookServer::start();
    let srv = Server::start(&Config::new().rtsp_hooks(&hook.url("/rtsp"), ""));
    let port = srv.rtsp_port.expect("rtsp");
    let attacker = std::net::Ipv4Addr::new(127, 0, 0, 2);
    let sdp = sdp_with_tracks(8);
    let mut held = Vec::new();
    let (mut granted, mut refused) = (0, 0);
    for conn in 0..14 {
        let url = srv.rtsp_url(&format!("live/hog{conn}"));
        let mut c = RawRtsp::open_from(attacker, port);
        c.send(
            "ANNOUNCE",
            &url,
            &[("Content-Type", "application/sdp")],
            &sdp,
        );
        let r = c.response(secs(10.0)).expect("an answer to ANNOUNCE");
        assert_eq!(r.status, 200, "ANNOUNCE: {}", r.head);
        let mut session = String::new();
        for round in 0..3 {
            for track in 0..8u16 {
                let client = 30000 + 16 * conn + 2 * track;
                let transport = format!(
                    "RTP/AVP;unicast;client_port={client}-{};mode=record",
                    client + 1
                );
                let mut headers = vec![("Transport", transport.as_str())];
                if !session.is_empty() {
                    headers.push(("Session", session.as_str()));
                }
                let r = c.request("SETUP", &format!("{url}/trackID={track}"), &headers);
                match r.status {
                    200 => {
                        granted += 1;
                        session = r.session().unwrap_or(session);
                    }
                    453 => refused += 1,
                    s => panic!("SETUP round {round} track {track}: {s} {}", r.head),
                }
            }
        }
        held.push(c);
    }
    assert!(
        refused > 0,
        "one host cannot be given every pair it asks for ({granted} granted)"
    );
    let url = srv.rtsp_url("live/honest");
    let mut publisher = publish_rtsp(&url, "udp", 20);
    hook.wait_call("publish", "honest", HOOK_WAIT)
        .unwrap_or_else(|| panic!("on_publish for honest:\n{}", hook.dump()));
    wait_live(&srv, "live/honest");
    let played = play_rtsp(&url, "udp", 2.0, secs(20.0));
    assert!(
        played.frames >= 40,
        "a UDP player of a UDP publisher decoded {} frames while another host holds its share of the ports: {:?}\n{}",
        played.frames,
        played.out,
        srv.log_tail(20)
    );
    assert!(publisher.running(), "the UDP publisher still runs");
    publisher.kill();
    drop(held);
}

/// The server ports of a UDP SETUP answer.
fn server_ports(setup: &Resp) -> Option<(u16, u16)> {
    let t = setup.header("transport")?;
    let (a, b) = t
        .split(';')
        .find_map(|p| p.trim().strip_prefix("server_port="))?
        .split_once('-')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// SETUP of the same track over UDP, 60 times on one session: every pair but the last one
/// is given back (the test can bind those ports again), not kept by the server.
#[test]
fn re_setup_of_a_udp_track_gives_its_port_pair_back() {
    let srv = Server::start(&Config::new().rtsp());
    let port = srv.rtsp_port.expect("rtsp");
    let url = srv.rtsp_url("live/resetup");
    let mut c = RawRtsp::open(port);
    c.send(
        "ANNOUNCE",
        &url,
        &[("Content-Type", "application/sdp")],
        &sdp_with_tracks(1),
    );
    let r = c.response(secs(10.0)).expect("an answer to ANNOUNCE");
    assert_eq!(r.status, 200, "ANNOUNCE: {}", r.head);
    let mut session = String::new();
    let mut given = std::collections::BTreeSet::new();
    let mut last = (0, 0);
    for i in 0..60u16 {
        let client = 31000 + 2 * i;
        let transport = format!(
            "RTP/AVP;unicast;client_port={client}-{};mode=record",
            client + 1
        );
        let mut headers = vec![("Transport", transport.as_str())];
        if !session.is_empty() {
            headers.push(("Session", session.as_str()));
        }
        let r = c.request("SETUP", &format!("{url}/trackID=0"), &headers);
        assert_eq!(r.status, 200, "SETUP {i}: {}", r.head);
        session = r.session().unwrap_or(session);
        last = server_ports(&r).expect("server_port in the answer");
        given.extend([last.0, last.1]);
    }
    given.remove(&last.0);
    given.remove(&last.1);
    // Ports still held; a few may have been taken meanwhile by another test's server whose
    // range overlaps ours, none are held by this one.
    let held = |given: &std::collections::BTreeSet<u16>| {
        given
            .iter()
            .filter(|p| UdpSocket::bind(("0.0.0.0", **p)).is_err())
            .count()
    };
    let settled = poll(secs(5.0), || (held(&given) <= 4).then_some(()));
    assert!(
        settled.is_some(),
        "{} of the {} ports given before the last SETUP are still held",
        held(&given),
        given.len()
    );
    assert!(!c.wait_closed(secs(0.2)), "the session is still open");
}

/// The resident memory of process `pid`, in KiB (VmRSS of /proc/PID/status).
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

/// Ten clients send OPTIONS requests back to back for 6 s and never read an answer: the
/// server's memory stays bounded (it stops reading a client whose answers are not taken) and
/// another client is answered meanwhile.
#[test]
fn pipelined_requests_without_reading_do_not_grow_the_server() {
    let srv = Server::start(&Config::new().rtsp());
    let port = srv.rtsp_port.expect("rtsp");
    let url = srv.rtsp_url("live/flood");
    // Warm up: one full exchange, so the baseline has every lazy allocation made.
    let mut warm = RawRtsp::open(port);
    assert_eq!(warm.request("OPTIONS", &url, &[]).status, 200);
    let baseline = rss_kib(srv.pid());
    let mut burst = Vec::new();
    for i in 0..400 {
        burst.extend_from_slice(format!("OPTIONS {url} RTSP/1.0\r\nCSeq: {i}\r\n\r\n").as_bytes());
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let floods: Vec<_> = (0..10)
        .map(|_| {
            let burst = burst.clone();
            let stop = stop.clone();
            thread::spawn(move || {
                let mut s = connect(port).expect("connect");
                s.set_write_timeout(Some(Duration::from_millis(200)))
                    .expect("write timeout");
                let mut sent = 0usize;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    match s.write(&burst) {
                        Ok(n) => sent += n,
                        Err(e)
                            if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                        Err(_) => break,
                    }
                }
                (s, sent)
            })
        })
        .collect();
    let start = Instant::now();
    let mut peak = baseline;
    let mut served = None;
    while start.elapsed() < secs(6.0) {
        peak = peak.max(rss_kib(srv.pid()));
        if served.is_none() && start.elapsed() > secs(2.0) {
            let mut c = RawRtsp::open(port);
            c.send("OPTIONS", &url, &[], "");
            served = Some(c.response(secs(5.0)).map(|r| r.status));
        }
        thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let floods: Vec<_> = floods.into_iter().filter_map(|t| t.join().ok()).collect();
    let sent: usize = floods.iter().map(|(_, n)| n).sum();
    assert_eq!(
        served,
        Some(Some(200)),
        "another client is answered during the flood"
    );
    let grown = peak.saturating_sub(baseline);
    assert!(
        grown < 32 << 10,
        "the server grew by {grown} KiB (from {baseline} KiB) while 10 clients sent {sent} bytes of requests without reading"
    );
    drop(floods);
}

/// An AVC sequence header tag body (x264's SPS and PPS for 320x240).
fn avc_sequence_header() -> Vec<u8> {
    const SPS: &[u8] = &[
        0x67, 0x64, 0x00, 0x0d, 0xac, 0xd9, 0x41, 0x41, 0xfb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00,
        0x10, 0x00, 0x00, 0x03, 0x03, 0x20, 0xf1, 0x42, 0x99, 0x60,
    ];
    const PPS: &[u8] = &[0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0];
    let mut body = vec![0x17, 0, 0, 0, 0, 1, 0x64, 0x00, 0x0d, 0xff, 0xe1];
    body.extend_from_slice(&(SPS.len() as u16).to_be_bytes());
    body.extend_from_slice(SPS);
    body.push(1);
    body.extend_from_slice(&(PPS.len() as u16).to_be_bytes());
    body.extend_from_slice(PPS);
    body
}

/// A raw RTMP publisher of `name` whose every frame is a 512 KiB IDR at 25 fps (100 Mbit/s),
/// so the stream's GOP cache holds one frame at a time. Set the flag to stop it.
fn fat_publisher(
    srv: &Server,
    name: &str,
) -> (
    std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread::JoinHandle<RtmpClient>,
) {
    let mut rtmp = RtmpClient::open(srv.port).expect("RTMP connect");
    let sid = rtmp
        .connect_and_create_stream("live", &srv.tcurl())
        .expect("connect and createStream");
    rtmp.send_publish(sid, name).expect("publish");
    assert!(rtmp
        .wait_status("NetStream.Publish.Start", HOOK_WAIT)
        .is_some());
    rtmp.send_at(6, sid, 9, 0, &avc_sequence_header())
        .expect("sequence header");
    // Every frame a 512 KiB IDR: the stream's GOP cache holds one frame at a time.
    let mut rng = Rng::new(0x00fa_7f4a);
    let mut idr = vec![0x17, 1, 0, 0, 0];
    let nal_len = 512 << 10;
    idr.extend_from_slice(&(nal_len as u32).to_be_bytes());
    idr.extend_from_slice(&[0x65, 0x88]);
    idr.extend(rng.bytes(nal_len - 2));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let publisher = thread::spawn(move || {
        let start = Instant::now();
        let mut ts = 0u32;
        while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
            if rtmp.send_at(6, sid, 9, ts, &idr).is_err() {
                break;
            }
            ts += 40;
            let due = start + Duration::from_millis(u64::from(ts));
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                thread::sleep(wait);
            }
        }
        rtmp
    });
    (stop, publisher)
}

/// Ten clients DESCRIBE a 100 Mbit/s stream and keep their connections alive with
/// GET_PARAMETER without ever sending PLAY: the server holds no media for them (its memory
/// does not grow with the stream), and one that finally plays starts at the current keyframe.
#[test]
fn describe_without_play_holds_no_media() {
    let srv = Server::start(&Config::new().rtsp());
    let port = srv.rtsp_port.expect("rtsp");
    let (stop, publisher) = fat_publisher(&srv, "fat");
    let url = srv.rtsp_url("live/fat");
    wait_live(&srv, "live/fat");
    thread::sleep(secs(1.0));
    let baseline = rss_kib(srv.pid());
    let mut holders: Vec<RawRtsp> = (0..10)
        .map(|_| {
            let (c, d) = describe(port, &url);
            assert_eq!(d.status, 200, "DESCRIBE: {}", d.head);
            c
        })
        .collect();
    let start = Instant::now();
    let mut peak = baseline;
    while start.elapsed() < secs(8.0) {
        for c in &mut holders {
            let r = c.request("GET_PARAMETER", &url, &[]);
            assert_eq!(
                r.status, 200,
                "GET_PARAMETER keeps the connection: {}",
                r.head
            );
        }
        peak = peak.max(rss_kib(srv.pid()));
        thread::sleep(Duration::from_millis(500));
    }
    let grown = peak.saturating_sub(baseline);
    // One of them plays now: it gets the stream from the current keyframe on.
    let d = holders[0].request("DESCRIBE", &url, &[("Accept", "application/sdp")]);
    let tracks = track_urls(&d, &url);
    let setup = holders[0].request(
        "SETUP",
        &tracks[0],
        &[("Transport", "RTP/AVP/TCP;unicast;interleaved=0-1")],
    );
    assert_eq!(setup.status, 200, "SETUP: {}", setup.head);
    let session = setup.session().expect("a session");
    let play = holders[0].request("PLAY", &url, &[("Session", &session)]);
    assert_eq!(play.status, 200, "PLAY: {}", play.head);
    assert!(
        holders[0].wait_frames(400, secs(10.0)),
        "the player that finally plays gets media"
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = publisher.join();
    assert!(
        grown < 32 << 10,
        "the server grew by {grown} KiB (from {baseline} KiB) while 10 clients held a DESCRIBE for 8 s of a 100 Mbit/s stream\n{}",
        srv.log_tail(10)
    );
}

/// An RTSP/TCP player that stops reading a 100 Mbit/s stream: past its `<queue_bytes>` it
/// drops to the next keyframe, after its `<stall_timeout_ms>` (over its queue, or over half
/// of it with nothing taken) it is closed, and a new player still plays.
#[test]
fn a_stalled_rtsp_player_drops_to_keyframes_and_is_closed_after_the_stall_timeout() {
    let srv = Server::start(&Config::new().rtsp().section_xml(
        "rtsp",
        "<queue_bytes>65536</queue_bytes><stall_timeout_ms>3000</stall_timeout_ms>",
    ));
    let port = srv.rtsp_port.expect("rtsp");
    let (stop, publisher) = fat_publisher(&srv, "stall");
    let url = srv.rtsp_url("live/stall");
    wait_live(&srv, "live/stall");
    let play = |what: &str| {
        let (mut c, d) = describe(port, &url);
        assert_eq!(d.status, 200, "DESCRIBE: {}", d.head);
        let tracks = track_urls(&d, &url);
        let setup = c.request(
            "SETUP",
            &tracks[0],
            &[("Transport", "RTP/AVP/TCP;unicast;interleaved=0-1")],
        );
        assert_eq!(setup.status, 200, "SETUP: {}", setup.head);
        let session = setup.session().expect("a session");
        let r = c.request("PLAY", &url, &[("Session", &session)]);
        assert_eq!(r.status, 200, "PLAY: {}", r.head);
        assert!(c.wait_frames(400, secs(10.0)), "{what} gets media");
        c
    };
    let mut stalled = play("the player before it stops reading");
    // It reads nothing more until the server has given up on it.
    let logged = |what: &str| poll(secs(30.0), || srv.log().contains(what).then_some(())).is_some();
    assert!(
        logged("player is behind; dropping to the next keyframe"),
        "{}",
        srv.log_tail(40)
    );
    assert!(logged("player stalled; closing"), "{}", srv.log_tail(40));
    // What was queued is written as it reads again, then the connection ends.
    let end = Instant::now() + secs(30.0);
    while !stalled.closed && Instant::now() < end {
        stalled.fill();
        stalled.buf.clear();
    }
    assert!(stalled.closed, "the stalled player's connection is closed");
    let next = play("a new player");
    assert!(!next.closed, "the new player stays connected");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = publisher.join();
}

/// An RTMP player of a stream of 512 KiB frames: the server holds a bounded number of bytes
/// for it (its fan-out group's history is bounded in bytes, not only in frames).
#[test]
fn a_stream_of_large_frames_is_held_in_bounded_bytes_for_rtmp_players() {
    let srv = Server::start(&Config::new().rtsp());
    let (stop, publisher) = fat_publisher(&srv, "fatrtmp");
    wait_live(&srv, "live/fatrtmp");
    thread::sleep(secs(1.0));
    let baseline = rss_kib(srv.pid());
    let mut player = RtmpClient::open(srv.port).expect("RTMP connect");
    let sid = player
        .connect_and_create_stream("live", &srv.tcurl())
        .expect("connect and createStream");
    player.send_play(sid, "fatrtmp").expect("play");
    let start = Instant::now();
    let mut peak = baseline;
    while start.elapsed() < secs(8.0) {
        peak = peak.max(rss_kib(srv.pid()));
        thread::sleep(Duration::from_millis(200));
    }
    let media = player.messages().iter().filter(|m| m.is_media()).count();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = publisher.join();
    assert!(media >= 100, "the RTMP player got {media} media messages");
    let grown = peak.saturating_sub(baseline);
    assert!(
        grown < 40 << 10,
        "the server grew by {grown} KiB (from {baseline} KiB) for one RTMP player of a stream of 512 KiB frames"
    );
}

/// Requests alone hold neither a connection nor a stream name: a client that only sends
/// `OPTIONS` is closed 60 s after it connected, and a publisher that announced and recorded
/// but sends no media is closed after 30 s, which frees its name for a real publisher.
#[test]
fn requests_alone_do_not_hold_a_connection_or_a_stream_name() {
    let hook = HookServer::start();
    let srv = Server::start(&Config::new().rtsp_hooks(&hook.url("/rtsp"), ""));
    let port = srv.rtsp_port.expect("rtsp");
    let url = srv.rtsp_url("live/squat");

    let mut squatter = RawRtsp::open(port);
    squatter.send(
        "ANNOUNCE",
        &url,
        &[("Content-Type", "application/sdp")],
        &sdp_with_tracks(1),
    );
    let r = squatter
        .response(secs(10.0))
        .expect("an answer to ANNOUNCE");
    assert_eq!(r.status, 200, "ANNOUNCE: {}", r.head);
    let r = squatter.request(
        "SETUP",
        &format!("{url}/trackID=0"),
        &[(
            "Transport",
            "RTP/AVP/TCP;unicast;interleaved=0-1;mode=record",
        )],
    );
    assert_eq!(r.status, 200, "SETUP: {}", r.head);
    let session = r.session().expect("a session id");
    let r = squatter.request("RECORD", &url, &[("Session", session.as_str())]);
    assert_eq!(r.status, 200, "RECORD: {}", r.head);
    let recording = Instant::now();
    let mut chatter = RawRtsp::open(port);
    let connected = Instant::now();

    let (mut squatter_closed, mut chatter_closed) = (None, None);
    for tick in 0..90 {
        for (c, closed) in [
            (&mut squatter, &mut squatter_closed),
            (&mut chatter, &mut chatter_closed),
        ] {
            if closed.is_some() {
                continue;
            }
            if tick % 5 == 0 {
                c.send("OPTIONS", &url, &[], "");
            }
            if c.wait_closed(secs(0.5)) {
                *closed = Some(Instant::now());
            }
        }
        if squatter_closed.is_some() && chatter_closed.is_some() {
            break;
        }
        std::thread::sleep(secs(0.5));
    }
    let squatter_after = squatter_closed
        .unwrap_or_else(|| {
            panic!(
                "a publisher without media is still open: {}",
                srv.log_tail(20)
            )
        })
        .duration_since(recording);
    assert!(
        squatter_after >= secs(29.0),
        "the silent publisher was closed after {squatter_after:?}, before 30 s"
    );
    let chatter_after = chatter_closed
        .unwrap_or_else(|| {
            panic!(
                "a client that only asks OPTIONS is still open: {}",
                srv.log_tail(20)
            )
        })
        .duration_since(connected);
    assert!(
        chatter_after >= secs(59.0),
        "the OPTIONS-only client was closed after {chatter_after:?}, before 60 s"
    );
    let log = srv.log();
    assert!(
        log.contains("publisher sent no media for too long"),
        "{}",
        srv.log_tail(20)
    );
    assert!(
        log.contains("neither played nor published for too long"),
        "{}",
        srv.log_tail(20)
    );
    let announce = hook
        .find(|r| r.call() == "publish" && r.name() == "squat")
        .into_iter()
        .next()
        .expect("the squatter's on_publish");
    assert_one_done(&hook, &announce, "the silent publisher", secs(2.0));

    // The name is free again.
    let mut publisher = publish_rtsp(&url, "tcp", 20);
    wait_live(&srv, "live/squat");
    publisher.kill();
}
