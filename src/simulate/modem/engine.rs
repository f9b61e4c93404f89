//! The modem's state machine, free of I/O: bytes from the port go in ([`Engine::feed`]), the
//! clock goes in ([`Engine::tick`]), the far side's events go in ([`Engine::deliver`] ...), bytes
//! for the port come out ([`Engine::take_output`]).
//!
//! The state it works on (what survives a power cycle and the [`PowerOnState`] that does not) is
//! in `state`; each command's effect is in `commands`, which the engine calls and which never
//! calls back. Input is handled a byte at a time: command lines end with CR, a prompt's data
//! ends with Ctrl-Z (sent) or ESC (cancelled). Nothing here panics on input.

use std::time::{Duration, Instant};

use chrono::{DateTime, FixedOffset, Local, Utc};

use super::SentSms;
use super::commands::{Cmd, text_mode_lines};
use super::pdu::{self as modem_pdu, ModemPdu};
use super::state::{After, Engine, ErrorReply, Incoming, Input, Outcome, PowerOnState, Sim, Slot};

/// Longest command line kept; a longer one is answered ERROR.
const MAX_LINE: usize = 1024;
/// Longest PDU or text accepted after a prompt; more is refused at Ctrl-Z.
const MAX_DATA: usize = 2048;
/// Commands kept for [`Engine::commands`] before the oldest are dropped.
const MAX_COMMANDS: usize = 100_000;
const CTRL_Z: u8 = 0x1A;
const ESC: u8 = 0x1B;
const BACKSPACE: u8 = 0x08;
/// Noise a freshly opened port shows with [`super::Quirks::garbage_on_open`].
const NOISE: &[u8] = &[0x00, 0xFF, 0xFE, 0x00, 0xF0, 0x1B, 0x7F, 0x00, 0xFF, 0x88, 0x00];

impl Engine {
    // ---- power, port and far-side controls ----

    pub fn power_up(&mut self, now: Instant) {
        self.powered = true;
        self.s = PowerOnState::new(&self.cfg, self.pin.is_some() || self.puk_locked, now);
        self.tick(now);
    }

    pub fn power_off(&mut self) {
        self.powered = false;
        self.attached = false;
        self.out.clear();
    }

    pub fn set_attached(&mut self, attached: bool, now: Instant) {
        self.attached = attached;
        // Whatever was printed while no one had the port open is gone.
        self.out.clear();
        if attached && self.cfg.quirks.garbage_on_open && self.powered && !self.hung {
            self.out.extend_from_slice(NOISE);
        }
        self.tick(now);
    }

    /// Line noise now: binary junk and a line no modem command produced, as a URC would come.
    pub fn garbage(&mut self) {
        let mut bytes = NOISE.to_vec();
        bytes.extend_from_slice(b"\r\n#~*garbage*~#\r\n");
        self.urc_bytes(bytes);
    }

    pub fn set_hung(&mut self, hung: bool) {
        self.hung = hung;
        if hung {
            self.out.clear();
        }
    }

    pub fn set_coverage(&mut self, coverage: bool) {
        if coverage && !self.coverage {
            // Searching again from now on.
            self.s.radio_on_at = self.s.radio_on_at.map(|_| Instant::now());
        }
        self.coverage = coverage;
    }

    pub fn set_signal(&mut self, csq: u8) {
        self.csq = csq;
    }

    pub fn fail_next_sends(&mut self, n: usize, code: u16) {
        self.fail_sends = n;
        self.fail_code = code;
    }

    /// Bytes for the port, and whether the device is to re-enumerate (and after how long).
    pub fn take_output(&mut self) -> (Vec<u8>, Option<Duration>) {
        let out = std::mem::take(&mut self.out);
        let reset = std::mem::take(&mut self.usb_reset).then(|| Duration::from_millis(self.cfg.quirks.usb_reset_ms));
        if self.hung || !self.powered { (Vec::new(), reset) } else { (out, reset) }
    }

    fn can_receive(&self, now: Instant) -> bool {
        self.powered && !self.hung && self.sim() == Sim::Ready && self.registered(now) && self.sms_ready(now)
    }

    pub fn huawei_active(&self) -> bool {
        self.cfg.quirks.huawei_urcs && self.s.curc
    }

    // ---- the far side ----

