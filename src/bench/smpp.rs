//! The SMPP scenarios of `smsgw bench`, so a regression on either side of
//! the gateway's SMPP shows up without Kannel or a carrier.
//!
//! `smpp-server`: a private daemon with `[smpp_server]` and one account; a
//! load client in this process (an ESME on the shared framer) opens four
//! transceiver binds and keeps a window of `submit_sm` outstanding on each,
//! every one asking for a receipt; the route is simulated and delivers at once, so
//! every accepted message comes back to the binds as a receipt
//! (`deliver_sm`, answered). It counts submits accepted (the server answers
//! after the commit: each OK is durable), receipts back, and receipts lost,
//! repeated or for ids it was never given.
//!
//! `smpp-route`: the API in front of an SMPP route to the SMSC simulator in
//! this process over loopback, receipts recorded delivered: single-message
//! requests over keep-alive connections, then batches of 100, then both
//! again with no receipts asked (done when submitted), each round on a
//! fresh daemon and simulator, counting what the SMSC took twice and
//! what never came back delivered (or submitted).
//!
//! Both report the daemon's own CPU per message (utime + stime from
//! `/proc/<pid>/stat`) and its peak resident memory.

use super::{BENCH_KEY, Private, recipient, scratch};
use crate::client::Client;
use crate::simulate::smsc::{IdFormat, Smsc, SmscConfig, SubmitOutcome};
use crate::smpp::{SmppFrame, SmppFramer};
use futures::{SinkExt, StreamExt};
use rusmpp::pdus::{BindTransceiver, DeliverSmResp, SubmitSm};
use rusmpp::tlvs::TlvValue;
use rusmpp::types::{COctetString, OctetString};
use rusmpp::values::{DataCoding, EsmClass, InterfaceVersion, Npi, RegisteredDelivery, Ton};
use rusmpp::{Command, CommandId, CommandStatus, Pdu};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio_util::codec::{FramedRead, FramedWrite};

/// Binds the load client opens to the SMPP server.
const BINDS: usize = 4;
/// How long without a new receipt before the rest are counted lost.
const STALL: Duration = Duration::from_secs(30);
const SYSTEM_ID: &str = "bench";
const PASSWORD: &str = "bench";

fn us_per(cpu: Duration, n: u64) -> f64 {
    cpu.as_secs_f64() * 1e6 / n.max(1) as f64
}

fn free_port() -> Result<u16, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| format!("no free port: {e}"))?;
    l.local_addr().map(|a| a.port()).map_err(|e| e.to_string())
}

/// What the load client's binds saw, together.
#[derive(Default)]
struct Tally {
    /// Ids of accepted submits.
    accepted: Mutex<HashSet<String>>,
    /// Submits answered, and of those with an error (or a generic_nack).
    answered: AtomicU64,
    /// Refused submits by their command status.
    refused: Mutex<HashMap<u32, u64>>,
    /// Receipts by the id they report, and how often each came.
    receipts: Mutex<HashMap<String, u32>>,
    first_receipt: Mutex<Option<Instant>>,
    last_receipt: Mutex<Option<Instant>>,
    /// Set when the scenario is over: the binds unbind.
    stop: AtomicBool,
}

impl Tally {
    fn receipt(&self, id: String) {
        let now = Instant::now();
        *self.receipts.lock().unwrap_or_else(|p| p.into_inner()).entry(id).or_default() += 1;
        self.first_receipt.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert(now);
        *self.last_receipt.lock().unwrap_or_else(|p| p.into_inner()) = Some(now);
    }

    /// The refused submits: "none", or how many with each status.
    fn refused(&self) -> String {
        let refused = self.refused.lock().unwrap_or_else(|p| p.into_inner());
        if refused.is_empty() {
            return "none".into();
        }
        let mut by: Vec<_> = refused.iter().collect();
        by.sort();
        by.iter().map(|(status, n)| format!("{n} with status 0x{status:08x}")).collect::<Vec<_>>().join(", ")
    }

