//! Trigger rules as rows: the config file's (`origin = 'config'`, synced at
//! start and on reload, read-only through the API) and those made through
//! `/v1/rules` (`origin = 'api'`). The spec is kept as the JSON the API
//! shows; the daemon compiles the enabled ones into its `RuleSet`.

use super::StoreError;
use crate::message::Millis;
use crate::trigger::RuleSpec;
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct RuleView {
    #[serde(flatten)]
    pub spec: RuleSpec,
    /// `config` (the config file's; change it there) or `api`.
    pub origin: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

/// What a change through the API came to.
#[derive(Debug, Clone, PartialEq)]
pub enum RuleChange {
    Done(Box<RuleView>),
    NotFound,
    /// The rule comes from the config file.
    FromConfig,
    /// A rule of that name exists.
    Exists,
}

fn time(ms: Millis) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

fn spec_json(spec: &RuleSpec) -> Result<String, StoreError> {
    Ok(super::to_json(spec)?)
}

fn read(c: &Connection, name: &str) -> rusqlite::Result<Option<RuleView>> {
    let row: Option<(String, String, Millis, Millis)> = c
        .prepare_cached("SELECT spec, origin, created_at, updated_at FROM rules WHERE name = ?1")?
        .query_row(params![name], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .optional()?;
    row.map(|(spec, origin, created, updated)| view(&spec, origin, created, updated)).transpose()
}

fn view(spec: &str, origin: String, created: Millis, updated: Millis) -> rusqlite::Result<RuleView> {
    let spec: RuleSpec = serde_json::from_str(spec)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e)))?;
    Ok(RuleView { spec, origin, created_at: time(created), updated_at: time(updated) })
}

pub(super) fn list(c: &Connection) -> rusqlite::Result<Vec<RuleView>> {
    let rows: Vec<(String, String, Millis, Millis)> = c
        .prepare_cached("SELECT spec, origin, created_at, updated_at FROM rules ORDER BY name")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
        .collect::<Result<_, _>>()?;
    rows.into_iter().map(|(s, o, cr, up)| view(&s, o, cr, up)).collect()
}

pub(super) fn get(c: &Connection, name: &str) -> rusqlite::Result<Option<RuleView>> {
    read(c, name)
}

/// Make the config file's rules the `config` rows: new ones added, changed
/// ones replaced, removed ones deleted. A config rule takes the name over
/// from an API rule of the same name.
pub(super) fn sync_config(c: &Connection, specs: &[RuleSpec], now: Millis) -> Result<(), StoreError> {
    let names: Vec<String> = c
        .prepare_cached("SELECT name FROM rules WHERE origin = 'config'")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for name in names.iter().filter(|n| !specs.iter().any(|s| &&s.name == n)) {
        c.prepare_cached("DELETE FROM rules WHERE name = ?1")?.execute(params![name])?;
    }
    for spec in specs {
        let json = spec_json(spec)?;
        c.prepare_cached(
            "INSERT INTO rules (name, origin, api_key, spec, enabled, created_at, updated_at)
             VALUES (?1, 'config', NULL, ?2, ?3, ?4, ?4)
             ON CONFLICT(name) DO UPDATE SET origin = 'config', api_key = NULL, enabled = excluded.enabled,
                 updated_at = CASE WHEN spec = excluded.spec AND origin = 'config' THEN updated_at ELSE excluded.updated_at END,
                 spec = excluded.spec",
        )?
        .execute(params![spec.name, json, spec.enabled, now])?;
    }
    Ok(())
}

pub(super) fn create(c: &Connection, spec: &RuleSpec, api_key: &str, now: Millis) -> Result<RuleChange, StoreError> {
    if read(c, &spec.name)?.is_some() {
        return Ok(RuleChange::Exists);
    }
    c.prepare_cached(
        "INSERT INTO rules (name, origin, api_key, spec, enabled, created_at, updated_at) VALUES (?1, 'api', ?2, ?3, ?4, ?5, ?5)",
    )?
    .execute(params![spec.name, api_key, spec_json(spec)?, spec.enabled, now])?;
    Ok(read(c, &spec.name)?.map_or(RuleChange::NotFound, |v| RuleChange::Done(Box::new(v))))
}

pub(super) fn replace(c: &Connection, spec: &RuleSpec, now: Millis) -> Result<RuleChange, StoreError> {
    match read(c, &spec.name)? {
        None => return Ok(RuleChange::NotFound),
        Some(r) if r.origin == "config" => return Ok(RuleChange::FromConfig),
        Some(_) => {}
    }
    c.prepare_cached("UPDATE rules SET spec = ?2, enabled = ?3, updated_at = ?4 WHERE name = ?1")?.execute(params![
        spec.name,
        spec_json(spec)?,
        spec.enabled,
        now
    ])?;
    Ok(read(c, &spec.name)?.map_or(RuleChange::NotFound, |v| RuleChange::Done(Box::new(v))))
}

pub(super) fn delete(c: &Connection, name: &str) -> Result<RuleChange, StoreError> {
    match read(c, name)? {
        None => Ok(RuleChange::NotFound),
        Some(r) if r.origin == "config" => Ok(RuleChange::FromConfig),
        Some(r) => {
            c.prepare_cached("DELETE FROM rules WHERE name = ?1")?.execute(params![name])?;
            Ok(RuleChange::Done(Box::new(r)))
        }
    }
}
