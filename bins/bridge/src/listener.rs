//! The bridge's listener: TCP with `TCP_NODELAY`, and at most `max_connections`
//! connections open at once. At the limit, accepting waits until one closes (the
//! kernel's backlog holds new connections meanwhile), so a client that opens a
//! connection per request cannot make the bridge hold tens of thousands of them.
//! One peer address holds at most `max_connections_per_peer` of them: one more
//! from it is closed at once, so a single client cannot take every slot.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

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

/// A TCP listener bounded to `max` open connections, `per_peer` of them from
/// one address.
pub struct Bounded {
    inner: TcpListener,
    permits: Arc<Semaphore>,
    max: usize,
    warned: bool,
    write_stall: WriteStall,
    peers: Peers,
    /// Connections refused since the last warning about them, and when that
    /// warning was logged.
    refused: u64,
    refusal_logged: Option<Instant>,
}

/// How often at most a refused connection is logged (with the number
/// refused since the previous line): a client retrying in a loop would
/// otherwise fill the log.
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(60);

impl Bounded {
    /// At most `max` connections, `per_peer` from one address; a connection
    /// whose client reads too little of what is written to it fails (see
    /// [`WriteStall`]).
    pub fn new(inner: TcpListener, max: usize, per_peer: usize, write_stall: WriteStall) -> Self {
        Bounded {
            inner,
            permits: Arc::new(Semaphore::new(max)),
            max,
            warned: false,
            write_stall,
            peers: Peers {
                max: per_peer,
                open: Arc::default(),
            },
            refused: 0,
            refusal_logged: None,
        }
    }

    /// Counts a connection refused for its peer's limit; logs it, at most
    /// once per [`REFUSAL_LOG_INTERVAL`].
    fn refused(&mut self, peer: IpAddr) {
        self.refused += 1;
        if self
            .refusal_logged
            .is_some_and(|at| at.elapsed() < REFUSAL_LOG_INTERVAL)
        {
            return;
        }
        tracing::warn!(
            %peer,
            max_connections_per_peer = self.peers.max,
            refused = self.refused,
            "connection refused: its address already has max_connections_per_peer open \
             (logged at most once a minute; `refused` counts those since the last line)"
        );
        self.refused = 0;
        self.refusal_logged = Some(Instant::now());
    }
}

