//! The `smsgw` command: the daemon (`run`), a client of a running daemon
//! (`send`, `status`), config validation (`config check`) and the load
//! generator (`bench`).

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use serde_json::{Value, json};
use smsgw::client::{Client, ClientError};
use smsgw::config::{self, LogFormat};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "smsgw",
    version,
    about = "On-premise SMS gateway: GSM modems and SMPP carriers behind one durable HTTP API"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(clap::Args, Clone)]
struct Remote {
    /// Base URL of the daemon's API.
    #[arg(long, env = "SMSGW_URL", default_value = "http://127.0.0.1:8080")]
    url: String,
    /// API key (sent as 'Authorization: Bearer <key>').
    #[arg(long, env = "SMSGW_KEY", hide_env_values = true)]
    key: String,
}

#[derive(Clone, Copy, ValueEnum)]
enum PriorityArg {
    Otp,
    Transactional,
    Promotional,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the gateway daemon. Without --config it runs the built-in demo:
    /// a simulated route, ./smsgw-demo.db and a demo API key on 127.0.0.1:8080.
    Run {
        /// The TOML config file (see firmware-config/smsgw.example.toml).
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Send a message through a running daemon and print its id (and, with
    /// --wait, follow it to a final status).
    Send {
        #[command(flatten)]
        remote: Remote,
        /// Recipient: E.164 or national form (read with the daemon's default region).
        #[arg(long)]
        to: String,
        #[arg(long)]
        text: String,
        /// Sender name or number.
        #[arg(long)]
        from: Option<String>,
        #[arg(long, value_enum)]
        priority: Option<PriorityArg>,
        /// Send through this route instead of choosing by prefix.
        #[arg(long)]
        route: Option<String>,
        /// Wait until the message reaches a final status and print it.
        #[arg(long)]
        wait: bool,
        /// Give up waiting after this many seconds.
        #[arg(long, default_value_t = 120)]
        timeout: u64,
    },
    /// Show a message's story (with ID), or the queue and the routes.
    Status {
        #[command(flatten)]
        remote: Remote,
        /// Message id.
        id: Option<i64>,
        /// Print the raw JSON.
        #[arg(long)]
        json: bool,
    },
    /// Pause a route (it sends nothing until resumed, across restarts;
    /// receipts and replies still come in) or resume it. Needs an admin key.
    Route {
        #[command(subcommand)]
        command: RouteCmd,
    },
    /// Configuration tools.
    Config {
        #[command(subcommand)]
        command: ConfigCmd,
    },
    /// Store maintenance, with the daemon stopped (it holds the store's lock).
    Store {
        #[command(subcommand)]
        command: StoreCmd,
    },
    /// Load-test a daemon over HTTP and report messages/s and latency.
    Bench(smsgw::bench::BenchArgs),
    /// Modem tools.
    Modem {
        #[command(subcommand)]
        command: ModemCmd,
    },
    /// Run a simulated peer for tests and dry runs.
    Simulate {
        #[command(subcommand)]
        peer: SimulateCmd,
    },
}

#[derive(Subcommand)]
enum RouteCmd {
    /// Stop sending through the route; its queue waits (or fails over, with
    /// `failover = true`).
    Pause {
        #[command(flatten)]
        remote: Remote,
        /// The route's name, as `smsgw status` lists it.
        name: String,
        /// Why, shown with the pause (up to 200 characters).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Send through the route again.
    Resume {
        #[command(flatten)]
        remote: Remote,
        name: String,
    },
}

#[derive(Subcommand)]
enum ModemCmd {
    /// Open a serial port, identify the modem, read its SIM, signal and
    /// network, and print the profile smsgw would use. Changes nothing on
    /// the modem. Stop smsgw first if it holds the port.
    Probe {
        /// The port, e.g. /dev/ttyUSB2 or /dev/smsgw/12d1-1001-...-if02.
        port: String,
        #[arg(long, default_value_t = 115_200)]
        baud: u32,
        /// A directory of extra modem profiles.
        #[arg(long)]
        profiles_dir: Option<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum SimulateCmd {
    /// An SMPP 3.4 SMSC (carrier) on a TCP port: accepts binds, answers
    /// submits, sends receipts, injects faults. Type `inbound FROM TO TEXT`
    /// on standard input to deliver a message to the bound gateway.
    Smsc(SmscArgs),
    /// Virtual GSM modems on pseudo-terminals, each behind a stable link
    /// (DIR/modem0, DIR/modem1, ...) that smsgw or any modem software opens
    /// like /dev/ttyUSB2. Drive the network side on standard input
    /// (`0 deliver +79161234567 hello`, `1 hang`, `1 unplug`, ...) or over
    /// the --control HTTP port.
    Modem(ModemArgs),
}

#[derive(clap::Args)]
struct ModemArgs {
    /// Directory for the links.
    #[arg(long, default_value = "vmodem")]
    dir: PathBuf,
    /// How many modems.
    #[arg(long, default_value_t = 1)]
    count: usize,
    /// Behave like this model: sim800, sim7670g, sim7600, ec25, huawei-e1752,
    /// huawei-e3372, wavecom, mc55i, telit, zte, nokia.
    #[arg(long)]
    profile: Option<String>,
    /// A TOML file of modem settings (keys as in ModemConfig); flags override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// The SIM asks for this PIN.
    #[arg(long)]
    pin: Option<String>,
    /// Time each send takes, from the PDU to the +CMGS answer.
    #[arg(long, default_value_t = 3000)]
    send_delay_ms: u64,
    /// Time between the parts of a long incoming message.
    #[arg(long, default_value_t = 500)]
    part_interval_ms: u64,
    /// A status report follows each send that asked for one after this long
    /// (0: only on command).
    #[arg(long, default_value_t = 2000)]
    report_delay_ms: u64,
    /// Fraction (0..1) of those reports that say the message failed.
    #[arg(long, default_value_t = 0.0)]
    report_failure: f64,
    /// Serve the control API on this address (GET /modems, GET /modems/N/sent,
    /// POST /modems/N with {"do":"deliver","from":..,"text":..} and the like).
    #[arg(long)]
    control: Option<String>,
}

#[derive(clap::Args)]
struct SmscArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:2775")]
    listen: String,
    /// A TOML file of simulator settings (keys as in SmscConfig); flags override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Accepted credentials as SYSTEM_ID:PASSWORD (repeatable); none accepts any bind.
    #[arg(long = "user")]
    users: Vec<String>,
    /// Submits per second over all binds; above it the answer is ESME_RTHROTTLED.
    #[arg(long)]
    max_rate: Option<f64>,
    /// Delay before each submit_sm_resp.
    #[arg(long)]
    submit_latency_ms: Option<u64>,
    /// Time until each delivery receipt.
    #[arg(long)]
    receipt_delay_ms: Option<u64>,
    /// Fraction (0..1) of receipts that say UNDELIV.
    #[arg(long)]
    undelivered: Option<f64>,
    /// Message ids in hex or decimal.
    #[arg(long, value_parser = ["hex", "decimal"])]
    id_format: Option<String>,
    /// Send each receipt before its submit_sm_resp.
    #[arg(long)]
    receipt_first: bool,
    /// Drop the connection at every Nth submit.
    #[arg(long)]
    drop_every: Option<u64>,
    /// Drop each connection T seconds after its bind.
    #[arg(long)]
    drop_every_secs: Option<u64>,
    /// Stop answering enquire_link.
    #[arg(long)]
    ignore_enquire_link: bool,
}

#[derive(Subcommand)]
enum StoreCmd {
    /// Delete what the [store] retention keys no longer keep, now, and give
    /// the space back to the file system. The daemon does this on its own
    /// every store.prune_every_minutes.
    Prune {
        /// The TOML config file; without it, the demo store ./smsgw-demo.db.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Prune as if the clock read this time (RFC 3339), to see what a
        /// later prune will take.
        #[arg(long)]
        as_of: Option<String>,
    },
    /// Rewrite the whole file once so that later prunes can shrink it (for a
    /// store made before smsgw could shrink its file; needs free space for a copy).
    Vacuum {
        /// The TOML config file; without it, the demo store ./smsgw-demo.db.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum ConfigCmd {
    /// Validate a config file; every problem names the key and why.
    Check { file: PathBuf },
}

/// Logs go to stderr: JSON when asked, straight to the journal (with
/// structured fields) when systemd started us, else text for a terminal.
fn init_logging(level: &str, format: LogFormat) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = tracing_subscriber::EnvFilter::try_from_env("SMSGW_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    if format == LogFormat::Json {
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).json().init();
        return;
    }
    if std::env::var_os("JOURNAL_STREAM").is_some()
        && let Ok(journal) = tracing_journald::layer()
    {
        tracing_subscriber::registry().with(filter).with(journal.with_syslog_identifier("smsgw".into())).init();
        return;
    }
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}

fn load(path: Option<&Path>) -> Result<(smsgw::channel::spec::Loaded, bool)> {
    match path {
        Some(p) => Ok((smsgw::channel::spec::load_file(p).map_err(|e| anyhow::anyhow!("{e}"))?, false)),
        None => Ok((
            smsgw::channel::spec::load_str(config::DEMO_TOML, "built-in demo config", Path::new("."))
                .map_err(|e| anyhow::anyhow!("{e}"))?,
            true,
        )),
    }
}

async fn run(config: Option<PathBuf>) -> Result<()> {
    let (loaded, demo) = load(config.as_deref())?;
    init_logging(&loaded.config.log.level, loaded.config.log.format);
    // The demo key is public (it is in the README); printing it is the point.
    let demo_key = demo.then(|| loaded.keys.first().map(|k| k.secret.expose().to_string())).flatten();
    smsgw::daemon::run(loaded, config, |addr| {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "smsgw listening on http://{addr}");
        if let Some(key) = demo_key {
            let _ = writeln!(out, "demo mode: simulated route, store ./smsgw-demo.db, API key: {key}");
            let _ = writeln!(
                out,
                "try: curl -s -H 'Authorization: Bearer {key}' -d '{{\"to\":\"+79161234567\",\"text\":\"Hello\"}}' http://{addr}/v1/messages"
            );
        }
        let _ = out.flush();
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e}"))
}

fn final_status(v: &Value) -> bool {
    matches!(v["status"].as_str(), Some("delivered" | "undelivered" | "expired" | "failed" | "cancelled"))
}

fn print_message(v: &Value) {
    println!(
        "message {}  to {}  status {}  route {}  {} segment(s) {}",
        v["id"],
        v["to"].as_str().unwrap_or("?"),
        v["status"].as_str().unwrap_or("?"),
        v["route"].as_str().unwrap_or("?"),
        v["segments"],
        v["encoding"].as_str().unwrap_or("?")
    );
    if let Some(e) = v.get("error").filter(|e| !e.is_null()) {
        println!("  error {}: {}", e["code"].as_str().unwrap_or("?"), e["text"].as_str().unwrap_or(""));
    }
    for h in v["history"].as_array().into_iter().flatten() {
        println!(
            "  {}  {:<11} {}",
            h["at"].as_str().unwrap_or("?"),
            h["status"].as_str().unwrap_or("?"),
            h["detail"].as_str().unwrap_or("")
        );
    }
}

fn explain(e: ClientError) -> anyhow::Error {
    match &e {
        ClientError::Refused { body, .. } => {
            let mut msg = e.to_string();
            for f in body["errors"].as_array().into_iter().flatten() {
                msg.push_str(&format!(
                    "\n  {}: {}",
                    f["field"].as_str().unwrap_or("?"),
                    f["message"].as_str().unwrap_or("")
                ));
            }
            anyhow::anyhow!(msg)
        }
        ClientError::Connect { .. } => anyhow::anyhow!(e),
    }
}

#[allow(clippy::too_many_arguments)]
async fn send(
    remote: Remote,
    to: String,
    text: String,
    from: Option<String>,
    priority: Option<PriorityArg>,
    route: Option<String>,
    wait: bool,
    timeout: u64,
) -> Result<()> {
    let client = Client::new(&remote.url, &remote.key);
    let mut body = json!({ "to": to, "text": text });
    if let Some(f) = from {
        body["from"] = json!(f);
    }
    if let Some(p) = priority {
        body["priority"] = json!(match p {
            PriorityArg::Otp => "otp",
            PriorityArg::Transactional => "transactional",
            PriorityArg::Promotional => "promotional",
        });
    }
    if let Some(r) = route {
        body["route"] = json!(r);
    }
    let accepted = client.post("/v1/messages", &body).await.map_err(explain)?;
    let id = accepted["id"].as_i64().context("the daemon's answer has no id")?;
    println!(
        "accepted: id {id}, {} segment(s) as {}",
        accepted["segments"],
        accepted["encoding"].as_str().unwrap_or("?")
    );
    if !wait {
        return Ok(());
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout);
    loop {
        let v = client.get(&format!("/v1/messages/{id}")).await.map_err(explain)?;
        if final_status(&v) {
            print_message(&v);
            if v["status"] != "delivered" {
                bail!("message {id} ended {}", v["status"].as_str().unwrap_or("?"));
            }
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            print_message(&v);
            bail!("message {id} is still {} after {timeout} s", v["status"].as_str().unwrap_or("?"));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Pause the route `name` (with `pause`, the request's body) or resume it,
/// and print what it is now.
async fn route_pause(remote: Remote, name: &str, pause: Option<Value>) -> Result<()> {
    let client = Client::new(&remote.url, &remote.key);
    // A route's name is free text in the config: encoded as one path segment.
    let path = |what: &str| {
        let mut url = url::Url::parse("http://smsgw/v1/routes").expect("a fixed URL");
        url.path_segments_mut().expect("an http URL has a path").push(name).push(what);
        url.path().to_string()
    };
    let r = match &pause {
        Some(body) => client.post(&path("pause"), body).await,
        None => client.post(&path("resume"), &json!({})).await,
    }
    .map_err(explain)?;
    match paused_text(&r["paused"]) {
        Some(p) => println!("route {name}: {p}"),
        None => println!("route {name}: sending"),
    }
    Ok(())
}

/// A route's pause as one line, when it is paused.
fn paused_text(p: &Value) -> Option<String> {
    let since = p["at"].as_str()?;
    let by = p["by"].as_str().unwrap_or("?");
    let reason = p["reason"].as_str().map(|r| format!(": {r}")).unwrap_or_default();
    Some(format!("paused since {since} by key {by}{reason}"))
}

async fn status(remote: Remote, id: Option<i64>, as_json: bool) -> Result<()> {
    let client = Client::new(&remote.url, &remote.key);
    if let Some(id) = id {
        let v = client.get(&format!("/v1/messages/{id}")).await.map_err(explain)?;
        if as_json {
            println!("{}", serde_json::to_string_pretty(&v)?);
        } else {
            print_message(&v);
        }
        return Ok(());
    }
    let q = client.get("/v1/queue").await.map_err(explain)?;
    let r = client.get("/v1/routes").await.map_err(explain)?;
    if as_json {
        println!("{}", serde_json::to_string_pretty(&json!({ "queue": q, "routes": r["routes"] }))?);
        return Ok(());
    }
    println!("messages by status:");
    for (k, v) in q["by_status"].as_object().into_iter().flatten() {
        println!("  {k:<12} {v}");
    }
    if let Some(t) = q["oldest_queued_at"].as_str() {
        println!("  oldest queued since {t}");
    }
    println!("routes:");
    for route in r["routes"].as_array().into_iter().flatten() {
        let queued: u64 = route["queued"].as_object().into_iter().flatten().filter_map(|(_, v)| v.as_u64()).sum();
        println!(
            "  {:<12} {:<6} {:<9} rate {:<8} in flight {:<4} queued {:<8} sent {} failed {} retried {}{}{}",
            route["name"].as_str().unwrap_or("?"),
            route["kind"].as_str().unwrap_or("?"),
            route["state"].as_str().unwrap_or("?"),
            route["rate"].as_f64().map(|r| format!("{r}/s")).unwrap_or_else(|| "none".into()),
            route["in_flight"],
            queued,
            route["sent"],
            route["failed"],
            route["retried"],
            paused_text(&route["paused"]).map(|p| format!("  {p}")).unwrap_or_default(),
            route["last_error"].as_str().map(|e| format!("  last error: {e}")).unwrap_or_default()
        );
    }
    Ok(())
}

async fn simulate_smsc(a: SmscArgs) -> Result<()> {
    use smsgw::simulate::smsc::{IdFormat, Smsc, SmscConfig};
    use tokio::io::AsyncBufReadExt;
    let mut cfg: SmscConfig = match &a.config {
        Some(f) => {
            let text = std::fs::read_to_string(f).with_context(|| format!("cannot read {}", f.display()))?;
            toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", f.display()))?
        }
        None => SmscConfig::default(),
    };
    for u in &a.users {
        let (id, pw) = u.split_once(':').with_context(|| format!("--user {u:?}: expected SYSTEM_ID:PASSWORD"))?;
        cfg.credentials.push((id.to_string(), pw.to_string()));
    }
    cfg.max_rate = a.max_rate.or(cfg.max_rate);
    cfg.submit_latency_ms = a.submit_latency_ms.unwrap_or(cfg.submit_latency_ms);
    cfg.receipt_delay_ms = a.receipt_delay_ms.unwrap_or(cfg.receipt_delay_ms);
    cfg.undelivered_fraction = a.undelivered.unwrap_or(cfg.undelivered_fraction);
    if let Some(f) = &a.id_format {
        cfg.id_format = if f == "hex" { IdFormat::Hex } else { IdFormat::Decimal };
    }
    cfg.receipt_before_resp |= a.receipt_first;
    cfg.drop_every_n = a.drop_every.or(cfg.drop_every_n);
    cfg.drop_every_secs = a.drop_every_secs.or(cfg.drop_every_secs);
    cfg.ignore_enquire_link |= a.ignore_enquire_link;
    let listener =
        tokio::net::TcpListener::bind(&a.listen).await.with_context(|| format!("cannot listen on {}", a.listen))?;
    let smsc = Smsc::start(cfg, listener).await;
    println!("SMSC simulator listening on {}", smsc.local_addr());
    println!("type: inbound FROM TO TEXT   to deliver a message to the bound gateway");
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut shown = 0;
    let mut stdin_open = true;
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let events = smsc.events();
                for e in events.iter().skip(shown) {
                    println!("{e}");
                }
                shown = events.len();
            }
            line = lines.next_line(), if stdin_open => match line {
                Ok(Some(l)) => {
                    let mut words = l.splitn(4, ' ');
                    match (words.next(), words.next(), words.next(), words.next()) {
                        (Some("inbound"), Some(from), Some(to), Some(text)) => {
                            if let Err(e) = smsc.inject_inbound(from, to, text).await {
                                eprintln!("cannot deliver: {e}");
                            }
                        }
                        (Some(""), ..) | (None, ..) => {}
                        _ => eprintln!("unknown command; try: inbound FROM TO TEXT"),
                    }
                }
                // Standard input closed (a service, a pipe): keep serving.
                _ => stdin_open = false,
            },
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    smsc.shutdown().await;
    Ok(())
}

async fn simulate_modem(a: ModemArgs) -> Result<()> {
    use smsgw::simulate::modem::ModemConfig;
    use smsgw::simulate::modem::control::{Action, Bank, BankConfig, router};
    use tokio::io::AsyncBufReadExt;
    let mut modem: ModemConfig = match (&a.config, &a.profile) {
        (Some(f), _) => {
            let text = std::fs::read_to_string(f).with_context(|| format!("cannot read {}", f.display()))?;
            toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", f.display()))?
        }
        (None, Some(name)) => {
            ModemConfig::profile(name).with_context(|| format!("--profile {name:?}: no such profile"))?
        }
        (None, None) => ModemConfig::default(),
    };
    if a.config.is_some()
        && let Some(name) = &a.profile
    {
        bail!("--profile {name:?} and --config: give one of them");
    }
    modem.pin = a.pin.or(modem.pin);
    modem.send_delay_ms = a.send_delay_ms;
    modem.part_interval_ms = a.part_interval_ms;
    if !(0.0..=1.0).contains(&a.report_failure) {
        bail!("--report-failure {}: must be between 0 and 1", a.report_failure);
    }
    let cfg = BankConfig {
        modem,
        count: a.count,
        dir: a.dir,
        report_after: (a.report_delay_ms > 0).then(|| Duration::from_millis(a.report_delay_ms)),
        report_failure_fraction: a.report_failure,
    };
    let bank = std::sync::Arc::new(Bank::start(&cfg).await.context("cannot create the virtual modems")?);
    for m in bank.view() {
        let device = m.device.map(|d| d.display().to_string()).unwrap_or_default();
        println!("modem {}: {} -> {} (IMEI {})", m.index, m.link.display(), device, m.imei);
    }
    if let Some(addr) = &a.control {
        let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))?;
        println!("control API on http://{}", listener.local_addr()?);
        let app = router(bank.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
    }
    println!("type: N deliver FROM TEXT | N report MR TO STATUS | N fail COUNT CODE | N hang | N resume");
    println!("      N garbage | N unplug | N replug | N coverage on|off | N signal CSQ");
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut stdin_open = true;
    loop {
        tokio::select! {
            line = lines.next_line(), if stdin_open => match line {
                Ok(Some(l)) if l.trim().is_empty() => {}
                Ok(Some(l)) => {
                    let (n, rest) = l.trim().split_once(' ').unwrap_or((l.trim(), ""));
                    let done = match n.parse::<usize>() {
                        Ok(i) => match Action::parse(rest) {
                            Ok(action) => bank.apply(i, &action).await,
                            Err(e) => Err(e),
                        },
                        Err(_) => Err(format!("{n:?}: expected the modem's number first")),
                    };
                    if let Err(e) = done {
                        eprintln!("{e}");
                    }
                }
                // Standard input closed (a service, a pipe): keep serving.
                _ => stdin_open = false,
            },
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    match std::sync::Arc::try_unwrap(bank) {
        Ok(bank) => bank.shutdown().await,
        Err(bank) => drop(bank),
    }
    Ok(())
}

async fn modem_probe(port: &str, baud: u32, profiles_dir: Option<&Path>, as_json: bool) -> Result<()> {
    use smsgw::channel::modem::{probe, profile};
    let profiles = profile::load(profiles_dir).map_err(|e| anyhow::anyhow!(e))?;
    let p = probe::probe(port, baud, &profiles).await.map_err(|e| anyhow::anyhow!(e))?;
    if as_json {
        println!("{}", serde_json::to_string_pretty(&p)?);
        return Ok(());
    }
    let i = &p.info;
    let show = |v: &Option<String>| v.clone().unwrap_or_else(|| "?".into());
    println!("port          {}", i.port);
    println!("modem         {} {} (firmware {})", show(&i.manufacturer), show(&i.model), show(&p.revision));
    println!("IMEI          {}", show(&i.imei));
    println!("SIM           {}  IMSI {}  ICCID {}", show(&p.sim), show(&i.imsi), show(&i.iccid));
    if let Some(n) = &i.number {
        println!("number        {n}");
    }
    let bars = i.signal_bars.map(|b| "▮".repeat(b as usize) + &"▯".repeat(5 - b as usize)).unwrap_or_default();
    println!("signal        {} {}", i.signal_dbm.map(|d| format!("{d} dBm")).unwrap_or_else(|| "unknown".into()), bars);
    let reg = match p.registration {
        Some(1) => "registered (home)",
        Some(5) => "registered (roaming)",
        _ => "not registered",
    };
    println!("network       {reg}, operator {}", show(&i.operator));
    println!("SMSC          {}", show(&i.smsc));
    println!("profile       {}", show(&i.profile));
    Ok(())
}

fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

async fn store_prune(config: Option<PathBuf>, as_of: Option<String>) -> Result<()> {
    let (loaded, _) = load(config.as_deref())?;
    let cfg = &loaded.config.store;
    let now = match as_of {
        None => smsgw::message::now_ms(),
        Some(t) => {
            let t = chrono::DateTime::parse_from_rfc3339(&t)
                .with_context(|| format!("--as-of {t:?}: expected an RFC 3339 time such as 2030-01-31T12:00:00Z"))?;
            smsgw::message::from_datetime(&t.with_timezone(&chrono::Utc))
        }
    };
    let before = file_size(&cfg.path);
    let store = smsgw::store::Store::open(&cfg.path)?;
    let pruned = store.prune(smsgw::store::Retention::from_config(cfg), now).await;
    let shrinks = store.can_shrink().await;
    store.close().await;
    let pruned = pruned?;
    println!(
        "pruned {} finished messages, {} inbound messages, {} orphan delivery reports, {} posted events and rule runs",
        pruned.messages, pruned.inbound, pruned.receipts, pruned.events
    );
    println!("{}: {before} bytes before, {} bytes after", cfg.path.display(), file_size(&cfg.path));
    if !shrinks? {
        println!("this file cannot shrink after a prune; run `smsgw store vacuum` once (daemon stopped)");
    }
    Ok(())
}

async fn store_vacuum(config: Option<PathBuf>) -> Result<()> {
    let (loaded, _) = load(config.as_deref())?;
    let path = &loaded.config.store.path;
    let before = file_size(path);
    let store = smsgw::store::Store::open(path)?;
    let done = store.vacuum().await;
    store.close().await;
    done?;
    println!("{}: {before} bytes before, {} bytes after; later prunes shrink it", path.display(), file_size(path));
    Ok(())
}

fn config_check(file: &Path) -> Result<()> {
    match smsgw::channel::spec::load_file(file) {
        Ok(l) => {
            println!(
                "{}: OK ({} route(s), {} API key(s), listen {})",
                file.display(),
                l.config.routes.len(),
                l.keys.len(),
                l.listen
            );
            for n in &l.notes {
                println!("note: {n}");
            }
            Ok(())
        }
        Err(e) => {
            for p in &e.problems {
                eprintln!("{p}");
            }
            bail!("{}: {} problem(s)", file.display(), e.problems.len())
        }
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Run { config } => run(config).await,
        Cmd::Send { remote, to, text, from, priority, route, wait, timeout } => {
            send(remote, to, text, from, priority, route, wait, timeout).await
        }
        Cmd::Status { remote, id, json } => status(remote, id, json).await,
        Cmd::Route { command: RouteCmd::Pause { remote, name, reason } } => {
            route_pause(remote, &name, Some(json!({ "reason": reason }))).await
        }
        Cmd::Route { command: RouteCmd::Resume { remote, name } } => route_pause(remote, &name, None).await,
        Cmd::Config { command: ConfigCmd::Check { file } } => config_check(&file),
        Cmd::Store { command: StoreCmd::Prune { config, as_of } } => store_prune(config, as_of).await,
        Cmd::Store { command: StoreCmd::Vacuum { config } } => store_vacuum(config).await,
        Cmd::Bench(args) => smsgw::bench::run(args).await.map_err(|e| anyhow::anyhow!(e)),
        Cmd::Simulate { peer: SimulateCmd::Smsc(args) } => simulate_smsc(args).await,
        Cmd::Simulate { peer: SimulateCmd::Modem(args) } => simulate_modem(args).await,
        Cmd::Modem { command: ModemCmd::Probe { port, baud, profiles_dir, json } } => {
            modem_probe(&port, baud, profiles_dir.as_deref(), json).await
        }
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("smsgw: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
