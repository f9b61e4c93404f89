//! `[smpp_server]` and `[[smpp_server.accounts]]`: where smsgw accepts SMPP
//! 3.4 binds from LAN applications and partners, and what each account may
//! do (credentials, source addresses, bind types, bind count, throughput,
//! window, senders, routes, message id form, classes, whether policy applies)
//! and which inbound messages it receives (`InboundRoutes`). Checked here
//! once, each problem naming its key (a number or keyword two accounts
//! claim is refused, so inbound routing is never ambiguous); a password
//! comes inline or from a file.

use super::Secret;
use crate::message::Priority;
use serde::Deserialize;
use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

/// SMPP 3.4 (5.2.1, 5.2.2): system_id is at most 15 octets, password at most 8.
pub const MAX_SYSTEM_ID: usize = 15;
pub const MAX_PASSWORD: usize = 8;

/// The `[smpp_server]` table; no `listen`: no server.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmppServer {
    /// `host:port` for plain TCP binds.
    pub listen: Option<String>,
    /// `host:port` for binds over TLS (the same sessions, the same accounts);
    /// needs `tls_cert_file` and `tls_key_file`.
    pub tls_listen: Option<String>,
    /// PEM: the server's certificate, then any intermediates.
    pub tls_cert_file: Option<PathBuf>,
    /// PEM: its private key (PKCS#8, PKCS#1 or SEC1).
    pub tls_key_file: Option<PathBuf>,
    /// Seconds between our `enquire_link`s on an idle bind; a peer silent
    /// for three of these is dropped.
    pub enquire_link_secs: u64,
    /// Seconds before a receipt refused or unanswered by the peer is offered again.
    pub receipt_retry_secs: u64,
    /// Hours a receipt is kept for an account that never takes it (no bind,
    /// or refusals) before it is marked dead; default 7 days.
    pub receipt_dead_after_hours: u64,
    /// Seconds the parts of a long message wait for the rest of their set;
    /// then the set is stored as incomplete (failed, error `incomplete`).
    pub join_timeout_secs: u64,
    pub accounts: Vec<Account>,
}

impl Default for SmppServer {
    fn default() -> Self {
        SmppServer {
            listen: None,
            tls_listen: None,
            tls_cert_file: None,
            tls_key_file: None,
            enquire_link_secs: 30,
            receipt_retry_secs: 60,
            receipt_dead_after_hours: 7 * 24,
            join_timeout_secs: 60,
            accounts: Vec::new(),
        }
    }
}

/// How an account's `message_id`s are written in `submit_sm_resp` (and read
/// back in `query_sm`/`cancel_sm`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IdFormat {
    #[default]
    Decimal,
    Hex,
}

impl IdFormat {
    pub fn format(self, id: i64) -> String {
        match self {
            IdFormat::Decimal => id.to_string(),
            IdFormat::Hex => format!("{id:x}"),
        }
    }

    pub fn parse(self, s: &str) -> Option<i64> {
        match self {
            IdFormat::Decimal => s.parse().ok(),
            IdFormat::Hex => i64::from_str_radix(s, 16).ok(),
        }
    }
}

