//! Windowed latency percentiles and windowed counters: what `/v1/ops/stats`
//! reports over "the last N seconds".
//!
//! Design. Samples of the current second go into atomic counters laid out
//! like an HDR histogram's buckets, so recording takes no lock. When a sample
//! (or a query) arrives in a later second, those counters are compacted into
//! a one-second slot of a fixed ring of `max_window_s` slots, as the non-empty
//! buckets only, and zeroed. A query for a window of `W`
//! seconds merges the slots whose second is less than `W` seconds old (the
//! current, partial second included) into a scratch histogram and reads the
//! quantiles there. So a window covers between `W - 1` and `W` seconds of
//! samples and never more, data older than `max_window_s` is overwritten, and
//! memory is fixed by the configuration: see
//! [`LatencyWindow::max_stored_buckets`].
//!
//! Precision. Counts and maxima are exact. A percentile is the
//! nearest-rank sample's HDR bucket, reported as the highest value of that
//! bucket (or the exact maximum, if lower): never below the true nearest-rank
//! value and above it by less than `value × 10^-significant_digits`.

use crate::buckets::BucketLayout;
use crate::error::{Error, Result};
use hdrhistogram::Histogram;
use parking_lot::Mutex;
use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Configuration of the windowed trackers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowConfig {
    /// Longest window that can be asked for, in seconds: also the number of
    /// one-second slots kept. Default [`WindowConfig::DEFAULT_MAX_WINDOW_S`].
    pub max_window_s: u32,
    /// Significant decimal digits of the latency histograms, 1 to 3. Default
    /// [`WindowConfig::DEFAULT_SIGNIFICANT_DIGITS`].
    pub significant_digits: u8,
    /// Highest latency tracked, in microseconds, at most `u32::MAX` (about
    /// 71 minutes); longer samples count as this value in percentiles (the
    /// reported `max` stays exact). Default
    /// [`WindowConfig::DEFAULT_HIGHEST_TRACKABLE_US`].
    pub highest_trackable_us: u64,
}

impl WindowConfig {
    /// 15 minutes, the longest window `/v1/ops/stats` accepts.
    pub const DEFAULT_MAX_WINDOW_S: u32 = 900;
    /// Percentiles within 1% of the true value: finer than any gate needs,
    /// and an eighth of the memory of 3 digits.
    pub const DEFAULT_SIGNIFICANT_DIGITS: u8 = 2;
    /// One hour: the longest elicitation timeout.
    pub const DEFAULT_HIGHEST_TRACKABLE_US: u64 = 3_600_000_000;

    /// Checks every field's range.
    pub fn validate(&self) -> Result<()> {
        if self.max_window_s == 0 || self.max_window_s > 86_400 {
            return Err(Error::InvalidConfig {
                field: "max_window_s",
                reason: format!("is {}, must be 1 to 86400", self.max_window_s),
            });
        }
        if !(1..=3).contains(&self.significant_digits) {
            return Err(Error::InvalidConfig {
                field: "significant_digits",
                reason: format!("is {}, must be 1 to 3", self.significant_digits),
            });
        }
        if self.highest_trackable_us < 1_000 || self.highest_trackable_us > u64::from(u32::MAX) {
            return Err(Error::InvalidConfig {
                field: "highest_trackable_us",
                reason: format!(
                    "is {}, must be 1000 to {}",
                    self.highest_trackable_us,
                    u32::MAX
                ),
            });
        }
        Ok(())
    }

    fn histogram(&self) -> Result<Histogram<u64>> {
        Histogram::new_with_bounds(1, self.highest_trackable_us, self.significant_digits).map_err(
            |e| Error::InvalidConfig {
                field: "highest_trackable_us",
                reason: format!("rejected by the histogram: {e:?}"),
            },
        )
    }
}

