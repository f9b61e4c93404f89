//! The configuration file: one TOML document, its types and defaults, and the
//! validation that names the key and the reason for every problem it finds.

pub mod smpp_server;
pub mod webhooks;

use serde::Deserialize;
use std::collections::{BTreeSet, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// A secret from the config (SIM PIN, SMPP password, API key): its `Debug`
/// and `Serialize` print `***`, so no view, error or log line built from a
/// config struct can show it; `expose` is for the one place that sends it.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("\"***\"")
    }
}

impl serde::Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("***")
    }
}

/// The demo configuration compiled into the binary (`firmware-config/demo.toml`).
pub const DEMO_TOML: &str = include_str!("../firmware-config/demo.toml");

/// The file as a whole; `S` is what a route's kind and table are (see
/// [`Route`]).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config<S = RouteTable> {
    #[serde(default)]
    pub server: Server,
    #[serde(default)]
    pub store: StoreConfig,
    #[serde(default)]
    pub numbers: Numbers,
    #[serde(default)]
    pub dispatch: Dispatch,
    #[serde(default)]
    pub log: Log,
    #[serde(default)]
    pub policy: Policy,
    #[serde(default)]
    pub api_keys: Vec<ApiKey>,
    #[serde(default)]
    pub routes: Vec<Route<S>>,
    #[serde(default)]
    pub webhooks: webhooks::Webhooks,
    #[serde(default)]
    pub replies: Replies,
    /// `[[rules]]`: trigger rules (events in, scheduled messages out).
    #[serde(default)]
    pub rules: Vec<crate::trigger::RuleSpec>,
    #[serde(default)]
    pub smpp_server: smpp_server::SmppServer,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Server {
    pub listen: String,
    pub max_body_bytes: usize,
    pub max_batch: usize,
    pub max_recipients: usize,
    pub max_segments: usize,
    /// Seconds a client may take to send a request's head.
    pub header_timeout_secs: u64,
    /// Seconds a client may take to send a request's body, once its head is in.
    pub body_timeout_secs: u64,
    /// Seconds a keep-alive connection may wait for its next request.
    pub idle_timeout_secs: u64,
    /// Connections open at once; more wait in the accept backlog.
    pub max_connections: usize,
}

impl Default for Server {
    fn default() -> Self {
        Server {
            listen: "127.0.0.1:8080".into(),
            max_body_bytes: 1024 * 1024,
            max_batch: 1000,
            max_recipients: 1000,
            max_segments: 10,
            header_timeout_secs: 10,
            body_timeout_secs: 30,
            idle_timeout_secs: 60,
            max_connections: 1024,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    pub path: PathBuf,
    /// Days a finished message (with its parts and history) is kept after it
    /// finished; 0 keeps them forever.
    pub retention_days: u32,
    /// Days an inbound message is kept; unset follows `retention_days`.
    pub inbound_retention_days: Option<u32>,
    /// Hours a delivery report that matched no sent part is kept in case its
    /// submit result is still on the way; 0 keeps them forever.
    pub orphan_receipt_hours: u32,
    /// Minutes between the daemon's prunes.
    pub prune_every_minutes: u32,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            path: PathBuf::from("smsgw.db"),
            retention_days: 90,
            inbound_retention_days: None,
            orphan_receipt_hours: 48,
            prune_every_minutes: 60,
        }
    }
}

/// A hundred years: longer is a typo, and would overflow milliseconds.
const MAX_RETENTION_DAYS: u32 = 36_500;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Numbers {
    pub default_region: String,
}

impl Default for Numbers {
    fn default() -> Self {
        Numbers { default_region: "US".into() }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Dispatch {
    pub max_attempts: u32,
    pub retry_base_ms: u64,
    pub retry_max_ms: u64,
    pub default_validity_secs: u64,
    pub shutdown_timeout_ms: u64,
    /// How long the parts of a concatenated inbound message wait for the
    /// missing ones before what arrived is stored as it is.
    pub inbound_reassembly_secs: u64,
}

impl Default for Dispatch {
    fn default() -> Self {
        Dispatch {
            max_attempts: 6,
            retry_base_ms: 2_000,
            retry_max_ms: 300_000,
            default_validity_secs: 2 * 24 * 3600,
            shutdown_timeout_ms: 10_000,
            inbound_reassembly_secs: 600,
        }
    }
}

/// `[policy]`: what the gateway itself stops (38-FZ art. 18: promotional
/// SMS need the recipient's prior consent, and stop when asked) or holds
/// back (quiet hours in the recipient's local time, frequency caps). The
/// store applies it when a message is accepted and again when it is
/// claimed; a reload applies a new one to every message not yet claimed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "PolicyToml")]
pub struct Policy {
    /// What an opt-out of scope `promotional` (a plain "STOP") stops:
    /// `promotional` messages only, or `all` (otp and transactional too).
    /// An opt-out of scope `all` stops everything either way.
    pub optout_scope: crate::message::OptOutScope,
    /// A promotional message to a number without an active consent is
    /// suppressed (`no_consent`).
    pub require_consent: bool,
    /// The zone of a recipient whose message gave none and whose number
    /// tells none (`default_tz`; default: the machine's zone, else UTC).
    pub default_tz: chrono_tz::Tz,
    /// `[policy.quiet_hours]`: local times a class is not sent at.
    pub quiet_hours: QuietHours,
    /// `[policy.caps]`: how many messages of a class one number may get
    /// within a window.
    pub caps: Caps,
    /// Not from the file: set for the messages of a sender policy does not
    /// apply to (an SMPP account with `policy = false`). Such a message is
    /// never stopped at accept, and is written exempt so its claim skips
    /// the checks too. Always false in `[policy]`.
    pub exempt: bool,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            optout_scope: Default::default(),
            require_consent: false,
            default_tz: machine_tz(),
            quiet_hours: QuietHours::default(),
            caps: Caps::default(),
            exempt: false,
        }
    }
}

