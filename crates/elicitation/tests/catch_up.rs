//! How subscriptions catch up: the initial list of pending elicitations in
//! pages, read-back from the log within a budget of records looked at, and
//! positions the store never reached refused.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::*;
use lighthouse_elicitation::{
    AgentSubscription, CancelRequest, ElicitationService, Error, Limits, NotificationKind, Payload,
    RespondRequest, SendMessage, Status,
};
use lighthouse_event_store::{Durability, EventStore, ManualClock, NewEvent, StoreOptions};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(10);

/// What a notification is, for comparing deliveries.
type Seen = (u64, NotificationKind, Option<Status>, String);

async fn next(sub: &mut AgentSubscription) -> Seen {
    let n = tokio::time::timeout(WAIT, sub.next())
        .await
        .expect("a notification")
        .unwrap();
    let (status, what) = match &n.payload {
        Payload::Elicitation(r) => (Some(r.status), r.id.to_string()),
        Payload::Message(m) => (None, m.body.to_string()),
    };
    (n.seq, n.kind, status, what)
}

/// Everything up to `head`.
async fn drain(sub: &mut AgentSubscription, head: u64) -> Vec<Seen> {
    let mut out = Vec::new();
    while sub.position() < head {
        out.push(next(sub).await);
    }
    out
}

/// A service on a temporary store the test can also write to.
async fn open(clock: &ManualClock, limits: Limits) -> (ElicitationService, EventStore) {
    let store = EventStore::open_temporary(
        StoreOptions::new(KEY)
            .durability(Durability::Buffered)
            .clock(Arc::new(clock.clone())),
    )
    .unwrap();
    let svc = ElicitationService::open(store.clone(), options(clock, limits))
        .await
        .unwrap();
    (svc, store)
}

/// `n` events of another application, none of them for anyone's stream.
async fn foreign(store: &EventStore, n: usize) {
    let mut left = n;
    while left > 0 {
        let k = left.min(500);
        let batch = (0..k)
            .map(|i| NewEvent::new("orders-7", "order.placed", json!({"i": i})))
            .collect();
        store.append(batch).await.unwrap();
        left -= k;
    }
}

async fn create(svc: &ElicitationService, from: &lighthouse_security::Caller, to: &str) -> String {
    svc.create(from, "r", ask(to), None)
        .await
        .unwrap()
        .record
        .id
        .to_string()
}

/// One of five things, by `step`: something for bob or not, read back from
/// the log by its elicitation events or its mailbox.
async fn act(svc: &ElicitationService, step: usize, open_for_bob: &mut Vec<String>) {
    match step % 5 {
        0 => open_for_bob.push(create(svc, &alice(), "bob").await),
        1 => {
            svc.send_message(
                &alice(),
                "m",
                SendMessage {
                    to: "bob".into(),
                    body: json!(step),
                },
            )
            .await
            .unwrap();
        }
        2 => {
            // Neither from nor to bob.
            let id = create(svc, &carol(), "alice").await;
            svc.cancel(&carol(), "r", &id, CancelRequest::default())
                .await
                .unwrap();
        }
        3 => {
            if let Some(id) = open_for_bob.pop() {
                svc.respond(&bob(), "r", &id, RespondRequest::decline(None))
                    .await
                    .unwrap();
            }
        }
        _ => {
            // From bob: its `requested` is not his, its resolution is.
            let id = create(svc, &bob(), "carol").await;
            svc.cancel(&bob(), "r", &id, CancelRequest::default())
                .await
                .unwrap();
        }
    }
}

