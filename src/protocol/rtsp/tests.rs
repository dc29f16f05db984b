//! In-memory exchanges with the RTSP server core, written as FFmpeg sends them (the publish is
//! FFmpeg 5.1's captured byte stream; the play is its captured requests).

use super::rtp::tests::FFMPEG_PUBLISH;
use super::*;
use streamgate_actors::media::Codec;

/// A response as the client reads it.
#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Splits server output into responses and `$` frames.
fn read_output(out: &[u8]) -> (Vec<Reply>, Vec<(u8, Vec<u8>)>) {
    let mut replies = Vec::new();
    let mut frames = Vec::new();
    let mut rest = out;
    while !rest.is_empty() {
        if rest[0] == b'$' {
            let len = usize::from(u16::from_be_bytes([rest[2], rest[3]]));
            frames.push((rest[1], rest[4..4 + len].to_vec()));
            rest = &rest[4 + len..];
            continue;
        }
        let text = std::str::from_utf8(rest).expect("utf8 head");
        let end = text.find("\r\n\r\n").expect("complete head");
        let mut lines = text[..end].split("\r\n");
        let status_line = lines.next().expect("status line");
        let status = status_line
            .strip_prefix("RTSP/1.0 ")
            .and_then(|s| s.split(' ').next())
            .and_then(|s| s.parse().ok())
            .expect("status");
        let headers: Vec<(String, String)> = lines
            .map(|l| {
                let (k, v) = l.split_once(": ").expect("header");
                (k.to_owned(), v.to_owned())
            })
            .collect();
        let len: usize = headers
            .iter()
            .find(|(k, _)| k == "Content-Length")
            .map_or(0, |(_, v)| v.parse().expect("length"));
        let body = text[end + 4..end + 4 + len].to_owned();
        rest = &rest[end + 4 + len..];
        replies.push(Reply {
            status,
            headers,
            body,
        });
    }
    (replies, frames)
}

/// Every event so far.
fn events(conn: &mut RtspConnection) -> Vec<Event> {
    std::iter::from_fn(|| conn.poll_event()).collect()
}

fn output(conn: &mut RtspConnection) -> Vec<Reply> {
    conn.take_output()
        .map_or_else(Vec::new, |o| read_output(&o).0)
}

const SESSION: &str = "6b8b4567327b23c6";

/// An application that allows everything, as the session actor will: answers each request
/// event, counts the rest.
#[derive(Default)]
struct App {
    log: Vec<Event>,
    media: usize,
}

impl App {
    fn run(&mut self, conn: &mut RtspConnection) {
        while let Some(event) = conn.poll_event() {
            match &event {
                Event::Connect { request, .. } | Event::PublishRequested { request, .. } => {
                    conn.accept(*request).expect("accept")
                }
                Event::PlayRequested { request, url } => {
                    let sdp = sdp::build(
                        "127.0.0.1",
                        url,
                        &[
                            sdp::track_for_config(0, Codec::H264, &avc_record()).expect("h264"),
                            sdp::track_for_config(1, Codec::Aac, &[0x11, 0x90]).expect("aac"),
                        ],
                    );
                    conn.accept_describe(*request, sdp).expect("describe")
                }
                Event::SetupRequested {
                    request, transport, ..
                } => {
                    let answer = match transport.spec {
                        TransportSpec::Interleaved(Some(channels)) => {
                            ServerTransport::Interleaved { channels }
                        }
                        TransportSpec::Interleaved(None) => unreachable!("filled in by the core"),
                        TransportSpec::Udp { client_port } => ServerTransport::Udp {
                            client_port,
                            server_port: (40000, 40001),
                        },
                    };
                    conn.accept_setup(*request, answer).expect("setup")
                }
                Event::PlayStarted { request, .. } => {
                    let info = conn
                        .setups()
                        .iter()
                        .enumerate()
                        .map(|(i, s)| (s.url.clone(), 100 + i as u16, 5000 + i as u32))
                        .collect();
                    conn.accept_play(*request, info).expect("play")
                }
                Event::Interleaved { .. } => {
                    self.media += 1;
                    continue;
                }
                Event::RecordStarted | Event::Teardown | Event::Refused { .. } => {}
            }
            self.log.push(event);
        }
    }
}

