//! IPv6: every listener binds its `<address>`, by default one dual-stack socket on `::`.
//! Real ffmpeg clients publish and play over `[::1]` with every protocol (RTSP over TCP and
//! UDP), and the real hook server sees `addr=::1` and the URLs as the clients wrote them; IPv4
//! clients of the same server still show as `127.0.0.1`; a listener bound to `127.0.0.1` takes
//! no IPv6 client (and one bound to `::1` no IPv4 client); a bad `<address>` is refused with
//! its line.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use streamgate_testkit::*;

/// `rtmp://[::1]:PORT/live/{name}`.
fn rtmp6(srv: &Server, name: &str) -> String {
    format!("rtmp://[::1]:{}/live/{name}", srv.port)
}

/// `rtsp://[::1]:PORT/live/{name}`.
fn rtsp6(srv: &Server, name: &str) -> String {
    format!("rtsp://[::1]:{}/live/{name}", srv.rtsp_port.expect("rtsp"))
}

/// `http://[::1]:PORT/live/{name}.flv`.
fn flv6(srv: &Server, name: &str) -> String {
    format!(
        "http://[::1]:{}/live/{name}.flv",
        srv.httpflv_port.expect("httpflv")
    )
}

/// An SRT URL of `live/{name}` in `mode` (`publish` or `request`) on `host`, with the tests'
/// latency (and whole TS packets per payload for a publisher).
fn srt_on(host: &str, srv: &Server, name: &str, mode: &str) -> String {
    let size = if mode == "publish" {
        "&pkt_size=1316"
    } else {
        ""
    };
    format!(
        "srt://{host}:{}?streamid=#!::r=live/{name},m={mode}{size}{SRT_OPTS}",
        srv.srt_port.expect("srt")
    )
}

/// ffmpeg publishing the test pattern (H.264 + AAC) as `format` (`-f` and the rest, URL
/// last).
fn publisher(format: &[&str]) -> Proc {
    encoder_publisher("ffmpeg", encoders::X264, encoders::AAC, format)
}

/// Video frames ffmpeg decodes from `url` in 2 s, with `pre` (input options) before it.
fn frames(url: &str, pre: &[&str]) -> (usize, String) {
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-nostdin", "-loglevel", "error"])
        .args(pre)
        .args(["-i", url, "-t", "2", "-map", "0:v:0", "-f", "framemd5", "-"]);
    let out = run(&format!("play {url}"), &mut cmd, Duration::from_secs(30));
    (count_frames(&out.stdout), out.text())
}

/// The `on_play` of a `protocol` player of `name` from `addr`, waited for.
fn play_call(hook: &HookServer, protocol: &str, name: &str, addr: &str) -> Record {
    hook.wait_for(
        |r| {
            r.is("play", name) && r.get("protocol") == Some(protocol) && r.get("addr") == Some(addr)
        },
        HOOK_WAIT,
    )
    .unwrap_or_else(|| {
        panic!(
            "no on_play of {protocol} {name} from {addr}: {}",
            hook.dump()
        )
    })
}

/// Plays `url` and checks it decoded frames and its `on_play` carried `addr` and `url`.
#[allow(clippy::too_many_arguments)]
fn assert_plays(
    hook: &HookServer,
    srv: &Server,
    protocol: &str,
    name: &str,
    url: &str,
    pre: &[&str],
    addr: &str,
    hook_url: &str,
) {
    let (decoded, out) = frames(url, pre);
    assert!(
        decoded > 10,
        "{protocol} player of {url} decoded {decoded} frames: {out}\n{}",
        srv.log_tail(40)
    );
    let play = play_call(hook, protocol, name, addr);
    assert_eq!(play.field("url"), hook_url, "url of {play:?}");
    assert_field_order(&play);
}

/// A DESCRIBE over a raw socket to `addr`: the whole answer (head and SDP).
fn describe(addr: SocketAddr, url: &str) -> String {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        s,
        "DESCRIBE {url} RTSP/1.0\r\nCSeq: 2\r\nAccept: application/sdp\r\n\r\n"
    )
    .expect("write");
    let mut answer = Vec::new();
    let mut chunk = [0u8; 4096];
    let end = Instant::now() + Duration::from_secs(10);
    while Instant::now() < end {
        let text = String::from_utf8_lossy(&answer).into_owned();
        if let Some(head_end) = text.find("\r\n\r\n") {
            let length = text[..head_end]
                .lines()
                .find_map(|l| l.strip_prefix("Content-Length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if answer.len() >= head_end + 4 + length {
                return text;
            }
        }
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => answer.extend_from_slice(&chunk[..n]),
        }
    }
    String::from_utf8_lossy(&answer).into_owned()
}

