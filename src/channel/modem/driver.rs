//! One modem's life: open its port, bring it to a known state (identify,
//! unlock the SIM, wait for the network, PDU mode, storage, indications),
//! send messages one at a time, read what arrives (read, commit, then
//! delete), turn status reports into receipts, watch its health, and heal:
//! reopen a port that stopped answering (resetting it if the profile says
//! that is safe) and wait for an unplugged one to come back.

use super::at::{AtError, AtPort, Urc, UrcReceiver};
use super::profile::{self, Profile};
use crate::channel::{Event, EventSender, RouteEvent, SubmitError};
use crate::config::ModemRoute;
use crate::sms::pdu::{self, Pdu, ReportOutcome, SubmitOptions};
use crate::store::ReceiptStatus;
use serde::Serialize;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

const COMMAND: Duration = Duration::from_secs(10);

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
    window: Mutex<std::collections::VecDeque<std::time::Instant>>,
    /// The next concatenation reference, and those given to the last long
    /// messages, so one sent again through this modem keeps its reference.
    concat: Mutex<(u8, std::collections::VecDeque<(i64, u8)>)>,
    jobs: mpsc::Sender<Job>,
}

pub struct Job {
    /// The message's id in the store.
    pub message: i64,
    pub to: String,
    pub text: String,
    /// Sent as the relative TP-VP: the network drops the SMS after it.
    pub valid_until: Option<crate::message::Millis>,
    pub reply: oneshot::Sender<Result<Vec<String>, SubmitError>>,
}

impl Modem {
    pub fn phase(&self) -> (Phase, Option<String>) {
        self.phase.lock().map(|p| p.clone()).unwrap_or((Phase::Unresponsive, None))
    }

    fn set(&self, phase: Phase, detail: Option<String>) {
        if let Ok(mut p) = self.phase.lock() {
            *p = (phase, detail);
        }
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

    /// The concatenation reference for `message`: the next in this modem's
    /// rotation, or the one it had when this modem sent it before (a retry
    /// after a later part failed), so the phone joins both tries' parts.
    fn concat_ref(&self, message: i64) -> u8 {
        const REMEMBERED: usize = 64;
        let Ok(mut c) = self.concat.lock() else { return rand::random() };
        if let Some((_, r)) = c.1.iter().find(|(m, _)| *m == message) {
            return *r;
        }
        let r = c.0;
        c.0 = r.wrapping_add(1);
        if c.1.len() == REMEMBERED {
            c.1.pop_front();
        }
        c.1.push_back((message, r));
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
    pub fn try_send(&self, job: Job) -> Result<(), Job> {
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
    fn new(port: &str, jobs: mpsc::Sender<Job>) -> Modem {
        Modem {
            info: Mutex::new(Info { port: port.to_string(), ..Info::default() }),
            phase: Mutex::new((Phase::Starting, None)),
            busy: AtomicBool::new(false),
            sent: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            received: AtomicU64::new(0),
            window: Mutex::new(Default::default()),
            concat: Mutex::new((rand::random(), Default::default())),
            jobs,
        }
    }
}

pub fn spawn(port: String, ctx: Arc<Context>) -> Arc<Modem> {
    let (tx, rx) = mpsc::channel(1);
    let modem = Arc::new(Modem::new(&port, tx));
    tokio::spawn(run(port, ctx, modem.clone(), rx));
    modem
}

/// Why a session with the modem ended.
enum End {
    Stopped,
    /// Reopen after this pause.
    Retry(Duration),
}

async fn run(port: String, ctx: Arc<Context>, modem: Arc<Modem>, mut jobs: mpsc::Receiver<Job>) {
    loop {
        let end = tokio::select! {
            end = session(&port, &ctx, &modem, &mut jobs) => end,
            _ = ctx.cancel.cancelled() => End::Stopped,
        };
        modem.busy.store(false, Ordering::Relaxed);
        match end {
            End::Stopped => return,
            End::Retry(pause) => {
                // Jobs that arrive while the modem is down go back at once.
                let deadline = tokio::time::Instant::now() + pause;
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep_until(deadline) => break,
                        _ = ctx.cancel.cancelled() => return,
                        Some(job) = jobs.recv() => {
                            let _ = job.reply.send(Err(SubmitError::untried("modem_down", "the modem is not ready")));
                            modem.busy.store(false, Ordering::Relaxed);
                        }
                    }
                }
            }
        }
    }
}

fn from_at(e: &AtError) -> SubmitError {
    let code = match e {
        AtError::Cms { code, .. } => format!("cms_{code}"),
        AtError::Cme { code, .. } => format!("cme_{code}"),
        AtError::Timeout { .. } | AtError::Unconfirmed { .. } => "modem_timeout".into(),
        AtError::Gone(_) => "modem_gone".into(),
        _ => "modem_error".into(),
    };
    // The payload went out but no answer came: the SMS may have been sent.
    // At-least-once: retry (a possible duplicate) rather than lose it.
    let temporary = e.temporary() || matches!(e, AtError::Unconfirmed { .. });
    if temporary { SubmitError::temporary(&code, e.to_string()) } else { SubmitError::permanent(&code, e.to_string()) }
}

/// CSQ rssi (0..31, 99 unknown) as dBm and bars.
pub fn signal(rssi: u8) -> (Option<i32>, Option<u8>) {
    if rssi > 31 {
        return (None, Some(0));
    }
    let dbm = -113 + 2 * rssi as i32;
    let bars = match rssi {
        0..=1 => 0,
        2..=9 => 1,
        10..=14 => 2,
        15..=19 => 3,
        20..=24 => 4,
        _ => 5,
    };
    (Some(dbm), Some(bars))
}

struct Session<'a> {
    at: AtPort,
    ctx: &'a Context,
    modem: &'a Modem,
    profile: Profile,
    own: String,
}

