//! A modem as the pool and the readers see it: its phase and identity
//! (`Phase`, `Info`), its counters, cap window and concatenation
//! references (`Modem`), the send job the pool hands it, and what the pool
//! shares with its drivers (`Context`).

use super::config::ModemRoute;
use super::profile::Profile;
use crate::channel::{EventSender, SubmitError, Submitted};
use serde::Serialize;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Starting,
    Ready,
    Sending,
    NoSim,
    PinNeeded,
    NotRegistered,
    Unresponsive,
    Gone,
}

impl Phase {
    pub const ALL: [Phase; 8] = [
        Phase::Starting,
        Phase::Ready,
        Phase::Sending,
        Phase::NoSim,
        Phase::PinNeeded,
        Phase::NotRegistered,
        Phase::Unresponsive,
        Phase::Gone,
    ];

    /// The name the API and the metrics use.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Starting => "starting",
            Phase::Ready => "ready",
            Phase::Sending => "sending",
            Phase::NoSim => "no_sim",
            Phase::PinNeeded => "pin_needed",
            Phase::NotRegistered => "not_registered",
            Phase::Unresponsive => "unresponsive",
            Phase::Gone => "gone",
        }
    }
}

/// What the pool and the API see of a modem.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct Info {
    pub port: String,
    pub profile: Option<String>,
    pub manufacturer: Option<String>,
    pub model: Option<String>,
    pub imei: Option<String>,
    pub imsi: Option<String>,
    pub iccid: Option<String>,
    /// The SIM's own number, when it knows it (AT+CNUM; most SIMs do not).
    pub number: Option<String>,
    pub operator: Option<String>,
    /// 0 not registered, 1 home, 2 searching, 3 denied, 5 roaming.
    pub registration: Option<u8>,
    pub signal_dbm: Option<i32>,
    /// 0 to 5.
    pub signal_bars: Option<u8>,
    pub smsc: Option<String>,
}

pub struct Modem {
    pub info: Mutex<Info>,
    phase: Mutex<(Phase, Option<String>)>,
    pub busy: AtomicBool,
    pub sent: AtomicU64,
    pub failed: AtomicU64,
    pub received: AtomicU64,
    /// Sends in the last minute and day, for the per-modem caps.
    pub(super) window: Mutex<std::collections::VecDeque<std::time::Instant>>,
    /// The next concatenation reference for a long message sent from the
    /// start (one resumed after a failed part keeps the reference the store
    /// kept for it).
    concat: Mutex<u8>,
    jobs: mpsc::Sender<SendJob>,
}

/// A message the pool hands one modem to send, and where its answer goes.
pub struct SendJob {
    /// The message's id in the store.
    pub message: i64,
    pub to: String,
    /// The text's alphabet and parts, as planned for every route.
    pub plan: crate::sms::Plan,
    /// Sent as the relative TP-VP: the network drops the SMS after it.
    pub valid_until: Option<crate::message::Millis>,
    /// Parts before this one went out in an earlier attempt through this
    /// SIM, under `concat_ref`; the send resumes here.
    pub first_part: usize,
    pub concat_ref: Option<u8>,
    pub reply: oneshot::Sender<Result<Submitted, SubmitError>>,
}

impl Modem {
    pub fn phase(&self) -> (Phase, Option<String>) {
        self.phase.lock().map(|p| p.clone()).unwrap_or((Phase::Unresponsive, None))
    }

    pub(super) fn set(&self, phase: Phase, detail: Option<String>) {
        if let Ok(mut p) = self.phase.lock() {
            *p = (phase, detail);
        }
    }

    /// The name its SIM goes by in remote ids: the IMSI, or the port's
    /// name when the SIM gave none.
    pub fn sender(&self) -> Option<String> {
        let i = self.info.lock().ok()?;
        Some(i.imsi.clone().unwrap_or_else(|| i.port.rsplit('/').next().unwrap_or(&i.port).to_string()))
    }

    /// Ready, idle, and with room under its caps for `parts` more SMS.
    pub fn can_take(&self, parts: usize, per_minute: Option<u32>, per_day: Option<u32>) -> bool {
        !self.busy.load(Ordering::Relaxed) && self.in_service(parts, per_minute, per_day)
    }

