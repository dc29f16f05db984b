//! The per-answer cost of reading a hook's redirect: the stream a `3xx`'s `Location` names
//! (`actors/src/names.rs`), for a bare name, a path and a full URL with escapes, query and
//! fragment: `cargo bench --bench location` (docs/benchmarks.md, "Rename by redirect").
//! Prints nanoseconds per `Location`; asserts nothing about time.

use std::hint::black_box;
use std::time::Instant;

use streamgate_actors::names::StreamTarget;

const CALLS: u32 = 2_000_000;

fn main() {
    for location in [
        "alice",
        "/live/alice",
        "rtmp://edge.example:1935/live/caf%C3%A9?token=x#y",
    ] {
        let started = Instant::now();
        for _ in 0..CALLS {
            let target = StreamTarget::from_location(black_box(location.as_bytes()));
            black_box(target.expect("a usable Location"));
        }
        let ns = started.elapsed().as_nanos() as f64 / f64::from(CALLS);
        println!("{location}: {ns:.0} ns per Location");
    }
}
