//! Usage in `on_done`: every callback carries `node` after the seed's eight fields, and every
//! `on_done` the session's `start`, `duration_ms`, `bytes_in`, `bytes_out` and `reason`. Real
//! clients (ffmpeg, raw sockets, the kit's RTMP client) against the real binary; the bytes and
//! the time are checked against what the client's side counted.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use streamgate_testkit::*;

const HOOK_WAIT: Duration = Duration::from_secs(15);

/// Asserts `done` names `reason`, and that its usage fields are in place (the kit's order
/// check) with a start no later than now.
fn assert_done(done: &Record, reason: &str) {
    assert_field_order(done);
    assert_eq!(done.field("reason"), reason, "reason of {done:?}");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64;
    let start = number(done, "start");
    assert!(
        start <= now && now - start < 600_000,
        "start {start} is a recent Unix time in ms (now {now}): {done:?}"
    );
}

/// `got` within 10 % of `want`.
fn assert_within_10_percent(what: &str, got: u64, want: u64) {
    let diff = got.abs_diff(want);
    assert!(
        want > 0 && diff * 10 <= want,
        "{what}: the server counted {got}, the client {want}"
    );
}

/// `duration_ms` within 1 s of what the client measured.
fn assert_duration(done: &Record, measured: Duration) {
    let got = number(done, "duration_ms");
    let want = measured.as_millis() as u64;
    assert!(
        got.abs_diff(want) <= 1000,
        "duration_ms {got} vs {want} ms measured by the client: {done:?}"
    );
}

/// A publisher through `relay` that ends by itself (ffmpeg's `-t`): its `on_done` matches its
/// `on_publish`, says `closed`, and carries the bytes the relay saw it send and how long its
/// connection lasted.
fn assert_closed_publisher(
    hook: &HookServer,
    srv: &Server,
    publisher: &mut Proc,
    publish: &Record,
    relay: &CountingRelay,
    protocol: &str,
) {
    publisher
        .wait_timeout(secs(30.0))
        .unwrap_or_else(|| panic!("the {protocol} publisher ends by itself"));
    let done = done_of(hook, publish.clientid(), || srv.log_tail(40));
    assert_done_matches(&done, publish);
    assert_done(&done, "closed");
    let (sent, lasted) = poll(secs(5.0), || {
        let (sent, lasted) = relay.counted();
        lasted.map(|l| (sent, l))
    })
    .unwrap_or_else(|| panic!("the relay saw the {protocol} publisher close"));
    assert_within_10_percent(
        &format!("bytes_in of an {protocol} publisher"),
        number(&done, "bytes_in"),
        sent,
    );
    assert_duration(&done, lasted);
}

/// A TCP relay in front of `port` for one connection, counting what the client sends and
/// when the connection opened and closed.
struct CountingRelay {
    port: u16,
    sent: Arc<AtomicU64>,
    times: Arc<Mutex<(Option<Instant>, Option<Instant>)>>,
}

