//! In-memory tests of the RTMP server core. The peer is rml_rtmp's client (handshake and
//! `ClientSession`), or commands encoded by hand where a test needs bytes no polite client sends.

use super::*;
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::sessions::{
    ClientSession, ClientSessionConfig, ClientSessionEvent, ClientSessionResult, PublishRequestType,
};

fn text(s: &str) -> Amf0Value {
    Amf0Value::Utf8String(s.to_owned())
}

fn object(props: &[(&str, Amf0Value)]) -> Amf0Value {
    Amf0Value::Object(
        props
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect(),
    )
}

struct Pair {
    server: ServerConnection,
    client: ClientSession,
    client_events: Vec<ClientSessionEvent>,
    server_events: Vec<Event>,
}

impl Pair {
    /// A server and a client that completed the handshake.
    fn new() -> Pair {
        let mut server = ServerConnection::new();
        let mut hs = Handshake::new(PeerType::Client);
        let c0c1 = hs.generate_outbound_p0_and_p1().expect("c0c1");
        server.handle_input(&c0c1).expect("server takes c0c1");
        let s0s1s2 = server.take_output().expect("s0s1s2");
        let HandshakeProcessResult::Completed { response_bytes, .. } =
            hs.process_bytes(&s0s1s2).expect("client takes s0s1s2")
        else {
            panic!("client handshake not complete")
        };
        server
            .handle_input(&response_bytes)
            .expect("server takes c2");
        assert!(server.take_output().is_none());
        let mut config = ClientSessionConfig::new();
        config.tc_url = Some("rtmp://example.com:1935/live".into());
        let (client, _) = ClientSession::new(config).expect("client session");
        Pair {
            server,
            client,
            client_events: Vec::new(),
            server_events: Vec::new(),
        }
    }

    fn client_results(&mut self, results: Vec<ClientSessionResult>) {
        for r in results {
            match r {
                ClientSessionResult::OutboundResponse(p) => self.feed_server(&p.bytes),
                ClientSessionResult::RaisedEvent(e) => self.client_events.push(e),
                ClientSessionResult::UnhandleableMessageReceived(_) => {}
            }
        }
    }

    fn feed_server(&mut self, bytes: &[u8]) {
        self.server
            .handle_input(bytes)
            .expect("server accepts input");
        self.drain();
    }

    /// Moves server events out and server output to the client.
    fn drain(&mut self) {
        while let Some(e) = self.server.poll_event() {
            self.server_events.push(e);
        }
        if let Some(out) = self.server.take_output() {
            let results = self
                .client
                .handle_input(&out)
                .expect("client accepts output");
            self.client_results(results);
        }
    }

    fn request(&self) -> RequestId {
        match self.server_events.last() {
            Some(Event::ConnectRequested { request, .. })
            | Some(Event::PublishRequested { request, .. })
            | Some(Event::PlayRequested { request, .. }) => *request,
            other => panic!("no request pending: {other:?}"),
        }
    }

    fn connect(&mut self) {
        let r = self
            .client
            .request_connection("live".into())
            .expect("connect");
        self.client_results(vec![r]);
        let request = self.request();
        self.server.accept(request).expect("accept");
        self.drain();
        assert!(self
            .client_events
            .contains(&ClientSessionEvent::ConnectionRequestAccepted));
    }
}

#[test]
fn connect_reports_app_and_tcurl_and_waits_for_the_decision() {
    let mut p = Pair::new();
    let r = p.client.request_connection("live".into()).expect("connect");
    p.client_results(vec![r]);
    assert!(matches!(
        p.server_events.last(),
        Some(Event::ConnectRequested { app, tcurl, .. })
            if app == "live" && tcurl == "rtmp://example.com:1935/live"
    ));
    assert!(p.server.is_suspended());
    assert!(
        p.client_events.is_empty(),
        "nothing answered before the decision"
    );
    let request = p.request();
    p.server.accept(request).expect("accept");
    p.drain();
    assert!(p
        .client_events
        .contains(&ClientSessionEvent::ConnectionRequestAccepted));
}

