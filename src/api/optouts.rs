//! `/v1/optouts` and `/v1/consents`: the registries policy enforces (see
//! `[policy]` and the store's `policy`), read, exported as CSV and changed
//! through the API.
//!
//! Scopes: listing and exporting opt-outs needs `read`; adding one needs
//! `send` (a service records a "stop" it received) or `admin`; removing one,
//! and everything on consents (they are the proof 38-FZ asks for, so only
//! an administrator records, reads or withdraws them), needs `admin`.
//! Opt-outs belong to the number, not to a key: every key's messages obey
//! them, and every `read` key sees them.
//!
//! A list is JSON with cursor pagination, or with `format=csv` (or at
//! `/v1/optouts.csv`, `/v1/consents.csv`) the whole filtered list as CSV.

use super::AppState;
use super::auth::Caller;
use super::csv;
use super::problem::{FieldError, Problem, quote};
use crate::config::Scope;
use crate::message::{Millis, OptOutScope, now_ms, to_rfc3339};
use crate::sms;
use crate::store::{
    Consent, ConsentFilter, NewConsent, OptOut, OptOutChange, OptOutCursor, OptOutFilter, WithdrawOutcome,
};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use std::sync::Arc;
use utoipa::ToSchema;

/// Rows a CSV export reads from the store at a time.
const EXPORT_PAGE: usize = 1000;
/// Longest `source`, `recorded_by`; longest `proof`.
const MAX_NAME_BYTES: usize = 256;
const MAX_PROOF_BYTES: usize = 8192;
/// How far ahead of our clock a consent's `at` may be (the recording
/// system's clock may run a little fast).
const AT_SLACK_MS: Millis = 60_000;

/// An opt-out: the number hears no more of `scope`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OptOutOut {
    /// E.164.
    pub number: String,
    /// `promotional` (stops promotions; everything where `[policy]
    /// optout_scope = "all"`) or `all` (stops every message).
    pub scope: String,
    /// `keyword` (the person texted a stop word), `api` or `import`.
    pub source: String,
    /// The route a keyword came in on.
    pub route: Option<String>,
    /// The key that added it, or whose message the keyword answered.
    pub api_key: Option<String>,
    /// The inbound message that asked for it.
    pub inbound_id: Option<i64>,
    pub at: String,
}

impl From<OptOut> for OptOutOut {
    fn from(o: OptOut) -> Self {
        OptOutOut {
            number: o.number,
            scope: o.scope,
            source: o.source,
            route: o.route,
            api_key: o.api_key,
            inbound_id: o.inbound_id,
            at: to_rfc3339(o.at),
        }
    }
}

const OPTOUT_HEADER: [&str; 7] = ["number", "scope", "source", "route", "api_key", "inbound_id", "at"];

