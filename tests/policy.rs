//! Opt-out and consent, enforced, through the real binary and a sim route:
//! an opted-out number's promotions are answered `suppressed` and never
//! reach the route (single, batch, idempotent replay), other classes still
//! go unless the opt-out (or the site) says `all`; an opt-out that comes
//! while a promotion waits for its `send_at` stops it at claim; with
//! `require_consent`, a promotion goes only while a consent is in force;
//! the registries list and export as CSV, refuse bad fields by name, and
//! ask for their scopes; `/metrics` counts what was suppressed.

mod common;
use common::*;
use serde_json::{Value, json};

const ADMIN_KEY: &str = "admin-key-0123456789abcdef";
const NUMBER: &str = "+79161234567";

/// KEY ("test") and OTHER_KEY ("other") get the default scopes, send and
/// read; "ops" is the administrator.
fn start(dir: &std::path::Path, policy: &str) -> Daemon {
    let routes = format!(
        "[[api_keys]]\nname = \"ops\"\nkey = \"{ADMIN_KEY}\"\nscopes = [\"admin\"]\n{}",
        sim_route(dir, "sim", "", "delivery_delay_ms = 0")
    );
    write_config(dir, policy, &routes);
    Daemon::start(dir)
}

/// A request with `key`: the status and the body as text.
async fn call(d: &Daemon, method: &str, path: &str, key: &str, body: Option<Value>) -> (u16, String) {
    let url = format!("{}{path}", d.url);
    let req = match method {
        "GET" => d.http.get(url),
        "DELETE" => d.http.delete(url),
        _ => d.http.post(url),
    };
    let req = match body {
        Some(b) => req.json(&b),
        None => req,
    };
    let resp = req.bearer_auth(key).send().await.expect("request");
    (resp.status().as_u16(), resp.text().await.unwrap_or_default())
}

