//! The response of an `/mcp` request as the admission layer passes it on:
//! [`CallBody`] keeps a tool call registered for `notifications/cancelled`
//! while its response runs, and ends it without an answer once the call is
//! cancelled that way; [`held_answer`] opens an SSE response at once for a
//! request rmcp has not answered within the keep-alive interval, and keeps
//! it alive until rmcp's answer, which it passes on; [`invalid_params`] is the
//! layer's own JSON-RPC answer to a tool call rmcp would misread.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio_util::sync::WaitForCancellationFutureOwned;

use crate::running::RunningCall;

/// rmcp's answer to a request, still being worked out.
pub(crate) type PendingAnswer = Pin<Box<dyn Future<Output = Response> + Send>>;

/// Shortest interval between the keep-alive comments of a held answer, and
/// shortest time rmcp is given to answer before its answer is held.
pub(crate) const MIN_KEEP_ALIVE: Duration = Duration::from_millis(100);

/// Longest JSON-RPC answer re-framed as an SSE event (see [`HeldAnswer`]).
const MAX_REFRAMED_BYTES: usize = 64 << 20;

/// A `200 text/event-stream` response whose body sends an SSE comment every
/// `keep_alive` until `answer` (rmcp's response) is ready, then rmcp's events.
///
/// rmcp answers a 2026-07-28 request only once its handler has sent a first
/// message (it must know the HTTP status before it opens a stream), so a
/// tool that waits without reporting progress (`lighthouse_elicit` up to an
/// hour, `lighthouse_get_elicitation` and `lighthouse_wait_for_messages` up to
/// 60 s) would send nothing at all until it answers: proxies in front of the
/// bridge cut such a request at their idle timeout. Only a request rmcp has
/// not answered within `keep_alive` is held this way; one answered sooner
/// (every HTTP error rmcp gives included) is passed on as it is.
pub(crate) fn held_answer(answer: PendingAnswer, keep_alive: Duration) -> Response {
    let every = keep_alive.max(MIN_KEEP_ALIVE);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let body = HeldAnswer {
        state: Held::Waiting(answer),
        tick,
    };
    let mut resp = Response::new(Body::new(body));
    *resp.status_mut() = StatusCode::OK;
    let h = resp.headers_mut();
    // As rmcp's own SSE responses.
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    resp
}

enum Held {
    /// rmcp has not answered yet: keep-alive comments go out meanwhile.
    Waiting(PendingAnswer),
    /// rmcp answered with an SSE stream: its events, unchanged.
    Streaming(Body),
    /// rmcp answered with one JSON-RPC message as `application/json` (an
    /// answer it gives a non-200 status, such as a protocol error): it is
    /// read whole and sent as one SSE event, the status being sent already.
    Reframing(Body, Vec<u8>),
    Done,
}

/// The body of [`held_answer`].
struct HeldAnswer {
    state: Held,
    tick: tokio::time::Interval,
}

/// `bytes` (one JSON-RPC message) as one SSE event.
fn sse_event(bytes: &[u8]) -> Bytes {
    let text = String::from_utf8_lossy(bytes);
    let mut event = String::with_capacity(text.len() + 16);
    for line in text.lines() {
        event.push_str("data: ");
        event.push_str(line);
        event.push('\n');
    }
    event.push('\n');
    Bytes::from(event)
}

