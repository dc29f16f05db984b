//! The cluster (`<cluster>`, docs/cluster.md): three real `streamgate` processes on loopback
//! ports sharing a real Redis (Debian's `redis-server`, started by the test), real ffmpeg
//! publishers and players, and the kit's hook server as the business server of every node.
//!
//! - a stream published on node A plays on B and C over RTMP, HTTP-FLV, RTSP and SRT, through
//!   one relay pull per node; a second publisher of the name on C is refused while A
//!   publishes and allowed after; clientids of all nodes are unique and come from Redis;
//! - `kill -9` of the owner ends the remote players within a lease and a second, with
//!   `on_done`; the name can be published again on another node and played from a third;
//! - Redis stopped mid-stream: running players go on, new publishes are refused; Redis back:
//!   the directory is rebuilt and a new remote play works within a lease;
//! - the same nodes each in a network namespace of its own (needs root, as CI runs), at their
//!   own addresses on one bridge: `advertise`, the relay and the clients cross real network
//!   paths, and a killed owner still ends the remote players within a lease and a second.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use streamgate::cluster::wire;
use streamgate_actors::media::StreamKey;
use streamgate_testkit::netns;
use streamgate_testkit::*;

/// The tests' lease: short, so a dead node drops out quickly.
const LEASE_MS: u64 = 2000;
/// A small, light picture: many decoders run at once on a small machine.
const SOURCE: &str = "testsrc=size=320x240:rate=25";

/// A node named `name` of the cluster on `redis`: every protocol, every hook at `hook`.
fn node(name: &str, redis: &Redis, hook: &HookServer) -> Server {
    node_at(name, redis, hook, free_port())
}

/// [`node`] with its relay listener on `relay_port`.
fn node_at(name: &str, redis: &Redis, hook: &HookServer, relay_port: u16) -> Server {
    Server::start(
        &Config::new()
            .cluster(name, &redis.url(), relay_port, LEASE_MS)
            .hooks(&hook.url("/rtmp"), "")
            .httpflv_hooks(&hook.url("/flv"), "")
            .rtsp_hooks(&hook.url("/rtsp"), "")
            .srt_hooks(&hook.url("/srt"), ""),
    )
}

/// An RTMP publisher of `live/{name}` on `srv` for `seconds`.
fn publish(srv: &Server, name: &str, seconds: u32) -> Proc {
    publish_with(&srv.url(&format!("live/{name}")), seconds, SOURCE, 25)
}

/// The value of the metric line that starts with `prefix` on `srv`'s `/metrics`.
fn metric(srv: &Server, prefix: &str) -> Option<f64> {
    let page = api_get(srv.api_port, "/metrics").text;
    page.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Waits for the `on_publish` of `name` from `node`, then for a first GOP.
fn wait_publish(hook: &HookServer, node: &str, name: &str, publisher: &mut Proc) -> Record {
    let record = hook
        .wait_for(
            |r| r.is("publish", name) && r.field("node") == node,
            Duration::from_secs(15),
        )
        .unwrap_or_else(|| {
            publisher.kill();
            panic!(
                "no on_publish of {name} on {node}: {}\n{}",
                hook.dump(),
                publisher.stderr()
            )
        });
    thread::sleep(Duration::from_millis(1500));
    record
}

/// The `on_done` of the session whose `call` of `name` came from `node` and began at or after
/// record `after` (waited for).
fn done_after(hook: &HookServer, node: &str, call: &str, name: &str, after: usize) -> Record {
    let begun = hook
        .wait_for(
            |r| r.seq >= after && r.is(call, name) && r.field("node") == node,
            Duration::from_secs(15),
        )
        .unwrap_or_else(|| panic!("no on_{call} of {name} on {node}: {}", hook.dump()));
    done_of(hook, begun.clientid(), String::new)
}

/// Asks the relay listener at `port` for `live/{name}` with a pull signed by `secret`: the
/// owner's first answer.
fn relay_answer(port: u16, secret: &str, name: &str) -> wire::Message {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64;
    let pull = wire::pull(&key, "intruder", &StreamKey::new("live", name), now);
    let mut socket = TcpStream::connect(("127.0.0.1", port)).expect("connect to the relay port");
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    socket
        .write_all(&(pull.len() as u32).to_be_bytes())
        .and_then(|()| socket.write_all(&pull))
        .expect("send the pull");
    let mut len = [0u8; 4];
    socket.read_exact(&mut len).expect("an answer");
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
    socket.read_exact(&mut body).expect("an answer");
    wire::decode(body.into()).expect("a relay message")
}

/// The number the next record gets.
fn mark(hook: &HookServer) -> usize {
    hook.records().len()
}

/// Publishes `name` on `srv` (the node named `node`) again and again until a publish is
/// allowed and not refused, for at most `within`.
fn publish_until_taken(
    hook: &HookServer,
    srv: &Server,
    node: &str,
    name: &str,
    within: Duration,
) -> Option<Proc> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        let from = mark(hook);
        let mut p = publish(srv, name, 30);
        let Some(r) = hook.wait_for(
            |r| r.seq >= from && r.is("publish", name) && r.field("node") == node,
            Duration::from_secs(5),
        ) else {
            p.kill();
            continue;
        };
        // A refused publish has its on_done at once.
        let refused = hook.wait_for(|d| is_done_of(d, r.clientid()), Duration::from_millis(700));
        if refused.is_none() && p.running() {
            return Some(p);
        }
        p.kill();
        thread::sleep(Duration::from_millis(300));
    }
    None
}

