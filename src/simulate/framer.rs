//! SMPP framing that survives bad PDUs: split the byte stream on `command_length`, keep the header, decode the body
//! separately.
//!
//! rusmpp's stock `CommandCodec` turns an undecodable body into a stream error, which ends a `Framed` stream and with
//! it the bind. [`PduFramer`] only splits frames: a frame whose body does not decode still yields its header
//! (command_id, command_status, sequence_number), so the caller can answer `generic_nack` or an error `*_resp` and
//! keep the session. [`decode_frame`] turns a frame into a typed [`Command`].

use bytes::{Buf, BufMut, Bytes, BytesMut};
use rusmpp::decode::{DecodeError, DecodeWithLength};
use rusmpp::encode::{Length, owned::Encode};
use rusmpp::types::AnyOctetString;
use rusmpp::{Command, CommandId, CommandStatus, Pdu};
use tokio_util::codec::{Decoder, Encoder};

/// Size of the SMPP header: command_length, command_id, command_status, sequence_number.
pub const HEADER_LEN: usize = 16;

/// Largest PDU accepted by default (message_payload may carry up to 64 KiB).
pub const DEFAULT_MAX_PDU_LEN: usize = 64 * 1024 + 1024;

/// One PDU as it came off the wire: header fields plus the undecoded body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    pub command_id: u32,
    pub command_status: u32,
    pub sequence_number: u32,
    pub body: Bytes,
}

impl Frame {
    /// True for `*_resp` and `generic_nack` (bit 31 of command_id).
    pub fn is_response(&self) -> bool {
        self.command_id & 0x8000_0000 != 0
    }
}

/// What the framer yields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Inbound {
    /// A complete frame within the length bounds.
    Frame(Frame),
    /// A frame longer than the limit: its header is kept, its body is skipped (the stream stays in sync).
    Oversized { command_id: u32, sequence_number: u32, command_length: u32 },
    /// A command_length below 16: the stream cannot be resynchronised; the peer should be answered and dropped.
    BadLength { command_length: u32, command_id: u32, sequence_number: u32 },
}

/// Length-prefixed SMPP framer usable as a tokio-util `Decoder` (yielding [`Inbound`]) and `Encoder<Command>`.
#[derive(Debug)]
pub struct PduFramer {
    max_len: usize,
    /// Body bytes of an oversized frame still to be discarded.
    skip: usize,
}

impl Default for PduFramer {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_PDU_LEN)
    }
}

impl PduFramer {
    pub fn new(max_len: usize) -> Self {
        Self { max_len: max_len.max(HEADER_LEN), skip: 0 }
    }
}

fn read_u32(src: &[u8], at: usize) -> u32 {
    let mut word = [0u8; 4];
    if let Some(slice) = src.get(at..at + 4) {
        word.copy_from_slice(slice);
    }
    u32::from_be_bytes(word)
}

impl Decoder for PduFramer {
    type Item = Inbound;
    type Error = std::io::Error;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Inbound>, std::io::Error> {
        if self.skip > 0 {
            let n = self.skip.min(src.len());
            src.advance(n);
            self.skip -= n;
            if self.skip > 0 {
                return Ok(None);
            }
        }
        if src.len() < HEADER_LEN {
            return Ok(None);
        }
        let command_length = read_u32(src, 0);
        let command_id = read_u32(src, 4);
        let command_status = read_u32(src, 8);
        let sequence_number = read_u32(src, 12);
        let len = command_length as usize;
        if len < HEADER_LEN {
            // Nothing sensible can follow; drop what we have so a caller that keeps reading sees fresh bytes only.
            src.clear();
            return Ok(Some(Inbound::BadLength { command_length, command_id, sequence_number }));
        }
        if len > self.max_len {
            src.advance(HEADER_LEN);
            self.skip = len - HEADER_LEN;
            let n = self.skip.min(src.len());
            src.advance(n);
            self.skip -= n;
            return Ok(Some(Inbound::Oversized { command_id, sequence_number, command_length }));
        }
        if src.len() < len {
            src.reserve(len - src.len());
            return Ok(None);
        }
        let mut frame = src.split_to(len);
        frame.advance(HEADER_LEN);
        Ok(Some(Inbound::Frame(Frame { command_id, command_status, sequence_number, body: frame.freeze() })))
    }
}

impl Encoder<Command> for PduFramer {
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

/// Why a frame did not turn into a usable [`Command`].
#[derive(Debug)]
pub enum FrameError {
    /// rusmpp rejected the body (bad C-string, wrong TLV, short body, ...).
    Decode(DecodeError),
    /// The body was absent or not of the shape the command_id needs (e.g. a `submit_sm` with no body).
    MissingBody,
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::Decode(e) => write!(f, "undecodable body: {e}"),
            FrameError::MissingBody => f.write_str("missing or malformed body"),
        }
    }
}

impl std::error::Error for FrameError {}

