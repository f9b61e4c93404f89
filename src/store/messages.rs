//! The write side of a message's life in SQL: accept, claim, record what the
//! route said (the parts it took, even when a later one failed, so a retry
//! resumes after them), apply delivery reports (telling apart parts whose
//! ids came round again by the network's time), cancel, replace a queued
//! message's text (SMPP `replace_sm`), expire. Every state
//! change writes a history row in the same transaction. Policy (`policy`)
//! is asked at accept and at claim, in those transactions: a message it
//! stops is `suppressed` and never handed to a route.

use super::StoreError;
use super::events::{self, NewEvent};
use super::policy::{self, Stop};
use super::tally;
use crate::config::Policy;
use crate::message::{EventKind, Millis, Priority, ReceiptStatus, SYSTEM_KEY, Status};
use crate::sms::Encoding;
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

/// A message to store. Its `to`, `from` and `text` are the API's names (the
/// table's columns are `recipient`, `sender` and `body`).
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub to: String,
    pub from: Option<String>,
    pub text: String,
    pub encoding: Encoding,
    pub segments: u32,
    pub priority: Priority,
    pub route: String,
    pub reference: Option<String>,
    pub send_at: Option<Millis>,
    pub valid_until: Millis,
    /// Where this message's events are posted (besides the key's
    /// subscriptions), checked like a subscription's URL.
    pub callback_url: Option<String>,
    /// The recipient's IANA time zone when the sender knows it (an event's
    /// `tz`); otherwise the store derives it from the number, else the
    /// configured default.
    pub tz: Option<String>,
    /// The receipts an SMPP account asked for (`registered_delivery` bits
    /// 0-1: 0 none, 1 all, 2 failures only); `None` for the API's messages.
    pub receipt: Option<u8>,
    /// The address an auto-reply leaves from: where its question came to
    /// (see `channel::Outbound::via`); `None` for every other message.
    pub via: Option<String>,
}

/// What the API answers for each accepted message; kept verbatim for
/// idempotent replays.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accepted {
    pub id: i64,
    pub to: String,
    /// `queued`, or `suppressed` when policy stopped it at once.
    pub status: Status,
    pub encoding: String,
    pub segments: u32,
    /// Why it was suppressed: `opted_out` or `no_consent`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone)]
pub struct IdemKey {
    pub key: String,
    pub body_hash: Vec<u8>,
}

#[derive(Debug)]
pub enum EnqueueOutcome {
    Created(Vec<Accepted>),
    /// Same idempotency key, same body: the first answer, nothing created.
    Replayed(Vec<Accepted>),
    /// Same idempotency key, different body.
    Conflict,
    /// The key's daily quota has no room for all of these; nothing written.
    OverQuota {
        /// Messages the key created since UTC midnight.
        used: u64,
    },
}

/// A message handed to the dispatcher for one attempt.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub id: i64,
    pub to: String,
    pub from: Option<String>,
    pub text: String,
    pub encoding: Encoding,
    pub segments: u32,
    pub priority: Priority,
    /// Attempts including this one.
    pub attempt: u32,
    pub valid_until: Option<Millis>,
    /// Parts 0.. that earlier attempts on this route handed to the network
    /// (their remote ids), and the concatenation reference they carry: a
    /// retry resumes after them.
    pub sent: Vec<Option<String>>,
    pub concat_ref: Option<u16>,
    /// The address it should leave from (`messages.via`): an answer's, the
    /// SIM or number its question came to.
    pub via: Option<String>,
}

#[derive(Debug, Clone)]
pub struct SubmittedPart {
    pub index: u32,
    /// The route's id for the part (SMSC message id, modem TP-MR...).
    pub remote_id: Option<String>,
}

/// An attempt that did not go through. `retry_at` requeues the message;
/// without it the message ends in `final_status`.
#[derive(Debug, Clone)]
pub struct AttemptFailure {
    pub code: String,
    pub text: String,
    pub retry_at: Option<Millis>,
    pub final_status: Status,
    /// The message never reached the network: the attempt its claim
    /// counted is given back.
    pub untried: bool,
    /// Parts the route took before the failure, and their reference.
    pub accepted: Vec<SubmittedPart>,
    pub concat_ref: Option<u16>,
}

/// A delivery report for one part, as a route understood it.
#[derive(Debug, Clone)]
pub struct Receipt {
    pub route: String,
    pub remote_id: String,
    pub status: ReceiptStatus,
    pub error_code: Option<String>,
    pub error_text: Option<String>,
    /// When the network took the part (ms since the epoch), if the report
    /// says: of several open parts with this id, the newest sent before it.
    pub sc_time: Option<Millis>,
    /// Another id the part may be stored under (written by an earlier
    /// smsgw).
    pub legacy_id: Option<String>,
}