#[test]
fn refused_connect_is_rejected_in_rtmp_words() {
    let mut p = Pair::new();
    let r = p.client.request_connection("live".into()).expect("connect");
    p.client_results(vec![r]);
    let request = p.request();
    p.server
        .refuse(request, Rejection::Unauthorized)
        .expect("reject");
    p.drain();
    assert!(p
        .client_events
        .iter()
        .any(|e| matches!(e, ClientSessionEvent::ConnectionRequestRejected { .. })));
    assert!(
        p.server.accept(request).is_err(),
        "a request is answered once"
    );
}

#[test]
fn publish_then_media_and_metadata_reach_the_application() {
    let mut p = Pair::new();
    p.connect();
    let r = p
        .client
        .request_publishing("cam1?token=abc".into(), PublishRequestType::Live)
        .expect("publish");
    p.client_results(vec![r]);
    let Some(Event::PublishRequested {
        stream_name,
        stream_id,
        ..
    }) = p.server_events.last().cloned()
    else {
        panic!("no publish request: {:?}", p.server_events)
    };
    assert_eq!(stream_name, "cam1?token=abc");
    let request = p.request();
    p.server.accept(request).expect("accept");
    p.drain();
    assert!(p
        .client_events
        .contains(&ClientSessionEvent::PublishRequestAccepted));

    let video = Bytes::from_static(&[0x17, 1, 0, 0, 0, 0, 0, 0, 1, 0x65]);
    let packet = p
        .client
        .publish_video_data(video.clone(), RtmpTimestamp::new(40), false)
        .expect("video");
    p.client_results(vec![packet]);
    assert!(p.server_events.contains(&Event::Media {
        kind: MediaKind::Video,
        timestamp: 40,
        data: video,
    }));
    let mut meta = rml_rtmp::sessions::StreamMetadata::new();
    meta.video_width = Some(640);
    let packet = p.client.publish_metadata(&meta).expect("metadata");
    p.client_results(vec![packet]);
    assert!(p.server_events.iter().any(|e| matches!(
        e,
        Event::Metadata { properties } if properties.get("width") == Some(&Amf0Value::Number(640.0))
    )));
    assert!(stream_id > 0);
}

#[test]
fn play_accepted_then_media_reaches_the_player() {
    let mut p = Pair::new();
    p.connect();
    let r = p.client.request_playback("cam1".into()).expect("play");
    p.client_results(vec![r]);
    let Some(Event::PlayRequested { stream_id, .. }) = p.server_events.last().cloned() else {
        panic!("no play request: {:?}", p.server_events)
    };
    let request = p.request();
    p.server.accept(request).expect("accept");
    p.drain();
    assert!(p
        .client_events
        .contains(&ClientSessionEvent::PlaybackRequestAccepted));
    let payload = vec![7u8; 10_000]; // several output chunks
    p.server.send_media(
        stream_id,
        MediaKind::Video,
        1234,
        &[&[0x17, 1, 0, 0, 0], &payload],
    );
    p.drain();
    let got = p.client_events.iter().find_map(|e| match e {
        ClientSessionEvent::VideoDataReceived {
            data, timestamp, ..
        } => Some((data.clone(), timestamp.value)),
        _ => None,
    });
    let (data, ts) = got.expect("video reached the player");
    assert_eq!(ts, 1234);
    assert_eq!(&data[5..], &payload[..]);
}

fn command(name: &str, txn: f64, args: Vec<Amf0Value>) -> Vec<u8> {
    let mut values = vec![text(name), Amf0Value::Number(txn)];
    values.extend(args);
    let body = rml_amf0::serialize(&values).expect("encodes");
    let mut out = BytesMut::new();
    encode_message(
        &mut out,
        chunk::DEFAULT_CHUNK_SIZE,
        ChunkHeader {
            csid: 3,
            timestamp: 0,
            type_id: 20,
            stream_id: 0,
        },
        &[&body],
    );
    out.to_vec()
}

