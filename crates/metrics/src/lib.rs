//! Lighthouse's metrics: one catalogue, the Prometheus exposition built from
//! it, the windowed percentiles behind `/v1/ops/stats`, and Linux process
//! metrics.
//!
//! What it is for: the bridge records through one [`Metrics`] handle (typed
//! methods such as [`Metrics::http_request`] or
//! [`Metrics::elicitation_resolved`]); `GET /metrics` serves
//! [`Metrics::render`]; `GET /v1/ops/stats` serves [`Metrics::stats`]. What it
//! is not for: it knows nothing of HTTP, the event store or agents, and
//! depends on no other Lighthouse crate.
//!
//! Invariants:
//! - Every exposed metric is an entry of [`catalogue::CATALOGUE`], and every
//!   entry is in the exposition from the first scrape (`# HELP` and `# TYPE`
//!   at least; fixed-set label values at zero, see PROTOCOL.md section 11).
//! - Label values are bounded: fixed sets are types ([`Outcome`],
//!   [`ViolationKind`], [`RateAction`], [`FlagResult`]); `route`, `status` and
//!   `flag` appear on first use up to [`LabelCaps`], after which (and for
//!   invalid values) they are recorded as [`OVERFLOW_LABEL_VALUE`]. No agent
//!   id or raw path can become a label.
//! - Histograms are real Prometheus histograms with the catalogue's buckets.
//! - Windowed figures come from recorded samples only: counts and maxima are
//!   exact, percentiles are within `10^-significant_digits` of the true
//!   nearest-rank value and never below it; without samples they are `None`.
//! - Memory is fixed by the configuration: a ring of one-second slots per
//!   tracker (see [`LatencyWindow::max_stored_buckets`]) and capped label maps.
//! - Time for the windows comes from an injected [`TimeSource`].
//!
//! ```
//! use lighthouse_metrics::{ManualTimeSource, Metrics, MetricsConfig, Outcome};
//! use std::{sync::Arc, time::Duration};
//!
//! let time = ManualTimeSource::new(0);
//! let metrics = Metrics::new(MetricsConfig::new().time_source(Arc::new(time.clone())))?;
//! metrics.http_request("/v1/elicitations", 201, Duration::from_micros(850));
//! metrics.elicitation_created();
//! time.advance(Duration::from_secs(2));
//! metrics.elicitation_resolved(Outcome::Accepted, Duration::from_secs(2));
//!
//! let text = metrics.render()?;
//! assert!(text.contains("lighthouse_elicitations_total{outcome=\"accepted\"} 1"));
//! let stats = metrics.stats(60)?;
//! assert_eq!(stats.elicitations.accepted, 1);
//! assert_eq!(stats.http.requests, 1);
//! assert_eq!(stats.http.latency_ms.count, 1);
//! # Ok::<(), lighthouse_metrics::Error>(())
//! ```
#![warn(missing_docs)]

mod buckets;
pub mod catalogue;
mod error;
mod exposition;
mod histogram;
mod label_table;
mod labels;
mod process;
mod recorder;
mod stats;
mod time;
mod window;

pub use error::{Error, Result};
pub use exposition::CONTENT_TYPE;
pub use labels::{
    FlagResult, FoldedLabel, LabelCaps, MAX_ROUTE_LEN, OVERFLOW_LABEL_VALUE, Outcome, RateAction,
    UNMATCHED_ROUTE, ViolationKind, is_valid_flag_key, is_valid_route, is_valid_status,
};
pub use process::ProcessStats;
pub use recorder::{Metrics, MetricsConfig, StreamGuard};
pub use stats::{ElicitationStats, HttpStats, StoreStats, WindowStats};
pub use time::{ManualTimeSource, SharedTimeSource, SystemTimeSource, TimeSource};
pub use window::{LatencySummary, LatencyWindow, WindowConfig, WindowSnapshot, WindowedCounter};
