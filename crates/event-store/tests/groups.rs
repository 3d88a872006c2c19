//! Many concurrent appenders whose requests share group commits: conditions,
//! ids and indexes must come out as if every request had been alone.

use std::collections::BTreeMap;

use lighthouse_event_store::{
    Durability, Error, Event, EventStore, ExpectedVersion, Filter, NewEvent, Query, StoreOptions,
};
use serde_json::json;

const KEY: &[u8] = b"test key: not a secret, 32 bytes";

fn opts() -> StoreOptions {
    StoreOptions::new(KEY).durability(Durability::Buffered)
}

/// Durable mode: every group waits for its sync, so groups form differently.
fn durable() -> StoreOptions {
    StoreOptions::new(KEY).durability(Durability::Durable)
}

/// An event using every indexed field, varied by `task` and `i`.
fn rich(task: u64, i: u64) -> NewEvent {
    let mut e = NewEvent::new(
        format!("s{}", (task + i) % 5),
        format!("t.k{}", i % 3),
        json!({ "task": task, "i": i }),
    )
    .with_agent(format!("agent{}", task % 4))
    .with_metadata(json!({ "m": i }));
    if i.is_multiple_of(2) {
        e = e.with_correlation_id(format!("corr-{}", (task * 7 + i) % 9));
    }
    if i.is_multiple_of(3) {
        e = e
            .with_id(format!("id-{task}-{i}"))
            .with_causation_id("cause");
    }
    e
}

