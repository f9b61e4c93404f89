//! `/v1/rules`: trigger rules made and changed through the API (create,
//! list, read, change any field including `enabled`, delete). Reading needs
//! `read`, changes `admin`. Rules declared in the config file are listed
//! with `origin: "config"` and are read-only here (409: change the file and
//! reload). Every change is written to the store first; then the rules in
//! force are rebuilt from the store.

use super::AppState;
use super::auth::Caller;
use super::problem::{FieldError, Problem};
use crate::config::Scope;
use crate::message::to_rfc3339;
use crate::store::{Managed, NewRule, RuleRow};
use crate::trigger::RuleSpec;
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

/// A rule: its spec (the same fields as `[[rules]]` in the config file)
/// plus `origin` (`config` or `api`), `created_at` and `updated_at`.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(value_type = Object)]
pub struct RuleOut(Value);

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RulesOut {
    pub rules: Vec<RuleOut>,
}

fn rule_out(r: RuleRow) -> RuleOut {
    let mut v: Value = serde_json::from_str(&r.spec).unwrap_or_else(|_| serde_json::json!({"name": r.name}));
    if let Some(o) = v.as_object_mut() {
        o.insert("enabled".into(), r.enabled.into());
        o.insert("origin".into(), r.origin.into());
        o.insert("created_at".into(), to_rfc3339(r.created_at).into());
        o.insert("updated_at".into(), to_rfc3339(r.updated_at).into());
    }
    RuleOut(v)
}

fn no_rule(name: &str) -> Problem {
    Problem::not_found(format!("no rule named {name:?}"))
}

/// The 409 for a change to a rule the config file declares.
fn from_config(state: &AppState, name: &str) -> Problem {
    let file = state.config_file.as_ref().map_or("the config file".to_string(), |p| p.display().to_string());
    Problem::new(
        StatusCode::CONFLICT,
        "config-rule",
        "The rule is declared in the config file",
        format!("rule {name:?} is declared in {file} ([[rules]]); change it there and reload"),
    )
}

/// `value` as a rule: a 422 naming every wrong field, including a route
/// that is not configured.
fn checked(state: &AppState, value: Value) -> Result<RuleSpec, Problem> {
    let spec: RuleSpec = serde_path_to_error::deserialize(value).map_err(super::body::field_problem)?;
    let mut errors: Vec<FieldError> = match spec.compile() {
        Ok(_) => Vec::new(),
        Err(errs) => errs.into_iter().map(|e| FieldError { field: e.field, message: e.message }).collect(),
    };
    let routing = state.dispatcher.routing();
    let asked = std::iter::once(("route".to_string(), &spec.route))
        .chain(spec.steps.iter().enumerate().map(|(i, s)| (format!("steps[{i}].route"), &s.route)));
    for (field, route) in asked {
        if let Some(route) = route
            && !routing.contains(route)
        {
            errors.push(FieldError { field, message: format!("no route named {route:?} is configured") });
        }
    }
    if errors.is_empty() { Ok(spec) } else { Err(Problem::validation(errors)) }
}

fn new_rule(spec: &RuleSpec) -> NewRule {
    NewRule { name: spec.name.clone(), spec: serde_json::to_string(spec).unwrap_or_default(), enabled: spec.enabled }
}

/// Rebuild the rules in force after a change.
async fn reload(state: &AppState) -> Result<(), Problem> {
    state.dispatcher.reload_rules().await?;
    Ok(())
}

/// Every rule, the config file's and the API's.
#[utoipa::path(get, path = "/v1/rules", tag = "rules",
    responses((status = 200, body = RulesOut), (status = 403, description = "The key lacks the read scope", body = Problem, content_type = "application/problem+json")),
    security(("api_key" = [])))]
pub async fn list_rules(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Arc<Caller>>,
) -> Result<Json<RulesOut>, Problem> {
    caller.require(&[Scope::Read])?;
    let rows = state.store.rules().await?;
    Ok(Json(RulesOut { rules: rows.into_iter().map(rule_out).collect() }))
}

/// Make a rule (the same fields as `[[rules]]` in the config file).
#[utoipa::path(post, path = "/v1/rules", tag = "rules",
    request_body(content = Object, description = "A rule: name, on, when, cancel_on, class, route, from, valid_for, limit, fallback, goal, enabled, steps"),
    responses(
        (status = 201, body = RuleOut),
        (status = 403, description = "The key lacks the admin scope", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A rule of that name exists", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields, each named", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = [])))]
