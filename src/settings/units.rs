//! Human-friendly durations (`"5s"`, `"250ms"`) and sizes (`"16KiB"`, `"10MB"`) as written in
//! the config file: their raw serde forms ([`DurationValue`], [`SizeValue`]), kept unparsed
//! so that a bad one is reported with its position, and their parsers.
//!
//! Both parsers take a non-negative integer followed directly by a unit (no space, no fraction,
//! no sign), so every value has exactly one spelling to get wrong and one error to read. All
//! arithmetic is checked: a value that overflows is an error, never a wrapped number.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer};

/// Duration units, longest suffix first so `ms` is not read as `m` followed by garbage.
const DURATION_UNITS: &[(&str, u64)] = &[
    // (suffix, nanoseconds per unit)
    ("ns", 1),
    ("us", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60 * 1_000_000_000),
    ("h", 3_600 * 1_000_000_000),
];

/// Size units. Binary (`KiB`) and decimal (`KB`) are both accepted because both are common
/// and the difference matters for limits; a bare number (or `B`) means bytes.
const SIZE_UNITS: &[(&str, u64)] = &[
    ("B", 1),
    ("KiB", 1 << 10),
    ("MiB", 1 << 20),
    ("GiB", 1 << 30),
    ("TiB", 1 << 40),
    ("KB", 1_000),
    ("MB", 1_000_000),
    ("GB", 1_000_000_000),
    ("TB", 1_000_000_000_000),
];

/// Splits `"250ms"` into `(250, "ms")`. The number is everything up to the first non-digit.
fn split_number(text: &str, what: &str, example: &str) -> Result<(u64, String), String> {
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    if text.is_empty() {
        return Err(format!("empty {what}; write e.g. \"{example}\""));
    }
    if digits == 0 {
        return Err(format!(
            "invalid {what} \"{text}\": must start with a non-negative integer, e.g. \"{example}\""
        ));
    }
    let (number, unit) = text.split_at(digits);
    let number = number
        .parse::<u64>()
        .map_err(|_| format!("invalid {what} \"{text}\": number too large"))?;
    Ok((number, unit.to_owned()))
}

/// Parses a duration such as `"5s"`, `"250ms"`, `"2m"`, `"1h"`, `"1500us"` or `"10ns"`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = split_number(text, "duration", "5s")?;
    let Some(&(_, nanos_per_unit)) = DURATION_UNITS.iter().find(|(suffix, _)| *suffix == unit)
    else {
        let why = if unit.is_empty() {
            "missing unit".to_owned()
        } else {
            format!("unknown unit \"{unit}\"")
        };
        return Err(format!(
            "invalid duration \"{text}\": {why} (use ns, us, ms, s, m or h, e.g. \"5s\")"
        ));
    };
    // u64 nanoseconds covers ~584 years, far past any sane timeout.
    let nanos = number
        .checked_mul(nanos_per_unit)
        .ok_or_else(|| format!("invalid duration \"{text}\": too large"))?;
    Ok(Duration::from_nanos(nanos))
}

/// Parses a size such as `"16KiB"`, `"10MiB"`, `"1GiB"`, `"512B"`, `"100KB"`, `"1MB"` or a bare
/// byte count `"1024"`.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let (number, unit) = split_number(text, "size", "16KiB")?;
    let multiplier = if unit.is_empty() {
        1
    } else {
        match SIZE_UNITS.iter().find(|(suffix, _)| *suffix == unit) {
            Some(&(_, multiplier)) => multiplier,
            None => {
                return Err(format!(
                    "invalid size \"{text}\": unknown unit \"{unit}\" \
                     (use B, KiB, MiB, GiB, TiB, KB, MB, GB or TB, e.g. \"16KiB\")"
                ))
            }
        }
    };
    number
        .checked_mul(multiplier)
        .ok_or_else(|| format!("invalid size \"{text}\": too large"))
}

/// A size as written: an integer byte count or a string with a unit (`"16KiB"`).
#[derive(Debug)]
pub enum SizeValue {
    Bytes(i64),
    Text(String),
}

/// A duration as written (`"5s"`); a string with a unit is required, because a bare number
/// would leave the unit to guesswork.
#[derive(Debug)]
pub struct DurationValue(pub String);

