//! The real daemon against the SMSC simulator over TCP: a thousand
//! messages of every shape delivered with every receipt matched, throttling
//! obeyed, connections dropped every 200 submits without loss, receipts
//! before responses, inbound single and concatenated, a long message
//! resumed from the part that went unanswered.

mod common;
use common::*;
use serde_json::json;
use smsgw::simulate::smsc::{IdFormat, Smsc, SmscConfig, SubmitOutcome};
use std::collections::HashMap;
use std::time::Duration;

async fn smsc(cfg: SmscConfig) -> Smsc {
    let cfg = SmscConfig { credentials: vec![("smsgw".into(), "secret".into())], ..cfg };
    Smsc::start(cfg, tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap()).await
}

fn route(port: u16, extra: &str) -> String {
    format!(
        "[[routes]]\nname = \"carrier\"\nkind = \"smpp\"\nconcurrency = 128\n[routes.smpp]\nhost = \"127.0.0.1\"\nport = {port}\n\
         system_id = \"smsgw\"\npassword = \"secret\"\nbinds = 2\nwindow = 20\nenquire_link_secs = 5\nresponse_timeout_secs = 5\n\
         reconnect_min_ms = 50\nreconnect_max_ms = 500\n{extra}\n"
    )
}

/// A thousand messages: GSM, Cyrillic and three-part texts.
fn thousand() -> (Vec<serde_json::Value>, usize) {
    let long = "This reminder is long enough to need three parts. ".repeat(7);
    let mut parts = 0;
    let msgs = (0..1000)
        .map(|i| {
            let text = match i % 3 {
                0 => format!("Your code is {i:06}"),
                1 => format!("Заказ {i} отправлен"),
                _ => long.clone(),
            };
            parts += if i % 3 == 2 { 3 } else { 1 };
            json!({"to": format!("+7916{i:07}"), "text": text})
        })
        .collect();
    (msgs, parts)
}

