//! Prometheus metrics: the recorder, histogram buckets, the names every
//! module records under, and the gauges read fresh at each scrape (queue,
//! routes, binds). Served at `GET /metrics` in the text format.

use crate::channel::RouteState;
use crate::dispatch::Dispatcher;
use crate::message::now_ms;
use crate::store::Store;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;

pub const ACCEPTED: &str = "smsgw_messages_accepted_total";
pub const SUBMITS: &str = "smsgw_submits_total";
pub const SUBMIT_SECONDS: &str = "smsgw_submit_duration_seconds";
pub const DELIVERY_SECONDS: &str = "smsgw_delivery_duration_seconds";
pub const RECEIPTS: &str = "smsgw_receipts_total";
/// Messages that reached a final state, by route and that state.
pub const FINISHED: &str = "smsgw_messages_finished_total";
pub const INBOUND: &str = "smsgw_inbound_total";
pub const RATE_WAIT: &str = "smsgw_rate_limit_wait_seconds";
pub const COMMIT_SECONDS: &str = "smsgw_store_commit_duration_seconds";
/// Requests refused by an API key's own limits, by key and reason
/// (`forbidden`, `rate_limited`, `quota_exceeded`).
pub const KEY_REFUSED: &str = "smsgw_api_key_refused_total";
/// Long-lived tasks (binds, modems, lanes) started again after a panic.
pub const TASK_RESTARTS: &str = "smsgw_task_restarts_total";

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Install the process-wide recorder (once; later calls reuse it).
pub fn install() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let fast = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];
            let slow = [0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0, 3600.0];
            let built = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full(COMMIT_SECONDS.into()), &fast)
                .and_then(|b| b.set_buckets_for_metric(Matcher::Full(SUBMIT_SECONDS.into()), &fast))
                .and_then(|b| b.set_buckets_for_metric(Matcher::Full(RATE_WAIT.into()), &fast))
                .and_then(|b| b.set_buckets_for_metric(Matcher::Full(DELIVERY_SECONDS.into()), &slow))
                .and_then(|b| b.install_recorder());
            match built {
                Ok(h) => Some(h),
                Err(e) => {
                    tracing::warn!(error = %e, "metrics recorder not installed");
                    None
                }
            }
        })
        .as_ref()
}

/// The text exposition, with the gauges brought up to date first.
pub async fn render(store: &Store, d: &Dispatcher) -> Result<String, crate::store::StoreError> {
    let counts = store.counts().await?;
    // Every status, so one that emptied (everything sent, cancelled or
    // pruned) reads 0 rather than the last count a scrape saw.
    for status in crate::message::Status::ALL {
        let n = counts.by_status.get(status.as_str()).copied().unwrap_or(0);
        metrics::gauge!("smsgw_messages", "status" => status.as_str()).set(n as f64);
    }
    for lane in d.lanes().iter() {
        let route = lane.cfg.name.clone();
        for p in crate::message::Priority::ALL {
            let n = counts.queued.get(&route).and_then(|m| m.get(p.as_str())).copied().unwrap_or(0);
            metrics::gauge!("smsgw_queue_depth", "route" => route.clone(), "priority" => p.as_str()).set(n as f64);
        }
        let h = lane.health();
        let state = match h.state {
            RouteState::Up => 1.0,
            RouteState::Degraded => 0.5,
            RouteState::Down => 0.0,
        };
        metrics::gauge!("smsgw_route_state", "route" => route.clone()).set(state);
        metrics::gauge!("smsgw_route_in_flight", "route" => route.clone()).set(lane.in_flight() as f64);
        for m in h.members {
            let up = if m.state == RouteState::Down { 0.0 } else { 1.0 };
            metrics::gauge!("smsgw_route_member_up", "route" => route.clone(), "member" => m.name.clone()).set(up);
            metrics::gauge!("smsgw_route_member_in_flight", "route" => route.clone(), "member" => m.name)
                .set(m.in_flight as f64);
        }
    }
    for m in d.lanes().iter().flat_map(|l| l.channel.modems()) {
        use crate::channel::modem::state::Phase;
        let (route, name) = (m.route.clone(), m.info.port.clone());
        let ready = matches!(m.state, Phase::Ready | Phase::Sending);
        metrics::gauge!("smsgw_modem_up", "route" => route.clone(), "modem" => name.clone()).set(if ready {
            1.0
        } else {
            0.0
        });
        // One series per state, 1 for the current one: alerts can name it.
        for phase in Phase::ALL {
            let on = if phase == m.state { 1.0 } else { 0.0 };
            metrics::gauge!("smsgw_modem_state", "route" => route.clone(), "modem" => name.clone(), "state" => phase.as_str())
                .set(on);
        }
        if let Some(dbm) = m.info.signal_dbm {
            metrics::gauge!("smsgw_modem_signal_dbm", "route" => route.clone(), "modem" => name.clone())
                .set(dbm as f64);
        }
        if let Some(r) = m.info.registration {
            metrics::gauge!("smsgw_modem_registration", "route" => route.clone(), "modem" => name.clone())
                .set(r as f64);
        }
        // The modem keeps these counts; they only grow while the daemon runs.
        metrics::counter!("smsgw_modem_sms_sent_total", "route" => route.clone(), "modem" => name.clone())
            .absolute(m.sent);
        metrics::counter!("smsgw_modem_send_failures_total", "route" => route.clone(), "modem" => name.clone())
            .absolute(m.failed);
        metrics::counter!("smsgw_modem_sms_received_total", "route" => route, "modem" => name).absolute(m.received);
    }
    let oldest = counts.oldest_queued_at.map_or(0.0, |t| (now_ms() - t).max(0) as f64 / 1000.0);
    metrics::gauge!("smsgw_queue_oldest_age_seconds").set(oldest);
    Ok(install().map(|h| h.render()).unwrap_or_default())
}