/// Decodes one frame with rusmpp (`Command` as `DecodeWithLength` over header-without-length + body).
///
/// Header-only commands (enquire_link, unbind, generic_nack, ...) decode with or without stray body bytes; commands
/// that need a body fail with [`FrameError::MissingBody`] when rusmpp yields no PDU for them.
pub fn decode_frame(frame: &Frame) -> Result<Command, FrameError> {
    let mut buf = BytesMut::with_capacity(12 + frame.body.len());
    buf.put_u32(frame.command_id);
    buf.put_u32(frame.command_status);
    buf.put_u32(frame.sequence_number);
    buf.extend_from_slice(&frame.body);
    let length = buf.len();
    let (command, _) = <Command as DecodeWithLength>::decode(&mut buf, length).map_err(FrameError::Decode)?;
    if command.pdu().is_none() && !header_only(command.id()) {
        return Err(FrameError::MissingBody);
    }
    Ok(command)
}

/// Commands whose PDU has no body.
pub fn header_only(id: CommandId) -> bool {
    matches!(
        id,
        CommandId::Unbind
            | CommandId::UnbindResp
            | CommandId::EnquireLink
            | CommandId::EnquireLinkResp
            | CommandId::GenericNack
            | CommandId::CancelSmResp
            | CommandId::ReplaceSmResp
            | CommandId::CancelBroadcastSmResp
    )
}

/// A response carrying only the header (SMPP 3.4: no body when command_status is not 0).
///
/// Built as `Pdu::Other` with an empty body, which rusmpp encodes as a bare header with the given command_id.
pub fn header_only_command(id: u32, status: u32, sequence_number: u32) -> Command {
    let command_id = CommandId::from(id);
    let pdu = match command_id {
        CommandId::GenericNack => Pdu::GenericNack,
        CommandId::EnquireLinkResp => Pdu::EnquireLinkResp,
        CommandId::UnbindResp => Pdu::UnbindResp,
        CommandId::EnquireLink => Pdu::EnquireLink,
        CommandId::Unbind => Pdu::Unbind,
        _ => Pdu::Other { command_id, body: AnyOctetString::empty() },
    };
    Command::new(CommandStatus::from(status), sequence_number, pdu)
}

/// `generic_nack` with the given status and sequence number.
pub fn generic_nack(status: u32, sequence_number: u32) -> Command {
    Command::new(CommandStatus::from(status), sequence_number, Pdu::GenericNack)
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let mut f = PduFramer::default();
        let mut buf = BytesMut::new();
        let bytes = enquire_link_bytes(7);
        buf.extend_from_slice(&bytes[..10]);
        assert!(matches!(f.decode(&mut buf), Ok(None)));
        buf.extend_from_slice(&bytes[10..]);
        buf.extend_from_slice(&enquire_link_bytes(8));
        let Ok(Some(Inbound::Frame(a))) = f.decode(&mut buf) else { panic!("first frame") };
        let Ok(Some(Inbound::Frame(b))) = f.decode(&mut buf) else { panic!("second frame") };
        assert_eq!((a.command_id, a.sequence_number, b.sequence_number), (0x15, 7, 8));
        assert!(buf.is_empty());
    }

    #[test]
    fn oversized_frame_is_skipped_and_stream_stays_in_sync() {
        let mut f = PduFramer::new(100);
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&200u32.to_be_bytes());
        buf.extend_from_slice(&4u32.to_be_bytes());
        buf.extend_from_slice(&0u32.to_be_bytes());
        buf.extend_from_slice(&3u32.to_be_bytes());
        buf.extend_from_slice(&[0xAA; 50]);
        let Ok(Some(Inbound::Oversized { command_id: 4, sequence_number: 3, command_length: 200 })) =
            f.decode(&mut buf)
        else {
            panic!("oversized")
        };
        assert!(matches!(f.decode(&mut buf), Ok(None)));
        buf.extend_from_slice(&[0xAA; 134]);
        buf.extend_from_slice(&enquire_link_bytes(9));
        let Ok(Some(Inbound::Frame(fr))) = f.decode(&mut buf) else { panic!("frame after skip") };
        assert_eq!(fr.sequence_number, 9);
    }

    #[test]
    fn bad_length_is_reported() {
        let mut f = PduFramer::default();
        let mut buf = BytesMut::from(&[0, 0, 0, 5, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 1][..]);
        assert!(matches!(f.decode(&mut buf), Ok(Some(Inbound::BadLength { command_length: 5, .. }))));
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
            let frame = Frame { command_id: id, command_status: 0, sequence_number: 1, body: Bytes::from(body) };
            let _ = decode_frame(&frame);
        }
    }

    #[test]
    fn header_only_response_encodes_as_bare_header() {
        let cmd = header_only_command(0x8000_0004, 0x58, 12);
        let mut f = PduFramer::default();
        let mut out = BytesMut::new();
        f.encode(cmd, &mut out).expect("encode");
        assert_eq!(&out[..], &[0, 0, 0, 16, 0x80, 0, 0, 4, 0, 0, 0, 0x58, 0, 0, 0, 12]);
    }
}
