//! `lighthouse-bench roundtrip`: the bridge over loopback HTTP, as agents use it.
//!
//! The bridge is a separate `lighthouse-bridge serve` process (the binary next
//! to this one, on `127.0.0.1`, durable store, its agents registered in its data
//! directory before it starts) or an external bridge (`--bridge URL
//! --credentials DIR`, agents registered through the admin API). Every request
//! is signed. Client and bridge share this machine's cores: the figures are of
//! the two together, and each run prints both processes' CPU use.
//!
//! - `--scenario roundtrip` (default): `--pairs` requester/target pairs; an
//!   open-loop schedule of `--rate` round trips per second (`--arrivals poisson`
//!   or `fixed`), planned in advance, round-robin over the pairs, run for
//!   `--warmup-s` then `--duration-s` measured seconds. Latency is measured from
//!   each slot's planned time (no coordinated omission); a slot dispatched more
//!   than `--late-us` after its planned time is counted late. `--path
//!   elicitations` or `messages` (see [`paths`]).
//! - `--scenario streams-memory`: `--streams` agents each open `GET /v1/stream`;
//!   then the bridge's resident memory is read from `/metrics` and from
//!   `/proc/<pid>/status`.

mod bridge;
mod client;
mod http1;
mod memory;
mod paths;
mod plan;
mod scrape;
mod stats;

use crate::sys::{load_average, runtime};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use lighthouse_security::Credential;
use serde_json::{Map, Value, json};
use tokio::sync::{mpsc, watch};

use self::bridge::BridgeProcess;
use self::client::{Agent, Http};
use self::plan::{Arrivals, schedule};
use self::scrape::Scrape;
use self::stats::{Ctx, round1};
use crate::report::emit;

/// The round trip measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PathKind {
    /// Create, push on the target's stream, respond, requester's long-poll.
    Elicitations,
    /// Message, target's long-poll, reply message, requester's long-poll.
    Messages,
}

/// Options of the roundtrip family.
#[derive(clap::Args)]
pub struct Args {
    /// roundtrip or streams-memory.
    #[arg(long, default_value = "roundtrip")]
    scenario: String,
    /// Which round trip (roundtrip).
    #[arg(long, value_enum, default_value_t = PathKind::Elicitations)]
    path: PathKind,
    /// Requester/target pairs (roundtrip).
    #[arg(long, default_value_t = 1_000)]
    pairs: u64,
    /// Planned round trips per second over all pairs (roundtrip).
    #[arg(long, default_value_t = 3_000)]
    rate: u64,
    /// Spacing of planned send times (roundtrip).
    #[arg(long, value_enum, default_value_t = Arrivals::Poisson)]
    arrivals: Arrivals,
    /// Seed of the Poisson schedule.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Measured seconds of schedule (roundtrip).
    #[arg(long, default_value_t = 20)]
    duration_s: u64,
    /// Seconds of schedule run before measuring (roundtrip).
    #[arg(long, default_value_t = 2)]
    warmup_s: u64,
    /// A round trip not answered this long after its planned time is a
    /// `timeout`; also the requester's long-poll `wait_ms`.
    #[arg(long, default_value_t = 10_000)]
    timeout_ms: u64,
    /// A slot dispatched later than this after its planned time counts as late
    /// (the runtime's timers tick in whole milliseconds).
    #[arg(long, default_value_t = 2_000)]
    late_us: u64,
    /// Agent streams to open (streams-memory).
    #[arg(long, default_value_t = 10_000)]
    streams: u64,
    /// Seconds to hold the streams open before reading memory (streams-memory).
    #[arg(long, default_value_t = 5)]
    hold_s: u64,
    /// An external bridge's base URL (default: spawn `lighthouse-bridge`).
    #[arg(long, requires = "credentials")]
    bridge: Option<String>,
    /// The external bridge's credentials folder (holding `admin.json`).
    #[arg(long)]
    credentials: Option<PathBuf>,
    /// The external bridge's process id, to read its memory and CPU from /proc.
    #[arg(long)]
    bridge_pid: Option<u32>,
    /// The `lighthouse-bridge` binary to spawn (default: next to this one).
    #[arg(long)]
    bridge_bin: Option<PathBuf>,
    /// `RUST_LOG` of the spawned bridge (its log goes to `bridge.log` beside
    /// the data directory). The spawned bridge inherits the environment, so
    /// `LIGHTHOUSE_DURABILITY=buffered` runs it without flushing each append
    /// (a diagnostic; the durable store is the default and the target).
    #[arg(long, default_value = "info")]
    bridge_log: String,
    /// Tokio worker threads of the spawned bridge (its `TOKIO_WORKER_THREADS`;
    /// default: the bridge's own default, one per core).
    #[arg(long)]
    bridge_workers: Option<usize>,
    /// Keep the spawned bridge's data under this folder instead of a temporary
    /// one (agents already registered there are reused).
    #[arg(long)]
    dir: Option<PathBuf>,
}

