//! The nonce store (PROTOCOL.md 2.2 step 5): per agent, every nonce accepted
//! inside the acceptance window, bounded, optionally persisted.
//!
//! A nonce with timestamp `ts` is kept until `now > ts + window`: after that a
//! request carrying it is stale anyway. Memory is bounded by
//! [`NonceConfig::capacity`] (whole store) and
//! [`NonceConfig::per_agent_capacity`]; when either is reached the store refuses
//! new nonces ([`Unavailable`]) instead of forgetting live ones, so a replay is
//! never accepted. Past `capacity`, an agent holding less than its fair share
//! (`capacity` / agents holding nonces) is still admitted, up to twice
//! `capacity` in all: a few agents flooding signed requests (a request refused
//! by the rate limit has used its nonce too) cannot lock every other agent out.
//!
//! Layout: shards by agent, each a hash map from a 64-bit keyed fingerprint of
//! `(agent, nonce)` to `(agent slot, expiry second)`, plus a timing wheel of
//! one-second slots that finds expired fingerprints without scanning. The
//! fingerprint key is random per process, so nobody can aim collisions; a
//! collision could only ever refuse a fresh request as replayed (probability about
//! `n / 2^64` per request with `n` nonces stored), never accept a replay.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher, RandomState};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};

use lighthouse_event_store::{SharedClock, Timestamp};
use parking_lot::Mutex;

use crate::error::{Error, Result};
use crate::journal::{self, Journal, Record};
use crate::refusal::Unavailable;

/// Nonce store limits. Every field has a documented default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NonceConfig {
    /// The acceptance window in seconds, `|now - timestamp| <= window_s`
    /// (default 300). The gate sets it from its own window.
    pub window_s: u32,
    /// Most nonces remembered in total (default 1,048,576: about 40 MiB at the
    /// measured ~40 bytes per nonce; see docs/SECURITY.md). Agents below their
    /// fair share may take the store up to twice this (see the module docs).
    pub capacity: usize,
    /// Most nonces remembered per agent (default 131,072: an agent at every
    /// default `agent` rate limit at once sends 181 requests/s, which is 54,300
    /// nonces over a 300 s window and 108,600 if its clock runs a full window ahead).
    pub per_agent_capacity: u32,
    /// Lock shards (default 8).
    pub shards: usize,
    /// With a journal: records per shard buffered before the inserting request
    /// flushes them itself (default 8192). Bounds what a crash loses, together
    /// with the flush interval of [`NonceFlusher`](crate::NonceFlusher).
    pub max_unflushed_per_shard: usize,
    /// With a journal: a new segment file is started after this many seconds
    /// (default 300); a segment is deleted once every nonce in it has expired.
    pub segment_span_s: i64,
}

impl Default for NonceConfig {
    fn default() -> Self {
        NonceConfig {
            window_s: 300,
            capacity: 1 << 20,
            per_agent_capacity: 1 << 17,
            shards: 8,
            max_unflushed_per_shard: 8192,
            segment_span_s: 300,
        }
    }
}

/// Why a nonce was not recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceRefusal {
    /// Seen for this agent inside the window.
    Replayed,
    /// The timestamp left the window while the request was being verified
    /// (another request moved the store's time on), or is below the journal's
    /// floor (a nonce that old may have been deleted by an earlier run): its
    /// nonce may already have been forgotten, so it cannot be told apart from a
    /// replay.
    Stale,
    /// The agent id or nonce is longer than a verified request's can be (64
    /// bytes each); only reachable by calling the store directly.
    Malformed,
    /// No room: see [`Unavailable`].
    Unavailable(Unavailable),
}

#[derive(Clone, Copy)]
struct Slot {
    agent: u32,
    expiry: u32,
}

/// `HashMap` keys are already keyed SipHash fingerprints: hash them once only.
#[derive(Default, Clone, Copy)]
struct FingerprintHasher(u64);

impl Hasher for FingerprintHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

#[derive(Default, Clone, Copy)]
struct BuildFingerprint;

impl BuildHasher for BuildFingerprint {
    type Hasher = FingerprintHasher;
    fn build_hasher(&self) -> FingerprintHasher {
        FingerprintHasher(0)
    }
}

struct AgentSlot {
    name: Box<str>,
    count: u32,
}

