//! Test harness: start the real `smsgw` binary on an ephemeral port with a
//! temporary config and database, talk to it over HTTP, stop or kill it.
#![allow(dead_code)]

use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const KEY: &str = "test-key-0123456789abcdef";
pub const OTHER_KEY: &str = "other-key-0123456789abcdef";

pub struct Daemon {
    pub child: Child,
    pub url: String,
    pub dir: PathBuf,
    pub http: reqwest::Client,
    /// Everything the daemon wrote to stderr (its log) so far.
    pub log: std::sync::Arc<std::sync::Mutex<String>>,
}

/// A config with two API keys and the given routes (TOML), in `dir`.
pub fn write_config(dir: &Path, extra: &str, routes: &str) -> PathBuf {
    write_config_with(dir, "", extra, routes)
}

/// As `write_config`, with `server` lines added to the `[server]` table.
/// Promotions have no quiet hours unless `extra` sets them, so a test does
/// not depend on the hour it runs at.
pub fn write_config_with(dir: &Path, server: &str, extra: &str, routes: &str) -> PathBuf {
    let path = dir.join("smsgw.toml");
    let quiet = if extra.contains("quiet_hours") { "" } else { "[policy.quiet_hours]\npromotional = \"none\"" };
    let text = format!(
        r#"
[server]
listen = "127.0.0.1:0"
{server}
[store]
path = "{db}"
[numbers]
default_region = "RU"
[log]
level = "warn"
{extra}
{quiet}
[[api_keys]]
name = "test"
key = "{KEY}"
[[api_keys]]
name = "other"
key = "{OTHER_KEY}"
{routes}
"#,
        db = dir.join("smsgw.db").display()
    );
    std::fs::write(&path, text).expect("write config");
    path
}

/// One sim route recording to `record.jsonl` in the test dir.
pub fn sim_route(dir: &Path, name: &str, params: &str, sim: &str) -> String {
    format!(
        "[[routes]]\nname = \"{name}\"\nkind = \"sim\"\n{params}\n[routes.sim]\nrecord = \"{}\"\n{sim}\n",
        dir.join(format!("{name}.jsonl")).display()
    )
}

/// The independent peers in tests/interop (node packages), installed on
/// first use so `cargo test` works on a fresh machine with node and npm.
pub fn interop_dir() -> PathBuf {
    static INSTALL: std::sync::Mutex<bool> = std::sync::Mutex::new(false);
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop");
    let mut done = INSTALL.lock().unwrap_or_else(|p| p.into_inner());
    if !*done && !dir.join("node_modules/smpp").exists() {
        let lock = std::fs::File::create(dir.join(".install.lock")).expect("lock file");
        lock.lock().expect("lock");
        if !dir.join("node_modules/smpp").exists() {
            let ok = Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund"])
                .current_dir(&dir)
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            assert!(ok, "`npm ci` in tests/interop failed: node and npm are needed for the interop tests");
        }
    }
    *done = true;
    dir
}

/// Run the node script `script` (in `tests/interop`) with `args` to its
/// end; the JSON lines it printed, and its whole stdout for messages.
/// Panics with its output when it fails.
pub async fn node_lines(script: &str, args: &[&str]) -> (Vec<Value>, String) {
    let node = tokio::process::Command::new("node")
        .arg(script)
        .args(args)
        .current_dir(interop_dir())
        .kill_on_drop(true)
        .output()
        .await
        .expect("run node");
    let stdout = String::from_utf8_lossy(&node.stdout).into_owned();
    assert!(node.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&node.stderr));
    let lines = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    (lines, stdout)
}

