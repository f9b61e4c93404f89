//! `smsgw bench`: a load generator that drives a real daemon over HTTP with
//! concurrent keep-alive connections and reports accepted messages/s and
//! latency percentiles, plus the rate at which the dispatcher drains a
//! backlog into a route. Without `--url` it starts its own daemon (this
//! binary) on a temporary database with an unlimited simulated route.
//!
//! The `store` scenario stands apart: it fills a store with millions of
//! messages, times the scrapes that read its counts, and measures the file
//! before and after a prune. So does `webhooks`: a receiver in this process
//! takes a backlog of outbox events from a private daemon (events/s), and
//! submit throughput is compared with a webhook subscription and without.
//! `events` posts batches of trigger events with a rule on each, and
//! `timers` holds a million pending rule timers, then fires a slice of them.
//! `smpp-server` and `smpp-route` load the SMPP server from binds of its own
//! and the API's SMPP route into the SMSC simulator (`bench/smpp.rs`).
//! `otp-backlog` times one-time codes from request to `submit_sm` while a
//! promotional backlog drains through a rate-limited SMPP route (`bench/otp.rs`).

use crate::client::Client;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

mod otp;
mod smpp;

#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Daemon to drive; without it a private daemon is started.
    #[arg(long, env = "SMSGW_URL")]
    pub url: Option<String>,
    /// API key for --url.
    #[arg(long, env = "SMSGW_KEY")]
    pub key: Option<String>,
    /// Concurrent keep-alive connections.
    #[arg(long, default_value_t = 64)]
    pub connections: usize,
    /// Seconds each throughput scenario runs.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Offered rate (messages/s) for the latency scenario.
    #[arg(long, default_value_t = 2000)]
    pub rate: u64,
    /// Messages in the dispatch scenario's backlog.
    #[arg(long, default_value_t = 100_000)]
    pub backlog: usize,
    /// Also fill this many queued messages and measure memory and restart
    /// time (private daemon only).
    #[arg(long, default_value_t = 0)]
    pub queued: usize,
    /// Scenarios to run (single, batch, latency, dispatch; and, not in the
    /// default set: modems, which runs --seconds on virtual modems that take
    /// --modem-send-ms per SMS, store, which fills a store with
    /// --store-messages and times /metrics, /v1/queue and a prune, and
    /// webhooks, which delivers --webhook-events to a receiver in this
    /// process and compares batch submits with webhooks on and off, each
    /// --webhook-runs times, alternated; events, which posts batches of 100
    /// and 1000 events to POST /v1/events with one rule matching each, the
    /// median of --webhook-runs runs of --seconds; and timers, which fills a store with
    /// --timers pending rule timers, reports the daemon's RSS and the stats
    /// reads over them, then brings --timer-slice due at once and measures
    /// the firing rate and the lag from due to submit); smpp-server, which
    /// submits --messages submit_sm over four transceiver binds of
    /// --smpp-window each to the daemon's SMPP server and takes their
    /// receipts; and smpp-route, which posts --messages through the API into
    /// an SMPP route to the SMSC simulator, single and in batches of 100 with
    /// receipts, then single with none asked;
    /// otp-backlog, which queues --backlog promotions on an SMPP route limited
    /// to --route-rate and, while they drain, sends single otp messages at
    /// --otp-rate for --seconds, timing each from its request to its submit_sm).
    #[arg(long, value_delimiter = ',', default_value = "single,batch,latency,dispatch")]
    pub only: Vec<String>,
    /// Virtual modems in the modems scenario.
    #[arg(long, default_value_t = 8)]
    pub modems: usize,
    /// Time each virtual modem takes per SMS in the modems scenario.
    #[arg(long, default_value_t = 1000)]
    pub modem_send_ms: u64,
    /// Messages the store scenario fills its store with.
    #[arg(long, default_value_t = 10_000_000)]
    pub store_messages: i64,
    /// Outbox events (two per message: submitted, delivered) the webhooks
    /// scenario delivers.
    #[arg(long, default_value_t = 20_000)]
    pub webhook_events: usize,
    /// Runs of each webhooks (and events) measurement; the median is reported.
    #[arg(long, default_value_t = 3)]
    pub webhook_runs: usize,
    /// Pending rule timers the timers scenario fills its store with.
    #[arg(long, default_value_t = 1_000_000)]
    pub timers: i64,
    /// Timers the timers scenario brings due, spread over --timer-spread-ms.
    #[arg(long, default_value_t = 100_000)]
    pub timer_slice: i64,
    /// How long the slice's due times spread over.
    /// (The default brings 100,000 due at 10,000 a second.)
    #[arg(long, default_value_t = 10_000)]
    pub timer_spread_ms: i64,
    /// Messages each SMPP scenario (smpp-server, smpp-route) sends.
    #[arg(long, default_value_t = 100_000)]
    pub messages: usize,
    /// submit_sm awaiting their answer on each bind of the smpp-server scenario.
    #[arg(long, default_value_t = 128)]
    pub smpp_window: usize,
    /// Messages/s of the otp-backlog scenario's SMPP route.
    #[arg(long, default_value_t = 500.0)]
    pub route_rate: f64,
    /// Burst of the otp-backlog scenario's SMPP route (none by default).
    #[arg(long)]
    pub route_burst: Option<u32>,
    /// One-time codes/s the otp-backlog scenario sends, one request at a time.
    #[arg(long, default_value_t = 50.0)]
    pub otp_rate: f64,
}

