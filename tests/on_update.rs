//! `on_update`: every active play and publish is put to the business server every
//! `update_interval_ms` with its running usage; an answer that refuses ends the session
//! (`reason=kicked`, an RTMP client told by the server's error), while no answer or a 5xx keeps
//! it. Real ffmpeg clients of every protocol against the real binary and a real hook server.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use streamgate_testkit::*;

const HOOK_WAIT: Duration = Duration::from_secs(15);

/// The `on_update` calls of `clientid` so far.
fn updates_of(hook: &HookServer, clientid: &str) -> Vec<Record> {
    hook.find(|r| r.call() == "update" && r.clientid() == clientid)
}

/// The `on_play` of the player whose URL ends with `tail`.
fn play_of(hook: &HookServer, tail: &str) -> Record {
    hook.wait_for(
        |r| r.call() == "play" && r.field("url").ends_with(tail),
        HOOK_WAIT,
    )
    .unwrap_or_else(|| panic!("on_play of the player {tail}: {}", hook.dump()))
}

#[test]
fn a_refusal_kicks_an_rtmp_player_and_publisher_and_no_answer_keeps_them() {
    let hook = HookServer::start();
    let update = hook.url("/rtmp/update");
    let srv = Server::start(
        &Config::new()
            .hooks(&hook.url("/rtmp"), "")
            .timeout_ms(1500)
            .on_update("rtmp", &update, 1000),
    );
    let kick_publisher = Arc::new(AtomicBool::new(false));
    let kick = kick_publisher.clone();
    hook.rule(move |r| {
        if r.call() != "update" {
            return None;
        }
        let url = r.field("url");
        if url.ends_with("who=kick") {
            Some(Reply::Status(403))
        } else if url.ends_with("who=hang") {
            Some(Reply::Hang)
        } else if url.ends_with("who=fail") {
            Some(Reply::Status(503))
        } else if kick.load(Ordering::SeqCst) {
            Some(Reply::Status(403))
        } else {
            None
        }
    });
    let mut publisher = publish(&srv.url("live/up"), 60);
    let publish = hook
        .wait_call("publish", "up", HOOK_WAIT)
        .expect("on_publish");
    let mut kicked = spawn_player(&srv.url("live/up?who=kick"), 60.0);
    let mut hanging = spawn_player(&srv.url("live/up?who=hang"), 60.0);
    let mut failing = spawn_player(&srv.url("live/up?who=fail"), 60.0);
    let kicked_play = play_of(&hook, "who=kick");
    let hang_play = play_of(&hook, "who=hang");
    let fail_play = play_of(&hook, "who=fail");

    // Refused: the player ends with `kicked`, told by the server's error.
    let done = done_of(&hook, kicked_play.clientid(), || srv.log_tail(40));
    assert_done_matches(&done, &kicked_play);
    assert_eq!(done.field("reason"), "kicked", "{done:?}");
    let refused = updates_of(&hook, kicked_play.clientid());
    assert!(!refused.is_empty(), "it was asked first: {}", hook.dump());
    assert!(
        refused[0].at <= done.at,
        "the refusal came before the on_done"
    );
    kicked
        .wait_timeout(secs(10.0))
        .expect("the kicked player's ffmpeg ends");
    assert!(
        kicked.stderr().contains("business server"),
        "the RTMP player was told why: {}",
        kicked.stderr()
    );

    // No answer (a timeout) and a 503: asked again and again, and still playing.
    let asked = poll(secs(20.0), || {
        let h = updates_of(&hook, hang_play.clientid());
        let f = updates_of(&hook, fail_play.clientid());
        (h.len() >= 3 && f.len() >= 3).then_some(h)
    })
    .unwrap_or_else(|| panic!("three updates of each kept player: {}", hook.dump()));
    for r in &asked {
        assert_field_order(r);
        for k in [
            "protocol", "addr", "app", "name", "url", "tcurl", "clientid",
        ] {
            assert_eq!(r.field(k), hang_play.field(k), "{k} of {r:?}");
        }
    }
    let (first, last) = (&asked[0], &asked[asked.len() - 1]);
    assert!(number(last, "duration_ms") > number(first, "duration_ms"));
    assert!(
        number(last, "bytes_out") > number(first, "bytes_out"),
        "the running usage grows: {first:?} then {last:?}"
    );
    assert_eq!(number(last, "start"), number(first, "start"));
    for play in [&hang_play, &fail_play] {
        assert_eq!(
            hook.count(|r| is_done_of(r, play.clientid())),
            0,
            "a player whose on_update got no usable answer goes on: {}",
            hook.dump()
        );
    }
    assert!(hanging.running() && failing.running(), "both still play");
    let publisher_updates = updates_of(&hook, publish.clientid());
    assert!(
        publisher_updates.len() >= 2,
        "the publisher is asked too: {}",
        hook.dump()
    );
    assert!(number(&publisher_updates[publisher_updates.len() - 1], "bytes_in") > 0);

    // Now the publisher's update is refused: it ends `kicked`, its players `stream_ended`.
    kick_publisher.store(true, Ordering::SeqCst);
    let done = done_of(&hook, publish.clientid(), || srv.log_tail(40));
    assert_eq!(done.field("reason"), "kicked", "{done:?}");
    publisher
        .wait_timeout(secs(10.0))
        .expect("the kicked publisher's ffmpeg ends");
    for play in [&hang_play, &fail_play] {
        let done = done_of(&hook, play.clientid(), || srv.log_tail(40));
        assert_eq!(done.field("reason"), "stream_ended", "{done:?}");
    }
    hanging.kill();
    failing.kill();
}

