//! `lighthouse-bench elicitation`: the elicitation service in process, on a
//! durable store.
//!
//! - `round-trip`: `--pairs` requester/target pairs. Each target holds an agent
//!   subscription and accepts every elicitation it is notified of; each requester
//!   creates one, then waits on it until it observes the outcome. Open loop: round
//!   trips are planned on a fixed schedule of `--rate` per second over all pairs,
//!   and the latency (`p50_us` ... `max_us`) is from the planned start, so it
//!   includes any queueing behind a pair's earlier round trip or a stall (no
//!   coordinated omission); `from_create_*` is from the actual start of the
//!   create, the service's own time. A round trip is measured when it was planned
//!   inside the measured window. `target` says whether the run meets issue 4's
//!   20,000 round trips/s with p99 at most 2 ms. It also reports the
//!   store's group commits in the measured window (`group_commits`,
//!   `events_per_group`, `group_commit_*_us`: the write, sync and index of one
//!   group, the disk's share of the latency), and where each round trip's time
//!   went (`stage_<name>_*_us`): `queued` from the planned start until the
//!   requester began (the clock's release and a pair's earlier round trip),
//!   `create` until the create returned, `to_target` from the create's start
//!   until the target saw the notification, `target_turn` until the target
//!   called respond, `respond_to_observed` from that call until the requester
//!   observed the outcome.
//! - `saturate`: the same pairs, closed loop (each starts its next round trip
//!   when it has observed the last): the most round trips per second.
//! - `rebuild`: fills a log with `--events` elicitation events (requested then
//!   accepted, through the service; the projection snapshot is saved at 95%),
//!   reopens it, and times a read of the whole log by the store alone, a service
//!   open that replays the whole log, and one that starts from the snapshot plus
//!   the 5% tail.
//! - `open`: fills a log as `rebuild` does, then opens the store `--opens`
//!   times (the index rebuild from the log), nothing else.
//! - `expiry`: `--count` elicitations with a 1 s timeout; how late after
//!   `expires_at` each `elicitation.expired` event was committed.

use crate::sys::{load_average, process_cpu, runtime, runtime_with};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use lighthouse_elicitation::{
    CreateRequest, ElicitationService, Limits, NotificationKind, Payload, RespondRequest,
    ServiceOptions, events,
};
use lighthouse_event_store::{Durability, EventStore, Filter, Query, StoreOptions};
use lighthouse_security::{Caller, Role};
use serde_json::{Map, Value, json};

use crate::report::{emit, latency_histogram, percentiles};

/// Options of the elicitation family.
#[derive(clap::Args)]
pub struct Args {
    /// round-trip, saturate, rebuild, open, expiry.
    #[arg(long)]
    scenario: String,
    /// Requester/target pairs.
    #[arg(long, default_value_t = 1_000)]
    pairs: u64,
    /// Round trips started per second, over all pairs (round-trip).
    #[arg(long, default_value_t = 20_000)]
    rate: u64,
    /// Measured seconds (round-trip, saturate), after `--warmup-s`.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Seconds run before measuring.
    #[arg(long, default_value_t = 2)]
    warmup_s: u64,
    /// Events in the log to rebuild from (rebuild).
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Store opens to time (open).
    #[arg(long, default_value_t = 5)]
    opens: u32,
    /// Elicitations to expire (expiry).
    #[arg(long, default_value_t = 10_000)]
    count: u64,
    /// Save a projection snapshot every this many events during round-trip and
    /// saturate (default: the service's default; 0 turns snapshots off).
    #[arg(long)]
    snapshot_every: Option<u64>,
    /// Keep the store here instead of a temporary directory (rebuild reuses a
    /// log that already holds enough events).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Tokio worker threads for round-trip and saturate (default: Tokio's, one
    /// per core). The store's writer is a thread of its own beside them.
    #[arg(long)]
    workers: Option<usize>,
    /// round-trip: the clock thread releases due slots at most this often, in
    /// microseconds (0: at each slot's time). A slot is never released before
    /// its time; the wait until its release counts in `from_schedule_*`.
    #[arg(long, default_value_t = 250)]
    release_every_us: u64,
}