    /// Ready or sending, with room under its caps for `parts` more SMS: it
    /// will take the message soon. A message longer than a cap goes out
    /// when the window is empty.
    pub fn in_service(&self, parts: usize, per_minute: Option<u32>, per_day: Option<u32>) -> bool {
        if !matches!(self.phase().0, Phase::Ready | Phase::Sending) {
            return false;
        }
        let Ok(mut w) = self.window.lock() else { return false };
        let now = std::time::Instant::now();
        while w.front().is_some_and(|t| now.duration_since(*t) > Duration::from_secs(86_400)) {
            w.pop_front();
        }
        let last_minute = w.iter().filter(|t| now.duration_since(**t) < Duration::from_secs(60)).count();
        let room = |used: usize, cap: Option<u32>| cap.is_none_or(|c| used == 0 || used + parts <= c as usize);
        room(last_minute, per_minute) && room(w.len(), per_day)
    }

    /// The next concatenation reference in this modem's rotation.
    pub(super) fn next_concat_ref(&self) -> u8 {
        let Ok(mut c) = self.concat.lock() else { return rand::random() };
        let r = *c;
        *c = r.wrapping_add(1);
        r
    }

    /// Count sends made before this start (ms since the epoch) in the cap
    /// window.
    pub fn restore_window(&self, sent: &[crate::message::Millis]) {
        let (now, now_ms) = (std::time::Instant::now(), crate::message::now_ms());
        let Ok(mut w) = self.window.lock() else { return };
        w.extend(sent.iter().filter_map(|t| now.checked_sub(Duration::from_millis(now_ms.saturating_sub(*t) as u64))));
        w.make_contiguous().sort();
    }

    /// Hand `job` to this modem if it is idle. Two submits may pick the same
    /// idle modem at once: only the one that marks it busy hands its job
    /// over; the other gets its job back and leaves the mark alone (clearing
    /// it would let a third submit queue behind the running send while
    /// another modem stands idle).
    pub fn try_send(&self, job: SendJob) -> Result<(), SendJob> {
        if self.busy.compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire).is_err() {
            return Err(job);
        }
        self.jobs.try_send(job).map_err(|e| {
            self.busy.store(false, Ordering::Release);
            match e {
                mpsc::error::TrySendError::Full(j) | mpsc::error::TrySendError::Closed(j) => j,
            }
        })
    }
}

/// Everything a driver needs from its pool.
pub struct Context {
    pub route: String,
    pub cfg: ModemRoute,
    pub profiles: Vec<Profile>,
    pub events: EventSender,
    /// Signalled whenever a modem becomes free or ready.
    pub free: Arc<Notify>,
    /// The last day's sends from the store, by sender (IMSI), until the
    /// modem with that SIM takes them into its cap window.
    pub sent_before: Mutex<std::collections::HashMap<String, Vec<crate::message::Millis>>>,
    pub cancel: CancellationToken,
}

impl Modem {
    pub(super) fn new(port: &str, jobs: mpsc::Sender<SendJob>) -> Modem {
        Modem {
            info: Mutex::new(Info { port: port.to_string(), ..Info::default() }),
            phase: Mutex::new((Phase::Starting, None)),
            busy: AtomicBool::new(false),
            sent: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            received: AtomicU64::new(0),
            window: Mutex::new(Default::default()),
            concat: Mutex::new(rand::random()),
            jobs,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_one_of_two_racing_submits_gets_an_idle_modem() {
        let (tx, mut rx) = mpsc::channel(1);
        let m = Modem::new("p", tx);
        let job = || SendJob {
            message: 1,
            to: "+79160000000".into(),
            plan: crate::sms::split("x"),
            valid_until: None,
            first_part: 0,
            concat_ref: None,
            reply: oneshot::channel().0,
        };
        assert!(m.try_send(job()).is_ok());
        assert!(m.try_send(job()).is_err());
        assert!(m.busy.load(Ordering::Relaxed), "the loser must not clear the winner's mark");
        rx.try_recv().expect("the winner's job");
        assert!(m.try_send(job()).is_err(), "busy until its send ends");
    }

    #[test]
    fn concatenation_references_rotate_per_modem() {
        let m = Modem::new("p", mpsc::channel(1).0);
        let first = m.next_concat_ref();
        assert_eq!(m.next_concat_ref(), first.wrapping_add(1));
    }

    #[test]
    fn phase_names_are_the_api_names() {
        for p in Phase::ALL {
            assert_eq!(serde_json::to_value(p).unwrap(), p.as_str());
        }
    }
}
