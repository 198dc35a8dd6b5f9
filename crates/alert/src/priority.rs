//! Falco priorities, ordered from most to least severe.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A Falco rule priority. `Ord` follows severity: `Emergency > Alert > … > Debug`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Priority {
    Debug = 0,
    Informational = 1,
    Notice = 2,
    Warning = 3,
    Error = 4,
    Critical = 5,
    Alert = 6,
    Emergency = 7,
}

/// The priority text did not name a Falco priority.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown priority {0:?} (expected one of emergency, alert, critical, error, warning, notice, informational/info, debug)"
)]
pub struct UnknownPriority(pub String);

impl Priority {
    /// Every priority, most severe first.
    pub const ALL: [Priority; 8] = [
        Priority::Emergency,
        Priority::Alert,
        Priority::Critical,
        Priority::Error,
        Priority::Warning,
        Priority::Notice,
        Priority::Informational,
        Priority::Debug,
    ];

    /// The name Falco writes in JSON alerts ("Critical", "Informational", ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Emergency => "Emergency",
            Priority::Alert => "Alert",
            Priority::Critical => "Critical",
            Priority::Error => "Error",
            Priority::Warning => "Warning",
            Priority::Notice => "Notice",
            Priority::Informational => "Informational",
            Priority::Debug => "Debug",
        }
    }

    /// Lower-case name, as used in configuration files and metrics labels.
    pub fn as_lower_str(self) -> &'static str {
        match self {
            Priority::Emergency => "emergency",
            Priority::Alert => "alert",
            Priority::Critical => "critical",
            Priority::Error => "error",
            Priority::Warning => "warning",
            Priority::Notice => "notice",
            Priority::Informational => "informational",
            Priority::Debug => "debug",
        }
    }
}

impl FromStr for Priority {
    type Err = UnknownPriority;

    /// Case-insensitive; accepts `info` for Informational, as Falco does.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let p = if t.eq_ignore_ascii_case("emergency") {
            Priority::Emergency
        } else if t.eq_ignore_ascii_case("alert") {
            Priority::Alert
        } else if t.eq_ignore_ascii_case("critical") {
            Priority::Critical
        } else if t.eq_ignore_ascii_case("error") {
            Priority::Error
        } else if t.eq_ignore_ascii_case("warning") {
            Priority::Warning
        } else if t.eq_ignore_ascii_case("notice") {
            Priority::Notice
        } else if t.eq_ignore_ascii_case("informational") || t.eq_ignore_ascii_case("info") {
            Priority::Informational
        } else if t.eq_ignore_ascii_case("debug") {
            Priority::Debug
        } else {
            return Err(UnknownPriority(s.to_owned()));
        };
        Ok(p)
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Priority {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Priority {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Priority;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a Falco priority name")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Priority, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_str(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_case_insensitively_and_accepts_info() {
        assert_eq!("CRITICAL".parse::<Priority>().unwrap(), Priority::Critical);
        assert_eq!("info".parse::<Priority>().unwrap(), Priority::Informational);
        assert_eq!(
            "Informational".parse::<Priority>().unwrap(),
            Priority::Informational
        );
        assert!("urgent".parse::<Priority>().is_err());
    }

    #[test]
    fn orders_by_severity() {
        assert!(Priority::Emergency > Priority::Critical);
        assert!(Priority::Warning > Priority::Notice);
        assert!(Priority::Debug < Priority::Informational);
        let mut sorted = Priority::ALL;
        sorted.sort();
        assert_eq!(sorted[0], Priority::Debug);
        assert_eq!(sorted[7], Priority::Emergency);
    }

    #[test]
    fn round_trips_through_json() {
        for p in Priority::ALL {
            let s = serde_json::to_string(&p).unwrap();
            assert_eq!(serde_json::from_str::<Priority>(&s).unwrap(), p);
        }
    }
}
