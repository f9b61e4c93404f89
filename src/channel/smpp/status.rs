//! SMPP `command_status` values: their names, and whether a refused submit
//! is worth another try (temporary), means "slow down" (throttling), or is
//! final (permanent).

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Slow the bind down and resend; never a failure of the message.
    Throttle,
    /// Retry later, maybe on another bind or route.
    Temporary,
    /// The message cannot be sent this way; fail it.
    Permanent,
}

/// (code, name, class). Codes not listed are temporary: an unknown refusal
/// is not proof that the message can never go.
const TABLE: &[(u32, &str, Class)] = &[
    (0x0000_0000, "ESME_ROK", Class::Permanent),
    (0x0000_0001, "ESME_RINVMSGLEN", Class::Permanent),
    (0x0000_0002, "ESME_RINVCMDLEN", Class::Permanent),
    (0x0000_0003, "ESME_RINVCMDID", Class::Permanent),
    (0x0000_0004, "ESME_RINVBNDSTS", Class::Temporary),
    (0x0000_0005, "ESME_RALYBND", Class::Temporary),
    (0x0000_0006, "ESME_RINVPRTFLG", Class::Permanent),
    (0x0000_0007, "ESME_RINVREGDLVFLG", Class::Permanent),
    (0x0000_0008, "ESME_RSYSERR", Class::Temporary),
    (0x0000_000A, "ESME_RINVSRCADR", Class::Permanent),
    (0x0000_000B, "ESME_RINVDSTADR", Class::Permanent),
    (0x0000_000C, "ESME_RINVMSGID", Class::Permanent),
    (0x0000_000D, "ESME_RBINDFAIL", Class::Temporary),
    (0x0000_000E, "ESME_RINVPASWD", Class::Temporary),
    (0x0000_000F, "ESME_RINVSYSID", Class::Temporary),
    (0x0000_0011, "ESME_RCANCELFAIL", Class::Temporary),
    (0x0000_0013, "ESME_RREPLACEFAIL", Class::Temporary),
    (0x0000_0014, "ESME_RMSGQFUL", Class::Throttle),
    (0x0000_0015, "ESME_RINVSERTYP", Class::Permanent),
    (0x0000_0033, "ESME_RINVNUMDESTS", Class::Permanent),
    (0x0000_0034, "ESME_RINVDLNAME", Class::Permanent),
    (0x0000_0040, "ESME_RINVDESTFLAG", Class::Permanent),
    (0x0000_0042, "ESME_RINVSUBREP", Class::Permanent),
    (0x0000_0043, "ESME_RINVESMCLASS", Class::Permanent),
    (0x0000_0044, "ESME_RCNTSUBDL", Class::Permanent),
    (0x0000_0045, "ESME_RSUBMITFAIL", Class::Temporary),
    (0x0000_0048, "ESME_RINVSRCTON", Class::Permanent),
    (0x0000_0049, "ESME_RINVSRCNPI", Class::Permanent),
    (0x0000_0050, "ESME_RINVDSTTON", Class::Permanent),
    (0x0000_0051, "ESME_RINVDSTNPI", Class::Permanent),
    (0x0000_0053, "ESME_RINVSYSTYP", Class::Permanent),
    (0x0000_0054, "ESME_RINVREPFLAG", Class::Permanent),
    (0x0000_0055, "ESME_RINVNUMMSGS", Class::Permanent),
    (0x0000_0058, "ESME_RTHROTTLED", Class::Throttle),
    (0x0000_0061, "ESME_RINVSCHED", Class::Permanent),
    (0x0000_0062, "ESME_RINVEXPIRY", Class::Permanent),
    (0x0000_0063, "ESME_RINVDFTMSGID", Class::Permanent),
    (0x0000_0064, "ESME_RX_T_APPN", Class::Temporary),
    (0x0000_0065, "ESME_RX_P_APPN", Class::Permanent),
    (0x0000_0066, "ESME_RX_R_APPN", Class::Permanent),
    (0x0000_0067, "ESME_RQUERYFAIL", Class::Temporary),
    (0x0000_00C0, "ESME_RINVOPTPARSTREAM", Class::Permanent),
    (0x0000_00C1, "ESME_ROPTPARNOTALLWD", Class::Permanent),
    (0x0000_00C2, "ESME_RINVPARLEN", Class::Permanent),
    (0x0000_00C3, "ESME_RMISSINGOPTPARAM", Class::Permanent),
    (0x0000_00C4, "ESME_RINVOPTPARAMVAL", Class::Permanent),
    (0x0000_00FE, "ESME_RDELIVERYFAILURE", Class::Temporary),
    (0x0000_00FF, "ESME_RUNKNOWNERR", Class::Temporary),
];

pub fn name(code: u32) -> &'static str {
    TABLE.iter().find(|e| e.0 == code).map_or("unknown status", |e| e.1)
}

pub fn class(code: u32) -> Class {
    TABLE.iter().find(|e| e.0 == code).map_or(Class::Temporary, |e| e.2)
}

/// The error code recorded on a message, e.g. `smpp_0x0b`.
pub fn code(code: u32) -> String {
    format!("smpp_0x{code:02x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes() {
        assert_eq!(class(0x58), Class::Throttle);
        assert_eq!(class(0x14), Class::Throttle);
        assert_eq!(class(0x0B), Class::Permanent);
        assert_eq!(class(0x08), Class::Temporary);
        assert_eq!(class(0x400), Class::Temporary);
        assert_eq!(name(0x0B), "ESME_RINVDSTADR");
        assert_eq!(code(0x0B), "smpp_0x0b");
    }
}
