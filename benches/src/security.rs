//! `lighthouse-bench security`: the cost of admitting requests.
//!
//! Scenarios (each prints one JSON line, figures measured by the run):
//! - `verify`: `Gate::admit` of a signed `POST /v1/elicitations` with a 1 KiB
//!   body on one thread: header checks, signature (SHA-256 of the body and
//!   HMAC), nonce insert and rate-limit check, authorization. Target at least
//!   300,000 per second. Requests are signed before each timed batch.
//! - `verify-journal`: the same with the nonce journal on disk and its flusher
//!   thread running (the flusher's own CPU is not on the timed thread).
//! - `token`: `Verifier::verify` of a bearer token (MAC, expiry, revoked set,
//!   registry). Target at most 2 µs.
//! - `sign`: the client side, `Signer::sign` of the same 1 KiB request.
//! - `nonce-memory`: heap bytes per remembered nonce after `--nonces` inserts
//!   spread over 1000 agents (from the store's allocated capacities, which a
//!   test in the security crate checks against a counting allocator).

use std::sync::Arc;
use std::time::Instant;

use lighthouse_event_store::{
    Durability, EventStore, ManualClock, SharedClock, StoreOptions, Timestamp,
};
use lighthouse_security::{
    Action, ActionClass, AuthHeaders, Caller, Credential, DEFAULT_FLUSH_INTERVAL, Gate, MasterKey,
    NonceConfig, NonceFlusher, NonceStore, Quota, Request, Role, SecurityConfig,
};
use serde_json::{Map, Value, json};

use crate::report::emit;

/// Options of the security family.
#[derive(clap::Args)]
pub struct Args {
    /// all, verify, verify-journal, token, sign, nonce-memory.
    #[arg(long, default_value = "all")]
    scenario: String,
    /// Timed batches per scenario; the median batch is reported.
    #[arg(long, default_value_t = 7)]
    samples: usize,
    /// Requests per batch.
    #[arg(long, default_value_t = 200_000)]
    iters: u64,
    /// Agents the requests are spread over (round robin).
    #[arg(long, default_value_t = 100)]
    agents: usize,
    /// Nonces inserted by `nonce-memory`.
    #[arg(long, default_value_t = 1_000_000)]
    nonces: usize,
}

const T0: i64 = 1_790_000_000;
const PATH: &str = "/v1/elicitations";

/// Runs the chosen scenario (or all of them).
pub fn run(a: Args) -> Result<(), String> {
    if a.samples == 0 || a.iters == 0 || a.agents == 0 || a.nonces == 0 {
        return Err("--samples, --iters, --agents and --nonces must be at least 1".into());
    }
    let all = a.scenario == "all";
    let mut ran = false;
    for (name, f) in [
        ("verify", verify as fn(&Args) -> Result<(), String>),
        ("verify-journal", verify_journal),
        ("token", token),
        ("sign", sign),
        ("nonce-memory", nonce_memory),
    ] {
        if all || a.scenario == name {
            f(&a)?;
            ran = true;
        }
    }
    if !ran {
        return Err(format!("unknown scenario {}", a.scenario));
    }
    Ok(())
}

struct Setup {
    gate: Gate,
    creds: Vec<Credential>,
    _dir: Option<tempfile::TempDir>,
}

