//! SMS PDUs (TS 23.040): SMS-SUBMIT encoding for the modem route, SMS-DELIVER and SMS-STATUS-REPORT
//! decoding; hex as AT+CMGS/AT+CMGR carry it.
//!
//! Alphabets and segmentation come from [`crate::sms::text`]; this module adds the TPDU layout, the
//! packing of GSM 7-bit septets into octets (TS 23.038 §6.1.2.1), addresses, time stamps and the
//! user data header (whose parser the SMPP route and the SMSC simulator use too, so all read part
//! numbers alike), and the data coding scheme's alphabet ([`dcs_alphabet`]).
//!
//! Decoding never panics on input: every malformed PDU gives a [`PduError`] that names the field
//! and the 0-based octet offset in the hex as given (SMSC part included when there is one).
//! Decoding is lenient only where a real device's output is unambiguous: reserved bits are ignored,
//! an address whose digit count includes the `F` filler is accepted, a header indicator with no
//! user data means no header, and TP-UDL is taken as the end of the message: octets after TP-UD
//! (SIM record padding, or a modem's length that disagrees with TP-UDL) and a status report's
//! optional parameters are not read. User data shorter than TP-UDL says is an error.

use chrono::{DateTime, FixedOffset, NaiveDate, TimeZone};

use crate::sms::text::{self, Encoding, Plan};

/// Longest TP-UD: 160 septets in GSM 7-bit, 140 octets otherwise.
const MAX_SEPTETS: usize = 160;
const MAX_OCTETS: usize = 140;
/// Longest address: 20 semi-octets (TS 23.040 §9.1.2.5); an SMSC address has at most 11 octets
/// after its length octet (type of address and 10 octets of digits, TS 24.011 §8.2.5.1).
const MAX_ADDRESS_DIGITS: usize = 20;
const MAX_SMSC_OCTETS: usize = 11;
/// Type of address for E.164 numbers written with "+" and for everything else.
const TOA_INTERNATIONAL: u8 = 0x91;
const TOA_UNKNOWN: u8 = 0x81;
/// First-octet bits (TS 23.040 §9.2.3).
const MTI_SUBMIT: u8 = 0x01;
const VPF_RELATIVE: u8 = 0x10;
const SRR: u8 = 0x20;
const UDHI: u8 = 0x40;

/// What is wrong with a PDU, or why a message cannot be encoded. `at` is a 0-based octet offset
/// into the hex given to [`decode`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PduError {
    #[error("{field} at octet {at} needs {needed} octet(s) but the PDU has only {available} left")]
    Truncated { field: &'static str, at: usize, needed: usize, available: usize },
    #[error("invalid {field} at octet {at}: {reason}")]
    Invalid { field: &'static str, at: usize, reason: String },
    #[error("unsupported {field} at octet {at}: {reason}")]
    Unsupported { field: &'static str, at: usize, reason: String },
    #[error("cannot encode SMS-SUBMIT: {0}")]
    Encode(String),
}

fn invalid(field: &'static str, at: usize, reason: impl Into<String>) -> PduError {
    PduError::Invalid { field, at, reason: reason.into() }
}

/// How an address is to be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddressKind {
    /// Type of number international: `value` is "+" and the digits.
    International,
    /// Any other numeric type of number (unknown, national, network specific, subscriber,
    /// abbreviated): `value` is the digits as sent.
    National,
    /// Type of number alphanumeric (GSM 7-bit packed): `value` is the text, e.g. "FONIC".
    Alphanumeric,
}

/// An originating, destination or recipient address. Digits may include `*`, `#`, `a`, `b`, `c`
/// (semi-octets 0xA-0xE), which some networks use.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Address {
    pub kind: AddressKind,
    pub value: String,
}

/// The concatenation information element of one part.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Concat {
    /// 8-bit (IEI 0x00) or 16-bit (IEI 0x08) reference shared by all parts.
    pub reference: u16,
    pub total: u8,
    /// 1-based.
    pub seq: u8,
}

impl Concat {
    /// The part numbers as a message says them, or `None` when TS 23.040
    /// §9.2.3.24.1 says to ignore them (no parts, part 0, or past the last).
    pub fn checked(reference: u16, total: u8, seq: u8) -> Option<Concat> {
        (total >= 1 && seq >= 1 && seq <= total).then_some(Concat { reference, total, seq })
    }
}