impl Default for WindowConfig {
    fn default() -> Self {
        Self {
            max_window_s: Self::DEFAULT_MAX_WINDOW_S,
            significant_digits: Self::DEFAULT_SIGNIFICANT_DIGITS,
            highest_trackable_us: Self::DEFAULT_HIGHEST_TRACKABLE_US,
        }
    }
}

/// Percentiles of a window in microseconds, as read from the histograms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WindowSnapshot {
    /// Samples in the window (exact).
    pub count: u64,
    /// Median, `None` without samples.
    pub p50_us: Option<u64>,
    /// 95th percentile.
    pub p95_us: Option<u64>,
    /// 99th percentile.
    pub p99_us: Option<u64>,
    /// Largest sample (exact).
    pub max_us: Option<u64>,
}

impl WindowSnapshot {
    /// The same figures in milliseconds, as `/v1/ops/stats` reports them.
    pub fn to_summary(&self) -> LatencySummary {
        let ms = |v: Option<u64>| v.map(|us| us as f64 / 1000.0);
        LatencySummary {
            count: self.count,
            p50: ms(self.p50_us),
            p95: ms(self.p95_us),
            p99: ms(self.p99_us),
            max: ms(self.max_us),
        }
    }
}

/// `{"count", "p50", "p95", "p99", "max"}` in milliseconds. Without samples
/// the percentiles are `null`, never a made-up zero, so a gate cannot pass on
/// no data.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct LatencySummary {
    /// Samples in the window.
    pub count: u64,
    /// Median, ms.
    pub p50: Option<f64>,
    /// 95th percentile, ms.
    pub p95: Option<f64>,
    /// 99th percentile, ms.
    pub p99: Option<f64>,
    /// Largest sample, ms.
    pub max: Option<f64>,
}

/// One compacted second.
#[derive(Debug, Clone)]
struct Slot {
    /// The second the samples belong to; `None` if never written.
    second: Option<u64>,
    count: u64,
    max_us: u64,
    /// Non-empty buckets: (the lowest value of the bucket, its count).
    buckets: Vec<(u32, u32)>,
}

/// The compacted seconds and the scratch histogram queries merge into.
#[derive(Debug)]
struct Ring {
    slots: Box<[Slot]>,
    scratch: Histogram<u64>,
}

/// Latency samples over the last `max_window_s` seconds, queryable for any
/// window up to that. Shared by reference between threads.
///
/// Recording takes no lock: the current second is a set of atomic counters
/// laid out like the HDR histogram's buckets (see `BucketLayout`). The first
/// sample or query of a new second takes the ring's lock and compacts the
/// finished second into its slot. A sample racing with that compaction may be
/// counted in the next second; its maximum is then never attributed to an
/// earlier second than its count, so a window's maximum bounds every sample
/// it counts.
#[derive(Debug)]
pub struct LatencyWindow {
    config: WindowConfig,
    layout: BucketLayout,
    current_second: AtomicU64,
    current: Box<[AtomicU64]>,
    current_max_us: AtomicU64,
    ring: Mutex<Ring>,
}

fn second_of(now_ms: u64) -> u64 {
    now_ms / 1000
}

fn check_window(window_s: u64, max_window_s: u32) -> Result<()> {
    if window_s == 0 || window_s > u64::from(max_window_s) {
        return Err(Error::WindowOutOfRange {
            requested_s: window_s,
            max_s: u64::from(max_window_s),
        });
    }
    Ok(())
}

