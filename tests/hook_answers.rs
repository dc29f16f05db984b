//! Hook answers pair with the request they answer, whatever else the business server sends:
//! an interim `1xx` answer is skipped and the final one decides (RFC 9110 §15.2), and an
//! answer nobody asked for is never read as the answer to another session's request.
//!
//! For every player protocol, one server (in process) with one worker (so one hook connection
//! pool) and a live RTMP publisher; ffmpeg players then ask to play one after another, each
//! with a `case` in its URL that tells the real HTTP business server how to answer its
//! `on_play`. A client that takes an interim answer as final puts the connection back in its
//! pool while the real answer is still to come, and the next player's request on it reads that
//! answer: a refused player then plays, or an allowed one is refused.

use std::process::Command;
use std::time::Duration;

use streamgate_testkit::*;

const HOOK_WAIT: Duration = Duration::from_secs(10);

/// The players in the order they ask, how the business server answers each one's `on_play`,
/// and whether it must play.
const CASES: [(&str, Reply, bool); 9] = [
    ("interim100_then_200", Reply::Interim(100, 200), true),
    // A 200 left unread on the connection would let this refused player in.
    ("after_interim_403", Reply::Status(403), false),
    ("interim100_then_403", Reply::Interim(100, 403), false),
    // A 403 left unread on the connection would refuse this allowed player.
    ("after_interim_200", Reply::Status(200), true),
    ("interim103_then_200", Reply::Interim(103, 200), true),
    ("interim102_then_403", Reply::Interim(102, 403), false),
    ("after_interim102_200", Reply::Status(200), true),
    ("extra_after_200", Reply::Extra(200, 200), true),
    // The unsolicited 200 must not answer this refused player.
    ("after_extra_403", Reply::Status(403), false),
];

/// Plays about a second of `url` with ffmpeg (`args` before `-i`); the video frames decoded.
fn frames(url: &str, args: &[&str]) -> (usize, String) {
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-nostdin", "-loglevel", "error"])
        .args(args)
        .args(["-i", url, "-t", "1", "-map", "0:v:0", "-f", "framemd5", "-"]);
    let out = run(&format!("play {url}"), &mut cmd, secs(20.0));
    (count_frames(&out.stdout), out.text())
}

/// Starts the server with `config`, a business server answering each case's `on_play` as
/// [`CASES`] says, and a publisher of `live/cam`; then plays every case through `url_of`.
fn check(
    config: impl FnOnce(Config, &HookServer) -> Config,
    url_of: impl Fn(&InProcess, &str) -> String,
    args: &[&str],
) {
    let hook = HookServer::start();
    for (case, reply, _) in CASES {
        let tag = format!("case={case}");
        hook.rule(move |r| (r.call() == "play" && r.field("url").contains(&tag)).then_some(reply));
    }
    let srv = InProcess::start(&config(Config::new().workers(1), &hook));
    let mut publisher = publish_with(
        &srv.url("live/cam"),
        120,
        "testsrc=size=320x240:rate=25",
        25,
    );
    let live = poll(secs(20.0), || {
        let (n, _) = frames(&srv.url("live/cam"), &[]);
        (n > 0).then_some(())
    });
    assert!(
        live.is_some(),
        "the stream never went live: {}",
        srv.log_tail(30)
    );

    // Every case is tried before judging, so a failure shows the whole pattern (a desync
    // shows as a wrong answer to the case after an interim or extra answer).
    let mut wrong = Vec::new();
    for (case, reply, must_play) in CASES {
        let (n, out) = frames(&url_of(&srv, case), args);
        let asked = hook.wait_for(
            |r| r.call() == "play" && r.field("url").contains(&format!("case={case}")),
            HOOK_WAIT,
        );
        if asked.is_none() {
            wrong.push(format!("{case}: no on_play reached the business server"));
        } else if must_play && n < 5 {
            wrong.push(format!(
                "{case} ({reply:?}) must play, decoded {n} frames: {out}"
            ));
        } else if !must_play && n > 0 {
            wrong.push(format!(
                "{case} ({reply:?}) must be refused, decoded {n} frames"
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "{}\n{}",
        wrong.join("\n"),
        srv.log_tail(40)
    );
    // Every case asked exactly once: no answer was taken for a request that was not made.
    for (case, _, _) in CASES {
        let tag = format!("case={case}");
        assert_eq!(
            hook.count(|r| r.call() == "play" && r.field("url").contains(&tag)),
            1,
            "{case}: on_play calls\n{}",
            hook.dump()
        );
    }
    publisher.kill();
}

#[test]
fn rtmp_players_get_the_final_answer_to_their_own_request() {
    check(
        |c, hook| c.hooks(&hook.url("/rtmp"), ""),
        |srv, case| srv.url(&format!("live/cam?case={case}")),
        &[],
    );
}

#[test]
fn httpflv_players_get_the_final_answer_to_their_own_request() {
    check(
        |c, hook| c.httpflv_hooks(&hook.url("/httpflv"), ""),
        |srv, case| srv.flv_url(&format!("live/cam.flv?case={case}")),
        &[],
    );
}

#[test]
fn rtsp_players_get_the_final_answer_to_their_own_request() {
    check(
        |c, hook| c.rtsp_hooks(&hook.url("/rtsp"), ""),
        |srv, case| srv.rtsp_url(&format!("live/cam?case={case}")),
        &["-rtsp_transport", "tcp"],
    );
}

#[test]
fn srt_players_get_the_final_answer_to_their_own_request() {
    check(
        |c, hook| c.srt_hooks(&hook.url("/srt"), ""),
        |srv, case| {
            format!(
                "{}&latency=120000",
                srv.srt_url(&format!("#!::r=live/cam?case={case},m=request"))
            )
        },
        &[],
    );
}
