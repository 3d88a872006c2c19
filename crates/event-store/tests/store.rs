//! Behaviour of the store through its public API.

use std::sync::Arc;

use lighthouse_event_store::{
    Durability, Error, EventStore, ExpectedVersion, Filter, Limits, ManualClock, NewEvent, Order,
    Query, StoreOptions, Timestamp,
};
use serde_json::json;

const KEY: &[u8] = b"test key: not a secret, 32 bytes";

fn opts() -> StoreOptions {
    StoreOptions::new(KEY).durability(Durability::Buffered)
}

fn ev(stream: &str, t: &str, n: i64) -> NewEvent {
    NewEvent::new(stream, t, json!({ "n": n }))
}

#[tokio::test]
async fn seq_and_version_start_at_one_and_zero_without_gaps() {
    let s = EventStore::open_temporary(opts()).unwrap();
    let a = s.append_one(ev("a", "x.y", 1)).await.unwrap();
    let b = s.append_one(ev("b", "x.y", 2)).await.unwrap();
    let c = s.append_one(ev("a", "x.y", 3)).await.unwrap();
    assert_eq!((a.seq, a.version), (1, 0));
    assert_eq!((b.seq, b.version), (2, 0));
    assert_eq!((c.seq, c.version), (3, 1));
    assert_eq!(s.head_seq(), 3);
    assert_eq!(s.stream_version("a"), Some(1));
    assert_eq!(s.stream_version("zzz"), None);
    let e = s.get(3).unwrap().unwrap();
    assert_eq!(e.stream, "a");
    assert_eq!(e.data, json!({"n": 3}));
    assert_eq!(e.id.len(), 26, "store ids are ULIDs");
    assert!(s.get(4).unwrap().is_none());
}

#[tokio::test]
async fn a_batch_is_one_atomic_unit_across_streams() {
    let s = EventStore::open_temporary(opts()).unwrap();
    s.append_one(ev("a", "t", 0)).await.unwrap();
    // The second event's condition fails, so the first must not be written either.
    let err = s
        .append(vec![
            ev("b", "t", 1).expect(ExpectedVersion::NoStream),
            ev("a", "t", 2).expect(ExpectedVersion::Exact(5)),
        ])
        .await
        .unwrap_err();
    match err {
        Error::VersionConflict { stream, actual, .. } => {
            assert_eq!(stream, "a");
            assert_eq!(actual, Some(0));
        }
        e => panic!("expected a conflict, got {e}"),
    }
    assert_eq!(s.head_seq(), 1);
    assert_eq!(s.stream_version("b"), None);
    let out = s
        .append(vec![
            ev("b", "t", 1).expect(ExpectedVersion::NoStream),
            ev("b", "t", 2).expect(ExpectedVersion::Exact(0)),
            ev("a", "t", 3).expect(ExpectedVersion::Exact(0)),
        ])
        .await
        .unwrap();
    let got: Vec<_> = out.events.iter().map(|a| (a.seq, a.version)).collect();
    assert_eq!(got, vec![(2, 0), (3, 1), (4, 1)]);
}

#[tokio::test]
async fn version_conflicts_carry_the_actual_version() {
    let s = EventStore::open_temporary(opts()).unwrap();
    let e = s
        .append_one(ev("a", "t", 0).expect(ExpectedVersion::Exact(0)))
        .await
        .unwrap_err();
    assert!(
        matches!(e, Error::VersionConflict { actual: None, .. }),
        "{e}"
    );
    s.append_one(ev("a", "t", 0).expect(ExpectedVersion::NoStream))
        .await
        .unwrap();
    let e = s
        .append_one(ev("a", "t", 0).expect(ExpectedVersion::NoStream))
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::VersionConflict {
                actual: Some(0),
                ..
            }
        ),
        "{e}"
    );
}

#[tokio::test]
async fn a_repeated_id_returns_the_original_result() {
    let s = EventStore::open_temporary(opts()).unwrap();
    let first = s
        .append_one(
            ev("a", "t", 1)
                .with_id("client-1")
                .expect(ExpectedVersion::NoStream),
        )
        .await
        .unwrap();
    // Same id, even with a condition that would now fail: the original result.
    let out = s
        .append(vec![
            ev("a", "t", 1)
                .with_id("client-1")
                .expect(ExpectedVersion::NoStream),
        ])
        .await
        .unwrap();
    assert!(out.deduplicated);
    assert_eq!(out.events, vec![first.clone()]);
    assert_eq!(s.head_seq(), 1);
    // A batch mixing a known and a new id is refused as a whole.
    let e = s
        .append(vec![
            ev("a", "t", 2).with_id("client-1"),
            ev("a", "t", 3).with_id("client-2"),
        ])
        .await
        .unwrap_err();
    assert!(matches!(e, Error::DuplicateId { .. }), "{e}");
    // One id twice in a batch is refused before anything is written.
    let e = s
        .append(vec![
            ev("a", "t", 2).with_id("client-9"),
            ev("a", "t", 3).with_id("client-9"),
        ])
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::RepeatedId { id } if id == "client-9"),
        "{e}"
    );
    assert_eq!(s.head_seq(), 1);
    // Store-chosen ids are found too.
    s.append_one(ev("b", "t", 1)).await.unwrap();
    let generated = s.get(2).unwrap().unwrap().id;
    let out = s
        .append(vec![ev("c", "t", 1).with_id(generated)])
        .await
        .unwrap();
    assert!(out.deduplicated);
    assert_eq!(out.events[0].seq, 2);
}

