//! Kannel (the Debian package, an independent SMS gateway) as an ESME bound
//! to smsgw's SMPP server: Kannel's sendsms HTTP → bearerbox → smsgw (a
//! transceiver bind of an account) → the simulated route → the receipt back
//! as `deliver_sm` → Kannel matches it to its message → Kannel calls the DLR
//! URL, here a small HTTP listener in the test, with status 1 (delivered).
//! A Cyrillic text sent as UCS-2 (`coding=2`) arrives in smsgw intact.
//! Kannel binds over TLS (`use-ssl`) to `tls_listen` the same way.
//!
//! Where bearerbox is not installed and CI is not set, the test says so
//! loudly and checks nothing; under CI (which installs it, see .ci/run) a
//! missing Kannel fails.

mod common;
use common::*;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// bearerbox's path: on PATH, or where Debian puts it (/usr/sbin is not on
/// every user's PATH).
fn kannel_bin(name: &str) -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join(name)).collect::<Vec<_>>())
        .unwrap_or_default();
    on_path.into_iter().chain([Path::new("/usr/sbin").join(name)]).find(|p| p.is_file())
}

fn kannel_installed() -> bool {
    let found = kannel_bin("bearerbox").is_some() && kannel_bin("smsbox").is_some();
    if !found {
        let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false");
        assert!(!ci, "Kannel is not installed but CI is set: install it (apt-get install kannel; .ci/run does)");
        eprintln!(
            "\n*** SKIPPED: Kannel (bearerbox, smsbox) is not installed (apt-get install kannel) and CI is not \
             set; the Kannel interop test checked NOTHING ***\n"
        );
    }
    found
}

/// bearerbox and smsbox in the foreground, their output and logs in `dir`;
/// killed on drop.
struct Kannel {
    boxes: Vec<Child>,
    dir: PathBuf,
    admin: u16,
    sendsms: u16,
}

impl Kannel {
    /// Kannel bound to smsgw's SMPP server on `smpp_port`, over TLS when `tls`.
    fn start(dir: &Path, smpp_port: u16, tls: bool) -> Kannel {
        let (admin, smsbox, sendsms) = (free_port(), free_port(), free_port());
        let d = dir.display();
        let use_ssl = if tls { "use-ssl = true" } else { "use-ssl = false" };
        let conf = format!(
            r#"
group = core
admin-port = {admin}
admin-password = adminpw
smsbox-port = {smsbox}
box-allow-ip = "127.0.0.1"
log-file = "{d}/bearerbox.log"
log-level = 0
access-log = "{d}/access.log"
dlr-storage = internal

group = smsc
smsc = smpp
smsc-id = smsgw
host = 127.0.0.1
port = {smpp_port}
{use_ssl}
transceiver-mode = true
smsc-username = kannel
smsc-password = kpw
system-type = ""
enquire-link-interval = 30
reconnect-delay = 1

group = smsbox
bearerbox-host = 127.0.0.1
bearerbox-port = {smsbox}
sendsms-port = {sendsms}
log-file = "{d}/smsbox.log"
log-level = 0

group = sendsms-user
username = tester
password = testpw
max-messages = 10
concatenation = true

group = sms-service
keyword = default
text = "no service"
"#
        );
        let path = dir.join("kannel.conf");
        std::fs::write(&path, conf).expect("write kannel.conf");
        let spawn = |name: &str| {
            let out = std::fs::File::create(dir.join(format!("{name}.out"))).expect("output file");
            Command::new(kannel_bin(name).expect("installed"))
                .args(["-v", "1"])
                .arg(&path)
                .stdin(Stdio::null())
                .stdout(out.try_clone().expect("output file"))
                .stderr(out)
                .spawn()
                .unwrap_or_else(|e| panic!("start {name}: {e}"))
        };
        let mut k = Kannel { boxes: vec![spawn("bearerbox")], dir: dir.to_path_buf(), admin, sendsms };
        // smsbox connects to bearerbox once, at start: wait for its box port.
        let deadline = Instant::now() + Duration::from_secs(15);
        while std::net::TcpStream::connect(("127.0.0.1", smsbox)).is_err() {
            assert!(Instant::now() < deadline, "bearerbox did not open its smsbox port\n{}", k.logs());
            std::thread::sleep(Duration::from_millis(100));
        }
        k.boxes.push(spawn("smsbox"));
        k
    }

    /// The tails of Kannel's output and logs, for a failure's message.
    fn logs(&self) -> String {
        let mut all = String::new();
        for f in ["bearerbox.out", "bearerbox.log", "smsbox.out", "smsbox.log"] {
            let text = std::fs::read_to_string(self.dir.join(f)).unwrap_or_default();
            let lines: Vec<&str> = text.lines().filter(|l| !l.contains("DEBUG")).collect();
            all.push_str(&format!("--- {f} (last lines, DEBUG left out)\n"));
            for l in &lines[lines.len().saturating_sub(30)..] {
                all.push_str(l);
                all.push('\n');
            }
        }
        all
    }

