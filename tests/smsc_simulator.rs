//! The simulator over real TCP on 127.0.0.1, driven by the minimal ESME in `common`.

mod smsc_esme;

use std::time::{Duration, Instant};

use rusmpp::Pdu;
use rusmpp::pdus::{BindTransceiverResp, DataSm, DeliverSm};
use rusmpp::tlvs::{MessageSubmissionRequestTlvValue, TlvValue};
use rusmpp::types::{AnyOctetString, COctetString};
use rusmpp::values::{DataCoding, InterfaceVersion, MessagePayload, MessageState};
use smsc_esme::{Esme, eventually, field, start, submit_sm, text_sm, with_tlvs};
use smsgw::simulate::smsc::{
    ConcatInfo, ConcatVia, IdFormat, SmscConfig, SmscError, SubmitKind, SubmitOutcome, cmd, decode_text, gsm_decode,
};

fn creds() -> SmscConfig {
    SmscConfig { credentials: vec![("smsgw".into(), "secret".into())], ..SmscConfig::default() }
}

fn cstr<const MIN: usize, const MAX: usize>(s: &str) -> COctetString<MIN, MAX> {
    std::str::FromStr::from_str(s).expect("c-octet string")
}

fn receipt_text(d: &DeliverSm) -> String {
    String::from_utf8(d.short_message().to_vec()).expect("receipt is ASCII")
}

fn tlv_values(d: &DeliverSm) -> Vec<TlvValue> {
    d.tlvs().iter().filter_map(|t| t.value().cloned()).collect()
}

#[tokio::test]
async fn bind_checks_credentials_versions_and_state() {
    let smsc = start(creds()).await;
    let addr = smsc.local_addr();

    let mut ok = Esme::connect(addr).await;
    let (status, frame) = ok.bind(cmd::BIND_TRANSCEIVER, "smsgw", "secret", 0x34).await;
    assert_eq!(status, 0);
    let Some(Pdu::BindTransceiverResp(resp)) = frame.decode().expect("bind resp").pdu().cloned() else {
        panic!("not a bind_transceiver_resp")
    };
    let resp: BindTransceiverResp = resp;
    assert_eq!(resp.system_id.to_string(), "smsc-sim");
    assert_eq!(resp.sc_interface_version(), Some(InterfaceVersion::Smpp3_4));
    let (again, _) = ok.bind(cmd::BIND_TRANSCEIVER, "smsgw", "secret", 0x34).await;
    assert_eq!(again, 0x05, "second bind on a bound session");

    let mut v5 = Esme::connect(addr).await;
    assert_eq!(v5.bind(cmd::BIND_TRANSMITTER, "smsgw", "secret", 0x50).await.0, 0);

    let mut bad_pw = Esme::connect(addr).await;
    let (status, frame) = bad_pw.bind(cmd::BIND_TRANSMITTER, "smsgw", "wrong", 0x34).await;
    assert_eq!(status, 0x0E);
    assert!(frame.body().is_empty(), "error responses carry the header only");
    // The connection stays usable: a corrected bind works.
    assert_eq!(bad_pw.bind(cmd::BIND_TRANSMITTER, "smsgw", "secret", 0x34).await.0, 0);

    let mut bad_id = Esme::connect(addr).await;
    assert_eq!(bad_id.bind(cmd::BIND_RECEIVER, "nobody", "secret", 0x34).await.0, 0x0F);

    let mut odd_version = Esme::connect(addr).await;
    assert_eq!(odd_version.bind(cmd::BIND_RECEIVER, "smsgw", "secret", 0x60).await.0, 0x0D);

    smsc.set_config(SmscConfig { reject_bind: true, ..creds() });
    let mut rejected = Esme::connect(addr).await;
    assert_eq!(rejected.bind(cmd::BIND_TRANSCEIVER, "smsgw", "secret", 0x34).await.0, 0x0D);

    // Empty credentials accept anyone.
    smsc.set_config(SmscConfig::default());
    let mut anyone = Esme::connect(addr).await;
    assert_eq!(anyone.bind(cmd::BIND_TRANSCEIVER, "whoever", "x", 0x34).await.0, 0);

    let events = smsc.events();
    assert!(events.iter().any(|e| e.starts_with("bind_transceiver from smsgw: ok")), "{events:?}");
    assert!(events.iter().any(|e| e == "bind_transmitter from smsgw: rejected 0x0000000e"), "{events:?}");
    assert!(events.iter().any(|e| e == "bind_receiver from nobody: rejected 0x0000000f"), "{events:?}");
    smsc.shutdown().await;
}

