//! `/v1/messages`: accept one message or a batch (validated whole before
//! anything is written), read one message's story, list, and cancel.
//! Sending and cancelling need the `send` scope, reading needs `read`; a
//! key without `admin` sees and cancels only its own messages (another
//! key's are "not found", so ids cannot be probed).

use super::auth::Caller;
use super::problem::{FieldError, Problem, quote};
use super::{AppState, Limits};
use crate::config::Scope;
use crate::dispatch::RouteError;
use crate::message::{Priority, Status, from_datetime, now_ms, to_rfc3339, utc_day_start};
use crate::sms;
use crate::store::{CancelOutcome, EnqueueOutcome, IdemKey, ListFilter, MessageView, NewMessage};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::sync::Arc;
use utoipa::ToSchema;

/// One recipient, or several (each becomes a message of its own).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(untagged, expecting = "a phone number as a string, or a list of them")]
pub enum Recipients {
    One(String),
    Many(Vec<String>),
}

/// A message to send.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MessageRequest {
    /// E.164 or a national number (read with the configured default region).
    pub to: Recipients,
    /// The text; GSM 7-bit when every character allows it, else UCS-2.
    pub text: String,
    /// Sender: up to 11 letters/digits, or a number.
    #[serde(default)]
    pub from: Option<String>,
    #[serde(default)]
    pub priority: Option<Priority>,
    /// Not before this time (RFC 3339).
    #[serde(default)]
    pub send_at: Option<DateTime<Utc>>,
    /// Give up after this time (RFC 3339).
    #[serde(default)]
    pub valid_until: Option<DateTime<Utc>>,
    /// A route by name instead of choosing by prefix.
    #[serde(default)]
    pub route: Option<String>,
    /// Your own reference, returned as is.
    #[serde(default)]
    pub reference: Option<String>,
    /// An http(s) URL this message's events (submitted, delivered, failed...)
    /// are posted to, signed with the key's callback secret (see
    /// `/v1/webhooks`); checked like a webhook URL.
    #[serde(default)]
    pub callback_url: Option<String>,
    /// The recipient's IANA time zone ("Asia/Vladivostok"), which quiet
    /// hours are kept in; by default the zone the number tells, else the
    /// site's `[policy] default_tz`.
    #[serde(default)]
    pub tz: Option<String>,
}

/// Up to `server.max_batch` messages in one request.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    pub messages: Vec<MessageRequest>,
}

