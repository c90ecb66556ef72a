//! Time settings as text with a unit: `"30s"`, `"250ms"`, `"1.5s"`, `"100us"` (or `"100µs"`),
//! `"10ns"`, `"2m"`, `"1h"`.
//!
//! [`parse`] reads an integer or decimal number followed by one unit and gives an exact
//! [`Duration`]; [`format`](fn@format) writes a `Duration` in the largest unit that represents
//! it exactly, so `parse(&format(d)) == Ok(d)` for every `Duration`. With the crate feature
//! `serde`, the configuration's `Option<Duration>` fields go through `serde_option`, which
//! also spells "not set" as `"none"` (TOML has no null, and a left-out field takes the default
//! preset's value, so absence cannot mean "not set").

use std::fmt;
use std::time::Duration;

/// The units, largest first, with their length in nanoseconds. The first spelling of each is
/// the one [`format`](fn@format) writes.
const UNITS: [(&[&str], u128); 6] = [
    (&["h"], 3_600 * NANOS_PER_SEC),
    (&["m"], 60 * NANOS_PER_SEC),
    (&["s"], NANOS_PER_SEC),
    (&["ms"], 1_000_000),
    (&["us", "µs", "μs"], 1_000),
    (&["ns"], 1),
];

/// Nanoseconds in a second.
const NANOS_PER_SEC: u128 = 1_000_000_000;

/// The most digits after the decimal point: 25 digits times the longest unit (an hour,
/// 3.6e12 ns) stays below `u128::MAX`.
const MAX_FRACTION_DIGITS: usize = 25;

/// Why a text is not a duration.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ParseDurationError {
    /// The text is empty.
    Empty,
    /// The text starts with `-`: durations are never negative.
    Negative,
    /// The text has no digits before the unit (or a malformed number, such as `"1."`).
    BadNumber,
    /// A number without a unit (`"30"`).
    MissingUnit,
    /// A unit other than `ns`, `us`/`µs`, `ms`, `s`, `m`, `h`.
    UnknownUnit(String),
    /// A decimal that is not a whole number of nanoseconds (`"1.5ns"`).
    TooPrecise,
    /// More than `Duration::MAX` (about 584 billion years).
    Overflow,
}

impl fmt::Display for ParseDurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("empty duration"),
            Self::Negative => f.write_str("a duration cannot be negative"),
            Self::BadNumber => f.write_str("a duration must start with a number, e.g. \"1.5s\""),
            Self::MissingUnit => f.write_str("missing unit (ns, us, ms, s, m or h), e.g. \"30s\""),
            Self::UnknownUnit(unit) => {
                write!(f, "unknown unit {unit:?} (use ns, us, ms, s, m or h)")
            }
            Self::TooPrecise => f.write_str("finer than one nanosecond"),
            Self::Overflow => f.write_str("too long to represent (more than Duration::MAX)"),
        }
    }
}

impl std::error::Error for ParseDurationError {}

/// Reads a number (integer or decimal) followed by a unit: `ns`, `us` (`µs`), `ms`, `s`, `m`
/// (minutes) or `h`. Spaces around the text and between the number and the unit are allowed.
///
/// # Errors
/// A [`ParseDurationError`] for an empty text, a negative number, a missing or unknown unit,
/// a value finer than a nanosecond, or one above `Duration::MAX`.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use flujo_runtime::config::duration::{parse, ParseDurationError};
///
/// assert_eq!(parse("250ms"), Ok(Duration::from_millis(250)));
/// assert_eq!(parse("1.5s"), Ok(Duration::from_millis(1500)));
/// assert_eq!(parse("100µs"), Ok(Duration::from_micros(100)));
/// assert_eq!(parse("30"), Err(ParseDurationError::MissingUnit));
/// assert_eq!(parse("-1s"), Err(ParseDurationError::Negative));
/// ```
pub fn parse(text: &str) -> Result<Duration, ParseDurationError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(ParseDurationError::Empty);
    }
    if text.starts_with('-') {
        return Err(ParseDurationError::Negative);
    }
    let number_len = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(number_len);
    let unit_ns = unit_nanos(unit.trim())?;
    let nanos = scale(number, unit_ns)?;
    let secs = u64::try_from(nanos / NANOS_PER_SEC).map_err(|_| ParseDurationError::Overflow)?;
    // The remainder is below 1e9, so it fits a u32.
    Ok(Duration::new(secs, (nanos % NANOS_PER_SEC) as u32))
}

