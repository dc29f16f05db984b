//! The operator API: live streams with their codecs and players, every session with the
//! clientid its hooks saw, kicks of a session and of a stream (their `on_done` says why), the
//! token. Real ffmpeg publishers and players, the real binary, a real hook server, real HTTP.

use std::time::Duration;

use streamgate_testkit::*;

const HOOK_WAIT: Duration = Duration::from_secs(15);

/// The `on_play` of the player whose protocol is `protocol`.
fn play_over(hook: &HookServer, protocol: &str) -> Record {
    hook.wait_for(
        |r| r.call() == "play" && r.field("protocol") == protocol,
        HOOK_WAIT,
    )
    .unwrap_or_else(|| panic!("on_play over {protocol}: {}", hook.dump()))
}

/// The `on_done` of `clientid`, waited for.
fn done_of(hook: &HookServer, clientid: &str) -> Record {
    hook.wait_for(|r| is_done_of(r, clientid), HOOK_WAIT)
        .unwrap_or_else(|| panic!("no on_done of {clientid}: {}", hook.dump()))
}

fn id(r: &Record) -> u64 {
    r.clientid().parse().expect("clientid is a number")
}

#[test]
fn the_api_shows_streams_and_sessions_and_kicks_them() {
    let hook = HookServer::start();
    let srv = Server::start(
        &Config::new()
            .hooks(&hook.url("/rtmp"), "")
            .httpflv_hooks(&hook.url("/httpflv"), "")
            .rtsp_hooks(&hook.url("/rtsp"), ""),
    );
    let api = srv.api_port;
    let mut publisher = publish(&srv.url("live/cam"), 60);
    let publish = hook
        .wait_call("publish", "cam", HOOK_WAIT)
        .expect("on_publish");
    let mut rtmp_player = spawn_player(&srv.url("live/cam?who=rtmp"), 60.0);
    let mut flv_player = spawn_player(&srv.flv_url("live/cam.flv"), 60.0);
    let mut rtsp_player = spawn_player(&srv.rtsp_url("live/cam"), 60.0);
    let (rtmp_play, flv_play, rtsp_play) = (
        play_over(&hook, "rtmp"),
        play_over(&hook, "httpflv"),
        play_over(&hook, "rtsp"),
    );

    // The stream: its publisher, codecs with their parameters, rates, players by protocol.
    let stream = poll(secs(20.0), || {
        let answer = api_get(api, "/api/v1/streams");
        assert_eq!(answer.status, 200, "{}", answer.text);
        let stream = answer.body["streams"].get(0)?.clone();
        let players = &stream["players"];
        let all_in = ["rtmp", "httpflv", "rtsp"].iter().all(|p| players[p] == 1)
            && stream["video"]["frame_rate"].as_f64()? > 20.0;
        all_in.then_some(stream)
    })
    .unwrap_or_else(|| {
        panic!(
            "the stream with its three players: {}",
            api_get(api, "/api/v1/streams").text
        )
    });
    assert_eq!(stream["app"], "live");
    assert_eq!(stream["name"], "cam");
    assert_eq!(stream["publisher"]["clientid"], id(&publish));
    assert_eq!(stream["publisher"]["protocol"], "rtmp");
    assert_eq!(stream["publisher"]["addr"], "127.0.0.1");
    assert_eq!(stream["video"]["codec"], "h264");
    assert_eq!(stream["video"]["width"], 640);
    assert_eq!(stream["video"]["height"], 360);
    assert!(
        stream["video"]["frame_rate"].as_f64() < Some(30.0),
        "{stream}"
    );
    assert_eq!(stream["audio"]["codec"], "aac");
    assert_eq!(stream["audio"]["sample_rate"], 44100);
    assert_eq!(stream["audio"]["channels"], 1);
    assert!(stream["bitrate"].as_u64() > Some(10_000), "{stream}");
    assert!(stream["bytes_in"].as_u64() > Some(10_000), "{stream}");
    assert_eq!(stream["players"]["srt"], 0);
    let one = api_get(api, "/api/v1/streams/live/cam");
    assert_eq!(one.status, 200);
    assert_eq!(one.body["publisher"]["clientid"], id(&publish));
    assert_eq!(api_get(api, "/api/v1/streams/live/none").status, 404);

    // The sessions, with the clientids the hooks saw.
    let players = api_get(api, "/api/v1/sessions?role=player");
    assert_eq!(players.status, 200, "{}", players.text);
    assert_eq!(players.body["total"], 3, "{}", players.text);
    let mut ids: Vec<u64> = players.body["sessions"]
        .as_array()
        .expect("sessions")
        .iter()
        .map(|s| s["clientid"].as_u64().expect("clientid"))
        .collect();
    ids.sort();
    let mut want = vec![id(&rtmp_play), id(&flv_play), id(&rtsp_play)];
    want.sort();
    assert_eq!(ids, want, "the players' clientids are the hooks'");
    let flv = api_get(api, "/api/v1/sessions?protocol=httpflv&app=live&name=cam");
    assert_eq!(flv.body["total"], 1, "{}", flv.text);
    let session = &flv.body["sessions"][0];
    assert_eq!(session["clientid"], id(&flv_play));
    assert_eq!(session["role"], "player");
    assert_eq!(session["url"], flv_play.field("url"));
    assert_eq!(session["addr"], "127.0.0.1");
    assert!(session["bytes_out"].as_u64() > Some(0));
    assert!(session["since"].as_u64() > Some(1_700_000_000_000));
    let publishers = api_get(api, "/api/v1/sessions?role=publisher");
    assert_eq!(publishers.body["sessions"][0]["clientid"], id(&publish));
    let page = api_get(api, "/api/v1/sessions?role=player&offset=1&limit=1");
    assert_eq!(page.body["total"], 3);
    assert_eq!(page.body["sessions"].as_array().map(Vec::len), Some(1));
    assert_eq!(page.body["sessions"][0]["clientid"], ids[1]);
    assert_eq!(api_get(api, "/api/v1/sessions?role=boss").status, 400);
    assert_eq!(api_get(api, "/api/v1/sessions?limit=0").status, 400);
    let got = api_get(api, &format!("/api/v1/sessions/{}", id(&rtsp_play)));
    assert_eq!(got.status, 200);
    assert_eq!(got.body["protocol"], "rtsp");
    assert_eq!(api_get(api, "/api/v1/sessions/12345").status, 404);

    // A kick of the RTMP player: its ffmpeg is told and exits, its on_done says `kicked`.
    let kicked = api_call(
        api,
        "DELETE",
        &format!("/api/v1/sessions/{}", id(&rtmp_play)),
        None,
    );
    assert_eq!(kicked.status, 202, "{}", kicked.text);
    assert_eq!(
        done_of(&hook, rtmp_play.clientid()).field("reason"),
        "kicked"
    );
    rtmp_player
        .wait_timeout(secs(10.0))
        .expect("the kicked player's ffmpeg ends");
    assert!(
        rtmp_player.stderr().contains("Ended by the operator"),
        "told why: {}",
        rtmp_player.stderr()
    );
    assert!(
        poll(secs(5.0), || {
            (api_get(api, "/api/v1/sessions?role=player").body["total"] == 2).then_some(())
        })
        .is_some(),
        "the kicked player is gone from the list"
    );

    // Ending the stream: the publisher says `kicked`, its players `stream_ended`.
    let ended = api_call(api, "DELETE", "/api/v1/streams/live/cam", None);
    assert_eq!(ended.status, 202, "{}", ended.text);
    assert_eq!(ended.body["clientid"], id(&publish));
    assert_eq!(done_of(&hook, publish.clientid()).field("reason"), "kicked");
    for play in [&flv_play, &rtsp_play] {
        assert_eq!(
            done_of(&hook, play.clientid()).field("reason"),
            "stream_ended"
        );
    }
    publisher
        .wait_timeout(secs(10.0))
        .expect("the publisher's ffmpeg ends");
    assert!(
        poll(secs(5.0), || {
            let streams = api_get(api, "/api/v1/streams");
            (streams.body["streams"].as_array().map(Vec::len) == Some(0)).then_some(())
        })
        .is_some(),
        "no stream left"
    );
    assert_eq!(
        api_call(api, "DELETE", "/api/v1/streams/live/cam", None).status,
        404
    );
    flv_player.kill();
    rtsp_player.kill();
}

