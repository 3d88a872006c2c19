//! The response body of an `/mcp` tool call as the admission layer passes it
//! on: [`CallBody`] keeps the call registered for `notifications/cancelled`
//! while the response runs, and ends it without an answer once the call is
//! cancelled that way.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use tokio_util::sync::WaitForCancellationFutureOwned;

use crate::running::RunningCall;

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

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;
    use lighthouse_core::ToolOutcome;
    use rmcp::model::RequestId;

    use super::*;
    use crate::running::RunningCalls;

    #[tokio::test]
    async fn a_cancelled_call_ends_its_body_without_the_rest() {
        let calls = RunningCalls::new(4);
        let call = calls
            .register("alice", RequestId::Number(1), ToolOutcome::default())
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
        assert_eq!(calls.cancel("alice", &RequestId::Number(1)), 1);
        assert!(body.frame().await.is_none());
        assert!(http_body::Body::is_end_stream(&body));
        assert_eq!(calls.len(), 0, "the entry goes with the body's end");
    }

    #[tokio::test]
    async fn the_entry_goes_when_the_body_ends_or_is_dropped() {
        let calls = RunningCalls::new(4);
        let register = |n| {
            calls
                .register("alice", RequestId::Number(n), ToolOutcome::default())
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

    /// A stream of the channel's items.
    fn tokio_stream_from<T: Send + 'static>(
        mut rx: tokio::sync::mpsc::Receiver<T>,
    ) -> impl futures::Stream<Item = T> + Send + 'static {
        futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
    }
}
