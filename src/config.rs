//! The configuration file: one TOML document, its types and defaults, and the
//! validation that names the key and the reason for every problem it finds.

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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
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
    pub api_keys: Vec<ApiKey>,
    #[serde(default)]
    pub routes: Vec<Route>,
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

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RouteKind {
    Sim,
    Smpp,
    Modem,
}

impl RouteKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RouteKind::Sim => "sim",
            RouteKind::Smpp => "smpp",
            RouteKind::Modem => "modem",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    pub name: String,
    pub kind: RouteKind,
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
    #[serde(default)]
    pub sim: Option<SimRoute>,
    #[serde(default)]
    pub smpp: Option<SmppRoute>,
    #[serde(default)]
    pub modem: Option<ModemRoute>,
    /// When this route is down, its messages may go through the next route
    /// (in config order) that serves their number.
    #[serde(default)]
    pub failover: bool,
}

fn default_concurrency() -> usize {
    32
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimRoute {
    pub submit_delay_ms: u64,
    pub delivery_delay_ms: u64,
    pub fail_fraction: f64,
    pub temporary_fail_fraction: f64,
    pub undelivered_fraction: f64,
    /// Append one JSON line per submitted part to this file.
    pub record: Option<PathBuf>,
}

impl Default for SimRoute {
    fn default() -> Self {
        SimRoute {
            submit_delay_ms: 0,
            delivery_delay_ms: 1_000,
            fail_fraction: 0.0,
            temporary_fail_fraction: 0.0,
            undelivered_fraction: 0.0,
            record: None,
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum BindMode {
    /// One transceiver session per bind.
    Transceiver,
    /// A transmitter and a receiver session per bind.
    TransmitterReceiver,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum LongMessages {
    /// One submit_sm per part with a concatenation UDH (esm_class 0x40).
    Udh,
    /// One submit_sm per part with sar_* TLVs.
    Sar,
    /// The whole text in one submit_sm's message_payload TLV.
    Payload,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum GsmCoding {
    /// data_coding 0 carrying GSM 03.38 septets, one per octet.
    Gsm7,
    /// data_coding 0 carrying Latin-1 bytes (carriers that read 0 as Latin-1).
    Latin1AsDefault,
    /// data_coding 3 (Latin-1) when the text fits Latin-1.
    Latin1,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmppRoute {
    pub host: String,
    #[serde(default = "default_smpp_port")]
    pub port: u16,
    pub system_id: String,
    #[serde(default)]
    pub password: Option<Secret>,
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    #[serde(default)]
    pub system_type: String,
    #[serde(default = "default_bind_mode")]
    pub bind_mode: BindMode,
    #[serde(default)]
    pub address_range: String,
    /// Sessions (binds) to open; all are used.
    #[serde(default = "one")]
    pub binds: usize,
    /// Outstanding submit_sm per bind.
    #[serde(default = "default_window")]
    pub window: usize,
    /// submit_sm per second over all binds (the carrier's limit); absent = none.
    #[serde(default)]
    pub max_submits_per_sec: Option<f64>,
    #[serde(default = "default_enquire_link")]
    pub enquire_link_secs: u64,
    /// How long a submit_sm_resp, bind or enquire_link answer may take.
    #[serde(default = "default_response_timeout")]
    pub response_timeout_secs: u64,
    #[serde(default = "default_reconnect_min")]
    pub reconnect_min_ms: u64,
    #[serde(default = "default_reconnect_max")]
    pub reconnect_max_ms: u64,
    /// After a bind refused for bad credentials, wait this long.
    #[serde(default = "default_bind_refused")]
    pub bind_refused_retry_secs: u64,
    #[serde(default = "default_gsm_coding")]
    pub gsm_coding: GsmCoding,
    #[serde(default = "default_long_messages")]
    pub long_messages: LongMessages,
    /// Sender used when a message has no `from`.
    #[serde(default)]
    pub default_source: Option<String>,
    /// Override the TON/NPI chosen from the sender's form.
    #[serde(default)]
    pub source_ton: Option<u8>,
    #[serde(default)]
    pub source_npi: Option<u8>,
    #[serde(default = "yes")]
    pub registered_delivery: bool,
    /// Send each message's remaining validity as submit_sm validity_period
    /// (relative form); false leaves it to the carrier's default.
    #[serde(default = "yes")]
    pub validity_period: bool,
    /// How this carrier writes ids: "same", "hex_in_resp" (receipts in
    /// decimal) or "decimal_in_resp" (receipts in hex).
    #[serde(default = "default_id_form")]
    pub receipt_ids: crate::channel::smpp::receipt::IdForm,
    /// Unbind and wait at most this long for answers on stop.
    #[serde(default = "default_unbind_timeout")]
    pub unbind_timeout_ms: u64,
    /// Bind over TLS.
    #[serde(default)]
    pub tls: bool,
    /// PEM file of the CA(s) to trust for the carrier's certificate; without
    /// it the system's roots are used.
    #[serde(default)]
    pub tls_ca_file: Option<PathBuf>,
    /// Name to check the certificate against (default: host).
    #[serde(default)]
    pub tls_server_name: Option<String>,
}

fn default_smpp_port() -> u16 {
    2775
}
fn default_bind_mode() -> BindMode {
    BindMode::Transceiver
}
fn one() -> usize {
    1
}
fn default_window() -> usize {
    10
}
fn default_enquire_link() -> u64 {
    30
}
fn default_response_timeout() -> u64 {
    30
}
fn default_reconnect_min() -> u64 {
    1_000
}
fn default_reconnect_max() -> u64 {
    60_000
}
fn default_bind_refused() -> u64 {
    300
}
fn default_gsm_coding() -> GsmCoding {
    GsmCoding::Gsm7
}
fn default_long_messages() -> LongMessages {
    LongMessages::Udh
}
fn yes() -> bool {
    true
}
fn default_id_form() -> crate::channel::smpp::receipt::IdForm {
    crate::channel::smpp::receipt::IdForm::Same
}
fn default_unbind_timeout() -> u64 {
    5_000
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModemRoute {
    /// Serial ports: paths or globs such as "/dev/smsgw/*-if02"; a modem
    /// that appears under a glob later is picked up.
    pub ports: Vec<String>,
    #[serde(default = "default_baud")]
    pub baud: u32,
    /// SIM PIN, if the SIMs need one. One a SIM refused is never sent to
    /// that SIM again until this changes; none is sent to a SIM with only
    /// one attempt left.
    #[serde(default)]
    pub pin: Option<Secret>,
    /// A directory of modem profiles (*.toml) added to the built-in ones.
    #[serde(default)]
    pub profiles_dir: Option<PathBuf>,
    /// Per-modem caps in SMS (parts), as SIM plans count them.
    #[serde(default)]
    pub per_minute: Option<u32>,
    #[serde(default)]
    pub per_day: Option<u32>,
    /// Send to these numbers from a SIM whose IMSI starts with imsi_prefix.
    #[serde(default)]
    pub prefer: Vec<Preference>,
    /// Ask for status reports (delivery receipts).
    #[serde(default = "yes")]
    pub status_reports: bool,
    #[serde(default = "default_health")]
    pub health_interval_secs: u64,
    #[serde(default = "default_registration")]
    pub registration_timeout_secs: u64,
    /// How long one AT+CMGS may take before the modem is checked and, if it
    /// does not answer, reopened (the message goes back to the queue).
    #[serde(default = "default_send_timeout")]
    pub send_timeout_secs: u64,
    /// How long a modem that cannot be used until someone acts (no SIM, a
    /// PIN missing or refused) waits before it is opened and looked at again.
    #[serde(default = "default_retry")]
    pub retry_secs: u64,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Preference {
    pub prefix: String,
    pub imsi_prefix: String,
}

fn default_baud() -> u32 {
    115_200
}
fn default_health() -> u64 {
    30
}
fn default_send_timeout() -> u64 {
    60
}
fn default_retry() -> u64 {
    60
}

fn default_registration() -> u64 {
    120
}

/// Most messages per second a rate may say; the least is its inverse
/// (one message in about eleven days): beyond these a rate limiter cannot
/// be built.
const MAX_RATE: f64 = 1_000_000.0;
const MIN_RATE: f64 = 1.0 / MAX_RATE;
const HOUR: u64 = 3_600;
const DAY: u64 = 86_400;

/// Refuse `v` outside `lo..=hi`, naming the key and the range (NaN is
/// outside every range).
fn in_range<T: PartialOrd + std::fmt::Debug>(
    bad: &mut impl FnMut(&str, String),
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
pub struct Loaded {
    pub config: Config,
    pub listen: SocketAddr,
    /// Every API key with its secret, scopes and limits.
    pub keys: Vec<KeyGrant>,
    /// Things that are allowed but worth saying at start and in `config check`.
    pub notes: Vec<String>,
}

impl Config {
    pub fn from_file(path: &Path) -> Result<Loaded, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::one(format!("{}: cannot read: {e}", path.display())))?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::from_str(&text, &path.display().to_string(), base)
    }

    /// Parse and validate `text`; `origin` names the file in messages, `base`
    /// is where relative key files are looked up.
    pub fn from_str(text: &str, origin: &str, base: &Path) -> Result<Loaded, ConfigError> {
        let config: Config =
            toml::from_str(text).map_err(|e| ConfigError::one(format!("{origin}: {}", e.to_string().trim_end())))?;
        config.validate(origin, base)
    }

    fn validate(self, origin: &str, base: &Path) -> Result<Loaded, ConfigError> {
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
            } else if !names.insert(k.name.clone()) {
                bad(&format!("{key}.name"), format!("duplicate API key name {:?}", k.name));
            }
            let secret = match (&k.key, &k.key_file) {
                (Some(s), None) => Some(s.expose().to_string()),
                (None, Some(f)) => {
                    let f = if f.is_absolute() { f.clone() } else { base.join(f) };
                    match std::fs::read_to_string(&f) {
                        Ok(s) => Some(s.trim().to_string()),
                        Err(e) => {
                            bad(&format!("{key}.key_file"), format!("cannot read {}: {e}", f.display()));
                            None
                        }
                    }
                }
                (Some(_), Some(_)) => {
                    bad(&key, "give either key or key_file, not both".into());
                    None
                }
                (None, None) => {
                    bad(&key, "needs key or key_file".into());
                    None
                }
            };
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
            let other_tables = [(RouteKind::Sim, r.sim.is_some(), "sim"), (RouteKind::Smpp, r.smpp.is_some(), "smpp")];
            for (kind, present, table) in other_tables {
                if present && kind != r.kind {
                    bad(
                        &format!("{key}.{table}"),
                        format!("only for kind = \"{table}\"; this route is {}", r.kind.as_str()),
                    );
                }
            }
            match r.kind {
                RouteKind::Modem => match &r.modem {
                    None => bad(&format!("{key}.modem"), "kind = \"modem\" needs a [routes.modem] table".into()),
                    Some(m) => {
                        let k = format!("{key}.modem");
                        if m.ports.is_empty() {
                            bad(&format!("{k}.ports"), "name at least one serial port or glob".into());
                        }
                        for (j, p) in m.ports.iter().enumerate() {
                            if p.contains(['*', '?', '[']) && glob::Pattern::new(p).is_err() {
                                bad(&format!("{k}.ports[{j}]"), format!("{p:?} is not a valid glob"));
                            }
                        }
                        if let Some(pin) = &m.pin
                            && (!(4..=8).contains(&pin.expose().len())
                                || !pin.expose().bytes().all(|b| b.is_ascii_digit()))
                        {
                            bad(&format!("{k}.pin"), "a SIM PIN has 4 to 8 digits".into());
                        }
                        if let Some(d) = &m.profiles_dir
                            && let Err(e) = crate::channel::modem::profile::load(Some(&if d.is_absolute() {
                                d.clone()
                            } else {
                                base.join(d)
                            }))
                        {
                            bad(&format!("{k}.profiles_dir"), e);
                        }
                        for (name, v) in [
                            ("health_interval_secs", m.health_interval_secs),
                            ("registration_timeout_secs", m.registration_timeout_secs),
                            ("send_timeout_secs", m.send_timeout_secs),
                            ("retry_secs", m.retry_secs),
                        ] {
                            in_range(&mut bad, &format!("{k}.{name}"), v, 1, HOUR, "seconds");
                        }
                        in_range(&mut bad, &format!("{k}.baud"), m.baud, 300, 4_000_000, "");
                        if let Some(n) = m.per_minute {
                            in_range(&mut bad, &format!("{k}.per_minute"), n, 1, 1_000_000, "SMS");
                        }
                        if let Some(n) = m.per_day {
                            in_range(&mut bad, &format!("{k}.per_day"), n, 1, 10_000_000, "SMS");
                        }
                    }
                },
                RouteKind::Smpp => match &r.smpp {
                    None => bad(&format!("{key}.smpp"), "kind = \"smpp\" needs a [routes.smpp] table".into()),
                    Some(s) => {
                        let k = format!("{key}.smpp");
                        if s.host.trim().is_empty() {
                            bad(&format!("{k}.host"), "must not be empty".into());
                        }
                        if s.system_id.is_empty() || s.system_id.len() > 15 {
                            bad(&format!("{k}.system_id"), "must be 1 to 15 characters".into());
                        }
                        if s.system_type.len() > 12 {
                            bad(&format!("{k}.system_type"), "at most 12 characters".into());
                        }
                        if s.address_range.len() > 40 {
                            bad(&format!("{k}.address_range"), "at most 40 characters".into());
                        }
                        match (&s.password, &s.password_file) {
                            (Some(p), None) if p.expose().len() > 8 => {
                                bad(&format!("{k}.password"), "SMPP 3.4 passwords have at most 8 characters".into())
                            }
                            (Some(_), Some(_)) => bad(&k, "give either password or password_file, not both".into()),
                            (None, Some(f)) => {
                                let f = if f.is_absolute() { f.clone() } else { base.join(f) };
                                if let Err(e) = std::fs::read_to_string(&f) {
                                    bad(&format!("{k}.password_file"), format!("cannot read {}: {e}", f.display()));
                                }
                            }
                            _ => {}
                        }
                        if s.binds == 0 || s.binds > 64 {
                            bad(&format!("{k}.binds"), "must be 1 to 64".into());
                        }
                        if s.window == 0 || s.window > 1000 {
                            bad(&format!("{k}.window"), "must be 1 to 1000".into());
                        }
                        if let Some(rate) = s.max_submits_per_sec {
                            in_range(
                                &mut bad,
                                &format!("{k}.max_submits_per_sec"),
                                rate,
                                MIN_RATE,
                                MAX_RATE,
                                "per second",
                            );
                        }
                        in_range(&mut bad, &format!("{k}.enquire_link_secs"), s.enquire_link_secs, 1, HOUR, "seconds");
                        in_range(
                            &mut bad,
                            &format!("{k}.response_timeout_secs"),
                            s.response_timeout_secs,
                            1,
                            HOUR,
                            "seconds",
                        );
                        in_range(&mut bad, &format!("{k}.reconnect_min_ms"), s.reconnect_min_ms, 1, HOUR * 1000, "ms");
                        in_range(&mut bad, &format!("{k}.reconnect_max_ms"), s.reconnect_max_ms, 1, HOUR * 1000, "ms");
                        if s.reconnect_max_ms < s.reconnect_min_ms {
                            bad(&format!("{k}.reconnect_max_ms"), "must be at least reconnect_min_ms".into());
                        }
                        in_range(
                            &mut bad,
                            &format!("{k}.bind_refused_retry_secs"),
                            s.bind_refused_retry_secs,
                            1,
                            DAY,
                            "seconds",
                        );
                        in_range(&mut bad, &format!("{k}.unbind_timeout_ms"), s.unbind_timeout_ms, 0, 60_000, "ms");
                        if let Some(ca) = &s.tls_ca_file {
                            let ca = if ca.is_absolute() { ca.clone() } else { base.join(ca) };
                            if !s.tls {
                                bad(&format!("{k}.tls_ca_file"), "only means something with tls = true".into());
                            } else if let Err(e) = std::fs::metadata(&ca) {
                                bad(&format!("{k}.tls_ca_file"), format!("cannot read {}: {e}", ca.display()));
                            }
                        }
                        if let Some(src) = &s.default_source
                            && (src.is_empty() || src.len() > 20)
                        {
                            bad(&format!("{k}.default_source"), "must be 1 to 20 characters".into());
                        }
                    }
                },
                RouteKind::Sim => {
                    let s = r.sim.clone().unwrap_or_default();
                    for (name, v) in [
                        ("fail_fraction", s.fail_fraction),
                        ("temporary_fail_fraction", s.temporary_fail_fraction),
                        ("undelivered_fraction", s.undelivered_fraction),
                    ] {
                        in_range(&mut bad, &format!("{key}.sim.{name}"), v, 0.0, 1.0, "");
                    }
                    in_range(&mut bad, &format!("{key}.sim.submit_delay_ms"), s.submit_delay_ms, 0, HOUR * 1000, "ms");
                    in_range(
                        &mut bad,
                        &format!("{key}.sim.delivery_delay_ms"),
                        s.delivery_delay_ms,
                        0,
                        DAY * 1000,
                        "ms",
                    );
                    if let Some(rec) = &s.record
                        && let Some(dir) = rec.parent()
                        && !dir.as_os_str().is_empty()
                        && !dir.is_dir()
                    {
                        bad(&format!("{key}.sim.record"), format!("directory {} does not exist", dir.display()));
                    }
                }
            }
        }

        if problems.is_empty() {
            let mut config = self;
            // Resolve password files now, so a running route never reads one.
            for r in &mut config.routes {
                if let Some(m) = &mut r.modem
                    && let Some(d) = &m.profiles_dir
                    && !d.is_absolute()
                {
                    m.profiles_dir = Some(base.join(d));
                }
                if let Some(s) = &mut r.smpp
                    && let Some(ca) = &s.tls_ca_file
                    && !ca.is_absolute()
                {
                    s.tls_ca_file = Some(base.join(ca));
                }
                if let Some(s) = &mut r.smpp
                    && s.password.is_none()
                    && let Some(f) = &s.password_file
                {
                    let f = if f.is_absolute() { f.clone() } else { base.join(f) };
                    s.password = std::fs::read_to_string(f).ok().map(|p| Secret(p.trim().to_string()));
                }
            }
            Ok(Loaded { listen: listen.expect("a valid listen address was checked above"), keys, notes, config })
        } else {
            Err(ConfigError { problems })
        }
    }
}

impl Config {
    /// Every file or directory the config names.
    fn paths(&self) -> impl Iterator<Item = &Path> {
        let keys = self.api_keys.iter().filter_map(|k| k.key_file.as_deref());
        let routes = self.routes.iter().flat_map(|r| {
            [
                r.sim.as_ref().and_then(|s| s.record.as_deref()),
                r.smpp.as_ref().and_then(|s| s.password_file.as_deref()),
                r.smpp.as_ref().and_then(|s| s.tls_ca_file.as_deref()),
                r.modem.as_ref().and_then(|m| m.profiles_dir.as_deref()),
            ]
            .into_iter()
            .flatten()
        });
        std::iter::once(self.store.path.as_path()).chain(keys).chain(routes)
    }
}

/// Parse and validate `text` as [`Config::from_str`] does, with relative paths looked up under a
/// directory that does not exist, so that no file is read; `None`, with nothing validated, when
/// the text names an absolute path. For fuzzing and property tests, which must not read whatever
/// file a generated config happens to name.
#[doc(hidden)]
pub fn check_without_files(text: &str) -> Option<Result<Loaded, ConfigError>> {
    if toml::from_str::<Config>(text).is_ok_and(|c| c.paths().any(Path::is_absolute)) {
        return None;
    }
    Some(Config::from_str(text, "check.toml", Path::new("/nonexistent/smsgw-config-check")))
}

impl Route {
    /// True when `other` needs the same channel (same kind and connection
    /// settings), so a reload can keep this route's binds or modems.
    pub fn same_channel(&self, other: &Route) -> bool {
        self.kind == other.kind && self.sim == other.sim && self.smpp == other.smpp && self.modem == other.modem
    }

    /// True when the route counts what it sent against a cap (SIM plans), so
    /// it needs the last day's sends from the store when it starts.
    pub fn counts_sends(&self) -> bool {
        self.modem.as_ref().is_some_and(|m| m.per_minute.is_some() || m.per_day.is_some())
    }

    /// True when this route may carry a message to `e164`.
    pub fn serves(&self, e164: &str) -> bool {
        self.prefixes.is_empty() || self.prefixes.iter().any(|p| e164.starts_with(p.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> Result<Loaded, ConfigError> {
        Config::from_str(text, "t.toml", Path::new("."))
    }

    const MIN: &str = r#"
[[api_keys]]
name = "a"
key = "0123456789abcdef"
[[routes]]
name = "r"
kind = "sim"
"#;

    #[test]
    fn demo_config_is_valid() {
        let l = check(DEMO_TOML).expect("demo config must validate");
        assert!(l.listen.ip().is_loopback());
    }

    #[test]
    fn minimal_config_takes_defaults() {
        let l = check(MIN).unwrap();
        assert_eq!(l.config.server.max_segments, 10);
        let keys: Vec<(&str, &str)> = l.keys.iter().map(|k| (k.name.as_str(), k.secret.expose())).collect();
        assert_eq!(keys, vec![("a", "0123456789abcdef")]);
    }

    #[test]
    fn unknown_key_is_named() {
        let e = check(&format!("{MIN}\nbogus = 1\n")).unwrap_err().to_string();
        assert!(e.contains("bogus"), "{e}");
    }

    #[test]
    fn wrong_type_is_named() {
        let e = check(&format!("[server]\nmax_batch = \"many\"\n{MIN}")).unwrap_err().to_string();
        assert!(e.contains("max_batch"), "{e}");
    }

    #[test]
    fn collects_every_problem() {
        let text = r#"
[server]
listen = "localhost"
[numbers]
default_region = "XX"
[[api_keys]]
name = "a"
key = "short"
[[routes]]
name = "r"
kind = "sim"
prefixes = ["7"]
[[routes]]
name = "r"
kind = "sim"
[routes.sim]
fail_fraction = 2.0
"#;
        let e = check(text).unwrap_err();
        let all = e.to_string();
        for needle in [
            "server.listen",
            "numbers.default_region",
            "api_keys[0].key",
            "routes[0].prefixes[0]",
            "routes[1].name: duplicate",
            "routes[1].sim.fail_fraction",
        ] {
            assert!(all.contains(needle), "missing {needle} in:\n{all}");
        }
    }

    #[test]
    fn missing_key_file_is_named() {
        let text = MIN.replace("key = \"0123456789abcdef\"", "key_file = \"/nonexistent/key\"");
        let e = check(&text).unwrap_err().to_string();
        assert!(e.contains("api_keys[0].key_file") && e.contains("/nonexistent/key"), "{e}");
    }

    #[test]
    fn smpp_route_keys() {
        let text = MIN.replace(
            "kind = \"sim\"",
            "kind = \"smpp\"\n[routes.smpp]\nhost = \"h\"\nsystem_id = \"u\"\npassword = \"toolongpass\"\nreceipt_ids = \"hex_in_resp\"\nwindow = 0",
        );
        let e = check(&text).unwrap_err().to_string();
        assert!(e.contains("routes[0].smpp.password") && e.contains("routes[0].smpp.window"), "{e}");
        let ok = MIN.replace("kind = \"sim\"", "kind = \"smpp\"\n[routes.smpp]\nhost = \"h\"\nsystem_id = \"u\"");
        let l = check(&ok).unwrap();
        assert_eq!(l.config.routes[0].smpp.as_ref().unwrap().window, 10);
        let wrong_table = format!("{MIN}[routes.smpp]\nhost = \"h\"\nsystem_id = \"u\"\n");
        assert!(check(&wrong_table).unwrap_err().to_string().contains("routes[0].smpp: only for kind"));
    }

    #[test]
    fn a_modem_pin_is_digits_and_a_retry_pause_is_above_zero() {
        let modem = |keys: &str| {
            MIN.replace("kind = \"sim\"", &format!("kind = \"modem\"\n[routes.modem]\nports = [\"/dev/x\"]\n{keys}"))
        };
        // A quote would end the AT+CPIN argument early.
        let e = check(&modem("pin = \"12\\\"4\"\nretry_secs = 0")).unwrap_err().to_string();
        assert!(e.contains("routes[0].modem.pin") && e.contains("retry_secs"), "{e}");
        let l = check(&modem("pin = \"0042\"")).unwrap();
        assert_eq!(l.config.routes[0].modem.as_ref().unwrap().retry_secs, 60);
    }

    #[test]
    fn scopes_default_to_full_access_only_in_a_file_without_any() {
        let l = check(MIN).unwrap();
        assert_eq!(l.keys[0].scopes, BTreeSet::from([Scope::Admin]));
        assert!(l.notes.iter().any(|n| n.contains("scopes")), "{:?}", l.notes);
        let two = format!("{MIN}[[api_keys]]\nname = \"prom\"\nkey = \"fedcba9876543210\"\nscopes = [\"metrics\"]\n");
        let l = check(&two).unwrap();
        assert_eq!(l.keys[0].scopes, BTreeSet::from(DEFAULT_SCOPES));
        assert_eq!(l.keys[1].scopes, BTreeSet::from([Scope::Metrics]));
        assert!(l.notes.is_empty(), "{:?}", l.notes);
    }

    #[test]
    fn bad_scopes_and_limits_are_named() {
        let text = MIN.replace(
            "key = \"0123456789abcdef\"",
            "key = \"0123456789abcdef\"\nscopes = [\"send\", \"write\"]\nburst = 0\ndaily_quota = 0\nrate_per_sec = -1",
        );
        let e = check(&text).unwrap_err().to_string();
        for needle in [
            "api_keys[0].scopes[1]",
            "\"write\"",
            "api_keys[0].burst",
            "api_keys[0].daily_quota",
            "api_keys[0].rate_per_sec",
        ] {
            assert!(e.contains(needle), "{needle} not in:\n{e}");
        }
        let empty = MIN.replace("key = \"0123456789abcdef\"", "key = \"0123456789abcdef\"\nscopes = []");
        assert!(check(&empty).unwrap_err().to_string().contains("api_keys[0].scopes"));
    }

    #[test]
    fn secrets_never_print() {
        let text = MIN.replace(
            "kind = \"sim\"",
            "kind = \"smpp\"\n[routes.smpp]\nhost = \"h\"\nsystem_id = \"u\"\npassword = \"pw7x2qzk\"",
        );
        let l = check(&text).unwrap();
        let shown =
            format!("{l:?} {}", serde_json::to_string(&l.config.routes[0].smpp.as_ref().unwrap().password).unwrap());
        assert!(!shown.contains("pw7x2qzk") && !shown.contains("0123456789abcdef"), "{shown}");
        assert_eq!(l.config.routes[0].smpp.as_ref().unwrap().password.as_ref().unwrap().expose(), "pw7x2qzk");
    }

    #[test]
    fn prefixes_choose_routes() {
        let l = check(&MIN.replace("kind = \"sim\"", "kind = \"sim\"\nprefixes = [\"+7\"]")).unwrap();
        assert!(l.config.routes[0].serves("+79161234567"));
        assert!(!l.config.routes[0].serves("+4915112345678"));
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        /// Lines of TOML-ish text: the sections, keys and values a config has, in any order, and
        /// some that are no TOML at all.
        fn toml_ish() -> impl Strategy<Value = String> {
            let header = prop::sample::select(vec![
                "[server]",
                "[store]",
                "[numbers]",
                "[dispatch]",
                "[log]",
                "[[api_keys]]",
                "[[routes]]",
                "[routes.sim]",
                "[routes.smpp]",
                "[routes.modem]",
                "[[routes.modem.prefer]]",
                "[x]",
                "[[",
            ])
            .prop_map(String::from);
            let key = prop::sample::select(vec![
                "listen",
                "max_body_bytes",
                "max_batch",
                "max_segments",
                "path",
                "default_region",
                "max_attempts",
                "retry_base_ms",
                "retry_max_ms",
                "level",
                "name",
                "key",
                "key_file",
                "kind",
                "prefixes",
                "rate",
                "burst",
                "concurrency",
                "host",
                "system_id",
                "password",
                "password_file",
                "binds",
                "window",
                "tls",
                "tls_ca_file",
                "ports",
                "pin",
                "profiles_dir",
                "record",
                "fail_fraction",
                "bogus",
            ]);
            let value = prop::sample::select(vec![
                "\"sim\"",
                "\"smpp\"",
                "\"modem\"",
                "\"127.0.0.1:8080\"",
                "\"RU\"",
                "\"0123456789abcdef\"",
                "\"a\"",
                "\"\"",
                "\"/dev/ttyUSB*\"",
                "\"[\"",
                "\"info,x=trace\"",
                "\"k\"",
                "\"1234\"",
                "0",
                "1",
                "-1",
                "300",
                "1e309",
                "nan",
                "inf",
                "0.5",
                "true",
                "[\"+7\", \"x\"]",
                "[]",
                "{}",
                "18446744073709551616",
                "\"../k\"",
            ]);
            let assignment = (key, value).prop_map(|(k, v)| format!("{k} = {v}"));
            let line = prop_oneof![2 => header, 6 => assignment, 1 => "\\PC{0,20}".prop_map(String::from)];
            prop::collection::vec(line, 0..30).prop_map(|lines| lines.join("\n"))
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

            /// Any text: a config, or problems that each name the file, and never a panic.
            #[test]
            fn checking_any_text_never_panics(text in prop_oneof![toml_ish(), "\\PC{0,200}"]) {
                if let Some(Err(e)) = check_without_files(&text) {
                    prop_assert!(!e.problems.is_empty());
                    prop_assert!(e.problems.iter().all(|p| p.starts_with("check.toml: ")), "{:?}", e.problems);
                }
            }

            /// A valid config behind any lines: the generated sections and keys get checked
            /// against a config that otherwise passes.
            #[test]
            fn one_added_line_is_checked(extra in toml_ish()) {
                let text = format!("{extra}\n{MIN}");
                let _ = check_without_files(&text);
            }
        }

        #[test]
        fn absolute_paths_are_not_followed() {
            let text = format!("[store]\npath = \"/var/lib/x.db\"\n{MIN}");
            assert!(check_without_files(&text).is_none());
            assert!(matches!(check_without_files(MIN), Some(Ok(_))));
            let text = MIN.replace("key = \"0123456789abcdef\"", "key_file = \"k\"");
            let e = check_without_files(&text).and_then(Result::err).map(|e| e.problems.join("; "));
            assert!(e.as_deref().is_some_and(|e| e.contains("api_keys[0].key_file")), "{e:?}");
        }
    }
}
