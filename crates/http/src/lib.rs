//! `lighthouse-http`: the bridge's HTTP API (PROTOCOL.md sections 2 to 11) as an
//! axum [`Router`], so another Rust service can mount it.
//!
//! What it is for: authentication middleware (signatures and bearer tokens
//! through the bridge's gate), body limits, `application/problem+json` errors
//! (the one place problem codes become statuses), long-polling, SSE streams with
//! resume by `Last-Event-ID`, health and `/metrics`, per-route metrics and one
//! tracing span per request. What it is not for: any state of its own; every
//! operation is a call on [`lighthouse_core::Bridge`].
//!
//! # Example
//! ```no_run
//! # async fn run(bridge: lighthouse_core::Bridge) -> std::io::Result<()> {
//! let (router, shutdown) = lighthouse_http::router(bridge, lighthouse_http::HttpConfig::default());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8765").await?;
//! axum::serve(listener, router).await?;
//! # drop(shutdown); Ok(()) }
//! ```
#![warn(missing_docs)]
#![allow(clippy::result_large_err)]

mod admin;
mod auth;
mod elicit;
mod error;
mod health;
mod observe;
mod stall;
mod state;
mod stream;

use axum::Router;
use axum::middleware::{from_fn, from_fn_with_state};
use axum::routing::{get, post};
use lighthouse_core::Bridge;
use tower_http::catch_panic::CatchPanicLayer;

pub use elicit::{IDEMPOTENCY_KEY, IDEMPOTENT_REPLAYED};
pub use error::{ApiError, PROBLEM_JSON, parse_json, parse_query};
pub use observe::REQUEST_ID_HEADER;
pub use state::{AppState, HttpConfig, RequestId, ShutdownSignal};
pub use stream::RESUME_AFTER_HEADER;

/// The whole API. Returns the router and the signal that ends open streams on
/// shutdown.
pub fn router(bridge: Bridge, config: HttpConfig) -> (Router, ShutdownSignal) {
    router_with(bridge, config, Router::new())
}

/// [`router`] with `extra` routes (for example `lighthouse_mcp`'s `/mcp`)
/// mounted inside the same observability: each of their requests gets a request
/// id (echoed in `X-Request-Id`), the request span and log line, and the
/// per-route metrics under its route template. Their own authentication stays
/// theirs. (Routers merged onto the result of [`router`] afterwards get none of
/// this.)
pub fn router_with(bridge: Bridge, config: HttpConfig, extra: Router) -> (Router, ShutdownSignal) {
    let (state, shutdown) = AppState::new(bridge, config);
    let api = Router::new()
        .route("/v1/elicitations", post(elicit::create).get(elicit::list))
        .route("/v1/elicitations/{id}", get(elicit::get))
        .route("/v1/elicitations/{id}/respond", post(elicit::respond))
        .route("/v1/elicitations/{id}/cancel", post(elicit::cancel))
        .route("/v1/stream", get(stream::agent_stream))
        .route(
            "/v1/messages",
            post(elicit::send_message).get(elicit::messages),
        )
        .route(
            "/v1/events",
            post(admin::append_event).get(admin::query_events),
        )
        .route("/v1/events/stream", get(stream::event_stream))
        .route("/v1/flags", get(admin::list_flags))
        .route("/v1/flags/{key}", get(admin::get_flag).put(admin::put_flag))
        .route("/v1/flags/{key}/kill", post(admin::kill_flag))
        .route("/v1/flags/{key}/unkill", post(admin::unkill_flag))
        .route("/v1/flags/{key}/history", get(admin::flag_history))
        .route("/v1/flags/{key}/evaluate", get(admin::evaluate_flag))
        .route("/v1/ops/stats", get(admin::stats))
        .route("/v1/ops/drain", post(admin::drain))
        .route("/v1/ops/verify", post(admin::verify))
        .route("/v1/agents", get(admin::list_agents).post(admin::add_agent))
        // `me` is reserved (no agent can be registered as it); a store from
        // before the reservation may hold one, which DELETE revokes.
        .route(
            "/v1/agents/me",
            get(admin::me).delete(admin::revoke_agent_named_me),
        )
        .route("/v1/agents/{id}/rotate", post(admin::rotate_agent))
        .route(
            "/v1/agents/{id}",
            axum::routing::delete(admin::revoke_agent),
        )
        .route("/v1/sessions", post(admin::create_session))
        .route(
            "/v1/sessions/current",
            axum::routing::delete(admin::end_session),
        )
        .route_layer(from_fn_with_state(state.clone(), auth::authenticate));
    let open = Router::new()
        .route("/health/live", get(health::live))
        .route("/health/ready", get(health::ready))
        .route("/metrics", get(health::metrics));
    let router = api
        .merge(open)
        .layer(axum::middleware::map_response(error::problems_only))
        .with_state(state.clone())
        .merge(extra)
        .fallback(|| async { ApiError(lighthouse_core::api::Problem::not_found("route")) })
        .route_layer(from_fn(auth::mark_route))
        // Inside `observe`, so that a handler's panic becomes a recorded
        // `500 internal` (one that unwound through `observe` would leave
        // `errors_5xx` at 0, and the connection would just be closed).
        .layer(CatchPanicLayer::custom(error::panic_response))
        .layer(from_fn_with_state(state, observe::observe));
    // axum adds `Allow` to a `405` as the answer leaves the matched route,
    // outside every layer of `router`: the problem naming the methods is made
    // one level out, where the header is there to read.
    let router = Router::new()
        .fallback_service(router)
        .layer(axum::middleware::map_response(error::method_not_allowed));
    (router, shutdown)
}
