//! The in-memory state: a projection of the log, changed only by applying events
//! in sequence order.
//!
//! Bounded: pending elicitations are capped by the service before they are
//! written; terminal ones are kept up to [`Limits::max_retained_resolved`], oldest
//! resolution evicted first (deterministically, so that a rebuild from a snapshot
//! plus the tail equals a rebuild from the whole log); idempotency keys are capped
//! by count and age.

mod decoded;
mod idempotency;
mod index;
mod snapshot;

use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use lighthouse_event_store::{Event, Timestamp};
use serde_json::Value;
use tokio::sync::Notify;

#[cfg(test)]
use decoded::Decoded;
pub(crate) use decoded::{ReplayDecoder, ReplayEvent};
pub(crate) use idempotency::{KeyBounds, KeyRecord, Records};

pub use index::Mailbox;
pub(crate) use snapshot::SnapshotCapture;

use crate::events::{self, Requested};
use crate::limits::Limits;
use crate::record::{Elicitation, Message, SchemaProfile, Status};
use crate::schema::CompiledSchema;
use decoded::{EventHead, Payload};
use idempotency::Idempotency;
use index::AgentIndex;

/// One elicitation held in memory.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub record: Arc<Elicitation>,
    pub profile: SchemaProfile,
    /// The last version seen on its stream (foreign events count).
    pub version: u64,
    pub requested_seq: u64,
    pub requested_event_id: Arc<str>,
    pub terminal_seq: Option<u64>,
    /// Present while pending.
    pub live: Option<Live>,
}

/// What a pending elicitation needs beyond its record.
#[derive(Debug, Clone)]
pub(crate) struct Live {
    /// Its transition lock and its waiters (one allocation for both).
    pub sync: Arc<LiveSync>,
    /// Its schema, compiled at create (or on first use after a restart).
    pub compiled: Option<Arc<CompiledSchema>>,
}

/// The synchronization of one pending elicitation.
#[derive(Debug, Default)]
pub(crate) struct LiveSync {
    /// Serializes transitions of this elicitation.
    pub lock: tokio::sync::Mutex<()>,
    /// Woken when it reaches a terminal state.
    pub resolved: Notify,
}

impl Live {
    fn new(compiled: Option<Arc<CompiledSchema>>) -> Self {
        Live {
            sync: Arc::new(LiveSync::default()),
            compiled,
        }
    }
}

/// What a create hands to the applier for its own `requested` event.
#[derive(Debug)]
pub(crate) struct Handoff {
    /// The compiled schema, kept for the answer.
    pub compiled: Arc<CompiledSchema>,
    /// The event's payload, exactly as serialized into the event.
    pub requested: Option<Requested>,
}

/// What applying one event changed, for notifications and hooks.
#[derive(Debug)]
pub(crate) enum Change {
    Nothing,
    Requested {
        record: Arc<Elicitation>,
        /// Its deadline is now the earliest: the timer must look again.
        earliest: bool,
    },
    Resolved {
        record: Arc<Elicitation>,
        resolved: Option<Arc<LiveSync>>,
    },
    Message(Arc<Message>),
}

/// A map keyed by elicitation or agent id.
type Map<V> = griddle::HashMap<Arc<str>, V, RandomState>;
/// The held elicitations by id.
pub(crate) type Entries = imbl::HashMap<Arc<str>, Entry>;

/// The projection.
#[derive(Debug)]
pub(crate) struct Projection {
    limits: Limits,
    // Incrementally resized maps for what grows with the traffic: a standard
    // hash map doubles (or rehashes its tombstones) all at once, under the state
    // lock every create and respond waits for (as the store's indexes,
    // docs/PERFORMANCE.md, session 5).
    //
    // The elicitations themselves are in a persistent map (a hash array mapped
    // trie whose nodes are shared between copies): a snapshot's capture is a
    // constant-time copy instead of a walk of every held elicitation under the
    // state lock (9-33 ms for 100,000, docs/PERFORMANCE.md, session 7); after a
    // capture, the first change to each node copies that node.
    entries: Entries,
    deadlines: BTreeSet<(Timestamp, Arc<str>)>,
    agents: Map<AgentIndex>,
    resolved_order: BTreeMap<u64, Arc<str>>,
    /// Every evicted elicitation's events have `seq <= evicted_through`.
    evicted_through: u64,
    idempotency: Idempotency,
    /// What creates whose `requested` event is not applied yet hand over.
    pub handoff: HashMap<Arc<str>, Handoff>,
    /// Every event up to this seq is applied.
    pub applied_seq: u64,
    /// Elicitation events applied since the last snapshot.
    pub since_snapshot: u64,
    /// Terminal transitions applied by this process (not in snapshots): a
    /// drain reports how many happened during its wait from two readings.
    pub resolved_total: u64,
    /// Whether the per-agent indexes are maintained (see `set_indexing`).
    indexing: bool,
}

