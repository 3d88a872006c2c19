//! The monotonic time source that drives the one-second windows.
//!
//! This crate depends on nothing of Lighthouse's, so it cannot take the event
//! store's `Clock`. Windows only need a monotonic millisecond counter, which is
//! what [`TimeSource`] is; a caller that wants one clock for everything writes a
//! three-line adapter from its own clock.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A monotonic millisecond counter. Only differences matter: the origin is
/// arbitrary, and a value lower than an earlier one is treated as "no time
/// passed" by the windows.
pub trait TimeSource: Send + Sync + std::fmt::Debug + 'static {
    /// Milliseconds since this source's origin.
    fn now_ms(&self) -> u64;
}

/// A shared time source.
pub type SharedTimeSource = Arc<dyn TimeSource>;

/// Real time: milliseconds since the source was created.
///
/// On Linux it reads `CLOCK_MONOTONIC_COARSE` (a few nanoseconds, resolution
/// of one kernel tick, 1 to 4 ms), which is all one-second windows need and
/// keeps the clock read off the recording path's budget; elsewhere, or if
/// that clock is unavailable, [`Instant`].
#[derive(Debug, Clone, Copy)]
pub struct SystemTimeSource {
    origin: Instant,
    #[cfg(target_os = "linux")]
    coarse_origin_ms: Option<u64>,
}

#[cfg(target_os = "linux")]
fn coarse_monotonic_ms() -> Option<u64> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    if rc != 0 {
        return None;
    }
    let secs = u64::try_from(ts.tv_sec).ok()?;
    let nanos = u64::try_from(ts.tv_nsec).ok()?;
    Some(secs.saturating_mul(1000).saturating_add(nanos / 1_000_000))
}

impl SystemTimeSource {
    /// A source whose origin is now.
    pub fn new() -> Self {
        Self {
            origin: Instant::now(),
            #[cfg(target_os = "linux")]
            coarse_origin_ms: coarse_monotonic_ms(),
        }
    }
}

impl Default for SystemTimeSource {
    fn default() -> Self {
        Self::new()
    }
}

impl TimeSource for SystemTimeSource {
    #[inline]
    fn now_ms(&self) -> u64 {
        #[cfg(target_os = "linux")]
        if let Some(origin) = self.coarse_origin_ms
            && let Some(now) = coarse_monotonic_ms()
        {
            return now.saturating_sub(origin);
        }
        u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

/// A time source moved by hand, for tests: clones share the same time.
#[derive(Debug, Clone, Default)]
pub struct ManualTimeSource {
    now_ms: Arc<AtomicU64>,
}

impl ManualTimeSource {
    /// A source at `start_ms`.
    pub fn new(start_ms: u64) -> Self {
        Self {
            now_ms: Arc::new(AtomicU64::new(start_ms)),
        }
    }

    /// Moves time forward by `by` (saturating).
    pub fn advance(&self, by: Duration) {
        let by = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        // fetch_update never fails with a closure that always returns Some.
        let _ = self
            .now_ms
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |t| {
                Some(t.saturating_add(by))
            });
    }

    /// Sets the time to `ms` (which may go backwards, to test that case).
    pub fn set_ms(&self, ms: u64) {
        self.now_ms.store(ms, Ordering::SeqCst);
    }
}

impl TimeSource for ManualTimeSource {
    fn now_ms(&self) -> u64 {
        self.now_ms.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_source_moves_only_when_told_and_clones_share_time() {
        let t = ManualTimeSource::new(5_000);
        let shared = t.clone();
        assert_eq!(t.now_ms(), 5_000);
        t.advance(Duration::from_millis(1_250));
        assert_eq!(shared.now_ms(), 6_250);
        shared.set_ms(10);
        assert_eq!(t.now_ms(), 10);
        t.advance(Duration::MAX);
        assert_eq!(t.now_ms(), u64::MAX);
    }

    #[test]
    fn system_source_follows_real_time_within_a_tick() {
        let s = SystemTimeSource::new();
        let start = Instant::now();
        let a = s.now_ms();
        std::thread::sleep(Duration::from_millis(50));
        let b = s.now_ms();
        let real = start.elapsed().as_millis() as u64;
        // The coarse clock lags by at most one kernel tick (up to 10 ms at
        // the slowest common HZ) at each end.
        assert!(b >= a + 50 - 10, "{a} then {b}");
        assert!(b - a <= real + 10, "{a} then {b}, real {real}");
    }
}
