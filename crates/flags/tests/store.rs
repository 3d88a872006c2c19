//! The flag store on `$flags`: writes, events, concurrency, limits.

mod common;

use common::*;
use lighthouse_event_store::{Filter, NewEvent, Query};
use lighthouse_flags::{Error, FlagSpec, Limits, Reason, STREAM, Variant};
use serde_json::json;

#[tokio::test]
async fn a_put_creates_the_flag_and_appends_its_event() {
    let (events, flags, clock) = fresh();
    let mut s = spec(true, 25.0);
    s.allow = vec!["alice".into()];
    s.description = "elicitations".into();
    let out = flags
        .put(
            "elicitation_enabled",
            &s,
            None,
            &ops().with_correlation_id("req-1"),
        )
        .await
        .unwrap();
    assert!(out.changed);
    assert_eq!(out.flag.version, 1);
    assert_eq!(out.flag.updated_by, "ops-1");
    assert_eq!(out.flag.updated_at, clock_now(&clock));
    assert_eq!(flags.get("elicitation_enabled").unwrap(), out.flag);

    let page = events.read(&Query::new(Filter::stream(STREAM))).unwrap();
    assert_eq!(page.events.len(), 1);
    let e = &page.events[0];
    assert_eq!(Some(e.seq), out.seq);
    assert_eq!(e.event_type, "flag.created");
    assert_eq!(e.agent.as_deref(), Some("ops-1"));
    assert_eq!(e.correlation_id.as_deref(), Some("req-1"));
    assert_eq!(e.data["key"], "elicitation_enabled");
    assert_eq!(e.data["version"], 1);
    assert_eq!(e.data["actor"], "ops-1");
    assert_eq!(e.data["reason"], "test change");
    assert_eq!(e.data["before"], json!(null));
    assert_eq!(e.data["after"], serde_json::to_value(&*out.flag).unwrap());
    assert_eq!(e.data["previous_seq"], json!(null));
}

fn clock_now(c: &lighthouse_event_store::ManualClock) -> lighthouse_event_store::Timestamp {
    use lighthouse_event_store::Clock;
    c.now()
}

#[tokio::test]
async fn an_update_records_before_and_after_and_bumps_the_version() {
    let (events, flags, clock) = fresh();
    let v1 = flags
        .put("f", &spec(true, 5.0), None, &ops())
        .await
        .unwrap();
    clock.advance_millis(1_000);
    let v2 = flags
        .put("f", &spec(true, 25.0), Some(1), &by("ops-2", "stage 2"))
        .await
        .unwrap();
    assert_eq!(v2.flag.version, 2);
    assert_eq!(v2.flag.updated_by, "ops-2");
    assert_eq!(v2.flag.updated_at.millis_since(v1.flag.updated_at), 1_000);
    let e = events.get(v2.seq.unwrap()).unwrap().unwrap();
    assert_eq!(e.event_type, "flag.updated");
    assert_eq!(e.data["before"], serde_json::to_value(&*v1.flag).unwrap());
    assert_eq!(e.data["after"]["rollout_percent"], json!(25.0));
    assert_eq!(e.data["previous_seq"], json!(v1.seq.unwrap()));
}

#[tokio::test]
async fn a_put_of_identical_settings_appends_nothing() {
    let (events, flags, clock) = fresh();
    let mut s = spec(true, 33.33);
    s.variants = vec![Variant::new("a", 400), Variant::new("b", 600)];
    flags.put("f", &s, None, &ops()).await.unwrap();
    clock.advance_millis(5);
    let again = flags.put("f", &s, Some(1), &ops()).await.unwrap();
    assert!(!again.changed);
    assert_eq!(again.seq, None);
    assert_eq!(again.flag.version, 1);
    assert_eq!(events.stream_version(STREAM), Some(0));
}

#[tokio::test]
async fn a_change_is_seen_by_the_very_next_evaluation() {
    let (_events, flags, _clock) = fresh();
    assert_eq!(
        flags.evaluate("f", "alice").unwrap().reason,
        Reason::NotFound
    );
    for round in 0..20 {
        let percent = if round % 2 == 0 { 100.0 } else { 0.0 };
        flags
            .put("f", &spec(true, percent), None, &ops())
            .await
            .unwrap();
        let e = flags.evaluate("f", "alice").unwrap();
        assert_eq!(
            (e.enabled, e.reason),
            (round % 2 == 0, Reason::Split),
            "round {round}"
        );
    }
}

