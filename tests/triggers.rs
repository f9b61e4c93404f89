//! Trigger rules end to end through the real binary: events in over HTTP,
//! scheduled messages on the sim route after short real delays, cancels,
//! chains, fallbacks, limits, idempotency, template errors, restarts, and
//! the rules API.

mod common;

use common::{Daemon, KEY, sim_route, write_config};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const RU: &str = "+79161234567";

fn setup(rules: &str) -> (tempfile::TempDir, Daemon) {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), rules, &sim_route(dir.path(), "sim", "", "delivery_delay_ms = 100"));
    let d = Daemon::start(dir.path());
    (dir, d)
}

fn event(kind: &str, key: &str, data: Value) -> Value {
    json!({"type": kind, "recipient": RU, "key": key, "data": data})
}

async fn post_event(d: &Daemon, e: Value) -> Value {
    let (s, v) = d.post("/v1/events", &e).await;
    assert_eq!(s, 202, "{v}");
    v["events"][0].clone()
}

fn first_message(ev: &Value) -> i64 {
    ev["runs"][0]["messages"][0].as_i64().unwrap_or_else(|| panic!("no message scheduled: {ev}"))
}

fn sent(status: &Value) -> bool {
    status == "submitted" || status == "delivered"
}

async fn wait_sent(d: &Daemon, id: i64, secs: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let m = d.message(id).await;
        if sent(&m["status"]) {
            return m;
        }
        assert!(Instant::now() < deadline, "message {id} never went out: {m:#}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

const CART: &str = r#"
[[rules]]
name = "cart"
on = "cart.abandoned"
cancel_on = ["order.paid"]
class = "transactional"
[[rules.steps]]
after = "2s"
text = "{{ name }}, your cart is waiting"
"#;

#[tokio::test]
async fn a_delay_fires_and_cancel_on_cancels_that_key_only() {
    let (_dir, d) = setup(CART);
    let t0 = Instant::now();
    let a = post_event(&d, event("cart.abandoned", "cart-a", json!({"name": "Anna"}))).await;
    let b = post_event(&d, event("cart.abandoned", "cart-b", json!({"name": "Boris"}))).await;
    assert_eq!(a["runs"][0]["rule"], "cart");
    assert_eq!(a["runs"][0]["outcome"], "scheduled");
    let (ma, mb) = (first_message(&a), first_message(&b));
    let m = d.message(ma).await;
    assert_eq!(m["status"], "queued");
    assert_eq!(m["text"], "Anna, your cart is waiting");

    let paid = post_event(&d, event("order.paid", "cart-a", json!({}))).await;
    assert_eq!(paid["cancelled"], json!([ma]));
    assert!(paid["runs"].as_array().unwrap().is_empty());

    wait_sent(&d, mb, 10).await;
    assert!(t0.elapsed() >= Duration::from_millis(1900), "sent before its delay");
    let a = d.message(ma).await;
    assert_eq!(a["status"], "cancelled");
    assert_eq!(a["trigger"], json!({"rule": "cart", "step": 1, "key": "cart-a", "cancelled_by": "order.paid"}));
    let last = a["history"].as_array().unwrap().last().unwrap().clone();
    assert!(last["detail"].as_str().unwrap().contains("order.paid"), "{last}");
}

#[tokio::test]
async fn a_cancel_racing_the_timer_ends_one_way_only() {
    let rule = CART.replace("after = \"2s\"", "after = \"1s\"");
    let (_dir, d) = setup(&rule);
    for i in 0..3 {
        let key = format!("race-{i}");
        let ev = post_event(&d, event("cart.abandoned", &key, json!({"name": "R"}))).await;
        let id = first_message(&ev);
        tokio::time::sleep(Duration::from_millis(950 + 50 * i)).await;
        let paid = post_event(&d, event("order.paid", &key, json!({}))).await;
        let cancelled = paid["cancelled"].as_array().unwrap().iter().any(|v| v == id);
        tokio::time::sleep(Duration::from_millis(600)).await;
        let m = d.message(id).await;
        if cancelled {
            assert_eq!(m["status"], "cancelled", "{m:#}");
        } else {
            assert!(sent(&m["status"]) || m["status"] == "sending", "{m:#}");
            let h = m["history"].as_array().unwrap();
            assert!(h.iter().all(|e| e["status"] != "cancelled"), "{m:#}");
        }
    }
}

#[tokio::test]
async fn a_cancel_between_two_steps_stops_the_second() {
    let rule = r#"
[[rules]]
name = "chain"
on = "cart.abandoned"
cancel_on = ["order.paid"]
[[rules.steps]]
after = "1s"
text = "reminder"
[[rules.steps]]
after = "4s"
text = "discount {{ code }}"
"#;
    let (_dir, d) = setup(rule);
    let ev = post_event(&d, event("cart.abandoned", "c1", json!({"code": "X5"}))).await;
    let ids: Vec<i64> = ev["runs"][0]["messages"].as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect();
    assert_eq!(ids.len(), 2);
    wait_sent(&d, ids[0], 10).await;
    let paid = post_event(&d, event("order.paid", "c1", json!({}))).await;
    assert_eq!(paid["cancelled"], json!([ids[1]]));
    assert_eq!(d.message(ids[1]).await["status"], "cancelled");
}

#[tokio::test]
async fn a_fallback_sends_only_without_a_reaction() {
    let rule = r#"
[[rules]]
name = "push-fallback"
on = "push.sent"
fallback = { within = "2s", reaction = ["push.opened"] }
[[rules.steps]]
after = "0s"
text = "You have a new message"
"#;
    let (_dir, d) = setup(rule);
    let read = post_event(&d, event("push.sent", "p1", json!({}))).await;
    let unread = post_event(&d, event("push.sent", "p2", json!({}))).await;
    post_event(&d, event("push.opened", "p1", json!({}))).await;
    wait_sent(&d, first_message(&unread), 10).await;
    assert_eq!(d.message(first_message(&read)).await["status"], "cancelled");

    // A reaction already there (posted before the trigger, happened after it): nothing scheduled.
    post_event(&d, json!({"type": "push.opened", "recipient": RU, "key": "p3", "occurred_at": common::in_secs(-1.0)}))
        .await;
    let late = post_event(
        &d,
        json!({"type": "push.sent", "recipient": RU, "key": "p3", "occurred_at": common::in_secs(-2.0)}),
    )
    .await;
    assert_eq!(late["runs"][0]["outcome"], "cancelled");
    assert_eq!(late["runs"][0]["messages"], json!([]));
}

#[tokio::test]
async fn limits_per_key_and_per_recipient() {
    let rules = r#"
[[rules]]
name = "once-per-cart"
on = "cart.abandoned"
limit = { per = "key" }
[[rules.steps]]
after = "1h"
text = "cart"
[[rules]]
name = "welcome"
on = "visit"
limit = { per = "recipient", within = "48h" }
[[rules.steps]]
after = "1h"
text = "welcome"
"#;
    let (_dir, d) = setup(rules);
    let first = post_event(&d, event("cart.abandoned", "k1", json!({}))).await;
    let again = post_event(&d, event("cart.abandoned", "k1", json!({}))).await;
    let other = post_event(&d, event("cart.abandoned", "k2", json!({}))).await;
    assert_eq!(first["runs"][0]["outcome"], "scheduled");
    assert_eq!(again["runs"][0]["outcome"], "limited");
    assert_eq!(again["runs"][0]["messages"], json!([]));
    assert_eq!(other["runs"][0]["outcome"], "scheduled");

    let v1 = post_event(&d, event("visit", "a", json!({}))).await;
    let v2 = post_event(&d, event("visit", "b", json!({}))).await;
    assert_eq!(v1["runs"][0]["outcome"], "scheduled");
    assert_eq!(v2["runs"][0]["outcome"], "limited");
    assert!(v2["runs"][0]["detail"].as_str().unwrap().contains("recipient"));
}

#[tokio::test]
async fn a_replayed_event_id_makes_nothing_new() {
    let (_dir, d) = setup(&CART.replace("after = \"2s\"", "after = \"1h\""));
    let e = json!({"id": "evt-1", "type": "cart.abandoned", "recipient": "8 916 123-45-67", "key": "k", "data": {"name": "A"}});
    let first = post_event(&d, e.clone()).await;
    let again = post_event(&d, e).await;
    assert_eq!(first["duplicate"], false);
    assert_eq!(again["duplicate"], true);
    assert_eq!(again["event_id"], first["event_id"]);
    assert_eq!(again["runs"], first["runs"]);
    let (_, q) = d.get("/v1/queue").await;
    assert_eq!(q["by_status"]["queued"], 1, "{q}");
    assert_eq!(d.message(first_message(&first)).await["to"], RU);
}

#[tokio::test]
async fn a_missing_variable_is_the_runs_error_and_sends_nothing() {
    let rule = r#"
[[rules]]
name = "code"
on = "signup"
[[rules.steps]]
after = "0s"
text = "hello"
[[rules.steps]]
after = "1s"
text = "your code {{ code }}"
"#;
    let (_dir, d) = setup(rule);
    let ev = post_event(&d, event("signup", "u1", json!({"name": "x"}))).await;
    assert_eq!(ev["runs"][0]["outcome"], "error");
    let detail = ev["runs"][0]["detail"].as_str().unwrap();
    assert!(detail.contains("step 2") && detail.contains("`code`"), "{detail}");
    assert_eq!(ev["runs"][0]["messages"], json!([]));
    let (_, q) = d.get("/v1/queue").await;
    assert!(q["by_status"].as_object().unwrap().is_empty(), "{q}");
}

#[tokio::test]
async fn bad_events_are_refused_naming_the_field() {
    let (_dir, d) = setup(CART);
    let (s, v) = d
        .post(
            "/v1/events",
            &json!({"events": [
                {"type": "x", "recipient": RU},
                {"type": "x", "recipient": "not a number"},
                {"type": "x", "recipient": RU, "tz": "Mars/Olympus", "data": [1]},
            ]}),
        )
        .await;
    assert_eq!(s, 422, "{v}");
    let fields: Vec<&str> = v["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap()).collect();
    assert_eq!(fields, ["events[1].recipient", "events[2].tz", "events[2].data"], "{v}");
    let (s, v) = d.post("/v1/events", &json!({"type": "x", "recipient": RU, "colour": 1})).await;
    assert_eq!(s, 422, "{v}");
}

#[tokio::test]
async fn a_timer_survives_kill_9_in_the_middle_of_its_delay() {
    let dir = tempfile::tempdir().unwrap();
    let rule = CART.replace("after = \"2s\"", "after = \"3s\"");
    write_config(dir.path(), &rule, &sim_route(dir.path(), "sim", "", "delivery_delay_ms = 100"));
    let d = Daemon::start(dir.path());
    let ev = post_event(&d, event("cart.abandoned", "k", json!({"name": "K"}))).await;
    let id = first_message(&ev);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    d.kill9();
    let d = Daemon::start(dir.path());
    wait_sent(&d, id, 10).await;
    let records = common::records(dir.path(), "sim");
    assert_eq!(records.len(), 1, "{records:?}");
}

#[tokio::test]
async fn timers_due_while_stopped_fire_once_at_start_unless_expired() {
    let dir = tempfile::tempdir().unwrap();
    let rules = r#"
[[rules]]
name = "keeps"
on = "e"
valid_for = "1h"
[[rules.steps]]
after = "1s"
text = "still good"
[[rules]]
name = "stale"
on = "e"
valid_for = "1s"
[[rules.steps]]
after = "1s"
text = "too late"
"#;
    write_config(dir.path(), rules, &sim_route(dir.path(), "sim", "", "delivery_delay_ms = 100"));
    let d = Daemon::start(dir.path());
    let ev = post_event(&d, event("e", "k", json!({}))).await;
    let ids: Vec<i64> = ev["runs"].as_array().unwrap().iter().map(|r| r["messages"][0].as_i64().unwrap()).collect();
    assert_eq!(d.terminate(), Some(0));
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let d = Daemon::start(dir.path());
    wait_sent(&d, ids[0], 10).await;
    d.wait_status(ids[1], "expired", 10).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let texts: Vec<Value> = common::records(dir.path(), "sim").into_iter().map(|r| r["text"].clone()).collect();
    assert_eq!(texts.iter().filter(|t| *t == "still good").count(), 1, "{texts:?}");
}

async fn call(d: &Daemon, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut req = d.http.request(method, format!("{}{path}", d.url)).bearer_auth(KEY);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let s = resp.status().as_u16();
    (s, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn the_rules_api_creates_lists_changes_and_deletes() {
    use reqwest::Method;
    let (_dir, d) = setup(CART);
    let rule = json!({"name": "api-rule", "on": "signup", "steps": [{"after": "1h", "text": "hi {{ name }}"}]});
    let (s, v) = call(&d, Method::POST, "/v1/rules", Some(rule.clone())).await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["origin"], "api");
    let (s, _) = call(&d, Method::POST, "/v1/rules", Some(rule)).await;
    assert_eq!(s, 409);

    let (s, v) = d.get("/v1/rules").await;
    assert_eq!(s, 200);
    let names: Vec<&str> = v["rules"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["api-rule", "cart"]);

    // In force at once.
    let ev = post_event(&d, event("signup", "u", json!({"name": "N"}))).await;
    assert_eq!(ev["runs"][0]["rule"], "api-rule");

    let (s, v) = call(&d, Method::PATCH, "/v1/rules/api-rule", Some(json!({"enabled": false}))).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["enabled"], false);
    // A rule read and sent back whole is accepted as it is.
    let (s, back) = call(&d, Method::PATCH, "/v1/rules/api-rule", Some(v.clone())).await;
    assert_eq!(s, 200, "{back}");
    assert_eq!(back["steps"], v["steps"]);
    let ev = post_event(&d, event("signup", "u2", json!({"name": "N"}))).await;
    assert_eq!(ev["runs"], json!([]));

    let (s, v) =
        call(&d, Method::PATCH, "/v1/rules/api-rule", Some(json!({"steps": [{"after": "soon", "text": "x"}]}))).await;
    assert_eq!(s, 422, "{v}");
    assert_eq!(v["errors"][0]["field"], "steps[0].after", "{v}");
    let (s, v) =
        call(&d, Method::POST, "/v1/rules", Some(json!({"name": "r2", "on": "x", "steps": [{"after": "1h"}]}))).await;
    assert_eq!(s, 422, "{v}");
    assert!(v.to_string().contains("steps[0]"), "{v}");

    let (s, v) = call(&d, Method::PATCH, "/v1/rules/cart", Some(json!({"enabled": false}))).await;
    assert_eq!(s, 409, "{v}");
    let (s, _) = call(&d, Method::DELETE, "/v1/rules/cart", None).await;
    assert_eq!(s, 409);

    let (s, _) = call(&d, Method::DELETE, "/v1/rules/api-rule", None).await;
    assert_eq!(s, 204);
    let (s, _) = d.get("/v1/rules/api-rule").await;
    assert_eq!(s, 404);

    let (_, doc) = d.get("/openapi.json").await;
    for (path, method) in [
        ("/v1/events", "post"),
        ("/v1/rules", "get"),
        ("/v1/rules", "post"),
        ("/v1/rules/{name}", "get"),
        ("/v1/rules/{name}", "patch"),
        ("/v1/rules/{name}", "delete"),
    ] {
        assert!(doc["paths"][path][method].is_object(), "{method} {path} missing from the OpenAPI document");
    }
}

#[tokio::test]
async fn changing_rules_needs_admin_and_posting_events_needs_send() {
    use reqwest::Method;
    let dir = tempfile::tempdir().unwrap();
    let keys = r#"
[[api_keys]]
name = "reader"
key = "reader-key-0123456789abcdef"
scopes = ["read"]
"#;
    let text = format!("{CART}\n{keys}");
    write_config(dir.path(), &text, &sim_route(dir.path(), "sim", "", ""));
    // The harness's own keys get a scopes line so the file is not read as legacy (all admin).
    let path = dir.path().join("smsgw.toml");
    let cfg = std::fs::read_to_string(&path)
        .unwrap()
        .replace(&format!("key = \"{KEY}\"\n"), &format!("key = \"{KEY}\"\nscopes = [\"admin\"]\n"));
    std::fs::write(&path, cfg).unwrap();
    let d = Daemon::start(dir.path());
    let as_reader = |m: Method, p: &str, b: Option<Value>| {
        let mut req = d.http.request(m, format!("{}{p}", d.url)).bearer_auth("reader-key-0123456789abcdef");
        if let Some(b) = b {
            req = req.json(&b);
        }
        req.send()
    };
    assert_eq!(as_reader(Method::GET, "/v1/rules", None).await.unwrap().status().as_u16(), 200);
    let rule = json!({"name": "r", "on": "x", "steps": [{"after": "1h", "text": "t"}]});
    assert_eq!(as_reader(Method::POST, "/v1/rules", Some(rule)).await.unwrap().status().as_u16(), 403);
    let ev = event("cart.abandoned", "k", json!({"name": "n"}));
    assert_eq!(as_reader(Method::POST, "/v1/events", Some(ev)).await.unwrap().status().as_u16(), 403);
    let (s, _) = call(&d, Method::DELETE, "/v1/rules/cart", None).await;
    assert_eq!(s, 409);
}

#[tokio::test]
async fn a_bad_rule_in_the_config_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let rules = r#"
[[rules]]
name = "ok"
on = "a"
[[rules.steps]]
after = "1h"
text = "x"
[[rules]]
name = "bad"
on = "a"
route = "nowhere"
[[rules.steps]]
after = "1 hour"
text = "x"
"#;
    write_config(dir.path(), rules, &sim_route(dir.path(), "sim", "", ""));
    let err = Daemon::try_start(dir.path()).err().expect("refused");
    assert!(err.contains("rules[1].steps[0].after"), "{err}");
    assert!(err.contains("rules[1].route"), "{err}");
}

#[tokio::test]
async fn a_goal_event_counts_a_conversion_once_and_only_for_its_key() {
    let rule = r#"
[[rules]]
name = "winback"
on = "cart.abandoned"
goal = { event = "order.paid", within = "7d" }
[[rules.steps]]
after = "0s"
text = "come back"
"#;
    let (dir, d) = setup(rule);
    let a = post_event(&d, event("cart.abandoned", "ka", json!({}))).await;
    let b = post_event(&d, event("cart.abandoned", "kb", json!({}))).await;
    let (ma, mb) = (first_message(&a), first_message(&b));
    wait_sent(&d, ma, 10).await;
    wait_sent(&d, mb, 10).await;
    post_event(&d, event("order.paid", "ka", json!({}))).await;
    post_event(&d, event("order.paid", "ka", json!({}))).await;
    let c = rusqlite::Connection::open(dir.path().join("smsgw.db")).unwrap();
    let rows: Vec<(i64, String)> = c
        .prepare("SELECT message_id, rule FROM conversions")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(rows, [(ma, "winback".to_string())]);
}

#[tokio::test]
async fn another_keys_event_cancels_nothing_of_mine() {
    let (_dir, d) = setup(&CART.replace("after = \"2s\"", "after = \"1h\""));
    let mine = post_event(&d, event("cart.abandoned", "shared", json!({"name": "M"}))).await;
    let resp = d
        .http
        .post(format!("{}/v1/events", d.url))
        .bearer_auth(common::OTHER_KEY)
        .json(&event("order.paid", "shared", json!({})))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 202);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["events"][0]["cancelled"], json!([]));
    assert_eq!(d.message(first_message(&mine)).await["status"], "queued");
}

