//! The read side: one message with its parts and history, filtered lists
//! with cursor pagination, and the counts scrapes read (kept by triggers, see
//! the schema, so reading them never scans the messages).

use crate::message::{Millis, Priority, Status};
use rusqlite::{Connection, OptionalExtension, Row, params, params_from_iter, types::Value};
use std::collections::BTreeMap;

#[derive(Debug, Clone)]
pub struct MessageView {
    pub id: i64,
    pub api_key: String,
    pub reference: Option<String>,
    pub to: String,
    pub from: Option<String>,
    pub text: String,
    pub encoding: String,
    pub segments: u32,
    pub priority: Priority,
    pub route: String,
    pub status: Status,
    pub created_at: Millis,
    pub updated_at: Millis,
    pub send_at: Option<Millis>,
    pub valid_until: Option<Millis>,
    pub attempts: u32,
    pub error_code: Option<String>,
    pub error_text: Option<String>,
    pub callback_url: Option<String>,
    /// The trigger rule that made it, if one did.
    pub trigger: Option<TriggerView>,
    /// The recipient's time zone (IANA name).
    pub tz: Option<String>,
    /// An answer's address: where its question came to, and so where it
    /// leaves from (`messages.via`).
    pub via: Option<String>,
    pub parts: Vec<PartView>,
    pub history: Vec<HistoryEntry>,
}

/// Where a rule's message came from: the rule, its step (1-based), the
/// event's key, and the event type that cancelled it, if one did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TriggerView {
    pub rule: String,
    pub step: u32,
    pub key: Option<String>,
    pub cancelled_by: Option<String>,
}

#[derive(Debug, Clone)]
pub struct PartView {
    pub index: u32,
    pub route: String,
    pub remote_id: Option<String>,
    pub status: String,
    pub error_code: Option<String>,
    pub error_text: Option<String>,
    pub submitted_at: Millis,
    pub done_at: Option<Millis>,
}

#[derive(Debug, Clone)]
pub struct HistoryEntry {
    pub at: Millis,
    pub status: Status,
    pub detail: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub status: Option<Status>,
    pub recipient: Option<String>,
    pub since: Option<Millis>,
    /// Only ids below this (the previous page's last id).
    pub before_id: Option<i64>,
    /// Only messages this API key sent.
    pub api_key: Option<String>,
    /// Only messages this trigger rule made.
    pub rule: Option<String>,
    pub priority: Option<Priority>,
    pub route: Option<String>,
    pub limit: usize,
}

#[derive(Debug, Clone, Default)]
pub struct Counts {
    pub by_status: BTreeMap<String, u64>,
    /// Queued messages by route, then priority.
    pub queued: BTreeMap<String, BTreeMap<String, u64>>,
    pub oldest_queued_at: Option<Millis>,
}

const COLUMNS: &str = "id, api_key, reference, recipient, sender, body, encoding, segments, priority, route,
    status, created_at, updated_at, send_at, valid_until, attempts, error_code, error_text, callback_url,
    rule, step, trigger_key, cancelled_by, tz, via";

fn row_to_view(r: &Row<'_>) -> rusqlite::Result<MessageView> {
    let pri: i64 = r.get(8)?;
    let status: String = r.get(10)?;
    Ok(MessageView {
        id: r.get(0)?,
        api_key: r.get(1)?,
        reference: r.get(2)?,
        to: r.get(3)?,
        from: r.get(4)?,
        text: r.get(5)?,
        encoding: r.get(6)?,
        segments: r.get(7)?,
        priority: Priority::from_i64(pri).unwrap_or(Priority::Promotional),
        route: r.get(9)?,
        status: Status::parse(&status).unwrap_or(Status::Failed),
        created_at: r.get(11)?,
        updated_at: r.get(12)?,
        send_at: r.get(13)?,
        valid_until: r.get(14)?,
        attempts: r.get(15)?,
        error_code: r.get(16)?,
        error_text: r.get(17)?,
        callback_url: r.get(18)?,
        trigger: match r.get::<_, Option<String>>(19)? {
            None => None,
            Some(rule) => Some(TriggerView {
                rule,
                step: r.get::<_, Option<u32>>(20)?.unwrap_or(0) + 1,
                key: r.get(21)?,
                cancelled_by: r.get(22)?,
            }),
        },
        tz: r.get(23)?,
        via: r.get(24)?,
        parts: Vec::new(),
        history: Vec::new(),
    })
}

