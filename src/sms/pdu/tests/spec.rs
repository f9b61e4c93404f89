//! Vectors worked out by hand from TS 23.040 and TS 23.038; each comment shows the derivation.

use super::*;
use crate::sms::text::split;

fn gsm(parts: &[&str]) -> Plan {
    Plan { encoding: Encoding::Gsm7, parts: parts.iter().map(|p| p.to_string()).collect() }
}

fn ucs2(parts: &[&str]) -> Plan {
    Plan { encoding: Encoding::Ucs2, parts: parts.iter().map(|p| p.to_string()).collect() }
}

fn hexes(pdus: &[SubmitPdu]) -> Vec<(&str, usize)> {
    pdus.iter().map(|p| (p.hex.as_str(), p.tpdu_len)).collect()
}

#[test]
fn packs_septets_lsb_first() {
    // TS 23.038 §6.1.2.1.1: septet n goes to bit 7n; "hellohello" is the classic 10 → 9 example.
    let septets = text::encode_gsm7_unpacked("hellohello").unwrap();
    assert_eq!(to_hex(&pack_septets(&septets, 0)), "E8329BFD4697D9EC37");
    assert_eq!(unpack_septets(&pack_septets(&septets, 0), 0, 10), septets);
    // "Test1": T=54 e=65 s=73 t=74 1=31 → D4 F2 9C 1E 03 (worked bit by bit).
    assert_eq!(to_hex(&pack_septets(&[0x54, 0x65, 0x73, 0x74, 0x31], 0)), "D4F29C1E03");
    // 8 septets fill 7 octets exactly; 7 septets leave 7 zero bits in the 7th octet.
    assert_eq!(pack_septets(&[0x7F; 8], 0), [0xFF; 7]);
    assert_eq!(pack_septets(&[0x7F; 7], 0), [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]);
    // One fill bit: 'a' (0x61) after a 6-octet header starts at bit 1 → 0xC2.
    assert_eq!(pack_septets(&[0x61], 1), [0xC2]);
    assert_eq!(unpack_septets(&[0xC2], 1, 1), [0x61]);
    assert_eq!(pack_septets(&[], 0), Vec::<u8>::new());
}

#[test]
fn encodes_single_gsm_submit() {
    // 01 SMS-SUBMIT, MR 00, DA 0B 91 (11 digits, international) 72 38 88 09 00 F1, PID 00,
    // DCS 00, UDL 0A, packed text.
    let pdus = encode_submit("+27838890001", &split("hellohello"), &SubmitOptions::default()).unwrap();
    assert_eq!(hexes(&pdus), [("0001000B917238880900F100000AE8329BFD4697D9EC37", 22)]);
}

#[test]
fn encodes_concatenated_gsm_with_fill_bit() {
    // 41 = SUBMIT + UDHI; DA 04 91 21 43; UDL 8 = 7 septets of header (6 octets + 1 fill bit) + 1;
    // UDH 05 00 03 2A 02 0n; 'a' → C2, 'b' (0x62) → C4.
    let pdus = encode_submit("+1234", &gsm(&["a", "b"]), &options(0, 0x2A)).unwrap();
    assert_eq!(hexes(&pdus), [("004100049121430000080500032A0201C2", 16), ("004100049121430000080500032A0202C4", 16)]);
}

#[test]
fn encodes_ucs2_surrogate_pair_national_with_options() {
    // 31 = SUBMIT + VPF relative + SRR; MR 05; DA 0B 81 (national) 98 61 21 43 65 F7; PID 00;
    // DCS 08; VP 0B (60 min = (11 + 1) × 5); UDL 04; U+1F600 = D83D DE00.
    let opts = SubmitOptions { message_ref: 5, status_report: true, validity_minutes: Some(60), concat_ref: 0 };
    let pdus = encode_submit("89161234567", &ucs2(&["😀"]), &opts).unwrap();
    assert_eq!(hexes(&pdus), [("0031050B819861214365F700080B04D83DDE00", 18)]);
    assert_eq!(submit("0031050B819861214365F700080B04D83DDE00").validity_minutes, Some(60));
}

