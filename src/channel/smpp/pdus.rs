//! Between messages and SMPP PDUs: the `submit_sm`s for an outbound
//! message (one per part of its plan with a UDH or SAR TLVs, or one with
//! `message_payload`; data_coding from the plan and the carrier's taste;
//! TON/NPI from the form of each address), and what a `deliver_sm` or
//! `data_sm` carries: a delivery receipt or a message from a person (its
//! UDH and data_coding groups read by `sms::pdu`, its SAR part numbers
//! checked by the same rule).

use super::config::{GsmCoding, LongMessages, SmppRoute};
use super::receipt::{IdForm, canonical_receipt_id};
use crate::channel::Outbound;
use crate::message::ReceiptStatus;
use crate::smpp::receipt;
use crate::sms::pdu::DcsAlphabet;
use crate::sms::{self, Alphabets, Encoding, Plan};
use rusmpp::Pdu;
use rusmpp::pdus::SubmitSm;
use rusmpp::tlvs::{MessageSubmissionRequestTlvValue, Tlv, TlvValue};
use rusmpp::types::{AnyOctetString, COctetString, EmptyOrFullCOctetString, OctetString};
use rusmpp::values::{DataCoding, EsmClass, MessagePayload, Npi, RegisteredDelivery, Ton};

/// data_coding values we send and understand.
pub const DC_DEFAULT: u8 = 0x00;
pub const DC_LATIN1: u8 = 0x03;
pub const DC_UCS2: u8 = 0x08;
const ESM_UDHI: u8 = 0x40;

/// Why a message cannot become `submit_sm`s.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("{field} {value:?} does not fit SMPP: {reason}")]
    Field { field: &'static str, value: String, reason: String },
    #[error("validity_period: {0}")]
    ValidityPeriod(String),
    #[error("short_message too long: {0}")]
    ShortMessage(String),
    #[error("{0} parts exceed the 255 a long message may have")]
    TooManyParts(usize),
}

/// Why a `deliver_sm` or `data_sm` cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    #[error("a delivery receipt without an id: {0:?}")]
    ReceiptWithoutId(String),
    #[error("UDHI set but the header is unreadable: {0}")]
    Header(#[from] sms::pdu::PduError),
}

/// The plan's parts as bytes, and the data_coding they are in. The parts
/// go as planned, except a GSM text on a bind whose `gsm_coding` wants
/// Latin-1: it goes as Latin-1 when every character has a Latin-1 byte,
/// else (€, Greek capitals) it is planned again as UCS-2.
pub fn encode_text(plan: &Plan, coding: GsmCoding) -> (u8, Vec<Vec<u8>>) {
    let latin1 = |s: &str| -> Option<Vec<u8>> { s.chars().map(|c| u8::try_from(u32::from(c)).ok()).collect() };
    let ucs2 = |plan: &Plan| plan.parts.iter().map(|p| sms::text::encode_ucs2(p)).collect();
    match (plan.encoding, coding) {
        (Encoding::Ucs2, _) => (DC_UCS2, ucs2(plan)),
        (Encoding::Gsm7, GsmCoding::Gsm7) => {
            let parts = plan.parts.iter().map(|p| sms::text::encode_gsm7_unpacked(p).unwrap_or_default()).collect();
            (DC_DEFAULT, parts)
        }
        (Encoding::Gsm7, GsmCoding::Latin1AsDefault | GsmCoding::Latin1) => {
            if let Some(parts) = plan.parts.iter().map(|p| latin1(p)).collect::<Option<Vec<_>>>() {
                let dc = if coding == GsmCoding::Latin1 { DC_LATIN1 } else { DC_DEFAULT };
                return (dc, parts);
            }
            (DC_UCS2, ucs2(&sms::plan(&plan.text(), Alphabets::Ucs2)))
        }
    }
}

/// TON/NPI and digits for an address: alphanumeric, international, or a
/// short code.
pub fn address(addr: &str) -> (u8, u8, String) {
    if let Some(digits) = addr.strip_prefix('+')
        && !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
    {
        return (1, 1, digits.to_string());
    }
    if !addr.is_empty() && addr.bytes().all(|b| b.is_ascii_digit()) {
        return if addr.len() <= 8 { (3, 0, addr.to_string()) } else { (0, 1, addr.to_string()) };
    }
    (5, 0, addr.to_string())
}