/// Runs the chosen scenario.
pub fn run(a: Args) -> Result<(), String> {
    match a.scenario.as_str() {
        "roundtrip" => round_trips(&a),
        "streams-memory" => memory::streams_memory(&a),
        s => Err(format!("unknown scenario {s}")),
    }
}

/// Raises this process's open-file limit to its hard limit (a spawned bridge
/// inherits it). Returns `(soft, hard)` after the change.
fn raise_nofile() -> (u64, u64) {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit write/read the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 && r.rlim_cur < r.rlim_max {
            let want = libc::rlimit {
                rlim_cur: r.rlim_max,
                rlim_max: r.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                r = want;
            }
        }
    }
    (r.rlim_cur, r.rlim_max)
}

/// The bridge under test and the credentials of the bench's agents.
struct Setup {
    http: Http,
    creds: Vec<Credential>,
    process: Option<BridgeProcess>,
    pid: Option<u32>,
    _dir: Option<tempfile::TempDir>,
}

/// Agent ids for a run: `<prefix>-<n>` for each prefix; prefixed with a run
/// tag against an external bridge, whose earlier runs' agents still exist.
fn agent_ids(a: &Args, prefixes: &[&str], n: u64) -> Vec<String> {
    let tag = match a.bridge {
        None => String::new(),
        Some(_) => format!(
            "b{}-",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
        ),
    };
    prefixes
        .iter()
        .flat_map(|p| (0..n).map(move |i| (p, i)))
        .map(|(p, i)| format!("{tag}{p}-{i}"))
        .collect()
}

fn setup(a: &Args, ids: &[String], rt: &tokio::runtime::Runtime) -> Result<Setup, String> {
    if let Some(url) = &a.bridge {
        let http = Http::new(url)?;
        let dir = a
            .credentials
            .as_ref()
            .ok_or("--bridge needs --credentials")?;
        let admin = Credential::read(dir.join("admin.json")).map_err(|e| e.to_string())?;
        let creds = rt.block_on(bridge::register_remote(&http, &Agent::new(&admin), ids))?;
        return Ok(Setup {
            http,
            creds,
            process: None,
            pid: a.bridge_pid,
            _dir: None,
        });
    }
    let (root, keep) = match &a.dir {
        Some(d) => (d.clone(), None),
        None => {
            let t = tempfile::Builder::new()
                .prefix("lighthouse-bench-roundtrip")
                .tempdir_in(std::env::temp_dir())
                .map_err(|e| e.to_string())?;
            (t.path().to_path_buf(), Some(t))
        }
    };
    let data = root.join("data");
    let bin = bridge::bridge_binary(a.bridge_bin.as_deref())?;
    // Which bridge ran: `cargo build -p lighthouse-benches` does not rebuild it.
    let modified = std::fs::metadata(&bin)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs());
    eprintln!(
        "bridge binary: {} (modified {} s after the Unix epoch)",
        bin.display(),
        modified
    );
    let creds = bridge::prepare_data(&data, ids)?;
    let process = bridge::spawn(&bin, &data, &a.bridge_log, a.bridge_workers)?;
    let http = Http::new(&process.base)?;
    Ok(Setup {
        http,
        creds,
        pid: Some(process.pid),
        process: Some(process),
        _dir: keep,
    })
}