/// The length of `unit` in nanoseconds.
fn unit_nanos(unit: &str) -> Result<u128, ParseDurationError> {
    if unit.is_empty() {
        return Err(ParseDurationError::MissingUnit);
    }
    UNITS
        .iter()
        .find(|(names, _)| names.contains(&unit))
        .map(|&(_, ns)| ns)
        .ok_or_else(|| ParseDurationError::UnknownUnit(unit.to_owned()))
}

/// `number` (digits, optionally `.` and more digits) times `unit_ns`, exactly.
fn scale(number: &str, unit_ns: u128) -> Result<u128, ParseDurationError> {
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let fraction_given = number.contains('.');
    if whole.is_empty() || (fraction_given && fraction.is_empty()) || fraction.contains('.') {
        return Err(ParseDurationError::BadNumber);
    }
    let whole_ns = digits(whole)?
        .checked_mul(unit_ns)
        .ok_or(ParseDurationError::Overflow)?;
    // Trailing zeros carry no precision; dropping them keeps "1.50000…0s" within bounds.
    let fraction = fraction.trim_end_matches('0');
    if fraction.len() > MAX_FRACTION_DIGITS {
        return Err(ParseDurationError::TooPrecise);
    }
    let denominator = 10u128.pow(fraction.len() as u32);
    let scaled = if fraction.is_empty() {
        0
    } else {
        digits(fraction)? * unit_ns
    };
    if scaled % denominator != 0 {
        return Err(ParseDurationError::TooPrecise);
    }
    whole_ns
        .checked_add(scaled / denominator)
        .ok_or(ParseDurationError::Overflow)
}

/// The value of a string of ASCII digits.
fn digits(text: &str) -> Result<u128, ParseDurationError> {
    text.bytes().try_fold(0u128, |acc, b| {
        acc.checked_mul(10)
            .and_then(|acc| acc.checked_add(u128::from(b - b'0')))
            .ok_or(ParseDurationError::Overflow)
    })
}

/// `d` as an integer in the largest unit that represents it exactly (`"90s"`, `"1500ms"`,
/// `"2h"`); zero is `"0s"`.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use flujo_runtime::config::duration::{format, parse};
///
/// assert_eq!(format(Duration::from_millis(1500)), "1500ms");
/// assert_eq!(format(Duration::from_secs(7200)), "2h");
/// assert_eq!(format(Duration::from_nanos(10)), "10ns");
/// assert_eq!(parse(&format(Duration::MAX)), Ok(Duration::MAX));
/// ```
pub fn format(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".to_owned();
    }
    // The last unit is 1 ns, which divides everything, so the search always finds one.
    let (names, unit_ns) = UNITS
        .iter()
        .find(|(_, unit_ns)| nanos.is_multiple_of(*unit_ns))
        .expect("1 ns divides every duration");
    format!("{}{}", nanos / unit_ns, names[0])
}

/// Serde glue for an `Option<Duration>` field: a string as [`format`](fn@format) writes it, or
/// `"none"` for `None`.
///
/// Errors name the field: the configuration wraps [`deserialize`](serde_option::deserialize)
/// in one function per field that passes its path.
#[cfg(feature = "serde")]
pub mod serde_option {
    use std::time::Duration;

    use serde::de::{Error, Visitor};
    use serde::{Deserializer, Serializer};

    /// The spelling of "not set".
    pub const NONE: &str = "none";

