//! The status page: served without a key (it holds no data), its data
//! endpoints answer with what the routes report, and — where a headless
//! Chromium is installed (CI installs it and sets SMSGW_BROWSER_TESTS=1) —
//! the page rendered in a real browser shows the route rows with a pause
//! (its reason) or a button to pause; the latest
//! replies with the message each answers, the opt-outs and the webhook
//! subscriptions with their health and a replay button for dead
//! deliveries; each trigger rule's funnel, a button to cancel its queued
//! messages, and what is scheduled in the next hours; and a key without `read` still sees the cards it may see.

mod common;
use common::*;
use rusqlite::{Connection, params};
use serde_json::{Value, json};
use smsgw::simulate::smsc::{Smsc, SmscConfig};
use std::time::{Duration, Instant};

const ADMIN_KEY: &str = "admin-key-0123456789abcdef";
const SENDER_KEY: &str = "sender-key-0123456789abcdef";

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
    assert!(
        row(&dom, "<b>primary</b>").contains("<button class=\"small pause\" data-route=\"primary\">Pause</button>")
    );

    // A paused route says so, with its reason, and offers to resume.
    let (s, _) = call(&d, "POST", "/v1/routes/backup/pause", KEY, Some(json!({"reason": "invoice dispute"}))).await;
    assert_eq!(s, 200);
    let Some(dom) = status_page_dom(&d).await else { return };
    let backup = row(&dom, "<b>backup</b>");
    assert!(backup.contains("class=\"pill paused\"") && backup.contains("invoice dispute"), "{backup}");
    assert!(backup.contains("<button class=\"small resume\" data-route=\"backup\">Resume</button>"), "{backup}");
}