/// The share of the last 10 s in which some task waited for a CPU (`"cpu"`)
/// or for the disk (`"io"`) (`/proc/pressure/<kind>`, `some avg10`): how
/// contended the machine was.
fn pressure(kind: &str) -> Option<f64> {
    std::fs::read_to_string(format!("/proc/pressure/{kind}"))
        .ok()?
        .lines()
        .find(|l| l.starts_with("some"))?
        .split_whitespace()
        .find_map(|f| f.strip_prefix("avg10="))?
        .parse()
        .ok()
}

/// Process figures sampled at the start and end of the measured window.
struct Usage {
    at: std::time::Instant,
    client: Option<Duration>,
    bridge: Option<Duration>,
    bridge_threads: std::collections::BTreeMap<String, (Duration, Duration)>,
}

impl Usage {
    fn now(pid: Option<u32>) -> Self {
        Usage {
            at: std::time::Instant::now(),
            client: crate::sys::process_cpu("self"),
            bridge: pid.and_then(|p| crate::sys::process_cpu(&p.to_string())),
            bridge_threads: pid.map(crate::sys::thread_cpu).unwrap_or_default(),
        }
    }

    /// `client_cpu_pct`, `bridge_cpu_pct` (100 = one core busy) since `self`.
    fn report(&self, end: &Usage, out: &mut Map<String, Value>) {
        let wall = end.at.duration_since(self.at).as_secs_f64().max(1e-9);
        for (name, a, b) in [
            ("client_cpu_pct", self.client, end.client),
            ("bridge_cpu_pct", self.bridge, end.bridge),
        ] {
            if let (Some(a), Some(b)) = (a, b) {
                let pct = b.saturating_sub(a).as_secs_f64() / wall * 100.0;
                out.insert(name.into(), round1(pct).into());
            }
        }
        // Where the bridge's CPU went: per thread group, user and system time.
        let mut by_thread = Map::new();
        for (group, (u1, s1)) in &end.bridge_threads {
            let (u0, s0) = self
                .bridge_threads
                .get(group)
                .copied()
                .unwrap_or((Duration::ZERO, Duration::ZERO));
            let pct =
                |a: Duration, b: Duration| round1(b.saturating_sub(a).as_secs_f64() / wall * 100.0);
            let (user, system) = (pct(u0, *u1), pct(s0, *s1));
            if user + system > 0.0 {
                by_thread.insert(
                    group.clone(),
                    serde_json::json!({"user_pct": user, "system_pct": system}),
                );
            }
        }
        if !by_thread.is_empty() {
            out.insert("bridge_cpu_by_thread".into(), by_thread.into());
        }
    }
}

/// The dispatcher: a thread of its own that sleeps (with the operating
/// system's microsecond timers, not the runtime's millisecond ones) until each
/// slot's planned time and starts its round trip on the runtime.
struct Dispatch {
    ctx: Arc<Ctx>,
    slots: Vec<u64>,
    start_us: u64,
    measure_from: u64,
    requesters: Vec<Agent>,
    targets: Vec<String>,
    path: PathKind,
    pid: Option<u32>,
    runtime: tokio::runtime::Handle,
}