#[test]
fn every_protocol_publishes_and_plays_over_ipv6_loopback() {
    let hook = HookServer::start();
    let srv = hooked_server(&hook);
    let (rtmp_port, rtsp_port, srt_port) = (
        srv.port,
        srv.rtsp_port.expect("rtsp"),
        srv.srt_port.expect("srt"),
    );

    // One publisher of each kind, all over [::1].
    let mut rtmp_pub = publisher(&["-f", "flv", &rtmp6(&srv, "v6rtmp")]);
    let mut rtsp_udp_pub = publisher(&[
        "-f",
        "rtsp",
        "-rtsp_transport",
        "udp",
        &rtsp6(&srv, "v6rtspu"),
    ]);
    let mut rtsp_tcp_pub = publisher(&[
        "-f",
        "rtsp",
        "-rtsp_transport",
        "tcp",
        &rtsp6(&srv, "v6rtspt"),
    ]);
    let mut srt_pub = publisher(&["-f", "mpegts", &srt_on("[::1]", &srv, "v6srt", "publish")]);
    for (publisher, name) in [
        (&mut rtmp_pub, "v6rtmp"),
        (&mut rtsp_udp_pub, "v6rtspu"),
        (&mut rtsp_tcp_pub, "v6rtspt"),
        (&mut srt_pub, "v6srt"),
    ] {
        wait_publishing(&hook, &srv, publisher, name);
    }
    let publish_of = |name: &str| {
        hook.find(|r| r.is("publish", name))
            .pop()
            .expect("waited for above")
    };
    let rtmp = publish_of("v6rtmp");
    assert_eq!(rtmp.field("addr"), "::1", "{rtmp:?}");
    assert_eq!(
        rtmp.field("url"),
        format!("rtmp://[::1]:{rtmp_port}/live/v6rtmp")
    );
    assert_eq!(
        rtmp.field("tcurl"),
        format!("rtmp://[::1]:{rtmp_port}/live")
    );
    assert_field_order(&rtmp);
    for name in ["v6rtspu", "v6rtspt"] {
        let r = publish_of(name);
        assert_eq!(r.field("addr"), "::1", "{r:?}");
        assert_eq!(
            r.field("url"),
            format!("rtsp://[::1]:{rtsp_port}/live/{name}")
        );
    }
    let srt = publish_of("v6srt");
    assert_eq!(srt.field("addr"), "::1", "{srt:?}");
    assert!(
        srt.field("url")
            .starts_with(&format!("srt://[::1]:{srt_port}?streamid=")),
        "{srt:?}"
    );

    // Players over [::1], each protocol, RTSP both ways round.
    assert_plays(
        &hook,
        &srv,
        "rtmp",
        "v6srt",
        &rtmp6(&srv, "v6srt"),
        &[],
        "::1",
        &rtmp6(&srv, "v6srt"),
    );
    assert_plays(
        &hook,
        &srv,
        "httpflv",
        "v6rtmp",
        &flv6(&srv, "v6rtmp"),
        &[],
        "::1",
        &flv6(&srv, "v6rtmp"),
    );
    assert_plays(
        &hook,
        &srv,
        "rtsp",
        "v6rtspt",
        &rtsp6(&srv, "v6rtspt"),
        &["-rtsp_transport", "udp"],
        "::1",
        &rtsp6(&srv, "v6rtspt"),
    );
    assert_plays(
        &hook,
        &srv,
        "rtsp",
        "v6rtspu",
        &rtsp6(&srv, "v6rtspu"),
        &["-rtsp_transport", "tcp"],
        "::1",
        &rtsp6(&srv, "v6rtspu"),
    );
    let srt_play = srt_on("[::1]", &srv, "v6rtmp", "request");
    let (decoded, out) = frames(&srt_play, &[]);
    assert!(decoded > 10, "SRT player over [::1]: {decoded}: {out}");
    let play = play_call(&hook, "srt", "v6rtmp", "::1");
    assert!(
        play.field("url")
            .starts_with(&format!("srt://[::1]:{srt_port}?streamid=")),
        "{play:?}"
    );

    // IPv4 clients of the same (dual-stack) server are 127.0.0.1, never ::ffff:127.0.0.1.
    assert_plays(
        &hook,
        &srv,
        "rtsp",
        "v6rtspu",
        &srv.rtsp_url("live/v6rtspu"),
        &["-rtsp_transport", "udp"],
        "127.0.0.1",
        &srv.rtsp_url("live/v6rtspu"),
    );
    assert_plays(
        &hook,
        &srv,
        "rtmp",
        "v6rtmp",
        &srv.url("live/v6rtmp"),
        &[],
        "127.0.0.1",
        &srv.url("live/v6rtmp"),
    );
    let (decoded, out) = frames(&srt_on("127.0.0.1", &srv, "v6srt", "request"), &[]);
    assert!(decoded > 10, "SRT player over IPv4: {decoded}: {out}");
    play_call(&hook, "srt", "v6srt", "127.0.0.1");
    assert!(
        !hook
            .records()
            .iter()
            .any(|r| r.get("addr").is_some_and(|a| a.starts_with("::ffff:"))),
        "no IPv4-mapped addr: {}",
        hook.dump()
    );

    // RTSP's answers to an IPv6 client: the SDP's connection line is IPv6, Content-Base is
    // the URL the client asked for.
    let url = rtsp6(&srv, "v6rtmp");
    let answer = describe(
        SocketAddr::from(([0u16, 0, 0, 0, 0, 0, 0, 1], rtsp_port)),
        &url,
    );
    assert!(answer.starts_with("RTSP/1.0 200"), "{answer}");
    assert!(answer.contains("\r\nc=IN IP6 ::\r\n"), "{answer}");
    assert!(answer.contains("\r\no=- 0 0 IN IP6 "), "{answer}");
    assert!(
        answer.contains(&format!("Content-Base: {url}/\r\n")),
        "{answer}"
    );
    let answer = describe(
        SocketAddr::from(([127, 0, 0, 1], rtsp_port)),
        &srv.rtsp_url("live/v6rtmp"),
    );
    assert!(answer.contains("\r\nc=IN IP4 0.0.0.0\r\n"), "{answer}");

    for mut p in [rtmp_pub, rtsp_udp_pub, rtsp_tcp_pub, srt_pub] {
        p.kill();
    }
}

