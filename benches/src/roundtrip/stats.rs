//! What a run records: round-trip latency from the planned send time, delivery
//! latency, dispatch lag, errors by kind, and the run context every task
//! records through.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde_json::{Map, Value};

use super::client::Http;
use crate::report::{latency_histogram, percentiles};

/// Everything recorded about the measured slots (those planned at or after the
/// end of the warm-up).
pub struct Stats {
    /// Planned send time to the requester seeing the answer.
    pub round_trip: Histogram<u64>,
    /// Actual send of the first request to the requester seeing the answer.
    pub from_send: Histogram<u64>,
    /// Actual send of the first request to the target receiving it.
    pub delivery: Histogram<u64>,
    /// How late the dispatcher started each slot.
    pub dispatch_lag: Histogram<u64>,
    /// Failed slots by kind.
    pub errors: BTreeMap<String, u64>,
    /// Stream or poll failures not tied to one slot.
    pub connection_errors: BTreeMap<String, u64>,
    pub dispatched: u64,
    pub late: u64,
    pub completed: u64,
    /// Answers seen inside the measured window, whenever their slot was
    /// planned: the measured throughput.
    pub completed_in_window: u64,
    pub failed: u64,
}

impl Stats {
    fn new() -> Self {
        Stats {
            round_trip: latency_histogram(),
            from_send: latency_histogram(),
            delivery: latency_histogram(),
            dispatch_lag: latency_histogram(),
            errors: BTreeMap::new(),
            connection_errors: BTreeMap::new(),
            dispatched: 0,
            late: 0,
            completed: 0,
            completed_in_window: 0,
            failed: 0,
        }
    }

    /// Measured slots that neither completed nor failed (yet).
    pub fn unfinished(&self) -> u64 {
        self.dispatched.saturating_sub(self.completed + self.failed)
    }

    /// Adds the figures of the run to `out`.
    pub fn report(&self, out: &mut Map<String, Value>, measured_s: f64) {
        out.insert("dispatched".into(), self.dispatched.into());
        out.insert("completed".into(), self.completed.into());
        out.insert("failed".into(), self.failed.into());
        out.insert(
            "achieved_per_s".into(),
            round1(self.completed_in_window as f64 / measured_s).into(),
        );
        out.insert("late_slots".into(), self.late.into());
        percentiles(out, &self.round_trip);
        for (prefix, h) in [
            ("from_send", &self.from_send),
            ("delivery", &self.delivery),
            ("dispatch_lag", &self.dispatch_lag),
        ] {
            let mut m = Map::new();
            percentiles(&mut m, h);
            for (k, v) in m {
                out.insert(format!("{prefix}_{k}"), v);
            }
        }
        out.insert("errors".into(), counts(&self.errors));
        out.insert("connection_errors".into(), counts(&self.connection_errors));
    }
}

fn counts(m: &BTreeMap<String, u64>) -> Value {
    Value::Object(m.iter().map(|(k, v)| (k.clone(), (*v).into())).collect())
}

pub fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Shared by every task of a run.
pub struct Ctx {
    pub http: Http,
    /// Time zero of the schedule.
    pub t0: tokio::time::Instant,
    /// Slots planned before this are warm-up and not recorded (nothing is
    /// until the schedule is fixed).
    measure_from_us: AtomicU64,
    /// The end of the measured window: answers seen in [from, until) are the
    /// throughput.
    measure_until_us: AtomicU64,
    /// A round trip slower than this (from its planned time) is a `timeout`.
    pub timeout: Duration,
    /// A slot dispatched later than this after its planned time is late.
    pub late_us: u64,
    pub stats: Mutex<Stats>,
}

impl Ctx {
    pub fn new(http: Http, timeout: Duration, late_us: u64) -> Self {
        Ctx {
            http,
            t0: tokio::time::Instant::now(),
            measure_from_us: AtomicU64::new(u64::MAX),
            measure_until_us: AtomicU64::new(u64::MAX),
            timeout,
            late_us,
            stats: Mutex::new(Stats::new()),
        }
    }

    /// Microseconds since `t0` (0 before it).
    pub fn now_us(&self) -> u64 {
        micros(tokio::time::Instant::now().saturating_duration_since(self.t0))
    }

    /// Records slots planned at or after `from_us` from now on, and counts
    /// the answers seen from `from_us` until `until_us` as the throughput.
    pub fn measure_window(&self, from_us: u64, until_us: u64) {
        self.measure_until_us.store(until_us, Ordering::Release);
        self.measure_from_us.store(from_us, Ordering::Release);
    }

    fn measured(&self, planned_us: u64) -> bool {
        planned_us >= self.measure_from_us.load(Ordering::Acquire)
    }

    fn with<R>(&self, f: impl FnOnce(&mut Stats) -> R) -> R {
        let mut s = self
            .stats
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut s)
    }

    /// The dispatcher started the slot planned at `planned_us`.
    pub fn dispatched(&self, planned_us: u64) {
        if !self.measured(planned_us) {
            return;
        }
        let lag = self.now_us().saturating_sub(planned_us);
        self.with(|s| {
            s.dispatched += 1;
            s.dispatch_lag.record(lag.max(1)).ok();
            if lag > self.late_us {
                s.late += 1;
            }
        });
    }

    /// The requester saw the answer to the slot planned at `planned_us`, whose
    /// first request was sent at `sent_us`.
    pub fn completed(&self, planned_us: u64, sent_us: u64) {
        let now = self.now_us();
        let from = self.measure_from_us.load(Ordering::Acquire);
        let until = self.measure_until_us.load(Ordering::Acquire);
        if (from..until).contains(&now) {
            self.with(|s| s.completed_in_window += 1);
        }
        if !self.measured(planned_us) {
            return;
        }
        let latency = now.saturating_sub(planned_us);
        if latency > micros(self.timeout) {
            self.failed(planned_us, "timeout");
            return;
        }
        self.with(|s| {
            s.completed += 1;
            s.round_trip.record(latency.max(1)).ok();
            s.from_send.record(now.saturating_sub(sent_us).max(1)).ok();
        });
    }

    /// The target received the request of a slot.
    pub fn delivered(&self, planned_us: u64, sent_us: u64) {
        if !self.measured(planned_us) {
            return;
        }
        let d = self.now_us().saturating_sub(sent_us).max(1);
        self.with(|s| s.delivery.record(d).ok());
    }

    /// The slot planned at `planned_us` failed.
    pub fn failed(&self, planned_us: u64, kind: &str) {
        if !self.measured(planned_us) {
            return;
        }
        // A failed round trip counts in the percentiles at the timeout, so
        // that they describe every measured slot, not only the survivors.
        let at_timeout = micros(self.timeout);
        self.with(|s| {
            s.failed += 1;
            s.round_trip.record(at_timeout).ok();
            *s.errors.entry(kind.to_owned()).or_default() += 1;
        });
    }

    /// A stream or long-poll failed (not tied to one slot).
    pub fn connection_error(&self, kind: &str) {
        self.with(|s| *s.connection_errors.entry(kind.to_owned()).or_default() += 1);
    }

    /// Measured slots still unfinished.
    pub fn unfinished(&self) -> u64 {
        self.with(|s| s.unfinished())
    }

    /// Counts every measured slot still unfinished as failed (`unfinished`):
    /// the run is over and no answer came.
    pub fn close(&self) {
        self.with(|s| {
            let u = s.unfinished();
            if u > 0 {
                s.failed += u;
                s.round_trip.record_n(micros(self.timeout), u).ok();
                *s.errors.entry("unfinished".to_owned()).or_default() += u;
            }
        });
    }
}
