//! `--scenario streams-memory`: the bridge's resident memory with `--streams`
//! agent streams open, one connection per registered agent.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value, json};
use tokio::sync::{Semaphore, mpsc, watch};

use super::bridge::{metric, proc_status_kib};
use super::client::{Agent, Http};
use super::{Args, agent_ids, raise_nofile, runtime, setup};
use crate::report::emit;

/// Streams being opened at once (the listen backlog stays far from full).
const OPENING_AT_ONCE: usize = 256;
/// File descriptors this process needs besides one per stream.
const SPARE_FDS: u64 = 256;
/// The target of issue 6.
const TARGET_BYTES: u64 = 512 * 1024 * 1024;

/// What one memory reading found.
fn reading(http_metrics: &str, pid: Option<u32>) -> Value {
    json!({
        "metrics_rss_bytes": metric(http_metrics, "process_resident_memory_bytes"),
        "stream_connections": metric(http_metrics, "lighthouse_stream_connections"),
        "vm_rss_bytes": pid.and_then(|p| proc_status_kib(p, "VmRSS")).map(|k| k * 1024),
        "vm_hwm_bytes": pid.and_then(|p| proc_status_kib(p, "VmHWM")).map(|k| k * 1024),
    })
}

/// Opens one stream, reports the outcome on `opened`, then reads it (heartbeats)
/// until `stop`.
async fn hold_stream(
    http: Http,
    me: Agent,
    opened: mpsc::Sender<Result<(), String>>,
    gate: Arc<Semaphore>,
    mut stop: watch::Receiver<bool>,
) {
    let permit = gate.acquire_owned().await;
    let mut reader = match http.open_stream(&me, None).await {
        Ok(r) => r,
        Err(kind) => {
            let _ = opened.send(Err(kind)).await;
            return;
        }
    };
    drop(permit);
    let _ = opened.send(Ok(())).await;
    loop {
        tokio::select! {
            ev = reader.next() => if !matches!(ev, Ok(Some(_))) { return },
            _ = stop.changed() => return,
        }
    }
}

/// Runs the scenario.
pub fn streams_memory(a: &Args) -> Result<(), String> {
    let (soft, hard) = raise_nofile();
    let n = a.streams.max(1);
    if soft < n + SPARE_FDS {
        return Err(format!(
            "the open-file limit is {soft} (hard {hard}); {n} streams need at least {}: raise `ulimit -n`",
            n + SPARE_FDS
        ));
    }
    let rt = runtime()?;
    let ids = agent_ids(a, &["st"], n);
    let s = setup(a, &ids, &rt)?;
    let agents: Vec<Agent> = s.creds.iter().map(Agent::new).collect();
    let mut out = rt.block_on(async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let before = reading(&s.http.get_text("/metrics").await?, s.pid);
        let (stop_tx, stop_rx) = watch::channel(false);
        let (opened_tx, mut opened_rx) = mpsc::channel(1024);
        let gate = Arc::new(Semaphore::new(OPENING_AT_ONCE));
        let mut tasks = tokio::task::JoinSet::new();
        let started = std::time::Instant::now();
        for me in &agents {
            tasks.spawn(hold_stream(
                s.http.clone(),
                me.clone(),
                opened_tx.clone(),
                gate.clone(),
                stop_rx.clone(),
            ));
        }
        drop(opened_tx);
        let (mut ok, mut errors) = (0u64, std::collections::BTreeMap::<String, u64>::new());
        while let Some(r) = opened_rx.recv().await {
            match r {
                Ok(()) => ok += 1,
                Err(k) => *errors.entry(k).or_default() += 1,
            }
            if ok + errors.values().sum::<u64>() == n {
                break;
            }
        }
        let open_s = started.elapsed().as_secs_f64();
        tokio::time::sleep(Duration::from_secs(a.hold_s)).await;
        let held = reading(&s.http.get_text("/metrics").await?, s.pid);
        let client_rss = proc_status_kib(std::process::id(), "VmRSS").map(|k| k * 1024);
        let _ = stop_tx.send(true);
        tasks.abort_all();
        let mut out = Map::new();
        out.insert("streams_open".into(), ok.into());
        out.insert("open_errors".into(), json!(errors));
        out.insert("open_s".into(), ((open_s * 10.0).round() / 10.0).into());
        out.insert("before".into(), before);
        out.insert("held".into(), held);
        out.insert("client_rss_bytes".into(), client_rss.into());
        Ok::<_, String>(out)
    })?;
    let rss = out["held"]["vm_rss_bytes"]
        .as_u64()
        .or_else(|| out["held"]["metrics_rss_bytes"].as_f64().map(|b| b as u64));
    let base = out["before"]["vm_rss_bytes"].as_u64().or_else(|| {
        out["before"]["metrics_rss_bytes"]
            .as_f64()
            .map(|b| b as u64)
    });
    let open = out["streams_open"].as_u64().unwrap_or(0);
    let mut head = Map::new();
    head.insert("scenario".into(), "roundtrip.streams_memory".into());
    head.insert("streams".into(), n.into());
    head.insert("hold_s".into(), a.hold_s.into());
    head.append(&mut out);
    if let (Some(r), Some(b)) = (rss, base)
        && open > 0
    {
        head.insert(
            "bytes_per_stream".into(),
            (r.saturating_sub(b) / open).into(),
        );
    }
    head.insert("loadavg_1m".into(), crate::sys::load_average().into());
    head.insert("cpu_pressure_pct".into(), super::pressure("cpu").into());
    head.insert("nofile_limit".into(), soft.into());
    head.insert("target_bytes".into(), TARGET_BYTES.into());
    head.insert(
        "meets_target".into(),
        (open == n && rss.is_some_and(|r| r <= TARGET_BYTES)).into(),
    );
    emit(head);
    drop(s);
    Ok(())
}
