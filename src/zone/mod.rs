//! The recipient's local time: which IANA time zone a number (E.164) lies
//! in, and the arithmetic of a daily quiet window in that zone.
//!
//! Quiet hours are a promise about the recipient's clock, so the gateway
//! needs the recipient's zone. Russia spans eleven zones: its numbers are
//! looked up in `ru.tsv`, derived from the national numbering plan registry
//! (mobile ranges by region) and the ABC codes of geographic numbers (see
//! the file's header and `tools/ru_zones.py`). Elsewhere a calling code
//! whose country keeps one zone gives that zone (`countries.tsv`, derived
//! from libphonenumber's time zone map by `tools/single_zone_countries.py`).
//! Anything else is unknown (`None`) and the caller falls back to a default.

use crate::message::Millis;
use chrono::{DateTime, Duration, LocalResult, NaiveDate, NaiveTime, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use std::sync::OnceLock;

const RU: &str = include_str!("ru.tsv");
const COUNTRIES: &str = include_str!("countries.tsv");

/// Russian national numbers (10 digits): where each run starts, and its
/// zone (`None`: unassigned or shared by regions of different zones).
fn ru_runs() -> &'static [(u64, Option<Tz>)] {
    static RUNS: OnceLock<Vec<(u64, Option<Tz>)>> = OnceLock::new();
    RUNS.get_or_init(|| {
        data_lines(RU).filter_map(|(start, zone)| Some((start.parse().ok()?, zone.parse().ok()))).collect()
    })
}

