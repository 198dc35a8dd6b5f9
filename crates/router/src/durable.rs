//! The durable queue (aerie-spool) behind [`crate::queue`]: configuration, the on-disk record
//! of one accepted alert, and delivery retry policy (backoff with jitter, circuit breaker).
//!
//! One spool holds every accepted alert once; each output reads it through its own named
//! consumer (cursor), so a slow or dead output never delays the others. The spool is shared:
//! an output that is dead forever keeps its unacked records on disk until `max_age` moves
//! them to the dead-letter file, so `max_age` bounds how much one dead output can fill the
//! queue for everyone.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aerie_spool::FsyncPolicy;
use serde::Deserialize;

use crate::duration::{parse_duration, parse_size};

/// `queue:` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawQueue {
    dir: Option<String>,
    max_bytes: Option<String>,
    fsync: Option<String>,
    fsync_interval: Option<String>,
    max_age: Option<String>,
}

/// The durable queue's settings. Without `queue.dir` the router keeps queues in memory only
/// (alerts acknowledged but not yet delivered are lost on a crash).
#[derive(Debug, Clone, PartialEq)]
pub struct QueueConfig {
    pub dir: Option<PathBuf>,
    pub max_bytes: u64,
    pub fsync: FsyncPolicy,
    /// Past this age an undeliverable alert goes to the dead-letter file.
    pub max_age: Duration,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            dir: None,
            max_bytes: 1 << 30,
            fsync: FsyncPolicy::Always,
            max_age: Duration::from_secs(3600),
        }
    }
}

impl QueueConfig {
    /// Validate `queue:`; errors name the field and the reason.
    pub fn from_raw(raw: Option<&RawQueue>) -> Result<QueueConfig, (&'static str, String)> {
        let mut q = QueueConfig::default();
        let Some(raw) = raw else { return Ok(q) };
        q.dir = raw.dir.as_ref().map(PathBuf::from);
        if let Some(s) = &raw.max_bytes {
            q.max_bytes = parse_size(s).map_err(|r| ("queue.max_bytes", r))?;
            if q.max_bytes < 64 << 10 {
                return Err(("queue.max_bytes", "must be at least 64KB".into()));
            }
        }
        let interval = match &raw.fsync_interval {
            None => Duration::from_secs(1),
            Some(s) => parse_duration(s).map_err(|r| ("queue.fsync_interval", r))?,
        };
        q.fsync = match raw.fsync.as_deref() {
            None | Some("always") => FsyncPolicy::Always,
            Some("interval") if !interval.is_zero() => FsyncPolicy::Interval(interval),
            Some("interval") => {
                return Err(("queue.fsync_interval", "must be above 0".into()));
            }
            Some("never") => FsyncPolicy::Never,
            Some(other) => {
                return Err((
                    "queue.fsync",
                    format!("{other:?} is not one of always, interval, never"),
                ));
            }
        };
        if let Some(s) = &raw.max_age {
            q.max_age = parse_duration(s).map_err(|r| ("queue.max_age", r))?;
            if q.max_age.is_zero() {
                return Err(("queue.max_age", "must be above 0".into()));
            }
        }
        Ok(q)
    }

    pub fn spool_options(&self) -> aerie_spool::Options {
        aerie_spool::Options {
            max_bytes: self.max_bytes,
            fsync: self.fsync,
            ..aerie_spool::Options::default()
        }
    }
}

/// One accepted alert as stored: `[test: u8][n: u8]` then `n` times `[route: u16 LE][name len:
/// u8][output name]`, then the alert's JSON. Outputs are stored by name so that a changed
/// configuration never delivers to the wrong output after a restart.
pub fn encode_record(out: &mut Vec<u8>, test: bool, targets: &[(&str, u16)], alert_json: &[u8]) {
    out.clear();
    out.push(test as u8);
    out.push(targets.len().min(255) as u8);
    for (name, route) in targets.iter().take(255) {
        out.extend_from_slice(&route.to_le_bytes());
        let n = &name.as_bytes()[..name.len().min(255)];
        out.push(n.len() as u8);
        out.extend_from_slice(n);
    }
    out.extend_from_slice(alert_json);
}

/// A decoded record header: whether it is a test alert, the route for `output` (None: the
/// record does not target it) and where the alert JSON starts.
pub struct RecordHead {
    pub test: bool,
    pub route: Option<u16>,
    pub json_at: usize,
}