async fn call(d: &Daemon, method: &str, path: &str, key: &str, body: Option<Value>) -> (u16, Value) {
    let url = format!("{}{path}", d.url);
    let req = if method == "GET" { d.http.get(url) } else { d.http.post(url) };
    let req = match body {
        Some(b) => req.json(&b),
        None => req,
    };
    let resp = req.bearer_auth(key).send().await.expect("request");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn until<F: std::future::Future<Output = bool>>(what: &str, secs: u64, mut ok: impl FnMut() -> F) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !ok().await {
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The page as rendered, without its script (which holds every text the page can show).
fn rendered(dom: &str) -> &str {
    &dom[..dom.find("<script>").unwrap_or(dom.len())]
}

/// The line at the top saying when the page last read the API.
fn updated(dom: &str) -> &str {
    let at = dom.find("id=\"updated\">").expect("the updated line") + "id=\"updated\">".len();
    &dom[at..at + dom[at..].find('<').expect("its end")]
}

/// The `<tr>` of the rendered `dom` that holds `needle`.
fn row<'a>(dom: &'a str, needle: &str) -> &'a str {
    let dom = rendered(dom);
    let at = dom.find(needle).unwrap_or_else(|| panic!("no {needle:?} in:\n{dom}"));
    let start = dom[..at].rfind("<tr").expect("a row");
    let end = at + dom[at..].find("</tr>").expect("the row's end");
    &dom[start..end]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_page_shows_replies_optouts_and_webhook_health() {
    let cfg = SmscConfig { credentials: vec![("smsgw".into(), "secret".into())], ..Default::default() };
    let smsc = Smsc::start(cfg, tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap()).await;
    let dir = tempfile::tempdir().unwrap();
    let keys = format!(
        "[[api_keys]]\nname = \"ops\"\nkey = \"{ADMIN_KEY}\"\nscopes = [\"admin\"]\n\
         [[api_keys]]\nname = \"sender\"\nkey = \"{SENDER_KEY}\"\nscopes = [\"send\"]\n"
    );
    let carrier = format!(
        "[[routes]]\nname = \"carrier\"\nkind = \"smpp\"\n[routes.smpp]\nhost = \"127.0.0.1\"\nport = {}\n\
         system_id = \"smsgw\"\npassword = \"secret\"\nreconnect_min_ms = 50\n",
        smsc.local_addr().port()
    );
    write_config(dir.path(), &keys, &carrier);
    let d = Daemon::start(dir.path());

    // A question goes out through the carrier and its answer comes back linked to it.
    let asked =
        d.send(json!({"to": "+79161234567", "text": "Table for two at 8? YES or NO", "reference": "table-8pm"})).await;
    until("the question submitted", 20, || async { d.message(asked).await["status"] != "queued" }).await;
    until("the question at the SMSC", 20, || async { !smsc.submitted().is_empty() }).await;
    smsc.inject_inbound("+79161234567", "7726", "<Yes!>").await.unwrap();
    until("the answer stored", 20, || async {
        call(&d, "GET", "/v1/inbound", KEY, None).await.1["messages"][0]["text"] == "<Yes!>"
    })
    .await;
    let (_, inbound) = call(&d, "GET", "/v1/inbound", KEY, None).await;
    assert_eq!(inbound["messages"][0]["in_reply_to"]["message_id"], asked, "{inbound:#}");

    let (s, optout) = call(&d, "POST", "/v1/optouts", KEY, Some(json!({"number": "+79031112233"}))).await;
    assert_eq!(s, 201, "{optout}");

    // A subscription to a port nothing listens on, with one delivery that ran
    // out of retries, written into the file as the delivery engine writes it.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let hook_url = format!("http://127.0.0.1:{closed}/smsgw-hook");
    let (s, hook) =
        call(&d, "POST", "/v1/webhooks", KEY, Some(json!({"url": hook_url, "events": ["message.delivered"]}))).await;
    assert_eq!(s, 201, "{hook}");
    let hook_id = hook["id"].as_i64().unwrap();
    let c = Connection::open(dir.path().join("smsgw.db")).unwrap();
    c.busy_timeout(Duration::from_secs(5)).unwrap();
    let t = chrono::Utc::now().timestamp_millis() - 60_000;
    c.execute("INSERT INTO events (kind, at, api_key) VALUES ('message.delivered', ?1, 'test')", [t]).unwrap();
    let event = c.last_insert_rowid();
    c.execute(
        "INSERT INTO deliveries (webhook_id, event_id, order_key, state, attempts, created_at, next_at, done_at,
                                 last_status, last_error)
         VALUES (?1, ?2, NULL, 'dead', 1, ?3, ?3, ?3, NULL, 'connection refused')",
        params![hook_id, event, t],
    )
    .unwrap();
    // And one that went through: replaying the dead must leave it alone.
    c.execute("INSERT INTO events (kind, at, api_key) VALUES ('message.submitted', ?1, 'test')", [t]).unwrap();
    let done = c.last_insert_rowid();
    c.execute(
        "INSERT INTO deliveries (webhook_id, event_id, order_key, state, attempts, created_at, next_at, done_at,
                                 last_status)
         VALUES (?1, ?2, NULL, 'done', 1, ?3, ?3, ?3, 200)",
        params![hook_id, done, t],
    )
    .unwrap();
    c.execute(
        "INSERT INTO delivery_attempts (webhook_id, event_id, at, http_status, latency_ms, error)
         VALUES (?1, ?2, ?3, NULL, 1, 'connection refused')",
        params![hook_id, event, t],
    )
    .unwrap();

    if let Some(dom) = status_page_dom_as(&d, ADMIN_KEY).await {
        assert!(updated(&dom).starts_with("updated ") && !updated(&dom).contains("not shown"), "{dom}");
        // The reply, its text escaped, its intent as a pill, the message it answers.
        let reply = row(&dom, "&lt;Yes!&gt;");
        assert!(reply.contains("+79161234567"), "{reply}");
        assert!(reply.contains("<span class=\"pill up\">yes</span>"), "{reply}");
        assert!(reply.contains(&format!("class=\"answers\">message {asked}<br>")), "{reply}");
        assert!(reply.contains("key test · ref table-8pm"), "{reply}");
        let optout = row(&dom, "<td>+79031112233</td>");
        assert!(optout.contains("<td>promotional</td><td>api"), "{optout}");
        let hook = row(&dom, &hook_url);
        assert!(hook.contains("message.delivered") && hook.contains("api · key test"), "{hook}");
        assert!(hook.contains("<span class=\"pill up\">enabled</span>"), "{hook}");
        assert!(
            hook.contains(&format!("<button class=\"small replay\" data-id=\"{hook_id}\">Replay dead</button>")),
            "{hook}"
        );
    }

    // A key with `send` alone: the cards that need `read` say so, each on
    // its own; its webhooks card still shows (it has no subscription).
    if let Some(dom) = status_page_dom_as(&d, SENDER_KEY).await {
        assert!(updated(&dom).starts_with("updated ") && updated(&dom).ends_with("(8 of 9 cards not shown)"), "{dom}");
        let rules = &rendered(&dom)[dom.find("id=\"rules-card\"").expect("the rules card")..];
        let rules = &rules[..rules.find("</section>").unwrap()];
        assert!(rules.contains("not shown: this needs an API key with the \"read\" scope"), "{rules}");
        let replies = &rendered(&dom)[dom.find("id=\"replies-card\"").expect("the replies card")..];
        let replies = &replies[..replies.find("</section>").unwrap()];
        assert!(replies.contains("not shown: this needs an API key with the \"read\" scope"), "{replies}");
        assert!(row(&dom, "no subscriptions").contains("<td class=\"muted\">"), "{dom}");
        assert!(!dom.contains(&hook_url), "another key's subscription");
    }

    // What the button does: every dead delivery of the subscription, in one call.
    let path = format!("/v1/webhooks/{hook_id}");
    let body = json!({"since": "1970-01-01T00:00:00Z", "state": "dead"});
    let (s, r) = call(&d, "POST", &format!("{path}/replay"), KEY, Some(body)).await;
    assert_eq!((s, r["replayed"].as_u64()), (200, Some(1)), "{r}");
    let state_of = |event: i64| -> String {
        c.query_row(
            "SELECT state FROM deliveries WHERE webhook_id = ?1 AND event_id = ?2",
            params![hook_id, event],
            |r| r.get(0),
        )
        .unwrap()
    };
    assert_eq!(state_of(done), "done", "a delivery that went through was sent again");
    let state = state_of(event);
    assert_eq!(state, "pending");
    assert_eq!(call(&d, "GET", &path, KEY, None).await.1["health"]["dead"], 0);
}

