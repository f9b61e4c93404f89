//! SMS text: choosing between the GSM 7-bit default alphabet and UCS-2 (3GPP TS 23.038), planning
//! text into the parts of a concatenated SMS (TS 23.040, [`Plan`]), and encoding/decoding both
//! alphabets.
//!
//! Lengths are counted in septets for GSM 7-bit (an extension-table character costs two: escape +
//! character) and in UTF-16 code units for UCS-2 (a character above U+FFFF costs two). A part never
//! splits such a pair.

/// The escape septet that introduces an extension-table character.
const ESC: u8 = 0x1B;

/// GSM 7-bit default alphabet (TS 23.038 §6.2.1), indexed by septet value. Entry 0x1B is the escape
/// code, not a character; [`basic_index`] never returns it.
const BASIC: [char; 128] = [
    '@', '£', '$', '¥', 'è', 'é', 'ù', 'ì', 'ò', 'Ç', '\n', 'Ø', 'ø', '\r', 'Å', 'å', //
    'Δ', '_', 'Φ', 'Γ', 'Λ', 'Ω', 'Π', 'Ψ', 'Σ', 'Θ', 'Ξ', '\u{1B}', 'Æ', 'æ', 'ß', 'É', //
    ' ', '!', '"', '#', '¤', '%', '&', '\'', '(', ')', '*', '+', ',', '-', '.', '/', //
    '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', ':', ';', '<', '=', '>', '?', //
    '¡', 'A', 'B', 'C', 'D', 'E', 'F', 'G', 'H', 'I', 'J', 'K', 'L', 'M', 'N', 'O', //
    'P', 'Q', 'R', 'S', 'T', 'U', 'V', 'W', 'X', 'Y', 'Z', 'Ä', 'Ö', 'Ñ', 'Ü', '§', //
    '¿', 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm', 'n', 'o', //
    'p', 'q', 'r', 's', 't', 'u', 'v', 'w', 'x', 'y', 'z', 'ä', 'ö', 'ñ', 'ü', 'à', //
];

/// GSM 7-bit extension table (TS 23.038 §6.2.1.1): septet after the escape, and its character.
const EXTENSION: [(u8, char); 10] = [
    (0x0A, '\u{0C}'), // form feed
    (0x14, '^'),
    (0x28, '{'),
    (0x29, '}'),
    (0x2F, '\\'),
    (0x3C, '['),
    (0x3D, '~'),
    (0x3E, ']'),
    (0x40, '|'),
    (0x65, '€'),
];

/// Septets per part: a single SMS, and each part of a concatenated one (7 septets go to the UDH).
const GSM7_SINGLE: usize = 160;
const GSM7_MULTI: usize = 153;
/// UCS-2 code units per part: a single SMS, and each part of a concatenated one (6 octets of UDH).
const UCS2_SINGLE: usize = 70;
const UCS2_MULTI: usize = 67;

/// The alphabet a message is sent in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    Gsm7,
    Ucs2,
}

impl Encoding {
    /// Stable lowercase name: `"gsm7"` or `"ucs2"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::Gsm7 => "gsm7",
            Encoding::Ucs2 => "ucs2",
        }
    }

    /// Inverse of [`Encoding::as_str`], ignoring ASCII case.
    pub fn parse(s: &str) -> Option<Self> {
        [Encoding::Gsm7, Encoding::Ucs2].into_iter().find(|e| e.as_str().eq_ignore_ascii_case(s))
    }
}

/// A message's text planned for sending: the alphabet and the parts, in order. Made once, by
/// [`plan`], where the message is handed to a route, and carried to it: every route sends exactly
/// these parts (a route whose carrier cannot take the alphabet plans again with other
/// [`Alphabets`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub encoding: Encoding,
    pub parts: Vec<String>,
}

impl Plan {
    /// The whole text again (the parts joined).
    pub fn text(&self) -> String {
        self.parts.concat()
    }
}

/// The alphabets a plan may use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Alphabets {
    /// GSM 7-bit when every character has a septet, else UCS-2.
    #[default]
    Any,
    /// UCS-2 whatever the text: for routes that cannot carry GSM 7-bit as such (a carrier reading
    /// data_coding 0 as Latin-1, with characters Latin-1 lacks).
    Ucs2,
}

