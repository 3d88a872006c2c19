//! [`FlagSet`]: an immutable snapshot of every flag, compiled for evaluation.
//!
//! A set is built once per change and never modified, so readers share it
//! through an `ArcSwap` without locks. Building checks the prerequisite graph:
//! every required flag exists, there is no cycle, and no flag depends on more
//! flags (transitively) than the limit. Each flag's transitive prerequisites
//! are computed here once, so an evaluation checks a flat list instead of
//! walking the graph.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use crate::bucket::{BUCKET_SEED, BUCKETS, Murmur3, VARIANT_SEED, VARIANT_SLOTS};
use crate::error::{Error, Result};
use crate::limits::Limits;
use crate::model::Flag;
use crate::variant_name::VariantName;

/// A flag with its compiled rule and the log position of its last change.
#[derive(Debug, Clone)]
pub(crate) struct Record {
    pub(crate) flag: Arc<Flag>,
    pub(crate) rule: Arc<Rule>,
    /// `seq` of the event that produced this state (0 for sets built directly
    /// from flags, outside a store).
    pub(crate) seq: u64,
    /// The flag's size as JSON, as `GET` returns it: its share of
    /// [`FlagSet::total_bytes`], measured once when the record is made.
    pub(crate) bytes: usize,
}

impl Record {
    pub(crate) fn new(flag: Flag, seq: u64) -> Result<Self> {
        let rule = Arc::new(Rule::compile(&flag)?);
        let bytes = lighthouse_event_store::json_size(&flag);
        Ok(Record {
            flag: Arc::new(flag),
            rule,
            seq,
            bytes,
        })
    }
}

/// The scalar part of a flag's own conditions, copied into each snapshot entry
/// so that an evaluation (and each prerequisite check) reads one contiguous
/// entry and follows no pointer unless the flag has targeting lists or variants.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Gate {
    pub(crate) killed: bool,
    pub(crate) enabled: bool,
    /// `allow` or `deny` is not empty.
    pub(crate) targeted: bool,
    pub(crate) has_variants: bool,
    /// `round(rollout_percent * 100)`: a bucket below it is on.
    pub(crate) threshold: u32,
    /// Hash states after `"<key>:"` for the bucket and the variant seed, so an
    /// evaluation hashes only the agent id.
    bucket_prefix: Murmur3,
    variant_prefix: Murmur3,
}

impl Gate {
    /// `murmur3_x86_32("<key>:<agent>", 0) % 10000`.
    #[inline]
    pub(crate) fn bucket(&self, agent: &str) -> u32 {
        self.bucket_prefix.finish_with(agent.as_bytes()) % BUCKETS
    }

    /// `murmur3_x86_32("<key>:<agent>", 86028157) % 1000`.
    #[inline]
    pub(crate) fn variant_slot(&self, agent: &str) -> u32 {
        self.variant_prefix.finish_with(agent.as_bytes()) % VARIANT_SLOTS
    }
}

/// A flag's own conditions in the form evaluation wants: the [`Gate`],
/// targeting lists as hash sets, cumulative variant weights.
#[derive(Debug)]
pub(crate) struct Rule {
    pub(crate) gate: Gate,
    allow: AgentSet,
    deny: AgentSet,
    /// Running sums of the variant weights; a slot below entry `i` (and not below
    /// entry `i - 1`) selects variant `i`.
    pub(crate) cumulative: Box<[u32]>,
    pub(crate) variant_names: Box<[VariantName]>,
}