impl Projection {
    pub(crate) fn new(limits: Limits) -> Self {
        Projection {
            limits,
            entries: Entries::new(),
            deadlines: BTreeSet::new(),
            agents: Map::with_hasher(RandomState::new()),
            resolved_order: BTreeMap::new(),
            evicted_through: 0,
            idempotency: Idempotency::default(),
            handoff: HashMap::new(),
            applied_seq: 0,
            since_snapshot: 0,
            resolved_total: 0,
            indexing: true,
        }
    }

    /// Applies one event of the log (any event: foreign ones only move the position).
    pub(crate) fn apply(&mut self, e: &Event) -> Change {
        self.apply_inner(&EventHead::of(e), Payload::Json(e), true)
    }

    /// Applies an event a replay's reader decoded ahead of time (see
    /// [`ReplayEvent`]). No `Message` change is produced: a replay notifies
    /// nobody, and reads only elicitation streams.
    pub(crate) fn apply_decoded(&mut self, e: ReplayEvent) {
        let head = EventHead {
            seq: e.seq,
            version: e.version,
            id: &e.id,
            stream: &e.stream,
            event_type: &e.event_type,
        };
        self.apply_inner(&head, Payload::Decoded(e.payload), false);
    }

    fn apply_inner(&mut self, e: &EventHead<'_>, payload: Payload<'_>, messages: bool) -> Change {
        if e.seq <= self.applied_seq {
            return Change::Nothing;
        }
        self.applied_seq = e.seq;
        let change = if e.stream.starts_with(events::ELICITATION_STREAM_PREFIX) {
            self.since_snapshot += 1;
            self.apply_elicitation(e, payload)
        } else if let Payload::Json(event) = payload
            && messages
            && e.event_type == events::MESSAGE_SENT
            && e.stream.starts_with(events::MAILBOX_STREAM_PREFIX)
        {
            events::message_of(event).map(Change::Message)
        } else {
            Ok(Change::Nothing)
        };
        change.unwrap_or_else(|err| {
            tracing::warn!(seq = e.seq, error = %err, "ignoring an event the elicitation projection cannot read");
            Change::Nothing
        })
    }

    fn apply_elicitation(
        &mut self,
        e: &EventHead<'_>,
        mut payload: Payload<'_>,
    ) -> crate::Result<Change> {
        let id = &e.stream[events::ELICITATION_STREAM_PREFIX.len()..];
        if e.event_type == events::REQUESTED && !self.entries.contains_key(id) {
            // The create that wrote this event handed over its payload and compiled
            // schema: no need to decode (and copy) them again.
            let (req, compiled) = match self.handoff.remove(id) {
                Some(Handoff {
                    compiled,
                    requested: Some(req),
                }) => ((req, None), Some(compiled)),
                Some(Handoff {
                    compiled,
                    requested: None,
                }) => (payload.requested(e)?, Some(compiled)),
                None => (payload.requested(e)?, None),
            };
            let (req, shared) = req;
            if req.id != id {
                return Err(crate::Error::Corrupt {
                    seq: e.seq,
                    event_type: e.event_type.to_owned(),
                    reason: "id does not match the stream".into(),
                });
            }
            return Ok(self.apply_requested(e, req, shared, compiled));
        }
        let key = self.key_of(id);
        let Some(entry) = self.entries.get_mut(id) else {
            return Ok(Change::Nothing);
        };
        entry.version = e.version;
        let Some(action) = events::terminal_action(e.event_type) else {
            return Ok(Change::Nothing);
        };
        if entry.record.status != Status::Pending {
            tracing::warn!(seq = e.seq, id, "second terminal event ignored");
            return Ok(Change::Nothing);
        }
        let outcome = payload.outcome(e)?;
        let record = Arc::new(outcome.apply_to(&entry.record, action));
        entry.record = record.clone();
        entry.terminal_seq = Some(e.seq);
        self.resolved_total += 1;
        let resolved = entry.live.take().map(|l| l.sync);
        let requested_seq = entry.requested_seq;
        self.deadlines.remove(&(record.expires_at, key.clone()));
        if self.indexing {
            if let Some(a) = self.agents.get_mut(&*record.to) {
                a.inbox_pending.remove(&requested_seq);
                a.feed.insert(e.seq, key.clone());
            }
            if let Some(a) = self.agents.get_mut(&*record.from) {
                a.outbox_pending.remove(&requested_seq);
                a.feed.insert(e.seq, key.clone());
            }
        }
        self.resolved_order.insert(e.seq, key);
        self.evict();
        Ok(Change::Resolved { record, resolved })
    }

