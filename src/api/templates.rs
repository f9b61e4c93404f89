//! `POST /v1/templates/preview`: a template rendered with sample data the
//! way a rule would send it: the text, its alphabet, segments and parts,
//! and warnings for what the data's likely values could do to it (a name
//! in Cyrillic turning a GSM 7-bit text into UCS-2, longer values pushing
//! it past the segments wanted).

use super::AppState;
use super::auth::Caller;
use super::body;
use super::problem::Problem;
use crate::config::Scope;
use crate::sms::{self, Encoding};
use crate::trigger::template::{Template, TemplateError};
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;
use utoipa::ToSchema;

/// Likely length of a value the sample data does not show, by kind.
const LIKELY_TEXT: usize = 20;
const LIKELY_NUMBER: usize = 12;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PreviewRequest {
    /// The template.
    pub text: String,
    /// Sample values.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub data: Map<String, Value>,
    /// `ru` (default) or `en`.
    pub locale: Option<String>,
    /// The zone dates are shown in (default UTC).
    pub tz: Option<String>,
    /// What a variable's real values may be: `{"name": {"max_len": 30, "alphabet": "ucs2"}}`.
    #[serde(default)]
    pub assume: BTreeMap<String, Assume>,
    /// Segments the text should fit in (default 1).
    pub max_segments: Option<usize>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Assume {
    pub max_len: Option<usize>,
    /// `gsm7` or `ucs2`: the alphabet its values may need.
    pub alphabet: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Preview {
    pub text: String,
    pub encoding: String,
    pub segments: usize,
    pub characters: usize,
    /// The parts as a route sends them.
    pub parts: Vec<String>,
    /// The variables the template reads.
    pub variables: Vec<String>,
    pub warnings: Vec<Warning>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Warning {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variable: Option<String>,
    /// `may_need_ucs2` or `may_exceed_segments`.
    pub code: String,
    pub message: String,
}

/// Render a template with sample data.
#[utoipa::path(
    post, path = "/v1/templates/preview", tag = "rules",
    request_body = PreviewRequest,
    responses(
        (status = 200, body = Preview),
        (status = 422, description = "A syntax error (with its line) or a variable missing from data, named", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn preview(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Arc<Caller>>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Json<Preview>, Problem> {
    caller.require(&[Scope::Send, Scope::Read])?;
    let raw = body::bytes(&state, raw)?;
    let req: PreviewRequest = body::json(&raw)?;
    let tz = match req.tz.as_deref().map(chrono_tz::Tz::from_str) {
        None => chrono_tz::UTC,
        Some(Ok(tz)) => tz,
        Some(Err(_)) => return Err(Problem::field("tz", "is not an IANA time zone such as \"Europe/Moscow\"")),
    };
    let template = Template::compile(&req.text).map_err(|e| Problem::field("text", e.to_string()))?;
    let data = Value::Object(req.data);
    let locale = req.locale.as_deref().unwrap_or("ru");
    let text = template.render(&data, locale, tz).map_err(|e| match e {
        TemplateError::Missing(v) => Problem::field(format!("data.{v}"), "the template reads it; give a sample value"),
        other => Problem::field("text", other.to_string()),
    })?;
    let plan = sms::split(&text);
    let characters = text.chars().count();
    let max_segments = req.max_segments.unwrap_or(1).max(1);
    let mut warnings = Vec::new();
    // The worst case: each variable at its likely length, in the alphabet
    // its values may need.
    let mut extra = 0usize;
    let mut ucs2 = plan.encoding == Encoding::Ucs2;
    for var in template.top_variables() {
        let sample = data.get(&var);
        let shown = sample.map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string)).unwrap_or_default();
        let assume = req.assume.get(&var);
        let textual = !sample.is_some_and(Value::is_number);
        let likely = assume
            .and_then(|a| a.max_len)
            .unwrap_or(if textual { LIKELY_TEXT } else { LIKELY_NUMBER })
            .max(shown.chars().count());
        extra += likely - shown.chars().count();
        let may_ucs2 = match assume.and_then(|a| a.alphabet.as_deref()) {
            Some("gsm7") => false,
            Some(_) => true,
            None => textual,
        };
        if may_ucs2 && plan.encoding == Encoding::Gsm7 {
            ucs2 = true;
            warnings.push(Warning {
                variable: Some(var.clone()),
                code: "may_need_ucs2".into(),
                message: format!(
                    "`{var}` is free text: a value with a character GSM 7-bit lacks (Cyrillic, for one) sends the whole text as UCS-2, 70 characters a segment instead of 160"
                ),
            });
        }
    }
    let worst_len = characters + extra;
    let per = |single: usize, multi: usize| if worst_len <= single { 1 } else { worst_len.div_ceil(multi) };
    let worst = if ucs2 { per(70, 67) } else { per(160, 153) };
    if worst > max_segments || plan.parts.len() > max_segments {
        warnings.push(Warning {
            variable: None,
            code: "may_exceed_segments".into(),
            message: format!(
                "with its variables at their likely lengths ({worst_len} characters{}) the text needs {worst} segments; {max_segments} wanted",
                if ucs2 { ", UCS-2" } else { "" }
            ),
        });
    }
    Ok(Json(Preview {
        text,
        encoding: plan.encoding.as_str().to_string(),
        segments: plan.parts.len(),
        characters,
        parts: plan.parts,
        variables: template.variables().to_vec(),
        warnings,
    }))
}
