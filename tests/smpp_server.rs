//! The SMPP server through the real binary, with independent clients: PyPI
//! `smpplib` binds, submits (GSM-7, UCS-2, data_sm), queries, cancels a
//! scheduled message, is refused for the right reasons, throttled, and a
//! garbage peer is dropped without harming the others; npm `smpp` binds as a
//! transceiver and submits GSM-7 and UCS-2 under the account's key. Long
//! messages in parts (UDH 8- and 16-bit, SAR; out of order, duplicated,
//! mixed codings, incomplete past the join timeout, across a kill -9) are
//! joined into one message, and `registered_delivery` decides the receipts.
//! npm `smpp` replaces queued messages (`replace_sm`): text, schedule,
//! refused for the right reasons.

mod common;
use common::*;
use serde_json::{Value, json};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn smpp_config(port: u16) -> String {
    format!(
        r#"
[smpp_server]
listen = "127.0.0.1:{port}"
enquire_link_secs = 30
receipt_retry_secs = 1
[[smpp_server.accounts]]
system_id = "crm"
password = "secret1"
max_binds = 2
message_id = "hex"
[[smpp_server.accounts]]
system_id = "lan"
password = "pw"
allow_ips = ["10.0.0.0/8"]
[[smpp_server.accounts]]
system_id = "txonly"
password = "pw"
bind_types = ["transmitter"]
[[smpp_server.accounts]]
system_id = "rcpt"
password = "pw"
[[smpp_server.accounts]]
system_id = "narrow"
password = "pw"
window = 1
[[smpp_server.accounts]]
system_id = "slow"
password = "pw"
throughput = 1
"#
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn smpplib_binds_submits_and_is_refused_for_the_right_reasons() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    write_config(dir.path(), &smpp_config(port), &sim_route(dir.path(), "sim", "", ""));
    let d = Daemon::start(dir.path());
    let py = venv_python();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/smpp_server_client.py");
    let out = tokio::process::Command::new(py).arg(&script).arg(port.to_string()).output().await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "client failed: {stderr}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {stderr}"));

    assert_eq!(v["bind_trx"], 0);
    assert_eq!(v["bind_tx"], 0);
    assert_eq!(v["bind_third"], 0x05, "ESME_RALYBND beyond max_binds");
    assert_eq!(v["wrong_password"], 0x0E, "ESME_RINVPASWD");
    assert_eq!(v["unknown_system_id"], 0x0F, "ESME_RINVSYSID");
    assert_eq!(v["disallowed_ip"], 0x0D, "ESME_RBINDFAIL for 127.0.0.1 outside 10.0.0.0/8");
    assert_eq!(v["disallowed_type"], 0x0D, "ESME_RBINDFAIL for a bind type not allowed");

    for (what, text) in [("gsm", "Hello from smpplib"), ("ucs2", "Привет из smpplib")] {
        let r = &v[what][0];
        assert_eq!(r["status"], 0, "{what}: {r}");
        let id = i64::from_str_radix(r["message_id"].as_str().unwrap(), 16).expect("hex message_id");
        let m = d.wait_status(id, "delivered", 20).await;
        assert_eq!(m["text"], text);
        assert_eq!(m["to"], "+79161234567");
        assert_eq!(m["from"], "SMSGW");
    }
    assert_eq!(v["ucs2"][0]["status"], 0);
    let id = i64::from_str_radix(v["data_sm"]["message_id"].as_str().unwrap(), 16).unwrap();
    assert_eq!(v["data_sm"]["status"], 0);
    assert_eq!(d.message(id).await["text"], "data sm payload");
    assert_eq!(v["too_long"], 0x01, "ESME_RINVMSGLEN beyond server.max_segments");

    let throttled = v["throttled"].as_array().unwrap();
    assert_eq!(throttled[0], 0, "the first submit within the rate passes");
    assert!(throttled.iter().any(|s| s == 0x58), "ESME_RTHROTTLED beyond throughput: {throttled:?}");

    let window = v["window"].as_array().unwrap();
    assert_eq!(window[0], 0, "the first submit within the window passes: {window:?}");
    assert!(window.iter().any(|s| s == 0x14), "ESME_RMSGQFUL beyond the window: {window:?}");
    assert_eq!(v["query_state"], 2, "query_sm: DELIVERED");
    assert_eq!(v["query_final_date"].as_str().unwrap().len(), 16, "an absolute final_date");
    let second = i64::from_str_radix(v["held"][1]["message_id"].as_str().unwrap(), 16).unwrap();
    assert_eq!(v["cancel"][1], 0x8000_0008u32, "cancel_sm_resp");
    assert_eq!(v["cancel"][2], 0, "a scheduled message is cancelled");
    assert_eq!(d.message(second).await["status"], "cancelled");
    assert_eq!(v["cancel_again"][2], 0x11, "ESME_RCANCELFAIL once it is final");
    assert_eq!(v["cancel_unknown"][2], 0x0C, "ESME_RINVMSGID for an id the account does not own");
    assert_eq!(v["cancel_all"][2], 0, "cancel_sm without a message_id: {}", v["cancel_all"]);
    for r in v["bulk"].as_array().unwrap() {
        let id = i64::from_str_radix(r["message_id"].as_str().unwrap(), 16).unwrap();
        let m = d.message(id).await;
        assert_eq!(m["status"], "cancelled", "{m:#}");
        let last = &m["history"].as_array().unwrap().last().unwrap()["detail"];
        assert_eq!(
            last,
            "cancelled through SMPP by account \"crm\" (cancel_sm of all queued from \"SMSGW\" to +79161230000)"
        );
    }
    let kept = i64::from_str_radix(v["bulk_kept"]["message_id"].as_str().unwrap(), 16).unwrap();
    assert_eq!(d.message(kept).await["status"], "queued", "another number's message stays");
    assert_eq!(v["cancel_all_again"][2], 0x11, "ESME_RCANCELFAIL when nothing is left to cancel");
    assert_eq!(v["cancel_all_no_dest"][2], 0x0B, "ESME_RINVDSTADR without a destination");
    assert_eq!(v["garbage_closed"], true, "a garbage peer is dropped");
    assert_eq!(v["after_garbage"][0]["status"], 0, "other binds are unharmed");
    let log = d.log_text();
    assert!(log.contains("SMPP bind refused") && log.contains("127.0.0.1"), "refusals logged with the peer: {log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn node_smpp_binds_and_submits_gsm7_and_ucs2() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    write_config(dir.path(), &smpp_config(port), &sim_route(dir.path(), "sim", "", ""));
    let d = Daemon::start(dir.path());
    // An admin key subscribes a LAN service to the account's messages
    // through the API; naming an account that does not exist is refused.
    let (hook, hooked) = hook_receiver().await;
    let follow = json!({"url": hook, "events": ["message.delivered"], "key": "smpp:crm"});
    let (status, sub) = d.post("/v1/webhooks", &follow).await;
    assert_eq!((status, sub["api_key"].as_str()), (201, Some("smpp:crm")), "{sub}");
    let (status, refused) =
        d.post("/v1/webhooks", &json!({"url": hook, "events": ["message.delivered"], "key": "smpp:nobody"})).await;
    assert_eq!((status, refused["errors"][0]["field"].as_str()), (422, Some("key")), "{refused}");
    let (lines, _) = node_lines("smpp_server_client.js", &[&port.to_string(), "crm", "secret1"]).await;
    assert_eq!(lines[0]["event"], "bind_resp");
    assert_eq!(lines[0]["status"], 0);
    let mut texts = Vec::new();
    for l in lines.iter().filter(|l| l["event"] == "submit_resp") {
        assert_eq!(l["status"], 0, "{l}");
        let id = i64::from_str_radix(l["message_id"].as_str().unwrap(), 16).unwrap();
        let m = d.wait_status(id, "delivered", 20).await;
        assert_eq!(m["api_key"], "smpp:crm");
        texts.push(m["text"].as_str().unwrap().to_string());
    }
    texts.sort();
    assert_eq!(texts, ["Hello from node-smpp {ok}", "Привет от node-smpp"]);
    assert_eq!(lines.last().unwrap()["event"], "unbind_resp");
    assert_eq!(lines.last().unwrap()["status"], 0);
    // Both deliveries reached the subscription.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let events = hooked.lock().unwrap().clone();
        let delivered = events.iter().filter(|e| e["type"] == "message.delivered").count();
        if delivered >= 2 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "webhooks so far: {events:?}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn receipts_wait_while_unbound_and_come_until_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    write_config(dir.path(), &smpp_config(port), &sim_route(dir.path(), "sim", "", ""));
    let d = Daemon::start(dir.path());
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/smpp_server_receipts.py");
    let out = tokio::process::Command::new(venv_python()).arg(&script).arg(port.to_string()).output().await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "client failed: {stderr}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {stderr}"));
    let ids: Vec<&str> = v["ids"].as_array().unwrap().iter().map(|i| i.as_str().unwrap()).collect();
    for id in &ids {
        d.wait_status(id.parse().unwrap(), "delivered", 10).await;
    }
    // The first receipt (whichever message the route finished first), not
    // answered, comes again on the next bind, before the other: in order,
    // each message's receipt once acknowledged.
    let got: Vec<&Value> = v["receipts"].as_array().unwrap().iter().collect();
    let first = v["unanswered"]["receipted_message_id"].as_str().expect("a receipt before the unbind");
    assert!(ids.contains(&first), "{first} is not one of {ids:?}");
    assert_eq!(got[0]["receipted_message_id"], first, "the unanswered receipt comes first");
    let mut acked: Vec<&str> = got.iter().map(|r| r["receipted_message_id"].as_str().unwrap()).collect();
    acked.sort();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(acked, want, "each message's receipt, once");
    for r in got {
        assert_eq!(r["esm_class"], 4);
        assert_eq!(r["message_state"], 2, "DELIVERED");
        assert_eq!(r["destination_addr"], "SMSGW");
        let text = r["text"].as_str().unwrap();
        assert!(text.contains("stat:DELIVRD") && text.contains("dlvrd:001"), "{text}");
        assert!(text.starts_with(&format!("id:{} ", r["receipted_message_id"].as_str().unwrap())), "{text}");
    }
}

