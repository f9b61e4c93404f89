//! The SMSC simulator: a carrier on loopback for tests and dry runs — binds, submits with ids, throttling, delivery
//! receipts, inbound messages and injected faults.
//!
//! [`Smsc::start`] takes a bound [`TcpListener`] and serves SMPP 3.4 (binds with interface_version 0x34 or 0x50, and
//! anything at or below 0x34). Every connection gets a read loop (`smsc/session.rs`) and a writer task fed by a
//! channel, so receipts and injected messages can be sent to a session from anywhere. Text helpers (GSM 7-bit, UCS-2,
//! UDH, receipt dates) live in `smsc/text.rs`; framing and decoding in `crate::smpp`.
//!
//! Behaviour in brief:
//! - binds: credentials from [`SmscConfig::credentials`] (empty list = accept anyone), `reject_bind` answers
//!   ESME_RBINDFAIL; a second bind on the same connection answers ESME_RALYBND.
//! - submit_sm / data_sm: an id per accepted message ([`IdFormat`]), answered after `submit_latency_ms`, at most
//!   `window` of them in progress per session (the rest wait in order). Above `max_rate` (token bucket over all
//!   sessions, burst = one second's worth) the answer is ESME_RTHROTTLED. Before bind, or on a receiver bind, the
//!   answer is ESME_RINVBNDSTS. Every received submit is recorded in [`Smsc::submitted`], whatever its outcome.
//! - receipts: when registered_delivery asks for one (bits 0-1 = 1, or 2 for failures only), a deliver_sm with
//!   esm_class 0x04 goes to a receiver/transceiver session, one of the submitter's system_id first. A receipt that no
//!   session can take, that is nacked, or that is still unacknowledged when its session ends, waits for the next bind
//!   of that system_id and is sent again (carriers redeliver unacknowledged receipts).
//! - faults: `drop_every_n` closes the connection on every Nth submit_sm (counted over the whole simulator) without
//!   answering it; `drop_every_secs` closes each connection that long after its bind; `ignore_enquire_link` stops
//!   answering keep-alives; `nack_binds` and `nack_submits` answer binds or submits with a generic_nack of status 0
//!   (a broken peer); [`Smsc::inject_inbound_part`] sends one deliver_sm with whatever part numbers it is given;
//!   [`Smsc::set_config`] changes any of this while running (`window` applies to new
//!   connections).
//! - bad input: an unknown or unsupported command_id gets generic_nack ESME_RINVCMDID; a body rusmpp cannot decode gets
//!   generic_nack ESME_RINVMSGLEN; a command_length over 70,000 gets generic_nack ESME_RINVCMDLEN and is skipped; a
//!   command_length below 16 gets generic_nack ESME_RINVCMDLEN and the connection is closed (framing is lost).
//!   Error responses carry the header only (SMPP 3.4: no body when command_status is not 0).
//!
//! [`Smsc::events`] is a plain-text log. Lines tests may rely on: `bind_transceiver from <system_id>: ok (...)`
//! (a prefix), `bind_transmitter from <system_id>: rejected 0x0000000e`, `unbind from <system_id>`, `enquire_link from <id>`,
//! `enquire_link from <id> ignored`, `drop session <n> after submit_sm #<k>`, `drop session <n> after <t> s`,
//! `receipt <message_id> acked by <system_id>`, `inbound <k>/<total> acked by <system_id>`,
//! `generic_nack 0x<status> to seq <seq> (<reason>)`, `closed session <n> (<why>)`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant, SystemTime};

use futures::SinkExt;
use rusmpp::pdus::DeliverSm;
use rusmpp::values::{DataCoding, EsmClass, Npi, Ton};
use rusmpp::{Command, CommandStatus, Pdu};
use tokio::net::TcpListener;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::{mpsc, oneshot};
use tokio_util::codec::FramedWrite;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::smpp::{SmppFramer, write_burst};

mod session;
mod text;

use session::{address, octets, run_session};
pub use text::{decode_text, gsm_decode, gsm_encode, parse_udh, yymmddhhmm};

/// command_status values the simulator uses.
pub mod status {
    pub const OK: u32 = 0x00;
    pub const INVMSGLEN: u32 = 0x01;
    pub const INVCMDLEN: u32 = 0x02;
    pub const INVCMDID: u32 = 0x03;
    pub const INVBNDSTS: u32 = 0x04;
    pub const ALYBND: u32 = 0x05;
    pub const BINDFAIL: u32 = 0x0D;
    pub const INVPASWD: u32 = 0x0E;
    pub const INVSYSID: u32 = 0x0F;
    pub const THROTTLED: u32 = 0x58;
}

