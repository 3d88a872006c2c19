//! `lighthouse-client`: a typed async client of the Lighthouse bridge
//! (PROTOCOL.md sections 2 to 11).
//!
//! What it is for: agents, the `lighthouse` command line and the operations
//! tools talking to a remote bridge. Every route has a typed method taking and
//! returning the wire types of [`lighthouse_core::api`]; [`Client`] implements
//! [`lighthouse_core::Control`], so the operations tools run unchanged against a
//! remote bridge. What it is not for: serving (see `lighthouse-http`) or any
//! state of its own beyond a connection pool.
//!
//! # Invariants
//! - Every attempt of every request is signed afresh (PROTOCOL.md 2.2): a new
//!   nonce, the current time of the injected clock, the path and query exactly as
//!   the URL puts them on the wire. Or it carries the bearer token.
//! - A request is sent again only when repeating it cannot act twice: reads
//!   (`GET`, and `POST /v1/ops/verify`), creates carrying an `Idempotency-Key`
//!   ([`Client::elicit`] generates one per logical create), appends carrying an
//!   event `id`, and flag kills (a kill of a killed flag writes nothing). Any
//!   request is sent again when it provably never reached a handler: the
//!   connection could not be made, or the bridge answered `429` (within
//!   [`RetryPolicy::max_retry_after`]). Everything else (a flag `PUT`, with or
//!   without `expected_version`, included) fails at once.
//! - Errors: a non-2xx answer is [`Error::Refused`] with the bridge's
//!   [`Problem`](lighthouse_core::api::Problem); no answer is
//!   [`Error::Transport`], which [`Error::problem`] maps to `503 unavailable`. A
//!   2xx whose body broke off is [`Error::InvalidResponse`] with that status
//!   (`500 internal`), never `unavailable`: the bridge acted, so sending the
//!   request again could act twice.
//! - Streams ([`Client::agent_stream`], [`Client::event_stream`]) resume by
//!   themselves with `Last-Event-ID` after any disconnect, with a bounded,
//!   jittered backoff: items are handed out in sequence order, none missed, none
//!   repeated. An agent stream opened without a position resumes, until it has
//!   handed something out, from the position the bridge named when it connected
//!   (`X-Lighthouse-Resume-After`), from which the bridge sends everything the
//!   lost connection would have. Memory is bounded: response bodies, error
//!   bodies and SSE events each have a configured size limit.
//!
//! # Example
//! ```no_run
//! use lighthouse_client::Client;
//! use lighthouse_core::api::CreateRequest;
//! use serde_json::json;
//!
//! # async fn run() -> Result<(), lighthouse_client::Error> {
//! let alice = Client::from_credential_file("credentials/alice.json")?;
//! let schema = json!({"type": "object", "properties": {"port": {"type": "integer"}}});
//! let created = alice.elicit(&CreateRequest::new("bob", "Which port?", schema)).await?;
//! let done = alice.wait_terminal(&created.id, std::time::Duration::from_secs(30)).await?;
//! println!("{:?}", done.response);
//!
//! let bob = Client::from_credential_file("credentials/bob.json")?;
//! let mut stream = bob.agent_stream(None);
//! while let Some(event) = stream.next().await {
//!     println!("{} {}", event?.seq, stream.position().unwrap_or(0));
//! }
//! # Ok(()) }
//! ```
#![warn(missing_docs)]
// `Problem` (about 136 bytes) travels inside `Error`; errors are the cold path.
#![allow(clippy::result_large_err)]

mod admin;
mod client;
mod config;
mod control;
mod elicitations;
mod error;
pub mod sse;
mod stream;
mod transport;

pub use client::{Client, ClientBuilder};
pub use config::{
    ClientConfig, DEFAULT_CONNECT_TIMEOUT, DEFAULT_MAX_ERROR_BODY_BYTES,
    DEFAULT_MAX_RESPONSE_BYTES, DEFAULT_MAX_SSE_EVENT_BYTES, DEFAULT_REQUEST_TIMEOUT,
    DEFAULT_STREAM_IDLE_TIMEOUT, ReconnectPolicy, RetryPolicy,
};
pub use elicitations::{Created, ListElicitations, Mailbox, ReceiveMessages, idempotency_key};
pub use error::Error;
pub use lighthouse_event_store::{Clock, ManualClock, SharedClock, SystemClock};
pub use stream::{
    AgentEvent, AgentPayload, AgentStream, EventStreamFilter, EventTail, ResumingStream,
    StreamStats,
};
