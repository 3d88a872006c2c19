//! The single writer thread and its group commit.
//!
//! Appenders send [`Command`]s over a bounded queue. The writer takes the first
//! waiting command, then everything else already queued (up to
//! `max_group_events`), checks and encodes each request, commits them all in one
//! atomic storage batch, flushes once, and only then updates the indexes, moves
//! the head, publishes to live subscribers and answers. While one flush is in
//! progress, new requests queue up and form the next group: the more concurrent
//! appenders, the more events per flush.
//!
//! Only what depends on the order of the log happens here (conditions, positions,
//! ids, the MAC chain, the storage batch, the indexes). The caller's task does the
//! rest: JSON encoding before the request is queued, and building the
//! [`AppendOutcome`](crate::AppendOutcome) (id strings) and freeing the request after the answer. The
//! answer carries the request's own events back ([`Placed::Written`]), so the
//! writer neither allocates nor frees per event.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::mpsc;

use crate::backend::{Anchor, RecordBatch};
use crate::clock::{SharedClock, Timestamp};
use crate::codec::{ChainKey, RecordView};
use crate::error::{Error, Result};
use crate::index::{IndexEntry, Indexes};
use crate::model::{AppendOutcome, Appended};
use crate::options::Durability;
use crate::request::{Command, Pending, Placed, Reply};
use crate::request::{Request, check_conditions, check_one};
use crate::store::Shared;

/// Length of a ULID in text.
const ULID_LEN: usize = 26;
/// A group stops taking requests once it holds this many bytes of records
/// (besides `max_group_events`): 4,096 requests of up to 1 MiB each would
/// otherwise make one multi-GiB frame, past what a segment frame can hold.
const MAX_GROUP_BYTES: usize = 64 << 20;
/// The group buffer's capacity kept between groups; a larger one (after a
/// burst of large events) is given back.
const RETAINED_BATCH_BYTES: usize = 8 << 20;

/// What the writer decided for one request of a group.
enum Verdict {
    /// Placed in this group's batch.
    Accept,
    /// Answered without writing. `after_commit`: the answer relies on an earlier
    /// request of this group (the original positions of ids written in it, a
    /// version or an id only it holds), so it stands only if the group is
    /// committed.
    Answer {
        answer: Result<Placed>,
        after_commit: bool,
    },
}

/// Where one accepted event goes.
#[derive(Clone, Copy)]
struct Placement {
    seq: u64,
    version: u64,
    generated: Option<ulid::Ulid>,
}

pub(crate) struct Writer {
    observer: Option<Arc<dyn crate::options::AppendObserver>>,
    shared: Arc<Shared>,
    rx: mpsc::Receiver<Command>,
    clock: SharedClock,
    durability: Durability,
    max_group_events: usize,
    head: u64,
    chain: [u8; 32],
    last_time: Timestamp,
    last_id: ulid::Ulid,
    /// The group's records; its buffers are reused by every group.
    batch: RecordBatch,
    /// The group's accepted events in order; reused by every group.
    placements: Vec<Placement>,
}