/// How the user data of a decoded PDU was coded, and so what its `text` holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataEncoding {
    Gsm7,
    Ucs2,
    /// 8-bit data: `text` is the bytes after the user data header as uppercase hex.
    Binary,
}

/// Per-message choices for [`encode_submit`]. The default asks the modem to assign TP-MR, requests
/// no status report and leaves the validity to the SMSC.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubmitOptions {
    /// TP-MR; 0 lets most modems assign their own.
    pub message_ref: u8,
    pub status_report: bool,
    /// Relative validity period, rounded up to the next value TS 23.040 §9.2.3.12.1 can express
    /// (5 minutes to 63 weeks; longer is sent as 63 weeks).
    pub validity_minutes: Option<u32>,
    /// 8-bit concatenation reference used when the text has more than one part.
    pub concat_ref: u8,
}

/// One encoded SMS-SUBMIT, ready for `AT+CMGS=<tpdu_len>` followed by `hex`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubmitPdu {
    /// Uppercase hex, starting with "00": use the SMSC stored in the modem.
    pub hex: String,
    /// Octets without the SMSC part: the length AT+CMGS wants.
    pub tpdu_len: usize,
}

/// A decoded PDU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pdu {
    Deliver(Deliver),
    StatusReport(StatusReport),
    /// An SMS-SUBMIT, as read back from a modem's outbox.
    Submit(Submit),
}

/// An incoming message (SMS-DELIVER).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deliver {
    pub smsc: Option<String>,
    pub sender: Address,
    pub pid: u8,
    pub dcs: u8,
    /// TP-SCTS: the SMSC's local time and its offset from UTC.
    pub timestamp: DateTime<FixedOffset>,
    pub concat: Option<Concat>,
    pub text: String,
    pub encoding: DataEncoding,
}

/// A delivery report (SMS-STATUS-REPORT) for an earlier SMS-SUBMIT with the same `message_ref`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusReport {
    pub smsc: Option<String>,
    pub message_ref: u8,
    pub recipient: Address,
    /// TP-SCTS: when the SMSC received the SMS-SUBMIT.
    pub submitted: DateTime<FixedOffset>,
    /// TP-DT: when `status` came about.
    pub discharged: DateTime<FixedOffset>,
    /// TP-ST; see [`report_outcome`] and [`status_text`].
    pub status: u8,
}

/// An outgoing message (SMS-SUBMIT).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submit {
    pub smsc: Option<String>,
    pub message_ref: u8,
    pub recipient: Address,
    pub dcs: u8,
    pub concat: Option<Concat>,
    pub text: String,
    pub encoding: DataEncoding,
    pub status_report: bool,
    /// A relative TP-VP, in minutes; None when absent or in another format.
    pub validity_minutes: Option<u32>,
}

