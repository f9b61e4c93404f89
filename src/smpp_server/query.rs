//! `query_sm` and `cancel_sm`: the account's `message_id` read back in its
//! form, and answered from the store; an account sees and cancels only its
//! own messages (owner = its key), through the same `Store::cancel` as the API.

use super::Shared;
use super::account::AccountState;
use crate::store::CancelOutcome;
use rusmpp::pdus::QuerySmResp;
use rusmpp::types::{COctetString, EmptyOrFullCOctetString};
use rusmpp::values::MessageState;
use rusmpp::{CommandStatus, Pdu};
use std::str::FromStr;

fn id_of(account: &AccountState, raw: &str) -> Result<i64, CommandStatus> {
    account.cfg.message_id.parse(raw).ok_or(CommandStatus::EsmeRinvmsgid)
}

pub(super) async fn query(shared: &Shared, account: &AccountState, pdu: &Pdu) -> Result<Pdu, CommandStatus> {
    let Pdu::QuerySm(q) = pdu else { return Err(CommandStatus::EsmeRinvmsglen) };
    let raw = q.message_id.to_string();
    let id = id_of(account, &raw)?;
    let m = shared.store.get(id).await.map_err(|_| CommandStatus::EsmeRqueryfail)?;
    let Some(m) = m.filter(|m| m.api_key == account.api_key()) else { return Err(CommandStatus::EsmeRinvmsgid) };
    let final_date = if m.status.is_final() { crate::smpp::time::absolute(m.updated_at) } else { String::new() };
    let resp = QuerySmResp::builder()
        .message_id(COctetString::from_str(&raw).unwrap_or_default())
        .final_date(EmptyOrFullCOctetString::from_str(&final_date).unwrap_or_default())
        .message_state(MessageState::from(crate::smpp::receipt::message_state(m.status)))
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
