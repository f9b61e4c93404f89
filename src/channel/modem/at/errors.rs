//! `+CMS ERROR` / `+CME ERROR` codes: a readable reason for each, and whether it is worth retrying.
//!
//! The CMS table follows 3GPP TS 27.005 §3.2.5 (which embeds the RP-cause values of TS 24.011 annex E-2 and the
//! TP-FCS values of TS 23.040 §9.2.3.22); the CME table follows TS 27.007 §9.2 plus vendor codes seen in the field.
//! The tables are Rust data (not loaded at run time), so the build needs nothing outside the crate; a test checks
//! them against the project's `cms-errors.json` (in `tests/data/modem/`).
//!
//! "Temporary" means: the message or command itself is not at fault, so trying again later or on another modem
//! can succeed (network congestion, SIM busy, this modem not registered, missing SMSC on this modem...).
//! "Permanent" means the same request will fail again (barred destination, malformed PDU, unsupported command).
//! Unknown / vendor codes are temporary: the caller must cap its retries anyway.

/// `(code, reason)` for `+CMS ERROR: <code>`, sorted by code.
const CMS: &[(u16, &str)] = &[
    (1, "unassigned (unallocated) number"),
    (8, "operator determined barring"),
    (10, "call barred"),
    (21, "short message transfer rejected"),
    (27, "destination out of service"),
    (28, "unidentified subscriber"),
    (29, "facility rejected"),
    (30, "unknown subscriber"),
    (38, "network out of order"),
    (41, "temporary failure"),
    (42, "congestion"),
    (47, "resources unavailable, unspecified"),
    (50, "requested facility not subscribed"),
    (69, "requested facility not implemented"),
    (81, "invalid short message transfer reference value"),
    (95, "invalid message, unspecified"),
    (96, "invalid mandatory information"),
    (97, "message type non-existent or not implemented"),
    (98, "message not compatible with short message protocol state"),
    (99, "information element non-existent or not implemented"),
    (111, "protocol error, unspecified"),
    (127, "interworking, unspecified"),
    (128, "telematic interworking not supported"),
    (129, "short message type 0 not supported"),
    (130, "cannot replace short message"),
    (143, "unspecified TP-PID error"),
    (144, "data coding scheme (alphabet) not supported"),
    (145, "message class not supported"),
    (159, "unspecified TP-DCS error"),
    (160, "command cannot be actioned"),
    (161, "command unsupported"),
    (175, "unspecified TP-Command error"),
    (176, "TPDU not supported"),
    (192, "SC busy"),
    (193, "no SC subscription"),
    (194, "SC system failure"),
    (195, "invalid SME address"),
    (196, "destination SME barred"),
    (197, "SM rejected - duplicate SM"),
    (198, "TP-VPF not supported"),
    (199, "TP-VP not supported"),
    (208, "(U)SIM SMS storage full"),
    (209, "no SMS storage capability in (U)SIM"),
    (210, "error in MS"),
    (211, "memory capacity exceeded"),
    (212, "(U)SIM application toolkit busy"),
    (213, "(U)SIM data download error"),
    (255, "unspecified error cause"),
    (300, "ME failure"),
    (301, "SMS service of ME reserved"),
    (302, "operation not allowed"),
    (303, "operation not supported"),
    (304, "invalid PDU mode parameter"),
    (305, "invalid text mode parameter"),
    (310, "(U)SIM not inserted"),
    (311, "(U)SIM PIN required"),
    (312, "PH-(U)SIM PIN required"),
    (313, "(U)SIM failure"),
    (314, "(U)SIM busy"),
    (315, "(U)SIM wrong"),
    (316, "(U)SIM PUK required"),
    (317, "(U)SIM PIN2 required"),
    (318, "(U)SIM PUK2 required"),
    (320, "memory failure"),
    (321, "invalid memory index"),
    (322, "memory full"),
    (330, "SMSC address unknown"),
    (331, "no network service"),
    (332, "network timeout"),
    (340, "no +CNMA acknowledgement expected"),
    (500, "unknown error"),
];

/// CMS codes worth retrying later or on another modem (see the module doc).
const CMS_TEMPORARY: &[u16] = &[
    38,  // network out of order
    41,  // temporary failure
    42,  // congestion
    47,  // resources unavailable
    192, // SC busy
    208, // our SIM's SMS storage is full (delete, then retry)
    211, // memory capacity exceeded at the destination: it may have room later
    212, // SIM toolkit busy
    300, // ME failure: this modem
    301, // SMS service of ME reserved
    310, 311, 312, 313, 314, 315, 316, 317, 318, // SIM state of this modem
    320, // memory failure
    322, // memory full
    330, // SMSC address unknown: configuration of this modem
    331, // no network service
    332, // network timeout
    500, // unknown error: the usual answer for network refusals without a cause
];

