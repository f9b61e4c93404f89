//! A `submit_sm` or `data_sm` made into a `store::NewMessage` and accepted
//! by the same `messages::insert` as `POST /v1/messages` (through
//! `Store::smpp_accept`, which also keeps its `registered_delivery`): the
//! same number rules, routing (`Dispatcher::routing`) and policy (unless the
//! account is outside it: `policy = false`), its class from `priority_flag`
//! within the account's limits; the answer's `message_id` is the committed
//! message's id in the account's form. A part of a long message (UDH or SAR, read by `join`) is stored
//! durably (`Store::smpp_part`) and answered with the id of the one message
//! its set makes (made by the set's first part); the set's last part joins
//! them.

use super::Shared;
use super::account::AccountState;
use super::join;
use crate::config::Policy;
use crate::store::{NewMessage, PartOutcome, SmppPart};
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
    registered_delivery: u8,
    short: &'a [u8],
    tlvs: &'a [Tlv],
    schedule: String,
    validity: String,
    /// None for a `data_sm`, which has none.
    priority_flag: Option<u8>,
}

/// A PDU's destination address as the store keeps it (E.164): digits
/// marked international (TON 1) get their `+`, others are read with the
/// configured default region.
pub(super) fn recipient(ton: Ton, dest: &str, region: &str) -> Result<String, crate::sms::NumberError> {
    let raw = if ton == Ton::International && !dest.starts_with('+') { format!("+{dest}") } else { dest.to_string() };
    crate::sms::normalise(&raw, region)
}

fn fields(pdu: &Pdu) -> Option<Submit<'_>> {
    match pdu {
        Pdu::SubmitSm(s) => Some(Submit {
            source: s.source_addr.to_string(),
            dest: s.destination_addr.to_string(),
            dest_ton: s.dest_addr_ton,
            esm_class: u8::from(s.esm_class),
            data_coding: u8::from(s.data_coding),
            registered_delivery: u8::from(s.registered_delivery),
            short: s.short_message().as_ref(),
            tlvs: s.tlvs(),
            schedule: s.schedule_delivery_time.to_string(),
            validity: s.validity_period.to_string(),
            priority_flag: Some(u8::from(s.priority_flag)),
        }),
        Pdu::DataSm(s) => Some(Submit {
            source: s.source_addr.to_string(),
            dest: s.destination_addr.to_string(),
            dest_ton: s.dest_addr_ton,
            esm_class: u8::from(s.esm_class),
            data_coding: u8::from(s.data_coding),
            registered_delivery: u8::from(s.registered_delivery),
            short: &[],
            tlvs: s.tlvs(),
            schedule: String::new(),
            validity: String::new(),
            priority_flag: None,
        }),
        _ => None,
    }
}

/// Why a submit (or a `replace_sm`) is refused, as its `command_status` and
/// a line for the log.
pub struct Refused(pub CommandStatus, pub String);

/// An SMPP time field as milliseconds (empty: not given), refused with
/// `status` when it is not an SMPP time.
pub(super) fn time_field(field: &str, raw: &str, now: i64, status: CommandStatus) -> Result<Option<i64>, Refused> {
    match raw {
        "" => Ok(None),
        raw => crate::smpp::time::parse(raw, now)
            .map(Some)
            .ok_or_else(|| Refused(status, format!("{field} {raw:?} is not an SMPP time"))),
    }
}

/// The site's limit holds for SMPP as for the API: refused when a message
/// needs more than `max` segments.
pub(super) fn within_limit(needed: usize, max: usize) -> Result<(), Refused> {
    if needed > max {
        return Err(Refused(
            CommandStatus::EsmeRinvmsglen,
            format!("the message needs {needed} segments; the limit is {max}"),
        ));
    }
    Ok(())
}

