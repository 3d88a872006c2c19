//! A bridge serving `/mcp` (and the REST API) on a real loopback socket, and
//! rmcp clients connected to it with bearer tokens.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;

use lighthouse_core::{Bridge, BridgeConfig};
use lighthouse_mcp::McpConfig;
use lighthouse_security::MasterKey;
use rmcp::model::{CallToolRequestParams, CallToolResult, ProtocolVersion};
use rmcp::service::RunningService;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{ClientLifecycleMode, ClientServiceExt, RoleClient};
use serde_json::Value;

pub type McpClient = RunningService<RoleClient, ()>;

pub struct TestBridge {
    pub bridge: Bridge,
    pub base: String,
    pub creds: PathBuf,
    /// Ends every open `/mcp` stream, as the bridge does when it shuts down.
    #[allow(dead_code)]
    pub mcp_shutdown: lighthouse_mcp::McpShutdown,
    pub _dir: tempfile::TempDir,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for TestBridge {
    fn drop(&mut self) {
        self.server.abort();
    }
}

pub async fn start() -> TestBridge {
    start_with(McpConfig::default()).await
}

/// A bridge with `admin`, `alice`, `bob`, `carol` (agents) and `ops`
/// (operator), `elicitation_enabled` on, serving REST and `/mcp`.
pub async fn start_with(config: McpConfig) -> TestBridge {
    start_tuned(config, |_| {}).await
}

/// [`start_with`], with the bridge's configuration adjusted by `tune`.
pub async fn start_tuned(config: McpConfig, tune: impl FnOnce(&mut BridgeConfig)) -> TestBridge {
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let mut bc = BridgeConfig::new(dir.path().join("data"), MasterKey::generate().unwrap());
    bc.public_url = base.clone();
    tune(&mut bc);
    let bridge = Bridge::open(bc).await.unwrap();
    let creds = dir.path().join("creds");
    lighthouse_core::setup::initialize(&bridge, &creds, true)
        .await
        .unwrap();
    let (mcp, mcp_shutdown) = lighthouse_mcp::router_with_shutdown(bridge.clone(), config);
    let (app, _shutdown) =
        lighthouse_http::router_with(bridge.clone(), lighthouse_http::HttpConfig::default(), mcp);
    let server = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    TestBridge {
        bridge,
        base,
        creds,
        mcp_shutdown,
        _dir: dir,
        server,
    }
}

impl TestBridge {
    pub fn url(&self) -> String {
        format!("{}/mcp", self.base)
    }

    /// A fresh bearer token for `agent`.
    pub fn token(&self, agent: &str) -> String {
        self.token_ttl(agent, None)
    }

    pub fn token_ttl(&self, agent: &str, ttl_s: Option<u64>) -> String {
        let caller = self.bridge.caller_for(agent).expect("registered agent");
        self.bridge.create_session(&caller, ttl_s).unwrap().token
    }

    /// An rmcp client for `agent` with the `initialize` handshake (2025-11-25).
    pub async fn client(&self, agent: &str) -> McpClient {
        self.client_with(agent, HashMap::new(), ClientLifecycleMode::Initialize)
            .await
    }

    /// An rmcp client for `agent` with the 2026-07-28 per-request lifecycle.
    pub async fn modern_client(&self, agent: &str) -> McpClient {
        self.client_with(
            agent,
            HashMap::new(),
            ClientLifecycleMode::Discover {
                preferred_versions: vec![ProtocolVersion::V_2026_07_28],
            },
        )
        .await
    }

