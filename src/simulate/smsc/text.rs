//! Text helpers of the simulator: GSM 7-bit and UCS-2 user data, concatenation UDH, receipt dates.

use std::time::SystemTime;

use super::{ConcatInfo, ConcatVia};

/// Splits off the UDH and reads a concatenation element (IEI 0x00 or 0x08) from it.
pub fn parse_udh(data: &[u8]) -> (Option<Vec<u8>>, Option<ConcatInfo>) {
    let Some(&udhl) = data.first() else { return (None, None) };
    let Some(udh) = data.get(..1 + udhl as usize) else { return (None, None) };
    let mut concat = None;
    let mut rest = &udh[1..];
    while let [iei, len, tail @ ..] = rest {
        let Some(value) = tail.get(..*len as usize) else { break };
        match (iei, value) {
            (0x00, [reference, total, part]) => {
                concat =
                    Some(ConcatInfo { via: ConcatVia::Udh8, reference: *reference as u16, total: *total, part: *part })
            }
            (0x08, [hi, lo, total, part]) => {
                let reference = u16::from_be_bytes([*hi, *lo]);
                concat = Some(ConcatInfo { via: ConcatVia::Udh16, reference, total: *total, part: *part })
            }
            _ => {}
        }
        rest = &tail[value.len()..];
    }
    (Some(udh.to_vec()), concat)
}

/// Decodes GSM 7-bit unpacked septets (one per octet), escapes included.
pub fn gsm_decode(bytes: &[u8]) -> String {
    crate::sms::text::decode_gsm7_unpacked(bytes)
}

/// GSM 7-bit unpacked encoding, or None if a character is outside the default alphabet and its extension.
pub fn gsm_encode(text: &str) -> Option<Vec<u8>> {
    crate::sms::text::encode_gsm7_unpacked(text)
}

/// Decodes user data per data_coding.
pub fn decode_text(data_coding: u8, bytes: &[u8]) -> String {
    match data_coding {
        0x00 => gsm_decode(bytes),
        0x08 => crate::sms::text::decode_ucs2(bytes),
        0x03 => bytes.iter().map(|&b| b as char).collect(),
        _ => bytes.iter().map(|&b| if b.is_ascii() { b as char } else { '?' }).collect(),
    }
}

/// The text as the parts an SMSC would deliver, and their data_coding.
pub(super) fn parts(text: &str) -> (u8, Vec<Vec<u8>>) {
    let split = crate::sms::split(text);
    match split.encoding {
        crate::sms::Encoding::Gsm7 => (0, split.parts.iter().map(|p| gsm_encode(p).unwrap_or_default()).collect()),
        crate::sms::Encoding::Ucs2 => (8, split.parts.iter().map(|p| crate::sms::text::encode_ucs2(p)).collect()),
    }
}

/// `YYMMDDhhmm` in UTC, as receipts carry it.
pub fn yymmddhhmm(t: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t).format("%y%m%d%H%M").to_string()
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
    }
}
