//! Webhook subscriptions as their owners manage them: create, read (with a
//! cheap view of how deliveries fare), change, delete, rotate the signing
//! secret, list a subscription's deliveries with their attempts, and put
//! finished deliveries back in the queue (replay). The delivery engine
//! makes the deliveries; this is the side a key sees.
//!
//! Every call takes an `owner`: `Some(key)` sees and touches only that
//! key's subscriptions (another key's are "not found"), `None` (admin) all.
//! Subscriptions declared in the config file (origin `config`) are read
//! here but changed only by the file.

use crate::message::{EventKind, Millis};
use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::{Deserialize, Serialize};

/// One entry of `webhooks.secrets` (a JSON array, newest first). Every
/// entry whose `until` is unset or still ahead signs each delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigningSecret {
    pub secret: String,
    /// Ms since the epoch after which it no longer signs; None: no end.
    pub until: Option<Millis>,
}

/// Where a subscription comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// Declared in the config file: changed only there.
    Config,
    /// Made through `/v1/webhooks`.
    Api,
    /// A key's endpoint for the `callback_url` its messages carry (no URL of its own).
    Callback,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Config => "config",
            Origin::Api => "api",
            Origin::Callback => "callback",
        }
    }

    fn parse(s: &str) -> Origin {
        match s {
            "config" => Origin::Config,
            "callback" => Origin::Callback,
            _ => Origin::Api,
        }
    }
}

/// How a subscription's deliveries fare.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryHealth {
    /// When a delivery last succeeded.
    pub last_success_at: Option<Millis>,
    /// Deliveries waiting (or retrying).
    pub pending: u64,
    /// Deliveries that ran out of retries.
    pub dead: u64,
    /// Attempts in the last 24 hours that got no answer or not a 2xx.
    pub failures_24h: u64,
}

/// A subscription as stored, with its delivery health.
#[derive(Debug, Clone)]
pub struct SubscriptionView {
    pub id: i64,
    pub api_key: String,
    /// Set for subscriptions from the config file.
    pub name: Option<String>,
    pub origin: Origin,
    /// None for a callback subscription (each message names its own).
    pub url: Option<String>,
    pub events: Vec<String>,
    pub secrets: Vec<SigningSecret>,
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    pub created_at: Millis,
    pub updated_at: Millis,
    pub health: DeliveryHealth,
}

/// A subscription to make through the API.
#[derive(Debug, Clone)]
pub struct NewSubscription {
    pub api_key: String,
    pub url: String,
    pub events: Vec<EventKind>,
    pub secret: String,
}

/// A change to a subscription; None leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct SubscriptionPatch {
    pub url: Option<String>,
    pub events: Option<Vec<EventKind>>,
    pub enabled: Option<bool>,
}

/// The answer to a change asked of a subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Managed<T> {
    Done(T),
    /// No such subscription, or another key's.
    NotFound,
    /// Declared in the config file (by this name): change it there.
    FromConfig {
        name: String,
    },
}

/// `deliveries.state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryState {
    Pending,
    Done,
    Dead,
    Disabled,
}

impl DeliveryState {
    pub const ALL: [DeliveryState; 4] =
        [DeliveryState::Pending, DeliveryState::Done, DeliveryState::Dead, DeliveryState::Disabled];

    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Done => "done",
            DeliveryState::Dead => "dead",
            DeliveryState::Disabled => "disabled",
        }
    }

    pub fn parse(s: &str) -> Option<DeliveryState> {
        DeliveryState::ALL.into_iter().find(|d| d.as_str() == s)
    }
}

/// Which deliveries of a subscription to list, newest event first.
#[derive(Debug, Clone)]
pub struct DeliveryFilter {
    pub state: Option<DeliveryState>,
    /// Only events with an id below this (the previous page's last).
    pub before_event: Option<i64>,
    pub limit: usize,
}

/// One event's delivery to one subscription.
#[derive(Debug, Clone)]
pub struct DeliveryView {
    pub event_id: i64,
    /// The event's type; None when retention has already removed the event.
    pub kind: Option<String>,
    pub state: String,
    /// The message's callback URL for a callback delivery.
    pub url: Option<String>,
    pub attempts: u32,
    pub created_at: Millis,
    pub next_at: Millis,
    pub done_at: Option<Millis>,
    pub attempt_log: Vec<AttemptView>,
}

