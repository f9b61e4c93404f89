//! Recording what routes report (delivery receipts, inbound messages,
//! undecodable PDUs) into the store, each acknowledged to its route only
//! after the store has committed it; inbound messages are read by the
//! `[replies]` rules (built here from the config) as they are stored.

use super::Dispatcher;
use crate::channel::{Event, RouteEvent};
use crate::config::Config;
use crate::message::{Status, now_ms};
use crate::replies::{Intent, Keyword, ReplyRules};
use crate::store::{InboundPart, Receipt, ReceiptMatch, Undecodable};
use crate::throughput::Outcome;
use std::sync::Arc;
use tokio::sync::mpsc;

/// Record what routes report. Each event is written by its own task so the
/// writer can commit many together; after the stop signal events are no
/// longer taken (a real peer sends them again; the simulated one loses them).
/// The channel has no bound of its own because every producer has one: an
/// SMPP bind waits for at most a window of commits before it stops reading,
/// a modem for one at a time, and the simulated route reports only what was
/// sent through it.
pub(super) async fn record_events(
    d: Arc<Dispatcher>,
    rx: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<RouteEvent>>>,
) {
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
                    if let Ok(m) = &matched {
                        d2.count_finished(&route, m);
                    }
                    matched.map(|_| ()).map_err(|e| ("a delivery receipt", e))
                }
                Event::Inbound { from, to, text, concat, sent_at } => {
                    metrics::counter!(crate::metrics::INBOUND, "route" => route.clone()).increment(1);
                    let part = InboundPart { route: route.clone(), from, to, text, concat, sent_at, undecodable: None };
                    let recorded = store.record_inbound(part, d2.replies()).await;
                    // It may have queued an auto-reply through its route.
                    d2.wake(&route);
                    recorded.map(|_| ()).map_err(|e| ("an inbound message", e))
                }
                Event::Undecodable { to, pdu, reason } => {
                    metrics::counter!(crate::metrics::INBOUND, "route" => route.clone()).increment(1);
                    let part = InboundPart {
                        route,
                        from: String::new(),
                        to,
                        text: String::new(),
                        concat: None,
                        sent_at: None,
                        undecodable: Some(Undecodable { pdu, reason }),
                    };
                    store.record_inbound(part, d2.replies()).await.map(|_| ()).map_err(|e| ("an undecodable inbound PDU", e))
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

/// The `[replies]` rules of `cfg`: its lists in order of precedence (a
/// word in two lists means the first), its texts and window, the numbers'
/// region, and auto-replies valid as long as a message without a
/// `valid_until`.
pub fn reply_rules<S>(cfg: &Config<S>) -> ReplyRules {
    let r = &cfg.replies;
    let mut rules = ReplyRules::default();
    rules.help_text = r.help_text.clone();
    rules.optout_reply = r.optout_reply.clone();
    rules.optin_reply = r.optin_reply.clone();
    rules.window_ms = i64::from(r.window_hours) * 3_600_000;
    rules.region = cfg.numbers.default_region.clone();
    rules.reply_validity_ms = cfg.dispatch.default_validity_secs as i64 * 1000;
    rules
        .keyword(Keyword::OptoutAll, &r.optout_all)
        .keyword(Keyword::Optout, &r.optout)
        .keyword(Keyword::Optin, &r.optin)
        .keyword(Keyword::Help, &r.help)
        .intent(Intent::Yes, &r.yes)
        .intent(Intent::No, &r.no)
}

impl Dispatcher {
    /// Count a message a receipt made final (`smsgw_messages_finished_total`,
    /// the time to delivery, the status page's throughput), wherever the
    /// receipt was applied: as it came, or with the submit result it overtook.
    pub(super) fn count_finished(&self, route: &str, matched: &ReceiptMatch) {
        let ReceiptMatch::Final { status, created_at } = *matched else { return };
        metrics::counter!(crate::metrics::FINISHED, "route" => route.to_string(), "status" => status.as_str())
            .increment(1);
        if status == Status::Delivered {
            metrics::histogram!(crate::metrics::DELIVERY_SECONDS, "route" => route.to_string())
                .record((now_ms() - created_at).max(0) as f64 / 1000.0);
            self.throughput.count(now_ms(), Outcome::Delivered);
        } else {
            self.throughput.count(now_ms(), Outcome::Failed);
        }
    }
}
