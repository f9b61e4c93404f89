//! Events posted by services and what the trigger rules make of them, in
//! one transaction per batch: the event row (idempotent by the key's own
//! id), the pending steps it cancels, the conversions it completes, and for
//! each rule it starts a run (`scheduled`, or why not: `limited`,
//! `cancelled`, `error`) with the run's messages. A pending step is a queued
//! message whose `due_at` lies ahead, so the lanes fire it and a restart
//! keeps it.

use super::StoreError;
use super::messages::{self, NewMessage, RuleOrigin};
use crate::config::Policy;
use crate::message::{Millis, Status};
use crate::trigger::LimitPer;
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

/// An event with what the rules said of it (evaluated before the write).
#[derive(Debug, Clone)]
pub struct NewTriggerEvent {
    /// The poster's own id: a second event with it is a replay.
    pub ext_id: Option<String>,
    pub kind: String,
    pub recipient: String,
    pub key: Option<String>,
    pub tz: Option<String>,
    pub locale: String,
    /// The event's `data`, as JSON text.
    pub data: String,
    pub occurred_at: Millis,
    pub starts: Vec<NewRun>,
    /// Rules whose pending steps for the event's key it cancels.
    pub cancels: Vec<String>,
    /// Rules whose goal it is, with their windows.
    pub goals: Vec<(String, Millis)>,
}

