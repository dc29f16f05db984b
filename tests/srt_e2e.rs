//! End-to-end tests of SRT publish and play with HTTP Notify: FFmpeg (libsrt) publishes and
//! plays over SRT, RTMP, HTTP-FLV and RTSP cross the protocol boundary both ways, and a real
//! business server records and answers every callback. Refusals are checked as the caller sees them (a
//! rejected handshake) and as the server logs them (the SRT reject code).

use std::net::UdpSocket;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use streamgate_testkit::*;

const HOOK_WAIT: Duration = Duration::from_secs(10);
/// SRT's idle timeout is 5 s: a peer killed with SIGKILL is noticed within that.
const KILL_WAIT: Duration = Duration::from_secs(12);
/// FFmpeg's SRT latency option is in microseconds.
const OPTS: &str = "&latency=120000";

fn publish_streamid(name: &str) -> String {
    format!("#!::r=live/{name},m=publish")
}

fn play_streamid(name: &str) -> String {
    format!("#!::r=live/{name},m=request")
}

/// FFmpeg publishing `seconds` of a small H.264 + AAC test stream as MPEG-TS over SRT to `url`.
fn srt_publish(url: &str, seconds: u32) -> Proc {
    let small = "testsrc=size=320x240:rate=25";
    let target = format!("{url}&pkt_size=1316{OPTS}");
    let mut cmd = publisher_command("ffmpeg", &target, seconds, small, 25, "mpegts");
    Proc::spawn(&format!("srt publish {url}"), &mut cmd)
}

/// Waits for `on_publish` of `name`, then a moment for the first GOP.
fn wait_publishing(hook: &HookServer, srv: &Server, name: &str) -> Record {
    let r = hook
        .wait_call("publish", name, HOOK_WAIT)
        .unwrap_or_else(|| {
            panic!(
                "no on_publish for {name}: {}\n{}",
                hook.dump(),
                srv.log_tail(40)
            )
        });
    thread::sleep(secs(1.5));
    r
}

/// Waits for the `on_done` of client `id` and checks that it comes only once.
fn assert_one_done(hook: &HookServer, id: &str, timeout: Duration, what: &str) -> Record {
    let done = hook
        .wait_for(|r| r.call() == "done" && r.clientid() == id, timeout)
        .unwrap_or_else(|| panic!("no on_done for {what}: {}", hook.dump()));
    thread::sleep(secs(0.5));
    assert_eq!(
        hook.count(|r| r.call() == "done" && r.clientid() == id),
        1,
        "one on_done for {what}: {}",
        hook.dump()
    );
    done
}

/// Whether one line of the server's log contains every needle.
fn log_has(srv: &Server, needles: &[&str]) -> bool {
    srv.log()
        .lines()
        .any(|l| needles.iter().all(|n| l.contains(n)))
}

/// An SRT caller that had to be refused failed on its own, quickly, as a rejected connection.
fn assert_refused(out: &Output, what: &str) {
    assert!(
        out.failed(),
        "{what}: FFmpeg must fail, got {:?} (timed out: {}): {}",
        out.status,
        out.timed_out,
        out.stderr
    );
    assert!(
        out.elapsed < Duration::from_secs(3),
        "{what}: refused at the handshake, not after a timeout ({:?}): {}",
        out.elapsed,
        out.stderr
    );
    assert!(
        out.stderr.contains("REJECT") || out.stderr.contains("failed"),
        "{what}: FFmpeg reports a failed connection: {}",
        out.stderr
    );
}

