//! Deadlines with an injected clock: the timer, answers after the deadline, and
//! expiry across a restart.

mod common;

use std::time::Duration;

use common::*;
use lighthouse_elicitation::{CancelRequest, Error, Limits, RespondRequest, Status};
use serde_json::json;

/// Limits whose timer never wakes by itself within a test: only `tick` moves it.
fn tick_only() -> Limits {
    Limits {
        timer_max_sleep_ms: 3_600_000,
        ..Limits::default()
    }
}

#[tokio::test]
async fn the_timer_expires_at_the_deadline() {
    let clock = manual_clock();
    let dir = tempfile::tempdir().unwrap();
    let svc = open_at(dir.path(), &clock, tick_only()).await;
    let r = svc
        .create(&alice(), "r1", ask("bob").timeout_ms(1000), None)
        .await
        .unwrap()
        .record;
    clock.advance_millis(999);
    svc.tick();
    let still = svc.get(&alice(), &r.id, 50).await.unwrap();
    assert_eq!(still.status, Status::Pending);
    clock.advance_millis(1);
    svc.tick();
    let done = svc
        .wait_terminal(&alice(), &r.id, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(done.status, Status::Expired);
    let v = serde_json::to_value(&*done).unwrap();
    assert_eq!(
        v["response"],
        json!({"action": "expire", "content": null, "reason": null, "by": null})
    );
    assert_eq!(v["resolved_at"], "2026-11-26T07:00:01.000Z");
    assert_eq!(svc.pending_count(), 0);
    svc.abort().await;
    let store = store_at(dir.path(), &clock);
    let evs = store
        .read_stream(&format!("elicitation-{}", r.id), 0, 10)
        .unwrap();
    assert_eq!(evs.len(), 2);
    assert_eq!(evs[1].event_type, "elicitation.expired");
    assert_eq!(evs[1].agent, None);
    assert_eq!(evs[1].correlation_id.as_deref(), Some(&*r.id));
}

#[tokio::test]
async fn acting_after_the_deadline_is_expired_even_before_the_timer_fires() {
    let clock = manual_clock();
    let dir = tempfile::tempdir().unwrap();
    let svc = open_at(dir.path(), &clock, tick_only()).await;
    let a = svc
        .create(&alice(), "r1", ask("bob").timeout_ms(1000), None)
        .await
        .unwrap()
        .record;
    let b = svc
        .create(&alice(), "r2", ask("bob").timeout_ms(1000), None)
        .await
        .unwrap()
        .record;
    clock.advance_millis(1000);
    // No tick: the timer has not written anything yet.
    let e = svc
        .respond(
            &bob(),
            "r3",
            &a.id,
            RespondRequest::accept(json!({"port": 1})),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Expired { .. }), "{e:?}");
    assert_eq!(e.code(), "expired");
    let e = svc
        .cancel(&alice(), "r4", &b.id, CancelRequest::default())
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Expired { .. }), "{e:?}");
    // The refused answer woke the timer, which writes the expiries.
    for id in [&a.id, &b.id] {
        let r = svc
            .wait_terminal(&alice(), id, Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!(r.status, Status::Expired);
    }
    // And acting on an expired elicitation stays `expired`, not `already_resolved`.
    let e = svc
        .respond(&bob(), "r5", &a.id, RespondRequest::decline(None))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Expired { .. }), "{e:?}");
    svc.abort().await;
}

