//! [`FlagStore`]: the flags of stream `$flags`, with lock-free evaluation.
//!
//! Writes are serialized by an async mutex, validated against the current
//! snapshot, appended to `$flags` with the stream's exact expected version, and
//! only then published by swapping in a new immutable [`FlagSet`]. Reads never
//! lock (see `published.rs`): a change is visible to every evaluation that starts
//! after the write returned.

use std::collections::HashMap;
use std::sync::Arc;

use lighthouse_event_store::{EventStore, ExpectedVersion, NewEvent, SharedClock, SystemClock};
use tokio::sync::Mutex;

use crate::change::{self, ChangePayload, FlagChange, STREAM};
use crate::error::{Error, Result};
use crate::eval::Evaluation;
use crate::limits::Limits;
use crate::model::{Flag, FlagSpec};
use crate::published::Published;
use crate::replay::replay;
use crate::set::{FlagSet, Record};
use crate::write::{Attribution, Decision, Op, WriteOutcome, decide};

/// How many times a write re-reads `$flags` and retries after another writer
/// appended to it concurrently.
const MAX_ATTEMPTS: u32 = 3;

/// Configuration of a [`FlagStore`].
#[derive(Clone)]
pub struct FlagStoreOptions {
    limits: Limits,
    clock: SharedClock,
}

impl Default for FlagStoreOptions {
    fn default() -> Self {
        FlagStoreOptions {
            limits: Limits::default(),
            clock: Arc::new(SystemClock),
        }
    }
}

impl std::fmt::Debug for FlagStoreOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlagStoreOptions")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl FlagStoreOptions {
    /// Default limits and the system clock.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the limits.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Sets the clock that stamps `updated_at`.
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }
}

/// The flags, kept on stream `$flags` of an [`EventStore`]. Cheap to clone; every
/// clone is the same store. It must be the only writer of `$flags` in its process;
/// another writer (another process on a copy, or a second `FlagStore` on the same
/// event store) is detected through the stream's version and caught up with.
#[derive(Clone)]
pub struct FlagStore {
    inner: Arc<Inner>,
}

struct Inner {
    events: EventStore,
    clock: SharedClock,
    limits: Limits,
    current: Published,
    /// Serializes writes; holds the last version of `$flags` this store applied.
    writer: Mutex<Option<u64>>,
    /// The seq of every change of each flag, by version (version `v` at index
    /// `v - 1`): a history page reads just its changes, however deep it is.
    chains: std::sync::Mutex<HashMap<String, Vec<u64>>>,
}

impl std::fmt::Debug for FlagStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlagStore")
            .field("flags", &self.inner.current.load().len())
            .finish_non_exhaustive()
    }
}

impl FlagStore {
    /// Opens the flags of `events`: replays stream `$flags` from the start and
    /// builds the first snapshot. Fails with [`Error::CorruptLog`] when an event
    /// cannot be applied.
    pub fn open(events: EventStore, options: FlagStoreOptions) -> Result<FlagStore> {
        let mut chains = HashMap::new();
        let (set, version) = replay(
            &events,
            &FlagSet::empty(),
            None,
            &mut chains,
            options.limits.max_replay_page_bytes,
        )?;
        Ok(FlagStore {
            inner: Arc::new(Inner {
                events,
                clock: options.clock,
                limits: options.limits,
                current: Published::new(set),
                writer: Mutex::new(version),
                chains: std::sync::Mutex::new(chains),
            }),
        })
    }

    /// Evaluates flag `key` for `agent` against the current snapshot
    /// (see [`FlagSet::evaluate`]). Lock-free.
    #[inline]
    pub fn evaluate(&self, key: &str, agent: &str) -> Result<Evaluation> {
        self.inner.current.with(|set| set.evaluate(key, agent))
    }

    /// Whether flag `key` is on for `agent` (`false` for an unknown flag or an
    /// invalid agent id). Lock-free.
    #[inline]
    pub fn is_enabled(&self, key: &str, agent: &str) -> bool {
        self.inner.current.with(|set| set.is_enabled(key, agent))
    }

    /// The current snapshot: consistent across several evaluations.
    pub fn snapshot(&self) -> Arc<FlagSet> {
        self.inner.current.load_full()
    }

    /// The flag `key`.
    pub fn get(&self, key: &str) -> Option<Arc<Flag>> {
        self.inner.current.load().get(key).cloned()
    }

    /// Every flag, sorted by key.
    pub fn list(&self) -> Vec<Arc<Flag>> {
        self.inner.current.load().flags().cloned().collect()
    }

    /// Bytes of every flag together as JSON (see [`FlagSet::total_bytes`]).
    pub fn total_bytes(&self) -> usize {
        self.inner.current.load().total_bytes()
    }

