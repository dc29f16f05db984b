//! Hot reload (SIGHUP and `POST /api/v1/reload`) on the real binary with real ffmpeg clients and
//! real hook servers: a new hook URL and log level apply to the next session while a player
//! already watching keeps decoding; an invalid file changes nothing and is refused with its
//! line; listeners whose port or `<enable>` changed are opened and closed without ending their
//! sessions; new limits apply to new connections; a port that cannot be opened refuses the
//! whole reload; a server without a file has nothing to read again.

use std::fs;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use streamgate_testkit::*;

/// Frames a long-running player has decoded so far.
fn frames_of(player: &Proc) -> usize {
    count_frames(&player.stdout())
}

/// Waits until `player` has decoded more than `past` frames.
fn wait_decoding(player: &Proc, past: usize, what: &str) -> usize {
    poll(Duration::from_secs(20), || {
        let n = frames_of(player);
        (n > past).then_some(n)
    })
    .unwrap_or_else(|| panic!("{what}: no frame past {past}; stderr: {}", player.stderr()))
}

/// Writes `cfg` over the running server's file, keeping its data dir.
fn rewrite(srv: &Server, cfg: &Config) {
    let mut cfg = cfg.clone();
    cfg.data_dir = Some(srv.dir.file("data"));
    fs::write(&srv.config_path, cfg.to_xml()).expect("write the config");
}

/// Waits for the `n`th log line containing `needle`.
fn wait_log(srv: &Server, needle: &str, n: usize) {
    poll(Duration::from_secs(10), || {
        (srv.log().matches(needle).count() >= n).then_some(())
    })
    .unwrap_or_else(|| panic!("no {n}× {needle:?} in the log:\n{}", srv.log()));
}

fn refused(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err()
}

#[test]
fn sighup_moves_hooks_and_log_level_while_a_player_keeps_decoding() {
    let old_hook = HookServer::start();
    let new_hook = HookServer::start();
    let mut cfg = Config::new().hooks(&old_hook.url("/rtmp"), "");
    cfg.log_level = "info".into();
    let mut srv = Server::start(&cfg);
    let url = srv.url("live/reload");
    let mut publisher = publish(&url, 60);
    old_hook
        .wait_call("publish", "reload", HOOK_WAIT)
        .unwrap_or_else(|| panic!("no on_publish: {}\n{}", old_hook.dump(), publisher.stderr()));
    let watching = spawn_player(&url, 16.0);
    let first_play = old_hook
        .wait_call("play", "reload", HOOK_WAIT)
        .unwrap_or_else(|| panic!("no on_play: {}", old_hook.dump()));
    wait_decoding(&watching, 10, "the first player");
    assert!(
        !srv.log().contains(" DEBUG "),
        "nothing below info before the reload:\n{}",
        srv.log()
    );

    // The new hook and log level, by SIGHUP.
    let mut moved = cfg.clone().hooks(&new_hook.url("/rtmp"), "");
    moved.log_level = "debug".into();
    rewrite(&srv, &moved);
    send_signal(srv.pid(), "HUP");
    wait_log(&srv, "config reloaded", 1);
    let at_reload = frames_of(&watching);

    // The next session asks the new hook, and only it.
    let (frames, err) = read_frames(&url, 1.0, Duration::from_secs(30));
    assert!(
        frames > 0,
        "the player after the reload decoded nothing: {err}"
    );
    let second_play = new_hook
        .wait_call("play", "reload", HOOK_WAIT)
        .unwrap_or_else(|| panic!("no on_play at the new hook: {}", new_hook.dump()));
    assert_ne!(second_play.clientid(), first_play.clientid());
    assert_eq!(
        new_hook.count(|r| r.call() == "connect"),
        1,
        "{}",
        new_hook.dump()
    );
    assert_eq!(
        old_hook.count(|r| r.call() == "play"),
        1,
        "the old hook heard of no new session: {}",
        old_hook.dump()
    );
    // The new level: the hook's answer is logged at debug.
    wait_log(&srv, " DEBUG ", 1);

    // The player that was watching never stopped: two more seconds of frames.
    wait_decoding(
        &watching,
        at_reload + 50,
        "the first player after the reload",
    );

    // An invalid file changes nothing, by SIGHUP and by the API alike, and names its line.
    fs::write(
        &srv.config_path,
        "<config>\n  <log_level>loud</log_level>\n</config>\n",
    )
    .expect("write the config");
    send_signal(srv.pid(), "HUP");
    let at = format!("{}:2: <log_level>", srv.config_path.display());
    wait_log(&srv, &at, 1);
    assert!(srv.log().contains("reload refused"), "{}", srv.log());
    let answer = api_call(srv.api_port, "POST", "/api/v1/reload", None);
    assert_eq!(answer.status, 400, "{}", answer.text);
    assert!(
        answer.body["error"].as_str().unwrap_or("").contains(&at),
        "{at} in {}",
        answer.text
    );
    let (frames, err) = read_frames(&url, 1.0, Duration::from_secs(30));
    assert!(frames > 0, "the player after the refused reload: {err}");
    poll(HOOK_WAIT, || {
        (new_hook.count(|r| r.is("play", "reload")) == 2).then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "the hook in force is still the new one: {}",
            new_hook.dump()
        )
    });
    assert_eq!(old_hook.count(|r| r.call() == "play"), 1);

    // The first player ran its whole time; its on_done goes where the hooks are now.
    // (16 s asked for; a player cut at the reload would have a quarter of that.)
    let played = finish_player(watching, Duration::from_secs(40));
    assert!(
        played.frames >= 12 * 25,
        "the first player was cut short: {} frames; {}",
        played.frames,
        played.out.stderr
    );
    let done = new_hook
        .wait_for(
            |r| r.call() == "done" && r.clientid() == first_play.clientid(),
            HOOK_WAIT,
        )
        .unwrap_or_else(|| panic!("no on_done of the first player: {}", new_hook.dump()));
    // ffmpeg ends its time by closing the socket, with or without saying so first.
    assert!(
        ["closed", "lost"].contains(&done.field("reason")),
        "{}",
        new_hook.dump()
    );
    publisher.kill();
    srv.stop_graceful().expect("the server stops");
}

