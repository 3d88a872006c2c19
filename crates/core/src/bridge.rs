//! [`Bridge`]: opening, admission, health and shutdown.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use lighthouse_elicitation::{ElicitationService, ServiceOptions};
use lighthouse_event_store::{AppendObserver, EventStore, SharedClock, StoreOptions};
use lighthouse_flags::{FlagStore, FlagStoreOptions};
use lighthouse_metrics::{Metrics, MetricsConfig, RateAction, ViolationKind};
use lighthouse_security::{Action, Caller, Gate, Refusal, Request};
use parking_lot::Mutex;
use tokio::task::JoinHandle;

use crate::api::{ErrorCode, Health, Problem};
use crate::config::BridgeConfig;
use crate::hooks::{MetricsHooks, RegistryDirectory};

/// The flag that gates elicitation creation (PROTOCOL.md sections 1 and 4).
pub const ELICITATION_FLAG: &str = "elicitation_enabled";

/// Why a bridge failed to open.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The event store.
    #[error("event store: {0}")]
    Store(#[from] lighthouse_event_store::Error),
    /// Security state.
    #[error("security: {0}")]
    Security(#[from] lighthouse_security::Error),
    /// Flags.
    #[error("flags: {0}")]
    Flags(#[from] lighthouse_flags::Error),
    /// Elicitation state.
    #[error("elicitations: {0}")]
    Elicitation(#[from] lighthouse_elicitation::Error),
    /// Metrics registry.
    #[error("metrics: {0}")]
    Metrics(#[from] lighthouse_metrics::Error),
    /// The data directory.
    #[error("data directory {path}: {source}")]
    Io {
        /// The path.
        path: std::path::PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

pub(crate) struct Inner {
    pub(crate) store: EventStore,
    pub(crate) gate: Gate,
    pub(crate) flags: FlagStore,
    pub(crate) elicitations: ElicitationService,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) clock: SharedClock,
    pub(crate) public_url: String,
    /// `true` once [`Bridge::begin_shutdown`] was called; long-polls watch it.
    shutting_down: tokio::sync::watch::Sender<bool>,
    /// The last store write probe of readiness and when it ran (see
    /// [`Bridge::health`]).
    store_probe: tokio::sync::Mutex<Option<(std::time::Instant, bool)>>,
    /// The integrity walk in progress, if any: later callers wait for its
    /// answer instead of starting another (see [`Bridge::verify`]).
    pub(crate) verify_walk: Arc<Mutex<crate::operations::VerifySlot>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    /// Writes accepted nonces to the journal every flush interval (so a replay
    /// is refused across a restart); stops when dropped.
    _nonce_flusher: lighthouse_security::NonceFlusher,
}

impl Drop for Inner {
    fn drop(&mut self) {
        for t in self.tasks.lock().drain(..) {
            t.abort();
        }
    }
}

/// How long a readiness probe of the store is reused (see [`Bridge::health`]).
pub const STORE_PROBE_EVERY: Duration = Duration::from_secs(1);

/// A readiness probe whose store flush takes longer than this answers "not
/// writable" instead of hanging with the disk (a load balancer's probe has a
/// timeout of its own, and every other probe waits for this one).
pub const STORE_PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The engine: one store, the security gate, flags, elicitations and metrics.
/// Cheap to clone.
///
/// Every operation takes an authenticated [`Caller`] (from [`Bridge::admit`], or
/// built by trusted in-process code), never a name from a request body.
#[derive(Clone)]
pub struct Bridge {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Bridge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bridge")
            .field("head_seq", &self.inner.store.head_seq())
            .finish_non_exhaustive()
    }
}

struct StoreMetrics(Arc<Metrics>);

impl AppendObserver for StoreMetrics {
    fn appended(&self, events: usize, latency: Duration, head_seq: u64) {
        self.0.store_append(events as u64, latency);
        self.0.set_head_seq(head_seq);
    }

    fn committed(&self, _events: usize, elapsed: Duration) {
        self.0.store_commit(elapsed);
    }
}

impl Bridge {
    /// Opens the bridge on `config.data_dir`: the store (rebuilding every
    /// projection from the log), the security gate, flags and elicitations, and
    /// starts the expiry timer and housekeeping. Elicitations whose deadline
    /// passed while the bridge was down are expired before this returns.
    pub async fn open(config: BridgeConfig) -> Result<Bridge, OpenError> {
        let dir = &config.data_dir;
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| OpenError::Io { path, source }
        };
        // It holds the store, the nonces and the flags: the owner's only.
        lighthouse_event_store::create_private_dir(dir).map_err(io(dir))?;
        let metrics = Arc::new(Metrics::new(MetricsConfig::new())?);
        let store_options = StoreOptions::new(&config.master_key.store_key())
            .durability(config.durability)
            .clock(config.clock.clone())
            .observer(Arc::new(StoreMetrics(metrics.clone())));
        let store = EventStore::open(dir.join("store"), store_options)?;
        // A damaged store refuses writes (and its projections could not be
        // rebuilt faithfully): a bridge on it would serve a partial state and
        // fail every write, so it does not start; the offline tools work on
        // it (`store verify`, `store restore` over it; `store backup` only
        // while every record still reads and chains: docs/EVENT_STORE.md).
        if let Some(&seq) = store.damaged_on_open().first() {
            return Err(OpenError::Store(lighthouse_event_store::Error::Damaged {
                seq,
            }));
        }
        metrics.set_head_seq(store.head_seq());
        let nonce_dir = dir.join("nonces");
        {
            #[cfg(unix)]
            use std::os::unix::fs::DirBuilderExt;
            let mut b = std::fs::DirBuilder::new();
            b.recursive(true);
            // Only the bridge reads what its nonce journal holds.
            #[cfg(unix)]
            b.mode(0o700);
            b.create(&nonce_dir).map_err(io(&nonce_dir))?;
        }
        let gate = Gate::open(
            store.clone(),
            config.master_key.clone(),
            Some(&nonce_dir),
            config.clock.clone(),
            config.security,
        )?;
        let flags = FlagStore::open(
            store.clone(),
            FlagStoreOptions::new()
                .limits(config.flags)
                .clock(config.clock.clone()),
        )?;
        let elicitations = ElicitationService::open(
            store.clone(),
            ServiceOptions::new()
                .limits(config.elicitation.clone())
                .clock(config.clock.clone())
                .hooks(Arc::new(MetricsHooks::new(metrics.clone())))
                .directory(Arc::new(RegistryDirectory(gate.registry().clone()))),
        )
        .await?;
        let nonce_flusher =
            gate.start_nonce_flusher(lighthouse_security::DEFAULT_FLUSH_INTERVAL)?;
        let bridge = Bridge {
            inner: Arc::new(Inner {
                store,
                gate,
                flags,
                elicitations,
                metrics,
                clock: config.clock.clone(),
                public_url: config.public_url.clone(),
                shutting_down: tokio::sync::watch::Sender::new(false),
                store_probe: tokio::sync::Mutex::new(None),
                verify_walk: Arc::default(),
                tasks: Mutex::new(Vec::new()),
                _nonce_flusher: nonce_flusher,
            }),
        };
        bridge.refresh_store_gauges();
        let housekeeping = tokio::spawn(housekeeping(
            Arc::downgrade(&bridge.inner),
            config.housekeeping_interval,
        ));
        bridge.inner.tasks.lock().push(housekeeping);
        Ok(bridge)
    }

    /// The event store.
    pub fn store(&self) -> &EventStore {
        &self.inner.store
    }

    /// The security gate (registry, tokens, nonces, limits).
    pub fn gate(&self) -> &Gate {
        &self.inner.gate
    }

    /// The flag store.
    pub fn flags(&self) -> &FlagStore {
        &self.inner.flags
    }

    /// The elicitation service.
    pub fn elicitations(&self) -> &ElicitationService {
        &self.inner.elicitations
    }

    /// The metrics registry.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.inner.metrics
    }

    /// The URL written into credential files.
    pub fn public_url(&self) -> &str {
        &self.inner.public_url
    }

    /// The clock.
    pub fn clock(&self) -> &SharedClock {
        &self.inner.clock
    }

    /// Runs the seven checks of PROTOCOL.md 2.2 for a request needing `action`.
    /// A refusal is counted in the metrics, its sampled audit records are
    /// appended to the log (in the background), and it is returned as the
    /// protocol problem (`retry_after_s` set for `rate_limited`).
    pub fn admit(&self, req: &Request<'_>, action: Action) -> Result<Caller, Problem> {
        match self.inner.gate.admit(req, action) {
            Ok(a) => Ok(a.caller),
            Err(denial) => {
                let r = &denial.refusal;
                if let Some(kind) = ViolationKind::parse(r.code()) {
                    self.inner.metrics.security_violation(kind);
                }
                if let Refusal::RateLimited { class, .. } = r
                    && let Some(a) = RateAction::parse(class.as_str())
                {
                    self.inner.metrics.rate_limited(a);
                }
                if !denial.audit.is_empty() {
                    let store = self.inner.store.clone();
                    tokio::spawn(async move {
                        if let Err(e) = store.append(denial.audit).await {
                            tracing::warn!(error = %e, "could not record a security violation");
                        }
                    });
                }
                Err(refusal_problem(r))
            }
        }
    }

    /// A caller for in-process use (tools, tests): the registered agent's role
    /// and current key. `None` when the agent is unknown or revoked.
    pub fn caller_for(&self, agent: &str) -> Option<Caller> {
        let rec = self.inner.gate.registry().get(agent)?;
        (!rec.revoked).then_some(Caller {
            agent: rec.agent,
            role: rec.role,
            key_id: rec.key_id,
        })
    }

    /// Readiness: the store accepts writes, the expiry timer runs, the bridge is
    /// not shutting down.
    ///
    /// The store is probed with a flush (a sync to disk) at most once per
    /// [`STORE_PROBE_EVERY`]; callers in between share the last answer, and
    /// concurrent callers wait for one probe. `/health/ready` needs no
    /// credentials, so a flood of it must not become a flood of syncs. The
    /// answer says only "not writable"; the cause goes to the log.
    pub async fn health(&self) -> Health {
        let mut components = BTreeMap::new();
        let writable = {
            let mut probe = self.inner.store_probe.lock().await;
            match *probe {
                Some((at, ok)) if at.elapsed() < STORE_PROBE_EVERY => ok,
                _ => {
                    let ok =
                        match tokio::time::timeout(STORE_PROBE_TIMEOUT, self.inner.store.flush())
                            .await
                        {
                            Ok(Ok(())) => true,
                            Ok(Err(e)) => {
                                tracing::warn!(error = %e, "readiness: the store is not writable");
                                false
                            }
                            Err(_) => {
                                tracing::warn!(
                                    timeout_ms = STORE_PROBE_TIMEOUT.as_millis() as u64,
                                    "readiness: the store's flush did not finish in time \
                                 (a stalled disk or a full write queue)"
                                );
                                false
                            }
                        };
                    *probe = Some((std::time::Instant::now(), ok));
                    ok
                }
            }
        };
        let store = if writable { "ok" } else { "not writable" };
        components.insert("store".to_owned(), store.to_owned());
        let timer = if !self.inner.elicitations.is_running() {
            "expiry timer stopped"
        } else if self.inner.elicitations.is_applier_failing() {
            "elicitation state cannot read the log"
        } else {
            "ok"
        };
        components.insert("expiry_timer".to_owned(), timer.to_owned());
        let shutdown = if self.is_shutting_down() {
            "shutting down"
        } else {
            "ok"
        };
        components.insert("lifecycle".to_owned(), shutdown.to_owned());
        let ok = components.values().all(|v| v == "ok");
        Health {
            status: if ok { "ok" } else { "unavailable" }.to_owned(),
            components,
        }
    }

    /// Whether [`begin_shutdown`](Self::begin_shutdown) was called.
    pub fn is_shutting_down(&self) -> bool {
        *self.inner.shutting_down.borrow()
    }

    /// Marks the bridge as shutting down: readiness turns unavailable, and
    /// long-polls (`wait_ms` on an elicitation or the messages, the MCP tools
    /// that wait) answer at once with what they have instead of holding the
    /// shutdown grace for up to their whole wait.
    pub fn begin_shutdown(&self) {
        self.inner.shutting_down.send_replace(true);
    }

    /// Finishes a shutdown: saves the elicitation snapshot and flushes the store.
    pub async fn shutdown(&self) -> Result<(), Problem> {
        self.begin_shutdown();
        if let Err(e) = self.inner.elicitations.save_snapshot().await {
            tracing::warn!(error = %e, "could not save the elicitation snapshot");
        }
        if let Some(e) = self.inner.gate.flush_audit() {
            let _ = self.inner.store.append(vec![e]).await;
        }
        if let Err(e) = self.inner.gate.nonces().flush() {
            tracing::warn!(error = %e, "could not write the nonce journal");
        }
        self.inner
            .store
            .flush()
            .await
            .map_err(crate::problem::from_store)
    }

    /// A long-poll: `poll(wait_ms)` waits up to `wait_ms` for something to
    /// answer. With no wait, or once the bridge begins shutting down (at once if
    /// it already has), `poll(0)` answers with what there is now.
    pub(crate) async fn long_poll<T, F>(&self, wait_ms: u64, poll: impl Fn(u64) -> F) -> T
    where
        F: std::future::Future<Output = T>,
    {
        if wait_ms > 0 {
            let mut rx = self.inner.shutting_down.subscribe();
            tokio::select! {
                biased;
                _ = rx.wait_for(|down| *down) => {}
                r = poll(wait_ms) => return r,
            }
        }
        poll(0).await
    }

    pub(crate) fn refresh_store_gauges(&self) {
        if let Ok(s) = self.inner.store.stats() {
            self.inner.metrics.set_store_size_bytes(s.size_bytes);
            // The head was read before the walk of the store's files, so
            // appends may have passed it since (and their observer set theirs):
            // the gauge only ever takes a higher head (`set_head_seq`).
            self.inner.metrics.set_head_seq(s.head_seq);
        }
    }

    /// `Some(problem)` when `caller`'s role may not perform `action`.
    pub(crate) fn check(&self, caller: &Caller, action: Action) -> Result<(), Problem> {
        lighthouse_security::authorize(caller, action).map_err(|r| refusal_problem(&r))
    }
}

/// The protocol problem for a security refusal.
pub fn refusal_problem(r: &Refusal) -> Problem {
    let code = ErrorCode::parse(r.code()).unwrap_or(ErrorCode::Unauthenticated);
    let detail = match r {
        Refusal::Forbidden {
            action: Action::AppendReservedEvent,
        } => crate::events::RESERVED_DETAIL.to_owned(),
        _ => r.to_string(),
    };
    let mut p = Problem::new(code, detail);
    p.retry_after_s = r.retry_after_secs();
    p
}

async fn housekeeping(inner: std::sync::Weak<Inner>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut since_audit = Duration::ZERO;
    loop {
        tick.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        let bridge = Bridge { inner };
        bridge.inner.gate.housekeeping();
        bridge.refresh_store_gauges();
        since_audit += every;
        if since_audit >= Duration::from_secs(60) {
            since_audit = Duration::ZERO;
            if let Some(e) = bridge.inner.gate.flush_audit()
                && let Err(err) = bridge.inner.store.append(vec![e]).await
            {
                tracing::warn!(error = %err, "could not record the audit summary");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_bridge_does_not_start_on_a_damaged_store() {
        let dir = tempfile::tempdir().unwrap();
        let key = lighthouse_security::MasterKey::generate().unwrap();
        {
            let bridge = Bridge::open(BridgeConfig::new(dir.path(), key.clone()))
                .await
                .unwrap();
            for i in 0..3 {
                let e = lighthouse_event_store::NewEvent::new(
                    "notes",
                    "note.added",
                    serde_json::json!({"i": i}),
                );
                bridge.store().append_one(e).await.unwrap();
            }
            bridge.shutdown().await.unwrap();
            let head = bridge.store().head_seq();
            bridge
                .store()
                .tamper_raw(head - 1, Some(&[1, 2, 3]))
                .unwrap();
        }
        // sled lets go of its directory lock from a background thread.
        tokio::time::sleep(Duration::from_millis(500)).await;
        match Bridge::open(BridgeConfig::new(dir.path(), key)).await {
            Err(OpenError::Store(lighthouse_event_store::Error::Damaged { .. })) => {}
            Err(e) => panic!("another error: {e}"),
            Ok(_) => panic!("opened on a damaged store"),
        }
    }

    #[tokio::test]
    async fn a_refresh_never_sets_the_head_gauge_back() {
        let dir = tempfile::tempdir().unwrap();
        let key = lighthouse_security::MasterKey::generate().unwrap();
        let bridge = Bridge::open(BridgeConfig::new(dir.path(), key))
            .await
            .unwrap();
        let e = lighthouse_event_store::NewEvent::new("notes", "note.added", serde_json::json!({}));
        bridge.store().append_one(e).await.unwrap();
        let head = bridge.store().head_seq();
        let gauge = || bridge.metrics().stats(1).unwrap().store.head_seq;
        assert_eq!(gauge(), head, "the writer's observer set it");
        // What the observer of appends committed after the refresh read the
        // head looks like: a higher head already on the gauge.
        bridge.metrics().set_head_seq(head + 3);
        bridge.refresh_store_gauges();
        assert_eq!(gauge(), head + 3);
    }

    #[tokio::test]
    async fn readiness_syncs_the_store_at_most_once_per_probe_interval() {
        let dir = tempfile::tempdir().unwrap();
        let key = lighthouse_security::MasterKey::generate().unwrap();
        let bridge = Bridge::open(BridgeConfig::new(dir.path(), key))
            .await
            .unwrap();
        let probed_at = || async { bridge.inner.store_probe.lock().await.map(|(at, _)| at) };
        assert!(bridge.health().await.is_ok());
        let first = probed_at().await.expect("the first check probes the store");
        for _ in 0..50 {
            assert_eq!(bridge.health().await.components["store"], "ok");
        }
        assert_eq!(
            probed_at().await,
            Some(first),
            "no new probe inside the interval"
        );
        *bridge.inner.store_probe.lock().await =
            Some((first.checked_sub(STORE_PROBE_EVERY).unwrap(), true));
        assert!(bridge.health().await.is_ok());
        assert!(
            probed_at().await.unwrap() > first,
            "a stale probe is redone"
        );
    }
}
