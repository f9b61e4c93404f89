//! The opt-out registry in SQL: a number that asked to hear no more, with
//! what it stopped (`scope`), where the request came from and when. Adding
//! or removing an entry writes its `optout.changed` event in the same
//! transaction.

use super::events::{self, NewEvent};
use crate::message::{EventKind, Millis};
use rusqlite::{Connection, params};
use serde::Serialize;

/// One change to the registry: `number` opts out of (or back into) `scope`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OptOutChange {
    /// E.164.
    pub number: String,
    /// What the opt-out stops: `promotional` or `all`.
    pub scope: String,
    /// `keyword`, `api` or `import`.
    pub source: String,
    /// The route a keyword came in on.
    pub route: Option<String>,
    /// The key that made the change, or whose message the keyword answered.
    pub api_key: Option<String>,
    /// The inbound message that asked for it.
    pub inbound_id: Option<i64>,
    /// True: opted out. False: opted back in.
    pub opted_out: bool,
}

/// Apply `ch`; returns whether the registry changed (an opt-out already on
/// record, or a removal of none, changes nothing and tells nobody).
pub(super) fn set(c: &Connection, ch: &OptOutChange, now: Millis) -> rusqlite::Result<bool> {
    let changed = if ch.opted_out {
        c.prepare_cached(
            "INSERT INTO optouts (number, scope, source, route, api_key, inbound_id, at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (number, scope) DO NOTHING",
        )?
        .execute(params![ch.number, ch.scope, ch.source, ch.route, ch.api_key, ch.inbound_id, now])?
    } else {
        c.prepare_cached("DELETE FROM optouts WHERE number = ?1 AND scope = ?2")?
            .execute(params![ch.number, ch.scope])?
    };
    if changed == 0 {
        return Ok(false);
    }
    let data = super::to_json(ch)?;
    let event = NewEvent {
        api_key: ch.api_key.as_deref(),
        inbound_id: ch.inbound_id,
        subject: Some(&ch.number),
        data: Some(&data),
        ..NewEvent::default()
    };
    events::emit(c, EventKind::OptoutChanged, now, &event)?;
    Ok(true)
}

/// One entry of the registry as readers see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptOut {
    pub number: String,
    pub scope: String,
    pub source: String,
    pub route: Option<String>,
    pub api_key: Option<String>,
    pub inbound_id: Option<i64>,
    pub at: Millis,
}

/// Where a page of the registry ends: the next page starts after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptOutCursor {
    pub at: Millis,
    pub number: String,
    pub scope: String,
}

impl OptOutCursor {
    /// `at.digits.scope`: no `+`, so it survives a query string unencoded.
    pub fn encode(&self) -> String {
        format!("{}.{}.{}", self.at, self.number.trim_start_matches('+'), self.scope)
    }

    pub fn decode(s: &str) -> Option<OptOutCursor> {
        let mut it = s.splitn(3, '.');
        let at = it.next()?.parse().ok()?;
        let digits = it.next().filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))?;
        let scope = it.next().filter(|s| !s.is_empty())?;
        Some(OptOutCursor { at, number: format!("+{digits}"), scope: scope.to_string() })
    }
}

#[derive(Debug, Clone, Default)]
pub struct OptOutFilter {
    pub number: Option<String>,
    pub scope: Option<String>,
    pub source: Option<String>,
    /// Entries made at or after this time.
    pub since: Option<Millis>,
    pub after: Option<OptOutCursor>,
    pub limit: usize,
}

const COLUMNS: &str = "number, scope, source, route, api_key, inbound_id, at";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<OptOut> {
    Ok(OptOut {
        number: r.get(0)?,
        scope: r.get(1)?,
        source: r.get(2)?,
        route: r.get(3)?,
        api_key: r.get(4)?,
        inbound_id: r.get(5)?,
        at: r.get(6)?,
    })
}

/// The entry for `number` and `scope`, if any.
pub(super) fn get(c: &Connection, number: &str, scope: &str) -> rusqlite::Result<Option<OptOut>> {
    use rusqlite::OptionalExtension;
    c.prepare_cached(&format!("SELECT {COLUMNS} FROM optouts WHERE number = ?1 AND scope = ?2"))?
        .query_row(params![number, scope], row)
        .optional()
}

/// Newest first (then by number and scope, so a page boundary is exact).
pub(super) fn list(c: &Connection, f: &OptOutFilter) -> rusqlite::Result<Vec<OptOut>> {
    let (sql, args) = list_sql(f);
    c.prepare_cached(&sql)?.query_map(rusqlite::params_from_iter(args), row)?.collect()
}

/// The query `list` runs for `f`, and its parameters: in the order of the
/// `optouts_recent` index, read backwards from the cursor, never sorted.
pub(super) fn list_sql(f: &OptOutFilter) -> (String, Vec<rusqlite::types::Value>) {
    use rusqlite::types::Value;
    let mut conds = Vec::new();
    let mut args: Vec<Value> = Vec::new();
    for (col, v) in [("number", &f.number), ("scope", &f.scope), ("source", &f.source)] {
        if let Some(v) = v {
            conds.push(format!("{col} = ?"));
            args.push(Value::Text(v.clone()));
        }
    }
    if let Some(since) = f.since {
        conds.push("at >= ?".into());
        args.push(Value::Integer(since));
    }
    if let Some(a) = &f.after {
        conds.push("(at, number, scope) < (?, ?, ?)".into());
        args.extend([Value::Integer(a.at), Value::Text(a.number.clone()), Value::Text(a.scope.clone())]);
    }
    let filter = if conds.is_empty() { String::new() } else { format!("WHERE {}", conds.join(" AND ")) };
    args.push(Value::Integer(f.limit as i64));
    let sql = format!("SELECT {COLUMNS} FROM optouts {filter} ORDER BY at DESC, number DESC, scope DESC LIMIT ?");
    (sql, args)
}
