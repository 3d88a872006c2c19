//! Two agents complete every lifecycle over real HTTP: the target learns of the
//! request through its SSE stream, the requester through long-polling.

mod common;

use common::{Agent, port_schema, start};
use serde_json::json;

async fn ask(alice: &Agent, to: &str, timeout_ms: u64) -> String {
    let r = alice
        .post(
            "/v1/elicitations",
            json!({"to": to, "message": "Which port?", "requested_schema": port_schema(), "timeout_ms": timeout_ms}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.body["status"], "pending");
    assert_eq!(r.body["from"], alice.name());
    assert!(r.body["response"].is_null());
    r.body["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn accept_after_a_schema_mismatch_reaches_both_sides() {
    let t = start().await;
    let (alice, bob) = (t.agent("alice"), t.agent("bob"));
    let mut bob_stream = bob.stream("/v1/stream", None).await;
    let id = ask(&alice, "bob", 30_000).await;
    let pushed = bob_stream
        .next_within(5)
        .await
        .expect("bob is pushed the request");
    assert_eq!(pushed.event, "elicitation.requested");
    assert_eq!(pushed.data["id"], id.as_str());
    assert_eq!(pushed.data["status"], "pending");
    assert!(pushed.id.is_some());

    let waiter = {
        let (alice, id) = (alice.clone(), id.clone());
        tokio::spawn(async move {
            alice
                .get(&format!("/v1/elicitations/{id}?wait_ms=10000"))
                .await
        })
    };
    let bad = bob
        .post(
            &format!("/v1/elicitations/{id}/respond"),
            json!({"action": "accept", "content": {"port": 70000}}),
        )
        .await;
    assert_eq!(bad.status, 422);
    assert_eq!(bad.code(), "schema_mismatch");
    assert_eq!(bad.body["errors"][0]["path"], "/port");
    assert_eq!(bad.headers["content-type"], "application/problem+json");
    let still = alice.get(&format!("/v1/elicitations/{id}")).await;
    assert_eq!(still.body["status"], "pending");

    let ok = bob
        .post(
            &format!("/v1/elicitations/{id}/respond"),
            json!({"action": "accept", "content": {"port": 8080}}),
        )
        .await;
    assert_eq!(ok.status, 200, "{:?}", ok.body);
    let seen = waiter.await.unwrap();
    assert_eq!(seen.status, 200);
    assert_eq!(seen.body["status"], "accepted");
    assert_eq!(
        seen.body["response"],
        json!({"action": "accept", "content": {"port": 8080}, "reason": null, "by": "bob"})
    );
    let resolved = bob_stream
        .next_within(5)
        .await
        .expect("bob is told it resolved");
    assert_eq!(resolved.event, "elicitation.resolved");
    assert_eq!(resolved.data["status"], "accepted");
    // A terminal state never changes: the losing side gets 409.
    let late = alice
        .post(&format!("/v1/elicitations/{id}/cancel"), json!({}))
        .await;
    assert_eq!((late.status, late.code()), (409, "already_resolved"));
}

#[tokio::test]
async fn decline_and_cancel() {
    let t = start().await;
    let (alice, bob) = (t.agent("alice"), t.agent("bob"));
    let id = ask(&alice, "bob", 30_000).await;
    let r = bob
        .post(
            &format!("/v1/elicitations/{id}/respond"),
            json!({"action": "decline", "reason": "busy"}),
        )
        .await;
    assert_eq!(r.body["status"], "declined");
    assert_eq!(
        r.body["response"],
        json!({"action": "decline", "content": null, "reason": "busy", "by": "bob"})
    );

    let id = ask(&alice, "bob", 30_000).await;
    // The target may see it but not cancel it.
    let r = bob
        .post(&format!("/v1/elicitations/{id}/cancel"), json!({}))
        .await;
    assert_eq!((r.status, r.code()), (403, "forbidden"));
    let r = alice
        .post(
            &format!("/v1/elicitations/{id}/cancel"),
            json!({"reason": "not needed"}),
        )
        .await;
    assert_eq!(r.body["status"], "cancelled");
    assert_eq!(r.body["response"]["by"], "alice");
    let r = bob
        .post(
            &format!("/v1/elicitations/{id}/respond"),
            json!({"action": "accept", "content": {"port": 1}}),
        )
        .await;
    assert_eq!((r.status, r.code()), (409, "already_resolved"));
}

#[tokio::test]
async fn expiry_is_pushed_and_refuses_late_answers() {
    let t = start().await;
    let (alice, bob) = (t.agent("alice"), t.agent("bob"));
    let id = ask(&alice, "bob", 1000).await;
    let seen = alice
        .get(&format!("/v1/elicitations/{id}?wait_ms=5000"))
        .await;
    assert_eq!(seen.body["status"], "expired");
    assert_eq!(
        seen.body["response"],
        json!({"action": "expire", "content": null, "reason": null, "by": null})
    );
    let r = bob
        .post(
            &format!("/v1/elicitations/{id}/respond"),
            json!({"action": "accept", "content": {"port": 1}}),
        )
        .await;
    assert_eq!((r.status, r.code()), (409, "expired"));
}

#[tokio::test]
async fn inbox_outbox_and_third_parties() {
    let t = start().await;
    let (alice, bob, carol) = (t.agent("alice"), t.agent("bob"), t.agent("carol"));
    let id = ask(&alice, "bob", 30_000).await;
    let inbox = bob.get("/v1/elicitations?box=inbox&status=pending").await;
    assert_eq!(inbox.body["items"][0]["id"], id.as_str());
    let outbox = alice.get("/v1/elicitations?box=outbox").await;
    assert_eq!(outbox.body["items"][0]["id"], id.as_str());
    assert_eq!(
        carol.get("/v1/elicitations?box=inbox").await.body["items"],
        json!([])
    );
    // A third agent cannot see it: 404, not 403.
    let r = carol.get(&format!("/v1/elicitations/{id}")).await;
    assert_eq!((r.status, r.code()), (404, "not_found"));
    let r = carol
        .post(
            &format!("/v1/elicitations/{id}/respond"),
            json!({"action": "decline"}),
        )
        .await;
    assert_eq!(r.status, 404);
}

#[tokio::test]
async fn idempotency_key_returns_the_first_result() {
    let t = start().await;
    let (alice, bob) = (t.agent("alice"), t.agent("bob"));
    let body = serde_json::to_vec(
        &json!({"to": "bob", "message": "m", "requested_schema": port_schema()}),
    )
    .unwrap();
    let create = || async {
        common::reply(
            alice
                .request(reqwest::Method::POST, "/v1/elicitations", &body)
                .header("idempotency-key", "k-1")
                .send()
                .await
                .unwrap(),
        )
        .await
    };
    let first = create().await;
    assert_eq!(first.status, 201, "{:?}", first.body);
    assert!(!first.headers.contains_key("idempotent-replayed"));
    let id = first.body["id"].as_str().unwrap().to_owned();
    // A retry while it is pending: the same answer, marked as a replay.
    let again = create().await;
    assert_eq!(again.status, 201, "{:?}", again.body);
    assert_eq!(again.headers["idempotent-replayed"], "true");
    assert_eq!(again.headers["content-type"], "application/json");
    assert_eq!(again.body, first.body);
    // Resolved since: a retry still answers exactly what the first create did
    // (the record as created, pending), not what the elicitation is now.
    let r = bob
        .post(
            &format!("/v1/elicitations/{id}/respond"),
            json!({"action": "decline", "reason": "no"}),
        )
        .await;
    assert_eq!(
        (r.status, r.body["status"].as_str()),
        (200, Some("declined"))
    );
    let late = create().await;
    assert_eq!(late.status, 201, "{:?}", late.body);
    assert_eq!(late.headers["idempotent-replayed"], "true");
    assert_eq!(late.body, first.body);
    assert_eq!(late.body["status"], "pending");
    assert!(late.body["response"].is_null() && late.body["resolved_at"].is_null());
    // The elicitation itself is declined, and there is only the one.
    let now = alice.get(&format!("/v1/elicitations/{id}")).await;
    assert_eq!(now.body["status"], "declined");
    let outbox = alice.get("/v1/elicitations?box=outbox").await;
    assert_eq!(outbox.body["items"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn messages_long_poll() {
    let t = start().await;
    let (alice, bob) = (t.agent("alice"), t.agent("bob"));
    let empty = bob.get("/v1/messages?after=0&wait_ms=0").await;
    assert_eq!(empty.body, json!({"messages": [], "next_after": 0}));
    let waiter = {
        let bob = bob.clone();
        tokio::spawn(async move { bob.get("/v1/messages?after=0&wait_ms=10000").await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let sent = alice
        .post(
            "/v1/messages",
            json!({"to": "bob", "body": {"hello": [1, 2]}}),
        )
        .await;
    assert_eq!(sent.status, 201, "{:?}", sent.body);
    let got = waiter.await.unwrap();
    let m = &got.body["messages"][0];
    assert_eq!(
        (m["from"].as_str(), m["to"].as_str()),
        (Some("alice"), Some("bob"))
    );
    assert_eq!(m["body"], json!({"hello": [1, 2]}));
    assert_eq!(m["seq"], sent.body["seq"]);
    assert_eq!(got.body["next_after"], sent.body["seq"]);
}

#[tokio::test]
async fn a_resumed_stream_misses_nothing_and_repeats_nothing() {
    let t = start().await;
    let (alice, bob) = (t.agent("alice"), t.agent("bob"));
    let mut s = bob.stream("/v1/stream", None).await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ask(&alice, "bob", 30_000).await;
    }
    let mut seqs = Vec::new();
    for _ in 0..3 {
        let e = s.next_within(5).await.unwrap();
        seqs.push(e.id.unwrap());
        ids.push(e.data["id"].as_str().unwrap().to_owned());
    }
    drop(s);
    // While disconnected: two more requests and a message.
    ask(&alice, "bob", 30_000).await;
    ask(&alice, "bob", 30_000).await;
    alice
        .post("/v1/messages", json!({"to": "bob", "body": "hi"}))
        .await;
    let mut s = bob.stream("/v1/stream", Some(seqs[1])).await;
    let mut after = Vec::new();
    for _ in 0..4 {
        let e = s.next_within(5).await.unwrap();
        after.push((e.id.unwrap(), e.event));
    }
    assert_eq!(after[0].0, seqs[2], "resumes right after the given id");
    assert!(
        after.windows(2).all(|w| w[0].0 < w[1].0),
        "in order, no repeats: {after:?}"
    );
    assert_eq!(after[3].1, "message.received");
    assert!(s.next_within(1).await.is_none(), "nothing else");
    // ?after= works too, and the header wins over it.
    let mut s = bob
        .stream(&format!("/v1/stream?after={}", seqs[0]), Some(seqs[2]))
        .await;
    assert!(s.next_within(5).await.unwrap().id.unwrap() > seqs[2]);
}

#[tokio::test]
async fn a_fresh_stream_starts_with_what_is_pending() {
    let t = start().await;
    let (alice, bob) = (t.agent("alice"), t.agent("bob"));
    let a = ask(&alice, "bob", 30_000).await;
    let b = ask(&alice, "bob", 30_000).await;
    bob.post(
        &format!("/v1/elicitations/{a}/respond"),
        json!({"action": "decline"}),
    )
    .await;
    let mut s = bob.stream("/v1/stream", None).await;
    let first = s.next_within(5).await.unwrap();
    assert_eq!(
        (first.event.as_str(), first.data["id"].as_str()),
        ("elicitation.requested", Some(b.as_str()))
    );
}

#[tokio::test]
async fn a_stream_without_a_position_names_where_a_replay_covers_it() {
    let t = start().await;
    let (alice, bob) = (t.agent("alice"), t.agent("bob"));
    let header = |s: &common::Sse| -> Option<u64> {
        s.header(lighthouse_http::RESUME_AFTER_HEADER)
            .map(|v| v.parse().unwrap())
    };
    // Nothing pending: the position the stream goes live from.
    let before = alice
        .post("/v1/messages", json!({"to": "bob", "body": "before"}))
        .await;
    let s = bob.stream("/v1/stream", None).await;
    let named = header(&s).expect("named");
    assert!(named >= before.body["seq"].as_u64().unwrap());
    drop(s);
    // Pending items: just below the lowest, and they go out in ascending
    // order. A replay from there brings them, with what happened between.
    let a = ask(&alice, "bob", 30_000).await;
    let between = alice
        .post("/v1/messages", json!({"to": "bob", "body": "between"}))
        .await;
    let b = ask(&alice, "bob", 30_000).await;
    let mut s = bob.stream("/v1/stream", None).await;
    let named = header(&s).expect("named");
    let first = s.next_within(5).await.unwrap();
    let second = s.next_within(5).await.unwrap();
    assert_eq!(first.data["id"].as_str(), Some(a.as_str()));
    assert_eq!(second.data["id"].as_str(), Some(b.as_str()));
    assert_eq!(named, first.id.unwrap() - 1);
    assert!(first.id < second.id);
    drop(s);
    let mut s = bob.stream("/v1/stream", Some(named)).await;
    assert_eq!(header(&s), None, "a stream with a position needs none");
    let mut replay = Vec::new();
    for _ in 0..3 {
        let e = s.next_within(5).await.unwrap();
        replay.push((e.id.unwrap(), e.event));
    }
    assert_eq!(
        replay,
        [
            (first.id.unwrap(), "elicitation.requested".to_owned()),
            (
                between.body["seq"].as_u64().unwrap(),
                "message.received".to_owned()
            ),
            (second.id.unwrap(), "elicitation.requested".to_owned()),
        ]
    );
}

#[tokio::test]
async fn long_polls_answer_at_once_when_the_bridge_begins_shutting_down() {
    let t = start().await;
    let (alice, bob) = (t.agent("alice"), t.agent("bob"));
    let id = ask(&alice, "bob", 60_000).await;
    let started = std::time::Instant::now();
    let polls = {
        let (alice, bob, id) = (alice.clone(), bob.clone(), id.clone());
        tokio::spawn(async move {
            let path = format!("/v1/elicitations/{id}?wait_ms=60000");
            tokio::join!(
                alice.get(&path),
                bob.get("/v1/messages?after=0&wait_ms=60000"),
            )
        })
    };
    // Both are waiting by now (a poll that started after the shutdown would
    // take the other path, checked below).
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    t.bridge.begin_shutdown();
    let (elicitation, messages) = polls.await.unwrap();
    // Both answer with what there is, long before their 60 s.
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
    assert_eq!(elicitation.status, 200, "{:?}", elicitation.body);
    assert_eq!(elicitation.body["status"], "pending");
    assert_eq!(messages.body, json!({"messages": [], "next_after": 0}));
    // A long-poll that starts during the shutdown does not wait either.
    let late = alice
        .get(&format!("/v1/elicitations/{id}?wait_ms=60000"))
        .await;
    assert_eq!(late.body["status"], "pending");
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
}