#[tokio::test]
async fn submit_ids_follow_the_configured_format() {
    let smsc = start(SmscConfig::default()).await;
    let mut esme = Esme::bound(smsc.local_addr(), "smsgw", "x").await;

    let (status, id) = esme.submit(text_sm("hello", 0)).await;
    assert_eq!(status, 0);
    let hex = id.expect("message id");
    assert_eq!(hex.len(), 16, "{hex}");
    assert!(hex.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()), "{hex}");
    let (_, hex2) = esme.submit(text_sm("hello again", 0)).await;
    assert_ne!(Some(hex.clone()), hex2, "ids are unique");

    smsc.set_config(SmscConfig { id_format: IdFormat::Decimal, ..SmscConfig::default() });
    let (status, id) = esme.submit(text_sm("decimal", 0)).await;
    assert_eq!(status, 0);
    let dec = id.expect("message id");
    assert!(dec.parse::<u64>().is_ok(), "{dec}");

    let submitted = smsc.submitted();
    assert_eq!(submitted.len(), 3);
    assert_eq!(submitted[0].message_id.as_deref(), Some(hex.as_str()));
    assert_eq!(submitted[2].message_id.as_deref(), Some(dec.as_str()));
    assert_eq!(submitted[0].text(), "hello");
    assert_eq!(submitted[0].source, "SENDER");
    assert_eq!(submitted[0].dest, "447700900123");
    assert_eq!((submitted[0].esm_class, submitted[0].data_coding), (0, 0));
    assert_eq!(submitted[0].system_id, "smsgw");
    assert!(submitted[0].seq < submitted[1].seq);
    smsc.shutdown().await;
}

#[tokio::test]
async fn receipts_carry_text_fields_and_tlvs() {
    let smsc = start(SmscConfig { receipt_delay_ms: 20, ..SmscConfig::default() }).await;
    let mut esme = Esme::bound(smsc.local_addr(), "smsgw", "x").await;

    let (_, id) = esme.submit(text_sm("Your code is 123456, do not share it", 1)).await;
    let id = id.expect("id");
    let (seq, receipt) = esme.wait_deliver().await;
    assert_eq!(u8::from(receipt.esm_class), 0x04);
    assert_eq!(receipt.source_addr.to_string(), "447700900123", "receipt comes from the destination");
    assert_eq!(receipt.destination_addr.to_string(), "SENDER");
    let text = receipt_text(&receipt);
    assert_eq!(field(&text, "id"), Some(id.as_str()), "{text}");
    assert_eq!(field(&text, "sub"), Some("001"));
    assert_eq!(field(&text, "dlvrd"), Some("001"));
    assert_eq!(field(&text, "stat"), Some("DELIVRD"));
    assert_eq!(field(&text, "err"), Some("000"));
    assert_eq!(field(&text, "text"), Some("Your code is 123456,"));
    for date in ["submit date", "done date"] {
        let d = field(&text, date).expect("date");
        assert!(d.len() == 10 && d.chars().all(|c| c.is_ascii_digit()), "{date}: {d}");
    }
    let tlvs = tlv_values(&receipt);
    assert!(tlvs.contains(&TlvValue::ReceiptedMessageId(cstr(&id))), "{tlvs:?}");
    assert!(tlvs.contains(&TlvValue::MessageState(MessageState::Delivered)), "{tlvs:?}");
    esme.ack(seq).await;
    assert!(eventually(|| smsc.events().iter().any(|e| *e == format!("receipt {id} acked by smsgw"))).await);
    assert!(eventually(|| smsc.unacknowledged() == 0).await);

    // Undelivered, text only.
    smsc.set_config(SmscConfig {
        receipt_delay_ms: 0,
        undelivered_fraction: 1.0,
        receipt_tlvs: false,
        ..SmscConfig::default()
    });
    let (_, id) = esme.submit(text_sm("nope", 1)).await;
    let (seq, receipt) = esme.wait_deliver().await;
    let text = receipt_text(&receipt);
    assert_eq!(field(&text, "id"), id.as_deref());
    assert_eq!(field(&text, "stat"), Some("UNDELIV"));
    assert_eq!(field(&text, "err"), Some("001"));
    assert_eq!(field(&text, "dlvrd"), Some("000"));
    assert!(receipt.tlvs().is_empty());
    esme.ack(seq).await;

    // registered_delivery 2 = failures only; with all delivered there is no receipt.
    smsc.set_config(SmscConfig { receipt_delay_ms: 0, ..SmscConfig::default() });
    esme.submit(text_sm("quiet", 2)).await;
    esme.submit(text_sm("none", 0)).await;
    assert!(esme.read_within(Duration::from_millis(200)).await.is_err(), "no receipt expected");

    // With TLVs and undelivered: message_state 5.
    smsc.set_config(SmscConfig { receipt_delay_ms: 0, undelivered_fraction: 1.0, ..SmscConfig::default() });
    esme.submit(text_sm("fails", 2)).await;
    let (_, receipt) = esme.wait_deliver().await;
    assert!(tlv_values(&receipt).contains(&TlvValue::MessageState(MessageState::Undeliverable)));
    smsc.shutdown().await;
}

