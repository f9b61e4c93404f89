//! Properties over generated input: decoding never panics, whatever the bytes (random, or real
//! captures with octets changed or cut); SMS-SUBMIT of any text decodes back to it; the user data
//! header parser never reports a part outside 1..=total. (SMS-DELIVER of any text, encoded by the
//! virtual modem, is checked in `crate::simulate::modem::pdu`.)

use proptest::prelude::*;

use super::*;
use crate::sms::text::split;

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig { cases, ..ProptestConfig::default() }
}

/// The hex of every real capture, to mutate: random bytes almost never get past the first fields.
fn captures() -> Vec<String> {
    super::realworld::entries().into_iter().map(|e| e.pdu).collect()
}

/// A capture with some octets replaced and maybe cut short, as hex.
fn mutated_capture() -> impl Strategy<Value = String> {
    let seeds = captures();
    (
        0..seeds.len(),
        prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        any::<Option<prop::sample::Index>>(),
    )
        .prop_map(move |(i, edits, cut)| {
            let mut bytes = from_hex(&seeds[i]).unwrap_or_default();
            if bytes.is_empty() {
                return String::new();
            }
            for (at, value) in edits {
                let at = at.index(bytes.len());
                bytes[at] = value;
            }
            if let Some(cut) = cut {
                bytes.truncate(cut.index(bytes.len()));
            }
            to_hex(&bytes)
        })
}

/// Text from a mix of GSM 7-bit characters, extension characters and anything at all.
pub(crate) fn any_text(max: usize) -> impl Strategy<Value = String> {
    let gsm = prop::sample::select(vec!['a', 'Z', '0', ' ', '@', '\n', '\r', 'é', 'Ä', '$', '_', 'Ω']);
    let ext = prop::sample::select(vec!['€', '{', '}', '[', ']', '~', '\\', '^', '|', '\u{0C}']);
    let other = prop::sample::select(vec!['Ж', 'П', '中', '😀', '👍', '🏽', '\u{0}', '\u{FFFD}']);
    let one = prop_oneof![6 => gsm, 2 => ext, 1 => other, 1 => any::<char>()];
    prop::collection::vec(one, 1..max).prop_map(|chars| chars.into_iter().collect())
}

proptest! {
    #![proptest_config(config(1000))]

    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..200), smsc: bool, len: Option<u8>) {
        let hex = to_hex(&bytes);
        let _ = decode(&hex, smsc);
        let _ = decode_from_modem(&hex, len.map(usize::from));
    }

    #[test]
    fn decoding_arbitrary_text_never_panics(text in "\\PC{0,80}", smsc: bool) {
        let _ = decode(&text, smsc);
    }

    #[test]
    fn decoding_damaged_captures_never_panics(hex in mutated_capture(), len: Option<u8>) {
        let _ = decode(&hex, true);
        let _ = decode(&hex, false);
        let _ = decode_from_modem(&hex, len.map(usize::from));
    }

    /// Whatever TP-UDL says, user data decodes to at most 160 characters (a GSM 7-bit escape
    /// pair is one) and a concatenation header never names part 0 or a part past the last.
    #[test]
    fn decoded_messages_stay_within_what_a_pdu_can_carry(hex in mutated_capture()) {
        if let Ok(Pdu::Deliver(Deliver { text, concat, .. }) | Pdu::Submit(Submit { text, concat, .. })) = decode(&hex, true) {
            prop_assert!(text.chars().count() <= 280, "{} characters", text.chars().count());
            if let Some(c) = concat {
                prop_assert!(c.seq >= 1 && c.seq <= c.total, "{c:?}");
            }
        }
    }

    #[test]
    fn the_header_parser_never_names_a_part_outside_the_message(ud in prop::collection::vec(any::<u8>(), 0..40)) {
        if let Ok(UserDataHeader { concat, len, .. }) = user_data_header(&ud) {
            prop_assert!(len >= 1 && len <= ud.len());
            if let Some(c) = concat {
                prop_assert!(c.seq >= 1 && c.seq <= c.total, "{c:?} from {ud:02X?}");
            }
        }
    }

    /// Headers made of concatenation IEs with any values: the one read is the last valid one.
    #[test]
    fn the_header_parser_keeps_the_last_valid_concatenation(ies in prop::collection::vec((any::<bool>(), any::<u16>(), any::<u8>(), any::<u8>()), 1..6)) {
        let mut ud = vec![0u8];
        let mut expected = None;
        for &(wide, reference, total, seq) in &ies {
            if wide {
                ud.extend([0x08, 4]);
                ud.extend(reference.to_be_bytes());
            } else {
                ud.extend([0x00, 3, reference as u8]);
            }
            ud.extend([total, seq]);
            if seq >= 1 && seq <= total {
                let reference = if wide { reference } else { u16::from(reference as u8) };
                expected = Some(Concat { reference, total, seq });
            }
        }
        ud[0] = (ud.len() - 1) as u8;
        prop_assert_eq!(user_data_header(&ud).map(|h| (h.concat, h.len)), Ok((expected, ud.len())));
    }
}

proptest! {
    #![proptest_config(config(300))]

    #[test]
    fn any_text_survives_sms_submit(text in any_text(400), mr: u8, concat_ref: u8, srr: bool) {
        let s = split(&text);
        prop_assume!(s.parts.len() <= 255);
        let opts = SubmitOptions { message_ref: mr, status_report: srr, validity_minutes: None, concat_ref };
        let pdus = encode_submit("+79161234567", &s, &opts).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let mut joined = String::new();
        for (i, pdu) in pdus.iter().enumerate() {
            let Ok(Pdu::Submit(d)) = decode(&pdu.hex, true) else {
                return Err(TestCaseError::fail(format!("{} does not decode as SMS-SUBMIT", pdu.hex)));
            };
            let concat = (pdus.len() > 1).then(|| Concat { reference: concat_ref.into(), total: pdus.len() as u8, seq: i as u8 + 1 });
            prop_assert_eq!(d.concat, concat);
            prop_assert_eq!(&d.text, &s.parts[i]);
            joined.push_str(&d.text);
        }
        prop_assert_eq!(joined, text);
    }
}
