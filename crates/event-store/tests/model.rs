//! Property tests: the store against a plain in-memory model.

use std::collections::HashMap;

use lighthouse_event_store::{
    Durability, Error, EventStore, ExpectedVersion, Filter, NewEvent, Order, Query, StoreOptions,
};
use proptest::prelude::*;
use serde_json::json;

const KEY: &[u8] = b"model test key, 32 bytes long...";

#[derive(Debug, Clone)]
struct Op {
    events: Vec<(u8, u8, Option<u8>, Expect)>, // stream, type, id, expectation
}

#[derive(Debug, Clone, Copy)]
enum Expect {
    Any,
    NoStream,
    Exact(u64),
}

fn op() -> impl Strategy<Value = Op> {
    let expect = prop_oneof![
        3 => Just(Expect::Any),
        1 => Just(Expect::NoStream),
        2 => (0u64..4).prop_map(Expect::Exact),
    ];
    prop::collection::vec(
        (0u8..4, 0u8..3, prop::option::weighted(0.2, 0u8..12), expect),
        1..4,
    )
    .prop_map(|events| Op { events })
}

/// What the model stores per event.
#[derive(Debug, Clone, PartialEq)]
struct Row {
    seq: u64,
    stream: String,
    version: u64,
    event_type: String,
    id: Option<String>,
    n: u64,
}

#[derive(Default)]
struct Model {
    rows: Vec<Row>,
    versions: HashMap<String, u64>,
    ids: HashMap<String, (u64, u64)>,
}

enum Outcome {
    Ok(Vec<(u64, u64)>),
    Dedup(Vec<(u64, u64)>),
    Conflict,
    Duplicate,
}

impl Model {
    fn apply(&mut self, op: &Op, counter: &mut u64) -> Outcome {
        let ids: Vec<Option<String>> = op
            .events
            .iter()
            .map(|e| e.2.map(|i| format!("id-{i}")))
            .collect();
        let known: Vec<_> = ids
            .iter()
            .map(|i| i.as_ref().and_then(|i| self.ids.get(i).copied()))
            .collect();
        if known.iter().any(Option::is_some) {
            return if known.iter().all(Option::is_some) {
                Outcome::Dedup(known.into_iter().flatten().collect())
            } else {
                Outcome::Duplicate
            };
        }
        // Ids repeated inside one batch: the second is a duplicate of the first.
        let mut local_versions = self.versions.clone();
        for (s, _, _, x) in &op.events {
            let stream = format!("s{s}");
            let cur = local_versions.get(&stream).copied();
            let ok = match x {
                Expect::Any => true,
                Expect::NoStream => cur.is_none(),
                Expect::Exact(n) => cur == Some(*n),
            };
            if !ok {
                return Outcome::Conflict;
            }
            local_versions.insert(stream, cur.map_or(0, |v| v + 1));
        }
        let mut out = Vec::new();
        for ((s, t, _, _), id) in op.events.iter().zip(ids) {
            let stream = format!("s{s}");
            let version = self.versions.get(&stream).map_or(0, |v| v + 1);
            self.versions.insert(stream.clone(), version);
            let seq = self.rows.len() as u64 + 1;
            if let Some(id) = &id {
                self.ids.insert(id.clone(), (seq, version));
            }
            *counter += 1;
            self.rows.push(Row {
                seq,
                stream,
                version,
                event_type: format!("t.k{t}"),
                id,
                n: *counter,
            });
            out.push((seq, version));
        }
        Outcome::Ok(out)
    }
}

fn to_new(op: &Op, counter: u64) -> Vec<NewEvent> {
    op.events
        .iter()
        .enumerate()
        .map(|(k, (s, t, id, x))| {
            let mut e = NewEvent::new(
                format!("s{s}"),
                format!("t.k{t}"),
                json!({"n": counter + k as u64 + 1}),
            )
            .expect(match x {
                Expect::Any => ExpectedVersion::Any,
                Expect::NoStream => ExpectedVersion::NoStream,
                Expect::Exact(n) => ExpectedVersion::Exact(*n),
            });
            if let Some(i) = id {
                e = e.with_id(format!("id-{i}"));
            }
            e
        })
        .collect()
}