#[tokio::test]
async fn read_back_over_many_foreign_events_keeps_to_its_budget_and_misses_nothing() {
    const BUDGET: usize = 64;
    // Runs of foreign events before each action: none, around the budget,
    // and far beyond it.
    let layouts: [&[usize]; 3] = [
        &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        &[1, 63, 64, 65, 127, 128, 129, 0, 2, 300],
        &[2_000, 0, 700, 5, 0, 1_000, 64, 0, 0, 3],
    ];
    for layout in layouts {
        let clock = manual_clock();
        let (svc, store) = open(
            &clock,
            Limits {
                catch_up_examined: BUDGET,
                // Evicted at once: read-back goes to the log.
                max_retained_resolved: 1,
                ..Limits::default()
            },
        )
        .await;
        let mut live = svc.subscribe(&bob(), Some(0)).unwrap();
        let mut open_for_bob = Vec::new();
        for (step, run) in layout.iter().enumerate() {
            foreign(&store, *run).await;
            act(&svc, step, &mut open_for_bob).await;
        }
        // Two resolutions more move the eviction past everything before them;
        // a message for bob is the last event, so every stream reaches it.
        for _ in 0..2 {
            act(&svc, 2, &mut open_for_bob).await;
        }
        act(&svc, 1, &mut open_for_bob).await;
        let head = store.head_seq();
        let all = drain(&mut live, head).await;
        assert_eq!(live.most_examined(), 0, "all of it came live");
        assert!(all.len() >= 8, "{layout:?}: {all:?}");
        assert!(all.windows(2).all(|w| w[0].0 < w[1].0), "{all:?}");
        // From every position, exactly the rest, within the budget.
        let starts = std::iter::once(0).chain(all.iter().map(|n| n.0));
        for (i, after) in starts.enumerate() {
            let mut sub = svc.subscribe(&bob(), Some(after)).unwrap();
            let rest = drain(&mut sub, head).await;
            assert_eq!(rest, all[i..], "{layout:?}, resumed after {after}");
            assert!(sub.most_examined() <= BUDGET, "{}", sub.most_examined());
        }
        if layout[0] > BUDGET {
            let mut sub = svc.subscribe(&bob(), Some(0)).unwrap();
            drain(&mut sub, head).await;
            assert_eq!(sub.most_examined(), BUDGET, "the budget ended reads");
        }
        svc.abort().await;
    }
}

#[tokio::test]
async fn reading_back_over_foreign_events_lets_other_tasks_run() {
    // A single-threaded runtime: another task runs only when this one yields.
    let clock = manual_clock();
    let (svc, store) = open(
        &clock,
        Limits {
            catch_up_examined: 64,
            max_retained_resolved: 1,
            ..Limits::default()
        },
    )
    .await;
    foreign(&store, 3_000).await;
    let mut open_for_bob = Vec::new();
    act(&svc, 1, &mut open_for_bob).await;
    for _ in 0..2 {
        act(&svc, 2, &mut open_for_bob).await;
    }
    let mut sub = svc.subscribe(&bob(), Some(0)).unwrap();
    let ran = Arc::new(AtomicU64::new(0));
    let other = {
        let ran = ran.clone();
        tokio::spawn(async move {
            loop {
                ran.fetch_add(1, Ordering::Relaxed);
                tokio::task::yield_now().await;
            }
        })
    };
    let (_, kind, _, _) = next(&mut sub).await;
    assert_eq!(kind, NotificationKind::MessageReceived);
    // About 3,000 / 64 stretches with nothing for bob came before it, each
    // followed by a yield.
    assert!(ran.load(Ordering::Relaxed) >= 20, "{ran:?}");
    other.abort();
    svc.abort().await;
}

