//! Micro-benchmarks of the hot paths: recording a sample, recording an HTTP
//! request (label lookup included), rendering the catalogue with realistic
//! label sets, and answering `/v1/ops/stats` over the longest window.
//!
//! `cargo bench -p lighthouse-metrics --bench recording`

use criterion::{Criterion, criterion_group, criterion_main};
use lighthouse_metrics::{
    FlagResult, LatencyWindow, ManualTimeSource, Metrics, MetricsConfig, Outcome, WindowConfig,
};
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

/// The API's route templates (PROTOCOL.md), as the HTTP layer passes them.
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
    "/v1/agents/{id}",
    "/v1/agents/{id}/rotate",
    "/v1/agents/me",
    "/v1/sessions",
    "/v1/sessions/current",
    "/health/live",
    "/health/ready",
    "/metrics",
    "/mcp",
    "_unmatched",
];

const STATUSES: &[u16] = &[200, 201, 204, 400, 401, 403, 404, 409, 422, 429, 500, 503];

/// Every route with every status, 50 flags, every fixed-label value.
fn populated() -> Metrics {
    let m = Metrics::new(MetricsConfig::new()).expect("default config is valid");
    for route in ROUTES {
        for status in STATUSES {
            m.http_request(route, *status, Duration::from_micros(400));
        }
    }
    for i in 0..50 {
        let flag = format!("flag-{i}");
        m.flag_evaluation(&flag, FlagResult::On);
    }
    for o in Outcome::ALL {
        m.elicitation_resolved(*o, Duration::from_millis(30));
    }
    m
}

fn recording(c: &mut Criterion) {
    let m = Metrics::new(MetricsConfig::new()).expect("default config is valid");
    c.bench_function("metrics/elicitation_delivered (histogram + window)", |b| {
        b.iter(|| m.elicitation_delivered(black_box(Duration::from_micros(730))))
    });
    c.bench_function("metrics/store_append (counter + histogram + window)", |b| {
        b.iter(|| m.store_append(black_box(4), black_box(Duration::from_micros(180))))
    });
    let pm = populated();
    c.bench_function("metrics/http_request (route+status lookup)", |b| {
        b.iter(|| {
            pm.http_request(
                black_box("/v1/elicitations/{id}/respond"),
                black_box(200),
                black_box(Duration::from_micros(850)),
            )
        })
    });
    c.bench_function("metrics/flag_evaluation", |b| {
        b.iter(|| pm.flag_evaluation(black_box("flag-17"), FlagResult::On))
    });
    let w = LatencyWindow::new(WindowConfig::default()).expect("default config is valid");
    let mut now_ms = 0u64;
    c.bench_function("window/record_us (time given)", |b| {
        b.iter(|| {
            now_ms += 1;
            w.record_us(black_box(now_ms / 4), black_box(now_ms % 5_000));
        })
    });
}

fn rendering(c: &mut Criterion) {
    let m = populated();
    let mut buf = String::with_capacity(256 * 1024);
    c.bench_function("metrics/render (28 routes x 12 statuses, 50 flags)", |b| {
        b.iter(|| {
            buf.clear();
            m.render_into(&mut buf).expect("render");
            black_box(buf.len())
        })
    });
}

fn stats(c: &mut Criterion) {
    let time = ManualTimeSource::new(0);
    let m = Metrics::new(
        MetricsConfig::new()
            .time_source(Arc::new(time.clone()))
            .process_metrics(false),
    )
    .expect("default config is valid");
    // 900 seconds, each with 500 requests spread over a realistic range.
    for _ in 0..900 {
        for i in 0..500u64 {
            m.http_request(
                "/v1/events",
                200,
                Duration::from_micros(200 + (i * 7919) % 20_000),
            );
        }
        time.advance(Duration::from_secs(1));
    }
    c.bench_function("metrics/stats(900) over 450k samples", |b| {
        b.iter(|| black_box(m.stats(900).expect("stats")))
    });
}

criterion_group!(benches, recording, rendering, stats);
criterion_main!(benches);
