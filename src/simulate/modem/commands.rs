//! The AT command set: parsing a command line (basic and extended commands chained as V.250
//! allows, e.g. `ATE0+CMEE=1;+CREG=2`) and what each command does to the [`Engine`].
//!
//! Commands are case-insensitive outside quoted strings. Errors follow AT+CMEE (plain ERROR,
//! numeric, verbose) and the vendor quirks; SMS commands report +CMS ERROR, the rest +CME ERROR.

use std::time::Instant;

use chrono::{DateTime, FixedOffset};

use super::pdu::ModemPdu;
use super::state::{After, Engine, ErrorReply, Input, Outcome, Sim, stat_text};

/// How a command was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// `AT+CMD` or a basic command with its digits (`ATE0`).
    Exec,
    /// `AT+CMD?`
    Query,
    /// `AT+CMD=?`
    Test,
    /// `AT+CMD=<args>`
    Set,
}

/// One command of a line: its name in upper case ("+CMGS", "^CURC", "E", "&F", "S"), how it was
/// written and its argument text (after "=" for Set, the digits of a basic command).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Cmd {
    pub name: String,
    pub kind: Kind,
    pub args: String,
}

/// One argument: its text without quotes, and whether it was quoted.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Arg {
    text: String,
    quoted: bool,
}

/// Split what follows "AT" into commands. `None`: a syntax error (answered ERROR).
pub(super) fn parse_line(body: &str) -> Option<Vec<Cmd>> {
    let mut quoted = false;
    let chars: Vec<char> = body
        .chars()
        .map(|c| {
            if c == '"' {
                quoted = !quoted;
            }
            if quoted { c } else { c.to_ascii_uppercase() }
        })
        .collect();
    let text = |from: usize, to: usize| chars[from..to].iter().collect::<String>();
    let mut cmds = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == ';' || c.is_whitespace() {
            i += 1;
        } else if "+^$%*#!".contains(c) {
            let start = i;
            i += 1;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            if i == start + 1 {
                return None;
            }
            let name = text(start, i);
            let tail_start = i;
            let mut in_quotes = false;
            while i < chars.len() && (in_quotes || chars[i] != ';') {
                if chars[i] == '"' {
                    in_quotes = !in_quotes;
                }
                i += 1;
            }
            let tail = text(tail_start, i);
            let tail = tail.trim();
            let (kind, args) = match tail {
                "" => (Kind::Exec, String::new()),
                "?" => (Kind::Query, String::new()),
                "=?" => (Kind::Test, String::new()),
                t => match t.strip_prefix('=') {
                    Some(args) => (Kind::Set, args.trim().to_string()),
                    None => return None,
                },
            };
            cmds.push(Cmd { name, kind, args });
        } else if c == '&' || c.is_ascii_alphabetic() {
            let start = i;
            if c == '&' {
                if !chars.get(i + 1).is_some_and(|c| c.is_ascii_alphabetic()) {
                    return None;
                }
                i += 2;
            } else {
                i += 1;
            }
            let name = text(start, i);
            match name.as_str() {
                // Dial: the rest of the line is the number.
                "D" => {
                    cmds.push(Cmd { name, kind: Kind::Exec, args: text(i, chars.len()) });
                    i = chars.len();
                }
                "S" => {
                    let reg_start = i;
                    while i < chars.len() && chars[i].is_ascii_digit() {
                        i += 1;
                    }
                    let reg = text(reg_start, i);
                    match chars.get(i) {
                        Some('?') => {
                            i += 1;
                            cmds.push(Cmd { name, kind: Kind::Query, args: reg });
                        }
                        Some('=') => {
                            i += 1;
                            let value_start = i;
                            while i < chars.len() && chars[i].is_ascii_digit() {
                                i += 1;
                            }
                            cmds.push(Cmd { name, kind: Kind::Set, args: format!("{reg}={}", text(value_start, i)) });
                        }
                        _ => return None,
                    }
                }
                _ => {
                    let digits_start = i;
                    while i < chars.len() && chars[i].is_ascii_digit() {
                        i += 1;
                    }
                    cmds.push(Cmd { name, kind: Kind::Exec, args: text(digits_start, i) });
                }
            }
        } else {
            return None;
        }
    }
    Some(cmds)
}

/// Split a Set command's arguments at commas outside quotes.
fn split_args(s: &str) -> Vec<Arg> {
    if s.trim().is_empty() {
        return Vec::new();
    }
    let mut args = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    let mut was_quoted = false;
    for c in s.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                was_quoted = true;
            }
            ',' if !quoted => {
                args.push(Arg { text: current.trim().to_string(), quoted: was_quoted });
                current.clear();
                was_quoted = false;
            }
            _ => current.push(c),
        }
    }
    args.push(Arg { text: current.trim().to_string(), quoted: was_quoted });
    args
}

/// Argument `i` as a number: Ok(None) if absent or empty, Err if not a number.
fn num(args: &[Arg], i: usize) -> Result<Option<u32>, ()> {
    match args.get(i) {
        None => Ok(None),
        Some(a) if a.text.is_empty() => Ok(None),
        Some(a) => a.text.parse().map(Some).map_err(|_| ()),
    }
}

/// Commands that work whatever the SIM's state.
const WITHOUT_SIM: &[&str] = &[
    "+CMEE", "+CGMI", "+GMI", "+CGMM", "+GMM", "+CGMR", "+GMR", "+CGSN", "+GSN", "+CPIN", "+CSQ", "+CREG", "+CGREG",
    "+CEREG", "+CFUN", "+CCID", "+QCCID", "+ICCID", "^ICCID", "+CMGF", "+CSCS", "+CLAC", "^CURC", "+IPR", "+IFC",
    "+CSMS", "+CSDH", "+CMMS", "+CLIP", "+CRC", "+CVHU", "+CNMI", "+CSMP", "+COPS", "+CPINR",
];

/// SMS commands: +CMS ERROR, refused until SMS is ready.
const SMS: &[&str] = &[
    "+CMGF", "+CMGS", "+CMGR", "+CMGL", "+CMGD", "+CPMS", "+CNMI", "+CSCA", "+CSMP", "+CSMS", "+CNMA", "+CMMS", "+CSDH",
];

