//! The text served at `GET /metrics`: the gauges read fresh at each scrape
//! (messages by status, queue depth, routes, their binds and modems, each
//! trigger rule's funnel) set from the store's counts and the dispatcher's
//! snapshot, then the recorder's exposition.

use crate::channel::RouteState;
use crate::dispatch::Dispatcher;
use crate::message::now_ms;
use crate::store::Store;

/// The text exposition, with the gauges brought up to date first.
pub async fn render(store: &Store, d: &Dispatcher) -> Result<String, crate::store::StoreError> {
    let counts = store.counts().await?;
    // Every status, so one that emptied (everything sent, cancelled or
    // pruned) reads 0 rather than the last count a scrape saw.
    for status in crate::message::Status::ALL {
        let n = counts.by_status.get(status.as_str()).copied().unwrap_or(0);
        ::metrics::gauge!("smsgw_messages", "status" => status.as_str()).set(n as f64);
    }
    let routes = d.snapshot();
    for r in &routes {
        let route = r.name.clone();
        for p in crate::message::Priority::ALL {
            let n = counts.queued.get(&route).and_then(|m| m.get(p.as_str())).copied().unwrap_or(0);
            ::metrics::gauge!("smsgw_queue_depth", "route" => route.clone(), "priority" => p.as_str()).set(n as f64);
        }
        let state = match r.state {
            RouteState::Up => 1.0,
            RouteState::Degraded => 0.5,
            RouteState::Down => 0.0,
        };
        ::metrics::gauge!("smsgw_route_state", "route" => route.clone()).set(state);
        ::metrics::gauge!("smsgw_route_paused", "route" => route.clone()).set(if r.paused.is_some() {
            1.0
        } else {
            0.0
        });
        ::metrics::gauge!("smsgw_route_in_flight", "route" => route.clone()).set(r.in_flight as f64);
        for m in &r.members {
            let up = if m.state == RouteState::Down { 0.0 } else { 1.0 };
            ::metrics::gauge!("smsgw_route_member_up", "route" => route.clone(), "member" => m.name.clone()).set(up);
            ::metrics::gauge!("smsgw_route_member_in_flight", "route" => route.clone(), "member" => m.name.clone())
                .set(m.in_flight as f64);
        }
    }
    let devices = routes.iter().flat_map(|r| r.devices.iter().map(|m| (r.name.clone(), m)));
    for (route, m) in devices {
        let (ready, name) = (m.ready, m.port.clone());
        ::metrics::gauge!("smsgw_modem_up", "route" => route.clone(), "modem" => name.clone()).set(if ready {
            1.0
        } else {
            0.0
        });
        // One series per state, 1 for the current one: alerts can name it.
        for (state, current) in &m.states {
            let on = if *current { 1.0 } else { 0.0 };
            ::metrics::gauge!("smsgw_modem_state", "route" => route.clone(), "modem" => name.clone(), "state" => *state)
                .set(on);
        }
        if let Some(dbm) = m.signal_dbm {
            ::metrics::gauge!("smsgw_modem_signal_dbm", "route" => route.clone(), "modem" => name.clone())
                .set(dbm as f64);
        }
        if let Some(r) = m.registration {
            ::metrics::gauge!("smsgw_modem_registration", "route" => route.clone(), "modem" => name.clone())
                .set(r as f64);
        }
        // The modem keeps these counts; they only grow while the daemon runs.
        ::metrics::counter!("smsgw_modem_sms_sent_total", "route" => route.clone(), "modem" => name.clone())
            .absolute(m.sent);
        ::metrics::counter!("smsgw_modem_send_failures_total", "route" => route.clone(), "modem" => name.clone())
            .absolute(m.failed);
        ::metrics::counter!("smsgw_modem_sms_received_total", "route" => route, "modem" => name).absolute(m.received);
    }
    let oldest = counts.oldest_queued_at.map_or(0.0, |t| (now_ms() - t).max(0) as f64 / 1000.0);
    ::metrics::gauge!("smsgw_queue_oldest_age_seconds").set(oldest);
    // Webhook deliveries waiting (due, backing off or under way).
    let pending = store.pending_deliveries().await?;
    ::metrics::gauge!("smsgw_webhook_pending").set(pending as f64);
    // Each rule's funnel, from the store's rows (a rule's counts only grow
    // or move between stages, so a series never goes stale).
    for r in store.rule_stats().await? {
        for (stage, n) in r.stages() {
            ::metrics::gauge!("smsgw_rule_messages", "rule" => r.rule.clone(), "stage" => stage).set(n as f64);
        }
    }
    Ok(crate::metrics::install().map(|h| h.render()).unwrap_or_default())
}
