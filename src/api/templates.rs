//! `POST /v1/templates/preview`: a template rendered as a rule would render
//! it, then planned into SMS parts the way each route would send it, with
//! warnings for what the variables' likely values could do to the text
//! (push it into UCS-2, past the segments a sender wants).
//!
//! Without `data`, every variable gets a sample of its kind (read from the
//! filter it goes through: `money` → 1000, `date`/`time`/`datetime` →
//! tomorrow, `plural` → 12, else the string `Name`); with `data`, a
//! variable it lacks is a 422 naming `data.<variable>`, as the rule's error
//! would. Every route plans with the same rules (`sms::plan`, GSM 7-bit
//! where the text allows, else UCS-2), so parts differ between routes only
//! where the alphabet does: an SMPP bind whose `gsm_coding` is Latin-1
//! sends a GSM text holding `€` or Greek capitals as UCS-2 (re-planned at
//! the bind); the preview shows the plan the lane hands every route.

use super::AppState;
use super::auth::Caller;
use super::problem::{FieldError, Problem};
use crate::config::Scope;
use crate::sms::{self, Alphabets, Encoding};
use crate::trigger::format::NBSP;
use crate::trigger::template::{Template, TemplateError};
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use utoipa::ToSchema;

/// What a sender assumes of a variable's values.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Assume {
    /// The longest value expected, in characters.
    pub max_len: Option<usize>,
    /// `gsm7` or `ucs2`: the alphabet its values need.
    pub alphabet: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PreviewRequest {
    /// The template, e.g. `{{ name }}, ваша корзина на {{ total | money }} ждёт вас`.
    pub text: String,
    /// The event's data; without it every variable gets a sample value.
    #[schema(value_type = Option<Object>)]
    pub data: Option<Value>,
    /// `ru` (default), `en`; another formats as `ru`.
    pub locale: Option<String>,
    /// IANA zone dates are shown in (default UTC).
    pub tz: Option<String>,
    /// Routes to plan for (default: every route).
    pub routes: Option<Vec<String>>,
    #[serde(default)]
    pub assume: BTreeMap<String, Assume>,
    /// Segments the text should stay within (default 1).
    pub max_segments: Option<usize>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Warning {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variable: Option<String>,
    /// `may_need_ucs2`, `may_exceed_segments`, `formatting_forces_ucs2`.
    pub code: &'static str,
    pub message: String,
    /// For `may_exceed_segments` and `may_need_ucs2`: the worst-case segments.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub segments: Option<usize>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PreviewOut {
    pub text: String,
    /// `gsm7` or `ucs2`.
    pub encoding: &'static str,
    pub segments: usize,
    pub characters: usize,
    /// Each route's parts.
    pub parts: BTreeMap<String, Vec<String>>,
    pub warnings: Vec<Warning>,
}

/// What a variable holds, as far as the template tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    String,
    Number,
    Money,
    Date,
}

impl Kind {
    fn default_len(self) -> usize {
        match self {
            Kind::String | Kind::Date => 20,
            Kind::Number => 12,
            Kind::Money => 16,
        }
    }

    fn sample(self) -> Value {
        match self {
            Kind::String => json!("Name"),
            Kind::Number => json!(12),
            Kind::Money => json!(1000),
            Kind::Date => json!(crate::message::to_rfc3339(crate::message::now_ms() + 86_400_000)),
        }
    }
}

/// The `{{ ... }}` blocks of a template, each as (its source, the variable it starts with, its filters).
fn blocks(source: &str) -> Vec<(String, String, Vec<String>)> {
    let mut out = Vec::new();
    let mut rest = source;
    while let Some(i) = rest.find("{{") {
        let Some(j) = rest[i..].find("}}") else { break };
        let block = &rest[i..i + j + 2];
        let inner = block[2..block.len() - 2].trim_matches(|c: char| c == '-' || c == '+' || c.is_whitespace());
        let head: String = inner.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
        let filters = inner
            .split('|')
            .skip(1)
            .map(|f| f.trim().chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect())
            .collect();
        out.push((block.to_string(), head, filters));
        rest = &rest[i + j + 2..];
    }
    out
}

fn kind_of(var: &str, blocks: &[(String, String, Vec<String>)], data: Option<&Value>) -> Kind {
    let filters = blocks.iter().filter(|b| b.1 == var).flat_map(|b| b.2.iter());
    for f in filters {
        match f.as_str() {
            "money" => return Kind::Money,
            "date" | "time" | "datetime" => return Kind::Date,
            "plural" => return Kind::Number,
            _ => {}
        }
    }
    match data.and_then(|d| d.get(var)) {
        Some(Value::Number(_)) => Kind::Number,
        _ => Kind::String,
    }
}

fn field(name: impl Into<String>, message: impl Into<String>) -> Problem {
    Problem::validation(vec![FieldError { field: name.into(), message: message.into() }])
}

fn template_problem(e: TemplateError) -> Problem {
    match e {
        TemplateError::Missing(var) => {
            field(format!("data.{var}"), format!("variable `{var}` is missing from the data"))
        }
        TemplateError::Syntax(m) | TemplateError::Render(m) => field("text", m),
    }
}

fn segments(text: &str, alphabets: Alphabets) -> usize {
    sms::plan(text, alphabets).parts.len()
}