impl Rule {
    /// Compiles `flag`; refuses a variant name longer than 64 bytes (the only
    /// field rule compilation depends on; writes check every rule before).
    fn compile(flag: &Flag) -> Result<Rule> {
        let set =
            |list: &[String]| -> AgentSet { list.iter().map(|s| Box::from(s.as_str())).collect() };
        let mut sum = 0u32;
        let cumulative = flag
            .variants
            .iter()
            .map(|v| {
                sum = sum.saturating_add(v.weight);
                sum
            })
            .collect();
        let variant_names = flag
            .variants
            .iter()
            .enumerate()
            .map(|(i, v)| {
                VariantName::new(&v.name).ok_or_else(|| {
                    Error::invalid(format!("/variants/{i}/name"), "is longer than 64 bytes")
                })
            })
            .collect::<Result<_>>()?;
        Ok(Rule {
            gate: Gate {
                killed: flag.killed,
                enabled: flag.enabled,
                targeted: !flag.allow.is_empty() || !flag.deny.is_empty(),
                has_variants: !flag.variants.is_empty(),
                threshold: u32::from(flag.rollout_percent.basis_points()).min(BUCKETS),
                bucket_prefix: Murmur3::new(BUCKET_SEED).key_prefix(&flag.key),
                variant_prefix: Murmur3::new(VARIANT_SEED).key_prefix(&flag.key),
            },
            allow: set(&flag.allow),
            deny: set(&flag.deny),
            cumulative,
            variant_names,
        })
    }

    #[inline]
    pub(crate) fn allows(&self, agent: &str) -> bool {
        !self.allow.is_empty() && self.allow.contains(agent)
    }

    #[inline]
    pub(crate) fn denies(&self, agent: &str) -> bool {
        !self.deny.is_empty() && self.deny.contains(agent)
    }
}

#[derive(Debug)]
pub(crate) struct Entry {
    /// A copy of `rule.gate`.
    pub(crate) gate: Gate,
    pub(crate) flag: Arc<Flag>,
    pub(crate) rule: Arc<Rule>,
    pub(crate) seq: u64,
    pub(crate) bytes: usize,
    /// Indices of every flag this one depends on, directly or indirectly, each once.
    pub(crate) closure: Box<[usize]>,
}

/// An immutable, evaluable snapshot of all flags.
///
/// Obtain one from [`FlagStore::snapshot`](crate::FlagStore::snapshot), or build
/// one directly with [`FlagSet::from_flags`] (tests, benchmarks, tools).
#[derive(Debug, Default)]
pub struct FlagSet {
    index: KeyIndex,
    /// Sorted by key.
    entries: Vec<Entry>,
    /// Sum of the entries' `bytes`, kept as sets are derived from each other
    /// (see [`FlagSet::with`]) rather than summed again per write.
    total_bytes: usize,
}

impl FlagSet {
    /// A set without flags: every evaluation is `not_found`.
    pub fn empty() -> Self {
        FlagSet::default()
    }

    /// A set of `flags` (a later flag with the same key replaces an earlier one).
    /// Checks the prerequisite graph against `limits` (existence, cycles,
    /// [`Limits::max_prerequisites`]); it does not check the fields of each flag,
    /// which [`FlagSpec::check`](crate::FlagSpec::check) does on writes.
    pub fn from_flags(flags: impl IntoIterator<Item = Flag>, limits: &Limits) -> Result<FlagSet> {
        let by_key: BTreeMap<String, Flag> =
            flags.into_iter().map(|f| (f.key.clone(), f)).collect();
        let records = by_key
            .into_values()
            .map(|f| Record::new(f, 0))
            .collect::<Result<_>>()?;
        FlagSet::build(records, limits.max_prerequisites)
    }

    /// The flag `key`.
    pub fn get(&self, key: &str) -> Option<&Arc<Flag>> {
        self.entry(key).map(|e| &e.flag)
    }

    /// Every flag, sorted by key.
    pub fn flags(&self) -> impl ExactSizeIterator<Item = &Arc<Flag>> {
        self.entries.iter().map(|e| &e.flag)
    }

    /// Number of flags.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no flags.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes of every flag together as JSON, each as `GET` returns it (what
    /// [`Limits::max_total_flag_bytes`] bounds). `GET /v1/flags` is this plus
    /// one comma per flag and the enclosing object.
    pub fn total_bytes(&self) -> usize {
        self.total_bytes
    }

