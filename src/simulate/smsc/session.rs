//! One SMPP connection: the read loop, binds, submits with their responses and receipts.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use rusmpp::pdus::{BindReceiverResp, BindTransceiverResp, BindTransmitterResp, DataSmResp, DeliverSm, SubmitSmResp};
use rusmpp::tlvs::{MessageDeliveryRequestTlvValue, Tlv, TlvValue};
use rusmpp::types::{COctetString, OctetString};
use rusmpp::values::{DataCoding, EsmClass, InterfaceVersion, MessageState, Npi, RegisteredDelivery, Ton};
use rusmpp::{Command, CommandStatus, Pdu};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedReadHalf;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::codec::FramedRead;

use super::text::{parse_udh, yymmddhhmm};
use super::{
    BindKind, BoundEsme, ConcatInfo, ConcatVia, DeliverKind, Out, PendingDeliver, SmscError, SmscState, SubmitKind,
    SubmitOutcome, Submitted, cmd, lock, status, write_loop,
};
use crate::smpp::receipt::{self, ReceiptText};
use crate::smpp::reply::{generic_nack, header_only_command};
use crate::smpp::{FramingError, RawPdu, SmppFrame, SmppFramer};

/// Why a connection's read loop ended.
enum SessionEnd {
    PeerClosed,
    Unbind,
    Drop,
    BadFraming,
    Shutdown,
    Io(String),
}

/// One ESME's connection as the simulator serves it.
struct EsmeSession {
    id: u64,
    shared: Arc<SmscState>,
    tx: mpsc::UnboundedSender<Out>,
    /// (system_id, kind) once bound.
    bound: Option<(String, BindKind)>,
    window: Arc<Semaphore>,
    drop_at: Option<tokio::time::Instant>,
}

pub(super) async fn run_session(shared: Arc<SmscState>, stream: TcpStream, peer: SocketAddr) {
    let id = shared.next_session.fetch_add(1, Ordering::Relaxed);
    let (rd, wr) = stream.into_split();
    let (tx, rx) = mpsc::unbounded_channel();
    let writer = tokio::spawn(write_loop(wr, rx));
    let window = Arc::new(Semaphore::new(shared.config().window.clamp(1, Semaphore::MAX_PERMITS)));
    shared.event(format!("connect session {id} from {peer}"));
    let mut session = EsmeSession { id, shared, tx, bound: None, window, drop_at: None };
    let end = session.read_loop(FramedRead::new(rd, SmppFramer::default())).await;
    session.finish(end, writer).await;
}

async fn wait_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

