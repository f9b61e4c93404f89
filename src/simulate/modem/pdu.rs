//! The PDUs the virtual modem hands out: SMS-DELIVER (an incoming message, one PDU per part) and
//! SMS-STATUS-REPORT (TS 23.040 §9.2.2.1 and §9.2.2.3), as hex with the SMSC part in front, the
//! way AT+CMGR, +CMT and +CDS carry them.
//!
//! `crate::sms::pdu` encodes only SMS-SUBMIT (what the gateway sends); these are the encoders for
//! the other direction. They are written independently of that codec so that a round trip through
//! `crate::sms::pdu::decode` checks both sides. Nothing here fails: an address that is not a
//! number becomes an alphanumeric sender, characters outside the GSM alphabet in it become '?',
//! and over-long values are cut to what the fields hold.

use chrono::{DateTime, Datelike, FixedOffset, Timelike};

use crate::sms::text::{self, Encoding};

/// First octet of an SMS-DELIVER: TP-MTI 00, TP-MMS set (no more messages waiting).
const DELIVER_FIRST: u8 = 0x04;
/// First octet of an SMS-STATUS-REPORT: TP-MTI 10, TP-MMS set, TP-SRQ clear (reports a SUBMIT).
const REPORT_FIRST: u8 = 0x06;
/// TP-UDHI: the user data starts with a header.
const UDHI: u8 = 0x40;
const TOA_INTERNATIONAL: u8 = 0x91;
const TOA_UNKNOWN: u8 = 0x81;
const TOA_ALPHANUMERIC: u8 = 0xD0;
/// An address holds at most 20 digits, or 11 GSM characters when alphanumeric.
const MAX_DIGITS: usize = 20;
const MAX_ALPHA_CHARS: usize = 11;

/// One PDU as a modem shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModemPdu {
    /// Uppercase hex, SMSC part first.
    pub hex: String,
    /// Octets after the SMSC part: the <length> of +CMGR, +CMGL, +CMT and +CDS.
    pub tpdu_len: usize,
}

/// The SMS-DELIVER parts of `text` from `sender`, as the SMSC `smsc` would hand them over at
/// `timestamp`. More than one part: each carries an 8-bit concatenation header with `reference`.
/// At most 255 parts are made; text beyond that is dropped.
pub fn encode_deliver(
    smsc: &str,
    sender: &str,
    text: &str,
    timestamp: DateTime<FixedOffset>,
    reference: u8,
) -> Vec<ModemPdu> {
    let split = text::split(text);
    let total = split.parts.len().min(255);
    let mut out = Vec::with_capacity(total);
    for (i, part) in split.parts.iter().take(total).enumerate() {
        let mut tpdu = Vec::with_capacity(176);
        let header = if total > 1 {
            // `total` and `i + 1` are at most 255 here.
            vec![0x05, 0x00, 0x03, reference, total as u8, (i + 1) as u8]
        } else {
            Vec::new()
        };
        tpdu.push(if header.is_empty() { DELIVER_FIRST } else { DELIVER_FIRST | UDHI });
        tpdu.extend(address(sender));
        tpdu.push(0x00); // TP-PID
        let (dcs, udl, ud) = user_data(split.encoding, part, &header);
        tpdu.push(dcs);
        tpdu.extend(timestamp_octets(timestamp));
        tpdu.push(udl);
        tpdu.extend(ud);
        out.push(finish(smsc, &tpdu));
    }
    out
}

/// An SMS-STATUS-REPORT for the SMS-SUBMIT with TP-MR `message_ref` to `recipient`: received by
/// the SMSC at `submitted`, `status` (TP-ST) reached at `discharged`.
pub fn encode_status_report(
    smsc: &str,
    message_ref: u8,
    recipient: &str,
    submitted: DateTime<FixedOffset>,
    discharged: DateTime<FixedOffset>,
    status: u8,
) -> ModemPdu {
    let mut tpdu = vec![REPORT_FIRST, message_ref];
    tpdu.extend(address(recipient));
    tpdu.extend(timestamp_octets(submitted));
    tpdu.extend(timestamp_octets(discharged));
    tpdu.push(status);
    finish(smsc, &tpdu)
}

/// The SMSC part (length octet, type of address, digits) followed by the TPDU, as hex.
fn finish(smsc: &str, tpdu: &[u8]) -> ModemPdu {
    let mut bytes = smsc_part(smsc);
    bytes.extend_from_slice(tpdu);
    ModemPdu { hex: hex(&bytes), tpdu_len: tpdu.len() }
}

