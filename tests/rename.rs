//! Rename by redirect: an `on_publish` or `on_play` answered with a `3xx` and a `Location`
//! goes on under the stream the `Location` names. A publisher with a secret key publishes
//! the public name; a player with a ticket plays the public stream. Every protocol, with real
//! FFmpeg clients against the real binary and the kit's real HTTP business server.
//!
//! Each test checks, for its protocol: the renamed session works (a plain player of
//! `live/alice` decodes a renamed publisher; a ticket player decodes `live/alice`); its
//! `on_done` (and a publisher's `on_update`) reports `live/alice` and the `url` the client
//! sent; a `3xx` without a usable `Location` refuses in the protocol's words; a publisher
//! renamed to a live name is refused as taken, a player renamed to a name that is not live
//! as not found.

use std::process::Command;

use streamgate_testkit::*;

/// How a test's publisher reaches the server.
#[derive(Clone, Copy, Debug)]
enum Via {
    Rtmp,
    Rtsp,
    Srt,
}

/// An FFmpeg publisher of `live/{name}` over `via`: H.264 and AAC, at most 40 s (killed
/// when done).
fn publisher(srv: &Server, via: Via, name: &str) -> Proc {
    let url = match via {
        Via::Rtmp => srv.url(&format!("live/{name}")),
        Via::Rtsp => srv.rtsp_url(&format!("live/{name}")),
        Via::Srt => srt_publish_url(srv, name),
    };
    let format: &[&str] = match via {
        Via::Rtmp => &["-f", "flv"],
        Via::Rtsp => &["-f", "rtsp", "-rtsp_transport", "tcp"],
        Via::Srt => &["-f", "mpegts"],
    };
    let mut format = format.to_vec();
    format.push(&url);
    encoder_publisher("ffmpeg", encoders::X264, encoders::AAC, &format)
}

/// Plays about two seconds of `url` with FFmpeg (`args` before `-i`): the video frames
/// decoded, and what FFmpeg said.
fn frames(url: &str, args: &[&str]) -> (usize, String) {
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-nostdin", "-loglevel", "error"])
        .args(args)
        .args(["-i", url, "-t", "2", "-map", "0:v:0", "-f", "framemd5", "-"]);
    let out = run(&format!("play {url}"), &mut cmd, secs(30.0));
    (count_frames(&out.stdout), out.text())
}

/// The first call `call` of a client that asked for `name`.
fn asked(hook: &HookServer, srv: &Server, call: &str, name: &str) -> Record {
    hook.wait_call(call, name, HOOK_WAIT).unwrap_or_else(|| {
        panic!(
            "no on_{call} for {name}: {}\n{}",
            hook.dump(),
            srv.log_tail(40)
        )
    })
}

/// The `on_done` of the client that made `call`.
fn done_of(hook: &HookServer, srv: &Server, call: &Record) -> Record {
    hook.wait_for(|r| is_done_of(r, call.clientid()), HOOK_WAIT)
        .unwrap_or_else(|| {
            panic!(
                "no on_done of {call:?}: {}\n{}",
                hook.dump(),
                srv.log_tail(40)
            )
        })
}

/// `done` is the `on_done` of `call`, renamed to `live/{name}`: the same protocol, client,
/// address, `url` and `tcurl` as the client sent, the new app and name.
fn assert_renamed_done(done: &Record, call: &Record, name: &str) {
    assert_field_order(done);
    for k in ["protocol", "addr", "url", "tcurl", "clientid"] {
        assert_eq!(done.field(k), call.field(k), "{k} of {done:?} vs {call:?}");
    }
    assert_eq!(done.field("app"), "live", "app of {done:?}");
    assert_eq!(done.field("name"), name, "name of {done:?}");
    assert_ne!(call.field("name"), name, "{call:?} asked for another name");
}

/// No `on_done` of the client that made `call` arrived (its session was refused by the hook,
/// so none is owed); checked after the client is gone and a generous wait.
fn assert_no_done(hook: &HookServer, call: &Record) {
    let done = hook.wait_for(|r| is_done_of(r, call.clientid()), secs(2.0));
    assert!(done.is_none(), "a refused session has no on_done: {done:?}");
}

/// A refused publisher ends with an error.
fn assert_refused(p: &mut Proc, what: &str, srv: &Server) {
    let status = p.wait_timeout(secs(30.0));
    assert!(
        status.is_some_and(|s| !s.success()),
        "{what} must be refused: {status:?} {}\n{}",
        p.stderr(),
        srv.log_tail(30)
    );
}

