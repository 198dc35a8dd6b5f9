//! `--output` values: `stdout`, `file:PATH`, `http://HOST:PORT/PATH` (or https).

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Deserializer};

/// One alert destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputSpec {
    Stdout,
    /// Append JSON lines to this file.
    File(PathBuf),
    /// POST each alert to this URL (Falco `http_output`).
    Http(String),
}

/// The text names no known output.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown output {0:?} (expected stdout, file:PATH or http://HOST:PORT/)")]
pub struct ParseOutputError(pub String);

impl FromStr for OutputSpec {
    type Err = ParseOutputError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        if t == "stdout" {
            return Ok(OutputSpec::Stdout);
        }
        if let Some(path) = t.strip_prefix("file:") {
            if path.is_empty() {
                return Err(ParseOutputError(s.to_owned()));
            }
            return Ok(OutputSpec::File(PathBuf::from(path)));
        }
        let lower = t.to_ascii_lowercase();
        if let Some(rest) = lower
            .strip_prefix("http://")
            .or_else(|| lower.strip_prefix("https://"))
            && !rest.is_empty()
            && !rest.starts_with('/')
        {
            return Ok(OutputSpec::Http(t.to_owned()));
        }
        Err(ParseOutputError(s.to_owned()))
    }
}

impl fmt::Display for OutputSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OutputSpec::Stdout => f.write_str("stdout"),
            OutputSpec::File(p) => write!(f, "file:{}", p.display()),
            OutputSpec::Http(u) => f.write_str(u),
        }
    }
}

impl<'de> Deserialize<'de> for OutputSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_form() {
        assert_eq!("stdout".parse(), Ok(OutputSpec::Stdout));
        assert_eq!(
            "file:run/a.jsonl".parse(),
            Ok(OutputSpec::File("run/a.jsonl".into()))
        );
        assert_eq!(
            "http://127.0.0.1:2801/".parse(),
            Ok(OutputSpec::Http("http://127.0.0.1:2801/".into()))
        );
        assert_eq!(
            "HTTPS://router:443/x".parse(),
            Ok(OutputSpec::Http("HTTPS://router:443/x".into()))
        );
    }

    #[test]
    fn rejects_unknown_and_empty_forms() {
        for bad in ["", "file:", "http://", "http:///x", "syslog", "ftp://h/"] {
            assert!(bad.parse::<OutputSpec>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn display_round_trips() {
        for s in ["stdout", "file:/tmp/a", "http://127.0.0.1:2801/"] {
            assert_eq!(s.parse::<OutputSpec>().unwrap().to_string(), s);
        }
    }
}
