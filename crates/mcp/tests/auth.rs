//! Admission of `/mcp`: bearer tokens only, refused before any tool runs;
//! Origin checks; permissions, rate limits and audit as in the REST API.

mod common;

use std::time::Duration;

use common::*;
use lighthouse_core::api::EventsQuery;
use lighthouse_mcp::McpConfig;
use lighthouse_security::{ActionClass, Quota, Role};
use serde_json::{Value, json};

/// Bob's mailbox as the bridge holds it.
async fn bobs_messages(b: &TestBridge) -> usize {
    let bob = b.bridge.caller_for("bob").unwrap();
    b.bridge
        .receive_messages(&bob, 0, 0, None, &Default::default())
        .await
        .unwrap()
        .messages
        .len()
}

fn assert_unauthenticated(status: u16, headers: &reqwest::header::HeaderMap, body: &str) {
    assert_eq!(status, 401, "{body}");
    assert_eq!(headers["content-type"], "application/problem+json");
    assert!(headers.contains_key("www-authenticate"));
    let p: Value = serde_json::from_str(body).unwrap();
    assert_eq!(p["code"], "unauthenticated", "{p}");
    assert_eq!(p["status"], 401);
}

#[tokio::test]
async fn requests_without_a_valid_token_are_refused_before_any_tool_runs() {
    let b = start().await;
    let send = tool_call_body(
        "lighthouse_send_message",
        json!({"to": "bob", "body": "hi"}),
    );

    // Missing.
    let (s, h, body) = raw_post(&b, &[], &send).await;
    assert_unauthenticated(s, &h, &body);
    let (s, h, body) = raw_post(&b, &[], &initialize_body()).await;
    assert_unauthenticated(s, &h, &body);
    // Malformed.
    let (s, h, body) = raw_post(&b, &[("authorization", "Bearer not-a-token")], &send).await;
    assert_unauthenticated(s, &h, &body);
    // Signed requests are not accepted here: bearer tokens only, and the
    // refusal says so (signature headers were there: not "no credentials").
    let cred = lighthouse_security::Credential::read(b.creds.join("alice.json")).unwrap();
    let bytes = serde_json::to_vec(&send).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let signed = cred.signer().sign("POST", "/mcp", "", &bytes, now);
    let (s, h, body) = raw_post(&b, &signed.pairs(), &send).await;
    assert_unauthenticated(s, &h, &body);
    assert_eq!(h["www-authenticate"], "Bearer realm=\"lighthouse\"");
    let detail = serde_json::from_str::<Value>(&body).unwrap()["detail"].clone();
    assert_eq!(
        detail,
        "/mcp takes a bearer token (Authorization: Bearer, from POST /v1/sessions); \
         request signatures are not accepted here",
        "{body}"
    );
    // So does one carrying only some of the signature headers.
    let (s, h, body) = raw_post(
        &b,
        &[
            ("x-lighthouse-agent", "alice"),
            ("x-lighthouse-key-id", "1"),
        ],
        &send,
    )
    .await;
    assert_unauthenticated(s, &h, &body);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["detail"],
        detail
    );
    // Without any credentials, the refusal does not speak of signatures.
    let (_, _, body) = raw_post(&b, &[], &send).await;
    let none = serde_json::from_str::<Value>(&body).unwrap()["detail"].clone();
    assert!(!none.as_str().unwrap().contains("signature"), "{none}");
    // Revoked.
    let token = b.token("alice");
    let alice = b.bridge.caller_for("alice").unwrap();
    b.bridge.end_session(&alice, &token).await.unwrap();
    let bearer = format!("Bearer {token}");
    let (s, h, body) = raw_post(&b, &[("authorization", &bearer)], &send).await;
    assert_unauthenticated(s, &h, &body);
    // Expired.
    let short = b.token_ttl("alice", Some(1));
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let bearer = format!("Bearer {short}");
    let (s, h, body) = raw_post(&b, &[("authorization", &bearer)], &send).await;
    assert_unauthenticated(s, &h, &body);

    assert_eq!(bobs_messages(&b).await, 0, "no tool ran");
    // A valid token runs the same call.
    let bearer = format!("Bearer {}", b.token("alice"));
    let (s, _, body) = raw_post(&b, &[("authorization", &bearer)], &send).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(bobs_messages(&b).await, 1);
}