fn c_string<const MIN: usize, const MAX: usize>(
    field: &'static str,
    s: &str,
) -> Result<COctetString<MIN, MAX>, EncodeError> {
    let mut bytes = s.as_bytes().to_vec();
    bytes.push(0);
    COctetString::from_vec(bytes).map_err(|e| EncodeError::Field { field, value: s.to_string(), reason: e.to_string() })
}

/// The submit_sm PDUs for a message, from its plan; `reference` ties the
/// parts of a long message together.
pub fn submits(msg: &Outbound, cfg: &SmppRoute, reference: u16) -> Result<Vec<SubmitSm>, EncodeError> {
    let (dc, parts) = encode_text(&msg.plan, cfg.gsm_coding);
    let (dton, dnpi, dest) = address(&msg.to);
    // An answer goes from the address its question was sent to.
    let source =
        msg.from.clone().or_else(|| msg.via.clone()).or_else(|| cfg.default_source.clone()).unwrap_or_default();
    let (mut ston, mut snpi, source) = if source.is_empty() { (0, 0, String::new()) } else { address(&source) };
    if let Some(t) = cfg.source_ton {
        ston = t;
    }
    if let Some(n) = cfg.source_npi {
        snpi = n;
    }
    let validity = match msg.valid_until {
        Some(until) if cfg.validity_period => {
            let text = crate::smpp::time::relative(crate::message::secs_left(until));
            EmptyOrFullCOctetString::from_vec(text.into_bytes().into_iter().chain([0]).collect())
                .map_err(|e| EncodeError::ValidityPeriod(e.to_string()))?
        }
        _ => EmptyOrFullCOctetString::empty(),
    };
    let base = |esm: u8, body: Vec<u8>| -> Result<SubmitSm, EncodeError> {
        let short = OctetString::<0, 255>::from_vec(body).map_err(|e| EncodeError::ShortMessage(e.to_string()))?;
        Ok(SubmitSm::builder()
            .source_addr_ton(Ton::from(ston))
            .source_addr_npi(Npi::from(snpi))
            .source_addr(c_string("source_addr", &source)?)
            .dest_addr_ton(Ton::from(dton))
            .dest_addr_npi(Npi::from(dnpi))
            .destination_addr(c_string("destination_addr", &dest)?)
            .esm_class(EsmClass::from(esm))
            .validity_period(validity.clone())
            .registered_delivery(RegisteredDelivery::from(u8::from(cfg.registered_delivery)))
            .data_coding(DataCoding::from(dc))
            .short_message(short)
            .build())
    };
    let total = parts.len();
    if total == 1 {
        return Ok(vec![base(0, parts.into_iter().next().unwrap_or_default())?]);
    }
    let total_u8 = u8::try_from(total).map_err(|_| EncodeError::TooManyParts(total))?;
    match cfg.long_messages {
        LongMessages::Udh => parts
            .into_iter()
            .enumerate()
            .map(|(i, body)| {
                let mut b = vec![0x05, 0x00, 0x03, reference as u8, total_u8, i as u8 + 1];
                b.extend(body);
                base(ESM_UDHI, b)
            })
            .collect(),
        LongMessages::Sar => parts
            .into_iter()
            .enumerate()
            .map(|(i, body)| {
                let mut pdu = base(0, body)?;
                pdu.push_tlv(MessageSubmissionRequestTlvValue::SarMsgRefNum(reference));
                pdu.push_tlv(MessageSubmissionRequestTlvValue::SarTotalSegments(total_u8));
                pdu.push_tlv(MessageSubmissionRequestTlvValue::SarSegmentSeqnum(i as u8 + 1));
                Ok(pdu)
            })
            .collect(),
        LongMessages::Payload => {
            let mut pdu = base(0, Vec::new())?;
            let whole: Vec<u8> = parts.concat();
            pdu.push_tlv(MessageSubmissionRequestTlvValue::MessagePayload(MessagePayload::new(
                AnyOctetString::from_vec(whole),
            )));
            Ok(vec![pdu])
        }
    }
}

