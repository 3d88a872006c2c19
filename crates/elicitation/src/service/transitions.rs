//! Create, respond and cancel: the state machine's writes.
//!
//! A transition of one elicitation holds that elicitation's lock from its check
//! until the projection has applied its event, and appends with the stream's
//! expected version, so exactly one terminal event is ever written: a loser of a
//! race sees the winner's state (`already_resolved` or `expired`), and a conflict
//! with a writer outside this process is resolved by reading the stream.

use std::sync::Arc;

use lighthouse_event_store::{Error as StoreError, ExpectedVersion, NewEvent};
use lighthouse_security::{Caller, Role};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::sync::Notify;
use tracing::Instrument;

use super::{ElicitationService, Shared, require_role};
use crate::error::{Error, Result};
use crate::events::{self, Requested, Resolved};
use crate::record::{Action, Elicitation, Status};
use crate::request::{
    CancelRequest, CreateRequest, RespondAction, RespondRequest, check_reason_only,
    check_request_id,
};

/// The result of a create.
#[derive(Debug, Clone)]
pub struct Created {
    /// The record (pending, unless a retried create finds it resolved since).
    pub record: Arc<Elicitation>,
    /// `true` when an earlier create with the same idempotency key produced it.
    pub replayed: bool,
}

/// Roles that may elicit, respond, cancel and use the mailbox.
pub(crate) const ACTING_ROLES: &[Role] = &[Role::Agent, Role::Admin];

/// Removes a create's in-flight marker and wakes retries waiting on it.
struct InFlight {
    shared: Arc<Shared>,
    key: Option<(String, String)>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(k) = self.key.take()
            && let Some(n) = self.shared.creating.lock().remove(&k)
        {
            n.notify_waiters();
        }
    }
}

/// Removes a create's handoff if its event was not applied (the create failed;
/// applying the event takes the handoff).
struct HandoffGuard<'a> {
    shared: &'a Shared,
    id: Option<Arc<str>>,
}

impl Drop for HandoffGuard<'_> {
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            self.shared.state.lock().proj.handoff.remove(&id);
        }
    }
}

/// The error for acting on a terminal elicitation.
pub(crate) fn terminal_error(r: &Elicitation) -> Error {
    if r.status == Status::Expired {
        Error::Expired {
            id: r.id.to_string(),
        }
    } else {
        Error::AlreadyResolved {
            id: r.id.to_string(),
            status: r.status,
        }
    }
}

impl ElicitationService {
    /// Creates an elicitation from `caller` (`POST /v1/elicitations`).
    ///
    /// `request_id` becomes the events' `correlation_id`. With an
    /// `idempotency_key`, a retry within [`Limits::idempotency_ttl_ms`](crate::Limits)
    /// returns the first result (`replayed: true`); the same key with a different
    /// request is `invalid_request`.
    ///
    /// A keyed create, once it has claimed its key, runs to its end in a task
    /// of its own, even if the caller stops waiting for it (a client that
    /// timed out and closed its connection): its key stays claimed until its
    /// event is applied or has certainly failed, so a retry with the key waits
    /// for it and gets its result. Were the create dropped with its event
    /// already queued for the writer, the key would be released before the
    /// event is applied, and the retry would create a second elicitation.
    /// Everything before the claim (the checks, the wait for a concurrent
    /// create with the same key) stays in the caller and ends with it.
    pub async fn create(
        &self,
        caller: &Caller,
        request_id: &str,
        req: CreateRequest,
        idempotency_key: Option<&str>,
    ) -> Result<Created> {
        let s = &*self.shared;
        require_role(caller, ACTING_ROLES, "this role may not elicit")?;
        check_request_id(request_id)?;
        let timeout = req.check(&s.limits)?;
        let Some(key) = idempotency_key else {
            return self
                .create_claimed(caller, request_id, req, timeout, None)
                .await;
        };
        self.check_idempotency_key(key)?;
        // A retry gets the first result before anything that may have changed
        // since (the target's registration, schema limits) is looked at again.
        let hash = request_hash(&req);
        if let Some(first) = self.claim_key(caller, key, Some(&hash)).await? {
            return Ok(Created {
                record: first,
                replayed: true,
            });
        }
        // Claimed (no await since): from here the create is not the caller's
        // to cancel. The marker goes when the task ends, however it ends.
        let in_flight = InFlight {
            shared: self.shared.clone(),
            key: Some((caller.agent.clone(), key.to_owned())),
        };
        let (svc, caller, request_id) = (self.clone(), caller.clone(), request_id.to_owned());
        let keyed = (key.to_owned(), hash);
        let run = tokio::spawn(
            async move {
                let _in_flight = in_flight;
                svc.create_claimed(&caller, &request_id, req, timeout, Some(keyed))
                    .await
            }
            .in_current_span(),
        );
        match run.await {
            Ok(r) => r,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            // The runtime is shutting down.
            Err(_) => Err(Error::Closed),
        }
    }