/// The Python of tests/interop/.venv with requirements.txt installed, made on first use. A lock
/// file keeps parallel test processes from building it at the same time.
pub fn venv_python() -> PathBuf {
    static INSTALL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop");
    let venv = dir.join(".venv");
    let python = venv.join("bin/python");
    let requirements = std::fs::read_to_string(dir.join("requirements.txt")).expect("read requirements.txt");
    let marker = venv.join(".installed");
    let installed = || std::fs::read_to_string(&marker).is_ok_and(|m| m == requirements);
    let _guard = INSTALL.lock().unwrap_or_else(|p| p.into_inner());
    if installed() {
        return python;
    }
    std::fs::create_dir_all(&venv).expect("create tests/interop/.venv");
    let lock = std::fs::File::create(venv.join(".install.lock")).expect("lock file");
    lock.lock().expect("lock");
    if installed() {
        return python;
    }
    if !python.exists() {
        run_setup(Command::new("python3").args(["-m", "venv"]).arg(&venv), "python3 -m venv tests/interop/.venv");
    }
    run_setup(
        Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", "--disable-pip-version-check", "-r"])
            .arg(dir.join("requirements.txt")),
        "pip install -r tests/interop/requirements.txt",
    );
    std::fs::write(&marker, &requirements).expect("write the install marker");
    python
}

pub fn run_setup(cmd: &mut Command, what: &str) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e} (python3 with venv is needed)"));
    assert!(
        out.status.success(),
        "{what} failed ({}): python3 with the venv module and PyPI are needed\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_smsgw")
}

impl Daemon {
    pub fn start(dir: &Path) -> Daemon {
        Self::try_start(dir).unwrap_or_else(|e| panic!("daemon did not start: {e}"))
    }

    pub fn try_start(dir: &Path) -> Result<Daemon, String> {
        Self::try_start_with_env(dir, &[])
    }

    pub fn try_start_with_env(dir: &Path, env: &[(&str, String)]) -> Result<Daemon, String> {
        let mut cmd = Command::new(bin());
        cmd.args(["run", "--config"]).arg(dir.join("smsgw.toml")).envs(env.iter().map(|(k, v)| (*k, v.as_str())));
        Self::spawn(cmd, dir)
    }

    /// Start the daemon from `sh` after the shell commands `setup` (such as
    /// `umask 022` or `ulimit -f 8192`), which it inherits.
    pub fn start_after(dir: &Path, setup: &str) -> Daemon {
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg(format!("{setup}\nexec \"$0\" run --config \"$1\"")).arg(bin()).arg(dir.join("smsgw.toml"));
        Self::spawn(cmd, dir).unwrap_or_else(|e| panic!("daemon did not start: {e}"))
    }

