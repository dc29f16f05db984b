//! HLS viewers as sessions: one `on_connect` / `on_play` at a viewer's first request and one
//! `on_done` when it stops, with its bytes, across hundreds of requests; refusals, forged and
//! expired session ids, kicks, the end of the stream, connection limits, and the HTTP
//! answers (CORS, content types, cache headers, blocking reloads). The real binary, an ffmpeg
//! publisher, the kit's hook server, and every playlist checked by the kit's validating
//! proxy.

use std::time::{Duration, Instant};

use streamgate_testkit::hls::{fetch, HlsProxy, LlViewer};
use streamgate_testkit::*;

const HOOK_WAIT: Duration = Duration::from_secs(15);

/// Short segments and parts, so a test sees many of them.
const FAST: &str = "<segment_duration_ms>1000</segment_duration_ms>\
                    <part_duration_ms>100</part_duration_ms>\
                    <idle_timeout_ms>3000</idle_timeout_ms>";

/// A server with HLS (`options` added to `<hls>`) and its hooks on `hook`, an RTMP publisher
/// of `live/cam` for `seconds`, live when this returns, and a validating proxy in front of
/// the HLS port.
fn live(hook: &HookServer, options: &str, seconds: u32) -> (Server, Proc, HlsProxy) {
    let cfg = Config::new().hls_hooks(&hook.url("/hls"), "").hls(options);
    let srv = Server::start(&cfg);
    let publisher = publish(&srv.url("live/cam"), seconds);
    poll(secs(15.0), || {
        (api_get(srv.api_port, "/api/v1/streams/live/cam").status == 200).then_some(())
    })
    .unwrap_or_else(|| panic!("the stream went live: {}", srv.log_tail(30)));
    let proxy = HlsProxy::start(srv.hls_port.expect("HLS is enabled"));
    (srv, publisher, proxy)
}

fn hls_calls(hook: &HookServer, call: &str, clientid: &str) -> usize {
    hook.count(|r| {
        r.field("protocol") == "hls" && r.field("call") == call && r.clientid() == clientid
    })
}

fn session_ids(srv: &Server) -> Vec<u64> {
    let answer = api_get(srv.api_port, "/api/v1/sessions?protocol=hls");
    assert_eq!(answer.status, 200, "{}", answer.text);
    answer.body["sessions"]
        .as_array()
        .map(|a| a.iter().filter_map(|s| s["clientid"].as_u64()).collect())
        .unwrap_or_default()
}

#[test]
fn one_on_play_and_one_on_done_per_viewer_with_its_bytes() {
    let hook = HookServer::start();
    let (srv, _publisher, proxy) = live(&hook, FAST, 60);
    let mut viewer = LlViewer::start(&proxy.url("live/cam/index.m3u8?token=abc"))
        .unwrap_or_else(|f| panic!("viewer refused: {} {}", f.status, f.text()));
    let started = Instant::now();
    viewer.follow(secs(10.0));
    let followed = started.elapsed();
    assert!(
        viewer.requests >= 100 && viewer.parts >= 50,
        "a Low-Latency viewer makes many requests: {} requests, {} parts",
        viewer.requests,
        viewer.parts
    );
    let play = hook
        .wait_for(
            |r| r.field("protocol") == "hls" && r.call() == "play",
            HOOK_WAIT,
        )
        .expect("on_play");
    let clientid = play.clientid().to_owned();
    let url = format!(
        "http://127.0.0.1:{}/live/cam/index.m3u8?token=abc",
        srv.hls_port.expect("hls")
    );
    assert_fields(&play, "hls", "play", "cam", &url, "");
    let connect = hook
        .wait_for(
            |r| r.field("protocol") == "hls" && r.call() == "connect",
            HOOK_WAIT,
        )
        .expect("on_connect");
    assert_fields(&connect, "hls", "connect", "", &url, "");
    assert_eq!(connect.clientid(), clientid);
    // The session is a player in the API while it runs.
    assert!(
        session_ids(&srv).contains(&clientid.parse().expect("a number")),
        "the viewer is listed as a session"
    );
    // It stops: done after the idle time, with every byte it was served.
    let done = done_of(&hook, &clientid, || srv.log_tail(40));
    assert_done_matches(&done, &play);
    assert_eq!(done.field("reason"), "idle", "{done:?}");
    assert_eq!(
        number(&done, "bytes_out"),
        viewer.bytes,
        "bytes_out is every body byte the viewer received"
    );
    let duration = number(&done, "duration_ms");
    let expected = (followed + Duration::from_secs(3)).as_millis() as u64;
    // The idle time is judged by the one-second check of every session (up to a second
    // late, more on a loaded machine) from the viewer's last answered request.
    assert!(
        duration + 1500 >= expected && duration <= expected + 2500,
        "duration_ms {duration} vs about {expected} (followed, then the idle time)"
    );
    thread_sleep(1.0);
    for call in ["connect", "play", "done"] {
        assert_eq!(
            hls_calls(&hook, call, &clientid),
            1,
            "one {call} across {} requests: {}",
            viewer.requests,
            hook.dump()
        );
    }
    assert!(session_ids(&srv).is_empty(), "the session is gone");
    // The session id is refused once the session has ended.
    let after = viewer.get(&viewer.media.clone());
    assert_eq!(after.status, 403, "{}", after.text());
    let report = proxy.assert_valid(50);
    assert!(report.blocking_answers >= 20, "{report:?}");
}