#[test]
fn a_stream_published_on_one_node_plays_on_the_others_over_every_protocol() {
    let redis = Redis::start();
    let hook = HookServer::start();
    let relay_port = free_port();
    let a = node_at("node-a", &redis, &hook, relay_port);
    let b = node("node-b", &redis, &hook);
    let c = node("node-c", &redis, &hook);
    let mut publisher = publish(&a, "x", 60);
    wait_publish(&hook, "node-a", "x", &mut publisher);

    // The relay serves only a pull signed with the cluster's secret.
    match relay_answer(relay_port, "not-the-cluster-secret", "x") {
        wire::Message::Refused(reason) => assert!(reason.contains("signature"), "{reason}"),
        other => panic!("a pull with another secret was answered {other:?}"),
    }
    assert_eq!(
        relay_answer(relay_port, CLUSTER_SECRET, "x"),
        wire::Message::Accepted
    );

    // Every protocol's player on B and C at once.
    let mut players = Vec::new();
    for srv in [&b, &c] {
        for (protocol, url) in [
            ("rtmp", srv.url("live/x")),
            ("httpflv", srv.flv_url("live/x.flv")),
            ("rtsp", srv.rtsp_url("live/x")),
            ("srt", srt_play_url(srv, "x")),
        ] {
            players.push((srv.port, protocol, spawn_player(&url, 5.0)));
        }
    }
    // While they play: B pulls the stream once, whatever its number of players; A serves
    // one relay to each of B and C.
    let one_pull = poll(Duration::from_secs(10), || {
        let pulls = metric(&b, "streamgate_cluster_relay_pulls ")?;
        let served = metric(&a, "streamgate_cluster_relays_served ")?;
        (pulls == 1.0 && served == 2.0).then_some(())
    });
    let b_metrics = api_get(b.api_port, "/metrics").text;
    for (port, protocol, player) in players {
        let played = finish_player(player, Duration::from_secs(30));
        assert!(
            played.frames >= 50,
            "{protocol} player on the node at {port}: {} frames\n{}",
            played.frames,
            played.out.stderr
        );
    }
    assert!(
        one_pull.is_some(),
        "B has one relay pull and A serves two:\n{b_metrics}\n{}",
        api_get(a.api_port, "/metrics").text
    );
    assert!(
        b_metrics.contains("streamgate_cluster_relay_pull_starts_total{result=\"started\"} 1\n"),
        "{b_metrics}"
    );
    // The players' hooks went out from the node each connected to; the relay called none.
    for (node, want) in [("node-b", 4), ("node-c", 4), ("node-a", 0)] {
        let plays = hook.count(|r| r.call() == "play" && r.field("node") == node);
        assert_eq!(plays, want, "on_play from {node}: {}", hook.dump());
    }
    let on_b: BTreeSet<String> = hook
        .find(|r| r.field("node") == "node-b")
        .iter()
        .map(|r| r.clientid().to_owned())
        .collect();
    assert_eq!(
        on_b.len(),
        4,
        "B's hooks are its four players': {}",
        hook.dump()
    );
    // The pull stops a short while (<relay_idle_ms>, 2 s here) after B's last player left.
    let stopped = poll(Duration::from_secs(8), || {
        (metric(&b, "streamgate_cluster_relay_pulls ")? == 0.0).then_some(())
    });
    assert!(
        stopped.is_some(),
        "{}",
        api_get(b.api_port, "/metrics").text
    );
    // The cluster's list, from any node.
    let listed = api_get(c.api_port, "/api/v1/cluster/streams");
    assert_eq!(listed.status, 200, "{}", listed.text);
    assert_eq!(listed.body["streams"][0]["name"], "x", "{}", listed.text);
    assert_eq!(
        listed.body["streams"][0]["node"], "node-a",
        "{}",
        listed.text
    );

    // ... true to the OpenAPI document, by schemathesis (as tests/api.rs does for the rest).
    let out = schemathesis(
        c.api_port,
        &[
            "--include-path",
            "/api/v1/cluster/streams",
            "--max-examples",
            "10",
        ],
        Duration::from_secs(120),
    );
    assert!(
        out.success() && out.text().contains("passed"),
        "schemathesis: {}",
        out.text()
    );

    // A second publisher of x on C is refused as on one node, with its on_done.
    let from = mark(&hook);
    let mut second = publish(&c, "x", 20);
    let refused = done_after(&hook, "node-c", "publish", "x", from);
    assert_eq!(refused.field("reason"), "refused", "{refused:?}");
    assert!(
        second.wait_timeout(Duration::from_secs(10)).is_some(),
        "the refused publisher gave up"
    );
    // ... and so is one over SRT.
    let from = mark(&hook);
    let mut cmd = publisher_command(
        "ffmpeg",
        &srt_publish_url(&c, "x"),
        20,
        SOURCE,
        25,
        "mpegts",
    );
    let mut srt_second = Proc::spawn("srt publisher", &mut cmd);
    let refused = done_after(&hook, "node-c", "publish", "x", from);
    assert_eq!(refused.field("protocol"), "srt", "{refused:?}");
    assert_eq!(refused.field("reason"), "refused", "{refused:?}");
    srt_second.kill();

    // A's publisher stops: the name is free, and C may publish it now; A's players find it.
    publisher.kill();
    let ended = done_after(&hook, "node-a", "publish", "x", 0);
    assert_eq!(ended.field("node"), "node-a");
    let mut again = publish_until_taken(&hook, &c, "node-c", "x", Duration::from_secs(10))
        .unwrap_or_else(|| panic!("C publishes x once A's publisher left: {}", hook.dump()));
    thread::sleep(Duration::from_millis(1500));
    let (frames, err) = read_frames(&a.url("live/x"), 2.0, Duration::from_secs(20));
    assert!(frames >= 25, "A plays x from C: {frames} frames: {err}");
    again.kill();

    // Clientids: unique across the nodes, and from the blocks Redis handed out.
    let mut owners: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for r in hook.records() {
        owners
            .entry(r.clientid().to_owned())
            .or_default()
            .insert(r.field("node").to_owned());
    }
    assert!(owners.len() >= 12, "{owners:?}");
    for (clientid, nodes) in &owners {
        assert_eq!(nodes.len(), 1, "clientid {clientid} given by {nodes:?}");
    }
    let counter: u64 = redis
        .command("GET streamgate:clientid")
        .and_then(|a| a.lines().nth(1).map(str::to_owned))
        .and_then(|v| v.parse().ok())
        .expect("the clientid counter in Redis");
    for clientid in owners.keys() {
        let id: u64 = clientid.parse().expect("a number");
        assert!(
            id <= counter && counter - id < 3 * 4096,
            "clientid {id} is from a Redis block (counter {counter})"
        );
    }
}