impl EsmeSession {
    async fn read_loop(&mut self, mut reader: FramedRead<OwnedReadHalf, SmppFramer>) -> SessionEnd {
        let cancel = self.shared.cancel.clone();
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return SessionEnd::Shutdown,
                _ = wait_until(self.drop_at) => {
                    let secs = self.shared.config().drop_every_secs.unwrap_or(0);
                    self.shared.event(format!("drop session {} after {secs} s", self.id));
                    return SessionEnd::Drop;
                }
                item = reader.next() => match item {
                    None => return SessionEnd::PeerClosed,
                    Some(Err(FramingError::Length { sequence_number, command_length, .. })) => {
                        let seq = sequence_number.unwrap_or_default();
                        self.nack(status::INVCMDLEN, seq, &format!("command_length {command_length}"));
                        return SessionEnd::BadFraming;
                    }
                    Some(Err(e)) => return SessionEnd::Io(e.to_string()),
                    Some(Ok(SmppFrame::Pdu(frame))) => {
                        if let Some(end) = self.on_frame(frame) {
                            return end;
                        }
                    }
                    Some(Ok(SmppFrame::Oversized { sequence_number, command_length, .. })) => {
                        self.nack(status::INVCMDLEN, sequence_number, &format!("command_length {command_length}"));
                    }
                }
            }
        }
    }

    async fn finish(self, end: SessionEnd, writer: tokio::task::JoinHandle<()>) {
        let why = match &end {
            SessionEnd::PeerClosed => "peer closed".to_owned(),
            SessionEnd::Unbind => "unbind".to_owned(),
            SessionEnd::Drop => "dropped".to_owned(),
            SessionEnd::BadFraming => "bad command_length".to_owned(),
            SessionEnd::Shutdown => "shutdown".to_owned(),
            SessionEnd::Io(e) => format!("read error: {e}"),
        };
        // Unregister first, so nothing new is routed here, and keep what was not acknowledged for the next bind.
        {
            let mut reg = lock(&self.shared.registry);
            if let Some(entry) = reg.sessions.remove(&self.id) {
                let mut left: Vec<_> = entry.outstanding.into_iter().collect();
                left.sort_by_key(|(seq, _)| *seq);
                for (_, d) in left {
                    reg.park(d);
                }
            }
        }
        match end {
            SessionEnd::Drop | SessionEnd::Shutdown => writer.abort(),
            _ => {
                let _ = self.tx.send(Out::Close);
                let mut writer = writer;
                if tokio::time::timeout(Duration::from_secs(2), &mut writer).await.is_err() {
                    writer.abort();
                }
            }
        }
        self.shared.event(format!("closed session {} ({why})", self.id));
    }

    fn system_id(&self) -> &str {
        self.bound.as_ref().map_or("?", |(s, _)| s.as_str())
    }

    fn send(&self, command: Command) {
        let _ = self.tx.send(Out::Send(Box::new(command), None));
    }

    fn nack(&self, code: u32, seq: u32, reason: &str) {
        self.shared.event(format!("generic_nack 0x{code:08x} to seq {seq} ({reason})"));
        self.send(generic_nack(code, seq));
    }

    fn on_frame(&mut self, frame: RawPdu) -> Option<SessionEnd> {
        let seq = frame.sequence_number;
        if frame.is_response() {
            self.on_response(&frame);
            return None;
        }
        match frame.command_id {
            cmd::ENQUIRE_LINK => {
                if self.shared.config().ignore_enquire_link {
                    self.shared.event(format!("enquire_link from {} ignored", self.system_id()));
                } else {
                    self.shared.event(format!("enquire_link from {}", self.system_id()));
                    self.send(header_only_command(cmd::ENQUIRE_LINK_RESP, status::OK, seq));
                }
                None
            }
            cmd::UNBIND => {
                self.shared.event(format!("unbind from {}", self.system_id()));
                self.send(header_only_command(cmd::UNBIND_RESP, status::OK, seq));
                Some(SessionEnd::Unbind)
            }
            cmd::BIND_TRANSMITTER | cmd::BIND_RECEIVER | cmd::BIND_TRANSCEIVER => {
                self.on_bind(&frame);
                None
            }
            cmd::SUBMIT_SM | cmd::DATA_SM => self.on_submit(&frame),
            other => {
                self.nack(status::INVCMDID, seq, &format!("command_id 0x{other:08x} not supported"));
                None
            }
        }
    }

    fn on_response(&self, frame: &RawPdu) {
        if !matches!(frame.command_id, cmd::DELIVER_SM_RESP | cmd::GENERIC_NACK) {
            return;
        }
        let status = frame.command_status;
        let mut reg = lock(&self.shared.registry);
        let pending = reg.sessions.get_mut(&self.id).and_then(|s| s.outstanding.remove(&frame.sequence_number));
        let Some(d) = pending else {
            drop(reg);
            self.shared.event(format!("unexpected response 0x{:08x} seq {}", frame.command_id, frame.sequence_number));
            return;
        };
        let what = match &d.kind {
            DeliverKind::Receipt { message_id } => format!("receipt {message_id}"),
            DeliverKind::Inbound { part, total } => format!("inbound {part}/{total}"),
        };
        let line = if status == status::OK && frame.command_id == cmd::DELIVER_SM_RESP {
            format!("{what} acked by {}", self.system_id())
        } else {
            reg.park(d);
            format!("{what} refused by {} with 0x{status:08x}, kept for redelivery", self.system_id())
        };
        drop(reg);
        self.shared.event(line);
    }

    fn on_bind(&mut self, frame: &RawPdu) {
        let Some(kind) = BindKind::from_command(frame.command_id) else { return };
        let seq = frame.sequence_number;
        let resp_id = frame.command_id | cmd::RESP;
        if self.bound.is_some() {
            self.shared.event(format!("{} on a bound session {}: already bound", kind.name(), self.id));
            self.send(header_only_command(resp_id, status::ALYBND, seq));
            return;
        }
        let command = match frame.decode() {
            Ok(c) => c,
            Err(e) => return self.nack(status::INVMSGLEN, seq, &format!("undecodable body: {e}")),
        };
        let (system_id, password, version) = match command.pdu() {
            Some(Pdu::BindTransmitter(b)) => (b.system_id.to_string(), b.password.to_string(), b.interface_version),
            Some(Pdu::BindReceiver(b)) => (b.system_id.to_string(), b.password.to_string(), b.interface_version),
            Some(Pdu::BindTransceiver(b)) => (b.system_id.to_string(), b.password.to_string(), b.interface_version),
            _ => return self.nack(status::INVMSGLEN, seq, "bind without a bind body"),
        };
        let version = u8::from(version);
        let cfg = self.shared.config();
        if cfg.nack_binds {
            return self.nack(status::OK, seq, "nack_binds fault");
        }
        let code = if cfg.reject_bind || !(version <= 0x34 || version == 0x50) {
            status::BINDFAIL
        } else if cfg.credentials.is_empty() {
            status::OK
        } else {
            match cfg.credentials.iter().find(|(id, _)| *id == system_id) {
                None => status::INVSYSID,
                Some((_, pw)) if *pw != password => status::INVPASWD,
                Some(_) => status::OK,
            }
        };
        if code != status::OK {
            self.shared.event(format!("{} from {system_id}: rejected 0x{code:08x}", kind.name()));
            self.send(header_only_command(resp_id, code, seq));
            return;
        }
        let visible: String = cfg.system_id.chars().filter(|c| c.is_ascii_graphic()).take(15).collect();
        let ours = COctetString::<1, 16>::from_str(&visible).unwrap_or_default();
        let sc_version = (version >= 0x34).then_some(InterfaceVersion::Smpp3_4);
        let pdu = match kind {
            BindKind::Transmitter => Pdu::BindTransmitterResp(
                BindTransmitterResp::builder().system_id(ours).sc_interface_version(sc_version).build(),
            ),
            BindKind::Receiver => Pdu::BindReceiverResp(
                BindReceiverResp::builder().system_id(ours).sc_interface_version(sc_version).build(),
            ),
            BindKind::Transceiver => Pdu::BindTransceiverResp(
                BindTransceiverResp::builder().system_id(ours).sc_interface_version(sc_version).build(),
            ),
        };
        self.send(Command::new(CommandStatus::EsmeRok, seq, pdu));
        self.shared.event(format!(
            "{} from {system_id}: ok (session {}, version 0x{version:02x})",
            kind.name(),
            self.id
        ));
        self.bound = Some((system_id.clone(), kind));
        self.drop_at =
            cfg.drop_every_secs.map(|secs| tokio::time::Instant::now() + Duration::from_secs(secs.min(1 << 32)));
        let mut reg = lock(&self.shared.registry);
        let entry = BoundEsme {
            system_id: system_id.clone(),
            kind,
            tx: self.tx.clone(),
            next_seq: 1,
            outstanding: HashMap::new(),
        };
        reg.sessions.insert(self.id, entry);
        if kind.receives() {
            let waiting = reg.parked.remove(&system_id).unwrap_or_default();
            for d in waiting {
                let _ = reg.send_to(self.id, d);
            }
        }
    }

    fn on_submit(&mut self, frame: &RawPdu) -> Option<SessionEnd> {
        let seq = frame.sequence_number;
        let resp_id = frame.command_id | cmd::RESP;
        let command = match frame.decode() {
            Ok(c) => c,
            Err(e) => {
                self.nack(status::INVMSGLEN, seq, &format!("undecodable body: {e}"));
                return None;
            }
        };
        let Some(mut rec) = command.pdu().and_then(record_of) else {
            self.nack(status::INVMSGLEN, seq, "submit without a submit body");
            return None;
        };
        let (addr_info, registered_delivery) = match command.pdu() {
            Some(Pdu::SubmitSm(s)) => (
                (s.source_addr_ton, s.source_addr_npi, s.dest_addr_ton, s.dest_addr_npi),
                u8::from(s.registered_delivery),
            ),
            Some(Pdu::DataSm(s)) => (
                (s.source_addr_ton, s.source_addr_npi, s.dest_addr_ton, s.dest_addr_npi),
                u8::from(s.registered_delivery),
            ),
            _ => return None,
        };
        rec.session = self.id;
        rec.seq = seq;
        rec.system_id = self.bound.as_ref().map(|(s, _)| s.clone()).unwrap_or_default();
        let cfg = self.shared.config();
        let may_submit = self.bound.as_ref().is_some_and(|(_, k)| k.transmits());
        let mut dropped_at = None;
        if may_submit && frame.command_id == cmd::SUBMIT_SM {
            let count = self.shared.submit_count.fetch_add(1, Ordering::Relaxed) + 1;
            if cfg.drop_every_n.is_some_and(|n| n > 0 && count.is_multiple_of(n)) {
                dropped_at = Some(count);
            }
        }
        rec.outcome = if !may_submit {
            SubmitOutcome::Rejected(status::INVBNDSTS)
        } else if cfg.nack_submits {
            SubmitOutcome::Nacked
        } else if dropped_at.is_some() {
            SubmitOutcome::Dropped
        } else if !self.shared.admit(cfg.max_rate) {
            SubmitOutcome::Throttled
        } else {
            SubmitOutcome::Accepted
        };
        if rec.outcome == SubmitOutcome::Accepted {
            rec.message_id = Some(self.shared.new_message_id(cfg.id_format));
        }
        lock(&self.shared.submitted).push(rec.clone());
        match rec.outcome {
            SubmitOutcome::Dropped => {
                let count = dropped_at.unwrap_or_default();
                self.shared.event(format!("drop session {} after submit_sm #{count}", self.id));
                return Some(SessionEnd::Drop);
            }
            SubmitOutcome::Throttled => self.send(header_only_command(resp_id, status::THROTTLED, seq)),
            SubmitOutcome::Rejected(code) => self.send(header_only_command(resp_id, code, seq)),
            SubmitOutcome::Nacked => self.nack(status::OK, seq, "nack_submits fault"),
            SubmitOutcome::Accepted => {
                let message_id = rec.message_id.clone().unwrap_or_default();
                let fraction =
                    if cfg.undelivered_fraction.is_nan() { 0.0 } else { cfg.undelivered_fraction.clamp(0.0, 1.0) };
                let undelivered = rand::random_bool(fraction);
                let want_receipt = match registered_delivery & 0x03 {
                    1 | 3 => true,
                    2 => undelivered,
                    _ => false,
                };
                let receipt = want_receipt.then(|| ReceiptPlan {
                    owner: rec.system_id.clone(),
                    message_id: message_id.clone(),
                    source: rec.source.clone(),
                    dest: rec.dest.clone(),
                    addr_info,
                    submitted_at: rec.at,
                    text: rec.text(),
                    undelivered,
                    tlvs: cfg.receipt_tlvs,
                });
                let resp = ok_submit_resp(frame.command_id, seq, &message_id);
                let job = AcceptedSubmit {
                    shared: self.shared.clone(),
                    tx: self.tx.clone(),
                    window: self.window.clone(),
                    latency: Duration::from_millis(cfg.submit_latency_ms),
                    receipt_delay: Duration::from_millis(cfg.receipt_delay_ms),
                    before: cfg.receipt_before_resp,
                    resp,
                    receipt,
                };
                self.shared.spawn(job.run());
            }
        }
        None
    }
}