#[test]
fn relative_validity_rounds_up() {
    let cases = [
        (0, 0),
        (1, 0),
        (5, 0),
        (6, 1),
        (60, 11),
        (720, 143),
        (721, 144),
        (750, 144),
        (751, 145),
        (1440, 167),
        (1441, 168),
        (2880, 168),
        (2881, 169),
        (43200, 196),
        (43201, 197),
        (50400, 197),
        (50401, 198),
        (635040, 255),
        (635041, 255),
        (u32::MAX, 255),
    ];
    for (minutes, vp) in cases {
        assert_eq!(relative_validity(minutes), vp, "{minutes} min");
    }
    // Never shorter than asked: check every minute up to 64 weeks against the TS table.
    for (vp, minutes) in [(0, 5), (143, 720), (144, 750), (167, 1440), (168, 2880), (196, 43200), (197, 50400)] {
        assert_eq!(relative_validity_minutes(vp), minutes, "TP-VP {vp}");
    }
    let period = |vp: u32| relative_validity_minutes(vp as u8);
    for minutes in (0..=64 * 10080).step_by(7) {
        let vp = u32::from(relative_validity(minutes));
        if minutes <= 635040 {
            assert!(period(vp) >= minutes, "{minutes}");
            assert!(vp == 0 || period(vp - 1) < minutes, "{minutes} not the smallest");
        } else {
            assert_eq!(vp, 255);
        }
    }
}

#[test]
fn decodes_alphanumeric_sender_and_negative_zone() {
    // SMSC 00; 04 DELIVER; OA 09 semi-octets, D0 alphanumeric, "Test1"; PID 00; DCS 00;
    // SCTS 24-01-15 10:20:30, zone 09 = sign bit + 1 ten, 0 units → −10 quarters = −02:30;
    // UDL 02 "Hi" = 48 69 → C8 34.
    let d = deliver("000409D0D4F29C1E03000042105101020309 02C834".replace(' ', "").as_str());
    assert_eq!(d.smsc, None);
    assert_eq!(d.sender, Address { kind: AddressKind::Alphanumeric, value: "Test1".into() });
    assert_eq!(d.timestamp, time("2024-01-15T10:20:30-02:30"));
    assert_eq!((d.text.as_str(), d.encoding, d.concat, d.pid, d.dcs), ("Hi", DataEncoding::Gsm7, None, 0, 0));
}

#[test]
fn decodes_time_zones() {
    let at = |zone: &str| deliver(&format!("0004048121430000421051010203{zone}00")).timestamp;
    assert_eq!(at("00"), time("2024-01-15T10:20:30+00:00"));
    assert_eq!(at("80"), time("2024-01-15T10:20:30+02:00")); // 0 tens, 8 units
    assert_eq!(at("22"), time("2024-01-15T10:20:30+05:30")); // 22 quarters
    assert_eq!(at("32"), time("2024-01-15T10:20:30+05:45")); // 23 quarters
    assert_eq!(at("55"), time("2024-01-15T10:20:30+13:45")); // 55 quarters
    assert_eq!(at("08"), time("2024-01-15T10:20:30-00:00")); // sign bit alone
    assert_eq!(at("29"), time("2024-01-15T10:20:30-03:00")); // −12
    assert_eq!(at("0A"), time("2024-01-15T10:20:30-05:00")); // −20
    assert_eq!(at("4A"), time("2024-01-15T10:20:30-06:00")); // −24
    // Not BCD: a units digit of 0xA in the zone, a month 13, a 30th of February.
    let zone = decode("0004048121430000421051010203A000", true);
    assert_eq!(zone, Err(PduError::Invalid { field: "TP-SCTS", at: 14, reason: "0xA0 is not two BCD digits".into() }));
    let month = decode("00040481214300004A1A51010203000000", true);
    assert_eq!(month, Err(PduError::Invalid { field: "TP-SCTS", at: 8, reason: "0x4A is not two BCD digits".into() }));
    let feb30 = decode("00040481214300004220030102030000", true);
    assert_eq!(
        feb30,
        Err(PduError::Invalid { field: "TP-SCTS", at: 8, reason: "no such time: 42200301020300".into() })
    );
    let month13 = decode("00040481214300004231510102030000", true);
    assert_eq!(
        month13,
        Err(PduError::Invalid { field: "TP-SCTS", at: 8, reason: "no such time: 42315101020300".into() })
    );
}

