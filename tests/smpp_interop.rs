//! The SMPP route against an independent implementation: a carrier SMSC
//! written with the node `smpp` package (tests/interop/smsc.js), driven by
//! the real smsgw binary over real TCP.

mod common;
use common::*;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

struct NodeSmsc {
    child: Child,
    stdin: ChildStdin,
    port: u16,
    log: Arc<Mutex<Vec<Value>>>,
}

impl NodeSmsc {
    fn start(opts: Value) -> NodeSmsc {
        let dir = interop_dir();
        let mut child = Command::new("node")
            .arg("smsc.js")
            .arg(opts.to_string())
            .current_dir(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("node");
        let stdin = child.stdin.take().unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
        let port = first["port"].as_u64().unwrap() as u16;
        let log = Arc::new(Mutex::new(Vec::new()));
        let l = log.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str(&line) {
                    l.lock().unwrap().push(v);
                }
            }
        });
        NodeSmsc { child, stdin, port, log }
    }

    fn events(&self, kind: &str) -> Vec<Value> {
        self.log.lock().unwrap().iter().filter(|e| e["event"] == kind).cloned().collect()
    }

    async fn wait_event(&self, kind: &str, n: usize, secs: u64) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let ev = self.events(kind);
            if ev.len() >= n {
                return ev;
            }
            assert!(Instant::now() < deadline, "only {} {kind} events: {:?}", ev.len(), self.log.lock().unwrap());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn command(&mut self, cmd: Value) {
        writeln!(self.stdin, "{cmd}").unwrap();
        self.stdin.flush().unwrap();
    }
}

impl Drop for NodeSmsc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn smpp_route(port: u16, extra: &str) -> String {
    format!(
        "[[routes]]\nname = \"carrier\"\nkind = \"smpp\"\nconcurrency = 64\n[routes.smpp]\nhost = \"127.0.0.1\"\nport = {port}\n\
         system_id = \"smsgw\"\npassword = \"secret\"\nwindow = 10\nenquire_link_secs = 5\nresponse_timeout_secs = 5\n\
         reconnect_min_ms = 100\nreconnect_max_ms = 1000\ndefault_source = \"MyShop\"\n{extra}\n"
    )
}

async fn wait_bound(d: &Daemon) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (_, r) = d.get("/v1/routes").await;
        if r["routes"][0]["state"] == "up" {
            return;
        }
        assert!(Instant::now() < deadline, "never bound: {r:#}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn gsm_cyrillic_and_long_messages_are_delivered_and_receipts_matched() {
    let smsc = NodeSmsc::start(json!({"password": "secret"}));
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), "", &smpp_route(smsc.port, ""));
    let d = Daemon::start(dir.path());
    wait_bound(&d).await;
    let gsm = d.send(msg("+79161234567", "Your code is 4821 {ok}")).await;
    let cyr = d.send(msg("+79161234568", "Ваш заказ отправлен")).await;
    let long_text: String = (0..3).map(|i| format!("part{i} ").repeat(25)).collect::<String>()[..400].to_string();
    let long = d.send(json!({"to": "+79161234569", "text": long_text, "from": "+79990001122"})).await;
    for id in [gsm, cyr, long] {
        let m = d.wait_status(id, "delivered", 20).await;
        assert!(m["parts"].as_array().unwrap().iter().all(|p| p["status"] == "delivered"), "{m:#}");
    }
    let bind = &smsc.events("bind")[0];
    assert_eq!(bind["system_id"], "smsgw");
    assert_eq!(bind["interface_version"], 0x34);
    let submits = smsc.events("submit");
    assert_eq!(submits.len(), 5);
    // Messages go out concurrently: find each by its destination.
    let to = |n: &str| submits.iter().filter(|s| s["dest"] == n).cloned().collect::<Vec<_>>();
    let g = &to("79161234567")[0];
    assert_eq!(g["text"], "Your code is 4821 {ok}");
    assert_eq!(g["data_coding"], 0);
    assert_eq!(g["esm_class"], 0);
    assert_eq!(g["dest_ton"], 1);
    assert_eq!((g["src"].as_str(), g["src_ton"].as_u64()), (Some("MyShop"), Some(5)));
    let c = &to("79161234568")[0];
    assert_eq!(c["data_coding"], 8);
    assert_eq!(c["text"], "Ваш заказ отправлен");
    let mut parts = to("79161234569");
    parts.sort_by_key(|p| p["udh"][0].as_str().unwrap().to_string());
    let mut joined = String::new();
    for (i, p) in parts.iter().enumerate() {
        assert_eq!(p["esm_class"].as_u64().unwrap() & 0x40, 0x40);
        let udh = p["udh"][0].as_str().unwrap();
        assert_eq!(&udh[..4], "0003");
        assert_eq!(&udh[6..], format!("03{:02x}", i + 1));
        joined.push_str(p["text"].as_str().unwrap());
        assert_eq!((p["src"].as_str(), p["src_ton"].as_u64()), (Some("79990001122"), Some(1)));
    }
    assert_eq!(joined, long_text);
    let m = d.message(long).await;
    let remote: Vec<&str> = m["parts"].as_array().unwrap().iter().map(|p| p["remote_id"].as_str().unwrap()).collect();
    let ids: Vec<String> = parts.iter().map(|p| p["id"].as_str().unwrap().to_string()).collect();
    assert_eq!(remote, ids);
    smsc.wait_event("receipt_acked", 5, 10).await.iter().for_each(|r| assert_eq!(r["status"], 0));
    // A stop unbinds.
    assert_eq!(d.terminate(), Some(0));
    smsc.wait_event("unbind", 1, 5).await;
}