/// What a deliver_sm / data_sm carries.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    /// A delivery receipt; `status` is `None` for states that are not final.
    Receipt {
        id: String,
        status: Option<ReceiptStatus>,
        error: Option<String>,
    },
    Message {
        from: String,
        to: String,
        text: String,
        concat: Option<(u16, u8, u8)>,
    },
}

/// The fields of a deliver_sm or data_sm that matter here.
pub struct Delivered<'a> {
    pub esm_class: u8,
    pub data_coding: u8,
    pub source: &'a str,
    pub source_ton: u8,
    pub dest: &'a str,
    pub dest_ton: u8,
    pub short_message: &'a [u8],
    pub tlvs: &'a [Tlv],
}

impl<'a> Delivered<'a> {
    /// The fields of a `deliver_sm` or `data_sm` (a `data_sm` carries its text in TLVs only);
    /// `None` for any other PDU.
    pub fn from_pdu(pdu: &'a Pdu) -> Option<Delivered<'a>> {
        Some(match pdu {
            Pdu::DeliverSm(d) => Delivered {
                esm_class: u8::from(d.esm_class),
                data_coding: u8::from(d.data_coding),
                source: d.source_addr.as_str(),
                source_ton: u8::from(d.source_addr_ton),
                dest: d.destination_addr.as_str(),
                dest_ton: u8::from(d.dest_addr_ton),
                short_message: d.short_message(),
                tlvs: d.tlvs(),
            },
            Pdu::DataSm(d) => Delivered {
                esm_class: u8::from(d.esm_class),
                data_coding: u8::from(d.data_coding),
                source: d.source_addr.as_str(),
                source_ton: u8::from(d.source_addr_ton),
                dest: d.destination_addr.as_str(),
                dest_ton: u8::from(d.dest_addr_ton),
                short_message: &[],
                tlvs: d.tlvs(),
            },
            _ => return None,
        })
    }
}

fn decode_text(dc: u8, bytes: &[u8], coding: GsmCoding) -> String {
    let hex = |b: &[u8]| b.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let latin1 = |b: &[u8]| b.iter().map(|&x| char::from(x)).collect::<String>();
    match dc {
        DC_DEFAULT if coding == GsmCoding::Latin1AsDefault => latin1(bytes),
        DC_DEFAULT => sms::text::decode_gsm7_unpacked(bytes),
        0x01 | DC_LATIN1 => latin1(bytes),
        DC_UCS2 => sms::text::decode_ucs2(bytes),
        // The TS 23.038 groups SMPP takes over: general data coding with a
        // message class, and data coding / message class. 8-bit data and
        // reserved alphabets are shown as hex.
        0x10..=0x1F | 0xF0..=0xFF => match sms::pdu::dcs_alphabet(dc) {
            DcsAlphabet::Gsm7 => sms::text::decode_gsm7_unpacked(bytes),
            DcsAlphabet::Ucs2 => sms::text::decode_ucs2(bytes),
            _ => hex(bytes),
        },
        _ => hex(bytes),
    }
}

fn with_plus(addr: &str, ton: u8) -> String {
    if ton == 1 && !addr.starts_with('+') { format!("+{addr}") } else { addr.to_string() }
}

/// Read a deliver_sm / data_sm. `Err` names what is wrong with it.
pub fn read(d: &Delivered<'_>, coding: GsmCoding, ids: IdForm) -> Result<Incoming, ReadError> {
    let mut payload: Option<&[u8]> = None;
    let mut receipted_id = None;
    let mut state = None;
    let mut network_error = None;
    let mut sar = (None, None, None);
    for tlv in d.tlvs {
        match tlv.value() {
            Some(TlvValue::MessagePayload(p)) => payload = Some(&p.value[..]),
            Some(TlvValue::ReceiptedMessageId(id)) => receipted_id = Some(id.as_str().to_string()),
            Some(TlvValue::MessageState(s)) => state = Some(u8::from(*s)),
            Some(TlvValue::NetworkErrorCode(e)) => network_error = Some(format!("{e:?}")),
            Some(TlvValue::SarMsgRefNum(r)) => sar.0 = Some(*r),
            Some(TlvValue::SarTotalSegments(t)) => sar.1 = Some(*t),
            Some(TlvValue::SarSegmentSeqnum(s)) => sar.2 = Some(*s),
            _ => {}
        }
    }
    let body = match payload {
        Some(p) if d.short_message.is_empty() => p,
        _ => d.short_message,
    };
    let message_type = (d.esm_class >> 2) & 0x0F;
    if message_type == 0x01 || message_type == 0x08 {
        let text = String::from_utf8_lossy(body);
        let parsed = receipt::parse(&text);
        let id = receipted_id
            .or_else(|| parsed.as_ref().map(|p| p.id.clone()))
            .ok_or_else(|| ReadError::ReceiptWithoutId(text.to_string()))?;
        let status = match state {
            Some(s) => receipt::message_state_status(s),
            None => parsed.as_ref().and_then(|p| receipt::stat_status(&p.stat)),
        };
        let status = if message_type == 0x08 { None } else { status };
        let error = parsed
            .as_ref()
            .and_then(|p| p.err.clone())
            .filter(|e| !e.trim_start_matches('0').is_empty())
            .or(network_error)
            .map(|e| match parsed.as_ref() {
                Some(p) if !p.stat.is_empty() => format!("{} err:{e}", p.stat),
                _ => format!("err:{e}"),
            });
        return Ok(Incoming::Receipt { id: canonical_receipt_id(&id, ids), status, error });
    }
    let (concat, text_bytes) = if d.esm_class & ESM_UDHI != 0 {
        let header = sms::pdu::user_data_header(body)?;
        (header.concat, body.get(header.len..).unwrap_or_default())
    } else {
        let concat = match sar {
            (Some(r), Some(t), Some(s)) => sms::pdu::Concat::checked(r, t, s),
            _ => None,
        };
        (concat, body)
    };
    let concat = concat.map(|c| (c.reference, c.total, c.seq));
    Ok(Incoming::Message {
        from: with_plus(d.source, d.source_ton),
        to: with_plus(d.dest, d.dest_ton),
        text: decode_text(d.data_coding, text_bytes, coding),
        concat,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bytes a text goes as, planned as dispatch plans it.
    fn encode_text(text: &str, coding: GsmCoding) -> (u8, Vec<Vec<u8>>) {
        super::encode_text(&sms::split(text), coding)
    }

    #[test]
    fn text_codings() {
        assert_eq!(
            encode_text("Hi {x}", GsmCoding::Gsm7),
            (0, vec![vec![0x48, 0x69, 0x20, 0x1B, 0x28, 0x78, 0x1B, 0x29]])
        );
        assert_eq!(encode_text("café", GsmCoding::Latin1), (3, vec![vec![b'c', b'a', b'f', 0xE9]]));
        assert_eq!(encode_text("5 €", GsmCoding::Latin1AsDefault).0, DC_UCS2);
        let (dc, parts) = encode_text(&"Щ".repeat(71), GsmCoding::Gsm7);
        assert_eq!((dc, parts.len(), parts[0].len()), (DC_UCS2, 2, 134));
    }

    #[test]
    fn addresses() {
        assert_eq!(address("+79161234567"), (1, 1, "79161234567".into()));
        assert_eq!(address("MyShop"), (5, 0, "MyShop".into()));
        assert_eq!(address("7726"), (3, 0, "7726".into()));
    }

    #[test]
    fn udh_concat_follows_the_sms_rules() {
        let concat = |udh: &[u8]| {
            let mut body = vec![udh.len() as u8];
            body.extend_from_slice(udh);
            body.extend_from_slice(b"hi");
            let d = Delivered {
                esm_class: ESM_UDHI,
                data_coding: 0,
                source: "79161234567",
                source_ton: 1,
                dest: "7726",
                dest_ton: 0,
                short_message: &body,
                tlvs: &[],
            };
            match read(&d, GsmCoding::Gsm7, IdForm::Same) {
                Ok(Incoming::Message { concat, text, .. }) => Ok((concat, text)),
                Ok(other) => panic!("{other:?}"),
                Err(e) => Err(e.to_string()),
            }
        };
        assert_eq!(concat(&[0x00, 0x03, 0x2A, 0x03, 0x02]), Ok((Some((0x2A, 3, 2)), "hi".into())));
        assert_eq!(
            concat(&[0x0A, 0x01, 0xFF, 0x08, 0x04, 0x01, 0x02, 0x02, 0x01]),
            Ok((Some((0x0102, 2, 1)), "hi".into()))
        );
        // Part numbers TS 23.040 says to ignore: the part is a message of its own.
        for (total, seq) in [(2, 3), (3, 0), (0, 0)] {
            assert_eq!(concat(&[0x00, 0x03, 0x2A, total, seq]), Ok((None, "hi".into())), "{seq} of {total}");
        }
        assert!(concat(&[0x00, 0x05, 0x01]).unwrap_err().contains("overruns"));
    }

    #[test]
    fn reads_receipts_and_messages() {
        let text = b"id:1A2B sub:001 dlvrd:001 submit date:2611231200 done date:2611231201 stat:UNDELIV err:034 text:x";
        let d = Delivered {
            esm_class: 0x04,
            data_coding: 0,
            source: "79161234567",
            source_ton: 1,
            dest: "MyShop",
            dest_ton: 5,
            short_message: text,
            tlvs: &[],
        };
        assert_eq!(
            read(&d, GsmCoding::Gsm7, IdForm::Same).unwrap(),
            Incoming::Receipt {
                id: "1a2b".into(),
                status: Some(ReceiptStatus::Undelivered),
                error: Some("UNDELIV err:034".into())
            }
        );
        let body = [0x05, 0x00, 0x03, 0x07, 0x02, 0x01, 0x04, 0x1F, 0x04, 0x40];
        let d = Delivered { esm_class: 0x40, data_coding: 8, short_message: &body, ..d };
        assert_eq!(
            read(&d, GsmCoding::Gsm7, IdForm::Same).unwrap(),
            Incoming::Message {
                from: "+79161234567".into(),
                to: "MyShop".into(),
                text: "Пр".into(),
                concat: Some((7, 2, 1))
            }
        );
        let bad = [0x09, 0x00];
        let d = Delivered { short_message: &bad, ..d };
        assert!(read(&d, GsmCoding::Gsm7, IdForm::Same).is_err());
    }

    /// TS 23.040 §9.2.3.24.1: a concatenation element naming part 0 or a part past the last is
    /// ignored, so such a message is stored on its own instead of waiting for parts that never come
    /// (or completing another message's parts).
    #[test]
    fn a_concatenation_header_naming_no_real_part_is_ignored() {
        for (total, seq) in [(2, 0), (2, 3), (0, 1)] {
            let body = [0x05, 0x00, 0x03, 0x07, total, seq, b'h', b'i'];
            let d = Delivered {
                esm_class: 0x40,
                data_coding: 0x04,
                source: "79161234567",
                source_ton: 1,
                dest: "7726",
                dest_ton: 3,
                short_message: &body,
                tlvs: &[],
            };
            match read(&d, GsmCoding::Gsm7, IdForm::Same) {
                Ok(Incoming::Message { concat, text, .. }) => assert_eq!((concat, text.as_str()), (None, "6869")),
                other => panic!("{total}/{seq}: {other:?}"),
            }
        }
    }

    mod props {
        use super::*;
        use crate::smpp::SmppFrame;
        use crate::smpp::framer::tests::props::{framed_bytes, frames};
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

            /// Whatever frames off the wire, a deliver_sm or data_sm in it reads (or is refused) without a panic.
            #[test]
            fn any_framed_deliver_reads_without_panic(bytes in prop_oneof![framed_bytes(), prop::collection::vec(any::<u8>(), 0..200)]) {
                let (whole, _) = frames(&bytes, bytes.len());
                for frame in &whole {
                    if let SmppFrame::Pdu(p) = frame
                        && let Ok(c) = p.decode()
                        && let Some(pdu) = c.pdu()
                        && let Some(d) = Delivered::from_pdu(pdu)
                    {
                        let _ = read(&d, GsmCoding::Gsm7, IdForm::Same);
                    }
                }
            }
        }
    }
}
