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
    // The players come once the stream has its codecs (an RTSP player that asks before is
    // refused).
    wait_codecs(api, "live", "cam");
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
        done_of(&hook, rtmp_play.clientid(), String::new).field("reason"),
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
    assert_eq!(
        done_of(&hook, publish.clientid(), String::new).field("reason"),
        "kicked"
    );
    for play in [&flv_play, &rtsp_play] {
        assert_eq!(
            done_of(&hook, play.clientid(), String::new).field("reason"),
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
        ("/api/v1/cluster/streams", &["get"][..]),
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

/// The samples of the server's `/metrics` page, read by the Prometheus Python client's parser:
/// `(name, labels, value)`.
fn scrape(api: u16) -> Vec<(String, Value, f64)> {
    let page = api_get(api, "/metrics");
    assert_eq!(page.status, 200, "{}", page.text);
    let mut parser = std::process::Command::new("python3");
    parser
        .arg(repo_file("tests/metrics_parse.py"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = parser.spawn().expect("python3");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin
            .write_all(page.text.as_bytes())
            .expect("write the page");
    }
    let out = child.wait_with_output().expect("the parser");
    assert!(
        out.status.success(),
        "the parser refused the page: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        page.text
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|line| {
            let v: Value = serde_json::from_str(line).expect("a JSON sample");
            (
                v["name"].as_str().expect("name").to_owned(),
                v["labels"].clone(),
                v["value"].as_f64().expect("value"),
            )
        })
        .collect()
}

/// The value of sample `name` whose labels include `labels` (0 when there is none).
fn sample(samples: &[(String, Value, f64)], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .find(|(n, l, _)| n == name && labels.iter().all(|(k, v)| l[*k] == *v))
        .map_or(0.0, |(_, _, v)| *v)
}

#[test]
fn metrics_parse_and_move_with_sessions_and_hooks() {
    let hook = HookServer::start();
    hook.rule(|r| {
        (r.call() == "play" && r.field("url").ends_with("who=denied")).then_some(Reply::Status(403))
    });
    let srv = Server::start(&Config::new().hooks(&hook.url("/rtmp"), ""));
    let api = srv.api_port;
    let before = scrape(api);
    assert_eq!(sample(&before, "streamgate_streams", &[]), 0.0);
    assert_eq!(
        sample(
            &before,
            "streamgate_sessions",
            &[("protocol", "rtmp"), ("role", "publisher")]
        ),
        0.0
    );

    let mut publisher = publish(&srv.url("live/m"), 60);
    hook.wait_call("publish", "m", HOOK_WAIT)
        .expect("on_publish");
    let mut player = spawn_player(&srv.url("live/m?who=allowed"), 60.0);
    let denied = play(&srv.url("live/m?who=denied"), 1.0, secs(20.0));
    assert!(denied.out.failed(), "the denied player is refused");
    let playing = hook
        .wait_for(
            |r| r.call() == "play" && r.field("url").ends_with("who=allowed"),
            HOOK_WAIT,
        )
        .expect("on_play of the allowed player");
    let during = poll(secs(15.0), || {
        let s = scrape(api);
        let rtmp = |role| {
            sample(
                &s,
                "streamgate_sessions",
                &[("protocol", "rtmp"), ("role", role)],
            )
        };
        (rtmp("publisher") == 1.0 && rtmp("player") == 1.0).then_some(s)
    })
    .expect("a publisher and a player in the gauges");
    assert_eq!(sample(&during, "streamgate_streams", &[]), 1.0);
    let hooks = |s: &[(String, Value, f64)], call, result| {
        sample(
            s,
            "streamgate_hook_calls_total",
            &[("protocol", "rtmp"), ("call", call), ("result", result)],
        )
    };
    assert!(hooks(&during, "play", "allow") >= 1.0);
    assert!(hooks(&during, "play", "deny") >= 1.0, "the deny is counted");
    assert!(hooks(&during, "publish", "allow") >= 1.0);
    assert!(
        sample(
            &during,
            "streamgate_hook_duration_seconds_count",
            &[("call", "play"), ("result", "deny")]
        ) >= 1.0
    );
    assert!(
        sample(
            &during,
            "streamgate_connections_total",
            &[("protocol", "rtmp"), ("result", "accepted")]
        ) >= 3.0
    );
    let received = |s: &[(String, Value, f64)]| {
        sample(
            s,
            "streamgate_received_bytes_total",
            &[("protocol", "rtmp")],
        )
    };
    let sent = |s: &[(String, Value, f64)]| {
        sample(s, "streamgate_sent_bytes_total", &[("protocol", "rtmp")])
    };
    assert!(received(&during) > 0.0 && sent(&during) > 0.0);

    // The player leaves: its counts move from live to ended, the byte counters only grow.
    player.kill();
    done_of(&hook, playing.clientid(), String::new);
    let after = poll(secs(10.0), || {
        let s = scrape(api);
        (sample(
            &s,
            "streamgate_sessions",
            &[("protocol", "rtmp"), ("role", "player")],
        ) == 0.0)
            .then_some(s)
    })
    .expect("the player is gone from the gauge");
    assert!(
        sample(
            &after,
            "streamgate_sessions_ended_total",
            &[("protocol", "rtmp"), ("role", "player"), ("reason", "lost")]
        ) >= 1.0,
        "its end is counted with its reason"
    );
    assert!(sent(&after) >= sent(&during), "sent bytes never go down");
    assert!(received(&after) >= received(&during));
    publisher.kill();
}

/// The OpenAPI document against the running server, by schemathesis (from PyPI, installed by
/// the test command): every documented operation, status, content type and schema holds for
/// the requests it makes, and none of them takes the server down.
#[test]
fn schemathesis_finds_the_server_true_to_its_openapi_document() {
    let srv = Server::start(&Config::new().httpflv().api_token("st-t0ken"));
    let mut publisher = publish(&srv.url("live/st"), 60);
    assert!(
        poll(secs(15.0), || {
            let s = api_call(srv.api_port, "GET", "/api/v1/streams", Some("st-t0ken"));
            (s.body["streams"].as_array().map(Vec::len) == Some(1)).then_some(())
        })
        .is_some(),
        "the stream is live"
    );
    let out = schemathesis(
        srv.api_port,
        &[
            "--max-examples",
            "25",
            "--header",
            "Authorization: Bearer st-t0ken",
        ],
        secs(240.0),
    );
    assert!(out.success(), "schemathesis: {}", out.text());
    assert!(
        out.text().contains("passed"),
        "schemathesis ran its cases: {}",
        out.text()
    );
    // It may have ended the stream (its stateful phase follows the stream list to DELETE):
    // the server still answers, and nothing in it panicked.
    let still = api_call(srv.api_port, "GET", "/api/v1/streams", Some("st-t0ken"));
    assert_eq!(still.status, 200, "the server still answers");
    assert!(!srv.log().contains("panicked"), "{}", srv.log_tail(40));
    publisher.kill();
}