/// command_id values the simulator dispatches on.
pub mod cmd {
    pub const GENERIC_NACK: u32 = 0x8000_0000;
    pub const BIND_RECEIVER: u32 = 0x01;
    pub const BIND_TRANSMITTER: u32 = 0x02;
    pub const SUBMIT_SM: u32 = 0x04;
    pub const DELIVER_SM: u32 = 0x05;
    pub const DELIVER_SM_RESP: u32 = 0x8000_0005;
    pub const UNBIND: u32 = 0x06;
    pub const UNBIND_RESP: u32 = 0x8000_0006;
    pub const BIND_TRANSCEIVER: u32 = 0x09;
    pub const ENQUIRE_LINK: u32 = 0x15;
    pub const ENQUIRE_LINK_RESP: u32 = 0x8000_0015;
    pub const DATA_SM: u32 = 0x103;
    pub const RESP: u32 = 0x8000_0000;
}

/// How message ids look, in submit_sm_resp / data_sm_resp and in the receipt's `id:` field and TLV alike.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IdFormat {
    /// 16 lowercase hex digits: a random per-simulator prefix and a counter.
    #[default]
    Hex,
    /// A decimal counter starting at 1.
    Decimal,
}

/// What the simulator does; see the module documentation. Deserializes from a config file (unknown keys rejected,
/// missing keys take the defaults below).
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmscConfig {
    /// Our system_id in bind responses. Default `smsc-sim`.
    pub system_id: String,
    /// Accepted (system_id, password) pairs; empty accepts any bind.
    pub credentials: Vec<(String, String)>,
    /// Delay before each submit_sm_resp / data_sm_resp. Default 0.
    pub submit_latency_ms: u64,
    /// Submits processed concurrently per session; further ones queue in arrival order. Default 10.
    pub window: usize,
    /// Accepted submits per second over all sessions; above it the answer is ESME_RTHROTTLED (0 throttles every
    /// submit). Default none.
    pub max_rate: Option<f64>,
    /// Time from submit_sm_resp to the receipt deliver_sm. Default 100.
    pub receipt_delay_ms: u64,
    /// Fraction (0..=1) of receipts reporting `stat:UNDELIV err:001`. Default 0.
    pub undelivered_fraction: f64,
    /// Message id format. Default hex.
    pub id_format: IdFormat,
    /// Send the receipt before the submit_sm_resp: the response waits (after `submit_latency_ms` and
    /// `receipt_delay_ms`) until the receipt has been written. Default false.
    pub receipt_before_resp: bool,
    /// Add receipted_message_id (0x001E) and message_state (0x0427) TLVs to receipts. Default true.
    pub receipt_tlvs: bool,
    /// Close the connection on every Nth submit_sm received by the simulator, without answering it. Default none.
    pub drop_every_n: Option<u64>,
    /// Close each connection this many seconds after its bind. Default none.
    pub drop_every_secs: Option<u64>,
    /// Stop answering enquire_link. Default false.
    pub ignore_enquire_link: bool,
    /// Answer every bind with ESME_RBINDFAIL. Default false.
    pub reject_bind: bool,
    /// Answer every bind with a generic_nack of status 0 (a broken peer). Default false.
    pub nack_binds: bool,
    /// Answer every submit with a generic_nack of status 0 (a broken peer). Default false.
    pub nack_submits: bool,
}

impl Default for SmscConfig {
    fn default() -> Self {
        Self {
            system_id: "smsc-sim".to_owned(),
            credentials: Vec::new(),
            submit_latency_ms: 0,
            window: 10,
            max_rate: None,
            receipt_delay_ms: 100,
            undelivered_fraction: 0.0,
            id_format: IdFormat::Hex,
            receipt_before_resp: false,
            receipt_tlvs: true,
            drop_every_n: None,
            drop_every_secs: None,
            ignore_enquire_link: false,
            reject_bind: false,
            nack_binds: false,
            nack_submits: false,
        }
    }
}

/// Which PDU carried a submit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SubmitKind {
    SubmitSm,
    DataSm,
}

