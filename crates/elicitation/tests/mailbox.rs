//! The messages mailbox: send, receive after a position, long-poll.

mod common;

use std::time::Duration;

use common::*;
use lighthouse_elicitation::{Error, Limits, ReceiveQuery, SendMessage};
use lighthouse_security::Role;
use serde_json::json;

fn to(agent: &str, body: serde_json::Value) -> SendMessage {
    SendMessage {
        to: agent.into(),
        body,
    }
}

#[tokio::test]
async fn send_and_receive_in_order_with_next_after() {
    let clock = manual_clock();
    let (svc, store) = open_temp(&clock).await;
    let a = svc
        .send_message(&alice(), "m1", to("bob", json!({"n": 1})))
        .await
        .unwrap();
    let _c = svc
        .send_message(&alice(), "m2", to("carol", json!("not for bob")))
        .await
        .unwrap();
    let b = svc
        .send_message(&carol(), "m3", to("bob", json!([2])))
        .await
        .unwrap();
    assert!(a.id.starts_with("msg_") && a.seq < b.seq);
    let ev = store.get(a.seq).unwrap().unwrap();
    assert_eq!(
        (
            ev.stream.as_str(),
            ev.event_type.as_str(),
            ev.correlation_id.as_deref()
        ),
        ("mailbox-bob", "message.sent", Some("m1"))
    );

    let page = svc
        .receive_messages(&bob(), ReceiveQuery::default())
        .await
        .unwrap();
    let v = serde_json::to_value(&page).unwrap();
    assert_eq!(v["next_after"], b.seq);
    assert_eq!(v["messages"][0]["from"], "alice");
    assert_eq!(v["messages"][0]["to"], "bob");
    assert_eq!(v["messages"][0]["body"], json!({"n": 1}));
    assert_eq!(v["messages"][0]["id"], &*a.id);
    assert_eq!(v["messages"][0]["seq"], a.seq);
    assert_eq!(v["messages"][0]["created_at"], "2026-11-26T07:00:00.000Z");
    assert_eq!(v["messages"][1]["body"], json!([2]));
    assert_eq!(page.messages.len(), 2);
    // After a position, with a limit.
    let page = svc
        .receive_messages(
            &bob(),
            ReceiveQuery {
                after: 0,
                wait_ms: 0,
                limit: Some(1),
            },
        )
        .await
        .unwrap();
    assert_eq!((page.messages.len(), page.next_after), (1, a.seq));
    let page = svc
        .receive_messages(
            &bob(),
            ReceiveQuery {
                after: a.seq,
                wait_ms: 0,
                limit: Some(1),
            },
        )
        .await
        .unwrap();
    assert_eq!((page.messages[0].seq, page.next_after), (b.seq, b.seq));
    // Nothing new: next_after is the `after` given.
    let page = svc
        .receive_messages(
            &bob(),
            ReceiveQuery {
                after: b.seq,
                wait_ms: 0,
                limit: None,
            },
        )
        .await
        .unwrap();
    assert_eq!((page.messages.len(), page.next_after), (0, b.seq));
    let page = svc
        .receive_messages(&alice(), ReceiveQuery::default())
        .await
        .unwrap();
    assert_eq!((page.messages.len(), page.next_after), (0, 0));
}