fn basic_index(c: char) -> Option<u8> {
    let i = BASIC.iter().position(|&b| b == c)?;
    u8::try_from(i).ok().filter(|&i| i != ESC)
}

fn extension_index(c: char) -> Option<u8> {
    EXTENSION.iter().find(|&&(_, e)| e == c).map(|&(s, _)| s)
}

/// GSM 7-bit if every char is in the default alphabet or its extension table, else UCS-2.
pub fn choose_encoding(text: &str) -> Encoding {
    if text.chars().all(|c| gsm7_septets(c).is_some()) { Encoding::Gsm7 } else { Encoding::Ucs2 }
}

/// Septets a char takes in GSM 7-bit: `Some(1)` basic table, `Some(2)` extension table (escape +
/// char), `None` if not representable.
pub fn gsm7_septets(c: char) -> Option<usize> {
    if basic_index(c).is_some() { Some(1) } else { extension_index(c).map(|_| 2) }
}

/// Walks `text` once for its encoding and calls `cut` with the byte offset where each part after
/// the first begins. Shared by [`plan`] and [`count_parts`] so both follow the same rules.
fn walk(text: &str, alphabets: Alphabets, mut cut: impl FnMut(usize)) -> Encoding {
    let encoding = match alphabets {
        Alphabets::Ucs2 => Encoding::Ucs2,
        Alphabets::Any => choose_encoding(text),
    };
    let (single, multi) = match encoding {
        Encoding::Gsm7 => (GSM7_SINGLE, GSM7_MULTI),
        Encoding::Ucs2 => (UCS2_SINGLE, UCS2_MULTI),
    };
    // Under Gsm7 every char is representable, so the fallback of 1 is never used.
    let cost = |c: char| match encoding {
        Encoding::Gsm7 => gsm7_septets(c).unwrap_or(1),
        Encoding::Ucs2 => c.len_utf16(),
    };
    if text.chars().map(cost).sum::<usize>() <= single {
        return encoding;
    }
    let mut used = 0;
    for (offset, c) in text.char_indices() {
        let n = cost(c);
        if used + n > multi {
            cut(offset);
            used = 0;
        }
        used += n;
    }
    encoding
}

/// Plan a text for sending: its alphabet (the best of `alphabets` for it) and its parts. A single
/// part if it fits (160 septets / 70 UCS-2 code units), else parts of at most 153 septets / 67
/// UCS-2 code units (room for the 6-octet concatenation UDH). An extension-table character or a
/// surrogate pair always stays whole in one part. Empty text gives one empty part.
pub fn plan(text: &str, alphabets: Alphabets) -> Plan {
    let mut parts = Vec::new();
    let mut start = 0;
    let encoding = walk(text, alphabets, |offset| {
        parts.push(text[start..offset].to_string());
        start = offset;
    });
    parts.push(text[start..].to_string());
    Plan { encoding, parts }
}

/// [`plan`] with any alphabet: GSM 7-bit where the text allows it.
pub fn split(text: &str) -> Plan {
    plan(text, Alphabets::Any)
}

/// Number of parts only, by the same rules as [`split`] but without allocating the parts: what
/// the API checks and stores when it accepts a message.
pub fn count_parts(text: &str) -> (Encoding, usize) {
    let mut parts = 1;
    let encoding = walk(text, Alphabets::Any, |_| parts += 1);
    (encoding, parts)
}

/// Encode a GSM 7-bit string into unpacked septet values (one `u8` per septet, escape 0x1B before
/// extension chars). `None` if any char is not in the GSM 7-bit alphabet.
pub fn encode_gsm7_unpacked(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len());
    for c in text.chars() {
        if let Some(s) = basic_index(c) {
            out.push(s);
        } else {
            out.extend([ESC, extension_index(c)?]);
        }
    }
    Some(out)
}

