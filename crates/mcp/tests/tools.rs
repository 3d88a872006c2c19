//! The other tools over Streamable HTTP (messages, events, health), progress
//! while waiting, and the stdio proxy: in process over a pipe, and as a child
//! process driven by an rmcp client.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;
use lighthouse_mcp::McpConfig;
use rmcp::model::ProgressNotificationParam;
use rmcp::service::NotificationContext;
use rmcp::transport::TokioChildProcess;
use rmcp::{ClientHandler, RoleClient, ServiceExt};
use serde_json::json;

#[tokio::test]
async fn messages_events_and_health() {
    let b = start().await;
    let alice = b.client("alice").await;
    let bob = b.modern_client("bob").await;

    let sent = ok(&call(
        &alice,
        "lighthouse_send_message",
        json!({"to": "bob", "body": {"n": 1}}),
    )
    .await);
    assert!(sent["id"].as_str().unwrap().starts_with("msg_"));
    let page = ok(&call(
        &bob,
        "lighthouse_wait_for_messages",
        json!({"wait_seconds": 1}),
    )
    .await);
    assert_eq!(page["messages"][0]["from"], "alice");
    assert_eq!(page["messages"][0]["body"], json!({"n": 1}));
    assert_eq!(page["next_after"], sent["seq"]);
    // Nothing newer: the long-poll returns empty after its wait.
    let started = Instant::now();
    let empty = ok(&call(
        &bob,
        "lighthouse_wait_for_messages",
        json!({"after": page["next_after"], "wait_seconds": 1}),
    )
    .await);
    assert_eq!(empty["messages"], json!([]));
    assert_eq!(empty["next_after"], sent["seq"]);
    assert!(started.elapsed() >= Duration::from_millis(900));
    let p = problem(
        &call(
            &bob,
            "lighthouse_wait_for_messages",
            json!({"wait_seconds": 61}),
        )
        .await,
    );
    assert_eq!(p["errors"][0]["path"], "/wait_seconds");

    let stored = ok(&call(
        &alice,
        "lighthouse_store_event",
        json!({"stream": "notes-1", "type": "note.added", "data": {"text": "hi"}, "expected_version": "no_stream"}),
    )
    .await);
    assert_eq!(stored["version"], 0);
    let conflict = problem(
        &call(
            &alice,
            "lighthouse_store_event",
            json!({"stream": "notes-1", "type": "note.added", "data": {}, "expected_version": 5}),
        )
        .await,
    );
    assert_eq!(
        (
            conflict["code"].as_str(),
            conflict["actual_version"].as_u64()
        ),
        (Some("version_conflict"), Some(0))
    );
    let reserved = problem(
        &call(
            &alice,
            "lighthouse_store_event",
            json!({"stream": "$ops", "type": "ops.deploy", "data": {}}),
        )
        .await,
    );
    assert_eq!(reserved["code"], "forbidden");
    let events = ok(&call(
        &bob,
        "lighthouse_query_events",
        json!({"stream": "notes-1", "type": "note.added", "agent": "alice", "order": "desc", "limit": 10}),
    )
    .await);
    assert_eq!(events["events"].as_array().unwrap().len(), 1);
    assert_eq!(events["events"][0]["seq"], stored["seq"]);
    assert_eq!(events["events"][0]["data"], json!({"text": "hi"}));
    let p = problem(&call(&bob, "lighthouse_query_events", json!({"limit": 0})).await);
    assert_eq!(p["errors"][0]["path"], "/limit");

    let health = ok(&call(&alice, "lighthouse_health", json!({})).await);
    assert_eq!(health["status"], "ok");
    assert_eq!(health["components"]["store"], "ok");
}

#[derive(Clone, Default)]
struct CountingClient(Arc<AtomicUsize>, Arc<std::sync::Mutex<Vec<f64>>>);

