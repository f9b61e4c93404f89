//! Trigger rules end to end through the real binary, with short real
//! delays: a step fires after its delay and not before; `cancel_on`
//! cancels a key's pending steps (only that key's), also between the
//! steps of a chain; a fallback is sent only when no reaction came; limits
//! per key and per recipient; a replayed event id makes nothing new; a
//! missing template variable is the run's error and sends nothing; a cancel
//! racing the timer ends each message either cancelled or sent, never both;
//! kill -9 in the middle of a delay keeps the schedule, a timer that fell
//! due while the daemon was stopped fires once, and one whose validity
//! passed meanwhile expires; the rules API checks, changes and protects the
//! config file's rules.

mod common;
use common::*;
use serde_json::{Value, json};
use std::time::Duration;

const NUMBER: &str = "+79161234567";
const ADMIN_KEY: &str = "admin-key-0123456789abcdef";

const RULES: &str = r#"
[[rules]]
name = "remind"
on = "cart.abandoned"
cancel_on = ["order.paid"]
class = "transactional"
[[rules.steps]]
after = "2s"
text = "Step one for {{ name }}"
[[rules.steps]]
after = "4s"
text = "Step two for {{ name }}"

[[rules]]
name = "nudge"
on = "order.shipped"
class = "transactional"
fallback = { within = "2s", reaction = ["push.opened"] }
[[rules.steps]]
text = "Shipped {{ order }}"

[[rules]]
name = "once"
on = "promo.seen"
class = "transactional"
limit = { per = "key" }
[[rules.steps]]
text = "Once per key"

[[rules]]
name = "daily"
on = "visit"
class = "transactional"
limit = { per = "recipient", within = "1h" }
[[rules.steps]]
text = "Once per hour"
"#;

fn start(dir: &std::path::Path, rules: &str) -> Daemon {
    let routes = format!(
        "[[api_keys]]\nname = \"ops\"\nkey = \"{ADMIN_KEY}\"\nscopes = [\"admin\"]\n{}",
        sim_route(dir, "sim", "", "delivery_delay_ms = 0")
    );
    write_config(dir, rules, &routes);
    Daemon::start(dir)
}

async fn event(d: &Daemon, body: Value) -> Value {
    let (s, v) = d.post("/v1/events", &body).await;
    assert_eq!(s, 202, "{v}");
    v
}

fn sent(d: &Daemon) -> Vec<String> {
    records(&d.dir, "sim").iter().map(|r| r["text"].as_str().unwrap_or_default().to_string()).collect()
}

fn ids(run: &Value) -> Vec<i64> {
    run["messages"].as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect()
}

