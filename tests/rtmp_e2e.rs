//! End-to-end tests of RTMP publish/play with HTTP Notify: the real `streamgate` binary on free
//! ports, a real HTTP business server in the test ([`streamgate_testkit::HookServer`]) and real ffmpeg /
//! ffprobe clients. Every test starts its own server and business server.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use streamgate_testkit::*;

/// How long to wait for a callback that must come.
const HOOK_WAIT: Duration = Duration::from_secs(10);

/// Whether one line of the server log names the hook `url` and every one of `words`
/// (case-insensitive), and, when given, the clientid as a whole number next to "clientid".
fn logged(srv: &Server, url: &str, clientid: Option<&str>, words: &[&str]) -> bool {
    srv.log().lines().any(|line| {
        let lower = line.to_lowercase();
        line.contains(url)
            && words.iter().any(|w| lower.contains(&w.to_lowercase()))
            && lower.contains("clientid")
            && clientid.is_none_or(|id| {
                line.match_indices(id).any(|(i, _)| {
                    let b = line.as_bytes();
                    let before = i.checked_sub(1).map(|j| b[j]);
                    let after = b.get(i + id.len()).copied();
                    !before.is_some_and(|c| c.is_ascii_digit())
                        && !after.is_some_and(|c| c.is_ascii_digit())
                })
            })
    })
}

/// The value of `token` in the query of a URL field.
fn token_of(url: &str) -> Option<String> {
    let (_, q) = url.split_once('?')?;
    parse_form(q)
        .into_iter()
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v)
}

/// `#dimensions 0: WxH` of a framemd5 output.
fn framemd5_dimensions(stdout: &str) -> Option<(u32, u32)> {
    let line = stdout.lines().find(|l| l.starts_with("#dimensions 0:"))?;
    let (w, h) = line.split(':').nth(1)?.trim().split_once('x')?;
    Some((w.trim().parse().ok()?, h.trim().parse().ok()?))
}

// ------------------------------------------------------------------------------------------
// 1

#[test]
fn publish_and_play_with_post_hooks_carrying_every_field() {
    let hook = HookServer::start();
    let srv = Server::start(&Config::new().hooks(&hook.url("/rtmp"), ""));
    let tc = srv.tcurl();

    let mut publisher = publish(&srv.url("live/cam1?token=abc"), 20);
    let pubrec = hook
        .wait_call("publish", "cam1", HOOK_WAIT)
        .expect("on_publish for cam1");

    let (frames, err) = read_frames(&srv.url("live/cam1"), 2.0, secs(20.0));
    assert!(frames > 0, "a player decodes video frames of cam1: {err}");

    // A player whose own query tries to overwrite the fields.
    let probe_path = "live/cam1?name=evil&call=evil&sig=1";
    let (codecs, out) = probe_codecs_out(&srv.url(probe_path));
    let want: BTreeSet<String> = ["h264", "aac"].iter().map(|s| s.to_string()).collect();
    assert!(
        want.is_subset(&codecs),
        "ffprobe sees h264 and aac, saw {codecs:?}: {}",
        out.text()
    );
    assert!(publisher.running(), "the publisher still runs");

    // on_publish
    assert_post(&pubrec, "/rtmp/publish");
    assert_fields(
        &pubrec,
        "rtmp",
        "publish",
        "cam1",
        &format!("{tc}/cam1?token=abc"),
        &tc,
    );
    let pub_id = pubrec.clientid().to_string();

    // on_connect of the publisher: same clientid, before the publish.
    let pub_connect = hook
        .find(|r| r.call() == "connect" && r.clientid() == pub_id)
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("on_connect with the publisher's clientid:\n{}", hook.dump()));
    assert_post(&pub_connect, "/rtmp/connect");
    assert_fields(&pub_connect, "rtmp", "connect", "", &tc, &tc);
    assert!(pub_connect.at <= pubrec.at, "connect comes before publish");

    // on_play of both players.
    let plays = hook.find(|r| r.call() == "play");
    assert_eq!(plays.len(), 2, "two on_play calls:\n{}", hook.dump());
    let plain = plays
        .iter()
        .find(|r| r.get("url") == Some(&format!("{tc}/cam1")))
        .unwrap_or_else(|| panic!("on_play with url {tc}/cam1:\n{}", hook.dump()));
    let odd = plays
        .iter()
        .find(|r| r.seq != plain.seq)
        .expect("the second on_play");
    for (r, url) in [
        (plain, format!("{tc}/cam1")),
        (odd, format!("{tc}/cam1?name=evil&call=evil&sig=1")),
    ] {
        assert_post(r, "/rtmp/play");
        assert_fields(r, "rtmp", "play", "cam1", &url, &tc);
        assert_ne!(
            r.clientid(),
            pub_id,
            "a player's clientid differs from the publisher's"
        );
        let conn = hook.find(|c| c.call() == "connect" && c.clientid() == r.clientid());
        assert_eq!(
            conn.len(),
            1,
            "one on_connect per player connection:\n{}",
            hook.dump()
        );
        assert_post(&conn[0], "/rtmp/connect");
        assert_fields(&conn[0], "rtmp", "connect", "", &tc, &tc);
    }
    assert_ne!(
        plain.clientid(),
        odd.clientid(),
        "two connections, two clientids"
    );

    // Every connection got its own clientid.
    let connects = hook.find(|r| r.call() == "connect");
    let ids: BTreeSet<&str> = connects.iter().map(|r| r.clientid()).collect();
    assert_eq!(
        ids.len(),
        connects.len(),
        "clientids are unique:\n{}",
        hook.dump()
    );

    // The players ended normally: their done repeats their play fields; the publisher has none yet.
    for p in [plain, odd] {
        let done = hook
            .wait_for(|r| is_done_of(r, p.clientid()), HOOK_WAIT)
            .unwrap_or_else(|| panic!("on_done for player {p:?}:\n{}", hook.dump()));
        assert_post(&done, "/rtmp/done");
        assert_done_matches(&done, p);
    }
    assert!(publisher.running(), "the publisher still runs");
    assert_eq!(
        hook.count(|r| is_done_of(r, &pub_id)),
        0,
        "no on_done for a publisher that is still publishing:\n{}",
        hook.dump()
    );
}

// ------------------------------------------------------------------------------------------
// 2

#[test]
fn get_mode_sends_fields_in_the_query_and_keeps_the_hook_query() {
    let hook = HookServer::start();
    hook.close_connections(true); // Connection: close on every answer
    let srv = Server::start(
        &Config::new()
            .hooks(&hook.url("/rtmp"), "?key=secret")
            .method("GET"),
    );
    let tc = srv.tcurl();

    let mut publisher = publish(&srv.url("live/cam2?token=abc"), 15);
    let pubrec = hook
        .wait_call("publish", "cam2", HOOK_WAIT)
        .expect("on_publish for cam2");
    let (frames, err) = read_frames(&srv.url("live/cam2?sig=1"), 1.5, secs(20.0));
    assert!(frames > 0, "a player decodes frames in GET mode: {err}");
    let playrec = hook
        .wait_call("play", "cam2", HOOK_WAIT)
        .expect("on_play for cam2");
    let play_done = hook
        .wait_for(|r| is_done_of(r, playrec.clientid()), HOOK_WAIT)
        .unwrap_or_else(|| panic!("on_done of the player:\n{}", hook.dump()));
    assert!(publisher.running(), "the publisher still runs");

    let pub_connect = hook
        .find(|r| r.call() == "connect" && r.clientid() == pubrec.clientid())
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("on_connect of the publisher:\n{}", hook.dump()));

    for (r, path, call, name, url) in [
        (&pub_connect, "/rtmp/connect", "connect", "", tc.clone()),
        (
            &pubrec,
            "/rtmp/publish",
            "publish",
            "cam2",
            format!("{tc}/cam2?token=abc"),
        ),
        (
            &playrec,
            "/rtmp/play",
            "play",
            "cam2",
            format!("{tc}/cam2?sig=1"),
        ),
        (
            &play_done,
            "/rtmp/done",
            "done",
            "cam2",
            format!("{tc}/cam2?sig=1"),
        ),
    ] {
        assert_eq!(r.method, "GET", "method of {r:?}");
        assert_eq!(r.path, path, "path of {r:?}");
        assert!(r.body.is_empty(), "a GET has no body: {r:?}");
        assert_eq!(
            r.field("key"),
            "secret",
            "the hook URL's own query stays: {r:?}"
        );
        assert!(
            r.query.starts_with("key=secret&"),
            "the fields are appended to the hook URL's own query: {r:?}"
        );
        assert_fields(r, "rtmp", call, name, &url, &tc);
    }
    assert_done_matches(&play_done, &playrec);
    assert_eq!(
        hook.count(|r| r.method != "GET"),
        0,
        "only GETs:\n{}",
        hook.dump()
    );
    assert!(
        hook.connections() >= hook.records().len(),
        "each request came on its own connection (Connection: close was honoured)"
    );
}

