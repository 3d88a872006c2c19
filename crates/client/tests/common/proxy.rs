//! A TCP proxy in front of the bridge that can swallow responses (the request
//! reaches the bridge, the client never hears back), pass on only the head of
//! responses, and cut every open connection, to test retries and stream
//! resumption against real failures.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

struct State {
    upstream: SocketAddr,
    swallow: AtomicUsize,
    swallowed: AtomicUsize,
    heads_only: AtomicBool,
    connections: AtomicUsize,
    live: Mutex<Vec<JoinHandle<()>>>,
}

pub struct Proxy {
    pub url: String,
    state: Arc<State>,
    accept: JoinHandle<()>,
}

impl Proxy {
    pub async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let state = Arc::new(State {
            upstream,
            swallow: AtomicUsize::new(0),
            swallowed: AtomicUsize::new(0),
            heads_only: AtomicBool::new(false),
            connections: AtomicUsize::new(0),
            live: Mutex::new(Vec::new()),
        });
        let st = state.clone();
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                st.connections.fetch_add(1, Ordering::SeqCst);
                let st2 = st.clone();
                let task = tokio::spawn(async move { handle(client, st2).await });
                st.live.lock().unwrap().push(task);
            }
        });
        Proxy { url, state, accept }
    }

    /// The next `n` connections deliver one request to the bridge, wait until
    /// the bridge starts answering, and then close without passing the answer on.
    pub fn swallow_next_responses(&self, n: usize) {
        self.state.swallow.store(n, Ordering::SeqCst);
    }

    /// While on, new connections deliver one request to the bridge, pass on
    /// the head of its answer (status and headers), and close: a stream
    /// connects and then breaks before its first event.
    pub fn pass_heads_only(&self, on: bool) {
        self.state.heads_only.store(on, Ordering::SeqCst);
    }

    /// Responses swallowed so far.
    pub fn swallowed(&self) -> usize {
        self.state.swallowed.load(Ordering::SeqCst)
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }

    /// Cuts every open connection.
    pub fn cut_connections(&self) {
        for t in self.state.live.lock().unwrap().drain(..) {
            t.abort();
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut_connections();
    }
}

async fn handle(mut client: TcpStream, st: Arc<State>) {
    let Ok(mut upstream) = TcpStream::connect(st.upstream).await else {
        return;
    };
    let swallow = st
        .swallow
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    if swallow {
        let Some(request) = read_request(&mut client).await else {
            return;
        };
        if upstream.write_all(&request).await.is_err() {
            return;
        }
        let mut first = [0u8; 1];
        if matches!(upstream.read(&mut first).await, Ok(1)) {
            st.swallowed.fetch_add(1, Ordering::SeqCst);
        }
        // Both sockets close here: the client never sees the answer.
        return;
    }
    if st.heads_only.load(Ordering::SeqCst) {
        let Some(request) = read_request(&mut client).await else {
            return;
        };
        if upstream.write_all(&request).await.is_err() {
            return;
        }
        let mut answer = Vec::new();
        let mut chunk = [0u8; 4096];
        while let Ok(n @ 1..) = upstream.read(&mut chunk).await {
            answer.extend_from_slice(&chunk[..n]);
            if let Some(i) = answer.windows(4).position(|w| w == b"\r\n\r\n") {
                let _ = client.write_all(&answer[..i + 4]).await;
                break;
            }
        }
        return;
    }
    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
}

/// Reads one HTTP/1.1 request with a `Content-Length` body (what the client sends).
async fn read_request(s: &mut TcpStream) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let len = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    while buf.len() < head_end + len {
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Some(buf)
}