fn thread_sleep(seconds: f64) {
    std::thread::sleep(secs(seconds));
}

#[test]
fn a_refused_viewer_gets_its_status_and_no_segment() {
    let hook = HookServer::start();
    hook.on_field("/hls/play", "name", "cam", Reply::Status(403));
    let (srv, _publisher, proxy) = live(&hook, FAST, 60);
    let refused = LlViewer::start(&proxy.url("live/cam/index.m3u8?token=bad"))
        .err()
        .expect("refused");
    assert_eq!(refused.status, 403, "{}", refused.text());
    assert!(!refused.text().contains("#EXT"), "no playlist");
    hook.rule(|r| {
        (r.path == "/hls/connect" && r.get("url").is_some_and(|u| u.contains("who=nobody")))
            .then_some(Reply::Status(401))
    });
    let unauthorized = LlViewer::start(&proxy.url("live/cam/index.m3u8?who=nobody"))
        .err()
        .expect("refused");
    assert_eq!(unauthorized.status, 401, "{}", unauthorized.text());
    // Nothing is served without a session: no segment, no part, no init segment.
    let agent = ureq::Agent::new();
    for file in ["init.mp4", "seg0.m4s", "part0.0.m4s", "media.m3u8"] {
        let f = fetch(&agent, &proxy.url(&format!("live/cam/{file}")));
        assert_eq!(f.status, 403, "{file} without a session: {}", f.text());
    }
    // A refused play owes no on_done.
    thread_sleep(3.0);
    assert_eq!(
        hook.count(|r| r.field("protocol") == "hls" && r.call() == "done"),
        0,
        "{}",
        hook.dump()
    );
    assert!(session_ids(&srv).is_empty());
}

#[test]
fn a_forged_expired_or_foreign_session_id_is_refused() {
    let hook = HookServer::start();
    let options = format!("{FAST}<session_lifetime_s>2</session_lifetime_s>");
    let (srv, _publisher, proxy) = live(&hook, &options, 60);
    let mut viewer = LlViewer::start(&proxy.url("live/cam/index.m3u8")).expect("a viewer");
    let media = viewer.media.clone();
    assert_eq!(viewer.get(&media).status, 200);
    // Every one-character change of the id is forged.
    let id = viewer.session.clone();
    let last = id.chars().last().expect("an id");
    let forged = format!(
        "{}{}",
        &id[..id.len() - 1],
        if last == '0' { '1' } else { '0' }
    );
    let f = viewer.get(&format!("media.m3u8?s={forged}"));
    assert_eq!((f.status, f.text().trim()), (403, "forged session id"));
    let f = viewer.get("media.m3u8?s=1.2.3");
    assert_eq!((f.status, f.text().trim()), (403, "forged session id"));
    // The id of this stream's viewer does not open another stream.
    let agent = ureq::Agent::new();
    let other = fetch(&agent, &proxy.url(&format!("live/other/media.m3u8?s={id}")));
    assert_eq!(
        (other.status, other.text().trim()),
        (403, "session id of another stream")
    );
    // Past its lifetime the id is expired, whatever the session does.
    thread_sleep(2.5);
    let f = viewer.get(&media);
    assert_eq!((f.status, f.text().trim()), (403, "expired session id"));
    drop(srv);
}