    fn apply_requested(
        &mut self,
        e: &EventHead<'_>,
        req: Requested,
        shared: Option<(Arc<Value>, Arc<Value>)>,
        compiled: Option<Arc<CompiledSchema>>,
    ) -> Change {
        let key: Arc<str> = Arc::from(req.id.as_str());
        if let Some(k) = &req.idempotency_key {
            self.idempotency.insert(
                KeyRecord {
                    from: req.from.clone(),
                    key: k.clone(),
                    id: req.id.clone(),
                    hash: req.request_hash.clone(),
                    created_at: req.created_at,
                    seq: e.seq,
                },
                self.limits.idempotency_bounds(),
            );
        }
        let profile = req.schema_profile;
        let record = Arc::new(match shared {
            Some((schema, metadata)) => req.into_record_sharing(schema, metadata),
            None => req.into_record(),
        });
        let entry = Entry {
            record: record.clone(),
            profile,
            version: e.version,
            requested_seq: e.seq,
            requested_event_id: Arc::from(e.id),
            terminal_seq: None,
            live: Some(Live::new(compiled)),
        };
        self.insert(key.clone(), entry);
        let earliest = self.deadlines.first().is_some_and(|(_, k)| *k == key);
        Change::Requested { record, earliest }
    }

    /// Adds an entry to every index (used by apply and by snapshot loading).
    fn insert(&mut self, key: Arc<str>, entry: Entry) {
        if entry.record.status == Status::Pending {
            self.deadlines
                .insert((entry.record.expires_at, key.clone()));
        }
        if let Some(t) = entry.terminal_seq {
            self.resolved_order.insert(t, key.clone());
        }
        if self.indexing {
            index_agents(&mut self.agents, &key, &entry);
        }
        self.entries.insert(key, entry);
    }

    /// Turns the per-agent indexes on or off. A replay runs with them off (most
    /// of what it builds is evicted again before it ends) and turns them on at
    /// the end, which builds them once for what is held.
    pub(crate) fn set_indexing(&mut self, on: bool) {
        if on && !self.indexing {
            self.agents.clear();
            for (key, entry) in &self.entries {
                index_agents(&mut self.agents, key, entry);
            }
        }
        if !on {
            self.agents.clear();
        }
        self.indexing = on;
    }

    /// The shared key of a held elicitation (so indexes share one allocation).
    fn key_of(&self, id: &str) -> Arc<str> {
        self.entries
            .get_key_value(id)
            .map_or_else(|| Arc::from(id), |(k, _)| k.clone())
    }

