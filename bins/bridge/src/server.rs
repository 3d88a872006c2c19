//! The accept loop. `axum::serve` builds hyper connections without a timer,
//! so a client that sends its request head one byte a minute, or opens a
//! connection and never speaks, holds one of the `max_connections` slots
//! forever. Here every HTTP/1 connection must deliver each request head within
//! `header_read_timeout` (idle keep-alive connections included: hyper starts the
//! clock when it starts waiting for a head), HTTP/2 connections are pinged so
//! a vanished peer is noticed, and an HTTP/2 connection with no request in
//! flight for `header_read_timeout` is closed (hyper has no such timeout: a
//! client that only answers pings held its connection for ever).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::serve::Listener;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulConnection;
use hyper_util::service::TowerToHyperService;
use tokio::sync::watch;

use crate::listener::{Bounded, Protocol};

/// What one connection may take: timeouts, and the sizes that bound the
/// memory a client can pin before it has authenticated.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Longest wait for a complete request head, and longest idle keep-alive
    /// (over HTTP/2: longest time with no request in flight).
    pub header_read: Duration,
    /// HTTP/2 ping interval; a ping unanswered for as long closes the connection.
    pub http2_keep_alive: Duration,
    /// Largest HTTP/1 request head (request line and headers); hyper's read
    /// and write buffer never grow past it either. hyper's default, about
    /// 400 KiB, let each connection with an unfinished head pin that much.
    pub http1_max_head_bytes: usize,
    /// Most header fields in an HTTP/1 request.
    pub http1_max_headers: usize,
    /// Streams open at once on one HTTP/2 connection; hyper's default of 200,
    /// each holding its request's headers and handler while it waits for a
    /// body, let one connection pin about 8 MiB before authentication.
    pub http2_max_concurrent_streams: u32,
    /// Largest HTTP/2 header list (each field's name and value plus 32).
    pub http2_max_header_list_bytes: u32,
    /// Request body bytes a client may send ahead of its handler on one
    /// stream (hyper's default, 1 MiB).
    pub http2_stream_window_bytes: u32,
    /// The same for all the streams of a connection (hyper's default, 1 MiB).
    pub http2_connection_window_bytes: u32,
    /// Response bytes buffered per stream (hyper's default, 400 KiB).
    pub http2_send_buffer_bytes: usize,
}

