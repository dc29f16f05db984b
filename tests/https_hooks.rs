//! `https://` hooks against a real TLS business server: a test CA and a server certificate made
//! with the `openssl` command, Python's HTTPS server, the real binary and ffmpeg.

use std::process::Command;
use std::time::Duration;

use streamgate_testkit::*;

/// A CA and a certificate for 127.0.0.1 signed by it, in `dir`.
fn make_certificates(dir: &TempDir) {
    let d = |name: &str| dir.file(name).to_string_lossy().into_owned();
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let steps: Vec<Vec<String>> = vec![
        [
            &["req", "-x509"][..],
            &ec[..],
            &["-days", "2", "-subj", "/CN=streamgate test CA"],
        ]
        .concat()
        .iter()
        .map(|s| s.to_string())
        .chain(["-keyout".into(), d("ca.key"), "-out".into(), d("ca.pem")])
        .collect(),
        [&["req"][..], &ec[..], &["-subj", "/CN=127.0.0.1"]]
            .concat()
            .iter()
            .map(|s| s.to_string())
            .chain([
                "-keyout".into(),
                d("leaf.key"),
                "-out".into(),
                d("leaf.csr"),
            ])
            .collect(),
        vec![
            "x509".into(),
            "-req".into(),
            "-in".into(),
            d("leaf.csr"),
            "-CA".into(),
            d("ca.pem"),
            "-CAkey".into(),
            d("ca.key"),
            "-CAcreateserial".into(),
            "-days".into(),
            "2".into(),
            "-extfile".into(),
            d("ext.cnf"),
            "-out".into(),
            d("leaf.pem"),
        ],
    ];
    std::fs::write(
        dir.file("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .expect("write ext.cnf");
    for args in steps {
        let out = run("openssl", Command::new("openssl").args(&args), secs(20.0));
        assert!(out.success(), "openssl {args:?} failed: {}", out.text());
    }
}

struct TlsHooks {
    proc: Proc,
    port: u16,
}

impl TlsHooks {
    fn start(dir: &TempDir) -> TlsHooks {
        let port = free_port();
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/https_hook_server.py");
        let proc = Proc::spawn(
            "https-hooks",
            Command::new("python3")
                .arg(script)
                .arg(port.to_string())
                .arg(dir.file("leaf.pem"))
                .arg(dir.file("leaf.key")),
        );
        let hooks = TlsHooks { proc, port };
        let ready = poll(secs(10.0), || {
            hooks.proc.stdout().contains("ready").then_some(())
        });
        assert!(
            ready.is_some(),
            "https hook server did not start: {}",
            hooks.proc.stderr()
        );
        hooks
    }

    fn base(&self) -> String {
        format!("https://127.0.0.1:{}/rtmp", self.port)
    }

    /// The recorded requests, as the JSON lines the server printed.
    fn lines(&self) -> Vec<String> {
        self.proc
            .stdout()
            .lines()
            .filter(|l| l.starts_with('{'))
            .map(str::to_owned)
            .collect()
    }
}

#[test]
fn https_hooks_allow_and_deny_with_a_trusted_ca() {
    let dir = TempDir::new("tls");
    make_certificates(&dir);
    let hooks = TlsHooks::start(&dir);
    let ca = dir.file("ca.pem").to_string_lossy().into_owned();
    let srv = Server::start(
        &Config::new()
            .hooks(&hooks.base(), "")
            .env("SSL_CERT_FILE", &ca),
    );

    let mut publisher = publish(&srv.url("live/cam1?token=abc"), 12);
    let (frames, err) = poll(secs(15.0), || {
        let (n, e) = read_frames(&srv.url("live/cam1"), 1.0, secs(10.0));
        (n > 0).then_some((n, e))
    })
    .unwrap_or((0, String::new()));
    assert!(
        frames > 0,
        "no frames through https-allowed hooks: {err}\n{}",
        srv.log_tail(30)
    );
    let lines = hooks.lines();
    let publish_line = lines
        .iter()
        .find(|l| l.contains("\"call\": \"publish\""))
        .unwrap_or_else(|| panic!("no on_publish over https: {lines:?}"));
    assert!(
        publish_line.contains("\"path\": \"/rtmp/publish\""),
        "{publish_line}"
    );
    assert!(publish_line.contains(FORM), "{publish_line}");
    assert!(
        publish_line.contains(&format!("\"url\": \"{}\"", srv.url("live/cam1?token=abc"))),
        "{publish_line}"
    );

    // The business server's 403 over TLS refuses.
    let mut private = publish(&srv.url("live/private_x"), 5);
    let status = private.wait_timeout(secs(15.0));
    assert!(
        status.is_some_and(|s| !s.success()),
        "a publish the https hook refused went through: {status:?}"
    );
    publisher.kill();
}

#[test]
fn https_hook_with_an_untrusted_certificate_refuses() {
    let dir = TempDir::new("tls-untrusted");
    make_certificates(&dir);
    let hooks = TlsHooks::start(&dir);
    // No SSL_CERT_FILE: the test CA is not trusted, so the TLS handshake fails and the
    // session is refused (fail closed), well before the 5 s timeout.
    let srv = Server::start(&Config::new().hooks(&hooks.base(), ""));
    let mut publisher = publish(&srv.url("live/cam1"), 5);
    let status = publisher.wait_timeout(secs(15.0));
    assert!(
        status.is_some_and(|s| !s.success()),
        "publish went through an untrusted https hook: {status:?}"
    );
    let log = poll(Duration::from_secs(5), || {
        let log = srv.log();
        log.contains("certificate").then_some(log)
    });
    assert!(
        log.is_some(),
        "the refusal does not name the certificate problem:\n{}",
        srv.log_tail(20)
    );
    assert!(
        hooks.lines().is_empty(),
        "a request reached the server over a failed handshake"
    );
}
