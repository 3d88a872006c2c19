//! Property: whatever the interleaving of responses, cancellations and expiry,
//! an elicitation ends with exactly one terminal event, every loser is told
//! `already_resolved` or `expired`, and the record matches the event.

mod common;

use std::sync::OnceLock;
use std::time::Duration;

use common::*;
use lighthouse_elicitation::{
    CancelRequest, ElicitationService, Error, Limits, RespondRequest, Status,
};
use lighthouse_event_store::{EventStore, ManualClock};
use proptest::prelude::*;
use serde_json::json;

#[derive(Debug, Clone, Copy)]
enum Op {
    Accept,
    AcceptBad,
    Decline,
    Cancel,
    Expire,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        Just(Op::Accept),
        Just(Op::AcceptBad),
        Just(Op::Decline),
        Just(Op::Cancel),
        Just(Op::Expire)
    ]
}

struct World {
    rt: tokio::runtime::Runtime,
    svc: ElicitationService,
    store: EventStore,
    clock: ManualClock,
}

fn world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let clock = manual_clock();
        let (svc, store) = rt.block_on(async {
            // A `static` is never dropped, so a temporary store would be
            // left in the system's temp directory by every run: this one
            // lives in cargo's directory for test data, replaced each run.
            let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("races-store");
            let _ = std::fs::remove_dir_all(&dir);
            let store = EventStore::open(
                &dir,
                lighthouse_event_store::StoreOptions::new(KEY)
                    .durability(lighthouse_event_store::Durability::Buffered)
                    .clock(std::sync::Arc::new(clock.clone())),
            )
            .unwrap();
            let limits = Limits {
                timer_max_sleep_ms: 3_600_000,
                ..Limits::default()
            };
            let svc = ElicitationService::open(store.clone(), options(&clock, limits))
                .await
                .unwrap();
            (svc, store)
        });
        World {
            rt,
            svc,
            store,
            clock,
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn exactly_one_terminal_event(ops in prop::collection::vec((op(), 0u8..4), 2..7)) {
        let w = world();
        w.rt.block_on(async {
            let r = w.svc.create(&alice(), "c", ask("bob").timeout_ms(1000), None).await.unwrap().record;
            let mut tasks = Vec::new();
            for (op, yields) in ops.clone() {
                let svc = w.svc.clone();
                let clock = w.clock.clone();
                let id = r.id.to_string();
                tasks.push(tokio::spawn(async move {
                    for _ in 0..yields {
                        tokio::task::yield_now().await;
                    }
                    let res = match op {
                        Op::Accept => svc.respond(&bob(), "a", &id, RespondRequest::accept(json!({"port": 8080}))).await,
                        Op::AcceptBad => svc.respond(&bob(), "a", &id, RespondRequest::accept(json!({"port": 0}))).await,
                        Op::Decline => svc.respond(&bob(), "d", &id, RespondRequest::decline(None)).await,
                        Op::Cancel => svc.cancel(&alice(), "x", &id, CancelRequest::default()).await,
                        Op::Expire => {
                            clock.advance_millis(1000);
                            svc.tick();
                            return (op, None);
                        }
                    };
                    (op, Some(res))
                }));
            }
            let mut winners = Vec::new();
            for t in tasks {
                let (op, res) = t.await.unwrap();
                match res {
                    None => {}
                    Some(Ok(rec)) => winners.push((op, rec.status)),
                    Some(Err(Error::AlreadyResolved { .. } | Error::Expired { .. })) => {}
                    Some(Err(Error::SchemaMismatch { .. })) => assert!(matches!(op, Op::AcceptBad)),
                    Some(Err(e)) => panic!("{op:?}: unexpected {e:?}"),
                }
            }
            // Make sure it ends: let the deadline pass.
            w.clock.advance_millis(1000);
            w.svc.tick();
            let end = w.svc.wait_terminal(&alice(), &r.id, Duration::from_secs(10)).await.unwrap();
            assert!(end.status.is_terminal());
            let types = stream_types(&w.store, &r.id);
            let terminal: Vec<_> = types.iter().filter(|t| *t != "elicitation.requested").collect();
            assert_eq!(terminal.len(), 1, "{types:?} for {ops:?}");
            assert_eq!(terminal[0], &format!("elicitation.{}", end.status), "{ops:?}");
            // At most one caller succeeded, and it is the one whose action won.
            assert!(winners.len() <= 1, "{winners:?}");
            match end.status {
                Status::Expired => assert!(winners.is_empty(), "{winners:?}"),
                s => assert_eq!(winners.iter().map(|w| w.1).collect::<Vec<_>>(), vec![s], "{ops:?}"),
            }
        });
    }
}

/// The loser of a race whose winner's record was already evicted from memory
/// (`max_retained_resolved: 0`) by the time the loser got the elicitation's
/// lock is still told `already_resolved` (PROTOCOL.md 4: the losing side gets
/// a 409), not `not_found`: it read the record back from the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loser_is_told_409_even_when_the_winner_was_evicted() {
    let clock = manual_clock();
    let (svc, _dir) = open_limited(
        &clock,
        Limits {
            max_retained_resolved: 0,
            ..Limits::default()
        },
    )
    .await;
    for round in 0..60 {
        let id = svc
            .create(&alice(), "c", ask("bob"), None)
            .await
            .unwrap()
            .record
            .id
            .to_string();
        let accept = {
            let (svc, id) = (svc.clone(), id.clone());
            tokio::spawn(async move {
                svc.respond(
                    &bob(),
                    "r",
                    &id,
                    RespondRequest::accept(json!({"port": 8080})),
                )
                .await
            })
        };
        let cancel = {
            let (svc, id) = (svc.clone(), id.clone());
            tokio::spawn(async move {
                svc.cancel(&alice(), "c", &id, CancelRequest::default())
                    .await
            })
        };
        let results = [accept.await.unwrap(), cancel.await.unwrap()];
        let won = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(won, 1, "round {round}: {results:?}");
        for r in &results {
            if let Err(e) = r {
                assert!(
                    matches!(e, Error::AlreadyResolved { .. }),
                    "round {round}: the loser got {e:?}"
                );
            }
        }
    }
    svc.abort().await;
}
