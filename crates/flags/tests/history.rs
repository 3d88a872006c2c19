//! History of a flag, and the state rebuilt from the log on reopen.

mod common;

use common::*;
use lighthouse_event_store::{Durability, EventStore, ManualClock, StoreOptions};
use lighthouse_flags::{ChangeKind, Error, Limits, Variant};

#[tokio::test]
async fn history_lists_every_change_of_one_flag_in_order() {
    let (_events, flags, clock) = fresh();
    flags
        .put("f", &spec(true, 5.0), None, &by("ops-1", "stage 1"))
        .await
        .unwrap();
    flags
        .put("other", &spec(true, 1.0), None, &ops())
        .await
        .unwrap();
    clock.advance_millis(60_000);
    flags
        .put("f", &spec(true, 25.0), Some(1), &by("ops-2", "stage 2"))
        .await
        .unwrap();
    flags
        .put("other", &spec(true, 2.0), None, &ops())
        .await
        .unwrap();
    flags
        .kill("f", None, &by("ops-1", "p99 over budget"))
        .await
        .unwrap();
    flags
        .unkill("f", None, &by("ops-1", "fixed"))
        .await
        .unwrap();

    let h = flags.history("f", None, 100).unwrap();
    let summary: Vec<_> = h
        .iter()
        .map(|c| (c.version, c.kind, c.actor.as_str(), c.reason.as_str()))
        .collect();
    assert_eq!(
        summary,
        [
            (1, ChangeKind::Created, "ops-1", "stage 1"),
            (2, ChangeKind::Updated, "ops-2", "stage 2"),
            (3, ChangeKind::Killed, "ops-1", "p99 over budget"),
            (4, ChangeKind::Unkilled, "ops-1", "fixed"),
        ]
    );
    assert!(h[0].before.is_none());
    for pair in h.windows(2) {
        assert_eq!(pair[1].before.as_ref(), Some(&pair[0].after));
        assert!(pair[1].seq > pair[0].seq);
    }
    assert_eq!(h[3].after, *flags.get("f").unwrap());
    assert_eq!(
        h[1].after.updated_at.millis_since(h[0].after.updated_at),
        60_000
    );
    assert!(h.iter().all(|c| c.after.key == "f"));

    let wire = serde_json::to_value(&h[2]).unwrap();
    for field in [
        "version", "time", "actor", "reason", "before", "after", "type",
    ] {
        assert!(
            wire.get(field).is_some(),
            "history entry lacks {field}: {wire}"
        );
    }
    assert_eq!(wire["type"], "flag.killed");
}

/// The versions of `h`, in its order.
fn versions(h: &[lighthouse_flags::FlagChange]) -> Vec<u64> {
    h.iter().map(|c| c.version).collect()
}

