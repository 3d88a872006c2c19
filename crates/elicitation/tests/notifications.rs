//! Agent subscriptions (live, resumed, bounded), per-elicitation waiters, and hooks.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::*;
use lighthouse_elicitation::{
    CancelRequest, Elicitation, ElicitationService, Error, Hooks, Limits, Message,
    NotificationKind, Payload, RespondRequest, SendMessage, Status,
};
use lighthouse_event_store::ManualClock;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(10);

async fn next(
    sub: &mut lighthouse_elicitation::AgentSubscription,
) -> lighthouse_elicitation::Notification {
    tokio::time::timeout(WAIT, sub.next())
        .await
        .expect("a notification")
        .unwrap()
}

fn status_of(n: &lighthouse_elicitation::Notification) -> Option<Status> {
    match &n.payload {
        Payload::Elicitation(r) => Some(r.status),
        Payload::Message(_) => None,
    }
}

#[tokio::test]
async fn both_sides_are_notified_live() {
    let clock = manual_clock();
    let (svc, _store) = open_temp(&clock).await;
    let mut bob_sub = svc.subscribe(&bob(), None).unwrap();
    let mut alice_sub = svc.subscribe(&alice(), None).unwrap();
    let r = svc
        .create(&alice(), "r", ask("bob"), None)
        .await
        .unwrap()
        .record;
    let n = next(&mut bob_sub).await;
    assert_eq!(
        (n.kind, status_of(&n)),
        (
            NotificationKind::ElicitationRequested,
            Some(Status::Pending)
        )
    );
    assert!(n.durable_at().is_some());
    let v: serde_json::Value = serde_json::to_value(&n.payload).unwrap();
    assert_eq!(v["id"], &*r.id);
    svc.respond(
        &bob(),
        "r",
        &r.id,
        RespondRequest::accept(json!({"port": 9})),
    )
    .await
    .unwrap();
    for sub in [&mut alice_sub, &mut bob_sub] {
        let n = next(sub).await;
        assert_eq!(
            (n.kind, status_of(&n)),
            (
                NotificationKind::ElicitationResolved,
                Some(Status::Accepted)
            )
        );
    }
    svc.send_message(
        &alice(),
        "m",
        SendMessage {
            to: "bob".into(),
            body: json!("hi"),
        },
    )
    .await
    .unwrap();
    let n = next(&mut bob_sub).await;
    assert_eq!(n.kind, NotificationKind::MessageReceived);
    assert_eq!(serde_json::to_value(&n.payload).unwrap()["body"], "hi");
}

#[tokio::test]
async fn without_a_position_pending_ones_come_first() {
    let clock = manual_clock();
    let (svc, _store) = open_temp(&clock).await;
    let a = svc
        .create(&alice(), "r", ask("bob"), None)
        .await
        .unwrap()
        .record;
    let b = svc
        .create(&carol(), "r", ask("bob"), None)
        .await
        .unwrap()
        .record;
    let c = svc
        .create(&alice(), "r", ask("bob"), None)
        .await
        .unwrap()
        .record;
    svc.cancel(&carol(), "r", &b.id, CancelRequest::default())
        .await
        .unwrap();
    let mut sub = svc.subscribe(&bob(), None).unwrap();
    let first = next(&mut sub).await;
    let second = next(&mut sub).await;
    let ids: Vec<_> = [&first, &second]
        .iter()
        .map(|n| match &n.payload {
            Payload::Elicitation(r) => r.id.to_string(),
            Payload::Message(_) => unreachable!(),
        })
        .collect();
    assert_eq!(ids, vec![a.id.to_string(), c.id.to_string()]);
    assert!(first.seq < second.seq);
    // Then live.
    svc.cancel(&alice(), "r", &a.id, CancelRequest::default())
        .await
        .unwrap();
    let n = next(&mut sub).await;
    assert_eq!(
        (n.kind, status_of(&n)),
        (
            NotificationKind::ElicitationResolved,
            Some(Status::Cancelled)
        )
    );
}