#[test]
fn srt_publish_and_play_with_every_hook_field_and_one_done_each() {
    let hook = HookServer::start();
    let srv = Server::start(&Config::new().srt_hooks(&hook.url("/srt"), ""));
    let port = srv.srt_port.expect("srt");
    let pub_id = publish_streamid("cam3");
    let mut publisher = srt_publish(&srv.srt_url(&pub_id), 30);
    let publish = wait_publishing(&hook, &srv, "cam3");
    // The streamid is percent-encoded as the value of `streamid=`, so a `#` does not start a
    // fragment for any URL parser.
    let pub_url = format!("srt://127.0.0.1:{port}?streamid=%23!::r%3Dlive/cam3,m%3Dpublish");
    assert_fields(&publish, "srt", "publish", "cam3", &pub_url, "");
    assert_srt_url_parses(&pub_url, &pub_id, None);
    assert_eq!(publish.path, "/srt/publish");
    let connect = hook
        .wait_for(
            |r| r.call() == "connect" && r.clientid() == publish.clientid(),
            HOOK_WAIT,
        )
        .expect("on_connect of the publisher");
    assert_fields(&connect, "srt", "connect", "", &pub_url, "");
    assert!(connect.seq < publish.seq, "connect comes before publish");

    // ffprobe over SRT sees both tracks.
    let codecs = probe_codecs(&format!("{}{OPTS}", srv.srt_url(&play_streamid("cam3"))));
    assert!(
        codecs.contains("h264") && codecs.contains("aac"),
        "ffprobe over SRT sees {codecs:?}"
    );

    // A player decodes frames; its hooks carry the streamid as it was sent, extra keys too,
    // and the resource's query (its token) as a pair of the URL's query.
    let play_id = "#!::r=live/cam3?token=t1,m=request,u=alice,s=abc123";
    let before = hook.records().len();
    let (frames, err) = read_frames(&format!("{}{OPTS}", srv.srt_url(play_id)), 2.0, secs(20.0));
    assert!(frames >= 40, "decoded {frames} frames over SRT: {err}");
    let play_url = format!(
        "srt://127.0.0.1:{port}?streamid=%23!::r%3Dlive/cam3%3Ftoken%3Dt1,m%3Drequest,u%3Dalice,s%3Dabc123&token=t1"
    );
    assert_srt_url_parses(&play_url, play_id, Some("t1"));
    let new: Vec<Record> = hook.records().into_iter().skip(before).collect();
    let play = new
        .iter()
        .find(|r| r.call() == "play")
        .unwrap_or_else(|| panic!("no on_play: {}", hook.dump()))
        .clone();
    assert_fields(&play, "srt", "play", "cam3", &play_url, "");
    let player_connect = new
        .iter()
        .find(|r| r.call() == "connect" && r.clientid() == play.clientid())
        .unwrap_or_else(|| panic!("no on_connect of the player: {}", hook.dump()));
    assert_fields(player_connect, "srt", "connect", "", &play_url, "");
    assert_ne!(play.clientid(), publish.clientid(), "one id per client");
    let done = assert_one_done(&hook, play.clientid(), HOOK_WAIT, "the player");
    assert_fields(&done, "srt", "done", "cam3", &play_url, "");

    // The publisher leaves: its on_done, once.
    publisher.kill();
    let done = assert_one_done(&hook, publish.clientid(), KILL_WAIT, "the publisher");
    assert_fields(&done, "srt", "done", "cam3", &pub_url, "");
}

#[test]
fn srt_in_rtmp_and_httpflv_out_and_rtmp_in_srt_out() {
    let hook = HookServer::start();
    let srv = Server::start(
        &Config::new()
            .hooks(&hook.url("/rtmp"), "")
            .httpflv()
            .srt_hooks(&hook.url("/srt"), ""),
    );
    // SRT in -> RTMP and HTTP-FLV out. The streamid's `#` is URL-encoded, as users write it
    // (FFmpeg 5 sends it without decoding it); the hooks get the streamid as the server reads
    // it, the same as from a client that sends a literal `#`.
    let streamid = "%23!::r=live/fromsrt,m=publish";
    let mut srt_in = srt_publish(&srv.srt_url(streamid), 30);
    let on_publish = wait_publishing(&hook, &srv, "fromsrt");
    assert_eq!(
        on_publish.field("url"),
        srv.srt_url("%23!::r%3Dlive/fromsrt,m%3Dpublish")
    );
    let (frames, err) = read_frames(&srv.url("live/fromsrt"), 2.0, secs(20.0));
    assert!(
        frames >= 40,
        "RTMP player of an SRT stream decoded {frames}: {err}"
    );
    let codecs = probe_codecs(&srv.flv_url("live/fromsrt.flv"));
    assert!(
        codecs.contains("h264") && codecs.contains("aac"),
        "HTTP-FLV of an SRT stream: {codecs:?}"
    );
    let (frames, err) = read_frames(&srv.flv_url("live/fromsrt.flv"), 2.0, secs(20.0));
    assert!(
        frames >= 40,
        "HTTP-FLV player of an SRT stream decoded {frames}: {err}"
    );
    srt_in.kill();

    // RTMP in -> SRT out.
    let mut rtmp_in = publish(&srv.url("live/fromrtmp"), 30);
    wait_publishing(&hook, &srv, "fromrtmp");
    let url = format!("{}{OPTS}", srv.srt_url(&play_streamid("fromrtmp")));
    let codecs = probe_codecs(&url);
    assert!(
        codecs.contains("h264") && codecs.contains("aac"),
        "SRT player of an RTMP stream: {codecs:?}"
    );
    let (frames, err) = read_frames(&url, 2.0, secs(20.0));
    assert!(
        frames >= 40,
        "SRT player of an RTMP stream decoded {frames}: {err}"
    );
    rtmp_in.kill();
}

