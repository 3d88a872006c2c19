//! Append requests as they travel to the writer and back, and the optimistic
//! concurrency check.
//!
//! A request is prepared on the caller's task ([`Pending`]: the event with its JSON
//! already encoded), placed by the writer (seq, version, id), and handed back in
//! the answer ([`Placed::Written`]) so that the caller, not the writer thread,
//! builds the [`AppendOutcome`] and frees the request.

use std::collections::HashMap;

use tokio::sync::oneshot;

use crate::clock::Timestamp;
use crate::codec::Prepared;
use crate::error::{Error, Result};
use crate::index::Indexes;
use crate::model::{AppendOutcome, Appended, Event, ExpectedVersion};

pub(crate) enum Command {
    Append {
        events: Vec<Pending>,
        reply: Reply,
        /// When the request was handed over, if an observer wants latencies.
        enqueued: Option<std::time::Instant>,
    },
    Flush {
        reply: oneshot::Sender<Result<()>>,
    },
}

/// Where the writer's answer to an append goes.
pub(crate) enum Reply {
    /// To a caller waiting on the channel.
    Wait(oneshot::Sender<Result<Placed>>),
    /// To a function run on the writer thread ([`EventStore::append_then`](crate::EventStore::append_then)):
    /// no task is woken.
    Call(Done),
}

impl Reply {
    /// Sends an answer that is not a written request (an error or a
    /// deduplicated one).
    pub(crate) fn send(self, answer: Result<Placed>) {
        match self {
            Reply::Wait(tx) => {
                let _ = tx.send(answer);
            }
            Reply::Call(done) => done.call(answer.map(Placed::into_outcome)),
        }
    }
}

/// The function an [`append_then`](crate::EventStore::append_then) caller gave:
/// called exactly once, with `Err(Closed)` if the request is dropped unanswered
/// (the store shut down with it queued).
pub(crate) struct Done(Option<Box<dyn FnOnce(Result<AppendOutcome>) + Send>>);

impl Done {
    pub(crate) fn new(f: impl FnOnce(Result<AppendOutcome>) + Send + 'static) -> Self {
        Done(Some(Box::new(f)))
    }

    pub(crate) fn call(mut self, outcome: Result<AppendOutcome>) {
        if let Some(f) = self.0.take() {
            run(f, outcome);
        }
    }
}

impl Drop for Done {
    fn drop(&mut self) {
        if let Some(f) = self.0.take() {
            run(f, Err(Error::Closed));
        }
    }
}

/// Runs a caller's function on the writer thread; a panic in it is the
/// caller's bug and must not take the writer (and every other append) down.
fn run(f: Box<dyn FnOnce(Result<AppendOutcome>) + Send>, outcome: Result<AppendOutcome>) {
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || f(outcome)));
    if r.is_err() {
        tracing::error!("an append_then function panicked; the append itself stands");
    }
}

/// One event of an append request: prepared by the caller, placed by the writer.
pub(crate) struct Pending {
    pub(crate) prepared: Prepared,
    /// Set by the writer when the event is written.
    pub(crate) seq: u64,
    pub(crate) version: u64,
    /// The id the store chose, when the caller gave none.
    pub(crate) generated: Option<ulid::Ulid>,
}

impl Pending {
    pub(crate) fn new(prepared: Prepared) -> Self {
        Pending {
            prepared,
            seq: 0,
            version: 0,
            generated: None,
        }
    }

    fn appended(self) -> Appended {
        Appended {
            seq: self.seq,
            id: match self.generated {
                Some(u) => u.to_string(),
                None => self.prepared.event.id.unwrap_or_default(),
            },
            version: self.version,
        }
    }

    /// [`appended`](Self::appended) without consuming the event (before it is
    /// published).
    pub(crate) fn appended_ref(&self) -> Appended {
        Appended {
            seq: self.seq,
            id: self.id_string(),
            version: self.version,
        }
    }

    /// The event's id as placed: the caller's, or the one the store chose.
    fn id_string(&self) -> String {
        match self.generated {
            Some(u) => u.to_string(),
            None => self.prepared.event.id.clone().unwrap_or_default(),
        }
    }

    /// The committed event, for live subscribers: moves the payload out.
    pub(crate) fn take_event(&mut self, time: Timestamp) -> Event {
        let id = self.id_string();
        let e = &mut self.prepared.event;
        Event {
            seq: self.seq,
            id,
            stream: std::mem::take(&mut e.stream),
            version: self.version,
            event_type: std::mem::take(&mut e.event_type),
            time,
            agent: e.agent.take(),
            correlation_id: e.correlation_id.take(),
            causation_id: e.causation_id.take(),
            data: e.data.take(),
            metadata: e.metadata.take(),
        }
    }
}

/// The writer's answer to an append request.
pub(crate) enum Placed {
    /// Written: the request's events with their positions.
    Written(Vec<Pending>),
    /// Every id was appended before: the original positions.
    Deduplicated(Vec<Appended>),
}

impl Placed {
    /// The position of the request's first event.
    pub(crate) fn into_first(self) -> Option<Appended> {
        match self {
            Placed::Written(events) => events.into_iter().next().map(Pending::appended),
            Placed::Deduplicated(events) => events.into_iter().next(),
        }
    }

    pub(crate) fn into_outcome(self) -> AppendOutcome {
        match self {
            Placed::Written(events) => AppendOutcome {
                events: events.into_iter().map(Pending::appended).collect(),
                deduplicated: false,
            },
            Placed::Deduplicated(events) => AppendOutcome {
                events,
                deduplicated: true,
            },
        }
    }
}

pub(crate) type Request = (Vec<Pending>, Reply, Option<std::time::Instant>);

/// [`check_one`] for every event of a request, counting its earlier events.
pub(crate) fn check_conditions(
    events: &[Pending],
    group: &HashMap<&str, u64>,
    index: &Indexes,
) -> Result<()> {
    let stored = |s: &str| group.get(s).copied().or_else(|| index.stream_version(s));
    if let [p] = events {
        // The common single-event request needs no map of its own.
        let e = &p.prepared.event;
        return check_one(&e.stream, e.expected_version, stored(&e.stream));
    }
    let mut local: HashMap<&str, u64> = HashMap::new();
    for p in events {
        let e = &p.prepared.event;
        let s = e.stream.as_str();
        let current = local.get(s).copied().map(Some).unwrap_or_else(|| stored(s));
        check_one(s, e.expected_version, current)?;
        local.insert(s, current.map_or(0, |v| v + 1));
    }
    Ok(())
}

pub(crate) fn check_one(
    stream: &str,
    expected: ExpectedVersion,
    current: Option<u64>,
) -> Result<()> {
    let ok = match expected {
        ExpectedVersion::Any => true,
        ExpectedVersion::NoStream => current.is_none(),
        ExpectedVersion::Exact(n) => current == Some(n),
    };
    if ok {
        return Ok(());
    }
    Err(Error::VersionConflict {
        stream: stream.to_owned(),
        expected: match expected {
            ExpectedVersion::Any => "any".into(),
            ExpectedVersion::NoStream => "no_stream".into(),
            ExpectedVersion::Exact(n) => n.to_string(),
        },
        actual: current,
    })
}
