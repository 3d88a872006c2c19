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
pub use config::BridgeConfig;
pub use control::{Control, InProcess};
pub use events::{MAX_EVENTS_LIMIT, OPS_STREAM, RESERVED_TYPE_PREFIXES};
pub use operations::{MAX_FLAG_HISTORY, MAX_STATS_WINDOW_S, MAX_WAIT_MS, wait_duration};

/// Put on an HTTP response (as an extension) by a handler that waited for
/// something outside the bridge's control (a long-poll, a tool call waiting for
/// an answer): the HTTP layer leaves that time out of request latency
/// (PROTOCOL.md 9, `http.latency_ms`). Shared here so that the REST routes and
/// `/mcp` mark their responses the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Waited(pub std::time::Duration);
