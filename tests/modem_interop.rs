//! Interop with independent modem software: python-gsmmodem-new (PyPI, import name `gsmmodem`),
//! driven by interop/gsmmodem_peer.py, uses `smsgw simulate modem` as it would a USB modem: it
//! connects and identifies the modem, sends GSM-alphabet, Cyrillic and concatenated messages and
//! waits for their status reports, and reads messages the network delivers, through its
//! SMS-received callback and from storage. What the library saw is checked against what the
//! virtual modem was told to deliver, and what it sent against what the virtual modem decoded
//! (GET /modems/0/sent).
//!
//! A send with a status report requested gets its report back as the library waits for it,
//! also when the report is ready before the modem has answered the send.
//!
//! The library runs in a virtualenv at tests/interop/.venv, made on first use from
//! tests/interop/requirements.txt (python3 with the venv module and PyPI are needed then).
//!
//! gammu (the Debian package) talks to the same virtual modem through a config file of its own:
//! `identify`, `networkinfo`, `sendsms` (checked against what the modem decoded) and `getallsms`
//! after the network delivered messages, Cyrillic included. Without gammu those tests print why
//! they checked nothing, unless CI is set: then they fail.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;
use smsgw::simulate::modem::ModemConfig;

mod common;
use common::venv_python;

const TO: &str = "+79161234567";
const FROM: &str = "+79037654321";
/// Every GSM 03.38 basic character python-gsmmodem-new maps right, and the extension table (its
/// table has '`' where 0x5F is '§', so neither is used here).
const SEND_GSM: &str =
    "Hello from python-gsmmodem: @£$¥èéùìòÇØøÅåÄÖÑÜ¿äöñüà ΔΦΓΛΩΠΨΣΘΞÆæßÉ¤¡ {ok} [1] ~ 5€ ^_^ \\o/ |x|";
const SEND_CYRILLIC: &str = "Привет из python-gsmmodem! Ёлка №1";
const DELIVER_GSM: &str = "Reply @ £5 {ok} [x] ~ €";
const DELIVER_CYRILLIC: &str = "Ответ: всё хорошо, ёж №2";
/// The whole run of the peer, slow machine included (it takes about 12 s).
const PEER_TIMEOUT: Duration = Duration::from_secs(180);

fn send_long_cyrillic() -> String {
    "Длинное сообщение из python-gsmmodem: проверяем, что модем собирает части. ".repeat(2)
}

fn send_long_gsm() -> String {
    "A long GSM text from python-gsmmodem with {escapes}, [brackets], ~tildes~ and €uros. ".repeat(2)
}

fn deliver_long_cyrillic() -> String {
    "Длинный ответ из сети на кириллице, в нескольких частях. Ёлки-палки! ".repeat(3)
}

fn deliver_long_gsm() -> String {
    "A long reply in the GSM alphabet: @£$¥ {braces} [brackets] ~tilde~ €uro, repeated. ".repeat(3)
}

/// `smsgw simulate modem` with one modem; killed when dropped, panic or not.
struct Simulator {
    child: Child,
    link: PathBuf,
    imei: String,
    control: String,
    _dir: tempfile::TempDir,
}

