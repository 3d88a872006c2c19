//! The bench's HTTP side: signed requests with a pooled `reqwest` client, an SSE
//! reader, and the error kinds a failed request is counted under.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lighthouse_security::{Credential, Signer};
use reqwest::Method;
use serde_json::Value;
use tokio::sync::Semaphore;

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

/// The client every virtual agent shares: one connection pool to one bridge.
#[derive(Clone)]
pub struct Http {
    pub client: reqwest::Client,
    pub base: String,
}

fn unix_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

impl Http {
    pub fn new(base: &str) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .tcp_nodelay(true)
            .pool_idle_timeout(Duration::from_secs(90))
            .build()
            .map_err(|e| format!("http client: {e}"))?;
        Ok(Http {
            client,
            base: base.trim_end_matches('/').to_owned(),
        })
    }

    /// A request signed as `agent` (PROTOCOL.md 2.2); `body` is sent as JSON
    /// when not empty.
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

    /// Sends a signed request and reads a JSON answer; a status other than
    /// `want` is an error counted under its [`kind`](failure_kind).
    pub async fn call<T: serde::de::DeserializeOwned>(
        &self,
        agent: &Agent,
        method: Method,
        path_and_query: &str,
        body: Vec<u8>,
        want: u16,
        timeout: Duration,
    ) -> Result<T, String> {
        // The semaphore is never closed.
        let _permit = agent
            .in_flight
            .acquire()
            .await
            .map_err(|_| "transport".to_owned())?;
        let resp = self
            .signed(agent, method, path_and_query, body)
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| transport_kind(&e))?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.map_err(|e| transport_kind(&e))?;
        if status != want {
            return Err(failure_kind(status, &bytes));
        }
        serde_json::from_slice(&bytes).map_err(|_| "bad_json".to_owned())
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

/// `timeout`, `connect` or `transport` for a request that got no answer.
pub fn transport_kind(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "client_timeout".to_owned()
    } else if e.is_connect() {
        "connect".to_owned()
    } else {
        "transport".to_owned()
    }
}

/// One server-sent event (comments are skipped by the reader).
#[derive(Debug)]
pub struct SseEvent {
    pub id: Option<u64>,
    pub event: String,
    pub data: String,
}

/// Reads events from an open `text/event-stream` response.
pub struct SseReader {
    resp: reqwest::Response,
    buf: Vec<u8>,
}

impl SseReader {
    pub fn new(resp: reqwest::Response) -> Self {
        SseReader {
            resp,
            buf: Vec::with_capacity(4096),
        }
    }

    /// The next event, `Ok(None)` when the server ended the stream.
    pub async fn next(&mut self) -> Result<Option<SseEvent>, String> {
        loop {
            if let Some(end) = find_blank_line(&self.buf) {
                let block: Vec<u8> = self.buf.drain(..end + 2).collect();
                if let Some(ev) = parse_block(&block) {
                    return Ok(Some(ev));
                }
                continue;
            }
            match self.resp.chunk().await {
                Ok(Some(c)) => self.buf.extend_from_slice(&c),
                Ok(None) => return Ok(None),
                Err(e) => return Err(transport_kind(&e)),
            }
        }
    }
}

fn find_blank_line(buf: &[u8]) -> Option<usize> {
    buf.windows(2).position(|w| w == b"\n\n")
}

/// An event block, or `None` for a comment-only block (a heartbeat).
fn parse_block(block: &[u8]) -> Option<SseEvent> {
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
}
