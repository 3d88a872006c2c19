//! Shared test harness: a gate on a temporary store with a manual clock.
#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;

use lighthouse_event_store::{
    Durability, EventStore, ManualClock, SharedClock, StoreOptions, Timestamp,
};
use lighthouse_security::{
    Action, AuthHeaders, Authenticated, Credential, Gate, MasterKey, Refusal, Request,
    SecurityConfig, SignedHeaders,
};

pub const T0: i64 = 1_790_000_000;

pub fn vector_master() -> MasterKey {
    let mut k = [0u8; 32];
    for (i, b) in k.iter_mut().enumerate() {
        *b = i as u8;
    }
    MasterKey::from_bytes(k)
}

pub struct Env {
    pub clock: ManualClock,
    pub gate: Gate,
    pub store: EventStore,
}

pub fn shared(clock: &ManualClock) -> SharedClock {
    Arc::new(clock.clone())
}

pub fn options(master: &MasterKey, clock: &ManualClock) -> StoreOptions {
    StoreOptions::new(&master.store_key())
        .clock(shared(clock))
        .durability(Durability::Buffered)
}

impl Env {
    pub fn new() -> Env {
        Self::with_config(SecurityConfig::default())
    }

    pub fn with_config(config: SecurityConfig) -> Env {
        let master = vector_master();
        let clock = ManualClock::new(Timestamp::from_unix_secs(T0));
        let store = EventStore::open_temporary(options(&master, &clock)).unwrap();
        let gate = Gate::open(store.clone(), master, None, shared(&clock), config).unwrap();
        Env { clock, gate, store }
    }

    /// A gate over a store and nonce journal in `dir` (reopened by calling again).
    pub fn persistent(dir: &Path, clock: &ManualClock) -> Env {
        Self::persistent_with(dir, clock, SecurityConfig::default())
    }

    /// [`persistent`](Self::persistent) with `config`.
    pub fn persistent_with(dir: &Path, clock: &ManualClock, config: SecurityConfig) -> Env {
        let master = vector_master();
        // Durable: in buffered mode sled's background flusher may still hold the
        // directory lock for a moment after the store is dropped.
        let store = EventStore::open(
            dir.join("store"),
            options(&master, clock).durability(Durability::Durable),
        )
        .unwrap();
        let gate = Gate::open(
            store.clone(),
            master,
            Some(&dir.join("nonces")),
            shared(clock),
            config,
        )
        .unwrap();
        Env {
            clock: clock.clone(),
            gate,
            store,
        }
    }

    pub async fn agent(&self, id: &str, role: lighthouse_security::Role) -> Credential {
        self.gate
            .registry()
            .register(id, role, Some("admin"))
            .await
            .unwrap()
    }

    pub fn now_s(&self) -> i64 {
        self.clock.now_secs()
    }
}

pub trait NowSecs {
    fn now_secs(&self) -> i64;
}

impl NowSecs for ManualClock {
    fn now_secs(&self) -> i64 {
        use lighthouse_event_store::Clock;
        self.now().unix_secs()
    }
}

/// A request as the HTTP layer would build it.
pub struct Wire {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

impl Wire {
    pub fn signed(h: &SignedHeaders, method: &str, path: &str, query: &str, body: &[u8]) -> Wire {
        Wire {
            method: method.into(),
            path: path.into(),
            query: query.into(),
            headers: h
                .pairs()
                .iter()
                .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
                .collect(),
            body: body.to_vec(),
        }
    }

    pub fn bearer(token: &str, method: &str, path: &str) -> Wire {
        Wire {
            method: method.into(),
            path: path.into(),
            query: String::new(),
            headers: vec![(
                "Authorization".into(),
                format!("Bearer {token}").into_bytes(),
            )],
            body: Vec::new(),
        }
    }

    pub fn request(&self) -> Request<'_> {
        Request {
            method: &self.method,
            path: &self.path,
            query: &self.query,
            headers: AuthHeaders::from_pairs(
                self.headers.iter().map(|(n, v)| (n.as_str(), v.as_slice())),
            ),
            body: &self.body,
        }
    }

    pub fn set_header(&mut self, name: &str, value: &[u8]) {
        for (n, v) in &mut self.headers {
            if n.eq_ignore_ascii_case(name) {
                *v = value.to_vec();
            }
        }
    }
}

impl Env {
    /// Steps 1-7 at the clock's time.
    pub fn admit(&self, w: &Wire, action: Action) -> Result<Authenticated, Refusal> {
        self.gate.admit(&w.request(), action).map_err(|d| d.refusal)
    }
}

/// A signed `POST /v1/elicitations` by `cred` at `ts` with `nonce`.
pub fn elicit(cred: &Credential, ts: i64, nonce: &str, body: &[u8]) -> Wire {
    let h = cred
        .signer()
        .sign_with_nonce("POST", "/v1/elicitations", "", body, ts, nonce);
    Wire::signed(&h, "POST", "/v1/elicitations", "", body)
}
