//! Server-Sent Events: the agent stream (PROTOCOL.md 5) and the event stream
//! (PROTOCOL.md 7).
//!
//! The position is fixed (the subscription is made) before the response headers
//! are sent. A consumer too slow for the bounded buffers is sent a final `lagged`
//! event carrying the position to resume from, and disconnected. On shutdown (or
//! when the store closes) each stream sends a final `shutdown` event; any other
//! failure ends it with a final `error` event, also carrying the position.

use std::convert::Infallible;
use std::time::Duration;

use axum::Extension;
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::Stream;
use lighthouse_core::api::{ErrorCode, Problem};
use lighthouse_core::{Bridge, refusal_problem};
use lighthouse_elicitation::{Notification, Payload};
use lighthouse_security::{Caller, Refusal, Unavailable, bearer_token};
use serde::Deserialize;
use tokio::sync::watch;

use crate::error::{ApiError, parse_query};
use crate::state::{AppState, Streaming};

/// `X-Lighthouse-Resume-After`: on an agent stream opened without a position,
/// where to resume it from (`Last-Event-ID`) while nothing of it was handed
/// out (docs/HTTP.md).
pub const RESUME_AFTER_HEADER: &str = "x-lighthouse-resume-after";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AfterParams {
    after: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EventStreamParams {
    after: Option<u64>,
    stream: Option<String>,
    #[serde(rename = "type")]
    event_type: Option<String>,
}

/// `Last-Event-ID` wins over `?after=` (PROTOCOL.md 5). A position beyond
/// `head`, the store's last event, is refused, naming where it came from: no
/// event of this store gave it (a store restored from an older backup, say),
/// and a stream from there would silently skip every event up to it.
fn position(headers: &HeaderMap, after: Option<u64>, head: u64) -> Result<Option<u64>, ApiError> {
    let (p, pointer) = match headers.get("last-event-id") {
        Some(v) => {
            let p = v
                .to_str()
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .ok_or_else(|| Problem::invalid("/Last-Event-ID", "must be a sequence number"))?;
            (Some(p), "/Last-Event-ID")
        }
        None => (after, "/after"),
    };
    match p {
        Some(p) if p > head => Err(Problem::invalid(
            pointer,
            format!(
                "is beyond the last event of the store ({head}), which may have been restored \
                 from an older backup; reconnect without a position"
            ),
        )
        .into()),
        p => Ok(p),
    }
}

fn sse_response<S>(st: &AppState, stream: S) -> Response
where
    S: Stream<Item = Result<SseEvent, Infallible>> + Send + 'static,
{
    let mut resp = Sse::new(stream)
        .keep_alive(
            KeepAlive::new()
                .interval(st.config.heartbeat)
                .text("heartbeat"),
        )
        .into_response();
    resp.extensions_mut().insert(Streaming);
    resp.headers_mut().insert(
        "x-accel-buffering",
        axum::http::HeaderValue::from_static("no"),
    );
    resp
}

fn notification_event(n: &Notification) -> SseEvent {
    let data = match &n.payload {
        Payload::Elicitation(e) => serde_json::to_string(&**e),
        Payload::Message(m) => serde_json::to_string(&**m),
    }
    .unwrap_or_else(|_| "{}".to_owned());
    SseEvent::default()
        .id(n.seq.to_string())
        .event(n.kind.as_str())
        .data(data)
}

/// The final event for a subscription that failed: `lagged` for a consumer
/// too slow for the buffers, `shutdown` for a store that closed, `error` for
/// anything else (a damaged record, logged here). Each carries the position to
/// resume from.
fn ending_of_elicitation(e: &lighthouse_elicitation::Error) -> &'static str {
    match e {
        lighthouse_elicitation::Error::Lagged { .. } => "lagged",
        lighthouse_elicitation::Error::Closed => "shutdown",
        other => {
            tracing::warn!(error = %other, "an agent stream ended on an error");
            "error"
        }
    }
}

