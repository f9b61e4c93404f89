//! The housekeeping sweep: queued messages past their validity expire,
//! old idempotency keys are forgotten, and concatenated inbound messages
//! whose missing parts never came are stored as they are.

use super::Dispatcher;
use crate::message::now_ms;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// Keep idempotency keys this long.
const IDEMPOTENCY_TTL_MS: i64 = 24 * 3600 * 1000;
/// How often the sweep runs.
pub(super) const SWEEP_EVERY: Duration = Duration::from_secs(5);

/// Housekeeping: expire queued messages past their validity, forget old
/// idempotency keys, and store concatenated inbound messages whose missing
/// parts never came.
pub(super) async fn sweep(d: Arc<Dispatcher>) {
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
        if let Err(e) = d.store.flush_stale_inbound(age, d.replies()).await {
            tracing::error!(error = %e, "inbound reassembly sweep failed");
        }
    }
}
