//! `lighthouse-bench flags`: the cost of evaluating a flag, writing one, and
//! rebuilding the flags from the log.
//!
//! Evaluation scenarios go through [`FlagStore::evaluate`] (the lock-free
//! `arc-swap` load of the current snapshot included) on a store holding 200
//! background flags, cycling through `--agents` distinct agent ids. Each times
//! `--samples` batches of `--iters` evaluations and prints the median (and
//! range) of the per-evaluation cost over the batches, against the target
//! of at most 100 ns. Timing single calls would measure the clock, not the
//! evaluation, so batches it is; they are short (10,000 evaluations, well under
//! a millisecond) so that on a busy machine preemption hits a few batches
//! rather than all of them. `harness_ns_per_op` is the loop alone.

use std::hint::black_box;
use std::time::Instant;

use lighthouse_event_store::{Durability, EventStore, StoreOptions};
use lighthouse_flags::{Attribution, FlagSpec, FlagStore, FlagStoreOptions, Variant};
use serde_json::{Map, Value, json};

use crate::report::{emit, latency_histogram, percentiles};

/// Options of the flags family.
#[derive(clap::Args)]
pub struct Args {
    /// all, split, variant, allow-list, prerequisites, not-found, snapshot,
    /// concurrent, write, replay.
    #[arg(long, default_value = "all")]
    scenario: String,
    /// Timed batches per evaluation scenario; the median batch is reported.
    #[arg(long, default_value_t = 1_001)]
    samples: usize,
    /// Evaluations per batch. Batches are kept well under a scheduler time slice
    /// (about 1 ms), so on a shared machine a preempted batch is an outlier the
    /// median ignores instead of a shift of every batch.
    #[arg(long, default_value_t = 10_000)]
    iters: u64,
    /// Distinct agent ids the evaluations cycle through.
    #[arg(long, default_value_t = 10_000)]
    agents: usize,
    /// Threads evaluating at once in `concurrent`.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Durable flag writes in `write`; changes replayed in `replay`.
    #[arg(long, default_value_t = 2_000)]
    writes: u64,
}

const KEY: &[u8] = b"lighthouse-bench flags key 32 by";
const TARGET_NS: f64 = 100.0;
const BACKGROUND_FLAGS: usize = 200;

/// Runs the chosen scenario (or all of them).
pub fn run(a: Args) -> Result<(), String> {
    if a.samples == 0 || a.iters == 0 || a.agents == 0 || a.threads == 0 || a.writes == 0 {
        return Err(
            "--samples, --iters, --agents, --threads and --writes must be at least 1".into(),
        );
    }
    let all = a.scenario == "all";
    let mut ran = false;
    let evals: [(&str, &str, &str); 5] = [
        ("split", "flags.evaluate_split", "elicitation_enabled"),
        ("variant", "flags.evaluate_variant", "new_ui"),
        ("allow-list", "flags.evaluate_allow_list_1000", "targeted"),
        ("prerequisites", "flags.evaluate_prerequisites_3", "chained"),
        ("not-found", "flags.evaluate_not_found", "no_such_flag"),
    ];
    let needs_store = all
        || evals.iter().any(|(s, ..)| *s == a.scenario)
        || matches!(a.scenario.as_str(), "snapshot" | "concurrent");
    let populated = if needs_store {
        Some(populated()?)
    } else {
        None
    };
    if let Some((_, store)) = &populated {
        // The ids lie one after another in one buffer, as ids just parsed from
        // requests would be in cache: the scenarios time evaluation, not misses
        // on 10,000 scattered heap strings.
        let mut text = String::new();
        let mut ends = Vec::with_capacity(a.agents);
        for i in 0..a.agents {
            text.push_str(&format!("agent-{i:05}"));
            ends.push(text.len());
        }
        let agents: Vec<&str> = ends
            .iter()
            .scan(0, |start, &end| {
                let id = &text[*start..end];
                *start = end;
                Some(id)
            })
            .collect();
        let harness = harness_ns(&a, &agents);
        for (scenario, bench, key) in evals {
            if all || a.scenario == scenario {
                evaluate(&a, store, &agents, harness, bench, key)?;
                ran = true;
            }
        }
        if all || a.scenario == "snapshot" {
            snapshot(&a, store, &agents, harness);
            ran = true;
        }
        if all || a.scenario == "concurrent" {
            concurrent(&a, store, &agents, harness)?;
            ran = true;
        }
    }
    if all || a.scenario == "write" {
        write(&a)?;
        ran = true;
    }
    if all || a.scenario == "replay" {
        replay(&a)?;
        ran = true;
    }
    if !ran {
        return Err(format!("unknown scenario {}", a.scenario));
    }
    Ok(())
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
}

fn by() -> Attribution {
    Attribution::new("bench", "lighthouse-bench flags")
}