const BENCH_KEY: &str = "bench-key-0123456789abcdef";

struct Private {
    child: Child,
    dir: PathBuf,
    url: String,
}

/// The route of the HTTP and dispatch scenarios: simulated, unlimited.
const SIM_ROUTE: &str =
    "[[routes]]\nname = \"sim\"\nkind = \"sim\"\nconcurrency = 512\n[routes.sim]\ndelivery_delay_ms = 100\n";

impl Private {
    fn start(dir: PathBuf) -> Result<Private, String> {
        Self::start_with(dir, SIM_ROUTE)
    }

    fn start_with(dir: PathBuf, routes: &str) -> Result<Private, String> {
        let config = dir.join("bench.toml");
        std::fs::write(
            &config,
            format!(
                "[server]\nlisten = \"127.0.0.1:0\"\n[store]\npath = {:?}\n[numbers]\ndefault_region = \"RU\"\n\
                 [log]\nlevel = \"warn\"\n[[api_keys]]\nname = \"bench\"\nkey = \"{BENCH_KEY}\"\n{routes}",
                dir.join("bench.db")
            ),
        )
        .map_err(|e| format!("cannot write {}: {e}", config.display()))?;
        let exe = std::env::current_exe().map_err(|e| format!("cannot find this binary: {e}"))?;
        let mut child = Command::new(exe)
            .args(["run", "--config"])
            .arg(&config)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start the daemon: {e}"))?;
        let stdout = child.stdout.take().ok_or("no stdout from the daemon")?;
        let mut lines = BufReader::new(stdout).lines();
        let url = loop {
            match lines.next() {
                Some(Ok(l)) => {
                    if let Some(rest) = l.split("listening on ").nth(1) {
                        break rest.trim().to_string();
                    }
                }
                _ => return Err("the daemon exited before it listened".into()),
            }
        };
        std::thread::spawn(move || for _ in lines {});
        Ok(Private { child, dir, url })
    }

    fn stop(mut self) {
        unsafe_free_kill(&self.child, "TERM");
        let _ = self.child.wait();
    }
}

/// Send a signal by name with the system's `kill`, which keeps this crate
/// free of unsafe code.
fn unsafe_free_kill(child: &Child, sig: &str) {
    let _ = Command::new("kill").arg(format!("-{sig}")).arg(child.id().to_string()).status();
}

fn recipient(i: u64) -> String {
    format!("+7916{:07}", i % 10_000_000)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

struct Outcome {
    messages: u64,
    errors: u64,
    latencies: Vec<Duration>,
    elapsed: Duration,
}

/// What the workers post.
#[derive(Debug, Clone, Copy)]
enum Load {
    /// `POST /v1/messages`: one OTP, or a batch of transactional messages.
    Messages,
    /// `POST /v1/events`: a batch of `bench.event` events, each with its own
    /// id and key, which the events scenario's rule turns into a timer.
    Events,
}

impl Load {
    /// The path and body of the next request; `seq` numbers its items.
    fn body(self, seq: &mut u64, batch: usize) -> (&'static str, Value) {
        let mut next = || {
            *seq += 1;
            *seq
        };
        match self {
            Load::Messages if batch == 1 => {
                let i = next();
                ("/v1/messages", json!({"to": recipient(i), "text": "Your code is 123456", "priority": "otp"}))
            }
            Load::Messages => {
                let msgs: Vec<Value> = (0..batch)
                    .map(|_| json!({"to": recipient(next()), "text": "Your order has shipped", "priority": "transactional"}))
                    .collect();
                ("/v1/messages", json!({ "messages": msgs }))
            }
            Load::Events => {
                let events: Vec<Value> = (0..batch)
                    .map(|_| {
                        let i = next();
                        json!({"id": format!("ev-{i}"), "type": "bench.event", "recipient": recipient(i),
                               "key": format!("cart-{i}"), "data": {"name": "Анна", "total": 1500}})
                    })
                    .collect();
                ("/v1/events", json!({ "events": events }))
            }
        }
    }
}

/// `connections` workers post for `seconds`; with `per_worker_rate` each
/// paces itself (open loop), else posts back to back.
async fn drive(
    client: &Client,
    connections: usize,
    seconds: u64,
    batch: usize,
    per_worker_rate: Option<f64>,
    load: Load,
) -> Outcome {
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..connections {
        let client = client.clone();
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let (mut n, mut errs) = (0u64, 0u64);
            let mut seq = w as u64 * 1_000_000;
            let mut tick = per_worker_rate.map(|r| {
                let mut i = tokio::time::interval(Duration::from_secs_f64(1.0 / r));
                i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
                i
            });
            while !stop.load(Ordering::Relaxed) {
                if let Some(t) = tick.as_mut() {
                    t.tick().await;
                }
                let (path, body) = load.body(&mut seq, batch);
                let t0 = Instant::now();
                match client.post(path, &body).await {
                    Ok(_) => {
                        lat.push(t0.elapsed());
                        n += batch as u64;
                    }
                    Err(_) => errs += 1,
                }
            }
            (n, errs, lat)
        }));
    }
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut out = Outcome { messages: 0, errors: 0, latencies: Vec::new(), elapsed: Duration::ZERO };
    for t in tasks {
        if let Ok((n, e, l)) = t.await {
            out.messages += n;
            out.errors += e;
            out.latencies.extend(l);
        }
    }
    out.elapsed = start.elapsed();
    out.latencies.sort();
    out
}