    /// Wait until Kannel reports its SMPP connection to smsgw online.
    async fn wait_online(&self, http: &reqwest::Client) {
        let url = format!("http://127.0.0.1:{}/status.txt?password=adminpw", self.admin);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = http.get(&url).send().await
                && let Ok(text) = r.text().await
                && text.lines().any(|l| l.contains("smsgw") && l.contains("(online"))
            {
                return;
            }
            assert!(Instant::now() < deadline, "Kannel's SMPP bind to smsgw never came online\n{}", self.logs());
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Kannel's sendsms with `params` (name, value; encoded here); its answer.
    async fn sendsms(&self, http: &reqwest::Client, params: &[(&str, &str)]) -> (u16, String) {
        let query: String = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs([("username", "tester"), ("password", "testpw")])
            .extend_pairs(params)
            .finish();
        let url = format!("http://127.0.0.1:{}/cgi-bin/sendsms?{query}", self.sendsms);
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            // Refused until smsbox has opened its port; then one request only.
            match http.get(&url).send().await {
                Ok(r) => return (r.status().as_u16(), r.text().await.unwrap_or_default()),
                Err(e) => assert!(Instant::now() < deadline, "sendsms: {e}\n{}", self.logs()),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for Kannel {
    fn drop(&mut self) {
        for b in self.boxes.iter_mut().rev() {
            let _ = b.kill();
            let _ = b.wait();
        }
    }
}

/// An HTTP listener for Kannel's DLR calls: each request's path and query,
/// answered 200.
fn dlr_listener() -> (u16, mpsc::Receiver<String>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut reader = BufReader::new(conn.try_clone().expect("clone"));
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            // The rest of the head, up to the empty line.
            let mut h = String::new();
            while reader.read_line(&mut h).is_ok_and(|n| n > 0) && h.trim() != "" {
                h.clear();
            }
            let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
            if let Some(target) = line.split_whitespace().nth(1) {
                let _ = tx.send(target.to_string());
            }
        }
    });
    (port, rx)
}

/// The query parameters of a request target.
fn query(target: &str) -> std::collections::HashMap<String, String> {
    let q = target.split_once('?').map(|(_, q)| q).unwrap_or_default();
    url::form_urlencoded::parse(q.as_bytes()).into_owned().collect()
}

/// smsgw with a `kannel` account (plain, or over TLS with a throwaway
/// certificate), Kannel bound to it, each of `texts` (with Kannel's `coding`
/// when given) sent through Kannel's sendsms and its DLR awaited.
async fn through_kannel(tls: bool, texts: &[(&str, Option<&str>)]) {
    let dir = tempfile::tempdir().unwrap();
    let smpp = free_port();
    let listen = if tls {
        let key = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        std::fs::write(dir.path().join("server.pem"), key.cert.pem()).unwrap();
        std::fs::write(dir.path().join("server.key"), key.signing_key.serialize_pem()).unwrap();
        format!("tls_listen = \"127.0.0.1:{smpp}\"\ntls_cert_file = \"server.pem\"\ntls_key_file = \"server.key\"")
    } else {
        format!("listen = \"127.0.0.1:{smpp}\"")
    };
    let extra = format!(
        "[smpp_server]\n{listen}\nreceipt_retry_secs = 1\n\
         [[smpp_server.accounts]]\nsystem_id = \"kannel\"\npassword = \"kpw\"\n"
    );
    write_config(dir.path(), &extra, &sim_route(dir.path(), "sim", "", ""));
    let d = Daemon::start(dir.path());
    let (dlr_port, dlrs) = dlr_listener();
    let kannel = Kannel::start(dir.path(), smpp, tls);
    kannel.wait_online(&d.http).await;

    let dlr_url = format!("http://127.0.0.1:{dlr_port}/dlr?s=%d&id=%F&to=%p");
    for &(text, coding) in texts {
        let mut params = vec![
            ("from", "KANNEL"),
            ("to", "+79161234567"),
            ("text", text),
            ("dlr-mask", "3"),
            ("dlr-url", dlr_url.as_str()),
        ];
        if let Some(c) = coding {
            params.extend([("coding", c), ("charset", "UTF-8")]);
        }
        let (status, body) = kannel.sendsms(&d.http, &params).await;
        assert_eq!(status, 202, "sendsms: {body}\n{}", kannel.logs());

        // Kannel calls the DLR URL once smsgw's receipt has come back.
        let target = tokio::task::block_in_place(|| dlrs.recv_timeout(Duration::from_secs(30)))
            .unwrap_or_else(|_| panic!("no DLR for {text:?} within 30 s\n{}", kannel.logs()));
        let q = query(&target);
        assert_eq!(q["s"], "1", "delivered: {target}");
        assert_eq!(q["to"], "+79161234567", "{target}");
        let id: i64 = q["id"].parse().unwrap_or_else(|_| panic!("smsgw's message id as Kannel's foreign id: {target}"));
        let m = d.message(id).await;
        assert_eq!(m["status"], "delivered", "{m}");
        assert_eq!(m["text"], text, "the text arrives intact");
        assert_eq!(m["api_key"], "smpp:kannel");
        assert_eq!(m["from"], "KANNEL");
        assert_eq!(m["encoding"], if coding.is_some() { "ucs2" } else { "gsm7" });
    }
    assert!(dlrs.try_recv().is_err(), "one DLR per message");
}

#[tokio::test(flavor = "multi_thread")]
async fn kannel_sends_through_smsgw_and_gets_its_delivery_reports() {
    if kannel_installed() {
        through_kannel(false, &[("Hello from Kannel", None), ("Привет из Kannel", Some("2"))]).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn kannel_binds_over_tls() {
    if kannel_installed() {
        through_kannel(true, &[("Hello from Kannel over TLS", None)]).await;
    }
}
