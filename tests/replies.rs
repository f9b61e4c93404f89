//! Replies and keywords through the real binary, with the SMSC simulator
//! and a virtual modem on a pty as the network: an answer is linked to the
//! latest message sent to its number (key, reference, intent) and only
//! that message's key sees it; STOP by deliver_sm and "CTOП" typed with
//! Latin look-alikes on a modem record an opt-out in the SQLite file;
//! a promotion queued for that number is then suppressed, never sent;
//! ПОМОЩЬ is answered with the help text through the route it came in on;
//! START takes the opt-out back; an answer after the window is linked to
//! nothing; a reload brings new words; bad `[replies]` values are refused
//! by name.

mod common;
use common::*;
use serde_json::{Value, json};
use smsgw::simulate::modem::{ModemConfig, VirtualModem};
use smsgw::simulate::smsc::{Smsc, SmscConfig};
use std::path::Path;
use std::time::{Duration, Instant};

// KEY ("test") and OTHER_KEY ("other") get the default scopes, send and
// read, beside a key with admin.
const ADMIN_KEY: &str = "admin-key-0123456789abcdef";
const HELP_TEXT: &str = "Отписаться от рассылок: СТОП (STOP). Подписаться снова: СТАРТ (START).";

fn keys(replies: &str) -> String {
    format!("{replies}\n[[api_keys]]\nname = \"ops\"\nkey = \"{ADMIN_KEY}\"\nscopes = [\"admin\"]\n")
}

