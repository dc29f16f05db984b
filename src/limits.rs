//! Connection limits of one protocol section: `<max_connections>` in all and
//! `<max_connections_per_ip>` from one client address.
//!
//! A listener asks [`ConnectionLimits::admit`] for every accepted connection before its session
//! starts, so a refused client costs no hook call and no session. The [`Admission`] it gets
//! travels with the session and gives the place back when the session is dropped. Refusals are
//! counted and logged at most once a second per section, so a flood cannot fill the log. This
//! module must not know any protocol: each listener answers a refusal in its own words.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How often, at most, refusals of one section are logged.
const REPORT_EVERY: Duration = Duration::from_secs(1);

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The section has `<max_connections>` connections.
    Total,
    /// The client's address has `<max_connections_per_ip>` connections.
    PerIp,
}

#[derive(Debug, Default)]
struct State {
    /// `<max_connections>`.
    max: usize,
    /// `<max_connections_per_ip>`; 0: no limit per address.
    per_ip: usize,
    total: usize,
    by_ip: HashMap<IpAddr, usize>,
    last_report: Option<Instant>,
    unreported: u64,
}

/// The limits of one section and the connections it holds now.
#[derive(Debug)]
pub struct ConnectionLimits {
    protocol: &'static str,
    state: Mutex<State>,
    refused: AtomicU64,
}

impl ConnectionLimits {
    /// Limits for `protocol`: at most `max` connections, and `per_ip` from one address (0 for
    /// no per-address limit).
    pub fn new(protocol: &'static str, max: usize, per_ip: usize) -> Arc<Self> {
        Arc::new(ConnectionLimits {
            protocol,
            state: Mutex::new(State {
                max,
                per_ip,
                ..State::default()
            }),
            refused: AtomicU64::new(0),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // The state stays consistent whatever panicked while holding it: every change is one
        // counter update.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes a place for a connection from `ip`, or says why there is none (and counts and,
    /// at most once a second, logs the refusal).
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Admission, Refused> {
        let mut state = self.state();
        let from_ip = state.by_ip.get(&ip).copied().unwrap_or(0);
        let refused = if state.total >= state.max {
            Refused::Total
        } else if state.per_ip > 0 && from_ip >= state.per_ip {
            Refused::PerIp
        } else {
            state.total += 1;
            *state.by_ip.entry(ip).or_insert(0) += 1;
            return Ok(Admission {
                limits: Arc::clone(self),
                ip,
            });
        };
        self.refused.fetch_add(1, Ordering::Relaxed);
        state.unreported += 1;
        let now = Instant::now();
        if state
            .last_report
            .is_none_or(|at| now.duration_since(at) >= REPORT_EVERY)
        {
            let (limit, value) = match refused {
                Refused::Total => ("max_connections", state.max),
                Refused::PerIp => ("max_connections_per_ip", state.per_ip),
            };
            tracing::warn!(
                protocol = self.protocol,
                %ip,
                limit,
                value,
                refused = state.unreported,
                total_refused = self.refused(),
                "connection refused: limit reached (count since the last report)"
            );
            state.last_report = Some(now);
            state.unreported = 0;
        }
        Err(refused)
    }

    /// New limits (a reload): connections held now keep their places, even past a lower
    /// limit; new ones are admitted against the new limits.
    pub fn set(&self, max: usize, per_ip: usize) {
        let mut state = self.state();
        state.max = max;
        state.per_ip = per_ip;
    }

    /// Connections refused since start.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Connections held now.
    pub fn open(&self) -> usize {
        self.state().total
    }

    fn release(&self, ip: IpAddr) {
        let mut state = self.state();
        state.total = state.total.saturating_sub(1);
        if let Some(n) = state.by_ip.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                state.by_ip.remove(&ip);
            }
        }
    }
}

/// One connection's place within its section's limits, given back when dropped.
#[derive(Debug)]
pub struct Admission {
    limits: Arc<ConnectionLimits>,
    ip: IpAddr,
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.limits.release(self.ip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn ip(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, last))
    }

    #[test]
    fn total_and_per_address_limits_hold_and_places_come_back() {
        let limits = ConnectionLimits::new("rtmp", 3, 2);
        let a1 = limits.admit(ip(1)).expect("first from .1");
        let a2 = limits.admit(ip(1)).expect("second from .1");
        assert_eq!(limits.admit(ip(1)).expect_err("refused"), Refused::PerIp);
        let b1 = limits.admit(ip(2)).expect("first from .2");
        assert_eq!(limits.admit(ip(3)).expect_err("refused"), Refused::Total);
        assert_eq!(limits.refused(), 2);
        assert_eq!(limits.open(), 3);
        drop(a1);
        let a3 = limits.admit(ip(1)).expect("a place from .1 came back");
        drop((a2, a3, b1));
        assert_eq!(limits.open(), 0);
        assert!(limits.state().by_ip.is_empty(), "no address is remembered");
    }

    #[test]
    fn zero_per_address_means_no_per_address_limit() {
        let limits = ConnectionLimits::new("srt", 4, 0);
        let held: Vec<_> = (0..4)
            .map(|_| limits.admit(ip(9)).expect("admitted"))
            .collect();
        assert_eq!(limits.admit(ip(9)).expect_err("refused"), Refused::Total);
        drop(held);
    }

    #[test]
    fn new_limits_apply_to_new_connections_and_keep_the_held_ones() {
        let limits = ConnectionLimits::new("rtmp", 2, 0);
        let held: Vec<_> = (0..2)
            .map(|_| limits.admit(ip(1)).expect("admitted"))
            .collect();
        limits.set(1, 0);
        assert_eq!(limits.open(), 2, "a lower limit ends no connection");
        assert_eq!(limits.admit(ip(2)).expect_err("refused"), Refused::Total);
        drop(held);
        let one = limits.admit(ip(2)).expect("below the new limit");
        assert_eq!(limits.admit(ip(3)).expect_err("refused"), Refused::Total);
        limits.set(5, 1);
        assert_eq!(limits.admit(ip(2)).expect_err("refused"), Refused::PerIp);
        drop(one);
    }
}