    /// The configured limits.
    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    /// Writes (this, [`kill`](Self::kill), [`unkill`](Self::unkill)) must be
    /// called within a Tokio runtime: each runs as its own task.
    ///
    /// Creates or replaces flag `key` with `spec` (`PUT /v1/flags/{key}`). The
    /// kill switch is kept as it is. With `expected_version`, succeeds only if
    /// the flag's version is that number (`0`: the flag must not exist yet),
    /// else [`Error::VersionConflict`]. Refuses invalid fields
    /// ([`Error::Invalid`]), unknown prerequisites, cycles, more flags than
    /// [`Limits::max_flags`], and a flag that would grow the flags past
    /// [`Limits::max_total_flag_bytes`] ([`Error::Invalid`] on the flag, `""`).
    pub async fn put(
        &self,
        key: &str,
        spec: &FlagSpec,
        expected_version: Option<u64>,
        by: &Attribution,
    ) -> Result<WriteOutcome> {
        let percent = spec.check(key, &self.inner.limits)?;
        let op = Op::Put {
            spec: spec.clone(),
            percent,
            expected_version,
        };
        self.spawn_write(key, op, by).await
    }

    /// Sets the kill switch of flag `key`: off for every agent, whatever else it
    /// says. [`Error::NotFound`] when the flag does not exist. With
    /// `expected_version`, succeeds only if the flag's version is that number
    /// (checked atomically with the change, and also when the flag is killed
    /// already), else [`Error::VersionConflict`].
    pub async fn kill(
        &self,
        key: &str,
        expected_version: Option<u64>,
        by: &Attribution,
    ) -> Result<WriteOutcome> {
        self.spawn_write(key, Op::Kill { expected_version }, by)
            .await
    }

    /// Clears the kill switch of flag `key`; `expected_version` as for
    /// [`kill`](Self::kill). With it, an unkill decided on a stale read cannot
    /// lift a kill made since: the kill moved the version.
    pub async fn unkill(
        &self,
        key: &str,
        expected_version: Option<u64>,
        by: &Attribution,
    ) -> Result<WriteOutcome> {
        self.spawn_write(key, Op::Unkill { expected_version }, by)
            .await
    }

    /// Changes of flag `key` with a version below `before` (all when `None`): the
    /// newest `limit` of them (at most [`Limits::max_history_page`], and fewer
    /// when they would pass [`Limits::max_history_page_bytes`] as JSON), oldest
    /// first. Page backwards by passing the first returned version as `before`.
    /// Reads exactly the changes returned (their seqs are indexed by version),
    /// so a page costs the same however deep it is.
    pub fn history(&self, key: &str, before: Option<u64>, limit: usize) -> Result<Vec<FlagChange>> {
        let limit = limit.clamp(1, self.inner.limits.max_history_page.max(1));
        if self.inner.current.load().get(key).is_none() {
            return Err(Error::NotFound {
                key: key.to_owned(),
            });
        }
        // Versions below `before` are indexes below `before - 1`.
        let (start, seqs): (usize, Vec<u64>) = {
            let chains = self.chains();
            let chain = chains.get(key).map_or(&[][..], Vec::as_slice);
            let end = before.map_or(chain.len(), |b| {
                usize::try_from(b.saturating_sub(1)).map_or(chain.len(), |b| b.min(chain.len()))
            });
            let start = end.saturating_sub(limit);
            (start, chain[start..end].to_vec())
        };
        let first_version = start as u64 + 1;
        // Newest first, so that a page cut by its byte budget keeps the newest
        // changes and pages on from the oldest one it holds.
        let budget = self.inner.limits.max_history_page_bytes;
        let mut bytes = 0usize;
        let mut out = Vec::with_capacity(seqs.len());
        for (i, seq) in seqs.into_iter().enumerate().rev() {
            let event = self
                .inner
                .events
                .get(seq)?
                .ok_or_else(|| Error::CorruptLog {
                    seq,
                    reason: "event of the flag's chain is missing".into(),
                })?;
            let decoded = change::decode(event)?;
            if decoded.payload.key != key || decoded.payload.version != first_version + i as u64 {
                return Err(Error::CorruptLog {
                    seq,
                    reason: format!("the chain of flag {key:?} is broken"),
                });
            }
            let change = decoded.into_change();
            let size = lighthouse_event_store::json_size(&change);
            if !out.is_empty() && bytes.saturating_add(size) > budget {
                break;
            }
            bytes = bytes.saturating_add(size);
            out.push(change);
        }
        out.reverse();
        Ok(out)
    }