#[test]
fn decodes_16_bit_concat_skipping_other_ies_with_fill_bits() {
    // 44 DELIVER + UDHI (+ MMS bit, ignored); OA 04 81 "1234"; SCTS 1999-03-29 15:16:59 +02:00;
    // UDL 0F = 13 header septets (11 octets + 3 fill bits) + 2; UDH 0A: IE 08 04 1234 03 02
    // (16-bit concatenation) and IE 0A 02 0005 (text formatting, skipped); "Hi" at bit 91
    // → 40 A6 01.
    let d = deliver("0044048121430000993092516195800F0A0804123403020A02000540A601");
    assert_eq!(d.concat, Some(Concat { reference: 0x1234, total: 3, seq: 2 }));
    assert_eq!(d.text, "Hi");
    assert_eq!(d.sender, Address { kind: AddressKind::National, value: "1234".into() });
    assert_eq!(d.timestamp, time("1999-03-29T15:16:59+02:00"));
}

#[test]
fn concat_ie_rules() {
    // 8-bit data so the header is easy to write: 0x04 DCS, UDL counts octets.
    let concat = |udh: &str| {
        let udl = udh.len() / 2 + 1;
        deliver(&format!("0044048121430004421051010203000{udl:X}{udh}AB")).concat
    };
    let c = |reference, total, seq| Some(Concat { reference, total, seq });
    assert_eq!(concat("050003C30101"), c(0xC3, 1, 1));
    assert_eq!(concat("0500030A0000"), None); // total 0: ignore the IE
    assert_eq!(concat("0500030A0200"), None); // part 0
    assert_eq!(concat("0500030A0203"), None); // part 3 of 2
    assert_eq!(concat("0400020102"), None); // wrong IE length: not a concatenation IE
    assert_eq!(concat("0A00030102010003020202"), c(2, 2, 2)); // repeated: the last counts
    assert_eq!(concat("00"), None); // empty header
    let d = deliver("00440481214300044210510102030007050003C30201AB");
    assert_eq!((d.text.as_str(), d.encoding, d.concat), ("AB", DataEncoding::Binary, c(0xC3, 2, 1)));
}

#[test]
fn decodes_status_report_with_optional_parameters() {
    // SMSC 07 91 +27381000015; 06 STATUS-REPORT (+ MMS); MR 2A; RA 0B 91 +27838890001;
    // SCTS 2024-01-15 10:20:30 −02:30; DT 11:20:30 −03:00; ST 46; then TP-PI 03 with PID 00 and
    // DCS 00, which are not needed.
    let r = report("07917283010010F5062A0B917238880900F1421051010203094210511102032946030000");
    assert_eq!(
        r,
        StatusReport {
            smsc: Some("+27381000015".into()),
            message_ref: 42,
            recipient: Address { kind: AddressKind::International, value: "+27838890001".into() },
            submitted: time("2024-01-15T10:20:30-02:30"),
            discharged: time("2024-01-15T11:20:30-03:00"),
            status: 0x46,
        }
    );
    assert_eq!(report_outcome(r.status), ReportOutcome::Expired);
    assert_eq!(status_text(r.status), "validity period expired");
    // The bare TPDU (with_smsc = false) decodes the same apart from the SMSC.
    let bare = decode("062A0B917238880900F14210510102030942105111020329460300", false);
    assert_eq!(bare, Ok(Pdu::StatusReport(StatusReport { smsc: None, ..r })));
}

#[test]
fn report_outcomes_and_texts() {
    let cases = [
        (0x00, ReportOutcome::Delivered, "received by the recipient"),
        (0x01, ReportOutcome::Delivered, "forwarded to the recipient, delivery not confirmed by the SC"),
        (0x02, ReportOutcome::Delivered, "replaced by the SC"),
        (0x1F, ReportOutcome::Delivered, "completed (SC-specific code)"),
        (0x20, ReportOutcome::Pending, "congestion; SC still trying"),
        (0x21, ReportOutcome::Pending, "recipient busy; SC still trying"),
        (0x3F, ReportOutcome::Pending, "temporary error (SC-specific code); SC still trying"),
        (0x40, ReportOutcome::Failed, "remote procedure error"),
        (0x43, ReportOutcome::Failed, "not obtainable"),
        (0x45, ReportOutcome::Failed, "no interworking available"),
        (0x46, ReportOutcome::Expired, "validity period expired"),
        (0x47, ReportOutcome::Failed, "deleted by the sender"),
        (0x49, ReportOutcome::Failed, "message does not exist in the SC"),
        (0x4A, ReportOutcome::Failed, "permanent error (reserved code)"),
        (0x5F, ReportOutcome::Failed, "permanent error (SC-specific code)"),
        (0x60, ReportOutcome::Failed, "congestion; SC gave up"),
        (0x62, ReportOutcome::Failed, "no response from recipient; SC gave up"),
        (0x7F, ReportOutcome::Failed, "temporary error (SC-specific code); SC gave up"),
        (0x80, ReportOutcome::Failed, "reserved status code"),
        (0xFF, ReportOutcome::Failed, "reserved status code"),
    ];
    for (status, outcome, text) in cases {
        assert_eq!((report_outcome(status), status_text(status)), (outcome, text), "{status:#04X}");
    }
}