impl ClientHandler for CountingClient {
    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        assert_eq!(params.total, Some(60.0));
        assert!(
            params
                .message
                .unwrap_or_default()
                .contains("waiting for bob")
        );
        self.1.lock().unwrap().push(params.progress);
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[tokio::test]
async fn a_waiting_elicit_reports_progress_and_can_be_cancelled() {
    let b =
        start_with(McpConfig::default().with_progress_interval(Duration::from_millis(100))).await;
    let counter = CountingClient::default();
    let transport = rmcp::transport::StreamableHttpClientTransport::from_config(
        rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig::with_uri(
            b.url(),
        )
        .auth_header(b.token("alice")),
    );
    let alice = counter.clone().serve(transport).await.unwrap();
    let handle = start_waiting_elicit(&alice).await;
    let started = Instant::now();
    while counter.0.load(Ordering::SeqCst) < 3 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no progress reported"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // MCP requires progress to increase with each notification; the interval
    // (100 ms) is shorter than a second, so whole seconds would repeat.
    let values = counter.1.lock().unwrap().clone();
    assert!(
        values.windows(2).all(|w| w[0] < w[1]),
        "progress not strictly increasing: {values:?}"
    );
    handle.cancel(Some("user gave up".into())).await.unwrap();
    let seen = counter.0.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        counter.0.load(Ordering::SeqCst) <= seen + 1,
        "progress stopped"
    );
    // The question itself stays pending (the requester may still cancel it).
    let inbox = ok(&call(
        &b.client("bob").await,
        "lighthouse_check_elicitations",
        json!({}),
    )
    .await);
    assert_eq!(inbox["items"][0]["status"], "pending");
}

/// A `tools/call` whose `params` are not a tool call's (arguments that are
/// not an object, a duplicated key, no name) is `-32602 Invalid params`, as
/// JSON-RPC says, not "method not found".
#[tokio::test]
async fn a_tool_call_with_malformed_params_is_invalid_params() {
    let b = start().await;
    let bearer = format!("Bearer {}", b.token("alice"));
    let auth = [("authorization", bearer.as_str())];
    let bodies: [&[u8]; 5] = [
        br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"lighthouse_health","arguments":[1]}}"#,
        br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"lighthouse_health","name":"lighthouse_health","arguments":{}}}"#,
        br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"arguments":{}}}"#,
        br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":5}}"#,
        br#"{"jsonrpc":"2.0","id":"seven","method":"tools/call"}"#,
    ];
    for body in bodies {
        let text = String::from_utf8_lossy(body);
        let (s, h, reply) = raw_post_bytes(&b, &auth, body).await;
        assert_eq!(s, 200, "{text}: {reply}");
        let msg = rpc_reply(&h, &reply);
        assert_eq!(msg["error"]["code"], -32602, "{text}: {msg}");
        let sent: serde_json::Value = serde_json::from_slice(body).unwrap();
        assert_eq!(msg["id"], sent["id"], "{text}: {msg}");
        assert!(msg.get("result").is_none(), "{msg}");
    }
    // A well-formed call still runs, and an unknown tool stays -32602.
    let (_, h, reply) = raw_post(&b, &auth, &tool_call_body("lighthouse_health", json!({}))).await;
    assert_eq!(rpc_reply(&h, &reply)["result"]["isError"], false, "{reply}");
    let (_, h, reply) = raw_post(&b, &auth, &tool_call_body("not_ours", json!({}))).await;
    assert_eq!(rpc_reply(&h, &reply)["error"]["code"], -32602, "{reply}");
    // Without a token it is still 401 first.
    let (s, _, _) = raw_post_bytes(&b, &[], bodies[0]).await;
    assert_eq!(s, 401);
    // What rmcp refuses stays its refusal: an Accept that lists neither
    // media type exactly (406), a message that is not JSON-RPC 2.0.
    let resp = reqwest::Client::new()
        .post(b.url())
        .header("accept", "application/json-seq, text/event-stream")
        .header("content-type", "application/json")
        .header("authorization", &bearer)
        .body(bodies[0].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 406);
    let unversioned =
        br#"{"id":7,"method":"tools/call","params":{"name":"lighthouse_health","arguments":[1]}}"#;
    let (s, _, reply) = raw_post_bytes(&b, &auth, unversioned).await;
    assert!(!reply.contains("-32602"), "{s}: {reply}");
}