/// A rule the event starts.
#[derive(Debug, Clone)]
pub struct NewRun {
    pub rule: String,
    pub limit: Option<(LimitPer, Option<Millis>)>,
    /// Event types that cancel the rule: one already there for the key at
    /// or after the event means nothing is scheduled.
    pub cancelled_by: Vec<String>,
    /// The steps' messages, or why the rule cannot send.
    pub messages: Result<Vec<NewMessage>, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct IngestedEvent {
    /// The poster's id, when it gave one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// smsgw's id of the event.
    pub event_id: i64,
    /// True when this is a replay of an event already taken: nothing new was made.
    pub duplicate: bool,
    pub runs: Vec<RunView>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct RunView {
    pub rule: String,
    /// `scheduled`, `limited`, `cancelled` or `error`.
    pub outcome: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The messages it made, one per step.
    pub messages: Vec<i64>,
}

pub(super) fn ingest(
    c: &Connection,
    api_key: &str,
    events: &[NewTriggerEvent],
    policy: &Policy,
    now: Millis,
) -> Result<Vec<IngestedEvent>, StoreError> {
    events.iter().map(|e| ingest_one(c, api_key, e, policy, now)).collect()
}

fn ingest_one(
    c: &Connection,
    api_key: &str,
    e: &NewTriggerEvent,
    policy: &Policy,
    now: Millis,
) -> Result<IngestedEvent, StoreError> {
    if let Some(ext) = &e.ext_id {
        let prior: Option<i64> = c
            .prepare_cached("SELECT id FROM trigger_events WHERE api_key = ?1 AND ext_id = ?2")?
            .query_row(params![api_key, ext], |r| r.get(0))
            .optional()?;
        if let Some(event_id) = prior {
            return Ok(IngestedEvent { id: e.ext_id.clone(), event_id, duplicate: true, runs: runs_of(c, event_id)? });
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
    if let Some(key) = &e.key {
        for rule in &e.cancels {
            cancel_pending(c, rule, key, &e.kind, event_id, now)?;
        }
    }
    for (rule, within) in &e.goals {
        convert(c, rule, e, *within, event_id, now)?;
    }
    let mut runs = Vec::with_capacity(e.starts.len());
    for run in &e.starts {
        runs.push(start(c, api_key, e, run, event_id, policy, now)?);
    }
    Ok(IngestedEvent { id: e.ext_id.clone(), event_id, duplicate: false, runs })
}

/// Cancel `rule`'s queued steps for `key`; a step already claimed goes out.
fn cancel_pending(
    c: &Connection,
    rule: &str,
    key: &str,
    kind: &str,
    event_id: i64,
    now: Millis,
) -> Result<(), StoreError> {
    let ids: Vec<i64> = c
        .prepare_cached("SELECT id FROM messages WHERE trigger_key = ?1 AND rule = ?2 AND status = 'queued'")?
        .query_map(params![key, rule], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for id in ids {
        c.prepare_cached("UPDATE messages SET status = 'cancelled', cancelled_by = ?2, updated_at = ?3 WHERE id = ?1")?
            .execute(params![id, kind, now])?;
        messages::history(c, id, now, Status::Cancelled, &format!("cancelled by event {kind:?} (event {event_id})"))?;
    }
    Ok(())
}

/// Count the event as a conversion for `rule`'s messages to the same key
/// (or, without a key, the same recipient) sent within `within` before it.
fn convert(
    c: &Connection,
    rule: &str,
    e: &NewTriggerEvent,
    within: Millis,
    event_id: i64,
    now: Millis,
) -> Result<(), StoreError> {
    let since = e.occurred_at - within;
    let sql = if e.key.is_some() {
        "INSERT OR IGNORE INTO conversions (message_id, rule, event_id, at)
         SELECT id, rule, ?3, ?4 FROM messages
         WHERE trigger_key = ?1 AND rule = ?2 AND status IN ('submitted', 'delivered', 'undelivered')
           AND due_at >= ?5 AND due_at <= ?6"
    } else {
        "INSERT OR IGNORE INTO conversions (message_id, rule, event_id, at)
         SELECT id, rule, ?3, ?4 FROM messages
         WHERE recipient = ?1 AND rule = ?2 AND status IN ('submitted', 'delivered', 'undelivered')
           AND due_at >= ?5 AND due_at <= ?6"
    };
    let who = e.key.as_deref().unwrap_or(&e.recipient);
    c.prepare_cached(sql)?.execute(params![who, rule, event_id, now, since, e.occurred_at])?;
    Ok(())
}

fn start(
    c: &Connection,
    api_key: &str,
    e: &NewTriggerEvent,
    run: &NewRun,
    event_id: i64,
    policy: &Policy,
    now: Millis,
) -> Result<RunView, StoreError> {
    let (outcome, detail) = match verdict(c, e, run, event_id, now)? {
        Some((outcome, detail)) => (outcome, Some(detail)),
        None => ("scheduled", None),
    };
    c.prepare_cached(
        "INSERT INTO rule_runs (rule, event_id, key, recipient, at, outcome, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![run.rule, event_id, e.key, e.recipient, now, outcome, detail])?;
    let run_id = c.last_insert_rowid();
    let mut ids = Vec::new();
    if outcome == "scheduled"
        && let Ok(msgs) = &run.messages
    {
        for (step, m) in msgs.iter().enumerate() {
            let origin = RuleOrigin { rule: run.rule.clone(), step: step as u32, key: e.key.clone(), run_id };
            ids.push(messages::insert(c, api_key, m, Some(&origin), policy, now)?.id);
        }
    }
    Ok(RunView { rule: run.rule.clone(), outcome: outcome.into(), detail, messages: ids })
}

/// Why `run` schedules nothing, if it does not: a cancelling event is
/// already there, the rule's limit is reached, or its texts failed.
fn verdict(
    c: &Connection,
    e: &NewTriggerEvent,
    run: &NewRun,
    event_id: i64,
    now: Millis,
) -> Result<Option<(&'static str, String)>, StoreError> {
    if let Err(why) = &run.messages {
        return Ok(Some(("error", why.clone())));
    }
    if let Some(key) = &e.key {
        for kind in &run.cancelled_by {
            let seen: Option<i64> = c
                .prepare_cached(
                    "SELECT id FROM trigger_events WHERE key = ?1 AND type = ?2 AND occurred_at >= ?3 AND id <> ?4 LIMIT 1",
                )?
                .query_row(params![key, kind, e.occurred_at, event_id], |r| r.get(0))
                .optional()?;
            if let Some(id) = seen {
                return Ok(Some(("cancelled", format!("event {kind:?} (event {id}) already arrived for key {key:?}"))));
            }
        }
    }
    if let Some((per, within)) = run.limit {
        let since = within.map_or(0, |w| now - w);
        let (sql, who) = match (per, &e.key) {
            (LimitPer::Key, Some(key)) => (
                "SELECT id FROM rule_runs WHERE rule = ?1 AND key = ?2 AND outcome = 'scheduled' AND at >= ?3 LIMIT 1",
                key.as_str(),
            ),
            _ => (
                "SELECT id FROM rule_runs WHERE rule = ?1 AND recipient = ?2 AND outcome = 'scheduled' AND at >= ?3 LIMIT 1",
                e.recipient.as_str(),
            ),
        };
        let prior: Option<i64> =
            c.prepare_cached(sql)?.query_row(params![run.rule, who, since], |r| r.get(0)).optional()?;
        if prior.is_some() {
            let whom = if per == LimitPer::Key && e.key.is_some() { "key" } else { "recipient" };
            let when = match within {
                Some(w) => format!("within {}s", w / 1000),
                None => "before".to_string(),
            };
            return Ok(Some(("limited", format!("the rule already ran for this {whom} {when}"))));
        }
    }
    Ok(None)
}

fn runs_of(c: &Connection, event_id: i64) -> Result<Vec<RunView>, StoreError> {
    let rows: Vec<(i64, String, String, Option<String>)> = c
        .prepare_cached("SELECT id, rule, outcome, detail FROM rule_runs WHERE event_id = ?1 ORDER BY id")?
        .query_map(params![event_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
        .collect::<Result<_, _>>()?;
    let mut out = Vec::with_capacity(rows.len());
    for (run_id, rule, outcome, detail) in rows {
        let messages = c
            .prepare_cached("SELECT id FROM messages WHERE run_id = ?1 ORDER BY step")?
            .query_map(params![run_id], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        out.push(RunView { rule, outcome, detail, messages });
    }
    Ok(out)
}