struct Shard {
    map: HashMap<u64, Slot, BuildFingerprint>,
    wheel: Box<[Vec<u64>]>,
    /// Every wheel second below this has been swept.
    swept_to: i64,
    index: HashMap<Box<str>, u32>,
    agents: Vec<AgentSlot>,
    free: Vec<u32>,
    /// Journal records accepted but not yet written.
    pending: Vec<u8>,
    pending_records: usize,
}

impl Shard {
    fn new(wheel_len: usize) -> Self {
        Shard {
            map: HashMap::with_hasher(BuildFingerprint),
            wheel: (0..wheel_len).map(|_| Vec::new()).collect(),
            swept_to: i64::MIN,
            index: HashMap::new(),
            agents: Vec::new(),
            free: Vec::new(),
            pending: Vec::new(),
            pending_records: 0,
        }
    }

    fn slot_of(&self, expiry: u32) -> usize {
        expiry as usize % self.wheel.len()
    }

    /// Forgets every nonce whose expiry second is before `now_s`. Returns how many.
    fn sweep(&mut self, now_s: i64) -> usize {
        let len = self.wheel.len() as i64;
        if self.swept_to == i64::MIN {
            self.swept_to = now_s;
            return 0;
        }
        if now_s <= self.swept_to {
            return 0;
        }
        let from = self.swept_to.max(now_s - len);
        let mut removed = 0;
        for s in from..now_s {
            let i = s.rem_euclid(len) as usize;
            let mut fps = std::mem::take(&mut self.wheel[i]);
            fps.retain(|fp| {
                let Some(slot) = self.map.get(fp).copied() else {
                    return false;
                };
                if i64::from(slot.expiry) < now_s {
                    self.map.remove(fp);
                    release(
                        &mut self.agents,
                        &mut self.index,
                        &mut self.free,
                        slot.agent,
                    );
                    removed += 1;
                    false
                } else {
                    // Filed under an earlier turn of the wheel (the clock went
                    // back): keep it until it really expires.
                    true
                }
            });
            // Reuse the allocation for the next turn unless it is unusually large.
            if fps.capacity() > WHEEL_SLOT_KEEP && fps.is_empty() {
                fps = Vec::new();
            }
            self.wheel[i] = fps;
        }
        self.swept_to = now_s;
        removed
    }

    fn agent_slot(&mut self, agent: &str) -> u32 {
        if let Some(&i) = self.index.get(agent) {
            return i;
        }
        let name: Box<str> = agent.into();
        let i = match self.free.pop() {
            Some(i) => {
                self.agents[i as usize] = AgentSlot {
                    name: name.clone(),
                    count: 0,
                };
                i
            }
            None => {
                self.agents.push(AgentSlot {
                    name: name.clone(),
                    count: 0,
                });
                (self.agents.len() - 1) as u32
            }
        };
        self.index.insert(name, i);
        i
    }

    fn insert(&mut self, fp: u64, agent: &str, expiry: u32) {
        let a = self.agent_slot(agent);
        self.agents[a as usize].count += 1;
        self.map.insert(fp, Slot { agent: a, expiry });
        let w = self.slot_of(expiry);
        self.wheel[w].push(fp);
    }

    fn heap_bytes(&self) -> usize {
        let map = table_bytes(self.map.capacity(), size_of::<(u64, Slot)>());
        let index = table_bytes(self.index.capacity(), size_of::<(Box<str>, u32)>())
            + self.index.keys().map(|k| k.len()).sum::<usize>();
        let wheel = self.wheel.len() * size_of::<Vec<u64>>()
            + self.wheel.iter().map(|v| v.capacity() * 8).sum::<usize>();
        map + index
            + wheel
            + self.agents.capacity() * size_of::<AgentSlot>()
            + self.free.capacity() * 4
            + self.pending.capacity()
    }
}

fn release(
    agents: &mut [AgentSlot],
    index: &mut HashMap<Box<str>, u32>,
    free: &mut Vec<u32>,
    agent: u32,
) {
    let a = &mut agents[agent as usize];
    a.count -= 1;
    if a.count == 0 {
        let name = std::mem::take(&mut a.name);
        index.remove(&name);
        free.push(agent);
    }
}

/// A wheel slot keeps its allocation for the next turn up to this many entries.
const WHEEL_SLOT_KEEP: usize = 4096;

