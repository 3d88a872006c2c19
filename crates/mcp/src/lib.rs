//! `lighthouse-mcp`: the Lighthouse tools of PROTOCOL.md section 12 over the
//! Model Context Protocol, with the official Rust SDK (`rmcp`).
//!
//! What it is for: [`router`] serves `POST/GET/DELETE /mcp` (Streamable HTTP)
//! on an in-process [`Bridge`](lighthouse_core::Bridge), to merge next to the
//! REST router; [`serve_stdio`] serves the same tools over stdio, forwarding to
//! a remote bridge through a [`Backend`] (the `lighthouse-bridge mcp` proxy;
//! [`lighthouse_client::Client`] implements [`Backend`], and the
//! `lighthouse-mcp-proxy --credential FILE` binary of this crate is that proxy
//! on its own).
//! What it is not for: any state of its own. Every tool is a call on the
//! bridge (or on its REST API) as one agent.
//!
//! # Invariants
//! - Nothing runs for a request that is not authenticated: every `/mcp`
//!   request carries a bearer token (PROTOCOL.md 2.3; signatures are not
//!   accepted here) and is admitted by [`Bridge::admit`](lighthouse_core::Bridge::admit)
//!   before rmcp sees it; a missing, malformed, expired or revoked token is
//!   `401` with a problem body. A request whose `Origin` is present and not
//!   allowed is `403`.
//! - Every HTTP error of `/mcp` outside a JSON-RPC body (the admission
//!   layer's, and rmcp's plain-text `405`, `406`, `415`, `400`, `5xx`) is
//!   `application/problem+json` (PROTOCOL.md 3).
//! - A tool call is admitted as the REST route it stands for (same permission,
//!   rate-limit class and audit record), acts as the token's agent, and its
//!   request id is the `correlation_id` of the events it writes.
//! - Every result carries the REST response body as `structuredContent` and
//!   the same JSON as a text item; every failure is a tool result with
//!   `isError: true` carrying the problem body of PROTOCOL.md section 3.
//! - The endpoint is stateless (no MCP sessions): what it keeps per request
//!   (the running tool calls a `notifications/cancelled` can stop) is bounded
//!   and goes with the request's response; a waiting tool call ends when its
//!   agent cancels it or its client closes its stream.
//!
//! # Example
//! ```no_run
//! # async fn run(bridge: lighthouse_core::Bridge) -> std::io::Result<()> {
//! // Mounted next to the REST API, inside its request ids, logs and metrics.
//! let mcp = lighthouse_mcp::router(bridge.clone(), lighthouse_mcp::McpConfig::default());
//! let (app, _shutdown) =
//!     lighthouse_http::router_with(bridge, lighthouse_http::HttpConfig::default(), mcp);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8765").await?;
//! axum::serve(listener, app).await
//! # }
//! ```
#![warn(missing_docs)]
// `Problem` is the protocol's error body; errors are the cold path.
#![allow(clippy::result_large_err)]

mod admission;
mod answer;
mod backend;
mod config;
mod error;
mod remote;
mod running;
mod server;
mod stdio;
pub mod tools;
mod transport;

pub use backend::{Backend, BridgeBackend, TOKEN_RECHECK_INTERVAL};
pub use config::{
    DEFAULT_EXPIRY_GRACE, DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_CANCELLABLE_CALLS,
    DEFAULT_MAX_CONCURRENT_CALLS, DEFAULT_PROGRESS_INTERVAL, DEFAULT_SSE_KEEP_ALIVE, McpConfig,
};
pub use error::Error;
pub use server::{BridgeTools, ProxyTools};
pub use stdio::{serve_io, serve_stdio};
pub use transport::{
    MCP_PATH, McpShutdown, PROBLEM_JSON, REQUEST_ID_HEADER, router, router_with_shutdown,
};

/// The MCP protocol revisions served: those of the `rmcp` version built
/// against, oldest first.
pub fn protocol_revisions() -> Vec<&'static str> {
    rmcp::model::ProtocolVersion::KNOWN_VERSIONS
        .iter()
        .map(|v| v.as_str())
        .collect()
}
