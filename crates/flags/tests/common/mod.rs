//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::sync::Arc;

use lighthouse_event_store::{Durability, EventStore, ManualClock, StoreOptions, Timestamp};
use lighthouse_flags::{Attribution, FlagSpec, FlagStore, FlagStoreOptions, Limits};

pub const KEY: &[u8] = b"flags integration test key, 32 b";

/// 2026-11-26T07:00:00.000Z
pub fn start() -> Timestamp {
    Timestamp::parse_rfc3339("2026-11-26T07:00:00.000Z").unwrap()
}

pub fn temp_events() -> EventStore {
    EventStore::open_temporary(StoreOptions::new(KEY).durability(Durability::Buffered)).unwrap()
}

pub fn open_flags(events: &EventStore, clock: &ManualClock, limits: Limits) -> FlagStore {
    let options = FlagStoreOptions::new()
        .limits(limits)
        .clock(Arc::new(clock.clone()));
    FlagStore::open(events.clone(), options).unwrap()
}

/// A fresh event store and flag store on a manual clock.
pub fn fresh() -> (EventStore, FlagStore, ManualClock) {
    let events = temp_events();
    let clock = ManualClock::new(start());
    let flags = open_flags(&events, &clock, Limits::default());
    (events, flags, clock)
}

pub fn by(actor: &str, reason: &str) -> Attribution {
    Attribution::new(actor, reason)
}

pub fn ops() -> Attribution {
    by("ops-1", "test change")
}

pub fn spec(enabled: bool, percent: f64) -> FlagSpec {
    FlagSpec::new(enabled, percent)
}

pub fn requiring(requires: &[&str]) -> FlagSpec {
    FlagSpec {
        requires: requires.iter().map(|s| s.to_string()).collect(),
        ..FlagSpec::new(true, 100.0)
    }
}
