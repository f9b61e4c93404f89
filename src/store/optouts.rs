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
    let data = serde_json::to_string(ch).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
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
