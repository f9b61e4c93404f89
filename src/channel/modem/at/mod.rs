//! AT command engine: one task owns a modem's serial port, runs commands one at a time and routes unsolicited
//! result codes (URCs) to a channel of their own.
//!
//! [`AtPort`] is the handle (share it behind an `Arc`); commands from many tasks are queued and sent in the
//! order they were submitted. Everything the modem prints is split into lines by [`codec::AtCodec`] and each line
//! is, in this order:
//! 1. the PDU (or text) line owed to a preceding `+CMT:` / `+CDS:` header → one [`Urc`];
//! 2. the echo of the command just sent (first line equal to it; echo on or off both work) → dropped;
//! 3. a final result code (`OK`, `ERROR`, `+CME ERROR`, `+CMS ERROR`, `NO CARRIER`, `BUSY`, `NO ANSWER`,
//!    `NO DIALTONE`, Huawei's `COMMAND NOT SUPPORT`) → completes the pending command (dropped if none is pending:
//!    a late answer after a timeout);
//! 4. after an `AT+CMGS` payload: the modem's echo of that payload → dropped;
//! 5. a URC → the URC channel. `+CMTI`/`+CDSI`/`+CMT`/`+CDS` always; `+CREG`/`+CGREG`/`+CEREG` unless the pending
//!    command queries that very thing (`AT+CREG?`); other `+XXX:`/`^XXX:` lines are the command's answer when the
//!    pending command names `+XXX`/`^XXX`, a URC when they are a known unsolicited code (`^RSSI`, `+CPIN: READY`,
//!    `+CUSD`...), and the answer otherwise; `RING`, `RDY`, `SMS Ready`... are always URCs;
//! 6. otherwise an information line of the pending command (trimmed), or, with no command pending, a
//!    [`Urc::Vendor`] line.
//!
//! Lines made only of undecodable bytes and control characters (power-up noise) are dropped before all that.
//!
//! When the stream ends or fails (EOF / EIO: the USB modem was unplugged or reset), the port is marked gone, the
//! pending and queued commands fail with [`AtError::Gone`], and the URC channel closes. Reopen to recover.
//!
//! Notes for the driver on top:
//! - the URC channel holds 64: keep draining it (Huawei prints `^RSSI` every few seconds until `AT^CURC=0`). While
//!   it is full and no command runs, the engine stops reading the port, so a modem flooding `+CMT` is held back
//!   by the port instead of filling memory; while a command runs, the port is read (its answer must come through)
//!   and URCs wait in a backlog the engine drains first;
//! - after a `Timeout` the engine waits 300 ms and drops late final results before the next command, but a very
//!   late answer can still land on a later command: re-sync with `AT` after timeouts;
//! - the engine never calls `flush()` on the port: tokio-serial implements it with a blocking `tcdrain()`.

pub mod codec;
pub mod errors;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::codec::FramedRead;

use codec::{AtCodec, AtFrame};

/// URCs the driver may be behind by before the engine stops reading the
/// port (while no command runs): enough for a burst of `+CMT`s during one
/// commit, small enough to be no memory at all.
const URC_QUEUE: usize = 64;
/// After a timeout, wait this long (discarding late answers) before sending the next command.
const SETTLE_AFTER_TIMEOUT: Duration = Duration::from_millis(300);
const CTRL_Z: u8 = 0x1a;
const ESC: u8 = 0x1b;

/// One owner drives the port; URCs go to the receiver returned alongside.
///
/// Dropping the `AtPort` stops its task and closes the port (releasing the exclusive lock).
pub struct AtPort {
    requests: mpsc::UnboundedSender<Request>,
    liveness: Arc<Liveness>,
    task: tokio::task::JoinHandle<()>,
}

/// Unsolicited result codes, in the order the modem sent them. Closes when the port is gone.
pub struct UrcReceiver(pub mpsc::Receiver<Urc>);

impl UrcReceiver {
    /// The next URC; `None` once the port is gone (or the `AtPort` was dropped).
    pub async fn recv(&mut self) -> Option<Urc> {
        self.0.recv().await
    }
}

/// Information lines of a successful command: not the echo, not URCs, not the final `OK`; trimmed, never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub lines: Vec<String>,
}

impl Response {
    /// The value after "+CMD: " of the first line with that prefix, e.g. `resp.value("+CSQ")` → `Some("17,99")`.
    /// The space after the colon is optional (`+CNMI:(0-3),...`, Huawei `^RSSI:14`).
    pub fn value(&self, prefix: &str) -> Option<&str> {
        let prefix = prefix.trim_end_matches(':');
        self.lines.iter().find_map(|line| {
            let head = line.get(..prefix.len())?;
            if !head.eq_ignore_ascii_case(prefix) {
                return None;
            }
            line.get(prefix.len()..)?.strip_prefix(':').map(str::trim)
        })
    }
}