fn report(name: &str, o: &Outcome) {
    println!(
        "{name:<10} {:>9} msgs in {:>5.1} s = {:>8.0} msg/s   request latency p50 {}  p99 {}  errors {}",
        o.messages,
        o.elapsed.as_secs_f64(),
        o.messages as f64 / o.elapsed.as_secs_f64(),
        ms(percentile(&o.latencies, 0.5)),
        ms(percentile(&o.latencies, 0.99)),
        o.errors
    );
}

async fn counts(client: &Client) -> Result<(u64, u64), String> {
    let q = client.get("/v1/queue").await.map_err(|e| e.to_string())?;
    let get = |s: &str| q["by_status"][s].as_u64().unwrap_or(0);
    Ok((get("queued") + get("sending"), get("submitted") + get("delivered") + get("undelivered")))
}

/// Wait until the previous scenario's messages are all sent and reported,
/// so each scenario is measured on a quiet daemon.
async fn settle(client: &Client) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let q = client.get("/v1/queue").await.map_err(|e| e.to_string())?;
        let busy: u64 =
            ["queued", "sending", "submitted"].iter().map(|s| q["by_status"][*s].as_u64().unwrap_or(0)).sum();
        if busy == 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("{busy} messages still in progress after 10 minutes"));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Load a backlog scheduled a few seconds ahead, then time how fast the
/// dispatcher moves it into the route once it falls due.
async fn dispatch(client: &Client, backlog: usize) -> Result<(), String> {
    let (_, sent_before) = counts(client).await?;
    let lead = Duration::from_secs(5 + backlog as u64 / 20_000);
    let send_at = chrono::Utc::now() + chrono::Duration::from_std(lead).map_err(|e| e.to_string())?;
    let send_at = send_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let mut seq = 50_000_000u64;
    let mut loaded = 0;
    while loaded < backlog {
        let n = (backlog - loaded).min(1000);
        let msgs: Vec<Value> = (0..n)
            .map(|_| {
                seq += 1;
                json!({"to": recipient(seq), "text": "Reminder: your booking is tomorrow at 10:00", "send_at": send_at})
            })
            .collect();
        client.post("/v1/messages", &json!({ "messages": msgs })).await.map_err(|e| e.to_string())?;
        loaded += n;
    }
    let due = Instant::now() + lead.saturating_sub(Duration::from_millis(200));
    tokio::time::sleep_until(due.into()).await;
    let start = Instant::now();
    let deadline = start + Duration::from_secs(300);
    loop {
        let (waiting, sent) = counts(client).await?;
        if sent - sent_before >= backlog as u64 && waiting == 0 {
            let t = start.elapsed().saturating_sub(Duration::from_millis(200));
            println!(
                "dispatch   {backlog:>9} msgs in {:>5.1} s = {:>8.0} msg/s   (backlog due at once, drained into the simulated route)",
                t.as_secs_f64(),
                backlog as f64 / t.as_secs_f64()
            );
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("dispatch did not drain: {waiting} still waiting"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A fresh scratch directory for one scenario of this process.
pub(super) fn scratch(name: &str) -> Result<PathBuf, String> {
    let dir = std::env::temp_dir().join(format!("smsgw-bench-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    Ok(dir)
}

/// CPU time (user + system) so far of a process or thread, from its
/// `/proc/.../stat`.
fn cpu_of(stat: &std::path::Path) -> Option<Duration> {
    let stat = std::fs::read_to_string(stat).ok()?;
    // Fields after the command name (which may hold spaces) in parentheses.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_secs_f64(ticks as f64 / clock_ticks() as f64))
}

/// A process's CPU time (user + system) so far.
fn cpu_time(pid: u32) -> Option<Duration> {
    cpu_of(&PathBuf::from(format!("/proc/{pid}/stat")))
}

/// The CPU time of a process's threads named `name` (the store's writer:
/// the one thread every commit goes through, so its time per item bounds
/// the rate).
fn thread_cpu_time(pid: u32, name: &str) -> Duration {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return Duration::ZERO };
    dir.flatten()
        .filter(|t| std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim() == name))
        .filter_map(|t| cpu_of(&t.path().join("stat")))
        .sum()
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 on Linux when it cannot be asked).
fn clock_ticks() -> u64 {
    static TICKS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100)
    })
}

/// A memory figure of a process from `/proc/<pid>/status` in MB:
/// `VmRSS` (now) or `VmHWM` (peak).
fn status_mb(pid: u32, field: &str) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.strip_prefix(field).is_some_and(|r| r.starts_with(':')))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

