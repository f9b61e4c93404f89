//! The SMPP server's accounts through the real binary, with PyPI `smpplib`
//! as the ESMEs: `/v1/smpp/accounts` and `/metrics` show a live bind, the
//! counters after submits and a refused bind, never a password; an account
//! outside policy (`policy = false`) gets a promotion through quiet hours
//! and to an opted-out number while a policy account's waits or is
//! suppressed; inbound messages from the SMSC simulator reach the account
//! whose keyword or number they match, and one arriving while the account
//! is unbound is delivered on its next bind. A reload that changes
//! `[smpp_server]` says it applies at a restart.

mod common;
use common::*;
use serde_json::{Value, json};
use smsgw::simulate::smsc::{Smsc, SmscConfig};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn script() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/smpp_accounts_client.py")
}

/// A receiver bind held by smpplib, reporting each `deliver_sm` it acknowledges.
struct Listener {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Listener {
    async fn bind(port: u16, system_id: &str, password: &str) -> Listener {
        let mut child = Command::new(venv_python())
            .arg(script())
            .args(["listen", &port.to_string(), system_id, password])
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("run smpplib");
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut l = Listener { child, lines };
        let bound = l.next(30).await;
        assert_eq!(bound, json!({"event": "bind", "status": 0}), "{system_id} binds as a receiver");
        l
    }

    async fn next(&mut self, secs: u64) -> Value {
        let line = tokio::time::timeout(Duration::from_secs(secs), self.lines.next_line())
            .await
            .expect("a line from smpplib in time")
            .expect("read")
            .expect("smpplib still running");
        serde_json::from_str(&line).unwrap()
    }

    /// The next deliver_sm that is not a delivery receipt.
    async fn inbound(&mut self) -> Value {
        loop {
            let v = self.next(30).await;
            if v["event"] == "deliver_sm" && v["esm_class"] == 0 {
                return v;
            }
        }
    }