    fn distinct_receipts(&self) -> usize {
        self.receipts.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

fn c_str<const N: usize>(s: &str) -> COctetString<1, N> {
    COctetString::from_str(s).unwrap_or_default()
}

/// One submit of the load: GSM text to a number of its own, a receipt asked for.
fn submit(seq: u32, i: u64) -> Command {
    let to = recipient(i);
    let pdu = SubmitSm::builder()
        .source_addr_ton(Ton::Alphanumeric)
        .source_addr_npi(Npi::Unknown)
        .source_addr(c_str("BENCH"))
        .dest_addr_ton(Ton::International)
        .dest_addr_npi(Npi::Isdn)
        .destination_addr(c_str(to.trim_start_matches('+')))
        .esm_class(EsmClass::from(0))
        .registered_delivery(RegisteredDelivery::from(1))
        .data_coding(DataCoding::from(0))
        .short_message(OctetString::from_slice(b"Your code is 123456").unwrap_or_default())
        .build();
    Command::new(CommandStatus::EsmeRok, seq, Pdu::SubmitSm(pdu))
}

/// The id a receipt reports: its `receipted_message_id`, else the text's `id:`.
fn receipted_id(pdu: &Pdu) -> Option<String> {
    let Pdu::DeliverSm(d) = pdu else { return None };
    for tlv in d.tlvs() {
        if let Some(TlvValue::ReceiptedMessageId(id)) = tlv.value() {
            return Some(id.as_str().to_string());
        }
    }
    let text = String::from_utf8_lossy(d.short_message());
    text.strip_prefix("id:").and_then(|r| r.split_whitespace().next()).map(str::to_string)
}

/// One transceiver bind of the load client: `n` submits (numbered from
/// `first`) with at most `window` awaiting their answer, every receipt
/// answered; returns when its last submit was answered through `done`, and
/// keeps taking receipts until the tally says stop.
async fn esme(
    addr: SocketAddr,
    n: u64,
    first: u64,
    window: usize,
    tally: Arc<Tally>,
    done: tokio::sync::mpsc::UnboundedSender<Instant>,
) -> Result<(), String> {
    let stream = TcpStream::connect(addr).await.map_err(|e| format!("connect {addr}: {e}"))?;
    let _ = stream.set_nodelay(true);
    let (rd, wr) = stream.into_split();
    let mut rd = FramedRead::new(rd, SmppFramer::default());
    let mut wr = FramedWrite::new(wr, SmppFramer::default());
    let bind = Pdu::BindTransceiver(BindTransceiver {
        system_id: c_str(SYSTEM_ID),
        password: c_str(PASSWORD),
        system_type: c_str(""),
        interface_version: InterfaceVersion::Smpp3_4,
        addr_ton: Ton::Unknown,
        addr_npi: Npi::Unknown,
        address_range: c_str(""),
    });
    let io = |e: std::io::Error| format!("bind to {addr}: {e}");
    wr.send(Command::new(CommandStatus::EsmeRok, 1, bind)).await.map_err(io)?;
    match rd.next().await {
        Some(Ok(SmppFrame::Pdu(p))) if p.command_id == 0x8000_0009 && p.command_status == 0 => {}
        Some(Ok(SmppFrame::Pdu(p))) => return Err(format!("bind refused: status 0x{:08x}", p.command_status)),
        other => return Err(format!("no bind_transceiver_resp: {other:?}")),
    }
    let (mut seq, mut sent, mut outstanding, mut answered) = (2u32, 0u64, 0usize, 0u64);
    let mut submits_done = false;
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    loop {
        while outstanding < window && sent < n {
            wr.feed(submit(seq, first + sent)).await.map_err(io)?;
            seq = seq.wrapping_add(1).max(2);
            sent += 1;
            outstanding += 1;
        }
        wr.flush().await.map_err(io)?;
        if !submits_done && answered == n {
            submits_done = true;
            let _ = done.send(Instant::now());
        }
        if tally.stop.load(Ordering::Relaxed) {
            break;
        }
        let frame = tokio::select! {
            f = rd.next() => f,
            _ = tick.tick() => continue,
        };
        let p = match frame {
            Some(Ok(SmppFrame::Pdu(p))) => p,
            Some(Ok(SmppFrame::Oversized { command_id, .. })) => {
                return Err(format!("an oversized PDU 0x{command_id:08x} from the server"));
            }
            Some(Err(e)) => return Err(format!("reading the bind: {e}")),
            None => return Err("the server closed the bind".into()),
        };
        let (status, pseq) = (p.command_status, p.sequence_number);
        match CommandId::from(p.command_id) {
            CommandId::SubmitSmResp | CommandId::GenericNack => {
                outstanding = outstanding.saturating_sub(1);
                answered += 1;
                tally.answered.fetch_add(1, Ordering::Relaxed);
                let id = p.into_command().ok().and_then(|c| match c.pdu() {
                    Some(Pdu::SubmitSmResp(r)) if status == 0 => Some(r.message_id().as_str().to_string()),
                    _ => None,
                });
                match id {
                    Some(id) => {
                        tally.accepted.lock().unwrap_or_else(|p| p.into_inner()).insert(id);
                    }
                    None => {
                        *tally.refused.lock().unwrap_or_else(|p| p.into_inner()).entry(status).or_default() += 1;
                    }
                }
            }
            CommandId::DeliverSm => {
                if let Some(id) = p.into_command().ok().and_then(|c| c.pdu().and_then(receipted_id)) {
                    tally.receipt(id);
                }
                let resp = Pdu::DeliverSmResp(DeliverSmResp::builder().build());
                wr.feed(Command::new(CommandStatus::EsmeRok, pseq, resp)).await.map_err(io)?;
            }
            CommandId::EnquireLink => {
                wr.feed(Command::new(CommandStatus::EsmeRok, pseq, Pdu::EnquireLinkResp)).await.map_err(io)?;
            }
            _ => {}
        }
    }
    wr.send(Command::new(CommandStatus::EsmeRok, seq, Pdu::Unbind)).await.map_err(io)?;
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while let Some(Ok(SmppFrame::Pdu(p))) = rd.next().await {
            if p.command_id == 0x8000_0006 {
                break;
            }
        }
    })
    .await;
    Ok(())
}

