//! Converting kernel times (CLOCK_BOOTTIME ns, clock ticks since boot) to Unix epoch ns.

/// The epoch time of boot, measured once; boot-relative times are added to it.
#[derive(Debug, Clone, Copy)]
pub struct BootClock {
    /// Epoch ns at boot (realtime − boottime).
    boot_epoch_ns: u64,
    ticks_per_sec: u64,
}

impl BootClock {
    pub fn now() -> Self {
        let real = clock_ns(libc::CLOCK_REALTIME);
        let boot = clock_ns(libc::CLOCK_BOOTTIME);
        // SAFETY: sysconf has no preconditions.
        let tck = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        BootClock {
            boot_epoch_ns: real.saturating_sub(boot),
            ticks_per_sec: if tck > 0 { tck as u64 } else { 100 },
        }
    }

    /// A clock with a fixed boot time (tests, replays).
    pub fn fixed(boot_epoch_ns: u64) -> Self {
        BootClock {
            boot_epoch_ns,
            ticks_per_sec: 100,
        }
    }

    pub fn boot_to_epoch_ns(&self, boot_ns: u64) -> u64 {
        self.boot_epoch_ns + boot_ns
    }

    pub fn ticks_to_epoch_ns(&self, ticks: u64) -> u64 {
        self.boot_epoch_ns + ticks.saturating_mul(1_000_000_000) / self.ticks_per_sec
    }

    pub fn now_epoch_ns(&self) -> u64 {
        clock_ns(libc::CLOCK_REALTIME)
    }
}

fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    (ts.tv_sec as u64) * 1_000_000_000 + ts.tv_nsec as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_time_is_in_the_past_and_conversions_add_up() {
        let c = BootClock::now();
        let now = c.now_epoch_ns();
        assert!(c.boot_epoch_ns < now);
        assert_eq!(c.boot_to_epoch_ns(5), c.boot_epoch_ns + 5);
        let f = BootClock::fixed(1_000);
        assert_eq!(f.ticks_to_epoch_ns(3), 1_000 + 30_000_000);
    }
}
