//! The channel interface: what every route (simulated, GSM modem pool, SMPP
//! carrier) implements, and the events routes report back. A channel never
//! touches the store; it answers submits and emits events, and the
//! dispatcher records them.

pub mod modem;
pub mod sim;
pub mod smpp;
pub mod spec;

pub use spec::RouteSpec;

use crate::message::Priority;
use crate::message::ReceiptStatus;
use crate::sms::Plan;
use futures::future::BoxFuture;
use serde::Serialize;
use tokio::sync::mpsc;

/// One message as a route sees it: already normalised, its text planned.
#[derive(Debug, Clone)]
pub struct Outbound {
    pub id: i64,
    pub to: String,
    pub from: Option<String>,
    /// The text's alphabet and parts, planned once for every route: the
    /// parts are what goes out (a route plans again only when its carrier
    /// cannot take the alphabet).
    pub plan: Plan,
    pub priority: Priority,
    pub attempt: u32,
    /// When the message stops being worth delivering (ms since the epoch):
    /// routes pass what is left of it to the network, so a phone that comes
    /// back on line a day later does not get a stale one-time code.
    pub valid_until: Option<crate::message::Millis>,
    /// What earlier attempts of a long message got through (`first_part`
    /// 0): the parts the network already took and the reference they
    /// carry. A route resumes after them under that reference, so the
    /// phone joins the parts of both tries; one that cannot (another
    /// sender, another route) starts over from part 0 under a new one.
    pub resume: Submitted,
    /// Where an answer should leave from: the address its question came
    /// to (an auto-reply's). A modem route sends it through that SIM (its
    /// number or IMSI); an SMPP route uses it as `source_addr` when the
    /// message names no sender.
    pub via: Option<String>,
}

/// Parts the route handed to the network: one id per part, for matching
/// its report, from `first_part` on (the parts before it were taken by an
/// earlier attempt). A successful submit covers every part to the last.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Submitted {
    pub first_part: usize,
    pub remote_ids: Vec<Option<String>>,
    /// The concatenation reference the parts of a long message carry.
    pub concat_ref: Option<u16>,
}

/// Why a submit did not go through.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{code}: {text}")]
pub struct SubmitError {
    /// Worth another try later (possibly elsewhere)?
    pub temporary: bool,
    /// The route never offered the message to the network (no modem free,
    /// stopping, the carrier asking us to slow down): no attempt was spent,
    /// so it does not count against `dispatch.max_attempts`.
    pub untried: bool,
    /// A short machine-readable code, e.g. `cms_38` or `smpp_0x0b`.
    pub code: String,
    pub text: String,
    /// The parts of a long message the network took before one failed:
    /// recorded, so their reports match and a retry resumes after them.
    pub accepted: Submitted,
}

impl SubmitError {
    /// Refused for good: the message fails.
    pub fn permanent(code: &str, text: impl Into<String>) -> SubmitError {
        SubmitError {
            temporary: false,
            untried: false,
            code: code.into(),
            text: text.into(),
            accepted: Submitted::default(),
        }
    }

    /// Tried and not done: another attempt later.
    pub fn temporary(code: &str, text: impl Into<String>) -> SubmitError {
        SubmitError {
            temporary: true,
            untried: false,
            code: code.into(),
            text: text.into(),
            accepted: Submitted::default(),
        }
    }

    /// Not offered to the network at all: later, without spending an attempt.
    pub fn untried(code: &str, text: impl Into<String>) -> SubmitError {
        SubmitError {
            temporary: true,
            untried: true,
            code: code.into(),
            text: text.into(),
            accepted: Submitted::default(),
        }
    }

    /// The same failure, after the network took the parts in `accepted`.
    pub fn after(self, accepted: Submitted) -> SubmitError {
        SubmitError { accepted, ..self }
    }
}

/// Things a route learns on its own and reports.
#[derive(Debug, Clone)]
pub enum Event {
    /// A delivery report for one part, by the id the route gave that part.
    Receipt {
        remote_id: String,
        status: ReceiptStatus,
        error_code: Option<String>,
        error_text: Option<String>,
        /// When the network took the part (a modem report's TP-SCTS), for
        /// routes whose ids come round again: the store gives the report to
        /// the newest open part with that id sent before this time.
        sc_time: Option<crate::message::Millis>,
        /// The id an earlier smsgw gave the same part, so parts sent before
        /// an upgrade still match their report.
        legacy_id: Option<String>,
    },
    /// A received SMS, or one part of a concatenated one.
    Inbound {
        from: String,
        to: String,
        text: String,
        /// (reference, total, seq 1-based) for a part of a concatenated message.
        concat: Option<(u16, u8, u8)>,
        sent_at: Option<crate::message::Millis>,
    },
    /// A received PDU that could not be decoded, kept as it came (hex) with
    /// the reason, so that it can be removed from the device without being lost.
    Undecodable { to: String, pdu: String, reason: String },
}