/// What was accepted for one message.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AcceptedOut {
    pub id: i64,
    pub to: String,
    /// `queued`, or `suppressed` when policy stopped it (it is never sent).
    pub status: Status,
    /// "gsm7" or "ucs2".
    pub encoding: String,
    pub segments: u32,
    /// Why it was suppressed: `opted_out` or `no_consent` (see the
    /// message's `error` for which opt-out or what consent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AcceptedBatch {
    pub messages: Vec<AcceptedOut>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorOut {
    pub code: String,
    pub text: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PartOut {
    pub index: u32,
    pub route: String,
    pub remote_id: Option<String>,
    pub status: String,
    pub error: Option<ErrorOut>,
    pub submitted_at: String,
    pub done_at: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct HistoryOut {
    pub at: String,
    pub status: Status,
    pub detail: Option<String>,
}

/// A message and everything that happened to it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MessageOut {
    pub id: i64,
    pub to: String,
    pub from: Option<String>,
    pub text: String,
    pub priority: Priority,
    pub status: Status,
    pub route: String,
    pub encoding: String,
    pub segments: u32,
    pub reference: Option<String>,
    /// Where this message's events are posted, if it asked.
    pub callback_url: Option<String>,
    /// The recipient's time zone its quiet hours are kept in.
    pub tz: Option<String>,
    /// Only on smsgw's own answers (help texts, opt-out confirmations):
    /// the address the question came to, which the answer is to leave
    /// from while it stays on its route: a SIM's number (or its IMSI when
    /// the number is unknown) on a modem route, the number dialled (a short
    /// code) on a carrier route. A modem pool sends through another SIM
    /// when that one cannot send in time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
    /// The name of the API key that submitted it.
    pub api_key: String,
    /// Set when a trigger rule made it (`POST /v1/events`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trigger: Option<TriggerOut>,
    pub attempts: u32,
    pub created_at: String,
    pub updated_at: String,
    pub send_at: Option<String>,
    pub valid_until: Option<String>,
    pub error: Option<ErrorOut>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parts: Option<Vec<PartOut>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history: Option<Vec<HistoryOut>>,
}

/// The trigger rule that made a message.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TriggerOut {
    pub rule: String,
    /// 1-based.
    pub step: u32,
    /// The event's key.
    pub key: Option<String>,
    /// The event type that cancelled it, if one did.
    pub cancelled_by: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MessageList {
    pub messages: Vec<MessageOut>,
    /// Pass as `cursor` for the next (older) page; absent on the last page.
    pub next_cursor: Option<String>,
}

fn error_out(code: Option<String>, text: Option<String>) -> Option<ErrorOut> {
    code.map(|code| ErrorOut { code, text })
}

impl MessageOut {
    /// The JSON of a message; `detailed` adds its parts and history (as
    /// `GET /v1/messages/{id}` shows them).
    pub fn from_view(v: MessageView, detailed: bool) -> MessageOut {
        let parts = detailed.then(|| {
            v.parts
                .into_iter()
                .map(|p| PartOut {
                    index: p.index,
                    route: p.route,
                    remote_id: p.remote_id,
                    status: p.status,
                    error: error_out(p.error_code, p.error_text),
                    submitted_at: to_rfc3339(p.submitted_at),
                    done_at: p.done_at.map(to_rfc3339),
                })
                .collect()
        });
        let history = detailed.then(|| {
            v.history
                .into_iter()
                .map(|h| HistoryOut { at: to_rfc3339(h.at), status: h.status, detail: h.detail })
                .collect()
        });
        MessageOut {
            id: v.id,
            to: v.to,
            from: v.from,
            text: v.text,
            priority: v.priority,
            status: v.status,
            route: v.route,
            encoding: v.encoding,
            segments: v.segments,
            reference: v.reference,
            callback_url: v.callback_url,
            tz: v.tz,
            via: v.via,
            api_key: v.api_key,
            trigger: v.trigger.map(|t| TriggerOut {
                rule: t.rule,
                step: t.step,
                key: t.key,
                cancelled_by: t.cancelled_by,
            }),
            attempts: v.attempts,
            created_at: to_rfc3339(v.created_at),
            updated_at: to_rfc3339(v.updated_at),
            send_at: v.send_at.map(to_rfc3339),
            valid_until: v.valid_until.map(to_rfc3339),
            error: error_out(v.error_code, v.error_text),
            parts,
            history,
        }
    }
}

/// How far ahead `send_at` and `valid_until` may be.
const MAX_AHEAD_MS: i64 = 366 * 24 * 3600 * 1000;
/// Longest `to` read as a phone number.
const MAX_NUMBER_BYTES: usize = 64;

/// A `POST /v1/messages` body, validated: the messages to store and the routes they go to.
#[derive(Debug)]
pub struct Validated {
    pub messages: Vec<NewMessage>,
    pub routes: BTreeSet<String>,
    /// The body was one message object to one number: answer with one object, not a list.
    pub single_object: bool,
}

/// Read and validate a `POST /v1/messages` body: a 400 when it is not JSON, else a 422 naming
/// every field that is wrong (`messages[3].to`), else the messages. `resolve` chooses a message's
/// route from its E.164 number and the route it asks for, as [`Routing::resolve`] does;
/// `allow_hosts` is `webhooks.allow_hosts`, which a `callback_url` must pass.
///
/// [`Routing::resolve`]: crate::dispatch::Routing::resolve
pub fn validate(
    body: &[u8],
    limits: &Limits,
    allow_hosts: &[String],
    resolve: impl Fn(&str, Option<&str>) -> Result<String, RouteError>,
) -> Result<Validated, Problem> {
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| Problem::bad_json(e.to_string()))?;
    let batch = value.get("messages").is_some();
    let (reqs, single_object) = if batch {
        let b: BatchRequest = serde_path_to_error::deserialize(value).map_err(super::body::field_problem)?;
        if b.messages.is_empty() {
            return Err(Problem::field("messages", "needs at least one message"));
        }
        if b.messages.len() > limits.max_batch {
            return Err(Problem::field(
                "messages",
                format!("{} messages in one batch; the limit is {}", b.messages.len(), limits.max_batch),
            ));
        }
        (b.messages, false)
    } else {
        let m: MessageRequest = serde_path_to_error::deserialize(value).map_err(super::body::field_problem)?;
        let one = matches!(m.to, Recipients::One(_));
        (vec![m], one)
    };
    let labelled: Vec<(String, &MessageRequest)> = reqs
        .iter()
        .enumerate()
        .map(|(i, r)| (if batch { format!("messages[{i}].") } else { String::new() }, r))
        .collect();
    let (messages, routes) = build(limits, allow_hosts, resolve, &labelled)?;
    Ok(Validated { messages, routes, single_object })
}