#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum AtError {
    #[error("{cmd}: no answer within {secs:.1} s")]
    Timeout { cmd: String, secs: f64 },
    #[error("{cmd}: ERROR")]
    Error { cmd: String },
    #[error("{cmd}: +CME ERROR {code} ({reason})")]
    Cme { cmd: String, code: u16, reason: &'static str },
    #[error("{cmd}: +CMS ERROR {code} ({reason})")]
    Cms { cmd: String, code: u16, reason: &'static str },
    #[error("the port is gone: {0}")]
    Gone(String),
    #[error("cannot open {path}: {reason}")]
    Open { path: String, reason: String },
    /// Another final result code: `NO CARRIER`, `BUSY`, `NO ANSWER`, `NO DIALTONE`, `COMMAND NOT SUPPORT` (Huawei),
    /// or `OK` where a prompt was expected.
    #[error("{cmd}: {result}")]
    Rejected { cmd: String, result: String },
    /// `command_with_prompt`: the payload and Ctrl-Z were sent but no final result came in time. The message may
    /// or may not have gone out: retrying blindly can send it twice.
    #[error("{cmd}: payload sent, no final result within {secs:.1} s")]
    Unconfirmed { cmd: String, secs: f64 },
    /// Refused before anything was written: the command or payload contains CR, LF, Ctrl-Z or ESC.
    #[error("{cmd:?}: not sent: {reason}")]
    Invalid { cmd: String, reason: &'static str },
}

impl AtError {
    /// Worth retrying later / on another modem? (from the CMS/CME table; Timeout and Gone are temporary)
    ///
    /// A plain `ERROR` is permanent (switch on `AT+CMEE=1` to get codes); `Unconfirmed` is not temporary because a
    /// retry may duplicate the message; a failed open is temporary (device not there yet, or held by another
    /// process such as ModemManager).
    pub fn temporary(&self) -> bool {
        match self {
            AtError::Timeout { .. } | AtError::Gone(_) | AtError::Open { .. } => true,
            AtError::Cme { code, .. } => errors::cme_temporary(*code),
            AtError::Cms { code, .. } => errors::cms_temporary(*code),
            AtError::Rejected { result, .. } => {
                matches!(result.as_str(), "NO CARRIER" | "BUSY" | "NO ANSWER" | "NO DIALTONE")
            }
            AtError::Error { .. } | AtError::Unconfirmed { .. } | AtError::Invalid { .. } => false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Urc {
    /// +CMTI: "SM",3
    NewMessage {
        storage: String,
        index: u32,
    },
    /// +CDSI: "SR",0
    StatusReportStored {
        storage: String,
        index: u32,
    },
    /// +CDS: <len> followed by a PDU line
    StatusReport {
        pdu: String,
    },
    /// +CMT: ,<len> followed by a PDU line
    Deliver {
        pdu: String,
    },
    /// +CREG: / +CGREG: / +CEREG: (unsolicited form): stat (and lac/ci when present)
    Registration {
        stat: u8,
    },
    Ring,
    /// SIM800 "SMS Ready", "Call Ready", "RDY", "+CPIN: READY" at boot and similar
    Ready(String),
    /// Huawei ^RSSI:, ^MODE:, ^BOOT:, ^SRVST:, ^DSFLOWRPT... and other vendor lines starting with ^ or +
    ///
    /// Also: any other line that arrives while no command is pending; a text-mode `+CDS: <fo>,<mr>,...`; a
    /// text-mode `+CMT: <oa>,...` header and its body line joined by `\n`; a `+CMTI`/`+CDSI`/`+CREG` line that
    /// does not parse.
    Vendor(String),
}

impl AtPort {
    /// Open a serial device (e.g. /dev/ttyUSB2 or a pty path) at `baud`, 8N1, no flow control, exclusive.
    pub async fn open(path: &str, baud: u32) -> Result<(AtPort, UrcReceiver), AtError> {
        use tokio_serial::{ClearBuffer, DataBits, FlowControl, Parity, SerialPort, SerialPortBuilderExt, StopBits};
        let open_err = |e: tokio_serial::Error| AtError::Open { path: path.to_string(), reason: e.to_string() };
        let port = tokio_serial::new(path, baud)
            .data_bits(DataBits::Eight)
            .parity(Parity::None)
            .stop_bits(StopBits::One)
            .flow_control(FlowControl::None)
            .exclusive(true)
            .open_native_async()
            .map_err(open_err)?;
        // Power-up noise and answers meant for a previous owner are of no use.
        if let Err(e) = port.clear(ClearBuffer::Input) {
            tracing::debug!(path, error = %e, "could not clear the input buffer");
        }
        tracing::info!(path, baud, "serial port open");
        Ok(Self::from_stream(port))
    }

    /// Drive any byte stream (tests, or an already-open port). Must be called inside a tokio runtime.
    pub fn from_stream<S: AsyncRead + AsyncWrite + Send + Unpin + 'static>(stream: S) -> (AtPort, UrcReceiver) {
        let (requests, request_rx) = mpsc::unbounded_channel();
        let (urc_tx, urc_rx) = mpsc::channel(URC_QUEUE);
        let liveness = Arc::new(Liveness { gone: AtomicBool::new(false), reason: Mutex::new(String::new()) });
        let task = tokio::spawn(run(stream, request_rx, urc_tx, liveness.clone()));
        (AtPort { requests, liveness, task }, UrcReceiver(urc_rx))
    }

    /// Send `cmd` (no line ending; the engine adds "\r"), wait for the final result code within `timeout`.
    /// Ok(Response) on OK; information lines (not echo, not URCs) in `lines`.
    ///
    /// `timeout` runs from the moment the command is written, not while it waits in the queue. A command that the
    /// modem answers without a final result (Wavecom `AT+CPIN?`) ends in `Timeout`: handle that in the caller.
    pub async fn command(&self, cmd: &str, timeout: Duration) -> Result<Response, AtError> {
        self.submit(cmd, None, timeout).await
    }

    /// AT+CMGS-style: send `cmd`, wait for the prompt ('>' with or without the following space, no line ending),
    /// then send `payload` followed by Ctrl-Z (0x1A), then wait for the final result within `timeout`.
    /// If the modem answers ERROR/+CMS ERROR instead of a prompt, return that error (do not send the payload).
    /// If no prompt comes in time, send ESC (0x1B) to cancel and return Timeout.
    ///
    /// `timeout` applies twice: to the prompt, then afresh to the final result after the payload. No final result
    /// after the payload gives [`AtError::Unconfirmed`] (the message may have been sent).
    pub async fn command_with_prompt(&self, cmd: &str, payload: &str, timeout: Duration) -> Result<Response, AtError> {
        if payload.contains([CTRL_Z as char, ESC as char]) {
            return Err(AtError::Invalid { cmd: redact(cmd).into_owned(), reason: "payload contains Ctrl-Z or ESC" });
        }
        self.submit(cmd, Some(payload.to_string()), timeout).await
    }

    /// Send a lone ESC: it ends a half-typed `AT+CMGS` payload that a hang, a crash or lost bytes
    /// left the modem in, and modems ignore it in command mode. The next command waits a moment, so
    /// that an `OK` for the cancelled payload is not taken for its answer.
    pub async fn escape(&self) -> Result<(), AtError> {
        self.submit("", None, Duration::ZERO).await.map(|_| ())
    }

    /// True once the port is gone (EOF/EIO); every later call returns AtError::Gone.
    pub fn is_gone(&self) -> bool {
        self.liveness.gone.load(Ordering::Acquire)
    }

    async fn submit(&self, cmd: &str, payload: Option<String>, timeout: Duration) -> Result<Response, AtError> {
        if cmd.contains(['\r', '\n', CTRL_Z as char, ESC as char]) {
            return Err(AtError::Invalid {
                cmd: redact(cmd).into_owned(),
                reason: "command contains CR, LF, Ctrl-Z or ESC",
            });
        }
        if self.is_gone() {
            return Err(AtError::Gone(self.liveness.reason()));
        }
        let (reply, answer) = oneshot::channel();
        let request = Request { cmd: cmd.to_string(), shown: redact(cmd).into_owned(), payload, timeout, reply };
        if self.requests.send(request).is_err() {
            return Err(AtError::Gone(self.liveness.reason()));
        }
        answer.await.unwrap_or_else(|_| Err(AtError::Gone(self.liveness.reason())))
    }
}

impl Drop for AtPort {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Whether the port's task has ended (the port is gone) and why: set by the
/// task, read by the handle to fail commands at once.
struct Liveness {
    gone: AtomicBool,
    reason: Mutex<String>,
}

impl Liveness {
    fn reason(&self) -> String {
        let reason = match self.reason.lock() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        if reason.is_empty() { "engine stopped".to_string() } else { reason }
    }

    fn mark_gone(&self, reason: &str) {
        match self.reason.lock() {
            Ok(mut guard) => *guard = reason.to_string(),
            Err(poisoned) => *poisoned.into_inner() = reason.to_string(),
        }
        self.gone.store(true, Ordering::Release);
    }
}

struct Request {
    cmd: String,
    /// `cmd` as errors and logs show it: secrets masked (see `redact`).
    shown: String,
    payload: Option<String>,
    timeout: Duration,
    reply: oneshot::Sender<Result<Response, AtError>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for the final result of a plain command.
    Final,
    /// Waiting for the `>` prompt.
    Prompt,
    /// Payload sent, waiting for the final result.
    AfterPayload,
}

struct Active {
    request: Request,
    phase: Phase,
    lines: Vec<String>,
    echo_seen: bool,
    /// A prompt arrived during a plain command: the modem is in edit mode and needs ESC on timeout.
    prompt_seen: bool,
    deadline: Instant,
}

/// A `+CMT:` / `+CDS:` header was seen; the next line belongs to it.
enum Owed {
    Deliver,
    StatusReport,
    /// Text-mode `+CMT: <oa>,...` header: the next line is the message text.
    TextDeliver(String),
}

struct Engine {
    active: Option<Active>,
    owed: Option<Owed>,
    urcs: mpsc::Sender<Urc>,
    /// URCs read while the channel was full. The port is not read while
    /// these wait and no command is running, so they grow only during a
    /// command (whose answer must still be read).
    backlog: VecDeque<Urc>,
    settle_until: Option<Instant>,
}

async fn run<S: AsyncRead + AsyncWrite + Send + Unpin + 'static>(
    stream: S,
    mut requests: mpsc::UnboundedReceiver<Request>,
    urcs: mpsc::Sender<Urc>,
    liveness: Arc<Liveness>,
) {
    let (reader, mut writer) = tokio::io::split(stream);
    let mut frames = FramedRead::new(reader, AtCodec::new());
    let urc_out = urcs.clone();
    let mut engine = Engine { active: None, owed: None, urcs, backlog: VecDeque::new(), settle_until: None };
    let gone_reason = loop {
        let deadline = engine.active.as_ref().map(|a| a.deadline);
        let settle = if engine.active.is_none() { engine.settle_until } else { None };
        let idle = engine.active.is_none() && settle.is_none();
        // The driver is behind on URCs: leave the rest in the port (a USB
        // modem then holds them) unless a command waits for its answer.
        let read = engine.backlog.is_empty() || engine.active.is_some();
        let out: Option<(Vec<u8>, Duration)> = tokio::select! {
            permit = urc_out.reserve(), if !engine.backlog.is_empty() => {
                if let (Ok(permit), Some(urc)) = (permit, engine.backlog.pop_front()) {
                    permit.send(urc);
                }
                None
            }
            frame = frames.next(), if read => match frame {
                None => break "end of stream (device closed)".to_string(),
                Some(Err(e)) => break format!("read failed: {e}"),
                Some(Ok(AtFrame::Prompt)) => engine.on_prompt(),
                Some(Ok(AtFrame::Line(line))) => {
                    engine.on_line(&line);
                    None
                }
            },
            () = sleep_until_opt(deadline), if deadline.is_some() => engine.on_timeout(),
            () = sleep_until_opt(settle), if settle.is_some() => {
                engine.settle_until = None;
                None
            }
            request = requests.recv(), if idle => match request {
                None => {
                    tracing::debug!("AtPort dropped: engine stops");
                    return;
                }
                Some(request) => engine.start(request),
            },
        };
        if let Some((bytes, limit)) = out {
            match tokio::time::timeout(limit, writer.write_all(&bytes)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => break format!("write failed: {e}"),
                Err(_) => engine.on_write_stalled(limit),
            }
        }
    };
    tracing::warn!(reason = %gone_reason, "AT port gone");
    liveness.mark_gone(&gone_reason);
    if let Some(active) = engine.active.take() {
        let _ = active.request.reply.send(Err(AtError::Gone(gone_reason.clone())));
    }
    requests.close();
    while let Ok(request) = requests.try_recv() {
        let _ = request.reply.send(Err(AtError::Gone(gone_reason.clone())));
    }
    // What was read before the end still goes to the driver, if it listens.
    while let Some(urc) = engine.backlog.pop_front() {
        if engine.urcs.send(urc).await.is_err() {
            break;
        }
    }
    // `engine.urcs` is dropped here: the URC channel closes.
}

/// `now + d`, saturating (a caller may pass `Duration::MAX` for "no limit").
fn deadline_after(d: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(d).unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600))
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

impl Engine {
    /// Begin `request`; returns the bytes to write.
    fn start(&mut self, request: Request) -> Option<(Vec<u8>, Duration)> {
        if request.reply.is_closed() {
            tracing::debug!(cmd = %request.shown, "caller gave up before the command was sent: skipped");
            return None;
        }
        if request.cmd.is_empty() {
            // `escape()`: ESC alone, no answer awaited.
            let _ = request.reply.send(Ok(Response { lines: Vec::new() }));
            self.settle_until = Some(Instant::now() + SETTLE_AFTER_TIMEOUT);
            return Some((vec![ESC], Duration::from_secs(1)));
        }
        tracing::debug!(cmd = %request.shown, "AT >");
        let mut bytes = request.cmd.as_bytes().to_vec();
        bytes.push(b'\r');
        let phase = if request.payload.is_some() { Phase::Prompt } else { Phase::Final };
        let limit = request.timeout;
        let deadline = deadline_after(request.timeout);
        self.active =
            Some(Active { request, phase, lines: Vec::new(), echo_seen: false, prompt_seen: false, deadline });
        Some((bytes, limit))
    }

    fn finish(&mut self, result: Result<Response, AtError>) {
        if let Some(active) = self.active.take() {
            match &result {
                Ok(_) => tracing::debug!(cmd = %active.request.shown, "AT < OK"),
                Err(e) => tracing::debug!(error = %e, "AT < error"),
            }
            // The caller may have stopped waiting: nothing to do then.
            let _ = active.request.reply.send(result);
        }
    }

    fn emit(&mut self, urc: Urc) {
        tracing::debug!(?urc, "URC");
        if !self.backlog.is_empty() {
            self.backlog.push_back(urc);
            return;
        }
        if let Err(mpsc::error::TrySendError::Full(urc)) = self.urcs.try_send(urc) {
            self.backlog.push_back(urc);
        }
    }

    fn on_prompt(&mut self) -> Option<(Vec<u8>, Duration)> {
        let Some(active) = self.active.as_mut() else {
            tracing::debug!("prompt with no command pending: ignored");
            return None;
        };
        match (&active.phase, &active.request.payload) {
            (Phase::Prompt, Some(payload)) => {
                let mut bytes = payload.as_bytes().to_vec();
                bytes.push(CTRL_Z);
                active.phase = Phase::AfterPayload;
                active.deadline = deadline_after(active.request.timeout);
                Some((bytes, active.request.timeout))
            }
            (Phase::Final, _) => {
                tracing::warn!(cmd = %active.request.shown, "prompt during a plain command");
                active.prompt_seen = true;
                None
            }
            _ => None, // Telit re-prompts after every CR of a text-mode payload
        }
    }

    fn on_timeout(&mut self) -> Option<(Vec<u8>, Duration)> {
        let active = self.active.as_ref()?;
        let cmd = active.request.shown.clone();
        let secs = active.request.timeout.as_secs_f64();
        // After the payload too: if the modem lost some of it, it still waits for the rest.
        let needs_escape = active.phase != Phase::Final || active.prompt_seen;
        let error = if active.phase == Phase::AfterPayload {
            AtError::Unconfirmed { cmd, secs }
        } else {
            AtError::Timeout { cmd, secs }
        };
        tracing::warn!(error = %error, "AT timeout");
        self.finish(Err(error));
        self.settle_until = Some(Instant::now() + SETTLE_AFTER_TIMEOUT);
        // ESC leaves the edit mode without sending anything.
        needs_escape.then(|| (vec![ESC], Duration::from_secs(1)))
    }

    fn on_write_stalled(&mut self, limit: Duration) {
        tracing::warn!("write to the modem stalled");
        if let Some(active) = self.active.as_ref() {
            let error = AtError::Timeout { cmd: active.request.shown.clone(), secs: limit.as_secs_f64() };
            self.finish(Err(error));
            self.settle_until = Some(Instant::now() + SETTLE_AFTER_TIMEOUT);
        }
    }

    fn on_line(&mut self, raw: &str) {
        let line = raw.trim();
        // The modem may echo a command, PIN and all.
        tracing::trace!(line = %redact(line), "AT <");
        if is_noise(line) {
            tracing::debug!(line, "line of undecodable bytes (line noise): dropped");
            return;
        }

        // 1. the line owed to a +CMT / +CDS header
        if let Some(owed) = self.owed.take() {
            match owed {
                Owed::TextDeliver(header) => return self.emit(Urc::Vendor(format!("{header}\n{line}"))),
                Owed::Deliver | Owed::StatusReport if parse_final(line).is_none() && !line.starts_with(['+', '^']) => {
                    let pdu = line.to_string();
                    return self.emit(match owed {
                        Owed::Deliver => Urc::Deliver { pdu },
                        _ => Urc::StatusReport { pdu },
                    });
                }
                _ => tracing::warn!(line, "PDU line missing after +CMT/+CDS header: header dropped"),
            }
        }

        // 2. echo of the command
        if let Some(active) = self.active.as_mut()
            && !active.echo_seen
            && line.eq_ignore_ascii_case(active.request.cmd.trim())
        {
            active.echo_seen = true;
            return;
        }

        // 3. final result code
        if let Some(result) = parse_final(line) {
            let Some(active) = self.active.as_ref() else {
                tracing::debug!(line, "final result with no command pending (late answer): dropped");
                return;
            };
            let cmd = active.request.shown.clone();
            let outcome = match result {
                Final::Ok if active.phase == Phase::Prompt => {
                    Err(AtError::Rejected { cmd, result: "OK without a prompt".to_string() })
                }
                Final::Ok => Ok(Response { lines: active.lines.clone() }),
                Final::Error => Err(AtError::Error { cmd }),
                Final::Cme(code) => Err(AtError::Cme { cmd, code, reason: errors::cme_reason(code) }),
                Final::Cms(code) => Err(AtError::Cms { cmd, code, reason: errors::cms_reason(code) }),
                Final::Other(result) => Err(AtError::Rejected { cmd, result: result.to_string() }),
            };
            return self.finish(outcome);
        }

        // 4. the modem's echo of the payload (echo on), possibly behind a re-prompt
        if let Some(active) = self.active.as_ref()
            && active.phase == Phase::AfterPayload
            && is_payload_echo(line, active.request.payload.as_deref().unwrap_or(""))
        {
            return;
        }

        // 5. URCs
        let pending = self.active.as_ref().map(|a| a.request.cmd.as_str());
        match classify(line, pending) {
            Class::Urc(urc) => self.emit(urc),
            Class::Owes(owed) => self.owed = Some(owed),
            // 6. the answer
            Class::Answer => match self.active.as_mut() {
                Some(active) => active.lines.push(line.to_string()),
                None => self.emit(Urc::Vendor(line.to_string())),
            },
        }
    }
}

/// Nothing but replacement characters and control bytes: power-up noise, never an answer.
fn is_noise(line: &str) -> bool {
    line.chars().all(|c| c == char::REPLACEMENT_CHARACTER || c.is_control() || c.is_whitespace())
}

fn is_payload_echo(line: &str, payload: &str) -> bool {
    if line.starts_with('>') || line.contains(CTRL_Z as char) {
        return true;
    }
    !line.starts_with(['+', '^']) && payload.contains(line)
}

#[derive(Debug, PartialEq)]
enum Final {
    Ok,
    Error,
    Cme(u16),
    Cms(u16),
    Other(&'static str),
}

const OTHER_FINALS: &[&str] = &["NO CARRIER", "BUSY", "NO ANSWER", "NO DIALTONE", "COMMAND NOT SUPPORT"];

/// Recognise a final result code. Tolerates "CME Error: unknown" (Quectel M26), "+CMS ERROR:" without a code
/// (SIM7000G) and textual codes (AT+CMEE=2).
fn parse_final(line: &str) -> Option<Final> {
    match line {
        "OK" => return Some(Final::Ok),
        "ERROR" => return Some(Final::Error),
        _ => {}
    }
    if let Some(other) = OTHER_FINALS.iter().find(|f| **f == line) {
        return Some(Final::Other(other));
    }
    let body = line.strip_prefix('+').unwrap_or(line);
    let kind = body.get(..9)?;
    let is_cme = kind.eq_ignore_ascii_case("CME ERROR");
    if !is_cme && !kind.eq_ignore_ascii_case("CMS ERROR") {
        return None;
    }
    let rest = body.get(9..)?;
    let rest = rest.trim_start().strip_prefix(':').unwrap_or(rest).trim();
    let code = match rest.parse::<u16>() {
        Ok(code) => code,
        Err(_) => {
            let mapped = if is_cme { errors::cme_code_for_text(rest) } else { errors::cms_code_for_text(rest) };
            // 100 / 500 are the "unknown" codes of TS 27.007 / 27.005.
            let code = mapped.unwrap_or(if is_cme { 100 } else { 500 });
            if mapped.is_none() {
                tracing::warn!(line, code, "error text not recognised: reported as unknown");
            }
            code
        }
    };
    Some(if is_cme { Final::Cme(code) } else { Final::Cms(code) })
}

enum Class {
    Urc(Urc),
    Owes(Owed),
    Answer,
}

/// Unsolicited `+XXX` codes: a URC unless the pending command names them.
const KNOWN_PLUS_URCS: &[&str] = &[
    "+CPIN",
    "+CFUN",
    "+CUSD",
    "+CLIP",
    "+CCWA",
    "+CIEV",
    "+CBM",
    "+CGEV",
    "+CTZV",
    "+CTZE",
    "+CTZU",
    "+CSSI",
    "+CSSU",
    "+CUSATP",
    "+CUSATEND",
    "+STIN",
    "+QIND",
    "+QUSIM",
    "+CPSI",
    "+PSUTTZ",
    "+CMGRMI",
    "+CLCC",
];

/// Vendor `^XXX` codes seen unsolicited (Huawei and clones).
const KNOWN_CARET_URCS: &[&str] = &[
    "^RSSI",
    "^HRSSILVL",
    "^HCSQ",
    "^CRSSI",
    "^MODE",
    "^SRVST",
    "^SIMST",
    "^BOOT",
    "^DSFLOWRPT",
    "^SYSSTART",
    "^CEND",
    "^ORIG",
    "^CONF",
    "^CONN",
    "^STIN",
    "^NDISSTAT",
    "^RFSWITCH",
    "^EONS",
    "^NWTIME",
    "^ACTIVEBAND",
    "^SMMEMFULL",
    "^POSITION",
    "^TIME",
    "^CARDMODE",
    "^SYSINFOEX",
];

const REGISTRATION: &[&str] = &["+CREG", "+CGREG", "+CEREG", "+C5GREG"];

/// Boot / readiness lines without a prefix.
const READY_LINES: &[&str] = &["RDY", "SMS READY", "CALL READY", "SMS DONE", "PB DONE", "PB READY", "+PBREADY"];

/// How one line is read on its own while `pending` is the command in flight: whether it is a
/// final result code, and the URC it is, if any. The engine also tracks echoes and the PDU line a
/// `+CMT:`/`+CDS:` header owes; this is the part that reads the line's text, for fuzzing and tests.
#[doc(hidden)]
pub fn read_line(line: &str, pending: Option<&str>) -> (bool, Option<Urc>) {
    let urc = match classify(line, pending) {
        Class::Urc(urc) => Some(urc),
        Class::Owes(_) | Class::Answer => None,
    };
    (parse_final(line).is_some(), urc)
}

fn classify(line: &str, pending: Option<&str>) -> Class {
    let upper = line.to_ascii_uppercase();
    if upper == "RING" {
        return Class::Urc(Urc::Ring);
    }
    if READY_LINES.contains(&upper.as_str()) {
        return Class::Urc(Urc::Ready(line.to_string()));
    }
    if !line.starts_with(['+', '^']) {
        return Class::Answer;
    }
    let (prefix, rest) = match upper.split_once(':') {
        Some((prefix, _)) => (prefix.trim_end(), line.get(prefix.len() + 1..).unwrap_or("").trim()),
        None => (upper.as_str(), ""),
    };
    let pending_upper = pending.map(str::to_ascii_uppercase);
    let names = |p: &str| pending_upper.as_deref().is_some_and(|cmd| cmd.contains(p));
    let vendor = || Class::Urc(Urc::Vendor(line.to_string()));
    match prefix {
        "+CMTI" | "+CDSI" => match parse_storage_index(rest) {
            Some((storage, index)) if prefix == "+CMTI" => Class::Urc(Urc::NewMessage { storage, index }),
            Some((storage, index)) => Class::Urc(Urc::StatusReportStored { storage, index }),
            None => vendor(),
        },
        "+CMT" => {
            let fields = split_fields(rest);
            let pdu_form = fields.len() <= 2 && fields.last().is_some_and(|f| f.trim().parse::<u32>().is_ok());
            Class::Owes(if pdu_form { Owed::Deliver } else { Owed::TextDeliver(line.to_string()) })
        }
        "+CDS" if rest.parse::<u32>().is_ok() => Class::Owes(Owed::StatusReport),
        "+CDS" => vendor(),
        p if REGISTRATION.contains(&p) => {
            // `AT+CREG?` / `AT+CREG=?` are answered with the same prefix; `AT+CREG=2` is not.
            if names(&format!("{p}?")) || names(&format!("{p}=?")) {
                return Class::Answer;
            }
            let stat = split_fields(rest).first().and_then(|f| f.trim().trim_matches('"').parse::<u8>().ok());
            match stat {
                Some(stat) => Class::Urc(Urc::Registration { stat }),
                None => vendor(),
            }
        }
        p if names(p) => Class::Answer,
        "+CPIN" if rest.eq_ignore_ascii_case("READY") => Class::Urc(Urc::Ready(line.to_string())),
        "+CRING" => Class::Urc(Urc::Ring),
        p if KNOWN_PLUS_URCS.contains(&p) || KNOWN_CARET_URCS.contains(&p) => vendor(),
        _ if pending.is_none() => vendor(),
        _ => Class::Answer,
    }
}

/// `"SM",3` → ("SM", 3)
fn parse_storage_index(rest: &str) -> Option<(String, u32)> {
    let (storage, index) = rest.rsplit_once(',')?;
    let storage = storage.trim().trim_matches('"').to_string();
    let index = index.trim().parse().ok()?;
    Some((storage, index))
}

/// Split on commas outside double quotes.
fn split_fields(rest: &str) -> Vec<&str> {
    let mut fields = Vec::new();
    let mut quoted = false;
    let mut start = 0;
    for (i, c) in rest.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => {
                fields.push(rest.get(start..i).unwrap_or(""));
                start = i + 1;
            }
            _ => {}
        }
    }
    fields.push(rest.get(start..).unwrap_or(""));
    fields
}

/// Commands that carry a SIM secret (PIN, PUK, facility or new password)
/// after their `=`.
const SECRET_COMMANDS: [&str; 4] = ["+CPIN=", "+CPIN2=", "+CLCK=", "+CPWD="];

/// `text` (a command, or a line that may be its echo) with the arguments
/// of a secret-carrying command replaced by `***`, for errors and logs.
pub fn redact(text: &str) -> std::borrow::Cow<'_, str> {
    let upper = text.to_ascii_uppercase();
    match SECRET_COMMANDS.iter().filter_map(|c| upper.find(c).map(|at| at + c.len())).min() {
        Some(args) => format!("{}***", &text[..args]).into(),
        None => text.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_masked_in_what_is_shown() {
        assert_eq!(redact("AT+CPIN=\"9999\""), "AT+CPIN=***");
        assert_eq!(redact("at+cpin=\"12345678\",\"1234\""), "at+cpin=***");
        assert_eq!(redact("AT+CLCK=\"SC\",0,\"1234\""), "AT+CLCK=***");
        assert_eq!(redact("AT+CPWD=\"SC\",\"1234\",\"4321\""), "AT+CPWD=***");
        assert_eq!(redact("AT+CPIN?"), "AT+CPIN?");
        assert_eq!(redact("AT+CMGS=23"), "AT+CMGS=23");
    }

    #[test]
    fn final_codes() {
        assert_eq!(parse_final("OK"), Some(Final::Ok));
        assert_eq!(parse_final("ERROR"), Some(Final::Error));
        assert_eq!(parse_final("+CME ERROR: 10"), Some(Final::Cme(10)));
        assert_eq!(parse_final("+CME ERROR: SIM not inserted"), Some(Final::Cme(10)));
        assert_eq!(parse_final("CME Error: unknown"), Some(Final::Cme(100)));
        assert_eq!(parse_final("+CME ERROR: something odd"), Some(Final::Cme(100)));
        assert_eq!(parse_final("+CMS ERROR: 330"), Some(Final::Cms(330)));
        assert_eq!(parse_final("+CMS ERROR:"), Some(Final::Cms(500)));
        assert_eq!(parse_final("+CMS ERROR: unknown error"), Some(Final::Cms(500)));
        assert_eq!(parse_final("+CMS ERROR: 99999"), Some(Final::Cms(500)));
        assert_eq!(parse_final("NO CARRIER"), Some(Final::Other("NO CARRIER")));
        assert_eq!(parse_final("COMMAND NOT SUPPORT"), Some(Final::Other("COMMAND NOT SUPPORT")));
        assert_eq!(parse_final("+CMS"), None);
        assert_eq!(parse_final("+CMGS: 5"), None);
        assert_eq!(parse_final("OKAY"), None);
        assert_eq!(parse_final("+CME ERRO\u{e9}"), None);
    }

    #[test]
    fn classification() {
        let urc = |line: &str, pending: Option<&str>| match classify(line, pending) {
            Class::Urc(u) => Some(u),
            _ => None,
        };
        assert_eq!(urc("+CMTI: \"SM\",3", Some("AT+CPMS?")), Some(Urc::NewMessage { storage: "SM".into(), index: 3 }));
        assert_eq!(urc("+CDSI: \"SR\",0", None), Some(Urc::StatusReportStored { storage: "SR".into(), index: 0 }));
        assert_eq!(urc("+CMTI: garbage", None), Some(Urc::Vendor("+CMTI: garbage".into())));
        assert_eq!(urc("+CREG: 1, E006B, ABE0016", Some("AT+CSQ")), Some(Urc::Registration { stat: 1 }));
        assert!(matches!(classify("+CREG: 0,1", Some("AT+CREG?")), Class::Answer));
        assert!(matches!(classify("+CREG: (0-2)", Some("AT+CREG=?")), Class::Answer));
        assert_eq!(urc("+CREG: 1", Some("AT+CREG=2")), Some(Urc::Registration { stat: 1 }));
        assert_eq!(urc("+CGREG: 5", None), Some(Urc::Registration { stat: 5 }));
        assert_eq!(urc("+CREG: \"0B,\"01", None), Some(Urc::Vendor("+CREG: \"0B,\"01".into())));
        assert_eq!(urc("^RSSI:14", Some("AT+CPMS?")), Some(Urc::Vendor("^RSSI:14".into())));
        assert!(matches!(classify("^RSSI:14", Some("AT^RSSI?")), Class::Answer));
        assert!(matches!(classify("^SYSINFO:2,3,0,5,1", Some("AT^SYSINFO")), Class::Answer));
        assert!(matches!(classify("+CPIN: READY", Some("AT+CPIN?")), Class::Answer));
        assert_eq!(urc("+CPIN: READY", None), Some(Urc::Ready("+CPIN: READY".into())));
        assert_eq!(urc("+CPIN: READY", Some("AT+CFUN=1")), Some(Urc::Ready("+CPIN: READY".into())));
        assert_eq!(urc("SMS Ready", Some("AT")), Some(Urc::Ready("SMS Ready".into())));
        assert_eq!(urc("RING", Some("AT")), Some(Urc::Ring));
        assert!(matches!(classify("+CSQ: 17,99", Some("AT+CSQ")), Class::Answer));
        assert!(matches!(classify("+CCID: 8944", Some("AT+ICCID")), Class::Answer));
        assert_eq!(urc("+CSQ: 17,99", None), Some(Urc::Vendor("+CSQ: 17,99".into())));
        assert!(matches!(classify("+CMT: ,24", Some("AT")), Class::Owes(Owed::Deliver)));
        assert!(matches!(classify("+CMT: \"a,b\",24", None), Class::Owes(Owed::Deliver)));
        assert!(matches!(
            classify("+CMT: \"+8615021012496\",,\"13/03/18,17:07:21+32\",145,4", None),
            Class::Owes(Owed::TextDeliver(_))
        ));
        assert!(matches!(classify("+CDS: 25", None), Class::Owes(Owed::StatusReport)));
        assert_eq!(urc("+CDS: 6,12,\"+1\",145", None), Some(Urc::Vendor("+CDS: 6,12,\"+1\",145".into())));
        assert!(matches!(classify("1234567", Some("AT+CGSN")), Class::Answer));
    }

    #[test]
    fn response_value() {
        let r = Response { lines: vec!["+CSQ: 17,99".into(), "^RSSI:14".into(), "+CNMI:(0-3),(0-3)".into()] };
        assert_eq!(r.value("+CSQ"), Some("17,99"));
        assert_eq!(r.value("+CSQ:"), Some("17,99"));
        assert_eq!(r.value("^RSSI"), Some("14"));
        assert_eq!(r.value("+CNMI"), Some("(0-3),(0-3)"));
        assert_eq!(r.value("+CS"), None);
        assert_eq!(r.value("+CREG"), None);
        let r = Response { lines: vec!["é".into()] };
        assert_eq!(r.value("+"), None);
    }

    #[test]
    fn temporariness() {
        let cms = |code| AtError::Cms { cmd: "AT+CMGS=1".into(), code, reason: errors::cms_reason(code) };
        assert!(cms(38).temporary());
        assert!(!cms(1).temporary());
        assert!(AtError::Timeout { cmd: "AT".into(), secs: 1.0 }.temporary());
        assert!(AtError::Gone("x".into()).temporary());
        assert!(!AtError::Error { cmd: "AT".into() }.temporary());
        assert!(!AtError::Unconfirmed { cmd: "AT".into(), secs: 1.0 }.temporary());
        assert!(AtError::Rejected { cmd: "ATD1".into(), result: "BUSY".into() }.temporary());
        assert!(!AtError::Rejected { cmd: "AT+X".into(), result: "COMMAND NOT SUPPORT".into() }.temporary());
        assert_eq!(cms(330).to_string(), "AT+CMGS=1: +CMS ERROR 330 (SMSC address unknown)");
        assert_eq!(AtError::Timeout { cmd: "AT".into(), secs: 2.0 }.to_string(), "AT: no answer within 2.0 s");
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        /// Lines that look like what modems print: prefixes, quotes, commas and digits in any order.
        fn modem_line() -> impl Strategy<Value = String> {
            let words = prop::sample::select(vec![
                "+CMTI:",
                "+CDSI:",
                "+CMT:",
                "+CDS:",
                "+CREG:",
                "+CEREG:",
                "+CPIN:",
                "^RSSI:",
                "+CME ERROR",
                "+CMS ERROR:",
                "CME Error:",
                "OK",
                "ERROR",
                "RING",
                "\"",
                ",",
                " ",
                "SM",
                "READY",
                "1",
                "99999999999",
                "-",
                "é",
                ":",
            ]);
            prop::collection::vec(words, 0..8).prop_map(|w| w.concat())
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

            #[test]
            fn reading_any_line_never_panics(line in prop_oneof![modem_line(), "\\PC{0,40}"], pending in prop::option::of(prop_oneof![modem_line(), "AT\\PC{0,10}"])) {
                let (_, urc) = read_line(&line, pending.as_deref());
                // A URC names nothing that was not in the line.
                if let Some(Urc::NewMessage { storage, .. } | Urc::StatusReportStored { storage, .. }) = urc {
                    prop_assert!(line.contains(&storage));
                }
            }
        }
    }
}