/// Every event the store holds, read through each index it has.
fn through_every_index(s: &EventStore) -> BTreeMap<String, Vec<Event>> {
    let mut out = BTreeMap::new();
    let mut read = |name: String, filter: Filter| {
        let page = s
            .read(&Query {
                limit: 10_000,
                ..Query::new(filter)
            })
            .unwrap();
        out.insert(name, page.events);
    };
    read("all".into(), Filter::all());
    for k in 0..5 {
        read(format!("stream s{k}"), Filter::stream(format!("s{k}")));
    }
    for k in 0..3 {
        read(
            format!("type t.k{k}"),
            Filter::event_type(format!("t.k{k}")),
        );
    }
    for k in 0..4 {
        let f = Filter {
            agent: Some(format!("agent{k}")),
            ..Filter::all()
        };
        read(format!("agent{k}"), f);
    }
    for k in 0..9 {
        let f = Filter {
            correlation_id: Some(format!("corr-{k}")),
            ..Filter::all()
        };
        read(format!("corr-{k}"), f);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conditional_appends_sharing_groups_never_fork_a_stream() {
    conditional_appends(opts()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conditional_appends_sharing_durable_groups_never_fork_a_stream() {
    conditional_appends(durable()).await;
}

async fn conditional_appends(options: StoreOptions) {
    let s = EventStore::open_temporary(options).unwrap();
    let mut tasks = Vec::new();
    for t in 0..32u64 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let stream = format!("c{}", t % 4);
            let mut won = 0u64;
            for _ in 0..20 {
                let expect = match s.stream_version(&stream) {
                    None => ExpectedVersion::NoStream,
                    Some(v) => ExpectedVersion::Exact(v),
                };
                let e = NewEvent::new(stream.as_str(), "c.n", json!({ "t": t })).expect(expect);
                // Half the requests carry a second event for the same stream.
                let batch = if t.is_multiple_of(2) {
                    vec![e]
                } else {
                    vec![e, NewEvent::new(stream.as_str(), "c.n", json!({ "t": t }))]
                };
                let n = batch.len() as u64;
                match s.append(batch).await {
                    Ok(out) => {
                        let v: Vec<u64> = out.events.iter().map(|a| a.version).collect();
                        let first = v[0];
                        assert_eq!(v, (first..first + n).collect::<Vec<_>>());
                        won += n;
                    }
                    Err(Error::VersionConflict { .. }) => {}
                    Err(e) => panic!("unexpected {e}"),
                }
            }
            won
        }));
    }
    let mut written = 0;
    for t in tasks {
        written += t.await.unwrap();
    }
    assert_eq!(s.head_seq(), written);
    for k in 0..4 {
        let stream = format!("c{k}");
        let events = s.read_stream(&stream, 0, 10_000).unwrap();
        let versions: Vec<u64> = events.iter().map(|e| e.version).collect();
        assert_eq!(versions, (0..events.len() as u64).collect::<Vec<_>>());
        assert_eq!(
            s.stream_version(&stream),
            (events.len() as u64).checked_sub(1)
        );
    }
    assert!(s.verify().unwrap().ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn indexes_built_while_appending_equal_those_rebuilt_on_open() {
    indexes_built_while_appending(opts).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn indexes_built_while_appending_durably_equal_those_rebuilt_on_open() {
    indexes_built_while_appending(durable).await;
}

async fn indexes_built_while_appending(opts: fn() -> StoreOptions) {
    let dir = tempfile::tempdir().unwrap();
    const TOTAL: u64 = 24 * (27 + 9);
    let (before, sub_events) = {
        let s = EventStore::open(dir.path(), opts()).unwrap();
        // Subscribed before the first append: every event arrives live.
        let mut sub = s.subscribe(0, Filter::all());
        let live = tokio::spawn(async move {
            let mut got = Vec::new();
            while got.len() < TOTAL as usize {
                got.push(sub.next().await.unwrap());
            }
            got
        });
        let mut tasks = Vec::new();
        for task in 0..24u64 {
            let s = s.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..30u64 {
                    if i % 10 == 9 {
                        let batch = (0..3).map(|j| rich(task, 100 + i * 3 + j)).collect();
                        s.append(batch).await.unwrap();
                    } else {
                        s.append_one(rich(task, i)).await.unwrap();
                    }
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(s.head_seq(), TOTAL);
        let sub_events = live.await.unwrap();
        s.flush().await.unwrap();
        (through_every_index(&s), sub_events)
    };
    let total = TOTAL;
    let all = &before["all"];
    assert_eq!(all.len() as u64, total);
    // What live subscribers got is what is stored.
    assert_eq!(sub_events.len(), all.len());
    for (live, stored) in sub_events.iter().zip(all) {
        assert_eq!(&**live, stored);
    }
    let s = EventStore::open(dir.path(), opts()).unwrap();
    let after = through_every_index(&s);
    assert_eq!(before, after);
    // Caller ids written in shared groups are found again after reopening.
    let again = s.append_one(rich(3, 6)).await.unwrap();
    let original = all
        .iter()
        .find(|e| e.id == "id-3-6")
        .expect("caller id stored");
    assert_eq!((again.seq, again.version), (original.seq, original.version));
    assert_eq!(s.head_seq(), total);
    assert!(s.verify().unwrap().ok());
}

/// Requests queued back to back land in many consecutive groups: each
/// condition must see the version the request queued before it made, and each
/// retried caller id the original, whichever group either landed in. (A
/// pipelined writer, which places a group before the previous one is indexed,
/// fails this without an overlay of that group's versions and ids: tried in
/// session 9, see docs/PERFORMANCE.md.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_queued_back_to_back_see_each_other_across_groups() {
    // Small groups, so that the queued requests make many consecutive ones.
    let s = EventStore::open_temporary(durable().max_group_events(8)).unwrap();
    const N: u64 = 400;
    let outcomes = std::sync::Arc::new(parking_lot::Mutex::new(BTreeMap::new()));
    for i in 0..N {
        // Every event expects the version the one queued before it makes; every
        // id is sent twice in a row, the second time as a retry.
        let expect = match i / 2 {
            0 => ExpectedVersion::NoStream,
            k => ExpectedVersion::Exact(k - 1),
        };
        let mut e =
            NewEvent::new("chain", "c.n", json!({ "i": i / 2 })).with_id(format!("e-{}", i / 2));
        if i % 2 == 0 {
            e = e.expect(expect);
        }
        let out = outcomes.clone();
        s.append_then(vec![e], move |r| {
            out.lock().insert(
                i,
                r.map(|o| (o.events[0].seq, o.events[0].version, o.deduplicated)),
            );
        })
        .await
        .unwrap();
    }
    s.flush().await.unwrap();
    let outcomes = outcomes.lock();
    assert_eq!(outcomes.len() as u64, N);
    for i in 0..N {
        let k = i / 2;
        let got = outcomes[&i]
            .as_ref()
            .unwrap_or_else(|e| panic!("request {i}: {e}"));
        assert_eq!((got.0, got.1), (k + 1, k), "request {i}");
        assert_eq!(got.2, i % 2 == 1, "request {i} deduplicated");
    }
    assert_eq!(s.head_seq(), N / 2);
    assert_eq!(s.stream_version("chain"), Some(N / 2 - 1));
    assert!(s.verify().unwrap().ok());
}

/// Counts what the store reports to its observer.
#[derive(Default)]
struct Counted {
    appended: std::sync::atomic::AtomicU64,
    committed_events: std::sync::atomic::AtomicU64,
    groups: std::sync::atomic::AtomicU64,
}

impl lighthouse_event_store::AppendObserver for Counted {
    fn appended(&self, events: usize, _latency: std::time::Duration, _head_seq: u64) {
        self.appended
            .fetch_add(events as u64, std::sync::atomic::Ordering::Relaxed);
    }

    fn committed(&self, events: usize, elapsed: std::time::Duration) {
        assert!(events > 0 && elapsed > std::time::Duration::ZERO);
        self.committed_events
            .fetch_add(events as u64, std::sync::atomic::Ordering::Relaxed);
        self.groups
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_committed_group_is_reported_once_with_its_events() {
    use std::sync::atomic::Ordering::Relaxed;
    let counted = std::sync::Arc::new(Counted::default());
    let s = EventStore::open_temporary(durable().observer(counted.clone())).unwrap();
    let mut tasks = Vec::new();
    for t in 0..16u64 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..10 {
                s.append(vec![rich(t, i)]).await.unwrap();
            }
            // A refused append is not a committed event.
            let stale = NewEvent::new("s0", "t.x", json!({})).expect(ExpectedVersion::NoStream);
            assert!(s.append(vec![stale]).await.is_err());
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(s.head_seq(), 160);
    assert_eq!(counted.appended.load(Relaxed), 160);
    assert_eq!(counted.committed_events.load(Relaxed), 160);
    let groups = counted.groups.load(Relaxed);
    assert!((1..=160).contains(&groups), "{groups} groups");
}