impl CountingRelay {
    fn start(target: u16) -> CountingRelay {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind relay");
        let port = listener.local_addr().expect("addr").port();
        let sent = Arc::new(AtomicU64::new(0));
        let times = Arc::new(Mutex::new((None, None)));
        let (sent2, times2) = (sent.clone(), times.clone());
        thread::spawn(move || {
            let Ok((client, _)) = listener.accept() else {
                return;
            };
            times2.lock().expect("times").0 = Some(Instant::now());
            let server = TcpStream::connect(("127.0.0.1", target)).expect("relay to the server");
            let (mut c_read, mut s_write) = (
                client.try_clone().expect("clone"),
                server.try_clone().expect("clone"),
            );
            let (mut s_read, mut c_write) = (server, client);
            let back = thread::spawn(move || {
                let mut buf = [0u8; 65536];
                while let Ok(n) = s_read.read(&mut buf) {
                    if n == 0 || c_write.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                let _ = c_write.shutdown(Shutdown::Write);
            });
            let mut buf = [0u8; 65536];
            while let Ok(n) = c_read.read(&mut buf) {
                if n == 0 || s_write.write_all(&buf[..n]).is_err() {
                    break;
                }
                sent2.fetch_add(n as u64, Ordering::SeqCst);
            }
            times2.lock().expect("times").1 = Some(Instant::now());
            let _ = s_write.shutdown(Shutdown::Write);
            let _ = back.join();
        });
        CountingRelay { port, sent, times }
    }

    /// Bytes the client sent, and how long its connection lasted (once it closed).
    fn counted(&self) -> (u64, Option<Duration>) {
        let (open, closed) = *self.times.lock().expect("times");
        let lasted = open.zip(closed).map(|(o, c)| c - o);
        (self.sent.load(Ordering::SeqCst), lasted)
    }
}

/// A UDP relay in front of the SRT port `target` for one client: counts the datagram payloads
/// (whole SRT packets) the client sends and those the server sends back.
struct CountingUdpRelay {
    port: u16,
    to_server: Arc<AtomicU64>,
    to_client: Arc<AtomicU64>,
}

impl CountingUdpRelay {
    fn start(target: u16) -> CountingUdpRelay {
        let front = UdpSocket::bind("127.0.0.1:0").expect("bind relay");
        let port = front.local_addr().expect("addr").port();
        let back = UdpSocket::bind("127.0.0.1:0").expect("bind relay upstream");
        back.connect(("127.0.0.1", target))
            .expect("connect upstream");
        let (to_server, to_client) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let client: Arc<Mutex<Option<SocketAddr>>> = Arc::default();
        let (front2, back2) = (
            front.try_clone().expect("clone"),
            back.try_clone().expect("clone"),
        );
        let (counted, peer) = (to_server.clone(), client.clone());
        thread::spawn(move || {
            let mut buf = [0u8; 65536];
            while let Ok((n, from)) = front.recv_from(&mut buf) {
                *peer.lock().expect("peer") = Some(from);
                counted.fetch_add(n as u64, Ordering::SeqCst);
                let _ = back.send(&buf[..n]);
            }
        });
        let counted = to_client.clone();
        thread::spawn(move || {
            let mut buf = [0u8; 65536];
            while let Ok(n) = back2.recv(&mut buf) {
                counted.fetch_add(n as u64, Ordering::SeqCst);
                if let Some(to) = *client.lock().expect("peer") {
                    let _ = front2.send_to(&buf[..n], to);
                }
            }
        });
        CountingUdpRelay {
            port,
            to_server,
            to_client,
        }
    }

    /// `srt://127.0.0.1:PORT?streamid=...` through the relay.
    fn url(&self, streamid: &str) -> String {
        format!("srt://127.0.0.1:{}?streamid={streamid}", self.port)
    }