/// What the simulator answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SubmitOutcome {
    /// Answered with status 0 and a message id.
    Accepted,
    /// Answered with ESME_RTHROTTLED (above `max_rate`).
    Throttled,
    /// Not answered: the connection was dropped (`drop_every_n`).
    Dropped,
    /// Answered with this error status (e.g. ESME_RINVBNDSTS when not bound as transmitter).
    Rejected(u32),
    /// Answered with a generic_nack of status 0 (`nack_submits`).
    Nacked,
}

/// How a multi-part submit said which part it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConcatVia {
    /// UDH information element 0x00 (8-bit reference).
    Udh8,
    /// UDH information element 0x08 (16-bit reference).
    Udh16,
    /// sar_msg_ref_num / sar_total_segments / sar_segment_seqnum TLVs.
    Sar,
}

/// Part information of a concatenated message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConcatInfo {
    pub via: ConcatVia,
    pub reference: u16,
    pub total: u8,
    pub part: u8,
}

/// One submit_sm or data_sm as received.
#[derive(Clone, Debug)]
pub struct Submitted {
    pub kind: SubmitKind,
    /// Simulator-wide connection number (from 1).
    pub session: u64,
    /// system_id of the bind, empty when the session was not bound.
    pub system_id: String,
    pub seq: u32,
    /// The id we answered with (None unless accepted).
    pub message_id: Option<String>,
    pub outcome: SubmitOutcome,
    pub source: String,
    pub dest: String,
    pub data_coding: u8,
    pub esm_class: u8,
    pub registered_delivery: u8,
    /// validity_period as sent (empty: the SMSC default).
    pub validity_period: String,
    /// short_message as sent (with its UDH if any); empty for data_sm.
    pub short_message: Vec<u8>,
    /// message_payload TLV, if present.
    pub message_payload: Option<Vec<u8>>,
    /// The UDH (including its length octet) when esm_class has UDHI set.
    pub udh: Option<Vec<u8>>,
    pub concat: Option<ConcatInfo>,
    pub at: SystemTime,
}

impl Submitted {
    /// The user data without UDH: message_payload if present, else short_message.
    pub fn user_data(&self) -> &[u8] {
        let data = self.message_payload.as_deref().unwrap_or(&self.short_message);
        let skip = self.udh.as_ref().map_or(0, Vec::len);
        data.get(skip..).unwrap_or_default()
    }

    /// The user data decoded per data_coding (GSM 7-bit unpacked, ASCII, Latin-1, UCS-2/UTF-16).
    pub fn text(&self) -> String {
        decode_text(self.data_coding, self.user_data())
    }
}

/// Errors of [`Smsc::inject_inbound`].
#[derive(Debug, thiserror::Error)]
pub enum SmscError {
    #[error("no session is bound as receiver or transceiver")]
    NoReceiver,
    #[error("{0:?} is not a usable SMPP address (1-20 ASCII characters)")]
    BadAddress(String),
    #[error("the text needs more than 255 parts")]
    TooLong,
    #[error("the session closed before the message was written")]
    SessionClosed,
}

/// Handle to a running simulator. Dropping it stops the simulator too; [`Smsc::shutdown`] also waits for it.
pub struct Smsc {
    shared: Arc<SmscState>,
    addr: SocketAddr,
}