/// Quiet hours per class; `otp` never has any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuietHours {
    pub transactional: Option<crate::zone::Window>,
    pub promotional: Option<crate::zone::Window>,
}

impl Default for QuietHours {
    /// Promotions are not sent from 21:00 to 09:00, local time.
    fn default() -> Self {
        QuietHours { transactional: None, promotional: crate::zone::Window::parse("21:00-09:00").ok() }
    }
}

impl QuietHours {
    pub fn of(&self, class: crate::message::Priority) -> Option<crate::zone::Window> {
        use crate::message::Priority::*;
        match class {
            Otp => None,
            Transactional => self.transactional,
            Promotional => self.promotional,
        }
    }
}

/// At most `count` messages of a class to one number within `window_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cap {
    pub count: u32,
    pub window_ms: i64,
}

/// Frequency caps per class; none by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Caps {
    pub otp: Option<Cap>,
    pub transactional: Option<Cap>,
    pub promotional: Option<Cap>,
}

impl Caps {
    pub fn of(&self, class: crate::message::Priority) -> Option<Cap> {
        use crate::message::Priority::*;
        match class {
            Otp => self.otp,
            Transactional => self.transactional,
            Promotional => self.promotional,
        }
    }

    /// The longest window of any cap: how long the sends ledger must keep a row.
    pub fn longest_ms(&self) -> Option<i64> {
        [self.otp, self.transactional, self.promotional].iter().flatten().map(|c| c.window_ms).max()
    }
}

/// The machine's zone: the IANA name `/etc/localtime` links to, else the
/// name in `/etc/timezone`, else UTC.
pub fn machine_tz() -> chrono_tz::Tz {
    static TZ: std::sync::OnceLock<chrono_tz::Tz> = std::sync::OnceLock::new();
    *TZ.get_or_init(|| {
        let linked = std::fs::read_link("/etc/localtime").ok().and_then(|target| {
            let target = target.to_string_lossy().into_owned();
            let name = target.split_once("zoneinfo/")?.1.to_string();
            name.parse().ok()
        });
        linked.or_else(|| std::fs::read_to_string("/etc/timezone").ok()?.trim().parse().ok()).unwrap_or(chrono_tz::UTC)
    })
}