#[tokio::test]
async fn a_partly_handed_out_pending_list_resumes_from_its_last_item() {
    let clock = manual_clock();
    let (svc, _store) = open_temp(&clock).await;
    for _ in 0..3 {
        svc.create(&alice(), "r", ask("bob"), None).await.unwrap();
    }
    let mut sub = svc.subscribe(&bob(), None).unwrap();
    // Nothing handed out yet: a new subscription must start the list over.
    assert_eq!(sub.resume_position(), None);
    let first = next(&mut sub).await;
    assert_eq!(sub.resume_position(), Some(first.seq));
    assert!(sub.position() > first.seq, "the head, past the list");
    // Resuming from there brings the rest of the list back.
    let mut resumed = svc.subscribe(&bob(), sub.resume_position()).unwrap();
    let rest: Vec<_> = [next(&mut resumed).await, next(&mut resumed).await]
        .iter()
        .map(|n| n.seq)
        .collect();
    let second = next(&mut sub).await;
    let third = next(&mut sub).await;
    assert_eq!(rest, vec![second.seq, third.seq]);
    assert_eq!(sub.resume_position(), Some(sub.position()));
}

/// Runs a mixed workload; returns every notification bob received from 0, live.
async fn workload(svc: &ElicitationService, clock: &ManualClock) {
    let mut ids = Vec::new();
    for i in 0..12 {
        let from = if i % 2 == 0 { alice() } else { carol() };
        let to = if i % 3 == 0 { "carol" } else { "bob" };
        let r = svc
            .create(&from, "w", ask(to).timeout_ms(1000 + i), None)
            .await
            .unwrap()
            .record;
        ids.push((from, to, r.id.to_string()));
        if i % 4 == 1 {
            svc.send_message(
                &alice(),
                "w",
                SendMessage {
                    to: "bob".into(),
                    body: json!(i),
                },
            )
            .await
            .unwrap();
        }
    }
    for (i, (from, to, id)) in ids.iter().enumerate() {
        match i % 4 {
            0 => {
                svc.respond(
                    &caller(to, lighthouse_security::Role::Agent),
                    "w",
                    id,
                    RespondRequest::accept(json!({"port": 1})),
                )
                .await
                .unwrap();
            }
            1 => {
                svc.cancel(from, "w", id, CancelRequest::default())
                    .await
                    .unwrap();
            }
            2 => {
                svc.respond(
                    &caller(to, lighthouse_security::Role::Agent),
                    "w",
                    id,
                    RespondRequest::decline(None),
                )
                .await
                .unwrap();
            }
            _ => {}
        }
    }
    clock.advance_millis(5_000);
    svc.tick();
    for (from, _, id) in &ids {
        svc.wait_terminal(from, id, WAIT).await.unwrap();
    }
    svc.send_message(
        &carol(),
        "w",
        SendMessage {
            to: "bob".into(),
            body: json!("last"),
        },
    )
    .await
    .unwrap();
    // A transition waits for the applier, so everything before it is applied too.
    let end = svc
        .create(&alice(), "w", ask("bob"), None)
        .await
        .unwrap()
        .record;
    svc.cancel(&alice(), "w", &end.id, CancelRequest::default())
        .await
        .unwrap();
}

async fn drain_all(
    sub: &mut lighthouse_elicitation::AgentSubscription,
    up_to: u64,
) -> Vec<(u64, NotificationKind, Option<Status>)> {
    let mut out = Vec::new();
    while sub.position() < up_to {
        let n = next(sub).await;
        out.push((n.seq, n.kind, status_of(&n)));
    }
    out
}