#[tokio::test]
async fn duplicate_ids_inside_one_group_commit_are_written_once() {
    let s = EventStore::open_temporary(opts()).unwrap();
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.append(vec![ev("a", "t", 1).with_id("same")])
                .await
                .unwrap()
        }));
    }
    let mut seqs = Vec::new();
    for t in tasks {
        seqs.push(t.await.unwrap().events[0].seq);
    }
    assert!(seqs.iter().all(|&x| x == 1), "{seqs:?}");
    assert_eq!(s.head_seq(), 1);
}

#[tokio::test]
async fn names_and_sizes_are_checked() {
    let limits = Limits {
        max_event_bytes: 1000,
        max_batch_events: 3,
        max_batch_bytes: 2000,
    };
    let s = EventStore::open_temporary(opts().limits(limits)).unwrap();
    for bad in [
        ev("", "t", 0),
        ev("a b", "t", 0),
        ev("a", "Bad", 0),
        ev("a", "t", 0).with_agent("Alice"),
    ] {
        assert!(matches!(
            s.append_one(bad).await,
            Err(Error::InvalidName { .. })
        ));
    }
    let big = NewEvent::new("a", "t", json!("x".repeat(1000)));
    assert!(matches!(
        s.append_one(big).await,
        Err(Error::TooLarge { what: "event", .. })
    ));
    let many = (0..4).map(|i| ev("a", "t", i)).collect();
    assert!(matches!(
        s.append(many).await,
        Err(Error::TooLarge {
            what: "batch events",
            ..
        })
    ));
    let fat = (0..3)
        .map(|_| NewEvent::new("a", "t", json!("y".repeat(800))))
        .collect();
    assert!(matches!(
        s.append(fat).await,
        Err(Error::TooLarge {
            what: "batch bytes",
            ..
        })
    ));
    assert!(matches!(s.append(vec![]).await, Err(Error::EmptyBatch)));
    assert_eq!(s.head_seq(), 0, "nothing was written");
    // Any JSON is stored as given.
    let odd = json!({"<script>": "DROP TABLE", "n": [null, 1.5e300, "\u{0}"]});
    s.append_one(NewEvent::new("a", "t", odd.clone()))
        .await
        .unwrap();
    assert_eq!(s.get(1).unwrap().unwrap().data, odd);
}

async fn sample_store(clock: &ManualClock) -> EventStore {
    let s = EventStore::open_temporary(opts().clock(Arc::new(clock.clone()))).unwrap();
    for i in 0..60i64 {
        let stream = format!("s{}", i % 3);
        let t = if i % 2 == 0 { "even.n" } else { "odd.n" };
        let mut e = ev(&stream, t, i).with_agent(format!("agent{}", i % 4));
        if i % 5 == 0 {
            e = e.with_correlation_id(format!("req-{}", i / 10));
        }
        s.append_one(e).await.unwrap();
        clock.advance_millis(1000);
    }
    s
}

fn seqs(p: &lighthouse_event_store::Page) -> Vec<u64> {
    p.events.iter().map(|e| e.seq).collect()
}

#[tokio::test]
async fn every_filter_reads_through_its_index_with_a_cursor() {
    let clock = ManualClock::new(Timestamp::from_unix_secs(1_800_000_000));
    let s = sample_store(&clock).await;
    // By stream, with versions.
    let q = Query {
        min_version: Some(2),
        max_version: Some(4),
        ..Query::new(Filter::stream("s1"))
    };
    let p = s.read(&q).unwrap();
    assert_eq!(
        p.events.iter().map(|e| e.version).collect::<Vec<_>>(),
        vec![2, 3, 4]
    );
    assert_eq!(seqs(&p), vec![8, 11, 14]);
    // By type, paged.
    let q = Query {
        limit: 7,
        ..Query::new(Filter::event_type("odd.n"))
    };
    let mut all = Vec::new();
    let mut page = s.read(&q).unwrap();
    loop {
        all.extend(seqs(&page));
        match page.next {
            Some(n) => page = s.read(&q.clone().resume(n)).unwrap(),
            None => break,
        }
    }
    assert_eq!(all, (1..=60).filter(|x| x % 2 == 0).collect::<Vec<_>>());
    // By agent, descending.
    let q = Query {
        order: Order::Descending,
        limit: 3,
        ..Query::new(Filter {
            agent: Some("agent1".into()),
            ..Filter::default()
        })
    };
    let p = s.read(&q).unwrap();
    assert_eq!(seqs(&p), vec![58, 54, 50]);
    let p = s.read(&q.clone().resume(p.next.unwrap())).unwrap();
    assert_eq!(seqs(&p), vec![46, 42, 38]);
    // By correlation id.
    let q = Query::new(Filter {
        correlation_id: Some("req-2".into()),
        ..Filter::default()
    });
    assert_eq!(seqs(&s.read(&q).unwrap()), vec![21, 26]);
    // Combined filters.
    let q = Query::new(Filter {
        stream: Some("s0".into()),
        event_type: Some("even.n".into()),
        agent: Some("agent0".into()),
        ..Filter::default()
    });
    assert_eq!(seqs(&s.read(&q).unwrap()), vec![1, 13, 25, 37, 49]);
    // By time range: since inclusive, until exclusive.
    let t0 = Timestamp::from_unix_secs(1_800_000_000);
    let q = Query {
        since: Some(t0.add_millis(10_000)),
        until: Some(t0.add_millis(13_000)),
        ..Query::default()
    };
    assert_eq!(seqs(&s.read(&q).unwrap()), vec![11, 12, 13]);
    // By position, both directions.
    let q = Query {
        after: Some(57),
        ..Query::default()
    };
    assert_eq!(seqs(&s.read(&q).unwrap()), vec![58, 59, 60]);
    let q = Query {
        before: Some(4),
        order: Order::Descending,
        ..Query::default()
    };
    assert_eq!(seqs(&s.read(&q).unwrap()), vec![3, 2, 1]);
    // Prefix filters.
    let q = Query::new(Filter {
        type_prefix: Some("odd".into()),
        ..Filter::default()
    });
    assert_eq!(s.read(&q).unwrap().events.len(), 30);
    // Unknown values and empty windows.
    assert!(
        s.read(&Query::new(Filter::stream("nope")))
            .unwrap()
            .events
            .is_empty()
    );
    let q = Query {
        after: Some(10),
        before: Some(5),
        ..Query::default()
    };
    assert!(s.read(&q).unwrap().events.is_empty());
}

