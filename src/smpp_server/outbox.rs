//! Receipts to accounts, durable until acknowledged: the store fans each
//! final status of an account's message into an `smpp_outbox` row; this
//! task offers due rows as `deliver_sm` (appendix-B text with the
//! `receipted_message_id` and `message_state` TLVs) to one of the account's
//! receiver or transceiver binds, in the order they were made, up to a
//! window awaiting answers at once, and records the answers together: OK
//! done; an error, a timeout or no bind, offered again later; dead only
//! after the configured hours. Inbound messages routed to the account (`inbound`) go the same
//! way as plain `deliver_sm`s. The task is woken by the store's commits
//! of events and by a new receiving bind, with a slow poll besides.

use super::account::AccountState;
use super::{Receiver, Shared};
use crate::message::Status;
use crate::smpp::receipt::{self, ReceiptText};
use crate::store::{OwedInbound, OwedReceipt};
use rusmpp::pdus::DeliverSm;
use rusmpp::tlvs::MessageDeliveryRequestTlvValue;
use rusmpp::types::{AnyOctetString, COctetString, OctetString};
use rusmpp::values::{DataCoding, EsmClass, MessagePayload, MessageState, Npi, Ton};
use rusmpp::{Command, CommandStatus, Pdu};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
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
        text: Some(receipt::text_head(&r.text)),
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

/// An inbound message's `deliver_sm`: from its sender to the number it was
/// sent to, `esm_class` default, the text in GSM-7 when it fits (else
/// UCS-2); a text longer than `short_message` holds (254 octets) goes whole
/// in `message_payload`, never split, so the account gets one message.
pub fn inbound_pdu(m: &OwedInbound) -> DeliverSm {
    let (coding, bytes) = match crate::sms::text::encode_gsm7_unpacked(&m.text) {
        Some(b) => (0x00, b),
        None => (0x08, crate::sms::text::encode_ucs2(&m.text)),
    };
    let ton = |a: &str| {
        if !a.is_empty() && a.chars().all(|c| c.is_ascii_digit() || c == '+') {
            (Ton::International, Npi::Isdn)
        } else {
            (Ton::Alphanumeric, Npi::Unknown)
        }
    };
    let addr = |a: &str| COctetString::<1, 21>::from_str(a.trim_start_matches('+')).unwrap_or_default();
    let (from_ton, from_npi) = ton(&m.from);
    let (to_ton, to_npi) = ton(&m.to);
    let b = DeliverSm::builder()
        .source_addr_ton(from_ton)
        .source_addr_npi(from_npi)
        .source_addr(addr(&m.from))
        .dest_addr_ton(to_ton)
        .dest_addr_npi(to_npi)
        .destination_addr(addr(&m.to))
        .esm_class(EsmClass::from(0x00))
        .data_coding(DataCoding::from(coding));
    match OctetString::<0, 255>::from_slice(&bytes) {
        Ok(short) if bytes.len() <= 254 => b.short_message(short).build(),
        _ => b
            .push_tlv(MessageDeliveryRequestTlvValue::MessagePayload(MessagePayload::new(AnyOctetString::from_vec(
                bytes,
            ))))
            .build(),
    }
}

/// Rows claimed at once per account and kind.
const CLAIM: usize = 1000;
/// `deliver_sm`s awaiting their answer at once on a bind (SMPP's window).
const WINDOW: usize = 256;
/// Events fanned out per transaction.
const FAN_OUT: usize = 2000;
/// How often the outbox looks without being woken: for rows that came due
/// after a retry's wait, and as a safety net.
const POLL: Duration = Duration::from_secs(1);
/// How long a wake by the store waits for more commits to gather.
const GATHER: Duration = Duration::from_millis(100);

/// Offer one `deliver_sm` to `bind` and wait for its answer: `Ok` on an
/// OK `deliver_sm_resp`, else why not.
async fn offer(shared: &Shared, bind: &Receiver, pdu: DeliverSm) -> Option<Result<(), String>> {
    let answer = bind.request(Command::new(CommandStatus::EsmeRok, bind.next_seq(), Pdu::DeliverSm(pdu)));
    let waited = tokio::select! {
        // Stopping: the lease brings it back after a restart (at least once).
        _ = shared.cancel.cancelled() => return None,
        w = tokio::time::timeout(ANSWER_WITHIN, answer) => w,
    };
    Some(match waited {
        Ok(Ok(0)) => Ok(()),
        Ok(Ok(status)) => Err(format!("deliver_sm_resp status 0x{status:08x}")),
        Ok(Err(_)) => Err("the bind ended before it answered".to_string()),
        Err(_) => Err("no deliver_sm_resp in time".to_string()),
    })
}

/// Fan out and deliver until the server stops: woken by the store when a
/// commit wrote events (after a moment for a burst to gather) and by a new
/// receiving bind, and every second besides; again at once while there is
/// more to do.
pub(super) async fn run(shared: Arc<Shared>) {
    let retry_ms = (shared.receipt_retry.as_millis() as i64).max(1000);
    let dead_ms = shared.receipt_dead_after.as_millis() as i64;
    let accounts: Vec<String> = shared.accounts.keys().cloned().collect();
    let events = shared.store.smpp_outbox_notify();
    let mut more = false;
    loop {
        if !more {
            tokio::select! {
                _ = shared.cancel.cancelled() => return,
                _ = events.notified() => {
                    // Let a burst of commits gather into one fan-out.
                    tokio::select! {
                        _ = shared.cancel.cancelled() => return,
                        _ = tokio::time::sleep(GATHER) => {}
                    }
                }
                _ = shared.bound.notified() => {}
                _ = tokio::time::sleep(POLL) => {}
            }
        }
        more = false;
        match shared.store.smpp_fan_out(accounts.clone(), shared.inbound.clone(), FAN_OUT).await {
            // A full batch: more events wait behind it.
            Ok((_, read)) => more = read == FAN_OUT,
            Err(e) => {
                tracing::warn!(error = %e, "SMPP outbox: fan-out failed; will try again");
                continue;
            }
        }
        for (system_id, account) in &shared.accounts {
            let Some(bind) = shared.receiver(system_id) else { continue };
            for kind in [Owed::Receipts, Owed::Inbound] {
                match deliver(&shared, &bind, account, kind, retry_ms, dead_ms).await {
                    None => return,
                    Some(full) => more |= full,
                }
            }
        }
    }
}

