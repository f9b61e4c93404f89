//! Values the daemon cannot run with are refused by `config check` and by
//! `run`, each with the key and the allowed range, never with a panic.

mod common;
use common::*;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const HUGE: &str = "9223372036854775807";

fn sim(params: &str) -> String {
    format!("[[routes]]\nname = \"r\"\nkind = \"sim\"\n{params}\n")
}

fn smpp(params: &str) -> String {
    format!(
        "[[routes]]\nname = \"r\"\nkind = \"smpp\"\n[routes.smpp]\nhost = \"127.0.0.1\"\nport = 9\nsystem_id = \"u\"\n{params}\n"
    )
}

fn modem(params: &str) -> String {
    format!(
        "[[routes]]\nname = \"r\"\nkind = \"modem\"\n[routes.modem]\nports = [\"/nonexistent/smsgw-*\"]\n{params}\n"
    )
}

/// (server lines, other tables, routes, the key the refusal must name)
fn cases() -> Vec<(&'static str, String, String, &'static str)> {
    vec![
        ("", String::new(), sim("rate = 1e-300"), "routes[0].rate"),
        ("", String::new(), sim("rate = nan"), "routes[0].rate"),
        ("", String::new(), sim("rate = inf"), "routes[0].rate"),
        ("", String::new(), sim("rate = 10.0\nburst = 1000000"), "routes[0].burst"),
        ("", String::new(), sim("concurrency = 100000000"), "routes[0].concurrency"),
        ("", String::new(), smpp("max_submits_per_sec = 1e-300"), "routes[0].smpp.max_submits_per_sec"),
        ("", String::new(), smpp(&format!("enquire_link_secs = {HUGE}")), "routes[0].smpp.enquire_link_secs"),
        ("", String::new(), smpp(&format!("response_timeout_secs = {HUGE}")), "routes[0].smpp.response_timeout_secs"),
        ("", String::new(), smpp("bind_refused_retry_secs = 0"), "routes[0].smpp.bind_refused_retry_secs"),
        ("", String::new(), smpp(&format!("unbind_timeout_ms = {HUGE}")), "routes[0].smpp.unbind_timeout_ms"),
        (
            "",
            String::new(),
            modem(&format!("registration_timeout_secs = {HUGE}")),
            "routes[0].modem.registration_timeout_secs",
        ),
        ("", String::new(), modem("health_interval_secs = 0"), "routes[0].modem.health_interval_secs"),
        ("", String::new(), modem("baud = 0"), "routes[0].modem.baud"),
        ("", String::new(), modem("per_day = 0"), "routes[0].modem.per_day"),
        ("", format!("[dispatch]\ndefault_validity_secs = {HUGE}"), sim(""), "dispatch.default_validity_secs"),
        ("", "[dispatch]\ninbound_reassembly_secs = 0".into(), sim(""), "dispatch.inbound_reassembly_secs"),
        ("", format!("[dispatch]\nretry_max_ms = {HUGE}"), sim(""), "dispatch.retry_max_ms"),
        ("", format!("[dispatch]\nshutdown_timeout_ms = {HUGE}"), sim(""), "dispatch.shutdown_timeout_ms"),
        ("header_timeout_secs = 0", String::new(), sim(""), "server.header_timeout_secs"),
        ("idle_timeout_secs = 9223372036854775807", String::new(), sim(""), "server.idle_timeout_secs"),
        ("max_connections = 0", String::new(), sim(""), "server.max_connections"),
    ]
}

/// Run `smsgw args`; the exit status (None if it ran on for 30 s) and stderr.
fn smsgw(args: &[&str], dir: &std::path::Path) -> (Option<i32>, String) {
    let mut child = Command::new(bin())
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn smsgw");
    let deadline = Instant::now() + Duration::from_secs(30);
    let code = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    use std::io::Read;
    let _ = child.stderr.take().expect("stderr").read_to_string(&mut err);
    (code, err)
}

#[test]
fn values_the_daemon_cannot_run_with_are_refused_with_their_key_and_range() {
    // A few cases at a time: the binary takes a moment to start.
    let mut failures = Vec::new();
    for chunk in cases().chunks(3) {
        failures.extend(std::thread::scope(|scope| {
            let runs: Vec<_> = chunk
                .iter()
                .cloned()
                .map(|(server, extra, routes, key)| {
                    scope.spawn(move || {
                        let dir = tempfile::tempdir().unwrap();
                        let file = write_config_with(dir.path(), server, &extra, &routes);
                        let file = file.to_str().unwrap();
                        let mut failures = Vec::new();
                        for args in [vec!["config", "check", file], vec!["run", "--config", file]] {
                            let (code, err) = smsgw(&args, dir.path());
                            let ok = code == Some(1)
                                && err.contains(key)
                                && err.contains("out of range")
                                && !err.contains("panicked");
                            if !ok {
                                failures.push(format!("{key} via `{}`: exit {code:?}, stderr:\n{err}", args[0]));
                            }
                        }
                        failures
                    })
                })
                .collect();
            runs.into_iter().flat_map(|r| r.join().expect("case thread")).collect::<Vec<_>>()
        }));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n---\n"));
}

/// A key file, a password file or the config itself that never ends (a
/// device named by mistake) is refused with the key that names it, not read
/// until memory runs out.
#[test]
fn files_that_never_end_are_refused_not_read_forever() {
    let dir = tempfile::tempdir().unwrap();
    let extra = "[[api_keys]]\nname = \"z\"\nkey_file = \"/dev/zero\"";
    let file = write_config_with(dir.path(), "", extra, &smpp("password_file = \"/dev/zero\""));
    let (code, err) = smsgw(&["config", "check", file.to_str().unwrap()], dir.path());
    assert_eq!(code, Some(1), "{err}");
    for key in ["api_keys[0].key_file", "routes[0].smpp.password_file"] {
        assert!(err.contains(&format!("{key}: cannot read /dev/zero: longer than 4096 bytes")), "{key}: {err}");
    }
    let (code, err) = smsgw(&["config", "check", "/dev/zero"], dir.path());
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("/dev/zero: cannot read: longer than 1048576 bytes"), "{err}");
}
