//! Decoder that splits the byte stream coming from a GSM modem into AT lines and the SMS edit prompt.
//!
//! Rules (TS 27.007 §5 framing as real modems do it, not as the spec says):
//! - a line ends with `\r\n`, `\r` or `\n`; empty and whitespace-only lines are skipped (this also absorbs the
//!   `\n` of a `\r\n` split across two reads, and the extra `\r` some Huawei firmware puts before `\r\n`);
//! - the `AT+CMGS` prompt is `>` or `> ` at the start of a line with *no* line ending after it (it is what is in
//!   the buffer when the modem stops sending); a line that is exactly `>` / `> ` (SIM7670G sends `\r\n>\r\n`) is a
//!   prompt too;
//! - bytes that are not UTF-8 (power-up noise, 0xFF) are replaced by U+FFFD and NUL bytes are dropped: never an
//!   error;
//! - a line longer than [`MAX_LINE`] bytes is cut there (logged) and the rest of it, up to the next line end, is
//!   discarded; so the buffer never grows past that;
//! - a partial line waits for more bytes; at end of stream whatever is left is flushed as a last line.
//!
//! The decoder never returns an error and never panics on any input.

use bytes::{Buf, BytesMut};
use tokio_util::codec::Decoder;

/// Longest line kept, in bytes. A PDU line is at most ~360 hex digits; anything near this is noise.
pub const MAX_LINE: usize = 4096;

/// One unit read from the modem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AtFrame {
    /// A non-empty line without its line ending (not trimmed otherwise).
    Line(String),
    /// The `> ` / `>` edit prompt of `AT+CMGS`, `AT+CMGW`, `AT+CMGC`...
    Prompt,
}

/// tokio-util [`Decoder`] producing [`AtFrame`]s. Encoding is not needed: commands are written as raw bytes.
#[derive(Debug, Default)]
pub struct AtCodec {
    /// Inside an over-long line: drop bytes until the next line end.
    discarding: bool,
}

impl AtCodec {
    pub fn new() -> Self {
        Self::default()
    }
}

fn is_eol(b: u8) -> bool {
    b == b'\r' || b == b'\n'
}

fn is_prompt(bytes: &[u8]) -> bool {
    bytes == b">" || bytes == b"> "
}

/// Bytes of one line → text: invalid UTF-8 replaced, NULs dropped. `None` if nothing visible remains.
fn to_text(bytes: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(bytes);
    let text: String = text.chars().filter(|&c| c != '\0').collect();
    if text.trim().is_empty() { None } else { Some(text) }
}