/// As [`ending_of_elicitation`], for the event stream.
fn ending_of_store(e: &lighthouse_event_store::Error) -> &'static str {
    match e {
        lighthouse_event_store::Error::Lagged { .. } => "lagged",
        lighthouse_event_store::Error::Closed => "shutdown",
        other => {
            tracing::warn!(error = %other, "an event stream ended on an error");
            "error"
        }
    }
}

/// A final event; without a position (an agent stream still handing out its
/// initial list of pending elicitations, none yet) the client starts over.
fn final_event(kind: &str, position: impl Into<Option<u64>>) -> SseEvent {
    let data = match position.into() {
        Some(p) => format!("{{\"resume_after\":{p}}}"),
        None => "{}".to_owned(),
    };
    SseEvent::default().event(kind).data(data)
}

/// What a stream re-checks of the credential that opened it, every
/// [`HttpConfig::credential_recheck`](crate::HttpConfig): the agent and key
/// (revoked agent, key past its grace period) and, for a bearer token, the
/// token itself (expired, revoked). PROTOCOL.md 2.1 and 2.3: revoking kills
/// every key and token at once, open streams included.
struct Credential {
    bridge: Bridge,
    caller: Caller,
    /// The `Authorization` header of a bearer request.
    bearer: Option<Vec<u8>>,
    every: tokio::time::Interval,
}

impl Credential {
    fn new(st: &AppState, caller: &Caller, headers: &HeaderMap) -> Self {
        // An admitted request presents a signature or a bearer token, never
        // both (the gate refuses that as ambiguous).
        let bearer = headers
            .get(axum::http::header::AUTHORIZATION)
            .map(|v| v.as_bytes())
            .filter(|v| bearer_token(v).is_some())
            .map(<[u8]>::to_vec);
        let period = st.config.credential_recheck.max(Duration::from_millis(10));
        let mut every = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Credential {
            bridge: st.bridge.clone(),
            caller: caller.clone(),
            bearer,
            every,
        }
    }

    /// Waits for the next check and says whether the credential still holds.
    async fn check(&mut self) -> Standing {
        self.every.tick().await;
        let now = self.bridge.clock().now();
        let gate = self.bridge.gate();
        match &self.bearer {
            // The token's own check covers its key being active.
            Some(authorization) => match gate.verifier().verify_bearer(authorization, now) {
                Ok(a)
                    if a.caller.agent == self.caller.agent
                        && a.caller.key_id == self.caller.key_id =>
                {
                    Standing::Holds
                }
                Err(r @ Refusal::Unavailable(_)) => Standing::Unknown(r),
                _ => Standing::Gone,
            },
            // An agent change written but not read back: the credential cannot
            // be judged (new requests get 503 meanwhile), which is not the same
            // as its having been revoked.
            None if !gate.registry().current() => {
                Standing::Unknown(Refusal::Unavailable(Unavailable::RegistryBehind))
            }
            None if gate
                .registry()
                .key_is_active(&self.caller.agent, self.caller.key_id, now) =>
            {
                Standing::Holds
            }
            // A change that failed to read back between the two looks.
            None if !gate.registry().current() => {
                Standing::Unknown(Refusal::Unavailable(Unavailable::RegistryBehind))
            }
            None => Standing::Gone,
        }
    }
}

/// What a re-check of a credential found.
enum Standing {
    Holds,
    /// Revoked agent, retired key, expired or revoked token.
    Gone,
    /// It cannot be judged now (the bridge would answer a new request `503`):
    /// a long-poll ends with that refusal, a stream with a final `error` event
    /// (its client reconnects and is answered as any new request).
    Unknown(Refusal),
}