fn ok_submit_resp(command_id: u32, seq: u32, message_id: &str) -> Command {
    let id = COctetString::<1, 65>::from_str(message_id).unwrap_or_default();
    let pdu = if command_id == cmd::DATA_SM {
        Pdu::DataSmResp(DataSmResp::builder().message_id(id).build())
    } else {
        Pdu::SubmitSmResp(SubmitSmResp::builder().message_id(id).build())
    };
    Command::new(CommandStatus::EsmeRok, seq, pdu)
}

/// One accepted submit_sm or data_sm: its response and maybe its receipt, on their own task.
struct AcceptedSubmit {
    shared: Arc<SmscState>,
    tx: mpsc::UnboundedSender<Out>,
    window: Arc<Semaphore>,
    latency: Duration,
    receipt_delay: Duration,
    before: bool,
    resp: Command,
    receipt: Option<ReceiptPlan>,
}

impl AcceptedSubmit {
    async fn run(self) {
        let Ok(permit) = self.window.clone().acquire_owned().await else { return };
        tokio::time::sleep(self.latency).await;
        match self.receipt {
            Some(plan) if self.before => {
                tokio::time::sleep(self.receipt_delay).await;
                let written = lock(&self.shared.registry).route(plan.build());
                if let Some(written) = written {
                    let _ = tokio::time::timeout(Duration::from_secs(2), written).await;
                }
                let _ = self.tx.send(Out::Send(Box::new(self.resp), None));
            }
            Some(plan) => {
                let _ = self.tx.send(Out::Send(Box::new(self.resp), None));
                drop(permit);
                tokio::time::sleep(self.receipt_delay).await;
                let _ = lock(&self.shared.registry).route(plan.build());
            }
            None => {
                let _ = self.tx.send(Out::Send(Box::new(self.resp), None));
            }
        }
    }
}