#[tokio::test]
async fn receipts_before_responses_with_hex_ids_and_tlvs() {
    let smsc = NodeSmsc::start(
        json!({"password": "secret", "idFormat": "hex", "receiptFirst": true, "tlvs": true, "undeliveredEvery": 4}),
    );
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), "", &smpp_route(smsc.port, ""));
    let d = Daemon::start(dir.path());
    wait_bound(&d).await;
    let msgs: Vec<_> = (0..20).map(|i| msg(&format!("+7916123{i:04}"), "receipt race")).collect();
    let (s, v) = d.post("/v1/messages", &json!({"messages": msgs})).await;
    assert_eq!(s, 202);
    let ids: Vec<i64> = v["messages"].as_array().unwrap().iter().map(|m| m["id"].as_i64().unwrap()).collect();
    d.wait_counts(20, "all final", |b| {
        b["delivered"].as_u64().unwrap_or(0) + b["undelivered"].as_u64().unwrap_or(0) == 20
    })
    .await;
    let undelivered = d.get("/v1/messages?status=undelivered").await.1["messages"].as_array().unwrap().len();
    assert_eq!(undelivered, 5);
    for id in ids {
        let m = d.message(id).await;
        assert!(m["status"] == "delivered" || m["status"] == "undelivered");
        if m["status"] == "undelivered" {
            assert!(m["error"]["text"].as_str().unwrap().contains("UNDELIV"), "{m:#}");
        }
    }
}

#[tokio::test]
async fn throttling_slows_down_and_fails_nothing() {
    let smsc = NodeSmsc::start(json!({"password": "secret", "throttlePerSec": 25}));
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), "", &smpp_route(smsc.port, ""));
    let d = Daemon::start(dir.path());
    wait_bound(&d).await;
    let msgs: Vec<_> = (0..100).map(|i| msg(&format!("+7916123{i:04}"), "throttle")).collect();
    let (s, _) = d.post("/v1/messages", &json!({"messages": msgs})).await;
    assert_eq!(s, 202);
    let q = d.wait_counts(60, "100 delivered", |b| b["delivered"] == 100).await;
    assert!(q["by_status"]["failed"].is_null(), "{q}");
    assert!(!smsc.events("throttled").is_empty(), "the carrier never throttled: test did not test");
    let (_, r) = d.get("/v1/routes").await;
    assert_eq!(r["routes"][0]["failed"], 0);
}

#[tokio::test]
async fn connection_dropped_every_30_submits_loses_nothing() {
    let smsc = NodeSmsc::start(json!({"password": "secret", "dropEvery": 30}));
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), "", &smpp_route(smsc.port, ""));
    let d = Daemon::start(dir.path());
    wait_bound(&d).await;
    let msgs: Vec<_> = (0..100).map(|i| msg(&format!("+7916123{i:04}"), "drop")).collect();
    let (s, _) = d.post("/v1/messages", &json!({"messages": msgs})).await;
    assert_eq!(s, 202);
    // Receipts for submits answered just before a drop are lost with the
    // connection (the SMSC would redeliver them): every message must at
    // least have reached the SMSC and be submitted or delivered.
    d.wait_counts(60, "all sent", |b| {
        b["delivered"].as_u64().unwrap_or(0) + b["submitted"].as_u64().unwrap_or(0) == 100
            && b["queued"].is_null()
            && b["sending"].is_null()
    })
    .await;
    assert!(smsc.events("drop").len() >= 3);
    smsc.wait_event("bind", 3, 10).await;
    let mut dests: Vec<String> =
        smsc.events("submit").iter().map(|s| s["dest"].as_str().unwrap().to_string()).collect();
    dests.sort();
    dests.dedup();
    assert_eq!(dests.len(), 100, "every accepted message reached the SMSC");
}

