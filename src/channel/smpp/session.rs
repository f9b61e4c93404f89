//! One SMPP session (a bind) to a carrier: connect, bind, keep it alive with
//! enquire_link, carry submits within the window, answer everything the
//! peer sends (deliver_sm only after the store has what it carried, with
//! at most a window of them waiting: beyond that the socket is not read,
//! so a flooding carrier is slowed by TCP, not buffered in memory), and
//! reconnect with backoff and jitter when it drops. Unbinds on stop after
//! the submits in flight are answered (bounded).

use super::config::SmppRoute;
use super::pdus::{self, Delivered, Incoming};
use crate::channel::{Event, EventSender, RouteEvent};
use crate::smpp::{FramingError, MAX_PDU, RawPdu, SmppFrame, SmppFramer, write_burst};
use futures::{SinkExt, StreamExt};
use rand::Rng;
use rusmpp::pdus::{BindReceiver, BindTransceiver, BindTransmitter, DataSmResp, DeliverSmResp, SubmitSm};
use rusmpp::types::COctetString;
use rusmpp::values::{InterfaceVersion, Npi, Ton};
use rusmpp::{Command, CommandStatus, Pdu};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;

/// One part to submit, and where to say how it went: what a route hands its binds.
pub struct SubmitJob {
    pub pdu: SubmitSm,
    pub reply: oneshot::Sender<PartResult>,
}

