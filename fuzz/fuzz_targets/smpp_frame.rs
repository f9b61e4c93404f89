//! SMPP as a carrier session reads it: framing by command_length, rusmpp's decode of each PDU, and
//! for a deliver_sm or data_sm what it carries (a receipt or a message), in every coding setting.
#![no_main]

use bytes::BytesMut;
use smsgw::channel::smpp::config::GsmCoding;
use smsgw::channel::smpp::pdus::{Delivered, read};
use smsgw::channel::smpp::receipt::IdForm;
use smsgw::smpp::{MAX_PDU, SmppFrame, SmppFramer};
use tokio_util::codec::Decoder;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&first, stream)) = data.split_first() else { return };
    let piece = usize::from(first) + 1;
    let coding = [GsmCoding::Gsm7, GsmCoding::Latin1AsDefault, GsmCoding::Latin1][usize::from(first % 3)];
    let ids = [IdForm::Same, IdForm::HexInResp, IdForm::DecimalInResp][usize::from(first / 3 % 3)];
    let mut framer = SmppFramer::new(MAX_PDU);
    let mut buf = BytesMut::new();
    for chunk in stream.chunks(piece) {
        buf.extend_from_slice(chunk);
        loop {
            match framer.decode(&mut buf) {
                Ok(Some(SmppFrame::Pdu(p))) => {
                    // A PDU that does not decode is answered with generic_nack; the bind lives on.
                    if let Ok(c) = p.into_command()
                        && let Some(d) = c.pdu().and_then(Delivered::from_pdu)
                    {
                        let _ = read(&d, coding, ids);
                    }
                }
                Ok(None) => break,
                // The session drops the connection here: nothing more is read.
                Ok(Some(SmppFrame::Oversized { .. })) | Err(_) => return,
            }
        }
        assert!(buf.len() <= MAX_PDU + piece, "{} bytes buffered", buf.len());
    }
});