/// The SMSC address as it precedes a TPDU; a lone 00 when there is no usable number.
pub fn smsc_part(smsc: &str) -> Vec<u8> {
    let (toa, digits) = match smsc.strip_prefix('+') {
        Some(rest) => (TOA_INTERNATIONAL, rest),
        None => (TOA_UNKNOWN, smsc),
    };
    if digits.is_empty() || digits.len() > MAX_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return vec![0x00];
    }
    let semi = semi_octets(digits);
    let mut out = Vec::with_capacity(semi.len() + 2);
    // At most 11 octets: 10 octets of digits and the type of address.
    out.push((semi.len() + 1) as u8);
    out.push(toa);
    out.extend(semi);
    out
}

/// TP-OA / TP-RA: digit count (or useful semi-octets of an alphanumeric value), type, value.
fn address(value: &str) -> Vec<u8> {
    let (toa, digits) = match value.strip_prefix('+') {
        Some(rest) => (TOA_INTERNATIONAL, rest),
        None => (TOA_UNKNOWN, value),
    };
    if !digits.is_empty() && digits.len() <= MAX_DIGITS && digits.bytes().all(|b| b.is_ascii_digit()) {
        let mut out = vec![digits.len() as u8, toa];
        out.extend(semi_octets(digits));
        return out;
    }
    // Alphanumeric (TS 23.040 §9.1.2.5): GSM 7-bit packed, the length counts semi-octets in use.
    let cleaned: String =
        value.chars().map(|c| if text::gsm7_septets(c) == Some(1) { c } else { '?' }).take(MAX_ALPHA_CHARS).collect();
    let cleaned = if cleaned.is_empty() { "?".to_string() } else { cleaned };
    let septets = text::encode_gsm7_unpacked(&cleaned).unwrap_or_default();
    let packed = pack(&septets, 0);
    let mut out = vec![(septets.len() * 7).div_ceil(4) as u8, TOA_ALPHANUMERIC];
    out.extend(packed);
    out
}

/// Decimal digits as swapped semi-octets, an odd count padded with F.
fn semi_octets(digits: &str) -> Vec<u8> {
    digits
        .as_bytes()
        .chunks(2)
        .map(|pair| {
            let first = pair[0] - b'0';
            let second = pair.get(1).map_or(0x0F, |d| d - b'0');
            (second << 4) | first
        })
        .collect()
}

/// TP-DCS, TP-UDL and TP-UD for one part behind `header` (a complete UDH, or empty).
fn user_data(encoding: Encoding, part: &str, header: &[u8]) -> (u8, u8, Vec<u8>) {
    let septets = match encoding {
        Encoding::Gsm7 => text::encode_gsm7_unpacked(part),
        Encoding::Ucs2 => None,
    };
    let mut ud = header.to_vec();
    match septets {
        Some(septets) => {
            let header_septets = (header.len() * 8).div_ceil(7);
            let fill = header_septets * 7 - header.len() * 8;
            let septets = &septets[..septets.len().min(160 - header_septets)];
            ud.extend(pack(septets, fill));
            (0x00, (header_septets + septets.len()) as u8, ud)
        }
        None => {
            let mut body = text::encode_ucs2(part);
            body.truncate((140 - header.len()) & !1);
            ud.extend(body);
            (0x08, ud.len() as u8, ud)
        }
    }
}

/// Septets packed LSB first into octets, the first one starting `fill` bits in (TS 23.038
/// §6.1.2.1.1).
fn pack(septets: &[u8], fill: usize) -> Vec<u8> {
    let total_bits = fill + septets.len() * 7;
    let mut out = vec![0u8; total_bits.div_ceil(8)];
    let mut bit = fill;
    for &s in septets {
        for k in 0..7 {
            if s >> k & 1 == 1 {
                out[bit / 8] |= 1 << (bit % 8);
            }
            bit += 1;
        }
    }
    out
}

/// TP-SCTS / TP-DT: year..second as swapped BCD, then the zone in quarter hours with bit 3 of the
/// octet as the sign.
fn timestamp_octets(t: DateTime<FixedOffset>) -> [u8; 7] {
    let swap = |v: u32| -> u8 {
        let v = (v % 100) as u8;
        ((v % 10) << 4) | (v / 10)
    };
    let offset = t.offset().local_minus_utc();
    let quarters = (offset.unsigned_abs() / 900).min(79) as u8;
    let mut zone = ((quarters % 10) << 4) | (quarters / 10);
    if offset < 0 {
        zone |= 0x08;
    }
    [
        swap(t.year().unsigned_abs()),
        swap(t.month()),
        swap(t.day()),
        swap(t.hour()),
        swap(t.minute()),
        swap(t.second()),
        zone,
    ]
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02X}");
        s
    })
}