#[derive(Debug)]
pub enum PartResult {
    /// The SMSC's message id.
    Accepted(String),
    /// The SMSC's command_status.
    Refused(u32),
    /// No answer: the bind dropped or the answer did not come in time.
    Lost(String),
    /// An answer that breaks the protocol (a generic_nack with status 0):
    /// the part may be sent again.
    Protocol(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindKind {
    Transceiver,
    Transmitter,
    Receiver,
}

impl BindKind {
    pub fn name(self) -> &'static str {
        match self {
            BindKind::Transceiver => "transceiver",
            BindKind::Transmitter => "transmitter",
            BindKind::Receiver => "receiver",
        }
    }
    pub fn submits(self) -> bool {
        self != BindKind::Receiver
    }
}

/// What the route and the API see of a bind.
pub struct BindState {
    pub kind: BindKind,
    pub index: usize,
    pub bound: AtomicBool,
    pub in_window: AtomicUsize,
    /// deliver_sm/data_sm waiting for the store before they are answered.
    pub inbound_waiting: AtomicUsize,
    pub last_error: Mutex<Option<String>>,
}

impl BindState {
    pub fn new(kind: BindKind, index: usize) -> BindState {
        BindState {
            kind,
            index,
            bound: AtomicBool::new(false),
            in_window: AtomicUsize::new(0),
            inbound_waiting: AtomicUsize::new(0),
            last_error: Mutex::new(None),
        }
    }
    fn error(&self, e: &str) {
        if let Ok(mut g) = self.last_error.lock() {
            *g = Some(e.to_string());
        }
    }
}

/// What every bind of a route shares.
pub struct BindContext {
    pub route: String,
    pub cfg: SmppRoute,
    pub events: EventSender,
    pub jobs: async_channel::Receiver<SubmitJob>,
    pub cancel: CancellationToken,
    /// Set when the route binds over TLS.
    pub tls: Option<tokio_rustls::TlsConnector>,
}

/// Why a connected bind ended.
enum BindEnd {
    Stopped,
    Lost(String),
}

enum BindFailure {
    Refused(u32),
    Other(String),
}

/// A TCP or TLS connection to the SMSC.
pub trait Link: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin> Link for T {}

type Conn = Framed<Box<dyn Link>, SmppFramer>;

fn c_str<const MIN: usize, const MAX: usize>(s: &str) -> COctetString<MIN, MAX> {
    let mut b = s.as_bytes().to_vec();
    b.push(0);
    COctetString::from_vec(b).unwrap_or_default()
}

pub async fn run(shared: Arc<BindContext>, state: Arc<BindState>) {
    let cfg = &shared.cfg;
    let min = Duration::from_millis(cfg.reconnect_min_ms);
    let max = Duration::from_millis(cfg.reconnect_max_ms);
    let mut backoff = min;
    let who = format!("{} {} #{}", shared.route, state.kind.name(), state.index);
    // A run after a panic starts from scratch: whatever the last one showed
    // died with its connection.
    state.bound.store(false, Ordering::Relaxed);
    state.in_window.store(0, Ordering::Relaxed);
    loop {
        if shared.cancel.is_cancelled() {
            return;
        }
        let wait = match connect_and_bind(&shared, state.kind).await {
            Ok(conn) => {
                tracing::info!(route = %shared.route, bind = %who, "bound");
                backoff = min;
                state.bound.store(true, Ordering::Relaxed);
                let end = serve(&shared, &state, conn).await;
                state.bound.store(false, Ordering::Relaxed);
                state.in_window.store(0, Ordering::Relaxed);
                state.inbound_waiting.store(0, Ordering::Relaxed);
                match end {
                    BindEnd::Stopped => return,
                    BindEnd::Lost(why) => {
                        tracing::warn!(route = %shared.route, bind = %who, reason = %why, "bind lost; reconnecting");
                        state.error(&why);
                        min
                    }
                }
            }
            Err(BindFailure::Refused(st)) if matches!(st, 0x0D..=0x0F) => {
                let why = format!(
                    "bind refused with {} (0x{st:02x}): check system_id and password; retrying in {} s",
                    super::status::name(st),
                    cfg.bind_refused_retry_secs
                );
                tracing::error!(route = %shared.route, bind = %who, "{why}");
                state.error(&why);
                Duration::from_secs(cfg.bind_refused_retry_secs)
            }
            Err(BindFailure::Refused(st)) => {
                let why = format!("bind refused with {} (0x{st:02x})", super::status::name(st));
                tracing::warn!(route = %shared.route, bind = %who, "{why}");
                state.error(&why);
                backoff
            }
            Err(BindFailure::Other(why)) => {
                tracing::warn!(route = %shared.route, bind = %who, reason = %why, "cannot bind");
                state.error(&why);
                backoff
            }
        };
        backoff = (backoff * 2).min(max);
        let jittered = wait.mul_f64(rand::rng().random_range(0.5..=1.0));
        tokio::select! {
            _ = tokio::time::sleep(jittered) => {}
            _ = shared.cancel.cancelled() => return,
        }
    }
}

async fn connect_and_bind(shared: &BindContext, kind: BindKind) -> Result<Conn, BindFailure> {
    let cfg = &shared.cfg;
    let limit = Duration::from_secs(cfg.response_timeout_secs);
    let addr = format!("{}:{}", cfg.host, cfg.port);
    let stream = tokio::time::timeout(limit, TcpStream::connect(&addr))
        .await
        .map_err(|_| BindFailure::Other(format!("connecting to {addr} timed out")))?
        .map_err(|e| BindFailure::Other(format!("cannot connect to {addr}: {e}")))?;
    let _ = stream.set_nodelay(true);
    let link: Box<dyn Link> = match &shared.tls {
        None => Box::new(stream),
        Some(tls) => {
            let name = cfg.tls_server_name.clone().unwrap_or_else(|| cfg.host.clone());
            let server = rustls_pki_types::ServerName::try_from(name.clone())
                .map_err(|e| BindFailure::Other(format!("TLS server name {name:?}: {e}")))?;
            let tls_stream = tokio::time::timeout(limit, tls.connect(server, stream))
                .await
                .map_err(|_| BindFailure::Other(format!("TLS handshake with {addr} timed out")))?
                .map_err(|e| BindFailure::Other(format!("TLS handshake with {addr}: {e}")))?;
            Box::new(tls_stream)
        }
    };
    let mut conn = Framed::new(link, SmppFramer::new(MAX_PDU));
    let password = cfg.password.as_ref().map(|p| p.expose()).unwrap_or_default();
    macro_rules! bind {
        ($t:ident) => {
            Pdu::$t($t {
                system_id: c_str(&cfg.system_id),
                password: c_str(password),
                system_type: c_str(&cfg.system_type),
                interface_version: InterfaceVersion::Smpp3_4,
                addr_ton: Ton::Unknown,
                addr_npi: Npi::Unknown,
                address_range: c_str(&cfg.address_range),
            })
        };
    }
    let pdu = match kind {
        BindKind::Transceiver => bind!(BindTransceiver),
        BindKind::Transmitter => bind!(BindTransmitter),
        BindKind::Receiver => bind!(BindReceiver),
    };
    let bind_resp = u32::from(pdu.command_id()) | 0x8000_0000;
    conn.send(Command::new(CommandStatus::EsmeRok, 1, pdu))
        .await
        .map_err(|e| BindFailure::Other(format!("cannot send bind: {e}")))?;
    let deadline = Instant::now() + limit;
    loop {
        let frame = tokio::time::timeout_at(deadline, conn.next())
            .await
            .map_err(|_| BindFailure::Other("no answer to bind in time".into()))?;
        match frame {
            None => return Err(BindFailure::Other("the peer closed the connection during bind".into())),
            Some(Err(e)) => return Err(BindFailure::Other(format!("bind: {e}"))),
            Some(Ok(SmppFrame::Oversized { command_length, .. })) => {
                return Err(BindFailure::Other(format!("bind: {}", oversized(command_length))));
            }
            Some(Ok(SmppFrame::Pdu(p))) => {
                // Anything else before the bind answer (an early enquire_link, a PDU that does not decode) is ignored.
                let Ok(c) = p.into_command() else { continue };
                if c.sequence_number() != 1 || u32::from(c.id()) & 0x8000_0000 == 0 {
                    continue;
                }
                let st = u32::from(c.status());
                // Only the bind's own response binds: a generic_nack, even
                // with status 0, says the peer did not take the bind.
                return match (u32::from(c.id()) == bind_resp, st) {
                    (true, 0) => Ok(conn),
                    (true, st) => Err(BindFailure::Refused(st)),
                    (false, 0) => Err(BindFailure::Other(match c.id() {
                        rusmpp::CommandId::GenericNack => {
                            "the peer answered the bind with generic_nack; not bound".into()
                        }
                        other => format!("the peer answered the bind with 0x{:08x}; not bound", u32::from(other)),
                    })),
                    (false, st) => Err(BindFailure::Refused(st)),
                };
            }
        }
    }
}

/// Why a PDU over [`MAX_PDU`] ends the bind: the carrier's stream is not read on past it.
fn oversized(command_length: u32) -> String {
    FramingError::Length { command_length, max: MAX_PDU, command_id: None, sequence_number: None }.to_string()
}

/// What a request of ours waits for an answer to.
enum AwaitingResp {
    Submit(oneshot::Sender<PartResult>),
    Unbind,
}

fn resp(status: CommandStatus, seq: u32, pdu: impl Into<Pdu>) -> Command {
    Command::new(status, seq, pdu)
}

/// One connected bind: its sequence numbers, the requests awaiting a response, the deliver_sm awaiting the store.
struct BindSession<'a> {
    shared: &'a BindContext,
    state: &'a BindState,
    next_seq: u32,
    pending: HashMap<u32, (Instant, AwaitingResp)>,
    link_outstanding: Option<Instant>,
    /// deliver_sm/data_sm read and not yet answered (waiting for the
    /// store). At the window, the session stops reading the socket until
    /// one is answered: TCP makes a flooding carrier wait, and nothing
    /// piles up in memory.
    inbound: usize,
    /// Answers that wait for something (a commit) before they go out; the
    /// flag marks an answer to a deliver_sm/data_sm.
    acks: mpsc::UnboundedSender<(Command, bool)>,
}