fn parts_config(port: u16) -> String {
    format!(
        r#"
[smpp_server]
listen = "127.0.0.1:{port}"
receipt_retry_secs = 1
join_timeout_secs = 2
[[smpp_server.accounts]]
system_id = "parts"
password = "pw"
"#
    )
}

async fn multipart_script(port: u16, scenario: &str) -> Value {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/smpp_server_multipart.py");
    let out = tokio::process::Command::new(venv_python())
        .arg(&script)
        .arg(port.to_string())
        .arg(scenario)
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "client failed: {stderr}");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {stderr}"))
}

/// Every part of a set answered OK with one message id; that id, parsed.
fn one_id(parts: &Value) -> i64 {
    let parts = parts.as_array().unwrap();
    assert!(parts.iter().all(|p| p["status"] == 0), "{parts:?}");
    assert!(parts.iter().all(|p| p["message_id"] == parts[0]["message_id"]), "one message id: {parts:?}");
    parts[0]["message_id"].as_str().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn long_messages_in_parts_are_joined_and_registered_delivery_is_honoured() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    write_config(dir.path(), &parts_config(port), &sim_route(dir.path(), "sim", "", ""));
    let d = Daemon::start(dir.path());
    let v = multipart_script(port, "main").await;

    // Cyrillic UCS-2 in 3 UDH parts (a surrogate pair across two of them):
    // one message, the original text, re-split for the route.
    let id = one_id(&v["ucs2"]);
    let m = d.wait_status(id, "delivered", 20).await;
    assert_eq!(m["text"], v["cyrillic_text"]);
    assert_eq!(m["encoding"], "ucs2");
    assert_eq!(m["api_key"], "smpp:parts");
    assert!(m["segments"].as_u64().unwrap() >= 3, "{m}");

    // GSM-7 in SAR parts, out of order, one part twice, one again after the
    // join: each answered with the one id, stored once.
    let id = one_id(&v["sar"]);
    let m = d.wait_status(id, "delivered", 20).await;
    assert_eq!(m["text"], v["gsm_text"]);
    assert_eq!(m["encoding"], "gsm7");

    // Another coding within one set is refused (ESME_RINVDCS).
    assert_eq!(v["mixed"][0]["status"], 0);
    assert_eq!(v["mixed"][1]["status"], 0x104);

    // An incomplete set after the join timeout: failed `incomplete`, the
    // parts present kept with a marker, a REJECTD receipt.
    let incomplete = one_id(&v["incomplete"]);
    let m = d.wait_status(incomplete, "failed", 20).await;
    assert_eq!(m["error"]["code"], "incomplete");
    assert_eq!(m["text"], "piece 1 […]piece 3 ");
    assert!(m["error"]["text"].as_str().unwrap().contains("2 of 3"), "{m}");

    // registered_delivery: 0 owes no receipt, 1 does (and a failure too).
    assert_eq!(v["rd0_state"], 2, "the rd=0 message was delivered first");
    let receipts = v["receipts"].as_array().unwrap();
    let of = |id: &Value| receipts.iter().filter(|r| &r["receipted_message_id"] == id).collect::<Vec<_>>();
    assert!(of(&v["rd0"]["message_id"]).is_empty(), "no receipt for registered_delivery=0: {receipts:?}");
    let rd1 = of(&v["rd1"]["message_id"]);
    assert_eq!(rd1.len(), 1, "{receipts:?}");
    assert_eq!(rd1[0]["message_state"], 2);
    assert!(rd1[0]["text"].as_str().unwrap().contains("stat:DELIVRD"), "{rd1:?}");
    let failed = of(&v["incomplete"][0]["message_id"]);
    assert_eq!(failed.len(), 1, "{receipts:?}");
    assert_eq!(failed[0]["message_state"], 8, "REJECTED");
    assert!(failed[0]["text"].as_str().unwrap().contains("stat:REJECTD"), "{failed:?}");
    assert_eq!(of(&v["ucs2"][0]["message_id"]).len(), 1, "the joined message's receipt under its one id");
}