#[test]
fn a_kicked_viewer_is_done_and_its_requests_refused() {
    let hook = HookServer::start();
    let options = FAST.replace("3000</idle", "30000</idle");
    let (srv, _publisher, proxy) = live(&hook, &options, 60);
    let mut viewer = LlViewer::start(&proxy.url("live/cam/index.m3u8")).expect("a viewer");
    viewer.follow(secs(2.0));
    let play = hook
        .wait_for(
            |r| r.field("protocol") == "hls" && r.call() == "play",
            HOOK_WAIT,
        )
        .expect("on_play");
    let kicked = api_call(
        srv.api_port,
        "DELETE",
        &format!("/api/v1/sessions/{}", play.clientid()),
        None,
    );
    assert!(
        (200..300).contains(&kicked.status),
        "kick: {} {}",
        kicked.status,
        kicked.text
    );
    let done = done_of(&hook, play.clientid(), || srv.log_tail(40));
    assert_eq!(done.field("reason"), "kicked");
    assert_eq!(number(&done, "bytes_out"), viewer.bytes);
    let media = viewer.media.clone();
    let after = viewer.get(&media);
    assert_eq!((after.status, after.text().trim()), (403, "session ended"));
    proxy.assert_valid(5);
}

#[test]
fn the_end_of_the_stream_ends_its_viewers_after_they_fetched_the_rest() {
    let hook = HookServer::start();
    let (srv, mut publisher, proxy) = live(&hook, FAST, 6);
    let mut viewer = LlViewer::start(&proxy.url("live/cam/index.m3u8")).expect("a viewer");
    viewer.follow(secs(30.0));
    let last = viewer.last.clone().expect("a playlist");
    assert!(last.ended, "the playlist ended with EXT-X-ENDLIST");
    publisher
        .wait_timeout(secs(10.0))
        .expect("the publisher ended");
    let play = hook
        .wait_for(
            |r| r.field("protocol") == "hls" && r.call() == "play",
            HOOK_WAIT,
        )
        .expect("on_play");
    let done = done_of(&hook, play.clientid(), || srv.log_tail(40));
    assert_eq!(done.field("reason"), "stream_ended");
    assert_eq!(number(&done, "bytes_out"), viewer.bytes);
    proxy.assert_valid(10);
}

#[test]
fn a_stream_that_is_not_live_is_404_with_one_on_done() {
    let hook = HookServer::start();
    let cfg = Config::new().hls_hooks(&hook.url("/hls"), "").hls(FAST);
    let srv = Server::start(&cfg);
    let agent = ureq::Agent::new();
    let f = fetch(&agent, &srv.hls_url("live/nothing/index.m3u8"));
    assert_eq!(f.status, 404, "{}", f.text());
    let play = hook
        .wait_call("play", "nothing", HOOK_WAIT)
        .expect("on_play");
    let done = done_of(&hook, play.clientid(), || srv.log_tail(20));
    assert_eq!(done.field("reason"), "refused");
    for bad in ["cam/index.m3u8", "live/cam/", "live/../x/index.m3u8"] {
        let f = fetch(&agent, &srv.hls_url(bad));
        assert_eq!(f.status, 404, "{bad}: {}", f.text());
    }
}

#[test]
fn max_connections_counts_viewers() {
    let hook = HookServer::start();
    let options = format!("{FAST}<max_connections>2</max_connections>");
    let (srv, _publisher, proxy) = live(&hook, &options, 60);
    let url = proxy.url("live/cam/index.m3u8");
    let mut first = LlViewer::start(&url).expect("first viewer");
    let _second = LlViewer::start(&url).expect("second viewer");
    // One viewer's many requests take one place.
    first.follow(secs(1.0));
    let third = LlViewer::start(&url)
        .err()
        .expect("a third viewer is refused");
    assert_eq!(third.status, 503, "{}", third.text());
    // Once the viewers have gone idle, their places are free again.
    poll(secs(10.0), || session_ids(&srv).is_empty().then_some(())).expect("the viewers went idle");
    LlViewer::start(&url).expect("a viewer after the others left");
}

