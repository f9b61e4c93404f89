//! Crash safety and start-up: kill -9 under load loses nothing and repeats
//! only what was in flight; graceful stop; the store refuses a second
//! daemon and a corrupt file with an error naming the file.

mod common;
use common::*;
use serde_json::json;
use std::collections::HashMap;

#[tokio::test]
async fn kill_9_loses_nothing_and_repeats_only_what_was_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let concurrency = 4;
    let route = sim_route(
        dir.path(),
        "sim",
        &format!("rate = 300\nburst = 10\nconcurrency = {concurrency}"),
        "delivery_delay_ms = 50",
    );
    write_config(dir.path(), "", &route);
    let d = Daemon::start(dir.path());
    let mut accepted = Vec::new();
    for b in 0..6 {
        let msgs: Vec<_> = (0..100).map(|i| msg(&format!("+79{:09}", b * 1000 + i), "crash test")).collect();
        let (s, v) = d.post("/v1/messages", &json!({"messages": msgs})).await;
        assert_eq!(s, 202);
        accepted.extend(v["messages"].as_array().unwrap().iter().map(|m| m["id"].as_i64().unwrap()));
    }
    // Dispatch is under way (300/s): kill mid-stream.
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    d.kill9();
    let sent_before_kill = records(dir.path(), "sim").len();
    assert!(sent_before_kill > 0 && sent_before_kill < accepted.len(), "kill landed at {sent_before_kill}");

    let d = Daemon::start(dir.path());
    // Everything went out. Receipts the simulated route still held in memory
    // died with the process (as if the SMSC had lost them), so a few
    // messages sent before the kill may stay `submitted`.
    let n = accepted.len() as u64;
    d.wait_counts(30, "every message sent", |b| {
        b["delivered"].as_u64().unwrap_or(0) + b["submitted"].as_u64().unwrap_or(0) == n && b["queued"].is_null()
    })
    .await;
    for id in &accepted {
        let s = d.message(*id).await["status"].as_str().unwrap().to_string();
        assert!(s == "delivered" || s == "submitted", "message {id} is {s}");
    }
    let mut times: HashMap<i64, usize> = HashMap::new();
    for r in records(dir.path(), "sim") {
        *times.entry(r["id"].as_i64().unwrap()).or_default() += 1;
    }
    assert_eq!(times.len(), accepted.len(), "every accepted message reached the route");
    let repeated = times.values().filter(|n| **n > 1).count();
    assert!(times.values().all(|n| *n <= 2));
    assert!(repeated <= concurrency, "{repeated} messages sent twice; at most {concurrency} were in flight");
}

#[tokio::test]
async fn accepted_messages_survive_kill_9_before_dispatch() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), "", &sim_route(dir.path(), "sim", "", "delivery_delay_ms = 0"));
    let d = Daemon::start(dir.path());
    let send_at = in_secs(1.5);
    let mut ids = Vec::new();
    for i in 0..50 {
        ids.push(d.send(json!({"to": format!("+7916000{i:04}"), "text": "later", "send_at": send_at})).await);
    }
    d.kill9();
    let d = Daemon::start(dir.path());
    d.wait_counts(20, "50 delivered", |b| b["delivered"] == 50).await;
    let recs = records(dir.path(), "sim");
    assert_eq!(recs.len(), 50, "each message sent exactly once");
    let mut got: Vec<i64> = recs.iter().map(|r| r["id"].as_i64().unwrap()).collect();
    got.sort();
    assert_eq!(got, ids);
}

/// A daemon in `dir` with one sim route at `rate`/s, half a second into
/// sending `n` messages posted in one batch.
async fn sending(dir: &std::path::Path, rate: u32, n: usize) -> Daemon {
    write_config(dir, "", &sim_route(dir, "sim", &format!("rate = {rate}"), "delivery_delay_ms = 0"));
    let d = Daemon::start(dir);
    let msgs: Vec<_> = (0..n).map(|i| msg(&format!("+7916000{i:04}"), "x")).collect();
    let (s, _) = d.post("/v1/messages", &json!({"messages": msgs})).await;
    assert_eq!(s, 202);
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    d
}

#[tokio::test]
async fn sigterm_stops_cleanly_and_the_queue_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let d = sending(dir.path(), 5, 20).await;
    assert_eq!(d.terminate(), Some(0));
    assert!(
        !dir.path().join("smsgw.db-wal").exists()
            || std::fs::metadata(dir.path().join("smsgw.db-wal")).unwrap().len() == 0
    );
    let d = Daemon::start(dir.path());
    d.wait_counts(20, "20 delivered", |b| b["delivered"] == 20).await;
    let recs = records(dir.path(), "sim");
    assert_eq!(recs.len(), 20, "a graceful stop sends nothing twice");
}

#[tokio::test]
async fn a_stop_hands_back_what_a_lane_claimed_but_had_not_started() {
    // A rate-limited lane holds a quarter second of claimed messages. A stop
    // puts them back in the queue before the store closes: none is left
    // `sending` on disk, and the log has no failed hand-back.
    let dir = tempfile::tempdir().unwrap();
    let d = sending(dir.path(), 40, 200).await;
    let log = d.log.clone();
    assert_eq!(d.terminate(), Some(0));
    let log = log.lock().unwrap().clone();
    assert!(!log.contains("cannot hand a message back"), "{log}");
    let db = rusqlite::Connection::open(dir.path().join("smsgw.db")).unwrap();
    let count = |sql: &str| db.query_row(sql, [], |r| r.get::<_, i64>(0)).unwrap();
    assert_eq!(count("SELECT count(*) FROM messages WHERE status = 'sending'"), 0);
    let handed_back =
        count("SELECT count(*) FROM history WHERE detail LIKE '%smsgw stopped before this attempt started%'");
    assert!(handed_back > 0, "the lane held claimed messages at the stop");
}

#[tokio::test]
async fn second_daemon_on_the_same_store_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), "", &sim_route(dir.path(), "sim", "", ""));
    let _d = Daemon::start(dir.path());
    let err = Daemon::try_start(dir.path()).err().expect("second daemon must not start");
    assert!(err.contains("smsgw.db") && err.contains("in use"), "{err}");
}

#[tokio::test]
async fn corrupt_store_is_a_clear_start_up_error() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), "", &sim_route(dir.path(), "sim", "", ""));
    std::fs::write(dir.path().join("smsgw.db"), vec![0x42u8; 8192]).unwrap();
    let err = Daemon::try_start(dir.path()).err().expect("must refuse a corrupt store");
    assert!(err.contains("smsgw.db") && err.contains("corrupt"), "{err}");
}