/// A client that closes a waiting call's stream (what rmcp clients do when
/// they cancel) stops the wait on the bridge, not only its own reading: the
/// slices of the wait stop.
#[tokio::test]
async fn closing_a_waiting_calls_stream_stops_its_wait_on_the_bridge() {
    let (_counting, slices) = count_wait_slices();
    let b =
        start_with(McpConfig::default().with_progress_interval(Duration::from_millis(100))).await;
    let mut resp = open_call(&b, &b.token("alice"), &waiting_elicit_body(5)).await;
    assert_eq!(resp.status(), 200);
    let mut seen = String::new();
    let progressing = read_until(
        &mut resp,
        &mut seen,
        |s| s.matches("notifications/progress").count() >= 3,
        Duration::from_secs(10),
    )
    .await;
    assert!(progressing, "{seen}");
    assert!(slices.load(Ordering::SeqCst) >= 3);
    drop(resp);
    // The bridge sees the close at its next write (a progress report).
    assert!(
        stops_growing(&slices, Duration::from_secs(5)).await,
        "the wait went on after its client closed the stream: {} slices",
        slices.load(Ordering::SeqCst)
    );
}

/// The spec's way to cancel: a `notifications/cancelled` naming the call's
/// request id, on a request of its own, while the call's stream stays open.
/// It stops the call of the agent and token that sent it (its stream ends
/// without an answer, the wait on the bridge stops) and nothing of another
/// agent or of another token (another client) of the same agent.
#[tokio::test]
async fn a_cancelled_notification_stops_the_named_call_of_its_own_token_only() {
    let (_counting, slices) = count_wait_slices();
    let b =
        start_with(McpConfig::default().with_progress_interval(Duration::from_millis(100))).await;
    let progress = |s: &str| s.matches("notifications/progress").count();
    let alices = b.token("alice");
    let mut resp = open_call(&b, &alices, &waiting_elicit_body(42)).await;
    assert_eq!(resp.status(), 200);
    let mut seen = String::new();
    assert!(
        read_until(
            &mut resp,
            &mut seen,
            |s| progress(s) >= 2,
            Duration::from_secs(10)
        )
        .await,
        "{seen}"
    );
    let cancel = json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
        "params": {"requestId": 42, "reason": "changed my mind"}});

    // Bob names alice's request id, and so does another client of alice
    // (another token of hers): nothing of that call is cancelled.
    let bob = format!("Bearer {}", b.token("bob"));
    let other = format!("Bearer {}", b.token("alice"));
    for who in [&bob, &other] {
        let (s, _, body) = raw_post(&b, &[("authorization", who)], &cancel).await;
        assert_eq!(s, 202, "{body}");
        let before = progress(&seen);
        assert!(
            read_until(
                &mut resp,
                &mut seen,
                |s| progress(s) >= before + 3,
                Duration::from_secs(10)
            )
            .await,
            "alice's call must go on: {seen}"
        );
    }

    // Alice's client cancels it (with the call's token): its stream ends at
    // once, with no answer, and the wait on the bridge stops.
    let alice = format!("Bearer {alices}");
    let (s, _, body) = raw_post(&b, &[("authorization", &alice)], &cancel).await;
    assert_eq!(s, 202, "{body}");
    assert!(
        read_to_end(&mut resp, &mut seen, Duration::from_secs(2)).await,
        "the cancelled call's stream must end: {seen}"
    );
    assert!(
        !seen.contains("\"result\""),
        "a cancelled call is not answered: {seen}"
    );
    assert!(
        stops_growing(&slices, Duration::from_secs(5)).await,
        "the wait went on: {} slices",
        slices.load(Ordering::SeqCst)
    );
    // Recorded as cancelled by its client, not as the bridge's failure.
    let closed = r#"lighthouse_http_requests_total{route="/mcp",status="499"} 1"#;
    let metrics = b.bridge.metrics().render().unwrap();
    assert!(metrics.contains(closed), "{metrics}");
    assert!(
        !metrics.contains(r#"route="/mcp",status="503""#),
        "{metrics}"
    );
    // The question itself stays pending.
    let inbox = ok(&call(
        &b.client("bob").await,
        "lighthouse_check_elicitations",
        json!({}),
    )
    .await);
    assert_eq!(inbox["items"][0]["status"], "pending");
}

