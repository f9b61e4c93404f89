//! The upkeep of an SMPP server bind, through the real binary with npm
//! `smpp` as the ESME: the server sends `enquire_link` on an idle bind, keeps
//! a bind that answers and drops one that stays silent (without harming the
//! other), and at shutdown sends `unbind` to every bind and waits for its
//! answer before closing.

mod common;
use common::*;
use serde_json::Value;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::AsyncBufReadExt;
use tokio::sync::mpsc;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `smpp_server_idle.js` in `mode`; its events as they come, and the process.
fn idle_client(port: u16, mode: &str) -> (mpsc::UnboundedReceiver<Value>, tokio::process::Child) {
    let mut child = tokio::process::Command::new("node")
        .arg("smpp_server_idle.js")
        .arg(port.to_string())
        .args(["crm", "secret1", mode])
        .current_dir(interop_dir())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("run node");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(Some(l)) = lines.next_line().await {
            let _ = tx.send(serde_json::from_str(&l).unwrap_or_else(|e| panic!("{e}: {l}")));
        }
    });
    (rx, child)
}

/// The next event (panics after `secs`).
async fn next(rx: &mut mpsc::UnboundedReceiver<Value>, secs: u64, what: &str) -> Value {
    tokio::time::timeout(Duration::from_secs(secs), rx.recv())
        .await
        .unwrap_or_else(|_| panic!("no event within {secs} s while waiting for {what}"))
        .unwrap_or_else(|| panic!("the client ended while waiting for {what}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_binds_are_probed_silent_ones_dropped_and_shutdown_unbinds() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let extra = format!(
        "[smpp_server]\nlisten = \"127.0.0.1:{port}\"\nenquire_link_secs = 1\n\
         [[smpp_server.accounts]]\nsystem_id = \"crm\"\npassword = \"secret1\"\n"
    );
    write_config(dir.path(), &extra, &sim_route(dir.path(), "sim", "", ""));
    let log = ("SMSGW_LOG", "warn,smsgw::smpp_server=debug".to_string());
    let d = Daemon::try_start_with_env(dir.path(), &[log]).expect("daemon starts");
    let (mut kept, mut kept_proc) = idle_client(port, "answer");
    let (mut silent, _silent_proc) = idle_client(port, "silent");
    assert_eq!(next(&mut kept, 10, "bind_resp").await["status"], 0);
    assert_eq!(next(&mut silent, 10, "bind_resp").await["status"], 0);

    // The silent bind is probed, then dropped after three intervals.
    let mut probes = 0;
    loop {
        let e = next(&mut silent, 15, "the silent bind to be dropped").await;
        match e["event"].as_str() {
            Some("enquire_link") => probes += 1,
            Some("socket_error") => {}
            Some("close") => break,
            _ => panic!("unexpected {e}"),
        }
    }
    assert!(probes >= 1, "the server sent enquire_link on the idle bind before dropping it");

    // The answering bind saw probes all along and is still open.
    let mut seen = Vec::new();
    while let Ok(e) = kept.try_recv() {
        seen.push(e);
    }
    assert!(seen.iter().any(|e| e["event"] == "enquire_link"), "probed: {seen:?}");
    assert!(seen.iter().all(|e| e["event"] == "enquire_link"), "still bound: {seen:?}");

    // Shutdown: an unbind, answered, then the connection closes.
    let log = d.log.clone();
    let code = tokio::task::block_in_place(|| d.terminate());
    assert_eq!(code, Some(0), "a clean stop");
    let mut after = Vec::new();
    loop {
        let e = next(&mut kept, 10, "the unbind at shutdown").await;
        let end = e["event"] == "close";
        after.push(e["event"].as_str().unwrap_or_default().to_string());
        if end {
            break;
        }
    }
    after.retain(|e| e != "enquire_link");
    assert_eq!(after, ["unbind", "close"], "unbind first, then the close");
    let _ = kept_proc.wait().await;
    // The log's reader may still be catching up with the exited daemon.
    let text = || log.lock().unwrap_or_else(|p| p.into_inner()).clone();
    for _ in 0..50 {
        if text().contains("SMPP unbind answered") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    assert!(text().contains("SMPP unbind answered"), "the server waited for the unbind_resp: {}", text());
}
