//! Tests of the PDU codec: vectors derived from TS 23.040/23.038 by hand (`spec`), real captures
//! (`realworld`), an independent encoder's output (`vectors`) and encode/decode round trips
//! (`round_trip`), and properties over generated input (`props`; the SMS-DELIVER round trip, which
//! needs the virtual modem's encoder, is in `crate::simulate::modem::pdu`).

pub(crate) mod props;
mod realworld;
mod round_trip;
mod spec;
mod vectors;

use super::*;

/// Decode and insist on an SMS-DELIVER.
fn deliver(hex: &str) -> Deliver {
    match decode(hex, true) {
        Ok(Pdu::Deliver(d)) => d,
        other => panic!("{hex}: expected SMS-DELIVER, got {other:?}"),
    }
}

/// Decode and insist on an SMS-SUBMIT.
fn submit(hex: &str) -> Submit {
    match decode(hex, true) {
        Ok(Pdu::Submit(s)) => s,
        other => panic!("{hex}: expected SMS-SUBMIT, got {other:?}"),
    }
}

/// Decode and insist on an SMS-STATUS-REPORT.
fn report(hex: &str) -> StatusReport {
    match decode(hex, true) {
        Ok(Pdu::StatusReport(r)) => r,
        other => panic!("{hex}: expected SMS-STATUS-REPORT, got {other:?}"),
    }
}

fn time(rfc3339: &str) -> DateTime<FixedOffset> {
    DateTime::parse_from_rfc3339(rfc3339).unwrap_or_else(|e| panic!("{rfc3339}: {e}"))
}

fn options(message_ref: u8, concat_ref: u8) -> SubmitOptions {
    SubmitOptions { message_ref, concat_ref, ..SubmitOptions::default() }
}

/// A modem's PDU is read behind its SMSC address unless the header's length says it came bare;
/// when it cannot be decoded, the error names what is wrong with it as meant (behind the SMSC
/// address), never what a bare reading of the SMSC length octet would make of it.
#[test]
fn pdus_from_a_modem_are_read_as_their_header_length_says() {
    let tpdu = "040B919761000000F00000621010214100000AE8329BFD4697D9EC37";
    let with_smsc = format!("07919761989901F0{tpdu}");
    for (hex, len) in
        [(with_smsc.as_str(), Some(tpdu.len() / 2)), (with_smsc.as_str(), None), (tpdu, Some(tpdu.len() / 2))]
    {
        match decode_from_modem(hex, len) {
            Ok(Pdu::Deliver(d)) => assert_eq!(d.text, "hellohello", "{hex} {len:?}"),
            other => panic!("{hex} {len:?}: {other:?}"),
        }
    }
    // Some modems count the SMSC part in the length: still read right.
    assert!(matches!(decode_from_modem(&with_smsc, Some(with_smsc.len() / 2)), Ok(Pdu::Deliver(_))));
    // Truncated user data behind an SMSC address of length 7.
    let cut = &with_smsc[..with_smsc.len() - 4];
    for len in [Some(tpdu.len() / 2), None] {
        let e = decode_from_modem(cut, len).unwrap_err();
        assert!(matches!(e, PduError::Truncated { field: "TP-UD", .. }), "{e}");
    }
}