/// The `smpp-server` scenario (see the module documentation).
pub(super) async fn server(messages: usize, window: usize) -> Result<(), String> {
    let dir = scratch("smpp-server")?;
    let port = free_port()?;
    let config = format!(
        "[smpp_server]\nlisten = \"127.0.0.1:{port}\"\n[[smpp_server.accounts]]\nsystem_id = \"{SYSTEM_ID}\"\n\
         password = \"{PASSWORD}\"\nmax_binds = {BINDS}\nwindow = {window}\n\
         [[routes]]\nname = \"sim\"\nkind = \"sim\"\nconcurrency = 512\n[routes.sim]\ndelivery_delay_ms = 0\n"
    );
    let p = Private::start_with(dir.clone(), &config)?;
    let result = server_run(&p, port, messages as u64, window).await;
    p.stop();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn server_run(p: &Private, port: u16, messages: u64, window: usize) -> Result<(), String> {
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(addr).await.is_err() {
        if Instant::now() > deadline {
            return Err(format!("the SMPP server never listened on {addr}"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let pid = p.child.id();
    let tally = Arc::new(Tally::default());
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
    let cpu0 = super::cpu_time(pid).unwrap_or_default();
    let t0 = Instant::now();
    let mut binds = Vec::new();
    for b in 0..BINDS as u64 {
        let n = messages / BINDS as u64 + u64::from(b < messages % BINDS as u64);
        // Numbers of its own for each bind (recipient() wraps at ten million).
        let first = b * 2_500_000;
        binds.push(tokio::spawn(esme(addr, n, first, window, tally.clone(), done_tx.clone())));
    }
    drop(done_tx);
    // The submit phase: until every bind has had its last answer (or a bind
    // failed, or no answer came for a while).
    let mut submitted_at = t0;
    let (mut finished, mut last_count, mut last_change) = (0, 0, Instant::now());
    while finished < BINDS {
        tokio::select! {
            t = done_rx.recv() => match t {
                Some(t) => {
                    submitted_at = submitted_at.max(t);
                    finished += 1;
                }
                None => break,
            },
            _ = tokio::time::sleep(Duration::from_millis(100)) => {
                let answered = tally.answered.load(Ordering::Relaxed);
                if answered != last_count {
                    (last_count, last_change) = (answered, Instant::now());
                }
                if binds.iter().any(|b| b.is_finished()) || last_change.elapsed() > STALL {
                    break;
                }
            }
        }
    }
    let cpu_submit = super::cpu_time(pid).unwrap_or_default().saturating_sub(cpu0);
    // Receipts: until each accepted message has one, or none came for a while.
    let accepted = tally.accepted.lock().unwrap_or_else(|p| p.into_inner()).len();
    let submit_secs = (submitted_at - t0).as_secs_f64().max(1e-3);
    println!(
        "smpp-server {messages} submit_sm over {BINDS} transceiver binds, window {window}: {accepted} accepted in {submit_secs:.1} s \
         = {:.0} submit_sm/s (each answered after its commit), refused {}, {} unanswered",
        accepted as f64 / submit_secs,
        tally.refused(),
        messages.saturating_sub(tally.answered.load(Ordering::Relaxed))
    );
    let (mut last_count, mut last_change) = (0, Instant::now());
    loop {
        let got = tally.distinct_receipts();
        if got >= accepted || binds.iter().all(|b| b.is_finished()) {
            break;
        }
        if got != last_count {
            (last_count, last_change) = (got, Instant::now());
        } else if last_change.elapsed() > STALL {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let cpu_all = super::cpu_time(pid).unwrap_or_default().saturating_sub(cpu0);
    let rss = super::status_mb(pid, "VmHWM").unwrap_or(-1.0);
    tally.stop.store(true, Ordering::Relaxed);
    for b in binds {
        match b.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(format!("smpp-server: a bind failed: {e}")),
            Err(e) => return Err(format!("smpp-server: a bind panicked: {e}")),
        }
    }
    let accepted_ids = tally.accepted.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let receipts = tally.receipts.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let lost = accepted_ids.iter().filter(|id| !receipts.contains_key(*id)).count();
    let duplicated: u32 = receipts.values().map(|n| n - 1).sum();
    let unknown = receipts.keys().filter(|id| !accepted_ids.contains(*id)).count();
    let first = tally.first_receipt.lock().unwrap_or_else(|p| p.into_inner()).unwrap_or(t0);
    let last = tally.last_receipt.lock().unwrap_or_else(|p| p.into_inner()).unwrap_or(t0);
    let receipt_secs = (last - first).as_secs_f64().max(1e-3);
    println!(
        "smpp-server receipts: {} back at {:.0}/s (first to last), all in {:.1} s from the first submit; \
         lost {lost}, duplicated {duplicated}, unknown ids {unknown}",
        receipts.len(),
        receipts.len() as f64 / receipt_secs,
        (last - t0).as_secs_f64()
    );
    println!(
        "smpp-server daemon CPU {:.0} µs/msg submit to receipt ({:.0} µs/msg in the submit phase), peak RSS {rss:.1} MB",
        us_per(cpu_all, accepted as u64),
        us_per(cpu_submit, accepted as u64)
    );
    Ok(())
}

/// Post `total` messages (`text`, of class `priority` or the default)
/// through `connections` keep-alive workers, `batch` to a request, each to
/// a number of its own; accepted messages and failed requests.
pub(super) async fn post_count(
    client: &Client,
    connections: usize,
    total: u64,
    batch: u64,
    text: &'static str,
    priority: Option<&'static str>,
) -> (u64, u64) {
    let next = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for _ in 0..connections {
        let (client, next) = (client.clone(), next.clone());
        workers.push(tokio::spawn(async move {
            let (mut ok, mut failed) = (0u64, 0u64);
            loop {
                let from = next.fetch_add(batch, Ordering::Relaxed);
                if from >= total {
                    return (ok, failed);
                }
                let to = (from + batch).min(total);
                let one = |i: u64| match priority {
                    None => json!({"to": recipient(i), "text": text}),
                    Some(p) => json!({"to": recipient(i), "text": text, "priority": p}),
                };
                let body: Value =
                    if batch == 1 { one(from) } else { json!({ "messages": (from..to).map(one).collect::<Vec<_>>() }) };
                match client.post("/v1/messages", &body).await {
                    Ok(_) => ok += to - from,
                    Err(_) => failed += 1,
                }
            }
        }));
    }
    let (mut ok, mut failed) = (0, 0);
    for w in workers {
        if let Ok((o, f)) = w.await {
            ok += o;
            failed += f;
        }
    }
    (ok, failed)
}

/// The `smpp-route` scenario (see the module documentation).
pub(super) async fn route(messages: usize, connections: usize) -> Result<(), String> {
    for (label, batch, conns, receipts) in [
        ("single", 1, connections, true),
        ("batch100", 100, connections.min(16), true),
        ("no-dlr", 1, connections, false),
        ("batch-no-dlr", 100, connections.min(16), false),
    ] {
        route_round(label, messages as u64, batch, conns, receipts).await?;
    }
    Ok(())
}

async fn route_round(label: &str, messages: u64, batch: u64, connections: usize, receipts: bool) -> Result<(), String> {
    let route = |port: u16| {
        format!(
            "[[routes]]\nname = \"carrier\"\nkind = \"smpp\"\nconcurrency = 512\n[routes.smpp]\nhost = \"127.0.0.1\"\n\
             port = {port}\nsystem_id = \"smsgw\"\npassword = \"bench\"\nbinds = {BINDS}\nwindow = 64\n\
             registered_delivery = {receipts}\n"
        )
    };
    beside_smsc("smpp-route", route, async |p, sim| {
        route_measure(p, sim, label, messages, batch, connections, receipts).await
    })
    .await
}

/// Start the SMSC simulator in this process (every submit answered, and
/// its receipt sent, at once) and a private daemon with the config `config`
/// makes from the simulator's port; run `measure` on both; then stop both
/// and remove the daemon's scratch directory `name`.
pub(super) async fn beside_smsc(
    name: &str,
    config: impl FnOnce(u16) -> String,
    measure: impl AsyncFnOnce(&Private, &Smsc) -> Result<(), String>,
) -> Result<(), String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(|e| format!("SMSC listener: {e}"))?;
    let cfg = SmscConfig { window: 256, receipt_delay_ms: 0, id_format: IdFormat::Decimal, ..SmscConfig::default() };
    let sim = Smsc::start(cfg, listener).await;
    let result = async {
        let dir = scratch(name)?;
        let run = match Private::start_with(dir.clone(), &config(sim.local_addr().port())) {
            Ok(p) => {
                let run = measure(&p, &sim).await;
                p.stop();
                run
            }
            Err(e) => Err(e),
        };
        let _ = std::fs::remove_dir_all(&dir);
        run
    }
    .await;
    sim.shutdown().await;
    result
}

/// Wait for the daemon's (one) route to be up, so a run measures sending,
/// not binding.
pub(super) async fn route_up(client: &Client) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let r = client.get("/v1/routes").await.map_err(|e| e.to_string())?;
        if r["routes"][0]["state"] == "up" {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("the SMPP route never came up: {}", r["routes"][0]));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn route_measure(
    p: &Private,
    sim: &Smsc,
    label: &str,
    messages: u64,
    batch: u64,
    connections: usize,
    receipts: bool,
) -> Result<(), String> {
    let client = Client::new(&p.url, BENCH_KEY);
    // With receipts a message is done when recorded delivered; without,
    // when the SMSC took it (submitted).
    let done = if receipts { "delivered" } else { "submitted" };
    let pid = p.child.id();
    route_up(&client).await?;
    // Delivered counts over time, from the first request on.
    let seen: Arc<Mutex<Vec<(Instant, u64)>>> = Arc::default();
    let watching = Arc::new(AtomicBool::new(true));
    let watcher = {
        let (client, seen, watching) = (client.clone(), seen.clone(), watching.clone());
        tokio::spawn(async move {
            while watching.load(Ordering::Relaxed) {
                if let Ok(q) = client.get("/v1/queue").await {
                    let delivered = q["by_status"][done].as_u64().unwrap_or(0);
                    seen.lock().unwrap_or_else(|p| p.into_inner()).push((Instant::now(), delivered));
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let cpu0 = super::cpu_time(pid).unwrap_or_default();
    let t0 = Instant::now();
    let (accepted, failed) = post_count(&client, connections, messages, batch, "Your code is 123456", None).await;
    let posted = t0.elapsed();
    let cpu_post = super::cpu_time(pid).unwrap_or_default().saturating_sub(cpu0);
    let latest = || seen.lock().unwrap_or_else(|p| p.into_inner()).last().map_or(0, |s| s.1);
    let (mut last_count, mut last_change) = (0u64, Instant::now());
    while latest() < accepted {
        let now = latest();
        if now != last_count {
            (last_count, last_change) = (now, Instant::now());
        } else if last_change.elapsed() > STALL {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    watching.store(false, Ordering::Relaxed);
    let _ = watcher.await;
    let seen = seen.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let delivered = seen.last().map_or(0, |s| s.1);
    let first = seen.iter().find(|s| s.1 > 0).map_or(t0, |s| s.0);
    let all = seen.iter().find(|s| s.1 == delivered).map_or(t0, |s| s.0);
    let cpu_all = super::cpu_time(pid).unwrap_or_default().saturating_sub(cpu0);
    let rss = super::status_mb(pid, "VmHWM").unwrap_or(-1.0);
    let submits: Vec<_> = sim.submitted().into_iter().filter(|s| s.outcome == SubmitOutcome::Accepted).collect();
    let distinct: HashSet<&str> = submits.iter().map(|s| s.dest.as_str()).collect();
    let duplicated = submits.len() - distinct.len();
    let receipt_secs = (all - first).as_secs_f64().max(1e-3);
    let what = if batch == 1 { format!("{connections} connections") } else { format!("batches of {batch}") };
    let (ended, end) = if receipts {
        ("delivered (receipts recorded)", "receipt")
    } else {
        ("submitted (no receipts asked)", "submit")
    };
    println!(
        "smpp-route {label:<12} {accepted} messages ({what}): {:.0} msg/s accepted, {failed} requests failed; \
         {delivered} {ended} at {:.0}/s, all in {:.1} s; lost {}, duplicated {duplicated}",
        accepted as f64 / posted.as_secs_f64().max(1e-3),
        delivered as f64 / receipt_secs,
        (all - t0).as_secs_f64(),
        accepted.saturating_sub(delivered),
    );
    println!(
        "smpp-route {label:<12} daemon CPU {:.0} µs/msg API to {end} ({:.0} µs/msg while accepting), peak RSS {rss:.1} MB",
        us_per(cpu_all, accepted),
        us_per(cpu_post, accepted)
    );
    Ok(())
}
