//! `/metrics` read with an independent Prometheus text parser; the counters
//! must match what was sent.

mod common;
use common::*;
use serde_json::json;

#[tokio::test]
async fn counters_match_what_was_sent() {
    let dir = tempfile::tempdir().unwrap();
    let routes = format!(
        "{}{}",
        sim_route(dir.path(), "good", "prefixes = [\"+7\"]", "delivery_delay_ms = 0"),
        sim_route(dir.path(), "bad", "", "fail_fraction = 1.0")
    );
    write_config(dir.path(), "", &routes);
    let d = Daemon::start(dir.path());
    let msgs: Vec<_> = (0..7).map(|i| msg(&format!("+7916123{i:04}"), "hi")).collect();
    let (s, _) = d.post("/v1/messages", &json!({"messages": msgs})).await;
    assert_eq!(s, 202);
    d.send(msg("+4915112345678", "fails")).await;
    d.send(json!({"to": "+79160000000", "text": "later", "send_at": in_secs(3600.0)})).await;
    d.wait_counts(15, "7 delivered, 1 failed", |b| b["delivered"] == 7 && b["failed"] == 1).await;

    // A counter moves once the store has answered the task that counts it,
    // a moment after the commit the API already shows: scraped until the
    // last outcome is counted, as Prometheus would see it on its next look.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let (text, scrape) = loop {
        let resp = d.http.get(format!("{}/metrics", d.url)).bearer_auth(KEY).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
        let text = resp.text().await.unwrap();
        let scrape =
            prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("valid exposition");
        let counted = |name, labels: &[(&str, &str)]| sample(&scrape, name, labels).unwrap_or(0.0);
        let settled = counted("smsgw_messages_finished_total", &[("route", "good"), ("status", "delivered")]) >= 7.0
            && counted("smsgw_messages_finished_total", &[("route", "bad"), ("status", "failed")]) >= 1.0
            && counted("smsgw_submits_total", &[("route", "good"), ("result", "submitted")]) >= 7.0;
        if settled || std::time::Instant::now() > deadline {
            break (text, scrape);
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };

    assert_eq!(sample(&scrape, "smsgw_messages_accepted_total", &[("api_key", "test")]), Some(9.0));
    assert_eq!(sample(&scrape, "smsgw_submits_total", &[("route", "good"), ("result", "submitted")]), Some(7.0));
    assert_eq!(sample(&scrape, "smsgw_submits_total", &[("route", "bad"), ("result", "failed")]), Some(1.0));
    assert_eq!(sample(&scrape, "smsgw_receipts_total", &[("route", "good"), ("status", "delivered")]), Some(7.0));
    assert_eq!(sample(&scrape, "smsgw_messages", &[("status", "delivered")]), Some(7.0));
    let finished =
        |route, status| sample(&scrape, "smsgw_messages_finished_total", &[("route", route), ("status", status)]);
    assert_eq!(finished("good", "delivered"), Some(7.0));
    assert_eq!(finished("bad", "failed"), Some(1.0));
    assert_eq!(finished("good", "failed"), None);
    assert_eq!(sample(&scrape, "smsgw_messages", &[("status", "queued")]), Some(1.0));
    assert_eq!(sample(&scrape, "smsgw_queue_depth", &[("route", "good"), ("priority", "transactional")]), Some(1.0));
    assert_eq!(sample(&scrape, "smsgw_route_state", &[("route", "good")]), Some(1.0));
    assert!(sample(&scrape, "smsgw_queue_oldest_age_seconds", &[]).unwrap() >= 0.0);
    for h in ["smsgw_submit_duration_seconds_count", "smsgw_delivery_duration_seconds_count"] {
        assert!(text.contains(h), "{h} missing");
    }
    assert!(text.contains("smsgw_store_commit_duration_seconds_bucket"));

    let anon = d.http.get(format!("{}/metrics", d.url)).send().await.unwrap();
    assert_eq!(anon.status().as_u16(), 401);
}

#[tokio::test]
async fn a_status_nobody_is_in_any_more_reads_zero() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), "", &sim_route(dir.path(), "sim", "", "delivery_delay_ms = 0"));
    let d = Daemon::start(dir.path());
    let later = d.send(json!({"to": "+79160000000", "text": "later", "send_at": in_secs(3600.0)})).await;
    let scrape = || async {
        let text = d.metrics().await;
        prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("valid exposition")
    };
    assert_eq!(sample(&scrape().await, "smsgw_messages", &[("status", "queued")]), Some(1.0));
    let (s, v) = d.post(&format!("/v1/messages/{later}/cancel"), &json!({})).await;
    assert_eq!(s, 200, "{v}");
    let after = scrape().await;
    assert_eq!(sample(&after, "smsgw_messages", &[("status", "queued")]), Some(0.0), "not the last value seen");
    assert_eq!(sample(&after, "smsgw_messages", &[("status", "cancelled")]), Some(1.0));
}