#[test]
fn a_killed_owner_ends_remote_players_and_the_name_moves_to_another_node() {
    let redis = Redis::start();
    let hook = HookServer::start();
    let mut a = node("node-a", &redis, &hook);
    let b = node("node-b", &redis, &hook);
    let c = node("node-c", &redis, &hook);
    let mut publisher = publish(&a, "k", 60);
    wait_publish(&hook, "node-a", "k", &mut publisher);
    let mut on_b = spawn_player(&b.url("live/k"), 60.0);
    let mut on_c = spawn_player(&c.flv_url("live/k.flv"), 60.0);
    let play_b = hook
        .wait_for(
            |r| r.is("play", "k") && r.field("node") == "node-b",
            Duration::from_secs(15),
        )
        .expect("on_play on B");
    let play_c = hook
        .wait_for(
            |r| r.is("play", "k") && r.field("node") == "node-c",
            Duration::from_secs(15),
        )
        .expect("on_play on C");
    thread::sleep(Duration::from_secs(2));
    assert!(on_b.running() && on_c.running(), "the players play");

    send_signal(a.pid(), "KILL");
    let killed = Instant::now();
    assert!(poll(Duration::from_secs(5), || (!a.alive()).then_some(())).is_some());
    let limit = Duration::from_millis(LEASE_MS + 1000);
    for (play, node) in [(&play_b, "node-b"), (&play_c, "node-c")] {
        let done = hook
            .wait_for(
                |r| is_done_of(r, play.clientid()),
                limit + Duration::from_secs(5),
            )
            .unwrap_or_else(|| panic!("no on_done of the player on {node}: {}", hook.dump()));
        let took = killed.elapsed();
        assert!(
            took <= limit,
            "the player on {node} ended {took:?} after the kill"
        );
        assert_eq!(done.field("reason"), "stream_ended", "{done:?}");
        assert_eq!(done.field("node"), node);
    }
    assert!(
        on_b.wait_timeout(Duration::from_secs(10)).is_some(),
        "ffmpeg on B ended"
    );
    assert!(
        on_c.wait_timeout(Duration::from_secs(10)).is_some(),
        "ffmpeg on C ended"
    );
    publisher.kill();

    // The publisher comes back on B (once A's lease ran out) and C's players find it there.
    let mut moved = publish_until_taken(&hook, &b, "node-b", "k", Duration::from_secs(15));
    let mut moved = moved
        .take()
        .unwrap_or_else(|| panic!("k published again on B: {}", hook.dump()));
    thread::sleep(Duration::from_millis(1500));
    let (frames, err) = read_frames(&c.url("live/k"), 2.0, Duration::from_secs(20));
    assert!(
        frames >= 25,
        "a new player on C plays k from B: {frames} frames: {err}"
    );
    let listed = api_get(c.api_port, "/api/v1/cluster/streams");
    assert_eq!(
        listed.body["streams"][0]["node"], "node-b",
        "{}",
        listed.text
    );
    moved.kill();
}

