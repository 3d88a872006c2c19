//! The catalogue: every metric Lighthouse exposes, defined once.
//!
//! The registry behind [`crate::Metrics`] is built from [`CATALOGUE`], the
//! process collector describes its metrics with the [`MetricSpec`]s below, and
//! generated alert rules and dashboards read the same list, so nothing can
//! mention a metric that is not emitted. Tests check both directions: every
//! entry is in a fresh exposition, and nothing outside the catalogue is.
//!
//! Names are the names as exposed: counters carry their `_total` suffix here
//! (the registry adds it back when encoding), histograms their unit.

use crate::labels::{FlagResult, FoldedLabel, Outcome, RateAction, ViolationKind};

/// The Prometheus type of a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MetricType {
    /// Monotonic count; the exposed name ends in `_total`.
    Counter,
    /// A value that goes up and down.
    Gauge,
    /// Explicit cumulative buckets plus `_sum` and `_count`.
    Histogram,
}

impl MetricType {
    /// The word used in `# TYPE` lines.
    pub fn as_str(self) -> &'static str {
        match self {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Histogram => "histogram",
        }
    }
}

/// The label values a label may take.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LabelValues {
    /// A small fixed set: every value's series exists, at zero, from start.
    Fixed(&'static [&'static str]),
    /// Values appear on first use, at most a configured number of distinct
    /// values (see [`crate::LabelCaps`]); later or invalid values are folded
    /// into [`crate::OVERFLOW_LABEL_VALUE`].
    FirstUse(CappedLabel),
}

/// The labels whose values appear on first use, each with its own cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CappedLabel {
    /// `route`: the matched route template (`/v1/elicitations/{id}/respond`),
    /// or [`crate::UNMATCHED_ROUTE`]; never a raw path.
    Route,
    /// `status`: the HTTP status code, 100 to 599.
    Status,
    /// `flag`: a flag key (`^[a-z0-9][a-z0-9._-]{0,127}$`).
    Flag,
}

/// One label of a metric.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LabelSpec {
    /// The label name.
    pub name: &'static str,
    /// Its allowed values.
    pub values: LabelValues,
}

/// Where a metric's values come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Origin {
    /// Recorded by Lighthouse through [`crate::Metrics`].
    Lighthouse,
    /// Read from `/proc/self` at each scrape (Linux only).
    Process,
}

/// One metric of the catalogue.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MetricSpec {
    /// The exposed name.
    pub name: &'static str,
    /// Help text, without the final full stop (the encoder adds it).
    pub help: &'static str,
    /// Counter, gauge or histogram.
    pub metric_type: MetricType,
    /// Labels, in exposition order.
    pub labels: &'static [LabelSpec],
    /// Upper bounds of the histogram buckets in the metric's unit (seconds),
    /// ascending, `+Inf` implied. Empty for counters and gauges.
    pub buckets: &'static [f64],
    /// Who produces the values.
    pub origin: Origin,
}

impl MetricSpec {
    /// The name to register with `prometheus-client`, which appends `_total`
    /// to counters itself.
    pub(crate) fn registry_name(&self) -> &'static str {
        match self.metric_type {
            MetricType::Counter => self.name.strip_suffix("_total").unwrap_or(self.name),
            _ => self.name,
        }
    }

    /// The names of this metric's labels.
    pub fn label_names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.labels.iter().map(|l| l.name)
    }
}

