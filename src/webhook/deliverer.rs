//! The deliverer: one supervised task that fans the outbox out into
//! deliveries, claims the due ones, hands each to an attempt (at most
//! `concurrency` at once per subscription), and records the results in
//! batches. It wakes when the store commits new events, when results free a
//! subscription's slots (or unblock a message's next event), and when the
//! earliest waiting delivery falls due.
//!
//! A subscription may have more deliveries claimed than in flight (a window
//! of `concurrency * WINDOW_PER_SLOT`), so the HTTP attempts never wait for
//! the store's commits between them. Each claimed delivery is leased for the
//! attempt's timeout and a margin: after a crash, what was claimed goes out
//! again once its lease runs out (receivers dedupe by `webhook-id`). A lease
//! that runs out while the delivery still waits its turn here is renewed by
//! the next claim, which this task recognises as its own.

use super::payload;
use super::send::{Answer, ClientError, Sender, Verdict, backoff};
use crate::config::KeyGrant;
use crate::config::webhooks::{Webhooks, secret_bytes};
use crate::message::{Millis, now_ms};
use crate::store::{AttemptOutcome, AttemptRecord, ConfigSubscription, Due, Store};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::sync::{Notify, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Events fanned out per transaction.
const FAN_OUT_BATCH: usize = 2000;
/// Deliveries claimed per subscription for each attempt slot.
const WINDOW_PER_SLOT: usize = 64;
/// The most deliveries one subscription has claimed at once.
const MAX_WINDOW: usize = 1024;
/// Deliveries claimed per transaction at most.
const MAX_CLAIM: usize = 2048;
/// Attempt results recorded per transaction at most.
const MAX_RECORD: usize = 2048;
/// A lease is the attempt's timeout and this.
const LEASE_MARGIN: Duration = Duration::from_secs(5);
/// The longest sleep without a wake.
const IDLE: Duration = Duration::from_secs(1);
/// How long new events gather after a wake before they are fanned out:
/// one fan-out transaction for a burst of commits, not one per commit
/// (each is a write of its own, and a busy store commits hundreds of
/// groups a second).
const GATHER: Duration = Duration::from_millis(200);

/// The `[webhooks]` settings in force (swapped whole by a reload).
struct Settings {
    sender: Sender,
    timeout: Duration,
    concurrency: usize,
    retry_for_ms: Millis,
    /// Keys with the `admin` scope: they receive the events nobody owns.
    admin_keys: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("cannot store the webhook subscriptions: {0}")]
    Store(#[from] crate::store::StoreError),
}

impl Settings {
    fn new(cfg: &Webhooks, keys: &[KeyGrant]) -> Result<Settings, ClientError> {
        let timeout = Duration::from_secs(cfg.timeout_secs);
        Ok(Settings {
            sender: Sender::new(timeout)?,
            timeout,
            concurrency: cfg.concurrency.max(1),
            retry_for_ms: cfg.retry_for_secs as Millis * 1000,
            admin_keys: keys
                .iter()
                .filter(|k| k.scopes.contains(&crate::config::Scope::Admin))
                .map(|k| k.name.clone())
                .collect(),
        })
    }

    fn window(&self) -> usize {
        (self.concurrency * WINDOW_PER_SLOT).min(MAX_WINDOW)
    }

    fn lease_ms(&self) -> Millis {
        (self.timeout + LEASE_MARGIN).as_millis() as Millis
    }
}

/// The file's subscriptions as the store keeps them.
fn config_subscriptions(cfg: &Webhooks) -> Vec<ConfigSubscription> {
    cfg.subscriptions
        .iter()
        .map(|s| ConfigSubscription {
            name: s.name.clone(),
            api_key: s.key.clone(),
            url: s.url.clone(),
            events: s.events.clone(),
            secret: s.secret.as_ref().map(|x| x.expose().to_string()).unwrap_or_default(),
        })
        .collect()
}

pub struct Deliverer {
    store: Store,
    settings: RwLock<Arc<Settings>>,
    /// Poked by the store after commits that wrote events.
    outbox: Arc<Notify>,
    /// Poked when recorded results free slots or unblock deliveries.
    kick: Notify,
    /// Claimed deliveries not yet recorded, by subscription.
    held: Mutex<HashMap<i64, HashSet<i64>>>,
    /// Subscriptions whose receiver answered 410: what they have claimed
    /// here is not sent (the store disables it with the subscription). Once
    /// the 410 is committed, the number of that commit (`recorded`): a
    /// claim begun after it that returns the subscription's deliveries
    /// means the subscription was enabled again.
    gone: Mutex<HashMap<i64, Option<u64>>>,
    /// Record transactions committed so far.
    recorded: AtomicU64,
    cancel: CancellationToken,
    /// The attempts under way.
    attempts: TaskTracker,
    stopped: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Deliverer {
    /// Store the file's subscriptions and start delivering.
    pub async fn start(store: Store, cfg: &Webhooks, keys: &[KeyGrant]) -> Result<Arc<Deliverer>, SettingsError> {
        let settings = Settings::new(cfg, keys)?;
        store.sync_webhook_config(config_subscriptions(cfg)).await?;
        let d = Arc::new(Deliverer {
            outbox: store.outbox_notify(),
            store,
            settings: RwLock::new(Arc::new(settings)),
            kick: Notify::new(),
            held: Mutex::new(HashMap::new()),
            gone: Mutex::new(HashMap::new()),
            recorded: AtomicU64::new(0),
            cancel: CancellationToken::new(),
            attempts: TaskTracker::new(),
            stopped: Mutex::new(None),
        });
        let (d2, stop) = (d.clone(), d.cancel.clone());
        let task = tokio::spawn(crate::supervise::run("webhooks", String::new(), stop, move || d2.clone().run()));
        *d.stopped.lock().unwrap_or_else(|p| p.into_inner()) = Some(task);
        Ok(d)
    }

    /// Apply a reloaded `[webhooks]` table and keys: the file's
    /// subscriptions again, new limits for the next attempts.
    pub async fn reload(&self, cfg: &Webhooks, keys: &[KeyGrant]) -> Result<(), SettingsError> {
        let settings = Settings::new(cfg, keys)?;
        self.store.sync_webhook_config(config_subscriptions(cfg)).await?;
        *self.settings.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(settings);
        self.kick.notify_one();
        Ok(())
    }

    /// Stop claiming; let the attempts under way finish (within their
    /// timeout) and record them. What was claimed and not attempted goes out
    /// after the next start, when its lease has run out.
    pub async fn shutdown(&self) {
        self.cancel.cancel();
        let task = self.stopped.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(task) = task {
            let limit = self.settings().timeout + LEASE_MARGIN;
            if tokio::time::timeout(limit, task).await.is_err() {
                tracing::warn!("webhook attempts still under way at the stop; they will be made again");
            }
        }
    }

    fn settings(&self) -> Arc<Settings> {
        self.settings.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// One life of the task: the claim loop and the recorder, until stopped.
    async fn run(self: Arc<Self>) {
        // A previous life's claims are leased on disk; start afresh here.
        self.held.lock().unwrap_or_else(|p| p.into_inner()).clear();
        let (tx, rx) = mpsc::unbounded_channel();
        let recorder = tokio::spawn(self.clone().record(rx));
        self.claim_loop(tx).await;
        self.attempts.close();
        self.attempts.wait().await;
        self.attempts.reopen();
        let _ = recorder.await;
    }

    async fn claim_loop(self: &Arc<Self>, tx: mpsc::UnboundedSender<AttemptRecord>) {
        let mut slots: HashMap<i64, Arc<Semaphore>> = HashMap::new();
        let mut slots_of = 0;
        loop {
            let s = self.settings();
            if slots_of != s.concurrency {
                slots.clear();
                slots_of = s.concurrency;
            }
            let mut wait = IDLE;
            let fanned = self.fan_out(&s).await;
            match self.claim(&s).await {
                Ok((due, next_at)) => {
                    if let Some(t) = next_at {
                        wait = wait.min(Duration::from_millis((t - now_ms()).max(0) as u64));
                    }
                    self.start_attempts(&s, due, &mut slots, &tx).await;
                }
                Err(e) => tracing::error!(error = %e, "cannot claim webhook deliveries; trying again"),
            }
            if fanned == Some(true) {
                continue;
            }
            tokio::select! {
                _ = self.outbox.notified() => {
                    tokio::select! {
                        _ = tokio::time::sleep(GATHER) => {}
                        _ = self.cancel.cancelled() => return,
                    }
                }
                _ = self.kick.notified() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = self.cancel.cancelled() => return,
            }
        }
    }

    /// Fan out what the outbox has; `Some(true)` when there may be more.
    async fn fan_out(&self, s: &Settings) -> Option<bool> {
        match self.store.fan_out(s.admin_keys.clone(), FAN_OUT_BATCH).await {
            Ok(f) => Some(f.events == FAN_OUT_BATCH),
            Err(e) => {
                tracing::error!(error = %e, "cannot fan webhook events out; trying again");
                None
            }
        }
    }

    /// Claim what is due and not held here already.
    async fn claim(&self, s: &Settings) -> Result<(Vec<Due>, Option<Millis>), crate::store::StoreError> {
        let busy: HashMap<i64, usize> = {
            let held = self.held.lock().unwrap_or_else(|p| p.into_inner());
            held.iter().map(|(k, v)| (*k, v.len())).collect()
        };
        let begun = self.recorded.load(Ordering::SeqCst);
        let claim = self.store.claim_deliveries(s.lease_ms(), s.window(), busy, MAX_CLAIM).await?;
        let mut gone = self.gone.lock().unwrap_or_else(|p| p.into_inner());
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let due = claim
            .due
            .into_iter()
            .filter(|d| match gone.get(&d.webhook_id) {
                None => true,
                // Enabled again after the 410 was committed.
                Some(Some(at)) if begun >= *at => {
                    gone.remove(&d.webhook_id);
                    true
                }
                // The store disables these with the subscription.
                Some(_) => false,
            })
            // A lease that ran out while the delivery waited here came
            // back: renewed, and still this task's to send once.
            .filter(|d| held.entry(d.webhook_id).or_default().insert(d.event_id))
            .collect();
        Ok((due, claim.next_at))
    }

    /// Build the bodies (one read for the lot) and start an attempt for each.
    async fn start_attempts(
        self: &Arc<Self>,
        s: &Arc<Settings>,
        due: Vec<Due>,
        slots: &mut HashMap<i64, Arc<Semaphore>>,
        tx: &mpsc::UnboundedSender<AttemptRecord>,
    ) {
        if due.is_empty() {
            return;
        }
        let mut ids: Vec<i64> = due.iter().map(|d| d.event_id).collect();
        ids.sort_unstable();
        ids.dedup();
        let rows = match self.store.event_rows(ids).await {
            Ok(rows) => rows,
            Err(e) => {
                // Leased: they come back when the lease runs out.
                tracing::error!(error = %e, "cannot read webhook events; their deliveries wait for the next try");
                let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
                for d in &due {
                    held.entry(d.webhook_id).or_default().remove(&d.event_id);
                }
                return;
            }
        };
        let bodies: HashMap<i64, Arc<Vec<u8>>> = rows.into_iter().map(|r| (r.id, Arc::new(payload::body(r)))).collect();
        for d in due {
            let Some(body) = bodies.get(&d.event_id).cloned() else {
                let _ = tx.send(AttemptRecord {
                    webhook_id: d.webhook_id,
                    event_id: d.event_id,
                    at: now_ms(),
                    http_status: None,
                    latency_ms: 0,
                    error: Some("the event is no longer stored".into()),
                    outcome: AttemptOutcome::Dead,
                });
                continue;
            };
            let slot = slots.entry(d.webhook_id).or_insert_with(|| Arc::new(Semaphore::new(s.concurrency))).clone();
            let (me, s, tx) = (self.clone(), s.clone(), tx.clone());
            self.attempts.spawn(async move {
                let permit = tokio::select! {
                    p = slot.acquire_owned() => p,
                    // Stopping: left leased, sent after the next start.
                    _ = me.cancel.cancelled() => return,
                };
                if me.gone.lock().unwrap_or_else(|p| p.into_inner()).contains_key(&d.webhook_id) {
                    me.release(&[(d.webhook_id, d.event_id)]);
                    return;
                }
                let record = attempt(&s, &d, &body).await;
                if record.outcome == AttemptOutcome::Gone && !d.callback {
                    me.gone.lock().unwrap_or_else(|p| p.into_inner()).insert(d.webhook_id, None);
                }
                drop(permit);
                let _ = tx.send(record);
            });
        }
    }

    /// Record results in batches (what arrived while the last batch was
    /// being written), until every sender is gone.
    async fn record(self: Arc<Self>, mut rx: mpsc::UnboundedReceiver<AttemptRecord>) {
        let mut batch = Vec::new();
        while rx.recv_many(&mut batch, MAX_RECORD).await > 0 {
            let retry_for = self.settings().retry_for_ms;
            let keys: Vec<(i64, i64)> = batch.iter().map(|r| (r.webhook_id, r.event_id)).collect();
            let gone: Vec<i64> =
                batch.iter().filter(|r| r.outcome == AttemptOutcome::Gone).map(|r| r.webhook_id).collect();
            match self.store.record_deliveries(std::mem::take(&mut batch), retry_for).await {
                Ok(r) => {
                    let seq = self.recorded.fetch_add(1, Ordering::SeqCst) + 1;
                    let mut marks = self.gone.lock().unwrap_or_else(|p| p.into_inner());
                    for hook in gone {
                        if let Some(committed) = marks.get_mut(&hook) {
                            committed.get_or_insert(seq);
                        }
                    }
                    drop(marks);
                    for (result, n) in [("done", r.done), ("retry", r.retry), ("dead", r.dead), ("gone", r.gone)] {
                        if n > 0 {
                            metrics::counter!(crate::metrics::WEBHOOK_DELIVERIES, "result" => result).increment(n);
                        }
                    }
                    if r.dead > 0 {
                        tracing::warn!(count = r.dead, "webhook deliveries dead: retried for the whole retry period");
                    }
                    if r.gone > 0 {
                        tracing::warn!(
                            count = r.gone,
                            "a webhook receiver answered 410 Gone; its subscription is disabled"
                        );
                    }
                }
                // Leased: these attempts are made again when it runs out.
                Err(e) => tracing::error!(error = %e, "cannot record webhook attempts; they will be made again"),
            }
            self.release(&keys);
        }
    }

    /// These deliveries are no longer held here (recorded, or dropped for
    /// the store to settle); the claim loop may look again.
    fn release(&self, keys: &[(i64, i64)]) {
        {
            let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
            for (hook, event) in keys {
                if let Some(h) = held.get_mut(hook) {
                    h.remove(event);
                }
            }
        }
        self.kick.notify_one();
    }
}

/// One attempt of `d`, as the record to write.
async fn attempt(s: &Settings, d: &Due, body: &[u8]) -> AttemptRecord {
    let keys: Vec<Vec<u8>> = d.secrets.iter().filter_map(|k| secret_bytes(k).ok()).collect();
    let answer = if keys.is_empty() {
        let error = Some("no signing secret in force for this subscription".to_string());
        Answer { verdict: Verdict::Retry { after: None }, status: None, latency: Duration::ZERO, error }
    } else {
        s.sender.attempt(&d.url, &payload::event_id(d.event_id), body.to_vec(), &keys).await
    };
    metrics::histogram!(crate::metrics::WEBHOOK_SECONDS).record(answer.latency.as_secs_f64());
    let at = now_ms();
    let outcome = match answer.verdict {
        Verdict::Done => AttemptOutcome::Done,
        Verdict::Gone => AttemptOutcome::Gone,
        Verdict::Retry { after } => {
            let wait = after.unwrap_or_else(|| backoff(d.attempts + 1));
            AttemptOutcome::Retry { next_at: at + wait.as_millis() as Millis }
        }
    };
    if let Some(e) = &answer.error {
        tracing::debug!(webhook = d.webhook_id, event = d.event_id, url = %d.url, error = %e, "webhook attempt failed");
    }
    AttemptRecord {
        webhook_id: d.webhook_id,
        event_id: d.event_id,
        at,
        http_status: answer.status,
        latency_ms: answer.latency.as_millis() as i64,
        error: answer.error,
        outcome,
    }
}