#[test]
fn http_answers_carry_cors_content_types_and_cache_headers() {
    let hook = HookServer::start();
    let (srv, _publisher, proxy) = live(&hook, FAST, 60);
    let port = srv.hls_port.expect("hls");
    let mut viewer = LlViewer::start(&srv.hls_url("live/cam/index.m3u8")).expect("a viewer");
    // Past the first parts.
    viewer.follow(secs(1.5));
    let media = viewer.media.clone();
    let playlist = viewer.get(&media);
    assert_eq!(playlist.content_type, "application/vnd.apple.mpegurl");
    assert_eq!(playlist.cache_control, "no-cache");
    assert_eq!(playlist.cors.as_deref(), Some("*"));
    let text = playlist.text();
    let suffix = format!("?s={}", viewer.session);
    assert!(
        text.contains(&format!("#EXT-X-MAP:URI=\"init.mp4{suffix}\"")),
        "{text}"
    );
    assert!(text.contains("#EXT-X-PRELOAD-HINT:TYPE=PART"), "{text}");
    let init = viewer.get(&format!("init.mp4{suffix}"));
    assert_eq!(
        (init.status, init.content_type.as_str()),
        (200, "video/mp4")
    );
    assert!(
        init.cache_control.starts_with("public, max-age="),
        "{init:?}"
    );
    let part_uri = text
        .lines()
        .filter_map(|l| l.strip_prefix("#EXT-X-PART:"))
        .filter_map(|l| l.split("URI=\"").nth(1))
        .filter_map(|l| l.split('"').next())
        .next_back()
        .expect("a part")
        .to_owned();
    let part = viewer.get(&part_uri);
    assert_eq!(
        (part.status, part.content_type.as_str()),
        (200, "video/iso.segment")
    );
    assert!(part.cache_control.starts_with("public, max-age="));
    // The preload hint is held until the part exists, then served.
    let hint = text
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\""))
        .and_then(|l| l.split('"').next())
        .expect("a hint")
        .to_owned();
    let hinted = viewer.get(&hint);
    assert_eq!(hinted.status, 200, "{hint}: {}", hinted.text());
    assert!(!hinted.body.is_empty());
    // Too far ahead of the live edge: 400 at once.
    let far = viewer.get(&format!("{media}&_HLS_msn=999999&_HLS_part=0"));
    assert_eq!(far.status, 400, "{}", far.text());
    let bad = viewer.get(&format!("{media}&_HLS_part=1"));
    assert_eq!(
        bad.status,
        400,
        "_HLS_part without _HLS_msn: {}",
        bad.text()
    );
    // A CORS preflight, HEAD, and other methods.
    let agent = ureq::Agent::new();
    let options = agent
        .request(
            "OPTIONS",
            &format!("http://127.0.0.1:{port}/live/cam/index.m3u8"),
        )
        .call()
        .expect("OPTIONS");
    assert_eq!(options.status(), 204);
    assert_eq!(options.header("access-control-allow-origin"), Some("*"));
    let post = match agent
        .post(&format!("http://127.0.0.1:{port}/live/cam/index.m3u8"))
        .call()
    {
        Err(ureq::Error::Status(status, r)) => (status, r.header("allow").map(str::to_owned)),
        other => panic!("POST: {other:?}"),
    };
    assert_eq!(post, (405, Some("GET, HEAD, OPTIONS".to_owned())));
    let head = agent
        .head(&format!("http://127.0.0.1:{port}/live/cam/{media}"))
        .call()
        .expect("HEAD");
    assert_eq!(head.status(), 200);
    assert_eq!(
        head.header("content-type"),
        Some("application/vnd.apple.mpegurl")
    );
    assert!(head.into_string().expect("no body").is_empty());
    drop(proxy);
}