impl Decoder for AtCodec {
    type Item = AtFrame;
    type Error = std::io::Error;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<AtFrame>, std::io::Error> {
        loop {
            if self.discarding {
                match buf.iter().position(|&b| is_eol(b)) {
                    Some(pos) => {
                        buf.advance(pos + 1);
                        self.discarding = false;
                    }
                    None => {
                        buf.clear();
                        return Ok(None);
                    }
                }
            }
            // Line endings and NULs between lines (power-up noise) carry nothing.
            let skip = buf.iter().take_while(|&&b| is_eol(b) || b == 0).count();
            buf.advance(skip);
            if buf.is_empty() {
                return Ok(None);
            }
            match buf.iter().position(|&b| is_eol(b)) {
                Some(pos) if pos <= MAX_LINE => {
                    let line = buf.split_to(pos);
                    buf.advance(1);
                    if is_prompt(&line) {
                        return Ok(Some(AtFrame::Prompt));
                    }
                    match to_text(&line) {
                        Some(text) => return Ok(Some(AtFrame::Line(text))),
                        None => continue,
                    }
                }
                Some(_) | None if buf.len() > MAX_LINE => {
                    let line = buf.split_to(MAX_LINE);
                    self.discarding = true;
                    tracing::warn!(len = MAX_LINE, "AT line longer than the limit: cut, rest discarded");
                    match to_text(&line) {
                        Some(text) => return Ok(Some(AtFrame::Line(text))),
                        None => continue,
                    }
                }
                _ => {
                    // No line end yet. The prompt is the one thing that comes without one.
                    if is_prompt(buf) {
                        buf.clear();
                        return Ok(Some(AtFrame::Prompt));
                    }
                    return Ok(None);
                }
            }
        }
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<AtFrame>, std::io::Error> {
        if let Some(frame) = self.decode(buf)? {
            return Ok(Some(frame));
        }
        if self.discarding {
            self.discarding = false;
            buf.clear();
            return Ok(None);
        }
        let rest = buf.split();
        Ok(to_text(&rest).map(AtFrame::Line))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(s: &str) -> AtFrame {
        AtFrame::Line(s.to_string())
    }

    /// Feed `chunks` one after the other, collecting every frame; then signal end of stream.
    fn run(chunks: &[&[u8]]) -> Vec<AtFrame> {
        let mut codec = AtCodec::new();
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for chunk in chunks {
            buf.extend_from_slice(chunk);
            while let Some(frame) = codec.decode(&mut buf).expect("decode never fails") {
                out.push(frame);
            }
        }
        while let Some(frame) = codec.decode_eof(&mut buf).expect("decode_eof never fails") {
            out.push(frame);
        }
        out
    }

    #[test]
    fn line_endings_of_all_kinds() {
        assert_eq!(run(&[b"\r\nOK\r\n"]), [line("OK")]);
        assert_eq!(run(&[b"A\rB\nC\r\n\r\nD\r\r\n"]), [line("A"), line("B"), line("C"), line("D")]);
        // Huawei +CLAC: "&C\r\r\n"
        assert_eq!(run(&[b"&C\r\r\n&D\r\r\nOK\r\n"]), [line("&C"), line("&D"), line("OK")]);
    }

    #[test]
    fn empty_and_blank_lines_are_skipped() {
        assert_eq!(run(&[b"+CSCS: \"GSM\"\r\n\r\n   \r\nOK\r\n"]), [line("+CSCS: \"GSM\""), line("OK")]);
    }

    #[test]
    fn padding_inside_a_line_is_kept() {
        assert_eq!(run(&[b" MULTIBAND  900E  1800 \r\n"]), [line(" MULTIBAND  900E  1800 ")]);
    }

    #[test]
    fn partial_lines_wait() {
        let mut codec = AtCodec::new();
        let mut buf = BytesMut::from(&b"+CS"[..]);
        assert_eq!(codec.decode(&mut buf).unwrap(), None);
        buf.extend_from_slice(b"Q: 17,99\r");
        assert_eq!(codec.decode(&mut buf).unwrap(), Some(line("+CSQ: 17,99")));
        buf.extend_from_slice(b"\nO");
        assert_eq!(codec.decode(&mut buf).unwrap(), None);
        buf.extend_from_slice(b"K\r\n");
        assert_eq!(codec.decode(&mut buf).unwrap(), Some(line("OK")));
        // the '\n' of that "\r\n" is left for the next call, which skips it
        assert_eq!(codec.decode(&mut buf).unwrap(), None);
        assert!(buf.is_empty());
    }

    #[test]
    fn byte_by_byte_equals_all_at_once() {
        let input: &[u8] = b"\r\n^RSSI:14\r\n+CMTI: \"SM\",3\r\n\xff\x00garbage\r\nOK\r\n";
        let chunks: Vec<&[u8]> = input.chunks(1).collect();
        assert_eq!(run(&chunks), run(&[input]));
        assert_eq!(run(&[input]).len(), 4);
    }

    #[test]
    fn prompts() {
        assert_eq!(run(&[b"\r\n> "]), [AtFrame::Prompt]);
        assert_eq!(run(&[b"> "]), [AtFrame::Prompt]);
        assert_eq!(run(&[b">"]), [AtFrame::Prompt]);
        // SIM7670G: CR LF '>' CR LF
        assert_eq!(run(&[b"\r\n>\r\n"]), [AtFrame::Prompt]);
        // prompt arriving in pieces
        assert_eq!(run(&[b"\r", b"\n", b">", b" "]), [AtFrame::Prompt]);
        // echo then prompt in one read
        assert_eq!(run(&[b"AT+CMGS=23\r\r\n> "]), [line("AT+CMGS=23"), AtFrame::Prompt]);
        // a line merely starting with '>' is a line
        assert_eq!(run(&[b"> abc\r\n"]), [line("> abc")]);
    }

    #[test]
    fn garbage_is_replaced_not_fatal() {
        let frames = run(&[b"\x00\x00\xff\xfe\r\n\x00OK\x00\r\n"]);
        assert_eq!(frames, [line("\u{fffd}\u{fffd}"), line("OK")]);
        assert_eq!(run(&[b"\x00\x00\x00\r\n\x00"]), []);
    }

    #[test]
    fn over_long_line_is_cut_and_rest_discarded() {
        let mut input = vec![b'A'; MAX_LINE + 1000];
        input.extend_from_slice(b"\r\nOK\r\n");
        let frames = run(&[&input[..3000], &input[3000..]]);
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[0], AtFrame::Line("A".repeat(MAX_LINE)));
        assert_eq!(frames[1], line("OK"));
        // the buffer stays bounded while the garbage never ends
        let mut codec = AtCodec::new();
        let mut buf = BytesMut::new();
        for _ in 0..100 {
            buf.extend_from_slice(&[b'x'; 1000]);
            while codec.decode(&mut buf).unwrap().is_some() {}
            assert!(buf.len() <= MAX_LINE + 1000);
        }
    }

    #[test]
    fn eof_flushes_the_last_partial_line() {
        assert_eq!(run(&[b"OK\r\nNO CARR"]), [line("OK"), line("NO CARR")]);
    }

    #[test]
    fn never_panics_on_pseudo_random_input() {
        // xorshift: deterministic noise, biased towards the interesting bytes
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let alphabet = b"\r\n> OK+\x00\xff\x1a\x1bAT";
        for _ in 0..200 {
            let mut input = Vec::new();
            for _ in 0..600 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let b =
                    if x.is_multiple_of(3) { (x >> 8) as u8 } else { alphabet[(x >> 16) as usize % alphabet.len()] };
                input.push(b);
            }
            let chunks: Vec<&[u8]> = input.chunks(((x % 37) + 1) as usize).collect();
            for frame in run(&chunks) {
                if let AtFrame::Line(l) = frame {
                    assert!(!l.trim().is_empty());
                    assert!(!l.contains(['\r', '\n', '\0']));
                }
            }
        }
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        /// A line as a modem would end it with CRLF: something visible, no line end or NUL, not the prompt.
        fn line_text() -> impl Strategy<Value = String> {
            let short = "[^\r\n\x00]{1,60}";
            // As long as a line may be, in bytes, whatever the width of its characters.
            let long =
                (MAX_LINE - 8..=MAX_LINE, prop::sample::select(vec!['x', 'é', '中', '😀'])).prop_map(|(n, c)| {
                    let mut s: String = std::iter::repeat_n(c, n / c.len_utf8()).collect();
                    s.extend(std::iter::repeat_n('y', n - s.len()));
                    s
                });
            prop_oneof![9 => short.prop_map(String::from), 1 => long]
                // A line that starts with '>' is the SMS prompt to the codec when a read
                // ends right after it (a modem waits there for the text): no modem
                // starts any other line with it.
                .prop_filter("visible, not the prompt", |s| !s.trim().is_empty() && !s.starts_with('>'))
        }

        /// Bytes as runs of one value: long lines and long noise without generating every byte apart.
        fn runs(max_run: usize, allow_eol: bool) -> impl Strategy<Value = Vec<u8>> {
            let byte = prop_oneof![any::<u8>(), Just(b'\r'), Just(b'\n'), Just(b'>'), Just(b' '), Just(0u8)]
                .prop_map(move |b| if !allow_eol && is_eol(b) { b'#' } else { b });
            prop::collection::vec((byte, 1..max_run), 0..12)
                .prop_map(|runs| runs.into_iter().flat_map(|(b, n)| std::iter::repeat_n(b, n)).collect())
        }

        /// Cut `input` at the given fractions: chunks of any size, the way reads come.
        fn chunked<'a>(input: &'a [u8], cuts: &[prop::sample::Index]) -> Vec<&'a [u8]> {
            let mut at: Vec<usize> = cuts.iter().map(|c| c.index(input.len() + 1)).collect();
            at.push(0);
            at.push(input.len());
            at.sort_unstable();
            at.windows(2).map(|w| &input[w[0]..w[1]]).collect()
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

