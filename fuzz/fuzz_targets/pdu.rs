//! What the two PDU targets share: the input as a modem would hand it over (hex behind an SMSC
//! part, with or without a header length), and as a bare TPDU of the message type under test.

use smsgw::sms::pdu::{decode, decode_from_modem};

/// Decode `data` every way the modem route does; `mti` is forced into the bare TPDU's first
/// octet so that most inputs reach the fields of that message type.
pub fn run(data: &[u8], mti: u8) {
    let hex: String = data.iter().map(|b| format!("{b:02X}")).collect();
    let skip = 1 + usize::from(data.first().copied().unwrap_or(0));
    let _ = decode(&hex, true);
    // A header length that counts the TPDU alone, one that counts the SMSC part too, none.
    for len in [Some(data.len().saturating_sub(skip)), Some(data.len()), None] {
        let _ = decode_from_modem(&hex, len);
    }
    // The TPDU behind the SMSC part, with the message type under test.
    if let Some(tpdu) = data.get(skip..).filter(|t| !t.is_empty()) {
        let mut tpdu = tpdu.to_vec();
        tpdu[0] = tpdu[0] & !0x03 | mti;
        let hex: String = tpdu.iter().map(|b| format!("{b:02x}")).collect();
        let _ = decode(&hex, false);
    }
    // And the input as text, for the hex reader itself.
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = decode(text, true);
    }
}