#[test]
fn refusals_are_rejected_handshakes_with_srt_codes() {
    let hook = HookServer::start();
    hook.on_field("/srt/publish", "name", "secret", Reply::Status(403));
    hook.on_field("/srt/play", "name", "members", Reply::Status(401));
    hook.on_field("/srt/connect", "app", "closed", Reply::Status(500));
    let srv = Server::start(&Config::new().srt_hooks(&hook.url("/srt"), ""));
    let run_caller = |url: String| {
        let mut cmd = Command::new("ffmpeg");
        cmd.args(["-hide_banner", "-nostdin", "-loglevel", "error"])
            .args(["-i", &format!("{url}{OPTS}")])
            .args(["-t", "1", "-f", "null", "-"]);
        run("srt caller", &mut cmd, secs(15.0))
    };

    // on_publish 403: the publisher is refused with 1403 and no stream exists.
    let out = srt_publish(&srv.srt_url(&publish_streamid("secret")), 5).finish(secs(15.0));
    assert_refused(&out, "publish denied by the hook");
    let publish = hook
        .wait_call("publish", "secret", HOOK_WAIT)
        .expect("on_publish of the refused publisher");
    assert!(
        log_has(
            &srv,
            &[&format!("clientid={}", publish.clientid()), "reject=1403"]
        ),
        "the refusal is logged with 1403:\n{}",
        srv.log_tail(30)
    );
    assert_eq!(
        hook.count(|r| r.call() == "done"),
        0,
        "no on_done for a refused publish"
    );

    // on_connect refused (500): 1403 before any on_publish/on_play.
    let out = run_caller(srv.srt_url("#!::r=closed/cam,m=request"));
    assert_refused(&out, "connect denied by the hook");
    let connect = hook
        .wait_for(
            |r| r.call() == "connect" && r.get("app") == Some("closed"),
            HOOK_WAIT,
        )
        .expect("on_connect of the refused caller");
    assert!(log_has(
        &srv,
        &[&format!("clientid={}", connect.clientid()), "reject=1403"]
    ));
    assert_eq!(
        hook.count(|r| r.clientid() == connect.clientid()),
        1,
        "{}",
        hook.dump()
    );

    // A live stream, then: on_play 401 -> 1401; a second publisher -> 1409 and its on_done;
    // a play of a stream that is not live -> 1404 after on_play, with its on_done.
    let mut live = srt_publish(&srv.srt_url(&publish_streamid("members")), 30);
    wait_publishing(&hook, &srv, "members");
    let out = run_caller(srv.srt_url(&play_streamid("members")));
    assert_refused(&out, "play denied by the hook (401)");
    let play = hook
        .wait_call("play", "members", HOOK_WAIT)
        .expect("on_play of the refused player");
    assert!(
        log_has(
            &srv,
            &[&format!("clientid={}", play.clientid()), "reject=1401"]
        ),
        "{}",
        srv.log_tail(30)
    );

    let out = srt_publish(&srv.srt_url(&publish_streamid("members")), 5).finish(secs(15.0));
    assert_refused(&out, "second publisher of a live name");
    let seconds = poll(HOOK_WAIT, || {
        let found = hook.find(|r| r.call() == "publish" && r.name() == "members");
        (found.len() == 2).then_some(found)
    })
    .unwrap_or_else(|| panic!("on_publish of the second publisher: {}", hook.dump()));
    assert!(log_has(
        &srv,
        &[
            &format!("clientid={}", seconds[1].clientid()),
            "reject=1409"
        ]
    ));
    assert_one_done(
        &hook,
        seconds[1].clientid(),
        HOOK_WAIT,
        "the refused second publisher",
    );

    let out = run_caller(srv.srt_url(&play_streamid("nobody")));
    assert_refused(&out, "play of a stream that is not live");
    let missing = hook
        .wait_call("play", "nobody", HOOK_WAIT)
        .expect("on_play comes before the 1404");
    assert!(log_has(
        &srv,
        &[&format!("clientid={}", missing.clientid()), "reject=1404"]
    ));
    assert_one_done(
        &hook,
        missing.clientid(),
        HOOK_WAIT,
        "the allowed play of nothing",
    );

    // Unusable streamids: refused with 1400 before any hook.
    let calls = hook.records().len();
    for junk in ["junk", "", "#!::m=publish", "#!::r=live/x,m=bidirectional"] {
        let out = run_caller(srv.srt_url(junk));
        assert_refused(&out, &format!("streamid {junk:?}"));
    }
    assert_eq!(
        hook.records().len(),
        calls,
        "no hook for a junk streamid: {}",
        hook.dump()
    );
    assert!(
        log_has(&srv, &["reject=1400", "junk"]),
        "{}",
        srv.log_tail(30)
    );
    assert!(log_has(&srv, &["reject=1400", "empty streamid"]));
    live.kill();
}

