//! Recipient numbers: normalising what people type ("8 916 123-45-67", "+7 (916) ...",
//! "0049 30 ...") to E.164 ("+79161234567") with libphonenumber's metadata, and rejecting numbers
//! that metadata says cannot exist.
//!
//! Two deliberate departures from calling `phonenumber::parse` with the default region:
//! - A number written internationally ("+", the region's international prefix, or "00") is parsed
//!   as international, without the default region. With a region, phonenumber 0.3.10 strips that
//!   region's national prefix from foreign numbers: "+49 89 1234567" with region RU (prefix 8)
//!   comes out as the valid but wrong "+4991234567".
//! - "00" is taken as an international prefix even where the region's own prefix differs (RU uses
//!   810, US 011); the crate alone reads "0044 ..." in RU as the national number "00442...".

use phonenumber::metadata::{DATABASE, Metadata};
use phonenumber::{PhoneNumber, country};

/// Why a recipient could not be normalised.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NumberError {
    #[error("{input:?} is not a phone number: {reason}")]
    Unparsable { input: String, reason: String },
    #[error("{input:?} is not a valid number for its country")]
    Invalid { input: String },
    #[error("unknown region {region:?}: expected an ISO 3166 alpha-2 code such as \"RU\" or \"US\"")]
    UnknownRegion { region: String },
}

/// Region id and its metadata, or `UnknownRegion`.
fn region(region: &str) -> Result<(country::Id, &'static Metadata), NumberError> {
    let unknown = || NumberError::UnknownRegion { region: region.to_string() };
    let id: country::Id = region.to_ascii_uppercase().parse().map_err(|_| unknown())?;
    let meta = DATABASE.by_id(id.as_ref()).ok_or_else(unknown)?;
    Ok((id, meta))
}

/// `input` as "+<country code><number>" if it is written internationally: with a leading "+", the
/// region's international prefix, or "00". `None` for national forms and for anything with other
/// than digits and the usual separators (left to the crate's own parser).
fn international_form(input: &str, meta: &Metadata) -> Option<String> {
    let trimmed = input.trim_start();
    let (plus, rest) = match trimmed.strip_prefix('+') {
        Some(rest) => (true, rest),
        None => (false, trimmed),
    };
    let mut digits = String::with_capacity(rest.len());
    for c in rest.chars() {
        match c {
            '0'..='9' => digits.push(c),
            ' ' | '-' | '.' | '(' | ')' | '/' | '\u{A0}' => {}
            _ => return None,
        }
    }
    if plus {
        return Some(format!("+{digits}"));
    }
    let idd_end = meta
        .international_prefix()
        .and_then(|re| re.find(&digits))
        .filter(|m| m.start() == 0)
        .map(|m| m.end())
        .or_else(|| digits.starts_with("00").then_some(2))?;
    let number = &digits[idd_end..];
    // A country code never starts with 0 (the crate applies the same rule after an IDD).
    (!number.is_empty() && !number.starts_with('0')).then(|| format!("+{number}"))
}

/// Parse `input` (may have spaces, dashes, parentheses, a leading "+", an international prefix such
/// as "00", or be in national form like "8 916 123-45-67") using `default_region` (ISO 3166
/// alpha-2, case-insensitive) for numbers without a country code, and return the E.164 form, e.g.
/// "+79161234567". Numbers the libphonenumber metadata says are not valid, and numbers with an
/// extension (SMS cannot reach one), are rejected.
pub fn normalise(input: &str, default_region: &str) -> Result<String, NumberError> {
    let (id, meta) = region(default_region)?;
    let unparsable = |reason: &str| NumberError::Unparsable { input: input.to_string(), reason: reason.to_string() };
    if input.trim().is_empty() {
        return Err(unparsable("it is empty"));
    }
    let intl = international_form(input, meta);
    let parsed: PhoneNumber = match &intl {
        Some(intl) => phonenumber::parse(None, intl),
        None => phonenumber::parse(Some(id), input),
    }
    .map_err(|e| unparsable(&e.to_string()))?;
    if intl.is_none() && parsed.code().value() != meta.country_code() {
        // A foreign country code we could not re-read internationally (letters, "tel:" URI):
        // the crate would have applied the default region's national prefix to it.
        return Err(unparsable("a foreign number must be written with digits only, as +<country code> <number>"));
    }
    if parsed.extension().is_some() {
        return Err(unparsable("it has an extension, which cannot receive SMS"));
    }
    if !phonenumber::is_valid(&parsed) {
        return Err(NumberError::Invalid { input: input.to_string() });
    }
    // E.164 is "+", the country code and the national number (with any
    // leading zeros) as they are; the crate's formatter would first look up
    // a national format by regular expression, only to not use it.
    Ok(format!("+{}{}", parsed.code().value(), parsed.national()))
}