/// How far the network's clock and ours may disagree, plus the time between
/// the network taking a part and our recording it: a report's time is read
/// with this much slack.
pub const SC_SKEW_MS: Millis = 120_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiptMatch {
    /// Applied to its part; the message is not final yet.
    Matched,
    /// Applied, and it made the message final.
    Final { status: Status, created_at: Millis },
    /// No part has that id yet; kept until the submit result is recorded.
    Early,
    /// The part already had a final state.
    Duplicate,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelOutcome {
    Cancelled,
    NotFound,
    TooLate(Status),
}

/// Record a message's move to `status`: its history row and, when the move
/// is an event a service may be told of, its outbox row, in the caller's
/// transaction.
pub(super) fn history(c: &Connection, id: i64, at: Millis, status: Status, detail: &str) -> rusqlite::Result<()> {
    c.prepare_cached("INSERT INTO history (message_id, at, status, detail) VALUES (?1, ?2, ?3, ?4)")?
        .execute(params![id, at, status.as_str(), detail])?;
    if let Some(kind) = EventKind::for_status(status) {
        events::emit(c, kind, at, &NewEvent { message_id: Some(id), ..NewEvent::default() })?;
    }
    Ok(())
}

/// Accept `msgs` from `api_key`, all or none. With `daily_quota`, refuse
/// the lot when it would take the key past that many messages since UTC
/// midnight; the count and the insert share one transaction, so two
/// requests at once cannot both slip under the quota. A message `policy`
/// stops is stored `suppressed` (it counts against the quota: it was
/// asked for).
pub(super) fn enqueue(
    c: &Connection,
    api_key: &str,
    idem: Option<&IdemKey>,
    msgs: &[NewMessage],
    daily_quota: Option<u64>,
    policy: &Policy,
    now: Millis,
) -> Result<EnqueueOutcome, StoreError> {
    if let Some(k) = idem {
        let prior: Option<(Vec<u8>, String)> = c
            .prepare_cached("SELECT body_hash, response FROM idempotency WHERE api_key = ?1 AND key = ?2")?
            .query_row(params![api_key, k.key], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        if let Some((hash, response)) = prior {
            if hash != k.body_hash {
                return Ok(EnqueueOutcome::Conflict);
            }
            let accepted = serde_json::from_str(&response)
                .map_err(|e| StoreError::Unavailable(format!("stored idempotent answer unreadable: {e}")))?;
            return Ok(EnqueueOutcome::Replayed(accepted));
        }
    }
    if let Some(quota) = daily_quota {
        let used = tally::created_on(c, api_key, crate::message::utc_day_start(now))? as u64;
        if used + msgs.len() as u64 > quota {
            return Ok(EnqueueOutcome::OverQuota { used });
        }
    }
    let mut out = Vec::with_capacity(msgs.len());
    for m in msgs {
        out.push(insert(c, api_key, m, None, policy, now)?);
    }
    if let Some(k) = idem {
        let response = serde_json::to_string(&out)
            .map_err(|e| StoreError::Unavailable(format!("cannot encode idempotent answer: {e}")))?;
        c.prepare_cached(
            "INSERT INTO idempotency (api_key, key, body_hash, response, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        )?
        .execute(params![api_key, k.key, k.body_hash, response, now])?;
    }
    Ok(EnqueueOutcome::Created(out))
}

/// Where a message made by a trigger rule came from: the rule, its step
/// (0-based), the event's key (what `cancel_on` events match) and the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleOrigin {
    pub rule: String,
    pub step: u32,
    pub key: Option<String>,
    pub run_id: i64,
}

/// Insert one accepted message (queued, or suppressed when `policy` stops
/// it now) with its history row: the one way a message row is made, for
/// `POST /v1/messages` and for trigger rules alike.
pub(super) fn insert(
    c: &Connection,
    api_key: &str,
    m: &NewMessage,
    origin: Option<&RuleOrigin>,
    policy: &Policy,
    now: Millis,
) -> Result<Accepted, StoreError> {
    let stop = if policy.exempt || api_key == SYSTEM_KEY { None } else { policy::stop(c, policy, &m.to, m.priority)? };
    // The recipient's zone: the one given, else what the number tells,
    // else the site's default.
    let tz = match &m.tz {
        Some(tz) => tz.clone(),
        None => crate::zone::for_number(&m.to).unwrap_or(policy.default_tz).name().to_string(),
    };
    let status = if stop.is_some() { Status::Suppressed } else { Status::Queued };
    c.prepare_cached(
        "INSERT INTO messages (api_key, reference, recipient, sender, body, encoding, segments, priority,
                               route, status, created_at, updated_at, send_at, due_at, valid_until,
                               error_code, error_text, callback_url, tz, rule, step, trigger_key, run_id,
                               exempt, receipt, via)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?14, ?10, ?10, ?11, ?12, ?13, ?15, ?16, ?17,
                 ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25)",
    )?
    .execute(params![
        api_key,
        m.reference,
        m.to,
        m.from,
        m.text,
        m.encoding.as_str(),
        m.segments,
        m.priority.as_i64(),
        m.route,
        now,
        m.send_at,
        m.send_at.unwrap_or(now).max(now),
        m.valid_until,
        status.as_str(),
        stop.as_ref().map(|s| s.code),
        stop.as_ref().map(|s| &s.text),
        m.callback_url,
        tz,
        origin.map(|o| &o.rule),
        origin.map(|o| o.step),
        origin.and_then(|o| o.key.as_ref()),
        origin.map(|o| o.run_id),
        policy.exempt,
        m.receipt,
        m.via,
    ])?;
    let id = c.last_insert_rowid();
    count_new(c, status, &m.route, m.priority)?;
    tally::created(c, api_key, crate::message::utc_day_start(now), 1)?;
    let mut detail = match origin {
        None => format!("accepted from API key {api_key:?}"),
        Some(o) => format!("made by rule {:?}, step {}", o.rule, o.step + 1),
    };
    if let Some(s) = &stop {
        detail.push_str(&format!("; not sent: {}", s.text));
    }
    history(c, id, now, status, &detail)?;
    Ok(Accepted {
        id,
        to: m.to.clone(),
        status,
        encoding: m.encoding.as_str().to_string(),
        segments: m.segments,
        reason: stop.map(|s| s.code.to_string()),
    })
}

/// Count a new message in `message_counts` and, queued, in `queue_counts`
/// (see `tally`). The counts are kept by the code that changes a message
/// (`count_new`, `moved`, `rerouted`; a delete by the schema's one
/// trigger), not by triggers on every insert and update: such a trigger
/// makes SQLite keep a statement journal for each of those statements,
/// which cost the writer a third of its time.
fn count_new(c: &Connection, status: Status, route: &str, priority: Priority) -> rusqlite::Result<()> {
    tally::status(c, status, 1)?;
    if status == Status::Queued {
        tally::queue(c, route, priority.as_i64(), 1)?;
    }
    Ok(())
}