#[tokio::test]
async fn an_rmcp_client_with_a_revoked_token_cannot_call_tools() {
    let b = start().await;
    let client = b.client("alice").await;
    ok(&call(&client, "lighthouse_health", json!({})).await);
    // Revoke every token of alice by revoking the agent.
    let admin = b.bridge.caller_for("admin").unwrap();
    b.bridge.revoke_agent(&admin, "alice").await.unwrap();
    let err = client
        .call_tool(
            rmcp::model::CallToolRequestParams::new("lighthouse_send_message")
                .with_arguments(args(json!({"to": "bob", "body": 1}))),
        )
        .await;
    assert!(err.is_err(), "the call must fail at the transport: {err:?}");
    assert_eq!(bobs_messages(&b).await, 0);
}

#[tokio::test]
async fn origins_outside_the_allow_list_are_refused() {
    let b = start_with(McpConfig::default().with_allowed_origins(["http://localhost:3000"])).await;
    let bearer = format!("Bearer {}", b.token("alice"));
    let (s, h, body) = raw_post(
        &b,
        &[
            ("authorization", &bearer),
            ("origin", "http://evil.example"),
        ],
        &initialize_body(),
    )
    .await;
    assert_eq!(s, 403, "{body}");
    assert_eq!(h["content-type"], "application/problem+json");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["code"],
        "forbidden"
    );
    let (s, _, body) = raw_post(
        &b,
        &[
            ("authorization", &bearer),
            ("origin", "http://localhost:3000"),
        ],
        &initialize_body(),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    // No Origin at all (a non-browser client) is fine.
    let (s, _, _) = raw_post(&b, &[("authorization", &bearer)], &initialize_body()).await;
    assert_eq!(s, 200);
}

#[tokio::test]
async fn a_role_that_may_not_elicit_gets_a_forbidden_tool_result_that_is_audited() {
    let b = start().await;
    let ops = b.client("ops").await;
    let p = problem(
        &call(
            &ops,
            "lighthouse_elicit",
            json!({"to": "bob", "message": "x", "schema": port_schema()}),
        )
        .await,
    );
    assert_eq!(
        (p["code"].as_str(), p["status"].as_u64()),
        (Some("forbidden"), Some(403))
    );
    // Operators may read events: the same token works for what the role permits.
    ok(&call(&ops, "lighthouse_query_events", json!({"limit": 5})).await);

    let admin = b.bridge.caller_for("admin").unwrap();
    let mut audited = None;
    for _ in 0..100 {
        let page = b
            .bridge
            .query_events(
                &admin,
                &EventsQuery {
                    stream: Some("$security".into()),
                    event_type: Some("security.violation".into()),
                    ..EventsQuery::default()
                },
            )
            .unwrap();
        audited = page.events.into_iter().find(|e| e.data["agent"] == "ops");
        if audited.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let e = audited.expect("the refusal is audited");
    assert_eq!(e.data["kind"], "forbidden");
    assert_eq!(e.data["action"], "elicit");
    assert_eq!(e.data["route"], "POST /v1/elicitations");
}

#[tokio::test]
async fn tool_calls_share_the_rest_rate_limits() {
    let b = start_tuned(McpConfig::default(), |c| {
        c.security
            .rate
            .limits
            .set(Role::Agent, ActionClass::Elicit, Some(Quota::new(1, 2)));
    })
    .await;
    let alice = b.client("alice").await;
    let ask = json!({"to": "bob", "message": "x", "schema": port_schema(), "wait": false});
    ok(&call(&alice, "lighthouse_elicit", ask.clone()).await);
    ok(&call(&alice, "lighthouse_elicit", ask.clone()).await);
    let p = problem(&call(&alice, "lighthouse_elicit", ask).await);
    assert_eq!(
        (p["code"].as_str(), p["status"].as_u64()),
        (Some("rate_limited"), Some(429))
    );
    assert!(p["retry_after_s"].as_u64().is_some_and(|s| s >= 1), "{p}");
    // Other classes are not affected.
    ok(&call(&alice, "lighthouse_check_elicitations", json!({})).await);
}

/// A refused agent's malformed tool call gets its refusal (a rate-limited
/// one with `Retry-After`), not the `-32602` of an admitted one.
#[tokio::test]
async fn a_refused_agents_malformed_tool_call_gets_its_refusal() {
    let b = start_tuned(McpConfig::default(), |c| {
        c.security
            .rate
            .limits
            .set(Role::Agent, ActionClass::Elicit, Some(Quota::new(1, 2)));
    })
    .await;
    let malformed =
        br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"lighthouse_elicit","arguments":[1]}}"#;
    let ops = format!("Bearer {}", b.token("ops"));
    let (s, h, body) = raw_post_bytes(&b, &[("authorization", &ops)], malformed).await;
    assert_eq!(http_problem("403", 403, &h, &body)["code"], "forbidden");
    assert_eq!(s, 403);

    let alice = b.client("alice").await;
    let ask = json!({"to": "bob", "message": "x", "schema": port_schema(), "wait": false});
    ok(&call(&alice, "lighthouse_elicit", ask.clone()).await);
    ok(&call(&alice, "lighthouse_elicit", ask).await);
    let bearer = format!("Bearer {}", b.token("alice"));
    let (s, h, body) = raw_post_bytes(&b, &[("authorization", &bearer)], malformed).await;
    assert_eq!(s, 429, "{body}");
    assert_eq!(http_problem("429", 429, &h, &body)["code"], "rate_limited");
    assert!(h.contains_key("retry-after"), "{h:?}");
}

