//! `lighthouse-bench host`: how steadily this machine runs a thread that does
//! nothing but sleep.
//!
//! A thread sleeps `--sleep-us` in a loop for `--seconds` and records how much
//! later than asked each sleep returned. On an idle machine the overshoot is the
//! timer slack plus the wake-up latency; a long one means the whole thread (on a
//! virtual machine, often the whole VM) did not run for that long. Every
//! latency percentile measured on the machine is bounded below by these stalls,
//! so run this before trusting a p99 (docs/PERFORMANCE.md, session 6).

use std::time::{Duration, Instant};

use serde_json::Map;

use crate::report::{emit, latency_histogram, percentiles};
use crate::sys::load_average;

/// Options of the host family.
#[derive(clap::Args)]
pub struct Args {
    /// Seconds to probe.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Each sleep asked for, in microseconds.
    #[arg(long, default_value_t = 1_000)]
    sleep_us: u64,
}

/// Runs the stall probe.
pub fn run(a: Args) -> Result<(), String> {
    if a.sleep_us == 0 || a.seconds == 0 {
        return Err("--seconds and --sleep-us must be at least 1".into());
    }
    let load_before = load_average();
    let asked = Duration::from_micros(a.sleep_us);
    let end = Instant::now() + Duration::from_secs(a.seconds);
    let mut over = latency_histogram();
    let (mut over_1ms, mut over_5ms, mut over_20ms, mut sleeps) = (0u64, 0u64, 0u64, 0u64);
    while Instant::now() < end {
        let t = Instant::now();
        std::thread::sleep(asked);
        let late = t.elapsed().saturating_sub(asked);
        let us = u64::try_from(late.as_micros()).unwrap_or(u64::MAX);
        over.saturating_record(us.max(1));
        sleeps += 1;
        over_1ms += u64::from(us > 1_000);
        over_5ms += u64::from(us > 5_000);
        over_20ms += u64::from(us > 20_000);
    }
    let mut out = Map::new();
    out.insert("bench".into(), "host.sleep_overshoot".into());
    out.insert("seconds".into(), a.seconds.into());
    out.insert("sleep_us".into(), a.sleep_us.into());
    out.insert("sleeps".into(), sleeps.into());
    percentiles(&mut out, &over);
    out.insert("over_1ms".into(), over_1ms.into());
    out.insert("over_5ms".into(), over_5ms.into());
    out.insert("over_20ms".into(), over_20ms.into());
    if let Some(l) = load_before {
        out.insert("machine_load_1m_before".into(), l.into());
    }
    emit(out);
    Ok(())
}
