//! Events posted by services, and what the trigger rules make of them, in
//! one writer transaction per batch: the event row (idempotent by the
//! key's own id: a replay answers the first outcome and writes nothing),
//! the cancels it causes, the conversions it counts, and one run per rule
//! it starts (scheduled, limited, cancelled or error) with the run's
//! messages. A scheduled step is a queued message whose `due_at` is ahead:
//! the lanes send it when it falls due, and it survives restarts like any
//! other message.

use super::StoreError;
use super::messages::{self, NewMessage, RuleOrigin};
use crate::config::Policy;
use crate::message::Millis;
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

/// One rule's limit, as the store checks it against earlier runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunLimit {
    /// Per key (else per recipient; per key falls back to the recipient
    /// for an event without a key).
    pub per_key: bool,
    /// Only runs within this long count; `None`: any run ever.
    pub within_ms: Option<Millis>,
}

/// A rule an event starts, with its messages built (or the rule's error).
#[derive(Debug, Clone)]
pub struct PlannedRun {
    pub rule: String,
    pub limit: Option<RunLimit>,
    /// Event types that, already there for the key at or after the
    /// trigger's `occurred_at`, mean the run is not scheduled.
    pub cancel_on: Vec<String>,
    /// (step, message) per step; `Err` is the run's error detail.
    pub messages: Result<Vec<(u32, NewMessage)>, String>,
}

/// An event, checked, with what the rules make of it.
#[derive(Debug, Clone)]
pub struct NewTriggerEvent {
    /// The service's id for it (idempotency).
    pub ext_id: Option<String>,
    pub kind: String,
    pub recipient: String,
    pub key: Option<String>,
    pub tz: Option<String>,
    pub locale: String,
    /// JSON.
    pub data: String,
    pub occurred_at: Millis,
    pub runs: Vec<PlannedRun>,
    /// Rules whose pending steps for the key it cancels.
    pub cancels: Vec<String>,
    /// Rules whose goal it is, with their windows.
    pub goals: Vec<(String, Millis)>,
}

/// What became of one rule run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunOutcome {
    pub rule: String,
    /// `scheduled`, `limited`, `cancelled` or `error`.
    pub outcome: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    pub messages: Vec<i64>,
}

/// What became of one event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IngestOutcome {
    pub event_id: i64,
    /// The same id was posted before: this is the first outcome, nothing new.
    pub duplicate: bool,
    pub runs: Vec<RunOutcome>,
    /// Messages this event cancelled (pending steps of rules that cancel on it).
    pub cancelled: Vec<i64>,
    /// Messages this event counted as converted.
    pub converted: u64,
}

/// Store `events` from `api_key` and apply them, in the caller's
/// (writer's) transaction.
pub(super) fn ingest(
    c: &Connection,
    api_key: &str,
    events: &[NewTriggerEvent],
    policy: &Policy,
    now: Millis,
) -> Result<Vec<IngestOutcome>, StoreError> {
    events.iter().map(|e| ingest_one(c, api_key, e, policy, now)).collect()
}