#[tokio::test]
async fn the_endpoint_is_stateless_and_answers_each_requested_revision() {
    let b = start().await;
    let bearer = format!("Bearer {}", b.token("alice"));
    for revision in ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"] {
        let mut init = initialize_body();
        init["params"]["protocolVersion"] = json!(revision);
        let (s, h, body) = raw_post(&b, &[("authorization", &bearer)], &init).await;
        assert_eq!(s, 200, "{body}");
        assert!(!h.contains_key("mcp-session-id"), "no session is created");
        // The body is one SSE event carrying the JSON-RPC response.
        let data = body
            .lines()
            .find_map(|l| l.strip_prefix("data:"))
            .map(str::trim)
            .filter(|d| !d.is_empty())
            .expect("an SSE data line");
        let msg: Value = serde_json::from_str(data).unwrap();
        assert_eq!(msg["result"]["protocolVersion"], revision, "{msg}");
        assert!(msg["result"]["capabilities"]["tools"].is_object());
        assert_eq!(msg["result"]["serverInfo"]["name"], "lighthouse");
    }
    assert_eq!(
        lighthouse_mcp::protocol_revisions(),
        [
            "2024-11-05",
            "2025-03-26",
            "2025-06-18",
            "2025-11-25",
            "2026-07-28"
        ]
    );
    let http = reqwest::Client::new();
    for method in [reqwest::Method::GET, reqwest::Method::DELETE] {
        let r = http
            .request(method.clone(), b.url())
            .header("accept", "text/event-stream")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{method} without a token");
        let r = http
            .request(method.clone(), b.url())
            .header("authorization", &bearer)
            .header("accept", "text/event-stream")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 405, "{method}");
        assert_eq!(r.headers()["allow"], "POST");
    }
}

/// A raw request to `/mcp`: method, headers (none added) and body; returns
/// status, headers and body.
async fn raw(
    b: &TestBridge,
    method: reqwest::Method,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, reqwest::header::HeaderMap, String) {
    let mut req = reqwest::Client::new()
        .request(method, b.url())
        .body(body.to_vec());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let h = resp.headers().clone();
    (status, h, resp.text().await.unwrap())
}

/// The problem of an HTTP error of `/mcp`, checked for its shape.
fn http_problem(what: &str, status: u16, h: &reqwest::header::HeaderMap, body: &str) -> Value {
    assert_eq!(
        h.get("content-type").map(|v| v.to_str().unwrap()),
        Some("application/problem+json"),
        "{what}: {body}"
    );
    let p: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{what}: {e}: {body}"));
    assert_eq!(p["status"], status, "{what}: {p}");
    assert!(
        p["type"].is_string() && p["title"].is_string() && p["detail"].is_string(),
        "{what}: {p}"
    );
    assert!(!p["detail"].as_str().unwrap().is_empty(), "{what}: {p}");
    p
}