// ------------------------------------------------------------------------------------------
// 3

#[test]
fn deny_on_connect_refuses_the_publisher_and_creates_no_stream() {
    let hook = HookServer::start();
    // The first connect is refused, later ones allowed.
    let connects = Arc::new(AtomicUsize::new(0));
    let c = connects.clone();
    hook.rule(move |r| {
        (r.path.starts_with("/rtmp/connect") && c.fetch_add(1, Ordering::SeqCst) == 0)
            .then_some(Reply::Status(403))
    });
    let mut srv = Server::start(&Config::new().hooks(&hook.url("/rtmp"), ""));

    let mut denied = publish(&srv.url("live/cam3"), 15);
    let st = denied.wait_timeout(secs(8.0));
    assert!(
        st.is_some_and(|s| !s.success()),
        "a publisher refused at connect fails at once, got {st:?}: {}",
        denied.stderr()
    );
    let conn = hook
        .wait_for(|r| r.call() == "connect", HOOK_WAIT)
        .expect("on_connect");
    assert_eq!(conn.reply, Reply::Status(403));
    let denied_id = conn.clientid().to_string();

    // No stream: a player (whose connect is allowed) decodes nothing.
    let (frames, err) = read_frames(&srv.url("live/cam3"), 1.0, secs(8.0));
    assert_eq!(frames, 0, "no stream after a refused connect: {err}");
    assert_eq!(
        hook.count(|r| r.call() == "publish"),
        0,
        "no on_publish after a refused connect:\n{}",
        hook.dump()
    );
    assert_eq!(
        hook.count(|r| is_done_of(r, &denied_id)),
        0,
        "no on_done for a refused connection"
    );

    // The refusal concerned that connection only: the next publisher works.
    let _ok = publish(&srv.url("live/cam3"), 15);
    hook.wait_call("publish", "cam3", HOOK_WAIT)
        .expect("on_publish of the second publisher");
    let (frames, err) = read_frames(&srv.url("live/cam3"), 1.0, secs(20.0));
    assert!(frames > 0, "the allowed publisher's stream plays: {err}");
    assert!(srv.alive());
}

// ------------------------------------------------------------------------------------------
// 4

#[test]
fn deny_on_publish_refuses_the_publisher_and_creates_no_stream() {
    let hook = HookServer::start();
    hook.on_path("/rtmp/publish", Reply::Status(403));
    let mut srv = Server::start(&Config::new().hooks(&hook.url("/rtmp"), ""));

    let mut denied = publish(&srv.url("live/cam4?token=abc"), 15);
    let st = denied.wait_timeout(secs(8.0));
    assert!(
        st.is_some_and(|s| !s.success()),
        "a refused publisher fails at once, got {st:?}: {}",
        denied.stderr()
    );
    let rec = hook
        .wait_call("publish", "cam4", HOOK_WAIT)
        .expect("on_publish was asked");
    assert_eq!(rec.reply, Reply::Status(403));
    assert!(
        logged(
            &srv,
            &hook.url("/rtmp/publish"),
            Some(rec.clientid()),
            &["403"]
        ),
        "the refusal is logged with the URL, the status and the clientid"
    );

    let (frames, err) = read_frames(&srv.url("live/cam4"), 1.0, secs(8.0));
    assert_eq!(frames, 0, "a refused publish creates no stream: {err}");

    thread::sleep(secs(1.0));
    assert_eq!(
        hook.count(|r| is_done_of(r, rec.clientid())),
        0,
        "no on_done for a refused publish:\n{}",
        hook.dump()
    );
    assert!(srv.alive());
}

// ------------------------------------------------------------------------------------------
// 5

#[test]
fn deny_on_play_refuses_that_player_only() {
    let hook = HookServer::start();
    hook.rule(|r| {
        (r.path.starts_with("/rtmp/play") && r.get("url").is_some_and(|u| u.contains("ticket=bad")))
            .then_some(Reply::Status(403))
    });
    let srv = Server::start(&Config::new().hooks(&hook.url("/rtmp"), ""));

    let mut publisher = publish(&srv.url("live/cam5"), 20);
    hook.wait_call("publish", "cam5", HOOK_WAIT)
        .expect("on_publish for cam5");

    let denied = play(&srv.url("live/cam5?ticket=bad"), 1.0, secs(10.0));
    assert_eq!(denied.frames, 0, "a refused player decodes nothing");
    assert!(
        denied.out.failed(),
        "a refused player fails by itself (NetStream.Play.Failed), not by our timeout: {:?}",
        denied.out
    );
    let rec = hook
        .wait_for(
            |r| r.call() == "play" && r.get("url").is_some_and(|u| u.contains("ticket=bad")),
            HOOK_WAIT,
        )
        .expect("on_play of the refused player");
    assert_eq!(rec.reply, Reply::Status(403));
    assert_fields(
        &rec,
        "rtmp",
        "play",
        "cam5",
        &format!("{}/cam5?ticket=bad", srv.tcurl()),
        &srv.tcurl(),
    );

    let (frames, err) = read_frames(&srv.url("live/cam5?ticket=good"), 1.0, secs(20.0));
    assert!(frames > 0, "an allowed player still plays: {err}");
    assert!(publisher.running(), "the publisher was not disturbed");
    assert_eq!(
        hook.count(|r| is_done_of(r, rec.clientid())),
        0,
        "no on_done for a refused play:\n{}",
        hook.dump()
    );
}

// ------------------------------------------------------------------------------------------
// 6

#[test]
fn private_streams_need_token_good() {
    let hook = HookServer::start();
    hook.rule(|r| {
        let private = r.name().starts_with("private_");
        let good = r.get("url").and_then(token_of).is_some_and(|t| t == "good");
        (private && !good && r.call() != "done").then_some(Reply::Status(403))
    });
    let srv = Server::start(&Config::new().hooks(&hook.url("/rtmp"), ""));

    let mut ok = publish(&srv.url("live/private_ok?token=good"), 20);
    let mut bad = publish(&srv.url("live/private_bad?token=bad"), 15);
    let mut none = publish(&srv.url("live/private_none"), 15);

    let okrec = hook
        .wait_call("publish", "private_ok", HOOK_WAIT)
        .expect("on_publish private_ok");
    assert_eq!(okrec.reply, Reply::Status(200));
    for (p, name) in [(&mut bad, "private_bad"), (&mut none, "private_none")] {
        let st = p.wait_timeout(secs(8.0));
        assert!(
            st.is_some_and(|s| !s.success()),
            "{name} without token=good is refused, got {st:?}: {}",
            p.stderr()
        );
        let rec = hook
            .wait_call("publish", name, HOOK_WAIT)
            .unwrap_or_else(|| panic!("on_publish {name}"));
        assert_eq!(rec.reply, Reply::Status(403));
    }
    assert!(ok.running(), "the publisher with token=good runs");

    let denied = play(&srv.url("live/private_ok"), 1.0, secs(10.0));
    assert_eq!(
        denied.frames, 0,
        "a player without token=good decodes nothing"
    );
    assert!(denied.out.failed(), "and is refused: {:?}", denied.out);
    let (frames, err) = read_frames(&srv.url("live/private_ok?token=good"), 1.0, secs(20.0));
    assert!(frames > 0, "a player with token=good plays: {err}");
    let (frames, _) = read_frames(&srv.url("live/private_bad?token=good"), 1.0, secs(8.0));
    assert_eq!(frames, 0, "the refused publisher created no stream");
}

