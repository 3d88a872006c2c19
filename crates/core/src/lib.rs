//! `lighthouse-core`: the [`Bridge`] engine, the wire [`api`] types and the
//! [`Control`] trait.
//!
//! What it is for: composing the event store, security, elicitation, flags and
//! metrics libraries into one engine with typed async operations that take an
//! authenticated [`Caller`](lighthouse_security::Caller); defining every request
//! and response of PROTOCOL.md once, for the server and the client; and the
//! operations surface ([`Control`]) the deploy, rollback and baseline tools are
//! written against. What it is not for: HTTP (see `lighthouse-http`) or storage
//! details (see `lighthouse-event-store`).
//!
//! # Invariants
//! - State is derived from the log: opening a bridge replays it (from snapshots
//!   where they exist); nothing that matters lives only in memory.
//! - Identity comes from the caller passed in, never from a body.
//! - Errors leave as [`api::Problem`]s with the codes of PROTOCOL.md section 3;
//!   internal causes are logged, not returned.
//!
//! # Example
//! ```no_run
//! use lighthouse_core::{Bridge, BridgeConfig};
//! use lighthouse_security::MasterKey;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let bridge = Bridge::open(BridgeConfig::new("./data", MasterKey::generate()?)).await?;
//! assert!(bridge.health().await.is_ok());
//! # Ok(()) }
//! ```
#![warn(missing_docs)]
// `Problem` is the protocol's error body (about 136 bytes); errors are the cold
// path and boxing every one would only add an allocation.
#![allow(clippy::result_large_err)]

pub mod api;
mod bridge;
mod config;
mod control;
mod events;
mod hooks;
mod operations;
pub mod problem;
pub mod setup;

pub use bridge::{Bridge, ELICITATION_FLAG, OpenError, refusal_problem};
pub use config::{BridgeConfig, FlagLimits};
pub use control::{Control, InProcess, OpsRecord};
pub use events::{MAX_EVENTS_LIMIT, OPS_STREAM, RESERVED_TYPE_PREFIXES};
pub use operations::{MAX_FLAG_HISTORY, MAX_STATS_WINDOW_S, MAX_WAIT_MS, wait_duration};

/// Put on an HTTP response (as an extension) by a handler that waited for
/// something outside the bridge's control and measured that wait itself
/// (`/mcp` mounted where no outer layer reads its [`WaitMeter`]): the HTTP
/// layer leaves that time out of request latency (PROTOCOL.md 9,
/// `http.latency_ms`). The long-polls and drains measure theirs with the
/// request's [`WaitMeter`] instead, which the HTTP layer reads also for a
/// request dropped mid-wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Waited(pub std::time::Duration);

/// The time a call spent blocked waiting for another agent (an answer, a
/// message). The HTTP layer puts one on each request (as an extension), passes
/// it to the long-polls, and leaves what it adds up out of request latency.
/// Shared here so that the REST routes and `/mcp` measure their waits the same
/// way.
pub use lighthouse_elicitation::WaitMeter;

/// Put on an HTTP response (as an extension) whose body carries an answer
/// still being worked out: an SSE response to an MCP request, which rmcp opens
/// before the handler has run. The HTTP layer then times the request to the
/// body's last event rather than to the response headers, so that the work is
/// in request latency (and the waits in the request's [`WaitMeter`] are not).
///
/// For a tool call it carries the call's [`ToolOutcome`]: the status to
/// record once the handler has answered (`200`, or `500` for a handler that
/// panicked). A body that ends before the handler answered (the bridge shut
/// down) is recorded as `503`; one the client drops after the answer was made
/// is recorded with the answer's status at its last event, not as `499`.
#[derive(Debug, Clone, Default)]
pub struct AnsweredInBody(pub Option<ToolOutcome>);

/// The status a tool call's handler answered with, set once when it answers
/// (see [`AnsweredInBody`]).
#[derive(Debug, Clone, Default)]
pub struct ToolOutcome(std::sync::Arc<std::sync::OnceLock<u16>>);

impl ToolOutcome {
    /// Records the status of the answer; later calls change nothing.
    pub fn answered(&self, status: u16) {
        let _ = self.0.set(status);
    }

    /// The status of the answer, once there is one.
    pub fn status(&self) -> Option<u16> {
        self.0.get().copied()
    }
}

/// Whether `e`, or an error in its chain of sources, is a `T`. The REST
/// routes and `/mcp` ask it of a failed body read, to tell a body over the size
/// limit (`http_body_util::LengthLimitError`, `413`) from one cut short or
/// malformed (`400`).
pub fn caused_by<T: std::error::Error + 'static>(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(e);
    while let Some(c) = cause {
        if c.is::<T>() {
            return true;
        }
        cause = c.source();
    }
    false
}

#[cfg(test)]
mod cause_tests {
    use super::caused_by;

    #[derive(Debug)]
    struct Outer(std::io::Error);
    impl std::fmt::Display for Outer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("outer")
        }
    }
    impl std::error::Error for Outer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn a_cause_is_found_anywhere_in_the_chain() {
        let e = Outer(std::io::Error::other("inner"));
        assert!(caused_by::<std::io::Error>(&e));
        assert!(caused_by::<Outer>(&e));
        assert!(!caused_by::<std::fmt::Error>(&e));
    }
}
