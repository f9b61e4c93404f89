//! Long messages that SMPP server accounts submit in parts (UDH or SAR),
//! joined durably. The first part of a set makes the message (through
//! `messages::insert`, like any other) and holds it: queued but never due.
//! Every part is a `smpp_parts` row committed before its `submit_sm_resp`,
//! answered with that one message id. The part completing the set joins the
//! parts' BYTES (so a UCS-2 surrogate pair or a GSM-7 escape split across
//! parts reads whole), decodes them once, writes the text into the message,
//! makes it due and deletes the parts, in one transaction. A set still
//! incomplete after the join timeout is not dropped: the parts present are
//! joined with `[…]` for each missing run, and the message fails with error
//! `incomplete` (its `message.failed` event owes the account a receipt).
//! Either way the set leaves a marker (part number 0, no data) for one more
//! join timeout, so a part sent again after the set ended (its response was
//! lost) is answered with the same id instead of starting a new message.

use super::StoreError;
use super::messages::{self, HELD, NewMessage, history};
use crate::config::Policy;
use crate::message::{Millis, Status};
use rusqlite::{Connection, OptionalExtension, params};

/// One part as the account submitted it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmppPart {
    /// The account's system_id.
    pub account: String,
    /// `source_addr` and `destination_addr` as submitted: with the
    /// reference and the total they name the set.
    pub source: String,
    pub dest: String,
    pub reference: u16,
    pub total: u8,
    /// 1-based.
    pub seq: u8,
    /// The part's `data_coding`; every part of a set must have the same.
    pub coding: u8,
    /// The part's user data without its header.
    pub data: Vec<u8>,
}

/// What storing a part did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartOutcome {
    /// Stored (committed); `joined` when it completed the set.
    Stored { message_id: i64, joined: bool },
    /// This part of the set is already stored; nothing changed.
    Duplicate { message_id: i64 },
    /// The set's parts so far have another `data_coding`; nothing stored.
    MixedCoding { set: u8 },
}