    /// The create after its checks and, for a keyed one, its claim (`keyed`:
    /// the idempotency key and the request's hash, recorded in the event).
    async fn create_claimed(
        &self,
        caller: &Caller,
        request_id: &str,
        req: CreateRequest,
        timeout: u64,
        keyed: Option<(String, String)>,
    ) -> Result<Created> {
        let s = &*self.shared;
        if !s.directory.is_active(&req.to) {
            return Err(Error::NotFound { what: "agent" });
        }
        let profile = req.schema_profile.unwrap_or_default();
        let compiled =
            s.schemas
                .compile(profile, &req.requested_schema, &s.limits, &s.retrievals)?;
        let now = s.clock.now();
        let id = events::new_id("el_", now);
        let data = Requested {
            id: id.clone(),
            from: caller.agent.clone(),
            to: req.to,
            message: req.message,
            requested_schema: req.requested_schema,
            schema_profile: profile,
            created_at: now,
            expires_at: now.add_millis(i64::try_from(timeout).unwrap_or(i64::MAX)),
            metadata: req
                .metadata
                .unwrap_or_else(|| Value::Object(Default::default())),
            idempotency_key: keyed.as_ref().map(|(k, _)| k.clone()),
            request_hash: keyed.map(|(_, h)| h),
        };
        let key: Arc<str> = Arc::from(id.as_str());
        let value = data.to_value();
        {
            let mut st = s.state.lock();
            // Creates past this check whose events are not applied yet hold
            // a handoff each: they count, or a burst of concurrent creates
            // would all pass and overshoot the limit.
            if st.proj.pending_count() + st.proj.handoff.len() >= s.limits.max_pending {
                return Err(Error::Capacity {
                    what: "pending elicitations",
                    limit: s.limits.max_pending,
                });
            }
            let handoff = crate::projection::Handoff {
                compiled,
                requested: Some(data),
            };
            st.proj.handoff.insert(key.clone(), handoff);
        }
        let mut handoff = HandoffGuard {
            shared: s,
            id: Some(key),
        };
        let data = value;
        let ev = NewEvent::new(events::elicitation_stream(&id), events::REQUESTED, data)
            .with_agent(caller.agent.as_str())
            .with_correlation_id(request_id)
            .expect(ExpectedVersion::NoStream);
        self.shared.append_applied(vec![ev]).await?;
        handoff.id = None;
        let record = s.state.lock().proj.entry(&id).map(|e| e.record.clone());
        match record {
            Some(record) => Ok(Created {
                record,
                replayed: false,
            }),
            None => self.read_from_log(&id).map(|r| Created {
                record: Arc::new(r),
                replayed: false,
            }),
        }
    }

    /// The first result of an earlier create by `caller` with this idempotency
    /// key and the same request, if there is one within the key's lifetime;
    /// the key with a different request is `invalid_request`. It does not wait
    /// for a create still in flight ([`create`](Self::create) does). A gate in
    /// front of `create` (a feature flag) asks this first, so that a retry gets
    /// its first result even after the gate has closed.
    pub fn replay(
        &self,
        caller: &Caller,
        key: &str,
        req: &CreateRequest,
    ) -> Result<Option<Arc<Elicitation>>> {
        self.check_idempotency_key(key)?;
        let s = &*self.shared;
        let first = {
            let st = s.state.lock();
            st.proj
                .idempotent(&caller.agent, key, s.clock.now())
                .map(|rec| (rec.id.clone(), rec.hash.clone()))
        };
        let Some((id, first_hash)) = first else {
            return Ok(None);
        };
        if first_hash.as_deref() != Some(request_hash(req).as_str()) {
            return Err(Error::invalid(
                "/Idempotency-Key",
                "this idempotency key was used with a different request",
            ));
        }
        self.record_of(&id).map(Some)
    }

    fn check_idempotency_key(&self, k: &str) -> Result<()> {
        let max = self.shared.limits.max_idempotency_key_bytes;
        if k.is_empty() || k.len() > max {
            return Err(Error::invalid(
                "/Idempotency-Key",
                format!("the idempotency key must be 1 to {max} bytes"),
            ));
        }
        Ok(())
    }

