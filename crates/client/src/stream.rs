//! SSE consumers of `GET /v1/stream` and `GET /v1/events/stream` that resume by
//! themselves.
//!
//! The stream remembers the `id` of the last event it handed out. When the
//! connection ends (closed, broken, silent for longer than the idle timeout, or
//! ended by the bridge with a `lagged` or `shutdown` event) it reconnects after a
//! bounded, jittered backoff with `Last-Event-ID` set to that id; the bridge
//! then sends everything after it, so nothing is missed and nothing repeated.
//! An agent stream opened without a position that has handed out nothing yet
//! resumes from the position the bridge named when it connected
//! (`X-Lighthouse-Resume-After`), whose read-back covers everything that
//! connection would have sent. Refusals other than `429` and `502`/`503`/`504`
//! end the stream with the error (a revoked agent must not reconnect forever),
//! and so do a request that cannot be built and a 2xx that is not an event
//! stream.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use lighthouse_core::api::{Elicitation, Event, EventsQuery, Message};
use reqwest::Response;
use serde_json::Value;

use crate::admin::events_query;
use crate::client::Client;
use crate::config::jittered;
use crate::error::Error;
use crate::sse::{SseEvent, SseParser};
use crate::transport::{Call, LAST_EVENT_ID, RESUME_AFTER, StreamOpenError, Transport};

/// What the agent stream pushed (PROTOCOL.md 5).
#[derive(Debug, Clone, PartialEq)]
pub enum AgentPayload {
    /// `elicitation.requested`: addressed to me, as it was when created.
    Requested(Elicitation),
    /// `elicitation.resolved`: mine or to me, now terminal.
    Resolved(Elicitation),
    /// `message.received`.
    Message(Message),
    /// A kind this client does not know (a newer bridge), kept as JSON.
    Other {
        /// The SSE event name.
        event: String,
        /// Its data.
        data: Value,
    },
}

/// One event of the agent stream.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentEvent {
    /// The store sequence that produced it (the SSE `id`).
    pub seq: u64,
    /// What it carries.
    pub payload: AgentPayload,
}

impl AgentEvent {
    /// The SSE event name.
    pub fn kind(&self) -> &str {
        match &self.payload {
            AgentPayload::Requested(_) => "elicitation.requested",
            AgentPayload::Resolved(_) => "elicitation.resolved",
            AgentPayload::Message(_) => "message.received",
            AgentPayload::Other { event, .. } => event,
        }
    }

    /// The data as JSON (the record or message as the bridge sent it).
    pub fn data(&self) -> Value {
        match &self.payload {
            AgentPayload::Requested(e) | AgentPayload::Resolved(e) => {
                serde_json::to_value(e).unwrap_or(Value::Null)
            }
            AgentPayload::Message(m) => serde_json::to_value(m).unwrap_or(Value::Null),
            AgentPayload::Other { data, .. } => data.clone(),
        }
    }
}

/// Counters of one resuming stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamStats {
    /// Connections opened (the first included).
    pub connects: u64,
    /// Connections that ended and were resumed.
    pub disconnects: u64,
    /// `lagged` events received (the bridge cut a slow consumer off).
    pub lagged: u64,
    /// `shutdown` events received.
    pub shutdowns: u64,
    /// Heartbeat comments received.
    pub heartbeats: u64,
}

/// Turns one SSE event into an item.
type Decode<T> = fn(&SseEvent, u64) -> Result<T, String>;

/// A stream of `T` over SSE that reconnects and resumes by itself. Get items
/// with [`ResumingStream::next`], which is cancel-safe (an item is marked as
/// delivered only when `next` returns it).
#[derive(Debug)]
pub struct ResumingStream<T> {
    transport: Arc<Transport>,
    call: Call,
    position: Option<u64>,
    conn: Option<Response>,
    parser: SseParser,
    ready: VecDeque<SseEvent>,
    delivered_since_connect: bool,
    failures: u32,
    /// The latest `retry:` the bridge sent on any connection of this stream:
    /// the base of every later reconnect wait (the WHATWG reconnection time
    /// belongs to the stream, not to one connection).
    retry: Option<Duration>,
    /// Connect attempts in a row that failed (a connect that succeeds resets
    /// it): what `ReconnectPolicy::max_attempts` counts. `failures` also counts
    /// connections that ended without delivering, for the backoff.
    failed_connects: u32,
    /// When the next connect may start: a deadline rather than a delay, so
    /// that a `next()` dropped during the wait (a lost `select!`) does not
    /// skip the backoff.
    next_attempt_at: Option<tokio::time::Instant>,
    /// An error that ends the stream, returned once the items read before it
    /// are handed out.
    fatal: Option<Error>,
    finished: bool,
    stats: StreamStats,
    decode: Decode<T>,
}

