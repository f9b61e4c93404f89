//! SIM PINs that must not be sent. A SIM counts wrong PINs and locks itself
//! after the third, so a PIN a SIM refused is remembered, for that SIM, and
//! never sent to it again while the process runs: not after a retry pause,
//! a reopen, a reset, an unplug (under the same port name or another one a
//! glob finds), nor after a reload that rebuilds the route with the same
//! PIN. A different configured PIN is a new pair and is tried.
//!
//! A SIM is named by what a modem tells before the PIN is entered: its
//! ICCID where the modem reads it, else the modem's IMEI, else the port.
//! Only a SHA-256 digest of the PIN is kept, never the PIN.
//!
//! What is remembered dies with the process; the attempts the SIM has left
//! ([`attempts_left`], read with AT+CPINR and vendor equivalents) guard a
//! restart loop: no PIN is sent to a SIM with only one attempt left.

use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::sync::Mutex;

/// (SIM, SHA-256 of the PIN) pairs a SIM refused. Process-wide: a route
/// rebuilt by a reload makes new drivers, and they must still know.
static REFUSED: Mutex<BTreeSet<(String, [u8; 32])>> = Mutex::new(BTreeSet::new());

fn digest(pin: &str) -> [u8; 32] {
    Sha256::digest(pin.as_bytes()).into()
}

/// How a SIM is named here: by ICCID, else the modem's IMEI, else its port.
pub fn sim_name(iccid: Option<&str>, imei: Option<&str>, port: &str) -> String {
    let known = |v: Option<&str>| v.map(str::trim).filter(|v| !v.is_empty()).map(str::to_string);
    match (known(iccid), known(imei)) {
        (Some(iccid), _) => format!("iccid:{iccid}"),
        (None, Some(imei)) => format!("imei:{imei}"),
        (None, None) => format!("port:{port}"),
    }
}

/// Whether `sim` has refused `pin` before.
pub fn refused(sim: &str, pin: &str) -> bool {
    let entry = (sim.to_string(), digest(pin));
    REFUSED.lock().unwrap_or_else(|p| p.into_inner()).contains(&entry)
}

/// `sim` refused `pin` (or may have: no answer came): never send it again.
pub fn remember_refused(sim: &str, pin: &str) {
    REFUSED.lock().unwrap_or_else(|p| p.into_inner()).insert((sim.to_string(), digest(pin)));
}

/// A command that tells the PIN attempts left: the command, its answer's
/// prefix, and the reader of the value after that prefix.
pub type AttemptsCommand = (&'static str, &'static str, fn(&str) -> Option<u32>);

/// The commands that tell the PIN attempts left, the standard one first.
pub const ATTEMPTS: [AttemptsCommand; 3] = [
    // TS 27.007 §8.65: +CPINR: SIM PIN,<retries>,<default retries>
    ("AT+CPINR=\"SIM PIN\"", "+CPINR", |v| field(v, 1)),
    // Quectel: +QPINC: "SC",<pin retries>,<puk retries>
    ("AT+QPINC=\"SC\"", "+QPINC", |v| field(v, 1)),
    // SIMCom SIM800: +SPIC: <pin1>,<pin2>,<puk1>,<puk2>
    ("AT+SPIC", "+SPIC", |v| field(v, 0)),
];

/// Field `i` of a comma-separated answer value, as a number.
fn field(value: &str, i: usize) -> Option<u32> {
    value.split(',').nth(i)?.trim().trim_matches('"').parse().ok()
}

/// The attempts left in a modem's answer lines to `ATTEMPTS[which]`.
pub fn attempts_left(which: usize, lines: &[String]) -> Option<u32> {
    let (_, prefix, read) = ATTEMPTS.get(which)?;
    lines.iter().find_map(|l| read(l.trim().strip_prefix(prefix)?.trim_start_matches(':')))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_pin_is_known_for_that_sim_only() {
        let sim = sim_name(Some("89701011234567890123"), Some("867856030456784"), "/dev/ttyUSB2");
        assert_eq!(sim, "iccid:89701011234567890123");
        assert!(!refused(&sim, "1234"));
        remember_refused(&sim, "1234");
        assert!(refused(&sim, "1234"));
        assert!(!refused(&sim, "4321"), "another PIN is a new try");
        assert!(!refused("iccid:89701019999999999999", "1234"), "another SIM is another SIM");
        // Only digests are kept.
        let kept = REFUSED.lock().unwrap().iter().any(|(_, d)| d.as_slice() == b"1234");
        assert!(!kept);
    }

    #[test]
    fn a_sim_is_named_by_iccid_then_imei_then_port() {
        assert_eq!(sim_name(None, Some("867856030456784"), "/dev/a"), "imei:867856030456784");
        assert_eq!(sim_name(Some(" "), None, "/dev/a"), "port:/dev/a");
    }

    #[test]
    fn attempts_in_standard_and_vendor_answers() {
        let lines = |l: &str| vec![l.to_string()];
        assert_eq!(attempts_left(0, &lines("+CPINR: SIM PIN,2,3")), Some(2));
        assert_eq!(attempts_left(0, &lines("+CPINR: \"SIM PIN\",1,3")), Some(1));
        assert_eq!(attempts_left(1, &lines("+QPINC: \"SC\",3,10")), Some(3));
        assert_eq!(attempts_left(2, &lines("+SPIC: 1,3,10,10")), Some(1));
        assert_eq!(attempts_left(0, &lines("OK")), None);
        assert_eq!(attempts_left(0, &lines("+CPINR: SIM PIN,x,3")), None);
        assert_eq!(attempts_left(7, &lines("+CPINR: SIM PIN,2,3")), None);
    }
}