impl Session<'_> {
    async fn cmd(&self, c: &str) -> Result<super::at::Response, AtError> {
        if self.profile.command_delay_ms > 0 {
            tokio::time::sleep(Duration::from_millis(self.profile.command_delay_ms)).await;
        }
        self.at.command(c, COMMAND).await
    }

    /// The first value of `prefix` in the answer to `c`, unquoted.
    async fn value(&self, c: &str, prefix: &str) -> Option<String> {
        let r = self.cmd(c).await.ok()?;
        let v = match r.value(prefix) {
            Some(v) => v.to_string(),
            None => r.lines.iter().find(|l| !l.trim().is_empty())?.trim().to_string(),
        };
        Some(v.trim().trim_matches('"').to_string())
    }

    async fn health(&self) -> Result<(), AtError> {
        let csq = self.cmd("AT+CSQ").await?;
        let rssi = csq.value("+CSQ").and_then(|v| v.split(',').next()).and_then(|v| v.trim().parse::<u8>().ok());
        let reg = self.registration().await;
        let operator = self
            .value("AT+COPS?", "+COPS")
            .await
            .and_then(|v| v.split(',').nth(2).map(|o| o.trim_matches('"').to_string()));
        if let Ok(mut i) = self.modem.info.lock() {
            if let Some(r) = rssi {
                (i.signal_dbm, i.signal_bars) = signal(r);
            }
            i.registration = reg;
            if operator.is_some() {
                i.operator = operator;
            }
        }
        Ok(())
    }

    async fn registration(&self) -> Option<u8> {
        for c in ["AT+CREG?", "AT+CEREG?"] {
            if let Ok(r) = self.cmd(c).await
                && let Some(v) = r.value(&c[2..c.len() - 1])
                && let Some(stat) = v.split(',').nth(1).and_then(|s| s.trim().parse::<u8>().ok())
                && matches!(stat, 1 | 5)
            {
                return Some(stat);
            }
        }
        Some(0)
    }

    /// Bring the modem to a known state. Errors name what is wrong.
    async fn start(&mut self) -> Result<(), (Phase, String)> {
        let unresponsive = |e: AtError| (Phase::Unresponsive, e.to_string());
        tokio::time::sleep(Duration::from_millis(self.profile.settle_ms)).await;
        // A modem left in the middle of a send's payload takes every byte as
        // part of it until ESC.
        self.at.escape().await.map_err(unresponsive)?;
        // A modem left mid-command answers the first AT with noise: try twice.
        if self.at.command("AT", Duration::from_secs(3)).await.is_err() {
            self.at.command("AT", Duration::from_secs(3)).await.map_err(unresponsive)?;
        }
        self.cmd("ATE0").await.map_err(unresponsive)?;
        let _ = self.cmd("AT+CMEE=1").await;
        let manufacturer = self.value("AT+CGMI", "+CGMI").await.unwrap_or_default();
        let model = self.value("AT+CGMM", "+CGMM").await.unwrap_or_default();
        self.profile = profile::choose(&self.ctx.profiles, &manufacturer, &model).clone();
        for c in self.profile.init.clone() {
            if let Err(e) = self.cmd(&c).await {
                tracing::warn!(route = %self.ctx.route, modem = %self.own, command = %c, error = %e, "profile init command failed");
            }
        }
        let imei = self.value("AT+CGSN", "+CGSN").await;
        if let Ok(mut i) = self.modem.info.lock() {
            i.manufacturer = Some(manufacturer.clone());
            i.model = Some(model.clone());
            i.imei = imei;
            i.profile = Some(self.profile.name.clone());
        }
        // The SIM.
        let pin_state = match self.cmd("AT+CPIN?").await {
            Ok(r) => r.value("+CPIN").unwrap_or("").trim().to_string(),
            Err(AtError::Cme { code: 10, .. }) => return Err((Phase::NoSim, "no SIM card inserted".into())),
            Err(AtError::Timeout { .. }) => "READY".into(), // some modems answer AT+CPIN? without OK
            Err(e) => return Err((Phase::NoSim, format!("cannot read the SIM state: {e}"))),
        };
        match pin_state.as_str() {
            "READY" => {}
            "SIM PIN" => {
                let Some(pin) = self.ctx.cfg.pin.clone() else {
                    return Err((Phase::PinNeeded, "the SIM asks for a PIN and none is configured".into()));
                };
                if let Err(e) = self.cmd(&format!("AT+CPIN=\"{}\"", pin.expose())).await {
                    // Never retry a wrong PIN: a third try locks the SIM.
                    return Err((
                        Phase::PinNeeded,
                        format!("the SIM refused the configured PIN ({e}); not retrying, fix the PIN"),
                    ));
                }
                tokio::time::sleep(Duration::from_millis(1000)).await;
            }
            other => return Err((Phase::PinNeeded, format!("the SIM needs {other:?}; smsgw will not guess"))),
        }
        let imsi = self.value("AT+CIMI", "+CIMI").await;
        let iccid = match self.value("AT+CCID", "+CCID").await {
            Some(v) => Some(v),
            None => self.value("AT+QCCID", "+QCCID").await,
        };
        let number = self.cmd("AT+CNUM").await.ok().and_then(|r| r.value("+CNUM").and_then(cnum_number));
        let sender = imsi.clone().unwrap_or_else(|| self.own.clone());
        if let Ok(mut i) = self.modem.info.lock() {
            i.imsi = imsi;
            i.iccid = iccid;
            i.number = number;
        }
        // Sends before a restart count against this SIM's caps (taken after
        // the IMSI is shown, so a restore that arrives meanwhile finds it).
        if let Some(sent) = self.ctx.sent_before.lock().ok().and_then(|mut m| m.remove(&sender)) {
            self.modem.restore_window(&sent);
        }
        // The network.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(self.ctx.cfg.registration_timeout_secs);
        loop {
            if self.registration().await.is_some_and(|s| matches!(s, 1 | 5)) {
                break;
            }
            if tokio::time::Instant::now() > deadline {
                return Err((Phase::NotRegistered, "not registered on a network".into()));
            }
            self.modem.set(Phase::NotRegistered, Some("waiting for network registration".into()));
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        // SMS set-up; some modems refuse SMS commands until "SMS Ready".
        let sms_deadline = tokio::time::Instant::now() + Duration::from_secs(self.profile.sms_ready_secs);
        loop {
            match self.cmd("AT+CMGF=0").await {
                Ok(_) => break,
                Err(e) if tokio::time::Instant::now() < sms_deadline => {
                    tracing::debug!(error = %e, "SMS not ready yet");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(e) => return Err((Phase::Unresponsive, format!("cannot set PDU mode: {e}"))),
            }
        }
        let s = &self.profile.storage;
        if let Err(e) = self.cmd(&format!("AT+CPMS=\"{s}\",\"{s}\",\"{s}\"")).await {
            tracing::warn!(modem = %self.own, error = %e, "cannot select message storage; using the modem's default");
        }
        // Phase 2 SMS service: a report or message shown inline (+CDS, +CMT)
        // needs no AT+CNMA. Under AT+CSMS=1, a modem that sees no
        // acknowledgement stops showing them.
        if let Err(e) = self.cmd("AT+CSMS=0").await {
            tracing::debug!(modem = %self.own, error = %e, "AT+CSMS=0 refused");
        }
        if let Err(e) = self.cmd(&format!("AT+CNMI={}", self.profile.cnmi)).await {
            // Stored reports (ds=2) outlive a restart of smsgw; a modem that
            // refuses them still takes inline ones (ds=1).
            let inline = format!("{},1,0", self.profile.cnmi.split(',').take(3).collect::<Vec<_>>().join(","));
            let fallback = (inline != self.profile.cnmi).then_some(inline);
            let taken = match &fallback {
                Some(f) => self.cmd(&format!("AT+CNMI={f}")).await.is_ok(),
                None => false,
            };
            if taken {
                tracing::warn!(modem = %self.own, error = %e, "stored status reports refused; taking them inline");
            } else {
                tracing::warn!(modem = %self.own, error = %e, "cannot set new-message indications; relying on the periodic sweep");
            }
        }
        let smsc = self.value("AT+CSCA?", "+CSCA").await.and_then(|v| smsc_number(&v));
        if let Ok(mut i) = self.modem.info.lock() {
            i.smsc = smsc;
        }
        let _ = self.health().await;
        Ok(())
    }

    async fn send(&self, job: &Job) -> Result<Vec<String>, SubmitError> {
        let split = crate::sms::split(&job.text);
        let opts = SubmitOptions {
            message_ref: 0,
            status_report: self.ctx.cfg.status_reports,
            validity_minutes: job
                .valid_until
                .map(|v| u32::try_from(crate::message::secs_left(v).div_ceil(60)).unwrap_or(u32::MAX)),
            concat_ref: if split.parts.len() > 1 { self.modem.concat_ref(job.message) } else { 0 },
        };
        let pdus =
            pdu::encode_submit(&job.to, &split, &opts).map_err(|e| SubmitError::permanent("pdu", e.to_string()))?;
        let imsi = self.modem.info.lock().ok().and_then(|i| i.imsi.clone()).unwrap_or_else(|| self.own.clone());
        let mut ids = Vec::new();
        for p in pdus {
            let r = self
                .at
                .command_with_prompt(
                    &format!("AT+CMGS={}", p.tpdu_len),
                    &p.hex,
                    Duration::from_secs(self.ctx.cfg.send_timeout_secs),
                )
                .await
                .map_err(|e| from_at(&e))?;
            let mr = r.value("+CMGS").and_then(|v| v.trim().parse::<u8>().ok()).ok_or_else(|| {
                SubmitError::temporary(
                    "modem_answer",
                    format!("no message reference in the answer to AT+CMGS: {:?}", r.lines),
                )
            })?;
            ids.push(remote_id(&imsi, mr, &job.to));
        }
        Ok(ids)
    }

    fn emit(&self, event: Event) -> oneshot::Receiver<bool> {
        let (tx, rx) = oneshot::channel();
        let _ = self.ctx.events.send(RouteEvent { route: self.ctx.route.clone(), event, ack: Some(tx) });
        rx
    }

    /// A PDU that arrived (inbound message or status report) becomes an
    /// event; true once the store has it.
    async fn record(&self, hex: &str) -> bool {
        let decoded = pdu::decode(hex, true).or_else(|_| pdu::decode(hex, false));
        let event = match decoded {
            Ok(Pdu::Deliver(d)) => {
                self.modem.received.fetch_add(1, Ordering::Relaxed);
                // Received on: the SIM's number if it knows it, else its IMSI.
                let own = self
                    .modem
                    .info
                    .lock()
                    .ok()
                    .and_then(|i| i.number.clone().or_else(|| i.imsi.clone()))
                    .unwrap_or_else(|| self.own.clone());
                Event::Inbound {
                    from: d.sender.value.clone(),
                    to: own,
                    text: d.text,
                    concat: d.concat.map(|c| (c.reference, c.total, c.seq)),
                    sent_at: Some(d.timestamp.timestamp_millis()),
                }
            }
            Ok(Pdu::StatusReport(r)) => {
                let status = match pdu::report_outcome(r.status) {
                    ReportOutcome::Delivered => ReceiptStatus::Delivered,
                    ReportOutcome::Pending => return true,
                    ReportOutcome::Expired => ReceiptStatus::Expired,
                    ReportOutcome::Failed => ReceiptStatus::Undelivered,
                };
                let imsi = self.modem.info.lock().ok().and_then(|i| i.imsi.clone()).unwrap_or_else(|| self.own.clone());
                let failed = status != ReceiptStatus::Delivered;
                Event::Receipt {
                    remote_id: remote_id(&imsi, r.message_ref, &r.recipient.value),
                    status,
                    error_code: failed.then(|| format!("tp_st_{:02x}", r.status)),
                    error_text: failed.then(|| pdu::status_text(r.status).to_string()),
                }
            }
            Ok(Pdu::Submit(_)) => return true, // a copy of our own outbox: nothing to do
            Err(e) => {
                tracing::warn!(route = %self.ctx.route, modem = %self.own, error = %e, "unreadable PDU from the modem; kept on the SIM");
                return false;
            }
        };
        matches!(self.emit(event).await, Ok(true))
    }

    /// Read a stored message, hand it to the store, and only then delete it.
    /// Read and delete from `memory` (AT+CPMS mem1) instead of the usual
    /// one. An error when the modem refuses: an index must never be read in
    /// the wrong memory.
    async fn select(&self, memory: &str) -> Result<(), AtError> {
        if memory != self.profile.storage {
            self.cmd(&format!("AT+CPMS=\"{memory}\"")).await?;
        }
        Ok(())
    }

    /// Back to the usual memory after [`Session::select`].
    async fn restore(&self, memory: &str) {
        if memory != self.profile.storage {
            let s = &self.profile.storage;
            let _ = self.cmd(&format!("AT+CPMS=\"{s}\",\"{s}\",\"{s}\"")).await;
        }
    }

    /// One stored message or report: read, commit, then delete.
    async fn take(&self, storage: &str, index: u32) -> Result<(), AtError> {
        self.select(storage).await?;
        let r = self.cmd(&format!("AT+CMGR={index}")).await;
        let pdu_line =
            r.as_ref().ok().and_then(|r| r.lines.iter().find(|l| !l.starts_with('+') && !l.is_empty()).cloned());
        let deleted = match pdu_line {
            Some(hex) if self.record(&hex).await => self.cmd(&format!("AT+CMGD={index}")).await.map(|_| ()),
            _ => Ok(()),
        };
        self.restore(storage).await;
        r.and(deleted)
    }

    /// Everything stored on the modem, messages and (in their own memory,
    /// where the profile keeps them apart) status reports: what arrived
    /// while no one was reading.
    async fn sweep(&self) -> Result<(), AtError> {
        let mut memories = vec![self.profile.storage.clone()];
        if self.profile.status_report_storage != self.profile.storage {
            memories.push(self.profile.status_report_storage.clone());
        }
        for memory in memories {
            self.select(&memory).await?;
            let r = self.sweep_selected().await;
            self.restore(&memory).await;
            r?;
        }
        Ok(())
    }

    async fn sweep_selected(&self) -> Result<(), AtError> {
        let r = self.cmd("AT+CMGL=4").await?;
        let mut pending = Vec::new();
        let mut lines = r.lines.iter();
        while let Some(l) = lines.next() {
            if let Some(v) = l.strip_prefix("+CMGL:")
                && let Some(idx) = v.split(',').next().and_then(|i| i.trim().parse::<u32>().ok())
                && let Some(hex) = lines.next()
            {
                pending.push((idx, hex.clone()));
            }
        }
        for (idx, hex) in pending {
            if self.record(&hex).await {
                self.cmd(&format!("AT+CMGD={idx}")).await?;
            }
        }
        Ok(())
    }

    async fn urc(&self, u: Urc) -> Result<(), AtError> {
        match u {
            Urc::NewMessage { storage, index } | Urc::StatusReportStored { storage, index } => {
                self.take(&storage, index).await
            }
            Urc::StatusReport { pdu } | Urc::Deliver { pdu } => {
                self.record(&pdu).await;
                Ok(())
            }
            Urc::Registration { stat } => {
                if let Ok(mut i) = self.modem.info.lock() {
                    i.registration = Some(stat);
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

/// The number in a `+CNUM: "<alpha>","<number>",<type>` answer; None when
/// the SIM stores none.
fn cnum_number(value: &str) -> Option<String> {
    let n = value.split(',').nth(1)?.trim().trim_matches('"').trim();
    (!n.is_empty()).then(|| n.to_string())
}

/// The SMSC address in a `+CSCA: <sca>,<tosca>` answer. A modem whose
/// character set is UCS2 (AT+CSCS) writes it as hex of UTF-16, quoted or
/// not: `002B0034...` is `+4...`. None when the SIM holds none.
fn smsc_number(value: &str) -> Option<String> {
    let raw = value.split(',').next()?.trim().trim_matches('"').trim();
    let decoded = (raw.len() >= 8 && raw.len().is_multiple_of(4))
        .then(|| pdu::from_hex(raw).ok())
        .flatten()
        .map(|bytes| crate::sms::text::decode_ucs2(&bytes))
        .filter(|d| d.chars().all(|c| c == '+' || c.is_ascii_digit()));
    let n = decoded.unwrap_or_else(|| raw.to_string());
    (!n.is_empty()).then_some(n)
}

/// How a part is named for its status report: the SIM, the reference the
/// modem gave it and the recipient (references wrap at 256).
pub fn remote_id(imsi: &str, mr: u8, to: &str) -> String {
    format!("{imsi}:{mr}:{}", to.trim_start_matches('+'))
}

/// The SIM (IMSI, or the port when the SIM gave none) a part went out from.
pub fn sender_of(remote_id: &str) -> &str {
    remote_id.split(':').next().unwrap_or(remote_id)
}

async fn session(port: &str, ctx: &Arc<Context>, modem: &Arc<Modem>, jobs: &mut mpsc::Receiver<Job>) -> End {
    let own = port.rsplit('/').next().unwrap_or(port).to_string();
    modem.set(Phase::Starting, None);
    let (at, mut urcs): (AtPort, UrcReceiver) = match AtPort::open(port, ctx.cfg.baud).await {
        Ok(p) => p,
        Err(e) => {
            let gone = !std::path::Path::new(port).exists();
            modem.set(if gone { Phase::Gone } else { Phase::Unresponsive }, Some(e.to_string()));
            return End::Retry(Duration::from_secs(if gone { 2 } else { 5 }));
        }
    };
    let profile = profile::choose(&ctx.profiles, "", "").clone();
    let mut s = Session { at, ctx, modem, profile, own: own.clone() };
    if let Err((phase, why)) = s.start().await {
        tracing::warn!(route = %ctx.route, modem = %own, %why, "modem not ready");
        modem.set(phase, Some(why));
        if phase == Phase::Unresponsive && !s.profile.reset.is_empty() {
            tracing::warn!(route = %ctx.route, modem = %own, "resetting the modem");
            let _ = s.at.command(&s.profile.reset, Duration::from_secs(5)).await;
        }
        // A wrong PIN or a missing SIM will not fix itself quickly.
        let pause = if matches!(phase, Phase::PinNeeded | Phase::NoSim) { 60 } else { 5 };
        return End::Retry(Duration::from_secs(pause));
    }
    modem.set(Phase::Ready, None);
    ctx.free.notify_waiters();
    tracing::info!(route = %ctx.route, modem = %own, profile = %s.profile.name, "modem ready");
    if let Err(e) = s.sweep().await {
        tracing::warn!(modem = %own, error = %e, "cannot list stored messages");
    }
    let mut health = tokio::time::interval(Duration::from_secs(ctx.cfg.health_interval_secs));
    health.reset();
    let mut sweep = tokio::time::interval(Duration::from_secs(300));
    sweep.reset();
    let mut failures = 0u32;
    loop {
        let mut hung = false;
        let result = tokio::select! {
            job = jobs.recv() => {
                let Some(job) = job else { return End::Stopped };
                modem.set(Phase::Sending, None);
                let r = s.send(&job).await;
                match &r {
                    // Counted in SMS, as SIM plans count them (a long message is several).
                    Ok(parts) => {
                        modem.sent.fetch_add(parts.len() as u64, Ordering::Relaxed);
                        if let Ok(mut w) = modem.window.lock() {
                            let now = std::time::Instant::now();
                            w.extend(std::iter::repeat_n(now, parts.len()));
                        }
                    }
                    Err(_) => { modem.failed.fetch_add(1, Ordering::Relaxed); }
                }
                let gone = r.as_ref().err().is_some_and(|e| e.code == "modem_gone");
                let stuck = r.as_ref().err().is_some_and(|e| e.code == "modem_timeout");
                let _ = job.reply.send(r);
                modem.set(Phase::Ready, None);
                modem.busy.store(false, Ordering::Relaxed);
                ctx.free.notify_waiters();
                if gone {
                    Err(AtError::Gone("the port went away during a send".into()))
                } else if stuck {
                    // A send that never ended: if the modem does not answer a
                    // plain AT either, it has hung; reopen it now rather than
                    // hand it the next message.
                    match s.at.command("AT", Duration::from_secs(3)).await {
                        Ok(_) => Ok(()),
                        Err(AtError::Gone(why)) => Err(AtError::Gone(why)),
                        Err(_) => {
                            hung = true;
                            Err(AtError::Timeout { cmd: "AT+CMGS".into(), secs: ctx.cfg.send_timeout_secs as f64 })
                        }
                    }
                } else {
                    Ok(())
                }
            }
            u = urcs.0.recv() => match u {
                Some(u) => s.urc(u).await,
                None => Err(AtError::Gone("the port closed".into())),
            },
            _ = health.tick() => s.health().await,
            _ = sweep.tick() => s.sweep().await,
            _ = ctx.cancel.cancelled() => return End::Stopped,
        };
        match result {
            Ok(()) => failures = 0,
            Err(AtError::Gone(why)) => {
                tracing::warn!(route = %ctx.route, modem = %own, %why, "modem gone; waiting for it to come back");
                modem.set(Phase::Gone, Some(why));
                return End::Retry(Duration::from_secs(2));
            }
            Err(e @ AtError::Timeout { .. }) => {
                failures += 1;
                if failures >= 3 || hung {
                    tracing::warn!(route = %ctx.route, modem = %own, error = %e, "modem stopped answering; reopening");
                    modem.set(Phase::Unresponsive, Some(e.to_string()));
                    if !s.profile.reset.is_empty() {
                        let _ = s.at.command(&s.profile.reset, Duration::from_secs(5)).await;
                    }
                    return End::Retry(Duration::from_secs(2));
                }
            }
            Err(e) => tracing::debug!(modem = %own, error = %e, "modem command failed"),
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
        let job = || Job {
            message: 1,
            to: "+79160000000".into(),
            text: "x".into(),
            valid_until: None,
            reply: oneshot::channel().0,
        };
        assert!(m.try_send(job()).is_ok());
        assert!(m.try_send(job()).is_err());
        assert!(m.busy.load(Ordering::Relaxed), "the loser must not clear the winner's mark");
        rx.try_recv().expect("the winner's job");
        assert!(m.try_send(job()).is_err(), "busy until its send ends");
    }

    #[test]
    fn a_message_sent_again_keeps_its_concatenation_reference() {
        let m = Modem::new("p", mpsc::channel(1).0);
        let first = m.concat_ref(10);
        assert_eq!(m.concat_ref(11), first.wrapping_add(1), "rotates per message");
        assert_eq!(m.concat_ref(10), first, "a retry keeps its reference");
        for id in 100..200 {
            m.concat_ref(id);
        }
        assert_ne!(m.concat_ref(10), first, "long forgotten: the next in the rotation");
    }

    #[test]
    fn smsc_in_gsm_or_ucs2() {
        assert_eq!(smsc_number(r#""+447802000332",145"#).as_deref(), Some("+447802000332"));
        // csca-ucs2: with AT+CSCS="UCS2" the number comes as UTF-16 hex, quoted or not.
        assert_eq!(
            smsc_number("002B00390037003200350034003100320030003000330032,145").as_deref(),
            Some("+97254120032")
        );
        assert_eq!(smsc_number(r#""002B0034003400370038",145"#).as_deref(), Some("+4478"));
        // Digits that merely look like hex stay digits.
        assert_eq!(smsc_number(r#""447802000332",145"#).as_deref(), Some("447802000332"));
        assert_eq!(smsc_number("12345678,129").as_deref(), Some("12345678"));
        assert_eq!(smsc_number(r#""",129"#), None);
    }

    #[test]
    fn own_number_from_cnum() {
        assert_eq!(cnum_number(r#""","+79161234567",145"#).as_deref(), Some("+79161234567"));
        assert_eq!(cnum_number(r#""Own","89161234567",129,7,4"#).as_deref(), Some("89161234567"));
        assert_eq!(cnum_number(r#""","",129"#), None);
        assert_eq!(cnum_number("garbage"), None);
    }

    #[test]
    fn phase_names_are_the_api_names() {
        for p in Phase::ALL {
            assert_eq!(serde_json::to_value(p).unwrap(), p.as_str());
        }
    }

    #[test]
    fn signal_levels() {
        assert_eq!(signal(0), (Some(-113), Some(0)));
        assert_eq!(signal(17), (Some(-79), Some(3)));
        assert_eq!(signal(31), (Some(-51), Some(5)));
        assert_eq!(signal(99), (None, Some(0)));
    }

    #[test]
    fn remote_ids_name_sim_reference_and_recipient() {
        assert_eq!(remote_id("250011234567890", 7, "+79161234567"), "250011234567890:7:79161234567");
    }
}

/// What `smsgw modem probe` prints: a read-only look at a modem.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Probe {
    pub info: Info,
    pub revision: Option<String>,
    pub sim: Option<String>,
    pub registration: Option<u8>,
}

/// Identify the modem on `port`, read its SIM state and signal, and choose
/// its profile, changing nothing on it (only ATE0 to read answers cleanly).
pub async fn probe(port: &str, baud: u32, profiles: &[Profile]) -> Result<Probe, String> {
    let (at, _urcs) = AtPort::open(port, baud).await.map_err(|e| e.to_string())?;
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let ctx = Context {
        route: "probe".into(),
        cfg: ModemRoute {
            ports: vec![port.to_string()],
            baud,
            pin: None,
            profiles_dir: None,
            per_minute: None,
            per_day: None,
            prefer: Vec::new(),
            status_reports: false,
            health_interval_secs: 30,
            registration_timeout_secs: 1,
            send_timeout_secs: 60,
        },
        profiles: profiles.to_vec(),
        events: tx,
        free: Arc::new(Notify::new()),
        sent_before: Mutex::new(Default::default()),
        cancel: CancellationToken::new(),
    };
    let modem = spawn_idle(port);
    let mut s =
        Session { at, ctx: &ctx, modem: &modem, profile: profile::choose(profiles, "", "").clone(), own: port.into() };
    if s.at.command("AT", Duration::from_secs(3)).await.is_err() {
        s.at.command("AT", Duration::from_secs(3)).await.map_err(|e| format!("{port} does not answer AT: {e}"))?;
    }
    let _ = s.cmd("ATE0").await;
    let manufacturer = s.value("AT+CGMI", "+CGMI").await.unwrap_or_default();
    let model = s.value("AT+CGMM", "+CGMM").await.unwrap_or_default();
    s.profile = profile::choose(profiles, &manufacturer, &model).clone();
    let mut p = Probe {
        revision: s.value("AT+CGMR", "+CGMR").await,
        sim: s.value("AT+CPIN?", "+CPIN").await,
        registration: s.registration().await,
        ..Probe::default()
    };
    let _ = s.health().await;
    let mut info = modem.info.lock().map(|i| i.clone()).unwrap_or_default();
    info.port = port.to_string();
    info.manufacturer = Some(manufacturer);
    info.model = Some(model);
    info.profile = Some(s.profile.name.clone());
    info.imei = s.value("AT+CGSN", "+CGSN").await;
    info.imsi = s.value("AT+CIMI", "+CIMI").await;
    info.iccid = s.value("AT+CCID", "+CCID").await;
    info.number = s.cmd("AT+CNUM").await.ok().and_then(|r| r.value("+CNUM").and_then(cnum_number));
    info.smsc = s.value("AT+CSCA?", "+CSCA").await.and_then(|v| smsc_number(&v));
    p.info = info;
    Ok(p)
}

fn spawn_idle(port: &str) -> Modem {
    Modem::new(port, mpsc::channel(1).0)
}