/// The agent stream, `GET /v1/stream`.
pub type AgentStream = ResumingStream<AgentEvent>;
/// The event stream, `GET /v1/events/stream`.
pub type EventTail = ResumingStream<Event>;

/// The filters of `GET /v1/events/stream`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventStreamFilter {
    /// Start after this sequence (default 0: from the beginning).
    pub after: Option<u64>,
    /// Exactly this stream.
    pub stream: Option<String>,
    /// Exactly this type.
    pub event_type: Option<String>,
}

fn decode_agent(ev: &SseEvent, seq: u64) -> Result<AgentEvent, String> {
    let err = |e: serde_json::Error| format!("{} data does not decode: {e}", ev.event);
    let payload = match ev.event.as_str() {
        "elicitation.requested" => {
            AgentPayload::Requested(serde_json::from_str(&ev.data).map_err(err)?)
        }
        "elicitation.resolved" => {
            AgentPayload::Resolved(serde_json::from_str(&ev.data).map_err(err)?)
        }
        "message.received" => AgentPayload::Message(serde_json::from_str(&ev.data).map_err(err)?),
        other => AgentPayload::Other {
            event: other.to_owned(),
            data: serde_json::from_str(&ev.data).unwrap_or_else(|_| Value::String(ev.data.clone())),
        },
    };
    Ok(AgentEvent { seq, payload })
}

fn decode_event(ev: &SseEvent, _seq: u64) -> Result<Event, String> {
    serde_json::from_str(&ev.data).map_err(|e| format!("event data does not decode: {e}"))
}

impl Client {
    /// Opens `GET /v1/stream`: with `after`, everything for me after that
    /// sequence, then live events; without, every elicitation pending for me,
    /// then live events. Connects on the first [`ResumingStream::next`].
    pub fn agent_stream(&self, after: Option<u64>) -> AgentStream {
        ResumingStream::new(
            self.transport.clone(),
            Call::get("/v1/stream"),
            after,
            decode_agent,
        )
    }

    /// Opens `GET /v1/events/stream?stream=&type=`: the events I may read after
    /// `filter.after` (default 0), then live ones.
    pub fn event_stream(&self, filter: &EventStreamFilter) -> EventTail {
        let q = EventsQuery {
            stream: filter.stream.clone(),
            event_type: filter.event_type.clone(),
            ..EventsQuery::default()
        };
        let call = events_query(Call::get("/v1/events/stream"), &q);
        ResumingStream::new(
            self.transport.clone(),
            call,
            Some(filter.after.unwrap_or(0)),
            decode_event,
        )
    }
}

enum Read {
    Events,
    Ended(&'static str),
    Fatal(Error),
}

impl<T> ResumingStream<T> {
    fn new(
        transport: Arc<Transport>,
        call: Call,
        position: Option<u64>,
        decode: Decode<T>,
    ) -> Self {
        let limit = transport.config.max_sse_event_bytes;
        ResumingStream {
            transport,
            call,
            position,
            conn: None,
            parser: SseParser::new(limit),
            ready: VecDeque::new(),
            delivered_since_connect: false,
            failures: 0,
            retry: None,
            failed_connects: 0,
            next_attempt_at: None,
            fatal: None,
            finished: false,
            stats: StreamStats::default(),
            decode,
        }
    }

