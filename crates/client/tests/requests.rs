//! Signing, tokens and every route through a real socket.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{TestBridge, port_schema};
use lighthouse_client::{Client, Error, ManualClock, ReceiveMessages};
use lighthouse_core::ELICITATION_FLAG;
use lighthouse_core::api::{
    Action, AppendEventRequest, CreateRequest, ErrorCode, EventsQuery, ExpectedVersion, FlagKill,
    FlagPut, FlagSpec, Me, Role, Status, Timestamp,
};
use serde_json::json;

fn code(e: &Error) -> ErrorCode {
    e.refusal()
        .map(|p| p.code)
        .unwrap_or_else(|| panic!("not a refusal: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_requests_are_accepted_and_name_the_caller() {
    let tb = TestBridge::start().await;
    let cred = tb.credential("alice", Role::Agent).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("alice.json");
    cred.write(&path).unwrap();
    let alice = Client::from_credential_file(&path).unwrap();
    assert_eq!(alice.agent(), Some("alice"));
    assert_eq!(
        alice.me().await.unwrap(),
        Me {
            agent: "alice".into(),
            role: Role::Agent,
            key_id: 1
        }
    );
    // A query whose values need percent-encoding is signed exactly as sent.
    let q = EventsQuery {
        stream: Some("notes-1".into()),
        since: Some(Timestamp::parse_rfc3339("2026-11-26T07:00:00.000Z").unwrap()),
        limit: Some(10),
        ..EventsQuery::default()
    };
    assert!(alice.query_events(&q).await.unwrap().events.is_empty());
    // Many requests in a row: every one carries a fresh nonce.
    for _ in 0..20 {
        alice.me().await.unwrap();
    }
    // The base URL can be overridden (here with the same bridge by another name).
    let other = Client::builder()
        .credential(cred)
        .base_url(format!("http://localhost:{}", tb.addr.port()))
        .build()
        .unwrap();
    assert_eq!(other.me().await.unwrap().agent, "alice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_injected_clock_decides_the_timestamp() {
    let tb = TestBridge::start().await;
    let cred = tb.credential("alice", Role::Agent).await;
    let now = Timestamp::from_unix_millis(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64,
    );
    let clock = ManualClock::new(now.add_millis(-600_000));
    let client = Client::builder()
        .credential(cred.clone())
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    let err = client.me().await.unwrap_err();
    assert_eq!(code(&err), ErrorCode::StaleRequest);
    assert_eq!(err.problem().status, 401);
    clock.set(now);
    assert_eq!(client.me().await.unwrap().agent, "alice");

    // A wrong secret is a bad signature.
    let mut forged = cred;
    forged.secret = lighthouse_security::AgentSecret::from_bytes([9; 32]);
    let err = Client::from_credential(forged)
        .unwrap()
        .me()
        .await
        .unwrap_err();
    assert_eq!(code(&err), ErrorCode::BadSignature);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_tokens_work_until_revoked() {
    let tb = TestBridge::start().await;
    let alice = tb.client("alice", Role::Agent).await;
    let session = alice.create_session(Some(600)).await.unwrap();
    let by_token = Client::with_token(&tb.url, session.token.clone()).unwrap();
    assert_eq!(by_token.me().await.unwrap().agent, "alice");
    assert_eq!(
        alice.with_bearer(&session.token).me().await.unwrap().agent,
        "alice"
    );
    // A signing client has no token to end.
    assert_eq!(
        code(&alice.end_session().await.unwrap_err()),
        ErrorCode::InvalidRequest
    );
    by_token.end_session().await.unwrap();
    assert_eq!(
        code(&by_token.me().await.unwrap_err()),
        ErrorCode::Unauthenticated
    );
    // Out-of-range lifetimes are refused by the bridge.
    assert_eq!(
        code(&alice.create_session(Some(86_401)).await.unwrap_err()),
        ErrorCode::InvalidRequest
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_elicitation_round_trip() {
    let tb = TestBridge::start().await;
    let ops = tb.enable_elicitation().await;
    let alice = tb.client("alice", Role::Agent).await;
    let bob = tb.client("bob", Role::Agent).await;
    let mut bob_stream = bob.agent_stream(None);
    let req = CreateRequest::new("bob", "Which port?", port_schema()).timeout_ms(60_000);
    let created = alice.elicit(&req).await.unwrap();
    assert_eq!(
        (created.status, &*created.from, &*created.to),
        (Status::Pending, "alice", "bob")
    );

    let pushed = tokio::time::timeout(Duration::from_secs(10), bob_stream.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(pushed.kind(), "elicitation.requested");
    match &pushed.payload {
        lighthouse_client::AgentPayload::Requested(r) => assert_eq!(r, &created),
        other => panic!("unexpected {other:?}"),
    }

    // The requester long-polls while the target answers.
    let waiter = {
        let alice = alice.clone();
        let id = created.id.clone();
        tokio::spawn(async move { alice.get_elicitation(&id, Duration::from_secs(30)).await })
    };
    let err = bob
        .accept(&created.id, json!({"port": 70000}))
        .await
        .unwrap_err();
    let p = err.refusal().unwrap();
    assert_eq!((p.code, p.status), (ErrorCode::SchemaMismatch, 422));
    assert_eq!(p.errors[0].path, "/port");
    let done = bob
        .accept(&created.id, json!({"port": 8080}))
        .await
        .unwrap();
    assert_eq!(done.status, Status::Accepted);
    let response = done.response.clone().unwrap();
    assert_eq!(response.action, Action::Accept);
    assert_eq!(response.content, Some(json!({"port": 8080})));
    assert_eq!(response.by.as_deref(), Some("bob"));
    let polled = waiter.await.unwrap().unwrap();
    assert_eq!(polled, done);

    let resolved = tokio::time::timeout(Duration::from_secs(10), bob_stream.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(resolved.kind(), "elicitation.resolved");
    assert!(resolved.seq > pushed.seq);
    assert_eq!(bob_stream.position(), Some(resolved.seq));

    // The losing side of a race, listings, cancel and decline.
    assert_eq!(
        code(&bob.decline(&created.id, None).await.unwrap_err()),
        ErrorCode::AlreadyResolved
    );
    let inbox = bob.inbox(None).await.unwrap();
    assert_eq!(inbox.items.len(), 1);
    assert!(
        bob.inbox(Some(Status::Pending))
            .await
            .unwrap()
            .items
            .is_empty()
    );
    let second = alice.elicit(&req).await.unwrap();
    assert_eq!(
        code(&bob.cancel(&second.id, None).await.unwrap_err()),
        ErrorCode::Forbidden
    );
    let cancelled = alice
        .cancel(&second.id, Some("changed my mind"))
        .await
        .unwrap();
    assert_eq!(cancelled.status, Status::Cancelled);
    assert_eq!(
        cancelled.response.unwrap().reason.as_deref(),
        Some("changed my mind")
    );
    let third = alice.elicit(&req).await.unwrap();
    let declined = bob.decline(&third.id, Some("busy")).await.unwrap();
    assert_eq!(declined.status, Status::Declined);
    let outbox = alice
        .list_elicitations(&lighthouse_client::ListElicitations {
            mailbox: lighthouse_client::Mailbox::Outbox,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(outbox.items.len(), 3);
    assert_eq!(
        code(
            &alice
                .get_elicitation("el_nope", Duration::ZERO)
                .await
                .unwrap_err()
        ),
        ErrorCode::NotFound
    );

    // The flag gates creation on the next request.
    ops.kill_flag(ELICITATION_FLAG, &FlagKill::new("rollback"))
        .await
        .unwrap();
    let err = alice.elicit(&req).await.unwrap_err();
    assert_eq!(
        (code(&err), err.problem().status),
        (ErrorCode::FeatureDisabled, 403)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_long_poll_and_arrive_once() {
    let tb = TestBridge::start().await;
    let alice = tb.client("alice", Role::Agent).await;
    let bob = tb.client("bob", Role::Agent).await;
    let waiter = {
        let bob = bob.clone();
        tokio::spawn(async move {
            bob.messages(&ReceiveMessages {
                after: 0,
                wait: Duration::from_secs(30),
                limit: None,
            })
            .await
        })
    };
    let sent = alice
        .send_message("bob", &json!({"text": "hi"}))
        .await
        .unwrap();
    let page = waiter.await.unwrap().unwrap();
    assert_eq!(page.messages.len(), 1);
    let m = &page.messages[0];
    assert_eq!(
        (m.id.as_str(), m.seq, m.from.as_str()),
        (sent.id.as_str(), sent.seq, "alice")
    );
    assert_eq!(m.body, json!({"text": "hi"}));
    assert_eq!(page.next_after, sent.seq);
    let empty = bob
        .messages(&ReceiveMessages {
            after: page.next_after,
            ..ReceiveMessages::default()
        })
        .await
        .unwrap();
    assert!(empty.messages.is_empty());
    assert_eq!(empty.next_after, sent.seq);
    assert_eq!(
        code(&alice.send_message("nobody", &json!(1)).await.unwrap_err()),
        ErrorCode::NotFound
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_flags_ops_agents_health_and_metrics() {
    let tb = TestBridge::start().await;
    let admin = tb.client("root", Role::Admin).await;
    let ops = tb.client("ops", Role::Operator).await;
    let alice = tb.client("alice", Role::Agent).await;

    // Agents.
    let dave = admin.add_agent("dave", Role::Agent).await.unwrap();
    assert_eq!((dave.key_id, dave.bridge.as_str()), (1, tb.url.as_str()));
    let dave1 = Client::from_credential(dave).unwrap();
    assert_eq!(dave1.me().await.unwrap().agent, "dave");
    let rotated = admin.rotate_agent("dave").await.unwrap();
    assert_eq!(rotated.key_id, 2);
    let dave2 = Client::from_credential(rotated).unwrap();
    assert_eq!(dave2.me().await.unwrap().key_id, 2);
    assert_eq!(
        dave1.me().await.unwrap().key_id,
        1,
        "the old key is in its grace period"
    );
    let listed = admin.list_agents().await.unwrap();
    assert!(
        listed
            .agents
            .iter()
            .any(|a| a.id == "dave" && a.key_id == 2 && !a.revoked)
    );
    admin.revoke_agent("dave").await.unwrap();
    assert_eq!(dave2.me().await.unwrap_err().problem().status, 401);
    assert_eq!(
        code(&alice.list_agents().await.unwrap_err()),
        ErrorCode::Forbidden
    );

    // Events: append with an id twice, conditions, filters, reserved streams.
    let append = AppendEventRequest {
        stream: "notes-1".into(),
        event_type: "note.added".into(),
        data: json!({"text": "first"}),
        metadata: None,
        expected_version: None,
        id: Some("note-0001".into()),
    };
    let first = alice.append_event(&append).await.unwrap();
    assert_eq!(alice.append_event(&append).await.unwrap(), first);
    assert_eq!(first.version, 0);
    let conflict = alice
        .append_event(&AppendEventRequest {
            expected_version: Some(ExpectedVersion::Exact(5)),
            id: None,
            ..append.clone()
        })
        .await
        .unwrap_err();
    let p = conflict.refusal().unwrap();
    assert_eq!(
        (p.code, p.actual_version),
        (ErrorCode::VersionConflict, Some(Some(0)))
    );
    // A stream that does not exist: `null` on the wire, `Some(None)` here, as
    // the in-process bridge says it.
    let fresh = alice
        .append_event(&AppendEventRequest {
            stream: "notes-never-written".into(),
            expected_version: Some(ExpectedVersion::Exact(0)),
            id: None,
            ..append.clone()
        })
        .await
        .unwrap_err();
    let p = fresh.refusal().unwrap();
    assert_eq!(
        (p.code, p.actual_version),
        (ErrorCode::VersionConflict, Some(None))
    );
    let page = alice
        .query_events(&EventsQuery {
            stream: Some("notes-1".into()),
            event_type: Some("note.added".into()),
            agent: Some("alice".into()),
            ..EventsQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(page.events.len(), 1);
    assert_eq!(
        (page.events[0].seq, &page.events[0].data),
        (first.seq, &json!({"text": "first"}))
    );
    let reserved = AppendEventRequest {
        stream: "$ops".into(),
        event_type: "ops.deploy".into(),
        id: None,
        ..append.clone()
    };
    assert_eq!(
        code(&alice.append_event(&reserved).await.unwrap_err()),
        ErrorCode::Forbidden
    );
    assert!(ops.append_event(&reserved).await.is_ok());

    // Flags, with the evaluation vector of PROTOCOL.md 8.
    let put = FlagPut {
        spec: FlagSpec::new(true, 50.0),
        reason: Some("try it".into()),
        expected_version: None,
    };
    let flag = ops.put_flag("new_ui", &put).await.unwrap();
    assert_eq!((flag.version, flag.updated_by.as_str()), (1, "ops"));
    assert_eq!(ops.get_flag("new_ui").await.unwrap(), flag);
    assert!(
        alice.list_flags().await.is_err(),
        "agents do not read flags"
    );
    assert!(
        ops.list_flags()
            .await
            .unwrap()
            .flags
            .iter()
            .any(|f| f.key == "new_ui")
    );
    let eval = ops.evaluate_flag("new_ui", "carol").await.unwrap();
    assert_eq!(
        (eval.bucket, eval.enabled, eval.reason.as_str()),
        (6254, false, "split")
    );
    assert!(
        ops.kill_flag("new_ui", &FlagKill::new("bad"))
            .await
            .unwrap()
            .killed
    );
    assert_eq!(
        ops.evaluate_flag("new_ui", "carol").await.unwrap().reason,
        "killed"
    );
    assert!(
        !ops.unkill_flag("new_ui", &FlagKill::new("fixed"))
            .await
            .unwrap()
            .killed
    );
    let history = ops.flag_history("new_ui").await.unwrap();
    assert_eq!(history.changes.len(), 3);
    assert_eq!(history.changes[1].reason, "bad");
    assert_eq!(history.next, None);
    // Paged by hand: the newest two, then the one before them.
    let newest = ops
        .flag_history_page("new_ui", None, Some(2))
        .await
        .unwrap();
    assert_eq!(newest.changes, history.changes[1..]);
    let older = ops
        .flag_history_page("new_ui", newest.next, Some(2))
        .await
        .unwrap();
    assert_eq!(
        (older.changes.as_slice(), older.next),
        (&history.changes[..1], None)
    );
    let stale = FlagPut {
        expected_version: Some(1),
        ..put
    };
    assert_eq!(
        code(&ops.put_flag("new_ui", &stale).await.unwrap_err()),
        ErrorCode::VersionConflict
    );
    assert_eq!(
        code(&alice.put_flag("x", &stale).await.unwrap_err()),
        ErrorCode::Forbidden
    );

    // Operations.
    let stats = ops.ops_stats(60).await.unwrap();
    assert_eq!(stats.window_s, 60);
    assert!(stats.store.head_seq >= first.seq);
    assert_eq!(
        code(&ops.ops_stats(901).await.unwrap_err()),
        ErrorCode::InvalidRequest
    );
    let verify = ops.verify().await.unwrap();
    assert!(verify.ok);
    assert!(verify.head_seq >= first.seq);
    let drained = ops
        .drain(&lighthouse_core::api::DrainRequest {
            timeout_ms: 0,
            then: lighthouse_core::api::DrainThen::None,
            reason: None,
        })
        .await
        .unwrap();
    assert_eq!((drained.cancelled, drained.remaining), (0, 0));

    // Health and metrics need no credentials.
    assert_eq!(alice.health_live().await.unwrap(), json!({"status": "ok"}));
    assert!(alice.health_ready().await.unwrap().is_ok());
    let text = alice.metrics_text().await.unwrap();
    assert!(text.contains("lighthouse_elicitations_total"));
    assert!(text.contains("lighthouse_http_requests_total"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_over_the_size_limit_is_refused_not_buffered() {
    let tb = TestBridge::start().await;
    let cred = tb.credential("alice", Role::Agent).await;
    let writer = Client::from_credential(cred.clone()).unwrap();
    let big = "x".repeat(4096);
    for i in 0..4 {
        let req = AppendEventRequest {
            stream: "notes-big".into(),
            event_type: "note.added".into(),
            data: json!({"i": i, "text": big}),
            metadata: None,
            expected_version: None,
            id: None,
        };
        writer.append_event(&req).await.unwrap();
    }
    let config = lighthouse_client::ClientConfig {
        max_response_bytes: 8 * 1024,
        ..Default::default()
    };
    let small = Client::builder()
        .credential(cred)
        .config(config)
        .build()
        .unwrap();
    let q = EventsQuery {
        stream: Some("notes-big".into()),
        ..EventsQuery::default()
    };
    match small.query_events(&q).await.unwrap_err() {
        Error::InvalidResponse { status, detail } => {
            assert_eq!(status, 200);
            assert!(detail.contains("over the limit of 8192 bytes"), "{detail}");
        }
        other => panic!("expected InvalidResponse, got {other}"),
    }
    // One event fits.
    let one = EventsQuery {
        limit: Some(1),
        ..q
    };
    assert_eq!(small.query_events(&one).await.unwrap().events.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dot_segments_are_refused_before_anything_is_sent() {
    let tb = TestBridge::start().await;
    let alice = tb.client("alice", Role::Agent).await;
    for id in [".", ".."] {
        let e = alice.get_elicitation(id, Duration::ZERO).await.unwrap_err();
        assert!(matches!(e, Error::Config(_)), "{id}: {e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_is_an_answer_not_followed() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    // Where a redirect would send the signed request: counts what arrives.
    let hits = Arc::new(AtomicUsize::new(0));
    let seen = hits.clone();
    let elsewhere = axum::Router::new().fallback(move || {
        seen.fetch_add(1, Ordering::SeqCst);
        async { "captured" }
    });
    let other = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let other_url = format!("http://{}", other.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(other, elsewhere).await.unwrap() });
    let target = format!("{other_url}/v1/agents/me");
    let redirecting = axum::Router::new().fallback(move || {
        let target = target.clone();
        async move {
            (
                axum::http::StatusCode::TEMPORARY_REDIRECT,
                [(axum::http::header::LOCATION, target)],
            )
        }
    });
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, redirecting).await.unwrap() });
    let tb = TestBridge::start().await;
    let cred = tb.credential("alice", Role::Agent).await;
    let alice = Client::builder()
        .credential(cred)
        .base_url(&url)
        .build()
        .unwrap();
    let e = alice.me().await.unwrap_err();
    assert_eq!(e.problem().status, 307, "{e}");
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "the signed request went elsewhere"
    );
}
