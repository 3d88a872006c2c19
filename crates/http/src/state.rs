//! Router state and configuration.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use lighthouse_core::Bridge;
use lighthouse_core::api::{ErrorCode, Problem};
use tokio::sync::watch;

/// HTTP settings, each with a default.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Largest request body (default 1 MiB; larger is `413 payload_too_large`).
    pub max_body_bytes: usize,
    /// Comment line interval on SSE streams (default 15 s).
    pub heartbeat: Duration,
    /// Longest time a request body may take to arrive (default 30 s; slower
    /// is `400 invalid_request`, so a trickling client cannot hold a request
    /// open).
    pub body_read_timeout: Duration,
    /// Request bodies held in memory at once, over all requests (default
    /// 256 MiB). Bodies are read whole before authentication (the signature
    /// covers their hash), so without this bound 16,384 connections each
    /// sending 1 MiB could hold 16 GiB. A body that finds the budget spent
    /// waits for it, within `body_read_timeout`, then is `503 unavailable`.
    pub max_buffered_body_bytes: usize,
    /// How often an open stream checks that its caller's credential still
    /// holds (default 5 s): a stream admitted once must not outlive a revoked
    /// agent, a retired key or an expired or revoked token.
    pub credential_recheck: Duration,
    /// `GET /v1/events/stream` responses open at once, over all callers
    /// (default 4,096), and per agent (default 32, as the agent stream's
    /// `max_subscriptions_per_agent`). Each can pin a catch-up stretch of up
    /// to 1 MiB of events while its client is slow. Beyond the total, opening
    /// one is `503 unavailable`; beyond the agent's own limit it is the
    /// caller's doing, `429 rate_limited` with `Retry-After`
    /// ([`Problem::agent_limit`]).
    pub max_event_streams: usize,
    /// See [`max_event_streams`](Self::max_event_streams).
    pub max_event_streams_per_agent: usize,
    /// A streamed response (SSE, /mcp's streams) over HTTP/2 whose client
    /// has taken nothing for this long while a frame waited is ended, freeing
    /// its subscription, slot and buffers (default 60 s; zero turns it off).
    /// HTTP/2 lets a client withhold one stream's flow-control window while
    /// its connection stays healthy, which no socket-level timeout sees; over
    /// HTTP/1 a reader that stops fills its socket, which the server's write
    /// timeout sees (`lighthouse-bridge`: `write_stall_timeout_ms`).
    pub stream_stall_timeout: Duration,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            max_body_bytes: 1 << 20,
            heartbeat: Duration::from_secs(15),
            body_read_timeout: Duration::from_secs(30),
            max_buffered_body_bytes: 256 << 20,
            credential_recheck: Duration::from_secs(5),
            max_event_streams: 4096,
            max_event_streams_per_agent: 32,
            stream_stall_timeout: Duration::from_secs(60),
        }
    }
}

/// Shared by every handler.
#[derive(Clone)]
pub struct AppState {
    pub(crate) bridge: Bridge,
    pub(crate) config: Arc<HttpConfig>,
    pub(crate) shutdown: watch::Receiver<bool>,
    /// Bytes of request body that may be buffered now (see
    /// [`HttpConfig::max_buffered_body_bytes`]).
    pub(crate) body_budget: Arc<tokio::sync::Semaphore>,
    /// Open event streams, in all and per agent.
    pub(crate) event_streams: Arc<Mutex<EventStreams>>,
}

/// Open `GET /v1/events/stream` responses (see
/// [`HttpConfig::max_event_streams`]).
#[derive(Debug, Default)]
pub(crate) struct EventStreams {
    total: usize,
    per_agent: HashMap<String, usize>,
}

/// One open event stream; counted until dropped.
pub(crate) struct EventStreamSlot {
    streams: Arc<Mutex<EventStreams>>,
    agent: String,
}

impl Drop for EventStreamSlot {
    fn drop(&mut self) {
        let mut s = self.streams.lock();
        s.total = s.total.saturating_sub(1);
        if let Some(n) = s.per_agent.get_mut(&self.agent) {
            *n -= 1;
            if *n == 0 {
                s.per_agent.remove(&self.agent);
            }
        }
    }
}

impl AppState {
    /// A slot for one more event stream of `agent`, or the problem naming
    /// the limit it is over.
    pub(crate) fn open_event_stream(&self, agent: &str) -> Result<EventStreamSlot, Problem> {
        let mut s = self.event_streams.lock();
        let (max, per) = (
            self.config.max_event_streams,
            self.config.max_event_streams_per_agent,
        );
        if s.total >= max {
            return Err(Problem::new(
                ErrorCode::Unavailable,
                format!("too many open event streams (limit {max}); retry later"),
            ));
        }
        let mine = s.per_agent.get(agent).copied().unwrap_or(0);
        if mine >= per {
            return Err(Problem::agent_limit(format!(
                "this agent already has {per} event streams (GET /v1/events/stream) open, \
                 its limit; close one, then retry"
            )));
        }
        s.total += 1;
        s.per_agent.insert(agent.to_owned(), mine + 1);
        Ok(EventStreamSlot {
            streams: self.event_streams.clone(),
            agent: agent.to_owned(),
        })
    }
}

/// Tells open streams that the server is shutting down (each sends a final
/// `shutdown` event and ends).
#[derive(Debug, Clone)]
pub struct ShutdownSignal(watch::Sender<bool>);

impl ShutdownSignal {
    /// Ends every open stream.
    pub fn trigger(&self) {
        let _ = self.0.send(true);
    }
}

impl AppState {
    pub(crate) fn new(bridge: Bridge, config: HttpConfig) -> (AppState, ShutdownSignal) {
        let (tx, rx) = watch::channel(false);
        (
            AppState {
                bridge,
                body_budget: Arc::new(tokio::sync::Semaphore::new(
                    config
                        .max_buffered_body_bytes
                        .min(tokio::sync::Semaphore::MAX_PERMITS),
                )),
                config: Arc::new(config),
                shutdown: rx,
                event_streams: Arc::default(),
            },
            ShutdownSignal(tx),
        )
    }
}

/// The request id of a request: `X-Request-Id` when it is 1 to 128 of
/// `[A-Za-z0-9_.:-]`, else a fresh ULID. It becomes the `correlation_id` of the
/// events the request writes and is echoed in the response.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// Time a handler measured itself as waiting (`/mcp` without an outer wait
/// meter), excluded from `http.latency_ms`; the long-polls and drains use the
/// request's `WaitMeter` instead.
pub(crate) use lighthouse_core::Waited;

/// Marks a streaming response (its duration is not request latency).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Streaming;