impl Smsc {
    /// Serves SMPP on `listener` until shutdown.
    pub async fn start(cfg: SmscConfig, listener: TcpListener) -> Smsc {
        let addr = listener.local_addr().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        let shared = Arc::new(SmscState::new(cfg));
        shared.tasks.spawn(accept_loop(shared.clone(), listener));
        Smsc { shared, addr }
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every submit_sm / data_sm received, in arrival order.
    pub fn submitted(&self) -> Vec<Submitted> {
        lock(&self.shared.submitted).clone()
    }

    /// The event log (see the module documentation for the line formats).
    pub fn events(&self) -> Vec<String> {
        lock(&self.shared.events).iter().cloned().collect()
    }

    /// Receipts and inbound messages not yet acknowledged: waiting for a bind or for a deliver_sm_resp.
    pub fn unacknowledged(&self) -> usize {
        let reg = lock(&self.shared.registry);
        reg.parked.values().map(VecDeque::len).sum::<usize>()
            + reg.sessions.values().map(|s| s.outstanding.len()).sum::<usize>()
    }

    /// Sends `text` from `from` to `to` as deliver_sm to a bound receiver/transceiver (the earliest bound). GSM 7-bit
    /// unpacked (data_coding 0) when every character is in the GSM alphabet, else UCS-2 (data_coding 8); over one part
    /// it becomes several deliver_sm with a concatenation UDH (8-bit reference, esm_class 0x40). Returns once the PDUs
    /// are written; their deliver_sm_resp shows in [`Smsc::events`].
    pub async fn inject_inbound(&self, from: &str, to: &str, text: &str) -> Result<(), SmscError> {
        let (coding, parts) = text::parts(text);
        let total = u8::try_from(parts.len()).map_err(|_| SmscError::TooLong)?;
        let reference = (self.shared.next_ref.fetch_add(1, Ordering::Relaxed) % 256) as u8;
        let numbered =
            parts.into_iter().enumerate().map(|(i, p)| ((total > 1).then_some([reference, total, i as u8 + 1]), p));
        self.deliver_parts(from, to, coding, numbered.collect()).await
    }

    /// Sends one deliver_sm carrying `text` (one part's worth) under a concatenation UDH that says it is part `part`
    /// of `total` of `reference`, whatever those numbers are: for testing how the receiver treats impossible ones.
    pub async fn inject_inbound_part(
        &self,
        from: &str,
        to: &str,
        text: &str,
        reference: u8,
        total: u8,
        part: u8,
    ) -> Result<(), SmscError> {
        let (coding, mut parts) = text::parts(text);
        if parts.len() != 1 {
            return Err(SmscError::TooLong);
        }
        self.deliver_parts(from, to, coding, vec![(Some([reference, total, part]), parts.remove(0))]).await
    }

    /// One deliver_sm per part; a part with (reference, total, number) gets
    /// a concatenation UDH.
    async fn deliver_parts(
        &self,
        from: &str,
        to: &str,
        coding: u8,
        parts: Vec<(Option<[u8; 3]>, Vec<u8>)>,
    ) -> Result<(), SmscError> {
        let count = parts.len();
        let source = address(from)?;
        let dest = address(to)?;
        let mut written = Vec::new();
        {
            let mut reg = lock(&self.shared.registry);
            let (&target, entry) = reg.sessions.iter().find(|(_, s)| s.kind.receives()).ok_or(SmscError::NoReceiver)?;
            let owner = entry.system_id.clone();
            for (concat, part) in parts {
                let ([_, total, number], (esm, body)) = match concat {
                    Some(c @ [reference, total, number]) => {
                        let mut with_udh = vec![0x05, 0x00, 0x03, reference, total, number];
                        with_udh.extend_from_slice(&part);
                        (c, (0x40, with_udh))
                    }
                    None => ([0, 1, 1], (0x00, part)),
                };
                let pdu = DeliverSm::builder()
                    .source_addr_ton(Ton::from(1))
                    .source_addr_npi(Npi::from(1))
                    .source_addr(source.clone())
                    .dest_addr_ton(Ton::from(1))
                    .dest_addr_npi(Npi::from(1))
                    .destination_addr(dest.clone())
                    .esm_class(EsmClass::from(esm))
                    .data_coding(DataCoding::from(coding))
                    .short_message(octets(&body))
                    .build();
                let kind = DeliverKind::Inbound { part: number, total };
                written.push(reg.send_to(target, PendingDeliver { owner: owner.clone(), kind, pdu }));
            }
        }
        self.shared.event(format!("inbound {from} -> {to}: {count} part(s), data_coding {coding}"));
        for rx in written {
            match rx {
                Some(rx) => rx.await.map_err(|_| SmscError::SessionClosed)?,
                None => return Err(SmscError::SessionClosed),
            }
        }
        Ok(())
    }

    /// Replaces the configuration; takes effect for the next PDU handled.
    pub fn set_config(&self, cfg: SmscConfig) {
        *self.shared.cfg.write().unwrap_or_else(|e| e.into_inner()) = cfg;
    }

    /// Stops accepting, closes every connection and waits for the simulator's tasks to end.
    pub async fn shutdown(self) {
        self.shared.cancel.cancel();
        self.shared.tasks.close();
        self.shared.tasks.wait().await;
    }
}

impl Drop for Smsc {
    fn drop(&mut self) {
        self.shared.cancel.cancel();
    }
}

// ---------------------------------------------------------------------------------------------------------------------
// The simulator's state

const MAX_EVENTS: usize = 100_000;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BindKind {
    Transmitter,
    Receiver,
    Transceiver,
}

impl BindKind {
    fn from_command(id: u32) -> Option<BindKind> {
        match id {
            cmd::BIND_TRANSMITTER => Some(BindKind::Transmitter),
            cmd::BIND_RECEIVER => Some(BindKind::Receiver),
            cmd::BIND_TRANSCEIVER => Some(BindKind::Transceiver),
            _ => None,
        }
    }
    fn receives(self) -> bool {
        self != BindKind::Transmitter
    }
    fn transmits(self) -> bool {
        self != BindKind::Receiver
    }
    fn name(self) -> &'static str {
        match self {
            BindKind::Transmitter => "bind_transmitter",
            BindKind::Receiver => "bind_receiver",
            BindKind::Transceiver => "bind_transceiver",
        }
    }
}

