//! `lighthouse-bench store`: event store scenarios.
//!
//! Every scenario writes events whose `data` is 256 bytes of JSON, as in the
//! targets of issue 2, and prints one JSON line.

use crate::sys::runtime;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use lighthouse_event_store::{Durability, EventStore, Filter, NewEvent, Query, StoreOptions};
use serde_json::{Map, Value, json};

use crate::report::{emit, latency_histogram, percentiles};

/// Options of the store family.
#[derive(clap::Args)]
pub struct Args {
    /// durable-concurrent, durable-single, buffered, read-stream, verify, reopen,
    /// index-memory.
    #[arg(long)]
    scenario: String,
    /// Events to append (append scenarios) or to hold in the store (read-stream,
    /// verify, reopen).
    #[arg(long, default_value_t = 200_000)]
    events: u64,
    /// Concurrent appenders.
    #[arg(long, default_value_t = 64)]
    writers: u64,
    /// Events per append call in the append scenarios (1 = single appends).
    #[arg(long, default_value_t = 1)]
    batch: u64,
    /// Reads to time in read-stream.
    #[arg(long, default_value_t = 2_000)]
    reads: u64,
    /// Keep the store here (reused by read-stream, verify and reopen when it
    /// already holds enough events) instead of a temporary directory.
    #[arg(long)]
    dir: Option<PathBuf>,
}

const KEY: &[u8] = b"lighthouse-bench store key 32 by";
/// Events per stream in the populated store (read-stream reads 100 of one).
const EVENTS_PER_STREAM: u64 = 100;

fn payload() -> Value {
    // {"p":"xxx..."} is exactly 256 bytes of JSON.
    json!({ "p": "x".repeat(256 - 8) })
}

/// Runs the chosen scenario.
pub fn run(a: Args) -> Result<(), String> {
    match a.scenario.as_str() {
        "durable-concurrent" => append(
            &a,
            Durability::Durable,
            a.writers,
            "store.durable_concurrent",
        ),
        "durable-single" => append(&a, Durability::Durable, 1, "store.durable_single"),
        "buffered" => append(&a, Durability::Buffered, a.writers, "store.buffered"),
        "read-stream" => read_stream(&a),
        "verify" => verify(&a),
        "reopen" => reopen(&a),
        "index-memory" => index_memory(&a),
        s => Err(format!("unknown scenario {s}")),
    }
}

fn store_dir(a: &Args) -> Result<(PathBuf, Option<tempfile::TempDir>), String> {
    match &a.dir {
        Some(d) => Ok((d.clone(), None)),
        None => {
            let t = tempfile::Builder::new()
                .prefix("lighthouse-bench-store")
                .tempdir_in(std::env::temp_dir())
                .map_err(|e| e.to_string())?;
            Ok((t.path().to_path_buf(), Some(t)))
        }
    }
}

fn append(a: &Args, durability: Durability, writers: u64, name: &str) -> Result<(), String> {
    let rt = runtime()?;
    let (dir, _keep) = store_dir(a)?;
    let store = EventStore::open(&dir, StoreOptions::new(KEY).durability(durability))
        .map_err(|e| e.to_string())?;
    let next = Arc::new(AtomicU64::new(0));
    let total = a.events;
    let data = payload();
    let batch = a.batch.clamp(1, 1000);
    let start = Instant::now();
    let hist = rt.block_on(async {
        let mut tasks = Vec::new();
        for w in 0..writers {
            let (store, next, data) = (store.clone(), next.clone(), data.clone());
            tasks.push(tokio::spawn(async move {
                let mut h = latency_histogram();
                let stream = format!("bench-{w}");
                loop {
                    let claimed = next.fetch_add(batch, Ordering::Relaxed);
                    if claimed >= total {
                        break;
                    }
                    let n = batch.min(total - claimed);
                    let events = (0..n)
                        .map(|_| NewEvent::new(stream.as_str(), "bench.appended", data.clone()))
                        .collect();
                    let t = Instant::now();
                    store.append(events).await.map_err(|e| e.to_string())?;
                    h.record(t.elapsed().as_micros().max(1) as u64).ok();
                }
                Ok::<_, String>(h)
            }));
        }
        let mut all = latency_histogram();
        for t in tasks {
            let h = t.await.map_err(|e| e.to_string())??;
            all.add(&h).map_err(|e| e.to_string())?;
        }
        Ok::<_, String>(all)
    })?;
    let secs = start.elapsed().as_secs_f64();
    let verified = store.verify().map_err(|e| e.to_string())?;
    let mut out = Map::new();
    out.insert("bench".into(), name.into());
    out.insert("events".into(), total.into());
    out.insert("writers".into(), writers.into());
    out.insert("events_per_append".into(), batch.into());
    out.insert(
        "durability".into(),
        format!("{durability:?}").to_lowercase().into(),
    );
    out.insert(
        "events_per_s".into(),
        ((total as f64 / secs).round() as u64).into(),
    );
    percentiles(&mut out, &hist);
    out.insert("verify_ok".into(), verified.ok().into());
    emit(out);
    Ok(())
}