/// Count message `id`'s move from `from` to `to`, after its UPDATE; every
/// status change calls it. `queue` is its route and class when the caller
/// has them (needed only for a move into or out of `queued`).
pub(super) fn moved(
    c: &Connection,
    id: i64,
    from: Status,
    to: Status,
    queue: Option<(&str, Priority)>,
) -> rusqlite::Result<()> {
    if from == to {
        return Ok(());
    }
    tally::status(c, from, -1)?;
    tally::status(c, to, 1)?;
    if from != Status::Queued && to != Status::Queued {
        return Ok(());
    }
    let n = if to == Status::Queued { 1 } else { -1 };
    match queue {
        Some((route, priority)) => tally::queue(c, route, priority.as_i64(), n),
        None => {
            let (route, priority): (String, i64) = c
                .prepare_cached("SELECT route, priority FROM messages WHERE id = ?1")?
                .query_row(params![id], |r| Ok((r.get(0)?, r.get(1)?)))?;
            tally::queue(c, &route, priority, n)
        }
    }
}

/// Count a queued message of class `priority` moving from route `from` to route `to`.
fn rerouted(c: &Connection, priority: i64, from: &str, to: &str) -> rusqlite::Result<()> {
    tally::queue(c, from, priority, -1)?;
    tally::queue(c, to, priority, 1)
}

/// Count every stored message again (after a bulk fill, which bypasses
/// `insert`).
pub(super) fn recount(c: &Connection) -> rusqlite::Result<()> {
    c.execute_batch(
        "DELETE FROM message_counts;
         INSERT INTO message_counts (status, n) SELECT status, count(*) FROM messages GROUP BY status;
         DELETE FROM queue_counts;
         INSERT INTO queue_counts (route, priority, n)
             SELECT route, priority, count(*) FROM messages WHERE status = 'queued' GROUP BY route, priority;
         DELETE FROM key_days;
         INSERT INTO key_days (api_key, day, n)
             SELECT api_key, created_at - created_at % 86400000, count(*) FROM messages GROUP BY 1, 2;",
    )
}

/// What a claim took: the messages for the route, and the reasons of those
/// policy suppressed instead (an opt-out or a withdrawal since they were
/// accepted).
#[derive(Debug, Default)]
pub(super) struct Claim {
    pub claimed: Vec<Claimed>,
    pub suppressed: Vec<&'static str>,
    /// Messages due in their recipient's quiet hours, moved to the opening.
    pub deferred: u64,
}

/// The due messages of one class on one route, oldest due first.
pub(super) const CLAIM_SQL: &str =
    "SELECT id, recipient, sender, body, encoding, segments, priority, attempts, valid_until,
            api_key = ?4 OR exempt, tz, via
     FROM messages WHERE route = ?1 AND status = 'queued' AND priority = ?5 AND due_at <= ?2
     ORDER BY due_at, id LIMIT ?3";

pub(super) fn claim(
    c: &Connection,
    route: &str,
    limit: usize,
    policy: &Policy,
    now: Millis,
) -> Result<Claim, StoreError> {
    let mut rows = Vec::new();
    // One range scan of the `messages_queue` index (route, priority,
    // due_at, id) per class, most urgent first: a claim reads only due rows
    // however many wait further ahead (a million rules' timers cost it
    // nothing). One `ORDER BY priority, due_at` over the whole route would
    // walk every queued row of the route to find the due ones. Its plan:
    // `SEARCH messages USING INDEX messages_queue (route=? AND priority=? AND
    // due_at<?)` (see the store's tests).
    for class in Priority::ALL {
        let left = limit.saturating_sub(rows.len());
        if left == 0 {
            break;
        }
        let mut q = c.prepare_cached(CLAIM_SQL)?;
        let mut it = q.query(params![route, now, left as i64, SYSTEM_KEY, class.as_i64()])?;
        while let Some(r) = it.next()? {
            let enc: String = r.get(4)?;
            let attempts: u32 = r.get(7)?;
            let answer: bool = r.get(9)?;
            let tz: Option<String> = r.get(10)?;
            rows.push((
                answer,
                tz,
                Claimed {
                    sent: Vec::new(),
                    concat_ref: None,
                    id: r.get(0)?,
                    to: r.get(1)?,
                    from: r.get(2)?,
                    text: r.get(3)?,
                    encoding: Encoding::parse(&enc).unwrap_or(Encoding::Ucs2),
                    segments: r.get(5)?,
                    priority: class,
                    attempt: attempts + 1,
                    valid_until: r.get(8)?,
                    via: r.get(11)?,
                },
            ));
        }
    }
    let mut out = Claim { claimed: Vec::with_capacity(rows.len()), suppressed: Vec::new(), deferred: 0 };
    for (answer, tz, m) in rows {
        if m.valid_until.is_some_and(|v| v < now) {
            expire(c, m.id, (route, m.priority), now)?;
            continue;
        }
        // smsgw's own answers (help, opt-out confirmations) are what the
        // number just asked for, and an exempt message's sender is not ours
        // to police: policy does not stop or hold them.
        if !answer {
            if let Some(stop) = policy::stop(c, policy, &m.to, m.priority)? {
                suppress(c, m.id, (route, m.priority), &stop, now)?;
                out.suppressed.push(stop.code);
                continue;
            }
            // Quiet hours in the recipient's zone: wait for the opening
            // (still queued; re-checked when it comes due again).
            if let Some((opens, why)) = policy::quiet(policy, tz.as_deref(), m.priority, now) {
                c.prepare_cached("UPDATE messages SET due_at = ?2, updated_at = ?3 WHERE id = ?1")?
                    .execute(params![m.id, opens, now])?;
                history(c, m.id, now, Status::Queued, &why)?;
                out.deferred += 1;
                continue;
            }
            // A cap counts a message once, at its first attempt.
            if m.attempt == 1 {
                if let Some(stop) = policy::capped(c, policy, &m.to, m.priority, now)? {
                    suppress(c, m.id, (route, m.priority), &stop, now)?;
                    out.suppressed.push(stop.code);
                    continue;
                }
                policy::record_send(c, policy, &m.to, m.priority, m.id, now)?;
            }
        }
        c.prepare_cached(
            "UPDATE messages SET status = 'sending', attempts = attempts + 1, updated_at = ?2 WHERE id = ?1",
        )?
        .execute(params![m.id, now])?;
        // No history row: the attempt's outcome writes one (submitted, or
        // why not), and while it runs the message shows `sending`.
        moved(c, m.id, Status::Queued, Status::Sending, Some((route, m.priority)))?;
        let mut m = m;
        if m.segments > 1 {
            (m.sent, m.concat_ref) = sent_before(c, m.id, route)?;
        }
        out.claimed.push(m);
    }
    Ok(out)
}