impl http_body::Body for HeldAnswer {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        loop {
            match &mut this.state {
                Held::Waiting(answer) => match answer.as_mut().poll(cx) {
                    Poll::Ready(resp) => {
                        let status = resp.status();
                        let media = resp
                            .headers()
                            .get(header::CONTENT_TYPE)
                            .and_then(|v| v.to_str().ok())
                            .and_then(|v| v.split(';').next())
                            .map(|v| v.trim().to_ascii_lowercase())
                            .unwrap_or_default();
                        this.state = match media.as_str() {
                            "text/event-stream" if status == StatusCode::OK => {
                                Held::Streaming(resp.into_body())
                            }
                            "application/json" => Held::Reframing(resp.into_body(), Vec::new()),
                            // rmcp stopped without an answer (the bridge is
                            // shutting down): the stream ends unanswered.
                            _ => {
                                tracing::debug!(
                                    status = status.as_u16(),
                                    "a held /mcp request ended without an answer"
                                );
                                Held::Done
                            }
                        };
                    }
                    Poll::Pending => {
                        return match this.tick.poll_tick(cx) {
                            Poll::Ready(_) => Poll::Ready(Some(Ok(http_body::Frame::data(
                                Bytes::from_static(b":\n\n"),
                            )))),
                            Poll::Pending => Poll::Pending,
                        };
                    }
                },
                Held::Streaming(body) => return Pin::new(body).poll_frame(cx),
                Held::Reframing(body, buf) => match Pin::new(&mut *body).poll_frame(cx) {
                    Poll::Ready(Some(Ok(frame))) => {
                        if let Ok(data) = frame.into_data() {
                            if buf.len() + data.len() > MAX_REFRAMED_BYTES {
                                tracing::error!("a held /mcp answer is too large to re-frame");
                                this.state = Held::Done;
                            } else {
                                buf.extend_from_slice(&data);
                            }
                        }
                    }
                    Poll::Ready(None) => {
                        let event = sse_event(buf);
                        this.state = Held::Done;
                        return Poll::Ready(Some(Ok(http_body::Frame::data(event))));
                    }
                    Poll::Ready(Some(Err(e))) => {
                        tracing::error!(error = %e, "a held /mcp answer could not be read");
                        this.state = Held::Done;
                    }
                    Poll::Pending => return Poll::Pending,
                },
                Held::Done => return Poll::Ready(None),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.state {
            Held::Streaming(body) => body.is_end_stream(),
            Held::Done => true,
            Held::Waiting(_) | Held::Reframing(..) => false,
        }
    }
}

/// rmcp's response body for a registered tool call. The call stays
/// registered until the body ends or is dropped; when its agent cancels it,
/// the body ends at once, without the answer (MCP: a cancelled request is not
/// answered), which also drops rmcp's stream and so cancels the handler's
/// own token.
pub(crate) struct CallBody {
    inner: Body,
    call: Option<RunningCall>,
    cancelled: Pin<Box<WaitForCancellationFutureOwned>>,
}

impl CallBody {
    pub(crate) fn new(inner: Body, call: RunningCall) -> Self {
        let cancelled = Box::pin(call.token().clone().cancelled_owned());
        CallBody {
            inner,
            call: Some(call),
            cancelled,
        }
    }
}

impl http_body::Body for CallBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        if this.call.is_none() {
            return Poll::Ready(None);
        }
        // Looked at first, so that an answer made after the cancellation
        // (the handler's "cancelled" result) is never sent.
        if this.cancelled.as_mut().poll(cx).is_ready() {
            this.call = None;
            this.inner = Body::empty();
            return Poll::Ready(None);
        }
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(None) = polled {
            this.call = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.call.is_none() || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        if self.call.is_none() {
            return http_body::SizeHint::with_exact(0);
        }
        self.inner.size_hint()
    }
}

