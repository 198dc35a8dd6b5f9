//! Alert timestamps: nanoseconds since the Unix epoch, written as ISO-8601 UTC with nanoseconds.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// An alert time. Falco writes `2023-05-25T13:44:05.478445995Z`; any RFC 3339 time is accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Timestamp(i128);

/// The text is not an RFC 3339 time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid time {text:?}: {reason} (expected RFC 3339, e.g. 2023-05-25T13:44:05.478445995Z)")]
pub struct InvalidTime {
    pub text: String,
    pub reason: String,
}

impl Timestamp {
    pub fn from_unix_nanos(nanos: i128) -> Self {
        Timestamp(nanos)
    }

    pub fn now() -> Self {
        Timestamp(OffsetDateTime::now_utc().unix_timestamp_nanos())
    }

    pub fn unix_nanos(self) -> i128 {
        self.0
    }

    pub fn parse(text: &str) -> Result<Self, InvalidTime> {
        let invalid = |reason: String| InvalidTime {
            text: truncate_for_error(text),
            reason,
        };
        let t = OffsetDateTime::parse(text, &Rfc3339).map_err(|e| invalid(e.to_string()))?;
        // An offset can push a valid local time outside the years we can write back in UTC
        // (e.g. 9999-12-31T23:59:59-01:00); refuse it rather than print a wrong time later.
        t.checked_to_offset(time::UtcOffset::UTC)
            .filter(|utc| (0..=9999).contains(&utc.year()))
            .ok_or_else(|| invalid("out of range once converted to UTC".to_owned()))?;
        Ok(Timestamp(t.unix_timestamp_nanos()))
    }

    fn datetime(self) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp_nanos(self.0).unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }

    /// `HH:MM:SS.nnnnnnnnn` in UTC: the prefix Falco puts before a rule's output text.
    pub fn clock_prefix(self) -> String {
        let t = self.datetime();
        format!(
            "{:02}:{:02}:{:02}.{:09}",
            t.hour(),
            t.minute(),
            t.second(),
            t.nanosecond()
        )
    }
}

fn truncate_for_error(text: &str) -> String {
    text.chars().take(64).collect()
}

impl fmt::Display for Timestamp {
    /// Always nine fractional digits and a `Z`, like Falco.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = self.datetime();
        write!(
            f,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:09}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            t.nanosecond()
        )
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Timestamp;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an RFC 3339 time string")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Timestamp, E> {
                Timestamp::parse(v).map_err(E::custom)
            }
        }
        d.deserialize_str(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_falco_time_exactly() {
        let text = "2023-05-25T13:44:05.478445995Z";
        let t = Timestamp::parse(text).unwrap();
        assert_eq!(t.unix_nanos(), 1_685_022_245_478_445_995);
        assert_eq!(t.to_string(), text);
        assert_eq!(t.clock_prefix(), "13:44:05.478445995");
    }

    #[test]
    fn accepts_offsets_and_normalises_to_utc() {
        let t = Timestamp::parse("2023-05-25T15:44:05.5+02:00").unwrap();
        assert_eq!(t.to_string(), "2023-05-25T13:44:05.500000000Z");
    }

    #[test]
    fn rejects_times_outside_the_utc_years_we_can_write() {
        assert!(Timestamp::parse("9999-12-31T23:59:59-01:00").is_err());
        assert!(Timestamp::parse("0000-01-01T00:00:00+01:00").is_err());
        let edge = Timestamp::parse("9999-12-31T23:59:59Z").unwrap();
        assert_eq!(edge.to_string(), "9999-12-31T23:59:59.000000000Z");
    }

    #[test]
    fn rejects_garbage() {
        let e = Timestamp::parse("yesterday").unwrap_err();
        assert!(e.to_string().contains("yesterday"));
    }
}