/// Every error `/mcp` answers outside a JSON-RPC body is a problem
/// (PROTOCOL.md 3), whether the admission layer or rmcp refused it; JSON-RPC
/// errors stay the protocol's own.
#[tokio::test]
async fn every_http_error_of_the_endpoint_is_a_problem() {
    let b = start_with(
        McpConfig::default()
            .with_allowed_origins(["http://localhost:3000"])
            .with_max_body_bytes(4096),
    )
    .await;
    let bearer = format!("Bearer {}", b.token("alice"));
    let auth = ("authorization", bearer.as_str());
    let accept = ("accept", "application/json, text/event-stream");
    let json_type = ("content-type", "application/json");
    let list = br#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#;

    // No standalone stream, no sessions: GET and DELETE (and anything but
    // POST) are 405, with `Allow: POST` and a detail that says why.
    for method in [
        reqwest::Method::GET,
        reqwest::Method::DELETE,
        reqwest::Method::PUT,
    ] {
        let (s, h, body) = raw(
            &b,
            method.clone(),
            &[auth, ("accept", "text/event-stream")],
            b"",
        )
        .await;
        assert_eq!(s, 405, "{method}: {body}");
        let p = http_problem(&format!("{method}"), 405, &h, &body);
        assert_eq!(p["code"], "invalid_request", "{p}");
        assert_eq!(h["allow"], "POST");
        let detail = p["detail"].as_str().unwrap();
        assert!(
            detail.contains("stateless") && detail.contains("POST only"),
            "{detail}"
        );
    }
    // 406: the client does not accept both JSON and SSE.
    let (s, h, body) = raw(
        &b,
        reqwest::Method::POST,
        &[auth, ("accept", "application/json"), json_type],
        list,
    )
    .await;
    assert_eq!(s, 406, "{body}");
    assert_eq!(
        http_problem("406", 406, &h, &body)["code"],
        "invalid_request"
    );
    // 415: a body that is not declared JSON, or is not JSON.
    let (s, h, body) = raw(
        &b,
        reqwest::Method::POST,
        &[auth, accept, ("content-type", "text/plain")],
        list,
    )
    .await;
    assert_eq!(s, 415, "{body}");
    assert_eq!(
        http_problem("415", 415, &h, &body)["code"],
        "invalid_request"
    );
    let (s, h, body) = raw(
        &b,
        reqwest::Method::POST,
        &[auth, accept, json_type],
        b"{oops",
    )
    .await;
    assert_eq!(s, 415, "{body}");
    assert_eq!(
        http_problem("415, not JSON", 415, &h, &body)["code"],
        "invalid_request"
    );
    // 400: a protocol revision header the SDK does not know.
    let (s, h, body) = raw(
        &b,
        reqwest::Method::POST,
        &[
            auth,
            accept,
            json_type,
            ("mcp-protocol-version", "1999-01-01"),
        ],
        list,
    )
    .await;
    assert_eq!(s, 400, "{body}");
    let p = http_problem("400", 400, &h, &body);
    assert_eq!(p["code"], "invalid_request");
    assert!(p["detail"].as_str().unwrap().contains("1999-01-01"), "{p}");
    // The admission layer's own: 401, 403 (Origin), 413.
    let (s, h, body) = raw(&b, reqwest::Method::POST, &[accept, json_type], list).await;
    assert_eq!(s, 401, "{body}");
    assert_eq!(
        http_problem("401", 401, &h, &body)["code"],
        "unauthenticated"
    );
    assert_eq!(h["www-authenticate"], "Bearer realm=\"lighthouse\"");
    let (s, h, body) = raw(
        &b,
        reqwest::Method::POST,
        &[auth, accept, json_type, ("origin", "http://evil.example")],
        list,
    )
    .await;
    assert_eq!(s, 403, "{body}");
    assert_eq!(http_problem("403", 403, &h, &body)["code"], "forbidden");
    let big = tool_call_body(
        "lighthouse_send_message",
        json!({"to": "bob", "body": "x".repeat(5000)}),
    );
    let (s, h, body) = raw(
        &b,
        reqwest::Method::POST,
        &[auth, accept, json_type],
        &serde_json::to_vec(&big).unwrap(),
    )
    .await;
    assert_eq!(s, 413, "{body}");
    assert_eq!(
        http_problem("413", 413, &h, &body)["code"],
        "payload_too_large"
    );

    // A JSON-RPC error is the protocol's answer, not an HTTP problem, even
    // when rmcp sends it with an HTTP error status: an `initialize` whose
    // `MCP-Protocol-Version` header contradicts its body is `400` with a
    // JSON-RPC error body, left as it is.
    let (s, h, body) = raw(
        &b,
        reqwest::Method::POST,
        &[
            auth,
            accept,
            json_type,
            ("mcp-protocol-version", "2025-03-26"),
        ],
        &serde_json::to_vec(&initialize_body()).unwrap(),
    )
    .await;
    assert_eq!(s, 400, "{body}");
    assert_eq!(h["content-type"], "application/json", "{body}");
    let msg: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(msg["jsonrpc"], "2.0", "{msg}");
    assert_eq!(msg["error"]["code"], -32600, "{msg}");
    // And the endpoint still works.
    let (s, _, body) = raw(&b, reqwest::Method::POST, &[auth, accept, json_type], list).await;
    assert_eq!(s, 200, "{body}");
}