#[test]
fn data_coding_schemes() {
    use DataEncoding::{Binary, Gsm7, Ucs2};
    let cases = [
        (0x00, Some(Gsm7), None),
        (0x04, Some(Binary), None),
        (0x08, Some(Ucs2), None),
        (0x0C, Some(Gsm7), None), // reserved alphabet
        (0x10, Some(Gsm7), Some(0)),
        (0x11, Some(Gsm7), Some(1)),
        (0x16, Some(Binary), Some(2)),
        (0x1B, Some(Ucs2), Some(3)),
        (0x20, None, None),       // compressed
        (0x39, None, Some(1)),    // compressed, class 1
        (0x48, Some(Ucs2), None), // automatic deletion group
        (0x80, Some(Gsm7), None), // reserved group
        (0xC0, Some(Gsm7), None), // message waiting, discard
        (0xD8, Some(Gsm7), None), // message waiting, store
        (0xE0, Some(Ucs2), None), // message waiting, store, UCS-2
        (0xF0, Some(Gsm7), Some(0)),
        (0xF1, Some(Gsm7), Some(1)),
        (0xF5, Some(Binary), Some(1)),
        (0xF6, Some(Binary), Some(2)),
        (0xF9, Some(Gsm7), Some(1)), // bit 3 reserved, ignored
        (0xFB, Some(Gsm7), Some(3)),
        (0xFF, Some(Binary), Some(3)),
    ];
    for (dcs, encoding, class) in cases {
        assert_eq!((data_encoding(dcs), message_class(dcs)), (encoding, class), "{dcs:#04X}");
    }
    // The same user data read under three alphabets.
    let with = |dcs: &str, ud: &str| deliver(&format!("00040481214300{dcs}42105101020300{ud}"));
    let d = with("08", "06041F0440D83D");
    assert_eq!((d.text.as_str(), d.encoding), ("Пр\u{FFFD}", DataEncoding::Ucs2)); // lone surrogate
    let d = with("08", "04D83DDE00");
    assert_eq!(d.text, "😀");
    let d = with("F6", "03C0FFEE");
    assert_eq!((d.text.as_str(), d.encoding), ("C0FFEE", DataEncoding::Binary));
    let d = with("10", "02C834");
    assert_eq!((d.text.as_str(), d.encoding, message_class(d.dcs)), ("Hi", DataEncoding::Gsm7, Some(0)));
    assert_eq!(
        decode("0004048121430020421051010203000148", true),
        Err(PduError::Unsupported { field: "TP-DCS", at: 7, reason: "0x20 marks compressed user data".into() })
    );
}

#[test]
fn addresses() {
    let sender = |oa: &str| deliver(&format!("0004{oa}00004210510102030000")).sender;
    let a = |kind, value: &str| Address { kind, value: value.into() };
    assert_eq!(sender("0B917238880900F1"), a(AddressKind::International, "+27838890001"));
    assert_eq!(sender("0C917238880900F1"), a(AddressKind::International, "+27838890001")); // F counted
    assert_eq!(sender("0BA17238880900F1"), a(AddressKind::National, "27838890001")); // TON national
    assert_eq!(sender("05852122F0"), a(AddressKind::National, "12220")); // unknown TON, SC plan
    assert_eq!(sender("0681A1B2C3"), a(AddressKind::National, "1*2#3a")); // low semi-octet first
    assert_eq!(sender("0091"), a(AddressKind::International, ""));
    assert_eq!(sender("0081"), a(AddressKind::National, ""));
    assert_eq!(sender("09D0D4F29C1E03"), a(AddressKind::Alphanumeric, "Test1")); // 35 bits: 9 semi-octets
    assert_eq!(sender("07D0D4F29C0E"), a(AddressKind::Alphanumeric, "Test")); // 28 bits: 7 semi-octets
    // Semi-octets 1 2 3 F 3: a digit after the filler.
    let err = decode("00040581 21F343 00004210510102030000".replace(' ', "").as_str(), true);
    assert_eq!(
        err,
        Err(PduError::Invalid { field: "TP-OA", at: 6, reason: "digit after the F filler at semi-octet 3".into() })
    );
    let err = decode("00041581", true);
    assert_eq!(
        err,
        Err(PduError::Invalid { field: "TP-OA", at: 2, reason: "length 21 is more than 20 semi-octets".into() })
    );
}

