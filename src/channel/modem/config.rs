//! The GSM modem route's table (`[routes.modem]`): its keys, defaults and
//! checks.

use crate::config::{HOUR, Secret, in_range};
use serde::Deserialize;
use std::path::{Path, PathBuf};

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

fn yes() -> bool {
    true
}

impl ModemRoute {
    /// Every problem with this table, each named under `key` (the route's
    /// key, `routes[0]`); relative paths are looked up under `base`.
    pub fn check(&self, key: &str, base: &Path, bad: &mut dyn FnMut(&str, String)) {
        let m = self;
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
            && (!(4..=8).contains(&pin.expose().len()) || !pin.expose().bytes().all(|b| b.is_ascii_digit()))
        {
            bad(&format!("{k}.pin"), "a SIM PIN has 4 to 8 digits".into());
        }
        if let Some(d) = &m.profiles_dir
            && let Err(e) = super::profile::load(Some(&if d.is_absolute() { d.clone() } else { base.join(d) }))
        {
            bad(&format!("{k}.profiles_dir"), e.to_string());
        }
        for (name, v) in [
            ("health_interval_secs", m.health_interval_secs),
            ("registration_timeout_secs", m.registration_timeout_secs),
            ("send_timeout_secs", m.send_timeout_secs),
            ("retry_secs", m.retry_secs),
        ] {
            in_range(bad, &format!("{k}.{name}"), v, 1, HOUR, "seconds");
        }
        in_range(bad, &format!("{k}.baud"), m.baud, 300, 4_000_000, "");
        if let Some(n) = m.per_minute {
            in_range(bad, &format!("{k}.per_minute"), n, 1, 1_000_000, "SMS");
        }
        if let Some(n) = m.per_day {
            in_range(bad, &format!("{k}.per_day"), n, 1, 10_000_000, "SMS");
        }
    }

    /// Make the profiles directory absolute under `base`.
    pub fn resolve(&mut self, base: &Path) {
        if let Some(d) = &self.profiles_dir
            && !d.is_absolute()
        {
            self.profiles_dir = Some(base.join(d));
        }
    }

    /// Every file or directory the table names.
    pub fn paths(&self) -> Vec<&Path> {
        self.profiles_dir.as_deref().into_iter().collect()
    }
}