/// Store one part; the first of its set makes and holds the message `m`
/// (its text the first part's until the set is joined), the last joins.
/// With the outcome: why policy suppressed the message, when this part
/// made it and policy stopped it at once (for the suppression metric).
pub(super) fn add(
    c: &Connection,
    api_key: &str,
    m: &NewMessage,
    part: &SmppPart,
    policy: &Policy,
    now: Millis,
) -> Result<(PartOutcome, Option<String>), StoreError> {
    let set: Option<(i64, u8, bool)> = c
        .prepare_cached(
            "SELECT message_id, coding, seq = 0 FROM smpp_parts
             WHERE account = ?1 AND source = ?2 AND dest = ?3 AND ref = ?4 AND total = ?5 ORDER BY seq LIMIT 1",
        )?
        .query_row(params![part.account, part.source, part.dest, part.reference, part.total], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .optional()?;
    let (message_id, suppressed) = match set {
        Some((id, _, true)) => return Ok((PartOutcome::Duplicate { message_id: id }, None)),
        Some((_, coding, _)) if coding != part.coding => return Ok((PartOutcome::MixedCoding { set: coding }, None)),
        Some((id, _, _)) => (id, None),
        None => {
            let accepted = messages::insert(c, api_key, m, None, policy, now)?;
            c.prepare_cached("UPDATE messages SET due_at = ?2 WHERE id = ?1 AND status = 'queued'")?
                .execute(params![accepted.id, HELD])?;
            (accepted.id, accepted.reason)
        }
    };
    let inserted = c
        .prepare_cached(
            "INSERT OR IGNORE INTO smpp_parts (account, source, dest, ref, total, seq, message_id, coding, data, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )?
        .execute(params![
            part.account,
            part.source,
            part.dest,
            part.reference,
            part.total,
            part.seq,
            message_id,
            part.coding,
            part.data,
            now
        ])?;
    if inserted == 0 {
        return Ok((PartOutcome::Duplicate { message_id }, suppressed));
    }
    let stored = parts_of(c, message_id)?;
    let joined = stored.len() >= usize::from(part.total);
    if joined {
        let bytes: Vec<u8> = stored.iter().flat_map(|(_, d)| d.iter().copied()).collect();
        let text = crate::sms::text::decode_text(part.coding, &bytes).unwrap_or_default();
        // A message already final (policy suppressed it at its first part,
        // or it was cancelled) keeps its history as it ended.
        if finish(c, message_id, &text, None, now)? {
            history(c, message_id, now, Status::Queued, &format!("joined from {} SMPP parts", part.total))?;
        }
    }
    Ok((PartOutcome::Stored { message_id, joined }, suppressed))
}

/// The stored parts of a held message, by their number: (seq, data).
fn parts_of(c: &Connection, message_id: i64) -> rusqlite::Result<Vec<(u8, Vec<u8>)>> {
    c.prepare_cached("SELECT seq, data FROM smpp_parts WHERE message_id = ?1 AND seq > 0 ORDER BY seq")?
        .query_map(params![message_id], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect()
}

/// Write the joined text into the message and replace its parts by the
/// set's marker: a queued message becomes due (at its schedule), or fails
/// with `incomplete` (the reason given); one already final (cancelled,
/// suppressed) keeps its status. Whether the message is queued and due now.
fn finish(
    c: &Connection,
    message_id: i64,
    text: &str,
    incomplete: Option<&str>,
    now: Millis,
) -> rusqlite::Result<bool> {
    let (encoding, segments) = crate::sms::count_parts(text);
    c.prepare_cached("UPDATE messages SET body = ?2, encoding = ?3, segments = ?4, updated_at = ?5 WHERE id = ?1")?
        .execute(params![message_id, text, encoding.as_str(), segments as i64, now])?;
    let queued = match incomplete {
        None => c
            .prepare_cached(
                "UPDATE messages SET due_at = max(coalesce(send_at, ?2), ?2) WHERE id = ?1 AND status = 'queued'",
            )?
            .execute(params![message_id, now])?,
        Some(why) => c
            .prepare_cached(
                "UPDATE messages SET status = 'failed', error_code = 'incomplete', error_text = ?2
                 WHERE id = ?1 AND status = 'queued'",
            )?
            .execute(params![message_id, why])?,
    };
    if let (Some(why), 1) = (incomplete, queued) {
        super::messages::moved(c, message_id, Status::Queued, Status::Failed, None)?;
        history(c, message_id, now, Status::Failed, why)?;
    }
    c.prepare_cached(
        "INSERT INTO smpp_parts (account, source, dest, ref, total, seq, message_id, coding, data, created_at)
         SELECT account, source, dest, ref, total, 0, message_id, coding, x'', ?2 FROM smpp_parts
         WHERE message_id = ?1 LIMIT 1",
    )?
    .execute(params![message_id, now])?;
    c.prepare_cached("DELETE FROM smpp_parts WHERE message_id = ?1 AND seq > 0")?.execute(params![message_id])?;
    Ok(incomplete.is_none() && queued == 1)
}

/// Store as incomplete every set whose first part came at or before
/// `started_before`, up to `limit` sets, and forget the markers of sets
/// that ended before it; how many sets were stored incomplete.
pub(super) fn expire(c: &Connection, started_before: Millis, limit: usize, now: Millis) -> rusqlite::Result<usize> {
    c.prepare_cached("DELETE FROM smpp_parts WHERE seq = 0 AND created_at <= ?1")?.execute(params![started_before])?;
    let sets: Vec<(i64, u8, u8)> = c
        .prepare_cached(
            "SELECT message_id, max(total), max(coding) FROM smpp_parts
             WHERE message_id IN (SELECT DISTINCT message_id FROM smpp_parts WHERE created_at <= ?1 LIMIT ?2)
               AND seq > 0
             GROUP BY message_id",
        )?
        .query_map(params![started_before, limit as i64], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<Result<_, _>>()?;
    for (message_id, total, coding) in &sets {
        let (text, missing) = join_incomplete(*coding, *total, &parts_of(c, *message_id)?);
        let missing: Vec<String> = missing.iter().map(u8::to_string).collect();
        let why = format!("incomplete: part(s) {} of {total} did not arrive in time", missing.join(", "));
        finish(c, *message_id, &text, Some(&why), now)?;
    }
    Ok(sets.len())
}

/// The parts present joined, each run of consecutive parts decoded as one,
/// `[…]` for each run missing; and the numbers of the missing parts.
pub fn join_incomplete(coding: u8, total: u8, parts: &[(u8, Vec<u8>)]) -> (String, Vec<u8>) {
    let mut text = String::new();
    let mut missing = Vec::new();
    let mut run: Vec<u8> = Vec::new();
    let decode = |b: &[u8]| crate::sms::text::decode_text(coding, b).unwrap_or_default();
    for seq in 1..=total {
        match parts.iter().find(|(s, _)| *s == seq) {
            Some((_, data)) => run.extend_from_slice(data),
            None => {
                text.push_str(&decode(&run));
                run.clear();
                if missing.last().is_none_or(|&m| m + 1 != seq) {
                    text.push_str("[…]");
                }
                missing.push(seq);
            }
        }
    }
    text.push_str(&decode(&run));
    (text, missing)
}

#[cfg(test)]
mod tests {
    use super::join_incomplete;

    #[test]
    fn an_incomplete_set_marks_each_missing_run() {
        let p = |s: u8, t: &str| (s, t.as_bytes().to_vec());
        let (text, missing) = join_incomplete(0x01, 5, &[p(1, "ab"), p(4, "de")]);
        assert_eq!((text.as_str(), missing), ("ab[…]de[…]", vec![2, 3, 5]));
        // A UCS-2 pair split across two present parts still reads whole.
        let smile = crate::sms::text::encode_ucs2("😀");
        let (text, _) = join_incomplete(0x08, 3, &[(1, smile[..2].to_vec()), (2, smile[2..].to_vec())]);
        assert_eq!(text, "😀[…]");
    }
}
