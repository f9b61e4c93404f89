//! The systemd notification protocol against a test NOTIFY_SOCKET: READY
//! once the API listens, STATUS lines, watchdog pings at the asked pace,
//! STOPPING on SIGTERM.

mod common;
use common::*;
use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

fn collect(sock: &UnixDatagram, until: Instant, out: &mut Vec<String>) {
    let mut buf = [0u8; 4096];
    while Instant::now() < until {
        sock.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        if let Ok(n) = sock.recv(&mut buf) {
            out.push(String::from_utf8_lossy(&buf[..n]).to_string());
        }
    }
}

#[test]
fn ready_status_watchdog_and_stopping() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), "", &sim_route(dir.path(), "sim", "", ""));
    let path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    let env = [("NOTIFY_SOCKET", path.display().to_string()), ("WATCHDOG_USEC", "1500000".to_string())];
    let d = Daemon::try_start_with_env(dir.path(), &env).unwrap();
    let mut msgs = Vec::new();
    collect(&sock, Instant::now() + Duration::from_millis(2600), &mut msgs);
    assert!(msgs[0].contains("READY=1") && msgs[0].contains("STATUS=0 queued; 1/1 routes up"), "{msgs:?}");
    let pings = msgs.iter().filter(|m| m.contains("WATCHDOG=1")).count();
    // Every 0.5 s for 2.6 s, with slack for a busy machine.
    assert!(pings >= 2, "{pings} watchdog pings in 2.6 s: {msgs:?}");
    assert!(msgs.iter().skip(1).any(|m| m.starts_with("STATUS=")));
    // A reload is bracketed by RELOADING=1 (with the monotonic time) and READY=1.
    d.signal("HUP");
    let mut reload = Vec::new();
    collect(&sock, Instant::now() + Duration::from_millis(800), &mut reload);
    let at = |what: &str| reload.iter().position(|m| m.contains(what));
    let (reloading, ready) = (at("RELOADING=1"), at("READY=1"));
    assert!(reloading.is_some() && ready > reloading, "{reload:?}");
    assert!(reload[reloading.unwrap()].contains("MONOTONIC_USEC="));
    assert_eq!(d.terminate(), Some(0));
    let mut rest = Vec::new();
    collect(&sock, Instant::now() + Duration::from_millis(300), &mut rest);
    assert!(rest.iter().any(|m| m.contains("STOPPING=1")), "{rest:?}");
}