/// Whether `region` is an ISO 3166 alpha-2 code libphonenumber has metadata for (case-insensitive).
pub fn region_known(region: &str) -> bool {
    self::region(region).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(input: &str, region: &str) -> String {
        match normalise(input, region) {
            Ok(n) => n,
            Err(e) => panic!("{input:?} in {region}: {e}"),
        }
    }

    #[test]
    fn national_and_formatted_forms() {
        assert_eq!(ok("8 916 123-45-67", "RU"), "+79161234567");
        assert_eq!(ok("8 (916) 123-45-67", "RU"), "+79161234567");
        assert_eq!(ok("9161234567", "RU"), "+79161234567");
        assert_eq!(ok("8 916 123-45-67", "ru"), "+79161234567");
        assert_eq!(ok("650-253-0000", "US"), "+16502530000");
        assert_eq!(ok("(650) 253-0000", "us"), "+16502530000");
        assert_eq!(ok("030 12345678", "DE"), "+493012345678");
    }

    #[test]
    fn international_forms_ignore_default_region() {
        assert_eq!(ok("+7 (916) 123-45-67", "US"), "+79161234567");
        assert_eq!(ok("+1 650 253 0000", "US"), "+16502530000");
        assert_eq!(ok("+1 650 253 0000", "RU"), "+16502530000");
        // Region prefixes: 00 in DE, 810 in RU, 011 in US.
        assert_eq!(ok("0049 30 12345678", "DE"), "+493012345678");
        assert_eq!(ok("00 7 916 123 45 67", "DE"), "+79161234567");
        assert_eq!(ok("8 10 44 20 7946 0958", "RU"), "+442079460958");
        assert_eq!(ok("011 44 20 7946 0958", "US"), "+442079460958");
        // "00" is accepted where it is not the region's prefix (the crate alone rejects these).
        assert_eq!(ok("0044 20 7946 0958", "RU"), "+442079460958");
        assert_eq!(ok("0044 20 7946 0958", "US"), "+442079460958");
    }

    #[test]
    fn e164_is_written_as_the_crates_formatter_writes_it() {
        // Italian numbers keep the national number's leading zero.
        for input in ["+39 06 6982 0000", "+39 333 123 4567", "+7 916 123-45-67", "+1 650 253 0000", "+44 20 7946 0958"]
        {
            let parsed = phonenumber::parse(None, input).unwrap();
            let theirs = parsed.format().mode(phonenumber::Mode::E164).to_string();
            assert_eq!(ok(input, "RU"), theirs, "{input}");
        }
        assert_eq!(ok("+39 06 6982 0000", "RU"), "+390669820000");
    }

    #[test]
    fn foreign_numbers_keep_their_leading_digits() {
        // The crate alone strips the default region's national prefix (8 in RU, 1 in US) here.
        assert_eq!(ok("+49 89 1234567", "RU"), "+49891234567");
        assert_eq!(ok("810 49 89 1234567", "RU"), "+49891234567");
        assert_eq!(ok("+86 138 0013 8000", "US"), "+8613800138000");
        assert_eq!(ok("011 86 138 0013 8000", "US"), "+8613800138000");
        assert_eq!(ok("+44 121 496 0000", "US"), "+441214960000");
        assert_eq!(ok("+44 (0) 20 7946 0958", "US"), "+442079460958");
    }

    #[test]
    fn rejects_garbage_and_invalid_numbers() {
        let unparsable =
            |input: &str| matches!(normalise(input, "RU"), Err(NumberError::Unparsable { input: i, .. }) if i == input);
        assert!(unparsable("hello"));
        assert!(unparsable("12ab"));
        assert!(unparsable(""));
        assert!(unparsable("   "));
        assert!(unparsable("+"));
        assert!(unparsable("+999 1234567"));
        assert!(unparsable("+7 916 123 45 67 ext 12"));
        assert_eq!(normalise("+7 123", "RU"), Err(NumberError::Invalid { input: "+7 123".into() }));
        assert!(matches!(normalise("+7 916 123-45-67abc", "RU"), Err(NumberError::Invalid { .. })));
    }

    #[test]
    fn error_messages_name_input_and_reason() {
        let msg =
            |input: &str, region: &str| normalise(input, region).map_or_else(|e| e.to_string(), |n| format!("ok {n}"));
        assert_eq!(msg("12ab", "RU"), "\"12ab\" is not a phone number: not a number");
        assert_eq!(msg("", "RU"), "\"\" is not a phone number: it is empty");
        assert_eq!(msg("+7 123", "RU"), "\"+7 123\" is not a valid number for its country");
        assert!(msg("1", "XX").starts_with("unknown region \"XX\""));
    }

    #[test]
    fn regions() {
        assert_eq!(normalise("8 916 123-45-67", "XX"), Err(NumberError::UnknownRegion { region: "XX".into() }));
        assert!(matches!(normalise("+79161234567", ""), Err(NumberError::UnknownRegion { .. })));
        assert!(region_known("RU"));
        assert!(region_known("ru"));
        assert!(region_known("Us"));
        assert!(!region_known("XX"));
        assert!(!region_known("RUS"));
        assert!(!region_known(""));
    }
}