#[tokio::test]
async fn long_poll_wakes_on_a_message_or_times_out() {
    let clock = manual_clock();
    let (svc, _store) = open_temp(&clock).await;
    let t = tokio::time::Instant::now();
    let page = svc
        .receive_messages(
            &bob(),
            ReceiveQuery {
                after: 0,
                wait_ms: 40,
                limit: None,
            },
        )
        .await
        .unwrap();
    assert!(page.messages.is_empty() && t.elapsed() >= Duration::from_millis(40));
    let poll = {
        let svc = svc.clone();
        tokio::spawn(async move {
            svc.receive_messages(
                &bob(),
                ReceiveQuery {
                    after: 0,
                    wait_ms: 60_000,
                    limit: None,
                },
            )
            .await
        })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(svc.memory_counts().mail_waiters, 1);
    let sent = svc
        .send_message(&alice(), "m", to("bob", json!("wake")))
        .await
        .unwrap();
    let page = tokio::time::timeout(Duration::from_secs(10), poll)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!((page.messages.len(), page.next_after), (1, sent.seq));
    assert_eq!(svc.memory_counts().mail_waiters, 0, "waiters are removed");
}

#[tokio::test]
async fn limits_and_roles() {
    let clock = manual_clock();
    let (svc, _dir) = open_limited(
        &clock,
        Limits {
            max_message_waiters: 1,
            ..Limits::default()
        },
    )
    .await;
    let big = json!("x".repeat(64 << 10));
    match svc.send_message(&alice(), "m", to("bob", big)).await {
        Err(Error::InvalidRequest { errors }) => assert_eq!(errors[0].path, "/body"),
        other => panic!("{other:?}"),
    }
    assert!(
        svc.send_message(&alice(), "m", to("bob", json!("x".repeat((64 << 10) - 2))))
            .await
            .is_ok()
    );
    assert!(matches!(
        svc.send_message(&alice(), "m", to("Bob", json!(1))).await,
        Err(Error::InvalidRequest { .. })
    ));
    assert!(matches!(
        svc.send_message(&caller("o", Role::Observer), "m", to("bob", json!(1)))
            .await,
        Err(Error::Forbidden { .. })
    ));
    assert!(matches!(
        svc.receive_messages(
            &bob(),
            ReceiveQuery {
                after: 0,
                wait_ms: 60_001,
                limit: None
            }
        )
        .await,
        Err(Error::InvalidRequest { .. })
    ));
    assert!(matches!(
        svc.receive_messages(
            &bob(),
            ReceiveQuery {
                after: 0,
                wait_ms: 0,
                limit: Some(0)
            }
        )
        .await,
        Err(Error::InvalidRequest { .. })
    ));
    // Waiters are bounded (by agent).
    let w = {
        let svc = svc.clone();
        tokio::spawn(async move {
            svc.receive_messages(
                &carol(),
                ReceiveQuery {
                    after: 0,
                    wait_ms: 2_000,
                    limit: None,
                },
            )
            .await
        })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(matches!(
        svc.receive_messages(
            &alice(),
            ReceiveQuery {
                after: 0,
                wait_ms: 1_000,
                limit: None
            }
        )
        .await,
        Err(Error::Capacity { .. })
    ));
    w.abort();
    let _ = w.await;
    assert_eq!(svc.memory_counts().mail_waiters, 0);
    svc.abort().await;
}

#[tokio::test]
async fn a_page_of_messages_is_bounded_in_bytes() {
    let clock = manual_clock();
    let (svc, _dir) = open_limited(
        &clock,
        Limits {
            max_list_page_bytes: 2_000,
            ..Limits::default()
        },
    )
    .await;
    let mut sent = Vec::new();
    for i in 0..6 {
        let body = json!({"i": i, "text": "x".repeat(700)});
        sent.push(
            svc.send_message(&alice(), "m", to("bob", body))
                .await
                .unwrap()
                .seq,
        );
    }
    // A page ends with the message that reaches 2,000 stored bytes; following
    // `next_after` brings the rest, each once.
    let (mut got, mut after) = (Vec::new(), 0);
    loop {
        let page = svc
            .receive_messages(
                &bob(),
                ReceiveQuery {
                    after,
                    wait_ms: 0,
                    limit: Some(1000),
                },
            )
            .await
            .unwrap();
        if page.messages.is_empty() {
            break;
        }
        assert!(page.messages.len() <= 3, "{}", page.messages.len());
        got.extend(page.messages.iter().map(|m| m.seq));
        after = page.next_after;
    }
    assert_eq!(got, sent);
}

/// A position beyond the store's last event cannot have come from this
/// store (one restored from an older backup): it is refused at `/after`, as
/// on the agent stream, instead of silently skipping every message up to it.
#[tokio::test]
async fn a_position_beyond_the_head_is_refused() {
    let clock = manual_clock();
    let (svc, store) = open_temp(&clock).await;
    svc.send_message(&alice(), "m1", to("bob", json!(1)))
        .await
        .unwrap();
    let head = store.head_seq();
    let beyond = ReceiveQuery {
        after: head + 1,
        wait_ms: 1_000,
        limit: None,
    };
    match svc.receive_messages(&bob(), beyond).await {
        Err(Error::InvalidRequest { errors }) => assert_eq!(errors[0].path, "/after"),
        other => panic!("{other:?}"),
    }
    let at_head = ReceiveQuery {
        after: head,
        wait_ms: 0,
        limit: None,
    };
    let page = svc.receive_messages(&bob(), at_head).await.unwrap();
    assert!(page.messages.is_empty());
}

/// A `message.sent` the service cannot read (written by something other than
/// the bridge) is skipped, and the mailbox moves past it: failing the read
/// stopped the mailbox there for good.
#[tokio::test]
async fn an_unreadable_message_is_skipped_not_a_dead_end() {
    let clock = manual_clock();
    let (svc, store) = open_temp(&clock).await;
    let start = store.head_seq();
    let bad = store
        .append_one(lighthouse_event_store::NewEvent::new(
            "mailbox-bob",
            "message.sent",
            json!({"not": "a message"}),
        ))
        .await
        .unwrap();
    // A read over only the bad one moves past it.
    let page = svc
        .receive_messages(
            &bob(),
            ReceiveQuery {
                after: start,
                wait_ms: 0,
                limit: None,
            },
        )
        .await
        .unwrap();
    assert!(page.messages.is_empty());
    assert_eq!(page.next_after, bad.seq);
    // A long-poll from before it is not ended by it (a page of nothing must
    // not end a long-poll): it waits, and the next message ends it.
    let polling = {
        let svc = svc.clone();
        tokio::spawn(async move {
            svc.receive_messages(
                &bob(),
                ReceiveQuery {
                    after: start,
                    wait_ms: 60_000,
                    limit: None,
                },
            )
            .await
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!polling.is_finished(), "the long-poll ended on nothing");
    let good = svc
        .send_message(&alice(), "m2", to("bob", json!("after it")))
        .await
        .unwrap();
    let page = polling.await.unwrap().unwrap();
    assert_eq!(page.messages.len(), 1);
    assert_eq!(page.messages[0].seq, good.seq);
    let page = svc
        .receive_messages(
            &bob(),
            ReceiveQuery {
                after: start,
                wait_ms: 0,
                limit: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(page.messages.len(), 1);
    assert_eq!(page.messages[0].seq, good.seq);
    assert_eq!(page.next_after, good.seq);
}