#[tokio::test]
async fn state_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = EventStore::open(dir.path(), StoreOptions::new(KEY)).unwrap();
        s.append(vec![ev("a", "t", 1), ev("b", "t", 2)])
            .await
            .unwrap();
        s.append_one(ev("a", "t", 3).with_id("c-1")).await.unwrap();
        s.save_snapshot("proj", 2, b"state at 2").await.unwrap();
    }
    let s = EventStore::open(dir.path(), StoreOptions::new(KEY)).unwrap();
    assert_eq!(s.head_seq(), 3);
    assert_eq!(s.stream_version("a"), Some(1));
    let snap = s.load_snapshot("proj").unwrap().unwrap();
    assert_eq!((snap.seq, snap.data.as_slice()), (2, &b"state at 2"[..]));
    assert!(s.load_snapshot("other").unwrap().is_none());
    let again = s
        .append(vec![ev("a", "t", 3).with_id("c-1")])
        .await
        .unwrap();
    assert!(again.deduplicated);
    let next = s.append_one(ev("a", "t", 4)).await.unwrap();
    assert_eq!((next.seq, next.version), (4, 2));
    assert!(s.verify().unwrap().ok());
    drop(s);
    assert!(matches!(
        EventStore::open(dir.path(), StoreOptions::new(b"another key")),
        Err(Error::WrongKey)
    ));
}

#[tokio::test]
async fn time_never_decreases_even_when_the_clock_does() {
    let clock = ManualClock::new(Timestamp::from_unix_secs(2_000_000_000));
    let s = EventStore::open_temporary(opts().clock(Arc::new(clock.clone()))).unwrap();
    s.append_one(ev("a", "t", 1)).await.unwrap();
    clock.advance_millis(-60_000);
    s.append_one(ev("a", "t", 2)).await.unwrap();
    let (a, b) = (s.get(1).unwrap().unwrap(), s.get(2).unwrap().unwrap());
    assert!(b.time >= a.time);
    assert!(b.id > a.id, "ids sort by time");
}

#[tokio::test]
async fn a_damaged_snapshot_is_refused_and_left_out_of_a_backup() {
    let dir = tempfile::tempdir().unwrap();
    let s = EventStore::open(dir.path().join("s"), opts()).unwrap();
    s.append_one(ev("a", "t", 1)).await.unwrap();
    s.save_snapshot("p", 1, b"good").await.unwrap();
    s.save_snapshot("q", 1, b"will be damaged").await.unwrap();
    let path = dir.path().join("s").join("snapshots").join("q.snap");
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x20;
    std::fs::write(&path, bytes).unwrap();
    assert!(matches!(s.load_snapshot("q"), Err(Error::Corrupt { .. })));
    let rep = s.backup(dir.path().join("b.lhbk")).unwrap();
    assert_eq!((rep.head_seq, rep.snapshots), (1, 1));
    let (r, rr) =
        EventStore::restore(dir.path().join("b.lhbk"), dir.path().join("r"), opts()).unwrap();
    assert_eq!(rr.snapshots, 1);
    assert_eq!(r.load_snapshot("p").unwrap().unwrap().data, b"good");
    assert!(r.load_snapshot("q").unwrap().is_none());
}

#[test]
fn a_store_exists_once_opened_and_not_before() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    assert!(!EventStore::exists(&store));
    std::fs::create_dir(&store).unwrap();
    assert!(!EventStore::exists(&store), "an empty folder is no store");
    drop(EventStore::open(&store, opts()).unwrap());
    assert!(EventStore::exists(&store));
}