    pub fn deliver(&mut self, from: &str, text: &str, now: Instant) {
        let reference = self.next_concat;
        self.next_concat = self.next_concat.wrapping_add(1);
        // Each part of a long message is a delivery of its own: they come apart in time.
        let gap = Duration::from_millis(self.cfg.part_interval_ms);
        let mut due = self.network.back().map_or(now, |(at, _)| (*at).max(now));
        for (i, pdu) in
            modem_pdu::encode_deliver(&self.cfg.smsc, from, text, local_now(), reference).into_iter().enumerate()
        {
            if i > 0 {
                due += gap;
            }
            self.network.push_back((due, Incoming::Deliver(pdu)));
        }
        self.pump(now);
    }

    /// A PDU from the network as it is, however malformed: `hex` is the TPDU, the SMSC part is
    /// put in front of it.
    pub fn deliver_pdu(&mut self, tpdu: &[u8], now: Instant) {
        let mut bytes = modem_pdu::smsc_part(&self.cfg.smsc);
        bytes.extend_from_slice(tpdu);
        let hex: String = bytes.iter().map(|b| format!("{b:02X}")).collect();
        let due = self.network.back().map_or(now, |(at, _)| (*at).max(now));
        self.network.push_back((due, Incoming::Deliver(ModemPdu { hex, tpdu_len: tpdu.len() })));
        self.pump(now);
    }

    pub fn status_report(&mut self, message_ref: u8, recipient: &str, status: u8, now: Instant) {
        let discharged = local_now();
        let submitted = self
            .sent
            .iter()
            .rev()
            .find(|s| s.message_ref == message_ref && s.to == recipient)
            .map_or(discharged, |s| s.at.with_timezone(discharged.offset()));
        let pdu =
            modem_pdu::encode_status_report(&self.cfg.smsc, message_ref, recipient, submitted, discharged, status);
        let due = self.network.back().map_or(now, |(at, _)| (*at).max(now));
        self.network.push_back((due, Incoming::Report(pdu)));
        self.pump(now);
    }

    /// Hand waiting messages to the modem while it can take them.
    fn pump(&mut self, now: Instant) {
        while self.can_receive(now) {
            let Some((due, item)) = self.network.front().cloned() else { break };
            if due > now {
                break;
            }
            let taken = match item {
                Incoming::Deliver(pdu) => self.route_deliver(pdu),
                Incoming::Report(pdu) => self.route_report(pdu),
            };
            if !taken {
                break;
            }
            self.network.pop_front();
        }
    }

    /// One SMS-DELIVER reaches the modem. False: no room, the network keeps it.
    fn route_deliver(&mut self, pdu: ModemPdu) -> bool {
        if self.cfg.quirks.no_sms_storage {
            return true;
        }
        self.unacknowledged_stops_routing();
        if self.s.cnmi[1] == 2 {
            let line = if self.s.text_mode {
                text_mode_lines(&pdu, "+CMT: ", &self.s.cscs).unwrap_or_default()
            } else {
                vec![format!("+CMT: ,{}", pdu.tpdu_len), pdu.hex.clone()]
            };
            self.s.ack_pending = self.s.csms == 1;
            self.indication(&line);
            return true;
        }
        let mem = self.s.mem[2].clone();
        let Some(index) = self.store_mut(&mem).and_then(|store| store.insert(Slot { stat: 0, pdu: pdu.clone() }))
        else {
            return false;
        };
        if matches!(self.s.cnmi[1], 1 | 3) {
            self.indication(&[format!("+CMTI: \"{mem}\",{index}")]);
        }
        true
    }

    /// Under AT+CSMS=1, an inline +CMT/+CDS still unacknowledged when the next one comes
    /// turns inline routing off: messages are stored unannounced, reports are dropped.
    fn unacknowledged_stops_routing(&mut self) {
        if self.s.ack_pending {
            self.s.ack_pending = false;
            self.s.cnmi[1] = 0;
            self.s.cnmi[3] = 0;
        }
    }

    /// One status report reaches the modem. False: no room, the network keeps it.
    fn route_report(&mut self, pdu: ModemPdu) -> bool {
        self.unacknowledged_stops_routing();
        match self.s.cnmi[3] {
            1 => {
                let lines = if self.s.text_mode {
                    text_mode_lines(&pdu, "+CDS: ", &self.s.cscs).unwrap_or_default()
                } else {
                    vec![format!("+CDS: {}", pdu.tpdu_len), pdu.hex.clone()]
                };
                self.s.ack_pending = self.s.csms == 1;
                self.indication(&lines);
            }
            2 => {
                let mem = if self.cfg.quirks.status_reports_stored { "SR".to_string() } else { self.s.mem[2].clone() };
                // Memory full: the network keeps the report and tries again later, as with messages.
                let Some(index) = self.store_mut(&mem).and_then(|store| store.insert(Slot { stat: 0, pdu })) else {
                    return false;
                };
                let line = if self.cfg.quirks.cdsi_wrong_memory {
                    "+CDSI: \"SM\",0".to_string()
                } else {
                    format!("+CDSI: \"{mem}\",{index}")
                };
                self.indication(&[line]);
            }
            _ => {}
        }
        true
    }

