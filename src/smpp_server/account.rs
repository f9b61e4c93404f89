//! One account's live state: its configuration, the checks a bind must pass
//! (source address, bind type, password, bind count), its throughput bucket
//! and its counters for readers.

use crate::config::smpp_server::{Account, IpRange};
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;
use subtle::ConstantTimeEq;

/// An `[[smpp_server.accounts]]` entry as the server runs it.
pub struct AccountState {
    pub cfg: Account,
    ranges: Vec<IpRange>,
    binds: Mutex<usize>,
    bucket: Mutex<(f64, Instant)>,
    /// Submits accepted (committed) and refused (any status but OK).
    pub accepted: AtomicU64,
    pub refused: AtomicU64,
}

impl AccountState {
    pub fn new(cfg: Account) -> AccountState {
        let ranges = cfg.allow_ips.iter().filter_map(|r| IpRange::parse(r)).collect();
        let burst = cfg.throughput.unwrap_or(0.0).max(1.0);
        AccountState {
            cfg,
            ranges,
            binds: Mutex::new(0),
            bucket: Mutex::new((burst, Instant::now())),
            accepted: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        }
    }

    /// The API key its messages are written under.
    pub fn api_key(&self) -> String {
        format!("smpp:{}", self.cfg.system_id)
    }

    pub fn ip_allowed(&self, ip: IpAddr) -> bool {
        self.ranges.is_empty() || self.ranges.iter().any(|r| r.contains(ip))
    }

    pub fn bind_type_allowed(&self, kind: &str) -> bool {
        self.cfg.bind_types.is_empty() || self.cfg.bind_types.iter().any(|t| t == kind)
    }

    pub fn password_matches(&self, given: &str) -> bool {
        let ours = self.cfg.password.as_ref().map(|p| p.expose()).unwrap_or_default();
        bool::from(ours.as_bytes().ct_eq(given.as_bytes()))
    }

    /// Take a bind slot; false when `max_binds` are open.
    pub fn try_bind(&self) -> bool {
        let mut n = self.binds.lock().unwrap_or_else(|e| e.into_inner());
        if *n >= self.cfg.max_binds {
            return false;
        }
        *n += 1;
        true
    }

    pub fn release_bind(&self) {
        let mut n = self.binds.lock().unwrap_or_else(|e| e.into_inner());
        *n = n.saturating_sub(1);
    }

    pub fn binds(&self) -> usize {
        *self.binds.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One submit against the throughput (a token bucket a second deep).
    pub fn admit(&self) -> bool {
        let Some(rate) = self.cfg.throughput else { return true };
        let mut b = self.bucket.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let burst = rate.max(1.0);
        b.0 = (b.0 + now.duration_since(b.1).as_secs_f64() * rate).min(burst);
        b.1 = now;
        if b.0 >= 1.0 {
            b.0 -= 1.0;
            true
        } else {
            false
        }
    }

    pub fn count(&self, ok: bool) {
        let c = if ok { &self.accepted } else { &self.refused };
        c.fetch_add(1, Ordering::Relaxed);
    }
}
