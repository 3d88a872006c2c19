//! Drain with pending work.

mod common;

use std::time::Duration;

use common::*;
use lighthouse_elicitation::{DrainRequest, DrainThen, Limits, RespondRequest, Status};
use serde_json::json;

#[tokio::test]
async fn drain_waits_then_cancels_the_rest_as_the_operator() {
    let clock = manual_clock();
    let dir = tempfile::tempdir().unwrap();
    let svc = open_at(
        dir.path(),
        &clock,
        Limits {
            transition_batch: 3,
            ..Limits::default()
        },
    )
    .await;
    let mut ids = Vec::new();
    for _ in 0..8 {
        ids.push(
            svc.create(&alice(), "c", ask("bob"), None)
                .await
                .unwrap()
                .record
                .id
                .to_string(),
        );
    }
    // Two are answered while the drain waits; one created during the wait is
    // answered too, another is left pending.
    let answering = {
        let svc = svc.clone();
        let two = ids[..2].to_vec();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(30)).await;
            for id in two {
                svc.respond(&bob(), "a", &id, RespondRequest::accept(json!({"port": 5})))
                    .await
                    .unwrap();
            }
            let new = svc.create(&alice(), "c2", ask("bob"), None).await.unwrap();
            svc.respond(
                &bob(),
                "a2",
                &new.record.id,
                RespondRequest::accept(json!({"port": 6})),
            )
            .await
            .unwrap();
            svc.create(&alice(), "c3", ask("bob"), None).await.unwrap();
        })
    };
    let report = svc
        .drain(
            &ops(),
            "drain-1",
            DrainRequest {
                timeout_ms: 1_000,
                then: DrainThen::Cancel,
                reason: Some("rollback".into()),
            },
        )
        .await
        .unwrap();
    answering.await.unwrap();
    assert_eq!(
        (
            report.resolved_while_draining,
            report.cancelled,
            report.remaining
        ),
        (3, 7, 0)
    );
    assert!(report.elapsed_ms >= 1_000);
    assert!(report.waited_ms >= 1_000 && report.waited_ms <= report.elapsed_ms);
    assert_eq!(svc.pending_count(), 0);
    for id in &ids[2..] {
        let r = svc.get(&alice(), id, 0).await.unwrap();
        assert_eq!(r.status, Status::Cancelled);
        let resp = r.response.clone().unwrap();
        assert_eq!(
            (resp.by.as_deref(), resp.reason.as_deref()),
            (Some("ops"), Some("rollback"))
        );
    }
    svc.abort().await;
    let store = store_at(dir.path(), &clock);
    let ev = store
        .read_stream(&format!("elicitation-{}", ids[5]), 1, 1)
        .unwrap();
    assert_eq!(
        (ev[0].agent.as_deref(), ev[0].correlation_id.as_deref()),
        (Some("ops"), Some("drain-1"))
    );
}

#[tokio::test]
async fn drain_returns_as_soon_as_nothing_is_pending() {
    let clock = manual_clock();
    let (svc, _store) = open_temp(&clock).await;
    let r = svc
        .create(&alice(), "c", ask("bob"), None)
        .await
        .unwrap()
        .record;
    let answering = {
        let svc = svc.clone();
        let id = r.id.to_string();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(30)).await;
            svc.respond(&bob(), "a", &id, RespondRequest::decline(None))
                .await
                .unwrap();
        })
    };
    let report = svc
        .drain(
            &ops(),
            "d",
            DrainRequest {
                timeout_ms: 60_000,
                then: DrainThen::Cancel,
                reason: None,
            },
        )
        .await
        .unwrap();
    answering.await.unwrap();
    assert_eq!(
        (
            report.resolved_while_draining,
            report.cancelled,
            report.remaining
        ),
        (1, 0, 0)
    );
    assert!(report.elapsed_ms < 30_000);
}

#[tokio::test]
async fn drain_without_cancel_reports_what_remains() {
    let clock = manual_clock();
    let (svc, _store) = open_temp(&clock).await;
    for _ in 0..3 {
        svc.create(&alice(), "c", ask("bob"), None).await.unwrap();
    }
    let report = svc
        .drain(
            &ops(),
            "d",
            DrainRequest {
                timeout_ms: 10,
                then: DrainThen::None,
                reason: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        (
            report.resolved_while_draining,
            report.cancelled,
            report.remaining
        ),
        (0, 0, 3)
    );
    // Overdue ones are expired, not cancelled, by a drain.
    clock.advance_millis(30_000);
    let report = svc
        .drain(
            &ops(),
            "d",
            DrainRequest {
                timeout_ms: 0,
                then: DrainThen::Cancel,
                reason: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(report.remaining, 0);
    assert_eq!(report.cancelled + report.resolved_while_draining, 3);
    assert_eq!(report.cancelled, 0);
}

/// Elicitations answered while the drain cancels are counted once, in
/// `resolved_while_draining`: the counts add up to what was pending. (One
/// answered between the drain's list of pending ids and its batch was
/// skipped by the batch and counted nowhere.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_during_the_cancels_are_counted_once() {
    let clock = manual_clock();
    let dir = tempfile::tempdir().unwrap();
    let svc = open_at(
        dir.path(),
        &clock,
        Limits {
            transition_batch: 4,
            ..Limits::default()
        },
    )
    .await;
    let mut ids = Vec::new();
    for _ in 0..200 {
        let c = svc.create(&alice(), "c", ask("bob"), None).await.unwrap();
        ids.push(c.record.id.to_string());
    }
    let answering = {
        let svc = svc.clone();
        tokio::spawn(async move {
            let mut answered = 0u64;
            for id in ids.iter().rev() {
                if svc
                    .respond(&bob(), "a", id, RespondRequest::accept(json!({"port": 5})))
                    .await
                    .is_ok()
                {
                    answered += 1;
                }
            }
            answered
        })
    };
    let report = svc
        .drain(
            &ops(),
            "d",
            DrainRequest {
                timeout_ms: 0,
                then: DrainThen::Cancel,
                reason: None,
            },
        )
        .await
        .unwrap();
    let answered = answering.await.unwrap();
    assert_eq!(
        report.resolved_while_draining + report.cancelled + report.remaining,
        200,
        "{report:?}, {answered} answered"
    );
    assert_eq!(report.remaining, 0);
    assert_eq!(report.cancelled + answered, 200);
}
