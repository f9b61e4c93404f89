//! A route's lane: the loop that claims due work for one route (most urgent
//! first, as much as the route can start soon), waits for the route's rate
//! limiter and concurrency limit, hands each message to the channel and
//! records the attempt (submitted, retry later with backoff, or failed).
//! What it holds claimed starts most urgent first, and it claims again after
//! every start, alongside the wait for the limiter: a code posted during a
//! rate-limited promotional backlog takes the next slot instead of queueing
//! behind the promotions already claimed.
//! Work claimed but never started is handed back; a lane whose route is down
//! or paused (`pause`) claims nothing, and with `failover` passes its due
//! messages to the next route that serves them. A
//! change of the route's state is recorded as a `route.state_changed` event.

use super::Dispatcher;
use crate::channel::spec::Route;
use crate::channel::{Channel, Health, Outbound, RouteState, Submitted};
use crate::message::{Priority, Status, now_ms};
use crate::sms;
use crate::store::{AttemptFailure, Claimed, Store, StoreError, SubmittedPart};
use crate::throughput::Outcome;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use rand::Rng;
use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;

/// How long an idle lane sleeps before looking for due work (scheduled
/// messages, retries) when nothing woke it.
const IDLE_POLL: Duration = Duration::from_millis(200);
/// Upper bound of messages claimed in one transaction.
const MAX_CLAIM: usize = 512;

/// A route with its channel, limits and counters. A reload replaces the
/// lane (new limits) but may keep its channel (same binds or modems).
pub(super) struct Lane {
    pub(super) cfg: Route,
    /// Stops this lane's loop (a reload removed or replaced it).
    pub(super) cancel: CancellationToken,
    pub(super) channel: Arc<dyn Channel>,
    limiter: Option<DefaultDirectRateLimiter>,
    permits: Arc<Semaphore>,
    pub(super) wake: Notify,
    pub(super) sent: AtomicU64,
    pub(super) failed: AtomicU64,
    pub(super) retried: AtomicU64,
    last_error: Mutex<Option<String>>,
    /// When this lane's loop last made progress or waited knowingly.
    pub(super) heartbeat: AtomicI64,
    /// The route state last recorded in the store (by this lane).
    recorded_state: Mutex<Option<RouteState>>,
}

impl Lane {
    pub(super) fn new(cfg: Route, channel: Arc<dyn Channel>, cancel: CancellationToken) -> Lane {
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
            recorded_state: Mutex::new(None),
        }
    }

    /// How many messages to claim now, holding `held`: on a rate-limited
    /// route, up to what it can start within a quarter second, topped up
    /// after every start, so the route keeps its rate while a claim waits
    /// for the writer and whatever was posted since the last claim (a code
    /// during a promotional backlog) is held within one commit and starts
    /// at the next slot, ahead of the less urgent held; elsewhere as many
    /// as there are free permits, so nothing claimed waits for one.
    fn room(&self, held: usize) -> usize {
        let most = match self.cfg.rate {
            Some(rate) => ((rate * 0.25).ceil() as usize).clamp(1, MAX_CLAIM),
            None => self.permits.available_permits().min(MAX_CLAIM),
        };
        most.saturating_sub(held)
    }

    /// A permit and the rate limiter's go for the next start; None once
    /// the permits are closed.
    async fn ready(&self, route: &str) -> Option<tokio::sync::OwnedSemaphorePermit> {
        let permit = self.alive_while(self.permits.clone().acquire_owned()).await.ok()?;
        if let Some(limiter) = &self.limiter {
            let waited = std::time::Instant::now();
            self.alive_while(limiter.until_ready()).await;
            metrics::histogram!(crate::metrics::RATE_WAIT, "route" => route.to_string())
                .record(waited.elapsed().as_secs_f64());
        }
        Some(permit)
    }

    pub(super) fn in_flight(&self) -> usize {
        self.cfg.concurrency - self.permits.available_permits()
    }

    pub(super) fn last_error(&self) -> Option<String> {
        self.last_error.lock().ok().and_then(|g| g.clone())
    }

    pub(super) fn health(&self) -> Health {
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

    /// Record the route's state when it differs from the one this lane
    /// recorded last (the store also compares with the last one on disk, so
    /// a new lane does not announce an unchanged state). Cheap otherwise.
    async fn note_state(&self, store: &Store, health: &Health) {
        if *self.recorded_state.lock().unwrap_or_else(|p| p.into_inner()) == Some(health.state) {
            return;
        }
        let state = match health.state {
            RouteState::Up => "up",
            RouteState::Degraded => "degraded",
            RouteState::Down => "down",
        };
        match store.record_route_state(self.cfg.name.clone(), state.to_string(), health.detail.clone()).await {
            Ok(_) => *self.recorded_state.lock().unwrap_or_else(|p| p.into_inner()) = Some(health.state),
            Err(e) => {
                tracing::warn!(route = %self.cfg.name, error = %e, "cannot record the route's state; will try again")
            }
        }
    }

    fn note_error(&self, e: &str) {
        if let Ok(mut g) = self.last_error.lock() {
            *g = Some(e.to_string());
        }
    }
}

