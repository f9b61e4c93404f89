//! The AT line codec on any byte stream, split into reads as the first byte says, and every line
//! it yields read as the engine reads it, with and without a command pending.
#![no_main]

use bytes::BytesMut;
use smsgw::channel::modem::at::codec::{AtCodec, AtFrame, MAX_LINE};
use smsgw::channel::modem::at::read_line;
use tokio_util::codec::Decoder;

const PENDING: [Option<&str>; 5] = [None, Some("AT+CMGS=23"), Some("AT+CREG?"), Some("AT+CPMS?"), Some("AT^SYSINFO")];

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&first, stream)) = data.split_first() else { return };
    let piece = usize::from(first % 64) + 1;
    let pending = PENDING[usize::from(first >> 6) % PENDING.len()];
    let mut codec = AtCodec::new();
    let mut buf = BytesMut::new();
    let check = |frame: AtFrame| {
        if let AtFrame::Line(line) = frame {
            assert!(line.chars().count() <= MAX_LINE, "a line of {} characters", line.chars().count());
            assert!(!line.contains(['\r', '\n', '\0']), "{line:?}");
            let _ = read_line(&line, pending);
            let _ = read_line(line.trim(), None);
        }
    };
    for chunk in stream.chunks(piece) {
        buf.extend_from_slice(chunk);
        while let Ok(Some(frame)) = codec.decode(&mut buf) {
            check(frame);
        }
        assert!(buf.len() <= MAX_LINE + piece, "{} bytes buffered", buf.len());
    }
    while let Ok(Some(frame)) = codec.decode_eof(&mut buf) {
        check(frame);
    }
});
