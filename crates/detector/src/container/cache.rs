//! Known containers by 12-character id, plus the ids whose lookup is under way. Bounded, and
//! evicted when no tracked process is left in a container.

use std::collections::{HashMap, HashSet};

use super::info::ContainerInfo;
use crate::state::container::HOST_ID;

/// Containers remembered when the configuration does not say.
pub const DEFAULT_CAPACITY: usize = 4096;

/// Known containers and outstanding questions.
#[derive(Debug)]
pub struct ContainerDb {
    known: HashMap<String, ContainerInfo>,
    asked: HashSet<String>,
    /// Lookups that failed, asked again after [`ContainerDb::retry_failed`].
    failed: HashSet<String>,
    capacity: usize,
    /// Execs judged with the container's metadata cached, and without ([`ContainerDb::count`]).
    pub hits: u64,
    pub misses: u64,
}

impl Default for ContainerDb {
    fn default() -> Self {
        ContainerDb::with_capacity(DEFAULT_CAPACITY)
    }
}

impl ContainerDb {
    /// At most `capacity` containers are remembered (at least 1).
    pub fn with_capacity(capacity: usize) -> Self {
        ContainerDb {
            known: HashMap::new(),
            asked: HashSet::new(),
            failed: HashSet::new(),
            capacity: capacity.max(1),
            hits: 0,
            misses: 0,
        }
    }

    pub fn get(&self, id: &str) -> Option<&ContainerInfo> {
        self.known.get(id)
    }

    /// Remember `info` for `id`. When full, an arbitrary other container is forgotten (it is
    /// asked again if it shows up once more); the sweep keeps the cache to live containers.
    pub fn insert(&mut self, id: String, info: ContainerInfo) {
        self.asked.remove(&id);
        if self.known.len() >= self.capacity
            && !self.known.contains_key(&id)
            && let Some(victim) = self.known.keys().next().cloned()
        {
            self.known.remove(&victim);
        }
        self.known.insert(id, info);
    }

    /// The lookup of `id` ended without an answer: it may be asked again later.
    pub fn forget_question(&mut self, id: &str) {
        self.asked.remove(id);
    }

    /// The lookup of `id` failed (runtime down or slow): ask again after the next
    /// [`ContainerDb::retry_failed`], not at every exec in between.
    pub fn mark_failed(&mut self, id: &str) {
        self.failed.insert(id.to_owned());
    }

    /// The failed lookups, to be asked again now (called periodically); they stay marked
    /// as asked until their new answer.
    pub fn retry_failed(&mut self) -> Vec<String> {
        self.failed
            .drain()
            .filter(|id| self.asked.contains(id))
            .collect()
    }

    /// Whether `id` should be looked up now (first sight); marks it as asked.
    pub fn should_ask(&mut self, id: &str) -> bool {
        if id == HOST_ID {
            return false;
        }
        if self.known.contains_key(id) || self.asked.contains(id) {
            return false;
        }
        // Bounded: forget old questions rather than grow without limit.
        if self.asked.len() > 65_536 {
            self.asked.clear();
        }
        self.asked.insert(id.to_owned());
        true
    }

    /// Count an exec in container `id` as a cache hit or miss.
    pub fn count(&mut self, id: &str) {
        if id == HOST_ID {
            return;
        }
        if self.known.contains_key(id) {
            self.hits += 1;
        } else {
            self.misses += 1;
        }
    }

    /// Whether a lookup of `id` is under way.
    pub fn is_asked(&self, id: &str) -> bool {
        self.asked.contains(id)
    }

    /// Forget containers for which `live` is false (no process left in them). Returns how
    /// many were evicted.
    pub fn retain_live(&mut self, live: impl Fn(&str) -> bool) -> usize {
        let before = self.known.len();
        self.known.retain(|id, _| live(id));
        before - self.known.len()
    }

    pub fn len(&self) -> usize {
        self.known.len()
    }

    pub fn is_empty(&self) -> bool {
        self.known.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_container_is_asked_once() {
        let mut db = ContainerDb::default();
        assert!(db.should_ask("3f2a9c1b7d4e"));
        assert!(!db.should_ask("3f2a9c1b7d4e"));
        assert!(!db.should_ask("host"));
        db.forget_question("3f2a9c1b7d4e");
        assert!(
            db.should_ask("3f2a9c1b7d4e"),
            "asked again after a failed lookup"
        );
        db.count("3f2a9c1b7d4e");
        db.insert("3f2a9c1b7d4e".into(), ContainerInfo::default());
        assert!(!db.should_ask("3f2a9c1b7d4e"));
        db.count("3f2a9c1b7d4e");
        db.count("host");
        assert_eq!((db.hits, db.misses), (1, 1));
    }

    #[test]
    fn bounded_and_evicted_when_dead() {
        let mut db = ContainerDb::with_capacity(2);
        for id in ["a", "b", "c"] {
            db.insert(id.into(), ContainerInfo::default());
        }
        assert_eq!(db.len(), 2);
        assert!(db.get("c").is_some(), "the newest is kept");
        assert_eq!(db.retain_live(|id| id != "c"), 1);
        assert!(db.get("c").is_none());
    }
}
