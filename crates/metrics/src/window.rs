//! Windowed latency percentiles and windowed counters: what `/v1/ops/stats`
//! reports over "the last N seconds".
//!
//! Design. Samples of the current second go into one dense HDR histogram. When
//! a sample (or a query) arrives in a later second, that histogram is
//! compacted into a one-second slot of a fixed ring of `max_window_s` slots,
//! as its non-empty buckets only, and reset. A query for a window of `W`
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

use crate::error::{Error, Result};
use hdrhistogram::Histogram;
use serde::Serialize;
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
    /// Non-empty buckets: (a value in the bucket, its count).
    buckets: Vec<(u32, u32)>,
}

/// Latency samples over the last `max_window_s` seconds, queryable for any
/// window up to that. Not synchronised: wrap it in a mutex to share it.
#[derive(Debug)]
pub struct LatencyWindow {
    config: WindowConfig,
    current: Histogram<u64>,
    current_second: u64,
    current_count: u64,
    current_max_us: u64,
    slots: Box<[Slot]>,
    scratch: Histogram<u64>,
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
        Ok(Self {
            current: config.histogram()?,
            scratch: config.histogram()?,
            current_second: 0,
            current_count: 0,
            current_max_us: 0,
            slots: vec![empty; config.max_window_s as usize].into_boxed_slice(),
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
    pub fn record(&mut self, now_ms: u64, latency: Duration) {
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.record_us(now_ms, us);
    }

    /// [`record`](Self::record) with the latency in microseconds.
    pub fn record_us(&mut self, now_ms: u64, us: u64) {
        self.advance_to(second_of(now_ms));
        self.current
            .saturating_record(us.min(self.config.highest_trackable_us));
        self.current_count += 1;
        self.current_max_us = self.current_max_us.max(us);
    }

    /// Moves the current second forward, compacting the finished one.
    fn advance_to(&mut self, second: u64) {
        if second <= self.current_second {
            return;
        }
        if self.current_count > 0 {
            let n = self.slots.len() as u64;
            let slot = &mut self.slots[(self.current_second % n) as usize];
            slot.second = Some(self.current_second);
            slot.count = self.current_count;
            slot.max_us = self.current_max_us;
            slot.buckets.clear();
            slot.buckets.extend(self.current.iter_recorded().map(|v| {
                (
                    u32::try_from(v.value_iterated_to()).unwrap_or(u32::MAX),
                    u32::try_from(v.count_at_value()).unwrap_or(u32::MAX),
                )
            }));
            self.current.reset();
            self.current_count = 0;
            self.current_max_us = 0;
        }
        self.current_second = second;
    }

    /// Count, p50, p95, p99 and max of the samples less than `window_s`
    /// seconds old at `now_ms`.
    pub fn snapshot(&mut self, now_ms: u64, window_s: u64) -> Result<WindowSnapshot> {
        check_window(window_s, self.config.max_window_s)?;
        let now = second_of(now_ms);
        self.advance_to(now);
        let in_window = |second: u64| now.saturating_sub(second) < window_s;
        self.scratch.reset();
        let mut count = 0u64;
        let mut max_us = 0u64;
        for slot in self.slots.iter() {
            match slot.second {
                Some(s) if in_window(s) => {}
                _ => continue,
            }
            count += slot.count;
            max_us = max_us.max(slot.max_us);
            for &(value, n) in &slot.buckets {
                self.scratch
                    .saturating_record_n(u64::from(value), u64::from(n));
            }
        }
        if self.current_count > 0 && in_window(self.current_second) {
            count += self.current_count;
            max_us = max_us.max(self.current_max_us);
            self.scratch
                .add(&self.current)
                .map_err(|e| Error::InvalidConfig {
                    field: "significant_digits",
                    reason: format!("histograms of one window do not merge: {e:?}"),
                })?;
        }
        if count == 0 {
            return Ok(WindowSnapshot::default());
        }
        // A bucket's highest value can exceed the exact maximum; the true
        // percentile cannot, so clamping keeps it an upper bound and tighter.
        let mut q = self
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
    pub fn summary(&mut self, now_ms: u64, window_s: u64) -> Result<LatencySummary> {
        Ok(self.snapshot(now_ms, window_s)?.to_summary())
    }

    /// Bucket entries held in the compacted slots now.
    pub fn stored_buckets(&self) -> usize {
        self.slots.iter().map(|s| s.buckets.len()).sum()
    }

    /// The most bucket entries the slots can ever hold: one per HDR bucket per
    /// slot. At 8 bytes each, with the defaults this is 900 × 3,328 entries,
    /// about 24 MB, reached only if every second spread its samples over every
    /// bucket from 1 µs to an hour; real latencies touch a few hundred
    /// buckets per second.
    pub fn max_stored_buckets(&self) -> usize {
        self.slots.len() * self.current.distinct_values()
    }
}

/// A count over the last `max_window_s` seconds, queryable for any window up
/// to that: a fixed ring of per-second counts. Not synchronised.
#[derive(Debug, Clone)]
pub struct WindowedCounter {
    slots: Box<[(Option<u64>, u64)]>,
    latest_second: u64,
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
            slots: vec![(None, 0); max_window_s as usize].into_boxed_slice(),
            latest_second: 0,
        })
    }

    /// Adds `n` at `now_ms`. A time earlier than the latest seen counts as
    /// the latest second.
    pub fn add(&mut self, now_ms: u64, n: u64) {
        let second = second_of(now_ms).max(self.latest_second);
        self.latest_second = second;
        let len = self.slots.len() as u64;
        let slot = &mut self.slots[(second % len) as usize];
        if slot.0 != Some(second) {
            *slot = (Some(second), 0);
        }
        slot.1 = slot.1.saturating_add(n);
    }

    /// The sum over the seconds less than `window_s` old at `now_ms`.
    pub fn sum(&self, now_ms: u64, window_s: u64) -> Result<u64> {
        check_window(window_s, self.slots.len() as u32)?;
        let now = second_of(now_ms);
        Ok(self
            .slots
            .iter()
            .filter_map(|&(second, n)| second.map(|s| (s, n)))
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
        let mut w = window(60);
        let s = w.summary(0, 60).unwrap();
        assert_eq!(s, LatencySummary::default());
        assert_eq!(
            serde_json::to_value(s).unwrap()["p99"],
            serde_json::Value::Null
        );
    }

    #[test]
    fn window_range_is_checked() {
        let mut w = window(60);
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
        let mut w = window(10);
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
    fn a_window_covers_the_current_second_and_the_ones_before_it() {
        let mut w = window(60);
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
        let mut w = window(5);
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
        let mut w = window(60);
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
        let mut w = LatencyWindow::new(config).unwrap();
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
        assert_eq!(w.slots.len(), 4);
    }

    #[test]
    fn windowed_counter_sums_and_forgets() {
        let mut c = WindowedCounter::new(10).unwrap();
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