/// One SMS-SUBMIT per part of `plan`, in order.
///
/// Destination: "+digits" gives type of address 0x91 (international), digits alone 0x81
/// (unknown/ISDN); 1 to 20 digits. More than one part: TP-UDHI set and a concatenation IE
/// (IEI 0x00, 8-bit reference `opts.concat_ref`), GSM 7-bit text starting at the septet boundary
/// after it. DCS 0x00 for GSM 7-bit, 0x08 for UCS-2; PID 0x00; TP-SRR from `opts.status_report`;
/// relative TP-VP when `opts.validity_minutes` is set.
pub fn encode_submit(to: &str, plan: &Plan, opts: &SubmitOptions) -> Result<Vec<SubmitPdu>, PduError> {
    let (toa, digits) = match to.strip_prefix('+') {
        Some(digits) => (TOA_INTERNATIONAL, digits),
        None => (TOA_UNKNOWN, to),
    };
    if digits.is_empty() || digits.len() > MAX_ADDRESS_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(PduError::Encode(format!("destination {to:?} is not 1 to 20 digits with an optional leading '+'")));
    }
    let total = match u8::try_from(plan.parts.len()) {
        Ok(0) | Err(_) => {
            return Err(PduError::Encode(format!("a message has 1 to 255 parts, not {}", plan.parts.len())));
        }
        Ok(n) => n,
    };
    let mut first = MTI_SUBMIT;
    if opts.validity_minutes.is_some() {
        first |= VPF_RELATIVE;
    }
    if opts.status_report {
        first |= SRR;
    }
    if total > 1 {
        first |= UDHI;
    }
    // Everything before TP-UDL is the same in every part. `digits.len()` is at most 20.
    let mut head = vec![first, opts.message_ref, digits.len() as u8, toa];
    head.extend(digits.as_bytes().chunks(2).map(|pair| {
        let low = pair[0] - b'0';
        let high = pair.get(1).map_or(0x0F, |d| d - b'0');
        high << 4 | low
    }));
    head.push(0x00); // TP-PID: plain short message
    head.push(match plan.encoding {
        Encoding::Gsm7 => 0x00,
        Encoding::Ucs2 => 0x08,
    });
    if let Some(minutes) = opts.validity_minutes {
        head.push(relative_validity(minutes));
    }
    let mut pdus = Vec::with_capacity(plan.parts.len());
    for (seq, part) in (1..=total).zip(&plan.parts) {
        let udh = [0x05, 0x00, 0x03, opts.concat_ref, total, seq];
        let header: &[u8] = if total > 1 { &udh } else { &[] };
        let (udl, ud) = user_data(plan.encoding, part, header)?;
        let mut tpdu = head.clone();
        tpdu.push(udl);
        tpdu.extend(ud);
        pdus.push(SubmitPdu { hex: format!("00{}", to_hex(&tpdu)), tpdu_len: tpdu.len() });
    }
    Ok(pdus)
}

/// TP-UDL and TP-UD for one part behind `header` (a complete UDH with its length octet, or empty).
fn user_data(encoding: Encoding, part: &str, header: &[u8]) -> Result<(u8, Vec<u8>), PduError> {
    let mut ud = header.to_vec();
    let (udl, max, unit) = match encoding {
        Encoding::Gsm7 => {
            let septets = text::encode_gsm7_unpacked(part)
                .ok_or_else(|| PduError::Encode(format!("{part:?} is not all in the GSM 7-bit alphabet")))?;
            // The text starts at the first septet boundary after the header (fill bits are zero).
            let header_septets = (header.len() * 8).div_ceil(7);
            ud.extend(pack_septets(&septets, header_septets * 7 - header.len() * 8));
            (header_septets + septets.len(), MAX_SEPTETS, "septets")
        }
        Encoding::Ucs2 => {
            ud.extend(text::encode_ucs2(part));
            (ud.len(), MAX_OCTETS, "octets")
        }
    };
    match u8::try_from(udl) {
        Ok(udl) if usize::from(udl) <= max => Ok((udl, ud)),
        _ => Err(PduError::Encode(format!("a part takes {udl} {unit} of user data, more than the {max} that fit"))),
    }
}

/// TP-VP in relative format (TS 23.040 §9.2.3.12.1) for at least `minutes`: the smallest value
/// whose period is not shorter, or 255 (63 weeks) for anything longer.
fn relative_validity(minutes: u32) -> u8 {
    const HALF_DAY: u32 = 12 * 60;
    const DAY: u32 = 24 * 60;
    const MONTH: u32 = 30 * DAY;
    const WEEK: u32 = 7 * DAY;
    let vp = if minutes <= HALF_DAY {
        minutes.div_ceil(5).saturating_sub(1)
    } else if minutes <= DAY {
        143 + (minutes - HALF_DAY).div_ceil(30)
    } else if minutes <= MONTH {
        166 + minutes.div_ceil(DAY)
    } else {
        192 + minutes.div_ceil(WEEK)
    };
    u8::try_from(vp).unwrap_or(u8::MAX)
}

/// The period a relative TP-VP stands for, in minutes (TS 23.040 §9.2.3.12.1).
pub fn relative_validity_minutes(vp: u8) -> u32 {
    let vp = u32::from(vp);
    match vp {
        0..=143 => (vp + 1) * 5,
        144..=167 => 12 * 60 + (vp - 143) * 30,
        168..=196 => (vp - 166) * 24 * 60,
        _ => (vp - 192) * 7 * 24 * 60,
    }
}

