//! SMPP framing: split the byte stream into PDUs by `command_length`, then
//! decode each one on its own. A PDU whose body cannot be decoded still
//! yields its header (command id and sequence number), so the session can
//! answer `generic_nack` and live on instead of dropping the bind. Only a
//! length that breaks the framing itself ends the stream.

use bytes::{Buf, BufMut, BytesMut};
use rusmpp::Command;
use rusmpp::decode::DecodeWithLength;
use rusmpp::encode::{Length, owned::Encode};
use tokio_util::codec::{Decoder, Encoder};

/// Largest PDU accepted: a submit or deliver with a 64 KiB message_payload.
pub const MAX_PDU: usize = 70_000;
const HEADER: usize = 16;

#[derive(Debug)]
pub enum Frame {
    Command(Box<Command>),
    /// A PDU that framed correctly but did not decode.
    Undecodable {
        command_id: u32,
        sequence: u32,
        reason: String,
    },
}

#[derive(Debug, Default)]
pub struct SmppCodec;

impl Decoder for SmppCodec {
    type Item = Frame;
    type Error = std::io::Error;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, std::io::Error> {
        if src.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_be_bytes([src[0], src[1], src[2], src[3]]) as usize;
        if !(HEADER..=MAX_PDU).contains(&len) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("command_length {len} is outside {HEADER}..={MAX_PDU}: the stream cannot be framed"),
            ));
        }
        if src.len() < len {
            src.reserve(len - src.len());
            return Ok(None);
        }
        let mut frame = src.split_to(len);
        frame.advance(4);
        let command_id = u32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]);
        let sequence = u32::from_be_bytes([frame[8], frame[9], frame[10], frame[11]]);
        let body_len = frame.len();
        match Command::decode(&mut frame, body_len) {
            Ok((command, _)) => Ok(Some(Frame::Command(Box::new(command)))),
            Err(e) => Ok(Some(Frame::Undecodable { command_id, sequence, reason: e.to_string() })),
        }
    }
}

impl Encoder<Command> for SmppCodec {
    type Error = std::io::Error;

