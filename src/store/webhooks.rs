//! Webhook delivery in SQL: the outbox fanned out into one delivery per
//! (event, subscription), claimed when due, and each attempt's result
//! recorded — many of each per transaction, since fewer and larger
//! transactions are what make thousands of events a second cheap.
//!
//! - `sync_config` makes the `webhooks` rows of origin `config` match the
//!   file (by name); one removed from the file goes with its pending
//!   deliveries.
//! - `fan_out` reads the events after the cursor and writes a delivery for
//!   each enabled subscription of the event's owner (or, for an event owned
//!   by nobody, of the keys with `admin`), plus the owner's `callback`
//!   subscription for an event of a message that carries a `callback_url`
//!   (that subscription is made on first need). Cursor and deliveries move
//!   in one transaction, so an event is fanned out exactly once.
//! - `claim_due` takes due deliveries per subscription up to its free
//!   slots, never one of a message while an earlier event of the same
//!   message is still pending for that subscription (`order_key`), and
//!   leases them by pushing `next_at` past the attempt's timeout: after a
//!   crash mid-attempt, the lease runs out and the attempt is made again.
//! - `record_attempts` writes attempt rows and moves deliveries on: done,
//!   retry at a time, dead once retrying would pass `retry_for` after the
//!   first attempt, or disabled when the receiver answered 410.
//!
//! The body of a delivery is not stored: it is built at each attempt from
//! the event row and the rows it points at (`event_rows`), so the outbox
//! stays one small row per event however many subscriptions there are.

use super::inbound::{self, InboundView};
use super::query::{self, MessageView};
use super::subscriptions::SigningSecret;
use crate::message::{EventKind, Millis};
use rusqlite::{Connection, OptionalExtension, params};
use std::collections::HashMap;

/// The outbox cursor's row for webhook fan-out.
const CURSOR: &str = "webhooks";

/// A subscription as the config file declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigSubscription {
    pub name: String,
    /// The owning API key's name.
    pub api_key: String,
    pub url: String,
    pub events: Vec<String>,
    /// `whsec_...`.
    pub secret: String,
}

/// What one fan-out did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FanOut {
    pub events: usize,
    pub deliveries: usize,
}

/// A delivery claimed for one attempt.
#[derive(Debug, Clone)]
pub struct Due {
    pub webhook_id: i64,
    pub event_id: i64,
    pub url: String,
    /// The URL is the message's `callback_url`, not the subscription's.
    pub callback: bool,
    /// The secrets in force now, newest first.
    pub secrets: Vec<String>,
    /// Attempts made before this one.
    pub attempts: u32,
}

/// What `claim_due` found.
#[derive(Debug, Clone, Default)]
pub struct Claim {
    pub due: Vec<Due>,
    /// When the next pending delivery not taken now falls due, if any.
    pub next_at: Option<Millis>,
}

/// What an attempt's answer does to its delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    Done,
    /// The receiver answered 410: its subscription (or, for a message's own
    /// callback URL, that URL) gets nothing more.
    Gone,
    /// Try again at `next_at`, unless that is past the retry period.
    Retry {
        next_at: Millis,
    },
    /// Cannot be delivered at all (its event is no longer stored).
    Dead,
}

/// One attempt to record.
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    pub webhook_id: i64,
    pub event_id: i64,
    pub at: Millis,
    pub http_status: Option<u16>,
    pub latency_ms: i64,
    pub error: Option<String>,
    pub outcome: AttemptOutcome,
}

/// How the recorded attempts left their deliveries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Recorded {
    pub done: u64,
    pub retry: u64,
    pub dead: u64,
    pub gone: u64,
}

/// An event with the rows it points at, as they are now.
#[derive(Debug, Clone)]
pub struct EventRow {
    pub id: i64,
    pub kind: EventKind,
    pub at: Millis,
    pub message: Option<MessageView>,
    pub inbound: Option<InboundView>,
    pub subject: Option<String>,
    pub data: Option<String>,
}

/// An event as fan-out reads it: id, kind, owner, message, its callback URL.
type Fanned = (i64, String, Option<String>, Option<i64>, Option<String>);
/// An `events` row: id, kind, at, message, inbound, subject, data.
type EventColumns = (i64, String, Millis, Option<i64>, Option<i64>, Option<String>, Option<String>);