/// `[policy]` as written; [`Policy`] is what it means, checked.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct PolicyToml {
    optout_scope: crate::message::OptOutScope,
    require_consent: bool,
    default_tz: Option<String>,
    quiet_hours: QuietHoursToml,
    caps: CapsToml,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct QuietHoursToml {
    otp: Option<String>,
    transactional: Option<String>,
    promotional: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct CapsToml {
    otp: Option<CapToml>,
    transactional: Option<CapToml>,
    promotional: Option<CapToml>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CapToml {
    count: u32,
    days: Option<u32>,
    hours: Option<u32>,
}

impl TryFrom<PolicyToml> for Policy {
    type Error = String;

    fn try_from(t: PolicyToml) -> Result<Policy, String> {
        let default_tz = match t.default_tz {
            None => machine_tz(),
            Some(name) => name.parse().map_err(|_| {
                format!("policy.default_tz: {name:?} is not an IANA time zone name (like \"Europe/Moscow\")")
            })?,
        };
        if t.quiet_hours.otp.is_some() {
            return Err("policy.quiet_hours.otp: one-time passwords are never held back; remove it".into());
        }
        // "none" (or "") turns a class's quiet hours off.
        let window = |class: &str, text: Option<String>, default: Option<crate::zone::Window>| match text {
            None => Ok(default),
            Some(t) if t.trim().is_empty() || t.trim() == "none" => Ok(None),
            Some(t) => crate::zone::Window::parse(&t).map(Some).map_err(|e| format!("policy.quiet_hours.{class}: {e}")),
        };
        let defaults = QuietHours::default();
        let quiet_hours = QuietHours {
            transactional: window("transactional", t.quiet_hours.transactional, defaults.transactional)?,
            promotional: window("promotional", t.quiet_hours.promotional, defaults.promotional)?,
        };
        let cap = |class: &str, c: Option<CapToml>| -> Result<Option<Cap>, String> {
            let Some(c) = c else { return Ok(None) };
            let key = format!("policy.caps.{class}");
            let hours = match (c.days, c.hours) {
                (Some(d), None) => d as i64 * 24,
                (None, Some(h)) => h as i64,
                _ => return Err(format!("{key}: give the window as one of `days` or `hours`")),
            };
            if c.count == 0 {
                return Err(format!("{key}.count: must be at least 1"));
            }
            if !(1..=400 * 24).contains(&hours) {
                return Err(format!("{key}: the window must be between 1 hour and 400 days"));
            }
            Ok(Some(Cap { count: c.count, window_ms: hours * 3_600_000 }))
        };
        let caps = Caps {
            otp: cap("otp", t.caps.otp)?,
            transactional: cap("transactional", t.caps.transactional)?,
            promotional: cap("promotional", t.caps.promotional)?,
        };
        Ok(Policy {
            optout_scope: t.optout_scope,
            require_consent: t.require_consent,
            default_tz,
            quiet_hours,
            caps,
            exempt: false,
        })
    }
}

/// `[replies]`: what inbound texts mean and what is sent back. Each list
/// holds the words of one meaning, matched against a whole message in any
/// case, without its spaces and punctuation, Latin look-alike letters read
/// as Cyrillic (see `replies`); an empty list turns that meaning off.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Replies {
    /// Stop promotions (the opt-out scope).
    pub optout: Vec<String>,
    /// Stop every message, transactional ones too.
    pub optout_all: Vec<String>,
    /// Take an opt-out back.
    pub optin: Vec<String>,
    /// Answered with `help_text`.
    pub help: Vec<String>,
    /// Answers: `intent` yes or no on the inbound message.
    pub yes: Vec<String>,
    pub no: Vec<String>,
    /// The auto-reply to a help keyword.
    pub help_text: String,
    /// Sent back to an opt-out keyword; none when absent.
    pub optout_reply: Option<String>,
    /// Sent back to an opt-in keyword; none when absent.
    pub optin_reply: Option<String>,
    /// Hours a message waits for its answer: an inbound message answers the
    /// latest message sent to its number within this many hours before it.
    pub window_hours: u32,
}

fn words(list: &[&str]) -> Vec<String> {
    list.iter().map(|w| w.to_string()).collect()
}

impl Default for Replies {
    fn default() -> Self {
        Replies {
            optout: words(&[
                "STOP",
                "СТОП",
                "ОТПИСКА",
                "ОТПИСАТЬСЯ",
                "ОТПИСАТЬ",
                "UNSUBSCRIBE",
                "CANCEL",
                "ОТМЕНА",
                "END",
                "QUIT",
            ]),
            optout_all: words(&["STOPALL", "СТОПВСЕ"]),
            optin: words(&["START", "СТАРТ", "ПОДПИСАТЬСЯ", "UNSTOP", "SUBSCRIBE"]),
            help: words(&["HELP", "ПОМОЩЬ", "INFO", "ИНФО", "СПРАВКА"]),
            yes: words(&["ДА", "Д", "YES", "Y", "1", "OK", "ОК", "DA", "ПОДТВЕРЖДАЮ"]),
            no: words(&["НЕТ", "Н", "NO", "N", "2", "NET", "НЕ"]),
            help_text: "Отписаться от рассылок: СТОП (STOP). Подписаться снова: СТАРТ (START).".into(),
            optout_reply: None,
            optin_reply: None,
            window_hours: 72,
        }
    }
}

/// Words one `[replies]` list may hold, and letters one word may have.
const MAX_REPLY_WORDS: usize = 100;
const MAX_REPLY_WORD_LETTERS: usize = 40;

impl Replies {
    /// Every problem with `[replies]`: words without a letter or digit,
    /// too long or too many, a word in two lists of which only one can
    /// apply, texts empty or longer than `max_segments` parts.
    fn check(&self, max_segments: usize, bad: &mut dyn FnMut(&str, String)) {
        // Compared roughly as `replies` reads them (case, spaces,
        // punctuation and "ё" aside); look-alike spellings of one word in
        // two lists are left to the lists' precedence.
        let form = |w: &str| -> String {
            w.chars()
                .filter(|c| c.is_alphanumeric())
                .flat_map(char::to_lowercase)
                .map(|c| if c == 'ё' { 'е' } else { c })
                .collect()
        };
        let groups: [&[(&str, &Vec<String>)]; 2] = [
            &[("optout_all", &self.optout_all), ("optout", &self.optout), ("optin", &self.optin), ("help", &self.help)],
            &[("yes", &self.yes), ("no", &self.no)],
        ];
        for group in groups {
            let mut seen: std::collections::HashMap<String, String> = std::collections::HashMap::new();
            for (name, list) in group {
                if list.len() > MAX_REPLY_WORDS {
                    bad(&format!("replies.{name}"), format!("at most {MAX_REPLY_WORDS} words"));
                }
                for (i, w) in list.iter().enumerate() {
                    let key = format!("replies.{name}[{i}]");
                    let f = form(w);
                    if f.is_empty() {
                        bad(&key, format!("{w:?} has no letter or digit to match"));
                    } else if f.chars().count() > MAX_REPLY_WORD_LETTERS {
                        bad(
                            &key,
                            format!("at most {MAX_REPLY_WORD_LETTERS} letters: a reply that long is never one word"),
                        );
                    } else if let Some(other) = seen.get(&f) {
                        if other != &key {
                            bad(&key, format!("{w:?} is already in {other}; a word has one meaning"));
                        }
                    } else {
                        seen.insert(f, key);
                    }
                }
            }
        }
        let texts = [
            ("help_text", Some(&self.help_text)),
            ("optout_reply", self.optout_reply.as_ref()),
            ("optin_reply", self.optin_reply.as_ref()),
        ];
        for (name, text) in texts {
            let Some(text) = text else { continue };
            if text.trim().is_empty() {
                let leave_out = if name == "help_text" { "" } else { "; leave it out to send none" };
                bad(&format!("replies.{name}"), format!("must not be empty{leave_out}"));
            } else if crate::sms::count_parts(text).1 > max_segments {
                bad(&format!("replies.{name}"), format!("longer than server.max_segments ({max_segments}) SMS parts"));
            }
        }
        in_range(bad, "replies.window_hours", self.window_hours, 1, 366 * 24, "hours");
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Log {
    pub level: String,
    pub format: LogFormat,
}

impl Default for Log {
    fn default() -> Self {
        Log { level: "info".into(), format: LogFormat::Text }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKey {
    pub name: String,
    #[serde(default)]
    pub key: Option<Secret>,
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// What the key may do (`send`, `read`, `admin`, `metrics`); read as
    /// strings so an unknown one is named with its place in the file.
    #[serde(default)]
    pub scopes: Option<Vec<String>>,
    /// Requests per second this key may make, on every endpoint; absent
    /// means no limit.
    #[serde(default)]
    pub rate_per_sec: Option<f64>,
    /// Requests that may come back to back after a quiet spell (needs
    /// rate_per_sec).
    #[serde(default)]
    pub burst: Option<u32>,
    /// Messages this key may submit per UTC day; absent means no quota.
    #[serde(default)]
    pub daily_quota: Option<u64>,
}

/// What an API key may do. `admin` includes every other scope and sees
/// every key's messages; the others see only what their own key sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    /// Submit messages and cancel its own.
    Send,
    /// Read its own messages and the replies to them; routes, modems, queue.
    Read,
    /// Everything, over every key's messages.
    Admin,
    /// `GET /metrics` only.
    Metrics,
}

impl Scope {
    pub const ALL: [Scope; 4] = [Scope::Send, Scope::Read, Scope::Admin, Scope::Metrics];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Send => "send",
            Scope::Read => "read",
            Scope::Admin => "admin",
            Scope::Metrics => "metrics",
        }
    }

    pub fn parse(s: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

/// A key without a `scopes` line, in a file where some key has one.
pub const DEFAULT_SCOPES: [Scope; 2] = [Scope::Send, Scope::Read];

/// An API key as the daemon uses it: its secret resolved, its scopes
/// decided, its limits checked.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyGrant {
    pub name: String,
    pub secret: Secret,
    pub scopes: BTreeSet<Scope>,
    pub rate_per_sec: Option<f64>,
    pub burst: Option<u32>,
    pub daily_quota: Option<u64>,
}

/// One `[[routes]]` entry: the fields every kind has, and `S`, the kind
/// with its own table. As parsed, `S` is the raw [`RouteTable`]; once
/// validated, it is the channel layer's typed spec (see [`RouteKinds`]).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Route<S = RouteTable> {
    pub name: String,
    /// E.164 prefixes ("+7", "+4915") this route serves; empty serves every number.
    #[serde(default)]
    pub prefixes: Vec<String>,
    /// Messages per second; absent means no limit.
    #[serde(default)]
    pub rate: Option<f64>,
    /// Messages that may go at once after a quiet spell.
    #[serde(default)]
    pub burst: Option<u32>,
    /// Submits in flight at once.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// When this route is down, its messages may go through the next route
    /// (in config order) that serves their number.
    #[serde(default)]
    pub failover: bool,
    /// `kind` and the kind's own table (`[routes.smpp]`, ...), with any
    /// other key the entry has: the kind decides which keys it takes.
    #[serde(flatten)]
    pub spec: S,
}

/// A route's `kind` and the rest of its entry as written, before the
/// channel layer reads them. Its `Debug` shows the keys only: a table may
/// hold a password.
#[derive(Clone, Default, PartialEq, Deserialize)]
#[serde(transparent)]
pub struct RouteTable(pub toml::Table);

impl std::fmt::Debug for RouteTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

/// What the route kinds make of a route's [`RouteTable`]. The channel layer
/// implements it (`channel::RouteSpec`), so this file names no channel:
/// each kind owns its table's keys, defaults and checks.
pub trait RouteKinds: Sized {
    /// Read the kind and its table, naming every problem under `key` (the
    /// route's key, `routes[0]`); `None` when there was one.
    fn parse(table: &RouteTable, key: &str, bad: &mut dyn FnMut(&str, String)) -> Option<Self>;
    /// Every problem with the table's values; relative paths are looked up
    /// under `base`.
    fn check(&self, key: &str, base: &Path, bad: &mut dyn FnMut(&str, String));
    /// Once the file is valid: make relative paths absolute under `base`
    /// and read secret files, so a running route never reads one.
    fn resolve(&mut self, base: &Path);
    /// Every file or directory the table names.
    fn paths(&self) -> Vec<&Path>;
}

fn default_concurrency() -> usize {
    32
}

/// Most messages per second a rate may say; the least is its inverse
/// (one message in about eleven days): beyond these a rate limiter cannot
/// be built.
pub const MAX_RATE: f64 = 1_000_000.0;
pub const MIN_RATE: f64 = 1.0 / MAX_RATE;
pub const HOUR: u64 = 3_600;
pub const DAY: u64 = 86_400;

/// Refuse `v` outside `lo..=hi`, naming the key and the range (NaN is
/// outside every range).
pub fn in_range<T: PartialOrd + std::fmt::Debug>(
    bad: &mut dyn FnMut(&str, String),
    key: &str,
    v: T,
    lo: T,
    hi: T,
    unit: &str,
) {
    if !(v >= lo && v <= hi) {
        let unit = if unit.is_empty() { String::new() } else { format!(" {unit}") };
        bad(key, format!("{v:?} is out of range: {lo:?} to {hi:?}{unit}"));
    }
}

/// Everything wrong with a config file, one line per problem.
#[derive(Debug, thiserror::Error)]
#[error("{}", .problems.join("\n"))]
pub struct ConfigError {
    pub problems: Vec<String>,
}

impl ConfigError {
    fn one(p: String) -> Self {
        ConfigError { problems: vec![p] }
    }
}

/// A loaded, validated config with its secrets resolved.
#[derive(Debug, Clone)]
pub struct Loaded<S> {
    pub config: Config<S>,
    pub listen: SocketAddr,
    /// Every API key with its secret, scopes and limits.
    pub keys: Vec<KeyGrant>,
    /// Things that are allowed but worth saying at start and in `config check`.
    pub notes: Vec<String>,
}

/// The most a config file may hold: far more than any real one, and a
/// bound for a path that names a device or a runaway file.
const MAX_CONFIG_BYTES: u64 = 1024 * 1024;
/// The most a key or password file may hold: one secret and a newline.
const MAX_SECRET_BYTES: u64 = 4096;

/// Read a text file of at most `limit` bytes; a longer one (or a device that
/// never ends, such as `/dev/zero`) is an error, not a hang.
fn read_bounded(path: &Path, limit: u64) -> std::io::Result<String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)?.take(limit + 1).read_to_string(&mut text)?;
    if text.len() as u64 > limit {
        return Err(std::io::Error::other(format!("longer than {limit} bytes")));
    }
    Ok(text)
}

