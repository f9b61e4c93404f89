//! Receipts owed to SMPP server accounts: a cursor over `events` fans a
//! message's final status out into one `smpp_outbox` row for the account
//! that sent it (key `smpp:<system_id>`), in the transaction that moves the
//! cursor; rows are claimed (leased) when the account has a receiving bind
//! and recorded done on an OK `deliver_sm_resp`, retried otherwise, dead
//! only after the configured time. Nothing is dropped silently. A message
//! whose `registered_delivery` asked for no receipt (or only failures) owes
//! none for those statuses: its events move the cursor and make no row.
//!
//! Inbound messages take the same way: an `inbound.received` event whose
//! message goes to an account by `InboundRoutes` (its number or keyword)
//! becomes a row with the `inbound_id` (and `message_id` 0), claimed apart
//! from the receipts (`claim_inbound`), recorded the same.

use crate::config::smpp_server::InboundRoutes;
use crate::message::Millis;
use rusqlite::{Connection, OptionalExtension, params};
use std::collections::BTreeMap;

const CURSOR: &str = "smpp";
/// The events that owe an account a receipt: every final status of a
/// message, so a partner waiting for one always hears how it ended, also
/// when smsgw's policy stopped it (`REJECTD`) or it was cancelled (`DELETED`:
/// by the account's own `cancel_sm`, an administrator or a trigger rule).
const KINDS: [&str; 6] = [
    "message.delivered",
    "message.undelivered",
    "message.expired",
    "message.failed",
    "message.suppressed",
    "message.cancelled",
];

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

/// One inbound message to deliver to an account.
#[derive(Debug, Clone)]
pub struct OwedInbound {
    pub id: i64,
    pub inbound_id: i64,
    pub from: String,
    pub to: String,
    pub text: String,
}

/// An account's rows not yet delivered: pending (owed now) and dead, for
/// receipts and inbound messages apart.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutboxCounts {
    pub receipts_owed: u64,
    pub inbound_owed: u64,
    pub dead: u64,
}

/// An event as the fan-out reads it: id, kind, key, message, the message's
/// `registered_delivery`, and an inbound message's id, recipient and text.
type EventRow = (i64, String, Option<String>, Option<i64>, Option<u8>, Option<i64>, Option<String>, Option<String>);

/// Fan events after the cursor out to `accounts` (system_ids): final
/// statuses of their messages, and inbound messages `inbound` routes to
/// one of them; how many rows were made and how many events read (a full
/// `limit` read means more may wait).
pub(super) fn fan_out(
    c: &Connection,
    accounts: &[String],
    inbound: &InboundRoutes,
    limit: usize,
    now: Millis,
) -> rusqlite::Result<(usize, usize)> {
    let cursor: i64 = c
        .prepare_cached("SELECT event_id FROM outbox_cursor WHERE name = ?1")?
        .query_row(params![CURSOR], |r| r.get(0))
        .optional()?
        .unwrap_or(0);
    let events: Vec<EventRow> = c
        .prepare_cached(
            "SELECT e.id, e.kind, coalesce(e.api_key, m.api_key), e.message_id, m.receipt,
                    i.id, i.recipient, CASE WHEN i.undecodable IS NULL THEN i.body END
             FROM events e LEFT JOIN messages m ON m.id = e.message_id
                           LEFT JOIN inbound i ON i.id = e.inbound_id AND e.kind = 'inbound.received'
             WHERE e.id > ?1 ORDER BY e.id LIMIT ?2",
        )?
        .query_map(params![cursor, limit as i64], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?, r.get(7)?))
        })?
        .collect::<Result<_, _>>()?;
    let Some(last) = events.last().map(|e| e.0) else { return Ok((0, 0)) };
    let mut insert_inbound = c.prepare_cached(
        "INSERT OR IGNORE INTO smpp_outbox (account, event_id, message_id, inbound_id, created_at, next_at)
         VALUES (?1, ?2, 0, ?3, ?4, ?4)",
    )?;
    let mut made = 0;
    let mut insert = c.prepare_cached(
        "INSERT OR IGNORE INTO smpp_outbox (account, event_id, message_id, created_at, next_at)
         VALUES (?1, ?2, ?3, ?4, ?4)",
    )?;
    for (id, kind, key, message_id, receipt, inbound_id, to, text) in &events {
        if let (Some(inbound_id), Some(to), Some(text)) = (inbound_id, to, text)
            && let Some(account) = inbound.route(to, text)
        {
            made += insert_inbound.execute(params![account, id, inbound_id, now])?;
            continue;
        }
        let (Some(key), Some(message_id)) = (key, message_id) else { continue };
        let Some(account) = key.strip_prefix("smpp:") else { continue };
        if !KINDS.contains(&kind.as_str()) || !accounts.iter().any(|a| a == account) {
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
    Ok((made, events.len()))
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
             WHERE o.account = ?1 AND o.state = 'pending' AND o.next_at <= ?2 AND o.inbound_id IS NULL
             ORDER BY o.id LIMIT ?3",
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
    lease(c, rows.iter().map(|o| o.id), now + lease_ms)?;
    Ok(rows)
}

/// Lease up to `limit` due inbound messages owed to `account`, oldest first.
pub(super) fn claim_inbound(
    c: &Connection,
    account: &str,
    limit: usize,
    lease_ms: Millis,
    now: Millis,
) -> rusqlite::Result<Vec<OwedInbound>> {
    let rows: Vec<OwedInbound> = c
        .prepare_cached(
            "SELECT o.id, i.id, i.sender, i.recipient, i.body
             FROM smpp_outbox o JOIN inbound i ON i.id = o.inbound_id
             WHERE o.account = ?1 AND o.state = 'pending' AND o.next_at <= ?2
             ORDER BY o.id LIMIT ?3",
        )?
        .query_map(params![account, now, limit as i64], |r| {
            Ok(OwedInbound { id: r.get(0)?, inbound_id: r.get(1)?, from: r.get(2)?, to: r.get(3)?, text: r.get(4)? })
        })?
        .collect::<Result<_, _>>()?;
    lease(c, rows.iter().map(|o| o.id), now + lease_ms)?;
    Ok(rows)
}

/// Hold claimed rows `ids` until `until`, counting the attempt.
fn lease(c: &Connection, ids: impl Iterator<Item = i64>, until: Millis) -> rusqlite::Result<()> {
    let mut q = c.prepare_cached("UPDATE smpp_outbox SET next_at = ?2, attempts = attempts + 1 WHERE id = ?1")?;
    for id in ids {
        q.execute(params![id, until])?;
    }
    Ok(())
}

/// Each account's rows owed now and dead.
pub(super) fn counts(c: &Connection) -> rusqlite::Result<BTreeMap<String, OutboxCounts>> {
    let mut out: BTreeMap<String, OutboxCounts> = BTreeMap::new();
    let mut q = c.prepare_cached(
        "SELECT account, inbound_id IS NOT NULL, state, count(*) FROM smpp_outbox
         WHERE state IN ('pending', 'dead') GROUP BY 1, 2, 3",
    )?;
    let mut rows = q.query([])?;
    while let Some(r) = rows.next()? {
        let (account, inbound, state, n): (String, bool, String, i64) = (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?);
        let e = out.entry(account).or_default();
        let n = n.max(0) as u64;
        match (state.as_str(), inbound) {
            ("dead", _) => e.dead += n,
            (_, true) => e.inbound_owed += n,
            (_, false) => e.receipts_owed += n,
        }
    }
    Ok(out)
}

/// Delete up to `limit` rows made before `before` that are settled
/// (delivered or dead), or whose message or inbound message retention has
/// already removed (nothing is left to deliver): what was owed is kept as
/// long as finished messages are.
pub(super) fn prune_batch(c: &Connection, before: Millis, limit: usize) -> rusqlite::Result<u64> {
    Ok(c.prepare_cached(
        "DELETE FROM smpp_outbox WHERE id IN
         (SELECT o.id FROM smpp_outbox o WHERE o.created_at < ?1 AND (
              o.state IN ('done', 'dead')
              OR (o.inbound_id IS NULL AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.id = o.message_id))
              OR (o.inbound_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM inbound i WHERE i.id = o.inbound_id)))
          LIMIT ?2)",
    )?
    .execute(params![before, limit as i64])? as u64)
}