fn avc_record() -> Bytes {
    crate::protocol::codec::AvcConfig::from_parameter_sets(
        vec![Bytes::from_static(&[
            0x67, 0x64, 0x00, 0x0d, 0xac, 0xd9, 0x41, 0x41, 0xfb, 0x01, 0x10, 0x00, 0x00, 0x03,
            0x00, 0x10, 0x00, 0x00, 0x03, 0x03, 0x20, 0xf1, 0x42, 0x99, 0x60,
        ])],
        vec![Bytes::from_static(&[0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0])],
    )
    .expect("sets")
    .to_record()
}

fn interleaved_frames(wire: &[u8]) -> usize {
    let mut buf = BytesMut::from(wire);
    let mut n = 0;
    while let Some(m) = message::decode(&mut buf).expect("valid") {
        n += usize::from(matches!(m, Message::Interleaved { .. }));
    }
    n
}

/// FFmpeg's whole publish: OPTIONS, ANNOUNCE, SETUP x2 (record, interleaved), RECORD, `$`
/// data, TEARDOWN; fed in pieces of every size from 1 byte to all at once.
#[test]
fn ffmpeg_publish_over_tcp() {
    let frames = interleaved_frames(FFMPEG_PUBLISH);
    assert!(frames > 50, "{frames} frames");
    for piece in [1, 7, 100, 1000, FFMPEG_PUBLISH.len()] {
        // The session id the capture's server gave.
        let mut conn = RtspConnection::new("12345678");
        let mut app = App::default();
        let mut out = Vec::new();
        for chunk in FFMPEG_PUBLISH.chunks(piece) {
            conn.handle_input(chunk).expect("ffmpeg's input");
            app.run(&mut conn);
            if let Some(o) = conn.take_output() {
                out.extend_from_slice(&o);
            }
        }
        let (replies, _) = read_output(&out);
        assert!(conn.is_finished(), "{:?} {:?}", app.log, replies);
        let url = "rtsp://127.0.0.1:18557/live/cam2?token=abc";
        let log = &app.log;
        assert_eq!(log.len(), 6, "{log:?}");
        assert!(matches!(&log[0], Event::Connect { url: u, .. } if u == url));
        let Event::PublishRequested { url: u, tracks, .. } = &log[1] else {
            panic!("{log:?}")
        };
        assert_eq!(u, url);
        assert_eq!(tracks.len(), 2);
        assert_eq!(tracks[0].codec, Some(Codec::H264));
        assert_eq!(tracks[1].codec, Some(Codec::Aac));
        for (i, e) in log[2..4].iter().enumerate() {
            let Event::SetupRequested {
                url: u,
                track_control,
                track,
                transport,
                ..
            } = e
            else {
                panic!("{e:?}")
            };
            assert_eq!(u, &format!("{url}/streamid={i}"));
            assert_eq!(track_control, &format!("streamid={i}"));
            assert_eq!(*track, Some(i));
            assert!(transport.record);
            let c = 2 * i as u8;
            assert_eq!(transport.spec, TransportSpec::Interleaved(Some((c, c + 1))));
        }
        assert_eq!(log[4], Event::RecordStarted);
        assert_eq!(log[5], Event::Teardown);
        assert_eq!(
            app.media, frames,
            "every $ frame after RECORD, piece {piece}"
        );
        let (replies, _) = read_output(&out);
        let cseqs: Vec<&str> = replies
            .iter()
            .map(|r| r.header("CSeq").expect("cseq"))
            .collect();
        assert_eq!(cseqs, ["1", "2", "3", "4", "5", "6"]);
        assert!(replies.iter().all(|r| r.status == 200));
        assert!(replies[0]
            .header("Public")
            .expect("public")
            .contains("ANNOUNCE"));
        assert_eq!(replies[1].header("Session"), None);
        assert_eq!(replies[2].header("Session"), Some("12345678;timeout=60"));
        assert_eq!(
            replies[3].header("Transport"),
            Some("RTP/AVP/TCP;unicast;interleaved=2-3;mode=record")
        );
        assert!(replies
            .iter()
            .all(|r| r.header("Server") == Some(message::SERVER)));
        assert_eq!(conn.setups().len(), 2);
        assert_eq!(conn.announced_tracks().map(<[_]>::len), Some(2));
    }
}

