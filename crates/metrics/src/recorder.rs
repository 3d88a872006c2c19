//! [`Metrics`]: the handle the rest of the system records through.

use crate::catalogue as cat;
use crate::error::Result;
use crate::exposition::{self, CounterFamily, HistogramFamily};
use crate::histogram::DurationHistogram;
use crate::label_table::LabelTable;
use crate::labels::{
    FlagResult, FoldedLabel, LabelCaps, OVERFLOW_LABEL_VALUE, Outcome, RateAction, ViolationKind,
    is_valid_flag_key, is_valid_route, is_valid_status,
};
use crate::process::ProcessCollector;
use crate::stats::{ElicitationWindows, HttpWindows, StoreStats, WindowStats};
use crate::time::{SharedTimeSource, SystemTimeSource};
use crate::window::{LatencyWindow, WindowConfig};
use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::time::Duration;

/// How to build a [`Metrics`]: every field has a default.
#[derive(Debug, Clone)]
pub struct MetricsConfig {
    /// Caps on first-use label values.
    pub caps: LabelCaps,
    /// The windowed trackers behind [`Metrics::stats`].
    pub window: WindowConfig,
    /// Whether `process_*` metrics are collected at each scrape. Default true.
    pub process_metrics: bool,
    /// The time source of the windows. Default [`SystemTimeSource`].
    pub time: SharedTimeSource,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            caps: LabelCaps::default(),
            window: WindowConfig::default(),
            process_metrics: true,
            time: Arc::new(SystemTimeSource::new()),
        }
    }
}

impl MetricsConfig {
    /// The defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Uses `time` for the windows (a [`crate::ManualTimeSource`] in tests).
    pub fn time_source(mut self, time: SharedTimeSource) -> Self {
        self.time = time;
        self
    }

    /// Sets the label caps.
    pub fn caps(mut self, caps: LabelCaps) -> Self {
        self.caps = caps;
        self
    }

    /// Sets the window configuration.
    pub fn window(mut self, window: WindowConfig) -> Self {
        self.window = window;
        self
    }

    /// Turns the `process_*` metrics on or off.
    pub fn process_metrics(mut self, on: bool) -> Self {
        self.process_metrics = on;
        self
    }
}

/// The series of one route: its latency histogram and a counter per status
/// (admitted statuses, plus `_other` for folded ones).
#[derive(Debug)]
struct RouteSeries {
    label: Arc<str>,
    duration: DurationHistogram,
    by_status: LabelTable<u16, Counter>,
}

#[derive(Debug)]
struct Inner {
    registry: Registry,
    time: SharedTimeSource,
    max_window_s: u64,
    elicitations_created: Counter,
    elicitations: [Counter; 4],
    elicitation_duration: DurationHistogram,
    elicitation_delivery: DurationHistogram,
    elicitations_active: Gauge,
    http_requests: CounterFamily<2>,
    http_duration: HistogramFamily<1>,
    status_cap: usize,
    routes: LabelTable<Box<str>, RouteSeries>,
    statuses: LabelTable<u16, Arc<str>>,
    violations: [Counter; 5],
    rate_limited: [Counter; 5],
    messages: Counter,
    store_appends: Counter,
    store_append_duration: DurationHistogram,
    store_commit_duration: DurationHistogram,
    head_seq: Gauge,
    store_size: Gauge,
    flag_evaluations: CounterFamily<2>,
    flags: LabelTable<Box<str>, [Counter; 2]>,
    stream_connections: Gauge,
    streams_stalled: Counter,
    folded: [Counter; 3],
    elicitation_windows: ElicitationWindows,
    http_windows: HttpWindows,
    append_window: LatencyWindow,
}

/// The metrics of one bridge: Prometheus exposition and the windowed
/// `/v1/ops/stats` figures, recorded together. Cheap to clone (an `Arc`);
/// every method takes `&self` and is safe from any thread.
#[derive(Debug, Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

