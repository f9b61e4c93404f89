//! End to end through the real binary: send, follow to delivered, batch,
//! cancel, idempotency, scheduling, expiry, priority and rate limits.

mod common;
use common::*;
use serde_json::json;
use std::collections::HashMap;

fn fast_sim(dir: &std::path::Path) -> String {
    sim_route(dir, "sim", "concurrency = 8", "delivery_delay_ms = 100")
}

#[tokio::test]
async fn single_and_batch_are_delivered_with_full_history() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), "", &fast_sim(dir.path()));
    let d = Daemon::start(dir.path());

    let (s, v) = d
        .post(
            "/v1/messages",
            &json!({"to": "8 916 123-45-67", "text": "Ваш код: 4821", "from": "MyShop", "reference": "order-17"}),
        )
        .await;
    assert_eq!(s, 202, "{v}");
    assert_eq!(v["to"], "+79161234567");
    assert_eq!(v["encoding"], "ucs2");
    assert_eq!(v["segments"], 1);
    assert_eq!(v["status"], "queued");
    let id = v["id"].as_i64().unwrap();

    let m = d.wait_status(id, "delivered", 10).await;
    let states: Vec<&str> = m["history"].as_array().unwrap().iter().map(|h| h["status"].as_str().unwrap()).collect();
    assert_eq!(states, ["queued", "submitted", "delivered"]);
    assert_eq!(m["api_key"], "test");
    assert_eq!(m["reference"], "order-17");
    assert_eq!(m["parts"][0]["status"], "delivered");
    assert_eq!(m["from"], "MyShop");

    // A batch, including a long GSM text of three parts.
    let long = "x".repeat(400);
    let (s, v) = d
        .post("/v1/messages", &json!({"messages": [msg("+79161234568", "one"), msg("+79161234569", &long), {"to": ["+79161234570", "+79161234571"], "text": "two of us"}]}))
        .await;
    assert_eq!(s, 202, "{v}");
    let accepted = v["messages"].as_array().unwrap();
    assert_eq!(accepted.len(), 4);
    assert_eq!(accepted[1]["segments"], 3);
    assert_eq!(accepted[1]["encoding"], "gsm7");
    for a in accepted {
        d.wait_status(a["id"].as_i64().unwrap(), "delivered", 10).await;
    }
    let recs = records(dir.path(), "sim");
    let long_parts: Vec<_> = recs.iter().filter(|r| r["id"] == accepted[1]["id"]).collect();
    assert_eq!(long_parts.len(), 3);
    let joined: String = long_parts.iter().map(|r| r["text"].as_str().unwrap()).collect();
    assert_eq!(joined, long);

    // Listing: newest first, filters, cursor pagination.
    let (_, page1) = d.get("/v1/messages?limit=3").await;
    let ids: Vec<i64> = page1["messages"].as_array().unwrap().iter().map(|m| m["id"].as_i64().unwrap()).collect();
    assert_eq!(ids, [5, 4, 3]);
    let cursor = page1["next_cursor"].as_str().unwrap().to_string();
    let (_, page2) = d.get(&format!("/v1/messages?limit=3&cursor={cursor}")).await;
    let ids: Vec<i64> = page2["messages"].as_array().unwrap().iter().map(|m| m["id"].as_i64().unwrap()).collect();
    assert_eq!(ids, [2, 1]);
    assert!(page2["next_cursor"].is_null());
    let (_, by_to) = d.get("/v1/messages?to=89161234567").await;
    assert_eq!(by_to["messages"].as_array().unwrap().len(), 1);
    let (_, by_status) = d.get("/v1/messages?status=queued").await;
    assert_eq!(by_status["messages"].as_array().unwrap().len(), 0);

    let (s, routes) = d.get("/v1/routes").await;
    assert_eq!(s, 200);
    assert_eq!(routes["routes"][0]["name"], "sim");
    assert_eq!(routes["routes"][0]["state"], "up");
    assert_eq!(routes["routes"][0]["sent"], 5);
}