#[test]
fn a_token_guards_every_api_request() {
    let srv = Server::start(&Config::new().api_token("s3cret-t0ken"));
    let api = srv.api_port;
    for path in [
        "/api/v1/streams",
        "/api/v1/sessions",
        "/api/v1/openapi.json",
    ] {
        let none = api_call(api, "GET", path, None);
        assert_eq!(none.status, 401, "{path} without a token");
        assert!(none.text.is_empty(), "401 and nothing else: {}", none.text);
        let wrong = api_call(api, "GET", path, Some("s3cret-t0keN"));
        assert_eq!(wrong.status, 401, "{path} with a wrong token");
        let right = api_call(api, "GET", path, Some("s3cret-t0ken"));
        assert_eq!(right.status, 200, "{path} with the token: {}", right.text);
    }
    let kick = api_call(api, "DELETE", "/api/v1/sessions/1", None);
    assert_eq!(kick.status, 401, "a kick without the token");
}

#[test]
fn the_openapi_document_names_every_endpoint() {
    let srv = Server::start(&Config::new());
    let doc = api_get(srv.api_port, "/api/v1/openapi.json");
    assert_eq!(doc.status, 200);
    assert!(doc.body["openapi"]
        .as_str()
        .is_some_and(|v| v.starts_with("3.")));
    let paths = &doc.body["paths"];
    for (path, methods) in [
        ("/api/v1/sessions", &["get"][..]),
        ("/api/v1/sessions/{clientid}", &["get", "delete"][..]),
        ("/api/v1/streams", &["get"][..]),
        ("/api/v1/streams/{app}/{name}", &["get", "delete"][..]),
    ] {
        for method in methods {
            assert!(
                paths[path][method].is_object(),
                "{method} {path} in {}",
                doc.text
            );
        }
    }
    let schemas = &doc.body["components"]["schemas"];
    for schema in ["Session", "SessionPage", "Stream", "StreamList", "Problem"] {
        assert!(schemas[schema].is_object(), "schema {schema}");
    }
}
