//! Retries against real failures: lost responses, refused connections, 429.

mod common;

use std::time::Duration;

use common::proxy::Proxy;
use common::{TestBridge, port_schema};
use lighthouse_client::{
    Client, Error, ListElicitations, Mailbox, ReceiveMessages, RetryPolicy, idempotency_key,
};
use lighthouse_core::api::{CreateRequest, ErrorCode, Role};
use serde_json::json;

async fn outbox_len(c: &Client) -> usize {
    c.list_elicitations(&ListElicitations {
        mailbox: Mailbox::Outbox,
        ..ListElicitations::default()
    })
    .await
    .unwrap()
    .items
    .len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_retried_after_a_lost_response_returns_the_first_result() {
    let tb = TestBridge::start().await;
    tb.enable_elicitation().await;
    tb.credential("bob", Role::Agent).await;
    let cred = tb.credential("alice", Role::Agent).await;
    let direct = Client::from_credential(cred.clone()).unwrap();
    let proxy = Proxy::start(tb.addr).await;
    let via_proxy = || {
        Client::builder()
            .credential(cred.clone())
            .base_url(&proxy.url)
            .build()
            .unwrap()
    };
    let req = CreateRequest::new("bob", "Which port?", port_schema());

    // The bridge creates it, the answer is lost, the retry gets the first record.
    proxy.swallow_next_responses(1);
    let key = idempotency_key();
    let created = via_proxy().elicit_with_key(&req, &key).await.unwrap();
    assert_eq!(proxy.swallowed(), 1);
    assert!(
        created.replayed,
        "the second attempt was answered from the first"
    );
    assert_eq!(outbox_len(&direct).await, 1);
    // The same key later, from another process, still names the same record.
    let again = direct.elicit_with_key(&req, &key).await.unwrap();
    assert_eq!(
        (again.record, again.replayed),
        (created.record.clone(), true)
    );

    // `elicit` makes its own key per logical create.
    proxy.swallow_next_responses(1);
    let second = via_proxy().elicit(&req).await.unwrap();
    assert_eq!(proxy.swallowed(), 2);
    assert_ne!(second.id, created.record.id);
    assert_eq!(outbox_len(&direct).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_without_a_key_is_not_retried_after_a_lost_response() {
    let tb = TestBridge::start().await;
    let bob = tb.client("bob", Role::Agent).await;
    let cred = tb.credential("alice", Role::Agent).await;
    let proxy = Proxy::start(tb.addr).await;
    let alice = Client::builder()
        .credential(cred)
        .base_url(&proxy.url)
        .build()
        .unwrap();
    proxy.swallow_next_responses(1);
    let err = alice
        .send_message("bob", &json!({"n": 1}))
        .await
        .unwrap_err();
    match &err {
        Error::Transport { attempts, .. } => assert_eq!(*attempts, 1),
        other => panic!("expected a transport error, got {other}"),
    }
    let p = err.problem();
    assert_eq!((p.code, p.status), (ErrorCode::Unavailable, 503));
    let page = bob.messages(&ReceiveMessages::default()).await.unwrap();
    assert_eq!(page.messages.len(), 1, "delivered exactly once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_connections_are_retried_then_reported_as_unavailable() {
    let tb = TestBridge::start().await;
    let mut cred = tb.credential("alice", Role::Agent).await;
    let free = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    cred.bridge = format!("http://{}", free.local_addr().unwrap());
    drop(free);
    let policy = RetryPolicy {
        max_attempts: 3,
        initial_backoff: Duration::from_millis(10),
        ..RetryPolicy::default()
    };
    let client = Client::builder()
        .credential(cred)
        .retry(policy)
        .build()
        .unwrap();
    // Even a write is retried when the connection could not be made.
    let err = client.send_message("bob", &json!(1)).await.unwrap_err();
    assert!(matches!(err, Error::Transport { attempts: 3, .. }), "{err}");
    assert_eq!(err.code(), ErrorCode::Unavailable);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limited_requests_wait_out_retry_after() {
    let tb = TestBridge::start().await;
    // Sessions: 60 per minute with a burst of 10 (PROTOCOL.md 2.4).
    let patient = tb.client("patient", Role::Agent).await;
    for _ in 0..11 {
        patient.create_session(Some(60)).await.unwrap();
    }
    let cred = tb.credential("hasty", Role::Agent).await;
    let hasty = Client::builder()
        .credential(cred)
        .retry(RetryPolicy::none())
        .build()
        .unwrap();
    for _ in 0..10 {
        hasty.create_session(Some(60)).await.unwrap();
    }
    let err = hasty.create_session(Some(60)).await.unwrap_err();
    let p = err.refusal().unwrap();
    assert_eq!((p.code, p.status), (ErrorCode::RateLimited, 429));
    assert!(p.retry_after_s.unwrap_or(0) >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_cannot_be_built_is_not_retried() {
    let tb = TestBridge::start().await;
    tb.enable_elicitation().await;
    tb.credential("bob", Role::Agent).await;
    let cred = tb.credential("alice", Role::Agent).await;
    let proxy = Proxy::start(tb.addr).await;
    let alice = Client::builder()
        .credential(cred)
        .base_url(&proxy.url)
        .build()
        .unwrap();
    let req = CreateRequest::new("bob", "Which port?", port_schema());
    // A line break cannot be in a header value: reqwest refuses to build the
    // request, which would fail the same way however often it were tried.
    let err = alice.elicit_with_key(&req, "key\nsplit").await.unwrap_err();
    assert!(matches!(err, Error::Config(_)), "{err}");
    assert_eq!(err.code(), ErrorCode::InvalidRequest);
    assert_eq!(proxy.connections(), 0, "nothing was sent");
}
