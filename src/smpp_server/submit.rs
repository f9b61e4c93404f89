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

/// An SMPP time (3.4 7.1.1) as milliseconds: absolute `YYMMDDhhmmsstnnp`
/// (`p` `+`/`-`: `nn` quarter hours ahead of/behind UTC) or relative
/// `YYMMDDhhmmss000R` from `now`; None when it is not one.
pub fn parse_smpp_time(s: &str, now: i64) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 16 || !b[..15].iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = |i: usize| i64::from(b[i] - b'0') * 10 + i64::from(b[i + 1] - b'0');
    let (yy, mo, dd, hh, mi, ss) = (n(0), n(2), n(4), n(6), n(8), n(10));
    match b[15] {
        b'R' => {
            let secs = ((((yy * 365 + mo * 30 + dd) * 24 + hh) * 60 + mi) * 60) + ss;
            Some(now + secs * 1000)
        }
        p @ (b'+' | b'-') => {
            let date = chrono::NaiveDate::from_ymd_opt(2000 + yy as i32, mo as u32, dd as u32)?;
            let t = date.and_hms_opt(hh as u32, mi as u32, ss as u32)?.and_utc().timestamp_millis();
            let tenths = i64::from(b[12] - b'0') * 100;
            let offset = n(13) * 15 * 60 * 1000;
            Some(t + tenths - if p == b'+' { offset } else { -offset })
        }
        _ => None,
    }
}

/// Why a submit is refused, as its `command_status` and a line for the log.
pub struct Refused(pub CommandStatus, pub String);

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
    let time = |field: &str, raw: &str| match raw {
        "" => Ok(None),
        raw => parse_smpp_time(raw, now)
            .map(Some)
            .ok_or_else(|| Refused(CommandStatus::EsmeRinvsched, format!("{field} {raw:?} is not an SMPP time"))),
    };
    let send_at = time("schedule_delivery_time", &s.schedule)?.filter(|&t| t > now);
    let start = send_at.unwrap_or(now);
    let valid_until = match time("validity_period", &s.validity)
        .map_err(|Refused(_, why)| Refused(CommandStatus::EsmeRinvexpiry, why))?
    {
        Some(v) if v <= start => {
            return Err(Refused(CommandStatus::EsmeRinvexpiry, "validity_period ends before it starts".into()));
        }
        Some(v) => v,
        None => start + shared.validity_ms,
    };
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
    };
    let store_err = |e: crate::store::StoreError| Refused(CommandStatus::EsmeRsyserr, format!("store: {e}"));
    let key = account.api_key().to_string();
    // An account outside policy (`policy = false`) writes its messages exempt.
    let policy = Policy { exempt: !account.cfg.policy, ..shared.dispatcher.policy() };
    let receipt = s.registered_delivery & 0x03;
    let id = match ud.concat {
        None => shared.store.smpp_accept(key, msg, receipt, policy).await.map_err(store_err)?.id,
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
            match shared.store.smpp_part(key, msg, receipt, part, policy).await.map_err(store_err)? {
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

#[cfg(test)]
mod tests {
    use super::parse_smpp_time;

    #[test]
    fn smpp_times() {
        let now = 1_000_000;
        assert_eq!(parse_smpp_time("000000000100000R", now), Some(now + 60_000));
        // 2026-01-02 03:04:05 UTC+1h (4 quarters ahead).
        let t = parse_smpp_time("260102030405004+", 0).unwrap();
        assert_eq!(t, chrono::DateTime::parse_from_rfc3339("2026-01-02T02:04:05Z").unwrap().timestamp_millis());
        assert_eq!(parse_smpp_time("2601020304", 0), None);
        assert_eq!(parse_smpp_time("261302030405004+", 0), None);
    }
}