async fn call_json(d: &Daemon, method: &str, path: &str, key: &str, body: Option<Value>) -> (u16, Value) {
    let (s, text) = call(d, method, path, key, body).await;
    (s, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

fn promo(text: &str) -> Value {
    json!({"to": NUMBER, "text": text, "priority": "promotional"})
}

/// The texts the sim route was handed.
fn sent_texts(d: &Daemon) -> Vec<String> {
    records(&d.dir, "sim").iter().map(|r| r["text"].as_str().unwrap_or_default().to_string()).collect()
}

/// The fields a 422 names.
fn fields(body: &Value) -> Vec<String> {
    body["errors"].as_array().into_iter().flatten().map(|e| e["field"].as_str().unwrap().to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_opted_out_number_gets_no_promotions_and_scope_all_stops_everything() {
    let dir = tempfile::tempdir().unwrap();
    let d = start(dir.path(), "");
    // A send key records a stop it received; the national form is read as E.164.
    let (s, entry) = call_json(&d, "POST", "/v1/optouts", KEY, Some(json!({"number": "8 916 123-45-67"}))).await;
    assert_eq!(s, 201, "{entry}");
    assert_eq!((entry["number"].as_str(), entry["scope"].as_str()), (Some(NUMBER), Some("promotional")));
    assert_eq!((entry["source"].as_str(), entry["api_key"].as_str()), (Some("api"), Some("test")));
    let (s, again) = call_json(&d, "POST", "/v1/optouts", KEY, Some(json!({"number": NUMBER}))).await;
    assert_eq!((s, &again["at"]), (200, &entry["at"]), "already on record: unchanged");

    let (s, one) = d.post("/v1/messages", &promo("offer one")).await;
    assert_eq!(s, 202, "{one}");
    assert_eq!((one["status"].as_str(), one["reason"].as_str()), (Some("suppressed"), Some("opted_out")));
    let batch = json!({"messages": [promo("offer two"), {"to": "+79160000002", "text": "offer three", "priority": "promotional"}]});
    let (s, many) = d.post("/v1/messages", &batch).await;
    assert_eq!(s, 202, "{many}");
    let m = many["messages"].as_array().unwrap();
    assert_eq!((m[0]["status"].as_str(), m[0]["reason"].as_str()), (Some("suppressed"), Some("opted_out")));
    assert_eq!(m[1]["status"], "queued");
    assert!(m[1].get("reason").is_none(), "no reason when nothing stopped it: {}", m[1]);
    // An idempotent replay answers as the first time.
    let idem = [("idempotency-key", "promo-1")];
    let body = serde_json::to_vec(&promo("offer four")).unwrap();
    let (_, first) = d.post_raw("/v1/messages", body.clone(), &idem).await;
    let (_, replay) = d.post_raw("/v1/messages", body, &idem).await;
    assert_eq!((&replay, replay["reason"].as_str()), (&first, Some("opted_out")));

    let v = d.message(one["id"].as_i64().unwrap()).await;
    assert_eq!((v["status"].as_str(), v["error"]["code"].as_str()), (Some("suppressed"), Some("opted_out")));
    let why = v["error"]["text"].as_str().unwrap();
    assert!(why.contains("source api") && why.contains(entry["at"].as_str().unwrap()), "{why}");
    assert_eq!(v["history"].as_array().unwrap().len(), 1, "{v:#}");

    // The default scope stops promotions only: a code still goes.
    let otp = d.send(json!({"to": NUMBER, "text": "code 1234", "priority": "otp"})).await;
    d.wait_status(otp, "delivered", 15).await;
    d.wait_status(m[1]["id"].as_i64().unwrap(), "delivered", 15).await;
    // Scope all stops every class.
    let (s, _) = call_json(&d, "POST", "/v1/optouts", KEY, Some(json!({"number": NUMBER, "scope": "all"}))).await;
    assert_eq!(s, 201);
    let (_, otp2) = d.post("/v1/messages", &json!({"to": NUMBER, "text": "code 5678", "priority": "otp"})).await;
    assert_eq!((otp2["status"].as_str(), otp2["reason"].as_str()), (Some("suppressed"), Some("opted_out")));
    let mut texts = sent_texts(&d);
    texts.sort();
    assert_eq!(texts, ["code 1234", "offer three"], "nothing suppressed reached the route");

    // Only an administrator removes an opt-out; then the number hears from us again.
    let (s, p) = call_json(&d, "DELETE", "/v1/optouts/+79161234567", KEY, None).await;
    assert_eq!((s, p["required_scope"].as_str()), (403, Some("admin")), "{p}");
    let (s, _) = call(&d, "DELETE", "/v1/optouts/+79161234567?scope=all", ADMIN_KEY, None).await;
    assert_eq!(s, 204);
    let (s, _) = call(&d, "DELETE", "/v1/optouts/+79161234567?scope=all", ADMIN_KEY, None).await;
    assert_eq!(s, 404, "nothing left of that scope");
    let otp3 = d.send(json!({"to": NUMBER, "text": "code 9012", "priority": "otp"})).await;
    d.wait_status(otp3, "delivered", 15).await;

    // The counter and the gauge both show what was stopped.
    let (_, text) = call(&d, "GET", "/metrics", ADMIN_KEY, None).await;
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("exposition");
    assert_eq!(sample(&scrape, "smsgw_messages_suppressed_total", &[("reason", "opted_out")]), Some(4.0));
    assert_eq!(sample(&scrape, "smsgw_messages", &[("status", "suppressed")]), Some(4.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_optout_that_comes_while_a_promotion_waits_stops_it_at_claim() {
    let dir = tempfile::tempdir().unwrap();
    let d = start(dir.path(), "");
    let later = json!({"to": NUMBER, "text": "weekend sale", "priority": "promotional", "send_at": in_secs(2.0)});
    let (s, a) = d.post("/v1/messages", &later).await;
    assert_eq!((s, a["status"].as_str()), (202, Some("queued")));
    let (s, _) = call_json(&d, "POST", "/v1/optouts", KEY, Some(json!({"number": NUMBER}))).await;
    assert_eq!(s, 201);
    let v = d.wait_status(a["id"].as_i64().unwrap(), "suppressed", 15).await;
    assert_eq!(v["error"]["code"], "opted_out");
    let statuses: Vec<&str> = v["history"].as_array().unwrap().iter().map(|h| h["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["queued", "suppressed"], "never sent: {v:#}");
    assert!(sent_texts(&d).is_empty());
    let (_, text) = call(&d, "GET", "/metrics", ADMIN_KEY, None).await;
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("exposition");
    assert_eq!(sample(&scrape, "smsgw_messages_suppressed_total", &[("reason", "opted_out")]), Some(1.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_require_consent_a_promotion_goes_only_while_a_consent_holds() {
    let dir = tempfile::tempdir().unwrap();
    let d = start(dir.path(), "[policy]\nrequire_consent = true\n");
    let (_, none) = d.post("/v1/messages", &promo("no consent yet")).await;
    assert_eq!((none["status"].as_str(), none["reason"].as_str()), (Some("suppressed"), Some("no_consent")));
    let v = d.message(none["id"].as_i64().unwrap()).await;
    assert_eq!(v["error"]["code"], "no_consent");
    // A transactional message needs no consent.
    let tx = d.send(json!({"to": NUMBER, "text": "your order shipped"})).await;
    d.wait_status(tx, "delivered", 15).await;

    let consent = json!({"number": NUMBER, "source": "web form", "proof": "I agree to receive offers, \"weekly\""});
    let (s, p) = call_json(&d, "POST", "/v1/consents", KEY, Some(consent.clone())).await;
    assert_eq!((s, p["required_scope"].as_str()), (403, Some("admin")), "consents are the administrator's");
    let (s, c) = call_json(&d, "POST", "/v1/consents", ADMIN_KEY, Some(consent)).await;
    assert_eq!(s, 201, "{c}");
    assert_eq!(
        (c["scope"].as_str(), c["recorded_by"].as_str(), c["active"].as_bool()),
        (Some("promotional"), Some("ops"), Some(true))
    );
    let with = d.send(promo("with consent")).await;
    d.wait_status(with, "delivered", 15).await;

    let (s, w) = call_json(&d, "DELETE", &format!("/v1/consents/{}", c["id"]), ADMIN_KEY, None).await;
    assert_eq!((s, w["active"].as_bool()), (200, Some(false)), "{w}");
    assert!(w["withdrawn_at"].is_string());
    let (_, after) = d.post("/v1/messages", &promo("after withdrawal")).await;
    assert_eq!(after["reason"], "no_consent");
    let why = d.message(after["id"].as_i64().unwrap()).await["error"]["text"].as_str().unwrap().to_string();
    assert!(why.contains("withdrew"), "{why}");
    let mut texts = sent_texts(&d);
    texts.sort();
    assert_eq!(texts, ["with consent", "your order shipped"]);

    // The record stays, as proof; the export holds it whole, quotes and all.
    let (s, csv_text) = call(&d, "GET", "/v1/consents?format=csv", ADMIN_KEY, None).await;
    assert_eq!(s, 200);
    let mut r = csv::Reader::from_reader(csv_text.as_bytes());
    assert_eq!(r.headers().unwrap().iter().collect::<Vec<_>>()[..3], ["id", "number", "scope"]);
    let rows: Vec<csv::StringRecord> = r.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 1);
    assert_eq!(&rows[0][4], "I agree to receive offers, \"weekly\"");
    assert_eq!(&rows[0][8], "false");
    let (_, text) = call(&d, "GET", "/metrics", ADMIN_KEY, None).await;
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("exposition");
    assert_eq!(sample(&scrape, "smsgw_messages_suppressed_total", &[("reason", "no_consent")]), Some(2.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_registry_lists_filters_pages_and_exports_as_csv() {
    let dir = tempfile::tempdir().unwrap();
    let d = start(dir.path(), "");
    for (n, scope) in [("+79160000001", "promotional"), ("+79160000002", "all"), ("+79160000003", "promotional")] {
        let (s, _) = call_json(&d, "POST", "/v1/optouts", KEY, Some(json!({"number": n, "scope": scope}))).await;
        assert_eq!(s, 201);
    }
    let (s, page) = d.get("/v1/optouts?limit=2").await;
    assert_eq!(s, 200);
    let numbers = |v: &Value| -> Vec<String> {
        v["optouts"].as_array().unwrap().iter().map(|o| o["number"].as_str().unwrap().to_string()).collect()
    };
    let first = numbers(&page);
    let cursor = page["next_cursor"].as_str().expect("a next page");
    let (_, rest) = d.get(&format!("/v1/optouts?limit=2&cursor={cursor}")).await;
    let mut all = [first, numbers(&rest)].concat();
    assert!(rest["next_cursor"].is_null());
    all.sort();
    assert_eq!(all, ["+79160000001", "+79160000002", "+79160000003"]);
    let (_, only) = d.get("/v1/optouts?scope=all").await;
    assert_eq!(numbers(&only), ["+79160000002"]);
    let (_, one) = d.get("/v1/optouts?number=%2B79160000003").await;
    assert_eq!(numbers(&one), ["+79160000003"]);

    for path in ["/v1/optouts?format=csv&source=api", "/v1/optouts.csv"] {
        let resp = d.http.get(format!("{}{path}", d.url)).bearer_auth(KEY).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("text/csv"));
        let text = resp.text().await.unwrap();
        assert!(text.ends_with("\r\n"), "RFC 4180 line ends");
        let mut r = csv::Reader::from_reader(text.as_bytes());
        assert_eq!(r.headers().unwrap(), vec!["number", "scope", "source", "route", "api_key", "inbound_id", "at"]);
        let rows: Vec<csv::StringRecord> = r.records().map(Result::unwrap).collect();
        assert_eq!(rows.len(), 3, "{path}");
        assert!(rows.iter().all(|row| &row[2] == "api" && &row[4] == "test"));
    }

    // Every wrong field is named.
    let bad = [
        ("POST", "/v1/optouts", Some(json!({"number": "12"})), "number"),
        ("POST", "/v1/optouts", Some(json!({"number": NUMBER, "scope": "some"})), "scope"),
        ("POST", "/v1/optouts", Some(json!({"scope": "all"})), "number"),
        ("GET", "/v1/optouts?since=yesterday", None, "since"),
        ("GET", "/v1/optouts?format=xml", None, "format"),
        ("GET", "/v1/optouts?cursor=nope", None, "cursor"),
        ("DELETE", "/v1/optouts/12", None, "number"),
        ("POST", "/v1/consents", Some(json!({"number": NUMBER, "source": "form", "proof": " "})), "proof"),
        (
            "POST",
            "/v1/consents",
            Some(json!({"number": NUMBER, "source": "form", "proof": "yes", "at": in_secs(3600.0)})),
            "at",
        ),
        ("POST", "/v1/consents", Some(json!({"number": "x", "source": "", "proof": "yes"})), "source"),
    ];
    for (method, path, body, field) in bad {
        let (s, p) = call_json(&d, method, path, ADMIN_KEY, body).await;
        assert_eq!(s, 422, "{method} {path}: {p}");
        let named = fields(&p);
        assert!(named.iter().any(|f| f == field), "{method} {path}: {field} not in {p}");
    }
    // A key without admin neither removes an opt-out nor reads consents.
    let (s, _) = call(&d, "DELETE", "/v1/optouts/+79160000001", OTHER_KEY, None).await;
    assert_eq!(s, 403);
    let (s, _) = call(&d, "GET", "/v1/consents", OTHER_KEY, None).await;
    assert_eq!(s, 403);
    let (_, still) = d.get("/v1/optouts").await;
    assert_eq!(still["optouts"].as_array().unwrap().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_applies_the_sites_optout_scope() {
    let dir = tempfile::tempdir().unwrap();
    let d = start(dir.path(), "");
    let (s, _) = call_json(&d, "POST", "/v1/optouts", KEY, Some(json!({"number": NUMBER}))).await;
    assert_eq!(s, 201);
    // Codes for later: they wait in the queue while the policy changes.
    let code = json!({"to": NUMBER, "text": "code", "priority": "otp", "send_at": in_secs(3600.0)});
    let (_, before) = d.post("/v1/messages", &code).await;
    assert_eq!(before["status"], "queued", "a plain opt-out stops promotions only");

    let routes = format!(
        "[[api_keys]]\nname = \"ops\"\nkey = \"{ADMIN_KEY}\"\nscopes = [\"admin\"]\n{}",
        sim_route(dir.path(), "sim", "", "delivery_delay_ms = 0")
    );
    write_config(dir.path(), "[policy]\noptout_scope = \"all\"\n", &routes);
    d.signal("HUP");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (_, a) = d.post("/v1/messages", &code).await;
        if a["status"] == "suppressed" {
            assert_eq!(a["reason"], "opted_out");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the reload never applied optout_scope = \"all\"");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // A bad value is refused by name; the running policy stays.
    write_config(dir.path(), "[policy]\noptout_scope = \"everything\"\n", &routes);
    let out = std::process::Command::new(bin())
        .args(["config", "check"])
        .arg(dir.path().join("smsgw.toml"))
        .output()
        .expect("config check");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("optout_scope") && err.contains("everything"), "{err}");
}
