//! Properties over generated input across both codecs: an SMS-DELIVER of any text, encoded by the
//! virtual modem, decodes back to it through `crate::sms::pdu` (sender, timestamp, concatenation
//! header and text).

use proptest::prelude::*;

use super::*;
use crate::sms::pdu::tests::props::any_text;
use crate::sms::pdu::{Concat, Pdu, decode_from_modem};

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn any_text_survives_sms_deliver(
        text in any_text(400),
        sender in "\\+?[0-9]{1,20}",
        reference: u8,
        // TP-SCTS has a two-digit year: local time from 2000 up to the end of 2069 in every zone
        // (2070-01-01 UTC less the widest offset east, 19:45).
        secs in 946_684_800i64..3_155_760_000 - 79 * 900,
        quarters in -79i32..=79,
    ) {
        let zone = FixedOffset::east_opt(quarters * 900).ok_or_else(|| TestCaseError::fail("zone"))?;
        let at = DateTime::from_timestamp(secs, 0).ok_or_else(|| TestCaseError::fail("time"))?.with_timezone(&zone);
        let pdus = encode_deliver("+79168999100", &sender, &text, at, reference);
        let mut joined = String::new();
        for (i, pdu) in pdus.iter().enumerate() {
            let d = match decode_from_modem(&pdu.hex, Some(pdu.tpdu_len)) {
                Ok(Pdu::Deliver(d)) => d,
                other => return Err(TestCaseError::fail(format!("{}: {other:?}", pdu.hex))),
            };
            prop_assert_eq!(&d.sender.value, &sender);
            prop_assert_eq!(d.timestamp, at);
            let concat = (pdus.len() > 1).then(|| Concat { reference: reference.into(), total: pdus.len() as u8, seq: i as u8 + 1 });
            prop_assert_eq!(d.concat, concat);
            joined.push_str(&d.text);
        }
        prop_assert_eq!(joined, text);
    }
}