/// A key or password file's secret, trimmed; a file longer than one secret
/// could be is refused.
pub fn read_secret_file(path: &Path) -> std::io::Result<String> {
    read_bounded(path, MAX_SECRET_BYTES).map(|s| s.trim().to_string())
}

/// A secret given either inline (`{name}`) or in a file (`{name}_file`,
/// relative to `base`), exactly one of them: its text, or a problem named
/// under `key`.
pub(crate) fn secret_or_file(
    inline: &Option<Secret>,
    file: &Option<PathBuf>,
    base: &Path,
    key: &str,
    name: &str,
    bad: &mut dyn FnMut(&str, String),
) -> Option<String> {
    match (inline, file) {
        (Some(s), None) => Some(s.expose().to_string()),
        (None, Some(f)) => {
            let f = base.join(f);
            read_secret_file(&f)
                .map_err(|e| bad(&format!("{key}.{name}_file"), format!("cannot read {}: {e}", f.display())))
                .ok()
        }
        (Some(_), Some(_)) => {
            bad(key, format!("give either {name} or {name}_file, not both"));
            None
        }
        (None, None) => {
            bad(key, format!("needs {name} or {name}_file"));
            None
        }
    }
}

impl Config {
    pub fn from_file<S: RouteKinds>(path: &Path) -> Result<Loaded<S>, ConfigError> {
        let text = read_bounded(path, MAX_CONFIG_BYTES)
            .map_err(|e| ConfigError::one(format!("{}: cannot read: {e}", path.display())))?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::from_str(&text, &path.display().to_string(), base)
    }