fn build(
    limits: &Limits,
    allow_hosts: &[String],
    resolve: impl Fn(&str, Option<&str>) -> Result<String, RouteError>,
    reqs: &[(String, &MessageRequest)],
) -> Result<(Vec<NewMessage>, BTreeSet<String>), Problem> {
    let now = now_ms();
    let mut errors = Vec::new();
    let mut out = Vec::new();
    let mut routes = BTreeSet::new();
    let total: usize = reqs
        .iter()
        .map(|(_, r)| match &r.to {
            Recipients::One(_) => 1,
            Recipients::Many(v) => v.len(),
        })
        .sum();
    if total > limits.max_recipients {
        return Err(Problem::field(
            "to",
            format!("{total} recipients in one request; the limit is {}", limits.max_recipients),
        ));
    }
    for (prefix, r) in reqs {
        let mut bad =
            |field: &str, message: String| errors.push(FieldError { field: format!("{prefix}{field}"), message });
        let numbers: Vec<(String, &String)> = match &r.to {
            Recipients::One(n) => vec![("to".to_string(), n)],
            Recipients::Many(v) => {
                if v.is_empty() {
                    bad("to", "needs at least one number".into());
                }
                v.iter().enumerate().map(|(i, n)| (format!("to[{i}]"), n)).collect()
            }
        };
        let (encoding, segments) = sms::count_parts(&r.text);
        if r.text.is_empty() {
            bad("text", "must not be empty".into());
        } else if segments > limits.max_segments {
            bad(
                "text",
                format!("needs {segments} segments as {}; the limit is {}", encoding.as_str(), limits.max_segments),
            );
        }
        if let Some(from) = &r.from
            && let Err(why) = crate::message::check_sender(from)
        {
            bad("from", format!("{}: {why}", quote(from)));
        }
        if let Some(reference) = &r.reference
            && reference.len() > 256
        {
            bad("reference", format!("at most 256 bytes; this one has {}", reference.len()));
        }
        if let Some(url) = &r.callback_url
            && let Err(why) = super::check_webhook_url(url, allow_hosts)
        {
            bad("callback_url", why);
        }
        if let Some(tz) = &r.tz
            && tz.parse::<chrono_tz::Tz>().is_err()
        {
            bad("tz", format!("{} is not an IANA time zone name (like \"Europe/Moscow\")", quote(tz)));
        }
        let send_at = r.send_at.as_ref().map(from_datetime);
        if send_at.is_some_and(|t| t > now + MAX_AHEAD_MS) {
            bad("send_at", "at most a year ahead".into());
        }
        let start = send_at.unwrap_or(now).max(now);
        let valid_until = match r.valid_until.as_ref().map(from_datetime) {
            Some(v) if v <= now => {
                bad("valid_until", "is already in the past".into());
                v
            }
            Some(v) if v <= start => {
                bad("valid_until", "must be after send_at".into());
                v
            }
            Some(v) if v > start + MAX_AHEAD_MS => {
                bad("valid_until", "at most a year after send_at (or now)".into());
                v
            }
            Some(v) => v,
            None => start + limits.default_validity_ms,
        };
        let priority = r.priority.unwrap_or(Priority::Transactional);
        for (field, raw) in numbers {
            // Longer than any number written with spaces and dashes: refused
            // before parsing, and not quoted back whole.
            if raw.len() > MAX_NUMBER_BYTES {
                bad(&field, format!("{} is not a phone number: too long", quote(raw)));
                continue;
            }
            let e164 = match sms::normalise(raw, &limits.default_region) {
                Ok(n) => n,
                Err(e) => {
                    bad(&field, e.to_string());
                    continue;
                }
            };
            let route = match resolve(&e164, r.route.as_deref()) {
                Ok(route) => route,
                Err(e) => {
                    let f = if r.route.is_some() { "route" } else { field.as_str() };
                    bad(f, e.to_string());
                    continue;
                }
            };
            routes.insert(route.clone());
            out.push(NewMessage {
                to: e164,
                from: r.from.clone(),
                text: r.text.clone(),
                encoding,
                segments: segments as u32,
                priority,
                route,
                reference: r.reference.clone(),
                send_at,
                valid_until,
                callback_url: r.callback_url.clone(),
                tz: r.tz.clone(),
                receipt: None,
                via: None,
            });
        }
    }
    if errors.is_empty() { Ok((out, routes)) } else { Err(Problem::validation(errors)) }
}

