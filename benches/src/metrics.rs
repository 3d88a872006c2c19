//! `lighthouse-bench metrics`: the cost of recording and exposing metrics.
//!
//! Each scenario times `--samples` batches of operations and prints the median
//! (and range) of the per-operation cost over the batches, with the issue's
//! target where there is one: recording a histogram sample at most 50 ns,
//! rendering the whole catalogue with realistic label sets at most 1 ms.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lighthouse_metrics::{
    FlagResult, LatencyWindow, ManualTimeSource, Metrics, MetricsConfig, Outcome, WindowConfig,
};
use serde_json::{Map, Value, json};

use crate::report::emit;

/// Options of the metrics family.
#[derive(clap::Args)]
pub struct Args {
    /// all, record, http, flag, window, render, stats.
    #[arg(long, default_value = "all")]
    scenario: String,
    /// Timed batches per scenario; the median batch is reported.
    #[arg(long, default_value_t = 9)]
    samples: usize,
    /// Operations per batch for the recording scenarios.
    #[arg(long, default_value_t = 1_000_000)]
    iters: u64,
    /// Renders per batch.
    #[arg(long, default_value_t = 200)]
    render_iters: u64,
}

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
const FLAGS: usize = 50;

/// Runs the chosen scenario (or all of them).
pub fn run(a: Args) -> Result<(), String> {
    if a.samples == 0 || a.iters == 0 || a.render_iters == 0 {
        return Err("--samples, --iters and --render-iters must be at least 1".into());
    }
    let all = a.scenario == "all";
    let mut ran = false;
    for (name, f) in [
        ("record", record as fn(&Args) -> Result<(), String>),
        ("http", http),
        ("flag", flag),
        ("window", window),
        ("render", render),
        ("stats", stats),
    ] {
        if all || a.scenario == name {
            f(&a)?;
            ran = true;
        }
    }
    if !ran {
        return Err(format!("unknown scenario {}", a.scenario));
    }
    Ok(())
}

fn new_metrics() -> Result<Metrics, String> {
    Metrics::new(MetricsConfig::new()).map_err(|e| e.to_string())
}

/// Every route with every status, 50 flags with both results, every outcome.
fn populated() -> Result<Metrics, String> {
    let m = new_metrics()?;
    for route in ROUTES {
        for status in STATUSES {
            m.http_request(route, *status, Duration::from_micros(400));
        }
    }
    for i in 0..FLAGS {
        let flag = format!("flag-{i}");
        m.flag_evaluation(&flag, FlagResult::On);
        m.flag_evaluation(&flag, FlagResult::Off);
    }
    for o in Outcome::ALL {
        m.elicitation_resolved(*o, Duration::from_millis(30));
    }
    Ok(m)
}

/// Times `samples` batches of `iters` calls of `op`; nanoseconds per call.
fn per_op_ns(samples: usize, iters: u64, mut op: impl FnMut(u64)) -> Vec<f64> {
    // One untimed batch warms caches and lazily created series.
    for i in 0..iters.min(10_000) {
        op(i);
    }
    (0..samples)
        .map(|_| {
            let start = Instant::now();
            for i in 0..iters {
                op(i);
            }
            start.elapsed().as_nanos() as f64 / iters as f64
        })
        .collect()
}

fn median(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    let mid = v[v.len() / 2];
    (mid, v[0], v[v.len() - 1])
}

fn round2(x: f64) -> Value {
    json!((x * 100.0).round() / 100.0)
}

fn report(bench: &str, iters: u64, ns: Vec<f64>, target_ns: Option<f64>) -> Map<String, Value> {
    let samples = ns.len();
    let (mid, lo, hi) = median(ns);
    let mut out = Map::new();
    out.insert("bench".into(), bench.into());
    out.insert("samples".into(), samples.into());
    out.insert("ops_per_sample".into(), iters.into());
    out.insert("median_ns_per_op".into(), round2(mid));
    out.insert("min_ns_per_op".into(), round2(lo));
    out.insert("max_ns_per_op".into(), round2(hi));
    if let Some(t) = target_ns {
        out.insert("target_ns_per_op".into(), round2(t));
        out.insert("meets_target".into(), (mid <= t).into());
    }
    out
}

