//! The control side of `smsgw simulate modem`: a bank of virtual modems and the actions that play
//! the network and the hardware around them (a message arrives, a report comes back, the modem
//! hangs, the stick is pulled out), taken from an HTTP port or typed on standard input. Both read
//! the same [`Action`], so a test script and a sysadmin at a terminal drive the modems alike.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::{ModemConfig, VirtualModem};

/// What the network or the hardware does to one modem.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "do", rename_all = "snake_case", deny_unknown_fields)]
pub enum Action {
    /// A message from `from` arrives (long text arrives in concatenated parts).
    Deliver { from: String, text: String },
    /// A TPDU in hex arrives as it is (crafted or malformed SMS from the network).
    DeliverPdu { tpdu: String },
    /// A status report for the message with TP-MR `message_ref` to `to`; TP-ST `status` (0
    /// delivered, 0x40.. failed).
    Report { message_ref: u8, to: String, status: u8 },
    /// The next `count` sends are refused with +CMS ERROR: `code`.
    FailSends { count: usize, code: u16 },
    /// Stop answering anything.
    Hang,
    /// Answer again after [`Action::Hang`].
    Resume,
    /// Print line noise.
    Garbage,
    /// Pull the USB stick: the port and its link vanish.
    Unplug,
    /// Plug it back in under the same link.
    Replug,
    /// Lose or regain radio coverage.
    Coverage { on: bool },
    /// Signal strength, AT+CSQ rssi 0-31 (99 unknown).
    Signal { csq: u8 },
}

impl Action {
    /// Parse a typed line `VERB [ARGS]`: `deliver FROM TEXT...`, `deliver-pdu HEX`, `report MR TO STATUS`,
    /// `fail COUNT CODE`, `hang`, `resume`, `garbage`, `unplug`, `replug`, `coverage on|off`,
    /// `signal CSQ`.
    pub fn parse(line: &str) -> Result<Action, String> {
        let line = line.trim();
        let (verb, rest) = line.split_once(' ').unwrap_or((line, ""));
        let args: Vec<&str> = rest.split_whitespace().collect();
        let number = |s: Option<&&str>, what: &str| -> Result<u64, String> {
            let s = s.ok_or_else(|| format!("{verb}: {what} missing"))?;
            s.parse().map_err(|_| format!("{verb}: {what} {s:?} is not a number"))
        };
        let small = |v: u64, max: u64, what: &str| -> Result<u64, String> {
            if v > max { Err(format!("{verb}: {what} {v} is over {max}")) } else { Ok(v) }
        };
        Ok(match verb {
            "deliver" => {
                let (from, text) = rest.trim_start().split_once(' ').ok_or("deliver: expected FROM TEXT")?;
                Action::Deliver { from: from.into(), text: text.into() }
            }
            "deliver-pdu" => {
                Action::DeliverPdu { tpdu: args.first().ok_or("deliver-pdu: TPDU hex missing")?.to_string() }
            }
            "report" => Action::Report {
                message_ref: small(number(args.first(), "message reference")?, 255, "message reference")? as u8,
                to: args.get(1).ok_or("report: recipient missing")?.to_string(),
                status: small(number(args.get(2), "status")?, 255, "status")? as u8,
            },
            "fail" => Action::FailSends {
                count: number(args.first(), "count")? as usize,
                code: small(number(args.get(1), "code")?, 65535, "code")? as u16,
            },
            "hang" => Action::Hang,
            "resume" => Action::Resume,
            "garbage" => Action::Garbage,
            "unplug" => Action::Unplug,
            "replug" => Action::Replug,
            "coverage" => match args.first() {
                Some(&"on") => Action::Coverage { on: true },
                Some(&"off") => Action::Coverage { on: false },
                _ => return Err("coverage: expected on or off".into()),
            },
            "signal" => Action::Signal { csq: small(number(args.first(), "csq")?, 99, "csq")? as u8 },
            "" => return Err("empty command".into()),
            other => return Err(format!("unknown command {other:?}")),
        })
    }
}

