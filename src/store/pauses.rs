//! Routes an operator paused: a row per paused route (when, by which key,
//! why), so a pause outlasts a restart; resuming deletes it.

use crate::message::Millis;
use rusqlite::{Connection, OptionalExtension, params};

/// A route's pause: since when, by whom, why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pause {
    pub route: String,
    pub at: Millis,
    /// The API key that paused it.
    pub by: String,
    pub reason: Option<String>,
}

/// Pause `p.route`; the pause already on record when it was paused before
/// (kept as it was), else `p`.
pub(super) fn pause(c: &Connection, p: &Pause) -> rusqlite::Result<Pause> {
    c.prepare_cached("INSERT OR IGNORE INTO route_pauses (route, at, by, reason) VALUES (?1, ?2, ?3, ?4)")?
        .execute(params![p.route, p.at, p.by, p.reason])?;
    Ok(of(c, &p.route)?.unwrap_or_else(|| p.clone()))
}

/// Resume `route`; whether it was paused.
pub(super) fn resume(c: &Connection, route: &str) -> rusqlite::Result<bool> {
    Ok(c.prepare_cached("DELETE FROM route_pauses WHERE route = ?1")?.execute(params![route])? > 0)
}

fn of(c: &Connection, route: &str) -> rusqlite::Result<Option<Pause>> {
    c.prepare_cached("SELECT route, at, by, reason FROM route_pauses WHERE route = ?1")?
        .query_row(params![route], row)
        .optional()
}

/// Every pause on record.
pub(super) fn all(c: &Connection) -> rusqlite::Result<Vec<Pause>> {
    c.prepare_cached("SELECT route, at, by, reason FROM route_pauses ORDER BY route")?.query_map([], row)?.collect()
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Pause> {
    Ok(Pause { route: r.get(0)?, at: r.get(1)?, by: r.get(2)?, reason: r.get(3)? })
}