/// Open connections per peer address. Entries are removed when their last
/// connection closes, so the map holds at most one per open connection.
struct Peers {
    max: usize,
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl Peers {
    /// A slot for one more connection from `peer`, unless it has `max` open.
    /// An IPv4 address mapped into IPv6 counts as the IPv4 address.
    fn admit(&self, peer: IpAddr) -> Option<PeerSlot> {
        let peer = peer.to_canonical();
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let n = open.entry(peer).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(PeerSlot {
            open: self.open.clone(),
            peer,
        })
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// One connection of a peer, given back when dropped.
struct PeerSlot {
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
    peer: IpAddr,
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if let Entry::Occupied(mut e) = open.entry(self.peer) {
            *e.get_mut() -= 1;
            if *e.get() == 0 {
                e.remove();
            }
        }
    }
}

/// How much a client must read of what a connection writes to it.
///
/// Once a write cannot go out (the client's receive window and our send
/// buffer are full), the client has `within` to take `min_bytes` more, or all
/// that was offered in one write (then it has caught up: nothing was left
/// waiting). Else the connection's next write that cannot go out fails with
/// `TimedOut`, and hyper closes the connection. Nothing else would: hyper
/// stops polling a response body whose socket is full, so a stream's own
/// checks (its slow-consumer cut, its credential re-check) never run, and a
/// client that stops reading an SSE stream held its connection and its
/// subscription slot for ever. Any progress used to restart the clock, so a
/// client that read a few bytes a minute kept them as long.
#[derive(Debug, Clone, Copy)]
pub struct WriteStall {
    pub within: Duration,
    pub min_bytes: usize,
}

/// A stall in progress: since when writes have been held up, and what the
/// client has taken since.
struct Stall {
    gives_up: Pin<Box<tokio::time::Sleep>>,
    taken: usize,
}

/// An accepted connection; its slots (in all and for its peer) are given
/// back when it is dropped. Its writes fail if the client reads too little
/// ([`WriteStall`]).
pub struct Conn {
    io: TcpStream,
    _slot: OwnedSemaphorePermit,
    _peer: PeerSlot,
    write_stall: WriteStall,
    /// Set from the first write that could not go out until the client has
    /// taken enough.
    stall: Option<Stall>,
}

impl Conn {
    /// What a write that cannot go out does: fail once the stall it belongs
    /// to has lasted `within`, else stay pending (woken by the socket or the
    /// timer).
    fn pending_write<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        let WriteStall { within, min_bytes } = self.write_stall;
        let stall = self.stall.get_or_insert_with(|| Stall {
            gives_up: Box::pin(tokio::time::sleep(within)),
            taken: 0,
        });
        if stall.gives_up.as_mut().poll(cx).is_ready() {
            let taken = stall.taken;
            self.stall = None;
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "the client read {taken} bytes in {} ms (at least {min_bytes} are needed); \
                     closing the connection",
                    within.as_millis()
                ),
            )));
        }
        Poll::Pending
    }

    /// Accounts for a write of `offered` bytes.
    fn wrote(
        &mut self,
        cx: &mut Context<'_>,
        offered: usize,
        p: Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        match p {
            Poll::Pending => self.pending_write(cx),
            Poll::Ready(Ok(n)) => {
                if let Some(stall) = &mut self.stall {
                    stall.taken = stall.taken.saturating_add(n);
                    if stall.taken >= self.write_stall.min_bytes || n >= offered {
                        self.stall = None;
                    }
                }
                Poll::Ready(Ok(n))
            }
            failed => {
                self.stall = None;
                failed
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
        loop {
            let (io, addr) = Listener::accept(&mut self.inner).await;
            let Some(peer) = self.peers.admit(addr.ip()) else {
                // A reset, not a close: nothing is left in TIME_WAIT however
                // often the client retries.
                let _ = io.set_zero_linger();
                drop(io);
                self.refused(addr.ip());
                continue;
            };
            if let Err(e) = io.set_nodelay(true) {
                tracing::debug!(error = %e, "cannot set TCP_NODELAY");
            }
            return (
                Conn {
                    io,
                    _slot: slot,
                    _peer: peer,
                    write_stall: self.write_stall,
                    stall: None,
                },
                addr,
            );
        }
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

/// The HTTP/2 connection preface (RFC 9113 3.4).
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

impl Conn {
    /// Reads the client's first bytes, as many as it takes to tell HTTP/2's
    /// preface from anything else (at most its 24), within `within`: `None`
    /// when they did not come in time, or the client closed or failed first.
    /// hyper's automatic HTTP/1-or-2 detection reads them with no deadline
    /// of its own (its header read timeout starts later), so a connection
    /// that never speaks, or that trickles the preface, would otherwise be
    /// held for ever.
    ///
    /// The bytes are read, not peeked: a peek is ready again at once while
    /// they sit unread, so a client that sent part of the preface and
    /// stopped (2,000 of them cost a third of the machine's two cores,
    /// re-peeked every 10 ms) made the bridge poll until the deadline; a
    /// read waits for more. hyper reads them again from the returned
    /// connection.
    pub async fn read_protocol(mut self, within: Duration) -> Option<(Protocol, Rewound)> {
        use tokio::io::AsyncReadExt;
        let deadline = tokio::time::Instant::now() + within;
        let mut first = [0u8; H2_PREFACE.len()];
        let mut len = 0;
        let protocol = loop {
            match tokio::time::timeout_at(deadline, self.io.read(&mut first[len..])).await {
                Err(_) | Ok(Err(_)) | Ok(Ok(0)) => return None,
                Ok(Ok(n)) => len += n,
            }
            if first[..len] != H2_PREFACE[..len] {
                break Protocol::Http1;
            }
            if len == H2_PREFACE.len() {
                break Protocol::Http2;
            }
        };
        Some((
            protocol,
            Rewound {
                conn: self,
                first,
                at: 0,
                len,
            },
        ))
    }
}

/// A connection whose first bytes were read to tell its protocol
/// ([`Conn::read_protocol`]): reading it gives those bytes first, then the
/// rest of what the client sends.
pub struct Rewound {
    conn: Conn,
    first: [u8; H2_PREFACE.len()],
    at: usize,
    len: usize,
}

impl AsyncRead for Rewound {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.at < this.len {
            let n = (this.len - this.at).min(buf.remaining());
            buf.put_slice(&this.first[this.at..this.at + n]);
            this.at += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.conn).poll_read(cx, buf)
    }
}

impl AsyncWrite for Rewound {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().conn).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().conn).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.conn.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().conn).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().conn).poll_shutdown(cx)
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
        this.wrote(cx, buf.len(), p)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let p = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        let offered = bufs.iter().map(|b| b.len()).sum();
        this.wrote(cx, offered, p)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // A TCP socket's flush is always ready; were it pending, it would
        // be a write held up like any other.
        let this = self.get_mut();
        match Pin::new(&mut this.io).poll_flush(cx) {
            Poll::Pending => this.pending_write(cx),
            ready => ready,
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn stall(ms: u64) -> WriteStall {
        WriteStall {
            within: Duration::from_millis(ms),
            min_bytes: 16 << 10,
        }
    }

    #[tokio::test]
    async fn accepting_waits_at_the_limit_and_resumes_when_a_connection_closes() {
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        let mut l = Bounded::new(tcp, 1, 256, stall(60_000));
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

    /// A peer at its limit gets its next connection closed at once while
    /// other peers are served; the count of a peer goes when its last
    /// connection does, so the map is bounded by the open connections.
    #[tokio::test]
    async fn one_peer_holds_at_most_its_limit_and_others_are_served() {
        use tokio::io::AsyncReadExt;
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        let mut l = Bounded::new(tcp, 10, 2, stall(60_000));
        let _c1 = TcpStream::connect(addr).await.unwrap();
        let _c2 = TcpStream::connect(addr).await.unwrap();
        let (a1, _) = l.accept().await;
        let (a2, _) = l.accept().await;
        let mut c3 = TcpStream::connect(addr).await.unwrap();
        let waited = tokio::time::timeout(Duration::from_millis(300), l.accept()).await;
        assert!(
            waited.is_err(),
            "a third connection from one peer was accepted"
        );
        let mut byte = [0u8; 1];
        let closed = tokio::time::timeout(Duration::from_secs(5), c3.read(&mut byte)).await;
        assert!(
            matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
            "the refused connection was not closed: {closed:?}"
        );
        // Another loopback address is another peer.
        let other = tokio::net::TcpSocket::new_v4().unwrap();
        other.bind("127.0.0.2:0".parse().unwrap()).unwrap();
        let _c4 = other.connect(addr).await.unwrap();
        let (a4, from) = tokio::time::timeout(Duration::from_secs(5), l.accept())
            .await
            .expect("another peer was not served");
        assert_eq!(from.ip().to_string(), "127.0.0.2");
        assert_eq!(l.peers.tracked(), 2);
        drop((a1, a2, a4));
        assert_eq!(l.peers.tracked(), 0, "closed peers are forgotten");
        // The first peer is served again once it is under its limit.
        let _c5 = TcpStream::connect(addr).await.unwrap();
        let again = tokio::time::timeout(Duration::from_secs(5), l.accept()).await;
        assert!(again.is_ok(), "the peer was not served again");
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
        let mut l = Bounded::new(tcp, 2, 256, stall(1500));
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

    /// Writes 64 KiB chunks to a client that reads `per_tick` bytes every
    /// 100 ms, over small socket buffers (so its reads free room, and writes
    /// complete, every few ticks), for up to `run`: the error that ended
    /// the writes, if one did.
    async fn trickle(l: &mut Bounded, per_tick: usize, run: Duration) -> Option<io::Error> {
        use std::os::fd::AsRawFd;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let mut client = socket.connect(l.local_addr().unwrap()).await.unwrap();
        let (mut served, _) = l.accept().await;
        let size: libc::c_int = 4096;
        // SAFETY: setsockopt reads `size` for the length given, on a socket
        // this test owns.
        let set = unsafe {
            libc::setsockopt(
                served.io.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_SNDBUF,
                (&raw const size).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        assert_eq!(set, 0, "{}", io::Error::last_os_error());
        let reader = tokio::spawn(async move {
            let mut buf = vec![0u8; per_tick];
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                if !client.read(&mut buf).await.is_ok_and(|n| n > 0) {
                    return;
                }
            }
        });
        let chunk = vec![b'x'; 64 << 10];
        let failed = tokio::time::timeout(run, async {
            loop {
                if let Err(e) = served.write_all(&chunk).await {
                    return e;
                }
            }
        })
        .await
        .ok();
        drop(served);
        reader.abort();
        failed
    }

    /// A client that reads, but less than `min_bytes` (16 KiB) per stall
    /// timeout of what is held up for it, is cut off too; one that reads
    /// more is not. (Any completed write used to restart the clock, so a
    /// trickle of reads kept the connection and its buffers for ever.)
    #[tokio::test]
    async fn a_client_reading_a_trickle_is_cut_off_and_a_slow_one_is_not() {
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        // Long enough that a reading client starved by a loaded machine is
        // not taken for one that reads too little.
        let mut l = Bounded::new(tcp, 2, 256, stall(2000));
        // 5 KiB a second, 10 KiB per stall timeout: with any progress
        // restarting the clock, this client was never cut off.
        let failed = trickle(&mut l, 512, Duration::from_secs(20))
            .await
            .expect("a client reading 512 bytes every 100 ms was never cut off");
        assert_eq!(failed.kind(), io::ErrorKind::TimedOut, "{failed}");
        // 80 KiB a second.
        let failed = trickle(&mut l, 8 << 10, Duration::from_secs(6)).await;
        assert!(
            failed.is_none(),
            "a client reading 80 KiB/s was cut off: {failed:?}"
        );
    }
}
