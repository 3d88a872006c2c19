//! The authentication middleware: body limit, then the seven checks of
//! PROTOCOL.md 2.2 through the bridge's gate, for every `/v1` route.

use axum::body::Body;
use axum::extract::rejection::RawPathParamsRejection;
use axum::extract::{MatchedPath, RawPathParams, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body_util::LengthLimitError;
use lighthouse_core::api::{ErrorCode, FieldError, Problem};
use lighthouse_core::caused_by;
use lighthouse_security::{Action, AuthHeaders};

use crate::error::ApiError;
use crate::observe::MatchedRoute;
use crate::state::AppState;

/// Tells the request's measurement which route template it matched (all
/// routes), before the handler runs: a request dropped or panicking mid-way
/// is still recorded under its route.
pub(crate) async fn mark_route(matched: Option<MatchedPath>, req: Request, next: Next) -> Response {
    if let (Some(m), Some(slot)) = (matched, req.extensions().get::<MatchedRoute>()) {
        slot.set(m.as_str());
    }
    next.run(req).await
}

/// The action a route needs, by method and template. `POST /v1/events` depends
/// on the body's stream and type.
pub(crate) fn action_for(method: &Method, route: &str, body: &[u8]) -> Action {
    use Action::*;
    // HEAD is a GET without the body (axum routes it to the GET handler), so
    // it needs exactly what GET needs.
    let m = if method == Method::HEAD {
        "GET"
    } else {
        method.as_str()
    };
    match (m, route) {
        ("POST", "/v1/elicitations") => Elicit,
        ("GET", "/v1/elicitations" | "/v1/elicitations/{id}") => ReadElicitations,
        ("POST", "/v1/elicitations/{id}/respond") => Respond,
        ("POST", "/v1/elicitations/{id}/cancel") => Cancel,
        ("GET", "/v1/stream") => OpenOwnStream,
        ("POST", "/v1/messages") => SendMessage,
        ("GET", "/v1/messages") => ReadMessages,
        ("POST", "/v1/events") => {
            #[derive(serde::Deserialize)]
            struct Target {
                stream: String,
                #[serde(rename = "type")]
                event_type: String,
            }
            match serde_json::from_slice::<Target>(body) {
                Ok(t) => lighthouse_security::append_action(&t.stream, &t.event_type)
                    .unwrap_or(AppendReservedEvent),
                // The handler answers 400 for a malformed body.
                Err(_) => AppendEvent,
            }
        }
        ("GET", "/v1/events" | "/v1/events/stream") => ReadEvents,
        ("GET", r) if r.starts_with("/v1/flags") => ReadFlags,
        (_, r) if r.starts_with("/v1/flags") => WriteFlags,
        ("GET", "/v1/ops/stats") => ReadOpsStats,
        ("POST", "/v1/ops/drain") => Drain,
        ("POST", "/v1/ops/verify") => VerifyStore,
        ("GET", "/v1/agents/me") => WhoAmI,
        ("GET", "/v1/agents") => ListAgents,
        (_, r) if r.starts_with("/v1/agents") => ManageAgents,
        (_, r) if r.starts_with("/v1/sessions") => ManageOwnSession,
        ("POST", "/mcp") | ("GET", "/mcp") | ("DELETE", "/mcp") => UseMcp,
        _ => WhoAmI,
    }
}

/// Whether the route reads query parameters; every other route refuses them,
/// as the routes that read them refuse unknown ones (a misspelt parameter is an
/// error, never silently ignored).
fn takes_query(method: &Method, route: &str) -> bool {
    let get = method == Method::GET || method == Method::HEAD;
    get && matches!(
        route,
        "/v1/elicitations"
            | "/v1/elicitations/{id}"
            | "/v1/stream"
            | "/v1/messages"
            | "/v1/events"
            | "/v1/events/stream"
            | "/v1/flags/{key}/history"
            | "/v1/flags/{key}/evaluate"
            | "/v1/ops/stats"
    )
}

/// Buffers the body (refusing more than the limit), verifies the signature or
/// token, nonce, rate limit and role, and hands the handler a [`Caller`].
pub(crate) async fn authenticate(
    State(st): State<AppState>,
    matched: Option<MatchedPath>,
    params: Result<RawPathParams, RawPathParamsRejection>,
    req: Request,
    next: Next,
) -> Response {
    let (mut parts, body) = req.into_parts();
    let limit = st.config.max_body_bytes;
    let within = st.config.body_read_timeout;
    let deadline = tokio::time::Instant::now() + within;
    // Reserve the body's size in the shared budget before reading it: its
    // exact length when known (hyper knows it from `Content-Length`), else the
    // whole limit (chunked, or an HTTP/2 body without a length). "No body" is
    // read off the body itself: HTTP/2 need not say it with a header.
    let too_large = || {
        ApiError(Problem::new(
            ErrorCode::PayloadTooLarge,
            format!("request bodies are limited to {limit} bytes"),
        ))
        .into_response()
    };
    let reserve = match axum::body::HttpBody::size_hint(&body).exact() {
        _ if axum::body::HttpBody::is_end_stream(&body) => 0,
        Some(n) if n > limit as u64 => return too_large(),
        Some(n) => n as usize,
        None => limit,
    };
    let mut reserved = if reserve == 0 {
        None
    } else {
        let want = reserve.min(st.config.max_buffered_body_bytes);
        let want = u32::try_from(want).unwrap_or(u32::MAX);
        let acquire = st.body_budget.clone().acquire_many_owned(want);
        match tokio::time::timeout_at(deadline, acquire).await {
            Ok(Ok(permit)) => Some(permit),
            _ => {
                return ApiError(Problem::new(
                    ErrorCode::Unavailable,
                    "the bridge is receiving too many request bodies at once; retry shortly",
                ))
                .into_response();
            }
        }
    };
    let bytes: Bytes =
        match tokio::time::timeout_at(deadline, axum::body::to_bytes(body, limit + 1)).await {
            Ok(Ok(b)) if b.len() <= limit => b,
            Err(_) => {
                let why = format!(
                    "the request body did not arrive within {} ms",
                    within.as_millis()
                );
                return ApiError(Problem::invalid("", why)).into_response();
            }
            Ok(Err(e)) if !caused_by::<LengthLimitError>(&e) => {
                // A body cut short, a broken chunk encoding: not a size problem.
                return ApiError(
                    Problem::new(
                        ErrorCode::InvalidRequest,
                        "the request body could not be read (cut short of its declared \
                         length, broken chunked framing, or a reset stream); see errors",
                    )
                    .with_errors(vec![FieldError {
                        path: String::new(),
                        message: with_causes(&e),
                    }]),
                )
                .into_response();
            }
            _ => return too_large(),
        };
    let route = matched.as_ref().map_or("", |m| m.as_str());
    let action = action_for(&parts.method, route, &bytes);
    let admitted = {
        let headers = AuthHeaders::from_pairs(
            parts
                .headers
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_bytes())),
        );
        let request = lighthouse_security::Request {
            method: parts.method.as_str(),
            path: parts.uri.path(),
            query: parts.uri.query().unwrap_or(""),
            headers,
            body: &bytes,
        };
        st.bridge.admit(&request, action)
    };
    if admitted.is_ok()
        && let Err(RawPathParamsRejection::InvalidUtf8InPathParam(_)) = params
    {
        let name = undecodable_param(route, parts.uri.path()).unwrap_or_default();
        let message = format!("the path segment `{name}` is not valid UTF-8 once percent-decoded");
        let pointer = if name.is_empty() {
            String::new()
        } else {
            format!("/{name}")
        };
        return ApiError(
            Problem::new(
                ErrorCode::InvalidRequest,
                format!("{} {route}: {message}", parts.method.as_str()),
            )
            .with_errors(vec![FieldError {
                path: pointer,
                message,
            }]),
        )
        .into_response();
    }
    if admitted.is_ok()
        && parts.uri.query().is_some_and(|q| !q.is_empty())
        && !takes_query(&parts.method, route)
    {
        return ApiError(Problem::invalid(
            "",
            format!(
                "{} {route} takes no query parameters",
                parts.method.as_str()
            ),
        ))
        .into_response();
    }
    match admitted {
        Ok(caller) => {
            tracing::Span::current().record("agent", caller.agent.as_str());
            parts.extensions.insert(caller);
            // GET and HEAD handlers never read a body (one was only hashed for
            // the signature): let it and its share of the budget go before a
            // long-poll holds them for a minute.
            let body = if parts.method == Method::GET || parts.method == Method::HEAD {
                drop(bytes);
                reserved.take();
                Body::empty()
            } else {
                Body::from(bytes)
            };
            next.run(Request::from_parts(parts, body)).await
        }
        Err(p) => ApiError(p).into_response(),
    }
}