// ------------------------------------------------------------------------------------------
// 7a

#[test]
fn on_done_once_when_player_and_publisher_close_normally() {
    let hook = HookServer::start();
    let srv = Server::start(&Config::new().hooks(&hook.url("/rtmp"), ""));

    let mut publisher = publish(&srv.url("live/cam7a"), 7);
    let pubrec = hook
        .wait_call("publish", "cam7a", HOOK_WAIT)
        .expect("on_publish");
    let (frames, err) = read_frames(&srv.url("live/cam7a"), 1.5, secs(15.0));
    assert!(frames > 0, "the player decodes frames: {err}");
    let playrec = hook.wait_call("play", "cam7a", HOOK_WAIT).expect("on_play");

    let done = hook
        .wait_for(|r| is_done_of(r, playrec.clientid()), secs(5.0))
        .unwrap_or_else(|| panic!("on_done after the player closed:\n{}", hook.dump()));
    assert_done_matches(&done, &playrec);
    assert!(done.at >= playrec.at);
    if publisher.running() {
        assert_eq!(
            hook.count(|r| is_done_of(r, pubrec.clientid())),
            0,
            "the player's close ends only the player's session:\n{}",
            hook.dump()
        );
    }

    // The publisher's -t runs out: it closes normally.
    let st = publisher.wait_timeout(secs(15.0));
    assert!(st.is_some(), "the publisher finishes its 7 s");
    let pdone = hook
        .wait_for(|r| is_done_of(r, pubrec.clientid()), secs(5.0))
        .unwrap_or_else(|| panic!("on_done after the publisher closed:\n{}", hook.dump()));
    assert_done_matches(&pdone, &pubrec);

    thread::sleep(secs(1.0));
    assert_eq!(
        hook.count(|r| is_done_of(r, playrec.clientid())),
        1,
        "{}",
        hook.dump()
    );
    assert_eq!(
        hook.count(|r| is_done_of(r, pubrec.clientid())),
        1,
        "{}",
        hook.dump()
    );
    assert_eq!(hook.count(|r| r.call() == "done"), 2, "{}", hook.dump());
}

// 7b

#[test]
fn on_done_once_for_publisher_killed_and_player_under_it() {
    let hook = HookServer::start();
    let srv = Server::start(&Config::new().hooks(&hook.url("/rtmp"), ""));

    let mut publisher = publish(&srv.url("live/cam7b"), 25);
    let pubrec = hook
        .wait_call("publish", "cam7b", HOOK_WAIT)
        .expect("on_publish");
    let mut player = spawn_player(&srv.url("live/cam7b"), 30.0);
    let playrec = hook.wait_call("play", "cam7b", HOOK_WAIT).expect("on_play");
    thread::sleep(secs(2.0));
    assert!(player.running(), "the player plays: {}", player.stderr());

    let killed_at = Instant::now();
    publisher.kill(); // SIGKILL

    let pdone = hook
        .wait_for(|r| is_done_of(r, pubrec.clientid()), secs(8.0))
        .unwrap_or_else(|| panic!("on_done for the killed publisher:\n{}", hook.dump()));
    assert_done_matches(&pdone, &pubrec);
    assert!(pdone.at >= killed_at);
    let done = hook
        .wait_for(|r| is_done_of(r, playrec.clientid()), secs(8.0))
        .unwrap_or_else(|| {
            panic!(
                "on_done for the player whose stream ended:\n{}",
                hook.dump()
            )
        });
    assert_done_matches(&done, &playrec);

    // The player is ended too (stream ended under it), having decoded frames before.
    let played = finish_player(player, secs(10.0));
    assert!(
        !played.out.timed_out,
        "the player is ended when its stream ends: {:?}",
        played.out
    );
    assert!(
        played.frames > 0,
        "the player had decoded frames: {:?}",
        played.out
    );

    thread::sleep(secs(1.0));
    assert_eq!(
        hook.count(|r| is_done_of(r, pubrec.clientid())),
        1,
        "{}",
        hook.dump()
    );
    assert_eq!(
        hook.count(|r| is_done_of(r, playrec.clientid())),
        1,
        "{}",
        hook.dump()
    );
}

// 7c

#[test]
fn on_done_once_for_every_session_on_sigint() {
    on_done_once_for_every_session_on_signal("INT");
}

#[test]
fn on_done_once_for_every_session_on_sigterm() {
    on_done_once_for_every_session_on_signal("TERM");
}

fn on_done_once_for_every_session_on_signal(sig: &str) {
    let hook = HookServer::start();
    let mut srv = Server::start(&Config::new().hooks(&hook.url("/rtmp"), ""));
    let name = format!("cam7{}", sig.to_lowercase());

    let _publisher = publish(&srv.url(&format!("live/{name}")), 25);
    let pubrec = hook
        .wait_call("publish", &name, HOOK_WAIT)
        .expect("on_publish");
    let mut player = spawn_player(&srv.url(&format!("live/{name}")), 30.0);
    let playrec = hook.wait_call("play", &name, HOOK_WAIT).expect("on_play");
    thread::sleep(secs(1.5));
    assert!(player.running(), "the player plays: {}", player.stderr());
    assert_eq!(hook.count(|r| r.call() == "done"), 0, "{}", hook.dump());

    let (_status, exited_at) = srv
        .stop_with(sig, secs(10.0))
        .unwrap_or_else(|| panic!("the server exits within 10 s of SIG{sig}"));

    for call in [&pubrec, &playrec] {
        let done = hook
            .find(|r| is_done_of(r, call.clientid()))
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("on_done for {call:?} before the exit:\n{}", hook.dump()));
        assert!(
            done.at <= exited_at,
            "on_done arrived before the process exited"
        );
        assert_done_matches(&done, call);
    }
    thread::sleep(secs(1.0));
    for id in [pubrec.clientid(), playrec.clientid()] {
        assert_eq!(
            hook.count(|r| is_done_of(r, id)),
            1,
            "exactly one on_done for clientid {id}:\n{}",
            hook.dump()
        );
    }
    player.kill();
}

// ------------------------------------------------------------------------------------------
// 8

#[test]
fn hook_that_never_answers_refuses_after_the_timeout() {
    let hook = HookServer::start();
    hook.on_field("/rtmp/publish", "name", "stuck", Reply::Hang);
    let mut srv = Server::start(&Config::new().hooks(&hook.url("/rtmp"), "").timeout_ms(1000));

    let mut stuck = publish(&srv.url("live/stuck"), 15);
    let rec = hook
        .wait_call("publish", "stuck", HOOK_WAIT)
        .expect("on_publish of stuck was called");
    let st = stuck.wait_timeout(secs(10.0));
    assert!(
        st.is_some_and(|s| !s.success()),
        "a publish whose hook never answers is refused, got {st:?}: {}",
        stuck.stderr()
    );
    let after = stuck.exited_at().expect("exit time") - rec.at;
    eprintln!("hook timeout: refused {after:?} after on_publish arrived");
    assert!(
        after >= secs(0.8) && after <= secs(5.0),
        "refused about 1 s (timeout_ms) after the hook was called, took {after:?}"
    );
    assert_eq!(
        hook.count(|r| is_done_of(r, rec.clientid())),
        0,
        "no on_done for a refused publish"
    );
    assert!(
        logged(
            &srv,
            &hook.url("/rtmp/publish"),
            Some(rec.clientid()),
            &["timeout", "timed out"]
        ),
        "the timeout is logged with the URL and the clientid"
    );

    // Others are not stuck behind it.
    let _free = publish(&srv.url("live/free"), 15);
    hook.wait_call("publish", "free", HOOK_WAIT)
        .expect("on_publish of free");
    let (frames, err) = read_frames(&srv.url("live/free"), 1.0, secs(20.0));
    assert!(frames > 0, "another stream plays: {err}");
    assert!(srv.alive());
}