const fn fixed(name: &'static str, values: &'static [&'static str]) -> LabelSpec {
    LabelSpec {
        name,
        values: LabelValues::Fixed(values),
    }
}

const fn first_use(name: &'static str, cap: CappedLabel) -> LabelSpec {
    LabelSpec {
        name,
        values: LabelValues::FirstUse(cap),
    }
}

const fn lighthouse(
    name: &'static str,
    help: &'static str,
    metric_type: MetricType,
    labels: &'static [LabelSpec],
    buckets: &'static [f64],
) -> MetricSpec {
    MetricSpec {
        name,
        help,
        metric_type,
        labels,
        buckets,
        origin: Origin::Lighthouse,
    }
}

const fn process(name: &'static str, help: &'static str, metric_type: MetricType) -> MetricSpec {
    MetricSpec {
        name,
        help,
        metric_type,
        labels: &[],
        buckets: &[],
        origin: Origin::Process,
    }
}

/// Buckets for request-path latencies (HTTP handling, push delivery): 0.5 ms to 10 s.
///
/// Bounds at 0.2, 0.3 and 0.4 s sit around the deploy gates' default p99
/// limit of 300 ms (OPERATIONS.md). PromQL's `histogram_quantile` interpolates
/// linearly inside a bucket, so it is exact only at bucket bounds: with 0.25
/// and 0.5 as the nearest ones, whether a p99 was above 300 ms could read one
/// way from Prometheus and the other from `/v1/ops/stats` (HDR, within 1%),
/// right where a gate decides. With a bound at 0.3 both agree on that.
pub const REQUEST_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.25, 0.3, 0.4, 0.5, 1.0, 2.5, 5.0,
    10.0,
];

/// Buckets for durable appends: 0.1 ms to 1 s.
pub const APPEND_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];

/// Buckets for the create-to-terminal time of an elicitation, which includes
/// the responder's thinking and timeouts up to one hour: 10 ms to 1 h.
pub const ELICITATION_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
    1800.0, 3600.0,
];

const OUTCOME: &[LabelSpec] = &[fixed("outcome", Outcome::VALUES)];
const KIND: &[LabelSpec] = &[fixed("kind", ViolationKind::VALUES)];
const ACTION: &[LabelSpec] = &[fixed("action", RateAction::VALUES)];
const ROUTE: &[LabelSpec] = &[first_use("route", CappedLabel::Route)];
const ROUTE_STATUS: &[LabelSpec] = &[
    first_use("route", CappedLabel::Route),
    first_use("status", CappedLabel::Status),
];
const FLAG_RESULT: &[LabelSpec] = &[
    first_use("flag", CappedLabel::Flag),
    fixed("result", FlagResult::VALUES),
];
const FOLDED_LABEL: &[LabelSpec] = &[fixed("label", FoldedLabel::VALUES)];

use MetricType::{Counter, Gauge, Histogram};