#[derive(Clone, Debug)]
enum DeliverKind {
    Receipt { message_id: String },
    Inbound { part: u8, total: u8 },
}

/// A deliver_sm on its way: sent and unacknowledged, or parked until its owner binds.
#[derive(Clone, Debug)]
struct PendingDeliver {
    /// system_id it belongs to (the submitter for receipts).
    owner: String,
    kind: DeliverKind,
    pdu: DeliverSm,
}

enum Out {
    /// Write a PDU; signal the sender once it is flushed.
    Send(Box<Command>, Option<oneshot::Sender<()>>),
    /// Flush and close the connection.
    Close,
}

/// An ESME bound on one connection, as the registry sees it: where to write to it and what it has not acked.
struct BoundEsme {
    system_id: String,
    kind: BindKind,
    tx: mpsc::UnboundedSender<Out>,
    next_seq: u32,
    outstanding: HashMap<u32, PendingDeliver>,
}

/// Bound sessions and parked deliveries, under one lock so nothing falls between them.
#[derive(Default)]
struct Registry {
    sessions: BTreeMap<u64, BoundEsme>,
    parked: HashMap<String, VecDeque<PendingDeliver>>,
}

impl Registry {
    fn park(&mut self, d: PendingDeliver) {
        self.parked.entry(d.owner.clone()).or_default().push_back(d);
    }

    /// Writes `d` to session `id`, tracking it until deliver_sm_resp; parks it if the session is gone.
    fn send_to(&mut self, id: u64, d: PendingDeliver) -> Option<oneshot::Receiver<()>> {
        let Some(s) = self.sessions.get_mut(&id) else {
            self.park(d);
            return None;
        };
        let seq = s.next_seq;
        s.next_seq = if seq >= 0x7FFF_FFFF { 1 } else { seq + 1 };
        let (tx, rx) = oneshot::channel();
        let command = Command::new(CommandStatus::EsmeRok, seq, Pdu::DeliverSm(d.pdu.clone()));
        if s.tx.send(Out::Send(Box::new(command), Some(tx))).is_err() {
            self.park(d);
            return None;
        }
        s.outstanding.insert(seq, d);
        Some(rx)
    }

    /// Sends to a receiver/transceiver, one bound as `d.owner` first; parks when there is none.
    fn route(&mut self, d: PendingDeliver) -> Option<oneshot::Receiver<()>> {
        let target = self
            .sessions
            .iter()
            .filter(|(_, s)| s.kind.receives())
            .min_by_key(|(id, s)| (s.system_id != d.owner, **id))
            .map(|(id, _)| *id);
        match target {
            Some(id) => self.send_to(id, d),
            None => {
                self.park(d);
                None
            }
        }
    }
}

