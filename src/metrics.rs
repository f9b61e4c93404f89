//! Prometheus metrics: the recorder, histogram buckets and the names every
//! module records under. A leaf: the gauges read fresh at each scrape and
//! the text served at `GET /metrics` are in `api::metrics`.

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
/// Messages policy stopped, at accept or at claim, by reason (`opted_out`,
/// `no_consent`, `capped`).
pub const SUPPRESSED: &str = "smsgw_messages_suppressed_total";
/// Messages a claim found due in their recipient's quiet hours and moved
/// to the window's opening (a message may be counted again if it comes due
/// in quiet hours again).
pub const QUIET_DEFERRED: &str = "smsgw_messages_quiet_deferred_total";
/// Long-lived tasks (binds, modems, lanes) started again after a panic.
pub const TASK_RESTARTS: &str = "smsgw_task_restarts_total";
/// Webhook attempts by what became of their delivery (`done`, `retry`,
/// `dead`, `gone`).
pub const WEBHOOK_DELIVERIES: &str = "smsgw_webhook_deliveries_total";
/// How long one webhook attempt took, answer read.
pub const WEBHOOK_SECONDS: &str = "smsgw_webhook_delivery_seconds";

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Install the process-wide recorder (once; later calls reuse it).
pub fn install() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let fast = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];
            let webhook = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];
            let slow = [0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0, 3600.0];
            let built = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full(COMMIT_SECONDS.into()), &fast)
                .and_then(|b| b.set_buckets_for_metric(Matcher::Full(SUBMIT_SECONDS.into()), &fast))
                .and_then(|b| b.set_buckets_for_metric(Matcher::Full(RATE_WAIT.into()), &fast))
                .and_then(|b| b.set_buckets_for_metric(Matcher::Full(WEBHOOK_SECONDS.into()), &webhook))
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