/// A backup file is private to its owner (it holds the whole log), replaces a
/// symlink at the target instead of writing through it, and a directory as
/// the target is refused by name, leaving nothing behind.
#[tokio::test]
async fn a_backup_is_private_never_follows_a_symlink_and_refuses_a_directory() {
    use std::os::unix::fs::PermissionsExt;
    let clock = ManualClock::new(Timestamp::from_unix_secs(1_800_000_000));
    let s = sample_store(&clock).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("b.lhbk");
    s.backup(&file).unwrap();
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let elsewhere = dir.path().join("elsewhere");
    std::fs::write(&elsewhere, b"not to be touched").unwrap();
    let link = dir.path().join("link.lhbk");
    std::os::unix::fs::symlink(&elsewhere, &link).unwrap();
    s.backup(&link).unwrap();
    assert_eq!(std::fs::read(&elsewhere).unwrap(), b"not to be touched");
    assert!(!std::fs::symlink_metadata(&link).unwrap().is_symlink());
    assert_eq!(
        std::fs::read(&link).unwrap().len(),
        std::fs::read(&file).unwrap().len()
    );
    let sub = dir.path().join("sub");
    std::fs::create_dir(&sub).unwrap();
    match s.backup(&sub) {
        Err(e @ Error::BackupFile { .. }) => {
            let m = e.to_string();
            assert!(m.contains("directory") && m.contains("sub"), "{m}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(std::fs::read_dir(&sub).unwrap().count(), 0);
    let mut names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["b.lhbk", "elsewhere", "link.lhbk", "sub"]);
}

#[tokio::test]
async fn backup_and_restore_give_back_the_same_store() {
    let clock = ManualClock::new(Timestamp::from_unix_secs(1_800_000_000));
    let s = sample_store(&clock).await;
    s.save_snapshot("p", 30, b"snap").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("b.lhbk");
    let rep = s.backup(&file).unwrap();
    assert_eq!((rep.head_seq, rep.snapshots), (60, 1));
    let target = dir.path().join("restored");
    let (r, rr) = EventStore::restore(&file, &target, opts()).unwrap();
    assert_eq!(rr.head_seq, 60);
    assert!(r.verify().unwrap().ok());
    for q in [
        Query::new(Filter::stream("s2")),
        Query::new(Filter::event_type("odd.n")),
        Query {
            order: Order::Descending,
            limit: 1000,
            ..Query::default()
        },
    ] {
        assert_eq!(r.read(&q).unwrap(), s.read(&q).unwrap());
    }
    assert_eq!(r.load_snapshot("p").unwrap().unwrap().data, b"snap");
    // Restoring over a non-empty directory, with a wrong key, or from a damaged
    // file is refused and leaves no partial store behind.
    assert!(matches!(
        EventStore::restore(&file, &target, opts()),
        Err(Error::NotEmpty { dir }) if dir == target
    ));
    let other = dir.path().join("other");
    assert!(matches!(
        EventStore::restore(&file, &other, StoreOptions::new(b"wrong")),
        Err(Error::WrongKey)
    ));
    let mut bytes = std::fs::read(&file).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    let bad = dir.path().join("bad.lhbk");
    std::fs::write(&bad, &bytes).unwrap();
    assert!(matches!(
        EventStore::restore(&bad, &other, opts()),
        Err(Error::InvalidBackup(_))
    ));
    assert!(!other.exists());
    std::fs::write(&bad, &bytes[..mid]).unwrap();
    assert!(matches!(
        EventStore::restore(&bad, &other, opts()),
        Err(Error::InvalidBackup(_))
    ));
    assert!(!other.exists());
    // A snapshot changed in the file, its checksum recomputed to match (the
    // checksum is a plain SHA-256 anyone can recompute), fails its own MAC.
    let mut bytes = std::fs::read(&file).unwrap();
    let at = bytes.windows(4).rposition(|w| w == b"snap").unwrap();
    bytes[at] ^= 0x20;
    let body = bytes.len() - (1 + 4 + 32);
    let digest = {
        use sha2::Digest;
        sha2::Sha256::digest(&bytes[..body])
    };
    bytes[body + 5..].copy_from_slice(&digest);
    std::fs::write(&bad, &bytes).unwrap();
    match EventStore::restore(&bad, &other, opts()) {
        Err(Error::InvalidBackup(reason)) => assert!(reason.contains("MAC"), "{reason}"),
        other => panic!(
            "a forged snapshot was restored: {:?}",
            other.map(|(_, r)| r)
        ),
    }
    assert!(!other.exists());
}

#[tokio::test]
async fn subscription_switches_from_disk_to_live_without_gap_or_duplicate() {
    let s = EventStore::open_temporary(opts()).unwrap();
    for i in 0..10 {
        s.append_one(ev("a", "t", i)).await.unwrap();
    }
    let mut sub = s.subscribe(4, Filter::all());
    let writer = {
        let s = s.clone();
        tokio::spawn(async move {
            for i in 10..40 {
                s.append_one(ev(if i % 2 == 0 { "a" } else { "b" }, "t", i))
                    .await
                    .unwrap();
            }
        })
    };
    let mut got = Vec::new();
    while got.len() < 36 {
        got.push(sub.next().await.unwrap().seq);
    }
    writer.await.unwrap();
    assert_eq!(got, (5..=40).collect::<Vec<_>>());
    // A filtered subscription sees only its stream.
    let mut sub = s.subscribe(0, Filter::stream("b"));
    let mut got = Vec::new();
    for _ in 0..15 {
        got.push(sub.next().await.unwrap().seq);
    }
    assert_eq!(got, (12..=40).step_by(2).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_slow_live_subscriber_gets_lagged_and_resumes_exactly() {
    let s = EventStore::open_temporary(opts().live_buffer(8)).unwrap();
    let mut sub = s.subscribe(0, Filter::all());
    s.append_one(ev("a", "t", 0)).await.unwrap();
    assert_eq!(sub.next().await.unwrap().seq, 1);
    for i in 0..50 {
        s.append_one(ev("a", "t", i)).await.unwrap();
    }
    let last = match sub.next().await {
        Err(Error::Lagged { last_seq }) => last_seq,
        other => panic!("expected lagged, got {other:?}"),
    };
    assert_eq!(last, 1);
    let mut resumed = s.subscribe(last, Filter::all());
    let mut got = Vec::new();
    for _ in 0..50 {
        got.push(resumed.next().await.unwrap().seq);
    }
    assert_eq!(got, (2..=51).collect::<Vec<_>>());
}

#[tokio::test]
async fn durable_appends_from_many_tasks_share_flushes() {
    let s = EventStore::open_temporary(StoreOptions::new(KEY)).unwrap();
    let mut tasks = Vec::new();
    for w in 0..32 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..20 {
                s.append_one(ev(&format!("w{w}"), "t", i)).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(s.head_seq(), 640);
    for w in 0..32 {
        assert_eq!(s.stream_version(&format!("w{w}")), Some(19));
    }
    assert!(s.verify().unwrap().ok());
}

/// A store closed by this process can be opened again at once, many times over
/// (sled releases its directory lock from its I/O threads a moment after the
/// last handle goes; `open` waits for it), and everything appended is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_store_reopens_at_once_with_everything_in_it() {
    let dir = tempfile::tempdir().unwrap();
    for round in 0..15i64 {
        let store = EventStore::open(dir.path(), opts()).unwrap();
        assert_eq!(store.head_seq(), round as u64);
        store.append_one(ev("s-1", "t", round)).await.unwrap();
        drop(store);
    }
    let store = EventStore::open(dir.path(), opts()).unwrap();
    assert_eq!(store.head_seq(), 15);
    assert!(store.verify().unwrap().ok());
    // A second handle while the first is open is refused (after the wait).
    assert!(EventStore::open(dir.path(), opts()).is_err());
}

/// `append_then` answers through the function on the writer thread: the
/// outcome `append` would give, before any subscriber sees the events; errors
/// found by the writer reach it; a batch refused before it is queued is an
/// error of the call and the function never runs.
#[tokio::test]
async fn append_then_answers_through_the_function_before_subscribers_see_it() {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let s = EventStore::open_temporary(opts()).unwrap();
    let mut sub = s.subscribe(0, Filter::all());
    // Each answer: (seq, version) per event, or the error's text.
    type Answers = Arc<Mutex<Vec<Result<Vec<(u64, u64)>, String>>>>;
    let answered: Answers = Arc::default();
    let record = |answered: &Arc<Mutex<Vec<_>>>| {
        let answered = answered.clone();
        move |r: lighthouse_event_store::Result<lighthouse_event_store::AppendOutcome>| {
            answered.lock().unwrap().push(
                r.map(|o| o.events.iter().map(|a| (a.seq, a.version)).collect())
                    .map_err(|e| e.to_string()),
            );
        }
    };
    s.append_then(vec![ev("a", "t", 1), ev("a", "t", 2)], record(&answered))
        .await
        .unwrap();
    // The subscriber sees the batch only after the function has run.
    assert_eq!(sub.next().await.unwrap().seq, 1);
    assert_eq!(
        answered.lock().unwrap().as_slice(),
        &[Ok(vec![(1, 0), (2, 1)])]
    );
    assert_eq!(sub.next().await.unwrap().seq, 2);
    // A version conflict is the function's answer.
    s.append_then(
        vec![ev("a", "t", 3).expect(ExpectedVersion::NoStream)],
        record(&answered),
    )
    .await
    .unwrap();
    s.flush().await.unwrap();
    {
        let got = answered.lock().unwrap();
        assert_eq!(got.len(), 2);
        let err = got[1].as_ref().unwrap_err();
        assert!(err.contains("version"), "{err}");
    }
    // Refused before it is queued: an error of the call; the function is dropped
    // unused.
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let e = s
        .append_then(Vec::new(), move |_| {
            c.fetch_add(1, Ordering::SeqCst);
        })
        .await
        .unwrap_err();
    assert!(matches!(e, Error::EmptyBatch), "{e}");
    s.flush().await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    assert_eq!(s.head_seq(), 2);
}

/// A function may hold the last handle to the store: dropping it on the writer
/// thread closes the store without the writer waiting for itself, and what was
/// appended is on disk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_handle_may_go_inside_an_append_then_function() {
    use std::sync::atomic::{AtomicBool, Ordering};
    // A writer that tried to join itself would panic ("Resource deadlock
    // avoided") and still leave the data on disk: watch for the panic.
    static WRITER_PANICKED: AtomicBool = AtomicBool::new(false);
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        // Only this failure: another test's function panics on the writer
        // thread on purpose.
        if std::thread::current().name() == Some("lighthouse-store-writer")
            && info.to_string().contains("join")
        {
            WRITER_PANICKED.store(true, Ordering::SeqCst);
        }
        previous(info);
    }));
    let dir = tempfile::tempdir().unwrap();
    let store = EventStore::open(dir.path(), opts()).unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let (gone_tx, gone_rx) = std::sync::mpsc::channel::<()>();
    let held = store.clone();
    store
        .append_then(vec![ev("a", "t", 1)], move |r| {
            // Only once the test's own handle is gone is `held` the last one.
            let _ = gone_rx.recv_timeout(std::time::Duration::from_secs(10));
            let _ = tx.send(r.map(|o| o.events[0].seq));
            drop(held);
        })
        .await
        .unwrap();
    drop(store);
    gone_tx.send(()).unwrap();
    assert_eq!(rx.await.unwrap().unwrap(), 1);
    // The writer exits by itself and sled lets go of the directory.
    let store = EventStore::open(dir.path(), opts()).unwrap();
    assert_eq!(store.head_seq(), 1);
    assert!(store.verify().unwrap().ok());
    assert!(
        !WRITER_PANICKED.load(Ordering::SeqCst),
        "the writer panicked"
    );
}

