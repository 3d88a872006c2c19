//! Restarts: a rebuild from a snapshot plus the tail equals a rebuild from the
//! whole log, and every acknowledged action survives a crash at any moment.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use lighthouse_elicitation::{
    CancelRequest, ElicitationService, Limits, ListQuery, Mailbox, RespondRequest, SendMessage,
    Status,
};
use lighthouse_event_store::{Clock, ManualClock};
use lighthouse_security::Role;
use serde_json::json;

/// Creates and resolves a mix of elicitations; returns the ids created.
async fn activity(svc: &ElicitationService, clock: &ManualClock, round: u64) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..25u64 {
        let from = [alice(), carol()][(i % 2) as usize].clone();
        let to = ["bob", "carol", "alice"][(i % 3) as usize];
        let key = (i % 5 == 0).then(|| format!("k-{round}-{i}"));
        let timeout = if i % 7 == 0 { 1_000 } else { 600_000 };
        let r = svc
            .create(&from, "a", ask(to).timeout_ms(timeout), key.as_deref())
            .await
            .unwrap()
            .record;
        let target = caller(to, Role::Agent);
        match i % 6 {
            0 => drop(
                svc.respond(
                    &target,
                    "a",
                    &r.id,
                    RespondRequest::accept(json!({"port": i + 1})),
                )
                .await,
            ),
            1 => drop(
                svc.respond(
                    &target,
                    "a",
                    &r.id,
                    RespondRequest::decline(Some(format!("d{i}"))),
                )
                .await,
            ),
            2 => drop(
                svc.cancel(&from, "a", &r.id, CancelRequest { reason: None })
                    .await,
            ),
            _ => {}
        }
        if i % 4 == 0 {
            svc.send_message(
                &from,
                "m",
                SendMessage {
                    to: to.into(),
                    body: json!(i),
                },
            )
            .await
            .unwrap();
        }
        ids.push(r.id.to_string());
    }
    // Let the short ones expire.
    clock.advance_millis(2_000);
    svc.tick();
    for id in &ids {
        let r = svc
            .get(&alice(), id, 0)
            .await
            .or(svc.get(&carol(), id, 0).await)
            .unwrap();
        if r.expires_at <= clock.now() {
            let owner = if &*r.from == "alice" {
                alice()
            } else {
                carol()
            };
            svc.wait_terminal(&owner, id, Duration::from_secs(10))
                .await
                .unwrap();
        }
    }
    ids
}

async fn snapshot_plus_tail_equals_full_log(limits: Limits) {
    let clock = manual_clock();
    let dir = tempfile::tempdir().unwrap();
    let svc = open_at(dir.path(), &clock, limits.clone()).await;
    activity(&svc, &clock, 1).await;
    let snap_seq = svc.save_snapshot().await.unwrap();
    activity(&svc, &clock, 2).await;
    let live_state = svc.export_state();
    svc.abort().await;

    let store = store_at(dir.path(), &clock);
    let snap = store
        .load_snapshot(lighthouse_elicitation::DEFAULT_SNAPSHOT_NAME)
        .unwrap()
        .unwrap();
    assert!(snap.seq >= snap_seq && snap.seq <= store.head_seq());
    if limits.snapshot_every_events == 0 {
        assert!(
            snap.seq < store.head_seq(),
            "the snapshot leaves a tail to apply"
        );
    }
    let from_snapshot = ElicitationService::open(store.clone(), options(&clock, limits.clone()))
        .await
        .unwrap();
    assert_eq!(from_snapshot.started_from_snapshot(), Some(snap.seq));
    let a = from_snapshot.export_state();
    from_snapshot.abort().await;
    let full_log = ElicitationService::open(
        store.clone(),
        options(&clock, limits).snapshot_name("no-such-snapshot"),
    )
    .await
    .unwrap();
    assert_eq!(full_log.started_from_snapshot(), None);
    let b = full_log.export_state();
    assert_eq!(a, b);
    assert_eq!(
        a, live_state,
        "a restart reproduces the state the service had"
    );
    assert!(a["entries"].as_array().unwrap().len() > 10);
    full_log.abort().await;
}

#[tokio::test]
async fn restart_from_snapshot_equals_restart_from_full_log() {
    snapshot_plus_tail_equals_full_log(Limits {
        snapshot_every_events: 0,
        ..Limits::default()
    })
    .await;
}

#[tokio::test]
async fn restart_equality_holds_with_eviction_and_automatic_snapshots() {
    snapshot_plus_tail_equals_full_log(Limits {
        max_retained_resolved: 7,
        max_idempotency_keys: 3,
        snapshot_every_events: 13,
        ..Limits::default()
    })
    .await;
}