/// What AT+CLAC lists.
const CLAC: &[&str] = &[
    "&C", "&D", "&F", "&W", "E", "I", "Q", "V", "Z", "+CCID", "+CEREG", "+CFUN", "+CGATT", "+CGMI", "+CGMM", "+CGMR",
    "+CGSN", "+CIMI", "+CLAC", "+CMEE", "+CMGD", "+CMGF", "+CMGL", "+CMGR", "+CMGS", "+CNMA", "+CNMI", "+CNUM",
    "+COPS", "+CPIN", "+CPINR", "+CPMS", "+CREG", "+CSCA", "+CSCS", "+CSDH", "+CSMP", "+CSMS", "+CSQ",
];

/// Run one command.
pub(super) fn run(e: &mut Engine, cmd: &Cmd, now: Instant) -> Outcome {
    if e.s.busy_left > 0 {
        e.s.busy_left -= 1;
        return Outcome::Fail(ErrorReply::Cme(515));
    }
    let name = cmd.name.as_str();
    let extended = name.len() > 1 && !name.starts_with('&');
    let sms = SMS.contains(&name);
    if extended && !WITHOUT_SIM.contains(&name) && is_known(e, name) {
        match e.sim() {
            Sim::Ready => {}
            Sim::Pin => return Outcome::Fail(if sms { ErrorReply::Cms(311) } else { ErrorReply::Cme(11) }),
            Sim::Puk => return Outcome::Fail(if sms { ErrorReply::Cms(316) } else { ErrorReply::Cme(12) }),
        }
        if e.s.sim_busy_left > 0 {
            e.s.sim_busy_left -= 1;
            return Outcome::Fail(ErrorReply::Cme(14));
        }
    }
    if sms && !e.sms_ready(now) {
        return Outcome::Fail(if e.cfg.quirks.sms_ready_plain_error {
            ErrorReply::Plain
        } else {
            ErrorReply::Cms(302)
        });
    }
    let args = split_args(&cmd.args);
    match name {
        "E" => match cmd.args.as_str() {
            "" | "0" => done_with(|| e.s.echo = false),
            "1" => done_with(|| e.s.echo = true),
            _ => Outcome::Fail(ErrorReply::Plain),
        },
        "Z" | "&F" => {
            let cfg = e.cfg.clone();
            e.s.reset_profile(&cfg);
            Outcome::Done(Vec::new())
        }
        "&W" | "&C" | "&D" | "&K" | "X" | "L" | "M" | "H" => Outcome::Done(Vec::new()),
        "V" if matches!(cmd.args.as_str(), "" | "1") => Outcome::Done(Vec::new()),
        "Q" if matches!(cmd.args.as_str(), "" | "0") => Outcome::Done(Vec::new()),
        "S" if cmd.kind == Kind::Query => Outcome::Done(vec!["000".into()]),
        "S" => Outcome::Done(Vec::new()),
        "I" => Outcome::Done(vec![
            pad(e, &e.cfg.manufacturer),
            pad(e, &e.cfg.model),
            pad(e, &format!("Revision: {}", e.cfg.revision)),
        ]),
        "+CMEE" => setting(cmd, &args, "+CMEE: (0-2)", 2, e.s.cmee, |v| e.s.cmee = v),
        "+CRC" => setting(cmd, &args, "+CRC: (0,1)", 1, e.s.crc, |v| e.s.crc = v),
        "+CVHU" => setting(cmd, &args, "+CVHU: (0,1)", 1, e.s.cvhu, |v| e.s.cvhu = v),
        "+CGMI" | "+GMI" => identity(e, cmd, &e.cfg.manufacturer),
        "+CGMM" | "+GMM" => identity(e, cmd, &e.cfg.model),
        "+CGMR" | "+GMR" => identity(e, cmd, &e.cfg.revision),
        "+CGSN" | "+GSN" => identity(e, cmd, &e.cfg.imei),
        "+CIMI" => identity(e, cmd, &e.cfg.imsi),
        "+CCID" if cmd.kind != Kind::Set => Outcome::Done(vec![e.cfg.iccid.clone()]),
        "+QCCID" | "+ICCID" | "^ICCID" if cmd.kind != Kind::Set => {
            Outcome::Done(vec![format!("{name}: {}", e.cfg.iccid)])
        }
        "+CNUM" => Outcome::Done(match (&e.cfg.own_number, cmd.kind) {
            (Some(n), Kind::Exec) => {
                vec![format!("+CNUM: \"\",\"{n}\",{}", if n.starts_with('+') { 145 } else { 129 })]
            }
            _ => Vec::new(),
        }),
        "+CPIN" => cpin(e, cmd, &args),
        "+CPINR" => cpinr(e, cmd, &args),
        "+CGATT" => match cmd.kind {
            // TS 27.007 §10.1.9: attached only while registered and not detached by hand.
            Kind::Query => Outcome::Done(vec![format!("+CGATT: {}", u8::from(e.s.cgatt && e.registered(now)))]),
            Kind::Test => Outcome::Done(vec!["+CGATT: (0,1)".into()]),
            Kind::Exec => Outcome::Fail(ErrorReply::Plain),
            Kind::Set => match num(&args, 0) {
                Ok(Some(v @ 0..=1)) => done_with(|| e.s.cgatt = v == 1),
                _ => Outcome::Fail(ErrorReply::Cme(50)),
            },
        },
        "+CREG" | "+CGREG" | "+CEREG" => creg(e, cmd, &args, now),
        "+CSQ" => match cmd.kind {
            Kind::Test => Outcome::Done(vec!["+CSQ: (0-31,99),(0-7,99)".into()]),
            _ if e.s.cfun != 1 => Outcome::Done(vec!["+CSQ: 99,99".into()]),
            _ => Outcome::Done(vec![format!("+CSQ: {},0", e.csq)]),
        },
        "+COPS" => match cmd.kind {
            Kind::Query if e.registered(now) => {
                // The numeric form is the MCC and MNC, as the SIM's IMSI begins.
                let name = match e.s.cops_format {
                    2 => e.cfg.imsi.chars().take(5).collect(),
                    _ => encode_string(&e.cfg.operator, &e.s.cscs),
                };
                Outcome::Done(vec![format!("+COPS: 0,{},\"{name}\"", e.s.cops_format)])
            }
            Kind::Query => Outcome::Done(vec!["+COPS: 0".into()]),
            Kind::Test => {
                let numeric: String = e.cfg.imsi.chars().take(5).collect();
                Outcome::Done(vec![format!("+COPS: (2,\"{0}\",\"{0}\",\"{numeric}\"),,(0-4),(0-2)", e.cfg.operator)])
            }
            // AT+COPS=3,<format> only chooses how the operator is named.
            Kind::Set if num(&args, 0) == Ok(Some(3)) => match num(&args, 1) {
                Ok(Some(f @ 0..=2)) => done_with(|| e.s.cops_format = f as u8),
                _ => Outcome::Fail(ErrorReply::Cme(50)),
            },
            _ => Outcome::Done(Vec::new()),
        },
        "+CFUN" => cfun(e, cmd, &args, now),
        "+CMGF" => {
            let current = u8::from(e.s.text_mode);
            setting(cmd, &args, "+CMGF: (0,1)", 1, current, |v| e.s.text_mode = v == 1)
        }
        "+CSCS" => match cmd.kind {
            Kind::Query => Outcome::Done(vec![format!("+CSCS: \"{}\"", e.s.cscs)]),
            Kind::Test => {
                Outcome::Done(vec!["+CSCS: (\"IRA\",\"GSM\",\"UCS2\",\"HEX\",\"PCCP437\",\"8859-1\")".into()])
            }
            Kind::Set => match args.first().map(|a| a.text.to_ascii_uppercase()) {
                Some(set) if ["IRA", "GSM", "UCS2", "HEX", "PCCP437", "8859-1"].contains(&set.as_str()) => {
                    e.s.cscs = set;
                    Outcome::Done(Vec::new())
                }
                _ => Outcome::Fail(ErrorReply::Cme(50)),
            },
            Kind::Exec => Outcome::Done(Vec::new()),
        },
        "+CSCA" => match cmd.kind {
            Kind::Query => {
                let toa = if e.smsc.starts_with('+') { 145 } else { 129 };
                Outcome::Done(vec![format!("+CSCA: \"{}\",{toa}", encode_string(&e.smsc, &e.s.cscs))])
            }
            Kind::Set => match args.first() {
                Some(a) => {
                    e.smsc = decode_string(&a.text, &e.s.cscs);
                    Outcome::Done(Vec::new())
                }
                None => Outcome::Fail(bad_sms_param(e)),
            },
            _ => Outcome::Done(Vec::new()),
        },
        "+CSMP" => match cmd.kind {
            Kind::Query => {
                let [fo, vp, pid, dcs] = e.s.csmp;
                Outcome::Done(vec![format!("+CSMP: {fo},{vp},{pid},{dcs}")])
            }
            Kind::Set => {
                for i in 0..4 {
                    match num(&args, i) {
                        Ok(Some(v)) if v <= 255 => e.s.csmp[i] = v as u8,
                        Ok(_) => {}
                        Err(()) => return Outcome::Fail(ErrorReply::Cms(305)),
                    }
                }
                if e.cfg.quirks.csmp_clears_smsc {
                    e.smsc.clear();
                }
                Outcome::Done(Vec::new())
            }
            _ => Outcome::Done(Vec::new()),
        },
        "+CSMS" => match cmd.kind {
            Kind::Query => Outcome::Done(vec![format!("+CSMS: {},1,1,1", e.s.csms)]),
            Kind::Test => Outcome::Done(vec!["+CSMS: (0,1)".into()]),
            Kind::Set => match num(&args, 0) {
                Ok(Some(v @ 0..=1)) => {
                    e.s.csms = v as u8;
                    Outcome::Done(vec!["+CSMS: 1,1,1".into()])
                }
                _ => Outcome::Fail(bad_sms_param(e)),
            },
            Kind::Exec => Outcome::Fail(ErrorReply::Plain),
        },
        "+CNMA" => match cmd.kind {
            Kind::Test => Outcome::Done(vec!["+CNMA: (0-2)".into()]),
            _ if e.s.ack_pending => {
                e.s.ack_pending = false;
                Outcome::Done(Vec::new())
            }
            _ => Outcome::Fail(ErrorReply::Cms(340)),
        },
        "+CSDH" => match cmd.kind {
            Kind::Query => Outcome::Done(vec!["+CSDH: 0".into()]),
            _ => Outcome::Done(Vec::new()),
        },
        "+CMMS" if e.cfg.quirks.cmms_unsupported => Outcome::Fail(ErrorReply::Cms(500)),
        "+CMMS" => setting(cmd, &args, "+CMMS: (0-2)", 2, e.s.cmms, |v| e.s.cmms = v),
        "+CPMS" => cpms(e, cmd, &args),
        "+CNMI" => cnmi(e, cmd, &args),
        "+CMGS" => cmgs(e, cmd, &args),
        "+CMGR" => cmgr(e, cmd, &args),
        "+CMGL" => cmgl(e, cmd, &args),
        "+CMGD" => cmgd(e, cmd, &args),
        "^CURC" if e.cfg.quirks.huawei_urcs => {
            let current = u8::from(e.s.curc);
            setting(cmd, &args, "^CURC: (0-1)", 1, current, |v| e.s.curc = v == 1)
        }
        "+CLAC" => clac(e),
        "+CLIP" => setting(cmd, &args, "+CLIP: (0,1)", 1, e.s.clip, |v| e.s.clip = v),
        "+IPR" => match cmd.kind {
            Kind::Query => Outcome::Done(vec!["+IPR: 115200".into()]),
            _ => Outcome::Done(Vec::new()),
        },
        "+IFC" => match cmd.kind {
            Kind::Query => Outcome::Done(vec!["+IFC: 0,0".into()]),
            _ => Outcome::Done(Vec::new()),
        },
        _ => unknown(e),
    }
}