/// A JSON-RPC `-32602 Invalid params` answer to request `id`.
pub(crate) fn invalid_params(id: rmcp::model::RequestId, why: String) -> Response {
    let error =
        rmcp::model::JsonRpcError::new(Some(id), rmcp::ErrorData::invalid_params(why, None));
    match serde_json::to_vec(&error) {
        Ok(body) => {
            let mut resp = (StatusCode::OK, body).into_response();
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            resp
        }
        Err(_) => crate::transport::problem_response(&lighthouse_core::api::Problem::internal()),
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;
    use lighthouse_core::ToolOutcome;
    use rmcp::model::RequestId;

    use super::*;
    use crate::running::RunningCalls;

    #[tokio::test]
    async fn a_cancelled_call_ends_its_body_without_the_rest() {
        let calls = RunningCalls::new(64, Duration::from_secs(30));
        let call = calls
            .register(
                "alice",
                [0; 32],
                RequestId::Number(1),
                ToolOutcome::default(),
            )
            .unwrap();
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
        let inner = Body::from_stream(tokio_stream_from(rx));
        let mut body = CallBody::new(inner, call);
        tx.send(Ok(Bytes::from_static(b"data: 1\n\n")))
            .await
            .unwrap();
        let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(&first[..], b"data: 1\n\n");
        assert_eq!(calls.len(), 1);
        // Cancelled with an answer already waiting: the answer is not sent.
        tx.send(Ok(Bytes::from_static(b"data: answer\n\n")))
            .await
            .unwrap();
        assert_eq!(calls.cancel("alice", [0; 32], &RequestId::Number(1)), 1);
        assert!(body.frame().await.is_none());
        assert!(http_body::Body::is_end_stream(&body));
        assert_eq!(calls.len(), 0, "the entry goes with the body's end");
    }

    #[tokio::test]
    async fn the_entry_goes_when_the_body_ends_or_is_dropped() {
        let calls = RunningCalls::new(64, Duration::from_secs(30));
        let register = |n| {
            calls
                .register(
                    "alice",
                    [0; 32],
                    RequestId::Number(n),
                    ToolOutcome::default(),
                )
                .unwrap()
        };
        let mut ended = CallBody::new(Body::from("whole"), register(1));
        let dropped = CallBody::new(Body::from("never read"), register(2));
        assert_eq!(calls.len(), 2);
        assert_eq!(
            &ended.frame().await.unwrap().unwrap().into_data().unwrap()[..],
            b"whole"
        );
        assert!(ended.frame().await.is_none());
        assert_eq!(calls.len(), 1);
        drop(dropped);
        assert_eq!(calls.len(), 0);
    }

    async fn frames(resp: Response) -> Vec<String> {
        let mut body = resp.into_body();
        let mut out = Vec::new();
        while let Some(frame) = body.frame().await {
            out.push(String::from_utf8(frame.unwrap().into_data().unwrap().to_vec()).unwrap());
        }
        out
    }

    fn answer_after(delay: Duration, resp: Response) -> PendingAnswer {
        Box::pin(async move {
            tokio::time::sleep(delay).await;
            resp
        })
    }

    #[tokio::test(start_paused = true)]
    async fn a_held_answer_is_kept_alive_then_passed_on() {
        let sse = {
            let mut r = Response::new(Body::from("data: {\"id\":1}\n\n"));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/event-stream"),
            );
            r
        };
        let resp = held_answer(
            answer_after(Duration::from_millis(2500), sse),
            Duration::from_secs(1),
        );
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()[header::CONTENT_TYPE], "text/event-stream");
        // A comment at once and one a second, then rmcp's events unchanged.
        assert_eq!(
            frames(resp).await,
            [":\n\n", ":\n\n", ":\n\n", "data: {\"id\":1}\n\n"]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_late_json_answer_is_one_event_and_a_late_refusal_ends_the_stream() {
        let json = {
            let mut r = Response::new(Body::from(
                r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32602,"message":"x"}}"#,
            ));
            *r.status_mut() = StatusCode::BAD_REQUEST;
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            r
        };
        let resp = held_answer(
            answer_after(Duration::from_millis(500), json),
            Duration::from_secs(1),
        );
        assert_eq!(
            frames(resp).await,
            [
                ":\n\n",
                "data: {\"jsonrpc\":\"2.0\",\"id\":1,\"error\":{\"code\":-32602,\"message\":\"x\"}}\n\n"
            ]
        );
        let mut refusal = Response::new(Body::from("empty response"));
        *refusal.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        let resp = held_answer(
            answer_after(Duration::from_millis(500), refusal),
            Duration::ZERO,
        );
        // The interval has a floor: 100 ms, not a busy loop.
        assert_eq!(frames(resp).await.len(), 5);
    }

    /// A stream of the channel's items.
    fn tokio_stream_from<T: Send + 'static>(
        mut rx: tokio::sync::mpsc::Receiver<T>,
    ) -> impl futures::Stream<Item = T> + Send + 'static {
        futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
    }
}