/// Record an attempt: `Ok(())` done; `Err(why)` retried at `retry_at`, or
/// dead when the row is older than `dead_after_ms`.
pub(super) fn record(
    c: &Connection,
    id: i64,
    result: &Result<(), String>,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::smpp_server::SmppServer;

    #[test]
    fn inbound_is_owed_to_its_account_apart_from_receipts_and_pruned_once_settled() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Connection::open(dir.path().join("t.db")).unwrap();
        super::super::schema::migrate(&mut c).unwrap();
        let cfg: SmppServer = toml::from_str(
            "listen = \"127.0.0.1:2775\"\n[[accounts]]\nsystem_id = \"shop\"\npassword = \"pw\"\n\
             inbound = { keywords = [\"SHOP\"] }\n",
        )
        .unwrap();
        let routes = InboundRoutes::new(&cfg.accounts);
        for (id, text) in [(1, "shop 1"), (2, "hello"), (3, "Shop 2")] {
            c.execute(
                "INSERT INTO inbound (id, route, sender, recipient, body, parts, complete, received_at)
                 VALUES (?1, 'r', '+79161234567', '7726', ?2, 1, 1, 0)",
                params![id, text],
            )
            .unwrap();
            c.execute("INSERT INTO events (kind, at, inbound_id) VALUES ('inbound.received', 0, ?1)", params![id])
                .unwrap();
        }
        let accounts = vec!["shop".to_string()];
        assert_eq!(fan_out(&c, &accounts, &routes, 10, 1000).unwrap(), (2, 3));
        assert_eq!(fan_out(&c, &accounts, &routes, 10, 1000).unwrap(), (0, 0), "the cursor moved");
        assert!(claim(&c, "shop", 10, 30_000, 1000).unwrap().is_empty(), "no receipt is owed");
        let owed = claim_inbound(&c, "shop", 10, 30_000, 1000).unwrap();
        let texts: Vec<&str> = owed.iter().map(|o| o.text.as_str()).collect();
        assert_eq!(texts, ["shop 1", "Shop 2"]);
        assert!(claim_inbound(&c, "shop", 10, 30_000, 1000).unwrap().is_empty(), "leased");
        assert_eq!(counts(&c).unwrap()["shop"], OutboxCounts { inbound_owed: 2, ..Default::default() });
        record(&c, owed[0].id, &Ok(()), 0, 1000, 2000).unwrap();
        assert_eq!(counts(&c).unwrap()["shop"].inbound_owed, 1);
        assert_eq!(prune_batch(&c, 1001, 10).unwrap(), 1, "the delivered row only");
        assert_eq!(counts(&c).unwrap()["shop"].inbound_owed, 1, "the owed one stays");
        c.execute("DELETE FROM inbound WHERE id = 3", []).unwrap();
        assert_eq!(prune_batch(&c, 1001, 10).unwrap(), 1, "owed, but its inbound message is gone");
        assert!(counts(&c).unwrap().is_empty());
    }
}
