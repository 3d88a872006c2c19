//! Retries against real failures: lost responses, refused connections, 429.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::proxy::Proxy;
use common::{TestBridge, port_schema};
use lighthouse_client::{
    Client, Error, ListElicitations, Mailbox, ReceiveMessages, RetryPolicy, idempotency_key,
};
use lighthouse_core::api::{CreateRequest, ErrorCode, FlagKill, FlagPut, FlagSpec, Role};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A server that reads each request's head, writes `answer` and closes;
/// counts the connections.
async fn answering(answer: &'static str) -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let count = Arc::new(AtomicUsize::new(0));
    let counted = count.clone();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = conn.write_all(answer.as_bytes()).await;
                let _ = conn.shutdown().await;
            });
        }
    });
    (url, count)
}

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

/// A create answered from an earlier one is `201` like the first; only
/// `Idempotent-Replayed: true` tells it apart (docs/HTTP.md).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_create_is_told_by_its_header() {
    let record = r#"{"id":"el_1","from":"alice","to":"bob","message":"m","requested_schema":{"type":"object","properties":{}},"status":"pending","created_at":"2026-11-26T07:00:00.000Z","expires_at":"2026-11-26T07:00:30.000Z","resolved_at":null,"response":null,"metadata":{}}"#;
    let req = CreateRequest::new("bob", "m", json!({"type": "object", "properties": {}}));
    for (head, replayed) in [
        ("HTTP/1.1 201 Created\r\nidempotent-replayed: true", true),
        ("HTTP/1.1 201 Created", false),
        // A bridge from before the header answered a replay 200 (a create
        // never answers 200).
        ("HTTP/1.1 200 OK", true),
    ] {
        let answer = format!(
            "{head}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
             connection: close\r\n\r\n{record}",
            record.len()
        );
        let (url, _) = answering(Box::leak(answer.into_boxed_str())).await;
        let c = Client::with_token(&url, "lht1.test").unwrap();
        let created = c.elicit_with_key(&req, "k-1").await.unwrap();
        assert_eq!(
            (created.replayed, &*created.record.id),
            (replayed, "el_1"),
            "{head}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_success_whose_body_is_lost_is_not_reported_as_unavailable() {
    // The bridge acted (201) and the connection broke inside the body.
    let (url, connections) =
        answering("HTTP/1.1 201 Created\r\ncontent-length: 200\r\n\r\n{\"id\":").await;
    let c = Client::with_token(&url, "lht1.test").unwrap();
    let err = c.send_message("bob", &json!(1)).await.unwrap_err();
    match &err {
        Error::InvalidResponse { status, detail } => {
            assert_eq!(*status, 201);
            assert!(detail.contains("body lost"), "{detail}");
        }
        other => panic!("expected InvalidResponse, got {other}"),
    }
    // Not `503 unavailable`, which says the bridge did not act.
    assert_eq!(err.code(), ErrorCode::Internal);
    assert_eq!(err.problem().status, 500);
    assert_eq!(connections.load(Ordering::SeqCst), 1, "not sent again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flag_writes_are_retried_only_when_a_repeat_cannot_undo_another_change() {
    let tb = TestBridge::start().await;
    let cred = tb.credential("ops", Role::Operator).await;
    let direct = Client::from_credential(cred.clone()).unwrap();
    let proxy = Proxy::start(tb.addr).await;
    // A fresh client (and connection) per call: the proxy swallows the
    // answers of new connections only.
    let via = || {
        Client::builder()
            .credential(cred.clone())
            .base_url(&proxy.url)
            .build()
            .unwrap()
    };
    let put = |percent: f64, expected_version: Option<u64>| FlagPut {
        spec: FlagSpec::new(true, percent),
        reason: Some("test".into()),
        expected_version,
    };
    direct.put_flag("new_ui", &put(10.0, None)).await.unwrap();

    // A PUT whose answer is lost is reported, not repeated: had another
    // operator changed the flag in between, the repeat would undo it.
    proxy.swallow_next_responses(1);
    let err = via()
        .put_flag("new_ui", &put(50.0, None))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Transport { attempts: 1, .. }), "{err}");
    assert_eq!(proxy.swallowed(), 1);
    assert_eq!(direct.get_flag("new_ui").await.unwrap().version, 2);
    // Nor with expected_version: its repeat would be a false conflict.
    proxy.swallow_next_responses(1);
    let err = via()
        .put_flag("new_ui", &put(60.0, Some(2)))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Transport { attempts: 1, .. }), "{err}");
    assert_eq!(direct.get_flag("new_ui").await.unwrap().version, 3);

    // A kill is repeated: the repeat of an applied kill writes nothing.
    proxy.swallow_next_responses(1);
    let killed = via()
        .kill_flag("new_ui", &FlagKill::new("bad"))
        .await
        .unwrap();
    assert_eq!(proxy.swallowed(), 3);
    assert!(killed.killed);
    assert_eq!(killed.version, 4, "killed once");
    // An unkill is not: its repeat could lift a kill made in between.
    proxy.swallow_next_responses(1);
    let err = via()
        .unkill_flag("new_ui", &FlagKill::new("fixed"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Transport { attempts: 1, .. }), "{err}");
    let history = direct.flag_history("new_ui").await.unwrap();
    assert_eq!(history.changes.len(), 5, "each write applied once");
    // Neither is a kill with expected_version: its repeat would be a false
    // conflict, as for a PUT with one.
    proxy.swallow_next_responses(1);
    let err = via()
        .kill_flag("new_ui", &FlagKill::new("again").expecting(5))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Transport { attempts: 1, .. }), "{err}");
    let flag = direct.get_flag("new_ui").await.unwrap();
    assert_eq!((flag.killed, flag.version), (true, 6), "applied once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_outside_the_protocols_range_is_refused_before_sending() {
    let (url, connections) = answering("HTTP/1.1 500 Internal Server Error\r\n\r\n").await;
    let c = Client::with_token(&url, "lht1.test").unwrap();
    // `Duration::MAX` once overflowed the request timeout and panicked.
    let err = c.get_elicitation("el_1", Duration::MAX).await.unwrap_err();
    assert!(matches!(err, Error::Config(_)), "{err}");
    let err = c
        .messages(&ReceiveMessages {
            wait: Duration::from_millis(60_001),
            ..ReceiveMessages::default()
        })
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Config(_)), "{err}");
    assert_eq!(connections.load(Ordering::SeqCst), 0, "nothing was sent");
    // The bridge limits a drain's timeout; the client only must not overflow.
    let err = c
        .drain(&lighthouse_core::api::DrainRequest {
            timeout_ms: u64::MAX,
            then: Default::default(),
            reason: None,
        })
        .await
        .unwrap_err();
    assert_eq!(err.problem().status, 500, "{err}");
}

