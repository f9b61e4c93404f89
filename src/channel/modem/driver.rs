//! One modem's life: open its port, bring it to a known state (identify,
//! unlock the SIM, never with a PIN it refused before nor when it has one
//! attempt left, wait for the network, PDU mode, storage, indications),
//! send messages one at a time, read what arrives (read, commit, then
//! delete), turn status reports into receipts (named by modem, SIM, TP-MR
//! and recipient, with the network's time so the store can tell apart
//! parts whose TP-MR came round again), watch its health, and heal:
//! reopen a port that stopped answering (resetting it if the profile says
//! that is safe) and wait for an unplugged one to come back.

use super::at::{AtError, AtPort, Urc, UrcReceiver};
use super::config::ModemRoute;
use super::pin;
use super::profile::{self, Profile};
use crate::channel::{Event, EventSender, RouteEvent, SubmitError, Submitted};
use crate::message::ReceiptStatus;
use crate::sms::pdu::{self, Pdu, ReportOutcome, SubmitOptions};
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
    /// The next concatenation reference for a long message sent from the
    /// start (one resumed after a failed part keeps the reference the store
    /// kept for it).
    concat: Mutex<u8>,
    jobs: mpsc::Sender<Job>,
}

pub struct Job {
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

    fn set(&self, phase: Phase, detail: Option<String>) {
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
    fn next_concat_ref(&self) -> u8 {
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
            concat: Mutex::new(rand::random()),
            jobs,
        }
    }
}

/// Start driving the modem on `port`. The driver runs supervised: after a
/// panic it starts again on the same [`Modem`] and the same job queue, so
/// the pool keeps its handle and nothing queued for it is lost.
pub fn spawn(port: String, ctx: Arc<Context>) -> Arc<Modem> {
    let (tx, rx) = mpsc::channel(1);
    let modem = Arc::new(Modem::new(&port, tx));
    let jobs = Arc::new(tokio::sync::Mutex::new(rx));
    let (m, stop, route) = (modem.clone(), ctx.cancel.clone(), ctx.route.clone());
    tokio::spawn(crate::supervise::run("modem", route, stop, move || {
        run(port.clone(), ctx.clone(), m.clone(), jobs.clone())
    }));
    modem
}

/// Why a session with the modem ended.
enum End {
    Stopped,
    /// Reopen after this pause.
    Retry(Duration),
}

