//! A lock-free Prometheus histogram of durations.
//!
//! `prometheus-client`'s own histogram takes a mutex per observation (about
//! 19 ns here, uncontended); this one does a binary search over integer
//! nanosecond bounds, one relaxed atomic addition to a bucket and one
//! compare-and-swap on the sum, and plugs into the same registry and encoders
//! through [`EncodeMetric`].
//!
//! The sum is an `f64` of seconds kept as bits in an `AtomicU64`, as the Go
//! client keeps it. An integer of nanoseconds would wrap after 2^64 ns
//! (about 585 years of summed observations: 14 days of 500 elicitations a
//! second lasting 30 s each), and a wrapped `_sum` goes backwards, which
//! Prometheus reads as a counter reset and `rate()` turns into garbage. An
//! `f64` never wraps, and adding a non-negative value never lowers it; its
//! 53-bit mantissa keeps each addition within about 1e-16 of the sum, and the
//! exposition is an `f64` anyway.
//!
//! Consistency: the `_count` and `+Inf` bucket are the sum of the bucket
//! counters as read by the scrape, so buckets are always cumulative and match
//! `_count`; `_sum` is read separately and may include or miss an observation
//! that lands during the scrape, as with other lock-free clients.

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::family::MetricConstructor;
use prometheus_client::metrics::{MetricType, TypedMetric};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

#[derive(Debug)]
struct Inner {
    /// Upper bounds in seconds, as exposed.
    bounds_s: &'static [f64],
    /// The same bounds in nanoseconds, for the search.
    bounds_ns: Box<[u64]>,
    /// One counter per bound, plus one for values above the last bound.
    counts: Box<[AtomicU64]>,
    /// The sum of observations in seconds, as `f64` bits.
    sum_s_bits: AtomicU64,
}

/// A histogram of durations with fixed bucket bounds in seconds. Clones share
/// the same counters.
#[derive(Debug, Clone)]
pub(crate) struct DurationHistogram {
    inner: Arc<Inner>,
}

impl DurationHistogram {
    /// A histogram with `bounds_s` (ascending, seconds) as its `le` bounds.
    pub(crate) fn new(bounds_s: &'static [f64]) -> Self {
        let bounds_ns = bounds_s.iter().map(|s| (s * 1e9).round() as u64).collect();
        let counts = (0..=bounds_s.len()).map(|_| AtomicU64::new(0)).collect();
        Self {
            inner: Arc::new(Inner {
                bounds_s,
                bounds_ns,
                counts,
                sum_s_bits: AtomicU64::new(0f64.to_bits()),
            }),
        }
    }

    /// Records one duration.
    #[inline]
    pub(crate) fn observe(&self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let inner = &*self.inner;
        // `le` semantics: the first bound at or above the value.
        let i = inner.bounds_ns.partition_point(|b| *b < ns);
        inner.counts[i].fetch_add(1, Ordering::Relaxed);
        let add = d.as_secs_f64();
        let mut current = inner.sum_s_bits.load(Ordering::Relaxed);
        loop {
            let next = (f64::from_bits(current) + add).to_bits();
            match inner.sum_s_bits.compare_exchange_weak(
                current,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(seen) => current = seen,
            }
        }
    }

    /// Observations so far.
    #[cfg(test)]
    pub(crate) fn count(&self) -> u64 {
        self.inner
            .counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }
}

impl TypedMetric for DurationHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for DurationHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let inner = &*self.inner;
        let mut buckets = Vec::with_capacity(inner.counts.len());
        let mut count = 0u64;
        for (i, c) in inner.counts.iter().enumerate() {
            let n = c.load(Ordering::Relaxed);
            count += n;
            let bound = inner.bounds_s.get(i).copied().unwrap_or(f64::INFINITY);
            buckets.push((bound, n));
        }
        let sum_s = f64::from_bits(inner.sum_s_bits.load(Ordering::Relaxed));
        encoder.encode_histogram::<NoLabelSet>(sum_s, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

/// Makes histograms with a catalogue entry's buckets (for families).
#[derive(Debug, Clone, Copy)]
pub(crate) struct BucketsOf(pub(crate) &'static [f64]);

impl MetricConstructor<DurationHistogram> for BucketsOf {
    fn new_metric(&self) -> DurationHistogram {
        DurationHistogram::new(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::registry::Registry;

    fn render(h: &DurationHistogram) -> String {
        let mut r = Registry::default();
        r.register("d_seconds", "d", h.clone());
        let mut out = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut out, &r).unwrap();
        out
    }

    #[test]
    fn buckets_are_cumulative_with_le_semantics() {
        let h = DurationHistogram::new(&[0.001, 0.01, 0.1]);
        h.observe(Duration::from_micros(1000)); // exactly on the first bound
        h.observe(Duration::from_micros(1001));
        h.observe(Duration::from_millis(50));
        h.observe(Duration::from_secs(5)); // above every bound
        let out = render(&h);
        for line in [
            "d_seconds_bucket{le=\"0.001\"} 1\n",
            "d_seconds_bucket{le=\"0.01\"} 2\n",
            "d_seconds_bucket{le=\"0.1\"} 3\n",
            "d_seconds_bucket{le=\"+Inf\"} 4\n",
            "d_seconds_count 4\n",
        ] {
            assert!(out.contains(line), "{line} not in\n{out}");
        }
        let sum: f64 = out
            .lines()
            .find_map(|l| l.strip_prefix("d_seconds_sum "))
            .unwrap()
            .parse()
            .unwrap();
        assert!((sum - 5.052001).abs() < 1e-9, "{sum}");
        assert_eq!(out.matches("le=\"+Inf\"").count(), 1);
        assert_eq!(h.count(), 4);
    }

    #[test]
    fn concurrent_observations_all_count() {
        let h = DurationHistogram::new(&[0.001, 0.01]);
        std::thread::scope(|s| {
            for t in 0..4u64 {
                let h = h.clone();
                s.spawn(move || {
                    for i in 0..10_000u64 {
                        h.observe(Duration::from_micros((i * 7 + t) % 20_000));
                    }
                });
            }
        });
        assert_eq!(h.count(), 40_000);
        let expected_s: f64 = (0..4u64)
            .flat_map(|t| (0..10_000u64).map(move |i| ((i * 7 + t) % 20_000) as f64 / 1e6))
            .sum();
        let sum = sum_of(&render(&h));
        assert!((sum - expected_s).abs() < 1e-6, "{sum} != {expected_s}");
    }

    fn sum_of(exposition: &str) -> f64 {
        exposition
            .lines()
            .find_map(|l| l.strip_prefix("d_seconds_sum "))
            .unwrap()
            .parse()
            .unwrap()
    }

    #[test]
    fn the_sum_of_many_long_observations_neither_wraps_nor_goes_back() {
        // 2e10 s in all: past the 1.8e10 s at which a u64 of nanoseconds wraps
        // (what the sum was), reached by a bridge whose elicitations take a
        // while (500 a second lasting 30 s each do it in 14 days).
        let h = DurationHistogram::new(&[1.0, 3600.0]);
        let mut last = 0.0;
        for step in 0..10u32 {
            for _ in 0..1_000 {
                h.observe(Duration::from_secs(2_000_000));
            }
            let sum = sum_of(&render(&h));
            assert!(sum >= last, "the sum went back from {last} to {sum}");
            assert_eq!(sum, f64::from(step + 1) * 2e9);
            last = sum;
        }
        assert_eq!(sum_of(&render(&h)), 2e10);
        assert_eq!(h.count(), 10_000);
    }
}
