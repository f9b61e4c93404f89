//! What the driver reads out of the modem's answers: signal levels, the
//! lengths in `+CMGR`/`+CMGL` headers, the memories `AT+CPMS=?` offers, the
//! SIM's own number and its SMSC address.

use crate::sms::pdu;

/// CSQ rssi (0..31, 99 unknown) as dBm and bars.
pub(super) fn signal(rssi: u8) -> (Option<i32>, Option<u8>) {
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

/// The `<length>` at the end of a PDU-mode `+CMGR:` / `+CMGL:` header: the
/// TPDU's octets, SMSC part not counted (TS 27.005 §3.4.2, §4.1).
pub(super) fn header_length(value: &str) -> Option<usize> {
    value.rsplit(',').next()?.trim().parse().ok()
}

/// The memories in the first list of an `AT+CPMS=?` answer (those that can
/// be read and deleted) that hold received messages or status reports:
/// `("SM","ME","SR"),(...),(...)` or `(("SM","BM","SR"),("SM"))`. "MT" (SM
/// and ME together) and "BM" (cell broadcast) are left out.
pub(super) fn readable_memories(value: &str) -> Vec<String> {
    let first = value.trim_start_matches(['(', ' ']).split(')').next().unwrap_or("");
    first
        .split(',')
        .map(|m| m.trim().trim_matches('"').to_ascii_uppercase())
        .filter(|m| matches!(m.as_str(), "SM" | "ME" | "SR"))
        .collect()
}

/// The number in a `+CNUM: "<alpha>","<number>",<type>` answer; None when
/// the SIM stores none.
pub(super) fn cnum_number(value: &str) -> Option<String> {
    let n = value.split(',').nth(1)?.trim().trim_matches('"').trim();
    (!n.is_empty()).then(|| n.to_string())
}

/// The SMSC address in a `+CSCA: <sca>,<tosca>` answer. A modem whose
/// character set is UCS2 (AT+CSCS) writes it as hex of UTF-16, quoted or
/// not: `002B0034...` is `+4...`. None when the SIM holds none.
pub(super) fn smsc_number(value: &str) -> Option<String> {
    let raw = value.split(',').next()?.trim().trim_matches('"').trim();
    let decoded = (raw.len() >= 8 && raw.len().is_multiple_of(4))
        .then(|| pdu::from_hex(raw).ok())
        .flatten()
        .map(|bytes| crate::sms::text::decode_ucs2(&bytes))
        .filter(|d| d.chars().all(|c| c == '+' || c.is_ascii_digit()));
    let n = decoded.unwrap_or_else(|| raw.to_string());
    (!n.is_empty()).then_some(n)
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
    fn signal_levels() {
        assert_eq!(signal(0), (Some(-113), Some(0)));
        assert_eq!(signal(17), (Some(-79), Some(3)));
        assert_eq!(signal(31), (Some(-51), Some(5)));
        assert_eq!(signal(99), (None, Some(0)));
    }
}