/// Bytes hashbrown allocates for a table of `capacity` entries of `entry` bytes.
fn table_bytes(capacity: usize, entry: usize) -> usize {
    if capacity == 0 {
        return 0;
    }
    let buckets = if capacity < 8 {
        capacity + 1
    } else {
        capacity / 7 * 8
    };
    buckets * entry + buckets + 16
}

/// The nonce store. Share it behind an `Arc`.
pub struct NonceStore {
    config: NonceConfig,
    keys: RandomState,
    shards: Box<[Mutex<Shard>]>,
    total: AtomicUsize,
    /// Agents holding at least one nonce (the fair share's denominator).
    holders: AtomicUsize,
    journal: Option<Mutex<Journal>>,
    journal_failing: AtomicBool,
    /// The latest second seen: time as the store sees it never goes back.
    high_water_s: AtomicI64,
    /// The journal's floor when it was opened (`i64::MIN` without a journal):
    /// an earlier run may have deleted nonces with timestamps below it. Deleting
    /// in this run raises the floor on disk only to below the window's lower
    /// edge, which the window check already refuses, so the opening value is
    /// the one that matters.
    floor_s: i64,
    clock: SharedClock,
}

impl std::fmt::Debug for NonceStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NonceStore")
            .field("config", &self.config)
            .field("len", &self.len())
            .field("persistent", &self.journal.is_some())
            .finish_non_exhaustive()
    }
}

impl NonceStore {
    fn build(config: NonceConfig, clock: SharedClock, journal: Option<Journal>) -> Result<Self> {
        let floor_s = journal.as_ref().map_or(i64::MIN, Journal::floor_s);
        if config.shards == 0 || config.capacity == 0 || config.per_agent_capacity == 0 {
            return Err(Error::InvalidConfig(
                "nonce shards and capacities must be positive",
            ));
        }
        if config.segment_span_s <= 0 {
            return Err(Error::InvalidConfig("segment_span_s must be positive"));
        }
        let wheel_len = 2 * config.window_s as usize + 2;
        Ok(NonceStore {
            config,
            keys: RandomState::new(),
            shards: (0..config.shards)
                .map(|_| Mutex::new(Shard::new(wheel_len)))
                .collect(),
            total: AtomicUsize::new(0),
            holders: AtomicUsize::new(0),
            journal: journal.map(Mutex::new),
            journal_failing: AtomicBool::new(false),
            high_water_s: AtomicI64::new(i64::MIN),
            floor_s,
            clock,
        })
    }

    /// A store that lives in memory only (a restart forgets every nonce: for tests
    /// and benchmarks).
    pub fn in_memory(config: NonceConfig, clock: SharedClock) -> Result<Self> {
        Self::build(config, clock, None)
    }

    /// A store persisted in `dir` (created if needed): the nonces of unexpired
    /// journal segments are loaded, and accepted nonces are appended to the journal
    /// by [`flush`](Self::flush) (run it with a [`NonceFlusher`](crate::NonceFlusher)).
    ///
    /// Expiry is judged by this store's window, whatever the window of the run
    /// that wrote the journal; a request signed before the journal's floor (above
    /// every nonce an earlier run deleted) is refused as [`NonceRefusal::Stale`].
    pub fn open(dir: impl AsRef<Path>, config: NonceConfig, clock: SharedClock) -> Result<Self> {
        Self::open_after(dir, config, clock, false)
    }

    /// [`open`](Self::open), told whether any request can have been accepted
    /// before (`false` for a deployment whose event log is empty: no agent
    /// existed to sign one). A journal directory without a floor then starts
    /// without one; otherwise such a directory is taken for one an earlier
    /// version wrote (or one lost or never restored with its store), and the
    /// open time becomes its floor.
    pub fn open_after(
        dir: impl AsRef<Path>,
        config: NonceConfig,
        clock: SharedClock,
        none_accepted_before: bool,
    ) -> Result<Self> {
        let now_s = clock.now().unix_secs();
        let (journal, records) = Journal::open(
            dir.as_ref(),
            now_s,
            config.window_s,
            config.segment_span_s,
            none_accepted_before,
        )?;
        let store = Self::build(config, clock, Some(journal))?;
        for r in records {
            store.insert_loaded(&r, now_s);
        }
        Ok(store)
    }

    fn shard_of(&self, agent: &str) -> &Mutex<Shard> {
        self.locate(agent, "").0
    }