#[test]
fn mpegts_segments_for_old_players() {
    let hook = HookServer::start();
    let options = "<container>mpegts</container><low_latency>false</low_latency>\
                   <segment_duration_ms>1000</segment_duration_ms>";
    let (_srv, _publisher, proxy) = live(&hook, options, 60);
    let mut viewer = LlViewer::start(&proxy.url("live/cam/index.m3u8")).expect("a viewer");
    // Let a few segments complete.
    thread_sleep(3.0);
    let media = viewer.media.clone();
    let text = viewer.get(&media).text();
    assert!(
        !text.contains("#EXT-X-PART"),
        "no parts without low latency: {text}"
    );
    assert!(
        !text.contains("#EXT-X-MAP"),
        "no init segment in MPEG-TS: {text}"
    );
    let segment = text
        .lines()
        .find(|l| l.starts_with("seg") && l.contains(".ts?s="))
        .expect("a TS segment")
        .to_owned();
    let seg = viewer.get(&segment);
    assert_eq!((seg.status, seg.content_type.as_str()), (200, "video/mp2t"));
    assert_eq!(seg.body.first(), Some(&0x47), "MPEG-TS sync byte");
    assert_eq!(seg.body.len() % 188, 0);
    // ffmpeg reads it through the validating proxy.
    let (frames, log) = read_frames(&proxy.url("live/cam/index.m3u8"), 3.0, secs(30.0));
    assert!(
        frames >= 40,
        "ffmpeg decoded {frames} frames of the TS playlist: {log}"
    );
    proxy.assert_valid(2);
}

#[test]
fn a_reload_moves_the_hls_listener_and_its_viewers_sessions_go_on() {
    let hook = HookServer::start();
    let cfg = Config::new().hls_hooks(&hook.url("/hls"), "").hls(FAST);
    let srv = Server::start(&cfg);
    let _publisher = publish(&srv.url("live/cam"), 60);
    poll(secs(15.0), || {
        (api_get(srv.api_port, "/api/v1/streams/live/cam").status == 200).then_some(())
    })
    .expect("the stream went live");
    let old = srv.hls_port.expect("hls");
    let mut viewer = LlViewer::start(&srv.hls_url("live/cam/index.m3u8")).expect("a viewer");
    viewer.follow(secs(1.0));
    // The file moves HLS to another port and turns low latency off.
    let mut moved = cfg.clone();
    let new = free_port();
    if let Some(h) = moved.hls.as_mut() {
        h.port = new;
        h.options = FAST.replace("3000</idle", "30000</idle") + "<low_latency>false</low_latency>";
    }
    let mut file = moved.clone();
    file.data_dir = Some(srv.dir.file("data"));
    std::fs::write(&srv.config_path, file.to_xml()).expect("write the config");
    let answer = api_call(srv.api_port, "POST", "/api/v1/reload", None);
    assert_eq!(answer.status, 200, "{}", answer.text);
    let applied = answer.text;
    for expected in [
        "hls settings".to_owned(),
        format!("hls listener closed on [::]:{old}"),
        format!("hls listener opened on [::]:{new}"),
    ] {
        assert!(applied.contains(&expected), "{expected} in {applied}");
    }
    let server = api_get(srv.api_port, "/api/v1/server");
    assert_eq!(server.body["listeners"]["hls"], new, "{}", server.text);
    // The viewer's session goes on: its id opens the same session on the new port, and the
    // playlist there has no parts any more.
    let agent = ureq::Agent::new();
    let playlist = fetch(
        &agent,
        &format!("http://127.0.0.1:{new}/live/cam/{}", viewer.media),
    );
    assert_eq!(playlist.status, 200, "{}", playlist.text());
    assert!(
        !playlist.text().contains("#EXT-X-PART:"),
        "{}",
        playlist.text()
    );
    assert_eq!(
        hook.count(|r| r.field("protocol") == "hls" && r.call() == "play"),
        1,
        "no new session: {}",
        hook.dump()
    );
    poll(secs(5.0), || {
        std::net::TcpStream::connect(("127.0.0.1", old))
            .is_err()
            .then_some(())
    })
    .expect("the old port is closed");
}