/// Whether `name` is a command this modem has (unknown ones skip the SIM checks and get the
/// unknown-command answer).
fn is_known(e: &Engine, name: &str) -> bool {
    SMS.contains(&name)
        || WITHOUT_SIM.contains(&name)
        || ["+CIMI", "+CNUM", "+CNMA", "+CGATT"].contains(&name)
        || (name == "^CURC" && e.cfg.quirks.huawei_urcs)
}

fn done_with(f: impl FnOnce()) -> Outcome {
    f();
    Outcome::Done(Vec::new())
}

fn unknown(e: &Engine) -> Outcome {
    let q = &e.cfg.quirks;
    if q.command_not_support {
        Outcome::Fail(ErrorReply::NotSupport)
    } else if q.unknown_cme_100 && e.s.cmee >= 1 {
        Outcome::Fail(ErrorReply::Cme(100))
    } else {
        Outcome::Fail(ErrorReply::Plain)
    }
}

/// Bad parameter of an SMS command: 304 in PDU mode, 305 in text mode.
fn bad_sms_param(e: &Engine) -> ErrorReply {
    ErrorReply::Cms(if e.s.text_mode { 305 } else { 304 })
}

fn pad(e: &Engine, s: &str) -> String {
    if e.cfg.quirks.pad_identity { format!(" {s} ") } else { s.to_string() }
}

