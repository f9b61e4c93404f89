//! SMPP times (3.4 §7.1.1), both ways: the absolute and relative forms a
//! peer sends in `schedule_delivery_time` and `validity_period`, and the
//! ones we send (a carrier's validity, a `query_sm_resp`'s final date).

use crate::message::Millis;

/// An absolute SMPP time, `YYMMDDhhmmss000+` in UTC.
pub fn absolute(ms: Millis) -> String {
    chrono::DateTime::from_timestamp_millis(ms).map(|t| t.format("%y%m%d%H%M%S000+").to_string()).unwrap_or_default()
}

/// A relative SMPP time, `YYMMDDhhmmss000R`: days, hours, minutes
/// and seconds from now (days beyond 99 go into months and years, as
/// carriers read them: a month of 30 days, a year of 365).
pub fn relative(secs: u64) -> String {
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (years, days) = (days / 365, days % 365);
    let (months, days) = (days / 30, days % 30);
    format!("{:02}{months:02}{days:02}{:02}{:02}{:02}000R", years.min(99), rest / 3600, rest % 3600 / 60, rest % 60)
}

/// An SMPP time as milliseconds: absolute `YYMMDDhhmmsstnnp`
/// (`p` `+`/`-`: `nn` quarter hours ahead of/behind UTC) or relative
/// `YYMMDDhhmmss000R` from `now`; None when it is not one.
pub fn parse(s: &str, now: Millis) -> Option<Millis> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smpp_times() {
        let now = 1_000_000;
        assert_eq!(parse("000000000100000R", now), Some(now + 60_000));
        // 2026-01-02 03:04:05 UTC+1h (4 quarters ahead).
        let t = parse("260102030405004+", 0).unwrap();
        assert_eq!(t, chrono::DateTime::parse_from_rfc3339("2026-01-02T02:04:05Z").unwrap().timestamp_millis());
        assert_eq!(parse("2601020304", 0), None);
        assert_eq!(parse("261302030405004+", 0), None);
    }

    #[test]
    fn relative_validity_period() {
        assert_eq!(relative(300), "000000000500000R");
        assert_eq!(relative(86_400 + 2 * 3600 + 3 * 60 + 4), "000001020304000R");
        assert_eq!(relative(45 * 86_400), "000115000000000R");
        assert_eq!(relative(400 * 86_400), "010105000000000R");
        assert_eq!(relative(u64::MAX).len(), 16);
    }
}