#[tokio::test]
async fn cancel_only_while_queued() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), "", &fast_sim(dir.path()));
    let d = Daemon::start(dir.path());

    let later = d.send(json!({"to": "+79161234567", "text": "later", "send_at": in_secs(60.0)})).await;
    let (s, v) = d.post(&format!("/v1/messages/{later}/cancel"), &json!({})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["status"], "cancelled");
    let (s, v) = d.post(&format!("/v1/messages/{later}/cancel"), &json!({})).await;
    assert_eq!(s, 409);
    assert_eq!(v["current_status"], "cancelled");

    let now = d.send(msg("+79161234567", "now")).await;
    d.wait_status(now, "delivered", 10).await;
    let (s, v) = d.post(&format!("/v1/messages/{now}/cancel"), &json!({})).await;
    assert_eq!(s, 409);
    assert_eq!(v["current_status"], "delivered");
    assert_eq!(v["type"], "urn:smsgw:problem:not-cancellable");

    let (s, _) = d.post("/v1/messages/999999/cancel", &json!({})).await;
    assert_eq!(s, 404);
    assert!(records(dir.path(), "sim").iter().all(|r| r["id"] != later));
}

#[tokio::test]
async fn idempotent_retry_creates_nothing_new() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), "", &fast_sim(dir.path()));
    let d = Daemon::start(dir.path());
    let body = serde_json::to_vec(&json!({"messages": [msg("+79161234567", "a"), msg("+79161234568", "b")]})).unwrap();
    let (s1, v1) = d.post_raw("/v1/messages", body.clone(), &[("idempotency-key", "order-42")]).await;
    let (s2, v2) = d.post_raw("/v1/messages", body.clone(), &[("idempotency-key", "order-42")]).await;
    assert_eq!((s1, s2), (202, 202));
    assert_eq!(v1, v2);
    let other = serde_json::to_vec(&json!({"messages": [msg("+79161234567", "changed")]})).unwrap();
    let (s3, v3) = d.post_raw("/v1/messages", other, &[("idempotency-key", "order-42")]).await;
    assert_eq!(s3, 409, "{v3}");
    assert_eq!(v3["type"], "urn:smsgw:problem:idempotency-conflict");
    // The same key from another API key is a different key.
    let resp = d
        .http
        .post(format!("{}/v1/messages", d.url))
        .bearer_auth(OTHER_KEY)
        .header("idempotency-key", "order-42")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 202);
    let (_, list) = d.get("/v1/messages").await;
    assert_eq!(list["messages"].as_array().unwrap().len(), 4);
    assert_eq!(list["messages"][0]["api_key"], "other");
}

#[tokio::test]
async fn scheduled_message_waits_for_send_at() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), "", &fast_sim(dir.path()));
    let d = Daemon::start(dir.path());
    let send_at = in_secs(1.5);
    let id = d.send(json!({"to": "+79161234567", "text": "reminder", "send_at": send_at})).await;
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    assert_eq!(d.message(id).await["status"], "queued");
    d.wait_status(id, "delivered", 10).await;
    let rec = &records(dir.path(), "sim")[0];
    let due = chrono::DateTime::parse_from_rfc3339(&send_at).unwrap().timestamp_millis();
    assert!(rec["at_ms"].as_i64().unwrap() >= due, "sent before send_at: {rec}");
}

#[tokio::test]
async fn validity_runs_out() {
    let dir = tempfile::tempdir().unwrap();
    // A route that is always busy: the message is retried until its
    // validity runs out.
    let busy = sim_route(dir.path(), "busy", "", "temporary_fail_fraction = 1.0");
    write_config(dir.path(), "[dispatch]\nretry_base_ms = 200\nretry_max_ms = 400", &busy);
    let d = Daemon::start(dir.path());
    let id = d.send(json!({"to": "+79161234567", "text": "flash sale", "valid_until": in_secs(1.5)})).await;
    let m = d.wait_status(id, "expired", 10).await;
    assert!(m["attempts"].as_i64().unwrap() >= 2, "{m:#}");
    assert!(
        m["history"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["status"] == "queued" && h["detail"].as_str().unwrap().contains("temporary failure"))
    );

    // Scheduled beyond a short validity: expires without an attempt.
    let id2 =
        d.send(json!({"to": "+79161234567", "text": "x", "send_at": in_secs(0.5), "valid_until": in_secs(0.6)})).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let m2 = d.wait_status(id2, "expired", 10).await;
    assert!(m2["attempts"].as_i64().unwrap() <= 1);
}

#[tokio::test]
async fn permanent_failure_ends_as_failed_with_reason() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), "", &sim_route(dir.path(), "nope", "", "fail_fraction = 1.0"));
    let d = Daemon::start(dir.path());
    let id = d.send(msg("+79161234567", "x")).await;
    let m = d.wait_status(id, "failed", 10).await;
    assert_eq!(m["error"]["code"], "sim_rejected");
    assert_eq!(m["attempts"], 1);
}

