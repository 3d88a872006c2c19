//! The exposition: built from the catalogue, complete from start, bounded,
//! and accepted by `promtool check metrics`.
//!
//! The promtool test needs `promtool` (Debian package `prometheus`) on PATH.
//! Without it the test is skipped with a message (the other tests here parse
//! the exposition themselves), unless `LIGHTHOUSE_REQUIRE_PROMTOOL=1` is set,
//! as `.ci/run` does after installing it: then it fails.

use lighthouse_metrics::catalogue::{CATALOGUE, CappedLabel, LabelValues, MetricType, Origin};
use lighthouse_metrics::{
    FlagResult, LabelCaps, ManualTimeSource, Metrics, MetricsConfig, OVERFLOW_LABEL_VALUE, Outcome,
    RateAction, UNMATCHED_ROUTE, ViolationKind, is_valid_flag_key, is_valid_route,
};
use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

/// `# TYPE` lines: family name → type.
fn types(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| {
            let (name, t) = l.split_once(' ').expect("TYPE line has a type");
            (name.to_string(), t.to_string())
        })
        .collect()
}

/// Sample lines: full series text (name and labels) → value.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').expect("sample has a value");
            (series.to_string(), value.parse().expect("numeric value"))
        })
        .collect()
}

fn metrics() -> (Metrics, ManualTimeSource) {
    let time = ManualTimeSource::new(1_000_000);
    let m = Metrics::new(MetricsConfig::new().time_source(Arc::new(time.clone()))).unwrap();
    (m, time)
}

/// The route templates of PROTOCOL.md, as the HTTP layer would pass them.
const ROUTES: &[&str] = &[
    "/v1/elicitations",
    "/v1/elicitations/{id}",
    "/v1/elicitations/{id}/respond",
    "/v1/elicitations/{id}/cancel",
    "/v1/stream",
    "/v1/messages",
    "/v1/events",
    "/v1/events/stream",
    "/v1/flags",
    "/v1/flags/{key}",
    "/v1/flags/{key}/kill",
    "/v1/flags/{key}/unkill",
    "/v1/flags/{key}/history",
    "/v1/flags/{key}/evaluate",
    "/v1/ops/stats",
    "/v1/ops/drain",
    "/v1/ops/verify",
    "/v1/agents",
    "/v1/agents/{id}/rotate",
    "/v1/agents/{id}",
    "/v1/agents/me",
    "/v1/sessions",
    "/v1/sessions/current",
    "/health/live",
    "/health/ready",
    "/metrics",
    "/mcp",
    UNMATCHED_ROUTE,
];

/// Records a bit of everything, with realistic label sets.
fn populate(m: &Metrics) {
    for (i, route) in ROUTES.iter().enumerate() {
        for status in [200, 201, 400, 401, 404, 409, 422, 429, 500, 503] {
            if !(i + status as usize).is_multiple_of(3) {
                m.http_request(route, status, Duration::from_micros(300 + 97 * i as u64));
            }
        }
    }
    for (i, o) in Outcome::ALL.iter().enumerate() {
        m.elicitation_created();
        m.elicitation_resolved(*o, Duration::from_millis(40 * (i as u64 + 1)));
    }
    m.elicitation_delivered(Duration::from_micros(700));
    m.set_active_elicitations(12);
    m.security_violation(ViolationKind::BadSignature);
    m.rate_limited(RateAction::Elicit);
    m.message_sent();
    m.store_append(3, Duration::from_micros(180));
    m.set_head_seq(18_342);
    m.set_store_size_bytes(4 << 20);
    for f in ["elicitation_enabled", "new_ui", "fast-path.v2"] {
        m.flag_evaluation(f, FlagResult::On);
        m.flag_evaluation(f, FlagResult::Off);
    }
    let _stream = m.stream_opened();
}

#[test]
fn a_fresh_exposition_lists_every_catalogue_metric_and_nothing_else() {
    let (m, _) = metrics();
    let text = m.render().unwrap();
    let listed = types(&text);
    let expected: BTreeMap<String, String> = CATALOGUE
        .iter()
        .filter(|s| s.origin == Origin::Lighthouse || cfg!(target_os = "linux"))
        .map(|s| (s.name.to_string(), s.metric_type.as_str().to_string()))
        .collect();
    assert_eq!(listed, expected, "{text}");
    for spec in CATALOGUE {
        assert!(
            text.contains(&format!("# HELP {} {}.\n", spec.name, spec.help)),
            "{} help",
            spec.name
        );
    }
}