#[test]
fn running_streams_outlive_a_redis_outage_and_the_directory_comes_back() {
    let mut redis = Redis::start();
    let hook = HookServer::start();
    let a = node("node-a", &redis, &hook);
    let b = node("node-b", &redis, &hook);
    let c = node("node-c", &redis, &hook);
    let mut publisher = publish(&a, "r", 60);
    wait_publish(&hook, "node-a", "r", &mut publisher);
    let player = spawn_player(&b.url("live/r"), 12.0);
    let play = hook
        .wait_for(
            |r| r.is("play", "r") && r.field("node") == "node-b",
            Duration::from_secs(15),
        )
        .expect("on_play on B");
    thread::sleep(Duration::from_secs(2));

    redis.down();
    // Past a lease without Redis: the running player goes on; a new publish is refused.
    thread::sleep(Duration::from_millis(LEASE_MS + 500));
    let from = mark(&hook);
    let mut refused = publish(&a, "new", 10);
    let done = done_after(&hook, "node-a", "publish", "new", from);
    assert_eq!(done.field("reason"), "refused", "{done:?}");
    refused.kill();
    assert!(
        metric(
            &a,
            "streamgate_cluster_claims_total{result=\"unavailable\"}"
        )
        .unwrap_or(0.0)
            >= 1.0,
        "{}",
        api_get(a.api_port, "/metrics").text
    );
    assert_eq!(metric(&a, "streamgate_cluster_redis_up "), Some(0.0));
    assert!(
        a.log().contains("Redis unreachable"),
        "the outage is logged"
    );
    // A new play of r on C, which has no relay of it, finds no owner; on B (relay running)
    // another player is served.
    let (frames, _) = read_frames(&c.url("live/r"), 1.0, Duration::from_secs(15));
    assert_eq!(frames, 0, "C cannot look r up while Redis is down");
    assert!(
        metric(
            &c,
            "streamgate_cluster_directory_lookups_total{result=\"error\"}"
        )
        .unwrap_or(0.0)
            >= 1.0,
        "{}",
        api_get(c.api_port, "/metrics").text
    );
    let listed = api_get(a.api_port, "/api/v1/cluster/streams");
    assert_eq!(listed.status, 503, "{}", listed.text);
    assert!(listed.body["error"].is_string(), "{}", listed.text);
    let (frames, err) = read_frames(&b.url("live/r"), 1.0, Duration::from_secs(15));
    assert!(
        frames >= 10,
        "a second player on B during the outage: {frames}: {err}"
    );

    redis.up();
    let back = Instant::now();
    // Rebuilt within a lease: A wrote its stream back.
    let rebuilt = poll(Duration::from_millis(LEASE_MS + 1000), || {
        redis
            .command("EXISTS streamgate:stream:live/r")
            .filter(|a| a.starts_with(":1"))
    });
    assert!(
        rebuilt.is_some(),
        "live/r is in the directory again {:?} after Redis came back",
        back.elapsed()
    );
    // A new remote play on C works.
    let (frames, err) = read_frames(&c.url("live/r"), 2.0, Duration::from_secs(20));
    assert!(
        frames >= 25,
        "a new player on C after the outage: {frames} frames: {err}"
    );

    // The player that ran through it all decoded its whole 12 s.
    let played = finish_player(player, Duration::from_secs(30));
    assert!(
        played.frames >= 250,
        "{} frames through the outage: {}",
        played.frames,
        played.out.stderr
    );
    assert_eq!(
        hook.count(|r| is_done_of(r, play.clientid())
            && r.field("reason") != "closed"
            && r.field("reason") != "lost"),
        0,
        "{}",
        hook.dump()
    );
    assert!(
        a.log().contains("Redis answers again"),
        "the recovery is logged"
    );
    publisher.kill();
}