fn saturating_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Metrics {
    /// Builds the registry from the catalogue; fails only on an invalid
    /// window configuration.
    pub fn new(config: MetricsConfig) -> Result<Self> {
        config.window.validate()?;
        let mut registry = Registry::default();
        if config.process_metrics {
            registry.register_collector(Box::new(ProcessCollector));
        }
        let r = &mut registry;
        let inner = Inner {
            elicitations_created: exposition::counter(r, &cat::ELICITATIONS_CREATED),
            elicitations: exposition::fixed_counters(r, &cat::ELICITATIONS),
            elicitation_duration: exposition::histogram(r, &cat::ELICITATION_DURATION),
            elicitation_delivery: exposition::histogram(r, &cat::ELICITATION_DELIVERY),
            elicitations_active: exposition::gauge(r, &cat::ELICITATIONS_ACTIVE),
            http_requests: exposition::counter_family(r, &cat::HTTP_REQUESTS),
            http_duration: exposition::histogram_family(r, &cat::HTTP_REQUEST_DURATION),
            status_cap: config.caps.statuses,
            routes: LabelTable::new(config.caps.routes),
            statuses: LabelTable::new(config.caps.statuses),
            violations: exposition::fixed_counters(r, &cat::SECURITY_VIOLATIONS),
            rate_limited: exposition::fixed_counters(r, &cat::RATE_LIMITED),
            messages: exposition::counter(r, &cat::MESSAGES),
            store_appends: exposition::counter(r, &cat::STORE_APPENDS),
            store_append_duration: exposition::histogram(r, &cat::STORE_APPEND_DURATION),
            store_commit_duration: exposition::histogram(r, &cat::STORE_COMMIT_DURATION),
            head_seq: exposition::gauge(r, &cat::STORE_HEAD_SEQ),
            store_size: exposition::gauge(r, &cat::STORE_SIZE),
            flag_evaluations: exposition::counter_family(r, &cat::FLAG_EVALUATIONS),
            flags: LabelTable::new(config.caps.flags),
            stream_connections: exposition::gauge(r, &cat::STREAM_CONNECTIONS),
            streams_stalled: exposition::counter(r, &cat::STREAMS_STALLED),
            folded: exposition::fixed_counters(r, &cat::LABEL_VALUES_FOLDED),
            elicitation_windows: ElicitationWindows::new(config.window)?,
            http_windows: HttpWindows::new(config.window)?,
            append_window: LatencyWindow::new(config.window)?,
            max_window_s: u64::from(config.window.max_window_s),
            time: config.time,
            // Last, once every metric above is registered.
            registry: std::mem::take(r),
        };
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    fn now_ms(&self) -> u64 {
        self.inner.time.now_ms()
    }

    /// An elicitation was created.
    pub fn elicitation_created(&self) {
        self.inner.elicitations_created.inc();
        let now = self.now_ms();
        self.inner.elicitation_windows.created(now);
    }

    /// An elicitation reached a terminal state `since_created` after its
    /// creation. Accepted and declined ones also count in `answer_ms`.
    pub fn elicitation_resolved(&self, outcome: Outcome, since_created: Duration) {
        self.inner.elicitations[outcome.index()].inc();
        self.inner.elicitation_duration.observe(since_created);
        let now = self.now_ms();
        self.inner
            .elicitation_windows
            .resolved(now, outcome, since_created);
    }

    /// An elicitation's push was written to an open stream of its target,
    /// `latency` after its `requested` event was durable.
    pub fn elicitation_delivered(&self, latency: Duration) {
        self.inner.elicitation_delivery.observe(latency);
        let now = self.now_ms();
        self.inner.elicitation_windows.delivered(now, latency);
    }

    /// Sets the number of pending elicitations.
    pub fn set_active_elicitations(&self, pending: u64) {
        self.inner.elicitations_active.set(saturating_i64(pending));
    }

    /// An API request on route template `route` (the matched template, or
    /// [`crate::UNMATCHED_ROUTE`]; never the raw path) was answered with
    /// `status` after the bridge spent `busy` on it (streams and long-poll
    /// waits excluded). Invalid values and values beyond the caps are
    /// recorded as `_other`.
    pub fn http_request(&self, route: &str, status: u16, busy: Duration) {
        self.http_probe(route, status, busy);
        let now = self.now_ms();
        self.inner.http_windows.request(now, status, busy);
    }

    /// A request outside the API (a health probe, a metrics scrape) on route
    /// template `route`: it counts in the per-route series like any request,
    /// but not in the windowed `http` figures of `/v1/ops/stats`, which
    /// measure API requests (PROTOCOL.md 9); otherwise a load balancer's
    /// probes would dilute the latency and error ratio the deploy gates read.
    pub fn http_probe(&self, route: &str, status: u16, busy: Duration) {
        let series = self.route_series(route);
        series.duration.observe(busy);
        self.status_counter(series, status).inc();
    }

    /// A stream (SSE) on route template `route` was opened with `status`: it
    /// counts in `lighthouse_http_requests_total`, but a stream's duration is
    /// not request latency, so it stays out of the duration histogram and out
    /// of the windowed `http` figures (PROTOCOL.md 9: "excluding streams").
    pub fn http_stream_opened(&self, route: &str, status: u16) {
        let series = self.route_series(route);
        self.status_counter(series, status).inc();
    }

    fn fold(&self, label: FoldedLabel) {
        self.inner.folded[label.index()].inc();
    }

    fn route_series(&self, route: &str) -> &RouteSeries {
        let inner = &*self.inner;
        let admitted = inner.routes.get_or_create(route, is_valid_route, |key| {
            let label: Arc<str> = Arc::from(key.unwrap_or(OVERFLOW_LABEL_VALUE));
            let name = cat::HTTP_REQUEST_DURATION.labels[0].name;
            RouteSeries {
                duration: inner
                    .http_duration
                    .get_or_create_owned(&[(name, label.clone())]),
                label,
                by_status: LabelTable::new(inner.status_cap),
            }
        });
        if admitted.folded {
            self.fold(FoldedLabel::Route);
        }
        admitted.value
    }

    fn status_counter<'a>(&'a self, series: &'a RouteSeries, status: u16) -> &'a Counter {
        let inner = &*self.inner;
        // Only a status new to this route is checked against the global set
        // of admitted statuses (at most `caps.statuses` over all routes).
        let label: std::cell::Cell<Option<&Arc<str>>> = std::cell::Cell::new(None);
        let admit = |code: &u16| {
            let admitted = inner.statuses.get_or_create(
                code,
                |c| is_valid_status(*c),
                |c| {
                    c.map_or_else(
                        || Arc::from(OVERFLOW_LABEL_VALUE),
                        |c| Arc::from(c.to_string()),
                    )
                },
            );
            if admitted.folded {
                self.fold(FoldedLabel::Status);
            }
            label.set(Some(admitted.value));
            !admitted.folded
        };
        let make = |code: Option<&u16>| {
            let value = match (code, label.get()) {
                (Some(_), Some(admitted)) => admitted.clone(),
                _ => Arc::from(OVERFLOW_LABEL_VALUE),
            };
            let labels = &cat::HTTP_REQUESTS.labels;
            inner.http_requests.get_or_create_owned(&[
                (labels[0].name, series.label.clone()),
                (labels[1].name, value),
            ])
        };
        series.by_status.get_or_create(&status, admit, make).value
    }

    /// A request was refused by authentication or authorization.
    pub fn security_violation(&self, kind: ViolationKind) {
        self.inner.violations[kind.index()].inc();
    }

    /// A request was refused by the rate limiter.
    pub fn rate_limited(&self, action: RateAction) {
        self.inner.rate_limited[action.index()].inc();
    }

    /// A message was sent through the messages API.
    pub fn message_sent(&self) {
        self.inner.messages.inc();
    }

    /// One append call of `events` events was acknowledged after `duration`.
    pub fn store_append(&self, events: u64, duration: Duration) {
        self.inner.store_appends.inc_by(events);
        self.inner.store_append_duration.observe(duration);
        let now = self.now_ms();
        self.inner.append_window.record(now, duration);
    }

    /// The store's writer committed one group of appends in `duration` (the
    /// write, the sync in durable mode and the index updates).
    pub fn store_commit(&self, duration: Duration) {
        self.inner.store_commit_duration.observe(duration);
    }

    /// Sets the sequence of the last event in the store, unless a higher one
    /// was set already: a store's head only grows, and the writer's observer
    /// (after each append) races readers that took the head a moment earlier
    /// (a periodic refresh that then walks the store's files), so the last
    /// call is not always the newest value.
    pub fn set_head_seq(&self, seq: u64) {
        self.inner
            .head_seq
            .inner()
            .fetch_max(saturating_i64(seq), std::sync::atomic::Ordering::Relaxed);
    }

    /// Sets the store's size on disk.
    pub fn set_store_size_bytes(&self, bytes: u64) {
        self.inner.store_size.set(saturating_i64(bytes));
    }

    /// Flag `flag` was evaluated to `result`. The first evaluation of a flag
    /// creates both its `on` and `off` series; keys that are not flag keys,
    /// or new keys beyond the cap, count under `_other`.
    pub fn flag_evaluation(&self, flag: &str, result: FlagResult) {
        let inner = &*self.inner;
        let admitted = inner.flags.get_or_create(flag, is_valid_flag_key, |key| {
            let value: Arc<str> = Arc::from(key.unwrap_or(OVERFLOW_LABEL_VALUE));
            let labels = &cat::FLAG_EVALUATIONS.labels;
            [FlagResult::On, FlagResult::Off].map(|r| {
                inner.flag_evaluations.get_or_create_owned(&[
                    (labels[0].name, value.clone()),
                    (labels[1].name, Arc::from(r.as_str())),
                ])
            })
        });
        if admitted.folded {
            self.fold(FoldedLabel::Flag);
        }
        admitted.value[result.index()].inc();
    }

    /// A push stream opened; it counts as connected until the guard drops.
    pub fn stream_opened(&self) -> StreamGuard {
        self.inner.stream_connections.inc();
        StreamGuard {
            metrics: self.clone(),
        }
    }

    /// A streamed response was ended because its client took nothing of it
    /// for the stall timeout.
    pub fn stream_stalled(&self) {
        self.inner.streams_stalled.inc();
    }

    /// Push streams open now.
    pub fn connected_streams(&self) -> u64 {
        u64::try_from(self.inner.stream_connections.get()).unwrap_or(0)
    }

    /// The whole catalogue in the Prometheus text format ([`crate::CONTENT_TYPE`]).
    pub fn render(&self) -> Result<String> {
        let mut out = String::with_capacity(16 * 1024);
        self.render_into(&mut out)?;
        Ok(out)
    }

    /// [`render`](Self::render) into a buffer the caller reuses.
    pub fn render_into(&self, out: &mut String) -> Result<()> {
        prometheus_text::encode(out, &self.inner.registry)?;
        Ok(())
    }

    /// The figures of `/v1/ops/stats` over the last `window_s` seconds
    /// (1 to the configured maximum, 900 by default).
    pub fn stats(&self, window_s: u64) -> Result<WindowStats> {
        if window_s == 0 || window_s > self.inner.max_window_s {
            return Err(crate::Error::WindowOutOfRange {
                requested_s: window_s,
                max_s: self.inner.max_window_s,
            });
        }
        let now = self.now_ms();
        let inner = &self.inner;
        let elicitations = inner.elicitation_windows.stats(now, window_s)?;
        let http = inner.http_windows.stats(now, window_s)?;
        let append_ms = inner.append_window.summary(now, window_s)?;
        Ok(WindowStats {
            window_s,
            covered_s: window_s.min(now.div_ceil(1000).max(1)),
            elicitations,
            http,
            active_elicitations: u64::try_from(inner.elicitations_active.get()).unwrap_or(0),
            connected_streams: self.connected_streams(),
            store: StoreStats {
                head_seq: u64::try_from(inner.head_seq.get()).unwrap_or(0),
                size_bytes: u64::try_from(inner.store_size.get()).unwrap_or(0),
                append_ms,
            },
        })
    }

    /// Distinct route, status and flag label values admitted so far (the
    /// `_other` value not included).
    pub fn label_values_in_use(&self) -> (usize, usize, usize) {
        (
            self.inner.routes.len(),
            self.inner.statuses.len(),
            self.inner.flags.len(),
        )
    }
}

/// Counts one open push stream; dropping it closes the count.
#[derive(Debug)]
#[must_use = "the stream counts as open only while the guard lives"]
pub struct StreamGuard {
    metrics: Metrics,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.metrics.inner.stream_connections.dec();
    }
}