/// Decode a PDU as a modem hands it over in PDU mode (AT+CMGR, AT+CMGL, +CMT, +CDS): behind its
/// SMSC address (TS 27.005 §3.1). `tpdu_len`, the `<length>` of the header line where there was
/// one, counts the TPDU alone: a PDU of exactly that many octets most likely came without its
/// SMSC address (some modems leave it out). The likely reading is tried first and the other one
/// only if it fails (some modems count the SMSC part in the length); if both fail, the error is
/// the likely reading's, which names what is wrong with the PDU as it was meant.
pub fn decode_from_modem(hex: &str, tpdu_len: Option<usize>) -> Result<Pdu, PduError> {
    let bare = tpdu_len.is_some_and(|len| len == hex.trim().len() / 2);
    decode(hex, !bare).or_else(|e| decode(hex, bare).map_err(|_| e))
}

/// Decode a PDU as read from AT+CMGR, +CMT or +CDS. `with_smsc`: the PDU starts with the SMSC
/// address (its length octet, possibly 00). That is so for AT+CMGR in PDU mode on nearly every
/// modem; pass false only for a bare TPDU.
///
/// The message type is taken as a modem's storage holds it: SMS-DELIVER (MTI 0), SMS-SUBMIT (1),
/// SMS-STATUS-REPORT (2). Surrounding whitespace is ignored; hex may be in either case.
pub fn decode(hex: &str, with_smsc: bool) -> Result<Pdu, PduError> {
    let bytes = from_hex(hex.trim())?;
    let mut r = Reader { buf: &bytes, pos: 0 };
    let smsc = if with_smsc { smsc(&mut r)? } else { None };
    let first_at = r.pos;
    let first = r.octet("first octet")?;
    let udhi = first & UDHI != 0;
    match first & 0x03 {
        0x00 => {
            let sender = address(&mut r, "TP-OA")?;
            let pid = r.octet("TP-PID")?;
            let (dcs, encoding) = dcs(&mut r)?;
            let timestamp = timestamp(&mut r, "TP-SCTS")?;
            let ud = decode_user_data(&mut r, udhi, encoding)?;
            Ok(Pdu::Deliver(Deliver { smsc, sender, pid, dcs, timestamp, concat: ud.concat, text: ud.text, encoding }))
        }
        0x01 => {
            let message_ref = r.octet("TP-MR")?;
            let recipient = address(&mut r, "TP-DA")?;
            r.octet("TP-PID")?;
            let (dcs, encoding) = dcs(&mut r)?;
            // TP-VPF: none, enhanced (7 octets), relative (1), absolute (7).
            let vpf = first >> 3 & 0x03;
            let vp = r.take([0, 7, 1, 7][usize::from(vpf)], "TP-VP")?;
            let validity_minutes = (vpf == 2).then(|| relative_validity_minutes(vp[0]));
            let ud = decode_user_data(&mut r, udhi, encoding)?;
            Ok(Pdu::Submit(Submit {
                smsc,
                message_ref,
                recipient,
                dcs,
                concat: ud.concat,
                text: ud.text,
                encoding,
                status_report: first & SRR != 0,
                validity_minutes,
            }))
        }
        0x02 => {
            let message_ref = r.octet("TP-MR")?;
            let recipient = address(&mut r, "TP-RA")?;
            let submitted = timestamp(&mut r, "TP-SCTS")?;
            let discharged = timestamp(&mut r, "TP-DT")?;
            let status = r.octet("TP-ST")?;
            // TP-PI and the optional TP-PID/TP-DCS/TP-UD it announces may follow (or SIM record
            // padding); nothing in them is needed, so they are not read.
            Ok(Pdu::StatusReport(StatusReport { smsc, message_ref, recipient, submitted, discharged, status }))
        }
        _ => Err(invalid("TP-MTI", first_at, format!("first octet {first:#04X} has the reserved message type 3"))),
    }
}

/// What a status report's TP-ST means for the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReportOutcome {
    /// 0x00-0x1F: transaction completed.
    Delivered,
    /// 0x20-0x3F: temporary error, the SC is still trying.
    Pending,
    /// 0x40-0x5F permanent error, 0x60-0x7F temporary error the SC no longer retries, and the
    /// reserved 0x80-0xFF.
    Failed,
    /// 0x46: the validity period expired before delivery.
    Expired,
}

