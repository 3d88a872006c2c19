//! The windowed figures of `/v1/ops/stats` (PROTOCOL.md section 9).

use crate::error::Result;
use crate::labels::Outcome;
use crate::window::{LatencySummary, LatencyWindow, WindowConfig, WindowedCounter};
use serde::Serialize;
use std::time::Duration;

/// Everything `GET /v1/ops/stats?window_s=N` reports, measured over the last
/// `window_s` seconds (the counts and latencies) or now (the gauges).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WindowStats {
    /// The window, seconds.
    pub window_s: u64,
    /// Seconds of the window that were measured: less than `window_s` while
    /// the recorder has existed for less than that (after a restart).
    pub covered_s: u64,
    /// Elicitations in the window.
    pub elicitations: ElicitationStats,
    /// API requests in the window.
    pub http: HttpStats,
    /// Elicitations pending now.
    pub active_elicitations: u64,
    /// Push streams open now.
    pub connected_streams: u64,
    /// The event store.
    pub store: StoreStats,
}

/// Elicitation counts and latencies of a window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ElicitationStats {
    /// Created.
    pub created: u64,
    /// Accepted.
    pub accepted: u64,
    /// Declined.
    pub declined: u64,
    /// Cancelled.
    pub cancelled: u64,
    /// Expired.
    pub expired: u64,
    /// From the `requested` event being durable to its push being written to
    /// an open stream of the target.
    pub delivery_ms: LatencySummary,
    /// From creation to accept or decline.
    pub answer_ms: LatencySummary,
}

/// API request figures of a window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HttpStats {
    /// Requests answered.
    pub requests: u64,
    /// Of which answered with a 5xx status.
    pub errors_5xx: u64,
    /// `errors_5xx / requests`; `null` when there were no requests.
    pub error_ratio: Option<f64>,
    /// Time spent on requests, excluding streams and long-poll waits.
    pub latency_ms: LatencySummary,
}

/// Event store figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoreStats {
    /// Last sequence, as last set through [`crate::Metrics::set_head_seq`].
    pub head_seq: u64,
    /// Size on disk, as last set through [`crate::Metrics::set_store_size_bytes`].
    pub size_bytes: u64,
    /// Append latency in the window.
    pub append_ms: LatencySummary,
}

/// Windowed elicitation figures.
#[derive(Debug)]
pub(crate) struct ElicitationWindows {
    created: WindowedCounter,
    outcomes: [WindowedCounter; 4],
    delivery: LatencyWindow,
    answer: LatencyWindow,
}

impl ElicitationWindows {
    pub(crate) fn new(config: WindowConfig) -> Result<Self> {
        let counter = || WindowedCounter::new(config.max_window_s);
        Ok(Self {
            created: counter()?,
            outcomes: [counter()?, counter()?, counter()?, counter()?],
            delivery: LatencyWindow::new(config)?,
            answer: LatencyWindow::new(config)?,
        })
    }

    pub(crate) fn created(&self, now_ms: u64) {
        self.created.add(now_ms, 1);
    }

    pub(crate) fn resolved(&self, now_ms: u64, outcome: Outcome, since_created: Duration) {
        self.outcomes[outcome.index()].add(now_ms, 1);
        if matches!(outcome, Outcome::Accepted | Outcome::Declined) {
            self.answer.record(now_ms, since_created);
        }
    }

    pub(crate) fn delivered(&self, now_ms: u64, latency: Duration) {
        self.delivery.record(now_ms, latency);
    }

    pub(crate) fn stats(&self, now_ms: u64, window_s: u64) -> Result<ElicitationStats> {
        let outcome = |o: Outcome| self.outcomes[o.index()].sum(now_ms, window_s);
        Ok(ElicitationStats {
            created: self.created.sum(now_ms, window_s)?,
            accepted: outcome(Outcome::Accepted)?,
            declined: outcome(Outcome::Declined)?,
            cancelled: outcome(Outcome::Cancelled)?,
            expired: outcome(Outcome::Expired)?,
            delivery_ms: self.delivery.summary(now_ms, window_s)?,
            answer_ms: self.answer.summary(now_ms, window_s)?,
        })
    }
}

/// Windowed HTTP figures. Every request records one latency sample, so the
/// request count of a window is the latency window's sample count.
#[derive(Debug)]
pub(crate) struct HttpWindows {
    errors_5xx: WindowedCounter,
    latency: LatencyWindow,
}

impl HttpWindows {
    pub(crate) fn new(config: WindowConfig) -> Result<Self> {
        Ok(Self {
            errors_5xx: WindowedCounter::new(config.max_window_s)?,
            latency: LatencyWindow::new(config)?,
        })
    }

    pub(crate) fn request(&self, now_ms: u64, status: u16, busy: Duration) {
        if (500..=599).contains(&status) {
            self.errors_5xx.add(now_ms, 1);
        }
        self.latency.record(now_ms, busy);
    }

    pub(crate) fn stats(&self, now_ms: u64, window_s: u64) -> Result<HttpStats> {
        let latency = self.latency.snapshot(now_ms, window_s)?;
        let requests = latency.count;
        // Read after the latencies, so errors never outnumber requests.
        let errors_5xx = self.errors_5xx.sum(now_ms, window_s)?.min(requests);
        Ok(HttpStats {
            requests,
            errors_5xx,
            error_ratio: (requests > 0).then(|| errors_5xx as f64 / requests as f64),
            latency_ms: latency.to_summary(),
        })
    }
}