const KEY: &[u8] = b"lighthouse-bench elicitation key";

/// Runs the chosen scenario.
pub fn run(a: Args) -> Result<(), String> {
    match a.scenario.as_str() {
        "round-trip" => round_trips(&a, Some(a.rate.max(1))),
        "saturate" => round_trips(&a, None),
        "rebuild" => rebuild(&a),
        "open" => opens(&a),
        "expiry" => expiry(&a),
        s => Err(format!("unknown scenario {s}")),
    }
}

fn store_dir(a: &Args) -> Result<(PathBuf, Option<tempfile::TempDir>), String> {
    match &a.dir {
        Some(d) => Ok((d.clone(), None)),
        None => {
            let t = tempfile::Builder::new()
                .prefix("lighthouse-bench-elicitation")
                .tempdir_in(std::env::temp_dir())
                .map_err(|e| e.to_string())?;
            Ok((t.path().to_path_buf(), Some(t)))
        }
    }
}

/// Opens the store in `dir`, retrying for a moment: a buffered sled store
/// releases its directory lock from a background thread after it is dropped.
fn open_store(dir: &std::path::Path, durability: Durability) -> Result<EventStore, String> {
    let mut tries = 0;
    loop {
        match EventStore::open(dir, StoreOptions::new(KEY).durability(durability)) {
            Ok(s) => return Ok(s),
            Err(_) if tries < 250 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(e.to_string()),
        }
    }
}

fn agent(name: String) -> Caller {
    Caller {
        agent: name,
        role: Role::Agent,
        key_id: 1,
    }
}

fn schema() -> Value {
    json!({"type": "object",
           "properties": {"port": {"type": "integer", "minimum": 1, "maximum": 65535}},
           "required": ["port"]})
}

