//! `/mcp` over Streamable HTTP: the admission layer (Origin check, body limit,
//! bearer token through [`Bridge::admit`]) in front of rmcp's stateless
//! Streamable HTTP service.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use http_body_util::LengthLimitError;
use lighthouse_core::api::{ErrorCode, Problem};
use lighthouse_core::{AnsweredInBody, Bridge, ToolOutcome, WaitMeter, Waited, caused_by};
use lighthouse_security::{
    AuthHeaders, Caller, HEADER_AGENT, HEADER_AUTHORIZATION, HEADER_KEY_ID, HEADER_NONCE,
    HEADER_SIGNATURE, HEADER_TIMESTAMP,
};
use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;

use crate::admission::{RouteClass, classify, malformed_tool_call, rmcp_reads};
use crate::answer::{CallBody, MIN_KEEP_ALIVE, PendingAnswer, held_answer, invalid_params};
use crate::config::McpConfig;
use crate::running::{RunningCalls, token_digest};
use crate::server::BridgeTools;

/// The path the endpoint is served at.
pub const MCP_PATH: &str = "/mcp";
/// The media type of error bodies (RFC 9457).
pub const PROBLEM_JSON: &str = "application/problem+json";
/// The header whose value (1 to 128 of `[A-Za-z0-9_.:-]`) becomes the
/// correlation id of a tool call's events; a fresh ULID otherwise.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The outcome of admitting one `/mcp` request, for the tool handler.
#[derive(Debug, Clone)]
pub(crate) struct Admission {
    /// The tool the request calls, when it is a `tools/call` of one of ours.
    pub(crate) tool: Option<String>,
    /// The caller, or the problem (`forbidden`, `rate_limited`, `unavailable`)
    /// the tool call answers with.
    pub(crate) outcome: Result<Caller, Problem>,
    /// The `Authorization: Bearer` value the request was admitted with, so
    /// that a long wait can check the token is still valid (not expired, not
    /// revoked).
    pub(crate) token: Option<Arc<[u8]>>,
    /// Where the tool call's long-polls add the time they are blocked
    /// waiting for others (an answer, a message): left out of the request's
    /// latency, as for the REST long-polls.
    pub(crate) waited: WaitMeter,
    /// Set by the tool handler when it answers (`500` if it panicked), so the
    /// request is recorded with how it ended rather than how its stream did.
    pub(crate) answered: ToolOutcome,
    /// Fired when the caller's `notifications/cancelled` names this call
    /// (`None` when the call could not be registered for one).
    pub(crate) cancelled: Option<CancellationToken>,
}

/// Ends every open `/mcp` response stream (and so every waiting tool call)
/// when triggered; dropping it does nothing.
#[derive(Debug, Clone)]
pub struct McpShutdown(CancellationToken);

impl McpShutdown {
    /// Ends every open `/mcp` stream.
    pub fn trigger(&self) {
        self.0.cancel();
    }
}

#[derive(Clone)]
struct GuardState {
    bridge: Bridge,
    config: Arc<McpConfig>,
    /// Bytes of request body that may be buffered now.
    body_budget: Arc<tokio::sync::Semaphore>,
    /// The tool calls a `notifications/cancelled` can stop.
    running: Arc<RunningCalls>,
}

/// The `/mcp` endpoint (`POST`, `GET`, `DELETE`) on `bridge`, to merge next to
/// the REST router.
pub fn router(bridge: Bridge, config: McpConfig) -> Router {
    router_with_shutdown(bridge, config).0
}

/// [`router`], with the handle that ends open streams on shutdown.
pub fn router_with_shutdown(bridge: Bridge, config: McpConfig) -> (Router, McpShutdown) {
    if let Err(e) = config.check_allowed_origins() {
        // Refused at startup by the bridge binary; a library caller that
        // skipped the check gets an entry that matches nothing.
        tracing::error!(error = %e, "an MCP allowed origin will never match");
    }
    let config = Arc::new(config);
    let ct = CancellationToken::new();
    // Stateless: every POST carries its own bearer token and is admitted on
    // its own, so the bridge keeps no MCP session state (nothing another
    // agent could take over). A client's cancellation reaches a waiting tool
    // by the response stream closing, or by a `notifications/cancelled` of
    // the same agent naming it (`RunningCalls`: rmcp drops notifications
    // here).
    let rmcp_config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(false)
        .with_json_response(false)
        .with_sse_keep_alive(Some(config.sse_keep_alive))
        .with_max_request_body_bytes(config.max_body_bytes)
        .with_cancellation_token(ct.clone())
        // Origin is checked by the admission layer (with problem bodies); a
        // Host allow list would break every bridge reached by name, and every
        // request must carry a token anyway.
        .disable_allowed_hosts()
        .disable_allowed_origins();
    let service = {
        let bridge = bridge.clone();
        let config = config.clone();
        StreamableHttpService::new(
            move || Ok(BridgeTools::new(bridge.clone(), config.clone())),
            Arc::new(NeverSessionManager::default()),
            rmcp_config,
        )
    };
    let body_budget = Arc::new(tokio::sync::Semaphore::new(
        config
            .max_buffered_body_bytes
            .min(tokio::sync::Semaphore::MAX_PERMITS),
    ));
    let state = GuardState {
        bridge,
        running: RunningCalls::new(config.max_cancellable_calls, config.body_read_timeout),
        config,
        body_budget,
    };
    let router = Router::new()
        .route_service(MCP_PATH, service)
        .layer(from_fn_with_state(state, guard));
    (router, McpShutdown(ct))
}