#[test]
fn on_done_when_an_srt_player_and_publisher_are_killed() {
    let hook = HookServer::start();
    let srv = Server::start(&Config::new().srt_hooks(&hook.url("/srt"), ""));
    let mut publisher = srt_publish(&srv.srt_url(&publish_streamid("cam1")), 60);
    let publish = wait_publishing(&hook, &srv, "cam1");

    // A player killed with SIGKILL: SRT's idle timeout ends its connection.
    let player_url = format!(
        "{}{OPTS}",
        srv.srt_url("#!::r=live/cam1,m=request,who=killed")
    );
    let mut player = spawn_player(&player_url, 60.0);
    let play = hook
        .wait_call("play", "cam1", HOOK_WAIT)
        .expect("on_play of the player");
    thread::sleep(secs(1.5));
    assert!(player.running(), "the player plays: {}", player.stderr());
    send_signal(player.pid(), "KILL");
    player.kill();
    assert_one_done(&hook, play.clientid(), KILL_WAIT, "the killed player");

    // A player watching when the publisher is killed: the stream ends under it.
    let watching = spawn_player(&player_url.replace("killed", "watching"), 60.0);
    let watching_play = hook
        .wait_for(
            |r| r.call() == "play" && r.clientid() != play.clientid(),
            HOOK_WAIT,
        )
        .expect("on_play of the watching player");
    thread::sleep(secs(1.5));
    send_signal(publisher.pid(), "KILL");
    publisher.kill();
    assert_one_done(&hook, publish.clientid(), KILL_WAIT, "the killed publisher");
    assert_one_done(
        &hook,
        watching_play.clientid(),
        HOOK_WAIT,
        "the player of the ended stream",
    );
    let played = finish_player(watching, secs(10.0));
    assert!(
        played.frames > 0,
        "the watching player got frames: {}",
        played.out.stderr
    );
    assert!(
        !played.out.timed_out,
        "the player ends when the stream ends"
    );
}

#[test]
fn passphrase_mismatch_is_refused_and_the_listener_survives() {
    let hook = HookServer::start();
    let srv = Server::start(&Config::new().srt_hooks(&hook.url("/srt"), ""));
    // Callers that encrypt, against a server without a passphrase: refused at the handshake
    // (11, SRT_REJ_UNSECURE) — FFmpeg's default pbkeylen=0 does not even announce a key
    // length — and no hook is asked.
    for extra in ["", "&pbkeylen=32"] {
        let url = format!(
            "{}&passphrase=0123456789abcdef{extra}",
            srv.srt_url(&publish_streamid("enc"))
        );
        let out = srt_publish(&url, 3).finish(secs(15.0));
        assert_refused(&out, &format!("an encrypting caller ({extra:?})"));
    }
    assert_eq!(hook.records().len(), 0, "{}", hook.dump());
    assert!(
        log_has(&srv, &["reject=11 ", "has no <passphrase>"]),
        "{}",
        srv.log_tail(20)
    );
    let log = srv.log();
    assert!(
        !log.contains("panicked") && !log.contains("listener stopped"),
        "nothing panicked:\n{}",
        srv.log_tail(40)
    );

    // The listener still serves everyone else.
    let mut publisher = srt_publish(&srv.srt_url(&publish_streamid("plain")), 30);
    wait_publishing(&hook, &srv, "plain");
    let (frames, err) = read_frames(
        &format!("{}{OPTS}", srv.srt_url(&play_streamid("plain"))),
        1.0,
        secs(20.0),
    );
    assert!(frames >= 20, "decoded {frames} after the refusals: {err}");
    publisher.kill();
}

#[test]
fn encrypted_publish_and_play_with_a_passphrase() {
    let hook = HookServer::start();
    let srv = Server::start(
        &Config::new()
            .srt_hooks(&hook.url("/srt"), "")
            .srt_passphrase("streamgate-secret", Some(16)),
    );
    // FFmpeg's default key length (announced as 0) publishes; a player with another key
    // length (32) plays: the caller's key length is used.
    let url = format!(
        "{}&passphrase=streamgate-secret",
        srv.srt_url(&publish_streamid("enc"))
    );
    let mut publisher = srt_publish(&url, 30);
    wait_publishing(&hook, &srv, "enc");
    let play = srv.srt_url(&play_streamid("enc"));
    let (frames, err) = read_frames(
        &format!("{play}{OPTS}&passphrase=streamgate-secret&pbkeylen=32"),
        1.0,
        secs(20.0),
    );
    assert!(frames >= 20, "decoded {frames} over encrypted SRT: {err}");
    assert!(log_has(&srv, &["connected", "encrypted=true"]));

    // No passphrase, or the wrong one: refused.
    let run_player = |extra: &str| {
        let mut cmd = Command::new("ffmpeg");
        cmd.args(["-hide_banner", "-nostdin", "-loglevel", "error"])
            .args(["-i", &format!("{play}{OPTS}{extra}")])
            .args(["-t", "1", "-f", "null", "-"]);
        run("srt player", &mut cmd, secs(15.0))
    };
    assert_refused(&run_player(""), "a plain player of an encrypting server");
    assert_refused(
        &run_player("&passphrase=not-the-secret"),
        "a player with the wrong passphrase",
    );
    publisher.kill();
}