/// The indexes a reopen rebuilds from the log (on two threads, in batches)
/// answer every exact filter as the ones the writer kept did: over 10,000
/// events (several rebuild batches), streams of one to many events with names
/// of varied lengths, agents, types and correlation ids, some
/// absent; and an id appended before the reopen is still found.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn indexes_rebuilt_on_open_answer_as_the_writers_did() {
    let dir = tempfile::tempdir().unwrap();
    let stream = |i: u64| match i % 3 {
        0 => format!("s-{}", i % 4001),
        1 => format!("el:{}-{}", i % 997, "x".repeat((i % 200) as usize)),
        _ => format!("m-{}", i % 7),
    };
    let filters = |i: u64| {
        vec![
            Filter::stream(stream(i)),
            Filter::event_type(format!("t.{}", i % 5)),
            Filter {
                agent: Some(format!("agent-{}", i % 13)),
                ..Filter::all()
            },
            Filter {
                correlation_id: Some(format!("corr-{}", i % 2011)),
                ..Filter::all()
            },
        ]
    };
    let read_all = |s: &EventStore, f: &Filter| {
        let mut q = Query {
            limit: 1_000,
            ..Query::new(f.clone())
        };
        let mut seqs = Vec::new();
        loop {
            let page = s.read(&q).unwrap();
            seqs.extend(page.events.iter().map(|e| (e.seq, e.version)));
            match page.next {
                Some(n) => q = q.resume(n),
                None => return seqs,
            }
        }
    };
    let probes: Vec<u64> = (0..10_000).step_by(487).collect();
    // Every probe filter's events (seq, version), and its stream's version.
    let answers = |s: &EventStore| -> Vec<_> {
        probes
            .iter()
            .flat_map(|&i| filters(i))
            .map(|f| {
                let v = f.stream.as_deref().and_then(|st| s.stream_version(st));
                (read_all(s, &f), v)
            })
            .collect()
    };
    let before = {
        let s = EventStore::open(dir.path(), opts()).unwrap();
        for chunk in (0..10_000u64).collect::<Vec<_>>().chunks(500) {
            let batch = chunk
                .iter()
                .map(|&i| {
                    let mut e = ev(&stream(i), &format!("t.{}", i % 5), i as i64)
                        .with_agent(format!("agent-{}", i % 13));
                    if i % 4 != 0 {
                        e = e.with_correlation_id(format!("corr-{}", i % 2011));
                    }
                    if i == 4242 {
                        e = e.with_id("the-one-id");
                    }
                    e
                })
                .collect();
            s.append(batch).await.unwrap();
        }
        s.flush().await.unwrap();
        let answers = answers(&s);
        assert!(answers.iter().all(|(seqs, _)| !seqs.is_empty()));
        answers
    };
    let s = EventStore::open(dir.path(), opts()).unwrap();
    assert_eq!(s.head_seq(), 10_000);
    assert_eq!(before, answers(&s));
    let again = s
        .append(vec![ev(&stream(4242), "t.2", 4242).with_id("the-one-id")])
        .await
        .unwrap();
    assert!(again.deduplicated);
    assert_eq!(again.events[0].seq, 4243);
}