/// Writes flag `f` `n` times (versions 1 to `n`, each a different percentage).
async fn put_versions(flags: &lighthouse_flags::FlagStore, n: u32) {
    for i in 1..=n {
        flags
            .put("f", &spec(true, f64::from(i)), None, &ops())
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn history_pages_backwards_and_is_bounded() {
    let events = temp_events();
    let clock = ManualClock::new(start());
    let limits = Limits {
        max_history_page: 4,
        ..Limits::default()
    };
    let flags = open_flags(&events, &clock, limits);
    put_versions(&flags, 10).await;
    // Asking for more than the page limit returns the limit: the newest four.
    let newest = flags.history("f", None, 1_000).unwrap();
    assert_eq!(versions(&newest), [7, 8, 9, 10]);
    let older = flags.history("f", Some(7), 3).unwrap();
    assert_eq!(versions(&older), [4, 5, 6]);
    let oldest = flags.history("f", Some(4), 4).unwrap();
    assert_eq!(versions(&oldest), [1, 2, 3]);
    assert!(flags.history("f", Some(1), 4).unwrap().is_empty());
    assert!(matches!(
        flags.history("ghost", None, 4),
        Err(Error::NotFound { .. })
    ));
}

#[tokio::test]
async fn a_history_page_is_bounded_in_bytes_and_keeps_the_newest() {
    let events = temp_events();
    let clock = ManualClock::new(start());
    // Room for about two and a half updates of this flag.
    let one = {
        let probe = open_flags(&temp_events(), &clock, Limits::default());
        probe
            .put("f", &spec(true, 1.0), None, &ops())
            .await
            .unwrap();
        probe
            .put("f", &spec(true, 2.0), None, &ops())
            .await
            .unwrap();
        serde_json::to_vec(&probe.history("f", None, 1).unwrap()[0])
            .unwrap()
            .len()
    };
    let limits = Limits {
        max_history_page_bytes: one * 5 / 2,
        ..Limits::default()
    };
    let flags = open_flags(&events, &clock, limits);
    put_versions(&flags, 7).await;
    // The newest changes that fit, and paging on from the oldest of them
    // reaches every change once.
    let mut pages = Vec::new();
    let mut before = None;
    loop {
        let page = flags.history("f", before, 1_000).unwrap();
        assert!(!page.is_empty() && page.len() <= 2, "{:?}", versions(&page));
        pages.push(versions(&page));
        if page[0].version == 1 {
            break;
        }
        before = Some(page[0].version);
    }
    assert_eq!(pages[0], [6, 7]);
    let all: Vec<u64> = pages.iter().rev().flatten().copied().collect();
    assert_eq!(all, (1..=7).collect::<Vec<_>>());
    // A change larger than the whole budget still comes, alone.
    let tiny = open_flags(
        &events,
        &clock,
        Limits {
            max_history_page_bytes: 1,
            ..Limits::default()
        },
    );
    assert_eq!(versions(&tiny.history("f", None, 1_000).unwrap()), [7]);
}

fn durable(dir: &std::path::Path) -> EventStore {
    EventStore::open(dir, StoreOptions::new(KEY).durability(Durability::Durable)).unwrap()
}

#[tokio::test]
async fn reopening_rebuilds_exactly_the_state_before() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(start());
    let agents: Vec<String> = (0..500).map(|i| format!("agent-{i}")).collect();
    let keys = ["base", "mid", "top", "split", "dark"];
    let (before_list, before_evals, before_history) = {
        let events = durable(dir.path());
        let flags = open_flags(&events, &clock, Limits::default());
        flags
            .put("base", &spec(true, 80.0), None, &ops())
            .await
            .unwrap();
        flags
            .put("mid", &requiring(&["base"]), None, &ops())
            .await
            .unwrap();
        let mut top = requiring(&["mid"]);
        top.rollout_percent = 50.0;
        top.allow = vec!["agent-1".into()];
        top.deny = vec!["agent-2".into()];
        flags.put("top", &top, None, &ops()).await.unwrap();
        let mut split = spec(true, 33.33);
        split.variants = vec![Variant::new("a", 250), Variant::new("b", 750)];
        flags.put("split", &split, None, &ops()).await.unwrap();
        clock.advance_millis(10);
        flags
            .put("split", &spec(true, 66.66), None, &ops())
            .await
            .unwrap();
        flags
            .put("dark", &spec(false, 100.0), None, &ops())
            .await
            .unwrap();
        flags.kill("base", None, &ops()).await.unwrap();
        flags.unkill("base", None, &ops()).await.unwrap();
        flags.kill("dark", None, &ops()).await.unwrap();
        events.flush().await.unwrap();
        let evals: Vec<_> = keys
            .iter()
            .flat_map(|k| agents.iter().map(|a| flags.evaluate(k, a).unwrap()))
            .collect();
        let history: Vec<_> = keys
            .iter()
            .map(|k| flags.history(k, None, 1000).unwrap())
            .collect();
        (flags.list(), evals, history)
    };
    // Both stores are dropped: the event store is closed and reopened from disk.
    let events = durable(dir.path());
    let flags = open_flags(&events, &clock, Limits::default());
    assert_eq!(flags.list(), before_list);
    let evals: Vec<_> = keys
        .iter()
        .flat_map(|k| agents.iter().map(|a| flags.evaluate(k, a).unwrap()))
        .collect();
    assert_eq!(evals, before_evals);
    let history: Vec<_> = keys
        .iter()
        .map(|k| flags.history(k, None, 1000).unwrap())
        .collect();
    assert_eq!(history, before_history);
    // Writing continues the versions and the chain where they stopped.
    let out = flags
        .put("split", &spec(true, 70.0), Some(2), &ops())
        .await
        .unwrap();
    assert_eq!(out.flag.version, 3);
    assert_eq!(flags.history("split", None, 10).unwrap().len(), 3);
}
