//! Webhooks end to end: the real daemon delivers its outbox to HTTP
//! receivers written here (axum on 127.0.0.1, each recording every request
//! with its headers and body and answering from a script). Subscriptions
//! come from the config file. Checked: every event arrives, a message's
//! submitted before its delivered, one `webhook-id` across retries (500,
//! 429 with `Retry-After`, a timeout, a receiver not yet listening), each
//! key gets only its own events and the admin key the ones nobody owns, a
//! 410 disables the subscription; every signature verified by the PyPI
//! `standardwebhooks` library (tests/interop/requirements.txt); and a
//! `kill -9` with a thousand undelivered events loses none of them.

mod common;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use common::*;
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpSocket};

const ROOT_KEY: &str = "root-key-0123456789abcdef";

/// One request a receiver got.
#[derive(Debug, Clone)]
struct Hit {
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

impl Hit {
    fn id(&self) -> &str {
        &self.headers["webhook-id"]
    }
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

/// What a receiver answers, in order; 200 once the script is done.
#[derive(Debug, Clone)]
enum Reply {
    Status(u16),
    RetryAfter(u16, &'static str),
    /// Answer 200 only after this long (past the daemon's timeout).
    Slow(Duration),
}

#[derive(Clone)]
struct Receiver {
    addr: SocketAddr,
    /// The port, bound but not listening until `listen` (connections to it
    /// are refused meanwhile); held so no other socket takes it, not even
    /// one of the daemon's own attempts connecting to itself from it.
    socket: Arc<Mutex<Option<TcpSocket>>>,
    hits: Arc<Mutex<Vec<Hit>>>,
    script: Arc<Mutex<VecDeque<Reply>>>,
    /// The answer once the script is done.
    then: u16,
}

async fn answer(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> Response {
    let headers = headers.iter().map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string())).collect();
    r.hits.lock().unwrap().push(Hit { headers, body: body.to_vec() });
    let next = r.script.lock().unwrap().pop_front();
    match next {
        None => StatusCode::from_u16(r.then).unwrap().into_response(),
        Some(Reply::Status(s)) => StatusCode::from_u16(s).unwrap().into_response(),
        Some(Reply::RetryAfter(s, after)) => {
            (StatusCode::from_u16(s).unwrap(), [("retry-after", after)]).into_response()
        }
        Some(Reply::Slow(d)) => {
            tokio::time::sleep(d).await;
            StatusCode::OK.into_response()
        }
    }
}

impl Receiver {
    /// A port on 127.0.0.1 held for the receiver; nothing listens on it
    /// until `listen`.
    async fn unbound(script: Vec<Reply>, then: u16) -> Receiver {
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = socket.local_addr().unwrap();
        Receiver {
            addr,
            socket: Arc::new(Mutex::new(Some(socket))),
            hits: Arc::default(),
            script: Arc::new(Mutex::new(script.into())),
            then,
        }
    }

    async fn listening(script: Vec<Reply>, then: u16) -> Receiver {
        let r = Receiver::unbound(script, then).await;
        r.listen().await;
        r
    }

    async fn listen(&self) {
        let socket = self.socket.lock().unwrap().take().expect("a receiver listens once");
        let l = socket.listen(1024).expect("listen on the receiver's port");
        let app = axum::Router::new().fallback(answer).with_state(self.clone());
        tokio::spawn(async move { axum::serve(l, app).await });
    }

    fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }

    /// The distinct events received, in the order of their first arrival.
    fn events(&self) -> Vec<Value> {
        let mut seen = HashSet::new();
        self.hits().into_iter().filter(|h| seen.insert(h.id().to_string())).map(|h| h.json()).collect()
    }