    /// The sequence of the last item handed out, else the starting position
    /// (the one given, or for an agent stream opened without one, the position
    /// the bridge named on connecting, from which a resume brings everything
    /// the stream would have sent): what a reconnect sends as `Last-Event-ID`.
    /// `None` only before a stream opened without a position has connected (or
    /// when the bridge named none).
    pub fn position(&self) -> Option<u64> {
        self.position
    }

    /// Connection counters.
    pub fn stats(&self) -> StreamStats {
        StreamStats {
            heartbeats: self.stats.heartbeats + self.parser.comments(),
            ..self.stats
        }
    }

    /// Drops the current connection; the next [`ResumingStream::next`] resumes
    /// from [`ResumingStream::position`] (what a network failure does; useful to
    /// test resumption).
    pub fn disconnect(&mut self) {
        self.end_connection("closed by the client", false);
        self.next_attempt_at = None;
    }

    /// The next item, connecting and resuming as needed. `None` once the stream
    /// has ended for good, after the error that ended it was returned.
    pub async fn next(&mut self) -> Option<Result<T, Error>> {
        loop {
            if let Some(ev) = self.ready.pop_front() {
                match self.handle(ev) {
                    Some(item) => return Some(item),
                    None => continue,
                }
            }
            if let Some(e) = self.fatal.take() {
                self.finished = true;
                return Some(Err(e));
            }
            if self.finished {
                return None;
            }
            if self.conn.is_none() {
                if let Err(e) = self.connect().await {
                    return Some(Err(e));
                }
                continue;
            }
            match self.read().await {
                Read::Events => {}
                Read::Ended(why) => self.end_connection(why, true),
                Read::Fatal(e) => {
                    // The items completed before it come out first.
                    self.conn = None;
                    self.fatal = Some(e);
                }
            }
        }
    }

