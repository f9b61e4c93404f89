//! One AT session with a modem, from an opened port: commands, bringing the
//! modem to a known state (identify, unlock the SIM, never with a PIN it
//! refused before nor when it has one attempt left, wait for the network,
//! PDU mode, storage, indications), health, sending, and reading what
//! arrives (read, commit, then delete), with status reports turned into
//! receipts named by modem, SIM, TP-MR and recipient and carrying the
//! network's time, so the store can tell apart parts whose TP-MR came
//! round again.

use super::answers::{cnum_number, header_length, readable_memories, signal, smsc_number};
use super::at::{AtError, AtPort, Urc};
use super::ids::{legacy_remote_id, remote_id};
use super::pin;
use super::profile::{self, Profile};
use super::state::{Context, Info, Modem, Phase, SendJob};
use crate::channel::{Event, RouteEvent, SubmitError, Submitted};
use crate::message::ReceiptStatus;
use crate::sms::pdu::{self, Pdu, ReportOutcome, SubmitOptions};
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::oneshot;

const COMMAND: Duration = Duration::from_secs(10);

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

/// An AT session with one modem: lasts from the port's opening until the
/// run loop closes or reopens it.
pub(super) struct AtSession<'a> {
    pub(super) at: AtPort,
    pub(super) ctx: &'a Context,
    pub(super) modem: &'a Modem,
    pub(super) profile: Profile,
    pub(super) own: String,
    /// Every memory that may hold received messages or reports: the
    /// profile's, and those the modem offers (AT+CPMS=?), since messages
    /// that arrived before the profile's memory was selected stay where the
    /// modem first put them.
    pub(super) memories: Vec<String>,
}

impl AtSession<'_> {
    pub(super) async fn cmd(&self, c: &str) -> Result<super::at::Response, AtError> {
        if self.profile.command_delay_ms > 0 {
            tokio::time::sleep(Duration::from_millis(self.profile.command_delay_ms)).await;
        }
        self.at.command(c, COMMAND).await
    }

    /// The first value of `prefix` in the answer to `c`, unquoted.
    pub(super) async fn value(&self, c: &str, prefix: &str) -> Option<String> {
        let r = self.cmd(c).await.ok()?;
        let v = match r.value(prefix) {
            Some(v) => v.to_string(),
            None => r.lines.iter().find(|l| !l.trim().is_empty())?.trim().to_string(),
        };
        Some(v.trim().trim_matches('"').to_string())
    }

    pub(super) async fn health(&self) -> Result<(), AtError> {
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

    pub(super) async fn registration(&self) -> Option<u8> {
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
    pub(super) async fn start(&mut self) -> Result<(), (Phase, String)> {
        self.wake().await?;
        let (imei, iccid) = self.identify().await;
        self.unlock_sim(iccid.as_deref(), imei.as_deref()).await?;
        self.identify_sim(iccid).await;
        self.wait_for_network().await?;
        self.set_pdu_mode().await?;
        self.select_storage().await;
        self.set_indications().await;
        self.read_smsc().await;
        let _ = self.health().await;
        Ok(())
    }

    /// Get the modem's attention: out of a half-sent payload, answering AT,
    /// echo off, errors as codes.
    async fn wake(&mut self) -> Result<(), (Phase, String)> {
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
        Ok(())
    }

    /// Who the modem is: its profile (and the profile's init commands), its
    /// IMEI and, where it tells before the PIN, its SIM's ICCID.
    async fn identify(&mut self) -> (Option<String>, Option<String>) {
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
        (imei, iccid)
    }

    /// The SIM: present, and unlocked (with the configured PIN if it asks).
    async fn unlock_sim(&self, iccid: Option<&str>, imei: Option<&str>) -> Result<(), (Phase, String)> {
        let pin_state = match self.cmd("AT+CPIN?").await {
            Ok(r) => r.value("+CPIN").unwrap_or("").trim().to_string(),
            Err(AtError::Cme { code: 10, .. }) => return Err((Phase::NoSim, "no SIM card inserted".into())),
            Err(AtError::Timeout { .. }) => "READY".into(), // some modems answer AT+CPIN? without OK
            Err(e) => return Err((Phase::NoSim, format!("cannot read the SIM state: {e}"))),
        };
        match pin_state.as_str() {
            "READY" => {}
            "SIM PIN" => {
                let sim = pin::sim_name(iccid, imei, &self.own);
                self.unlock(&sim).await?;
                tokio::time::sleep(Duration::from_millis(1000)).await;
            }
            other => return Err((Phase::PinNeeded, format!("the SIM needs {other:?}; smsgw will not guess"))),
        }
        Ok(())
    }

    /// The unlocked SIM: its IMSI, ICCID (if it did not tell before the
    /// PIN) and own number; sends made through it before a restart count
    /// against its caps.
    async fn identify_sim(&self, iccid: Option<String>) {
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
    }

    /// The network: registered (home or roaming) within the configured time.
    async fn wait_for_network(&self) -> Result<(), (Phase, String)> {
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
        Ok(())
    }

    /// PDU mode, once the modem takes SMS commands.
    async fn set_pdu_mode(&self) -> Result<(), (Phase, String)> {
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
        Ok(())
    }

    /// The profile's message storage, and every memory to sweep.
    async fn select_storage(&mut self) {
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
    }

    /// How new messages and status reports are announced.
    async fn set_indications(&self) {
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
    }

    /// The SMSC address the SIM holds, for the readers.
    async fn read_smsc(&self) {
        let smsc = self.value("AT+CSCA?", "+CSCA").await.and_then(|v| smsc_number(&v));
        if let Ok(mut i) = self.modem.info.lock() {
            i.smsc = smsc;
        }
    }

    /// Send the job's parts from `first_part` on. A part the network
    /// refuses ends the send; the error carries the parts it took before.
    pub(super) async fn send(&self, job: &SendJob) -> Result<Submitted, SubmitError> {
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

    /// Back to the usual memory after [`AtSession::select`].
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
    pub(super) async fn sweep(&self) -> Result<(), AtError> {
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

    pub(super) async fn urc(&self, u: Urc) -> Result<(), AtError> {
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
