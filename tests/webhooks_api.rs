//! `/v1/webhooks` and `callback_url`, through the real binary: a
//! subscription's secret is shown once, bad fields are named, a key never
//! sees another's subscriptions (admin sees all), the config file's are
//! shown but not changed, rotation keeps the old secret signing for a
//! while, deliveries are listed with their attempts and replayed (set up
//! in the SQLite file as the delivery engine writes them), and a message's
//! callback URL is checked, stored and shown.

mod common;
use common::*;
use rusqlite::{Connection, params};
use serde_json::{Value, json};

const ADMIN_KEY: &str = "admin-key-0123456789abcdef";
const METRICS_KEY: &str = "metrics-key-0123456789abcdef";
const CONFIG_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn start(dir: &std::path::Path) -> Daemon {
    write(dir, r#"["10.0.0.5", "hooks.lan:8080"]"#);
    Daemon::start(dir)
}

/// The config, with `allow_hosts` (a TOML list) in `[webhooks]`.
fn write(dir: &std::path::Path, allow_hosts: &str) {
    let extra = format!(
        r#"
[webhooks]
allow_hosts = {allow_hosts}
[[webhooks.subscriptions]]
name = "crm"
key = "test"
url = "http://10.0.0.5/crm"
events = ["message.delivered"]
secret = "{CONFIG_SECRET}"
[[api_keys]]
name = "ops"
key = "{ADMIN_KEY}"
scopes = ["admin"]
[[api_keys]]
name = "prometheus"
key = "{METRICS_KEY}"
scopes = ["metrics"]
"#
    );
    write_config(dir, &extra, &sim_route(dir, "sim", "", ""));
}

struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    text: String,
    body: Value,
}

async fn call(d: &Daemon, method: &str, path: &str, key: &str, body: Option<Value>) -> Answer {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut req = d.http.request(method, format!("{}{path}", d.url)).bearer_auth(key);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap_or_default();
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Answer { status, headers, text, body }
}

async fn create(d: &Daemon, key: &str, body: Value) -> Value {
    let a = call(d, "POST", "/v1/webhooks", key, Some(body)).await;
    assert_eq!(a.status, 201, "{}", a.text);
    a.body
}

fn db(d: &Daemon) -> Connection {
    let c = Connection::open(d.dir.join("smsgw.db")).expect("open the store file");
    c.busy_timeout(std::time::Duration::from_secs(5)).unwrap();
    c
}