    /// The shard of `agent` and the fingerprint of `(agent, nonce)`, hashing the
    /// agent id once.
    fn locate(&self, agent: &str, nonce: &str) -> (&Mutex<Shard>, u64) {
        let h = self.keys.hash_one(agent);
        let shard = &self.shards[(h % self.shards.len() as u64) as usize];
        (shard, self.keys.hash_one((h, nonce)))
    }

    /// Expiry second of a nonce with timestamp `ts_s`, as stored (u32 Unix
    /// seconds: the store works until the year 2106).
    fn expiry(&self, ts_s: i64, now_s: i64) -> u32 {
        let e = ts_s
            .saturating_add(i64::from(self.config.window_s))
            .max(now_s);
        e.clamp(0, i64::from(u32::MAX)) as u32
    }

    /// The current second as the store sees it: the latest of `now` and every
    /// time seen before. The verifier checks the window against this, so a clock
    /// stepping back cannot make a forgotten nonce acceptable again: a nonce is
    /// forgotten only once this time passed its expiry, and from then on its
    /// timestamp is outside the window.
    pub fn effective_now_s(&self, now: Timestamp) -> i64 {
        let now_s = now.unix_secs();
        self.high_water_s
            .fetch_max(now_s, Ordering::AcqRel)
            .max(now_s)
    }

    /// Records `nonce` for `agent` (timestamp `ts_s`, already checked to be inside
    /// the window at [`effective_now_s`](Self::effective_now_s)), or refuses it.
    pub fn check_and_insert(
        &self,
        agent: &str,
        nonce: &str,
        ts_s: i64,
        now: Timestamp,
    ) -> Result<(), NonceRefusal> {
        if agent.len() > 64 || nonce.len() > crate::headers::MAX_NONCE_LEN {
            return Err(NonceRefusal::Malformed);
        }
        let now_s = self.effective_now_s(now);
        let (shard, fp) = self.locate(agent, nonce);
        let expiry = self.expiry(ts_s, now_s);
        let need_flush = {
            let mut shard = shard.lock();
            self.sweep(&mut shard, now_s);
            // Every nonce expiring before `swept_to` is forgotten (by this sweep
            // or a later one that got the lock first): a timestamp that old is
            // outside the window now, whatever the verifier saw before.
            // Below the floor, an earlier run may have deleted the nonce.
            let horizon = shard.swept_to.max(now_s);
            if ts_s < self.floor_s || ts_s.saturating_add(i64::from(self.config.window_s)) < horizon
            {
                return Err(NonceRefusal::Stale);
            }
            if shard.map.contains_key(&fp) {
                return Err(NonceRefusal::Replayed);
            }
            let count = shard
                .index
                .get(agent)
                .map_or(0, |&i| shard.agents[i as usize].count);
            if count >= self.config.per_agent_capacity {
                return Err(NonceRefusal::Unavailable(Unavailable::AgentNoncesFull));
            }
            if self.journal.is_some() && self.journal_failing.load(Ordering::Relaxed) {
                return Err(NonceRefusal::Unavailable(Unavailable::NonceJournalFailing));
            }
            let total = self.total.fetch_add(1, Ordering::Relaxed);
            if total >= self.config.capacity {
                // Full: only an agent below its fair share gets in, and never
                // past twice the capacity.
                let fair = self.config.capacity / self.holders.load(Ordering::Relaxed).max(1);
                if count as usize >= fair || total >= self.config.capacity.saturating_mul(2) {
                    self.total.fetch_sub(1, Ordering::Relaxed);
                    return Err(NonceRefusal::Unavailable(Unavailable::NoncesFull));
                }
            }
            self.insert(&mut shard, fp, agent, expiry);
            if self.journal.is_some() {
                // The timestamp, not the expiry: a later run with another
                // window computes the expiry by its own.
                journal::encode(&mut shard.pending, agent, nonce, ts_s);
                shard.pending_records += 1;
                shard.pending_records >= self.config.max_unflushed_per_shard
            } else {
                false
            }
        };
        if need_flush {
            // A failure sets `journal_failing`, which refuses further nonces until
            // a flush succeeds: this request is already accepted.
            let _ = self.flush();
        }
        Ok(())
    }

