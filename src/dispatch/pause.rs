//! Routes an operator paused: their lanes hand back what they hold and
//! claim nothing (a route with `failover = true` passes its due messages on,
//! and no route fails over to a paused one) while the route's binds or
//! modems stay up, so receipts and inbound messages still come in. A pause
//! is on disk (`store::pauses`), so it outlasts a restart, and in memory
//! here for the lanes to read.

use super::Dispatcher;
use crate::message::now_ms;
use crate::store::{Pause, StoreError};

/// Why a route could not be paused or resumed.
#[derive(Debug, thiserror::Error)]
pub enum PauseError {
    #[error("no route named {0:?} is configured")]
    Unknown(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Dispatcher {
    /// Pause `route` for `by` (an API key), with `reason`; the pause in
    /// force, which is an earlier one when it was paused already.
    pub async fn pause(&self, route: &str, by: &str, reason: Option<String>) -> Result<Pause, PauseError> {
        if !self.routing().contains(route) {
            return Err(PauseError::Unknown(route.to_string()));
        }
        let asked = Pause { route: route.to_string(), at: now_ms(), by: by.to_string(), reason };
        let pause = self.store.pause_route(asked).await?;
        self.pauses_mut(|p| {
            p.insert(route.to_string(), pause.clone());
        });
        tracing::warn!(route, by = %pause.by, reason = pause.reason.as_deref().unwrap_or(""), "route paused");
        self.wake(route);
        Ok(pause)
    }

    /// Resume `route`; whether it was paused.
    pub async fn resume(&self, route: &str, by: &str) -> Result<bool, PauseError> {
        if !self.routing().contains(route) {
            return Err(PauseError::Unknown(route.to_string()));
        }
        let was = self.store.resume_route(route.to_string()).await?;
        self.pauses_mut(|p| {
            p.remove(route);
        });
        if was {
            tracing::warn!(route, by = %by, "route resumed");
        }
        self.wake(route);
        Ok(was)
    }

    /// `route`'s pause, when it is paused.
    pub fn paused(&self, route: &str) -> Option<Pause> {
        self.pauses.read().unwrap_or_else(|p| p.into_inner()).get(route).cloned()
    }

    fn pauses_mut(&self, f: impl FnOnce(&mut std::collections::HashMap<String, Pause>)) {
        f(&mut self.pauses.write().unwrap_or_else(|p| p.into_inner()));
    }
}
