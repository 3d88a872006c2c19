//! [`ElicitationService`]: opening (snapshot + tail), the applier that follows the
//! log, and the shared state every operation works on.

mod applier;
mod drain;
mod mailbox;
mod queries;
mod replay;
mod subscribe;
mod timer;
mod transitions;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use lighthouse_event_store::{
    Error as StoreError, EventStore, Filter, NewEvent, Result as StoreResult, SharedClock,
    SystemClock,
};
use lighthouse_security::{Caller, Role};
use parking_lot::Mutex;
use tokio::sync::{Notify, oneshot, watch};
use tokio::task::JoinHandle;

pub use subscribe::AgentSubscription;
pub use transitions::Created;

use crate::error::{Error, Result};
use crate::hooks::{AnyAgent, Directory, Hooks, NoHooks};
use crate::limits::Limits;
use crate::notify::Subscribers;
use crate::projection::Projection;

/// The name the projection snapshot is saved under by default.
pub const DEFAULT_SNAPSHOT_NAME: &str = "elicitation-projection";

/// How to run the service. Build with [`ServiceOptions::new`] and the setters.
#[derive(Clone)]
pub struct ServiceOptions {
    limits: Limits,
    clock: SharedClock,
    hooks: Arc<dyn Hooks>,
    directory: Arc<dyn Directory>,
    snapshot_name: String,
}

impl std::fmt::Debug for ServiceOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceOptions")
            .field("limits", &self.limits)
            .field("snapshot_name", &self.snapshot_name)
            .finish_non_exhaustive()
    }
}

impl Default for ServiceOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl ServiceOptions {
    /// Default limits, the system clock, no hooks, every agent addressable.
    pub fn new() -> Self {
        ServiceOptions {
            limits: Limits::default(),
            clock: Arc::new(SystemClock),
            hooks: Arc::new(NoHooks),
            directory: Arc::new(AnyAgent),
            snapshot_name: DEFAULT_SNAPSHOT_NAME.into(),
        }
    }

    /// Limits (default [`Limits::default`]).
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// The clock for `created_at`, deadlines and expiry (give the store the same one).
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// Metrics hooks (default none).
    pub fn hooks(mut self, hooks: Arc<dyn Hooks>) -> Self {
        self.hooks = hooks;
        self
    }

    /// Which agents may be addressed (default every well-formed id).
    pub fn directory(mut self, directory: Arc<dyn Directory>) -> Self {
        self.directory = directory;
        self
    }

    /// The snapshot name (default [`DEFAULT_SNAPSHOT_NAME`]).
    pub fn snapshot_name(mut self, name: impl Into<String>) -> Self {
        self.snapshot_name = name.into();
        self
    }
}

/// The projection, under one short lock never held across an `.await`.
pub(crate) struct State {
    pub proj: Projection,
}

/// Waiters by the seq they wait for; the applier answers `Ok(seq)`.
pub(crate) type SeqWaiters = BTreeMap<u64, Vec<oneshot::Sender<StoreResult<u64>>>>;

/// Long-poll receivers by agent: the notify and how many wait on it.
pub(crate) type MailWaiters = HashMap<Arc<str>, (Arc<Notify>, usize)>;

pub(crate) struct Shared {
    pub store: EventStore,
    pub clock: SharedClock,
    pub limits: Limits,
    pub hooks: Arc<dyn Hooks>,
    pub directory: Arc<dyn Directory>,
    pub state: Mutex<State>,
    /// The live subscribers. A subscription registers while holding the state
    /// lock too (so at an exact log position); the applier publishes with only
    /// this lock, after applying.
    pub subs: Mutex<Subscribers>,
    /// The last seq the applier has applied (also `state.proj.applied_seq`),
    /// readable without the state lock.
    pub applied: AtomicU64,
    /// Writers waiting for the applier to reach their event's seq (a lock of
    /// its own, so waiting does not contend with the projection).
    pub seq_waiters: Mutex<SeqWaiters>,
    pub mail_waiters: Mutex<MailWaiters>,
    /// Wakes the expiry timer (a new earliest deadline, a `tick`, a shutdown).
    pub timer_wake: Notify,
    /// The number of pending elicitations, for drains.
    pub pending: watch::Sender<usize>,
    /// Creates in flight per (requester, idempotency key).
    pub creating: Mutex<HashMap<(String, String), Arc<Notify>>>,
    pub closed: AtomicBool,
    /// Set while the applier's last attempt to read the log failed (it
    /// retries every 100 ms); creates and responds wait for it meanwhile, so
    /// readiness reports it.
    pub applier_failing: AtomicBool,
    pub retrievals: Arc<AtomicU64>,
    pub schemas: crate::schema::SchemaCache,
    pub snapshot_name: String,
    pub snapshot_running: AtomicBool,
    /// The seq of the snapshot the service started from, if it used one.
    pub started_from: Option<u64>,
    /// The automatic snapshot in progress, if any.
    pub snapshot_task: Mutex<Option<JoinHandle<()>>>,
    /// Serializes snapshot writes; holds the seq of the newest one saved, so an
    /// older capture never replaces a newer snapshot.
    pub snapshot_saved: tokio::sync::Mutex<u64>,
}