    pub async fn client_with(
        &self,
        agent: &str,
        headers: HashMap<http::HeaderName, http::HeaderValue>,
        lifecycle: ClientLifecycleMode,
    ) -> McpClient {
        let config = StreamableHttpClientTransportConfig::with_uri(self.url())
            .auth_header(self.token(agent))
            .custom_headers(headers);
        let transport = StreamableHttpClientTransport::from_config(config);
        ().serve_with_lifecycle(transport, lifecycle)
            .await
            .expect("MCP client connects")
    }
}

pub fn args(v: Value) -> serde_json::Map<String, Value> {
    match v {
        Value::Object(m) => m,
        other => panic!("arguments must be an object, got {other}"),
    }
}

/// Calls `tool` and returns the result (tool errors included).
pub async fn call(client: &McpClient, tool: &str, arguments: Value) -> CallToolResult {
    client
        .call_tool(CallToolRequestParams::new(tool.to_owned()).with_arguments(args(arguments)))
        .await
        .expect("the tool call completes")
}

/// The structured content of a successful result, checked against its text item.
pub fn ok(r: &CallToolResult) -> Value {
    assert_eq!(r.is_error, Some(false), "expected success, got {r:?}");
    same_json(r)
}

/// The problem of an error result, checked against its text item.
pub fn problem(r: &CallToolResult) -> Value {
    assert_eq!(r.is_error, Some(true), "expected an error, got {r:?}");
    let p = same_json(r);
    assert!(
        p["code"].is_string() && p["status"].is_u64() && p["type"].is_string(),
        "{p}"
    );
    p
}

fn same_json(r: &CallToolResult) -> Value {
    let structured = r.structured_content.clone().expect("structuredContent");
    assert!(structured.is_object(), "{structured}");
    assert_eq!(r.content.len(), 1, "one text item");
    let text = &r.content[0].as_text().expect("a text item").text;
    let parsed: Value = serde_json::from_str(text).expect("the text is JSON");
    assert_eq!(
        parsed, structured,
        "text and structuredContent carry the same JSON"
    );
    structured
}

pub fn port_schema() -> Value {
    serde_json::json!({
        "type": "object",
        "properties": {"port": {"type": "integer", "minimum": 1, "maximum": 65535}},
        "required": ["port"],
    })
}

/// Sends `lighthouse_elicit` to bob (waiting up to 60 s for his answer) from
/// `peer`, as a request that can be cancelled; returns once it is sent.
pub async fn start_waiting_elicit(
    peer: &rmcp::Peer<RoleClient>,
) -> rmcp::service::RequestHandle<RoleClient> {
    let params =
        CallToolRequestParams::new("lighthouse_elicit").with_arguments(args(serde_json::json!({
            "to": "bob", "message": "Which port?", "schema": port_schema(), "timeout_seconds": 60
        })));
    peer.send_cancellable_request(
        rmcp::model::ClientRequest::CallToolRequest(rmcp::model::Request::new(params)),
        rmcp::service::PeerRequestOptions::no_options(),
    )
    .await
    .unwrap()
}

/// Polls `client`'s pending inbox until it holds an elicitation (at most 10 s).
pub async fn next_pending(client: &McpClient) -> Value {
    for _ in 0..200 {
        let inbox = ok(&call(
            client,
            "lighthouse_check_elicitations",
            serde_json::json!({}),
        )
        .await);
        if let Some(first) = inbox["items"].as_array().and_then(|a| a.first()) {
            return first.clone();
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("no pending elicitation arrived");
}

/// A raw JSON-RPC POST to `/mcp` with `headers`; returns status, headers, body.
pub async fn raw_post(
    b: &TestBridge,
    headers: &[(&str, &str)],
    body: &Value,
) -> (u16, reqwest::header::HeaderMap, String) {
    raw_post_bytes(b, headers, &serde_json::to_vec(body).unwrap()).await
}

/// [`raw_post`] with the body as bytes (for JSON a `Value` cannot hold, such
/// as a duplicated key).
pub async fn raw_post_bytes(
    b: &TestBridge,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, reqwest::header::HeaderMap, String) {
    let mut req = reqwest::Client::new()
        .post(b.url())
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .body(body.to_vec());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let h = resp.headers().clone();
    (status, h, resp.text().await.unwrap())
}

pub fn initialize_body() -> Value {
    serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "raw", "version": "0"}}})
}

pub fn tool_call_body(tool: &str, arguments: Value) -> Value {
    serde_json::json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
        "params": {"name": tool, "arguments": arguments}})
}