#[tokio::test]
async fn bodies_over_the_limit_are_refused_whole() {
    let b = start_with(McpConfig::default().with_max_body_bytes(4096)).await;
    let bearer = format!("Bearer {}", b.token("alice"));
    let big = tool_call_body(
        "lighthouse_send_message",
        json!({"to": "bob", "body": "x".repeat(5000)}),
    );
    let (s, h, body) = raw_post(&b, &[("authorization", &bearer)], &big).await;
    assert_eq!(s, 413, "{body}");
    assert_eq!(h["content-type"], "application/problem+json");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["code"],
        "payload_too_large"
    );
    assert_eq!(bobs_messages(&b).await, 0);
    let small = tool_call_body("lighthouse_send_message", json!({"to": "bob", "body": "x"}));
    let (s, _, _) = raw_post(&b, &[("authorization", &bearer)], &small).await;
    assert_eq!(s, 200);
    assert_eq!(bobs_messages(&b).await, 1);
}

/// A `lighthouse_elicit` wait outlives its admission; when the caller's
/// credential is revoked meanwhile, the wait ends with `unauthenticated`
/// within the re-check interval, naming the elicitation it created.
#[tokio::test]
async fn a_waiting_elicit_ends_when_the_callers_token_is_revoked() {
    let b = start().await;
    let alice = b.client("alice").await;
    let waiting = tokio::spawn(async move {
        let r = call(
            &alice,
            "lighthouse_elicit",
            json!({"to": "bob", "message": "Which port?", "schema": port_schema(), "timeout_seconds": 120}),
        )
        .await;
        (r, alice)
    });
    // Let the call be admitted and start waiting.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let admin = b.bridge.caller_for("admin").unwrap();
    b.bridge.revoke_agent(&admin, "alice").await.unwrap();
    let revoked_at = std::time::Instant::now();
    let (r, _alice) = tokio::time::timeout(
        lighthouse_mcp::TOKEN_RECHECK_INTERVAL + std::time::Duration::from_secs(5),
        waiting,
    )
    .await
    .expect("the wait must end soon after the revocation")
    .unwrap();
    assert!(
        revoked_at.elapsed()
            <= lighthouse_mcp::TOKEN_RECHECK_INTERVAL + std::time::Duration::from_secs(1)
    );
    let p = problem(&r);
    assert_eq!(p["code"], "unauthenticated", "{p}");
    assert!(p["detail"].as_str().unwrap().contains("was created"), "{p}");
}

