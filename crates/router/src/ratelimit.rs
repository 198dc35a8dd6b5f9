//! Rate limits: governor token buckets per output, optionally per dedup key. Alerts over the
//! limit are folded into a digest that goes out when a token returns; none is dropped.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::config::RateLimitConfig;
use crate::envelope::Envelope;
use crate::render::{DigestInfo, DigestRule};

/// Rules listed by name in a digest; the rest are counted together.
const DIGEST_RULES: usize = 20;

pub enum Limiter {
    Direct(DefaultDirectRateLimiter),
    Keyed(DefaultKeyedRateLimiter<u64>),
}

impl Limiter {
    pub fn new(cfg: &RateLimitConfig) -> Limiter {
        let per_minute = NonZeroU32::new(cfg.per_minute).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(cfg.burst).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::per_minute(per_minute).allow_burst(burst);
        if cfg.per_key {
            Limiter::Keyed(RateLimiter::keyed(quota))
        } else {
            Limiter::Direct(RateLimiter::direct(quota))
        }
    }

    /// Take a token for `key`. `Err(wait)`: over the limit, a token returns after `wait`.
    pub fn try_take(&self, key: u64) -> Result<(), Duration> {
        let clock = DefaultClock::default();
        let r = match self {
            Limiter::Direct(l) => l.check(),
            Limiter::Keyed(l) => l.check_key(&key),
        };
        r.map_err(|nu| nu.wait_time_from(clock.now()).max(Duration::from_millis(1)))
    }

    /// The key digests are grouped by (0 for a per-output limit).
    pub fn digest_key(&self, key: u64) -> u64 {
        match self {
            Limiter::Direct(_) => 0,
            Limiter::Keyed(_) => key,
        }
    }

    /// Forget keys whose buckets are full again.
    pub fn shrink(&self) {
        if let Limiter::Keyed(l) = self {
            l.retain_recent();
            l.shrink_to_fit();
        }
    }
}

/// Alerts held by the rate limit, waiting for a token.
pub struct Digest {
    pub first: Arc<Envelope>,
    /// Dedup key of the first held alert (PagerDuty's dedup_key for the digest).
    pub key: u64,
    pub route: u16,
    pub count: u64,
    /// Dedup repeats carried by the held alerts.
    pub repeated: u64,
    rules: Vec<DigestRule>,
    other_rules: u64,
    first_time: String,
    last_time: String,
    /// When to try for a token next.
    pub retry_at: Instant,
}

impl Digest {
    pub fn new(first: Arc<Envelope>, key: u64, route: u16, retry_at: Instant) -> Digest {
        let t = first.alert.time.to_string();
        Digest {
            first,
            key,
            route,
            count: 0,
            repeated: 0,
            rules: Vec::new(),
            other_rules: 0,
            first_time: t.clone(),
            last_time: t,
            retry_at,
        }
    }

    pub fn add(&mut self, env: &Envelope, repeated: u64) {
        self.count += 1;
        self.repeated += repeated;
        self.last_time = env.alert.time.to_string();
        if let Some(r) = self.rules.iter_mut().find(|r| r.rule == env.alert.rule) {
            r.count += 1;
        } else if self.rules.len() < DIGEST_RULES {
            self.rules.push(DigestRule {
                rule: env.alert.rule.clone(),
                count: 1,
            });
        } else {
            self.other_rules += 1;
        }
    }

    pub fn info(&self, output: &str) -> DigestInfo {
        let mut text = format!(
            "{} alert{} held by the rate limit of output {output}: ",
            self.count,
            if self.count == 1 { "" } else { "s" }
        );
        let list: Vec<String> = self
            .rules
            .iter()
            .map(|r| format!("{} ×{}", r.rule, r.count))
            .collect();
        text.push_str(&list.join(", "));
        if self.other_rules > 0 {
            text.push_str(&format!(", {} more", self.other_rules));
        }
        DigestInfo {
            count: self.count,
            rules: self.rules.clone(),
            other_rules: self.other_rules,
            first_time: self.first_time.clone(),
            last_time: self.last_time.clone(),
            text,
        }
    }
}

/// Pending digests of one output, by limiter key.
pub type Digests = HashMap<u64, Digest>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_wait() {
        let l = Limiter::new(&RateLimitConfig {
            per_minute: 60,
            burst: 2,
            per_key: false,
        });
        assert!(l.try_take(1).is_ok());
        assert!(l.try_take(2).is_ok());
        let wait = l.try_take(3).unwrap_err();
        assert!(
            wait > Duration::from_millis(500) && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
    }

    #[test]
    fn per_key_buckets_are_independent() {
        let l = Limiter::new(&RateLimitConfig {
            per_minute: 1,
            burst: 1,
            per_key: true,
        });
        assert!(l.try_take(1).is_ok());
        assert!(l.try_take(1).is_err());
        assert!(l.try_take(2).is_ok());
        assert_eq!(l.digest_key(7), 7);
    }
}
