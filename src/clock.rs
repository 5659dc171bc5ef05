//! Injectable time.
//!
//! Every time-dependent decision (`exp`, `nbf`, refetch cooldowns) reads the
//! [`Clock`] given to the builder, so tests move time forward instead of
//! sleeping through it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A source of wall-clock time.
pub trait Clock: Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> SystemTime;

    /// The current time to within a few milliseconds, as cheaply as the
    /// clock can tell it: what a verified-token cache hit reads, whose
    /// checks are in whole seconds. [`now`](Self::now) unless a clock has
    /// a cheaper reading.
    fn now_coarse(&self) -> SystemTime {
        self.now()
    }
}

/// The operating system's clock. The default.
///
/// On Linux, [`now_coarse`](Clock::now_coarse) reads `CLOCK_REALTIME_COARSE`:
/// the time at the last scheduler tick (1 to 10 ms behind, by the
/// kernel's `HZ`), read without the timestamp counter, in a fraction of
/// `now`'s cost.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }

    #[cfg(target_os = "linux")]
    fn now_coarse(&self) -> SystemTime {
        let t = rustix::time::clock_gettime(rustix::time::ClockId::RealtimeCoarse);
        match (u64::try_from(t.tv_sec), u32::try_from(t.tv_nsec)) {
            (Ok(secs), Ok(nanos)) if nanos < 1_000_000_000 => UNIX_EPOCH
                .checked_add(Duration::new(secs, nanos))
                .unwrap_or_else(SystemTime::now),
            _ => SystemTime::now(),
        }
    }
}

/// A clock that only moves when told to; for tests.
///
/// Clones share the same time, so a test can hand one clone to the
/// validator and keep another to advance.
///
/// ```
/// use std::time::Duration;
/// use tower_bearer::{Clock, ManualClock};
///
/// let clock = ManualClock::at_unix(1_700_000_000);
/// clock.advance(Duration::from_secs(90));
/// assert_eq!(clock.unix_seconds(), 1_700_000_090);
/// ```
#[derive(Debug, Clone)]
pub struct ManualClock {
    millis: Arc<AtomicU64>,
}

impl ManualClock {
    /// A clock stopped at `secs` seconds after the Unix epoch.
    pub fn at_unix(secs: u64) -> Self {
        Self {
            millis: Arc::new(AtomicU64::new(secs.saturating_mul(1000))),
        }
    }

    /// A clock stopped at the current system time.
    pub fn now() -> Self {
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        Self {
            millis: Arc::new(AtomicU64::new(ms)),
        }
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        let ms = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        self.millis.fetch_add(ms, Ordering::SeqCst);
    }

    /// Seconds since the Unix epoch.
    pub fn unix_seconds(&self) -> u64 {
        self.millis.load(Ordering::SeqCst) / 1000
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.millis.load(Ordering::SeqCst))
    }
}

/// Milliseconds since the Unix epoch; times before it count as 0, and
/// times past `u64::MAX` ms as one less (`u64::MAX` means never).
pub(crate) fn unix_millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX - 1))
}

/// Whole seconds since the Unix epoch; times before it count as 0.
pub(crate) fn unix_seconds(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_coarse_system_clock_tells_the_time_of_the_precise_one() {
        let before = SystemTime::now();
        let coarse = SystemClock.now_coarse();
        let after = SystemTime::now();
        // At most a tick behind (10 ms at the slowest `HZ`), not ahead:
        // a second either way allows for a stalled VM, and still fails a
        // wrong clock (monotonic, boot-relative) or a wrong unit.
        assert!(coarse <= after + Duration::from_millis(1), "ahead of now");
        assert!(coarse + Duration::from_secs(1) >= before, "far behind now");
    }
}