impl Shared {
    /// Appends `events` and resolves with the last one's seq once the applier
    /// has applied it. The caller is woken once, by the applier (or by the
    /// writer with an error), instead of by the writer when the batch is
    /// durable and then again by the applier: the writer registers the wait
    /// on its own thread before the applier can see the events.
    pub(crate) async fn append_applied(
        self: &Arc<Self>,
        events: Vec<NewEvent>,
    ) -> StoreResult<u64> {
        let (tx, rx) = oneshot::channel();
        let shared = Arc::downgrade(self);
        self.store
            .append_then(events, move |outcome| {
                let seq = match outcome {
                    Ok(o) => o.events.last().map_or(0, |a| a.seq),
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                };
                match shared.upgrade() {
                    Some(shared) => shared.when_applied(seq, tx),
                    None => {
                        let _ = tx.send(Err(StoreError::Closed));
                    }
                }
            })
            .await?;
        rx.await.unwrap_or(Err(StoreError::Closed))
    }

    /// Answers `tx` with `seq` once the projection has applied it: at once if
    /// it has, else by the applier (with `Closed` if the service is closing).
    fn when_applied(&self, seq: u64, tx: oneshot::Sender<StoreResult<u64>>) {
        // Under the waiters' lock, which the applier takes after raising
        // `applied`: either the position shows here or the applier finds
        // this waiter.
        let mut waiters = self.seq_waiters.lock();
        if self.applied.load(Ordering::Acquire) >= seq {
            drop(waiters);
            let _ = tx.send(Ok(seq));
        } else if self.closed.load(Ordering::Acquire) {
            drop(waiters);
            let _ = tx.send(Err(StoreError::Closed));
        } else {
            waiters.entry(seq).or_default().push(tx);
        }
    }
}

/// How long an action on a create that is written but not applied yet waits
/// for the projection before answering `Error::Behind`.
pub(crate) const APPLY_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

impl Shared {
    /// Waits (at most [`APPLY_WAIT`]) until the projection has applied
    /// everything up to the log's head: a create that is in the log is then in
    /// memory. `Error::Behind` if it has not by then.
    pub(crate) async fn wait_applied_head(&self) -> Result<()> {
        match tokio::time::timeout(APPLY_WAIT, self.wait_applied(self.store.head_seq())).await {
            Ok(r) => r.map_err(Error::from),
            Err(_) => Err(Error::Behind),
        }
    }

    /// Waits until the projection has applied everything up to `seq`.
    pub(crate) async fn wait_applied(&self, seq: u64) -> StoreResult<()> {
        let (tx, rx) = oneshot::channel();
        self.when_applied(seq, tx);
        rx.await.unwrap_or(Err(StoreError::Closed)).map(drop)
    }
}

/// Checks that `caller` has one of `roles`.
pub(crate) fn require_role(caller: &Caller, roles: &[Role], what: &'static str) -> Result<()> {
    if roles.contains(&caller.role) {
        Ok(())
    } else {
        Err(Error::Forbidden { reason: what })
    }
}

/// Aborts the background tasks when the last service handle is dropped.
struct Tasks {
    handles: Mutex<Vec<JoinHandle<()>>>,
}

impl Drop for Tasks {
    fn drop(&mut self) {
        for h in self.handles.lock().drain(..) {
            h.abort();
        }
    }
}