async fn post_all(d: &Daemon, msgs: &[serde_json::Value]) -> Vec<i64> {
    let mut ids = Vec::new();
    for chunk in msgs.chunks(500) {
        let (s, v) = d.post("/v1/messages", &json!({ "messages": chunk })).await;
        assert_eq!(s, 202, "{v}");
        ids.extend(v["messages"].as_array().unwrap().iter().map(|m| m["id"].as_i64().unwrap()));
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_messages_delivered_with_every_receipt_matched() {
    let sim = smsc(SmscConfig { id_format: IdFormat::Decimal, receipt_delay_ms: 10, ..Default::default() }).await;
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), "", &route(sim.local_addr().port(), ""));
    let d = Daemon::start(dir.path());
    let (msgs, parts) = thousand();
    let ids = post_all(&d, &msgs).await;
    d.wait_counts(120, "1000 delivered", |b| b["delivered"] == 1000).await;
    let accepted: Vec<_> = sim.submitted().into_iter().filter(|s| s.outcome == SubmitOutcome::Accepted).collect();
    assert_eq!(accepted.len(), parts, "one submit per part, nothing repeated");
    // Every part of every message carries the SMSC's id for it.
    let by_id: HashMap<String, _> = accepted.iter().map(|s| (s.message_id.clone().unwrap(), s)).collect();
    for id in ids.iter().step_by(37) {
        let m = d.message(*id).await;
        for p in m["parts"].as_array().unwrap() {
            let sub = by_id.get(p["remote_id"].as_str().unwrap()).expect("part id known to the SMSC");
            assert_eq!(format!("+{}", sub.dest), m["to"].as_str().unwrap());
            assert_eq!(p["status"], "delivered");
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sim.unacknowledged(), 0, "every receipt acknowledged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_is_obeyed_and_fails_nothing() {
    let sim = smsc(SmscConfig { max_rate: Some(150.0), receipt_delay_ms: 10, ..Default::default() }).await;
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), "", &route(sim.local_addr().port(), ""));
    let d = Daemon::start(dir.path());
    let msgs: Vec<_> = (0..400).map(|i| msg(&format!("+7916{i:07}"), "throttled")).collect();
    post_all(&d, &msgs).await;
    let q = d.wait_counts(120, "400 delivered", |b| b["delivered"] == 400).await;
    assert!(q["by_status"]["failed"].is_null(), "{q}");
    let throttled = sim.submitted().iter().filter(|s| s.outcome == SubmitOutcome::Throttled).count();
    assert!(throttled > 0, "the simulator never throttled: the test did not test");
    // Slowing down means most submits go through: not hammering.
    assert!(throttled < 400, "{throttled} throttled answers for 400 messages");
    let (_, r) = d.get("/v1/routes").await;
    assert_eq!(r["routes"][0]["failed"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_every_200_submits_nothing_lost() {
    let sim = smsc(SmscConfig { drop_every_n: Some(200), receipt_delay_ms: 10, ..Default::default() }).await;
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), "", &route(sim.local_addr().port(), ""));
    let d = Daemon::start(dir.path());
    let msgs: Vec<_> = (0..1000).map(|i| msg(&format!("+7916{i:07}"), "drop test")).collect();
    post_all(&d, &msgs).await;
    // Unacknowledged receipts are redelivered on the next bind, as carriers
    // do, so every message ends delivered.
    d.wait_counts(120, "1000 delivered", |b| b["delivered"] == 1000).await;
    let subs = sim.submitted();
    let drops = subs.iter().filter(|s| s.outcome == SubmitOutcome::Dropped).count();
    assert!(drops >= 4, "{drops} drops");
    let mut per_dest: HashMap<String, usize> = HashMap::new();
    for s in subs.iter().filter(|s| s.outcome == SubmitOutcome::Accepted) {
        *per_dest.entry(s.dest.clone()).or_default() += 1;
    }
    assert_eq!(per_dest.len(), 1000, "every accepted message reached the SMSC");
    // Duplicates only for what was in flight at a drop: two binds of window 20.
    let dups: usize = per_dest.values().map(|n| n - 1).sum();
    assert!(dups <= drops * 40, "{dups} duplicates for {drops} drops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_before_responses_are_matched() {
    let sim = smsc(SmscConfig { receipt_before_resp: true, receipt_delay_ms: 0, ..Default::default() }).await;
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), "", &route(sim.local_addr().port(), ""));
    let d = Daemon::start(dir.path());
    let (msgs, _) = thousand();
    post_all(&d, &msgs[..300]).await;
    d.wait_counts(60, "300 delivered", |b| b["delivered"] == 300).await;
    // A receipt applied with the submit result it overtook is counted as
    // finished like any other (the counters move once the store answers,
    // a moment after the API shows the commit).
    let finished = |text: &str| {
        let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
        let of = |name| sample(&scrape, name, &[("route", "carrier")]);
        (of("smsgw_messages_finished_total"), of("smsgw_delivery_duration_seconds_count"))
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let counted = loop {
        let counted = finished(&d.metrics().await);
        if counted.0 >= Some(300.0) || std::time::Instant::now() > deadline {
            break counted;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(counted, (Some(300.0), Some(300.0)), "finished and timed to delivery");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_single_and_concatenated_from_the_simulator() {
    let sim = smsc(SmscConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), "", &route(sim.local_addr().port(), "binds = 1"));
    let cfg = std::fs::read_to_string(dir.path().join("smsgw.toml")).unwrap().replace("binds = 2\n", "");
    std::fs::write(dir.path().join("smsgw.toml"), cfg).unwrap();
    let d = Daemon::start(dir.path());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !sim.events().iter().any(|e| e.starts_with("bind_transceiver from smsgw: ok")) {
        assert!(std::time::Instant::now() < deadline, "{:?}", sim.events());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sim.inject_inbound("+79161234567", "7726", "YES").await.unwrap();
    let long = "Спасибо, заказ получен! ".repeat(8);
    sim.inject_inbound("+79161234568", "7726", &long).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, list) = d.get("/v1/inbound").await;
        let msgs = list["messages"].as_array().unwrap().clone();
        if msgs.len() == 2 {
            let texts: Vec<&str> = msgs.iter().map(|m| m["text"].as_str().unwrap()).collect();
            assert!(texts.contains(&"YES"));
            assert!(texts.contains(&long.as_str()), "{texts:?}");
            let joined = msgs.iter().find(|m| m["text"] == long.as_str()).unwrap();
            assert_eq!(joined["parts"], 3);
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{list:#}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(sim.unacknowledged(), 0);
}

/// SMPP 3.4 relative time `YYMMDDhhmmss000R` as seconds (a month of 30
/// days, a year of 365).
fn relative_secs(v: &str) -> u64 {
    assert!(v.len() == 16 && v.ends_with("000R"), "not a relative time: {v:?}");
    let f = |i: usize| v[i..i + 2].parse::<u64>().unwrap();
    ((f(0) * 365 + f(2) * 30 + f(4)) * 24 + f(6)) * 3600 + f(8) * 60 + f(10)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_carrier_is_told_how_long_a_message_stays_worth_delivering() {
    let sim = smsc(SmscConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), "", &route(sim.local_addr().port(), ""));
    let d = Daemon::start(dir.path());
    let code =
        d.send(json!({"to": "+79160000001", "text": "Your code is 123456", "valid_until": in_secs(600.0)})).await;
    let long = "A reminder long enough for two parts. ".repeat(5);
    let reminder = d.send(json!({"to": "+79160000002", "text": long, "valid_until": in_secs(2.0 * 86_400.0)})).await;
    d.wait_status(code, "delivered", 20).await;
    d.wait_status(reminder, "delivered", 20).await;
    d.terminate();
    let by_dest = |dest: &str| -> Vec<u64> {
        sim.submitted().iter().filter(|s| s.dest == dest).map(|s| relative_secs(&s.validity_period)).collect()
    };
    let code_left = by_dest("79160000001");
    assert!(code_left.len() == 1 && (580..=600).contains(&code_left[0]), "{code_left:?}");
    let reminder_left = by_dest("79160000002");
    assert_eq!(reminder_left.len(), 2, "both parts");
    assert!(reminder_left.iter().all(|s| (2 * 86_400 - 20..=2 * 86_400).contains(s)), "{reminder_left:?}");

    // A carrier that will not take it: the key turns it off.
    let sim2 = smsc(SmscConfig::default()).await;
    write_config(dir.path(), "", &route(sim2.local_addr().port(), "validity_period = false"));
    let d = Daemon::start(dir.path());
    let id = d.send(json!({"to": "+79160000003", "text": "no validity", "valid_until": in_secs(600.0)})).await;
    d.wait_status(id, "delivered", 20).await;
    d.terminate();
    assert!(sim2.submitted().iter().all(|s| s.validity_period.is_empty()), "{:?}", sim2.submitted());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_message_that_failed_at_part_two_is_resumed_from_part_two() {
    // The third submit is never answered: the second part of the long message.
    let sim = smsc(SmscConfig { drop_every_n: Some(3), ..Default::default() }).await;
    let dir = tempfile::tempdir().unwrap();
    let dispatch = "[dispatch]\nretry_base_ms = 100\nretry_max_ms = 500\n";
    let one_bind = route(sim.local_addr().port(), "").replace("binds = 2", "binds = 1");
    write_config(dir.path(), dispatch, &one_bind.replace("response_timeout_secs = 5", "response_timeout_secs = 1"));
    let d = Daemon::start(dir.path());
    let short = d.send(json!({"to": "+79160000010", "text": "first"})).await;
    d.wait_status(short, "submitted", 20).await;
    let text = "A reminder long enough for three parts, or so we hope. ".repeat(7);
    let long = d.send(json!({"to": "+79160000011", "text": text})).await;
    let m = d.wait_status(long, "delivered", 30).await;
    assert_eq!(m["attempts"], 2, "{m}");
    assert_eq!(m["parts"].as_array().map(Vec::len), Some(3), "{m}");
    d.terminate();
    let parts: Vec<_> = sim.submitted().into_iter().filter(|s| s.dest == "79160000011").collect();
    let seqs: Vec<u8> = parts.iter().map(|s| s.concat.expect("a concatenated part").part).collect();
    // Part 1 once; part 2 unanswered, then again with part 3 after the retry.
    assert_eq!(seqs, [1, 2, 2, 3], "{parts:?}");
    let refs: Vec<_> = parts.iter().map(|s| s.concat.expect("a concatenated part").reference).collect();
    assert!(refs.iter().all(|r| *r == refs[0]), "one reference for every part: {refs:?}");
}

async fn wait_event(sim: &Smsc, what: &str, times: usize, secs: u64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    while sim.events().iter().filter(|e| e.starts_with(what)).count() < times {
        assert!(std::time::Instant::now() < deadline, "never {times} x {what:?}: {:#?}", sim.events());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generic_nack_with_status_0_to_a_bind_is_not_a_bind() {
    let sim = smsc(SmscConfig { nack_binds: true, ..Default::default() }).await;
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), "", &route(sim.local_addr().port(), ""));
    let d = Daemon::start(dir.path());
    // Tried again, so the first answer was not taken as a bind.
    wait_event(&sim, "generic_nack 0x00000000", 4, 20).await;
    let (_, r) = d.get("/v1/routes").await;
    let carrier = &r["routes"][0];
    assert_ne!(carrier["state"], "up", "{carrier:#}");
    assert!(carrier["members"].to_string().contains("generic_nack"), "{carrier:#}");
    // A peer that answers properly gets bound.
    sim.set_config(SmscConfig { credentials: vec![("smsgw".into(), "secret".into())], ..Default::default() });
    let id = d.send(json!({"to": "+79161234567", "text": "after the nacks"})).await;
    d.wait_status(id, "delivered", 20).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generic_nack_with_status_0_to_a_submit_is_a_temporary_protocol_error() {
    let sim = smsc(SmscConfig { nack_submits: true, ..Default::default() }).await;
    let dir = tempfile::tempdir().unwrap();
    write_config(
        dir.path(),
        "[dispatch]\nretry_base_ms = 200\nretry_max_ms = 400\n",
        &route(sim.local_addr().port(), ""),
    );
    let d = Daemon::start(dir.path());
    let id = d.send(json!({"to": "+79161234567", "text": "nacked at first"})).await;
    wait_event(&sim, "generic_nack 0x00000000", 1, 20).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let m = loop {
        let m = d.message(id).await;
        if !m["error"].is_null() {
            break m;
        }
        assert!(std::time::Instant::now() < deadline, "{m:#}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(m["error"]["code"], "smpp_protocol_error", "{m:#}");
    assert!(!m["error"].to_string().contains("ESME_ROK"), "{m:#}");
    assert_ne!(m["status"], "failed", "{m:#}");
    sim.set_config(SmscConfig { credentials: vec![("smsgw".into(), "secret".into())], ..Default::default() });
    d.wait_status(id, "delivered", 20).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inbound_part_numbered_past_its_total_is_a_message_of_its_own() {
    let sim = smsc(SmscConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), "", &route(sim.local_addr().port(), ""));
    let d = Daemon::start(dir.path());
    wait_event(&sim, "bind_transceiver from smsgw: ok", 1, 10).await;
    // Part 3 of 2: TS 23.040 says to ignore such numbers, as the modem path does,
    // rather than wait for parts that cannot come.
    sim.inject_inbound_part("+79161234567", "7726", "part three of two", 9, 2, 3).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, list) = d.get("/v1/inbound").await;
        let msgs = list["messages"].as_array().cloned().unwrap_or_default();
        if let Some(m) = msgs.first() {
            assert_eq!(m["text"], "part three of two", "{m:#}");
            assert_eq!(m["parts"], 1, "{m:#}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the part was held for reassembly: {list:#}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
