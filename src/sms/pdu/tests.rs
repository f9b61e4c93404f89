//! Tests of the PDU codec: vectors derived from TS 23.040/23.038 by hand (`spec`), real captures
//! (`realworld`), an independent encoder's output (`vectors`) and encode/decode round trips
//! (`round_trip`).

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
