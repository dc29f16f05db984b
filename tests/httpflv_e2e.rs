//! End-to-end tests of HTTP-FLV playback with HTTP Notify: ffmpeg publishes over RTMP, ffmpeg /
//! ffprobe and raw HTTP clients play over HTTP-FLV, and a real business server records and
//! answers every callback.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use streamgate_testkit::*;

const HOOK_WAIT: Duration = Duration::from_secs(10);

/// A raw HTTP exchange: the response head and up to `body_limit` body bytes, reading until
/// the server closes, `body_limit` is reached or `timeout` passes.
struct Exchange {
    head: String,
    body: Vec<u8>,
    closed: bool,
}

impl Exchange {
    fn status(&self) -> u16 {
        self.head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }

    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    }
}

fn exchange(port: u16, request: &str, body_limit: usize, timeout: Duration) -> Exchange {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    s.write_all(request.as_bytes()).expect("send request");
    let end = Instant::now() + timeout;
    let mut data = Vec::new();
    let mut closed = false;
    let mut buf = [0u8; 16384];
    while Instant::now() < end {
        match s.read(&mut buf) {
            Ok(0) => {
                closed = true;
                break;
            }
            Ok(n) => data.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => {
                closed = true;
                break;
            }
        }
        if let Some(i) = find(&data, b"\r\n\r\n") {
            if data.len() - (i + 4) >= body_limit {
                break;
            }
        }
    }
    let split = find(&data, b"\r\n\r\n").map_or(data.len(), |i| i + 4);
    Exchange {
        head: String::from_utf8_lossy(&data[..split]).into_owned(),
        body: data[split..].to_vec(),
        closed,
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn get(port: u16, target: &str) -> String {
    format!("GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n")
}

/// Waits until a stream is live: an HTTP-FLV GET answers 200.
fn wait_live(srv: &Server, target: &str) {
    let port = srv.httpflv_port.expect("httpflv enabled");
    let live = poll(secs(15.0), || {
        (exchange(port, &get(port, target), 13, secs(3.0)).status() == 200).then_some(())
    });
    assert!(
        live.is_some(),
        "{target} never went live:\n{}",
        srv.log_tail(30)
    );
}

#[test]
fn play_over_httpflv_with_every_hook_field_and_one_done() {
    let hook = HookServer::start();
    let srv = Server::start(&Config::new().httpflv_hooks(&hook.url("/httpflv"), ""));
    let port = srv.httpflv_port.expect("httpflv");
    let mut publisher = publish(&srv.url("live/cam1"), 20);
    wait_live(&srv, "/live/cam1.flv");

    let codecs = probe_codecs(&srv.flv_url("live/cam1.flv"));
    assert!(
        codecs.contains("h264") && codecs.contains("aac"),
        "ffprobe over HTTP-FLV sees {codecs:?}"
    );
    let before = hook.records().len();
    let url = srv.flv_url("live/cam1.flv?token=abc");
    let (frames, err) = read_frames(&url, 2.0, secs(20.0));
    assert!(frames >= 40, "decoded {frames} frames over HTTP-FLV: {err}");

    let new: Vec<Record> = hook.records().into_iter().skip(before).collect();
    let connect = new
        .iter()
        .find(|r| r.call() == "connect")
        .unwrap_or_else(|| panic!("no on_connect: {}", hook.dump()));
    assert_fields(connect, "httpflv", "connect", "", &url, "");
    assert_eq!(connect.path, "/httpflv/connect");
    let play = new
        .iter()
        .find(|r| r.call() == "play")
        .unwrap_or_else(|| panic!("no on_play: {}", hook.dump()));
    assert_fields(play, "httpflv", "play", "cam1", &url, "");
    assert_eq!(play.clientid(), connect.clientid(), "one client, one id");
    assert!(connect.seq < play.seq, "connect comes before play");
    let done = hook
        .wait_for(
            |r| r.call() == "done" && r.clientid() == play.clientid(),
            HOOK_WAIT,
        )
        .unwrap_or_else(|| panic!("no on_done for the player: {}", hook.dump()));
    assert_fields(&done, "httpflv", "done", "cam1", &url, "");
    thread::sleep(secs(1.0));
    assert_eq!(
        hook.count(|r| r.call() == "done" && r.clientid() == play.clientid()),
        1,
        "{}",
        hook.dump()
    );

    // The response itself: 200, FLV content type, CORS, an FLV header with both tracks.
    let ex = exchange(port, &get(port, "/live/cam1.flv"), 13, secs(5.0));
    assert_eq!(ex.status(), 200, "{}", ex.head);
    assert_eq!(ex.header("content-type").as_deref(), Some("video/x-flv"));
    assert_eq!(
        ex.header("access-control-allow-origin").as_deref(),
        Some("*")
    );
    assert_eq!(
        &ex.body[..5],
        b"FLV\x01\x05",
        "FLV header with audio and video"
    );
    publisher.kill();
}

#[test]
fn refusals_missing_streams_and_bad_requests_get_http_statuses() {
    let hook = HookServer::start();
    hook.on_field("/httpflv/play", "name", "secret", Reply::Status(403));
    hook.on_field("/httpflv/play", "name", "members", Reply::Status(401));
    let srv = Server::start(
        &Config::new()
            .hooks(&hook.url("/rtmp"), "")
            .httpflv_hooks(&hook.url("/httpflv"), ""),
    );
    let port = srv.httpflv_port.expect("httpflv");
    let mut publisher = publish(&srv.url("live/secret"), 15);
    let mut second = publish(&srv.url("live/members"), 15);
    for name in ["secret", "members"] {
        assert!(
            hook.wait_call("publish", name, HOOK_WAIT).is_some(),
            "{name} publishes: {}",
            hook.dump()
        );
    }
    thread::sleep(secs(1.0));

    let denied = exchange(port, &get(port, "/live/secret.flv"), usize::MAX, secs(5.0));
    assert_eq!(denied.status(), 403, "{}", denied.head);
    assert!(
        !denied.body.starts_with(b"FLV"),
        "no media to a refused player"
    );
    assert!(denied.closed, "a refusal closes the connection");
    let unauthorized = exchange(port, &get(port, "/live/members.flv"), 1, secs(5.0));
    assert_eq!(unauthorized.status(), 401, "{}", unauthorized.head);

    // Allowed by the hook, but nobody publishes it: 404 after on_play, and its on_done.
    let missing = exchange(port, &get(port, "/live/nobody.flv"), 1, secs(5.0));
    assert_eq!(missing.status(), 404, "{}", missing.head);
    let play = hook
        .wait_call("play", "nobody", HOOK_WAIT)
        .expect("on_play comes before the 404");
    assert!(
        hook.wait_for(
            |r| r.call() == "done" && r.clientid() == play.clientid(),
            HOOK_WAIT
        )
        .is_some(),
        "{}",
        hook.dump()
    );

    // Malformed paths: 400 before any hook.
    let calls = hook.records().len();
    for target in ["/favicon.ico", "/cam1.flv", "/live/.flv", "/live/a%zz.flv"] {
        let ex = exchange(port, &get(port, target), 1, secs(5.0));
        assert_eq!(ex.status(), 400, "{target}: {}", ex.head);
    }
    let garbage = exchange(port, "\x16\x03\x01\x00garbage\r\n\r\n", 1, secs(5.0));
    assert_eq!(garbage.status(), 400, "{}", garbage.head);
    assert_eq!(
        hook.records().len(),
        calls,
        "no hook for a bad request: {}",
        hook.dump()
    );

    // Other methods, the CORS preflight, HEAD.
    let post = exchange(
        port,
        "POST /live/secret.flv HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
        1,
        secs(5.0),
    );
    assert_eq!(post.status(), 405, "{}", post.head);
    let options = exchange(
        port,
        "OPTIONS /live/members.flv HTTP/1.1\r\nOrigin: http://page\r\n\r\n",
        1,
        secs(5.0),
    );
    assert_eq!(options.status(), 204, "{}", options.head);
    assert!(options
        .header("access-control-allow-methods")
        .is_some_and(|m| m.contains("GET")));
    publisher.kill();
    second.kill();
}

#[test]
fn player_on_done_when_the_publisher_leaves_and_when_the_player_is_killed() {
    let hook = HookServer::start();
    let srv = Server::start(&Config::new().httpflv_hooks(&hook.url("/httpflv"), ""));
    let mut publisher = publish(&srv.url("live/cam1"), 30);
    wait_live(&srv, "/live/cam1.flv");

    // A player killed with SIGKILL.
    let mut killed = spawn_player(&srv.flv_url("live/cam1.flv?who=killed"), 30.0);
    let killed_play = hook
        .wait_for(
            |r| r.call() == "play" && r.field("url").ends_with("who=killed"),
            HOOK_WAIT,
        )
        .expect("on_play of the killed player");
    thread::sleep(secs(1.5));
    send_signal(killed.pid(), "KILL");
    killed.kill();
    assert!(
        hook.wait_for(
            |r| r.call() == "done" && r.clientid() == killed_play.clientid(),
            HOOK_WAIT
        )
        .is_some(),
        "no on_done after kill -9 of the player: {}",
        hook.dump()
    );

    // A player still attached when the publisher goes: its connection ends, on_done once.
    let watching = spawn_player(&srv.flv_url("live/cam1.flv?who=watching"), 60.0);
    let watching_play = hook
        .wait_for(
            |r| r.call() == "play" && r.field("url").ends_with("who=watching"),
            HOOK_WAIT,
        )
        .expect("on_play of the watching player");
    thread::sleep(secs(1.5));
    send_signal(publisher.pid(), "KILL");
    publisher.kill();
    assert!(
        hook.wait_for(
            |r| r.call() == "done" && r.clientid() == watching_play.clientid(),
            HOOK_WAIT
        )
        .is_some(),
        "no on_done when the stream ended under the player: {}",
        hook.dump()
    );
    let played = finish_player(watching, secs(10.0));
    assert!(
        played.frames > 0,
        "the watching player got frames before the end"
    );
    thread::sleep(secs(1.0));
    for id in [killed_play.clientid(), watching_play.clientid()] {
        assert_eq!(
            hook.count(|r| r.call() == "done" && r.clientid() == id),
            1,
            "{}",
            hook.dump()
        );
    }
}

#[test]
fn a_stalled_player_is_dropped_while_another_keeps_full_frame_rate() {
    let hook = HookServer::start();
    let srv = Server::start(
        &Config::new()
            .httpflv_hooks(&hook.url("/httpflv"), "")
            // Above one keyframe of this stream (about 78 KB) and the other media of a
            // merge window, which wait in every player's queue together: a smaller queue
            // makes a player that reads at full speed drop to the next keyframe too.
            .httpflv_limits(256 << 10, 3000),
    );
    let port = srv.httpflv_port.expect("httpflv");
    // A heavier stream so the slow player's socket buffers fill quickly.
    let mut publisher = publish_with(
        &srv.url("live/big"),
        40,
        "testsrc2=size=1280x720:rate=25",
        25,
    );
    wait_live(&srv, "/live/big.flv");

    // The slow player: asks for the stream, reads a trickle, then nothing at all.
    let mut slow = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    slow.write_all(get(port, "/live/big.flv?who=slow").as_bytes())
        .expect("request");
    let slow_play = hook
        .wait_for(
            |r| r.call() == "play" && r.field("url").ends_with("who=slow"),
            HOOK_WAIT,
        )
        .expect("on_play of the slow player");
    let reader = thread::spawn(move || {
        let mut buf = [0u8; 512];
        for _ in 0..20 {
            let _ = slow.read(&mut buf);
            thread::sleep(Duration::from_millis(100));
        }
        // Hold the socket open without reading until the server gives up on it.
        thread::sleep(Duration::from_secs(40));
        drop(slow);
    });

    // Meanwhile a normal player decodes at full rate.
    let (frames, err) = read_frames(&srv.flv_url("live/big.flv?who=fast"), 4.0, secs(30.0));
    assert!(
        frames >= 95,
        "the fast player decoded only {frames} of 100 frames: {err}"
    );

    // The slow player falls behind, drops to keyframes, and is closed as stalled.
    let log_says = |what: &str| {
        poll(secs(30.0), || {
            srv.log()
                .lines()
                .any(|l| {
                    l.contains(what) && l.contains(&format!("clientid={}", slow_play.clientid()))
                })
                .then_some(())
        })
        .is_some()
    };
    assert!(
        log_says("dropping to the next keyframe"),
        "{}",
        srv.log_tail(40)
    );
    assert!(log_says("player stalled; closing"), "{}", srv.log_tail(40));
    assert!(
        hook.wait_for(
            |r| r.call() == "done" && r.clientid() == slow_play.clientid(),
            HOOK_WAIT
        )
        .is_some(),
        "the stalled player gets its on_done: {}",
        hook.dump()
    );
    publisher.kill();
    drop(reader);
}
