//! Consent records in SQL: a number agreed to receive messages of a scope,
//! from what source, with what wording (the proof 38-FZ asks for), recorded
//! by whom and when. Withdrawing one sets `withdrawn_at` and keeps the row:
//! it stays the proof of what was agreed while it held. Each change is a
//! `consent.changed` event (for the `admin` keys' subscriptions), carrying
//! the record as `GET /v1/consents` shows it at that moment.

use super::events::{self, NewEvent};
use crate::message::{EventKind, Millis, to_rfc3339};
use rusqlite::{Connection, OptionalExtension, Row, params, params_from_iter, types::Value};

/// A consent to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewConsent {
    /// E.164.
    pub number: String,
    /// `promotional` or `all`.
    pub scope: String,
    /// Where it was given: a web form, a shop's checkbox, a paper form...
    pub source: String,
    /// The wording the person agreed to.
    pub proof: Option<String>,
    /// Who recorded it (an API key's name unless told otherwise).
    pub recorded_by: String,
    /// When it was given.
    pub at: Millis,
}

/// A consent record as readers see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consent {
    pub id: i64,
    pub number: String,
    pub scope: String,
    pub source: String,
    pub proof: Option<String>,
    pub recorded_by: String,
    pub at: Millis,
    pub withdrawn_at: Option<Millis>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WithdrawOutcome {
    Withdrawn(Consent),
    /// It was withdrawn before; nothing changed.
    AlreadyWithdrawn(Consent),
    NotFound,
}

#[derive(Debug, Clone, Default)]
pub struct ConsentFilter {
    pub number: Option<String>,
    pub scope: Option<String>,
    pub source: Option<String>,
    /// Consents given at or after this time.
    pub since: Option<Millis>,
    /// Only records still in force (true) or only withdrawn ones (false).
    pub active: Option<bool>,
    /// Only ids below this (the previous page's last id).
    pub before_id: Option<i64>,
    pub limit: usize,
}

const COLUMNS: &str = "id, number, scope, source, proof, recorded_by, at, withdrawn_at";

fn row(r: &Row<'_>) -> rusqlite::Result<Consent> {
    Ok(Consent {
        id: r.get(0)?,
        number: r.get(1)?,
        scope: r.get(2)?,
        source: r.get(3)?,
        proof: r.get(4)?,
        recorded_by: r.get(5)?,
        at: r.get(6)?,
        withdrawn_at: r.get(7)?,
    })
}

pub(super) fn get(c: &Connection, id: i64) -> rusqlite::Result<Option<Consent>> {
    c.prepare_cached(&format!("SELECT {COLUMNS} FROM consents WHERE id = ?1"))?.query_row(params![id], row).optional()
}

pub(super) fn add(c: &Connection, n: &NewConsent, now: Millis) -> rusqlite::Result<Consent> {
    let added = c
        .prepare_cached(&format!(
            "INSERT INTO consents (number, scope, source, proof, recorded_by, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             RETURNING {COLUMNS}"
        ))?
        .query_row(params![n.number, n.scope, n.source, n.proof, n.recorded_by, n.at], row)?;
    changed(c, &added, now)?;
    Ok(added)
}

pub(super) fn withdraw(c: &Connection, id: i64, now: Millis) -> rusqlite::Result<WithdrawOutcome> {
    let Some(existing) = get(c, id)? else { return Ok(WithdrawOutcome::NotFound) };
    if existing.withdrawn_at.is_some() {
        return Ok(WithdrawOutcome::AlreadyWithdrawn(existing));
    }
    c.prepare_cached("UPDATE consents SET withdrawn_at = ?2 WHERE id = ?1")?.execute(params![id, now])?;
    let withdrawn = Consent { withdrawn_at: Some(now), ..existing };
    changed(c, &withdrawn, now)?;
    Ok(WithdrawOutcome::Withdrawn(withdrawn))
}

/// Tell of `k` as it now stands: a `consent.changed` event with the record
/// in the API's shape, owned by no key (so the `admin` keys' subscriptions
/// receive it).
fn changed(c: &Connection, k: &Consent, now: Millis) -> rusqlite::Result<()> {
    let data = serde_json::json!({
        "id": k.id,
        "number": k.number,
        "scope": k.scope,
        "source": k.source,
        "proof": k.proof,
        "recorded_by": k.recorded_by,
        "at": to_rfc3339(k.at),
        "withdrawn_at": k.withdrawn_at.map(to_rfc3339),
        "active": k.withdrawn_at.is_none(),
    })
    .to_string();
    let event = NewEvent { subject: Some(&k.number), data: Some(&data), ..NewEvent::default() };
    events::emit(c, EventKind::ConsentChanged, now, &event)?;
    Ok(())
}

/// Newest record first.
pub(super) fn list(c: &Connection, f: &ConsentFilter) -> rusqlite::Result<Vec<Consent>> {
    let mut conds: Vec<&str> = Vec::new();
    let mut args: Vec<Value> = Vec::new();
    for (cond, v) in [("number = ?", &f.number), ("scope = ?", &f.scope), ("source = ?", &f.source)] {
        if let Some(v) = v {
            conds.push(cond);
            args.push(Value::Text(v.clone()));
        }
    }
    if let Some(since) = f.since {
        conds.push("at >= ?");
        args.push(Value::Integer(since));
    }
    match f.active {
        Some(true) => conds.push("withdrawn_at IS NULL"),
        Some(false) => conds.push("withdrawn_at IS NOT NULL"),
        None => {}
    }
    if let Some(b) = f.before_id {
        conds.push("id < ?");
        args.push(Value::Integer(b));
    }
    let filter = if conds.is_empty() { String::new() } else { format!("WHERE {}", conds.join(" AND ")) };
    args.push(Value::Integer(f.limit as i64));
    let sql = format!("SELECT {COLUMNS} FROM consents {filter} ORDER BY id DESC LIMIT ?");
    c.prepare_cached(&sql)?.query_map(params_from_iter(args), row)?.collect()
}
