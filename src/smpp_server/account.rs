//! One account's live state: its configuration, the checks a bind must pass
//! (source address, bind type, password, bind count), its open binds, its
//! throughput bucket, its rate over the last minute and its counters, and
//! the account as readers see it (`smpp::accounts::AccountView`).

use crate::config::smpp_server::{Account, IpRange};
use crate::message::{Priority, to_rfc3339};
use crate::smpp::accounts::{AccountView, BindView};
use rusmpp::CommandStatus;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;
use subtle::ConstantTimeEq;

/// Seconds the rate is averaged over.
const RATE_SECONDS: usize = 60;

/// An open bind, for readers.
struct Bind {
    session: u64,
    kind: &'static str,
    peer: SocketAddr,
    since: i64,
}

/// Accepted submits per second over the last minute: one count per second,
/// each stamped with the second it counts.
struct Rate {
    counts: [AtomicU64; RATE_SECONDS],
    stamps: [AtomicU64; RATE_SECONDS],
    start: Instant,
}

impl Rate {
    fn new() -> Rate {
        Rate {
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
            stamps: std::array::from_fn(|_| AtomicU64::new(u64::MAX)),
            start: Instant::now(),
        }
    }

    fn second(&self) -> u64 {
        self.start.elapsed().as_secs()
    }

    fn add(&self) {
        let sec = self.second();
        let i = (sec % RATE_SECONDS as u64) as usize;
        if self.stamps[i].swap(sec, Ordering::Relaxed) != sec {
            self.counts[i].store(0, Ordering::Relaxed);
        }
        self.counts[i].fetch_add(1, Ordering::Relaxed);
    }

    fn per_second(&self) -> f64 {
        let now = self.second();
        let recent = |i: usize| {
            let s = self.stamps[i].load(Ordering::Relaxed);
            s != u64::MAX && s <= now && now - s < RATE_SECONDS as u64
        };
        let n: u64 = (0..RATE_SECONDS).filter(|&i| recent(i)).map(|i| self.counts[i].load(Ordering::Relaxed)).sum();
        // Over the seconds the server has run, up to a minute.
        n as f64 / (now + 1).min(RATE_SECONDS as u64) as f64
    }
}

/// A `command_status` as SMPP 3.4 names it (`ESME_RTHROTTLED`).
pub fn status_name(s: CommandStatus) -> String {
    let debug = format!("{s:?}");
    match debug.strip_prefix("Esme") {
        Some(rest) => format!("ESME_{}", rest.to_uppercase()),
        None => format!("0x{:08X}", u32::from(s)),
    }
}

