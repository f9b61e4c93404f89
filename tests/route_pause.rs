//! Pausing a route through the real binary: a paused route sends nothing
//! (its messages wait, across a restart) while a message it already sent
//! still gets its receipt; only an admin key pauses, an unknown route is
//! 404, `/v1/routes` and `/metrics` show the pause; resuming sends what
//! waited. With `failover = true` a paused route's messages go on through
//! the next route that serves them.

mod common;
use common::*;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const ADMIN_KEY: &str = "admin-key-0123456789abcdef";

/// "test" and "other" get send and read; "ops" is the administrator.
fn start(dir: &std::path::Path, routes: &str) -> Daemon {
    let routes = format!("[[api_keys]]\nname = \"ops\"\nkey = \"{ADMIN_KEY}\"\nscopes = [\"admin\"]\n{routes}");
    write_config(dir, "", &routes);
    Daemon::start(dir)
}

async fn as_admin(d: &Daemon, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut req = d.http.post(format!("{}{path}", d.url)).bearer_auth(ADMIN_KEY);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("request");
    (resp.status().as_u16(), resp.json().await.unwrap_or(Value::Null))
}

async fn route(d: &Daemon, name: &str) -> Value {
    let (_, v) = d.get("/v1/routes").await;
    v["routes"].as_array().unwrap().iter().find(|r| r["name"] == name).cloned().expect("the route")
}

async fn paused_gauge(d: &Daemon, route: &str) -> Option<f64> {
    let resp = d.http.get(format!("{}/metrics", d.url)).bearer_auth(ADMIN_KEY).send().await.expect("scrape");
    let text = resp.text().await.unwrap();
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
    sample(&scrape, "smsgw_route_paused", &[("route", route)])
}

/// Every message in `ids` is still queued `for_ms` from now.
async fn still_queued(d: &Daemon, ids: &[i64], for_ms: u64) {
    let until = Instant::now() + Duration::from_millis(for_ms);
    while Instant::now() < until {
        for id in ids {
            let m = d.message(*id).await;
            assert_eq!(m["status"], "queued", "a paused route sent it: {m:#}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_paused_route_sends_nothing_until_resumed_even_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let routes = sim_route(dir.path(), "main", "", "delivery_delay_ms = 1500");
    let d = start(dir.path(), &routes);
    let before = d.send(msg("+79161234567", "sent before the pause")).await;
    d.wait_status(before, "submitted", 10).await;

    // Refusals first: they pause nothing.
    let resp = d.http.post(format!("{}/v1/routes/main/pause", d.url)).bearer_auth(KEY).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 403, "only an admin key pauses");
    let (s, v) = as_admin(&d, "/v1/routes/nowhere/pause", None).await;
    assert_eq!(s, 404, "{v}");
    let (s, v) = as_admin(&d, "/v1/routes/main/pause", Some(json!({"reason": "x".repeat(201)}))).await;
    assert_eq!((s, v["errors"][0]["field"].as_str()), (422, Some("reason")), "{v}");
    assert_eq!(route(&d, "main").await["paused"], Value::Null);

    let (s, v) = as_admin(&d, "/v1/routes/main/pause", Some(json!({"reason": "carrier asked us to stop"}))).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (v["paused"]["by"].as_str(), v["paused"]["reason"].as_str()),
        (Some("ops"), Some("carrier asked us to stop"))
    );
    // Pausing again keeps the first pause.
    let (_, again) = as_admin(&d, "/v1/routes/main/pause", None).await;
    assert_eq!(again["paused"], v["paused"]);

    // The message already with the route still gets its receipt.
    d.wait_status(before, "delivered", 10).await;
    let waiting = vec![d.send(msg("+79161234568", "one")).await, d.send(msg("+79161234569", "two")).await];
    still_queued(&d, &waiting, 1500).await;
    assert_eq!(paused_gauge(&d, "main").await, Some(1.0));
    assert_eq!(route(&d, "main").await["queued"]["transactional"], 2);

    // Across a restart it stays paused.
    d.terminate();
    let d = Daemon::start(dir.path());
    assert_eq!(route(&d, "main").await["paused"]["reason"], "carrier asked us to stop");
    still_queued(&d, &waiting, 1500).await;
    let texts: Vec<String> =
        records(&d.dir, "main").iter().filter_map(|r| r["text"].as_str()).map(str::to_string).collect();
    assert_eq!(texts, ["sent before the pause"], "only the message sent before the pause reached the route");

    let (s, v) = as_admin(&d, "/v1/routes/main/resume", None).await;
    assert_eq!((s, &v["paused"]), (200, &Value::Null), "{v}");
    for id in &waiting {
        d.wait_status(*id, "delivered", 10).await;
    }
    assert_eq!(paused_gauge(&d, "main").await, Some(0.0));
}

#[tokio::test]
async fn a_paused_route_with_failover_passes_its_messages_on() {
    let dir = tempfile::tempdir().unwrap();
    let routes = format!(
        "{}{}",
        sim_route(dir.path(), "main", "prefixes = [\"+7\"]\nfailover = true", "delivery_delay_ms = 0"),
        sim_route(dir.path(), "backup", "", "delivery_delay_ms = 0")
    );
    let d = start(dir.path(), &routes);
    assert_eq!(as_admin(&d, "/v1/routes/main/pause", None).await.0, 200);
    let id = d.send(msg("+79161234567", "via the backup")).await;
    let m = d.wait_status(id, "delivered", 10).await;
    assert_eq!(m["route"], "backup", "{m:#}");

    assert_eq!(as_admin(&d, "/v1/routes/main/resume", None).await.0, 200);
    let id = d.send(msg("+79161234568", "via main again")).await;
    let m = d.wait_status(id, "delivered", 10).await;
    assert_eq!(m["route"], "main", "{m:#}");
}