async fn resume_from_every_position(limits: Limits) {
    let clock = manual_clock();
    let dir = tempfile::tempdir().unwrap();
    let svc = open_at(dir.path(), &clock, limits).await;
    let mut live = svc.subscribe(&bob(), Some(0)).unwrap();
    workload(&svc, &clock).await;
    let head = svc.applied_seq();
    let all = drain_all(&mut live, head).await;
    // Strictly increasing positions: no duplicate.
    assert!(all.windows(2).all(|w| w[0].0 < w[1].0), "{all:?}");
    let requested = all
        .iter()
        .filter(|n| n.1 == NotificationKind::ElicitationRequested)
        .count();
    let resolved = all
        .iter()
        .filter(|n| n.1 == NotificationKind::ElicitationResolved)
        .count();
    let messages = all
        .iter()
        .filter(|n| n.1 == NotificationKind::MessageReceived)
        .count();
    assert_eq!((requested, resolved, messages), (9, 9, 4), "{all:?}");
    // Resuming after any position gives exactly the rest: no gap, no duplicate,
    // records as of their event (a replayed `requested` shows `pending`).
    for (i, (seq, _, _)) in all.iter().enumerate() {
        let mut sub = svc.subscribe(&bob(), Some(*seq)).unwrap();
        let rest = drain_all(&mut sub, head).await;
        assert_eq!(rest, all[i + 1..].to_vec(), "resumed after {seq}");
    }
    let mut sub = svc.subscribe(&bob(), Some(0)).unwrap();
    assert_eq!(drain_all(&mut sub, head).await, all);
    svc.abort().await;
}

#[tokio::test]
async fn resume_without_gap_or_duplicate_from_memory() {
    resume_from_every_position(Limits::default()).await;
}

#[tokio::test]
async fn resume_without_gap_or_duplicate_from_the_log() {
    // Keep almost nothing in memory, so catch-up has to read the log.
    resume_from_every_position(Limits {
        max_retained_resolved: 2,
        ..Limits::default()
    })
    .await;
}