/// The publisher test of one protocol: `sk_123` is redirected to `location` (which names
/// `live/alice`), `sk_456` to `live/alice` too while it is live, and `sk_bad` by a `302`
/// without `Location`.
fn secret_key_publishes_the_public_name(via: Via, location: &'static str) {
    let hook = HookServer::start();
    let rule = |name: &'static str, reply: Reply| {
        hook.rule(move |r| (r.call() == "publish" && r.name() == name).then_some(reply));
    };
    rule("sk_123", Reply::Redirect(302, Some(location)));
    rule("sk_456", Reply::Redirect(307, Some("live/alice")));
    rule("sk_bad", Reply::Redirect(302, None));
    // Every protocol hooked, and on_update every second for the publisher's protocol.
    let section = match via {
        Via::Rtmp => "rtmp",
        Via::Rtsp => "rtsp",
        Via::Srt => "srt",
    };
    let srv = Server::start(
        &Config::new()
            .hooks(&hook.url("/rtmp"), "")
            .httpflv()
            .httpflv_hooks(&hook.url("/flv"), "")
            .rtsp_hooks(&hook.url("/rtsp"), "")
            .srt_hooks(&hook.url("/srt"), "")
            .on_update(section, &hook.url(&format!("/{section}/update")), 1000),
    );

    let mut secret = publisher(&srv, via, "sk_123");
    wait_publishing(&hook, &srv, &mut secret, "sk_123");
    let publish = asked(&hook, &srv, "publish", "sk_123");

    // The public name plays; the secret one is not live.
    let (n, out) = frames(&srv.url("live/alice"), &[]);
    assert!(
        n > 0,
        "a player of live/alice decodes the renamed {via:?} publisher: {out}\n{}",
        srv.log_tail(30)
    );
    let codecs = probe_codecs(&srv.url("live/alice"));
    assert!(codecs.contains("h264"), "ffprobe of live/alice: {codecs:?}");
    let (n, _) = frames(&srv.url("live/sk_123"), &[]);
    assert_eq!(n, 0, "nothing is published as live/sk_123");

    // on_update reports the public name too, and the url the client sent.
    let update = hook
        .wait_for(
            |r| r.call() == "update" && r.clientid() == publish.clientid(),
            HOOK_WAIT,
        )
        .unwrap_or_else(|| panic!("no on_update of the publisher: {}", hook.dump()));
    for k in ["protocol", "addr", "url", "tcurl"] {
        assert_eq!(update.field(k), publish.field(k), "{k} of {update:?}");
    }
    assert_eq!(update.field("app"), "live", "{update:?}");
    assert_eq!(update.field("name"), "alice", "{update:?}");

    // A second publisher renamed to the live name is refused as taken; its on_done says so.
    let mut second = publisher(&srv, via, "sk_456");
    assert_refused(&mut second, "a second publisher of live/alice", &srv);
    let publish2 = asked(&hook, &srv, "publish", "sk_456");
    let done2 = done_of(&hook, &srv, &publish2);
    assert_renamed_done(&done2, &publish2, "alice");
    assert_eq!(done2.field("reason"), "refused", "{done2:?}");

    // A 302 without Location refuses like any other answer but 200.
    let mut bad = publisher(&srv, via, "sk_bad");
    assert_refused(&mut bad, "a publisher redirected without Location", &srv);
    let publish_bad = asked(&hook, &srv, "publish", "sk_bad");
    assert_no_done(&hook, &publish_bad);
    assert!(
        srv.log().contains("a redirect without a usable Location"),
        "the refusal says why: {}",
        srv.log_tail(30)
    );

    // The renamed publisher still plays after both, and its on_done reports live/alice.
    let (n, out) = frames(&srv.url("live/alice"), &[]);
    assert!(n > 0, "live/alice is still the first publisher's: {out}");
    secret.kill();
    let done = done_of(&hook, &srv, &publish);
    assert_renamed_done(&done, &publish, "alice");
    assert!(
        done.field("url").contains("sk_123"),
        "url stays the client's: {done:?}"
    );
}

#[test]
fn rtmp_publisher_with_a_secret_key_publishes_the_public_name() {
    secret_key_publishes_the_public_name(Via::Rtmp, "alice");
}