    // ---- output ----

    /// An unsolicited result, held while the host is typing data after a prompt.
    pub fn urc(&mut self, lines: &[String]) {
        let mut bytes = Vec::new();
        for line in lines {
            bytes.extend_from_slice(b"\r\n");
            bytes.extend_from_slice(line.as_bytes());
            bytes.extend_from_slice(b"\r\n");
        }
        self.urc_bytes(bytes);
    }

    /// TS 27.005 §3.4.1 (AT+CNMI mode 2) and V.250: while the link is reserved (the host is
    /// typing after a prompt, or a command such as AT+CMGS has not given its final result yet)
    /// result codes are held in the modem and flushed after the final result, never printed
    /// inside an answer.
    fn urc_bytes(&mut self, bytes: Vec<u8>) {
        if matches!(self.s.input, Input::Command(_)) && self.s.pending.is_none() {
            self.out.extend(bytes);
        } else {
            self.s.held.extend(bytes);
        }
    }

    /// A new-message or status-report indication: buffered in CNMI mode 0.
    fn indication(&mut self, lines: &[String]) {
        if self.s.cnmi[0] == 0 {
            let mut bytes = Vec::new();
            for line in lines {
                bytes.extend_from_slice(format!("\r\n{line}\r\n").as_bytes());
            }
            self.s.buffered.push(bytes);
        } else {
            self.urc(lines);
        }
    }