fn play_requests(host: &str) -> String {
    format!(
        "OPTIONS rtsp://{host}/live/cam2?token=abc RTSP/1.0\r\nCSeq: 1\r\nUser-Agent: Lavf59.27.100\r\n\r\n\
DESCRIBE rtsp://{host}/live/cam2?token=abc RTSP/1.0\r\nAccept: application/sdp\r\nCSeq: 2\r\nUser-Agent: Lavf59.27.100\r\n\r\n\
SETUP rtsp://{host}/live/cam2?token=abc/trackID=0 RTSP/1.0\r\nTransport: RTP/AVP/TCP;unicast;interleaved=0-1\r\nCSeq: 3\r\nUser-Agent: Lavf59.27.100\r\n\r\n\
SETUP rtsp://{host}/live/cam2?token=abc/trackID=1 RTSP/1.0\r\nTransport: RTP/AVP/TCP;unicast;interleaved=2-3\r\nCSeq: 4\r\nUser-Agent: Lavf59.27.100\r\nSession: {SESSION}\r\n\r\n\
PLAY rtsp://{host}/live/cam2?token=abc/ RTSP/1.0\r\nRange: npt=0.000-\r\nCSeq: 5\r\nUser-Agent: Lavf59.27.100\r\nSession: {SESSION}\r\n\r\n"
    )
}

const KEEPALIVE_AND_TEARDOWN: &[u8] = b"GET_PARAMETER rtsp://h/live/cam2?token=abc/ RTSP/1.0\r\nCSeq: 6\r\nUser-Agent: Lavf59.27.100\r\nSession: 6b8b4567327b23c6\r\n\r\n\
$\x01\x00\x08\x81\xc9\x00\x01\x00\x00\x00\x01\
TEARDOWN rtsp://h/live/cam2?token=abc/ RTSP/1.0\r\nCSeq: 7\r\nUser-Agent: Lavf59.27.100\r\nSession: 6b8b4567327b23c6\r\n\r\n";

/// FFmpeg's play: OPTIONS, DESCRIBE, SETUP x2, PLAY, media out, an RTCP receiver report
/// and GET_PARAMETER in, TEARDOWN.
#[test]
fn ffmpeg_play_over_tcp() {
    let mut conn = RtspConnection::new(SESSION);
    let mut app = App::default();
    conn.handle_input(play_requests("h").as_bytes())
        .expect("valid");
    app.run(&mut conn);
    let log = app.log.clone();
    assert_eq!(log.len(), 5, "{log:?}");
    assert!(
        matches!(&log[1], Event::PlayRequested { url, .. } if url == "rtsp://h/live/cam2?token=abc")
    );
    assert!(matches!(
        &log[2],
        Event::SetupRequested { track: Some(0), track_control, .. } if track_control == "trackID=0"
    ));
    assert!(matches!(
        &log[3],
        Event::SetupRequested { track: Some(1), .. }
    ));
    assert!(matches!(&log[4], Event::PlayStarted { url, .. } if url.ends_with("abc/")));
    let replies = output(&mut conn);
    assert_eq!(replies.len(), 5);
    assert!(replies.iter().all(|r| r.status == 200));
    let describe = &replies[1];
    assert_eq!(describe.header("Content-Type"), Some("application/sdp"));
    assert_eq!(
        describe.header("Content-Base"),
        Some("rtsp://h/live/cam2?token=abc/")
    );
    let tracks = sdp::parse(&describe.body).expect("our SDP");
    assert_eq!(tracks[0].fmtp("profile-level-id"), Some("64000D"));
    assert_eq!(tracks[1].fmtp("config"), Some("1190"));
    assert_eq!(
        replies[2].header("Transport"),
        Some("RTP/AVP/TCP;unicast;interleaved=0-1")
    );
    assert_eq!(
        replies[4].header("RTP-Info"),
        Some(
            "url=rtsp://h/live/cam2?token=abc/trackID=0;seq=100;rtptime=5000,\
             url=rtsp://h/live/cam2?token=abc/trackID=1;seq=101;rtptime=5001"
        )
    );
    assert_eq!(replies[4].header("Range"), Some("npt=0.000-"));
    // Media out.
    conn.send_interleaved(0, &[&[0x80, 96], &[1, 2, 3]])
        .expect("small frame");
    assert_eq!(
        conn.send_interleaved(0, &[&vec![0; 70_000]]),
        Err(RtspError::FrameTooLarge(70_000))
    );
    let out = conn.take_output().expect("frame");
    assert_eq!(&out[..], b"$\x00\x00\x05\x80\x60\x01\x02\x03");
    // Keep-alive, an RTCP RR on the video RTCP channel, teardown.
    conn.handle_input(KEEPALIVE_AND_TEARDOWN).expect("valid");
    let evs = events(&mut conn);
    assert!(matches!(&evs[0], Event::Interleaved { channel: 1, data } if data.len() == 8));
    assert_eq!(evs[1], Event::Teardown);
    let replies = output(&mut conn);
    assert_eq!(
        replies.iter().map(|r| r.status).collect::<Vec<_>>(),
        [200, 200]
    );
    assert_eq!(replies[0].header("CSeq"), Some("6"));
    assert!(conn.is_finished());
}