    /// Writes `value` as [`format`](fn@super::format) does, or `"none"`.
    ///
    /// # Errors
    /// Only the serializer's own.
    pub fn serialize<S: Serializer>(value: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(d) => s.serialize_str(&super::format(*d)),
            None => s.serialize_str(NONE),
        }
    }

    /// Reads a duration string (see [`parse`](super::parse)) or `"none"`; an error names
    /// `field` (its path, as `result_cache.ttl`).
    ///
    /// # Errors
    /// A custom error naming `field` and what is wrong: a bad text, or a bare number (no
    /// unit); the deserializer's own error for any other type.
    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
        field: &str,
    ) -> Result<Option<Duration>, D::Error> {
        d.deserialize_any(DurationVisitor { field })
    }

    /// Accepts a string; a number is refused with the field's path and the missing unit.
    struct DurationVisitor<'a> {
        field: &'a str,
    }

    impl DurationVisitor<'_> {
        fn refuse<E: Error>(&self, text: &str, why: impl std::fmt::Display) -> E {
            let field = self.field;
            E::custom(format_args!(
                "{field}: invalid duration {text}: {why} (or \"{NONE}\" for not set)"
            ))
        }
    }

    impl Visitor<'_> for DurationVisitor<'_> {
        type Value = Option<Duration>;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(
                f,
                "{}: a duration with a unit, e.g. \"30s\" or \"250ms\", or \"{NONE}\"",
                self.field
            )
        }

        fn visit_str<E: Error>(self, text: &str) -> Result<Self::Value, E> {
            if text.trim() == NONE {
                return Ok(None);
            }
            super::parse(text)
                .map(Some)
                .map_err(|e| self.refuse(&format!("{text:?}"), e))
        }

        fn visit_i64<E: Error>(self, n: i64) -> Result<Self::Value, E> {
            Err(self.refuse(&n.to_string(), super::ParseDurationError::MissingUnit))
        }

        fn visit_u64<E: Error>(self, n: u64) -> Result<Self::Value, E> {
            Err(self.refuse(&n.to_string(), super::ParseDurationError::MissingUnit))
        }

        fn visit_f64<E: Error>(self, n: f64) -> Result<Self::Value, E> {
            Err(self.refuse(&n.to_string(), super::ParseDurationError::MissingUnit))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_unit_and_spelling_parses() {
        let cases = [
            ("10ns", Duration::from_nanos(10)),
            ("100us", Duration::from_micros(100)),
            ("100µs", Duration::from_micros(100)),
            ("100μs", Duration::from_micros(100)),
            ("250ms", Duration::from_millis(250)),
            ("30s", Duration::from_secs(30)),
            ("2m", Duration::from_secs(120)),
            ("1h", Duration::from_secs(3600)),
            ("1.5s", Duration::from_millis(1500)),
            ("0.001ms", Duration::from_nanos(1_000)),
            (
                "1.50000000000000000000000000000s",
                Duration::from_millis(1500),
            ),
            (" 7 ms ", Duration::from_millis(7)),
            ("0s", Duration::ZERO),
            ("18446744073709551615.999999999s", Duration::MAX),
        ];
        for (text, want) in cases {
            assert_eq!(parse(text), Ok(want), "{text:?}");
        }
    }

    #[test]
    fn malformed_texts_are_refused_with_their_reason() {
        use ParseDurationError as E;
        let cases = [
            ("", E::Empty),
            ("  ", E::Empty),
            ("-5s", E::Negative),
            ("30", E::MissingUnit),
            ("1.5", E::MissingUnit),
            ("s", E::BadNumber),
            (".5s", E::BadNumber),
            ("1.s", E::BadNumber),
            ("1.2.3s", E::BadNumber),
            ("5 sec", E::UnknownUnit("sec".to_owned())),
            ("5d", E::UnknownUnit("d".to_owned())),
            ("5S", E::UnknownUnit("S".to_owned())),
            ("1.5ns", E::TooPrecise),
            ("0.00000000000000000000000001h", E::TooPrecise),
            ("18446744073709551616s", E::Overflow),
            ("5124095576030432h", E::Overflow),
            ("999999999999999999999999999999999999999999ns", E::Overflow),
        ];
        for (text, want) in cases {
            assert_eq!(parse(text), Err(want.clone()), "{text:?}");
            assert!(!want.to_string().is_empty());
        }
    }

    #[test]
    fn format_picks_the_largest_exact_unit_and_round_trips() {
        let cases = [
            (Duration::ZERO, "0s"),
            (Duration::from_nanos(1), "1ns"),
            (Duration::from_micros(100), "100us"),
            (Duration::from_millis(1500), "1500ms"),
            (Duration::from_secs(59), "59s"),
            (Duration::from_secs(60), "1m"),
            (Duration::from_secs(5400), "90m"),
            (Duration::from_secs(7200), "2h"),
            (Duration::MAX, "18446744073709551615999999999ns"),
        ];
        for (d, text) in cases {
            assert_eq!(format(d), text);
            assert_eq!(parse(text), Ok(d));
        }
        // A spread of odd values, by a seeded xorshift.
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..1_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let d = Duration::new(seed >> (seed % 64), (seed % 1_000_000_000) as u32);
            assert_eq!(parse(&format(d)), Ok(d), "{d:?}");
        }
    }
}
