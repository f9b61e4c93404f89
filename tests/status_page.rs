//! The status page: served without a key (it holds no data), its data
//! endpoints answer with what the routes report, and — where a headless
//! Chromium is installed (CI installs it and sets SMSGW_BROWSER_TESTS=1) —
//! the page rendered in a real browser shows the route rows.

mod common;
use common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_page_shows_routes_queue_and_throughput() {
    let dir = tempfile::tempdir().unwrap();
    let routes = format!(
        "{}{}",
        sim_route(dir.path(), "primary", "prefixes = [\"+7\"]", "delivery_delay_ms = 0"),
        sim_route(dir.path(), "backup", "", "fail_fraction = 1.0")
    );
    write_config(dir.path(), "", &routes);
    let d = Daemon::start(dir.path());
    let msgs: Vec<_> = (0..5).map(|i| msg(&format!("+7916123{i:04}"), "hi")).collect();
    d.post("/v1/messages", &json!({"messages": msgs})).await;
    d.send(msg("+4915112345678", "fails")).await;
    d.wait_counts(15, "5 delivered, 1 failed", |b| b["delivered"] == 5 && b["failed"] == 1).await;

    let page = d.http.get(format!("{}/", d.url)).send().await.unwrap();
    assert_eq!(page.status().as_u16(), 200);
    assert!(page.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    let html = page.text().await.unwrap();
    assert!(html.contains("/v1/routes") && html.contains("Authorization"));

    let (s, t) = d.get("/v1/stats/throughput").await;
    assert_eq!(s, 200);
    let minutes = t["minutes"].as_array().unwrap();
    assert_eq!(minutes.len(), 60);
    let sum = |k: &str| minutes.iter().map(|m| m[k].as_u64().unwrap()).sum::<u64>();
    assert_eq!((sum("sent"), sum("delivered"), sum("failed")), (5, 5, 1));

    let Some(dom) = status_page_dom(&d).await else { return };
    assert!(dom.contains("<tr class=\"route\"><td><b>primary</b>"), "no route row for primary in:\n{dom}");
    assert!(dom.contains("<b>backup</b>"), "no route row for backup");
    assert!(dom.contains("sim_rejected"), "the latest failure with its reason");
    assert!(dom.contains("id=\"updated\">updated "), "the page did not finish reading the API");
}