#[tokio::test]
async fn the_pending_list_is_handed_out_in_pages_in_order_once() {
    let clock = manual_clock();
    let (svc, _store) = open(&clock, Limits::default()).await;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let svc = svc.clone();
        tasks.spawn(async move {
            let mut ids = Vec::new();
            for _ in 0..125 {
                ids.push(create(&svc, &alice(), "bob").await);
            }
            ids
        });
    }
    let mut created = HashSet::new();
    while let Some(ids) = tasks.join_next().await {
        created.extend(ids.unwrap());
    }
    assert_eq!(created.len(), 1_000);
    let mut sub = svc.subscribe(&bob(), None).unwrap();
    // Nothing copied when subscribing: the list is read a page at a time.
    assert_eq!(sub.read_back_held(), 0);
    let mut got = Vec::new();
    for _ in 0..1_000 {
        got.push(next(&mut sub).await);
        assert!(sub.read_back_held() < 256, "{}", sub.read_back_held());
    }
    assert!(got.windows(2).all(|w| w[0].0 < w[1].0), "in order");
    assert!(
        got.iter()
            .all(|n| n.1 == NotificationKind::ElicitationRequested && n.2 == Some(Status::Pending))
    );
    let ids: HashSet<String> = got.into_iter().map(|n| n.3).collect();
    assert_eq!(ids, created, "each once");
    // Then live.
    let later = create(&svc, &carol(), "bob").await;
    assert_eq!(next(&mut sub).await.3, later);
    svc.abort().await;
}

#[tokio::test]
async fn the_pending_list_survives_evictions_after_its_boundary() {
    let clock = manual_clock();
    let (svc, _store) = open(
        &clock,
        Limits {
            max_retained_resolved: 1,
            catch_up_examined: 64,
            ..Limits::default()
        },
    )
    .await;
    let mut ids = Vec::new();
    for _ in 0..300 {
        ids.push(create(&svc, &alice(), "bob").await);
    }
    let decline = |id: String| {
        let svc = svc.clone();
        async move {
            svc.respond(&bob(), "r", &id, RespondRequest::decline(None))
                .await
                .unwrap();
        }
    };
    // Resolved before the subscription: not on its list.
    decline(ids[5].clone()).await;
    let mut sub = svc.subscribe(&bob(), None).unwrap();
    // Pending at the boundary, resolved since, and pushed out of memory by
    // newer resolutions before the list gets to them.
    decline(ids[100].clone()).await;
    decline(ids[290].clone()).await;
    let mut none = Vec::new();
    for _ in 0..2 {
        act(&svc, 2, &mut none).await;
    }
    let mut got = Vec::new();
    for _ in 0..299 {
        got.push(next(&mut sub).await);
    }
    assert!(sub.most_examined() > 0, "the list was read from the log");
    assert!(got.windows(2).all(|w| w[0].0 < w[1].0), "in order");
    assert!(
        got.iter()
            .all(|n| n.1 == NotificationKind::ElicitationRequested && n.2 == Some(Status::Pending))
    );
    let expected: Vec<&String> = ids
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 5)
        .map(|(_, id)| id)
        .collect();
    assert_eq!(got.iter().map(|n| &n.3).collect::<Vec<_>>(), expected);
    // Then their resolutions, live.
    for id in [&ids[100], &ids[290]] {
        let n = next(&mut sub).await;
        assert_eq!(
            (n.1, n.2, &n.3),
            (
                NotificationKind::ElicitationResolved,
                Some(Status::Declined),
                id
            )
        );
    }
    svc.abort().await;
}

#[tokio::test]
async fn a_position_beyond_the_head_is_refused() {
    let clock = manual_clock();
    let (svc, store) = open(&clock, Limits::default()).await;
    foreign(&store, 3).await;
    create(&svc, &alice(), "bob").await;
    let head = store.head_seq();
    match svc.subscribe(&bob(), Some(head + 1)) {
        Err(Error::InvalidRequest { errors }) => {
            assert_eq!(errors.len(), 1);
            assert_eq!(errors[0].path, "/after");
        }
        other => panic!("{other:?}"),
    }
    // Nothing was registered for it.
    assert_eq!(svc.subscription_count(), 0);
    let mut at_head = svc.subscribe(&bob(), Some(head)).unwrap();
    assert_eq!(at_head.position(), head);
    let later = create(&svc, &alice(), "bob").await;
    assert_eq!(next(&mut at_head).await.3, later);
    svc.abort().await;
}
