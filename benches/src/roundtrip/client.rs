//! The bench's HTTP side: signed requests, an SSE reader, and the error kinds a
//! failed request is counted under.
//!
//! The round trips go through [`http1`](super::http1) on a pool of kept-alive
//! connections shared by every agent (as `reqwest`'s pool was): per round trip
//! that costs well under half the client CPU `reqwest` did, CPU the bridge under
//! test gets instead. The rare requests outside the measured round trips (agent
//! registration, `/metrics`, the memory scenario's streams) keep `reqwest`.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lighthouse_security::{Credential, Signer};
use reqwest::Method;
use serde_json::Value;
use tokio::sync::Semaphore;

use super::http1::{self, Body, Conn, Head};

/// Requests one agent keeps in flight at most (its stream aside), as an agent
/// process with a small connection pool would. Without a bound, an open-loop
/// schedule that falls behind opens one connection per late request: tens of
/// thousands of them, until loopback runs out of ephemeral ports and every run
/// in the next minute fails to connect. Time spent waiting here counts, since
/// latency is measured from the planned send time.
pub const MAX_IN_FLIGHT_PER_AGENT: usize = 4;

/// One agent as the bench drives it: its id, a signer for its key and its
/// in-flight bound.
#[derive(Clone)]
pub struct Agent {
    pub id: String,
    signer: Signer,
    in_flight: Arc<Semaphore>,
}

impl Agent {
    pub fn new(cred: &Credential) -> Self {
        Agent {
            id: cred.agent.clone(),
            signer: cred.signer(),
            in_flight: Arc::new(Semaphore::new(MAX_IN_FLIGHT_PER_AGENT)),
        }
    }
}

/// The client every virtual agent shares: one bridge, one pool of idle
/// connections.
#[derive(Clone)]
pub struct Http {
    /// For the requests outside the round trips (see the module docs).
    pub client: reqwest::Client,
    pub base: String,
    /// The bridge's address, resolved once.
    addr: SocketAddr,
    /// The `host` header: the base URL's authority.
    host: Arc<str>,
    /// Kept-alive connections not in use; the most recently used is taken first.
    idle: Arc<Mutex<Vec<Conn>>>,
}

fn unix_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// A request failed before a status was read: `connect` or `transport`.
fn io_kind(connecting: bool) -> String {
    if connecting { "connect" } else { "transport" }.to_owned()
}

impl Http {
    /// A client for the bridge at `base`, a plain `http://host:port` URL.
    pub fn new(base: &str) -> Result<Self, String> {
        let base = base.trim_end_matches('/');
        let url = reqwest::Url::parse(base).map_err(|e| format!("bridge URL {base}: {e}"))?;
        let host = match (url.scheme(), url.host_str(), url.path()) {
            ("http", Some(h), "" | "/") => h.to_owned(),
            _ => {
                return Err(format!(
                    "bridge URL {base}: the bench speaks plain http://host:port"
                ));
            }
        };
        let port = url.port_or_known_default().unwrap_or(80);
        let addr = (host.as_str(), port)
            .to_socket_addrs()
            .map_err(|e| format!("bridge URL {base}: {e}"))?
            .next()
            .ok_or_else(|| format!("bridge URL {base}: no address"))?;
        let authority = match url.port() {
            Some(p) => format!("{host}:{p}"),
            None => host,
        };
        let client = reqwest::Client::builder()
            .tcp_nodelay(true)
            .pool_idle_timeout(Duration::from_secs(90))
            .build()
            .map_err(|e| format!("http client: {e}"))?;
        Ok(Http {
            client,
            base: base.to_owned(),
            addr,
            host: authority.into(),
            idle: Arc::new(Mutex::new(Vec::new())),
        })
    }