#[tokio::test]
async fn delays_cancels_chains_fallbacks_limits_and_replays() {
    let dir = tempfile::tempdir().unwrap();
    let d = start(dir.path(), RULES);

    // Two carts abandoned: each schedules two steps, nothing goes at once.
    let a =
        event(&d, json!({"type": "cart.abandoned", "recipient": NUMBER, "key": "cart-a", "data": {"name": "Anna"}}))
            .await;
    assert_eq!(a["duplicate"], false, "{a}");
    assert_eq!(a["runs"][0]["rule"], "remind");
    assert_eq!(a["runs"][0]["outcome"], "scheduled");
    let a_ids = ids(&a["runs"][0]);
    assert_eq!(a_ids.len(), 2);
    let b = event(
        &d,
        json!({"type": "cart.abandoned", "recipient": "+79161234568", "key": "cart-b", "data": {"name": "Boris"}}),
    )
    .await;
    let b_ids = ids(&b["runs"][0]);
    let first = d.message(a_ids[0]).await;
    assert_eq!(first["status"], "queued", "{first}");
    assert!(first["send_at"].is_string(), "a step waits for its time: {first}");
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(sent(&d).is_empty(), "nothing before the delay: {:?}", sent(&d));

    // Step one goes after ~2 s; the order is paid between the steps: step
    // two of cart A is cancelled by that event, cart B's chain goes on.
    d.wait_status(a_ids[0], "delivered", 10).await;
    let paid = event(&d, json!({"type": "order.paid", "recipient": NUMBER, "key": "cart-a"})).await;
    assert!(paid["runs"].as_array().unwrap().is_empty(), "{paid}");
    let cancelled = d.wait_status(a_ids[1], "cancelled", 5).await;
    assert!(cancelled["history"].to_string().contains("order.paid"), "{cancelled}");
    d.wait_status(b_ids[1], "delivered", 10).await;
    let texts = sent(&d);
    assert!(texts.contains(&"Step one for Anna".to_string()), "{texts:?}");
    assert!(!texts.contains(&"Step two for Anna".to_string()), "{texts:?}");
    assert!(texts.contains(&"Step two for Boris".to_string()), "{texts:?}");

    // Fallback: a reaction within the window means nothing is sent.
    let s1 =
        event(&d, json!({"type": "order.shipped", "recipient": NUMBER, "key": "o1", "data": {"order": "o1"}})).await;
    let s2 =
        event(&d, json!({"type": "order.shipped", "recipient": NUMBER, "key": "o2", "data": {"order": "o2"}})).await;
    event(&d, json!({"type": "push.opened", "recipient": NUMBER, "key": "o1"})).await;
    d.wait_status(ids(&s1["runs"][0])[0], "cancelled", 5).await;
    d.wait_status(ids(&s2["runs"][0])[0], "delivered", 10).await;
    let texts = sent(&d);
    assert!(texts.contains(&"Shipped o2".to_string()) && !texts.contains(&"Shipped o1".to_string()), "{texts:?}");
    // A reaction that arrived before its trigger (out of order) counts too.
    event(&d, json!({"type": "push.opened", "recipient": NUMBER, "key": "o3"})).await;
    let s3 = event(
        &d,
        json!({"type": "order.shipped", "recipient": NUMBER, "key": "o3", "data": {"order": "o3"},
                              "occurred_at": in_secs(-5.0)}),
    )
    .await;
    assert_eq!(s3["runs"][0]["outcome"], "cancelled", "{s3}");
    assert!(ids(&s3["runs"][0]).is_empty());

    // Limits: once per key; once per recipient within an hour.
    let k1 = event(&d, json!({"type": "promo.seen", "recipient": NUMBER, "key": "k"})).await;
    let k2 = event(&d, json!({"type": "promo.seen", "recipient": NUMBER, "key": "k"})).await;
    let k3 = event(&d, json!({"type": "promo.seen", "recipient": NUMBER, "key": "other"})).await;
    assert_eq!(k1["runs"][0]["outcome"], "scheduled");
    assert_eq!(k2["runs"][0]["outcome"], "limited", "{k2}");
    assert_eq!(k3["runs"][0]["outcome"], "scheduled");
    let v1 = event(&d, json!({"type": "visit", "recipient": NUMBER})).await;
    let v2 = event(&d, json!({"type": "visit", "recipient": "8 916 123-45-67"})).await;
    let v3 = event(&d, json!({"type": "visit", "recipient": "+79160000000"})).await;
    assert_eq!(v1["runs"][0]["outcome"], "scheduled");
    assert_eq!(v2["runs"][0]["outcome"], "limited", "the same number written otherwise: {v2}");
    assert_eq!(v3["runs"][0]["outcome"], "scheduled");

    // A replayed id: the first answer, nothing new.
    let body = json!({"events": [{"id": "evt-1", "type": "promo.seen", "recipient": NUMBER, "key": "replayed"}]});
    let (s, first) = d.post("/v1/events", &body).await;
    assert_eq!(s, 202, "{first}");
    let (s, again) = d.post("/v1/events", &body).await;
    assert_eq!(s, 202);
    assert_eq!(again["events"][0]["duplicate"], true, "{again}");
    assert_eq!(again["events"][0]["event_id"], first["events"][0]["event_id"]);
    assert_eq!(again["events"][0]["runs"], first["events"][0]["runs"], "the first outcome comes back");

    // A missing variable: the run's error names it; no half-filled text.
    let e = event(&d, json!({"type": "cart.abandoned", "recipient": NUMBER, "key": "cart-c", "data": {}})).await;
    assert_eq!(e["runs"][0]["outcome"], "error", "{e}");
    assert!(e["runs"][0]["detail"].as_str().unwrap().contains("`name`"), "{e}");
    assert!(ids(&e["runs"][0]).is_empty());

    // Bad events are refused by field, all or nothing.
    let (s, v) = d
        .post(
            "/v1/events",
            &json!({"events": [{"type": "visit", "recipient": NUMBER},
                               {"type": "has space", "recipient": "nope", "tz": "Mars/Base", "occurred_at": in_secs(3.0 * 86400.0)}]}),
        )
        .await;
    assert_eq!(s, 422, "{v}");
    let fields: Vec<&str> = v["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap()).collect();
    assert!(fields.contains(&"events[1].type") && fields.contains(&"events[1].recipient"), "{fields:?}");
}

#[tokio::test]
async fn a_cancel_racing_the_timer_ends_each_message_one_way() {
    let dir = tempfile::tempdir().unwrap();
    let rules = r#"
[[rules]]
name = "race"
on = "started"
cancel_on = ["stopped"]
class = "transactional"
[[rules.steps]]
after = "1s"
text = "Race {{ n }}"
"#;
    let d = start(dir.path(), rules);
    let events: Vec<Value> = (0..40)
        .map(|n| json!({"type": "started", "recipient": format!("+7916100{n:04}"), "key": format!("k{n}"), "data": {"n": n}}))
        .collect();
    let (s, v) = d.post("/v1/events", &json!({ "events": events })).await;
    assert_eq!(s, 202, "{v}");
    let ids: Vec<i64> = v["events"].as_array().unwrap().iter().map(|e| ids(&e["runs"][0])[0]).collect();
    // The cancels arrive right around the due time, one by one.
    tokio::time::sleep(Duration::from_millis(900)).await;
    for n in 0..40 {
        event(&d, json!({"type": "stopped", "recipient": format!("+7916100{n:04}"), "key": format!("k{n}")})).await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let texts = sent(&d);
    let (mut went, mut stopped) = (0, 0);
    for (n, id) in ids.iter().enumerate() {
        let m = d.message(*id).await;
        let on_wire = texts.iter().filter(|t| **t == format!("Race {n}")).count();
        match m["status"].as_str().unwrap() {
            "cancelled" => {
                assert_eq!(on_wire, 0, "cancelled yet sent: {m}");
                stopped += 1;
            }
            "delivered" | "submitted" => {
                assert_eq!(on_wire, 1, "sent once: {m}");
                went += 1;
            }
            other => panic!("message {id} ended {other}: {m}"),
        }
    }
    assert_eq!(went + stopped, 40);
}

#[tokio::test]
async fn schedules_survive_kill_9_and_fire_once_after_a_stop() {
    let dir = tempfile::tempdir().unwrap();
    let rules = r#"
[[rules]]
name = "later"
on = "later"
class = "transactional"
[[rules.steps]]
after = "3s"
text = "Later {{ n }}"

[[rules]]
name = "brief"
on = "brief"
class = "transactional"
valid_for = "2s"
[[rules.steps]]
after = "1s"
text = "Brief"
"#;
    let d = start(dir.path(), rules);
    let mid = event(&d, json!({"type": "later", "recipient": NUMBER, "data": {"n": 1}})).await;
    let mid_id = ids(&mid["runs"][0])[0];
    tokio::time::sleep(Duration::from_millis(1000)).await;
    d.kill9();
    // Restarted in the middle of the delay: the step still fires.
    let d = Daemon::start(dir.path());
    d.wait_status(mid_id, "delivered", 10).await;

    // Due while the daemon is stopped: fires once at start. Past its
    // validity by then: expires instead.
    let due = event(&d, json!({"type": "later", "recipient": NUMBER, "data": {"n": 2}})).await;
    let due_id = ids(&due["runs"][0])[0];
    let gone = event(&d, json!({"type": "brief", "recipient": NUMBER})).await;
    let gone_id = ids(&gone["runs"][0])[0];
    d.kill9();
    tokio::time::sleep(Duration::from_millis(4500)).await;
    let d = Daemon::start(dir.path());
    d.wait_status(due_id, "delivered", 10).await;
    d.wait_status(gone_id, "expired", 10).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let texts = sent(&d);
    assert_eq!(texts.iter().filter(|t| *t == "Later 2").count(), 1, "{texts:?}");
    assert!(!texts.contains(&"Brief".to_string()), "{texts:?}");
}

async fn admin(d: &Daemon, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut req = d.http.request(method, format!("{}{path}", d.url)).bearer_auth(ADMIN_KEY);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("request");
    let s = resp.status().as_u16();
    (s, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn the_rules_api_checks_changes_and_protects_config_rules() {
    use reqwest::Method;
    let dir = tempfile::tempdir().unwrap();
    let d = start(dir.path(), RULES);
    let (s, list) = admin(&d, Method::GET, "/v1/rules", None).await;
    assert_eq!(s, 200);
    assert_eq!(list["rules"].as_array().unwrap().len(), 4, "{list}");
    assert_eq!(list["rules"][0]["origin"], "config");

    // Bad fields named; an unknown route named.
    let (s, v) = admin(
        &d,
        Method::POST,
        "/v1/rules",
        Some(
            json!({"name": "Bad", "on": "x", "route": "nowhere", "steps": [{"after": "soon", "text": "{{ unclosed"}]}),
        ),
    )
    .await;
    assert_eq!(s, 422, "{v}");
    let fields: Vec<&str> = v["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap()).collect();
    for f in ["name", "route", "steps[0].after", "steps[0].text"] {
        assert!(fields.contains(&f), "{f} not in {fields:?}");
    }

    // Create, use, disable, delete.
    let rule =
        json!({"name": "welcome", "on": "signup", "class": "transactional", "steps": [{"text": "Welcome {{ name }}"}]});
    let (s, v) = admin(&d, Method::POST, "/v1/rules", Some(rule.clone())).await;
    assert_eq!(s, 201, "{v}");
    let (s, _) = admin(&d, Method::POST, "/v1/rules", Some(rule)).await;
    assert_eq!(s, 409);
    let (s, _) = d.post("/v1/rules", &json!({"name": "x", "on": "y", "steps": [{"text": "z"}]})).await;
    assert_eq!(s, 403, "changing rules needs admin");
    let e = event(&d, json!({"type": "signup", "recipient": NUMBER, "data": {"name": "Vera"}})).await;
    d.wait_status(ids(&e["runs"][0])[0], "delivered", 10).await;
    let (s, v) = admin(&d, Method::PATCH, "/v1/rules/welcome", Some(json!({"enabled": false}))).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["enabled"], false);
    let e = event(&d, json!({"type": "signup", "recipient": NUMBER, "data": {"name": "Vera"}})).await;
    assert!(e["runs"].as_array().unwrap().is_empty(), "a disabled rule does not run: {e}");
    let (s, v) =
        admin(&d, Method::PATCH, "/v1/rules/welcome", Some(json!({"steps": [{"after": "-1s", "text": "x"}]}))).await;
    assert_eq!(s, 422, "{v}");
    let (s, _) = admin(&d, Method::PATCH, "/v1/rules/remind", Some(json!({"enabled": false}))).await;
    assert_eq!(s, 409, "a config rule is changed in the config file");
    let (s, _) = admin(&d, Method::DELETE, "/v1/rules/remind", None).await;
    assert_eq!(s, 409);
    let (s, _) = admin(&d, Method::DELETE, "/v1/rules/welcome", None).await;
    assert_eq!(s, 204);
    let (s, _) = admin(&d, Method::GET, "/v1/rules/welcome", None).await;
    assert_eq!(s, 404);
    // Rules made through the API survive a restart.
    let (s, _) =
        admin(&d, Method::POST, "/v1/rules", Some(json!({"name": "kept", "on": "k", "steps": [{"text": "k"}]}))).await;
    assert_eq!(s, 201);
    d.kill9();
    let d = Daemon::start(dir.path());
    let (s, v) = admin(&d, Method::GET, "/v1/rules/kept", None).await;
    assert_eq!(s, 200, "{v}");
}
