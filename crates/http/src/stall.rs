//! A watchdog for streamed responses whose client stopped taking them.
//!
//! An SSE response is polled by the connection for its next frame only when
//! the connection can send it. A client that stops reading leaves the last
//! frame unsent and the body unpolled: on HTTP/1 its socket fills (the
//! `lighthouse-bridge` listener's write-stall timeout closes it), but on
//! HTTP/2 the client can withhold one stream's flow-control window while the
//! connection stays healthy, and nothing on the connection ever stalls. The
//! body cannot see that from inside (it is simply not polled), so a task beside
//! it watches: once a frame was handed to the connection and the next poll has
//! not come for `stall`, it drops the stream that feeds the body, which frees
//! its subscription, its slot and its buffers at once. The connection, if it
//! ever polls again, finds the body ended.
//!
//! A stream with nothing to send is not stalled: its last poll was answered
//! "pending" and the connection is waiting on it, not the other way round; its
//! heartbeat comments keep a healthy client's stream moving anyway.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http_body::Frame;
use tokio::time::Instant;

/// No frame is waiting to be taken (`handed_at`).
const NOT_WAITING: u64 = u64::MAX;

struct Shared {
    /// The body that feeds the response; `None` once the watchdog ended it.
    inner: parking_lot::Mutex<Option<Body>>,
    /// When the last poll handed a frame out, in nanoseconds since `base`, or
    /// [`NOT_WAITING`] while a poll is under way or the last one was pending.
    handed_at: AtomicU64,
    base: Instant,
}

impl Shared {
    fn since_base(&self, t: Instant) -> u64 {
        u64::try_from(t.saturating_duration_since(self.base).as_nanos())
            .unwrap_or(NOT_WAITING - 1)
            .min(NOT_WAITING - 1)
    }
}

/// A response body that ends (dropping what feeds it) when its frames stop
/// being taken for `stall`. See the module docs.
pub(crate) struct Watched {
    shared: Arc<Shared>,
}

/// Set when the watchdog ended a body: what the body measures (an MCP tool
/// call's answer) was not delivered, whatever its handler did.
#[derive(Clone, Default)]
pub(crate) struct Stalled(Arc<AtomicBool>);

impl Stalled {
    pub(crate) fn is_set(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// What the watchdog tells when it ends a body.
pub(crate) struct Report {
    /// Set before the body is dropped.
    pub(crate) stalled: Stalled,
    /// Counts it (`lighthouse_streams_stalled_total`).
    pub(crate) metrics: Option<Arc<lighthouse_metrics::Metrics>>,
    /// The request's span, for the log line.
    pub(crate) span: tracing::Span,
}

/// Wraps `body`; the watchdog runs on the current Tokio runtime until the body
/// is dropped or ended. A zero `stall` turns the watchdog off.
pub(crate) fn watch(body: Body, stall: Duration, report: Report) -> Body {
    if stall.is_zero() {
        return body;
    }
    let shared = Arc::new(Shared {
        inner: parking_lot::Mutex::new(Some(body)),
        handed_at: AtomicU64::new(NOT_WAITING),
        base: Instant::now(),
    });
    tokio::spawn(watchdog(Arc::downgrade(&shared), stall, report));
    Body::new(Watched { shared })
}

/// Checks every quarter of `stall` (so a stalled body ends between `stall` and
/// 1.25 × `stall` after its last frame went out) until the body is dropped.
async fn watchdog(shared: Weak<Shared>, stall: Duration, report: Report) {
    let period = (stall / 4).max(Duration::from_millis(1));
    loop {
        tokio::time::sleep(period).await;
        let Some(s) = shared.upgrade() else { return };
        let at = s.handed_at.load(Ordering::Acquire);
        if at == NOT_WAITING {
            continue;
        }
        let waited = s.since_base(Instant::now()).saturating_sub(at);
        if waited < u64::try_from(stall.as_nanos()).unwrap_or(u64::MAX) {
            continue;
        }
        // A poll under way holds the lock: the body is being taken, so it is
        // not stalled.
        let Some(mut inner) = s.inner.try_lock() else {
            continue;
        };
        // Checked again under the lock: a poll may have come in between.
        if s.handed_at.load(Ordering::Acquire) != at {
            continue;
        }
        if inner.is_some() {
            report.stalled.0.store(true, Ordering::Release);
            if let Some(m) = &report.metrics {
                m.stream_stalled();
            }
            let _in = report.span.enter();
            tracing::info!(
                stalled_ms = u64::try_from(stall.as_millis()).unwrap_or(u64::MAX),
                "a streamed response's client took nothing for the stall timeout; ending it"
            );
        }
        let ended = inner.take();
        drop(inner);
        drop(ended);
        return;
    }
}

impl http_body::Body for Watched {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let s = &*self.shared;
        let mut inner = s.inner.lock();
        s.handed_at.store(NOT_WAITING, Ordering::Release);
        let Some(body) = inner.as_mut() else {
            return Poll::Ready(None);
        };
        let polled = Pin::new(body).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(_))) => {
                s.handed_at
                    .store(s.since_base(Instant::now()), Ordering::Release);
            }
            // Ended or failed: nothing more will come of it.
            Poll::Ready(_) => *inner = None,
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.shared
            .inner
            .try_lock()
            .is_some_and(|b| b.as_ref().is_none_or(http_body::Body::is_end_stream))
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    /// A stream of frames that records being dropped.
    struct Frames {
        dropped: Arc<AtomicBool>,
    }

