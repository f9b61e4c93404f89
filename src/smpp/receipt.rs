//! Delivery receipts in the text form of SMPP 3.4 appendix B
//! (`id:… sub:… dlvrd:… submit date:… done date:… stat:… err:… text:…`)
//! and the `message_state` values (§5.2.28) with their `stat:` words: one
//! place that writes them (the SMPP server's receipts to accounts, the SMSC
//! simulator's) and reads them (the carrier channel). Read tolerantly:
//! fields in any order or missing, any case.

use crate::message::{Millis, ReceiptStatus, Status};

/// A receipt's fields, as read from or written into its text. The fields
/// besides `id` and `stat` are optional when reading.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReceiptText {
    pub id: String,
    pub sub: Option<String>,
    pub dlvrd: Option<String>,
    /// `YYMMDDhhmm` (see [`date`]).
    pub submit_date: Option<String>,
    pub done_date: Option<String>,
    /// The `stat:` word (upper-cased when read), e.g. `DELIVRD`.
    pub stat: String,
    /// The `err:` code as sent, if any.
    pub err: Option<String>,
    /// The start of the message's text, if given; it runs to the end.
    pub text: Option<String>,
}

/// Field names that end the value before them (`submit date` and `done
/// date` contain a space, so values are cut at the next known name).
const FIELDS: [&str; 8] = ["id:", "sub:", "dlvrd:", "submit date:", "done date:", "stat:", "err:", "text:"];

/// The receipt text of `r`, its fields in appendix B's order (a missing
/// optional field written empty).
pub fn build(r: &ReceiptText) -> String {
    let o = |v: &Option<String>| v.clone().unwrap_or_default();
    format!(
        "id:{} sub:{} dlvrd:{} submit date:{} done date:{} stat:{} err:{} text:{}",
        r.id,
        o(&r.sub),
        o(&r.dlvrd),
        o(&r.submit_date),
        o(&r.done_date),
        r.stat,
        o(&r.err),
        o(&r.text)
    )
}

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
        Some(text.get(begin..end)?.trim().to_string()).filter(|v| !v.is_empty())
    };
    Some(ReceiptText {
        id: value("id:")?,
        sub: value("sub:"),
        dlvrd: value("dlvrd:"),
        submit_date: value("submit date:"),
        done_date: value("done date:"),
        stat: value("stat:").unwrap_or_default().to_ascii_uppercase(),
        err: value("err:"),
        text: value("text:"),
    })
}

/// The `text:` field for a message: its first 20 characters, each kept
/// only if it reads the same in ASCII and in the GSM default alphabet (the
/// receipt goes with `data_coding` 0), else `?`.
pub fn text_head(text: &str) -> String {
    let plain = |c: char| c == ' ' || c.is_ascii_graphic() && !"$@[\\]^_`{|}~".contains(c);
    text.chars().take(20).map(|c| if plain(c) { c } else { '?' }).collect()
}

/// `YYMMDDhhmm` in UTC, as receipts write their dates.
pub fn date(ms: Millis) -> String {
    chrono::DateTime::from_timestamp_millis(ms).map(|t| t.format("%y%m%d%H%M").to_string()).unwrap_or_default()
}

/// `message_state` values (SMPP 3.4 §5.2.28).
pub const ENROUTE: u8 = 1;
pub const DELIVERED: u8 = 2;
pub const EXPIRED: u8 = 3;
pub const DELETED: u8 = 4;
pub const UNDELIVERABLE: u8 = 5;
pub const ACCEPTED: u8 = 6;
pub const UNKNOWN: u8 = 7;
pub const REJECTED: u8 = 8;

/// The `message_state` of a message in `status`: not final is ENROUTE;
/// `failed` (refused before the network had it, a set of parts never
/// completed) and `suppressed` are REJECTED; `undelivered` (the network
/// said no) UNDELIVERABLE; `cancelled` DELETED.
pub fn message_state(status: Status) -> u8 {
    match status {
        Status::Queued | Status::Sending | Status::Submitted => ENROUTE,
        Status::Delivered => DELIVERED,
        Status::Expired => EXPIRED,
        Status::Cancelled => DELETED,
        Status::Undelivered => UNDELIVERABLE,
        Status::Failed | Status::Suppressed => REJECTED,
    }
}

/// The appendix-B `stat:` word of a `message_state`.
pub fn stat_word(state: u8) -> &'static str {
    match state {
        ENROUTE => "ENROUTE",
        DELIVERED => "DELIVRD",
        EXPIRED => "EXPIRED",
        DELETED => "DELETED",
        UNDELIVERABLE => "UNDELIV",
        ACCEPTED => "ACCEPTD",
        REJECTED => "REJECTD",
        _ => "UNKNOWN",
    }
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