/// `(code, reason)` for `+CME ERROR: <code>`, sorted by code.
const CME: &[(u16, &str)] = &[
    (0, "phone failure"),
    (1, "no connection to phone"),
    (2, "phone-adaptor link reserved"),
    (3, "operation not allowed"),
    (4, "operation not supported"),
    (5, "PH-SIM PIN required"),
    (6, "PH-FSIM PIN required"),
    (7, "PH-FSIM PUK required"),
    (10, "SIM not inserted"),
    (11, "SIM PIN required"),
    (12, "SIM PUK required"),
    (13, "SIM failure"),
    (14, "SIM busy"),
    (15, "SIM wrong"),
    (16, "incorrect password"),
    (17, "SIM PIN2 required"),
    (18, "SIM PUK2 required"),
    (20, "memory full"),
    (21, "invalid index"),
    (22, "not found"),
    (23, "memory failure"),
    (24, "text string too long"),
    (25, "invalid characters in text string"),
    (26, "dial string too long"),
    (27, "invalid characters in dial string"),
    (30, "no network service"),
    (31, "network timeout"),
    (32, "network not allowed - emergency calls only"),
    (40, "network personalization PIN required"),
    (41, "network personalization PUK required"),
    (42, "network subset personalization PIN required"),
    (43, "network subset personalization PUK required"),
    (44, "service provider personalization PIN required"),
    (45, "service provider personalization PUK required"),
    (46, "corporate personalization PIN required"),
    (47, "corporate personalization PUK required"),
    (48, "hidden key required"),
    (49, "EAP method not supported"),
    (50, "incorrect parameters"),
    (51, "command implemented but currently disabled"),
    (52, "command aborted by user"),
    (53, "not attached to network due to MT functionality restrictions"),
    (54, "modem not allowed - MT restricted to emergency calls only"),
    (55, "operation not allowed because of MT functionality restrictions"),
    (56, "fixed dial number only allowed"),
    (57, "temporarily out of service due to other MT usage"),
    (58, "language/alphabet not supported"),
    (59, "unexpected data value"),
    (60, "system failure"),
    (61, "data missing"),
    (62, "call barred"),
    (63, "message waiting indication subscription failure"),
    (100, "unknown"),
    (103, "illegal MS"),
    (106, "illegal ME"),
    (107, "GPRS services not allowed"),
    (111, "PLMN not allowed"),
    (112, "location area not allowed"),
    (113, "roaming not allowed in this location area"),
    (132, "service option not supported"),
    (133, "requested service option not subscribed"),
    (134, "service option temporarily out of order"),
    (148, "unspecified GPRS error"),
    (149, "PDP authentication failure"),
    (150, "invalid mobile class"),
    (515, "please wait, init or command processing in progress"),
];

/// CME codes worth retrying later or on another modem.
const CME_TEMPORARY: &[u16] = &[
    0, // phone failure
    10, 11, 12, 13, 14, 15, 17, 18,  // SIM state of this modem
    20,  // memory full
    23,  // memory failure
    30,  // no network service
    31,  // network timeout
    32,  // emergency calls only: not registered yet
    57,  // temporarily out of service
    60,  // system failure
    100, // unknown
    134, // service option temporarily out of order
    148, // unspecified GPRS error
    515, // please wait (Wavecom after AT+CFUN=1)
];

const CMS_UNLISTED: &str = "unlisted CMS error code";
const CMS_VENDOR: &str = "manufacturer-specific CMS error";
const CME_UNLISTED: &str = "unlisted CME error code";
const CME_VENDOR: &str = "manufacturer-specific CME error";

fn lookup(table: &'static [(u16, &'static str)], code: u16) -> Option<&'static str> {
    table.binary_search_by_key(&code, |&(c, _)| c).ok().and_then(|i| table.get(i)).map(|&(_, r)| r)
}

/// Readable reason for `+CMS ERROR: <code>`.
pub fn cms_reason(code: u16) -> &'static str {
    lookup(CMS, code).unwrap_or(if code >= 512 { CMS_VENDOR } else { CMS_UNLISTED })
}

/// Readable reason for `+CME ERROR: <code>`.
pub fn cme_reason(code: u16) -> &'static str {
    lookup(CME, code).unwrap_or(if code >= 512 { CME_VENDOR } else { CME_UNLISTED })
}

/// Is `+CMS ERROR: <code>` worth retrying later or on another modem?
pub fn cms_temporary(code: u16) -> bool {
    code >= 512 || CMS_TEMPORARY.contains(&code)
}

