//! The simulated route's table (`[routes.sim]`, optional): its keys,
//! defaults and checks.

use crate::config::{DAY, HOUR, in_range};
use serde::Deserialize;
use std::path::{Path, PathBuf};

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

impl SimRoute {
    /// Every problem with this table, each named under `key` (the route's
    /// key, `routes[0]`); relative paths are looked up under `base`.
    pub fn check(&self, key: &str, _base: &Path, bad: &mut dyn FnMut(&str, String)) {
        let s = self;
        for (name, v) in [
            ("fail_fraction", s.fail_fraction),
            ("temporary_fail_fraction", s.temporary_fail_fraction),
            ("undelivered_fraction", s.undelivered_fraction),
        ] {
            in_range(bad, &format!("{key}.sim.{name}"), v, 0.0, 1.0, "");
        }
        in_range(bad, &format!("{key}.sim.submit_delay_ms"), s.submit_delay_ms, 0, HOUR * 1000, "ms");
        in_range(bad, &format!("{key}.sim.delivery_delay_ms"), s.delivery_delay_ms, 0, DAY * 1000, "ms");
        if let Some(rec) = &s.record
            && let Some(dir) = rec.parent()
            && !dir.as_os_str().is_empty()
            && !dir.is_dir()
        {
            bad(&format!("{key}.sim.record"), format!("directory {} does not exist", dir.display()));
        }
    }

    /// Nothing to resolve: the record file is opened as named.
    pub fn resolve(&mut self, _base: &Path) {}

    /// Every file or directory the table names.
    pub fn paths(&self) -> Vec<&Path> {
        self.record.as_deref().into_iter().collect()
    }
}
