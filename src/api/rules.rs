//! `/v1/rules`: trigger rules as the API manages them. Any key with `read`
//! lists and reads them; `admin` creates, changes (a JSON merge patch over
//! the rule, `enabled` included) and deletes them. A rule from the config
//! file is read-only here (409). Every change is checked like the config
//! file's rules (422 naming the field) and takes effect for the next event.

use super::AppState;
use super::auth::Caller;
use super::body;
use super::problem::{FieldError, Problem};
use crate::config::Scope;
use crate::store::{RuleChange, RuleView};
use crate::trigger::{Rule, RuleSet, RuleSpec};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Serialize;
use serde_json::Value;
use std::sync::Arc;
use utoipa::ToSchema;

#[derive(Debug, Serialize, ToSchema)]
pub struct RuleList {
    pub rules: Vec<RuleView>,
}

/// Compile the store's rules into the set events are matched against. A
/// stored rule that no longer compiles (a route removed since) is left out
/// and logged.
pub async fn load_rules(state: &AppState) -> Result<(), crate::store::StoreError> {
    let views = state.store.rules().await?;
    let routing = state.dispatcher.routing();
    let mut rules = Vec::with_capacity(views.len());
    for v in views {
        let name = v.spec.name.clone();
        if let Some(route) = &v.spec.route
            && !routing.contains(route)
        {
            tracing::error!(rule = %name, %route, "rule left out: its route does not exist");
            continue;
        }
        match Rule::compile(v.spec) {
            Ok(r) => rules.push(r),
            Err(problems) => {
                for p in problems {
                    tracing::error!(rule = %name, field = %p.field, problem = %p.message, "rule left out");
                }
            }
        }
    }
    let set = RuleSet::new(rules);
    tracing::debug!(rules = set.len(), "trigger rules in force");
    if let Ok(mut r) = state.rules.write() {
        *r = Arc::new(set);
    }
    Ok(())
}

/// `spec` checked as the config file's rules are, its route against the
/// routes in force.
fn check(state: &AppState, spec: RuleSpec) -> Result<RuleSpec, Problem> {
    let mut errors = Vec::new();
    if let Some(route) = &spec.route
        && !state.dispatcher.routing().contains(route)
    {
        errors.push(FieldError { field: "route".into(), message: format!("no route is named {route:?}") });
    }
    let spec = match Rule::compile(spec) {
        Ok(rule) => rule.spec,
        Err(problems) => {
            errors.extend(problems.into_iter().map(|p| FieldError { field: p.field, message: p.message }));
            return Err(Problem::validation(errors));
        }
    };
    if errors.is_empty() { Ok(spec) } else { Err(Problem::validation(errors)) }
}

fn no_rule(name: &str) -> Problem {
    Problem::not_found(format!("no rule is named {name:?}"))
}

fn from_config(name: &str) -> Problem {
    Problem::new(
        StatusCode::CONFLICT,
        "rule-from-config",
        "Rule from the config file",
        format!("rule {name:?} is declared in the config file: change it there and reload"),
    )
}

async fn changed(state: &AppState, change: RuleChange, name: &str) -> Result<RuleView, Problem> {
    match change {
        RuleChange::Done(view) => {
            load_rules(state).await?;
            Ok(*view)
        }
        RuleChange::NotFound => Err(no_rule(name)),
        RuleChange::FromConfig => Err(from_config(name)),
        RuleChange::Exists => Err(Problem::new(
            StatusCode::CONFLICT,
            "rule-exists",
            "Rule exists",
            format!("a rule named {name:?} exists; PATCH it or pick another name"),
        )),
    }
}

/// List the rules.
#[utoipa::path(
    get, path = "/v1/rules", tag = "rules",
    responses((status = 200, body = RuleList)),
    security(("api_key" = []))
)]
pub async fn list_rules(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Arc<Caller>>,
) -> Result<Json<RuleList>, Problem> {
    caller.require(&[Scope::Read, Scope::Send])?;
    Ok(Json(RuleList { rules: state.store.rules().await? }))
}