/// The file's subscriptions, upserted by name. A changed URL or secret
/// enables the subscription again (a 410 may have disabled it); a secret
/// from the file replaces the stored ones (rotate through the API for an
/// overlap).
pub(super) fn sync_config(c: &Connection, subs: &[ConfigSubscription], now: Millis) -> rusqlite::Result<()> {
    let existing: HashMap<String, (i64, Option<String>, String)> = c
        .prepare_cached("SELECT name, id, url, secrets FROM webhooks WHERE origin = 'config'")?
        .query_map([], |r| Ok((r.get::<_, String>(0)?, (r.get(1)?, r.get(2)?, r.get(3)?))))?
        .collect::<Result<_, _>>()?;
    for s in subs {
        let events = super::to_json(&s.events)?;
        let secrets = super::to_json(&[SigningSecret { secret: s.secret.clone(), until: None }])?;
        match existing.get(&s.name) {
            None => {
                c.prepare_cached(
                    "INSERT INTO webhooks (api_key, name, origin, url, events, secrets, enabled, created_at, updated_at)
                     VALUES (?1, ?2, 'config', ?3, ?4, ?5, 1, ?6, ?6)",
                )?
                .execute(params![s.api_key, s.name, s.url, events, secrets, now])?;
            }
            Some((id, url, old_secrets)) => {
                let same_secret = serde_json::from_str::<Vec<SigningSecret>>(old_secrets)
                    .is_ok_and(|v| v.first().is_some_and(|f| f.secret == s.secret));
                let renewed = url.as_deref() != Some(&s.url) || !same_secret;
                c.prepare_cached(
                    "UPDATE webhooks SET api_key = ?2, url = ?3, events = ?4, updated_at = ?6,
                            secrets = CASE WHEN ?7 THEN ?5 ELSE secrets END,
                            enabled = CASE WHEN ?8 THEN 1 ELSE enabled END,
                            disabled_reason = CASE WHEN ?8 THEN NULL ELSE disabled_reason END
                     WHERE id = ?1",
                )?
                .execute(params![
                    id,
                    s.api_key,
                    s.url,
                    events,
                    secrets,
                    now,
                    !same_secret,
                    renewed
                ])?;
            }
        }
    }
    for (name, (id, _, _)) in &existing {
        if subs.iter().any(|s| &s.name == name) {
            continue;
        }
        c.prepare_cached("DELETE FROM deliveries WHERE webhook_id = ?1 AND state = 'pending'")?.execute(params![id])?;
        c.prepare_cached("DELETE FROM webhooks WHERE id = ?1")?.execute(params![id])?;
    }
    Ok(())
}

struct Subscription {
    id: i64,
    api_key: String,
    origin: String,
    kinds: Vec<String>,
}

/// Every event kind about a message: what a callback subscription gets.
fn message_kinds() -> Vec<EventKind> {
    EventKind::ALL.into_iter().filter(|k| k.is_message()).collect()
}

