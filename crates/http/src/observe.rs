//! The outermost middleware: request id, one tracing span and log line per
//! request (DEBUG, or WARN for a server error), and per-route metrics.
//!
//! A request is recorded exactly once, whatever becomes of it:
//! - answered: when its response leaves the router (its status, the time to
//!   the response, less the time its long-polls were blocked waiting, a
//!   drain's wait and a verify's walk: what the handler put on its
//!   [`WaitMeter`]);
//! - answered in its body ([`AnsweredInBody`], an SSE response to an MCP
//!   request that rmcp opens before the tool has run): when the body's last
//!   event is produced, so the tool's work is measured;
//! - a stream ([`Streaming`]): counted when opened, its duration is not
//!   request latency;
//! - dropped before it was answered (the client closed the connection or
//!   reset the HTTP/2 stream, and hyper dropped the handler): as status 499,
//!   "client closed request" (nginx's code), with the time it ran until then.
//!   Dropped requests count in `requests` and in the latency figures (the
//!   bridge did spend that time; leaving them out would hide a bridge so slow
//!   that its clients give up), though not as server errors. A body answer
//!   dropped before its last event is recorded the same way.
//!
//! A handler that panics is answered `500 internal` by the panic catcher
//! inside this layer (see `lib.rs`), so it is recorded as a server error.

use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use bytes::Bytes;
use lighthouse_core::{AnsweredInBody, Bridge, ToolOutcome, WaitMeter};
use lighthouse_metrics::UNMATCHED_ROUTE;
use tracing::Instrument;

use crate::state::{AppState, RequestId, Streaming, Waited};

/// The request id header.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The status a request dropped before it was answered is recorded with
/// ("client closed request"); never sent, since nobody is left to read it.
pub(crate) const CLIENT_CLOSED_REQUEST: u16 = 499;

fn valid_request_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'))
}

/// Health probes, the metrics scrape (PROTOCOL.md 11) and requests that match
/// no route are not API requests: they stay out of `/v1/ops/stats`' `http`
/// figures, where a load balancer probing `/` or a scanner's 404s would dilute
/// the error ratio and latency the deploy gates read. They still count in the
/// per-route Prometheus series.
fn outside_api(route: &str) -> bool {
    route == "/metrics" || route.starts_with("/health/") || route == UNMATCHED_ROUTE
}

/// The route template a request matched, set by `auth::mark_route` before
/// the handler runs: a request dropped mid-way has no response to carry it.
#[derive(Debug, Clone, Default)]
pub(crate) struct MatchedRoute(Arc<OnceLock<Box<str>>>);

impl MatchedRoute {
    pub(crate) fn set(&self, template: &str) {
        let _ = self.0.set(template.into());
    }

    fn get(&self) -> &str {
        self.0.get().map_or(UNMATCHED_ROUTE, |r| &**r)
    }
}

/// One request's measurement, recorded once: by [`Measurement::finish`], or
/// when dropped unfinished, as [`CLIENT_CLOSED_REQUEST`].
struct Measurement {
    bridge: Bridge,
    started: Instant,
    route: MatchedRoute,
    meter: WaitMeter,
    span: tracing::Span,
    done: bool,
}

impl Measurement {
    /// Records the request as answered with `status` at `end`, `waited` (as
    /// the handler measured it itself) on top of what its meter holds.
    fn finish(&mut self, status: u16, streaming: bool, waited: Duration, end: Instant) {
        self.done = true;
        let route = self.route.get();
        let waited = waited + self.meter.waited();
        let elapsed = end.saturating_duration_since(self.started);
        let busy = elapsed.saturating_sub(waited);
        let metrics = self.bridge.metrics();
        if streaming {
            metrics.http_stream_opened(route, status);
        } else if outside_api(route) {
            metrics.http_probe(route, status, busy);
        } else {
            metrics.http_request(route, status, busy);
        }
        self.span.record("route", route);
        // One line per request: at DEBUG (as tower-http's `TraceLayer` does), since at
        // thousands of requests per second formatting and writing it cost the bridge
        // a measurable share of its CPU (docs/PERFORMANCE.md); server errors at WARN.
        self.span.in_scope(|| {
            let busy_ms = busy.as_secs_f64() * 1000.0;
            let waited_ms = waited.as_secs_f64() * 1000.0;
            if status >= 500 {
                tracing::warn!(status, busy_ms, waited_ms, streaming, "request");
            } else {
                tracing::debug!(status, busy_ms, waited_ms, streaming, "request");
            }
        });
    }
}

impl Drop for Measurement {
    fn drop(&mut self) {
        if !self.done {
            self.finish(CLIENT_CLOSED_REQUEST, false, Duration::ZERO, Instant::now());
        }
    }
}

/// A response body whose request is recorded when its last event has been
/// produced (see [`AnsweredInBody`]).
struct MeasuredBody {
    inner: Body,
    measurement: Measurement,
    status: u16,
    /// A tool call's answer, once its handler has made one.
    tool: Option<ToolOutcome>,
    waited: Duration,
    /// When the body last produced data: the end of the bridge's work on the
    /// answer, even if the end of the body is only seen after the client has
    /// read it all (a large result to a slow client is not bridge time).
    last_data: Option<Instant>,
    /// Set if the stall watchdog ended the body: its answer never left.
    stalled: crate::stall::Stalled,
}

/// The status of a tool call whose response stream ended before its handler
/// answered: the bridge closed it (shutting down).
const CLOSED_UNANSWERED: u16 = 503;