    /// (bytes the client sent, bytes the server sent it).
    fn counted(&self) -> (u64, u64) {
        (
            self.to_server.load(Ordering::SeqCst),
            self.to_client.load(Ordering::SeqCst),
        )
    }
}

/// An HTTP-FLV player on a raw socket: asks for `path`, reads for `seconds` (or until the
/// server closes), counting every byte received. Returns the bytes, the time from connect to
/// close, and whether the server closed first.
fn raw_flv_player(port: u16, path: &str, seconds: f64) -> (u64, Duration, bool) {
    let opened = Instant::now();
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect HTTP-FLV");
    s.set_read_timeout(Some(secs(0.2))).expect("timeout");
    write!(s, "GET /{path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").expect("request");
    let mut total = 0u64;
    let mut buf = [0u8; 65536];
    let mut ended = false;
    while opened.elapsed() < secs(seconds) {
        match s.read(&mut buf) {
            Ok(0) => {
                ended = true;
                break;
            }
            Ok(n) => total += n as u64,
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => {
                ended = true;
                break;
            }
        }
    }
    drop(s);
    (total, opened.elapsed(), ended)
}

#[test]
fn an_rtmp_publisher_and_http_flv_players_report_bytes_time_and_why_they_ended() {
    let hook = HookServer::start();
    let srv = Server::start(
        &Config::new()
            .hooks(&hook.url("/rtmp"), "")
            .httpflv_hooks(&hook.url("/httpflv"), ""),
    );
    let flv_port = srv.httpflv_port.expect("httpflv");
    let relay = CountingRelay::start(srv.port);
    let mut publisher = publish(&format!("rtmp://127.0.0.1:{}/live/meter", relay.port), 8);
    let publish = hook
        .wait_call("publish", "meter", HOOK_WAIT)
        .expect("on_publish");
    assert_field_order(&publish);
    thread::sleep(secs(0.5));

    // A player that reads 3 s and closes: `closed`, its bytes and time as it counted them.
    let leaving =
        thread::spawn(move || raw_flv_player(flv_port, "live/meter.flv?who=leaving", 3.0));
    // A player that stays until the stream ends under it: `stream_ended`.
    let staying =
        thread::spawn(move || raw_flv_player(flv_port, "live/meter.flv?who=staying", 30.0));
    let (left_bytes, left_time, left_ended) = leaving.join().expect("leaving player");
    assert!(!left_ended, "the leaving player closed first");
    let leave_play = hook
        .wait_for(
            |r| r.call() == "play" && r.field("url").ends_with("who=leaving"),
            HOOK_WAIT,
        )
        .expect("on_play of the leaving player");
    let done = done_of(&hook, leave_play.clientid(), || srv.log_tail(40));
    assert_done_matches(&done, &leave_play);
    assert_done(&done, "closed");
    assert_within_10_percent(
        "bytes_out of an HTTP-FLV player",
        number(&done, "bytes_out"),
        left_bytes,
    );
    assert_duration(&done, left_time);
    let request_len = "GET /live/meter.flv?who=leaving HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".len();
    assert_eq!(
        number(&done, "bytes_in"),
        request_len as u64,
        "bytes_in is the request"
    );

    // The publisher ends (ffmpeg's -t): it said FCUnpublish / deleteStream: `closed`.
    assert_closed_publisher(&hook, &srv, &mut publisher, &publish, &relay, "RTMP");

    let (stay_bytes, stay_time, stay_ended) = staying.join().expect("staying player");
    assert!(
        stay_ended,
        "the server closed the staying player when the stream ended"
    );
    let stay_play = hook
        .find(|r| r.call() == "play" && r.field("url").ends_with("who=staying"))
        .pop()
        .expect("on_play of the staying player");
    let done = done_of(&hook, stay_play.clientid(), || srv.log_tail(40));
    assert_done(&done, "stream_ended");
    assert_within_10_percent(
        "bytes_out of the staying player",
        number(&done, "bytes_out"),
        stay_bytes,
    );
    assert_duration(&done, stay_time);

    // Every callback of the run carries the node after the seed's fields.
    for r in hook.records() {
        assert_field_order(&r);
    }
}

#[test]
fn an_rtmp_player_counts_what_it_read_and_a_killed_one_is_lost() {
    let hook = HookServer::start();
    let srv = Server::start(&Config::new().hooks(&hook.url("/rtmp"), ""));
    let mut publisher = publish(&srv.url("live/cam"), 40);
    hook.wait_call("publish", "cam", HOOK_WAIT)
        .expect("on_publish");

    // A player through a counting relay (what it sent is what the server read) that ffmpeg
    // ends by itself after 3 s.
    let relay = CountingRelay::start(srv.port);
    let played = play(
        &format!("rtmp://127.0.0.1:{}/live/cam?who=counted", relay.port),
        3.0,
        secs(30.0),
    );
    assert!(
        played.frames > 0,
        "the player decoded frames: {}",
        played.out.text()
    );
    let play_rec = hook
        .wait_for(
            |r| r.call() == "play" && r.field("url").ends_with("who=counted"),
            HOOK_WAIT,
        )
        .expect("on_play");
    let done = done_of(&hook, play_rec.clientid(), || srv.log_tail(40));
    assert_done_matches(&done, &play_rec);
    // ffmpeg writes deleteStream and closes at once while media is still arriving: its
    // kernel then resets the connection and may drop the unsent deleteStream (the relay saw
    // it missing in some runs). Without it the server cannot know: `lost`. The goodbye's
    // `closed` is checked below with a client that waits for its deleteStream to be sent.
    assert_field_order(&done);
    assert!(
        ["closed", "lost"].contains(&done.field("reason")),
        "{done:?}"
    );
    let (sent, lasted) = poll(secs(5.0), || {
        let (sent, lasted) = relay.counted();
        lasted.map(|l| (sent, l))
    })
    .expect("the relay saw the player close");
    assert_within_10_percent(
        "bytes_in of an RTMP player",
        number(&done, "bytes_in"),
        sent,
    );
    assert_duration(&done, lasted);

    // The kit's RTMP client counts every byte it reads: the server's bytes_out agrees.
    let mut c = RtmpClient::open(srv.port).expect("RTMP client");
    let opened = Instant::now();
    let sid = c
        .connect_and_create_stream("live", &srv.tcurl())
        .expect("connect + createStream");
    c.send_play(sid, "cam?who=kit").expect("play");
    c.wait_status("NetStream.Play.Start", secs(10.0))
        .expect("Play.Start");
    thread::sleep(secs(2.0));
    c.delete_stream(sid).expect("deleteStream");
    let lasted = opened.elapsed();
    let kit_play = hook
        .wait_for(
            |r| r.call() == "play" && r.field("url").ends_with("who=kit"),
            HOOK_WAIT,
        )
        .expect("on_play of the kit's player");
    let done = done_of(&hook, kit_play.clientid(), || srv.log_tail(40));
    thread::sleep(secs(0.3));
    let read = c.bytes_read();
    assert_done(&done, "closed");
    assert_within_10_percent(
        "bytes_out of an RTMP player",
        number(&done, "bytes_out"),
        read,
    );
    assert_duration(&done, lasted);
    drop(c);

    // kill -9 of an ffmpeg player: no goodbye, `lost`.
    let mut killed = spawn_player(&srv.url("live/cam?who=killed"), 30.0);
    let killed_play = hook
        .wait_for(
            |r| r.call() == "play" && r.field("url").ends_with("who=killed"),
            HOOK_WAIT,
        )
        .expect("on_play of the player to kill");
    thread::sleep(secs(1.0));
    killed.kill();
    let done = done_of(&hook, killed_play.clientid(), || srv.log_tail(40));
    assert_done(&done, "lost");
    publisher.kill();
}

#[test]
fn a_stalled_player_not_live_and_shutdown_say_so() {
    let hook = HookServer::start();
    let mut srv = Server::start(
        &Config::new()
            .hooks(&hook.url("/rtmp"), "")
            .rtmp_limits(65536, 2000)
            .httpflv_hooks(&hook.url("/httpflv"), "")
            .rtsp_hooks(&hook.url("/rtsp"), ""),
    );
    let flv_port = srv.httpflv_port.expect("httpflv");

    // Not live: the hook allowed, the server could not: `refused`, over RTMP and HTTP-FLV.
    let out = ffprobe(&srv.url("live/nothing?who=notlive"), &[], secs(20.0));
    assert!(out.failed(), "nothing to play: {}", out.text());
    let rec = hook
        .wait_for(
            |r| r.call() == "play" && r.field("url").ends_with("who=notlive"),
            HOOK_WAIT,
        )
        .expect("on_play of the not-live player");
    assert_done(
        &done_of(&hook, rec.clientid(), || srv.log_tail(40)),
        "refused",
    );
    let (_, _, ended) = raw_flv_player(flv_port, "live/nothing.flv?who=notlive", 5.0);
    assert!(ended, "a 404 ends the HTTP-FLV request");
    let rec = hook
        .wait_for(
            |r| {
                r.call() == "play"
                    && r.path.starts_with("/httpflv")
                    && r.field("url").ends_with("who=notlive")
            },
            HOOK_WAIT,
        )
        .expect("on_play of the not-live HTTP-FLV player");
    assert_done(
        &done_of(&hook, rec.clientid(), || srv.log_tail(40)),
        "refused",
    );

    let mut publisher = publish_with(
        &srv.url("live/big"),
        60,
        "testsrc2=size=1280x720:rate=25",
        25,
    );
    let publish = hook
        .wait_call("publish", "big", HOOK_WAIT)
        .expect("on_publish big");

    // A player that stops reading: `stalled`.
    let mut c = RtmpClient::open(srv.port).expect("RTMP client");
    let sid = c
        .connect_and_create_stream("live", &srv.tcurl())
        .expect("connect + createStream");
    c.send_play(sid, "big?who=stalled").expect("send play");
    c.wait_status("NetStream.Play.Start", secs(10.0))
        .expect("Play.Start");
    c.pause_reading();
    let stalled = hook
        .wait_for(
            |r| r.call() == "play" && r.field("url").ends_with("who=stalled"),
            HOOK_WAIT,
        )
        .expect("on_play of the stalled player");
    let done = hook
        .wait_for(|r| is_done_of(r, stalled.clientid()), secs(40.0))
        .unwrap_or_else(|| panic!("on_done of the stalled player: {}", srv.log_tail(30)));
    assert_done(&done, "stalled");

    // SIGTERM: the publisher and a player are ended by the shutdown.
    let mut player = spawn_player(&srv.url("live/big?who=at_shutdown"), 60.0);
    let watching = hook
        .wait_for(
            |r| r.call() == "play" && r.field("url").ends_with("who=at_shutdown"),
            HOOK_WAIT,
        )
        .expect("on_play of the player at shutdown");
    // An RTSP player between DESCRIBE and PLAY is on no stream yet: the shutdown ends it too.
    let rtsp_port = srv.rtsp_port.expect("rtsp");
    let mut described = TcpStream::connect(("127.0.0.1", rtsp_port)).expect("connect RTSP");
    write!(
        described,
        "DESCRIBE rtsp://127.0.0.1:{rtsp_port}/live/big RTSP/1.0\r\nCSeq: 1\r\n\
         Accept: application/sdp\r\n\r\n"
    )
    .expect("DESCRIBE");
    described
        .set_read_timeout(Some(secs(10.0)))
        .expect("timeout");
    let mut answer = [0u8; 4096];
    let n = described.read(&mut answer).expect("the DESCRIBE answer");
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("RTSP/1.0 200"), "{answer}");
    let describing = hook
        .wait_for(
            |r| r.call() == "play" && r.field("protocol") == "rtsp",
            HOOK_WAIT,
        )
        .expect("on_play of the RTSP player");
    thread::sleep(secs(1.0));
    srv.stop_graceful().expect("the server stops on SIGTERM");
    assert_done(
        &done_of(&hook, publish.clientid(), || srv.log_tail(40)),
        "shutdown",
    );
    assert_done(
        &done_of(&hook, watching.clientid(), || srv.log_tail(40)),
        "shutdown",
    );
    assert_done(
        &done_of(&hook, describing.clientid(), || srv.log_tail(40)),
        "shutdown",
    );
    player.kill();
    publisher.kill();
}