/// The one JSON-RPC message of a response to a request, whether it came as
/// `application/json` or as an SSE stream (its last `data:` line carrying a
/// message).
pub fn rpc_reply(headers: &reqwest::header::HeaderMap, body: &str) -> Value {
    let json = headers
        .get("content-type")
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if json {
        return serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    }
    body.lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .rfind(|m| m.get("result").is_some() || m.get("error").is_some())
        .unwrap_or_else(|| panic!("no JSON-RPC answer in {body:?}"))
}

/// Counts the slices of `lighthouse_elicit` waits on the bridge (the
/// `slice_ms` debug event of `lighthouse_mcp`'s wait loop) seen on this
/// thread while the guard lives: in a current-thread test runtime, every
/// task of the test, the bridge's handlers included, runs on it, and tests
/// running on other threads are not counted.
pub fn count_wait_slices() -> (
    tracing::subscriber::DefaultGuard,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let guard = tracing::subscriber::set_default(SliceCounter(count.clone()));
    (guard, count)
}

struct SliceCounter(std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl tracing::Subscriber for SliceCounter {
    fn enabled(&self, m: &tracing::Metadata<'_>) -> bool {
        m.is_event()
            && m.target().starts_with("lighthouse_mcp")
            && m.fields().field("slice_ms").is_some()
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, _: &tracing::Event<'_>) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// Whether `count` stops growing (stays the same for a whole second) within
/// `within`: a wait that goes on adds a slice every progress interval.
pub async fn stops_growing(
    count: &std::sync::atomic::AtomicUsize,
    within: std::time::Duration,
) -> bool {
    let deadline = std::time::Instant::now() + within;
    while std::time::Instant::now() < deadline {
        let before = count.load(std::sync::atomic::Ordering::SeqCst);
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        if count.load(std::sync::atomic::Ordering::SeqCst) == before {
            return true;
        }
    }
    false
}

/// Opens a raw tool call as `token` and returns its response, whose body
/// (an SSE stream) is read with [`read_until`].
pub async fn open_call(b: &TestBridge, token: &str, body: &Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(b.url())
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {token}"))
        .body(serde_json::to_vec(body).unwrap())
        .send()
        .await
        .unwrap()
}

/// Reads `resp`'s body into `seen` until `done(seen)` (true), its end or
/// `within` (false).
pub async fn read_until(
    resp: &mut reqwest::Response,
    seen: &mut String,
    done: impl Fn(&str) -> bool,
    within: std::time::Duration,
) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    while !done(seen) {
        match tokio::time::timeout_at(deadline, resp.chunk()).await {
            Ok(Ok(Some(chunk))) => seen.push_str(&String::from_utf8_lossy(&chunk)),
            Ok(Ok(None)) | Ok(Err(_)) | Err(_) => return false,
        }
    }
    true
}

/// Reads `resp`'s body into `seen` to its end: whether it ended within
/// `within`.
pub async fn read_to_end(
    resp: &mut reqwest::Response,
    seen: &mut String,
    within: std::time::Duration,
) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, resp.chunk()).await {
            Ok(Ok(Some(chunk))) => seen.push_str(&String::from_utf8_lossy(&chunk)),
            Ok(Ok(None)) => return true,
            Ok(Err(e)) => panic!("the response broke instead of ending: {e}"),
            Err(_) => return false,
        }
    }
}

/// `lighthouse_elicit` to bob (60 s) as JSON-RPC request `id`, asking for
/// progress (so that the wait runs in slices of the progress interval).
pub fn waiting_elicit_body(id: u64) -> Value {
    let mut body = tool_call_body(
        "lighthouse_elicit",
        serde_json::json!({"to": "bob", "message": "Which port?", "schema": port_schema(),
            "timeout_seconds": 60}),
    );
    body["id"] = serde_json::json!(id);
    body["params"]["_meta"] = serde_json::json!({"progressToken": format!("p{id}")});
    body
}
