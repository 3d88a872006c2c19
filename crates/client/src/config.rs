//! [`ClientConfig`]: timeouts, limits, the retry and reconnect policies and the
//! clock, each with a documented default.

use std::sync::Arc;
use std::time::Duration;

use lighthouse_event_store::{SharedClock, SystemClock};

/// Default time to establish a TCP connection: 5 s.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default time for one request attempt, headers and body, not counting the
/// waiting part of a long-poll (which is added to it): 30 s.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Default silence after which an SSE connection is considered dead and resumed:
/// 45 s, three of the bridge's 15 s heartbeats.
pub const DEFAULT_STREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(45);
/// Default largest response body read into memory: 32 MiB (a page of 1,000
/// events of the protocol's sizes fits).
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 32 << 20;
/// Default largest error body read (a problem is far smaller): 64 KiB.
pub const DEFAULT_MAX_ERROR_BODY_BYTES: usize = 64 << 10;
/// Default largest single SSE event (all its lines): 2 MiB, twice the largest
/// request body the bridge accepts.
pub const DEFAULT_MAX_SSE_EVENT_BYTES: usize = 2 << 20;

/// When and how often a request is tried again.
///
/// Which requests are retried at all is decided per request (see the crate docs:
/// reads, creates carrying an idempotency key, appends carrying an event id,
/// flag kills); this policy only says how many times and how long to wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in total, the first included (default 4; 1 disables retries).
    pub max_attempts: u32,
    /// Backoff before the second attempt; doubled after every failed attempt
    /// (default 100 ms).
    pub initial_backoff: Duration,
    /// Cap of the doubled backoff (default 2 s). The wait is drawn uniformly
    /// between half of the backoff and all of it, so clients do not retry in step.
    pub max_backoff: Duration,
    /// The longest `Retry-After` of a `429` the client waits out; a longer one is
    /// returned to the caller at once (default 10 s).
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 4,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
            max_retry_after: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// No retries at all.
    pub fn none() -> Self {
        RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        }
    }

    /// The wait before attempt `attempt + 1` after `attempt` failed (1-based),
    /// before jitter: `initial_backoff * 2^(attempt-1)`, capped.
    pub fn backoff(&self, attempt: u32) -> Duration {
        exponential(self.initial_backoff, self.max_backoff, attempt)
    }
}

/// How an SSE stream reconnects after a disconnect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReconnectPolicy {
    /// Wait before the first reconnect after a connection ends (default 100 ms);
    /// a `retry:` line from the bridge replaces it for the rest of the stream.
    pub initial_delay: Duration,
    /// Cap of the doubled wait while reconnects keep failing (default 5 s).
    pub max_delay: Duration,
    /// Consecutive failed connection attempts after which the stream gives up
    /// and yields the last error (default `None`: never; the wait stays bounded by
    /// `max_delay`). Any event received resets the count.
    pub max_attempts: Option<u32>,
}

impl Default for ReconnectPolicy {
    fn default() -> Self {
        ReconnectPolicy {
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(5),
            max_attempts: None,
        }
    }
}

impl ReconnectPolicy {
    /// The wait before reconnect number `failures + 1` when the `failures` latest
    /// attempts failed, before jitter.
    pub fn delay(&self, base: Duration, failures: u32) -> Duration {
        exponential(base, self.max_delay, failures.saturating_add(1))
    }
}

fn exponential(initial: Duration, max: Duration, attempt: u32) -> Duration {
    let shift = attempt.saturating_sub(1).min(20);
    initial.saturating_mul(1u32 << shift).min(max)
}

/// Everything a [`Client`](crate::Client) is built with.
#[derive(Clone)]
pub struct ClientConfig {
    /// Where signing timestamps come from (default the system clock). Tests use
    /// a `ManualClock` to check the bridge's time window.
    pub clock: SharedClock,
    /// Retries of single requests.
    pub retry: RetryPolicy,
    /// Reconnects of SSE streams.
    pub reconnect: ReconnectPolicy,
    /// TCP connect timeout (default [`DEFAULT_CONNECT_TIMEOUT`]).
    pub connect_timeout: Duration,
    /// Time for one attempt (default [`DEFAULT_REQUEST_TIMEOUT`]); a long-poll
    /// gets its `wait_ms` on top.
    pub request_timeout: Duration,
    /// Silence after which a stream is resumed (default
    /// [`DEFAULT_STREAM_IDLE_TIMEOUT`]).
    pub stream_idle_timeout: Duration,
    /// Largest response body (default [`DEFAULT_MAX_RESPONSE_BYTES`]).
    pub max_response_bytes: usize,
    /// Largest error body read (default [`DEFAULT_MAX_ERROR_BODY_BYTES`]).
    pub max_error_body_bytes: usize,
    /// Largest SSE event (default [`DEFAULT_MAX_SSE_EVENT_BYTES`]).
    pub max_sse_event_bytes: usize,
}

impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("retry", &self.retry)
            .field("reconnect", &self.reconnect)
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("stream_idle_timeout", &self.stream_idle_timeout)
            .field("max_response_bytes", &self.max_response_bytes)
            .field("max_error_body_bytes", &self.max_error_body_bytes)
            .field("max_sse_event_bytes", &self.max_sse_event_bytes)
            .finish_non_exhaustive()
    }
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            clock: Arc::new(SystemClock),
            retry: RetryPolicy::default(),
            reconnect: ReconnectPolicy::default(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            stream_idle_timeout: DEFAULT_STREAM_IDLE_TIMEOUT,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            max_error_body_bytes: DEFAULT_MAX_ERROR_BODY_BYTES,
            max_sse_event_bytes: DEFAULT_MAX_SSE_EVENT_BYTES,
        }
    }
}

/// A wait drawn uniformly from `[d/2, d]`, so many clients do not retry in step.
pub(crate) fn jittered(d: Duration) -> Duration {
    let half = d / 2;
    let spread = d.saturating_sub(half).as_micros() as u64;
    if spread == 0 {
        return d;
    }
    half + Duration::from_micros(rand::random_range(0..=spread))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let p = RetryPolicy::default();
        assert_eq!(p.backoff(1), Duration::from_millis(100));
        assert_eq!(p.backoff(2), Duration::from_millis(200));
        assert_eq!(p.backoff(3), Duration::from_millis(400));
        assert_eq!(p.backoff(10), Duration::from_secs(2));
        assert_eq!(p.backoff(u32::MAX), Duration::from_secs(2));
        let r = ReconnectPolicy::default();
        assert_eq!(r.delay(r.initial_delay, 0), Duration::from_millis(100));
        assert_eq!(r.delay(r.initial_delay, 3), Duration::from_millis(800));
        assert_eq!(r.delay(r.initial_delay, 100), Duration::from_secs(5));
    }

    #[test]
    fn jitter_stays_between_half_and_all() {
        for _ in 0..1000 {
            let j = jittered(Duration::from_millis(400));
            assert!(j >= Duration::from_millis(200) && j <= Duration::from_millis(400));
        }
        assert_eq!(jittered(Duration::ZERO), Duration::ZERO);
    }
}