fn identity(e: &Engine, cmd: &Cmd, value: &str) -> Outcome {
    match cmd.kind {
        Kind::Test => Outcome::Done(Vec::new()),
        _ => Outcome::Done(vec![pad(e, value)]),
    }
}

/// A numeric setting 0..=max with the usual Set / Query / Test forms; the query answer is the
/// test line's prefix with the current value.
fn setting(cmd: &Cmd, args: &[Arg], test: &str, max: u8, current: u8, set: impl FnOnce(u8)) -> Outcome {
    let prefix = test.split(':').next().unwrap_or_default();
    match cmd.kind {
        Kind::Query => Outcome::Done(vec![format!("{prefix}: {current}")]),
        Kind::Test => Outcome::Done(vec![test.to_string()]),
        Kind::Exec => done_with(|| set(0)),
        Kind::Set => match num(args, 0) {
            Ok(Some(v)) if v <= u32::from(max) => done_with(|| set(v as u8)),
            Ok(None) => done_with(|| set(0)),
            _ => Outcome::Fail(ErrorReply::Cme(50)),
        },
    }
}

fn cpin(e: &mut Engine, cmd: &Cmd, args: &[Arg]) -> Outcome {
    match cmd.kind {
        Kind::Query => {
            let line = match e.sim() {
                Sim::Ready => "+CPIN: READY",
                Sim::Pin => "+CPIN: SIM PIN",
                Sim::Puk => "+CPIN: SIM PUK",
            };
            if e.cfg.quirks.cpin_without_ok {
                Outcome::NoFinal(vec![line.into()])
            } else {
                Outcome::Done(vec![line.into()])
            }
        }
        Kind::Test | Kind::Exec => Outcome::Done(Vec::new()),
        Kind::Set => {
            let first = args.first().map(|a| a.text.as_str()).unwrap_or_default();
            match e.sim() {
                Sim::Ready => Outcome::Fail(ErrorReply::Cme(3)),
                Sim::Pin => {
                    if e.pin.as_deref() == Some(first) {
                        e.pin_attempts = 3;
                        e.s.sim_ready_at = Some(Instant::now());
                        e.defer(After::SimReady);
                        Outcome::Done(Vec::new())
                    } else {
                        e.pin_attempts = e.pin_attempts.saturating_sub(1);
                        if e.pin_attempts == 0 {
                            e.puk_locked = true;
                        }
                        Outcome::Fail(ErrorReply::Cme(16))
                    }
                }
                Sim::Puk => match args.get(1) {
                    None => Outcome::Fail(ErrorReply::Cme(12)),
                    Some(new_pin) if first == e.cfg.puk && !new_pin.text.is_empty() => {
                        e.pin = Some(new_pin.text.clone());
                        e.puk_locked = false;
                        e.pin_attempts = 3;
                        e.s.sim_ready_at = Some(Instant::now());
                        e.defer(After::SimReady);
                        Outcome::Done(Vec::new())
                    }
                    Some(_) => Outcome::Fail(ErrorReply::Cme(16)),
                },
            }
        }
    }
}

/// TS 27.007 §8.65: the attempts left for the SIM's PIN and PUK. `AT+CPINR` lists both,
/// `AT+CPINR="SIM P*"` those whose name matches the pattern.
fn cpinr(e: &Engine, cmd: &Cmd, args: &[Arg]) -> Outcome {
    let codes = [("SIM PIN", e.pin_attempts, 3), ("SIM PUK", 10, 10)];
    match cmd.kind {
        Kind::Test | Kind::Query => Outcome::Done(Vec::new()),
        Kind::Exec | Kind::Set => {
            let pattern = args.first().map(|a| a.text.to_ascii_uppercase()).unwrap_or_default();
            let matches = |code: &str| match pattern.strip_suffix('*') {
                Some(prefix) => code.starts_with(prefix),
                None => pattern.is_empty() || code == pattern,
            };
            Outcome::Done(
                codes
                    .iter()
                    .filter(|(code, _, _)| matches(code))
                    .map(|(code, left, all)| format!("+CPINR: {code},{left},{all}"))
                    .collect(),
            )
        }
    }
}

/// Location fields of +CREG / +CGREG / +CEREG (LAC, CI and maybe AcT), led by a comma.
fn location(e: &Engine, urc: bool) -> String {
    let q = &e.cfg.quirks;
    let mut s = match (q.creg_unquoted, urc) {
        (true, true) => ", 2AF5, B88E350".to_string(),
        (true, false) => ",2AF5,B88E350".to_string(),
        (false, _) => ",\"2AF5\",\"0B88E350\"".to_string(),
    };
    if q.creg_with_act {
        s.push_str(",2");
    }
    s
}

/// The unsolicited registration line for `n` (1 or 2).
pub(super) fn creg_urc(e: &Engine, name: &str, n: u8, stat: u8) -> String {
    let loc = if n >= 2 && matches!(stat, 1 | 5) { location(e, true) } else { String::new() };
    format!("{name}: {stat}{loc}")
}