async fn run(port: String, ctx: Arc<Context>, modem: Arc<Modem>, jobs: Arc<tokio::sync::Mutex<mpsc::Receiver<Job>>>) {
    let mut jobs = jobs.lock().await;
    // A run after a panic: the job the last one held was answered when it
    // was dropped, so the modem is free again.
    modem.busy.store(false, Ordering::Relaxed);
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
    /// Every memory that may hold received messages or reports: the
    /// profile's, and those the modem offers (AT+CPMS=?), since messages
    /// that arrived before the profile's memory was selected stay where the
    /// modem first put them.
    memories: Vec<String>,
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

    /// The SIM's ICCID (AT+CCID, or Quectel's AT+QCCID).
    async fn iccid(&self) -> Option<String> {
        match self.value("AT+CCID", "+CCID").await {
            Some(v) => Some(v),
            None => self.value("AT+QCCID", "+QCCID").await,
        }
    }

    /// The PIN attempts the SIM has left, where the modem tells.
    async fn pin_attempts(&self) -> Option<u32> {
        for (which, (command, _, _)) in pin::ATTEMPTS.iter().enumerate() {
            if let Ok(r) = self.cmd(command).await
                && let Some(left) = pin::attempts_left(which, &r.lines)
            {
                return Some(left);
            }
        }
        None
    }

    /// Enter the configured PIN into `sim`, unless that SIM refused this PIN
    /// before or has a single attempt left: a SIM locks itself after the
    /// third wrong PIN, and only its PUK opens it again.
    async fn unlock(&self, sim: &str) -> Result<(), (Phase, String)> {
        const REFUSED: &str = "the SIM refused the configured PIN; it will not be sent to this SIM again until \
                               the pin in the config changes";
        let Some(code) = self.ctx.cfg.pin.as_ref().map(|p| p.expose()) else {
            return Err((Phase::PinNeeded, "the SIM asks for a PIN and none is configured".into()));
        };
        if pin::refused(sim, code) {
            return Err((Phase::PinNeeded, REFUSED.into()));
        }
        if let Some(left) = self.pin_attempts().await
            && left <= 1
        {
            let why = format!(
                "the SIM has {left} PIN attempt(s) left and a wrong one would lock it: smsgw sends no PIN; \
                 unlock the SIM by hand (in a phone) and it is taken in"
            );
            return Err((Phase::PinNeeded, why));
        }
        match self.cmd(&format!("AT+CPIN=\"{code}\"")).await {
            Ok(_) => Ok(()),
            Err(AtError::Gone(why)) => Err((Phase::Gone, why)),
            // Refused, or no answer: the SIM may have counted it either way.
            Err(e) => {
                pin::remember_refused(sim, code);
                tracing::warn!(route = %self.ctx.route, modem = %self.own, %sim, error = %e, "the SIM refused the configured PIN");
                Err((Phase::PinNeeded, format!("{REFUSED} ({e})")))
            }
        }
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
        // Most modems read the ICCID before the PIN: it names the SIM for the
        // PIN rule (see `pin`).
        let iccid = self.iccid().await;
        if let Ok(mut i) = self.modem.info.lock() {
            i.manufacturer = Some(manufacturer.clone());
            i.model = Some(model.clone());
            i.imei = imei.clone();
            i.iccid = iccid.clone();
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
                let sim = pin::sim_name(iccid.as_deref(), imei.as_deref(), &self.own);
                self.unlock(&sim).await?;
                tokio::time::sleep(Duration::from_millis(1000)).await;
            }
            other => return Err((Phase::PinNeeded, format!("the SIM needs {other:?}; smsgw will not guess"))),
        }
        let imsi = self.value("AT+CIMI", "+CIMI").await;
        let iccid = match iccid {
            Some(v) => Some(v),
            None => self.iccid().await,
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
        let offered = self.cmd("AT+CPMS=?").await.ok().and_then(|r| r.value("+CPMS").map(readable_memories));
        self.memories = [self.profile.storage.clone(), self.profile.status_report_storage.clone()]
            .into_iter()
            .chain(offered.unwrap_or_default())
            .fold(Vec::new(), |mut all, m| {
                if !all.contains(&m) {
                    all.push(m);
                }
                all
            });
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

    /// Send the job's parts from `first_part` on. A part the network
    /// refuses ends the send; the error carries the parts it took before.
    async fn send(&self, job: &Job) -> Result<Submitted, SubmitError> {
        let long = job.plan.parts.len() > 1;
        let concat_ref = match job.concat_ref {
            Some(r) if long => r,
            _ if long => self.modem.next_concat_ref(),
            _ => 0,
        };
        let opts = SubmitOptions {
            message_ref: 0,
            status_report: self.ctx.cfg.status_reports,
            validity_minutes: job
                .valid_until
                .map(|v| u32::try_from(crate::message::secs_left(v).div_ceil(60)).unwrap_or(u32::MAX)),
            concat_ref,
        };
        let pdus =
            pdu::encode_submit(&job.to, &job.plan, &opts).map_err(|e| SubmitError::permanent("pdu", e.to_string()))?;
        let (imsi, imei) = self.identity();
        let first_part = if job.first_part < pdus.len() { job.first_part } else { 0 };
        let mut sent =
            Submitted { first_part, remote_ids: Vec::new(), concat_ref: long.then_some(u16::from(concat_ref)) };
        for p in pdus.into_iter().skip(first_part) {
            let r = match self
                .at
                .command_with_prompt(
                    &format!("AT+CMGS={}", p.tpdu_len),
                    &p.hex,
                    Duration::from_secs(self.ctx.cfg.send_timeout_secs),
                )
                .await
            {
                Ok(r) => r,
                Err(e) => return Err(from_at(&e).after(sent)),
            };
            let Some(mr) = r.value("+CMGS").and_then(|v| v.trim().parse::<u8>().ok()) else {
                let why = format!("no message reference in the answer to AT+CMGS: {:?}", r.lines);
                return Err(SubmitError::temporary("modem_answer", why).after(sent));
            };
            sent.remote_ids.push(Some(remote_id(&imsi, &imei, mr, &job.to)));
        }
        Ok(sent)
    }

    /// The SIM (IMSI) and the modem (IMEI) that name what this modem sends;
    /// the port stands in for either when the modem did not say.
    fn identity(&self) -> (String, String) {
        let info = self.modem.info.lock().ok();
        let get = |f: fn(&Info) -> &Option<String>| {
            info.as_ref().and_then(|i| f(i).clone()).unwrap_or_else(|| self.own.clone())
        };
        (get(|i| &i.imsi), get(|i| &i.imei))
    }

    fn emit(&self, event: Event) -> oneshot::Receiver<bool> {
        let (tx, rx) = oneshot::channel();
        let _ = self.ctx.events.send(RouteEvent { route: self.ctx.route.clone(), event, ack: Some(tx) });
        rx
    }

    /// The number this modem receives on: the SIM's, if it knows it, else its IMSI.
    fn receiving_number(&self) -> String {
        self.modem
            .info
            .lock()
            .ok()
            .and_then(|i| i.number.clone().or_else(|| i.imsi.clone()))
            .unwrap_or_else(|| self.own.clone())
    }

    /// A PDU that arrived (inbound message or status report) becomes an
    /// event; true once the store has it. `tpdu_len` is the length the
    /// modem's header line gave, when there was one. A PDU that cannot be
    /// decoded is stored as it came, with the reason, so that it can leave
    /// the SIM: left there, such PDUs would fill it and stop all reception.
    async fn record(&self, hex: &str, tpdu_len: Option<usize>) -> bool {
        let event = match pdu::decode_from_modem(hex, tpdu_len) {
            Ok(Pdu::Deliver(d)) => {
                self.modem.received.fetch_add(1, Ordering::Relaxed);
                Event::Inbound {
                    from: d.sender.value.clone(),
                    to: self.receiving_number(),
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
                let (imsi, imei) = self.identity();
                let failed = status != ReceiptStatus::Delivered;
                Event::Receipt {
                    remote_id: remote_id(&imsi, &imei, r.message_ref, &r.recipient.value),
                    status,
                    error_code: failed.then(|| format!("tp_st_{:02x}", r.status)),
                    error_text: failed.then(|| pdu::status_text(r.status).to_string()),
                    sc_time: Some(r.submitted.timestamp_millis()),
                    legacy_id: Some(legacy_remote_id(&imsi, r.message_ref, &r.recipient.value)),
                }
            }
            Ok(Pdu::Submit(_)) => return true, // a copy of our own outbox: nothing to do
            Err(e) => {
                tracing::warn!(route = %self.ctx.route, modem = %self.own, error = %e, pdu = hex, "undecodable PDU from the modem; stored as it came");
                self.modem.received.fetch_add(1, Ordering::Relaxed);
                Event::Undecodable { to: self.receiving_number(), pdu: hex.trim().to_string(), reason: e.to_string() }
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
        let header_len = r.as_ref().ok().and_then(|r| r.value("+CMGR")).and_then(header_length);
        let pdu_line =
            r.as_ref().ok().and_then(|r| r.lines.iter().find(|l| !l.starts_with('+') && !l.is_empty()).cloned());
        let deleted = match pdu_line {
            Some(hex) if self.record(&hex, header_len).await => self.cmd(&format!("AT+CMGD={index}")).await.map(|_| ()),
            _ => Ok(()),
        };
        self.restore(storage).await;
        r.and(deleted)
    }

    /// Everything stored on the modem, messages and (in their own memory,
    /// where the profile keeps them apart) status reports: what arrived
    /// while no one was reading.
    async fn sweep(&self) -> Result<(), AtError> {
        let mut first_error = None;
        for memory in &self.memories {
            let r = match self.select(memory).await {
                Ok(()) => self.sweep_selected().await,
                Err(e) => Err(e),
            };
            self.restore(memory).await;
            if let Err(e) = r {
                tracing::debug!(modem = %self.own, %memory, error = %e, "cannot list this memory");
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
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
                pending.push((idx, hex.clone(), header_length(v)));
            }
        }
        for (idx, hex, len) in pending {
            if self.record(&hex, len).await {
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
                self.record(&pdu, None).await;
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

/// The `<length>` at the end of a PDU-mode `+CMGR:` / `+CMGL:` header: the
/// TPDU's octets, SMSC part not counted (TS 27.005 §3.4.2, §4.1).
fn header_length(value: &str) -> Option<usize> {
    value.rsplit(',').next()?.trim().parse().ok()
}

/// The memories in the first list of an `AT+CPMS=?` answer (those that can
/// be read and deleted) that hold received messages or status reports:
/// `("SM","ME","SR"),(...),(...)` or `(("SM","BM","SR"),("SM"))`. "MT" (SM
/// and ME together) and "BM" (cell broadcast) are left out.
fn readable_memories(value: &str) -> Vec<String> {
    let first = value.trim_start_matches(['(', ' ']).split(')').next().unwrap_or("");
    first
        .split(',')
        .map(|m| m.trim().trim_matches('"').to_ascii_uppercase())
        .filter(|m| matches!(m.as_str(), "SM" | "ME" | "SR"))
        .collect()
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
/// modem gave it, the recipient and the modem (two SIMs may report the same
/// IMSI). References wrap at 256, so the name comes round again; the
/// report's network time tells those apart.
pub fn remote_id(imsi: &str, imei: &str, mr: u8, to: &str) -> String {
    format!("{}:{imei}", legacy_remote_id(imsi, mr, to))
}

/// The name parts had before the modem was part of it: still matched, so a
/// part sent before an upgrade gets its report.
pub fn legacy_remote_id(imsi: &str, mr: u8, to: &str) -> String {
    format!("{imsi}:{mr}:{}", to.trim_start_matches('+'))
}

/// The SIM (IMSI, or the port when the SIM gave none) a part went out from,
/// in either form of its name.
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
    let mut s = Session { at, ctx, modem, profile, own: own.clone(), memories: Vec::new() };
    if let Err((phase, why)) = s.start().await {
        tracing::warn!(route = %ctx.route, modem = %own, %why, "modem not ready");
        modem.set(phase, Some(why));
        if phase == Phase::Unresponsive && !s.profile.reset.is_empty() {
            tracing::warn!(route = %ctx.route, modem = %own, "resetting the modem");
            let _ = s.at.command(&s.profile.reset, Duration::from_secs(5)).await;
        }
        // A PIN or a SIM missing will not fix itself quickly.
        let pause = if matches!(phase, Phase::PinNeeded | Phase::NoSim) { ctx.cfg.retry_secs } else { 5 };
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
                crate::supervise::fault_point("modem", port);
                modem.set(Phase::Sending, None);
                let r = s.send(&job).await;
                // Counted in SMS, as SIM plans count them (a long message is
                // several, and the parts sent before a failed one count too).
                let parts = match &r {
                    Ok(sent) => sent.remote_ids.len(),
                    Err(e) => {
                        modem.failed.fetch_add(1, Ordering::Relaxed);
                        e.accepted.remote_ids.len()
                    }
                };
                modem.sent.fetch_add(parts as u64, Ordering::Relaxed);
                if let Ok(mut w) = modem.window.lock() {
                    let now = std::time::Instant::now();
                    w.extend(std::iter::repeat_n(now, parts));
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
    fn header_lengths_and_offered_memories() {
        assert_eq!(header_length(" 1,0,,24"), Some(24));
        assert_eq!(header_length(" 0,\"REC UNREAD\",,159"), Some(159));
        assert_eq!(header_length(" 3,\"x,y\",30"), Some(30));
        assert_eq!(header_length(" 1,0,"), None);
        assert_eq!(readable_memories("(\"SM\",\"ME\",\"SR\"),(\"SM\",\"ME\"),(\"SM\",\"ME\")"), ["SM", "ME", "SR"]);
        assert_eq!(readable_memories("((\"SM\",\"BM\",\"SR\"),(\"SM\"))"), ["SM", "SR"]);
        assert_eq!(readable_memories("(\"MT\",\"SM\",\"ME\"),(\"MT\",\"SM\",\"ME\"),(\"MT\",\"SM\")"), ["SM", "ME"]);
        assert!(readable_memories("(),(),()").is_empty());
        assert!(readable_memories("").is_empty());
    }

    #[test]
    fn only_one_of_two_racing_submits_gets_an_idle_modem() {
        let (tx, mut rx) = mpsc::channel(1);
        let m = Modem::new("p", tx);
        let job = || Job {
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
    fn remote_ids_name_sim_reference_recipient_and_modem() {
        let id = remote_id("250011234567890", "867856030456784", 7, "+79161234567");
        assert_eq!(id, "250011234567890:7:79161234567:867856030456784");
        assert_eq!(legacy_remote_id("250011234567890", 7, "+79161234567"), "250011234567890:7:79161234567");
        // Caps restored after a restart find the SIM in either form.
        assert_eq!(sender_of(&id), "250011234567890");
        assert_eq!(sender_of("250011234567890:7:79161234567"), "250011234567890");
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
            retry_secs: 60,
        },
        profiles: profiles.to_vec(),
        events: tx,
        free: Arc::new(Notify::new()),
        sent_before: Mutex::new(Default::default()),
        cancel: CancellationToken::new(),
    };
    let modem = spawn_idle(port);
    let mut s = Session {
        at,
        ctx: &ctx,
        modem: &modem,
        profile: profile::choose(profiles, "", "").clone(),
        own: port.into(),
        memories: Vec::new(),
    };
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
