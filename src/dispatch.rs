//! The dispatcher: one lane per route claims due messages from the store
//! (most urgent first), waits for the route's rate limiter and concurrency
//! limit, hands each message to the route's channel, and records what came
//! back: submitted, retry later with backoff, or failed. It also records the
//! events routes report (delivery receipts) and sweeps expired messages.

use crate::channel::{self, Channel, Event, EventSender, Health, Outbound, RouteEvent, RouteState, Submitted};
use crate::config::{Dispatch as DispatchCfg, Route};
use crate::message::{Status, now_ms};
use crate::sms;
use crate::store::{AttemptFailure, Claimed, InboundPart, Receipt, ReceiptMatch, Store, SubmittedPart, Undecodable};
use crate::throughput::{Outcome, Throughput};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use rand::Rng;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::sync::{Notify, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long an idle lane sleeps before looking for due work (scheduled
/// messages, retries) when nothing woke it.
const IDLE_POLL: Duration = Duration::from_millis(200);
/// Upper bound of messages claimed in one transaction.
const MAX_CLAIM: usize = 512;
/// Keep idempotency keys this long.
const IDEMPOTENCY_TTL_MS: i64 = 24 * 3600 * 1000;
const SWEEP_EVERY: Duration = Duration::from_secs(5);

/// A route with its channel, limits and counters. A reload replaces the
/// lane (new limits) but may keep its channel (same binds or modems).
pub struct Lane {
    pub cfg: Route,
    /// Stops this lane's loop (a reload removed or replaced it).
    cancel: CancellationToken,
    pub channel: Arc<dyn Channel>,
    limiter: Option<DefaultDirectRateLimiter>,
    permits: Arc<Semaphore>,
    wake: Notify,
    pub sent: AtomicU64,
    pub failed: AtomicU64,
    pub retried: AtomicU64,
    last_error: Mutex<Option<String>>,
    /// When this lane's loop last made progress or waited knowingly.
    heartbeat: AtomicI64,
}

impl Lane {
    fn new(cfg: Route, channel: Arc<dyn Channel>, cancel: CancellationToken) -> Lane {
        let limiter = cfg.rate.map(|rate| {
            let burst = NonZeroU32::new(cfg.burst.unwrap_or(1)).unwrap_or(NonZeroU32::MIN);
            let period = Duration::from_secs_f64(1.0 / rate).max(Duration::from_nanos(1));
            let quota = Quota::with_period(period).expect("period is at least 1 ns").allow_burst(burst);
            RateLimiter::direct(quota)
        });
        Lane {
            permits: Arc::new(Semaphore::new(cfg.concurrency)),
            cfg,
            cancel,
            channel,
            limiter,
            wake: Notify::new(),
            sent: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            retried: AtomicU64::new(0),
            last_error: Mutex::new(None),
            heartbeat: AtomicI64::new(now_ms()),
        }
    }

    /// How many messages one claim may take: what the route can start within
    /// a quarter second, so an urgent message never queues behind a long
    /// claimed backlog.
    fn budget(&self) -> usize {
        match self.cfg.rate {
            Some(rate) => {
                let soon = (rate * 0.25).ceil() as usize;
                soon.min(self.cfg.burst.unwrap_or(1) as usize).max(1)
            }
            None => MAX_CLAIM,
        }
    }

    pub fn in_flight(&self) -> usize {
        self.cfg.concurrency - self.permits.available_permits()
    }

    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().ok().and_then(|g| g.clone())
    }

    pub fn health(&self) -> Health {
        self.channel.health()
    }

    fn beat(&self) {
        self.heartbeat.store(now_ms(), Ordering::Relaxed);
    }

    /// Await `fut`, beating once a second meanwhile: a lane that waits for
    /// a slow route is alive, one stuck elsewhere is not.
    async fn alive_while<F: std::future::Future>(&self, fut: F) -> F::Output {
        tokio::pin!(fut);
        loop {
            self.beat();
            tokio::select! {
                out = &mut fut => return out,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }

    fn note_error(&self, e: &str) {
        if let Ok(mut g) = self.last_error.lock() {
            *g = Some(e.to_string());
        }
    }
}

pub struct Dispatcher {
    store: Store,
    cfg: RwLock<DispatchCfg>,
    /// Lanes in config order; replaced whole by a reload.
    lanes: RwLock<Arc<Vec<Arc<Lane>>>>,
    events: EventSender,
    cancel: CancellationToken,
    tracker: TaskTracker,
    sweep_beat: AtomicI64,
    /// Per-minute counts for the status page.
    pub throughput: Throughput,
}

#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error("no route named {0:?}")]
    Unknown(String),
    #[error("route {route:?} does not serve {to}")]
    NotServed { route: String, to: String },
    #[error("no route serves {0}")]
    NoRoute(String),
}

impl Dispatcher {
    /// Build every route's channel and start the lanes, the event recorder
    /// and the expiry sweep.
    pub async fn start(store: Store, cfg: DispatchCfg, routes: &[Route]) -> std::io::Result<Arc<Dispatcher>> {
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let cancel = CancellationToken::new();
        let mut lanes = Vec::new();
        for r in routes {
            let ch = build_channel(&store, r, events_tx.clone())
                .await
                .map_err(|e| std::io::Error::new(e.kind(), format!("route {}: {e}", r.name)))?;
            lanes.push(Arc::new(Lane::new(r.clone(), ch, cancel.child_token())));
        }
        let d = Arc::new(Dispatcher {
            store,
            cfg: RwLock::new(cfg),
            lanes: RwLock::new(Arc::new(lanes)),
            events: events_tx,
            cancel,
            tracker: TaskTracker::new(),
            sweep_beat: AtomicI64::new(now_ms()),
            throughput: Throughput::default(),
        });
        d.adopt_orphans().await;
        for lane in d.lanes().iter() {
            start_lane(&d, lane);
        }
        let events_rx = Arc::new(tokio::sync::Mutex::new(events_rx));
        let (d2, stop) = (d.clone(), d.cancel.clone());
        tokio::spawn(crate::supervise::run("events", String::new(), stop, move || {
            record_events(d2.clone(), events_rx.clone())
        }));
        let (d2, stop) = (d.clone(), d.cancel.clone());
        tokio::spawn(crate::supervise::run("sweep", String::new(), stop, move || sweep(d2.clone())));
        Ok(d)
    }

    /// The lanes in config order (a snapshot: a reload may replace them).
    pub fn lanes(&self) -> Arc<Vec<Arc<Lane>>> {
        self.lanes.read().map(|l| l.clone()).unwrap_or_default()
    }

    fn cfg(&self) -> DispatchCfg {
        self.cfg.read().map(|c| c.clone()).unwrap_or_default()
    }

    /// Apply a new config: dispatch settings, and routes added, removed or
    /// changed. A route whose channel settings did not change keeps its
    /// channel (its binds or modems stay up); its limits and prefixes are
    /// replaced. Returns one line per change.
    pub async fn reload(self: &Arc<Self>, cfg: DispatchCfg, routes: &[Route]) -> Result<Vec<String>, String> {
        let old = self.lanes();
        let mut changes = Vec::new();
        // Build every new channel first: a failure leaves everything as it was.
        let mut built = Vec::new();
        for r in routes {
            match old.iter().find(|l| l.cfg.name == r.name && l.cfg.same_channel(r)) {
                Some(l) => built.push((r.clone(), l.channel.clone(), Some(l.clone()))),
                None => {
                    let ch = build_channel(&self.store, r, self.events.clone())
                        .await
                        .map_err(|e| format!("route {}: {e}", r.name))?;
                    built.push((r.clone(), ch, None));
                }
            }
        }
        if let Ok(mut c) = self.cfg.write() {
            *c = cfg;
        }
        let mut lanes = Vec::new();
        for (r, ch, kept) in built {
            match &kept {
                Some(l) if l.cfg == r => {
                    lanes.push(l.clone());
                    continue;
                }
                Some(_) => changes.push(format!("route {}: limits or prefixes changed; channel kept", r.name)),
                None if old.iter().any(|l| l.cfg.name == r.name) => {
                    changes.push(format!("route {}: channel settings changed; reconnecting", r.name))
                }
                None => changes.push(format!("route {}: added", r.name)),
            }
            lanes.push(Arc::new(Lane::new(r, ch, self.cancel.child_token())));
        }
        let new = Arc::new(lanes);
        if let Ok(mut l) = self.lanes.write() {
            *l = new.clone();
        }
        for l in old.iter() {
            let kept = new.iter().find(|n| n.cfg.name == l.cfg.name);
            if kept.is_some_and(|n| Arc::ptr_eq(n, l)) {
                continue;
            }
            l.cancel.cancel();
            if !kept.is_some_and(|n| Arc::ptr_eq(&n.channel, &l.channel)) {
                if kept.is_none() {
                    changes.push(format!("route {}: removed", l.cfg.name));
                }
                // In-flight submits finish on the old channel before it closes.
                let (lane, tracker) = (l.clone(), self.tracker.clone());
                tokio::spawn(async move {
                    while lane.in_flight() > 0 {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    drop(tracker);
                    lane.channel.shutdown().await;
                });
            }
        }
        for lane in new.iter() {
            if !old.iter().any(|o| Arc::ptr_eq(o, lane)) {
                start_lane(self, lane);
            }
        }
        self.adopt_orphans().await;
        Ok(changes)
    }

    /// Queued messages of routes that are no longer configured move to the
    /// first route that serves all numbers, or stay (and say so).
    async fn adopt_orphans(&self) {
        let Ok(routes) = self.store.queued_routes().await else { return };
        let lanes = self.lanes();
        for r in routes {
            if lanes.iter().any(|l| l.cfg.name == r) {
                continue;
            }
            match lanes.iter().find(|l| l.cfg.prefixes.is_empty()) {
                Some(to) => match self.store.reroute(r.clone(), to.cfg.name.clone()).await {
                    Ok(n) => {
                        tracing::warn!(from = %r, to = %to.cfg.name, count = n, "moved queued messages of a removed route")
                    }
                    Err(e) => tracing::error!(error = %e, "cannot move messages of removed route {r}"),
                },
                None => tracing::warn!(route = %r, "queued messages wait for route {r}, which is not configured"),
            }
        }
    }

    /// The route a message goes through: the one asked for, else the first
    /// in config order whose prefixes match.
    pub fn resolve(&self, to: &str, asked: Option<&str>) -> Result<String, RouteError> {
        let lanes = self.lanes();
        match asked {
            Some(name) => {
                let lane =
                    lanes.iter().find(|l| l.cfg.name == name).ok_or_else(|| RouteError::Unknown(name.to_string()))?;
                if lane.cfg.serves(to) {
                    Ok(lane.cfg.name.clone())
                } else {
                    Err(RouteError::NotServed { route: name.to_string(), to: to.to_string() })
                }
            }
            None => lanes
                .iter()
                .find(|l| l.cfg.serves(to))
                .map(|l| l.cfg.name.clone())
                .ok_or_else(|| RouteError::NoRoute(to.to_string())),
        }
    }

    /// True when every lane and the housekeeping loop made progress within
    /// `within_ms`: what the systemd watchdog pings stand for.
    pub fn alive(&self, within_ms: i64) -> Result<(), String> {
        let now = now_ms();
        if now - self.sweep_beat.load(Ordering::Relaxed) > within_ms.max(3 * SWEEP_EVERY.as_millis() as i64) {
            return Err("the housekeeping loop is stuck".into());
        }
        for l in self.lanes().iter() {
            if now - l.heartbeat.load(Ordering::Relaxed) > within_ms {
                return Err(format!("the dispatcher lane of route {} is stuck", l.cfg.name));
            }
        }
        Ok(())
    }

    /// New work for `route` is on disk.
    pub fn wake(&self, route: &str) {
        if let Some(l) = self.lanes().iter().find(|l| l.cfg.name == route) {
            l.wake.notify_one();
        }
    }

    /// Stop claiming, let in-flight submits finish within the stop timeout,
    /// then shut the channels down. Whatever is still in flight stays
    /// `sending` on disk and returns to the queue at the next start.
    pub async fn shutdown(&self) {
        self.cancel.cancel();
        self.tracker.close();
        for l in self.lanes().iter() {
            l.channel.stopping();
        }
        let limit = Duration::from_millis(self.cfg().shutdown_timeout_ms);
        if tokio::time::timeout(limit, self.tracker.wait()).await.is_err() {
            tracing::warn!(
                in_flight = self.tracker.len(),
                "stop timeout reached with submits in flight; they will be retried at the next start"
            );
        }
        for l in self.lanes().iter() {
            l.channel.shutdown().await;
        }
    }

    /// Move due messages of a route that is down to the next route (in
    /// config order) that serves each number and is not down itself.
    async fn fail_over(&self, from: &Lane) {
        let lanes = self.lanes();
        let after = lanes.iter().position(|l| l.cfg.name == from.cfg.name).map_or(0, |i| i + 1);
        let candidates: Vec<Route> = lanes[after..]
            .iter()
            .filter(|l| l.channel.health().state != RouteState::Down)
            .map(|l| l.cfg.clone())
            .collect();
        if candidates.is_empty() {
            return;
        }
        let assign = move |to: &str| candidates.iter().find(|r| r.serves(to)).map(|r| r.name.clone());
        match self.store.move_queued(from.cfg.name.clone(), MAX_CLAIM, assign).await {
            Ok(targets) => {
                for t in targets {
                    tracing::warn!(from = %from.cfg.name, to = %t, "route is down; failed its messages over");
                    self.wake(&t);
                }
            }
            Err(e) => tracing::error!(route = %from.cfg.name, error = %e, "failover failed"),
        }
    }

    fn retry_delay(&self, attempt: u32) -> Duration {
        let cfg = self.cfg();
        let base = cfg.retry_base_ms as f64;
        let exp = base * 2f64.powi(attempt.saturating_sub(1).min(30) as i32);
        let capped = exp.min(cfg.retry_max_ms as f64);
        let jittered = capped * rand::rng().random_range(0.5..=1.0);
        Duration::from_millis(jittered as u64)
    }
}

/// A lane's loop, supervised: restarted after a panic until the lane is
/// cancelled.
fn start_lane(d: &Arc<Dispatcher>, lane: &Arc<Lane>) {
    let (d, lane) = (d.clone(), lane.clone());
    let (name, stop) = (lane.cfg.name.clone(), lane.cancel.clone());
    tokio::spawn(crate::supervise::run("lane", name, stop, move || run_lane(d.clone(), lane.clone())));
}

async fn run_lane(d: Arc<Dispatcher>, lane: Arc<Lane>) {
    let name = lane.cfg.name.clone();
    loop {
        lane.beat();
        let first = tokio::select! {
            p = lane.alive_while(lane.permits.clone().acquire_owned()) => match p { Ok(p) => p, Err(_) => return },
            _ = lane.cancel.cancelled() => return,
        };
        if lane.channel.health().state == RouteState::Down {
            drop(first);
            if lane.cfg.failover {
                d.fail_over(&lane).await;
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = lane.cancel.cancelled() => return,
            }
            continue;
        }
        let mut permits = vec![first];
        let budget = lane.budget();
        while permits.len() < budget {
            match lane.permits.clone().try_acquire_owned() {
                Ok(p) => permits.push(p),
                Err(_) => break,
            }
        }
        let claimed = match d.store.claim(name.clone(), permits.len()).await {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(route = %name, error = %e, "cannot claim messages");
                lane.note_error(&e.to_string());
                drop(permits);
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = lane.cancel.cancelled() => return,
                }
                continue;
            }
        };
        if claimed.is_empty() {
            drop(permits);
            tokio::select! {
                _ = lane.wake.notified() => {}
                _ = tokio::time::sleep(IDLE_POLL) => {}
                _ = lane.cancel.cancelled() => return,
            }
            continue;
        }
        let mut claimed = claimed.into_iter();
        for permit in permits {
            let Some(m) = claimed.next() else { break };
            if let Some(limiter) = &lane.limiter {
                let waited = std::time::Instant::now();
                tokio::select! {
                    _ = lane.alive_while(limiter.until_ready()) => {
                        metrics::histogram!(crate::metrics::RATE_WAIT, "route" => name.clone())
                            .record(waited.elapsed().as_secs_f64());
                    }
                    _ = lane.cancel.cancelled() => {
                        hand_back(&d.store, std::iter::once(m).chain(claimed)).await;
                        return;
                    }
                }
            }
            d.tracker.spawn(attempt(d.clone(), lane.clone(), m, permit));
        }
    }
}

/// A route's channel; one that caps its sends is told what it sent in the
/// last day, so a restart does not hand a SIM a fresh daily allowance.
async fn build_channel(store: &Store, r: &Route, events: EventSender) -> std::io::Result<Arc<dyn Channel>> {
    let ch = channel::build(r, events)?;
    if r.counts_sends() {
        match store.sent_since(r.name.clone(), now_ms() - 86_400_000).await {
            Ok(sent) => ch.restore_sent(sent),
            Err(e) => {
                tracing::warn!(route = %r.name, error = %e, "cannot read the last day's sends; caps count from now")
            }
        }
    }
    Ok(ch)
}

/// Messages claimed but never started go back to the queue at once.
async fn hand_back(store: &Store, msgs: impl Iterator<Item = Claimed>) {
    for m in msgs {
        let f = AttemptFailure {
            code: "stopped".into(),
            text: "smsgw stopped before this attempt started".into(),
            retry_at: Some(now_ms()),
            final_status: Status::Failed,
            untried: true,
            accepted: Vec::new(),
            concat_ref: None,
        };
        if let Err(e) = store.record_failure(m.id, f).await {
            tracing::warn!(message = m.id, error = %e, "cannot hand a message back; it returns at the next start");
        }
    }
}

async fn attempt(d: Arc<Dispatcher>, lane: Arc<Lane>, m: Claimed, _permit: tokio::sync::OwnedSemaphorePermit) {
    let out = Outbound {
        id: m.id,
        to: m.recipient.clone(),
        from: m.sender.clone(),
        text: m.body.clone(),
        plan: sms::plan(&m.body, sms::Alphabets::Any),
        priority: m.priority,
        attempt: m.attempt,
        valid_until: m.valid_until,
        resume: Submitted { first_part: 0, remote_ids: m.sent.clone(), concat_ref: m.concat_ref },
    };
    let started = std::time::Instant::now();
    let result = lane.channel.submit(out).await;
    let route = lane.cfg.name.clone();
    metrics::histogram!(crate::metrics::SUBMIT_SECONDS, "route" => route.clone())
        .record(started.elapsed().as_secs_f64());
    let recorded = match result {
        Ok(s) => {
            lane.sent.fetch_add(1, Ordering::Relaxed);
            metrics::counter!(crate::metrics::SUBMITS, "route" => route, "result" => "submitted").increment(1);
            d.throughput.count(now_ms(), Outcome::Sent);
            let concat_ref = s.concat_ref;
            d.store.record_submitted(m.id, lane.cfg.name.clone(), parts_of(s), concat_ref).await
        }
        Err(e) => {
            lane.note_error(&e.to_string());
            let now = now_ms();
            let retry_at = now + d.retry_delay(m.attempt).as_millis() as i64;
            let (retry_at, final_status, text) = if !e.temporary {
                (None, Status::Failed, e.text.clone())
            } else if !e.untried && m.attempt >= d.cfg().max_attempts {
                (None, Status::Failed, format!("{} (gave up after {} attempts)", e.text, m.attempt))
            } else if m.valid_until.is_some_and(|v| v < retry_at) {
                (None, Status::Expired, format!("{} (validity runs out before the next attempt)", e.text))
            } else {
                (Some(retry_at), Status::Queued, e.text.clone())
            };
            let result = if retry_at.is_none() {
                lane.failed.fetch_add(1, Ordering::Relaxed);
                "failed"
            } else if e.untried {
                "untried"
            } else {
                lane.retried.fetch_add(1, Ordering::Relaxed);
                "retry"
            };
            metrics::counter!(crate::metrics::SUBMITS, "route" => route, "result" => result).increment(1);
            if retry_at.is_none() {
                d.throughput.count(now, Outcome::Failed);
                metrics::counter!(crate::metrics::FINISHED, "route" => lane.cfg.name.clone(), "status" => final_status.as_str())
                    .increment(1);
            }
            tracing::info!(message = m.id, route = %lane.cfg.name, code = %e.code, temporary = e.temporary, "submit failed");
            let concat_ref = e.accepted.concat_ref;
            let accepted = parts_of(e.accepted);
            let f =
                AttemptFailure { code: e.code, text, retry_at, final_status, untried: e.untried, accepted, concat_ref };
            d.store.record_failure(m.id, f).await
        }
    };
    if let Err(e) = recorded {
        tracing::error!(message = m.id, error = %e, "cannot record the submit result; the message returns to the queue at the next start");
    }
}

/// The parts a route took, numbered from the message's first part.
fn parts_of(s: Submitted) -> Vec<SubmittedPart> {
    let first = s.first_part;
    s.remote_ids
        .into_iter()
        .enumerate()
        .map(|(i, remote_id)| SubmittedPart { index: (first + i) as u32, remote_id })
        .collect()
}

/// Record what routes report. Each event is written by its own task so the
/// writer can commit many together; after the stop signal events are no
/// longer taken (a real peer sends them again; the simulated one loses them).
/// The channel has no bound of its own because every producer has one: an
/// SMPP bind waits for at most a window of commits before it stops reading,
/// a modem for one at a time, and the simulated route reports only what was
/// sent through it.
async fn record_events(d: Arc<Dispatcher>, rx: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<RouteEvent>>>) {
    let mut rx = rx.lock().await;
    loop {
        let ev = tokio::select! {
            ev = rx.recv() => match ev { Some(ev) => ev, None => return },
            _ = d.cancel.cancelled() => return,
        };
        let store = d.store.clone();
        let RouteEvent { route, event, ack } = ev;
        let d2 = d.clone();
        d.tracker.spawn(async move {
            let ok = match event {
                Event::Receipt { remote_id, status, error_code, error_text, sc_time, legacy_id } => {
                    metrics::counter!(crate::metrics::RECEIPTS, "route" => route.clone(), "status" => format!("{status:?}").to_lowercase())
                        .increment(1);
                    let receipt =
                        Receipt { route: route.clone(), remote_id, status, error_code, error_text, sc_time, legacy_id };
                    let matched = store.record_receipt(receipt).await;
                    if let Ok(ReceiptMatch::Final { status, .. }) = &matched {
                        metrics::counter!(crate::metrics::FINISHED, "route" => route.clone(), "status" => status.as_str())
                            .increment(1);
                    }
                    match matched {
                        Ok(ReceiptMatch::Final { status: Status::Delivered, created_at }) => {
                            metrics::histogram!(crate::metrics::DELIVERY_SECONDS, "route" => route)
                                .record((now_ms() - created_at).max(0) as f64 / 1000.0);
                            d2.throughput.count(now_ms(), Outcome::Delivered);
                        }
                        Ok(ReceiptMatch::Final { .. }) => d2.throughput.count(now_ms(), Outcome::Failed),
                        _ => {}
                    }
                    matched.map(|_| ()).map_err(|e| ("a delivery receipt", e))
                }
                Event::Inbound { from, to, text, concat, sent_at } => {
                    metrics::counter!(crate::metrics::INBOUND, "route" => route.clone()).increment(1);
                    let part = InboundPart { route, sender: from, recipient: to, text, concat, sent_at, undecodable: None };
                    store.record_inbound(part).await.map(|_| ()).map_err(|e| ("an inbound message", e))
                }
                Event::Undecodable { to, pdu, reason } => {
                    metrics::counter!(crate::metrics::INBOUND, "route" => route.clone()).increment(1);
                    let part = InboundPart {
                        route,
                        sender: String::new(),
                        recipient: to,
                        text: String::new(),
                        concat: None,
                        sent_at: None,
                        undecodable: Some(Undecodable { pdu, reason }),
                    };
                    store.record_inbound(part).await.map(|_| ()).map_err(|e| ("an undecodable inbound PDU", e))
                }
            };
            if let Err((what, e)) = &ok {
                tracing::error!(error = %e, "cannot record {what}; the route will not acknowledge it");
            }
            if let Some(ack) = ack {
                let _ = ack.send(ok.is_ok());
            }
        });
    }
}

/// Housekeeping: expire queued messages past their validity, forget old
/// idempotency keys, and store concatenated inbound messages whose missing
/// parts never came.
async fn sweep(d: Arc<Dispatcher>) {
    loop {
        d.sweep_beat.store(now_ms(), Ordering::Relaxed);
        tokio::select! {
            _ = tokio::time::sleep(SWEEP_EVERY) => {}
            _ = d.cancel.cancelled() => return,
        }
        match d.store.sweep(IDEMPOTENCY_TTL_MS).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(count = n, "expired queued messages past their validity"),
            Err(e) => tracing::error!(error = %e, "expiry sweep failed"),
        }
        let age = d.cfg().inbound_reassembly_secs as i64 * 1000;
        if let Err(e) = d.store.flush_stale_inbound(age).await {
            tracing::error!(error = %e, "inbound reassembly sweep failed");
        }
    }
}