/// Accept a message or a batch.
///
/// The answer (202) comes only after every message is committed to disk. With
/// an `Idempotency-Key` header, a retry with the same body returns the first
/// answer and creates nothing; the same key with another body is a 409.
#[utoipa::path(
    post, path = "/v1/messages", tag = "messages",
    request_body(content = MessageRequest, description = "One message, or `{\"messages\": [...]}` (BatchRequest)"),
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe: same key + same body = same answer")),
    responses(
        (status = 202, description = "Accepted and on disk: one AcceptedOut for a single message to one number, else AcceptedBatch", body = AcceptedOut),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or unknown API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks the send scope", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Idempotency key reused with another body", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields, each named", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Over the key's rate limit or daily quota (nothing written); `Retry-After` says when to try again", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The store cannot take it now", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn post_messages(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Arc<Caller>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    caller.require(&[Scope::Send])?;
    let key_name = caller.name.clone();
    let body = super::body::bytes(&state, body)?;
    let routing = state.dispatcher.routing();
    let hooks = state.webhooks();
    let built = validate(&body, &state.limits(), &hooks.allow_hosts, |to, asked| routing.resolve(to, asked))?;

    let idem = match headers.get("idempotency-key") {
        None => None,
        Some(v) => {
            let key = v
                .to_str()
                .ok()
                .filter(|k| !k.is_empty() && k.len() <= 255)
                .ok_or_else(|| Problem::field("Idempotency-Key", "must be 1 to 255 visible ASCII characters"))?;
            Some(IdemKey { key: key.to_string(), body_hash: Sha256::digest(&body).to_vec() })
        }
    };
    let replay = idem.is_some();
    let asked = built.messages.len();
    let outcome = state
        .store
        .enqueue(key_name.clone(), idem, built.messages, caller.daily_quota, state.dispatcher.policy())
        .await?;
    let (accepted, replayed) = match outcome {
        EnqueueOutcome::Created(a) => (a, false),
        EnqueueOutcome::Replayed(a) => (a, true),
        EnqueueOutcome::OverQuota { used } => return Err(over_quota(&caller, used, asked)),
        EnqueueOutcome::Conflict => {
            return Err(Problem::new(
                StatusCode::CONFLICT,
                "idempotency-conflict",
                "Idempotency key reused",
                "this Idempotency-Key was already used with a different body",
            ));
        }
    };
    if !replayed {
        metrics::counter!(crate::metrics::ACCEPTED, "api_key" => key_name).increment(accepted.len() as u64);
        for r in &built.routes {
            state.dispatcher.wake(r);
        }
    }
    let out: Vec<AcceptedOut> = accepted
        .into_iter()
        .map(|a| AcceptedOut {
            id: a.id,
            to: a.to,
            status: a.status,
            encoding: a.encoding,
            segments: a.segments,
            reason: a.reason,
        })
        .collect();
    let mut resp = if built.single_object && out.len() == 1 {
        (StatusCode::ACCEPTED, Json(out.into_iter().next())).into_response()
    } else {
        (StatusCode::ACCEPTED, Json(AcceptedBatch { messages: out })).into_response()
    };
    if replay {
        let v = if replayed { "true" } else { "false" };
        resp.headers_mut().insert("idempotent-replayed", axum::http::HeaderValue::from_static(v));
    }
    Ok(resp)
}

