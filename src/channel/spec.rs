//! A route's kind with its own table, typed: the `kind = "..."` of a
//! `[[routes]]` entry and its `[routes.<kind>]` table parse together, so a
//! table for another kind cannot. Each kind's table (keys, defaults,
//! checks) lives with its channel; adding a kind is its folder and one arm
//! here.

use super::{modem, sim, smpp};
use crate::config::{self, ConfigError, RouteKinds, RouteTable};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use std::path::Path;

/// The kind of a route and its own table.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum RouteSpec {
    /// Simulated: its table is optional.
    Sim {
        #[serde(default)]
        sim: sim::config::SimRoute,
    },
    Smpp {
        smpp: smpp::config::SmppRoute,
    },
    Modem {
        modem: modem::config::ModemRoute,
    },
}

/// A route as the daemon runs it: the common fields and its typed spec.
pub type Route = config::Route<RouteSpec>;
/// A loaded, validated config with every route typed.
pub type Loaded = config::Loaded<RouteSpec>;

/// Every kind's name, which is also the name of its table, in the order
/// their problems are named.
const KINDS: [&str; 3] = ["sim", "smpp", "modem"];

impl RouteSpec {
    pub fn kind(&self) -> &'static str {
        match self {
            RouteSpec::Sim { .. } => "sim",
            RouteSpec::Smpp { .. } => "smpp",
            RouteSpec::Modem { .. } => "modem",
        }
    }

    pub fn sim(&self) -> Option<&sim::config::SimRoute> {
        match self {
            RouteSpec::Sim { sim } => Some(sim),
            _ => None,
        }
    }

    pub fn smpp(&self) -> Option<&smpp::config::SmppRoute> {
        match self {
            RouteSpec::Smpp { smpp } => Some(smpp),
            _ => None,
        }
    }

    pub fn modem(&self) -> Option<&modem::config::ModemRoute> {
        match self {
            RouteSpec::Modem { modem } => Some(modem),
            _ => None,
        }
    }

    /// True when `other` needs the same channel (same kind and connection
    /// settings), so a reload can keep this route's binds or modems.
    pub fn same_channel(&self, other: &RouteSpec) -> bool {
        self == other
    }

    /// True when the route counts what it sent against a cap (SIM plans), so
    /// it needs the last day's sends from the store when it starts.
    pub fn counts_sends(&self) -> bool {
        self.modem().is_some_and(|m| m.per_minute.is_some() || m.per_day.is_some())
    }
}

/// Read and validate the config file at `path`, routes typed.
pub fn load_file(path: &Path) -> Result<Loaded, ConfigError> {
    config::Config::from_file(path)
}

/// Read and validate `text` (see [`config::Config::from_str`]), routes typed.
pub fn load_str(text: &str, origin: &str, base: &Path) -> Result<Loaded, ConfigError> {
    config::Config::from_str(text, origin, base)
}

/// The key and the reason for a table that does not parse as `T`.
fn first_problem<T: DeserializeOwned>(table: &toml::Value) -> Option<(String, String)> {
    let e = serde_path_to_error::deserialize::<_, T>(table.clone()).err()?;
    let path = e.path().to_string();
    Some((path, e.into_inner().message().trim_end().to_string()))
}

impl RouteKinds for RouteSpec {
    fn parse(table: &RouteTable, key: &str, bad: &mut dyn FnMut(&str, String)) -> Option<Self> {
        let table = &table.0;
        let kind = table.get("kind").and_then(toml::Value::as_str).filter(|k| KINDS.contains(k));
        if let Some(kind) = kind {
            let mut fits = true;
            for other in KINDS {
                if other != kind && table.contains_key(other) {
                    bad(&format!("{key}.{other}"), format!("only for kind = \"{other}\"; this route is {kind}"));
                    fits = false;
                }
            }
            if kind != "sim" && !table.contains_key(kind) {
                bad(&format!("{key}.{kind}"), format!("kind = \"{kind}\" needs a [routes.{kind}] table"));
                fits = false;
            }
            if !fits {
                return None;
            }
        }
        match RouteSpec::deserialize(toml::Value::Table(table.clone())) {
            Ok(spec) => Some(spec),
            Err(e) => {
                // Name the key in the kind's own table when the problem is there.
                let inner = kind.zip(kind.and_then(|k| table.get(k))).and_then(|(k, t)| {
                    let found = match k {
                        "sim" => first_problem::<sim::config::SimRoute>(t),
                        "smpp" => first_problem::<smpp::config::SmppRoute>(t),
                        _ => first_problem::<modem::config::ModemRoute>(t),
                    };
                    found.map(|(path, why)| {
                        (if path == "." { format!("{key}.{k}") } else { format!("{key}.{k}.{path}") }, why)
                    })
                });
                match inner {
                    Some((at, why)) => bad(&at, why),
                    None => bad(key, e.message().trim_end().to_string()),
                }
                None
            }
        }
    }

    fn check(&self, key: &str, base: &Path, bad: &mut dyn FnMut(&str, String)) {
        match self {
            RouteSpec::Sim { sim } => sim.check(key, base, bad),
            RouteSpec::Smpp { smpp } => smpp.check(key, base, bad),
            RouteSpec::Modem { modem } => modem.check(key, base, bad),
        }
    }

    fn resolve(&mut self, base: &Path) {
        match self {
            RouteSpec::Sim { sim } => sim.resolve(base),
            RouteSpec::Smpp { smpp } => smpp.resolve(base),
            RouteSpec::Modem { modem } => modem.resolve(base),
        }
    }

    fn paths(&self) -> Vec<&Path> {
        match self {
            RouteSpec::Sim { sim } => sim.paths(),
            RouteSpec::Smpp { smpp } => smpp.paths(),
            RouteSpec::Modem { modem } => modem.paths(),
        }
    }
}

#[cfg(test)]
mod tests;
