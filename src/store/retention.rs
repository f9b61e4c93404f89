//! Retention: deleting what the store no longer needs, a small batch per
//! write transaction so the writer is never held for long, and giving the
//! freed pages back to the file system with incremental vacuum.
//!
//! Only finished messages go (delivered, undelivered, expired, failed,
//! cancelled), judged by when they finished; a message still queued, being
//! sent or waiting for its delivery report is kept whatever its age.

use crate::message::Millis;
use rusqlite::{Connection, params};

/// How long each kind of row is kept; `None` keeps it forever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Finished messages, with their parts and history, after they finished.
    pub finished_ms: Option<Millis>,
    /// Inbound messages after they were received.
    pub inbound_ms: Option<Millis>,
    /// Delivery reports no sent part ever claimed (a carrier's duplicates or
    /// ids it made up), after they arrived.
    pub orphan_receipt_ms: Option<Millis>,
}

/// What one prune removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    pub messages: u64,
    pub inbound: u64,
    pub receipts: u64,
    /// Webhook rows: the most of finished deliveries, their attempts and
    /// delivered events removed by one kind.
    pub webhooks: u64,
    /// Rows of the frequency caps' ledger older than any cap's window.
    pub sends: u64,
    /// Settled SMPP server outbox rows (delivered or dead).
    pub smpp: u64,
    /// Posted trigger events and the rule runs they started.
    pub events: u64,
    /// Bytes the file gave back to the file system (incremental vacuum).
    pub freed_bytes: u64,
}

impl Pruned {
    pub fn rows(&self) -> u64 {
        self.messages + self.inbound + self.receipts + self.webhooks + self.sends + self.smpp + self.events
    }

    pub(super) fn add(&mut self, other: Pruned) {
        self.messages += other.messages;
        self.inbound += other.inbound;
        self.receipts += other.receipts;
        self.webhooks += other.webhooks;
        self.sends += other.sends;
        self.smpp += other.smpp;
        self.events += other.events;
        self.freed_bytes += other.freed_bytes;
    }
}

/// A message after which nothing more happens to it: not in one of the
/// three open statuses. Must match the `messages_finished` index's condition
/// word for word, or SQLite will not use that index.
const FINISHED: &str = "status NOT IN ('queued', 'sending') AND status <> 'submitted'";

