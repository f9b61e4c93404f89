//! Inbound messages in SQL: single messages go straight in; parts of a
//! concatenated message wait in `inbound_parts` until all have arrived (or
//! until they are too old), then become one message. Everything is on disk
//! before the route acknowledges it to the network. A PDU that could not be
//! decoded is kept too, raw and with the reason, as an inbound message of
//! its own.

use super::StoreError;
use super::events::{self, NewEvent};
use crate::message::{EventKind, Millis};
use rusqlite::{Connection, OptionalExtension, params};

/// One received SMS (or one part of a concatenated one).
#[derive(Debug, Clone)]
pub struct InboundPart {
    pub route: String,
    pub from: String,
    pub to: String,
    pub text: String,
    /// (reference, total, seq 1-based) for a part of a concatenated message.
    pub concat: Option<(u16, u8, u8)>,
    /// The network's timestamp, if it gave one.
    pub sent_at: Option<Millis>,
    /// Set for a PDU that could not be decoded: what came, and why it could not be read.
    pub undecodable: Option<Undecodable>,
}

/// A received PDU as it came (hex, SMSC part included) and why it could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Undecodable {
    pub pdu: String,
    pub reason: String,
}

#[derive(Debug, Clone)]
pub struct InboundView {
    pub id: i64,
    pub route: String,
    pub from: String,
    pub to: String,
    pub text: String,
    pub parts: u32,
    /// False when parts were missing and the timeout stored what arrived.
    pub complete: bool,
    pub sent_at: Option<Millis>,
    pub received_at: Millis,
    pub undecodable: Option<Undecodable>,
}

fn insert(
    c: &Connection,
    p: &InboundPart,
    body: &str,
    parts: u32,
    complete: bool,
    now: Millis,
) -> rusqlite::Result<i64> {
    c.prepare_cached(
        "INSERT INTO inbound (route, sender, recipient, body, parts, complete, sent_at, received_at, pdu, undecodable)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?
    .execute(params![
        p.route,
        p.from,
        p.to,
        body,
        parts,
        complete,
        p.sent_at,
        now,
        p.undecodable.as_ref().map(|u| &u.pdu),
        p.undecodable.as_ref().map(|u| &u.reason),
    ])?;
    let id = c.last_insert_rowid();
    events::emit(c, EventKind::InboundReceived, now, &NewEvent { inbound_id: Some(id), ..NewEvent::default() })?;
    Ok(id)
}

/// Store a part; returns the inbound message id once it is complete.
pub(super) fn record(c: &Connection, p: &InboundPart, now: Millis) -> Result<Option<i64>, StoreError> {
    let Some((reference, total, seq)) = p.concat.filter(|(_, total, _)| *total > 1 && p.undecodable.is_none()) else {
        return Ok(Some(insert(c, p, &p.text, 1, true, now)?));
    };
    c.prepare_cached(
        "INSERT OR REPLACE INTO inbound_parts (route, sender, reference, total, seq, recipient, body, sent_at, received_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![p.route, p.from, reference, total, seq, p.to, p.text, p.sent_at, now])?;
    let have: i64 = c
        .prepare_cached(
            "SELECT count(*) FROM inbound_parts WHERE route = ?1 AND sender = ?2 AND reference = ?3 AND total = ?4",
        )?
        .query_row(params![p.route, p.from, reference, total], |r| r.get(0))?;
    if have < total as i64 {
        return Ok(None);
    }
    Ok(Some(assemble(c, &p.route, &p.from, reference, total, now)?))
}

/// Join the parts present (in order) into one inbound message.
fn assemble(
    c: &Connection,
    route: &str,
    sender: &str,
    reference: u16,
    total: u8,
    now: Millis,
) -> rusqlite::Result<i64> {
    let rows: Vec<(u8, String, String, Option<Millis>)> = c
        .prepare_cached(
            "DELETE FROM inbound_parts WHERE route = ?1 AND sender = ?2 AND reference = ?3 AND total = ?4
             RETURNING seq, recipient, body, sent_at",
        )?
        .query_map(params![route, sender, reference, total], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
        .collect::<Result<_, _>>()?;
    let mut rows = rows;
    rows.sort_by_key(|r| r.0);
    let complete = rows.len() == total as usize;
    let body: String = rows.iter().map(|r| r.2.as_str()).collect();
    let first = InboundPart {
        route: route.to_string(),
        from: sender.to_string(),
        to: rows.first().map(|r| r.1.clone()).unwrap_or_default(),
        text: String::new(),
        concat: None,
        sent_at: rows.first().and_then(|r| r.3),
        undecodable: None,
    };
    insert(c, &first, &body, rows.len() as u32, complete, now)
}

/// Concatenated messages whose parts stopped coming: store what arrived.
pub(super) fn flush_stale(c: &Connection, older_than: Millis, now: Millis) -> Result<usize, StoreError> {
    let groups: Vec<(String, String, u16, u8)> = c
        .prepare_cached(
            "SELECT DISTINCT route, sender, reference, total FROM inbound_parts WHERE received_at < ?1 LIMIT 1000",
        )?
        .query_map(params![older_than], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
        .collect::<Result<_, _>>()?;
    for (route, sender, reference, total) in &groups {
        let id = assemble(c, route, sender, *reference, *total, now)?;
        tracing::warn!(inbound = id, %route, %sender, "stored an incomplete concatenated message after its parts stopped coming");
    }
    Ok(groups.len())
}

fn view(r: &rusqlite::Row<'_>) -> rusqlite::Result<InboundView> {
    Ok(InboundView {
        id: r.get(0)?,
        route: r.get(1)?,
        from: r.get(2)?,
        to: r.get(3)?,
        text: r.get(4)?,
        parts: r.get(5)?,
        complete: r.get(6)?,
        sent_at: r.get(7)?,
        received_at: r.get(8)?,
        undecodable: match (r.get::<_, Option<String>>(9)?, r.get::<_, Option<String>>(10)?) {
            (Some(pdu), Some(reason)) => Some(Undecodable { pdu, reason }),
            _ => None,
        },
    })
}

const COLUMNS: &str = "id, route, sender, recipient, body, parts, complete, sent_at, received_at, pdu, undecodable";

/// The replies an API key may see: an inbound message is a reply to a key
/// when it came from a number that key had sent a message to before it
/// arrived. `?1` is the key, or NULL for every inbound message.
const REPLY_TO: &str = "(?1 IS NULL OR EXISTS (SELECT 1 FROM messages m
     WHERE m.recipient = inbound.sender AND m.api_key = ?1 AND m.created_at <= inbound.received_at))";

pub(super) fn get(c: &Connection, id: i64, owner: Option<&str>) -> rusqlite::Result<Option<InboundView>> {
    c.prepare_cached(&format!("SELECT {COLUMNS} FROM inbound WHERE id = ?2 AND {REPLY_TO}"))?
        .query_row(params![owner, id], view)
        .optional()
}

/// Newest first, below `before_id` when given; with `owner`, only the
/// replies to that key's messages.
pub(super) fn list(
    c: &Connection,
    owner: Option<&str>,
    before_id: Option<i64>,
    limit: usize,
) -> rusqlite::Result<Vec<InboundView>> {
    c.prepare_cached(&format!("SELECT {COLUMNS} FROM inbound WHERE id < ?2 AND {REPLY_TO} ORDER BY id DESC LIMIT ?3"))?
        .query_map(params![owner, before_id.unwrap_or(i64::MAX), limit as i64], view)?
        .collect()
}