/// A 2026-07-28 request (per-request `_meta`, no handshake) for `tool`.
fn modern_call(id: u64, tool: &str, arguments: serde_json::Value) -> serde_json::Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {
    "name": tool, "arguments": arguments,
    "_meta": {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "0"}
    }}})
}

/// rmcp answers a 2026-07-28 request only once its handler sends a first
/// message, so a call that waits without reporting progress would send
/// nothing, not even headers, for its whole wait (up to an hour for
/// `lighthouse_elicit`), which proxies' idle timeouts cut. The response
/// opens within the keep-alive interval and carries keep-alive comments until
/// the answer, which comes on it unchanged.
#[tokio::test]
async fn a_modern_waiting_call_opens_its_stream_and_keeps_it_alive() {
    let b = start_with(McpConfig {
        sse_keep_alive: Duration::from_millis(300),
        ..McpConfig::default()
    })
    .await;
    let alice = b.modern_client("alice").await;
    let created = ok(&call(
        &alice,
        "lighthouse_elicit",
        json!({"to": "bob", "message": "Which port?", "schema": port_schema(), "wait": false}),
    )
    .await);
    let body = modern_call(
        11,
        "lighthouse_get_elicitation",
        json!({"elicitation_id": created["id"], "wait_seconds": 3}),
    );
    let started = Instant::now();
    let mut resp = reqwest::Client::new()
        .post(b.url())
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", "lighthouse_get_elicitation")
        .header("authorization", format!("Bearer {}", b.token("alice")))
        .body(serde_json::to_vec(&body).unwrap())
        .send()
        .await
        .unwrap();
    let opened = started.elapsed();
    assert!(
        opened < Duration::from_millis(1500),
        "headers after {opened:?}"
    );
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut seen = String::new();
    assert!(
        read_until(
            &mut resp,
            &mut seen,
            |s| s.contains(":\n\n"),
            Duration::from_secs(2)
        )
        .await,
        "a keep-alive comment while waiting: {seen:?}"
    );
    assert!(started.elapsed() < Duration::from_millis(2500));
    assert!(read_to_end(&mut resp, &mut seen, Duration::from_secs(10)).await);
    assert!(started.elapsed() >= Duration::from_secs(3));
    let msg = rpc_reply(resp.headers(), &seen);
    assert_eq!(msg["id"], 11, "{msg}");
    assert_eq!(
        msg["result"]["structuredContent"]["status"], "pending",
        "{msg}"
    );
    assert_eq!(msg["result"]["structuredContent"]["id"], created["id"]);

    // A held call can still be cancelled: a waiting elicit, cancelled by a
    // notification of its agent, ends without an answer.
    let alices = b.token("alice");
    let body = modern_call(
        13,
        "lighthouse_elicit",
        json!({"to": "bob", "message": "Which port?", "schema": port_schema(),
            "timeout_seconds": 60}),
    );
    let mut resp = reqwest::Client::new()
        .post(b.url())
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", "lighthouse_elicit")
        .header("authorization", format!("Bearer {alices}"))
        .body(serde_json::to_vec(&body).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut seen = String::new();
    assert!(
        read_until(
            &mut resp,
            &mut seen,
            |s| s.contains(":\n\n"),
            Duration::from_secs(2)
        )
        .await
    );
    let cancel = json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
        "params": {"requestId": 13}});
    let bearer = format!("Bearer {alices}");
    let (s, _, _) = raw_post(&b, &[("authorization", &bearer)], &cancel).await;
    assert_eq!(s, 202);
    assert!(
        read_to_end(&mut resp, &mut seen, Duration::from_secs(2)).await,
        "{seen}"
    );
    assert!(!seen.contains("data: {"), "{seen}");

    // A modern call answered within the interval is answered as rmcp does.
    let body = modern_call(12, "lighthouse_health", json!({}));
    let (s, h, reply) = raw_post(
        &b,
        &[
            ("authorization", &format!("Bearer {}", b.token("alice"))),
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
            ("mcp-name", "lighthouse_health"),
        ],
        &body,
    )
    .await;
    assert_eq!(s, 200, "{reply}");
    assert!(!reply.starts_with(':'), "{reply}");
    assert_eq!(
        rpc_reply(&h, &reply)["result"]["structuredContent"]["status"],
        "ok"
    );
}