async fn call(d: &Daemon, method: &str, path: &str, key: &str, body: Option<Value>) -> (u16, Value) {
    let url = format!("{}{path}", d.url);
    let req = if method == "GET" { d.http.get(url) } else { d.http.post(url) };
    let req = match body {
        Some(b) => req.json(&b),
        None => req,
    };
    let resp = req.bearer_auth(key).send().await.expect("request");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn send(d: &Daemon, key: &str, to: &str, text: &str, reference: &str) -> i64 {
    let (s, v) =
        call(d, "POST", "/v1/messages", key, Some(json!({"to": to, "text": text, "reference": reference}))).await;
    assert_eq!(s, 202, "{v}");
    v["id"].as_i64().expect("id")
}

/// Wait until the network has message `id` (submitted or further).
async fn wait_sent(d: &Daemon, key: &str, id: i64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, m) = call(d, "GET", &format!("/v1/messages/{id}"), key, None).await;
        if m["status"] == "submitted" || m["status"] == "delivered" {
            return;
        }
        assert!(Instant::now() < deadline, "message {id} never went out: {m:#}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A promotion to `to`, due in a few seconds: queued, not yet sent.
async fn queue_promotion(d: &Daemon, to: &str, text: &str) -> i64 {
    let send_at = (chrono::Utc::now() + chrono::Duration::seconds(4)).to_rfc3339();
    let body = json!({"to": to, "text": text, "priority": "promotional", "send_at": send_at});
    let (s, v) = call(d, "POST", "/v1/messages", KEY, Some(body)).await;
    assert_eq!((s, &v["status"]), (202, &json!("queued")), "{v}");
    v["id"].as_i64().expect("id")
}

/// Wait until message `id` ends `suppressed` because its number opted out.
async fn wait_suppressed(d: &Daemon, id: i64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, m) = call(d, "GET", &format!("/v1/messages/{id}"), KEY, None).await;
        if m["status"] == "suppressed" {
            assert_eq!(m["error"]["code"], "opted_out", "{m:#}");
            return;
        }
        assert!(m["status"] == "queued", "message {id} left the queue but was not suppressed: {m:#}");
        assert!(Instant::now() < deadline, "message {id} never suppressed: {m:#}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The inbound message with `text`, as the admin key sees it, once stored.
async fn inbound(d: &Daemon, text: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, list) = call(d, "GET", "/v1/inbound", ADMIN_KEY, None).await;
        if let Some(m) = list["messages"].as_array().and_then(|l| l.iter().find(|m| m["text"] == text)) {
            return m.clone();
        }
        assert!(Instant::now() < deadline, "{text:?} never stored: {list:#}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn texts(list: &Value) -> Vec<String> {
    list["messages"].as_array().expect("messages").iter().map(|m| m["text"].as_str().unwrap().to_string()).collect()
}

type OptOut = (String, String, String, Option<String>, Option<String>, Option<i64>);

/// The opt-out registry as the SQLite file holds it.
fn optouts(dir: &Path) -> Vec<OptOut> {
    let c = rusqlite::Connection::open(dir.join("smsgw.db")).expect("open the store file");
    c.prepare("SELECT number, scope, source, route, api_key, inbound_id FROM optouts ORDER BY scope")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

fn optout(number: &str, route: &str, key: &str, inbound: &Value) -> OptOut {
    let id = inbound["id"].as_i64().expect("inbound id");
    (number.into(), "promotional".into(), "keyword".into(), Some(route.into()), Some(key.into()), Some(id))
}

async fn until(what: &str, secs: u64, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !ok() {
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn carrier(port: u16) -> String {
    format!(
        "[[routes]]\nname = \"carrier\"\nkind = \"smpp\"\n[routes.smpp]\nhost = \"127.0.0.1\"\nport = {port}\n\
         system_id = \"smsgw\"\npassword = \"secret\"\nreconnect_min_ms = 50\ndefault_source = \"SHOP\"\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_and_keywords_through_the_carrier() {
    let cfg = SmscConfig { credentials: vec![("smsgw".into(), "secret".into())], ..Default::default() };
    let smsc = Smsc::start(cfg, tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap()).await;
    let port = smsc.local_addr().port();
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &keys(""), &carrier(port));
    let d = Daemon::start(dir.path());
    until("bound", 10, || smsc.events().iter().any(|e| e.starts_with("bind_transceiver from smsgw: ok"))).await;

    // The other key wrote to the number first; this key asked last.
    let parcel = send(&d, OTHER_KEY, "+79161234567", "Your parcel is on its way", "parcel-1").await;
    wait_sent(&d, OTHER_KEY, parcel).await;
    let asked = send(&d, KEY, "+79161234567", "Столик на двоих в 20:00? Ответьте ДА или НЕТ", "table-8pm").await;
    wait_sent(&d, KEY, asked).await;

    smsc.inject_inbound("+79161234567", "7726", "Да!").await.unwrap();
    let yes = inbound(&d, "Да!").await;
    assert_eq!(yes["in_reply_to"], json!({"message_id": asked, "key": "test", "reference": "table-8pm"}), "{yes:#}");
    assert_eq!((&yes["intent"], &yes["keyword"]), (&json!("yes"), &Value::Null));
    // The key that asked sees the answer; the other key, though it wrote to
    // the number before, does not.
    let path = format!("/v1/inbound/{}", yes["id"]);
    assert_eq!(call(&d, "GET", &path, KEY, None).await.0, 200);
    assert_eq!(call(&d, "GET", &path, OTHER_KEY, None).await.0, 404);
    assert_eq!(texts(&call(&d, "GET", "/v1/inbound", KEY, None).await.1), ["Да!"]);
    assert!(texts(&call(&d, "GET", "/v1/inbound", OTHER_KEY, None).await.1).is_empty());

    // STOP by deliver_sm: an opt-out from promotions, the key that asked
    // named; a promotion already queued for the number is never sent.
    let promo = queue_promotion(&d, "+79161234567", "Скидка 30% только сегодня").await;
    smsc.inject_inbound("+79161234567", "7726", "STOP").await.unwrap();
    let stop = inbound(&d, "STOP").await;
    assert_eq!(stop["keyword"], "optout");
    assert_eq!(optouts(dir.path()), [optout("+79161234567", "carrier", "test", &stop)]);
    wait_suppressed(&d, promo).await;
    assert!(!smsc.submitted().iter().any(|s| s.text().starts_with("Скидка 30%")), "the promotion went out");

    // ПОМОЩЬ: the help text goes back to the sender through the carrier,
    // from the short code it was sent to rather than the route's sender.
    smsc.inject_inbound("+79161234567", "7726", "ПОМОЩЬ").await.unwrap();
    assert_eq!(inbound(&d, "ПОМОЩЬ").await["keyword"], "help");
    until("the help text submitted to the sender", 20, || {
        smsc.submitted().iter().any(|s| s.dest.trim_start_matches('+') == "79161234567" && s.text() == HELP_TEXT)
    })
    .await;
    let sources = |text: &str| -> Vec<String> {
        smsc.submitted().iter().filter(|s| s.text() == text).map(|s| s.source.clone()).collect()
    };
    assert_eq!(sources(HELP_TEXT), ["7726"]);
    assert_eq!(sources("Столик на двоих в 20:00? Ответьте ДА или НЕТ"), ["SHOP"]);
    // The message view says where the answer left from, as the inbound
    // message's `to` shows it (this SMSC marks it international); a key's
    // own message has no such address.
    assert_eq!(answer_addresses(&d, "+79161234567").await, [(HELP_TEXT.to_string(), json!("+7726"))]);
    assert!(call(&d, "GET", &format!("/v1/messages/{asked}"), KEY, None).await.1.get("via").is_none());
    // smsgw's own message, not the asking key's: the key's list holds its
    // question and its promotion only.
    let (_, own) = call(&d, "GET", "/v1/messages", KEY, None).await;
    assert_eq!(own["messages"].as_array().map(Vec::len), Some(2), "{own:#}");

    // START takes the opt-out back.
    smsc.inject_inbound("+79161234567", "7726", "Start").await.unwrap();
    assert_eq!(inbound(&d, "Start").await["keyword"], "optin");
    until("the opt-out removed", 10, || optouts(dir.path()).is_empty()).await;

    // Past the window (72 hours by default) an answer is linked to nothing:
    // the messages to the number are made three days older in the file.
    let c = rusqlite::Connection::open(dir.path().join("smsgw.db")).unwrap();
    c.busy_timeout(Duration::from_secs(5)).unwrap();
    c.execute("UPDATE messages SET created_at = created_at - 73 * 3600000 WHERE recipient = '+79161234567'", [])
        .unwrap();
    drop(c);
    smsc.inject_inbound("+79161234567", "7726", "Нет").await.unwrap();
    let late = inbound(&d, "Нет").await;
    assert_eq!((&late["in_reply_to"], &late["intent"]), (&Value::Null, &json!("no")), "{late:#}");

    // A reload brings new words.
    smsc.inject_inbound("+79161234567", "7726", "SOS").await.unwrap();
    assert_eq!(inbound(&d, "SOS").await["keyword"], Value::Null);
    // The new file also has a new key, which works once the file is applied.
    let late = "late-key-0123456789abcdef";
    let more = format!("[replies]\nhelp = [\"SOS\", \"HELP\"]\n[[api_keys]]\nname = \"late\"\nkey = \"{late}\"\n");
    write_config(dir.path(), &keys(&more), &carrier(port));
    d.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    while call(&d, "GET", "/v1/inbound", late, None).await.0 != 200 {
        assert!(Instant::now() < deadline, "the new config was never applied");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    smsc.inject_inbound("+79161234567", "7726", "sos!").await.unwrap();
    assert_eq!(inbound(&d, "sos!").await["keyword"], "help");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_modem_reads_look_alike_stop_and_answers_help_through_its_route() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = ModemConfig { own_number: Some("+79160001122".into()), send_delay_ms: 30, ..ModemConfig::default() };
    let m = VirtualModem::start(cfg, &dir.path().join("dev").join("a-if02")).await.expect("virtual modem starts");
    m.set_auto_reports(Some(Duration::from_millis(100)));
    let route = format!(
        "[[routes]]\nname = \"gsm\"\nkind = \"modem\"\n[routes.modem]\nports = [\"{}/dev/*\"]\n\
         health_interval_secs = 1\nregistration_timeout_secs = 10\n",
        dir.path().display()
    );
    write_config(dir.path(), &keys(""), &route);
    let d = Daemon::start(dir.path());

    let promo = send(&d, KEY, "+79161112233", "Скидка 20% до пятницы", "promo-7").await;
    wait_sent(&d, KEY, promo).await;
    // A promotion waits for its time; "CTOП" (a Latin C, T and O) stops it.
    let queued = queue_promotion(&d, "+79161112233", "Последний день скидок").await;
    m.deliver("+79161112233", "CTOП");
    let stop = inbound(&d, "CTOП").await;
    assert_eq!(stop["keyword"], "optout", "{stop:#}");
    assert_eq!(stop["in_reply_to"]["message_id"], promo);
    assert_eq!(optouts(dir.path()), [optout("+79161112233", "gsm", "test", &stop)]);
    wait_suppressed(&d, queued).await;
    assert!(!m.sent().iter().any(|s| s.text.starts_with("Последний день")), "the promotion went out");

    m.deliver("+79161112233", "ПОМОЩЬ");
    until("the help text sent to the sender through the modem", 30, || {
        m.sent().iter().any(|s| s.to == "+79161112233" && s.text == HELP_TEXT)
    })
    .await;
}

#[test]
fn bad_replies_values_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let replies = "[replies]\noptout = [\"STOP\", \"!!\"]\noptin = [\"stop\"]\nhelp_text = \" \"\n\
                   optout_reply = \"\"\nwindow_hours = 0\n\
                   [[api_keys]]\nname = \"smsgw\"\nkey = \"smsgw-key-0123456789abcdef\"\n";
    write_config(dir.path(), replies, &sim_route(dir.path(), "sim", "", ""));
    let out = std::process::Command::new(bin())
        .args(["config", "check"])
        .arg(dir.path().join("smsgw.toml"))
        .output()
        .expect("config check runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    for key in [
        "replies.optout[1]",
        "replies.optin[0]: \"stop\" is already in replies.optout[0]",
        "replies.help_text: must not be empty",
        "replies.optout_reply: must not be empty",
        "replies.window_hours",
        "api_keys[0].name: \"smsgw\" is reserved",
    ] {
        assert!(err.contains(key), "{key} not named in:\n{err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_leaves_from_the_sim_its_question_came_to() {
    let dir = tempfile::tempdir().unwrap();
    let sim = |number: &str, imsi: &str| ModemConfig {
        own_number: Some(number.into()),
        imsi: imsi.into(),
        send_delay_ms: 30,
        ..ModemConfig::default()
    };
    let a = VirtualModem::start(sim("+79160001111", "250019900000001"), &dir.path().join("dev").join("a-if02"))
        .await
        .expect("virtual modem a starts");
    let b = VirtualModem::start(sim("+79160002222", "250019900000002"), &dir.path().join("dev").join("b-if02"))
        .await
        .expect("virtual modem b starts");
    let route = format!(
        "[[routes]]\nname = \"gsm\"\nkind = \"modem\"\n[routes.modem]\nports = [\"{}/dev/*\"]\n\
         health_interval_secs = 1\nregistration_timeout_secs = 10\nper_minute = 3\n",
        dir.path().display()
    );
    write_config(dir.path(), &keys(""), &route);
    let d = Daemon::start(dir.path());

    // One notice makes one SIM the busier; left to itself the pool would
    // send the next message through the other.
    let notice = send(&d, KEY, "+79161112233", "Заказ 1042 передан в доставку", "order-1042").await;
    wait_sent(&d, KEY, notice).await;
    let (busy, idle) = if a.sent().is_empty() { (&b, &a) } else { (&a, &b) };
    busy.deliver("+79165550001", "ПОМОЩЬ");
    until("the help text sent back through the SIM that was asked", 30, || {
        busy.sent().iter().any(|s| s.to == "+79165550001" && s.text == HELP_TEXT)
    })
    .await;
    busy.deliver("+79165550005", "help");
    until("the second help text sent back through the SIM that was asked", 30, || {
        busy.sent().iter().any(|s| s.to == "+79165550005" && s.text == HELP_TEXT)
    })
    .await;
    // That SIM is now at its cap of three a minute: the next answer waits
    // for it a while, then leaves through the other.
    let asked = Instant::now();
    busy.deliver("+79165550003", "help");
    tokio::time::sleep(Duration::from_secs(2)).await;
    // Meanwhile one more answer for that SIM does not wait too (holding
    // another of the route's slots): it goes through the other at once.
    busy.deliver("+79165550004", "help");
    until("the answer behind the waiting one sent through the other SIM", 15, || {
        idle.sent().iter().any(|s| s.to == "+79165550004" && s.text == HELP_TEXT)
    })
    .await;
    assert!(!idle.sent().iter().any(|s| s.to == "+79165550003"), "the first answer did not wait for its SIM");
    until("the help text sent through the other SIM once the first stayed capped", 60, || {
        idle.sent().iter().any(|s| s.to == "+79165550003" && s.text == HELP_TEXT)
    })
    .await;
    assert!(asked.elapsed() >= Duration::from_secs(15), "the capped SIM was not waited for");
    // And the other SIM answers what came to it.
    idle.deliver("+79165550002", "help");
    until("the help text sent back through the other SIM", 30, || {
        idle.sent().iter().any(|s| s.to == "+79165550002" && s.text == HELP_TEXT)
    })
    .await;
    for (m, other) in [
        (busy, "+79165550002"),
        (busy, "+79165550003"),
        (busy, "+79165550004"),
        (idle, "+79165550001"),
        (idle, "+79165550005"),
    ] {
        assert!(!m.sent().iter().any(|s| s.to == other), "an answer left from the wrong SIM");
    }
    // Each answer's view names the SIM its question came to.
    let busy_number = if std::ptr::eq(busy, &a) { "+79160001111" } else { "+79160002222" };
    assert_eq!(answer_addresses(&d, "+79165550001").await, [(HELP_TEXT.to_string(), json!(busy_number))]);
    assert_eq!(answer_addresses(&d, "+79165550003").await, [(HELP_TEXT.to_string(), json!(busy_number))]);
    // One that went elsewhere at once still names the SIM it was meant for
    // (the number its question came to).
    assert_eq!(answer_addresses(&d, "+79165550004").await, [(HELP_TEXT.to_string(), json!(busy_number))]);
}

/// smsgw's own answers to `number` as the API shows them (the list carries
/// the same message view): each one's text and `via` (the address it leaves
/// from), read with the admin key.
async fn answer_addresses(d: &Daemon, number: &str) -> Vec<(String, Value)> {
    let (_, list) = call(d, "GET", &format!("/v1/messages?to={}", number.replace('+', "%2B")), ADMIN_KEY, None).await;
    list["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["api_key"] == "smsgw")
        .map(|m| (m["text"].as_str().unwrap_or_default().to_string(), m["via"].clone()))
        .collect()
}