#[tokio::test]
async fn expiry_survives_a_restart() {
    let clock = manual_clock();
    let dir = tempfile::tempdir().unwrap();
    let svc = open_at(dir.path(), &clock, tick_only()).await;
    let short = svc
        .create(&alice(), "r1", ask("bob").timeout_ms(5_000), None)
        .await
        .unwrap()
        .record;
    let long = svc
        .create(&alice(), "r2", ask("bob").timeout_ms(60_000), None)
        .await
        .unwrap()
        .record;
    // Crash, stay down past the first deadline.
    svc.abort().await;
    clock.advance_millis(10_000);
    let svc = open_at(dir.path(), &clock, tick_only()).await;
    // Expired before `open` returned, with no tick and no wait.
    let r = svc.get(&alice(), &short.id, 0).await.unwrap();
    assert_eq!(r.status, Status::Expired);
    assert_eq!(
        serde_json::to_value(&*r).unwrap()["resolved_at"],
        "2026-11-26T07:00:10.000Z"
    );
    assert_eq!(
        svc.get(&bob(), &long.id, 0).await.unwrap().status,
        Status::Pending
    );
    // The timer keeps working for the rest after the restart.
    clock.advance_millis(50_000);
    svc.tick();
    let r = svc
        .wait_terminal(&bob(), &long.id, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(r.status, Status::Expired);
    svc.abort().await;
}

#[tokio::test]
async fn many_simultaneous_deadlines_expire_in_batches() {
    let clock = manual_clock();
    let dir = tempfile::tempdir().unwrap();
    let svc = open_at(
        dir.path(),
        &clock,
        Limits {
            transition_batch: 7,
            ..tick_only()
        },
    )
    .await;
    let mut ids = Vec::new();
    for i in 0..40 {
        let r = svc
            .create(&alice(), "r", ask("bob").timeout_ms(1000 + (i % 3)), None)
            .await
            .unwrap()
            .record;
        ids.push(r.id.to_string());
    }
    clock.advance_millis(2_000);
    svc.tick();
    for id in &ids {
        assert_eq!(
            svc.wait_terminal(&alice(), id, Duration::from_secs(10))
                .await
                .unwrap()
                .status,
            Status::Expired
        );
    }
    assert_eq!(svc.pending_count(), 0);
    svc.abort().await;
    let store = store_at(dir.path(), &clock);
    for id in &ids {
        assert_eq!(
            stream_types(&store, id),
            vec!["elicitation.requested", "elicitation.expired"]
        );
    }
}

#[tokio::test]
async fn a_new_earlier_deadline_wakes_a_sleeping_timer() {
    let clock = manual_clock();
    let dir = tempfile::tempdir().unwrap();
    let svc = open_at(dir.path(), &clock, tick_only()).await;
    // The timer now sleeps towards a deadline an hour away...
    let late = svc
        .create(&alice(), "r", ask("bob").timeout_ms(3_600_000), None)
        .await
        .unwrap()
        .record;
    tokio::time::sleep(Duration::from_millis(20)).await;
    // ...and must notice this one without a tick: its deadline is 1 s of real time
    // away (the manual clock does not move, so move it right after creating).
    let early = svc
        .create(&alice(), "r", ask("bob").timeout_ms(1000), None)
        .await
        .unwrap()
        .record;
    clock.advance_millis(1000);
    let r = svc
        .wait_terminal(&alice(), &early.id, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(r.status, Status::Expired);
    assert_eq!(
        svc.get(&alice(), &late.id, 0).await.unwrap().status,
        Status::Pending
    );
    svc.abort().await;
}

/// `wait_terminal` with `Duration::MAX` ("until it ends") waits instead of
/// panicking on the deadline's overflow.
#[tokio::test]
async fn waiting_without_a_bound_does_not_overflow() {
    let clock = manual_clock();
    let (svc, _store) = open_temp(&clock).await;
    let r = svc
        .create(&alice(), "c", ask("bob"), None)
        .await
        .unwrap()
        .record;
    let waiting = {
        let (svc, id) = (svc.clone(), r.id.to_string());
        tokio::spawn(async move { svc.wait_terminal(&alice(), &id, Duration::MAX).await })
    };
    svc.cancel(
        &alice(),
        "c",
        &r.id,
        lighthouse_elicitation::CancelRequest::default(),
    )
    .await
    .unwrap();
    let done = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("the wait ended")
        .unwrap()
        .unwrap();
    assert!(done.status.is_terminal());
    svc.abort().await;
}
