//! The simulated route (`kind = "sim"`): accepts messages in-process,
//! "delivers" them after a delay, fails the configured fractions, and reports
//! delivery through the same event path the real routes use. The demo runs
//! on it and most tests observe the gateway through its record file.

use super::{Channel, Event, EventSender, Health, Outbound, RouteEvent, RouteState, SubmitError, Submitted};
pub mod config;

use crate::message::ReceiptStatus;
use crate::message::now_ms;
use config::SimRoute;
use futures::future::BoxFuture;
use rand::Rng;
use std::collections::VecDeque;
use std::fs::File;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

pub struct Sim {
    name: String,
    cfg: SimRoute,
    record: Option<Mutex<File>>,
    pending: Arc<Pending>,
}

/// Receipts waiting for their delivery time. The delay is the same for all,
/// so a FIFO is already in time order.
struct Pending {
    queue: Mutex<VecDeque<(Instant, RouteEvent)>>,
    wake: Notify,
}

impl Sim {
    pub fn new(name: &str, cfg: SimRoute, events: EventSender) -> std::io::Result<Arc<Sim>> {
        let record = match &cfg.record {
            Some(path) => Some(Mutex::new(File::options().create(true).append(true).open(path)?)),
            None => None,
        };
        let pending = Arc::new(Pending { queue: Mutex::new(VecDeque::new()), wake: Notify::new() });
        let p = pending.clone();
        let stop = tokio_util::sync::CancellationToken::new();
        tokio::spawn(crate::supervise::run("sim", name.to_string(), stop, move || {
            deliver_loop(p.clone(), events.clone())
        }));
        Ok(Arc::new(Sim { name: name.to_string(), cfg, record, pending }))
    }

    fn record(&self, msg: &Outbound, remote_ids: &[Option<String>]) {
        let Some(file) = &self.record else { return };
        let at = now_ms();
        let mut lines = String::new();
        for (i, rid) in remote_ids.iter().enumerate() {
            let line = serde_json::json!({
                "id": msg.id, "part": i, "parts": remote_ids.len(), "to": msg.to, "from": msg.from,
                "priority": msg.priority.as_str(), "encoding": msg.plan.encoding.as_str(),
                "text": msg.plan.parts.get(i), "remote_id": rid, "attempt": msg.attempt, "at_ms": at,
            });
            lines.push_str(&line.to_string());
            lines.push('\n');
        }
        // One write per message keeps each record whole even if we are killed.
        if let Ok(mut f) = file.lock()
            && let Err(e) = f.write_all(lines.as_bytes())
        {
            tracing::warn!(route = %self.name, error = %e, "cannot append to the sim record file");
        }
    }
}

async fn deliver_loop(p: Arc<Pending>, events: EventSender) {
    loop {
        let next = p.queue.lock().ok().and_then(|q| q.front().map(|(t, _)| *t));
        match next {
            None => p.wake.notified().await,
            Some(t) if t > Instant::now() => {
                tokio::select! {
                    _ = tokio::time::sleep_until(t) => {}
                    _ = p.wake.notified() => {}
                }
            }
            Some(_) => {
                let due: Vec<RouteEvent> = match p.queue.lock() {
                    Ok(mut q) => {
                        let now = Instant::now();
                        let n = q.iter().take_while(|(t, _)| *t <= now).count();
                        q.drain(..n).map(|(_, e)| e).collect()
                    }
                    Err(_) => return,
                };
                for e in due {
                    if events.send(e).is_err() {
                        return;
                    }
                }
            }
        }
    }
}

impl Channel for Sim {
    fn kind(&self) -> &'static str {
        "sim"
    }

    fn submit(&self, msg: Outbound) -> BoxFuture<'_, Result<Submitted, SubmitError>> {
        Box::pin(async move {
            if self.cfg.submit_delay_ms > 0 {
                tokio::time::sleep(Duration::from_millis(self.cfg.submit_delay_ms)).await;
            }
            let (fail, temp, undelivered) = {
                let mut rng = rand::rng();
                (
                    rng.random_bool(self.cfg.fail_fraction),
                    rng.random_bool(self.cfg.temporary_fail_fraction),
                    rng.random_bool(self.cfg.undelivered_fraction),
                )
            };
            if fail {
                return Err(SubmitError::permanent("sim_rejected", "the simulated route refused the message"));
            }
            if temp {
                return Err(SubmitError::temporary("sim_busy", "the simulated route is busy"));
            }
            let remote_ids: Vec<Option<String>> =
                (0..msg.plan.parts.len()).map(|i| Some(format!("sim-{}-{}-{}", msg.id, msg.attempt, i))).collect();
            self.record(&msg, &remote_ids);
            let at = Instant::now() + Duration::from_millis(self.cfg.delivery_delay_ms);
            if let Ok(mut q) = self.pending.queue.lock() {
                for rid in remote_ids.iter().flatten() {
                    let (status, error_code, error_text) = if undelivered {
                        (
                            ReceiptStatus::Undelivered,
                            Some("sim_undelivered".into()),
                            Some("simulated handset unreachable".into()),
                        )
                    } else {
                        (ReceiptStatus::Delivered, None, None)
                    };
                    q.push_back((
                        at,
                        RouteEvent {
                            route: self.name.clone(),
                            event: Event::Receipt {
                                remote_id: rid.clone(),
                                status,
                                error_code,
                                error_text,
                                sc_time: None,
                                legacy_id: None,
                            },
                            ack: None,
                        },
                    ));
                }
            }
            self.pending.wake.notify_one();
            Ok(Submitted { first_part: 0, remote_ids, concat_ref: None })
        })
    }

    fn health(&self) -> Health {
        Health { state: RouteState::Up, detail: None, members: Vec::new() }
    }
}