/// What a receipt needs from its submit.
struct ReceiptPlan {
    owner: String,
    message_id: String,
    source: String,
    dest: String,
    /// (source ton, source npi, dest ton, dest npi) of the submit.
    addr_info: (Ton, Npi, Ton, Npi),
    submitted_at: SystemTime,
    text: String,
    undelivered: bool,
    tlvs: bool,
}

impl ReceiptPlan {
    fn build(self) -> PendingDeliver {
        let (state, err) = if self.undelivered { (receipt::UNDELIVERABLE, "001") } else { (receipt::DELIVERED, "000") };
        let body = receipt::build(&ReceiptText {
            id: self.message_id.clone(),
            sub: Some("001".into()),
            dlvrd: Some(if self.undelivered { "000" } else { "001" }.into()),
            submit_date: Some(yymmddhhmm(self.submitted_at)),
            done_date: Some(yymmddhhmm(SystemTime::now())),
            stat: receipt::stat_word(state).into(),
            err: Some(err.into()),
            text: Some(receipt::text_head(&self.text)),
        });
        let (src_ton, src_npi, dst_ton, dst_npi) = self.addr_info;
        let mut builder = DeliverSm::builder()
            .source_addr_ton(dst_ton)
            .source_addr_npi(dst_npi)
            .source_addr(COctetString::from_str(&self.dest).unwrap_or_default())
            .dest_addr_ton(src_ton)
            .dest_addr_npi(src_npi)
            .destination_addr(COctetString::from_str(&self.source).unwrap_or_default())
            .esm_class(EsmClass::from(0x04))
            .data_coding(DataCoding::from(0))
            .short_message(octets(body.as_bytes()));
        if self.tlvs {
            if let Ok(id) = COctetString::<1, 65>::from_str(&self.message_id) {
                builder = builder.push_tlv(MessageDeliveryRequestTlvValue::ReceiptedMessageId(id));
            }
            builder = builder.push_tlv(MessageDeliveryRequestTlvValue::MessageState(MessageState::from(state)));
        }
        PendingDeliver {
            owner: self.owner,
            kind: DeliverKind::Receipt { message_id: self.message_id },
            pdu: builder.build(),
        }
    }
}