    impl Drop for Frames {
        fn drop(&mut self) {
            self.dropped.store(true, Ordering::SeqCst);
        }
    }

    fn report() -> Report {
        Report {
            stalled: Stalled::default(),
            metrics: None,
            span: tracing::Span::none(),
        }
    }

    fn endless(dropped: Arc<AtomicBool>) -> Body {
        let guard = Frames { dropped };
        Body::from_stream(futures::stream::unfold(guard, |g| async move {
            Some((
                Ok::<_, std::convert::Infallible>(Bytes::from_static(b"x")),
                g,
            ))
        }))
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_not_polled_after_a_frame_is_ended_after_the_stall() {
        let dropped = Arc::new(AtomicBool::new(false));
        let told = report();
        let stalled = told.stalled.clone();
        let mut body = watch(endless(dropped.clone()), Duration::from_secs(60), told);
        let first = body.frame().await.expect("a frame").expect("no error");
        assert_eq!(first.into_data().ok(), Some(Bytes::from_static(b"x")));
        // Not polled again: the client took nothing more.
        tokio::time::sleep(Duration::from_secs(59)).await;
        assert!(!dropped.load(Ordering::SeqCst), "ended before the stall");
        tokio::time::sleep(Duration::from_secs(17)).await;
        assert!(dropped.load(Ordering::SeqCst), "not ended after the stall");
        assert!(stalled.is_set());
        // A connection that polls again finds it ended.
        assert!(body.frame().await.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_polled_on_time_or_waiting_for_data_is_left_alone() {
        // Taken every 30 s: never stalled.
        let dropped = Arc::new(AtomicBool::new(false));
        let mut body = watch(endless(dropped.clone()), Duration::from_secs(60), report());
        for _ in 0..10 {
            assert!(body.frame().await.is_some());
            tokio::time::sleep(Duration::from_secs(30)).await;
        }
        assert!(!dropped.load(Ordering::SeqCst));
        // Nothing to send (its last poll pending): the connection waits on
        // the body, not the body on the connection.
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::convert::Infallible>>(1);
        let mut idle = watch(
            Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx)),
            Duration::from_secs(60),
            report(),
        );
        let waiting = tokio::time::timeout(Duration::from_secs(300), idle.frame()).await;
        assert!(waiting.is_err(), "no frame was sent");
        tx.send(Ok(Bytes::from_static(b"late")))
            .await
            .expect("the body is still open");
        let late = idle.frame().await.expect("a frame").expect("no error");
        assert_eq!(late.into_data().ok(), Some(Bytes::from_static(b"late")));
    }

    #[tokio::test(start_paused = true)]
    async fn a_zero_stall_turns_the_watchdog_off() {
        let dropped = Arc::new(AtomicBool::new(false));
        let mut body = watch(endless(dropped.clone()), Duration::ZERO, report());
        assert!(body.frame().await.is_some());
        tokio::time::sleep(Duration::from_secs(3600)).await;
        assert!(!dropped.load(Ordering::SeqCst));
    }
}
