//! The SMPP route's table (`[routes.smpp]`): its keys, defaults and checks,
//! and the password file read once the config is valid.

use super::receipt::IdForm;
use crate::config::{DAY, HOUR, MAX_RATE, MIN_RATE, Secret, in_range};
use serde::Deserialize;
use std::path::{Path, PathBuf};

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
    pub receipt_ids: IdForm,
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
fn default_id_form() -> IdForm {
    IdForm::Same
}
fn default_unbind_timeout() -> u64 {
    5_000
}

impl SmppRoute {
    /// Every problem with this table, each named under `key` (the route's
    /// key, `routes[0]`); relative paths are looked up under `base`.
    pub fn check(&self, key: &str, base: &Path, bad: &mut dyn FnMut(&str, String)) {
        let s = self;
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
                if let Err(e) = crate::config::read_secret_file(&f) {
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
            in_range(bad, &format!("{k}.max_submits_per_sec"), rate, MIN_RATE, MAX_RATE, "per second");
        }
        in_range(bad, &format!("{k}.enquire_link_secs"), s.enquire_link_secs, 1, HOUR, "seconds");
        in_range(bad, &format!("{k}.response_timeout_secs"), s.response_timeout_secs, 1, HOUR, "seconds");
        in_range(bad, &format!("{k}.reconnect_min_ms"), s.reconnect_min_ms, 1, HOUR * 1000, "ms");
        in_range(bad, &format!("{k}.reconnect_max_ms"), s.reconnect_max_ms, 1, HOUR * 1000, "ms");
        if s.reconnect_max_ms < s.reconnect_min_ms {
            bad(&format!("{k}.reconnect_max_ms"), "must be at least reconnect_min_ms".into());
        }
        in_range(bad, &format!("{k}.bind_refused_retry_secs"), s.bind_refused_retry_secs, 1, DAY, "seconds");
        in_range(bad, &format!("{k}.unbind_timeout_ms"), s.unbind_timeout_ms, 0, 60_000, "ms");
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

    /// Make relative paths absolute under `base` and read the password file,
    /// so a running route never reads one.
    pub fn resolve(&mut self, base: &Path) {
        let s = self;
        if let Some(ca) = &s.tls_ca_file
            && !ca.is_absolute()
        {
            s.tls_ca_file = Some(base.join(ca));
        }
        if s.password.is_none()
            && let Some(f) = &s.password_file
        {
            let f = if f.is_absolute() { f.clone() } else { base.join(f) };
            s.password = crate::config::read_secret_file(&f).ok().map(Secret::new);
        }
    }

    /// Every file or directory the table names.
    pub fn paths(&self) -> Vec<&Path> {
        [self.password_file.as_deref(), self.tls_ca_file.as_deref()].into_iter().flatten().collect()
    }
}