    fn chains(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<u64>>> {
        // Nothing panics while holding it; a poisoned lock still holds whole lists.
        self.inner
            .chains
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Runs [`write`](Self::write) as its own task, so that a caller that stops
    /// waiting (a dropped request) cannot leave an appended change unpublished.
    async fn spawn_write(&self, key: &str, op: Op, by: &Attribution) -> Result<WriteOutcome> {
        by.check(&self.inner.limits)?;
        let (store, key, by) = (self.clone(), key.to_owned(), by.clone());
        tokio::spawn(async move { store.write(&key, op, &by).await })
            .await
            .map_err(|e| Error::Internal(format!("the flag write task failed: {e}")))?
    }

    async fn write(&self, key: &str, op: Op, by: &Attribution) -> Result<WriteOutcome> {
        let limits = &self.inner.limits;
        let mut stream_version = self.inner.writer.lock().await;
        for _ in 0..MAX_ATTEMPTS {
            let set = self.inner.current.load_full();
            let current = set.record(key);
            let before = current.as_ref().map(|r| &r.flag);
            let (kind, mut after) = match decide(&op, key, before, set.len(), limits)? {
                Decision::Unchanged(flag) => {
                    return Ok(WriteOutcome {
                        flag,
                        changed: false,
                        seq: None,
                    });
                }
                Decision::Change(kind, after) => (kind, after),
            };
            after.version = before.map_or(1, |b| b.version + 1);
            after.updated_at = self.inner.clock.now();
            after.updated_by = by.actor.clone();
            let record = Record::new(after, 0)?;
            if matches!(op, Op::Put { .. }) {
                check_total(&set, &record, limits)?;
            }
            let flag = record.flag.clone();
            // Checks the prerequisite graph with the change in place. The
            // limit on prerequisites is checked only where this write can
            // change them, and refuses only a flag whose prerequisites grow
            // past it: a log written under a larger limit still opens (replay
            // does not check it), and a kill, an unkill, an edit that leaves
            // `requires` alone or one that shrinks some flag's prerequisites
            // must not then be refused because of some other flag.
            let mut candidate = set.with(record)?;
            if before.is_none_or(|b| b.requires != flag.requires) {
                candidate.check_prerequisite_growth(&set, key, limits.max_prerequisites)?;
            }
            let payload = ChangePayload {
                key: key.to_owned(),
                version: flag.version,
                actor: by.actor.clone(),
                reason: by.reason.clone(),
                before: before.map(|b| Flag::clone(b)),
                after: Flag::clone(&flag),
                previous_seq: current.as_ref().map(|r| r.seq),
            };
            let data = serde_json::to_value(&payload)
                .map_err(|e| Error::Internal(format!("encoding a flag change: {e}")))?;
            let mut event = NewEvent::new(STREAM, kind.event_type(), data)
                .with_agent(by.actor.clone())
                .expect(stream_version.map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact));
            if let Some(c) = &by.correlation_id {
                event = event.with_correlation_id(c.clone());
            }
            match self.inner.events.append_one(event).await {
                Ok(appended) => {
                    candidate.set_seq(key, appended.seq);
                    self.chains()
                        .entry(key.to_owned())
                        .or_default()
                        .push(appended.seq);
                    *stream_version = Some(appended.version);
                    self.inner.current.store(candidate);
                    tracing::info!(
                        flag = key,
                        version = flag.version,
                        change = kind.event_type(),
                        actor = %by.actor,
                        seq = appended.seq,
                        "flag changed"
                    );
                    return Ok(WriteOutcome {
                        flag,
                        changed: true,
                        seq: Some(appended.seq),
                    });
                }
                Err(lighthouse_event_store::Error::VersionConflict { stream, .. })
                    if stream == STREAM =>
                {
                    // Another writer appended to `$flags`: apply its events and
                    // decide again against the state they produced.
                    let (set, version) = replay(
                        &self.inner.events,
                        &self.inner.current.load(),
                        *stream_version,
                        &mut self.chains(),
                        limits.max_replay_page_bytes,
                    )?;
                    self.inner.current.store(set);
                    *stream_version = version;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(Error::Contention {
            attempts: MAX_ATTEMPTS,
        })
    }
}

/// Refuses a `PUT` that would grow the flags, all together, past
/// [`Limits::max_total_flag_bytes`]. One that does not grow what the operator
/// writes passes even over the limit, so that under a lowered limit flags can
/// still be edited, switched off and shrunk: the fields the bridge sets
/// (`version`, `updated_at`, `updated_by`, `killed`) and the spelling of
/// `enabled` change a flag's size by themselves, so they are compared as they
/// were.
fn check_total(set: &FlagSet, record: &Record, limits: &Limits) -> Result<()> {
    let after = set.total_with(record);
    if after <= limits.max_total_flag_bytes {
        return Ok(());
    }
    if let Some(old) = set.entry(&record.flag.key) {
        let mut same = (*record.flag).clone();
        same.version = old.flag.version;
        same.updated_at = old.flag.updated_at;
        same.updated_by.clone_from(&old.flag.updated_by);
        same.killed = old.flag.killed;
        same.enabled = old.flag.enabled;
        if lighthouse_event_store::json_size(&same) <= old.bytes {
            return Ok(());
        }
    }
    Err(Error::invalid(
        "",
        format!(
            "the flag is {} bytes as JSON and would bring all flags to {after} bytes; \
             the limit (max_total_flag_bytes) is {}: shorten its lists or description, \
             or use rollout_percent instead of long allow lists",
            record.bytes, limits.max_total_flag_bytes
        ),
    ))
}