/// The service is aborted mid-workload (its tasks stop where they are; no
/// final snapshot) and opened again on the same directory. This is not a
/// kill -9: the store handle lives on in this process and closes cleanly. The
/// process-level crash tests are `bins/bridge/tests/kill9.rs` (SIGKILL of the
/// bridge under traffic) and `crates/event-store/tests/crash.rs` (SIGKILL of a
/// writer at random moments).
#[tokio::test]
async fn every_acknowledged_action_survives_a_crash() {
    let clock = manual_clock();
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits {
        snapshot_every_events: 20,
        ..Limits::default()
    };
    let svc = open_at(dir.path(), &clock, limits.clone()).await;
    // Many concurrent pairs; the crash comes while they are still running.
    let mut tasks = Vec::new();
    for p in 0..8 {
        let svc = svc.clone();
        tasks.push(tokio::spawn(async move {
            let mut acked: Vec<(String, Status)> = Vec::new();
            let requester = caller(&format!("req{p}"), Role::Agent);
            let target = caller(&format!("tgt{p}"), Role::Agent);
            for i in 0..1000u64 {
                let Ok(c) = svc.create(&requester, "x", ask(&target.agent), None).await else {
                    break;
                };
                acked.push((c.record.id.to_string(), Status::Pending));
                let res = if i % 2 == 0 {
                    svc.respond(
                        &target,
                        "x",
                        &c.record.id,
                        RespondRequest::accept(json!({"port": 3})),
                    )
                    .await
                } else {
                    svc.cancel(&requester, "x", &c.record.id, CancelRequest::default())
                        .await
                };
                match res {
                    Ok(r) => acked.last_mut().unwrap().1 = r.status,
                    Err(_) => break,
                }
            }
            acked
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    svc.clone().abort().await;
    let mut acked = HashMap::new();
    for t in tasks {
        for (id, st) in t.await.unwrap() {
            acked.insert(id, st);
        }
    }
    drop(svc);
    assert!(acked.len() > 8, "the workload ran before the crash");
    let svc = open_at(dir.path(), &clock, limits).await;
    for (id, st) in &acked {
        // Visible to its parties only; read as the requester.
        let p = id_owner(&svc, id).await;
        let r = svc.get(&p, id, 0).await.unwrap();
        if *st == Status::Pending {
            // Its answer may have been written without being acknowledged.
            assert!(
                matches!(
                    r.status,
                    Status::Pending | Status::Accepted | Status::Cancelled
                ),
                "{id}"
            );
        } else {
            assert_eq!(r.status, *st, "{id}");
        }
    }
    svc.abort().await;
}

/// Finds the requester of `id` among the workload's agents.
async fn id_owner(svc: &ElicitationService, id: &str) -> lighthouse_security::Caller {
    for p in 0..8 {
        let c = caller(&format!("req{p}"), Role::Agent);
        if svc.get(&c, id, 0).await.is_ok() {
            return c;
        }
    }
    panic!("no owner for {id}");
}

#[tokio::test]
async fn listings_paginate_by_status() {
    let clock = manual_clock();
    let (svc, _store) = open_temp(&clock).await;
    let mut ids = Vec::new();
    for _ in 0..7 {
        ids.push(
            svc.create(&alice(), "c", ask("bob"), None)
                .await
                .unwrap()
                .record
                .id
                .to_string(),
        );
    }
    for id in &ids[..3] {
        svc.respond(&bob(), "r", id, RespondRequest::decline(None))
            .await
            .unwrap();
    }
    let page = |status, cursor| ListQuery {
        mailbox: Mailbox::Inbox,
        status,
        limit: Some(2),
        cursor,
    };
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let p = svc
            .list(&bob(), &page(Some(Status::Pending), cursor))
            .unwrap();
        seen.extend(p.items.iter().map(|r| r.id.to_string()));
        match p.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(seen, ids[3..].to_vec());
    let declined = svc
        .list(
            &bob(),
            &ListQuery {
                mailbox: Mailbox::Inbox,
                status: Some(Status::Declined),
                limit: None,
                cursor: None,
            },
        )
        .unwrap();
    assert_eq!(
        declined
            .items
            .iter()
            .map(|r| r.id.to_string())
            .collect::<Vec<_>>(),
        ids[..3].to_vec()
    );
    assert_eq!(declined.next_cursor, None);
    let all = svc
        .list(
            &alice(),
            &ListQuery {
                mailbox: Mailbox::Outbox,
                status: None,
                limit: Some(7),
                cursor: None,
            },
        )
        .unwrap();
    let v = serde_json::to_value(&all).unwrap();
    assert_eq!((all.items.len(), all.next_cursor), (7, None));
    assert!(v["items"].is_array() && v["next_cursor"].is_null());
    assert!(svc.list(&bob(), &page(None, Some("nope".into()))).is_err());
    assert!(
        svc.list(
            &bob(),
            &ListQuery {
                mailbox: Mailbox::Inbox,
                status: None,
                limit: Some(1001),
                cursor: None
            }
        )
        .is_err()
    );
}

#[tokio::test]
async fn a_replay_skips_a_misshapen_event_and_refuses_a_damaged_record() {
    use lighthouse_event_store::NewEvent;
    let clock = manual_clock();
    let (svc, store) = open_temp(&clock).await;
    svc.create(&alice(), "a", ask("bob"), None).await.unwrap();
    // JSON, but not a `requested` payload: skipped, as when applied live.
    store
        .append_one(NewEvent::new(
            "elicitation-el_bogus",
            "elicitation.requested",
            json!({"id": 1}),
        ))
        .await
        .unwrap();
    let b = svc
        .create(&carol(), "a", ask("bob"), None)
        .await
        .unwrap()
        .record;
    let live = svc.export_state();
    svc.abort().await;
    let opts = options(&clock, Limits::default()).snapshot_name("no-snapshot");
    let again = ElicitationService::open(store.clone(), opts.clone())
        .await
        .unwrap();
    assert_eq!(again.started_from_snapshot(), None);
    assert_eq!(again.pending_count(), 2);
    assert_eq!(again.applied_seq(), store.head_seq());
    assert_eq!(again.export_state(), live);
    again.abort().await;
    // Data that is not JSON at all: the log is damaged and the open says so.
    let seq = store
        .read_stream(&format!("elicitation-{}", b.id), 0, 1)
        .unwrap()[0]
        .seq;
    let mut raw = store.raw_record(seq).unwrap().unwrap();
    let header = lighthouse_event_store::codec::HEADER_LEN;
    let data = header + raw[header..].iter().position(|&c| c == b'{').unwrap();
    raw[data] = b'<';
    store.tamper_raw(seq, Some(&raw)).unwrap();
    let r = ElicitationService::open(store.clone(), opts).await;
    assert!(
        matches!(
            &r,
            Err(lighthouse_elicitation::Error::Store(lighthouse_event_store::Error::Corrupt { seq: s, .. })) if *s == seq
        ),
        "{r:?}"
    );
}

/// Stopping the service while creates and responses are in flight: every call
/// returns (done, or `Closed`), none waits forever for an applier that is
/// gone, nothing is left waiting in memory, and after a restart every create
/// that returned `Ok` is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_the_service_answers_every_call_in_flight() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let dir = tempfile::tempdir().unwrap();
    let clock = manual_clock();
    let svc = open_at(dir.path(), &clock, Limits::default()).await;
    let done = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for w in 0..20u64 {
        let (svc, done) = (svc.clone(), done.clone());
        // Each creates (and answers every other one) until the service stops.
        workers.push(tokio::spawn(async move {
            let mut created = Vec::new();
            for i in 0u64.. {
                let c = match svc.create(&alice(), "s", ask("bob"), None).await {
                    Ok(c) => c,
                    Err(lighthouse_elicitation::Error::Closed) => return created,
                    Err(e) => panic!("worker {w}: unexpected error {e}"),
                };
                created.push(c.record.id.to_string());
                done.fetch_add(1, Ordering::Relaxed);
                if i % 2 == 0 {
                    match svc
                        .respond(
                            &bob(),
                            "r",
                            &c.record.id,
                            RespondRequest::accept(json!({"port": 1})),
                        )
                        .await
                    {
                        Ok(_) => {}
                        Err(lighthouse_elicitation::Error::Closed) => return created,
                        Err(e) => panic!("worker {w}: unexpected error {e}"),
                    }
                }
            }
            created
        }));
    }
    while done.load(Ordering::Relaxed) < 200 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let probe = svc.clone();
    svc.abort().await;
    let mut created = Vec::new();
    for w in workers {
        let ids = tokio::time::timeout(Duration::from_secs(10), w)
            .await
            .expect("a call in flight did not return after the stop")
            .unwrap();
        created.extend(ids);
    }
    assert!(created.len() >= 200);
    let after = tokio::time::timeout(
        Duration::from_secs(10),
        probe.create(&alice(), "s", ask("bob"), None),
    )
    .await
    .expect("a create after the stop did not return");
    assert!(
        matches!(after, Err(lighthouse_elicitation::Error::Closed)),
        "{after:?}"
    );
    let counts = probe.memory_counts();
    assert_eq!((counts.seq_waiters, counts.handoff), (0, 0), "{counts:?}");
    drop(probe);
    let svc = open_at(dir.path(), &clock, Limits::default()).await;
    for id in &created {
        svc.get(&alice(), id, 0).await.unwrap();
    }
}

#[tokio::test]
async fn listing_pages_are_bounded_in_bytes() {
    let clock = manual_clock();
    let (svc, _dir) = open_limited(
        &clock,
        Limits {
            max_list_page_bytes: 2_000,
            ..Limits::default()
        },
    )
    .await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        let mut req = ask("bob");
        req.message = "m".repeat(600);
        ids.push(
            svc.create(&alice(), "c", req, None)
                .await
                .unwrap()
                .record
                .id
                .to_string(),
        );
    }
    // About 800 bytes a record: a page ends with the record that reaches 2,000
    // bytes, and the next one goes on from there, nothing skipped or repeated.
    let (mut seen, mut cursor, mut pages) = (Vec::new(), None, 0);
    loop {
        let p = svc
            .list(
                &bob(),
                &ListQuery {
                    mailbox: Mailbox::Inbox,
                    status: None,
                    limit: None,
                    cursor,
                },
            )
            .unwrap();
        pages += 1;
        assert!(
            !p.items.is_empty() && p.items.len() <= 3,
            "{}",
            p.items.len()
        );
        seen.extend(p.items.iter().map(|r| r.id.to_string()));
        match p.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(seen, ids);
    assert!(pages >= 2);
}