#[tokio::test]
async fn expected_version_guards_against_lost_updates() {
    let (events, flags, _clock) = fresh();
    flags
        .put("f", &spec(true, 5.0), Some(0), &ops())
        .await
        .unwrap();
    let err = flags
        .put("f", &spec(true, 50.0), Some(0), &ops())
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::VersionConflict { ref key, expected: 0, actual: Some(1) } if key == "f"),
        "{err}"
    );
    let err = flags
        .put("g", &spec(true, 50.0), Some(3), &ops())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::VersionConflict {
                expected: 3,
                actual: None,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(events.stream_version(STREAM), Some(0));
    assert_eq!(flags.get("f").unwrap().rollout_percent.basis_points(), 500);
    assert!(flags.get("g").is_none());
}

#[tokio::test]
async fn concurrent_writers_expecting_the_same_version_have_one_winner() {
    let (events, flags, _clock) = fresh();
    flags
        .put("f", &spec(true, 1.0), None, &ops())
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for i in 0..16u32 {
        let flags = flags.clone();
        tasks.push(tokio::spawn(async move {
            let s = spec(true, f64::from(i + 2));
            flags.put("f", &s, Some(1), &ops()).await
        }));
    }
    let mut won = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(out) => {
                won += 1;
                assert_eq!(out.flag.version, 2);
            }
            Err(Error::VersionConflict {
                actual: Some(2), ..
            }) => {}
            Err(other) => panic!("{other}"),
        }
    }
    assert_eq!(won, 1);
    assert_eq!(events.stream_version(STREAM), Some(1));
}

#[tokio::test]
async fn a_second_store_on_the_same_log_catches_up_before_deciding() {
    let (events, a, clock) = fresh();
    let b = open_flags(&events, &clock, Limits::default());
    a.put("f", &spec(true, 10.0), None, &ops()).await.unwrap();
    // b has not seen the creation: its append conflicts on $flags, it replays,
    // and then judges expected_version against the real state.
    let err = b
        .put("f", &spec(true, 20.0), Some(0), &ops())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::VersionConflict {
                actual: Some(1),
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(b.get("f").unwrap().version, 1);
    let out = b
        .put("f", &spec(true, 20.0), Some(1), &ops())
        .await
        .unwrap();
    assert_eq!(out.flag.version, 2);
    // a is now behind; its next write catches up the same way.
    let out = a.put("f", &spec(true, 30.0), None, &ops()).await.unwrap();
    assert_eq!(out.flag.version, 3);
    assert_eq!(a.history("f", None, 10).unwrap().len(), 3);
}

#[tokio::test]
async fn kill_wins_over_allow_and_survives_puts_until_unkilled() {
    let (events, flags, _clock) = fresh();
    let mut s = spec(true, 100.0);
    s.allow = vec!["alice".into()];
    flags.put("f", &s, None, &ops()).await.unwrap();
    assert!(flags.evaluate("f", "alice").unwrap().enabled);

    let killed = flags
        .kill("f", None, &by("ops-1", "incident 42"))
        .await
        .unwrap();
    assert!(killed.changed && killed.flag.killed);
    assert_eq!(killed.flag.version, 2);
    for agent in ["alice", "bob", "carol"] {
        let e = flags.evaluate("f", agent).unwrap();
        assert_eq!((e.enabled, e.reason), (false, Reason::Killed), "{agent}");
    }
    let e = events.get(killed.seq.unwrap()).unwrap().unwrap();
    assert_eq!(e.event_type, "flag.killed");
    assert_eq!(e.data["reason"], "incident 42");
    assert_eq!(e.data["before"]["killed"], json!(false));
    assert_eq!(e.data["after"]["killed"], json!(true));

    // Killing again changes nothing; a PUT keeps the kill switch.
    assert!(!flags.kill("f", None, &ops()).await.unwrap().changed);
    let put = flags
        .put("f", &spec(true, 50.0), None, &ops())
        .await
        .unwrap();
    assert!(put.flag.killed);
    assert_eq!(flags.evaluate("f", "alice").unwrap().reason, Reason::Killed);

    let live = flags
        .unkill("f", None, &by("ops-1", "fixed"))
        .await
        .unwrap();
    assert!(live.changed && !live.flag.killed);
    assert_eq!(live.flag.version, 4);
    assert_eq!(
        events.get(live.seq.unwrap()).unwrap().unwrap().event_type,
        "flag.unkilled"
    );
    assert!(!flags.unkill("f", None, &ops()).await.unwrap().changed);
    assert_eq!(flags.evaluate("f", "dave").unwrap().reason, Reason::Split);

    let err = flags.kill("ghost", None, &ops()).await.unwrap_err();
    assert!(matches!(err, Error::NotFound { ref key } if key == "ghost"));
    assert!(matches!(
        flags.unkill("ghost", None, &ops()).await,
        Err(Error::NotFound { .. })
    ));
}

#[tokio::test]
async fn cycles_are_refused_on_write_and_nothing_is_written() {
    let (events, flags, _clock) = fresh();
    flags
        .put("a", &spec(true, 100.0), None, &ops())
        .await
        .unwrap();
    flags
        .put("b", &requiring(&["a"]), None, &ops())
        .await
        .unwrap();
    flags
        .put("c", &requiring(&["b"]), None, &ops())
        .await
        .unwrap();
    let head = events.stream_version(STREAM);

    let err = flags
        .put("a", &requiring(&["c"]), None, &ops())
        .await
        .unwrap_err();
    match err {
        Error::PrerequisiteCycle { path } => {
            assert_eq!(path.len(), 4, "{path:?}");
            assert_eq!(path.first(), path.last());
        }
        other => panic!("{other}"),
    }
    let err = flags
        .put("d", &requiring(&["d"]), None, &ops())
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::PrerequisiteCycle { ref path } if path == &["d", "d"]),
        "{err}"
    );
    let err = flags
        .put("e", &requiring(&["nope"]), None, &ops())
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::UnknownPrerequisite { ref missing, .. } if missing == "nope"),
        "{err}"
    );

    assert_eq!(events.stream_version(STREAM), head);
    assert!(flags.get("a").unwrap().requires.is_empty());
    assert!(flags.get("d").is_none() && flags.get("e").is_none());
    // The chain still evaluates: c needs b needs a.
    assert_eq!(flags.evaluate("c", "alice").unwrap().reason, Reason::Split);
    flags.kill("a", None, &ops()).await.unwrap();
    assert_eq!(
        flags.evaluate("c", "alice").unwrap().reason,
        Reason::Prerequisite
    );
}