impl Dispatcher {
    /// Move due messages of a route that is down or paused to the next
    /// route (in config order) that serves each number and is neither.
    async fn fail_over(&self, from: &Lane) {
        let lanes = self.lanes();
        let up = |name: &str| {
            lanes.iter().any(|l| l.cfg.name == name && l.channel.health().state != RouteState::Down)
                && self.paused(name).is_none()
        };
        let Some(assign) = self.routing().failover(&from.cfg.name, up) else { return };
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
/// cancelled. Tracked with the submits, so that a stop waits for it to hand
/// back what it held before the store closes.
pub(super) fn start_lane(d: &Arc<Dispatcher>, lane: &Arc<Lane>) {
    let (d2, lane) = (d.clone(), lane.clone());
    let (name, stop) = (lane.cfg.name.clone(), lane.cancel.clone());
    d.tracker.spawn(crate::supervise::run("lane", name, stop, move || run_lane(d2.clone(), lane.clone())));
}

async fn run_lane(d: Arc<Dispatcher>, lane: Arc<Lane>) {
    let name = lane.cfg.name.clone();
    let mut held = Held::new(&d.store);
    let mut claiming: Option<ClaimFuture> = None;
    let mut asked = 0;
    // Woken: new work may be due (look at once, whatever is held). Dry: the
    // last claim found less than it asked for (look again when woken or
    // after IDLE_POLL).
    let (mut woken, mut dry) = (true, false);
    loop {
        lane.beat();
        let health = lane.channel.health();
        lane.note_state(&d.store, &health).await;
        if health.state == RouteState::Down {
            let why = "the route went down before this attempt started";
            held.give_back(claiming.take(), "route_down", why).await;
            if lane.cfg.failover {
                d.fail_over(&lane).await;
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = lane.cancel.cancelled() => return,
            }
            continue;
        }
        if d.paused(&name).is_some() {
            let why = "the route was paused before this attempt started";
            held.give_back(claiming.take(), "route_paused", why).await;
            if lane.cfg.failover {
                d.fail_over(&lane).await;
            }
            tokio::select! {
                _ = lane.wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = lane.cancel.cancelled() => return,
            }
            // Resumed (or new work came): look for due work at once.
            woken = true;
            continue;
        }
        let room = lane.room(held.len());
        if claiming.is_none() && room > 0 && (woken || !dry) {
            (woken, dry, asked) = (false, false, room);
            let (store, route, policy) = (d.store.clone(), name.clone(), d.policy());
            claiming = Some(Box::pin(async move { store.claim(route, room, policy).await }));
        }
        let idle = held.is_empty() && claiming.is_none();
        tokio::select! {
            biased;
            _ = lane.cancel.cancelled() => {
                held.give_back(claiming.take(), "stopped", "smsgw stopped before this attempt started").await;
                return;
            }
            claimed = async { claiming.as_mut().expect("polled only while claiming").await }, if claiming.is_some() => {
                claiming = None;
                match claimed {
                    Ok(c) => {
                        dry = c.len() < asked;
                        if !c.is_empty() {
                            held.extend(c);
                            crate::supervise::fault_point("lane", &name);
                        }
                    }
                    Err(e) => {
                        tracing::error!(route = %name, error = %e, "cannot claim messages");
                        lane.note_error(&e.to_string());
                        dry = true;
                        if held.is_empty() {
                            tokio::select! {
                                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                                _ = lane.cancel.cancelled() => return,
                            }
                        }
                    }
                }
            }
            permit = lane.ready(&name), if !held.is_empty() => {
                let Some(permit) = permit else { return };
                if let Some(m) = held.most_urgent() {
                    d.tracker.spawn(attempt(d.clone(), lane.clone(), m, permit));
                }
            }
            _ = lane.wake.notified() => woken = true,
            // Every permit taken and nothing held: look again when one is back.
            _ = lane.permits.acquire(), if idle && room == 0 => {}
            _ = tokio::time::sleep(if dry { IDLE_POLL } else { Duration::from_secs(1) }), if idle => dry = false,
        }
    }
}

/// A claim on its way through the store's writer.
type ClaimFuture = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Vec<Claimed>, StoreError>> + Send>>;

/// Messages a lane claimed and has not started yet, most urgent first
/// (claim order within a class). Whatever a later claim brings (a code
/// posted while promotions wait for the rate limiter) starts before the
/// less urgent ones held. Should the lane's task panic while holding them,
/// they go back to the queue (the supervisor restarts the lane) instead of
/// staying `sending` until the next start.
struct Held {
    store: Store,
    claimed: BTreeMap<(Priority, u64), Claimed>,
    seq: u64,
}

impl Held {
    fn new(store: &Store) -> Held {
        Held { store: store.clone(), claimed: BTreeMap::new(), seq: 0 }
    }

    fn len(&self) -> usize {
        self.claimed.len()
    }

    fn is_empty(&self) -> bool {
        self.claimed.is_empty()
    }

    fn extend(&mut self, claimed: Vec<Claimed>) {
        for m in claimed {
            self.seq += 1;
            self.claimed.insert((m.priority, self.seq), m);
        }
    }

    fn most_urgent(&mut self) -> Option<Claimed> {
        self.claimed.pop_first().map(|(_, m)| m)
    }

    /// Every message not started yet, now the caller's to answer.
    fn rest(&mut self) -> impl Iterator<Item = Claimed> + use<> {
        std::mem::take(&mut self.claimed).into_values()
    }

    /// Hand back every message held, with what a claim still on its way
    /// (`claiming`) brings.
    async fn give_back(&mut self, claiming: Option<ClaimFuture>, code: &str, why: &str) {
        if let Some(c) = claiming {
            self.extend(c.await.unwrap_or_default());
        }
        let rest = self.rest();
        hand_back(&self.store, rest, code, why).await;
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let rest: Vec<Claimed> = self.rest().collect();
        if rest.is_empty() {
            return;
        }
        let store = self.store.clone();
        let Ok(rt) = tokio::runtime::Handle::try_current() else { return };
        rt.spawn(async move {
            let why = "the route's lane restarted before this attempt started";
            hand_back(&store, rest.into_iter(), "lane_restarted", why).await;
        });
    }
}

/// Messages claimed but never started go back to the queue at once, without
/// spending an attempt.
async fn hand_back(store: &Store, msgs: impl Iterator<Item = Claimed>, code: &str, text: &str) {
    for m in msgs {
        let f = AttemptFailure {
            code: code.into(),
            text: text.into(),
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
        to: m.to.clone(),
        from: m.from.clone(),
        plan: sms::plan(&m.text, sms::Alphabets::Any),
        priority: m.priority,
        attempt: m.attempt,
        valid_until: m.valid_until,
        resume: Submitted { first_part: 0, remote_ids: m.sent.clone(), concat_ref: m.concat_ref },
        via: m.via.clone(),
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
            let recorded = d.store.record_submitted(m.id, lane.cfg.name.clone(), parts_of(s), concat_ref).await;
            if let Ok(Some(finished)) = &recorded {
                d.count_finished(&lane.cfg.name, finished);
            }
            recorded.map(|_| ())
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