/// A 2026-07-28 call that waits without reporting progress has no response
/// yet when its notification comes (the stream opens only after the
/// keep-alive interval, here 30 s): the notification must reach the call's
/// own context, not only its response stream, and stop the wait on the bridge
/// at once. (Without a progress token the wait re-checks its token every 5 s:
/// a slice at 0 s, the next at 5 s.)
#[tokio::test]
async fn a_cancelled_notification_stops_a_modern_call_before_its_stream_opens() {
    let (_counting, slices) = count_wait_slices();
    let b = start_with(
        McpConfig {
            sse_keep_alive: Duration::from_secs(30),
            ..McpConfig::default()
        }
        .with_progress_interval(Duration::from_millis(100)),
    )
    .await;
    let alices = b.token("alice");
    let body = modern_call(
        21,
        "lighthouse_elicit",
        json!({"to": "bob", "message": "Which port?", "schema": port_schema(),
            "timeout_seconds": 60}),
    );
    let request = reqwest::Client::new()
        .post(b.url())
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", "lighthouse_elicit")
        .header("authorization", format!("Bearer {alices}"))
        .body(serde_json::to_vec(&body).unwrap())
        .send();
    let started = Instant::now();
    let call = tokio::spawn(async move {
        let resp = request.await.unwrap();
        resp.text().await.unwrap_or_default()
    });
    // The wait has begun on the bridge.
    while slices.load(Ordering::SeqCst) < 1 {
        assert!(started.elapsed() < Duration::from_secs(5), "no wait slices");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(1).saturating_sub(started.elapsed())).await;
    let at_cancel = slices.load(Ordering::SeqCst);
    let cancel = json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
        "params": {"requestId": 21}});
    let bearer = format!("Bearer {alices}");
    let (s, _, _) = raw_post(&b, &[("authorization", &bearer)], &cancel).await;
    assert_eq!(s, 202);
    let seen = tokio::time::timeout(Duration::from_secs(3), call)
        .await
        .expect("the cancelled call's response must end well before the keep-alive")
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        slices.load(Ordering::SeqCst),
        at_cancel,
        "the wait went on after its cancellation"
    );
    assert!(
        !seen.contains("\"result\""),
        "a cancelled call is not answered: {seen}"
    );
}

#[tokio::test]
async fn the_stdio_proxy_in_process_forwards_to_the_remote_bridge() {
    let b = start().await;
    let remote = lighthouse_client::Client::from_credential_file(b.creds.join("bob.json")).unwrap();
    let (server_io, client_io) = tokio::io::duplex(64 * 1024);
    let (r, w) = tokio::io::split(server_io);
    let proxy = tokio::spawn(lighthouse_mcp::serve_io(remote, McpConfig::default(), r, w));
    let bob = ().serve(client_io).await.unwrap();
    let alice = b.client("alice").await;

    let created = ok(&call(
        &alice,
        "lighthouse_elicit",
        json!({"to": "bob", "message": "Which port?", "schema": port_schema(), "wait": false}),
    )
    .await);
    let pending = next_pending(&bob).await;
    assert_eq!(pending["id"], created["id"]);
    let p = problem(
        &call(
            &bob,
            "lighthouse_respond_to_elicitation",
            json!({"elicitation_id": created["id"], "action": "accept", "content": {"port": "x"}}),
        )
        .await,
    );
    assert_eq!(p["code"], "schema_mismatch");
    ok(&call(
        &bob,
        "lighthouse_respond_to_elicitation",
        json!({"elicitation_id": created["id"], "action": "accept", "content": {"port": 22}}),
    )
    .await);
    let done = ok(&call(
        &alice,
        "lighthouse_get_elicitation",
        json!({"elicitation_id": created["id"]}),
    )
    .await);
    assert_eq!(done["response"]["by"], "bob");
    bob.cancel().await.unwrap();
    proxy.await.unwrap().unwrap();
}