impl BindSession<'_> {
    fn seq(&mut self) -> u32 {
        self.next_seq = if self.next_seq >= 0x7FFF_FFFF { 2 } else { self.next_seq + 1 };
        self.next_seq
    }

    fn submits_pending(&self) -> usize {
        self.pending.values().filter(|(_, p)| matches!(p, AwaitingResp::Submit(_))).count()
    }

    fn resolve(&mut self, seq: u32, result: PartResult) {
        if let Some((_, AwaitingResp::Submit(tx))) = self.pending.remove(&seq) {
            let _ = tx.send(result);
        }
        self.state.in_window.store(self.submits_pending(), Ordering::Relaxed);
    }

    /// Handle one frame; returns what to send back, or the end of the session.
    fn handle(&mut self, pdu: RawPdu) -> Result<Option<Command>, BindEnd> {
        let (command_id, sequence) = (pdu.command_id, pdu.sequence_number);
        let cmd = match pdu.into_command() {
            Err(e) => {
                let reason = e.to_string();
                tracing::warn!(route = %self.shared.route, command_id = format!("0x{command_id:08x}"), %reason, "undecodable PDU");
                if command_id & 0x8000_0000 != 0 {
                    self.resolve(sequence, PartResult::Lost(format!("undecodable answer: {reason}")));
                    return Ok(None);
                }
                return Ok(Some(resp(CommandStatus::EsmeRinvcmdlen, sequence, Pdu::GenericNack)));
            }
            Ok(c) => c,
        };
        let seq = cmd.sequence_number();
        let status = cmd.status();
        match cmd.pdu() {
            Some(Pdu::SubmitSmResp(r)) => {
                let result = if u32::from(status) == 0 {
                    PartResult::Accepted(r.message_id().as_str().to_string())
                } else {
                    PartResult::Refused(u32::from(status))
                };
                self.resolve(seq, result);
            }
            Some(Pdu::DataSmResp(r)) => {
                let result = if u32::from(status) == 0 {
                    PartResult::Accepted(r.message_id().as_str().to_string())
                } else {
                    PartResult::Refused(u32::from(status))
                };
                self.resolve(seq, result);
            }
            None if matches!(cmd.id(), rusmpp::CommandId::SubmitSmResp | rusmpp::CommandId::DataSmResp) => {
                self.resolve(seq, PartResult::Refused(u32::from(status)));
            }
            Some(Pdu::GenericNack) | None if cmd.id() == rusmpp::CommandId::GenericNack => {
                let result = match u32::from(status) {
                    0 => PartResult::Protocol("the carrier answered generic_nack with status 0".into()),
                    st => PartResult::Refused(st),
                };
                self.resolve(seq, result);
            }
            Some(Pdu::EnquireLinkResp) => self.link_outstanding = None,
            Some(Pdu::EnquireLink) => return Ok(Some(resp(CommandStatus::EsmeRok, seq, Pdu::EnquireLinkResp))),
            Some(Pdu::Unbind) => {
                // Answered before leaving: the caller flushes the acks.
                let _ = self.acks.send((resp(CommandStatus::EsmeRok, seq, Pdu::UnbindResp), false));
                return Err(BindEnd::Lost("the peer unbound".into()));
            }
            Some(Pdu::UnbindResp) => {
                self.pending.remove(&seq);
            }
            Some(pdu @ (Pdu::DeliverSm(_) | Pdu::DataSm(_))) => {
                if let Some(delivered) = Delivered::from_pdu(pdu) {
                    return Ok(self.incoming(seq, &delivered, matches!(pdu, Pdu::DataSm(_))));
                }
            }
            _ if u32::from(cmd.id()) & 0x8000_0000 == 0 => {
                tracing::warn!(route = %self.shared.route, id = ?cmd.id(), "unexpected request; answered generic_nack");
                return Ok(Some(resp(CommandStatus::EsmeRinvcmdid, seq, Pdu::GenericNack)));
            }
            _ => {}
        }
        Ok(None)
    }

    /// A deliver_sm/data_sm: record what it carries, answer once it is on disk.
    fn incoming(&mut self, seq: u32, d: &Delivered<'_>, data_sm: bool) -> Option<Command> {
        let answer = move |status: CommandStatus| -> Command {
            if data_sm {
                resp(status, seq, Pdu::DataSmResp(DataSmResp::builder().build()))
            } else {
                resp(status, seq, Pdu::DeliverSmResp(DeliverSmResp::builder().build()))
            }
        };
        let event = match pdus::read(d, self.shared.cfg.gsm_coding, self.shared.cfg.receipt_ids) {
            Err(why) => {
                tracing::warn!(route = %self.shared.route, %why, "unreadable deliver_sm refused");
                return Some(answer(CommandStatus::EsmeRxPAppn));
            }
            Ok(Incoming::Receipt { status: None, .. }) => return Some(answer(CommandStatus::EsmeRok)),
            Ok(Incoming::Receipt { id, status: Some(status), error }) => Event::Receipt {
                remote_id: id,
                status,
                error_code: error.as_ref().map(|_| "dlr".to_string()),
                error_text: error,
                sc_time: None,
                legacy_id: None,
            },
            Ok(Incoming::Message { from, to, text, concat }) => {
                Event::Inbound { from, to, text, concat, sent_at: None }
            }
        };
        let (tx, rx) = oneshot::channel();
        let ev = RouteEvent { route: self.shared.route.clone(), event, ack: Some(tx) };
        if self.shared.events.send(ev).is_err() {
            return Some(answer(CommandStatus::EsmeRxTAppn));
        }
        self.inbound += 1;
        self.state.inbound_waiting.store(self.inbound, Ordering::Relaxed);
        let acks = self.acks.clone();
        tokio::spawn(async move {
            let stored = matches!(rx.await, Ok(true));
            let status = if stored { CommandStatus::EsmeRok } else { CommandStatus::EsmeRxTAppn };
            let _ = acks.send((answer(status), true));
        });
        None
    }

    /// The answer to an inbound PDU, now that it is stored (`inbound`: it
    /// held a place in the window).
    fn answered(&mut self, reply: Command, inbound: bool) -> Command {
        self.inbound -= usize::from(inbound);
        self.state.inbound_waiting.store(self.inbound, Ordering::Relaxed);
        reply
    }

    /// The `submit_sm` for `job`, awaiting its answer until `timeout`;
    /// nothing when its submitter gave up waiting.
    fn start(&mut self, job: SubmitJob, timeout: Duration) -> Option<Command> {
        if job.reply.is_closed() {
            return None;
        }
        crate::supervise::fault_point("smpp", &self.shared.route);
        let seq = self.seq();
        self.pending.insert(seq, (Instant::now() + timeout, AwaitingResp::Submit(job.reply)));
        self.state.in_window.store(self.submits_pending(), Ordering::Relaxed);
        Some(Command::new(CommandStatus::EsmeRok, seq, Pdu::SubmitSm(job.pdu)))
    }

    fn expire(&mut self, now: Instant) {
        let late: Vec<u32> = self.pending.iter().filter(|(_, (d, _))| *d <= now).map(|(s, _)| *s).collect();
        for seq in late {
            let secs = self.shared.cfg.response_timeout_secs;
            self.resolve(seq, PartResult::Lost(format!("no submit_sm_resp within {secs} s")));
            self.pending.remove(&seq);
        }
    }

    fn fail_all(&mut self, why: &str) {
        for (_, (_, p)) in self.pending.drain() {
            if let AwaitingResp::Submit(tx) = p {
                let _ = tx.send(PartResult::Lost(why.to_string()));
            }
        }
    }
}