#[test]
fn hook_server_down_refuses_at_once() {
    const FAILURE_WORDS: [&str; 4] = ["refused", "unreachable", "error", "fail"];
    let dead = free_port();
    let base = format!("http://127.0.0.1:{dead}/rtmp");

    // Every hook down.
    let srv = Server::start(&Config::new().hooks(&base, "").timeout_ms(10000));
    let started = Instant::now();
    let mut p = publish(&srv.url("live/down"), 15);
    let st = p.wait_timeout(secs(8.0));
    assert!(
        st.is_some_and(|s| !s.success()),
        "refused when the hook server is down, got {st:?}: {}",
        p.stderr()
    );
    let took = started.elapsed();
    eprintln!("hook down: refused after {took:?}");
    assert!(
        took < secs(5.0),
        "refused well before the 10 s timeout, took {took:?}"
    );
    assert!(
        logged(&srv, &format!("{base}/connect"), None, &FAILURE_WORDS),
        "the failed on_connect is logged with the URL, the error and the clientid"
    );
    drop(p);
    drop(srv);

    // Only on_publish configured (and down): connect is not called, publish is refused at once.
    let mut cfg = Config::new().timeout_ms(10000);
    cfg.on_publish = Some(format!("{base}/publish"));
    let mut srv = Server::start(&cfg);
    let started = Instant::now();
    let mut p = publish(&srv.url("live/down2"), 15);
    let st = p.wait_timeout(secs(8.0));
    assert!(
        st.is_some_and(|s| !s.success()),
        "publish refused when its hook server is down, got {st:?}: {}",
        p.stderr()
    );
    let took = started.elapsed();
    eprintln!("hook down: refused after {took:?}");
    assert!(
        took < secs(5.0),
        "refused well before the 10 s timeout, took {took:?}"
    );
    assert!(
        logged(&srv, &format!("{base}/publish"), None, &FAILURE_WORDS),
        "the failed on_publish is logged with the URL, the error and the clientid"
    );
    assert!(srv.alive());
}

// ------------------------------------------------------------------------------------------
// 9

#[test]
fn slow_hook_for_one_client_does_not_delay_another() {
    let hook = HookServer::start();
    let delay = secs(5.0);
    hook.on_field("/rtmp/play", "name", "slow", Reply::Delay(delay, 200));
    // One worker: both players share one arbiter and its NotifyActor. The timeout is longer
    // than the delay: the slow hook is slow, not failed.
    let srv = Server::start(
        &Config::new()
            .workers(1)
            .timeout_ms(10000)
            .hooks(&hook.url("/rtmp"), ""),
    );

    let _p1 = publish(&srv.url("live/slow"), 25);
    let _p2 = publish(&srv.url("live/fast"), 25);
    hook.wait_call("publish", "slow", HOOK_WAIT)
        .expect("on_publish slow");
    hook.wait_call("publish", "fast", HOOK_WAIT)
        .expect("on_publish fast");
    thread::sleep(secs(1.0));

    let slow_player = spawn_player(&srv.url("live/slow"), 1.0);
    let slow_rec = hook
        .wait_call("play", "slow", HOOK_WAIT)
        .expect("on_play slow");
    let fast = play(&srv.url("live/fast"), 1.0, secs(20.0));
    let fast_finished = Instant::now();
    eprintln!(
        "slow hook: fast player finished {:?} after slow asked",
        fast_finished - slow_rec.at
    );
    assert!(
        fast.frames > 0,
        "the fast player decodes frames: {:?}",
        fast.out
    );

    let slow_answered = poll(secs(10.0), || {
        hook.find(|r| r.seq == slow_rec.seq)
            .first()
            .and_then(|r| r.answered_at)
    })
    .expect("the slow hook answered");
    let fast_rec = hook
        .wait_call("play", "fast", HOOK_WAIT)
        .expect("on_play fast");
    assert!(
        fast_rec.at > slow_rec.at,
        "fast asked while slow was pending"
    );
    assert!(
        fast_rec.answered_at.is_some_and(|t| t < slow_answered),
        "fast's on_play was answered before slow's"
    );
    assert!(
        fast_finished < slow_answered,
        "the fast player had its frames before the slow hook answered (finished {:?} after slow asked, slow answered after {:?})",
        fast_finished - slow_rec.at,
        slow_answered - slow_rec.at
    );

    let slow = finish_player(slow_player, secs(20.0));
    assert!(
        slow.frames > 0,
        "the slow player plays once allowed: {:?}",
        slow.out
    );
    assert!(
        slow.out.elapsed >= delay,
        "the slow player waited for its hook ({:?})",
        slow.out.elapsed
    );
}

// ------------------------------------------------------------------------------------------
// 10

#[test]
fn several_streams_and_players_at_once() {
    let hook = HookServer::start();
    // Only on_publish and on_done: connect and play hooks are disabled (left out).
    let mut cfg = Config::new();
    cfg.on_publish = Some(hook.url("/rtmp/publish"));
    cfg.on_done = Some(hook.url("/rtmp/done"));
    let srv = Server::start(&cfg);

    let mut big = publish(&srv.url("live/big"), 25);
    let mut small = publish_with(
        &srv.url("live/small"),
        25,
        "testsrc2=size=320x240:rate=25",
        25,
    );
    hook.wait_call("publish", "big", HOOK_WAIT)
        .expect("on_publish big");
    hook.wait_call("publish", "small", HOOK_WAIT)
        .expect("on_publish small");
    thread::sleep(secs(1.0));

    let wanted = [
        ("big", (640, 360)),
        ("small", (320, 240)),
        ("small", (320, 240)),
    ];
    let players: Vec<Proc> = wanted
        .iter()
        .map(|(name, _)| spawn_player(&srv.url(&format!("live/{name}")), 3.0))
        .collect();
    for (name, size) in [("big", (640, 360)), ("small", (320, 240))] {
        let (got, out) = probe_size(&srv.url(&format!("live/{name}")));
        assert_eq!(got, Some(size), "ffprobe size of {name}: {}", out.text());
    }
    for (p, (name, size)) in players.into_iter().zip(wanted) {
        let played = finish_player(p, secs(25.0));
        assert!(
            played.frames > 0,
            "player of {name} decodes frames: {:?}",
            played.out
        );
        assert_eq!(
            framemd5_dimensions(&played.out.stdout),
            Some(size),
            "player of {name} gets {name}'s picture"
        );
    }
    assert!(
        big.running() && small.running(),
        "both publishers still run"
    );
    assert_eq!(
        hook.count(|r| r.call() == "connect" || r.call() == "play"),
        0,
        "left-out hooks are not called:\n{}",
        hook.dump()
    );
    let publishes = hook.find(|r| r.call() == "publish");
    assert_eq!(publishes.len(), 2, "{}", hook.dump());
    assert_ne!(publishes[0].clientid(), publishes[1].clientid());
}

// ------------------------------------------------------------------------------------------
// 11

#[test]
fn joining_player_starts_on_a_keyframe_from_the_gop_cache() {
    let hook = HookServer::start();
    let srv = Server::start(&Config::new().hooks(&hook.url("/rtmp"), ""));

    // A 5 s GOP (-g 125 at 25 fps); the player joins 6 s in, i.e. 1 s into the second GOP:
    // without a GOP cache the next keyframe is ~4 s away.
    let _publisher = publish_with(&srv.url("live/gop"), 25, TESTSRC, 125);
    let rec = hook
        .wait_call("publish", "gop", HOOK_WAIT)
        .expect("on_publish gop");
    let join_at = rec.at + secs(6.0);
    if let Some(d) = join_at.checked_duration_since(Instant::now()) {
        thread::sleep(d);
    }

    let started = Instant::now();
    let out = ffprobe(
        &srv.url("live/gop"),
        &[
            "-select_streams",
            "v:0",
            "-read_intervals",
            "%+#3",
            "-show_entries",
            "packet=pts_time,flags",
            "-of",
            "csv=p=0",
        ],
        secs(20.0),
    );
    let took = started.elapsed();
    eprintln!("gop: ffprobe got its packets in {took:?}:\n{}", out.stdout);
    let first = out.stdout.lines().find(|l| !l.trim().is_empty());
    let first = first.unwrap_or_else(|| panic!("ffprobe shows video packets: {}", out.text()));
    assert!(
        first.split(',').nth(1).is_some_and(|f| f.contains('K')),
        "the first video packet a joining player gets is a keyframe: {first:?}\n{}",
        out.stdout
    );
    assert!(
        took < secs(3.0),
        "the joining player gets its keyframe at once (GOP cache), not at the next keyframe: took {took:?}"
    );

    let out = ffprobe(
        &srv.url("live/gop"),
        &[
            "-select_streams",
            "v:0",
            "-show_frames",
            "-read_intervals",
            "%+#1",
            "-show_entries",
            "frame=key_frame,pict_type",
            "-of",
            "csv=p=0",
        ],
        secs(20.0),
    );
    let first = out
        .stdout
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_else(|| panic!("ffprobe decodes a frame: {}", out.text()));
    let mut cols = first.split(',');
    assert_eq!(
        (cols.next(), cols.next()),
        (Some("1"), Some("I")),
        "the first decoded frame is a keyframe (key_frame,pict_type): {first:?}"
    );

    // The replayed headers/metadata let a joining player see both codecs.
    let (codecs, out) = probe_codecs_out(&srv.url("live/gop"));
    assert!(
        codecs.contains("h264") && codecs.contains("aac"),
        "codecs of a joining player: {codecs:?} {}",
        out.text()
    );
}

