//! Small value types shared by the file formats.

use std::fmt;

use jiff::SignedDuration;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A non-negative duration written the way people write them: `600s`, `24h`,
/// `1h 30m`, ISO 8601 `PT10M`, or a bare number of seconds.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Dur(pub SignedDuration);

impl Dur {
    /// The longest duration a file may give, in seconds (about 31 years):
    /// sums of durations and times plus a duration stay in range.
    pub const MAX_SECS: i64 = 1_000_000_000;

    /// From whole seconds.
    pub const fn secs(s: i64) -> Self {
        Dur(SignedDuration::from_secs(s))
    }

    /// From whole hours.
    pub const fn hours(h: i64) -> Self {
        Dur(SignedDuration::from_hours(h))
    }
}

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#}", self.0)
    }
}

impl fmt::Debug for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::str::FromStr for Dur {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let d: SignedDuration = s.trim().parse().map_err(|e| {
            format!("invalid duration `{s}` (write it like 600s, 24h or 1h30m): {e}")
        })?;
        if d.is_negative() {
            return Err(format!("duration `{s}` is negative"));
        }
        if d > SignedDuration::from_secs(Dur::MAX_SECS) {
            return Err(format!(
                "duration `{s}` is too long (at most {}s, about 31 years)",
                Dur::MAX_SECS
            ));
        }
        Ok(Dur(d))
    }
}

impl Serialize for Dur {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Dur;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as 600s, 24h or 1h30m, or whole seconds")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Dur, E> {
                i64::try_from(v)
                    .ok()
                    .filter(|s| *s <= Dur::MAX_SECS)
                    .map(Dur::secs)
                    .ok_or_else(|| E::custom(format!("duration of {v} seconds is too long")))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Dur, E> {
                u64::try_from(v)
                    .map_err(|_| E::custom(format!("duration `{v}` is negative")))
                    .and_then(|v| self.visit_u64(v))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Dur, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_friendly_iso_and_seconds() {
        assert_eq!("600s".parse::<Dur>().unwrap(), Dur::secs(600));
        assert_eq!("24h".parse::<Dur>().unwrap(), Dur::hours(24));
        assert_eq!("PT10M".parse::<Dur>().unwrap(), Dur::secs(600));
        assert_eq!(Dur::hours(24).to_string(), "24h");
        assert!("-5s".parse::<Dur>().is_err());
        assert!("soon".parse::<Dur>().is_err());
        // Found by fuzzing the plan: two steps this long overflowed the plan's total.
        assert_eq!(
            "2562047788015215h".parse::<Dur>().unwrap_err(),
            "duration `2562047788015215h` is too long (at most 1000000000s, about 31 years)"
        );
        assert_eq!(
            "1000000000s".parse::<Dur>().unwrap(),
            Dur::secs(1_000_000_000)
        );
        let d: Dur = serde_json::from_str("90").unwrap();
        assert_eq!(d, Dur::secs(90));
    }
}
