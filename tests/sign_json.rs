//! Signed requests and JSON bodies (HTTP Notify's `<secret>`, `<secret_id>` and
//! `<notify_format>`), end to end with real ffmpeg clients.
//!
//! The verifiers are the ones docs/http-notify.md gives, copied out of the page as they are
//! (the fenced block after each `<!-- verifier: NAME -->`): run as the business server of a real
//! server, they let a publisher and a player in with the right secret and refuse them with a
//! wrong one, over POST and GET, and their `verify` accepts requests the server really sent
//! and refuses the same requests with one byte changed or a `t` outside the 5-minute window.
//! JSON bodies are checked member by member, with their JSON types, over RTMP and SRT.

use std::fs;
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use streamgate_testkit::*;

const HOOK_WAIT: Duration = Duration::from_secs(10);

/// The secret the business server holds (32 bytes).
const SECRET: &str = "b6f0d7c1e2a94f3c8d5e6a7b8c9d0e1f";
/// A secret that differs from it in one character.
const WRONG: &str = "b6f0d7c1e2a94f3c8d5e6a7b8c9d0e1e";

/// The fenced block after `<!-- verifier: NAME -->` in docs/http-notify.md.
fn documented(name: &str) -> String {
    let doc = fs::read_to_string(repo_file("docs/http-notify.md")).expect("docs/http-notify.md");
    let marker = format!("<!-- verifier: {name} -->");
    let (_, after) = doc
        .split_once(&marker)
        .unwrap_or_else(|| panic!("no {marker} in docs/http-notify.md"));
    let mut lines = after.lines().skip_while(|l| l.trim().is_empty());
    let fence = lines.next().unwrap_or_default();
    assert!(
        fence.starts_with("```"),
        "{marker} must precede a fenced block"
    );
    let code: Vec<&str> = lines.take_while(|l| !l.starts_with("```")).collect();
    assert!(code.len() > 10, "the {name} block is too short");
    code.join("\n") + "\n"
}

/// The documented verifiers, written to a temp dir.
struct Verifiers {
    dir: TempDir,
}

impl Verifiers {
    fn new() -> Verifiers {
        let dir = TempDir::new("verifiers");
        for name in [Lang::Python.file(), Lang::Node.file()] {
            fs::write(dir.file(name), documented(name)).expect("write a verifier");
        }
        Verifiers { dir }
    }

    /// Starts the documented hook server of `lang` with `secret` on a free port.
    fn serve(&self, lang: Lang, secret: &str) -> (Proc, u16) {
        let port = free_port();
        let mut cmd = Command::new(lang.exe());
        cmd.current_dir(&self.dir.path)
            .arg(lang.file())
            .arg(port.to_string())
            .env("STREAMGATE_SECRET", secret);
        let mut server = Proc::spawn(&format!("{lang:?} verifier"), &mut cmd);
        let up = poll(secs(10.0), || {
            TcpStream::connect(("127.0.0.1", port)).ok().map(|_| ())
        });
        if up.is_none() {
            server.kill();
            panic!("the {lang:?} verifier did not listen: {}", server.stderr());
        }
        (server, port)
    }

    /// What the documented `verify` of `lang` says of each case.
    fn verify(&self, lang: Lang, cases: &[Case]) -> Vec<bool> {
        let json: Vec<Value> = cases
            .iter()
            .map(|c| {
                serde_json::json!({
                    "secret": c.secret,
                    "header": c.header,
                    "signed": hex(&c.signed),
                    "now": c.now,
                })
            })
            .collect();
        let path = self.dir.file("cases.json");
        fs::write(&path, serde_json::to_vec(&json).expect("cases")).expect("write cases");
        let driver = match lang {
            Lang::Python => "import json, sys\n\
                             from verify_hook import verify\n\
                             cases = json.load(open(sys.argv[1]))\n\
                             print(json.dumps([verify(c['secret'].encode(), c['header'], \
                             bytes.fromhex(c['signed']), c['now']) for c in cases]))\n",
            Lang::Node => "const { verify } = require('./verify_hook.js');\n\
                           const cases = JSON.parse(require('fs').readFileSync(process.argv.at(-1)));\n\
                           console.log(JSON.stringify(cases.map((c) => verify(c.secret, \
                           c.header, Buffer.from(c.signed, 'hex'), c.now))));\n",
        };
        let flag = match lang {
            Lang::Python => "-c",
            Lang::Node => "-e",
        };
        let mut cmd = Command::new(lang.exe());
        cmd.current_dir(&self.dir.path).args([flag, driver]);
        if lang == Lang::Node {
            cmd.arg("--");
        }
        cmd.arg(&path);
        let out = run(&format!("{lang:?} verify"), &mut cmd, secs(20.0));
        assert!(out.success(), "{lang:?} verify failed: {}", out.text());
        serde_json::from_str(out.stdout.trim())
            .unwrap_or_else(|e| panic!("{lang:?} printed {:?}: {e}", out.stdout))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lang {
    Python,
    Node,
}

impl Lang {
    fn exe(self) -> &'static str {
        match self {
            Lang::Python => "python3",
            Lang::Node => "node",
        }
    }

    fn file(self) -> &'static str {
        match self {
            Lang::Python => "verify_hook.py",
            Lang::Node => "verify_hook.js",
        }
    }
}

