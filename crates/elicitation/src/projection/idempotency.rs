//! Idempotency keys of creates, rebuilt from `requested` events.
//!
//! Pruning depends only on the log (the `created_at` of the newest key and the
//! configured bound), never on the wall clock, so a projection rebuilt from a
//! snapshot plus the tail equals one rebuilt from the whole log.

use std::collections::{BTreeSet, HashMap};
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
    /// Each requester's records by seq, oldest first: the per-agent cap
    /// evicts from here, so one agent's keys never push out another's.
    by_agent: HashMap<String, BTreeSet<u64>>,
    /// (records held, requester) for every requester holding any: the
    /// largest holder is the last, the one the overall cap evicts from.
    holders: BTreeSet<(usize, String)>,
}

/// The records by the seq of their `requested` event.
pub(crate) type Records = imbl::OrdMap<u64, Arc<KeyRecord>>;

/// How many keys are remembered, and for how long.
#[derive(Debug, Clone, Copy)]
pub(crate) struct KeyBounds {
    /// Age, before the newest key, beyond which a key is forgotten.
    pub ttl_ms: u64,
    /// Keys per requester (at least 1).
    pub per_agent: usize,
    /// Keys in all (at least 1).
    pub total: usize,
}

impl Idempotency {
    /// Remembers `rec`, then forgets: keys older than `ttl_ms` before it, the
    /// oldest of its requester's beyond `per_agent`, and, while more than
    /// `total` are held, the oldest of whichever requester holds the most.
    pub(crate) fn insert(&mut self, rec: KeyRecord, bounds: KeyBounds) {
        let rec = Arc::new(rec);
        if let Some(old) = self.by_key.get(&(rec.from.clone(), rec.key.clone())) {
            let seq = old.seq;
            self.remove(seq);
        }
        self.add(rec.clone());
        let horizon = rec
            .created_at
            .add_millis(-i64::try_from(bounds.ttl_ms).unwrap_or(i64::MAX));
        while let Some((seq, oldest)) = self.by_seq.get_min() {
            if oldest.created_at >= horizon {
                break;
            }
            let seq = *seq;
            self.remove(seq);
        }
        let per_agent = bounds.per_agent.max(1);
        while let Some(&seq) = self
            .by_agent
            .get(&rec.from)
            .filter(|seqs| seqs.len() > per_agent)
            .and_then(BTreeSet::first)
        {
            self.remove(seq);
        }
        while self.by_seq.len() > bounds.total.max(1) {
            let Some(&seq) = self
                .holders
                .last()
                .and_then(|(_, agent)| self.by_agent.get(agent))
                .and_then(BTreeSet::first)
            else {
                break;
            };
            self.remove(seq);
        }
    }

    fn add(&mut self, rec: Arc<KeyRecord>) {
        self.by_key
            .insert((rec.from.clone(), rec.key.clone()), rec.clone());
        self.by_seq.insert(rec.seq, rec.clone());
        let seqs = self.by_agent.entry(rec.from.clone()).or_default();
        let before = seqs.len();
        seqs.insert(rec.seq);
        self.holders.remove(&(before, rec.from.clone()));
        self.holders.insert((before + 1, rec.from.clone()));
    }

    fn remove(&mut self, seq: u64) {
        let Some(rec) = self.by_seq.remove(&seq) else {
            return;
        };
        self.by_key.remove(&(rec.from.clone(), rec.key.clone()));
        if let Some(seqs) = self.by_agent.get_mut(&rec.from) {
            let before = seqs.len();
            seqs.remove(&seq);
            self.holders.remove(&(before, rec.from.clone()));
            if seqs.is_empty() {
                self.by_agent.remove(&rec.from);
            } else {
                self.holders.insert((before - 1, rec.from.clone()));
            }
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
        rec_of("alice", seq, at)
    }

    fn rec_of(from: &str, seq: u64, at: i64) -> KeyRecord {
        KeyRecord {
            from: from.into(),
            key: format!("k{seq}"),
            id: format!("el_{seq}"),
            hash: None,
            created_at: Timestamp::from_unix_millis(at),
            seq,
        }
    }

    fn bounds(ttl_ms: u64, per_agent: usize, total: usize) -> KeyBounds {
        KeyBounds {
            ttl_ms,
            per_agent,
            total,
        }
    }

    #[test]
    fn bounded_by_count_and_age() {
        let mut i = Idempotency::default();
        for s in 1..=1000 {
            i.insert(rec(s, 0), bounds(10_000, 100, 1000));
        }
        assert_eq!(i.len(), 100);
        assert!(i.get("alice", "k900", Timestamp::EPOCH, 10_000).is_none());
        assert!(i.get("alice", "k1000", Timestamp::EPOCH, 10_000).is_some());
        // A key older than the TTL before the newest is forgotten.
        i.insert(rec(2000, 20_000), bounds(10_000, 100, 1000));
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

    /// Agent A filling its quota evicts only its own oldest keys: agent B's
    /// key, older than all of them, stays for the whole TTL.
    #[test]
    fn one_agent_filling_its_quota_does_not_evict_another_agents_key() {
        let day = 24 * 3_600_000;
        let mut i = Idempotency::default();
        i.insert(rec_of("bob", 1, 0), bounds(day, 100, 10_000));
        for s in 2..=5_000 {
            i.insert(rec_of("alice", s, 1), bounds(day, 100, 10_000));
        }
        assert_eq!(i.len(), 101);
        assert!(i.get("bob", "k1", Timestamp::EPOCH, day).is_some());
        assert!(i.get("alice", "k4900", Timestamp::EPOCH, day).is_none());
        assert!(i.get("alice", "k4901", Timestamp::EPOCH, day).is_some());
        // Still there just before the 24 h are up, gone after.
        let late = Timestamp::from_unix_millis(i64::try_from(day).unwrap() - 1);
        assert!(i.get("bob", "k1", late, day).is_some());
        i.insert(
            rec_of("alice", 6_000, i64::try_from(day).unwrap() + 1),
            bounds(day, 100, 10_000),
        );
        assert!(i.get("bob", "k1", late, day).is_none());
    }

    /// Past the overall cap, the requester holding the most keys loses its
    /// oldest, not whoever holds the oldest key.
    #[test]
    fn the_overall_cap_evicts_from_the_largest_holder() {
        let mut i = Idempotency::default();
        let b = bounds(u64::MAX, 10, 12);
        for (s, from) in [(1, "bob"), (2, "carol")] {
            i.insert(rec_of(from, s, 0), b);
        }
        for s in 3..=20 {
            i.insert(rec_of("alice", s, 0), b);
        }
        assert_eq!(i.len(), 12);
        assert!(i.get("bob", "k1", Timestamp::EPOCH, u64::MAX).is_some());
        assert!(i.get("carol", "k2", Timestamp::EPOCH, u64::MAX).is_some());
        assert!(i.get("alice", "k10", Timestamp::EPOCH, u64::MAX).is_none());
        assert!(i.get("alice", "k11", Timestamp::EPOCH, u64::MAX).is_some());
        assert_eq!(i.by_agent["alice"].len(), 10);
        // A repeated key replaces its record instead of counting twice.
        i.insert(
            KeyRecord {
                key: "k1".into(),
                ..rec_of("bob", 21, 0)
            },
            b,
        );
        assert_eq!(i.by_agent["bob"].len(), 1);
        assert_eq!(i.holders.iter().map(|(n, _)| n).sum::<usize>(), i.len());
    }
}