fn optout_record(o: OptOut) -> Vec<String> {
    let o = OptOutOut::from(o);
    vec![
        o.number,
        o.scope,
        o.source,
        o.route.unwrap_or_default(),
        o.api_key.unwrap_or_default(),
        o.inbound_id.map(|i| i.to_string()).unwrap_or_default(),
        o.at,
    ]
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OptOutList {
    pub optouts: Vec<OptOutOut>,
    /// Pass as `cursor` for the next (older) page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// Filters of a list; each is optional.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct ListParams {
    /// Only this number (E.164, or national in the default region; write
    /// `+` as `%2B`).
    pub number: Option<String>,
    /// `promotional` or `all`.
    pub scope: Option<String>,
    /// Only this source (`keyword`, `api`, `import`, or a consent's source).
    pub source: Option<String>,
    /// Only entries made at or after this time (RFC 3339).
    pub since: Option<String>,
    /// Consents only: `true` for those in force, `false` for withdrawn ones.
    pub active: Option<String>,
    /// Page size, 1 to 1000 (default 100; a CSV export has every row unless a limit is given).
    pub limit: Option<String>,
    /// `next_cursor` from the previous page.
    pub cursor: Option<String>,
    /// `json` (default) or `csv`.
    pub format: Option<String>,
}

/// A list's parameters, checked: every wrong one named at once.
struct Checked {
    number: Option<String>,
    scope: Option<String>,
    source: Option<String>,
    since: Option<Millis>,
    active: Option<bool>,
    limit: Option<usize>,
    cursor: Option<String>,
    csv: bool,
}

fn check_list(p: ListParams, region: &str) -> Result<Checked, Problem> {
    let mut errors = Vec::new();
    let mut bad = |f: &str, m: String| errors.push(FieldError { field: f.into(), message: m });
    let number = p.number.as_deref().and_then(|n| match sms::normalise(n, region) {
        Ok(n) => Some(n),
        Err(e) => {
            bad("number", e.to_string());
            None
        }
    });
    if let Some(s) = &p.scope
        && OptOutScope::parse(s).is_none()
    {
        bad("scope", format!("{} is not a scope; the scopes are promotional and all", quote(s)));
    }
    let since = p.since.as_deref().and_then(|s| match DateTime::parse_from_rfc3339(s) {
        Ok(t) => Some(t.timestamp_millis()),
        Err(e) => {
            bad("since", format!("{} is not an RFC 3339 time: {e}", quote(s)));
            None
        }
    });
    let active = p.active.as_deref().and_then(|a| match a {
        "true" => Some(true),
        "false" => Some(false),
        _ => {
            bad("active", format!("{} is neither true nor false", quote(a)));
            None
        }
    });
    let limit = p.limit.as_deref().and_then(|l| match l.parse::<usize>() {
        Ok(n) if (1..=1000).contains(&n) => Some(n),
        _ => {
            bad("limit", format!("{} is not a number from 1 to 1000", quote(l)));
            None
        }
    });
    let csv = match p.format.as_deref() {
        None | Some("json") => false,
        Some("csv") => true,
        Some(f) => {
            bad("format", format!("{} is not a format; the formats are json and csv", quote(f)));
            false
        }
    };
    if !errors.is_empty() {
        return Err(Problem::validation(errors));
    }
    Ok(Checked { number, scope: p.scope, source: p.source, since, active, limit, cursor: p.cursor, csv })
}

fn bad_cursor(c: &str) -> Problem {
    Problem::field("cursor", format!("{} is not a cursor from a previous page", quote(c)))
}

/// A JSON body as `T` (see `body`); a field missing at the top is named
/// itself ("missing field `number`" names `number`, not the body).
fn read_body<T: DeserializeOwned>(state: &AppState, body: Result<Bytes, BytesRejection>) -> Result<T, Problem> {
    super::body::json(&super::body::bytes(state, body)?).map_err(|mut p: Problem| {
        for err in &mut p.errors {
            let missing = err.message.strip_prefix("missing field `").and_then(|m| m.split('`').next());
            if let (Some(name), "body") = (missing, err.field.as_str()) {
                err.field = name.to_string();
            }
        }
        p
    })
}

/// `raw` as E.164, or a 422 naming `field`.
fn number(raw: &str, region: &str, field: &str) -> Result<String, Problem> {
    if raw.len() > 64 {
        return Err(Problem::field(field, format!("{} is not a phone number: too long", quote(raw))));
    }
    sms::normalise(raw, region).map_err(|e| Problem::field(field, e.to_string()))
}

fn scope(raw: Option<&str>) -> Result<OptOutScope, Problem> {
    match raw {
        None => Ok(OptOutScope::Promotional),
        Some(s) => OptOutScope::parse(s).ok_or_else(|| {
            Problem::field("scope", format!("{} is not a scope; the scopes are promotional and all", quote(s)))
        }),
    }
}

/// The opt-out registry, newest first, as JSON pages or CSV.
#[utoipa::path(get, path = "/v1/optouts", tag = "policy", params(ListParams),
    responses(
        (status = 200, body = OptOutList, description = "JSON, or with format=csv the whole filtered list as text/csv"),
        (status = 403, description = "The key lacks the read scope", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json")),
    security(("api_key" = [])))]
pub async fn list_optouts(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Arc<Caller>>,
    Query(p): Query<ListParams>,
) -> Result<Response, Problem> {
    caller.require(&[Scope::Read])?;
    let p = check_list(p, &state.limits().default_region)?;
    optouts_answer(state, p).await
}

/// The opt-out registry as CSV (the same filters as `/v1/optouts`).
#[utoipa::path(get, path = "/v1/optouts.csv", tag = "policy", params(ListParams),
    responses(
        (status = 200, description = "text/csv: a header row, then one row per opt-out", content_type = "text/csv", body = String),
        (status = 403, description = "The key lacks the read scope", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json")),
    security(("api_key" = [])))]
pub async fn export_optouts(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Arc<Caller>>,
    Query(p): Query<ListParams>,
) -> Result<Response, Problem> {
    caller.require(&[Scope::Read])?;
    let p = check_list(p, &state.limits().default_region)?;
    optouts_answer(state, Checked { csv: true, ..p }).await
}

async fn optouts_answer(state: Arc<AppState>, p: Checked) -> Result<Response, Problem> {
    let after = match &p.cursor {
        None => None,
        Some(c) => Some(OptOutCursor::decode(c).ok_or_else(|| bad_cursor(c))?),
    };
    let filter = OptOutFilter {
        number: p.number,
        scope: p.scope,
        source: p.source,
        since: p.since,
        after,
        limit: p.limit.unwrap_or(100),
    };
    if !p.csv {
        let limit = filter.limit;
        let rows = state.store.optouts(filter).await?;
        let next_cursor = if rows.len() == limit {
            rows.last().map(|o| OptOutCursor { at: o.at, number: o.number.clone(), scope: o.scope.clone() }.encode())
        } else {
            None
        };
        let optouts = rows.into_iter().map(OptOutOut::from).collect();
        return Ok(Json(OptOutList { optouts, next_cursor }).into_response());
    }
    // An export: every row (up to `limit` when one is given), a page at a time.
    let left = p.limit.unwrap_or(usize::MAX);
    let store = state.store.clone();
    Ok(csv::response("optouts.csv", &OPTOUT_HEADER, (filter, left), move |(mut f, left)| {
        let store = store.clone();
        async move {
            f.limit = left.min(EXPORT_PAGE);
            let rows = store.optouts(f.clone()).await?;
            let left = left - rows.len();
            let more = (rows.len() == f.limit && left > 0).then(|| {
                let last = rows.last().expect("a full page has a last row");
                f.after = Some(OptOutCursor { at: last.at, number: last.number.clone(), scope: last.scope.clone() });
                (f, left)
            });
            Ok((rows.into_iter().map(optout_record).collect(), more))
        }
    }))
}

/// A number to opt out.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OptOutRequest {
    /// E.164 or a national number (read with the configured default region).
    pub number: String,
    /// `promotional` (default) or `all`.
    #[serde(default)]
    pub scope: Option<String>,
}

