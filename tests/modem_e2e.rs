//! The real daemon driving virtual modems on pseudo-terminals: a hundred
//! messages of every shape delivered through two modems with every status
//! report matched; inbound single and concatenated messages read, stored and
//! only then deleted; a modem that hangs mid-send healed while the other
//! sends its message; a port unplugged and plugged back in; a wrong PIN
//! sent once only, through reopens, a replug and reloads, until the config
//! gives another; a restart loop that leaves the SIM its last attempt; a
//! thousand messages to one number while the modem's TP-MR wraps, and two
//! modems whose SIMs report the same IMSI, every report on its own part; a
//! long message resumed from the part the network refused; stored messages
//! read at start from every memory; undecodable PDUs kept and deleted.

mod common;
use common::*;
use serde_json::{Value, json};
use smsgw::simulate::modem::{ModemConfig, VirtualModem};
use std::path::Path;
use std::time::Duration;

/// A modem that takes `send_ms` per message and reports delivery 100 ms
/// later; the parts of a long incoming message come 200 ms apart.
async fn modem(dir: &Path, name: &str, cfg: ModemConfig, send_ms: u64) -> VirtualModem {
    let cfg = ModemConfig { send_delay_ms: send_ms, part_interval_ms: 200, ..cfg };
    let m = VirtualModem::start(cfg, &dir.join("dev").join(name)).await.expect("virtual modem starts");
    m.set_auto_reports(Some(Duration::from_millis(100)));
    m
}

/// A second SIM: other IMEI, IMSI and ICCID.
fn second() -> ModemConfig {
    ModemConfig {
        imei: "867856030456792".into(),
        imsi: "250029876543210".into(),
        iccid: "89701029876543210987".into(),
        ..ModemConfig::default()
    }
}

/// Quick retries, so a healed modem's message goes out within the test.
const DISPATCH: &str = "[dispatch]\nmax_attempts = 10\nretry_base_ms = 100\nretry_max_ms = 500\n";

fn route(dir: &Path, extra: &str) -> String {
    format!(
        "[[routes]]\nname = \"gsm\"\nkind = \"modem\"\nconcurrency = 4\n[routes.modem]\nports = [\"{}/dev/*\"]\n\
         health_interval_secs = 1\nregistration_timeout_secs = 10\n{extra}\n",
        dir.display()
    )
}

async fn modems_view(d: &Daemon) -> Vec<Value> {
    let (s, v) = d.get("/v1/modems").await;
    assert_eq!(s, 200, "{v}");
    v["modems"].as_array().cloned().unwrap_or_default()
}