// ------------------------------------------------------------------------------------------
// 12

#[test]
fn hostile_bytes_and_half_open_sockets_do_not_disturb_a_stream() {
    let hook = HookServer::start();
    let mut srv = Server::start(&Config::new().hooks(&hook.url("/rtmp"), ""));
    let port = srv.port;

    let mut publisher = publish(&srv.url("live/steady"), 25);
    hook.wait_call("publish", "steady", HOOK_WAIT)
        .expect("on_publish steady");
    let player = spawn_player(&srv.url("live/steady"), 10.0);
    hook.wait_call("play", "steady", HOOK_WAIT)
        .expect("on_play steady");
    thread::sleep(secs(1.0));

    let mut rng = Rng::new(0x5eed_1234_abcd);
    let mut held: Vec<TcpStream> = Vec::new();

    // 20 connections of random garbage.
    for i in 0..20 {
        let mut s = connect(port).expect("connect for garbage");
        let n = 64 + (rng.next_u64() % 8192) as usize;
        let _ = s.write_all(&rng.bytes(n));
        if i % 2 == 0 {
            held.push(s);
        }
    }
    // 10 that look like a handshake (0x03) and go on with garbage.
    for _ in 0..10 {
        let mut s = connect(port).expect("connect for fake handshake");
        let mut bytes = vec![3u8];
        bytes.extend(rng.bytes(1536 + 1536 + 4096));
        let _ = s.write_all(&bytes);
        held.push(s);
    }
    // 10 half-open: connect, send nothing, stay open.
    let half_open: Vec<TcpStream> = (0..10)
        .map(|_| connect(port).expect("connect half-open"))
        .collect();

    // A real handshake, then a huge chunk size and a message claiming 16 MB.
    {
        let mut s = connect(port).expect("connect for huge chunk");
        rtmp_handshake(&mut s).expect("RTMP handshake with the server");
        let mut m = Vec::new();
        // Set Chunk Size (type 1) on csid 2: 0x7fffffff.
        m.extend_from_slice(&[0x02, 0, 0, 0, 0, 0, 4, 0x01, 0, 0, 0, 0]);
        m.extend_from_slice(&0x7fff_ffffu32.to_be_bytes());
        // AMF0 command (type 20) on csid 3 claiming 0xffffff bytes.
        m.extend_from_slice(&[0x03, 0, 0, 0, 0xff, 0xff, 0xff, 0x14, 0, 0, 0, 0]);
        m.extend(rng.bytes(256 * 1024));
        let _ = s.write_all(&m);
        held.push(s);
    }
    {
        // Chunk size 0 and an extended timestamp on a 3-byte chunk stream id, then a
        // video message claiming 16 MB on a fresh chunk stream with a type-3 header.
        let mut s = connect(port).expect("connect for bad chunk size");
        rtmp_handshake(&mut s).expect("RTMP handshake with the server");
        let mut m = Vec::new();
        m.extend_from_slice(&[0x02, 0, 0, 0, 0, 0, 4, 0x01, 0, 0, 0, 0]);
        m.extend_from_slice(&0u32.to_be_bytes());
        m.extend_from_slice(&[
            0x01, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x09, 1, 0, 0, 0,
        ]);
        m.extend_from_slice(&[0xff, 0xff, 0xff, 0xff]);
        m.extend_from_slice(&[0xc7]); // type-3 header on csid 7 with no previous header
        m.extend(rng.bytes(64 * 1024));
        let _ = s.write_all(&m);
        held.push(s);
    }
    {
        // Valid chunking, then a 16 MB AMF0 command sent for real in 64 KB chunks.
        let mut s = connect(port).expect("connect for big message");
        rtmp_handshake(&mut s).expect("RTMP handshake with the server");
        let mut m = Vec::new();
        m.extend_from_slice(&[0x02, 0, 0, 0, 0, 0, 4, 0x01, 0, 0, 0, 0]);
        m.extend_from_slice(&65536u32.to_be_bytes());
        m.extend_from_slice(&[0x03, 0, 0, 0, 0xff, 0xff, 0xff, 0x14, 0, 0, 0, 0]);
        let _ = s.write_all(&m);
        let block = rng.bytes(65536);
        let _ = s.set_write_timeout(Some(secs(2.0)));
        for _ in 0..256 {
            if s.write_all(&block).is_err() || s.write_all(&[0xc3]).is_err() {
                break; // the server may hang up on it
            }
        }
        drop(s);
    }

    // Server side reactions to the garbage: it must hang up on at least the garbage senders.
    for s in held.iter_mut().take(5) {
        let _ = s.set_read_timeout(Some(secs(5.0)));
        let mut sink = [0u8; 4096];
        let closed = loop {
            match s.read(&mut sink) {
                Ok(0) => break true,
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break true,
                Err(_) => break false,
            }
        };
        assert!(closed, "the server hangs up on a client that sends garbage");
    }

    assert!(srv.alive(), "the server survives hostile bytes");
    let (frames, err) = read_frames(&srv.url("live/steady"), 1.0, secs(20.0));
    assert!(
        frames > 0,
        "a new player joins after the hostile bytes: {err}"
    );

    let played = finish_player(player, secs(30.0));
    assert!(
        played.frames >= 200,
        "the player that ran through it all decoded its 10 s ({} frames): {:?}",
        played.frames,
        played.out.stderr
    );
    assert!(publisher.running(), "the publisher was not disturbed");
    assert!(srv.alive(), "the server is alive");
    drop(half_open);
    drop(held);
    thread::sleep(secs(0.5));
    assert!(srv.alive(), "the server is alive after the sockets closed");
    assert_eq!(
        hook.count(|r| r.call() == "publish"),
        1,
        "garbage never reached a publish:\n{}",
        hook.dump()
    );
}

// ------------------------------------------------------------------------------------------
// 13

fn bad_config_case(
    dir: &TempDir,
    file: &str,
    xml: &str,
    names: &[&str],
    lines: &[usize],
) -> Output {
    let path = dir.file(file);
    std::fs::write(&path, xml).expect("write config");
    let out = run(
        "check-config",
        Command::new(cargo_bin("streamgate"))
            .arg("--check-config")
            .arg(&path),
        secs(10.0),
    );
    let text = out.text();
    assert!(
        out.failed(),
        "--check-config {file} exits non-zero by itself: {out:?}\n{xml}"
    );
    assert!(
        names.iter().any(|n| text.contains(n)),
        "the error of {file} names the element (one of {names:?}): {text}"
    );
    assert!(
        lines.iter().any(|l| mentions_line(&text, *l)),
        "the error of {file} names the line (one of {lines:?}): {text}"
    );
    out
}