/// One HTTP attempt of a delivery.
#[derive(Debug, Clone)]
pub struct AttemptView {
    pub at: Millis,
    /// None when no answer came (refused, timed out...).
    pub http_status: Option<u16>,
    pub latency_ms: i64,
    pub error: Option<String>,
}

/// Which finished deliveries to send again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplaySelect {
    /// The delivery of this one event.
    Event(i64),
    /// Every finished delivery of an event at or after this time; with a
    /// state, only those in it (`dead`: what failed for good).
    Since(Millis, Option<DeliveryState>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayOutcome {
    /// This many deliveries are pending again.
    Replayed(usize),
    /// No such subscription, or another key's.
    NoSubscription,
    /// The subscription has no delivery of that event.
    NoDelivery,
}

/// Secrets kept at most: the newest and those still fading out.
const SECRETS_KEPT: usize = 10;
const DAY_MS: Millis = 86_400_000;

/// The columns of `webhooks` and the health of each, in one statement: the
/// counts walk the `deliveries_health` and `delivery_attempts_recent`
/// indexes over this subscription's rows only.
const SELECT: &str = "SELECT w.id, w.api_key, w.name, w.origin, w.url, w.events, w.secrets, w.enabled,
        w.disabled_reason, w.created_at, w.updated_at,
        (SELECT max(done_at) FROM deliveries WHERE webhook_id = w.id AND state = 'done'),
        (SELECT count(*) FROM deliveries WHERE webhook_id = w.id AND state = 'pending'),
        (SELECT count(*) FROM deliveries WHERE webhook_id = w.id AND state = 'dead'),
        (SELECT count(*) FROM delivery_attempts WHERE webhook_id = w.id AND at >= :since
            AND (http_status IS NULL OR http_status NOT BETWEEN 200 AND 299))
    FROM webhooks w";

/// A JSON column that did not parse: the store's own data is wrong.
fn bad_json(column: usize, e: serde_json::Error) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(column, rusqlite::types::Type::Text, Box::new(e))
}

fn row_to_view(r: &Row<'_>) -> rusqlite::Result<SubscriptionView> {
    let events: String = r.get(5)?;
    let secrets: String = r.get(6)?;
    Ok(SubscriptionView {
        id: r.get(0)?,
        api_key: r.get(1)?,
        name: r.get(2)?,
        origin: Origin::parse(&r.get::<_, String>(3)?),
        url: r.get(4)?,
        events: serde_json::from_str(&events).map_err(|e| bad_json(5, e))?,
        secrets: serde_json::from_str(&secrets).map_err(|e| bad_json(6, e))?,
        enabled: r.get(7)?,
        disabled_reason: r.get(8)?,
        created_at: r.get(9)?,
        updated_at: r.get(10)?,
        health: DeliveryHealth {
            last_success_at: r.get(11)?,
            pending: r.get::<_, i64>(12)? as u64,
            dead: r.get::<_, i64>(13)? as u64,
            failures_24h: r.get::<_, i64>(14)? as u64,
        },
    })
}

pub(super) fn kinds_json(events: &[EventKind]) -> rusqlite::Result<String> {
    super::to_json(&events.iter().map(|k| k.as_str()).collect::<Vec<_>>())
}

/// The subscription `id` if `owner` may see it.
pub(super) fn get(
    c: &Connection,
    id: i64,
    owner: Option<&str>,
    now: Millis,
) -> rusqlite::Result<Option<SubscriptionView>> {
    c.prepare_cached(&format!("{SELECT} WHERE w.id = :id AND (:owner IS NULL OR w.api_key = :owner)"))?
        .query_row(rusqlite::named_params! {":id": id, ":owner": owner, ":since": now - DAY_MS}, row_to_view)
        .optional()
}

/// Every subscription `owner` may see, oldest first.
pub(super) fn list(c: &Connection, owner: Option<&str>, now: Millis) -> rusqlite::Result<Vec<SubscriptionView>> {
    c.prepare_cached(&format!("{SELECT} WHERE (:owner IS NULL OR w.api_key = :owner) ORDER BY w.id"))?
        .query_map(rusqlite::named_params! {":owner": owner, ":since": now - DAY_MS}, row_to_view)?
        .collect()
}

pub(super) fn create(c: &Connection, s: &NewSubscription, now: Millis) -> rusqlite::Result<SubscriptionView> {
    let secrets = super::to_json(&[SigningSecret { secret: s.secret.clone(), until: None }])?;
    c.prepare_cached(
        "INSERT INTO webhooks (api_key, origin, url, events, secrets, enabled, created_at, updated_at)
         VALUES (?1, 'api', ?2, ?3, ?4, 1, ?5, ?5)",
    )?
    .execute(params![s.api_key, s.url, kinds_json(&s.events)?, secrets, now])?;
    let id = c.last_insert_rowid();
    get(c, id, None, now)?.ok_or(rusqlite::Error::QueryReturnedNoRows)
}

