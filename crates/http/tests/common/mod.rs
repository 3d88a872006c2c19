//! A bridge on a real loopback socket and signed HTTP helpers for tests.
#![allow(dead_code)]

use std::path::PathBuf;

use lighthouse_core::setup::initialize;
use lighthouse_core::{Bridge, BridgeConfig};
use lighthouse_security::{Credential, MasterKey};
use reqwest::Method;
use serde_json::Value;

pub struct TestBridge {
    pub bridge: Bridge,
    pub base: String,
    pub creds: PathBuf,
    pub shutdown: lighthouse_http::ShutdownSignal,
    pub _dir: tempfile::TempDir,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for TestBridge {
    fn drop(&mut self) {
        self.server.abort();
    }
}

pub async fn start() -> TestBridge {
    start_with(|_| {}).await
}

pub async fn start_with(tune: impl FnOnce(&mut BridgeConfig)) -> TestBridge {
    start_tuned(tune, |_| {}).await
}

/// A bridge with both its engine and its HTTP layer configured.
pub async fn start_tuned(
    tune: impl FnOnce(&mut BridgeConfig),
    tune_http: impl FnOnce(&mut lighthouse_http::HttpConfig),
) -> TestBridge {
    start_full(tune, tune_http, axum::Router::new()).await
}

/// A bridge serving `extra` routes inside its observability
/// (`lighthouse_http::router_with`).
pub async fn start_with_routes(extra: axum::Router) -> TestBridge {
    start_full(|_| {}, |_| {}, extra).await
}

async fn start_full(
    tune: impl FnOnce(&mut BridgeConfig),
    tune_http: impl FnOnce(&mut lighthouse_http::HttpConfig),
    extra: axum::Router,
) -> TestBridge {
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let mut config = BridgeConfig::new(dir.path().join("data"), MasterKey::generate().unwrap());
    config.public_url = base.clone();
    tune(&mut config);
    let bridge = Bridge::open(config).await.unwrap();
    let creds = dir.path().join("creds");
    initialize(&bridge, &creds, true).await.unwrap();
    let mut http = lighthouse_http::HttpConfig::default();
    tune_http(&mut http);
    let (router, shutdown) = lighthouse_http::router_with(bridge.clone(), http, extra);
    let server = tokio::spawn(async move {
        axum::serve(listener, router).await.unwrap();
    });
    TestBridge {
        bridge,
        base,
        creds,
        shutdown,
        _dir: dir,
        server,
    }
}

impl TestBridge {
    pub fn agent(&self, name: &str) -> Agent {
        let cred = Credential::read(self.creds.join(format!("{name}.json"))).unwrap();
        Agent {
            cred,
            http: reqwest::Client::new(),
            base: self.base.clone(),
        }
    }

    /// Registers a new agent through the admin API.
    pub async fn add_agent(&self, name: &str, role: &str) -> Agent {
        let admin = self.agent("admin");
        let r = admin
            .post("/v1/agents", serde_json::json!({"id": name, "role": role}))
            .await;
        assert_eq!(r.status, 201, "{:?}", r.body);
        let cred: Credential = serde_json::from_value(r.body).unwrap();
        Agent {
            cred,
            http: reqwest::Client::new(),
            base: self.base.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Agent {
    pub cred: Credential,
    pub http: reqwest::Client,
    pub base: String,
}

#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
    pub headers: reqwest::header::HeaderMap,
}

impl Reply {
    pub fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or("")
    }
}

pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

impl Agent {
    pub fn name(&self) -> &str {
        &self.cred.agent
    }

    pub fn request(
        &self,
        method: Method,
        path_and_query: &str,
        body: &[u8],
    ) -> reqwest::RequestBuilder {
        self.request_at(method, path_and_query, body, now_secs())
    }

    pub fn request_at(
        &self,
        method: Method,
        path_and_query: &str,
        body: &[u8],
        ts: i64,
    ) -> reqwest::RequestBuilder {
        let (path, query) = path_and_query
            .split_once('?')
            .unwrap_or((path_and_query, ""));
        let h = self
            .cred
            .signer()
            .sign(method.as_str(), path, query, body, ts);
        let mut rb = self
            .http
            .request(method, format!("{}{path_and_query}", self.base));
        for (n, v) in h.pairs() {
            rb = rb.header(n, v);
        }
        if !body.is_empty() {
            rb = rb
                .header("content-type", "application/json")
                .body(body.to_vec());
        }
        rb
    }

    pub async fn send(&self, method: Method, path_and_query: &str, body: &[u8]) -> Reply {
        reply(
            self.request(method, path_and_query, body)
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    pub async fn get(&self, path_and_query: &str) -> Reply {
        self.send(Method::GET, path_and_query, b"").await
    }

    pub async fn post(&self, path: &str, body: Value) -> Reply {
        self.send(Method::POST, path, &serde_json::to_vec(&body).unwrap())
            .await
    }

    pub async fn put(&self, path: &str, body: Value) -> Reply {
        self.send(Method::PUT, path, &serde_json::to_vec(&body).unwrap())
            .await
    }

    pub async fn delete(&self, path: &str) -> Reply {
        self.send(Method::DELETE, path, b"").await
    }

    /// Opens `GET path` as an SSE stream.
    pub async fn stream(&self, path_and_query: &str, last_event_id: Option<u64>) -> Sse {
        let mut rb = self.request(Method::GET, path_and_query, b"");
        if let Some(id) = last_event_id {
            rb = rb.header("last-event-id", id.to_string());
        }
        let resp = rb.send().await.unwrap();
        assert_eq!(resp.status(), 200, "stream refused");
        Sse {
            resp,
            buf: String::new(),
        }
    }
}

pub async fn reply(resp: reqwest::Response) -> Reply {
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap();
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    Reply {
        status,
        body,
        headers,
    }
}

pub struct Sse {
    resp: reqwest::Response,
    buf: String,
}

#[derive(Debug, Clone)]
pub struct SseEvent {
    pub id: Option<u64>,
    pub event: String,
    pub data: Value,
}

impl Sse {
    /// A response header of the stream.
    pub fn header(&self, name: &str) -> Option<String> {
        self.resp
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    }

    /// Reads an SSE response opened some other way (a bearer token).
    pub fn from_response(resp: reqwest::Response) -> Sse {
        Sse {
            resp,
            buf: String::new(),
        }
    }

    /// The next event (comments skipped), or `None` when the stream ends or
    /// nothing arrives within `secs`.
    pub async fn next_within(&mut self, secs: u64) -> Option<SseEvent> {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(secs);
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let mut ev = SseEvent {
                    id: None,
                    event: "message".into(),
                    data: Value::Null,
                };
                let mut data = String::new();
                let mut any = false;
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        ev.id = v.trim().parse().ok();
                        any = true;
                    } else if let Some(v) = line.strip_prefix("event:") {
                        ev.event = v.trim().to_owned();
                        any = true;
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                        any = true;
                    }
                }
                if !any {
                    continue; // a comment (heartbeat)
                }
                ev.data = serde_json::from_str(&data).unwrap_or(Value::String(data));
                return Some(ev);
            }
            let chunk = tokio::time::timeout_at(deadline, self.resp.chunk())
                .await
                .ok()?
                .ok()??;
            self.buf.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
}

pub fn port_schema() -> Value {
    serde_json::json!({"type": "object", "properties": {"port": {"type": "integer", "minimum": 1, "maximum": 65535}}, "required": ["port"]})
}