/// What an account is owed: receipts of its messages, or inbound messages
/// routed to it.
#[derive(Debug, Clone, Copy)]
enum Owed {
    Receipts,
    Inbound,
}

/// One claim of what an account is owed of `kind`, offered; whether the
/// claim was full (more may be due). None when the server stops.
async fn deliver(
    shared: &Shared,
    bind: &Receiver,
    account: &AccountState,
    kind: Owed,
    retry_ms: i64,
    dead_ms: i64,
) -> Option<bool> {
    let system_id = account.cfg.system_id.clone();
    let claimed: Result<Vec<(i64, DeliverSm)>, _> = match kind {
        Owed::Receipts => shared.store.smpp_claim(system_id, CLAIM, LEASE_MS).await.map(|owed| {
            owed.iter().map(|r| (r.id, receipt_pdu(r, &account.cfg.message_id.format(r.message_id)))).collect()
        }),
        Owed::Inbound => shared
            .store
            .smpp_claim_inbound(system_id, CLAIM, LEASE_MS)
            .await
            .map(|owed| owed.iter().map(|m| (m.id, inbound_pdu(m))).collect()),
    };
    let pdus = match claimed {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(error = %e, owed = ?kind, "SMPP outbox: claim failed");
            return Some(false);
        }
    };
    let full = pdus.len() == CLAIM;
    let (delivered, stopping) = offer_all(shared, bind, pdus, retry_ms, dead_ms, kind).await;
    let counter = match kind {
        Owed::Receipts => &account.receipts_delivered,
        Owed::Inbound => &account.inbound_delivered,
    };
    counter.fetch_add(delivered, Ordering::Relaxed);
    (!stopping).then_some(full)
}

/// Offer a claim's rows on `bind` in the claim's order, up to `WINDOW`
/// awaiting their `deliver_sm_resp` at once, and record every answer in one
/// transaction: OK done; an error, no answer in time or the bind's end,
/// offered again after the retry wait (each row is one message's final
/// receipt or one inbound message, so a retry reorders nothing within a
/// message). Returns how many the store now has as delivered, and whether
/// the server is stopping (rows not answered then come back with their
/// lease after a restart: at least once).
async fn offer_all(
    shared: &Shared,
    bind: &Receiver,
    pdus: Vec<(i64, DeliverSm)>,
    retry_ms: i64,
    dead_ms: i64,
    kind: Owed,
) -> (u64, bool) {
    use futures::StreamExt;
    let answers: Vec<(i64, Option<Result<(), String>>)> = futures::stream::iter(pdus)
        .map(|(id, pdu)| async move { (id, offer(shared, bind, pdu).await) })
        .buffered(WINDOW)
        .collect()
        .await;
    let stopping = answers.iter().any(|(_, a)| a.is_none());
    let results: Vec<(i64, Result<(), String>)> =
        answers.into_iter().filter_map(|(id, a)| a.map(|a| (id, a))).collect();
    let delivered = results.iter().filter(|(_, r)| r.is_ok()).count() as u64;
    if results.is_empty() {
        return (0, stopping);
    }
    match shared.store.smpp_record(results, retry_ms, dead_ms).await {
        // Counted once the store has them as delivered.
        Ok(()) => (delivered, stopping),
        Err(e) => {
            tracing::warn!(error = %e, owed = ?kind, "SMPP outbox: recording failed; the rows will be offered again");
            (0, stopping)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusmpp::tlvs::TlvValue;

    fn inbound(text: &str) -> OwedInbound {
        OwedInbound { id: 1, inbound_id: 1, from: "+79161234567".into(), to: "7726".into(), text: text.into() }
    }

    #[test]
    fn inbound_goes_in_gsm7_when_it_fits_else_ucs2_and_long_texts_whole_in_the_payload() {
        let p = inbound_pdu(&inbound("SHOP order 5"));
        assert_eq!(u8::from(p.data_coding), 0x00);
        assert_eq!(p.short_message().as_ref(), b"SHOP order 5");
        assert_eq!(p.source_addr.to_string(), "79161234567");
        assert_eq!(p.destination_addr.to_string(), "7726");
        assert_eq!(u8::from(p.esm_class), 0);

        let p = inbound_pdu(&inbound("Магазин"));
        assert_eq!(u8::from(p.data_coding), 0x08);
        assert_eq!(crate::sms::text::decode_ucs2(p.short_message().as_ref()), "Магазин");

        let long = "Ж".repeat(200);
        let p = inbound_pdu(&inbound(&long));
        assert!(p.short_message().as_ref().is_empty(), "not split: all in message_payload");
        let payload = p.tlvs().iter().find_map(|t| match t.value() {
            Some(TlvValue::MessagePayload(m)) => Some(m.value.as_ref().to_vec()),
            _ => None,
        });
        assert_eq!(crate::sms::text::decode_ucs2(&payload.expect("message_payload")), long);
    }
}