/// A UDP relay between one SRT caller and the server that drops every `nth` datagram from the
/// caller (none of the server's), counting what it dropped.
struct LossyRelay {
    port: u16,
    dropped: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl LossyRelay {
    fn start(server_port: u16, nth: u64) -> LossyRelay {
        let front = UdpSocket::bind("127.0.0.1:0").expect("bind relay front");
        let back = UdpSocket::bind("127.0.0.1:0").expect("bind relay back");
        back.connect(("127.0.0.1", server_port))
            .expect("connect relay back");
        for s in [&front, &back] {
            s.set_read_timeout(Some(Duration::from_millis(100)))
                .expect("timeout");
        }
        let port = front.local_addr().expect("relay addr").port();
        let caller = Arc::new(Mutex::new(None));
        let dropped = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (front2, back2) = (
            front.try_clone().expect("clone"),
            back.try_clone().expect("clone"),
        );
        let (caller2, dropped2, stop2) = (caller.clone(), dropped.clone(), stop.clone());
        let upstream = thread::spawn(move || {
            let mut buf = [0u8; 2048];
            let mut n = 0u64;
            while !stop2.load(Ordering::SeqCst) {
                let Ok((len, from)) = front.recv_from(&mut buf) else {
                    continue;
                };
                *caller2.lock().expect("caller") = Some(from);
                n += 1;
                if n % nth == 0 {
                    dropped2.fetch_add(1, Ordering::SeqCst);
                    continue;
                }
                let _ = back.send(&buf[..len]);
            }
        });
        let stop3 = stop.clone();
        let downstream = thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while !stop3.load(Ordering::SeqCst) {
                let Ok(len) = back2.recv(&mut buf) else {
                    continue;
                };
                if let Some(to) = *caller.lock().expect("caller") {
                    let _ = front2.send_to(&buf[..len], to);
                }
            }
        });
        LossyRelay {
            port,
            dropped,
            stop,
            threads: vec![upstream, downstream],
        }
    }
}

impl Drop for LossyRelay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

#[test]
fn five_percent_loss_on_the_publisher_link_and_the_player_still_decodes() {
    let hook = HookServer::start();
    let srv = Server::start(&Config::new().srt_hooks(&hook.url("/srt"), ""));
    let relay = LossyRelay::start(srv.srt_port.expect("srt"), 20);
    let url = format!(
        "srt://127.0.0.1:{}?streamid={}",
        relay.port,
        publish_streamid("lossy")
    );
    let mut publisher = srt_publish(&url, 30);
    wait_publishing(&hook, &srv, "lossy");
    let started = Instant::now();
    let (frames, err) = read_frames(
        &format!("{}{OPTS}", srv.srt_url(&play_streamid("lossy"))),
        3.0,
        secs(20.0),
    );
    let dropped = relay.dropped.load(Ordering::SeqCst);
    assert!(
        dropped >= 20,
        "the relay dropped {dropped} datagrams in {:?}",
        started.elapsed()
    );
    assert!(
        frames >= 70,
        "decoded {frames} of 75 frames with 5% loss upstream: {err}"
    );
    assert!(
        !err.contains("corrupt") && !err.contains("error while decoding"),
        "SRT recovered the losses: {err}"
    );
    publisher.kill();
}

#[test]
fn shutdown_ends_srt_sessions_with_their_on_done() {
    let hook = HookServer::start();
    let mut srv = Server::start(&Config::new().srt_hooks(&hook.url("/srt"), ""));
    let _publisher = srt_publish(&srv.srt_url(&publish_streamid("bye")), 60);
    let publish = wait_publishing(&hook, &srv, "bye");
    let _player = spawn_player(
        &format!("{}{OPTS}", srv.srt_url(&play_streamid("bye"))),
        60.0,
    );
    let play = hook
        .wait_call("play", "bye", HOOK_WAIT)
        .expect("on_play of the player");
    thread::sleep(secs(1.0));
    let exit = srv.stop_graceful();
    assert!(
        exit.is_some_and(|(st, _)| st.success()),
        "clean exit: {exit:?}\n{}",
        srv.log_tail(30)
    );
    for id in [publish.clientid(), play.clientid()] {
        assert_eq!(
            hook.count(|r| r.call() == "done" && r.clientid() == id),
            1,
            "on_done of {id} before exit: {}",
            hook.dump()
        );
    }
}

/// An SRT conclusion handshake (HSv5, as libsrt sends it) followed by `extensions`, each an
/// extension type and its contents (a whole number of 4-byte words).
fn conclusion_with(extensions: &[(u16, &[u8])]) -> Vec<u8> {
    let mut p = vec![0x80, 0, 0, 0]; // control packet, type 0: handshake
    p.extend_from_slice(&[0; 12]); // additional info, timestamp, destination socket id
    p.extend_from_slice(&5u32.to_be_bytes()); // HSv5
    p.extend_from_slice(&0u16.to_be_bytes()); // no encryption
    p.extend_from_slice(&0x0005u16.to_be_bytes()); // extension flags: HSREQ, CONFIG
    p.extend_from_slice(&1u32.to_be_bytes()); // initial sequence number
    p.extend_from_slice(&1500u32.to_be_bytes()); // MTU
    p.extend_from_slice(&8192u32.to_be_bytes()); // flow window
    p.extend_from_slice(&(-1i32).to_be_bytes()); // conclusion
    p.extend_from_slice(&0x1234u32.to_be_bytes()); // socket id
    p.extend_from_slice(&0u32.to_be_bytes()); // cookie
    p.extend_from_slice(&[0; 16]); // peer address
    for (kind, body) in extensions {
        p.extend_from_slice(&kind.to_be_bytes());
        p.extend_from_slice(&((body.len() / 4) as u16).to_be_bytes());
        p.extend_from_slice(body);
    }
    p
}