#[test]
fn smsc_addresses() {
    let smsc = |part: &str| deliver(&format!("{part}04048121430000421051010203000100")).smsc;
    assert_eq!(smsc("00"), None);
    assert_eq!(smsc("0181"), None); // type of address, no digits
    assert_eq!(smsc("06917228195339"), Some("+2782913593".into()));
    assert_eq!(smsc("07917283010010F5"), Some("+27381000015".into()));
    assert_eq!(smsc("0581721891F1"), Some("2781191".into()));
    assert_eq!(
        decode("0C91", true),
        Err(PduError::Invalid { field: "SMSC address", at: 0, reason: "length 12 is more than 11 octets".into() })
    );
}

#[test]
fn malformed_input_is_an_error_not_a_panic() {
    let t = |field, at, needed, available| Err(PduError::Truncated { field, at, needed, available });
    assert_eq!(decode("", true), t("SMSC address", 0, 1, 0));
    assert_eq!(decode("  \r\n", true), t("SMSC address", 0, 1, 0));
    assert_eq!(decode("00", true), t("first octet", 1, 1, 0));
    assert_eq!(decode("0004", true), t("TP-OA", 2, 1, 0));
    assert_eq!(decode("000404812143", true), t("TP-PID", 6, 1, 0));
    assert_eq!(decode("00040481", true), t("TP-OA", 4, 2, 0));
    assert_eq!(decode("000404812143000042105101", true), t("TP-SCTS", 8, 7, 4));
    assert_eq!(decode("0004048121430000421051010203000AC834", true), t("TP-UD", 16, 9, 2));
    assert_eq!(
        decode("0G", true),
        Err(PduError::Invalid { field: "hex", at: 0, reason: "'G' is not a hex digit".into() })
    );
    assert_eq!(
        decode("00010Ж", true),
        Err(PduError::Invalid { field: "hex", at: 2, reason: "'Ж' is not a hex digit".into() })
    );
    assert_eq!(
        decode("000", true),
        Err(PduError::Invalid { field: "hex", at: 1, reason: "odd number of hex digits".into() })
    );
    assert_eq!(
        decode("0003", true),
        Err(PduError::Invalid {
            field: "TP-MTI",
            at: 1,
            reason: "first octet 0x03 has the reserved message type 3".into()
        })
    );
    let invalid = |field, at, reason: &str| Err(PduError::Invalid { field, at, reason: reason.into() });
    // TP-UDL beyond what a PDU can carry.
    assert_eq!(
        decode("000404812143000042105101020300A1", true),
        invalid("TP-UDL", 15, "161 septets is more than the 160 a PDU can carry")
    );
    assert_eq!(
        decode("000404812143000842105101020300 8D".replace(' ', "").as_str(), true),
        invalid("TP-UDL", 15, "141 octets is more than the 140 a PDU can carry")
    );
    // A header longer than the user data, an IE longer than the header, a header longer than UDL
    // allows in septets, an odd number of UCS-2 octets.
    assert_eq!(
        decode("004404812143000442105101020300030500030A", true),
        invalid("TP-UDH", 16, "header of 6 octets overruns the 3 octets of user data")
    );
    assert_eq!(
        decode("00440481214300044210510102030004030004AA", true),
        invalid("TP-UDH", 17, "IE 0x00 of 4 octets overruns the header")
    );
    assert_eq!(
        decode("004404812143000442105101020300020100", true),
        invalid("TP-UDH", 17, "IE 0x00 has no length octet")
    );
    assert_eq!(
        decode("004404812143000042105101020300060500030A0201", true),
        invalid("TP-UDL", 15, "6 septets is shorter than the 6-octet header")
    );
    assert_eq!(
        decode("0004048121430008421051010203000300410A", true),
        invalid("TP-UD", 16, "odd number (3) of UCS-2 octets")
    );
}

