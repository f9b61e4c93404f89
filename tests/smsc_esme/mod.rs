//! A minimal ESME over the crate's framer: bind, submit, read responses and deliver_sm, ack, unbind.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use rusmpp::pdus::{BindReceiver, BindTransceiver, BindTransmitter, DeliverSm, DeliverSmResp, SubmitSm};
use rusmpp::tlvs::MessageSubmissionRequestTlvValue;
use rusmpp::types::{COctetString, OctetString};
use rusmpp::values::{DataCoding, EsmClass, InterfaceVersion, Npi, RegisteredDelivery, Ton};
use rusmpp::{Command, CommandStatus, Pdu};
use smsgw::simulate::smsc::{Smsc, SmscConfig, cmd};
use smsgw::smpp::{RawPdu, SmppFrame, SmppFramer};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio_util::codec::{FramedRead, FramedWrite};

pub const TIMEOUT: Duration = Duration::from_secs(5);

pub async fn start(cfg: SmscConfig) -> Smsc {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind listener");
    Smsc::start(cfg, listener).await
}

pub struct Esme {
    reader: FramedRead<OwnedReadHalf, SmppFramer>,
    writer: FramedWrite<OwnedWriteHalf, SmppFramer>,
    seq: u32,
    /// deliver_sm seen while waiting for something else.
    pub delivers: VecDeque<(u32, DeliverSm)>,
    /// Every frame read, in order (command_id, sequence_number).
    pub seen: Vec<(u32, u32)>,
}

impl Esme {
    pub async fn connect(addr: SocketAddr) -> Esme {
        let stream = TcpStream::connect(addr).await.expect("connect");
        let (rd, wr) = stream.into_split();
        Esme {
            reader: FramedRead::new(rd, SmppFramer::default()),
            writer: FramedWrite::new(wr, SmppFramer::default()),
            seq: 0,
            delivers: VecDeque::new(),
            seen: Vec::new(),
        }
    }

    /// Connects and binds as transceiver with interface_version 0x34; panics unless the bind succeeds.
    pub async fn bound(addr: SocketAddr, system_id: &str, password: &str) -> Esme {
        let mut esme = Esme::connect(addr).await;
        let (status, _) = esme.bind(cmd::BIND_TRANSCEIVER, system_id, password, 0x34).await;
        assert_eq!(status, 0, "bind failed");
        esme
    }

    pub fn next_seq(&mut self) -> u32 {
        self.seq += 1;
        self.seq
    }

    pub async fn send(&mut self, pdu: impl Into<Pdu>) -> u32 {
        let seq = self.next_seq();
        self.writer.send(Command::new(CommandStatus::EsmeRok, seq, pdu)).await.expect("send");
        seq
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.writer.get_mut().write_all(bytes).await.expect("send raw");
    }

    /// Next frame, None on EOF; panics after TIMEOUT.
    pub async fn read(&mut self) -> Option<RawPdu> {
        self.read_within(TIMEOUT).await.expect("timed out waiting for a PDU")
    }

    /// Next frame: Ok(None) on EOF, Err on timeout.
    pub async fn read_within(&mut self, wait: Duration) -> Result<Option<RawPdu>, ()> {
        match tokio::time::timeout(wait, self.reader.next()).await {
            Err(_) => Err(()),
            Ok(None) | Ok(Some(Err(_))) => Ok(None),
            Ok(Some(Ok(SmppFrame::Pdu(f)))) => {
                self.seen.push((f.command_id, f.sequence_number));
                Ok(Some(f))
            }
            Ok(Some(Ok(other))) => panic!("unexpected framing item {other:?}"),
        }
    }

    pub async fn bind(&mut self, command_id: u32, system_id: &str, password: &str, version: u8) -> (u32, RawPdu) {
        let sid = COctetString::from_str(system_id).expect("system_id");
        let pw = COctetString::from_str(password).expect("password");
        let v = InterfaceVersion::from(version);
        let pdu = match command_id {
            cmd::BIND_TRANSMITTER => Pdu::BindTransmitter(
                BindTransmitter::builder().system_id(sid).password(pw).interface_version(v).build(),
            ),
            cmd::BIND_RECEIVER => {
                Pdu::BindReceiver(BindReceiver::builder().system_id(sid).password(pw).interface_version(v).build())
            }
            _ => Pdu::BindTransceiver(
                BindTransceiver::builder().system_id(sid).password(pw).interface_version(v).build(),
            ),
        };
        let seq = self.send(pdu).await;
        let frame = self.wait_resp(seq).await;
        assert_eq!(frame.command_id, command_id | 0x8000_0000);
        (frame.command_status, frame)
    }