impl Simulator {
    /// One virtual modem with these `smsgw simulate modem` flags besides the directory, the
    /// count and the control API.
    fn start(flags: &[&str]) -> Simulator {
        let dir = tempfile::tempdir().expect("temp dir");
        let child = Command::new(env!("CARGO_BIN_EXE_smsgw"))
            .args(["simulate", "modem", "--dir"])
            .arg(dir.path())
            .args(["--count", "1"])
            .args(flags)
            .args(["--control", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn smsgw simulate modem");
        let mut sim = Simulator { child, link: PathBuf::new(), imei: String::new(), control: String::new(), _dir: dir };
        let stdout = sim.child.stdout.take().expect("stdout piped");
        let stderr = sim.child.stderr.take().expect("stderr piped");
        std::thread::spawn(move || {
            for l in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[vmodem] {l}");
            }
        });
        let (tx, rx) = mpsc::channel();
        // Reads stdout to the end: the simulator must never find its stdout closed (a println!
        // to a closed pipe would end it).
        std::thread::spawn(move || {
            for l in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(l);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        while sim.link.as_os_str().is_empty() || sim.control.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx.recv_timeout(left).expect("the simulator printed its modem and control API lines");
            if let Some(rest) = line.strip_prefix("modem 0: ") {
                // "modem 0: LINK -> /dev/pts/N (IMEI 867856030456784)"
                let (link, rest) = rest.split_once(" -> ").expect("modem line has a link");
                let (_, imei) = rest.rsplit_once("(IMEI ").expect("modem line has an IMEI");
                sim.link = PathBuf::from(link);
                sim.imei = imei.trim_end_matches(')').to_string();
            } else if let Some(url) = line.strip_prefix("control API on ") {
                sim.control = url.trim().to_string();
            }
        }
        sim
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One SMS-SUBMIT as the virtual modem decoded it.
#[derive(Debug)]
struct Decoded {
    message_ref: u64,
    to: String,
    text: String,
    part: Option<(u64, u64, u64)>,
    status_report: bool,
}

fn decoded(v: &Value) -> Decoded {
    let n = |v: &Value| v.as_u64().unwrap_or_else(|| panic!("not a number: {v}"));
    Decoded {
        message_ref: n(&v["message_ref"]),
        to: v["to"].as_str().expect("to").to_string(),
        text: v["text"].as_str().expect("text").to_string(),
        part: (!v["part"].is_null()).then(|| (n(&v["part"][0]), n(&v["part"][1]), n(&v["part"][2]))),
        status_report: v["status_report"].as_bool().expect("status_report"),
    }
}

/// Run tests/interop/gsmmodem_peer.py against `sim` with `args`; its events (one JSON object a
/// line) and its whole output, for messages.
async fn run_peer(python: &Path, sim: &Simulator, args: &[&str]) -> (Vec<Value>, String) {
    let child = tokio::process::Command::new(python)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/gsmmodem_peer.py"))
        .arg(&sim.link)
        .arg(&sim.control)
        .arg("--verbose")
        .args(args)
        .env("PYTHONUTF8", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn the python peer");
    let output = tokio::time::timeout(PEER_TIMEOUT, child.wait_with_output())
        .await
        .expect("the python peer finished in time")
        .expect("the python peer ran");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "python peer failed\nstdout:\n{stdout}\nstderr:\n{stderr}");
    let events = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
        .collect();
    (events, stdout)
}

/// GET /modems/0/sent: every SMS-SUBMIT the virtual modem decoded.
async fn sent_by(sim: &Simulator) -> Vec<Decoded> {
    smsgw::client::install_tls_provider();
    let resp = reqwest::get(format!("{}/modems/0/sent", sim.control)).await.expect("GET /modems/0/sent");
    assert_eq!(resp.status(), 200);
    let list: Value = resp.json().await.expect("JSON");
    list.as_array().expect("a list").iter().map(decoded).collect()
}

#[tokio::test]
async fn python_gsmmodem_gets_the_status_report_for_its_send() {
    let python = venv_python();
    // As a SIM800 on a quick network: the report is ready 100 ms into a send that takes 1.5 s.
    // The modem holds it until its +CMGS answer is out (TS 27.005 §3.4.1), so the library,
    // with its default AT+CNMI=2,1,0,2, reads it back after +CDSI as its own.
    let sim = Simulator::start(&["--send-delay-ms", "1500", "--report-delay-ms", "100"]);
    let (events, stdout) = run_peer(&python, &sim, &["--send", TO, SEND_CYRILLIC, "--send", TO, DELIVER_GSM]).await;
    let sent: Vec<&Value> = events.iter().filter(|v| v["event"] == "sent").collect();
    let decoded = sent_by(&sim).await;
    assert_eq!((sent.len(), decoded.len()), (2, 2), "{stdout}");
    for (event, d) in sent.iter().zip(&decoded) {
        assert!(d.status_report, "the library asked for a report: {d:?}");
        assert_eq!(event["status"], "delivered", "{event}");
        assert_eq!(event["reference"].as_u64(), Some(d.message_ref), "{event}");
        let reports = event["reports"].as_array().expect("reports");
        assert_eq!(reports.len(), 1, "{event}");
        assert_eq!(reports[0]["reference"].as_u64(), Some(d.message_ref), "{event}");
        assert_eq!((reports[0]["number"].as_str(), reports[0]["delivery_status"].as_u64()), (Some(TO), Some(0)));
    }
}

#[tokio::test]
async fn python_gsmmodem_identifies_sends_and_receives_through_the_virtual_modem() {
    let python = venv_python();
    // Sends take 200 ms; reports come 2 s after a send, so none arrives while the library is
    // still sending the parts of a long message.
    let sim = Simulator::start(&["--send-delay-ms", "200", "--report-delay-ms", "2000"]);
    let cfg = ModemConfig::default();

    // Each text and whether it is too long for one SMS.
    let sends = [
        (SEND_GSM.to_string(), false),
        (SEND_CYRILLIC.to_string(), false),
        (send_long_cyrillic(), true),
        (send_long_gsm(), true),
    ];
    let delivers = [DELIVER_GSM, DELIVER_CYRILLIC];
    let stored = [deliver_long_cyrillic(), deliver_long_gsm()];
    let mut args: Vec<&str> = Vec::new();
    for (text, _) in &sends {
        args.extend(["--send", TO, text]);
    }
    for text in delivers {
        args.extend(["--deliver", FROM, text]);
    }
    for text in &stored {
        args.extend(["--deliver-stored", FROM, text]);
    }
    let (events, stdout) = run_peer(&python, &sim, &args).await;
    let of = |event: &str| events.iter().filter(|v| v["event"] == event).cloned().collect::<Vec<_>>();

    // 1. The library identified the modem: what the default virtual modem answers.
    let id = of("identity");
    assert_eq!(id.len(), 1, "{stdout}");
    let id = &id[0];
    assert_eq!(id["manufacturer"], cfg.manufacturer.as_str());
    assert_eq!(id["model"], cfg.model.as_str());
    assert_eq!(id["revision"], cfg.revision.as_str());
    assert_eq!(id["imei"], sim.imei.as_str());
    assert_eq!(id["imsi"], cfg.imsi.as_str());
    assert_eq!(id["signal"], u64::from(cfg.csq));
    assert_eq!(id["coverage_signal"], u64::from(cfg.csq));
    assert_eq!(id["network"], cfg.operator.as_str());
    assert_eq!(id["smsc"], cfg.smsc.as_str());

    // 2. Every send went through, each part got a delivered report, and the virtual modem decoded
    // exactly the recipient and text the library encoded, part by part.
    let sent_events = of("sent");
    assert_eq!(sent_events.len(), sends.len(), "{stdout}");
    let decoded = sent_by(&sim).await;
    let mut next = decoded.iter();
    for (event, (text, long)) in sent_events.iter().zip(&sends) {
        assert_eq!((event["to"].as_str(), event["text"].as_str()), (Some(TO), Some(text.as_str())));
        assert_eq!(event["status"], "delivered", "{event}");
        let parts = event["parts"].as_u64().expect("parts") as usize;
        assert_eq!(parts > 1, *long, "{text:?} went in {parts} part(s)");
        let mine: Vec<&Decoded> = next.by_ref().take(parts).collect();
        assert_eq!(mine.len(), parts, "the modem decoded fewer messages than were sent: {decoded:#?}");
        for d in &mine {
            assert_eq!(d.to, TO, "{d:?}");
            assert!(d.status_report, "the library asks for reports: {d:?}");
        }
        if parts == 1 {
            assert_eq!(mine[0].text, *text);
            assert_eq!(mine[0].part, None);
        } else {
            let reference = mine[0].part.expect("a concatenated part").0;
            for (i, d) in mine.iter().enumerate() {
                assert_eq!(d.part, Some((reference, parts as u64, i as u64 + 1)), "{d:?}");
            }
            assert_eq!(mine.iter().map(|d| d.text.as_str()).collect::<String>(), *text);
        }
        // The library's reference is the last part's +CMGS answer, and the reports it read back
        // (+CDSI, AT+CMGR) are for exactly the message references the modem gave out.
        assert_eq!(event["reference"].as_u64(), mine.last().map(|d| d.message_ref));
        let mut reported: Vec<u64> = event["reports"]
            .as_array()
            .expect("reports")
            .iter()
            .map(|r| r["reference"].as_u64().expect("ref"))
            .collect();
        reported.sort_unstable();
        assert_eq!(reported, mine.iter().map(|d| d.message_ref).collect::<Vec<_>>(), "{event}");
        for r in event["reports"].as_array().expect("reports") {
            assert_eq!((r["number"].as_str(), r["delivery_status"].as_u64()), (Some(TO), Some(0)), "{r}");
        }
    }
    assert!(next.next().is_none(), "the modem decoded more messages than were sent: {decoded:#?}");

    // 3. Messages from the network: single ones through the SMS-received callback, long ones read
    // from storage part by part (the library does not reassemble) and joined by their UDH.
    let received = of("received");
    assert_eq!(received.len(), delivers.len() + stored.len(), "{stdout}");
    for (event, text) in received.iter().zip(delivers) {
        assert_eq!(event["via"], "callback");
        assert_eq!((event["sender"].as_str(), event["text"].as_str()), (Some(FROM), Some(text)), "{event}");
        assert_eq!(event["parts"].as_array().map(Vec::len), Some(1));
        assert!(event["parts"][0]["concat"].is_null(), "{event}");
    }
    for (event, text) in received[delivers.len()..].iter().zip(&stored) {
        assert_eq!(event["via"], "stored");
        assert_eq!((event["sender"].as_str(), event["text"].as_str()), (Some(FROM), Some(text.as_str())), "{event}");
        let parts = event["parts"].as_array().expect("parts");
        assert!(parts.len() > 1, "{event}");
        let reference = &parts[0]["concat"]["reference"];
        for (i, p) in parts.iter().enumerate() {
            let c = &p["concat"];
            assert_eq!(&c["reference"], reference, "{event}");
            assert_eq!((c["total"].as_u64(), c["number"].as_u64()), (Some(parts.len() as u64), Some(i as u64 + 1)));
        }
    }

    // Everything read was deleted again (AT+CMGD), reports included.
    assert_eq!(of("stored_after").first().map(|v| v["count"].clone()), Some(Value::from(0)), "{stdout}");
}

/// gammu, when installed. Where it is not and CI is not set, None with the reason printed (the
/// test then checks nothing); under CI (which installs it, see .ci/run) a missing gammu fails.
fn gammu_installed() -> bool {
    let found = Command::new("gammu").arg("--version").output().is_ok_and(|o| o.status.success());
    if !found {
        let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false");
        assert!(!ci, "gammu is not installed but CI is set: install it (apt-get install gammu; .ci/run does)");
        eprintln!("SKIPPED: gammu is not installed (apt-get install gammu) and CI is not set; nothing was checked");
    }
    found
}

/// gammu pointed at the virtual modem's pty through its own config file.
struct Gammu {
    config: PathBuf,
    _dir: tempfile::TempDir,
}

impl Gammu {
    fn new(sim: &Simulator) -> Gammu {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("gammurc");
        let text = format!("[gammu]\ndevice = {}\nconnection = at\n", sim.link.display());
        std::fs::write(&config, text).expect("write the gammu config");
        Gammu { config, _dir: dir }
    }

    /// Run `gammu -c CONFIG args...`; its standard output, after checking it succeeded. A UTF-8
    /// locale, so gammu reads and prints Cyrillic as it is.
    async fn run(&self, args: &[&str]) -> String {
        let child = tokio::process::Command::new("gammu")
            .arg("-c")
            .arg(&self.config)
            .args(args)
            .env("LC_ALL", "C.UTF-8")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn gammu");
        let output = tokio::time::timeout(PEER_TIMEOUT, child.wait_with_output())
            .await
            .expect("gammu finished in time")
            .expect("gammu ran");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "gammu {args:?} failed ({})\nstdout:\n{stdout}\nstderr:\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        stdout
    }
}

/// The value of `key` in gammu's "Key     : value" output.
fn field<'a>(out: &'a str, key: &str) -> Option<&'a str> {
    out.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == key).then(|| v.trim())
    })
}

