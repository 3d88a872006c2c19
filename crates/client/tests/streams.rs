//! The SSE consumers resume by themselves: cut connections, client-side
//! disconnects and a bridge restart lose nothing and repeat nothing.

mod common;

use std::time::Duration;

use common::proxy::Proxy;
use common::{TestBridge, port_schema};
use lighthouse_client::{AgentPayload, AgentStream, Client, EventStreamFilter, ReconnectPolicy};
use lighthouse_core::api::{AppendEventRequest, CreateRequest, Credential, Role, Status};
use serde_json::json;

fn quick() -> ReconnectPolicy {
    ReconnectPolicy {
        initial_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(200),
        max_attempts: None,
    }
}

fn client_via(cred: &Credential, url: &str) -> Client {
    Client::builder()
        .credential(cred.clone())
        .base_url(url)
        .reconnect(quick())
        .build()
        .unwrap()
}

async fn next_message_seqs(stream: &mut AgentStream, n: usize) -> Vec<u64> {
    let mut out = Vec::new();
    while out.len() < n {
        let ev = tokio::time::timeout(Duration::from_secs(20), stream.next())
            .await
            .expect("an event in time")
            .expect("the stream goes on")
            .expect("no error");
        match ev.payload {
            AgentPayload::Message(m) => {
                assert_eq!(m.seq, ev.seq);
                out.push(ev.seq);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    out
}

async fn send(alice: &Client, n: usize) -> Vec<u64> {
    let mut seqs = Vec::new();
    for i in 0..n {
        seqs.push(
            alice
                .send_message("bob", &json!({"i": i}))
                .await
                .unwrap()
                .seq,
        );
    }
    seqs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_stream_resumes_after_cut_connections_without_gap_or_duplicate() {
    let tb = TestBridge::start().await;
    let alice = tb.client("alice", Role::Agent).await;
    let bob_cred = tb.credential("bob", Role::Agent).await;
    let proxy = Proxy::start(tb.addr).await;
    let bob = client_via(&bob_cred, &proxy.url);
    let mut stream = bob.agent_stream(Some(0));

    let mut sent = send(&alice, 10).await;
    let mut got = next_message_seqs(&mut stream, 10).await;
    // The network cuts the stream; more is sent while it is down.
    proxy.cut_connections();
    sent.extend(send(&alice, 10).await);
    got.extend(next_message_seqs(&mut stream, 3).await);
    proxy.cut_connections();
    sent.extend(send(&alice, 5).await);
    got.extend(next_message_seqs(&mut stream, 12).await);
    // The client drops the connection itself.
    stream.disconnect();
    sent.extend(send(&alice, 5).await);
    got.extend(next_message_seqs(&mut stream, 5).await);

    assert_eq!(got, sent, "every message once, in order");
    let stats = stream.stats();
    assert!(stats.connects >= 3, "{stats:?}");
    assert!(stats.disconnects >= 2, "{stats:?}");
    assert_eq!(stream.position(), sent.last().copied());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_stream_resumes_after_cut_connections() {
    let tb = TestBridge::start().await;
    let alice = tb.client("alice", Role::Agent).await;
    let reader = tb.credential("reader", Role::Observer).await;
    let proxy = Proxy::start(tb.addr).await;
    let observer = client_via(&reader, &proxy.url);
    let append = |i: usize| AppendEventRequest {
        stream: "notes-7".into(),
        event_type: "note.added".into(),
        data: json!({"i": i}),
        metadata: None,
        expected_version: None,
        id: None,
    };
    let mut tail = observer.event_stream(&EventStreamFilter {
        stream: Some("notes-7".into()),
        ..EventStreamFilter::default()
    });
    let mut want = Vec::new();
    let mut got = Vec::new();
    for round in 0..6 {
        // Appended while the stream is down (after the first round); noise on
        // another stream is filtered out by the bridge.
        for i in 0..5 {
            want.push(
                alice
                    .append_event(&append(round * 5 + i))
                    .await
                    .unwrap()
                    .seq,
            );
            let noise = AppendEventRequest {
                stream: "other".into(),
                ..append(i)
            };
            alice.append_event(&noise).await.unwrap();
        }
        while got.len() < want.len() {
            let e = tokio::time::timeout(Duration::from_secs(20), tail.next())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            assert_eq!(e.stream, "notes-7");
            got.push(e.seq);
        }
        proxy.cut_connections();
    }
    assert_eq!(got, want);
    assert!(tail.stats().connects >= 6, "{:?}", tail.stats());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_with_no_position_replays_what_is_pending_then_goes_live() {
    let tb = TestBridge::start().await;
    tb.enable_elicitation().await;
    let alice = tb.client("alice", Role::Agent).await;
    let bob = tb.client("bob", Role::Agent).await;
    let req = CreateRequest::new("bob", "Which port?", port_schema());
    let first = alice.elicit(&req).await.unwrap();
    let answered = alice.elicit(&req).await.unwrap();
    bob.accept(&answered.id, json!({"port": 1})).await.unwrap();
    let mut stream = bob.agent_stream(None);
    let ev = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    match ev.payload {
        AgentPayload::Requested(r) => {
            assert_eq!((r.id, r.status), (first.id.clone(), Status::Pending))
        }
        other => panic!("unexpected {other:?}"),
    }
    alice.cancel(&first.id, None).await.unwrap();
    let ev = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    match ev.payload {
        AgentPayload::Resolved(r) => assert_eq!((r.id, r.status), (first.id, Status::Cancelled)),
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_survives_a_bridge_restart() {
    let mut tb = TestBridge::start().await;
    let alice_cred = tb.credential("alice", Role::Agent).await;
    let bob_cred = tb.credential("bob", Role::Agent).await;
    let alice = client_via(&alice_cred, &tb.url);
    let bob = client_via(&bob_cred, &tb.url);
    let mut stream = bob.agent_stream(Some(0));
    let mut sent = send(&alice, 3).await;
    let mut got = next_message_seqs(&mut stream, 3).await;
    tb.restart().await;
    sent.extend(send(&alice, 3).await);
    got.extend(next_message_seqs(&mut stream, 3).await);
    assert_eq!(got, sent);
    assert_eq!(stream.stats().shutdowns, 1, "{:?}", stream.stats());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_opened_without_a_position_resumes_from_the_final_event() {
    let mut tb = TestBridge::start().await;
    let alice_cred = tb.credential("alice", Role::Agent).await;
    let bob_cred = tb.credential("bob", Role::Agent).await;
    let alice = client_via(&alice_cred, &tb.url);
    let bob = client_via(&bob_cred, &tb.url);
    // Nothing pending for bob, so the stream delivers nothing and learns no
    // position from events; it connects while waiting.
    let mut stream = bob.agent_stream(None);
    assert!(
        tokio::time::timeout(Duration::from_millis(500), stream.next())
            .await
            .is_err()
    );
    tb.restart().await;
    // Sent while bob is away: not pending, so not in a fresh stream's snapshot;
    // only a resume from the `shutdown` event's position delivers it.
    let sent = send(&alice, 1).await;
    let got = next_message_seqs(&mut stream, 1).await;
    assert_eq!(got, sent);
    assert_eq!(stream.stats().shutdowns, 1, "{:?}", stream.stats());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_named_like_the_bridges_final_events_are_items() {
    let tb = TestBridge::start().await;
    let alice = tb.client("alice", Role::Agent).await;
    for t in ["shutdown", "lagged", "error", "unauthenticated"] {
        alice
            .append_event(&AppendEventRequest {
                stream: "notes-8".into(),
                event_type: t.into(),
                data: json!({"resume_after": 999_999}),
                metadata: None,
                expected_version: None,
                id: None,
            })
            .await
            .unwrap();
    }
    let mut tail = alice.event_stream(&EventStreamFilter {
        stream: Some("notes-8".into()),
        ..EventStreamFilter::default()
    });
    let mut types = Vec::new();
    for _ in 0..4 {
        let e = tokio::time::timeout(Duration::from_secs(20), tail.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        types.push(e.event_type);
    }
    assert_eq!(types, ["shutdown", "lagged", "error", "unauthenticated"]);
    assert_eq!(tail.stats().disconnects, 0, "{:?}", tail.stats());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_stream_ends_with_the_problem() {
    let tb = TestBridge::start().await;
    let admin = tb.client("root", Role::Admin).await;
    let cred = tb.credential("gone", Role::Agent).await;
    admin.revoke_agent("gone").await.unwrap();
    let mut stream = Client::from_credential(cred).unwrap().agent_stream(None);
    let err = stream.next().await.unwrap().unwrap_err();
    assert_eq!(err.problem().status, 401);
    assert!(stream.next().await.is_none());
    // A bearer client streams too: the first event alice may read is her message.
    let alice = tb.client("alice", Role::Agent).await;
    tb.credential("bob", Role::Agent).await;
    let token = alice.create_session(None).await.unwrap().token;
    let seq = alice.send_message("bob", &json!("x")).await.unwrap().seq;
    let by_token = Client::with_token(&tb.url, token).unwrap();
    let mut mine = by_token.event_stream(&EventStreamFilter::default());
    let first = tokio::time::timeout(Duration::from_secs(10), mine.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(
        (first.seq, first.event_type.as_str()),
        (seq, "message.sent")
    );
    // Revoking alice ends her open stream (the bridge re-checks every 5 s):
    // the final `unauthenticated` event, then the reconnect's 401.
    admin.revoke_agent("alice").await.unwrap();
    let err = tokio::time::timeout(Duration::from_secs(15), mine.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert_eq!(err.problem().status, 401);
}

async fn next_item(stream: &mut AgentStream) -> lighthouse_client::AgentEvent {
    tokio::time::timeout(Duration::from_secs(20), stream.next())
        .await
        .expect("an event in time")
        .expect("the stream goes on")
        .expect("no error")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_without_a_position_cut_before_its_first_item_misses_nothing() {
    let tb = TestBridge::start().await;
    tb.enable_elicitation().await;
    let alice = tb.client("alice", Role::Agent).await;
    let bob_cred = tb.credential("bob", Role::Agent).await;
    let proxy = Proxy::start(tb.addr).await;
    let bob = client_via(&bob_cred, &proxy.url);
    // Bob's own question waits in alice's inbox: nothing is pending for bob.
    let asked = bob
        .elicit(&CreateRequest::new("alice", "Which port?", port_schema()))
        .await
        .unwrap();
    let mut stream = bob.agent_stream(None);
    assert!(
        tokio::time::timeout(Duration::from_millis(500), stream.next())
            .await
            .is_err(),
        "connected, nothing to hand out"
    );
    assert_eq!(stream.stats().connects, 1);
    let start = stream.position().expect("the bridge named where to resume");
    proxy.cut_connections();
    // Resolved while bob is away: no longer pending, and before the start of
    // any new connection, so only a resume from `start` brings it.
    alice
        .accept(&asked.id, json!({"port": 8080}))
        .await
        .unwrap();
    let ev = next_item(&mut stream).await;
    match ev.payload {
        AgentPayload::Resolved(r) => assert_eq!((r.id, r.status), (asked.id, Status::Accepted)),
        other => panic!("unexpected {other:?}"),
    }
    assert!(ev.seq > start);
    assert!(stream.stats().connects >= 2, "{:?}", stream.stats());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_without_a_position_broken_before_its_pending_items_misses_nothing() {
    let tb = TestBridge::start().await;
    tb.enable_elicitation().await;
    let alice = tb.client("alice", Role::Agent).await;
    let bob_cred = tb.credential("bob", Role::Agent).await;
    let proxy = Proxy::start(tb.addr).await;
    let bob = client_via(&bob_cred, &proxy.url);
    let req = CreateRequest::new("bob", "Which port?", port_schema());
    let first = alice.elicit(&req).await.unwrap();
    let second = alice.elicit(&req).await.unwrap();
    // Every connection gets its response head, then breaks: the stream
    // connects again and again and hands nothing out.
    proxy.pass_heads_only(true);
    let mut stream = bob.agent_stream(None);
    assert!(
        tokio::time::timeout(Duration::from_millis(500), stream.next())
            .await
            .is_err()
    );
    assert!(stream.stats().connects >= 1, "{:?}", stream.stats());
    // Meanwhile the first is cancelled and a message arrives: neither is
    // pending when the stream finally gets through.
    alice.cancel(&first.id, None).await.unwrap();
    let sent = alice.send_message("bob", &json!("hi")).await.unwrap();
    proxy.pass_heads_only(false);
    let mut got = Vec::new();
    for _ in 0..4 {
        got.push(next_item(&mut stream).await);
    }
    let seqs: Vec<u64> = got.iter().map(|e| e.seq).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "in order: {seqs:?}");
    let kinds: Vec<(&str, String)> = got
        .iter()
        .map(|e| {
            let id = match &e.payload {
                AgentPayload::Requested(r) | AgentPayload::Resolved(r) => r.id.to_string(),
                AgentPayload::Message(m) => m.id.clone(),
                other => panic!("unexpected {other:?}"),
            };
            (e.kind(), id)
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("elicitation.requested", first.id.to_string()),
            ("elicitation.requested", second.id.to_string()),
            ("elicitation.resolved", first.id.to_string()),
            ("message.received", sent.id.clone()),
        ]
    );
    assert_eq!(stream.position(), Some(sent.seq));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_without_a_position_resumes_after_the_last_pending_item_it_handed_out() {
    let tb = TestBridge::start().await;
    tb.enable_elicitation().await;
    let alice = tb.client("alice", Role::Agent).await;
    let bob_cred = tb.credential("bob", Role::Agent).await;
    let bob = client_via(&bob_cred, &tb.url);
    let req = CreateRequest::new("bob", "Which port?", port_schema());
    let ids: Vec<String> = [
        alice.elicit(&req).await.unwrap().id.to_string(),
        alice.elicit(&req).await.unwrap().id.to_string(),
        alice.elicit(&req).await.unwrap().id.to_string(),
    ]
    .into();
    let mut stream = bob.agent_stream(None);
    let one = next_item(&mut stream).await;
    // Drops what was read and not handed out (the rest of the list, likely).
    stream.disconnect();
    alice.cancel(&ids[0], None).await.unwrap();
    // The pending list goes out in ascending order, so resuming after the one
    // handed out brings the other two once each, then the cancellation.
    let mut got = vec![one];
    for _ in 0..3 {
        got.push(next_item(&mut stream).await);
    }
    let kinds: Vec<(&str, String)> = got
        .iter()
        .map(|e| match &e.payload {
            AgentPayload::Requested(r) | AgentPayload::Resolved(r) => (e.kind(), r.id.to_string()),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("elicitation.requested", ids[0].clone()),
            ("elicitation.requested", ids[1].clone()),
            ("elicitation.requested", ids[2].clone()),
            ("elicitation.resolved", ids[0].clone()),
        ]
    );
}