/// Classify TP-ST (TS 23.040 §9.2.3.15). Reserved and SC-specific codes take the meaning of the
/// range they are in.
pub fn report_outcome(status: u8) -> ReportOutcome {
    match status {
        0x00..=0x1F => ReportOutcome::Delivered,
        0x20..=0x3F => ReportOutcome::Pending,
        0x46 => ReportOutcome::Expired,
        _ => ReportOutcome::Failed,
    }
}

/// Readable meaning of TP-ST, per TS 23.040 §9.2.3.15.
pub fn status_text(status: u8) -> &'static str {
    match status {
        0x00 => "received by the recipient",
        0x01 => "forwarded to the recipient, delivery not confirmed by the SC",
        0x02 => "replaced by the SC",
        0x03..=0x0F => "completed (reserved code)",
        0x10..=0x1F => "completed (SC-specific code)",
        0x20 => "congestion; SC still trying",
        0x21 => "recipient busy; SC still trying",
        0x22 => "no response from recipient; SC still trying",
        0x23 => "service rejected; SC still trying",
        0x24 => "quality of service not available; SC still trying",
        0x25 => "error in recipient; SC still trying",
        0x26..=0x2F => "temporary error (reserved code); SC still trying",
        0x30..=0x3F => "temporary error (SC-specific code); SC still trying",
        0x40 => "remote procedure error",
        0x41 => "incompatible destination",
        0x42 => "connection rejected by recipient",
        0x43 => "not obtainable",
        0x44 => "quality of service not available",
        0x45 => "no interworking available",
        0x46 => "validity period expired",
        0x47 => "deleted by the sender",
        0x48 => "deleted by SC administration",
        0x49 => "message does not exist in the SC",
        0x4A..=0x4F => "permanent error (reserved code)",
        0x50..=0x5F => "permanent error (SC-specific code)",
        0x60 => "congestion; SC gave up",
        0x61 => "recipient busy; SC gave up",
        0x62 => "no response from recipient; SC gave up",
        0x63 => "service rejected; SC gave up",
        0x64 => "quality of service not available; SC gave up",
        0x65 => "error in recipient; SC gave up",
        0x66..=0x6F => "temporary error (reserved code); SC gave up",
        0x70..=0x7F => "temporary error (SC-specific code); SC gave up",
        0x80..=0xFF => "reserved status code",
    }
}

/// Message class 0-3 from a TP-DCS, where it sets one (TS 23.038 §4): class 0 is shown at once
/// and not stored ("flash SMS").
pub fn message_class(dcs: u8) -> Option<u8> {
    match dcs >> 4 {
        0x0..=0x7 if dcs & 0x10 != 0 => Some(dcs & 0x03),
        0xF => Some(dcs & 0x03),
        _ => None,
    }
}

/// What a data coding scheme says about the alphabet of the user data (TS 23.038 §4): the one
/// place the DCS groups are read, for TP-DCS and for the SMPP data_coding values in the same groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DcsAlphabet {
    Gsm7,
    Ucs2,
    /// 8-bit data.
    Binary,
    /// A reserved alphabet (bits 3-2 = 11 in the general data coding groups) or a reserved group
    /// (0x8-0xB); TS 23.038 says to read these as the GSM 7-bit default alphabet.
    Reserved,
    /// Compressed user data (general data coding groups, bit 5).
    Compressed,
}

/// The alphabet a DCS selects (TS 23.038 §4).
pub fn dcs_alphabet(dcs: u8) -> DcsAlphabet {
    match dcs >> 4 {
        // General data coding and automatic deletion groups: bit 5 compressed, bits 3-2 alphabet.
        0x0..=0x7 if dcs & 0x20 != 0 => DcsAlphabet::Compressed,
        0x0..=0x7 => match dcs >> 2 & 0x03 {
            0x00 => DcsAlphabet::Gsm7,
            0x01 => DcsAlphabet::Binary,
            0x02 => DcsAlphabet::Ucs2,
            _ => DcsAlphabet::Reserved,
        },
        0x8..=0xB => DcsAlphabet::Reserved,
        // Message waiting indication, discard or store message.
        0xC | 0xD => DcsAlphabet::Gsm7,
        // Message waiting indication, store message, UCS-2.
        0xE => DcsAlphabet::Ucs2,
        // Data coding/message class: bit 2 alone chooses; bit 3 is reserved and ignored.
        _ if dcs & 0x04 != 0 => DcsAlphabet::Binary,
        _ => DcsAlphabet::Gsm7,
    }
}