/// Decode unpacked septets back to text.
///
/// Fallbacks, per TS 23.038 §6.2.1.1: an escape followed by a septet that is not in the extension
/// table decodes as that septet's basic-table character (as if the escape were absent); escape +
/// escape (reserved for a further extension table) decodes as a space. A lone escape at the very
/// end is dropped, and values above 0x7F (not septets) decode as U+FFFD.
pub fn decode_gsm7_unpacked(septets: &[u8]) -> String {
    let basic = |s: u8| BASIC.get(usize::from(s)).copied().unwrap_or('\u{FFFD}');
    let mut out = String::with_capacity(septets.len());
    let mut iter = septets.iter().copied();
    while let Some(s) = iter.next() {
        if s != ESC {
            out.push(basic(s));
            continue;
        }
        match iter.next() {
            None => {}
            Some(ESC) => out.push(' '),
            Some(e) => out.push(EXTENSION.iter().find(|&&(code, _)| code == e).map_or_else(|| basic(e), |&(_, c)| c)),
        }
    }
    out
}

/// UCS-2 (UTF-16BE) bytes of the text; chars above U+FFFF become surrogate pairs.
pub fn encode_ucs2(text: &str) -> Vec<u8> {
    text.encode_utf16().flat_map(u16::to_be_bytes).collect()
}

/// Decode UCS-2 (UTF-16BE) bytes. Lossy: an unpaired surrogate or a trailing odd byte becomes
/// U+FFFD.
pub fn decode_ucs2(bytes: &[u8]) -> String {
    let chunks = bytes.chunks_exact(2);
    let odd = !chunks.remainder().is_empty();
    let units = chunks.map(|b| u16::from_be_bytes([b[0], b[1]]));
    let mut out: String = char::decode_utf16(units).map(|r| r.unwrap_or(char::REPLACEMENT_CHARACTER)).collect();
    if odd {
        out.push(char::REPLACEMENT_CHARACTER);
    }
    out
}