/// The Rules card: a rule's funnel with its numbers, what cancelled and
/// suppressed its messages, and its message due in two hours on the
/// schedule. The rule's rows are messages the daemon really handled, marked
/// as the engine marks them, with its runs and a conversion.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_page_shows_each_rules_funnel_and_schedule() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), "", &sim_route(dir.path(), "sim", "", "delivery_delay_ms = 0"));
    let d = Daemon::start(dir.path());
    let mut sent = Vec::new();
    for i in 0..3 {
        let id = d.send(msg(&format!("+7916123000{i}"), "your cart")).await;
        d.wait_status(id, "delivered", 15).await;
        sent.push(id);
    }
    let later = d.send(json!({"to": "+79161230009", "text": "your cart", "send_at": in_secs(7200.0)})).await;
    let paid = d.send(json!({"to": "+79161230008", "text": "your cart", "send_at": in_secs(7200.0)})).await;
    assert_eq!(call(&d, "POST", &format!("/v1/messages/{paid}/cancel"), KEY, Some(json!({}))).await.0, 200);

    let c = Connection::open(dir.path().join("smsgw.db")).unwrap();
    c.busy_timeout(Duration::from_secs(5)).unwrap();
    for _ in 0..6 {
        c.execute(
            "INSERT INTO rule_runs (rule, event_id, key, recipient, at, outcome)
             VALUES ('cart-reminder', 1, 'c1', 'x', 0, 'scheduled')",
            [],
        )
        .unwrap();
    }
    for id in sent.iter().chain([&later, &paid]) {
        c.execute("UPDATE messages SET rule = 'cart-reminder', step = 0, trigger_key = 'c1' WHERE id = ?1", [id])
            .unwrap();
    }
    c.execute("UPDATE messages SET cancelled_by = 'order.paid' WHERE id = ?1", [paid]).unwrap();
    c.execute("INSERT INTO conversions (message_id, rule, event_id, at) VALUES (?1, 'cart-reminder', 2, 0)", [sent[0]])
        .unwrap();

    let Some(dom) = status_page_dom(&d).await else { return };
    assert!(updated(&dom).starts_with("updated ") && !updated(&dom).contains("not shown"), "{dom}");
    let rule = row(&dom, "<b>cart-reminder</b>");
    for (stage, n) in [("triggered", 6), ("sent", 3), ("delivered", 3), ("replied", 0), ("converted", 1)] {
        let cell = &rule[rule.find(&format!("class=\"stage {stage}\"")).unwrap_or_else(|| panic!("{stage}: {rule}"))..];
        let cell = &cell[..cell.find("</td>").unwrap()];
        assert!(cell.ends_with(&format!("<b>{n}</b>")), "{stage} should be {n}: {cell}");
    }
    assert!(rule.contains("<td>order.paid 1</td>"), "{rule}");
    assert!(
        rule.contains("<button class=\"small cancel-rule\" data-rule=\"cart-reminder\">Cancel 1 queued</button>"),
        "{rule}"
    );
    let hour = row(&dom, "cart-reminder 1</td>");
    assert!(hour.contains("class=\"hour\"") && hour.contains("<b>1</b>"), "{hour}");

    // What the button does: the rule's queued messages, in one call.
    let (s, v) = call(&d, "POST", "/v1/messages/cancel", KEY, Some(json!({"rule": "cart-reminder"}))).await;
    assert_eq!((s, v["cancelled"].as_u64()), (200, Some(1)), "{v}");
    assert_eq!(d.message(later).await["status"], "cancelled");
    let Some(dom) = status_page_dom(&d).await else { return };
    assert!(!row(&dom, "<b>cart-reminder</b>").contains("cancel-rule"), "nothing queued, no button: {dom}");
}