fn creg(e: &mut Engine, cmd: &Cmd, args: &[Arg], now: Instant) -> Outcome {
    let name = cmd.name.as_str();
    let n = match name {
        "+CREG" => e.s.creg_n,
        "+CGREG" => e.s.cgreg_n,
        _ => e.s.cereg_n,
    };
    match cmd.kind {
        Kind::Query => {
            if name == "+CREG"
                && let Some(answer) = &e.cfg.quirks.creg_answer
            {
                return Outcome::Done(if answer.is_empty() { Vec::new() } else { vec![answer.clone()] });
            }
            let stat = e.reg_stat(now);
            let loc = if (n >= 2 || e.cfg.quirks.creg_always_location) && matches!(stat, 1 | 5) {
                location(e, false)
            } else {
                String::new()
            };
            Outcome::Done(vec![format!("{name}: {n},{stat}{loc}")])
        }
        Kind::Test => Outcome::Done(vec![format!("{name}: (0-2)")]),
        Kind::Exec | Kind::Set => match num(args, 0) {
            Ok(v @ (None | Some(0..=2))) => {
                let v = v.unwrap_or(0) as u8;
                match name {
                    "+CREG" => e.s.creg_n = v,
                    "+CGREG" => e.s.cgreg_n = v,
                    _ => e.s.cereg_n = v,
                }
                Outcome::Done(Vec::new())
            }
            _ => Outcome::Fail(ErrorReply::Cme(50)),
        },
    }
}

fn cfun(e: &mut Engine, cmd: &Cmd, args: &[Arg], now: Instant) -> Outcome {
    match cmd.kind {
        Kind::Query => Outcome::Done(vec![format!("+CFUN: {}", e.s.cfun)]),
        Kind::Test => Outcome::Done(vec!["+CFUN: (0,1,4),(0,1)".into()]),
        Kind::Exec => Outcome::Fail(ErrorReply::Cme(50)),
        Kind::Set => {
            let (Ok(Some(fun)), Ok(reset)) = (num(args, 0), num(args, 1)) else {
                return Outcome::Fail(ErrorReply::Cme(50));
            };
            match fun {
                0 | 4 => {
                    e.s.cfun = fun as u8;
                    e.s.radio_on_at = None;
                }
                1 => {
                    if e.s.cfun != 1 || e.s.radio_on_at.is_none() {
                        e.s.radio_on_at = Some(now);
                    }
                    e.s.cfun = 1;
                    e.s.busy_left = e.cfg.quirks.busy_after_cfun;
                }
                _ => return Outcome::Fail(ErrorReply::Cme(50)),
            }
            match reset {
                None | Some(0) => {}
                Some(1) => e.defer(After::Reset),
                Some(_) => return Outcome::Fail(ErrorReply::Cme(50)),
            }
            Outcome::Done(Vec::new())
        }
    }
}

/// Memories AT+CPMS accepts for mem1 (mem2 and mem3 cannot be "SR").
fn memories(e: &Engine) -> Vec<String> {
    e.stores.keys().cloned().chain(std::iter::once("MT".to_string())).collect()
}

fn cpms(e: &mut Engine, cmd: &Cmd, args: &[Arg]) -> Outcome {
    let usage = |e: &Engine, mem: &str| e.store(mem).map_or((0, 0), |s| (s.used(), s.capacity));
    match cmd.kind {
        Kind::Test => {
            if let Some(line) = &e.cfg.quirks.cpms_test {
                return Outcome::Done(vec![line.clone()]);
            }
            let list = |mems: Vec<String>| mems.iter().map(|m| format!("\"{m}\"")).collect::<Vec<_>>().join(",");
            let all: Vec<String> = e.stores.keys().cloned().collect();
            let no_sr: Vec<String> = all.iter().filter(|m| *m != "SR").cloned().collect();
            Outcome::Done(vec![format!("+CPMS: ({}),({}),({})", list(all), list(no_sr.clone()), list(no_sr))])
        }
        Kind::Query => {
            if e.cfg.quirks.no_sms_storage {
                return Outcome::Fail(ErrorReply::Cms(302));
            }
            let fields: Vec<String> =
                e.s.mem
                    .iter()
                    .map(|m| {
                        let (used, total) = usage(e, m);
                        format!("\"{m}\",{used},{total}")
                    })
                    .collect();
            Outcome::Done(vec![format!("+CPMS: {}", fields.join(","))])
        }
        Kind::Exec => Outcome::Fail(ErrorReply::Cms(302)),
        Kind::Set => {
            if e.cfg.quirks.no_sms_storage || args.is_empty() || args.len() > 3 {
                return Outcome::Fail(ErrorReply::Cms(302));
            }
            let known = memories(e);
            let mut mem = e.s.mem.clone();
            for (i, arg) in args.iter().enumerate() {
                let name = arg.text.to_ascii_uppercase();
                if !known.contains(&name) || (i > 0 && name == "SR") {
                    return Outcome::Fail(ErrorReply::Cms(302));
                }
                mem[i] = name;
            }
            e.s.mem = mem;
            let fields: Vec<String> =
                e.s.mem
                    .iter()
                    .map(|m| {
                        let (used, total) = usage(e, m);
                        format!("{used},{total}")
                    })
                    .collect();
            Outcome::Done(vec![format!("+CPMS: {}", fields.join(","))])
        }
    }
}

const CNMI_TEST: &str = "+CNMI: (0-3),(0-3),(0-3),(0-2),(0,1)";

/// The value ranges of an AT+CNMI=? answer: one list of inclusive ranges per parameter.
fn parse_ranges(line: &str) -> Vec<Vec<(u32, u32)>> {
    let body = line.split_once(':').map_or(line, |(_, b)| b);
    body.split('(')
        .skip(1)
        .map(|group| {
            let inner = group.split(')').next().unwrap_or_default();
            inner
                .split(',')
                .filter_map(|item| {
                    let item = item.trim();
                    match item.split_once('-') {
                        Some((a, b)) => Some((a.trim().parse().ok()?, b.trim().parse().ok()?)),
                        None => item.parse().ok().map(|v| (v, v)),
                    }
                })
                .collect()
        })
        .collect()
}