pub async fn create_rule(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Arc<Caller>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    caller.require(&[Scope::Admin])?;
    let body = super::body::bytes(&state, body)?;
    let value: Value = serde_json::from_slice(&body).map_err(|e| Problem::bad_json(e.to_string()))?;
    let spec = checked(&state, value)?;
    let Some(row) = state.store.create_rule(caller.name.clone(), new_rule(&spec)).await? else {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            "rule-exists",
            "A rule of that name exists",
            format!("a rule named {:?} exists; change it with PATCH /v1/rules/{}", spec.name, spec.name),
        ));
    };
    reload(&state).await?;
    Ok((StatusCode::CREATED, Json(rule_out(row))).into_response())
}

/// One rule.
#[utoipa::path(get, path = "/v1/rules/{name}", tag = "rules",
    params(("name" = String, Path, description = "The rule's name")),
    responses((status = 200, body = RuleOut), (status = 404, body = Problem, content_type = "application/problem+json")),
    security(("api_key" = [])))]
pub async fn get_rule(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Arc<Caller>>,
    Path(name): Path<String>,
) -> Result<Json<RuleOut>, Problem> {
    caller.require(&[Scope::Read])?;
    let row = state.store.rule(name.clone()).await?.ok_or_else(|| no_rule(&name))?;
    Ok(Json(rule_out(row)))
}

/// Change any of a rule's fields (those given replace the rule's); `{"enabled": false}` disables it.
#[utoipa::path(patch, path = "/v1/rules/{name}", tag = "rules",
    params(("name" = String, Path, description = "The rule's name")),
    request_body(content = Object, description = "The fields to change"),
    responses(
        (status = 200, body = RuleOut),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Declared in the config file", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields, each named", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = [])))]
pub async fn patch_rule(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Arc<Caller>>,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<RuleOut>, Problem> {
    caller.require(&[Scope::Admin])?;
    let body = super::body::bytes(&state, body)?;
    let patch: Value = serde_json::from_slice(&body).map_err(|e| Problem::bad_json(e.to_string()))?;
    let Value::Object(patch) = patch else { return Err(Problem::field("body", "must be an object of fields")) };
    let row = state.store.rule(name.clone()).await?.ok_or_else(|| no_rule(&name))?;
    if row.origin == "config" {
        return Err(from_config(&state, &name));
    }
    if patch.get("name").is_some_and(|n| n.as_str() != Some(name.as_str())) {
        return Err(Problem::field("name", "a rule cannot be renamed; make a new one and delete this"));
    }
    let mut merged: Value = serde_json::from_str(&row.spec).unwrap_or_else(|_| serde_json::json!({}));
    if let Some(o) = merged.as_object_mut() {
        o.insert("enabled".into(), row.enabled.into());
        for (k, v) in patch {
            // What GET shows besides the spec: a rule read and sent back whole is accepted.
            if matches!(k.as_str(), "origin" | "created_at" | "updated_at") {
                continue;
            }
            if v.is_null() {
                o.remove(&k);
            } else {
                o.insert(k, v);
            }
        }
    }
    let spec = checked(&state, merged)?;
    let row = match state.store.update_rule(new_rule(&spec)).await? {
        Managed::Done(r) => r,
        Managed::NotFound => return Err(no_rule(&name)),
        Managed::FromConfig { name } => return Err(from_config(&state, &name)),
    };
    reload(&state).await?;
    Ok(Json(rule_out(row)))
}

/// Delete a rule. Messages it already scheduled stay queued (cancel them
/// through `/v1/messages`).
#[utoipa::path(delete, path = "/v1/rules/{name}", tag = "rules",
    params(("name" = String, Path, description = "The rule's name")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Declared in the config file", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = [])))]
pub async fn delete_rule(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Arc<Caller>>,
    Path(name): Path<String>,
) -> Result<StatusCode, Problem> {
    caller.require(&[Scope::Admin])?;
    match state.store.delete_rule(name.clone()).await? {
        Managed::Done(()) => {}
        Managed::NotFound => return Err(no_rule(&name)),
        Managed::FromConfig { name } => return Err(from_config(&state, &name)),
    }
    reload(&state).await?;
    Ok(StatusCode::NO_CONTENT)
}