pub(super) fn octets(bytes: &[u8]) -> OctetString<0, 255> {
    OctetString::from_slice(bytes.get(..255).unwrap_or(bytes)).unwrap_or_default()
}

pub(super) fn address(s: &str) -> Result<COctetString<1, 21>, SmscError> {
    COctetString::from_str(s).map_err(|_| SmscError::BadAddress(s.to_owned()))
}

/// The fields of a submit_sm / data_sm (outcome and session fields are filled in by the caller).
fn record_of(pdu: &Pdu) -> Option<Submitted> {
    let (kind, source, dest, validity_period, esm, dc, rd, short, tlvs): (
        _,
        _,
        _,
        String,
        EsmClass,
        DataCoding,
        RegisteredDelivery,
        &[u8],
        &[Tlv],
    ) = match pdu {
        Pdu::SubmitSm(s) => (
            SubmitKind::SubmitSm,
            s.source_addr.to_string(),
            s.destination_addr.to_string(),
            s.validity_period.to_string(),
            s.esm_class,
            s.data_coding,
            s.registered_delivery,
            s.short_message(),
            s.tlvs(),
        ),
        Pdu::DataSm(s) => (
            SubmitKind::DataSm,
            s.source_addr.to_string(),
            s.destination_addr.to_string(),
            String::new(),
            s.esm_class,
            s.data_coding,
            s.registered_delivery,
            &[],
            s.tlvs(),
        ),
        _ => return None,
    };
    let esm_class = u8::from(esm);
    let (mut payload, mut sar) = (None, (None, None, None));
    for tlv in tlvs {
        match tlv.value() {
            Some(TlvValue::MessagePayload(p)) => payload = Some(p.value.to_vec()),
            Some(TlvValue::SarMsgRefNum(r)) => sar.0 = Some(*r),
            Some(TlvValue::SarTotalSegments(t)) => sar.1 = Some(*t),
            Some(TlvValue::SarSegmentSeqnum(n)) => sar.2 = Some(*n),
            _ => {}
        }
    }
    let data = payload.as_deref().unwrap_or(short);
    let (udh, mut concat) = if esm_class & 0x40 != 0 { parse_udh(data) } else { (None, None) };
    if concat.is_none()
        && let (Some(reference), Some(total), Some(part)) = sar
    {
        concat = Some(ConcatInfo { via: ConcatVia::Sar, reference, total, part });
    }
    Some(Submitted {
        kind,
        session: 0,
        system_id: String::new(),
        seq: 0,
        message_id: None,
        outcome: SubmitOutcome::Accepted,
        source,
        dest,
        data_coding: u8::from(dc),
        esm_class,
        registered_delivery: u8::from(rd),
        validity_period,
        short_message: short.to_vec(),
        message_payload: payload,
        udh,
        concat,
        at: SystemTime::now(),
    })
}