#[test]
fn fixed_label_counters_are_present_at_zero_from_start() {
    let (m, _) = metrics();
    let s = samples(&m.render().unwrap());
    let mut checked = 0;
    for spec in CATALOGUE {
        match spec.labels {
            [label] => {
                if let LabelValues::Fixed(values) = label.values {
                    for v in values {
                        let series = format!("{}{{{}=\"{v}\"}}", spec.name, label.name);
                        assert_eq!(s.get(&series), Some(&0.0), "{series}");
                        checked += 1;
                    }
                }
            }
            [] if spec.origin == Origin::Lighthouse
                && spec.metric_type != MetricType::Histogram =>
            {
                assert_eq!(s.get(spec.name), Some(&0.0), "{}", spec.name);
            }
            _ => {}
        }
    }
    // outcome 4 + kind 5 + action 5 + folded label 3.
    assert_eq!(checked, 17);
    // Unlabelled histograms exist with every bucket at zero.
    assert_eq!(
        s.get("lighthouse_event_store_append_duration_seconds_bucket{le=\"+Inf\"}"),
        Some(&0.0)
    );
    // First-use families have no series yet.
    assert!(
        !s.keys()
            .any(|k| k.starts_with("lighthouse_http_requests_total{"))
    );
    assert!(
        !s.keys()
            .any(|k| k.starts_with("lighthouse_flag_evaluations_total{"))
    );
}

#[test]
fn recorded_values_appear_with_their_labels_and_catalogue_buckets() {
    let (m, _) = metrics();
    populate(&m);
    let text = m.render().unwrap();
    let s = samples(&text);
    let get = |k: &str| {
        s.get(k)
            .copied()
            .unwrap_or_else(|| panic!("{k} missing in\n{text}"))
    };
    assert_eq!(get("lighthouse_elicitations_created_total"), 4.0);
    assert_eq!(
        get("lighthouse_elicitations_total{outcome=\"declined\"}"),
        1.0
    );
    assert_eq!(get("lighthouse_elicitation_duration_seconds_count"), 4.0);
    assert_eq!(
        get("lighthouse_elicitation_duration_seconds_bucket{le=\"0.05\"}"),
        1.0
    );
    assert_eq!(
        get("lighthouse_elicitation_duration_seconds_bucket{le=\"0.25\"}"),
        4.0
    );
    assert_eq!(get("lighthouse_elicitations_active"), 12.0);
    assert_eq!(
        get(
            "lighthouse_http_requests_total{route=\"/v1/elicitations/{id}/respond\",status=\"201\"}"
        ),
        1.0
    );
    assert_eq!(
        get("lighthouse_security_violations_total{kind=\"bad_signature\"}"),
        1.0
    );
    assert_eq!(get("lighthouse_rate_limited_total{action=\"elicit\"}"), 1.0);
    assert_eq!(get("lighthouse_event_store_appends_total"), 3.0);
    assert_eq!(get("lighthouse_event_store_head_seq"), 18_342.0);
    assert_eq!(
        get("lighthouse_flag_evaluations_total{flag=\"new_ui\",result=\"off\"}"),
        1.0
    );
    assert_eq!(get("lighthouse_stream_connections"), 0.0, "guard dropped");
    // Each route histogram carries exactly the catalogue buckets plus +Inf.
    let spec =
        lighthouse_metrics::catalogue::find("lighthouse_http_request_duration_seconds").unwrap();
    let buckets = s
        .keys()
        .filter(|k| {
            k.starts_with("lighthouse_http_request_duration_seconds_bucket{route=\"/v1/events\",")
        })
        .count();
    assert_eq!(buckets, spec.buckets.len() + 1);
    if cfg!(target_os = "linux") {
        assert!(get("process_resident_memory_bytes") > 1e6);
        assert!(get("process_open_fds") >= 3.0);
    }
}

/// Splits `name{a="x",b="y"}` into the name and its labels (the values here
/// never contain quotes or commas).
fn parse_series(series: &str) -> (&str, Vec<(&str, &str)>) {
    match series.split_once('{') {
        None => (series, Vec::new()),
        Some((name, rest)) => {
            let body = rest.strip_suffix('}').expect("closing brace");
            let labels = body
                .split("\",")
                .map(|kv| {
                    let (k, v) = kv.split_once("=\"").expect("label=value");
                    (k, v.trim_end_matches('"'))
                })
                .collect();
            (name, labels)
        }
    }
}

