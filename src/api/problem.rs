//! Errors as `application/problem+json` (RFC 9457): a stable `type`, a human
//! `detail`, and for validation errors every offending field. Client input is
//! quoted back only as a short prefix (`quote`), and field messages are capped.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FieldError {
    /// Where in the request, e.g. `messages[2].to`.
    pub field: String,
    pub message: String,
}

/// The body of every error answer.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem, e.g. `urn:smsgw:problem:validation`.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: &'static str,
    pub status: u16,
    pub detail: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    /// For conflicts about a message: its current status.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_status: Option<crate::message::Status>,
    /// For a 403: the scope the request needs (`send`, `read`, `metrics`, `admin`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub required_scope: Option<&'static str>,
    /// For a 429: seconds until a retry can succeed, sent as `Retry-After`.
    #[serde(skip)]
    pub retry_after: Option<u32>,
}

/// Most characters of a client's input an error quotes back.
const QUOTE_CHARS: usize = 40;
/// Longest field message; longer ones (a library's error quoting a whole
/// value) are cut, so an error never echoes an oversized input.
const MAX_MESSAGE_BYTES: usize = 300;

/// `input` quoted for an error message: whole when short, else its start
/// and its length, so a megabyte of input gives a line, not a megabyte.
pub fn quote(input: &str) -> String {
    match input.char_indices().nth(QUOTE_CHARS) {
        None => format!("{input:?}"),
        Some((end, _)) => format!("{:?}… ({} bytes)", &input[..end], input.len()),
    }
}

/// `s` cut to at most `MAX_MESSAGE_BYTES` (at a character boundary).
fn capped(mut s: String) -> String {
    if s.len() > MAX_MESSAGE_BYTES {
        let mut end = MAX_MESSAGE_BYTES;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push_str("… (cut)");
    }
    s
}

impl Problem {
    pub fn new(status: StatusCode, slug: &str, title: &'static str, detail: impl Into<String>) -> Problem {
        Problem {
            kind: format!("urn:smsgw:problem:{slug}"),
            title,
            status: status.as_u16(),
            detail: detail.into(),
            errors: Vec::new(),
            current_status: None,
            required_scope: None,
            retry_after: None,
        }
    }

    pub fn bad_json(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::BAD_REQUEST, "malformed-json", "The body is not valid JSON", capped(detail.into()))
    }

    pub fn validation(errors: Vec<FieldError>) -> Problem {
        let errors: Vec<FieldError> =
            errors.into_iter().map(|e| FieldError { field: capped(e.field), message: capped(e.message) }).collect();
        let detail = errors.iter().map(|e| format!("{}: {}", e.field, e.message)).collect::<Vec<_>>().join("; ");
        let mut p = Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "validation", "The request is not valid", detail);
        p.errors = errors;
        p
    }

    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Problem {
        Problem::validation(vec![FieldError { field: field.into(), message: message.into() }])
    }

    pub fn not_found(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::NOT_FOUND, "not-found", "Not found", capped(detail.into()))
    }

    pub fn unauthorized(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::UNAUTHORIZED, "unauthorized", "Missing or unknown API key", detail)
    }

    /// The key lacks the scope this request needs.
    pub fn forbidden(scope: &'static str, detail: impl Into<String>) -> Problem {
        let mut p = Problem::new(StatusCode::FORBIDDEN, "forbidden", "The API key lacks a scope", detail);
        p.required_scope = Some(scope);
        p
    }

    /// Over a limit (`slug` says which); `wait` is when a retry can succeed,
    /// rounded up to whole seconds for `Retry-After`.
    pub fn too_many(slug: &str, detail: impl Into<String>, wait: std::time::Duration) -> Problem {
        let mut p = Problem::new(StatusCode::TOO_MANY_REQUESTS, slug, "Over a limit of this API key", detail);
        p.retry_after = Some(u32::try_from(wait.as_millis().div_ceil(1000)).unwrap_or(u32::MAX).max(1));
        p
    }

    pub fn unavailable(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "The gateway cannot take this now", detail)
    }

    pub fn too_large(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::PAYLOAD_TOO_LARGE, "too-large", "The request is too large", detail)
    }
}

impl From<crate::store::StoreError> for Problem {
    fn from(e: crate::store::StoreError) -> Self {
        tracing::error!(error = %e, "store error answered with 503");
        Problem::unavailable(format!("message store unavailable: {e}"))
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp = (status, axum::Json(&self)).into_response();
        resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        if let Some(secs) = self.retry_after {
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_are_short() {
        assert_eq!(quote("+7916"), "\"+7916\"");
        let long = "я".repeat(100_000);
        let q = quote(&long);
        assert!(q.starts_with(&format!("\"{}\"…", "я".repeat(40))) && q.ends_with("(200000 bytes)"), "{q}");
        let p = Problem::field("priority", format!("unknown variant `{long}`"));
        assert!(p.detail.len() < 400 && p.errors[0].message.len() < 400, "{}", p.detail.len());
    }
}
