//! A request's JSON body, read the same way by every endpoint that takes
//! one: over the size limit is a 413, a body that is not JSON a 400, and a
//! field of the wrong type or shape a 422 that names it by its path
//! (`messages[3].to`).

use super::AppState;
use super::problem::Problem;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use serde::de::DeserializeOwned;

/// The body's bytes, or the 413 (over `server.max_body_bytes`) or 400
/// that says why it could not be read.
pub(super) fn bytes(state: &AppState, body: Result<Bytes, BytesRejection>) -> Result<Bytes, Problem> {
    body.map_err(|e| match e {
        BytesRejection::FailedToBufferBody(_) => {
            Problem::too_large(format!("the body is over the limit of {} bytes", state.limits().max_body_bytes))
        }
        other => Problem::bad_json(other.body_text()),
    })
}

/// `body` as JSON, then as `T`.
pub(super) fn json<T: DeserializeOwned>(body: &[u8]) -> Result<T, Problem> {
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| Problem::bad_json(e.to_string()))?;
    serde_path_to_error::deserialize(value).map_err(field_problem)
}

/// As `json`, from the request: an empty body (only whitespace) reads as
/// `{}`, for endpoints whose every field is optional.
pub(super) fn json_or_empty<T: DeserializeOwned>(
    state: &AppState,
    body: Result<Bytes, BytesRejection>,
) -> Result<T, Problem> {
    let body = bytes(state, body)?;
    json(if body.iter().all(u8::is_ascii_whitespace) { b"{}" } else { &body })
}

/// The 422 for a value that does not fit its type, naming the field.
pub(super) fn field_problem(e: serde_path_to_error::Error<serde_json::Error>) -> Problem {
    let path = e.path().to_string();
    let inner = e.into_inner();
    let msg = inner.to_string();
    // serde_json appends " at line L column C", which means nothing for a Value.
    let msg = msg.split(" at line ").next().unwrap_or(&msg).to_string();
    // The whole body, or a key that is itself empty ({"": ...}): still a field the client can find.
    let field = if path == "." || path.is_empty() { "body".to_string() } else { path };
    Problem::field(field, msg)
}