async fn memory(p: Private, queued: usize) -> Result<(), String> {
    let client = Client::new(&p.url, BENCH_KEY);
    let send_at = (chrono::Utc::now() + chrono::Duration::days(1)).to_rfc3339();
    let mut seq = 80_000_000u64;
    let mut loaded = 0;
    let t0 = Instant::now();
    while loaded < queued {
        let n = (queued - loaded).min(1000);
        let msgs: Vec<Value> = (0..n)
            .map(|_| {
                seq += 1;
                json!({"to": recipient(seq), "text": "Sale starts tomorrow!", "send_at": send_at, "priority": "promotional"})
            })
            .collect();
        client.post("/v1/messages", &json!({ "messages": msgs })).await.map_err(|e| e.to_string())?;
        loaded += n;
    }
    println!("memory     {queued} messages queued in {:.1} s", t0.elapsed().as_secs_f64());
    tokio::time::sleep(Duration::from_secs(2)).await;
    println!(
        "memory     RSS with {queued} queued, after loading: {:.1} MB",
        status_mb(p.child.id(), "VmRSS").unwrap_or(-1.0)
    );
    let dir = p.dir.clone();
    p.stop();
    let t1 = Instant::now();
    let p2 = Private::start(dir)?;
    let c2 = Client::new(&p2.url, BENCH_KEY);
    c2.get("/readyz").await.map_err(|e| e.to_string())?;
    println!("memory     restart with {queued} queued: ready in {:.0} ms", t1.elapsed().as_secs_f64() * 1000.0);
    tokio::time::sleep(Duration::from_secs(2)).await;
    println!("memory     RSS after restart, idle: {:.1} MB", status_mb(p2.child.id(), "VmRSS").unwrap_or(-1.0));
    p2.stop();
    Ok(())
}