fn ingest_one(
    c: &Connection,
    api_key: &str,
    e: &NewTriggerEvent,
    policy: &Policy,
    now: Millis,
) -> Result<IngestOutcome, StoreError> {
    if let Some(ext) = &e.ext_id {
        let prior: Option<i64> = c
            .prepare_cached("SELECT id FROM trigger_events WHERE api_key = ?1 AND ext_id = ?2")?
            .query_row(params![api_key, ext], |r| r.get(0))
            .optional()?;
        if let Some(id) = prior {
            return Ok(IngestOutcome { duplicate: true, ..replay(c, id)? });
        }
    }
    c.prepare_cached(
        "INSERT INTO trigger_events (api_key, ext_id, type, recipient, key, tz, locale, data, occurred_at, received_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?
    .execute(params![
        api_key,
        e.ext_id,
        e.kind,
        e.recipient,
        e.key,
        e.tz,
        e.locale,
        e.data,
        e.occurred_at,
        now
    ])?;
    let event_id = c.last_insert_rowid();

    let mut cancelled = Vec::new();
    if let Some(key) = &e.key {
        for rule in &e.cancels {
            cancelled.extend(messages::cancel_for_key(c, api_key, rule, key, &e.kind, now)?);
        }
    }
    let mut converted = 0;
    for (rule, within) in &e.goals {
        converted += convert(c, api_key, rule, e, event_id, *within, now)?;
    }
    let mut runs = Vec::with_capacity(e.runs.len());
    for run in &e.runs {
        runs.push(start_run(c, api_key, e, event_id, run, policy, now)?);
    }
    Ok(IngestOutcome { event_id, duplicate: false, runs, cancelled, converted })
}

fn start_run(
    c: &Connection,
    api_key: &str,
    e: &NewTriggerEvent,
    event_id: i64,
    run: &PlannedRun,
    policy: &Policy,
    now: Millis,
) -> Result<RunOutcome, StoreError> {
    let (outcome, detail) = match &run.messages {
        Err(why) => ("error", Some(why.clone())),
        Ok(_) => match refusal(c, api_key, e, run, now)? {
            Some(r) => r,
            None => ("scheduled", None),
        },
    };
    c.prepare_cached(
        "INSERT INTO rule_runs (rule, event_id, key, recipient, at, outcome, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![run.rule, event_id, e.key, e.recipient, now, outcome, detail])?;
    let run_id = c.last_insert_rowid();
    let mut ids = Vec::new();
    if let (Ok(msgs), "scheduled") = (&run.messages, outcome) {
        for (step, m) in msgs {
            let origin = RuleOrigin { rule: run.rule.clone(), step: *step, key: e.key.clone(), run_id };
            ids.push(messages::insert(c, api_key, m, Some(&origin), policy, now)?.id);
        }
    }
    Ok(RunOutcome { rule: run.rule.clone(), outcome: outcome.to_string(), detail, messages: ids })
}

/// Why a run is not scheduled: the rule's limit, or a cancelling event
/// already there for the key.
fn refusal(
    c: &Connection,
    api_key: &str,
    e: &NewTriggerEvent,
    run: &PlannedRun,
    now: Millis,
) -> Result<Option<(&'static str, Option<String>)>, StoreError> {
    if let Some(limit) = run.limit {
        let since = limit.within_ms.map(|w| now - w).unwrap_or(Millis::MIN);
        let earlier: Option<i64> = match (&e.key, limit.per_key) {
            (Some(key), true) => c
                .prepare_cached(
                    "SELECT id FROM rule_runs INDEXED BY rule_runs_key
                     WHERE rule = ?1 AND key = ?2 AND at >= ?3 AND outcome = 'scheduled' LIMIT 1",
                )?
                .query_row(params![run.rule, key, since], |r| r.get(0))
                .optional()?,
            _ => c
                .prepare_cached(
                    "SELECT id FROM rule_runs INDEXED BY rule_runs_recipient
                     WHERE rule = ?1 AND recipient = ?2 AND at >= ?3 AND outcome = 'scheduled' LIMIT 1",
                )?
                .query_row(params![run.rule, e.recipient, since], |r| r.get(0))
                .optional()?,
        };
        if earlier.is_some() {
            let per = if limit.per_key && e.key.is_some() { "key" } else { "recipient" };
            let detail = match limit.within_ms {
                Some(w) => format!("already scheduled for this {per} within the last {}s", w / 1000),
                None => format!("already scheduled once for this {per}"),
            };
            return Ok(Some(("limited", Some(detail))));
        }
    }
    if let Some(key) = &e.key {
        for t in &run.cancel_on {
            let there: Option<i64> = c
                .prepare_cached(
                    "SELECT id FROM trigger_events INDEXED BY trigger_events_key
                     WHERE key = ?1 AND type = ?2 AND occurred_at >= ?3 AND api_key = ?4 LIMIT 1",
                )?
                .query_row(params![key, t, e.occurred_at, api_key], |r| r.get(0))
                .optional()?;
            if there.is_some() {
                return Ok(Some(("cancelled", Some(format!("event {t:?} already arrived for this key")))));
            }
        }
    }
    Ok(None)
}

/// Count a conversion for every message of `rule` from `api_key`'s events
/// to the event's key (or, without one, its recipient) sent within `within`
/// before it and not yet converted.
fn convert(
    c: &Connection,
    api_key: &str,
    rule: &str,
    e: &NewTriggerEvent,
    event_id: i64,
    within: Millis,
    now: Millis,
) -> Result<u64, StoreError> {
    let since = e.occurred_at - within;
    let sql_tail = "AND m.api_key = ?7 AND m.status IN ('submitted', 'delivered', 'undelivered')
         AND NOT EXISTS (SELECT 1 FROM conversions v WHERE v.message_id = m.id)
         AND EXISTS (SELECT 1 FROM history h WHERE h.message_id = m.id AND h.status = 'submitted'
                     AND h.at >= ?3 AND h.at <= ?4)";
    let n = match &e.key {
        Some(key) => c
            .prepare_cached(&format!(
                "INSERT INTO conversions (message_id, rule, event_id, at)
                 SELECT m.id, m.rule, ?5, ?6 FROM messages m WHERE m.rule = ?1 AND m.trigger_key = ?2 {sql_tail}"
            ))?
            .execute(params![rule, key, since, e.occurred_at.max(now), event_id, now, api_key])?,
        None => c
            .prepare_cached(&format!(
                "INSERT INTO conversions (message_id, rule, event_id, at)
                 SELECT m.id, m.rule, ?5, ?6 FROM messages m WHERE m.rule = ?1 AND m.recipient = ?2 {sql_tail}"
            ))?
            .execute(params![rule, e.recipient, since, e.occurred_at.max(now), event_id, now, api_key])?,
    };
    Ok(n as u64)
}

/// Delete up to `limit` posted events received before `before`, and as
/// many runs started before it, oldest first, in id order
/// (`oldest_before`). Returns the rows deleted.
pub(super) fn prune_batch(c: &Connection, before: Millis, limit: usize) -> rusqlite::Result<u64> {
    let mut n = 0;
    for (table, at) in [("trigger_events", "received_at"), ("rule_runs", "at")] {
        if let Some(last) = super::oldest_before(c, table, at, i64::MAX, before, limit)? {
            n += c.prepare_cached(&format!("DELETE FROM {table} WHERE id <= ?1"))?.execute(params![last])? as u64;
        }
    }
    Ok(n)
}

/// The first outcome of event `event_id`, read back from its runs.
fn replay(c: &Connection, event_id: i64) -> Result<IngestOutcome, StoreError> {
    let runs: Vec<(i64, String, String, Option<String>)> = c
        .prepare_cached(
            "SELECT id, rule, outcome, detail FROM rule_runs INDEXED BY rule_runs_event WHERE event_id = ?1 ORDER BY id",
        )?
        .query_map(params![event_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
        .collect::<Result<_, _>>()?;
    let mut out = Vec::with_capacity(runs.len());
    for (run_id, rule, outcome, detail) in runs {
        let messages = c
            .prepare_cached("SELECT id FROM messages INDEXED BY messages_run WHERE run_id = ?1 ORDER BY id")?
            .query_map(params![run_id], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        out.push(RunOutcome { rule, outcome, detail, messages });
    }
    Ok(IngestOutcome { event_id, duplicate: false, runs: out, cancelled: Vec::new(), converted: 0 })
}

#[cfg(test)]
mod tests {
    use super::super::Store;
    use super::*;
    use crate::message::{Priority, now_ms};
    use crate::sms::Encoding;

    fn step(text: &str, after: Millis) -> (u32, NewMessage) {
        let now = now_ms();
        (
            0,
            NewMessage {
                to: "+79161234567".into(),
                from: None,
                text: text.into(),
                encoding: Encoding::Gsm7,
                segments: 1,
                priority: Priority::Promotional,
                route: "r".into(),
                reference: None,
                send_at: Some(now + after),
                valid_until: now + after + 60_000,
                callback_url: None,
                tz: None,
                receipt: None,
                via: None,
            },
        )
    }

    fn ev(id: Option<&str>, kind: &str, key: &str, runs: Vec<PlannedRun>, cancels: &[&str]) -> NewTriggerEvent {
        NewTriggerEvent {
            ext_id: id.map(str::to_string),
            kind: kind.into(),
            recipient: "+79161234567".into(),
            key: Some(key.into()),
            tz: None,
            locale: "ru".into(),
            data: "{}".into(),
            occurred_at: now_ms(),
            runs,
            cancels: cancels.iter().map(|s| s.to_string()).collect(),
            goals: Vec::new(),
        }
    }

    fn run(rule: &str, limit: Option<RunLimit>) -> PlannedRun {
        PlannedRun { rule: rule.into(), limit, cancel_on: vec!["paid".into()], messages: Ok(vec![step("hi", 60_000)]) }
    }

    #[tokio::test]
    async fn one_batch_applies_in_order_replays_and_limits() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("t.db")).unwrap();
        let once = Some(RunLimit { per_key: true, within_ms: None });
        let out = s
            .ingest_events(
                "k".into(),
                vec![
                    ev(Some("e1"), "cart", "c1", vec![run("r", once)], &[]),
                    // The same id again in the same batch: the first outcome, nothing new.
                    ev(Some("e1"), "cart", "c1", vec![run("r", once)], &[]),
                    // Another event for the key: the per-key limit refuses it.
                    ev(Some("e2"), "cart", "c1", vec![run("r", once)], &[]),
                    // The cancel for the key: the first run's message.
                    ev(None, "paid", "c1", vec![], &["r"]),
                ],
                Policy::default(),
            )
            .await
            .unwrap();
        let first = &out[0].runs[0];
        assert_eq!(first.outcome, "scheduled");
        assert!(out[1].duplicate);
        assert_eq!(out[1].event_id, out[0].event_id);
        assert_eq!(&out[1].runs[0], first);
        assert_eq!(out[2].runs[0].outcome, "limited");
        assert_eq!(out[3].cancelled, first.messages);
        assert_eq!(s.get(first.messages[0]).await.unwrap().unwrap().status, crate::message::Status::Cancelled);

        // A trigger that happened before the cancel already there: its run is cancelled.
        let mut late = ev(None, "cart", "c1", vec![run("other", None)], &[]);
        late.occurred_at -= 10_000;
        let out = s.ingest_events("k".into(), vec![late], Policy::default()).await.unwrap();
        assert_eq!(out[0].runs[0].outcome, "cancelled");
        assert!(out[0].runs[0].detail.as_deref().unwrap().contains("paid"));
        assert!(out[0].runs[0].messages.is_empty());
    }

    #[tokio::test]
    async fn a_runs_error_makes_no_message() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("t.db")).unwrap();
        let bad = PlannedRun { rule: "r".into(), limit: None, cancel_on: vec![], messages: Err("step 1: no".into()) };
        let out =
            s.ingest_events("k".into(), vec![ev(None, "x", "k", vec![bad], &[])], Policy::default()).await.unwrap();
        assert_eq!(out[0].runs[0].outcome, "error");
        assert_eq!(out[0].runs[0].detail.as_deref(), Some("step 1: no"));
        assert_eq!(s.queued_total().await.unwrap(), 0);
    }

    #[test]
    fn old_events_and_runs_are_pruned_oldest_first_and_young_ones_stay() {
        let mut c = Connection::open_in_memory().unwrap();
        super::super::schema::migrate(&mut c).unwrap();
        let now = now_ms();
        let day = 86_400_000;
        // Received 3, 2 and 1 days ago, then now: ids in arrival order.
        for (i, age) in [3, 2, 1, 0].iter().enumerate() {
            let e = ev(Some(&format!("e{i}")), "cart", "c1", vec![run("r", None)], &[]);
            ingest(&c, "k", std::slice::from_ref(&e), &Policy::default(), now - age * day).unwrap();
        }
        let count = |t: &str| c.query_row(&format!("SELECT count(*) FROM {t}"), [], |r| r.get::<_, i64>(0)).unwrap();
        // Older than 36 hours, one row of each table per batch.
        assert_eq!(prune_batch(&c, now - 36 * 3_600_000, 1).unwrap(), 2);
        assert_eq!((count("trigger_events"), count("rule_runs")), (3, 3));
        assert_eq!(prune_batch(&c, now - 36 * 3_600_000, 100).unwrap(), 2);
        assert_eq!(prune_batch(&c, now - 36 * 3_600_000, 100).unwrap(), 0, "the young ones stay");
        assert_eq!((count("trigger_events"), count("rule_runs")), (2, 2));
        // A replay of a kept event still answers its first outcome, by the runs' index.
        let again = ingest(&c, "k", &[ev(Some("e3"), "cart", "c1", vec![], &[])], &Policy::default(), now).unwrap();
        assert!(again[0].duplicate);
        assert_eq!(again[0].runs.len(), 1);
        assert_eq!(again[0].runs[0].messages.len(), 1);
    }
}