/// A function that panics does not take the writer down: the append stands and
/// the store goes on appending.
#[tokio::test]
async fn a_panicking_append_then_function_leaves_the_store_working() {
    let s = EventStore::open_temporary(opts()).unwrap();
    s.append_then(vec![ev("a", "t", 1)], |_| panic!("a caller's bug"))
        .await
        .unwrap();
    let next = s.append_one(ev("a", "t", 2)).await.unwrap();
    assert_eq!((next.seq, next.version), (2, 1));
    assert_eq!(s.read_stream("a", 0, 10).unwrap().len(), 2);
}

#[tokio::test(flavor = "current_thread")]
async fn catching_up_over_a_long_stretch_without_matches_lets_other_tasks_run() {
    let s = EventStore::open_temporary(opts()).unwrap();
    for (stream, t) in [("a", "x.one"), ("b", "x.two")] {
        for chunk in 0..10 {
            let batch = (0..1000).map(|i| ev(stream, t, chunk * 1000 + i)).collect();
            s.append(batch).await.unwrap();
        }
    }
    let last = s.append_one(ev("a", "x.two", -1)).await.unwrap();
    // Stream "a" and type "x.two" each match 10,000 events; together, one.
    let filter = Filter {
        stream: Some("a".into()),
        event_type: Some("x.two".into()),
        ..Filter::default()
    };
    let mut sub = s.subscribe(0, filter);
    let ran = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = ran.clone();
    tokio::spawn(async move { flag.store(true, std::sync::atomic::Ordering::SeqCst) });
    let e = sub.next().await.unwrap();
    assert_eq!(e.seq, last.seq);
    assert!(
        ran.load(std::sync::atomic::Ordering::SeqCst),
        "on a one-thread runtime the other task ran during the catch-up"
    );
}