/// Serves `router` on `listener` until `stop` resolves, then stops accepting
/// and lets open connections finish their requests (the caller bounds that
/// wait).
pub async fn serve(
    mut listener: Bounded,
    router: Router,
    limits: Limits,
    stop: impl Future<Output = ()>,
) {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read)
        .max_buf_size(limits.http1_max_head_bytes)
        .max_headers(limits.http1_max_headers);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(limits.http2_keep_alive)
        .keep_alive_timeout(limits.http2_keep_alive)
        .max_concurrent_streams(limits.http2_max_concurrent_streams)
        .max_header_list_size(limits.http2_max_header_list_bytes)
        .initial_stream_window_size(limits.http2_stream_window_bytes)
        .initial_connection_window_size(limits.http2_connection_window_bytes)
        .max_send_buf_size(limits.http2_send_buffer_bytes);
    let (stop_tx, stopped) = watch::channel(());
    let mut stop = std::pin::pin!(stop);
    // The connections belong to this future: if it is dropped (the caller's
    // grace ran out and it aborted the server), they are aborted with it
    // rather than running on beside the bridge's own shutdown.
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let (io, remote) = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut stop => break,
        };
        while connections.try_join_next().is_some() {}
        let router = router.clone();
        let builder = builder.clone();
        let header_read = limits.header_read;
        let mut stop = stopped.clone();
        connections.spawn(async move {
            // A connection that has not spoken yet holds up no shutdown: it
            // is dropped when the server stops, as it would be on timeout.
            let first = tokio::select! {
                first = io.read_protocol(header_read) => first,
                _ = stop.changed() => None,
            };
            let Some((protocol, io)) = first else {
                tracing::debug!(
                    %remote,
                    "connection closed before its first request: nothing within the header \
                     read timeout, or the client closed it"
                );
                return;
            };
            let (in_flight, idle) = watch::channel(0);
            let service = Counted {
                inner: TowerToHyperService::new(router),
                in_flight: Arc::new(in_flight),
            };
            // HTTP/1 has hyper's header read timeout for its idle time.
            let idle = (protocol == Protocol::Http2).then_some((idle, header_read));
            let conn = builder
                .serve_connection_with_upgrades(TokioIo::new(io), service)
                .into_owned();
            if let Err(e) = drive(conn, stop, idle).await {
                // Timeouts, resets and malformed requests end here; they are
                // the client's business, not an operator's.
                tracing::debug!(%remote, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    // Shuts every connection down gracefully (those in flight finish), and
    // closes those still waiting for their first bytes.
    stop_tx.send_replace(());
    while connections.join_next().await.is_some() {}
}

/// Serves `conn` until it ends. When `stop` changes it is shut down
/// gracefully: no new requests, those in flight finish. With `idle`, the same
/// happens once it has had no request in flight for the given time (the
/// receiver counts them, see [`Counted`]); idle for as long again after that
/// (a client that never completes the close), it is dropped.
async fn drive<C: GracefulConnection>(
    conn: C,
    mut stop: watch::Receiver<()>,
    mut idle: Option<(watch::Receiver<usize>, Duration)>,
) -> Result<(), C::Error> {
    let mut conn = std::pin::pin!(conn);
    let (mut stopped, mut closing) = (false, false);
    loop {
        let idle_for = async {
            match idle.as_mut() {
                Some((in_flight, period)) => idle_for(in_flight, *period).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            done = conn.as_mut() => return done,
            // An error: the server is gone, which is a stop too.
            _ = stop.changed(), if !stopped => {
                stopped = true;
                if !closing {
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                }
            }
            () = idle_for => {
                if closing {
                    tracing::debug!("connection dropped: still open a timeout after it was asked to close");
                    return Ok(());
                }
                tracing::debug!("closing an HTTP/2 connection with no request in flight");
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
        }
    }
}

/// Returns once no request has been in flight for `period` in a row.
async fn idle_for(in_flight: &mut watch::Receiver<usize>, period: Duration) {
    loop {
        // Err: the connection's service is gone, so is the connection.
        if in_flight.wait_for(|n| *n == 0).await.is_err() {
            return std::future::pending().await;
        }
        match tokio::time::timeout(period, in_flight.changed()).await {
            Err(_) => return,
            Ok(Ok(())) => {}
            Ok(Err(_)) => return std::future::pending().await,
        }
    }
}

/// A connection's service that counts its requests in flight: from when
/// hyper hands one over until its response body has been sent, or dropped
/// (the client reset the stream, the connection ended). So a streamed
/// response (an SSE stream, a long poll) keeps its connection busy.
struct Counted<S> {
    inner: S,
    in_flight: Arc<watch::Sender<usize>>,
}

/// One request in flight; counted out when dropped.
struct InFlight(Arc<watch::Sender<usize>>);

impl InFlight {
    fn new(count: &Arc<watch::Sender<usize>>) -> Self {
        count.send_modify(|n| *n += 1);
        InFlight(count.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

type Answer<B, E> = Pin<Box<dyn Future<Output = Result<Response<CountedBody<B>>, E>> + Send>>;

impl<S, B> hyper::service::Service<Request<Incoming>> for Counted<S>
where
    S: hyper::service::Service<Request<Incoming>, Response = Response<B>>,
    S::Future: Send + 'static,
    B: Body + Unpin,
{
    type Response = Response<CountedBody<B>>;
    type Error = S::Error;
    type Future = Answer<B, S::Error>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        let in_flight = InFlight::new(&self.in_flight);
        let answer = self.inner.call(request);
        Box::pin(async move {
            let response = answer.await?;
            Ok(response.map(|body| CountedBody {
                body,
                _in_flight: in_flight,
            }))
        })
    }
}

/// A response body that keeps its request counted in flight.
struct CountedBody<B> {
    body: B,
    _in_flight: InFlight,
}

impl<B: Body + Unpin> Body for CountedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