/// One call of `verify` and what it must say.
struct Case {
    what: String,
    secret: String,
    header: String,
    signed: Vec<u8>,
    now: f64,
    valid: bool,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The signature header of `r`, and its `t`.
fn signature(r: &Record) -> (String, u64) {
    let header = r
        .header("x-streamgate-signature")
        .unwrap_or_else(|| panic!("no signature on {r:?}"))
        .to_owned();
    let t = header
        .split(',')
        .find_map(|p| p.strip_prefix("t="))
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("no t in {header}"));
    (header, t)
}

/// The bytes a request's signature covers: the body of a POST, the query of a GET.
fn signed_bytes(r: &Record) -> Vec<u8> {
    if r.method == "GET" {
        r.query.as_bytes().to_vec()
    } else {
        r.body.as_bytes().to_vec()
    }
}

/// The cases for one recorded request: as sent (valid now and at both ends of the window),
/// one byte changed at three places, `t` outside the window either way, a wrong secret,
/// a changed `v1` and a changed `t`.
fn cases_of(r: &Record) -> Vec<Case> {
    let (header, t) = signature(r);
    let signed = signed_bytes(r);
    assert!(!signed.is_empty(), "nothing signed in {r:?}");
    let now = t as f64;
    let case = |what: &str, secret: &str, header: &str, signed: &[u8], now: f64, valid| Case {
        what: format!("{what} of {} {} {}", r.method, r.path, r.call()),
        secret: secret.into(),
        header: header.into(),
        signed: signed.to_vec(),
        now,
        valid,
    };
    let mut cases = vec![
        case("as sent", SECRET, &header, &signed, now + 1.0, true),
        case(
            "as sent, 5 min later",
            SECRET,
            &header,
            &signed,
            now + 300.0,
            true,
        ),
        case(
            "as sent, 5 min earlier",
            SECRET,
            &header,
            &signed,
            now - 300.0,
            true,
        ),
        case("t too old", SECRET, &header, &signed, now + 301.0, false),
        case(
            "t in the future",
            SECRET,
            &header,
            &signed,
            now - 301.0,
            false,
        ),
        case("wrong secret", WRONG, &header, &signed, now, false),
    ];
    for at in [0, signed.len() / 2, signed.len() - 1] {
        let mut changed = signed.clone();
        changed[at] ^= 0x01;
        cases.push(case(
            &format!("byte {at} changed"),
            SECRET,
            &header,
            &changed,
            now,
            false,
        ));
    }
    let mut v1_changed = header.clone().into_bytes();
    let last = v1_changed.len() - 1;
    v1_changed[last] = if v1_changed[last] == b'0' { b'1' } else { b'0' };
    let v1_changed = String::from_utf8(v1_changed).expect("ASCII");
    cases.push(case("v1 changed", SECRET, &v1_changed, &signed, now, false));
    let t_changed = header.replacen(&format!("t={t}"), &format!("t={}", t + 1), 1);
    cases.push(case("t changed", SECRET, &t_changed, &signed, now, false));
    // Headers a forger might send: nothing, no v1, a v1 that is not hex (or not ASCII).
    let v1_at = header.find("v1=").expect("v1=") + 3;
    for (what, forged) in [
        ("no header", String::new()),
        ("no v1", header[..v1_at - 4].to_owned()),
        (
            "v1 not hex",
            format!("{}{}", &header[..v1_at], "z".repeat(64)),
        ),
        (
            "v1 not ASCII",
            format!("{}{}", &header[..v1_at], "é".repeat(32)),
        ),
    ] {
        cases.push(case(what, SECRET, &forged, &signed, now, false));
    }
    cases
}