fn open(dir: &std::path::Path, durability: Durability) -> Result<(EventStore, FlagStore), String> {
    let events = EventStore::open(dir, StoreOptions::new(KEY).durability(durability))
        .map_err(|e| e.to_string())?;
    let flags =
        FlagStore::open(events.clone(), FlagStoreOptions::new()).map_err(|e| e.to_string())?;
    Ok((events, flags))
}

/// A store with 200 background flags at 50 % and the scenario flags:
/// `elicitation_enabled` (split, 50 %), `new_ui` (two variants, 100 %),
/// `targeted` (disabled, 1,000 agents allowed), `chained` (three transitive
/// prerequisites).
fn populated() -> Result<(tempfile::TempDir, FlagStore), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let (_events, store) = open(dir.path(), Durability::Buffered)?;
    let rt = runtime()?;
    rt.block_on(async {
        let put = |key: String, spec: FlagSpec| {
            let store = store.clone();
            async move {
                store
                    .put(&key, &spec, None, &by())
                    .await
                    .map_err(|e| e.to_string())
            }
        };
        for i in 0..BACKGROUND_FLAGS {
            put(format!("feature.number-{i}"), FlagSpec::new(true, 50.0)).await?;
        }
        put("elicitation_enabled".into(), FlagSpec::new(true, 50.0)).await?;
        let mut variants = FlagSpec::new(true, 100.0);
        variants.variants = vec![Variant::new("control", 500), Variant::new("treatment", 500)];
        put("new_ui".into(), variants).await?;
        let mut targeted = FlagSpec::new(false, 0.0);
        targeted.allow = (0..1_000).map(|i| format!("agent-{:05}", i * 2)).collect();
        put("targeted".into(), targeted).await?;
        put("base".into(), FlagSpec::new(true, 100.0)).await?;
        let mut mid = FlagSpec::new(true, 100.0);
        mid.requires = vec!["base".into(), "feature.number-1".into()];
        put("mid".into(), mid).await?;
        let mut chained = FlagSpec::new(true, 100.0);
        chained.requires = vec!["mid".into()];
        put("chained".into(), chained).await?;
        Ok::<_, String>(())
    })?;
    Ok((dir, store))
}

/// Times `samples` batches of `iters` calls of `op`; nanoseconds per call.
/// `op` gets the index of the agent to use, cycling through `0..agents` (a
/// counter, not a division, so the harness adds as little as possible).
fn per_op_ns(samples: usize, iters: u64, agents: usize, mut op: impl FnMut(usize)) -> Vec<f64> {
    let mut batch = |n: u64| {
        let mut j = 0usize;
        let start = Instant::now();
        for _ in 0..n {
            op(j);
            j += 1;
            if j == agents {
                j = 0;
            }
        }
        start.elapsed().as_nanos() as f64 / n as f64
    };
    // One untimed batch warms caches and the branch predictors.
    batch(iters.max(100_000));
    (0..samples).map(|_| batch(iters)).collect()
}

/// The harness alone: picking the agent and consuming a value, without
/// evaluating. Subtract it to get the evaluation alone.
fn harness_ns(a: &Args, agents: &[&str]) -> f64 {
    let mut ns = per_op_ns(a.samples, a.iters, agents.len(), |j| {
        // Reads the id's first and last byte, as an evaluation must.
        let id = black_box(agents[j]).as_bytes();
        black_box((id.first(), id.last()));
    });
    ns.sort_by(f64::total_cmp);
    ns[ns.len() / 2]
}

fn round2(x: f64) -> Value {
    json!((x * 100.0).round() / 100.0)
}

fn report(bench: &str, a: &Args, harness: f64, mut ns: Vec<f64>) -> Map<String, Value> {
    ns.sort_by(f64::total_cmp);
    let mid = ns[ns.len() / 2];
    let mut out = Map::new();
    out.insert("bench".into(), bench.into());
    out.insert("samples".into(), ns.len().into());
    out.insert("ops_per_sample".into(), a.iters.into());
    out.insert("agents".into(), a.agents.into());
    out.insert("median_ns_per_op".into(), round2(mid));
    out.insert("min_ns_per_op".into(), round2(ns[0]));
    out.insert("max_ns_per_op".into(), round2(ns[ns.len() - 1]));
    out.insert("harness_ns_per_op".into(), round2(harness));
    out.insert("target_ns_per_op".into(), round2(TARGET_NS));
    out.insert("meets_target".into(), (mid <= TARGET_NS).into());
    out
}

fn evaluate(
    a: &Args,
    store: &FlagStore,
    agents: &[&str],
    harness: f64,
    bench: &str,
    key: &str,
) -> Result<(), String> {
    // Check once that the scenario exercises what it claims.
    let first = store.evaluate(key, agents[0]).map_err(|e| e.to_string())?;
    let mut on = 0u64;
    let ns = per_op_ns(a.samples, a.iters, agents.len(), |j| {
        let agent = agents[j];
        if let Ok(e) = store.evaluate(black_box(key), black_box(agent)) {
            on += u64::from(black_box(e).enabled);
        }
    });
    let mut out = report(bench, a, harness, ns);
    out.insert("flag".into(), key.into());
    out.insert(
        "reason_for_first_agent".into(),
        first.reason.as_str().into(),
    );
    out.insert("flags_in_store".into(), store.list().len().into());
    out.insert("evaluations_on".into(), on.into());
    emit(out);
    Ok(())
}

