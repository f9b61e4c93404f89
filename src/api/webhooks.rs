//! `/v1/webhooks`: the subscriptions through which a key's events (message
//! statuses, inbound messages, opt-outs, route changes) are posted to LAN
//! services, signed. Create, list, read, change, delete; rotate the signing
//! secret; list a subscription's deliveries with every attempt; replay
//! finished deliveries. The delivery engine does the sending.
//!
//! Scopes: a key with `send` or `read` manages its own subscriptions; a key
//! with `admin` sees and manages every key's, and may make one for another
//! API key or an SMPP account (`smpp:<system_id>`). Another key's subscription is
//! "not found", so ids tell nothing. A subscription declared in the config
//! file is shown but changed only there (409 naming the file). A signing
//! secret is shown once: in the answer that makes it (create, rotate).

use super::auth::Caller;
use super::problem::{FieldError, Problem, quote};
use super::{AppState, check_webhook_url};
use crate::config::Scope;
use crate::config::webhooks::{new_secret, secret_bytes};
use crate::message::{EventKind, from_datetime, to_rfc3339};
use crate::store::{
    DeliveryFilter, DeliveryState, DeliveryView, Managed, NewSubscription, Origin, ReplayOutcome, ReplaySelect,
    SubscriptionPatch, SubscriptionView,
};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::ToSchema;

/// A subscription to make.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhook {
    /// http or https; with `webhooks.allow_hosts` set, a host it names.
    pub url: String,
    /// Event types, e.g. `message.delivered`, `inbound.received`.
    pub events: Vec<String>,
    /// `whsec_` and the base64 of 24 to 64 random bytes; one is made when absent.
    #[serde(default)]
    pub secret: Option<String>,
    /// Whose events it receives: the calling key when absent. An `admin` key
    /// may name another API key, or an SMPP server account as
    /// `smpp:<system_id>` (the owner of the messages that account submits).
    #[serde(default)]
    pub key: Option<String>,
}

/// A change; absent fields stay as they are.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchWebhook {
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub events: Option<Vec<String>>,
    /// True brings back a subscription that was disabled (by a 410 from the
    /// receiver, or by hand); false stops its deliveries.
    #[serde(default)]
    pub enabled: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateRequest {
    /// How long the old secrets keep signing beside the new one (default
    /// 86400, at most 2592000; 0 ends them now).
    #[serde(default)]
    pub expire_old_after_secs: Option<u64>,
}

/// Which finished deliveries to send again: one event, or every event since a time.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayRequest {
    /// `evt_<id>` as a delivery shows it.
    #[serde(default)]
    pub event_id: Option<String>,
    /// RFC 3339: every delivery of an event at or after this time.
    #[serde(default)]
    pub since: Option<DateTime<Utc>>,
    /// With `since`: only deliveries in this state (`dead`, `done` or
    /// `disabled`); without it, every finished one.
    #[serde(default)]
    pub state: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Replayed {
    /// Deliveries that are pending again.
    pub replayed: usize,
}

/// How a subscription's deliveries fare.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct HealthOut {
    pub last_success_at: Option<String>,
    /// Deliveries waiting or retrying.
    pub pending: u64,
    /// Deliveries that ran out of retries (see `replay`).
    pub dead: u64,
    /// Attempts in the last 24 hours with no answer or not a 2xx.
    pub failures_24h: u64,
}

/// A subscription.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WebhookOut {
    pub id: i64,
    /// Null for the key's callback subscription: each message names its own `callback_url`.
    pub url: Option<String>,
    pub events: Vec<String>,
    /// `api` (made here), `config` (declared in the config file; change it there) or
    /// `callback` (signs the deliveries to messages' `callback_url`).
    pub origin: String,
    /// The name in the config file.
    pub name: Option<String>,
    /// The key whose events it receives.
    pub api_key: String,
    pub enabled: bool,
    /// Why it is disabled (e.g. the receiver answered 410 Gone).
    pub disabled_reason: Option<String>,
    /// For each signing secret, newest first: when it stops signing (null: no end).
    pub secrets_until: Vec<Option<String>>,
    pub created_at: String,
    pub updated_at: String,
    pub health: HealthOut,
    /// The new signing secret: only in the answer that made it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WebhookList {
    pub webhooks: Vec<WebhookOut>,
}