#[tokio::test]
async fn receipt_can_overtake_the_submit_response() {
    let cfg =
        SmscConfig { receipt_before_resp: true, submit_latency_ms: 30, receipt_delay_ms: 0, ..SmscConfig::default() };
    let smsc = start(cfg).await;
    let mut esme = Esme::bound(smsc.local_addr(), "smsgw", "x").await;
    let seq = esme.send(text_sm("race", 1)).await;
    let first = esme.read().await.expect("first PDU");
    assert_eq!(first.command_id, cmd::DELIVER_SM, "receipt first");
    let second = esme.read().await.expect("second PDU");
    assert_eq!((second.command_id, second.sequence_number), (0x8000_0004, seq));
    let Some(Pdu::DeliverSm(receipt)) = first.decode().expect("deliver").pdu().cloned() else { panic!() };
    let Some(Pdu::SubmitSmResp(resp)) = second.decode().expect("resp").pdu().cloned() else { panic!() };
    assert_eq!(field(&receipt_text(&receipt), "id"), Some(resp.message_id().to_string().as_str()));
    smsc.shutdown().await;
}

#[tokio::test]
async fn above_max_rate_submits_are_throttled() {
    let smsc = start(SmscConfig { max_rate: Some(5.0), ..SmscConfig::default() }).await;
    let mut esme = Esme::bound(smsc.local_addr(), "smsgw", "x").await;
    let mut statuses = Vec::new();
    for i in 0..20 {
        statuses.push(esme.submit(text_sm(&format!("m{i}"), 0)).await.0);
    }
    let ok = statuses.iter().filter(|s| **s == 0).count();
    let throttled = statuses.iter().filter(|s| **s == 0x58).count();
    assert_eq!(ok + throttled, 20, "{statuses:?}");
    assert!((5..=7).contains(&ok), "{statuses:?}");
    let recorded = smsc.submitted();
    assert_eq!(recorded.iter().filter(|s| s.outcome == SubmitOutcome::Throttled).count(), throttled);
    assert!(recorded.iter().filter(|s| s.outcome == SubmitOutcome::Throttled).all(|s| s.message_id.is_none()));

    // Lifting the limit at run time.
    smsc.set_config(SmscConfig::default());
    assert_eq!(esme.submit(text_sm("free", 0)).await.0, 0);
    smsc.shutdown().await;
}

