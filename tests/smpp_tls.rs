//! Binds over TLS: a rustls terminator with a throwaway certificate in
//! front of the SMSC simulator. The route trusts the configured CA file and
//! refuses a certificate it cannot verify.

mod common;
use common::*;
use smsgw::simulate::smsc::{Smsc, SmscConfig};
use std::sync::Arc;
use std::time::Duration;
use tokio_rustls::rustls;

/// Accept TLS on a loopback port and pipe each connection to `backend`.
async fn tls_terminator(backend: std::net::SocketAddr, cert_pem_path: &std::path::Path) -> u16 {
    let key = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    std::fs::write(cert_pem_path, key.cert.pem()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![key.cert.der().clone()],
            rustls_pki_types::PrivateKeyDer::Pkcs8(key.signing_key.serialize_der().into()),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                let Ok(mut plain) = tokio::net::TcpStream::connect(backend).await else { return };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    port
}

fn route(port: u16, tls: &str) -> String {
    format!(
        "[[routes]]\nname = \"carrier\"\nkind = \"smpp\"\n[routes.smpp]\nhost = \"127.0.0.1\"\nport = {port}\n\
         system_id = \"smsgw\"\npassword = \"secret\"\nresponse_timeout_secs = 5\nreconnect_min_ms = 100\n\
         reconnect_max_ms = 500\ntls = true\ntls_server_name = \"localhost\"\n{tls}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binds_over_tls_with_the_configured_ca_and_refuses_an_unknown_one() {
    let sim = Smsc::start(
        SmscConfig { credentials: vec![("smsgw".into(), "secret".into())], receipt_delay_ms: 10, ..Default::default() },
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("carrier-ca.pem");
    let port = tls_terminator(sim.local_addr(), &ca).await;

    write_config(dir.path(), "", &route(port, &format!("tls_ca_file = \"{}\"", ca.display())));
    let d = Daemon::start(dir.path());
    let id = d.send(msg("+79161234567", "over TLS")).await;
    d.wait_status(id, "delivered", 20).await;
    assert_eq!(sim.submitted().len(), 1);
    drop(d);

    // The system's roots do not know this certificate: no bind, a clear reason.
    let dir2 = tempfile::tempdir().unwrap();
    write_config(dir2.path(), "", &route(port, ""));
    let d2 = Daemon::start(dir2.path());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (_, r) = d2.get("/v1/routes").await;
    assert_eq!(r["routes"][0]["state"], "down");
    let detail = r["routes"][0]["members"][0]["detail"].as_str().unwrap_or_default().to_lowercase();
    assert!(detail.contains("tls") && detail.contains("certificate"), "{detail}");
}
