//! The outbox: every event a LAN service may be told of (a message's status,
//! an inbound message, an opt-out, a route going down or up) is a row here,
//! written by the same transaction as the change it reports, so an event is
//! never told that did not happen and never lost that did. The webhook
//! deliverer reads the rows in id order; an event's id is its identity
//! across every delivery attempt.

use crate::message::{EventKind, Millis};
use rusqlite::{Connection, params};
use std::cell::Cell;

thread_local! {
    /// Set when this thread wrote an event; the writer reads and clears it
    /// after each commit to wake the webhook deliverer.
    static EMITTED: Cell<bool> = const { Cell::new(false) };
}

/// Whether an event was written since the last call.
pub(super) fn take_emitted() -> bool {
    EMITTED.replace(false)
}

/// An event to record. Who it belongs to: `api_key` when given; for a
/// message event without one, the key that sent the message; otherwise
/// nobody's (the `admin` catch-all).
#[derive(Debug, Clone, Default)]
pub struct NewEvent<'a> {
    pub api_key: Option<&'a str>,
    pub message_id: Option<i64>,
    pub inbound_id: Option<i64>,
    /// The number of an opt-out, the route of a route event.
    pub subject: Option<&'a str>,
    /// JSON: what the event says beyond the row it points at.
    pub data: Option<&'a str>,
}

/// Write one event row inside the caller's transaction; returns its id.
pub(super) fn emit(c: &Connection, kind: EventKind, at: Millis, e: &NewEvent<'_>) -> rusqlite::Result<i64> {
    c.prepare_cached(
        "INSERT INTO events (kind, at, api_key, message_id, inbound_id, subject, data)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![kind.as_str(), at, e.api_key, e.message_id, e.inbound_id, e.subject, e.data])?;
    EMITTED.set(true);
    Ok(c.last_insert_rowid())
}