/// The fields a 422 names.
fn fields(a: &Answer) -> Vec<String> {
    assert_eq!(a.status, 422, "{}", a.text);
    a.body["errors"].as_array().expect("errors").iter().map(|e| e["field"].as_str().unwrap().to_string()).collect()
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_shows_its_secret_once_and_bad_fields_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let d = start(dir.path());
    let hook = json!({"url": "http://10.0.0.5:9000/hook", "events": ["message.delivered", "inbound.received"]});
    let a = call(&d, "POST", "/v1/webhooks", KEY, Some(hook)).await;
    assert_eq!(a.status, 201, "{}", a.text);
    let made = a.body;
    let id = made["id"].as_i64().unwrap();
    assert_eq!(a.headers["location"], format!("/v1/webhooks/{id}").as_str());
    let secret = made["secret"].as_str().expect("the secret, once").to_string();
    assert!(secret.starts_with("whsec_"), "{secret}");
    assert_eq!(
        (made["origin"].as_str(), made["api_key"].as_str(), made["enabled"].as_bool()),
        (Some("api"), Some("test"), Some(true))
    );
    assert_eq!(made["events"], json!(["message.delivered", "inbound.received"]));
    assert_eq!(made["secrets_until"], json!([null]));
    assert_eq!(made["health"], json!({"last_success_at": null, "pending": 0, "dead": 0, "failures_24h": 0}));

    // Never again: not in the one, not in the list.
    for path in [format!("/v1/webhooks/{id}"), "/v1/webhooks".to_string()] {
        let a = call(&d, "GET", &path, KEY, None).await;
        assert_eq!(a.status, 200, "{}", a.text);
        assert!(!a.text.contains("whsec_"), "{path} shows a secret: {}", a.text);
    }
    // The store holds it, to sign with.
    let stored: String = db(&d).query_row("SELECT secrets FROM webhooks WHERE id = ?1", [id], |r| r.get(0)).unwrap();
    let stored: Value = serde_json::from_str(&stored).unwrap();
    assert_eq!(stored, json!([{"secret": secret, "until": null}]));

    // A secret of one's own is kept as given.
    let given = "whsec_c2l4dGVlbi1ieXRlcy1sb25nLWtleS0xMjM0NTY3OA==";
    let own =
        create(&d, KEY, json!({"url": "https://hooks.lan:8080/h", "events": ["optout.changed"], "secret": given}))
            .await;
    assert_eq!(own["secret"], given);

    for (body, named) in [
        (json!({"url": "not a url", "events": ["message.delivered"]}), vec!["url"]),
        (json!({"url": "ftp://10.0.0.5/h", "events": ["message.delivered"]}), vec!["url"]),
        (json!({"url": "http://user:pw@10.0.0.5/h", "events": ["message.delivered"]}), vec!["url"]),
        (json!({"url": "http://evil.example/h", "events": ["message.delivered"]}), vec!["url"]),
        (json!({"url": "http://hooks.lan:9090/h", "events": ["message.delivered"]}), vec!["url"]),
        (
            json!({"url": "http://10.0.0.5/h", "events": ["message.delivered", "message.sent", "nope"]}),
            vec!["events[1]", "events[2]"],
        ),
        (json!({"url": "http://10.0.0.5/h", "events": []}), vec!["events"]),
        (json!({"url": "http://10.0.0.5/h", "events": ["message.failed"], "secret": "whsec_c2hvcnQ="}), vec!["secret"]),
        (json!({"url": "http://10.0.0.5/h", "events": ["message.failed"], "secret": "hunter2"}), vec!["secret"]),
        (json!({"url": "http://10.0.0.5/h", "events": ["message.failed"], "colour": "red"}), vec!["colour"]),
        (json!({"events": ["message.failed"]}), vec!["body"]),
    ] {
        let a = call(&d, "POST", "/v1/webhooks", KEY, Some(body.clone())).await;
        assert_eq!(a.headers["content-type"], "application/problem+json");
        assert_eq!(fields(&a), named, "{body}: {}", a.text);
    }
    let a = call(
        &d,
        "POST",
        "/v1/webhooks",
        KEY,
        Some(json!({"url": "http://evil.example/h", "events": ["message.failed"]})),
    )
    .await;
    assert!(a.body["detail"].as_str().unwrap().contains("allow_hosts"), "{}", a.text);
    let n: i64 = db(&d).query_row("SELECT count(*) FROM webhooks WHERE origin = 'api'", [], |r| r.get(0)).unwrap();
    assert_eq!(n, 2, "a refused subscription must not be stored");

    // Changes: the URL and events are checked the same way; off and on again.
    let path = format!("/v1/webhooks/{id}");
    let a = call(&d, "PATCH", &path, KEY, Some(json!({"url": "gopher://10.0.0.5/", "events": ["x"]}))).await;
    assert_eq!(fields(&a), ["url", "events[0]"]);
    let a =
        call(&d, "PATCH", &path, KEY, Some(json!({"url": "http://10.0.0.5/v2", "events": ["message.failed"]}))).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!((a.body["url"].as_str(), &a.body["events"]), (Some("http://10.0.0.5/v2"), &json!(["message.failed"])));
    assert!(a.body.get("secret").is_none());
    let a = call(&d, "PATCH", &path, KEY, Some(json!({"enabled": false}))).await;
    assert_eq!((a.body["enabled"].as_bool(), a.body["disabled_reason"].is_string()), (Some(false), true), "{}", a.text);
    // The engine disables a subscription whose receiver answers 410 Gone; enabling brings it back.
    db(&d)
        .execute(
            "UPDATE webhooks SET enabled = 0, disabled_reason = 'the receiver answered 410 Gone' WHERE id = ?1",
            [id],
        )
        .unwrap();
    let a = call(&d, "GET", &path, KEY, None).await;
    assert_eq!(a.body["disabled_reason"], "the receiver answered 410 Gone");
    let a = call(&d, "PATCH", &path, KEY, Some(json!({"enabled": true}))).await;
    assert_eq!((a.body["enabled"].as_bool(), &a.body["disabled_reason"]), (Some(true), &Value::Null), "{}", a.text);

    // Every endpoint is in the OpenAPI document.
    let doc = call(&d, "GET", "/openapi.json", KEY, None).await.body;
    for (path, method) in [
        ("/v1/webhooks", "post"),
        ("/v1/webhooks", "get"),
        ("/v1/webhooks/{id}", "get"),
        ("/v1/webhooks/{id}", "patch"),
        ("/v1/webhooks/{id}", "delete"),
        ("/v1/webhooks/{id}/rotate", "post"),
        ("/v1/webhooks/{id}/deliveries", "get"),
        ("/v1/webhooks/{id}/replay", "post"),
    ] {
        assert!(doc["paths"][path][method].is_object(), "{method} {path} missing from the OpenAPI document");
    }
    assert!(doc["components"]["schemas"]["WebhookOut"].is_object());
    assert!(doc["components"]["schemas"]["MessageRequest"]["properties"]["callback_url"].is_object());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_sees_only_its_own_subscriptions_and_admin_sees_all() {
    let dir = tempfile::tempdir().unwrap();
    let d = start(dir.path());
    let mine = create(&d, KEY, json!({"url": "http://10.0.0.5/a", "events": ["message.delivered"]})).await;
    let theirs = create(&d, OTHER_KEY, json!({"url": "http://10.0.0.5/b", "events": ["message.failed"]})).await;
    let (a, b) = (mine["id"].as_i64().unwrap(), theirs["id"].as_i64().unwrap());
    // The ones made here (the config file's `crm`, key test's too, is
    // looked at in its own test).
    let ids = |v: &Value| -> Vec<i64> {
        let list = v["webhooks"].as_array().unwrap().iter();
        list.filter(|w| w["origin"] == "api").map(|w| w["id"].as_i64().unwrap()).collect()
    };

    assert_eq!(ids(&call(&d, "GET", "/v1/webhooks", KEY, None).await.body), [a]);
    assert_eq!(ids(&call(&d, "GET", "/v1/webhooks", OTHER_KEY, None).await.body), [b]);
    // B cannot read, change, rotate, list, replay or delete A's: to B it does not exist.
    for (method, path, body) in [
        ("GET", format!("/v1/webhooks/{a}"), None),
        ("PATCH", format!("/v1/webhooks/{a}"), Some(json!({"enabled": false}))),
        ("POST", format!("/v1/webhooks/{a}/rotate"), Some(json!({}))),
        ("GET", format!("/v1/webhooks/{a}/deliveries"), None),
        ("POST", format!("/v1/webhooks/{a}/replay"), Some(json!({"since": "2020-01-01T00:00:00Z"}))),
        ("DELETE", format!("/v1/webhooks/{a}"), None),
    ] {
        let r = call(&d, method, &path, OTHER_KEY, body).await;
        assert_eq!(r.status, 404, "{method} {path}: {}", r.text);
        assert!(!r.text.contains("10.0.0.5"), "{}", r.text);
    }
    // ... and A's is as it was.
    let still = call(&d, "GET", &format!("/v1/webhooks/{a}"), KEY, None).await;
    assert_eq!((still.status, still.body["enabled"].as_bool()), (200, Some(true)), "{}", still.text);
    let secrets: String = db(&d).query_row("SELECT secrets FROM webhooks WHERE id = ?1", [a], |r| r.get(0)).unwrap();
    assert_eq!(serde_json::from_str::<Value>(&secrets).unwrap().as_array().unwrap().len(), 1);
    // An id that is no number is as unknown as another key's.
    assert_eq!(call(&d, "GET", "/v1/webhooks/abc", KEY, None).await.status, 404);

    // Admin sees every key's (the config file's too) and may change them.
    let all = call(&d, "GET", "/v1/webhooks", ADMIN_KEY, None).await.body;
    assert!(ids(&all).contains(&a) && ids(&all).contains(&b), "{all}");
    let off = call(&d, "PATCH", &format!("/v1/webhooks/{b}"), ADMIN_KEY, Some(json!({"enabled": false}))).await;
    assert_eq!((off.status, off.body["enabled"].as_bool()), (200, Some(false)), "{}", off.text);
    // What admin makes is admin's own (and sees the events no key owns).
    let own = create(&d, ADMIN_KEY, json!({"url": "http://10.0.0.5/ops", "events": ["route.state_changed"]})).await;
    assert_eq!(own["api_key"], "ops");
    // Admin may make one for another key, which then sees it as its own;
    // a key that does not exist is named, and only admin may name another.
    let made =
        create(&d, ADMIN_KEY, json!({"url": "http://10.0.0.5/c", "events": ["message.submitted"], "key": "test"}))
            .await;
    assert_eq!(made["api_key"], "test");
    assert!(ids(&call(&d, "GET", "/v1/webhooks", KEY, None).await.body).contains(&made["id"].as_i64().unwrap()));
    let body = json!({"url": "http://10.0.0.5/c", "events": ["message.delivered"], "key": "nobody"});
    assert_eq!(fields(&call(&d, "POST", "/v1/webhooks", ADMIN_KEY, Some(body)).await), ["key"]);
    let body = json!({"url": "http://10.0.0.5/c", "events": ["message.delivered"], "key": "smpp:crm"});
    assert_eq!(fields(&call(&d, "POST", "/v1/webhooks", ADMIN_KEY, Some(body)).await), ["key"], "no SMPP server here");
    let body = json!({"url": "http://10.0.0.5/c", "events": ["message.delivered"], "key": "ops"});
    let r = call(&d, "POST", "/v1/webhooks", KEY, Some(body)).await;
    assert_eq!(r.status, 403, "{}", r.text);
    let body = json!({"url": "http://10.0.0.5/c", "events": ["message.delivered"], "key": "test"});
    assert_eq!(call(&d, "POST", "/v1/webhooks", KEY, Some(body)).await.status, 201, "its own name is fine");
    assert!(!ids(&call(&d, "GET", "/v1/webhooks", KEY, None).await.body).contains(&own["id"].as_i64().unwrap()));
    // A key with neither send nor read has no webhooks.
    let r = call(&d, "GET", "/v1/webhooks", METRICS_KEY, None).await;
    assert_eq!(r.status, 403, "{}", r.text);
    let r = call(
        &d,
        "POST",
        "/v1/webhooks",
        METRICS_KEY,
        Some(json!({"url": "http://10.0.0.5/m", "events": ["message.failed"]})),
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.text);

    let gone = call(&d, "DELETE", &format!("/v1/webhooks/{a}"), KEY, None).await;
    assert_eq!(gone.status, 204, "{}", gone.text);
    assert_eq!(call(&d, "GET", &format!("/v1/webhooks/{a}"), KEY, None).await.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_from_the_config_file_is_shown_but_changed_only_there() {
    let dir = tempfile::tempdir().unwrap();
    let d = start(dir.path());
    // The deliverer wrote the file's subscriptions into the store at start.
    let c = db(&d);
    let (id, secrets): (i64, String) =
        c.query_row("SELECT id, secrets FROM webhooks WHERE name = 'crm'", [], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
    assert_eq!(serde_json::from_str::<Value>(&secrets).unwrap(), json!([{"secret": CONFIG_SECRET, "until": null}]));

    let list = call(&d, "GET", "/v1/webhooks", KEY, None).await;
    let crm = list.body["webhooks"].as_array().unwrap().iter().find(|w| w["id"] == id).expect("listed").clone();
    assert_eq!((crm["origin"].as_str(), crm["name"].as_str()), (Some("config"), Some("crm")), "{crm}");
    assert!(!list.text.contains("whsec_"), "{}", list.text);

    let config = dir.path().join("smsgw.toml").display().to_string();
    for (method, path, body) in [
        ("PATCH", format!("/v1/webhooks/{id}"), Some(json!({"enabled": false}))),
        ("PATCH", format!("/v1/webhooks/{id}"), Some(json!({"url": "http://10.0.0.5/elsewhere"}))),
        ("POST", format!("/v1/webhooks/{id}/rotate"), None),
        ("DELETE", format!("/v1/webhooks/{id}"), None),
    ] {
        let r = call(&d, method, &path, KEY, body).await;
        assert_eq!(r.status, 409, "{method} {path}: {}", r.text);
        let detail = r.body["detail"].as_str().unwrap();
        assert!(detail.contains(&config) && detail.contains("crm"), "{detail}");
    }
    let r = call(&d, "DELETE", &format!("/v1/webhooks/{id}"), ADMIN_KEY, None).await;
    assert_eq!(r.status, 409, "not even admin: {}", r.text);
    let (url, enabled): (String, bool) =
        c.query_row("SELECT url, enabled FROM webhooks WHERE id = ?1", [id], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
    assert_eq!((url.as_str(), enabled), ("http://10.0.0.5/crm", true));
    // Another key does not even see it.
    assert_eq!(call(&d, "DELETE", &format!("/v1/webhooks/{id}"), OTHER_KEY, None).await.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_gives_a_new_secret_and_keeps_the_old_one_signing_for_a_while() {
    let dir = tempfile::tempdir().unwrap();
    let d = start(dir.path());
    let made = create(&d, KEY, json!({"url": "http://10.0.0.5/a", "events": ["message.delivered"]})).await;
    let id = made["id"].as_i64().unwrap();
    let old = made["secret"].as_str().unwrap().to_string();

    let before = now_ms();
    let r =
        call(&d, "POST", &format!("/v1/webhooks/{id}/rotate"), KEY, Some(json!({"expire_old_after_secs": 3600}))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let new = r.body["secret"].as_str().expect("the new secret, once").to_string();
    assert!(new.starts_with("whsec_") && new != old);
    assert_eq!(r.body["secrets_until"].as_array().unwrap().len(), 2);
    assert!(r.body["secrets_until"][0].is_null() && r.body["secrets_until"][1].is_string(), "{}", r.text);

    let stored: String = db(&d).query_row("SELECT secrets FROM webhooks WHERE id = ?1", [id], |r| r.get(0)).unwrap();
    let stored: Value = serde_json::from_str(&stored).unwrap();
    assert_eq!(stored.as_array().unwrap().len(), 2, "{stored}");
    assert_eq!((&stored[0]["secret"], &stored[0]["until"]), (&json!(new), &Value::Null));
    assert_eq!(stored[1]["secret"], json!(old));
    let until = stored[1]["until"].as_i64().expect("the old secret has an end");
    assert!(until >= before + 3_600_000 && until <= now_ms() + 3_600_000, "{until}");

    let get = call(&d, "GET", &format!("/v1/webhooks/{id}"), KEY, None).await;
    assert!(!get.text.contains("whsec_"), "{}", get.text);
    // No body: the old secrets sign for a day more (the first keeps its earlier end).
    let r = call(&d, "POST", &format!("/v1/webhooks/{id}/rotate"), KEY, None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["secrets_until"].as_array().unwrap().len(), 3);
    let r =
        call(&d, "POST", &format!("/v1/webhooks/{id}/rotate"), KEY, Some(json!({"expire_old_after_secs": 99_999_999})))
            .await;
    assert_eq!(fields(&r), ["expire_old_after_secs"]);
    let r =
        call(&d, "POST", &format!("/v1/webhooks/{id}/rotate"), KEY, Some(json!({"expire_old_after_secs": -1}))).await;
    assert_eq!(fields(&r), ["expire_old_after_secs"]);
}

/// An event row, as the store writes one with the change it reports.
fn event(c: &Connection, kind: &str, at: i64) -> i64 {
    c.execute("INSERT INTO events (kind, at, api_key) VALUES (?1, ?2, 'test')", params![kind, at]).unwrap();
    c.last_insert_rowid()
}

/// A delivery row and its attempts, as the delivery engine writes them.
/// A delivery as the deliverer leaves it: attempt `i` at `t + 100 i`
/// taking `10 + i` ms; a done delivery's last (successful) attempt only on
/// its own row, `done_at` when its answer came.
fn delivery(c: &Connection, hook: i64, event: i64, state: &str, attempts: &[(Option<u16>, Option<&str>)]) {
    let t = now_ms() - 60_000;
    let last = attempts.len() as i64 - 1;
    let done = match state {
        "pending" => None,
        "done" => Some(t + last * 100 + 10 + last),
        _ => Some(t + 1000),
    };
    c.execute(
        "INSERT INTO deliveries (webhook_id, event_id, order_key, state, attempts, created_at, next_at, done_at,
                                 last_status, last_error, last_latency_ms)
         VALUES (?1, ?2, NULL, ?3, ?4, ?5, ?5, ?6, ?7, ?8, ?9)",
        params![
            hook,
            event,
            state,
            attempts.len() as i64,
            t,
            done,
            attempts.last().and_then(|a| a.0),
            attempts.last().and_then(|a| a.1),
            10 + last
        ],
    )
    .unwrap();
    let logged = if state == "done" { &attempts[..attempts.len() - 1] } else { attempts };
    for (i, (status, error)) in logged.iter().enumerate() {
        c.execute(
            "INSERT INTO delivery_attempts (webhook_id, event_id, at, http_status, latency_ms, error)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![hook, event, t + i as i64 * 100, status, 10 + i as i64, error],
        )
        .unwrap();
    }
}

fn state_of(c: &Connection, hook: i64, event: i64) -> (String, i64, i64) {
    c.query_row(
        "SELECT state, created_at, next_at FROM deliveries WHERE webhook_id = ?1 AND event_id = ?2",
        params![hook, event],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_are_listed_with_their_attempts_and_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let d = start(dir.path());
    let hook = create(&d, KEY, json!({"url": "http://10.0.0.5/a", "events": ["message.delivered"]})).await;
    let id = hook["id"].as_i64().unwrap();
    let c = db(&d);
    let t0 = now_ms() - 3_600_000;
    let e1 = event(&c, "message.delivered", t0);
    let e2 = event(&c, "message.delivered", t0 + 1_800_000);
    let e3 = event(&c, "inbound.received", t0 + 1_800_000);
    delivery(&c, id, e1, "dead", &[(Some(500), None), (None, Some("connection refused")), (Some(503), None)]);
    delivery(&c, id, e2, "done", &[(Some(502), None), (Some(204), None)]);
    delivery(&c, id, e3, "pending", &[(None, Some("timed out"))]);

    let path = format!("/v1/webhooks/{id}");
    let h = call(&d, "GET", &path, KEY, None).await.body["health"].clone();
    assert_eq!(
        (h["pending"].as_u64(), h["dead"].as_u64(), h["failures_24h"].as_u64()),
        (Some(1), Some(1), Some(5)),
        "{h}"
    );
    assert!(h["last_success_at"].is_string(), "{h}");

    let list = call(&d, "GET", &format!("{path}/deliveries"), KEY, None).await;
    assert_eq!(list.status, 200, "{}", list.text);
    let ds = list.body["deliveries"].as_array().unwrap();
    let evts: Vec<&str> = ds.iter().map(|d| d["event_id"].as_str().unwrap()).collect();
    assert_eq!(evts, [format!("evt_{e3}"), format!("evt_{e2}"), format!("evt_{e1}")], "newest first");
    assert_eq!((ds[0]["type"].as_str(), ds[0]["state"].as_str()), (Some("inbound.received"), Some("pending")));
    assert!(ds[0]["next_at"].is_string() && ds[2]["next_at"].is_null());
    let dead = &ds[2];
    assert_eq!(
        (dead["type"].as_str(), dead["state"].as_str(), dead["attempts"].as_u64()),
        (Some("message.delivered"), Some("dead"), Some(3))
    );
    let log = dead["attempt_log"].as_array().unwrap();
    assert_eq!(log.iter().map(|a| a["http_status"].clone()).collect::<Vec<_>>(), [json!(500), Value::Null, json!(503)]);
    assert_eq!((log[1]["error"].as_str(), log[1]["latency_ms"].as_i64()), (Some("connection refused"), Some(11)));
    // The success is on the delivery row alone, and listed as the last attempt, when it happened.
    let done = &ds[1];
    let log = done["attempt_log"].as_array().unwrap();
    assert_eq!(log.iter().map(|a| a["http_status"].clone()).collect::<Vec<_>>(), [json!(502), json!(204)], "{done}");
    assert_eq!(log[1]["latency_ms"].as_i64(), Some(11));
    let at = |v: &Value| chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap()).unwrap().timestamp_millis();
    assert_eq!(at(&log[1]["at"]) - at(&log[0]["at"]), 100, "{done}");
    assert_eq!(at(&done["done_at"]) - at(&log[1]["at"]), 11, "{done}");
    assert!(list.body["next_before"].is_null());

    let dead_only = call(&d, "GET", &format!("{path}/deliveries?state=dead"), KEY, None).await.body;
    assert_eq!(dead_only["deliveries"].as_array().unwrap().len(), 1);
    let page = call(&d, "GET", &format!("{path}/deliveries?limit=1"), KEY, None).await.body;
    let next = page["next_before"].as_str().expect("a next page").to_string();
    let page2 = call(&d, "GET", &format!("{path}/deliveries?limit=1&before={next}"), KEY, None).await.body;
    assert_eq!(page2["deliveries"][0]["event_id"], format!("evt_{e2}"));
    let bad = call(&d, "GET", &format!("{path}/deliveries?state=lost&limit=0&before=yesterday"), KEY, None).await;
    assert_eq!(fields(&bad), ["state", "limit", "before"]);

    // One event: the dead delivery is due again, with a fresh retry period; its attempts stay.
    let before = now_ms();
    let r = call(&d, "POST", &format!("{path}/replay"), KEY, Some(json!({"event_id": format!("evt_{e1}")}))).await;
    assert_eq!((r.status, r.body["replayed"].as_u64()), (200, Some(1)), "{}", r.text);
    let (state, created, next) = state_of(&c, id, e1);
    assert_eq!(state, "pending");
    assert!(created >= before && next >= before && next <= now_ms(), "{created} {next}");
    let kept: i64 = c
        .query_row(
            "SELECT count(*) FROM delivery_attempts WHERE webhook_id = ?1 AND event_id = ?2",
            params![id, e1],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(kept, 3);
    // Everything since a time: the done one (the pending ones are pending already).
    let since = chrono::DateTime::from_timestamp_millis(t0 + 1_000).unwrap().to_rfc3339();
    let r = call(&d, "POST", &format!("{path}/replay"), KEY, Some(json!({"since": since}))).await;
    assert_eq!((r.status, r.body["replayed"].as_u64()), (200, Some(1)), "{}", r.text);
    assert_eq!(state_of(&c, id, e2).0, "pending");
    assert_eq!(state_of(&c, id, e1).0, "pending");
    // The replayed delivery's earlier success stays in its log, as an attempt row now.
    let list = call(&d, "GET", &format!("{path}/deliveries"), KEY, None).await.body;
    let again = list["deliveries"].as_array().unwrap().iter().find(|x| x["event_id"] == format!("evt_{e2}")).unwrap();
    let codes: Vec<Value> = again["attempt_log"].as_array().unwrap().iter().map(|a| a["http_status"].clone()).collect();
    assert_eq!(codes, [json!(502), json!(204)], "{again}");

    let r = call(&d, "POST", &format!("{path}/replay"), KEY, Some(json!({"event_id": "evt_999999"}))).await;
    assert_eq!(r.status, 404, "{}", r.text);
    let r = call(&d, "POST", &format!("{path}/replay"), KEY, Some(json!({}))).await;
    assert_eq!(fields(&r), ["event_id"]);
    let r = call(&d, "POST", &format!("{path}/replay"), KEY, Some(json!({"event_id": "evt_1", "since": since}))).await;
    assert_eq!(fields(&r), ["since"]);
    let r = call(&d, "POST", &format!("{path}/replay"), KEY, Some(json!({"since": "last week"}))).await;
    assert_eq!(fields(&r), ["since"]);
    let r = call(&d, "POST", &format!("{path}/replay"), KEY, Some(json!({"event_id": "yesterday's"}))).await;
    assert_eq!(fields(&r), ["event_id"]);
    let r = call(&d, "POST", &format!("{path}/replay"), KEY, Some(json!({"since": since, "state": "pending"}))).await;
    assert_eq!(fields(&r), ["state"]);
    let r = call(&d, "POST", &format!("{path}/replay"), KEY, Some(json!({"event_id": "evt_1", "state": "dead"}))).await;
    assert_eq!(fields(&r), ["state"]);

    // Deleting the subscription takes its deliveries with it: none is sent to a subscription that is gone.
    assert_eq!(call(&d, "DELETE", &path, KEY, None).await.status, 204);
    let left: i64 = c
        .query_row(
            "SELECT (SELECT count(*) FROM deliveries WHERE webhook_id = ?1) + (SELECT count(*) FROM delivery_attempts WHERE webhook_id = ?1)",
            [id],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(left, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_messages_callback_url_is_checked_stored_and_shown() {
    let dir = tempfile::tempdir().unwrap();
    let d = start(dir.path());
    let later = in_secs(3600.0);
    let id = d.send(json!({"to": "+79161234567", "text": "hi", "send_at": later, "callback_url": "http://hooks.lan:8080/cb?order=7"})).await;
    let m = d.message(id).await;
    assert_eq!(m["callback_url"], "http://hooks.lan:8080/cb?order=7");
    let stored: Option<String> =
        db(&d).query_row("SELECT callback_url FROM messages WHERE id = ?1", [id], |r| r.get(0)).unwrap();
    assert_eq!(stored.as_deref(), Some("http://hooks.lan:8080/cb?order=7"));
    let plain = d.send(json!({"to": "+79161234567", "text": "no callback", "send_at": later})).await;
    assert_eq!(d.message(plain).await["callback_url"], Value::Null);
    let (_, list) = d.get("/v1/messages").await;
    assert_eq!(list["messages"][1]["callback_url"], "http://hooks.lan:8080/cb?order=7");

    let before: i64 = db(&d).query_row("SELECT count(*) FROM messages", [], |r| r.get(0)).unwrap();
    let (s, v) =
        d.post("/v1/messages", &json!({"to": "+79161234567", "text": "x", "callback_url": "ftp://10.0.0.5/cb"})).await;
    assert_eq!((s, v["errors"][0]["field"].as_str()), (422, Some("callback_url")), "{v}");
    let batch = json!({"messages": [
        {"to": "+79161234567", "text": "a", "callback_url": "http://10.0.0.5/cb"},
        {"to": "+79161234568", "text": "b"},
        {"to": "+79161234569", "text": "c", "callback_url": "http://crm.example/cb"},
        {"to": "+79161234560", "text": "d", "callback_url": "http://me:secret@10.0.0.5/cb"},
    ]});
    let (s, v) = d.post("/v1/messages", &batch).await;
    assert_eq!(s, 422, "{v}");
    let named: Vec<&str> = v["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap()).collect();
    assert_eq!(named, ["messages[2].callback_url", "messages[3].callback_url"]);
    assert!(!v.to_string().contains("secret@"), "the answer repeats the URL's password: {v}");
    let after: i64 = db(&d).query_row("SELECT count(*) FROM messages", [], |r| r.get(0)).unwrap();
    assert_eq!(after, before, "nothing of a refused batch is stored");

    // The callback URL is part of what an idempotency key stands for.
    let one = json!({"to": "+79161234567", "text": "once", "send_at": later, "callback_url": "http://10.0.0.5/a"});
    let body = serde_json::to_vec(&one).unwrap();
    let (s, _) = d.post_raw("/v1/messages", body.clone(), &[("idempotency-key", "k1")]).await;
    assert_eq!(s, 202);
    let (s, _) = d.post_raw("/v1/messages", body, &[("idempotency-key", "k1")]).await;
    assert_eq!(s, 202);
    let mut other = one.clone();
    other["callback_url"] = json!("http://10.0.0.5/b");
    let (s, v) = d.post_raw("/v1/messages", serde_json::to_vec(&other).unwrap(), &[("idempotency-key", "k1")]).await;
    assert_eq!(s, 409, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_changes_where_webhooks_may_go() {
    let dir = tempfile::tempdir().unwrap();
    let d = start(dir.path());
    let hook = |host: &str| json!({"url": format!("http://{host}/h"), "events": ["message.failed"]});
    let cb = |host: &str| json!({"to": "+79161234567", "text": "x", "send_at": in_secs(3600.0), "callback_url": format!("http://{host}/cb")});
    assert_eq!(fields(&call(&d, "POST", "/v1/webhooks", KEY, Some(hook("10.0.0.6"))).await), ["url"]);

    write(dir.path(), r#"["10.0.0.5:80", "10.0.0.6"]"#);
    d.signal("HUP");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let a = call(&d, "POST", "/v1/webhooks", KEY, Some(hook("10.0.0.6"))).await;
        if a.status == 201 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the reload never allowed 10.0.0.6: {}", a.text);
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(fields(&call(&d, "POST", "/v1/webhooks", KEY, Some(hook("hooks.lan:8080"))).await), ["url"]);
    assert_eq!(fields(&call(&d, "POST", "/v1/messages", KEY, Some(cb("10.0.0.5:8080"))).await), ["callback_url"]);
    assert_eq!(call(&d, "POST", "/v1/messages", KEY, Some(cb("10.0.0.6"))).await.status, 202);
}