/// The key's callback subscription, made on first need; `None` when it
/// is disabled.
fn callback_subscription(c: &Connection, api_key: &str, now: Millis) -> rusqlite::Result<Option<i64>> {
    let found: Option<(i64, bool)> = c
        .prepare_cached("SELECT id, enabled FROM webhooks WHERE origin = 'callback' AND api_key = ?1")?
        .query_row(params![api_key], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    if let Some((id, enabled)) = found {
        return Ok(enabled.then_some(id));
    }
    let events = super::subscriptions::kinds_json(&message_kinds())?;
    let secret = crate::config::webhooks::new_secret();
    let secrets = super::to_json(&[SigningSecret { secret, until: None }])?;
    c.prepare_cached(
        "INSERT INTO webhooks (api_key, name, origin, url, events, secrets, enabled, created_at, updated_at)
         VALUES (?1, NULL, 'callback', NULL, ?2, ?3, 1, ?4, ?4)",
    )?
    .execute(params![api_key, events, secrets, now])?;
    Ok(Some(c.last_insert_rowid()))
}

/// Fan out up to `limit` events after the cursor (see the module's notes).
pub(super) fn fan_out(c: &Connection, admin_keys: &[String], limit: usize, now: Millis) -> rusqlite::Result<FanOut> {
    let cursor: i64 = c
        .prepare_cached("SELECT event_id FROM outbox_cursor WHERE name = ?1")?
        .query_row(params![CURSOR], |r| r.get(0))
        .optional()?
        .unwrap_or(0);
    let events: Vec<Fanned> = c
        .prepare_cached(
            "SELECT e.id, e.kind, coalesce(e.api_key, m.api_key, rm.api_key), e.message_id, m.callback_url
             FROM events e
             LEFT JOIN messages m ON m.id = e.message_id
             LEFT JOIN inbound i ON i.id = e.inbound_id
             LEFT JOIN messages rm ON rm.id = i.reply_to
             WHERE e.id > ?1 ORDER BY e.id LIMIT ?2",
        )?
        .query_map(params![cursor, limit as i64], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))?
        .collect::<Result<_, _>>()?;
    let Some(last) = events.last().map(|e| e.0) else { return Ok(FanOut::default()) };
    let subs: Vec<Subscription> = c
        .prepare_cached("SELECT id, api_key, origin, events FROM webhooks WHERE enabled = 1 AND origin != 'callback'")?
        .query_map([], |r| {
            let events: String = r.get(3)?;
            Ok(Subscription {
                id: r.get(0)?,
                api_key: r.get(1)?,
                origin: r.get(2)?,
                kinds: serde_json::from_str(&events).unwrap_or_default(),
            })
        })?
        .collect::<Result<_, _>>()?;
    let mut callbacks: HashMap<String, Option<i64>> = HashMap::new();
    let mut insert = c.prepare_cached(
        "INSERT OR IGNORE INTO deliveries (webhook_id, event_id, url, order_key, state, attempts, created_at, next_at)
         VALUES (?1, ?2, ?3, ?4, 'pending', 0, ?5, ?5)",
    )?;
    let mut out = FanOut { events: events.len(), deliveries: 0 };
    for (id, kind, owner, message_id, callback_url) in &events {
        let order_key = message_id.map(|m| format!("m{m}"));
        for s in &subs {
            let mine = match owner {
                Some(k) => &s.api_key == k,
                None => admin_keys.contains(&s.api_key),
            };
            if mine && s.kinds.iter().any(|k| k == kind) {
                debug_assert_ne!(s.origin, "callback");
                out.deliveries += insert.execute(params![s.id, id, None::<String>, order_key, now])?;
            }
        }
        if let (Some(url), Some(key)) = (callback_url, owner) {
            let hook = match callbacks.get(key) {
                Some(h) => *h,
                None => {
                    let h = callback_subscription(c, key, now)?;
                    callbacks.insert(key.clone(), h);
                    h
                }
            };
            if let Some(hook) = hook {
                out.deliveries += insert.execute(params![hook, id, url, order_key, now])?;
            }
        }
    }
    c.prepare_cached(
        "INSERT INTO outbox_cursor (name, event_id) VALUES (?1, ?2)
         ON CONFLICT (name) DO UPDATE SET event_id = excluded.event_id",
    )?
    .execute(params![CURSOR, last])?;
    Ok(out)
}

/// The secrets of a `webhooks.secrets` array that sign at `now`.
fn secrets_in_force(json: &str, now: Millis) -> Vec<String> {
    serde_json::from_str::<Vec<SigningSecret>>(json)
        .unwrap_or_default()
        .into_iter()
        .filter(|s| s.until.is_none_or(|u| u > now))
        .map(|s| s.secret)
        .collect()
}

