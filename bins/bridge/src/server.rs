//! The accept loop. `axum::serve` builds hyper connections without a timer,
//! so a client that sends its request head one byte a minute, or opens a
//! connection and never speaks, holds one of the `max_connections` slots
//! forever. Here every HTTP/1 connection must deliver each request head within
//! `header_read_timeout` (idle keep-alive connections included: hyper starts the
//! clock when it starts waiting for a head), and HTTP/2 connections are pinged
//! so a vanished peer is noticed.

use std::future::Future;
use std::time::Duration;

use axum::Router;
use axum::serve::Listener;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;

use crate::listener::Bounded;

/// What one connection may take: timeouts, and the sizes that bound the
/// memory a client can pin before it has authenticated.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Longest wait for a complete request head, and longest idle keep-alive.
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
    let graceful = GracefulShutdown::new();
    let (stop_tx, stopped) = tokio::sync::watch::channel(());
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
        let service = TowerToHyperService::new(router.clone());
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let header_read = limits.header_read;
        let mut silent_until_stop = stopped.clone();
        connections.spawn(async move {
            // A connection that has not spoken yet holds up no shutdown: it
            // is dropped when the server stops, as it would be on timeout.
            let spoke = tokio::select! {
                spoke = io.first_bytes_within(header_read) => spoke,
                _ = silent_until_stop.changed() => false,
            };
            if !spoke {
                tracing::debug!(%remote, "connection closed: no request within the header read timeout");
                drop(watcher);
                return;
            }
            let conn = builder
                .serve_connection_with_upgrades(TokioIo::new(io), service)
                .into_owned();
            if let Err(e) = watcher.watch(conn).await {
                // Timeouts, resets and malformed requests end here; they are
                // the client's business, not an operator's.
                tracing::debug!(%remote, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    // Wakes the connections still waiting for their first bytes.
    stop_tx.send_replace(());
    graceful.shutdown().await;
    // Every watched connection has closed; what is left ends now.
    connections.shutdown().await;
}