/// A gate on a temporary store, `agents` registered agents, and limits raised so
/// that no request of the benchmark is refused (the checks still run in full).
fn setup(a: &Args, journal: bool) -> Result<Setup, String> {
    let clock = ManualClock::new(Timestamp::from_unix_secs(T0));
    let shared: SharedClock = Arc::new(clock);
    let master = MasterKey::generate().map_err(|e| e.to_string())?;
    let store = EventStore::open_temporary(
        StoreOptions::new(&master.store_key())
            .clock(shared.clone())
            .durability(Durability::Buffered),
    )
    .map_err(|e| e.to_string())?;
    let mut config = SecurityConfig::default();
    let total = (a.iters as usize) * (a.samples + 1) + 1;
    config.nonces.capacity = total;
    config.nonces.per_agent_capacity = u32::try_from(total).unwrap_or(u32::MAX);
    config.rate.limits.set(
        Role::Agent,
        ActionClass::Elicit,
        Some(Quota::new(u32::MAX, u32::MAX)),
    );
    let dir = if journal {
        Some(tempfile::tempdir().map_err(|e| e.to_string())?)
    } else {
        None
    };
    let nonce_dir = dir.as_ref().map(|d| d.path().join("nonces"));
    let gate = Gate::open(store, master, nonce_dir.as_deref(), shared, config)
        .map_err(|e| e.to_string())?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .map_err(|e| e.to_string())?;
    let creds = rt.block_on(async {
        let mut v = Vec::new();
        for i in 0..a.agents {
            v.push(
                gate.registry()
                    .register(&format!("bench-agent-{i}"), Role::Agent, None)
                    .await
                    .map_err(|e| e.to_string())?,
            );
        }
        Ok::<_, String>(v)
    })?;
    Ok(Setup {
        gate,
        creds,
        _dir: dir,
    })
}

