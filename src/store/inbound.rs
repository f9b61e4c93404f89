//! Inbound messages in SQL: single messages go straight in; parts of a
//! concatenated message wait in `inbound_parts` until all have arrived (or
//! until they are too old), then become one message. Everything is on disk
//! before the route acknowledges it to the network. A PDU that could not be
//! decoded is kept too, raw and with the reason, as an inbound message of
//! its own. A whole message is linked to the message it answers and acted
//! on (`conversation`) in the transaction that stores it.

use super::StoreError;
use super::conversation;
use crate::message::{Millis, SYSTEM_KEY};
use crate::replies::ReplyRules;
use rusqlite::{Connection, OptionalExtension, params};

/// One received SMS (or one part of a concatenated one).
#[derive(Debug, Clone)]
pub struct InboundPart {
    pub route: String,
    pub from: String,
    pub to: String,
    pub text: String,
    /// (reference, total, seq 1-based) for a part of a concatenated message.
    pub concat: Option<(u16, u8, u8)>,
    /// The network's timestamp, if it gave one.
    pub sent_at: Option<Millis>,
    /// Set for a PDU that could not be decoded: what came, and why it could not be read.
    pub undecodable: Option<Undecodable>,
}

/// A received PDU as it came (hex, SMSC part included) and why it could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Undecodable {
    pub pdu: String,
    pub reason: String,
}

#[derive(Debug, Clone)]
pub struct InboundView {
    pub id: i64,
    pub route: String,
    pub from: String,
    pub to: String,
    pub text: String,
    pub parts: u32,
    /// False when parts were missing and the timeout stored what arrived.
    pub complete: bool,
    pub sent_at: Option<Millis>,
    pub received_at: Millis,
    pub undecodable: Option<Undecodable>,
    /// The message this one answers, when it came within the window.
    pub reply_to: Option<ReplyTo>,
    /// The keyword it is (`optout`, `optout_all`, `optin`, `help`).
    pub keyword: Option<String>,
    /// The answer it gives (`yes`, `no`).
    pub intent: Option<String>,
}

/// The message an inbound message answers: its id, and the key that sent
/// it and the client's reference while the message is still kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyTo {
    pub message_id: i64,
    pub api_key: Option<String>,
    pub reference: Option<String>,
}

fn insert(
    c: &Connection,
    p: &InboundPart,
    body: &str,
    parts: u32,
    complete: bool,
    rules: &ReplyRules,
    now: Millis,
) -> Result<i64, StoreError> {
    let readable = Some(body).filter(|_| p.undecodable.is_none());
    let reply = conversation::Reply::read(c, &p.from, readable, rules, now)?;
    c.prepare_cached(
        "INSERT INTO inbound (route, sender, recipient, body, parts, complete, sent_at, received_at, pdu, undecodable,
                              reply_to, api_key, keyword, intent)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
    )?
    .execute(params![
        p.route,
        p.from,
        p.to,
        body,
        parts,
        complete,
        p.sent_at,
        now,
        p.undecodable.as_ref().map(|u| &u.pdu),
        p.undecodable.as_ref().map(|u| &u.reason),
        reply.linked.as_ref().map(|l| l.message_id),
        reply.linked.as_ref().map(|l| &l.api_key),
        reply.meaning.keyword.map(|k| k.as_str()),
        reply.meaning.intent.map(|i| i.as_str()),
    ])?;
    let id = c.last_insert_rowid();
    if reply.linked.is_none() {
        // Linked to no message: the keys that had written to the sender
        // may see it (smsgw's own answers give no key).
        c.prepare_cached(
            "INSERT INTO inbound_keys (api_key, inbound_id)
             SELECT DISTINCT api_key, ?2 FROM messages INDEXED BY messages_recipient
             WHERE recipient = ?1 AND api_key <> ?3",
        )?
        .execute(params![p.from, id, SYSTEM_KEY])?;
    }
    reply.act(c, id, &p.route, &p.to, rules, now)?;
    Ok(id)
}