#[test]
fn a_reload_opens_and_closes_listeners_and_their_sessions_go_on() {
    let hook = HookServer::start();
    let cfg = Config::new()
        .hooks(&hook.url("/rtmp"), "")
        .srt()
        .api_token("reload-token");
    let mut srv = Server::start(&cfg);
    let old_rtmp = srv.port;
    let mut publisher = publish(&srv.url("live/moving"), 60);
    hook.wait_call("publish", "moving", HOOK_WAIT)
        .unwrap_or_else(|| panic!("no on_publish: {}\n{}", hook.dump(), publisher.stderr()));
    // Longer than the test: they are ended below, once they have shown they went on.
    let mut rtmp_player = spawn_player(&srv.url("live/moving"), 60.0);
    let srt_player = spawn_player(&srt_play_url(&srv, "moving"), 60.0);
    wait_decoding(&rtmp_player, 10, "the RTMP player");
    wait_decoding(&srt_player, 10, "the SRT player");

    // RTMP moves to another port with at most 3 connections, SRT moves, HTTP-FLV opens.
    let mut moved = cfg
        .clone()
        .httpflv()
        .section_xml("rtmp", "<max_connections>3</max_connections>");
    moved.port = free_port();
    moved.srt.as_mut().expect("srt").port = free_udp_port();
    let new_rtmp = moved.port;
    let new_srt = moved.srt.as_ref().expect("srt").port;
    let httpflv = moved.httpflv.as_ref().expect("httpflv").port;
    rewrite(&srv, &moved);
    let answer = api_call(srv.api_port, "POST", "/api/v1/reload", None);
    assert_eq!(answer.status, 401, "the token is needed: {}", answer.text);
    let answer = api_call(srv.api_port, "POST", "/api/v1/reload", Some("reload-token"));
    assert_eq!(answer.status, 200, "{}", answer.text);
    let applied: Vec<&str> = answer.body["applied"]
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    for expected in [
        "rtmp settings".to_owned(),
        format!("rtmp listener closed on [::]:{old_rtmp}"),
        format!("rtmp listener opened on [::]:{new_rtmp}"),
        format!("httpflv listener opened on [::]:{httpflv}"),
        format!("srt listener opened on [::]:{new_srt}"),
    ] {
        assert!(
            applied.contains(&expected.as_str()),
            "{expected} in {applied:?}"
        );
    }
    let server = api_call(srv.api_port, "GET", "/api/v1/server", Some("reload-token"));
    assert_eq!(
        server.body["listeners"]["rtmp"], new_rtmp,
        "{}",
        server.text
    );
    assert_eq!(server.body["listeners"]["srt"], new_srt, "{}", server.text);
    assert_eq!(
        server.body["listeners"]["httpflv"], httpflv,
        "{}",
        server.text
    );

    // The old RTMP port is closed; the new ports serve the stream.
    assert!(refused(old_rtmp), "the old RTMP port still accepts");
    let at = |port: u16| format!("rtmp://127.0.0.1:{port}/live/moving");
    let (frames, err) = read_frames(&at(new_rtmp), 1.0, Duration::from_secs(30));
    assert!(frames > 0, "RTMP on the new port: {err}");
    let flv = format!("http://127.0.0.1:{httpflv}/live/moving.flv");
    let (frames, err) = read_frames(&flv, 1.0, Duration::from_secs(30));
    assert!(frames > 0, "HTTP-FLV, opened by the reload: {err}");
    let srt = format!("srt://127.0.0.1:{new_srt}?streamid=#!::r=live/moving,m=request{SRT_OPTS}");
    let (frames, err) = read_frames(&srt, 1.0, Duration::from_secs(30));
    assert!(frames > 0, "SRT on the new port: {err}");

    // The players of the closed listeners, and the publisher, never stopped.
    let rtmp_at = frames_of(&rtmp_player);
    let srt_at = frames_of(&srt_player);
    wait_decoding(
        &rtmp_player,
        rtmp_at + 25,
        "the RTMP player of the closed port",
    );
    wait_decoding(
        &srt_player,
        srt_at + 25,
        "the SRT player of the closed port",
    );

    // The new limit counts the connections held: the publisher and the RTMP player, so one
    // more RTMP connection is admitted and the next refused.
    assert!(
        rtmp_player.running(),
        "the RTMP player of the closed port ended: {}",
        rtmp_player.stderr()
    );
    let third = spawn_player(&at(new_rtmp), 4.0);
    wait_decoding(&third, 0, "the third RTMP connection");
    let (frames, _) = read_frames(&at(new_rtmp), 1.0, Duration::from_secs(30));
    assert_eq!(
        frames, 0,
        "a fourth RTMP connection got in past <max_connections>3"
    );
    assert!(
        srv.log().contains("connection refused: limit reached"),
        "{}",
        srv.log()
    );
    finish_player(third, Duration::from_secs(20));

    // A port that cannot be opened refuses the whole reload: nothing changes.
    let taken = TcpListener::bind("0.0.0.0:0").expect("bind");
    let mut blocked = moved.clone().httpflv();
    blocked.port = taken.local_addr().expect("addr").port();
    blocked.httpflv.as_mut().expect("httpflv").port = free_port();
    rewrite(&srv, &blocked);
    let answer = api_call(srv.api_port, "POST", "/api/v1/reload", Some("reload-token"));
    assert_eq!(answer.status, 409, "{}", answer.text);
    assert!(!refused(new_rtmp), "the RTMP listener in force was closed");
    assert!(
        !refused(httpflv),
        "the HTTP-FLV listener in force was closed"
    );
    let server = api_call(srv.api_port, "GET", "/api/v1/server", Some("reload-token"));
    assert_eq!(
        server.body["listeners"]["rtmp"], new_rtmp,
        "{}",
        server.text
    );

    for (mut player, what) in [(rtmp_player, "RTMP"), (srt_player, "SRT")] {
        // 12 s of frames: well past the reload, which came after 2 s or so; and still playing.
        wait_decoding(&player, 12 * 25, what);
        assert!(
            player.running(),
            "the {what} player of the closed listener was cut short: {}",
            player.stderr()
        );
        let played = finish_player(player, Duration::ZERO);
        assert!(played.frames >= 12 * 25, "{what}: {}", played.out.stderr);
    }
    drop(taken);
    publisher.kill();
    srv.stop_graceful().expect("the server stops");
}

#[test]
fn without_a_file_there_is_nothing_to_read_again() {
    let cfg = Config::new();
    let srv = InProcess::start(&cfg);
    let api = srv.api_port.expect("the API is on");
    let answer = api_call(api, "POST", "/api/v1/reload", None);
    assert_eq!(answer.status, 400, "{}", answer.text);
    assert!(
        answer.body["error"]
            .as_str()
            .unwrap_or("")
            .contains("no file to read again"),
        "{}",
        answer.text
    );
    let answer = api_call(api, "GET", "/api/v1/reload", None);
    assert_eq!(answer.status, 405, "{}", answer.text);
    drop(srv);
}