#[tokio::test]
async fn undelivered_receipt_rolls_up() {
    let dir = tempfile::tempdir().unwrap();
    write_config(
        dir.path(),
        "",
        &sim_route(dir.path(), "sim", "", "delivery_delay_ms = 0\nundelivered_fraction = 1.0"),
    );
    let d = Daemon::start(dir.path());
    let id = d.send(msg("+79161234567", &"y".repeat(200))).await;
    let m = d.wait_status(id, "undelivered", 10).await;
    assert_eq!(m["error"]["code"], "sim_undelivered");
    assert_eq!(m["parts"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn otp_overtakes_a_promotional_backlog() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), "", &sim_route(dir.path(), "sim", "rate = 20\nburst = 1", "delivery_delay_ms = 0"));
    let d = Daemon::start(dir.path());
    let promos: Vec<_> =
        (0..60).map(|i| json!({"to": format!("+7916123{i:04}"), "text": "sale", "priority": "promotional"})).collect();
    let (s, _) = d.post("/v1/messages", &json!({"messages": promos})).await;
    assert_eq!(s, 202);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let otp = d.send(json!({"to": "+79160000000", "text": "code 1234", "priority": "otp"})).await;
    d.wait_status(otp, "delivered", 10).await;
    let recs = records(dir.path(), "sim");
    let pos = recs.iter().position(|r| r["id"] == otp).unwrap();
    // Sent within a few slots of its arrival, not after the backlog.
    assert!(pos < 20, "otp was sent as number {pos} of {}", recs.len());
    d.wait_counts(20, "all delivered", |b| b["delivered"] == 61).await;
}

#[tokio::test]
async fn route_rate_limit_is_obeyed() {
    let dir = tempfile::tempdir().unwrap();
    write_config(
        dir.path(),
        "",
        &sim_route(dir.path(), "sim", "rate = 25\nburst = 5\nconcurrency = 50", "delivery_delay_ms = 0"),
    );
    let d = Daemon::start(dir.path());
    let msgs: Vec<_> = (0..80).map(|i| msg(&format!("+7916123{i:04}"), "hi")).collect();
    let (s, _) = d.post("/v1/messages", &json!({"messages": msgs})).await;
    assert_eq!(s, 202);
    d.wait_counts(30, "all delivered", |b| b["delivered"] == 80).await;
    let mut at: Vec<i64> = records(dir.path(), "sim").iter().map(|r| r["at_ms"].as_i64().unwrap()).collect();
    at.sort();
    assert_eq!(at.len(), 80);
    // Token bucket: in any window of w ms at most burst + rate * w sends
    // (plus one for rounding at the edges).
    for (i, t) in at.iter().enumerate() {
        let in_1s = at[i..].iter().take_while(|u| **u < t + 1000).count();
        assert!(in_1s <= 5 + 25 + 1, "{in_1s} sends in one second starting at {t}");
    }
    let span = (at[79] - at[0]) as f64 / 1000.0;
    assert!(span >= (80.0 - 5.0) / 25.0 * 0.9, "80 messages went out in {span} s");
}

#[tokio::test]
async fn routes_are_chosen_by_prefix_or_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let routes = format!(
        "{}{}",
        sim_route(dir.path(), "de", "prefixes = [\"+49\"]", "delivery_delay_ms = 0"),
        sim_route(dir.path(), "rest", "", "delivery_delay_ms = 0")
    );
    write_config(dir.path(), "", &routes);
    let d = Daemon::start(dir.path());
    let a = d.send(msg("+4915112345678", "hallo")).await;
    let b = d.send(msg("+79161234567", "privet")).await;
    let c = d.send(json!({"to": "+4915112345678", "text": "via rest", "route": "rest"})).await;
    for id in [a, b, c] {
        d.wait_status(id, "delivered", 10).await;
    }
    let per: HashMap<&str, Vec<i64>> = [("de", records(dir.path(), "de")), ("rest", records(dir.path(), "rest"))]
        .iter()
        .map(|(n, r)| {
            let mut ids: Vec<i64> = r.iter().map(|x| x["id"].as_i64().unwrap()).collect();
            // The route sends several at once: the order it records them in is not the order sent.
            ids.sort();
            (*n, ids)
        })
        .collect();
    assert_eq!(per["de"], [a]);
    assert_eq!(per["rest"], [b, c]);
    let (s, v) = d.post("/v1/messages", &json!({"to": "+79161234567", "text": "x", "route": "de"})).await;
    assert_eq!(s, 422);
    assert_eq!(v["errors"][0]["field"], "route");
    let (s, v) = d.post("/v1/messages", &json!({"to": "+79161234567", "text": "x", "route": "nope"})).await;
    assert_eq!(s, 422, "{v}");
}
