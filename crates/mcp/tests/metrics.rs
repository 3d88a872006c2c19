//! `/mcp` requests in the bridge's request metrics: a tool call's own work is
//! its latency (rmcp answers the `initialize` revisions on an SSE stream it
//! opens before the tool runs, so timing to the response headers would record
//! only admission), and its waits for other agents are not.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

const MCP_COUNT: &str = r#"lighthouse_http_request_duration_seconds_count{route="/mcp"}"#;
const MCP_SUM: &str = r#"lighthouse_http_request_duration_seconds_sum{route="/mcp"}"#;
const APPEND_SUM: &str = "lighthouse_event_store_append_duration_seconds_sum";

fn exposition(b: &TestBridge) -> String {
    b.bridge.metrics().render().unwrap()
}

/// The exposition once `series` reached `at_least` (a request is recorded when
/// its response body ends, which can be just after the client has read it).
async fn once(b: &TestBridge, series: &str, at_least: f64) -> String {
    for _ in 0..200 {
        let m = exposition(b);
        if value(&m, series) >= at_least {
            return m;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{series} never reached {at_least}:\n{}", exposition(b));
}

#[tokio::test]
async fn a_tool_calls_work_is_in_the_latency_of_its_request() {
    let b = start().await;
    let alice = b.client("alice").await;
    ok(&call(&alice, "lighthouse_health", json!({})).await);
    let before = once(&b, MCP_COUNT, 1.0).await;
    let n = 20;
    for i in 0..n {
        ok(&call(
            &alice,
            "lighthouse_store_event",
            json!({"stream": "notes", "type": "note.added", "data": {"i": i}}),
        )
        .await);
    }
    let after = once(&b, MCP_COUNT, value(&before, MCP_COUNT) + f64::from(n)).await;
    let mcp = value(&after, MCP_SUM) - value(&before, MCP_SUM);
    let appends = value(&after, APPEND_SUM) - value(&before, APPEND_SUM);
    // Each call waited for its durable append before answering: the bridge
    // spent at least that long on its request.
    assert!(appends > 0.0);
    assert!(
        mcp >= appends,
        "{n} calls took {mcp} s on /mcp but their appends alone {appends} s"
    );
}

#[tokio::test]
async fn a_tool_calls_waits_are_not_latency_even_when_it_is_cancelled() {
    let b = start().await;
    let bob = b.client("bob").await;
    // Nothing arrives: the call waits its whole second, then answers.
    let page = ok(&call(
        &bob,
        "lighthouse_wait_for_messages",
        json!({"wait_seconds": 1}),
    )
    .await);
    assert_eq!(page["messages"], json!([]));
    once(&b, MCP_COUNT, 2.0).await;

    // A wait its client gives up on: recorded as closed by the client, with
    // the time it was blocked left out.
    let alice = b.client("alice").await;
    let handle = start_waiting_elicit(&alice).await;
    next_pending(&bob).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    handle.cancel(Some("gave up".into())).await.unwrap();
    once(
        &b,
        r#"lighthouse_http_requests_total{route="/mcp",status="499"}"#,
        1.0,
    )
    .await;

    let ops = b.bridge.caller_for("ops").unwrap();
    let stats = b.bridge.stats(&ops, 60).unwrap();
    let max = stats.http.latency_ms.max.unwrap();
    assert!(max < 1000.0, "a wait counted as latency: {max} ms");
}

/// A waiting tool call whose stream the bridge closes before the tool has
/// answered (shutting down) is not recorded as answered: its stream ended
/// well, but no answer went out.
#[tokio::test]
async fn a_tool_call_closed_before_it_answered_is_not_recorded_as_answered() {
    let b = start().await;
    let bob = b.client("bob").await;
    let alice = b.client("alice").await;
    let _handle = start_waiting_elicit(&alice).await;
    next_pending(&bob).await;
    let before = value(
        &exposition(&b),
        r#"lighthouse_http_requests_total{route="/mcp",status="200"}"#,
    );
    b.mcp_shutdown.trigger();
    let m = once(
        &b,
        r#"lighthouse_http_requests_total{route="/mcp",status="503"}"#,
        1.0,
    )
    .await;
    assert_eq!(
        value(
            &m,
            r#"lighthouse_http_requests_total{route="/mcp",status="200"}"#
        ),
        before,
        "{m}"
    );
}

/// A tool call refused after authentication (here an operator asking to
/// elicit, which only agents may) is recorded with the refusal's status, not
/// as a server error: a refused caller must not move the error ratio the
/// deploy gates read.
#[tokio::test]
async fn a_refused_tool_call_is_recorded_with_its_refusal() {
    let b = start().await;
    let ops = b.client("ops").await;
    let r = call(
        &ops,
        "lighthouse_elicit",
        json!({"to": "bob", "message": "Which port?", "schema": port_schema(), "wait": false}),
    )
    .await;
    assert_eq!(r.is_error, Some(true), "{r:?}");
    let m = once(
        &b,
        r#"lighthouse_http_requests_total{route="/mcp",status="403"}"#,
        1.0,
    )
    .await;
    assert_eq!(
        value(
            &m,
            r#"lighthouse_http_requests_total{route="/mcp",status="503"}"#
        ),
        0.0,
        "{m}"
    );
    let caller = b.bridge.caller_for("ops").unwrap();
    let stats = b.bridge.stats(&caller, 60).unwrap();
    assert_eq!(stats.http.errors_5xx, 0);

    // A tool error is recorded with its problem's status, as the REST route
    // would be: here a 404 for an elicitation that does not exist.
    let alice = b.client("alice").await;
    let r = call(
        &alice,
        "lighthouse_get_elicitation",
        json!({"elicitation_id": "el_01ARZ3NDEKTSV4RRFFQ69G5FAV"}),
    )
    .await;
    assert_eq!(r.is_error, Some(true), "{r:?}");
    once(
        &b,
        r#"lighthouse_http_requests_total{route="/mcp",status="404"}"#,
        1.0,
    )
    .await;
}