    /// A `reqwest` request signed as `agent` (PROTOCOL.md 2.2); `body` is sent
    /// as JSON when not empty.
    pub fn signed(
        &self,
        agent: &Agent,
        method: Method,
        path_and_query: &str,
        body: Vec<u8>,
    ) -> reqwest::RequestBuilder {
        let (path, query) = path_and_query
            .split_once('?')
            .unwrap_or((path_and_query, ""));
        let h = agent
            .signer
            .sign(method.as_str(), path, query, &body, unix_secs());
        let mut rb = self
            .client
            .request(method, format!("{}{path_and_query}", self.base));
        for (n, v) in h.pairs() {
            rb = rb.header(n, v);
        }
        if !body.is_empty() {
            rb = rb.header("content-type", "application/json").body(body);
        }
        rb
    }

    /// The bytes of a request signed as `agent` (PROTOCOL.md 2.2), with
    /// `extra` headers; `body` is sent as JSON when not empty.
    fn signed_request(
        &self,
        agent: &Agent,
        method: &str,
        path_and_query: &str,
        extra: Option<(&str, &str)>,
        body: &[u8],
    ) -> Vec<u8> {
        let (path, query) = path_and_query
            .split_once('?')
            .unwrap_or((path_and_query, ""));
        let h = agent.signer.sign(method, path, query, body, unix_secs());
        let mut out = Vec::with_capacity(512 + body.len());
        http1::write_request(
            &mut out,
            method,
            path_and_query,
            &self.host,
            h.pairs().into_iter().chain(extra),
            body,
        );
        out
    }

    /// Sends `request` on an idle connection, or a new one if none is idle or
    /// the idle one turns out closed by the bridge; returns the connection
    /// with the answer's head read. `Err` is an error kind.
    async fn exchange(&self, request: &[u8]) -> Result<(Conn, Head), String> {
        let idle = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        if let Some(mut conn) = idle {
            match conn.send(request).await {
                Ok(Some(head)) => return Ok((conn, head)),
                // Closed while idle: the bridge never saw the request.
                Ok(None) => {}
                Err(_) => return Err(io_kind(false)),
            }
        }
        self.exchange_new(request).await
    }

    /// Sends `request` on a new connection (not from the pool).
    async fn exchange_new(&self, request: &[u8]) -> Result<(Conn, Head), String> {
        let mut conn = Conn::connect(self.addr).await.map_err(|_| io_kind(true))?;
        match conn.send(request).await {
            Ok(Some(head)) => Ok((conn, head)),
            Ok(None) | Err(_) => Err(io_kind(false)),
        }
    }

    /// Returns a connection whose answer was read in full to the pool.
    fn release(&self, mut conn: Conn, keep_alive: bool) {
        if keep_alive && conn.reusable() {
            self.idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(conn);
        }
    }

    /// Sends a signed request and reads a JSON answer; a status other than
    /// `want` is an error counted under its [`kind`](failure_kind).
    pub async fn call<T: serde::de::DeserializeOwned>(
        &self,
        agent: &Agent,
        method: Method,
        path_and_query: &str,
        body: &[u8],
        want: u16,
        timeout: Duration,
    ) -> Result<T, String> {
        // The semaphore is never closed.
        let _permit = agent
            .in_flight
            .acquire()
            .await
            .map_err(|_| "transport".to_owned())?;
        let request = self.signed_request(agent, method.as_str(), path_and_query, None, body);
        let answer = async {
            let (mut conn, mut head) = self.exchange(&request).await?;
            let mut bytes = Vec::new();
            conn.read_body(&mut head.body, &mut bytes)
                .await
                .map_err(|_| io_kind(false))?;
            Ok::<_, String>((conn, head, bytes))
        };
        // Dropped on timeout, the connection closes rather than return to the
        // pool with an answer still to come.
        let (conn, head, bytes) = tokio::time::timeout(timeout, answer)
            .await
            .map_err(|_| "client_timeout".to_owned())??;
        self.release(conn, head.keep_alive);
        if head.status != want {
            return Err(failure_kind(head.status, &bytes));
        }
        serde_json::from_slice(&bytes).map_err(|_| "bad_json".to_owned())
    }