/// Build and commit the message; the committed id.
pub(super) async fn accept(shared: &Shared, account: &AccountState, pdu: &Pdu) -> Result<i64, Refused> {
    let s = fields(pdu).ok_or_else(|| Refused(CommandStatus::EsmeRinvmsglen, "no submit body".into()))?;
    let payload = s.tlvs.iter().find_map(|tlv| match tlv.value() {
        Some(TlvValue::MessagePayload(p)) => Some(p.value.as_ref()),
        _ => None,
    });
    let data = payload.unwrap_or(s.short);
    let ud =
        join::read(s.esm_class, data, s.tlvs).map_err(|e| Refused(CommandStatus::EsmeRinvesmclass, e.to_string()))?;
    let text = crate::sms::text::decode_text(s.data_coding, ud.data).ok_or_else(|| {
        Refused(CommandStatus::EsmeRinvdcs, format!("data_coding 0x{:02x} carries no text", s.data_coding))
    })?;
    if text.is_empty() && ud.concat.is_none() {
        return Err(Refused(CommandStatus::EsmeRinvmsglen, "empty message".into()));
    }
    let from = (!s.source.is_empty()).then(|| s.source.clone());
    if let Some(f) = &from
        && !account.cfg.senders.is_empty()
        && !account.cfg.senders.contains(f)
    {
        return Err(Refused(CommandStatus::EsmeRinvsrcadr, format!("sender {f:?} is not allowed")));
    }
    let to = recipient(s.dest_ton, &s.dest, &shared.default_region)
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
    // A whole message by its text, a message sent in parts by the parts its
    // set says it has.
    within_limit(ud.concat.map_or(segments, |c| usize::from(c.total)), shared.max_segments)?;
    let now = crate::message::now_ms();
    let send_at =
        time_field("schedule_delivery_time", &s.schedule, now, CommandStatus::EsmeRinvsched)?.filter(|&t| t > now);
    let start = send_at.unwrap_or(now);
    let valid_until = match time_field("validity_period", &s.validity, now, CommandStatus::EsmeRinvexpiry)? {
        Some(v) if v <= start => {
            return Err(Refused(CommandStatus::EsmeRinvexpiry, "validity_period ends before it starts".into()));
        }
        Some(v) => v,
        None => start + shared.validity_ms,
    };
    let receipt = s.registered_delivery & 0x03;
    let msg = NewMessage {
        to,
        from,
        text,
        encoding,
        segments: segments as u32,
        priority: account.class(s.priority_flag),
        route: route.clone(),
        reference: None,
        send_at,
        valid_until,
        callback_url: None,
        tz: None,
        receipt: Some(receipt),
        via: None,
    };
    let store_err = |e: crate::store::StoreError| Refused(CommandStatus::EsmeRsyserr, format!("store: {e}"));
    let key = account.api_key().to_string();
    // An account outside policy (`policy = false`) writes its messages exempt.
    let policy = Policy { exempt: !account.cfg.policy, ..shared.dispatcher.policy() };
    let id = match ud.concat {
        None => shared.store.smpp_accept(key, msg, policy).await.map_err(store_err)?.id,
        Some(c) => {
            let part = SmppPart {
                account: account.cfg.system_id.clone(),
                source: s.source.clone(),
                dest: s.dest.clone(),
                reference: c.reference,
                total: c.total,
                seq: c.seq,
                coding: s.data_coding,
                data: ud.data.to_vec(),
            };
            match shared.store.smpp_part(key, msg, part, policy).await.map_err(store_err)? {
                PartOutcome::Stored { message_id, joined: false } | PartOutcome::Duplicate { message_id } => {
                    return Ok(message_id);
                }
                PartOutcome::Stored { message_id, joined: true } => message_id,
                PartOutcome::MixedCoding { set } => {
                    return Err(Refused(
                        CommandStatus::EsmeRinvdcs,
                        format!(
                            "data_coding 0x{:02x} differs from 0x{set:02x} of the earlier parts of its set",
                            s.data_coding
                        ),
                    ));
                }
            }
        }
    };
    metrics::counter!(crate::metrics::ACCEPTED, "api_key" => account.api_key()).increment(1);
    shared.dispatcher.wake(&route);
    Ok(id)
}
