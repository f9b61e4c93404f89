//! What a sysadmin sees of the modems: `smsgw modem probe` on a new stick,
//! the per-modem series in `/metrics` (read by a Prometheus parser), and the
//! modem rows of the status page in a real browser, all against virtual
//! modems on pseudo-terminals.

mod common;
use common::*;
use serde_json::{Value, json};
use smsgw::simulate::modem::{ModemConfig, VirtualModem};
use std::process::Command;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_identifies_a_new_stick_and_names_its_profile() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = ModemConfig { csq: 14, ..ModemConfig::profile("ec25").unwrap() };
    let m = VirtualModem::start(cfg, &dir.path().join("ttyUSB2")).await.unwrap();
    let port = m.link().display().to_string();

    let run = |args: Vec<String>| async move {
        tokio::task::spawn_blocking(move || Command::new(bin()).args(args).output().unwrap()).await.unwrap()
    };
    let out = run(vec!["modem".into(), "probe".into(), port.clone()]).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    for want in
        ["Quectel EC25", "867856030456784", "READY", "250011234567890", "-85 dBm", "registered (home)", "MTS RUS"]
    {
        assert!(text.contains(want), "{want:?} missing from:\n{text}");
    }
    assert!(text.lines().any(|l| l.starts_with("profile") && l.contains("quectel")), "{text}");

    let out = run(vec!["modem".into(), "probe".into(), port, "--json".into()]).await;
    let v: Value = serde_json::from_slice(&out.stdout).expect("probe --json prints JSON");
    assert_eq!(v["info"]["imsi"], "250011234567890", "{v}");
    assert_eq!(v["info"]["signal_dbm"], -85, "{v}");

    // Probing changed nothing a gateway relies on: the modem still has echo
    // after a power cycle and no message was sent or deleted.
    assert!(m.sent().is_empty());
    assert!(!m.commands().iter().any(|c| c.starts_with("AT+CMGD") || c.starts_with("AT+CFUN")), "{:?}", m.commands());

    // A port with nothing behind it: a clear error, not a hang or a panic.
    let out = run(vec!["modem".into(), "probe".into(), dir.path().join("nothing").display().to_string()]).await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("nothing"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_status_page_show_each_modem() {
    let dir = tempfile::tempdir().unwrap();
    let dev = dir.path().join("dev");
    let a = VirtualModem::start(ModemConfig { send_delay_ms: 30, ..ModemConfig::default() }, &dev.join("a-if02"))
        .await
        .unwrap();
    a.set_auto_reports(Some(Duration::from_millis(50)));
    let locked = ModemConfig { pin: Some("0000".into()), imei: "867856030456792".into(), ..ModemConfig::default() };
    let _b = VirtualModem::start(locked, &dev.join("b-if02")).await.unwrap();
    let route = format!(
        "[[routes]]\nname = \"gsm\"\nkind = \"modem\"\n[routes.modem]\nports = [\"{}/*\"]\npin = \"1234\"\n\
         health_interval_secs = 1\nregistration_timeout_secs = 10\n",
        dev.display()
    );
    write_config(dir.path(), "", &route);
    let d = Daemon::start(dir.path());
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (_, v) = d.get("/v1/modems").await;
        let states: Vec<&str> = v["modems"].as_array().unwrap().iter().filter_map(|m| m["state"].as_str()).collect();
        if states.contains(&"ready") && states.contains(&"pin_needed") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let long = "A notice long enough to need two parts when it goes out through a GSM modem. ".repeat(3);
    assert_eq!(smsgw::sms::text::split(&long).parts.len(), 2);
    for text in ["one", long.as_str()] {
        let id = d.send(json!({"to": "+79160000010", "text": text})).await;
        d.wait_status(id, "delivered", 30).await;
    }
    a.deliver("+79161112233", "hello");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while d.get("/v1/inbound").await.1["messages"].as_array().is_none_or(|l| l.is_empty()) {
        assert!(std::time::Instant::now() < deadline, "no inbound");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let resp = d.http.get(format!("{}/metrics", d.url)).bearer_auth(KEY).send().await.unwrap();
    let body = resp.text().await.unwrap();
    let scrape = prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).unwrap();
    let (pa, pb) = (a.link().display().to_string(), dev.join("b-if02").display().to_string());
    let at = |name: &str, port: &str| sample(&scrape, name, &[("route", "gsm"), ("modem", port)]);
    let state = |port: &str, state: &str| {
        sample(&scrape, "smsgw_modem_state", &[("route", "gsm"), ("modem", port), ("state", state)])
    };
    assert_eq!(at("smsgw_modem_up", &pa), Some(1.0));
    assert_eq!(at("smsgw_modem_up", &pb), Some(0.0));
    assert_eq!(state(&pa, "ready"), Some(1.0));
    assert_eq!(state(&pa, "pin_needed"), Some(0.0));
    assert_eq!(state(&pb, "pin_needed"), Some(1.0));
    assert_eq!(at("smsgw_modem_signal_dbm", &pa), Some(-73.0));
    assert_eq!(at("smsgw_modem_registration", &pa), Some(1.0));
    // 1 + 2 parts out, 1 in.
    assert_eq!(at("smsgw_modem_sms_sent_total", &pa), Some(3.0));
    assert_eq!(at("smsgw_modem_sms_received_total", &pa), Some(1.0));
    assert_eq!(at("smsgw_modem_send_failures_total", &pa), Some(0.0));
    assert!(body.contains("# TYPE smsgw_modem_sms_sent_total counter"), "{body}");

    let Some(dom) = status_page_dom(&d).await else { return };
    assert!(dom.contains("<tr class=\"modem\">"), "no modem rows in:\n{dom}");
    assert!(dom.contains("<b>a-if02</b>") && dom.contains("<b>b-if02</b>"), "{dom}");
    assert!(dom.contains("MTS RUS") && dom.contains("-73 dBm"), "operator and signal of a-if02");
    assert!(dom.contains("pin_needed") && dom.contains("PIN"), "the locked modem and why");
    d.terminate();
}