#[tokio::test]
async fn drop_every_n_closes_the_connection_without_answering() {
    let smsc = start(SmscConfig { drop_every_n: Some(3), ..SmscConfig::default() }).await;
    let addr = smsc.local_addr();
    let mut esme = Esme::bound(addr, "smsgw", "x").await;
    assert_eq!(esme.submit(text_sm("1", 0)).await.0, 0);
    assert_eq!(esme.submit(text_sm("2", 0)).await.0, 0);
    esme.send(text_sm("3", 0)).await;
    assert!(esme.closed_within(Duration::from_secs(2)).await);
    assert_eq!(esme.seen.iter().filter(|(id, _)| *id == 0x8000_0004).count(), 2, "third submit unanswered");

    // Counted over the simulator: the next connection loses its third submit (the sixth overall).
    let mut again = Esme::bound(addr, "smsgw", "x").await;
    assert_eq!(again.submit(text_sm("4", 0)).await.0, 0);
    assert_eq!(again.submit(text_sm("5", 0)).await.0, 0);
    again.send(text_sm("6", 0)).await;
    assert!(again.closed_within(Duration::from_secs(2)).await);

    let outcomes: Vec<_> = smsc.submitted().iter().map(|s| s.outcome).collect();
    assert_eq!(outcomes[2], SubmitOutcome::Dropped);
    assert_eq!(outcomes[5], SubmitOutcome::Dropped);
    assert!(smsc.events().iter().any(|e| e == "drop session 1 after submit_sm #3"), "{:?}", smsc.events());
    smsc.shutdown().await;
}

fn raw_pdu(command_id: u32, seq: u32, body: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&(16 + body.len() as u32).to_be_bytes());
    v.extend_from_slice(&command_id.to_be_bytes());
    v.extend_from_slice(&0u32.to_be_bytes());
    v.extend_from_slice(&seq.to_be_bytes());
    v.extend_from_slice(body);
    v
}

#[tokio::test]
async fn bad_pdus_get_nacks_and_the_session_lives_on() {
    let smsc = start(SmscConfig::default()).await;
    let mut esme = Esme::bound(smsc.local_addr(), "smsgw", "x").await;

    // submit_sm whose source_addr runs to the end of the PDU without a NUL.
    let mut body = vec![0u8, 1, 1];
    body.extend_from_slice(b"12345678901234567890123");
    esme.send_raw(&raw_pdu(cmd::SUBMIT_SM, 900, &body)).await;
    let nack = esme.read().await.expect("nack");
    assert_eq!((nack.command_id, nack.command_status, nack.sequence_number), (cmd::GENERIC_NACK, 0x01, 900));
    assert_eq!(esme.enquire_link().await.command_status, 0);

    // A non-ASCII byte in a C-octet string.
    esme.send_raw(&raw_pdu(cmd::SUBMIT_SM, 901, &[0, 1, 1, 0xC3, 0xA9, 0, 1, 1, b'1', 0])).await;
    let nack = esme.read().await.expect("nack");
    assert_eq!((nack.command_id, nack.sequence_number), (cmd::GENERIC_NACK, 901));

    // Unknown command id.
    esme.send_raw(&raw_pdu(0x0000_0099, 902, &[1, 2, 3])).await;
    let nack = esme.read().await.expect("nack");
    assert_eq!((nack.command_id, nack.command_status, nack.sequence_number), (cmd::GENERIC_NACK, 0x03, 902));

    // Oversized: skipped, nacked with ESME_RINVCMDLEN, stream stays in sync.
    let big = vec![b'x'; 70_000];
    esme.send_raw(&raw_pdu(cmd::SUBMIT_SM, 903, &big)).await;
    let nack = esme.read().await.expect("nack");
    assert_eq!((nack.command_id, nack.command_status, nack.sequence_number), (cmd::GENERIC_NACK, 0x02, 903));
    assert_eq!(esme.enquire_link().await.command_status, 0);

    // submit_sm with no body at all.
    esme.send_raw(&raw_pdu(cmd::SUBMIT_SM, 904, &[])).await;
    assert_eq!(esme.read().await.expect("nack").command_id, cmd::GENERIC_NACK);

    // A deliver_sm_resp nobody asked for is ignored; the session still submits fine.
    esme.send_raw(&raw_pdu(cmd::DELIVER_SM_RESP, 77, &[0])).await;
    assert_eq!(esme.submit(text_sm("still here", 0)).await.0, 0);

    // Before bind: ESME_RINVBNDSTS; a command_length below 16 ends the connection after a nack.
    let mut unbound = Esme::connect(smsc.local_addr()).await;
    assert_eq!(unbound.submit(text_sm("early", 0)).await.0, 0x04);
    let mut short = raw_pdu(cmd::ENQUIRE_LINK, 5, &[]);
    short[3] = 8;
    unbound.send_raw(&short).await;
    let nack = unbound.read().await.expect("nack");
    assert_eq!((nack.command_id, nack.command_status), (cmd::GENERIC_NACK, 0x02));
    assert!(unbound.closed_within(Duration::from_secs(2)).await);
    smsc.shutdown().await;
}

