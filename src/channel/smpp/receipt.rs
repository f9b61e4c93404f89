//! Delivery receipts in the text form of SMPP 3.4 appendix B
//! (`id:… sub:… dlvrd:… submit date:… done date:… stat:… err:… text:…`),
//! read tolerantly: fields in any order or missing, any case, and the ids
//! carriers write in hex or decimal.

use crate::message::ReceiptStatus;

/// What a receipt says, whichever form it came in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptText {
    pub id: String,
    /// The `stat:` word as sent (upper-cased), e.g. `DELIVRD`.
    pub stat: String,
    /// The `err:` code as sent, if any.
    pub err: Option<String>,
}

/// Field names that end the value before them (`submit date` and `done
/// date` contain a space, so values are cut at the next known name).
const FIELDS: [&str; 8] = ["id:", "sub:", "dlvrd:", "submit date:", "done date:", "stat:", "err:", "text:"];

/// Parse a receipt body. `None` when there is no `id:`.
pub fn parse(text: &str) -> Option<ReceiptText> {
    let lower = text.to_ascii_lowercase();
    // Start of each known field, in the order they appear.
    let mut starts: Vec<(usize, &str)> = Vec::new();
    for f in FIELDS {
        let mut from = 0;
        while let Some(pos) = lower[from..].find(f) {
            let at = from + pos;
            // A field name starts the text or follows a space (so "sub:" is
            // not found inside "xsub:").
            if at == 0 || lower.as_bytes()[at - 1] == b' ' {
                starts.push((at, f));
                break;
            }
            from = at + f.len();
        }
    }
    starts.sort();
    let value = |name: &str| -> Option<String> {
        let i = starts.iter().position(|(_, f)| *f == name)?;
        let begin = starts[i].0 + name.len();
        let end = if name == "text:" { text.len() } else { starts.get(i + 1).map_or(text.len(), |s| s.0) };
        Some(text.get(begin..end)?.trim().to_string())
    };
    let id = value("id:").filter(|v| !v.is_empty())?;
    let stat = value("stat:").unwrap_or_default().to_ascii_uppercase();
    let err = value("err:").filter(|v| !v.is_empty());
    Some(ReceiptText { id, stat, err })
}

/// The final state a `stat:` word means; `None` for states that are not
/// final (`ENROUTE`, `ACCEPTD`, `UNKNOWN`, anything else).
pub fn stat_status(stat: &str) -> Option<ReceiptStatus> {
    match stat.to_ascii_uppercase().as_str() {
        "DELIVRD" | "DELIVERED" => Some(ReceiptStatus::Delivered),
        "EXPIRED" => Some(ReceiptStatus::Expired),
        "UNDELIV" | "UNDELIVERABLE" | "REJECTD" | "REJECTED" | "DELETED" | "FAILED" => Some(ReceiptStatus::Undelivered),
        _ => None,
    }
}

/// The final state a `message_state` TLV value means (SMPP 3.4 §5.2.28).
pub fn message_state_status(state: u8) -> Option<ReceiptStatus> {
    match state {
        2 => Some(ReceiptStatus::Delivered),
        3 => Some(ReceiptStatus::Expired),
        4 | 5 | 8 => Some(ReceiptStatus::Undelivered), // deleted, undeliverable, rejected
        _ => None,                                     // enroute, accepted, unknown
    }
}

/// How a carrier writes message ids: the receipt's id is compared in the
/// form the carrier used in `submit_sm_resp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdForm {
    /// Compare as sent (after trimming and ignoring case and leading zeros).
    Same,
    /// `submit_sm_resp` gives hex, receipts give decimal.
    HexInResp,
    /// `submit_sm_resp` gives decimal, receipts give hex.
    DecimalInResp,
}

/// The canonical form of an id from `submit_sm_resp`.
pub fn canonical_resp_id(id: &str) -> String {
    normalise(id)
}

/// The id a receipt names, brought to the form `submit_sm_resp` used.
pub fn canonical_receipt_id(id: &str, form: IdForm) -> String {
    let id = id.trim();
    let converted = match form {
        IdForm::Same => None,
        IdForm::HexInResp => id.parse::<u128>().ok().map(|n| format!("{n:x}")),
        IdForm::DecimalInResp => u128::from_str_radix(id, 16).ok().map(|n| n.to_string()),
    };
    normalise(converted.as_deref().unwrap_or(id))
}