/// Claim due deliveries: for each enabled subscription, up to
/// `concurrency` less what `busy` says it has in flight, at most `limit`
/// in all; each leased until `now + lease_ms`.
pub(super) fn claim_due(
    c: &Connection,
    now: Millis,
    lease_ms: Millis,
    concurrency: usize,
    busy: &HashMap<i64, usize>,
    limit: usize,
) -> rusqlite::Result<Claim> {
    let hooks: Vec<(i64, Option<String>, String)> = c
        .prepare_cached("SELECT id, url, secrets FROM webhooks WHERE enabled = 1")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<Result<_, _>>()?;
    let mut due = Vec::new();
    let mut pick = c.prepare_cached(
        "SELECT d.event_id, d.url, d.attempts FROM deliveries d INDEXED BY deliveries_due
         WHERE d.state = 'pending' AND d.next_at <= ?2 AND d.webhook_id = ?1
           AND (d.order_key IS NULL OR NOT EXISTS (
               SELECT 1 FROM deliveries p INDEXED BY deliveries_order
               WHERE p.webhook_id = d.webhook_id AND p.order_key = d.order_key AND p.state = 'pending'
                 AND p.event_id < d.event_id))
         ORDER BY d.next_at LIMIT ?3",
    )?;
    let mut lease = c.prepare_cached("UPDATE deliveries SET next_at = ?3 WHERE webhook_id = ?1 AND event_id = ?2")?;
    for (hook, url, secrets) in hooks {
        let free = concurrency.saturating_sub(busy.get(&hook).copied().unwrap_or(0)).min(limit - due.len());
        if free == 0 {
            continue;
        }
        let rows: Vec<(i64, Option<String>, u32)> = pick
            .query_map(params![hook, now, free as i64], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<Result<_, _>>()?;
        if rows.is_empty() {
            continue;
        }
        let secrets = secrets_in_force(&secrets, now);
        for (event_id, own_url, attempts) in rows {
            let callback = own_url.is_some();
            let Some(target) = own_url.or_else(|| url.clone()) else { continue };
            lease.execute(params![hook, event_id, now + lease_ms])?;
            due.push(Due { webhook_id: hook, event_id, url: target, callback, secrets: secrets.clone(), attempts });
        }
        if due.len() >= limit {
            break;
        }
    }
    let next_at = c
        .prepare_cached(
            "SELECT min(next_at) FROM deliveries INDEXED BY deliveries_due WHERE state = 'pending' AND next_at > ?1",
        )?
        .query_row(params![now], |r| r.get(0))?;
    Ok(Claim { due, next_at })
}

/// Record attempts and move their deliveries on (see [`AttemptOutcome`]);
/// a retry that would fall later than `retry_for_ms` after the delivery's
/// first attempt (since it was made or last replayed) makes it dead
/// instead. A successful attempt is kept on the delivery row alone
/// (`last_*`, `done_at` = when the answer came); the others also get an
/// attempt row.
pub(super) fn record_attempts(
    c: &Connection,
    attempts: &[AttemptRecord],
    retry_for_ms: Millis,
    now: Millis,
) -> rusqlite::Result<Recorded> {
    let mut out = Recorded::default();
    let mut attempt = c.prepare_cached(
        "INSERT INTO delivery_attempts (webhook_id, event_id, at, http_status, latency_ms, error)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    let mut finish = c.prepare_cached(
        "UPDATE deliveries SET state = ?3, attempts = attempts + 1, done_at = ?4, last_status = ?5, last_error = ?6,
                last_latency_ms = ?7
         WHERE webhook_id = ?1 AND event_id = ?2 AND state = 'pending' RETURNING url",
    )?;
    let mut again = c.prepare_cached(
        "UPDATE deliveries SET attempts = attempts + 1, next_at = ?3, last_status = ?4, last_error = ?5,
                last_latency_ms = ?6
         WHERE webhook_id = ?1 AND event_id = ?2 AND state = 'pending'",
    )?;
    let mut first = c.prepare_cached(
        "SELECT min(a.at) FROM delivery_attempts a INDEXED BY delivery_attempts_of
         WHERE a.webhook_id = ?1 AND a.event_id = ?2
           AND a.at >= (SELECT created_at FROM deliveries WHERE webhook_id = ?1 AND event_id = ?2)",
    )?;
    for a in attempts {
        let key = (a.webhook_id, a.event_id);
        let log = |attempt: &mut rusqlite::CachedStatement<'_>| {
            attempt.execute(params![a.webhook_id, a.event_id, a.at, a.http_status, a.latency_ms, a.error])
        };
        let (state, done_at) = match a.outcome {
            AttemptOutcome::Done => ("done", a.at + a.latency_ms),
            AttemptOutcome::Gone => ("disabled", now),
            AttemptOutcome::Dead => ("dead", now),
            AttemptOutcome::Retry { next_at } => {
                // This attempt is the first when none came before it.
                let since: Option<Millis> = first.query_row(params![key.0, key.1], |r| r.get(0))?;
                if next_at <= since.map_or(a.at, |s| s.min(a.at)) + retry_for_ms {
                    log(&mut attempt)?;
                    again.execute(params![key.0, key.1, next_at, a.http_status, a.error, a.latency_ms])?;
                    out.retry += 1;
                    continue;
                }
                ("dead", now)
            }
        };
        let url: Option<Option<String>> = finish
            .query_row(params![key.0, key.1, state, done_at, a.http_status, a.error, a.latency_ms], |r| r.get(0))
            .optional()?;
        // A success that ended its delivery is on the delivery row; any
        // other attempt (or one whose delivery had already ended, by a
        // replay or its subscription's end) gets a row of its own.
        if !(a.outcome == AttemptOutcome::Done && url.is_some()) {
            log(&mut attempt)?;
        }
        match state {
            "done" => out.done += 1,
            "dead" => out.dead += 1,
            _ => out.gone += 1,
        }
        if a.outcome == AttemptOutcome::Gone
            && let Some(url) = url
        {
            gone(c, a.webhook_id, url.as_deref(), a.at, now)?;
        }
    }
    Ok(out)
}