/// Datagrams srt-protocol 0.4.4 panics on (`unimplemented!`, `todo!`, reads past the end),
/// and malformed extension lists.
fn hostile_datagrams() -> Vec<(&'static str, Vec<u8>)> {
    // HSREQ: SRT 1.5.1, TSBPD both ways, 120 ms each way.
    let hsreq: &[u8] = &[0, 1, 5, 1, 0, 0, 0, 0xbf, 0, 0x78, 0, 0x78];
    let mut past_end = conclusion_with(&[(1, hsreq), (5, b"evil")]);
    let at = past_end.len() - 6;
    past_end[at..at + 2].copy_from_slice(&40u16.to_be_bytes());
    let mut truncated = conclusion_with(&[(1, hsreq)]);
    truncated.extend_from_slice(&[0, 5]);
    let control = |kind: u16, subtype: u16, body: &[u8]| {
        let mut p = vec![0u8; 16];
        p[0..2].copy_from_slice(&(0x8000 | kind).to_be_bytes());
        p[2..4].copy_from_slice(&subtype.to_be_bytes());
        p.extend_from_slice(body);
        p
    };
    vec![
        (
            "congestion control extension (6)",
            conclusion_with(&[(1, hsreq), (6, b"evil")]),
        ),
        (
            "group membership extension (8)",
            conclusion_with(&[(1, hsreq), (8, &[1, 0, 0, 0])]),
        ),
        (
            "empty group extension (8)",
            conclusion_with(&[(8, b""), (1, hsreq)]),
        ),
        (
            "packet filter extension (7)",
            conclusion_with(&[(7, b"a:b\0"), (1, hsreq)]),
        ),
        ("empty SID", conclusion_with(&[(5, b""), (1, hsreq)])),
        ("extension length past the end", past_end),
        ("truncated extension", truncated),
        (
            "short HSREQ",
            conclusion_with(&[(1, &hsreq[..8]), (5, b"evil")]),
        ),
        ("SRT control subtype 8, empty", control(0x7fff, 8, b"")),
        ("SRT control subtype 5, empty", control(0x7fff, 5, b"")),
        (
            "NAK ending inside a range",
            control(3, 0, &0x8000_0001u32.to_be_bytes()),
        ),
    ]
}

/// Thousands of hostile handshakes and control packets: none reaches srt-protocol's panics,
/// the log gets a few rate-limited lines (not one per packet), and real callers still publish
/// and play.
#[test]
fn hostile_handshakes_are_dropped_quietly_and_the_listener_goes_on() {
    let hook = HookServer::start();
    let mut srv = Server::start(&Config::new().srt_hooks(&hook.url("/srt"), ""));
    let port = srv.srt_port.expect("srt");
    let attacker = UdpSocket::bind("127.0.0.1:0").expect("bind");
    // The listener's report of dropped datagrams (refused, or unparsable).
    let reported = |text: &str| {
        text.contains("dropping SRT packets")
            || text.contains("dropping datagrams that are not SRT")
    };
    let datagrams = hostile_datagrams();
    let rounds = 4000 / datagrams.len();
    for _ in 0..rounds {
        for (_, d) in &datagrams {
            attacker.send_to(d, ("127.0.0.1", port)).expect("send");
        }
        // Paced a little, so the server's socket buffer takes them all.
        thread::sleep(Duration::from_micros(200));
    }
    assert!(
        poll(secs(5.0), || reported(&srv.log()).then_some(())).is_some(),
        "the hostile datagrams are reported:\n{}",
        srv.log_tail(20)
    );
    let log = srv.log();
    assert!(
        !log.contains("panicked"),
        "no panic report for any hostile datagram:\n{}",
        srv.log_tail(30)
    );
    let lines = log.lines().filter(|l| reported(l)).count();
    assert!(
        (1..=3).contains(&lines),
        "{} datagrams are reported in {lines} rate-limited lines, not one per packet:\n{}",
        rounds * datagrams.len(),
        srv.log_tail(30)
    );

    // The listener still answers real callers: a publish and a play.
    let mut publisher = srt_publish(&srv.srt_url(&publish_streamid("after")), 30);
    wait_publishing(&hook, &srv, "after");
    let (frames, err) = read_frames(
        &format!("{}{OPTS}", srv.srt_url(&play_streamid("after"))),
        2.0,
        secs(20.0),
    );
    assert!(
        frames >= 40,
        "decoded {frames} frames after the attack: {err}"
    );
    publisher.kill();
    assert!(srv.alive(), "the server is still running");
    assert!(
        !srv.log().contains("listener stopped"),
        "{}",
        srv.log_tail(20)
    );
}