/// `e` and what caused it, joined by `: ` (hyper's errors say what failed
/// and leave why to their source).
fn with_causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        // axum's error repeats its source's text.
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = c.source();
    }
    out
}

/// The parameter of `route` (a template such as `/v1/flags/{key}`) whose
/// segment of `path` (as sent, percent-encoded) does not decode to UTF-8.
/// axum says that one does, but not (in a form to read) which.
fn undecodable_param<'r>(route: &'r str, path: &str) -> Option<&'r str> {
    route.split('/').zip(path.split('/')).find_map(|(t, seg)| {
        let name = t.strip_prefix('{')?.strip_suffix('}')?;
        std::str::from_utf8(&percent_decode(seg))
            .is_err()
            .then_some(name)
    })
}

/// `%XX` escapes decoded (anything else, a malformed escape included, as is),
/// as axum decodes path parameters.
fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%'
            && let (Some(h), Some(l)) = (
                b.get(i + 1).copied().and_then(hex),
                b.get(i + 2).copied().and_then(hex),
            )
        {
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::undecodable_param;

    #[test]
    fn the_undecodable_parameter_is_found_by_its_template() {
        assert_eq!(
            undecodable_param("/v1/flags/{key}", "/v1/flags/%C3%28"),
            Some("key")
        );
        assert_eq!(
            undecodable_param("/v1/flags/{key}/history", "/v1/flags/%FF/history"),
            Some("key")
        );
        assert_eq!(
            undecodable_param("/v1/flags/{key}", "/v1/flags/%C3%A9"),
            None
        );
        assert_eq!(undecodable_param("/v1/flags/{key}", "/v1/flags/%zz"), None);
        assert_eq!(undecodable_param("/v1/flags", "/v1/flags"), None);
    }
}
