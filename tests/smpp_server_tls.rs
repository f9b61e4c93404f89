//! The SMPP server over TLS on its own port, through the real binary: npm
//! `smpp` connects with `ssmpp://`, trusting only the server's self-signed
//! certificate, binds, submits and gets the receipt back over TLS; a plain
//! SMPP client on the TLS port is dropped without a bind and without
//! harming the TLS session or the plain listener.

mod common;
use common::*;
use std::io::{Read, Write};
use std::time::Duration;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A bind_transceiver PDU as plain bytes (system_id "crm", password "secret1").
fn plain_bind() -> Vec<u8> {
    let mut body = Vec::new();
    for field in [&b"crm"[..], b"secret1", b""] {
        body.extend_from_slice(field);
        body.push(0);
    }
    body.extend_from_slice(&[0x34, 0, 0, 0]);
    let mut pdu = ((16 + body.len()) as u32).to_be_bytes().to_vec();
    pdu.extend_from_slice(&0x0000_0009u32.to_be_bytes());
    pdu.extend_from_slice(&0u32.to_be_bytes());
    pdu.extend_from_slice(&7u32.to_be_bytes());
    pdu.extend_from_slice(&body);
    pdu
}

/// Everything the server sends until it closes the connection (panics if it
/// stays open for `secs`).
fn read_until_closed(s: &mut std::net::TcpStream, secs: u64) -> Vec<u8> {
    s.set_read_timeout(Some(Duration::from_secs(secs))).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 512];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return got,
            Err(e) => panic!("the connection stayed open: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn binds_submits_and_gets_receipts_over_tls_and_drops_plain_text() {
    let dir = tempfile::tempdir().unwrap();
    let key = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    std::fs::write(dir.path().join("server.pem"), key.cert.pem()).unwrap();
    std::fs::write(dir.path().join("server.key"), key.signing_key.serialize_pem()).unwrap();
    let (plain, tls) = (free_port(), free_port());
    let extra = format!(
        r#"
[smpp_server]
listen = "127.0.0.1:{plain}"
tls_listen = "127.0.0.1:{tls}"
tls_cert_file = "server.pem"
tls_key_file = "server.key"
receipt_retry_secs = 1
[[smpp_server.accounts]]
system_id = "crm"
password = "secret1"
"#
    );
    write_config(dir.path(), &extra, &sim_route(dir.path(), "sim", "", ""));
    let d = Daemon::start(dir.path());

    // A plain SMPP client on the TLS port: no bind_resp, dropped.
    let mut wrong = std::net::TcpStream::connect(("127.0.0.1", tls)).unwrap();
    wrong.write_all(&plain_bind()).unwrap();
    let answer = read_until_closed(&mut wrong, 15);
    assert!(
        answer.len() < 16 || answer[4..8] != 0x8000_0009u32.to_be_bytes(),
        "a plain bind on the TLS port was answered as SMPP: {answer:?}"
    );
    // One that says nothing stays pending in its handshake while others work.
    let _silent = std::net::TcpStream::connect(("127.0.0.1", tls)).unwrap();

    let pem = dir.path().join("server.pem");
    let (lines, stdout) =
        node_lines("smpp_server_tls.js", &[&tls.to_string(), pem.to_str().unwrap(), "crm", "secret1"]).await;
    let event = |name: &str| lines.iter().find(|l| l["event"] == name).unwrap_or_else(|| panic!("no {name}: {stdout}"));
    assert_eq!(event("bind_resp")["status"], 0);
    let submitted = event("submit_resp");
    assert_eq!(submitted["status"], 0);
    let id: i64 = submitted["message_id"].as_str().unwrap().parse().unwrap();
    let m = d.wait_status(id, "delivered", 20).await;
    assert_eq!(m["text"], "Hello over TLS");
    assert_eq!(m["api_key"], "smpp:crm");
    let receipt = event("deliver_sm");
    assert_eq!(receipt["tls"], true);
    assert_eq!(receipt["esm_class"], 4);
    assert_eq!(receipt["receipted_message_id"], id.to_string());
    assert!(receipt["text"].as_str().unwrap().contains("stat:DELIVRD"), "{receipt}");
    assert_eq!(event("unbind_resp")["status"], 0);

    // The plain listener serves the same accounts alongside.
    let mut ok = std::net::TcpStream::connect(("127.0.0.1", plain)).unwrap();
    ok.write_all(&plain_bind()).unwrap();
    ok.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut head = [0u8; 16];
    ok.read_exact(&mut head).unwrap();
    assert_eq!(head[4..8], 0x8000_0009u32.to_be_bytes(), "bind_transceiver_resp");
    assert_eq!(head[8..12], [0, 0, 0, 0], "ESME_ROK");

    let log = d.log_text();
    assert!(log.contains("SMPP TLS handshake failed") && log.contains("127.0.0.1"), "logged with the peer: {log}");
}

#[test]
fn tls_files_that_cannot_be_read_are_named() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("server.pem"), "not a certificate\n").unwrap();
    let extra = format!(
        "[smpp_server]\ntls_listen = \"127.0.0.1:{}\"\ntls_cert_file = \"server.pem\"\ntls_key_file = \"missing.key\"\n",
        free_port()
    );
    write_config(dir.path(), &extra, &sim_route(dir.path(), "sim", "", ""));
    let err = Daemon::try_start(dir.path()).err().expect("the daemon refuses the config");
    assert!(err.contains("smpp_server.tls_cert_file") && err.contains("server.pem"), "{err}");
    assert!(err.contains("smpp_server.tls_key_file") && err.contains("missing.key"), "{err}");
}
