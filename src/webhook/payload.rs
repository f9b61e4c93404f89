//! The body of a delivery, one shape for every event:
//! `{"id": "evt_<n>", "type": "<kind>", "timestamp": "<RFC 3339>", "data": {...}}`.
//!
//! Built at each attempt from the event row and the rows it points at as
//! they are then (the outbox keeps one small row per event, not a body per
//! subscription). `data` is the API's own JSON for the thing: a message as
//! `GET /v1/messages` lists it (its parts and history are a `GET` away),
//! with the status a status event reports (its error only when that is
//! still the message's status), as it stands for `message.replaced`; an
//! inbound message as `GET /v1/inbound/{id}`; the opt-out or consent
//! change or the route's state as the event recorded them.

use crate::api::inbound::InboundOut;
use crate::api::messages::MessageOut;
use crate::message::{EventKind, Status, to_rfc3339};
use crate::store::EventRow;
use serde::Serialize;
use serde_json::Value;

/// The id a receiver dedupes by: the same on every attempt.
pub fn event_id(id: i64) -> String {
    format!("evt_{id}")
}

#[derive(Serialize)]
struct Envelope<'a> {
    id: String,
    #[serde(rename = "type")]
    kind: &'a str,
    timestamp: String,
    data: Value,
}

/// The status a message event reports.
fn status_of(kind: EventKind) -> Option<Status> {
    Status::ALL.into_iter().find(|s| EventKind::for_status(*s) == Some(kind))
}

/// The JSON body for `e`.
pub fn body(e: EventRow) -> Vec<u8> {
    let raw = |d: &Option<String>| d.as_deref().and_then(|d| serde_json::from_str(d).ok()).unwrap_or(Value::Null);
    let data = match (e.kind, e.message, e.inbound) {
        (EventKind::InboundReceived, _, Some(i)) => serde_json::to_value(InboundOut::from(i)).unwrap_or(Value::Null),
        (kind, Some(mut m), _) if kind.is_message() => {
            let status = status_of(kind).unwrap_or(m.status);
            if status != m.status {
                m.status = status;
                m.error_code = None;
                m.error_text = None;
            }
            serde_json::to_value(MessageOut::from_view(m, false)).unwrap_or(Value::Null)
        }
        _ => raw(&e.data),
    };
    let envelope = Envelope { id: event_id(e.id), kind: e.kind.as_str(), timestamp: to_rfc3339(e.at), data };
    serde_json::to_vec(&envelope).unwrap_or_default()
}
