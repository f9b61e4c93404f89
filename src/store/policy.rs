//! What stops a message before it is sent: the number opted out (per the
//! opt-out's scope and the site's `optout_scope`), or a promotional message
//! has no active consent while the site requires one (38-FZ art. 18).
//!
//! Asked twice, in the store's own transactions: when a message is accepted
//! (it is stored `suppressed` at once) and when it is claimed (an opt-out or
//! a withdrawal that came while it waited). One statement, one probe of each
//! table's index on the number, so a claim stays cheap.

use crate::config::Policy;
use crate::message::{Millis, OptOutScope, Priority, to_rfc3339};
use rusqlite::{Connection, params};

/// Why a message is not sent: its `error_code` and `error_text`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stop {
    /// `opted_out` or `no_consent`: the `reason` the API and the metrics show.
    pub code: &'static str,
    /// Which opt-out (its scope, source and time), or what consent is missing.
    pub text: String,
}

pub const OPTED_OUT: &str = "opted_out";
pub const NO_CONSENT: &str = "no_consent";

/// The reason `policy` stops a message of class `priority` to `to`, if any.
pub(super) fn stop(c: &Connection, policy: &Policy, to: &str, priority: Priority) -> rusqlite::Result<Option<Stop>> {
    let promotional = priority == Priority::Promotional;
    // Any opt-out of the number stops a promotion, or anything on a site
    // whose opt-outs stop everything; else only one of scope `all` does.
    let any_scope = OptOutScope::Promotional.stops(priority, policy.optout_scope);
    let consent_needed = policy.require_consent && promotional;
    // The common case, asked for every message accepted and claimed: no
    // opt-out of the number and no consent to look for. One probe of the
    // opt-outs' key, before the statement that says which and why.
    if !consent_needed {
        let any: bool = c
            .prepare_cached("SELECT EXISTS (SELECT 1 FROM optouts WHERE number = ?1)")?
            .query_row(params![to], |r| r.get(0))?;
        if !any {
            return Ok(None);
        }
    }
    let (scope, source, at, consented, withdrawn): (
        Option<String>,
        Option<String>,
        Option<Millis>,
        bool,
        Option<Millis>,
    ) = c
        .prepare_cached(
            "SELECT o.scope, o.source, o.at,
                    CASE WHEN ?3 THEN EXISTS (SELECT 1 FROM consents WHERE number = ?1 AND withdrawn_at IS NULL)
                         ELSE 1 END,
                    CASE WHEN ?3 THEN (SELECT max(withdrawn_at) FROM consents WHERE number = ?1) END
             FROM (SELECT 1) LEFT JOIN optouts o ON o.number = ?1 AND (o.scope = 'all' OR ?2)
             ORDER BY o.scope = 'all' DESC LIMIT 1",
        )?
        .query_row(params![to, any_scope, consent_needed], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })?;
    if let (Some(scope), Some(source), Some(at)) = (scope, source, at) {
        let what = if scope == OptOutScope::All.as_str() { "all messages" } else { "promotional messages" };
        return Ok(Some(Stop {
            code: OPTED_OUT,
            text: format!("{to} opted out of {what} (source {source}, at {})", to_rfc3339(at)),
        }));
    }
    if !consented {
        let text = match withdrawn {
            Some(w) => format!("{to} withdrew consent to promotional messages at {}", to_rfc3339(w)),
            None => format!("no consent to promotional messages from {to} is on record"),
        };
        return Ok(Some(Stop { code: NO_CONSENT, text }));
    }
    Ok(None)
}

pub const CAPPED: &str = "capped";

/// When the recipient's quiet hours for `class` hold a message back at
/// `now`: the time they end, and the history line that says so. `tz` is the
/// message's zone (stored at insert), else the policy's default.
pub(super) fn quiet(policy: &Policy, tz: Option<&str>, class: Priority, now: Millis) -> Option<(Millis, String)> {
    let window = policy.quiet_hours.of(class)?;
    let zone: chrono_tz::Tz = tz.and_then(|t| t.parse().ok()).unwrap_or(policy.default_tz);
    let opens = window.next_opening(zone, now)?;
    Some((opens, format!("deferred by quiet hours until {} {}", window.end_text(), zone.name())))
}

/// The stop a frequency cap puts on a message of `class` to `to` at `now`:
/// the number already had the cap's count of sends of that class within
/// its window (the `sends` ledger: direct sends and rules' alike).
pub(super) fn capped(
    c: &Connection,
    policy: &Policy,
    to: &str,
    class: Priority,
    now: Millis,
) -> rusqlite::Result<Option<Stop>> {
    let Some(cap) = policy.caps.of(class) else { return Ok(None) };
    let sent: i64 = c
        .prepare_cached(
            "SELECT count(*) FROM (SELECT 1 FROM sends WHERE recipient = ?1 AND priority = ?2 AND at > ?3 LIMIT ?4)",
        )?
        .query_row(params![to, class.as_i64(), now - cap.window_ms, cap.count], |r| r.get(0))?;
    if sent < cap.count as i64 {
        return Ok(None);
    }
    let hours = cap.window_ms / 3_600_000;
    let window = if hours % 24 == 0 { format!("{} days", hours / 24) } else { format!("{hours} hours") };
    Ok(Some(Stop {
        code: CAPPED,
        text: format!("{to} already had {} {} messages within {window} (frequency cap)", cap.count, class.as_str()),
    }))
}

/// Count a message of a capped class in the ledger, once, when it is first
/// claimed for sending.
pub(super) fn record_send(
    c: &Connection,
    policy: &Policy,
    to: &str,
    class: Priority,
    id: i64,
    now: Millis,
) -> rusqlite::Result<()> {
    if policy.caps.of(class).is_some() {
        c.prepare_cached("INSERT INTO sends (recipient, priority, at, message_id) VALUES (?1, ?2, ?3, ?4)")?
            .execute(params![to, class.as_i64(), now, id])?;
    }
    Ok(())
}