/// Store a part; returns the inbound message id once it is complete.
pub(super) fn record(
    c: &Connection,
    p: &InboundPart,
    rules: &ReplyRules,
    now: Millis,
) -> Result<Option<i64>, StoreError> {
    let Some((reference, total, seq)) = p.concat.filter(|(_, total, _)| *total > 1 && p.undecodable.is_none()) else {
        return Ok(Some(insert(c, p, &p.text, 1, true, rules, now)?));
    };
    c.prepare_cached(
        "INSERT OR REPLACE INTO inbound_parts (route, sender, reference, total, seq, recipient, body, sent_at, received_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![p.route, p.from, reference, total, seq, p.to, p.text, p.sent_at, now])?;
    let have: i64 = c
        .prepare_cached(
            "SELECT count(*) FROM inbound_parts WHERE route = ?1 AND sender = ?2 AND reference = ?3 AND total = ?4",
        )?
        .query_row(params![p.route, p.from, reference, total], |r| r.get(0))?;
    if have < total as i64 {
        return Ok(None);
    }
    Ok(Some(assemble(c, &p.route, &p.from, reference, total, rules, now)?))
}

/// Join the parts present (in order) into one inbound message.
fn assemble(
    c: &Connection,
    route: &str,
    sender: &str,
    reference: u16,
    total: u8,
    rules: &ReplyRules,
    now: Millis,
) -> Result<i64, StoreError> {
    let rows: Vec<(u8, String, String, Option<Millis>)> = c
        .prepare_cached(
            "DELETE FROM inbound_parts WHERE route = ?1 AND sender = ?2 AND reference = ?3 AND total = ?4
             RETURNING seq, recipient, body, sent_at",
        )?
        .query_map(params![route, sender, reference, total], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
        .collect::<Result<_, _>>()?;
    let mut rows = rows;
    rows.sort_by_key(|r| r.0);
    let complete = rows.len() == total as usize;
    let body: String = rows.iter().map(|r| r.2.as_str()).collect();
    let first = InboundPart {
        route: route.to_string(),
        from: sender.to_string(),
        to: rows.first().map(|r| r.1.clone()).unwrap_or_default(),
        text: String::new(),
        concat: None,
        sent_at: rows.first().and_then(|r| r.3),
        undecodable: None,
    };
    insert(c, &first, &body, rows.len() as u32, complete, rules, now)
}

/// Concatenated messages whose parts stopped coming: store what arrived.
pub(super) fn flush_stale(
    c: &Connection,
    older_than: Millis,
    rules: &ReplyRules,
    now: Millis,
) -> Result<usize, StoreError> {
    let groups: Vec<(String, String, u16, u8)> = c
        .prepare_cached(
            "SELECT DISTINCT route, sender, reference, total FROM inbound_parts WHERE received_at < ?1 LIMIT 1000",
        )?
        .query_map(params![older_than], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
        .collect::<Result<_, _>>()?;
    for (route, sender, reference, total) in &groups {
        let id = assemble(c, route, sender, *reference, *total, rules, now)?;
        tracing::warn!(inbound = id, %route, %sender, "stored an incomplete concatenated message after its parts stopped coming");
    }
    Ok(groups.len())
}

fn view(r: &rusqlite::Row<'_>) -> rusqlite::Result<InboundView> {
    Ok(InboundView {
        id: r.get(0)?,
        route: r.get(1)?,
        from: r.get(2)?,
        to: r.get(3)?,
        text: r.get(4)?,
        parts: r.get(5)?,
        complete: r.get(6)?,
        sent_at: r.get(7)?,
        received_at: r.get(8)?,
        undecodable: match (r.get::<_, Option<String>>(9)?, r.get::<_, Option<String>>(10)?) {
            (Some(pdu), Some(reason)) => Some(Undecodable { pdu, reason }),
            _ => None,
        },
        reply_to: r
            .get::<_, Option<i64>>(11)?
            .map(|message_id| -> rusqlite::Result<ReplyTo> {
                Ok(ReplyTo { message_id, api_key: r.get(12)?, reference: r.get(13)? })
            })
            .transpose()?,
        keyword: r.get(14)?,
        intent: r.get(15)?,
    })
}

/// An inbound message's columns, with the key and reference of the message
/// it answers (`m`, joined on `reply_to`; gone once retention pruned it).
const FROM: &str = "SELECT i.id, i.route, i.sender, i.recipient, i.body, i.parts, i.complete, i.sent_at, i.received_at,
            i.pdu, i.undecodable, i.reply_to, m.api_key, m.reference, i.keyword, i.intent
     FROM inbound i LEFT JOIN messages m ON m.id = i.reply_to";

/// The replies an API key may see: those linked to its messages (the key is
/// kept on the inbound row, so this holds after the message is pruned); and,
/// of those linked to none (stored before linking, or after the window), the
/// ones from a number the key had sent a message to before they arrived
/// (written to `inbound_keys` when they arrive). `?1` is the key, or NULL
/// for every inbound message.
pub(super) fn get(c: &Connection, id: i64, owner: Option<&str>) -> rusqlite::Result<Option<InboundView>> {
    c.prepare_cached(&format!(
        "{FROM} WHERE i.id = ?2 AND (?1 IS NULL OR i.api_key = ?1
                 OR EXISTS (SELECT 1 FROM inbound_keys k WHERE k.api_key = ?1 AND k.inbound_id = i.id))"
    ))?
    .query_row(params![owner, id], view)
    .optional()
}

/// Newest first, below `before_id` when given; with `owner`, only the
/// replies it may see (as in `get`). A key's page reads its linked replies
/// and its unlinked ones from one index each, so it walks neither every
/// other key's inbound nor every unlinked reply.
pub(super) fn list(
    c: &Connection,
    owner: Option<&str>,
    before_id: Option<i64>,
    limit: usize,
) -> rusqlite::Result<Vec<InboundView>> {
    let args = params![owner, before_id.unwrap_or(i64::MAX), limit as i64];
    if owner.is_none() {
        return c
            .prepare_cached(&format!("{FROM} WHERE i.id < ?2 ORDER BY i.id DESC LIMIT ?3"))?
            .query_map(args, view)?
            .collect();
    }
    c.prepare_cached(&format!(
        "{FROM} WHERE i.id IN (
            SELECT id FROM (SELECT id FROM inbound INDEXED BY inbound_by_key
                            WHERE api_key = ?1 AND id < ?2 ORDER BY id DESC LIMIT ?3)
            UNION ALL
            SELECT id FROM (SELECT inbound_id AS id FROM inbound_keys
                            WHERE api_key = ?1 AND inbound_id < ?2 ORDER BY inbound_id DESC LIMIT ?3))
         ORDER BY i.id DESC LIMIT ?3"
    ))?
    .query_map(args, view)?
    .collect()
}
