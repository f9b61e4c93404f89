//! A `submit_sm` or `data_sm` made into a `store::NewMessage` and accepted
//! through the same `Store::enqueue` as `POST /v1/messages`: the same
//! number rules, routing (`Dispatcher::routing`) and policy; the answer's
//! `message_id` is the committed message's id in the account's form.

use super::Shared;
use super::account::AccountState;
use crate::message::Priority;
use crate::store::{EnqueueOutcome, NewMessage};
use rusmpp::tlvs::{Tlv, TlvValue};
use rusmpp::values::Ton;
use rusmpp::{CommandStatus, Pdu};

/// The fields of a submit this server reads.
struct Submit<'a> {
    source: String,
    dest: String,
    dest_ton: Ton,
    esm_class: u8,
    data_coding: u8,
    short: &'a [u8],
    tlvs: &'a [Tlv],
}

fn fields(pdu: &Pdu) -> Option<Submit<'_>> {
    match pdu {
        Pdu::SubmitSm(s) => Some(Submit {
            source: s.source_addr.to_string(),
            dest: s.destination_addr.to_string(),
            dest_ton: s.dest_addr_ton,
            esm_class: u8::from(s.esm_class),
            data_coding: u8::from(s.data_coding),
            short: s.short_message().as_ref(),
            tlvs: s.tlvs(),
        }),
        Pdu::DataSm(s) => Some(Submit {
            source: s.source_addr.to_string(),
            dest: s.destination_addr.to_string(),
            dest_ton: s.dest_addr_ton,
            esm_class: u8::from(s.esm_class),
            data_coding: u8::from(s.data_coding),
            short: &[],
            tlvs: s.tlvs(),
        }),
        _ => None,
    }
}

/// The text of `data` in `data_coding` (SMPP 3.4 5.2.19); None for a
/// coding that carries no text (binary).
pub fn decode_text(data_coding: u8, data: &[u8]) -> Option<String> {
    match data_coding {
        0x00 => Some(crate::sms::text::decode_gsm7_unpacked(data)),
        0x01 => Some(String::from_utf8_lossy(data).into_owned()),
        0x03 => Some(data.iter().map(|&b| char::from(b)).collect()),
        0x08 => Some(crate::sms::text::decode_ucs2(data)),
        _ => None,
    }
}

/// Why a submit is refused, as its `command_status` and a line for the log.
pub struct Refused(pub CommandStatus, pub String);

/// Build and commit the message; the committed id.
pub(super) async fn accept(shared: &Shared, account: &AccountState, pdu: &Pdu) -> Result<i64, Refused> {
    let s = fields(pdu).ok_or_else(|| Refused(CommandStatus::EsmeRinvmsglen, "no submit body".into()))?;
    let mut sar = false;
    let mut payload = None;
    for tlv in s.tlvs {
        match tlv.value() {
            Some(TlvValue::MessagePayload(p)) => payload = Some(p.value.as_ref()),
            Some(TlvValue::SarMsgRefNum(_) | TlvValue::SarTotalSegments(_) | TlvValue::SarSegmentSeqnum(_)) => {
                sar = true
            }
            _ => {}
        }
    }
    if sar || s.esm_class & 0x40 != 0 {
        return Err(Refused(CommandStatus::EsmeRinvesmclass, "multipart submits are not joined yet".into()));
    }
    let data = payload.unwrap_or(s.short);
    let text = decode_text(s.data_coding, data).ok_or_else(|| {
        Refused(CommandStatus::EsmeRinvesmclass, format!("data_coding 0x{:02x} carries no text", s.data_coding))
    })?;
    if text.is_empty() {
        return Err(Refused(CommandStatus::EsmeRinvmsglen, "empty message".into()));
    }
    let from = (!s.source.is_empty()).then(|| s.source.clone());
    if let Some(f) = &from
        && !account.cfg.senders.is_empty()
        && !account.cfg.senders.contains(f)
    {
        return Err(Refused(CommandStatus::EsmeRinvsrcadr, format!("sender {f:?} is not allowed")));
    }
    let raw = if s.dest_ton == Ton::International && !s.dest.starts_with('+') {
        format!("+{}", s.dest)
    } else {
        s.dest.clone()
    };
    let to = crate::sms::normalise(&raw, &shared.default_region)
        .map_err(|e| Refused(CommandStatus::EsmeRinvdstadr, e.to_string()))?;
    let routing = shared.dispatcher.routing();
    let route = if account.cfg.routes.is_empty() {
        routing.resolve(&to, None).map_err(|e| Refused(CommandStatus::EsmeRinvdstadr, e.to_string()))?
    } else {
        account
            .cfg
            .routes
            .iter()
            .find_map(|r| routing.resolve(&to, Some(r)).ok())
            .ok_or_else(|| Refused(CommandStatus::EsmeRinvdstadr, format!("no route of the account serves {to}")))?
    };
    let (encoding, segments) = crate::sms::count_parts(&text);
    let now = crate::message::now_ms();
    let msg = NewMessage {
        to,
        from,
        text,
        encoding,
        segments: segments as u32,
        priority: Priority::Transactional,
        route: route.clone(),
        reference: None,
        send_at: None,
        valid_until: now + shared.validity_ms,
        callback_url: None,
        tz: None,
    };
    let outcome = shared
        .store
        .enqueue(account.api_key(), None, vec![msg], None, shared.dispatcher.policy())
        .await
        .map_err(|e| Refused(CommandStatus::EsmeRsyserr, format!("store: {e}")))?;
    let id = match outcome {
        EnqueueOutcome::Created(a) | EnqueueOutcome::Replayed(a) => a.first().map(|a| a.id),
        _ => None,
    }
    .ok_or_else(|| Refused(CommandStatus::EsmeRsyserr, "not accepted".into()))?;
    metrics::counter!(crate::metrics::ACCEPTED, "api_key" => account.api_key()).increment(1);
    shared.dispatcher.wake(&route);
    Ok(id)
}