#[test]
fn rtsp_publisher_with_a_secret_key_publishes_the_public_name() {
    secret_key_publishes_the_public_name(Via::Rtsp, "/live/alice");
}

#[test]
fn srt_publisher_with_a_secret_key_publishes_the_public_name() {
    secret_key_publishes_the_public_name(Via::Srt, "srt://edge.example:9000/live/alice?k=1#x");
}

/// The player test of one protocol: a publisher of `live/alice`; `url_of(name)` is the
/// protocol's URL of `live/{name}`, played with FFmpeg `args`. `t_9` is redirected to
/// `location` (which names `live/alice`), `t_bad` to a `Location` of too many segments,
/// `t_gone` to a name that is not live.
fn ticket_plays_the_public_stream(
    url_of: impl Fn(&Server, &str) -> String,
    args: &[&str],
    location: &'static str,
) -> (HookServer, Server) {
    let hook = HookServer::start();
    let rule = |name: &'static str, reply: Reply| {
        hook.rule(move |r| (r.call() == "play" && r.name() == name).then_some(reply));
    };
    rule("t_9", Reply::Redirect(302, Some(location)));
    rule("t_bad", Reply::Redirect(302, Some("live/a/alice")));
    rule("t_gone", Reply::Redirect(303, Some("nobody")));
    let srv = hooked_server(&hook);
    let mut live = publisher(&srv, Via::Rtmp, "alice");
    wait_publishing(&hook, &srv, &mut live, "alice");

    let (n, out) = frames(&url_of(&srv, "t_9"), args);
    assert!(
        n > 0,
        "the ticket player decodes live/alice: {out}\n{}",
        srv.log_tail(30)
    );
    let play = asked(&hook, &srv, "play", "t_9");
    let done = done_of(&hook, &srv, &play);
    assert_renamed_done(&done, &play, "alice");
    assert!(done.field("url").contains("t_9"), "{done:?}");
    assert!(
        srv.log().contains("renamed by the hook"),
        "the rename is logged: {}",
        srv.log_tail(30)
    );

    let (n, _) = frames(&url_of(&srv, "t_bad"), args);
    assert_eq!(n, 0, "a Location of three segments refuses");
    let bad = asked(&hook, &srv, "play", "t_bad");
    assert_no_done(&hook, &bad);
    assert!(
        srv.log().contains("a redirect without a usable Location"),
        "the refusal says why: {}",
        srv.log_tail(30)
    );

    let (n, _) = frames(&url_of(&srv, "t_gone"), args);
    assert_eq!(n, 0, "a stream that is not live does not play");
    let gone = asked(&hook, &srv, "play", "t_gone");
    let done = done_of(&hook, &srv, &gone);
    assert_renamed_done(&done, &gone, "nobody");
    assert_eq!(done.field("reason"), "refused", "{done:?}");
    live.kill();
    (hook, srv)
}

#[test]
fn rtmp_player_with_a_ticket_plays_the_public_stream() {
    let (hook, srv) =
        ticket_plays_the_public_stream(|srv, name| srv.url(&format!("live/{name}")), &[], "alice");
    // A 3xx to on_connect refuses: only a play or publish is renamed.
    hook.rule(|r| {
        (r.call() == "connect" && r.get("app") == Some("redir"))
            .then_some(Reply::Redirect(302, Some("live/alice")))
    });
    let (n, _) = frames(&srv.url("redir/alice"), &[]);
    assert_eq!(n, 0, "a redirected on_connect refuses");
    assert!(
        hook.count(|r| r.call() == "play" && r.get("app") == Some("redir")) == 0,
        "no play follows a refused connect: {}",
        hook.dump()
    );
    assert!(
        srv.log().contains("on_connect cannot rename"),
        "{}",
        srv.log_tail(30)
    );
}

#[test]
fn httpflv_player_with_a_ticket_plays_the_public_stream() {
    ticket_plays_the_public_stream(
        |srv, name| srv.flv_url(&format!("live/{name}.flv")),
        &[],
        "http://cdn.example/live/alice?sig=1",
    );
}

#[test]
fn rtsp_player_with_a_ticket_plays_the_public_stream() {
    ticket_plays_the_public_stream(
        |srv, name| srv.rtsp_url(&format!("live/{name}")),
        &["-rtsp_transport", "tcp"],
        "/live/alice",
    );
}

#[test]
fn srt_player_with_a_ticket_plays_the_public_stream() {
    ticket_plays_the_public_stream(srt_play_url, &[], "live/alice");
}