#[tokio::test]
async fn invalid_writes_are_refused_with_field_errors() {
    let (events, flags, _clock) = fresh();
    let paths = |e: Error| match e {
        Error::Invalid { errors } => errors.into_iter().map(|e| e.path).collect::<Vec<_>>(),
        other => panic!("{other}"),
    };
    let err = flags
        .put("f", &spec(true, 12.345), None, &ops())
        .await
        .unwrap_err();
    assert_eq!(paths(err), ["/rollout_percent"]);
    let err = flags
        .put("Not-A-Key", &spec(true, 1.0), None, &ops())
        .await
        .unwrap_err();
    assert_eq!(paths(err), ["/key"]);
    let err = flags
        .put("f", &spec(true, 1.0), None, &by("ops-1", "  "))
        .await
        .unwrap_err();
    assert_eq!(paths(err), ["/reason"]);
    let err = flags
        .put("f", &spec(true, 1.0), None, &by("Ops 1", "x"))
        .await
        .unwrap_err();
    assert_eq!(paths(err), ["/actor"]);
    let long = "r".repeat(flags.limits().max_reason_bytes + 1);
    let err = flags
        .put("f", &spec(true, 1.0), None, &by("ops-1", &long))
        .await
        .unwrap_err();
    assert_eq!(paths(err), ["/reason"]);
    let bad_corr = ops().with_correlation_id("has space");
    let err = flags.kill("f", None, &bad_corr).await.unwrap_err();
    assert_eq!(paths(err), ["/correlation_id"]);
    assert_eq!(events.stream_version(STREAM), None);
}

#[tokio::test]
async fn the_number_of_flags_is_bounded() {
    let events = temp_events();
    let clock = lighthouse_event_store::ManualClock::new(start());
    let limits = Limits {
        max_flags: 3,
        ..Limits::default()
    };
    let flags = open_flags(&events, &clock, limits);
    for k in ["a", "b", "c"] {
        flags.put(k, &spec(true, 1.0), None, &ops()).await.unwrap();
    }
    let err = flags
        .put("d", &spec(true, 1.0), None, &ops())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::TooManyFlags { limit: 3 }), "{err}");
    assert_eq!(flags.list().len(), 3);
    // Existing flags can still change.
    assert!(
        flags
            .put("a", &spec(true, 2.0), None, &ops())
            .await
            .unwrap()
            .changed
    );
}