/// Wait until `n` modems report `state`.
async fn wait_modems(d: &Daemon, n: usize, state: &str, secs: u64) -> Vec<Value> {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let modems = modems_view(d).await;
        if modems.iter().filter(|m| m["state"] == state).count() >= n {
            return modems;
        }
        assert!(std::time::Instant::now() < deadline, "waiting for {n} modem(s) {state}: {modems:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_messages_through_two_modems_all_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let a = modem(dir.path(), "a-if02", ModemConfig::default(), 30).await;
    let b = modem(dir.path(), "b-if02", second(), 30).await;
    write_config(dir.path(), DISPATCH, &route(dir.path(), ""));
    let d = Daemon::start(dir.path());
    wait_modems(&d, 2, "ready", 20).await;

    let long = "This reminder is long enough to need three parts. ".repeat(7);
    let mut msgs = Vec::new();
    for i in 0..100 {
        let text = match i % 3 {
            0 => format!("Your code is {i:06}"),
            1 => format!("Заказ {i} отправлен"),
            _ => long.clone(),
        };
        msgs.push(json!({"to": format!("+7916{i:07}"), "text": text}));
    }
    let (s, v) = d.post("/v1/messages", &json!({ "messages": msgs })).await;
    assert_eq!(s, 202, "{v}");
    let ids: Vec<i64> = v["messages"].as_array().unwrap().iter().map(|m| m["id"].as_i64().unwrap()).collect();
    for id in &ids {
        d.wait_status(*id, "delivered", 120).await;
    }

    // Every part went out once, through one of the two modems, and the texts
    // the modems decoded are the texts that were posted.
    let sent: Vec<_> = a.sent().into_iter().chain(b.sent()).collect();
    let parts: usize = (0..100).map(|i| if i % 3 == 2 { 3 } else { 1 }).sum();
    assert_eq!(sent.len(), parts);
    assert!(!a.sent().is_empty() && !b.sent().is_empty(), "both modems sent");
    assert!(sent.iter().all(|s| s.status_report));
    for (i, m) in msgs.iter().enumerate() {
        let to = m["to"].as_str().unwrap();
        let mut got: Vec<_> = sent.iter().filter(|s| s.to == to).collect();
        got.sort_by_key(|s| s.concat.map(|c| c.seq));
        let text: String = got.iter().map(|s| s.text.as_str()).collect();
        assert_eq!(text, m["text"].as_str().unwrap(), "message {i}");
    }
    // Each part's status report was matched: the message shows it per part.
    let m = d.message(ids[2]).await;
    let parts = m["parts"].as_array().unwrap();
    assert_eq!(parts.len(), 3, "{m}");
    assert!(parts.iter().all(|p| p["status"] == "delivered"), "{m}");

    let modems = modems_view(&d).await;
    // The modems count SMS, as SIM plans do: every part.
    let total: i64 = modems.iter().map(|m| m["sent"].as_i64().unwrap_or(0)).sum();
    assert_eq!(total as usize, sent.len(), "{modems:#?}");
    d.terminate();
}

async fn inbound(d: &Daemon) -> Vec<Value> {
    let (s, v) = d.get("/v1/inbound?limit=100").await;
    assert_eq!(s, 200, "{v}");
    v["messages"].as_array().cloned().unwrap_or_default()
}

async fn wait_inbound(d: &Daemon, n: usize, secs: u64) -> Vec<Value> {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let list = inbound(d).await;
        if list.len() >= n {
            return list;
        }
        assert!(std::time::Instant::now() < deadline, "waiting for {n} inbound: {list:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The reads (AT+CMGR of one index; AT+CMGL of all, as index 0) and the
/// deletes (AT+CMGD) the modem received, in order.
fn reads_and_deletes(m: &VirtualModem) -> Vec<(String, u32)> {
    m.commands()
        .iter()
        .filter_map(|c| {
            let c = c.to_ascii_uppercase();
            if c.starts_with("AT+CMGL") {
                return Some(("read".to_string(), 0));
            }
            let verb = if c.starts_with("AT+CMGR=") {
                "read"
            } else if c.starts_with("AT+CMGD=") {
                "delete"
            } else {
                return None;
            };
            let index = c[8..].split(',').next()?.trim().parse().ok()?;
            Some((verb.to_string(), index))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_single_and_concatenated_read_stored_then_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let own = ModemConfig { own_number: Some("+79160001122".into()), ..ModemConfig::default() };
    let a = modem(dir.path(), "a-if02", own, 30).await;
    // Two arrive while the gateway is not running: the start-up sweep finds them.
    a.deliver("+79161112233", "sent while you were away");
    a.deliver("MyBank", "Balance: 100.00 RUB");
    write_config(dir.path(), DISPATCH, &route(dir.path(), ""));
    let d = Daemon::start(dir.path());
    wait_inbound(&d, 2, 20).await;
    // Then one short and one long Cyrillic message announced with +CMTI.
    let long = "Здравствуйте! Ваш заказ собран и передан в доставку, курьер позвонит заранее. ".repeat(3);
    a.deliver("+79164445566", "Да");
    a.deliver("+79167778899", &long);
    let list = wait_inbound(&d, 4, 20).await;
    let by_from = |from: &str| list.iter().find(|m| m["from"] == from).unwrap_or_else(|| panic!("{from}: {list:#?}"));
    assert_eq!(by_from("+79161112233")["text"], "sent while you were away");
    assert_eq!(by_from("MyBank")["text"], "Balance: 100.00 RUB");
    assert_eq!(by_from("+79164445566")["text"], "Да");
    let l = by_from("+79167778899");
    assert_eq!(l["text"], long.as_str());
    assert_eq!(l["parts"], smsgw::sms::text::split(&long).parts.len());
    assert_eq!(l["complete"], true);
    // Received on the SIM's own number (AT+CNUM), with the network's timestamp.
    assert!(
        list.iter().all(|m| m["route"] == "gsm" && m["to"] == "+79160001122" && m["sent_at"].is_string()),
        "{list:#?}"
    );

    // Every message was read before it was deleted, and nothing is left on the SIM.
    let ops = reads_and_deletes(&a);
    let deletes: Vec<u32> = ops.iter().filter(|(v, _)| v == "delete").map(|(_, i)| *i).collect();
    assert!(deletes.len() >= 2 + smsgw::sms::text::split(&long).parts.len(), "{ops:?}");
    for (pos, (verb, index)) in ops.iter().enumerate() {
        if verb == "delete" {
            let read = ops[..pos].iter().any(|(v, i)| v == "read" && (i == index || *i == 0));
            assert!(read, "deleted {index} unread: {ops:?}");
        }
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !a.stored().is_empty() {
        assert!(std::time::Instant::now() < deadline, "left on the SIM: {:?}", a.stored());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, modems) = d.get("/v1/modems").await;
    // Counted in SMS: each part of the long one.
    assert_eq!(modems["modems"][0]["received"], 3 + smsgw::sms::text::split(&long).parts.len(), "{modems}");

    // A restart reads nothing twice.
    assert_eq!(d.terminate(), Some(0));
    let d = Daemon::start(dir.path());
    wait_modems(&d, 1, "ready", 20).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(inbound(&d).await.len(), 4);
    d.terminate();
}

/// Which modem's `sent()` carries a message to `to`.
fn sent_to(m: &VirtualModem, to: &str) -> bool {
    m.sent().iter().any(|s| s.to == to)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_modem_that_hangs_mid_send_is_healed_and_the_other_sends_its_message() {
    let dir = tempfile::tempdir().unwrap();
    let a = modem(dir.path(), "a-if02", ModemConfig::default(), 1500).await;
    let b = modem(dir.path(), "b-if02", second(), 1500).await;
    write_config(dir.path(), DISPATCH, &route(dir.path(), "send_timeout_secs = 3"));
    let d = Daemon::start(dir.path());
    wait_modems(&d, 2, "ready", 20).await;

    let id = d.send(json!({"to": "+79160000001", "text": "hang on"})).await;
    // Whichever modem took it hangs while the network is still busy with it.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let (sick, well) = loop {
        let typed = |m: &VirtualModem| m.commands().iter().any(|c| c.starts_with("AT+CMGS"));
        if typed(&a) {
            break (&a, &b);
        }
        if typed(&b) {
            break (&b, &a);
        }
        assert!(std::time::Instant::now() < deadline, "no modem was given the message");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    sick.set_hung(true);

    let m = d.wait_status(id, "delivered", 60).await;
    assert!(sent_to(well, "+79160000001"), "the other modem sent it: {m}");
    let history: Vec<&str> = m["history"].as_array().unwrap().iter().filter_map(|h| h["status"].as_str()).collect();
    assert!(history.contains(&"queued") && m["attempts"].as_u64() >= Some(2), "{m}");

    // The hung modem is reported, then taken back once it answers again.
    let sick_port = sick.link().display().to_string();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let modems = modems_view(&d).await;
        let s = modems.iter().find(|m| m["port"] == sick_port.as_str()).unwrap();
        if s["state"] == "unresponsive" {
            assert!(s["detail"].as_str().is_some_and(|t| !t.is_empty()), "{s}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never reported unresponsive: {s}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    sick.set_hung(false);
    wait_modems(&d, 2, "ready", 30).await;
    let id = d.send(json!({"to": "+79160000002", "text": "after healing"})).await;
    d.wait_status(id, "delivered", 30).await;
    d.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unplugged_modem_is_waited_for_and_taken_back() {
    let dir = tempfile::tempdir().unwrap();
    let a = modem(dir.path(), "a-if02", ModemConfig::default(), 30).await;
    write_config(dir.path(), DISPATCH, &route(dir.path(), ""));
    let d = Daemon::start(dir.path());
    wait_modems(&d, 1, "ready", 20).await;

    a.unplug().await;
    wait_modems(&d, 1, "gone", 20).await;
    // Accepted while the only modem is away: queued, not failed.
    let id = d.send(json!({"to": "+79160000003", "text": "wait for me"})).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let m = d.message(id).await;
    assert!(m["status"] == "queued" || m["status"] == "sending", "{m}");

    a.replug().await.unwrap();
    d.wait_status(id, "delivered", 60).await;
    assert!(sent_to(&a, "+79160000003"));
    let modems = wait_modems(&d, 1, "ready", 20).await;
    assert_eq!(modems.len(), 1, "the same modem, not a second one: {modems:#?}");
    d.terminate();
}

/// The modem on `port` as /v1/modems shows it, once it is in `state`.
async fn wait_port(d: &Daemon, port: &Path, state: &str, secs: u64) -> Value {
    let port = port.display().to_string();
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let modems = modems_view(d).await;
        if let Some(m) = modems.iter().find(|m| m["port"] == port.as_str() && m["state"] == state) {
            return m.clone();
        }
        assert!(std::time::Instant::now() < deadline, "waiting for {port} {state}: {modems:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// How often the modem was asked for its SIM state (AT+CPIN?), and how
/// often it was given a PIN (AT+CPIN=...).
fn pin_commands(m: &VirtualModem) -> (usize, usize) {
    let commands: Vec<String> = m.commands().iter().map(|c| c.to_ascii_uppercase()).collect();
    let asked = commands.iter().filter(|c| c.starts_with("AT+CPIN?")).count();
    let given = commands.iter().filter(|c| c.starts_with("AT+CPIN=")).count();
    (asked, given)
}

/// Wait until the modem has been asked for its SIM state `n` times in all.
async fn wait_asked(m: &VirtualModem, n: usize, secs: u64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    while pin_commands(m).0 < n {
        assert!(std::time::Instant::now() < deadline, "asked {:?} of {n} times: {:?}", pin_commands(m), m.commands());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_pin_is_sent_once_however_often_the_modem_is_reopened_until_the_config_changes() {
    let began = std::time::Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let locked = ModemConfig { pin: Some("4321".into()), ..second() };
    let a = modem(dir.path(), "a-if02", ModemConfig { pin: Some("1234".into()), ..ModemConfig::default() }, 30).await;
    let b = modem(dir.path(), "b-if02", locked, 30).await;
    // A modem waiting for someone is looked at again every second.
    let config =
        |extra: &str| write_config(dir.path(), DISPATCH, &route(dir.path(), &format!("retry_secs = 1\n{extra}")));
    config("pin = \"1234\"");
    let d = Daemon::start(dir.path());
    wait_port(&d, a.link(), "ready", 20).await;
    let bad = wait_port(&d, b.link(), "pin_needed", 20).await;
    let detail = bad["detail"].as_str().unwrap_or("");
    assert!(
        detail.contains("refused the configured PIN") && detail.contains("until the pin in the config changes"),
        "{bad}"
    );
    assert!(!detail.contains("1234"), "the PIN is never shown: {bad}");

    // The good modem carries the traffic.
    let id = d.send(json!({"to": "+79160000004", "text": "still working"})).await;
    d.wait_status(id, "delivered", 30).await;
    assert!(sent_to(&a, "+79160000004"));

    // Reopened after each pause: asked for its SIM state again, given no PIN.
    let (first, _) = pin_commands(&b);
    wait_asked(&b, first + 3, 30).await;
    wait_port(&d, b.link(), "pin_needed", 20).await;

    // Unplugged and plugged back: the SIM powers up asking for its PIN again.
    b.unplug().await;
    wait_port(&d, b.link(), "gone", 20).await;
    b.replug().await.unwrap();
    let (asked, _) = pin_commands(&b);
    wait_asked(&b, asked + 2, 30).await;
    wait_port(&d, b.link(), "pin_needed", 20).await;

    // A reload that rebuilds the route for another reason keeps the rule.
    config("pin = \"1234\"\nsend_timeout_secs = 30");
    d.signal("HUP");
    let (asked, _) = pin_commands(&b);
    wait_asked(&b, asked + 2, 30).await;
    let bad = wait_port(&d, b.link(), "pin_needed", 20).await;
    assert!(bad["detail"].as_str().unwrap_or("").contains("refused"), "{bad}");
    let (cycles, given) = pin_commands(&b);
    assert_eq!(given, 1, "the refused PIN was sent again: {:?}", b.commands());

    // The right PIN by a reload: sent once, and the modem comes in.
    config("pin = \"4321\"");
    d.signal("HUP");
    wait_port(&d, b.link(), "ready", 30).await;
    wait_port(&d, a.link(), "ready", 30).await;
    assert_eq!(pin_commands(&b).1, 2, "{:?}", b.commands());
    let id = d.send(json!({"to": "+79160000005", "text": "both again"})).await;
    d.wait_status(id, "delivered", 30).await;
    eprintln!("wrong PIN held back over {cycles} looks at the SIM in {:.1} s", began.elapsed().as_secs_f64());
    d.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_loop_leaves_the_sim_its_last_pin_attempt() {
    let dir = tempfile::tempdir().unwrap();
    let b = modem(dir.path(), "b-if02", ModemConfig { pin: Some("4321".into()), ..second() }, 30).await;
    write_config(dir.path(), DISPATCH, &route(dir.path(), "retry_secs = 1\npin = \"1234\""));
    // Each start forgets what the last one learnt; the SIM's own count of
    // attempts left (AT+CPINR) stops the third try, which would lock it.
    for start in 1..=3 {
        let d = Daemon::start(dir.path());
        let bad = wait_port(&d, b.link(), "pin_needed", 20).await;
        if start == 3 {
            let detail = bad["detail"].as_str().unwrap_or("");
            assert!(detail.contains("1 PIN attempt(s) left"), "{bad}");
        }
        d.terminate();
    }
    assert_eq!(pin_commands(&b).1, 2, "{:?}", b.commands());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cms_errors_are_retried_when_temporary_and_fail_the_message_when_permanent() {
    let dir = tempfile::tempdir().unwrap();
    let a = modem(dir.path(), "a-if02", ModemConfig::default(), 30).await;
    write_config(dir.path(), DISPATCH, &route(dir.path(), ""));
    let d = Daemon::start(dir.path());
    wait_modems(&d, 1, "ready", 20).await;

    // Line noise between answers changes nothing.
    a.garbage();
    // 38, network out of order: temporary; the third try goes through.
    a.fail_next_sends(2, 38);
    let id = d.send(json!({"to": "+79160000005", "text": "try again"})).await;
    let m = d.wait_status(id, "delivered", 30).await;
    assert_eq!(m["attempts"], 3, "{m}");
    let details: Vec<&str> = m["history"].as_array().unwrap().iter().filter_map(|h| h["detail"].as_str()).collect();
    assert_eq!(details.iter().filter(|d| d.contains("cms_38") && d.contains("network out of order")).count(), 2, "{m}");

    // 1, unassigned number: permanent, no second try.
    a.fail_next_sends(1, 1);
    let id = d.send(json!({"to": "+79160000006", "text": "nobody"})).await;
    let m = d.wait_status(id, "failed", 30).await;
    assert_eq!(m["attempts"], 1, "{m}");
    assert!(m["error"].to_string().contains("cms_1"), "{m}");
    d.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huawei_stick_with_its_noise_and_a_modem_plugged_in_later() {
    let dir = tempfile::tempdir().unwrap();
    let huawei = ModemConfig::profile("huawei-e3372").unwrap();
    let h = modem(dir.path(), "h-if02", huawei, 30).await;
    write_config(dir.path(), DISPATCH, &route(dir.path(), ""));
    let d = Daemon::start(dir.path());
    let modems = wait_modems(&d, 1, "ready", 20).await;
    assert_eq!(modems[0]["profile"], "huawei", "{modems:#?}");

    // Sends, a long inbound message in ME storage with 0-based indexes,
    // all between ^RSSI / ^MODE lines.
    let id = d.send(json!({"to": "+79160000007", "text": "Привет от Huawei"})).await;
    d.wait_status(id, "delivered", 30).await;
    let long = "A reply long enough for two parts, read from ME storage between vendor noise. ".repeat(3);
    h.deliver("+79165554433", &long);
    let list = wait_inbound(&d, 1, 20).await;
    assert_eq!(list[0]["text"], long.as_str());

    // A second modem appears under the glob: taken in without a restart.
    let _b = modem(dir.path(), "b-if02", second(), 30).await;
    wait_modems(&d, 2, "ready", 20).await;
    d.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_status_reports_mark_parts_delivered_or_undelivered() {
    let dir = tempfile::tempdir().unwrap();
    // EC25: reports stored in "SR" and announced with +CDSI; half say failed.
    let q = modem(dir.path(), "q-if02", ModemConfig::profile("ec25").unwrap(), 30).await;
    q.set_report_failure_fraction(0.5);
    write_config(dir.path(), DISPATCH, &route(dir.path(), ""));
    let d = Daemon::start(dir.path());
    wait_modems(&d, 1, "ready", 20).await;
    let mut ids = Vec::new();
    for i in 0..4 {
        ids.push(d.send(json!({"to": format!("+7916000002{i}"), "text": "report me"})).await);
    }
    let mut finals = Vec::new();
    for id in ids {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let m = d.message(id).await;
            if m["status"] == "delivered" || m["status"] == "undelivered" {
                finals.push(m["status"].as_str().unwrap().to_string());
                break;
            }
            assert!(std::time::Instant::now() < deadline, "{m}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    assert_eq!(finals.iter().filter(|s| *s == "undelivered").count(), 2, "{finals:?}");
    // Read reports are deleted from the modem's report memory.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !q.stored_in("SR").is_empty() {
        assert!(std::time::Instant::now() < deadline, "reports left: {:?}", q.stored_in("SR"));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    d.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn numbers_go_out_through_their_operators_sim() {
    let dir = tempfile::tempdir().unwrap();
    let mts = modem(dir.path(), "a-if02", ModemConfig::default(), 30).await; // IMSI 25001...
    let megafon = modem(dir.path(), "b-if02", second(), 30).await; // IMSI 25002...
    let prefer = "[[routes.modem.prefer]]\nprefix = \"+7916\"\nimsi_prefix = \"25001\"\n\
                  [[routes.modem.prefer]]\nprefix = \"+7926\"\nimsi_prefix = \"25002\"\n";
    write_config(dir.path(), DISPATCH, &route(dir.path(), prefer));
    let d = Daemon::start(dir.path());
    wait_modems(&d, 2, "ready", 20).await;
    let mut msgs = Vec::new();
    for i in 0..6 {
        msgs.push(json!({"to": format!("+791600000{i:02}"), "text": "MTS"}));
        msgs.push(json!({"to": format!("+792600000{i:02}"), "text": "MegaFon"}));
    }
    let (s, v) = d.post("/v1/messages", &json!({ "messages": msgs })).await;
    assert_eq!(s, 202, "{v}");
    for m in v["messages"].as_array().unwrap() {
        d.wait_status(m["id"].as_i64().unwrap(), "delivered", 30).await;
    }
    assert!(mts.sent().iter().all(|s| s.to.starts_with("+7916")), "{:?}", mts.sent());
    assert!(megafon.sent().iter().all(|s| s.to.starts_with("+7926")), "{:?}", megafon.sent());
    assert_eq!(mts.sent().len() + megafon.sent().len(), 12);
    d.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_the_send_in_progress_finish_and_it_is_not_sent_again() {
    let dir = tempfile::tempdir().unwrap();
    let a = modem(dir.path(), "a-if02", ModemConfig::default(), 2000).await;
    write_config(dir.path(), DISPATCH, &route(dir.path(), ""));
    let d = Daemon::start(dir.path());
    wait_modems(&d, 1, "ready", 20).await;
    let id = d.send(json!({"to": "+79160000030", "text": "mid-send"})).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !a.commands().iter().any(|c| c.starts_with("AT+CMGS")) {
        assert!(std::time::Instant::now() < deadline, "never sent");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(d.terminate(), Some(0));
    let d = Daemon::start(dir.path());
    let m = d.message(id).await;
    assert!(m["status"] == "submitted" || m["status"] == "delivered", "the send finished before the stop: {m}");
    wait_modems(&d, 1, "ready", 20).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(a.sent().len(), 1, "sent once: {:?}", a.sent());
    d.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_stored_while_the_gateway_was_down_is_read_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let q = modem(dir.path(), "q-if02", ModemConfig::profile("ec25").unwrap(), 30).await;
    q.set_auto_reports(None);
    write_config(dir.path(), DISPATCH, &route(dir.path(), ""));
    let d = Daemon::start(dir.path());
    wait_modems(&d, 1, "ready", 20).await;
    let id = d.send(json!({"to": "+79160000040", "text": "report later"})).await;
    d.wait_status(id, "submitted", 20).await;
    assert_eq!(d.terminate(), Some(0));

    // The network reports while nothing reads the port: it waits in "SR".
    let sent = q.sent();
    q.status_report(sent[0].message_ref, "+79160000040", 0);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(q.stored_in("SR").len(), 1);

    let d = Daemon::start(dir.path());
    d.wait_status(id, "delivered", 20).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !q.stored_in("SR").is_empty() {
        assert!(std::time::Instant::now() < deadline, "report left in SR: {:?}", q.stored_in("SR"));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    d.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_modem_that_refuses_stored_reports_gets_them_inline() {
    let dir = tempfile::tempdir().unwrap();
    // A SIM800 whose firmware takes only ds 0 or 1, and that starts in
    // AT+CSMS=1, where an inline report left without AT+CNMA turns inline
    // reports off: every report after the first would be lost.
    let mut cfg = ModemConfig::default();
    cfg.quirks.cnmi_test = Some("+CNMI: (0-2),(0-3),(0),(0,1),(0,1)".into());
    cfg.quirks.csms_phase2plus = true;
    let a = modem(dir.path(), "a-if02", cfg, 30).await;
    write_config(dir.path(), DISPATCH, &route(dir.path(), ""));
    let d = Daemon::start(dir.path());
    wait_modems(&d, 1, "ready", 20).await;
    for n in 0..3 {
        let id = d.send(json!({"to": "+79160000050", "text": format!("inline report {n}")})).await;
        d.wait_status(id, "delivered", 20).await;
    }
    let cnmi: Vec<String> = a.commands().into_iter().filter(|c| c.starts_with("AT+CNMI=")).collect();
    assert_eq!(cnmi, ["AT+CNMI=2,1,0,2,0", "AT+CNMI=2,1,0,1,0"]);
    d.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_minute_caps_hold_per_modem() {
    let dir = tempfile::tempdir().unwrap();
    let a = modem(dir.path(), "a-if02", ModemConfig::default(), 30).await;
    let b = modem(dir.path(), "b-if02", second(), 30).await;
    write_config(dir.path(), DISPATCH, &route(dir.path(), "per_minute = 2"));
    let d = Daemon::start(dir.path());
    wait_modems(&d, 2, "ready", 20).await;
    // Two SMS a minute per SIM; four messages, one of them in two parts,
    // make five SMS: at least one message waits for the next minute (which
    // ones depends on the order the modems take them).
    let long = "Two parts: this text is long enough that it cannot fit into a single SMS at all. ".repeat(2);
    let mut ids = Vec::new();
    for text in [long.as_str(), "one", "two", "three"] {
        ids.push(d.send(json!({"to": "+79160000060", "text": text})).await);
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(a.sent().len() <= 2 && b.sent().len() <= 2, "a {} b {}", a.sent().len(), b.sent().len());
    assert!(a.sent().len() + b.sent().len() >= 3, "a {} b {}", a.sent().len(), b.sent().len());
    let mut waiting = Vec::new();
    for id in ids {
        let m = d.message(id).await;
        if m["status"] == "queued" || m["status"] == "sending" {
            waiting.push(id);
        }
    }
    assert!(!waiting.is_empty(), "something waits for the next minute");

    // A stop does not wait for them: they go back to the queue at once, and
    // the next start sends them once the minute has moved on (the count
    // survives the restart).
    assert_eq!(d.terminate(), Some(0));
    let d = Daemon::start(dir.path());
    for id in &waiting {
        let m = d.wait_status(*id, "delivered", 90).await;
        assert!(m["history"].to_string().contains("stopped while this message waited for a modem"), "{m}");
        // Waiting for a modem is not an attempt: the one that sent it is the first.
        assert_eq!(m["attempts"], 1, "{m}");
    }
    d.terminate();
    for (name, m) in [("a", &a), ("b", &b)] {
        let at: Vec<_> = m.sent().iter().map(|s| s.at).collect();
        for (i, t) in at.iter().enumerate() {
            let in_a_minute = at[i..].iter().take_while(|u| **u < *t + chrono::Duration::seconds(60)).count();
            assert!(in_a_minute <= 2, "modem {name} sent {in_a_minute} SMS within a minute of {t}: {at:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_sms_carries_what_is_left_of_its_validity() {
    let dir = tempfile::tempdir().unwrap();
    let a = modem(dir.path(), "a-if02", ModemConfig::default(), 30).await;
    write_config(dir.path(), DISPATCH, &route(dir.path(), ""));
    let d = Daemon::start(dir.path());
    wait_modems(&d, 1, "ready", 20).await;
    let code =
        d.send(json!({"to": "+79160000070", "text": "Your code is 123456", "valid_until": in_secs(7200.0)})).await;
    let long = "A reminder long enough for two parts. ".repeat(5);
    let reminder = d.send(json!({"to": "+79160000071", "text": long, "valid_until": in_secs(3.0 * 86_400.0)})).await;
    d.wait_status(code, "delivered", 20).await;
    d.wait_status(reminder, "delivered", 20).await;
    d.terminate();
    // TS 23.040 relative TP-VP: 2 h is (23 + 1) × 5 min exactly, rounded up
    // to the next step when a moment of it has passed; 3 days is 169.
    let minutes =
        |to: &str| -> Vec<Option<u32>> { a.sent().iter().filter(|s| s.to == to).map(|s| s.validity_minutes).collect() };
    let code_vp = minutes("+79160000070");
    assert!(code_vp.len() == 1 && matches!(code_vp[0], Some(120 | 125)), "{code_vp:?}");
    assert_eq!(minutes("+79160000071"), [Some(3 * 1440), Some(3 * 1440)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sims_at_their_daily_cap_leave_the_queue_alone_or_fail_it_over() {
    let dir = tempfile::tempdir().unwrap();
    let a = modem(dir.path(), "a-if02", ModemConfig::default(), 30).await;
    // One attempt only: a message that spent one waiting for a capped SIM
    // would fail.
    let dispatch = "[dispatch]\nmax_attempts = 1\n";
    write_config(dir.path(), dispatch, &route(dir.path(), "per_day = 2"));
    let d = Daemon::start(dir.path());
    wait_modems(&d, 1, "ready", 20).await;
    for n in 0..2 {
        let id = d.send(json!({"to": "+79160000080", "text": format!("within the plan {n}")})).await;
        d.wait_status(id, "submitted", 20).await;
    }
    let third = d.send(json!({"to": "+79160000080", "text": "over the plan"})).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let m = d.message(third).await;
    assert_eq!((m["status"].as_str(), m["attempts"].as_i64()), (Some("queued"), Some(0)), "{m}");
    let (_, routes) = d.get("/v1/routes").await;
    let gsm = routes["routes"].as_array().unwrap().iter().find(|r| r["name"] == "gsm").unwrap().clone();
    assert_eq!(gsm["state"], "down", "{gsm}");
    assert!(gsm["detail"].as_str().unwrap().contains("1 at the SIM's SMS cap"), "{gsm}");
    let modems = modems_view(&d).await;
    assert_eq!((modems[0]["state"].as_str(), modems[0]["at_cap"].as_bool()), (Some("ready"), Some(true)), "{modems:?}");
    assert_eq!(a.sent().len(), 2);
    d.terminate();

    // A restart does not give the SIM a fresh allowance: the store knows
    // what it sent today.
    let d = Daemon::start(dir.path());
    wait_modems(&d, 1, "ready", 20).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let m = d.message(third).await;
    assert_eq!((m["status"].as_str(), m["attempts"].as_i64()), (Some("queued"), Some(0)), "{m}");
    assert_eq!(a.sent().len(), 2);
    d.terminate();

    // With failover on, the next route takes what the SIMs may not send.
    let routes = format!(
        "{}{}",
        route(dir.path(), "per_day = 2").replace("kind = \"modem\"\n", "kind = \"modem\"\nfailover = true\n"),
        sim_route(dir.path(), "backup", "", "delivery_delay_ms = 0")
    );
    write_config(dir.path(), dispatch, &routes);
    let d = Daemon::start(dir.path());
    wait_modems(&d, 1, "ready", 20).await;
    let m = d.wait_status(third, "delivered", 20).await;
    assert_eq!(m["route"], "backup", "{m}");
    assert_eq!(a.sent().len(), 2);
    d.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_message_that_failed_at_part_two_is_resumed_from_part_two_through_the_same_sim() {
    let dir = tempfile::tempdir().unwrap();
    let a = modem(dir.path(), "a-if02", ModemConfig::default(), 500).await;
    let b = modem(dir.path(), "b-if02", second(), 500).await;
    // Reports by hand: the message must wait for every part's.
    a.set_auto_reports(None);
    b.set_auto_reports(None);
    write_config(dir.path(), DISPATCH, &route(dir.path(), ""));
    let d = Daemon::start(dir.path());
    wait_modems(&d, 2, "ready", 20).await;
    let to = "+79160000090";
    let text = "A reminder long enough for three parts, or so we hope. ".repeat(7);
    assert_eq!(smsgw::sms::text::split(&text).parts.len(), 3);
    let id = d.send(json!({"to": to, "text": text})).await;
    // The first part is on its way: the network refuses the second, once.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let (sender, other) = loop {
        if a.sent().iter().any(|s| s.to == to) {
            break (&a, &b);
        }
        if b.sent().iter().any(|s| s.to == to) {
            break (&b, &a);
        }
        assert!(std::time::Instant::now() < deadline, "the first part never went");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    sender.fail_next_sends(1, 38);
    let m = d.wait_status(id, "submitted", 30).await;
    assert_eq!(m["attempts"], 2, "{m}");

    // Part 1 went once, parts 2 and 3 after the retry, under one reference,
    // from the same SIM.
    let parts: Vec<_> = sender.sent().into_iter().filter(|s| s.to == to).collect();
    let seen: Vec<_> = parts.iter().map(|s| s.concat.map(|c| (c.reference, c.seq))).collect();
    let reference = seen[0].expect("a concatenated part").0;
    assert_eq!(seen, [Some((reference, 1)), Some((reference, 2)), Some((reference, 3))]);
    assert!(other.sent().iter().all(|s| s.to != to), "{:?}", other.sent());

    // Delivered only once every part is.
    for (n, p) in parts.iter().enumerate() {
        let m = d.message(id).await;
        assert_eq!(m["status"], "submitted", "before the report of part {}: {m}", n + 1);
        sender.status_report(p.message_ref, to, 0);
        if n + 1 < parts.len() {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    let m = d.wait_status(id, "delivered", 20).await;
    let parts = m["parts"].as_array().unwrap();
    assert_eq!(parts.len(), 3, "{m}");
    assert!(parts.iter().all(|p| p["status"] == "delivered"), "{m}");
    d.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_messages_to_one_number_through_one_modem_all_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let a = modem(dir.path(), "a-if02", ModemConfig::default(), 1).await;
    write_config(dir.path(), DISPATCH, &route(dir.path(), ""));
    let d = Daemon::start(dir.path());
    wait_modems(&d, 1, "ready", 20).await;
    const COUNT: usize = 1000;
    let msgs: Vec<Value> = (0..COUNT).map(|i| json!({"to": "+79160000100", "text": format!("note {i}")})).collect();
    let (s, v) = d.post("/v1/messages", &json!({ "messages": msgs })).await;
    assert_eq!(s, 202, "{v}");
    d.wait_counts(600, "every message delivered", |c| c["delivered"] == COUNT).await;
    // The modem's TP-MR came round (it has 256 values) several times.
    let sent = a.sent();
    assert_eq!(sent.len(), COUNT);
    let refs: std::collections::BTreeSet<u8> = sent.iter().map(|s| s.message_ref).collect();
    assert_eq!(refs.len(), 256);
    d.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_modems_whose_sims_report_the_same_imsi_each_get_their_own_reports() {
    let dir = tempfile::tempdir().unwrap();
    let a = modem(dir.path(), "a-if02", ModemConfig::default(), 5).await;
    // Another modem (IMEI), but a SIM that reports the same IMSI; every
    // report it gets says "not delivered".
    let twin = ModemConfig { imsi: ModemConfig::default().imsi, ..second() };
    let b = modem(dir.path(), "b-if02", twin, 5).await;
    b.set_report_failure_fraction(1.0);
    write_config(dir.path(), DISPATCH, &route(dir.path(), ""));
    let d = Daemon::start(dir.path());
    wait_modems(&d, 2, "ready", 20).await;
    const COUNT: usize = 100;
    let msgs: Vec<Value> = (0..COUNT).map(|i| json!({"to": "+79160000110", "text": format!("twin {i}")})).collect();
    let (s, v) = d.post("/v1/messages", &json!({ "messages": msgs })).await;
    assert_eq!(s, 202, "{v}");
    let ids: Vec<i64> = v["messages"].as_array().unwrap().iter().map(|m| m["id"].as_i64().unwrap()).collect();
    d.wait_counts(120, "every message final", |c| {
        c["delivered"].as_u64().unwrap_or(0) + c["undelivered"].as_u64().unwrap_or(0) == COUNT as u64
    })
    .await;
    assert!(!a.sent().is_empty() && !b.sent().is_empty(), "both modems sent");
    for (i, id) in ids.iter().enumerate() {
        let text = format!("twin {i}");
        let want = if b.sent().iter().any(|s| s.text == text) { "undelivered" } else { "delivered" };
        let m = d.message(*id).await;
        assert_eq!(m["status"], want, "{m}");
    }
    d.terminate();
}

/// Two single messages and the two parts of a long one, stored while the
/// gateway was down, on every kind of modem the virtual modem plays: all
/// are read at start (AT+CMGL=4, each PDU behind its SMSC address), stored
/// and deleted from the SIM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_messages_are_read_at_start_on_every_modem_kind() {
    let long = "Ваш заказ 4821 собран и передан в доставку, курьер позвонит за час. Спасибо!".to_string();
    assert_eq!(smsgw::sms::text::split(&long).parts.len(), 2);
    for kind in
        ["sim800", "sim7670g", "sim7600", "ec25", "huawei-e1752", "huawei-e3372", "wavecom", "mc55i", "telit", "zte"]
    {
        let dir = tempfile::tempdir().unwrap();
        let m = modem(dir.path(), "m-if02", ModemConfig::profile(kind).unwrap(), 30).await;
        m.deliver("+79161112233", "первое");
        m.deliver("MyShop", "second one");
        m.deliver("+79164445566", &long);
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        while m.stored().len() < 4 {
            assert!(std::time::Instant::now() < deadline, "{kind}: not stored: {:?}", m.stored());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        write_config(dir.path(), DISPATCH, &route(dir.path(), ""));
        let d = Daemon::start(dir.path());
        let list = wait_inbound(&d, 3, 30).await;
        let texts: Vec<&str> = list.iter().filter_map(|m| m["text"].as_str()).collect();
        assert!(
            texts.contains(&"первое") && texts.contains(&"second one") && texts.contains(&long.as_str()),
            "{kind}: {list:#?}"
        );
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !m.stored().is_empty() {
            assert!(std::time::Instant::now() < deadline, "{kind}: left on the SIM: {:?}", m.stored());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        d.terminate();
    }
}

/// Crafted PDUs the decoder refuses, more than the SIM holds: each is
/// stored as it came with the reason (so nothing is lost) and deleted from
/// the SIM, which never fills; a real message after them still arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_pdus_are_kept_as_they_came_and_leave_the_sim() {
    let dir = tempfile::tempdir().unwrap();
    let m = modem(dir.path(), "m-if02", ModemConfig::default(), 30).await;
    write_config(dir.path(), DISPATCH, &route(dir.path(), ""));
    let d = Daemon::start(dir.path());
    wait_modems(&d, 1, "ready", 20).await;
    // An originating address of 105 digits, and compressed user data.
    let too_long = smsgw::sms::pdu::from_hex("0469919761000000000000000000000000000000").unwrap();
    let compressed = smsgw::sms::pdu::from_hex("040B919761000000F000396210102141000004C8329BFD").unwrap();
    let flood = 40;
    for i in 0..flood {
        m.deliver_pdu(if i % 2 == 0 { &too_long } else { &compressed });
    }
    m.deliver("+79161112233", "after the flood");
    let list = wait_inbound(&d, flood + 1, 60).await;
    assert!(list.iter().any(|i| i["text"] == "after the flood"), "{list:#?}");
    let bad: Vec<&Value> = list.iter().filter(|i| i["undecodable"].is_object()).collect();
    assert_eq!(bad.len(), flood, "{list:#?}");
    let reasons: Vec<&str> = bad.iter().filter_map(|i| i["undecodable"]["reason"].as_str()).collect();
    assert!(reasons.iter().any(|r| r.contains("TP-OA") && r.contains("105")), "{reasons:?}");
    assert!(reasons.iter().any(|r| r.contains("TP-DCS") && r.contains("compressed")), "{reasons:?}");
    // The PDU as it came: the SMSC part in front of the crafted TPDU.
    let pdus: Vec<&str> = bad.iter().filter_map(|i| i["undecodable"]["pdu"].as_str()).collect();
    assert!(
        pdus.iter().all(|p| p.ends_with("0469919761000000000000000000000000000000")
            || p.ends_with("040B919761000000F000396210102141000004C8329BFD")),
        "{pdus:?}"
    );
    let (s, one) = d.get(&format!("/v1/inbound/{}", bad[0]["id"])).await;
    assert_eq!(s, 200);
    assert_eq!(one["undecodable"], bad[0]["undecodable"]);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !m.stored().is_empty() {
        assert!(std::time::Instant::now() < deadline, "left on the SIM: {:?}", m.stored());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    d.terminate();
}
