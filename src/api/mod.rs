//! The HTTP API (axum): JSON under `/v1`, bearer keys with scopes, per-key
//! rate limits and daily quotas, problem+json errors, an OpenAPI 3
//! document generated from the handlers themselves, and the `/metrics`
//! text (`metrics`). Routes are read through the dispatcher's snapshot.
//!
//! Scopes: each handler asks `auth::Caller` for the one it needs. Messages
//! and inbound are checked (and filtered to the key's own) in `messages` and
//! `inbound`; routes, modems, queue and throughput (what the status page
//! reads) need `read`, since route state belongs to no key; `/metrics`
//! needs `metrics`; `/openapi.json` and `/readyz` any valid key. `admin`
//! passes every check. Opt-outs (`optouts`): listing needs `read`, adding
//! `send`, removing `admin`; consents need `admin` for everything.
//! passes every check. Webhook subscriptions (`webhooks`): `send` or `read`
//! manages the key's own, `admin` every key's. Trigger events (`events`)
//! need `send`; rules (`rules`) `read` to list, `admin` to change. Template preview
//! (`templates`) needs `send` or `read`. The SMPP server's accounts
//! (`smpp`) need `read`.

pub mod auth;
mod body;
pub mod csv;
pub mod events;
pub mod inbound;
pub mod messages;
pub mod metrics;
pub mod optouts;
pub mod problem;
pub mod routes;
pub mod rule_stats;
pub mod rules;
pub mod serve;
pub mod smpp;
pub mod templates;
pub mod webhooks;

use crate::config::Scope;
use crate::dispatch::Dispatcher;
use crate::message::to_rfc3339;
use crate::store::Store;
use auth::Caller;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use problem::Problem;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Request limits and defaults from the config.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_body_bytes: usize,
    pub max_batch: usize,
    pub max_recipients: usize,
    pub max_segments: usize,
    pub default_region: String,
    pub default_validity_ms: i64,
}

impl Limits {
    pub fn from_config<S>(c: &crate::config::Config<S>) -> Limits {
        Limits {
            max_body_bytes: c.server.max_body_bytes,
            max_batch: c.server.max_batch,
            max_recipients: c.server.max_recipients,
            max_segments: c.server.max_segments,
            default_region: c.numbers.default_region.clone(),
            default_validity_ms: c.dispatch.default_validity_secs as i64 * 1000,
        }
    }
}

pub struct AppState {
    pub store: Store,
    pub dispatcher: Arc<Dispatcher>,
    /// Swapped whole by a reload.
    pub limits: RwLock<Arc<Limits>>,
    pub keys: RwLock<auth::Keys>,
    /// `[webhooks]`: the allow-list webhook and callback URLs must pass.
    /// Swapped whole by a reload.
    pub webhooks: RwLock<Arc<crate::config::webhooks::Webhooks>>,
    /// The config file, named when a change to a subscription it declares is refused.
    pub config_file: Option<std::path::PathBuf>,
    /// The SMPP server's accounts, when it runs (`smpp`).
    pub smpp: Option<Arc<dyn crate::smpp::accounts::Accounts>>,
}

impl AppState {
    pub fn limits(&self) -> Arc<Limits> {
        self.limits.read().map(|l| l.clone()).unwrap_or_else(|p| p.into_inner().clone())
    }

    pub fn webhooks(&self) -> Arc<crate::config::webhooks::Webhooks> {
        self.webhooks.read().map(|w| w.clone()).unwrap_or_else(|p| p.into_inner().clone())
    }

    /// Whether `key` names a configured API key or, as `smpp:<system_id>`, an
    /// account of the running SMPP server.
    pub fn key_exists(&self, key: &str) -> bool {
        match key.strip_prefix("smpp:") {
            Some(system_id) => {
                self.smpp.as_ref().is_some_and(|s| s.accounts().iter().any(|a| a.system_id == system_id))
            }
            None => self.keys.read().map(|k| k.named(key)).unwrap_or_else(|p| p.into_inner().named(key)),
        }
    }
}

/// Longest webhook or callback URL accepted.
const MAX_URL_BYTES: usize = 2048;

/// A webhook subscription's URL or a message's `callback_url`, checked by
/// the one rule the config uses (`config::webhooks::check_url`); the error
/// says what is wrong, for a 422 naming the field.
pub fn check_webhook_url(url: &str, allow_hosts: &[String]) -> Result<(), String> {
    if url.len() > MAX_URL_BYTES {
        return Err(format!("{} is longer than {MAX_URL_BYTES} bytes", problem::quote(url)));
    }
    crate::config::webhooks::check_url(url, allow_hosts).map(|_| ()).map_err(|e| e.to_string())
}

#[derive(OpenApi)]
#[openapi(
    info(title = "smsgw", description = "On-premise SMS gateway API. Every endpoint but /healthz needs `Authorization: Bearer <key>`."),
    modifiers(&BearerAuth),
    components(schemas(messages::BatchRequest, messages::AcceptedBatch))
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

