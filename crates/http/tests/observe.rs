//! Every request is recorded, whatever becomes of it: one whose handler
//! panics is a recorded `500`, one whose client goes away first is a recorded
//! `499`, and a long-poll's time blocked waiting is left out of its latency.

mod common;

use std::time::Duration;

use axum::Router;
use axum::routing::get;
use serde_json::json;

async fn boom() -> &'static str {
    panic!("secret internals that must stay in the log");
}

async fn slow() -> &'static str {
    tokio::time::sleep(Duration::from_secs(60)).await;
    "too late"
}

fn routes() -> Router {
    Router::new()
        .route("/test/boom", get(boom))
        .route("/test/slow", get(slow))
}

async fn scrape(t: &common::TestBridge) -> String {
    reqwest::get(format!("{}/metrics", t.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The value of `series` (name and labels exactly as exposed) in `text`.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

async fn stats(t: &common::TestBridge) -> serde_json::Value {
    let s = t.agent("ops").get("/v1/ops/stats?window_s=60").await;
    assert_eq!(s.status, 200, "{:?}", s.body);
    s.body
}

#[tokio::test]
async fn a_panicking_handler_is_a_recorded_server_error() {
    let t = common::start_with_routes(routes()).await;
    let r = reqwest::get(format!("{}/test/boom", t.base)).await.unwrap();
    assert_eq!(r.status(), 500);
    assert_eq!(r.headers()["content-type"], lighthouse_http::PROBLEM_JSON);
    assert!(r.headers().contains_key("x-request-id"));
    let text = r.text().await.unwrap();
    assert!(!text.contains("secret"), "the panic leaked: {text}");
    let body: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        (body["code"].as_str(), body["status"].as_u64()),
        (Some("internal"), Some(500))
    );

    let s = stats(&t).await;
    assert_eq!(s["http"]["errors_5xx"], 1, "{s}");
    assert_eq!(s["http"]["requests"], 1, "{s}");
    assert_eq!(s["http"]["error_ratio"], 1.0, "{s}");
    let m = scrape(&t).await;
    assert_eq!(
        value(
            &m,
            r#"lighthouse_http_requests_total{route="/test/boom",status="500"}"#
        ),
        Some(1.0),
        "{m}"
    );
    // The bridge serves on.
    assert_eq!(t.agent("alice").get("/v1/agents/me").await.status, 200);
}

#[tokio::test]
async fn a_request_its_client_abandons_is_recorded_as_closed_by_the_client() {
    let t = common::start_with_routes(routes()).await;
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let r = impatient.get(format!("{}/test/slow", t.base)).send().await;
    assert!(r.is_err(), "{r:?}");

    // hyper notices the closed connection and drops the handler: the request
    // is recorded then, with the time it ran.
    let series = r#"lighthouse_http_requests_total{route="/test/slow",status="499"}"#;
    let mut m = scrape(&t).await;
    for _ in 0..100 {
        if value(&m, series).is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        m = scrape(&t).await;
    }
    assert_eq!(value(&m, series), Some(1.0), "{m}");
    let count = r#"lighthouse_http_request_duration_seconds_count{route="/test/slow"}"#;
    assert_eq!(value(&m, count), Some(1.0), "{m}");
    let sum = r#"lighthouse_http_request_duration_seconds_sum{route="/test/slow"}"#;
    assert!(value(&m, sum).unwrap() > 0.1, "{m}");
    // An API request like any other in the windowed figures, not a server error.
    let s = stats(&t).await;
    assert_eq!(
        (
            s["http"]["requests"].as_u64(),
            s["http"]["errors_5xx"].as_u64()
        ),
        (Some(1), Some(0)),
        "{s}"
    );
    assert_eq!(s["http"]["latency_ms"]["count"], 1, "{s}");
}

#[tokio::test]
async fn a_long_poll_leaves_only_its_block_out_of_latency() {
    let t = common::start().await;
    let (alice, bob) = (t.agent("alice"), t.agent("bob"));
    // Nothing to receive: blocked for the whole second it asked for.
    let empty = bob.get("/v1/messages?after=0&wait_ms=1000").await;
    assert_eq!(empty.body, json!({"messages": [], "next_after": 0}));
    // A message there already: answered at once, all of it the bridge's work.
    let sent = alice
        .post("/v1/messages", json!({"to": "bob", "body": {"n": 1}}))
        .await;
    assert_eq!(sent.status, 201);
    let got = bob.get("/v1/messages?after=0&wait_ms=60000").await;
    assert_eq!(got.body["messages"][0]["body"], json!({"n": 1}));

    let m = scrape(&t).await;
    let route = |what: &str| {
        value(
            &m,
            &format!("lighthouse_http_request_duration_seconds_{what}{{route=\"/v1/messages\"}}"),
        )
        .unwrap()
    };
    assert_eq!(route("count"), 3.0, "{m}");
    assert!(route("sum") < 1.0, "the blocked second is not latency: {m}");
    let s = stats(&t).await;
    assert!(
        s["http"]["latency_ms"]["max"].as_f64().unwrap() < 1000.0,
        "{s}"
    );
}

/// A drain waits for others to resolve; that wait is not the bridge's latency
/// even when the client gives up during it (the request is then recorded as
/// `499` with only the bridge's own time).
#[tokio::test]
async fn a_drain_given_up_during_its_wait_leaves_the_wait_out_of_latency() {
    let t = common::start().await;
    let alice = t.agent("alice");
    let created = alice
        .post(
            "/v1/elicitations",
            json!({"to": "bob", "message": "port?", "requested_schema": {"type": "object", "properties": {"port": {"type": "integer"}}}}),
        )
        .await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    let body =
        serde_json::to_vec(&json!({"timeout_ms": 5000, "then": "none", "reason": "test"})).unwrap();
    let r = t
        .agent("ops")
        .request(reqwest::Method::POST, "/v1/ops/drain", &body)
        .timeout(Duration::from_millis(500))
        .send()
        .await;
    assert!(r.is_err(), "{r:?}");
    let series = r#"lighthouse_http_requests_total{route="/v1/ops/drain",status="499"}"#;
    let mut m = scrape(&t).await;
    for _ in 0..100 {
        if value(&m, series).is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        m = scrape(&t).await;
    }
    assert_eq!(value(&m, series), Some(1.0), "{m}");
    let sum = r#"lighthouse_http_request_duration_seconds_sum{route="/v1/ops/drain"}"#;
    // The client gave up after 500 ms, all of it but admission spent waiting.
    assert!(
        value(&m, sum).unwrap() < 0.45,
        "the wait is not latency: {m}"
    );
}

/// A verify walks the whole log (about 0.5 s for a million events): like a
/// drain's wait, that walk is left out of latency, so on a quiet bridge it does
/// not become the p99 the deploy gates read.
#[tokio::test]
async fn a_verify_leaves_its_walk_out_of_latency() {
    let t =
        common::start_with(|c| c.durability = lighthouse_event_store::Durability::Buffered).await;
    // Enough events for a walk of at least 40 ms (a debug build gets there
    // sooner than a release one).
    let store = t.bridge.store().clone();
    for batch in 0..500 {
        let events = (0..1_000)
            .map(|i| {
                lighthouse_event_store::NewEvent::new(
                    "load",
                    "load.filled",
                    json!({"batch": batch, "i": i}),
                )
            })
            .collect();
        store.append(events).await.unwrap();
        if batch % 5 == 4 {
            let s = store.clone();
            let started = std::time::Instant::now();
            tokio::task::spawn_blocking(move || s.verify().unwrap())
                .await
                .unwrap();
            if started.elapsed() >= Duration::from_millis(40) {
                break;
            }
        }
    }
    let r = t
        .agent("ops")
        .send(reqwest::Method::POST, "/v1/ops/verify", b"")
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["ok"], true);
    let walked_ms = r.body["elapsed_ms"].as_f64().unwrap();
    assert!(
        walked_ms >= 20.0,
        "the walk must take long enough to be told apart from the request's own work: {walked_ms} ms"
    );
    let m = scrape(&t).await;
    let sum = r#"lighthouse_http_request_duration_seconds_sum{route="/v1/ops/verify"}"#;
    let count = r#"lighthouse_http_request_duration_seconds_count{route="/v1/ops/verify"}"#;
    assert_eq!(value(&m, count), Some(1.0), "{m}");
    let latency_ms = value(&m, sum).unwrap() * 1000.0;
    assert!(
        latency_ms < walked_ms / 2.0,
        "the {walked_ms} ms walk is not latency, yet {latency_ms} ms were recorded"
    );
    let s = stats(&t).await;
    assert!(
        s["http"]["latency_ms"]["max"].as_f64().unwrap() < walked_ms / 2.0,
        "{s}"
    );
}
