//! An inbound message in its conversation, in the transaction that stores
//! it: the message it answers (the latest one sent to its number within the
//! reply window), what its text means (`replies`), and what that asks for:
//! an opt-out recorded or taken back, the help text or a confirmation
//! queued back to the sender through the route it came in on. Its
//! `inbound.received` event belongs to the key whose message it answers.
//! All of it commits with the inbound row or not at all.

use super::StoreError;
use super::events::{self, NewEvent};
use super::messages::{self, NewMessage};
use super::optouts::{self, OptOutChange};
use crate::message::{EventKind, Millis, OptOutScope, Priority, SYSTEM_KEY};
use crate::replies::{Keyword, Meaning, ReplyRules};
use rusqlite::{Connection, OptionalExtension, params};

/// Auto-replies one number gets at most per [`AUTO_REPLY_PERIOD_MS`]: two
/// machines that answer each other's texts stop there, not at the bill.
const AUTO_REPLY_LIMIT: i64 = 5;
const AUTO_REPLY_PERIOD_MS: Millis = 3_600_000;

/// The message an inbound one answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Linked {
    pub message_id: i64,
    pub api_key: String,
}

/// An inbound message as its conversation sees it.
#[derive(Debug, Clone)]
pub(super) struct Reply {
    pub meaning: Meaning,
    pub linked: Option<Linked>,
    /// The sender in E.164, when it is a number (an alphanumeric sender
    /// cannot be answered, opted out or linked).
    number: Option<String>,
}

impl Reply {
    /// Read `body` from `from` and find the message it answers; `None`
    /// for a PDU that could not be decoded (no sender, no text).
    pub fn read(
        c: &Connection,
        from: &str,
        body: Option<&str>,
        rules: &ReplyRules,
        now: Millis,
    ) -> rusqlite::Result<Reply> {
        let Some(body) = body.filter(|_| !from.is_empty()) else {
            return Ok(Reply { meaning: Meaning::default(), linked: None, number: None });
        };
        let number = crate::sms::normalise(from, &rules.region).ok();
        let linked = match &number {
            Some(n) => latest_sent_to(c, n, now - rules.window_ms)?,
            None => None,
        };
        Ok(Reply { meaning: rules.read(body), linked, number })
    }

    /// Write what the stored inbound message `inbound_id` causes: its
    /// event, and its keyword's action.
    /// `to` is the number (or SIM) it came to; an answer leaves from there.
    pub fn act(
        &self,
        c: &Connection,
        inbound_id: i64,
        route: &str,
        to: &str,
        rules: &ReplyRules,
        now: Millis,
    ) -> Result<(), StoreError> {
        let api_key = self.linked.as_ref().map(|l| l.api_key.as_str());
        let event = NewEvent { api_key, inbound_id: Some(inbound_id), ..NewEvent::default() };
        events::emit(c, EventKind::InboundReceived, now, &event)?;
        let (Some(keyword), Some(number)) = (self.meaning.keyword, &self.number) else {
            return Ok(());
        };
        let change = |scope: &str, opted_out: bool| OptOutChange {
            number: number.clone(),
            scope: scope.to_string(),
            source: "keyword".into(),
            route: Some(route.to_string()),
            api_key: api_key.map(str::to_string),
            inbound_id: Some(inbound_id),
            opted_out,
        };
        let answer = match keyword {
            Keyword::Optout | Keyword::OptoutAll => {
                // A plain opt-out is recorded as `promotional`; the site's
                // `[policy] optout_scope` decides, when a message is checked,
                // whether that stops more.
                let scope = if keyword == Keyword::OptoutAll { OptOutScope::All } else { OptOutScope::Promotional };
                let scope = scope.as_str();
                optouts::set(c, &change(scope, true), now)?;
                rules.optout_reply.as_deref()
            }
            Keyword::Optin => {
                for scope in ["promotional", "all"] {
                    optouts::set(c, &change(scope, false), now)?;
                }
                rules.optin_reply.as_deref()
            }
            Keyword::Help => Some(rules.help_text.as_str()).filter(|t| !t.is_empty()),
        };
        if let Some(text) = answer {
            let reference = format!("inbound:{inbound_id}:{}", keyword.as_str());
            auto_reply(c, number, text, (route, to), &reference, rules, now)?;
        }
        Ok(())
    }
}

/// The latest message sent (or on its way) to `number` created since
/// `since`, smsgw's own auto-replies aside: a "Да" after a HELP still
/// answers the question before it. A message that never went out
/// (cancelled, suppressed, or queued and not yet tried) asked nothing.
fn latest_sent_to(c: &Connection, number: &str, since: Millis) -> rusqlite::Result<Option<Linked>> {
    c.prepare_cached(
        "SELECT id, api_key FROM messages INDEXED BY messages_recipient
         WHERE recipient = ?1 AND created_at >= ?2 AND api_key <> ?3
           AND status NOT IN ('cancelled', 'suppressed') AND NOT (status = 'queued' AND attempts = 0)
         ORDER BY id DESC LIMIT 1",
    )?
    .query_row(params![number, since, SYSTEM_KEY], |r| Ok(Linked { message_id: r.get(0)?, api_key: r.get(1)? }))
    .optional()
}

/// Queue `text` to `number` as smsgw's own transactional message, through
/// `route` and from `via`, the address the question came to (see
/// `channel::Outbound::via`), unless the number had its fill of
/// auto-replies lately.
fn auto_reply(
    c: &Connection,
    number: &str,
    text: &str,
    (route, via): (&str, &str),
    reference: &str,
    rules: &ReplyRules,
    now: Millis,
) -> Result<(), StoreError> {
    let recent: i64 = c
        .prepare_cached(
            "SELECT count(*) FROM messages INDEXED BY messages_recipient
             WHERE recipient = ?1 AND api_key = ?2 AND created_at >= ?3",
        )?
        .query_row(params![number, SYSTEM_KEY, now - AUTO_REPLY_PERIOD_MS], |r| r.get(0))?;
    if recent >= AUTO_REPLY_LIMIT {
        tracing::warn!(%number, %reference, "no auto-reply: the number had {recent} in the last hour");
        return Ok(());
    }
    let (encoding, segments) = crate::sms::count_parts(text);
    let msg = NewMessage {
        to: number.to_string(),
        from: None,
        text: text.to_string(),
        encoding,
        segments: segments as u32,
        priority: Priority::Transactional,
        route: route.to_string(),
        reference: Some(reference.to_string()),
        send_at: None,
        valid_until: now + rules.reply_validity_ms,
        callback_url: None,
        tz: None,
        receipt: None,
        via: Some(via.to_string()).filter(|v| !v.is_empty()),
    };
    // Policy never stops smsgw's own answers (see `messages::enqueue`).
    messages::enqueue(c, SYSTEM_KEY, None, &[msg], None, &crate::config::Policy::default(), now)?;
    Ok(())
}