/// Sends `n` messages from alice to bob, then waits until the applier has
/// published them all (a create waits for the applier, which publishes every
/// event before it first).
async fn send_to_bob(svc: &ElicitationService, n: usize) {
    for i in 0..n {
        svc.send_message(
            &alice(),
            "m",
            SendMessage {
                to: "bob".into(),
                body: json!(i),
            },
        )
        .await
        .unwrap();
    }
    svc.create(&alice(), "barrier", ask("carol"), None)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_slow_subscriber_is_cut_off_and_resumes() {
    let clock = manual_clock();
    let (svc, _dir) = open_limited(
        &clock,
        Limits {
            subscription_buffer: 4,
            ..Limits::default()
        },
    )
    .await;
    let mut slow = svc.subscribe(&bob(), Some(0)).unwrap();
    send_to_bob(&svc, 10).await;
    // The fifth found the queue full: cut off, and what it held is gone
    // already, not kept until (if ever) the consumer reads again.
    assert_eq!(slow.live_held(), (0, 0));
    let last = match tokio::time::timeout(WAIT, slow.next()).await.unwrap() {
        Err(Error::Lagged { last_seq }) => last_seq,
        other => panic!("{other:?}"),
    };
    assert_eq!(last, 0, "nothing was delivered");
    // Resuming from there reads everything back, once, in order.
    let mut again = svc.subscribe(&bob(), Some(last)).unwrap();
    let mut got = Vec::new();
    while got.len() < 10 {
        let n = next(&mut again).await;
        got.push(serde_json::to_value(&n.payload).unwrap()["body"].clone());
    }
    assert_eq!(got, (0..10).map(|i| json!(i)).collect::<Vec<_>>());
    svc.abort().await;
}

#[tokio::test]
async fn a_cut_subscription_counts_until_dropped_and_holds_nothing() {
    let clock = manual_clock();
    let (svc, _dir) = open_limited(
        &clock,
        Limits {
            subscription_buffer: 2,
            max_subscriptions_per_agent: 1,
            ..Limits::default()
        },
    )
    .await;
    // Never read, as a client that stopped reading its stream.
    let mut stalled = svc.subscribe(&bob(), None).unwrap();
    send_to_bob(&svc, 2).await;
    let (held, bytes) = stalled.live_held();
    assert_eq!(held, 2);
    assert!(bytes > 0);
    // The third does not fit: cut off, its queue freed at once.
    send_to_bob(&svc, 1).await;
    assert_eq!(stalled.live_held(), (0, 0));
    // It still counts against the limits, so a client that stops reading
    // cannot open stream after stream.
    assert_eq!(svc.subscription_count(), 1);
    assert!(matches!(
        svc.subscribe(&bob(), None),
        Err(Error::Capacity { .. })
    ));
    // Its next read says so at once.
    let lagged = tokio::time::timeout(WAIT, stalled.next()).await.unwrap();
    assert!(matches!(lagged, Err(Error::Lagged { .. })), "{lagged:?}");
    assert!(matches!(
        svc.subscribe(&bob(), None),
        Err(Error::Capacity { .. })
    ));
    drop(stalled);
    assert_eq!(svc.subscription_count(), 0);
    assert!(svc.subscribe(&bob(), None).is_ok());
    svc.abort().await;
}

#[tokio::test]
async fn the_live_queue_is_bounded_in_bytes() {
    let clock = manual_clock();
    let (svc, _dir) = open_limited(
        &clock,
        Limits {
            subscription_buffer_bytes: 256 << 10,
            ..Limits::default()
        },
    )
    .await;
    let mut stalled = svc.subscribe(&bob(), None).unwrap();
    // Arrays of zeros: about 8 KiB stored, about 128 KiB decoded each.
    let zeros = vec![0u8; 4 << 10];
    for i in 0..3 {
        svc.send_message(
            &alice(),
            "m",
            SendMessage {
                to: "bob".into(),
                body: json!({"i": i, "zeros": zeros}),
            },
        )
        .await
        .unwrap();
        svc.create(&alice(), "barrier", ask("carol"), None)
            .await
            .unwrap();
        let (held, bytes) = stalled.live_held();
        if i < 1 {
            assert_eq!(held, i + 1);
            assert!(bytes > 128 << 10, "{bytes}");
        } else {
            // Far below the count of 1,024: the bytes cut it off.
            assert_eq!((held, bytes), (0, 0), "after {i}");
        }
    }
    let lagged = tokio::time::timeout(WAIT, stalled.next()).await.unwrap();
    assert!(matches!(lagged, Err(Error::Lagged { .. })), "{lagged:?}");
    svc.abort().await;
}

#[tokio::test]
async fn subscriptions_are_bounded() {
    let clock = manual_clock();
    let (svc, _dir) = open_limited(
        &clock,
        Limits {
            max_subscriptions: 2,
            ..Limits::default()
        },
    )
    .await;
    let a = svc.subscribe(&bob(), None).unwrap();
    let _b = svc.subscribe(&alice(), None).unwrap();
    assert!(matches!(
        svc.subscribe(&carol(), None),
        Err(Error::Capacity { .. })
    ));
    drop(a);
    assert!(svc.subscribe(&carol(), None).is_ok());
    svc.abort().await;

    // One agent cannot take every slot.
    let (svc, _dir) = open_limited(
        &clock,
        Limits {
            max_subscriptions_per_agent: 2,
            ..Limits::default()
        },
    )
    .await;
    let first = svc.subscribe(&bob(), None).unwrap();
    let _second = svc.subscribe(&bob(), Some(0)).unwrap();
    assert!(matches!(
        svc.subscribe(&bob(), None),
        Err(Error::Capacity { .. })
    ));
    assert!(svc.subscribe(&alice(), None).is_ok());
    // A slot comes back when its subscription ends.
    drop(first);
    assert!(svc.subscribe(&bob(), None).is_ok());
    svc.abort().await;
}

#[tokio::test]
async fn waiters_resolve_at_the_outcome_or_the_end_of_the_wait() {
    let clock = manual_clock();
    let (svc, _store) = open_temp(&clock).await;
    let r = svc
        .create(&alice(), "r", ask("bob"), None)
        .await
        .unwrap()
        .record;
    // Times out with the elicitation still pending.
    let t = tokio::time::Instant::now();
    let p = svc.get(&alice(), &r.id, 30).await.unwrap();
    assert_eq!(p.status, Status::Pending);
    assert!(t.elapsed() >= Duration::from_millis(30));
    // Wakes when it resolves.
    let waiter = {
        let svc = svc.clone();
        let id = r.id.to_string();
        tokio::spawn(async move { svc.get(&alice(), &id, 60_000).await })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    svc.respond(
        &bob(),
        "r",
        &r.id,
        RespondRequest::decline(Some("no".into())),
    )
    .await
    .unwrap();
    let got = tokio::time::timeout(WAIT, waiter)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(got.status, Status::Declined);
    assert!(matches!(
        svc.get(&alice(), &r.id, 60_001).await,
        Err(Error::InvalidRequest { .. })
    ));
}

#[derive(Default)]
struct Counting {
    created: AtomicU64,
    resolved: AtomicU64,
    resolved_ms: AtomicU64,
    pending: AtomicU64,
    messages: AtomicU64,
    delivered: AtomicU64,
}

impl Hooks for Counting {
    fn elicitation_created(&self, _: &Elicitation) {
        self.created.fetch_add(1, Ordering::SeqCst);
    }
    fn elicitation_resolved(&self, _: &Elicitation, d: Duration) {
        self.resolved.fetch_add(1, Ordering::SeqCst);
        self.resolved_ms
            .fetch_add(d.as_millis() as u64, Ordering::SeqCst);
    }
    fn pending_changed(&self, n: usize) {
        self.pending.store(n as u64, Ordering::SeqCst);
    }
    fn message_sent(&self, _: &Message) {
        self.messages.fetch_add(1, Ordering::SeqCst);
    }
    fn notification_delivered(&self, _: NotificationKind, _: Duration) {
        self.delivered.fetch_add(1, Ordering::SeqCst);
    }
}

#[tokio::test]
async fn hooks_see_counts_latencies_and_deliveries() {
    let clock = manual_clock();
    let hooks = Arc::new(Counting::default());
    let store = lighthouse_event_store::EventStore::open_temporary(
        lighthouse_event_store::StoreOptions::new(KEY),
    )
    .unwrap();
    let svc = ElicitationService::open(
        store,
        options(&clock, Limits::default()).hooks(hooks.clone()),
    )
    .await
    .unwrap();
    let mut sub = svc.subscribe(&bob(), None).unwrap();
    let a = svc
        .create(&alice(), "r", ask("bob"), None)
        .await
        .unwrap()
        .record;
    let _b = svc
        .create(&alice(), "r", ask("bob"), None)
        .await
        .unwrap()
        .record;
    clock.advance_millis(2_500);
    svc.respond(
        &bob(),
        "r",
        &a.id,
        RespondRequest::accept(json!({"port": 2})),
    )
    .await
    .unwrap();
    svc.send_message(
        &alice(),
        "m",
        SendMessage {
            to: "bob".into(),
            body: json!(1),
        },
    )
    .await
    .unwrap();
    for _ in 0..4 {
        next(&mut sub).await;
    }
    assert_eq!(hooks.created.load(Ordering::SeqCst), 2);
    assert_eq!(hooks.resolved.load(Ordering::SeqCst), 1);
    assert_eq!(hooks.resolved_ms.load(Ordering::SeqCst), 2_500);
    assert_eq!(hooks.pending.load(Ordering::SeqCst), 1);
    assert_eq!(hooks.messages.load(Ordering::SeqCst), 1);
    assert_eq!(hooks.delivered.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn a_catch_up_step_holds_a_bounded_number_of_bytes() {
    let clock = manual_clock();
    let (svc, _store) = open_temp(&clock).await;
    // 24 messages of about 60 KiB: one step of 256 messages would hold them all.
    let big = "x".repeat(60 * 1024);
    for i in 0..24 {
        svc.send_message(
            &alice(),
            "m",
            SendMessage {
                to: "bob".into(),
                body: json!({"i": i, "text": big}),
            },
        )
        .await
        .unwrap();
    }
    let mut sub = svc.subscribe(&bob(), Some(0)).unwrap();
    let mut got = Vec::new();
    for _ in 0..24 {
        let n = next(&mut sub).await;
        // A step reads back until it holds 256 KiB of stored events: five
        // of these, one of which was just handed out.
        assert!(sub.read_back_held() <= 4, "{}", sub.read_back_held());
        got.push(serde_json::to_value(&n.payload).unwrap()["body"]["i"].clone());
    }
    // All of them, in order, once.
    assert_eq!(got, (0..24).map(|i| json!(i)).collect::<Vec<_>>());
}

/// A `message.sent` or `elicitation.requested` the service cannot read
/// (written straight to the store by an embedder) is skipped by a resumed
/// subscription's catch-up, as the live applier and the mailbox skip it: the
/// catch-up failed at it, and every resume from before it failed forever.
#[tokio::test]
async fn catch_up_skips_an_unreadable_event_as_live_delivery_does() {
    let clock = manual_clock();
    let (svc, store) = open_temp(&clock).await;
    let start = store.head_seq();
    for (stream, kind) in [
        ("mailbox-bob", "message.sent"),
        (
            "elicitation-el_01JDX3ZZZZZZZZZZZZZZZZZZZZ",
            "elicitation.requested",
        ),
    ] {
        store
            .append_one(lighthouse_event_store::NewEvent::new(
                stream,
                kind,
                json!({"not": "readable"}),
            ))
            .await
            .unwrap();
    }
    let sent = svc
        .send_message(
            &alice(),
            "m",
            SendMessage {
                to: "bob".into(),
                body: json!("hello"),
            },
        )
        .await
        .unwrap();
    let r = svc.create(&alice(), "c", ask("bob"), None).await.unwrap();
    // From before the unreadable ones: the catch-up reads the log.
    let mut sub = svc.subscribe(&bob(), Some(start)).unwrap();
    let first = next(&mut sub).await;
    assert_eq!(first.seq, sent.seq);
    assert_eq!(first.kind, NotificationKind::MessageReceived);
    let second = next(&mut sub).await;
    assert_eq!(second.kind, NotificationKind::ElicitationRequested);
    match &second.payload {
        Payload::Elicitation(e) => assert_eq!(e.id, r.record.id),
        other => panic!("{other:?}"),
    }
    svc.abort().await;
}

/// A resume whose catch-up overlaps live writes: messages keep arriving while
/// the subscription reads the log, and it delivers each exactly once, in
/// order (the catch-up-to-live hand-off under concurrent writes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_during_live_writes_has_no_gap_or_duplicate() {
    let clock = manual_clock();
    let (svc, store) = open_temp(&clock).await;
    let start = store.head_seq();
    const N: usize = 600;
    let writer = {
        let svc = svc.clone();
        tokio::spawn(async move {
            let mut seqs = Vec::with_capacity(N);
            for i in 0..N {
                let sent = svc
                    .send_message(
                        &alice(),
                        "m",
                        SendMessage {
                            to: "bob".into(),
                            body: json!(i),
                        },
                    )
                    .await
                    .unwrap();
                seqs.push(sent.seq);
                if i % 50 == 0 {
                    tokio::task::yield_now().await;
                }
            }
            seqs
        })
    };
    // Resume from the start once part of the traffic is in the log.
    while store.head_seq() < start + (N as u64) / 4 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let mut sub = svc.subscribe(&bob(), Some(start)).unwrap();
    let mut seen = Vec::with_capacity(N);
    while seen.len() < N {
        let n = next(&mut sub).await;
        assert_eq!(n.kind, NotificationKind::MessageReceived);
        seen.push(n.seq);
    }
    let sent = writer.await.unwrap();
    assert_eq!(seen, sent, "every message once, in log order");
    svc.abort().await;
}
