//! Per-rule statistics through the real binary: `GET /v1/rules/stats`,
//! `GET /v1/rules/{name}/stats` (404 for a rule nobody knows),
//! `GET /v1/schedule` and the `smsgw_rule_messages` gauges of `/metrics`,
//! read from messages the daemon really sent (and cancelled) whose rows
//! are then marked as a rule's, with the runs and the conversion the
//! engine writes added to the same store file.

mod common;
use common::*;
use rusqlite::{Connection, params};
use serde_json::json;

#[tokio::test]
async fn a_rules_funnel_and_schedule_come_from_its_rows() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), "", &sim_route(dir.path(), "sim", "", "delivery_delay_ms = 0"));
    let d = Daemon::start(dir.path());
    let delivered = d.send(msg("+79161230001", "your cart")).await;
    d.wait_status(delivered, "delivered", 15).await;
    let later = d.send(json!({"to": "+79161230002", "text": "your cart", "send_at": in_secs(7200.0)})).await;
    let paid = d.send(json!({"to": "+79161230003", "text": "your cart", "send_at": in_secs(7200.0)})).await;
    let (s, _) = d.post(&format!("/v1/messages/{paid}/cancel"), &json!({})).await;
    assert_eq!(s, 200);
    d.send(msg("+79161230004", "not a rule's")).await;

    // What the engine writes for rule "cart-reminder": three runs, its
    // messages marked, one cancelled by an `order.paid`, one conversion.
    let c = Connection::open(dir.path().join("smsgw.db")).unwrap();
    c.busy_timeout(std::time::Duration::from_secs(5)).unwrap();
    for outcome in ["scheduled", "scheduled", "scheduled", "limited"] {
        c.execute(
            "INSERT INTO rule_runs (rule, event_id, key, recipient, at, outcome) VALUES ('cart-reminder', 1, 'c1', 'x', 0, ?1)",
            [outcome],
        )
        .unwrap();
    }
    for id in [delivered, later, paid] {
        c.execute("UPDATE messages SET rule = 'cart-reminder', step = 0, trigger_key = 'c1' WHERE id = ?1", [id])
            .unwrap();
    }
    c.execute("UPDATE messages SET cancelled_by = 'order.paid' WHERE id = ?1", [paid]).unwrap();
    c.execute(
        "INSERT INTO conversions (message_id, rule, event_id, at) VALUES (?1, 'cart-reminder', 2, 0)",
        params![delivered],
    )
    .unwrap();

    let (s, all) = d.get("/v1/rules/stats").await;
    assert_eq!(s, 200, "{all}");
    let expected = json!({
        "rule": "cart-reminder", "triggered": 4, "scheduled": 1, "cancelled": {"order.paid": 1},
        "suppressed": {}, "errors": 0, "limited": 1, "sent": 1, "delivered": 1, "replied": 0, "converted": 1
    });
    assert_eq!(all, json!({"rules": [expected.clone()]}));
    let (s, one) = d.get("/v1/rules/cart-reminder/stats").await;
    assert_eq!((s, one), (200, expected));
    let (s, none) = d.get("/v1/rules/no-such-rule/stats").await;
    assert_eq!(s, 404, "{none}");
    assert!(none["detail"].as_str().unwrap().contains("no-such-rule"), "{none}");

    let (s, sched) = d.get("/v1/schedule?hours=4").await;
    assert_eq!(s, 200, "{sched}");
    let hours = sched["hours"].as_array().unwrap();
    assert_eq!(hours.len(), 4);
    assert!(hours[0]["hour"].as_str().unwrap().ends_with(":00:00Z"), "{sched}");
    let due: Vec<_> = hours.iter().map(|h| h["total"].as_u64().unwrap()).collect();
    assert_eq!(due.iter().sum::<u64>(), 1, "{sched}");
    let at = due.iter().position(|n| *n == 1).unwrap();
    assert!(at == 1 || at == 2, "due in 2 h: {sched}");
    assert_eq!(hours[at]["rules"], json!({"cart-reminder": 1}));
    assert_eq!(d.get("/v1/schedule").await.1["hours"].as_array().unwrap().len(), 24);
    for bad in ["0", "169", "soon"] {
        let (s, p) = d.get(&format!("/v1/schedule?hours={bad}")).await;
        assert_eq!(s, 422, "{p}");
        assert_eq!(p["errors"][0]["field"], "hours", "{p}");
    }

    let text = d.metrics().await;
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("valid exposition");
    let stage = |s| sample(&scrape, "smsgw_rule_messages", &[("rule", "cart-reminder"), ("stage", s)]);
    assert_eq!(stage("triggered"), Some(4.0));
    assert_eq!(stage("scheduled"), Some(1.0));
    assert_eq!(stage("cancelled"), Some(1.0));
    assert_eq!(stage("suppressed"), Some(0.0));
    assert_eq!(stage("sent"), Some(1.0));
    assert_eq!(stage("delivered"), Some(1.0));
    assert_eq!(stage("replied"), Some(0.0));
    assert_eq!(stage("converted"), Some(1.0));
}