    /// Parse and validate `text`; `origin` names the file in messages, `base`
    /// is where relative key files are looked up.
    pub fn from_str<S: RouteKinds>(text: &str, origin: &str, base: &Path) -> Result<Loaded<S>, ConfigError> {
        let config: Config =
            toml::from_str(text).map_err(|e| ConfigError::one(format!("{origin}: {}", e.to_string().trim_end())))?;
        config.validate(origin, base)
    }

    fn validate<S: RouteKinds>(mut self, origin: &str, base: &Path) -> Result<Loaded<S>, ConfigError> {
        let mut problems = Vec::new();
        let mut bad = |key: &str, why: String| problems.push(format!("{origin}: {key}: {why}"));

        let listen = match self.server.listen.parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                bad(
                    "server.listen",
                    format!("{:?} is not an address with a port, like \"127.0.0.1:8080\"", self.server.listen),
                );
                None
            }
        };
        if self.server.max_batch == 0 {
            bad("server.max_batch", "must be at least 1".into());
        }
        if self.server.max_recipients == 0 {
            bad("server.max_recipients", "must be at least 1".into());
        }
        if self.server.max_segments == 0 || self.server.max_segments > 255 {
            bad("server.max_segments", "must be between 1 and 255 (the concatenation limit)".into());
        }
        if self.server.max_body_bytes < 1024 {
            bad("server.max_body_bytes", "must be at least 1024".into());
        }
        for (name, v) in [
            ("header_timeout_secs", self.server.header_timeout_secs),
            ("body_timeout_secs", self.server.body_timeout_secs),
            ("idle_timeout_secs", self.server.idle_timeout_secs),
        ] {
            in_range(&mut bad, &format!("server.{name}"), v, 1, HOUR, "seconds");
        }
        in_range(&mut bad, "server.max_connections", self.server.max_connections, 1, 65_536, "");
        if self.store.path.as_os_str().is_empty() {
            bad("store.path", "must not be empty".into());
        } else if let Some(dir) = self.store.path.parent()
            && !dir.as_os_str().is_empty()
            && !dir.is_dir()
        {
            bad("store.path", format!("directory {} does not exist", dir.display()));
        }
        for (key, days) in [
            ("store.retention_days", Some(self.store.retention_days)),
            ("store.inbound_retention_days", self.store.inbound_retention_days),
        ] {
            if days.is_some_and(|d| d > MAX_RETENTION_DAYS) {
                bad(key, format!("must be at most {MAX_RETENTION_DAYS} (0 keeps everything forever)"));
            }
        }
        if self.store.orphan_receipt_hours > MAX_RETENTION_DAYS * 24 {
            bad(
                "store.orphan_receipt_hours",
                format!("must be at most {} (0 keeps them forever)", MAX_RETENTION_DAYS * 24),
            );
        }
        if self.store.prune_every_minutes == 0 || self.store.prune_every_minutes > 7 * 24 * 60 {
            bad("store.prune_every_minutes", "must be between 1 and 10080 (a week)".into());
        }
        if !crate::sms::number::region_known(&self.numbers.default_region) {
            bad(
                "numbers.default_region",
                format!("{:?} is not an ISO 3166 region code such as \"RU\" or \"DE\"", self.numbers.default_region),
            );
        }
        in_range(&mut bad, "dispatch.max_attempts", self.dispatch.max_attempts, 1, 1_000, "");
        in_range(&mut bad, "dispatch.retry_base_ms", self.dispatch.retry_base_ms, 1, DAY * 1000, "ms");
        in_range(&mut bad, "dispatch.retry_max_ms", self.dispatch.retry_max_ms, 1, DAY * 1000, "ms");
        if self.dispatch.retry_max_ms < self.dispatch.retry_base_ms {
            bad("dispatch.retry_max_ms", "must be at least retry_base_ms".into());
        }
        in_range(
            &mut bad,
            "dispatch.default_validity_secs",
            self.dispatch.default_validity_secs,
            1,
            366 * DAY,
            "seconds",
        );
        in_range(&mut bad, "dispatch.shutdown_timeout_ms", self.dispatch.shutdown_timeout_ms, 0, HOUR * 1000, "ms");
        in_range(
            &mut bad,
            "dispatch.inbound_reassembly_secs",
            self.dispatch.inbound_reassembly_secs,
            1,
            7 * DAY,
            "seconds",
        );
        self.replies.check(self.server.max_segments, &mut bad);
        if tracing_subscriber::EnvFilter::try_new(&self.log.level).is_err() {
            bad(
                "log.level",
                format!("{:?} is not a level or filter (error, warn, info, debug, trace)", self.log.level),
            );
        }

        let mut keys = Vec::new();
        let mut names = HashSet::new();
        let mut secrets = HashSet::new();
        let mut notes = Vec::new();
        if self.api_keys.is_empty() {
            bad("api_keys", "at least one API key is needed: every endpoint but /healthz requires one".into());
        }
        // A file written before keys had scopes gave every key full access;
        // it keeps that until some key is given a `scopes` line.
        let legacy = !self.api_keys.is_empty() && self.api_keys.iter().all(|k| k.scopes.is_none());
        if legacy {
            notes.push(
                "no API key has a `scopes` line, so every key has full access (admin); give each key its scopes"
                    .to_string(),
            );
        }
        for (i, k) in self.api_keys.iter().enumerate() {
            let key = format!("api_keys[{i}]");
            let scopes: BTreeSet<Scope> = match &k.scopes {
                None if legacy => BTreeSet::from([Scope::Admin]),
                None => DEFAULT_SCOPES.into(),
                Some(list) => {
                    if list.is_empty() {
                        bad(&format!("{key}.scopes"), "name at least one scope: send, read, admin or metrics".into());
                    }
                    let mut set = BTreeSet::new();
                    for (j, s) in list.iter().enumerate() {
                        match Scope::parse(s) {
                            Some(scope) => {
                                set.insert(scope);
                            }
                            None => bad(
                                &format!("{key}.scopes[{j}]"),
                                format!("{s:?} is not a scope; the scopes are send, read, admin and metrics"),
                            ),
                        }
                    }
                    set
                }
            };
            if let Some(rate) = k.rate_per_sec
                && !(rate.is_finite() && rate > 0.0)
            {
                bad(&format!("{key}.rate_per_sec"), "must be a positive number of requests per second".into());
            }
            if k.burst == Some(0) {
                bad(&format!("{key}.burst"), "must be at least 1".into());
            }
            if k.burst.is_some() && k.rate_per_sec.is_none() {
                bad(&format!("{key}.burst"), "only means something with rate_per_sec".into());
            }
            if k.daily_quota == Some(0) {
                bad(
                    &format!("{key}.daily_quota"),
                    "must be at least 1; leave it out for no quota, or leave out the send scope".into(),
                );
            }
            if k.name.trim().is_empty() {
                bad(&format!("{key}.name"), "must not be empty".into());
            } else if k.name == crate::message::SYSTEM_KEY {
                bad(
                    &format!("{key}.name"),
                    format!("{:?} is reserved for the messages smsgw sends itself (auto-replies)", k.name),
                );
            } else if !names.insert(k.name.clone()) {
                bad(&format!("{key}.name"), format!("duplicate API key name {:?}", k.name));
            }
            let secret = secret_or_file(&k.key, &k.key_file, base, &key, "key", &mut bad);
            if let Some(s) = secret {
                if s.starts_with("replace-with-") {
                    bad(&format!("{key}.key"), "still the example's placeholder: set a long random secret".into());
                } else if s.len() < 16 {
                    bad(&format!("{key}.key"), "must be at least 16 characters".into());
                } else if !secrets.insert(s.clone()) {
                    bad(&format!("{key}.key"), "the same secret is used by another key".into());
                } else {
                    keys.push(KeyGrant {
                        name: k.name.clone(),
                        secret: Secret(s),
                        scopes,
                        rate_per_sec: k.rate_per_sec,
                        burst: k.burst,
                        daily_quota: k.daily_quota,
                    });
                }
            }
        }

        let mut route_names = HashSet::new();
        let mut specs = Vec::with_capacity(self.routes.len());
        if self.routes.is_empty() {
            bad("routes", "at least one route is needed".into());
        }
        for (i, r) in self.routes.iter().enumerate() {
            let key = format!("routes[{i}]");
            if r.name.trim().is_empty() {
                bad(&format!("{key}.name"), "must not be empty".into());
            } else if !route_names.insert(r.name.clone()) {
                bad(&format!("{key}.name"), format!("duplicate route name {:?}", r.name));
            }
            for (j, p) in r.prefixes.iter().enumerate() {
                let digits = p.strip_prefix('+').unwrap_or("");
                if digits.is_empty() || digits.len() > 15 || !digits.bytes().all(|b| b.is_ascii_digit()) {
                    bad(
                        &format!("{key}.prefixes[{j}]"),
                        format!("{p:?} is not an E.164 prefix such as \"+7\" or \"+4915\""),
                    );
                }
            }
            if let Some(rate) = r.rate {
                in_range(&mut bad, &format!("{key}.rate"), rate, MIN_RATE, MAX_RATE, "messages per second");
            }
            if let Some(burst) = r.burst {
                in_range(&mut bad, &format!("{key}.burst"), burst, 1, 100_000, "messages");
            }
            if r.burst.is_some() && r.rate.is_none() {
                bad(&format!("{key}.burst"), "only means something with rate".into());
            }
            in_range(&mut bad, &format!("{key}.concurrency"), r.concurrency, 1, 10_000, "");
            let spec = S::parse(&r.spec, &key, &mut bad);
            if let Some(spec) = &spec {
                spec.check(&key, base, &mut bad);
            }
            specs.push(spec);
        }

        // A subscription follows an API key's messages, or an SMPP account's
        // (written under the key `smpp:<system_id>`).
        let accounts: Vec<String> = self.smpp_server.accounts.iter().map(smpp_server::Account::api_key).collect();
        let key_names: Vec<&str> =
            self.api_keys.iter().map(|k| k.name.as_str()).chain(accounts.iter().map(String::as_str)).collect();
        self.webhooks.check(&key_names, base, &mut bad);
        check_rules(&self.rules, &route_names, &mut bad);
        self.smpp_server.check(&route_names, base, &mut bad);

        if problems.is_empty() {
            let Config {
                server,
                store,
                numbers,
                dispatch,
                log,
                policy,
                api_keys,
                routes,
                webhooks,
                replies,
                rules,
                smpp_server,
            } = self;
            let routes = routes
                .into_iter()
                .zip(specs)
                .map(|(r, spec)| {
                    let mut spec = spec.expect("every route's table was read, or a problem was named");
                    spec.resolve(base);
                    let Route { name, prefixes, rate, burst, concurrency, failover, spec: _ } = r;
                    Route { name, prefixes, rate, burst, concurrency, failover, spec }
                })
                .collect();
            let config = Config {
                server,
                store,
                numbers,
                dispatch,
                log,
                policy,
                api_keys,
                routes,
                webhooks,
                replies,
                rules,
                smpp_server,
            };
            Ok(Loaded { listen: listen.expect("a valid listen address was checked above"), keys, notes, config })
        } else {
            Err(ConfigError { problems })
        }
    }
}