/// `lighthouse_elicitations_created_total`
pub const ELICITATIONS_CREATED: MetricSpec = lighthouse(
    "lighthouse_elicitations_created_total",
    "Elicitations created",
    Counter,
    &[],
    &[],
);
/// `lighthouse_elicitations_total{outcome}`
pub const ELICITATIONS: MetricSpec = lighthouse(
    "lighthouse_elicitations_total",
    "Elicitations that reached a terminal state, by outcome",
    Counter,
    OUTCOME,
    &[],
);
/// `lighthouse_elicitation_duration_seconds`
pub const ELICITATION_DURATION: MetricSpec = lighthouse(
    "lighthouse_elicitation_duration_seconds",
    "Time from the creation of an elicitation to its terminal state, in seconds",
    Histogram,
    &[],
    ELICITATION_BUCKETS,
);
/// `lighthouse_elicitation_delivery_duration_seconds`
pub const ELICITATION_DELIVERY: MetricSpec = lighthouse(
    "lighthouse_elicitation_delivery_duration_seconds",
    "Time from an elicitation's requested event being durable to its push being written to an open stream of the target, in seconds",
    Histogram,
    &[],
    REQUEST_BUCKETS,
);
/// `lighthouse_elicitations_active`
pub const ELICITATIONS_ACTIVE: MetricSpec = lighthouse(
    "lighthouse_elicitations_active",
    "Elicitations currently pending",
    Gauge,
    &[],
    &[],
);
/// `lighthouse_http_requests_total{route,status}`
pub const HTTP_REQUESTS: MetricSpec = lighthouse(
    "lighthouse_http_requests_total",
    "API requests answered, by matched route template and status code",
    Counter,
    ROUTE_STATUS,
    &[],
);
/// `lighthouse_http_request_duration_seconds{route}`
pub const HTTP_REQUEST_DURATION: MetricSpec = lighthouse(
    "lighthouse_http_request_duration_seconds",
    "Time the bridge spent on an API request, excluding streams and the waiting part of long-polls, in seconds",
    Histogram,
    ROUTE,
    REQUEST_BUCKETS,
);
/// `lighthouse_security_violations_total{kind}`
pub const SECURITY_VIOLATIONS: MetricSpec = lighthouse(
    "lighthouse_security_violations_total",
    "Requests refused by authentication or authorization, by kind",
    Counter,
    KIND,
    &[],
);
/// `lighthouse_rate_limited_total{action}`
pub const RATE_LIMITED: MetricSpec = lighthouse(
    "lighthouse_rate_limited_total",
    "Requests refused by the rate limiter, by action class",
    Counter,
    ACTION,
    &[],
);
/// `lighthouse_messages_total`
pub const MESSAGES: MetricSpec = lighthouse(
    "lighthouse_messages_total",
    "Messages sent through the messages API",
    Counter,
    &[],
    &[],
);
/// `lighthouse_event_store_appends_total`
pub const STORE_APPENDS: MetricSpec = lighthouse(
    "lighthouse_event_store_appends_total",
    "Events appended to the event store",
    Counter,
    &[],
    &[],
);
/// `lighthouse_event_store_append_duration_seconds`
pub const STORE_APPEND_DURATION: MetricSpec = lighthouse(
    "lighthouse_event_store_append_duration_seconds",
    "Time of one append call (one atomic batch) until it was acknowledged, in seconds",
    Histogram,
    &[],
    APPEND_BUCKETS,
);
/// `lighthouse_event_store_commit_duration_seconds`
pub const STORE_COMMIT_DURATION: MetricSpec = lighthouse(
    "lighthouse_event_store_commit_duration_seconds",
    "Time the store's writer took to commit one group of appends (write, sync in durable mode, index), in seconds",
    Histogram,
    &[],
    APPEND_BUCKETS,
);
/// `lighthouse_event_store_head_seq`
pub const STORE_HEAD_SEQ: MetricSpec = lighthouse(
    "lighthouse_event_store_head_seq",
    "Sequence number of the last event in the store (0 when empty)",
    Gauge,
    &[],
    &[],
);
/// `lighthouse_event_store_size_bytes`
pub const STORE_SIZE: MetricSpec = lighthouse(
    "lighthouse_event_store_size_bytes",
    "Size of the event store on disk, in bytes",
    Gauge,
    &[],
    &[],
);
/// `lighthouse_flag_evaluations_total{flag,result}`
pub const FLAG_EVALUATIONS: MetricSpec = lighthouse(
    "lighthouse_flag_evaluations_total",
    "Feature flag evaluations, by flag key and result",
    Counter,
    FLAG_RESULT,
    &[],
);
/// `lighthouse_stream_connections`
pub const STREAM_CONNECTIONS: MetricSpec = lighthouse(
    "lighthouse_stream_connections",
    "Push streams (server-sent events) currently open",
    Gauge,
    &[],
    &[],
);
/// `lighthouse_streams_stalled_total`
pub const STREAMS_STALLED: MetricSpec = lighthouse(
    "lighthouse_streams_stalled_total",
    "Streamed responses ended because their client took nothing for the stall timeout",
    Counter,
    &[],
    &[],
);
/// `lighthouse_metrics_label_values_folded_total{label}`
pub const LABEL_VALUES_FOLDED: MetricSpec = lighthouse(
    "lighthouse_metrics_label_values_folded_total",
    "Recordings whose label value was replaced by _other, because it was invalid or its label had reached its cardinality cap",
    Counter,
    FOLDED_LABEL,
    &[],
);