fn cnmi(e: &mut Engine, cmd: &Cmd, args: &[Arg]) -> Outcome {
    let test = e.cfg.quirks.cnmi_test.clone().unwrap_or_else(|| CNMI_TEST.to_string());
    match cmd.kind {
        Kind::Test => Outcome::Done(vec![test]),
        Kind::Query => {
            let [a, b, c, d, f] = e.s.cnmi;
            Outcome::Done(vec![format!("+CNMI: {a},{b},{c},{d},{f}")])
        }
        Kind::Exec => Outcome::Done(Vec::new()),
        Kind::Set => {
            if e.cfg.quirks.no_sms_storage {
                return Outcome::Fail(ErrorReply::Plain);
            }
            if args.is_empty() || args.len() > 5 {
                return Outcome::Fail(ErrorReply::Cms(303));
            }
            let ranges = parse_ranges(&test);
            let mut values = [0u8; 5];
            for (i, value) in values.iter_mut().enumerate() {
                let v = match num(args, i) {
                    Ok(v) => v.unwrap_or(0),
                    Err(()) => return Outcome::Fail(ErrorReply::Cms(303)),
                };
                let allowed = ranges.get(i).is_none_or(|r| r.is_empty() || r.iter().any(|&(a, b)| a <= v && v <= b));
                // Whatever the test answer says, the modem knows only these.
                let max = [3, 3, 3, 2, 1][i];
                if !allowed || v > max {
                    return Outcome::Fail(ErrorReply::Cms(303));
                }
                *value = v as u8;
            }
            e.s.cnmi = values;
            if (1..=3).contains(&values[0]) {
                if values[4] == 0 {
                    e.defer(After::FlushBuffered);
                } else {
                    e.s.buffered.clear();
                }
            }
            Outcome::Done(Vec::new())
        }
    }
}

fn cmgs(e: &mut Engine, cmd: &Cmd, args: &[Arg]) -> Outcome {
    match cmd.kind {
        Kind::Test => Outcome::Done(Vec::new()),
        Kind::Query | Kind::Exec => Outcome::Fail(ErrorReply::Plain),
        Kind::Set if e.s.text_mode => match args.first() {
            Some(a) if !a.text.is_empty() => {
                Outcome::Prompt(Input::Text { to: decode_string(&a.text, &e.s.cscs), data: Vec::new() })
            }
            _ => Outcome::Fail(ErrorReply::Cms(305)),
        },
        Kind::Set => match num(args, 0) {
            Ok(Some(len @ 1..=176)) => Outcome::Prompt(Input::Pdu { len: len as usize, data: Vec::new() }),
            _ => Outcome::Fail(ErrorReply::Cms(304)),
        },
    }
}

/// The lines of one stored message for AT+CMGR (`index` None) or AT+CMGL.
fn message_lines(e: &Engine, index: Option<u32>, stat: u8, pdu: &super::pdu::ModemPdu) -> Vec<String> {
    if e.s.text_mode {
        let prefix = match index {
            Some(i) => format!("+CMGL: {i},"),
            None => "+CMGR: ".to_string(),
        };
        if let Some(lines) = text_mode_lines_with_stat(pdu, &prefix, Some(stat_text(stat)), &e.s.cscs) {
            return lines;
        }
    }
    let header = match index {
        Some(i) => format!("+CMGL: {i},{stat},,{}", pdu.tpdu_len),
        None => {
            let len = pdu.tpdu_len + if e.cfg.quirks.cmgr_wrong_length { 7 } else { 0 };
            match e.cfg.quirks.cmgr_header.as_str() {
                "no-alpha" => format!("+CMGR: {stat},{len}"),
                "len-only" => format!("+CMGR: {len}"),
                "empty-stat" => format!("+CMGR: ,,{len}"),
                _ => format!("+CMGR: {stat},,{len}"),
            }
        }
    };
    vec![header, pdu.hex.clone()]
}

fn cmgr(e: &mut Engine, cmd: &Cmd, args: &[Arg]) -> Outcome {
    if cmd.kind == Kind::Test {
        return Outcome::Done(Vec::new());
    }
    let Ok(Some(index)) = num(args, 0) else { return Outcome::Fail(bad_sms_param(e)) };
    if e.cfg.quirks.no_sms_storage {
        return Outcome::Done(Vec::new());
    }
    let mem = e.s.mem[0].clone();
    let Some(store) = e.store(&mem) else { return Outcome::Fail(ErrorReply::Cms(321)) };
    if !store.valid(index) {
        return Outcome::Fail(ErrorReply::Cms(321));
    }
    let Some(slot) = store.slots.get(&index).cloned() else { return Outcome::Done(Vec::new()) };
    let mut lines = message_lines(e, None, slot.stat, &slot.pdu);
    if e.cfg.quirks.cmgr_header == "with-index"
        && !e.s.text_mode
        && let Some(first) = lines.first_mut()
    {
        *first = format!("+CMGR: {index},{},,{}", slot.stat, slot.pdu.tpdu_len);
    }
    if let Some(stored) = e.store_mut(&mem).and_then(|s| s.slots.get_mut(&index))
        && stored.stat == 0
    {
        stored.stat = 1;
    }
    Outcome::Done(lines)
}

