//! `POST /v1/events`: a service tells smsgw something happened (a cart was
//! abandoned, an order paid). Each event is checked, evaluated against the
//! trigger rules in force (which rules start, each step rendered; which
//! rules it cancels; whose goal it is), and stored with everything it
//! causes in one transaction; the answer (202) comes after the commit.
//! Idempotent by the event's `id`: a retried event creates nothing new and
//! answers its first outcome. Needs the `send` scope.

use super::auth::Caller;
use super::problem::{FieldError, Problem, quote};
use super::{AppState, Limits};
use crate::config::Scope;
use crate::dispatch::Routing;
use crate::message::{Millis, from_datetime, now_ms};
use crate::sms;
use crate::store::{IngestOutcome, NewMessage, NewTriggerEvent, PlannedRun, RunLimit};
use crate::trigger::{EventInput, Per, RuleSet, spec::valid_event_type};
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::sync::Arc;
use utoipa::ToSchema;

/// How far ahead of now an event's `occurred_at` may be.
const MAX_AHEAD_MS: Millis = 24 * 3600 * 1000;
/// Longest `id` and `key`.
const MAX_ID_BYTES: usize = 255;

/// Something that happened, for the trigger rules.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventRequest {
    /// Your id for the event: the same id again creates nothing new.
    #[serde(default)]
    pub id: Option<String>,
    /// The event type (`cart.abandoned`), what rules start and cancel on.
    #[serde(rename = "type")]
    pub kind: String,
    /// The person's number (E.164 or national, read with the default region).
    pub recipient: String,
    /// What the event is about (a cart, an order): `cancel_on` events cancel
    /// pending steps of the same key, limits may count per key.
    #[serde(default)]
    pub key: Option<String>,
    /// The recipient's IANA time zone (`Asia/Yekaterinburg`).
    #[serde(default)]
    pub tz: Option<String>,
    /// The recipient's locale for templates (default `ru`).
    #[serde(default)]
    pub locale: Option<String>,
    /// Template variables and what conditions look at.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub data: Option<serde_json::Value>,
    /// When it happened (RFC 3339; default now): delays count from here.
    #[serde(default)]
    pub occurred_at: Option<DateTime<Utc>>,
}

/// Up to `server.max_batch` events in one request.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventBatch {
    pub events: Vec<EventRequest>,
}

/// What became of one rule an event started.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RunOut {
    pub rule: String,
    /// `scheduled`, `limited`, `cancelled` or `error`.
    pub outcome: String,
    /// Why, when not scheduled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The messages scheduled (ids for `/v1/messages/{id}`).
    pub messages: Vec<i64>,
}

/// What became of one event.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EventOut {
    /// Your id, as given.
    pub id: Option<String>,
    /// smsgw's id for it.
    pub event_id: i64,
    /// True when the id was posted before: nothing new was made.
    pub duplicate: bool,
    pub runs: Vec<RunOut>,
    /// Pending messages this event cancelled.
    pub cancelled: Vec<i64>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EventsOut {
    pub events: Vec<EventOut>,
}

