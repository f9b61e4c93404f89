//! A one-time code posted while a promotional backlog waits for a
//! rate-limited route goes out next: before the promotions the lane has
//! already claimed and holds for the rate limiter, not behind them.

mod common;
use common::*;
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn otp_overtakes_promotions_already_claimed() {
    let dir = tempfile::tempdir().unwrap();
    // 40/s, a burst of 40: the lane holds a quarter second's worth (10)
    // claimed while each waits for its slot.
    write_config(dir.path(), "", &sim_route(dir.path(), "sim", "rate = 40\nburst = 40", "delivery_delay_ms = 0"));
    let d = Daemon::start(dir.path());
    let promos: Vec<_> =
        (0..200).map(|i| json!({"to": format!("+7916123{i:04}"), "text": "sale", "priority": "promotional"})).collect();
    let (s, _) = d.post("/v1/messages", &json!({"messages": promos})).await;
    assert_eq!(s, 202);
    // Draining, with promotions claimed ahead of their slots.
    d.wait_counts(10, "promotions claimed ahead", |b| b["sending"].as_u64().unwrap_or(0) >= 5).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = records(dir.path(), "sim").len();
    let otp = d.send(json!({"to": "+79160000000", "text": "code 1234", "priority": "otp"})).await;
    d.wait_status(otp, "delivered", 10).await;
    let recs = records(dir.path(), "sim");
    let pos = recs.iter().position(|r| r["id"] == otp).unwrap();
    // At most the promotions whose slots came while the code was posted
    // and claimed go between, not the ten held.
    assert!(pos <= before + 3, "otp sent as number {pos}; {before} had gone when it was posted");
    d.wait_counts(30, "all delivered", |b| b["delivered"] == 201).await;
}
