//! Criterion benchmarks of the store's hot paths: encoding a record, the chained
//! MAC, and updating the in-memory indexes.

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use lighthouse_event_store::codec::{ChainKey, GENESIS, Prepared, RecordView};
use lighthouse_event_store::index::{IndexEntry, Indexes};
use lighthouse_event_store::{NewEvent, Timestamp};
use serde_json::json;
use std::hint::black_box;

fn event() -> NewEvent {
    NewEvent::new(
        "elicitation-el_01JDX3",
        "elicitation.requested",
        json!({ "p": "x".repeat(248) }),
    )
    .with_agent("alice")
    .with_correlation_id("req-01JDX3ABCDEF")
}

fn benches(c: &mut Criterion) {
    let key = ChainKey::new(b"bench key, 32 bytes long........");
    // The event is built outside the timed part: only `Prepared::new` is timed.
    c.bench_function("encode_prepare_256B", |b| {
        b.iter_batched(
            event,
            |e| Prepared::new(black_box(e)).unwrap(),
            BatchSize::SmallInput,
        )
    });
    let p = Prepared::new(event()).unwrap();
    c.bench_function("encode_finish_with_mac", |b| {
        b.iter(|| {
            p.finish(
                &key,
                &GENESIS,
                black_box(42),
                3,
                Timestamp::from_unix_millis(1),
                "01JDX3ABCDEFGHJKMNPQRSTVWX",
            )
        })
    });
    let (record, _) = p.finish(
        &key,
        &GENESIS,
        42,
        3,
        Timestamp::from_unix_millis(1),
        "01JDX3ABCDEFGHJKMNPQRSTVWX",
    );
    let body_len = record.len() - 32;
    c.bench_function("mac_chain_record", |b| {
        b.iter(|| key.chain(&GENESIS, black_box(&record[..body_len])))
    });
    c.bench_function("decode_view", |b| {
        b.iter(|| RecordView::parse(black_box(&record)).map(|v| v.seq))
    });
    c.bench_function("index_add_1000", |b| {
        let records: Vec<Vec<u8>> = (1..=1000u64)
            .map(|s| {
                let e = NewEvent::new(format!("stream-{}", s % 100), "bench.t", json!(s))
                    .with_agent(format!("agent-{}", s % 10))
                    .with_correlation_id(format!("req-{s}"));
                Prepared::new(e)
                    .unwrap()
                    .finish(
                        &key,
                        &GENESIS,
                        s,
                        s / 100,
                        Timestamp::from_unix_millis(s as i64),
                        &format!("id-{s}"),
                    )
                    .0
            })
            .collect();
        // Parsed outside the timed part: only the index update is timed.
        let views: Vec<RecordView<'_>> = records
            .iter()
            .filter_map(|r| RecordView::parse(r).ok())
            .collect();
        b.iter_batched(
            Indexes::new,
            |mut idx| {
                for v in &views {
                    idx.add(v);
                }
                idx
            },
            BatchSize::SmallInput,
        )
    });
}

/// The writer's path: indexes updated from the fields it already holds, for a log
/// growing from empty to 100,000 events (a stream per two events, a correlation
/// id per event, as in a bridge).
fn index_insert(c: &mut Criterion) {
    let events: Vec<(String, String, String, String)> = (1..=100_000u64)
        .map(|s| {
            (
                format!("elicitation-el_{:026}", s / 2),
                format!("agent-{}", s % 1000),
                format!("req-{s:020}"),
                format!("01JDX3ABCDEFGHJK{s:010}"),
            )
        })
        .collect();
    c.bench_function("index_insert_100k_fields", |b| {
        b.iter_batched(
            Indexes::new,
            |mut idx| {
                for (i, (stream, agent, corr, id)) in events.iter().enumerate() {
                    idx.insert(&IndexEntry {
                        seq: i as u64 + 1,
                        time: Timestamp::from_unix_millis(i as i64),
                        id,
                        stream,
                        event_type: "elicitation.requested",
                        agent: Some(agent),
                        correlation_id: Some(corr),
                    });
                }
                idx
            },
            BatchSize::PerIteration,
        )
    });
}

criterion_group!(hot_paths, benches, index_insert);
criterion_main!(hot_paths);
