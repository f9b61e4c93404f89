//! Routes as the API shows them (`GET /v1/routes`: kind, state, limits,
//! load, counters, binds or modems, and a pause), and an operator's pause
//! and resume of one route.

use super::AppState;
use super::auth::Caller;
use super::problem::Problem;
use crate::channel::RouteState;
use crate::config::Scope;
use crate::dispatch::PauseError;
use crate::message::to_rfc3339;
use crate::store::Pause;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use utoipa::ToSchema;

/// Longest reason a pause keeps.
const MAX_REASON: usize = 200;

/// A route's pause: since when, by which key, why.
#[derive(Debug, Serialize, ToSchema)]
pub struct PauseOut {
    pub at: String,
    pub by: String,
    pub reason: Option<String>,
}

impl From<Pause> for PauseOut {
    fn from(p: Pause) -> Self {
        PauseOut { at: to_rfc3339(p.at), by: p.by, reason: p.reason }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RouteOut {
    pub name: String,
    pub kind: String,
    pub state: RouteState,
    pub detail: Option<String>,
    pub prefixes: Vec<String>,
    /// Messages per second; null means no limit.
    pub rate: Option<f64>,
    pub burst: Option<u32>,
    pub concurrency: usize,
    pub in_flight: usize,
    /// Queued messages waiting for this route, by priority.
    pub queued: BTreeMap<String, u64>,
    /// Since start: messages the route accepted, refused for good, or retried.
    pub sent: u64,
    pub failed: u64,
    pub retried: u64,
    pub last_error: Option<String>,
    /// The route's binds or modems, each with its state and load.
    pub members: Vec<crate::channel::Member>,
    /// Set while an operator has the route paused: it sends nothing, and
    /// still takes receipts and inbound messages.
    pub paused: Option<PauseOut>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RoutesOut {
    pub routes: Vec<RouteOut>,
}

/// Every route: kind, state, limits, load and counters.
#[utoipa::path(get, path = "/v1/routes", tag = "routes", responses((status = 200, body = RoutesOut), (status = 403, description = "The key lacks the read scope", body = Problem, content_type = "application/problem+json")), security(("api_key" = [])))]
pub async fn list_routes(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Arc<Caller>>,
) -> Result<Json<RoutesOut>, Problem> {
    caller.require(&[Scope::Read])?;
    Ok(Json(RoutesOut { routes: route_views(&state).await? }))
}

/// Every route in config order, with its queue from the store's counts.
async fn route_views(state: &AppState) -> Result<Vec<RouteOut>, Problem> {
    let counts = state.store.counts().await?;
    let routes = state
        .dispatcher
        .snapshot()
        .into_iter()
        .map(|r| RouteOut {
            queued: counts.queued.get(&r.name).cloned().unwrap_or_default(),
            name: r.name,
            kind: r.kind.to_string(),
            state: r.state,
            detail: r.detail,
            prefixes: r.prefixes,
            rate: r.rate,
            burst: r.burst,
            concurrency: r.concurrency,
            in_flight: r.in_flight,
            sent: r.sent,
            failed: r.failed,
            retried: r.retried,
            last_error: r.last_error,
            members: r.members,
            paused: r.paused.map(PauseOut::from),
        })
        .collect();
    Ok(routes)
}

/// A pause's body: why, optional.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PauseRequest {
    /// Why the route is paused (up to 200 characters), shown with it.
    pub reason: Option<String>,
}

/// Pause a route: from now its lane sends nothing (what it holds goes back
/// to the queue, untried; with `failover = true` its due messages go on
/// through the next route that serves them), while its binds or modems
/// stay up for receipts and inbound messages. It lasts until resumed, across
/// restarts. Pausing a paused route keeps the first pause.
#[utoipa::path(
    post, path = "/v1/routes/{name}/pause", tag = "routes",
    params(("name" = String, Path, description = "Route name")),
    request_body(content = PauseRequest, description = "Optional"),
    responses(
        (status = 200, description = "Paused; the route as it is now", body = RouteOut),
        (status = 403, description = "The key lacks the admin scope", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such route", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`reason` is too long", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn pause_route(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Arc<Caller>>,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<RouteOut>, Problem> {
    caller.require(&[Scope::Admin])?;
    let req: PauseRequest = super::body::json_or_empty(&state, body)?;
    let reason = req.reason.map(|r| r.trim().to_string()).filter(|r| !r.is_empty());
    if let Some(r) = &reason
        && r.chars().count() > MAX_REASON
    {
        return Err(Problem::field("reason", format!("is {} characters; at most {MAX_REASON}", r.chars().count())));
    }
    state.dispatcher.pause(&name, &caller.name, reason).await.map_err(pause_problem)?;
    one_route(&state, &name).await
}

/// Resume a paused route: its lane claims again at once. Resuming a route
/// that is not paused changes nothing.
#[utoipa::path(
    post, path = "/v1/routes/{name}/resume", tag = "routes",
    params(("name" = String, Path, description = "Route name")),
    responses(
        (status = 200, description = "Sending; the route as it is now", body = RouteOut),
        (status = 403, description = "The key lacks the admin scope", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such route", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn resume_route(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Arc<Caller>>,
    Path(name): Path<String>,
) -> Result<Json<RouteOut>, Problem> {
    caller.require(&[Scope::Admin])?;
    state.dispatcher.resume(&name, &caller.name).await.map_err(pause_problem)?;
    one_route(&state, &name).await
}

fn pause_problem(e: PauseError) -> Problem {
    match e {
        PauseError::Unknown(_) => Problem::not_found(e.to_string()),
        PauseError::Store(e) => e.into(),
    }
}

/// The route `name` as `GET /v1/routes` shows it.
async fn one_route(state: &AppState, name: &str) -> Result<Json<RouteOut>, Problem> {
    route_views(state)
        .await?
        .into_iter()
        .find(|r| r.name == name)
        .map(Json)
        .ok_or_else(|| Problem::not_found(format!("no route named {name:?} is configured")))
}
