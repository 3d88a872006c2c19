//! Criterion benchmarks of the request hot paths: verifying a signed request with
//! a 1 KiB body (signature, nonce insert, rate-limit check: `Gate::admit`), and
//! verifying a bearer token.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use lighthouse_event_store::{
    Durability, EventStore, ManualClock, SharedClock, StoreOptions, Timestamp,
};
use lighthouse_security::{
    Action, ActionClass, AuthHeaders, Caller, Credential, Gate, MasterKey, Quota, Request, Role,
    SecurityConfig,
};

const T0: i64 = 1_790_000_000;

fn setup() -> (Gate, Credential) {
    let clock = ManualClock::new(Timestamp::from_unix_secs(T0));
    let shared: SharedClock = Arc::new(clock);
    let master = MasterKey::from_bytes([7; 32]);
    let store = EventStore::open_temporary(
        StoreOptions::new(&master.store_key())
            .clock(shared.clone())
            .durability(Durability::Buffered),
    )
    .expect("store");
    let mut config = SecurityConfig::default();
    // Every sample inserts fresh nonces and counts against the limit: make both
    // large enough that the benchmark measures the work, not the refusals.
    config.nonces.capacity = 1 << 24;
    config.nonces.per_agent_capacity = 1 << 24;
    config.rate.limits.set(
        Role::Agent,
        ActionClass::Elicit,
        Some(Quota::new(u32::MAX, u32::MAX)),
    );
    let gate = Gate::open(store, master, None, shared, config).expect("gate");
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let cred = rt
        .block_on(gate.registry().register("alice", Role::Agent, None))
        .expect("register");
    (gate, cred)
}

fn bench(c: &mut Criterion) {
    let (gate, cred) = setup();
    let body = vec![b'x'; 1024];
    let signer = cred.signer();
    let mut counter = 0u64;
    c.bench_function("admit_signed_1kib", |b| {
        b.iter_custom(|iters| {
            let headers: Vec<_> = (0..iters)
                .map(|_| {
                    counter += 1;
                    let nonce = format!("bench-nonce-{counter:016}");
                    signer.sign_with_nonce("POST", "/v1/elicitations", "", &body, T0, &nonce)
                })
                .collect();
            let start = Instant::now();
            for h in &headers {
                let req = Request {
                    method: "POST",
                    path: "/v1/elicitations",
                    query: "",
                    headers: AuthHeaders::from_pairs(h.pairs().map(|(n, v)| (n, v.as_bytes()))),
                    body: &body,
                };
                let ok = gate.admit(&req, Action::Elicit);
                assert!(ok.is_ok());
            }
            start.elapsed()
        })
    });

    let caller = Caller {
        agent: "alice".into(),
        role: Role::Agent,
        key_id: 1,
    };
    let token = gate
        .tokens()
        .issue(&caller, None, Timestamp::from_unix_secs(T0))
        .expect("token");
    let auth = format!("Bearer {}", token.token);
    let now = Timestamp::from_unix_secs(T0);
    c.bench_function("verify_token", |b| {
        b.iter(|| {
            let req = Request {
                method: "GET",
                path: "/v1/stream",
                query: "",
                headers: AuthHeaders::from_pairs([("authorization", auth.as_bytes())]),
                body: b"",
            };
            let ok = gate.verifier().verify(std::hint::black_box(&req), now);
            assert!(ok.is_ok());
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(5));
    targets = bench
}
criterion_main!(benches);