/// A problem as an HTTP response.
pub(crate) fn problem_response(p: &Problem) -> Response {
    let status = StatusCode::from_u16(p.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = serde_json::to_vec(p).unwrap_or_else(|_| b"{}".to_vec());
    let mut resp = (status, body).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    if p.code == ErrorCode::RateLimited {
        let secs = p.retry_after_s.unwrap_or(1).max(1);
        if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
            h.insert(header::RETRY_AFTER, v);
        }
    }
    if status == StatusCode::UNAUTHORIZED {
        h.insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"lighthouse\""),
        );
    }
    resp
}

async fn guard(State(st): State<GuardState>, req: Request, next: Next) -> Response {
    // DNS-rebinding protection (MCP transport): a browser page of another
    // origin is refused before anything else.
    if let Some(origin) = req.headers().get(header::ORIGIN) {
        let allowed = origin.to_str().is_ok_and(|o| st.config.origin_allowed(o));
        if !allowed {
            return problem_response(&Problem::new(
                ErrorCode::Forbidden,
                "this Origin is not allowed to use /mcp; add it to the bridge's MCP allowed origins",
            ));
        }
    }
    let (mut parts, body) = req.into_parts();
    // Every request must carry a valid bearer token, and checking one needs no
    // body: a request without one is refused before its body may take any of
    // the shared budget (admitted as the bare transport, so that the refusal
    // is counted and audited as any other).
    let token_valid = parts.headers.get(header::AUTHORIZATION).is_some_and(|v| {
        let now = st.bridge.clock().now();
        let verifier = st.bridge.gate().verifier();
        verifier.verify_bearer(v.as_bytes(), now).is_ok()
    });
    if !token_valid {
        let class = classify(parts.method.as_str(), b"");
        if let (Err(p), _) = admit(&st.bridge, &parts.headers, &class) {
            return problem_response(&signature_not_taken(p, &parts.headers));
        }
    }
    let limit = st.config.max_body_bytes;
    let too_large = || {
        problem_response(&Problem::new(
            ErrorCode::PayloadTooLarge,
            format!("request bodies are limited to {limit} bytes"),
        ))
    };
    // As the REST API does: reserve the body's size in a shared budget, then
    // read it within a deadline, so neither a trickled body nor many large
    // ones can hold memory or a connection without bound.
    let deadline = tokio::time::Instant::now() + st.config.body_read_timeout;
    let reserve = match axum::body::HttpBody::size_hint(&body).exact() {
        _ if axum::body::HttpBody::is_end_stream(&body) => 0,
        Some(n) if n > limit as u64 => return too_large(),
        Some(n) => n as usize,
        None => limit,
    };
    let reserved = if reserve == 0 {
        None
    } else {
        let want =
            u32::try_from(reserve.min(st.config.max_buffered_body_bytes)).unwrap_or(u32::MAX);
        let acquire = st.body_budget.clone().acquire_many_owned(want);
        match tokio::time::timeout_at(deadline, acquire).await {
            Ok(Ok(permit)) => Some(permit),
            _ => {
                return problem_response(&Problem::new(
                    ErrorCode::Unavailable,
                    "the bridge is receiving too many request bodies at once; retry shortly",
                ));
            }
        }
    };
    let bytes = match tokio::time::timeout_at(
        deadline,
        axum::body::to_bytes(body, limit.saturating_add(1)),
    )
    .await
    {
        Ok(Ok(b)) if b.len() <= limit => b,
        Err(_) => {
            return problem_response(&Problem::new(
                ErrorCode::InvalidRequest,
                format!(
                    "the request body did not arrive within {} ms",
                    st.config.body_read_timeout.as_millis()
                ),
            ));
        }
        Ok(Err(e)) if !caused_by::<LengthLimitError>(&e) => {
            // A body cut short, a broken chunk encoding: not a size problem.
            return problem_response(&Problem::new(
                ErrorCode::InvalidRequest,
                format!("the request body could not be read: {e}"),
            ));
        }
        _ => return too_large(),
    };
    let class = classify(parts.method.as_str(), &bytes);
    let (admitted, token) = admit(&st.bridge, &parts.headers, &class);
    let outcome = match admitted {
        Ok(caller) => Ok(caller),
        // Nothing runs for a request that is not authenticated.
        Err(p) if p.status == 401 => return problem_response(&p),
        // A tool call refused after authentication answers with a tool error.
        Err(p) if class.tool.is_some() => Err(p),
        Err(p) => return problem_response(&p),
    };
    // rmcp would answer "method not found" to a tools/call whose params are
    // not a tool call's; JSON-RPC's answer is "invalid params". Only for a
    // request rmcp would read (else its own refusal, 406, 415 or 400, stands),
    // and only for an admitted agent: a refused one gets its refusal (with
    // its `Retry-After`), there being no tool call to carry it as a tool
    // error.
    if parts.method == http::Method::POST
        && rmcp_reads(&parts.headers)
        && let Some((id, why)) = malformed_tool_call(&bytes)
    {
        return match &outcome {
            Ok(_) => invalid_params(id, why),
            Err(p) => problem_response(p),
        };
    }
    // A cancellation names a request of the same agent (rmcp answers it
    // `202` and drops it: the endpoint is stateless). Another agent's
    // request of that id is not its to cancel, and is not found.
    // Nor is a request of another token of the agent (another client, whose
    // ids are its own).
    let token_digest = token_digest(token.as_deref());
    if let (Some(id), Ok(caller)) = (&class.cancels, &outcome) {
        let cancelled = st.running.cancel(&caller.agent, token_digest, id);
        tracing::debug!(request = %id, cancelled, "notifications/cancelled");
    }
    // Mounted inside `lighthouse_http::router_with`, the request carries the
    // meter its measurement reads (also if the call is dropped mid-wait).
    let outer_meter = parts.extensions.get::<WaitMeter>().cloned();
    let waited = outer_meter.clone().unwrap_or_default();
    let answered = class.tool.map(|_| ToolOutcome::default());
    // Registered until its response ends or is dropped (this future
    // included, while rmcp has not answered yet).
    let running = match (&outcome, class.call_id, &answered) {
        (Ok(caller), Some(id), Some(answered)) => {
            st.running
                .register(&caller.agent, token_digest, id, answered.clone())
        }
        _ => None,
    };
    parts.extensions.insert(Admission {
        tool: class.tool.map(str::to_owned),
        outcome,
        token,
        waited: waited.clone(),
        answered: answered.clone().unwrap_or_default(),
        cancelled: running.as_ref().map(|r| r.token().clone()),
    });
    // The budget is given back once rmcp has taken the body, not when the
    // response ends: a 2026-07-28 tool call's response waits for its first
    // message, up to the whole wait for an answer.
    let body = Body::new(BudgetedBody {
        bytes: Some(bytes),
        reserved,
    });
    // rmcp holds a 2026-07-28 request's response until the handler's first
    // message: a tool that waits without reporting progress would send
    // nothing, not even headers, for its whole wait. What rmcp has not
    // answered within the keep-alive interval is answered on an SSE stream
    // opened now instead, kept alive until rmcp's answer.
    let mut answer: PendingAnswer = Box::pin(next.run(Request::from_parts(parts, body)));
    let hold_after = st.config.sse_keep_alive.max(MIN_KEEP_ALIVE);
    let mut resp = match tokio::time::timeout(hold_after, answer.as_mut()).await {
        Ok(resp) => problem_shaped(resp).await,
        Err(_) => held_answer(answer, st.config.sse_keep_alive),
    };
    // rmcp answers a request of the `initialize` revisions on an SSE stream
    // opened before the handler has run (a tool call's whole work comes
    // after the headers), and a 2026-07-28 one that sends progress before
    // its result likewise: the request is timed to the stream's last event.
    let sse = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    if sse {
        resp.extensions_mut().insert(AnsweredInBody(answered));
    }
    if outer_meter.is_none() {
        // No outer layer reads the meter: say at least what was waited
        // before the response went out.
        let w = waited.waited();
        if !w.is_zero() {
            resp.extensions_mut().insert(Waited(w));
        }
    }
    // Only a stream is ended by a cancellation: a fixed-length answer
    // (a problem, rmcp's JSON-RPC error) is already whole, and cut short it
    // would make hyper abort the message (and close an HTTP/1 connection).
    // Its call is deregistered here (`running` dropped).
    match running {
        Some(call) if sse => resp.map(|body| Body::new(CallBody::new(body, call))),
        _ => resp,
    }
}

