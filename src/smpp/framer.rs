//! SMPP framing that survives bad PDUs: split the byte stream by `command_length`, keep each PDU's header, decode
//! its body apart.
//!
//! rusmpp's stock `CommandCodec` turns an undecodable body into a stream error, which ends a `Framed` stream and with
//! it the bind. [`SmppFramer`] only splits: a PDU whose body does not decode still has its header (command_id,
//! command_status, sequence_number), so the caller can answer `generic_nack` or an error `*_resp` and keep the bind.
//! A PDU longer than the framer's limit yields its header and its body is skipped (the stream stays in step); the
//! caller decides whether to answer it or to drop the peer. Only a `command_length` below the header's own 16 octets
//! breaks the framing: that ends the stream with [`FramingError::Length`].
//!
//! On the write side, [`write_burst`] sends what a writer has queued when it wakes in one write.

use bytes::{Buf, BufMut, BytesMut};
use futures::{Sink, SinkExt};
use rusmpp::Command;
use rusmpp::decode::{DecodeError, DecodeWithLength};
use rusmpp::encode::{Length, owned::Encode};
use tokio_util::codec::{Decoder, Encoder};

/// Write `first` and every further command `more` has ready, then flush once: what is queued when a writer wakes
/// goes out in one write (under load one system call, and over TLS one record, for many PDUs instead of one each);
/// when idle a PDU still goes out at once.
pub async fn write_burst<S>(
    out: &mut S,
    first: Command,
    mut more: impl FnMut() -> Option<Command>,
) -> Result<(), S::Error>
where
    S: Sink<Command> + Unpin,
{
    out.feed(first).await?;
    while let Some(c) = more() {
        out.feed(c).await?;
    }
    // One turn for the tasks that feed this writer (a lane handing out
    // submits, receipts answered after their commit): what they add now
    // shares the write instead of costing one of its own.
    tokio::task::yield_now().await;
    while let Some(c) = more() {
        out.feed(c).await?;
    }
    out.flush().await
}

/// Size of the SMPP header: command_length, command_id, command_status, sequence_number.
pub const HEADER_LEN: usize = 16;

/// Largest PDU accepted by default: a submit or deliver with a 64 KiB message_payload.
pub const MAX_PDU: usize = 70_000;

/// One PDU as it came off the wire: its header fields and its bytes, not yet decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawPdu {
    pub command_id: u32,
    pub command_status: u32,
    pub sequence_number: u32,
    /// The PDU after its command_length: the other three header fields, then the body.
    frame: BytesMut,
}

impl RawPdu {
    /// A PDU with these header fields and `body`.
    pub fn new(command_id: u32, command_status: u32, sequence_number: u32, body: &[u8]) -> RawPdu {
        let mut frame = BytesMut::with_capacity(12 + body.len());
        frame.put_u32(command_id);
        frame.put_u32(command_status);
        frame.put_u32(sequence_number);
        frame.extend_from_slice(body);
        RawPdu { command_id, command_status, sequence_number, frame }
    }

    /// The body, after the header.
    pub fn body(&self) -> &[u8] {
        &self.frame[12..]
    }

    /// True for `*_resp` and `generic_nack` (bit 31 of command_id).
    pub fn is_response(&self) -> bool {
        self.command_id & 0x8000_0000 != 0
    }

    /// The PDU as a typed [`Command`], decoded where it lies (rusmpp's `DecodeWithLength` over the header without
    /// its length, and the body). A command whose body rusmpp does not know, or that needs a body and has none, may
    /// decode with no PDU.
    pub fn into_command(mut self) -> Result<Command, DecodeError> {
        let length = self.frame.len();
        <Command as DecodeWithLength>::decode(&mut self.frame, length).map(|(command, _)| command)
    }

    /// [`RawPdu::into_command`] for a caller that keeps the PDU (it decodes a copy).
    pub fn decode(&self) -> Result<Command, DecodeError> {
        self.clone().into_command()
    }
}

/// What the framer yields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SmppFrame {
    /// A complete PDU within the length limit.
    Pdu(RawPdu),
    /// A PDU longer than the limit: its header is kept, its body is skipped (the stream stays in step).
    Oversized { command_id: u32, sequence_number: u32, command_length: u32 },
}

/// Why the stream cannot be read on.
#[derive(Debug, thiserror::Error)]
pub enum FramingError {
    /// A command_length the framing cannot follow. The header fields after the length are given when they had
    /// arrived (they may be anything: the PDU is broken).
    #[error("command_length {command_length} is outside {HEADER_LEN}..={max}: the stream cannot be framed")]
    Length { command_length: u32, max: usize, command_id: Option<u32>, sequence_number: Option<u32> },
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Length-prefixed SMPP framer: a tokio-util `Decoder` yielding [`SmppFrame`]s and an `Encoder<Command>`.
#[derive(Debug)]
pub struct SmppFramer {
    max_len: usize,
    /// Body bytes of an oversized PDU still to be discarded.
    skip: usize,
}

impl Default for SmppFramer {
    fn default() -> Self {
        Self::new(MAX_PDU)
    }
}

impl SmppFramer {
    /// A framer that takes PDUs of up to `max_len` octets (at least a header).
    pub fn new(max_len: usize) -> Self {
        Self { max_len: max_len.max(HEADER_LEN), skip: 0 }
    }