/// The subscription's origin and name, if `owner` may see it.
fn origin(c: &Connection, id: i64, owner: Option<&str>) -> rusqlite::Result<Option<(Origin, Option<String>)>> {
    c.prepare_cached("SELECT origin, name FROM webhooks WHERE id = ?1 AND (?2 IS NULL OR api_key = ?2)")?
        .query_row(params![id, owner], |r| Ok((Origin::parse(&r.get::<_, String>(0)?), r.get(1)?)))
        .optional()
}

/// `Some(answer)` when the subscription cannot be changed by `owner`:
/// unseen, or the config file's.
fn refuse<T>(c: &Connection, id: i64, owner: Option<&str>) -> rusqlite::Result<Option<Managed<T>>> {
    Ok(match origin(c, id, owner)? {
        None => Some(Managed::NotFound),
        Some((Origin::Config, name)) => Some(Managed::FromConfig { name: name.unwrap_or_default() }),
        Some(_) => None,
    })
}

pub(super) fn update(
    c: &Connection,
    id: i64,
    owner: Option<&str>,
    patch: &SubscriptionPatch,
    now: Millis,
) -> rusqlite::Result<Managed<SubscriptionView>> {
    if let Some(no) = refuse(c, id, owner)? {
        return Ok(no);
    }
    if let Some(url) = &patch.url {
        c.prepare_cached("UPDATE webhooks SET url = ?2 WHERE id = ?1")?.execute(params![id, url])?;
    }
    if let Some(events) = &patch.events {
        c.prepare_cached("UPDATE webhooks SET events = ?2 WHERE id = ?1")?.execute(params![id, kinds_json(events)?])?;
    }
    match patch.enabled {
        Some(true) => {
            c.prepare_cached("UPDATE webhooks SET enabled = 1, disabled_reason = NULL WHERE id = ?1")?
                .execute(params![id])?;
        }
        Some(false) => {
            c.prepare_cached(
                "UPDATE webhooks SET enabled = 0, disabled_reason = 'disabled through the API' WHERE id = ?1 AND enabled",
            )?
            .execute(params![id])?;
        }
        None => {}
    }
    c.prepare_cached("UPDATE webhooks SET updated_at = ?2 WHERE id = ?1")?.execute(params![id, now])?;
    Ok(get(c, id, None, now)?.map_or(Managed::NotFound, Managed::Done))
}

/// Delete the subscription with its deliveries and their attempts: pending
/// ones must not be sent, and none may outlive it (a later subscription
/// could be given the same id).
pub(super) fn delete(c: &Connection, id: i64, owner: Option<&str>) -> rusqlite::Result<Managed<()>> {
    if let Some(no) = refuse(c, id, owner)? {
        return Ok(no);
    }
    c.prepare_cached("DELETE FROM delivery_attempts WHERE webhook_id = ?1")?.execute(params![id])?;
    c.prepare_cached("DELETE FROM deliveries WHERE webhook_id = ?1")?.execute(params![id])?;
    c.prepare_cached("DELETE FROM webhooks WHERE id = ?1")?.execute(params![id])?;
    Ok(Managed::Done(()))
}

/// Put `secret` first; every older secret stops signing `expire_old_ms`
/// from now (or sooner, if it was already due to). Secrets already past
/// their end are dropped, and at most `SECRETS_KEPT` are kept.
pub(super) fn rotate(
    c: &Connection,
    id: i64,
    owner: Option<&str>,
    secret: &str,
    expire_old_ms: Millis,
    now: Millis,
) -> rusqlite::Result<Managed<SubscriptionView>> {
    if let Some(no) = refuse(c, id, owner)? {
        return Ok(no);
    }
    let old: String =
        c.prepare_cached("SELECT secrets FROM webhooks WHERE id = ?1")?.query_row(params![id], |r| r.get(0))?;
    let old: Vec<SigningSecret> = serde_json::from_str(&old).map_err(|e| bad_json(0, e))?;
    let end = now.saturating_add(expire_old_ms);
    let mut secrets = vec![SigningSecret { secret: secret.to_string(), until: None }];
    secrets.extend(
        old.into_iter()
            .map(|s| SigningSecret { until: Some(s.until.map_or(end, |u| u.min(end))), ..s })
            .filter(|s| s.until.is_some_and(|u| u > now)),
    );
    secrets.truncate(SECRETS_KEPT);
    c.prepare_cached("UPDATE webhooks SET secrets = ?2, updated_at = ?3 WHERE id = ?1")?.execute(params![
        id,
        super::to_json(&secrets)?,
        now
    ])?;
    Ok(get(c, id, None, now)?.map_or(Managed::NotFound, Managed::Done))
}

