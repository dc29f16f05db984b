//! A real Redis (Debian's `redis-server`) for one test: its own port and directory, no
//! persistence, stopped and started again on the same port for outage tests, killed on drop.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::util::{free_port, poll, TempDir};

/// A `redis-server` the test started.
pub struct Redis {
    /// Its port.
    pub port: u16,
    /// Its address (127.0.0.1 unless [`Redis::start_on`] said another).
    pub ip: std::net::IpAddr,
    dir: TempDir,
    child: Option<Child>,
}

impl Redis {
    /// Starts `redis-server` on a free port and waits until it answers `PING`.
    pub fn start() -> Redis {
        Redis::start_on(std::net::Ipv4Addr::LOCALHOST.into())
    }

    /// [`Redis::start`] on `ip` (an address of a test network).
    pub fn start_on(ip: std::net::IpAddr) -> Redis {
        let mut redis = Redis {
            ip,
            port: free_port(),
            dir: TempDir::new("redis"),
            child: None,
        };
        redis.up();
        redis
    }

    /// `redis://<ip>:<port>/0`.
    pub fn url(&self) -> String {
        format!("redis://{}/0", SocketAddr::new(self.ip, self.port))
    }

    /// Starts it (again, on the same port, empty) and waits until it answers.
    pub fn up(&mut self) {
        assert!(self.child.is_none(), "redis is already running");
        let log = std::fs::File::create(self.dir.file("redis.log")).expect("redis log");
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", &self.ip.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            // Servers in other network namespaces connect from addresses of a test network.
            .args(["--protected-mode", "no"])
            .arg("--dir")
            .arg(self.dir.file(""))
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server (Debian's redis-server package; tests/run.sh installs it)");
        self.child = Some(child);
        poll(Duration::from_secs(10), || self.ping().then_some(()))
            .unwrap_or_else(|| panic!("redis-server did not answer on {}", self.port));
    }

    /// Kills it (SIGKILL: an outage, not a shutdown).
    pub fn down(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Whether it answers `PING`.
    pub fn ping(&self) -> bool {
        self.command("PING").is_some_and(|a| a.starts_with("+PONG"))
    }

    /// Sends one inline command; its raw answer.
    pub fn command(&self, line: &str) -> Option<String> {
        let addr = SocketAddr::new(self.ip, self.port);
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(300)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        s.write_all(format!("{line}\r\n").as_bytes()).ok()?;
        let mut buf = [0u8; 65536];
        let n = s.read(&mut buf).ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).into_owned())
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.down();
    }
}
