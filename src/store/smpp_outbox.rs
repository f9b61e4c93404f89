//! Receipts owed to SMPP server accounts: a cursor over `events` fans a
//! message's final status out into one `smpp_outbox` row for the account
//! that sent it (key `smpp:<system_id>`), in the transaction that moves the
//! cursor; rows are claimed (leased) when the account has a receiving bind
//! and recorded done on an OK `deliver_sm_resp`, retried otherwise, dead
//! only after the configured time. Nothing is dropped silently. A message
//! whose `registered_delivery` asked for no receipt (or only failures) owes
//! none for those statuses: its events move the cursor and make no row.

use crate::message::Millis;
use rusqlite::{Connection, OptionalExtension, params};

const CURSOR: &str = "smpp";
const KINDS: &str = "('message.delivered','message.undelivered','message.expired','message.failed')";

/// One receipt to deliver: the message as the receipt describes it.
#[derive(Debug, Clone)]
pub struct OwedReceipt {
    pub id: i64,
    pub message_id: i64,
    pub to: String,
    pub from: Option<String>,
    pub status: String,
    pub text: String,
    pub created_at: Millis,
    pub updated_at: Millis,
    pub error_code: Option<String>,
}

/// An event as the fan-out reads it: id, kind, key, message, the message's
/// `registered_delivery`.
type EventRow = (i64, String, Option<String>, Option<i64>, Option<u8>);

/// Fan events after the cursor out to `accounts` (system_ids); how many rows were made.
pub(super) fn fan_out(c: &Connection, accounts: &[String], limit: usize, now: Millis) -> rusqlite::Result<usize> {
    let cursor: i64 = c
        .prepare_cached("SELECT event_id FROM outbox_cursor WHERE name = ?1")?
        .query_row(params![CURSOR], |r| r.get(0))
        .optional()?
        .unwrap_or(0);
    let events: Vec<EventRow> = c
        .prepare_cached(
            "SELECT e.id, e.kind, coalesce(e.api_key, m.api_key), e.message_id, m.receipt
             FROM events e LEFT JOIN messages m ON m.id = e.message_id
             WHERE e.id > ?1 ORDER BY e.id LIMIT ?2",
        )?
        .query_map(params![cursor, limit as i64], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))?
        .collect::<Result<_, _>>()?;
    let Some(last) = events.last().map(|e| e.0) else { return Ok(0) };
    let mut made = 0;
    let mut insert = c.prepare_cached(
        "INSERT OR IGNORE INTO smpp_outbox (account, event_id, message_id, created_at, next_at)
         VALUES (?1, ?2, ?3, ?4, ?4)",
    )?;
    for (id, kind, key, message_id, receipt) in &events {
        let (Some(key), Some(message_id)) = (key, message_id) else { continue };
        let Some(account) = key.strip_prefix("smpp:") else { continue };
        if !KINDS.contains(&format!("'{kind}'")) || !accounts.iter().any(|a| a == account) {
            continue;
        }
        if !receipt_wanted(*receipt, kind) {
            continue;
        }
        made += insert.execute(params![account, id, message_id, now])?;
    }
    c.prepare_cached(
        "INSERT INTO outbox_cursor (name, event_id) VALUES (?1, ?2) ON CONFLICT(name) DO UPDATE SET event_id = ?2",
    )?
    .execute(params![CURSOR, last])?;
    Ok(made)
}

/// Whether a message's `registered_delivery` (bits 0-1; NULL: not recorded,
/// every final status) asks for a receipt of this event: 0 none, 1 (and the
/// reserved 3) success and failure, 2 failure only.
fn receipt_wanted(receipt: Option<u8>, kind: &str) -> bool {
    match receipt.map(|r| r & 0x03) {
        Some(0) => false,
        Some(2) => kind != "message.delivered",
        _ => true,
    }
}

/// Lease up to `limit` due receipts of `account` for `lease_ms`, oldest first.
pub(super) fn claim(
    c: &Connection,
    account: &str,
    limit: usize,
    lease_ms: Millis,
    now: Millis,
) -> rusqlite::Result<Vec<OwedReceipt>> {
    let rows: Vec<OwedReceipt> = c
        .prepare_cached(
            "SELECT o.id, m.id, m.recipient, m.sender, m.status, m.body, m.created_at, m.updated_at, m.error_code
             FROM smpp_outbox o JOIN messages m ON m.id = o.message_id
             WHERE o.account = ?1 AND o.state = 'pending' AND o.next_at <= ?2 ORDER BY o.id LIMIT ?3",
        )?
        .query_map(params![account, now, limit as i64], |r| {
            Ok(OwedReceipt {
                id: r.get(0)?,
                message_id: r.get(1)?,
                to: r.get(2)?,
                from: r.get(3)?,
                status: r.get(4)?,
                text: r.get(5)?,
                created_at: r.get(6)?,
                updated_at: r.get(7)?,
                error_code: r.get(8)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    let mut lease = c.prepare_cached("UPDATE smpp_outbox SET next_at = ?2, attempts = attempts + 1 WHERE id = ?1")?;
    for o in &rows {
        lease.execute(params![o.id, now + lease_ms])?;
    }
    Ok(rows)
}

/// Record an attempt: `Ok(())` done; `Err(why)` retried at `retry_at`, or
/// dead when the row is older than `dead_after_ms`.
pub(super) fn record(
    c: &Connection,
    id: i64,
    result: Result<(), String>,
    retry_at: Millis,
    dead_after_ms: Millis,
    now: Millis,
) -> rusqlite::Result<()> {
    match result {
        Ok(()) => c
            .prepare_cached("UPDATE smpp_outbox SET state = 'done', last_error = NULL WHERE id = ?1")?
            .execute(params![id])?,
        Err(why) => c
            .prepare_cached(
                "UPDATE smpp_outbox SET last_error = ?2, next_at = ?3,
                 state = CASE WHEN created_at + ?4 <= ?5 THEN 'dead' ELSE 'pending' END WHERE id = ?1",
            )?
            .execute(params![id, why, retry_at, dead_after_ms, now])?,
    };
    Ok(())
}