    fn random(&mut self) -> u64 {
        // xorshift64*
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn huawei_line(&mut self) -> String {
        match self.random() % 3 {
            0 => format!("^RSSI:{}", self.csq),
            1 => "^MODE:5,4".to_string(),
            _ => "^SRVST:0".to_string(),
        }
    }

    /// Maybe a Huawei URC at a point inside an answer.
    fn maybe_huawei(&mut self, bytes: &mut Vec<u8>) {
        if self.huawei_active() && self.random().is_multiple_of(4) {
            let line = self.huawei_line();
            bytes.extend_from_slice(format!("\r\n{line}\r\n").as_bytes());
        }
    }

    /// An answer: information lines, then the final result (None: no final result).
    fn answer(&mut self, lines: &[String], final_result: Option<String>) -> Vec<u8> {
        let mut bytes = Vec::new();
        if !lines.is_empty() {
            self.maybe_huawei(&mut bytes);
            bytes.extend_from_slice(b"\r\n");
            for line in lines {
                bytes.extend_from_slice(line.as_bytes());
                bytes.extend_from_slice(b"\r\n");
                self.maybe_huawei(&mut bytes);
            }
            if self.cfg.quirks.empty_line_before_ok && final_result.is_some() {
                bytes.extend_from_slice(b"\r\n");
            }
        }
        if let Some(result) = final_result {
            bytes.extend_from_slice(format!("\r\n{result}\r\n").as_bytes());
        }
        bytes
    }

    /// Send an answer now, or after `delay`; then whatever URCs were held meanwhile (those that
    /// fall due during the delay come after the answer too).
    fn send_answer(&mut self, bytes: Vec<u8>, delay: Duration, now: Instant) {
        if delay.is_zero() {
            self.out.extend(bytes);
            let held = std::mem::take(&mut self.s.held);
            self.out.extend(held);
        } else {
            self.s.pending = Some((now + delay, bytes));
        }
    }

    pub fn render_error(&self, error: ErrorReply) -> String {
        super::commands::render_error(self, error)
    }

    // ---- the clock ----

    pub fn tick(&mut self, now: Instant) {
        if !self.powered {
            return;
        }
        if self.hung {
            return;
        }
        if let Some((due, _)) = &self.s.pending
            && now >= *due
        {
            if let Some((_, bytes)) = self.s.pending.take() {
                self.out.extend(bytes);
            }
            let held = std::mem::take(&mut self.s.held);
            self.out.extend(held);
            let deferred = std::mem::take(&mut self.s.deferred);
            self.feed(&deferred, now);
        }
        if !self.awake(now) {
            return;
        }
        if !self.s.boot_printed {
            self.s.boot_printed = true;
            let lines = self.boot_lines();
            self.urc(&lines);
        }
        if !self.s.sms_ready_printed && self.sms_ready(now) {
            self.s.sms_ready_printed = true;
            let lines = self.sms_ready_lines();
            self.urc(&lines);
        }
        let stat = self.reg_stat(now);
        if stat != self.s.last_stat {
            self.s.last_stat = stat;
            let mut lines = Vec::new();
            for (name, n) in [("+CREG", self.s.creg_n), ("+CGREG", self.s.cgreg_n), ("+CEREG", self.s.cereg_n)] {
                if n >= 1 {
                    lines.push(super::commands::creg_urc(self, name, n, stat));
                }
            }
            self.urc(&lines);
        }
        let mut due = Vec::new();
        self.scheduled.retain(|(at, mr, to, status)| {
            if *at <= now {
                due.push((*mr, to.clone(), *status));
                false
            } else {
                true
            }
        });
        for (mr, to, status) in due {
            self.status_report(mr, &to, status, now);
        }
        self.pump(now);
        if self.huawei_active() && now >= self.s.next_huawei {
            let line = self.huawei_line();
            self.urc(&[line]);
            self.s.next_huawei = now + Duration::from_millis(300 + self.random() % 1200);
        }
    }

    fn boot_lines(&self) -> Vec<String> {
        let cpin = match self.sim() {
            Sim::Ready => "+CPIN: READY",
            Sim::Pin => "+CPIN: SIM PIN",
            Sim::Puk => "+CPIN: SIM PUK",
        };
        match self.cfg.quirks.boot_urcs.as_str() {
            "none" => Vec::new(),
            "quectel" => vec!["RDY".into(), cpin.into(), "+QUSIM: 1".into()],
            _ => vec!["RDY".into(), cpin.into()],
        }
    }

    fn sms_ready_lines(&self) -> Vec<String> {
        let lines: &[&str] = match self.cfg.quirks.boot_urcs.as_str() {
            "none" => &[],
            "sim7600" => &["SMS DONE", "PB DONE"],
            "quectel" => &["+QIND: SMS DONE", "+QIND: PB DONE"],
            _ => &["Call Ready", "SMS Ready"],
        };
        lines.iter().map(|l| l.to_string()).collect()
    }

    // ---- input ----

    pub fn feed(&mut self, bytes: &[u8], now: Instant) {
        if !self.powered || self.hung || !self.awake(now) {
            return;
        }
        for (i, &b) in bytes.iter().enumerate() {
            if self.s.pending.is_some() {
                self.s.deferred.extend_from_slice(&bytes[i..]);
                self.s.deferred.truncate(MAX_DATA * 4);
                return;
            }
            self.feed_byte(b, now);
        }
    }

    fn feed_byte(&mut self, b: u8, now: Instant) {
        let echo = self.s.echo;
        match &mut self.s.input {
            Input::Command(line) => match b {
                b'\r' => {
                    if echo {
                        self.out.push(b);
                    }
                    let line = std::mem::take(line);
                    let overflow = std::mem::take(&mut self.s.overflow);
                    self.run_line(&line, overflow, now);
                }
                BACKSPACE => {
                    line.pop();
                    if echo {
                        self.out.push(b);
                    }
                }
                // A lone ESC or Ctrl-Z outside a prompt (gammu starts with ESC CR): ignored.
                ESC | CTRL_Z => {}
                _ => {
                    if line.len() < MAX_LINE {
                        line.push(b);
                    } else {
                        self.s.overflow = true;
                    }
                    if echo {
                        self.out.push(b);
                    }
                }
            },
            Input::Pdu { .. } | Input::Text { .. } => self.data_byte(b, now),
        }
    }

    /// A byte typed after a prompt.
    fn data_byte(&mut self, b: u8, now: Instant) {
        let echo = self.s.echo;
        let is_text = matches!(self.s.input, Input::Text { .. });
        let data = match &mut self.s.input {
            Input::Pdu { data, .. } | Input::Text { data, .. } => data,
            Input::Command(_) => return,
        };
        match b {
            CTRL_Z => self.finish_data(now),
            ESC => {
                // Cancelled: back to commands, no message sent.
                self.s.input = Input::Command(Vec::new());
                self.s.overflow = false;
                let bytes = self.answer(&[], Some("OK".into()));
                self.send_answer(bytes, Duration::ZERO, now);
            }
            BACKSPACE => {
                data.pop();
                if echo {
                    self.out.push(b);
                }
            }
            b'\r' if is_text => {
                // TS 27.005: every CR inside the text is answered with a new prompt.
                if data.len() < MAX_DATA {
                    data.push(b'\n');
                }
                self.out.extend_from_slice(b"\r\n> ");
            }
            _ => {
                if data.len() < MAX_DATA {
                    data.push(b);
                } else {
                    self.s.overflow = true;
                }
                if echo {
                    self.out.push(b);
                }
            }
        }
    }

    /// A complete command line (without its CR).
    fn run_line(&mut self, raw: &[u8], overflow: bool, now: Instant) {
        let text = String::from_utf8_lossy(raw);
        let upper = text.to_ascii_uppercase();
        let Some(start) = upper.find("AT") else {
            // Not a command (an empty line, noise): real modems say nothing.
            return;
        };
        let line = text[start..].trim_end().to_string();
        if self.commands.len() >= MAX_COMMANDS {
            self.commands.drain(..MAX_COMMANDS / 10);
        }
        self.commands.push(line.clone());
        if overflow {
            let bytes = self.answer(&[], Some(self.render_error(ErrorReply::Plain)));
            self.send_answer(bytes, Duration::ZERO, now);
            return;
        }
        let Some(cmds) = super::commands::parse_line(&line[2..]) else {
            let bytes = self.answer(&[], Some(self.render_error(ErrorReply::Plain)));
            self.send_answer(bytes, Duration::ZERO, now);
            return;
        };
        let mut lines = Vec::new();
        let mut final_result = Some("OK".to_string());
        for cmd in &cmds {
            match self.run_command(cmd, now) {
                Outcome::Done(more) => lines.extend(more),
                Outcome::NoFinal(more) => {
                    lines.extend(more);
                    if cmds.len() == 1 {
                        final_result = None;
                    }
                }
                Outcome::Prompt(input) => {
                    let mut bytes = self.answer(&lines, None);
                    let prompt: &[u8] = match input {
                        Input::Pdu { .. } if self.cfg.quirks.prompt_without_space => b"\r\n>\r\n",
                        _ => b"\r\n> ",
                    };
                    bytes.extend_from_slice(prompt);
                    self.out.extend(bytes);
                    self.s.input = input;
                    self.after.clear();
                    return;
                }
                Outcome::Fail(error) => {
                    final_result = Some(self.render_error(error));
                    self.after.clear();
                    break;
                }
            }
        }
        let bytes = self.answer(&lines, final_result);
        self.send_answer(bytes, Duration::ZERO, now);
        for after in std::mem::take(&mut self.after) {
            self.run_after(after, now);
        }
    }

    fn run_command(&mut self, cmd: &Cmd, now: Instant) -> Outcome {
        super::commands::run(self, cmd, now)
    }

    fn run_after(&mut self, after: After, now: Instant) {
        match after {
            After::Reset => {
                if self.cfg.quirks.usb_reset_ms > 0 {
                    self.usb_reset = true;
                } else {
                    let busy = self.cfg.quirks.busy_after_cfun;
                    self.power_up(now);
                    self.s.busy_left = busy;
                }
            }
            After::SimReady => {
                if self.cfg.quirks.boot_urcs != "none" {
                    self.urc(&["+CPIN: READY".to_string()]);
                }
            }
            After::FlushBuffered => {
                for bytes in std::mem::take(&mut self.s.buffered) {
                    self.urc_bytes(bytes);
                }
            }
        }
    }

    /// Ctrl-Z after a prompt: the PDU or text is submitted.
    fn finish_data(&mut self, now: Instant) {
        let input = std::mem::replace(&mut self.s.input, Input::Command(Vec::new()));
        let overflow = std::mem::take(&mut self.s.overflow);
        let result = match input {
            Input::Pdu { len, data } => self.submit_pdu(len, &data, overflow, now),
            Input::Text { to, data } => self.submit_text(&to, &data, overflow, now),
            Input::Command(_) => return,
        };
        let bytes = match result {
            Ok(mr) => self.answer(&[format!("+CMGS: {mr}")], Some("OK".into())),
            Err(error) => {
                let error = if self.cfg.quirks.cms_error_without_code && matches!(error, ErrorReply::Cms(_)) {
                    ErrorReply::CmsEmpty
                } else {
                    error
                };
                self.answer(&[], Some(self.render_error(error)))
            }
        };
        self.send_answer(bytes, Duration::from_millis(self.cfg.send_delay_ms), now);
    }

    /// Checks shared by both modes once the message is complete; Ok: the network takes it.
    fn network_accepts(&mut self, now: Instant) -> Result<(), ErrorReply> {
        if !self.registered(now) {
            return Err(ErrorReply::Cms(331));
        }
        if self.fail_sends > 0 {
            self.fail_sends -= 1;
            return Err(ErrorReply::Cms(self.fail_code));
        }
        Ok(())
    }

    fn take_mr(&mut self) -> u8 {
        let mr = self.next_mr;
        self.next_mr = self.next_mr.wrapping_add(1);
        mr
    }

    fn submit_pdu(&mut self, len: usize, data: &[u8], overflow: bool, now: Instant) -> Result<u8, ErrorReply> {
        use crate::sms::pdu::{Pdu, decode};
        let hex: String = String::from_utf8_lossy(data).chars().filter(|c| !c.is_ascii_whitespace()).collect();
        if overflow || hex.is_empty() || !hex.len().is_multiple_of(2) || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ErrorReply::Cms(304));
        }
        // TPDU length: everything after the SMSC part.
        let smsc_len = usize::from_str_radix(&hex[..2], 16).map_err(|_| ErrorReply::Cms(304))?;
        if hex.len() / 2 != 1 + smsc_len + len {
            return Err(ErrorReply::Cms(304));
        }
        let Ok(Pdu::Submit(submit)) = decode(&hex, true) else { return Err(ErrorReply::Cms(304)) };
        self.network_accepts(now)?;
        let mr = self.take_mr();
        let sms = SentSms {
            message_ref: mr,
            to: submit.recipient.value.clone(),
            text: submit.text,
            encoding: submit.encoding,
            concat: submit.concat,
            status_report: submit.status_report,
            validity_minutes: submit.validity_minutes,
            pdu: hex,
            at: Utc::now(),
        };
        self.record(sms, now);
        Ok(mr)
    }

    fn submit_text(&mut self, to: &str, data: &[u8], overflow: bool, now: Instant) -> Result<u8, ErrorReply> {
        let text = String::from_utf8_lossy(data).into_owned();
        let (encoding, parts) = crate::sms::text::count_parts(&text);
        if overflow || parts > 1 {
            return Err(ErrorReply::Cms(305));
        }
        self.network_accepts(now)?;
        let mr = self.take_mr();
        let sms = SentSms {
            message_ref: mr,
            to: to.to_string(),
            text,
            encoding: match encoding {
                crate::sms::text::Encoding::Gsm7 => crate::sms::pdu::DataEncoding::Gsm7,
                crate::sms::text::Encoding::Ucs2 => crate::sms::pdu::DataEncoding::Ucs2,
            },
            concat: None,
            status_report: self.s.csmp[0] & 0x20 != 0,
            validity_minutes: (self.s.csmp[0] >> 3 & 0x03 == 2)
                .then(|| crate::sms::pdu::relative_validity_minutes(self.s.csmp[1])),
            pdu: String::new(),
            at: Utc::now(),
        };
        self.record(sms, now);
        Ok(mr)
    }

    fn record(&mut self, sms: SentSms, now: Instant) {
        if sms.status_report
            && let Some(after) = self.auto_reports
        {
            // Failures spread evenly: report n fails when it carries the running share over
            // the next whole number, so a fraction of 0.1 fails exactly one report in ten.
            let f = self.report_failure_fraction.clamp(0.0, 1.0);
            let n = self.reports_made as f64;
            let fails = ((n + 1.0) * f).floor() > (n * f).floor();
            self.reports_made += 1;
            // TP-ST 0x41: permanent error, incompatible destination.
            let status = if fails { 0x41 } else { 0x00 };
            self.scheduled.push((now + after, sms.message_ref, sms.to.clone(), status));
        }
        self.sent.push(sms);
    }
}

/// The current local time, at a whole quarter-hour offset as TP-SCTS can carry.
fn local_now() -> DateTime<FixedOffset> {
    let now = Local::now();
    let seconds = now.offset().local_minus_utc() / 900 * 900;
    let offset =
        FixedOffset::east_opt(seconds).unwrap_or_else(|| FixedOffset::east_opt(0).expect("0 is a valid offset"));
    now.with_timezone(&offset)
}