/// A size value as a byte count.
pub fn size_value(value: &SizeValue) -> Result<u64, String> {
    match value {
        SizeValue::Bytes(n) => {
            u64::try_from(*n).map_err(|_| format!("invalid size {n}: must not be negative"))
        }
        SizeValue::Text(text) => parse_size(text),
    }
}

/// A duration as shown in messages (`5s`, `250ms`).
pub fn show_duration(duration: Duration) -> String {
    format!("{duration:?}")
}

impl<'de> Deserialize<'de> for SizeValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SizeVisitor;
        impl Visitor<'_> for SizeVisitor {
            type Value = SizeValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(r#"a size such as "16KiB", "10MB" or a byte count"#)
            }
            fn visit_i64<E: de::Error>(self, value: i64) -> Result<SizeValue, E> {
                Ok(SizeValue::Bytes(value))
            }
            fn visit_u64<E: de::Error>(self, value: u64) -> Result<SizeValue, E> {
                i64::try_from(value)
                    .map(SizeValue::Bytes)
                    .map_err(|_| E::custom("size too large"))
            }
            fn visit_str<E: de::Error>(self, value: &str) -> Result<SizeValue, E> {
                Ok(SizeValue::Text(value.to_owned()))
            }
        }
        deserializer.deserialize_any(SizeVisitor)
    }
}

impl<'de> Deserialize<'de> for DurationValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DurationVisitor;
        impl Visitor<'_> for DurationVisitor {
            type Value = DurationValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(r#"a duration with a unit, such as "5s" or "250ms""#)
            }
            fn visit_str<E: de::Error>(self, value: &str) -> Result<DurationValue, E> {
                Ok(DurationValue(value.to_owned()))
            }
        }
        deserializer.deserialize_str(DurationVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let ok: &[(&str, Duration)] = &[
            ("0s", Duration::ZERO),
            ("5s", Duration::from_secs(5)),
            ("250ms", Duration::from_millis(250)),
            ("2m", Duration::from_secs(120)),
            ("1h", Duration::from_secs(3600)),
            ("1500us", Duration::from_micros(1500)),
            ("10ns", Duration::from_nanos(10)),
            ("007s", Duration::from_secs(7)),
        ];
        for (text, want) in ok {
            assert_eq!(parse_duration(text), Ok(*want), "{text}");
        }
        let bad: &[(&str, &str)] = &[
            ("", "empty duration"),
            ("s", "must start with a non-negative integer"),
            ("-5s", "must start with a non-negative integer"),
            ("+5s", "must start with a non-negative integer"),
            ("5", "missing unit"),
            ("5 s", "unknown unit \" s\""),
            ("5S", "unknown unit \"S\""),
            ("1.5s", "unknown unit \".5s\""),
            ("5sec", "unknown unit \"sec\""),
            ("5s ", "unknown unit \"s \""),
            ("99999999999999999999s", "number too large"),
            ("9999999999999h", "too large"),
        ];
        for (text, want) in bad {
            let err = parse_duration(text).expect_err(text);
            assert!(err.contains(want), "{text}: {err}");
        }
    }

    #[test]
    fn sizes() {
        let ok: &[(&str, u64)] = &[
            ("0", 0),
            ("1024", 1024),
            ("512B", 512),
            ("16KiB", 16 * 1024),
            ("10MiB", 10 * 1024 * 1024),
            ("1GiB", 1 << 30),
            ("2TiB", 2 << 40),
            ("100KB", 100_000),
            ("1MB", 1_000_000),
            ("3GB", 3_000_000_000),
        ];
        for (text, want) in ok {
            assert_eq!(parse_size(text), Ok(*want), "{text}");
        }
        let bad: &[(&str, &str)] = &[
            ("", "empty size"),
            ("KiB", "must start with a non-negative integer"),
            ("-1", "must start with a non-negative integer"),
            ("16kib", "unknown unit \"kib\""),
            ("16 KiB", "unknown unit \" KiB\""),
            ("1.5MiB", "unknown unit \".5MiB\""),
            ("16K", "unknown unit \"K\""),
            ("99999999999999999999", "number too large"),
            ("99999999999TiB", "too large"),
        ];
        for (text, want) in bad {
            let err = parse_size(text).expect_err(text);
            assert!(err.contains(want), "{text}: {err}");
        }
    }
}
