//! What the outbox's store costs per session: the write of an allowed session (`Begin`), of a
//! usage checkpoint and of an `on_done` (`Done`: the session's row replaced by an event), and of
//! the delete once it is delivered, in microseconds per operation, committed one at a time
//! (each its own transaction and fsync, a quiet server) and in batches as the writer's group
//! commit takes them under load. On the disk of the working directory (`TMPDIR` to move it).
//!
//!   cargo bench -p streamgate-actors --bench outbox

use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

use streamgate_actors::outbox::{Op, Store};
use streamgate_actors::session::{Protocol, SessionInfo};
use streamgate_actors::usage::{EndReason, UsageReport, Used};

fn info(clientid: u64) -> SessionInfo {
    SessionInfo {
        protocol: Protocol::Rtmp,
        clientid,
        addr: IpAddr::V4(Ipv4Addr::new(192, 168, 1, 100)),
        app: "live".into(),
        url: format!("rtmp://edge.example.com:1935/live/camera-{clientid}?token=abcdef0123456789"),
        name: format!("camera-{clientid}"),
        tcurl: "rtmp://edge.example.com:1935/live".into(),
    }
}

fn used(ms: u64) -> Used {
    Used {
        start: 1_790_000_000_000,
        duration_ms: ms,
        bytes_in: ms * 300,
        bytes_out: ms * 250_000,
    }
}

/// Runs `n` operations made by `op(i)` in batches of `batch`; microseconds per operation.
fn per_op(store: &mut Store, n: u64, batch: u64, op: impl Fn(u64) -> Op) -> f64 {
    let started = Instant::now();
    let mut i = 0;
    while i < n {
        let ops: Vec<Op> = (i..(i + batch).min(n)).map(&op).collect();
        store.apply(&ops).expect("apply");
        i += batch;
    }
    started.elapsed().as_secs_f64() * 1e6 / n as f64
}

fn main() {
    let dir = std::env::temp_dir().join(format!("streamgate-outbox-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut store = Store::open(&dir, 10_000_000).expect("open");
    store.recover().expect("recover");
    println!("batch  begin_us  checkpoint_us  done_us  delivered_us");
    let mut base = 0u64;
    for (batch, n) in [(1u64, 300u64), (10, 2000), (100, 10_000), (1000, 20_000)] {
        let begin = per_op(&mut store, n, batch, |i| Op::Begin {
            info: info(base + i),
            used: used(0),
        });
        let checkpoint = per_op(&mut store, n, batch, |i| Op::Checkpoint {
            clientid: base + i,
            used: used(30_000),
        });
        let done = per_op(&mut store, n, batch, |i| Op::Done {
            info: info(base + i),
            usage: UsageReport {
                used: used(61_000),
                reason: EndReason::Closed,
            },
        });
        // The events' ids: the store's AUTOINCREMENT continues from the last one.
        let ids = store.recover().expect("recover");
        let ids: Vec<i64> = ids.iter().map(|e| e.id).collect();
        let delivered = per_op(&mut store, ids.len() as u64, batch, |i| Op::Delivered {
            id: ids[i as usize],
        });
        println!("{batch:>5}  {begin:>8.1}  {checkpoint:>13.1}  {done:>7.1}  {delivered:>12.1}");
        base += n;
    }
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}
