//! API key scopes, per-key rate limits and daily quotas, through the real
//! binary: a key sees and cancels only its own messages and the replies to
//! them, each endpoint asks for its scope, a fast key gets 429 with
//! `Retry-After`, and a daily quota refuses whole batches, across a restart
//! and after a reload.

mod common;
use common::*;
use serde_json::{Value, json};
use smsgw::simulate::smsc::{Smsc, SmscConfig};
use std::process::Command;
use std::time::{Duration, Instant};

// KEY ("test") and OTHER_KEY ("other") have no `scopes` line: with other
// keys that have one, they get the default, send and read.
const METRICS_KEY: &str = "metrics-key-0123456789abcdef";
const ADMIN_KEY: &str = "admin-key-0123456789abcdef";

fn keys(extra: &str) -> String {
    format!(
        "[[api_keys]]\nname = \"prometheus\"\nkey = \"{METRICS_KEY}\"\nscopes = [\"metrics\"]\n\
         [[api_keys]]\nname = \"ops\"\nkey = \"{ADMIN_KEY}\"\nscopes = [\"admin\"]\n{extra}"
    )
}

struct Answer {
    status: u16,
    retry_after: Option<u64>,
    body: Value,
}

async fn call(d: &Daemon, method: &str, path: &str, key: &str, body: Option<Value>) -> Answer {
    let url = format!("{}{path}", d.url);
    let req = match method {
        "GET" => d.http.get(url),
        _ => d.http.post(url),
    };
    let req = match body {
        Some(b) => req.json(&b),
        None => req,
    };
    let resp = req.bearer_auth(key).send().await.expect("request");
    let status = resp.status().as_u16();
    let retry_after = resp.headers().get("retry-after").map(|v| v.to_str().unwrap().parse().expect("whole seconds"));
    let text = resp.text().await.unwrap_or_default();
    Answer { status, retry_after, body: serde_json::from_str(&text).unwrap_or(Value::String(text)) }
}

async fn send(d: &Daemon, key: &str, body: Value) -> i64 {
    let a = call(d, "POST", "/v1/messages", key, Some(body)).await;
    assert_eq!(a.status, 202, "{}", a.body);
    a.body["id"].as_i64().expect("id")
}