#[tokio::test]
async fn a_snapshot_larger_than_a_record_frame_survives_backup_and_restore() {
    let s = EventStore::open_temporary(opts()).unwrap();
    s.append_one(ev("a", "x.y", 1)).await.unwrap();
    // 65 MiB: more than the 64 MiB a record frame may hold, as a projection
    // snapshot at default limits can be.
    let mut big = vec![0x5au8; 65 << 20];
    big[12_345] = 1;
    *big.last_mut().unwrap() = 2;
    s.save_snapshot("projection", 1, big.clone()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("b.lhbk");
    let rep = s.backup(&file).unwrap();
    assert_eq!(rep.snapshots, 1);
    assert!(!dir.path().join("b.lhbk.partial").exists());
    let (r, rr) = EventStore::restore(&file, dir.path().join("restored"), opts()).unwrap();
    assert_eq!((rr.head_seq, rr.snapshots), (1, 1));
    assert!(r.load_snapshot("projection").unwrap().unwrap().data == big);
    // A frame claiming more than the file holds is refused before allocating.
    let mut bytes = std::fs::read(&file).unwrap();
    bytes.truncate(bytes.len() - 1000);
    let cut = dir.path().join("cut.lhbk");
    std::fs::write(&cut, &bytes).unwrap();
    assert!(matches!(
        EventStore::restore(&cut, dir.path().join("other"), opts()),
        Err(Error::InvalidBackup(m)) if m.contains("ends early")
    ));
}

/// A page is bounded in stored bytes as well as in events: cut pages end with
/// `next` at their last event, and following `next` returns every event once,
/// in both orders and with an exact filter or none.
#[tokio::test]
async fn pages_are_bounded_in_bytes_and_resume_without_gaps() {
    let s = EventStore::open_temporary(opts()).unwrap();
    let blob = "x".repeat(100_000);
    for i in 0..30 {
        let stream = if i % 3 == 0 { "big-a" } else { "big-b" };
        s.append(vec![NewEvent::new(
            stream,
            "t.big",
            json!({"i": i, "blob": blob}),
        )])
        .await
        .unwrap();
    }
    for (filter, order, want) in [
        (Filter::all(), Order::Ascending, 30),
        (Filter::all(), Order::Descending, 30),
        (Filter::stream("big-b"), Order::Ascending, 20),
        (Filter::stream("big-b"), Order::Descending, 20),
    ] {
        let mut q = Query {
            limit: 1_000,
            order,
            ..Query::new(filter.clone())
        };
        let mut seen = Vec::new();
        let mut pages = 0;
        loop {
            let page = s.read_bounded(&q, usize::MAX, 350_000).unwrap();
            pages += 1;
            // Three records pass 300,000 bytes; the fourth passes 350,000.
            // (A page after one cut at the very last event is empty.)
            assert!(page.events.len() <= 4);
            assert!(!page.events.is_empty() || page.next.is_none());
            assert!(page.bytes >= page.events.len() * 100_000);
            seen.extend(page.events.iter().map(|e| e.seq));
            match page.next {
                Some(n) => {
                    assert_eq!(Some(n), page.events.last().map(|e| e.seq));
                    q = q.resume(n);
                }
                None => break,
            }
        }
        assert_eq!(seen.len(), want, "{filter:?} {order:?}");
        let mut sorted = seen.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), want, "no event twice");
        assert!(pages >= want / 4, "{pages} pages");
        // A budget smaller than one event still returns one.
        let one = s
            .read_bounded(
                &Query {
                    limit: 1_000,
                    ..Query::new(filter)
                },
                usize::MAX,
                1,
            )
            .unwrap();
        assert_eq!(one.events.len(), 1);
        assert!(one.next.is_some());
    }
}

#[tokio::test]
async fn generated_ids_keep_increasing_across_a_reopen_in_the_same_millisecond() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(Timestamp::from_unix_secs(1_900_000_000));
    let open = || EventStore::open(dir.path(), opts().clock(Arc::new(clock.clone()))).unwrap();
    let mut last = String::new();
    // The clock stands still: every id falls in one millisecond, and a new
    // process must go on from the last stored id rather than draw a random one.
    for _ in 0..8 {
        let s = open();
        for _ in 0..4 {
            let a = s
                .append_one(NewEvent::new("s", "t", json!({})))
                .await
                .unwrap();
            let id = s.get(a.seq).unwrap().unwrap().id;
            assert!(id > last, "{id} after {last}");
            last = id;
        }
        drop(s);
    }
}

/// The segment files of the store in `dir`, name and bytes.
fn segment_files(dir: &std::path::Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out: Vec<_> = std::fs::read_dir(dir.join("segments"))
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            let b = std::fs::read(&p).unwrap();
            (p, b)
        })
        .collect();
    out.sort();
    out
}

