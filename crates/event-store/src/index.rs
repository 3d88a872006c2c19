//! In-memory secondary indexes over the log, rebuilt from the log on open.
//!
//! Why in memory: on sled the cost of a write is per key (docs/PERFORMANCE.md and
//! CALIBRATION.md), so persisting one key per event per index would cap durable
//! throughput far below the target. The log itself is the only thing written per
//! event; these postings are derived from it (the Bitcask "keydir" design) and cost
//! about 330 bytes per event in memory for a bridge-shaped log (measured:
//! docs/EVENT_STORE.md, "Indexes").
//!
//! Each posting list holds seqs in ascending order, so a query that returns `k`
//! events costs a binary search plus `k` steps.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};

use crate::clock::Timestamp;
use crate::codec::RecordView;

/// Seqs in ascending order, stored inline when there is only one.
#[allow(missing_docs)]
#[derive(Debug, Clone)]
pub enum Postings {
    One(u64),
    Many(Vec<u64>),
}

impl Postings {
    fn push(&mut self, seq: u64) {
        match self {
            Postings::One(a) => *self = Postings::Many(vec![*a, seq]),
            Postings::Many(v) => v.push(seq),
        }
    }

    pub(crate) fn as_slice(&self) -> &[u64] {
        match self {
            Postings::One(a) => std::slice::from_ref(a),
            Postings::Many(v) => v,
        }
    }
}

/// Postings keyed by a value that is already a keyed hash (see
/// [`Indexes::hash`]): hashing it again would only cost time, so the map uses it
/// as is. Without the key an attacker cannot aim at collisions of either hash.
///
/// Nearly every key has one seq (an event id is unique; a correlation id is
/// usually one request's): the map's value is that seq, and the rare key with
/// more points into `overflow` instead (the top bit set). A bucket is 16 bytes
/// instead of 32 with a `Postings` value; measured in docs/EVENT_STORE.md.
#[derive(Debug, Default)]
struct HashedMap {
    map: griddle::HashMap<u64, u64, BuildHasherDefault<AlreadyHashed>>,
    overflow: Vec<Vec<u64>>,
}

/// Marks a value of [`HashedMap`] as an index into its overflow (seqs stay
/// below 2^63).
const OVERFLOW: u64 = 1 << 63;

impl HashedMap {
    fn with_capacity(n: usize) -> Self {
        HashedMap {
            map: griddle::HashMap::with_capacity_and_hasher(n, Default::default()),
            overflow: Vec::new(),
        }
    }

    /// Adds `seq` (ascending per key) to `key`'s postings.
    fn push(&mut self, key: u64, seq: u64) {
        match self.map.get_mut(&key) {
            None => {
                self.map.insert(key, seq);
            }
            Some(v) if *v & OVERFLOW != 0 => {
                if let Some(list) = self.overflow.get_mut((*v & !OVERFLOW) as usize) {
                    list.push(seq);
                }
            }
            Some(v) => {
                let first = *v;
                *v = OVERFLOW | self.overflow.len() as u64;
                self.overflow.push(vec![first, seq]);
            }
        }
    }

    /// `key`'s postings, ascending.
    fn get(&self, key: u64) -> &[u64] {
        match self.map.get(&key) {
            None => &[],
            Some(v) if *v & OVERFLOW != 0 => self
                .overflow
                .get((*v & !OVERFLOW) as usize)
                .map_or(&[], Vec::as_slice),
            Some(v) => std::slice::from_ref(v),
        }
    }
}

/// A `Hasher` for keys that are already keyed hashes: passes the `u64` through.
#[derive(Default)]
struct AlreadyHashed(u64);

impl Hasher for AlreadyHashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `u64` keys are hashed with this hasher; fold anything else in.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// Postings keyed by a name.
type NamedMap = griddle::HashMap<Box<str>, Vec<u64>, RandomState>;