    async fn wait_events(&self, n: usize, secs: u64) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let got = self.events();
            if got.len() >= n {
                return got;
            }
            assert!(Instant::now() < deadline, "{} got {} of {n} events: {:#?}", self.url(), got.len(), got);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn secret(seed: u8) -> String {
    format!("whsec_{}", base64::engine::general_purpose::STANDARD.encode([seed; 32]))
}

fn subscription(name: &str, key: &str, r: &Receiver, events: &[&str], seed: u8) -> String {
    format!(
        "[[webhooks.subscriptions]]\nname = \"{name}\"\nkey = \"{key}\"\nurl = \"{}\"\nevents = {}\nsecret = \"{}\"\n",
        r.url(),
        serde_json::to_string(events).unwrap(),
        secret(seed)
    )
}

/// Every hit's signature checked by the PyPI `standardwebhooks` library,
/// with the secret of its receiver; a changed body must fail.
fn verify_with_standardwebhooks(dir: &Path, signed: &[(&Receiver, u8)]) -> usize {
    let secrets: Vec<(&Receiver, String)> = signed.iter().map(|(r, seed)| (*r, secret(*seed))).collect();
    let refs: Vec<(&Receiver, &str)> = secrets.iter().map(|(r, s)| (*r, s.as_str())).collect();
    verify_with_standardwebhooks_secrets(dir, &refs)
}

fn verify_with_standardwebhooks_secrets(dir: &Path, signed: &[(&Receiver, &str)]) -> usize {
    let mut cases = Vec::new();
    for (r, secret) in signed {
        for h in r.hits() {
            let body = base64::engine::general_purpose::STANDARD.encode(&h.body);
            cases.push(json!({"secret": secret, "headers": h.headers, "body": body}));
        }
    }
    let file = dir.join("signed.json");
    std::fs::write(&file, serde_json::to_vec(&cases).unwrap()).unwrap();
    let script = r#"
import base64, json, sys
from standardwebhooks import Webhook, WebhookVerificationError
ok = 0
for c in json.load(open(sys.argv[1])):
    body = base64.b64decode(c["body"])
    event = Webhook(c["secret"]).verify(body, c["headers"])
    assert event["id"] == c["headers"]["webhook-id"], event
    try:
        Webhook(c["secret"]).verify(body + b" ", c["headers"])
        raise SystemExit("a changed body verified")
    except WebhookVerificationError:
        pass
    ok += 1
print(ok)
"#;
    let out = std::process::Command::new(venv_python()).arg("-c").arg(script).arg(&file).output().unwrap();
    assert!(out.status.success(), "standardwebhooks refused: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

/// For each message: every request about its submission came before any
/// about its delivery.
fn assert_in_order(hits: &[Hit]) {
    let mut last_submitted: HashMap<i64, usize> = HashMap::new();
    let mut first_delivered: HashMap<i64, usize> = HashMap::new();
    for (i, h) in hits.iter().enumerate() {
        let e = h.json();
        let id = e["data"]["id"].as_i64().unwrap();
        match e["type"].as_str().unwrap() {
            "message.submitted" => {
                last_submitted.insert(id, i);
            }
            "message.delivered" => {
                first_delivered.entry(id).or_insert(i);
            }
            other => panic!("unexpected {other}"),
        }
    }
    for (id, d) in &first_delivered {
        assert!(last_submitted.get(id).is_some_and(|s| s < d), "message {id}: delivered went out before submitted");
    }
}

async fn post_as(d: &Daemon, key: &str, body: Value) -> Value {
    let resp = d.http.post(format!("{}/v1/messages", d.url)).bearer_auth(key).json(&body).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 202);
    resp.json().await.unwrap()
}

const MESSAGE_EVENTS: &[&str] = &["message.submitted", "message.delivered"];

#[tokio::test]
async fn events_arrive_signed_in_order_to_their_owners_through_failures() {
    let dir = tempfile::tempdir().unwrap();
    // test's receiver fails in three ways before it takes anything.
    let a = Receiver::listening(
        vec![Reply::Status(500), Reply::RetryAfter(429, "1"), Reply::Slow(Duration::from_secs(3))],
        200,
    )
    .await;
    // other's receiver is not up yet.
    let b = Receiver::unbound(vec![], 200).await;
    let root = Receiver::listening(vec![], 204).await;
    let gone = Receiver::listening(vec![], 410).await;
    let extra = format!(
        "[[api_keys]]\nname = \"root\"\nkey = \"{ROOT_KEY}\"\nscopes = [\"admin\"]\n\
         [webhooks]\ntimeout_secs = 1\nconcurrency = 2\n{}{}{}{}",
        subscription("test-crm", "test", &a, MESSAGE_EVENTS, 1),
        subscription("other-crm", "other", &b, MESSAGE_EVENTS, 2),
        subscription("ops", "root", &root, &["route.state_changed", "message.submitted", "message.delivered"], 3),
        subscription("old", "test", &gone, MESSAGE_EVENTS, 4),
    );
    write_config(dir.path(), &extra, &sim_route(dir.path(), "sim", "", "delivery_delay_ms = 100"));
    let d = Daemon::start(dir.path());
    let mine: Vec<i64> = {
        let mut ids = Vec::new();
        for i in 0..4 {
            ids.push(d.send(msg(&format!("+7916000000{i}"), "to test")).await);
        }
        ids
    };
    let theirs = post_as(&d, OTHER_KEY, json!({"to": ["+79160000010", "+79160000011"], "text": "to other"})).await;
    let theirs: Vec<i64> = theirs["messages"].as_array().unwrap().iter().map(|m| m["id"].as_i64().unwrap()).collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    b.listen().await;

    let got_a = a.wait_events(8, 40).await;
    let got_b = b.wait_events(4, 40).await;
    let ids = |got: &[Value]| -> HashSet<i64> { got.iter().map(|e| e["data"]["id"].as_i64().unwrap()).collect() };
    assert_eq!(ids(&got_a), mine.iter().copied().collect(), "test receives its own messages' events only");
    assert_eq!(ids(&got_b), theirs.iter().copied().collect(), "other receives its own messages' events only");
    for e in got_a.iter().chain(&got_b) {
        assert!(e["id"].as_str().unwrap().starts_with("evt_"));
        let status = e["type"].as_str().unwrap().strip_prefix("message.").unwrap();
        assert_eq!(e["data"]["status"], status, "the status as of the event: {e:#}");
        assert!(e["timestamp"].as_str().unwrap().ends_with('Z'));
    }
    assert_in_order(&a.hits());
    assert_in_order(&b.hits());
    // The first request got a 500; the same event came again, same id.
    let hits = a.hits();
    let first = hits[0].id().to_string();
    assert!(hits.iter().filter(|h| h.id() == first).count() >= 2, "the failed event was retried");
    assert!(hits.len() >= 8 + 3, "three failures were retried: {} requests", hits.len());
    let h = &hits[0].headers;
    assert_eq!(h["content-type"], "application/json");
    assert!(h["user-agent"].starts_with("smsgw/"));
    assert!(b.hits().len() >= 4);

    // The admin key gets the route's state (nobody's event) and none of the
    // keys' message events.
    let got_root = root.wait_events(1, 10).await;
    assert!(got_root.iter().all(|e| e["type"] == "route.state_changed"), "{got_root:#?}");
    assert_eq!(got_root[0]["data"]["route"], "sim");
    assert_eq!(got_root[0]["data"]["state"], "up");

    // 410: the subscription is off. Attempts already under way when the
    // first 410 came (concurrency = 2) may get one too; nothing after.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let gone_hits = gone.hits().len();
    assert!((1..=2).contains(&gone_hits), "{gone_hits} attempts after a 410: {:#?}", gone.hits());
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(gone.hits().len(), gone_hits, "no attempt after a 410");
    let scrape =
        d.http.get(format!("{}/metrics", d.url)).bearer_auth(ROOT_KEY).send().await.unwrap().text().await.unwrap();
    let scrape = prometheus_parse::Scrape::parse(scrape.lines().map(|l| Ok(l.to_string()))).unwrap();
    assert_eq!(sample(&scrape, "smsgw_webhook_deliveries_total", &[("result", "gone")]), Some(gone_hits as f64));
    assert!(sample(&scrape, "smsgw_webhook_deliveries_total", &[("result", "retry")]).unwrap() >= 3.0);
    assert_eq!(sample(&scrape, "smsgw_webhook_pending", &[]), Some(0.0));

    let n = verify_with_standardwebhooks(dir.path(), &[(&a, 1), (&b, 2), (&root, 3), (&gone, 4)]);
    assert_eq!(n, a.hits().len() + b.hits().len() + root.hits().len() + gone_hits);
}

async fn pending(d: &Daemon) -> Option<f64> {
    let text = d.http.get(format!("{}/metrics", d.url)).bearer_auth(KEY).send().await.ok()?.text().await.ok()?;
    text.lines().find_map(|l| l.strip_prefix("smsgw_webhook_pending ")).and_then(|v| v.trim().parse().ok())
}

#[tokio::test]
async fn kill_9_with_a_thousand_undelivered_events_loses_none() {
    let dir = tempfile::tempdir().unwrap();
    let r = Receiver::unbound(vec![], 200).await;
    let extra = format!("[webhooks]\ntimeout_secs = 2\n{}", subscription("crm", "test", &r, MESSAGE_EVENTS, 9));
    let route = sim_route(dir.path(), "sim", "concurrency = 64", "delivery_delay_ms = 50");
    write_config(dir.path(), &extra, &route);
    let d = Daemon::start(dir.path());
    let mut ids = HashSet::new();
    for batch in 0..5 {
        let to: Vec<String> = (0..100).map(|i| format!("+7916{:07}", batch * 100 + i)).collect();
        let v = post_as(&d, KEY, json!({"to": to, "text": "receipts for a receiver that is down"})).await;
        ids.extend(v["messages"].as_array().unwrap().iter().map(|m| m["id"].as_i64().unwrap()));
    }
    d.wait_counts(30, "500 delivered", |s| s["delivered"] == 500).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while pending(&d).await != Some(1000.0) {
        assert!(Instant::now() < deadline, "never 1000 pending: {:?}", pending(&d).await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    d.kill9();
    assert!(r.hits().is_empty());

    r.listen().await;
    let d = Daemon::start(dir.path());
    let got = r.wait_events(1000, 50).await;
    // Dedupe by webhook-id: exactly the thousand events, each message's two.
    assert_eq!(got.len(), 1000);
    let mut per_message: HashMap<i64, Vec<String>> = HashMap::new();
    for e in &got {
        per_message.entry(e["data"]["id"].as_i64().unwrap()).or_default().push(e["type"].as_str().unwrap().into());
    }
    assert_eq!(per_message.keys().copied().collect::<HashSet<_>>(), ids);
    assert!(per_message.values().all(|k| k == &["message.submitted", "message.delivered"]), "in order per message");
    assert_in_order(&r.hits());
    let deadline = Instant::now() + Duration::from_secs(10);
    while pending(&d).await != Some(0.0) {
        assert!(Instant::now() < deadline, "deliveries left pending: {:?}", pending(&d).await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn api(d: &Daemon, method: &str, path: &str, body: Value) -> (u16, Value) {
    let url = format!("{}{path}", d.url);
    let req = match method {
        "POST" => d.http.post(url).json(&body),
        _ => d.http.get(url),
    };
    let resp = req.bearer_auth(KEY).send().await.unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap_or(Value::Null))
}

/// The loop closed through the API alone: a subscription made with
/// `POST /v1/webhooks` hears a reply linked to the key's message, the
/// opt-out its STOP made and the promotion that opt-out then suppressed; a
/// message's own `callback_url` hears that message's events, signed with
/// the key's callback secret (learnt by rotating it). Signatures checked
/// by `standardwebhooks`.
#[tokio::test]
async fn a_subscription_made_through_the_api_hears_replies_optouts_and_callbacks() {
    use smsgw::simulate::smsc::{Smsc, SmscConfig};
    let smsc = Smsc::start(
        SmscConfig { credentials: vec![("smsgw".into(), "pw".into())], ..Default::default() },
        TcpListener::bind("127.0.0.1:0").await.unwrap(),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let route = format!(
        "[[routes]]\nname = \"carrier\"\nkind = \"smpp\"\n[routes.smpp]\nhost = \"127.0.0.1\"\nport = {}\n\
         system_id = \"smsgw\"\npassword = \"pw\"\nreconnect_min_ms = 50\n",
        smsc.local_addr().port()
    );
    write_config(dir.path(), "", &route);
    let d = Daemon::start(dir.path());
    let hook = Receiver::listening(vec![], 200).await;
    let events = ["message.submitted", "inbound.received", "optout.changed", "message.suppressed"];
    let (s, made) = api(&d, "POST", "/v1/webhooks", json!({"url": hook.url(), "events": events})).await;
    assert_eq!(s, 201, "{made}");
    let secret = made["secret"].as_str().unwrap().to_string();

    let (_, asked) = api(&d, "POST", "/v1/messages", json!({"to": "+79161234567", "text": "Придёте завтра?"})).await;
    let asked = asked["id"].as_i64().unwrap();
    let got = hook.wait_events(1, 20).await;
    assert_eq!((got[0]["type"].as_str(), got[0]["data"]["id"].as_i64()), (Some("message.submitted"), Some(asked)));

    smsc.inject_inbound("+79161234567", "7726", "Стоп").await.unwrap();
    let got = hook.wait_events(3, 20).await;
    let reply = got.iter().find(|e| e["type"] == "inbound.received").expect("inbound.received");
    assert_eq!(reply["data"]["in_reply_to"]["message_id"], asked, "{reply:#}");
    assert_eq!(reply["data"]["keyword"], "optout");
    let optout = got.iter().find(|e| e["type"] == "optout.changed").expect("optout.changed");
    assert_eq!(optout["data"]["number"], "+79161234567", "{optout:#}");

    let body = json!({"to": "+79161234567", "text": "Скидки!", "priority": "promotional"});
    let (_, promo) = api(&d, "POST", "/v1/messages", body).await;
    assert_eq!(promo["status"], "suppressed");
    let got = hook.wait_events(4, 20).await;
    let suppressed = got.iter().find(|e| e["type"] == "message.suppressed").expect("message.suppressed");
    assert_eq!(suppressed["data"]["id"], promo["id"]);
    assert_eq!(suppressed["data"]["error"]["code"], "opted_out", "{suppressed:#}");

    // A message's own callback URL. The first one makes the key's callback
    // subscription; rotating it tells its secret, which signs from then on.
    let callback = Receiver::listening(vec![], 200).await;
    let first = json!({"to": "+79160000001", "text": "order 1 shipped", "callback_url": callback.url()});
    let (s, _) = api(&d, "POST", "/v1/messages", first).await;
    assert_eq!(s, 202);
    callback.wait_events(1, 20).await;
    let (_, list) = api(&d, "GET", "/v1/webhooks", Value::Null).await;
    let cb = list["webhooks"].as_array().unwrap().iter().find(|w| w["origin"] == "callback").expect("callback").clone();
    let (s, rotated) = api(&d, "POST", &format!("/v1/webhooks/{}/rotate", cb["id"]), json!({})).await;
    assert_eq!(s, 200, "{rotated}");
    let cb_secret = rotated["secret"].as_str().unwrap().to_string();
    let second = json!({"to": "+79160000002", "text": "order 2 shipped", "callback_url": callback.url()});
    let (_, second) = api(&d, "POST", "/v1/messages", second).await;
    let second_id = second["id"].as_i64().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !callback.events().iter().any(|e| e["data"]["id"] == second_id) {
        assert!(Instant::now() < deadline, "the second message's callback never came: {:#?}", callback.events());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let mut after = callback.clone();
    after.hits =
        Arc::new(Mutex::new(callback.hits().into_iter().filter(|h| h.json()["data"]["id"] == second_id).collect()));
    let cases =
        verify_with_standardwebhooks_secrets(dir.path(), &[(&hook, secret.as_str()), (&after, cb_secret.as_str())]);
    assert_eq!(cases, hook.hits().len() + after.hits().len());
}
