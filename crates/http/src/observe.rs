//! The outermost middleware: request id, one tracing span and log line per
//! request (DEBUG, or WARN for a server error), and per-route metrics.

use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use lighthouse_metrics::UNMATCHED_ROUTE;
use tracing::Instrument;

use crate::state::{AppState, RequestId, RouteTemplate, Streaming, Waited};

/// The request id header.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

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
    let method = req.method().clone();
    let span = tracing::info_span!(
        "request",
        request_id = %rid,
        method = %method,
        route = tracing::field::Empty,
        agent = tracing::field::Empty,
    );
    let mut resp = next.run(req).instrument(span.clone()).await;
    let route = resp
        .extensions()
        .get::<RouteTemplate>()
        .map_or(UNMATCHED_ROUTE.to_owned(), |r| r.0.clone());
    let waited = resp
        .extensions()
        .get::<Waited>()
        .map(|w| w.0)
        .unwrap_or_default();
    let elapsed = started.elapsed();
    let busy = elapsed.saturating_sub(waited);
    let status = resp.status().as_u16();
    let streaming = resp.extensions().get::<Streaming>().is_some();
    if streaming {
        st.bridge.metrics().http_stream_opened(&route, status);
    } else if outside_api(&route) {
        st.bridge.metrics().http_probe(&route, status, busy);
    } else {
        st.bridge.metrics().http_request(&route, status, busy);
    }
    span.record("route", route.as_str());
    // One line per request: at DEBUG (as tower-http's `TraceLayer` does), since at
    // thousands of requests per second formatting and writing it cost the bridge
    // a measurable share of its CPU (docs/PERFORMANCE.md); server errors at WARN.
    span.in_scope(|| {
        let busy_ms = busy.as_secs_f64() * 1000.0;
        let waited_ms = waited.as_secs_f64() * 1000.0;
        if status >= 500 {
            tracing::warn!(status, busy_ms, waited_ms, streaming, "request");
        } else {
            tracing::debug!(status, busy_ms, waited_ms, streaming, "request");
        }
    });
    if let Ok(v) = HeaderValue::from_str(&rid) {
        resp.headers_mut().insert(REQUEST_ID_HEADER, v);
    }
    resp
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
