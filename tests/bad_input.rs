//! Bad requests: each gets the right 4xx as application/problem+json naming
//! what is wrong, and the store is left exactly as it was.

mod common;
use common::*;
use serde_json::{Value, json};

/// A bad request: name, body, expected status, problem type, field named.
type Case = (&'static str, Vec<u8>, u16, &'static str, Option<&'static str>);

async fn total(d: &Daemon) -> u64 {
    let (_, q) = d.get("/v1/queue").await;
    q["by_status"].as_object().unwrap().values().map(|v| v.as_u64().unwrap()).sum()
}

#[tokio::test]
async fn bad_requests_get_problem_json_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let limits = "max_batch = 5\nmax_recipients = 8\nmax_body_bytes = 4096\nmax_segments = 2";
    write_config_with(dir.path(), limits, "", &sim_route(dir.path(), "sim", "", ""));
    let d = Daemon::start(dir.path());
    d.send(msg("+79161234567", "baseline")).await;
    let before = total(&d).await;

    let many = |n: usize| json!({"messages": (0..n).map(|i| msg(&format!("+7916123{i:04}"), "x")).collect::<Vec<_>>()});
    // (name, body, status, problem type, field named)
    let cases: Vec<Case> = vec![
        ("malformed json", b"{\"to\": ".to_vec(), 400, "malformed-json", None),
        ("not an object", b"[1,2]".to_vec(), 422, "validation", None),
        (
            "wrong type",
            serde_json::to_vec(&json!({"to": 79161234567u64, "text": "x"})).unwrap(),
            422,
            "validation",
            Some("to"),
        ),
        (
            "unknown field",
            serde_json::to_vec(&json!({"to": "+79161234567", "text": "x", "colour": "red"})).unwrap(),
            422,
            "validation",
            Some("colour"),
        ),
        ("missing to", serde_json::to_vec(&json!({"text": "x"})).unwrap(), 422, "validation", None),
        (
            "empty text",
            serde_json::to_vec(&json!({"to": "+79161234567", "text": ""})).unwrap(),
            422,
            "validation",
            Some("text"),
        ),
        (
            "text over the limit",
            serde_json::to_vec(&json!({"to": "+79161234567", "text": "я".repeat(135)})).unwrap(),
            422,
            "validation",
            Some("text"),
        ),
        (
            "invalid number",
            serde_json::to_vec(&json!({"to": "+7 123", "text": "x"})).unwrap(),
            422,
            "validation",
            Some("to"),
        ),
        (
            "garbage number",
            serde_json::to_vec(&json!({"to": "call me", "text": "x"})).unwrap(),
            422,
            "validation",
            Some("to"),
        ),
        (
            "bad priority",
            serde_json::to_vec(&json!({"to": "+79161234567", "text": "x", "priority": "urgent"})).unwrap(),
            422,
            "validation",
            Some("priority"),
        ),
        (
            "bad time",
            serde_json::to_vec(&json!({"to": "+79161234567", "text": "x", "send_at": "tomorrow"})).unwrap(),
            422,
            "validation",
            Some("send_at"),
        ),
        (
            "validity in the past",
            serde_json::to_vec(&json!({"to": "+79161234567", "text": "x", "valid_until": "2001-01-01T00:00:00Z"}))
                .unwrap(),
            422,
            "validation",
            Some("valid_until"),
        ),
        (
            "bad sender",
            serde_json::to_vec(&json!({"to": "+79161234567", "text": "x", "from": "ThisIsTooLongASender"})).unwrap(),
            422,
            "validation",
            Some("from"),
        ),
        (
            "one bad in a batch",
            serde_json::to_vec(&json!({"messages": [msg("+79161234567", "ok"), msg("nope", "x")]})).unwrap(),
            422,
            "validation",
            Some("messages[1].to"),
        ),
        ("batch too large", serde_json::to_vec(&many(6)).unwrap(), 422, "validation", Some("messages")),
        ("empty batch", serde_json::to_vec(&json!({"messages": []})).unwrap(), 422, "validation", Some("messages")),
        (
            "too many recipients",
            serde_json::to_vec(
                &json!({"to": (0..9).map(|i| format!("+7916123{i:04}")).collect::<Vec<_>>(), "text": "x"}),
            )
            .unwrap(),
            422,
            "validation",
            Some("to"),
        ),
        (
            "body too large",
            serde_json::to_vec(&json!({"to": "+79161234567", "text": "x".repeat(5000)})).unwrap(),
            413,
            "too-large",
            None,
        ),
    ];
    for (name, body, status, kind, field) in cases {
        let resp = d.http.post(format!("{}/v1/messages", d.url)).bearer_auth(KEY).body(body).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), status, "{name}");
        assert_eq!(resp.headers()["content-type"], "application/problem+json", "{name}");
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["type"], format!("urn:smsgw:problem:{kind}"), "{name}: {v}");
        assert_eq!(v["status"], status, "{name}");
        assert!(!v["detail"].as_str().unwrap().is_empty(), "{name}");
        if let Some(f) = field {
            let fields: Vec<&str> =
                v["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap()).collect();
            assert!(fields.contains(&f), "{name}: expected field {f} in {fields:?}");
        }
    }

    // Keys.
    let no_key = d.http.post(format!("{}/v1/messages", d.url)).json(&msg("+79161234567", "x")).send().await.unwrap();
    assert_eq!(no_key.status().as_u16(), 401);
    assert_eq!(no_key.headers()["www-authenticate"], "Bearer");
    let wrong = d.http.get(format!("{}/v1/messages", d.url)).bearer_auth("not-a-key-at-all-000").send().await.unwrap();
    assert_eq!(wrong.status().as_u16(), 401);
    let wrong_scheme = d
        .http
        .get(format!("{}/v1/routes", d.url))
        .header("authorization", format!("Basic {KEY}"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_scheme.status().as_u16(), 401);
    let health = d.http.get(format!("{}/healthz", d.url)).send().await.unwrap();
    assert_eq!(health.status().as_u16(), 200);
    let (s, _) = d.get("/v1/messages/abc").await;
    assert_eq!(s, 404);
    let (s, v) = d.get("/v1/messages?status=lost&limit=0").await;
    assert_eq!(s, 422);
    assert_eq!(v["errors"].as_array().unwrap().len(), 2);

    assert_eq!(total(&d).await, before, "bad requests must not write anything");
}