    #[inline]
    pub(crate) fn entry(&self, key: &str) -> Option<&Entry> {
        let &i = self.index.get(key)?;
        self.entries.get(i)
    }

    #[inline]
    pub(crate) fn entry_at(&self, i: usize) -> &Entry {
        // Closure indices are produced by `build` for this very vector.
        &self.entries[i]
    }

    pub(crate) fn record(&self, key: &str) -> Option<Record> {
        self.entry(key).map(|e| Record {
            flag: e.flag.clone(),
            rule: e.rule.clone(),
            seq: e.seq,
            bytes: e.bytes,
        })
    }

    /// Every flag with its rule and position, sorted by key.
    pub(crate) fn records(&self) -> impl Iterator<Item = Record> + '_ {
        self.entries.iter().map(|e| Record {
            flag: e.flag.clone(),
            rule: e.rule.clone(),
            seq: e.seq,
            bytes: e.bytes,
        })
    }

    /// Records the log position of the flag `key` (known only after its append).
    pub(crate) fn set_seq(&mut self, key: &str, seq: u64) {
        if let Some(&i) = self.index.get(key)
            && let Some(e) = self.entries.get_mut(i)
        {
            e.seq = seq;
        }
    }

    /// The total bytes with `record` added or replacing the flag of the same
    /// key (the old flag's size out, the new one's in): what
    /// [`with`](Self::with) would hold, without building it.
    pub(crate) fn total_with(&self, record: &Record) -> usize {
        let old = self.entry(&record.flag.key).map_or(0, |e| e.bytes);
        self.total_bytes
            .saturating_sub(old)
            .saturating_add(record.bytes)
    }

    /// This set with `record` added or replacing the flag of the same key.
    /// Checks that every prerequisite exists and that there is no cycle, but not
    /// the number of prerequisites: see
    /// [`check_prerequisite_growth`](Self::check_prerequisite_growth).
    pub(crate) fn with(&self, record: Record) -> Result<FlagSet> {
        let total = self.total_with(&record);
        let mut records: Vec<Record> = self
            .records()
            .filter(|r| r.flag.key != record.flag.key)
            .collect();
        records.push(record);
        FlagSet::build_with_total(records, usize::MAX, total)
    }

    /// Refuses this set, derived from `old` by a write of flag `written`, when
    /// a flag depends on more than `limit` flags and on more than it did in
    /// `old` (a new flag: on none). A flag already over the limit (a log
    /// written under a larger one) that the write leaves as large, or shrinks,
    /// is no reason to refuse: otherwise, once two flags are over a lowered
    /// limit, neither could be fixed. The written flag is named first when it
    /// is one of those that grew, else the first by key.
    pub(crate) fn check_prerequisite_growth(
        &self,
        old: &FlagSet,
        written: &str,
        limit: usize,
    ) -> Result<()> {
        let grew = |e: &Entry| {
            e.closure.len() > limit
                && e.closure.len() > old.entry(&e.flag.key).map_or(0, |o| o.closure.len())
        };
        let offender = self
            .entry(written)
            .filter(|e| grew(e))
            .or_else(|| self.entries.iter().find(|e| grew(e)));
        match offender {
            None => Ok(()),
            Some(e) => Err(Error::TooManyPrerequisites {
                key: e.flag.key.clone(),
                count: e.closure.len(),
                limit,
            }),
        }
    }

    /// Builds a set from records with distinct keys.
    pub(crate) fn build(records: Vec<Record>, max_prerequisites: usize) -> Result<FlagSet> {
        let total = records
            .iter()
            .fold(0usize, |sum, r| sum.saturating_add(r.bytes));
        FlagSet::build_with_total(records, max_prerequisites, total)
    }

    /// [`build`](Self::build) with the records' total bytes already known.
    fn build_with_total(
        mut records: Vec<Record>,
        max_prerequisites: usize,
        total_bytes: usize,
    ) -> Result<FlagSet> {
        records.sort_unstable_by(|a, b| a.flag.key.cmp(&b.flag.key));
        let index: KeyIndex = records
            .iter()
            .enumerate()
            .map(|(i, r)| (Box::from(r.flag.key.as_str()), i))
            .collect();
        let mut children = Vec::with_capacity(records.len());
        for r in &records {
            let mut direct = Vec::with_capacity(r.flag.requires.len());
            for req in &r.flag.requires {
                match index.get(req.as_str()) {
                    Some(&i) => direct.push(i),
                    None => {
                        return Err(Error::UnknownPrerequisite {
                            key: r.flag.key.clone(),
                            missing: req.clone(),
                        });
                    }
                }
            }
            children.push(direct);
        }
        let order = post_order(&children, |i| records[i].flag.key.clone())?;
        let mut closures: Vec<Box<[usize]>> = vec![Box::default(); records.len()];
        for node in order {
            let mut all: Vec<usize> = Vec::new();
            for &c in &children[node] {
                all.push(c);
                all.extend_from_slice(&closures[c]);
            }
            all.sort_unstable();
            all.dedup();
            if all.len() > max_prerequisites {
                return Err(Error::TooManyPrerequisites {
                    key: records[node].flag.key.clone(),
                    count: all.len(),
                    limit: max_prerequisites,
                });
            }
            closures[node] = all.into_boxed_slice();
        }
        let entries = records
            .into_iter()
            .zip(closures)
            .map(|(r, closure)| Entry {
                gate: r.rule.gate,
                flag: r.flag,
                rule: r.rule,
                seq: r.seq,
                bytes: r.bytes,
                closure,
            })
            .collect();
        Ok(FlagSet {
            index,
            entries,
            total_bytes,
        })
    }
}