#[tokio::test]
async fn gammu_identifies_the_virtual_modem() {
    if !gammu_installed() {
        return;
    }
    let sim = Simulator::start(&["--send-delay-ms", "300"]);
    let cfg = ModemConfig::default();
    let out = Gammu::new(&sim).run(&["identify"]).await;
    assert_eq!(field(&out, "Manufacturer"), Some(cfg.manufacturer.as_str()), "{out}");
    assert!(field(&out, "Model").is_some_and(|m| m.contains(&cfg.model)), "{out}");
    assert_eq!(field(&out, "Firmware"), Some(cfg.revision.as_str()), "{out}");
    assert_eq!(field(&out, "IMEI"), Some(sim.imei.as_str()), "{out}");
    assert_eq!(field(&out, "SIM IMSI"), Some(cfg.imsi.as_str()), "{out}");
}

#[tokio::test]
async fn gammu_reads_the_network_of_the_virtual_modem() {
    if !gammu_installed() {
        return;
    }
    let sim = Simulator::start(&["--send-delay-ms", "300"]);
    let out = Gammu::new(&sim).run(&["networkinfo"]).await;
    assert_eq!(field(&out, "Network state"), Some("home network"), "{out}");
    assert_eq!(field(&out, "Packet network state"), Some("home network"), "{out}");
    assert_eq!(field(&out, "GPRS"), Some("attached"), "{out}");
    // The operator by number (AT+COPS=3,2), with the cell gammu read from AT+CREG=2.
    let network = field(&out, "Network").unwrap_or_default();
    assert!(network.starts_with("250 01") && network.contains("LAC 2AF5"), "{out}");
    assert_eq!(field(&out, "Name in phone"), Some("\"MTS RUS\""), "{out}");
}