/// Read a record's header for output `name`; `None` when the record is malformed.
pub fn decode_head(rec: &[u8], name: &str) -> Option<RecordHead> {
    let test = *rec.first()? != 0;
    let n = *rec.get(1)? as usize;
    let mut at = 2;
    let mut route = None;
    for _ in 0..n {
        let r = u16::from_le_bytes([*rec.get(at)?, *rec.get(at + 1)?]);
        let len = *rec.get(at + 2)? as usize;
        let nm = rec.get(at + 3..at + 3 + len)?;
        if route.is_none() && nm == name.as_bytes() {
            route = Some(r);
        }
        at += 3 + len;
    }
    Some(RecordHead {
        test,
        route,
        json_at: at,
    })
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

pub use aerie_http_client::Backoff;

/// Circuit breaker of one output: after `threshold` consecutive failed deliveries it opens
/// for `cooldown`; then one probe goes through (half-open) and its result closes or re-opens it.
pub struct Breaker {
    threshold: u32,
    cooldown: Duration,
    failures: u32,
    open_until: Option<std::time::Instant>,
}

impl Breaker {
    pub fn new(threshold: u32, cooldown: Duration) -> Breaker {
        Breaker {
            threshold: threshold.max(1),
            cooldown,
            failures: 0,
            open_until: None,
        }
    }

    /// How long to wait before the next attempt may go out (zero when closed or half-open).
    pub fn wait(&self, now: std::time::Instant) -> Duration {
        self.open_until
            .map(|t| t.saturating_duration_since(now))
            .unwrap_or(Duration::ZERO)
    }

    pub fn is_open(&self) -> bool {
        self.open_until.is_some()
    }

    pub fn success(&mut self) {
        self.failures = 0;
        self.open_until = None;
    }

    /// Record a failure; true when this failure opened the breaker.
    pub fn failure(&mut self, now: std::time::Instant) -> bool {
        self.failures = self.failures.saturating_add(1);
        if self.failures >= self.threshold {
            let was_open = self.open_until.is_some();
            self.open_until = Some(now + self.cooldown);
            return !was_open;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn record_round_trip_finds_the_output_route() {
        let mut buf = Vec::new();
        encode_record(&mut buf, true, &[("slack", 3), ("file", 7)], br#"{"a":1}"#);
        let h = decode_head(&buf, "file").unwrap();
        assert!(h.test);
        assert_eq!(h.route, Some(7));
        assert_eq!(&buf[h.json_at..], br#"{"a":1}"#);
        assert_eq!(decode_head(&buf, "pd").unwrap().route, None);
        assert!(decode_head(&buf[..5], "file").is_none());
    }

    #[test]
    fn queue_config_names_bad_fields() {
        let raw = RawQueue {
            fsync: Some("sometimes".into()),
            ..RawQueue::default()
        };
        assert_eq!(
            QueueConfig::from_raw(Some(&raw)).unwrap_err().0,
            "queue.fsync"
        );
        let raw = RawQueue {
            dir: Some("/tmp/q".into()),
            max_bytes: Some("8MB".into()),
            fsync: Some("interval".into()),
            max_age: Some("10m".into()),
            ..RawQueue::default()
        };
        let q = QueueConfig::from_raw(Some(&raw)).unwrap();
        assert_eq!(q.max_bytes, 8 << 20);
        assert_eq!(q.fsync, FsyncPolicy::Interval(Duration::from_secs(1)));
        assert_eq!(q.max_age, Duration::from_secs(600));
    }

    #[test]
    fn breaker_opens_after_threshold_and_closes_on_success() {
        let now = Instant::now();
        let mut b = Breaker::new(3, Duration::from_secs(5));
        assert!(!b.failure(now));
        assert!(!b.failure(now));
        assert!(b.failure(now));
        assert!(b.wait(now) > Duration::from_secs(4));
        b.success();
        assert_eq!(b.wait(now), Duration::ZERO);
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let d1 = b.next_delay();
        assert!(d1 >= Duration::from_millis(50) && d1 <= Duration::from_millis(100));
        for _ in 0..10 {
            b.next_delay();
        }
        let d = b.next_delay();
        assert!(d >= Duration::from_millis(500) && d <= Duration::from_secs(1));
    }
}