/// A queued message policy stops: final, never handed to a route.
fn suppress(c: &Connection, id: i64, queue: (&str, Priority), stop: &Stop, now: Millis) -> rusqlite::Result<()> {
    c.prepare_cached(
        "UPDATE messages SET status = 'suppressed', updated_at = ?2, error_code = ?3, error_text = ?4 WHERE id = ?1",
    )?
    .execute(params![id, now, stop.code, stop.text])?;
    moved(c, id, Status::Queued, Status::Suppressed, Some(queue))?;
    history(c, id, now, Status::Suppressed, &format!("not sent: {}", stop.text))
}

/// The parts 0.. an earlier attempt of message `id` handed to `route`, and
/// their reference; nothing when they went through another route (a phone
/// joins only parts from one sender).
fn sent_before(c: &Connection, id: i64, route: &str) -> rusqlite::Result<(Vec<Option<String>>, Option<u16>)> {
    let rows: Vec<(i64, String, Option<String>)> = c
        .prepare_cached("SELECT idx, route, remote_id FROM parts WHERE message_id = ?1 ORDER BY idx")?
        .query_map(params![id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<Result<_, _>>()?;
    let contiguous = rows.iter().enumerate().all(|(i, (idx, r, _))| *idx == i as i64 && r == route);
    let reference: Option<i64> =
        c.prepare_cached("SELECT concat_ref FROM messages WHERE id = ?1")?.query_row(params![id], |r| r.get(0))?;
    match reference.and_then(|r| u16::try_from(r).ok()) {
        Some(r) if contiguous && !rows.is_empty() => Ok((rows.into_iter().map(|(_, _, id)| id).collect(), Some(r))),
        _ => Ok((Vec::new(), None)),
    }
}

/// Write the parts a route took, from the first of `parts` on (replacing
/// what an abandoned earlier try left there), and apply reports that
/// overtook them; `Final` when one of those made the message final. (The
/// caller keeps their reference on the message.)
fn store_parts(
    c: &Connection,
    id: i64,
    route: &str,
    parts: &[SubmittedPart],
    now: Millis,
) -> Result<Option<ReceiptMatch>, StoreError> {
    let mut finished = None;
    let Some(first) = parts.first() else { return Ok(finished) };
    c.prepare_cached("DELETE FROM parts WHERE message_id = ?1 AND idx >= ?2")?.execute(params![id, first.index])?;
    let mut ins = c.prepare_cached(
        "INSERT OR REPLACE INTO parts (message_id, idx, route, remote_id, status, submitted_at)
         VALUES (?1, ?2, ?3, ?4, 'submitted', ?5)",
    )?;
    for p in parts {
        ins.execute(params![id, p.index, route, p.remote_id, now])?;
    }
    // Receipts that overtook this submit result (a stale one, for an
    // earlier part that had the same id, is left alone). Looked up first
    // and deleted only when there is one: nearly always there is none, and
    // a DELETE ... RETURNING builds a temporary table on every run.
    for p in parts {
        let Some(remote) = &p.remote_id else { continue };
        let early: Option<Receipt> = c
            .prepare_cached(
                "SELECT status, error_code, error_text, sc_time FROM early_receipts
                 WHERE route = ?1 AND remote_id = ?2 AND (sc_time IS NULL OR sc_time >= ?3)",
            )?
            .query_row(params![route, remote, now - SC_SKEW_MS], |r| {
                let status: String = r.get(0)?;
                let (error_code, error_text, sc_time) = (r.get(1)?, r.get(2)?, r.get(3)?);
                Ok(ReceiptStatus::parse(&status).map(|status| Receipt {
                    route: route.to_string(),
                    remote_id: remote.clone(),
                    status,
                    error_code,
                    error_text,
                    sc_time,
                    legacy_id: None,
                }))
            })
            .optional()?
            .flatten();
        if let Some(receipt) = early {
            c.prepare_cached("DELETE FROM early_receipts WHERE route = ?1 AND remote_id = ?2")?
                .execute(params![route, remote])?;
            let applied = apply_receipt(c, &receipt, now)?;
            if matches!(applied, ReceiptMatch::Final { .. }) {
                finished = Some(applied);
            }
        }
    }
    Ok(finished)
}

/// A queued message (on `queue`: its route and class) whose validity ran out.
fn expire(c: &Connection, id: i64, queue: (&str, Priority), now: Millis) -> rusqlite::Result<()> {
    c.prepare_cached(
        "UPDATE messages SET status = 'expired', updated_at = ?2, error_code = 'expired',
                error_text = 'validity ran out before the message could be sent' WHERE id = ?1",
    )?
    .execute(params![id, now])?;
    moved(c, id, Status::Queued, Status::Expired, Some(queue))?;
    history(c, id, now, Status::Expired, "validity ran out before the message could be sent")
}

/// Every part from the first of `parts` to the last is with the route (the
/// ones before, if any, went with an earlier attempt). `Final` when reports
/// that overtook the result made the message final here.
pub(super) fn record_submitted(
    c: &Connection,
    id: i64,
    route: &str,
    parts: &[SubmittedPart],
    concat_ref: Option<u16>,
    now: Millis,
) -> Result<Option<ReceiptMatch>, StoreError> {
    let total = parts.last().map_or(0, |p| p.index + 1);
    let changed = c
        .prepare_cached(
            "UPDATE messages SET status = 'submitted', updated_at = ?2, error_code = NULL, error_text = NULL,
                    parts_total = ?3, concat_ref = ?4
             WHERE id = ?1 AND status = 'sending'",
        )?
        .execute(params![id, now, total, concat_ref])?;
    if changed == 0 {
        tracing::warn!(message = id, "submit result for a message that is not being sent; ignored");
        return Ok(None);
    }
    moved(c, id, Status::Sending, Status::Submitted, None)?;
    let n = parts.len();
    let mut detail = format!("{n} part{} accepted by route {route}", if n == 1 { "" } else { "s" });
    if let Some(first) = parts.first().filter(|p| p.index > 0) {
        detail.push_str(&format!(" (parts {}-{total} of {total}; an earlier attempt sent the rest)", first.index + 1));
    }
    history(c, id, now, Status::Submitted, &detail)?;
    store_parts(c, id, route, parts, now)
}

pub(super) fn record_failure(c: &Connection, id: i64, f: &AttemptFailure, now: Millis) -> Result<(), StoreError> {
    match f.retry_at {
        Some(at) => {
            let n = c
                .prepare_cached(
                    "UPDATE messages SET status = 'queued', due_at = ?2, updated_at = ?3, error_code = ?4,
                            error_text = ?5, attempts = attempts - ?6 WHERE id = ?1 AND status = 'sending'",
                )?
                .execute(params![id, at, now, f.code, f.text, i64::from(f.untried)])?;
            if n > 0 {
                moved(c, id, Status::Sending, Status::Queued, None)?;
                let what = if f.untried { "not sent" } else { "temporary failure" };
                let mut detail =
                    format!("{what} ({}: {}); retry at {}", f.code, f.text, crate::message::to_rfc3339(at));
                if let (Some(first), Some(last)) = (f.accepted.first(), f.accepted.last()) {
                    let (a, b) = (first.index + 1, last.index + 1);
                    let parts = if a == b { format!("part {a}") } else { format!("parts {a}-{b}") };
                    detail.push_str(&format!("; {parts} went out and will not be sent again"));
                }
                history(c, id, now, Status::Queued, &detail)?;
                record_accepted(c, id, f, now)?;
            }
        }
        None => {
            let n = c
                .prepare_cached(
                    "UPDATE messages SET status = ?2, updated_at = ?3, error_code = ?4, error_text = ?5
                     WHERE id = ?1 AND status = 'sending'",
                )?
                .execute(params![id, f.final_status.as_str(), now, f.code, f.text])?;
            if n > 0 {
                moved(c, id, Status::Sending, f.final_status, None)?;
                history(c, id, now, f.final_status, &format!("{}: {}", f.code, f.text))?;
                record_accepted(c, id, f, now)?;
            }
        }
    }
    Ok(())
}

/// The parts a route took before a failure, kept so their reports match and
/// the next attempt resumes after them.
fn record_accepted(c: &Connection, id: i64, f: &AttemptFailure, now: Millis) -> Result<(), StoreError> {
    if f.accepted.is_empty() {
        return Ok(());
    }
    let route: String = c
        .prepare_cached("UPDATE messages SET concat_ref = ?2 WHERE id = ?1 RETURNING route")?
        .query_row(params![id, f.concat_ref], |r| r.get(0))?;
    store_parts(c, id, &route, &f.accepted, now).map(|_| ())
}

/// A report finds its part by route and id. Ids may come round again (a
/// modem's TP-MR wraps after 256 sends), so of the parts still waiting for
/// a report it takes the newest one sent before the network's time on the
/// report (with [`SC_SKEW_MS`] of slack), or the newest one when that time
/// is missing or fits none. A report for no waiting part is a duplicate of
/// one already applied (same id and network time), or is kept until its
/// submit result is recorded.
pub(super) fn apply_receipt(c: &Connection, r: &Receipt, now: Millis) -> Result<ReceiptMatch, StoreError> {
    // The ids its part may be recorded under: the report's, and the
    // route's older form of it. (One equality per id: an IN list would make
    // SQLite build a temporary table of its values on every run.)
    let ids: &[&str] = match r.legacy_id.as_deref() {
        Some(legacy) if legacy != r.remote_id => &[r.remote_id.as_str(), legacy],
        _ => &[r.remote_id.as_str()],
    };
    // Every part sent under those ids, in one pass of `parts_remote`: the
    // waiting ones to match, and whether one already took a report with
    // this network time (a report read twice, as a modem may keep one
    // after a crash, carries the time of the one already applied). Of the
    // waiting parts, the first by (sent before the report's time, newest,
    // highest message id and part); usually there is one, picked here
    // rather than by an ORDER BY, which needs a sorter.
    let sent_before = r.sc_time.map_or(Millis::MAX, |t| t.saturating_add(SC_SKEW_MS));
    let mut best: Option<(bool, Millis, i64, i64)> = None;
    let mut seen = false;
    let mut q = c.prepare_cached(
        "SELECT submitted_at, message_id, idx, status = 'submitted', sc_time FROM parts
         WHERE route = ?1 AND remote_id = ?2",
    )?;
    for id in ids {
        let mut rows = q.query(params![r.route, id])?;
        while let Some(row) = rows.next()? {
            seen |= row.get::<_, Option<Millis>>(4)? == r.sc_time;
            if row.get(3)? {
                let at: Millis = row.get(0)?;
                let candidate = (at <= sent_before, at, row.get(1)?, row.get(2)?);
                if best.is_none_or(|b| candidate > b) {
                    best = Some(candidate);
                }
            }
        }
    }
    if r.sc_time.is_some() && seen {
        return Ok(ReceiptMatch::Duplicate);
    }
    let Some((_, _, id, idx)) = best else {
        if seen {
            return Ok(ReceiptMatch::Duplicate);
        }
        c.prepare_cached(
            "INSERT OR REPLACE INTO early_receipts (route, remote_id, status, error_code, error_text, at, sc_time)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?
        .execute(params![
            r.route,
            r.remote_id,
            r.status.as_str(),
            r.error_code,
            r.error_text,
            now,
            r.sc_time
        ])?;
        return Ok(ReceiptMatch::Early);
    };
    c.prepare_cached(
        "UPDATE parts SET status = ?3, error_code = ?4, error_text = ?5, done_at = ?6, sc_time = ?7
         WHERE message_id = ?1 AND idx = ?2",
    )?
    .execute(params![id, idx, r.status.as_str(), r.error_code, r.error_text, now, r.sc_time])?;
    Ok(match roll_up(c, id, (idx, r), now)? {
        Some((status, created_at)) => ReceiptMatch::Final { status, created_at },
        None => ReceiptMatch::Matched,
    })
}

/// When every part of a submitted message has a final state, the message
/// takes the worst of them: delivered only if all were. `just` is the part
/// the caller just gave a report, and the report: when that is the
/// message's one part, its parts need not be read back.
fn roll_up(c: &Connection, id: i64, just: (i64, &Receipt), now: Millis) -> rusqlite::Result<Option<(Status, Millis)>> {
    // A message is submitted once the route took its last part, and then
    // knows how many parts it has at the route (one for a message_payload
    // submit of a long text); parts an earlier attempt sent are among them.
    // Until every one of those is recorded, a part was never sent.
    let (status, created_at, total): (String, Millis, Option<i64>) = c
        .prepare_cached("SELECT status, created_at, parts_total FROM messages WHERE id = ?1")?
        .query_row(params![id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    if status != Status::Submitted.as_str() {
        return Ok(None);
    }
    let parts: Vec<(String, Option<String>, Option<String>)> = match just {
        (0, r) if total == Some(1) => vec![(r.status.as_str().into(), r.error_code.clone(), r.error_text.clone())],
        _ => c
            .prepare_cached("SELECT status, error_code, error_text FROM parts WHERE message_id = ?1 ORDER BY idx")?
            .query_map(params![id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<Result<_, _>>()?,
    };
    if parts.is_empty() || parts.iter().any(|p| p.0 == "submitted") || total.is_some_and(|t| (parts.len() as i64) < t) {
        return Ok(None);
    }
    let worst = parts.iter().find(|p| p.0 == "undelivered").or_else(|| parts.iter().find(|p| p.0 == "expired"));
    let (final_status, code, text) = match worst {
        None => (Status::Delivered, None, None),
        Some((s, code, text)) => {
            (if s == "undelivered" { Status::Undelivered } else { Status::Expired }, code.clone(), text.clone())
        }
    };
    c.prepare_cached(
        "UPDATE messages SET status = ?2, updated_at = ?3, error_code = ?4, error_text = ?5 WHERE id = ?1",
    )?
    .execute(params![id, final_status.as_str(), now, code, text])?;
    moved(c, id, Status::Submitted, final_status, None)?;
    let detail = match (&code, &text) {
        (None, _) => "delivery reported for every part".to_string(),
        (Some(code), text) => {
            format!("route reported error {code}{}", text.as_deref().map(|t| format!(": {t}")).unwrap_or_default())
        }
    };
    history(c, id, now, final_status, &detail)?;
    Ok(Some((final_status, created_at)))
}

/// Cancel a queued message; with `owner`, only one that key sent (another
/// key's message is not found, so its id tells nothing).
pub(super) fn cancel(c: &Connection, id: i64, owner: Option<&str>, now: Millis) -> Result<CancelOutcome, StoreError> {
    let row: Option<(String, String)> = c
        .prepare_cached("SELECT status, api_key FROM messages WHERE id = ?1")?
        .query_row(params![id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let Some((status, key)) = row else { return Ok(CancelOutcome::NotFound) };
    if owner.is_some_and(|o| o != key) {
        return Ok(CancelOutcome::NotFound);
    }
    let status = Status::parse(&status).unwrap_or(Status::Failed);
    if status != Status::Queued {
        return Ok(CancelOutcome::TooLate(status));
    }
    c.prepare_cached("UPDATE messages SET status = 'cancelled', updated_at = ?2 WHERE id = ?1")?
        .execute(params![id, now])?;
    moved(c, id, Status::Queued, Status::Cancelled, None)?;
    history(c, id, now, Status::Cancelled, "cancelled through the API")?;
    Ok(CancelOutcome::Cancelled)
}

/// Which queued messages a bulk cancel takes: every field given must match.
#[derive(Debug, Clone, Default)]
pub struct CancelFilter {
    pub api_key: Option<String>,
    /// The trigger rule that made them.
    pub rule: Option<String>,
    pub recipient: Option<String>,
    /// The sender; `Some(None)` takes the messages sent without one.
    pub sender: Option<Option<String>>,
    pub priority: Option<Priority>,
    pub route: Option<String>,
}

/// Cancel up to `limit` queued messages that match `f`, with ids up to
/// `up_to` (those accepted before the request), each with its history row
/// `detail`; how many. A message a lane already claimed is not touched.
pub(super) fn cancel_matching(
    c: &Connection,
    f: &CancelFilter,
    up_to: i64,
    detail: &str,
    limit: usize,
    now: Millis,
) -> Result<usize, StoreError> {
    use rusqlite::types::Value;
    let mut sql = String::from("SELECT id, route, priority FROM messages WHERE status = 'queued' AND id <= ?");
    let mut args = vec![Value::Integer(up_to)];
    let text = |s: &Option<String>| s.clone().map(Value::Text);
    for (column, v) in [
        ("api_key", text(&f.api_key)),
        ("rule", text(&f.rule)),
        ("recipient", text(&f.recipient)),
        ("sender", f.sender.clone().flatten().map(Value::Text)),
        ("priority", f.priority.map(|p| Value::Integer(p.as_i64()))),
        ("route", text(&f.route)),
    ] {
        if let Some(v) = v {
            sql.push_str(&format!(" AND {column} = ?"));
            args.push(v);
        }
    }
    if f.sender == Some(None) {
        sql.push_str(" AND sender IS NULL");
    }
    sql.push_str(" LIMIT ?");
    args.push(Value::Integer(limit as i64));
    let rows: Vec<(i64, String, i64)> = c
        .prepare(&sql)?
        .query_map(rusqlite::params_from_iter(args), |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<Result<_, _>>()?;
    for (id, route, priority) in &rows {
        c.prepare_cached("UPDATE messages SET status = 'cancelled', updated_at = ?2 WHERE id = ?1")?
            .execute(params![id, now])?;
        let queue = Priority::from_i64(*priority).map(|p| (route.as_str(), p));
        moved(c, *id, Status::Queued, Status::Cancelled, queue)?;
        history(c, *id, now, Status::Cancelled, detail)?;
    }
    Ok(rows.len())
}

/// The `due_at` of a message waiting for its parts (`smpp_parts`): never
/// due, so no lane claims it; set to its real due time when the set is
/// complete.
pub(super) const HELD: Millis = i64::MAX / 4;

/// What a queued message is to become, as an SMPP `replace_sm` gives it:
/// a new text (planned by the caller, like any accepted text) and, when
/// given, a new schedule and validity; its `registered_delivery` always (a
/// `replace_sm` carries one).
#[derive(Debug, Clone)]
pub struct Replacement {
    /// Only this key's message is replaced (another's is not found).
    pub owner: String,
    /// The sender the request names, when it names one: it must be the
    /// message's.
    pub from: Option<String>,
    pub text: String,
    pub encoding: Encoding,
    pub segments: u32,
    /// The new schedule; a time already past means now.
    pub send_at: Option<Millis>,
    /// The new end of validity.
    pub valid_until: Option<Millis>,
    /// The `registered_delivery` bits (0 none, 1 success and failure, 2 failure only).
    pub receipt: u8,
    /// Who replaces it, for the history row ("through SMPP by account ...").
    pub by: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplaceOutcome {
    /// Replaced; its route, whose lane may have a new due time to see.
    Replaced { route: String },
    /// No such message of the owner's.
    NotFound,
    /// No longer queued.
    TooLate(Status),
    /// Queued, but a route already took some of its parts (a retry resumes
    /// after them) or it is still being joined from the parts an account
    /// submits: its text is no longer one thing to replace.
    Underway,
    /// The request names another sender than the message's.
    OtherSender,
    /// The validity would end before the message is due.
    ExpiresBeforeDue,
}

/// Replace a queued message's text (and schedule, validity, receipt bits)
/// in place, with a history row saying so; its counts do not move (same
/// status, route and class).
pub(super) fn replace(c: &Connection, id: i64, r: &Replacement, now: Millis) -> Result<ReplaceOutcome, StoreError> {
    #[allow(clippy::type_complexity)]
    let row: Option<(String, String, Option<String>, String, Millis, Option<Millis>, bool)> = c
        .prepare_cached(
            "SELECT status, api_key, sender, route, due_at, valid_until,
                    EXISTS (SELECT 1 FROM parts WHERE message_id = ?1)
             FROM messages WHERE id = ?1",
        )?
        .query_row(params![id], |q| Ok((q.get(0)?, q.get(1)?, q.get(2)?, q.get(3)?, q.get(4)?, q.get(5)?, q.get(6)?)))
        .optional()?;
    let Some((status, key, sender, route, due_at, valid_until, has_parts)) = row else {
        return Ok(ReplaceOutcome::NotFound);
    };
    if key != r.owner {
        return Ok(ReplaceOutcome::NotFound);
    }
    let status = Status::parse(&status).unwrap_or(Status::Failed);
    if status != Status::Queued {
        return Ok(ReplaceOutcome::TooLate(status));
    }
    if has_parts || due_at >= HELD {
        return Ok(ReplaceOutcome::Underway);
    }
    if r.from.as_ref().is_some_and(|f| sender.as_ref() != Some(f)) {
        return Ok(ReplaceOutcome::OtherSender);
    }
    let due = r.send_at.map_or(due_at, |t| t.max(now));
    let valid = r.valid_until.or(valid_until);
    if (r.send_at.is_some() || r.valid_until.is_some()) && valid.is_some_and(|v| v <= due) {
        return Ok(ReplaceOutcome::ExpiresBeforeDue);
    }
    c.prepare_cached(
        "UPDATE messages SET body = ?2, encoding = ?3, segments = ?4, receipt = ?5, updated_at = ?6,
                             send_at = CASE WHEN ?7 THEN ?8 ELSE send_at END, due_at = ?9, valid_until = ?10
         WHERE id = ?1",
    )?
    .execute(params![
        id,
        r.text,
        r.encoding.as_str(),
        r.segments,
        r.receipt,
        now,
        r.send_at.is_some(),
        r.send_at.filter(|&t| t > now),
        due,
        valid,
    ])?;
    let plural = if r.segments == 1 { "" } else { "s" };
    let mut detail = format!("replaced {}: text ({} segment{plural}, {})", r.by, r.segments, r.encoding.as_str());
    if r.send_at.is_some() {
        detail.push_str(", schedule");
    }
    if r.valid_until.is_some() {
        detail.push_str(", validity");
    }
    history(c, id, now, Status::Queued, &detail)?;
    events::emit(c, EventKind::MessageReplaced, now, &NewEvent { message_id: Some(id), ..NewEvent::default() })?;
    Ok(ReplaceOutcome::Replaced { route })
}

pub(super) fn sweep(c: &Connection, now: Millis, idempotency_ttl: Millis) -> Result<usize, StoreError> {
    let rows: Vec<(i64, String, i64)> = c
        .prepare_cached(
            "SELECT id, route, priority FROM messages
             WHERE status = 'queued' AND valid_until IS NOT NULL AND valid_until < ?1 LIMIT 5000",
        )?
        .query_map(params![now], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<Result<_, _>>()?;
    for (id, route, priority) in &rows {
        let class = Priority::from_i64(*priority).unwrap_or(Priority::Promotional);
        expire(c, *id, (route, class), now)?;
    }
    c.prepare_cached("DELETE FROM idempotency WHERE created_at < ?1")?.execute(params![now - idempotency_ttl])?;
    Ok(rows.len())
}

pub(super) fn reroute(c: &Connection, from: &str, to: &str, now: Millis) -> Result<usize, StoreError> {
    let rows: Vec<(i64, i64)> = c
        .prepare_cached("SELECT id, priority FROM messages WHERE status = 'queued' AND route = ?1")?
        .query_map(params![from], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    for &(id, priority) in &rows {
        c.prepare_cached("UPDATE messages SET route = ?2, via = NULL, updated_at = ?3 WHERE id = ?1")?
            .execute(params![id, to, now])?;
        rerouted(c, priority, from, to)?;
        history(c, id, now, Status::Queued, &format!("route {from} is gone; moved to route {to}"))?;
    }
    Ok(rows.len())
}

/// Move due queued messages of route `from` to the route `assign` picks
/// for each recipient (failover while `from` is down). Returns the routes
/// that received messages.
pub(super) fn move_queued(
    c: &Connection,
    from: &str,
    limit: usize,
    now: Millis,
    assign: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<String>, StoreError> {
    let rows: Vec<(i64, String, i64)> = c
        .prepare_cached(
            "SELECT id, recipient, priority FROM messages WHERE route = ?1 AND status = 'queued' AND due_at <= ?2
             ORDER BY priority, due_at, id LIMIT ?3",
        )?
        .query_map(params![from, now, limit as i64], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<Result<_, _>>()?;
    let mut targets = Vec::new();
    for (id, recipient, priority) in rows {
        let Some(to) = assign(&recipient) else { continue };
        c.prepare_cached("UPDATE messages SET route = ?2, via = NULL, updated_at = ?3 WHERE id = ?1")?
            .execute(params![id, to, now])?;
        rerouted(c, priority, from, &to)?;
        history(c, id, now, Status::Queued, &format!("route {from} is down; failed over to route {to}"))?;
        if !targets.contains(&to) {
            targets.push(to);
        }
    }
    Ok(targets)
}

/// At start-up: messages a stopped process left `sending` go back to the
/// queue. At-least-once: only what was in flight can be sent twice.
pub(super) fn return_unfinished(c: &Connection, now: Millis) -> rusqlite::Result<usize> {
    let ids: Vec<i64> = c
        .prepare("SELECT id FROM messages WHERE status = 'sending'")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    if ids.is_empty() {
        return Ok(0);
    }
    c.execute_batch("BEGIN IMMEDIATE")?;
    for id in &ids {
        c.execute(
            "UPDATE messages SET status = 'queued', due_at = ?2, updated_at = ?2 WHERE id = ?1",
            params![id, now],
        )?;
        moved(c, *id, Status::Sending, Status::Queued, None)?;
        history(c, *id, now, Status::Queued, "returned to the queue: smsgw stopped while it was being sent")?;
    }
    c.execute_batch("COMMIT")?;
    Ok(ids.len())
}

/// Cancel the queued messages of `rule` made for `key` from `api_key`'s
/// events: an event of type `by` (a rule's `cancel_on` or fallback
/// reaction) arrived for that key.
/// A message a lane already claimed is not touched (it ends sent, never
/// both). Returns the ids cancelled.
pub(super) fn cancel_for_key(
    c: &Connection,
    api_key: &str,
    rule: &str,
    key: &str,
    by: &str,
    now: Millis,
) -> Result<Vec<i64>, StoreError> {
    let ids: Vec<i64> = c
        .prepare_cached(
            "SELECT id FROM messages INDEXED BY messages_trigger
             WHERE trigger_key = ?1 AND rule = ?2 AND status = 'queued' AND api_key = ?3",
        )?
        .query_map(params![key, rule, api_key], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for id in &ids {
        c.prepare_cached("UPDATE messages SET status = 'cancelled', cancelled_by = ?3, updated_at = ?2 WHERE id = ?1")?
            .execute(params![id, now, by])?;
        moved(c, *id, Status::Queued, Status::Cancelled, None)?;
        history(c, *id, now, Status::Cancelled, &format!("cancelled by event {by:?} for key {key:?}"))?;
    }
    Ok(ids)
}