/// FFmpeg publishing over SRT (MPEG-TS) for `seconds`.
fn srt_publish(url: &str, seconds: u32) -> Proc {
    let small = "testsrc=size=320x240:rate=25";
    let mut cmd = publisher_command("ffmpeg", url, seconds, small, 25, "mpegts");
    Proc::spawn(&format!("publish {url}"), &mut cmd)
}

#[test]
fn srt_and_rtsp_sessions_carry_their_usage() {
    let hook = HookServer::start();
    let srv = Server::start(
        &Config::new()
            .srt_hooks(&hook.url("/srt"), "")
            .rtsp_hooks(&hook.url("/rtsp"), ""),
    );

    // SRT: a publisher that ends by itself (SRT's shutdown: `closed`) and a player that
    // stays until the stream ends (`stream_ended`), each through a relay that counts the
    // SRT packets each side sent.
    let srt_port = srv.srt_port.expect("srt");
    let (pub_relay, play_relay) = (
        CountingUdpRelay::start(srt_port),
        CountingUdpRelay::start(srt_port),
    );
    let mut publisher = srt_publish(&pub_relay.url("#!::r=live/s1,m=publish"), 5);
    let publish = hook
        .wait_call("publish", "s1", HOOK_WAIT)
        .expect("on_publish over SRT");
    let player = spawn_player(
        &format!(
            "{}&latency=120000",
            play_relay.url("#!::r=live/s1,m=request")
        ),
        30.0,
    );
    let play = hook
        .wait_call("play", "s1", HOOK_WAIT)
        .expect("on_play over SRT");
    publisher
        .wait_timeout(secs(30.0))
        .expect("the SRT publisher ends");
    let done = done_of(&hook, publish.clientid(), || srv.log_tail(40));
    assert_done_matches(&done, &publish);
    assert_done(&done, "closed");
    assert!(number(&done, "duration_ms") >= 4000, "{done:?}");
    let (sent, _) = pub_relay.counted();
    assert_within_10_percent(
        "bytes_in of an SRT publisher",
        number(&done, "bytes_in"),
        sent,
    );
    let done = done_of(&hook, play.clientid(), || srv.log_tail(40));
    // What the server had sent when it ended the player: what it still had queued then (and
    // sends or drops afterwards) is not in its count.
    let (_, received) = play_relay.counted();
    assert_done_matches(&done, &play);
    assert_done(&done, "stream_ended");
    drop(player);
    assert_within_10_percent(
        "bytes_out of an SRT player",
        number(&done, "bytes_out"),
        received,
    );

    // RTSP: a publisher over TCP that ends with TEARDOWN: `closed`.
    let relay = CountingRelay::start(srv.rtsp_port.expect("rtsp"));
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-nostdin", "-loglevel", "error", "-re"])
        .args(["-f", "lavfi", "-i", TESTSRC])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-g",
            "25",
            "-pix_fmt",
            "yuv420p",
        ])
        .args(["-t", "4", "-f", "rtsp", "-rtsp_transport", "tcp"])
        .arg(format!("rtsp://127.0.0.1:{}/live/r1", relay.port));
    let mut rtsp_pub = Proc::spawn("publish over RTSP", &mut cmd);
    let publish = hook
        .wait_call("publish", "r1", HOOK_WAIT)
        .expect("on_publish over RTSP");
    assert_closed_publisher(&hook, &srv, &mut rtsp_pub, &publish, &relay, "RTSP");
}