/// The signature headers of PROTOCOL.md 2.2.
const SIGNATURE_HEADERS: [&str; 5] = [
    HEADER_AGENT,
    HEADER_KEY_ID,
    HEADER_TIMESTAMP,
    HEADER_NONCE,
    HEADER_SIGNATURE,
];

/// A refusal of a request that came signed rather than with a token says so:
/// "no credentials" would be wrong, and the client needs to know what to send
/// instead. It stays `401 unauthenticated` (counted and audited as such).
fn signature_not_taken(mut p: Problem, headers: &HeaderMap) -> Problem {
    let signed = !headers.contains_key(header::AUTHORIZATION)
        && SIGNATURE_HEADERS.iter().any(|h| headers.contains_key(*h));
    if p.code == ErrorCode::Unauthenticated && signed {
        p.detail = format!(
            "{MCP_PATH} takes a bearer token (Authorization: Bearer, from POST /v1/sessions); \
             request signatures are not accepted here"
        );
    }
    p
}

/// rmcp's own refusals outside a JSON-RPC body (`405` for `GET` and `DELETE`,
/// `406` for a missing `Accept`, `415` for a body that is not JSON, `400` for
/// an unknown `MCP-Protocol-Version` header, an empty `500`) are plain text;
/// every error of the bridge is a problem (PROTOCOL.md 3), so they are turned
/// into one here, keeping their status. JSON-RPC error bodies
/// (`application/json`) are the protocol's own and stay as they are.
async fn problem_shaped(resp: Response) -> Response {
    let status = resp.status();
    let plain = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .is_none_or(|v| v.as_bytes().starts_with(b"text/plain"));
    if !(status.is_client_error() || status.is_server_error()) || !plain {
        return resp;
    }
    let text = axum::body::to_bytes(resp.into_body(), 1024)
        .await
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&text).trim().to_owned();
    let mut p = match status {
        StatusCode::METHOD_NOT_ALLOWED => {
            let mut p = Problem::new(
                ErrorCode::InvalidRequest,
                format!(
                    "this bridge's MCP endpoint is stateless (no sessions, no standalone \
                     stream): {MCP_PATH} takes POST only"
                ),
            );
            p.title = "Method not allowed".to_owned();
            p
        }
        StatusCode::PAYLOAD_TOO_LARGE => Problem::new(ErrorCode::PayloadTooLarge, text),
        StatusCode::UNAUTHORIZED => Problem::new(ErrorCode::Unauthenticated, text),
        StatusCode::FORBIDDEN => Problem::new(ErrorCode::Forbidden, text),
        StatusCode::NOT_FOUND => Problem::new(ErrorCode::NotFound, text),
        s if s.is_server_error() => {
            tracing::error!(status = s.as_u16(), detail = %text, "rmcp failed a request");
            return problem_response(&Problem::internal());
        }
        // As the REST API gives axum's `415` and the like: `invalid_request`
        // with their status.
        _ => Problem::new(ErrorCode::InvalidRequest, text),
    };
    if p.detail.is_empty() {
        p.detail = status.canonical_reason().unwrap_or("refused").to_owned();
    }
    p.status = status.as_u16();
    let mut out = problem_response(&p);
    if status == StatusCode::METHOD_NOT_ALLOWED {
        out.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
    }
    out
}