/// `[[rules]]`: each compiles (every wrong field named `rules[2].steps[0].after`),
/// names are unique, and a route a rule or step names is configured.
fn check_rules(rules: &[crate::trigger::RuleSpec], routes: &HashSet<String>, bad: &mut dyn FnMut(&str, String)) {
    let mut names = HashSet::new();
    for (i, r) in rules.iter().enumerate() {
        let key = format!("rules[{i}]");
        if let Err(errs) = r.compile() {
            for e in errs {
                bad(&format!("{key}.{}", e.field), e.message);
            }
        }
        if !names.insert(r.name.as_str()) {
            bad(&format!("{key}.name"), format!("duplicate rule name {:?}", r.name));
        }
        let asked = std::iter::once(("route".to_string(), &r.route))
            .chain(r.steps.iter().enumerate().map(|(j, s)| (format!("steps[{j}].route"), &s.route)));
        for (field, route) in asked {
            if let Some(route) = route
                && !routes.contains(route)
            {
                bad(&format!("{key}.{field}"), format!("no route named {route:?} is configured"));
            }
        }
    }
}

impl Config {
    /// True when the config names an absolute path (a file or directory),
    /// its routes' tables (as far as they read) included.
    fn names_an_absolute_path<S: RouteKinds>(&self) -> bool {
        let keys = self.api_keys.iter().filter_map(|k| k.key_file.as_deref());
        let specs: Vec<S> = self.routes.iter().filter_map(|r| S::parse(&r.spec, "", &mut |_, _| {})).collect();
        let routes = specs.iter().flat_map(|s| s.paths());
        let hooks = self.webhooks.subscriptions.iter().filter_map(|s| s.secret_file.as_deref());
        let smpp = self.smpp_server.paths();
        std::iter::once(self.store.path.as_path())
            .chain(keys)
            .chain(routes)
            .chain(hooks)
            .chain(smpp)
            .any(Path::is_absolute)
    }
}

