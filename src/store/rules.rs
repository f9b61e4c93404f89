//! Trigger rules as rows: those of the config file (origin `config`, made to
//! match the file at start and on reload, read-only through the API) and
//! those made through `/v1/rules` (origin `api`). A rule's spec is kept as
//! its JSON; the daemon compiles the enabled ones into the rule set.

use super::StoreError;
use super::subscriptions::Managed;
use crate::message::Millis;
use rusqlite::{Connection, OptionalExtension, params};

/// A stored rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleRow {
    pub name: String,
    /// `config` or `api`.
    pub origin: String,
    /// The key that made it (API rules).
    pub api_key: Option<String>,
    /// The spec as JSON.
    pub spec: String,
    pub enabled: bool,
    pub created_at: Millis,
    pub updated_at: Millis,
}

/// A rule to store: its name, spec JSON and whether it is enabled.
#[derive(Debug, Clone)]
pub struct NewRule {
    pub name: String,
    pub spec: String,
    pub enabled: bool,
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RuleRow> {
    Ok(RuleRow {
        name: r.get(0)?,
        origin: r.get(1)?,
        api_key: r.get(2)?,
        spec: r.get(3)?,
        enabled: r.get(4)?,
        created_at: r.get(5)?,
        updated_at: r.get(6)?,
    })
}

const COLUMNS: &str = "name, origin, api_key, spec, enabled, created_at, updated_at";

/// Make the `config` rules match the file's: add and update them (a rule
/// the file declares replaces an API rule of the same name), remove those
/// the file no longer has.
pub(super) fn sync_config(c: &Connection, rules: &[NewRule], now: Millis) -> Result<(), StoreError> {
    let names: Vec<&str> = rules.iter().map(|r| r.name.as_str()).collect();
    let old: Vec<String> = c
        .prepare_cached("SELECT name FROM rules WHERE origin = 'config'")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for n in old.iter().filter(|n| !names.contains(&n.as_str())) {
        c.prepare_cached("DELETE FROM rules WHERE name = ?1")?.execute(params![n])?;
    }
    for r in rules {
        c.prepare_cached(
            "INSERT INTO rules (name, origin, api_key, spec, enabled, created_at, updated_at)
             VALUES (?1, 'config', NULL, ?2, ?3, ?4, ?4)
             ON CONFLICT(name) DO UPDATE SET origin = 'config', api_key = NULL, spec = ?2, enabled = ?3,
                 updated_at = CASE WHEN spec = ?2 AND enabled = ?3 AND origin = 'config' THEN updated_at ELSE ?4 END",
        )?
        .execute(params![r.name, r.spec, r.enabled, now])?;
    }
    Ok(())
}

pub(super) fn list(c: &Connection) -> rusqlite::Result<Vec<RuleRow>> {
    c.prepare_cached(&format!("SELECT {COLUMNS} FROM rules ORDER BY name"))?.query_map([], row)?.collect()
}

pub(super) fn get(c: &Connection, name: &str) -> rusqlite::Result<Option<RuleRow>> {
    c.prepare_cached(&format!("SELECT {COLUMNS} FROM rules WHERE name = ?1"))?.query_row(params![name], row).optional()
}

/// Create an API rule; `None` when the name is taken.
pub(super) fn create(c: &Connection, api_key: &str, r: &NewRule, now: Millis) -> Result<Option<RuleRow>, StoreError> {
    if get(c, &r.name)?.is_some() {
        return Ok(None);
    }
    c.prepare_cached(
        "INSERT INTO rules (name, origin, api_key, spec, enabled, created_at, updated_at)
         VALUES (?1, 'api', ?2, ?3, ?4, ?5, ?5)",
    )?
    .execute(params![r.name, api_key, r.spec, r.enabled, now])?;
    Ok(get(c, &r.name)?)
}

/// Replace an API rule's spec and enabled flag.
pub(super) fn update(c: &Connection, r: &NewRule, now: Millis) -> Result<Managed<RuleRow>, StoreError> {
    match get(c, &r.name)? {
        None => return Ok(Managed::NotFound),
        Some(old) if old.origin == "config" => return Ok(Managed::FromConfig { name: old.name }),
        Some(_) => {}
    }
    c.prepare_cached("UPDATE rules SET spec = ?2, enabled = ?3, updated_at = ?4 WHERE name = ?1")?
        .execute(params![r.name, r.spec, r.enabled, now])?;
    Ok(get(c, &r.name)?.map(Managed::Done).unwrap_or(Managed::NotFound))
}

/// Delete an API rule. Its queued messages stay (they were scheduled).
pub(super) fn delete(c: &Connection, name: &str) -> Result<Managed<()>, StoreError> {
    match get(c, name)? {
        None => Ok(Managed::NotFound),
        Some(old) if old.origin == "config" => Ok(Managed::FromConfig { name: old.name }),
        Some(_) => {
            c.prepare_cached("DELETE FROM rules WHERE name = ?1")?.execute(params![name])?;
            Ok(Managed::Done(()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::Store;
    use super::*;

    fn rule(name: &str, spec: &str) -> NewRule {
        NewRule { name: name.into(), spec: spec.into(), enabled: true }
    }

    #[tokio::test]
    async fn the_files_rules_replace_and_remove_and_stay_read_only() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("t.db")).unwrap();
        s.sync_rule_config(vec![rule("a", "{\"v\":1}"), rule("b", "{}")]).await.unwrap();
        assert!(s.create_rule("k".into(), rule("a", "{}")).await.unwrap().is_none(), "name taken");
        assert!(s.create_rule("k".into(), rule("mine", "{}")).await.unwrap().is_some());
        assert_eq!(s.update_rule(rule("a", "{}")).await.unwrap(), Managed::FromConfig { name: "a".into() });
        assert_eq!(s.delete_rule("b".into()).await.unwrap(), Managed::FromConfig { name: "b".into() });

        // The file drops b, changes a, and now declares `mine` (the file wins).
        s.sync_rule_config(vec![rule("a", "{\"v\":2}"), rule("mine", "{\"file\":1}")]).await.unwrap();
        let rows = s.rules().await.unwrap();
        let got: Vec<(&str, &str, &str)> =
            rows.iter().map(|r| (r.name.as_str(), r.origin.as_str(), r.spec.as_str())).collect();
        assert_eq!(got, [("a", "config", "{\"v\":2}"), ("mine", "config", "{\"file\":1}")]);

        s.sync_rule_config(vec![]).await.unwrap();
        assert!(s.rules().await.unwrap().is_empty());
        assert_eq!(s.delete_rule("a".into()).await.unwrap(), Managed::NotFound);
    }
}
