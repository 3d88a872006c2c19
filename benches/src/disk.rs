//! `lighthouse-bench disk`: what one durable write costs on this disk, alone.
//!
//! A thread overwrites a preallocated, zero-filled file in `--bytes` writes, each
//! followed by `fdatasync` (`File::sync_data`), for `--seconds`, and records how
//! long every write and sync took. The file is filled and synced first, so the
//! syncs carry data only (no block allocation, no size change): the same work as
//! the event store's group commit into a segment whose space it has already
//! zero-filled. The result is the floor under every durable-append latency
//! measured on the machine: a group commit cannot be faster than its sync, and a
//! round trip that waits for two commits in a row meets this tail twice
//! (docs/PERFORMANCE.md, session 13).

use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use crate::report::{emit, latency_histogram, percentiles};
use crate::sys::load_average;

/// Size of the file overwritten in a loop (zero-filled and synced first).
const FILE_BYTES: u64 = 64 << 20;

/// At most this many slow syncs are listed one by one in the report.
const LISTED_STALLS: usize = 100;

/// Options of the disk family.
#[derive(clap::Args)]
pub struct Args {
    /// Seconds to probe.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Bytes written before each sync (1 to 1 MiB).
    #[arg(long, default_value_t = 2_048)]
    bytes: usize,
    /// Directory for the probe file: put it on the disk under test (the store's).
    #[arg(long, default_value = ".")]
    dir: PathBuf,
    /// A sync slower than this many microseconds is listed with its time.
    #[arg(long, default_value_t = 2_000)]
    stall_us: u64,
}

/// Runs the sync probe.
pub fn run(a: Args) -> Result<(), String> {
    if a.seconds == 0 || a.bytes == 0 || a.bytes > 1 << 20 || a.stall_us == 0 {
        return Err(
            "--seconds and --stall-us must be at least 1, --bytes from 1 to 1048576".into(),
        );
    }
    let load_before = load_average();
    let tmp = tempfile::NamedTempFile::new_in(&a.dir)
        .map_err(|e| format!("cannot create a file in {}: {e}", a.dir.display()))?;
    let mut file = tmp.as_file().try_clone().map_err(|e| e.to_string())?;
    prefill(&mut file).map_err(|e| format!("cannot fill the probe file: {e}"))?;

    let block = vec![0x5au8; a.bytes];
    let blocks_per_file = FILE_BYTES / a.bytes as u64;
    let mut sync = latency_histogram();
    let mut write = latency_histogram();
    let (mut syncs, mut over_1ms, mut over_5ms, mut over_20ms) = (0u64, 0u64, 0u64, 0u64);
    let mut stalls: Vec<(f64, u64)> = Vec::new();
    let mut stall_count = 0u64;
    let start = Instant::now();
    let end = start + Duration::from_secs(a.seconds);
    let mut written = 0u64;
    loop {
        let t = Instant::now();
        if t >= end {
            break;
        }
        if written == blocks_per_file {
            file.seek(SeekFrom::Start(0)).map_err(|e| e.to_string())?;
            written = 0;
        }
        file.write_all(&block).map_err(|e| e.to_string())?;
        let w = Instant::now();
        file.sync_data().map_err(|e| e.to_string())?;
        let done = Instant::now();
        written += 1;
        syncs += 1;
        write.saturating_record(micros(w - t).max(1));
        let us = micros(done - w).max(1);
        sync.saturating_record(us);
        over_1ms += u64::from(us > 1_000);
        over_5ms += u64::from(us > 5_000);
        over_20ms += u64::from(us > 20_000);
        if us > a.stall_us {
            stall_count += 1;
            if stalls.len() < LISTED_STALLS {
                let at = (w - start).as_secs_f64();
                stalls.push(((at * 100.0).round() / 100.0, us));
            }
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let mut out = Map::new();
    out.insert("bench".into(), "disk.write_fdatasync".into());
    out.insert("dir".into(), a.dir.display().to_string().into());
    out.insert("seconds".into(), a.seconds.into());
    out.insert("bytes_per_write".into(), a.bytes.into());
    out.insert("syncs".into(), syncs.into());
    out.insert(
        "syncs_per_s".into(),
        ((syncs as f64 / elapsed).round() as u64).into(),
    );
    percentiles(&mut out, &sync);
    out.insert("write_p50_us".into(), write.value_at_quantile(0.5).into());
    out.insert("write_p99_us".into(), write.value_at_quantile(0.99).into());
    out.insert("over_1ms".into(), over_1ms.into());
    out.insert("over_5ms".into(), over_5ms.into());
    out.insert("over_20ms".into(), over_20ms.into());
    out.insert("stall_us".into(), a.stall_us.into());
    out.insert("stalls".into(), stall_count.into());
    out.insert(
        "stalls_at_s_us".into(),
        Value::Array(
            stalls
                .iter()
                .map(|(at, us)| Value::Array(vec![(*at).into(), (*us).into()]))
                .collect(),
        ),
    );
    if let Some(l) = load_before {
        out.insert("machine_load_1m_before".into(), l.into());
    }
    emit(out);
    Ok(())
}

/// Writes `FILE_BYTES` of zeros and syncs them, then rewinds.
fn prefill(file: &mut File) -> std::io::Result<()> {
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..FILE_BYTES / (1 << 20) {
        file.write_all(&zeros)?;
    }
    file.sync_all()?;
    file.seek(SeekFrom::Start(0))?;
    Ok(())
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}