async fn serve(shared: &BindContext, state: &BindState, conn: Conn) -> BindEnd {
    let (mut sink, mut stream) = conn.split();
    let (acks, mut acks_rx) = mpsc::unbounded_channel();
    let mut s =
        BindSession { shared, state, next_seq: 1, pending: HashMap::new(), link_outstanding: None, inbound: 0, acks };
    let cfg = &shared.cfg;
    let timeout = Duration::from_secs(cfg.response_timeout_secs);
    let mut link = tokio::time::interval(Duration::from_secs(cfg.enquire_link_secs));
    link.reset();
    let mut check = tokio::time::interval(Duration::from_millis(250));
    // Each branch gives the PDU it has to write, if any; the answers and
    // submits already waiting go out with it in one write (`write_burst`).
    let has_room = |s: &BindSession| state.kind.submits() && s.submits_pending() < cfg.window;
    let end = loop {
        let room = has_room(&s);
        let listen = s.inbound < cfg.window;
        let queued = tokio::select! {
            _ = shared.cancel.cancelled() => break BindEnd::Stopped,
            frame = stream.next(), if listen => {
                let frame = match frame {
                    None => break BindEnd::Lost("the peer closed the connection".into()),
                    Some(Err(e)) => break BindEnd::Lost(e.to_string()),
                    Some(Ok(SmppFrame::Oversized { command_length, .. })) => break BindEnd::Lost(oversized(command_length)),
                    Some(Ok(SmppFrame::Pdu(p))) => p,
                };
                match s.handle(frame) {
                    Ok(reply) => reply,
                    Err(end) => {
                        while let Ok((c, _)) = acks_rx.try_recv() { let _ = sink.feed(c).await; }
                        let _ = sink.flush().await;
                        break end;
                    }
                }
            }
            Some((reply, inbound)) = acks_rx.recv() => Some(s.answered(reply, inbound)),
            job = shared.jobs.recv(), if room => {
                let Ok(job) = job else { break BindEnd::Stopped };
                s.start(job, timeout)
            }
            _ = link.tick() => {
                if let Some(since) = s.link_outstanding && since.elapsed() > timeout {
                    break BindEnd::Lost(format!("no answer to enquire_link within {} s", cfg.response_timeout_secs));
                }
                s.link_outstanding.is_none().then(|| {
                    s.link_outstanding = Some(Instant::now());
                    Command::new(CommandStatus::EsmeRok, s.seq(), Pdu::EnquireLink)
                })
            }
            _ = check.tick() => { s.expire(Instant::now()); None }
        };
        let Some(first) = queued else { continue };
        let more = || loop {
            if let Ok((reply, inbound)) = acks_rx.try_recv() {
                return Some(s.answered(reply, inbound));
            }
            if !has_room(&s) {
                return None;
            }
            // A job whose submitter gave up is skipped, not the end.
            if let Some(cmd) = s.start(shared.jobs.try_recv().ok()?, timeout) {
                return Some(cmd);
            }
        };
        if let Err(e) = write_burst(&mut sink, first, more).await {
            break BindEnd::Lost(e.to_string());
        }
    };
    if let BindEnd::Lost(why) = &end {
        s.fail_all(why);
        return end;
    }
    // Stopping: no new submits; let the ones in flight be answered, then unbind.
    let deadline = Instant::now() + Duration::from_millis(cfg.unbind_timeout_ms);
    let mut unbinding = false;
    loop {
        if !unbinding && s.submits_pending() == 0 {
            let seq = s.seq();
            s.pending.insert(seq, (deadline, AwaitingResp::Unbind));
            if sink.send(Command::new(CommandStatus::EsmeRok, seq, Pdu::Unbind)).await.is_err() {
                break;
            }
            unbinding = true;
        }
        if unbinding && s.pending.is_empty() {
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => break,
            Some((reply, _)) = acks_rx.recv() => { let _ = sink.send(reply).await; }
            frame = stream.next() => match frame {
                Some(Ok(SmppFrame::Pdu(p))) => match s.handle(p) {
                    Ok(Some(reply)) => { let _ = sink.send(reply).await; }
                    Ok(None) => {}
                    Err(_) => break,
                },
                _ => break,
            },
        }
    }
    s.fail_all("smsgw is stopping");
    let _ = sink.close().await;
    BindEnd::Stopped
}
