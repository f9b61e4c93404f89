//! Trigger rules seen from outside: each rule's funnel (`GET
//! /v1/rules/stats`, `GET /v1/rules/{name}/stats`) and the rule messages
//! due in the coming hours (`GET /v1/schedule`), as the status page and any
//! client read them. Counts come from the store's rows (`store::rule_stats`),
//! so they cover every key's rules and need the `read` scope, like the queue.
//!
//! A rule exists for these endpoints when it has a `rules` row (config or
//! API) or any run or message: a rule removed from the config keeps its
//! history readable.

use super::AppState;
use super::auth::Caller;
use super::problem::{Problem, quote};
use crate::config::Scope;
use crate::message::{Millis, now_ms};
use crate::store::RuleStats;
use axum::extract::{Path, Query, State};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use utoipa::{IntoParams, ToSchema};

/// The longest schedule asked for: a week.
const MAX_HOURS: u32 = 168;

#[derive(Debug, Serialize, ToSchema)]
pub struct RuleStatsList {
    /// Every rule, by name.
    pub rules: Vec<RuleStats>,
}

/// Every rule's funnel: triggered, scheduled, cancelled (by event type),
/// suppressed (by reason), errors, limited, sent, delivered, replied, converted.
#[utoipa::path(
    get, path = "/v1/rules/stats", tag = "rules",
    responses(
        (status = 200, body = RuleStatsList),
        (status = 403, description = "The key lacks the read scope", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn all_rule_stats(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Arc<Caller>>,
) -> Result<Json<RuleStatsList>, Problem> {
    caller.require(&[Scope::Read])?;
    Ok(Json(RuleStatsList { rules: state.store.rule_stats().await? }))
}

/// One rule's funnel.
#[utoipa::path(
    get, path = "/v1/rules/{name}/stats", tag = "rules",
    params(("name" = String, Path, description = "Rule name")),
    responses(
        (status = 200, body = RuleStats),
        (status = 403, description = "The key lacks the read scope", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No rule of that name, nor any run or message of one", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn rule_stats(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Arc<Caller>>,
    Path(name): Path<String>,
) -> Result<Json<RuleStats>, Problem> {
    caller.require(&[Scope::Read])?;
    let stats = state.store.rule_stats_of(&name).await?;
    stats.map(Json).ok_or_else(|| Problem::not_found(format!("no rule {}", quote(&name))))
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct ScheduleParams {
    /// How many hours ahead, from the current hour (1 to 168; default 24).
    #[param(value_type = Option<u32>)]
    pub hours: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HourOut {
    /// The hour's start, UTC (RFC 3339).
    pub hour: String,
    /// Queued messages due in this hour, by rule.
    pub rules: BTreeMap<String, u64>,
    pub total: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ScheduleOut {
    /// Every hour from the current one, empty ones too; a message already
    /// due and waiting for its route counts in the first.
    pub hours: Vec<HourOut>,
}

/// Rule messages waiting to be sent, by the hour they fall due.
#[utoipa::path(
    get, path = "/v1/schedule", tag = "rules",
    params(ScheduleParams),
    responses(
        (status = 200, body = ScheduleOut),
        (status = 403, description = "The key lacks the read scope", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`hours` is not a whole number from 1 to 168", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn schedule(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Arc<Caller>>,
    Query(p): Query<ScheduleParams>,
) -> Result<Json<ScheduleOut>, Problem> {
    caller.require(&[Scope::Read])?;
    let hours = match p.hours.as_deref() {
        None => 24,
        Some(h) => match h.parse::<u32>() {
            Ok(n) if (1..=MAX_HOURS).contains(&n) => n,
            _ => {
                return Err(Problem::field(
                    "hours",
                    format!("{} is not a whole number of hours from 1 to {MAX_HOURS}", quote(h)),
                ));
            }
        },
    };
    let hours = state.store.rule_schedule(hours, now_ms()).await?;
    Ok(Json(ScheduleOut {
        hours: hours
            .into_iter()
            .map(|h| HourOut { hour: hour_text(h.start), rules: h.rules, total: h.total })
            .collect(),
    }))
}

/// An hour's start as the contract shows it: `2026-12-06T15:00:00Z`.
fn hour_text(ms: Millis) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map_or_else(|| "invalid-time".into(), |t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}