#[test]
fn a_cluster_needs_a_node_id() {
    let dir = TempDir::new("cluster-check");
    let xml = "<config>\n<cluster>\n<redis>redis://127.0.0.1:1/0</redis>\n\
               <advertise>127.0.0.1:7935</advertise>\n<secret>0123456789abcdef</secret>\n\
               </cluster>\n</config>\n";
    let (out, _) = check_config(&dir, "cluster.xml", xml);
    assert!(out.failed(), "{}", out.text());
    assert!(
        out.text().contains(":2: <cluster>: <config><node_id>"),
        "{}",
        out.text()
    );
}

#[test]
fn nodes_at_their_own_addresses_relay_over_the_network() {
    // Each node in a network namespace of its own, at its own address on one bridge: the
    // relay, `advertise` and the clients' traffic cross real network paths.
    let mut lan = netns::Lan::new().expect("network namespaces (the tests run as root)");
    let host = lan.host_ip();
    let redis = Redis::start_on(host);
    let hook = HookServer::start_on(host);
    let mut nodes = Vec::new();
    for (i, name) in ["node-a", "node-b", "node-c"].into_iter().enumerate() {
        let (ns, ip) = lan.node(i as u8);
        let relay = std::net::SocketAddr::new(ip, 7935);
        let srv = Server::start(
            &Config::new()
                .in_netns(&ns, ip)
                .cluster_at(name, &redis.url(), relay, LEASE_MS)
                .hooks(&hook.url("/rtmp"), "")
                .httpflv_hooks(&hook.url("/flv"), ""),
        );
        nodes.push((srv, ip));
    }
    let rtmp =
        |n: usize, name: &str| format!("rtmp://{}:{}/live/{name}", nodes[n].1, nodes[n].0.port);
    let mut publisher = publish_with(&rtmp(0, "n"), 60, SOURCE, 25);
    wait_publish(&hook, "node-a", "n", &mut publisher);
    let owner = redis
        .command("GET streamgate:stream:live/n")
        .expect("the directory entry");
    assert!(
        owner.contains(&format!("\"advertise\":\"{}:7935\"", nodes[0].1)),
        "A advertises its own address: {owner}"
    );

    let flv = format!(
        "http://{}:{}/live/n.flv",
        nodes[2].1,
        nodes[2].0.httpflv_port.expect("HTTP-FLV")
    );
    let mut on_b = spawn_player(&rtmp(1, "n"), 60.0);
    let mut on_c = spawn_player(&flv, 60.0);
    let mut plays = Vec::new();
    for node in ["node-b", "node-c"] {
        let play = hook
            .wait_for(
                |r| r.is("play", "n") && r.field("node") == node,
                Duration::from_secs(15),
            )
            .unwrap_or_else(|| panic!("on_play on {node}: {}", hook.dump()));
        // The player came over the network: its address is the test's on the bridge.
        assert_eq!(play.field("addr"), host.to_string(), "{play:?}");
        plays.push(play);
    }
    thread::sleep(Duration::from_secs(3));
    assert!(on_b.running() && on_c.running(), "both players play");

    send_signal(nodes[0].0.pid(), "KILL");
    let killed = Instant::now();
    let limit = Duration::from_millis(LEASE_MS + 1000);
    for play in &plays {
        let done = hook
            .wait_for(
                |r| is_done_of(r, play.clientid()),
                limit + Duration::from_secs(5),
            )
            .unwrap_or_else(|| panic!("no on_done of {play:?}: {}", hook.dump()));
        assert!(
            killed.elapsed() <= limit,
            "ended {:?} after the kill",
            killed.elapsed()
        );
        assert_eq!(done.field("reason"), "stream_ended", "{done:?}");
    }
    let b = finish_player(on_b, Duration::from_secs(10));
    let c = finish_player(on_c, Duration::from_secs(10));
    assert!(
        b.frames >= 50 && c.frames >= 50,
        "decoded before the kill: {} and {}",
        b.frames,
        c.frames
    );
    publisher.kill();
}