    /// The largest PDU this framer takes whole.
    pub fn max_len(&self) -> usize {
        self.max_len
    }
}

fn read_u32(src: &[u8], at: usize) -> Option<u32> {
    let word: [u8; 4] = src.get(at..at + 4)?.try_into().ok()?;
    Some(u32::from_be_bytes(word))
}

impl Decoder for SmppFramer {
    type Item = SmppFrame;
    type Error = FramingError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<SmppFrame>, FramingError> {
        if self.skip > 0 {
            let n = self.skip.min(src.len());
            src.advance(n);
            self.skip -= n;
            if self.skip > 0 {
                return Ok(None);
            }
        }
        let Some(command_length) = read_u32(src, 0) else { return Ok(None) };
        let len = command_length as usize;
        if len < HEADER_LEN {
            return Err(FramingError::Length {
                command_length,
                max: self.max_len,
                command_id: read_u32(src, 4),
                sequence_number: read_u32(src, 12),
            });
        }
        if src.len() < HEADER_LEN {
            return Ok(None);
        }
        let command_id = read_u32(src, 4).unwrap_or_default();
        let command_status = read_u32(src, 8).unwrap_or_default();
        let sequence_number = read_u32(src, 12).unwrap_or_default();
        if len > self.max_len {
            src.advance(HEADER_LEN);
            self.skip = len - HEADER_LEN;
            let n = self.skip.min(src.len());
            src.advance(n);
            self.skip -= n;
            return Ok(Some(SmppFrame::Oversized { command_id, sequence_number, command_length }));
        }
        if src.len() < len {
            src.reserve(len - src.len());
            return Ok(None);
        }
        let mut frame = src.split_to(len);
        frame.advance(4);
        Ok(Some(SmppFrame::Pdu(RawPdu { command_id, command_status, sequence_number, frame })))
    }
}

impl Encoder<Command> for SmppFramer {
    type Error = std::io::Error;

    fn encode(&mut self, command: Command, dst: &mut BytesMut) -> Result<(), std::io::Error> {
        let total = 4 + command.length();
        let total32 = u32::try_from(total)
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "PDU longer than 4 GiB"))?;
        dst.reserve(total);
        dst.put_u32(total32);
        command.encode(dst);
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use rusmpp::{CommandStatus, Pdu};