            #[test]
            fn no_frame_is_longer_than_the_limit_and_nothing_panics(
                input in prop_oneof![runs(MAX_LINE + 100, true), prop::collection::vec(any::<u8>(), 0..200)],
                cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..20),
            ) {
                for frame in run(&chunked(&input, &cuts)) {
                    if let AtFrame::Line(l) = frame {
                        prop_assert!(l.chars().count() <= MAX_LINE, "a line of {} characters", l.chars().count());
                        prop_assert!(!l.trim().is_empty());
                        prop_assert!(!l.contains(['\r', '\n', '\0']));
                    }
                }
            }

            /// Every line that ends in CRLF comes out whole, however the reads split the stream,
            /// also after an over-long line of noise.
            #[test]
            fn no_line_ending_in_crlf_is_lost(
                noise in prop::option::of(runs(MAX_LINE, false)),
                lines in prop::collection::vec(line_text(), 1..8),
                cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..20),
            ) {
                let mut input = noise.unwrap_or_default();
                input.extend_from_slice(b"\r\n");
                for l in &lines {
                    input.extend_from_slice(l.as_bytes());
                    input.extend_from_slice(b"\r\n");
                }
                let frames = run(&chunked(&input, &cuts));
                let expected: Vec<AtFrame> = lines.iter().map(|l| AtFrame::Line(l.clone())).collect();
                prop_assert!(frames.len() >= expected.len(), "{frames:?}");
                prop_assert_eq!(&frames[frames.len() - expected.len()..], &expected[..]);
            }
        }
    }
}