/// Evaluation on a snapshot held by the caller (no `arc-swap` load per call),
/// as a request that reads several flags would do.
fn snapshot(a: &Args, store: &FlagStore, agents: &[&str], harness: f64) {
    let set = store.snapshot();
    let ns = per_op_ns(a.samples, a.iters, agents.len(), |j| {
        let agent = agents[j];
        black_box(
            set.evaluate(black_box("elicitation_enabled"), black_box(agent))
                .is_ok(),
        );
    });
    emit(report("flags.evaluate_split_on_snapshot", a, harness, ns));
}

/// `--threads` threads evaluating through the same store at once; the median is
/// over every thread's batches.
fn concurrent(a: &Args, store: &FlagStore, agents: &[&str], harness: f64) -> Result<(), String> {
    let mut all = Vec::new();
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..a.threads)
            .map(|t| {
                // Each thread walks the agents from another starting point.
                let mut agents = agents.to_vec();
                let shift = t * 7919 % agents.len();
                agents.rotate_left(shift);
                scope.spawn(move || {
                    per_op_ns(a.samples, a.iters, agents.len(), |j| {
                        let agent = agents[j];
                        black_box(
                            store
                                .evaluate(black_box("elicitation_enabled"), black_box(agent))
                                .is_ok(),
                        );
                    })
                })
            })
            .collect();
        for h in handles {
            match h.join() {
                Ok(ns) => all.extend(ns),
                Err(_) => return Err("an evaluating thread panicked".to_string()),
            }
        }
        Ok(())
    })?;
    let mut out = report("flags.evaluate_split_concurrent", a, harness, all);
    out.insert("threads".into(), a.threads.into());
    emit(out);
    Ok(())
}

/// Durable writes: each `put` is validated, appended to `$flags` (flushed to disk
/// before it returns) and published.
fn write(a: &Args) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let (_events, store) = open(dir.path(), Durability::Durable)?;
    let rt = runtime()?;
    let mut h = latency_histogram();
    let started = Instant::now();
    rt.block_on(async {
        for i in 0..a.writes {
            let spec = FlagSpec::new(true, (i % 100) as f64 + 0.5);
            let t = Instant::now();
            store
                .put("rollout", &spec, None, &by())
                .await
                .map_err(|e| e.to_string())?;
            let us = t.elapsed().as_micros().max(1) as u64;
            h.record(us).map_err(|e| e.to_string())?;
        }
        Ok::<_, String>(())
    })?;
    let secs = started.elapsed().as_secs_f64();
    let mut out = Map::new();
    out.insert("bench".into(), "flags.write_durable".into());
    out.insert("writes".into(), a.writes.into());
    out.insert("writes_per_s".into(), round2(a.writes as f64 / secs));
    percentiles(&mut out, &h);
    emit(out);
    Ok(())
}

/// Rebuilding the flags from `$flags` when a store opens: `--writes` changes
/// spread over 100 flags.
fn replay(a: &Args) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    {
        let (events, store) = open(dir.path(), Durability::Buffered)?;
        let rt = runtime()?;
        rt.block_on(async {
            for i in 0..a.writes {
                let spec = FlagSpec::new(true, (i / 100 % 100) as f64);
                let key = format!("flag-{}", i % 100);
                store
                    .put(&key, &spec, None, &by())
                    .await
                    .map_err(|e| e.to_string())?;
            }
            events.flush().await.map_err(|e| e.to_string())
        })?;
    }
    let (events, _) = open(dir.path(), Durability::Buffered)?;
    let mut times = Vec::new();
    let mut flags = 0;
    for _ in 0..a.samples.min(9) {
        let t = Instant::now();
        let store =
            FlagStore::open(events.clone(), FlagStoreOptions::new()).map_err(|e| e.to_string())?;
        times.push(t.elapsed().as_secs_f64() * 1000.0);
        flags = store.list().len();
    }
    times.sort_by(f64::total_cmp);
    let mut out = Map::new();
    out.insert("bench".into(), "flags.open_replay".into());
    out.insert(
        "changes".into(),
        events.stream_version("$flags").map_or(0, |v| v + 1).into(),
    );
    out.insert("flags".into(), flags.into());
    out.insert("samples".into(), times.len().into());
    out.insert("median_ms".into(), round2(times[times.len() / 2]));
    out.insert("min_ms".into(), round2(times[0]));
    out.insert("max_ms".into(), round2(times[times.len() - 1]));
    emit(out);
    Ok(())
}