/// The text of SMPP user data in its `data_coding` (SMPP 3.4 §5.2.19): the
/// GSM 7-bit default alphabet one septet per octet (0x00), IA5/ASCII read as
/// UTF-8 (0x01), Latin-1 (0x03), UCS-2/UTF-16BE with surrogate pairs (0x08).
/// `None` for a coding that carries no text this gateway reads (binary,
/// pictogram, ...): each caller decides its own fallback. Parts of one long
/// message are decoded after their bytes are joined, so a pair or escape
/// split across parts reads whole.
pub fn decode_text(data_coding: u8, bytes: &[u8]) -> Option<String> {
    match data_coding {
        0x00 => Some(decode_gsm7_unpacked(bytes)),
        0x01 => Some(String::from_utf8_lossy(bytes).into_owned()),
        0x03 => Some(bytes.iter().map(|&b| char::from(b)).collect()),
        0x08 => Some(decode_ucs2(bytes)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn forced_ucs2_split() {
        let s = super::plan(&"a".repeat(71), super::Alphabets::Ucs2);
        assert_eq!(s.encoding, super::Encoding::Ucs2);
        assert_eq!(s.parts.iter().map(|p| p.len()).collect::<Vec<_>>(), [67, 4]);
    }

    use super::*;

    const CYR: &str = "Привет";

    fn cyr(n: usize) -> String {
        CYR.chars().cycle().take(n).collect()
    }

    fn lens(s: &Plan) -> Vec<usize> {
        s.parts.iter().map(|p| p.chars().count()).collect()
    }

    #[test]
    fn encoding_names() {
        for e in [Encoding::Gsm7, Encoding::Ucs2] {
            assert_eq!(Encoding::parse(e.as_str()), Some(e));
        }
        assert_eq!(Encoding::Gsm7.as_str(), "gsm7");
        assert_eq!(Encoding::Ucs2.as_str(), "ucs2");
        assert_eq!(Encoding::parse("UCS2"), Some(Encoding::Ucs2));
        assert_eq!(Encoding::parse("utf8"), None);
    }

    #[test]
    fn basic_table_is_exact() {
        assert_eq!(BASIC[0x00], '@');
        assert_eq!(BASIC[0x09], 'Ç');
        assert_eq!(BASIC[0x10], 'Δ');
        assert_eq!(BASIC[0x24], '¤');
        assert_eq!(BASIC[0x40], '¡');
        assert_eq!(BASIC[0x5F], '§');
        assert_eq!(BASIC[0x60], '¿');
        assert_eq!(BASIC[0x7F], 'à');
        // Every character except the escape slot is distinct and round-trips by index.
        for (i, &c) in BASIC.iter().enumerate() {
            let expected = u8::try_from(i).ok().filter(|&i| i != ESC);
            assert_eq!(basic_index(c), expected, "{c:?} at {i:#04x}");
        }
        assert_eq!(gsm7_septets('\u{1B}'), None);
    }

    #[test]
    fn septet_costs() {
        assert_eq!(gsm7_septets('a'), Some(1));
        assert_eq!(gsm7_septets('@'), Some(1));
        assert_eq!(gsm7_septets('€'), Some(2));
        assert_eq!(gsm7_septets('\u{0C}'), Some(2));
        for (_, c) in EXTENSION {
            assert_eq!(gsm7_septets(c), Some(2), "{c:?}");
        }
        assert_eq!(gsm7_septets('`'), None);
        assert_eq!(gsm7_septets('ç'), None);
        assert_eq!(gsm7_septets('😀'), None);
    }

    #[test]
    fn chooses_encoding() {
        assert_eq!(choose_encoding("Hello, world! 123"), Encoding::Gsm7);
        assert_eq!(choose_encoding(""), Encoding::Gsm7);
        assert_eq!(choose_encoding("€"), Encoding::Gsm7);
        assert_eq!(choose_encoding("é"), Encoding::Gsm7);
        assert_eq!(choose_encoding("§"), Encoding::Gsm7);
        assert_eq!(choose_encoding("page\u{0C}break"), Encoding::Gsm7);
        assert_eq!(choose_encoding("Ç"), Encoding::Gsm7);
        assert_eq!(choose_encoding("ç"), Encoding::Ucs2);
        assert_eq!(choose_encoding("`"), Encoding::Ucs2);
        assert_eq!(choose_encoding(CYR), Encoding::Ucs2);
        assert_eq!(choose_encoding("hi 😀"), Encoding::Ucs2);
    }

    #[test]
    fn gsm7_part_boundaries() {
        let a = |n| "a".repeat(n);
        assert_eq!(count_parts(&a(160)), (Encoding::Gsm7, 1));
        assert_eq!(lens(&split(&a(161))), [153, 8]);
        assert_eq!(count_parts(&a(161)), (Encoding::Gsm7, 2));
        assert_eq!(lens(&split(&a(306))), [153, 153]);
        assert_eq!(lens(&split(&a(307))), [153, 153, 1]);
        assert_eq!(count_parts(&a(307)), (Encoding::Gsm7, 3));
    }

    #[test]
    fn ucs2_part_boundaries() {
        assert_eq!(count_parts(&cyr(70)), (Encoding::Ucs2, 1));
        let s = split(&cyr(71));
        assert_eq!(s.encoding, Encoding::Ucs2);
        assert_eq!(lens(&s), [67, 4]);
        assert_eq!(lens(&split(&cyr(134))), [67, 67]);
        assert_eq!(lens(&split(&cyr(135))), [67, 67, 1]);
        assert_eq!(count_parts(&cyr(135)), (Encoding::Ucs2, 3));
    }

    #[test]
    fn extension_char_never_straddles() {
        let text = format!("{}€{}", "a".repeat(152), "b".repeat(10));
        let s = split(&text);
        assert_eq!(s.encoding, Encoding::Gsm7);
        assert_eq!(s.parts, ["a".repeat(152), format!("€{}", "b".repeat(10))]);
        // 159 + 2 = 161 septets: two parts; 158 + 2 = 160: one part.
        let s = split(&format!("{}€", "a".repeat(159)));
        assert_eq!(s.parts, ["a".repeat(153), format!("{}€", "a".repeat(6))]);
        assert_eq!(count_parts(&format!("{}€", "a".repeat(158))), (Encoding::Gsm7, 1));
    }

    #[test]
    fn surrogate_pair_never_straddles() {
        let text = format!("{}😀{}", cyr(66), cyr(5));
        let s = split(&text);
        assert_eq!(s.encoding, Encoding::Ucs2);
        assert_eq!(s.parts, [cyr(66), format!("😀{}", cyr(5))]);
        // 66 + 2 = 68 units fit a single SMS.
        assert_eq!(count_parts(&format!("{}😀", cyr(66))), (Encoding::Ucs2, 1));
        assert_eq!(count_parts(&"😀".repeat(35)), (Encoding::Ucs2, 1));
        let s = split(&"😀".repeat(36));
        assert_eq!(lens(&s), [33, 3]); // 66 units, then 6
    }

    #[test]
    fn empty_text_is_one_empty_part() {
        let s = split("");
        assert_eq!(s.encoding, Encoding::Gsm7);
        assert_eq!(s.parts, [""]);
        assert_eq!(count_parts(""), (Encoding::Gsm7, 1));
    }

    #[test]
    fn parts_rejoin_and_are_filled_greedily() {
        let pool = ['a', 'Z', ' ', '€', '{', 'é', '\n', 'П', 'ж', '😀'];
        let mut seed: u64 = 0x2545_F491_4F6C_DD1D;
        for round in 0..600 {
            // Alternate GSM-only and mixed pools so both encodings get long inputs.
            let choices = if round % 2 == 0 { &pool[..7] } else { &pool[..] };
            let len = round % 400;
            let text: String = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    choices[(seed % choices.len() as u64) as usize]
                })
                .collect();
            let s = split(&text);
            assert_eq!(s.parts.concat(), text);
            assert_eq!(count_parts(&text), (s.encoding, s.parts.len()));
            let cost = |p: &str| match s.encoding {
                Encoding::Gsm7 => encode_gsm7_unpacked(p).map_or(usize::MAX, |v| v.len()),
                Encoding::Ucs2 => p.encode_utf16().count(),
            };
            let (single, multi) = match s.encoding {
                Encoding::Gsm7 => (160, 153),
                Encoding::Ucs2 => (70, 67),
            };
            if s.parts.len() == 1 {
                assert!(cost(&text) <= single, "{text:?}");
                continue;
            }
            assert!(cost(&text) > single, "{text:?}");
            for pair in s.parts.windows(2) {
                assert!(cost(&pair[0]) <= multi);
                let next = pair[1].chars().next().map(String::from).unwrap_or_default();
                assert!(cost(&pair[0]) + cost(&next) > multi, "part not full");
            }
        }
    }

    #[test]
    fn gsm7_round_trip() {
        let text = "Hello @£$¥ èéùìòÇ\nØø\rÅå Δ_ΦΓΛΩΠΨΣΘΞ ÆæßÉ ¤ ¡ÄÖÑÜ§ ¿äöñüà \u{0C}^{}\\[~]|€ @";
        let septets = encode_gsm7_unpacked(text);
        assert_eq!(septets.as_ref().map(|s| s.last().copied()), Some(Some(0x00)));
        assert_eq!(septets.as_deref().map(decode_gsm7_unpacked).as_deref(), Some(text));
        assert_eq!(encode_gsm7_unpacked("a€@"), Some(vec![0x61, 0x1B, 0x65, 0x00]));
        assert_eq!(encode_gsm7_unpacked("a`"), None);
        assert_eq!(encode_gsm7_unpacked(""), Some(vec![]));
    }

    #[test]
    fn gsm7_decode_fallbacks() {
        // Unknown escape: the basic char ('A'); escape+escape: space; trailing escape: dropped.
        assert_eq!(decode_gsm7_unpacked(&[0x1B, 0x41]), "A");
        assert_eq!(decode_gsm7_unpacked(&[0x61, 0x1B, 0x1B, 0x62]), "a b");
        assert_eq!(decode_gsm7_unpacked(&[0x61, 0x1B]), "a");
        assert_eq!(decode_gsm7_unpacked(&[0x80]), "\u{FFFD}");
    }

    #[test]
    fn ucs2_round_trip() {
        let text = "Привет 😀 ok €";
        let bytes = encode_ucs2(text);
        assert_eq!(&bytes[..4], &[0x04, 0x1F, 0x04, 0x40]);
        assert_eq!(&encode_ucs2("😀")[..], &[0xD8, 0x3D, 0xDE, 0x00]);
        assert_eq!(bytes.len(), 2 * text.encode_utf16().count());
        assert_eq!(decode_ucs2(&bytes), text);
    }

    #[test]
    fn ucs2_decode_is_lossy() {
        assert_eq!(decode_ucs2(&[0xD8, 0x3D, 0x00, 0x41]), "\u{FFFD}A");
        assert_eq!(decode_ucs2(&[0x00, 0x41, 0x00]), "A\u{FFFD}");
        assert_eq!(decode_ucs2(&[]), "");
    }
}
