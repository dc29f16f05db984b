//! Replays the fuzz corpora and crash reproducers on the stable toolchain: every file under
//! `fuzz/corpus/NAME/` and `fuzz/regressions/NAME/` goes through `streamgate::fuzzing::NAME`,
//! the same function the fuzz target `NAME` runs under libFuzzer. So a parser change that
//! breaks on an input the fuzzer once found, or on a captured real client, fails `cargo test`
//! without nightly or libFuzzer.

use std::path::{Path, PathBuf};

use streamgate::fuzzing;

/// The files of `fuzz/<kind>/<target>/`, sorted; none when the directory does not exist.
fn inputs(kind: &str, target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz")
        .join(kind)
        .join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// Runs every corpus file and reproducer of `target` through `body`; fails naming each file
/// that panicked. Returns how many files ran.
fn replay(target: &str, body: fn(&[u8])) -> usize {
    let files: Vec<PathBuf> = ["corpus", "regressions"]
        .iter()
        .flat_map(|kind| inputs(kind, target))
        .collect();
    let failed: Vec<String> = files
        .iter()
        .filter(|path| {
            let data = std::fs::read(path).expect("readable input");
            std::panic::catch_unwind(|| body(&data)).is_err()
        })
        .map(|path| path.display().to_string())
        .collect();
    assert!(failed.is_empty(), "{target}: panicked on {failed:#?}");
    files.len()
}

macro_rules! targets {
    ($($name:ident),* $(,)?) => {
        /// Every target, by name.
        const TARGETS: &[&str] = &[$(stringify!($name)),*];

        $(
            #[test]
            fn $name() {
                let n = replay(stringify!($name), fuzzing::$name);
                assert!(n > 0, "no corpus for {}", stringify!($name));
            }
        )*
    };
}

targets!(
    rtmp_handshake,
    rtmp_session,
    rtmp_chunks,
    rtmp_client,
    amf0,
    rtmp_chunk_roundtrip,
    flv_tag,
    codec_config,
    http_request,
    rtsp_session,
    rtsp_message,
    sdp,
    rtp_depacketize,
    rtp_av1,
    rtcp,
    rtp_roundtrip,
    rtp_packetize,
    ts_mux,
    ts_demux,
    ts_roundtrip,
    srt_streamid,
    srt_packet,
    config_xml,
    hook_answer,
    hls_request,
);

/// A fuzz target added without a replay here would go unchecked on stable.
#[test]
fn every_fuzz_target_is_replayed() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/fuzz_targets");
    let mut found: Vec<String> = std::fs::read_dir(dir)
        .expect("fuzz/fuzz_targets")
        .map(|e| e.expect("directory entry").path())
        .filter_map(|p| Some(p.file_stem()?.to_str()?.to_owned()))
        .collect();
    found.sort();
    let mut listed: Vec<String> = TARGETS.iter().map(|s| s.to_string()).collect();
    listed.sort();
    assert_eq!(found, listed);
}