/// The alphabet a TP-DCS selects, or `None` for compressed user data. Reserved codings are read
/// as GSM 7-bit, as TS 23.038 says.
fn data_encoding(dcs: u8) -> Option<DataEncoding> {
    match dcs_alphabet(dcs) {
        DcsAlphabet::Compressed => None,
        DcsAlphabet::Binary => Some(DataEncoding::Binary),
        DcsAlphabet::Ucs2 => Some(DataEncoding::Ucs2),
        DcsAlphabet::Gsm7 | DcsAlphabet::Reserved => Some(DataEncoding::Gsm7),
    }
}

fn dcs(r: &mut Reader) -> Result<(u8, DataEncoding), PduError> {
    let at = r.pos;
    let dcs = r.octet("TP-DCS")?;
    let encoding = data_encoding(dcs).ok_or_else(|| PduError::Unsupported {
        field: "TP-DCS",
        at,
        reason: format!("{dcs:#04X} marks compressed user data"),
    })?;
    Ok((dcs, encoding))
}

struct UserData {
    concat: Option<Concat>,
    text: String,
}

/// TP-UDL and TP-UD; whatever follows TP-UD is not read.
fn decode_user_data(r: &mut Reader, udhi: bool, encoding: DataEncoding) -> Result<UserData, PduError> {
    let udl_at = r.pos;
    let udl = usize::from(r.octet("TP-UDL")?);
    let (max, unit, octets) = match encoding {
        DataEncoding::Gsm7 => (MAX_SEPTETS, "septets", (udl * 7).div_ceil(8)),
        DataEncoding::Ucs2 | DataEncoding::Binary => (MAX_OCTETS, "octets", udl),
    };
    if udl > max {
        return Err(invalid("TP-UDL", udl_at, format!("{udl} {unit} is more than the {max} a PDU can carry")));
    }
    let ud_at = r.pos;
    let ud = r.take(octets, "TP-UD")?;
    // A header indicator with no user data at all has no header to read (seen from real phones).
    let (concat, header_len) =
        if udhi && !ud.is_empty() { read_udh(ud, ud_at).map(|h| (h.concat, h.len))? } else { (None, 0) };
    let body = ud.get(header_len..).unwrap_or_default();
    let text = match encoding {
        DataEncoding::Gsm7 => {
            let header_septets = (header_len * 8).div_ceil(7);
            let count = udl.checked_sub(header_septets).ok_or_else(|| {
                invalid("TP-UDL", udl_at, format!("{udl} septets is shorter than the {header_len}-octet header"))
            })?;
            text::decode_gsm7_unpacked(&unpack_septets(ud, header_septets * 7, count))
        }
        DataEncoding::Ucs2 if !body.len().is_multiple_of(2) => {
            return Err(invalid("TP-UD", ud_at + header_len, format!("odd number ({}) of UCS-2 octets", body.len())));
        }
        DataEncoding::Ucs2 => text::decode_ucs2(body),
        DataEncoding::Binary => to_hex(body),
    };
    Ok(UserData { concat, text })
}

/// A user data header as read: its length and the concatenation element that counts in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UserDataHeader {
    /// Octets of the header, its length octet included.
    pub len: usize,
    pub concat: Option<Concat>,
    /// The concatenation element has a 16-bit reference (IEI 0x08), not an 8-bit one (IEI 0x00).
    pub wide_reference: bool,
}

/// The user data header at the start of `ud` (TP-UD, or an SMPP short_message with UDHI set: the
/// header's length octet first): its length with that octet and its concatenation IE. Other IEs
/// are skipped. An IE whose values TS 23.040 §9.2.3.24.1 says to ignore (0 parts, part 0 or past
/// the last) is ignored; if there are several, the last one counts. Error offsets count from the
/// start of `ud`.
pub fn user_data_header(ud: &[u8]) -> Result<UserDataHeader, PduError> {
    read_udh(ud, 0)
}