/// Runs the long-poll `wait` while re-checking the credential that admitted
/// it, as the streams do: a wait of up to a minute must not outlive a revoked
/// agent, a retired key or an expired or revoked token (PROTOCOL.md 2.1, 2.3;
/// a thief's pending request would otherwise still be handed the answer). It
/// then answers `401 unauthenticated`, at most one
/// [`HttpConfig::credential_recheck`](crate::HttpConfig) after the credential
/// stopped holding.
pub(crate) async fn while_credential_holds<T>(
    st: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    wait: impl std::future::Future<Output = T>,
) -> Result<T, ApiError> {
    let mut credential = Credential::new(st, caller, headers);
    let ended = async {
        loop {
            match credential.check().await {
                Standing::Holds => {}
                Standing::Gone => {
                    break Problem::new(
                        ErrorCode::Unauthenticated,
                        "the credential this request was made with no longer holds (agent \
                         revoked, key retired, or token expired or revoked)",
                    );
                }
                Standing::Unknown(r) => break refusal_problem(&r),
            }
        }
    };
    tokio::select! {
        biased;
        r = wait => Ok(r),
        p = ended => Err(p.into()),
    }
}

/// Why a stream ends on its own account, whatever its subscription does: the
/// server shuts down, or the caller's credential stops holding.
struct Ends {
    shutdown: watch::Receiver<bool>,
    credential: Credential,
}

impl Ends {
    fn new(st: &AppState, caller: &Caller, headers: &HeaderMap) -> Self {
        Ends {
            shutdown: st.shutdown.clone(),
            credential: Credential::new(st, caller, headers),
        }
    }

    /// The kind of the final event once the stream must end: `shutdown` or
    /// `unauthenticated`. Ready at once if the server is already shutting
    /// down; cancel-safe, so it can be raced against every next item. A
    /// [`ShutdownSignal`](crate::state::ShutdownSignal) dropped without being
    /// triggered is no shutdown: nothing can announce one any more.
    async fn reached(&mut self) -> &'static str {
        let mut watching = true;
        loop {
            if *self.shutdown.borrow() {
                return "shutdown";
            }
            tokio::select! {
                changed = self.shutdown.changed(), if watching => {
                    watching = changed.is_ok();
                }
                standing = self.credential.check() => match standing {
                    Standing::Holds => {}
                    Standing::Gone => return "unauthenticated",
                    Standing::Unknown(r) => {
                        tracing::warn!(refusal = ?r, "a stream's credential cannot be re-checked now; ending it");
                        return "error";
                    }
                },
            }
        }
    }
}

/// `GET /v1/stream`.
pub(crate) async fn agent_stream(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let p: AfterParams = parse_query(q.as_deref())?;
    let after = position(&headers, p.after, st.bridge.store().head_seq())?;
    let sub = st.bridge.subscribe(&caller, after)?;
    // Without a position the stream starts with what is pending, and a client
    // that loses the connection before it has handed anything out has no id
    // to resume from; reconnecting without one would start the list over and
    // miss what happened in between. This names a position whose read-back
    // covers everything this stream sends.
    let resume_after = after.is_none().then(|| sub.replay_start());
    let guard = st.bridge.metrics().stream_opened();
    struct S {
        sub: lighthouse_elicitation::AgentSubscription,
        ends: Ends,
        _guard: lighthouse_metrics::StreamGuard,
        done: bool,
    }
    let state = S {
        sub,
        ends: Ends::new(&st, &caller, &headers),
        _guard: guard,
        done: false,
    };
    let stream = futures::stream::unfold(state, |mut s| async move {
        if s.done {
            return None;
        }
        // The stream's own ending first: once it is due, nothing more goes out.
        tokio::select! {
            biased;
            kind = s.ends.reached() => {
                s.done = true;
                let pos = s.sub.resume_position();
                Some((Ok(final_event(kind, pos)), s))
            }
            n = s.sub.next() => match n {
                Ok(n) => Some((Ok(notification_event(&n)), s)),
                Err(e) => {
                    s.done = true;
                    let pos = s.sub.resume_position();
                    Some((Ok(final_event(ending_of_elicitation(&e), pos)), s))
                }
            },
        }
    });
    let mut resp = sse_response(&st, stream);
    if let Some(p) = resume_after {
        resp.headers_mut()
            .insert(RESUME_AFTER_HEADER, axum::http::HeaderValue::from(p));
    }
    Ok(resp)
}