    fn encode(&mut self, command: Command, dst: &mut BytesMut) -> Result<(), std::io::Error> {
        let len = 4 + command.length();
        dst.reserve(len);
        dst.put_u32(len as u32);
        command.encode(dst);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusmpp::{CommandStatus, Pdu};

    #[test]
    fn frames_split_and_garbage_survives() {
        let mut codec = SmppCodec;
        let mut buf = BytesMut::new();
        codec.encode(Command::new(CommandStatus::EsmeRok, 7, Pdu::EnquireLink), &mut buf).unwrap();
        // A submit_sm (0x00000004) whose body is a C-string with no NUL.
        buf.put_u32(16 + 3);
        buf.put_u32(4);
        buf.put_u32(0);
        buf.put_u32(9);
        buf.put_slice(b"abc");
        codec.encode(Command::new(CommandStatus::EsmeRok, 8, Pdu::EnquireLink), &mut buf).unwrap();
        let mut partial = buf.split_to(10);
        assert!(codec.decode(&mut partial).unwrap().is_none());
        partial.unsplit(buf);
        let mut buf = partial;
        match codec.decode(&mut buf).unwrap() {
            Some(Frame::Command(c)) => assert_eq!(c.sequence_number(), 7),
            other => panic!("{other:?}"),
        }
        match codec.decode(&mut buf).unwrap() {
            Some(Frame::Undecodable { command_id, sequence, .. }) => assert_eq!((command_id, sequence), (4, 9)),
            other => panic!("{other:?}"),
        }
        match codec.decode(&mut buf).unwrap() {
            Some(Frame::Command(c)) => assert_eq!(c.sequence_number(), 8),
            other => panic!("{other:?}"),
        }
        let mut bad = BytesMut::from(&[0u8, 0, 0, 5][..]);
        assert!(codec.decode(&mut bad).is_err());
    }

    mod props {
        use super::*;
        use proptest::prelude::*;
        use rusmpp::pdus::DeliverSm;
        use rusmpp::types::OctetString;
        use rusmpp::values::EsmClass;

        /// Every frame in `input` fed in the given pieces; the error, if the stream could not be framed.
        fn frames(input: &[u8], piece: usize) -> (Vec<Frame>, Option<std::io::Error>) {
            let mut codec = SmppCodec;
            let mut buf = BytesMut::new();
            let mut out = Vec::new();
            for chunk in input.chunks(piece.max(1)) {
                buf.extend_from_slice(chunk);
                loop {
                    match codec.decode(&mut buf) {
                        Ok(Some(frame)) => out.push(frame),
                        Ok(None) => break,
                        Err(e) => return (out, Some(e)),
                    }
                    assert_bounded(&buf);
                }
            }
            (out, None)
        }

        /// The buffer never holds more than one PDU can be.
        fn assert_bounded(buf: &BytesMut) {
            assert!(buf.len() <= MAX_PDU + 4096, "{} bytes buffered", buf.len());
        }

        /// Headers that frame (a length in range), followed by anything.
        fn framed_bytes() -> impl Strategy<Value = Vec<u8>> {
            let pdu = (any::<u32>(), any::<u32>(), any::<u32>(), prop::collection::vec(any::<u8>(), 0..80)).prop_map(
                |(id, status, seq, body)| {
                    let mut out = ((HEADER + body.len()) as u32).to_be_bytes().to_vec();
                    // Real command ids more often than not, so bodies get decoded.
                    let id =
                        if id % 4 == 0 { id } else { [4, 5, 0x103, 0x8000_0004, 0x15, 0x8000_0009][id as usize % 6] };
                    for v in [id, status, seq] {
                        out.extend(v.to_be_bytes());
                    }
                    out.extend(body);
                    out
                },
            );
            prop::collection::vec(pdu, 0..6).prop_map(|p| p.concat())
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

            #[test]
            fn framing_never_panics(bytes in prop_oneof![framed_bytes(), prop::collection::vec(any::<u8>(), 0..200)], piece in 1usize..64) {
                let (whole, err) = frames(&bytes, bytes.len());
                let (pieces, err_pieces) = frames(&bytes, piece);
                // However the reads split the stream, the same PDUs come out.
                prop_assert_eq!(format!("{whole:?}"), format!("{pieces:?}"));
                prop_assert_eq!(err.is_some(), err_pieces.is_some());
                for frame in &whole {
                    if let Frame::Command(c) = frame
                        && let Some(pdu) = c.pdu()
                        && let Some(d) = crate::channel::smpp::pdus::Delivered::from_pdu(pdu)
                    {
                        let _ = crate::channel::smpp::pdus::read(&d, crate::channel::smpp::config::GsmCoding::Gsm7, crate::channel::smpp::receipt::IdForm::Same);
                    }
                }
            }

            #[test]
            fn a_deliver_sm_reads_back_as_sent(seq: u32, esm: u8, short in prop::collection::vec(any::<u8>(), 0..255)) {
                let pdu = DeliverSm::builder()
                    .esm_class(EsmClass::from(esm))
                    .short_message(OctetString::from_slice(&short).map_err(|e| TestCaseError::fail(e.to_string()))?)
                    .build();
                let mut buf = BytesMut::new();
                SmppCodec.encode(Command::new(CommandStatus::EsmeRok, seq, Pdu::DeliverSm(pdu)), &mut buf)?;
                let (frames, err) = frames(&buf, 7);
                prop_assert!(err.is_none());
                match &frames[..] {
                    [Frame::Command(c)] => match c.pdu() {
                        Some(Pdu::DeliverSm(d)) => {
                            prop_assert_eq!(c.sequence_number(), seq);
                            let got: &[u8] = d.short_message();
                            prop_assert_eq!(got, &short[..]);
                        }
                        other => return Err(TestCaseError::fail(format!("{other:?}"))),
                    },
                    other => return Err(TestCaseError::fail(format!("{other:?}"))),
                }
            }
        }
    }
}