/// Opens (or fills) a store with `a.events` events in streams of 100 events
/// each, interleaved (event `i` goes to stream `i % streams`), so the events of a
/// stream are spread over the whole log as they are in a live bridge.
fn populated(a: &Args) -> Result<(PathBuf, Option<tempfile::TempDir>, f64), String> {
    let (dir, keep) = store_dir(a)?;
    let store = EventStore::open(
        &dir,
        StoreOptions::new(KEY).durability(Durability::Buffered),
    )
    .map_err(|e| e.to_string())?;
    let have = store.head_seq();
    let start = Instant::now();
    if have < a.events {
        let rt = runtime()?;
        let data = payload();
        let streams = (a.events / EVENTS_PER_STREAM).max(1);
        rt.block_on(async {
            let mut seq = have;
            while seq < a.events {
                let n = (a.events - seq).min(1000);
                let batch = (seq..seq + n)
                    .map(|i| {
                        NewEvent::new(
                            format!("stream-{}", i % streams),
                            "bench.appended",
                            data.clone(),
                        )
                    })
                    .collect();
                store.append(batch).await.map_err(|e| e.to_string())?;
                seq += n;
            }
            store.flush().await.map_err(|e| e.to_string())
        })?;
    }
    let filled = start.elapsed().as_secs_f64();
    drop(store);
    // sled lets go of the directory from a background thread a moment after the
    // last handle, and an open retries its lock with sleeps meanwhile: the
    // callers time opens, which must not include that wait.
    std::thread::sleep(std::time::Duration::from_millis(500));
    Ok((dir, keep, filled))
}

fn read_stream(a: &Args) -> Result<(), String> {
    let (dir, _keep, _) = populated(a)?;
    let store = EventStore::open(&dir, StoreOptions::new(KEY)).map_err(|e| e.to_string())?;
    let streams = store.head_seq() / EVENTS_PER_STREAM;
    let mut h = latency_histogram();
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    for _ in 0..a.reads {
        // xorshift: a cheap, repeatable choice of stream.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let s = format!("stream-{}", x % streams.max(1));
        let t = Instant::now();
        let page = store
            .read(&Query {
                limit: 100,
                ..Query::new(Filter::stream(s))
            })
            .map_err(|e| e.to_string())?;
        h.record(t.elapsed().as_micros().max(1) as u64).ok();
        if page.events.len() != EVENTS_PER_STREAM as usize {
            return Err(format!("read {} events, expected 100", page.events.len()));
        }
    }
    let mut out = Map::new();
    out.insert("bench".into(), "store.read_stream".into());
    out.insert("stored_events".into(), store.head_seq().into());
    out.insert("events_per_read".into(), EVENTS_PER_STREAM.into());
    out.insert("reads".into(), a.reads.into());
    percentiles(&mut out, &h);
    emit(out);
    Ok(())
}

fn verify(a: &Args) -> Result<(), String> {
    let (dir, _keep, _) = populated(a)?;
    let store = EventStore::open(&dir, StoreOptions::new(KEY)).map_err(|e| e.to_string())?;
    let t = Instant::now();
    let r = store.verify().map_err(|e| e.to_string())?;
    let secs = t.elapsed().as_secs_f64();
    let mut out = Map::new();
    out.insert("bench".into(), "store.verify".into());
    out.insert("events".into(), r.checked.into());
    out.insert("ok".into(), r.ok().into());
    out.insert("seconds".into(), json!((secs * 1000.0).round() / 1000.0));
    emit(out);
    Ok(())
}

fn reopen(a: &Args) -> Result<(), String> {
    let (dir, _keep, _) = populated(a)?;
    let rt = runtime()?;
    let t = Instant::now();
    let store = EventStore::open(&dir, StoreOptions::new(KEY)).map_err(|e| e.to_string())?;
    let opened = t.elapsed().as_secs_f64();
    let appended = rt
        .block_on(store.append_one(NewEvent::new("reopen", "bench.appended", payload())))
        .map_err(|e| e.to_string())?;
    let secs = t.elapsed().as_secs_f64();
    let mut out = Map::new();
    out.insert("bench".into(), "store.reopen".into());
    out.insert("events".into(), (appended.seq - 1).into());
    out.insert(
        "open_seconds".into(),
        json!((opened * 1000.0).round() / 1000.0),
    );
    out.insert(
        "until_first_append_seconds".into(),
        json!((secs * 1000.0).round() / 1000.0),
    );
    emit(out);
    Ok(())
}

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

/// Resident memory taken by the in-memory indexes for `a.events` events shaped
/// like a bridge's: one stream per elicitation (two events each), a correlation id
/// per event, 1,000 agents, 6 types.
pub fn index_memory(a: &Args) -> Result<(), String> {
    use lighthouse_event_store::Timestamp;
    use lighthouse_event_store::codec::{ChainKey, GENESIS, Prepared, RecordView};
    use lighthouse_event_store::index::Indexes;
    let key = ChainKey::new(KEY);
    let before = rss_bytes();
    let mut idx = Indexes::new();
    for s in 1..=a.events {
        let e = NewEvent::new(
            format!("elicitation-el_{:026}", s / 2),
            format!("elicitation.t{}", s % 6),
            json!(s),
        )
        .with_agent(format!("agent-{}", s % 1000))
        .with_correlation_id(format!("req-{s:020}"));
        let (bytes, _) = Prepared::new(e).map_err(|e| e.to_string())?.finish(
            &key,
            &GENESIS,
            s,
            s % 2,
            Timestamp::from_unix_millis(s as i64),
            &format!("{s:026}"),
        );
        let v = RecordView::parse(&bytes).map_err(|e| e.0.to_string())?;
        idx.add(&v);
    }
    let after = rss_bytes();
    let mut out = Map::new();
    out.insert("bench".into(), "store.index_memory".into());
    out.insert("events".into(), a.events.into());
    out.insert("streams".into(), a.events.div_ceil(2).into());
    out.insert(
        "rss_delta_bytes".into(),
        after.saturating_sub(before).into(),
    );
    out.insert(
        "bytes_per_event".into(),
        (after.saturating_sub(before) / a.events.max(1)).into(),
    );
    emit(out);
    std::hint::black_box(idx);
    Ok(())
}