/// `GET /v1/events/stream`.
pub(crate) async fn event_stream(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let p: EventStreamParams = parse_query(q.as_deref())?;
    let after = position(&headers, p.after, st.bridge.store().head_seq())?.unwrap_or(0);
    let slot = st.open_event_stream(&caller.agent)?;
    let sub = st
        .bridge
        .subscribe_events(&caller, after, p.stream, p.event_type)?;
    let guard = st.bridge.metrics().stream_opened();
    struct S {
        sub: lighthouse_event_store::Subscription,
        ends: Ends,
        caller: Caller,
        _guard: lighthouse_metrics::StreamGuard,
        _slot: crate::state::EventStreamSlot,
        done: bool,
        skipped: u64,
    }
    let state = S {
        sub,
        ends: Ends::new(&st, &caller, &headers),
        caller,
        _guard: guard,
        _slot: slot,
        done: false,
        skipped: 0,
    };
    let stream = futures::stream::unfold(state, |mut s| async move {
        loop {
            if s.done {
                return None;
            }
            // The stream's own ending first: once it is due, nothing more goes out.
            tokio::select! {
                biased;
                kind = s.ends.reached() => {
                    s.done = true;
                    let pos = s.sub.position();
                    return Some((Ok(final_event(kind, pos)), s));
                }
                e = s.sub.next() => match e {
                    Ok(e) => {
                        if !Bridge::event_visible(&s.caller, &e) {
                            // A long run of events this caller may not see
                            // must not hold the worker: let others run now
                            // and then.
                            s.skipped += 1;
                            if s.skipped % 256 == 0 {
                                tokio::task::yield_now().await;
                            }
                            continue;
                        }
                        let data = serde_json::to_string(&*e).unwrap_or_else(|_| "{}".to_owned());
                        let ev = SseEvent::default().id(e.seq.to_string()).event(e.event_type.as_str()).data(data);
                        return Some((Ok(ev), s));
                    }
                    Err(e) => {
                        s.done = true;
                        let pos = s.sub.position();
                        return Some((Ok(final_event(ending_of_store(&e), pos)), s));
                    }
                },
            }
        }
    });
    Ok(sse_response(&st, stream))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_position_beyond_the_head_is_refused_naming_where_it_came_from() {
        let refused = |headers: &HeaderMap, after| {
            let e = position(headers, after, 5000).expect_err("refused").0;
            assert_eq!(e.status, 400);
            e.errors.into_iter().map(|f| f.path).collect::<Vec<_>>()
        };
        let none = HeaderMap::new();
        let mut resumed = HeaderMap::new();
        resumed.insert("last-event-id", "9000".parse().unwrap());
        assert_eq!(refused(&none, Some(9000)), ["/after"]);
        assert_eq!(refused(&resumed, None), ["/Last-Event-ID"]);
        // The header wins: the query's good position does not save it.
        assert_eq!(refused(&resumed, Some(10)), ["/Last-Event-ID"]);
        // Up to the head, or none at all, is fine.
        assert_eq!(position(&none, Some(5000), 5000).unwrap(), Some(5000));
        assert_eq!(position(&none, None, 0).unwrap(), None);
        let mut at_head = HeaderMap::new();
        at_head.insert("last-event-id", "5000".parse().unwrap());
        assert_eq!(position(&at_head, Some(9000), 5000).unwrap(), Some(5000));
    }

    #[test]
    fn a_failed_subscription_ends_with_what_happened() {
        use lighthouse_event_store::Error as S;
        assert_eq!(ending_of_store(&S::Lagged { last_seq: 3 }), "lagged");
        assert_eq!(ending_of_store(&S::Closed), "shutdown");
        let damaged = S::Corrupt {
            seq: 3,
            reason: "x".into(),
        };
        assert_eq!(ending_of_store(&damaged), "error");
        use lighthouse_elicitation::Error as E;
        assert_eq!(ending_of_elicitation(&E::Lagged { last_seq: 3 }), "lagged");
        assert_eq!(ending_of_elicitation(&E::Closed), "shutdown");
        assert_eq!(ending_of_elicitation(&E::Store(damaged)), "error");
    }
}