/// `process_cpu_seconds_total`
pub const PROCESS_CPU: MetricSpec = process(
    "process_cpu_seconds_total",
    "Total user and system CPU time spent, in seconds",
    Counter,
);
/// `process_resident_memory_bytes`
pub const PROCESS_RESIDENT_MEMORY: MetricSpec = process(
    "process_resident_memory_bytes",
    "Resident memory size, in bytes",
    Gauge,
);
/// `process_virtual_memory_bytes`
pub const PROCESS_VIRTUAL_MEMORY: MetricSpec = process(
    "process_virtual_memory_bytes",
    "Virtual memory size, in bytes",
    Gauge,
);
/// `process_open_fds`
pub const PROCESS_OPEN_FDS: MetricSpec =
    process("process_open_fds", "Open file descriptors", Gauge);
/// `process_max_fds`
pub const PROCESS_MAX_FDS: MetricSpec = process(
    "process_max_fds",
    "Soft limit on open file descriptors",
    Gauge,
);
/// `process_start_time_seconds`
pub const PROCESS_START_TIME: MetricSpec = process(
    "process_start_time_seconds",
    "Start time of the process since the Unix epoch, in seconds",
    Gauge,
);
/// `process_threads`
pub const PROCESS_THREADS: MetricSpec = process(
    "process_threads",
    "Operating system threads of the process",
    Gauge,
);

/// Every metric, in exposition order.
pub const CATALOGUE: &[MetricSpec] = &[
    ELICITATIONS_CREATED,
    ELICITATIONS,
    ELICITATION_DURATION,
    ELICITATION_DELIVERY,
    ELICITATIONS_ACTIVE,
    HTTP_REQUESTS,
    HTTP_REQUEST_DURATION,
    SECURITY_VIOLATIONS,
    RATE_LIMITED,
    MESSAGES,
    STORE_APPENDS,
    STORE_APPEND_DURATION,
    STORE_COMMIT_DURATION,
    STORE_HEAD_SEQ,
    STORE_SIZE,
    FLAG_EVALUATIONS,
    STREAM_CONNECTIONS,
    STREAMS_STALLED,
    LABEL_VALUES_FOLDED,
    PROCESS_CPU,
    PROCESS_RESIDENT_MEMORY,
    PROCESS_VIRTUAL_MEMORY,
    PROCESS_OPEN_FDS,
    PROCESS_MAX_FDS,
    PROCESS_START_TIME,
    PROCESS_THREADS,
];

/// The catalogue entry named `name` (the exposed name).
pub fn find(name: &str) -> Option<&'static MetricSpec> {
    CATALOGUE.iter().find(|m| m.name == name)
}