/// How the bank is set up.
#[derive(Debug, Clone)]
pub struct BankConfig {
    /// The first modem's settings; the others differ in IMEI, IMSI and ICCID only.
    pub modem: ModemConfig,
    /// How many modems.
    pub count: usize,
    /// Links are `<dir>/modem0`, `<dir>/modem1`, ...
    pub dir: PathBuf,
    /// Each send that asks for a report gets one this long after it (None: only on command).
    pub report_after: Option<Duration>,
    /// Share of those reports that say "failed".
    pub report_failure_fraction: f64,
}

/// Several virtual modems, addressed by their index.
pub struct Bank {
    modems: Vec<VirtualModem>,
}

/// A modem as the control port lists it.
#[derive(Debug, Serialize)]
pub struct ModemView {
    pub index: usize,
    pub link: PathBuf,
    /// The pty the link points at now; null while unplugged.
    pub device: Option<PathBuf>,
    pub imei: String,
    pub sent: usize,
}

/// One message the modem was given to send, as the control port lists it.
#[derive(Debug, Serialize)]
pub struct SentView {
    pub message_ref: u8,
    pub to: String,
    pub text: String,
    /// Concatenation: (reference, total, sequence).
    pub part: Option<(u16, u8, u8)>,
    pub status_report: bool,
    pub at: chrono::DateTime<chrono::Utc>,
}

/// Make identity `base` distinct for modem `index` by adding it to the trailing digits.
fn nth_identity(base: &str, index: usize) -> String {
    let digits = base.len().min(6);
    let (head, tail) = base.split_at(base.len() - digits);
    match tail.parse::<u64>() {
        Ok(n) => format!("{head}{:0digits$}", (n + index as u64) % 10u64.pow(digits as u32)),
        Err(_) => base.to_string(),
    }
}

impl Bank {
    /// Start `cfg.count` modems. Must run inside a tokio runtime.
    pub async fn start(cfg: &BankConfig) -> std::io::Result<Bank> {
        let mut modems = Vec::with_capacity(cfg.count);
        for i in 0..cfg.count {
            let mut m = cfg.modem.clone();
            m.imei = nth_identity(&m.imei, i);
            m.imsi = nth_identity(&m.imsi, i);
            m.iccid = nth_identity(&m.iccid, i);
            let modem = VirtualModem::start(m, &cfg.dir.join(format!("modem{i}"))).await?;
            modem.set_auto_reports(cfg.report_after);
            modem.set_report_failure_fraction(cfg.report_failure_fraction);
            modems.push(modem);
        }
        Ok(Bank { modems })
    }

    pub fn modems(&self) -> &[VirtualModem] {
        &self.modems
    }

    pub fn get(&self, index: usize) -> Result<&VirtualModem, String> {
        self.modems.get(index).ok_or_else(|| format!("no modem {index} (there are {})", self.modems.len()))
    }

    /// Carry out `action` on modem `index`.
    pub async fn apply(&self, index: usize, action: &Action) -> Result<(), String> {
        let m = self.get(index)?;
        match action {
            Action::Deliver { from, text } => m.deliver(from, text),
            Action::DeliverPdu { tpdu } => m.deliver_pdu(&crate::sms::pdu::from_hex(tpdu).map_err(|e| e.to_string())?),
            Action::Report { message_ref, to, status } => m.status_report(*message_ref, to, *status),
            Action::FailSends { count, code } => m.fail_next_sends(*count, *code),
            Action::Hang => m.set_hung(true),
            Action::Resume => m.set_hung(false),
            Action::Garbage => m.garbage(),
            Action::Unplug => m.unplug().await,
            Action::Replug => m.replug().await.map_err(|e| format!("cannot plug modem {index} back in: {e}"))?,
            Action::Coverage { on } => m.set_coverage(*on),
            Action::Signal { csq } => m.set_signal(*csq),
        }
        Ok(())
    }

