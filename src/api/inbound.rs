//! `/v1/inbound`: messages people sent to us, from every route, newest
//! first with cursor pagination, each with the message it answers and what
//! its text means (a keyword, a yes or no). Needs the `read` scope; a key
//! without `admin` sees only the replies to its own messages (see the
//! store's rule: linked to one of them; or, linked to none, from a number
//! the key had sent a message to before the reply arrived).

use super::AppState;
use super::auth::Caller;
use super::problem::Problem;
use crate::config::Scope;
use crate::message::to_rfc3339;
use crate::store::{InboundView, ReplyTo};
use axum::extract::{Path, Query, State};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::ToSchema;

/// A received message (concatenated parts already joined).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct InboundOut {
    pub id: i64,
    /// The route (modem pool or carrier) it came in on.
    pub route: String,
    pub from: String,
    /// The number or modem it was sent to.
    pub to: String,
    pub text: String,
    pub parts: u32,
    /// False when some parts never arrived and the rest were stored after
    /// the reassembly timeout.
    pub complete: bool,
    /// The network's timestamp, when it gave one.
    pub sent_at: Option<String>,
    pub received_at: String,
    /// Present when the device handed over a PDU that could not be decoded:
    /// it is kept here as it came, and `text` and `from` are empty.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub undecodable: Option<UndecodableOut>,
    /// The message this one answers: the latest sent to its number within
    /// `[replies] window_hours` before it came; null when none.
    pub in_reply_to: Option<InReplyTo>,
    /// The keyword the text is: `optout`, `optout_all`, `optin` or `help`.
    pub keyword: Option<String>,
    /// The answer the text gives: `yes` or `no`.
    pub intent: Option<String>,
}

/// The message an inbound one answers.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct InReplyTo {
    pub message_id: i64,
    /// The API key that sent it (null once retention removed the message).
    pub key: Option<String>,
    /// The client's `reference` of that message.
    pub reference: Option<String>,
}

impl From<ReplyTo> for InReplyTo {
    fn from(r: ReplyTo) -> Self {
        InReplyTo { message_id: r.message_id, key: r.api_key, reference: r.reference }
    }
}

/// A PDU that could not be decoded.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct UndecodableOut {
    /// Why it could not be decoded (the field and octet that were wrong).
    pub reason: String,
    /// The PDU as the device gave it, in hex (SMSC part included).
    pub pdu: String,
}

impl From<InboundView> for InboundOut {
    fn from(v: InboundView) -> Self {
        InboundOut {
            id: v.id,
            route: v.route,
            from: v.from,
            to: v.to,
            text: v.text,
            parts: v.parts,
            complete: v.complete,
            sent_at: v.sent_at.map(to_rfc3339),
            received_at: to_rfc3339(v.received_at),
            undecodable: v.undecodable.map(|u| UndecodableOut { reason: u.reason, pdu: u.pdu }),
            in_reply_to: v.reply_to.map(InReplyTo::from),
            keyword: v.keyword,
            intent: v.intent,
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct InboundList {
    pub messages: Vec<InboundOut>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct InboundParams {
    /// Page size, 1 to 1000 (default 100).
    pub limit: Option<String>,
    /// `next_cursor` from the previous page.
    pub cursor: Option<String>,
}

/// Received messages, newest first.
#[utoipa::path(get, path = "/v1/inbound", tag = "inbound", params(InboundParams),
    responses((status = 200, body = InboundList), (status = 403, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json")),
    security(("api_key" = [])))]
pub async fn list_inbound(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Arc<Caller>>,
    Query(p): Query<InboundParams>,
) -> Result<Json<InboundList>, Problem> {
    caller.require(&[Scope::Read])?;
    let limit = match &p.limit {
        None => 100,
        Some(l) => match l.parse::<usize>() {
            Ok(n) if (1..=1000).contains(&n) => n,
            _ => {
                return Err(Problem::field(
                    "limit",
                    format!("{} is not a number from 1 to 1000", super::problem::quote(l)),
                ));
            }
        },
    };
    let before = match &p.cursor {
        None => None,
        Some(c) => Some(c.parse::<i64>().map_err(|_| {
            Problem::field("cursor", format!("{} is not a cursor from a previous page", super::problem::quote(c)))
        })?),
    };
    let rows = state.store.list_inbound(caller.owner().map(str::to_string), before, limit).await?;
    let next_cursor = if rows.len() == limit { rows.last().map(|r| r.id.to_string()) } else { None };
    Ok(Json(InboundList { messages: rows.into_iter().map(InboundOut::from).collect(), next_cursor }))
}

/// One received message.
#[utoipa::path(get, path = "/v1/inbound/{id}", tag = "inbound", params(("id" = i64, Path, description = "Inbound message id")),
    responses((status = 200, body = InboundOut), (status = 403, body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem, content_type = "application/problem+json")),
    security(("api_key" = [])))]
pub async fn get_inbound(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Arc<Caller>>,
    Path(id): Path<String>,
) -> Result<Json<InboundOut>, Problem> {
    caller.require(&[Scope::Read])?;
    let missing = || Problem::not_found(format!("no inbound message with id {}", super::problem::quote(&id)));
    let n = id.parse::<i64>().map_err(|_| missing())?;
    state.store.inbound(n, caller.owner().map(str::to_string)).await?.map(|v| Json(v.into())).ok_or_else(missing)
}