    fn enquire_link_bytes(seq: u32) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&16u32.to_be_bytes());
        v.extend_from_slice(&0x15u32.to_be_bytes());
        v.extend_from_slice(&0u32.to_be_bytes());
        v.extend_from_slice(&seq.to_be_bytes());
        v
    }

    #[test]
    fn splits_frames_and_waits_for_more() {
        let mut f = SmppFramer::default();
        let mut buf = BytesMut::new();
        let bytes = enquire_link_bytes(7);
        buf.extend_from_slice(&bytes[..10]);
        assert!(matches!(f.decode(&mut buf), Ok(None)));
        buf.extend_from_slice(&bytes[10..]);
        buf.extend_from_slice(&enquire_link_bytes(8));
        let Ok(Some(SmppFrame::Pdu(a))) = f.decode(&mut buf) else { panic!("first frame") };
        let Ok(Some(SmppFrame::Pdu(b))) = f.decode(&mut buf) else { panic!("second frame") };
        assert_eq!((a.command_id, a.sequence_number, b.sequence_number), (0x15, 7, 8));
        assert!(buf.is_empty());
    }

    #[test]
    fn frames_split_and_garbage_survives() {
        let mut framer = SmppFramer::default();
        let mut buf = BytesMut::new();
        framer.encode(Command::new(CommandStatus::EsmeRok, 7, Pdu::EnquireLink), &mut buf).unwrap();
        // A submit_sm (0x00000004) whose body is a C-string with no NUL.
        buf.put_u32(16 + 3);
        buf.put_u32(4);
        buf.put_u32(0);
        buf.put_u32(9);
        buf.put_slice(b"abc");
        framer.encode(Command::new(CommandStatus::EsmeRok, 8, Pdu::EnquireLink), &mut buf).unwrap();
        let mut partial = buf.split_to(10);
        assert!(framer.decode(&mut partial).unwrap().is_none());
        partial.unsplit(buf);
        let mut buf = partial;
        match framer.decode(&mut buf).unwrap() {
            Some(SmppFrame::Pdu(p)) => assert_eq!(p.decode().unwrap().sequence_number(), 7),
            other => panic!("{other:?}"),
        }
        match framer.decode(&mut buf).unwrap() {
            Some(SmppFrame::Pdu(p)) if p.decode().is_err() => assert_eq!((p.command_id, p.sequence_number), (4, 9)),
            other => panic!("{other:?}"),
        }
        match framer.decode(&mut buf).unwrap() {
            Some(SmppFrame::Pdu(p)) => assert_eq!(p.decode().unwrap().sequence_number(), 8),
            other => panic!("{other:?}"),
        }
        let mut bad = BytesMut::from(&[0u8, 0, 0, 5][..]);
        assert!(framer.decode(&mut bad).is_err());
    }

    #[test]
    fn oversized_frame_is_skipped_and_stream_stays_in_sync() {
        let mut f = SmppFramer::new(100);
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&200u32.to_be_bytes());
        buf.extend_from_slice(&4u32.to_be_bytes());
        buf.extend_from_slice(&0u32.to_be_bytes());
        buf.extend_from_slice(&3u32.to_be_bytes());
        buf.extend_from_slice(&[0xAA; 50]);
        let Ok(Some(SmppFrame::Oversized { command_id: 4, sequence_number: 3, command_length: 200 })) =
            f.decode(&mut buf)
        else {
            panic!("oversized")
        };
        assert!(matches!(f.decode(&mut buf), Ok(None)));
        buf.extend_from_slice(&[0xAA; 134]);
        buf.extend_from_slice(&enquire_link_bytes(9));
        let Ok(Some(SmppFrame::Pdu(fr))) = f.decode(&mut buf) else { panic!("frame after skip") };
        assert_eq!(fr.sequence_number, 9);
    }

    #[test]
    fn bad_length_is_reported() {
        let mut f = SmppFramer::default();
        let mut buf = BytesMut::from(&[0, 0, 0, 5, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 1][..]);
        assert!(matches!(
            f.decode(&mut buf),
            Err(FramingError::Length { command_length: 5, command_id: Some(4), sequence_number: Some(1), .. })
        ));
    }

    #[test]
    fn random_bodies_never_panic_the_decoder() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(42);
        let ids: [u32; 12] = [0x01, 0x02, 0x09, 0x04, 0x05, 0x103, 0x80000004, 0x80000005, 0x15, 0x06, 0x21, 0x03];
        for _ in 0..20_000 {
            let len = rng.random_range(0..300usize);
            let mut body: Vec<u8> = (0..len).map(|_| rng.random()).collect();
            // Bias towards mostly-printable bodies so decoding gets deeper into the PDUs.
            if rng.random_bool(0.5) {
                for b in body.iter_mut() {
                    if rng.random_bool(0.8) {
                        *b = rng.random_range(0x20..0x7f);
                    } else if rng.random_bool(0.5) {
                        *b = 0;
                    }
                }
            }
            let id = ids[rng.random_range(0..ids.len())];
            let pdu = RawPdu::new(id, 0, 1, &body);
            let _ = pdu.decode();
        }
    }

    pub(crate) mod props {
        use super::*;
        use proptest::prelude::*;
        use rusmpp::pdus::DeliverSm;
        use rusmpp::types::OctetString;
        use rusmpp::values::EsmClass;

        /// Every frame in `input` fed in the given pieces; the error, if the stream could not be framed.
        pub(crate) fn frames(input: &[u8], piece: usize) -> (Vec<SmppFrame>, Option<FramingError>) {
            let mut framer = SmppFramer::default();
            let mut buf = BytesMut::new();
            let mut out = Vec::new();
            for chunk in input.chunks(piece.max(1)) {
                buf.extend_from_slice(chunk);
                loop {
                    match framer.decode(&mut buf) {
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
        pub(crate) fn framed_bytes() -> impl Strategy<Value = Vec<u8>> {
            let pdu = (any::<u32>(), any::<u32>(), any::<u32>(), prop::collection::vec(any::<u8>(), 0..80)).prop_map(
                |(id, status, seq, body)| {
                    let mut out = ((HEADER_LEN + body.len()) as u32).to_be_bytes().to_vec();
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
                    if let SmppFrame::Pdu(p) = frame {
                        let _ = p.decode();
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
                SmppFramer::default().encode(Command::new(CommandStatus::EsmeRok, seq, Pdu::DeliverSm(pdu)), &mut buf)?;
                let (frames, err) = frames(&buf, 7);
                prop_assert!(err.is_none());
                match &frames[..] {
                    [SmppFrame::Pdu(p)] => {
                        let c = p.decode().map_err(|e| TestCaseError::fail(e.to_string()))?;
                        match c.pdu() {
                            Some(Pdu::DeliverSm(d)) => {
                                prop_assert_eq!(c.sequence_number(), seq);
                                let got: &[u8] = d.short_message();
                                prop_assert_eq!(got, &short[..]);
                            }
                            other => return Err(TestCaseError::fail(format!("{other:?}"))),
                        }
                    }
                    other => return Err(TestCaseError::fail(format!("{other:?}"))),
                }
            }
        }
    }
}
