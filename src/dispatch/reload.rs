//! Applying a new config while running: which routes are kept as they
//! are, which keep their channel under new limits, which are rebuilt, added
//! or removed, and where the queued messages of a removed route go.

use super::lane::{Lane, start_lane};
use super::{Dispatcher, Routing, build_channel};
use crate::channel::spec::Route;
use crate::config::Dispatch as DispatchCfg;
use std::sync::Arc;
use std::time::Duration;

/// Why a new config was not applied; the running one stays in force.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// A new or changed route's channel could not be built.
    #[error("route {route}: {source}")]
    Channel { route: String, source: std::io::Error },
}

impl Dispatcher {
    /// Apply a new config: dispatch settings, and routes added, removed or
    /// changed. A route whose channel settings did not change keeps its
    /// channel (its binds or modems stay up); its limits and prefixes are
    /// replaced. Returns one line per change.
    pub async fn reload(self: &Arc<Self>, cfg: DispatchCfg, routes: &[Route]) -> Result<Vec<String>, ReloadError> {
        let old = self.lanes();
        let mut changes = Vec::new();
        // Build every new channel first: a failure leaves everything as it was.
        let mut built = Vec::new();
        for r in routes {
            match old.iter().find(|l| l.cfg.name == r.name && l.cfg.spec.same_channel(&r.spec)) {
                Some(l) => built.push((r.clone(), l.channel.clone(), Some(l.clone()))),
                None => {
                    let ch = build_channel(&self.store, r, self.events.clone())
                        .await
                        .map_err(|source| ReloadError::Channel { route: r.name.clone(), source })?;
                    built.push((r.clone(), ch, None));
                }
            }
        }
        if let Ok(mut c) = self.cfg.write() {
            *c = cfg;
        }
        let mut lanes = Vec::new();
        for (r, ch, kept) in built {
            match &kept {
                Some(l) if l.cfg == r => {
                    lanes.push(l.clone());
                    continue;
                }
                Some(_) => changes.push(format!("route {}: limits or prefixes changed; channel kept", r.name)),
                None if old.iter().any(|l| l.cfg.name == r.name) => {
                    changes.push(format!("route {}: channel settings changed; reconnecting", r.name))
                }
                None => changes.push(format!("route {}: added", r.name)),
            }
            lanes.push(Arc::new(Lane::new(r, ch, self.cancel.child_token())));
        }
        let new = Arc::new(lanes);
        if let Ok(mut l) = self.lanes.write() {
            *l = new.clone();
        }
        if let Ok(mut t) = self.routing.write() {
            *t = Arc::new(Routing::new(routes));
        }
        for l in old.iter() {
            let kept = new.iter().find(|n| n.cfg.name == l.cfg.name);
            if kept.is_some_and(|n| Arc::ptr_eq(n, l)) {
                continue;
            }
            l.cancel.cancel();
            if !kept.is_some_and(|n| Arc::ptr_eq(&n.channel, &l.channel)) {
                if kept.is_none() {
                    changes.push(format!("route {}: removed", l.cfg.name));
                }
                // In-flight submits finish on the old channel before it closes.
                let (lane, tracker) = (l.clone(), self.tracker.clone());
                tokio::spawn(async move {
                    while lane.in_flight() > 0 {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    drop(tracker);
                    lane.channel.shutdown().await;
                });
            }
        }
        for lane in new.iter() {
            if !old.iter().any(|o| Arc::ptr_eq(o, lane)) {
                start_lane(self, lane);
            }
        }
        self.adopt_orphans().await;
        Ok(changes)
    }

    /// Queued messages of routes that are no longer configured move to the
    /// first route that serves all numbers, or stay (and say so).
    pub(super) async fn adopt_orphans(&self) {
        let Ok(routes) = self.store.queued_routes().await else { return };
        let routing = self.routing();
        for r in routes {
            if routing.contains(&r) {
                continue;
            }
            match routing.catch_all() {
                Some(to) => match self.store.reroute(r.clone(), to.to_string()).await {
                    Ok(n) => {
                        tracing::warn!(from = %r, to = %to, count = n, "moved queued messages of a removed route")
                    }
                    Err(e) => tracing::error!(error = %e, "cannot move messages of removed route {r}"),
                },
                None => tracing::warn!(route = %r, "queued messages wait for route {r}, which is not configured"),
            }
        }
    }
}
