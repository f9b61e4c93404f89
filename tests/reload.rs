//! `systemctl reload` (SIGHUP): keys, limits and routes change without a
//! restart and without dropping the binds of routes that did not change;
//! an invalid file is refused and the old config stays in force.

mod common;
use common::*;
use serde_json::json;
use smsgw::simulate::smsc::{Smsc, SmscConfig};
use std::time::Duration;

const NEW_KEY: &str = "rotated-key-0123456789abcdef";

fn config(dir: &std::path::Path, key: &str, smsc_port: u16, sim_rate: u32, extra_route: bool) -> String {
    let extra = if extra_route {
        sim_route(dir, "extra", "prefixes = [\"+44\"]", "delivery_delay_ms = 0")
    } else {
        String::new()
    };
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[store]\npath = \"{db}\"\n[numbers]\ndefault_region = \"RU\"\n[log]\nlevel = \"warn\"\n\
         [[api_keys]]\nname = \"test\"\nkey = \"{key}\"\n\
         [[routes]]\nname = \"carrier\"\nkind = \"smpp\"\nprefixes = [\"+49\"]\n[routes.smpp]\nhost = \"127.0.0.1\"\n\
         port = {smsc_port}\nsystem_id = \"smsgw\"\npassword = \"secret\"\nreconnect_min_ms = 100\n\
         {extra}{sim}",
        db = dir.join("smsgw.db").display(),
        sim = sim_route(dir, "sim", &format!("rate = {sim_rate}"), "delivery_delay_ms = 0"),
    )
}

async fn routes(d: &Daemon, key: &str) -> (u16, serde_json::Value) {
    let r = d.http.get(format!("{}/v1/routes", d.url)).bearer_auth(key).send().await.unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_applies_keys_limits_and_routes_and_keeps_unchanged_binds() {
    let smsc = Smsc::start(SmscConfig::default(), tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap()).await;
    let port = smsc.local_addr().port();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("smsgw.toml");
    std::fs::write(&file, config(dir.path(), KEY, port, 100, true)).unwrap();
    let d = Daemon::start(dir.path());
    let later = d.send(json!({"to": "+442071234567", "text": "queued on extra", "send_at": in_secs(3600.0)})).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let binds = || smsc.events().iter().filter(|e| e.starts_with("bind_transceiver")).count();
    assert_eq!(binds(), 1);

    // Rotate the key, slow the sim route down, remove the extra route.
    std::fs::write(&file, config(dir.path(), NEW_KEY, port, 5, false)).unwrap();
    d.signal("HUP");
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(routes(&d, KEY).await.0, 401, "the old key is gone");
    let (s, r) = routes(&d, NEW_KEY).await;
    assert_eq!(s, 200);
    let names: Vec<&str> = r["routes"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["carrier", "sim"]);
    assert_eq!(r["routes"][1]["rate"], 5.0);
    assert_eq!(r["routes"][0]["state"], "up");
    assert_eq!(binds(), 1, "the carrier's bind was kept: {:?}", smsc.events());
    // The removed route's queued message moved to the route serving all numbers.
    let m = d.http.get(format!("{}/v1/messages/{later}", d.url)).bearer_auth(NEW_KEY).send().await.unwrap();
    let m: serde_json::Value = m.json().await.unwrap();
    assert_eq!(m["route"], "sim", "{m:#}");

    // An invalid file is refused: everything stays as it was.
    std::fs::write(&file, config(dir.path(), NEW_KEY, port, 5, false) + "\nbogus_key = 1\n").unwrap();
    d.signal("HUP");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (s, r) = routes(&d, NEW_KEY).await;
    assert_eq!(s, 200, "the running config stays in force");
    assert_eq!(r["routes"].as_array().unwrap().len(), 2);
    assert_eq!(d.terminate(), Some(0));
}