/// Opt a number out (source `api`). 201 with the entry; 200 with the one
/// already on record, unchanged.
#[utoipa::path(post, path = "/v1/optouts", tag = "policy", request_body = OptOutRequest,
    responses(
        (status = 201, body = OptOutOut, description = "Added; an `optout.changed` event was written with it"),
        (status = 200, body = OptOutOut, description = "Already opted out; nothing changed"),
        (status = 403, description = "The key lacks the send scope", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`number` or `scope` is wrong", body = Problem, content_type = "application/problem+json")),
    security(("api_key" = [])))]
pub async fn add_optout(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Arc<Caller>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    caller.require(&[Scope::Send])?;
    let req: OptOutRequest = read_body(&state, body)?;
    let number = number(&req.number, &state.limits().default_region, "number")?;
    let scope = scope(req.scope.as_deref())?;
    let change = OptOutChange {
        number: number.clone(),
        scope: scope.as_str().to_string(),
        source: "api".into(),
        route: None,
        api_key: Some(caller.name.clone()),
        inbound_id: None,
        opted_out: true,
    };
    let added = state.store.set_optout(change).await?;
    let entry = state.store.optout(number.clone(), scope.as_str().to_string()).await?;
    // Removed again between the two calls: what this request did is still an opt-out.
    let entry = entry.ok_or_else(|| Problem::not_found(format!("the opt-out of {number} was removed meanwhile")))?;
    let status = if added { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(OptOutOut::from(entry))).into_response())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct RemoveParams {
    /// `promotional` or `all`; without it, every opt-out of the number.
    pub scope: Option<String>,
}

/// Opt a number back in: remove its opt-out (each removal writes an
/// `optout.changed` event).
#[utoipa::path(delete, path = "/v1/optouts/{number}", tag = "policy",
    params(("number" = String, Path, description = "E.164 or national number"), RemoveParams),
    responses(
        (status = 204, description = "Removed"),
        (status = 403, description = "The key lacks the admin scope", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "The number has no such opt-out", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`number` or `scope` is wrong", body = Problem, content_type = "application/problem+json")),
    security(("api_key" = [])))]
