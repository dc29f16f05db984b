//! `<max_connections>` and `<max_connections_per_ip>`: connections past them are refused
//! before any hook, in each protocol's own words (RTMP: closed; HTTP-FLV: `503`; RTSP: `503`
//! with the request's `CSeq`), logged, and a place that frees up is taken again.
//! (SRT's limit is tested with the load tool as the caller: `tools/load/tests/limits_srt.rs`.)

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use streamgate_testkit::*;

/// Sends `request` and reads what the server answers until it closes or 5 s pass.
fn ask(port: u16, request: &str) -> String {
    let mut s = connect(port).expect("connect");
    s.write_all(request.as_bytes()).expect("send");
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let end = Instant::now() + Duration::from_secs(5);
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < end {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => break,
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

#[test]
fn connections_past_max_connections_are_refused_before_any_hook() {
    let hook = HookServer::start();
    let srv = Server::start(
        &Config::new()
            .hooks(&hook.url("/rtmp"), "")
            .httpflv_hooks(&hook.url("/httpflv"), "")
            .rtsp_hooks(&hook.url("/rtsp"), "")
            .section_xml("rtmp", "<max_connections>2</max_connections>")
            .section_xml("httpflv", "<max_connections>2</max_connections>")
            .section_xml("rtsp", "<max_connections>2</max_connections>"),
    );
    let flv = srv.httpflv_port.expect("httpflv port");
    let rtsp = srv.rtsp_port.expect("rtsp port");

    // The start-up probe's connections end first.
    std::thread::sleep(secs(1.0));
    // Two connections of each protocol that say nothing more hold every place.
    let mut held: Vec<TcpStream> = [srv.port, srv.port, flv, flv, rtsp, rtsp]
        .iter()
        .map(|p| connect(*p).expect("a connection within the limit"))
        .collect();
    for s in &mut held[..2] {
        rtmp_handshake(s).expect("an RTMP connection within the limit");
    }
    std::thread::sleep(secs(0.5));

    assert!(
        RtmpClient::open(srv.port).is_err(),
        "a third RTMP connection completed its handshake"
    );
    let answer = ask(flv, "GET /live/cam.flv HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(
        answer.starts_with("HTTP/1.1 503 "),
        "HTTP-FLV past the limit: {answer:?}"
    );
    let answer = ask(
        rtsp,
        &format!("OPTIONS rtsp://127.0.0.1:{rtsp}/live/cam RTSP/1.0\r\nCSeq: 7\r\n\r\n"),
    );
    assert!(
        answer.starts_with("RTSP/1.0 503 ") && answer.contains("CSeq: 7\r\n"),
        "RTSP past the limit: {answer:?}"
    );
    std::thread::sleep(secs(0.5));
    assert_eq!(hook.records().len(), 0, "no hook for a refused connection");
    let log = srv.log();
    assert!(
        log.contains("connection refused: limit reached") && log.contains("max_connections"),
        "{}",
        srv.log_tail(20)
    );

    // A place that frees up is taken again, and that client goes on to its hooks.
    held.remove(0);
    let mut client = poll(secs(10.0), || RtmpClient::open(srv.port).ok())
        .expect("an RTMP connection once a place is free");
    client
        .connect_and_create_stream("live", &srv.tcurl())
        .expect("connect + createStream");
    hook.wait_for(|r| r.call() == "connect", secs(10.0))
        .expect("on_connect of the admitted client");
    drop(held);
}

#[test]
fn connections_past_max_connections_per_ip_are_refused_only_for_that_address() {
    let srv = Server::start(
        &Config::new().section_xml("rtmp", "<max_connections_per_ip>2</max_connections_per_ip>"),
    );
    std::thread::sleep(secs(1.0));
    let mut held: Vec<TcpStream> = (0..2)
        .map(|_| connect(srv.port).expect("within the per-address limit"))
        .collect();
    for s in &mut held {
        rtmp_handshake(s).expect("an RTMP connection within the limit");
    }
    let mut refused = connect(srv.port).expect("TCP connect");
    assert!(
        rtmp_handshake(&mut refused).is_err(),
        "a third connection from 127.0.0.1 completed its handshake"
    );
    let mut other = connect_from([127, 0, 0, 2], srv.port).expect("connect from 127.0.0.2");
    rtmp_handshake(&mut other).expect("another address is still admitted");
    assert!(
        srv.log().contains("max_connections_per_ip"),
        "{}",
        srv.log_tail(20)
    );
}