/// Parse and validate `text` as [`Config::from_str`] does, with relative paths looked up under a
/// directory that does not exist, so that no file is read; `None`, with nothing validated, when
/// the text names an absolute path. For fuzzing and property tests, which must not read whatever
/// file a generated config happens to name.
#[doc(hidden)]
pub fn check_without_files<S: RouteKinds>(text: &str) -> Option<Result<Loaded<S>, ConfigError>> {
    if toml::from_str::<Config>(text).is_ok_and(|c| c.names_an_absolute_path::<S>()) {
        return None;
    }
    Some(Config::from_str(text, "check.toml", Path::new("/nonexistent/smsgw-config-check")))
}

impl<S> Route<S> {
    /// True when this route may carry a message to `e164`.
    pub fn serves(&self, e164: &str) -> bool {
        serves(&self.prefixes, e164)
    }
}

/// True when a route with these `prefixes` may carry a message to `e164`:
/// no prefixes serve every number.
pub fn serves(prefixes: &[String], e164: &str) -> bool {
    prefixes.is_empty() || prefixes.iter().any(|p| e164.starts_with(p.as_str()))
}

#[cfg(test)]
mod policy_tests {
    use super::Policy;
    use crate::message::Priority;

    fn policy(text: &str) -> Result<Policy, String> {
        toml::from_str::<Policy>(text).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_quiet_promotions_at_night_and_cap_nothing() {
        let p = policy("").unwrap();
        assert_eq!(p.quiet_hours.of(Priority::Promotional).map(|w| w.to_text()).as_deref(), Some("21:00-09:00"));
        assert_eq!(p.quiet_hours.of(Priority::Transactional), None);
        assert_eq!(p.quiet_hours.of(Priority::Otp), None);
        assert_eq!(p.caps.longest_ms(), None);
        assert_eq!(p.default_tz, super::machine_tz());
    }

    #[test]
    fn reads_zones_windows_and_caps() {
        let p = policy(
            "default_tz = \"Asia/Vladivostok\"\n[quiet_hours]\npromotional = \"none\"\ntransactional = \"23:00-07:00\"\n\
             [caps]\npromotional = { count = 2, days = 30 }\ntransactional = { count = 5, hours = 1 }\n",
        )
        .unwrap();
        assert_eq!(p.default_tz, chrono_tz::Asia::Vladivostok);
        assert_eq!(p.quiet_hours.of(Priority::Promotional), None);
        assert_eq!(p.quiet_hours.of(Priority::Transactional).map(|w| w.to_text()).as_deref(), Some("23:00-07:00"));
        assert_eq!(p.caps.of(Priority::Promotional).map(|c| (c.count, c.window_ms)), Some((2, 30 * 86_400_000)));
        assert_eq!(p.caps.longest_ms(), Some(30 * 86_400_000));
    }

    #[test]
    fn refusals_name_the_key() {
        for (text, key) in [
            ("default_tz = \"Mars/Olympus\"", "policy.default_tz"),
            ("[quiet_hours]\notp = \"21:00-09:00\"", "policy.quiet_hours.otp"),
            ("[quiet_hours]\npromotional = \"9pm-9am\"", "policy.quiet_hours.promotional"),
            ("[quiet_hours]\npromotional = \"09:00-09:00\"", "policy.quiet_hours.promotional"),
            ("[caps]\npromotional = { count = 2 }", "policy.caps.promotional"),
            ("[caps]\npromotional = { count = 2, days = 1, hours = 1 }", "policy.caps.promotional"),
            ("[caps]\npromotional = { count = 0, days = 1 }", "policy.caps.promotional.count"),
            ("[caps]\npromotional = { count = 1, days = 401 }", "policy.caps.promotional"),
        ] {
            let err = policy(text).expect_err(text);
            assert!(err.contains(key), "{text}: {err}");
        }
    }
}