#[test]
fn a_reload_keeps_the_cluster_as_it_runs() {
    let redis = Redis::start();
    let hook = HookServer::start();
    let srv = node("node-a", &redis, &hook);
    let xml = std::fs::read_to_string(&srv.config_path).expect("the config");
    let changed = xml.replace(
        &format!("<lease_ms>{LEASE_MS}</lease_ms>"),
        "<lease_ms>9000</lease_ms>",
    );
    assert_ne!(xml, changed);
    std::fs::write(&srv.config_path, changed).expect("write the config");
    let answer = api_call(srv.api_port, "POST", "/api/v1/reload", None);
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert!(
        answer.body["restart_required"]
            .as_array()
            .is_some_and(|r| r.iter().any(|e| e == "<cluster>")),
        "{}",
        answer.text
    );
    // Still a node of the cluster: its publishes are claimed in Redis.
    let mut publisher = publish(&srv, "reloaded", 20);
    wait_publish(&hook, "node-a", "reloaded", &mut publisher);
    assert!(
        redis
            .command("EXISTS streamgate:stream:live/reloaded")
            .is_some_and(|a| a.starts_with(":1")),
        "the claim is in Redis"
    );
    publisher.kill();
}

#[test]
fn hls_viewers_of_another_nodes_stream_are_sessions_of_their_own_node() {
    let redis = Redis::start();
    let hook = HookServer::start();
    let a = node("node-a", &redis, &hook);
    let b = Server::start(
        &Config::new()
            .cluster("node-b", &redis.url(), free_port(), LEASE_MS)
            .hooks(&hook.url("/rtmp"), "")
            .hls_hooks(&hook.url("/hls"), "")
            .hls("<idle_timeout_ms>1000</idle_timeout_ms><segment_duration_ms>1000</segment_duration_ms>"),
    );
    let mut publisher = publish(&a, "h", 60);
    wait_publish(&hook, "node-a", "h", &mut publisher);
    // ffmpeg reads the stream from B's HLS port: B pulls it from A and packages it.
    let (frames, log) = read_frames(&b.hls_url("live/h/index.m3u8?token=t"), 3.0, secs(40.0));
    assert!(
        frames >= 40,
        "ffmpeg decoded {frames} frames over HLS on B: {log}\npublisher: {}",
        publisher.stderr()
    );
    let play = hook
        .wait_for(
            |r| r.field("protocol") == "hls" && r.call() == "play",
            Duration::from_secs(5),
        )
        .expect("on_play of the HLS viewer");
    assert_eq!(play.field("node"), "node-b");
    assert!(play.field("url").ends_with("/live/h/index.m3u8?token=t"));
    // It stopped: its one on_done comes from B, after the idle time, with what it fetched.
    let done = done_of(&hook, play.clientid(), || b.log_tail(30));
    assert_eq!(done.field("node"), "node-b");
    assert_eq!(done.field("reason"), "idle");
    assert!(number(&done, "bytes_out") > 50_000, "{done:?}");
    assert_eq!(
        hook.count(|r| r.field("protocol") == "hls" && r.call() == "play"),
        1,
        "{}",
        hook.dump()
    );
}