impl Writer {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        shared: Arc<Shared>,
        rx: mpsc::Receiver<Command>,
        clock: SharedClock,
        durability: Durability,
        max_group_events: usize,
        head: u64,
        chain: [u8; 32],
        last_time: Timestamp,
        last_id: ulid::Ulid,
        observer: Option<Arc<dyn crate::options::AppendObserver>>,
    ) -> Self {
        Writer {
            observer,
            shared,
            rx,
            clock,
            durability,
            max_group_events,
            head,
            chain,
            last_time,
            last_id,
            batch: RecordBatch::default(),
            placements: Vec::new(),
        }
    }

    pub(crate) fn run(mut self) {
        // Reused by every group.
        let mut appends = Vec::new();
        while let Some(first) = self.rx.blocking_recv() {
            let mut flushes = Vec::new();
            let mut events = 0usize;
            let mut bytes = 0usize;
            let mut next = Some(first);
            while let Some(cmd) = next.take() {
                match cmd {
                    Command::Append {
                        events: e,
                        reply,
                        enqueued,
                    } => {
                        events += e.len();
                        bytes += e
                            .iter()
                            .map(|p| p.prepared.record_len(ULID_LEN))
                            .sum::<usize>();
                        appends.push((e, reply, enqueued));
                    }
                    Command::Flush { reply } => flushes.push(reply),
                }
                if events < self.max_group_events && bytes < MAX_GROUP_BYTES {
                    next = self.rx.try_recv().ok();
                }
            }
            self.commit_group(&mut appends);
            // One burst of large events must not pin its buffer for the life
            // of the process.
            self.batch.shrink_to(RETAINED_BATCH_BYTES);
            if !flushes.is_empty() {
                let r = self.flush_durably();
                for reply in flushes {
                    let _ = reply.send(r.as_ref().map(|_| ()).map_err(|_| Error::Poisoned));
                }
            }
        }
        // The queue is closed: every handle is gone. Leave everything on disk.
        if !self.shared.poisoned.load(Ordering::Acquire) {
            let _ = self.shared.backend.flush();
        }
    }

    /// Whether writes are refused: a write or flush failed here, or the
    /// backend failed on its own (a checkpoint's sync, which in buffered mode
    /// cuts acknowledged records off the log). Set from then on.
    fn poisoned(&self) -> bool {
        if self.shared.poisoned.load(Ordering::Acquire) {
            return true;
        }
        if self.shared.backend.failed() {
            tracing::error!("event store: the storage failed; refusing further writes");
            self.shared.poisoned.store(true, Ordering::Release);
            return true;
        }
        false
    }

    fn flush_durably(&self) -> Result<()> {
        if self.poisoned() {
            return Err(Error::Poisoned);
        }
        self.shared.backend.flush().inspect_err(|e| {
            tracing::error!(error = %e, "event store flush failed; refusing further writes");
            self.shared.poisoned.store(true, Ordering::Release);
        })
    }

    /// Commits the group `requests` and answers (and removes) every request.
    fn commit_group(&mut self, requests: &mut Vec<Request>) {
        if requests.is_empty() {
            return;
        }
        if self.poisoned() {
            refuse(requests);
            return;
        }
        let now = self.clock.now().max(self.last_time);
        let start = (self.head, self.chain, self.last_id);
        let verdicts = self.place(requests, now);
        if self.batch.is_empty() {
            // Answers from the log alone (conflicts, retries): they stand
            // only if no failure cut records from under them meanwhile.
            if self.poisoned() {
                (self.head, self.chain, self.last_id) = start;
                refuse(requests);
                return;
            }
            self.answer(requests, verdicts, now, false);
            return;
        }
        let anchor = Anchor {
            seq: self.head,
            mac: self.chain,
        };
        let began = self.observer.is_some().then(std::time::Instant::now);
        let written = self
            .shared
            .backend
            .commit(&self.batch, anchor)
            .and_then(|()| {
                if self.durability == Durability::Durable {
                    // The group is in the log file and synced: a reopen
                    // will most likely find it, so not `WriteFailed`.
                    self.flush_durably().map_err(|e| Error::OutcomeUnknown {
                        reason: e.to_string(),
                    })
                } else {
                    Ok(())
                }
            });
        if let Err(e) = written {
            tracing::error!(error = %e, "event store commit failed; refusing further writes");
            self.shared.poisoned.store(true, Ordering::Release);
            (self.head, self.chain, self.last_id) = start;
            if matches!(e, Error::Poisoned) {
                // The backend had failed before the group: every verdict was
                // reached against records that may be cut.
                refuse(requests);
                return;
            }
            // Only the backend's `WriteFailed` says that nothing is stored.
            let (stored_unknown, reason) = match e {
                Error::WriteFailed { reason } => (false, reason),
                Error::OutcomeUnknown { reason } => (true, reason),
                e => (true, e.to_string()),
            };
            let not_written = || Error::WriteFailed {
                reason: reason.clone(),
            };
            for ((_, reply, _), v) in requests.drain(..).zip(verdicts) {
                let answer = match v {
                    Verdict::Answer {
                        answer,
                        after_commit: false,
                    } => answer,
                    // Refused against this group's events, which may not be
                    // stored: the refusal does not stand, but nothing of the
                    // request was written, certainly.
                    Verdict::Answer {
                        answer: Err(_),
                        after_commit: true,
                    } => Err(not_written()),
                    // In the group, or its ids are (a retry of a request in it):
                    // its fate is the group's.
                    _ if stored_unknown => Err(Error::OutcomeUnknown {
                        reason: reason.clone(),
                    }),
                    _ => Err(not_written()),
                };
                reply.send(answer);
            }
            return;
        }
        self.last_time = now;
        {
            let mut index = self.shared.index.write();
            let mut placed = self.placements.iter();
            for ((events, _, _), v) in requests.iter().zip(&verdicts) {
                if !matches!(v, Verdict::Accept) {
                    continue;
                }
                for (p, at) in events.iter().zip(placed.by_ref()) {
                    let e = &p.prepared.event;
                    let mut buf = [0u8; ULID_LEN];
                    index.insert(&IndexEntry {
                        seq: at.seq,
                        time: now,
                        id: id_text(e.id.as_deref(), at.generated, &mut buf),
                        stream: &e.stream,
                        event_type: &e.event_type,
                        agent: e.agent.as_deref(),
                        correlation_id: e.correlation_id.as_deref(),
                    });
                }
            }
        }
        // The group's write, sync, sled inserts and index update: what the
        // commit cost before anyone is answered.
        if let (Some(o), Some(t)) = (&self.observer, began) {
            o.committed(self.placements.len(), t.elapsed());
        }
        self.shared.head.store(self.head, Ordering::Release);
        self.answer(requests, verdicts, now, true);
    }

    /// Checks every request against the log and the earlier requests of the group,
    /// assigns positions and ids to the accepted ones and encodes their records
    /// into `self.batch`, chaining MACs from `self.chain`.
    fn place(&mut self, requests: &[Request], now: Timestamp) -> Vec<Verdict> {
        self.batch.reset(self.head + 1);
        self.placements.clear();
        let shared = self.shared.clone();
        let index = shared.index.read();
        let mut verdicts = Vec::with_capacity(requests.len());
        // Last version of each stream written earlier in this group, and the
        // caller ids written earlier in this group (neither is indexed yet).
        let mut versions: HashMap<&str, u64> = HashMap::with_capacity(requests.len());
        let mut ids: HashMap<&str, (u64, u64)> = HashMap::new();
        for (events, _, _) in requests {
            // Idempotent retry: every id known → the original result.
            match self.find_existing(events, &ids, &index) {
                Ok(None) => {}
                Ok(Some((original, after_commit))) => {
                    verdicts.push(Verdict::Answer {
                        answer: Ok(Placed::Deduplicated(original)),
                        after_commit,
                    });
                    continue;
                }
                Err(e) => {
                    // A duplicate id may be one only this group holds.
                    let after_commit = matches!(e, Error::DuplicateId { .. })
                        && events.iter().any(|p| {
                            p.prepared
                                .event
                                .id
                                .as_deref()
                                .is_some_and(|id| ids.contains_key(id))
                        });
                    verdicts.push(Verdict::Answer {
                        answer: Err(e),
                        after_commit,
                    });
                    continue;
                }
            }
            // Optimistic concurrency: each event's expected version against its
            // stream as it stands after the log, the earlier requests of this group
            // and the earlier events of this request.
            let checked = match events.as_slice() {
                // The common single-event request: one lookup for check and version.
                [p] => {
                    let e = &p.prepared.event;
                    let slot = versions.entry(e.stream.as_str());
                    let current = match &slot {
                        Entry::Occupied(o) => Some(*o.get()),
                        Entry::Vacant(_) => index.stream_version(&e.stream),
                    };
                    check_one(&e.stream, e.expected_version, current).map(|()| {
                        let version = current.map_or(0, |v| v + 1);
                        slot.insert_entry(version);
                        self.encode(p, version, now, &shared.key);
                        if let Some(id) = &e.id {
                            ids.insert(id, (self.head, version));
                        }
                    })
                }
                _ => check_conditions(events, &versions, &index).map(|()| {
                    for p in events {
                        let e = &p.prepared.event;
                        let s = e.stream.as_str();
                        let version = versions
                            .get(s)
                            .copied()
                            .or_else(|| index.stream_version(s))
                            .map_or(0, |v| v + 1);
                        versions.insert(s, version);
                        self.encode(p, version, now, &shared.key);
                        if let Some(id) = &e.id {
                            ids.insert(id, (self.head, version));
                        }
                    }
                }),
            };
            if let Err(e) = checked {
                // A conflict may be with a version only this group wrote.
                let after_commit = events
                    .iter()
                    .any(|p| versions.contains_key(p.prepared.event.stream.as_str()));
                verdicts.push(Verdict::Answer {
                    answer: Err(e),
                    after_commit,
                });
                continue;
            }
            verdicts.push(Verdict::Accept);
        }
        verdicts
    }

    /// Places one accepted event at the next seq: chooses its id, encodes its
    /// record into the batch and advances the chain.
    fn encode(&mut self, p: &Pending, version: u64, now: Timestamp, key: &ChainKey) {
        let seq = self.head + 1;
        let e = &p.prepared.event;
        let generated = match e.id {
            Some(_) => None,
            None => Some(self.next_id(now)),
        };
        let mut buf = [0u8; ULID_LEN];
        let id = id_text(e.id.as_deref(), generated, &mut buf);
        let prev = &self.chain;
        let mac = self.batch.push_with(|out| {
            p.prepared
                .finish_into(out, key, prev, seq, version, now, id)
        });
        self.head = seq;
        self.chain = mac;
        self.placements.push(Placement {
            seq,
            version,
            generated,
        });
    }

    /// Publishes the accepted events (when `committed`) and answers every request.
    fn answer(
        &mut self,
        requests: &mut Vec<Request>,
        verdicts: Vec<Verdict>,
        now: Timestamp,
        committed: bool,
    ) {
        let live = &self.shared.live;
        let publish = committed && live.receiver_count() > 0;
        // The group is durable (and in the indexes) from here.
        let durable_at = std::time::Instant::now();
        let mut placed = self.placements.iter();
        for ((mut events, reply, enqueued), v) in requests.drain(..).zip(verdicts) {
            match v {
                Verdict::Answer { answer, .. } => reply.send(answer),
                Verdict::Accept => {
                    for (p, at) in events.iter_mut().zip(placed.by_ref()) {
                        p.seq = at.seq;
                        p.version = at.version;
                        p.generated = at.generated;
                    }
                    if let Some(o) = &self.observer {
                        let latency = enqueued.map(|t| t.elapsed()).unwrap_or_default();
                        o.appended(events.len(), latency, self.head);
                    }
                    // A function is called before the events are published, so
                    // whatever it registers is in place before a subscriber
                    // can see them.
                    let wait = match reply {
                        Reply::Wait(tx) => Some(tx),
                        Reply::Call(done) => {
                            done.call(Ok(AppendOutcome {
                                events: events.iter().map(Pending::appended_ref).collect(),
                                deduplicated: false,
                            }));
                            None
                        }
                    };
                    if publish {
                        for p in &mut events {
                            let _ = live.send(crate::subscription::Live {
                                event: Arc::new(p.take_event(now)),
                                durable_at,
                            });
                        }
                    }
                    if let Some(tx) = wait {
                        let _ = tx.send(Ok(Placed::Written(events)));
                    }
                }
            }
        }
    }

    /// For a request whose events all carry ids: the original positions (and
    /// whether any of them is only pending in this group) if every id exists, an
    /// error if only some do, `None` if none do.
    fn find_existing(
        &self,
        events: &[Pending],
        pending: &HashMap<&str, (u64, u64)>,
        index: &Indexes,
    ) -> Result<Option<(Vec<Appended>, bool)>> {
        let mut found = Vec::new();
        let mut missing = false;
        let mut in_group = false;
        for p in events {
            let Some(id) = &p.prepared.event.id else {
                missing = true;
                continue;
            };
            if let Some(&(seq, version)) = pending.get(id.as_str()) {
                in_group = true;
                found.push(Appended {
                    seq,
                    id: id.clone(),
                    version,
                });
                continue;
            }
            let mut hit = None;
            for &seq in index.by_id(id) {
                let Some(bytes) = self.shared.backend.get(seq)? else {
                    continue;
                };
                if let Ok(v) = RecordView::parse(&bytes)
                    && v.id == id
                {
                    hit = Some(Appended {
                        seq,
                        id: id.clone(),
                        version: v.version,
                    });
                    break;
                }
            }
            match hit {
                Some(a) => found.push(a),
                None => missing = true,
            }
        }
        match (found.is_empty(), missing) {
            (true, _) => Ok(None),
            (false, false) => Ok(Some((found, in_group))),
            (false, true) => Err(Error::DuplicateId {
                id: found[0].id.clone(),
            }),
        }
    }

    /// A ULID for `now`, strictly increasing within the store's lifetime.
    fn next_id(&mut self, now: Timestamp) -> ulid::Ulid {
        let ms = now.unix_millis().max(0) as u64;
        let fresh = || ulid::Ulid::from_parts(ms, ulid::Ulid::generate().random());
        let id = if self.last_id.timestamp_ms() >= ms {
            self.last_id.increment().unwrap_or_else(|_| fresh())
        } else {
            fresh()
        };
        self.last_id = id;
        id
    }
}

/// Answers (and removes) every request with [`Error::Poisoned`].
fn refuse(requests: &mut Vec<Request>) {
    for (_, reply, _) in requests.drain(..) {
        reply.send(Err(Error::Poisoned));
    }
}

/// The event's id as text: the caller's, or the generated ULID encoded in `buf`.
fn id_text<'a>(
    given: Option<&'a str>,
    generated: Option<ulid::Ulid>,
    buf: &'a mut [u8; ULID_LEN],
) -> &'a str {
    match (given, generated) {
        (Some(id), _) => id,
        (None, Some(u)) => u.array_to_str(buf),
        (None, None) => "",
    }
}