/// Bodies held at once share a budget: a body that does not fit waits for
/// its share, and is read once the body holding the budget has been taken
/// (a body is given back when rmcp takes it, at the latest at its own
/// deadline). A body that does not arrive in time is cut off at its deadline.
///
/// The refusal of a body that finds the budget spent at its deadline (`503`)
/// is not reached here: every body holding the budget gives it back by its
/// own deadline, which comes before that of any body waiting behind it.
#[tokio::test]
async fn a_trickled_body_is_cut_off_and_large_ones_share_a_budget() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let timeout = Duration::from_secs(2);
    let b = start_with(lighthouse_mcp::McpConfig {
        body_read_timeout: timeout,
        max_buffered_body_bytes: 100,
        ..lighthouse_mcp::McpConfig::default()
    })
    .await;
    let addr = b.base.trim_start_matches("http://").to_owned();
    let head = |len: usize, token: Option<&str>| {
        let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
        format!(
            "POST /mcp HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\n\
             Accept: application/json, text/event-stream\r\nContent-Length: {len}\r\n\r\n"
        )
    };
    // A JSON-RPC request of exactly 60 bytes.
    let body = {
        let mut b = br#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#.to_vec();
        b.resize(60, b' ');
        b
    };
    let token = b.token("alice");
    let status_within = |mut s: tokio::net::TcpStream, within: Duration| async move {
        let mut head = [0u8; 12];
        tokio::time::timeout(within, s.read_exact(&mut head))
            .await
            .map(|r| {
                r.unwrap();
                String::from_utf8_lossy(&head).into_owned()
            })
            .map_err(|_| s)
    };

    // Without a token, a declared body is refused at once, before it takes
    // any of the budget.
    let mut tokenless = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let started = std::time::Instant::now();
    tokenless
        .write_all(format!("{}{{", head(60, None)).as_bytes())
        .await
        .unwrap();
    let s = status_within(tokenless, Duration::from_secs(10)).await;
    assert_eq!(s.ok().as_deref(), Some("HTTP/1.1 401"));
    assert!(started.elapsed() < timeout);

    // The first body (60 of the 100 bytes) trickles in: one byte now.
    let mut first = tokio::net::TcpStream::connect(&addr).await.unwrap();
    first
        .write_all(format!("{}{{", head(60, Some(&token))).as_bytes())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The second, whole at once, needs 60 where 40 are left: it waits, well
    // within its deadline, while the first is still arriving.
    let mut second = tokio::net::TcpStream::connect(&addr).await.unwrap();
    second
        .write_all(head(60, Some(&token)).as_bytes())
        .await
        .unwrap();
    second.write_all(&body).await.unwrap();
    let second = status_within(second, Duration::from_millis(500))
        .await
        .expect_err("the second body must wait for its share of the budget");
    // The first body completes: its share goes back as it is taken, and the
    // second is read and answered, both within their deadlines.
    let completed = std::time::Instant::now();
    first.write_all(&body[1..]).await.unwrap();
    let s = status_within(first, Duration::from_secs(10)).await;
    assert_eq!(s.ok().as_deref(), Some("HTTP/1.1 200"));
    let s = status_within(second, Duration::from_secs(10)).await;
    assert_eq!(s.ok().as_deref(), Some("HTTP/1.1 200"));
    assert!(completed.elapsed() < timeout, "{:?}", completed.elapsed());

    // A body that never completes is cut off at its deadline, not before.
    let mut stalled = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let started = std::time::Instant::now();
    stalled
        .write_all(format!("{}{{", head(60, Some(&token))).as_bytes())
        .await
        .unwrap();
    let s = status_within(stalled, timeout + Duration::from_secs(10)).await;
    assert_eq!(s.ok().as_deref(), Some("HTTP/1.1 400"));
    let took = started.elapsed();
    assert!(
        took >= timeout - Duration::from_millis(100) && took < timeout * 3,
        "{took:?}"
    );
}

/// A 2026-07-28 tool call's response waits for its first message (rmcp answers
/// it directly, not on an SSE stream opened at once): the wait for an answer
/// holds neither the body budget nor counts as request latency.
#[tokio::test]
async fn waiting_tool_calls_hold_no_body_budget_and_are_not_latency() {
    let b = start_with(McpConfig {
        max_buffered_body_bytes: 1000,
        body_read_timeout: Duration::from_millis(500),
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
    let id = created["id"].as_str().unwrap().to_owned();
    // Eight waits of about 150 bytes of body each: more than the budget if
    // each held its share while it waits.
    let mut waits = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let client = b.modern_client("alice").await;
        let id = id.clone();
        waits.spawn(async move {
            call(
                &client,
                "lighthouse_get_elicitation",
                json!({"elicitation_id": id, "wait_seconds": 2}),
            )
            .await
        });
    }
    while let Some(r) = waits.join_next().await {
        assert_eq!(ok(&r.unwrap())["status"], "pending");
    }
    // Two seconds waited, eight times: not the bridge's latency.
    let stats = b.bridge.metrics().stats(60).unwrap();
    let max = stats.http.latency_ms.max.unwrap();
    assert!(max < 1000.0, "http latency max {max} ms");
}
