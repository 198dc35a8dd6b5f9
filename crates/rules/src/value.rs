//! Values an extractor hands to the engine, borrowed for the duration of one callback.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// One extracted value. Borrowed: the engine never keeps it past the callback, so an
/// extractor can hand out views into its own buffers without allocating.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
    Str(&'a str),
    /// Text that may not be UTF-8 (paths, command lines); compared byte-wise.
    Bytes(&'a [u8]),
    Int(i64),
    Uint(u64),
    Double(f64),
    Bool(bool),
    Ip(IpAddr),
    Net(IpNet),
}

impl Value<'_> {
    /// The bytes of a textual value.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Str(s) => Some(s.as_bytes()),
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// The value as a signed number, parsing text (`"1234"`) when needed.
    pub fn as_i128(&self) -> Option<i128> {
        match *self {
            Value::Int(i) => Some(i as i128),
            Value::Uint(u) => Some(u as i128),
            Value::Double(d) if d.fract() == 0.0 => Some(d as i128),
            Value::Bool(b) => Some(b as i128),
            Value::Str(s) => parse_int(s.as_bytes()),
            Value::Bytes(b) => parse_int(b),
            _ => None,
        }
    }

    /// The value as an IP address, parsing text when needed.
    pub fn as_ip(&self) -> Option<IpAddr> {
        match *self {
            Value::Ip(ip) => Some(ip),
            Value::Str(s) => s.trim().parse().ok(),
            Value::Bytes(b) => std::str::from_utf8(b).ok()?.trim().parse().ok(),
            _ => None,
        }
    }

    /// The value as a bool, accepting `true`/`false` text.
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Value::Bool(b) => Some(b),
            Value::Int(i) => Some(i != 0),
            Value::Uint(u) => Some(u != 0),
            Value::Str(s) => parse_bool(s),
            Value::Bytes(b) => parse_bool(std::str::from_utf8(b).ok()?),
            _ => None,
        }
    }
}

/// Parse a decimal (or `0x` hex) integer without allocating.
pub(crate) fn parse_int(b: &[u8]) -> Option<i128> {
    let s = std::str::from_utf8(b).ok()?.trim();
    if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        return i128::from_str_radix(h, 16).ok();
    }
    s.parse::<i128>().ok()
}

pub(crate) fn parse_bool(s: &str) -> Option<bool> {
    let s = s.trim();
    if s.eq_ignore_ascii_case("true") || s == "1" {
        Some(true)
    } else if s.eq_ignore_ascii_case("false") || s == "0" {
        Some(false)
    } else {
        None
    }
}

impl fmt::Display for Value<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Str(s) => f.write_str(s),
            Value::Bytes(b) => f.write_str(&String::from_utf8_lossy(b)),
            Value::Int(i) => write!(f, "{i}"),
            Value::Uint(u) => write!(f, "{u}"),
            Value::Double(d) => write!(f, "{d}"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Ip(ip) => write!(f, "{ip}"),
            Value::Net(n) => write!(f, "{n}"),
        }
    }
}

/// An IP network: address and prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpNet {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl IpNet {
    /// Whether `ip` lies in this network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let p = u32::from(self.prefix.min(32));
                let mask = if p == 0 { 0 } else { u32::MAX << (32 - p) };
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let p = u32::from(self.prefix.min(128));
                let mask = if p == 0 { 0 } else { u128::MAX << (128 - p) };
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for IpNet {
    type Err = String;

    /// `10.0.0.0/8`, `fd00::/8`, or a bare address (a /32 or /128 network).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = a.parse().map_err(|_| format!("invalid network {s:?}"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("invalid prefix length in {s:?}"))?,
            None => max,
        };
        Ok(IpNet { addr, prefix })
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_contain_their_addresses() {
        let n: IpNet = "10.0.0.0/8".parse().unwrap();
        assert!(n.contains("10.1.2.3".parse().unwrap()));
        assert!(!n.contains("11.0.0.1".parse().unwrap()));
        let n6: IpNet = "fd00::/8".parse().unwrap();
        assert!(n6.contains("fd12::1".parse().unwrap()));
        assert!(!n6.contains("10.1.2.3".parse().unwrap()));
        assert!("10.0.0.0/33".parse::<IpNet>().is_err());
    }

    #[test]
    fn text_values_convert() {
        assert_eq!(Value::Str("0x10").as_i128(), Some(16));
        assert_eq!(Value::Str("12").as_i128(), Some(12));
        assert_eq!(Value::Str("x").as_i128(), None);
        assert_eq!(Value::Str("TRUE").as_bool(), Some(true));
    }
}
