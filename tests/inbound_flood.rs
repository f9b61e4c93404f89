//! A carrier that floods deliver_sm without waiting for answers: the real
//! daemon against a raw SMPP peer over TCP. The bind keeps at most a window
//! of them waiting for the store (beyond that it stops reading, and TCP
//! holds the carrier back), its memory stays near where it started, and
//! every message ends in `/v1/inbound`.

mod common;
use common::*;
use futures::{SinkExt, StreamExt};
use rusmpp::pdus::{BindTransceiverResp, DeliverSm};
use rusmpp::types::{COctetString, OctetString};
use rusmpp::values::{DataCoding, EsmClass, Npi, Ton};
use rusmpp::{Command, CommandStatus, Pdu};
use smsgw::smpp::{SmppFrame, SmppFramer};
use std::collections::HashSet;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio_util::codec::Framed;

const FLOOD: usize = 20_000;
const WINDOW: usize = 16;

fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn deliver(i: usize) -> Command {
    let pdu = DeliverSm::builder()
        .source_addr_ton(Ton::International)
        .source_addr_npi(Npi::Isdn)
        .source_addr(COctetString::from_str(&format!("7916{i:07}")).unwrap())
        .dest_addr_ton(Ton::International)
        .dest_addr_npi(Npi::Isdn)
        .destination_addr(COctetString::from_str("79990000000").unwrap())
        .esm_class(EsmClass::from(0))
        .data_coding(DataCoding::from(0))
        .short_message(OctetString::from_slice(format!("flood {i}").as_bytes()).unwrap())
        .build();
    Command::new(CommandStatus::EsmeRok, i as u32 + 1, Pdu::DeliverSm(pdu))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deliver_sm_flood_is_held_back_by_tcp_and_every_message_is_stored() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let route = format!(
        "[[routes]]\nname = \"carrier\"\nkind = \"smpp\"\n[routes.smpp]\nhost = \"127.0.0.1\"\nport = {}\n\
         system_id = \"smsgw\"\npassword = \"secret\"\nbinds = 1\nwindow = {WINDOW}\nenquire_link_secs = 600\n\
         response_timeout_secs = 30\n",
        listener.local_addr().unwrap().port()
    );
    write_config(dir.path(), "", &route);
    let d = Daemon::start(dir.path());
    let pid = d.child.id();

    // The carrier: answer the bind, then write every deliver_sm as fast as
    // the socket takes them, counting the answers as they come.
    let (sock, _) = listener.accept().await.unwrap();
    let mut conn = Framed::new(sock, SmppFramer::default());
    let seq = loop {
        match conn.next().await.expect("bind").expect("frame") {
            SmppFrame::Pdu(p) if rusmpp::CommandId::from(p.command_id) == rusmpp::CommandId::BindTransceiver => {
                break p.sequence_number;
            }
            _ => {}
        }
    };
    let resp = BindTransceiverResp::builder().system_id(COctetString::from_str("sim").unwrap()).build();
    conn.send(Command::new(CommandStatus::EsmeRok, seq, Pdu::BindTransceiverResp(resp))).await.unwrap();
    let (mut sink, mut stream) = conn.split();
    let written = Arc::new(AtomicUsize::new(0));
    let w = written.clone();
    let writer = tokio::spawn(async move {
        for i in 0..FLOOD {
            sink.feed(deliver(i)).await.unwrap();
            w.store(i + 1, Ordering::Relaxed);
            if i % 64 == 63 {
                sink.flush().await.unwrap();
            }
        }
        sink.flush().await.unwrap();
        sink
    });
    let answered = Arc::new(AtomicUsize::new(0));
    let a = answered.clone();
    let reader = tokio::spawn(async move {
        let mut ok = 0;
        while ok < FLOOD {
            match stream.next().await {
                Some(Ok(SmppFrame::Pdu(p)))
                    if rusmpp::CommandId::from(p.command_id) == rusmpp::CommandId::DeliverSmResp =>
                {
                    assert_eq!(CommandStatus::from(p.command_status), CommandStatus::EsmeRok, "a deliver_sm refused");
                    ok += 1;
                    a.store(ok, Ordering::Relaxed);
                }
                Some(Ok(_)) => {}
                other => panic!("the bind ended after {ok} answers: {other:?}"),
            }
        }
        stream
    });

    // While the flood lasts: the daemon's memory, what it says it holds
    // unanswered, and what the carrier has written and not had answered
    // (that one includes what waits in the kernel's socket buffers, which
    // on loopback hold most of the flood: printed, not bounded).
    let baseline = rss_kb(pid);
    let (mut max_rss, mut max_waiting, mut max_outstanding) = (baseline, 0u64, 0usize);
    let deadline = Instant::now() + Duration::from_secs(120);
    while answered.load(Ordering::Relaxed) < FLOOD {
        assert!(Instant::now() < deadline, "only {} of {FLOOD} answered", answered.load(Ordering::Relaxed));
        max_rss = max_rss.max(rss_kb(pid));
        let (_, r) = d.get("/v1/routes").await;
        let waiting = r["routes"][0]["members"][0]["inbound_waiting"].as_u64().unwrap_or(0);
        max_waiting = max_waiting.max(waiting);
        let out = written.load(Ordering::Relaxed).saturating_sub(answered.load(Ordering::Relaxed));
        max_outstanding = max_outstanding.max(out);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _sink = writer.await.unwrap();
    let _stream = reader.await.unwrap();
    println!(
        "flood of {FLOOD}: RSS {baseline} kB before, at most {max_rss} kB during; at most {max_waiting} waiting \
         for the store in the daemon (window {WINDOW}); at most {max_outstanding} written and unanswered at the carrier"
    );
    assert!(max_waiting <= WINDOW as u64, "{max_waiting} deliver_sm waited for the store at once");
    assert!(max_rss < baseline + 16 * 1024, "RSS grew from {baseline} kB to {max_rss} kB");

    // Every one of them is on disk, once.
    let mut texts = HashSet::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/inbound?limit=1000&cursor={c}"),
            None => "/v1/inbound?limit=1000".to_string(),
        };
        let (s, v) = d.get(&path).await;
        assert_eq!(s, 200, "{v}");
        for m in v["messages"].as_array().unwrap() {
            assert!(texts.insert(m["text"].as_str().unwrap().to_string()), "stored twice: {m}");
        }
        match v["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(texts.len(), FLOOD);
    assert!((0..FLOOD).all(|i| texts.contains(&format!("flood {i}"))));
}
