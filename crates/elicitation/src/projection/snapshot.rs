//! Snapshots of the projection: captured cheaply under the state lock (pointer
//! copies), encoded as JSON outside it, and loaded back into every index.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{Entries, Entry, KeyRecord, Live, Projection, Records};
use crate::limits::Limits;
use crate::record::{Elicitation, SchemaProfile, Status};

/// The snapshot format this version writes and reads.
const FORMAT: u32 = 1;

#[derive(Serialize)]
struct EntryOut<'a> {
    record: &'a Elicitation,
    profile: SchemaProfile,
    version: u64,
    requested_seq: u64,
    requested_event_id: &'a str,
    terminal_seq: Option<u64>,
}

#[derive(Deserialize)]
struct EntryIn {
    record: Elicitation,
    profile: SchemaProfile,
    version: u64,
    requested_seq: u64,
    requested_event_id: String,
    terminal_seq: Option<u64>,
}

#[derive(Serialize)]
struct SnapshotOut<'a> {
    format: u32,
    applied_seq: u64,
    evicted_through: u64,
    entries: Vec<EntryOut<'a>>,
    idempotency: &'a [&'a KeyRecord],
}

#[derive(Deserialize)]
struct SnapshotIn {
    format: u32,
    applied_seq: u64,
    evicted_through: u64,
    entries: Vec<EntryIn>,
    idempotency: Vec<KeyRecord>,
}

/// The projection as of `applied_seq`, ready to encode without the lock.
pub(crate) struct SnapshotCapture {
    pub applied_seq: u64,
    evicted_through: u64,
    /// A copy of the persistent map (shares every node with the projection's
    /// until one changes).
    entries: Entries,
    idempotency: Records,
}

impl SnapshotCapture {
    /// Encodes the capture. Entries are ordered by `requested` seq, so equal
    /// projections encode to equal bytes.
    pub(crate) fn encode(self) -> Result<Vec<u8>, serde_json::Error> {
        let mut entries: Vec<&Entry> = self.entries.values().collect();
        entries.sort_by_key(|e| e.requested_seq);
        let idempotency: Vec<&KeyRecord> = self.idempotency.values().map(|r| &**r).collect();
        let out = SnapshotOut {
            format: FORMAT,
            applied_seq: self.applied_seq,
            evicted_through: self.evicted_through,
            entries: entries
                .into_iter()
                .map(|e| EntryOut {
                    record: &e.record,
                    profile: e.profile,
                    version: e.version,
                    requested_seq: e.requested_seq,
                    requested_event_id: &e.requested_event_id,
                    terminal_seq: e.terminal_seq,
                })
                .collect(),
            idempotency: &idempotency,
        };
        serde_json::to_vec(&out)
    }
}

impl Projection {
    /// Copies what a snapshot needs, in constant time (persistent maps).
    pub(crate) fn capture(&self) -> SnapshotCapture {
        SnapshotCapture {
            applied_seq: self.applied_seq,
            evicted_through: self.evicted_through,
            entries: self.entries.clone(),
            idempotency: self.idempotency.records(),
        }
    }

    /// A projection from snapshot bytes. Schemas of pending elicitations are
    /// compiled lazily, on their first answer.
    pub(crate) fn from_snapshot(bytes: &[u8], limits: Limits) -> Result<Projection, String> {
        let snap: SnapshotIn = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if snap.format != FORMAT {
            return Err(format!("snapshot format {} is not {FORMAT}", snap.format));
        }
        let mut p = Projection::new(limits);
        // The caller turns the per-agent indexes on once the tail is applied.
        p.set_indexing(false);
        p.applied_seq = snap.applied_seq;
        p.evicted_through = snap.evicted_through;
        for rec in snap.idempotency {
            p.idempotency.insert(rec, p.limits.idempotency_bounds());
        }
        for e in snap.entries {
            let pending = e.record.status == Status::Pending;
            if pending == e.terminal_seq.is_some() {
                return Err(format!(
                    "entry {} has an inconsistent terminal position",
                    e.record.id
                ));
            }
            let key: Arc<str> = e.record.id.clone();
            p.insert(
                key,
                Entry {
                    record: Arc::new(e.record),
                    profile: e.profile,
                    version: e.version,
                    requested_seq: e.requested_seq,
                    requested_event_id: Arc::from(e.requested_event_id),
                    terminal_seq: e.terminal_seq,
                    live: pending.then(|| Live::new(None)),
                },
            );
        }
        p.evict();
        Ok(p)
    }

    /// A canonical JSON rendering of the whole state, for comparing projections.
    pub(crate) fn export(&self) -> serde_json::Value {
        let bytes = self.capture().encode().unwrap_or_default();
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null)
    }
}
