//! Twenty `kill -9`s of the real daemon while messages are being accepted
//! over HTTP and sent through an SMPP route to the SMSC simulator, whose
//! receipts keep arriving; each time the daemon restarts on the same store.
//! At the end every accepted message is delivered, none is lost, and the
//! carrier saw a message twice only for what was in flight at a kill: at
//! most the bind's window per kill.

mod common;
use common::*;
use serde_json::json;
use smsgw::simulate::smsc::{Smsc, SmscConfig, SubmitOutcome};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const CYCLES: usize = 20;
const WINDOW: usize = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_kills_through_smpp_lose_nothing_and_repeat_only_what_was_in_flight() {
    let cfg = SmscConfig {
        credentials: vec![("smsgw".into(), "secret".into())],
        submit_latency_ms: 5,
        receipt_delay_ms: 20,
        ..Default::default()
    };
    let sim = Smsc::start(cfg, tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap()).await;
    let dir = tempfile::tempdir().unwrap();
    let route = format!(
        "[[routes]]\nname = \"carrier\"\nkind = \"smpp\"\nconcurrency = {WINDOW}\n[routes.smpp]\nhost = \"127.0.0.1\"\n\
         port = {}\nsystem_id = \"smsgw\"\npassword = \"secret\"\nbinds = 1\nwindow = {WINDOW}\nresponse_timeout_secs = 5\n\
         reconnect_min_ms = 50\nreconnect_max_ms = 200\n",
        sim.local_addr().port()
    );
    let dispatch = "[dispatch]\nmax_attempts = 50\nretry_base_ms = 100\nretry_max_ms = 500\n";
    write_config(dir.path(), dispatch, &route);

    // Each accepted message's number, by id: every one goes to its own number.
    let accepted: Arc<Mutex<HashMap<i64, String>>> = Arc::default();
    for cycle in 0..CYCLES {
        let d = Daemon::start(dir.path());
        let (url, http, acc) = (d.url.clone(), d.http.clone(), accepted.clone());
        let poster = tokio::spawn(async move {
            for batch in 0.. {
                let msgs: Vec<_> = (0..10)
                    .map(
                        |i| json!({"to": format!("+7916{cycle:03}{batch:02}{i:02}"), "text": format!("cycle {cycle}")}),
                    )
                    .collect();
                let sent =
                    http.post(format!("{url}/v1/messages")).bearer_auth(KEY).json(&json!({"messages": msgs})).send();
                // A request cut by the kill has no answer: not accepted.
                let Ok(resp) = sent.await else { return };
                if resp.status().as_u16() != 202 {
                    return;
                }
                let Ok(v) = resp.json::<serde_json::Value>().await else { return };
                {
                    let mut acc = acc.lock().unwrap();
                    for m in v["messages"].as_array().into_iter().flatten() {
                        acc.insert(m["id"].as_i64().unwrap(), m["to"].as_str().unwrap().to_string());
                    }
                }
                tokio::time::sleep(Duration::from_millis(40)).await;
            }
        });
        // Long enough to bind and send, short enough to kill mid-stream.
        tokio::time::sleep(Duration::from_millis(500 + 37 * (cycle as u64 % 7))).await;
        d.kill9();
        let _ = poster.await;
    }

    let d = Daemon::start(dir.path());
    let accepted = accepted.lock().unwrap().clone();
    d.wait_counts(60, "nothing left to send or report", |b| {
        b["queued"].is_null() && b["sending"].is_null() && b["submitted"].is_null()
    })
    .await;
    for id in accepted.keys() {
        let m = d.message(*id).await;
        assert_eq!(m["status"], "delivered", "message {id}: {m:#}");
    }

    let mut per_number: HashMap<String, usize> = HashMap::new();
    for s in sim.submitted().iter().filter(|s| s.outcome == SubmitOutcome::Accepted) {
        *per_number.entry(format!("+{}", s.dest)).or_default() += 1;
    }
    for to in accepted.values() {
        assert!(per_number.contains_key(to), "{to} never reached the carrier");
    }
    let duplicates: usize = per_number.values().map(|n| n - 1).sum();
    let allowed = CYCLES * WINDOW;
    println!(
        "reliability: {} messages accepted over {CYCLES} kill -9 cycles, all delivered; {duplicates} duplicate \
         submits at the carrier (at most {allowed} allowed: {CYCLES} kills x window {WINDOW})",
        accepted.len()
    );
    assert!(duplicates <= allowed, "{duplicates} duplicates for {CYCLES} kills of a window of {WINDOW}");
    assert!(accepted.len() >= CYCLES * 10, "only {} messages accepted: the test did not test", accepted.len());
}