#[tokio::test(flavor = "multi_thread")]
async fn parts_survive_a_kill_between_them() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    write_config(
        dir.path(),
        &parts_config(port).replace("join_timeout_secs = 2", "join_timeout_secs = 60"),
        &sim_route(dir.path(), "sim", "", ""),
    );
    let d = Daemon::start(dir.path());
    let first = multipart_script(port, "first").await;
    assert_eq!(first["part"]["status"], 0);
    d.kill9();
    let d = Daemon::start(dir.path());
    let second = multipart_script(port, "second").await;
    assert_eq!(second["part"]["status"], 0);
    assert_eq!(first["part"]["message_id"], second["part"]["message_id"], "one message for both parts");
    let id: i64 = second["part"]["message_id"].as_str().unwrap().parse().unwrap();
    let m = d.wait_status(id, "delivered", 20).await;
    assert_eq!(m["text"], second["text"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn node_smpp_sends_a_long_message_in_udh_parts() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    write_config(dir.path(), &parts_config(port), &sim_route(dir.path(), "sim", "", ""));
    let d = Daemon::start(dir.path());
    let (lines, stdout) = node_lines("smpp_server_parts.js", &[&port.to_string(), "parts", "pw"]).await;
    let resps: Vec<Value> = lines.iter().filter(|l| l["event"] == "submit_resp").cloned().collect();
    assert_eq!(resps.len(), 2, "{stdout}");
    let id = one_id(&Value::Array(resps));
    let m = d.wait_status(id, "delivered", 20).await;
    assert_eq!(m["text"], lines[0]["text"]);
    assert_eq!(m["api_key"], "smpp:parts");
}

/// A webhook receiver on a free port: its URL, and the events it took.
async fn hook_receiver() -> (String, std::sync::Arc<std::sync::Mutex<Vec<Value>>>) {
    let got: std::sync::Arc<std::sync::Mutex<Vec<Value>>> = Default::default();
    let keep = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: axum::body::Bytes| {
            let keep = keep.clone();
            async move {
                if let Ok(v) = serde_json::from_slice(&body) {
                    keep.lock().unwrap().push(v);
                }
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, got)
}

#[tokio::test(flavor = "multi_thread")]
async fn node_smpp_replaces_a_queued_message_and_is_refused_for_the_right_reasons() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    // A LAN service follows the account's messages by webhook.
    let (hook, hooked) = hook_receiver().await;
    let follow = format!(
        "[[webhooks.subscriptions]]\nname = \"crm-feed\"\nkey = \"smpp:crm\"\nurl = \"{hook}\"\n\
         events = [\"message.replaced\"]\nsecret = \"whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\"\n"
    );
    let extra = format!("{}\n{follow}", smpp_config(port));
    write_config_with(dir.path(), "max_segments = 1", &extra, &sim_route(dir.path(), "sim", "", ""));
    let d = Daemon::start(dir.path());
    // Another key's message, waiting: not the account's to replace.
    let foreign = d.send(json!({"to": "+79161234567", "text": "not yours", "send_at": in_secs(3600.0)})).await;
    let foreign_hex = format!("{foreign:x}");
    let (lines, stdout) =
        node_lines("smpp_server_replace.js", &[&port.to_string(), "crm", "secret1", &foreign_hex]).await;
    let ev = |name: &str| lines.iter().find(|l| l["event"] == name).unwrap_or_else(|| panic!("no {name}: {stdout}"));
    let id = |name: &str| i64::from_str_radix(ev(name)["message_id"].as_str().unwrap(), 16).unwrap();
    for name in ["bind_resp", "submit_gsm", "submit_ucs2", "submit_now", "replace_gsm", "replace_ucs2", "unbind_resp"] {
        assert_eq!(ev(name)["status"], 0, "{name}: {stdout}");
    }
    assert_eq!(ev("replace_gsm")["command_id"], 0x8000_0007u32, "replace_sm_resp");

    // The text replaced, the schedule kept (still queued), a history row
    // saying who replaced it; the refused attempts changed nothing.
    let m = d.message(id("submit_gsm")).await;
    assert_eq!(m["status"], "queued", "{m:#}");
    assert_eq!(m["text"], "Hello, final text");
    assert_eq!(m["encoding"], "gsm7");
    assert!(m["send_at"].is_string(), "the schedule is kept: {m:#}");
    let replaced: Vec<&Value> = m["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["detail"].as_str().unwrap().starts_with("replaced through SMPP by account \"crm\""))
        .collect();
    assert_eq!(replaced.len(), 1, "one replacement recorded: {m:#}");
    assert_eq!(replaced[0]["status"], "queued");

    // The UCS-2 text read as UCS-2, its new schedule (a second ahead) honoured.
    let m = d.wait_status(id("submit_ucs2"), "delivered", 20).await;
    assert_eq!(m["text"], "Привет, окончательно");
    assert_eq!(m["encoding"], "ucs2");

    assert_eq!(ev("other_sender")["status"], 0x13, "ESME_RREPLACEFAIL for another source_addr");
    assert_eq!(ev("expires_first")["status"], 0x62, "ESME_RINVEXPIRY: validity ends before the schedule");
    assert_eq!(ev("too_long")["status"], 0x01, "ESME_RINVMSGLEN over server.max_segments");
    assert_eq!(ev("unknown")["status"], 0x0C, "ESME_RINVMSGID for an unknown id");
    assert_eq!(ev("foreign")["status"], 0x0C, "ESME_RINVMSGID for another key's message");
    assert_eq!(d.message(foreign).await["text"], "not yours");
    assert_eq!(ev("query_now")["state"], 2, "the third was delivered");
    assert_eq!(ev("after_delivery")["status"], 0x13, "ESME_RREPLACEFAIL once it is sent");
    assert_eq!(d.message(id("submit_now")).await["text"], "sent at once");

    // Each replacement reached the subscription, as the message stood then
    // or later; the refused ones did not.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let replaced = loop {
        let events = hooked.lock().unwrap().clone();
        if events.len() >= 2 || std::time::Instant::now() > deadline {
            break events;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let mut ids: Vec<i64> = replaced.iter().map(|e| e["data"]["id"].as_i64().unwrap()).collect();
    ids.sort();
    let mut want = vec![id("submit_gsm"), id("submit_ucs2")];
    want.sort();
    assert_eq!(ids, want, "{replaced:#?}");
    assert!(replaced.iter().all(|e| e["type"] == "message.replaced"), "{replaced:#?}");
    let gsm = replaced.iter().find(|e| e["data"]["id"] == id("submit_gsm")).unwrap();
    assert_eq!(gsm["data"]["text"], "Hello, final text", "{gsm:#}");
    assert_eq!(gsm["data"]["status"], "queued", "{gsm:#}");
}