pub async fn remove_optout(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Arc<Caller>>,
    Path(raw): Path<String>,
    Query(p): Query<RemoveParams>,
) -> Result<StatusCode, Problem> {
    caller.require(&[Scope::Admin])?;
    let number = number(&raw, &state.limits().default_region, "number")?;
    let scopes = match &p.scope {
        Some(s) => vec![scope(Some(s))?],
        None => OptOutScope::ALL.to_vec(),
    };
    let mut removed = false;
    for s in scopes {
        let change = OptOutChange {
            number: number.clone(),
            scope: s.as_str().to_string(),
            source: "api".into(),
            route: None,
            api_key: Some(caller.name.clone()),
            inbound_id: None,
            opted_out: false,
        };
        removed |= state.store.set_optout(change).await?;
    }
    if removed { Ok(StatusCode::NO_CONTENT) } else { Err(Problem::not_found(format!("{number} has no such opt-out"))) }
}

/// A consent record: the proof that a number agreed to `scope`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ConsentOut {
    pub id: i64,
    pub number: String,
    /// `promotional` or `all`.
    pub scope: String,
    /// Where it was given (a web form, a checkbox at a till...).
    pub source: String,
    /// The wording the person agreed to.
    pub proof: Option<String>,
    /// Who recorded it.
    pub recorded_by: String,
    /// When it was given.
    pub at: String,
    /// When it was withdrawn; the record stays.
    pub withdrawn_at: Option<String>,
    /// Not withdrawn.
    pub active: bool,
}

impl From<Consent> for ConsentOut {
    fn from(c: Consent) -> Self {
        ConsentOut {
            id: c.id,
            number: c.number,
            scope: c.scope,
            source: c.source,
            proof: c.proof,
            recorded_by: c.recorded_by,
            at: to_rfc3339(c.at),
            active: c.withdrawn_at.is_none(),
            withdrawn_at: c.withdrawn_at.map(to_rfc3339),
        }
    }
}

const CONSENT_HEADER: [&str; 9] =
    ["id", "number", "scope", "source", "proof", "recorded_by", "at", "withdrawn_at", "active"];

