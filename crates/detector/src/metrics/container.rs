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
            "# HELP aerie_container_lookups_total Container metadata lookups sent to the runtimes.\n# TYPE aerie_container_lookups_total counter\naerie_container_lookups_total {}\n# HELP aerie_container_lookup_timeouts_total Runtime calls that did not answer within container.metadata_timeout_ms.\n# TYPE aerie_container_lookup_timeouts_total counter\naerie_container_lookup_timeouts_total {}\n# HELP aerie_container_runtime_errors_total Runtime calls that failed (connection, RPC error, unreadable answer).\n# TYPE aerie_container_runtime_errors_total counter\naerie_container_runtime_errors_total {}\n# HELP aerie_container_cache_hits_total Execs in a container whose metadata was cached.\n# TYPE aerie_container_cache_hits_total counter\naerie_container_cache_hits_total {}\n# HELP aerie_container_cache_misses_total Execs in a container not yet known (a lookup follows).\n# TYPE aerie_container_cache_misses_total counter\naerie_container_cache_misses_total {}\n# HELP aerie_containers_cached Containers whose metadata is cached.\n# TYPE aerie_containers_cached gauge\naerie_containers_cached {}",
            get(&self.lookups),
            get(&self.timeouts),
            get(&self.errors),
            get(&self.cache_hits),
            get(&self.cache_misses),
            get(&self.cached),
        );
    }
}