/// One HTTP attempt of a delivery.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AttemptOut {
    pub at: String,
    /// Null when no answer came.
    pub http_status: Option<u16>,
    pub latency_ms: i64,
    pub error: Option<String>,
}

/// One event's delivery to the subscription.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DeliveryOut {
    /// `evt_<id>`: the `webhook-id` header of every attempt.
    pub event_id: String,
    /// The event type; null when the event has been pruned.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// `pending`, `done`, `dead` or `disabled`.
    pub state: String,
    /// The message's callback URL, for a callback delivery.
    pub url: Option<String>,
    pub attempts: u32,
    pub created_at: String,
    /// When the next attempt is due (pending only).
    pub next_at: Option<String>,
    pub done_at: Option<String>,
    /// Every attempt, oldest first.
    pub attempt_log: Vec<AttemptOut>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DeliveryList {
    pub deliveries: Vec<DeliveryOut>,
    /// Pass as `before` for the next (older) page; absent on the last page.
    pub next_before: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct DeliveryParams {
    /// Only deliveries in this state: `pending`, `done`, `dead`, `disabled`.
    pub state: Option<String>,
    /// Page size, 1 to 500 (default 50).
    pub limit: Option<String>,
    /// Only events older than this one (`evt_<id>`, e.g. `next_before`).
    pub before: Option<String>,
}

/// How long old secrets sign by default after a rotation, and at most.
const DEFAULT_EXPIRE_OLD_SECS: u64 = 86_400;
const MAX_EXPIRE_OLD_SECS: u64 = 30 * 86_400;

impl WebhookOut {
    fn from_view(v: SubscriptionView, secret: Option<String>) -> WebhookOut {
        WebhookOut {
            id: v.id,
            url: v.url,
            events: v.events,
            origin: v.origin.as_str().to_string(),
            name: v.name,
            api_key: v.api_key,
            enabled: v.enabled,
            disabled_reason: v.disabled_reason,
            secrets_until: v.secrets.iter().map(|s| s.until.map(to_rfc3339)).collect(),
            created_at: to_rfc3339(v.created_at),
            updated_at: to_rfc3339(v.updated_at),
            health: HealthOut {
                last_success_at: v.health.last_success_at.map(to_rfc3339),
                pending: v.health.pending,
                dead: v.health.dead,
                failures_24h: v.health.failures_24h,
            },
            secret,
        }
    }
}

impl From<DeliveryView> for DeliveryOut {
    fn from(d: DeliveryView) -> Self {
        let pending = d.state == DeliveryState::Pending.as_str();
        DeliveryOut {
            event_id: format!("evt_{}", d.event_id),
            kind: d.kind,
            state: d.state,
            url: d.url,
            attempts: d.attempts,
            created_at: to_rfc3339(d.created_at),
            next_at: pending.then(|| to_rfc3339(d.next_at)),
            done_at: d.done_at.map(to_rfc3339),
            attempt_log: d
                .attempt_log
                .into_iter()
                .map(|a| AttemptOut {
                    at: to_rfc3339(a.at),
                    http_status: a.http_status,
                    latency_ms: a.latency_ms,
                    error: a.error,
                })
                .collect(),
        }
    }
}

/// The event kinds of `events`, each unknown one a field error (`events[2]`).
fn check_events(events: &[String], errors: &mut Vec<FieldError>) -> Vec<EventKind> {
    if events.is_empty() {
        errors.push(FieldError { field: "events".into(), message: "name at least one event type".into() });
    }
    let mut kinds = Vec::new();
    for (i, e) in events.iter().enumerate() {
        match EventKind::parse(e) {
            Some(k) if !kinds.contains(&k) => kinds.push(k),
            Some(_) => {}
            None => {
                let known: Vec<_> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
                errors.push(FieldError {
                    field: format!("events[{i}]"),
                    message: format!("unknown event type {}; known: {}", quote(e), known.join(", ")),
                });
            }
        }
    }
    kinds
}

fn check_url(state: &AppState, url: &str, errors: &mut Vec<FieldError>) {
    if let Err(why) = check_webhook_url(url, &state.webhooks().allow_hosts) {
        errors.push(FieldError { field: "url".into(), message: why });
    }
}

fn no_webhook(id: &str) -> Problem {
    Problem::not_found(format!("no webhook with id {}", quote(id)))
}

fn parse_id(id: &str) -> Result<i64, Problem> {
    id.parse::<i64>().map_err(|_| no_webhook(id))
}

/// The answer to a change refused or not found.
fn refused<T>(state: &AppState, id: i64, m: Managed<T>) -> Result<T, Problem> {
    match m {
        Managed::Done(v) => Ok(v),
        Managed::NotFound => Err(no_webhook(&id.to_string())),
        Managed::FromConfig { name } => Err(from_config(state, id, &name)),
    }
}

/// The 409 for a change to a subscription the config file declares.
fn from_config(state: &AppState, id: i64, name: &str) -> Problem {
    let file = state.config_file.as_ref().map_or("the config file".to_string(), |p| p.display().to_string());
    Problem::new(
        StatusCode::CONFLICT,
        "config-subscription",
        "The subscription is declared in the config file",
        format!(
            "webhook {id} ({name:?}) is declared in {file} ([[webhooks.subscriptions]]); change it there and reload"
        ),
    )
}

/// Make a subscription for the calling key (or, by an `admin` key, for the
/// key or SMPP account `key` names).
///
/// The answer is the only one that ever shows the signing secret.
#[utoipa::path(
    post, path = "/v1/webhooks", tag = "webhooks",
    request_body = CreateWebhook,
    responses(
        (status = 201, description = "Made; `secret` is shown this once", body = WebhookOut),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks the send or read scope, or names another key without admin", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields, each named (`url`, `events[2]`, `secret`, `key`)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn create_webhook(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Arc<Caller>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    caller.require(&[Scope::Send, Scope::Read])?;
    let req: CreateWebhook = super::body::json_or_empty(&state, body)?;
    let mut errors = Vec::new();
    check_url(&state, &req.url, &mut errors);
    let events = check_events(&req.events, &mut errors);
    if let Some(s) = &req.secret
        && let Err(e) = secret_bytes(s)
    {
        errors.push(FieldError { field: "secret".into(), message: e.to_string() });
    }
    let owner = match req.key {
        Some(key) if key != caller.name => {
            caller.require(&[Scope::Admin])?;
            if !state.key_exists(&key) {
                errors.push(FieldError {
                    field: "key".into(),
                    message: format!("no API key is named {key:?} (nor SMPP account, as \"smpp:<system_id>\")"),
                });
            }
            key
        }
        _ => caller.name.clone(),
    };
    if !errors.is_empty() {
        return Err(Problem::validation(errors));
    }
    let secret = req.secret.unwrap_or_else(new_secret);
    let new = NewSubscription { api_key: owner, url: req.url, events, secret: secret.clone() };
    let view = state.store.create_subscription(new).await?;
    let location = format!("/v1/webhooks/{}", view.id);
    let mut resp = (StatusCode::CREATED, Json(WebhookOut::from_view(view, Some(secret)))).into_response();
    if let Ok(v) = HeaderValue::from_str(&location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    Ok(resp)
}

/// The calling key's subscriptions (every key's for `admin`), with their delivery health.
#[utoipa::path(
    get, path = "/v1/webhooks", tag = "webhooks",
    responses(
        (status = 200, body = WebhookList),
        (status = 403, description = "The key lacks the send or read scope", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn list_webhooks(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Arc<Caller>>,
) -> Result<Json<WebhookList>, Problem> {
    caller.require(&[Scope::Send, Scope::Read])?;
    let views = state.store.subscriptions(caller.owner().map(str::to_string)).await?;
    Ok(Json(WebhookList { webhooks: views.into_iter().map(|v| WebhookOut::from_view(v, None)).collect() }))
}

/// One subscription with its delivery health.
#[utoipa::path(
    get, path = "/v1/webhooks/{id}", tag = "webhooks",
    params(("id" = i64, Path, description = "Webhook id")),
    responses(
        (status = 200, body = WebhookOut),
        (status = 404, description = "No such webhook, or another key's", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn get_webhook(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Arc<Caller>>,
    Path(id): Path<String>,
) -> Result<Json<WebhookOut>, Problem> {
    caller.require(&[Scope::Send, Scope::Read])?;
    let n = parse_id(&id)?;
    let view = state.store.subscription(n, caller.owner().map(str::to_string)).await?.ok_or_else(|| no_webhook(&id))?;
    Ok(Json(WebhookOut::from_view(view, None)))
}

/// Change a subscription's URL or events, or turn it off and on again
/// (`enabled: true` brings back one that a 410 Gone disabled).
#[utoipa::path(
    patch, path = "/v1/webhooks/{id}", tag = "webhooks",
    params(("id" = i64, Path, description = "Webhook id")),
    request_body = PatchWebhook,
    responses(
        (status = 200, body = WebhookOut),
        (status = 404, description = "No such webhook, or another key's", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Declared in the config file: change it there", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields, each named", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn patch_webhook(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Arc<Caller>>,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<WebhookOut>, Problem> {
    caller.require(&[Scope::Send, Scope::Read])?;
    let n = parse_id(&id)?;
    let req: PatchWebhook = super::body::json_or_empty(&state, body)?;
    let owner = caller.owner().map(str::to_string);
    // An origin never changes, so what this read says holds for the write.
    let current = state.store.subscription(n, owner.clone()).await?.ok_or_else(|| no_webhook(&id))?;
    if current.origin == Origin::Config {
        return Err(from_config(&state, n, current.name.as_deref().unwrap_or_default()));
    }
    let mut errors = Vec::new();
    let callback = current.origin == Origin::Callback;
    if let Some(url) = &req.url {
        if callback {
            errors.push(FieldError {
                field: "url".into(),
                message: "a callback subscription posts to each message's callback_url; it has no URL of its own"
                    .into(),
            });
        } else {
            check_url(&state, url, &mut errors);
        }
    }
    let events = req.events.as_ref().map(|e| {
        if callback {
            errors.push(FieldError {
                field: "events".into(),
                message: "a callback subscription carries every message event".into(),
            });
        }
        check_events(e, &mut errors)
    });
    if !errors.is_empty() {
        return Err(Problem::validation(errors));
    }
    let patch = SubscriptionPatch { url: req.url, events, enabled: req.enabled };
    let view = refused(&state, n, state.store.update_subscription(n, owner, patch).await?)?;
    Ok(Json(WebhookOut::from_view(view, None)))
}

/// Delete a subscription; its pending deliveries are never sent.
#[utoipa::path(
    delete, path = "/v1/webhooks/{id}", tag = "webhooks",
    params(("id" = i64, Path, description = "Webhook id")),
    responses(
        (status = 204, description = "Deleted, with its deliveries"),
        (status = 404, description = "No such webhook, or another key's", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Declared in the config file: remove it there", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn delete_webhook(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Arc<Caller>>,
    Path(id): Path<String>,
) -> Result<StatusCode, Problem> {
    caller.require(&[Scope::Send, Scope::Read])?;
    let n = parse_id(&id)?;
    refused(&state, n, state.store.delete_subscription(n, caller.owner().map(str::to_string)).await?)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Make a new signing secret. It signs every delivery from now on; the
/// old ones sign beside it for `expire_old_after_secs` (so a receiver can
/// switch without losing one delivery). The answer shows the new secret, once.
#[utoipa::path(
    post, path = "/v1/webhooks/{id}/rotate", tag = "webhooks",
    params(("id" = i64, Path, description = "Webhook id")),
    request_body(content = RotateRequest, description = "Optional; `{}` keeps the old secrets for a day"),
    responses(
        (status = 200, description = "Rotated; `secret` is shown this once", body = WebhookOut),
        (status = 404, description = "No such webhook, or another key's", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Declared in the config file: change the secret there", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn rotate_webhook(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Arc<Caller>>,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<WebhookOut>, Problem> {
    caller.require(&[Scope::Send, Scope::Read])?;
    let n = parse_id(&id)?;
    let req: RotateRequest = super::body::json_or_empty(&state, body)?;
    let secs = req.expire_old_after_secs.unwrap_or(DEFAULT_EXPIRE_OLD_SECS);
    if secs > MAX_EXPIRE_OLD_SECS {
        return Err(Problem::field(
            "expire_old_after_secs",
            format!("{secs} is more than {MAX_EXPIRE_OLD_SECS} seconds (30 days)"),
        ));
    }
    let secret = new_secret();
    let owner = caller.owner().map(str::to_string);
    let rotated = state.store.rotate_subscription_secret(n, owner, secret.clone(), secs as i64 * 1000).await?;
    let view = refused(&state, n, rotated)?;
    Ok(Json(WebhookOut::from_view(view, Some(secret))))
}

/// An event id as `evt_<id>` (or the bare number).
fn event_number(s: &str) -> Option<i64> {
    s.strip_prefix("evt_").unwrap_or(s).parse().ok()
}

/// A subscription's deliveries, newest event first, each with every attempt.
#[utoipa::path(
    get, path = "/v1/webhooks/{id}/deliveries", tag = "webhooks",
    params(("id" = i64, Path, description = "Webhook id"), DeliveryParams),
    responses(
        (status = 200, body = DeliveryList),
        (status = 404, description = "No such webhook, or another key's", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn list_deliveries(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Arc<Caller>>,
    Path(id): Path<String>,
    Query(p): Query<DeliveryParams>,
) -> Result<Json<DeliveryList>, Problem> {
    caller.require(&[Scope::Send, Scope::Read])?;
    let n = parse_id(&id)?;
    let mut errors = Vec::new();
    let mut bad = |f: &str, m: String| errors.push(FieldError { field: f.into(), message: m });
    let mut filter = DeliveryFilter { state: None, before_event: None, limit: 50 };
    if let Some(s) = &p.state {
        match DeliveryState::parse(s) {
            Some(s) => filter.state = Some(s),
            None => bad("state", format!("{} is not pending, done, dead or disabled", quote(s))),
        }
    }
    if let Some(l) = &p.limit {
        match l.parse::<usize>() {
            Ok(l) if (1..=500).contains(&l) => filter.limit = l,
            _ => bad("limit", format!("{} is not a number from 1 to 500", quote(l))),
        }
    }
    if let Some(b) = &p.before {
        match event_number(b) {
            Some(e) => filter.before_event = Some(e),
            None => bad("before", format!("{} is not an event id (evt_<number>)", quote(b))),
        }
    }
    if !errors.is_empty() {
        return Err(Problem::validation(errors));
    }
    let limit = filter.limit;
    let list = state
        .store
        .subscription_deliveries(n, caller.owner().map(str::to_string), filter)
        .await?
        .ok_or_else(|| no_webhook(&id))?;
    let next_before = if list.len() == limit { list.last().map(|d| format!("evt_{}", d.event_id)) } else { None };
    Ok(Json(DeliveryList { deliveries: list.into_iter().map(DeliveryOut::from).collect(), next_before }))
}

/// Send finished deliveries (done, dead or disabled) again: one event's, or
/// those of every event since a time. They are due now, with a fresh retry
/// period; their earlier attempts stay in the log.
#[utoipa::path(
    post, path = "/v1/webhooks/{id}/replay", tag = "webhooks",
    params(("id" = i64, Path, description = "Webhook id")),
    request_body = ReplayRequest,
    responses(
        (status = 200, description = "How many deliveries are pending again", body = Replayed),
        (status = 404, description = "No such webhook (or another key's), or no delivery of that event to it", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn replay_deliveries(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Arc<Caller>>,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Replayed>, Problem> {
    caller.require(&[Scope::Send, Scope::Read])?;
    let n = parse_id(&id)?;
    let req: ReplayRequest = super::body::json_or_empty(&state, body)?;
    let which = match (&req.event_id, &req.since) {
        (Some(_), Some(_)) => return Err(Problem::field("since", "give event_id or since, not both")),
        (None, None) => return Err(Problem::field("event_id", "give event_id (evt_<number>) or since (RFC 3339)")),
        (Some(e), None) => ReplaySelect::Event(
            event_number(e)
                .ok_or_else(|| Problem::field("event_id", format!("{} is not an event id (evt_<number>)", quote(e))))?,
        ),
        (None, Some(t)) => {
            let state = match req.state.as_deref() {
                None => None,
                Some(st) => {
                    Some(DeliveryState::parse(st).filter(|s| *s != DeliveryState::Pending).ok_or_else(|| {
                        Problem::field("state", format!("{} is not dead, done or disabled", quote(st)))
                    })?)
                }
            };
            ReplaySelect::Since(from_datetime(t), state)
        }
    };
    if req.state.is_some() && req.since.is_none() {
        return Err(Problem::field("state", "goes with since, not with one event_id"));
    }
    match state.store.replay_deliveries(n, caller.owner().map(str::to_string), which).await? {
        ReplayOutcome::Replayed(replayed) => Ok(Json(Replayed { replayed })),
        ReplayOutcome::NoSubscription => Err(no_webhook(&id)),
        ReplayOutcome::NoDelivery => Err(Problem::not_found(format!(
            "webhook {n} has no delivery of {}",
            req.event_id.as_deref().map(quote).unwrap_or_default()
        ))),
    }
}
