//! The vocabulary every layer shares: a message's priority, its status and
//! the time representation used in the store and the API.

use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// How urgent a message is. The dispatcher always serves a lower value first,
/// so one-time codes never wait behind a promotional backlog.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    Otp = 0,
    Transactional = 1,
    Promotional = 2,
}

impl Priority {
    pub const ALL: [Priority; 3] = [Priority::Otp, Priority::Transactional, Priority::Promotional];

    pub fn as_i64(self) -> i64 {
        self as i64
    }

    pub fn from_i64(v: i64) -> Option<Self> {
        match v {
            0 => Some(Priority::Otp),
            1 => Some(Priority::Transactional),
            2 => Some(Priority::Promotional),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Otp => "otp",
            Priority::Transactional => "transactional",
            Priority::Promotional => "promotional",
        }
    }
}

/// Where a message is in its life:
/// `queued` → `sending` → `submitted` → `delivered` | `undelivered` | `expired`,
/// or `failed`, or `cancelled`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Accepted and on disk, waiting for its time, its route or a retry.
    Queued,
    /// Claimed by the dispatcher and being handed to a route.
    Sending,
    /// Every part was accepted by the route; waiting for delivery reports.
    Submitted,
    Delivered,
    Undelivered,
    /// Its validity ran out before it could be sent or delivered.
    Expired,
    /// Refused permanently, or out of retries.
    Failed,
    Cancelled,
    /// Never sent: policy stopped it (the number opted out, or a
    /// promotional message had no consent); the reason is its error code.
    Suppressed,
}

impl Status {
    pub const ALL: [Status; 9] = [
        Status::Queued,
        Status::Sending,
        Status::Submitted,
        Status::Delivered,
        Status::Undelivered,
        Status::Expired,
        Status::Failed,
        Status::Cancelled,
        Status::Suppressed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Sending => "sending",
            Status::Submitted => "submitted",
            Status::Delivered => "delivered",
            Status::Undelivered => "undelivered",
            Status::Expired => "expired",
            Status::Failed => "failed",
            Status::Cancelled => "cancelled",
            Status::Suppressed => "suppressed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Status::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// A final status never changes again.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Status::Delivered
                | Status::Undelivered
                | Status::Expired
                | Status::Failed
                | Status::Cancelled
                | Status::Suppressed
        )
    }
}

/// What happened, as the outbox records it and a webhook names it. Every
/// event is a row in the store's `events` table, written in the same
/// transaction as the change that caused it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub enum EventKind {
    #[serde(rename = "message.submitted")]
    MessageSubmitted,
    #[serde(rename = "message.delivered")]
    MessageDelivered,
    #[serde(rename = "message.undelivered")]
    MessageUndelivered,
    #[serde(rename = "message.failed")]
    MessageFailed,
    #[serde(rename = "message.expired")]
    MessageExpired,
    #[serde(rename = "message.cancelled")]
    MessageCancelled,
    #[serde(rename = "message.suppressed")]
    MessageSuppressed,
    /// A queued message's text, schedule or validity replaced (SMPP
    /// `replace_sm`); it is still queued.
    #[serde(rename = "message.replaced")]
    MessageReplaced,
    #[serde(rename = "inbound.received")]
    InboundReceived,
    #[serde(rename = "optout.changed")]
    OptoutChanged,
    /// A consent recorded or withdrawn.
    #[serde(rename = "consent.changed")]
    ConsentChanged,
    #[serde(rename = "route.state_changed")]
    RouteStateChanged,
}

impl EventKind {
    pub const ALL: [EventKind; 12] = [
        EventKind::MessageSubmitted,
        EventKind::MessageDelivered,
        EventKind::MessageUndelivered,
        EventKind::MessageFailed,
        EventKind::MessageExpired,
        EventKind::MessageCancelled,
        EventKind::MessageSuppressed,
        EventKind::MessageReplaced,
        EventKind::InboundReceived,
        EventKind::OptoutChanged,
        EventKind::ConsentChanged,
        EventKind::RouteStateChanged,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::MessageSubmitted => "message.submitted",
            EventKind::MessageDelivered => "message.delivered",
            EventKind::MessageUndelivered => "message.undelivered",
            EventKind::MessageFailed => "message.failed",
            EventKind::MessageExpired => "message.expired",
            EventKind::MessageCancelled => "message.cancelled",
            EventKind::MessageSuppressed => "message.suppressed",
            EventKind::MessageReplaced => "message.replaced",
            EventKind::InboundReceived => "inbound.received",
            EventKind::OptoutChanged => "optout.changed",
            EventKind::ConsentChanged => "consent.changed",
            EventKind::RouteStateChanged => "route.state_changed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        EventKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// About one message (its `message_id` names it).
    pub fn is_message(self) -> bool {
        self.as_str().starts_with("message.")
    }

    /// The event a message's move to `status` is, if any (`queued` and
    /// `sending` are steps on the way, not events).
    pub fn for_status(status: Status) -> Option<Self> {
        match status {
            Status::Queued | Status::Sending => None,
            Status::Submitted => Some(EventKind::MessageSubmitted),
            Status::Delivered => Some(EventKind::MessageDelivered),
            Status::Undelivered => Some(EventKind::MessageUndelivered),
            Status::Failed => Some(EventKind::MessageFailed),
            Status::Expired => Some(EventKind::MessageExpired),
            Status::Cancelled => Some(EventKind::MessageCancelled),
            Status::Suppressed => Some(EventKind::MessageSuppressed),
        }
    }
}

/// The API key name recorded on the messages smsgw sends of its own accord
/// (the answers to keywords such as HELP); no configured key may take it.
pub const SYSTEM_KEY: &str = "smsgw";

/// Milliseconds since the Unix epoch, UTC: the store's time representation.
pub type Millis = i64;

/// Why a sender id cannot go on the network.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SenderError {
    #[error("a numeric sender has at most 15 digits")]
    TooManyDigits,
    #[error("an alphanumeric sender has 1 to 11 characters")]
    Length,
    #[error("an alphanumeric sender may use letters, digits, space and - _ . &")]
    Characters,
}