/// An `[[smpp_server.accounts]]` entry as the server runs it.
pub struct AccountState {
    pub cfg: Account,
    ranges: Vec<IpRange>,
    binds: Mutex<Vec<Bind>>,
    bucket: Mutex<(f64, Instant)>,
    rate: Rate,
    /// Submits accepted (committed).
    pub accepted: AtomicU64,
    refused: Mutex<BTreeMap<String, u64>>,
    binds_refused: Mutex<BTreeMap<String, u64>>,
    pub receipts_delivered: AtomicU64,
    pub inbound_delivered: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl AccountState {
    pub fn new(cfg: Account) -> AccountState {
        let ranges = cfg.allow_ips.iter().filter_map(|r| IpRange::parse(r)).collect();
        let burst = cfg.throughput.unwrap_or(0.0).max(1.0);
        AccountState {
            cfg,
            ranges,
            binds: Mutex::new(Vec::new()),
            bucket: Mutex::new((burst, Instant::now())),
            rate: Rate::new(),
            accepted: AtomicU64::new(0),
            refused: Mutex::default(),
            binds_refused: Mutex::default(),
            receipts_delivered: AtomicU64::new(0),
            inbound_delivered: AtomicU64::new(0),
        }
    }

    /// The API key its messages are written under.
    pub fn api_key(&self) -> String {
        self.cfg.api_key()
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

    /// Take a bind slot for `session`; false when `max_binds` are open.
    pub fn try_bind(&self, session: u64, kind: &'static str, peer: SocketAddr) -> bool {
        let mut b = lock(&self.binds);
        if b.len() >= self.cfg.max_binds {
            return false;
        }
        b.push(Bind { session, kind, peer, since: crate::message::now_ms() });
        true
    }

    pub fn release_bind(&self, session: u64) {
        lock(&self.binds).retain(|b| b.session != session);
    }

    /// One submit against the throughput (a token bucket a second deep).
    pub fn admit(&self) -> bool {
        let Some(rate) = self.cfg.throughput else { return true };
        let mut b = lock(&self.bucket);
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

    /// A submit committed.
    pub fn count_accepted(&self) {
        self.accepted.fetch_add(1, Ordering::Relaxed);
        self.rate.add();
    }

    /// A submit (or query, cancel) refused with `status`.
    pub fn count_refused(&self, status: CommandStatus) {
        *lock(&self.refused).entry(status_name(status)).or_default() += 1;
    }

    /// A bind refused with `status`.
    pub fn count_bind_refused(&self, status: CommandStatus) {
        *lock(&self.binds_refused).entry(status_name(status)).or_default() += 1;
    }

    /// The class of a submit with `priority_flag` (SMPP 3.4 5.2.14): 0 the
    /// account's `default_class`, 1 `transactional`, 2 and 3 `otp`; never
    /// more urgent than `max_class` (a lower value is more urgent).
    pub fn class(&self, priority_flag: Option<u8>) -> Priority {
        let asked = match priority_flag.unwrap_or(0) {
            0 => self.cfg.default_class,
            1 => Priority::Transactional,
            _ => Priority::Otp,
        };
        asked.max(self.cfg.max_class)
    }

    /// The account for readers; what the store owes it is filled in by them.
    pub fn view(&self) -> AccountView {
        let c = &self.cfg;
        let binds = lock(&self.binds)
            .iter()
            .map(|b| BindView { kind: b.kind.to_string(), peer: b.peer.to_string(), since: to_rfc3339(b.since) })
            .collect();
        AccountView {
            system_id: c.system_id.clone(),
            bind_types: c.bind_types.clone(),
            max_binds: c.max_binds,
            throughput: c.throughput,
            window: c.window,
            routes: c.routes.clone(),
            senders: c.senders.clone(),
            message_id: format!("{:?}", c.message_id).to_lowercase(),
            default_class: c.default_class.as_str().to_string(),
            max_class: c.max_class.as_str().to_string(),
            policy: c.policy,
            inbound_numbers: c.inbound.numbers.clone(),
            inbound_keywords: c.inbound.keywords.clone(),
            binds,
            submits_per_second: self.rate.per_second(),
            accepted: self.accepted.load(Ordering::Relaxed),
            refused: lock(&self.refused).clone(),
            binds_refused: lock(&self.binds_refused).clone(),
            receipts_delivered: self.receipts_delivered.load(Ordering::Relaxed),
            inbound_delivered: self.inbound_delivered.load(Ordering::Relaxed),
            ..AccountView::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(extra: &str) -> AccountState {
        let cfg: Account = toml::from_str(&format!("system_id = \"a\"\npassword = \"pw\"\n{extra}")).unwrap();
        AccountState::new(cfg)
    }

    #[test]
    fn priority_flags_map_to_classes_clamped_to_the_maximum() {
        let a = account("");
        assert_eq!(a.class(Some(0)), Priority::Transactional);
        assert_eq!(a.class(None), Priority::Transactional);
        assert_eq!(a.class(Some(1)), Priority::Transactional);
        assert_eq!(a.class(Some(3)), Priority::Otp);
        let promo = account("default_class = \"promotional\"\nmax_class = \"transactional\"");
        assert_eq!(promo.class(Some(0)), Priority::Promotional);
        assert_eq!(promo.class(Some(1)), Priority::Transactional);
        assert_eq!(promo.class(Some(2)), Priority::Transactional, "clamped to max_class");
    }

    #[test]
    fn status_names_are_smpps() {
        assert_eq!(status_name(CommandStatus::EsmeRthrottled), "ESME_RTHROTTLED");
        assert_eq!(status_name(CommandStatus::EsmeRmsgqful), "ESME_RMSGQFUL");
    }
}
