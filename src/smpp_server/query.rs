//! `query_sm` and `cancel_sm`: the account's `message_id` read back in its
//! form, and answered from the store; an account sees and cancels only its
//! own messages (owner = its key), through the same `Store::cancel` as the API.

use super::Shared;
use super::account::AccountState;
use crate::message::Status;
use crate::store::CancelOutcome;
use rusmpp::pdus::QuerySmResp;
use rusmpp::types::{COctetString, EmptyOrFullCOctetString};
use rusmpp::values::MessageState;
use rusmpp::{CommandStatus, Pdu};
use std::str::FromStr;

/// The SMPP message_state for a status (the shared `smpp::receipt` mapping).
pub fn message_state(s: Status) -> MessageState {
    MessageState::from(crate::smpp::receipt::message_state(s))
}

fn is_final(s: Status) -> bool {
    !matches!(s, Status::Queued | Status::Sending | Status::Submitted)
}

/// An absolute SMPP time, `YYMMDDhhmmss000+` in UTC.
pub fn smpp_time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).map(|t| t.format("%y%m%d%H%M%S000+").to_string()).unwrap_or_default()
}

fn id_of(account: &AccountState, raw: &str) -> Result<i64, CommandStatus> {
    account.cfg.message_id.parse(raw).ok_or(CommandStatus::EsmeRinvmsgid)
}

pub(super) async fn query(shared: &Shared, account: &AccountState, pdu: &Pdu) -> Result<Pdu, CommandStatus> {
    let Pdu::QuerySm(q) = pdu else { return Err(CommandStatus::EsmeRinvmsglen) };
    let raw = q.message_id.to_string();
    let id = id_of(account, &raw)?;
    let m = shared.store.get(id).await.map_err(|_| CommandStatus::EsmeRqueryfail)?;
    let Some(m) = m.filter(|m| m.api_key == account.api_key()) else { return Err(CommandStatus::EsmeRinvmsgid) };
    let final_date = if is_final(m.status) { smpp_time(m.updated_at) } else { String::new() };
    let resp = QuerySmResp::builder()
        .message_id(COctetString::from_str(&raw).unwrap_or_default())
        .final_date(EmptyOrFullCOctetString::from_str(&final_date).unwrap_or_default())
        .message_state(message_state(m.status))
        .error_code(0)
        .build();
    Ok(Pdu::QuerySmResp(resp))
}

pub(super) async fn cancel(shared: &Shared, account: &AccountState, pdu: &Pdu) -> Result<Pdu, CommandStatus> {
    let Pdu::CancelSm(c) = pdu else { return Err(CommandStatus::EsmeRinvmsglen) };
    let id = id_of(account, &c.message_id.to_string())?;
    match shared.store.cancel(id, Some(account.api_key())).await {
        Ok(CancelOutcome::Cancelled) => Ok(Pdu::CancelSmResp),
        Ok(CancelOutcome::NotFound) => Err(CommandStatus::EsmeRinvmsgid),
        Ok(CancelOutcome::TooLate(_)) | Err(_) => Err(CommandStatus::EsmeRcancelfail),
    }
}