/// A target: accepts every elicitation it is notified of, until told to stop.
/// It waits on the stop signal rather than with a timeout per notification:
/// 1,000 targets polling every 200 ms were 5,000 timer wake-ups a second of the
/// benchmark's own, about 8% of a core, counted in the process CPU.
async fn target(
    svc: ElicitationService,
    me: Caller,
    stage: Arc<Stage>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<u64, String> {
    let mut sub = svc.subscribe(&me, None).map_err(|e| e.to_string())?;
    let mut answered = 0;
    while !*stop.borrow() {
        let n = tokio::select! {
            n = sub.next() => n,
            _ = stop.changed() => break,
        };
        let n = match n {
            Ok(n) => n,
            Err(lighthouse_elicitation::Error::Lagged { last_seq }) => {
                sub = svc
                    .subscribe(&me, Some(last_seq))
                    .map_err(|e| e.to_string())?;
                continue;
            }
            Err(e) => return Err(e.to_string()),
        };
        if let (NotificationKind::ElicitationRequested, Payload::Elicitation(r)) =
            (n.kind, &n.payload)
        {
            stage.seen.store(stage.now(), Ordering::Release);
            let rid = format!("a-{}", n.seq);
            stage.responding.store(stage.now(), Ordering::Release);
            match svc
                .respond(
                    &me,
                    &rid,
                    &r.id,
                    RespondRequest::accept(json!({"port": 8080})),
                )
                .await
            {
                Ok(_) | Err(lighthouse_elicitation::Error::AlreadyResolved { .. }) => answered += 1,
                Err(e) => return Err(e.to_string()),
            }
        }
    }
    Ok(answered)
}

/// A requester's measurements, in microseconds. Plain vectors rather than a
/// histogram per pair: 2,000 histograms of this range are about 280 MB, and
/// recording into them cost more CPU (page faults and TLB misses) than some of
/// the service's own work did.
struct PairResult {
    latency: Vec<u64>,
    from_schedule: Vec<u64>,
    /// Per round trip: the wait from the planned start to the create's
    /// start; the create's start until the create returned; until the target
    /// saw the notification; from then until the target called respond; from
    /// that call until the requester observed the outcome.
    stages: [Vec<u64>; 5],
}

/// Names of [`PairResult::stages`], as printed (`stage_<name>_p50_us`, ...).
const STAGES: [&str; 5] = [
    "queued",
    "create",
    "to_target",
    "target_turn",
    "respond_to_observed",
];

/// When a pair's target last saw a notification and called respond, in
/// nanoseconds since `base`; the requester reads them after it observed the
/// outcome. The respond call happens before the accepted event is written, and
/// the requester observes that event, so the store of `responding` is visible
/// to it (the service's locks order them); `seen` likewise precedes it.
struct Stage {
    base: Instant,
    seen: AtomicU64,
    responding: AtomicU64,
}

impl Stage {
    fn new(base: Instant) -> Self {
        Self {
            base,
            seen: AtomicU64::new(0),
            responding: AtomicU64::new(0),
        }
    }

    fn now(&self) -> u64 {
        self.at(Instant::now())
    }

    fn at(&self, t: Instant) -> u64 {
        u64::try_from(t.saturating_duration_since(self.base).as_nanos()).unwrap_or(u64::MAX)
    }
}

/// A requester: creates, then waits until it observes the outcome.
#[allow(clippy::too_many_arguments)]
async fn requester(
    svc: ElicitationService,
    me: Caller,
    to: String,
    pair: u64,
    stage: Arc<Stage>,
    mut slots: Option<tokio::sync::mpsc::UnboundedReceiver<tokio::time::Instant>>,
    measure_from: tokio::time::Instant,
    end: tokio::time::Instant,
) -> Result<PairResult, String> {
    let mut out = PairResult {
        latency: Vec::new(),
        from_schedule: Vec::new(),
        stages: Default::default(),
    };
    let mut k: u64 = 0;
    loop {
        // Open loop: the next planned time from the dispatcher (the channel
        // closes after the last slot); closed loop: now, until the end.
        let planned = match &mut slots {
            Some(rx) => match rx.recv().await {
                Some(t) => t,
                None => break,
            },
            None => tokio::time::Instant::now(),
        };
        if planned >= end {
            break;
        }
        let began = tokio::time::Instant::now();
        let req = CreateRequest::new(to.clone(), "Which port?", schema());
        let rid = format!("c-{pair}-{k}");
        let created = svc
            .create(&me, &rid, req, None)
            .await
            .map_err(|e| e.to_string())?;
        let create_returned = tokio::time::Instant::now();
        let seen = svc
            .get(&me, &created.record.id, 60_000)
            .await
            .map_err(|e| e.to_string())?;
        if !seen.status.is_terminal() {
            return Err(format!("{} still pending after 60 s", seen.id));
        }
        let now = tokio::time::Instant::now();
        if planned >= measure_from {
            out.latency.push(micros(now - began));
            out.from_schedule.push(micros(now - planned));
            let at = |t: tokio::time::Instant| stage.at(t.into_std());
            let (b, saw, resp) = (
                at(began),
                stage.seen.load(Ordering::Acquire),
                stage.responding.load(Ordering::Acquire),
            );
            let us = |from: u64, to: u64| (to.saturating_sub(from) / 1_000).max(1);
            let values = [
                micros(began - planned),
                micros(create_returned - began),
                us(b, saw),
                us(saw, resp),
                us(resp, at(now)),
            ];
            for (v, s) in values.into_iter().zip(out.stages.iter_mut()) {
                s.push(v);
            }
        }
        k += 1;
    }
    Ok(out)
}

/// The store's group commits during the measured window: how many, their
/// events, and how long each took (write, sync, index) in microseconds. The
/// disk's share of a round trip's latency: two commits lie on its path.
#[derive(Default)]
struct GroupCommits {
    measuring: std::sync::atomic::AtomicBool,
    groups: AtomicU64,
    events: AtomicU64,
    micros: std::sync::Mutex<Option<hdrhistogram::Histogram<u64>>>,
}

impl GroupCommits {
    fn start(&self) {
        if let Ok(mut h) = self.micros.lock() {
            *h = Some(latency_histogram());
        }
        self.measuring.store(true, Ordering::Release);
    }

    /// Stops measuring: (groups, events, durations).
    fn stop(&self) -> (u64, u64, hdrhistogram::Histogram<u64>) {
        self.measuring.store(false, Ordering::Release);
        let h = self
            .micros
            .lock()
            .ok()
            .and_then(|mut h| h.take())
            .unwrap_or_else(latency_histogram);
        (
            self.groups.load(Ordering::Acquire),
            self.events.load(Ordering::Acquire),
            h,
        )
    }
}

impl lighthouse_event_store::AppendObserver for GroupCommits {
    fn appended(&self, _events: usize, _latency: Duration, _head_seq: u64) {}

    fn committed(&self, events: usize, elapsed: Duration) {
        if !self.measuring.load(Ordering::Acquire) {
            return;
        }
        self.groups.fetch_add(1, Ordering::AcqRel);
        self.events.fetch_add(events as u64, Ordering::AcqRel);
        if let Ok(mut h) = self.micros.lock()
            && let Some(h) = h.as_mut()
        {
            h.saturating_record(micros(elapsed));
        }
    }
}

/// When slot `i` of the open-loop schedule is planned: `start + i / rate`.
fn slot_time(start: std::time::Instant, i: u64, rate: u64) -> std::time::Instant {
    let nanos = u128::from(i) * 1_000_000_000 / u128::from(rate.max(1));
    start + Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

/// The open-loop clock: slot `i` is planned at [`slot_time`] for pair
/// `i % pairs`. A thread of its own sleeps (with the operating system's timer,
/// not Tokio's, whose 1 ms ticks made every slot start up to a millisecond
/// late and counted that in the latency from the planned time) until the next
/// slot is due, but at least `quantum` after its last wake-up, then hands
/// every slot due by then to [`fan_out`] as one message. Each wake-up of this
/// thread costs a timer, two context switches and a wake-up of the runtime
/// from outside: waking for every slot, it used 0.12-0.16 of a core at 15,000
/// slots/s, 0.07 with a 250 µs quantum, all counted in the process's CPU
/// (docs/PERFORMANCE.md, session 11).
fn dispatch(
    slots: tokio::sync::mpsc::UnboundedSender<std::ops::Range<u64>>,
    rate: u64,
    quantum: Duration,
    start: std::time::Instant,
    end: std::time::Instant,
) {
    // The clock's own lateness counts in the latency from the planned start.
    crate::sys::tighten_timer_slack(Duration::from_micros(1));
    let mut next = 0u64;
    let mut woke = std::time::Instant::now();
    loop {
        let planned = slot_time(start, next, rate);
        if planned >= end {
            break;
        }
        let now = std::time::Instant::now();
        let wake_at = planned.max(woke + quantum);
        if wake_at > now {
            std::thread::sleep(wake_at - now);
        }
        let now = std::time::Instant::now();
        woke = now;
        let mut due = next + 1;
        while slot_time(start, due, rate) <= now.min(end) {
            due += 1;
        }
        if slots.send(next..due).is_err() {
            break;
        }
        next = due;
    }
}

/// Hands each slot of the ranges [`dispatch`] sends to its pair's requester;
/// a requester still busy with its previous round trip finds it queued, and
/// that wait counts in the latency from the planned time. Dropping the pairs'
/// senders at the end closes their schedules.
async fn fan_out(
    mut ranges: tokio::sync::mpsc::UnboundedReceiver<std::ops::Range<u64>>,
    pairs: Vec<tokio::sync::mpsc::UnboundedSender<tokio::time::Instant>>,
    rate: u64,
    start: std::time::Instant,
    end: std::time::Instant,
) {
    let n = pairs.len().max(1) as u64;
    while let Some(range) = ranges.recv().await {
        for i in range {
            let planned = slot_time(start, i, rate);
            if planned >= end {
                return;
            }
            if let Some(tx) = pairs.get((i % n) as usize) {
                let _ = tx.send(tokio::time::Instant::from_std(planned));
            }
        }
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

fn round_trips(a: &Args, rate: Option<u64>) -> Result<(), String> {
    let workers = a.workers.map(|n| n.max(1));
    let rt = runtime_with(workers)?;
    let (dir, _keep) = store_dir(a)?;
    let commits = Arc::new(GroupCommits::default());
    let store = EventStore::open(
        &dir,
        StoreOptions::new(KEY)
            .durability(Durability::Durable)
            .observer(commits.clone()),
    )
    .map_err(|e| e.to_string())?;
    let pairs = a.pairs.max(1);
    let result = rt.block_on(async {
        let mut limits = Limits::default();
        if let Some(n) = a.snapshot_every {
            limits.snapshot_every_events = n;
        }
        let svc = ElicitationService::open(store.clone(), ServiceOptions::new().limits(limits))
            .await
            .map_err(|e| e.to_string())?;
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let base = Instant::now();
        let stages: Vec<Arc<Stage>> = (0..pairs).map(|_| Arc::new(Stage::new(base))).collect();
        let mut targets = Vec::new();
        for (p, stage) in stages.iter().enumerate() {
            targets.push(tokio::spawn(target(
                svc.clone(),
                agent(format!("tgt-{p}")),
                stage.clone(),
                stopped.clone(),
            )));
        }
        let start = tokio::time::Instant::now() + Duration::from_millis(100);
        let measure_from = start + Duration::from_secs(a.warmup_s);
        let end = measure_from + Duration::from_secs(a.seconds);
        let mut reqs = Vec::new();
        let mut senders = Vec::new();
        for (p, stage) in (0..pairs).zip(stages) {
            let slots = rate.map(|_| {
                let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
                senders.push(tx);
                rx
            });
            reqs.push(tokio::spawn(requester(
                svc.clone(),
                agent(format!("req-{p}")),
                format!("tgt-{p}"),
                p,
                stage,
                slots,
                measure_from,
                end,
            )));
        }
        let quantum = Duration::from_micros(a.release_every_us);
        let dispatcher = rate.map(|r| {
            let (start, end) = (start.into_std(), end.into_std());
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            tokio::spawn(fan_out(rx, std::mem::take(&mut senders), r, start, end));
            std::thread::Builder::new()
                .name("bench-dispatch".into())
                .spawn(move || dispatch(tx, r, quantum, start, end))
        });
        let dispatcher = dispatcher
            .transpose()
            .map_err(|e| format!("dispatcher thread: {e}"))?;
        // CPU used from the start of the measured window until the last round
        // trip started in it has been observed.
        tokio::time::sleep_until(measure_from).await;
        commits.start();
        let cpu_start = process_cpu("self");
        let mut latency = latency_histogram();
        let mut from_schedule = latency_histogram();
        let mut stage_hists: Vec<_> = STAGES.iter().map(|_| latency_histogram()).collect();
        let mut done = 0;
        for r in reqs {
            let r = r.await.map_err(|e| e.to_string())??;
            for (h, values) in stage_hists.iter_mut().zip(&r.stages) {
                for &v in values {
                    h.saturating_record(v);
                }
            }
            for (h, values) in [
                (&mut latency, &r.latency),
                (&mut from_schedule, &r.from_schedule),
            ] {
                for &v in values {
                    h.saturating_record(v);
                }
            }
            done += r.latency.len() as u64;
        }
        if let Some(d) = dispatcher {
            d.join().map_err(|_| "dispatcher panicked".to_owned())?;
        }
        // The measured window ends when the last round trip planned inside it
        // is observed.
        let elapsed = (tokio::time::Instant::now().min(end + Duration::from_secs(60))
            - measure_from)
            .as_secs_f64();
        let group_commits = commits.stop();
        let cpu_window = cpu_start
            .zip(process_cpu("self"))
            .map(|(a, b)| b.saturating_sub(a));
        stop.send_replace(true);
        for t in targets {
            t.await.map_err(|e| e.to_string())??;
        }
        let pending = svc.pending_count();
        svc.abort().await;
        Ok::<_, String>((
            latency,
            from_schedule,
            stage_hists,
            done,
            elapsed,
            pending,
            cpu_window,
            group_commits,
        ))
    })?;
    let (latency, from_schedule, stage_hists, done, elapsed, pending, cpu_window, group_commits) =
        result;
    let mut out = Map::new();
    let name = if rate.is_some() {
        "elicitation.round_trip"
    } else {
        "elicitation.saturate"
    };
    out.insert("bench".into(), name.into());
    out.insert("pairs".into(), pairs.into());
    out.insert("durability".into(), "durable".into());
    out.insert(
        "tokio_workers".into(),
        workers.map_or_else(|| "default".into(), Value::from),
    );
    if let Some(r) = rate {
        out.insert("planned_rate_per_s".into(), r.into());
    }
    out.insert("round_trips".into(), done.into());
    out.insert(
        "seconds".into(),
        ((elapsed * 1000.0).round() / 1000.0).into(),
    );
    out.insert(
        "round_trips_per_s".into(),
        ((done as f64 / elapsed).round() as u64).into(),
    );
    // From the planned start: the open-loop figure (the one targets are
    // judged by); from the create: the service's own time.
    percentiles(&mut out, &from_schedule);
    let mut from_create = Map::new();
    percentiles(&mut from_create, &latency);
    for (k, v) in from_create {
        out.insert(format!("from_create_{k}"), v);
    }
    for (name, h) in STAGES.iter().zip(&stage_hists) {
        let mut stage = Map::new();
        percentiles(&mut stage, h);
        for (k, v) in stage {
            out.insert(format!("stage_{name}_{k}"), v);
        }
    }
    if rate.is_some() {
        // Issue 4: at least 20,000 round trips/s with p99 at most 2 ms. The
        // achieved rate counts the drain after the window, hence 1% slack.
        let achieved = done as f64 / elapsed;
        let p99_us = from_schedule.value_at_quantile(0.99);
        out.insert(
            "target".into(),
            serde_json::json!({
                "needs_round_trips_per_s_at_least": 20_000,
                "needs_p99_us_at_most": 2_000,
                "met": achieved >= 20_000.0 * 0.99 && p99_us <= 2_000,
            }),
        );
    }
    out.insert("left_pending".into(), pending.into());
    out.insert("store_head_seq".into(), store.head_seq().into());
    let (groups, grouped_events, commit_us) = group_commits;
    out.insert("group_commits".into(), groups.into());
    if groups > 0 {
        out.insert(
            "events_per_group".into(),
            ((grouped_events as f64 / groups as f64 * 10.0).round() / 10.0).into(),
        );
    }
    let mut commit = Map::new();
    percentiles(&mut commit, &commit_us);
    for (k, v) in commit {
        out.insert(format!("group_commit_{k}"), v);
    }
    if let Some(cpu) = cpu_window {
        out.insert(
            "process_cpu_cores".into(),
            ((cpu.as_secs_f64() / elapsed * 100.0).round() / 100.0).into(),
        );
        if done > 0 {
            out.insert(
                "cpu_us_per_round_trip".into(),
                ((cpu.as_secs_f64() * 1e6 / done as f64).round() as u64).into(),
            );
        }
    }
    if let Some(l) = load_average() {
        out.insert("machine_load_1m".into(), l.into());
    }
    emit(out);
    Ok(())
}

/// Runs `round_trips` create-then-accept round trips on 256 concurrent pairs.
async fn drive(svc: &ElicitationService, round_trips: u64) -> Result<(), String> {
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for w in 0..256u64 {
        let (svc, next) = (svc.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let me = agent(format!("fill-req-{w}"));
            let target = agent(format!("fill-tgt-{w}"));
            while next.fetch_add(1, Ordering::Relaxed) < round_trips {
                let req = CreateRequest::new(target.agent.clone(), "Which port?", schema());
                let c = svc
                    .create(&me, "fill", req, None)
                    .await
                    .map_err(|e| e.to_string())?;
                svc.respond(
                    &target,
                    "fill",
                    &c.record.id,
                    RespondRequest::accept(json!({"port": 1})),
                )
                .await
                .map_err(|e| e.to_string())?;
            }
            Ok::<_, String>(())
        }));
    }
    for t in tasks {
        t.await.map_err(|e| e.to_string())??;
    }
    Ok(())
}

/// Fills `dir` with at least `events` elicitation events through the service
/// (requested + accepted per round trip), on a buffered store for speed, saving
/// the projection snapshot when 95% of them are written (so the last 5% are the
/// tail a restart applies on top of it). A directory that already holds enough
/// is left as it is. Returns the head.
fn fill(dir: &std::path::Path, events: u64) -> Result<u64, String> {
    let store = open_store(dir, Durability::Buffered)?;
    if store.head_seq() >= events {
        return Ok(store.head_seq());
    }
    let rt = runtime()?;
    rt.block_on(async {
        let svc = ElicitationService::open(store.clone(), ServiceOptions::new())
            .await
            .map_err(|e| e.to_string())?;
        let at_snapshot = events / 100 * 95;
        let head = store.head_seq();
        if head < at_snapshot {
            drive(&svc, (at_snapshot - head).div_ceil(2)).await?;
            svc.save_snapshot().await.map_err(|e| e.to_string())?;
        }
        let head = store.head_seq();
        drive(&svc, events.saturating_sub(head).div_ceil(2)).await?;
        store.flush().await.map_err(|e| e.to_string())?;
        svc.abort().await;
        Ok::<_, String>(())
    })?;
    Ok(store.head_seq())
}

/// Opens the store `--opens` times over a log of `--events` elicitation events.
fn opens(a: &Args) -> Result<(), String> {
    let (dir, _keep) = store_dir(a)?;
    let head = fill(&dir, a.events)?;
    let mut ms = Vec::new();
    for _ in 0..a.opens.max(1) {
        let t = Instant::now();
        let store = open_store(&dir, Durability::Durable)?;
        ms.push(t.elapsed().as_millis() as u64);
        drop(store);
        // sled lets go of the directory from a background thread a moment
        // after the last handle; not to be timed as part of the next open.
        std::thread::sleep(Duration::from_millis(500));
    }
    let mut sorted = ms.clone();
    sorted.sort_unstable();
    let mut out = Map::new();
    out.insert("bench".into(), "elicitation.open".into());
    out.insert("events".into(), head.into());
    out.insert("open_ms".into(), ms.into());
    out.insert("open_ms_median".into(), sorted[sorted.len() / 2].into());
    if let Some(l) = load_average() {
        out.insert("machine_load_1m".into(), l.into());
    }
    emit(out);
    Ok(())
}

fn rebuild(a: &Args) -> Result<(), String> {
    let (dir, _keep) = store_dir(a)?;
    let t = Instant::now();
    let head = fill(&dir, a.events)?;
    let fill_s = t.elapsed().as_secs_f64();
    let rt = runtime()?;
    let t = Instant::now();
    let store = open_store(&dir, Durability::Durable)?;
    let store_open_ms = t.elapsed().as_millis() as u64;
    // The store alone: read every event back (what a replay reads), nothing applied.
    let t = Instant::now();
    let mut q = Query {
        limit: 1_000,
        ..Query::new(Filter::all())
    };
    let mut scanned = 0u64;
    loop {
        let page = store.read(&q).map_err(|e| e.to_string())?;
        scanned += page.events.len() as u64;
        match page.next {
            Some(n) => q = q.resume(n),
            None => break,
        }
    }
    let scan_ms = t.elapsed().as_millis() as u64;
    let snapshot_bytes = store
        .load_snapshot(lighthouse_elicitation::DEFAULT_SNAPSHOT_NAME)
        .map_err(|e| e.to_string())?
        .map_or(0, |s| s.data.len());
    let (full_ms, held, snap_ms, tail) = rt.block_on(async {
        // The whole log: a snapshot name that does not exist.
        let t = Instant::now();
        let opts = ServiceOptions::new().snapshot_name("bench-no-snapshot");
        let svc = ElicitationService::open(store.clone(), opts)
            .await
            .map_err(|e| e.to_string())?;
        let full_ms = t.elapsed().as_millis() as u64;
        let held = svc.memory_counts().held_elicitations;
        svc.abort().await;
        // The snapshot saved at 95% of the log, plus the tail.
        let t = Instant::now();
        let svc = ElicitationService::open(store.clone(), ServiceOptions::new())
            .await
            .map_err(|e| e.to_string())?;
        let snap_ms = t.elapsed().as_millis() as u64;
        let tail = svc.applied_seq() - svc.started_from_snapshot().unwrap_or(0);
        svc.abort().await;
        Ok::<_, String>((full_ms, held, snap_ms, tail))
    })?;
    let mut out = Map::new();
    out.insert("bench".into(), "elicitation.rebuild".into());
    out.insert("events".into(), head.into());
    out.insert("fill_s".into(), ((fill_s * 10.0).round() / 10.0).into());
    out.insert("store_open_ms".into(), store_open_ms.into());
    out.insert("store_scan_events".into(), scanned.into());
    out.insert("store_scan_ms".into(), scan_ms.into());
    out.insert("full_replay_ms".into(), full_ms.into());
    out.insert(
        "full_replay_events_per_s".into(),
        ((head as f64 / (full_ms.max(1) as f64 / 1000.0)) as u64).into(),
    );
    out.insert("held_elicitations".into(), held.into());
    out.insert("snapshot_bytes".into(), snapshot_bytes.into());
    out.insert("from_snapshot_ms".into(), snap_ms.into());
    out.insert("snapshot_tail_events".into(), tail.into());
    if let Some(l) = load_average() {
        out.insert("machine_load_1m".into(), l.into());
    }
    emit(out);
    Ok(())
}

fn expiry(a: &Args) -> Result<(), String> {
    let rt = runtime()?;
    let (dir, _keep) = store_dir(a)?;
    let store = EventStore::open(&dir, StoreOptions::new(KEY)).map_err(|e| e.to_string())?;
    let count = a.count.max(1);
    let (hist, written) = rt.block_on(async {
        let limits = Limits {
            max_pending: usize::try_from(count).unwrap_or(usize::MAX).max(100_000),
            ..Limits::default()
        };
        let svc = ElicitationService::open(store.clone(), ServiceOptions::new().limits(limits))
            .await
            .map_err(|e| e.to_string())?;
        let next = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for w in 0..64u64 {
            let (svc, next) = (svc.clone(), next.clone());
            tasks.push(tokio::spawn(async move {
                let me = agent(format!("exp-req-{w}"));
                while next.fetch_add(1, Ordering::Relaxed) < count {
                    let req = CreateRequest::new(format!("exp-tgt-{w}"), "Still there?", schema())
                        .timeout_ms(1_000);
                    svc.create(&me, "exp", req, None)
                        .await
                        .map_err(|e| e.to_string())?;
                }
                Ok::<_, String>(())
            }));
        }
        for t in tasks {
            t.await.map_err(|e| e.to_string())??;
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while svc.pending_count() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        svc.abort().await;
        let mut h = latency_histogram();
        let mut written = 0u64;
        let mut q = Query {
            limit: 10_000,
            ..Query::new(Filter::event_type(events::EXPIRED))
        };
        loop {
            let page = store.read(&q).map_err(|e| e.to_string())?;
            for e in &page.events {
                let expires = store
                    .read_stream(&e.stream, 0, 1)
                    .map_err(|e| e.to_string())?
                    .first()
                    .and_then(|r| r.data["expires_at"].as_str().map(str::to_owned))
                    .ok_or("no requested event")?;
                let expires = lighthouse_event_store::Timestamp::parse_rfc3339(&expires)
                    .map_err(|e| e.to_string())?;
                let late_ms = e.time.millis_since(expires).max(0);
                h.record((late_ms as u64 * 1000).max(1)).ok();
                written += 1;
            }
            match page.next {
                Some(n) => q = q.resume(n),
                None => break,
            }
        }
        Ok::<_, String>((h, written))
    })?;
    let mut out = Map::new();
    out.insert("bench".into(), "elicitation.expiry_lateness".into());
    out.insert("elicitations".into(), count.into());
    out.insert("expired".into(), written.into());
    out.insert(
        "resolution".into(),
        "1 ms (event time is in milliseconds)".into(),
    );
    percentiles(&mut out, &hist);
    emit(out);
    Ok(())
}