/// [`user_data_header`] for user data that starts at octet `at` of a PDU.
fn read_udh(ud: &[u8], at: usize) -> Result<UserDataHeader, PduError> {
    let Some(&udhl) = ud.first() else {
        return Err(PduError::Truncated { field: "TP-UDH", at, needed: 1, available: 0 });
    };
    let header_len = 1 + usize::from(udhl);
    let Some(ies) = ud.get(1..header_len) else {
        return Err(invalid(
            "TP-UDH",
            at,
            format!("header of {} octets overruns the {} octets of user data", header_len, ud.len()),
        ));
    };
    let mut concat = None;
    let mut wide_reference = false;
    let mut i = 0;
    while i < ies.len() {
        let iei = ies[i];
        let Some(&len) = ies.get(i + 1) else {
            return Err(invalid("TP-UDH", at + 1 + i, format!("IE {iei:#04X} has no length octet")));
        };
        let end = i + 2 + usize::from(len);
        let Some(data) = ies.get(i + 2..end) else {
            return Err(invalid("TP-UDH", at + 1 + i, format!("IE {iei:#04X} of {len} octets overruns the header")));
        };
        let found = match (iei, data) {
            (0x00, &[reference, total, seq]) => Some((u16::from(reference), total, seq)),
            (0x08, &[high, low, total, seq]) => Some((u16::from_be_bytes([high, low]), total, seq)),
            _ => None,
        };
        if let Some(c) = found.and_then(|(reference, total, seq)| Concat::checked(reference, total, seq)) {
            concat = Some(c);
            wide_reference = iei == 0x08;
        }
        i = end;
    }
    Ok(UserDataHeader { len: header_len, concat, wide_reference })
}

/// The SMSC part: its length in octets (0: none), type of address, digits.
fn smsc(r: &mut Reader) -> Result<Option<String>, PduError> {
    const FIELD: &str = "SMSC address";
    let at = r.pos;
    let len = usize::from(r.octet(FIELD)?);
    if len == 0 {
        return Ok(None);
    }
    if len > MAX_SMSC_OCTETS {
        return Err(invalid(FIELD, at, format!("length {len} is more than {MAX_SMSC_OCTETS} octets")));
    }
    let toa = r.octet(FIELD)?;
    let digits = r.take(len - 1, FIELD)?;
    let address = address_value(toa, digits, digits.len() * 2, FIELD, at)?;
    Ok(Some(address.value).filter(|v| !v.is_empty()))
}

/// TP-OA, TP-DA or TP-RA: length in semi-octets, type of address, value (TS 23.040 §9.1.2.5).
fn address(r: &mut Reader, field: &'static str) -> Result<Address, PduError> {
    let at = r.pos;
    let len = usize::from(r.octet(field)?);
    if len > MAX_ADDRESS_DIGITS {
        return Err(invalid(field, at, format!("length {len} is more than {MAX_ADDRESS_DIGITS} semi-octets")));
    }
    let toa = r.octet(field)?;
    let raw = r.take(len.div_ceil(2), field)?;
    address_value(toa, raw, len, field, at)
}

/// The value of an address of `semi_octets` semi-octets in `raw`, whose length octet is at `at`.
fn address_value(toa: u8, raw: &[u8], semi_octets: usize, field: &'static str, at: usize) -> Result<Address, PduError> {
    let ton = toa >> 4 & 0x07;
    if ton == 5 {
        let septets = unpack_septets(raw, 0, semi_octets * 4 / 7);
        return Ok(Address { kind: AddressKind::Alphanumeric, value: text::decode_gsm7_unpacked(&septets) });
    }
    let mut value = String::with_capacity(semi_octets + 1);
    let mut filler_at = None;
    for i in 0..semi_octets {
        let octet = raw.get(i / 2).copied().unwrap_or(0xFF);
        let nibble = if i % 2 == 0 { octet & 0x0F } else { octet >> 4 };
        match (nibble, filler_at) {
            // The F filler ends the number; a length that counted it is tolerated.
            (0x0F, _) => filler_at = filler_at.or(Some(i)),
            (_, Some(f)) => {
                return Err(invalid(field, at + 2 + i / 2, format!("digit after the F filler at semi-octet {f}")));
            }
            _ => value.push(char::from(b"0123456789*#abc"[usize::from(nibble)])),
        }
    }
    if ton != 1 {
        return Ok(Address { kind: AddressKind::National, value });
    }
    if !value.is_empty() {
        value.insert(0, '+');
    }
    Ok(Address { kind: AddressKind::International, value })
}

