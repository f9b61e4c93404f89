//! Retention through the real binary: `smsgw store prune` on a store a
//! daemon filled, with `--as-of` standing in for the months that pass.

mod common;
use common::*;
use serde_json::json;
use std::process::{Command, Output};

fn smsgw(args: &[&str]) -> Output {
    Command::new(bin()).args(args).output().expect("run smsgw")
}

fn days_from_now(days: i64) -> String {
    (chrono::Utc::now() + chrono::Duration::days(days)).to_rfc3339()
}

#[tokio::test]
async fn store_prune_removes_finished_messages_and_keeps_the_queue() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), "", &format!("{}\n", sim_route(dir.path(), "sim", "", "delivery_delay_ms = 0")));
    // The retention keys sit in [store]; the harness writes that table.
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("[numbers]", "retention_days = 30\norphan_receipt_hours = 1\n[numbers]");
    std::fs::write(&cfg, text).unwrap();
    let cfg = cfg.to_str().unwrap().to_string();

    let d = Daemon::start(dir.path());
    let sent: Vec<i64> = {
        let mut ids = Vec::new();
        for i in 0..3 {
            ids.push(d.send(msg(&format!("+7916123{i:04}"), "hi")).await);
        }
        ids
    };
    let later = d.send(json!({"to": "+79160000000", "text": "later", "send_at": in_secs(3600.0)})).await;
    d.wait_counts(15, "3 delivered", |b| b["delivered"] == 3).await;

    // The daemon holds the store: a prune beside it is refused, by name.
    let out = smsgw(&["store", "prune", "--config", &cfg]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("in use by another smsgw process"), "{err}");
    assert_eq!(d.terminate(), Some(0));

    // A month on is within the retention only for the queued message.
    let out = smsgw(&["store", "prune", "--config", &cfg, "--as-of", &days_from_now(29)]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("pruned 0 finished messages"), "{stdout}");
    let out = smsgw(&["store", "prune", "--config", &cfg, "--as-of", &days_from_now(365)]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("pruned 3 finished messages"), "{stdout}");
    let out = smsgw(&["store", "prune", "--config", &cfg, "--as-of", "next year"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("--as-of") && err.contains("RFC 3339"), "{err}");

    let d = Daemon::start(dir.path());
    for id in sent {
        let (s, _) = d.get(&format!("/v1/messages/{id}")).await;
        assert_eq!(s, 404, "message {id} was pruned");
    }
    assert_eq!(d.message(later).await["status"], "queued");
    let (_, q) = d.get("/v1/queue").await;
    assert_eq!(q["by_status"], json!({"queued": 1}), "{q}");
    assert_eq!(q["queued"]["sim"]["transactional"], 1, "{q}");
}

#[test]
fn retention_keys_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("bad.toml");
    std::fs::write(&f, "[store]\nretention_days = 100000\nprune_every_minutes = 0\n").unwrap();
    let out = smsgw(&["config", "check", f.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("store.retention_days: must be at most 36500"), "{err}");
    assert!(err.contains("store.prune_every_minutes"), "{err}");
}
