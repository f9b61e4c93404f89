//! The HTTP API against slow, idle and half-sent clients, over real sockets
//! to the real binary: a head or body dribbled past its deadline is cut, an
//! idle keep-alive connection is closed, connections over the cap wait
//! without holding descriptors, and a stop does not wait for half-sent
//! requests.

mod common;

use common::{Daemon, KEY, sim_route, write_config_with};
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

fn start(server: &str) -> (tempfile::TempDir, Daemon) {
    let dir = tempfile::tempdir().unwrap();
    write_config_with(dir.path(), server, "", &sim_route(dir.path(), "sim", "", ""));
    let d = Daemon::start(dir.path());
    (dir, d)
}

fn connect(d: &Daemon) -> TcpStream {
    let addr = d.url.strip_prefix("http://").expect("http url");
    TcpStream::connect(addr).expect("connect")
}

/// What the server has sent so far, and whether it has closed the connection.
fn poll(s: &mut TcpStream) -> (Vec<u8>, bool) {
    s.set_nonblocking(true).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let closed = loop {
        match s.read(&mut buf) {
            Ok(0) => break true,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::WouldBlock => break false,
            Err(_) => break true,
        }
    };
    s.set_nonblocking(false).unwrap();
    (got, closed)
}

/// Send `bytes` one per second; stop when the server answers or closes.
/// Returns what it answered, whether it closed, and how many bytes went.
fn dribble(s: &mut TcpStream, bytes: &[u8]) -> (Vec<u8>, bool, usize) {
    let mut answer = Vec::new();
    for (i, b) in bytes.iter().enumerate() {
        if s.write_all(&[*b]).is_err() {
            return (answer, true, i);
        }
        std::thread::sleep(Duration::from_secs(1));
        let (got, closed) = poll(s);
        answer.extend(got);
        if closed || !answer.is_empty() {
            return (answer, closed, i + 1);
        }
    }
    (answer, false, bytes.len())
}

/// Wait up to `secs` for the server to close `s`.
fn closes_within(s: &mut TcpStream, secs: u64) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if poll(s).1 {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// One GET on `s`, reading its whole answer (keep-alive).
fn get(s: &mut TcpStream, path: &str) -> String {
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n\r\n").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = s.read(&mut buf).expect("an answer");
        assert!(n > 0, "closed before answering: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got).to_string();
        if let Some(end) = text.find("\r\n\r\n") {
            let len = text
                .lines()
                .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_string()))
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(0);
            if got.len() >= end + 4 + len {
                return text;
            }
        }
    }
}

fn open_fds(d: &Daemon) -> usize {
    std::fs::read_dir(format!("/proc/{}/fd", d.child.id())).expect("read /proc/<pid>/fd").count()
}

#[test]
fn a_dribbled_head_is_cut_at_the_header_timeout() {
    let (_dir, d) = start("header_timeout_secs = 2");
    let mut s = connect(&d);
    let head = format!("GET /v1/queue HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n\r\n");
    let (_, closed, sent) = dribble(&mut s, head.as_bytes());
    assert!(closed, "a head dribbled for {sent} s was still being read");
    assert!(sent < 10, "cut only after {sent} bytes at one a second");
}

#[test]
fn a_dribbled_body_is_cut_at_the_body_timeout() {
    let (_dir, d) = start("body_timeout_secs = 2");
    let mut s = connect(&d);
    let body = br#"{"to": "+79161234567", "text": "hello there, this is a slow body"}"#;
    write!(
        s,
        "POST /v1/messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    let (answer, closed, sent) = dribble(&mut s, body);
    let answer = String::from_utf8_lossy(&answer);
    assert!(sent < 10, "a body dribbled for {sent} s was still being read");
    assert!(answer.starts_with("HTTP/1.1 408"), "closed={closed}, answer: {answer}");
    assert!(answer.contains("did not arrive within 2 s"), "{answer}");
    assert!(closes_within(&mut s, 5), "the connection stayed open after the 408");
}

#[test]
fn an_idle_keep_alive_connection_is_closed_at_the_idle_timeout() {
    let (_dir, d) = start("idle_timeout_secs = 1\nheader_timeout_secs = 30");
    let mut s = connect(&d);
    assert!(get(&mut s, "/healthz").starts_with("HTTP/1.1 200"));
    // Still usable right after an answer: the connection is kept alive.
    assert!(get(&mut s, "/healthz").starts_with("HTTP/1.1 200"));
    assert!(closes_within(&mut s, 10), "an idle connection was never closed");
}

#[test]
fn the_header_timeout_does_not_cut_an_idle_connection() {
    let (_dir, d) = start("idle_timeout_secs = 30\nheader_timeout_secs = 1");
    let mut s = connect(&d);
    assert!(get(&mut s, "/healthz").starts_with("HTTP/1.1 200"));
    assert!(!closes_within(&mut s, 3), "an idle connection was cut by the header timeout");
    assert!(get(&mut s, "/healthz").starts_with("HTTP/1.1 200"));
}

#[test]
fn connections_over_the_cap_wait_without_holding_descriptors() {
    const CAP: usize = 3;
    let (_dir, d) = start(&format!("max_connections = {CAP}\nheader_timeout_secs = 60\nidle_timeout_secs = 60"));
    // Open the store's reader connections first, so they are not counted
    // as growth; and allow some slack for one more opened meanwhile.
    drop({
        let mut s = connect(&d);
        assert!(get(&mut s, "/v1/queue").starts_with("HTTP/1.1 200"));
        s
    });
    std::thread::sleep(Duration::from_millis(300));
    let before = open_fds(&d);
    let mut idle: Vec<TcpStream> = (0..CAP).map(|_| connect(&d)).collect();
    std::thread::sleep(Duration::from_millis(300));
    let mut next = connect(&d);
    write!(next, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut more: Vec<TcpStream> = (0..50).map(|_| connect(&d)).collect();
    for s in &mut more {
        write!(s, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    }
    std::thread::sleep(Duration::from_millis(500));
    let during = open_fds(&d);
    assert!(during <= before + CAP + 8, "{before} descriptors before, {during} with {} connections", CAP + 51);
    assert!(poll(&mut next).0.is_empty(), "served over the cap");
    drop(idle.pop());
    next.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = [0u8; 256];
    let n = next.read(&mut buf).expect("served once a slot was free");
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
}

#[test]
fn stop_does_not_wait_for_half_sent_requests() {
    let (_dir, mut d) = start("header_timeout_secs = 60\nbody_timeout_secs = 60\nidle_timeout_secs = 60");
    let mut half_body = connect(&d);
    write!(
        half_body,
        "POST /v1/messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"to\": "
    )
    .unwrap();
    let mut half_head = connect(&d);
    write!(half_head, "GET /healthz HTTP/1.1\r\nHo").unwrap();
    let mut idle = connect(&d);
    assert!(get(&mut idle, "/healthz").starts_with("HTTP/1.1 200"));
    std::thread::sleep(Duration::from_millis(300));
    d.signal("TERM");
    let deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        if let Some(s) = d.child.try_wait().expect("wait") {
            break s;
        }
        assert!(Instant::now() < deadline, "still running 5 s after SIGTERM with half-sent requests open");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
    let (answer, _) = poll(&mut half_body);
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 503"), "{answer}");
}