/// Check every event (a 422 naming each wrong field, `events[3].recipient`)
/// and plan what the rules make of it.
pub fn plan(
    reqs: &[(String, EventRequest)],
    limits: &Limits,
    rules: &RuleSet,
    routing: &Routing,
    default_tz: chrono_tz::Tz,
    now: Millis,
) -> Result<Vec<NewTriggerEvent>, Problem> {
    let mut errors = Vec::new();
    let mut out = Vec::new();
    for (prefix, r) in reqs {
        let before = errors.len();
        let mut bad =
            |field: &str, message: String| errors.push(FieldError { field: format!("{prefix}{field}"), message });
        if let Some(id) = &r.id
            && (id.is_empty() || id.len() > MAX_ID_BYTES)
        {
            bad("id", format!("must be 1 to {MAX_ID_BYTES} bytes"));
        }
        if !valid_event_type(&r.kind) {
            bad("type", format!("{} is not an event type (1 to 128 visible characters, no spaces)", quote(&r.kind)));
        }
        if let Some(k) = &r.key
            && (k.is_empty() || k.len() > MAX_ID_BYTES)
        {
            bad("key", format!("must be 1 to {MAX_ID_BYTES} bytes"));
        }
        let recipient = if r.recipient.len() > 64 {
            bad("recipient", format!("{} is not a phone number: too long", quote(&r.recipient)));
            None
        } else {
            match sms::normalise(&r.recipient, &limits.default_region) {
                Ok(n) => Some(n),
                Err(e) => {
                    bad("recipient", e.to_string());
                    None
                }
            }
        };
        let tz = match &r.tz {
            None => None,
            Some(name) => match name.parse::<chrono_tz::Tz>() {
                Ok(tz) => Some(tz),
                Err(_) => {
                    bad("tz", format!("{} is not an IANA time zone such as \"Europe/Moscow\"", quote(name)));
                    None
                }
            },
        };
        let locale = r.locale.clone().unwrap_or_else(|| "ru".to_string());
        if locale.is_empty()
            || locale.len() > 16
            || !locale.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            bad("locale", format!("{} is not a locale such as \"ru\" or \"en-US\"", quote(&locale)));
        }
        let data = r.data.clone().unwrap_or_else(|| serde_json::json!({}));
        if !data.is_object() {
            bad("data", "must be an object".into());
        }
        let occurred_at = r.occurred_at.as_ref().map(from_datetime).unwrap_or(now);
        if occurred_at > now + MAX_AHEAD_MS {
            bad("occurred_at", "is more than a day ahead".into());
        }
        if errors.len() > before {
            continue;
        }
        let Some(recipient) = recipient else { continue };
        // The recipient's zone, resolved once here rather than again on the
        // store's writer thread: the event's, else the number's, else the
        // configured default. Dates render in it and its messages carry it.
        let zone = tz.or_else(|| crate::zone::for_number(&recipient)).unwrap_or(default_tz);
        let eval = rules.evaluate(EventInput { kind: &r.kind, data: &data, locale: &locale, tz: zone });
        let runs = eval
            .starts
            .into_iter()
            .map(|start| {
                let rule = &start.rule;
                let messages = start.steps.and_then(|steps| {
                    steps
                        .into_iter()
                        .map(|s| {
                            let (encoding, segments) = sms::count_parts(&s.text);
                            if segments > limits.max_segments {
                                return Err(format!(
                                    "step {}: the text needs {segments} segments as {}; the limit is {}",
                                    s.step + 1,
                                    encoding.as_str(),
                                    limits.max_segments
                                ));
                            }
                            let route = routing
                                .resolve(&recipient, s.route.as_deref())
                                .map_err(|e| format!("step {}: {e}", s.step + 1))?;
                            let send_at = occurred_at + s.after_ms;
                            Ok((
                                s.step,
                                NewMessage {
                                    to: recipient.clone(),
                                    from: rule.spec.from.clone(),
                                    text: s.text,
                                    encoding,
                                    segments: segments as u32,
                                    priority: s.class,
                                    route,
                                    reference: None,
                                    send_at: Some(send_at),
                                    valid_until: send_at.max(now) + rule.valid_for_ms,
                                    callback_url: None,
                                    tz: Some(zone.name().to_string()),
                                    receipt: None,
                                    via: None,
                                },
                            ))
                        })
                        .collect()
                });
                PlannedRun {
                    rule: rule.name().to_string(),
                    limit: rule.limit.map(|l| RunLimit { per_key: l.per == Per::Key, within_ms: l.within_ms }),
                    cancel_on: rule.cancel_on.clone(),
                    messages,
                }
            })
            .collect();
        out.push(NewTriggerEvent {
            ext_id: r.id.clone(),
            kind: r.kind.clone(),
            recipient,
            key: r.key.clone(),
            tz: tz.map(|t| t.name().to_string()),
            locale,
            data: data.to_string(),
            occurred_at,
            runs,
            cancels: eval.cancels,
            goals: eval.goals,
        });
    }
    if errors.is_empty() { Ok(out) } else { Err(Problem::validation(errors)) }
}

/// Post one event, or a batch.
///
/// Each event is evaluated against the trigger rules in force: the rules it
/// starts schedule their steps as queued messages (due after each step's
/// delay), the rules that cancel on it cancel their pending steps for the
/// same `key`. The answer (202) comes after everything is committed.
#[utoipa::path(
    post, path = "/v1/events", tag = "events",
    request_body(content = EventRequest, description = "One event, or `{\"events\": [...]}` (EventBatch)"),
    responses(
        (status = 202, description = "Stored, with what the rules made of each event", body = EventsOut),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or unknown API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks the send scope", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields, each named", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The store cannot take it now", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn post_events(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Arc<Caller>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    caller.require(&[Scope::Send])?;
    let body = super::body::bytes(&state, body)?;
    let value: serde_json::Value = serde_json::from_slice(&body).map_err(|e| Problem::bad_json(e.to_string()))?;
    let limits = state.limits();
    let reqs: Vec<(String, EventRequest)> = if value.get("events").is_some() {
        let b: EventBatch = serde_path_to_error::deserialize(value).map_err(super::body::field_problem)?;
        if b.events.is_empty() {
            return Err(Problem::field("events", "needs at least one event"));
        }
        if b.events.len() > limits.max_batch {
            return Err(Problem::field(
                "events",
                format!("{} events in one batch; the limit is {}", b.events.len(), limits.max_batch),
            ));
        }
        b.events.into_iter().enumerate().map(|(i, e)| (format!("events[{i}]."), e)).collect()
    } else {
        let e: EventRequest = serde_path_to_error::deserialize(value).map_err(super::body::field_problem)?;
        vec![(String::new(), e)]
    };
    let ids: Vec<Option<String>> = reqs.iter().map(|(_, r)| r.id.clone()).collect();
    let events = plan(
        &reqs,
        &limits,
        &state.dispatcher.rules(),
        &state.dispatcher.routing(),
        state.dispatcher.policy().default_tz,
        now_ms(),
    )?;
    let routes: BTreeSet<String> = events
        .iter()
        .flat_map(|e| e.runs.iter())
        .filter_map(|r| r.messages.as_ref().ok())
        .flat_map(|m| m.iter().map(|(_, m)| m.route.clone()))
        .collect();
    let outcomes = state.store.ingest_events(caller.name.clone(), events, state.dispatcher.policy()).await?;
    for r in &routes {
        state.dispatcher.wake(r);
    }
    let events = ids.into_iter().zip(outcomes).map(|(id, o)| event_out(id, o)).collect();
    Ok((StatusCode::ACCEPTED, Json(EventsOut { events })).into_response())
}

fn event_out(id: Option<String>, o: IngestOutcome) -> EventOut {
    EventOut {
        id,
        event_id: o.event_id,
        duplicate: o.duplicate,
        runs: o
            .runs
            .into_iter()
            .map(|r| RunOut { rule: r.rule, outcome: r.outcome, detail: r.detail, messages: r.messages })
            .collect(),
        cancelled: o.cancelled,
    }
}