#[test]
fn bad_configs_are_refused_with_element_and_line() {
    let dir = TempDir::new("cfg");
    let port = free_port();
    let good = Config::new().to_xml();

    let head = |rest: &str| {
        format!(
            "<config>\n  <workers>2</workers>\n  <log_level>info</log_level>\n  <rtmp>\n    <enable>true</enable>\n{rest}"
        )
    };

    let malformed = head(&format!("    <port>{port}</rtmp>\n  </rtmp>\n</config>\n"));
    let l = line_of(&malformed, "<port>");
    bad_config_case(&dir, "malformed.xml", &malformed, &["port", "rtmp"], &[l]);

    let unknown = head(&format!(
        "    <port>{port}</port>\n    <bogus_option>1</bogus_option>\n  </rtmp>\n</config>\n"
    ));
    let l = line_of(&unknown, "<bogus_option>");
    bad_config_case(&dir, "unknown.xml", &unknown, &["bogus_option"], &[l]);

    let bad_port = head("    <port>99999</port>\n  </rtmp>\n</config>\n");
    let l = line_of(&bad_port, "<port>");
    bad_config_case(&dir, "bad_port.xml", &bad_port, &["port"], &[l]);

    let word_port = head("    <port>abc</port>\n  </rtmp>\n</config>\n");
    let l = line_of(&word_port, "<port>");
    bad_config_case(&dir, "word_port.xml", &word_port, &["port"], &[l]);

    let ftp = head(&format!(
        "    <port>{port}</port>\n    <http_notify>\n      <on_connect>http://127.0.0.1:9/c</on_connect>\n      <on_publish>ftp://127.0.0.1/publish</on_publish>\n    </http_notify>\n  </rtmp>\n</config>\n"
    ));
    let l = line_of(&ftp, "<on_publish>");
    bad_config_case(&dir, "ftp.xml", &ftp, &["on_publish"], &[l]);

    let put = head(&format!(
        "    <port>{port}</port>\n    <http_notify>\n      <on_publish>http://127.0.0.1:9/p</on_publish>\n      <notify_method>PUT</notify_method>\n    </http_notify>\n  </rtmp>\n</config>\n"
    ));
    let l = line_of(&put, "<notify_method>");
    bad_config_case(&dir, "put.xml", &put, &["notify_method"], &[l]);

    // A setting of another protocol's section is refused where it does not belong.
    let misplaced = format!(
        "<config>\n  <rtmp>\n    <enable>true</enable>\n    <port>{port}</port>\n    <rtp_port_min>30000</rtp_port_min>\n  </rtmp>\n</config>\n"
    );
    let l = line_of(&misplaced, "<rtp_port_min>");
    bad_config_case(&dir, "misplaced.xml", &misplaced, &["rtp_port_min"], &[l]);

    // --config with a bad file exits non-zero promptly and does not serve.
    let started = Instant::now();
    let out = run(
        "config-bad",
        Command::new(cargo_bin("streamgate"))
            .arg("--config")
            .arg(dir.file("unknown.xml")),
        secs(10.0),
    );
    assert!(
        out.failed(),
        "--config with a bad file exits non-zero: {out:?}"
    );
    assert!(started.elapsed() < secs(5.0), "and promptly");
    assert!(
        out.text().contains("bogus_option"),
        "and says why: {}",
        out.text()
    );
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "nothing listens after a bad config"
    );

    // Good files pass.
    let good_path = dir.file("good.xml");
    std::fs::write(&good_path, &good).expect("write good config");
    let out = run(
        "check-good",
        Command::new(cargo_bin("streamgate"))
            .arg("--check-config")
            .arg(&good_path),
        secs(10.0),
    );
    assert!(
        out.success(),
        "--check-config on a good file exits 0: {out:?}\n{good}"
    );
    let shipped = repo_file("config/streamgate.xml");
    let out = run(
        "check-shipped",
        Command::new(cargo_bin("streamgate"))
            .arg("--check-config")
            .arg(&shipped),
        secs(10.0),
    );
    assert!(
        out.success(),
        "--check-config config/streamgate.xml exits 0: {out:?}"
    );
}

/// SRT counts a passphrase in bytes (10 to 79). One of 40 two-byte characters is 80 bytes:
/// `--check-config` must refuse it with the element and line, as start-up does, so that a file
/// that checks is a file that starts.
#[test]
fn an_srt_passphrase_too_long_in_bytes_is_refused_by_check_config_and_start_up() {
    let dir = TempDir::new("cfg-passphrase");
    let passphrase = "\u{e9}".repeat(40);
    assert_eq!((passphrase.chars().count(), passphrase.len()), (40, 80));
    let xml = format!(
        "<config>\n  <rtmp>\n    <port>{}</port>\n  </rtmp>\n  <srt>\n    <enable>true</enable>\n    <port>{}</port>\n    <passphrase>{passphrase}</passphrase>\n  </srt>\n</config>\n",
        free_port(),
        free_udp_port()
    );
    let l = line_of(&xml, "<passphrase>");
    let out = bad_config_case(&dir, "passphrase.xml", &xml, &["<srt><passphrase>"], &[l]);
    assert!(
        out.text().contains("80"),
        "the error says how long the passphrase is: {}",
        out.text()
    );
    assert!(
        !out.text().contains(&passphrase),
        "the error does not repeat the secret: {}",
        out.text()
    );

    let out = run(
        "config-passphrase",
        Command::new(cargo_bin("streamgate"))
            .arg("--config")
            .arg(dir.file("passphrase.xml")),
        secs(10.0),
    );
    assert!(out.failed(), "start-up refuses it too: {out:?}");
    assert!(
        out.text().contains("<srt><passphrase>") && mentions_line(&out.text(), l),
        "start-up names the element and the line: {}",
        out.text()
    );
}

// ------------------------------------------------------------------------------------------
// 14

#[test]
fn second_publisher_to_a_live_stream_is_refused() {
    let hook = HookServer::start();
    let srv = Server::start(&Config::new().hooks(&hook.url("/rtmp"), ""));

    let mut first = publish(&srv.url("live/dup"), 20);
    let firstrec = hook
        .wait_call("publish", "dup", HOOK_WAIT)
        .expect("on_publish of the first");
    thread::sleep(secs(1.0));
    let mut second = publish_with(
        &srv.url("live/dup"),
        15,
        "testsrc2=size=320x240:rate=25",
        25,
    );
    let st = second.wait_timeout(secs(8.0));
    assert!(
        st.is_some_and(|s| !s.success()),
        "a second publisher to a live stream is refused, got {st:?}: {}",
        second.stderr()
    );
    let (size, out) = probe_size(&srv.url("live/dup"));
    assert_eq!(
        size,
        Some((640, 360)),
        "players still get the first publisher: {}",
        out.text()
    );
    assert!(first.running(), "the first publisher is not disturbed");
    assert_eq!(
        hook.count(|r| is_done_of(r, firstrec.clientid())),
        0,
        "the first publisher's session goes on:\n{}",
        hook.dump()
    );
}

// ------------------------------------------------------------------------------------------
// 15: what the server says, byte for byte, seen by a bare RTMP client