fn has_repeated_ids(op: &Op) -> bool {
    let mut seen = std::collections::HashSet::new();
    op.events
        .iter()
        .filter_map(|e| e.2)
        .any(|i| !seen.insert(i))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn appends_and_reads_match_the_model(ops in prop::collection::vec(op(), 1..40), budget in 1usize..6) {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let store = EventStore::open_temporary(StoreOptions::new(KEY).durability(Durability::Buffered)).unwrap();
            let mut model = Model::default();
            let mut counter = 0u64;
            for op in ops.iter().filter(|o| !has_repeated_ids(o)) {
                let before = counter;
                let expected = model.apply(op, &mut counter);
                let got = store.append(to_new(op, before)).await;
                match (expected, got) {
                    (Outcome::Ok(e), Ok(g)) => {
                        prop_assert!(!g.deduplicated);
                        prop_assert_eq!(e, g.events.iter().map(|a| (a.seq, a.version)).collect::<Vec<_>>());
                    }
                    (Outcome::Dedup(e), Ok(g)) => {
                        prop_assert!(g.deduplicated);
                        prop_assert_eq!(e, g.events.iter().map(|a| (a.seq, a.version)).collect::<Vec<_>>());
                    }
                    (Outcome::Conflict, Err(Error::VersionConflict { .. })) => {}
                    (Outcome::Duplicate, Err(Error::DuplicateId { .. })) => {}
                    (_, g) => prop_assert!(false, "store answered {:?}", g),
                }
            }
            // Every read agrees with the model.
            let all = store.read(&Query { limit: 10_000, ..Query::default() }).unwrap();
            prop_assert_eq!(all.events.len(), model.rows.len());
            for (e, r) in all.events.iter().zip(&model.rows) {
                prop_assert_eq!(e.seq, r.seq);
                prop_assert_eq!(&e.stream, &r.stream);
                prop_assert_eq!(e.version, r.version);
                prop_assert_eq!(&e.event_type, &r.event_type);
                prop_assert_eq!(e.data.clone(), json!({"n": r.n}));
                if let Some(id) = &r.id {
                    prop_assert_eq!(&e.id, id);
                }
            }
            for s in 0..4 {
                let stream = format!("s{s}");
                let want: Vec<u64> = model.rows.iter().filter(|r| r.stream == stream).map(|r| r.seq).collect();
                let q = Query { limit: 3, order: Order::Descending, ..Query::new(Filter::stream(&stream)) };
                let mut got = Vec::new();
                let mut page = store.read(&q).unwrap();
                loop {
                    got.extend(page.events.iter().map(|e| e.seq));
                    match page.next {
                        Some(n) => page = store.read(&q.clone().resume(n)).unwrap(),
                        None => break,
                    }
                }
                got.reverse();
                prop_assert_eq!(got, want);
                prop_assert_eq!(store.stream_version(&stream), model.versions.get(&stream).copied());
            }
            for t in 0..3 {
                let ty = format!("t.k{t}");
                let want: Vec<u64> = model.rows.iter().filter(|r| r.event_type == ty).map(|r| r.seq).collect();
                let got: Vec<u64> = store.read(&Query { limit: 10_000, ..Query::new(Filter::event_type(&ty)) }).unwrap()
                    .events.iter().map(|e| e.seq).collect();
                prop_assert_eq!(got, want);
            }
            // A budgeted read, resumed until it says no more follows, returns
            // exactly the unbounded answer: two exact filters, one, none, a
            // prefix; both orders.
            let filters = [
                Filter { stream: Some("s1".into()), event_type: Some("t.k0".into()), ..Filter::default() },
                Filter::event_type("t.k2"),
                Filter::default(),
                Filter { type_prefix: Some("t.k1".into()), ..Filter::default() },
            ];
            for f in filters {
                for order in [Order::Ascending, Order::Descending] {
                    let q = Query { limit: 2, order, ..Query::new(f.clone()) };
                    let want: Vec<u64> = store.read(&Query { limit: 10_000, ..q.clone() }).unwrap()
                        .events.iter().map(|e| e.seq).collect();
                    let mut got = Vec::new();
                    let mut q = q;
                    loop {
                        let page = store.read_within(&q, budget).unwrap();
                        prop_assert!(page.examined <= budget);
                        got.extend(page.events.iter().map(|e| e.seq));
                        match page.next {
                            Some(n) => q = q.resume(n),
                            None => break,
                        }
                    }
                    prop_assert_eq!(got, want, "{:?} {:?} budget {}", f, order, budget);
                }
            }
            prop_assert!(store.verify().unwrap().ok());
            Ok(())
        })?;
    }

    #[test]
    fn a_subscription_delivers_exactly_the_events_after_its_position(
        before in 0u64..300,
        after in 0u64..300,
        from_frac in 0.0f64..=1.0,
        stream in prop::option::of(0u8..3),
    ) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(async {
            // A small live buffer makes lag and the catch-up recovery likely.
            let store = EventStore::open_temporary(
                StoreOptions::new(KEY).durability(Durability::Buffered).live_buffer(16),
            ).unwrap();
            let ev = |i: u64| NewEvent::new(format!("s{}", i % 3), "t.x", json!(i));
            for i in 0..before {
                store.append_one(ev(i)).await.unwrap();
            }
            let from = (before as f64 * from_frac) as u64;
            let filter = match stream {
                Some(s) => Filter::stream(format!("s{s}")),
                None => Filter::all(),
            };
            let mut sub = store.subscribe(from, filter);
            let writer = {
                let store = store.clone();
                tokio::spawn(async move {
                    for i in before..before + after {
                        store.append_one(ev(i)).await.unwrap();
                    }
                })
            };
            let want: Vec<u64> = (from + 1..=before + after)
                .filter(|seq| stream.is_none_or(|s| (seq - 1) % 3 == s as u64))
                .collect();
            let mut got = Vec::new();
            while got.len() < want.len() {
                match sub.next().await {
                    Ok(e) => got.push(e.seq),
                    // A live lag is allowed; resuming from its position must be exact.
                    Err(Error::Lagged { last_seq }) => {
                        prop_assert!(last_seq >= got.last().copied().unwrap_or(from));
                        sub = store.subscribe(last_seq, sub_filter(stream));
                    }
                    Err(e) => prop_assert!(false, "{e}"),
                }
            }
            writer.await.unwrap();
            prop_assert_eq!(got, want);
            Ok(())
        })?;
    }
}

fn sub_filter(stream: Option<u8>) -> Filter {
    match stream {
        Some(s) => Filter::stream(format!("s{s}")),
        None => Filter::all(),
    }
}
