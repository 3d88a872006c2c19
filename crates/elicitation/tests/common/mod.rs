//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;

use lighthouse_elicitation::{CreateRequest, ElicitationService, Limits, ServiceOptions};
use lighthouse_event_store::{Durability, EventStore, ManualClock, StoreOptions, Timestamp};
use lighthouse_security::{Caller, Role};
use serde_json::{Value, json};

pub const KEY: &[u8] = b"elicitation tests key, 32 bytes!";
/// 2026-11-26T07:00:00.000Z
pub const START_MS: i64 = 1_795_676_400_000;

pub fn caller(agent: &str, role: Role) -> Caller {
    Caller {
        agent: agent.into(),
        role,
        key_id: 1,
    }
}

pub fn alice() -> Caller {
    caller("alice", Role::Agent)
}
pub fn bob() -> Caller {
    caller("bob", Role::Agent)
}
pub fn carol() -> Caller {
    caller("carol", Role::Agent)
}
pub fn ops() -> Caller {
    caller("ops", Role::Operator)
}

pub fn port_schema() -> Value {
    json!({"type": "object",
           "properties": {"port": {"type": "integer", "minimum": 1, "maximum": 65535}},
           "required": ["port"]})
}

pub fn ask(to: &str) -> CreateRequest {
    CreateRequest::new(to, "Which port?", port_schema())
}

pub fn manual_clock() -> ManualClock {
    ManualClock::new(Timestamp::from_unix_millis(START_MS))
}

pub fn store_at(dir: &Path, clock: &ManualClock) -> EventStore {
    // A buffered sled store releases its directory lock from a background
    // thread shortly after the last handle is dropped: retry for a moment.
    let mut tries = 0;
    loop {
        let opened = EventStore::open(
            dir,
            StoreOptions::new(KEY)
                .durability(Durability::Buffered)
                .clock(Arc::new(clock.clone())),
        );
        match opened {
            Ok(s) => return s,
            Err(e) if tries < 250 => {
                tries += 1;
                let _ = e;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => panic!("store did not reopen: {e}"),
        }
    }
}

pub fn options(clock: &ManualClock, limits: Limits) -> ServiceOptions {
    ServiceOptions::new()
        .clock(Arc::new(clock.clone()))
        .limits(limits)
}

/// A service on a store in `dir`, with a manual clock.
pub async fn open_at(dir: &Path, clock: &ManualClock, limits: Limits) -> ElicitationService {
    ElicitationService::open(store_at(dir, clock), options(clock, limits))
        .await
        .unwrap()
}

/// A service with `limits` on a store in a fresh temporary directory (kept
/// while the returned guard lives), with a manual clock.
pub async fn open_limited(
    clock: &ManualClock,
    limits: Limits,
) -> (ElicitationService, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let svc = open_at(dir.path(), clock, limits).await;
    (svc, dir)
}

/// A service on a temporary store, with a manual clock.
pub async fn open_temp(clock: &ManualClock) -> (ElicitationService, EventStore) {
    let store = EventStore::open_temporary(
        StoreOptions::new(KEY)
            .durability(Durability::Buffered)
            .clock(Arc::new(clock.clone())),
    )
    .unwrap();
    let svc = ElicitationService::open(store.clone(), options(clock, Limits::default()))
        .await
        .unwrap();
    (svc, store)
}

/// Every event type written to `elicitation-<id>`, in order.
pub fn stream_types(store: &EventStore, id: &str) -> Vec<String> {
    store
        .read_stream(&format!("elicitation-{id}"), 0, 100)
        .unwrap()
        .into_iter()
        .map(|e| e.event_type)
        .collect()
}