/// Postings keyed by a stream name. Most streams are short (an elicitation's
/// has two or three events), so a stream's first seq is stored inline: on open,
/// one allocation fewer per stream than a `Vec` that grows from one to two.
type StreamMap = griddle::HashMap<Box<str>, Postings, RandomState>;

/// The indexed fields of one event.
#[derive(Debug, Clone, Copy)]
pub struct IndexEntry<'a> {
    /// Global position.
    pub seq: u64,
    /// Append time.
    pub time: Timestamp,
    /// Event id.
    pub id: &'a str,
    /// Stream.
    pub stream: &'a str,
    /// Type.
    pub event_type: &'a str,
    /// Agent.
    pub agent: Option<&'a str>,
    /// Correlation id.
    pub correlation_id: Option<&'a str>,
}

/// The indexes. Only the writer mutates them (under the store's write lock).
/// Public only for the crate's benchmarks.
///
/// The maps grow with the log, so they resize incrementally (`griddle`): a
/// standard hash map doubles all at once, and the writer, which holds the index
/// lock while it inserts, stalled every commit behind each doubling (measured:
/// 10-25 ms at 57,000 and 114,000 events, when the id and correlation maps, and
/// then the stream map, doubled together). B-trees, tried first, have no such
/// stall but tripled the writer's indexing time (random keys shift node
/// contents on every insert).
#[derive(Debug)]
pub struct Indexes {
    types: NamedMap,
    agents: NamedMap,
    /// Streams, ids and correlation ids.
    wide: Wide,
    /// Append time of every seq (`times[seq - 1]`); non-decreasing.
    times: Times,
    hasher: std::collections::hash_map::RandomState,
}

impl Default for Indexes {
    fn default() -> Self {
        Self::new()
    }
}

impl<'a> IndexEntry<'a> {
    /// The indexed fields of a stored record.
    pub fn of(r: &RecordView<'a>) -> Self {
        IndexEntry {
            seq: r.seq,
            time: r.time,
            id: r.id,
            stream: r.stream,
            event_type: r.event_type,
            agent: r.agent,
            correlation_id: r.correlation_id,
        }
    }
}

impl Indexes {
    /// Empty indexes.
    pub fn new() -> Self {
        Self::with_capacity(0)
    }

    /// Empty indexes with room for the ids of `events` events, for a rebuild
    /// that knows how many it will add: the id map (one entry per event) then
    /// never resizes while it is filled.
    pub fn with_capacity(events: usize) -> Self {
        Indexes {
            types: NamedMap::with_hasher(RandomState::new()),
            agents: NamedMap::with_hasher(RandomState::new()),
            wide: Wide::with_capacity(events),
            times: Times::default(),
            hasher: Default::default(),
        }
    }

    pub(crate) fn hash(&self, s: &str) -> u64 {
        self.hasher.hash_one(s)
    }

    /// Adds one record. Records must be added in seq order without gaps, except
    /// that damaged records found on open are skipped.
    pub fn add(&mut self, r: &RecordView<'_>) {
        self.insert(&IndexEntry::of(r));
    }

    /// Adds one event from its known fields (the writer's path: no record to
    /// parse). Same ordering rule as [`add`](Self::add).
    pub fn insert(&mut self, e: &IndexEntry<'_>) {
        let (id, correlation) = self.insert_narrow(e);
        self.wide.insert(e.seq, e.stream, id, correlation);
    }

    /// Adds the fields of `e` with few distinct values (type, agent) and its
    /// time, and returns the keyed hashes of its id and correlation id, for
    /// [`Wide::insert`].
    pub(crate) fn insert_narrow(&mut self, e: &IndexEntry<'_>) -> (u64, Option<u64>) {
        push_named(&mut self.types, e.event_type, e.seq);
        if let Some(a) = e.agent {
            push_named(&mut self.agents, a, e.seq);
        }
        let idx = (e.seq as usize).saturating_sub(1);
        // A damaged record skipped on open leaves a gap: the previous time is
        // carried forward so that the times stay indexed by seq and non-decreasing.
        self.times.push_at(idx, e.time.unix_millis());
        (self.hash(e.id), e.correlation_id.map(|c| self.hash(c)))
    }