#[cfg(test)]
mod props;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sms::pdu::{self, AddressKind, DataEncoding, Pdu};

    fn at(s: &str) -> DateTime<FixedOffset> {
        DateTime::parse_from_rfc3339(s).expect("test time is valid RFC 3339")
    }

    fn deliver(hex: &str) -> pdu::Deliver {
        match pdu::decode(hex, true) {
            Ok(Pdu::Deliver(d)) => d,
            other => panic!("{hex}: {other:?}"),
        }
    }

    #[test]
    fn single_gsm_deliver_matches_the_spec_layout() {
        let pdus = encode_deliver("+79168999100", "+79161234567", "hellohello", at("2024-03-05T14:07:09+03:00"), 0);
        assert_eq!(pdus.len(), 1);
        // SMSC 07 91 9761989901F0, first 04, OA 0B 91 9761214365F7, PID 00, DCS 00, SCTS, UDL 0A.
        assert_eq!(pdus[0].hex, "07919761989901F0040B919761214365F70000423050417090210AE8329BFD4697D9EC37");
        assert_eq!(pdus[0].tpdu_len, pdus[0].hex.len() / 2 - 8);
        let d = deliver(&pdus[0].hex);
        assert_eq!(d.smsc.as_deref(), Some("+79168999100"));
        assert_eq!(d.sender.value, "+79161234567");
        assert_eq!(d.text, "hellohello");
        assert_eq!(d.timestamp, at("2024-03-05T14:07:09+03:00"));
    }

    #[test]
    fn long_text_becomes_concatenated_parts_that_decode_back() {
        let text: String = (0..400).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
        let pdus = encode_deliver("+79168999100", "12345", &text, at("2024-12-31T23:59:59-02:30"), 77);
        assert_eq!(pdus.len(), 3);
        let mut joined = String::new();
        for (i, p) in pdus.iter().enumerate() {
            let d = deliver(&p.hex);
            assert_eq!(d.sender.kind, AddressKind::National);
            assert_eq!(d.sender.value, "12345");
            let c = d.concat.expect("every part has a concatenation header");
            assert_eq!((c.reference, c.total, usize::from(c.seq)), (77, 3, i + 1));
            assert_eq!(d.timestamp, at("2024-12-31T23:59:59-02:30"));
            joined.push_str(&d.text);
        }
        assert_eq!(joined, text);
    }

    #[test]
    fn ucs2_and_alphanumeric_sender() {
        let text = "Привет, мир! ".repeat(8);
        let pdus = encode_deliver("", "My Bank €", &text, at("2024-01-01T00:00:00Z"), 1);
        assert!(pdus.len() > 1);
        assert!(pdus.iter().all(|p| p.hex.starts_with("00")));
        let mut joined = String::new();
        for p in &pdus {
            let d = deliver(&p.hex);
            assert_eq!(d.encoding, DataEncoding::Ucs2);
            assert_eq!(d.sender.kind, AddressKind::Alphanumeric);
            assert_eq!(d.sender.value, "My Bank ?");
            joined.push_str(&d.text);
        }
        assert_eq!(joined, text);
    }

    #[test]
    fn status_report_decodes_back() {
        let p = encode_status_report(
            "+79168999100",
            0xA7,
            "+4915201234567",
            at("2024-03-05T14:07:09+01:00"),
            at("2024-03-05T14:07:30+01:00"),
            0x46,
        );
        match pdu::decode(&p.hex, true) {
            Ok(Pdu::StatusReport(r)) => {
                assert_eq!(r.message_ref, 0xA7);
                assert_eq!(r.recipient.value, "+4915201234567");
                assert_eq!(r.status, 0x46);
                assert_eq!(r.submitted, at("2024-03-05T14:07:09+01:00"));
                assert_eq!(r.discharged, at("2024-03-05T14:07:30+01:00"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(p.tpdu_len, p.hex.len() / 2 - 8);
    }

    #[test]
    fn odd_inputs_do_not_panic() {
        let t = at("2024-01-01T00:00:00Z");
        for sender in ["", "+", "123456789012345678901234", "@@@@@@@@@@@@@@@@", "ÿ", "+12ab"] {
            for text in ["", "€", &"€".repeat(200), &"x".repeat(40_000)] {
                for p in encode_deliver("garbage", sender, text, t, 0) {
                    assert!(pdu::decode(&p.hex, true).is_ok(), "{sender:?} {:?}", p.hex);
                }
            }
        }
    }
}