/// Nothing is answered, and nothing after the request acted on, before the decision.
#[test]
fn suspended_until_decided() {
    let mut conn = RtspConnection::new(SESSION);
    let wire = play_requests("h");
    conn.handle_input(wire.as_bytes()).expect("valid");
    let evs = events(&mut conn);
    let [Event::Connect { request, url }] = evs.as_slice() else {
        panic!("{evs:?}")
    };
    assert_eq!(url, "rtsp://h/live/cam2?token=abc");
    assert!(conn.is_suspended());
    assert_eq!(conn.take_output(), None);
    // More input while suspended is buffered, not read.
    conn.handle_input(b"OPTIONS * RTSP/1.0\r\nCSeq: 9\r\n\r\n")
        .expect("buffered");
    assert!(events(&mut conn).is_empty());
    assert_eq!(
        conn.accept(request + 1),
        Err(RtspError::UnknownRequest(request + 1))
    );
    conn.accept(*request).expect("accept");
    // OPTIONS answered; DESCRIBE raised and held.
    let replies = output(&mut conn);
    assert_eq!(replies.len(), 1);
    assert_eq!(replies[0].header("CSeq"), Some("1"));
    let evs = events(&mut conn);
    let [Event::PlayRequested { request, .. }] = evs.as_slice() else {
        panic!("{evs:?}")
    };
    assert_eq!(
        conn.accept(*request),
        Err(RtspError::WrongAnswer {
            request: *request,
            expected: "accept_describe"
        })
    );
    assert!(conn.is_suspended());
    assert_eq!(conn.take_output(), None);
    // A deny: 403 to the DESCRIBE, the connection finished, the rest never read.
    conn.refuse(*request, 403).expect("refuse");
    let replies = output(&mut conn);
    assert_eq!(replies.len(), 1);
    assert_eq!(
        (replies[0].status, replies[0].header("CSeq")),
        (403, Some("2"))
    );
    assert!(conn.is_finished());
    assert!(events(&mut conn).is_empty());
    conn.handle_input(b"garbage").expect("ignored after finish");
    assert_eq!(conn.take_output(), None);
}

#[test]
fn denied_publish_and_connect() {
    let announce = &FFMPEG_PUBLISH[..FFMPEG_PUBLISH
        .windows(5)
        .position(|w| w == b"SETUP")
        .expect("setup")];
    let mut conn = RtspConnection::new(SESSION);
    conn.handle_input(announce).expect("valid");
    let Some(Event::Connect { request, .. }) = conn.poll_event() else {
        panic!()
    };
    conn.accept(request).expect("accept");
    let Some(Event::PublishRequested { request, .. }) = conn.poll_event() else {
        panic!()
    };
    conn.refuse(request, 401).expect("refuse");
    let replies = output(&mut conn);
    assert_eq!(replies.len(), 2);
    assert_eq!(replies[1].status, 401);
    assert_eq!(replies[1].header("CSeq"), Some("2"));
    assert!(replies[1].header("WWW-Authenticate").is_some());
    assert!(conn.is_finished());

    let mut conn = RtspConnection::new(SESSION);
    conn.handle_input(announce).expect("valid");
    let Some(Event::Connect { request, .. }) = conn.poll_event() else {
        panic!()
    };
    conn.refuse(request, 403).expect("refuse");
    let replies = output(&mut conn);
    assert_eq!((replies.len(), replies[0].status), (1, 403));
    assert!(conn.is_finished());
}