/// One `[[smpp_server.accounts]]` entry.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Account {
    pub system_id: String,
    /// At most 8 characters (SMPP 3.4); or `password_file`.
    #[serde(default)]
    pub password: Option<Secret>,
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Source addresses allowed to bind (`10.0.0.0/8`, `192.168.1.7`); empty: any.
    #[serde(default)]
    pub allow_ips: Vec<String>,
    /// Of `transmitter`, `receiver`, `transceiver`; empty: all three.
    #[serde(default)]
    pub bind_types: Vec<String>,
    /// Binds open at once; one more is refused with `ESME_RALYBND`.
    #[serde(default = "default_max_binds")]
    pub max_binds: usize,
    /// Submits per second over all the account's binds; beyond: `ESME_RTHROTTLED`.
    #[serde(default)]
    pub throughput: Option<f64>,
    /// Submits awaiting their response per bind; beyond: `ESME_RMSGQFUL`.
    #[serde(default = "default_window")]
    pub window: usize,
    /// Sender ids (`source_addr`) the account may use; empty: any.
    #[serde(default)]
    pub senders: Vec<String>,
    /// Routes its messages may take; empty: any (chosen by prefix as for the API).
    #[serde(default)]
    pub routes: Vec<String>,
    #[serde(default)]
    pub message_id: IdFormat,
    /// The class of a submit whose `priority_flag` is 0 (and of every
    /// `data_sm`, which has none); `priority_flag` 1 asks for
    /// `transactional`, 2 and 3 for `otp`.
    #[serde(default = "default_class")]
    pub default_class: Priority,
    /// The most urgent class the account may use: a `priority_flag` asking
    /// for more is clamped to it (peers often send one fixed flag; refusing
    /// would stop all their traffic).
    #[serde(default = "max_class")]
    pub max_class: Priority,
    /// Whether its messages are subject to opt-outs, consent, quiet hours
    /// and caps like any other (default); `false` for a partner whose
    /// traffic is not ours to police.
    #[serde(default = "yes")]
    pub policy: bool,
    /// Inbound messages this account receives as `deliver_sm`.
    #[serde(default)]
    pub inbound: Inbound,
}

impl Account {
    /// The API key its messages are written under (and a webhook
    /// subscription that follows it names).
    pub fn api_key(&self) -> String {
        format!("smpp:{}", self.system_id)
    }
}

fn default_class() -> Priority {
    Priority::Transactional
}

fn max_class() -> Priority {
    Priority::Otp
}

fn yes() -> bool {
    true
}

/// `inbound = { numbers = [...], keywords = [...] }`: which inbound
/// messages go to an account. A message goes to the account one of whose
/// numbers it was sent to; else to the account one of whose keywords its
/// text starts with (any case, "ё" as "е", followed by the end or a
/// non-letter). Two accounts may not share a number or a keyword (checked
/// at load), so at most one account matches each way; a number match wins
/// over a keyword match.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Inbound {
    #[serde(default)]
    pub numbers: Vec<String>,
    #[serde(default)]
    pub keywords: Vec<String>,
}

/// A number as inbound routing compares it: its digits.
fn digits(number: &str) -> String {
    number.chars().filter(char::is_ascii_digit).collect()
}

/// A keyword or text's start as inbound routing compares it.
fn fold(text: &str) -> String {
    text.chars().flat_map(char::to_lowercase).map(|c| if c == 'ё' { 'е' } else { c }).collect()
}

impl Inbound {
    fn has_number(&self, to_digits: &str) -> bool {
        !to_digits.is_empty() && self.numbers.iter().any(|n| digits(n) == to_digits)
    }

    /// Whether `text` (already folded, leading spaces dropped) starts with one of the keywords.
    fn has_keyword(&self, folded: &str) -> bool {
        self.keywords.iter().any(|k| {
            let k = fold(k);
            folded.strip_prefix(k.as_str()).is_some_and(|rest| !rest.starts_with(char::is_alphanumeric))
        })
    }
}

/// Every account's `inbound`, as the store's fan-out asks it: the account
/// an inbound message goes to.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InboundRoutes(Vec<(String, Inbound)>);

impl InboundRoutes {
    pub fn new(accounts: &[Account]) -> InboundRoutes {
        InboundRoutes(
            accounts
                .iter()
                .filter(|a| !a.inbound.numbers.is_empty() || !a.inbound.keywords.is_empty())
                .map(|a| (a.system_id.clone(), a.inbound.clone()))
                .collect(),
        )
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The system_id of the account a message to `to` saying `text` goes to.
    pub fn route(&self, to: &str, text: &str) -> Option<&str> {
        let to = digits(to);
        if let Some((id, _)) = self.0.iter().find(|(_, i)| i.has_number(&to)) {
            return Some(id);
        }
        let folded = fold(text.trim_start());
        self.0.iter().find(|(_, i)| i.has_keyword(&folded)).map(|(id, _)| id.as_str())
    }
}

fn default_max_binds() -> usize {
    4
}

fn default_window() -> usize {
    100
}

/// A source address range: an address and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpRange {
    net: IpAddr,
    bits: u8,
}