/// A power loss as buffered mode can meet it: the segments lose what was
/// written after their last sync, while sled (which writes its I/O buffers on
/// its own) kept the locations and the anchor of those records.
fn lose_unsynced_segment_bytes(dir: &std::path::Path, at_sync: &[(std::path::PathBuf, Vec<u8>)]) {
    for (p, _) in segment_files(dir) {
        if !at_sync.iter().any(|(q, _)| *q == p) {
            std::fs::remove_file(p).unwrap();
        }
    }
    for (p, b) in at_sync {
        std::fs::write(p, b).unwrap();
    }
}

/// Copies the directory `from` into `to`, recursively.
fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

#[tokio::test]
async fn buffered_mode_loses_only_what_was_not_synced_when_sled_got_ahead_of_the_segments() {
    let dir = tempfile::tempdir().unwrap();
    let (live, lost) = (dir.path().join("live"), dir.path().join("after-power-loss"));
    // No background checkpoint during the test: only `flush` syncs.
    let buffered = || opts().buffered_flush_ms(3_600_000);
    let s = EventStore::open(&live, buffered()).unwrap();
    for n in 1..=10 {
        s.append_one(ev("a", "x.y", n)).await.unwrap();
    }
    s.flush().await.unwrap();
    let at_sync = segment_files(&live);
    for n in 11..=20 {
        s.append_one(ev("a", "x.y", n)).await.unwrap();
    }
    // sled writes its index on its own: its anchor on disk says 20.
    s.flush_index_unsynced().unwrap();
    // The disk as the power loss leaves it: sled's files as written, the
    // segments as they were at their last sync.
    copy_dir(&live, &lost);
    let at_sync: Vec<_> = at_sync
        .into_iter()
        .map(|(p, b)| (lost.join("segments").join(p.file_name().unwrap()), b))
        .collect();
    lose_unsynced_segment_bytes(&lost, &at_sync);
    drop(s);

    let s = EventStore::open(&lost, buffered()).unwrap();
    assert_eq!(
        s.damaged_on_open(),
        &[] as &[u64],
        "a lost unsynced tail is not damage"
    );
    assert_eq!(s.head_seq(), 10);
    assert_eq!(s.stream_version("a"), Some(9));
    assert!(s.get(11).unwrap().is_none());
    let v = s.verify().unwrap();
    assert!(v.ok() && v.head_seq == 10, "{v:?}");
    // The log goes on from the synced head, and chains.
    let next = s.append_one(ev("a", "x.y", 11)).await.unwrap();
    assert_eq!((next.seq, next.version), (11, 10));
    assert!(s.verify().unwrap().ok());
}

#[tokio::test]
async fn durable_mode_forgets_the_buffered_sync_mark_so_its_records_are_never_cut() {
    let dir = tempfile::tempdir().unwrap();
    let at_sync;
    {
        let s = EventStore::open(dir.path(), opts().buffered_flush_ms(3_600_000)).unwrap();
        for n in 1..=10 {
            s.append_one(ev("a", "x.y", n)).await.unwrap();
        }
        s.flush().await.unwrap();
        at_sync = segment_files(dir.path());
    }
    {
        // Reopened durable: records 11.. are synced before sled hears of them.
        let s = EventStore::open(dir.path(), StoreOptions::new(KEY)).unwrap();
        assert_eq!(s.head_seq(), 10);
        for n in 11..=15 {
            s.append_one(ev("a", "x.y", n)).await.unwrap();
        }
    }
    // Losing durable records is damage, not a torn tail: nothing is cut.
    lose_unsynced_segment_bytes(dir.path(), &at_sync);
    let s = EventStore::open(dir.path(), StoreOptions::new(KEY)).unwrap();
    assert_eq!(s.head_seq(), 15);
    assert!(!s.damaged_on_open().is_empty());
    assert!(!s.verify().unwrap().ok());
}

#[tokio::test]
async fn a_snapshot_claiming_a_position_past_the_head_is_removed_on_open() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = EventStore::open(dir.path(), opts()).unwrap();
        for n in 1..=3 {
            s.append_one(ev("a", "x.y", n)).await.unwrap();
        }
        s.save_snapshot("ok", 3, b"state at 3").await.unwrap();
        // Only lost records (or a caller's bug) put a snapshot past the head;
        // left in place it would be loaded once new records reach its position.
        s.save_snapshot("ahead", 9, b"state at 9").await.unwrap();
    }
    let s = EventStore::open(dir.path(), opts()).unwrap();
    assert!(s.load_snapshot("ahead").unwrap().is_none());
    assert_eq!(s.load_snapshot("ok").unwrap().unwrap().seq, 3);
    assert_eq!(s.snapshot_names().unwrap(), vec!["ok".to_owned()]);
}

#[tokio::test]
async fn a_live_event_says_when_it_became_durable_and_a_caught_up_one_does_not() {
    let s = EventStore::open_temporary(opts()).unwrap();
    s.append_one(ev("a", "x.y", 1)).await.unwrap();
    let mut sub = s.subscribe(0, Filter::all());
    assert_eq!(sub.next().await.unwrap().seq, 1);
    assert_eq!(sub.durable_at(), None, "read back from disk");
    let before = std::time::Instant::now();
    let appended = {
        let s = s.clone();
        tokio::spawn(async move { s.append_one(ev("a", "x.y", 2)).await.unwrap() })
    };
    assert_eq!(sub.next().await.unwrap().seq, 2);
    let at = sub.durable_at().expect("a live event is timed");
    assert!(at >= before && at <= std::time::Instant::now());
    appended.await.unwrap();
}