    /// Takes the maps with a key (nearly) per event out, so that another
    /// thread can fill them while this one reads the log; give them back with
    /// [`put_wide`](Self::put_wide).
    pub(crate) fn take_wide(&mut self) -> Wide {
        std::mem::replace(&mut self.wide, Wide::with_capacity(0))
    }

    /// Puts back what [`take_wide`](Self::take_wide) took.
    pub(crate) fn put_wide(&mut self, wide: Wide) {
        self.wide = wide;
    }

    /// The last version of `stream`, `None` if it has no events.
    pub(crate) fn stream_version(&self, stream: &str) -> Option<u64> {
        self.wide
            .streams
            .get(stream)
            .and_then(|p| (p.as_slice().len() as u64).checked_sub(1))
    }

    pub(crate) fn stream(&self, stream: &str) -> &[u64] {
        self.wide
            .streams
            .get(stream)
            .map_or(&[], Postings::as_slice)
    }

    pub(crate) fn by_type(&self, t: &str) -> &[u64] {
        self.types.get(t).map_or(&[], Vec::as_slice)
    }

    pub(crate) fn by_agent(&self, a: &str) -> &[u64] {
        self.agents.get(a).map_or(&[], Vec::as_slice)
    }

    pub(crate) fn by_correlation(&self, c: &str) -> &[u64] {
        self.wide.correlations.get(self.hash(c))
    }

    pub(crate) fn by_id(&self, id: &str) -> &[u64] {
        self.wide.ids.get(self.hash(id))
    }

    /// The first seq whose time is `>= t` (head + 1 when none).
    pub(crate) fn first_seq_at_or_after(&self, t_ms: i64) -> u64 {
        self.times.partition_point(t_ms) as u64 + 1
    }

    /// Number of distinct streams.
    pub(crate) fn stream_count(&self) -> usize {
        self.wide.streams.len()
    }
}

/// The maps with a key (nearly) per event: streams, event ids and correlation
/// ids. They grow with the log and outgrow the caches; a part of their own so
/// that a rebuild can fill them on a second thread.
#[derive(Debug)]
pub(crate) struct Wide {
    /// Stream name → seq of each version (version `i` at index `i`).
    streams: StreamMap,
    /// Keyed by a keyed hash of the correlation id; candidates are checked against
    /// the record, so a collision costs a step, never a wrong answer.
    correlations: HashedMap,
    /// Keyed by a keyed hash of the event id; same collision rule.
    ids: HashedMap,
}

impl Wide {
    /// Empty maps, with room for the ids of `events` events.
    fn with_capacity(events: usize) -> Self {
        Wide {
            streams: StreamMap::with_hasher(RandomState::new()),
            correlations: HashedMap::default(),
            ids: HashedMap::with_capacity(events),
        }
    }

    /// Adds one event's stream and the hashes of its id and correlation id
    /// (from [`Indexes::insert_narrow`]), in seq order.
    pub(crate) fn insert(&mut self, seq: u64, stream: &str, id: u64, correlation: Option<u64>) {
        if let Some(p) = self.streams.get_mut(stream) {
            p.push(seq);
        } else {
            self.streams.insert(stream.into(), Postings::One(seq));
        }
        if let Some(c) = correlation {
            self.correlations.push(c, seq);
        }
        self.ids.push(id, seq);
    }
}

/// A non-decreasing sequence of times in fixed-size blocks: it grows a block at
/// a time, never by copying everything (a `Vec` doubling at a million events
/// copied 8 MB under the writer's lock).
#[derive(Debug)]
struct Times {
    blocks: Vec<Vec<i64>>,
    len: usize,
    /// Times per block (every block but the last is full).
    block: usize,
}