/// Create a rule.
#[utoipa::path(
    post, path = "/v1/rules", tag = "rules",
    request_body = RuleSpec,
    responses(
        (status = 201, body = RuleView),
        (status = 409, description = "A rule of that name exists", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields, each named", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn create_rule(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Arc<Caller>>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    caller.require(&[Scope::Admin])?;
    let raw = body::bytes(&state, raw)?;
    let spec = check(&state, body::json(&raw)?)?;
    let name = spec.name.clone();
    let change = state.store.create_rule(spec, caller.name.clone()).await?;
    let view = changed(&state, change, &name).await?;
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

/// One rule.
#[utoipa::path(
    get, path = "/v1/rules/{name}", tag = "rules",
    params(("name" = String, Path, description = "Rule name")),
    responses((status = 200, body = RuleView), (status = 404, body = Problem, content_type = "application/problem+json")),
    security(("api_key" = []))
)]
pub async fn get_rule(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Arc<Caller>>,
    Path(name): Path<String>,
) -> Result<Json<RuleView>, Problem> {
    caller.require(&[Scope::Read, Scope::Send])?;
    state.store.rule(name.clone()).await?.map(Json).ok_or_else(|| no_rule(&name))
}

/// Change a rule: the body is merged into the rule (RFC 7396: a field
/// given replaces it, `null` removes it), then the whole is checked.
#[utoipa::path(
    patch, path = "/v1/rules/{name}", tag = "rules",
    params(("name" = String, Path, description = "Rule name")),
    request_body(content = Object, description = "A JSON merge patch over the rule, e.g. {\"enabled\": false}"),
    responses(
        (status = 200, body = RuleView),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Declared in the config file: change it there", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields, each named", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn patch_rule(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Arc<Caller>>,
    Path(name): Path<String>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Json<RuleView>, Problem> {
    caller.require(&[Scope::Admin])?;
    let raw = body::bytes(&state, raw)?;
    let patch: Value = serde_json::from_slice(&raw).map_err(|e| Problem::bad_json(e.to_string()))?;
    if !patch.is_object() {
        return Err(Problem::field("body", "must be a JSON object"));
    }
    let current = state.store.rule(name.clone()).await?.ok_or_else(|| no_rule(&name))?;
    if current.origin == "config" {
        return Err(from_config(&name));
    }
    let mut merged = serde_json::to_value(&current.spec).map_err(|e| Problem::unavailable(e.to_string()))?;
    merge(&mut merged, patch);
    if merged.get("name").and_then(Value::as_str) != Some(name.as_str()) {
        return Err(Problem::field("name", "a rule's name cannot change; create a new rule instead"));
    }
    let spec: RuleSpec = serde_path_to_error::deserialize(merged).map_err(|e| {
        let path = e.path().to_string();
        Problem::field(path, e.into_inner().to_string())
    })?;
    let spec = check(&state, spec)?;
    let change = state.store.replace_rule(spec).await?;
    Ok(Json(changed(&state, change, &name).await?))
}

/// Delete a rule. Its pending steps stay scheduled (cancel them through
/// their events or `/v1/messages`).
#[utoipa::path(
    delete, path = "/v1/rules/{name}", tag = "rules",
    params(("name" = String, Path, description = "Rule name")),
    responses(
        (status = 204),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Declared in the config file", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn delete_rule(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Arc<Caller>>,
    Path(name): Path<String>,
) -> Result<StatusCode, Problem> {
    caller.require(&[Scope::Admin])?;
    let change = state.store.delete_rule(name.clone()).await?;
    changed(&state, change, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// RFC 7396 JSON merge patch.
fn merge(target: &mut Value, patch: Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(&k);
                } else {
                    merge(t.entry(k).or_insert(Value::Null), v);
                }
            }
        }
        (t, p) => *t = p,
    }
}