/// The modem pool: `n` virtual modems in this process, each taking
/// `send_ms` per SMS, behind one route of a private daemon. A backlog is
/// posted at once; after a warm-up the SMS the modems take in `seconds` are
/// counted against the ideal of `n` per `send_ms`, and each modem's time
/// between one SMS and the next shows what the gateway adds to the modem's
/// own send time.
async fn modems(n: usize, send_ms: u64, seconds: u64) -> Result<(), String> {
    use crate::simulate::modem::{ModemConfig, VirtualModem};
    const WARMUP: Duration = Duration::from_secs(5);
    let dir = scratch("modems")?;
    let mut pool = Vec::new();
    for i in 0..n {
        let cfg = ModemConfig {
            send_delay_ms: send_ms,
            imei: format!("86785603{:07}", i),
            imsi: format!("25001{:010}", i),
            ..ModemConfig::default()
        };
        let link = dir.join("dev").join(format!("modem{i}"));
        pool.push(VirtualModem::start(cfg, &link).await.map_err(|e| format!("virtual modem {i}: {e}"))?);
    }
    let route = format!(
        "[[routes]]\nname = \"modems\"\nkind = \"modem\"\nconcurrency = {}\n[routes.modem]\nports = [\"{}/dev/*\"]\n\
         status_reports = false\nregistration_timeout_secs = 10\n",
        n * 2,
        dir.display()
    );
    let p = Private::start_with(dir.clone(), &route)?;
    let client = Client::new(&p.url, BENCH_KEY);
    let result = async {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let v = client.get("/v1/modems").await.map_err(|e| e.to_string())?;
            let ready = v["modems"].as_array().map_or(0, |m| m.iter().filter(|m| m["state"] == "ready").count());
            if ready == n {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!("only {ready} of {n} modems ready after 30 s"));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let ideal = n as f64 * 1000.0 / send_ms as f64;
        let total = (ideal * (seconds as f64 + WARMUP.as_secs_f64() + 10.0)).ceil() as u64;
        for start in (0..total).step_by(100) {
            let msgs: Vec<Value> = (start..(start + 100).min(total))
                .map(|i| json!({"to": recipient(i), "text": format!("Your code is {:06}", i % 1_000_000)}))
                .collect();
            client.post("/v1/messages", &json!({ "messages": msgs })).await.map_err(|e| e.to_string())?;
        }
        let started = chrono::Utc::now();
        tokio::time::sleep(WARMUP + Duration::from_secs(seconds)).await;
        let from = started + WARMUP;
        let to = from + Duration::from_secs(seconds);
        let mut in_window = 0usize;
        let mut overheads = Vec::new();
        for m in &pool {
            let sent = m.sent();
            in_window += sent.iter().filter(|s| s.at >= from && s.at < to).count();
            for pair in sent.windows(2).filter(|w| w[1].at >= from && w[1].at < to) {
                let gap = (pair[1].at - pair[0].at).to_std().unwrap_or_default();
                overheads.push(gap.saturating_sub(Duration::from_millis(send_ms)));
            }
        }
        overheads.sort();
        let rate = in_window as f64 / seconds as f64;
        println!(
            "modems     {n} modems at {send_ms} ms/SMS for {seconds} s: {rate:.2} SMS/s = {:.1}% of {ideal:.2}; \
             gateway time between SMS on a modem: median {}, p99 {}, max {}",
            100.0 * rate / ideal,
            ms(percentile(&overheads, 0.5)),
            ms(percentile(&overheads, 0.99)),
            ms(overheads.last().copied().unwrap_or_default()),
        );
        Ok(())
    }
    .await;
    p.stop();
    for m in pool {
        m.shutdown().await;
    }
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// The median time of `n` GETs of `path` (after one untimed warm-up).
async fn median_get(http: &reqwest::Client, url: &str, path: &str, n: usize) -> Result<Duration, String> {
    let mut times = Vec::with_capacity(n);
    for i in 0..=n {
        let t0 = Instant::now();
        let resp = http.get(format!("{url}{path}")).bearer_auth(BENCH_KEY).send().await.map_err(|e| e.to_string())?;
        if !resp.status().is_success() {
            return Err(format!("GET {path}: {}", resp.status()));
        }
        resp.bytes().await.map_err(|e| e.to_string())?;
        if i > 0 {
            times.push(t0.elapsed());
        }
    }
    times.sort();
    Ok(percentile(&times, 0.5))
}

fn mb(bytes: u64) -> String {
    format!("{:.0} MB", bytes as f64 / 1e6)
}

/// Fill a store with `n` messages spread over the last 365 days, time the
/// scrapes that read its counts on a private daemon, then prune it with a
/// 90-day retention and report the file before and after.
async fn store(n: i64) -> Result<(), String> {
    const SCRAPES: usize = 15;
    let dir = scratch("store")?;
    let path = dir.join("bench.db");
    let result = async {
        let t0 = Instant::now();
        crate::store::fill_for_bench(&path, n, "sim", 365, crate::message::now_ms(), move |done| {
            eprint!("\rstore      filling: {done} of {n}");
        })
        .await
        .map_err(|e| e.to_string())?;
        // The file and its write-ahead log: all the disk the store takes.
        let size = |p: &std::path::Path| {
            let wal = std::path::PathBuf::from(format!("{}-wal", p.display()));
            [p, wal.as_path()].iter().map(|f| std::fs::metadata(f).map(|m| m.len()).unwrap_or(0)).sum::<u64>()
        };
        let full = size(&path);
        eprintln!();
        println!("store      filled {n} messages in {:.0} s: {}", t0.elapsed().as_secs_f64(), mb(full));

        let p = Private::start(dir.clone())?;
        crate::client::install_tls_provider();
        let http = reqwest::Client::new();
        let timed = async {
            let metrics = median_get(&http, &p.url, "/metrics", SCRAPES).await?;
            let queue = median_get(&http, &p.url, "/v1/queue", SCRAPES).await?;
            Ok::<_, String>((metrics, queue))
        }
        .await;
        p.stop();
        let (metrics, queue) = timed?;
        println!(
            "store      with {n} messages: GET /metrics median {}, GET /v1/queue median {} (of {SCRAPES} each)",
            ms(metrics),
            ms(queue)
        );

        let retention = crate::store::Retention {
            finished_ms: Some(90 * 24 * 3600 * 1000),
            inbound_ms: None,
            orphan_receipt_ms: None,
        };
        let before = size(&path);
        let t1 = Instant::now();
        let s = crate::store::Store::open(&path).map_err(|e| e.to_string())?;
        let pruned = s.prune(retention, crate::message::now_ms()).await;
        s.close().await;
        drop(s);
        let pruned = pruned.map_err(|e| e.to_string())?;
        println!(
            "store      prune (90 days kept): {} messages deleted, {} given back, in {:.0} s; file {} -> {}",
            pruned.messages,
            mb(pruned.freed_bytes),
            t1.elapsed().as_secs_f64(),
            mb(before),
            mb(size(&path))
        );
        Ok(())
    }
    .await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// The events scenario's routes and rule: every `bench.event` schedules a
/// promotional reminder an hour later (so every event is evaluated and
/// becomes a timer on disk; none is sent while the scenario runs).
const EVENT_RULE: &str = "[[routes]]\nname = \"sim\"\nkind = \"sim\"\n[routes.sim]\ndelivery_delay_ms = 0\n\
     [[rules]]\nname = \"bench-reminder\"\non = \"bench.event\"\ncancel_on = [\"bench.paid\"]\nclass = \"promotional\"\n\
     [[rules.steps]]\nafter = \"1h\"\ntext = \"{{ name }}, your cart is waiting\"\n";

/// Event ingest: `POST /v1/events` in batches of 100 and of 1000 on a
/// private daemon with one rule that matches every event, each batch
/// answered 202 after its commit (WAL, `synchronous = FULL`): events/s, the
/// median of `runs` runs of `seconds` each, a fresh store for each run.
async fn events(connections: usize, seconds: u64, runs: usize) -> Result<(), String> {
    for batch in [100, 1000] {
        let (mut rates, mut cpu, mut writer) = (Vec::new(), Vec::new(), Vec::new());
        let mut last = None;
        for run in 0..runs.max(1) {
            let dir = scratch(&format!("events-{batch}-{run}"))?;
            let p = Private::start_with(dir.clone(), EVENT_RULE)?;
            let client = Client::new(&p.url, BENCH_KEY);
            let pid = p.child.id();
            let before = (cpu_time(pid).unwrap_or_default(), thread_cpu_time(pid, "store-writer"));
            let o = drive(&client, connections.min(16), seconds, batch, None, Load::Events).await;
            let after = (cpu_time(pid).unwrap_or_default(), thread_cpu_time(pid, "store-writer"));
            p.stop();
            let _ = std::fs::remove_dir_all(&dir);
            if o.messages == 0 {
                return Err(format!("no event batch was accepted ({} errors): is POST /v1/events there?", o.errors));
            }
            rates.push(o.messages as f64 / o.elapsed.as_secs_f64());
            let per = |d: Duration| d.as_secs_f64() * 1e6 / o.messages as f64;
            cpu.push(per(after.0.saturating_sub(before.0)));
            writer.push(per(after.1.saturating_sub(before.1)));
            last = Some(o);
        }
        if let Some(o) = last {
            report(&format!("events{batch}"), &o);
        }
        println!(
            "events     batches of {batch}, one rule on every event, 202 after commit (WAL, synchronous=FULL): \
             median {:.0} events/s of {} runs; daemon CPU {:.1} us/event, of which the store writer {:.1}",
            median(rates.clone()),
            rates.len(),
            median(cpu),
            median(writer)
        );
    }
    Ok(())
}

/// The route of the timers scenario: simulated, unlimited, delivering at once.
const TIMER_ROUTE: &str =
    "[[routes]]\nname = \"sim\"\nkind = \"sim\"\nconcurrency = 512\n[routes.sim]\ndelivery_delay_ms = 0\n";

/// Pending rule timers: a store filled with `n` queued rule messages due
/// over the next day, a private daemon on it (its RSS, and the stats reads
/// a scrape or the status page makes), then the first `slice` brought due
/// over `spread_ms` from a moment ahead: how fast they reach the route and
/// how long after its due time each was submitted.
async fn timers(n: i64, slice: i64, spread_ms: i64) -> Result<(), String> {
    const SCRAPES: usize = 15;
    let slice = slice.min(n);
    let dir = scratch("timers")?;
    let path = dir.join("bench.db");
    let result = async {
        let t0 = Instant::now();
        crate::store::fill_rule_timers_for_bench(
            &path,
            n,
            "sim",
            "cart-reminder",
            crate::message::now_ms(),
            move |d| {
                eprint!("\rtimers     filling: {d} of {n}");
            },
        )
        .await
        .map_err(|e| e.to_string())?;
        eprintln!();
        println!("timers     filled {n} pending timers in {:.0} s", t0.elapsed().as_secs_f64());
        let t1 = Instant::now();
        let p = Private::start_with(dir.clone(), TIMER_ROUTE)?;
        crate::client::install_tls_provider();
        let http = reqwest::Client::new();
        let client = Client::new(&p.url, BENCH_KEY);
        let run = async {
            client.get("/readyz").await.map_err(|e| e.to_string())?;
            println!("timers     daemon ready on {n} pending in {:.0} ms", t1.elapsed().as_secs_f64() * 1000.0);
            tokio::time::sleep(Duration::from_secs(3)).await;
            println!("timers     RSS with {n} pending: {:.1} MB", status_mb(p.child.id(), "VmRSS").unwrap_or(-1.0));
            for path in ["/v1/rules/stats", "/v1/schedule?hours=24", "/metrics"] {
                let t = median_get(&http, &p.url, path, SCRAPES).await?;
                println!("timers     GET {path} with {n} rule messages: median {} (of {SCRAPES})", ms(t));
            }
            let from = crate::message::now_ms() + 2_000;
            crate::store::make_timers_due_for_bench(&path, slice, from, spread_ms).map_err(|e| e.to_string())?;
            let deadline = Instant::now() + Duration::from_secs(120 + (slice / 1000) as u64);
            loop {
                let (_, sent) = counts(&client).await?;
                if sent >= slice as u64 {
                    break;
                }
                if Instant::now() > deadline {
                    return Err(format!("only {sent} of {slice} timers fired in time"));
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            println!("timers     RSS after firing {slice}: {:.1} MB", status_mb(p.child.id(), "VmRSS").unwrap_or(-1.0));
            Ok::<_, String>(())
        }
        .await;
        p.stop();
        run?;
        let (lags, first_due, last_submit) =
            crate::store::timer_lags_for_bench(&path, slice).map_err(|e| e.to_string())?;
        let lag = |q: f64| lags.get(((lags.len() as f64 - 1.0) * q).round() as usize).copied().unwrap_or(0);
        let offered = slice as f64 / (spread_ms.max(1) as f64 / 1000.0);
        let rate = lags.len() as f64 / ((last_submit - first_due).max(1) as f64 / 1000.0);
        println!(
            "timers     {} of {slice} due over {spread_ms} ms ({offered:.0}/s offered): fired at {rate:.0} messages/s \
             (first due to last submit); lag due -> submit p50 {} ms, p99 {} ms, max {} ms",
            lags.len(),
            lag(0.5),
            lag(0.99),
            lag(1.0)
        );
        Ok(())
    }
    .await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// A webhook receiver in this process: answers 503 (`Retry-After: 1`)
/// until opened, then 204, and notes when each new event id came.
#[derive(Default)]
struct HookReceiver {
    open: AtomicBool,
    seen: std::sync::Mutex<std::collections::HashSet<String>>,
    /// When the first event was taken, and the last new one.
    first: std::sync::Mutex<Option<Instant>>,
    last: std::sync::Mutex<Option<Instant>>,
}

impl HookReceiver {
    async fn start() -> Result<(Arc<HookReceiver>, String), String> {
        use axum::extract::State;
        use axum::http::{HeaderMap, StatusCode};
        use axum::response::IntoResponse;
        async fn take(State(r): State<Arc<HookReceiver>>, headers: HeaderMap) -> axum::response::Response {
            if !r.open.load(Ordering::Relaxed) {
                return (StatusCode::SERVICE_UNAVAILABLE, [("retry-after", "1")]).into_response();
            }
            let id = headers.get("webhook-id").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
            let now = Instant::now();
            r.first.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert(now);
            if r.seen.lock().unwrap_or_else(|p| p.into_inner()).insert(id) {
                *r.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(now);
            }
            StatusCode::NO_CONTENT.into_response()
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(|e| e.to_string())?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let r = Arc::new(HookReceiver::default());
        let app = axum::Router::new().fallback(take).with_state(r.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok((r, format!("http://{addr}/hook")))
    }

    fn count(&self) -> usize {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

/// The routes (and `[webhooks]`) of a webhooks-scenario daemon: the
/// simulated route, with or without a subscription for every message event.
fn hook_config(url: Option<&str>) -> String {
    let Some(url) = url else { return SIM_ROUTE.to_string() };
    format!(
        "[webhooks]\nconcurrency = 16\n[[webhooks.subscriptions]]\nname = \"bench\"\nkey = \"bench\"\nurl = \"{url}\"\n\
         events = [\"message.submitted\", \"message.delivered\"]\nsecret = \"{}\"\n{SIM_ROUTE}",
        crate::config::webhooks::new_secret()
    )
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// Pending webhook deliveries, from `/metrics`.
async fn pending_deliveries(http: &reqwest::Client, url: &str) -> Option<u64> {
    let text = http.get(format!("{url}/metrics")).bearer_auth(BENCH_KEY).send().await.ok()?.text().await.ok()?;
    text.lines().find_map(|l| l.strip_prefix("smsgw_webhook_pending ")).and_then(|v| v.trim().parse().ok())
}

/// One delivery run: `events` pile up in the outbox while the receiver
/// answers 503, then it opens; events/s from the first taken to the last.
async fn webhook_delivery_run(events: usize) -> Result<f64, String> {
    let dir = scratch("hooks")?;
    let (receiver, url) = HookReceiver::start().await?;
    let p = Private::start_with(dir.clone(), &hook_config(Some(&url)))?;
    let client = Client::new(&p.url, BENCH_KEY);
    let http = reqwest::Client::new();
    let result = async {
        let messages = events.div_ceil(2);
        let mut seq = 0u64;
        while (seq as usize) < messages {
            let n = (messages - seq as usize).min(1000);
            let msgs: Vec<Value> = (0..n)
                .map(|_| {
                    seq += 1;
                    json!({"to": recipient(seq), "text": "Your parcel is on its way"})
                })
                .collect();
            client.post("/v1/messages", &json!({ "messages": msgs })).await.map_err(|e| e.to_string())?;
        }
        settle(&client).await?;
        let want = messages * 2;
        let deadline = Instant::now() + Duration::from_secs(300);
        while pending_deliveries(&http, &p.url).await != Some(want as u64) {
            if Instant::now() > deadline {
                return Err(format!("the outbox never held {want} deliveries"));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        receiver.open.store(true, Ordering::Relaxed);
        let deadline = Instant::now() + Duration::from_secs(600);
        while receiver.count() < want {
            if Instant::now() > deadline {
                return Err(format!("only {} of {want} events delivered", receiver.count()));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let first = receiver.first.lock().unwrap_or_else(|p| p.into_inner()).ok_or("no event taken")?;
        let last = receiver.last.lock().unwrap_or_else(|p| p.into_inner()).ok_or("no event taken")?;
        Ok(want as f64 / (last - first).as_secs_f64().max(1e-3))
    }
    .await;
    p.stop();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// Batch submits for `seconds` against a fresh daemon, with or without a
/// webhook subscription; messages/s.
async fn webhook_submit_run(with_hooks: bool, connections: usize, seconds: u64) -> Result<f64, String> {
    let dir = scratch("hooks")?;
    let (receiver, url) = HookReceiver::start().await?;
    receiver.open.store(true, Ordering::Relaxed);
    let p = Private::start_with(dir.clone(), &hook_config(with_hooks.then_some(url.as_str())))?;
    let client = Client::new(&p.url, BENCH_KEY);
    let o = drive(&client, connections.min(16), seconds, 100, None, Load::Messages).await;
    p.stop();
    let _ = std::fs::remove_dir_all(&dir);
    Ok(o.messages as f64 / o.elapsed.as_secs_f64())
}

/// The webhooks scenario (see `BenchArgs::only`).
async fn webhooks(args: &BenchArgs) -> Result<(), String> {
    crate::client::install_tls_provider();
    let runs = args.webhook_runs.max(1);
    let mut delivered = Vec::new();
    for _ in 0..runs {
        delivered.push(webhook_delivery_run(args.webhook_events).await?);
    }
    println!(
        "webhooks   {} events from the durable outbox to a local receiver (concurrency 16): median {:.0} events/s \
         of {runs} runs {:?}",
        args.webhook_events,
        median(delivered.clone()),
        delivered.iter().map(|r| r.round()).collect::<Vec<_>>()
    );
    let (mut on, mut off) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        off.push(webhook_submit_run(false, args.connections, args.seconds).await?);
        on.push(webhook_submit_run(true, args.connections, args.seconds).await?);
    }
    let (on_m, off_m) = (median(on.clone()), median(off.clone()));
    println!(
        "webhooks   batch100 submits, medians of {runs} alternated runs: {off_m:.0} msg/s without webhooks, \
         {on_m:.0} msg/s with a subscription to every message event ({:+.1}%); runs off {:?} on {:?}",
        100.0 * (on_m - off_m) / off_m.max(1.0),
        off.iter().map(|r| r.round()).collect::<Vec<_>>(),
        on.iter().map(|r| r.round()).collect::<Vec<_>>()
    );
    Ok(())
}

/// Scenarios that start what they need themselves (no shared daemon), in
/// the order they run after the HTTP ones.
const STANDALONE: &[&str] =
    &["modems", "store", "webhooks", "events", "timers", "smpp-server", "smpp-route", "otp-backlog"];

/// Run one of the `STANDALONE` scenarios.
async fn standalone(name: &str, args: &BenchArgs) -> Result<(), String> {
    match name {
        "modems" => modems(args.modems, args.modem_send_ms, args.seconds).await,
        "store" => store(args.store_messages).await,
        "webhooks" => webhooks(args).await,
        "events" => events(args.connections, args.seconds, args.webhook_runs).await,
        "timers" => timers(args.timers, args.timer_slice, args.timer_spread_ms).await,
        "smpp-server" => smpp::server(args.messages, args.smpp_window).await,
        "smpp-route" => smpp::route(args.messages, args.connections.min(32)).await,
        "otp-backlog" => otp::run(args.backlog, args.route_rate, args.route_burst, args.otp_rate, args.seconds).await,
        _ => Ok(()),
    }
}

pub async fn run(args: BenchArgs) -> Result<(), String> {
    const HTTP: &[&str] = &["single", "batch", "latency", "dispatch", "none"];
    if let Some(bad) = args.only.iter().find(|o| !HTTP.contains(&o.as_str()) && !STANDALONE.contains(&o.as_str())) {
        return Err(format!("--only: no scenario {bad:?} (there are {}, {})", HTTP.join(", "), STANDALONE.join(", ")));
    }
    if args.only.iter().all(|o| STANDALONE.contains(&o.as_str())) {
        for name in STANDALONE.iter().filter(|s| args.only.iter().any(|o| o == *s)) {
            standalone(name, &args).await?;
        }
        return Ok(());
    }
    let (private, url, key) = match &args.url {
        Some(u) => (None, u.clone(), args.key.clone().ok_or("--key (or SMSGW_KEY) is needed with --url")?),
        None => {
            let dir = scratch("http")?;
            let p = Private::start(dir)?;
            let url = p.url.clone();
            (Some(p), url, BENCH_KEY.to_string())
        }
    };
    println!(
        "smsgw bench against {url}: {} connections, {} s per scenario, {} cores",
        args.connections,
        args.seconds,
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    );
    let client = Client::new(&url, &key);
    let want = |s: &str| args.only.iter().any(|o| o == s);
    let mut result = Ok(());
    if want("single") {
        report("single", &drive(&client, args.connections, args.seconds, 1, None, Load::Messages).await);
        settle(&client).await?;
    }
    if want("batch") {
        report("batch100", &drive(&client, args.connections.min(16), args.seconds, 100, None, Load::Messages).await);
        settle(&client).await?;
    }
    if want("latency") {
        let per = args.rate as f64 / args.connections as f64;
        let o = drive(&client, args.connections, args.seconds, 1, Some(per), Load::Messages).await;
        report(&format!("@{}/s", args.rate), &o);
        settle(&client).await?;
    }
    if want("dispatch") {
        result = dispatch(&client, args.backlog).await;
    }
    for name in STANDALONE.iter().filter(|s| want(s)) {
        if result.is_ok() {
            result = standalone(name, &args).await;
        }
    }
    if let Some(p) = private {
        let dir = p.dir.clone();
        if result.is_ok() && args.queued > 0 {
            p.stop();
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
            result = memory(Private::start(dir.clone())?, args.queued).await;
        } else {
            p.stop();
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}
