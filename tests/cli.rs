//! The command line: `config check` names every problem; `send` and
//! `status` talk to a running daemon.

mod common;
use common::*;
use std::process::Command;

#[test]
fn config_check_accepts_the_shipped_configs() {
    // The example's store lives in /var/lib/smsgw, which exists only once
    // installed: check it with the store moved to a temporary directory.
    let dir = tempfile::tempdir().unwrap();
    let example = std::fs::read_to_string("firmware-config/smsgw.example.toml").unwrap();
    let moved =
        example.replace("/var/lib/smsgw", &dir.path().display().to_string()).replace("replace-with-", "a-real-secret-");
    assert_ne!(moved, example);
    assert!(
        String::from_utf8_lossy(
            &Command::new(bin())
                .args(["config", "check", "firmware-config/smsgw.example.toml"])
                .output()
                .unwrap()
                .stderr
        )
        .contains("still the example's placeholder"),
        "the unedited example must not pass"
    );
    let example = dir.path().join("example.toml");
    std::fs::write(&example, moved).unwrap();
    for f in ["firmware-config/demo.toml", example.to_str().unwrap()] {
        let out = Command::new(bin()).args(["config", "check", f]).output().unwrap();
        assert!(out.status.success(), "{f}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stdout).contains("OK"));
    }
}

#[test]
fn config_check_names_each_problem() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("bad.toml");
    std::fs::write(
        &f,
        "[server]\nlisten = \"8080\"\n[[api_keys]]\nname = \"a\"\nkey_file = \"missing.key\"\n\
         [[routes]]\nname = \"x\"\nkind = \"sim\"\n[[routes]]\nname = \"x\"\nkind = \"sim\"\n",
    )
    .unwrap();
    let out = Command::new(bin()).args(["config", "check"]).arg(&f).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    for needle in ["server.listen", "api_keys[0].key_file", "missing.key", "routes[1].name: duplicate route name"] {
        assert!(err.contains(needle), "{needle} not in:\n{err}");
    }
    std::fs::write(&f, "[server]\nlisten = \"127.0.0.1:1\"\nport = 3\n").unwrap();
    let out = Command::new(bin()).args(["config", "check"]).arg(&f).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("port"), "{err}");
    let out = Command::new(bin()).args(["config", "check", "/nonexistent.toml"]).output().unwrap();
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("/nonexistent.toml"));
}

#[tokio::test]
async fn send_wait_and_status() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), "", &sim_route(dir.path(), "sim", "", "delivery_delay_ms = 100"));
    let d = Daemon::start(dir.path());
    let url = d.url.clone();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(bin())
            .args(["send", "--to", "8 916 123 45 67", "--text", "Заказ отправлен", "--priority", "otp", "--wait"])
            .env("SMSGW_URL", &url)
            .env("SMSGW_KEY", KEY)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("accepted: id 1") && stdout.contains("delivered"), "{stdout}");
    let url = d.url.clone();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(bin()).args(["status", "--url", &url, "--key", KEY]).output().unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && stdout.contains("delivered") && stdout.contains("sim"), "{stdout}");
    let url = d.url.clone();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(bin()).args(["send", "--url", &url, "--key", KEY, "--to", "12", "--text", "x"]).output().unwrap()
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("422") && stderr.contains("to:"), "{stderr}");
}

/// `route pause` and `route resume` from a console: the pause shows in
/// `status` with its reason, and a wrong route name is an error naming it.
#[tokio::test]
async fn a_route_is_paused_and_resumed_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), "", &sim_route(dir.path(), "sim", "", ""));
    let d = Daemon::start(dir.path());
    let url = d.url.clone();
    let run = move |args: &[&str]| {
        let out = Command::new(bin()).args(args).env("SMSGW_URL", &url).env("SMSGW_KEY", KEY).output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, out, err) = run(&["route", "pause", "sim", "--reason", "SIM swap at 03:00"]);
    assert!(
        ok && out.starts_with("route sim: paused since ") && out.trim_end().ends_with("by key test: SIM swap at 03:00"),
        "{out}{err}"
    );
    let (ok, out, _) = run(&["status"]);
    let line = out.lines().find(|l| l.trim_start().starts_with("sim ")).unwrap_or_default();
    assert!(ok && line.contains("paused since") && line.contains("SIM swap at 03:00"), "{out}");
    assert_eq!(d.get("/v1/routes").await.1["routes"][0]["paused"]["reason"], "SIM swap at 03:00");
    let (ok, out, _) = run(&["route", "resume", "sim"]);
    assert!(ok && out.trim_end() == "route sim: sending", "{out}");
    assert_eq!(d.get("/v1/routes").await.1["routes"][0]["paused"], serde_json::Value::Null);
    let (ok, _, err) = run(&["route", "pause", "nowhere"]);
    assert!(!ok && err.contains("404") && err.contains("no route named \"nowhere\""), "{err}");
}

/// `smsgw bench` on the SMPP side, small: the server scenario's four binds
/// get every submit accepted and every receipt back once; the route
/// scenario's messages all come back delivered, none sent twice.
#[test]
fn bench_smpp_scenarios_run_and_lose_nothing() {
    let out = Command::new(bin())
        .args(["bench", "--only", "smpp-server,smpp-route", "--messages", "1000", "--connections", "8"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    for needle in [
        "smpp-server 1000 submit_sm over 4 transceiver binds",
        ": 1000 accepted in",
        "refused none, 0 unanswered",
        "receipts: 1000 back at",
        "lost 0, duplicated 0, unknown ids 0",
        "smpp-server daemon CPU",
    ] {
        assert!(stdout.contains(needle), "{needle:?} not in:\n{stdout}");
    }
    // Each route round: its messages, every one done, none lost or sent twice.
    for (round, load, done) in [
        ("single", "(8 connections)", "1000 delivered (receipts recorded)"),
        ("batch100", "(batches of 100)", "1000 delivered (receipts recorded)"),
        ("no-dlr", "(8 connections)", "1000 submitted (no receipts asked)"),
        ("batch-no-dlr", "(batches of 100)", "1000 submitted (no receipts asked)"),
    ] {
        let line = stdout
            .lines()
            .find(|l| l.split_whitespace().take(3).eq(["smpp-route", round, "1000"]))
            .unwrap_or_else(|| panic!("no {round} round in:\n{stdout}"));
        for needle in [load, "0 requests failed", done, "lost 0, duplicated 0"] {
            assert!(line.contains(needle), "{needle:?} not in {line:?}");
        }
        let cpu = format!("smpp-route {round} daemon CPU");
        assert!(
            stdout.lines().any(|l| l.split_whitespace().collect::<Vec<_>>().join(" ").starts_with(&cpu)),
            "{cpu:?}"
        );
    }
    let out = Command::new(bin()).args(["bench", "--only", "smpp"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("no scenario \"smpp\""), "{stderr}");
}