impl Dispatch {
    /// Runs the schedule; returns the usage sampled as the measured window began.
    fn run(self) -> Option<Usage> {
        let t0 = self.ctx.t0.into_std();
        let mut first = None;
        for (i, off) in self.slots.iter().enumerate() {
            let planned = self.start_us + off;
            let at = t0 + Duration::from_micros(planned);
            let now = std::time::Instant::now();
            if at > now {
                std::thread::sleep(at - now);
            }
            if first.is_none() && planned >= self.measure_from {
                first = Some(Usage::now(self.pid));
            }
            self.ctx.dispatched(planned);
            let pair = i % self.requesters.len();
            let (ctx, me, to) = (
                self.ctx.clone(),
                self.requesters[pair].clone(),
                self.targets[pair].clone(),
            );
            match self.path {
                PathKind::Elicitations => self.runtime.spawn(paths::elicit(ctx, me, to, planned)),
                PathKind::Messages => self
                    .runtime
                    .spawn(paths::send_message(ctx, me, to, planned)),
            };
        }
        first
    }
}

fn round_trips(a: &Args) -> Result<(), String> {
    let (nofile, _) = raise_nofile();
    let load_before = load_average();
    let pressure_before = (pressure("cpu"), pressure("io"));
    let pairs = a.pairs.max(1);
    let rt = runtime()?;
    let ids = agent_ids(a, &["req", "tgt"], pairs);
    let s = setup(a, &ids, &rt)?;
    let agents: Vec<Agent> = s.creds.iter().map(Agent::new).collect();
    let (requesters, targets) = agents.split_at(usize::try_from(pairs).unwrap_or(usize::MAX));
    let timeout = Duration::from_millis(a.timeout_ms.clamp(1, 60_000));
    let ctx = Arc::new(Ctx::new(s.http.clone(), timeout, a.late_us));
    let slots = schedule(a.rate, a.warmup_s + a.duration_s, a.arrivals, a.seed);
    let mut out = rt.block_on(async {
        let (stop_tx, stop_rx) = watch::channel(false);
        let (ready_tx, mut ready_rx) = mpsc::channel(1024);
        let mut background = tokio::task::JoinSet::new();
        let listeners: Vec<(&Agent, paths::Side)> = match a.path {
            PathKind::Elicitations => targets.iter().map(|t| (t, paths::Side::Target)).collect(),
            PathKind::Messages => targets
                .iter()
                .map(|t| (t, paths::Side::Target))
                .chain(requesters.iter().map(|r| (r, paths::Side::Requester)))
                .collect(),
        };
        for (agent, side) in &listeners {
            let (ctx, me, stop, ready) = (
                ctx.clone(),
                (*agent).clone(),
                stop_rx.clone(),
                ready_tx.clone(),
            );
            match a.path {
                PathKind::Elicitations => {
                    background.spawn(paths::target_stream(ctx, me, stop, ready))
                }
                PathKind::Messages => {
                    background.spawn(paths::message_poller(ctx, me, *side, stop, ready))
                }
            };
        }
        drop(ready_tx);
        let mut ready = 0;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        while ready < listeners.len() {
            match tokio::time::timeout_at(deadline, ready_rx.recv()).await {
                Ok(Some(())) => ready += 1,
                _ => break,
            }
        }
        if ready < listeners.len() {
            return Err(format!(
                "only {ready} of {} streams/long-polls opened",
                listeners.len()
            ));
        }
        // Let the last long-polls reach the bridge before the schedule starts.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let start_us = ctx.now_us() + 200_000;
        let measure_from = start_us + a.warmup_s * 1_000_000;
        let end_us = measure_from + a.duration_s * 1_000_000;
        ctx.measure_window(measure_from, end_us);
        let plan = Dispatch {
            ctx: ctx.clone(),
            slots,
            start_us,
            measure_from,
            requesters: requesters.to_vec(),
            targets: targets.iter().map(|t| t.id.clone()).collect(),
            path: a.path,
            pid: s.pid,
            runtime: tokio::runtime::Handle::current(),
        };
        let dispatcher = tokio::task::spawn_blocking(move || plan.run());
        tokio::time::sleep_until(ctx.t0 + Duration::from_micros(measure_from)).await;
        let scrape_first = Scrape::take(&ctx.http).await;
        let first = dispatcher.await.map_err(|e| format!("dispatcher: {e}"))?;
        tokio::time::sleep_until(ctx.t0 + Duration::from_micros(end_us)).await;
        let last = Usage::now(s.pid);
        let scrape_last = Scrape::take(&ctx.http).await;
        let drain_until = tokio::time::Instant::now() + timeout + Duration::from_secs(1);
        while ctx.unfinished() > 0 && tokio::time::Instant::now() < drain_until {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        ctx.close();
        let _ = stop_tx.send(true);
        background.abort_all();
        let mut out = Map::new();
        if let Some(first) = first {
            first.report(&last, &mut out);
        }
        if let (Some(a), Some(b)) = (scrape_first, scrape_last) {
            out.insert("bridge_metrics".into(), a.window(&b));
        }
        Ok::<_, String>(out)
    })?;
    let name = match a.path {
        PathKind::Elicitations => "roundtrip.elicitations",
        PathKind::Messages => "roundtrip.messages",
    };
    let mut head = Map::new();
    head.insert("scenario".into(), name.into());
    head.insert("pairs".into(), pairs.into());
    head.insert("rate_planned_per_s".into(), a.rate.into());
    head.insert(
        "arrivals".into(),
        json!(format!("{:?}", a.arrivals).to_lowercase()),
    );
    head.insert("duration_s".into(), a.duration_s.into());
    head.insert("warmup_s".into(), a.warmup_s.into());
    head.insert("timeout_ms".into(), a.timeout_ms.into());
    head.insert("late_us".into(), a.late_us.into());
    let stats = ctx
        .stats
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    stats.report(&mut head, a.duration_s.max(1) as f64);
    let p99 = stats.round_trip.value_at_quantile(0.99);
    let achieved = stats.completed_in_window as f64 / a.duration_s.max(1) as f64;
    // 1% slack for the count of a Poisson schedule (2.5 standard deviations at
    // 3,000/s over 20 s).
    let met = achieved >= 3_000.0 * 0.99 && p99 <= 10_000 && stats.failed == 0;
    drop(stats);
    head.append(&mut out);
    if let Some(pid) = s.pid {
        head.insert(
            "bridge_rss_bytes_end".into(),
            bridge::proc_status_kib(pid, "VmRSS")
                .map(|k| k * 1024)
                .into(),
        );
    }
    head.insert("loadavg_1m_before".into(), load_before.into());
    head.insert("loadavg_1m_after".into(), load_average().into());
    head.insert("cpu_pressure_pct_before".into(), pressure_before.0.into());
    head.insert("cpu_pressure_pct_after".into(), pressure("cpu").into());
    head.insert("io_pressure_pct_before".into(), pressure_before.1.into());
    head.insert("io_pressure_pct_after".into(), pressure("io").into());
    head.insert("nofile_limit".into(), nofile.into());
    head.insert(
        "bridge".into(),
        if s.process.is_some() {
            "spawned"
        } else {
            "external"
        }
        .into(),
    );
    head.insert("bridge_log".into(), a.bridge_log.clone().into());
    head.insert(
        "bridge_workers".into(),
        a.bridge_workers
            .map_or_else(|| "default".into(), |n| n.max(1).into()),
    );
    // A spawned bridge inherits the environment, so this is its durability.
    head.insert(
        "bridge_durability".into(),
        std::env::var("LIGHTHOUSE_DURABILITY")
            .unwrap_or_else(|_| "durable".to_owned())
            .into(),
    );
    head.insert(
        "cores".into(),
        std::thread::available_parallelism()
            .map_or(0, |n| n.get())
            .into(),
    );
    head.insert(
        "note".into(),
        "client and bridge share the machine's cores".into(),
    );
    head.insert("target".into(), json!({"per_s": 3000, "p99_us": 10_000}));
    head.insert("meets_target".into(), met.into());
    emit(head);
    drop(s);
    Ok(())
}