/// SETUP without DESCRIBE raises PlayRequested (the on_play hook) first; UDP transport.
#[test]
fn setup_without_describe_over_udp() {
    let mut conn = RtspConnection::new(SESSION);
    conn.handle_input(
        b"SETUP rtsp://h/live/cam2/trackID=1 RTSP/1.0\r\nCSeq: 1\r\n\
          Transport: RTP/AVP;unicast;client_port=5002-5003\r\n\r\n",
    )
    .expect("valid");
    let Some(Event::Connect { request, .. }) = conn.poll_event() else {
        panic!()
    };
    conn.accept(request).expect("accept");
    let evs = events(&mut conn);
    let [Event::PlayRequested { request, url }] = evs.as_slice() else {
        panic!("{evs:?}")
    };
    assert_eq!(url, "rtsp://h/live/cam2");
    conn.accept(*request).expect("accept");
    let evs = events(&mut conn);
    let [Event::SetupRequested {
        request,
        track,
        transport,
        ..
    }] = evs.as_slice()
    else {
        panic!("{evs:?}")
    };
    assert_eq!(*track, Some(1));
    assert_eq!(
        transport.spec,
        TransportSpec::Udp {
            client_port: (5002, 5003)
        }
    );
    conn.accept_setup(
        *request,
        ServerTransport::Udp {
            client_port: (5002, 5003),
            server_port: (40002, 40003),
        },
    )
    .expect("setup");
    let replies = output(&mut conn);
    assert_eq!(
        replies[0].header("Transport"),
        Some("RTP/AVP;unicast;client_port=5002-5003;server_port=40002-40003")
    );
    // PLAY goes straight to PlayStarted now.
    conn.handle_input(
        format!("PLAY rtsp://h/live/cam2 RTSP/1.0\r\nCSeq: 2\r\nSession: {SESSION}\r\n\r\n")
            .as_bytes(),
    )
    .expect("valid");
    assert!(matches!(conn.poll_event(), Some(Event::PlayStarted { .. })));
}

/// Requests out of place are answered with RTSP's status codes; the connection goes on.
#[test]
fn wrong_requests_get_status_codes() {
    let mut conn = RtspConnection::new(SESSION);
    let mut app = App::default();
    let requests = [
        ("RECORD rtsp://h/a RTSP/1.0\r\nCSeq: 1\r\n\r\n", 455),
        ("PLAY rtsp://h/a RTSP/1.0\r\nCSeq: 2\r\nSession: nope\r\n\r\n", 454),
        (
            "SETUP rtsp://h/a/trackID=0 RTSP/1.0\r\nCSeq: 3\r\nTransport: RTP/AVP;multicast\r\n\r\n",
            461,
        ),
        ("OPTIONS * RTSP/1.0\r\nCSeq: 4\r\nRequire: funky-feature\r\n\r\n", 551),
        ("PAUSE rtsp://h/a RTSP/1.0\r\nCSeq: 5\r\n\r\n", 501),
        ("FLY rtsp://h/a RTSP/1.0\r\nCSeq: 6\r\n\r\n", 501),
        (
            "ANNOUNCE rtsp://h/a RTSP/1.0\r\nCSeq: 7\r\nContent-Type: application/sdp\r\nContent-Length: 5\r\n\r\nhello",
            400,
        ),
        ("OPTIONS * RTSP/1.0\r\n\r\n", 400),
        (
            "SETUP rtsp://h/a/streamid=0 RTSP/1.0\r\nCSeq: 8\r\nTransport: RTP/AVP/TCP;unicast;interleaved=0-1;mode=record\r\n\r\n",
            455,
        ),
    ];
    for (request, status) in requests {
        conn.handle_input(request.as_bytes()).expect("valid RTSP");
        app.run(&mut conn);
        let replies = output(&mut conn);
        assert_eq!(replies.len(), 1, "{request}");
        assert_eq!(replies[0].status, status, "{request}");
        assert!(!conn.is_finished());
    }
    // Garbage ends the connection.
    assert!(conn.handle_input(b"\x16\x03\x01\x00\xa5\x01\x00").is_err());
}