fn normalise(id: &str) -> String {
    let lower = id.trim().to_ascii_lowercase();
    let stripped = lower.trim_start_matches('0');
    if stripped.is_empty() && !lower.is_empty() { "0".into() } else { stripped.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_receipt() {
        let r = parse("id:0123456789 sub:001 dlvrd:001 submit date:2611231200 done date:2611231201 stat:DELIVRD err:000 text:Hello world")
            .unwrap();
        assert_eq!(r, ReceiptText { id: "0123456789".into(), stat: "DELIVRD".into(), err: Some("000".into()) });
        assert_eq!(stat_status(&r.stat), Some(ReceiptStatus::Delivered));
    }

    #[test]
    fn variants_carriers_send() {
        // Lower case, fields missing, another order, text containing a field name.
        let r = parse("stat:undeliv id:ab12CD err:034 text:id:fake stat:DELIVRD").unwrap();
        assert_eq!((r.id.as_str(), r.stat.as_str(), r.err.as_deref()), ("ab12CD", "UNDELIV", Some("034")));
        let r = parse("ID:77 STAT:EXPIRED").unwrap();
        assert_eq!((r.id.as_str(), r.err), ("77", None));
        assert_eq!(stat_status(&r.stat), Some(ReceiptStatus::Expired));
        assert!(parse("stat:DELIVRD err:000").is_none());
        assert!(parse("").is_none());
        assert_eq!(stat_status("ENROUTE"), None);
        assert_eq!(stat_status("REJECTD"), Some(ReceiptStatus::Undelivered));
    }

    #[test]
    fn ids_compare_across_forms() {
        assert_eq!(canonical_resp_id("000A1F"), canonical_receipt_id("a1f", IdForm::Same));
        assert_eq!(canonical_resp_id("a1f"), canonical_receipt_id("2591", IdForm::HexInResp));
        assert_eq!(canonical_resp_id("2591"), canonical_receipt_id("A1F", IdForm::DecimalInResp));
        assert_ne!(canonical_resp_id("10"), canonical_receipt_id("16", IdForm::Same));
        assert_eq!(canonical_resp_id("0"), "0");
    }

    #[test]
    fn message_states() {
        assert_eq!(message_state_status(2), Some(ReceiptStatus::Delivered));
        assert_eq!(message_state_status(5), Some(ReceiptStatus::Undelivered));
        assert_eq!(message_state_status(1), None);
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        /// Receipt-like text: field names, values and separators in any order and case.
        fn receipt_like() -> impl Strategy<Value = String> {
            let piece = prop::sample::select(vec![
                "id:",
                "ID:",
                "sub:",
                "dlvrd:",
                "submit date:",
                "done date:",
                "stat:",
                "err:",
                "text:",
                " ",
                "  ",
                "x",
                "0123",
                "DELIVRD",
                "é",
                "Ж",
                ":",
            ]);
            prop::collection::vec(piece, 0..16).prop_map(|p| p.concat())
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

            #[test]
            fn parsing_never_panics(text in prop_oneof![receipt_like(), "\\PC{0,120}"]) {
                if let Some(r) = parse(&text) {
                    prop_assert!(!r.id.is_empty());
                    prop_assert!(text.contains(r.id.as_str()));
                }
            }

            /// A receipt written as appendix B has it, its fields in any order (`text:` last, as
            /// it runs to the end) and any text, reads back as written.
            #[test]
            fn a_formatted_receipt_reads_back(
                id in "[0-9A-Za-z]{1,20}",
                stat in prop::sample::select(vec!["DELIVRD", "EXPIRED", "DELETED", "UNDELIV", "ACCEPTD", "UNKNOWN", "REJECTD", "enroute"]),
                err in prop::option::of("[0-9]{3}"),
                order in Just((0..7).collect::<Vec<usize>>()).prop_shuffle(),
                text in "\\PC{0,20}",
            ) {
                let fields = [
                    format!("id:{id}"),
                    "sub:001".to_string(),
                    "dlvrd:001".to_string(),
                    "submit date:2611231200".to_string(),
                    "done date:2611231201".to_string(),
                    format!("stat:{stat}"),
                    err.as_ref().map_or("err:".to_string(), |e| format!("err:{e}")),
                ];
                let mut body: Vec<&str> = order.iter().map(|&i| fields[i].as_str()).collect();
                let text = format!("text:{text}");
                body.push(&text);
                let body = body.join(" ");
                prop_assert_eq!(parse(&body), Some(ReceiptText { id, stat: stat.to_ascii_uppercase(), err }));
            }
        }
    }
}
