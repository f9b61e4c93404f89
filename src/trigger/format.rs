//! Locale formatting for templates: money, dates and plural forms as a
//! recipient reads them. Russian first (`ru`), English (`en`) too; any other
//! locale formats as Russian. Plain functions of values, so the template
//! filters stay thin and these are tested on their own.
//!
//! Money in `ru` is `1 234,50 ₽` with U+00A0 (no-break space) between
//! thousands and before the sign: phones render it, and a Russian text is
//! UCS-2 anyway (U+00A0 and `₽` are not in GSM 7-bit; the preview warns when
//! the formatting alone forces UCS-2). In `en` it is `₽1,234.50` (`$`, `€`,
//! `£` likewise; another currency as `CHF 1,234.50`). Whole amounts have no
//! decimals. Times are 24-hour in both locales.

use chrono::{DateTime, Datelike, TimeZone, Timelike, Utc};
use chrono_tz::Tz;

/// The locales formatting knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Locale {
    Ru,
    En,
}

impl Locale {
    /// `ru`, `ru-RU`, `en_US`, ...: by the language part; unknown → `ru`.
    pub fn parse(s: &str) -> Locale {
        let lang = s.split(['-', '_']).next().unwrap_or("").to_ascii_lowercase();
        if lang == "en" { Locale::En } else { Locale::Ru }
    }
}

/// No-break space: thousands separator and the gap before `₽` in `ru`.
pub const NBSP: char = '\u{00A0}';

fn symbol(currency: &str) -> Option<&'static str> {
    match currency.to_ascii_uppercase().as_str() {
        "RUB" | "RUR" => Some("₽"),
        "USD" => Some("$"),
        "EUR" => Some("€"),
        "GBP" => Some("£"),
        _ => None,
    }
}

fn group(digits: &str, sep: char) -> String {
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(sep);
        }
        out.push(c);
    }
    out
}

/// `amount` in `currency` (ISO 4217 code), rounded to kopecks/cents.
pub fn money(amount: f64, currency: &str, locale: Locale) -> String {
    let cents = (amount.abs() * 100.0).round() as u128;
    let (whole, frac) = (cents / 100, cents % 100);
    let sign = if amount < 0.0 && cents > 0 { "-" } else { "" };
    let (thousands, decimal) = match locale {
        Locale::Ru => (NBSP, ','),
        Locale::En => (',', '.'),
    };
    let mut number = group(&whole.to_string(), thousands);
    if frac != 0 {
        number.push(decimal);
        number.push_str(&format!("{frac:02}"));
    }
    let code = currency.to_ascii_uppercase();
    match (locale, symbol(&code)) {
        (Locale::Ru, Some(s)) => format!("{sign}{number}{NBSP}{s}"),
        (Locale::Ru, None) => format!("{sign}{number}{NBSP}{code}"),
        (Locale::En, Some(s)) => format!("{sign}{s}{number}"),
        (Locale::En, None) => format!("{sign}{code} {number}"),
    }
}

const RU_MONTHS: [&str; 12] = [
    "января",
    "февраля",
    "марта",
    "апреля",
    "мая",
    "июня",
    "июля",
    "августа",
    "сентября",
    "октября",
    "ноября",
    "декабря",
];
const EN_MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// What part of a moment to show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Moment {
    Date,
    Time,
    DateTime,
}