/// Delete up to `limit` rows of each kind older than the retention allows at
/// `now`. The caller repeats while a batch comes back full.
pub(super) fn prune_batch(c: &Connection, r: &Retention, now: Millis, limit: usize) -> rusqlite::Result<Pruned> {
    let mut out = Pruned::default();
    if let Some(keep) = r.finished_ms {
        let ids: Vec<i64> = c
            .prepare_cached(&format!(
                "SELECT id FROM messages INDEXED BY messages_finished WHERE {FINISHED} AND updated_at < ?1 LIMIT ?2"
            ))?
            .query_map(params![now - keep, limit as i64], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        let mut parts = c.prepare_cached("DELETE FROM parts WHERE message_id = ?1")?;
        let mut history = c.prepare_cached("DELETE FROM history WHERE message_id = ?1")?;
        let mut message = c.prepare_cached("DELETE FROM messages WHERE id = ?1")?;
        for id in &ids {
            parts.execute(params![id])?;
            history.execute(params![id])?;
            message.execute(params![id])?;
        }
        out.messages = ids.len() as u64;
        // Webhook deliveries, their attempts and the events they carried
        // are kept as long as finished messages are.
        out.webhooks = super::webhooks::prune_batch(c, now - keep, limit)?;
        // So are the SMPP server's settled receipts and inbound deliveries.
        out.smpp = super::smpp_outbox::prune_batch(c, now - keep, limit)?;
        // And posted events with their rule runs (a rule's limit and an
        // event id's replay look back no further).
        out.events = super::triggers::prune_batch(c, now - keep, limit)?;
    }
    // A daily quota reads today's count only.
    c.prepare_cached("DELETE FROM key_days WHERE day < ?1")?
        .execute(params![crate::message::utc_day_start(now) - 86_400_000])?;
    if let Some(keep) = r.inbound_ms {
        // The same rows, first the keys that could see them.
        c.prepare_cached(
            "DELETE FROM inbound_keys WHERE inbound_id IN
             (SELECT id FROM inbound INDEXED BY inbound_age WHERE received_at < ?1 LIMIT ?2)",
        )?
        .execute(params![now - keep, limit as i64])?;
        out.inbound = c
            .prepare_cached(
                "DELETE FROM inbound WHERE id IN
                 (SELECT id FROM inbound INDEXED BY inbound_age WHERE received_at < ?1 LIMIT ?2)",
            )?
            .execute(params![now - keep, limit as i64])? as u64;
    }
    if let Some(keep) = r.orphan_receipt_ms {
        out.receipts = c
            .prepare_cached(
                "DELETE FROM early_receipts WHERE (route, remote_id) IN
                 (SELECT route, remote_id FROM early_receipts INDEXED BY early_receipts_age WHERE at < ?1 LIMIT ?2)",
            )?
            .execute(params![now - keep, limit as i64])? as u64;
    }
    // The caps' ledger counts back at most a cap's longest window (config
    // refuses more than 400 days), whatever the retention of messages.
    out.sends = c
        .prepare_cached(
            "DELETE FROM sends WHERE rowid IN (SELECT rowid FROM sends INDEXED BY sends_age WHERE at < ?1 LIMIT ?2)",
        )?
        .execute(params![now - SENDS_KEEP_MS, limit as i64])? as u64;
    Ok(out)
}

/// How long a row of the `sends` ledger is kept: the longest window a
/// `[policy.caps]` entry may have.
pub const SENDS_KEEP_MS: Millis = 400 * 24 * 3600 * 1000;

/// Move up to `pages` free pages to the end of the file and cut them off.
/// Returns the bytes given back; nothing on a file without incremental
/// auto-vacuum (see `Store::vacuum`).
pub(super) fn incremental_vacuum(c: &Connection, pages: u32) -> rusqlite::Result<u64> {
    let page_size: i64 = c.query_row("PRAGMA page_size", [], |r| r.get(0))?;
    let before: i64 = c.query_row("PRAGMA page_count", [], |r| r.get(0))?;
    // The pragma does its work one row at a time: step it to the end.
    let mut q = c.prepare(&format!("PRAGMA incremental_vacuum({pages})"))?;
    let mut rows = q.query([])?;
    while rows.next()?.is_some() {}
    drop(rows);
    let after: i64 = c.query_row("PRAGMA page_count", [], |r| r.get(0))?;
    Ok(((before - after).max(0) * page_size) as u64)
}

/// Pages on the free list: what an incremental vacuum could still give back.
pub(super) fn free_pages(c: &Connection) -> rusqlite::Result<u64> {
    c.query_row("PRAGMA freelist_count", [], |r| r.get::<_, i64>(0)).map(|n| n as u64)
}

/// The file's auto-vacuum mode is incremental (new stores are created so;
/// older files need one full `VACUUM`).
pub(super) fn is_incremental(c: &Connection) -> rusqlite::Result<bool> {
    c.query_row("PRAGMA auto_vacuum", [], |r| r.get::<_, i64>(0)).map(|m| m == 2)
}

impl Retention {
    /// The `[store]` keys as durations; 0 means keep forever.
    pub fn from_config(cfg: &crate::config::StoreConfig) -> Retention {
        let days = |d: u32| (d > 0).then_some(i64::from(d) * 24 * 3600 * 1000);
        Retention {
            finished_ms: days(cfg.retention_days),
            inbound_ms: days(cfg.inbound_retention_days.unwrap_or(cfg.retention_days)),
            orphan_receipt_ms: (cfg.orphan_receipt_hours > 0)
                .then_some(i64::from(cfg.orphan_receipt_hours) * 3600 * 1000),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::message::Status;

    #[test]
    fn prunes_exactly_the_final_statuses() {
        let open: Vec<&str> = Status::ALL.iter().filter(|s| !s.is_final()).map(|s| s.as_str()).collect();
        assert_eq!(open, ["queued", "sending", "submitted"]);
        assert_eq!(super::FINISHED, "status NOT IN ('queued', 'sending') AND status <> 'submitted'");
    }
}