#[test]
fn srt_in_rtsp_out_and_rtsp_in_srt_out() {
    let hook = HookServer::start();
    let srv = Server::start(
        &Config::new()
            .rtsp_hooks(&hook.url("/rtsp"), "")
            .srt_hooks(&hook.url("/srt"), ""),
    );
    let mut srt_in = srt_publish(&srv.srt_url(&publish_streamid("fromsrt")), 30);
    wait_publishing(&hook, &srv, "fromsrt");
    let (codecs, out) =
        probe_codecs_with(&srv.rtsp_url("live/fromsrt"), &["-rtsp_transport", "tcp"]);
    assert!(
        codecs.contains("h264") && codecs.contains("aac"),
        "RTSP player of an SRT stream: {codecs:?} {}",
        out.stderr
    );
    srt_in.kill();

    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-nostdin", "-loglevel", "error", "-re"])
        .args(["-f", "lavfi", "-i", "testsrc=size=320x240:rate=25"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-tune",
            "zerolatency",
        ])
        .args([
            "-g", "25", "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "64k",
        ])
        .args(["-t", "30", "-f", "rtsp", "-rtsp_transport", "tcp"])
        .arg(srv.rtsp_url("live/fromrtsp"));
    let mut rtsp_in = Proc::spawn("rtsp publish", &mut cmd);
    wait_publishing(&hook, &srv, "fromrtsp");
    let url = format!("{}{OPTS}", srv.srt_url(&play_streamid("fromrtsp")));
    let (frames, err) = read_frames(&url, 2.0, secs(20.0));
    assert!(
        frames >= 40,
        "SRT player of an RTSP stream decoded {frames}: {err}"
    );
    rtsp_in.kill();
}

/// `r=live/a/b` is the stream `live/a/b` of every other protocol: app `live/a`, name `b`, in
/// the stream key (an RTMP player of `rtmp://…/live/a/b` plays it) and in the hook fields,
/// which are those of an RTMP publish of the same path.
#[test]
fn an_srt_resource_splits_into_app_and_name_as_an_rtmp_path_does() {
    let hook = HookServer::start();
    let srv = Server::start(
        &Config::new()
            .hooks(&hook.url("/rtmp"), "")
            .srt_hooks(&hook.url("/srt"), ""),
    );
    let mut srt_in = srt_publish(&srv.srt_url("#!::r=live/a/b,m=publish"), 30);
    let srt_publish = hook
        .wait_for(
            |r| r.path == "/srt/publish" && r.call() == "publish",
            HOOK_WAIT,
        )
        .unwrap_or_else(|| panic!("no SRT on_publish: {}\n{}", hook.dump(), srv.log_tail(30)));
    assert_eq!(
        (srt_publish.field("app"), srt_publish.field("name")),
        ("live/a", "b"),
        "{srt_publish:?}"
    );
    thread::sleep(secs(1.5));
    let (frames, err) = read_frames(&srv.url("live/a/b"), 2.0, secs(20.0));
    assert!(
        frames >= 40,
        "an RTMP player of live/a/b decoded {frames} frames of the SRT r=live/a/b: {err}"
    );
    srt_in.kill();
    assert_one_done(
        &hook,
        srt_publish.clientid(),
        KILL_WAIT,
        "the SRT publisher",
    );

    let mut rtmp_in = publish(&srv.url("live/a/b"), 30);
    let rtmp_publish = hook
        .wait_for(
            |r| r.path == "/rtmp/publish" && r.call() == "publish",
            HOOK_WAIT,
        )
        .unwrap_or_else(|| panic!("no RTMP on_publish: {}", hook.dump()));
    assert_eq!(
        (rtmp_publish.field("app"), rtmp_publish.field("name")),
        (srt_publish.field("app"), srt_publish.field("name")),
        "the same path over RTMP: {rtmp_publish:?}"
    );
    rtmp_in.kill();
}

/// The presentation times (seconds) of the buffers a `fakesink name=NAME silent=false` printed
/// in `gst-launch-1.0 -v` output, in order.
fn gst_sink_pts(out: &str, sink: &str) -> Vec<f64> {
    let tag = format!("({sink}:sink) (");
    out.lines()
        .filter_map(|l| l.split_once(&tag).map(|(_, rest)| rest))
        .filter_map(|rest| rest.split_once("pts: ").map(|(_, pts)| pts))
        .filter_map(|pts| {
            let pts = pts.split(',').next()?;
            let mut parts = pts.split(':');
            let (h, m, s) = (parts.next()?, parts.next()?, parts.next()?);
            Some(
                h.parse::<f64>().ok()? * 3600.0
                    + m.parse::<f64>().ok()? * 60.0
                    + s.parse::<f64>().ok()?,
            )
        })
        .collect()
}