/// The catalogue as a Markdown table (name, type, labels with their values,
/// buckets, help): docs/METRICS.md embeds it, and a test keeps the two equal.
pub fn markdown_table() -> String {
    use crate::labels::LabelCaps;
    let mut out =
        String::from("| metric | type | labels | buckets (s) | help |\n|---|---|---|---|---|\n");
    for m in CATALOGUE {
        let labels: Vec<String> = m
            .labels
            .iter()
            .map(|l| match l.values {
                LabelValues::Fixed(values) => format!("`{}` ∈ {{{}}}", l.name, values.join(", ")),
                LabelValues::FirstUse(cap) => {
                    let (what, default) = match cap {
                        CappedLabel::Route => ("route template", LabelCaps::DEFAULT_ROUTES),
                        CappedLabel::Status => ("status code", LabelCaps::DEFAULT_STATUSES),
                        CappedLabel::Flag => ("flag key", LabelCaps::DEFAULT_FLAGS),
                    };
                    format!("`{}`: {what}, first use, cap {default}", l.name)
                }
            })
            .collect();
        let buckets: Vec<String> = m.buckets.iter().map(|b| b.to_string()).collect();
        let origin = match m.origin {
            Origin::Lighthouse => "",
            Origin::Process => " (from /proc, Linux)",
        };
        out.push_str(&format!(
            "| `{}` | {} | {} | {} | {}{} |\n",
            m.name,
            m.metric_type.as_str(),
            if labels.is_empty() {
                "—".to_string()
            } else {
                labels.join("; ")
            },
            if buckets.is_empty() {
                "—".to_string()
            } else {
                buckets.join(", ")
            },
            m.help,
            origin
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn names_are_unique_and_well_formed() {
        let mut seen = HashSet::new();
        for m in CATALOGUE {
            assert!(seen.insert(m.name), "duplicate {}", m.name);
            let prefix_ok = match m.origin {
                Origin::Lighthouse => m.name.starts_with("lighthouse_"),
                Origin::Process => m.name.starts_with("process_"),
            };
            assert!(prefix_ok, "{} has the wrong prefix", m.name);
            assert!(
                m.name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "{}",
                m.name
            );
            assert_eq!(
                m.metric_type == MetricType::Counter,
                m.name.ends_with("_total"),
                "{}: counters and only counters end in _total",
                m.name
            );
            assert!(!m.help.is_empty() && !m.help.ends_with('.'), "{}", m.name);
        }
    }

    #[test]
    fn request_latencies_have_a_bound_at_the_deploy_gates_default_limit() {
        // OPERATIONS.md: `--max-p99` defaults to 300 ms for both of these.
        for m in [&HTTP_REQUEST_DURATION, &ELICITATION_DELIVERY] {
            assert!(m.buckets.contains(&0.3), "{}", m.name);
        }
    }

    #[test]
    fn histograms_have_ascending_finite_buckets_and_others_none() {
        for m in CATALOGUE {
            if m.metric_type == MetricType::Histogram {
                assert!(m.name.ends_with("_seconds"), "{}", m.name);
                assert!(!m.buckets.is_empty(), "{}", m.name);
                assert!(m.buckets.windows(2).all(|w| w[0] < w[1]), "{}", m.name);
                assert!(m.buckets.iter().all(|b| b.is_finite() && *b > 0.0));
            } else {
                assert!(m.buckets.is_empty(), "{}", m.name);
            }
        }
    }

    #[test]
    fn protocol_section_11_metrics_are_all_catalogued_with_their_labels() {
        let required: &[(&str, &[&str])] = &[
            ("lighthouse_elicitations_total", &["outcome"]),
            ("lighthouse_elicitation_duration_seconds", &[]),
            ("lighthouse_elicitations_active", &[]),
            ("lighthouse_http_requests_total", &["route", "status"]),
            ("lighthouse_http_request_duration_seconds", &["route"]),
            ("lighthouse_security_violations_total", &["kind"]),
            ("lighthouse_rate_limited_total", &["action"]),
            ("lighthouse_messages_total", &[]),
            ("lighthouse_event_store_appends_total", &[]),
            ("lighthouse_event_store_append_duration_seconds", &[]),
            ("lighthouse_event_store_head_seq", &[]),
            ("lighthouse_flag_evaluations_total", &["flag", "result"]),
            ("lighthouse_stream_connections", &[]),
            ("process_resident_memory_bytes", &[]),
            ("process_cpu_seconds_total", &[]),
            ("process_open_fds", &[]),
            ("process_start_time_seconds", &[]),
        ];
        for (name, labels) in required {
            let m = find(name).unwrap_or_else(|| panic!("{name} missing"));
            assert_eq!(m.label_names().collect::<Vec<_>>(), *labels, "{name}");
        }
        assert_eq!(
            find("lighthouse_elicitations_total").map(|m| m.labels[0].values),
            Some(LabelValues::Fixed(&[
                "accepted",
                "declined",
                "cancelled",
                "expired"
            ]))
        );
        assert_eq!(
            find("lighthouse_security_violations_total").map(|m| m.labels[0].values),
            Some(LabelValues::Fixed(&[
                "unauthenticated",
                "stale_request",
                "bad_signature",
                "replayed_request",
                "forbidden"
            ]))
        );
        assert_eq!(
            find("lighthouse_rate_limited_total").map(|m| m.labels[0].values),
            Some(LabelValues::Fixed(&[
                "elicit", "respond", "write", "read", "session"
            ]))
        );
    }

    #[test]
    fn no_label_could_carry_an_agent_id_or_a_raw_path() {
        for m in CATALOGUE {
            for l in m.labels {
                assert!(
                    !matches!(l.name, "agent" | "agent_id" | "path" | "from" | "to" | "by"),
                    "{}: {}",
                    m.name,
                    l.name
                );
            }
        }
    }
}
