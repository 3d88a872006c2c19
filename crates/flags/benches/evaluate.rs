//! Micro benchmarks of flag evaluation: on a bare snapshot, and through the
//! store's lock-free `arc-swap` load, for each outcome that costs something
//! different (split, variants, a long allow list, prerequisites, unknown key).

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use lighthouse_event_store::{Durability, EventStore, ManualClock, StoreOptions, Timestamp};
use lighthouse_flags::bucket::{self, Murmur3};
use lighthouse_flags::{
    Attribution, Flag, FlagSet, FlagSpec, FlagStore, FlagStoreOptions, Limits, RolloutPercent,
    Variant,
};

fn flag(key: &str, bp: u16) -> Flag {
    Flag {
        key: key.into(),
        description: String::new(),
        enabled: true,
        rollout_percent: RolloutPercent::from_basis_points(bp).unwrap(),
        allow: vec![],
        deny: vec![],
        variants: vec![],
        requires: vec![],
        killed: false,
        version: 1,
        updated_at: Timestamp::EPOCH,
        updated_by: "bench".into(),
    }
}

/// 200 flags, like a busy deployment, plus the ones the scenarios read.
fn realistic_set() -> FlagSet {
    let mut flags: Vec<Flag> = (0..200)
        .map(|i| flag(&format!("feature.number-{i}"), 5_000))
        .collect();
    flags.push(flag("elicitation_enabled", 10_000));
    let mut v = flag("new_ui", 10_000);
    v.variants = vec![Variant::new("control", 500), Variant::new("treatment", 500)];
    flags.push(v);
    let mut listed = flag("targeted", 0);
    listed.allow = (0..1_000).map(|i| format!("agent-{i:04}")).collect();
    flags.push(listed);
    let mut chained = flag("chained", 10_000);
    chained.requires = vec![
        "feature.number-1".into(),
        "feature.number-2".into(),
        "elicitation_enabled".into(),
    ];
    flags.push(chained);
    FlagSet::from_flags(flags, &Limits::default()).unwrap()
}

fn bench_set(c: &mut Criterion) {
    let set = realistic_set();
    let mut g = c.benchmark_group("flagset");
    for (name, key, agent) in [
        ("split", "elicitation_enabled", "alice"),
        ("variant", "new_ui", "carol"),
        ("allow_list_1000", "targeted", "agent-0777"),
        ("prerequisites_3", "chained", "bob"),
        ("not_found", "no_such_flag", "alice"),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| set.evaluate(black_box(key), black_box(agent)))
        });
    }
    g.finish();
}

fn bench_store(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let events = EventStore::open_temporary(
        StoreOptions::new(b"criterion bench key of 32 bytes.").durability(Durability::Buffered),
    )
    .unwrap();
    let clock = ManualClock::new(Timestamp::EPOCH);
    let store = FlagStore::open(events, FlagStoreOptions::new().clock(Arc::new(clock))).unwrap();
    let by = Attribution::new("bench", "benchmark setup");
    rt.block_on(async {
        for i in 0..200 {
            store
                .put(
                    &format!("feature.number-{i}"),
                    &FlagSpec::new(true, 50.0),
                    None,
                    &by,
                )
                .await
                .unwrap();
        }
        store
            .put(
                "elicitation_enabled",
                &FlagSpec::new(true, 100.0),
                None,
                &by,
            )
            .await
            .unwrap();
    });
    c.bench_function("store/evaluate_split", |b| {
        b.iter(|| store.evaluate(black_box("elicitation_enabled"), black_box("alice")))
    });
    c.bench_function("store/is_enabled", |b| {
        b.iter(|| store.is_enabled(black_box("elicitation_enabled"), black_box("alice")))
    });
}

/// The `murmur3` crate (the reference) against the streaming form evaluation
/// uses, on PROTOCOL.md's first vector input, and the per-evaluation part alone
/// (the agent id fed into a prepared `"<key>:"` state).
fn bench_hash(c: &mut Criterion) {
    let input: &[u8] = b"elicitation_enabled:alice";
    let mut g = c.benchmark_group("hash");
    g.bench_function("murmur3_crate_25_bytes", |b| {
        b.iter(|| bucket::murmur3_x86_32(black_box(input), 0))
    });
    g.bench_function("streaming_25_bytes", |b| {
        b.iter(|| Murmur3::new(0).finish_with(black_box(input)))
    });
    let prefix = Murmur3::new(0).key_prefix("elicitation_enabled");
    g.bench_function("streaming_agent_after_prefix", |b| {
        b.iter(|| black_box(prefix).finish_with(black_box(b"alice")))
    });
    g.finish();
}

criterion_group!(benches, bench_set, bench_store, bench_hash);
criterion_main!(benches);