fn ids(list: &Value) -> Vec<i64> {
    list["messages"].as_array().expect("messages").iter().map(|m| m["id"].as_i64().unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_sees_and_cancels_only_its_own_messages() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &keys(""), &sim_route(dir.path(), "sim", "", ""));
    let d = Daemon::start(dir.path());
    let later = in_secs(3600.0);
    let a = send(&d, KEY, json!({"to": "+79161234567", "text": "for A", "send_at": later})).await;
    let b = send(&d, OTHER_KEY, json!({"to": "+79161234568", "text": "for B", "send_at": later})).await;

    // Another key's message does not exist, as far as A can tell.
    let got = call(&d, "GET", &format!("/v1/messages/{b}"), KEY, None).await;
    assert_eq!(got.status, 404, "{}", got.body);
    let cancel = call(&d, "POST", &format!("/v1/messages/{b}/cancel"), KEY, None).await;
    assert_eq!(cancel.status, 404, "{}", cancel.body);
    let still = call(&d, "GET", &format!("/v1/messages/{b}"), OTHER_KEY, None).await;
    assert_eq!((still.status, still.body["status"].as_str()), (200, Some("queued")), "{}", still.body);

    assert_eq!(ids(&call(&d, "GET", "/v1/messages", KEY, None).await.body), [a]);
    assert_eq!(ids(&call(&d, "GET", "/v1/messages?status=queued", OTHER_KEY, None).await.body), [b]);
    assert_eq!(ids(&call(&d, "GET", "/v1/messages", ADMIN_KEY, None).await.body), [b, a]);
    assert_eq!(call(&d, "GET", &format!("/v1/messages/{b}"), ADMIN_KEY, None).await.status, 200);

    let mine = call(&d, "POST", &format!("/v1/messages/{a}/cancel"), KEY, None).await;
    assert_eq!((mine.status, mine.body["status"].as_str()), (200, Some("cancelled")), "{}", mine.body);

    // Route state is no key's own: a read key sees it whole.
    assert_eq!(call(&d, "GET", "/v1/routes", KEY, None).await.status, 200);
    assert_eq!(call(&d, "GET", "/v1/queue", KEY, None).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_endpoint_asks_for_its_scope() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &keys(""), &sim_route(dir.path(), "sim", "", ""));
    let d = Daemon::start(dir.path());

    let scrape = call(&d, "GET", "/metrics", METRICS_KEY, None).await;
    assert_eq!(scrape.status, 200);
    assert!(scrape.body.as_str().is_some_and(|t| t.contains("smsgw_")), "{}", scrape.body);
    for (method, path, body, scope) in [
        ("GET", "/v1/messages", None, "read"),
        ("GET", "/v1/messages/1", None, "read"),
        ("GET", "/v1/inbound", None, "read"),
        ("GET", "/v1/routes", None, "read"),
        ("GET", "/v1/modems", None, "read"),
        ("GET", "/v1/queue", None, "read"),
        ("POST", "/v1/messages", Some(msg("+79161234567", "hi")), "send"),
        ("POST", "/v1/messages/1/cancel", None, "send"),
    ] {
        let a = call(&d, method, path, METRICS_KEY, body).await;
        assert_eq!(a.status, 403, "{method} {path}: {}", a.body);
        assert_eq!(a.body["required_scope"], scope, "{method} {path}: {}", a.body);
        assert!(a.body["detail"].as_str().unwrap().contains(&format!("\"{scope}\"")), "{}", a.body);
    }
    let denied = call(&d, "GET", "/metrics", KEY, None).await;
    assert_eq!(denied.status, 403, "{}", denied.body);
    assert_eq!(denied.body["required_scope"], "metrics");
    assert_eq!(call(&d, "GET", "/metrics", ADMIN_KEY, None).await.status, 200);
    assert_eq!(call(&d, "GET", "/readyz", METRICS_KEY, None).await.status, 200, "any key may ask if it is ready");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_sees_the_replies_to_its_own_messages_only() {
    let smsc =
        Smsc::start(SmscConfig { credentials: vec![("smsgw".into(), "secret".into())], ..Default::default() }, {
            tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap()
        })
        .await;
    let route = format!(
        "[[routes]]\nname = \"carrier\"\nkind = \"smpp\"\n[routes.smpp]\nhost = \"127.0.0.1\"\nport = {}\n\
         system_id = \"smsgw\"\npassword = \"secret\"\nreconnect_min_ms = 50\n",
        smsc.local_addr().port()
    );
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &keys(""), &route);
    let d = Daemon::start(dir.path());
    let deadline = Instant::now() + Duration::from_secs(10);
    while !smsc.events().iter().any(|e| e.starts_with("bind_transceiver from smsgw: ok")) {
        assert!(Instant::now() < deadline, "{:?}", smsc.events());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    send(&d, KEY, msg("+79161234567", "Your table for two at 8?")).await;
    send(&d, OTHER_KEY, msg("+79161234568", "Your parcel is on its way")).await;
    smsc.inject_inbound("+79161234567", "7726", "yes for A").await.unwrap();
    smsc.inject_inbound("+79161234568", "7726", "thanks B").await.unwrap();
    smsc.inject_inbound("+79169999999", "7726", "nobody asked").await.unwrap();

    let deadline = Instant::now() + Duration::from_secs(10);
    let all = loop {
        let all = call(&d, "GET", "/v1/inbound", ADMIN_KEY, None).await.body;
        if all["messages"].as_array().is_some_and(|m| m.len() == 3) {
            break all;
        }
        assert!(Instant::now() < deadline, "{all:#}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let id_of =
        |text: &str| all["messages"].as_array().unwrap().iter().find(|m| m["text"] == text).unwrap()["id"].clone();
    let texts = |v: &Value| -> Vec<String> {
        v["messages"].as_array().unwrap().iter().map(|m| m["text"].as_str().unwrap().to_string()).collect()
    };
    assert_eq!(texts(&call(&d, "GET", "/v1/inbound", KEY, None).await.body), ["yes for A"]);
    assert_eq!(texts(&call(&d, "GET", "/v1/inbound", OTHER_KEY, None).await.body), ["thanks B"]);
    let own = call(&d, "GET", &format!("/v1/inbound/{}", id_of("yes for A")), KEY, None).await;
    assert_eq!((own.status, own.body["from"].as_str()), (200, Some("+79161234567")), "{}", own.body);
    assert_eq!(call(&d, "GET", &format!("/v1/inbound/{}", id_of("thanks B")), KEY, None).await.status, 404);
    assert_eq!(call(&d, "GET", &format!("/v1/inbound/{}", id_of("nobody asked")), KEY, None).await.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_over_its_rate_gets_429_with_retry_after_and_others_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let chatty =
        "[[api_keys]]\nname = \"chatty\"\nkey = \"chatty-key-0123456789abcdef\"\nrate_per_sec = 0.2\nburst = 3\n";
    write_config(dir.path(), &keys(chatty), &sim_route(dir.path(), "sim", "", ""));
    let d = Daemon::start(dir.path());
    // A bucket of three that refills one request every five seconds.
    for _ in 0..3 {
        assert_eq!(call(&d, "GET", "/v1/messages", "chatty-key-0123456789abcdef", None).await.status, 200);
    }
    let over = call(&d, "POST", "/v1/messages", "chatty-key-0123456789abcdef", Some(msg("+79161234567", "x"))).await;
    assert_eq!(over.status, 429, "{}", over.body);
    assert_eq!(over.body["type"], "urn:smsgw:problem:rate-limited");
    assert!(over.body["detail"].as_str().unwrap().contains("rate limit"), "{}", over.body);
    let wait = over.retry_after.expect("Retry-After");
    assert!((1..=5).contains(&wait), "Retry-After {wait}");
    let scrape = call(&d, "GET", "/metrics", METRICS_KEY, None).await.body;
    let scrape = prometheus_parse::Scrape::parse(scrape.as_str().unwrap().lines().map(|l| Ok(l.to_string()))).unwrap();
    let refused = [("api_key", "chatty"), ("reason", "rate_limited")];
    assert_eq!(sample(&scrape, "smsgw_api_key_refused_total", &refused), Some(1.0));
    // Nothing was written, and another key is not slowed down.
    assert_eq!(ids(&call(&d, "GET", "/v1/messages", ADMIN_KEY, None).await.body), Vec::<i64>::new());
    for _ in 0..10 {
        assert_eq!(call(&d, "GET", "/v1/messages", KEY, None).await.status, 200);
    }
}

fn quota_key(quota: u32, scopes: &str) -> String {
    format!("[[api_keys]]\nname = \"capped\"\nkey = \"capped-key-0123456789abcdef\"\ndaily_quota = {quota}\n{scopes}")
}

const CAPPED: &str = "capped-key-0123456789abcdef";

fn batch(n: usize) -> Value {
    json!({ "messages": (0..n).map(|i| msg(&format!("+7916123450{i}"), "promo")).collect::<Vec<_>>() })
}

async fn count_all(d: &Daemon) -> usize {
    ids(&call(d, "GET", "/v1/messages", ADMIN_KEY, None).await.body).len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daily_quota_refuses_whole_batches_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let routes = sim_route(dir.path(), "sim", "", "");
    write_config(dir.path(), &keys(&quota_key(5, "")), &routes);
    let d = Daemon::start(dir.path());
    assert_eq!(call(&d, "POST", "/v1/messages", CAPPED, Some(batch(3))).await.status, 202);

    let over = call(&d, "POST", "/v1/messages", CAPPED, Some(batch(3))).await;
    assert_eq!(over.status, 429, "{}", over.body);
    assert_eq!(over.body["type"], "urn:smsgw:problem:quota-exceeded");
    let detail = over.body["detail"].as_str().unwrap();
    assert!(detail.contains("3 of its daily quota of 5") && detail.contains("none was accepted"), "{detail}");
    assert!(over.retry_after.is_some_and(|s| (1..=86_400).contains(&s)), "{:?}", over.retry_after);
    assert_eq!(count_all(&d).await, 3, "a batch over the quota writes nothing");
    let scrape = call(&d, "GET", "/metrics", METRICS_KEY, None).await.body;
    let scrape = prometheus_parse::Scrape::parse(scrape.as_str().unwrap().lines().map(|l| Ok(l.to_string()))).unwrap();
    let refused = [("api_key", "capped"), ("reason", "quota_exceeded")];
    assert_eq!(sample(&scrape, "smsgw_api_key_refused_total", &refused), Some(1.0));

    assert_eq!(call(&d, "POST", "/v1/messages", CAPPED, Some(batch(2))).await.status, 202, "exactly to the quota");
    assert_eq!(call(&d, "POST", "/v1/messages", CAPPED, Some(msg("+79161234567", "one more"))).await.status, 429);
    // The quota is the key's own: another key still sends.
    send(&d, KEY, msg("+79161234567", "not capped")).await;
    assert_eq!(d.terminate(), Some(0));

    let d = Daemon::start(dir.path());
    let after = call(&d, "POST", "/v1/messages", CAPPED, Some(msg("+79161234567", "after restart"))).await;
    assert_eq!(after.status, 429, "the count comes from the store: {}", after.body);
    assert_eq!(count_all(&d).await, 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_applies_new_scopes_and_limits() {
    let dir = tempfile::tempdir().unwrap();
    let routes = sim_route(dir.path(), "sim", "", "");
    write_config(dir.path(), &keys(&quota_key(100, "scopes = [\"send\"]\n")), &routes);
    let d = Daemon::start(dir.path());
    assert_eq!(call(&d, "GET", "/v1/routes", CAPPED, None).await.status, 403);
    assert_eq!(call(&d, "POST", "/v1/messages", CAPPED, Some(batch(2))).await.status, 202);

    write_config(dir.path(), &keys(&quota_key(2, "scopes = [\"send\", \"read\"]\n")), &routes);
    d.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    while call(&d, "GET", "/v1/routes", CAPPED, None).await.status != 200 {
        assert!(Instant::now() < deadline, "the new scopes never applied");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let over = call(&d, "POST", "/v1/messages", CAPPED, Some(msg("+79161234567", "x"))).await;
    assert_eq!(over.status, 429, "the new quota applies: {}", over.body);
}

#[test]
fn config_check_names_an_unknown_scope() {
    let dir = tempfile::tempdir().unwrap();
    write_config(
        dir.path(),
        &keys(&quota_key(5, "scopes = [\"send\", \"write\"]\n")),
        &sim_route(dir.path(), "sim", "", ""),
    );
    let out = Command::new(bin()).args(["config", "check"]).arg(dir.path().join("smsgw.toml")).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("api_keys[2].scopes[1]") && err.contains("\"write\""), "{err}");
}
