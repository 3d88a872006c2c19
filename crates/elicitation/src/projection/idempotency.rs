//! Idempotency keys of creates, rebuilt from `requested` events.
//!
//! Pruning depends only on the log (the `created_at` of the newest key and the
//! configured bound), never on the wall clock, so a projection rebuilt from a
//! snapshot plus the tail equals one rebuilt from the whole log.

use std::collections::HashMap;
use std::sync::Arc;

use lighthouse_event_store::Timestamp;
use serde::{Deserialize, Serialize};

/// The first result of a create made with a key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct KeyRecord {
    pub from: String,
    pub key: String,
    pub id: String,
    pub hash: Option<String>,
    pub created_at: Timestamp,
    pub seq: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Idempotency {
    by_key: HashMap<(String, String), Arc<KeyRecord>>,
    /// A persistent map, so that a snapshot copies it in constant time.
    by_seq: Records,
}

/// The records by the seq of their `requested` event.
pub(crate) type Records = imbl::OrdMap<u64, Arc<KeyRecord>>;

impl Idempotency {
    /// Remembers `rec`, then forgets keys older than `ttl_ms` before it and the
    /// oldest beyond `max` keys.
    pub(crate) fn insert(&mut self, rec: KeyRecord, ttl_ms: u64, max: usize) {
        let rec = Arc::new(rec);
        if let Some(old) = self
            .by_key
            .insert((rec.from.clone(), rec.key.clone()), rec.clone())
        {
            self.by_seq.remove(&old.seq);
        }
        self.by_seq.insert(rec.seq, rec.clone());
        let horizon = rec
            .created_at
            .add_millis(-i64::try_from(ttl_ms).unwrap_or(i64::MAX));
        while let Some((_, oldest)) = self.by_seq.get_min() {
            if self.by_seq.len() <= max && oldest.created_at >= horizon {
                break;
            }
            let oldest = oldest.clone();
            self.by_seq.remove(&oldest.seq);
            self.by_key
                .remove(&(oldest.from.clone(), oldest.key.clone()));
        }
    }

    /// The record of `key` for `from`, if it is younger than `ttl_ms` at `now`.
    pub(crate) fn get(
        &self,
        from: &str,
        key: &str,
        now: Timestamp,
        ttl_ms: u64,
    ) -> Option<&KeyRecord> {
        let rec = self.by_key.get(&(from.to_owned(), key.to_owned()))?;
        let age = now.millis_since(rec.created_at);
        (u64::try_from(age).unwrap_or(0) < ttl_ms).then_some(rec.as_ref())
    }

    pub(crate) fn len(&self) -> usize {
        self.by_seq.len()
    }

    /// Every record by seq: a constant-time copy, for snapshots.
    pub(crate) fn records(&self) -> Records {
        self.by_seq.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(seq: u64, at: i64) -> KeyRecord {
        KeyRecord {
            from: "alice".into(),
            key: format!("k{seq}"),
            id: format!("el_{seq}"),
            hash: None,
            created_at: Timestamp::from_unix_millis(at),
            seq,
        }
    }

    #[test]
    fn bounded_by_count_and_age() {
        let mut i = Idempotency::default();
        for s in 1..=1000 {
            i.insert(rec(s, 0), 10_000, 100);
        }
        assert_eq!(i.len(), 100);
        assert!(i.get("alice", "k900", Timestamp::EPOCH, 10_000).is_none());
        assert!(i.get("alice", "k1000", Timestamp::EPOCH, 10_000).is_some());
        // A key older than the TTL before the newest is forgotten.
        i.insert(rec(2000, 20_000), 10_000, 100);
        assert_eq!(i.len(), 1);
        // Lookups refuse expired records even before they are pruned.
        assert!(
            i.get(
                "alice",
                "k2000",
                Timestamp::from_unix_millis(30_000),
                10_000
            )
            .is_none()
        );
        assert!(
            i.get(
                "alice",
                "k2000",
                Timestamp::from_unix_millis(29_999),
                10_000
            )
            .is_some()
        );
        assert!(
            i.get("bob", "k2000", Timestamp::from_unix_millis(20_000), 10_000)
                .is_none()
        );
    }
}
