//! Windowed percentiles against a sorted-array reference, forgetting, and the
//! `/v1/ops/stats` figures through the `Metrics` handle.

use lighthouse_metrics::{
    Error, LatencyWindow, ManualTimeSource, Metrics, MetricsConfig, Outcome, TimeSource,
    WindowConfig, WindowedCounter,
};
use proptest::prelude::*;
use std::sync::Arc;
use std::time::Duration;

/// Nearest-rank percentile of sorted `v`, the definition HDR histograms use.
fn nearest_rank(sorted: &[u64], q: f64) -> u64 {
    let rank = ((q * sorted.len() as f64).ceil() as usize).max(1);
    sorted[rank - 1]
}

fn latency() -> impl Strategy<Value = u64> {
    prop_oneof![
        0u64..300,
        300u64..100_000,
        100_000u64..60_000_000,
        60_000_000u64..=3_600_000_000,
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn windowed_percentiles_match_a_sorted_reference_within_precision(
        mut samples in prop::collection::vec((0u64..40, latency()), 1..600),
        digits in 1u8..=3,
        window_s in 1u64..=45,
        query_ms_in_second in 0u64..1000,
    ) {
        samples.sort_by_key(|(second, _)| *second);
        let w = LatencyWindow::new(WindowConfig {
            max_window_s: 45,
            significant_digits: digits,
            ..WindowConfig::default()
        }).unwrap();
        for (i, &(second, us)) in samples.iter().enumerate() {
            w.record_us(second * 1000 + (i as u64 % 1000), us);
        }
        let now_s = 40;
        let snap = w.snapshot(now_s * 1000 + query_ms_in_second, window_s).unwrap();
        let mut reference: Vec<u64> = samples
            .iter()
            .filter(|(second, _)| now_s - second < window_s)
            .map(|(_, us)| *us)
            .collect();
        reference.sort_unstable();
        prop_assert_eq!(snap.count, reference.len() as u64);
        if reference.is_empty() {
            prop_assert_eq!(snap.p50_us, None);
            prop_assert_eq!(snap.max_us, None);
        } else {
            prop_assert_eq!(snap.max_us, reference.last().copied());
            let tolerance = 10f64.powi(-i32::from(digits));
            for (q, got) in [(0.50, snap.p50_us), (0.95, snap.p95_us), (0.99, snap.p99_us)] {
                let want = nearest_rank(&reference, q);
                let got = got.unwrap();
                prop_assert!(got >= want, "q{q}: {got} < {want}");
                prop_assert!(
                    (got - want) as f64 <= want as f64 * tolerance,
                    "q{q}: {got} vs {want}, beyond {tolerance}"
                );
            }
        }
    }

    #[test]
    fn windowed_counter_matches_a_reference_sum(
        mut adds in prop::collection::vec((0u64..200, 1u64..1000), 0..300),
        window_s in 1u64..=60,
        now_s in 200u64..260,
    ) {
        adds.sort_by_key(|(second, _)| *second);
        let c = WindowedCounter::new(60).unwrap();
        for &(second, n) in &adds {
            c.add(second * 1000 + 500, n);
        }
        let want: u64 = adds
            .iter()
            .filter(|(second, _)| now_s.saturating_sub(*second) < window_s)
            .map(|(_, n)| n)
            .sum();
        prop_assert_eq!(c.sum(now_s * 1000, window_s).unwrap(), want);
    }
}

fn metrics() -> (Metrics, ManualTimeSource) {
    let time = ManualTimeSource::new(0);
    let m = Metrics::new(
        MetricsConfig::new()
            .time_source(Arc::new(time.clone()))
            .process_metrics(false),
    )
    .unwrap();
    (m, time)
}

#[test]
fn stats_report_what_was_recorded_in_the_window_and_forget_the_rest() {
    let (m, time) = metrics();
    for i in 0..10u64 {
        m.elicitation_created();
        m.http_request("/v1/elicitations", 201, Duration::from_millis(1 + i));
    }
    m.http_request("/v1/ops/stats", 503, Duration::from_millis(2));
    m.elicitation_resolved(Outcome::Accepted, Duration::from_millis(1500));
    m.elicitation_resolved(Outcome::Declined, Duration::from_millis(500));
    m.elicitation_resolved(Outcome::Expired, Duration::from_secs(30));
    m.elicitation_delivered(Duration::from_micros(900));
    m.store_append(4, Duration::from_micros(250));
    m.set_active_elicitations(7);
    m.set_head_seq(42);
    m.set_store_size_bytes(1 << 20);
    let stream = m.stream_opened();

    time.advance(Duration::from_secs(30));
    let s = m.stats(60).unwrap();
    assert_eq!(s.window_s, 60);
    assert_eq!(s.elicitations.created, 10);
    assert_eq!(
        (
            s.elicitations.accepted,
            s.elicitations.declined,
            s.elicitations.expired
        ),
        (1, 1, 1)
    );
    assert_eq!(s.elicitations.cancelled, 0);
    // answer_ms counts accept and decline only, not the expiry.
    assert_eq!(s.elicitations.answer_ms.count, 2);
    assert_eq!(s.elicitations.answer_ms.max, Some(1500.0));
    assert_eq!(s.elicitations.delivery_ms.count, 1);
    assert_eq!(s.http.requests, 11);
    assert_eq!(s.http.errors_5xx, 1);
    assert_eq!(s.http.error_ratio, Some(1.0 / 11.0));
    assert_eq!(s.http.latency_ms.count, 11);
    assert_eq!(s.http.latency_ms.max, Some(10.0));
    let p50 = s.http.latency_ms.p50.unwrap();
    assert!((5.0..=5.05).contains(&p50), "{p50}");
    assert_eq!(s.store.append_ms.count, 1);
    assert_eq!(s.store.head_seq, 42);
    assert_eq!(s.store.size_bytes, 1 << 20);
    assert_eq!(s.active_elicitations, 7);
    assert_eq!(s.connected_streams, 1);

    // A 10 s window no longer sees samples recorded 30 s ago.
    let short = m.stats(10).unwrap();
    assert_eq!(short.http.requests, 0);
    assert_eq!(short.http.error_ratio, None);
    assert_eq!(short.http.latency_ms.p99, None);
    assert_eq!(short.elicitations.created, 0);

    // After the longest window has passed, everything windowed is gone;
    // gauges are "now" figures and stay.
    time.advance(Duration::from_secs(900));
    let later = m.stats(900).unwrap();
    assert_eq!(later.http.requests, 0);
    assert_eq!(later.elicitations.answer_ms.count, 0);
    assert_eq!(later.store.append_ms.count, 0);
    assert_eq!(later.active_elicitations, 7);
    drop(stream);
    assert_eq!(m.stats(1).unwrap().connected_streams, 0);
}

#[test]
fn stats_window_range_is_1_to_the_configured_maximum() {
    let (m, _) = metrics();
    assert!(m.stats(1).is_ok() && m.stats(900).is_ok());
    assert!(matches!(
        m.stats(0),
        Err(Error::WindowOutOfRange {
            requested_s: 0,
            max_s: 900
        })
    ));
    assert!(matches!(
        m.stats(901),
        Err(Error::WindowOutOfRange {
            requested_s: 901,
            ..
        })
    ));
}

#[test]
fn stats_serialise_with_the_protocol_field_names() {
    let (m, _) = metrics();
    m.http_request("/v1/events", 200, Duration::from_micros(1500));
    let v = serde_json::to_value(m.stats(60).unwrap()).unwrap();
    for pointer in [
        "/window_s",
        "/elicitations/created",
        "/elicitations/accepted",
        "/elicitations/declined",
        "/elicitations/cancelled",
        "/elicitations/expired",
        "/elicitations/delivery_ms/count",
        "/elicitations/answer_ms/p95",
        "/http/requests",
        "/http/errors_5xx",
        "/http/error_ratio",
        "/http/latency_ms/p99",
        "/active_elicitations",
        "/connected_streams",
        "/store/head_seq",
        "/store/size_bytes",
        "/store/append_ms/max",
    ] {
        assert!(v.pointer(pointer).is_some(), "{pointer} missing in {v}");
    }
    assert_eq!(
        v.pointer("/http/latency_ms/max"),
        Some(&serde_json::json!(1.5))
    );
    assert_eq!(
        v.pointer("/http/error_ratio"),
        Some(&serde_json::json!(0.0))
    );
}

#[test]
fn concurrent_recording_loses_nothing() {
    let (m, _) = metrics();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let m = m.clone();
            std::thread::spawn(move || {
                for i in 0..5_000u64 {
                    m.http_request("/v1/events", 200, Duration::from_micros(i % 700 + t));
                    m.flag_evaluation("elicitation_enabled", lighthouse_metrics::FlagResult::On);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(m.stats(60).unwrap().http.requests, 20_000);
    let text = m.render().unwrap();
    assert!(
        text.contains(
            "lighthouse_http_requests_total{route=\"/v1/events\",status=\"200\"} 20000\n"
        )
    );
    assert!(text.contains(
        "lighthouse_flag_evaluations_total{flag=\"elicitation_enabled\",result=\"on\"} 20000\n"
    ));
}

#[test]
fn concurrent_recording_across_second_boundaries_loses_no_sample() {
    let w = LatencyWindow::new(WindowConfig {
        max_window_s: 120,
        ..WindowConfig::default()
    })
    .unwrap();
    let time = ManualTimeSource::new(0);
    let per_thread = 50_000u64;
    let running = std::sync::atomic::AtomicUsize::new(3);
    std::thread::scope(|s| {
        let (time_t, running_t) = (time.clone(), &running);
        // Seconds pass while the recorders run (at most 100, inside the window).
        s.spawn(move || {
            for _ in 0..100 {
                if running_t.load(std::sync::atomic::Ordering::SeqCst) == 0 {
                    break;
                }
                time_t.advance(Duration::from_secs(1));
                std::thread::sleep(Duration::from_micros(200));
            }
        });
        for t in 0..3u64 {
            let (w, time, running) = (&w, time.clone(), &running);
            s.spawn(move || {
                for i in 0..per_thread {
                    w.record_us(time.now_ms(), 1 + (i * 31 + t) % 90_000);
                }
                running.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
            });
        }
    });
    let snap = w.snapshot(time.now_ms(), 120).unwrap();
    assert_eq!(snap.count, 3 * per_thread);
    assert_eq!(snap.max_us, Some(90_000));
}

#[test]
fn the_store_head_never_moves_back() {
    // The writer's observer sets each new head as appends land, while a
    // periodic refresh sets the head it read before walking the store's files:
    // a refresh finishing after newer appends passes an older head.
    let (m, _time) = metrics();
    m.set_head_seq(120);
    m.set_head_seq(117);
    assert_eq!(m.stats(60).unwrap().store.head_seq, 120);
    assert!(
        m.render()
            .unwrap()
            .contains("lighthouse_event_store_head_seq 120\n")
    );
    m.set_head_seq(121);
    assert_eq!(m.stats(60).unwrap().store.head_seq, 121);
}
