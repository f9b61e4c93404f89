//! Interop with an independent SMPP implementation: npm `smpp` (node-smpp 0.5.1) driven by interop/client.js.

mod common;
mod smsc_esme;

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use smsc_esme::{eventually, start};
use smsgw::simulate::smsc::{SmscConfig, SubmitOutcome};

const GSM_TEXT: &str = "Hello from node-smpp @ £5 {ok}";
const UCS2_TEXT: &str = "Привет, мир! 你好";

#[tokio::test]
async fn node_smpp_binds_submits_gets_receipts_and_inbound_and_unbinds() {
    let dir = common::interop_dir();
    let cfg = SmscConfig {
        credentials: vec![("interop".into(), "pw".into())],
        receipt_delay_ms: 50,
        ..SmscConfig::default()
    };
    let smsc = start(cfg).await;
    let port = smsc.local_addr().port().to_string();
    let child = tokio::process::Command::new("node")
        .arg("client.js")
        .arg(&port)
        .arg("3")
        .current_dir(&dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn node");

    // Once node-smpp is bound, send it a 2-part UCS-2 message and a single GSM one.
    assert!(eventually(|| smsc.events().iter().any(|e| e.starts_with("bind_transceiver from interop: ok"))).await);
    let long_reply = "Ответ из симулятора SMSC, длинный и на кириллице. ".repeat(2);
    smsc.inject_inbound("447700900123", "INTEROP", &long_reply).await.expect("inject ucs2");
    smsc.inject_inbound("447700900124", "INTEROP", "Reply @ 5€").await.expect("inject gsm");

    let output = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("node client finished in time")
        .expect("node client ran");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "node client failed\nstdout:\n{stdout}\nstderr:\n{stderr}");
    let lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
        .collect();
    let of = |event: &str| lines.iter().filter(|v| v["event"] == event).cloned().collect::<Vec<_>>();

    let bind = of("bind_resp");
    assert_eq!(bind.len(), 1);
    assert_eq!((bind[0]["status"].as_u64(), bind[0]["system_id"].as_str()), (Some(0), Some("smsc-sim")));

    // Both submits accepted, and what node-smpp sent is what the simulator recorded.
    let resps = of("submit_resp");
    assert_eq!(resps.len(), 2, "{stdout}");
    let submitted = smsc.submitted();
    assert_eq!(submitted.len(), 2);
    for s in &submitted {
        assert_eq!(s.outcome, SubmitOutcome::Accepted);
        assert_eq!(s.registered_delivery, 1);
        assert_eq!((s.source.as_str(), s.dest.as_str()), ("INTEROP", "447700900123"));
        let id = s.message_id.as_deref().expect("id");
        assert!(resps.iter().any(|r| r["message_id"] == id && r["status"] == 0), "{id} not answered: {stdout}");
    }
    let gsm = submitted.iter().find(|s| s.data_coding == 0).expect("GSM submit");
    assert_eq!(gsm.text(), GSM_TEXT);
    let ucs2 = submitted.iter().find(|s| s.data_coding == 8).expect("UCS-2 submit");
    assert_eq!(ucs2.text(), UCS2_TEXT);

    // Receipts as node-smpp parsed them: text fields and TLVs.
    let receipts = of("receipt");
    assert_eq!(receipts.len(), 2, "{stdout}");
    for s in &submitted {
        let id = s.message_id.as_deref().expect("id");
        let r = receipts.iter().find(|r| r["fields"]["id"] == id).unwrap_or_else(|| panic!("no receipt for {id}"));
        assert_eq!(r["esm_class"], 4);
        assert_eq!(r["fields"]["stat"], "DELIVRD");
        assert_eq!(r["fields"]["err"], "000");
        assert_eq!(r["receipted_message_id"], id);
        assert_eq!(r["message_state"], 2);
        assert_eq!(
            (r["source_addr"].as_str(), r["destination_addr"].as_str()),
            (Some("447700900123"), Some("INTEROP"))
        );
    }
    let gsm_receipt =
        receipts.iter().find(|r| r["fields"]["id"] == gsm.message_id.as_deref().unwrap_or("")).expect("r");
    assert_eq!(gsm_receipt["fields"]["text"], "Hello from node-smpp");

    // Inbound: node-smpp decoded the UDH and both encodings.
    let inbound = of("inbound");
    assert_eq!(inbound.len(), 3, "{stdout}");
    let parts: Vec<&Value> = inbound.iter().filter(|v| v["data_coding"] == 8).collect();
    assert_eq!(parts.len(), 2);
    let mut joined = String::new();
    for (i, p) in parts.iter().enumerate() {
        assert_eq!(p["esm_class"], 0x40);
        let udh = &p["udh"][0];
        assert_eq!((udh[0].as_u64(), udh[1].as_u64(), udh[3].as_u64()), (Some(0), Some(3), Some(2)));
        assert_eq!(udh[4].as_u64(), Some(i as u64 + 1));
        joined.push_str(p["text"].as_str().expect("text"));
    }
    assert_eq!(joined, long_reply);
    let single = inbound.iter().find(|v| v["data_coding"] == 0).expect("GSM inbound");
    assert_eq!((single["text"].as_str(), single["esm_class"].as_u64()), (Some("Reply @ 5€"), Some(0)));

    // Everything acknowledged, then a clean unbind.
    assert_eq!(of("unbind_resp").first().map(|v| v["status"].clone()), Some(Value::from(0)));
    assert!(eventually(|| smsc.unacknowledged() == 0).await, "{:?}", smsc.events());
    let events = smsc.events();
    for s in &submitted {
        let line = format!("receipt {} acked by interop", s.message_id.as_deref().unwrap_or(""));
        assert!(events.contains(&line), "{line} missing: {events:?}");
    }
    assert_eq!(events.iter().filter(|e| e.starts_with("inbound ") && e.ends_with("acked by interop")).count(), 3);
    assert!(eventually(|| smsc.events().iter().any(|e| e == "unbind from interop")).await);
    smsc.shutdown().await;
}
