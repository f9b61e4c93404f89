//! A bind's, a modem's or a lane's task that panics comes back: the real daemon with
//! a fault injected through `SMSGW_FAULT_PANIC` (the task panics when it
//! takes its first job), against a virtual modem on a pseudo-terminal and
//! the SMSC simulator over TCP. The modem or bind is up again, the message
//! it held when it panicked goes back to the queue without spending an
//! attempt and is delivered, and `/metrics` counts one restart.

mod common;
use common::*;
use serde_json::{Value, json};
use smsgw::simulate::modem::{ModemConfig, VirtualModem};
use smsgw::simulate::smsc::{Smsc, SmscConfig, SubmitOutcome};
use std::time::{Duration, Instant};

const DISPATCH: &str = "[dispatch]\nmax_attempts = 3\nretry_base_ms = 100\nretry_max_ms = 500\n";

/// The value of the restart counter for `task` and `route`, if any.
async fn restarts(d: &Daemon, task: &str, route: &str) -> Option<f64> {
    let text = d.metrics().await;
    text.lines()
        .filter(|l| l.starts_with("smsgw_task_restarts_total{"))
        .find(|l| l.contains(&format!("task=\"{task}\"")) && l.contains(&format!("route=\"{route}\"")))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

async fn poll<T>(secs: u64, what: &str, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "never saw {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The message's history names the code the route handed it back with.
fn handed_back_with(m: &Value, code: &str) -> bool {
    m.to_string().contains(code)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_modem_whose_task_panics_comes_back_and_sends() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = ModemConfig { send_delay_ms: 50, ..ModemConfig::default() };
    let modem = VirtualModem::start(cfg, &dir.path().join("dev").join("modem1")).await.expect("virtual modem");
    modem.set_auto_reports(Some(Duration::from_millis(100)));
    let route = format!(
        "[[routes]]\nname = \"gsm\"\nkind = \"modem\"\n[routes.modem]\nports = [\"{}/dev/*\"]\n\
         health_interval_secs = 1\nregistration_timeout_secs = 10\n",
        dir.path().display()
    );
    write_config(dir.path(), DISPATCH, &route);
    let d = Daemon::try_start_with_env(dir.path(), &[("SMSGW_FAULT_PANIC", "modem:modem1:1".into())]).unwrap();
    let ready = async || {
        let (_, v) = d.get("/v1/modems").await;
        v["modems"].as_array().is_some_and(|m| m.len() == 1 && m[0]["state"] == "ready").then_some(())
    };
    poll(20, "the modem ready", ready).await;

    let id = d.send(json!({"to": "+79160000001", "text": "through a restarted modem"})).await;
    let m = d.wait_status(id, "delivered", 30).await;
    assert!(handed_back_with(&m, "modem_restarted"), "the job in hand was answered: {m:#}");
    assert_eq!(m["attempts"], 1, "handing back spent no attempt: {m:#}");
    assert_eq!(modem.sent().len(), 1, "sent once, after the restart");
    poll(20, "the modem ready again", ready).await;
    assert_eq!(restarts(&d, "modem", "gsm").await, Some(1.0));
    let (_, r) = d.get("/v1/routes").await;
    assert_eq!(r["routes"][0]["state"], "up", "{r:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bind_whose_task_panics_comes_back_and_sends() {
    let cfg =
        SmscConfig { credentials: vec![("smsgw".into(), "secret".into())], receipt_delay_ms: 10, ..Default::default() };
    let sim = Smsc::start(cfg, tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap()).await;
    let dir = tempfile::tempdir().unwrap();
    let route = format!(
        "[[routes]]\nname = \"carrier\"\nkind = \"smpp\"\n[routes.smpp]\nhost = \"127.0.0.1\"\nport = {}\n\
         system_id = \"smsgw\"\npassword = \"secret\"\nbinds = 1\nwindow = 5\nresponse_timeout_secs = 5\n\
         reconnect_min_ms = 50\nreconnect_max_ms = 500\n",
        sim.local_addr().port()
    );
    write_config(dir.path(), DISPATCH, &route);
    let d = Daemon::try_start_with_env(dir.path(), &[("SMSGW_FAULT_PANIC", "smpp:carrier:1".into())]).unwrap();
    let bound = async || {
        let (_, r) = d.get("/v1/routes").await;
        (r["routes"][0]["state"] == "up").then_some(())
    };
    poll(20, "the bind up", bound).await;

    let id = d.send(json!({"to": "+79160000002", "text": "through a restarted bind"})).await;
    let m = d.wait_status(id, "delivered", 30).await;
    assert!(handed_back_with(&m, "smpp_bind_restarted"), "the part in hand was answered: {m:#}");
    assert_eq!(m["attempts"], 1, "handing back spent no attempt: {m:#}");
    let accepted = sim.submitted().iter().filter(|s| s.outcome == SubmitOutcome::Accepted).count();
    assert_eq!(accepted, 1, "the carrier got it once, after the restart");
    poll(20, "the bind up again", bound).await;
    assert_eq!(restarts(&d, "smpp", "carrier").await, Some(1.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lane_whose_task_panics_hands_back_what_it_claimed_and_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), DISPATCH, &sim_route(dir.path(), "r", "", ""));
    // The lane panics right after its first claim, holding what it claimed.
    let d = Daemon::try_start_with_env(dir.path(), &[("SMSGW_FAULT_PANIC", "lane:r:1".into())]).unwrap();
    let batch: Vec<Value> = (0..5).map(|i| msg(&format!("+7916000000{i}"), "through a restarted lane")).collect();
    let (code, v) = d.post("/v1/messages", &json!({ "messages": batch })).await;
    assert_eq!(code, 202, "{v:#}");
    let ids: Vec<i64> = v["messages"].as_array().unwrap().iter().map(|m| m["id"].as_i64().unwrap()).collect();
    assert_eq!(ids.len(), 5);
    let mut handed_back = 0;
    for id in ids {
        let m = d.wait_status(id, "delivered", 30).await;
        assert_eq!(m["attempts"], 1, "handing back spent no attempt: {m:#}");
        handed_back += usize::from(handed_back_with(&m, "lane_restarted"));
    }
    assert!(handed_back >= 1, "the claimed messages went back to the queue with the reason");
    assert_eq!(restarts(&d, "lane", "r").await, Some(1.0));
    assert_eq!(records(dir.path(), "r").len(), 5, "each sent once");
}
