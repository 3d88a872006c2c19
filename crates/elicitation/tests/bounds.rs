//! Every in-memory structure that grows with traffic is bounded.

mod common;

use common::*;
use lighthouse_elicitation::{CancelRequest, Error, Limits, RespondRequest};
use serde_json::json;

#[tokio::test]
async fn pending_elicitations_are_capped() {
    let clock = manual_clock();
    let (svc, _dir) = open_limited(
        &clock,
        Limits {
            max_pending: 3,
            ..Limits::default()
        },
    )
    .await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(
            svc.create(&alice(), "c", ask("bob"), None)
                .await
                .unwrap()
                .record
                .id
                .to_string(),
        );
    }
    assert!(matches!(
        svc.create(&alice(), "c", ask("bob"), None).await,
        Err(Error::Capacity { limit: 3, .. })
    ));
    svc.cancel(&alice(), "c", &ids[0], CancelRequest::default())
        .await
        .unwrap();
    assert!(svc.create(&alice(), "c", ask("bob"), None).await.is_ok());
    svc.abort().await;
}

#[tokio::test]
async fn resolved_elicitations_held_in_memory_are_capped() {
    let clock = manual_clock();
    let (svc, _dir) = open_limited(
        &clock,
        Limits {
            max_retained_resolved: 10,
            ..Limits::default()
        },
    )
    .await;
    let mut last = String::new();
    for i in 0..60 {
        let r = svc
            .create(&alice(), "c", ask("bob"), None)
            .await
            .unwrap()
            .record;
        if i % 10 != 9 {
            svc.respond(
                &bob(),
                "r",
                &r.id,
                RespondRequest::accept(json!({"port": 1})),
            )
            .await
            .unwrap();
        }
        last = r.id.to_string();
    }
    let m = svc.memory_counts();
    // 6 still pending, plus the 10 most recently resolved.
    assert_eq!((m.pending, m.held_elicitations), (6, 16));
    // Transient structures are empty once the work is done.
    assert_eq!(
        (
            m.seq_waiters,
            m.handoff,
            m.creating,
            m.mail_waiters,
            m.subscriptions
        ),
        (0, 0, 0, 0, 0)
    );
    assert!(svc.get(&alice(), &last, 0).await.is_ok());
    svc.abort().await;
}

/// A listing filtered by a terminal status examines a bounded number of
/// records per page (it held the state lock for a walk of the whole box): a
/// page that runs out of budget ends early, even empty, with a cursor, and
/// following the cursors returns every match once.
#[tokio::test]
async fn a_listing_by_terminal_status_examines_a_bounded_number_per_page() {
    use lighthouse_elicitation::{ListQuery, Mailbox, Status};
    let clock = manual_clock();
    let (svc, _dir) = open_limited(
        &clock,
        Limits {
            list_examine_budget: 5,
            ..Limits::default()
        },
    )
    .await;
    let mut declined = Vec::new();
    for i in 0..23 {
        let id = svc
            .create(&alice(), "c", ask("bob"), None)
            .await
            .unwrap()
            .record
            .id
            .to_string();
        // Only the last two are declined: the first pages find nothing.
        if i >= 21 {
            svc.respond(&bob(), "r", &id, RespondRequest::decline(None))
                .await
                .unwrap();
            declined.push(id);
        }
    }
    let mut cursor = None;
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let p = svc
            .list(
                &bob(),
                &ListQuery {
                    mailbox: Mailbox::Inbox,
                    status: Some(Status::Declined),
                    limit: Some(10),
                    cursor: cursor.take(),
                },
            )
            .unwrap();
        pages += 1;
        assert!(p.items.len() <= 5, "examined more than the budget");
        if pages == 1 {
            assert!(p.items.is_empty() && p.next_cursor.is_some());
        }
        seen.extend(p.items.iter().map(|r| r.id.to_string()));
        match p.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
        assert!(pages < 20, "the cursors do not move on");
    }
    assert_eq!(seen, declined);
    assert_eq!(pages, 5);
    svc.abort().await;
}

/// Creates that passed the capacity check but are not applied yet count
/// against it: a burst of concurrent creates cannot overshoot the limit (it
/// did, by the number in flight: 64 of 64 went through a limit of 5).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creates_do_not_overshoot_the_pending_cap() {
    let clock = manual_clock();
    let (svc, _dir) = open_limited(
        &clock,
        Limits {
            max_pending: 5,
            ..Limits::default()
        },
    )
    .await;
    let creates: Vec<_> = (0..64)
        .map(|_| {
            let svc = svc.clone();
            tokio::spawn(async move { svc.create(&alice(), "c", ask("bob"), None).await })
        })
        .collect();
    let (mut created, mut refused) = (0, 0);
    for c in creates {
        match c.await.unwrap() {
            Ok(_) => created += 1,
            Err(Error::Capacity { limit: 5, .. }) => refused += 1,
            Err(e) => panic!("{e:?}"),
        }
    }
    assert_eq!((created, refused), (5, 59));
    assert_eq!(svc.pending_count(), 5);
    svc.abort().await;
}