/// Calling codes of single-zone countries, and their zone.
fn countries() -> &'static [(&'static str, Tz)] {
    static CODES: OnceLock<Vec<(&'static str, Tz)>> = OnceLock::new();
    CODES.get_or_init(|| data_lines(COUNTRIES).filter_map(|(code, zone)| Some((code, zone.parse().ok()?))).collect())
}

fn data_lines(text: &'static str) -> impl Iterator<Item = (&'static str, &'static str)> {
    text.lines().filter(|l| !l.starts_with('#')).filter_map(|l| l.split_once('\t'))
}

/// The time zone of the number `e164` ("+79161234567"; the `+` optional),
/// when the number tells it.
pub fn for_number(e164: &str) -> Option<Tz> {
    let digits = e164.strip_prefix('+').unwrap_or(e164);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if let Some(national) = digits.strip_prefix('7') {
        return match national.as_bytes().first() {
            // Kazakhstan (+76, +77) keeps one zone since March 2024.
            Some(b'6' | b'7') => Some(chrono_tz::Asia::Almaty),
            _ if national.len() == 10 => {
                let n: u64 = national.parse().ok()?;
                let runs = ru_runs();
                let i = runs.partition_point(|(start, _)| *start <= n);
                runs.get(i.checked_sub(1)?)?.1
            }
            _ => None,
        };
    }
    let codes = countries();
    (1..=3.min(digits.len())).find_map(|len| {
        let code = &digits[..len];
        codes.iter().find(|(c, _)| *c == code).map(|(_, tz)| *tz)
    })
}

/// A time of day when sending is not allowed: from `from` (inclusive) to
/// `to` (exclusive), local time; `from > to` crosses midnight
/// ("21:00-09:00").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    from: NaiveTime,
    to: NaiveTime,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WindowError {
    #[error("`{0}` is not a window of the form HH:MM-HH:MM")]
    Form(String),
    #[error("`{0}` starts and ends at the same time")]
    Empty(String),
}

impl Window {
    /// Reads "HH:MM-HH:MM" (24-hour clock; "HH:MM:SS" also reads).
    pub fn parse(text: &str) -> Result<Window, WindowError> {
        let bad = || WindowError::Form(text.to_string());
        let (from, to) = text.split_once('-').ok_or_else(bad)?;
        let time = |s: &str| {
            let s = s.trim();
            NaiveTime::parse_from_str(s, "%H:%M")
                .or_else(|_| NaiveTime::parse_from_str(s, "%H:%M:%S"))
                .map_err(|_| bad())
        };
        let (from, to) = (time(from)?, time(to)?);
        if from == to {
            return Err(WindowError::Empty(text.to_string()));
        }
        Ok(Window { from, to })
    }

    fn covers(&self, t: NaiveTime) -> bool {
        if self.from < self.to { self.from <= t && t < self.to } else { t >= self.from || t < self.to }
    }

    /// `None` when sending is allowed at `now` in `tz`; else when the window
    /// next opens (the first instant its end's wall-clock time is reached;
    /// when a clock change skips that time, the first instant after it).
    pub fn next_opening(&self, tz: Tz, now: Millis) -> Option<Millis> {
        let local = Utc.timestamp_millis_opt(now).single()?.with_timezone(&tz);
        let t = local.time();
        if !self.covers(t) {
            return None;
        }
        let today = local.date_naive();
        // The window ends today, unless it crosses midnight and began today.
        let day = if self.from > self.to && t >= self.from { today.succ_opt()? } else { today };
        Some(first_instant_at(tz, day, self.to).timestamp_millis())
    }

    /// The window as written: "21:00-09:00".
    pub fn to_text(&self) -> String {
        format!("{}-{}", clock(self.from), clock(self.to))
    }

    /// When the window ends, local time ("09:00").
    pub fn end_text(&self) -> String {
        clock(self.to)
    }
}

/// "09:00", or "09:00:30" when the seconds matter.
fn clock(t: NaiveTime) -> String {
    if t.second() == 0 { t.format("%H:%M").to_string() } else { t.format("%H:%M:%S").to_string() }
}

/// The first instant on `day` in `tz` whose wall clock reads `at`, or the
/// first one after it when a clock change skips `at`.
fn first_instant_at(tz: Tz, day: NaiveDate, at: NaiveTime) -> DateTime<Tz> {
    let mut wall = day.and_time(at);
    loop {
        match tz.from_local_datetime(&wall) {
            LocalResult::Single(t) => return t,
            LocalResult::Ambiguous(first, _) => return first,
            LocalResult::None => wall += Duration::minutes(1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::{Asia, Europe};

    #[test]
    fn russian_mobiles_by_region() {
        // Ranges of the registry (as of 2026-04-20):
        // 916 0000000-9999999: г. Москва и Московская область.
        assert_eq!(for_number("+79161234567"), Some(Europe::Moscow));
        // 913 8900000-9599999: Новосибирская обл.
        assert_eq!(for_number("+79139001234"), Some(Asia::Novosibirsk));
        // 914 6500000-7399999: Приморский край.
        assert_eq!(for_number("+79147001234"), Some(Asia::Vladivostok));
        // 911 4500000-4999999: Калининградская обл.
        assert_eq!(for_number("+79114501234"), Some(Europe::Kaliningrad));
        // 914 7800000-7899999: Камчатский край.
        assert_eq!(for_number("+79147801234"), Some(Asia::Kamchatka));
    }

    #[test]
    fn geographic_and_other_countries() {
        assert_eq!(for_number("+74232123456"), Some(Asia::Vladivostok)); // 423 Приморский край
        assert_eq!(for_number("+73432123456"), Some(Asia::Yekaterinburg)); // 343 Свердловская обл.
        assert_eq!(for_number("+74012123456"), Some(Europe::Kaliningrad));
        assert_eq!(for_number("+4930123456"), Some(Europe::Berlin));
        assert_eq!(for_number("+77011234567"), Some(Asia::Almaty));
        // The US spans zones; 000 is no Russian code; garbage.
        assert_eq!(for_number("+12025550100"), None);
        assert_eq!(for_number("+70001234567"), None);
        assert_eq!(for_number("+7abc"), None);
        assert_eq!(for_number(""), None);
    }

    fn ms(tz: Tz, y: i32, mo: u32, d: u32, h: u32, mi: u32) -> Millis {
        tz.with_ymd_and_hms(y, mo, d, h, mi, 0).single().unwrap().timestamp_millis()
    }

    #[test]
    fn window_crossing_midnight() {
        let w = Window::parse("21:00-09:00").unwrap();
        let tz = Asia::Vladivostok;
        assert_eq!(w.next_opening(tz, ms(tz, 2026, 12, 6, 12, 0)), None);
        assert_eq!(w.next_opening(tz, ms(tz, 2026, 12, 6, 20, 59)), None);
        assert_eq!(w.next_opening(tz, ms(tz, 2026, 12, 6, 21, 0)), Some(ms(tz, 2026, 12, 7, 9, 0)));
        assert_eq!(w.next_opening(tz, ms(tz, 2026, 12, 6, 23, 30)), Some(ms(tz, 2026, 12, 7, 9, 0)));
        assert_eq!(w.next_opening(tz, ms(tz, 2026, 12, 7, 3, 0)), Some(ms(tz, 2026, 12, 7, 9, 0)));
        assert_eq!(w.next_opening(tz, ms(tz, 2026, 12, 7, 9, 0)), None);
        // Same instant, another zone: quiet in Vladivostok, not in Moscow.
        let noon_msk = ms(Europe::Moscow, 2026, 12, 6, 14, 0); // 21:00 in Vladivostok
        assert_eq!(w.next_opening(Europe::Moscow, noon_msk), None);
        assert!(w.next_opening(tz, noon_msk).is_some());
        let day = Window::parse("13:00-14:30").unwrap();
        assert_eq!(day.next_opening(tz, ms(tz, 2026, 1, 1, 13, 10)), Some(ms(tz, 2026, 1, 1, 14, 30)));
        assert_eq!(day.next_opening(tz, ms(tz, 2026, 1, 1, 14, 30)), None);
    }

    #[test]
    fn window_over_daylight_saving_changes() {
        let tz = Europe::Berlin;
        let w = Window::parse("21:00-09:00").unwrap();
        // Spring forward (29 March 2026, 02:00 -> 03:00): the night is an hour shorter.
        let eve = ms(tz, 2026, 3, 28, 22, 0);
        let opens = w.next_opening(tz, eve).unwrap();
        assert_eq!(opens, ms(tz, 2026, 3, 29, 9, 0));
        assert_eq!(opens - eve, 10 * 3_600_000);
        // Fall back (25 October 2026, 03:00 -> 02:00): an hour longer.
        let eve = ms(tz, 2026, 10, 24, 22, 0);
        assert_eq!(w.next_opening(tz, eve).unwrap() - eve, 12 * 3_600_000);
        // A window ending inside the skipped hour opens when the clock jumps.
        let w = Window::parse("01:00-02:30").unwrap();
        let at = ms(tz, 2026, 3, 29, 1, 30);
        assert_eq!(w.next_opening(tz, at), Some(ms(tz, 2026, 3, 29, 3, 0)));
    }

    #[test]
    fn window_form() {
        assert_eq!(Window::parse("21:00-09:00").unwrap().to_text(), "21:00-09:00");
        assert!(matches!(Window::parse("21-9"), Err(WindowError::Form(_))));
        assert!(matches!(Window::parse("25:00-09:00"), Err(WindowError::Form(_))));
        assert!(matches!(Window::parse("09:00-09:00"), Err(WindowError::Empty(_))));
        assert_eq!(Window::parse("23:59:58-00:00:01").unwrap().to_text(), "23:59:58-00:00:01");
    }
}