    pub fn view(&self) -> Vec<ModemView> {
        self.modems
            .iter()
            .enumerate()
            .map(|(index, m)| ModemView {
                index,
                link: m.link().to_path_buf(),
                device: m.device_path(),
                imei: m.imei(),
                sent: m.sent().len(),
            })
            .collect()
    }

    pub fn sent(&self, index: usize) -> Result<Vec<SentView>, String> {
        Ok(self
            .get(index)?
            .sent()
            .into_iter()
            .map(|s| SentView {
                message_ref: s.message_ref,
                to: s.to,
                text: s.text,
                part: s.concat.map(|c| (c.reference, c.total, c.seq)),
                status_report: s.status_report,
                at: s.at,
            })
            .collect())
    }

    /// Stop every modem and remove the links.
    pub async fn shutdown(self) {
        for m in self.modems {
            m.shutdown().await;
        }
    }

    /// The links, one per modem, in order.
    pub fn links(&self) -> Vec<&Path> {
        self.modems.iter().map(|m| m.link()).collect()
    }
}

type Reply = Result<StatusCode, (StatusCode, String)>;

/// The control port: `GET /modems`, `GET /modems/{i}/sent`, and `POST /modems/{i}` with an
/// [`Action`] as JSON, e.g. `{"do":"deliver","from":"+79161234567","text":"hi"}`.
pub fn router(bank: Arc<Bank>) -> Router {
    async fn list(State(bank): State<Arc<Bank>>) -> Json<Vec<ModemView>> {
        Json(bank.view())
    }
    async fn sent(
        State(bank): State<Arc<Bank>>,
        UrlPath(i): UrlPath<usize>,
    ) -> Result<Json<Vec<SentView>>, (StatusCode, String)> {
        bank.sent(i).map(Json).map_err(|e| (StatusCode::NOT_FOUND, e))
    }
    async fn act(State(bank): State<Arc<Bank>>, UrlPath(i): UrlPath<usize>, Json(action): Json<Action>) -> Reply {
        bank.get(i).map_err(|e| (StatusCode::NOT_FOUND, e))?;
        bank.apply(i, &action).await.map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e))?;
        Ok(StatusCode::NO_CONTENT)
    }
    Router::new()
        .route("/modems", get(list))
        .route("/modems/{i}", axum::routing::post(act))
        .route("/modems/{i}/sent", get(sent))
        .with_state(bank)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_commands() {
        assert_eq!(
            Action::parse("deliver +79161234567 hello there").unwrap(),
            Action::Deliver { from: "+79161234567".into(), text: "hello there".into() }
        );
        assert_eq!(
            Action::parse("report 17 +79161234567 64").unwrap(),
            Action::Report { message_ref: 17, to: "+79161234567".into(), status: 64 }
        );
        assert_eq!(Action::parse("deliver-pdu 0400").unwrap(), Action::DeliverPdu { tpdu: "0400".into() });
        assert_eq!(Action::parse("fail 2 38").unwrap(), Action::FailSends { count: 2, code: 38 });
        assert_eq!(Action::parse("coverage off").unwrap(), Action::Coverage { on: false });
        assert_eq!(Action::parse("hang").unwrap(), Action::Hang);
        assert_eq!(Action::parse("report 300 +7 0").unwrap_err(), "report: message reference 300 is over 255");
        assert_eq!(Action::parse("fail x 1").unwrap_err(), "fail: count \"x\" is not a number");
        assert_eq!(Action::parse("explode").unwrap_err(), "unknown command \"explode\"");
        assert!(Action::parse("deliver +7916").is_err());
    }

    #[test]
    fn identities_differ_per_modem() {
        assert_eq!(nth_identity("867856030456784", 0), "867856030456784");
        assert_eq!(nth_identity("867856030456784", 3), "867856030456787");
        assert_eq!(nth_identity("250011234999999", 1), "250011234000000");
        assert_eq!(nth_identity("abc", 2), "abc");
    }
}
