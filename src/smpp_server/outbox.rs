//! Receipts to accounts, durable until acknowledged: the store fans each
//! final status of an account's message into an `smpp_outbox` row; this
//! task offers due rows as `deliver_sm` (appendix-B text with the
//! `receipted_message_id` and `message_state` TLVs) to one of the account's
//! receiver or transceiver binds, one at a time per account so a message's
//! receipts keep their order, and records the answer: OK done; an error, a
//! timeout or no bind, offered again later; dead only after the configured
//! hours.

use super::Shared;
use crate::message::Status;
use crate::smpp::receipt::{self, ReceiptText};
use crate::store::OwedReceipt;
use rusmpp::pdus::DeliverSm;
use rusmpp::tlvs::MessageDeliveryRequestTlvValue;
use rusmpp::types::{COctetString, OctetString};
use rusmpp::values::{DataCoding, EsmClass, MessageState, Npi, Ton};
use rusmpp::{Command, CommandStatus, Pdu};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

const LEASE_MS: i64 = 30_000;
const ANSWER_WITHIN: Duration = Duration::from_secs(10);

/// The receipt's `deliver_sm` (appendix-B text by the shared
/// `smpp::receipt`), with `message_id` in the account's form.
pub fn receipt_pdu(r: &OwedReceipt, message_id: &str) -> DeliverSm {
    let state = receipt::message_state(Status::parse(&r.status).unwrap_or(Status::Undelivered));
    let err = r.error_code.as_deref().and_then(|e| e.parse::<u32>().ok()).unwrap_or(0).min(999);
    let body = receipt::build(&ReceiptText {
        id: message_id.to_string(),
        sub: Some("001".into()),
        dlvrd: Some(if state == receipt::DELIVERED { "001" } else { "000" }.into()),
        submit_date: Some(receipt::date(r.created_at)),
        done_date: Some(receipt::date(r.updated_at)),
        stat: receipt::stat_word(state).into(),
        err: Some(format!("{err:03}")),
        text: Some(r.text.chars().take(20).collect()),
    });
    let bytes = body.as_bytes();
    let to = r.to.trim_start_matches('+');
    let from = r.from.clone().unwrap_or_default();
    let from_ton =
        if from.chars().all(|c| c.is_ascii_digit() || c == '+') { Ton::International } else { Ton::Alphanumeric };
    let mut b = DeliverSm::builder()
        .source_addr_ton(Ton::International)
        .source_addr_npi(Npi::Isdn)
        .source_addr(COctetString::from_str(to).unwrap_or_default())
        .dest_addr_ton(from_ton)
        .dest_addr_npi(Npi::Unknown)
        .destination_addr(COctetString::from_str(from.trim_start_matches('+')).unwrap_or_default())
        .esm_class(EsmClass::from(0x04))
        .data_coding(DataCoding::from(0))
        .short_message(OctetString::from_slice(bytes.get(..255).unwrap_or(bytes)).unwrap_or_default());
    if let Ok(id) = COctetString::<1, 65>::from_str(message_id) {
        b = b.push_tlv(MessageDeliveryRequestTlvValue::ReceiptedMessageId(id));
    }
    b.push_tlv(MessageDeliveryRequestTlvValue::MessageState(MessageState::from(state))).build()
}

/// Fan out and deliver until the server stops.
pub(super) async fn run(shared: Arc<Shared>) {
    let retry_ms = (shared.receipt_retry.as_millis() as i64).max(1000);
    let dead_ms = shared.receipt_dead_after.as_millis() as i64;
    let accounts: Vec<String> = shared.accounts.keys().cloned().collect();
    loop {
        tokio::select! {
            _ = shared.cancel.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
        if let Err(e) = shared.store.smpp_fan_out(accounts.clone(), 2000).await {
            tracing::warn!(error = %e, "SMPP receipts: fan-out failed; will try again");
            continue;
        }
        for (system_id, account) in &shared.accounts {
            let Some(bind) = shared.receiver(system_id) else { continue };
            let owed = match shared.store.smpp_claim(system_id.clone(), 100, LEASE_MS).await {
                Ok(o) => o,
                Err(e) => {
                    tracing::warn!(error = %e, "SMPP receipts: claim failed");
                    continue;
                }
            };
            let mut owed = owed.into_iter();
            while let Some(r) = owed.next() {
                let mid = account.cfg.message_id.format(r.message_id);
                let seq = bind.next_seq();
                let answer =
                    bind.request(Command::new(CommandStatus::EsmeRok, seq, Pdu::DeliverSm(receipt_pdu(&r, &mid))));
                let waited = tokio::select! {
                    // Stopping: the lease brings it back after a restart (at least once).
                    _ = shared.cancel.cancelled() => return,
                    w = tokio::time::timeout(ANSWER_WITHIN, answer) => w,
                };
                let result = match waited {
                    Ok(Ok(0)) => Ok(()),
                    Ok(Ok(status)) => Err(format!("deliver_sm_resp status 0x{status:08x}")),
                    Ok(Err(_)) => Err("the bind ended before it answered".to_string()),
                    Err(_) => Err("no deliver_sm_resp in time".to_string()),
                };
                let failed = result.is_err();
                if let Err(e) = shared.store.smpp_record(r.id, result, retry_ms, dead_ms).await {
                    tracing::warn!(error = %e, "SMPP receipts: recording failed; the receipt will be offered again");
                }
                if failed {
                    // The rest wait as long as this one, so they come back after it, in order.
                    for rest in owed.by_ref() {
                        let why = Err("held behind an earlier receipt".to_string());
                        let _ = shared.store.smpp_record(rest.id, why, retry_ms + 1, dead_ms).await;
                    }
                }
            }
        }
    }
}
