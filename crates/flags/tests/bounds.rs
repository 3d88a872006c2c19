//! Bounds on memory: replay reads `$flags` in pages bounded in bytes, and the
//! flags together are bounded in size.

mod common;

use common::*;
use lighthouse_event_store::{Filter, ManualClock, Query};
use lighthouse_flags::{Error, FlagSpec, FlagStore, Limits, STREAM};

/// `n` agent ids of about 60 bytes each, distinct per `tag`.
fn long_ids(tag: &str, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("{tag}-{i:04}-{}", "x".repeat(50)))
        .collect()
}

/// A flag whose allow list is `ids` (and whose deny list is empty).
fn allowing(ids: Vec<String>) -> FlagSpec {
    FlagSpec {
        allow: ids,
        ..spec(true, 10.0)
    }
}

/// The flags' size as `GET` returns each, summed here from scratch.
fn summed(flags: &FlagStore) -> usize {
    flags
        .list()
        .iter()
        .map(|f| serde_json::to_vec(&**f).unwrap().len())
        .sum()
}

/// Every flag's history is exactly versions 1 to its version, once each.
fn assert_chains_whole(flags: &FlagStore) {
    for f in flags.list() {
        let versions: Vec<u64> = flags
            .history(&f.key, None, 1_000)
            .unwrap()
            .iter()
            .map(|c| c.version)
            .collect();
        assert_eq!(versions, (1..=f.version).collect::<Vec<_>>(), "{}", f.key);
    }
}

#[tokio::test]
async fn replay_reads_large_changes_through_a_small_byte_budget_and_applies_each_once() {
    let events = temp_events();
    let clock = ManualClock::new(start());
    let writer = open_flags(&events, &clock, Limits::default());
    // Each change carries two allow lists of ~19 KB (before and after).
    let budget = 64 << 10;
    let small = Limits {
        max_replay_page_bytes: budget,
        ..Limits::default()
    };
    // Opened now, so that it must catch up on everything below on its write.
    let lagging = open_flags(&events, &clock, small);
    for round in 0..6 {
        for k in 0..5 {
            let ids = long_ids(&format!("r{round}"), 300 + k);
            writer
                .put(&format!("f{k}"), &allowing(ids), None, &ops())
                .await
                .unwrap();
        }
    }
    writer.kill("f1", None, &ops()).await.unwrap();
    let changes = 31;
    assert_eq!(events.stream_version(STREAM), Some(changes - 1));
    // The budget does cut pages: the first holds few of the changes, though
    // more follow (so a replay that stopped at a short page would lose them).
    let first = events
        .read_bounded(
            &Query {
                min_version: Some(0),
                limit: 1_000,
                ..Query::new(Filter::stream(STREAM))
            },
            usize::MAX,
            budget,
        )
        .unwrap();
    assert!(first.events.len() < 10, "{}", first.events.len());
    assert!(first.next.is_some());

    // On open.
    let reader = open_flags(&events, &clock, small);
    assert_eq!(reader.list(), writer.list());
    assert_eq!(reader.total_bytes(), writer.total_bytes());
    assert_chains_whole(&reader);

    // On a write's catch-up: its append conflicts, it replays all 31 changes
    // through the budget and decides again on the state they produce.
    let out = lagging
        .put("f0", &spec(true, 50.0), None, &ops())
        .await
        .unwrap();
    assert_eq!(out.flag.version, 7);
    let fresh_reader = open_flags(&events, &clock, Limits::default());
    assert_eq!(lagging.list(), fresh_reader.list());
    assert_eq!(lagging.total_bytes(), summed(&fresh_reader));
    assert_chains_whole(&lagging);
}

#[tokio::test]
async fn a_put_that_would_pass_the_total_size_is_refused_and_changes_nothing() {
    let events = temp_events();
    let clock = ManualClock::new(start());
    // The size of one flag allowing 100 long ids, measured on a probe store.
    let big = {
        let probe = open_flags(&temp_events(), &clock, Limits::default());
        probe
            .put("a", &allowing(long_ids("a", 100)), None, &ops())
            .await
            .unwrap();
        probe.total_bytes()
    };
    let limits = Limits {
        max_total_flag_bytes: big * 5 / 2,
        ..Limits::default()
    };
    let flags = open_flags(&events, &clock, limits);
    for k in ["a", "b"] {
        flags
            .put(k, &allowing(long_ids(k, 100)), None, &ops())
            .await
            .unwrap();
    }
    assert_eq!(flags.total_bytes(), summed(&flags));
    let (total, head) = (flags.total_bytes(), events.stream_version(STREAM));

    let paths = |e: Error| match e {
        Error::Invalid { errors } => errors.into_iter().map(|e| e.path).collect::<Vec<_>>(),
        other => panic!("{other}"),
    };
    // A third one does not fit; nor does growing one of the two.
    let err = flags
        .put("c", &allowing(long_ids("c", 100)), None, &ops())
        .await
        .unwrap_err();
    assert_eq!(paths(err), [""]);
    let err = flags
        .put("a", &allowing(long_ids("a", 200)), Some(1), &ops())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Invalid { errors } if errors[0].message.contains("max_total_flag_bytes")),
        "{err}"
    );
    assert!(flags.get("c").is_none());
    assert_eq!(flags.get("a").unwrap().version, 1);
    assert_eq!(
        (flags.total_bytes(), events.stream_version(STREAM)),
        (total, head)
    );

    // Replacing takes the old size out: a shrunk flag frees room for "c".
    flags
        .put("a", &allowing(long_ids("a", 10)), Some(1), &ops())
        .await
        .unwrap();
    assert!(flags.total_bytes() < total - big / 2);
    flags
        .put("c", &allowing(long_ids("c", 100)), None, &ops())
        .await
        .unwrap();
    flags.kill("b", None, &ops()).await.unwrap();
    assert_eq!(flags.total_bytes(), summed(&flags));

    // The same total after a reopen, which rebuilds it from the log.
    let before = flags.total_bytes();
    drop(flags);
    let flags = open_flags(&events, &clock, limits);
    assert_eq!(flags.total_bytes(), before);
    assert_eq!(flags.total_bytes(), summed(&flags));

    // Under a limit lowered below the total, flags still shrink, stay the
    // same and are killed; only growing is refused.
    let lowered = open_flags(
        &events,
        &clock,
        Limits {
            max_total_flag_bytes: big,
            ..Limits::default()
        },
    );
    lowered.kill("c", None, &ops()).await.unwrap();
    lowered.unkill("b", None, &ops()).await.unwrap();
    lowered
        .put("c", &allowing(long_ids("c", 50)), None, &ops())
        .await
        .unwrap();
    // Switched off by another operator: only the fields the bridge sets (a
    // longer actor, a version with more digits) and `enabled`'s spelling grow.
    let mut off = allowing(long_ids("c", 50));
    off.enabled = false;
    lowered
        .put("c", &off, None, &common::by("ops-operator-10", "off"))
        .await
        .unwrap();
    let err = lowered
        .put("d", &spec(true, 1.0), None, &ops())
        .await
        .unwrap_err();
    assert_eq!(paths(err), [""]);
    assert_eq!(lowered.total_bytes(), summed(&lowered));
}
