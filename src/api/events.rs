//! `POST /v1/events`: a service's events (one, or a batch) in; the trigger
//! rules evaluated on them; events, runs and scheduled messages committed
//! together before the 202. An event with an `id` the key already posted
//! is a replay: its first outcome comes back and nothing new is made.

use super::AppState;
use super::auth::Caller;
use super::body;
use super::problem::{FieldError, Problem, quote};
use crate::config::Scope;
use crate::message::{from_datetime, now_ms};
use crate::store::{IngestedEvent, NewMessage, NewRun, NewTriggerEvent};
use crate::trigger::rule::valid_event_type;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeSet;
use std::str::FromStr;
use std::sync::Arc;
use utoipa::ToSchema;

/// Longest `id` and `key`.
const MAX_ID_BYTES: usize = 256;
/// How far ahead of this clock an event's `occurred_at` may be.
const MAX_SKEW_MS: i64 = 86_400_000;

/// One event.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventRequest {
    /// The poster's own id; a second event with it is a replay.
    pub id: Option<String>,
    /// The event type rules start, cancel and convert on (`cart.abandoned`).
    #[serde(rename = "type")]
    pub kind: String,
    /// The number messages go to.
    pub recipient: String,
    /// What ties events of one thing together (a cart, an order): a cancel
    /// event cancels pending steps with the same key.
    pub key: Option<String>,
    /// The recipient's IANA time zone, when known.
    pub tz: Option<String>,
    /// The language texts are formatted for (`ru`, `en`); default `ru`.
    pub locale: Option<String>,
    /// Values templates and conditions read.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub data: Map<String, Value>,
    /// When it happened (RFC 3339); delays count from it. Default: now.
    pub occurred_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventBatch {
    pub events: Vec<EventRequest>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct IngestedBatch {
    pub events: Vec<IngestedEvent>,
}

/// Take events.
///
/// Each event is matched against the enabled rules: the rules it starts
/// schedule their steps (messages due after each step's delay), the rules
/// that cancel on its type lose their pending steps for its key, and the
/// rules whose goal it is count a conversion. The answer comes after the
/// commit and says, per rule, what happened.
#[utoipa::path(
    post, path = "/v1/events", tag = "events",
    request_body(content = EventRequest, description = "One event, or `{\"events\": [...]}` (EventBatch)"),
    responses(
        (status = 202, description = "On disk with what the rules made of it: one IngestedEvent, or IngestedBatch", body = IngestedEvent),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
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
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    caller.require(&[Scope::Send])?;
    let raw = body::bytes(&state, raw)?;
    let value: Value = serde_json::from_slice(&raw).map_err(|e| Problem::bad_json(e.to_string()))?;
    let batch = value.get("events").is_some();
    let (reqs, prefix) = if batch {
        let b: EventBatch = serde_path_to_error::deserialize(value).map_err(body::field_problem)?;
        (b.events, true)
    } else {
        let one: EventRequest = serde_path_to_error::deserialize(value).map_err(body::field_problem)?;
        (vec![one], false)
    };
    let limits = state.limits();
    if reqs.is_empty() {
        return Err(Problem::field("events", "needs at least one event"));
    }
    if reqs.len() > limits.max_batch {
        return Err(Problem::field("events", format!("{} events; the limit is {}", reqs.len(), limits.max_batch)));
    }
    let rules = state.rules();
    let routing = state.dispatcher.routing();
    let now = now_ms();
    let mut errors = Vec::new();
    let mut events = Vec::with_capacity(reqs.len());
    let mut wake = BTreeSet::new();
    for (i, r) in reqs.into_iter().enumerate() {
        let at = if prefix { format!("events[{i}].") } else { String::new() };
        let mut bad = |field: &str, message: String| errors.push(FieldError { field: format!("{at}{field}"), message });
        if !valid_event_type(&r.kind) {
            bad("type", format!("{} is not an event type (1 to 64 printable characters, no spaces)", quote(&r.kind)));
        }
        for (field, v) in [("id", &r.id), ("key", &r.key)] {
            if v.as_ref().is_some_and(|v| v.is_empty() || v.len() > MAX_ID_BYTES) {
                bad(field, format!("must be 1 to {MAX_ID_BYTES} bytes"));
            }
        }
        let to = match crate::sms::normalise(&r.recipient, &limits.default_region) {
            Ok(n) => n,
            Err(e) => {
                bad("recipient", e.to_string());
                continue;
            }
        };
        let tz = match r.tz.as_deref().map(chrono_tz::Tz::from_str) {
            None => None,
            Some(Ok(tz)) => Some(tz),
            Some(Err(_)) => {
                bad(
                    "tz",
                    format!(
                        "{} is not an IANA time zone such as \"Europe/Moscow\"",
                        quote(r.tz.as_deref().unwrap_or(""))
                    ),
                );
                continue;
            }
        };
        let locale = r.locale.clone().unwrap_or_else(|| "ru".into());
        if locale.is_empty()
            || locale.len() > 16
            || !locale.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            bad("locale", format!("{} is not a language tag such as \"ru\" or \"en\"", quote(&locale)));
        }
        let occurred_at = r.occurred_at.as_ref().map(from_datetime).unwrap_or(now);
        if occurred_at > now + MAX_SKEW_MS {
            bad("occurred_at", "is more than a day ahead of this gateway's clock".into());
        }
        let data = Value::Object(r.data);
        let eval = rules.evaluate(&r.kind, &data, &locale, tz.unwrap_or(chrono_tz::UTC));
        let starts = eval
            .starts
            .into_iter()
            .map(|s| {
                let rule = &s.rule;
                let messages = s.texts.and_then(|texts| {
                    texts
                        .into_iter()
                        .zip(&rule.steps)
                        .enumerate()
                        .map(|(n, (text, step))| {
                            let (encoding, segments) = crate::sms::count_parts(&text);
                            if segments > limits.max_segments {
                                return Err(format!(
                                    "step {}: the text needs {segments} segments as {}; the limit is {}",
                                    n + 1,
                                    encoding.as_str(),
                                    limits.max_segments
                                ));
                            }
                            let route = routing
                                .resolve(&to, rule.spec.route.as_deref())
                                .map_err(|e| format!("step {}: {e}", n + 1))?;
                            let due = occurred_at + step.after;
                            if due <= now {
                                wake.insert(route.clone());
                            }
                            Ok(NewMessage {
                                to: to.clone(),
                                from: rule.spec.from.clone(),
                                text,
                                encoding,
                                segments: segments as u32,
                                priority: step.class,
                                route,
                                reference: r.key.clone(),
                                send_at: Some(due),
                                valid_until: due + rule.valid_for,
                                callback_url: None,
                                tz: r.tz.clone(),
                            })
                        })
                        .collect()
                });
                NewRun { rule: rule.spec.name.clone(), limit: rule.limit, cancelled_by: rule.cancels.clone(), messages }
            })
            .collect();
        events.push(NewTriggerEvent {
            ext_id: r.id,
            kind: r.kind,
            recipient: to,
            key: r.key,
            tz: r.tz,
            locale,
            data: data.to_string(),
            occurred_at,
            starts,
            cancels: eval.cancels,
            goals: eval.goals,
        });
    }
    if !errors.is_empty() {
        return Err(Problem::validation(errors));
    }
    let ingested = state.store.ingest(caller.name.clone(), events, state.dispatcher.policy()).await?;
    for route in wake {
        state.dispatcher.wake(&route);
    }
    Ok(if batch {
        (StatusCode::ACCEPTED, Json(IngestedBatch { events: ingested })).into_response()
    } else {
        (StatusCode::ACCEPTED, Json(ingested.into_iter().next())).into_response()
    })
}