    /// Waits for the response with this sequence number, queueing deliver_sm met on the way.
    pub async fn wait_resp(&mut self, seq: u32) -> RawPdu {
        loop {
            let frame = self.read().await.expect("connection closed while waiting for a response");
            if frame.is_response() && frame.sequence_number == seq {
                return frame;
            }
            self.queue_deliver(&frame);
        }
    }

    fn queue_deliver(&mut self, frame: &RawPdu) {
        if frame.command_id == cmd::DELIVER_SM {
            let command = frame.decode().expect("deliver_sm decodes");
            if let Some(Pdu::DeliverSm(d)) = command.pdu() {
                self.delivers.push_back((frame.sequence_number, d.clone()));
            }
        }
    }

    /// Next deliver_sm (queued or read), with its sequence number.
    pub async fn wait_deliver(&mut self) -> (u32, DeliverSm) {
        loop {
            if let Some(d) = self.delivers.pop_front() {
                return d;
            }
            let frame = self.read().await.expect("connection closed while waiting for deliver_sm");
            self.queue_deliver(&frame);
        }
    }

    pub async fn ack(&mut self, seq: u32) {
        let resp = DeliverSmResp::builder().build();
        self.writer.send(Command::new(CommandStatus::EsmeRok, seq, resp)).await.expect("ack");
    }

    /// Submits and returns (command_status, message_id of the response).
    pub async fn submit(&mut self, sm: SubmitSm) -> (u32, Option<String>) {
        let seq = self.send(sm).await;
        let frame = self.wait_resp(seq).await;
        assert_eq!(frame.command_id, 0x8000_0004);
        let id = match frame.decode().ok().and_then(|c| c.pdu().cloned()) {
            Some(Pdu::SubmitSmResp(r)) => Some(r.message_id().to_string()),
            _ => None,
        };
        (frame.command_status, id)
    }

    pub async fn enquire_link(&mut self) -> RawPdu {
        let seq = self.send(Pdu::EnquireLink).await;
        self.wait_resp(seq).await
    }

    pub async fn unbind(&mut self) -> RawPdu {
        let seq = self.send(Pdu::Unbind).await;
        self.wait_resp(seq).await
    }

    /// True if the peer closes the connection within `wait`.
    pub async fn closed_within(&mut self, wait: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.read_within(left).await {
                Ok(None) => return true,
                Ok(Some(frame)) => self.queue_deliver(&frame),
                Err(()) => return false,
            }
        }
    }
}

/// A submit_sm with explicit esm_class (rusmpp's default is 0x08).
pub fn submit_sm(src: &str, dst: &str, message: &[u8], data_coding: u8, esm_class: u8, rd: u8) -> SubmitSm {
    SubmitSm::builder()
        .source_addr_ton(Ton::from(5))
        .source_addr_npi(Npi::from(0))
        .source_addr(COctetString::from_str(src).expect("src"))
        .dest_addr_ton(Ton::from(1))
        .dest_addr_npi(Npi::from(1))
        .destination_addr(COctetString::from_str(dst).expect("dst"))
        .esm_class(EsmClass::from(esm_class))
        .data_coding(DataCoding::from(data_coding))
        .registered_delivery(RegisteredDelivery::from(rd))
        .short_message(OctetString::from_slice(message).expect("short_message"))
        .build()
}

pub fn text_sm(text: &str, rd: u8) -> SubmitSm {
    submit_sm("SENDER", "447700900123", text.as_bytes(), 0, 0, rd)
}

pub fn with_tlvs(mut sm: SubmitSm, tlvs: Vec<MessageSubmissionRequestTlvValue>) -> SubmitSm {
    sm.set_tlvs(tlvs);
    sm
}

/// Field `name:` of receipt text, e.g. `field(text, "stat")`.
pub fn field<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    let key = format!("{name}:");
    let start = text.find(&key)? + key.len();
    let rest = &text[start..];
    if name == "text" {
        return Some(rest);
    }
    Some(rest.split(' ').next().unwrap_or(""))
}

/// Polls `cond` every 10 ms up to TIMEOUT.
pub async fn eventually(mut cond: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while tokio::time::Instant::now() < deadline {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    cond()
}