fn median(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

fn round2(x: f64) -> Value {
    json!((x * 100.0).round() / 100.0)
}

fn report(bench: &str, iters: u64, ns: Vec<f64>) -> Map<String, Value> {
    let samples = ns.len();
    let (mid, lo, hi) = median(ns);
    let mut out = Map::new();
    out.insert("bench".into(), format!("security.{bench}").into());
    out.insert("samples".into(), samples.into());
    out.insert("ops_per_sample".into(), iters.into());
    out.insert("median_ns_per_op".into(), round2(mid));
    out.insert("min_ns_per_op".into(), round2(lo));
    out.insert("max_ns_per_op".into(), round2(hi));
    out.insert("median_ops_per_s".into(), json!((1e9 / mid).round()));
    out
}

fn admit_batches(a: &Args, s: &Setup) -> Result<Vec<f64>, String> {
    let body = vec![b'x'; 1024];
    let signers: Vec<_> = s.creds.iter().map(Credential::signer).collect();
    let mut counter = 0u64;
    let mut ns = Vec::new();
    // The first batch warms up and is not reported.
    for sample in 0..=a.samples {
        let signed: Vec<_> = (0..a.iters)
            .map(|i| {
                counter += 1;
                let nonce = format!("bench-{counter:018}");
                signers[i as usize % signers.len()]
                    .sign_with_nonce("POST", PATH, "", &body, T0, &nonce)
            })
            .collect();
        let start = Instant::now();
        for h in &signed {
            let req = Request {
                method: "POST",
                path: PATH,
                query: "",
                headers: AuthHeaders::from_pairs(h.pairs().map(|(n, v)| (n, v.as_bytes()))),
                body: &body,
            };
            if let Err(d) = s.gate.admit(&req, Action::Elicit) {
                return Err(format!(
                    "request refused during the benchmark: {}",
                    d.refusal
                ));
            }
        }
        if sample > 0 {
            ns.push(start.elapsed().as_nanos() as f64 / a.iters as f64);
        }
    }
    Ok(ns)
}

fn verify(a: &Args) -> Result<(), String> {
    let s = setup(a, false)?;
    let ns = admit_batches(a, &s)?;
    let mut out = report("verify_signed_1kib", a.iters, ns);
    out.insert("agents".into(), a.agents.into());
    out.insert("target_ops_per_s".into(), 300_000.into());
    let ops = out["median_ops_per_s"].as_f64().unwrap_or(0.0);
    out.insert("meets_target".into(), (ops >= 300_000.0).into());
    emit(out);
    Ok(())
}

fn verify_journal(a: &Args) -> Result<(), String> {
    let s = setup(a, true)?;
    let flusher = NonceFlusher::start(s.gate.nonces().clone(), DEFAULT_FLUSH_INTERVAL)
        .map_err(|e| e.to_string())?;
    let ns = admit_batches(a, &s)?;
    drop(flusher);
    let mut out = report("verify_signed_1kib_journal", a.iters, ns);
    out.insert("agents".into(), a.agents.into());
    out.insert(
        "flush_interval_ms".into(),
        (DEFAULT_FLUSH_INTERVAL.as_millis() as u64).into(),
    );
    out.insert("target_ops_per_s".into(), 300_000.into());
    let ops = out["median_ops_per_s"].as_f64().unwrap_or(0.0);
    out.insert("meets_target".into(), (ops >= 300_000.0).into());
    emit(out);
    Ok(())
}

fn token(a: &Args) -> Result<(), String> {
    let s = setup(a, false)?;
    let now = Timestamp::from_unix_secs(T0);
    let caller = Caller {
        agent: s.creds[0].agent.clone(),
        role: Role::Agent,
        key_id: 1,
    };
    let token = s
        .gate
        .tokens()
        .issue(&caller, None, now)
        .map_err(|e| e.to_string())?;
    let auth = format!("Bearer {}", token.token);
    let mut ns = Vec::new();
    for sample in 0..=a.samples {
        let start = Instant::now();
        for _ in 0..a.iters {
            let req = Request {
                method: "GET",
                path: "/v1/stream",
                query: "",
                headers: AuthHeaders::from_pairs([("authorization", auth.as_bytes())]),
                body: b"",
            };
            let ok = s.gate.verifier().verify(std::hint::black_box(&req), now);
            if ok.is_err() {
                return Err("token refused during the benchmark".into());
            }
        }
        if sample > 0 {
            ns.push(start.elapsed().as_nanos() as f64 / a.iters as f64);
        }
    }
    let mut out = report("verify_token", a.iters, ns);
    let mid = out["median_ns_per_op"].as_f64().unwrap_or(f64::MAX);
    out.insert("target_ns_per_op".into(), 2000.into());
    out.insert("meets_target".into(), (mid <= 2000.0).into());
    emit(out);
    Ok(())
}

fn sign(a: &Args) -> Result<(), String> {
    let secret = MasterKey::from_bytes([7; 32]).agent_secret("alice", 1);
    let signer = lighthouse_security::Signer::new("alice", 1, &secret);
    let body = vec![b'x'; 1024];
    let mut ns = Vec::new();
    for sample in 0..=a.samples {
        let start = Instant::now();
        for _ in 0..a.iters {
            std::hint::black_box(signer.sign("POST", PATH, "", &body, T0));
        }
        if sample > 0 {
            ns.push(start.elapsed().as_nanos() as f64 / a.iters as f64);
        }
    }
    emit(report("sign_1kib", a.iters, ns));
    Ok(())
}

fn nonce_memory(a: &Args) -> Result<(), String> {
    let clock: SharedClock = Arc::new(ManualClock::new(Timestamp::from_unix_secs(T0)));
    let config = NonceConfig {
        capacity: a.nonces,
        ..NonceConfig::default()
    };
    let store = NonceStore::in_memory(config, clock).map_err(|e| e.to_string())?;
    let now = Timestamp::from_unix_secs(T0);
    let agents: Vec<String> = (0..1000).map(|i| format!("agent-{i}")).collect();
    for i in 0..a.nonces {
        let nonce = format!("{:024}", i);
        // Timestamps spread over the whole window, as real clients' are.
        let ts = T0 - 300 + (i % 601) as i64;
        store
            .check_and_insert(&agents[i % agents.len()], &nonce, ts, now)
            .map_err(|r| format!("nonce refused: {r:?}"))?;
    }
    let bytes = store.heap_bytes();
    let mut out = Map::new();
    out.insert("bench".into(), "security.nonce_memory".into());
    out.insert("nonces".into(), store.len().into());
    out.insert("agents".into(), agents.len().into());
    out.insert("heap_bytes".into(), bytes.into());
    out.insert(
        "bytes_per_nonce".into(),
        round2(bytes as f64 / store.len() as f64),
    );
    emit(out);
    Ok(())
}
