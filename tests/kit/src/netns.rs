//! A test network of network namespaces (needs root, as CI runs): a bridge in a namespace of
//! its own, the test's side (the root namespace) on it at `10.R.S.1`, and one namespace per
//! server at `10.R.S.(10 + i)`, so servers reach each other and the test over real network
//! paths, each at its own address. Removed on drop.

use std::net::{IpAddr, Ipv4Addr};
use std::process::{Command, Stdio};

/// Runs `ip` with `args`; true when it succeeded.
fn ip(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// One test network.
pub struct Lan {
    tag: String,
    subnet: [u8; 3],
    namespaces: Vec<String>,
    host_link: String,
}

impl Lan {
    /// A new network, or `None` where namespaces cannot be made (not root, no `ip`).
    pub fn new() -> Option<Lan> {
        let pid = std::process::id();
        let n = crate::util::UNIQUE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tag = format!("{}{}", pid % 100_000, n % 100);
        let subnet = [10, 200 + (pid % 50) as u8, (n % 250) as u8];
        let switch = format!("sgsw{tag}");
        let host_link = format!("sgh{tag}");
        let mut lan = Lan {
            tag,
            subnet,
            namespaces: Vec::new(),
            host_link: host_link.clone(),
        };
        if !ip(&["netns", "add", &switch]) {
            return None;
        }
        lan.namespaces.push(switch.clone());
        let host = lan.host_ip().to_string();
        let ok = ip(&["-n", &switch, "link", "add", "br0", "type", "bridge"])
            && ip(&["-n", &switch, "link", "set", "br0", "up"])
            && ip(&[
                "link", "add", &host_link, "type", "veth", "peer", "name", "h0", "netns", &switch,
            ])
            && ip(&["-n", &switch, "link", "set", "h0", "master", "br0", "up"])
            && ip(&["addr", "add", &format!("{host}/24"), "dev", &host_link])
            && ip(&["link", "set", &host_link, "up"]);
        ok.then_some(lan)
    }

    /// The test's own address on the network.
    pub fn host_ip(&self) -> IpAddr {
        let [a, b, c] = self.subnet;
        Ipv4Addr::new(a, b, c, 1).into()
    }

    /// A namespace on the network for server `i` (0..200): its name and address.
    pub fn node(&mut self, i: u8) -> (String, IpAddr) {
        let [a, b, c] = self.subnet;
        let addr = Ipv4Addr::new(a, b, c, 10 + i);
        let ns = format!("sgn{}-{i}", self.tag);
        let switch = self.namespaces[0].clone();
        let port = format!("n{i}");
        assert!(ip(&["netns", "add", &ns]), "ip netns add {ns}");
        self.namespaces.push(ns.clone());
        let ok = ip(&[
            "-n", &switch, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns",
            &ns,
        ]) && ip(&["-n", &switch, "link", "set", &port, "master", "br0", "up"])
            && ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{addr}/24"),
                "dev",
                "eth0",
            ])
            && ip(&["-n", &ns, "link", "set", "eth0", "up"])
            && ip(&["-n", &ns, "link", "set", "lo", "up"]);
        assert!(ok, "the link of namespace {ns}");
        (ns, addr.into())
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        ip(&["link", "del", &self.host_link]);
        for ns in self.namespaces.iter().rev() {
            ip(&["netns", "del", ns]);
        }
    }
}