    /// Inserts a nonce loaded from the journal, whatever the capacity: forgetting
    /// it could let a replay through. Its expiry is by this store's window.
    fn insert_loaded(&self, r: &Record, now_s: i64) {
        self.high_water_s.fetch_max(now_s, Ordering::AcqRel);
        let expiry = r.ts.saturating_add(i64::from(self.config.window_s));
        if expiry < now_s {
            return;
        }
        let (shard, fp) = self.locate(&r.agent, &r.nonce);
        let expiry = expiry.clamp(0, i64::from(u32::MAX)) as u32;
        let mut shard = shard.lock();
        self.sweep(&mut shard, now_s);
        if shard.map.contains_key(&fp) {
            return;
        }
        self.insert(&mut shard, fp, &r.agent, expiry);
        self.total.fetch_add(1, Ordering::Relaxed);
    }

    /// Sweeps `shard` to `now_s`, keeping the totals.
    fn sweep(&self, shard: &mut Shard, now_s: i64) {
        let holders = shard.index.len();
        let removed = shard.sweep(now_s);
        if removed > 0 {
            self.total.fetch_sub(removed, Ordering::Relaxed);
            self.holders
                .fetch_sub(holders - shard.index.len(), Ordering::Relaxed);
        }
    }

    /// Inserts into `shard`, counting a new holder (`total` is the caller's).
    fn insert(&self, shard: &mut Shard, fp: u64, agent: &str, expiry: u32) {
        let holders = shard.index.len();
        shard.insert(fp, agent, expiry);
        if shard.index.len() > holders {
            self.holders.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Forgets expired nonces in every shard (inserts do this for their own shard).
    pub fn purge_expired(&self, now: Timestamp) {
        let now_s = self.effective_now_s(now);
        for s in self.shards.iter() {
            self.sweep(&mut s.lock(), now_s);
        }
    }

    /// Writes the nonces accepted since the last flush to the journal and syncs
    /// it; deletes segments whose nonces all expired. Without a journal, does nothing.
    pub fn flush(&self) -> Result<()> {
        let Some(journal) = &self.journal else {
            return Ok(());
        };
        let mut j = journal.lock();
        let mut payload = j.take_retry();
        for s in self.shards.iter() {
            let mut shard = s.lock();
            payload.extend_from_slice(&shard.pending);
            shard.pending.clear();
            if shard.pending.capacity() > 1 << 20 {
                shard.pending.shrink_to(1 << 16);
            }
            shard.pending_records = 0;
        }
        // By the store's time, the one the window is checked against: the floor
        // a deletion raises stays below the window's lower edge.
        let result = j.write(payload, self.effective_now_s(self.clock.now()));
        self.journal_failing
            .store(result.is_err(), Ordering::Relaxed);
        result
    }

    /// Whether the journal's last write failed (new nonces are refused until a
    /// flush succeeds).
    pub fn journal_failing(&self) -> bool {
        self.journal_failing.load(Ordering::Relaxed)
    }

    /// Nonces remembered.
    pub fn len(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }

    /// Whether no nonce is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Nonces remembered for `agent`.
    pub fn agent_len(&self, agent: &str) -> usize {
        let shard = self.shard_of(agent).lock();
        shard
            .index
            .get(agent)
            .map_or(0, |&i| shard.agents[i as usize].count as usize)
    }

    /// Heap bytes held by the in-memory structures, computed from their
    /// allocated capacities (a test checks it against a counting allocator).
    pub fn heap_bytes(&self) -> usize {
        self.shards.iter().map(|s| s.lock().heap_bytes()).sum()
    }

    /// The limits in force.
    pub fn config(&self) -> &NonceConfig {
        &self.config
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lighthouse_event_store::ManualClock;
    use std::sync::Arc;

    const T0: i64 = 1_790_000_000;

    fn store(config: NonceConfig) -> NonceStore {
        let clock = ManualClock::new(Timestamp::from_unix_secs(T0));
        NonceStore::in_memory(config, Arc::new(clock)).unwrap()
    }

    fn at(s: i64) -> Timestamp {
        Timestamp::from_unix_secs(s)
    }

    #[test]
    fn concurrent_submissions_of_one_nonce_accept_exactly_one() {
        let store = Arc::new(store(NonceConfig::default()));
        let accepted: usize = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    let store = store.clone();
                    scope.spawn(move || {
                        (0..2000)
                            .filter(|i| {
                                let nonce = format!("race-nonce-{i:08}");
                                store.check_and_insert("alice", &nonce, T0, at(T0)).is_ok()
                            })
                            .count()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(accepted, 2000);
        assert_eq!(store.len(), 2000);
    }

    #[test]
    fn expiry_is_inclusive_and_agent_slots_are_reused() {
        let s = store(NonceConfig::default());
        s.check_and_insert("alice", "nonce-expiry-00001", T0, at(T0))
            .unwrap();
        // Kept through second T0 + 300 (a request with timestamp T0 is still
        // inside the window then), forgotten after.
        assert_eq!(
            s.check_and_insert("alice", "nonce-expiry-00001", T0, at(T0 + 300)),
            Err(NonceRefusal::Replayed)
        );
        s.purge_expired(at(T0 + 301));
        assert_eq!(s.len(), 0);
        assert_eq!(s.agent_len("alice"), 0);
        let shard = s.shard_of("alice").lock();
        assert!(shard.index.is_empty());
        assert_eq!(shard.free.len(), 1);
    }

    #[test]
    fn a_nonce_forgotten_while_its_request_was_verified_is_not_a_fresh_one() {
        let s = store(NonceConfig::default());
        s.check_and_insert("alice", "nonce-edge-000001", T0, at(T0))
            .unwrap();
        // The verifier checked the window at T0 + 300 (still inside); before the
        // nonce is looked up, another request moves the store's time on and the
        // sweep forgets the first use.
        s.purge_expired(at(T0 + 301));
        assert_eq!(
            s.check_and_insert("alice", "nonce-edge-000001", T0, at(T0 + 300)),
            Err(NonceRefusal::Stale)
        );
        // A timestamp still inside the window at the store's time is fine.
        assert_eq!(
            s.check_and_insert("alice", "nonce-edge-000002", T0 + 1, at(T0 + 300)),
            Ok(())
        );
    }

    #[test]
    fn a_full_store_still_admits_agents_below_their_fair_share() {
        let s = store(NonceConfig {
            capacity: 4,
            per_agent_capacity: 8,
            ..NonceConfig::default()
        });
        let full = Err(NonceRefusal::Unavailable(Unavailable::NoncesFull));
        let mut n = 0;
        let mut next = |agent: &str| {
            n += 1;
            s.check_and_insert(agent, &format!("nonce-fair-{n:06}"), T0, at(T0))
        };
        for _ in 0..4 {
            next("alice").unwrap();
        }
        // The store is full, all of it alice's: bob (holding nothing) gets in.
        assert_eq!(next("bob"), Ok(()));
        // Two holders, a fair share of 2: alice is past it, bob is not.
        assert_eq!(next("alice"), full);
        assert_eq!(next("bob"), Ok(()));
        assert_eq!(next("bob"), full);
        assert_eq!(next("carol"), Ok(()));
        // Three holders, a fair share of 1.
        assert_eq!(next("carol"), full);
        assert_eq!(next("dave"), Ok(()));
        // Twice the capacity is the hard bound, whatever the share.
        assert_eq!(s.len(), 8);
        assert_eq!(next("erin"), full);
        // Expiry forgets the holders with their nonces.
        s.purge_expired(at(T0 + 301));
        assert_eq!((s.len(), s.holders.load(Ordering::Relaxed)), (0, 0));
    }

    #[test]
    fn oversized_input_is_refused_without_touching_the_store() {
        let s = store(NonceConfig::default());
        let long = "n".repeat(65);
        assert_eq!(
            s.check_and_insert("alice", &long, T0, at(T0)),
            Err(NonceRefusal::Malformed)
        );
        assert_eq!(
            s.check_and_insert(&"a".repeat(65), "nonce-0000000001", T0, at(T0)),
            Err(NonceRefusal::Malformed)
        );
        assert!(s.is_empty());
    }

    #[test]
    fn a_large_jump_in_time_sweeps_everything_once() {
        let s = store(NonceConfig::default());
        for i in 0..100 {
            let ts = T0 - 300 + i * 6;
            s.check_and_insert("alice", &format!("nonce-jump-{i:06}"), ts, at(T0))
                .unwrap();
        }
        s.purge_expired(at(T0 + 100_000));
        assert!(s.is_empty());
        s.check_and_insert("alice", "nonce-jump-000000", T0 + 100_000, at(T0 + 100_000))
            .unwrap();
        assert_eq!(s.len(), 1);
    }
}