    fn spawn(mut cmd: Command, dir: &Path) -> Result<Daemon, String> {
        let mut child =
            cmd.current_dir(dir).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().map_err(|e| e.to_string())?;
        let stdout = child.stdout.take().expect("stdout piped");
        let mut lines = BufReader::new(stdout).lines();
        let url = loop {
            match lines.next() {
                Some(Ok(l)) => {
                    if let Some(u) = l.strip_prefix("smsgw listening on ") {
                        break u.trim().to_string();
                    }
                }
                _ => {
                    let mut err = String::new();
                    if let Some(mut e) = child.stderr.take() {
                        use std::io::Read;
                        let _ = e.read_to_string(&mut err);
                    }
                    let _ = child.wait();
                    return Err(err);
                }
            }
        };
        std::thread::spawn(move || for _ in lines {});
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        if let Some(stderr) = child.stderr.take() {
            let log = log.clone();
            std::thread::spawn(move || {
                for l in BufReader::new(stderr).lines().map_while(Result::ok) {
                    eprintln!("[smsgw] {l}");
                    let mut all = log.lock().unwrap_or_else(|p| p.into_inner());
                    all.push_str(&l);
                    all.push('\n');
                }
            });
        }
        smsgw::client::install_tls_provider();
        Ok(Daemon { child, url, dir: dir.to_path_buf(), http: reqwest::Client::new(), log })
    }

    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.post_raw(path, serde_json::to_vec(body).unwrap(), &[]).await
    }

    pub async fn post_raw(&self, path: &str, body: Vec<u8>, headers: &[(&str, &str)]) -> (u16, Value) {
        let mut req = self.http.post(format!("{}{path}", self.url)).bearer_auth(KEY).body(body);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let resp = self.http.get(format!("{}{path}", self.url)).bearer_auth(KEY).send().await.expect("request");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// `/metrics` as text, scraped with the test key.
    pub async fn metrics(&self) -> String {
        let resp = self.http.get(format!("{}/metrics", self.url)).bearer_auth(KEY).send().await.expect("scrape");
        resp.text().await.expect("metrics text")
    }

    pub async fn send(&self, body: Value) -> i64 {
        let (s, v) = self.post("/v1/messages", &body).await;
        assert_eq!(s, 202, "{v}");
        v["id"].as_i64().expect("id")
    }

    pub async fn message(&self, id: i64) -> Value {
        let (s, v) = self.get(&format!("/v1/messages/{id}")).await;
        assert_eq!(s, 200, "{v}");
        v
    }

    /// Poll until the message has `status` (panics after `secs`).
    pub async fn wait_status(&self, id: i64, status: &str, secs: u64) -> Value {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let v = self.message(id).await;
            if v["status"] == status {
                return v;
            }
            assert!(Instant::now() < deadline, "message {id} never became {status}: {v:#}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Poll /v1/queue until `pred` holds on `by_status`.
    pub async fn wait_counts(&self, secs: u64, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let (_, q) = self.get("/v1/queue").await;
            if pred(&q["by_status"]) {
                return q;
            }
            assert!(Instant::now() < deadline, "never reached {what}: {q:#}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The daemon's log so far.
    pub fn log_text(&self) -> String {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Send a signal by name (HUP, TERM...).
    pub fn signal(&self, sig: &str) {
        Command::new("kill").arg(format!("-{sig}")).arg(self.child.id().to_string()).status().expect("kill");
    }

    pub fn kill9(mut self) {
        self.child.kill().expect("kill -9");
        self.child.wait().expect("reap");
    }

    /// SIGTERM and wait; returns the exit status code.
    pub fn terminate(mut self) -> Option<i32> {
        Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status().expect("kill");
        self.child.wait().expect("wait").code()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The sim route's record: one JSON object per submitted part.
pub fn records(dir: &Path, route: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(dir.join(format!("{route}.jsonl"))).unwrap_or_default();
    text.lines().filter(|l| !l.trim().is_empty()).map(|l| serde_json::from_str(l).expect("record line")).collect()
}

pub fn msg(to: &str, text: &str) -> Value {
    json!({ "to": to, "text": text })
}

pub fn in_secs(s: f64) -> String {
    (chrono::Utc::now() + chrono::Duration::milliseconds((s * 1000.0) as i64))
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn chromium() -> Option<&'static str> {
    ["chromium", "chromium-browser"]
        .into_iter()
        .find(|b| Command::new(b).arg("--version").output().is_ok_and(|o| o.status.success()))
}

/// The status page of `d` as headless Chromium renders it (with the API
/// key), or None where no Chromium is installed and SMSGW_BROWSER_TESTS is
/// not set (CI installs it and sets it).
pub async fn status_page_dom(d: &Daemon) -> Option<String> {
    status_page_dom_as(d, KEY).await
}

/// As `status_page_dom`, with the page given `key` (each key its own
/// browser profile, so nothing one saw is left in the other's storage).
pub async fn status_page_dom_as(d: &Daemon, key: &str) -> Option<String> {
    let required = std::env::var_os("SMSGW_BROWSER_TESTS").is_some();
    let Some(browser) = chromium() else {
        assert!(!required, "SMSGW_BROWSER_TESTS is set but no chromium is installed");
        eprintln!("no chromium: the in-browser half of this test did not run");
        return None;
    };
    let profile = d.dir.join(format!("chromium-profile-{}", key.split('-').next().unwrap_or("key")));
    let url = format!("{}/#key={key}", d.url);
    let out = tokio::task::spawn_blocking(move || {
        Command::new(browser)
            .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"])
            .args(["--disable-background-networking", "--disable-component-update", "--disable-sync"])
            .arg(format!("--user-data-dir={}", profile.display()))
            .args(["--virtual-time-budget=5000", "--dump-dom", &url])
            .output()
            .expect("run chromium")
    })
    .await
    .expect("chromium task");
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The value of the first sample of `name` with these labels in a scrape
/// (a histogram gives its count).
pub fn sample(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scrape.samples.iter().find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v))).map(
        |s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            prometheus_parse::Value::Histogram(ref h) => h.iter().map(|b| b.count).fold(0.0, f64::max),
            prometheus_parse::Value::Summary(_) => f64::NAN,
        },
    )
}