    /// Forgets the oldest-resolved elicitations beyond the retention bound.
    fn evict(&mut self) {
        while self.resolved_order.len() > self.limits.max_retained_resolved {
            let Some((seq, key)) = self.resolved_order.pop_first() else {
                break;
            };
            self.evicted_through = self.evicted_through.max(seq);
            let Some(entry) = self.entries.remove(&key) else {
                continue;
            };
            let r = &entry.record;
            if !self.indexing {
                continue;
            }
            for agent in [&*r.to, &*r.from] {
                if let Some(a) = self.agents.get_mut(agent) {
                    if *r.to == *agent {
                        a.inbox.remove(&entry.requested_seq);
                    }
                    if *r.from == *agent {
                        a.outbox.remove(&entry.requested_seq);
                    }
                    a.feed.remove(&entry.requested_seq);
                    a.feed.remove(&seq);
                    if a.is_empty() {
                        self.agents.remove(agent);
                    }
                }
            }
        }
    }

    // ---- reads ----

    pub(crate) fn entry(&self, id: &str) -> Option<&Entry> {
        self.entries.get(id)
    }

    pub(crate) fn entry_mut(&mut self, id: &str) -> Option<&mut Entry> {
        self.entries.get_mut(id)
    }

    pub(crate) fn pending_count(&self) -> usize {
        self.deadlines.len()
    }