    async fn connect(&mut self) -> Result<(), Error> {
        if let Some(at) = self.next_attempt_at {
            tokio::time::sleep_until(at).await;
            self.next_attempt_at = None;
        }
        let headers: Vec<(&'static str, String)> = self
            .position
            .map(|p| vec![(LAST_EVENT_ID, p.to_string())])
            .unwrap_or_default();
        match self.transport.open_stream(&self.call, &headers).await {
            Ok(resp) => {
                if self.position.is_none() {
                    // Without it, a connection that breaks before anything is
                    // handed out would be resumed without a position, and the
                    // bridge would start over from "pending now": whatever
                    // resolved or arrived in between would be lost.
                    self.position = resp
                        .headers()
                        .get(RESUME_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok());
                }
                self.conn = Some(resp);
                self.stats.heartbeats += self.parser.comments();
                self.parser = SseParser::new(self.transport.config.max_sse_event_bytes);
                self.delivered_since_connect = false;
                self.failed_connects = 0;
                self.stats.connects += 1;
                Ok(())
            }
            Err(failure) => {
                // A refusal other than 429 and 502 to 504 (a revoked agent
                // must not reconnect forever), a request that cannot be built
                // and a 2xx that is not an event stream would all come out
                // the same on every attempt: they end the stream.
                let retryable = match &failure {
                    StreamOpenError::Transport(_) => true,
                    StreamOpenError::Refused(p) => matches!(p.status, 429 | 502..=504),
                    StreamOpenError::Unsendable(_) | StreamOpenError::NotAStream { .. } => false,
                };
                if retryable {
                    self.failures += 1;
                    self.failed_connects += 1;
                }
                let error = match failure {
                    StreamOpenError::Refused(p) => Error::Refused(p),
                    StreamOpenError::Transport(detail) => Error::Transport {
                        detail,
                        attempts: self.failed_connects,
                    },
                    StreamOpenError::Unsendable(detail) => Error::Config(detail),
                    StreamOpenError::NotAStream { status, detail } => {
                        Error::InvalidResponse { status, detail }
                    }
                };
                if !retryable {
                    self.finished = true;
                    return Err(error);
                }
                let policy = self.transport.config.reconnect;
                if policy
                    .max_attempts
                    .is_some_and(|m| self.failed_connects >= m)
                {
                    self.finished = true;
                    return Err(error);
                }
                tracing::debug!(failures = self.failures, "stream connect failed: {error}");
                self.schedule();
                Ok(())
            }
        }
    }

    async fn read(&mut self) -> Read {
        let Some(conn) = self.conn.as_mut() else {
            return Read::Ended("no connection");
        };
        let idle = self.transport.config.stream_idle_timeout;
        match tokio::time::timeout(idle, conn.chunk()).await {
            Err(_) => Read::Ended("idle timeout"),
            Ok(Err(_)) => Read::Ended("connection broke"),
            Ok(Ok(None)) => Read::Ended("connection closed"),
            Ok(Ok(Some(bytes))) => {
                let mut out = Vec::new();
                let fed = self.parser.feed(&bytes, &mut out);
                if let Some(ms) = self.parser.retry_ms() {
                    self.retry = Some(Duration::from_millis(ms));
                }
                self.ready.extend(out);
                match fed {
                    Ok(()) => Read::Events,
                    Err(t) => Read::Fatal(Error::InvalidResponse {
                        status: 0,
                        detail: format!(
                            "an SSE event is larger than the limit of {} bytes",
                            t.limit
                        ),
                    }),
                }
            }
        }
    }

    /// Ends the connection; the next call reconnects after a backoff.
    fn end_connection(&mut self, why: &str, count: bool) {
        if self.conn.take().is_none() {
            return;
        }
        self.ready.clear();
        self.stats.disconnects += 1;
        tracing::debug!(position = ?self.position, "stream ended ({why}); resuming");
        if count && !self.delivered_since_connect {
            self.failures += 1;
        }
        self.schedule();
    }

    /// The wait before a first reconnect: the bridge's latest `retry:`, else
    /// the policy's `initial_delay`. After failed attempts the backoff grows
    /// from at least `initial_delay`: a `retry: 0` (which a proxy may send)
    /// would otherwise make every later wait 0, a tight loop of connects while
    /// the bridge is down.
    fn reconnect_base(&self) -> Duration {
        let initial = self.transport.config.reconnect.initial_delay;
        match self.retry {
            Some(r) if self.failures == 0 => r,
            Some(r) => r.max(initial),
            None => initial,
        }
    }

    /// The wait before the next connect, before jitter.
    fn reconnect_delay(&self) -> Duration {
        self.transport
            .config
            .reconnect
            .delay(self.reconnect_base(), self.failures)
    }

    fn schedule(&mut self) {
        let delay = self.reconnect_delay();
        let now = tokio::time::Instant::now();
        // A `max_delay` near `Duration::MAX` must not overflow the clock.
        let at = now
            .checked_add(jittered(delay))
            .unwrap_or_else(|| now + Duration::from_secs(365 * 24 * 3600));
        self.next_attempt_at = Some(at);
    }

    /// An event from the wire: the bridge's final events (`lagged`,
    /// `shutdown`, `error`, `unauthenticated`) end the connection; everything
    /// else becomes an item.
    fn handle(&mut self, ev: SseEvent) -> Option<Result<T, Error>> {
        // Final events carry no id; an event of the log always does (and an
        // agent may well name its own event type `shutdown` or `error`).
        let is_final = !ev.has_id
            && matches!(
                ev.event.as_str(),
                "lagged" | "shutdown" | "error" | "unauthenticated"
            );
        if is_final {
            // The bridge's final events say where to resume: everything up to
            // `resume_after` was delivered. It moves the position forward
            // (never back), and gives one to a stream opened without a position
            // on a bridge that named none when it connected.
            #[derive(serde::Deserialize)]
            struct Final {
                resume_after: u64,
            }
            if let Ok(f) = serde_json::from_str::<Final>(&ev.data) {
                self.position = Some(
                    self.position
                        .map_or(f.resume_after, |p| p.max(f.resume_after)),
                );
            }
        }
        match ev.event.as_str() {
            _ if !is_final => {}
            "lagged" => {
                self.stats.lagged += 1;
                self.end_connection("cut off as a slow consumer", false);
                return None;
            }
            "shutdown" => {
                self.stats.shutdowns += 1;
                // The bridge is going away: back off as after a failure.
                self.failures += 1;
                self.end_connection("the bridge is shutting down", false);
                return None;
            }
            "error" => {
                self.failures += 1;
                self.end_connection("the bridge ended the stream on an error", true);
                return None;
            }
            "unauthenticated" => {
                // The credential stopped holding (agent revoked, key retired,
                // token expired or revoked): the reconnect says so as a 401,
                // unless the credential was renewed meanwhile.
                self.failures += 1;
                self.end_connection("the credential no longer holds", true);
                return None;
            }
            _ => {}
        }
        let seq = if ev.has_id {
            match ev.last_event_id.trim().parse::<u64>() {
                Ok(s) => Some(s),
                Err(_) => {
                    return Some(Err(Error::InvalidResponse {
                        status: 0,
                        detail: format!("SSE id {:?} is not a sequence number", ev.last_event_id),
                    }));
                }
            }
        } else {
            None
        };
        if let Some(s) = seq {
            self.position = Some(s);
        }
        self.delivered_since_connect = true;
        self.failures = 0;
        let seq = seq.or(self.position).unwrap_or(0);
        Some(
            (self.decode)(&ev, seq).map_err(|detail| Error::InvalidResponse {
                status: 200,
                detail,
            }),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Answers the n-th connection with `answers[n]`, then closes it.
    async fn serve(answers: Vec<String>) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            for answer in answers {
                let Ok((mut conn, _)) = listener.accept().await else {
                    return;
                };
                let mut buf = vec![0u8; 16 * 1024];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = conn.write_all(answer.as_bytes()).await;
                let _ = conn.shutdown().await;
            }
        });
        url
    }