#[tokio::test]
async fn a_foreign_event_on_the_flag_stream_is_reported_on_open() {
    let events = temp_events();
    events
        .append_one(NewEvent::new(STREAM, "flag.renamed", json!({"key": "x"})))
        .await
        .unwrap();
    let clock = lighthouse_event_store::ManualClock::new(start());
    let options = lighthouse_flags::FlagStoreOptions::new().clock(std::sync::Arc::new(clock));
    let err = lighthouse_flags::FlagStore::open(events.clone(), options).unwrap_err();
    assert!(matches!(err, Error::CorruptLog { seq: 1, .. }), "{err}");
}

#[tokio::test]
async fn a_spec_round_trips_through_get_and_put() {
    let (_events, flags, _clock) = fresh();
    let mut s = spec(true, 12.5);
    s.deny = vec!["mallory".into()];
    s.variants = vec![Variant::new("control", 500), Variant::new("treatment", 500)];
    let v1 = flags.put("f", &s, None, &ops()).await.unwrap();
    // PUT accepts a flag exactly as GET returns it, read-only fields included.
    let as_get = serde_json::to_value(&*v1.flag).unwrap();
    let back: FlagSpec = serde_json::from_value(as_get).unwrap();
    let again = flags.put("f", &back, Some(1), &ops()).await.unwrap();
    assert!(!again.changed);
}