/// TP-SCTS or TP-DT: year, month, day, hour, minute, second and time zone, each two swapped BCD
/// digits; the zone is in quarters of an hour with its sign in bit 3 (TS 23.040 §9.2.3.11).
fn timestamp(r: &mut Reader, field: &'static str) -> Result<DateTime<FixedOffset>, PduError> {
    let at = r.pos;
    let raw = r.take(7, field)?;
    let mut fields = [0u32; 7];
    for (i, (&octet, value)) in raw.iter().zip(&mut fields).enumerate() {
        // The sign bit of the time zone is not a digit.
        let low = if i == 6 { octet & 0x07 } else { octet & 0x0F };
        let high = octet >> 4;
        if low > 9 || high > 9 {
            return Err(invalid(field, at + i, format!("{octet:#04X} is not two BCD digits")));
        }
        *value = u32::from(low) * 10 + u32::from(high);
    }
    let [year, month, day, hour, minute, second, quarters] = fields;
    // Two digits: 70-99 are read as 1970-1999 (real captures from 1999 exist), 00-69 as 2000-2069.
    let year = if year < 70 { 2000 + year } else { 1900 + year };
    let sign = if raw[6] & 0x08 != 0 { -1 } else { 1 };
    // Both fit: `quarters` is at most 79 (under 20 hours) and `year` is 1970-2069.
    let offset = FixedOffset::east_opt(sign * quarters as i32 * 15 * 60);
    let local = NaiveDate::from_ymd_opt(year as i32, month, day).and_then(|d| d.and_hms_opt(hour, minute, second));
    offset
        .zip(local)
        .and_then(|(offset, local)| offset.from_local_datetime(&local).single())
        .ok_or_else(|| invalid(field, at, format!("no such time: {}", to_hex(raw))))
}

/// Pack septets LSB first (TS 23.038 §6.1.2.1.1), the first starting `fill` bits into the output.
fn pack_septets(septets: &[u8], fill: usize) -> Vec<u8> {
    let mut out = vec![0u8; (fill + septets.len() * 7).div_ceil(8)];
    for (i, &septet) in septets.iter().enumerate() {
        let bit = fill + i * 7;
        let [low, high] = (u16::from(septet & 0x7F) << (bit % 8)).to_le_bytes();
        for (octet, bits) in out.iter_mut().skip(bit / 8).zip([low, high]) {
            *octet |= bits;
        }
    }
    out
}

/// `count` septets from `octets`, starting `start_bit` bits in; missing bits read as zero.
fn unpack_septets(octets: &[u8], start_bit: usize, count: usize) -> Vec<u8> {
    (0..count)
        .map(|i| {
            let bit = start_bit + i * 7;
            let low = octets.get(bit / 8).copied().unwrap_or(0);
            let high = octets.get(bit / 8 + 1).copied().unwrap_or(0);
            (u16::from_le_bytes([low, high]) >> (bit % 8)) as u8 & 0x7F
        })
        .collect()
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

pub fn from_hex(hex: &str) -> Result<Vec<u8>, PduError> {
    if let Some(i) = hex.find(|c: char| !c.is_ascii_hexdigit()) {
        let c = hex[i..].chars().next().unwrap_or_default();
        return Err(invalid("hex", i / 2, format!("{c:?} is not a hex digit")));
    }
    if !hex.len().is_multiple_of(2) {
        return Err(invalid("hex", hex.len() / 2, "odd number of hex digits"));
    }
    // All ASCII hex digits now, so every pair parses.
    Ok(hex
        .as_bytes()
        .chunks(2)
        .filter_map(|pair| u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok())
        .collect())
}

/// A cursor over the PDU's octets that names the field it is reading when they run out.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], PduError> {
        let available = self.buf.len() - self.pos;
        let slice = self.buf.get(self.pos..self.pos + n).ok_or(PduError::Truncated {
            field,
            at: self.pos,
            needed: n,
            available,
        })?;
        self.pos += n;
        Ok(slice)
    }

    fn octet(&mut self, field: &'static str) -> Result<u8, PduError> {
        Ok(self.take(1, field)?[0])
    }
}

#[cfg(test)]
pub(crate) mod tests;