impl LatencyWindow {
    /// An empty window tracker.
    pub fn new(config: WindowConfig) -> Result<Self> {
        config.validate()?;
        let empty = Slot {
            second: None,
            count: 0,
            max_us: 0,
            buckets: Vec::new(),
        };
        let layout = BucketLayout::new(config.significant_digits, config.highest_trackable_us);
        Ok(Self {
            current: (0..layout.len()).map(|_| AtomicU64::new(0)).collect(),
            layout,
            current_second: AtomicU64::new(0),
            current_max_us: AtomicU64::new(0),
            ring: Mutex::new(Ring {
                slots: vec![empty; config.max_window_s as usize].into_boxed_slice(),
                scratch: config.histogram()?,
            }),
            config,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &WindowConfig {
        &self.config
    }

    /// Records one sample at time `now_ms` (of the shared
    /// [`TimeSource`](crate::TimeSource)). A time earlier than the last one
    /// seen counts as the current second.
    pub fn record(&self, now_ms: u64, latency: Duration) {
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.record_us(now_ms, us);
    }

    /// [`record`](Self::record) with the latency in microseconds.
    #[inline]
    pub fn record_us(&self, now_ms: u64, us: u64) {
        let second = second_of(now_ms);
        if second > self.current_second.load(Ordering::SeqCst) {
            self.advance_to(&mut self.ring.lock(), second);
        }
        let i = self
            .layout
            .index_of(us.min(self.config.highest_trackable_us));
        // Count first, then maximum; compaction takes the maximum first, then
        // the counts (see the type's documentation).
        self.current[i].fetch_add(1, Ordering::SeqCst);
        if us > self.current_max_us.load(Ordering::SeqCst) {
            self.current_max_us.fetch_max(us, Ordering::SeqCst);
        }
    }

    /// Moves the current second forward, compacting the finished one.
    fn advance_to(&self, ring: &mut Ring, second: u64) {
        let current_second = self.current_second.load(Ordering::SeqCst);
        if second <= current_second {
            return;
        }
        let max_us = self.current_max_us.swap(0, Ordering::SeqCst);
        let n = ring.slots.len() as u64;
        let slot = &mut ring.slots[(current_second % n) as usize];
        slot.buckets.clear();
        let mut count = 0u64;
        for (i, c) in self.current.iter().enumerate() {
            if c.load(Ordering::SeqCst) == 0 {
                continue;
            }
            let taken = c.swap(0, Ordering::SeqCst);
            count += taken;
            slot.buckets.push((
                u32::try_from(self.layout.value_of(i)).unwrap_or(u32::MAX),
                u32::try_from(taken).unwrap_or(u32::MAX),
            ));
        }
        slot.second = (count > 0).then_some(current_second);
        slot.count = count;
        slot.max_us = max_us;
        self.current_second.store(second, Ordering::SeqCst);
    }

    /// Count, p50, p95, p99 and max of the samples less than `window_s`
    /// seconds old at `now_ms`.
    pub fn snapshot(&self, now_ms: u64, window_s: u64) -> Result<WindowSnapshot> {
        check_window(window_s, self.config.max_window_s)?;
        let ring = &mut *self.ring.lock();
        // A `now` read before another thread recorded into a later second
        // (or a clock that went back) counts as that second: the window ends
        // at the newest second held, so it never spans more than `window_s`.
        let now = second_of(now_ms).max(self.current_second.load(Ordering::SeqCst));
        self.advance_to(ring, now);
        let in_window = |second: u64| now.saturating_sub(second) < window_s;
        ring.scratch.reset();
        let mut count = 0u64;
        let mut max_us = 0u64;
        for slot in ring.slots.iter() {
            match slot.second {
                Some(s) if in_window(s) => {}
                _ => continue,
            }
            count += slot.count;
            max_us = max_us.max(slot.max_us);
            for &(value, n) in &slot.buckets {
                ring.scratch
                    .saturating_record_n(u64::from(value), u64::from(n));
            }
        }
        if in_window(self.current_second.load(Ordering::SeqCst)) {
            let mut top = None;
            for (i, c) in self.current.iter().enumerate() {
                let n = c.load(Ordering::SeqCst);
                if n > 0 {
                    count += n;
                    top = Some(i);
                    ring.scratch.saturating_record_n(self.layout.value_of(i), n);
                }
            }
            let mut current_max = self.current_max_us.load(Ordering::SeqCst);
            // Recording counts a sample before it raises the maximum: caught
            // between the two, the highest counted bucket says more than the
            // maximum does. Its highest value is then the bound (never below
            // the sample).
            if let Some(i) = top
                && current_max < self.layout.value_of(i)
            {
                current_max = self.layout.value_of(i + 1).saturating_sub(1);
            }
            max_us = max_us.max(current_max);
        }
        if count == 0 {
            return Ok(WindowSnapshot::default());
        }
        // A bucket's highest value can exceed the exact maximum; the true
        // percentile cannot, so clamping keeps it an upper bound and tighter.
        let mut q = ring
            .scratch
            .value_at_quantiles([0.50, 0.95, 0.99])
            .map(|v| v.min(max_us));
        Ok(WindowSnapshot {
            count,
            p50_us: q.next(),
            p95_us: q.next(),
            p99_us: q.next(),
            max_us: Some(max_us),
        })
    }

    /// [`snapshot`](Self::snapshot) in milliseconds.
    pub fn summary(&self, now_ms: u64, window_s: u64) -> Result<LatencySummary> {
        Ok(self.snapshot(now_ms, window_s)?.to_summary())
    }

    /// Bucket entries held in the compacted slots now.
    pub fn stored_buckets(&self) -> usize {
        self.ring.lock().slots.iter().map(|s| s.buckets.len()).sum()
    }

    /// The most bucket entries the slots can ever hold: one per HDR bucket per
    /// slot. At 8 bytes each, with the defaults this is 900 × 3,287 entries,
    /// about 24 MB, reached only if every second spread its samples over every
    /// bucket from 1 µs to an hour; real latencies touch a few hundred
    /// buckets per second. The current second adds a fixed 8 bytes per bucket
    /// (26 KB).
    pub fn max_stored_buckets(&self) -> usize {
        self.config.max_window_s as usize * self.layout.len()
    }
}

/// Largest second a [`WindowedCounter`] can tell apart (seconds are packed
/// with the count into one atomic word): 136 years after the time source's
/// origin.
const MAX_COUNTER_SECOND: u64 = u32::MAX as u64;

fn pack(second: u64, count: u64) -> u64 {
    (second << 32) | count.min(u64::from(u32::MAX))
}

fn unpack(v: u64) -> (u64, u64) {
    (v >> 32, v & u64::from(u32::MAX))
}

/// A count over the last `max_window_s` seconds, queryable for any window up
/// to that: a fixed ring of per-second counts, each one atomic word holding
/// its second and its count (at most 2^32 - 1 per second). Lock-free.
#[derive(Debug)]
pub struct WindowedCounter {
    slots: Box<[AtomicU64]>,
    latest_second: AtomicU64,
}

impl WindowedCounter {
    /// A zeroed counter keeping `max_window_s` seconds.
    pub fn new(max_window_s: u32) -> Result<Self> {
        WindowConfig {
            max_window_s,
            ..WindowConfig::default()
        }
        .validate()?;
        Ok(Self {
            // Second 0 with count 0 is the same as an empty slot.
            slots: (0..max_window_s).map(|_| AtomicU64::new(0)).collect(),
            latest_second: AtomicU64::new(0),
        })
    }

    /// Adds `n` at `now_ms`. A time earlier than the latest seen counts as
    /// the latest second.
    pub fn add(&self, now_ms: u64, n: u64) {
        let mut second = second_of(now_ms).min(MAX_COUNTER_SECOND);
        let latest = self.latest_second.load(Ordering::Relaxed);
        if second > latest {
            self.latest_second.fetch_max(second, Ordering::Relaxed);
        } else {
            second = latest;
        }
        let len = self.slots.len() as u64;
        let slot = &self.slots[(second % len) as usize];
        // The closure always returns Some, so the update cannot fail.
        let _ = slot.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| {
            let (s, c) = unpack(v);
            Some(if s >= second {
                // This second, or (after a long stall of this thread) a newer
                // one that reused the slot: count it there rather than lose it.
                pack(s, c.saturating_add(n))
            } else {
                pack(second, n)
            })
        });
    }

    /// The sum over the seconds less than `window_s` old at `now_ms`.
    pub fn sum(&self, now_ms: u64, window_s: u64) -> Result<u64> {
        check_window(window_s, self.slots.len() as u32)?;
        // As for the latency window: the window ends at the newest second
        // counted, even when `now` was read before it was.
        let now = second_of(now_ms).max(self.latest_second.load(Ordering::SeqCst));
        Ok(self
            .slots
            .iter()
            .map(|v| unpack(v.load(Ordering::SeqCst)))
            .filter(|&(s, _)| now.saturating_sub(s) < window_s)
            .fold(0u64, |acc, (_, n)| acc.saturating_add(n)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(max_window_s: u32) -> LatencyWindow {
        LatencyWindow::new(WindowConfig {
            max_window_s,
            ..WindowConfig::default()
        })
        .unwrap()
    }

    #[test]
    fn config_ranges_are_enforced() {
        let bad = [
            WindowConfig {
                max_window_s: 0,
                ..WindowConfig::default()
            },
            WindowConfig {
                significant_digits: 4,
                ..WindowConfig::default()
            },
            WindowConfig {
                highest_trackable_us: u64::from(u32::MAX) + 1,
                ..WindowConfig::default()
            },
        ];
        for c in bad {
            assert!(matches!(
                LatencyWindow::new(c),
                Err(Error::InvalidConfig { .. })
            ));
        }
    }

    #[test]
    fn empty_window_reports_count_zero_and_no_percentiles() {
        let w = window(60);
        let s = w.summary(0, 60).unwrap();
        assert_eq!(s, LatencySummary::default());
        assert_eq!(
            serde_json::to_value(s).unwrap()["p99"],
            serde_json::Value::Null
        );
    }

    #[test]
    fn window_range_is_checked() {
        let w = window(60);
        assert!(matches!(
            w.snapshot(0, 0),
            Err(Error::WindowOutOfRange {
                requested_s: 0,
                max_s: 60
            })
        ));
        assert!(matches!(
            w.snapshot(0, 61),
            Err(Error::WindowOutOfRange { .. })
        ));
    }

    #[test]
    fn small_values_are_exact_and_max_is_exact_beyond_the_clamp() {
        let w = window(10);
        for us in 1..=100 {
            w.record_us(1_500, us);
        }
        w.record_us(1_500, 7_200_000_000); // two hours: clamped in percentiles
        let s = w.snapshot(1_600, 1).unwrap();
        assert_eq!(s.count, 101);
        assert_eq!(s.p50_us, Some(51));
        assert_eq!(s.p95_us, Some(96));
        assert_eq!(s.max_us, Some(7_200_000_000));
    }

    #[test]
    fn a_window_ends_at_the_newest_second_held_even_if_now_was_read_before_it() {
        let w = window(60);
        w.record_us(12_500, 1);
        w.record_us(13_000, 1);
        assert_eq!(w.snapshot(12_999, 1).unwrap().count, 1);
        let c = WindowedCounter::new(60).unwrap();
        c.add(12_500, 1);
        c.add(13_000, 1);
        assert_eq!(c.sum(12_999, 1).unwrap(), 1);
    }

    #[test]
    fn a_sample_counted_before_its_maximum_is_raised_is_still_bounded() {
        let w = window(60);
        w.record_us(5_000, 10);
        // What a query sees between a recording's two steps: the count of a
        // 900 ms sample, not yet its maximum.
        w.current[w.layout.index_of(900_000)].fetch_add(1, Ordering::SeqCst);
        let s = w.snapshot(5_500, 1).unwrap();
        assert_eq!(s.count, 2);
        assert!(s.max_us.unwrap() >= 900_000, "{:?}", s.max_us);
        assert!(s.p99_us.unwrap() >= 900_000, "{:?}", s.p99_us);
    }

    #[test]
    fn a_window_covers_the_current_second_and_the_ones_before_it() {
        let w = window(60);
        w.record_us(10_000, 100); // second 10
        w.record_us(11_999, 200); // second 11
        w.record_us(12_000, 300); // second 12
        assert_eq!(w.snapshot(12_500, 1).unwrap().count, 1);
        assert_eq!(w.snapshot(12_500, 2).unwrap().count, 2);
        assert_eq!(w.snapshot(12_500, 3).unwrap().count, 3);
        assert_eq!(w.snapshot(12_500, 3).unwrap().max_us, Some(300));
        // Queried later, the same samples age out of short windows.
        assert_eq!(w.snapshot(20_000, 9).unwrap().count, 1);
        assert_eq!(w.snapshot(20_000, 11).unwrap().count, 3);
    }

    #[test]
    fn old_data_is_forgotten_and_overwritten_slots_stay_fixed() {
        let w = window(5);
        for s in 0..100u64 {
            for i in 0..50 {
                w.record_us(s * 1000, 1000 + i * 37 + s);
            }
        }
        assert_eq!(w.snapshot(99_000, 5).unwrap().count, 250);
        assert_eq!(w.snapshot(99_000, 1).unwrap().count, 50);
        assert_eq!(w.snapshot(104_000, 5).unwrap().count, 0);
        assert_eq!(w.snapshot(104_000, 5).unwrap().p99_us, None);
        assert!(w.stored_buckets() <= 5 * 50);
    }

    #[test]
    fn time_going_backwards_records_into_the_current_second() {
        let w = window(60);
        w.record_us(50_000, 10);
        w.record_us(20_000, 20);
        let s = w.snapshot(50_000, 1).unwrap();
        assert_eq!(s.count, 2);
        assert_eq!(s.max_us, Some(20));
    }

    #[test]
    fn memory_stays_within_the_bound_even_when_every_bucket_is_hit() {
        let config = WindowConfig {
            max_window_s: 4,
            ..WindowConfig::default()
        };
        let w = LatencyWindow::new(config).unwrap();
        let bound = w.max_stored_buckets();
        for second in 0..12u64 {
            // Walk every value class from 1 µs to the top, many buckets each.
            let mut v = 1u64;
            while v < config.highest_trackable_us {
                w.record_us(second * 1000, v);
                v += v / 64 + 1;
            }
        }
        w.snapshot(12_000, 4).unwrap();
        assert!(w.stored_buckets() > 0);
        assert!(
            w.stored_buckets() <= bound,
            "{} > {bound}",
            w.stored_buckets()
        );
        assert_eq!(w.ring.lock().slots.len(), 4);
    }

    #[test]
    fn the_documented_worst_case_holds_for_the_defaults() {
        let w = LatencyWindow::new(WindowConfig::default()).unwrap();
        assert_eq!(w.max_stored_buckets(), 900 * 3_287);
        assert_eq!(w.current.len(), 3_287);
    }

    #[test]
    fn windowed_counter_sums_and_forgets() {
        let c = WindowedCounter::new(10).unwrap();
        for s in 0..30u64 {
            c.add(s * 1000 + 999, s);
        }
        // Seconds 20 to 29 remain: 20 + ... + 29.
        assert_eq!(c.sum(29_000, 10).unwrap(), (20..30).sum::<u64>());
        assert_eq!(c.sum(29_000, 1).unwrap(), 29);
        assert_eq!(c.sum(45_000, 10).unwrap(), 0);
        assert!(matches!(c.sum(0, 11), Err(Error::WindowOutOfRange { .. })));
        // Backwards time adds to the latest second instead of an old slot.
        c.add(0, 5);
        assert_eq!(c.sum(29_000, 1).unwrap(), 34);
    }
}