    /// Reads the current connection to its end, as `next` would.
    async fn read_to_end(s: &mut AgentStream) {
        loop {
            match s.read().await {
                Read::Events => {}
                Read::Ended(why) => {
                    s.end_connection(why, true);
                    return;
                }
                Read::Fatal(e) => panic!("{e}"),
            }
        }
    }

    #[tokio::test]
    async fn a_retry_line_sets_the_reconnect_wait_for_the_rest_of_the_stream() {
        let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\
                    connection: close\r\n\r\n";
        let url = serve(vec![
            format!("{head}retry: 3000\nid: 1\nevent: note\ndata: 1\n\n"),
            // The second connection says nothing about the wait.
            format!("{head}id: 2\nevent: note\ndata: 2\n\n"),
        ])
        .await;
        let client = Client::builder()
            .base_url(&url)
            .bearer_token("lht1.test")
            .build()
            .unwrap();
        let mut s = client.agent_stream(None);
        let initial = client.config().reconnect.initial_delay;
        assert_eq!(s.reconnect_delay(), initial);
        assert_eq!(s.next().await.unwrap().unwrap().seq, 1);
        assert_eq!(s.reconnect_delay(), Duration::from_millis(3000));
        read_to_end(&mut s).await;
        // Connect again at once instead of waiting the 1.5 to 3 s.
        s.next_attempt_at = None;
        s.connect().await.unwrap();
        assert_eq!(s.stats().connects, 2);
        assert_eq!(s.next().await.unwrap().unwrap().seq, 2);
        assert_eq!(
            s.reconnect_delay(),
            Duration::from_millis(3000),
            "kept across connections"
        );
        read_to_end(&mut s).await;
        let left = s
            .next_attempt_at
            .expect("a reconnect is scheduled")
            .saturating_duration_since(tokio::time::Instant::now());
        assert!(left > Duration::from_millis(1000), "{left:?}");
    }

    #[tokio::test]
    async fn a_retry_of_zero_still_leaves_failed_connects_a_backoff() {
        let client = Client::builder()
            .base_url("http://127.0.0.1:9")
            .bearer_token("lht1.test")
            .build()
            .unwrap();
        let mut s = client.agent_stream(None);
        s.retry = Some(Duration::ZERO);
        assert_eq!(
            s.reconnect_delay(),
            Duration::ZERO,
            "the bridge asked for it"
        );
        s.failures = 3;
        assert!(
            s.reconnect_delay() >= client.config().reconnect.initial_delay,
            "{:?}",
            s.reconnect_delay()
        );
    }
}