/// Every request the server sends is signed over exactly what it sent, for every call and
/// body: the documented verifiers (both languages) accept them as recorded and refuse them
/// with one byte changed, a `t` outside the window, a wrong secret or a changed header.
#[test]
fn documented_verifiers_check_recorded_requests() {
    let verifiers = Verifiers::new();
    let hook = HookServer::start();
    // RTMP: form POST with a key id; HTTP-FLV: GET with the operator's own query, no key id;
    // SRT: JSON POST with a key id.
    let config = Config::new()
        .hooks(&hook.url("/rtmp"), "")
        .httpflv_hooks(&hook.url("/flv"), "?key=s%20t")
        .srt_hooks(&hook.url("/srt"), "")
        .notify_xml(
            "rtmp",
            &format!("<secret>{SECRET}</secret><secret_id>k1</secret_id>"),
        )
        .on_update("rtmp", &hook.url("/rtmp/update"), 1000)
        .notify_xml(
            "httpflv",
            &format!("<secret>{SECRET}</secret><notify_method>GET</notify_method>"),
        )
        .notify_xml(
            "srt",
            &format!(
                "<secret>{SECRET}</secret><secret_id>2026-01.k2</secret_id>\
                 <notify_format>json</notify_format>"
            ),
        );
    let srv = InProcess::start(&config);
    let mut publisher = publish(&srv.url("live/cam"), 6);
    hook.wait_call("publish", "cam", HOOK_WAIT)
        .expect("on_publish over RTMP");
    let flv = poll(secs(20.0), || {
        let (n, _) = read_frames(&srv.flv_url("live/cam.flv"), 1.0, secs(15.0));
        (n > 0).then_some(n)
    });
    assert!(flv.is_some(), "HTTP-FLV did not play\n{}", hook.dump());
    let (srt_frames, err) = read_frames(&srt_play_url(&srv, "cam"), 1.0, secs(15.0));
    assert!(srt_frames > 0, "SRT did not play: {err}\n{}", hook.dump());
    publisher.wait_timeout(secs(30.0));
    for protocol in ["rtmp", "httpflv", "srt"] {
        let dones = poll(HOOK_WAIT, || {
            let n = hook.count(|r| r.call() == "done" && r.get("protocol") == Some(protocol));
            (n > 0).then_some(n)
        });
        assert!(
            dones.is_some(),
            "no on_done over {protocol}\n{}",
            hook.dump()
        );
    }

    let records = hook.records();
    let mut cases = Vec::new();
    for r in &records {
        let (header, _) = signature(r);
        let protocol = r.get("protocol").unwrap_or_default();
        match protocol {
            "rtmp" => {
                assert_eq!(r.method, "POST", "{r:?}");
                assert!(header.contains(",kid=k1,v1="), "{header}");
            }
            "httpflv" => {
                assert_eq!(r.method, "GET", "{r:?}");
                assert!(r.query.starts_with("key=s%20t&protocol=httpflv&"), "{r:?}");
                assert!(!header.contains("kid="), "{header}");
            }
            "srt" => {
                assert!(r.json.is_some(), "{r:?}");
                assert!(header.contains(",kid=2026-01.k2,v1="), "{header}");
            }
            _ => panic!("unexpected request {r:?}"),
        }
        cases.extend(cases_of(r));
    }
    // Every call of every protocol was seen, on_done with its usage included, and RTMP's
    // on_update.
    assert!(
        records.iter().any(|r| r.call() == "update"),
        "no on_update\n{}",
        hook.dump()
    );
    for protocol in ["rtmp", "httpflv", "srt"] {
        for call in ["connect", "done"] {
            assert!(
                records
                    .iter()
                    .any(|r| r.get("protocol") == Some(protocol) && r.call() == call),
                "no {call} over {protocol}\n{}",
                hook.dump()
            );
        }
    }
    assert!(records
        .iter()
        .any(|r| r.call() == "done" && r.get("bytes_out").is_some()));
    let expected: Vec<bool> = cases.iter().map(|c| c.valid).collect();
    for lang in [Lang::Python, Lang::Node] {
        let got = verifiers.verify(lang, &cases);
        let wrong: Vec<String> = cases
            .iter()
            .zip(&got)
            .filter(|(c, got)| c.valid != **got)
            .map(|(c, got)| format!("{}: said {got}", c.what))
            .collect();
        assert!(
            wrong.is_empty() && got.len() == expected.len(),
            "{lang:?} verifier:\n{}",
            wrong.join("\n")
        );
    }
    drop(srv);
}

