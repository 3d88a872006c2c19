//! The bridge's listener: TCP with `TCP_NODELAY`, and at most `max_connections`
//! connections open at once. At the limit, accepting waits until one closes (the
//! kernel's backlog holds new connections meanwhile), so a client that opens a
//! connection per request cannot make the bridge hold tens of thousands of them.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::serve::Listener;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Listens on `addr` (an `ip:port`) with a backlog of `backlog` connections
/// (the kernel caps it at `net.core.somaxconn`).
///
/// Why not `TcpListener::bind`: its backlog is 1024. When a thousand agents
/// connect at once (a restart, a load test), the rest of their SYNs overflow
/// that queue, are dropped, and are retried by the client's kernel only after
/// its 1 s SYN timeout: measured as 1,456 listen overflows and a p99.9 of 1.2 s
/// in one 20 s run of `lighthouse-bench roundtrip --rate 3000`.
pub fn bind(addr: &str, backlog: u32) -> io::Result<TcpListener> {
    let addr: SocketAddr = addr
        .parse()
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "not an ip:port address"))?;
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    // As `TcpListener::bind` does: a restarted bridge can listen again at once.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(backlog)
}

/// A TCP listener bounded to `max` open connections.
pub struct Bounded {
    inner: TcpListener,
    permits: Arc<Semaphore>,
    max: usize,
    warned: bool,
    write_stall: Duration,
}

impl Bounded {
    /// At most `max` connections; a connection whose client reads nothing of
    /// what is written to it for `write_stall` fails (see [`Conn`]).
    pub fn new(inner: TcpListener, max: usize, write_stall: Duration) -> Self {
        Bounded {
            inner,
            permits: Arc::new(Semaphore::new(max)),
            max,
            warned: false,
            write_stall,
        }
    }
}

/// An accepted connection; its slot is given back when it is dropped.
///
/// A write that cannot go out for `write_stall` (the client's receive window
/// and our send buffer are full: it stopped reading) fails with `TimedOut`, and
/// hyper closes the connection. Nothing else would: hyper stops polling a
/// response body whose socket is full, so a stream's own checks (its slow-
/// consumer cut, its credential re-check) never run, and a client that stops
/// reading an SSE stream held its connection and its subscription slot for
/// ever.
pub struct Conn {
    io: TcpStream,
    _slot: OwnedSemaphorePermit,
    write_stall: Duration,
    /// When the pending write gives up; set while writes are pending.
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Conn {
    /// What a pending write does: fail once it has been pending for
    /// `write_stall`, else stay pending (woken by the socket or the timer).
    fn pending_write<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        let within = self.write_stall;
        let timer = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(within)));
        if timer.as_mut().poll(cx).is_ready() {
            self.stalled = None;
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "the client read nothing for {} ms; closing the connection",
                    within.as_millis()
                ),
            )));
        }
        Poll::Pending
    }

    fn wrote<T>(&mut self, cx: &mut Context<'_>, p: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        match p {
            Poll::Pending => self.pending_write(cx),
            ready => {
                self.stalled = None;
                ready
            }
        }
    }
}

impl Listener for Bounded {
    type Io = Conn;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Conn, SocketAddr) {
        if self.permits.available_permits() == 0 {
            if !self.warned {
                tracing::warn!(
                    max_connections = self.max,
                    "connection limit reached; new connections wait"
                );
                self.warned = true;
            }
        } else {
            self.warned = false;
        }
        let slot = match self.permits.clone().acquire_owned().await {
            Ok(p) => p,
            // The semaphore is never closed; if it were, accept nothing more.
            Err(_) => std::future::pending().await,
        };
        let (io, addr) = Listener::accept(&mut self.inner).await;
        if let Err(e) = io.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        (
            Conn {
                io,
                _slot: slot,
                write_stall: self.write_stall,
                stalled: None,
            },
            addr,
        )
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// What a connection speaks, from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// Anything but the HTTP/2 preface (hyper refuses what is not HTTP/1).
    Http1,
    /// The HTTP/2 connection preface.
    Http2,
}

