//! Events of a container whose metadata is in flight, held back for at most the metadata
//! timeout. A container's first exec (Falco's `container_started`) is judged only once its
//! runtime answered, so rules on `container.privileged` or `container.mount.dest` see the
//! container as it is, and alerts carry its name, image and pod. Capture never waits: other
//! processes' events flow on, and held events are judged in their original order as soon
//! as the answer arrives or the deadline passes, whichever is first.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use crate::event::{Event, EventKind};
use crate::state::container::container_id_from_cgroup;

/// Most events held per container; beyond, its queue is released at once.
pub const MAX_HELD_PER_CONTAINER: usize = 4096;

struct Held {
    deadline: Instant,
    events: VecDeque<Event>,
}

/// What to do with an offered event.
// Returned by value once per event: boxing the event would allocate on the event path.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Offer {
    /// Not held: judge it now.
    Process(Event),
    /// Held until its container's answer or deadline.
    Held,
    /// Its container's queue is full: release that container (this event is the last of it).
    Full(String),
}

/// Held events by pending container id, and which pids belong to which queue.
pub struct Holds {
    timeout: Duration,
    by_container: HashMap<String, Held>,
    pids: HashMap<u32, String>,
}

impl Holds {
    pub fn new(timeout: Duration) -> Self {
        Holds {
            timeout,
            by_container: HashMap::new(),
            pids: HashMap::new(),
        }
    }

    /// Nothing held: every event is judged at once (the usual case, one branch per event).
    pub fn is_empty(&self) -> bool {
        self.by_container.is_empty()
    }

    /// Start holding the events of container `id` (its lookup was just sent).
    pub fn start(&mut self, id: &str, now: Instant) {
        self.by_container
            .entry(id.to_owned())
            .or_insert_with(|| Held {
                deadline: now + self.timeout,
                events: VecDeque::new(),
            });
    }

    pub fn is_holding(&self, id: &str) -> bool {
        self.by_container.contains_key(id)
    }

    /// Hold `ev` if it belongs to a pending container: its pid's events are held already,
    /// it is the exec into one (by the exec's cgroup), or its process is in one
    /// (`table_container`: the process table's container id of `ev.pid`).
    pub fn offer(&mut self, ev: Event, table_container: Option<&str>) -> Offer {
        if self.by_container.is_empty() {
            return Offer::Process(ev);
        }
        let pending = |k: &&str| self.by_container.contains_key(*k);
        let key = if let Some(k) = self.pids.get(&ev.pid) {
            Some(k.clone())
        } else if let Some(k) = exec_container(&ev).filter(pending) {
            Some(k.to_owned())
        } else {
            table_container.filter(pending).map(str::to_owned)
        };
        let Some(key) = key else {
            return Offer::Process(ev);
        };
        let Some(held) = self.by_container.get_mut(&key) else {
            return Offer::Process(ev);
        };
        if let EventKind::Fork(f) = &ev.kind
            && !f.is_thread
        {
            self.pids.insert(f.child_pid, key.clone());
        }
        self.pids.insert(ev.pid, key.clone());
        held.events.push_back(ev);
        if held.events.len() >= MAX_HELD_PER_CONTAINER {
            Offer::Full(key)
        } else {
            Offer::Held
        }
    }

    /// Stop holding `id`; its events, oldest first.
    pub fn release(&mut self, id: &str) -> VecDeque<Event> {
        self.pids.retain(|_, k| k != id);
        self.by_container
            .remove(id)
            .map(|h| h.events)
            .unwrap_or_default()
    }

    /// Containers whose deadline has passed at `now`.
    pub fn expired(&self, now: Instant) -> Vec<String> {
        self.by_container
            .iter()
            .filter(|(_, h)| h.deadline <= now)
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// The earliest deadline, if anything is held.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.by_container.values().map(|h| h.deadline).min()
    }
}

/// The container an exec event enters, by its cgroup (`None`: host or unknown).
pub fn exec_container(ev: &Event) -> Option<&str> {
    match &ev.kind {
        EventKind::Exec(ex) => ex.cgroup.as_deref().and_then(container_id_from_cgroup),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Comm, EventFlags, ExecEvent, ExitEvent, ForkEvent, ProcDetails};

    fn ev(pid: u32, kind: EventKind) -> Event {
        Event {
            ts: 0,
            boot_ns: 0,
            pid,
            tid: pid,
            ppid: 1,
            uid: 0,
            gid: 0,
            euid: 0,
            egid: 0,
            loginuid: None,
            cap_permitted: 0,
            cap_effective: 0,
            comm: Comm::default(),
            flags: EventFlags::default(),
            kind,
        }
    }

    const ID: &str = "3f2a9c1b7d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8";

    fn exec(pid: u32) -> Event {
        ev(
            pid,
            EventKind::Exec(ExecEvent {
                filename: "/bin/sh".into(),
                argv: Vec::new(),
                old_pid: pid,
                cgroup: Some(format!("/kubepods/besteffort/pod1/{ID}")),
                cwd: None,
                exe_name: None,
                env: None,
                details: ProcDetails::default(),
            }),
        )
    }

    fn exit(pid: u32) -> Event {
        ev(
            pid,
            EventKind::Exit(ExitEvent {
                exit_code: 0,
                leader: true,
                start_ts: 0,
            }),
        )
    }

    #[test]
    fn holds_the_pending_containers_processes_in_order() {
        let t0 = Instant::now();
        let mut h = Holds::new(Duration::from_millis(500));
        assert!(matches!(h.offer(exit(5), None), Offer::Process(_)));
        h.start(&ID[..12], t0);
        // The exec into the container (by its cgroup), then that pid's next events.
        assert!(matches!(h.offer(exec(10), None), Offer::Held));
        let fork = ev(
            10,
            EventKind::Fork(ForkEvent {
                child_pid: 11,
                child_tid: 11,
                is_thread: false,
                details: ProcDetails::default(),
            }),
        );
        assert!(matches!(h.offer(fork, None), Offer::Held));
        // The child is held too, as is a process the table places in the container.
        assert!(matches!(h.offer(exit(11), None), Offer::Held));
        assert!(matches!(h.offer(exit(12), Some(&ID[..12])), Offer::Held));
        // Others flow on: host processes, other containers.
        assert!(matches!(h.offer(exit(13), Some("host")), Offer::Process(_)));
        assert!(matches!(
            h.offer(exit(14), Some("0123456789ab")),
            Offer::Process(_)
        ));
        assert_eq!(h.expired(t0), Vec::<String>::new());
        assert_eq!(h.expired(t0 + Duration::from_millis(500)), [&ID[..12]]);
        let out: Vec<u32> = h.release(&ID[..12]).into_iter().map(|e| e.pid).collect();
        assert_eq!(out, [10, 10, 11, 12]);
        assert!(h.is_empty());
        assert!(matches!(h.offer(exit(10), None), Offer::Process(_)));
    }

    #[test]
    fn a_full_queue_asks_for_release() {
        let mut h = Holds::new(Duration::from_secs(1));
        h.start("abc", Instant::now());
        let mut last = None;
        for _ in 0..MAX_HELD_PER_CONTAINER {
            last = Some(h.offer(exit(10), Some("abc")));
        }
        assert!(matches!(last, Some(Offer::Full(ref k)) if k == "abc"));
        assert_eq!(h.release("abc").len(), MAX_HELD_PER_CONTAINER);
    }
}