#[tokio::test]
async fn gammu_sends_through_the_virtual_modem() {
    if !gammu_installed() {
        return;
    }
    let sim = Simulator::start(&["--send-delay-ms", "300"]);
    let gammu = Gammu::new(&sim);
    let gsm = "Hello from gammu @ 5 EUR";
    let out = gammu.run(&["sendsms", "TEXT", TO, "-text", gsm]).await;
    assert!(out.contains("message reference="), "{out}");
    // gammu sends GSM 7-bit unless told the text needs UCS-2.
    let out = gammu.run(&["sendsms", "TEXT", TO, "-unicode", "-text", SEND_CYRILLIC]).await;
    assert!(out.contains("message reference="), "{out}");
    let sent = sent_by(&sim).await;
    let got: Vec<(&str, &str)> = sent.iter().map(|d| (d.to.as_str(), d.text.as_str())).collect();
    assert_eq!(got, [(TO, gsm), (TO, SEND_CYRILLIC)], "{sent:#?}");
}

#[tokio::test]
async fn gammu_reads_messages_the_network_delivered() {
    if !gammu_installed() {
        return;
    }
    let sim = Simulator::start(&["--send-delay-ms", "300"]);
    smsgw::client::install_tls_provider();
    let http = reqwest::Client::new();
    for text in [DELIVER_CYRILLIC, DELIVER_GSM] {
        let resp = http
            .post(format!("{}/modems/0", sim.control))
            .json(&serde_json::json!({"do": "deliver", "from": FROM, "text": text}))
            .send()
            .await
            .expect("POST /modems/0");
        assert!(resp.status().is_success(), "{}", resp.status());
    }
    let out = Gammu::new(&sim).run(&["getallsms"]).await;
    assert!(out.contains(DELIVER_CYRILLIC), "{out}");
    assert!(out.contains(DELIVER_GSM), "{out}");
    assert_eq!(out.matches(&format!("Remote number        : \"{FROM}\"")).count(), 2, "{out}");
    assert!(out.contains("2 SMS parts in 2 SMS sequences"), "{out}");
}