/// The elicitation and mailbox service. Cheap to clone; clones share everything.
///
/// Opened on an [`EventStore`]; runs two tasks on the current Tokio runtime: the
/// applier (follows the log and updates the projection, wakes waiters and
/// subscribers) and the expiry timer. (A thread of its own for the applier was
/// measured and not kept: docs/PERFORMANCE.md, session 5.)
#[derive(Clone)]
pub struct ElicitationService {
    shared: Arc<Shared>,
    tasks: Arc<Tasks>,
}

impl std::fmt::Debug for ElicitationService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ElicitationService")
            .field("pending", &self.pending_count())
            .finish_non_exhaustive()
    }
}

impl ElicitationService {
    /// Opens the service: loads the snapshot (if any), applies the tail of the
    /// log, starts the applier and the expiry timer, and expires every
    /// elicitation whose deadline passed while the service was down, all before
    /// returning (so "ready" means those expiries are durable).
    pub async fn open(store: EventStore, options: ServiceOptions) -> Result<ElicitationService> {
        let limits = options.limits.clone();
        let mut proj = load_snapshot(&store, &options.snapshot_name, &limits);
        let started_from = (proj.applied_seq > 0).then_some(proj.applied_seq);
        proj.set_indexing(false);
        replay::replay(&store, &mut proj)?;
        proj.set_indexing(true);
        let pending = proj.pending_count();
        let applied = proj.applied_seq;
        let shared = Arc::new(Shared {
            store: store.clone(),
            clock: options.clock,
            hooks: options.hooks,
            directory: options.directory,
            state: Mutex::new(State { proj }),
            subs: Mutex::new(Subscribers::new(
                limits.max_subscriptions,
                limits.max_subscriptions_per_agent,
                limits.subscription_buffer,
                limits.subscription_buffer_bytes,
            )),
            applied: AtomicU64::new(applied),
            seq_waiters: Mutex::new(BTreeMap::new()),
            mail_waiters: Mutex::new(HashMap::new()),
            timer_wake: Notify::new(),
            pending: watch::Sender::new(pending),
            creating: Mutex::new(HashMap::new()),
            closed: AtomicBool::new(false),
            applier_failing: AtomicBool::new(false),
            retrievals: Arc::new(AtomicU64::new(0)),
            schemas: crate::schema::SchemaCache::new(limits.schema_cache_entries),
            snapshot_name: options.snapshot_name,
            snapshot_running: AtomicBool::new(false),
            started_from,
            snapshot_task: Mutex::new(None),
            snapshot_saved: tokio::sync::Mutex::new(0),
            limits,
        });
        let sub = store.subscribe(applied, Filter::all());
        let applier = tokio::spawn(applier::run(shared.clone(), sub));
        let service = ElicitationService {
            shared: shared.clone(),
            tasks: Arc::new(Tasks {
                handles: Mutex::new(vec![applier]),
            }),
        };
        timer::expire_overdue(&shared).await?;
        let timer = tokio::spawn(timer::run(shared.clone()));
        service.tasks.handles.lock().push(timer);
        shared
            .hooks
            .pending_changed(shared.state.lock().proj.pending_count());
        Ok(service)
    }

    /// Wakes the expiry timer so it looks at the clock now. With the system clock
    /// this is never needed; with a [`ManualClock`](lighthouse_event_store::ManualClock)
    /// call it after moving the clock.
    pub fn tick(&self) {
        self.shared.timer_wake.notify_one();
    }

    /// Elicitations currently pending.
    pub fn pending_count(&self) -> usize {
        self.shared.state.lock().proj.pending_count()
    }

    /// Open agent subscriptions.
    pub fn subscription_count(&self) -> usize {
        self.shared.subs.lock().len()
    }

    /// Whether the applier and the expiry timer are running (for readiness).
    pub fn is_running(&self) -> bool {
        !self.shared.closed.load(Ordering::Acquire)
            && self.tasks.handles.lock().iter().all(|h| !h.is_finished())
    }

    /// Whether the applier's last read of the log failed (it keeps retrying;
    /// meanwhile creates, responds and cancels wait for it). For readiness.
    pub fn is_applier_failing(&self) -> bool {
        self.shared.applier_failing.load(Ordering::Acquire)
    }

    /// The store position the in-memory state reflects.
    pub fn applied_seq(&self) -> u64 {
        self.shared.applied.load(Ordering::Acquire)
    }