#[test]
fn check_config_refuses_a_bad_node_id_with_its_line() {
    let dir = TempDir::new("cfg-node-id");
    let check = |xml: &str| check_config(&dir, "node.xml", xml).0;
    let port = free_port();
    let bad = format!(
        "<config>\n  <rtmp>\n    <port>{port}</port>\n  </rtmp>\n  <node_id>edge 1/eu</node_id>\n</config>\n"
    );
    let out = check(&bad);
    assert!(
        out.failed(),
        "a node id with a space and a slash is refused: {out:?}"
    );
    assert!(
        out.text().contains("<node_id>"),
        "names the element: {}",
        out.text()
    );
    assert!(
        mentions_line(&out.text(), line_of(&bad, "<node_id>")),
        "names the line: {}",
        out.text()
    );
    let good = bad.replace("edge 1/eu", "edge-1.eu_west");
    assert!(check(&good).success(), "a valid node id checks");
}

/// A publisher that goes quiet after its publish was allowed (the kit's RTMP client, which
/// then sends nothing) is closed after 30 s without media: its `on_done` says `idle`.
#[test]
fn a_publisher_without_media_is_idle() {
    let hook = HookServer::start();
    let srv = Server::start(&Config::new().hooks(&hook.url("/rtmp"), ""));
    let mut c = RtmpClient::open(srv.port).expect("RTMP client");
    let sid = c
        .connect_and_create_stream("live", &srv.tcurl())
        .expect("connect + createStream");
    c.send_publish(sid, "quiet").expect("send publish");
    c.wait_status("NetStream.Publish.Start", secs(10.0))
        .unwrap_or_else(|| panic!("Publish.Start: {:?}", c.messages()));
    let publish = hook
        .wait_call("publish", "quiet", HOOK_WAIT)
        .expect("on_publish quiet");
    let done = hook
        .wait_for(|r| is_done_of(r, publish.clientid()), secs(45.0))
        .unwrap_or_else(|| panic!("on_done of the quiet publisher: {}", srv.log_tail(30)));
    assert_done(&done, "idle");
    assert!(
        number(&done, "duration_ms") >= 30_000,
        "closed after 30 s without media: {done:?}"
    );
}