/// `at` in `tz`: ru `5 декабря` (`5 декабря 2027` when not this year in
/// `tz`), `14:30`, `5 декабря в 14:30`; en `December 5`, `December 5, 2027`,
/// `14:30`, `December 5 at 14:30`. `short`: ru `05.12`, en `12/05` (with the
/// time after a space for a date-time).
pub fn moment(at: DateTime<Utc>, now: DateTime<Utc>, tz: Tz, what: Moment, short: bool, locale: Locale) -> String {
    let t = at.with_timezone(&tz);
    let this_year = now.with_timezone(&tz).year();
    let (d, m) = (t.day(), t.month0() as usize);
    let time = format!("{:02}:{:02}", t.hour(), t.minute());
    let date = match (short, locale) {
        (true, Locale::Ru) => format!("{:02}.{:02}", d, m + 1),
        (true, Locale::En) => format!("{:02}/{:02}", m + 1, d),
        (false, Locale::Ru) if t.year() == this_year => format!("{d} {}", RU_MONTHS[m]),
        (false, Locale::Ru) => format!("{d} {} {}", RU_MONTHS[m], t.year()),
        (false, Locale::En) if t.year() == this_year => format!("{} {d}", EN_MONTHS[m]),
        (false, Locale::En) => format!("{} {d}, {}", EN_MONTHS[m], t.year()),
    };
    match (what, short, locale) {
        (Moment::Date, _, _) => date,
        (Moment::Time, _, _) => time,
        (Moment::DateTime, true, _) => format!("{date} {time}"),
        (Moment::DateTime, false, Locale::Ru) => format!("{date} в {time}"),
        (Moment::DateTime, false, Locale::En) => format!("{date} at {time}"),
    }
}

/// An RFC 3339 string or unix seconds as a moment; `None` if it is neither.
pub fn parse_moment(s: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s.trim()) {
        return Some(t.with_timezone(&Utc));
    }
    s.trim().parse::<f64>().ok().and_then(from_unix)
}

/// Unix seconds (fractions allowed) as a moment.
pub fn from_unix(secs: f64) -> Option<DateTime<Utc>> {
    if !secs.is_finite() {
        return None;
    }
    Utc.timestamp_millis_opt((secs * 1000.0).round() as i64).single()
}

/// The form of a noun for `n`: `forms` is `[one, few, many]` for `ru`
/// (1 товар, 2 товара, 5 товаров, 11 товаров, 21 товар) or `[one, other]`
/// for `en` (a third form is ignored in `en`; two forms in `ru` use the
/// second for few and many).
pub fn plural<'a>(n: i128, forms: &[&'a str], locale: Locale) -> &'a str {
    let n = n.unsigned_abs();
    let last = forms.len().saturating_sub(1);
    let idx = match locale {
        Locale::En => usize::from(n != 1),
        Locale::Ru => {
            let (m10, m100) = (n % 10, n % 100);
            if m10 == 1 && m100 != 11 {
                0
            } else if (2..=4).contains(&m10) && !(12..=14).contains(&m100) {
                1
            } else {
                2
            }
        }
    };
    forms.get(idx.min(last)).copied().unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_ru_and_en() {
        assert_eq!(money(1234.5, "RUB", Locale::Ru), "1\u{a0}234,50\u{a0}₽");
        assert_eq!(money(1000.0, "RUB", Locale::Ru), "1\u{a0}000\u{a0}₽");
        assert_eq!(money(999.0, "rub", Locale::Ru), "999\u{a0}₽");
        assert_eq!(money(1234567.891, "USD", Locale::Ru), "1\u{a0}234\u{a0}567,89\u{a0}$");
        assert_eq!(money(-5.0, "CHF", Locale::Ru), "-5\u{a0}CHF");
        assert_eq!(money(1234.5, "RUB", Locale::En), "₽1,234.50");
        assert_eq!(money(12.0, "CHF", Locale::En), "CHF 12");
    }

    #[test]
    fn plural_forms() {
        let f = ["товар", "товара", "товаров"];
        let ru = |n| plural(n, &f, Locale::Ru);
        assert_eq!(
            [ru(1), ru(2), ru(5), ru(11), ru(21), ru(111), ru(22), ru(14), ru(0)],
            ["товар", "товара", "товаров", "товаров", "товар", "товаров", "товара", "товаров", "товаров"]
        );
        assert_eq!(plural(1, &["item", "items"], Locale::En), "item");
        assert_eq!(plural(2, &["item", "items"], Locale::En), "items");
    }
}
