//! How a part sent through a modem is named, so that its status report
//! finds it: by SIM, TP-MR, recipient and modem, and the older form
//! without the modem.

/// How a part is named for its status report: the SIM, the reference the
/// modem gave it, the recipient and the modem (two SIMs may report the same
/// IMSI). References wrap at 256, so the name comes round again; the
/// report's network time tells those apart.
pub fn remote_id(imsi: &str, imei: &str, mr: u8, to: &str) -> String {
    format!("{}:{imei}", legacy_remote_id(imsi, mr, to))
}

/// The name parts had before the modem was part of it: still matched, so a
/// part sent before an upgrade gets its report.
pub fn legacy_remote_id(imsi: &str, mr: u8, to: &str) -> String {
    format!("{imsi}:{mr}:{}", to.trim_start_matches('+'))
}

/// The SIM (IMSI, or the port when the SIM gave none) a part went out from,
/// in either form of its name.
pub fn sender_of(remote_id: &str) -> &str {
    remote_id.split(':').next().unwrap_or(remote_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_ids_name_sim_reference_recipient_and_modem() {
        let id = remote_id("250011234567890", "867856030456784", 7, "+79161234567");
        assert_eq!(id, "250011234567890:7:79161234567:867856030456784");
        assert_eq!(legacy_remote_id("250011234567890", 7, "+79161234567"), "250011234567890:7:79161234567");
        // Caps restored after a restart find the SIM in either form.
        assert_eq!(sender_of(&id), "250011234567890");
        assert_eq!(sender_of("250011234567890:7:79161234567"), "250011234567890");
    }
}