#[test]
fn every_series_uses_only_catalogue_labels_and_allowed_values() {
    let (m, _) = metrics();
    populate(&m);
    m.http_request("not a route", 999, Duration::from_micros(5));
    m.flag_evaluation("Not A Flag", FlagResult::On);
    let text = m.render().unwrap();
    let mut checked = 0;
    for series in samples(&text).keys() {
        let (name, labels) = parse_series(series);
        let spec = CATALOGUE
            .iter()
            .find(|s| {
                s.name == name
                    || (s.metric_type == MetricType::Histogram
                        && ["_bucket", "_sum", "_count"]
                            .iter()
                            .any(|suffix| name.strip_suffix(suffix) == Some(s.name)))
            })
            .unwrap_or_else(|| panic!("{series} is not in the catalogue"));
        for (key, value) in labels {
            if key == "le" && name.ends_with("_bucket") {
                continue;
            }
            let label = spec
                .labels
                .iter()
                .find(|l| l.name == key)
                .unwrap_or_else(|| panic!("{series}: label {key} not in the catalogue"));
            let allowed = match label.values {
                LabelValues::Fixed(values) => values.contains(&value),
                LabelValues::FirstUse(cap) => {
                    value == OVERFLOW_LABEL_VALUE
                        || match cap {
                            CappedLabel::Route => is_valid_route(value),
                            CappedLabel::Status => {
                                value.parse().is_ok_and(lighthouse_metrics::is_valid_status)
                            }
                            CappedLabel::Flag => is_valid_flag_key(value),
                        }
                }
            };
            assert!(allowed, "{series}: {key}={value} not allowed");
            checked += 1;
        }
    }
    assert!(checked > 300, "only {checked} labels checked");
    // The invalid values were folded, not exposed.
    assert!(
        !text.contains("not a route")
            && !text.contains("status=\"999\"")
            && !text.contains("Not A Flag")
    );
    assert!(text.contains(&format!(
        "lighthouse_http_requests_total{{route=\"{OVERFLOW_LABEL_VALUE}\",status=\"{OVERFLOW_LABEL_VALUE}\"}} 1\n"
    )));
}

#[test]
fn route_status_and_flag_cardinality_is_capped_and_folds_are_counted() {
    let time = ManualTimeSource::new(0);
    let caps = LabelCaps {
        routes: 5,
        statuses: 3,
        flags: 4,
    };
    let m = Metrics::new(MetricsConfig::new().caps(caps).time_source(Arc::new(time))).unwrap();
    for i in 0..500u16 {
        m.http_request(&format!("/v1/r{i}"), 200 + i % 7, Duration::from_micros(10));
        m.flag_evaluation(&format!("flag-{i}"), FlagResult::On);
    }
    m.http_request("not a template", 200, Duration::from_micros(10));
    m.http_request("/v1/r0", 1000, Duration::from_micros(10));
    m.flag_evaluation("Not-A-Key", FlagResult::Off);
    assert_eq!(m.label_values_in_use(), (5, 3, 4));
    let s = samples(&m.render().unwrap());
    let series = |prefix: &str| s.keys().filter(|k| k.starts_with(prefix)).count();
    // (5 routes + _other) × (3 statuses + _other) at most.
    assert!(series("lighthouse_http_requests_total{") <= 6 * 4);
    assert_eq!(series("lighthouse_http_request_duration_seconds_count{"), 6);
    assert_eq!(series("lighthouse_flag_evaluations_total{"), (4 + 1) * 2);
    assert_eq!(
        s[&format!(
            "lighthouse_flag_evaluations_total{{flag=\"{OVERFLOW_LABEL_VALUE}\",result=\"on\"}}"
        )],
        496.0
    );
    assert_eq!(
        s["lighthouse_metrics_label_values_folded_total{label=\"route\"}"],
        496.0
    );
    assert_eq!(
        s["lighthouse_metrics_label_values_folded_total{label=\"flag\"}"],
        497.0
    );
    assert!(s["lighthouse_metrics_label_values_folded_total{label=\"status\"}"] >= 1.0);
    let total: f64 = s
        .iter()
        .filter(|(k, _)| k.starts_with("lighthouse_http_requests_total{"))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(total, 502.0, "no request is lost by folding");
}

#[test]
fn promtool_accepts_a_populated_exposition() {
    let (m, _) = metrics();
    populate(&m);
    let text = m.render().unwrap();
    let required = std::env::var("LIGHTHOUSE_REQUIRE_PROMTOOL").is_ok_and(|v| v == "1");
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {
            eprintln!(
                "promtool not found: this check is skipped (install it with \
                 `apt-get install -y prometheus`; .ci/run does, and requires it)"
            );
            return;
        }
        Err(e) => panic!(
            "promtool is required here (LIGHTHOUSE_REQUIRE_PROMTOOL=1) but cannot run ({e}): \
             install it with `apt-get update && apt-get install -y prometheus`"
        ),
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics refused the exposition:\n{}{}\n---\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn docs_metrics_md_carries_the_generated_catalogue_table() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/METRICS.md");
    let doc = std::fs::read_to_string(path).expect("docs/METRICS.md exists");
    let table = lighthouse_metrics::catalogue::markdown_table();
    assert!(
        doc.contains(&table),
        "docs/METRICS.md is out of date; replace its catalogue table with:\n\n{table}"
    );
}
