//! Dedup: repeats of a key inside the window are suppressed and counted; the next delivered
//! alert for that key (or the window-end summary) carries the count.
//!
//! State lives in one output's worker, so it needs no lock. A key is a 64-bit FNV-1a hash of
//! its parts: stable across restarts (PagerDuty's `dedup_key` is derived from it) and 16 bytes
//! of map entry per live key instead of the key text.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use aerie_alert::Alert;
use serde_json::Value;

/// The dedup key when none is configured.
pub const DEFAULT_DEDUP_KEY: [&str; 4] = [
    "rule",
    "hostname",
    "output_fields.container.id",
    "output_fields.proc.cmdline",
];

/// One part of a dedup key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyPart {
    Rule,
    Hostname,
    Priority,
    Source,
    Tags,
    Output,
    Field(String),
}

impl KeyPart {
    pub fn parse(s: &str) -> Option<KeyPart> {
        Some(match s {
            "rule" => KeyPart::Rule,
            "hostname" => KeyPart::Hostname,
            "priority" => KeyPart::Priority,
            "source" => KeyPart::Source,
            "tags" => KeyPart::Tags,
            "output" => KeyPart::Output,
            other => {
                let f = other.strip_prefix("output_fields.")?;
                if f.is_empty() {
                    return None;
                }
                KeyPart::Field(f.to_owned())
            }
        })
    }
}

/// A compiled dedup key definition.
#[derive(Debug, Clone)]
pub struct KeySpec(Vec<KeyPart>);

impl KeySpec {
    pub fn new(parts: &[String]) -> KeySpec {
        KeySpec(parts.iter().filter_map(|p| KeyPart::parse(p)).collect())
    }

    pub fn hash(&self, a: &Alert) -> u64 {
        let mut h = Fnv::new();
        for part in &self.0 {
            match part {
                KeyPart::Rule => h.write(a.rule.as_bytes()),
                KeyPart::Hostname => h.write(a.hostname.as_bytes()),
                KeyPart::Priority => h.write(a.priority.as_str().as_bytes()),
                KeyPart::Source => h.write(a.source.as_bytes()),
                KeyPart::Output => h.write(a.output.as_bytes()),
                KeyPart::Tags => {
                    for t in &a.tags {
                        h.write(t.as_bytes());
                        h.write(&[0]);
                    }
                }
                KeyPart::Field(f) => match a.output_fields.get(f) {
                    None | Some(Value::Null) => h.write(&[0xfe]),
                    Some(Value::String(s)) => h.write(s.as_bytes()),
                    Some(Value::Number(n)) => h.write(n.to_string().as_bytes()),
                    Some(Value::Bool(b)) => h.write(&[*b as u8]),
                    Some(v) => h.write(v.to_string().as_bytes()),
                },
            }
            // Separator: ("ab","c") and ("a","bc") must differ.
            h.write(&[0xff]);
        }
        h.0
    }

    /// The values that make up the key, for `routes test`.
    pub fn describe(&self, a: &Alert) -> Vec<(String, String)> {
        self.0
            .iter()
            .map(|p| match p {
                KeyPart::Rule => ("rule".into(), a.rule.clone()),
                KeyPart::Hostname => ("hostname".into(), a.hostname.clone()),
                KeyPart::Priority => ("priority".into(), a.priority.to_string()),
                KeyPart::Source => ("source".into(), a.source.clone()),
                KeyPart::Output => ("output".into(), a.output.chars().take(80).collect()),
                KeyPart::Tags => ("tags".into(), a.tags.join(",")),
                KeyPart::Field(f) => (
                    format!("output_fields.{f}"),
                    a.output_fields
                        .get(f)
                        .map(|v| v.to_string())
                        .unwrap_or_else(|| "(absent)".into()),
                ),
            })
            .collect()
    }
}

struct Fnv(u64);

impl Fnv {
    fn new() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= b as u64;
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

/// What dedup decided for one alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Deliver; `repeated` repeats of this key were suppressed since the last delivery.
    Deliver { repeated: u64 },
    /// A repeat inside the window: held back and counted.
    Suppress,
}