/// A receiver answered 410. For a subscription's own URL, the subscription
/// is disabled with its pending deliveries; for a message's callback URL,
/// only the deliveries still pending to that URL are.
fn gone(c: &Connection, webhook_id: i64, callback_url: Option<&str>, at: Millis, now: Millis) -> rusqlite::Result<()> {
    match callback_url {
        Some(url) => {
            c.prepare_cached(
                "UPDATE deliveries SET state = 'disabled', done_at = ?3
                 WHERE webhook_id = ?1 AND url = ?2 AND state = 'pending'",
            )?
            .execute(params![webhook_id, url, now])?;
        }
        None => {
            let reason = format!("the receiver answered 410 Gone at {}", crate::message::to_rfc3339(at));
            c.prepare_cached(
                "UPDATE webhooks SET enabled = 0, disabled_reason = ?2, updated_at = ?3 WHERE id = ?1 AND enabled = 1",
            )?
            .execute(params![webhook_id, reason, now])?;
            c.prepare_cached(
                "UPDATE deliveries SET state = 'disabled', done_at = ?2 WHERE webhook_id = ?1 AND state = 'pending'",
            )?
            .execute(params![webhook_id, now])?;
        }
    }
    Ok(())
}

/// The events `ids` with the rows they point at; a pruned one is missing.
pub(super) fn event_rows(c: &Connection, ids: &[i64]) -> rusqlite::Result<Vec<EventRow>> {
    let mut q =
        c.prepare_cached("SELECT id, kind, at, message_id, inbound_id, subject, data FROM events WHERE id = ?1")?;
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        let row: Option<EventColumns> = q
            .query_row(params![id], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?))
            })
            .optional()?;
        let Some((id, kind, at, message_id, inbound_id, subject, data)) = row else { continue };
        let Some(kind) = EventKind::parse(&kind) else { continue };
        let message = match message_id {
            Some(m) => query::summary(c, m)?,
            None => None,
        };
        let inbound = match inbound_id {
            Some(i) if kind == EventKind::InboundReceived => inbound::get(c, i, None)?,
            _ => None,
        };
        out.push(EventRow { id, kind, at, message, inbound, subject, data });
    }
    Ok(out)
}

/// Deliveries waiting (due or not).
pub(super) fn pending_count(c: &Connection) -> rusqlite::Result<u64> {
    c.prepare_cached("SELECT count(*) FROM deliveries INDEXED BY deliveries_due WHERE state = 'pending'")?
        .query_row([], |r| r.get::<_, i64>(0))
        .map(|n| n as u64)
}