/// A tool that retries an `$ops` record after an error passes its own id, so
/// the retry returns the first record instead of appending a second one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ops_record_retried_by_its_caller_with_its_id_is_recorded_once() {
    use lighthouse_core::{Control, OPS_STREAM, OpsRecord};
    let tb = TestBridge::start().await;
    let cred = tb.credential("ops", Role::Operator).await;
    let direct = Client::from_credential(cred.clone()).unwrap();
    let proxy = Proxy::start(tb.addr).await;
    // No retries of its own: the caller sees the lost answer.
    let via = Client::builder()
        .credential(cred.clone())
        .base_url(&proxy.url)
        .retry(lighthouse_client::RetryPolicy::none())
        .build()
        .unwrap();
    let record = || {
        OpsRecord::new("ops.rollback.started", json!({"flag": "new_ui"}))
            .with_id("rollback-new_ui-1-started")
    };
    let recorded = || async {
        direct
            .query_events(&lighthouse_core::api::EventsQuery {
                stream: Some(OPS_STREAM.into()),
                event_type: Some("ops.rollback.started".into()),
                ..Default::default()
            })
            .await
            .unwrap()
            .events
    };
    proxy.swallow_next_responses(1);
    let p = via.record_ops_event(record()).await.unwrap_err();
    assert_eq!(proxy.swallowed(), 1, "{p:?}");
    let before = recorded().await;
    assert_eq!(before.len(), 1, "the first try was applied");
    // The caller's retry, with the same id.
    let retried = via.record_ops_event(record()).await.unwrap();
    assert_eq!(
        (retried.seq, retried.id.as_str()),
        (before[0].seq, "rollback-new_ui-1-started")
    );
    assert_eq!(recorded().await, before, "recorded once");
}

/// A bridge from before the flag write headers: the plain write still works;
/// the one that reports what the write did says it cannot tell, rather than
/// guess.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flag_outcome_without_the_bridges_headers_is_not_guessed() {
    let flag = r#"{"key":"f","description":"","enabled":true,"rollout_percent":10.0,"allow":[],"deny":[],"variants":[],"requires":[],"killed":false,"version":2,"updated_at":"2026-11-26T07:00:00.123Z","updated_by":"ops"}"#;
    let answer = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{flag}",
        flag.len()
    );
    let (url, _) = answering(Box::leak(answer.into_boxed_str())).await;
    let c = Client::with_token(&url, "lht1.test").unwrap();
    let put = FlagPut {
        spec: FlagSpec::new(true, 10.0),
        reason: Some("test".into()),
        expected_version: None,
    };
    assert_eq!(c.put_flag("f", &put).await.unwrap().version, 2);
    match c.put_flag_outcome("f", &put).await.unwrap_err() {
        Error::InvalidResponse { status, detail } => {
            assert_eq!(status, 200);
            assert!(detail.contains("x-lighthouse-changed"), "{detail}");
        }
        other => panic!("expected InvalidResponse, got {other}"),
    }
}