#[tokio::test]
async fn a_write_whose_caller_stops_waiting_is_still_published() {
    let (events, flags, _clock) = fresh();
    let s = spec(true, 100.0);
    let by = ops();
    {
        let fut = flags.put("f", &s, None, &by);
        tokio::pin!(fut);
        // Poll once, then drop the future, as a server does with a request whose
        // client went away.
        let polled = futures_poll_once(fut.as_mut()).await;
        assert!(
            polled.is_none(),
            "a durable append cannot finish in one poll"
        );
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while flags.get("f").is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "the appended change was never published"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert_eq!(events.stream_version(STREAM), Some(0));
    assert!(flags.evaluate("f", "alice").unwrap().enabled);
    // The store is consistent: the next write follows version 1.
    assert_eq!(
        flags
            .put("f", &spec(true, 5.0), Some(1), &ops())
            .await
            .unwrap()
            .flag
            .version,
        2
    );
}

async fn futures_poll_once<F: std::future::Future + Unpin>(fut: F) -> Option<F::Output> {
    let mut fut = fut;
    std::future::poll_fn(move |cx| {
        std::task::Poll::Ready(match std::pin::Pin::new(&mut fut).poll(cx) {
            std::task::Poll::Ready(v) => Some(v),
            std::task::Poll::Pending => None,
        })
    })
    .await
}

#[tokio::test]
async fn a_forged_change_that_skips_a_version_is_reported_on_open() {
    let (events, flags, clock) = fresh();
    let v1 = flags
        .put("f", &spec(true, 1.0), None, &ops())
        .await
        .unwrap();
    let mut forged = (*v1.flag).clone();
    forged.version = 3;
    let data = json!({
        "key": "f", "version": 3, "actor": "ops-1", "reason": "forged",
        "before": serde_json::to_value(&*v1.flag).unwrap(),
        "after": serde_json::to_value(&forged).unwrap(),
        "previous_seq": v1.seq,
    });
    let pos = events
        .append_one(NewEvent::new(STREAM, "flag.updated", data))
        .await
        .unwrap();
    let err = lighthouse_flags::FlagStore::open(
        events.clone(),
        lighthouse_flags::FlagStoreOptions::new().clock(std::sync::Arc::new(clock)),
    )
    .unwrap_err();
    assert!(
        matches!(err, Error::CorruptLog { seq, .. } if seq == pos.seq),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_thread_sees_each_change_on_its_next_evaluation() {
    let (_events, flags, _clock) = fresh();
    flags
        .put("f", &spec(true, 0.0), None, &ops())
        .await
        .unwrap();
    let (to_reader, rounds) = std::sync::mpsc::channel::<()>();
    let (answer, from_reader) = std::sync::mpsc::channel::<bool>();
    let reader = {
        let flags = flags.clone();
        std::thread::spawn(move || {
            for () in rounds {
                // Several evaluations per round, so the thread's cached snapshot
                // is warm when the next change arrives.
                let first = flags.evaluate("f", "alice").unwrap().enabled;
                for _ in 0..100 {
                    assert_eq!(flags.evaluate("f", "alice").unwrap().enabled, first);
                }
                answer.send(first).unwrap();
            }
        })
    };
    for round in 0..50 {
        let on = round % 2 == 1;
        let percent = if on { 100.0 } else { 0.0 };
        flags
            .put("f", &spec(true, percent), None, &ops())
            .await
            .unwrap();
        to_reader.send(()).unwrap();
        assert_eq!(from_reader.recv().unwrap(), on, "round {round}");
    }
    drop(to_reader);
    reader.join().unwrap();
}

#[tokio::test]
async fn evaluations_of_two_stores_on_one_thread_do_not_mix() {
    let (_ea, a, _ca) = fresh();
    let (_eb, b, _cb) = fresh();
    a.put("f", &spec(true, 100.0), None, &ops()).await.unwrap();
    b.put("f", &spec(true, 0.0), None, &ops()).await.unwrap();
    for _ in 0..10 {
        assert!(a.evaluate("f", "alice").unwrap().enabled);
        assert!(!b.evaluate("f", "alice").unwrap().enabled);
    }
    b.put("f", &spec(true, 100.0), None, &ops()).await.unwrap();
    assert!(b.evaluate("f", "alice").unwrap().enabled);
    a.kill("f", None, &ops()).await.unwrap();
    assert!(!a.evaluate("f", "alice").unwrap().enabled);
    assert!(b.evaluate("f", "alice").unwrap().enabled);
}

#[tokio::test]
async fn a_log_written_under_a_larger_prerequisite_limit_stays_operable() {
    let events = temp_events();
    let clock = lighthouse_event_store::ManualClock::new(start());
    let wide = Limits {
        max_prerequisites: 8,
        ..Limits::default()
    };
    // f4 depends on f0..f3 (4 flags), allowed under the first limit.
    let flags = open_flags(&events, &clock, wide);
    flags
        .put("f0", &spec(true, 100.0), None, &ops())
        .await
        .unwrap();
    for i in 1..5 {
        let prev = format!("f{}", i - 1);
        flags
            .put(&format!("f{i}"), &requiring(&[prev.as_str()]), None, &ops())
            .await
            .unwrap();
    }
    flags
        .put("other", &spec(true, 50.0), None, &ops())
        .await
        .unwrap();
    drop(flags);
    // Reopened with a smaller limit: it opens, and writes that do not change
    // the graph (a kill, an unkill, a rollout change, a new flag within the
    // limit) go through; making the graph deeper does not.
    let narrow = Limits {
        max_prerequisites: 2,
        ..Limits::default()
    };
    let flags = open_flags(&events, &clock, narrow);
    assert!(flags.kill("other", None, &ops()).await.unwrap().changed);
    assert!(flags.unkill("other", None, &ops()).await.unwrap().changed);
    assert!(flags.kill("f4", None, &ops()).await.unwrap().changed);
    let mut s = requiring(&["f3"]);
    s.rollout_percent = 10.0;
    assert!(flags.put("f4", &s, None, &ops()).await.unwrap().changed);
    flags
        .put("g", &requiring(&["f0"]), None, &ops())
        .await
        .unwrap();
    assert!(matches!(
        flags.put("h", &requiring(&["f2"]), None, &ops()).await,
        Err(Error::TooManyPrerequisites { .. })
    ));
    assert!(matches!(
        flags.put("other", &requiring(&["f4"]), None, &ops()).await,
        Err(Error::TooManyPrerequisites { .. })
    ));
}

#[tokio::test]
async fn each_of_two_chains_over_a_lowered_limit_can_be_shrunk() {
    let events = temp_events();
    let clock = lighthouse_event_store::ManualClock::new(start());
    let wide = Limits {
        max_prerequisites: 8,
        ..Limits::default()
    };
    // Two independent chains a0 <- a1 <- .. <- a4 and b0 <- .. <- b4: a4 and
    // b4 each depend on 4 flags, a3 and b3 on 3.
    let flags = open_flags(&events, &clock, wide);
    for chain in ["a", "b"] {
        flags
            .put(&format!("{chain}0"), &spec(true, 100.0), None, &ops())
            .await
            .unwrap();
        for i in 1..5 {
            let prev = format!("{chain}{}", i - 1);
            flags
                .put(
                    &format!("{chain}{i}"),
                    &requiring(&[prev.as_str()]),
                    None,
                    &ops(),
                )
                .await
                .unwrap();
        }
    }
    drop(flags);
    let narrow = Limits {
        max_prerequisites: 2,
        ..Limits::default()
    };
    let flags = open_flags(&events, &clock, narrow);
    // Cutting a3 loose shrinks a3's and a4's closures: the other chain, still
    // over the limit but untouched, must not block it.
    let out = flags
        .put("a3", &requiring(&[]), None, &ops())
        .await
        .unwrap();
    assert!(out.changed);
    assert!(flags.get("a3").unwrap().requires.is_empty());
    // And the other way round.
    let out = flags
        .put("b3", &requiring(&[]), None, &ops())
        .await
        .unwrap();
    assert!(out.changed);
    // A closure over the limit that does not grow is no reason to refuse:
    // b4 now depends on b3 only; pointing it at b2 gives it 3 again (b2, b1,
    // b0), which is a growth past the limit, refused, naming b4.
    match flags.put("b4", &requiring(&["b2"]), None, &ops()).await {
        Err(Error::TooManyPrerequisites { key, count, limit }) => {
            assert_eq!((key.as_str(), count, limit), ("b4", 3, 2));
        }
        other => panic!("expected TooManyPrerequisites, got {other:?}"),
    }
    // Growing a closure that stays within the limit passes.
    flags
        .put("b4", &requiring(&["b3", "b0"]), None, &ops())
        .await
        .unwrap();
    // Growing a dependent's closure past the limit is refused and names it:
    // a3 requiring a1 would give a4 {a3, a1, a0}.
    match flags.put("a3", &requiring(&["a1"]), None, &ops()).await {
        Err(Error::TooManyPrerequisites { key, count, .. }) => {
            assert_eq!((key.as_str(), count), ("a4", 3));
        }
        other => panic!("expected TooManyPrerequisites, got {other:?}"),
    }
}

#[tokio::test]
async fn a_stale_unkill_cannot_lift_a_newer_kill() {
    let (events, flags, _clock) = fresh();
    flags
        .put("f", &spec(true, 100.0), None, &ops())
        .await
        .unwrap();
    // Operator A kills at version 1, lifts it at 2 (version 3), then decides
    // on that state; meanwhile operator B kills again (version 4).
    let killed = flags.kill("f", Some(1), &ops()).await.unwrap();
    assert!(killed.changed && killed.flag.killed);
    assert_eq!(killed.flag.version, 2);
    let live = flags.unkill("f", Some(2), &ops()).await.unwrap();
    assert_eq!((live.flag.killed, live.flag.version), (false, 3));
    let newer = flags
        .kill("f", None, &by("ops-2", "incident 43"))
        .await
        .unwrap();
    assert_eq!(newer.flag.version, 4);
    let head = events.head_seq();
    // A's unkill, still expecting version 3, is refused: the newer kill stays.
    match flags.unkill("f", Some(3), &ops()).await {
        Err(Error::VersionConflict {
            key,
            expected,
            actual,
        }) => assert_eq!((key.as_str(), expected, actual), ("f", 3, Some(4))),
        other => panic!("expected a version conflict, got {other:?}"),
    }
    assert!(flags.get("f").unwrap().killed);
    assert_eq!(events.head_seq(), head, "nothing appended");
    // A stale kill is refused the same way, and so is a no-op with a stale
    // version (the condition is checked first); a matching one is a no-op.
    assert!(matches!(
        flags.kill("f", Some(3), &ops()).await,
        Err(Error::VersionConflict {
            actual: Some(4),
            ..
        })
    ));
    let same = flags.kill("f", Some(4), &ops()).await.unwrap();
    assert_eq!((same.changed, same.flag.version), (false, 4));
    assert!(matches!(
        flags.unkill("f", Some(0), &ops()).await,
        Err(Error::VersionConflict { expected: 0, .. })
    ));
    // Without a version, as before.
    assert!(flags.unkill("f", None, &ops()).await.unwrap().changed);
    // An unknown flag is not found, whatever version was expected.
    for expected in [None, Some(0), Some(7)] {
        assert!(matches!(
            flags.kill("ghost", expected, &ops()).await,
            Err(Error::NotFound { .. })
        ));
    }
}
