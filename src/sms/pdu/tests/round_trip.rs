//! encode_submit then decode, for many texts: every part decodes to the part `split` made, the
//! parts join back to the text, and the concatenation headers count correctly.

use super::*;
use crate::sms::text::split;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Encode `text` with `opts`, decode every part and check it; returns the number of parts.
fn round_trip(to: &str, text: &str, opts: &SubmitOptions) -> usize {
    let s = split(text);
    let pdus = encode_submit(to, &s, opts).unwrap_or_else(|e| panic!("{text:?}: {e}"));
    assert_eq!(pdus.len(), s.parts.len());
    let total = pdus.len();
    let mut joined = String::new();
    for (i, (pdu, part)) in pdus.iter().zip(&s.parts).enumerate() {
        assert!(pdu.hex.starts_with("00"));
        assert_eq!(pdu.hex.len(), 2 + 2 * pdu.tpdu_len);
        let d = submit(&pdu.hex);
        assert_eq!(&d.text, part, "part {} of {text:?}", i + 1);
        let dcs = match s.encoding {
            Encoding::Gsm7 => 0x00,
            Encoding::Ucs2 => 0x08,
        };
        assert_eq!((d.dcs, d.message_ref, d.status_report), (dcs, opts.message_ref, opts.status_report));
        assert_eq!(d.recipient.value, to);
        let expected =
            (total > 1).then(|| Concat { reference: u16::from(opts.concat_ref), total: total as u8, seq: i as u8 + 1 });
        assert_eq!(d.concat, expected, "{text:?}");
        // As a modem would hand it back: the bare TPDU decodes the same.
        assert_eq!(decode(&pdu.hex[2..], false), Ok(Pdu::Submit(d.clone())));
        joined.push_str(&d.text);
    }
    assert_eq!(joined, text);
    total
}

#[test]
fn random_texts() {
    let pools: [&[char]; 4] = [
        &['a', 'Z', ' ', '.', '@', '\n', 'é', 'Ä'],
        &['a', '€', '{', '}', '[', ']', '~', '\\', '^', '|', '\u{0C}', '@'],
        &['П', 'р', 'и', 'в', 'е', 'т', ' ', 'a', '€'],
        &['😀', '👍', '🏽', 'Ж', 'x', ' ', '中'],
    ];
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    let mut parts_seen = [0usize; 6];
    for round in 0..3000 {
        let pool = pools[round % pools.len()];
        let len = rng.below(480);
        let text: String = (0..len).map(|_| pool[rng.below(pool.len())]).collect();
        let opts = SubmitOptions {
            message_ref: rng.next() as u8,
            status_report: rng.next().is_multiple_of(2),
            validity_minutes: rng.next().is_multiple_of(3).then(|| (rng.next() % 700_000) as u32),
            concat_ref: rng.next() as u8,
        };
        let to = if round % 2 == 0 { "+79161234567" } else { "89161234567" };
        let parts = round_trip(to, &text, &opts);
        parts_seen[parts.min(5)] += 1;
    }
    // All part counts from 1 to 5 and beyond occur.
    assert!(parts_seen[1..].iter().all(|&n| n > 50), "{parts_seen:?}");
}

#[test]
fn extension_chars_and_surrogates_at_part_boundaries() {
    let opts = options(3, 0xA5);
    for ext in ['€', '{', '\\', '\u{0C}', '|'] {
        for before in 145..=162 {
            let text = format!("{}{ext}{}", "a".repeat(before), "b".repeat(20));
            round_trip("+1234567", &text, &opts);
            let text = format!("{}{ext}{ext}{}", "a".repeat(before + 153), "c".repeat(5));
            assert_eq!(round_trip("+1234567", &text, &opts), 3);
        }
    }
    for emoji in ["😀", "👍🏽"] {
        for before in 60..=72 {
            let text = format!("{}{emoji}{}", "Ж".repeat(before), "ж".repeat(10));
            round_trip("+1234567", &text, &opts);
        }
    }
}

#[test]
fn part_counts_at_limits() {
    let opts = options(0, 1);
    let cases = [
        ("a".repeat(160), 1),
        ("a".repeat(161), 2),
        ("a".repeat(306), 2),
        ("a".repeat(307), 3),
        ("€".repeat(80), 1),
        ("€".repeat(81), 2),
        ("Ж".repeat(70), 1),
        ("Ж".repeat(71), 2),
        ("Ж".repeat(134), 2),
        ("Ж".repeat(135), 3),
        ("😀".repeat(35), 1),
        ("😀".repeat(36), 2),
        ("a".repeat(153 * 255), 255),
        (String::new(), 1),
    ];
    for (text, parts) in cases {
        assert_eq!(round_trip("+44", &text, &opts), parts, "{} chars", text.chars().count());
    }
    // Every full GSM part has TP-UDL 160 (153 + 7 septets of header), every full UCS-2 part 140;
    // with the 3-octet destination that is 148 octets of TPDU.
    let pdus = encode_submit("+44", &split(&"a".repeat(306)), &opts).unwrap();
    assert!(pdus.iter().all(|p| &p.hex[16..18] == "A0" && p.tpdu_len == 148), "{pdus:?}");
    let pdus = encode_submit("+44", &split(&"Ж".repeat(134)), &opts).unwrap();
    assert!(pdus.iter().all(|p| &p.hex[16..18] == "8C" && p.tpdu_len == 148), "{pdus:?}");
}

#[test]
fn gsm_text_forced_to_ucs2() {
    // text::plan with Alphabets::Ucs2 (for routes that cannot take GSM 7-bit) gives UCS-2 parts of GSM text.
    let text = "a€".repeat(40);
    let s = crate::sms::text::plan(&text, crate::sms::text::Alphabets::Ucs2);
    let pdus = encode_submit("+44", &s, &options(0, 9)).unwrap();
    assert_eq!(pdus.len(), 2);
    let parts: Vec<Submit> = pdus.iter().map(|p| submit(&p.hex)).collect();
    assert!(parts.iter().all(|p| p.dcs == 0x08 && p.encoding == DataEncoding::Ucs2));
    assert_eq!(parts.iter().map(|p| p.text.as_str()).collect::<String>(), text);
}
