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
    // Signed requests are not accepted here: bearer tokens only.
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

#[tokio::test]
async fn a_trickled_body_is_cut_off_and_large_ones_share_a_budget() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let b = start_with(lighthouse_mcp::McpConfig {
        body_read_timeout: std::time::Duration::from_millis(300),
        max_buffered_body_bytes: 100,
        ..lighthouse_mcp::McpConfig::default()
    })
    .await;
    let addr = b.base.trim_start_matches("http://").to_owned();
    let head = |len: usize, token: Option<&str>| {
        let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
        format!(
            "POST /mcp HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\nContent-Length: {len}\r\n\r\n"
        )
    };
    let token = b.token("alice");
    let read_status = |mut s: tokio::net::TcpStream| async move {
        let mut head = [0u8; 12];
        tokio::time::timeout(std::time::Duration::from_secs(10), s.read_exact(&mut head))
            .await
            .expect("an answer in time")
            .unwrap();
        String::from_utf8_lossy(&head).into_owned()
    };
    // A body declared and never sent: refused when the deadline passes.
    // Without a token, it is refused at once, before the body takes any of
    // the budget.
    let mut tokenless = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let started = std::time::Instant::now();
    tokenless
        .write_all(format!("{}{{", head(60, None)).as_bytes())
        .await
        .unwrap();
    assert_eq!(read_status(tokenless).await, "HTTP/1.1 401");
    assert!(started.elapsed() < std::time::Duration::from_millis(300));
    let mut stalled = tokio::net::TcpStream::connect(&addr).await.unwrap();
    stalled
        .write_all(format!("{}{{", head(60, Some(&token))).as_bytes())
        .await
        .unwrap();
    // Meanwhile a second body of 60 bytes finds the 100-byte budget spent and
    // is refused at its own deadline rather than growing memory past it.
    let mut second = tokio::net::TcpStream::connect(&addr).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    second
        .write_all(head(60, Some(&token)).as_bytes())
        .await
        .unwrap();
    assert_eq!(read_status(stalled).await, "HTTP/1.1 400");
    let s = read_status(second).await;
    assert!(s == "HTTP/1.1 503" || s == "HTTP/1.1 400", "{s}");
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