/// A sender must be what the network can carry: up to 11 alphanumeric GSM
/// characters, or a number of up to 15 digits (the API's `from` and a
/// trigger rule's alike).
pub fn check_sender(from: &str) -> Result<(), SenderError> {
    let digits = from.strip_prefix('+').unwrap_or(from);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        if digits.len() > 15 {
            return Err(SenderError::TooManyDigits);
        }
        return Ok(());
    }
    if from.is_empty() || from.chars().count() > 11 {
        return Err(SenderError::Length);
    }
    if !from.chars().all(|c| c.is_ascii_alphanumeric() || " -_.&".contains(c)) {
        return Err(SenderError::Characters);
    }
    Ok(())
}

pub fn now_ms() -> Millis {
    Utc::now().timestamp_millis()
}

/// The start of the UTC day that `ms` falls in (Unix days are exactly
/// 86,400 seconds, leap seconds aside).
pub fn utc_day_start(ms: Millis) -> Millis {
    ms - ms.rem_euclid(86_400_000)
}

/// Whole seconds from now until `until`, at least one: what is left of a
/// message's validity when a route hands it to the network.
pub fn secs_left(until: Millis) -> u64 {
    (until.saturating_sub(now_ms()).max(1) as u64).div_ceil(1000)
}

pub fn to_rfc3339(ms: Millis) -> String {
    match Utc.timestamp_millis_opt(ms) {
        chrono::LocalResult::Single(t) => t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        _ => String::from("invalid-time"),
    }
}

pub fn from_datetime(t: &DateTime<Utc>) -> Millis {
    t.timestamp_millis()
}

/// What a delivery report says of one part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiptStatus {
    Delivered,
    Undelivered,
    Expired,
}

impl ReceiptStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ReceiptStatus::Delivered => "delivered",
            ReceiptStatus::Undelivered => "undelivered",
            ReceiptStatus::Expired => "expired",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "delivered" => Some(ReceiptStatus::Delivered),
            "undelivered" => Some(ReceiptStatus::Undelivered),
            "expired" => Some(ReceiptStatus::Expired),
            _ => None,
        }
    }
}

/// What an opt-out stops, or what a consent covers: `promotional`
/// messages only, or `all` of them (otp, transactional, promotional). The
/// site's `[policy] optout_scope` says what an opt-out of scope
/// `promotional` stops as well: with `all`, every opt-out stops everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum OptOutScope {
    #[default]
    Promotional,
    All,
}

impl OptOutScope {
    pub const ALL: [OptOutScope; 2] = [OptOutScope::Promotional, OptOutScope::All];

    pub fn as_str(self) -> &'static str {
        match self {
            OptOutScope::Promotional => "promotional",
            OptOutScope::All => "all",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        OptOutScope::ALL.into_iter().find(|x| x.as_str() == s)
    }

    /// Whether an opt-out of this scope stops a message of class
    /// `priority` on a site whose `optout_scope` is `site`.
    pub fn stops(self, priority: Priority, site: OptOutScope) -> bool {
        self == OptOutScope::All || site == OptOutScope::All || priority == Priority::Promotional
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn senders() {
        assert!(check_sender("MyShop").is_ok());
        assert!(check_sender("+79161234567").is_ok());
        assert_eq!(check_sender("TwelveChars1"), Err(SenderError::Length));
        assert_eq!(check_sender(""), Err(SenderError::Length));
        assert_eq!(check_sender("Шоп"), Err(SenderError::Characters));
        assert_eq!(check_sender("1234567890123456"), Err(SenderError::TooManyDigits));
    }

    #[test]
    fn status_names_round_trip() {
        for s in Status::ALL {
            assert_eq!(Status::parse(s.as_str()), Some(s));
        }
        assert_eq!(Status::parse("bogus"), None);
    }

    #[test]
    fn event_names_round_trip() {
        for k in EventKind::ALL {
            assert_eq!(EventKind::parse(k.as_str()), Some(k));
            assert_eq!(serde_json::to_value(k).unwrap(), k.as_str());
        }
        assert_eq!(EventKind::parse("message.queued"), None);
        let events: Vec<_> = Status::ALL.into_iter().filter_map(EventKind::for_status).collect();
        assert_eq!(events.len(), 7, "every status but queued and sending is an event");
    }

    #[test]
    fn priority_order_puts_otp_first() {
        let mut v = vec![Priority::Promotional, Priority::Otp, Priority::Transactional];
        v.sort();
        assert_eq!(v, Priority::ALL.to_vec());
        for p in Priority::ALL {
            assert_eq!(Priority::from_i64(p.as_i64()), Some(p));
        }
    }

    #[test]
    fn an_optout_stops_promotions_and_everything_where_its_scope_or_the_site_says_all() {
        use OptOutScope::{All, Promotional};
        for p in Priority::ALL {
            assert!(All.stops(p, Promotional) && All.stops(p, All) && Promotional.stops(p, All));
            assert_eq!(Promotional.stops(p, Promotional), p == Priority::Promotional);
        }
        for s in OptOutScope::ALL {
            assert_eq!(OptOutScope::parse(s.as_str()), Some(s));
        }
    }

    #[test]
    fn rfc3339_is_utc_with_millis() {
        assert_eq!(to_rfc3339(0), "1970-01-01T00:00:00.000Z");
    }
}