/// FFmpeg publishing over `format` to `url` for a minute.
fn publish_to(url: &str, format: &str) -> Proc {
    let small = "testsrc=size=320x240:rate=25";
    let mut cmd = publisher_command("ffmpeg", url, 60, small, 25, format);
    Proc::spawn(&format!("publish {url}"), &mut cmd)
}

#[test]
fn every_protocol_is_asked_and_a_refusal_ends_it() {
    let hook = HookServer::start();
    let srv = Server::start(
        &Config::new()
            .hooks(&hook.url("/rtmp"), "")
            .httpflv_hooks(&hook.url("/httpflv"), "")
            .rtsp_hooks(&hook.url("/rtsp"), "")
            .srt_hooks(&hook.url("/srt"), "")
            .on_update("rtmp", &hook.url("/rtmp/update"), 1000)
            .on_update("httpflv", &hook.url("/httpflv/update"), 1000)
            .on_update("rtsp", &hook.url("/rtsp/update"), 1000)
            .on_update("srt", &hook.url("/srt/update"), 1000),
    );
    // Players of `base` over anything but RTMP, and every publisher of `gone*`, are refused.
    hook.rule(|r| {
        let refuse = r.call() == "update"
            && ((r.name() == "base" && r.field("protocol") != "rtmp")
                || r.name().starts_with("gone"));
        refuse.then_some(Reply::Status(403))
    });
    let mut base = publish(&srv.url("live/base"), 60);
    hook.wait_call("publish", "base", HOOK_WAIT)
        .expect("on_publish base");
    // The players come once the stream has its codecs (an RTSP player that asks before is
    // refused, and its on_done would say so instead of the kick this test is about).
    wait_codecs(srv.api_port, "live", "base");
    let players = [
        spawn_player(&srv.flv_url("live/base.flv"), 60.0),
        spawn_player(&srv.rtsp_url("live/base"), 60.0),
        spawn_player(
            &format!(
                "{}&latency=200000",
                srv.srt_url("#!::r=live/base,m=request")
            ),
            60.0,
        ),
    ];
    let mut kept = spawn_player(&srv.url("live/base"), 60.0);
    let mut publishers = [
        publish_to(&srv.rtsp_url("live/gone1"), "rtsp"),
        publish_to(&srv.srt_url("#!::r=live/gone2,m=publish"), "mpegts"),
    ];

    for protocol in ["httpflv", "rtsp", "srt"] {
        let play = hook
            .wait_for(
                |r| r.call() == "play" && r.field("protocol") == protocol,
                HOOK_WAIT,
            )
            .unwrap_or_else(|| panic!("on_play over {protocol}: {}", hook.dump()));
        let done = done_of(&hook, play.clientid(), || srv.log_tail(40));
        assert_eq!(done.field("reason"), "kicked", "{protocol}: {done:?}");
        let update = updates_of(&hook, play.clientid());
        assert!(!update.is_empty(), "{protocol}: asked first");
        assert_field_order(&update[0]);
        assert_eq!(update[0].path, format!("/{protocol}/update"));
    }
    for protocol in ["rtsp", "srt"] {
        let publish = hook
            .wait_for(
                |r| r.call() == "publish" && r.field("protocol") == protocol,
                HOOK_WAIT,
            )
            .unwrap_or_else(|| panic!("on_publish over {protocol}: {}", hook.dump()));
        let done = done_of(&hook, publish.clientid(), || srv.log_tail(40));
        assert_eq!(done.field("reason"), "kicked", "{protocol}: {done:?}");
        let update = updates_of(&hook, publish.clientid());
        assert!(!update.is_empty() && number(&update[0], "bytes_in") > 0);
    }
    // The RTMP player of the same stream, answered 200, plays on.
    let rtmp_play = hook
        .wait_for(
            |r| r.call() == "play" && r.field("protocol") == "rtmp",
            HOOK_WAIT,
        )
        .expect("on_play over RTMP");
    assert!(
        poll(secs(10.0), || (updates_of(&hook, rtmp_play.clientid())
            .len()
            >= 2)
            .then_some(()))
        .is_some(),
        "the RTMP player is asked: {}",
        hook.dump()
    );
    assert!(kept.running(), "allowed by its on_update, it plays on");
    assert_eq!(hook.count(|r| is_done_of(r, rtmp_play.clientid())), 0);
    kept.kill();
    base.kill();
    for mut p in players {
        p.kill();
    }
    for p in publishers.iter_mut() {
        p.kill();
    }
}