/// 8 bytes per live key (16 with the key): at 1M keys the map stays near 36 MB.
struct Entry {
    /// Window end, in milliseconds after `DedupState::base`.
    end_ms: u32,
    suppressed: u32,
}

/// A window that ended with suppressed repeats, for the optional summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expired {
    pub key: u64,
    pub suppressed: u64,
}

/// Windows longer than this are capped (the millisecond clock is 32-bit, rebased by sweeps).
pub const MAX_WINDOW: Duration = Duration::from_millis(1 << 31);

/// Per-output dedup state.
pub struct DedupState {
    base: Instant,
    entries: HashMap<u64, Entry>,
    /// Counts of windows that ended with repeats not yet carried by a delivery.
    pending: HashMap<u64, u64>,
}

impl Default for DedupState {
    fn default() -> Self {
        Self::new()
    }
}

impl DedupState {
    pub fn new() -> Self {
        DedupState {
            base: Instant::now(),
            entries: HashMap::new(),
            pending: HashMap::new(),
        }
    }

    fn ms(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.base).as_millis() as u64
    }

    fn end_ms(&self, now: Instant, window: Duration) -> u32 {
        let w = window.min(MAX_WINDOW).as_millis() as u64;
        (self.ms(now) + w).min(u32::MAX as u64) as u32
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn contains(&self, key: u64) -> bool {
        self.entries.contains_key(&key)
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Decide for an alert with `key`, seen at `now`, under a `window` (zero: no dedup).
    pub fn check(&mut self, key: u64, window: Duration, now: Instant) -> Verdict {
        if window.is_zero() {
            return Verdict::Deliver { repeated: 0 };
        }
        let now_ms = self.ms(now);
        let end_ms = self.end_ms(now, window);
        match self.entries.get_mut(&key) {
            Some(e) if now_ms < e.end_ms as u64 => {
                e.suppressed = e.suppressed.saturating_add(1);
                Verdict::Suppress
            }
            Some(e) => {
                // The window ended; this alert opens a new one and carries the old count.
                let repeated = e.suppressed as u64 + self.pending.remove(&key).unwrap_or(0);
                e.end_ms = end_ms;
                e.suppressed = 0;
                Verdict::Deliver { repeated }
            }
            None => {
                let repeated = self.pending.remove(&key).unwrap_or(0);
                self.entries.insert(
                    key,
                    Entry {
                        end_ms,
                        suppressed: 0,
                    },
                );
                Verdict::Deliver { repeated }
            }
        }
    }

    /// Drop ended windows. Windows that suppressed repeats and whose key `summarize` accepts are
    /// returned (the summary reports their count); other counts wait for the next delivery.
    pub fn sweep(&mut self, now: Instant, summarize: impl Fn(u64) -> bool) -> Vec<Expired> {
        let mut out = Vec::new();
        let now_ms = self.ms(now);
        let pending = &mut self.pending;
        self.entries.retain(|&key, e| {
            if now_ms < e.end_ms as u64 {
                return true;
            }
            if e.suppressed > 0 {
                if summarize(key) {
                    out.push(Expired {
                        key,
                        suppressed: e.suppressed as u64,
                    });
                } else {
                    *pending.entry(key).or_insert(0) += e.suppressed as u64;
                }
            }
            false
        });
        // Keep the 32-bit millisecond clock in range: move the base up to `now`.
        if now_ms >= 1 << 31 {
            let delta = now_ms.min(u32::MAX as u64) as u32;
            for e in self.entries.values_mut() {
                e.end_ms = e.end_ms.saturating_sub(delta);
            }
            self.base += Duration::from_millis(delta as u64);
        }
        out
    }
}

/// "repeated 37 times in 10m"
pub fn repeated_text(repeated: u64, window: Duration) -> String {
    if repeated == 0 {
        return String::new();
    }
    let times = if repeated == 1 { "time" } else { "times" };
    format!(
        "repeated {repeated} {times} in {}",
        crate::duration::format_duration(window)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(rule: &str, cmd: &str) -> Alert {
        aerie_alert::decode_alert(
            format!(
                r#"{{"output":"x","priority":"Error","rule":"{rule}","hostname":"h","time":"2023-05-25T13:44:05Z","output_fields":{{"proc.cmdline":"{cmd}","container.id":null}}}}"#
            )
            .as_bytes(),
        )
        .unwrap()
    }

    #[test]
    fn key_uses_the_configured_parts() {
        let parts: Vec<String> = DEFAULT_DEDUP_KEY.iter().map(|s| s.to_string()).collect();
        let k = KeySpec::new(&parts);
        assert_eq!(k.hash(&alert("r", "sh")), k.hash(&alert("r", "sh")));
        assert_ne!(k.hash(&alert("r", "sh")), k.hash(&alert("r", "bash")));
        assert_ne!(k.hash(&alert("ab", "c")), k.hash(&alert("a", "bc")));
        let rule_only = KeySpec::new(&["rule".into()]);
        assert_eq!(
            rule_only.hash(&alert("r", "sh")),
            rule_only.hash(&alert("r", "bash"))
        );
    }

    #[test]
    fn suppresses_inside_window_and_carries_count() {
        let w = Duration::from_secs(600);
        let mut d = DedupState::new();
        let t0 = Instant::now();
        assert_eq!(d.check(1, w, t0), Verdict::Deliver { repeated: 0 });
        for i in 1..=37 {
            assert_eq!(
                d.check(1, w, t0 + Duration::from_secs(i)),
                Verdict::Suppress
            );
        }
        // Another key is independent.
        assert_eq!(d.check(2, w, t0), Verdict::Deliver { repeated: 0 });
        let later = t0 + w + Duration::from_secs(1);
        assert_eq!(d.check(1, w, later), Verdict::Deliver { repeated: 37 });
        assert_eq!(d.check(1, w, later), Verdict::Suppress);
        assert_eq!(repeated_text(37, w), "repeated 37 times in 10m");
    }

    #[test]
    fn sweep_summarizes_or_keeps_counts_pending() {
        let w = Duration::from_secs(10);
        let mut d = DedupState::new();
        let t0 = Instant::now();
        d.check(1, w, t0);
        d.check(1, w, t0);
        d.check(1, w, t0);
        d.check(2, w, t0);
        let mut without = DedupState::new();
        let t0 = Instant::now();
        let end = t0 + w;
        without.check(1, w, t0);
        without.check(1, w, t0);
        assert!(without.sweep(end, |_| false).is_empty());
        assert!(without.is_empty());
        assert_eq!(without.check(1, w, end), Verdict::Deliver { repeated: 1 });

        let s = d.sweep(end, |_| true);
        assert_eq!(
            s,
            vec![Expired {
                key: 1,
                suppressed: 2
            }]
        );
        assert!(d.is_empty());
        // Reported by the summary: the next delivery starts from zero.
        assert_eq!(d.check(1, w, end), Verdict::Deliver { repeated: 0 });
    }

    #[test]
    fn clock_rebases_without_losing_windows() {
        let mut d = DedupState::new();
        let t0 = Instant::now();
        let w = Duration::from_secs(3600);
        let late = t0 + Duration::from_millis((1 << 31) + 5000);
        d.check(1, w, late);
        d.check(1, w, late);
        assert!(d.sweep(late, |_| true).is_empty());
        // After the rebase the window still ends an hour after `late`.
        assert_eq!(
            d.check(1, w, late + Duration::from_secs(3599)),
            Verdict::Suppress
        );
        assert_eq!(
            d.check(1, w, late + Duration::from_secs(3601)),
            Verdict::Deliver { repeated: 2 }
        );
    }

    #[test]
    fn zero_window_disables_dedup() {
        let mut d = DedupState::new();
        let t = Instant::now();
        assert_eq!(
            d.check(1, Duration::ZERO, t),
            Verdict::Deliver { repeated: 0 }
        );
        assert_eq!(
            d.check(1, Duration::ZERO, t),
            Verdict::Deliver { repeated: 0 }
        );
        assert!(d.is_empty());
    }
}
