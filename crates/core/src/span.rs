//! Human-written durations in definitions and configuration: `90s`, `5m`, `1h`, `60d`, `1h30m`.

use std::time::Duration;

/// Why a duration could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not a duration: write a number followed by ms, s, m, h or d (e.g. 90s, 5m, 1h30m, 60d)"
)]
pub struct SpanError(String);

/// Parses `90s`, `5m`, `1h30m`, `60d`, `250ms`. A bare number is seconds.
pub fn parse(text: &str) -> Result<Duration, SpanError> {
    let err = || SpanError(text.chars().take(40).collect());
    let t = text.trim();
    if t.is_empty() {
        return Err(err());
    }
    if let Ok(secs) = t.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let mut total: u128 = 0;
    let mut rest = t;
    while !rest.is_empty() {
        let digits = rest.chars().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 || digits > 12 {
            return Err(err());
        }
        let n: u128 = rest[..digits].parse().map_err(|_| err())?;
        rest = &rest[digits..];
        let unit_len = rest.chars().take_while(|c| c.is_ascii_alphabetic()).count();
        let unit_ms: u128 = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return Err(err()),
        };
        rest = &rest[unit_len..];
        total = total.checked_add(n * unit_ms).ok_or_else(err)?;
    }
    let ms = u64::try_from(total).map_err(|_| err())?;
    Ok(Duration::from_millis(ms))
}

/// Formats a duration the way [`parse`] reads it, in the largest exact units (`1h30m`, `60d`).
pub fn format(d: Duration) -> String {
    let mut ms = d.as_millis();
    if ms == 0 {
        return "0s".to_string();
    }
    let mut out = String::new();
    for (unit, size) in [
        ("d", 86_400_000u128),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
        ("ms", 1),
    ] {
        if ms >= size {
            out.push_str(&format!("{}{unit}", ms / size));
            ms %= size;
        }
    }
    out
}

/// Serde adapter for `Duration` fields written as spans.
pub mod serde_span {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    /// Reads a span string or a whole number of seconds.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Secs(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Secs(s) => Ok(Duration::from_secs(s)),
            Raw::Text(t) => super::parse(&t).map_err(serde::de::Error::custom),
        }
    }

    /// Writes a span string.
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format(*d))
    }

    /// The same for `Option<Duration>`.
    pub mod option {
        use serde::{Deserialize, Deserializer, Serializer};
        use std::time::Duration;

        /// Reads an optional span.
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
            #[derive(Deserialize)]
            struct Wrap(#[serde(with = "super")] Duration);
            Ok(Option::<Wrap>::deserialize(d)?.map(|w| w.0))
        }

        /// Writes an optional span.
        pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
            match d {
                Some(d) => super::serialize(d, s),
                None => s.serialize_none(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_formats() {
        for (text, secs) in [
            ("90s", 90),
            ("5m", 300),
            ("1h30m", 5400),
            ("60d", 5_184_000),
            ("42", 42),
        ] {
            assert_eq!(parse(text).unwrap(), Duration::from_secs(secs), "{text}");
        }
        assert_eq!(parse("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(format(Duration::from_secs(5400)), "1h30m");
        assert_eq!(format(Duration::from_secs(5_184_000)), "60d");
        for bad in ["", "m", "5x", "1.5h", "-3s", "99999999999999999d"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