    /// Waits out a concurrent create with the same key; returns the first result
    /// if there is one, else marks this create as the one in flight.
    async fn claim_key(
        &self,
        caller: &Caller,
        key: &str,
        hash: Option<&str>,
    ) -> Result<Option<Arc<Elicitation>>> {
        let s = &*self.shared;
        let k = (caller.agent.clone(), key.to_owned());
        loop {
            let waiter: Arc<Notify>;
            let notified;
            {
                let mut creating = s.creating.lock();
                let first = {
                    let st = s.state.lock();
                    st.proj
                        .idempotent(&caller.agent, key, s.clock.now())
                        .map(|rec| (rec.id.clone(), rec.hash.clone()))
                };
                if let Some((id, first_hash)) = first {
                    if first_hash.as_deref() != hash {
                        return Err(Error::invalid(
                            "/Idempotency-Key",
                            "this idempotency key was used with a different request",
                        ));
                    }
                    drop(creating);
                    return self.record_of(&id).map(Some);
                }
                match creating.get(&k) {
                    Some(n) => waiter = n.clone(),
                    None => {
                        creating.insert(k, Arc::new(Notify::new()));
                        return Ok(None);
                    }
                }
                // Created under the lock, before the marker can be removed, so
                // the wake-up of `notify_waiters` cannot be missed.
                notified = waiter.notified();
            }
            notified.await;
        }
    }

    /// Responds to an elicitation as its target (`POST .../respond`).
    pub async fn respond(
        &self,
        caller: &Caller,
        request_id: &str,
        id: &str,
        req: RespondRequest,
    ) -> Result<Arc<Elicitation>> {
        require_role(caller, ACTING_ROLES, "this role may not respond")?;
        check_request_id(request_id)?;
        req.check(&self.shared.limits)?;
        let act = match req.action {
            RespondAction::Accept => Act::Accept(req.content.unwrap_or(Value::Null)),
            RespondAction::Decline => Act::Decline(req.reason),
        };
        self.act(caller, request_id, id, act).await
    }

    /// Cancels an elicitation as its requester (`POST .../cancel`).
    pub async fn cancel(
        &self,
        caller: &Caller,
        request_id: &str,
        id: &str,
        req: CancelRequest,
    ) -> Result<Arc<Elicitation>> {
        require_role(caller, ACTING_ROLES, "this role may not cancel")?;
        check_request_id(request_id)?;
        check_reason_only(req.reason.as_deref(), &self.shared.limits)?;
        self.act(caller, request_id, id, Act::Cancel(req.reason))
            .await
    }

    async fn act(
        &self,
        caller: &Caller,
        request_id: &str,
        id: &str,
        act: Act,
    ) -> Result<Arc<Elicitation>> {
        let s = &*self.shared;
        let mut waited = false;
        let sync = loop {
            let held = {
                let st = s.state.lock();
                match st.proj.entry(id) {
                    Some(e) => {
                        permitted(&e.record, caller, &act)?;
                        match &e.live {
                            Some(live) => Some(live.sync.clone()),
                            None => return Err(terminal_error(&e.record)),
                        }
                    }
                    None => None,
                }
            };
            match held {
                Some(sync) => break sync,
                None => {
                    let r = self.read_from_log(id)?;
                    permitted(&r, caller, &act)?;
                    if r.status.is_terminal() || waited {
                        return Err(terminal_error(&r));
                    }
                    // Pending in the log and not in memory: its create is
                    // written but not applied yet (pending ones are never
                    // evicted). Act once the projection has it.
                    s.wait_applied_head().await?;
                    waited = true;
                }
            }
        };
        let _guard = sync.lock.lock().await;
        let (record, version, cause, compiled, profile) = {
            let st = s.state.lock();
            let Some(e) = st.proj.entry(id) else {
                // Resolved by the winner of a race while this call waited for
                // the lock, and already evicted (`max_retained_resolved`): the
                // loser gets the 409 it would have got a moment earlier, not
                // a `NotFound`.
                drop(st);
                let r = self.read_from_log(id)?;
                permitted(&r, caller, &act)?;
                return Err(terminal_error(&r));
            };
            let Some(live) = &e.live else {
                return Err(terminal_error(&e.record));
            };
            (
                e.record.clone(),
                e.version,
                e.requested_event_id.to_string(),
                live.compiled.clone(),
                e.profile,
            )
        };
        let now = s.clock.now();
        if now >= record.expires_at {
            s.timer_wake.notify_one();
            return Err(Error::Expired { id: id.to_owned() });
        }
        if let Act::Accept(content) = &act {
            let compiled = match compiled {
                Some(c) => c,
                None => {
                    // After a restart: compile once, keep it for the next answer.
                    let c = s.schemas.compile(
                        profile,
                        &record.requested_schema,
                        &s.limits,
                        &s.retrievals,
                    )?;
                    if let Some(live) = s
                        .state
                        .lock()
                        .proj
                        .entry_mut(id)
                        .and_then(|e| e.live.as_mut())
                    {
                        live.compiled = Some(c.clone());
                    }
                    c
                }
            };
            compiled.check(content)?;
        }
        let (action, content, reason) = match act {
            Act::Accept(c) => (Action::Accept, Some(c), None),
            Act::Decline(r) => (Action::Decline, None, r),
            Act::Cancel(r) => (Action::Cancel, None, r),
        };
        let data = Resolved {
            id: record.id.to_string(),
            from: record.from.to_string(),
            to: record.to.to_string(),
            resolved_at: now,
            content,
            reason,
            by: Some(caller.agent.clone()),
        };
        let stream = events::elicitation_stream(id);
        let build = || {
            NewEvent::new(
                stream.as_str(),
                events::terminal_type(action),
                data.to_value(),
            )
            .with_agent(caller.agent.as_str())
            .with_correlation_id(request_id)
            .with_causation_id(cause.as_str())
        };
        append_terminal(&self.shared, id, build, version).await?;
        self.record_of(id)
    }