impl IpRange {
    pub fn parse(s: &str) -> Option<IpRange> {
        let (addr, bits) = match s.split_once('/') {
            Some((a, b)) => (a.parse::<IpAddr>().ok()?, Some(b.parse::<u8>().ok()?)),
            None => (s.parse::<IpAddr>().ok()?, None),
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let bits = bits.unwrap_or(max);
        (bits <= max).then_some(IpRange { net: addr, bits })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.net, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = if self.bits == 0 { 0 } else { u32::MAX << (32 - self.bits) };
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = if self.bits == 0 { 0 } else { u128::MAX << (128 - self.bits) };
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

pub const BIND_TYPES: [&str; 3] = ["transmitter", "receiver", "transceiver"];

impl SmppServer {
    /// `tls_listen` and its certificate and key: both files given, readable,
    /// PEM with what they should hold; their paths made absolute under `base`.
    fn check_tls(&mut self, base: &Path, bad: &mut dyn FnMut(&str, String)) {
        use rustls_pki_types::pem::PemObject;
        use rustls_pki_types::{CertificateDer, PrivateKeyDer};
        let Some(l) = &self.tls_listen else {
            for (key, f) in [("tls_cert_file", &self.tls_cert_file), ("tls_key_file", &self.tls_key_file)] {
                if f.is_some() {
                    bad(&format!("smpp_server.{key}"), "only means something with tls_listen".into());
                }
            }
            return;
        };
        if l.parse::<SocketAddr>().is_err() {
            bad("smpp_server.tls_listen", format!("{l:?} is not an address with a port, like \"0.0.0.0:3550\""));
        }
        if self.listen.is_some() && self.listen == self.tls_listen {
            bad("smpp_server.tls_listen", "must differ from smpp_server.listen".into());
        }
        match &mut self.tls_cert_file {
            None => bad("smpp_server.tls_cert_file", "tls_listen needs a PEM certificate file".into()),
            Some(f) => {
                *f = base.join(&*f);
                let found = CertificateDer::pem_file_iter(&*f).map(|certs| certs.collect::<Result<Vec<_>, _>>());
                match found {
                    Err(e) | Ok(Err(e)) => bad(
                        "smpp_server.tls_cert_file",
                        format!("cannot read {} as PEM: {}", f.display(), pem_error(e)),
                    ),
                    Ok(Ok(certs)) if certs.is_empty() => {
                        bad("smpp_server.tls_cert_file", format!("{} holds no CERTIFICATE block", f.display()))
                    }
                    Ok(Ok(_)) => {}
                }
            }
        }
        match &mut self.tls_key_file {
            None => bad("smpp_server.tls_key_file", "tls_listen needs a PEM private key file".into()),
            Some(f) => {
                *f = base.join(&*f);
                if let Err(e) = PrivateKeyDer::from_pem_file(&*f) {
                    bad(
                        "smpp_server.tls_key_file",
                        format!("cannot read {} as a PEM private key: {}", f.display(), pem_error(e)),
                    );
                }
            }
        }
    }

    /// Every file the table names.
    pub(super) fn paths(&self) -> impl Iterator<Item = &Path> {
        let passwords = self.accounts.iter().filter_map(|a| a.password_file.as_deref());
        passwords.chain(self.tls_cert_file.as_deref()).chain(self.tls_key_file.as_deref())
    }

    /// Check every key; read each `password_file` (relative to `base`) into `password`.
    pub(super) fn check(&mut self, routes: &HashSet<String>, base: &Path, bad: &mut dyn FnMut(&str, String)) {
        if let Some(l) = &self.listen
            && l.parse::<SocketAddr>().is_err()
        {
            bad("smpp_server.listen", format!("{l:?} is not an address with a port, like \"0.0.0.0:2775\""));
        }
        if !(1..=3600).contains(&self.enquire_link_secs) {
            bad("smpp_server.enquire_link_secs", "must be between 1 and 3600 seconds".into());
        }
        if !(1..=86_400).contains(&self.join_timeout_secs) {
            bad("smpp_server.join_timeout_secs", "must be between 1 and 86400 seconds".into());
        }
        if !(1..=86_400).contains(&self.receipt_retry_secs) {
            bad("smpp_server.receipt_retry_secs", "must be between 1 and 86400 seconds".into());
        }
        if !(1..=24 * 365).contains(&self.receipt_dead_after_hours) {
            bad("smpp_server.receipt_dead_after_hours", "must be between 1 and 8760 hours".into());
        }
        self.check_tls(base, bad);
        if self.listen.is_none() && self.tls_listen.is_none() && !self.accounts.is_empty() {
            bad("smpp_server.listen", "accounts are configured but no listen (or tls_listen) address is given".into());
        }
        let mut ids = std::collections::HashSet::new();
        // Inbound numbers and keywords, each to the one account that has it.
        let mut numbers = std::collections::HashMap::new();
        let mut keywords = std::collections::HashMap::new();
        for (i, a) in self.accounts.iter_mut().enumerate() {
            let key = format!("smpp_server.accounts[{i}]");
            if a.system_id.is_empty()
                || a.system_id.len() > MAX_SYSTEM_ID
                || !a.system_id.bytes().all(|b| b.is_ascii_graphic())
            {
                bad(&format!("{key}.system_id"), format!("must be 1 to {MAX_SYSTEM_ID} visible ASCII characters"));
            } else if !ids.insert(a.system_id.clone()) {
                bad(&format!("{key}.system_id"), format!("duplicate system_id {:?}", a.system_id));
            }
            let password = super::secret_or_file(&a.password, &a.password_file, base, &key, "password", bad);
            if let Some(p) = password {
                if p.is_empty() || p.len() > MAX_PASSWORD || !p.bytes().all(|b| b.is_ascii_graphic()) {
                    bad(
                        &format!("{key}.password"),
                        format!("must be 1 to {MAX_PASSWORD} visible ASCII characters (SMPP 3.4 carries no more)"),
                    );
                } else {
                    a.password = Some(Secret::new(p));
                    a.password_file = None;
                }
            }
            for (j, r) in a.allow_ips.iter().enumerate() {
                if IpRange::parse(r).is_none() {
                    bad(
                        &format!("{key}.allow_ips[{j}]"),
                        format!("{r:?} is not an address or range like \"10.0.0.0/8\""),
                    );
                }
            }
            for (j, t) in a.bind_types.iter().enumerate() {
                if !BIND_TYPES.contains(&t.as_str()) {
                    bad(
                        &format!("{key}.bind_types[{j}]"),
                        format!("{t:?} is not transmitter, receiver or transceiver"),
                    );
                }
            }
            if !(1..=1000).contains(&a.max_binds) {
                bad(&format!("{key}.max_binds"), "must be between 1 and 1000".into());
            }
            if let Some(t) = a.throughput
                && !(t.is_finite() && t > 0.0)
            {
                bad(&format!("{key}.throughput"), "must be a positive number of submits per second".into());
            }
            if !(1..=10_000).contains(&a.window) {
                bad(&format!("{key}.window"), "must be between 1 and 10000".into());
            }
            for (j, r) in a.routes.iter().enumerate() {
                if !routes.contains(r) {
                    bad(&format!("{key}.routes[{j}]"), format!("no route is named {r:?}"));
                }
            }
            // A lower priority value is more urgent.
            if a.default_class < a.max_class {
                bad(
                    &format!("{key}.default_class"),
                    format!("{:?} is more urgent than max_class {:?}", a.default_class.as_str(), a.max_class.as_str()),
                );
            }
            for (j, n) in a.inbound.numbers.iter().enumerate() {
                let k = format!("{key}.inbound.numbers[{j}]");
                let d = digits(n);
                let shape = n.trim_start_matches('+');
                if d.len() < 3 || d.len() > 15 || d != shape {
                    bad(&k, format!("{n:?} is not a number of 3 to 15 digits (an optional leading +)"));
                } else if let Some(other) = numbers.insert(d, a.system_id.clone()) {
                    bad(
                        &k,
                        format!("{n:?} already goes to account {other:?}; an inbound number belongs to one account"),
                    );
                }
            }
            for (j, w) in a.inbound.keywords.iter().enumerate() {
                let k = format!("{key}.inbound.keywords[{j}]");
                if w.is_empty() || w.chars().count() > 32 || !w.chars().all(char::is_alphanumeric) {
                    bad(&k, format!("{w:?} is not one word of 1 to 32 letters or digits"));
                } else if let Some(other) = keywords.insert(fold(w), a.system_id.clone()) {
                    bad(&k, format!("{w:?} already goes to account {other:?}; a keyword belongs to one account"));
                }
            }
        }
    }
}

/// A PEM problem in words a user acts on.
fn pem_error(e: rustls_pki_types::pem::Error) -> String {
    use rustls_pki_types::pem::Error;
    match e {
        Error::Io(e) => e.to_string(),
        Error::NoItemsFound => "no PEM block of that kind in the file".into(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        let r = IpRange::parse("10.0.0.0/8").unwrap();
        assert!(r.contains("10.1.2.3".parse().unwrap()));
        assert!(!r.contains("127.0.0.1".parse().unwrap()));
        assert!(r.contains("::ffff:10.0.0.1".parse().unwrap()));
        assert!(IpRange::parse("127.0.0.1").unwrap().contains("127.0.0.1".parse().unwrap()));
        assert!(IpRange::parse("10.0.0.0/33").is_none());
        assert!(IpRange::parse("nope").is_none());
    }

    #[test]
    fn problems_name_their_key() {
        let mut cfg: SmppServer = toml::from_str(
            r#"
listen = "0.0.0.0:2775"
join_timeout_secs = 0
[[accounts]]
system_id = "billing"
password = "muchtoolong"
allow_ips = ["10.0.0.0/40"]
bind_types = ["sender"]
routes = ["nowhere"]
[[accounts]]
system_id = "billing"
password = "ok"
throughput = 0
"#,
        )
        .unwrap();
        let mut problems = Vec::new();
        cfg.check(&HashSet::from(["sim".to_string()]), Path::new("/nonexistent"), &mut |k, why| {
            problems.push(format!("{k}: {why}"))
        });
        for key in [
            "smpp_server.join_timeout_secs: must be between 1 and 86400",
            "smpp_server.accounts[0].password:",
            "smpp_server.accounts[0].allow_ips[0]:",
            "smpp_server.accounts[0].bind_types[0]:",
            "smpp_server.accounts[0].routes[0]:",
            "smpp_server.accounts[1].system_id: duplicate",
            "smpp_server.accounts[1].throughput:",
        ] {
            assert!(problems.iter().any(|p| p.starts_with(key)), "{key} not in {problems:?}");
        }
        assert!(!problems.iter().any(|p| p.contains("muchtoolong")), "the password is not repeated");
    }

    #[test]
    fn tls_problems_name_their_key() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("cert.pem"), "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
            .unwrap();
        let check = |text: &str| {
            let mut cfg: SmppServer = toml::from_str(text).unwrap();
            let mut problems = Vec::new();
            cfg.check(&HashSet::new(), dir.path(), &mut |k, why| problems.push(format!("{k}: {why}")));
            problems
        };
        let p = check("tls_listen = \"127.0.0.1:3550\"\ntls_cert_file = \"cert.pem\"\ntls_key_file = \"none.key\"");
        assert!(p.iter().any(|p| p.starts_with("smpp_server.tls_cert_file:") && p.contains("no CERTIFICATE")), "{p:?}");
        assert!(p.iter().any(|p| p.starts_with("smpp_server.tls_key_file:") && p.contains("none.key")), "{p:?}");
        let p = check("tls_listen = \"127.0.0.1:3550\"");
        assert!(p.iter().any(|p| p.starts_with("smpp_server.tls_cert_file: tls_listen needs")), "{p:?}");
        assert!(p.iter().any(|p| p.starts_with("smpp_server.tls_key_file: tls_listen needs")), "{p:?}");
        let p = check("listen = \"127.0.0.1:2775\"\ntls_cert_file = \"cert.pem\"");
        assert_eq!(p, ["smpp_server.tls_cert_file: only means something with tls_listen"]);
        let p = check("listen = \"127.0.0.1:2775\"\ntls_listen = \"127.0.0.1:2775\"");
        assert!(p.iter().any(|p| p.starts_with("smpp_server.tls_listen: must differ")), "{p:?}");
    }

    #[test]
    fn inbound_goes_to_one_account() {
        let cfg: SmppServer = toml::from_str(
            r#"
listen = "0.0.0.0:2775"
[[accounts]]
system_id = "shop"
password = "pw"
inbound = { keywords = ["SHOP", "Магазин"] }
[[accounts]]
system_id = "bank"
password = "pw"
inbound = { numbers = ["+79001112233"] }
"#,
        )
        .unwrap();
        let r = InboundRoutes::new(&cfg.accounts);
        assert_eq!(r.route("7726", "shop order 5"), Some("shop"));
        assert_eq!(r.route("7726", "  МАГАЗИН, заказ"), Some("shop"));
        assert_eq!(r.route("7726", "магазин"), Some("shop"));
        assert_eq!(r.route("7726", "shopping"), None, "a keyword ends at a word boundary");
        assert_eq!(r.route("79001112233", "shop"), Some("bank"), "a number wins over a keyword");
        assert_eq!(r.route("+7 900 111-22-33", "hi"), Some("bank"));
        assert_eq!(r.route("7726", "hello"), None);
    }

    #[test]
    fn inbound_ambiguity_and_classes_are_refused() {
        let mut cfg: SmppServer = toml::from_str(
            r#"
listen = "0.0.0.0:2775"
[[accounts]]
system_id = "a"
password = "pw"
default_class = "otp"
max_class = "transactional"
inbound = { numbers = ["+79001112233"], keywords = ["Shop"] }
[[accounts]]
system_id = "b"
password = "pw"
inbound = { numbers = ["79001112233", "12x"], keywords = ["SHOP", "two words"] }
"#,
        )
        .unwrap();
        let mut problems = Vec::new();
        cfg.check(&HashSet::new(), Path::new("/nonexistent"), &mut |k, why| problems.push(format!("{k}: {why}")));
        for key in [
            "smpp_server.accounts[0].default_class:",
            "smpp_server.accounts[1].inbound.numbers[0]: \"79001112233\" already goes to account \"a\"",
            "smpp_server.accounts[1].inbound.numbers[1]:",
            "smpp_server.accounts[1].inbound.keywords[0]: \"SHOP\" already goes to account \"a\"",
            "smpp_server.accounts[1].inbound.keywords[1]:",
        ] {
            assert!(problems.iter().any(|p| p.starts_with(key)), "{key} not in {problems:?}");
        }
    }

    #[test]
    fn ids() {
        assert_eq!(IdFormat::Hex.format(255), "ff");
        assert_eq!(IdFormat::Hex.parse("ff"), Some(255));
        assert_eq!(IdFormat::Decimal.parse("42"), Some(42));
    }
}