fn cmgl(e: &mut Engine, cmd: &Cmd, args: &[Arg]) -> Outcome {
    const TEXT_STATS: [&str; 5] = ["REC UNREAD", "REC READ", "STO UNSENT", "STO SENT", "ALL"];
    if cmd.kind == Kind::Test {
        return Outcome::Done(vec![if e.s.text_mode {
            "+CMGL: (\"REC UNREAD\",\"REC READ\",\"STO UNSENT\",\"STO SENT\",\"ALL\")".into()
        } else {
            "+CMGL: (0-4)".into()
        }]);
    }
    let wanted: u32 = match (e.s.text_mode, args.first()) {
        (_, None) => 0,
        (false, Some(a)) if !a.quoted => match a.text.parse() {
            Ok(v @ 0..=4) => v,
            _ => return Outcome::Fail(ErrorReply::Cms(304)),
        },
        (true, Some(a)) if a.quoted => match TEXT_STATS.iter().position(|s| s.eq_ignore_ascii_case(&a.text)) {
            Some(i) => i as u32,
            None => return Outcome::Fail(ErrorReply::Cms(305)),
        },
        _ => return Outcome::Fail(bad_sms_param(e)),
    };
    if e.cfg.quirks.no_sms_storage {
        return Outcome::Done(Vec::new());
    }
    let mem = e.s.mem[0].clone();
    let Some(store) = e.store(&mem) else { return Outcome::Done(Vec::new()) };
    let listed: Vec<(u32, u8, super::pdu::ModemPdu)> = store
        .slots
        .iter()
        .filter(|(_, slot)| wanted == 4 || u32::from(slot.stat) == wanted)
        .map(|(&i, slot)| (i, slot.stat, slot.pdu.clone()))
        .collect();
    let mut lines = Vec::new();
    for (i, stat, pdu) in &listed {
        lines.extend(message_lines(e, Some(*i), *stat, pdu));
    }
    if let Some(store) = e.store_mut(&mem) {
        for (i, _, _) in &listed {
            if let Some(slot) = store.slots.get_mut(i)
                && slot.stat == 0
            {
                slot.stat = 1;
            }
        }
    }
    Outcome::Done(lines)
}

fn cmgd(e: &mut Engine, cmd: &Cmd, args: &[Arg]) -> Outcome {
    let mem = e.s.mem[0].clone();
    if cmd.kind == Kind::Test {
        let used: Vec<String> =
            e.store(&mem).map(|s| s.slots.keys().map(|i| i.to_string()).collect()).unwrap_or_default();
        return Outcome::Done(vec![format!("+CMGD: ({}),(0-4)", used.join(","))]);
    }
    if cmd.kind != Kind::Set {
        return Outcome::Fail(bad_sms_param(e));
    }
    if e.cfg.quirks.cmgd_one_argument && args.len() >= 2 {
        return Outcome::Fail(ErrorReply::Cms(500));
    }
    let (Ok(Some(index)), Ok(flag)) = (num(args, 0), num(args, 1)) else { return Outcome::Fail(bad_sms_param(e)) };
    let Some(store) = e.store_mut(&mem) else { return Outcome::Fail(ErrorReply::Cms(321)) };
    match flag.unwrap_or(0) {
        0 => {
            if !store.valid(index) {
                return Outcome::Fail(ErrorReply::Cms(321));
            }
            store.slots.remove(&index);
        }
        // 1: all read, 2: read and sent, 3: read, sent and unsent, 4: all.
        flag @ 1..=4 => store.slots.retain(|_, slot| match flag {
            1 => slot.stat != 1,
            2 => !matches!(slot.stat, 1 | 3),
            3 => slot.stat == 0,
            _ => false,
        }),
        _ => return Outcome::Fail(bad_sms_param(e)),
    }
    Outcome::Done(Vec::new())
}

fn clac(e: &Engine) -> Outcome {
    match e.cfg.quirks.clac.as_str() {
        "unsupported" => Outcome::Fail(ErrorReply::Cme(100)),
        "single-line" => Outcome::Done(vec![format!("+CLAC: {}", CLAC.join(","))]),
        "extra-cr" => Outcome::Done(CLAC.iter().map(|c| format!("{c}\r")).collect()),
        _ => Outcome::Done(CLAC.iter().map(|c| c.to_string()).collect()),
    }
}

/// A string parameter in the TE character set (AT+CSCS): UCS2 as hex of UTF-16BE.
pub(super) fn encode_string(s: &str, cscs: &str) -> String {
    if cscs == "UCS2" { s.encode_utf16().map(|u| format!("{u:04X}")).collect() } else { s.to_string() }
}

/// The inverse of [`encode_string`]; a value that is not UCS2 hex is taken as it is.
fn decode_string(s: &str, cscs: &str) -> String {
    if cscs != "UCS2" || !s.len().is_multiple_of(4) || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return s.to_string();
    }
    let units: Vec<u16> =
        s.as_bytes().chunks(4).filter_map(|c| u16::from_str_radix(std::str::from_utf8(c).ok()?, 16).ok()).collect();
    String::from_utf16_lossy(&units)
}

/// The final result line for an error, per AT+CMEE and quirks.
pub(super) fn render_error(e: &Engine, error: ErrorReply) -> String {
    let q = &e.cfg.quirks;
    let (kind, code, text) = match error {
        ErrorReply::Plain => return "ERROR".into(),
        ErrorReply::NotSupport => return "COMMAND NOT SUPPORT".into(),
        ErrorReply::CmsEmpty => return "+CMS ERROR:".into(),
        ErrorReply::Cme(code) => ("CME", code, cme_text(code)),
        ErrorReply::Cms(code) => ("CMS", code, cms_text(code)),
    };
    match e.s.cmee {
        0 if kind == "CMS" && q.cms_errors_ignore_cmee => format!("+CMS ERROR: {code}"),
        0 => "ERROR".into(),
        2 if q.error_format_m26 => format!("{kind} Error: {}", text.unwrap_or("unknown")),
        2 => match text {
            Some(text) => format!("+{kind} ERROR: {text}"),
            None => format!("+{kind} ERROR: {code}"),
        },
        _ => format!("+{kind} ERROR: {code}"),
    }
}

/// TS 27.007 §9.2 texts (515 is a common vendor code).
fn cme_text(code: u16) -> Option<&'static str> {
    Some(match code {
        3 => "operation not allowed",
        4 => "operation not supported",
        10 => "SIM not inserted",
        11 => "SIM PIN required",
        12 => "SIM PUK required",
        13 => "SIM failure",
        14 => "SIM busy",
        16 => "incorrect password",
        20 => "memory full",
        21 => "invalid index",
        30 => "no network service",
        50 => "incorrect parameters",
        100 => "unknown",
        515 => "please wait, init or command processing in progress",
        _ => return None,
    })
}