#[tokio::test]
async fn inject_inbound_single_and_concatenated() {
    let smsc = start(SmscConfig::default()).await;
    assert!(matches!(smsc.inject_inbound("447700900123", "SMSGW", "hi").await, Err(SmscError::NoReceiver)));
    let mut esme = Esme::bound(smsc.local_addr(), "smsgw", "x").await;

    smsc.inject_inbound("447700900123", "12345", "Hello {world} €5").await.expect("inject");
    let (seq, d) = esme.wait_deliver().await;
    assert_eq!((u8::from(d.esm_class), u8::from(d.data_coding)), (0x00, 0x00));
    assert_eq!(d.source_addr.to_string(), "447700900123");
    assert_eq!(d.destination_addr.to_string(), "12345");
    assert_eq!(gsm_decode(d.short_message()), "Hello {world} €5");
    esme.ack(seq).await;

    // 3 parts of GSM text: 153 + 153 + rest septets, 8-bit reference UDH.
    let long: String = (0..400).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
    smsc.inject_inbound("447700900123", "12345", &long).await.expect("inject long");
    let mut text = String::new();
    let mut reference = None;
    for part in 1..=3u8 {
        let (seq, d) = esme.wait_deliver().await;
        let sm = d.short_message().to_vec();
        assert_eq!(u8::from(d.esm_class), 0x40);
        assert_eq!(u8::from(d.data_coding), 0x00);
        assert_eq!(&sm[..5], &[0x05, 0x00, 0x03, sm[3], 3]);
        assert_eq!(sm[5], part);
        assert_eq!(*reference.get_or_insert(sm[3]), sm[3], "one reference for all parts");
        assert!(sm.len() - 6 <= 153);
        text.push_str(&gsm_decode(&sm[6..]));
        esme.ack(seq).await;
    }
    assert_eq!(text, long);

    // Non-GSM text: UCS-2, 67 units per part.
    let cyrillic = "привет мир ".repeat(12);
    smsc.inject_inbound("447700900123", "12345", &cyrillic).await.expect("inject ucs2");
    let mut units = Vec::new();
    for part in 1..=2u8 {
        let (seq, d) = esme.wait_deliver().await;
        assert_eq!(u8::from(d.data_coding), 0x08);
        let sm = d.short_message().to_vec();
        assert_eq!((sm[4], sm[5]), (2, part));
        units.extend_from_slice(&sm[6..]);
        esme.ack(seq).await;
    }
    assert_eq!(decode_text(8, &units), cyrillic);
    assert!(eventually(|| smsc.events().iter().filter(|e| e.starts_with("inbound 2/2 acked")).count() == 1).await);
    assert!(eventually(|| smsc.unacknowledged() == 0).await);
    assert!(matches!(smsc.inject_inbound("a-much-too-long-sender-id", "1", "x").await, Err(SmscError::BadAddress(_))));
    smsc.shutdown().await;
}

