//! `query_sm` and `cancel_sm`: the account's `message_id` read back in its
//! form, and answered from the store; an account sees and cancels only its
//! own messages (owner = its key), through the same `Store::cancel` as the
//! API, and without a `message_id` all its queued messages from one source
//! to one destination, through the API's bulk cancel (`Store::cancel_matching`).

use super::Shared;
use super::account::AccountState;
use crate::store::{CancelFilter, CancelOutcome};
use rusmpp::pdus::{CancelSm, QuerySmResp};
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
    let raw = c.message_id.to_string();
    if raw.is_empty() {
        return cancel_all(shared, account, c).await;
    }
    let id = id_of(account, &raw)?;
    match shared.store.cancel(id, Some(account.api_key())).await {
        Ok(CancelOutcome::Cancelled) => Ok(Pdu::CancelSmResp),
        Ok(CancelOutcome::NotFound) => Err(CommandStatus::EsmeRinvmsgid),
        Ok(CancelOutcome::TooLate(_)) | Err(_) => Err(CommandStatus::EsmeRcancelfail),
    }
}

/// `cancel_sm` without a `message_id` (SMPP 3.4 §4.9): every message of the
/// account still queued from `source_addr` (an empty one: sent without a
/// sender) to `destination_addr`, which is required. `service_type` is not
/// stored, so it does not narrow the set. Nothing to cancel is
/// ESME_RCANCELFAIL.
async fn cancel_all(shared: &Shared, account: &AccountState, c: &CancelSm) -> Result<Pdu, CommandStatus> {
    let dest = c.destination_addr.to_string();
    if dest.is_empty() {
        return Err(CommandStatus::EsmeRinvdstadr);
    }
    let to = super::submit::recipient(c.dest_addr_ton, &dest, &shared.default_region)
        .map_err(|_| CommandStatus::EsmeRinvdstadr)?;
    let source = c.source_addr.to_string();
    let detail = format!(
        "cancelled through SMPP by account {:?} (cancel_sm of all queued from {} to {to})",
        account.cfg.system_id,
        if source.is_empty() { "no sender".to_string() } else { format!("{source:?}") }
    );
    let filter = CancelFilter {
        api_key: Some(account.api_key()),
        recipient: Some(to),
        sender: Some((!source.is_empty()).then_some(source)),
        ..CancelFilter::default()
    };
    match shared.store.cancel_matching(filter, detail).await {
        Ok(0) | Err(_) => Err(CommandStatus::EsmeRcancelfail),
        Ok(n) => {
            tracing::info!(system_id = %account.cfg.system_id, cancelled = n, "SMPP cancel_sm of all queued to a number");
            Ok(Pdu::CancelSmResp)
        }
    }
}