/// The documented verifier of `lang` as the business server of RTMP hooks with `method` and
/// `format`: with the right secret a publisher and a player are allowed and both `on_done`s
/// verify; with a wrong one the publisher is refused at its connect.
fn verifier_gates(lang: Lang, method: &str, format: &str) {
    let verifiers = Verifiers::new();
    let (mut hook, port) = verifiers.serve(lang, SECRET);
    let base = format!("http://127.0.0.1:{port}");
    // A GET hook keeps the operator's query, and it is signed with the rest.
    let suffix = if method == "GET" { "?tenant=a%2Fb" } else { "" };
    let config = |secret: &str| {
        Config::new()
            .hooks(&base, suffix)
            .method(method)
            .notify_xml(
                "rtmp",
                &format!(
                    "<secret>{secret}</secret><secret_id>k1</secret_id>\
                     <notify_format>{format}</notify_format>"
                ),
            )
    };

    let srv = InProcess::start(&config(SECRET));
    let mut publisher = publish(&srv.url("live/signed"), 5);
    let played = poll(secs(20.0), || {
        let (n, _) = read_frames(&srv.url("live/signed"), 1.0, secs(15.0));
        (n > 0).then_some(n)
    });
    assert!(
        played.is_some(),
        "signed requests were refused: {}\n{}",
        hook.stdout(),
        srv.log_tail(30)
    );
    let published = publisher.wait_timeout(secs(30.0));
    assert!(
        published.is_some_and(|s| s.success()),
        "{}",
        publisher.stderr()
    );
    let done_line = format!("200 {method} /done");
    let dones = poll(HOOK_WAIT, || {
        let n = hook
            .stdout()
            .lines()
            .filter(|l| l.starts_with(&done_line))
            .count();
        (n >= 2).then_some(n)
    });
    assert!(
        dones.is_some(),
        "the publisher's and the player's on_done must verify:\n{}",
        hook.stdout()
    );
    assert!(
        !hook.stdout().lines().any(|l| l.starts_with("403 ")),
        "every signed request verifies:\n{}",
        hook.stdout()
    );
    drop(srv);

    let lines_before = hook.stdout().lines().count();
    let srv = InProcess::start(&config(WRONG));
    let out = publish(&srv.url("live/forged"), 3).finish(secs(20.0));
    assert!(
        out.failed(),
        "a wrongly signed publisher must be refused: {}",
        out.text()
    );
    let log = hook.stdout();
    let after: Vec<&str> = log.lines().skip(lines_before).collect();
    assert!(
        after
            .iter()
            .any(|l| l.starts_with(&format!("403 {method} /connect"))),
        "the verifier must refuse the connect: {after:?}"
    );
    assert!(
        !after.iter().any(|l| l.starts_with("200")),
        "nothing wrongly signed is allowed: {after:?}"
    );
    drop(srv);
    hook.kill();
}

#[test]
fn python_verifier_gates_signed_post() {
    verifier_gates(Lang::Python, "POST", "form");
}

#[test]
fn python_verifier_gates_signed_get() {
    verifier_gates(Lang::Python, "GET", "form");
}

#[test]
fn node_verifier_gates_signed_get() {
    verifier_gates(Lang::Node, "GET", "form");
}

#[test]
fn node_verifier_gates_signed_json_post() {
    verifier_gates(Lang::Node, "POST", "json");
}

/// A secret under 16 bytes is taken, with a warning at start-up.
#[test]
fn a_short_secret_is_warned_about_at_start_up() {
    let srv = InProcess::start(&Config::new().notify_xml("rtmp", "<secret>short</secret>"));
    let warned = poll(secs(5.0), || {
        srv.log()
            .contains("<rtmp><http_notify><secret> is shorter than 16 bytes")
            .then_some(())
    });
    assert!(warned.is_some(), "{}", srv.log_tail(20));
}

/// The JSON types of every member, by name.
fn assert_json_types(r: &Record) {
    let Some(Value::Object(members)) = &r.json else {
        panic!("not a JSON object: {r:?}");
    };
    for (k, v) in members {
        let numeric = ["clientid", "start", "duration_ms", "bytes_in", "bytes_out"];
        if numeric.contains(&k.as_str()) {
            assert!(v.is_u64(), "{k} must be a JSON number in {}", r.body);
        } else {
            assert!(v.is_string(), "{k} must be a JSON string in {}", r.body);
        }
    }
    assert_eq!(r.method, "POST", "{r:?}");
    assert_eq!(r.content_type.as_deref(), Some(JSON), "{r:?}");
    // The same names in the same order as the form fields.
    assert_field_order(r);
}

