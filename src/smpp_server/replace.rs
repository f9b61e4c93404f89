//! `replace_sm` (SMPP 3.4 §4.10): an account rewrites one of its own
//! messages while it still waits in the queue (`queued`, no part yet with a
//! route). The new text is read like a submit's and planned by the same
//! `sms` rules (refused over the site's `max_segments`); a non-empty
//! `schedule_delivery_time` or `validity_period` replaces the message's
//! (absolute or relative, as in a submit), an empty one keeps it; its
//! `registered_delivery` replaces the receipt bits. `replace_sm` carries no
//! `data_coding`: its user data is read in the alphabet of the message it
//! replaces (UCS-2 when that text needed UCS-2, else the GSM 7-bit default
//! alphabet). The check and the change are one store transaction
//! (`Store::replace`), so a lane claiming the message at the same moment
//! either sends the old text or the new one, never a mixture.

use super::Shared;
use super::account::AccountState;
use super::submit::{Refused, time_field, within_limit};
use crate::sms::Encoding;
use crate::store::{ReplaceOutcome, Replacement};
use rusmpp::tlvs::TlvValue;
use rusmpp::{CommandStatus, Pdu};

/// Answer a `replace_sm` with `replace_sm_resp` or the refusal's status.
pub(super) async fn replace(shared: &Shared, account: &AccountState, pdu: &Pdu) -> Result<Pdu, CommandStatus> {
    let Pdu::ReplaceSm(r) = pdu else { return Err(CommandStatus::EsmeRinvmsglen) };
    let raw = r.message_id.to_string();
    match run(shared, account, r).await {
        Ok(()) => Ok(Pdu::ReplaceSmResp),
        Err(Refused(status, why)) => {
            tracing::info!(system_id = %account.cfg.system_id, message_id = raw, status = ?status, why, "SMPP replace_sm refused");
            Err(status)
        }
    }
}

async fn run(shared: &Shared, account: &AccountState, r: &rusmpp::pdus::ReplaceSm) -> Result<(), Refused> {
    let raw = r.message_id.to_string();
    let not_found = || Refused(CommandStatus::EsmeRinvmsgid, "no such message of the account's".into());
    let id = account.cfg.message_id.parse(&raw).ok_or_else(not_found)?;
    let store_err = |e: crate::store::StoreError| Refused(CommandStatus::EsmeRreplacefail, format!("store: {e}"));
    // The alphabet of the text it replaces: replace_sm names none.
    let current = shared.store.get(id).await.map_err(store_err)?;
    let current = current.filter(|m| m.api_key == account.api_key()).ok_or_else(not_found)?;
    let coding = if Encoding::parse(&current.encoding) == Some(Encoding::Ucs2) { 0x08 } else { 0x00 };
    let data = match r.message_payload_tlv().and_then(|t| t.value()) {
        Some(TlvValue::MessagePayload(p)) => p.value.as_ref(),
        _ => r.short_message().as_ref(),
    };
    let text = crate::sms::text::decode_text(coding, data)
        .ok_or_else(|| Refused(CommandStatus::EsmeRinvdcs, format!("data_coding 0x{coding:02x} carries no text")))?;
    if text.is_empty() {
        return Err(Refused(CommandStatus::EsmeRinvmsglen, "empty message".into()));
    }
    let (encoding, segments) = crate::sms::count_parts(&text);
    within_limit(segments, shared.max_segments)?;
    let now = crate::message::now_ms();
    let schedule = r.schedule_delivery_time.to_string();
    let send_at = time_field("schedule_delivery_time", &schedule, now, CommandStatus::EsmeRinvsched)?;
    let valid_until =
        time_field("validity_period", &r.validity_period.to_string(), now, CommandStatus::EsmeRinvexpiry)?;
    let source = r.source_addr.to_string();
    let replacement = Replacement {
        owner: account.api_key(),
        from: (!source.is_empty()).then_some(source),
        text,
        encoding,
        segments: segments as u32,
        send_at,
        valid_until,
        receipt: u8::from(r.registered_delivery) & 0x03,
        by: format!("through SMPP by account {:?}", account.cfg.system_id),
    };
    match shared.store.replace(id, replacement).await.map_err(store_err)? {
        ReplaceOutcome::Replaced { route } => {
            shared.dispatcher.wake(&route);
            Ok(())
        }
        ReplaceOutcome::NotFound => Err(not_found()),
        ReplaceOutcome::TooLate(status) => {
            Err(Refused(CommandStatus::EsmeRreplacefail, format!("the message is {} already", status.as_str())))
        }
        ReplaceOutcome::Underway => Err(Refused(
            CommandStatus::EsmeRreplacefail,
            "the message is under way (parts with a route, or parts still to join)".into(),
        )),
        ReplaceOutcome::OtherSender => {
            Err(Refused(CommandStatus::EsmeRreplacefail, "source_addr is not the message's sender".into()))
        }
        ReplaceOutcome::ExpiresBeforeDue => {
            Err(Refused(CommandStatus::EsmeRinvexpiry, "validity_period ends before the message is due".into()))
        }
    }
}