    async fn close(mut self) {
        let _ = self.child.kill().await;
    }
}

/// One submit through a transmitter bind: the bind's status, then the submit's.
async fn submit(port: u16, system_id: &str, password: &str, to: &str, text: &str, priority_flag: u8) -> Vec<Value> {
    let out = Command::new(venv_python())
        .arg(script())
        .args(["submit", &port.to_string(), system_id, password, to, text, &priority_flag.to_string()])
        .output()
        .await
        .expect("run smpplib");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "smpplib failed: {stderr}");
    String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

async fn accounts(d: &Daemon) -> Vec<Value> {
    let (s, v) = d.get("/v1/smpp/accounts").await;
    assert_eq!(s, 200, "{v}");
    v["accounts"].as_array().unwrap().clone()
}

async fn account(d: &Daemon, system_id: &str) -> Value {
    accounts(d).await.into_iter().find(|a| a["system_id"] == system_id).expect("the account is listed")
}

async fn until(what: &str, secs: u64, mut ok: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !ok().await {
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn accounts_show_binds_counters_and_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = format!(
        r#"
[smpp_server]
listen = "127.0.0.1:{port}"
[[smpp_server.accounts]]
system_id = "crm"
password = "secret1"
max_binds = 2
throughput = 50
default_class = "promotional"
senders = ["SHOP"]
"#
    );
    write_config(dir.path(), &cfg, &sim_route(dir.path(), "sim", "", ""));
    let d = Daemon::start(dir.path());
    let mut rx = Listener::bind(port, "crm", "secret1").await;

    let a = account(&d, "crm").await;
    assert_eq!(a["binds"].as_array().unwrap().len(), 1, "{a:#}");
    assert_eq!(a["binds"][0]["kind"], "receiver");
    assert!(a["binds"][0]["peer"].as_str().unwrap().starts_with("127.0.0.1:"), "{a:#}");
    assert!(a["binds"][0]["since"].as_str().unwrap().ends_with('Z'), "{a:#}");
    assert_eq!((a["max_binds"].as_u64(), a["throughput"].as_f64()), (Some(2), Some(50.0)));
    assert_eq!(
        (&a["default_class"], &a["max_class"], &a["policy"]),
        (&json!("promotional"), &json!("otp"), &json!(true))
    );
    assert_eq!(a["senders"], json!(["SHOP"]));
    assert!(!a.to_string().contains("secret1"), "never the password: {a}");

    let ok = submit(port, "crm", "secret1", "+79161234567", "Sale today", 0).await;
    assert_eq!(ok[1]["status"], 0, "{ok:?}");
    let id: i64 = ok[1]["message_id"].as_str().unwrap().parse().unwrap();
    let m = d.wait_status(id, "delivered", 20).await;
    assert_eq!(m["priority"], "promotional", "priority_flag 0: the account's default_class");
    let urgent = submit(port, "crm", "secret1", "+79161234567", "Your code 1234", 3).await;
    let id: i64 = urgent[1]["message_id"].as_str().unwrap().parse().unwrap();
    assert_eq!(d.message(id).await["priority"], "otp", "priority_flag 3: otp");
    let wrong = submit(port, "crm", "nope", "+79161234567", "x", 0).await;
    assert_eq!(wrong[0]["status"], 0x0E, "ESME_RINVPASWD");

    // Both receipts reach the receiver and are counted once acknowledged.
    let mut receipts = 0;
    while receipts < 2 {
        let v = rx.next(30).await;
        if v["esm_class"] == 4 {
            receipts += 1;
        }
    }
    until("the receipts counted", 10, async || account(&d, "crm").await["receipts_delivered"] == 2).await;
    let a = account(&d, "crm").await;
    assert_eq!(a["accepted"], 2, "{a:#}");
    assert_eq!(a["binds_refused"]["ESME_RINVPASWD"], 1, "{a:#}");
    assert!(a["submits_per_second"].as_f64().unwrap() > 0.0, "{a:#}");
    assert_eq!((&a["receipts_owed"], &a["inbound_owed"], &a["dead"]), (&json!(0), &json!(0), &json!(0)));

    let resp = d.http.get(format!("{}/metrics", d.url)).bearer_auth(KEY).send().await.unwrap();
    let text = resp.text().await.unwrap();
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("valid exposition");
    let crm = ("account", "crm");
    assert_eq!(sample(&scrape, "smsgw_smpp_server_binds", &[crm, ("kind", "receiver")]), Some(1.0), "{text}");
    assert_eq!(sample(&scrape, "smsgw_smpp_server_binds", &[crm, ("kind", "transmitter")]), Some(0.0));
    assert_eq!(sample(&scrape, "smsgw_smpp_server_submits_total", &[crm, ("result", "accepted")]), Some(2.0));
    assert_eq!(
        sample(&scrape, "smsgw_smpp_server_binds_refused_total", &[crm, ("status", "ESME_RINVPASWD")]),
        Some(1.0)
    );
    assert_eq!(sample(&scrape, "smsgw_smpp_server_delivered_total", &[crm, ("kind", "receipt")]), Some(2.0));
    assert_eq!(sample(&scrape, "smsgw_smpp_server_receipts_owed", &[crm]), Some(0.0));
    assert_eq!(sample(&scrape, "smsgw_smpp_server_dead", &[crm]), Some(0.0));

    rx.close().await;
    until("the bind gone", 10, async || account(&d, "crm").await["binds"].as_array().unwrap().is_empty()).await;

    // A changed [smpp_server] on reload is named as applying at a restart.
    let changed = cfg.replace("throughput = 50", "throughput = 10");
    write_config(dir.path(), &changed, &sim_route(dir.path(), "sim", "", ""));
    d.signal("HUP");
    until("the reload warned", 10, async || d.log_text().contains("[smpp_server] changed")).await;
    assert_eq!(account(&d, "crm").await["throughput"], 50.0, "the running accounts stay until a restart");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_account_outside_policy_is_not_held_or_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    // Promotions are quiet all day long; the recipients are in Moscow.
    let cfg = format!(
        r#"
[policy.quiet_hours]
promotional = "00:00-23:59:59"
[smpp_server]
listen = "127.0.0.1:{port}"
[[smpp_server.accounts]]
system_id = "partner"
password = "pw"
default_class = "promotional"
policy = false
[[smpp_server.accounts]]
system_id = "shop"
password = "pw"
default_class = "promotional"
"#
    );
    write_config(dir.path(), &cfg, &sim_route(dir.path(), "sim", "", ""));
    let d = Daemon::start(dir.path());
    let (s, v) = d.post("/v1/optouts", &json!({"number": "+79160000002"})).await;
    assert_eq!(s, 201, "{v}");

    let id = |r: Vec<Value>| -> i64 {
        assert_eq!(r[1]["status"], 0, "{r:?}");
        r[1]["message_id"].as_str().unwrap().parse().unwrap()
    };
    let held = id(submit(port, "shop", "pw", "+79161234567", "Sale", 0).await);
    let stopped = id(submit(port, "shop", "pw", "+79160000002", "Sale", 0).await);
    let through = id(submit(port, "partner", "pw", "+79161234567", "Partner sale", 0).await);
    let to_opted_out = id(submit(port, "partner", "pw", "+79160000002", "Partner sale", 0).await);

    d.wait_status(through, "delivered", 20).await;
    d.wait_status(to_opted_out, "delivered", 20).await;
    let m = d.message(stopped).await;
    assert_eq!((&m["status"], &m["error"]["code"]), (&json!("suppressed"), &json!("opted_out")), "{m:#}");
    // The account asked for receipts: it hears that policy stopped the message.
    let mut shop = Listener::bind(port, "shop", "pw").await;
    let receipt = loop {
        let v = shop.next(30).await;
        if v["event"] == "deliver_sm" && v["esm_class"] == 4 {
            break v;
        }
    };
    assert_eq!(receipt["receipted_message_id"], json!(stopped.to_string()), "{receipt}");
    assert!(receipt["text"].as_str().unwrap().contains("stat:REJECTD"), "{receipt}");
    shop.close().await;
    // The first part of a long message makes the message, which policy
    // stops at once: counted like a whole one.
    let part = id(submit(port, "shop", "pw", "+79160000002", &"Sale! ".repeat(40), 0).await);
    assert_eq!(d.message(part).await["status"], "suppressed");
    let text = d.metrics().await;
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("exposition");
    assert_eq!(sample(&scrape, "smsgw_messages_suppressed_total", &[("reason", "opted_out")]), Some(2.0));
    // The policy account's promotion waits for the quiet hours to end.
    until("the promotion deferred", 10, async || {
        let (_, h) = d.get(&format!("/v1/messages/{held}")).await;
        h["status"] == "queued" && h.to_string().contains("quiet")
    })
    .await;
    assert_eq!(d.message(held).await["status"], "queued");
}

fn carrier(port: u16) -> String {
    format!(
        "[[routes]]\nname = \"carrier\"\nkind = \"smpp\"\n[routes.smpp]\nhost = \"127.0.0.1\"\nport = {port}\n\
         system_id = \"smsgw\"\npassword = \"secret\"\nreconnect_min_ms = 50\n"
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn inbound_reaches_the_account_by_keyword_or_number_and_waits_for_its_bind() {
    let cfg = SmscConfig { credentials: vec![("smsgw".into(), "secret".into())], ..Default::default() };
    let smsc = Smsc::start(cfg, tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap()).await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = format!(
        r#"
[smpp_server]
listen = "127.0.0.1:{port}"
[[smpp_server.accounts]]
system_id = "shop"
password = "pw"
inbound = {{ keywords = ["SHOP", "Магазин"] }}
[[smpp_server.accounts]]
system_id = "bank"
password = "pw"
inbound = {{ numbers = ["+79001112233"] }}
"#
    );
    write_config(dir.path(), &cfg, &carrier(smsc.local_addr().port()));
    let d = Daemon::start(dir.path());
    until("the carrier bound", 10, async || {
        smsc.events().iter().any(|e| e.starts_with("bind_transceiver from smsgw: ok"))
    })
    .await;
    let mut shop = Listener::bind(port, "shop", "pw").await;
    let mut bank = Listener::bind(port, "bank", "pw").await;

    smsc.inject_inbound("+79161234567", "7726", "shop: order 5").await.unwrap();
    let v = shop.inbound().await;
    assert_eq!(v["text"], "shop: order 5");
    assert_eq!((&v["source_addr"], &v["destination_addr"]), (&json!("79161234567"), &json!("7726")), "{v}");
    assert_eq!(v["data_coding"], 0, "GSM-7 when it fits");

    // The bank's number wins over the shop's keyword.
    smsc.inject_inbound("+79161234567", "79001112233", "Магазин? Нет, банк").await.unwrap();
    let v = bank.inbound().await;
    assert_eq!(v["text"], "Магазин? Нет, банк");
    assert_eq!(v["data_coding"], 8, "UCS-2 for Cyrillic");

    smsc.inject_inbound("+79161234567", "7726", "МАГАЗИН заказ 6").await.unwrap();
    assert_eq!(shop.inbound().await["text"], "МАГАЗИН заказ 6", "a Cyrillic keyword in any case");

    // Unbound: the message waits in the store, then comes on the next bind.
    shop.close().await;
    until("the shop unbound", 10, async || account(&d, "shop").await["binds"].as_array().unwrap().is_empty()).await;
    smsc.inject_inbound("+79161234567", "7726", "SHOP while away").await.unwrap();
    until("the message owed", 10, async || account(&d, "shop").await["inbound_owed"] == 1).await;
    let mut shop = Listener::bind(port, "shop", "pw").await;
    assert_eq!(shop.inbound().await["text"], "SHOP while away");
    until("nothing owed", 10, async || account(&d, "shop").await["inbound_owed"] == 0).await;
    let a = account(&d, "shop").await;
    assert_eq!(a["inbound_delivered"], 3, "{a:#}");
    assert_eq!(account(&d, "bank").await["inbound_delivered"], 1);
    // An inbound message no account matches goes to none.
    smsc.inject_inbound("+79161234567", "7726", "shopping list").await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(account(&d, "shop").await["inbound_owed"], 0);
    shop.close().await;
    bank.close().await;
}