/// Decodes the server's output into the names of the commands in it.
fn command_names(bytes: &[u8]) -> Vec<(String, f64)> {
    let mut dec = ChunkDecoder::default();
    let mut input = BytesMut::from(bytes);
    let mut names = Vec::new();
    while let Some(m) = dec.decode(&mut input).expect("server output is valid") {
        if m.type_id == 1 {
            let size = u32::from_be_bytes([m.payload[0], m.payload[1], m.payload[2], m.payload[3]]);
            dec.set_chunk_size(size).expect("valid");
        }
        if m.type_id == 20 {
            let v = amf::decode_all(&m.payload).expect("valid AMF");
            if let (Some(Amf0Value::Utf8String(n)), Some(Amf0Value::Number(t))) =
                (v.first(), v.get(1))
            {
                names.push((n.clone(), *t));
            }
        }
    }
    names
}

#[test]
fn commands_after_a_pending_request_wait_for_its_decision() {
    let mut p = Pair::new();
    let connect = command(
        "connect",
        1.0,
        vec![object(&[
            ("app", text("live")),
            ("tcUrl", text("rtmp://h/live")),
        ])],
    );
    let mut wire = connect;
    wire.extend(command("createStream", 2.0, vec![Amf0Value::Null]));
    p.server.handle_input(&wire).expect("input");
    assert!(matches!(
        p.server.poll_event(),
        Some(Event::ConnectRequested { .. })
    ));
    assert!(p.server.poll_event().is_none());
    assert!(
        p.server.take_output().is_none(),
        "no reply before the decision"
    );
    p.server.accept(1).expect("accept");
    let out = p.server.take_output().expect("replies");
    let names = command_names(&out);
    assert_eq!(
        names,
        vec![("_result".to_string(), 1.0), ("_result".to_string(), 2.0)]
    );
}

#[test]
fn commands_before_connect_and_garbage_are_errors() {
    let mut p = Pair::new();
    let err = p
        .server
        .handle_input(&command("createStream", 2.0, vec![Amf0Value::Null]))
        .expect_err("createStream before connect");
    assert!(err.to_string().contains("before connect"), "{err}");

    let mut p = Pair::new();
    let mut deep = vec![0x02, 0, 7];
    deep.extend_from_slice(b"connect");
    for _ in 0..50_000 {
        deep.extend_from_slice(&[0x03, 0, 1, b'a']);
    }
    let mut out = BytesMut::new();
    encode_message(
        &mut out,
        chunk::DEFAULT_CHUNK_SIZE,
        ChunkHeader {
            csid: 3,
            timestamp: 0,
            type_id: 20,
            stream_id: 0,
        },
        &[&deep],
    );
    let err = p.server.handle_input(&out).expect_err("deep AMF");
    assert!(matches!(err, RtmpError::Amf { .. }), "{err}");

    let mut server = ServerConnection::new();
    assert!(matches!(
        server.handle_input(&[0x16, 0x03, 0x01, 0x02]),
        Err(RtmpError::Handshake(_))
    ));
}

#[test]
fn publish_on_a_stream_never_created_is_refused() {
    let mut p = Pair::new();
    p.connect();
    let body = rml_amf0::serialize(&vec![
        text("publish"),
        Amf0Value::Number(5.0),
        Amf0Value::Null,
        text("cam1"),
    ])
    .expect("encodes");
    let mut out = BytesMut::new();
    encode_message(
        &mut out,
        chunk::DEFAULT_CHUNK_SIZE,
        ChunkHeader {
            csid: 8,
            timestamp: 0,
            type_id: 20,
            stream_id: 77,
        },
        &[&body],
    );
    assert!(matches!(
        p.server.handle_input(&out),
        Err(RtmpError::Protocol(_))
    ));
}