/// Admits an `/mcp` request counted as `class`, with its bearer token (the
/// `Authorization` value, for the re-checks of a long wait). Bearer tokens
/// only (PROTOCOL.md 2.3): signature headers are not passed on, so a request
/// without a token is refused as unauthenticated.
fn admit(
    bridge: &Bridge,
    headers: &HeaderMap,
    class: &RouteClass,
) -> (Result<Caller, Problem>, Option<Arc<[u8]>>) {
    let auth = AuthHeaders::from_pairs(
        headers
            .get_all(header::AUTHORIZATION)
            .iter()
            .map(|v| (HEADER_AUTHORIZATION, v.as_bytes())),
    );
    let request = lighthouse_security::Request {
        method: class.method,
        path: class.route,
        query: "",
        headers: auth,
        body: b"",
    };
    let token = auth
        .bearer()
        .and(headers.get(header::AUTHORIZATION))
        .map(|v| Arc::<[u8]>::from(v.as_bytes()));
    (bridge.admit(&request, class.action), token)
}

/// A request body already read whole, holding its share of the body budget
/// until it is taken.
struct BudgetedBody {
    bytes: Option<axum::body::Bytes>,
    reserved: Option<OwnedSemaphorePermit>,
}

impl http_body::Body for BudgetedBody {
    type Data = axum::body::Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        this.reserved = None;
        Poll::Ready(this.bytes.take().map(|b| Ok(http_body::Frame::data(b))))
    }

    fn is_end_stream(&self) -> bool {
        self.bytes.is_none()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.bytes.as_ref().map_or(0, |b| b.len() as u64))
    }
}

