//! The dispatcher: one lane per route claims due messages from the store
//! (most urgent first), waits for the route's rate limiter and concurrency
//! limit, hands each message to the route's channel, and records what came
//! back: submitted, retry later with backoff, or failed. It also records the
//! events routes report (delivery receipts) and sweeps expired messages.
//!
//! This module holds the [`Dispatcher`] itself (start, wake, liveness,
//! shutdown) and its public surface; the lane loop is in `lane`, route
//! choice in `routing`, routes an operator paused in `pause`, the event
//! recorder in `record`, config reload in `reload`, the expiry sweep in
//! `sweep`, and what readers see in `view`.

mod lane;
mod pause;
mod record;
mod reload;
mod routing;
mod rules;
mod sweep;
mod view;

pub use pause::PauseError;
pub use record::reply_rules;
pub use reload::ReloadError;
pub use routing::{RouteError, Routing};
pub use view::RouteView;

use crate::channel::spec::Route;
use crate::channel::{self, Channel, EventSender};
use crate::config::{Dispatch as DispatchCfg, Policy};
use crate::message::{Millis, now_ms};
use crate::replies::ReplyRules;
use crate::store::Store;
use crate::throughput::{Minute, Throughput};
use lane::{Lane, start_lane};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// What made no progress in time (see [`Dispatcher::alive`]).
#[derive(Debug, thiserror::Error)]
pub enum Stuck {
    #[error("the housekeeping loop is stuck")]
    Housekeeping,
    #[error("the dispatcher lane of route {0} is stuck")]
    Lane(String),
}

pub struct Dispatcher {
    store: Store,
    cfg: RwLock<DispatchCfg>,
    /// What stops a message (opt-outs, consent): asked at accept by the API
    /// and at claim by the lanes; replaced by a reload.
    policy: RwLock<Policy>,
    /// Lanes in config order; replaced whole by a reload.
    lanes: RwLock<Arc<Vec<Arc<Lane>>>>,
    /// How numbers map to routes; replaced whole by a reload, with the lanes.
    routing: RwLock<Arc<Routing>>,
    events: EventSender,
    cancel: CancellationToken,
    tracker: TaskTracker,
    sweep_beat: AtomicI64,
    /// Per-minute counts for the status page.
    throughput: Throughput,
    /// How inbound messages are read and answered; replaced whole by a reload.
    replies: RwLock<Arc<ReplyRules>>,
    /// The enabled trigger rules, compiled; replaced whole by `reload_rules`.
    rules: RwLock<Arc<crate::trigger::RuleSet>>,
    /// Paused routes by name, as on disk (`pause`).
    pauses: RwLock<std::collections::HashMap<String, crate::store::Pause>>,
}

impl Dispatcher {
    /// Build every route's channel and start the lanes, the event recorder
    /// (reading inbound messages by `replies`) and the expiry sweep.
    pub async fn start(
        store: Store,
        cfg: DispatchCfg,
        policy: Policy,
        routes: &[Route],
        replies: ReplyRules,
    ) -> std::io::Result<Arc<Dispatcher>> {
        let pauses = store.route_pauses().await.map_err(|e| std::io::Error::other(format!("route pauses: {e}")))?;
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
            policy: RwLock::new(policy),
            lanes: RwLock::new(Arc::new(lanes)),
            routing: RwLock::new(Arc::new(Routing::new(routes))),
            events: events_tx,
            cancel,
            tracker: TaskTracker::new(),
            sweep_beat: AtomicI64::new(now_ms()),
            throughput: Throughput::default(),
            replies: RwLock::new(Arc::new(replies)),
            rules: RwLock::default(),
            pauses: RwLock::new(pauses.into_iter().map(|p| (p.route.clone(), p)).collect()),
        });
        d.adopt_orphans().await;
        for lane in d.lanes().iter() {
            start_lane(&d, lane);
        }
        let events_rx = Arc::new(tokio::sync::Mutex::new(events_rx));
        let (d2, stop) = (d.clone(), d.cancel.clone());
        tokio::spawn(crate::supervise::run("events", String::new(), stop, move || {
            record::record_events(d2.clone(), events_rx.clone())
        }));
        let (d2, stop) = (d.clone(), d.cancel.clone());
        tokio::spawn(crate::supervise::run("sweep", String::new(), stop, move || sweep::sweep(d2.clone())));
        Ok(d)
    }

    /// The lanes in config order (a snapshot: a reload may replace them).
    fn lanes(&self) -> Arc<Vec<Arc<Lane>>> {
        self.lanes.read().map(|l| l.clone()).unwrap_or_default()
    }

    /// How numbers map to routes now (a reload may replace it).
    pub fn routing(&self) -> Arc<Routing> {
        self.routing.read().map(|r| r.clone()).unwrap_or_default()
    }

    /// The policy in force now (a reload may replace it).
    pub fn policy(&self) -> Policy {
        self.policy.read().map(|p| *p).unwrap_or_else(|p| *p.into_inner())
    }

    /// Apply a reloaded `[policy]`: every claim from now on asks it.
    pub fn set_policy(&self, policy: Policy) {
        match self.policy.write() {
            Ok(mut p) => *p = policy,
            Err(p) => *p.into_inner() = policy,
        }
    }

    /// How inbound messages are read and answered now.
    fn replies(&self) -> Arc<ReplyRules> {
        self.replies.read().map(|r| r.clone()).unwrap_or_default()
    }

    /// Read and answer inbound messages by `rules` from now on (a reload).
    pub fn set_replies(&self, rules: ReplyRules) {
        if let Ok(mut r) = self.replies.write() {
            *r = Arc::new(rules);
        }
    }

    fn cfg(&self) -> DispatchCfg {
        self.cfg.read().map(|c| c.clone()).unwrap_or_default()
    }

    /// Messages sent, delivered and failed per minute over the hour before `now`.
    pub fn throughput(&self, now: Millis) -> Vec<Minute> {
        self.throughput.last_hour(now)
    }

    /// True when every lane and the housekeeping loop made progress within
    /// `within_ms`: what the systemd watchdog pings stand for.
    pub fn alive(&self, within_ms: i64) -> Result<(), Stuck> {
        let now = now_ms();
        if now - self.sweep_beat.load(Ordering::Relaxed) > within_ms.max(3 * sweep::SWEEP_EVERY.as_millis() as i64) {
            return Err(Stuck::Housekeeping);
        }
        for l in self.lanes().iter() {
            if now - l.heartbeat.load(Ordering::Relaxed) > within_ms {
                return Err(Stuck::Lane(l.cfg.name.clone()));
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

    /// Stop claiming, let in-flight submits finish and the lanes hand back
    /// what they claimed but did not start, within the stop timeout; then
    /// shut the channels down. Whatever is still in flight stays `sending`
    /// on disk and returns to the queue at the next start.
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
                "stop timeout reached with submits (or a lane's hand-back) in flight; they will be retried at the next start"
            );
        }
        for l in self.lanes().iter() {
            l.channel.shutdown().await;
        }
    }
}

/// A route's channel; one that caps its sends is told what it sent in the
/// last day, so a restart does not hand a SIM a fresh daily allowance.
async fn build_channel(store: &Store, r: &Route, events: EventSender) -> std::io::Result<Arc<dyn Channel>> {
    let ch = channel::build(r, events)?;
    if r.spec.counts_sends() {
        match store.sent_since(r.name.clone(), now_ms() - 86_400_000).await {
            Ok(sent) => ch.restore_sent(sent),
            Err(e) => {
                tracing::warn!(route = %r.name, error = %e, "cannot read the last day's sends; caps count from now")
            }
        }
    }
    Ok(ch)
}