#[tokio::test]
async fn a_reload_brings_the_files_rules_into_force() {
    let dir = tempfile::tempdir().unwrap();
    let routes = sim_route(dir.path(), "sim", "", "");
    write_config(dir.path(), CART, &routes);
    let d = Daemon::start(dir.path());
    let ev = post_event(&d, event("signup", "u", json!({}))).await;
    assert_eq!(ev["runs"], json!([]));
    let welcome = "[[rules]]\nname = \"welcome\"\non = \"signup\"\n[[rules.steps]]\nafter = \"1h\"\ntext = \"hi\"\n";
    write_config(dir.path(), welcome, &routes);
    d.signal("HUP");
    // The rules in force change once the file's are synced and compiled.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut n = 0;
    let ev = loop {
        n += 1;
        let ev = post_event(&d, event("signup", &format!("u{n}"), json!({}))).await;
        if !ev["runs"].as_array().unwrap().is_empty() {
            break ev;
        }
        assert!(Instant::now() < deadline, "rules never reloaded");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(ev["runs"][0]["rule"], "welcome");
    let (_, v) = d.get("/v1/rules").await;
    let names: Vec<&str> = v["rules"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["welcome"]);
    assert_eq!(ev["runs"][0]["outcome"], "scheduled");
}

/// A runaway rule's scheduled steps are cancelled at once, not one id at a
/// time: more than one write batch of them, only the caller's, and nothing
/// the filter does not name.
#[tokio::test]
async fn a_rule_s_scheduled_steps_are_cancelled_in_one_request() {
    const ADMIN_KEY: &str = "admin-key-0123456789abcdef";
    let dir = tempfile::tempdir().unwrap();
    let rules = "[[rules]]\nname = \"promo\"\non = \"visit\"\nclass = \"transactional\"\n\
                 [[rules.steps]]\nafter = \"1h\"\ntext = \"come back\"\n"
        .to_string()
        + CART.replace("after = \"2s\"", "after = \"1h\"").as_str();
    // "test" and "other" get send and read; "ops" is the administrator.
    let routes = format!(
        "[[api_keys]]\nname = \"ops\"\nkey = \"{ADMIN_KEY}\"\nscopes = [\"admin\"]\n{}",
        sim_route(dir.path(), "sim", "", "")
    );
    write_config(dir.path(), &rules, &routes);
    let d = Daemon::start(dir.path());
    let call = |key: &'static str, body: Value| {
        let req = d.http.post(format!("{}/v1/messages/cancel", d.url)).bearer_auth(key).json(&body);
        async move {
            let resp = req.send().await.unwrap();
            (resp.status().as_u16(), resp.json::<Value>().await.unwrap_or(Value::Null))
        }
    };

    // 700 visits (two write batches and a part), two carts, another key's
    // visit, and a plain message for later.
    let visits: Vec<Value> = (0..700)
        .map(|i| json!({"type": "visit", "recipient": format!("+7916{i:07}"), "key": format!("v{i}")}))
        .collect();
    let (s, v) = d.post("/v1/events", &json!({"events": visits})).await;
    assert_eq!(s, 202, "{v}");
    let a_visit = first_message(&v["events"][699]);
    let cart = first_message(&post_event(&d, event("cart.abandoned", "c1", json!({"name": "Анна"}))).await);
    let resp = d.http.post(format!("{}/v1/events", d.url)).bearer_auth(common::OTHER_KEY).json(&event(
        "visit",
        "o1",
        json!({}),
    ));
    let theirs: Value = resp.send().await.unwrap().json().await.unwrap();
    let theirs = first_message(&theirs["events"][0]);
    let later = d.send(json!({"to": RU, "text": "later", "send_at": common::in_secs(3600.0)})).await;
    let status_of = |id: i64| {
        let req = d.http.get(format!("{}/v1/messages/{id}", d.url)).bearer_auth(ADMIN_KEY);
        async move { req.send().await.unwrap().json::<Value>().await.unwrap()["status"].clone() }
    };

    // Wrong requests name what is wrong and cancel nothing.
    for (body, field) in [
        (json!({}), "body"),
        (json!({"priority": "urgent"}), "priority"),
        (json!({"route": "nowhere"}), "route"),
        (json!({"to": "12"}), "to"),
    ] {
        let (s, v) = call(KEY, body).await;
        assert_eq!((s, v["errors"][0]["field"].as_str()), (422, Some(field)), "{v}");
    }
    let (s, v) = call(KEY, json!({"rule": "promo", "api_key": "other"})).await;
    assert_eq!(s, 403, "another key's messages need admin: {v}");

    // The list shows beforehand what the cancel will take.
    let preview = |q: &'static str| {
        let d = &d;
        async move {
            let (s, v) = d.get(&format!("/v1/messages?status=queued&limit=1000&{q}")).await;
            assert_eq!(s, 200, "{v}");
            v["messages"].as_array().unwrap().len()
        }
    };
    assert_eq!(preview("rule=promo").await, 700);
    assert_eq!(preview("rule=promo&priority=transactional&route=sim").await, 700);
    assert_eq!(preview("rule=cart").await, 1);
    assert_eq!(preview("priority=promotional").await, 0);
    for (q, field) in [("priority=urgent", "priority"), ("route=nowhere", "route")] {
        let (s, v) = d.get(&format!("/v1/messages?{q}")).await;
        assert_eq!((s, v["errors"][0]["field"].as_str()), (422, Some(field)), "{v}");
    }

    let (s, v) = call(KEY, json!({"rule": "promo"})).await;
    assert_eq!((s, v["cancelled"].as_u64()), (200, Some(700)), "{v}");
    assert_eq!(preview("rule=promo").await, 0);
    let m = d.message(a_visit).await;
    assert_eq!(m["status"], "cancelled", "{m:#}");
    assert_eq!(
        m["history"].as_array().unwrap().last().unwrap()["detail"],
        "cancelled through the API by key \"test\" (all queued with rule \"promo\")"
    );
    for id in [cart, theirs, later] {
        assert_eq!(status_of(id).await, "queued", "message {id} is not the caller's promo step");
    }
    let (_, q) = d.get("/v1/queue").await;
    assert_eq!((q["by_status"]["cancelled"].as_u64(), q["by_status"]["queued"].as_u64()), (Some(700), Some(3)), "{q}");

    // Nothing left to cancel is 0; the administrator names the other key.
    assert_eq!(call(KEY, json!({"rule": "promo"})).await.1["cancelled"], 0);
    let (s, v) = call(ADMIN_KEY, json!({"rule": "promo", "api_key": "other"})).await;
    assert_eq!((s, v["cancelled"].as_u64()), (200, Some(1)), "{v}");
    assert_eq!(status_of(theirs).await, "cancelled");
    assert_eq!(status_of(cart).await, "queued");
}
