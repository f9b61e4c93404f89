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