    /// Saves a snapshot of the projection now; returns the seq it reflects.
    pub async fn save_snapshot(&self) -> Result<u64> {
        let capture = self.shared.state.lock().proj.capture();
        applier::write_snapshot(&self.shared, capture, applier::Urgency::Now).await
    }

    /// Saves a snapshot and stops the background tasks; returns once they are
    /// gone. Other clones of this handle then fail with [`Error::Closed`] where
    /// they need the tasks.
    pub async fn shutdown(self) -> Result<()> {
        let r = self.save_snapshot().await.map(|_| ());
        self.abort().await;
        r
    }

    /// Stops the background tasks without saving anything, as a crash would;
    /// returns once they are gone.
    pub async fn abort(self) {
        self.shared.closed.store(true, Ordering::Release);
        let handles: Vec<_> = self.tasks.handles.lock().drain(..).collect();
        for h in handles {
            h.abort();
            let _ = h.await;
        }
        // Only now: the applier, which starts automatic snapshots, is gone.
        let snapshot = self.shared.snapshot_task.lock().take();
        if let Some(h) = snapshot {
            h.abort();
            let _ = h.await;
        }
        self.shared.seq_waiters.lock().clear();
    }

    /// A canonical JSON rendering of the in-memory state (every held record with
    /// its positions, and the idempotency keys), for tests that compare a rebuild
    /// from a snapshot with a rebuild from the whole log.
    #[doc(hidden)]
    pub fn export_state(&self) -> serde_json::Value {
        self.shared.state.lock().proj.export()
    }

    /// The position of the snapshot this service started from (`None` when it
    /// replayed the whole log).
    pub fn started_from_snapshot(&self) -> Option<u64> {
        self.shared.started_from
    }

    /// How many schema reference retrievals were attempted (and refused).
    #[doc(hidden)]
    pub fn refused_retrievals(&self) -> u64 {
        self.shared.retrievals.load(Ordering::Relaxed)
    }

    /// Sizes of the bounded in-memory structures, for tests and diagnostics.
    #[doc(hidden)]
    pub fn memory_counts(&self) -> MemoryCounts {
        // One lock at a time: a create takes `creating` and then the state
        // lock, so holding the state lock while asking for `creating` could
        // deadlock against it (and the others' orders are theirs to keep).
        let creating = self.shared.creating.lock().len();
        let subscriptions = self.shared.subs.lock().len();
        let seq_waiters = self.shared.seq_waiters.lock().len();
        let mail_waiters = self.shared.mail_waiters.lock().len();
        let st = self.shared.state.lock();
        MemoryCounts {
            held_elicitations: st.proj.held_count(),
            pending: st.proj.pending_count(),
            idempotency_keys: st.proj.idempotency_len(),
            subscriptions,
            seq_waiters,
            mail_waiters,
            handoff: st.proj.handoff.len(),
            creating,
        }
    }
}

/// Sizes of the service's bounded in-memory structures.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryCounts {
    /// Elicitations held (pending plus retained terminal).
    pub held_elicitations: usize,
    /// Pending elicitations.
    pub pending: usize,
    /// Idempotency keys remembered.
    pub idempotency_keys: usize,
    /// Open subscriptions.
    pub subscriptions: usize,
    /// Distinct positions writers wait for.
    pub seq_waiters: usize,
    /// Agents with a long-poll waiting.
    pub mail_waiters: usize,
    /// Compiled schemas waiting for their `requested` event.
    pub handoff: usize,
    /// Keyed creates in flight.
    pub creating: usize,
}

fn load_snapshot(store: &EventStore, name: &str, limits: &Limits) -> Projection {
    match store.load_snapshot(name) {
        Ok(Some(snap)) => match Projection::from_snapshot(&snap.data, limits.clone()) {
            Ok(p) if p.applied_seq == snap.seq && snap.seq <= store.head_seq() => return p,
            Ok(_) => tracing::warn!(
                name,
                "snapshot position is inconsistent; rebuilding from the whole log"
            ),
            Err(e) => {
                tracing::warn!(name, error = %e, "snapshot unreadable; rebuilding from the whole log")
            }
        },
        Ok(None) => {}
        Err(e) => {
            tracing::warn!(name, error = %e, "snapshot unreadable; rebuilding from the whole log")
        }
    }
    Projection::new(limits.clone())
}
