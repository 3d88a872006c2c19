//! [`FlagStore`]: the flags of stream `$flags`, with lock-free evaluation.
//!
//! Writes are serialized by an async mutex, validated against the current
//! snapshot, appended to `$flags` with the stream's exact expected version, and
//! only then published by swapping in a new immutable [`FlagSet`]. Reads load the
//! current snapshot through `arc-swap` (no lock, no allocation): a change is
//! visible to every evaluation that starts after the write returned.

use std::collections::BTreeMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use lighthouse_event_store::{
    EventStore, ExpectedVersion, Field, NewEvent, SharedClock, SystemClock, validate_token,
};
use tokio::sync::Mutex;

use crate::change::{self, ChangeKind, ChangePayload, FlagChange, STREAM};
use crate::error::{Error, Result};
use crate::eval::Evaluation;
use crate::limits::Limits;
use crate::model::{Flag, FlagSpec};
use crate::names::{self, AGENT_RULE};
use crate::set::{FlagSet, Record};

/// How many times a write re-reads `$flags` and retries after another writer
/// appended to it concurrently.
const MAX_ATTEMPTS: u32 = 3;
/// Events read per page while replaying `$flags`.
const REPLAY_PAGE: usize = 1_000;

/// Who makes a change and why. The actor is the authenticated agent, never a
/// name taken from a request body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribution {
    /// The agent making the change (an agent id).
    pub actor: String,
    /// Why; required, at most [`Limits::max_reason_bytes`].
    pub reason: String,
    /// The request id, stored as the event's `correlation_id`.
    pub correlation_id: Option<String>,
}

impl Attribution {
    /// A change by `actor` for `reason`.
    pub fn new(actor: impl Into<String>, reason: impl Into<String>) -> Self {
        Attribution {
            actor: actor.into(),
            reason: reason.into(),
            correlation_id: None,
        }
    }

    /// Sets the correlation id (the request id).
    pub fn with_correlation_id(mut self, id: impl Into<String>) -> Self {
        self.correlation_id = Some(id.into());
        self
    }

    fn check(&self, limits: &Limits) -> Result<()> {
        let mut errors = Vec::new();
        if !names::is_valid_agent(&self.actor) {
            errors.push(crate::FieldError::new(
                "/actor",
                format!("must be {AGENT_RULE}"),
            ));
        }
        if self.reason.trim().is_empty() {
            errors.push(crate::FieldError::new(
                "/reason",
                "is required: say why the flag changes",
            ));
        } else if self.reason.len() > limits.max_reason_bytes {
            errors.push(crate::FieldError::new(
                "/reason",
                format!(
                    "is {} bytes, the limit is {}",
                    self.reason.len(),
                    limits.max_reason_bytes
                ),
            ));
        }
        if let Some(c) = &self.correlation_id
            && validate_token(c, Field::CorrelationId).is_err()
        {
            errors.push(crate::FieldError::new(
                "/correlation_id",
                "must be 1 to 128 of [A-Za-z0-9_.:-]",
            ));
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(Error::Invalid { errors })
        }
    }
}

/// The result of a write.
#[derive(Debug, Clone, PartialEq)]
pub struct WriteOutcome {
    /// The flag after the write.
    pub flag: Arc<Flag>,
    /// `false` when the write asked for the state the flag already had (a `PUT`
    /// of identical settings, a kill of a killed flag, an unkill of a live one):
    /// nothing was appended and the version did not move.
    pub changed: bool,
    /// Position of the appended event, when one was appended.
    pub seq: Option<u64>,
}

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
    current: ArcSwap<FlagSet>,
    /// Serializes writes; holds the last version of `$flags` this store applied.
    writer: Mutex<Option<u64>>,
}

impl std::fmt::Debug for FlagStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlagStore")
            .field("flags", &self.inner.current.load().len())
            .finish_non_exhaustive()
    }
}

enum Op<'a> {
    Put {
        spec: &'a FlagSpec,
        expected_version: Option<u64>,
    },
    Kill,
    Unkill,
}

impl FlagStore {
    /// Opens the flags of `events`: replays stream `$flags` from the start and
    /// builds the first snapshot. Fails with [`Error::CorruptLog`] when an event
    /// cannot be applied.
    pub fn open(events: EventStore, options: FlagStoreOptions) -> Result<FlagStore> {
        let (set, version) = replay(&events, &FlagSet::empty(), None)?;
        Ok(FlagStore {
            inner: Arc::new(Inner {
                events,
                clock: options.clock,
                limits: options.limits,
                current: ArcSwap::from_pointee(set),
                writer: Mutex::new(version),
            }),
        })
    }

    /// Evaluates flag `key` for `agent` against the current snapshot
    /// (see [`FlagSet::evaluate`]). Lock-free.
    #[inline]
    pub fn evaluate(&self, key: &str, agent: &str) -> Result<Evaluation> {
        self.inner.current.load().evaluate(key, agent)
    }