/// Token bucket over all sessions; the burst is one second's worth (at least one).
struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn take(&mut self, rate: f64) -> bool {
        let now = Instant::now();
        let capacity = rate.max(1.0);
        let refill = now.duration_since(self.last).as_secs_f64() * rate;
        self.last = now;
        self.tokens = (self.tokens + refill).min(capacity);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// What the simulator holds across connections: config, records, the registry of bound ESMEs, the rate bucket.
struct SmscState {
    cfg: RwLock<SmscConfig>,
    submitted: Mutex<Vec<Submitted>>,
    events: Mutex<VecDeque<String>>,
    registry: Mutex<Registry>,
    bucket: Mutex<Bucket>,
    next_session: AtomicU64,
    next_msg: AtomicU64,
    submit_count: AtomicU64,
    next_ref: AtomicU64,
    id_prefix: u32,
    cancel: CancellationToken,
    tasks: TaskTracker,
}

impl SmscState {
    fn new(cfg: SmscConfig) -> SmscState {
        SmscState {
            cfg: RwLock::new(cfg),
            submitted: Mutex::new(Vec::new()),
            events: Mutex::new(VecDeque::new()),
            registry: Mutex::new(Registry::default()),
            bucket: Mutex::new(Bucket { tokens: f64::INFINITY, last: Instant::now() }),
            next_session: AtomicU64::new(1),
            next_msg: AtomicU64::new(1),
            submit_count: AtomicU64::new(0),
            next_ref: AtomicU64::new(rand::random::<u8>() as u64),
            id_prefix: rand::random(),
            cancel: CancellationToken::new(),
            tasks: TaskTracker::new(),
        }
    }

    fn config(&self) -> SmscConfig {
        self.cfg.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn event(&self, line: String) {
        tracing::debug!(target: "smsc", "{line}");
        let mut events = lock(&self.events);
        if events.len() >= MAX_EVENTS {
            events.pop_front();
        }
        events.push_back(line);
    }

    fn new_message_id(&self, format: IdFormat) -> String {
        let n = self.next_msg.fetch_add(1, Ordering::Relaxed);
        match format {
            IdFormat::Hex => format!("{:08x}{:08x}", self.id_prefix, n & 0xFFFF_FFFF),
            IdFormat::Decimal => n.to_string(),
        }
    }

    /// Whether a submit may pass `max_rate`.
    fn admit(&self, max_rate: Option<f64>) -> bool {
        let mut bucket = lock(&self.bucket);
        match max_rate {
            Some(rate) if rate.is_finite() && rate > 0.0 => bucket.take(rate),
            Some(rate) if rate <= 0.0 => false,
            _ => {
                bucket.tokens = f64::INFINITY;
                true
            }
        }
    }

    /// Runs `fut` on the simulator's tracker; it is abandoned at shutdown.
    fn spawn(&self, fut: impl Future<Output = ()> + Send + 'static) {
        let cancel = self.cancel.clone();
        self.tasks.spawn(async move {
            tokio::select! {
                _ = cancel.cancelled() => {}
                _ = fut => {}
            }
        });
    }
}

async fn accept_loop(shared: Arc<SmscState>, listener: TcpListener) {
    loop {
        tokio::select! {
            _ = shared.cancel.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    shared.tasks.spawn(run_session(shared.clone(), stream, peer));
                }
                Err(e) => {
                    tracing::warn!(target: "smsc", "accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
}

async fn write_loop(wr: OwnedWriteHalf, mut rx: mpsc::UnboundedReceiver<Out>) {
    // What is queued when the writer wakes goes out in one write; each
    // sender is told once it is flushed.
    let mut out = FramedWrite::new(wr, SmppFramer::default());
    let mut written = Vec::new();
    let mut closing = false;
    while !closing && let Some(Out::Send(first, done)) = rx.recv().await {
        written.extend(done);
        let more = || match rx.try_recv() {
            Ok(Out::Send(command, done)) => {
                written.extend(done);
                Some(*command)
            }
            Ok(Out::Close) => {
                closing = true;
                None
            }
            Err(_) => None,
        };
        if write_burst(&mut out, *first, more).await.is_err() {
            break;
        }
        for done in written.drain(..) {
            let _ = done.send(());
        }
    }
    let _ = out.close().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_deserializes_with_defaults_and_rejects_unknown_keys() {
        let cfg: SmscConfig =
            serde_json::from_str(r#"{"id_format":"decimal","credentials":[["smsgw","secret"]],"max_rate":2.5}"#)
                .expect("config");
        assert_eq!(cfg.id_format, IdFormat::Decimal);
        assert_eq!(cfg.credentials, vec![("smsgw".to_owned(), "secret".to_owned())]);
        assert_eq!(cfg.max_rate, Some(2.5));
        assert_eq!(cfg.system_id, "smsc-sim");
        assert!(cfg.receipt_tlvs);
        assert!(serde_json::from_str::<SmscConfig>(r#"{"windw":3}"#).is_err());
    }

    #[test]
    fn bucket_limits_rate() {
        let mut b = Bucket { tokens: f64::INFINITY, last: Instant::now() };
        let passed = (0..20).filter(|_| b.take(5.0)).count();
        assert_eq!(passed, 5);
    }
}