    /// Opens `agent`'s event stream (`GET /v1/stream`) on a connection of its
    /// own, resuming after `last_event_id`. `Err` is an error kind.
    pub async fn open_stream(
        &self,
        agent: &Agent,
        last_event_id: Option<u64>,
    ) -> Result<SseReader, String> {
        let id = last_event_id.map(|id| id.to_string());
        let extra = id.as_deref().map(|id| ("last-event-id", id));
        let request = self.signed_request(agent, "GET", "/v1/stream", extra, b"");
        let (mut conn, mut head) = self.exchange_new(&request).await?;
        if head.status != 200 {
            let mut bytes = Vec::new();
            let _ = conn.read_body(&mut head.body, &mut bytes).await;
            return Err(failure_kind(head.status, &bytes));
        }
        Ok(SseReader::new(conn, head.body))
    }

    /// An unsigned `GET` (health, metrics) returning the body as text.
    pub async fn get_text(&self, path: &str) -> Result<String, String> {
        let resp = self
            .client
            .get(format!("{}{path}", self.base))
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .map_err(|e| format!("GET {path}: {e}"))?;
        resp.text().await.map_err(|e| format!("GET {path}: {e}"))
    }
}

/// `http_<status>_<problem code>` for a refused request.
pub fn failure_kind(status: u16, body: &[u8]) -> String {
    let code = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("code").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_else(|| "none".to_owned());
    format!("http_{status}_{code}")
}

/// One server-sent event (comments are skipped by the reader).
#[derive(Debug)]
pub struct SseEvent {
    pub id: Option<u64>,
    pub event: String,
    pub data: String,
}

/// Reads events from a `text/event-stream` response opened by
/// [`Http::open_stream`].
pub struct SseReader {
    conn: Conn,
    body: Body,
    /// Body bytes received and not yet returned as events.
    buf: Vec<u8>,
    /// `buf` before this holds no blank line (so it is not searched again).
    scanned: usize,
}

impl SseReader {
    fn new(conn: Conn, body: Body) -> Self {
        SseReader {
            conn,
            body,
            buf: Vec::with_capacity(4096),
            scanned: 0,
        }
    }

    /// The next event, `Ok(None)` when the server ended the stream.
    pub async fn next(&mut self) -> Result<Option<SseEvent>, String> {
        loop {
            while let Some(end) = find_blank_line(&self.buf[self.scanned..]) {
                let end = self.scanned + end + 2;
                let ev = parse_block(&self.buf[..end]);
                self.buf.drain(..end);
                self.scanned = 0;
                if ev.is_some() {
                    return Ok(ev);
                }
            }
            // A blank line may straddle what is here and what comes next.
            self.scanned = self.buf.len().saturating_sub(1);
            let done = self
                .conn
                .read_some(&mut self.body, &mut self.buf)
                .await
                .map_err(|_| "transport".to_owned())?;
            if done && find_blank_line(&self.buf[self.scanned..]).is_none() {
                return Ok(None);
            }
        }
    }
}

fn find_blank_line(buf: &[u8]) -> Option<usize> {
    buf.windows(2).position(|w| w == b"\n\n")
}