    /// Whether flag `key` is on for `agent` (`false` for an unknown flag or an
    /// invalid agent id). Lock-free.
    #[inline]
    pub fn is_enabled(&self, key: &str, agent: &str) -> bool {
        self.inner.current.load().is_enabled(key, agent)
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

    /// The configured limits.
    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    /// Creates or replaces flag `key` with `spec` (`PUT /v1/flags/{key}`). The
    /// kill switch is kept as it is. With `expected_version`, succeeds only if
    /// the flag's version is that number (`0`: the flag must not exist yet),
    /// else [`Error::VersionConflict`]. Refuses invalid fields
    /// ([`Error::Invalid`]), unknown prerequisites, cycles, and more flags than
    /// [`Limits::max_flags`].
    pub async fn put(
        &self,
        key: &str,
        spec: &FlagSpec,
        expected_version: Option<u64>,
        by: &Attribution,
    ) -> Result<WriteOutcome> {
        self.write(
            key,
            Op::Put {
                spec,
                expected_version,
            },
            by,
        )
        .await
    }

    /// Sets the kill switch of flag `key`: off for every agent, whatever else it
    /// says. [`Error::NotFound`] when the flag does not exist.
    pub async fn kill(&self, key: &str, by: &Attribution) -> Result<WriteOutcome> {
        self.write(key, Op::Kill, by).await
    }

    /// Clears the kill switch of flag `key`.
    pub async fn unkill(&self, key: &str, by: &Attribution) -> Result<WriteOutcome> {
        self.write(key, Op::Unkill, by).await
    }

    /// Changes of flag `key` with a version below `before` (all when `None`): the
    /// newest `limit` of them (at most [`Limits::max_history_page`]), oldest
    /// first. Page backwards by passing the first returned version as `before`.
    /// Follows the flag's own chain of events, so the cost is one read per change
    /// from the newest down to the oldest returned.
    pub fn history(&self, key: &str, before: Option<u64>, limit: usize) -> Result<Vec<FlagChange>> {
        let limit = limit.clamp(1, self.inner.limits.max_history_page.max(1));
        let Some(record) = self.inner.current.load().record(key) else {
            return Err(Error::NotFound {
                key: key.to_owned(),
            });
        };
        let mut out = Vec::new();
        let mut next = Some(record.seq);
        let mut last_version = u64::MAX;
        while let Some(seq) = next {
            let event = self
                .inner
                .events
                .get(seq)?
                .ok_or_else(|| Error::CorruptLog {
                    seq,
                    reason: "event of the flag's chain is missing".into(),
                })?;
            let decoded = change::decode(event)?;
            if decoded.payload.key != key || decoded.payload.version >= last_version {
                return Err(Error::CorruptLog {
                    seq,
                    reason: format!("the chain of flag {key:?} is broken"),
                });
            }
            last_version = decoded.payload.version;
            next = decoded.payload.previous_seq;
            if before.is_none_or(|b| decoded.payload.version < b) {
                out.push(decoded.into_change());
                if out.len() == limit {
                    break;
                }
            }
        }
        out.reverse();
        Ok(out)
    }

    async fn write(&self, key: &str, op: Op<'_>, by: &Attribution) -> Result<WriteOutcome> {
        let limits = &self.inner.limits;
        by.check(limits)?;
        let percent = match &op {
            Op::Put { spec, .. } => Some(spec.check(key, limits)?),
            Op::Kill | Op::Unkill => None,
        };
        let mut stream_version = self.inner.writer.lock().await;
        for _ in 0..MAX_ATTEMPTS {
            let set = self.inner.current.load_full();
            let current = set.record(key);
            let before = current.as_ref().map(|r| &r.flag);
            let next_version = before.map_or(1, |b| b.version + 1);
            let stamp = |mut f: Flag| {
                f.version = next_version;
                f.updated_at = self.inner.clock.now();
                f.updated_by = by.actor.clone();
                f
            };
            let (kind, after) = match (&op, before) {
                (
                    Op::Put {
                        spec,
                        expected_version,
                    },
                    _,
                ) => {
                    if let Some(expected) = *expected_version
                        && before.map_or(0, |b| b.version) != expected
                    {
                        return Err(Error::VersionConflict {
                            key: key.to_owned(),
                            expected,
                            actual: before.map(|b| b.version),
                        });
                    }
                    let after = Flag {
                        key: key.to_owned(),
                        description: spec.description.clone(),
                        enabled: spec.enabled,
                        rollout_percent: percent.unwrap_or_default(),
                        allow: spec.allow.clone(),
                        deny: spec.deny.clone(),
                        variants: spec.variants.clone(),
                        requires: spec.requires.clone(),
                        killed: before.is_some_and(|b| b.killed),
                        version: 0,
                        updated_at: self.inner.clock.now(),
                        updated_by: String::new(),
                    };
                    match before {
                        Some(b) if b.same_settings(&after) => return Ok(unchanged(b)),
                        Some(_) => (ChangeKind::Updated, stamp(after)),
                        None => {
                            if set.len() >= limits.max_flags {
                                return Err(Error::TooManyFlags {
                                    limit: limits.max_flags,
                                });
                            }
                            (ChangeKind::Created, stamp(after))
                        }
                    }
                }
                (Op::Kill | Op::Unkill, None) => {
                    return Err(Error::NotFound {
                        key: key.to_owned(),
                    });
                }
                (Op::Kill, Some(b)) if b.killed => return Ok(unchanged(b)),
                (Op::Unkill, Some(b)) if !b.killed => return Ok(unchanged(b)),
                (Op::Kill, Some(b)) => (
                    ChangeKind::Killed,
                    stamp(Flag {
                        killed: true,
                        ..Flag::clone(b)
                    }),
                ),
                (Op::Unkill, Some(b)) => (
                    ChangeKind::Unkilled,
                    stamp(Flag {
                        killed: false,
                        ..Flag::clone(b)
                    }),
                ),
            };
            let mut candidate =
                set.with(Record::new(after.clone(), 0), limits.max_prerequisites)?;
            let payload = ChangePayload {
                key: key.to_owned(),
                version: after.version,
                actor: by.actor.clone(),
                reason: by.reason.clone(),
                before: before.map(|b| Flag::clone(b)),
                after,
                previous_seq: current.as_ref().map(|r| r.seq),
            };
            let data = serde_json::to_value(&payload).map_err(|e| Error::Encode(e.to_string()))?;
            let mut event = NewEvent::new(STREAM, kind.event_type(), data)
                .with_agent(by.actor.clone())
                .expect(stream_version.map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact));
            if let Some(c) = &by.correlation_id {
                event = event.with_correlation_id(c.clone());
            }
            match self.inner.events.append_one(event).await {
                Ok(appended) => {
                    candidate.set_seq(key, appended.seq);
                    let flag = candidate.get(key).cloned();
                    *stream_version = Some(appended.version);
                    self.inner.current.store(Arc::new(candidate));
                    tracing::info!(
                        flag = key,
                        version = payload.version,
                        change = kind.event_type(),
                        actor = %by.actor,
                        seq = appended.seq,
                        "flag changed"
                    );
                    let flag = flag.ok_or_else(|| {
                        Error::Encode("written flag missing from its snapshot".into())
                    })?;
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
                    // decide again against the state it produced.
                    let (set, version) = replay(
                        &self.inner.events,
                        &self.inner.current.load(),
                        *stream_version,
                    )?;
                    self.inner.current.store(Arc::new(set));
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

fn unchanged(flag: &Arc<Flag>) -> WriteOutcome {
    WriteOutcome {
        flag: flag.clone(),
        changed: false,
        seq: None,
    }
}

/// Applies the events of `$flags` after version `applied` (all when `None`) to
/// `base`. Returns the new set and the last version applied. Every event is
/// checked against the state before it: the flag's version moves by exactly one
/// and `previous_seq` points at the flag's previous event.
fn replay(
    events: &EventStore,
    base: &FlagSet,
    applied: Option<u64>,
) -> Result<(FlagSet, Option<u64>)> {
    let mut records: BTreeMap<String, Record> =
        base.records().map(|r| (r.flag.key.clone(), r)).collect();
    let mut version = applied;
    let mut last_seq = 0;
    loop {
        let from = version.map_or(0, |v| v + 1);
        let page = events.read_stream(STREAM, from, REPLAY_PAGE)?;
        let n = page.len();
        for event in page {
            let (seq, event_version) = (event.seq, event.version);
            if event_version != version.map_or(0, |v| v + 1) {
                return Err(Error::CorruptLog {
                    seq,
                    reason: format!("{STREAM} skips from version {version:?} to {event_version}"),
                });
            }
            let decoded = change::decode(event)?;
            let p = &decoded.payload;
            let prev = records.get(&p.key);
            let expected = prev.map_or(1, |r| r.flag.version + 1);
            if p.version != expected
                || p.previous_seq != prev.map(|r| r.seq)
                || prev.is_none() != (decoded.kind == ChangeKind::Created)
            {
                return Err(Error::CorruptLog {
                    seq,
                    reason: format!(
                        "{} of flag {:?} to version {} does not follow version {} at seq {:?}",
                        decoded.kind.event_type(),
                        p.key,
                        p.version,
                        expected - 1,
                        prev.map(|r| r.seq)
                    ),
                });
            }
            let after = decoded.payload.after;
            records.insert(after.key.clone(), Record::new(after, seq));
            version = Some(event_version);
            last_seq = seq;
        }
        if n < REPLAY_PAGE {
            break;
        }
    }
    // Limits apply to writes; a log written under larger limits still opens.
    let set = FlagSet::build(records.into_values().collect(), usize::MAX).map_err(|e| {
        Error::CorruptLog {
            seq: last_seq,
            reason: e.to_string(),
        }
    })?;
    Ok((set, version))
}