/// TS 27.005 §3.2.5 and TS 24.011 annex E-2 texts.
fn cms_text(code: u16) -> Option<&'static str> {
    Some(match code {
        1 => "unassigned (unallocated) number",
        8 => "operator determined barring",
        10 => "call barred",
        21 => "short message transfer rejected",
        27 => "destination out of service",
        28 => "unidentified subscriber",
        29 => "facility rejected",
        30 => "unknown subscriber",
        38 => "network out of order",
        41 => "temporary failure",
        42 => "congestion",
        47 => "resources unavailable, unspecified",
        50 => "requested facility not subscribed",
        69 => "requested facility not implemented",
        300 => "ME failure",
        301 => "SMS service of ME reserved",
        302 => "operation not allowed",
        303 => "operation not supported",
        304 => "invalid PDU mode parameter",
        305 => "invalid text mode parameter",
        310 => "SIM not inserted",
        311 => "SIM PIN required",
        312 => "PH-SIM PIN required",
        313 => "SIM failure",
        314 => "SIM busy",
        315 => "SIM wrong",
        316 => "SIM PUK required",
        320 => "memory failure",
        321 => "invalid memory index",
        322 => "memory full",
        330 => "SMSC address unknown",
        331 => "no network service",
        332 => "network timeout",
        340 => "no +CNMA acknowledgement expected",
        500 => "unknown error",
        _ => return None,
    })
}

/// Text-mode rendering of a stored or routed PDU: header (after `prefix`) and, for a message, its
/// text. `None` if the PDU does not decode.
pub(super) fn text_mode_lines(pdu: &ModemPdu, prefix: &str, cscs: &str) -> Option<Vec<String>> {
    text_mode_lines_with_stat(pdu, prefix, None, cscs)
}

/// As [`text_mode_lines`], with a "<stat>," field first (AT+CMGR and AT+CMGL).
pub(super) fn text_mode_lines_with_stat(
    pdu: &ModemPdu,
    prefix: &str,
    stat: Option<&str>,
    cscs: &str,
) -> Option<Vec<String>> {
    use crate::sms::pdu::{DataEncoding, Pdu, decode};
    let stat = stat.map(|s| format!("\"{s}\",")).unwrap_or_default();
    let time = |t: DateTime<FixedOffset>| {
        let quarters = t.offset().local_minus_utc() / 900;
        format!("{}{:+03}", t.format("%y/%m/%d,%H:%M:%S"), quarters)
    };
    match decode(&pdu.hex, true).ok()? {
        Pdu::Deliver(d) => {
            let sender = encode_string(&d.sender.value, cscs);
            let text = match d.encoding {
                DataEncoding::Ucs2 if cscs == "UCS2" => encode_string(&d.text, cscs),
                DataEncoding::Ucs2 => d.text.clone(),
                _ => encode_string(&d.text, cscs),
            };
            Some(vec![format!("{prefix}{stat}\"{sender}\",,\"{}\"", time(d.timestamp)), text])
        }
        Pdu::StatusReport(r) => {
            let toa = if r.recipient.value.starts_with('+') { 145 } else { 129 };
            Some(vec![format!(
                "{prefix}{stat}6,{},\"{}\",{toa},\"{}\",\"{}\",{}",
                r.message_ref,
                encode_string(&r.recipient.value, cscs),
                time(r.submitted),
                time(r.discharged),
                r.status
            )])
        }
        Pdu::Submit(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(line: &str) -> Vec<(String, Kind, String)> {
        parse_line(line).unwrap_or_default().into_iter().map(|c| (c.name, c.kind, c.args)).collect()
    }

    #[test]
    fn chained_basic_and_extended_commands() {
        assert_eq!(
            names("E0+CMEE=1;+CLIP=1;+CREG=2"),
            vec![
                ("E".into(), Kind::Exec, "0".into()),
                ("+CMEE".into(), Kind::Set, "1".into()),
                ("+CLIP".into(), Kind::Set, "1".into()),
                ("+CREG".into(), Kind::Set, "2".into()),
            ]
        );
        assert_eq!(names("+cpms?"), vec![("+CPMS".into(), Kind::Query, String::new())]);
        assert_eq!(names("+Cnmi=?"), vec![("+CNMI".into(), Kind::Test, String::new())]);
        assert_eq!(names("+cpin=\"abCd\""), vec![("+CPIN".into(), Kind::Set, "\"abCd\"".into())]);
        assert_eq!(names("^curc=0"), vec![("^CURC".into(), Kind::Set, "0".into())]);
        assert_eq!(
            names("&F S0=0 S3?"),
            vec![
                ("&F".into(), Kind::Exec, String::new()),
                ("S".into(), Kind::Set, "0=0".into()),
                ("S".into(), Kind::Query, "3".into()),
            ]
        );
        assert_eq!(names(""), vec![]);
        assert!(parse_line("+").is_none());
        assert!(parse_line("&").is_none());
        assert!(parse_line("+CMGF 0").is_none());
        assert!(parse_line("\u{fffd}").is_none());
    }

    #[test]
    fn arguments_split_outside_quotes() {
        let args = split_args(" \"SM\", \"a,b\" ,3,");
        let texts: Vec<&str> = args.iter().map(|a| a.text.as_str()).collect();
        assert_eq!(texts, ["SM", "a,b", "3", ""]);
        assert!(args[0].quoted && !args[2].quoted);
        assert!(split_args("").is_empty());
    }

    #[test]
    fn cnmi_ranges_parse() {
        assert_eq!(
            parse_ranges("+CNMI: (2),(0-1,3),(0,2),(0-1),(0)"),
            vec![vec![(2, 2)], vec![(0, 1), (3, 3)], vec![(0, 0), (2, 2)], vec![(0, 1)], vec![(0, 0)],]
        );
        assert_eq!(parse_ranges("+CNMI:(0-3),(0-3)").len(), 2);
        assert!(parse_ranges("garbage").is_empty());
    }

    #[test]
    fn ucs2_strings_round_trip() {
        assert_eq!(encode_string("+972", "UCS2"), "002B003900370032");
        assert_eq!(decode_string("002B003900370032", "UCS2"), "+972");
        assert_eq!(decode_string("+972", "UCS2"), "+972");
        assert_eq!(encode_string("+972", "GSM"), "+972");
    }
}