#[test]
fn lenient_where_unambiguous() {
    // Octets after TP-UD (SIM padding or anything else) are not read: TP-UDL ends the message.
    assert_eq!(deliver("00040481214300004210510102030002C834FFFF").text, "Hi");
    assert_eq!(deliver("00040481214300004210510102030002C8341234").text, "Hi");
    // TP-UDHI with no user data at all: no header (seen in a real capture).
    let s = submit("0051000481214300000000");
    assert_eq!((s.text.as_str(), s.concat), ("", None));
    // Reserved bits of the first octet and the TP-RP/TP-MMS/TP-SRI bits do not matter.
    assert_eq!(deliver("00A404812143000042105101020300 02C834".replace(' ', "").as_str()).text, "Hi");
}

#[test]
fn never_panics_on_garbage() {
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let valid = [
        "07917283010010F5040BC87238880900F10000993092516195800AE8329BFD4697D9EC37",
        "0044048121430000993092516195800F0A0804123403020A02000540A601",
        "07917283010010F5062A0B917238880900F1421051010203094210511102032946030000",
        "004100049121430000080500032A0201C2",
    ];
    for round in 0..20_000 {
        let bytes: Vec<u8> = if round % 2 == 0 {
            (0..next() % 60).map(|_| next() as u8).collect()
        } else {
            // A valid PDU with one or two octets changed, cut at a random point.
            let mut b = from_hex(valid[round % valid.len()]).unwrap();
            for _ in 0..1 + next() % 2 {
                let i = (next() as usize) % b.len();
                b[i] = next() as u8;
            }
            b.truncate((next() as usize) % (b.len() + 1));
            b
        };
        let hex = to_hex(&bytes);
        let _ = decode(&hex, true);
        let _ = decode(&hex, false);
    }
    // Every prefix of a valid PDU is an error, except a status report cut after TP-ST.
    for pdu in valid {
        let status_end = if pdu.starts_with("07917283010010F506") { 66 } else { pdu.len() };
        for end in (0..pdu.len()).step_by(2) {
            assert_eq!(decode(&pdu[..end], true).is_ok(), end >= status_end, "{}", &pdu[..end]);
        }
    }
}

#[test]
fn encoder_rejects_what_it_cannot_send() {
    let opts = SubmitOptions::default();
    let encode_err = |to: &str, s: &Plan| match encode_submit(to, s, &opts) {
        Err(PduError::Encode(msg)) => msg,
        other => panic!("{to:?}: {other:?}"),
    };
    let bad_to = "is not 1 to 20 digits with an optional leading '+'";
    for to in ["", "+", "abc", "+7 916", "+123456789012345678901", "12-34"] {
        assert_eq!(encode_err(to, &split("x")), format!("destination {to:?} {bad_to}"));
    }
    assert!(encode_submit("+12345678901234567890", &split("x"), &opts).is_ok()); // 20 digits
    assert_eq!(encode_err("+1", &gsm(&[])), "a message has 1 to 255 parts, not 0");
    let many = Plan { encoding: Encoding::Gsm7, parts: vec!["a".into(); 256] };
    assert_eq!(encode_err("+1", &many), "a message has 1 to 255 parts, not 256");
    assert_eq!(encode_err("+1", &gsm(&["Привет"])), "\"Привет\" is not all in the GSM 7-bit alphabet");
    let long = "a".repeat(161);
    assert_eq!(encode_err("+1", &gsm(&[&long])), "a part takes 161 septets of user data, more than the 160 that fit");
    let long = "a".repeat(154);
    assert_eq!(
        encode_err("+1", &gsm(&[&long, "b"])),
        "a part takes 161 septets of user data, more than the 160 that fit"
    );
    let long = "Ж".repeat(68);
    assert_eq!(
        encode_err("+1", &ucs2(&[&long, "b"])),
        "a part takes 142 octets of user data, more than the 140 that fit"
    );
    // 255 parts is the most, and each says so.
    let most = Plan { encoding: Encoding::Gsm7, parts: vec!["a".into(); 255] };
    let pdus = encode_submit("+1", &most, &options(0, 1)).unwrap();
    assert_eq!(pdus.len(), 255);
    assert!(pdus[254].hex.ends_with("05000301FFFFC2"), "{}", pdus[254].hex);
}
