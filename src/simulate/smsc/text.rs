//! Text helpers of the simulator: GSM 7-bit and UCS-2 user data, concatenation UDH (read by
//! `sms::pdu`), receipt dates.

use std::time::SystemTime;

use super::{ConcatInfo, ConcatVia};

/// Splits off the UDH and reads a concatenation element (IEI 0x00 or 0x08) from it, by the
/// gateway's own parser ([`crate::sms::pdu::user_data_header`]): part numbers TS 23.040 says
/// to ignore (no parts, part 0, past the last) give no concatenation. A header whose elements do
/// not add up is still split off when its length fits, with no concatenation read from it.
pub fn parse_udh(data: &[u8]) -> (Option<Vec<u8>>, Option<ConcatInfo>) {
    let Some(&udhl) = data.first() else { return (None, None) };
    let udh = data.get(..1 + usize::from(udhl)).map(<[u8]>::to_vec);
    let Ok(header) = crate::sms::pdu::user_data_header(data) else { return (udh, None) };
    let via = if header.wide_reference { ConcatVia::Udh16 } else { ConcatVia::Udh8 };
    let concat = header.concat.map(|c| ConcatInfo { via, reference: c.reference, total: c.total, part: c.seq });
    (udh, concat)
}

/// Decodes GSM 7-bit unpacked septets (one per octet), escapes included.
pub fn gsm_decode(bytes: &[u8]) -> String {
    crate::sms::text::decode_gsm7_unpacked(bytes)
}

/// GSM 7-bit unpacked encoding, or None if a character is outside the default alphabet and its extension.
pub fn gsm_encode(text: &str) -> Option<Vec<u8>> {
    crate::sms::text::encode_gsm7_unpacked(text)
}

/// Decodes user data per data_coding by the one SMPP decoder
/// ([`crate::sms::text::decode_text`]); a coding it does not read shows its
/// ASCII bytes and `?` for the rest.
pub fn decode_text(data_coding: u8, bytes: &[u8]) -> String {
    crate::sms::text::decode_text(data_coding, bytes)
        .unwrap_or_else(|| bytes.iter().map(|&b| if b.is_ascii() { b as char } else { '?' }).collect())
}

/// The text as the parts an SMSC would deliver, and their data_coding.
pub(super) fn parts(text: &str) -> (u8, Vec<Vec<u8>>) {
    let split = crate::sms::split(text);
    match split.encoding {
        crate::sms::Encoding::Gsm7 => (0, split.parts.iter().map(|p| gsm_encode(p).unwrap_or_default()).collect()),
        crate::sms::Encoding::Ucs2 => (8, split.parts.iter().map(|p| crate::sms::text::encode_ucs2(p)).collect()),
    }
}

/// `YYMMDDhhmm` in UTC, as receipts carry it (the shared `smpp::receipt::date`).
pub fn yymmddhhmm(t: SystemTime) -> String {
    let ms = t.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
    crate::smpp::receipt::date(ms)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use rusmpp::values::EsmClass;

    use super::*;

    #[test]
    fn parts_follow_the_sms_module() {
        let (dc, p) = parts(&"a".repeat(161));
        assert_eq!((dc, p.len(), p[0].len()), (0, 2, 153));
        let (dc, p) = parts("привет");
        assert_eq!((dc, decode_text(dc, &p[0])), (8, "привет".to_string()));
        assert_eq!(gsm_decode(&gsm_encode("{€}").unwrap()), "{€}");
    }

    #[test]
    fn dates_format() {
        assert_eq!(yymmddhhmm(UNIX_EPOCH), "7001010000");
        // 2024-02-29 13:45:00 UTC
        assert_eq!(yymmddhhmm(UNIX_EPOCH + Duration::from_secs(1_709_214_300)), "2402291345");
    }

    #[test]
    fn esm_class_round_trips() {
        for v in [0x00u8, 0x04, 0x08, 0x40, 0x43, 0xC0] {
            assert_eq!(u8::from(EsmClass::from(v)), v);
        }
        assert_eq!(u8::from(EsmClass::default()), 0x08, "rusmpp 0.4.0 default esm_class is 0x08");
    }

    #[test]
    fn udh_parsing() {
        let (udh, c) = parse_udh(&[0x05, 0x00, 0x03, 0x2A, 0x03, 0x02, b'h', b'i']);
        assert_eq!(udh.as_deref(), Some(&[0x05, 0x00, 0x03, 0x2A, 0x03, 0x02][..]));
        assert_eq!(c, Some(ConcatInfo { via: ConcatVia::Udh8, reference: 0x2A, total: 3, part: 2 }));
        let (_, c) = parse_udh(&[0x06, 0x08, 0x04, 0x12, 0x34, 0x02, 0x01]);
        assert_eq!(c, Some(ConcatInfo { via: ConcatVia::Udh16, reference: 0x1234, total: 2, part: 1 }));
        assert_eq!(parse_udh(&[0x09, 0x00]), (None, None));
        assert_eq!(parse_udh(&[]), (None, None));
        // Part numbers TS 23.040 says to ignore: no concatenation.
        for (total, part) in [(2, 3), (2, 0), (0, 1)] {
            let (udh, c) = parse_udh(&[0x05, 0x00, 0x03, 0x2A, total, part, b'h', b'i']);
            assert_eq!((udh.map(|u| u.len()), c), (Some(6), None), "{part} of {total}");
        }
        // An element overrunning the header: the header is still split off.
        assert_eq!(parse_udh(&[0x02, 0x00, 0x03, b'h']), (Some(vec![0x02, 0x00, 0x03]), None));
    }
}
