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
        ("/v1/routes", "get"),
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
