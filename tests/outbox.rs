//! Durable `on_done`: the outbox in `<data_dir>` delivers every `on_done` at least once across
//! an outage of the business server, a restart and a `kill -9` of streamgate. Real ffmpeg
//! publishers, the real binary and the kit's real hook server, which goes down and comes back
//! on the same port.

use std::collections::BTreeMap;
use std::process::Command;
use std::thread;
use std::time::Duration;

use streamgate_testkit::*;

/// A small, cheap picture: twenty encoders at once on a small machine.
const SMALL: &str = "testsrc=size=160x120:rate=10";

/// `n` publishers of `live/{prefix}{i}`, each for `seconds`, each waited for until its publish
/// was allowed; returns them with their clientids.
fn publishers(
    hook: &HookServer,
    srv: &Server,
    prefix: &str,
    n: usize,
    seconds: u32,
) -> Vec<(Proc, String)> {
    let procs: Vec<(Proc, String)> = (0..n)
        .map(|i| {
            let name = format!("{prefix}{i}");
            (
                publish_with(&srv.url(&format!("/live/{name}")), seconds, SMALL, 10),
                name,
            )
        })
        .collect();
    procs
        .into_iter()
        .map(|(p, name)| {
            let publish = hook
                .wait_for(
                    |r| r.is("publish", &name) && r.answered_at.is_some(),
                    secs(60.0),
                )
                .unwrap_or_else(|| {
                    panic!(
                        "no publish of {name}: {}\n{}",
                        hook.dump(),
                        srv.log_tail(40)
                    )
                });
            (p, publish.clientid().to_owned())
        })
        .collect()
}

/// The `on_done`s received so far, by clientid.
fn dones(hook: &HookServer) -> BTreeMap<String, Vec<Record>> {
    let mut by_client: BTreeMap<String, Vec<Record>> = BTreeMap::new();
    for r in hook.find(|r| r.call() == "done") {
        by_client
            .entry(r.clientid().to_owned())
            .or_default()
            .push(r);
    }
    by_client
}

/// Waits until every clientid in `ids` has an `on_done`, then a little longer for any
/// duplicate; returns them.
fn wait_dones(hook: &HookServer, ids: &[String], wait: Duration) -> BTreeMap<String, Vec<Record>> {
    let all = poll(wait, || {
        let got = dones(hook);
        ids.iter().all(|id| got.contains_key(id)).then_some(())
    });
    assert!(
        all.is_some(),
        "not every on_done arrived within {wait:?}: {}",
        hook.dump()
    );
    // A duplicate would come within a retry's backoff.
    thread::sleep(secs(3.0));
    dones(hook)
}

/// Every one of `ids` has exactly one `on_done`.
fn assert_once(got: &BTreeMap<String, Vec<Record>>, ids: &[String], hook: &HookServer) {
    for id in ids {
        let n = got.get(id).map_or(0, Vec::len);
        assert_eq!(n, 1, "on_done of {id} arrived {n} times: {}", hook.dump());
    }
}

fn stop_all(procs: Vec<(Proc, String)>) -> Vec<String> {
    procs
        .into_iter()
        .map(|(mut p, id)| {
            p.kill();
            id
        })
        .collect()
}

