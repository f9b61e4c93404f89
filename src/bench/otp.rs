//! The `otp-backlog` scenario of `smsgw bench`: how long a one-time code
//! takes from its request to its `submit_sm` on the wire while a large
//! promotional backlog drains through the same rate-limited route. A code
//! must not wait behind bulk promotions; this measures that it does not.
//!
//! A private daemon has one SMPP route (receipts on) to the SMSC simulator
//! in this process over loopback, limited to `--route-rate` messages/s
//! (with `--route-burst` if given);
//! promotions have no quiet hours (and no caps, the default), so the
//! backlog really drains. `--backlog` promotional messages go in through
//! the API in batches of 100, each to a number of its own; then, while
//! they drain, single `otp` messages go one request at a time at
//! `--otp-rate` a second for `--seconds`, each to a number of its own. For
//! each code: the time its request started and its 202 came (wall clock),
//! and the time the simulator read its `submit_sm`. Reported: p50/p99/max
//! from the request's start and from the 202, the codes accepted and seen
//! on the wire, and the backlog left at the end (it was draining, not
//! empty, while the codes went).

use super::smpp::{beside_smsc, post_count, route_up};
use super::{BENCH_KEY, Private, percentile, recipient};
use crate::client::Client;
use crate::simulate::smsc::{Smsc, SubmitOutcome};
use serde_json::json;
use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

/// Numbers of the codes start here (the backlog's start at 0).
const OTP_FIRST: u64 = 5_000_000;
/// Connections that fill the backlog.
const FILL_CONNECTIONS: usize = 8;
/// Promotions to a request.
const BATCH: u64 = 100;
/// How long to wait for the last codes to reach the wire.
const LAST_CODES: Duration = Duration::from_secs(10);

/// One code: when its request started, when its 202 came.
struct Sent {
    to: String,
    start: SystemTime,
    accepted: SystemTime,
}

/// The `otp-backlog` scenario (see the module documentation).
pub(super) async fn run(
    backlog: usize,
    route_rate: f64,
    route_burst: Option<u32>,
    otp_rate: f64,
    seconds: u64,
) -> Result<(), String> {
    let burst = route_burst.map(|b| format!("burst = {b}\n")).unwrap_or_default();
    let config = |port: u16| {
        format!(
            "[policy.quiet_hours]\npromotional = \"none\"\n\
             [[routes]]\nname = \"carrier\"\nkind = \"smpp\"\nrate = {route_rate}\n{burst}concurrency = 64\n[routes.smpp]\n\
             host = \"127.0.0.1\"\nport = {port}\nsystem_id = \"smsgw\"\npassword = \"bench\"\nbinds = 1\nwindow = 64\n\
             registered_delivery = true\n"
        )
    };
    beside_smsc("otp-backlog", config, async |p, sim| {
        measure(p, sim, backlog as u64, route_rate, otp_rate, seconds).await
    })
    .await
}

async fn measure(
    p: &Private,
    sim: &Smsc,
    backlog: u64,
    route_rate: f64,
    otp_rate: f64,
    seconds: u64,
) -> Result<(), String> {
    let client = Client::new(&p.url, BENCH_KEY);
    route_up(&client).await?;
    let filled = Instant::now();
    let (promotions, failed) = post_count(
        &client,
        FILL_CONNECTIONS,
        backlog,
        BATCH,
        "Sale: 20% off everything this weekend",
        Some("promotional"),
    )
    .await;
    if failed > 0 {
        return Err(format!("otp-backlog: {failed} requests of the backlog failed"));
    }
    let fill_secs = filled.elapsed().as_secs_f64();
    let left_at_start = waiting(&client).await?;

    // The codes, one request at a time at a steady rate.
    let mut sent = Vec::new();
    let mut refused = 0u64;
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / otp_rate.max(0.1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let until = Instant::now() + Duration::from_secs(seconds);
    let mut i = OTP_FIRST;
    while Instant::now() < until {
        tick.tick().await;
        let to = recipient(i);
        i += 1;
        let start = SystemTime::now();
        let body = json!({"to": to, "text": "Your code is 123456", "priority": "otp"});
        match client.post("/v1/messages", &body).await {
            Ok(_) => sent.push(Sent { to, start, accepted: SystemTime::now() }),
            Err(_) => refused += 1,
        }
    }

    // Until every code is on the wire, or a while has passed.
    let deadline = Instant::now() + LAST_CODES;
    let wire = loop {
        let wire = codes_on_wire(sim);
        if sent.iter().all(|s| wire.contains_key(&s.to)) || Instant::now() > deadline {
            break wire;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let left = waiting(&client).await?;

    let since = |t: SystemTime, from: SystemTime| t.duration_since(from).unwrap_or(Duration::ZERO);
    let (mut from_start, mut from_202) = (Vec::new(), Vec::new());
    let mut answers: Vec<Duration> = sent.iter().map(|s| since(s.accepted, s.start)).collect();
    answers.sort();
    for s in &sent {
        if let Some(&at) = wire.get(&s.to) {
            from_start.push(since(at, s.start));
            from_202.push(since(at, s.accepted));
        }
    }
    from_start.sort();
    from_202.sort();
    let line = |v: &[Duration]| {
        format!(
            "p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
            percentile(v, 0.5).as_secs_f64() * 1e3,
            percentile(v, 0.99).as_secs_f64() * 1e3,
            v.last().copied().unwrap_or_default().as_secs_f64() * 1e3
        )
    };
    println!(
        "otp-backlog {promotions} promotions queued in {fill_secs:.1} s onto an SMPP route at {route_rate}/s; \
         {left_at_start} waiting when the codes began, {left} at the end"
    );
    println!(
        "otp-backlog {} otp at {otp_rate}/s for {seconds} s: {} accepted, {refused} refused, {} seen on the wire",
        sent.len() as u64 + refused,
        sent.len(),
        from_start.len()
    );
    println!("otp-backlog request start to submit_sm: {}", line(&from_start));
    println!("otp-backlog 202 to submit_sm:           {}", line(&from_202));
    println!("otp-backlog request start to 202:       {}", line(&answers));
    if left == 0 {
        return Err("otp-backlog: the backlog ran out before the codes were done; raise --backlog".into());
    }
    Ok(())
}

/// Messages still queued or being claimed.
async fn waiting(client: &Client) -> Result<u64, String> {
    let q = client.get("/v1/queue").await.map_err(|e| e.to_string())?;
    Ok(["queued", "sending"].iter().map(|s| q["by_status"][*s].as_u64().unwrap_or(0)).sum())
}

/// When the simulator read each code's `submit_sm`, by its number in E.164.
fn codes_on_wire(sim: &Smsc) -> HashMap<String, SystemTime> {
    // Every number has the same length, so the codes' sort after the backlog's.
    let first = recipient(OTP_FIRST);
    let mut out = HashMap::new();
    for s in sim.submitted() {
        let to = format!("+{}", s.dest);
        if s.outcome == SubmitOutcome::Accepted && to.as_str() >= first.as_str() {
            out.entry(to).or_insert(s.at);
        }
    }
    out
}