/// The 429 for a request that would take `caller` past its daily quota:
/// how much is used, and `Retry-After` until the quota resets at midnight UTC.
fn over_quota(caller: &Caller, used: u64, asked: usize) -> Problem {
    metrics::counter!(crate::metrics::KEY_REFUSED, "api_key" => caller.name.clone(), "reason" => "quota_exceeded")
        .increment(1);
    let now = now_ms();
    let midnight = utc_day_start(now) + 86_400_000;
    Problem::too_many(
        "quota-exceeded",
        format!(
            "API key {:?} has sent {used} of its daily quota of {} messages today (UTC); this request has {asked}, \
             so none was accepted; the quota resets at {}",
            caller.name,
            caller.daily_quota.unwrap_or_default(),
            to_rfc3339(midnight)
        ),
        std::time::Duration::from_millis((midnight - now).max(0) as u64),
    )
}

fn parse_id(id: &str) -> Result<i64, Problem> {
    id.parse::<i64>().map_err(|_| Problem::not_found(format!("no message with id {}", quote(id))))
}

/// A message with its parts and full history.
#[utoipa::path(
    get, path = "/v1/messages/{id}", tag = "messages",
    params(("id" = i64, Path, description = "Message id")),
    responses(
        (status = 200, body = MessageOut),
        (status = 403, description = "The key lacks the read scope", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such message, or another key's", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn get_message(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Arc<Caller>>,
    Path(id): Path<String>,
) -> Result<Json<MessageOut>, Problem> {
    caller.require(&[Scope::Read])?;
    let id = parse_id(&id)?;
    visible(&caller, state.store.get(id).await?)
        .map(|v| Json(MessageOut::from_view(v, true)))
        .ok_or_else(|| Problem::not_found(format!("no message with id {id}")))
}

/// The message, if `caller` may see it.
fn visible(caller: &Caller, v: Option<MessageView>) -> Option<MessageView> {
    v.filter(|v| caller.owner().is_none_or(|o| o == v.api_key))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct ListParams {
    /// Only messages in this status.
    pub status: Option<String>,
    /// Only messages to this number.
    pub to: Option<String>,
    /// Only messages created at or after this time (RFC 3339).
    pub since: Option<String>,
    /// Only messages this trigger rule made.
    pub rule: Option<String>,
    /// Only messages of this class: `otp`, `transactional` or `promotional`.
    pub priority: Option<String>,
    /// Only messages for this route.
    pub route: Option<String>,
    /// Page size, 1 to 1000 (default 100).
    pub limit: Option<String>,
    /// `next_cursor` from the previous page.
    pub cursor: Option<String>,
}

/// Messages, newest first, with cursor pagination.
#[utoipa::path(
    get, path = "/v1/messages", tag = "messages",
    params(ListParams),
    responses(
        (status = 200, description = "Every key's messages for admin, else the key's own", body = MessageList),
        (status = 403, description = "The key lacks the read scope", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn list_messages(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Arc<Caller>>,
    Query(p): Query<ListParams>,
) -> Result<Json<MessageList>, Problem> {
    caller.require(&[Scope::Read])?;
    let mut errors = Vec::new();
    let mut bad = |f: &str, m: String| errors.push(FieldError { field: f.into(), message: m });
    let mut filter = ListFilter { limit: 100, api_key: caller.owner().map(str::to_string), ..Default::default() };
    if let Some(s) = &p.status {
        match Status::parse(s) {
            Some(s) => filter.status = Some(s),
            None => bad("status", format!("{} is not a status", quote(s))),
        }
    }
    if let Some(to) = &p.to {
        match sms::normalise(to, &state.limits().default_region) {
            Ok(n) => filter.recipient = Some(n),
            Err(e) => bad("to", e.to_string()),
        }
    }
    if let Some(since) = &p.since {
        match DateTime::parse_from_rfc3339(since) {
            Ok(t) => filter.since = Some(t.timestamp_millis()),
            Err(e) => bad("since", format!("{} is not an RFC 3339 time: {e}", quote(since))),
        }
    }
    filter.rule = p.rule.clone();
    if let Some(c) = &p.priority {
        match class_named(c) {
            Ok(c) => filter.priority = Some(c),
            Err(e) => bad("priority", e),
        }
    }
    if let Some(r) = &p.route {
        match route_named(&state, r) {
            Ok(()) => filter.route = Some(r.clone()),
            Err(e) => bad("route", e),
        }
    }
    if let Some(l) = &p.limit {
        match l.parse::<usize>() {
            Ok(n) if (1..=1000).contains(&n) => filter.limit = n,
            _ => bad("limit", format!("{} is not a number from 1 to 1000", quote(l))),
        }
    }
    if let Some(c) = &p.cursor {
        match c.parse::<i64>() {
            Ok(n) => filter.before_id = Some(n),
            Err(_) => bad("cursor", format!("{} is not a cursor from a previous page", quote(c))),
        }
    }
    if !errors.is_empty() {
        return Err(Problem::validation(errors));
    }
    let limit = filter.limit;
    let views = state.store.list(filter).await?;
    let next_cursor = if views.len() == limit { views.last().map(|v| v.id.to_string()) } else { None };
    Ok(Json(MessageList {
        messages: views.into_iter().map(|v| MessageOut::from_view(v, false)).collect(),
        next_cursor,
    }))
}

/// A message class by its name, or why not.
fn class_named(s: &str) -> Result<Priority, String> {
    Priority::ALL
        .into_iter()
        .find(|c| c.as_str() == s)
        .ok_or_else(|| format!("{} is not a class; the classes are otp, transactional and promotional", quote(s)))
}

/// A configured route's name, or why not.
fn route_named(state: &AppState, name: &str) -> Result<(), String> {
    if state.dispatcher.routing().contains(name) {
        Ok(())
    } else {
        Err(format!("no route named {name:?} is configured"))
    }
}

/// Cancel a message that has not been handed to a route yet.
#[utoipa::path(
    post, path = "/v1/messages/{id}/cancel", tag = "messages",
    params(("id" = i64, Path, description = "Message id")),
    responses(
        (status = 200, description = "Cancelled", body = MessageOut),
        (status = 403, description = "The key lacks the send scope", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such message, or another key's", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Already handed to a route or finished; `current_status` says where it is", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn cancel_message(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Arc<Caller>>,
    Path(id): Path<String>,
) -> Result<Json<MessageOut>, Problem> {
    caller.require(&[Scope::Send])?;
    let id = parse_id(&id)?;
    match state.store.cancel(id, caller.owner().map(str::to_string)).await? {
        CancelOutcome::Cancelled => {}
        CancelOutcome::NotFound => return Err(Problem::not_found(format!("no message with id {id}"))),
        CancelOutcome::TooLate(s) => {
            let mut p = Problem::new(
                StatusCode::CONFLICT,
                "not-cancellable",
                "The message can no longer be cancelled",
                format!("message {id} is {}; only queued messages can be cancelled", s.as_str()),
            );
            p.current_status = Some(s);
            return Err(p);
        }
    }
    match state.store.get(id).await? {
        Some(v) => Ok(Json(MessageOut::from_view(v, true))),
        None => Err(Problem::not_found(format!("no message with id {id}"))),
    }
}

/// Which queued messages to cancel at once; at least one field, and every
/// field given must match.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelRequest {
    /// Only the messages this trigger rule made (its scheduled steps).
    pub rule: Option<String>,
    /// Only messages to this number (E.164 or national).
    pub to: Option<String>,
    /// Only messages of this class: `otp`, `transactional` or `promotional`.
    pub priority: Option<String>,
    /// Only messages waiting for this route.
    pub route: Option<String>,
    /// Only this key's messages: for an admin key. Any other key cancels
    /// only its own.
    pub api_key: Option<String>,
}

/// How many messages a bulk cancel took.
#[derive(Debug, Serialize, ToSchema)]
pub struct CancelledCount {
    pub cancelled: usize,
}

/// Cancel every queued message that matches a filter and was accepted
/// before the request: a runaway rule's scheduled steps, a campaign's
/// backlog, one number's queue. Each gets its history row and its
/// `message.cancelled` event, as a single cancel does; a message a route
/// already has is left to finish.
#[utoipa::path(
    post, path = "/v1/messages/cancel", tag = "messages",
    request_body = CancelRequest,
    responses(
        (status = 200, description = "How many were cancelled", body = CancelledCount),
        (status = 403, description = "The key lacks the send scope, or names another key without admin", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "No filter, or a field is wrong; `errors` names it", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn cancel_messages(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Arc<Caller>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<CancelledCount>, Problem> {
    caller.require(&[Scope::Send])?;
    let req: CancelRequest = super::body::json(&super::body::bytes(&state, body)?)?;
    let mut errors = Vec::new();
    let mut bad = |f: &str, m: String| errors.push(FieldError { field: f.into(), message: m });
    let mut filter = crate::store::CancelFilter { rule: req.rule.clone(), ..Default::default() };
    if req.rule.is_none() && req.to.is_none() && req.priority.is_none() && req.route.is_none() && req.api_key.is_none()
    {
        bad("body", "name at least one of rule, to, priority, route, api_key".into());
    }
    if let Some(to) = &req.to {
        match sms::normalise(to, &state.limits().default_region) {
            Ok(n) => filter.recipient = Some(n),
            Err(e) => bad("to", e.to_string()),
        }
    }
    if let Some(c) = &req.priority {
        match class_named(c) {
            Ok(c) => filter.priority = Some(c),
            Err(e) => bad("priority", e),
        }
    }
    if let Some(r) = &req.route {
        match route_named(&state, r) {
            Ok(()) => filter.route = Some(r.clone()),
            Err(e) => bad("route", e),
        }
    }
    match (&req.api_key, caller.owner()) {
        (Some(k), Some(own)) if k != own => {
            return Err(Problem::forbidden(
                "admin",
                format!("API key {own:?} cancels only its own messages; naming key {k:?} needs the admin scope"),
            ));
        }
        (Some(k), _) if !state.key_exists(k) => bad("api_key", format!("no API key or SMPP account named {k:?}")),
        (k, own) => filter.api_key = own.map(str::to_string).or_else(|| k.clone()),
    }
    if !errors.is_empty() {
        return Err(Problem::validation(errors));
    }
    let asked: Vec<String> = [
        req.rule.as_ref().map(|r| format!("rule {r:?}")),
        filter.recipient.as_ref().map(|n| format!("to {n}")),
        filter.priority.map(|p| format!("priority {}", p.as_str())),
        filter.route.as_ref().map(|r| format!("route {r:?}")),
        req.api_key.as_ref().map(|k| format!("key {k:?}")),
    ]
    .into_iter()
    .flatten()
    .collect();
    let detail = format!("cancelled through the API by key {:?} (all queued with {})", caller.name, asked.join(", "));
    let cancelled = state.store.cancel_matching(filter, detail).await?;
    tracing::info!(api_key = %caller.name, cancelled, filter = %asked.join(", "), "bulk cancel");
    Ok(Json(CancelledCount { cancelled }))
}

#[cfg(test)]
mod tests {
    mod props {
        use super::super::*;
        use proptest::prelude::*;
        use serde_json::{Value, json};

        fn limits() -> Limits {
            Limits {
                max_body_bytes: 1 << 20,
                max_batch: 5,
                max_recipients: 8,
                max_segments: 4,
                default_region: "RU".into(),
                default_validity_ms: 86_400_000,
            }
        }

        /// Routes "sim" (everything) and "de" (German numbers only).
        fn resolve(to: &str, asked: Option<&str>) -> Result<String, RouteError> {
            match asked {
                None | Some("sim") => Ok("sim".into()),
                Some("de") if to.starts_with("+49") => Ok("de".into()),
                Some("de") => Err(RouteError::NotServed { route: "de".into(), to: to.into() }),
                Some(other) => Err(RouteError::Unknown(other.into())),
            }
        }

        /// Any JSON value, nested a little, with the field names and values the API knows among them.
        fn json_value() -> impl Strategy<Value = Value> {
            let key = prop::sample::select(vec![
                "to",
                "text",
                "from",
                "priority",
                "send_at",
                "valid_until",
                "route",
                "reference",
                "callback_url",
                "messages",
                "x",
            ]);
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::from),
                any::<i64>().prop_map(Value::from),
                any::<f64>().prop_map(Value::from),
                prop::sample::select(vec![
                    "+79161234567",
                    "8 916 123-45-67",
                    "+4915123456789",
                    "12",
                    "",
                    "otp",
                    "promotional",
                    "sim",
                    "de",
                    "nowhere",
                    "MyShop",
                    "Шоп",
                    "2000-01-01T00:00:00Z",
                    "2999-01-01T00:00:00Z",
                    "Hello",
                    "€{}",
                    "http://10.0.0.5:8080/hook",
                    "ftp://10.0.0.5/hook",
                ])
                .prop_map(Value::from),
                "\\PC{0,200}".prop_map(Value::from),
            ];
            leaf.prop_recursive(3, 40, 6, move |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
                    prop::collection::btree_map(key.clone(), inner, 0..8)
                        .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect())),
                ]
            })
        }

        /// A body the API accepts.
        fn valid_message() -> Value {
            json!({"to": "+79161234567", "text": "Hello", "from": "MyShop", "priority": "otp", "route": "sim", "reference": "r1", "callback_url": "http://10.0.0.5:8080/hook"})
        }

        /// One field made wrong, and the name the answer must give it.
        fn breakage() -> impl Strategy<Value = (&'static str, Value)> {
            prop::sample::select(vec![
                ("to", json!("12")),
                ("to", json!(5)),
                ("to", json!([])),
                ("text", json!("")),
                ("text", json!("x".repeat(1000))),
                ("from", json!("TwelveChars1")),
                ("from", json!("1234567890123456")),
                ("priority", json!("urgent")),
                ("send_at", json!("tomorrow")),
                ("valid_until", json!("2000-01-01T00:00:00Z")),
                ("route", json!("nowhere")),
                ("route", json!("de")),
                ("reference", json!("r".repeat(257))),
                ("callback_url", json!("ftp://10.0.0.5/hook")),
                ("callback_url", json!("http://user:pw@10.0.0.5/hook")),
                ("callback_url", json!("not a url")),
            ])
        }

        /// A key that is empty is still a field the answer names (found by fuzzing).
        #[test]
        fn an_empty_unknown_key_is_named() {
            let one = r#"{"": "x", "to": "+79161234567", "text": "hi"}"#;
            for body in [one.to_string(), format!(r#"{{"messages": [{one}]}}"#)] {
                let p = validate(body.as_bytes(), &limits(), &[], resolve).map(|v| v.messages.len()).unwrap_err();
                assert_eq!(p.status, 422);
                assert!(p.errors.iter().all(|e| !e.field.is_empty()), "{body}: {:?}", p.errors);
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

            /// Any bytes: accepted, or a 400 (not JSON) or a 422 that names each offending field.
            #[test]
            fn any_body_is_accepted_or_answered_with_its_fault(body in prop_oneof![
                json_value().prop_map(|v| v.to_string().into_bytes()),
                prop::collection::vec(any::<u8>(), 0..100),
            ]) {
                match validate(&body, &limits(), &[], resolve) {
                    Ok(v) => prop_assert!(!v.messages.is_empty()),
                    Err(p) if p.status == 400 => prop_assert!(p.errors.is_empty()),
                    Err(p) => {
                        prop_assert_eq!(p.status, 422, "{:?}", p);
                        prop_assert!(!p.errors.is_empty() && p.errors.iter().all(|e| !e.field.is_empty() && !e.message.is_empty()), "{:?}", p);
                    }
                }
            }

            /// A valid message with one field made wrong, alone or at any place in a batch, is a 422
            /// naming that field where it is.
            #[test]
            fn one_wrong_field_is_named(broken in breakage(), batch in prop::option::of((0usize..4, 1usize..4))) {
                let (field, value) = broken;
                let mut wrong = valid_message();
                wrong[field] = value;
                let (body, expected) = match batch {
                    None => (wrong, field.to_string()),
                    Some((at, len)) => {
                        let at = at.min(len - 1);
                        let mut messages = vec![valid_message(); len];
                        messages[at] = wrong;
                        (json!({"messages": messages}), format!("messages[{at}].{field}"))
                    }
                };
                prop_assert!(validate(valid_message().to_string().as_bytes(), &limits(), &[], resolve).is_ok());
                match validate(body.to_string().as_bytes(), &limits(), &[], resolve) {
                    Err(p) => {
                        prop_assert_eq!(p.status, 422);
                        prop_assert!(p.errors.iter().any(|e| e.field == expected), "{expected} not in {:?}", p.errors);
                    }
                    Ok(v) => return Err(TestCaseError::fail(format!("accepted: {v:?}"))),
                }
            }
        }
    }
}