#[tokio::test]
async fn unacknowledged_receipt_is_redelivered_on_the_next_bind() {
    let smsc = start(SmscConfig { receipt_delay_ms: 0, ..SmscConfig::default() }).await;
    let addr = smsc.local_addr();
    let mut tx = Esme::connect(addr).await;
    assert_eq!(tx.bind(cmd::BIND_TRANSMITTER, "smsgw", "x", 0x34).await.0, 0);
    let mut rx = Esme::connect(addr).await;
    assert_eq!(rx.bind(cmd::BIND_RECEIVER, "smsgw", "x", 0x34).await.0, 0);
    // A receiver cannot submit.
    assert_eq!(rx.submit(text_sm("no", 0)).await.0, 0x04);

    let (_, id) = tx.submit(text_sm("keep me", 1)).await;
    let id = id.expect("id");
    let (_, first) = rx.wait_deliver().await;
    assert_eq!(field(&receipt_text(&first), "id"), Some(id.as_str()));
    drop(rx); // never acknowledged
    assert!(eventually(|| smsc.events().iter().any(|e| e == "closed session 2 (peer closed)")).await);
    assert_eq!(smsc.unacknowledged(), 1);

    // A transmitter bind does not take receipts; the next receiver bind of smsgw does.
    let mut rx2 = Esme::connect(addr).await;
    assert_eq!(rx2.bind(cmd::BIND_TRANSCEIVER, "smsgw", "x", 0x34).await.0, 0);
    let (seq, again) = rx2.wait_deliver().await;
    assert_eq!(field(&receipt_text(&again), "id"), Some(id.as_str()));
    rx2.ack(seq).await;
    assert!(eventually(|| smsc.unacknowledged() == 0).await);
    smsc.shutdown().await;
}

#[tokio::test]
async fn enquire_link_unbind_and_timed_drop() {
    let smsc = start(SmscConfig::default()).await;
    let addr = smsc.local_addr();
    let mut esme = Esme::bound(addr, "smsgw", "x").await;
    assert_eq!(esme.enquire_link().await.command_id, cmd::ENQUIRE_LINK_RESP);

    smsc.set_config(SmscConfig { ignore_enquire_link: true, ..SmscConfig::default() });
    esme.send(Pdu::EnquireLink).await;
    assert!(esme.read_within(Duration::from_millis(300)).await.is_err(), "enquire_link must go unanswered");
    smsc.set_config(SmscConfig::default());

    let resp = esme.unbind().await;
    assert_eq!((resp.command_id, resp.command_status), (cmd::UNBIND_RESP, 0));
    assert!(esme.closed_within(Duration::from_secs(2)).await);
    assert!(smsc.events().iter().any(|e| e == "unbind from smsgw"));
    assert!(smsc.events().iter().any(|e| e == "enquire_link from smsgw ignored"));

    smsc.set_config(SmscConfig { drop_every_secs: Some(1), ..SmscConfig::default() });
    let mut timed = Esme::bound(addr, "smsgw", "x").await;
    let t0 = Instant::now();
    assert!(timed.closed_within(Duration::from_secs(3)).await);
    assert!(t0.elapsed() >= Duration::from_millis(900), "{:?}", t0.elapsed());
    assert!(smsc.events().iter().any(|e| e.starts_with("drop session") && e.ends_with("after 1 s")));
    smsc.shutdown().await;
}