/// An event with the name of the route that saw it.
#[derive(Debug)]
pub struct RouteEvent {
    pub route: String,
    pub event: Event,
    /// Answered `true` once the event is committed to the store (`false` if
    /// it could not be). A route acknowledges to the network only then.
    pub ack: Option<tokio::sync::oneshot::Sender<bool>>,
}

pub type EventSender = mpsc::UnboundedSender<RouteEvent>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RouteState {
    /// Taking messages.
    Up,
    /// Taking messages, but not at full strength.
    Degraded,
    /// Not taking messages now; they wait or fail over.
    Down,
}

#[derive(Debug, Clone)]
pub struct Health {
    pub state: RouteState,
    pub detail: Option<String>,
    /// The route's parts (SMPP binds, modems), each with its own state.
    pub members: Vec<Member>,
}

/// One bind or one modem of a route.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Member {
    pub name: String,
    pub state: RouteState,
    /// Why it is not up, or other news.
    pub detail: Option<String>,
    /// Submits in flight, and how many it may have (its window).
    pub in_flight: usize,
    pub capacity: usize,
    /// Receipts and messages read from the peer and not yet answered
    /// because the store has not committed them. Bounded (an SMPP bind
    /// waits for at most a window of them, then stops reading).
    pub inbound_waiting: usize,
    /// A modem's signal.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signal_dbm: Option<i32>,
}

/// A member that is a device on this box (a modem) as its kind reports it,
/// in terms every layer above can read without knowing the kind.
#[derive(Debug, Clone)]
pub struct Device {
    /// The device as `GET /v1/modems` shows it, serialized by its kind.
    pub view: Box<serde_json::value::RawValue>,
    /// Where it is plugged in (a modem's port): the gauges' label.
    pub port: String,
    /// Ready for work (a modem ready or sending).
    pub ready: bool,
    /// Every state its kind has, each with whether it is the current one:
    /// one gauge per state.
    pub states: Vec<(&'static str, bool)>,
    pub signal_dbm: Option<i32>,
    /// Network registration (3GPP TS 27.007 +CREG stat).
    pub registration: Option<u8>,
    /// SMS sent, messages a send failed for, SMS received.
    pub sent: u64,
    pub failed: u64,
    pub received: u64,
}

pub trait Channel: Send + Sync {
    fn kind(&self) -> &'static str;
    /// Hand one message to the route. Resolves when the route has accepted or
    /// refused every part.
    fn submit(&self, msg: Outbound) -> BoxFuture<'_, Result<Submitted, SubmitError>>;
    /// The route's state and its members (binds, modems), each member with
    /// what its kind tells about it.
    fn health(&self) -> Health;
    /// The route's members that are devices on this box (modems), for
    /// `GET /v1/modems` and their gauges; none for other kinds. Asked by
    /// readers only, never on the way of a message.
    fn devices(&self) -> Vec<Device> {
        Vec::new()
    }
    /// What this route handed to the network in the last day (remote id and
    /// time, ms since the epoch), read from the store when the route is
    /// built: a route that caps its sends carries on counting from there.
    fn restore_sent(&self, _sent: Vec<(String, crate::message::Millis)>) {}
    /// smsgw is stopping: submits still waiting for capacity (not yet handed
    /// to the network) should give up now with an untried error, so the
    /// stop waits only for work that is really under way.
    fn stopping(&self) {}
    /// Stop taking new work and release what the route holds.
    fn shutdown(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}

/// Build the channel a route's config describes.
pub fn build(route: &spec::Route, events: EventSender) -> std::io::Result<std::sync::Arc<dyn Channel>> {
    let ch: std::sync::Arc<dyn Channel> = match &route.spec {
        RouteSpec::Sim { sim } => sim::Sim::new(&route.name, sim.clone(), events)?,
        RouteSpec::Modem { modem } => modem::Pool::new(&route.name, modem.clone(), events)?,
        RouteSpec::Smpp { smpp } => smpp::Smpp::new(&route.name, smpp.clone(), events)?,
    };
    Ok(ch)
}