#[test]
fn an_ipv4_address_takes_no_ipv6_client() {
    let hook = HookServer::start();
    let cfg = Config::new()
        .hooks(&hook.url("/rtmp"), "")
        .httpflv()
        .rtsp()
        .srt_hooks(&hook.url("/srt"), "")
        .address("rtmp", "127.0.0.1")
        .address("httpflv", "127.0.0.1")
        .address("rtsp", "127.0.0.1")
        .address("srt", "127.0.0.1");
    let srv = Server::start(&cfg);
    for port in [
        srv.port,
        srv.httpflv_port.expect("httpflv"),
        srv.rtsp_port.expect("rtsp"),
    ] {
        let v6 = SocketAddr::from(([0u16, 0, 0, 0, 0, 0, 0, 1], port));
        assert!(
            TcpStream::connect_timeout(&v6, Duration::from_secs(2)).is_err(),
            "[::1]:{port} must refuse"
        );
        let v4 = SocketAddr::from(([127, 0, 0, 1], port));
        TcpStream::connect_timeout(&v4, Duration::from_secs(2)).expect("127.0.0.1 accepts");
    }
    // SRT over [::1] gets no answer; over 127.0.0.1 it publishes.
    let mut cmd = publisher_command(
        "ffmpeg",
        &srt_on("[::1]", &srv, "v4only", "publish"),
        3,
        TESTSRC,
        25,
        "mpegts",
    );
    let out = run("srt publish over [::1]", &mut cmd, Duration::from_secs(30));
    assert!(!out.success(), "SRT over [::1] must fail: {out:?}");
    assert!(
        hook.find(|r| r.get("protocol") == Some("srt")).is_empty(),
        "{}",
        hook.dump()
    );
    let mut p = publisher(&[
        "-f",
        "mpegts",
        &srt_on("127.0.0.1", &srv, "v4only", "publish"),
    ]);
    wait_publishing(&hook, &srv, &mut p, "v4only");
    let publish = hook.find(|r| r.is("publish", "v4only")).remove(0);
    assert_eq!(publish.field("addr"), "127.0.0.1");
    p.kill();
}

#[test]
fn an_ipv6_address_takes_no_ipv4_client() {
    let hook = HookServer::start();
    let srv = InProcess::start(
        &Config::new()
            .hooks(&hook.url("/rtmp"), "")
            .address("rtmp", "::1"),
    );
    let v4 = SocketAddr::from(([127, 0, 0, 1], srv.port));
    assert!(TcpStream::connect_timeout(&v4, Duration::from_secs(2)).is_err());
    let url = format!("rtmp://[::1]:{}/live/v6only", srv.port);
    let mut p = publisher(&["-f", "flv", &url]);
    let publish = hook
        .wait_call("publish", "v6only", HOOK_WAIT)
        .unwrap_or_else(|| panic!("no on_publish: {}\n{}", hook.dump(), p.stderr()));
    assert_eq!(publish.field("addr"), "::1");
    assert_eq!(publish.field("url"), url);
    p.kill();
}

#[test]
fn a_bad_address_is_refused_with_its_line() {
    let dir = TempDir::new("addr");
    for (section, value) in [
        ("rtmp", "localhost"),
        ("rtsp", "[::1]"),
        ("srt", "10.0.0.300"),
        ("httpflv", "fe80::1%lo"),
    ] {
        let xml = format!(
            "<config>\n  <{section}>\n    <enable>true</enable>\n    <address>{value}</address>\n  </{section}>\n</config>\n"
        );
        let (out, file) = check_config(&dir, &format!("{section}.xml"), &xml);
        assert_eq!(out.status.and_then(|s| s.code()), Some(2), "{out:?}");
        let want = format!("{}:4: <{section}><address>: ", file.display());
        assert!(out.stderr.contains(&want), "{want} in {out:?}");
        assert!(out.stderr.contains(value), "{out:?}");
    }
}