/// The subscription's deliveries, newest event first, each with its
/// attempts; None when `owner` cannot see the subscription.
pub(super) fn deliveries(
    c: &Connection,
    id: i64,
    owner: Option<&str>,
    f: &DeliveryFilter,
) -> rusqlite::Result<Option<Vec<DeliveryView>>> {
    if origin(c, id, owner)?.is_none() {
        return Ok(None);
    }
    let rows: Vec<(Option<AttemptView>, DeliveryView)> = c
        .prepare_cached(
            "SELECT d.event_id, e.kind, d.state, d.url, d.attempts, d.created_at, d.next_at, d.done_at,
                    d.last_status, d.last_latency_ms, d.last_error
             FROM deliveries d LEFT JOIN events e ON e.id = d.event_id
             WHERE d.webhook_id = ?1 AND (?2 IS NULL OR d.state = ?2) AND (?3 IS NULL OR d.event_id < ?3)
             ORDER BY d.event_id DESC LIMIT ?4",
        )?
        .query_map(params![id, f.state.map(DeliveryState::as_str), f.before_event, f.limit as i64], |r| {
            let state: String = r.get(2)?;
            let done_at: Option<Millis> = r.get(7)?;
            let (status, latency): (Option<u16>, Option<i64>) = (r.get(8)?, r.get(9)?);
            // A successful attempt lives on the delivery row alone.
            let success = match (state.as_str(), done_at, status, latency) {
                ("done", Some(done), http_status @ Some(_), Some(latency_ms)) => {
                    Some(AttemptView { at: done - latency_ms, http_status, latency_ms, error: r.get(10)? })
                }
                _ => None,
            };
            Ok((
                success,
                DeliveryView {
                    event_id: r.get(0)?,
                    kind: r.get(1)?,
                    state,
                    url: r.get(3)?,
                    attempts: r.get(4)?,
                    created_at: r.get(5)?,
                    next_at: r.get(6)?,
                    done_at,
                    attempt_log: Vec::new(),
                },
            ))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut attempts = c.prepare_cached(
        "SELECT at, http_status, latency_ms, error FROM delivery_attempts
         WHERE webhook_id = ?1 AND event_id = ?2 ORDER BY at, rowid",
    )?;
    let mut views = Vec::with_capacity(rows.len());
    for (success, mut d) in rows {
        d.attempt_log = attempts
            .query_map(params![id, d.event_id], |r| {
                Ok(AttemptView { at: r.get(0)?, http_status: r.get(1)?, latency_ms: r.get(2)?, error: r.get(3)? })
            })?
            .collect::<rusqlite::Result<_>>()?;
        d.attempt_log.extend(success);
        views.push(d);
    }
    Ok(Some(views))
}

/// Finished deliveries (done, dead or disabled) of the subscription go
/// back to `pending`, due now, with a fresh retry period (`created_at` =
/// now); their attempts stay as history.
pub(super) fn replay(
    c: &Connection,
    id: i64,
    owner: Option<&str>,
    which: ReplaySelect,
    now: Millis,
) -> rusqlite::Result<ReplayOutcome> {
    if origin(c, id, owner)?.is_none() {
        return Ok(ReplayOutcome::NoSubscription);
    }
    // A successful attempt lived on the delivery row alone: it becomes an
    // attempt row before the row starts over.
    const KEEP: &str = "INSERT INTO delivery_attempts (webhook_id, event_id, at, http_status, latency_ms, error)
        SELECT webhook_id, event_id, done_at - last_latency_ms, last_status, last_latency_ms, last_error
        FROM deliveries WHERE webhook_id = :id AND state = 'done' AND last_status IS NOT NULL
          AND done_at IS NOT NULL AND last_latency_ms IS NOT NULL";
    const AGAIN: &str = "UPDATE deliveries SET state = 'pending', next_at = :now, created_at = :now, done_at = NULL
        WHERE webhook_id = :id AND state IN ('done', 'dead', 'disabled')";
    let n = match which {
        ReplaySelect::Event(event) => {
            let exists = c
                .prepare_cached("SELECT 1 FROM deliveries WHERE webhook_id = ?1 AND event_id = ?2")?
                .query_row(params![id, event], |_| Ok(()))
                .optional()?;
            if exists.is_none() {
                return Ok(ReplayOutcome::NoDelivery);
            }
            c.prepare_cached(&format!("{KEEP} AND event_id = :event"))?
                .execute(rusqlite::named_params! {":id": id, ":event": event})?;
            c.prepare_cached(&format!("{AGAIN} AND event_id = :event"))?
                .execute(rusqlite::named_params! {":now": now, ":id": id, ":event": event})?
        }
        ReplaySelect::Since(since, state) => {
            const WHICH: &str =
                "AND (:state IS NULL OR state = :state) AND event_id IN (SELECT id FROM events WHERE at >= :since)";
            let state = state.map(DeliveryState::as_str);
            c.prepare_cached(&format!("{KEEP} {WHICH}"))?
                .execute(rusqlite::named_params! {":id": id, ":since": since, ":state": state})?;
            c.prepare_cached(&format!("{AGAIN} {WHICH}"))?
                .execute(rusqlite::named_params! {":now": now, ":id": id, ":since": since, ":state": state})?
        }
    };
    Ok(ReplayOutcome::Replayed(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> Connection {
        let mut c = Connection::open_in_memory().unwrap();
        super::super::schema::migrate(&mut c).unwrap();
        c
    }

    fn new(key: &str) -> NewSubscription {
        NewSubscription {
            api_key: key.into(),
            url: "http://10.0.0.5/hook".into(),
            events: vec![EventKind::MessageDelivered],
            secret: "whsec_one".into(),
        }
    }

    #[test]
    fn rotation_keeps_old_secrets_signing_until_their_end() {
        let c = db();
        let s = create(&c, &new("a"), 1_000).unwrap();
        let Managed::Done(r) = rotate(&c, s.id, Some("a"), "whsec_two", 5_000, 2_000).unwrap() else { panic!() };
        assert_eq!(
            r.secrets,
            [
                SigningSecret { secret: "whsec_two".into(), until: None },
                SigningSecret { secret: "whsec_one".into(), until: Some(7_000) }
            ]
        );
        // A second rotation does not lengthen the first secret's end; a
        // secret past its end is dropped.
        let Managed::Done(r) = rotate(&c, s.id, None, "whsec_three", 60_000, 3_000).unwrap() else { panic!() };
        assert_eq!(r.secrets.iter().map(|s| s.until).collect::<Vec<_>>(), [None, Some(63_000), Some(7_000)]);
        let Managed::Done(r) = rotate(&c, s.id, None, "whsec_four", 0, 8_000).unwrap() else { panic!() };
        assert_eq!(r.secrets.len(), 1);
        assert!(matches!(rotate(&c, s.id, Some("b"), "whsec_x", 0, 9_000).unwrap(), Managed::NotFound));
    }

    #[test]
    fn health_counts_one_subscriptions_deliveries() {
        let c = db();
        let s = create(&c, &new("a"), 1_000).unwrap();
        let other = create(&c, &new("a"), 1_000).unwrap();
        let now = 10 * DAY_MS;
        for (w, e, state, done) in [
            (s.id, 1, "done", Some(now - 5)),
            (s.id, 2, "done", Some(now - 1)),
            (s.id, 3, "pending", None),
            (s.id, 4, "dead", None),
            (other.id, 5, "dead", None),
        ] {
            c.execute(
                "INSERT INTO deliveries (webhook_id, event_id, state, created_at, next_at, done_at)
                 VALUES (?1, ?2, ?3, 0, 0, ?4)",
                params![w, e, state, done],
            )
            .unwrap();
        }
        for (e, at, status) in [(3, now - 10, None), (3, now - 2 * DAY_MS, Some(500)), (1, now - 20, Some(204))] {
            c.execute(
                "INSERT INTO delivery_attempts (webhook_id, event_id, at, http_status, latency_ms) VALUES (?1, ?2, ?3, ?4, 1)",
                params![s.id, e, at, status],
            )
            .unwrap();
        }
        let h = get(&c, s.id, Some("a"), now).unwrap().unwrap().health;
        assert_eq!(h, DeliveryHealth { last_success_at: Some(now - 1), pending: 1, dead: 1, failures_24h: 1 });
        assert!(get(&c, s.id, Some("b"), now).unwrap().is_none());
    }
}
