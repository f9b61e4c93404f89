//! Recording what routes report (delivery receipts, inbound messages,
//! undecodable PDUs) into the store, each acknowledged to its route only
//! after the store has committed it.

use super::Dispatcher;
use crate::channel::{Event, RouteEvent};
use crate::message::{Status, now_ms};
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
                    let part = InboundPart { route, from, to, text, concat, sent_at, undecodable: None };
                    store.record_inbound(part).await.map(|_| ()).map_err(|e| ("an inbound message", e))
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
