//! Template preview through the real binary: the rendered text, its alphabet
//! and segments, the parts per route, the warnings about what variables'
//! likely values could do, the 422s naming what is wrong, and the scopes.

mod common;
use common::*;
use serde_json::{Value, json};

const METRICS_KEY: &str = "metrics-key-0123456789abcdef";

fn start(dir: &std::path::Path) -> Daemon {
    let routes = format!("{}{}", sim_route(dir, "sim", "", ""), sim_route(dir, "sim2", "", ""));
    let keys = format!("[[api_keys]]\nname = \"prometheus\"\nkey = \"{METRICS_KEY}\"\nscopes = [\"metrics\"]\n");
    write_config(dir, &keys, &routes);
    Daemon::start(dir)
}

fn codes(v: &Value) -> Vec<(String, String)> {
    v["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| (w["variable"].as_str().unwrap_or("").to_string(), w["code"].as_str().unwrap().to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn preview_renders_plans_and_warns() {
    let dir = tempfile::tempdir().unwrap();
    let d = start(dir.path());

    // Russian text with data: money in the locale, UCS-2, parts for each route.
    let (s, v) = d
        .post(
            "/v1/templates/preview",
            &json!({"text": "{{ name }}, ваша корзина на {{ total | money }} ждёт вас",
                    "data": {"name": "Анна", "total": 1234.5}, "max_segments": 2}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["text"], "Анна, ваша корзина на 1\u{a0}234,50\u{a0}₽ ждёт вас");
    assert_eq!(v["encoding"], "ucs2");
    assert_eq!(v["segments"], 1);
    assert_eq!(v["parts"]["sim"], json!([v["text"]]));
    assert_eq!(v["parts"]["sim2"], json!([v["text"]]));
    assert_eq!(codes(&v), vec![]);

    // A GSM template with a string variable: may need UCS-2; a long assumed value: past 1 segment.
    let text = format!("Hello {{{{ name }}}}, {}", "x".repeat(130));
    let (s, v) = d
        .post("/v1/templates/preview", &json!({"text": text, "routes": ["sim"], "assume": {"name": {"max_len": 40}}}))
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["encoding"], "gsm7");
    assert_eq!(v["text"], format!("Hello Name, {}", "x".repeat(130)));
    assert_eq!(v["parts"].as_object().unwrap().keys().collect::<Vec<_>>(), ["sim"]);
    let c = codes(&v);
    assert!(c.contains(&("name".into(), "may_need_ucs2".into())), "{v}");
    assert!(c.contains(&("name".into(), "may_exceed_segments".into())), "{v}");
    let exceed = v["warnings"].as_array().unwrap().iter().find(|w| w["code"] == "may_exceed_segments").unwrap();
    assert_eq!(exceed["segments"], 2);

    // A name assumed GSM and short: no warnings.
    let (s, v) = d
        .post(
            "/v1/templates/preview",
            &json!({"text": "Hi {{ name }}", "data": {"name": "Ann"}, "assume": {"name": {"max_len": 10, "alphabet": "gsm7"}}}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(codes(&v), vec![]);

    // Money alone makes an English text UCS-2 in `ru`: said so.
    let (s, v) = d.post("/v1/templates/preview", &json!({"text": "Total {{ t | money }}", "data": {"t": 1500}})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["encoding"], "ucs2");
    assert!(codes(&v).contains(&("".into(), "formatting_forces_ucs2".into())), "{v}");

    // Dates in the given zone and locale, plurals.
    let (s, v) = d
        .post(
            "/v1/templates/preview",
            &json!({"text": "{{ n }} {{ n | plural(\"товар\", \"товара\", \"товаров\") }} до {{ at | time }}",
                    "data": {"n": 21, "at": "2026-12-05T20:00:00Z"}, "tz": "Asia/Vladivostok"}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["text"], "21 товар до 06:00");
}

#[tokio::test(flavor = "multi_thread")]
async fn preview_names_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let d = start(dir.path());
    let field = |v: &Value| v["errors"][0]["field"].as_str().unwrap_or("").to_string();

    let (s, v) = d.post("/v1/templates/preview", &json!({"text": "Привет,\n{{ name }"})).await;
    assert_eq!(s, 422, "{v}");
    assert_eq!(field(&v), "text");
    assert!(v["errors"][0]["message"].as_str().unwrap().starts_with("line 2, column "), "{v}");

    let (s, v) = d.post("/v1/templates/preview", &json!({"text": "{{ total | money }}", "data": {"name": "x"}})).await;
    assert_eq!(s, 422, "{v}");
    assert_eq!(field(&v), "data.total");

    let (s, v) = d.post("/v1/templates/preview", &json!({"text": "hi", "routes": ["sim", "nope"]})).await;
    assert_eq!(s, 422, "{v}");
    assert_eq!(field(&v), "routes[1]");

    let (s, v) = d.post("/v1/templates/preview", &json!({"text": "hi", "tz": "Mars/Olympus"})).await;
    assert_eq!(s, 422, "{v}");
    assert_eq!(field(&v), "tz");

    let (s, v) = d.post("/v1/templates/preview", &json!({"text": "hi", "assume": {"x": {"alphabet": "latin"}}})).await;
    assert_eq!(s, 422, "{v}");
    assert_eq!(field(&v), "assume.x.alphabet");

    let (s, v) = d.post("/v1/templates/preview", &json!({"data": {}})).await;
    assert_eq!(s, 422, "{v}");

    let (_, doc) = d.get("/openapi.json").await;
    assert!(
        doc["paths"]["/v1/templates/preview"]["post"].is_object(),
        "the preview is missing from the OpenAPI document"
    );

    // A key with only the metrics scope may not preview.
    let resp = d
        .http
        .post(format!("{}/v1/templates/preview", d.url))
        .bearer_auth(METRICS_KEY)
        .json(&json!({"text": "hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 403);
}