fn consent_record(c: Consent) -> Vec<String> {
    let c = ConsentOut::from(c);
    vec![
        c.id.to_string(),
        c.number,
        c.scope,
        c.source,
        c.proof.unwrap_or_default(),
        c.recorded_by,
        c.at,
        c.withdrawn_at.unwrap_or_default(),
        c.active.to_string(),
    ]
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ConsentList {
    pub consents: Vec<ConsentOut>,
    /// Pass as `cursor` for the next (older) page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// A consent to record.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsentRequest {
    /// E.164 or a national number (read with the configured default region).
    pub number: String,
    /// `promotional` (default) or `all`.
    #[serde(default)]
    pub scope: Option<String>,
    /// Where it was given: "web form", "checkout checkbox", "paper form 12"...
    pub source: String,
    /// The wording the person agreed to, as they saw it.
    pub proof: String,
    /// Who recorded it; default the API key's name.
    #[serde(default)]
    pub recorded_by: Option<String>,
    /// When it was given (RFC 3339); default now. Not in the future.
    #[serde(default)]
    pub at: Option<DateTime<Utc>>,
}

/// Record a consent.
#[utoipa::path(post, path = "/v1/consents", tag = "policy", request_body = ConsentRequest,
    responses(
        (status = 201, body = ConsentOut),
        (status = 403, description = "The key lacks the admin scope", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Each wrong field named", body = Problem, content_type = "application/problem+json")),
    security(("api_key" = [])))]
pub async fn add_consent(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Arc<Caller>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    caller.require(&[Scope::Admin])?;
    let req: ConsentRequest = read_body(&state, body)?;
    let now = now_ms();
    let mut errors = Vec::new();
    let mut bad = |f: &str, m: String| errors.push(FieldError { field: f.into(), message: m });
    let number = number(&req.number, &state.limits().default_region, "number")
        .map_err(|p| p.errors.into_iter().for_each(|e| bad(&e.field, e.message)))
        .ok();
    let scope = scope(req.scope.as_deref()).map_err(|p| p.errors.into_iter().for_each(|e| bad(&e.field, e.message)));
    let recorded_by = req.recorded_by.unwrap_or_else(|| caller.name.clone());
    for (field, v, max) in [
        ("source", &req.source, MAX_NAME_BYTES),
        ("proof", &req.proof, MAX_PROOF_BYTES),
        ("recorded_by", &recorded_by, MAX_NAME_BYTES),
    ] {
        if v.trim().is_empty() {
            bad(field, "must not be empty".into());
        } else if v.len() > max {
            bad(field, format!("at most {max} bytes; this one has {}", v.len()));
        }
    }
    let at = req.at.as_ref().map_or(now, crate::message::from_datetime);
    if at > now + AT_SLACK_MS {
        bad("at", format!("{} is in the future", to_rfc3339(at)));
    }
    let (Some(number), Ok(scope), true) = (number, scope, errors.is_empty()) else {
        return Err(Problem::validation(errors));
    };
    let consent = NewConsent {
        number,
        scope: scope.as_str().to_string(),
        source: req.source,
        proof: Some(req.proof),
        recorded_by,
        at,
    };
    let record = state.store.add_consent(consent).await?;
    Ok((StatusCode::CREATED, Json(ConsentOut::from(record))).into_response())
}

/// Consent records, newest first, as JSON pages or CSV.
#[utoipa::path(get, path = "/v1/consents", tag = "policy", params(ListParams),
    responses(
        (status = 200, body = ConsentList, description = "JSON, or with format=csv the whole filtered list as text/csv"),
        (status = 403, description = "The key lacks the admin scope", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json")),
    security(("api_key" = [])))]
pub async fn list_consents(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Arc<Caller>>,
    Query(p): Query<ListParams>,
) -> Result<Response, Problem> {
    caller.require(&[Scope::Admin])?;
    let p = check_list(p, &state.limits().default_region)?;
    consents_answer(state, p).await
}

/// Consent records as CSV (the same filters as `/v1/consents`).
#[utoipa::path(get, path = "/v1/consents.csv", tag = "policy", params(ListParams),
    responses(
        (status = 200, description = "text/csv: a header row, then one row per consent", content_type = "text/csv", body = String),
        (status = 403, description = "The key lacks the admin scope", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json")),
    security(("api_key" = [])))]
pub async fn export_consents(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Arc<Caller>>,
    Query(p): Query<ListParams>,
) -> Result<Response, Problem> {
    caller.require(&[Scope::Admin])?;
    let p = check_list(p, &state.limits().default_region)?;
    consents_answer(state, Checked { csv: true, ..p }).await
}

async fn consents_answer(state: Arc<AppState>, p: Checked) -> Result<Response, Problem> {
    let before_id = match &p.cursor {
        None => None,
        Some(c) => Some(c.parse::<i64>().map_err(|_| bad_cursor(c))?),
    };
    let filter = ConsentFilter {
        number: p.number,
        scope: p.scope,
        source: p.source,
        since: p.since,
        active: p.active,
        before_id,
        limit: p.limit.unwrap_or(100),
    };
    if !p.csv {
        let limit = filter.limit;
        let rows = state.store.consents(filter).await?;
        let next_cursor = if rows.len() == limit { rows.last().map(|c| c.id.to_string()) } else { None };
        let consents = rows.into_iter().map(ConsentOut::from).collect();
        return Ok(Json(ConsentList { consents, next_cursor }).into_response());
    }
    let left = p.limit.unwrap_or(usize::MAX);
    let store = state.store.clone();
    Ok(csv::response("consents.csv", &CONSENT_HEADER, (filter, left), move |(mut f, left)| {
        let store = store.clone();
        async move {
            f.limit = left.min(EXPORT_PAGE);
            let rows = store.consents(f.clone()).await?;
            let left = left - rows.len();
            let more = (rows.len() == f.limit && left > 0).then(|| {
                f.before_id = rows.last().map(|c| c.id);
                (f, left)
            });
            Ok((rows.into_iter().map(consent_record).collect(), more))
        }
    }))
}

/// Withdraw a consent: from now on it no longer counts; the record stays,
/// with `withdrawn_at`. Withdrawing one already withdrawn changes nothing.
#[utoipa::path(delete, path = "/v1/consents/{id}", tag = "policy",
    params(("id" = i64, Path, description = "Consent id")),
    responses(
        (status = 200, body = ConsentOut, description = "Withdrawn (or already withdrawn): the record"),
        (status = 403, description = "The key lacks the admin scope", body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json")),
    security(("api_key" = [])))]
pub async fn withdraw_consent(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Arc<Caller>>,
    Path(id): Path<String>,
) -> Result<Json<ConsentOut>, Problem> {
    caller.require(&[Scope::Admin])?;
    let missing = || Problem::not_found(format!("no consent with id {}", quote(&id)));
    let n = id.parse::<i64>().map_err(|_| missing())?;
    match state.store.withdraw_consent(n).await? {
        WithdrawOutcome::Withdrawn(c) | WithdrawOutcome::AlreadyWithdrawn(c) => Ok(Json(c.into())),
        WithdrawOutcome::NotFound => Err(missing()),
    }
}