/// Delete up to `limit` rows each of finished deliveries, their attempts
/// and events older than `before`. An event is kept while any delivery of
/// it (or of a later event) is pending, while the fan-out has not passed
/// it, and while it is a route's last recorded state.
pub(super) fn prune_batch(c: &Connection, before: Millis, limit: usize) -> rusqlite::Result<u64> {
    let deliveries = c
        .prepare_cached(
            "DELETE FROM deliveries WHERE (webhook_id, event_id) IN
             (SELECT webhook_id, event_id FROM deliveries INDEXED BY deliveries_age
              WHERE created_at < ?1 AND state != 'pending' LIMIT ?2)",
        )?
        .execute(params![before, limit as i64])?;
    let attempts = c
        .prepare_cached(
            "DELETE FROM delivery_attempts WHERE rowid IN
             (SELECT a.rowid FROM delivery_attempts a INDEXED BY delivery_attempts_age WHERE a.at < ?1
              AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.webhook_id = a.webhook_id
                              AND d.event_id = a.event_id AND d.state = 'pending') LIMIT ?2)",
        )?
        .execute(params![before, limit as i64])?;
    let cursor: i64 = c
        .prepare_cached("SELECT event_id FROM outbox_cursor WHERE name = ?1")?
        .query_row(params![CURSOR], |r| r.get(0))
        .optional()?
        .unwrap_or(0);
    let pending: Option<i64> = c
        .prepare_cached("SELECT min(event_id) FROM deliveries INDEXED BY deliveries_due WHERE state = 'pending'")?
        .query_row([], |r| r.get(0))?;
    // Below the cursor, never at it: the newest event keeps SQLite from
    // handing its id out again.
    let below = pending.map_or(cursor, |p| p.min(cursor));
    // Oldest first, in id order (no age index to keep up for the two or
    // more events of every message).
    let events = match super::oldest_before(c, "events", "at", below, before, limit)? {
        Some(last) => c
            .prepare_cached("DELETE FROM events WHERE id <= ?1 AND id NOT IN (SELECT event_id FROM outbox_cursor)")?
            .execute(params![last])?,
        None => 0,
    };
    Ok(deliveries.max(attempts).max(events) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::schema;

    fn db() -> Connection {
        let mut c = Connection::open_in_memory().unwrap();
        schema::migrate(&mut c).unwrap();
        c
    }

    fn message(c: &Connection, key: &str, callback: Option<&str>) -> i64 {
        c.execute(
            "INSERT INTO messages (api_key, recipient, body, encoding, segments, priority, route, status,
             created_at, updated_at, due_at, callback_url) VALUES (?1, '+1', 'x', 'gsm7', 1, 0, 'r', 'queued', 0, 0, 0, ?2)",
            params![key, callback],
        )
        .unwrap();
        c.last_insert_rowid()
    }

    fn event(c: &Connection, kind: EventKind, message_id: Option<i64>) -> i64 {
        let e = super::super::events::NewEvent { message_id, ..Default::default() };
        super::super::events::emit(c, kind, 1, &e).unwrap()
    }

    fn sub(name: &str, key: &str, events: &[&str]) -> ConfigSubscription {
        ConfigSubscription {
            name: name.into(),
            api_key: key.into(),
            url: format!("http://127.0.0.1:1/{name}"),
            events: events.iter().map(|e| e.to_string()).collect(),
            secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into(),
        }
    }

    fn deliveries(c: &Connection) -> Vec<(i64, i64, String)> {
        c.prepare("SELECT webhook_id, event_id, state FROM deliveries ORDER BY webhook_id, event_id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    #[test]
    fn events_go_to_their_owner_and_unowned_ones_to_admin_keys() {
        let c = db();
        let all = ["message.submitted", "message.delivered", "optout.changed", "route.state_changed"];
        sync_config(&c, &[sub("a", "alice", &all), sub("b", "bob", &all), sub("adm", "root", &all)], 0).unwrap();
        let ids: HashMap<String, i64> = c
            .prepare("SELECT name, id FROM webhooks")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let m = message(&c, "alice", None);
        let e1 = event(&c, EventKind::MessageSubmitted, Some(m));
        let e2 = event(&c, EventKind::RouteStateChanged, None);
        let e3 = event(&c, EventKind::MessageFailed, Some(m));
        let out = fan_out(&c, &["root".to_string()], 100, 5).unwrap();
        assert_eq!(out, FanOut { events: 3, deliveries: 2 });
        assert_eq!(deliveries(&c), [(ids["a"], e1, "pending".to_string()), (ids["adm"], e2, "pending".to_string())]);
        let _ = e3; // message.failed: nobody subscribed to it.
        // The cursor moved: nothing twice.
        assert_eq!(fan_out(&c, &["root".to_string()], 100, 5).unwrap(), FanOut::default());
    }

    #[test]
    fn a_message_with_a_callback_url_gets_the_keys_callback_subscription() {
        let c = db();
        let m = message(&c, "alice", Some("http://crm.lan/cb"));
        let e = event(&c, EventKind::MessageDelivered, Some(m));
        fan_out(&c, &[], 100, 5).unwrap();
        let (hook, url, origin): (i64, Option<String>, String) = c
            .query_row(
                "SELECT w.id, d.url, w.origin FROM deliveries d JOIN webhooks w ON w.id = d.webhook_id",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        assert_eq!((url.as_deref(), origin.as_str()), (Some("http://crm.lan/cb"), "callback"));
        let claim = claim_due(&c, 10, 1000, 4, &HashMap::new(), 10).unwrap();
        assert_eq!(claim.due.len(), 1);
        assert_eq!((claim.due[0].webhook_id, claim.due[0].event_id), (hook, e));
        assert_eq!(claim.due[0].url, "http://crm.lan/cb");
        assert!(claim.due[0].secrets[0].starts_with("whsec_"));
    }

    #[test]
    fn a_later_event_of_a_message_waits_for_the_earlier_one() {
        let c = db();
        sync_config(&c, &[sub("a", "alice", &["message.submitted", "message.delivered"])], 0).unwrap();
        let m = message(&c, "alice", None);
        let other = message(&c, "alice", None);
        let e1 = event(&c, EventKind::MessageSubmitted, Some(m));
        let e2 = event(&c, EventKind::MessageDelivered, Some(m));
        let e3 = event(&c, EventKind::MessageSubmitted, Some(other));
        fan_out(&c, &[], 100, 0).unwrap();
        let claimed = |now| -> Vec<i64> {
            claim_due(&c, now, 1000, 8, &HashMap::new(), 10).unwrap().due.iter().map(|d| d.event_id).collect()
        };
        assert_eq!(claimed(0), [e1, e3]);
        // Leased: not claimed again until the lease runs out, and e2 waits.
        assert_eq!(claimed(10), Vec::<i64>::new());
        let hook = c.query_row("SELECT id FROM webhooks", [], |r| r.get(0)).unwrap();
        let fail = AttemptRecord {
            webhook_id: hook,
            event_id: e1,
            at: 20,
            http_status: Some(500),
            latency_ms: 1,
            error: Some("HTTP 500".into()),
            outcome: AttemptOutcome::Retry { next_at: 30 },
        };
        assert_eq!(record_attempts(&c, std::slice::from_ref(&fail), 60_000, 20).unwrap().retry, 1);
        assert_eq!(claimed(25), Vec::<i64>::new());
        assert_eq!(claimed(30), [e1]);
        let done = AttemptRecord { outcome: AttemptOutcome::Done, http_status: Some(200), error: None, ..fail.clone() };
        assert_eq!(record_attempts(&c, &[done], 60_000, 40).unwrap().done, 1);
        assert_eq!(claimed(40), [e2]);
        // Past the retry period after the first attempt: dead.
        let late = AttemptRecord { event_id: e2, at: 50, outcome: AttemptOutcome::Retry { next_at: 70_000 }, ..fail };
        assert_eq!(record_attempts(&c, &[late], 60_000, 50).unwrap().dead, 1);
    }

    #[test]
    fn a_success_is_kept_on_its_delivery_and_a_replay_starts_the_retry_period_again() {
        let c = db();
        sync_config(&c, &[sub("a", "alice", &["message.submitted"])], 0).unwrap();
        let e = event(&c, EventKind::MessageSubmitted, Some(message(&c, "alice", None)));
        fan_out(&c, &[], 100, 0).unwrap();
        let hook: i64 = c.query_row("SELECT id FROM webhooks", [], |r| r.get(0)).unwrap();
        let attempt = |at, http_status, outcome| AttemptRecord {
            webhook_id: hook,
            event_id: e,
            at,
            http_status: Some(http_status),
            latency_ms: 7,
            error: None,
            outcome,
        };
        let rows = || c.query_row("SELECT count(*) FROM delivery_attempts", [], |r| r.get::<_, i64>(0)).unwrap();
        record_attempts(&c, &[attempt(10, 503, AttemptOutcome::Retry { next_at: 20 })], 60_000, 17).unwrap();
        assert_eq!(record_attempts(&c, &[attempt(20, 204, AttemptOutcome::Done)], 60_000, 99).unwrap().done, 1);
        assert_eq!(rows(), 1, "only the failed attempt has a row of its own");
        let row = c
            .query_row("SELECT done_at, last_status, last_latency_ms FROM deliveries", [], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
            })
            .unwrap();
        assert_eq!(row, (27, 204, 7), "done when the answer came");

        // Replayed a day later: the success becomes a row, and a failure
        // now is retried within a fresh period, not counted from the first
        // attempt of the day before.
        let day = 86_400_000;
        let replayed = super::super::subscriptions::replay(
            &c,
            hook,
            None,
            super::super::subscriptions::ReplaySelect::Event(e),
            day,
        )
        .unwrap();
        assert_eq!(replayed, super::super::subscriptions::ReplayOutcome::Replayed(1));
        assert_eq!(rows(), 2);
        let out =
            record_attempts(&c, &[attempt(day + 5, 500, AttemptOutcome::Retry { next_at: day + 60 })], 60_000, day + 6)
                .unwrap();
        assert_eq!(out.retry, 1, "{out:?}");
        let late = attempt(day + 60, 500, AttemptOutcome::Retry { next_at: day + 70_000 });
        assert_eq!(record_attempts(&c, &[late], 60_000, day + 61).unwrap().dead, 1);
        let log: Vec<(i64, i64)> = c
            .prepare("SELECT at, http_status FROM delivery_attempts ORDER BY at")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(log, [(10, 503), (20, 204), (day + 5, 500), (day + 60, 500)]);
    }

    #[test]
    fn gone_disables_the_subscription_and_its_pending_deliveries() {
        let c = db();
        sync_config(&c, &[sub("a", "alice", &["message.submitted"])], 0).unwrap();
        let e: Vec<i64> =
            (0..3).map(|_| event(&c, EventKind::MessageSubmitted, Some(message(&c, "alice", None)))).collect();
        fan_out(&c, &[], 100, 0).unwrap();
        let claim = claim_due(&c, 0, 1000, 1, &HashMap::new(), 10).unwrap();
        assert_eq!(claim.due.len(), 1, "concurrency 1");
        let hook = claim.due[0].webhook_id;
        let gone = AttemptRecord {
            webhook_id: hook,
            event_id: e[0],
            at: 1,
            http_status: Some(410),
            latency_ms: 1,
            error: None,
            outcome: AttemptOutcome::Gone,
        };
        assert_eq!(record_attempts(&c, &[gone], 60_000, 1).unwrap().gone, 1);
        assert!(deliveries(&c).iter().all(|d| d.2 == "disabled"));
        let (enabled, reason): (bool, Option<String>) =
            c.query_row("SELECT enabled, disabled_reason FROM webhooks", [], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
        assert!(!enabled && reason.unwrap().contains("410"));
        // Syncing the file again with a new URL brings it back.
        let mut again = sub("a", "alice", &["message.submitted"]);
        again.url = "http://127.0.0.1:2/new".into();
        sync_config(&c, &[again], 2).unwrap();
        assert!(c.query_row("SELECT enabled FROM webhooks", [], |r| r.get::<_, bool>(0)).unwrap());
        // Removed from the file: gone, with its pending deliveries.
        sync_config(&c, &[], 3).unwrap();
        assert_eq!(c.query_row("SELECT count(*) FROM webhooks", [], |r| r.get::<_, i64>(0)).unwrap(), 0);
    }

    #[test]
    fn pruning_keeps_pending_events_and_the_newest() {
        let c = db();
        sync_config(&c, &[sub("a", "alice", &["message.submitted"])], 0).unwrap();
        let m = message(&c, "alice", None);
        let e: Vec<i64> = (0..4).map(|_| event(&c, EventKind::MessageSubmitted, Some(m))).collect();
        fan_out(&c, &[], 100, 0).unwrap();
        let hook: i64 = c.query_row("SELECT id FROM webhooks", [], |r| r.get(0)).unwrap();
        let done = |id| AttemptRecord {
            webhook_id: hook,
            event_id: id,
            at: 1,
            http_status: Some(200),
            latency_ms: 1,
            error: None,
            outcome: AttemptOutcome::Done,
        };
        record_attempts(&c, &[done(e[0]), done(e[1])], 60_000, 1).unwrap();
        prune_batch(&c, 1_000, 100).unwrap();
        let left: Vec<i64> = c
            .prepare("SELECT id FROM events")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(left, [e[2], e[3]]);
        assert_eq!(deliveries(&c).len(), 2);
    }
}