/// A histogram sample through the public API: `elicitation_delivered` observes
/// the Prometheus histogram and records into the windowed HDR tracker, with
/// the real time source.
fn record(a: &Args) -> Result<(), String> {
    let m = new_metrics()?;
    let ns = per_op_ns(a.samples, a.iters, |i| {
        m.elicitation_delivered(black_box(Duration::from_micros(200 + i % 4096)))
    });
    emit(report(
        "metrics.record_histogram_sample",
        a.iters,
        ns,
        Some(50.0),
    ));
    Ok(())
}

/// An API request: route and status label lookup, counter, histogram, windows.
fn http(a: &Args) -> Result<(), String> {
    let m = populated()?;
    let ns = per_op_ns(a.samples, a.iters, |i| {
        let route = ROUTES[(i % ROUTES.len() as u64) as usize];
        let status = STATUSES[(i % STATUSES.len() as u64) as usize];
        m.http_request(
            black_box(route),
            black_box(status),
            Duration::from_micros(i % 5000),
        )
    });
    emit(report("metrics.http_request", a.iters, ns, None));
    Ok(())
}

/// A flag evaluation count (flag label lookup plus counter).
fn flag(a: &Args) -> Result<(), String> {
    let m = populated()?;
    let flags: Vec<String> = (0..FLAGS).map(|i| format!("flag-{i}")).collect();
    let ns = per_op_ns(a.samples, a.iters, |i| {
        m.flag_evaluation(
            black_box(&flags[(i % FLAGS as u64) as usize]),
            FlagResult::On,
        )
    });
    emit(report("metrics.flag_evaluation", a.iters, ns, None));
    Ok(())
}

/// The windowed tracker alone, time given by the caller (a new second every
/// 1000 samples, so rotations are included).
fn window(a: &Args) -> Result<(), String> {
    let w = LatencyWindow::new(WindowConfig::default()).map_err(|e| e.to_string())?;
    let mut t = 0u64;
    let ns = per_op_ns(a.samples, a.iters, |i| {
        t += 1;
        w.record_us(black_box(t), black_box(100 + i % 20_000));
    });
    emit(report("metrics.window_record", a.iters, ns, Some(50.0)));
    Ok(())
}

/// The whole catalogue with realistic label sets: 28 routes × 12 statuses,
/// 28 route histograms, 50 flags × 2 results, process metrics.
fn render(a: &Args) -> Result<(), String> {
    let m = populated()?;
    let mut buf = String::with_capacity(256 * 1024);
    m.render_into(&mut buf).map_err(|e| e.to_string())?;
    let bytes = buf.len();
    let series = buf.lines().filter(|l| !l.starts_with('#')).count();
    let mut failed = None;
    let ns = per_op_ns(a.samples, a.render_iters, |_| {
        buf.clear();
        if let Err(e) = m.render_into(&mut buf) {
            failed = Some(e.to_string());
        }
        black_box(buf.len());
    });
    if let Some(e) = failed {
        return Err(e);
    }
    let mut out = report(
        "metrics.render_catalogue",
        a.render_iters,
        ns,
        Some(1_000_000.0),
    );
    out.insert("bytes".into(), bytes.into());
    out.insert("series".into(), series.into());
    emit(out);
    Ok(())
}

/// `stats(900)` over 900 seconds of 500 requests each (the window holds what
/// it holds; the count reported is read back, not assumed).
fn stats(a: &Args) -> Result<(), String> {
    let time = ManualTimeSource::new(0);
    let m = Metrics::new(
        MetricsConfig::new()
            .time_source(Arc::new(time.clone()))
            .process_metrics(false),
    )
    .map_err(|e| e.to_string())?;
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
    let iters = 20;
    let mut failed = None;
    let ns = per_op_ns(a.samples, iters, |_| {
        if let Err(e) = m.stats(900).map(black_box) {
            failed = Some(e.to_string());
        }
    });
    if let Some(e) = failed {
        return Err(e);
    }
    // What the window holds, as the metrics say (the oldest second recorded
    // has left a 900 s window by the time the last one is recorded).
    let in_window = m.stats(900).map_err(|e| e.to_string())?.http.requests;
    let mut out = report("metrics.stats_900s", iters, ns, None);
    out.insert("samples_in_window".into(), in_window.into());
    emit(out);
    Ok(())
}