/// Render a template with sample or given data, plan it for routes, and warn what its variables could do.
#[utoipa::path(post, path = "/v1/templates/preview", tag = "templates", request_body = PreviewRequest,
    responses(
        (status = 200, body = PreviewOut),
        (status = 403, description = "The key lacks the send or read scope", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A syntax error (line, column), a missing variable (`data.<name>`), an unknown route or zone", body = Problem, content_type = "application/problem+json")),
    security(("api_key" = [])))]
pub async fn preview(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Arc<Caller>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<PreviewOut>, Problem> {
    caller.require(&[Scope::Send, Scope::Read])?;
    let req: PreviewRequest = super::body::json(&super::body::bytes(&state, body)?)?;
    let template = Template::compile(&req.text).map_err(template_problem)?;
    let tz = match req.tz.as_deref() {
        None => chrono_tz::UTC,
        Some(z) => z.parse::<chrono_tz::Tz>().map_err(|_| field("tz", format!("{z:?} is not an IANA time zone")))?,
    };
    let locale = req.locale.clone().unwrap_or_else(|| "ru".into());
    if let Some(d) = &req.data
        && !d.is_object()
    {
        return Err(field("data", "must be an object"));
    }
    let mut assumed = BTreeMap::new();
    for (var, a) in &req.assume {
        let alphabet = match a.alphabet.as_deref() {
            None => None,
            Some(s) => Some(
                Encoding::parse(s)
                    .ok_or_else(|| field(format!("assume.{var}.alphabet"), "must be \"gsm7\" or \"ucs2\""))?,
            ),
        };
        assumed.insert(var.clone(), (a.max_len, alphabet));
    }
    let max_segments = req.max_segments.unwrap_or(1);
    if max_segments == 0 {
        return Err(field("max_segments", "must be at least 1"));
    }
    let routes = state.dispatcher.snapshot().into_iter().map(|r| r.name).collect::<Vec<_>>();
    let chosen = match &req.routes {
        None => routes,
        Some(names) => {
            for (i, n) in names.iter().enumerate() {
                if !routes.contains(n) {
                    return Err(field(format!("routes[{i}]"), format!("no route named {n:?}")));
                }
            }
            names.clone()
        }
    };

    let blocks = blocks(&req.text);
    let data = match &req.data {
        Some(d) => d.clone(),
        None => {
            let map = template
                .variables()
                .iter()
                .map(|v| (v.clone(), kind_of(v, &blocks, None).sample()))
                .collect::<serde_json::Map<_, _>>();
            Value::Object(map)
        }
    };
    let text = template.render(&data, &locale, tz).map_err(template_problem)?;
    let plan = sms::plan(&text, Alphabets::Any);
    let mut warnings = Vec::new();

    let non_gsm: Vec<char> = text.chars().filter(|c| sms::text::gsm7_septets(*c).is_none()).collect();
    if !non_gsm.is_empty() && non_gsm.iter().all(|c| matches!(*c, NBSP | '\u{202F}' | '₽')) {
        warnings.push(Warning {
            variable: None,
            code: "formatting_forces_ucs2",
            message: "only the formatting (a no-break space or ₽ from `money`) is outside GSM 7-bit, and it makes the text UCS-2".into(),
            segments: None,
        });
    }
    for var in template.variables() {
        let kind = kind_of(var, &blocks, Some(&data));
        let (max_len, alphabet) = assumed.get(var).cloned().unwrap_or((None, None));
        // What this variable's blocks print now, and how much longer its likely values are.
        let mut extra = 0;
        for (block, _, _) in blocks.iter().filter(|b| &b.1 == var) {
            let now = Template::compile(block)
                .and_then(|t| t.render(&data, &locale, tz))
                .map(|s| s.chars().count())
                .unwrap_or(0);
            extra += max_len.unwrap_or(kind.default_len()).saturating_sub(now);
        }
        let may_ucs2 = plan.encoding == Encoding::Gsm7
            && (alphabet == Some(Encoding::Ucs2) || (kind == Kind::String && alphabet.is_none()));
        if may_ucs2 {
            let worst = segments(&format!("{text}{}", "я".repeat(extra)), Alphabets::Ucs2);
            warnings.push(Warning {
                variable: Some(var.clone()),
                code: "may_need_ucs2",
                message: format!(
                    "`{var}` is inserted into a GSM 7-bit text; a value with Cyrillic or other non-GSM characters makes it UCS-2 ({worst} segments at worst)"
                ),
                segments: Some(worst),
            });
        }
        let filler = if alphabet == Some(Encoding::Ucs2) { "я" } else { "x" };
        let worst = segments(&format!("{text}{}", filler.repeat(extra)), Alphabets::Any);
        if worst > max_segments {
            warnings.push(Warning {
                variable: Some(var.clone()),
                code: "may_exceed_segments",
                message: format!(
                    "`{var}` at {} characters would make the text {worst} segments, more than {max_segments}",
                    max_len.unwrap_or(kind.default_len())
                ),
                segments: Some(worst),
            });
        }
    }

    let parts = chosen.into_iter().map(|r| (r, plan.parts.clone())).collect();
    Ok(Json(PreviewOut {
        encoding: plan.encoding.as_str(),
        segments: plan.parts.len(),
        characters: text.chars().count(),
        text,
        parts,
        warnings,
    }))
}