    /// The current record of `id`, from memory or, if no longer held, the log.
    pub(crate) fn record_of(&self, id: &str) -> Result<Arc<Elicitation>> {
        if let Some(e) = self.shared.state.lock().proj.entry(id) {
            return Ok(e.record.clone());
        }
        self.read_from_log(id).map(Arc::new)
    }

    /// Folds `id`'s stream from the log.
    pub(crate) fn read_from_log(&self, id: &str) -> Result<Elicitation> {
        if !events::is_elicitation_id(id) {
            return Err(Error::NotFound {
                what: "elicitation",
            });
        }
        events::read_back(&self.shared.store, id)?.ok_or(Error::NotFound {
            what: "elicitation",
        })
    }
}

/// What an actor does to a pending elicitation.
pub(crate) enum Act {
    Accept(Value),
    Decline(Option<String>),
    Cancel(Option<String>),
}

/// Visibility first (a third party learns nothing), then the role in it.
fn permitted(r: &Elicitation, caller: &Caller, act: &Act) -> Result<()> {
    if !r.involves(&caller.agent) {
        return Err(Error::NotFound {
            what: "elicitation",
        });
    }
    match act {
        Act::Accept(_) | Act::Decline(_) if *r.to != *caller.agent => Err(Error::Forbidden {
            reason: "only the target may respond",
        }),
        Act::Cancel(_) if *r.from != *caller.agent => Err(Error::Forbidden {
            reason: "only the requester may cancel",
        }),
        _ => Ok(()),
    }
}

/// Appends a terminal event expecting `version` and waits until it is applied;
/// on a conflict, reads the stream: a terminal event there is the winner (its
/// error is returned), anything else was a foreign event and the append is
/// retried at the new version.
pub(crate) async fn append_terminal(
    s: &Arc<Shared>,
    id: &str,
    build: impl Fn() -> NewEvent,
    mut version: u64,
) -> Result<u64> {
    // The event is built per attempt: the first one (almost always the only one)
    // moves it into the store without a copy.
    for _ in 0..8 {
        match s
            .append_applied(vec![build().expect(ExpectedVersion::Exact(version))])
            .await
        {
            Ok(seq) => return Ok(seq),
            Err(StoreError::VersionConflict { actual, .. }) => {
                if let Some(err) = winner(s, id)? {
                    return Err(err);
                }
                version = actual.unwrap_or(version);
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(Error::Store(StoreError::VersionConflict {
        stream: events::elicitation_stream(id),
        expected: version.to_string(),
        actual: s.store.stream_version(&events::elicitation_stream(id)),
    }))
}

/// The error a loser of a race gets, if the stream holds a terminal event.
fn winner(s: &Shared, id: &str) -> Result<Option<Error>> {
    Ok(events::read_back(&s.store, id)?
        .filter(|r| r.status.is_terminal())
        .map(|r| terminal_error(&r)))
}

/// SHA-256 of the create request, hex.
fn request_hash(req: &CreateRequest) -> String {
    let bytes = serde_json::to_vec(req).unwrap_or_default();
    hex::encode(Sha256::digest(&bytes))
}