/// A message's own row, without its parts and history: what a list shows.
pub(super) fn summary(c: &Connection, id: i64) -> rusqlite::Result<Option<MessageView>> {
    c.prepare_cached(&format!("SELECT {COLUMNS} FROM messages WHERE id = ?1"))?
        .query_row(params![id], row_to_view)
        .optional()
}

pub(super) fn get(c: &Connection, id: i64) -> rusqlite::Result<Option<MessageView>> {
    let Some(mut v) = summary(c, id)? else {
        return Ok(None);
    };
    v.parts = c
        .prepare_cached(
            "SELECT idx, route, remote_id, status, error_code, error_text, submitted_at, done_at
             FROM parts WHERE message_id = ?1 ORDER BY idx",
        )?
        .query_map(params![id], |r| {
            Ok(PartView {
                index: r.get(0)?,
                route: r.get(1)?,
                remote_id: r.get(2)?,
                status: r.get(3)?,
                error_code: r.get(4)?,
                error_text: r.get(5)?,
                submitted_at: r.get(6)?,
                done_at: r.get(7)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    v.history = c
        .prepare_cached("SELECT at, status, detail FROM history WHERE message_id = ?1 ORDER BY rowid")?
        .query_map(params![id], |r| {
            let s: String = r.get(1)?;
            Ok(HistoryEntry { at: r.get(0)?, status: Status::parse(&s).unwrap_or(Status::Failed), detail: r.get(2)? })
        })?
        .collect::<Result<_, _>>()?;
    Ok(Some(v))
}

/// How far back of `since` the id bound reaches: a message made just after
/// the wall clock was stepped back can carry an earlier time than the one
/// before it.
const CLOCK_SLACK_MS: Millis = 10 * 60 * 1000;

/// The lowest id from which on messages were made at or after `at`: every
/// message below it is older (one past the last id when none is that new).
/// A binary search over ids, each step one look-up by id.
/// Ids are handed out in the order messages are made, so their times grow
/// with them but for a clock stepped back (see `CLOCK_SLACK_MS`).
pub(super) fn first_id_from(c: &Connection, at: Millis) -> rusqlite::Result<i64> {
    // Each its own subquery: SQLite reads min() or max() of the rowid from
    // the b-tree's end only when it is a query's one aggregate.
    let (first, last): (Option<i64>, Option<i64>) = c
        .prepare_cached("SELECT (SELECT min(id) FROM messages), (SELECT max(id) FROM messages)")?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    let (Some(mut lo), Some(last)) = (first, last) else { return Ok(0) };
    // The time of the first message from id `x` on (none: later than any).
    let mut next = c.prepare_cached("SELECT created_at FROM messages WHERE id >= ?1 ORDER BY id LIMIT 1")?;
    let mut made_from = |x: i64| next.query_row([x], |r| r.get::<_, Millis>(0)).optional();
    // The smallest x in lo..=last + 1 whose first message is new enough.
    let mut hi = last + 1;
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if made_from(mid)?.is_none_or(|t| t >= at) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    Ok(lo)
}

/// Newest first. Builds only the conditions asked for, so SQLite can pick
/// the index that fits (status, recipient or key, then id).
pub(super) fn list(c: &Connection, f: &ListFilter) -> rusqlite::Result<Vec<MessageView>> {
    let mut conds = Vec::new();
    let mut args: Vec<Value> = Vec::new();
    if let Some(s) = f.status {
        conds.push("status = ?");
        args.push(Value::Text(s.as_str().into()));
    }
    if let Some(r) = &f.recipient {
        conds.push("recipient = ?");
        args.push(Value::Text(r.clone()));
    }
    if let Some(since) = f.since {
        conds.push("created_at >= ?");
        args.push(Value::Integer(since));
        // No index orders messages by time, but ids grow with it: a bound
        // on the id lets the newest-first walk stop there instead of going
        // through every older message when fewer than `limit` match.
        conds.push("id >= ?");
        args.push(Value::Integer(first_id_from(c, since - CLOCK_SLACK_MS)?));
    }
    if let Some(b) = f.before_id {
        conds.push("id < ?");
        args.push(Value::Integer(b));
    }
    if let Some(k) = &f.api_key {
        conds.push("api_key = ?");
        args.push(Value::Text(k.clone()));
    }
    if let Some(r) = &f.rule {
        conds.push("rule = ?");
        args.push(Value::Text(r.clone()));
    }
    if let Some(p) = f.priority {
        conds.push("priority = ?");
        args.push(Value::Integer(p.as_i64()));
    }
    if let Some(r) = &f.route {
        conds.push("route = ?");
        args.push(Value::Text(r.clone()));
    }
    let filter = if conds.is_empty() { String::new() } else { format!("WHERE {}", conds.join(" AND ")) };
    args.push(Value::Integer(f.limit as i64));
    let sql = format!("SELECT {COLUMNS} FROM messages {filter} ORDER BY id DESC LIMIT ?");
    c.prepare_cached(&sql)?.query_map(params_from_iter(args), row_to_view)?.collect()
}

/// Read from the count tables (kept by `messages::count_new`, `moved` and `rerouted`), so a scrape costs
/// the same with ten messages or ten million; the oldest queued message is
/// one step down the (status, id) index.
pub(super) fn counts(c: &Connection) -> rusqlite::Result<Counts> {
    let mut out = Counts::default();
    let mut q = c.prepare_cached("SELECT status, n FROM message_counts WHERE n > 0")?;
    let mut rows = q.query([])?;
    while let Some(r) = rows.next()? {
        out.by_status.insert(r.get(0)?, r.get::<_, i64>(1)? as u64);
    }
    let mut q = c.prepare_cached("SELECT route, priority, n FROM queue_counts WHERE n > 0")?;
    let mut rows = q.query([])?;
    while let Some(r) = rows.next()? {
        let route: String = r.get(0)?;
        let pri = Priority::from_i64(r.get(1)?).map(|p| p.as_str()).unwrap_or("unknown");
        out.queued.entry(route).or_default().insert(pri.to_string(), r.get::<_, i64>(2)? as u64);
    }
    out.oldest_queued_at = c
        .prepare_cached(
            "SELECT created_at FROM messages INDEXED BY messages_status WHERE status = 'queued' ORDER BY id LIMIT 1",
        )?
        .query_row([], |r| r.get(0))
        .optional()?;
    Ok(out)
}

/// Messages waiting in the queue, from the queue's counts.
pub(super) fn queued_total(c: &Connection) -> rusqlite::Result<u64> {
    c.prepare_cached("SELECT coalesce(sum(n), 0) FROM queue_counts")?
        .query_row([], |r| r.get::<_, i64>(0))
        .map(|n| n as u64)
}

pub(super) fn sent_since(c: &Connection, route: &str, since: Millis) -> rusqlite::Result<Vec<(String, Millis)>> {
    c.prepare_cached(
        "SELECT remote_id, submitted_at FROM parts
         WHERE route = ?1 AND remote_id IS NOT NULL AND submitted_at >= ?2 ORDER BY submitted_at",
    )?
    .query_map(rusqlite::params![route, since], |r| Ok((r.get(0)?, r.get(1)?)))?
    .collect()
}

pub(super) fn queued_routes(c: &Connection) -> rusqlite::Result<Vec<String>> {
    c.prepare_cached("SELECT DISTINCT route FROM queue_counts WHERE n > 0")?.query_map([], |r| r.get(0))?.collect()
}