impl Conn {
    /// Waits for the client's first bytes, up to `within`: `None` when they
    /// did not come in time. hyper's automatic HTTP/1-or-2 detection reads
    /// the first bytes with no deadline of its own (its header read timeout
    /// starts later), so a connection that never speaks, or that trickles the
    /// HTTP/2 preface, would otherwise be held for ever.
    pub async fn first_bytes_within(&self, within: Duration) -> Option<Protocol> {
        const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
        let deadline = tokio::time::Instant::now() + within;
        let mut buf = [0u8; H2_PREFACE.len()];
        loop {
            match tokio::time::timeout_at(deadline, self.io.peek(&mut buf)).await {
                Err(_) => return None,
                // hyper sees the error or the end of the stream itself.
                Ok(Err(_)) | Ok(Ok(0)) => return Some(Protocol::Http1),
                Ok(Ok(n)) if buf[..n] != H2_PREFACE[..n] => return Some(Protocol::Http1),
                Ok(Ok(n)) if n == buf.len() => return Some(Protocol::Http2),
                // A partial HTTP/2 preface: peeking again at once would spin.
                // (A timeout polls its future before its deadline, so a peek
                // that is always ready needs the explicit check.)
                Ok(Ok(_)) if tokio::time::Instant::now() >= deadline => return None,
                Ok(Ok(_)) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let p = Pin::new(&mut this.io).poll_write(cx, buf);
        this.wrote(cx, p)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let p = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.wrote(cx, p)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let p = Pin::new(&mut this.io).poll_flush(cx);
        this.wrote(cx, p)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn accepting_waits_at_the_limit_and_resumes_when_a_connection_closes() {
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        let mut l = Bounded::new(tcp, 1, Duration::from_secs(60));
        let _c1 = TcpStream::connect(addr).await.unwrap();
        let (first, _) = l.accept().await;
        let _c2 = TcpStream::connect(addr).await.unwrap();
        // The second connection is in the backlog, not accepted.
        let waited = tokio::time::timeout(Duration::from_millis(200), l.accept()).await;
        assert!(waited.is_err(), "accepted past the limit");
        drop(first);
        let second = tokio::time::timeout(Duration::from_secs(5), l.accept()).await;
        assert!(second.is_ok(), "did not accept after a connection closed");
    }

    /// A client that stops reading makes the connection's writes fail after
    /// the stall timeout (hyper then closes it); one that reads is unaffected.
    #[tokio::test]
    async fn writes_to_a_client_that_stopped_reading_fail_after_the_stall_timeout() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        // Long enough that a reading client starved by a loaded machine is not
        // taken for one that stopped reading.
        let mut l = Bounded::new(tcp, 2, Duration::from_millis(1500));
        let chunk = vec![b'x'; 64 << 10];

        // Reads everything: a second of writes goes through.
        let mut reader = TcpStream::connect(addr).await.unwrap();
        let (mut served, _) = l.accept().await;
        let drain = tokio::spawn(async move {
            let mut buf = vec![0u8; 64 << 10];
            while reader.read(&mut buf).await.is_ok_and(|n| n > 0) {}
        });
        let until = tokio::time::Instant::now() + Duration::from_secs(1);
        while tokio::time::Instant::now() < until {
            served.write_all(&chunk).await.unwrap();
        }
        drop(served);
        drain.await.unwrap();

        // Never reads: the buffers fill, then a write fails.
        let _idle = TcpStream::connect(addr).await.unwrap();
        let (mut served, _) = l.accept().await;
        let failed = tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                if let Err(e) = served.write_all(&chunk).await {
                    return e;
                }
            }
        })
        .await
        .expect("a write to a client that reads nothing never failed");
        assert_eq!(failed.kind(), io::ErrorKind::TimedOut, "{failed}");
    }
}