/// GStreamer's `srtsrc` joining a live stream whose GOP is about 2 s old: it stamps its buffers with
/// SRT's source time of each packet, so the cached GOP the server starts a player with must be
/// stamped at the pace of its media. Stamped at the moment the burst was sent (within a few
/// milliseconds), the GOP's frames came out of `tsdemux` squeezed: 40 ms apart for the first
/// few, then closer, then going back (0.51 s, ..., 0.88 s, ..., back to 0.52 s for the 50th);
/// now they are 40 ms apart as the publisher produced them.
#[test]
fn srtsrc_gets_the_gop_a_player_starts_with_at_the_pace_of_its_media() {
    let hook = HookServer::start();
    let srv = Server::start(
        &Config::new()
            .hooks(&hook.url("/rtmp"), "")
            .srt_hooks(&hook.url("/srt"), ""),
    );
    // One keyframe every 10 s: the GOP cached 2 s after the start is 2 s of frames (under the
    // 3 s the server paces at most; an older part would be released at once).
    let mut publisher = publish_with(&srv.url("live/gst"), 60, TESTSRC, 250);
    hook.wait_call("publish", "gst", HOOK_WAIT)
        .unwrap_or_else(|| panic!("on_publish: {}", hook.dump()));
    thread::sleep(secs(2.0));
    let uri = srv.srt_url("live/gst");
    let mut cmd = Command::new("gst-launch-1.0");
    cmd.args(["-v", "srtsrc", &format!("uri={uri}"), "!", "tsdemux", "!"])
        .args([
            "h264parse",
            "!",
            "fakesink",
            "name=vid",
            "silent=false",
            "sync=false",
        ]);
    let mut player = Proc::spawn("gst-launch-1.0 srtsrc", &mut cmd);
    let frames = poll(secs(20.0), || {
        let pts = gst_sink_pts(&player.stdout(), "vid");
        (pts.len() >= 60).then_some(pts)
    });
    player.kill();
    publisher.kill();
    let out = player.finish(secs(5.0));
    let pts = frames.unwrap_or_else(|| {
        panic!(
            "srtsrc decoded fewer than 60 frames in 20 s: {}\n{}",
            out.text(),
            srv.log_tail(20)
        )
    });
    let first: Vec<f64> = pts[..50].to_vec();
    let steps: Vec<f64> = first.windows(2).map(|w| w[1] - w[0]).collect();
    let shown: Vec<String> = first.iter().map(|t| format!("{t:.3}")).collect();
    assert!(
        steps.iter().all(|s| (0.030..=0.050).contains(s)),
        "the first 50 frames are 40 ms apart, as the publisher produced them: {shown:?}"
    );
    assert!(
        first[49] - first[0] >= 1.9,
        "the first 50 frames span 2 s of media: {shown:?}"
    );
}

/// A player that asks for more latency than the server's `<latency_ms>` (120 ms by default)
/// plays with what it asked for: SRT agrees on the larger of both sides' latencies, and the
/// libsrt caller takes the agreement from the listener's answer. srt-live-transmit's
/// statistics report the receive (TSBPD) latency its libsrt uses. srt-protocol answered with
/// the server's own 120 ms, and the player asking for 1000 ms played with 120 ms.
#[test]
fn an_srt_player_plays_with_the_latency_it_asked_for() {
    let hook = HookServer::start();
    let srv = Server::start(
        &Config::new()
            .hooks(&hook.url("/rtmp"), "")
            .srt_hooks(&hook.url("/srt"), ""),
    );
    let mut publisher = publish(&srv.url("live/latency"), 60);
    hook.wait_call("publish", "latency", HOOK_WAIT)
        .unwrap_or_else(|| panic!("on_publish: {}", hook.dump()));
    let dir = TempDir::new("slt");
    let stats = dir.file("stats.json");
    let mut cmd = Command::new("srt-live-transmit");
    cmd.arg(format!("{}&latency=1000", srv.srt_url("live/latency")))
        .args(["file://con", "-s:100", "-pf:json"])
        .arg(format!("-statsout:{}", stats.display()))
        .stdout(std::process::Stdio::null());
    let mut player = Proc::spawn("srt-live-transmit", &mut cmd);
    let latency = poll(secs(15.0), || {
        let text = std::fs::read_to_string(&stats).unwrap_or_default();
        let at = text.find("\"msTsbPdDelay\":")? + "\"msTsbPdDelay\":".len();
        let digits: String = text[at..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse::<u64>().ok()
    });
    player.kill();
    publisher.kill();
    let out = player.finish(secs(5.0));
    assert_eq!(
        latency,
        Some(1000),
        "the player's TSBPD latency: {}\n{}",
        out.text(),
        srv.log_tail(10)
    );
}