/// Flag key to position. Keys are chosen by operators and lookups never insert,
/// so a fast non-keyed hash is safe here and saves most of the lookup cost.
type KeyIndex = HashMap<Box<str>, usize, BuildHasherDefault<KeyHasher>>;

/// Agent ids of a targeting list; chosen by operators, like flag keys.
type AgentSet = HashSet<Box<str>, BuildHasherDefault<KeyHasher>>;

/// The FxHash function (rustc's): a multiply-rotate over 8-byte words.
#[derive(Default, Clone, Copy)]
struct KeyHasher(u64);

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl KeyHasher {
    #[inline(always)]
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for KeyHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes([
                c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7],
            ]));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut last = [0u8; 8];
            last[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(last));
        }
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

/// Every node in an order where each comes after all it depends on; or the first
/// cycle found, as keys from a node back to itself. Iterative, so a long chain
/// cannot overflow the stack.
fn post_order(children: &[Vec<usize>], key: impl Fn(usize) -> String) -> Result<Vec<usize>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    let mut mark = vec![Mark::New; children.len()];
    let mut order = Vec::with_capacity(children.len());
    for root in 0..children.len() {
        if mark[root] != Mark::New {
            continue;
        }
        // (node, index of the next child to visit)
        let mut stack = vec![(root, 0usize)];
        mark[root] = Mark::Open;
        while let Some(top) = stack.last_mut() {
            let (node, next) = *top;
            if let Some(&child) = children[node].get(next) {
                top.1 += 1;
                match mark[child] {
                    Mark::New => {
                        mark[child] = Mark::Open;
                        stack.push((child, 0));
                    }
                    Mark::Open => {
                        let from = stack.iter().position(|&(n, _)| n == child).unwrap_or(0);
                        let mut path: Vec<String> =
                            stack[from..].iter().map(|&(n, _)| key(n)).collect();
                        path.push(key(child));
                        return Err(Error::PrerequisiteCycle { path });
                    }
                    Mark::Done => {}
                }
            } else {
                mark[node] = Mark::Done;
                order.push(node);
                stack.pop();
            }
        }
    }
    Ok(order)
}

#[cfg(test)]
#[path = "set_tests.rs"]
mod tests;
