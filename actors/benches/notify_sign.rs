//! The per-call cost of HTTP Notify's signature and of JSON bodies
//! (`actors/src/notify.rs`): `cargo bench -p streamgate-actors --bench notify_sign`
//! (docs/benchmarks.md, "HTTP Notify: signing and JSON bodies"). Prints microseconds per call
//! for a realistic `on_play` and `on_done`, and what reading the reloadable hook table costs a
//! call; asserts nothing about time.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use hyper::header::HeaderValue;
use streamgate_actors::notify::{Call, HookTable, Hooks, NotifyFields, Signer};
use streamgate_actors::session::{Protocol, SessionInfo};
use streamgate_actors::usage::{EndReason, UsageReport, Used};

const CALLS: u32 = 1_000_000;

/// Runs `f` [`CALLS`] times (after a tenth as many to warm up); microseconds per call.
fn per_call(mut f: impl FnMut() -> usize) -> f64 {
    let mut sink = 0usize;
    for _ in 0..CALLS / 10 {
        sink = sink.wrapping_add(f());
    }
    let started = Instant::now();
    for _ in 0..CALLS {
        sink = sink.wrapping_add(f());
    }
    let elapsed = started.elapsed();
    black_box(sink);
    elapsed.as_secs_f64() * 1e6 / f64::from(CALLS)
}

fn main() {
    let info = SessionInfo {
        protocol: Protocol::Rtmp,
        clientid: 1_830_470_400_000_123,
        addr: IpAddr::V4(Ipv4Addr::new(203, 0, 113, 77)),
        app: "live".into(),
        url: "rtmp://edge-1.example.com:1935/live/cam1?token=0f8e7d6c5b4a39281706f5e4d3c2b1a0"
            .into(),
        name: "cam1".into(),
        tcurl: "rtmp://edge-1.example.com:1935/live".into(),
    };
    let usage = UsageReport {
        used: Used {
            start: 1_787_568_000_512,
            duration_ms: 61_234,
            bytes_in: 3_912,
            bytes_out: 4_718_093,
        },
        reason: EndReason::StreamEnded,
    };
    let signer = Signer::new(b"b6f0d7c1e2a94f3c8d5e6a7b8c9d0e1f", Some("k1".into()));
    let play = NotifyFields::new(Call::Play, &info, "edge-1");
    let done = NotifyFields::new(Call::Done, &info, "edge-1").with_usage(usage);

    println!("call     body bytes (form/json)  form µs  json µs  sign form µs  sign json µs");
    for (name, fields) in [("on_play", &play), ("on_done", &done)] {
        let form = fields.encode().into_bytes();
        let json = fields.json();
        let encode_form = per_call(|| black_box(fields).encode().len());
        let encode_json = per_call(|| black_box(fields).json().len());
        // What signing adds to building one request: the clock, the HMAC over `t.` + body,
        // the hex and the header value, as build_request does it.
        let sign = |body: &[u8]| {
            per_call(|| {
                let t = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                let header = signer.header(t, black_box(body));
                HeaderValue::try_from(header).map_or(0, |v| v.len())
            })
        };
        let sign_form = sign(&form);
        let sign_json = sign(&json);
        println!(
            "{name:<8} {:>4} / {:<4}             {encode_form:>7.3}  {encode_json:>7.3}  \
             {sign_form:>12.3}  {sign_json:>12.3}",
            form.len(),
            json.len()
        );
    }

    // Every hook call (and every session's start) reads the table in force from the shared
    // `Hooks` a reload swaps.
    let hooks = Hooks::new(HookTable {
        node: "edge-1".into(),
        ..HookTable::default()
    });
    let load = per_call(|| {
        black_box(&hooks)
            .load()
            .get(Protocol::Rtmp)
            .update_interval
            .as_millis() as usize
    });
    println!(
        "reading the hook table in force (Hooks::load): {:.1} ns per call",
        load * 1000.0
    );
}