#[test]
fn refusals_use_rtmp_status_codes_then_close() {
    let hook = HookServer::start();
    hook.on_field("/rtmp/connect", "app", "denyapp", Reply::Status(403));
    hook.on_field("/rtmp/publish", "name", "nopub", Reply::Status(403));
    hook.on_field("/rtmp/play", "name", "noplay", Reply::Status(403));
    let mut srv = Server::start(&Config::new().hooks(&hook.url("/rtmp"), ""));
    let _publisher = publish(&srv.url("live/noplay"), 20);
    hook.wait_call("publish", "noplay", HOOK_WAIT)
        .expect("on_publish noplay");

    // connect refused: _error NetConnection.Connect.Rejected, then close.
    let denyapp_tc = format!("rtmp://127.0.0.1:{}/denyapp", srv.port);
    let mut c = RtmpClient::open(srv.port).expect("RTMP client");
    let t = c
        .send_connect("denyapp", &denyapp_tc)
        .expect("send connect");
    let reply = c
        .wait_reply(t, secs(10.0))
        .unwrap_or_else(|| panic!("an answer to a refused connect: {:?}", c.messages()));
    assert_eq!(
        reply.command().as_deref(),
        Some("_error"),
        "connect refused with _error: {reply:?}"
    );
    assert_eq!(
        reply.code().as_deref(),
        Some("NetConnection.Connect.Rejected"),
        "{reply:?}"
    );
    assert!(
        c.wait_closed(secs(5.0)).is_some(),
        "the server closes a refused connection: {:?}",
        c.messages()
    );
    let rec = hook
        .wait_for(
            |r| r.call() == "connect" && r.get("app") == Some("denyapp"),
            HOOK_WAIT,
        )
        .expect("on_connect denyapp");
    assert_eq!(rec.field("url"), denyapp_tc, "{rec:?}");
    assert_eq!(rec.field("tcurl"), denyapp_tc, "{rec:?}");
    assert_eq!(rec.field("name"), "", "{rec:?}");
    assert!(reply.at >= rec.at, "the refusal follows the hook's answer");

    // publish refused: onStatus NetStream.Publish.Unauthorized, then close.
    let mut c = RtmpClient::open(srv.port).expect("RTMP client");
    let sid = c
        .connect_and_create_stream("live", &srv.tcurl())
        .expect("connect + createStream");
    c.send_publish(sid, "nopub?token=x").expect("send publish");
    let st = c
        .wait_msg(|m| m.command().as_deref() == Some("onStatus"), secs(10.0))
        .unwrap_or_else(|| panic!("an onStatus for a refused publish: {:?}", c.messages()));
    assert_eq!(
        st.code().as_deref(),
        Some("NetStream.Publish.Unauthorized"),
        "{st:?}"
    );
    assert!(
        c.wait_closed(secs(5.0)).is_some(),
        "the server closes a refused publisher: {:?}",
        c.messages()
    );
    let rec = hook
        .wait_call("publish", "nopub", HOOK_WAIT)
        .expect("on_publish nopub");
    assert_eq!(rec.field("url"), format!("{}/nopub?token=x", srv.tcurl()));

    // play refused: onStatus NetStream.Play.Failed, then close, and no media before.
    let mut c = RtmpClient::open(srv.port).expect("RTMP client");
    let sid = c
        .connect_and_create_stream("live", &srv.tcurl())
        .expect("connect + createStream");
    c.send_play(sid, "noplay").expect("send play");
    let st = c
        .wait_msg(|m| m.command().as_deref() == Some("onStatus"), secs(10.0))
        .unwrap_or_else(|| panic!("an onStatus for a refused play: {:?}", c.messages()));
    assert_eq!(
        st.code().as_deref(),
        Some("NetStream.Play.Failed"),
        "{st:?}"
    );
    assert!(
        c.wait_closed(secs(5.0)).is_some(),
        "the server closes a refused player: {:?}",
        c.messages()
    );
    assert_eq!(
        c.messages().iter().filter(|m| m.is_media()).count(),
        0,
        "a refused player gets no media: {:?}",
        c.messages()
    );
    assert!(srv.alive());
}

#[test]
fn nothing_flows_before_the_play_hook_answers() {
    let hook = HookServer::start();
    let delay = secs(3.0);
    hook.on_field("/rtmp/play", "name", "held", Reply::Delay(delay, 200));
    let srv = Server::start(
        &Config::new()
            .timeout_ms(10000)
            .hooks(&hook.url("/rtmp"), ""),
    );
    let _publisher = publish(&srv.url("live/held"), 20);
    hook.wait_call("publish", "held", HOOK_WAIT)
        .expect("on_publish held");
    thread::sleep(secs(1.0));

    let mut c = RtmpClient::open(srv.port).expect("RTMP client");
    let sid = c
        .connect_and_create_stream("live", &srv.tcurl())
        .expect("connect + createStream");
    c.send_play(sid, "held?u=1").expect("send play");
    let rec = hook
        .wait_call("play", "held", HOOK_WAIT)
        .expect("on_play held");
    assert_eq!(rec.field("url"), format!("{}/held?u=1", srv.tcurl()));
    let answered = poll(secs(10.0), || {
        hook.find(|r| r.seq == rec.seq)
            .first()
            .and_then(|r| r.answered_at)
    })
    .expect("the play hook answered");

    let start = c
        .wait_status("NetStream.Play.Start", secs(10.0))
        .unwrap_or_else(|| panic!("NetStream.Play.Start once allowed: {:?}", c.messages()));
    let video = c
        .wait_msg(|m| m.type_id == RtmpMsg::VIDEO, secs(10.0))
        .unwrap_or_else(|| panic!("video once allowed: {:?}", c.messages()));
    assert!(start.at >= answered, "Play.Start only after the hook's 200");
    let early: Vec<RtmpMsg> = c
        .messages()
        .into_iter()
        .filter(|m| m.at < answered && (m.is_media() || m.stream_id == sid))
        .collect();
    assert!(
        early.is_empty(),
        "nothing is sent to the player before its hook answers: {early:?}"
    );
    assert!(video.at >= answered);
    // The first video message is the AVC sequence header or a keyframe.
    assert_eq!(
        video.payload.first().map(|b| b >> 4),
        Some(1),
        "the first video tag is a keyframe/sequence header: {video:?}"
    );
    assert!(
        c.closed_at().is_none(),
        "the allowed player stays connected"
    );
}

// ------------------------------------------------------------------------------------------
// A player that stops reading

#[test]
fn a_stalled_rtmp_player_is_closed_after_the_stall_timeout() {
    let hook = HookServer::start();
    let srv = Server::start(
        &Config::new()
            .hooks(&hook.url("/rtmp"), "")
            .rtmp_limits(65536, 3000),
    );
    // A heavier stream so the stalled player's socket buffers fill quickly.
    let mut publisher = publish_with(
        &srv.url("live/big"),
        40,
        "testsrc2=size=1280x720:rate=25",
        25,
    );
    hook.wait_call("publish", "big", HOOK_WAIT)
        .expect("on_publish big");
    thread::sleep(secs(1.0));

    let mut c = RtmpClient::open(srv.port).expect("RTMP client");
    let sid = c
        .connect_and_create_stream("live", &srv.tcurl())
        .expect("connect + createStream");
    c.send_play(sid, "big?who=stalled").expect("send play");
    c.wait_status("NetStream.Play.Start", secs(10.0))
        .unwrap_or_else(|| panic!("NetStream.Play.Start: {:?}", c.messages()));
    let play = hook
        .wait_for(
            |r| r.call() == "play" && r.field("url").ends_with("who=stalled"),
            HOOK_WAIT,
        )
        .expect("on_play of the stalled player");
    c.pause_reading();

    let logged = |what: &str| {
        poll(secs(30.0), || {
            srv.log()
                .lines()
                .any(|l| l.contains(what) && l.contains(&format!("clientid={}", play.clientid())))
                .then_some(())
        })
        .is_some()
    };
    assert!(
        logged("dropping to the next keyframe"),
        "{}",
        srv.log_tail(40)
    );
    assert!(logged("player stalled; closing"), "{}", srv.log_tail(40));
    assert!(
        hook.wait_for(|r| is_done_of(r, play.clientid()), HOOK_WAIT)
            .is_some(),
        "the stalled player gets its on_done: {}",
        hook.dump()
    );
    // Everyone else is unaffected.
    let (frames, err) = read_frames(&srv.url("live/big"), 1.0, secs(20.0));
    assert!(frames > 0, "a new player still plays: {err}");
    publisher.kill();
}