impl Default for Times {
    fn default() -> Self {
        Times::with_block(1 << 16)
    }
}

impl Times {
    fn with_block(block: usize) -> Times {
        Times {
            blocks: Vec::new(),
            len: 0,
            block: block.max(1),
        }
    }

    fn push(&mut self, t: i64) {
        match self.blocks.last_mut() {
            Some(b) if b.len() < self.block => b.push(t),
            _ => {
                // Grown by doubling like any `Vec` (at most one block copied),
                // so that a small store does not hold a whole block.
                self.blocks.push(vec![t]);
            }
        }
        self.len += 1;
    }

    /// Pushes `t` at index `idx`, first filling any gap with the last time.
    fn push_at(&mut self, idx: usize, t: i64) {
        let last = self.blocks.last().and_then(|b| b.last()).copied();
        while self.len < idx {
            self.push(last.unwrap_or(i64::MIN));
        }
        self.push(t);
    }

    /// How many times are `< t`.
    fn partition_point(&self, t: i64) -> usize {
        // Blocks whose every time is < t come first, then at most one block
        // with the boundary.
        let full = self
            .blocks
            .partition_point(|b| b.last().is_some_and(|&x| x < t));
        match self.blocks.get(full) {
            Some(b) => full * self.block + b.partition_point(|&x| x < t),
            // Every time is < t (the last block may be partly filled).
            None => self.len,
        }
    }
}

fn push_named(map: &mut NamedMap, key: &str, seq: u64) {
    if let Some(v) = map.get_mut(key) {
        v.push(seq);
    } else {
        map.insert(key.into(), vec![seq]);
    }
}

/// The part of a sorted posting list inside the seq window `[lo, hi]`.
pub(crate) fn window(list: &[u64], lo: u64, hi: u64) -> &[u64] {
    let a = list.partition_point(|&s| s < lo);
    let b = list.partition_point(|&s| s <= hi);
    if a >= b { &[] } else { &list[a..b] }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_slices_by_seq() {
        let l = [2, 4, 6, 8];
        assert_eq!(window(&l, 3, 7), &[4, 6]);
        assert_eq!(window(&l, 0, 100), &l);
        assert_eq!(window(&l, 9, 100), &[] as &[u64]);
        assert_eq!(window(&l, 5, 4), &[] as &[u64]);
    }

    proptest::proptest! {
        /// The hashed postings answer like a map of vectors, whether a key has
        /// one seq or many.
        #[test]
        fn hashed_postings_match_a_map_of_vectors(keys in proptest::collection::vec(0u64..40, 0..300)) {
            let mut m = HashedMap::default();
            let mut model: std::collections::HashMap<u64, Vec<u64>> = Default::default();
            for (i, k) in keys.iter().enumerate() {
                let seq = i as u64 + 1;
                m.push(*k, seq);
                model.entry(*k).or_default().push(seq);
            }
            for k in 0u64..45 {
                proptest::prop_assert_eq!(m.get(k), model.get(&k).map_or(&[][..], Vec::as_slice));
            }
        }

        /// Blocked times answer like one sorted vector, gaps included.
        #[test]
        fn times_match_a_vector(
            steps in proptest::collection::vec((0u8..3, 0i64..4), 0..200),
            block in 1usize..9,
            probes in proptest::collection::vec(-2i64..400, 1..20),
        ) {
            let mut times = Times::with_block(block);
            let mut flat: Vec<i64> = Vec::new();
            let mut t = 0;
            for (gap, dt) in steps {
                t += dt;
                let idx = flat.len() + usize::from(gap);
                let last = flat.last().copied().unwrap_or(i64::MIN);
                flat.resize(idx, last);
                flat.push(t);
                times.push_at(idx, t);
            }
            proptest::prop_assert_eq!(times.len, flat.len());
            for p in probes {
                proptest::prop_assert_eq!(times.partition_point(p), flat.partition_point(|&x| x < p));
            }
        }
    }
}
