//! Small things every test uses: free ports, polling, temp dirs kept when a test fails, a
//! deterministic byte generator, the binaries cargo built, and files of the repository.

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A port nobody listens on right now, for TCP and UDP alike.
///
/// Taken from below the kernel's ephemeral range (`ip_local_port_range`, 32768 and up by
/// default), never from it: the kernel hands ephemeral ports to binds to port 0 and to the
/// source side of every outgoing connection, so a port picked there could be taken by another
/// test's client (an FFmpeg, a hook call, a Redis connection) between this pick and the
/// server's bind, and the server would fail to start. Each call of a test process moves on to
/// the next port, so two servers started at once do not get the same one.
pub fn free_port() -> u16 {
    static NEXT: AtomicUsize = AtomicUsize::new(usize::MAX);
    const LOW: usize = 10_000;
    let high = ephemeral_low().unwrap_or(32_768);
    if high <= LOW + 1000 {
        // An unusual ephemeral range: let the kernel pick (the old way).
        let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        return l.local_addr().expect("local_addr").port();
    }
    let span = high - LOW;
    // Test processes run one after another; a start that differs per process keeps a port a
    // lingering server of the process before still holds out of the first tries.
    let seed = std::process::id() as usize * 7919
        + SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos() as usize);
    let _ = NEXT.compare_exchange(
        usize::MAX,
        seed % span,
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
    for _ in 0..span {
        let port = (LOW + NEXT.fetch_add(1, Ordering::Relaxed) % span) as u16;
        let tcp = TcpListener::bind(("127.0.0.1", port)).is_ok();
        if tcp && std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {LOW}..{high}");
}

/// The first port of the kernel's ephemeral range.
fn ephemeral_low() -> Option<usize> {
    fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Seconds as a `Duration` (readability).
pub fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

/// Polls `f` every 20 ms until it returns `Some` or `timeout` passes.
pub fn poll<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let end = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= end {
            return None;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

// ------------------------------------------------------------------------------------------
// temp dirs

pub(crate) static UNIQUE: AtomicUsize = AtomicUsize::new(0);

/// A directory removed on drop (kept when the test panics, so its files can be read).
pub struct TempDir {
    pub path: PathBuf,
}

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path = std::env::temp_dir().join(format!(
            "streamgate-e2e-{tag}-{}-{}-{nanos}",
            std::process::id(),
            UNIQUE.fetch_add(1, Ordering::SeqCst)
        ));
        fs::create_dir_all(&path).expect("create temp dir");
        TempDir { path }
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!("(kept {} for inspection)", self.path.display());
        } else {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

/// A small xorshift generator for garbage bytes (deterministic per seed).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| (self.next_u64() >> 24) as u8).collect()
    }
}

/// Whether the text names line `line` ("line 7", "line: 7", "7:" after a file name, ":7:", ...).
pub fn mentions_line(text: &str, line: usize) -> bool {
    let lower = text.to_lowercase();
    let b = lower.as_bytes();
    let n = line.to_string();
    for (i, _) in lower.match_indices(&n) {
        let before = if i > 0 { Some(b[i - 1]) } else { None };
        let after = b.get(i + n.len()).copied();
        if before.is_some_and(|c| c.is_ascii_digit()) || after.is_some_and(|c| c.is_ascii_digit()) {
            continue;
        }
        let ctx_start = i.saturating_sub(10);
        let ctx = &b[ctx_start..i];
        let ctx = String::from_utf8_lossy(ctx);
        if ctx.contains("line") || (before == Some(b':') && after == Some(b':')) {
            return true;
        }
    }
    false
}

/// The 1-based line of the first occurrence of `needle` in `text`.
pub fn line_of(text: &str, needle: &str) -> usize {
    let at = text
        .find(needle)
        .unwrap_or_else(|| panic!("{needle:?} not in text"));
    text[..at].matches('\n').count() + 1
}

/// Absolute path of a file of the repository.
pub fn repo_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(rel)
}

/// The binary `name` cargo built for the running test: it sits beside the `deps/` folder the
/// test binary runs from (cargo builds a package's binaries before running its integration
/// tests, so a test reaches the binaries of its own package this way; `env!` cannot, in a
/// library).
pub fn cargo_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let dir = exe
        .parent()
        .map(|deps| {
            if deps.ends_with("deps") {
                deps.parent().unwrap_or(deps)
            } else {
                deps
            }
        })
        .expect("the test binary's folder");
    let bin = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.exists(),
        "{} is missing: build it (it is built before the tests of its own package)",
        bin.display()
    );
    bin
}
