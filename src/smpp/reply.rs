//! Answers that carry the SMPP header only: an error response (SMPP 3.4:
//! no body when command_status is not 0) and `generic_nack`.

use rusmpp::types::AnyOctetString;
use rusmpp::{Command, CommandId, CommandStatus, Pdu};

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
    use crate::smpp::SmppFramer;
    use bytes::BytesMut;
    use tokio_util::codec::Encoder;

    #[test]
    fn header_only_response_encodes_as_bare_header() {
        let cmd = header_only_command(0x8000_0004, 0x58, 12);
        let mut f = SmppFramer::default();
        let mut out = BytesMut::new();
        f.encode(cmd, &mut out).expect("encode");
        assert_eq!(&out[..], &[0, 0, 0, 16, 0x80, 0, 0, 4, 0, 0, 0, 0x58, 0, 0, 0, 12]);
    }
}