#[test]
fn a_connected_client_that_neither_plays_nor_publishes_is_closed() {
    let srv = Server::start(&Config::new());
    let _publisher = publish(&srv.url("live/busy"), 60);
    let player = poll(secs(20.0), || {
        let mut p = RtmpClient::open(srv.port).ok()?;
        let sid = p.connect_and_create_stream("live", &srv.tcurl()).ok()?;
        p.send_play(sid, "busy").ok()?;
        p.wait_status("NetStream.Play.Start", secs(2.0))?;
        Some(p)
    })
    .unwrap_or_else(|| panic!("the player plays: {}", srv.log_tail(20)));

    let mut idle = RtmpClient::open(srv.port).expect("RTMP client");
    idle.connect_and_create_stream("live", &srv.tcurl())
        .expect("idle connect + createStream");
    let connected = Instant::now();
    // Messages keep arriving (acknowledgements), but none is a play or a publish.
    let closed = loop {
        if let Some(at) = idle.wait_closed(secs(5.0)) {
            break Some(at);
        }
        if connected.elapsed() > secs(50.0) {
            break None;
        }
        let _ = idle.send_raw(2, 0, 3, &4096u32.to_be_bytes());
    };
    let closed = closed.unwrap_or_else(|| {
        panic!(
            "a client without play or publish is still open after 50 s: {}",
            srv.log_tail(20)
        )
    });
    assert!(
        closed.duration_since(connected) >= secs(29.0),
        "closed {:?} after connect, before the 30 s deadline",
        closed.duration_since(connected)
    );
    assert!(
        srv.log()
            .contains("neither played nor published for too long"),
        "{}",
        srv.log_tail(20)
    );
    // The player was connected longer, but it plays: it is still open and receiving.
    assert!(player.closed_at().is_none(), "{}", srv.log_tail(20));
}

#[test]
fn client_text_cannot_forge_or_hide_log_lines() {
    let srv = Server::start(&Config::new());
    let mut c = RtmpClient::open(srv.port).expect("RTMP client");
    let sid = c
        .connect_and_create_stream("li\rve", &srv.tcurl())
        .expect("connect + createStream");
    c.send_publish(sid, "cam\r\nERROR forged line\0\x1b[2J")
        .expect("send publish");
    c.wait_status("NetStream.Publish.Start", secs(10.0))
        .unwrap_or_else(|| panic!("publish allowed: {:?}", c.messages()));
    drop(c);
    let log = poll(secs(10.0), || {
        let log = srv.log();
        log.contains("ERROR forged line").then_some(log)
    })
    .unwrap_or_else(|| panic!("the stream name is logged: {}", srv.log_tail(20)));
    for line in log.lines() {
        assert!(
            !line.starts_with("ERROR forged"),
            "a client's name started a log line: {line:?}"
        );
        assert!(
            !line.contains(['\r', '\0', '\x1b']),
            "a control character reached the log: {line:?}"
        );
    }
    // Escaped by the log writer (`\x1b`) or, in quoted span fields, already by Rust's Debug
    // form (`\u{1b}`).
    assert!(
        log.contains(r"cam\r\nERROR forged line\0\x1b[2J")
            || log.contains(r"cam\r\nERROR forged line\0\u{1b}[2J"),
        "the name is logged escaped: {}",
        srv.log_tail(20)
    );
    assert!(log.contains(r"li\rve"), "the app is logged escaped");
}

// ------------------------------------------------------------------------------------------
// Interop: what RTMP players expect of the server's answers.

/// FFmpeg (and the players built on it: mpv, VLC) asks `getStreamLength` before `play` and
/// reads the `_result` as a number; anything else makes it warn
/// `Unexpected reply on getStreamLength()`.
#[test]
fn get_stream_length_is_answered_with_a_number() {
    let hook = HookServer::start();
    let srv = Server::start(&Config::new().hooks(&hook.url("/rtmp"), ""));
    let mut publisher = publish(&srv.url("live/len"), 20);
    hook.wait_call("publish", "len", HOOK_WAIT)
        .expect("on_publish for len");

    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-nostdin", "-loglevel", "warning"])
        .args(["-i", &srv.url("live/len")])
        .args(["-t", "1", "-map", "0:v:0", "-f", "framemd5", "-"]);
    let out = run("ffmpeg play len", &mut cmd, secs(20.0));
    assert!(
        count_frames(&out.stdout) > 0,
        "the player decodes video: {}",
        out.text()
    );
    assert!(
        !out.stderr.contains("getStreamLength"),
        "ffmpeg takes the getStreamLength answer without a warning: {}",
        out.stderr
    );
    publisher.kill();
}

/// Players' clientids come from the clientid counter alone: the fan-out group a player's
/// arbiter subscribes with takes an internal id, so consecutive connections get consecutive
/// clientids, and the log names a group as `subscriber=`, never as a clientid.
#[test]
fn consecutive_players_get_consecutive_clientids() {
    let hook = HookServer::start();
    let srv = Server::start(&Config::new().hooks(&hook.url("/rtmp"), "").workers(1));
    let mut publisher = publish(&srv.url("live/ids"), 30);
    hook.wait_call("publish", "ids", HOOK_WAIT)
        .expect("on_publish for ids");
    for _ in 0..3 {
        let (frames, err) = read_frames(&srv.url("live/ids"), 0.5, secs(20.0));
        assert!(frames > 0, "the player decodes video: {err}");
    }
    let mut ids: Vec<u64> = hook
        .find(|r| r.call() == "play")
        .iter()
        .map(|r| r.clientid().parse().expect("numeric clientid"))
        .collect();
    ids.sort();
    assert_eq!(ids.len(), 3, "three plays:\n{}", hook.dump());
    assert!(
        ids.windows(2).all(|w| w[1] == w[0] + 1),
        "consecutive players get consecutive clientids, got {ids:?}:\n{}",
        hook.dump()
    );
    let log = srv.log();
    for line in log.lines().filter(|l| l.contains("subscriber attached")) {
        if let Some(id) = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("clientid="))
        {
            let id: u64 = id.parse().expect("numeric clientid in the log");
            assert!(
                ids.contains(&id),
                "a logged clientid is a hook clientid: {line}"
            );
        }
    }
    publisher.kill();
}

/// Publishes one track only (`audio` or `video`) to `url` for `seconds`.
fn publish_one_track(url: &str, track: &str, seconds: u32) -> Proc {
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-nostdin", "-loglevel", "error", "-re"]);
    if track == "audio" {
        cmd.args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"])
            .args(["-c:a", "aac", "-b:a", "64k"]);
    } else {
        cmd.args(["-f", "lavfi", "-i", TESTSRC])
            .args([
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-tune",
                "zerolatency",
            ])
            .args(["-g", "25", "-pix_fmt", "yuv420p"]);
    }
    cmd.args(["-t", &seconds.to_string(), "-f", "flv", url]);
    Proc::spawn(&format!("publish {track} {url}"), &mut cmd)
}

/// An audio-only and a video-only stream: ffprobe over RTMP and HTTP-FLV learns at once that
/// the other track will not come, so its stream analysis ends on "All info found" (it has
/// every track's parameters and is told there are no more) rather than by reading until its
/// analysis time is spent (about 5 s) waiting for a second track.
#[test]
fn single_track_streams_tell_players_the_other_track_is_missing() {
    let hook = HookServer::start();
    let srv = Server::start(
        &Config::new()
            .hooks(&hook.url("/rtmp"), "")
            .httpflv_hooks(&hook.url("/flv"), ""),
    );
    let mut publishers = Vec::new();
    for (name, track, codec) in [("aonly", "audio", "aac"), ("vonly", "video", "h264")] {
        publishers.push(publish_one_track(
            &srv.url(&format!("live/{name}")),
            track,
            30,
        ));
        hook.wait_call("publish", name, HOOK_WAIT)
            .unwrap_or_else(|| panic!("on_publish for {name}"));
        for url in [
            srv.url(&format!("live/{name}")),
            srv.flv_url(&format!("live/{name}.flv")),
        ] {
            let mut last = String::new();
            let probed = poll(secs(20.0), || {
                let out = ffprobe(
                    &url,
                    &[
                        "-loglevel",
                        "debug",
                        "-show_entries",
                        "stream=codec_name",
                        "-of",
                        "csv=p=0",
                    ],
                    secs(20.0),
                );
                let codecs: Vec<&str> = out.stdout.lines().map(str::trim).collect();
                last = out.text();
                (codecs == [codec]).then_some(out)
            })
            .unwrap_or_else(|| panic!("ffprobe sees only {codec} in {url}: {last}"));
            assert!(
                probed.stderr.contains("All info found"),
                "ffprobe of {url} stops as soon as it has the one track, not at its \
                 analysis limit:\n{}",
                probed
                    .stderr
                    .lines()
                    .filter(|l| l.contains("info found")
                        || l.contains("analyzeduration")
                        || l.contains("probesize")
                        || l.contains("onMetaData"))
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
    }
    for mut p in publishers {
        p.kill();
    }
}
