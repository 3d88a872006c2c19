//! Building the `prometheus-client` registry from the catalogue, and the
//! Prometheus text encoding.

use crate::catalogue::{LabelValues, MetricSpec, MetricType};
use crate::histogram::{BucketsOf, DurationHistogram};
use prometheus_client::encoding::{EncodeMetric, MetricEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::Arc;

/// The `Content-Type` of [`crate::Metrics::render`]'s output: the Prometheus
/// text format 0.0.4, which `promtool check metrics` reads.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// A label set of `N` labels whose names come from the catalogue.
pub(crate) type Labels<const N: usize> = [(&'static str, Arc<str>); N];

/// A family whose series appear on first use. Wrapped in [`Listed`] so its
/// `# HELP` and `# TYPE` lines are exposed before the first series exists:
/// every catalogue metric is visible from start.
pub(crate) type CounterFamily<const N: usize> = Family<Labels<N>, Counter>;
pub(crate) type HistogramFamily<const N: usize> = Family<Labels<N>, DurationHistogram, BucketsOf>;

/// A metric that is listed (`# HELP`, `# TYPE`) even when it has no series.
#[derive(Debug)]
pub(crate) struct Listed<M>(pub(crate) M);

impl<M: EncodeMetric> EncodeMetric for Listed<M> {
    fn encode(&self, encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        self.0.encode(encoder)
    }

    fn metric_type(&self) -> prometheus_client::metrics::MetricType {
        self.0.metric_type()
    }

    fn is_empty(&self) -> bool {
        false
    }
}

fn check(spec: &MetricSpec, metric_type: MetricType, labels: usize) {
    // Wiring mistakes between the catalogue and the code are programming
    // errors that every test run would hit, not input-dependent failures.
    debug_assert_eq!(spec.metric_type, metric_type, "{}", spec.name);
    debug_assert_eq!(spec.labels.len(), labels, "{}", spec.name);
}

pub(crate) fn counter(registry: &mut Registry, spec: &MetricSpec) -> Counter {
    check(spec, MetricType::Counter, 0);
    let c = Counter::default();
    registry.register(spec.registry_name(), spec.help, c.clone());
    c
}

pub(crate) fn gauge(registry: &mut Registry, spec: &MetricSpec) -> Gauge {
    check(spec, MetricType::Gauge, 0);
    let g = Gauge::default();
    registry.register(spec.registry_name(), spec.help, g.clone());
    g
}

pub(crate) fn histogram(registry: &mut Registry, spec: &MetricSpec) -> DurationHistogram {
    check(spec, MetricType::Histogram, 0);
    let h = DurationHistogram::new(spec.buckets);
    registry.register(spec.registry_name(), spec.help, h.clone());
    h
}

pub(crate) fn counter_family<const N: usize>(
    registry: &mut Registry,
    spec: &MetricSpec,
) -> CounterFamily<N> {
    check(spec, MetricType::Counter, N);
    let f = CounterFamily::<N>::default();
    registry.register(spec.registry_name(), spec.help, Listed(f.clone()));
    f
}

pub(crate) fn histogram_family<const N: usize>(
    registry: &mut Registry,
    spec: &MetricSpec,
) -> HistogramFamily<N> {
    check(spec, MetricType::Histogram, N);
    let f = HistogramFamily::<N>::new_with_constructor(BucketsOf(spec.buckets));
    registry.register(spec.registry_name(), spec.help, Listed(f.clone()));
    f
}

/// A one-label counter family over a fixed value set, with every series
/// created at zero; the counters are returned in the order of the values.
pub(crate) fn fixed_counters<const V: usize>(
    registry: &mut Registry,
    spec: &MetricSpec,
) -> [Counter; V] {
    let family = counter_family::<1>(registry, spec);
    let label = &spec.labels[0];
    let values: &[&str] = match label.values {
        LabelValues::Fixed(values) => values,
        LabelValues::FirstUse(_) => &[],
    };
    debug_assert_eq!(values.len(), V, "{}", spec.name);
    std::array::from_fn(|i| {
        let value = values.get(i).copied().unwrap_or("");
        family.get_or_create_owned(&[(label.name, Arc::from(value))])
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalogue;

    #[test]
    fn a_listed_empty_family_still_shows_help_and_type() {
        let mut r = Registry::default();
        let _f = histogram_family::<1>(&mut r, &catalogue::HTTP_REQUEST_DURATION);
        let mut out = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut out, &r).unwrap();
        assert!(out.contains("# TYPE lighthouse_http_request_duration_seconds histogram\n"));
        assert!(out.contains("# HELP lighthouse_http_request_duration_seconds Time the bridge"));
        assert!(!out.contains("_bucket"), "{out}");
    }

    #[test]
    fn fixed_counters_exist_at_zero_with_the_catalogue_values() {
        let mut r = Registry::default();
        let counters = fixed_counters::<4>(&mut r, &catalogue::ELICITATIONS);
        counters[1].inc();
        let mut out = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut out, &r).unwrap();
        for (value, n) in [
            ("accepted", 0),
            ("declined", 1),
            ("cancelled", 0),
            ("expired", 0),
        ] {
            let line = format!("lighthouse_elicitations_total{{outcome=\"{value}\"}} {n}\n");
            assert!(out.contains(&line), "{line} not in {out}");
        }
    }
}