/// An event block, or `None` for a comment-only block (a heartbeat).
fn parse_block(block: &[u8]) -> Option<SseEvent> {
    // Borrows the block when it is valid UTF-8, as the bridge's always is.
    let text = String::from_utf8_lossy(block);
    let mut ev = SseEvent {
        id: None,
        event: "message".to_owned(),
        data: String::new(),
    };
    let mut any = false;
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("id:") {
            ev.id = v.trim().parse().ok();
            any = true;
        } else if let Some(v) = line.strip_prefix("event:") {
            v.trim().clone_into(&mut ev.event);
            any = true;
        } else if let Some(v) = line.strip_prefix("data:") {
            if !ev.data.is_empty() {
                ev.data.push('\n');
            }
            ev.data.push_str(v.strip_prefix(' ').unwrap_or(v));
            any = true;
        }
    }
    any.then_some(ev)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_parse_and_comments_are_skipped() {
        let ev = parse_block(b"id: 7\nevent: elicitation.requested\ndata: {\"a\":1}\n\n").unwrap();
        assert_eq!(
            (ev.id, ev.event.as_str(), ev.data.as_str()),
            (Some(7), "elicitation.requested", "{\"a\":1}")
        );
        assert!(parse_block(b": heartbeat\n\n").is_none());
        assert_eq!(find_blank_line(b"a\n\nb"), Some(1));
    }

    #[test]
    fn refusals_are_named_by_status_and_code() {
        assert_eq!(
            failure_kind(429, br#"{"code":"rate_limited"}"#),
            "http_429_rate_limited"
        );
        assert_eq!(failure_kind(502, b"oops"), "http_502_none");
    }

    use std::collections::VecDeque;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    /// What the scripted server does with the next request.
    enum Answer {
        /// Writes these bytes and keeps the connection.
        Send(&'static [u8]),
        /// Writes these bytes (in two parts, a moment apart) and keeps the
        /// connection.
        Split(&'static [u8], &'static [u8]),
        /// Writes these bytes and closes the connection.
        SendAndClose(&'static [u8]),
        /// Never answers.
        Silent,
    }

    /// A request as the scripted server received it: connection number, head
    /// (request line and headers) and body.
    type Seen = (usize, String, Vec<u8>);

    /// A server on a free loopback port answering requests, over any number of
    /// connections, with `script` in order.
    async fn scripted(script: Vec<Answer>) -> (Http, Arc<Mutex<Vec<Seen>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let http = Http::new(&format!("http://{}", listener.local_addr().unwrap())).unwrap();
        let script = Arc::new(Mutex::new(VecDeque::from(script)));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let out = seen.clone();
        tokio::spawn(async move {
            for n in 0.. {
                let (stream, _) = listener.accept().await.unwrap();
                tokio::spawn(serve_connection(n, stream, script.clone(), seen.clone()));
            }
        });
        (http, out)
    }

    async fn serve_connection(
        n: usize,
        mut stream: TcpStream,
        script: Arc<Mutex<VecDeque<Answer>>>,
        seen: Arc<Mutex<Vec<Seen>>>,
    ) {
        let mut buf = Vec::new();
        loop {
            let head_end = loop {
                if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    break i + 4;
                }
                if stream.read_buf(&mut buf).await.unwrap_or(0) == 0 {
                    return;
                }
            };
            let head = String::from_utf8(buf[..head_end].to_vec()).unwrap();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .map_or(0, |v| v.parse().unwrap());
            while buf.len() < head_end + len {
                stream.read_buf(&mut buf).await.unwrap();
            }
            let body = buf[head_end..head_end + len].to_vec();
            buf.drain(..head_end + len);
            seen.lock().unwrap().push((n, head, body));
            let answer = script.lock().unwrap().pop_front().unwrap_or(Answer::Silent);
            match answer {
                Answer::Send(b) => stream.write_all(b).await.unwrap(),
                Answer::Split(a, b) => {
                    stream.write_all(a).await.unwrap();
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    stream.write_all(b).await.unwrap();
                }
                Answer::SendAndClose(b) => return stream.write_all(b).await.unwrap(),
                Answer::Silent => std::future::pending().await,
            }
        }
    }

    fn agent() -> Agent {
        Agent::new(
            &Credential::from_json(&format!(
                r#"{{"agent":"alice","role":"agent","key_id":1,"secret":"{}","bridge":"x"}}"#,
                "ab".repeat(32)
            ))
            .unwrap(),
        )
    }

    fn header<'a>(head: &'a str, name: &str) -> &'a str {
        head.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(": "))
            .unwrap_or("")
    }

    const OK: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 8\r\n\r\n{\"a\":1}\n";
    const T: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn calls_are_signed_and_reuse_one_connection() {
        let (http, seen) =
            scripted(vec![Answer::Send(OK), Answer::Split(&OK[..20], &OK[20..])]).await;
        let me = agent();
        let v: Value = http
            .call(&me, Method::POST, "/v1/x?a=1", b"{}", 200, T)
            .await
            .unwrap();
        assert_eq!(v["a"], 1);
        let v: Value = http
            .call(&me, Method::GET, "/v1/y", b"", 200, T)
            .await
            .unwrap();
        assert_eq!(v["a"], 1);
        let seen = seen.lock().unwrap();
        assert_eq!(seen.iter().map(|s| s.0).collect::<Vec<_>>(), [0, 0]);
        let (_, head, body) = &seen[0];
        assert!(head.starts_with("POST /v1/x?a=1 HTTP/1.1\r\n"), "{head}");
        assert_eq!(header(head, "content-type"), "application/json");
        assert_eq!(body, b"{}");
        // The signature is over the path and query as sent (PROTOCOL.md 2.2).
        let again = me.signer.sign_with_nonce(
            "POST",
            "/v1/x",
            "a=1",
            b"{}",
            header(head, "x-lighthouse-timestamp").parse().unwrap(),
            header(head, "x-lighthouse-nonce"),
        );
        assert_eq!(header(head, "x-lighthouse-signature"), again.signature);
        assert_eq!(header(head, "x-lighthouse-agent"), "alice");
        assert!(seen[1].1.starts_with("GET /v1/y HTTP/1.1\r\n"));
    }

    #[tokio::test]
    async fn a_connection_the_server_closed_is_replaced() {
        let (http, seen) = scripted(vec![Answer::SendAndClose(OK), Answer::Send(OK)]).await;
        let me = agent();
        for _ in 0..2 {
            let r: Result<Value, _> = http.call(&me, Method::GET, "/", b"", 200, T).await;
            assert!(r.is_ok(), "{r:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(
            seen.lock().unwrap().iter().map(|s| s.0).collect::<Vec<_>>(),
            [0, 1]
        );
    }

    #[tokio::test]
    async fn failures_get_their_kinds() {
        let (http, _) = scripted(vec![
            Answer::Send(
                b"HTTP/1.1 429 Too Many\r\ncontent-length: 23\r\n\r\n{\"code\":\"rate_limited\"}",
            ),
            Answer::Send(
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nnot\r\n0\r\n\r\n",
            ),
            Answer::Silent,
        ])
        .await;
        let me = agent();
        let call = async |t| {
            http.call::<Value>(&me, Method::GET, "/", b"", 200, t)
                .await
                .unwrap_err()
        };
        assert_eq!(call(T).await, "http_429_rate_limited");
        assert_eq!(call(T).await, "bad_json");
        assert_eq!(call(Duration::from_millis(100)).await, "client_timeout");
        let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let http = Http::new(&format!("http://{}", closed.local_addr().unwrap())).unwrap();
        drop(closed);
        let r = http.call::<Value>(&me, Method::GET, "/", b"", 200, T).await;
        assert_eq!(r.unwrap_err(), "connect");
    }

    #[tokio::test]
    async fn streams_yield_events_until_the_server_ends_them() {
        let (http, seen) = scripted(vec![
            Answer::Send(
                b"HTTP/1.1 401 Unauthorized\r\ncontent-length: 18\r\n\r\n{\"code\":\"bad_key\"}",
            ),
            // Chunks that split an event, its `id:` line and a chunk's CRLF.
            Answer::Split(
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nf\r\n: heartbeat\n\nid\r",
                b"\n25\r\n: 7\nevent: x\ndata: {}\n\nid: 8\ndata: y\n\r\n1\r\n\n\r\n0\r\n\r\n",
            ),
        ])
        .await;
        let me = agent();
        assert_eq!(
            http.open_stream(&me, None).await.err().unwrap(),
            "http_401_bad_key"
        );
        let mut reader = http.open_stream(&me, Some(6)).await.unwrap();
        let ev = reader.next().await.unwrap().unwrap();
        assert_eq!(
            (ev.id, ev.event.as_str(), ev.data.as_str()),
            (Some(7), "x", "{}")
        );
        let ev = reader.next().await.unwrap().unwrap();
        assert_eq!(
            (ev.id, ev.event.as_str(), ev.data.as_str()),
            (Some(8), "message", "y")
        );
        assert!(reader.next().await.unwrap().is_none());
        assert_eq!(header(&seen.lock().unwrap()[1].1, "last-event-id"), "6");
    }
}
