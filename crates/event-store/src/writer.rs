//! The single writer thread and its group commit.
//!
//! Appenders send [`Command`]s over a bounded queue. The writer takes the first
//! waiting command, then everything else already queued (up to
//! `max_group_events`), checks and encodes each request, commits them all in one
//! atomic storage batch, flushes once, and only then updates the indexes, moves
//! the head, publishes to live subscribers and answers. While one flush is in
//! progress, new requests queue up and form the next group: the more concurrent
//! appenders, the more events per flush.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::{mpsc, oneshot};

use crate::backend::Anchor;
use crate::clock::{SharedClock, Timestamp};
use crate::codec::{Prepared, RecordView};
use crate::error::{Error, Result};
use crate::model::{AppendOutcome, Appended, Event, ExpectedVersion};
use crate::options::Durability;
use crate::store::Shared;

pub(crate) enum Command {
    Append {
        events: Vec<Prepared>,
        reply: oneshot::Sender<Result<AppendOutcome>>,
        enqueued: std::time::Instant,
    },
    Flush {
        reply: oneshot::Sender<Result<()>>,
    },
}

type Request = (
    Vec<Prepared>,
    oneshot::Sender<Result<AppendOutcome>>,
    std::time::Instant,
);

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
}

/// A request that passed its checks and is part of the current group.
struct Accepted {
    reply: oneshot::Sender<Result<AppendOutcome>>,
    enqueued: std::time::Instant,
    appended: Vec<Appended>,
    events: Vec<Event>,
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
            last_id: ulid::Ulid::nil(),
        }
    }

    pub(crate) fn run(mut self) {
        while let Some(first) = self.rx.blocking_recv() {
            let mut appends = Vec::new();
            let mut flushes = Vec::new();
            let mut events = 0usize;
            let mut next = Some(first);
            while let Some(cmd) = next.take() {
                match cmd {
                    Command::Append {
                        events: e,
                        reply,
                        enqueued,
                    } => {
                        events += e.len();
                        appends.push((e, reply, enqueued));
                    }
                    Command::Flush { reply } => flushes.push(reply),
                }
                if events < self.max_group_events {
                    next = self.rx.try_recv().ok();
                }
            }
            self.commit_group(appends);
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

    fn flush_durably(&self) -> Result<()> {
        if self.shared.poisoned.load(Ordering::Acquire) {
            return Err(Error::Poisoned);
        }
        self.shared.backend.flush().inspect_err(|e| {
            tracing::error!(error = %e, "event store flush failed; refusing further writes");
            self.shared.poisoned.store(true, Ordering::Release);
        })
    }

    fn commit_group(&mut self, requests: Vec<Request>) {
        if requests.is_empty() {
            return;
        }
        if self.shared.poisoned.load(Ordering::Acquire) {
            for (_, reply, _) in requests {
                let _ = reply.send(Err(Error::Poisoned));
            }
            return;
        }
        let now = self.clock.now().max(self.last_time);
        let start = (self.head, self.chain, self.last_id);
        let mut records: Vec<(u64, Vec<u8>)> = Vec::new();
        let mut accepted: Vec<Accepted> = Vec::new();
        // Stream versions and ids written earlier in this group, not yet indexed.
        let mut versions: HashMap<String, u64> = HashMap::new();
        let mut ids: HashMap<String, Appended> = HashMap::new();
        {
            let shared = self.shared.clone();
            let index = shared.index.read();
            for (events, reply, enqueued) in requests {
                // Idempotent retry: every id known → the original result.
                match self.find_existing(&events, &ids, &index) {
                    Ok(Some(original)) => {
                        let _ = reply.send(Ok(AppendOutcome {
                            events: original,
                            deduplicated: true,
                        }));
                        continue;
                    }
                    Ok(None) => {}
                    Err(e) => {
                        let _ = reply.send(Err(e));
                        continue;
                    }
                }
                // Optimistic concurrency, with earlier events of this request and
                // this group counted.
                let mut local: HashMap<&str, u64> = HashMap::new();
                let mut conflict = None;
                for p in &events {
                    let s = p.event.stream.as_str();
                    let current = local
                        .get(s)
                        .or_else(|| versions.get(s))
                        .copied()
                        .map(Some)
                        .unwrap_or_else(|| index.stream_version(s));
                    let ok = match p.event.expected_version {
                        ExpectedVersion::Any => true,
                        ExpectedVersion::NoStream => current.is_none(),
                        ExpectedVersion::Exact(n) => current == Some(n),
                    };
                    if !ok {
                        conflict = Some(Error::VersionConflict {
                            stream: s.to_owned(),
                            expected: match p.event.expected_version {
                                ExpectedVersion::Any => "any".into(),
                                ExpectedVersion::NoStream => "no_stream".into(),
                                ExpectedVersion::Exact(n) => n.to_string(),
                            },
                            actual: current,
                        });
                        break;
                    }
                    local.insert(s, current.map_or(0, |v| v + 1));
                }
                if let Some(e) = conflict {
                    let _ = reply.send(Err(e));
                    continue;
                }
                let mut appended = Vec::with_capacity(events.len());
                let mut evs = Vec::with_capacity(events.len());
                for p in events {
                    let seq = self.head + 1;
                    let s = p.event.stream.as_str();
                    let version = versions
                        .get(s)
                        .map(|v| v + 1)
                        .or_else(|| index.stream_version(s).map(|v| v + 1))
                        .unwrap_or(0);
                    let id = match &p.event.id {
                        Some(id) => id.clone(),
                        None => self.next_id(now),
                    };
                    let (bytes, mac) =
                        p.finish(&self.shared.key, &self.chain, seq, version, now, &id);
                    self.head = seq;
                    self.chain = mac;
                    versions.insert(s.to_owned(), version);
                    let a = Appended {
                        seq,
                        id: id.clone(),
                        version,
                    };
                    if p.event.id.is_some() {
                        ids.insert(id.clone(), a.clone());
                    }
                    records.push((seq, bytes));
                    appended.push(a);
                    let e = p.event;
                    evs.push(Event {
                        seq,
                        id,
                        stream: e.stream,
                        version,
                        event_type: e.event_type,
                        time: now,
                        agent: e.agent,
                        correlation_id: e.correlation_id,
                        causation_id: e.causation_id,
                        data: e.data,
                        metadata: e.metadata,
                    });
                }
                accepted.push(Accepted {
                    reply,
                    enqueued,
                    appended,
                    events: evs,
                });
            }
        }
        if records.is_empty() {
            return;
        }
        let anchor = Anchor {
            seq: self.head,
            mac: self.chain,
        };
        let written = self.shared.backend.commit(&records, anchor).and_then(|()| {
            if self.durability == Durability::Durable {
                self.flush_durably()
            } else {
                Ok(())
            }
        });
        if let Err(e) = written {
            tracing::error!(error = %e, "event store commit failed; refusing further writes");
            self.shared.poisoned.store(true, Ordering::Release);
            (self.head, self.chain, self.last_id) = start;
            let msg = e.to_string();
            for a in accepted {
                let _ = a.reply.send(Err(Error::WriteFailed {
                    reason: msg.clone(),
                }));
            }
            return;
        }
        self.last_time = now;
        {
            let mut index = self.shared.index.write();
            for (_, bytes) in &records {
                if let Ok(v) = RecordView::parse(bytes) {
                    index.add(&v);
                }
            }
        }
        self.shared.head.store(self.head, Ordering::Release);
        let live = &self.shared.live;
        let publish = live.receiver_count() > 0;
        for a in accepted {
            if publish {
                for e in &a.events {
                    let _ = live.send(Arc::new(e.clone()));
                }
            }
            if let Some(o) = &self.observer {
                o.appended(a.appended.len(), a.enqueued.elapsed(), self.head);
            }
            let _ = a.reply.send(Ok(AppendOutcome {
                events: a.appended,
                deduplicated: false,
            }));
        }
    }

    /// For a request whose events all carry ids: the original positions if every
    /// id exists, an error if only some do, `None` if none do.
    fn find_existing(
        &self,
        events: &[Prepared],
        pending: &HashMap<String, Appended>,
        index: &crate::index::Indexes,
    ) -> Result<Option<Vec<Appended>>> {
        let mut found = Vec::new();
        let mut missing = false;
        for p in events {
            let Some(id) = &p.event.id else {
                missing = true;
                continue;
            };
            if let Some(a) = pending.get(id) {
                found.push(a.clone());
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
            (false, false) => Ok(Some(found)),
            (false, true) => Err(Error::DuplicateId {
                id: found[0].id.clone(),
            }),
        }
    }

    /// A ULID for `now`, strictly increasing within the store's lifetime.
    fn next_id(&mut self, now: Timestamp) -> String {
        let ms = now.unix_millis().max(0) as u64;
        let fresh = || ulid::Ulid::from_parts(ms, ulid::Ulid::generate().random());
        let id = if self.last_id.timestamp_ms() >= ms {
            self.last_id.increment().unwrap_or_else(|_| fresh())
        } else {
            fresh()
        };
        self.last_id = id;
        id.to_string()
    }
}