/// The request id of a tool call: `X-Request-Id` when it is 1 to 128 of
/// `[A-Za-z0-9_.:-]`, else a fresh ULID.
pub(crate) fn request_id(headers: Option<&HeaderMap>) -> String {
    headers
        .and_then(|h| h.get(REQUEST_ID_HEADER))
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            (1..=128).contains(&v.len())
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_.:-".contains(&b))
        })
        .map_or_else(|| ulid::Ulid::generate().to_string(), str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_taken_only_when_well_formed() {
        let mut h = HeaderMap::new();
        h.insert(REQUEST_ID_HEADER, HeaderValue::from_static("req-1:a.b_c"));
        assert_eq!(request_id(Some(&h)), "req-1:a.b_c");
        h.insert(REQUEST_ID_HEADER, HeaderValue::from_static("bad id"));
        let generated = request_id(Some(&h));
        assert_eq!(generated.len(), 26);
        assert!(generated.parse::<ulid::Ulid>().is_ok());
        assert_ne!(request_id(None), request_id(None));
    }

    async fn shaped(status: StatusCode, content_type: Option<&str>, body: &str) -> Response {
        let mut resp = (status, body.to_owned()).into_response();
        resp.headers_mut().remove(header::CONTENT_TYPE);
        if let Some(t) = content_type {
            resp.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_str(t).unwrap());
        }
        problem_shaped(resp).await
    }

    async fn body_of(r: Response) -> serde_json::Value {
        let bytes = axum::body::to_bytes(r.into_body(), 1 << 16).await.unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn rmcp_refusals_become_problems_and_json_rpc_bodies_stay() {
        // A 5xx says nothing of rmcp's internals.
        let r = shaped(
            StatusCode::INTERNAL_SERVER_ERROR,
            None,
            "session store: secret",
        )
        .await;
        assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(r.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
        let p = body_of(r).await;
        assert_eq!(p["code"], "internal");
        assert!(!p.to_string().contains("secret"), "{p}");
        // A plain-text 4xx keeps its status and says what rmcp said.
        let r = shaped(
            StatusCode::BAD_REQUEST,
            Some("text/plain; charset=utf-8"),
            "Bad Request: Invalid Host header encoding",
        )
        .await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        let p = body_of(r).await;
        assert_eq!(
            (p["code"].as_str(), p["status"].as_u64()),
            (Some("invalid_request"), Some(400))
        );
        assert_eq!(p["detail"], "Bad Request: Invalid Host header encoding");
        let r = shaped(StatusCode::NOT_ACCEPTABLE, None, "").await;
        let p = body_of(r).await;
        assert_eq!(
            (p["status"].as_u64(), p["detail"].as_str()),
            (Some(406), Some("Not Acceptable"))
        );
        // 405 names the one method taken.
        let r = shaped(StatusCode::METHOD_NOT_ALLOWED, None, "Method Not Allowed").await;
        assert_eq!(r.headers()[header::ALLOW], "POST");
        assert_eq!(body_of(r).await["status"], 405);
        // JSON-RPC errors, and successes, pass untouched.
        let rpc = r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32600,"message":"x"}}"#;
        let r = shaped(StatusCode::BAD_REQUEST, Some("application/json"), rpc).await;
        assert_eq!(r.headers()[header::CONTENT_TYPE], "application/json");
        assert_eq!(body_of(r).await["jsonrpc"], "2.0");
        let r = shaped(StatusCode::ACCEPTED, None, "").await;
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        assert!(!r.headers().contains_key(header::CONTENT_TYPE));
    }

    #[test]
    fn problems_carry_their_status_and_headers() {
        let r = problem_response(&Problem::new(ErrorCode::Unauthenticated, "no token"));
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(r.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
        assert!(r.headers().contains_key(header::WWW_AUTHENTICATE));
        let mut p = Problem::new(ErrorCode::RateLimited, "slow down");
        p.retry_after_s = Some(3);
        let r = problem_response(&p);
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(r.headers()[header::RETRY_AFTER], "3");
    }
}
