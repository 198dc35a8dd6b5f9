//! Container metadata lookups: asked, answered from the cache, timed out, failed.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counters of the container metadata lookups.
#[derive(Default)]
pub struct ContainerMetrics {
    lookups: AtomicU64,
    timeouts: AtomicU64,
    errors: AtomicU64,
    cache_hits: AtomicU64,
    cache_misses: AtomicU64,
    cached: AtomicU64,
}

impl ContainerMetrics {
    pub fn count_lookup(&self) {
        self.lookups.fetch_add(1, Ordering::Relaxed);
    }

    /// A runtime call failed; `timeout` when it did not answer in time.
    pub fn count_error(&self, timeout: bool) {
        if timeout {
            self.timeouts.fetch_add(1, Ordering::Relaxed);
        } else {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Absolute cache counters, published by the event loop.
    pub fn set_cache(&self, hits: u64, misses: u64, cached: u64) {
        self.cache_hits.store(hits, Ordering::Relaxed);
        self.cache_misses.store(misses, Ordering::Relaxed);
        self.cached.store(cached, Ordering::Relaxed);
    }

    pub fn lookups(&self) -> u64 {
        self.lookups.load(Ordering::Relaxed)
    }

    pub fn timeouts(&self) -> u64 {
        self.timeouts.load(Ordering::Relaxed)
    }

    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    pub fn render(&self, s: &mut String) {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let _ = writeln!(
            s,
            "# HELP aerie_container_lookups_total Container metadata lookups sent to the runtimes.\n# TYPE aerie_container_lookups_total counter\naerie_container_lookups_total {}\n# HELP aerie_container_lookup_timeouts_total Runtime calls that did not answer within container.metadata_timeout_ms.\n# TYPE aerie_container_lookup_timeouts_total counter\naerie_container_lookup_timeouts_total {}\n# HELP aerie_container_runtime_errors_total Runtime calls that failed (connection, RPC error, unreadable answer).\n# TYPE aerie_container_runtime_errors_total counter\naerie_container_runtime_errors_total {}\n# HELP aerie_container_cache_hits_total Execs in a container judged with its metadata cached.\n# TYPE aerie_container_cache_hits_total counter\naerie_container_cache_hits_total {}\n# HELP aerie_container_cache_misses_total Execs in a container judged without its metadata (unknown, or not there in time).\n# TYPE aerie_container_cache_misses_total counter\naerie_container_cache_misses_total {}\n# HELP aerie_containers_cached Containers whose metadata is cached.\n# TYPE aerie_containers_cached gauge\naerie_containers_cached {}",
            get(&self.lookups),
            get(&self.timeouts),
            get(&self.errors),
            get(&self.cache_hits),
            get(&self.cache_misses),
            get(&self.cached),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_counter() {
        let m = ContainerMetrics::default();
        m.count_lookup();
        m.count_error(true);
        m.count_error(false);
        m.count_error(false);
        m.set_cache(7, 3, 2);
        let mut s = String::new();
        m.render(&mut s);
        for line in [
            "aerie_container_lookups_total 1\n",
            "aerie_container_lookup_timeouts_total 1\n",
            "aerie_container_runtime_errors_total 2\n",
            "aerie_container_cache_hits_total 7\n",
            "aerie_container_cache_misses_total 3\n",
            "aerie_containers_cached 2\n",
        ] {
            assert!(s.contains(line), "{line} in {s}");
        }
    }
}
