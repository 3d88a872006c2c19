//! The SSE streams' edges, through a real socket: a client that stops reading,
//! and positions the store never reached.

mod common;

use std::time::Duration;

use common::{reply, start, start_with};
use lighthouse_elicitation::SendMessage;
use lighthouse_security::{Caller, Role};
use reqwest::Method;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A signed `GET` on a socket with a small receive buffer that the test reads
/// only when it chooses: a client that stopped reading its stream.
async fn stalled_get(agent: &common::Agent, path: &str) -> tokio::net::TcpStream {
    let req = agent.request(Method::GET, path, b"").build().unwrap();
    let url = req.url();
    let addr = format!("{}:{}", url.host_str().unwrap(), url.port().unwrap());
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut conn = socket.connect(addr.parse().unwrap()).await.unwrap();
    let mut head = format!("GET {path} HTTP/1.1\r\nhost: {addr}\r\n");
    for (name, value) in req.headers() {
        head.push_str(&format!("{name}: {}\r\n", value.to_str().unwrap()));
    }
    head.push_str("\r\n");
    conn.write_all(head.as_bytes()).await.unwrap();
    conn
}

/// Bytes enough to fill the server's socket send buffer (as large as the
/// kernel lets it grow, where the system says) and hyper's write buffer, twice
/// over: about 3 MiB stalled the stream under Linux's default 4 MiB limit.
fn flood_bytes() -> usize {
    let largest_send_buffer = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_wmem")
        .ok()
        .and_then(|s| s.split_whitespace().nth(2)?.parse::<usize>().ok())
        .unwrap_or(4 << 20);
    2 * largest_send_buffer + (2 << 20)
}

#[tokio::test]
async fn a_stream_whose_client_stopped_reading_is_cut_off_and_keeps_its_slot() {
    let t = start_with(|c| {
        c.elicitation.subscription_buffer = 2;
        c.elicitation.max_subscriptions_per_agent = 1;
    })
    .await;
    let bob = t.agent("bob");
    let mut conn = stalled_get(&bob, "/v1/stream").await;
    let svc = t.bridge.elicitations();
    tokio::time::timeout(Duration::from_secs(10), async {
        while svc.subscription_count() == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the stream opens");
    // Far more than the socket's buffers and the server's write buffer hold:
    // the server stops writing, and the stream's queue of two overflows.
    let alice = Caller {
        agent: "alice".into(),
        role: Role::Agent,
        key_id: 1,
    };
    let text = "x".repeat(60 << 10);
    let messages = flood_bytes() / text.len();
    for i in 0..messages {
        svc.send_message(
            &alice,
            "r",
            SendMessage {
                to: "bob".into(),
                body: json!({"i": i, "text": text}),
            },
        )
        .await
        .unwrap();
    }
    // Once the applier has published them all, the stream is cut off, and it
    // still counts: bob cannot open another beside it.
    tokio::time::timeout(Duration::from_secs(10), async {
        while svc.applied_seq() < t.bridge.store().head_seq() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the applier catches up");
    assert_eq!(svc.subscription_count(), 1);
    // (A stream that opened would not end: the answer must come at once.)
    let second = tokio::time::timeout(Duration::from_secs(10), bob.get("/v1/stream"))
        .await
        .expect("refused at once");
    assert_eq!((second.status, second.code()), (429, "rate_limited"));
    // When the client reads again, what the server had written comes, then
    // the final `lagged` event, and the slot is free.
    let mut seen = Vec::new();
    let mut buf = vec![0u8; 64 << 10];
    let lagged = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let n = conn.read(&mut buf).await.unwrap();
            assert!(n > 0, "the stream ended without a final event");
            seen.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&seen);
            if let Some(at) = text.find("event: lagged\n") {
                let data = text[at..].lines().nth(1).map(str::to_owned);
                if let Some(data) = data.filter(|d| d.ends_with('}')) {
                    return data;
                }
            }
        }
    })
    .await
    .expect("a final lagged event");
    let resume: serde_json::Value =
        serde_json::from_str(lagged.trim_start_matches("data:").trim()).unwrap();
    assert!(resume["resume_after"].is_u64(), "{lagged}");
    let delivered = String::from_utf8_lossy(&seen)
        .matches("event: message.received\n")
        .count();
    assert!(
        delivered < messages,
        "the client was not stalled: {delivered}"
    );
    tokio::time::timeout(Duration::from_secs(10), async {
        while svc.subscription_count() > 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the stream's slot is given back");
    let mut again = bob
        .stream(
            &format!("/v1/stream?after={}", resume["resume_after"]),
            None,
        )
        .await;
    let next = again.next_within(5).await.expect("the rest is read back");
    assert_eq!(next.event, "message.received");
}

#[tokio::test]
async fn a_position_beyond_the_head_is_refused_by_name() {
    let t = start().await;
    let (bob, ops) = (t.agent("bob"), t.agent("ops"));
    let head = t.bridge.store().head_seq();
    let beyond = head + 4000;
    for (agent, route) in [(&bob, "/v1/stream"), (&ops, "/v1/events/stream")] {
        let by_query = agent.get(&format!("{route}?after={beyond}")).await;
        assert_eq!((by_query.status, by_query.code()), (400, "invalid_request"));
        assert_eq!(by_query.body["errors"][0]["path"], "/after", "{route}");
        let resp = agent
            .request(Method::GET, route, b"")
            .header("last-event-id", beyond.to_string())
            .send()
            .await
            .unwrap();
        let by_header = reply(resp).await;
        assert_eq!(
            (by_header.status, by_header.code()),
            (400, "invalid_request")
        );
        assert_eq!(
            by_header.body["errors"][0]["path"], "/Last-Event-ID",
            "{route}"
        );
        // The head itself is a position like any other.
        let mut at_head = agent.stream(route, Some(head)).await;
        assert!(at_head.next_within(1).await.is_none(), "{route}");
    }
}

/// The agent stream's per-agent limit is the caller's doing: one more is
/// `429 rate_limited` with `Retry-After`, naming the limit, and counts as no
/// server error in `/v1/ops/stats` (deploy gates read `error_ratio`).
/// Another agent still opens one.
#[tokio::test]
async fn an_agent_stream_over_the_agents_own_limit_is_rate_limited() {
    let t = start_with(|c| c.elicitation.max_subscriptions_per_agent = 2).await;
    let (bob, carol) = (t.agent("bob"), t.agent("carol"));
    let _first = bob.stream("/v1/stream", None).await;
    let _second = bob.stream("/v1/stream", None).await;
    let third = bob.get("/v1/stream").await;
    assert_eq!(
        (third.status, third.code()),
        (429, "rate_limited"),
        "{:?}",
        third.body
    );
    assert_eq!(third.headers["retry-after"], "5");
    assert_eq!(third.body["retry_after_s"], 5);
    let detail = third.body["detail"].as_str().unwrap();
    assert!(
        detail.contains("2 agent streams") && detail.contains("/v1/stream"),
        "{detail}"
    );
    let _carols = carol.stream("/v1/stream", None).await;
    let stats = t.agent("ops").get("/v1/ops/stats?window_s=60").await;
    assert_eq!(stats.status, 200, "{:?}", stats.body);
    assert_eq!(stats.body["http"]["errors_5xx"], 0, "{:?}", stats.body);
}
