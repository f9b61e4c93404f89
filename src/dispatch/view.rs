//! What readers (the API, `/metrics`, the status line) see of the routes: a
//! snapshot of plain values taken from the lanes, so nothing outside the
//! dispatcher reads a lane or a channel directly.

use super::Dispatcher;
use super::lane::Lane;
use crate::channel::{Device, Member, RouteState};
use crate::store::Pause;
use std::sync::atomic::Ordering;

/// One route as it is now: config, health, load and counters since start.
#[derive(Debug, Clone)]
pub struct RouteView {
    pub name: String,
    /// The route's kind (`sim`, `smpp`, `modem`).
    pub kind: &'static str,
    pub state: RouteState,
    pub detail: Option<String>,
    pub prefixes: Vec<String>,
    /// Messages per second; `None` means no limit.
    pub rate: Option<f64>,
    pub burst: Option<u32>,
    /// Submits the route may have in flight, and how many it has.
    pub concurrency: usize,
    pub in_flight: usize,
    /// Since start: messages the route accepted, refused for good, or retried.
    pub sent: u64,
    pub failed: u64,
    pub retried: u64,
    pub last_error: Option<String>,
    /// The route's binds or modems, each with its state and load.
    pub members: Vec<Member>,
    /// Its members that are devices on this box (modems), as their kind
    /// shows them.
    pub devices: Vec<Device>,
    /// Set while an operator has it paused.
    pub paused: Option<Pause>,
}

impl RouteView {
    fn of(l: &Lane, paused: Option<Pause>) -> RouteView {
        let h = l.health();
        RouteView {
            name: l.cfg.name.clone(),
            kind: l.channel.kind(),
            state: h.state,
            detail: h.detail,
            prefixes: l.cfg.prefixes.clone(),
            rate: l.cfg.rate,
            burst: l.cfg.burst,
            concurrency: l.cfg.concurrency,
            in_flight: l.in_flight(),
            sent: l.sent.load(Ordering::Relaxed),
            failed: l.failed.load(Ordering::Relaxed),
            retried: l.retried.load(Ordering::Relaxed),
            last_error: l.last_error(),
            members: h.members,
            devices: l.channel.devices(),
            paused,
        }
    }
}

impl Dispatcher {
    /// Every route in config order, as it is now (a reload may change them).
    pub fn snapshot(&self) -> Vec<RouteView> {
        self.lanes().iter().map(|l| RouteView::of(l, self.paused(&l.cfg.name))).collect()
    }
}
