//! A carrier's receipt ids: the id a receipt names compared with the one
//! `submit_sm_resp` gave, in the hex or decimal form each carrier writes.
//! The receipt text itself is read by the shared `smpp::receipt`.

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
    fn ids_compare_across_forms() {
        assert_eq!(canonical_resp_id("000A1F"), canonical_receipt_id("a1f", IdForm::Same));
        assert_eq!(canonical_resp_id("a1f"), canonical_receipt_id("2591", IdForm::HexInResp));
        assert_eq!(canonical_resp_id("2591"), canonical_receipt_id("A1F", IdForm::DecimalInResp));
        assert_ne!(canonical_resp_id("10"), canonical_receipt_id("16", IdForm::Same));
        assert_eq!(canonical_resp_id("0"), "0");
    }
}
