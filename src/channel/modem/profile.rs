//! Modem profiles: per-model start-up commands and quirks, as TOML files in
//! `firmware-config/modems/` (built in) or a directory of the sysadmin's,
//! chosen by what AT+CGMI / AT+CGMM answer, with `generic` as the fallback.

use serde::Deserialize;
use std::path::Path;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub name: String,
    pub match_manufacturer: Vec<String>,
    pub match_model: Vec<String>,
    pub init: Vec<String>,
    pub storage: String,
    pub status_report_storage: String,
    pub cnmi: String,
    pub reset: String,
    pub settle_ms: u64,
    pub command_delay_ms: u64,
    pub sms_ready_secs: u64,
}

const BUILT_IN: &[(&str, &str)] = &[
    ("generic.toml", include_str!("../../../firmware-config/modems/generic.toml")),
    ("huawei.toml", include_str!("../../../firmware-config/modems/huawei.toml")),
    ("simcom-sim800.toml", include_str!("../../../firmware-config/modems/simcom-sim800.toml")),
    ("simcom-sim7600.toml", include_str!("../../../firmware-config/modems/simcom-sim7600.toml")),
    ("quectel-ec25.toml", include_str!("../../../firmware-config/modems/quectel-ec25.toml")),
];

/// Why the modem profiles could not be loaded: a file or folder that cannot
/// be read, or a profile that does not parse.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("{}: {error}", .path.display())]
    Read { path: std::path::PathBuf, error: std::io::Error },
    #[error("{origin}: {why}")]
    Parse { origin: String, why: String },
}

/// The profiles to choose from: the built-in ones, then those in `dir`
/// (a file with a built-in profile's name replaces it).
pub fn load(dir: Option<&Path>) -> Result<Vec<Profile>, ProfileError> {
    let mut out: Vec<Profile> = Vec::new();
    let mut add = |origin: &str, text: &str| -> Result<(), ProfileError> {
        let p: Profile = toml::from_str(text).map_err(|e| ProfileError::Parse {
            origin: origin.to_string(),
            why: e.to_string().trim_end().to_string(),
        })?;
        out.retain(|q| q.name != p.name);
        out.push(p);
        Ok(())
    };
    for (name, text) in BUILT_IN {
        add(&format!("built-in modem profile {name}"), text)?;
    }
    if let Some(dir) = dir {
        let entries = std::fs::read_dir(dir).map_err(|e| ProfileError::Read { path: dir.to_path_buf(), error: e })?;
        let mut files: Vec<_> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
        files.sort();
        for f in files.iter().filter(|f| f.extension().is_some_and(|e| e == "toml")) {
            let text = std::fs::read_to_string(f).map_err(|e| ProfileError::Read { path: f.clone(), error: e })?;
            add(&f.display().to_string(), &text)?;
        }
    }
    Ok(out)
}

/// The profile for a modem, by its manufacturer and model answers; a
/// profile that names models beats one that names only the manufacturer.
pub fn choose<'a>(profiles: &'a [Profile], manufacturer: &str, model: &str) -> &'a Profile {
    let (mf, md) = (manufacturer.to_lowercase(), model.to_lowercase());
    let hit = |list: &[String], s: &str| list.iter().any(|m| s.contains(&m.to_lowercase()));
    profiles
        .iter()
        .filter(|p| hit(&p.match_manufacturer, &mf) && (p.match_model.is_empty() || hit(&p.match_model, &md)))
        .max_by_key(|p| !p.match_model.is_empty())
        .or_else(|| profiles.iter().find(|p| p.name == "generic"))
        .unwrap_or(&profiles[0])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_profiles_load_and_match() {
        let all = load(None).unwrap();
        assert_eq!(all.len(), 5);
        assert_eq!(choose(&all, "SIMCOM_Ltd", "SIMCOM_SIM800L").name, "simcom-sim800");
        assert_eq!(choose(&all, "SIMCOM INCORPORATED", "SIMCOM_SIM7600E-H").name, "simcom-sim7600");
        assert_eq!(choose(&all, "huawei", "E173").name, "huawei");
        assert_eq!(choose(&all, "Quectel", "EC25").name, "quectel-ec25");
        assert_eq!(choose(&all, "Telit", "LE910").name, "generic");
        assert_eq!(choose(&all, "SIMCOM_Ltd", "SIM5320").name, "generic");
    }

    #[test]
    fn a_directory_overrides_and_adds() {
        let dir = tempfile::tempdir().unwrap();
        let mut huawei: Profile = toml::from_str(BUILT_IN[1].1).unwrap();
        huawei.settle_ms = 5;
        let text = BUILT_IN[1].1.replace("settle_ms = 1000", "settle_ms = 5");
        std::fs::write(dir.path().join("huawei.toml"), text).unwrap();
        std::fs::write(dir.path().join("bad.toml"), "name = \"x\"\nbogus = 1\n").unwrap();
        let err = load(Some(dir.path())).unwrap_err().to_string();
        assert!(err.contains("bad.toml") && err.contains("bogus"), "{err}");
        std::fs::remove_file(dir.path().join("bad.toml")).unwrap();
        let all = load(Some(dir.path())).unwrap();
        assert_eq!(all.iter().find(|p| p.name == "huawei"), Some(&huawei));
    }
}
