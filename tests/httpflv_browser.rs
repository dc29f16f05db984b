//! A real browser plays a live stream over HTTP-FLV.
//!
//! ffmpeg publishes the synthetic 640x360 stream over RTMP; headless Chromium (Debian's
//! `chromium`) loads `tests/browser/player.html` from the kit's page server, and the
//! page plays `http://127.0.0.1:PORT/live/cam1.flv` from streamgate (in process) with mpegts.js (installed in
//! `tests/browser/node_modules` by `tests/run.sh`). The page is on another origin than the
//! stream, so CORS is exercised too. It reports what its `<video>` element does to the test's
//! server (`GET /report?...` every 250 ms, and on every event); the test asserts that
//! `currentTime` advances by at least a second and that `videoWidth`x`videoHeight` is the
//! source's, with no error on the way.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::thread;
use std::time::{Duration, Instant};
use streamgate_testkit::browser::{encode_component, Browser, PageServer, Report};
use streamgate_testkit::*;

/// The size of [`TESTSRC`].
const WIDTH: u32 = 640;
const HEIGHT: u32 = 360;

/// How far `currentTime` must advance across the reports.
const MIN_ADVANCE_S: f64 = 1.0;

/// Report kinds that mean the page saw something go wrong.
const ERROR_KINDS: &[&str] = &[
    "fatal",
    "js-error",
    "mpegts-error",
    "video-error",
    "play-rejected",
];

/// A `state` report showing the source's size.
fn has_source_size(r: &Report) -> bool {
    r.kind() == "state"
        && r.num("videoWidth") == Some(f64::from(WIDTH))
        && r.num("videoHeight") == Some(f64::from(HEIGHT))
}

// ------------------------------------------------------------------------------------------
// the stream

/// One plain `GET` of the HTTP-FLV URL (as a player would, from another origin): the response
/// head and the first body bytes, read for up to 5 s, then the connection is closed.
fn probe_flv(port: u16, path: &str) -> Result<(String, Vec<u8>), String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nOrigin: http://127.0.0.1\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes())
        .map_err(|e| format!("write: {e}"))?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            // The FLV header (9 bytes) and its PreviousTagSize0 (4 bytes).
            if buf.len() >= p + 4 + 13 || !buf.starts_with(b"HTTP/1.1 200") {
                let head = String::from_utf8_lossy(&buf[..p]).to_string();
                let body = buf[p + 4..].to_vec();
                let _ = s.shutdown(Shutdown::Both);
                return Ok((head, body));
            }
        }
        if Instant::now() >= end {
            return Err(format!(
                "no complete answer within 5 s; got {} bytes: {:?}",
                buf.len(),
                String::from_utf8_lossy(&buf[..buf.len().min(512)])
            ));
        }
        match s.read(&mut chunk) {
            Ok(0) => {
                return Err(format!(
                    "closed after {} bytes: {:?}",
                    buf.len(),
                    String::from_utf8_lossy(&buf[..buf.len().min(512)])
                ))
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(format!("read: {e} after {} bytes", buf.len())),
        }
    }
}

/// What the wait for success saw.
enum Outcome {
    /// `currentTime` went from `from` to `to` on reports showing the source size.
    Played {
        from: f64,
        to: f64,
    },
    /// The page reported an error.
    Error(Report),
    /// Chromium exited by itself.
    BrowserExited,
    TimedOut,
}

/// Watches the reports until playback at the source size has advanced by `MIN_ADVANCE_S`.
fn watch(page: &PageServer, browser: &mut Browser, timeout: Duration) -> Outcome {
    let end = Instant::now() + timeout;
    loop {
        let reports = page.reports();
        if let Some(r) = reports.iter().find(|r| ERROR_KINDS.contains(&r.kind())) {
            return Outcome::Error(r.clone());
        }
        let mut lowest: Option<f64> = None;
        for r in reports.iter().filter(|r| has_source_size(r)) {
            let Some(t) = r.num("currentTime") else {
                continue;
            };
            if let Some(from) = lowest {
                if t - from >= MIN_ADVANCE_S {
                    return Outcome::Played { from, to: t };
                }
            }
            lowest = Some(lowest.map_or(t, |l| l.min(t)));
        }
        if !browser.running() {
            return Outcome::BrowserExited;
        }
        if Instant::now() >= end {
            return Outcome::TimedOut;
        }
        thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn chromium_plays_live_httpflv_with_mpegts_js() {
    let mpegts = repo_file("tests/browser/node_modules/mpegts.js/dist/mpegts.js");
    assert!(
        mpegts.is_file(),
        "{} is missing: run `bash tests/run.sh` (it runs npm in tests/browser)",
        mpegts.display()
    );

    let page = PageServer::start(&[("/mpegts.js", "node_modules/mpegts.js/dist/mpegts.js")]);
    let srv = InProcess::start(&Config::new().httpflv());
    let flv_port = srv.httpflv_port.expect("HTTP-FLV port");
    let flv_url = srv.flv_url("live/cam1.flv");
    let mut publisher = publish(&srv.url("live/cam1"), 60);

    // Open the page only once the stream is live, so that the browser's first request finds it.
    let mut last_probe = String::new();
    let live = poll(Duration::from_secs(20), || {
        match probe_flv(flv_port, "/live/cam1.flv") {
            Ok((head, body)) => {
                last_probe = format!("{head}\r\n\r\n(body starts {:02x?})", &body);
                (head.starts_with("HTTP/1.1 200") && body.starts_with(b"FLV")).then_some(())
            }
            Err(e) => {
                last_probe = e;
                None
            }
        }
    });
    assert!(
        live.is_some(),
        "GET {flv_url} did not answer 200 with an FLV body within 20 s of the publish; \
         last answer:\n{last_probe}\n---- publisher stderr ----\n{}",
        publisher.stderr()
    );

    let page_url = page.url(&format!("/player.html?src={}", encode_component(&flv_url)));
    let started = Instant::now();
    let mut browser = Browser::open(&page_url);
    let outcome = watch(&page, &mut browser, Duration::from_secs(45));
    let elapsed = started.elapsed();
    browser.kill();
    let publisher_running = publisher.running();

    let context = || {
        format!(
            "page {page_url}\nfirst probe of the stream answered:\n{last_probe}\n\
             publisher running: {publisher_running}; its stderr:\n{}\n{}\
             ---- chromium stderr ----\n{}\n---- end of chromium stderr ----",
            publisher.stderr(),
            page.dump(),
            browser.stderr()
        )
    };
    match outcome {
        Outcome::Played { from, to } => {
            eprintln!(
                "chromium played {flv_url}: currentTime {from:.3} -> {to:.3} at {WIDTH}x{HEIGHT} \
                 within {:.1} s of opening the page",
                elapsed.as_secs_f64()
            );
        }
        Outcome::Error(r) => panic!(
            "the page reported an error ({}: {:?})\n{}",
            r.kind(),
            r.get("error"),
            context()
        ),
        Outcome::BrowserExited => panic!("chromium exited by itself\n{}", context()),
        Outcome::TimedOut => panic!(
            "within {:.0} s, no reports showed currentTime advancing by {MIN_ADVANCE_S} s at \
             {WIDTH}x{HEIGHT}\n{}",
            elapsed.as_secs_f64(),
            context()
        ),
    }
}
