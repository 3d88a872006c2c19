//! Idempotency keys on create: retries, reuse, expiry after 24 h, restarts, races.

mod common;

use common::*;
use lighthouse_elicitation::{CreateRequest, Error, Limits};
use std::future::Future;

#[tokio::test]
async fn a_retry_returns_the_first_result() {
    let clock = manual_clock();
    let dir = tempfile::tempdir().unwrap();
    let svc = open_at(dir.path(), &clock, Limits::default()).await;
    let first = svc
        .create(&alice(), "r1", ask("bob"), Some("k-1"))
        .await
        .unwrap();
    assert!(!first.replayed);
    let again = svc
        .create(&alice(), "r2", ask("bob"), Some("k-1"))
        .await
        .unwrap();
    assert!(again.replayed);
    assert_eq!(again.record.id, first.record.id);
    // Another key, or another requester with the same key, is another elicitation.
    assert_ne!(
        svc.create(&alice(), "r3", ask("bob"), Some("k-2"))
            .await
            .unwrap()
            .record
            .id,
        first.record.id
    );
    assert_ne!(
        svc.create(&carol(), "r4", ask("bob"), Some("k-1"))
            .await
            .unwrap()
            .record
            .id,
        first.record.id
    );
    // The same key with a different request is refused.
    let other = CreateRequest::new("bob", "Another question?", port_schema());
    // Both name the header, by its name as a pointer.
    for r in [
        svc.create(&alice(), "r5", other, Some("k-1")).await,
        svc.create(&alice(), "r5", ask("bob"), Some("")).await,
    ] {
        match r {
            Err(Error::InvalidRequest { errors }) => assert_eq!(errors[0].path, "/Idempotency-Key"),
            other => panic!("{other:?}"),
        }
    }

    // It survives a crash: the key is in the `requested` event.
    svc.abort().await;
    let svc = open_at(dir.path(), &clock, Limits::default()).await;
    let after = svc
        .create(&alice(), "r6", ask("bob"), Some("k-1"))
        .await
        .unwrap();
    assert!(after.replayed);
    assert_eq!(after.record.id, first.record.id);
    // ...for 24 hours.
    clock.advance_millis(24 * 3_600_000);
    let late = svc
        .create(&alice(), "r7", ask("bob"), Some("k-1"))
        .await
        .unwrap();
    assert!(!late.replayed);
    assert_ne!(late.record.id, first.record.id);
    svc.abort().await;
}

#[tokio::test]
async fn concurrent_retries_create_one_elicitation() {
    let clock = manual_clock();
    let (svc, _store) = open_temp(&clock).await;
    let mut tasks = Vec::new();
    for i in 0..16 {
        let svc = svc.clone();
        tasks.push(tokio::spawn(async move {
            svc.create(&alice(), &format!("r{i}"), ask("bob"), Some("same"))
                .await
        }));
    }
    let mut ids = Vec::new();
    let mut fresh = 0;
    for t in tasks {
        let c = t.await.unwrap().unwrap();
        fresh += usize::from(!c.replayed);
        ids.push(c.record.id.to_string());
    }
    ids.dedup();
    assert_eq!(ids.len(), 1);
    assert_eq!(fresh, 1);
    assert_eq!(svc.pending_count(), 1);
    assert_eq!(svc.memory_counts().creating, 0);
}

#[tokio::test]
async fn keys_are_bounded() {
    let clock = manual_clock();
    let (svc, _dir) = open_limited(
        &clock,
        Limits {
            max_idempotency_keys: 5,
            ..Limits::default()
        },
    )
    .await;
    for i in 0..20 {
        svc.create(&alice(), "r", ask("bob"), Some(&format!("k{i}")))
            .await
            .unwrap();
    }
    assert_eq!(svc.memory_counts().idempotency_keys, 5);
    svc.abort().await;
}

/// The key cap is per requester: alice creating with many more keys than her
/// quota evicts only her own oldest, and carol's key still returns her first
/// result, also after a restart (the eviction depends only on the log).
#[tokio::test]
async fn one_requester_cannot_evict_anothers_keys() {
    let clock = manual_clock();
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits {
        max_idempotency_keys_per_agent: 5,
        ..Limits::default()
    };
    let svc = open_at(dir.path(), &clock, limits.clone()).await;
    let first = svc
        .create(&carol(), "c1", ask("bob"), Some("carol-key"))
        .await
        .unwrap();
    for i in 0..20 {
        svc.create(&alice(), "r", ask("bob"), Some(&format!("k{i}")))
            .await
            .unwrap();
    }
    assert_eq!(svc.memory_counts().idempotency_keys, 6);
    let again = svc
        .create(&carol(), "c2", ask("bob"), Some("carol-key"))
        .await
        .unwrap();
    assert!(again.replayed);
    assert_eq!(again.record.id, first.record.id);
    // alice's oldest keys are forgotten: reusing one creates a new elicitation.
    assert!(
        !svc.create(&alice(), "r", ask("bob"), Some("k0"))
            .await
            .unwrap()
            .replayed
    );
    svc.shutdown().await.unwrap();
    let svc = open_at(dir.path(), &clock, limits).await;
    let again = svc
        .create(&carol(), "c3", ask("bob"), Some("carol-key"))
        .await
        .unwrap();
    assert!(again.replayed);
    assert_eq!(again.record.id, first.record.id);
    svc.abort().await;
}

/// A keyed create whose caller stops waiting (a client that timed out and
/// closed its connection) once its event is on the way still holds its key
/// until the event is applied: a retry with the key gets that elicitation,
/// and exactly one is created. Before, dropping the create released the key
/// at once, and a retry before the event was applied created a second.
#[tokio::test]
async fn a_retry_after_the_first_create_was_dropped_gets_its_result() {
    let clock = manual_clock();
    let (svc, store) = open_temp(&clock).await;
    let head = store.head_seq();
    let me = alice();
    {
        let mut first = Box::pin(svc.create(&me, "r1", ask("bob"), Some("k")));
        // One poll takes it as far as it goes without waiting; then the
        // caller gives up. (On this single-threaded runtime nothing else ran.)
        let polled =
            std::future::poll_fn(|cx| std::task::Poll::Ready(first.as_mut().poll(cx).is_pending()))
                .await;
        assert!(polled, "the create finished in one poll");
    }
    let retry = svc
        .create(&alice(), "r2", ask("bob"), Some("k"))
        .await
        .unwrap();
    assert!(retry.replayed, "the retry created a second elicitation");
    assert_eq!(svc.pending_count(), 1);
    assert_eq!(store.head_seq(), head + 1);
    assert_eq!(svc.memory_counts().creating, 0);
}