    pub(crate) fn held_count(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn evicted_through(&self) -> u64 {
        self.evicted_through
    }

    pub(crate) fn earliest_deadline(&self) -> Option<Timestamp> {
        self.deadlines.first().map(|(t, _)| *t)
    }

    /// Pending elicitations whose deadline is at or before `now`, at most `limit`.
    pub(crate) fn due(&self, now: Timestamp, limit: usize) -> Vec<Arc<str>> {
        self.deadlines
            .iter()
            .take_while(|(t, _)| *t <= now)
            .take(limit)
            .map(|(_, k)| k.clone())
            .collect()
    }

    /// Every pending elicitation.
    pub(crate) fn pending_ids(&self) -> Vec<Arc<str>> {
        self.deadlines.iter().map(|(_, k)| k.clone()).collect()
    }

    pub(crate) fn idempotent(&self, from: &str, key: &str, now: Timestamp) -> Option<&KeyRecord> {
        self.idempotency
            .get(from, key, now, self.limits.idempotency_ttl_ms)
    }

    pub(crate) fn idempotency_len(&self) -> usize {
        self.idempotency.len()
    }

    /// One page of `agent`'s inbox or outbox, oldest first, after cursor `after`
    /// (the seq of a `requested` event). Returns the items and the next cursor.
    /// Filtered by a status other than pending, it examines at most `budget`
    /// records and, if that runs out first, ends there (the page may be short,
    /// or empty) with the last one examined as the next cursor.
    pub(crate) fn list(
        &self,
        agent: &str,
        mailbox: Mailbox,
        status: Option<Status>,
        after: u64,
        limit: usize,
        budget: usize,
    ) -> (Vec<(u64, Arc<Elicitation>)>, Option<u64>) {
        let Some(a) = self.agents.get(agent) else {
            return (Vec::new(), None);
        };
        let (all, pending) = match mailbox {
            Mailbox::Inbox => (&a.inbox, &a.inbox_pending),
            Mailbox::Outbox => (&a.outbox, &a.outbox_pending),
        };
        let mut out: Vec<(u64, Arc<Elicitation>)> = Vec::with_capacity(limit.min(256));
        let lookup =
            |seq: u64, key: &Arc<str>| self.entries.get(key).map(|e| (seq, e.record.clone()));
        if status == Some(Status::Pending) {
            let iter = pending
                .range(after.saturating_add(1)..)
                .filter_map(|s| all.get(s).and_then(|k| lookup(*s, k)));
            out.extend(iter.take(limit + 1));
        } else {
            let budget = budget.max(1);
            for (examined, (s, k)) in all.range(after.saturating_add(1)..).enumerate() {
                if out.len() > limit {
                    break;
                }
                if examined == budget {
                    // Out of budget: the next page starts after the last one
                    // examined (everything up to it was looked at).
                    let stopped = s.saturating_sub(1).max(after);
                    return (out, Some(stopped));
                }
                if let Some((seq, r)) = lookup(*s, k)
                    && status.is_none_or(|st| r.status == st)
                {
                    out.push((seq, r));
                }
            }
        }
        let next = if out.len() > limit {
            out.truncate(limit);
            out.last().map(|(s, _)| *s)
        } else {
            None
        };
        (out, next)
    }

    /// `agent`'s notifications with `after < seq <= until`, at most `limit`, as
    /// (seq, is_requested, record as of that event). Only valid when
    /// `after >= evicted_through()`.
    pub(crate) fn feed(
        &self,
        agent: &str,
        after: u64,
        until: u64,
        limit: usize,
    ) -> Vec<(u64, bool, Arc<Elicitation>)> {
        let Some(a) = self.agents.get(agent) else {
            return Vec::new();
        };
        if after >= until {
            return Vec::new();
        }
        a.feed
            .range(after + 1..=until)
            .filter_map(|(seq, key)| {
                let e = self.entries.get(key)?;
                if *seq == e.requested_seq {
                    Some((*seq, true, Arc::new(e.record.as_pending())))
                } else {
                    Some((*seq, false, e.record.clone()))
                }
            })
            .take(limit)
            .collect()
    }

    /// The seq of the `requested` event of the oldest elicitation pending for
    /// `agent` now, if any.
    pub(crate) fn lowest_pending_inbox(&self, agent: &str) -> Option<u64> {
        self.agents
            .get(agent)
            .and_then(|a| a.inbox_pending.first().copied())
    }

    /// One page of the elicitations addressed to `agent` that were pending at
    /// `boundary` (requested at or before it, not terminal at it), by the seq
    /// of their `requested` event after `after`: at most `limit` of them,
    /// looking at no more than `budget` held ones (at least one). Each comes
    /// with that seq and its record as of then (pending). Returns where to go
    /// on, `None` once the range is done.
    ///
    /// Complete only while `evicted_through() <= boundary`: one pending at the
    /// boundary and evicted since (resolved, then pushed out by newer
    /// resolutions) is no longer held.
    pub(crate) fn pending_inbox_page(
        &self,
        agent: &str,
        after: u64,
        boundary: u64,
        limit: usize,
        budget: usize,
    ) -> (Vec<(u64, Arc<Elicitation>)>, Option<u64>) {
        let Some(a) = self.agents.get(agent) else {
            return (Vec::new(), None);
        };
        if after >= boundary {
            return (Vec::new(), None);
        }
        let (limit, budget) = (limit.max(1), budget.max(1));
        let mut out = Vec::with_capacity(limit.min(256));
        let mut examined = 0;
        for (&seq, key) in a.inbox.range(after + 1..=boundary) {
            examined += 1;
            if let Some(e) = self.entries.get(key)
                && e.terminal_seq.is_none_or(|t| t > boundary)
            {
                let record = if e.record.status == Status::Pending {
                    e.record.clone()
                } else {
                    Arc::new(e.record.as_pending())
                };
                out.push((seq, record));
            }
            if out.len() == limit || examined == budget {
                return (out, Some(seq));
            }
        }
        (out, None)
    }
}

/// Adds one held elicitation to the per-agent indexes.
fn index_agents(agents: &mut Map<AgentIndex>, key: &Arc<str>, entry: &Entry) {
    let r = &entry.record;
    let seq = entry.requested_seq;
    let pending = r.status == Status::Pending;
    let to = agent_index(agents, &r.to);
    to.inbox.insert(seq, key.clone());
    to.feed.insert(seq, key.clone());
    if pending {
        to.inbox_pending.insert(seq);
    }
    if let Some(t) = entry.terminal_seq {
        to.feed.insert(t, key.clone());
    }
    let from = agent_index(agents, &r.from);
    from.outbox.insert(seq, key.clone());
    if pending {
        from.outbox_pending.insert(seq);
    }
    if let Some(t) = entry.terminal_seq {
        from.feed.insert(t, key.clone());
    }
}

/// The index of `agent`, created if needed (without allocating when it exists).
fn agent_index<'a>(agents: &'a mut Map<AgentIndex>, agent: &str) -> &'a mut AgentIndex {
    if !agents.contains_key(agent) {
        agents.insert(Arc::from(agent), AgentIndex::default());
    }
    // Present: inserted just above if it was missing.
    agents
        .get_mut(agent)
        .unwrap_or_else(|| unreachable!("agent index inserted above"))
}

#[cfg(test)]
mod tests;