/// The final state a `message_state` TLV value means.
pub fn message_state_status(state: u8) -> Option<ReceiptStatus> {
    match state {
        DELIVERED => Some(ReceiptStatus::Delivered),
        EXPIRED => Some(ReceiptStatus::Expired),
        DELETED | UNDELIVERABLE | REJECTED => Some(ReceiptStatus::Undelivered),
        _ => None, // enroute, accepted, unknown
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn short(id: &str, stat: &str, err: Option<&str>) -> ReceiptText {
        ReceiptText { id: id.into(), stat: stat.into(), err: err.map(Into::into), ..ReceiptText::default() }
    }

    #[test]
    fn standard_receipt() {
        let r = parse("id:0123456789 sub:001 dlvrd:001 submit date:2611231200 done date:2611231201 stat:DELIVRD err:000 text:Hello world")
            .unwrap();
        assert_eq!(
            r,
            ReceiptText {
                id: "0123456789".into(),
                sub: Some("001".into()),
                dlvrd: Some("001".into()),
                submit_date: Some("2611231200".into()),
                done_date: Some("2611231201".into()),
                stat: "DELIVRD".into(),
                err: Some("000".into()),
                text: Some("Hello world".into()),
            }
        );
        assert_eq!(stat_status(&r.stat), Some(ReceiptStatus::Delivered));
        assert_eq!(parse(&build(&r)), Some(r));
    }

    #[test]
    fn variants_carriers_send() {
        // Lower case, fields missing, another order, text containing a field name.
        let r = parse("stat:undeliv id:ab12CD err:034 text:id:fake stat:DELIVRD").unwrap();
        assert_eq!((r.id.as_str(), r.stat.as_str(), r.err.as_deref()), ("ab12CD", "UNDELIV", Some("034")));
        let r = parse("ID:77 STAT:EXPIRED").unwrap();
        assert_eq!(r, short("77", "EXPIRED", None));
        assert_eq!(stat_status(&r.stat), Some(ReceiptStatus::Expired));
        assert!(parse("stat:DELIVRD err:000").is_none());
        assert!(parse("").is_none());
        assert_eq!(stat_status("ENROUTE"), None);
        assert_eq!(stat_status("REJECTD"), Some(ReceiptStatus::Undelivered));
    }

    #[test]
    fn states_and_words() {
        assert_eq!(message_state_status(2), Some(ReceiptStatus::Delivered));
        assert_eq!(message_state_status(5), Some(ReceiptStatus::Undelivered));
        assert_eq!(message_state_status(1), None);
        assert_eq!(date(0), "7001010000");
        // 2024-02-29 13:45:00 UTC
        assert_eq!(date(1_709_214_300_000), "2402291345");
        // Every final status's word reads back as the state it was written for.
        for s in [Status::Delivered, Status::Expired, Status::Undelivered, Status::Failed, Status::Cancelled] {
            let state = message_state(s);
            assert_eq!(stat_status(stat_word(state)), message_state_status(state), "{s:?}");
        }
        assert_eq!(stat_word(message_state(Status::Failed)), "REJECTD");
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

        fn field() -> impl Strategy<Value = Option<String>> {
            prop::option::of("[0-9]{1,10}")
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

            /// What `build` writes, `parse` reads back as it was.
            #[test]
            fn parse_reads_what_build_writes(
                id in "[0-9A-Za-z]{1,20}",
                sub in field(), dlvrd in field(), submit_date in field(), done_date in field(), err in field(),
                stat in prop::sample::select(vec!["DELIVRD", "EXPIRED", "DELETED", "UNDELIV", "ACCEPTD", "UNKNOWN", "REJECTD"]),
                text in prop::option::of("[^\\s\\p{C}]([^\\p{C}]{0,18}[^\\s\\p{C}])?"),
            ) {
                let r = ReceiptText { id, sub, dlvrd, submit_date, done_date, stat: stat.to_string(), err, text };
                prop_assert_eq!(parse(&build(&r)), Some(r));
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
                let r = parse(&body).unwrap();
                prop_assert_eq!(short(&r.id, &r.stat, r.err.as_deref()), short(&id, &stat.to_ascii_uppercase(), err.as_deref()));
                prop_assert_eq!(r.submit_date.as_deref(), Some("2611231200"));
            }
        }
    }
}