/// Is `+CME ERROR: <code>` worth retrying later or on another modem?
pub fn cme_temporary(code: u16) -> bool {
    code >= 512 || CME_TEMPORARY.contains(&code)
}

/// Lower-case, drop "(U)" and squeeze spaces, so "SIM not inserted" matches "(U)SIM not inserted".
fn normalise(text: &str) -> String {
    let lower = text.to_ascii_lowercase().replace("(u)", "");
    lower.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn code_for_text(table: &'static [(u16, &'static str)], text: &str) -> Option<u16> {
    let wanted = normalise(text);
    if wanted.is_empty() {
        return None;
    }
    table.iter().find(|(_, reason)| normalise(reason) == wanted).map(|&(code, _)| code)
}

/// Code for a textual `+CMS ERROR: <text>` (AT+CMEE=2), e.g. "SMSC address unknown" → 330.
pub fn cms_code_for_text(text: &str) -> Option<u16> {
    code_for_text(CMS, text)
}

/// Code for a textual `+CME ERROR: <text>` (AT+CMEE=2), e.g. "SIM not inserted" → 10.
pub fn cme_code_for_text(text: &str) -> Option<u16> {
    code_for_text(CME, text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_sorted_and_unique() {
        for table in [CMS, CME] {
            for pair in table.windows(2) {
                assert!(pair[0].0 < pair[1].0, "table not sorted at {}", pair[1].0);
            }
        }
        for code in CMS_TEMPORARY {
            assert!(lookup(CMS, *code).is_some(), "temporary CMS {code} not in table");
        }
        for code in CME_TEMPORARY {
            assert!(lookup(CME, *code).is_some(), "temporary CME {code} not in table");
        }
    }

    #[test]
    fn known_codes() {
        assert_eq!(cms_reason(38), "network out of order");
        assert!(cms_temporary(38));
        assert_eq!(cms_reason(330), "SMSC address unknown");
        assert_eq!(cms_reason(500), "unknown error");
        assert!(!cms_temporary(1), "unassigned number is permanent");
        assert!(!cms_temporary(304), "a malformed PDU is our bug: permanent");
        assert!(cms_temporary(192));
        assert_eq!(cme_reason(14), "SIM busy");
        assert!(cme_temporary(14));
        assert!(cme_temporary(515));
        assert!(!cme_temporary(4));
    }

    #[test]
    fn unknown_codes() {
        assert_eq!(cms_reason(7), CMS_UNLISTED);
        assert_eq!(cms_reason(600), CMS_VENDOR);
        assert!(cms_temporary(600));
        assert_eq!(cme_reason(999), CME_VENDOR);
        assert_eq!(cme_reason(9), CME_UNLISTED);
        assert_eq!(cms_reason(u16::MAX), CMS_VENDOR);
    }

    #[test]
    fn text_to_code() {
        assert_eq!(cme_code_for_text("SIM not inserted"), Some(10));
        assert_eq!(cme_code_for_text("  sim   NOT inserted "), Some(10));
        assert_eq!(cms_code_for_text("SIM not inserted"), Some(310));
        assert_eq!(cms_code_for_text("unknown error"), Some(500));
        assert_eq!(cms_code_for_text("SMSC address unknown"), Some(330));
        assert_eq!(cme_code_for_text("unknown"), Some(100));
        assert_eq!(cme_code_for_text("no such thing"), None);
        assert_eq!(cme_code_for_text(""), None);
    }

    /// The table in tests/data/modem must agree with ours.
    #[test]
    fn agrees_with_shared_json() {
        // Carried in the repository under tests/data/modem (see the README there).
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/modem/cms-errors.json");
        let text = std::fs::read_to_string(path).expect("read cms-errors.json");
        let json: serde_json::Value = serde_json::from_str(&text).expect("parse cms-errors.json");
        let cms = json["cms_error"].as_object().expect("cms_error object");
        assert_eq!(cms.len(), CMS.len(), "CMS table size differs from the shared file");
        for (code, reason) in cms {
            let code: u16 = code.parse().expect("numeric CMS code");
            assert_eq!(Some(cms_reason(code)), reason.as_str(), "CMS {code}");
        }
        let cme = json["cme_error_common"].as_object().expect("cme_error_common object");
        for (code, reason) in cme {
            let code: u16 = code.parse().expect("numeric CME code");
            let reason = reason.as_str().expect("string reason");
            assert!(reason.starts_with(cme_reason(code)), "CME {code}: ours {:?}, shared {reason:?}", cme_reason(code));
        }
    }
}