#[tokio::test]
async fn inbound_single_and_concatenated() {
    let mut smsc = NodeSmsc::start(json!({"password": "secret"}));
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), "", &smpp_route(smsc.port, ""));
    let d = Daemon::start(dir.path());
    wait_bound(&d).await;
    smsc.command(json!({"inbound": {"from": "79161234567", "to": "7726", "text": "STOP"}}));
    smsc.command(json!({"inbound_parts": {"from": "79161234568", "to": "7726", "ref": 42, "parts": ["Привет, ", "это ответ ", "из трёх частей"]}}));
    let acks = smsc.wait_event("inbound_acked", 4, 10).await;
    assert!(acks.iter().all(|a| a["status"] == 0), "{acks:?}");
    let (_, list) = d.get("/v1/inbound").await;
    let msgs = list["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 2, "{list:#}");
    assert_eq!(msgs[0]["text"], "Привет, это ответ из трёх частей");
    assert_eq!(msgs[0]["from"], "+79161234568");
    assert_eq!((msgs[0]["parts"].as_u64(), msgs[0]["complete"].as_bool()), (Some(3), Some(true)));
    assert_eq!(msgs[1]["text"], "STOP");
    assert_eq!(msgs[1]["to"], "7726");
    assert_eq!(msgs[1]["route"], "carrier");
}

#[tokio::test]
async fn sar_and_payload_modes() {
    for (mode, expect_parts) in [("sar", 2), ("payload", 1)] {
        let smsc = NodeSmsc::start(json!({"password": "secret"}));
        let dir = tempfile::tempdir().unwrap();
        write_config(dir.path(), "", &smpp_route(smsc.port, &format!("long_messages = \"{mode}\"")));
        let d = Daemon::start(dir.path());
        wait_bound(&d).await;
        let text = "Длинное сообщение ".repeat(6);
        let id = d.send(msg("+79161234567", &text)).await;
        d.wait_status(id, "delivered", 20).await;
        let submits = smsc.events("submit");
        assert_eq!(submits.len(), expect_parts, "{mode}");
        if mode == "sar" {
            let joined: String = submits.iter().map(|s| s["text"].as_str().unwrap()).collect();
            assert_eq!(joined, text);
            assert_eq!((&submits[1]["sar"][1], &submits[1]["sar"][2]), (&json!(2), &json!(2)));
        } else {
            assert!(submits[0]["payload"].as_str().unwrap().contains("Длинное"), "{:?}", submits[0]);
        }
    }
}

#[tokio::test]
async fn bad_credentials_are_reported_and_the_route_is_down() {
    let smsc = NodeSmsc::start(json!({"password": "right"}));
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), "", &smpp_route(smsc.port, ""));
    let d = Daemon::start(dir.path());
    smsc.wait_event("bind_refused", 1, 10).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, r) = d.get("/v1/routes").await;
    let route = &r["routes"][0];
    assert_eq!(route["state"], "down");
    let detail = route["members"][0]["detail"].as_str().unwrap();
    assert!(detail.contains("ESME_RINVPASWD") && detail.contains("password"), "{detail}");
    // Retried slowly, not hammered.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(smsc.events("bind_refused").len(), 1);
}

#[tokio::test]
async fn a_down_route_fails_over_to_the_next() {
    // Nothing listens on this port: the SMPP route never binds.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let routes = format!(
        "{}failover = true\n{}",
        smpp_route(closed, "").replace("concurrency = 64\n", "concurrency = 64\nprefixes = [\"+7\"]\n"),
        sim_route(dir.path(), "backup", "", "delivery_delay_ms = 0")
    );
    let routes = routes.replacen("failover = true\n", "", 1);
    let routes = routes.replace("kind = \"smpp\"\n", "kind = \"smpp\"\nfailover = true\n");
    write_config(dir.path(), "", &routes);
    let d = Daemon::start(dir.path());
    let id = d.send(msg("+79161234567", "via backup")).await;
    let m = d.wait_status(id, "delivered", 15).await;
    assert_eq!(m["route"], "backup");
    assert!(m["history"].as_array().unwrap().iter().any(|h| h["detail"].as_str().unwrap().contains("failed over")));
}