/// `<notify_format>json</notify_format>`: connect, publish, play and done over RTMP and SRT,
/// and RTMP's update, arrive as JSON objects with every field, numbers as numbers, in order.
#[test]
fn json_bodies_over_rtmp_and_srt() {
    let hook = HookServer::start();
    let json = "<notify_format>json</notify_format>";
    let srv = InProcess::start(
        &Config::new()
            .hooks(&hook.url("/rtmp"), "")
            .srt_hooks(&hook.url("/srt"), "")
            .notify_xml("rtmp", json)
            .notify_xml("srt", json)
            .on_update("rtmp", &hook.url("/rtmp/update"), 1000),
    );
    // RTMP publisher and player; an SRT publisher and player of another stream.
    let mut rtmp_pub = publish(&srv.url("live/j1"), 4);
    let rtmp_publish = hook
        .wait_call("publish", "j1", HOOK_WAIT)
        .expect("on_publish over RTMP");
    let mut cmd = publisher_command(
        "ffmpeg",
        &srt_publish_url(&srv, "j2"),
        4,
        TESTSRC,
        25,
        "mpegts",
    );
    let mut srt_pub = Proc::spawn("SRT publisher", &mut cmd);
    let srt_publish = hook
        .wait_call("publish", "j2", HOOK_WAIT)
        .expect("on_publish over SRT");
    let rtmp_frames = poll(secs(15.0), || {
        let (n, _) = read_frames(&srv.url("live/j1"), 1.0, secs(15.0));
        (n > 0).then_some(n)
    });
    assert!(rtmp_frames.is_some(), "RTMP play\n{}", hook.dump());
    let srt_frames = poll(secs(15.0), || {
        let (n, _) = read_frames(&srt_play_url(&srv, "j2"), 1.0, secs(15.0));
        (n > 0).then_some(n)
    });
    assert!(srt_frames.is_some(), "SRT play\n{}", hook.dump());
    rtmp_pub.wait_timeout(secs(30.0));
    srt_pub.wait_timeout(secs(30.0));

    for (protocol, publish, name) in [("rtmp", &rtmp_publish, "j1"), ("srt", &srt_publish, "j2")] {
        let done = hook
            .wait_for(|r| is_done_of(r, publish.clientid()), HOOK_WAIT)
            .unwrap_or_else(|| panic!("no on_done of the {protocol} publisher\n{}", hook.dump()));
        assert_done_matches(&done, publish);
        let play = hook
            .wait_for(|r| r.is("play", name), HOOK_WAIT)
            .unwrap_or_else(|| panic!("no on_play over {protocol}"));
        let play_done = hook
            .wait_for(|r| is_done_of(r, play.clientid()), HOOK_WAIT)
            .unwrap_or_else(|| panic!("no on_done of the {protocol} player\n{}", hook.dump()));
        assert_done_matches(&play_done, &play);
        let connect = hook
            .wait_for(
                |r| r.call() == "connect" && r.clientid() == publish.clientid(),
                HOOK_WAIT,
            )
            .unwrap_or_else(|| panic!("no on_connect over {protocol}"));
        for r in [&connect, publish, &play, &done, &play_done] {
            assert_eq!(r.field("protocol"), protocol, "{r:?}");
            assert_json_types(r);
        }
        // The decoded values are those the form body would carry: url unencoded.
        assert!(
            publish.field("url").contains(&format!("live/{name}")),
            "{publish:?}"
        );
        let members = done
            .json
            .as_ref()
            .and_then(Value::as_object)
            .expect("object");
        assert!(
            members["bytes_in"].as_u64().unwrap_or(0) > 10_000,
            "{}",
            done.body
        );
        assert_eq!(
            members["clientid"]
                .as_u64()
                .map(|id| id.to_string())
                .as_deref(),
            Some(publish.clientid())
        );
    }
    // Every request was JSON, RTMP's on_update included.
    let records = hook.records();
    assert!(
        records.iter().any(|r| r.call() == "update"),
        "no on_update\n{}",
        hook.dump()
    );
    for r in records {
        assert_json_types(&r);
    }
}