pub fn router(state: Arc<AppState>) -> Router {
    let (api, doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(messages::post_messages, messages::list_messages))
        .routes(routes!(messages::get_message))
        .routes(routes!(messages::cancel_message))
        .routes(routes!(messages::cancel_messages))
        .routes(routes!(inbound::list_inbound))
        .routes(routes!(inbound::get_inbound))
        .routes(routes!(optouts::list_optouts, optouts::add_optout))
        .routes(routes!(optouts::export_optouts))
        .routes(routes!(optouts::remove_optout))
        .routes(routes!(optouts::list_consents, optouts::add_consent))
        .routes(routes!(optouts::export_consents))
        .routes(routes!(optouts::withdraw_consent))
        .routes(routes!(routes::list_routes))
        .routes(routes!(routes::pause_route))
        .routes(routes!(routes::resume_route))
        .routes(routes!(queue))
        .routes(routes!(throughput))
        .routes(routes!(modems))
        .routes(routes!(readyz))
        .routes(routes!(webhooks::create_webhook, webhooks::list_webhooks))
        .routes(routes!(webhooks::get_webhook, webhooks::patch_webhook, webhooks::delete_webhook))
        .routes(routes!(webhooks::rotate_webhook))
        .routes(routes!(webhooks::list_deliveries))
        .routes(routes!(webhooks::replay_deliveries))
        .routes(routes!(events::post_events))
        .routes(routes!(templates::preview))
        .routes(routes!(rules::list_rules, rules::create_rule))
        .routes(routes!(rules::get_rule, rules::patch_rule, rules::delete_rule))
        // Trigger rules' statistics: `/v1/rules/stats` is a static segment,
        // so it wins over the rules CRUD's `/v1/rules/{name}`.
        .routes(routes!(rule_stats::all_rule_stats))
        .routes(routes!(rule_stats::rule_stats))
        .routes(routes!(rule_stats::schedule))
        .routes(routes!(smpp::list_accounts))
        .split_for_parts();
    let doc = Arc::new(doc);
    let body_limit = state.limits().max_body_bytes;
    let protected = api
        .route("/openapi.json", get(move || async move { Json(doc.as_ref().clone()) }))
        .route("/metrics", get(metrics))
        .layer(axum::middleware::from_fn_with_state(state.clone(), auth::require_key));
    protected
        .route("/healthz", get(healthz))
        .route("/", get(status_page))
        .fallback(|| async { Problem::not_found("no such endpoint") })
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

/// Prometheus text format; gauges are read fresh from the store and routes.
async fn metrics(State(state): State<Arc<AppState>>, Extension(caller): Extension<Arc<Caller>>) -> Response {
    if let Err(p) = caller.require(&[Scope::Metrics]) {
        return p.into_response();
    }
    if let Err(e) = smpp::set_gauges(&state).await {
        return Problem::from(e).into_response();
    }
    match metrics::render(&state.store, &state.dispatcher).await {
        Ok(text) => ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response(),
        Err(e) => Problem::from(e).into_response(),
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ModemsOut {
    #[schema(value_type = Vec<crate::channel::modem::ModemView>)]
    pub modems: Vec<Box<serde_json::value::RawValue>>,
}

/// Every modem of every modem route: state, signal, operator, SIM, counts.
#[utoipa::path(get, path = "/v1/modems", tag = "routes", responses((status = 200, body = ModemsOut), (status = 403, description = "The key lacks the read scope", body = Problem, content_type = "application/problem+json")), security(("api_key" = [])))]
async fn modems(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Arc<Caller>>,
) -> Result<Json<ModemsOut>, Problem> {
    caller.require(&[Scope::Read])?;
    let routes = state.dispatcher.snapshot();
    let devices = routes.into_iter().flat_map(|r| r.devices);
    Ok(Json(ModemsOut { modems: devices.map(|d| d.view).collect() }))
}

/// The status page: static HTML that asks for the API key and reads the API.
async fn status_page() -> axum::response::Html<&'static str> {
    axum::response::Html(include_str!("status.html"))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ThroughputOut {
    /// The last 60 minutes, oldest first (counted since the daemon started).
    pub minutes: Vec<crate::throughput::Minute>,
}

/// Messages sent, delivered and failed per minute over the last hour.
#[utoipa::path(get, path = "/v1/stats/throughput", tag = "routes", responses((status = 200, body = ThroughputOut), (status = 403, description = "The key lacks the read scope", body = Problem, content_type = "application/problem+json")), security(("api_key" = [])))]
async fn throughput(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Arc<Caller>>,
) -> Result<Json<ThroughputOut>, Problem> {
    caller.require(&[Scope::Read])?;
    Ok(Json(ThroughputOut { minutes: state.dispatcher.throughput(crate::message::now_ms()) }))
}

async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Ready {
    pub status: String,
    pub routes: usize,
}

/// Ready when the store takes writes and the routes are loaded.
#[utoipa::path(get, path = "/readyz", tag = "health",
    responses((status = 200, body = Ready), (status = 503, body = Problem, content_type = "application/problem+json")),
    security(("api_key" = [])))]
async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    if let Err(e) = state.store.ready().await {
        return Problem::unavailable(format!("message store not writable: {e}")).into_response();
    }
    let routes = state.dispatcher.snapshot().len();
    if routes == 0 {
        return Problem::unavailable("no routes loaded").into_response();
    }
    (StatusCode::OK, Json(Ready { status: "ready".into(), routes })).into_response()
}

#[derive(Debug, Serialize, ToSchema)]
pub struct QueueOut {
    /// Every message in the store, by status.
    pub by_status: BTreeMap<String, u64>,
    /// Queued messages by route, then priority.
    pub queued: BTreeMap<String, BTreeMap<String, u64>>,
    pub oldest_queued_at: Option<String>,
}

/// Counts of messages by status, and of the queue by route and priority.
#[utoipa::path(get, path = "/v1/queue", tag = "routes", responses((status = 200, body = QueueOut), (status = 403, description = "The key lacks the read scope", body = Problem, content_type = "application/problem+json")), security(("api_key" = [])))]
async fn queue(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Arc<Caller>>,
) -> Result<Json<QueueOut>, Problem> {
    caller.require(&[Scope::Read])?;
    let c = state.store.counts().await?;
    Ok(Json(QueueOut {
        by_status: c.by_status,
        queued: c.queued,
        oldest_queued_at: c.oldest_queued_at.map(to_rfc3339),
    }))
}