#[test]
fn twenty_on_dones_ended_during_an_outage_arrive_once_each_after_it() {
    let mut hook = HookServer::start();
    let cfg = Config::new().hooks(&hook.url(""), "").timeout_ms(2000);
    let srv = Server::start(&cfg);
    let procs = publishers(&hook, &srv, "out", 20, 120);
    thread::sleep(secs(1.0));
    hook.down();
    let ids = stop_all(procs);
    thread::sleep(secs(10.0));
    assert_eq!(
        hook.count(|r| r.call() == "done"),
        0,
        "nothing arrives while the hook server is down"
    );
    // /metrics shows them waiting and being retried.
    let during = api_get(srv.api_port, "/metrics").text;
    assert!(
        during.contains("streamgate_on_done_pending 20"),
        "20 pending: {during}"
    );
    let retries = |page: &str| -> u64 {
        page.lines()
            .find_map(|l| l.strip_prefix("streamgate_on_done_retries_total "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    assert!(retries(&during) >= 20, "each was retried: {during}");
    hook.up();
    let got = wait_dones(&hook, &ids, secs(90.0));
    assert_once(&got, &ids, &hook);
    let after = api_get(srv.api_port, "/metrics").text;
    assert!(
        after.contains("streamgate_on_done_pending 0"),
        "none pending once delivered: {after}"
    );
    for id in &ids {
        let done = &got[id][0];
        assert_field_order(done);
        assert_eq!(done.field("reason"), "lost", "{done:?}");
        assert!(
            done.attempt() > 1,
            "a retried on_done says so in X-Streamgate-Attempt: {done:?} {:?}",
            done.headers
        );
    }
}

#[test]
fn every_on_done_says_its_attempt() {
    let hook = HookServer::start();
    let cfg = Config::new().hooks(&hook.url(""), "");
    let srv = Server::start(&cfg);
    let ids = stop_all(publishers(&hook, &srv, "first", 1, 60));
    let got = wait_dones(&hook, &ids, secs(30.0));
    assert_once(&got, &ids, &hook);
    assert_eq!(got[&ids[0]][0].header("X-Streamgate-Attempt"), Some("1"));
}

#[test]
fn kill_9_with_five_live_sessions_then_restart_sends_server_restart_with_their_usage() {
    let hook = HookServer::start();
    let data = TempDir::new("outbox-kill9");
    let cfg = Config::new()
        .hooks(&hook.url(""), "")
        .data_dir(&data.path)
        .notify_xml("rtmp", "<update_interval_ms>1000</update_interval_ms>");
    let mut srv = Server::start(&cfg);
    let procs = publishers(&hook, &srv, "k", 5, 120);
    // At least two checkpoints of each.
    thread::sleep(secs(3.5));
    send_signal(srv.pid(), "KILL");
    assert!(
        poll(secs(10.0), || (!srv.alive()).then_some(())).is_some(),
        "streamgate dies on kill -9"
    );
    let ids = stop_all(procs);
    assert_eq!(hook.count(|r| r.call() == "done"), 0, "{}", hook.dump());
    let restarted = Server::start(&cfg);
    let got = wait_dones(&hook, &ids, secs(30.0));
    assert_once(&got, &ids, &hook);
    for id in &ids {
        let done = &got[id][0];
        assert_field_order(done);
        assert_eq!(done.field("reason"), "server_restart", "{done:?}");
        assert!(
            number(done, "duration_ms") >= 1000,
            "the last checkpoint's duration: {done:?}"
        );
        assert!(
            number(done, "bytes_in") > 0,
            "the last checkpoint's bytes: {done:?}"
        );
        let publish = hook
            .find(|r| r.call() == "publish" && r.clientid() == id)
            .pop()
            .expect("its publish");
        assert_done_matches(done, &publish);
    }
    drop(restarted);
}

#[test]
fn pending_on_dones_survive_a_restart_during_the_outage() {
    let mut hook = HookServer::start();
    let data = TempDir::new("outbox-restart");
    let cfg = Config::new()
        .hooks(&hook.url(""), "")
        .timeout_ms(1000)
        .data_dir(&data.path);
    let mut srv = Server::start(&cfg);
    let procs = publishers(&hook, &srv, "r", 3, 120);
    thread::sleep(secs(1.0));
    hook.down();
    let ids = stop_all(procs);
    thread::sleep(secs(2.0));
    // A graceful stop while the hook server is down: what it cannot deliver stays stored.
    let exit = srv.stop_graceful();
    assert!(
        exit.is_some_and(|(status, _)| status.success()),
        "stops: {exit:?}\n{}",
        srv.log_tail(30)
    );
    assert!(
        srv.log().contains("kept in the outbox for the next run"),
        "{}",
        srv.log_tail(30)
    );
    let restarted = Server::start(&cfg);
    thread::sleep(secs(3.0));
    assert_eq!(hook.count(|r| r.call() == "done"), 0, "{}", hook.dump());
    hook.up();
    let got = wait_dones(&hook, &ids, secs(60.0));
    assert_once(&got, &ids, &hook);
    for id in &ids {
        assert_eq!(got[id][0].field("reason"), "lost", "{:?}", got[id][0]);
    }
    drop(restarted);
}

#[test]
fn a_second_server_on_a_locked_data_dir_refuses_to_start() {
    let data = TempDir::new("outbox-lock");
    let cfg = Config::new().data_dir(&data.path);
    let _first = Server::start(&cfg);
    let second = Config::new().data_dir(&data.path);
    let dir = TempDir::new("outbox-lock-cfg");
    let path = dir.file("second.xml");
    std::fs::write(&path, second.to_xml()).expect("write config");
    let out = run(
        "second server",
        Command::new(cargo_bin("streamgate"))
            .arg("--config")
            .arg(&path),
        secs(20.0),
    );
    assert!(out.failed(), "the second server exits non-zero: {out:?}");
    let text = out.text();
    assert!(
        text.contains(&data.path.display().to_string()) && text.contains("in use"),
        "names the data dir and why: {text}"
    );
}

#[test]
fn a_data_dir_that_cannot_be_made_or_a_bad_bound_is_an_error_naming_it() {
    let dir = TempDir::new("outbox-cfg");
    let file = dir.file("a-file");
    std::fs::write(&file, b"x").expect("write a file");
    // Under a file: passes the config check, fails at start-up, naming the dir.
    let under = file.join("data");
    let cfg = Config::new().data_dir(&under);
    let path = dir.file("under.xml");
    std::fs::write(&path, cfg.to_xml()).expect("write config");
    let out = run(
        "server",
        Command::new(cargo_bin("streamgate"))
            .arg("--config")
            .arg(&path),
        secs(20.0),
    );
    assert!(out.failed(), "exits non-zero: {out:?}");
    assert!(
        out.text().contains(&under.display().to_string()),
        "names the dir: {}",
        out.text()
    );
    // A file as the data dir, and a bound of 0: config errors with their line.
    let check = |xml: &str| check_config(&dir, "check.xml", xml).0;
    let bad = format!(
        "<config>\n\n  <data_dir>{}</data_dir>\n</config>\n",
        file.display()
    );
    let out = check(&bad);
    assert!(out.failed(), "{out:?}");
    assert!(
        out.text().contains("<data_dir>") && mentions_line(&out.text(), 3),
        "names the element and line: {}",
        out.text()
    );
    let bad = "<config>\n  <outbox_max_events>0</outbox_max_events>\n</config>\n";
    let out = check(bad);
    assert!(out.failed(), "{out:?}");
    assert!(
        out.text().contains("<outbox_max_events>") && mentions_line(&out.text(), 2),
        "names the element and line: {}",
        out.text()
    );
}
