//! Durations as rules write them: `90s`, `30m`, `1h`, `2d`, `1h30m`, `0s`.
//! One parser for the config file and the API.

use crate::message::Millis;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a duration: write a number and a unit (s, m, h, d), such as \"90s\", \"1h30m\" or \"2d\"")]
pub struct DurationError(pub String);

/// The longest duration a rule may use: a year.
pub const MAX: Millis = 366 * 86_400_000;

/// `text` in milliseconds.
pub fn parse(text: &str) -> Result<Millis, DurationError> {
    let bad = || DurationError(text.to_string());
    let t = text.trim();
    if t.is_empty() {
        return Err(bad());
    }
    let mut total: Millis = 0;
    let mut digits = String::new();
    for ch in t.chars() {
        if ch.is_ascii_digit() {
            if digits.len() >= 9 {
                return Err(bad());
            }
            digits.push(ch);
            continue;
        }
        let unit: Millis = match ch {
            's' => 1_000,
            'm' => 60_000,
            'h' => 3_600_000,
            'd' => 86_400_000,
            _ => return Err(bad()),
        };
        if digits.is_empty() {
            return Err(bad());
        }
        let n: Millis = digits.parse().map_err(|_| bad())?;
        total = total.checked_add(n.checked_mul(unit).ok_or_else(bad)?).ok_or_else(bad)?;
        digits.clear();
    }
    if !digits.is_empty() || total > MAX {
        return Err(bad());
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_units_and_sums() {
        assert_eq!(parse("90s"), Ok(90_000));
        assert_eq!(parse("30m"), Ok(1_800_000));
        assert_eq!(parse("1h30m"), Ok(5_400_000));
        assert_eq!(parse("2d"), Ok(172_800_000));
        assert_eq!(parse("0s"), Ok(0));
        for bad in ["", "1", "h", "1x", "-1h", "1.5h", "400d", "99999999999s"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