#[test]
fn stream_urls_and_track_resolution() {
    assert_eq!(
        stream_url("rtsp://h/live/cam2?token=abc/trackID=0"),
        "rtsp://h/live/cam2?token=abc"
    );
    assert_eq!(
        stream_url("rtsp://h/live/cam2?token=abc/"),
        "rtsp://h/live/cam2?token=abc"
    );
    assert_eq!(
        stream_url("rtsp://h/live/cam2?token=abc"),
        "rtsp://h/live/cam2?token=abc"
    );
    assert_eq!(
        stream_url("rtsp://h/live/cam2/stream=1"),
        "rtsp://h/live/cam2"
    );
    assert_eq!(stream_url("rtsp://h/live/cam2"), "rtsp://h/live/cam2");
    // GStreamer's rtspclientsink puts the query after the track part.
    assert_eq!(
        stream_url("rtsp://h/live/cam2/stream=0?token=abc"),
        "rtsp://h/live/cam2?token=abc"
    );
    assert_eq!(
        resolve_track(
            &["stream=1".to_owned(), "stream=0".to_owned()],
            "rtsp://h/live/cam2/stream=0?token=abc"
        ),
        (Some(1), "stream=0".to_owned())
    );
    assert_eq!(
        resolve_track(
            &["rtsp://h/live/cam2/stream=0".to_owned()],
            "rtsp://h/live/cam2/stream=0?token=abc"
        ),
        (Some(0), "rtsp://h/live/cam2/stream=0".to_owned())
    );
    assert_eq!(
        resolve_track(&[], "rtsp://h/live/cam2/trackID=2?token=abc"),
        (Some(2), "trackID=2".to_owned())
    );
    let controls = vec![
        "rtsp://127.0.0.1:8554/live/cam3/stream=0".to_owned(),
        "rtsp://127.0.0.1:8554/live/cam3/stream=1".to_owned(),
    ];
    assert_eq!(
        resolve_track(&controls, "rtsp://127.0.0.1:8554/live/cam3/stream=1"),
        (Some(1), controls[1].clone())
    );
    assert_eq!(
        resolve_track(&controls, "rtsp://10.0.0.1/live/cam3/stream=0"),
        (Some(0), controls[0].clone())
    );
    assert_eq!(
        resolve_track(&controls, "rtsp://h/live/cam3/video"),
        (None, "video".to_owned())
    );
    assert_eq!(
        resolve_track(&[], "rtsp://h/x?y=1/streamid=3"),
        (Some(3), "streamid=3".to_owned())
    );
}

#[test]
fn oversized_input_while_suspended() {
    let mut conn = RtspConnection::new(SESSION);
    conn.handle_input(b"OPTIONS * RTSP/1.0\r\nCSeq: 1\r\n\r\n")
        .expect("valid");
    assert!(conn.is_suspended());
    let junk = vec![b'$'; MAX_SUSPENDED_INPUT + 1];
    assert_eq!(conn.handle_input(&junk), Err(RtspError::InputOverflow));
}

/// GStreamer 1.22's `rtspclientsink` publishing H.264 + AAC (its default MP4A-LATM payload)
/// with a query in its URL: its SETUPs name `…/live/gst/stream=N?token=abc`, the query after
/// the track part. Captured from `gst-launch-1.0 … ! rtspclientsink protocols=tcp
/// location=rtsp://127.0.0.1:18554/live/gst?token=abc` (the capturing server's session id
/// was 1234).
pub(crate) const GSTREAMER_PUBLISH: &[u8] = include_bytes!("testdata/gstreamer_publish_tcp.bin");

#[test]
fn gstreamer_publish_with_a_query_after_the_track() {
    let mut conn = RtspConnection::new("1234");
    let mut app = App::default();
    let mut out = Vec::new();
    conn.handle_input(GSTREAMER_PUBLISH)
        .expect("GStreamer's input");
    app.run(&mut conn);
    if let Some(o) = conn.take_output() {
        out.extend_from_slice(&o);
    }
    let (replies, _) = read_output(&out);
    let statuses: Vec<u16> = replies.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [200; 5], "{:?}", app.log);
    let setups: Vec<(Option<usize>, &str)> = app
        .log
        .iter()
        .filter_map(|e| match e {
            Event::SetupRequested {
                track,
                track_control,
                ..
            } => Some((*track, track_control.as_str())),
            _ => None,
        })
        .collect();
    // The description lists the audio (stream=1) first.
    assert_eq!(setups, [(Some(0), "stream=1"), (Some(1), "stream=0")]);
    assert!(app.log.contains(&Event::RecordStarted));
    assert!(app.media > 40, "{} $ frames", app.media);
    assert!(
        !app.log.iter().any(|e| matches!(e, Event::Refused { .. })),
        "{:?}",
        app.log
    );
}

#[test]
fn every_error_answer_of_the_core_is_reported() {
    let mut conn = RtspConnection::new(SESSION);
    let mut app = App::default();
    conn.handle_input(b"OPTIONS rtsp://h/live/x RTSP/1.0\r\nCSeq: 1\r\n\r\n")
        .expect("valid");
    app.run(&mut conn);
    conn.handle_input(b"RECORD rtsp://h/live/x RTSP/1.0\r\nCSeq: 2\r\n\r\n")
        .expect("valid");
    let events = events(&mut conn);
    let refused: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::Refused {
                method,
                url,
                status,
                reason,
            } => Some((method.as_str(), url.as_str(), *status, reason.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(refused.len(), 1, "{events:?}");
    assert_eq!(refused[0].0, "RECORD");
    assert_eq!(refused[0].1, "rtsp://h/live/x");
    assert_eq!(refused[0].2, 455);
    assert!(!refused[0].3.is_empty());
}
