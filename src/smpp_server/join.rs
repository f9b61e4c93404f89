//! Multipart join: where a submit says it is one part of a long message —
//! a user data header (esm_class UDHI, concatenation IEI 0x00 with an 8-bit
//! reference or 0x08 with a 16-bit one, read by the one UDH parser in
//! `sms::pdu`) or the SAR TLVs (`sar_msg_ref_num`, `sar_total_segments`,
//! `sar_segment_seqnum`) — and the sweep that stores a set still incomplete
//! after `join_timeout_secs`. The parts themselves are kept and joined by
//! `store::smpp_parts`, each committed before its response.

use super::Shared;
use crate::sms::pdu::{Concat, user_data_header};
use rusmpp::tlvs::{Tlv, TlvValue};
use std::sync::Arc;
use std::time::Duration;

/// Why a submit's concatenation cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JoinError {
    #[error("esm_class has UDHI set but the user data header cannot be read: {0}")]
    Header(String),
    #[error("SAR TLVs incomplete: sar_msg_ref_num, sar_total_segments and sar_segment_seqnum go together")]
    SarIncomplete,
    #[error("SAR part {seq} of {total} is not a part number")]
    SarNumbers { seq: u8, total: u8 },
}

/// What a submit's user data is: a whole message, or one part of a set
/// (a set of one part is a whole message), with the header taken off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserData<'a> {
    pub concat: Option<Concat>,
    pub data: &'a [u8],
}

/// Read the concatenation of a submit from its `esm_class`, user data and
/// TLVs. A UDH without a concatenation element is taken off and the rest is
/// a whole message.
pub fn read<'a>(esm_class: u8, data: &'a [u8], tlvs: &[Tlv]) -> Result<UserData<'a>, JoinError> {
    let (mut reference, mut total, mut seq) = (None, None, None);
    for tlv in tlvs {
        match tlv.value() {
            Some(TlvValue::SarMsgRefNum(r)) => reference = Some(*r),
            Some(TlvValue::SarTotalSegments(t)) => total = Some(*t),
            Some(TlvValue::SarSegmentSeqnum(s)) => seq = Some(*s),
            _ => {}
        }
    }
    read_parts(esm_class, data, (reference, total, seq))
}

/// [`read`] with the SAR values already taken from the TLVs.
pub fn read_parts(
    esm_class: u8,
    data: &[u8],
    sar: (Option<u16>, Option<u8>, Option<u8>),
) -> Result<UserData<'_>, JoinError> {
    let (concat, data) = if esm_class & 0x40 != 0 {
        let header = user_data_header(data).map_err(|e| JoinError::Header(e.to_string()))?;
        (header.concat, data.get(header.len..).unwrap_or_default())
    } else {
        let concat = match sar {
            (None, None, None) => None,
            (Some(r), Some(total), Some(seq)) => {
                Some(Concat::checked(r, total, seq).ok_or(JoinError::SarNumbers { seq, total })?)
            }
            _ => return Err(JoinError::SarIncomplete),
        };
        (concat, data)
    };
    Ok(UserData { concat: concat.filter(|c| c.total > 1), data })
}

/// Store the sets left incomplete past the join timeout, until the server stops.
pub(super) async fn sweep(shared: Arc<Shared>) {
    let timeout_ms = shared.join_timeout.as_millis() as i64;
    let every = (shared.join_timeout / 4).clamp(Duration::from_millis(250), Duration::from_secs(10));
    loop {
        tokio::select! {
            _ = shared.cancel.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        match shared.store.smpp_expire_parts(timeout_ms, 100).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(sets = n, "SMPP: long messages stored as incomplete after the join timeout"),
            Err(e) => tracing::warn!(error = %e, "SMPP: storing incomplete part sets failed; will try again"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(reference: u16, total: u8, seq: u8) -> Option<Concat> {
        Some(Concat { reference, total, seq })
    }

    #[test]
    fn udh_8_and_16_bit_references() {
        let ud = [0x05, 0x00, 0x03, 0x2A, 0x03, 0x02, b'h', b'i'];
        assert_eq!(read_parts(0x40, &ud, (None, None, None)), Ok(UserData { concat: c(0x2A, 3, 2), data: b"hi" }));
        let ud = [0x06, 0x08, 0x04, 0x12, 0x34, 0x02, 0x01, b'x'];
        assert_eq!(read_parts(0x43, &ud, (None, None, None)), Ok(UserData { concat: c(0x1234, 2, 1), data: b"x" }));
        // Another IE only: the header comes off, the rest is whole.
        let ud = [0x03, 0x24, 0x01, 0x01, b'y'];
        assert_eq!(read_parts(0x40, &ud, (None, None, None)), Ok(UserData { concat: None, data: b"y" }));
        assert!(matches!(read_parts(0x40, &[0x09, 0x00], (None, None, None)), Err(JoinError::Header(_))));
        // Without UDHI the bytes are text, even if they look like a header.
        assert_eq!(read_parts(0x00, &ud, (None, None, None)), Ok(UserData { concat: None, data: &ud }));
    }

    #[test]
    fn sar_values() {
        assert_eq!(read_parts(0, b"ab", (Some(7), Some(3), Some(3))), Ok(UserData { concat: c(7, 3, 3), data: b"ab" }));
        assert_eq!(read_parts(0, b"ab", (Some(7), None, Some(1))), Err(JoinError::SarIncomplete));
        assert_eq!(read_parts(0, b"ab", (Some(7), Some(2), Some(3))), Err(JoinError::SarNumbers { seq: 3, total: 2 }));
        // One part of one is a whole message.
        assert_eq!(read_parts(0, b"ab", (Some(7), Some(1), Some(1))), Ok(UserData { concat: None, data: b"ab" }));
    }
}