#[tokio::test]
async fn readiness_and_openapi() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), "", &sim_route(dir.path(), "sim", "", ""));
    let d = Daemon::start(dir.path());
    let (s, v) = d.get("/readyz").await;
    assert_eq!(s, 200, "{v}");
    let (s, doc) = d.get("/openapi.json").await;
    assert_eq!(s, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for (path, method) in [
        ("/v1/messages", "post"),
        ("/v1/messages", "get"),
        ("/v1/messages/{id}", "get"),
        ("/v1/messages/{id}/cancel", "post"),
        ("/v1/messages/cancel", "post"),
        ("/v1/routes", "get"),
        ("/v1/routes/{name}/pause", "post"),
        ("/v1/routes/{name}/resume", "post"),
        ("/v1/queue", "get"),
        ("/readyz", "get"),
    ] {
        assert!(doc["paths"][path][method].is_object(), "{method} {path} missing from the OpenAPI document");
    }
    assert!(doc["components"]["schemas"]["MessageRequest"].is_object());
    assert!(doc["components"]["securitySchemes"]["api_key"].is_object());
    let anon = d.http.get(format!("{}/openapi.json", d.url)).send().await.unwrap();
    assert_eq!(anon.status().as_u16(), 401);
}

#[tokio::test]
async fn times_are_bounded_and_oversized_inputs_are_not_echoed() {
    let dir = tempfile::tempdir().unwrap();
    write_config_with(dir.path(), "max_body_bytes = 4194304", "", &sim_route(dir.path(), "sim", "", ""));
    let d = Daemon::start(dir.path());
    let days = |n: f64| in_secs(n * 86_400.0);
    let m = |extra: Value| {
        let mut v = msg("+79161234567", "x");
        v.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        v
    };
    let huge = "9".repeat(1 << 20);
    let cases: Vec<(&str, Value, &str)> = vec![
        ("send_at two years ahead", m(json!({"send_at": days(730.0)})), "send_at"),
        ("valid_until two years ahead", m(json!({"valid_until": days(730.0)})), "valid_until"),
        (
            "valid_until over a year after send_at",
            m(json!({"send_at": days(30.0), "valid_until": days(400.0)})),
            "valid_until",
        ),
        ("valid_until before send_at", m(json!({"send_at": days(2.0), "valid_until": days(1.0)})), "valid_until"),
        ("a megabyte of to", msg(&huge, "x"), "to"),
        ("a megabyte of to in a list", json!({"to": ["+79161234567", huge], "text": "x"}), "to[1]"),
        ("a megabyte of reference", m(json!({"reference": huge})), "reference"),
        ("a megabyte of from", m(json!({"from": huge})), "from"),
        ("a megabyte of priority", m(json!({"priority": huge})), "priority"),
        ("a megabyte of route", m(json!({"route": huge})), "route"),
    ];
    for (name, body, field) in cases {
        let resp = d.http.post(format!("{}/v1/messages", d.url)).bearer_auth(KEY).json(&body).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 422, "{name}");
        let text = resp.text().await.unwrap();
        assert!(text.len() < 2048, "{name}: a {} byte answer", text.len());
        let v: Value = serde_json::from_str(&text).unwrap();
        let fields: Vec<&str> = v["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap()).collect();
        assert!(fields.contains(&field), "{name}: expected {field} in {v}");
    }
    // A request head is limited by the server; well below that limit.
    let long = &huge[..60_000];
    for path in
        [format!("/v1/messages?status={long}"), format!("/v1/messages/{long}"), format!("/v1/inbound?cursor={long}")]
    {
        let resp = d.http.get(format!("{}{path}", d.url)).bearer_auth(KEY).send().await.unwrap();
        assert!(resp.status().is_client_error(), "{}", &path[..30]);
        let text = resp.text().await.unwrap();
        assert!(text.len() < 2048, "{}: a {} byte answer", &path[..30], text.len());
    }
    // Within the bounds: accepted.
    d.send(m(json!({"send_at": days(300.0), "valid_until": days(301.0)}))).await;
}
