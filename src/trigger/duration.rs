//! Durations as rules write them (`"90s"`, `"30m"`, `"1h"`, `"2d"`,
//! `"1h30m"`): one parser for the config file and the API alike.

use crate::message::Millis;

/// Why a duration did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("is empty; write a duration such as \"90s\", \"30m\", \"1h\", \"2d\" or \"1h30m\"")]
    Empty,
    #[error("{0:?} is not a duration: write numbers with units s, m, h or d (\"90s\", \"1h30m\")")]
    Malformed(String),
    #[error("{0:?} is longer than 366 days")]
    TooLong(String),
}

/// The longest duration accepted.
pub const MAX_MS: Millis = 366 * 24 * 3600 * 1000;

/// `s` in milliseconds: one or more `<digits><unit>` with units `s`, `m`,
/// `h`, `d`.
pub fn parse(s: &str) -> Result<Millis, DurationError> {
    let t = s.trim();
    if t.is_empty() {
        return Err(DurationError::Empty);
    }
    let bad = || DurationError::Malformed(s.to_string());
    let mut total: Millis = 0;
    let mut digits = String::new();
    for ch in t.chars() {
        if ch.is_ascii_digit() {
            digits.push(ch);
            continue;
        }
        let unit: Millis = match ch {
            's' => 1000,
            'm' => 60_000,
            'h' => 3_600_000,
            'd' => 86_400_000,
            _ => return Err(bad()),
        };
        if digits.is_empty() || digits.len() > 9 {
            return Err(if digits.is_empty() { bad() } else { DurationError::TooLong(s.to_string()) });
        }
        let n: Millis = digits.parse().map_err(|_| bad())?;
        total += n * unit;
        digits.clear();
        if total > MAX_MS {
            return Err(DurationError::TooLong(s.to_string()));
        }
    }
    if !digits.is_empty() {
        return Err(bad());
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_and_sums() {
        assert_eq!(parse("90s"), Ok(90_000));
        assert_eq!(parse("30m"), Ok(1_800_000));
        assert_eq!(parse("1h"), Ok(3_600_000));
        assert_eq!(parse("2d"), Ok(172_800_000));
        assert_eq!(parse("1h30m"), Ok(5_400_000));
        assert_eq!(parse("0s"), Ok(0));
    }

    #[test]
    fn refusals_say_why() {
        assert_eq!(parse(""), Err(DurationError::Empty));
        assert!(matches!(parse("10"), Err(DurationError::Malformed(_))));
        assert!(matches!(parse("h"), Err(DurationError::Malformed(_))));
        assert!(matches!(parse("1w"), Err(DurationError::Malformed(_))));
        assert!(matches!(parse("-1h"), Err(DurationError::Malformed(_))));
        assert!(matches!(parse("400d"), Err(DurationError::TooLong(_))));
    }
}