#[tokio::test]
async fn the_stdio_proxy_binary_serves_an_mcp_client() {
    let b = start().await;
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_lighthouse-mcp-proxy"));
    cmd.arg("--credential").arg(b.creds.join("alice.json"));
    let alice = ().serve(TokioChildProcess::new(cmd).unwrap()).await.unwrap();
    let bob = b.client("bob").await;

    let tools = alice.list_all_tools().await.unwrap();
    assert_eq!(tools.len(), 10);
    let asking = tokio::spawn(async move {
        let r = call(
            &alice,
            "lighthouse_elicit",
            json!({"to": "bob", "message": "Ship it?", "schema": {"type": "object", "properties": {"ship": {"type": "boolean"}}, "required": ["ship"]}, "timeout_seconds": 30}),
        )
        .await;
        (alice, r)
    });
    let pending = next_pending(&bob).await;
    assert_eq!(pending["from"], "alice");
    ok(&call(
        &bob,
        "lighthouse_respond_to_elicitation",
        json!({"elicitation_id": pending["id"], "action": "accept", "content": {"ship": true}}),
    )
    .await);
    let (alice, r) = asking.await.unwrap();
    let record = ok(&r);
    assert_eq!(record["status"], "accepted");
    assert_eq!(record["response"]["content"], json!({"ship": true}));
    let health = ok(&call(&alice, "lighthouse_health", json!({})).await);
    assert_eq!(health["status"], "ok");
    alice.cancel().await.unwrap();
}

#[tokio::test]
async fn the_proxy_binary_prints_a_token_that_opens_mcp() {
    let b = start().await;
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_lighthouse-mcp-proxy"))
        .arg("token")
        .arg("--credential")
        .arg(b.creds.join("carol.json"))
        .args(["--ttl-s", "60"])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let bearer = format!("Bearer {token}");
    let (s, _, body) = raw_post(&b, &[("authorization", &bearer)], &initialize_body()).await;
    assert_eq!(s, 200, "{body}");
    let bad = tokio::process::Command::new(env!("CARGO_BIN_EXE_lighthouse-mcp-proxy"))
        .arg("token")
        .output()
        .await
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
}

/// Runs the proxy binary with `args` and stdin closed.
async fn proxy(args: &[&str], rust_log: Option<&str>) -> std::process::Output {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_lighthouse-mcp-proxy"));
    cmd.args(args)
        .stdin(std::process::Stdio::null())
        .env_remove("RUST_LOG");
    if let Some(filter) = rust_log {
        cmd.env("RUST_LOG", filter);
    }
    cmd.output().await.unwrap()
}

#[tokio::test]
async fn the_proxy_binary_parses_its_arguments_strictly_and_logs_to_stderr() {
    let b = start().await;
    let cred = b.creds.join("carol.json");
    let cred = cred.to_str().unwrap();
    // `token` after the credential works as before it.
    let out = proxy(&["--credential", cred, "token", "--ttl-s", "60"], None).await;
    assert!(out.status.success(), "{out:?}");
    assert!(!String::from_utf8(out.stdout).unwrap().trim().is_empty());
    // Unknown arguments, and arguments of the other mode, are refused.
    for args in [
        vec!["--credential", cred, "--frobnicate"],
        vec!["--credential", cred, "extra"],
        vec!["--credential", cred, "--ttl-s", "60"],
        vec!["token", "--credential", cred, "--max-concurrent-calls", "3"],
        vec!["--max-concurrent-calls", "0", "--credential", cred],
        vec![],
    ] {
        let out = proxy(&args, None).await;
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        assert!(out.stdout.is_empty(), "{args:?}: {out:?}");
    }
    // Serving: a client that closes stdin before the handshake ends the
    // session, logged to stderr (stdout stays the protocol's), unless
    // RUST_LOG says otherwise.
    let out = proxy(&["--credential", cred, "--max-concurrent-calls", "8"], None).await;
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("ERROR") && stderr.contains("the MCP session ended"),
        "{stderr}"
    );
    let out = proxy(&["--credential", cred], Some("off")).await;
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        !stderr.contains("ERROR") && stderr.starts_with("lighthouse-mcp-proxy: "),
        "{stderr}"
    );
}