#[tokio::test]
async fn multipart_submits_are_recorded_in_every_form() {
    let smsc = start(SmscConfig::default()).await;
    let mut esme = Esme::bound(smsc.local_addr(), "smsgw", "x").await;

    // UDH concatenation, 8-bit reference.
    let mut udh_part = vec![0x05, 0x00, 0x03, 0x7A, 0x02, 0x01];
    udh_part.extend_from_slice(b"first half ");
    assert_eq!(esme.submit(submit_sm("SENDER", "4477", &udh_part, 0, 0x40, 1)).await.0, 0);
    // SAR TLVs.
    let sar = with_tlvs(
        text_sm("second half", 0),
        vec![
            MessageSubmissionRequestTlvValue::SarMsgRefNum(0x0102),
            MessageSubmissionRequestTlvValue::SarTotalSegments(2),
            MessageSubmissionRequestTlvValue::SarSegmentSeqnum(2),
        ],
    );
    assert_eq!(esme.submit(sar).await.0, 0);
    // message_payload (UCS-2), empty short_message.
    let payload: Vec<u8> = "длинный текст".encode_utf16().flat_map(u16::to_be_bytes).collect();
    let mp = with_tlvs(
        submit_sm("SENDER", "4477", &[], 8, 0, 0),
        vec![MessageSubmissionRequestTlvValue::MessagePayload(MessagePayload::new(AnyOctetString::from_slice(
            &payload,
        )))],
    );
    assert_eq!(esme.submit(mp).await.0, 0);
    // data_sm gets data_sm_resp with an id.
    let data_sm = DataSm::builder()
        .source_addr(cstr("SENDER"))
        .destination_addr(cstr("4477"))
        .data_coding(DataCoding::Ia5)
        .push_tlv(MessageSubmissionRequestTlvValue::MessagePayload(MessagePayload::new(AnyOctetString::from_slice(
            b"via data_sm",
        ))))
        .build();
    let seq = esme.send(data_sm).await;
    let resp = esme.wait_resp(seq).await;
    assert_eq!((resp.command_id, resp.command_status), (0x8000_0103, 0));
    let Some(Pdu::DataSmResp(r)) = resp.decode().expect("data_sm_resp").pdu().cloned() else { panic!() };
    assert!(!r.message_id().to_string().is_empty());

    let s = smsc.submitted();
    assert_eq!(s.len(), 4);
    assert_eq!(s[0].concat, Some(ConcatInfo { via: ConcatVia::Udh8, reference: 0x7A, total: 2, part: 1 }));
    assert_eq!(s[0].udh.as_deref(), Some(&[0x05, 0x00, 0x03, 0x7A, 0x02, 0x01][..]));
    assert_eq!(s[0].text(), "first half ");
    assert_eq!(s[0].registered_delivery, 1);
    assert_eq!(s[1].concat, Some(ConcatInfo { via: ConcatVia::Sar, reference: 0x0102, total: 2, part: 2 }));
    assert_eq!(s[2].message_payload.as_deref(), Some(&payload[..]));
    assert_eq!(s[2].text(), "длинный текст");
    assert_eq!(s[3].kind, SubmitKind::DataSm);
    assert_eq!(s[3].text(), "via data_sm", "IA5 (data_coding 1) reads as ASCII; GSM would turn '_' into '§'");
    assert_eq!(s[3].message_id.as_deref(), Some(r.message_id().to_string().as_str()));
    smsc.shutdown().await;
}

#[tokio::test]
async fn window_limits_concurrent_submits() {
    let cfg = SmscConfig { window: 1, submit_latency_ms: 100, ..SmscConfig::default() };
    let smsc = start(cfg.clone()).await;
    let mut esme = Esme::bound(smsc.local_addr(), "smsgw", "x").await;
    let t0 = Instant::now();
    let seqs = [esme.send(text_sm("a", 0)).await, esme.send(text_sm("b", 0)).await, esme.send(text_sm("c", 0)).await];
    for seq in seqs {
        assert_eq!(esme.wait_resp(seq).await.command_status, 0);
    }
    assert!(t0.elapsed() >= Duration::from_millis(290), "window 1 serialises: {:?}", t0.elapsed());
    drop(esme);

    smsc.set_config(SmscConfig { window: 3, ..cfg });
    let mut wide = Esme::bound(smsc.local_addr(), "smsgw", "x").await;
    let t0 = Instant::now();
    let seqs = [wide.send(text_sm("a", 0)).await, wide.send(text_sm("b", 0)).await, wide.send(text_sm("c", 0)).await];
    for seq in seqs {
        assert_eq!(wide.wait_resp(seq).await.command_status, 0);
    }
    assert!(t0.elapsed() < Duration::from_millis(280), "window 3 overlaps: {:?}", t0.elapsed());
    smsc.shutdown().await;
}

#[tokio::test]
async fn shutdown_closes_connections() {
    let smsc = start(SmscConfig::default()).await;
    let addr = smsc.local_addr();
    let mut esme = Esme::bound(addr, "smsgw", "x").await;
    tokio::time::timeout(Duration::from_secs(5), smsc.shutdown()).await.expect("shutdown in time");
    assert!(esme.closed_within(Duration::from_secs(2)).await);
    assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "listener closed");
}