impl MeasuredBody {
    /// Records the request when its body has ended.
    fn finish(&mut self) {
        let status = match &self.tool {
            Some(t) => t.status().unwrap_or(CLOSED_UNANSWERED),
            None => self.status,
        };
        self.finish_with(status);
    }

    fn finish_with(&mut self, status: u16) {
        if !self.measurement.done {
            let end = self.last_data.unwrap_or_else(Instant::now);
            self.measurement.finish(status, false, self.waited, end);
        }
    }
}

impl http_body::Body for MeasuredBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if frame.is_data() {
                    this.last_data = Some(Instant::now());
                }
                // hyper stops polling a body that says it has ended.
                if this.inner.is_end_stream() {
                    this.finish();
                }
            }
            // A body that fails ends the response: the bridge's work on it
            // ended here too.
            Poll::Ready(None) | Poll::Ready(Some(Err(_))) => this.finish(),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for MeasuredBody {
    fn drop(&mut self) {
        // Dropped whole (hyper need not poll a body past its end) is answered;
        // so is a tool call whose handler had answered (a client may close
        // once it has the answer, before the stream's end); dropped part way,
        // the measurement records it as closed by the client.
        // Ended by the stall watchdog: the answer never left, whatever the
        // handler answered, so it is recorded as closed by the client.
        if self.stalled.is_set() {
            return;
        }
        if http_body::Body::is_end_stream(&self.inner) {
            self.finish();
        } else if let Some(status) = self.tool.as_ref().and_then(ToolOutcome::status) {
            self.finish_with(status);
        }
    }
}

pub(crate) async fn observe(State(st): State<AppState>, mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let given = req
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|s| valid_request_id(s))
        .map(str::to_owned);
    let rid = match given {
        Some(r) => r,
        None => {
            let r = ulid::Ulid::generate().to_string();
            // Routes mounted with `router_with` (such as /mcp) read the header:
            // they see the id this request is logged and answered under.
            if let Ok(v) = HeaderValue::from_str(&r) {
                req.headers_mut().insert(REQUEST_ID_HEADER, v);
            }
            r
        }
    };
    req.extensions_mut().insert(RequestId(rid.clone()));
    let route = MatchedRoute::default();
    req.extensions_mut().insert(route.clone());
    let meter = WaitMeter::new();
    req.extensions_mut().insert(meter.clone());
    let method = req.method().clone();
    let span = tracing::info_span!(
        "request",
        request_id = %rid,
        method = %method,
        route = tracing::field::Empty,
        agent = tracing::field::Empty,
    );
    // Created before the handler runs: if hyper drops this future (the client
    // went away), the measurement is recorded as it drops.
    let mut measurement = Measurement {
        bridge: st.bridge.clone(),
        started,
        route,
        meter,
        span: span.clone(),
        done: false,
    };
    // HTTP/1's stalled readers fill their socket, which the server's own
    // write timeout sees (`lighthouse-bridge`'s listener); HTTP/2 lets a
    // client withhold one stream's window while its connection stays
    // healthy, which only a watchdog beside the body sees (crate::stall).
    let multiplexed = req.version() >= axum::http::Version::HTTP_2;
    let mut resp = next.run(req).instrument(span.clone()).await;
    let waited = resp
        .extensions()
        .get::<Waited>()
        .map(|w| w.0)
        .unwrap_or_default();
    let status = resp.status().as_u16();
    let streaming = resp.extensions().get::<Streaming>().is_some();
    if let Ok(v) = HeaderValue::from_str(&rid) {
        resp.headers_mut().insert(REQUEST_ID_HEADER, v);
    }
    // A streamed response over HTTP/2 (the SSE routes, /mcp's SSE answers
    // and stream) ends if its client stops taking it (crate::stall).
    let stall = (multiplexed && event_stream(&resp)).then_some(st.config.stream_stall_timeout);
    let stalled = crate::stall::Stalled::default();
    let report = || crate::stall::Report {
        stalled: stalled.clone(),
        metrics: Some(st.bridge.metrics().clone()),
        span: span.clone(),
    };
    if !streaming && let Some(AnsweredInBody(tool)) = resp.extensions().get().cloned() {
        return resp.map(|inner| {
            let body = Body::new(MeasuredBody {
                inner,
                measurement,
                status,
                tool,
                waited,
                last_data: None,
                stalled: stalled.clone(),
            });
            match stall {
                Some(stall) => crate::stall::watch(body, stall, report()),
                None => body,
            }
        });
    }
    measurement.finish(status, streaming, waited, Instant::now());
    match stall {
        Some(stall) => resp.map(|body| crate::stall::watch(body, stall, report())),
        None => resp,
    }
}

/// Whether `resp` is a Server-Sent Events stream.
fn event_stream(resp: &Response) -> bool {
    resp.headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|m| m.trim().eq_ignore_ascii_case("text/event-stream"))
        })
}

#[cfg(test)]
mod tests {
    use super::{UNMATCHED_ROUTE, outside_api, valid_request_id};

    #[test]
    fn probes_and_scrapes_are_outside_the_api() {
        assert!(outside_api("/health/live") && outside_api("/health/ready"));
        assert!(outside_api("/metrics") && outside_api(UNMATCHED_ROUTE));
        assert!(!outside_api("/v1/ops/stats") && !outside_api("/mcp"));
    }

    #[test]
    fn request_ids_are_bounded_tokens() {
        assert!(valid_request_id("req-1:a.b_c"));
        assert!(!valid_request_id(""));
        assert!(!valid_request_id("a b"));
        assert!(!valid_request_id(&"x".repeat(129)));
    }
}
