//! The typed operations of the bridge: elicitations, messages, flags, agents,
//! sessions, operations. Each takes an authenticated [`Caller`] and the request
//! id, which becomes the `correlation_id` of the events it writes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use lighthouse_elicitation::{
    AgentSubscription, CancelRequest, CreateRequest, DrainReport, DrainRequest, Elicitation,
    ListQuery, Mailbox, ReceiveQuery, RespondRequest, SendMessage, SentMessage, Status, WaitMeter,
};
use lighthouse_flags::Attribution;
use lighthouse_metrics::FlagResult;
use lighthouse_security::{Action, Actor, Caller, Role};

use crate::api::{
    AgentInfo, AgentList, Credential, ElicitationList, ErrorCode, Flag, FlagEvaluation,
    FlagHistory, FlagKill, FlagList, FlagListView, FlagOutcome, FlagPut, Latency, Me, MessagesPage,
    OpsStats, Problem, SessionResponse, VerifyResponse,
};
use crate::bridge::{Bridge, ELICITATION_FLAG};
use crate::problem::{from_elicitation, from_flags, from_security, from_store};

/// Longest `wait_ms` of a long-poll (PROTOCOL.md 4 and 6).
pub const MAX_WAIT_MS: u64 = 60_000;
/// The integrity walk in progress, if any (see [`Bridge::verify`]): a weak
/// handle on its sender, so that a walk whose task ended without answering
/// (dropped, panicked) closes the channel (its waiters get an error) and the
/// next call starts a new walk instead of waiting on it for ever.
pub(crate) type VerifySlot =
    Option<std::sync::Weak<tokio::sync::broadcast::Sender<Result<VerifyResponse, Problem>>>>;

/// Largest `window_s` of `/v1/ops/stats`.
pub const MAX_STATS_WINDOW_S: u64 = 900;

fn latency(s: &lighthouse_metrics::LatencySummary) -> Latency {
    Latency {
        count: s.count,
        p50: s.p50,
        p95: s.p95,
        p99: s.p99,
        max: s.max,
    }
}

/// Most changes one `GET /v1/flags/{key}/history` returns: the flag store's
/// page (each change carries the flag before and after, up to ~260 KB with
/// full allow and deny lists, so a page is bounded in bytes as well).
pub const MAX_FLAG_HISTORY: usize = 1_000;

impl Bridge {
    /// `POST /v1/elicitations`: gated by the flag `elicitation_enabled` for the
    /// requester. Returns the record and whether it replays an earlier create
    /// with the same idempotency key.
    pub async fn elicit(
        &self,
        caller: &Caller,
        request_id: &str,
        idempotency_key: Option<&str>,
        req: CreateRequest,
    ) -> Result<(Arc<Elicitation>, bool), Problem> {
        self.check(caller, Action::Elicit)?;
        // A retried create returns its first result even if the flag has
        // turned off for this agent since (PROTOCOL.md 4: the key makes a
        // retry return the first result).
        if let Some(key) = idempotency_key
            && let Some(first) = self
                .elicitations()
                .replay(caller, key, &req)
                .map_err(from_elicitation)?
        {
            return Ok((first, true));
        }
        let enabled = self.flags().is_enabled(ELICITATION_FLAG, &caller.agent);
        self.metrics().flag_evaluation(
            ELICITATION_FLAG,
            if enabled {
                FlagResult::On
            } else {
                FlagResult::Off
            },
        );
        if !enabled {
            return Err(Problem::new(
                ErrorCode::FeatureDisabled,
                "elicitation is not enabled for this agent (flag elicitation_enabled); use the messages API: POST /v1/messages",
            ));
        }
        let created = self
            .elicitations()
            .create(caller, request_id, req, idempotency_key)
            .await
            .map_err(from_elicitation)?;
        Ok((created.record, created.replayed))
    }

    /// `GET /v1/elicitations/{id}?wait_ms=N`. The time the call is blocked
    /// waiting for the outcome is added to `waited` (and nothing else: a
    /// record that is there at once adds nothing).
    pub async fn get_elicitation(
        &self,
        caller: &Caller,
        id: &str,
        wait_ms: u64,
        waited: &WaitMeter,
    ) -> Result<Arc<Elicitation>, Problem> {
        self.check(caller, Action::ReadElicitations)?;
        if wait_ms > MAX_WAIT_MS {
            return Err(Problem::invalid("/wait_ms", "must be 0 to 60000"));
        }
        self.long_poll(wait_ms, |ms| {
            self.elicitations().get_metered(caller, id, ms, waited)
        })
        .await
        .map_err(from_elicitation)
    }

    /// `GET /v1/elicitations?box=&status=&limit=&cursor=`.
    pub fn list_elicitations(
        &self,
        caller: &Caller,
        mailbox: Mailbox,
        status: Option<Status>,
        limit: Option<usize>,
        cursor: Option<String>,
    ) -> Result<ElicitationList, Problem> {
        self.check(caller, Action::ReadElicitations)?;
        let page = self
            .elicitations()
            .list(
                caller,
                &ListQuery {
                    mailbox,
                    status,
                    limit,
                    cursor,
                },
            )
            .map_err(from_elicitation)?;
        Ok(ElicitationList {
            items: page.items.iter().map(|e| (**e).clone()).collect(),
            next_cursor: page.next_cursor,
        })
    }

    /// `POST /v1/elicitations/{id}/respond`.
    pub async fn respond(
        &self,
        caller: &Caller,
        request_id: &str,
        id: &str,
        req: RespondRequest,
    ) -> Result<Arc<Elicitation>, Problem> {
        self.check(caller, Action::Respond)?;
        self.elicitations()
            .respond(caller, request_id, id, req)
            .await
            .map_err(from_elicitation)
    }

    /// `POST /v1/elicitations/{id}/cancel`.
    pub async fn cancel(
        &self,
        caller: &Caller,
        request_id: &str,
        id: &str,
        req: CancelRequest,
    ) -> Result<Arc<Elicitation>, Problem> {
        self.check(caller, Action::Cancel)?;
        self.elicitations()
            .cancel(caller, request_id, id, req)
            .await
            .map_err(from_elicitation)
    }

    /// The caller's notifications (`GET /v1/stream`), after `after` or, without
    /// a position, every pending elicitation addressed to it first.
    pub fn subscribe(
        &self,
        caller: &Caller,
        after: Option<u64>,
    ) -> Result<AgentSubscription, Problem> {
        self.check(caller, Action::OpenOwnStream)?;
        self.elicitations()
            .subscribe(caller, after)
            .map_err(from_elicitation)
    }

    /// `POST /v1/messages`.
    pub async fn send_message(
        &self,
        caller: &Caller,
        request_id: &str,
        req: SendMessage,
    ) -> Result<SentMessage, Problem> {
        self.check(caller, Action::SendMessage)?;
        self.elicitations()
            .send_message(caller, request_id, req)
            .await
            .map_err(from_elicitation)
    }

    /// `GET /v1/messages?after=&wait_ms=&limit=`. The time the call is
    /// blocked waiting for a message is added to `waited` (reading the
    /// mailbox is not: messages that are there at once add nothing).
    pub async fn receive_messages(
        &self,
        caller: &Caller,
        after: u64,
        wait_ms: u64,
        limit: Option<usize>,
        waited: &WaitMeter,
    ) -> Result<MessagesPage, Problem> {
        self.check(caller, Action::ReadMessages)?;
        if wait_ms > MAX_WAIT_MS {
            return Err(Problem::invalid("/wait_ms", "must be 0 to 60000"));
        }
        let page = self
            .long_poll(wait_ms, |wait_ms| {
                self.elicitations().receive_messages_metered(
                    caller,
                    ReceiveQuery {
                        after,
                        wait_ms,
                        limit,
                    },
                    waited,
                )
            })
            .await
            .map_err(from_elicitation)?;
        Ok(MessagesPage {
            messages: page.messages.iter().map(|m| (**m).clone()).collect(),
            next_after: page.next_after,
        })
    }

    /// `GET /v1/flags`, as owned flags (for in-process callers; the HTTP
    /// route serializes [`list_flags_view`](Self::list_flags_view) instead).
    pub fn list_flags(&self, caller: &Caller) -> Result<FlagList, Problem> {
        Ok(FlagList {
            flags: self
                .list_flags_view(caller)?
                .0
                .flags()
                .map(|f| (**f).clone())
                .collect(),
        })
    }

    /// `GET /v1/flags` for serializing: the current snapshot, each flag
    /// shared rather than copied.
    pub fn list_flags_view(&self, caller: &Caller) -> Result<FlagListView, Problem> {
        self.check(caller, Action::ReadFlags)?;
        Ok(FlagListView(self.flags().snapshot()))
    }

    /// `GET /v1/flags/{key}`.
    pub fn get_flag(&self, caller: &Caller, key: &str) -> Result<Flag, Problem> {
        self.check(caller, Action::ReadFlags)?;
        self.flags()
            .get(key)
            .map(|f| (*f).clone())
            .ok_or_else(|| Problem::not_found(&format!("flag {key}")))
    }

    /// `PUT /v1/flags/{key}`: the flag after the write, whether the write
    /// changed it and the `seq` of its event.
    pub async fn put_flag(
        &self,
        caller: &Caller,
        request_id: &str,
        key: &str,
        put: FlagPut,
    ) -> Result<FlagOutcome, Problem> {
        self.check(caller, Action::WriteFlags)?;
        if let Some(k) = &put.spec.key
            && k != key
        {
            return Err(Problem::invalid("/key", "must match the key in the path"));
        }
        let by = attribution(caller, request_id, put.reason.as_deref())?;
        let out = self
            .flags()
            .put(key, &put.spec, put.expected_version, &by)
            .await
            .map_err(from_flags)?;
        Ok(flag_outcome(out))
    }

    /// `POST /v1/flags/{key}/kill` (`kill = true`) and `/unkill`, under
    /// `req.expected_version` when given.
    pub async fn kill_flag(
        &self,
        caller: &Caller,
        request_id: &str,
        key: &str,
        kill: bool,
        req: &FlagKill,
    ) -> Result<FlagOutcome, Problem> {
        self.check(caller, Action::WriteFlags)?;
        let by = attribution(caller, request_id, req.reason.as_deref())?;
        let out = if kill {
            self.flags().kill(key, req.expected_version, &by).await
        } else {
            self.flags().unkill(key, req.expected_version, &by).await
        }
        .map_err(from_flags)?;
        Ok(flag_outcome(out))
    }

    /// `GET /v1/flags/{key}/history`.
    pub fn flag_history(&self, caller: &Caller, key: &str) -> Result<FlagHistory, Problem> {
        self.flag_history_page(caller, key, None, MAX_FLAG_HISTORY)
    }

    /// `GET /v1/flags/{key}/history?before=&limit=`: the newest `limit` changes
    /// (1 to [`MAX_FLAG_HISTORY`]) with a version below `before`, oldest first;
    /// `next` says where the older ones continue.
    pub fn flag_history_page(
        &self,
        caller: &Caller,
        key: &str,
        before: Option<u64>,
        limit: usize,
    ) -> Result<FlagHistory, Problem> {
        self.check(caller, Action::ReadFlags)?;
        if !(1..=MAX_FLAG_HISTORY).contains(&limit) {
            return Err(Problem::invalid(
                "/limit",
                format!("must be 1 to {MAX_FLAG_HISTORY}"),
            ));
        }
        // One walk down the flag's chain per request (not one per page).
        let limit = limit.min(self.flags().limits().max_history_page.max(1));
        let changes = self
            .flags()
            .history(key, before, limit)
            .map_err(from_flags)?;
        // Older changes exist when the oldest returned is not the first (a
        // page may hold fewer than `limit`: the flag store bounds it in bytes).
        let next = changes.first().map(|c| c.version).filter(|&v| v > 1);
        Ok(FlagHistory { changes, next })
    }

    /// `GET /v1/flags/{key}/evaluate?agent=a`.
    pub fn evaluate_flag(
        &self,
        caller: &Caller,
        key: &str,
        agent: &str,
    ) -> Result<FlagEvaluation, Problem> {
        self.check(caller, Action::ReadFlags)?;
        if lighthouse_event_store::validate_agent(agent).is_err() {
            return Err(Problem::invalid("/agent", "must be an agent id"));
        }
        let e = self.flags().evaluate(key, agent).map_err(from_flags)?;
        Ok(FlagEvaluation {
            enabled: e.enabled,
            variant: e.variant.map(|v| v.to_string()),
            reason: e.reason.as_str().to_owned(),
            bucket: e.bucket,
        })
    }

    /// `GET /v1/ops/stats?window_s=N` (1 to 900): measured figures only.
    pub fn stats(&self, caller: &Caller, window_s: u64) -> Result<OpsStats, Problem> {
        self.check(caller, Action::ReadOpsStats)?;
        if !(1..=MAX_STATS_WINDOW_S).contains(&window_s) {
            return Err(Problem::invalid("/window_s", "must be 1 to 900"));
        }
        self.refresh_store_gauges();
        let s = self.metrics().stats(window_s).map_err(|e| {
            tracing::error!(error = %e, "stats failed");
            Problem::internal()
        })?;
        Ok(OpsStats {
            window_s: s.window_s,
            covered_s: s.covered_s,
            elicitations: crate::api::ElicitationStats {
                created: s.elicitations.created,
                accepted: s.elicitations.accepted,
                declined: s.elicitations.declined,
                cancelled: s.elicitations.cancelled,
                expired: s.elicitations.expired,
                delivery_ms: latency(&s.elicitations.delivery_ms),
                answer_ms: latency(&s.elicitations.answer_ms),
            },
            http: crate::api::HttpStats {
                requests: s.http.requests,
                errors_5xx: s.http.errors_5xx,
                error_ratio: s.http.error_ratio,
                latency_ms: latency(&s.http.latency_ms),
            },
            active_elicitations: self.elicitations().pending_count() as u64,
            connected_streams: s.connected_streams,
            store: crate::api::StoreStats {
                head_seq: self.store().head_seq(),
                size_bytes: s.store.size_bytes,
                append_ms: latency(&s.store.append_ms),
            },
        })
    }

    /// `POST /v1/ops/drain`.
    pub async fn drain(
        &self,
        caller: &Caller,
        request_id: &str,
        req: DrainRequest,
    ) -> Result<DrainReport, Problem> {
        self.drain_metered(caller, request_id, req, &WaitMeter::new())
            .await
    }

    /// [`drain`](Self::drain), adding its wait for others to resolve to
    /// `meter` (the request's, so that the wait stays out of
    /// `http.latency_ms` even when the client gives up during it).
    pub async fn drain_metered(
        &self,
        caller: &Caller,
        request_id: &str,
        req: DrainRequest,
        meter: &WaitMeter,
    ) -> Result<DrainReport, Problem> {
        self.check(caller, Action::Drain)?;
        self.elicitations()
            .drain_metered(caller, request_id, req, meter)
            .await
            .map_err(from_elicitation)
    }

    /// `POST /v1/ops/verify`: walks the whole integrity chain (on a blocking
    /// thread, so the runtime keeps serving).
    ///
    /// One walk at a time: a call while a walk is in progress waits for that
    /// walk's answer (its `head_seq` says what it covered) instead of starting
    /// another, and the walk goes on when its caller gives up, so a client that
    /// times out and retries joins it. Without this, every retry of a slow
    /// walk, or a burst of calls, started one more full read of the log.
    pub async fn verify(&self, caller: &Caller) -> Result<VerifyResponse, Problem> {
        self.verify_metered(caller, &WaitMeter::new()).await
    }

    /// [`verify`](Self::verify), counting the time until the walk answers as
    /// blocked on `meter`: the HTTP layer leaves it out of request latency, as
    /// it does a drain's wait. A walk of a large log takes long (about 0.5 s
    /// for a million events) and is rare; in the `http.latency_ms` the deploy
    /// gates read (PROTOCOL.md 9) one verify on a quiet bridge would be the
    /// p99 for as long as it stays in the window.
    pub async fn verify_metered(
        &self,
        caller: &Caller,
        meter: &WaitMeter,
    ) -> Result<VerifyResponse, Problem> {
        self.check(caller, Action::VerifyStore)?;
        meter.blocked(self.verify_walk()).await
    }

    /// Starts a walk, or joins the one in progress, and waits for its answer.
    async fn verify_walk(&self) -> Result<VerifyResponse, Problem> {
        let mut answer = {
            let mut walk = self.inner.verify_walk.lock();
            match walk.as_ref().and_then(std::sync::Weak::upgrade) {
                Some(w) => w.subscribe(),
                None => {
                    let (tx, rx) = tokio::sync::broadcast::channel(1);
                    let tx = Arc::new(tx);
                    *walk = Some(Arc::downgrade(&tx));
                    // The task holds the store and the slot, not the bridge:
                    // a long walk must not keep a shut-down bridge alive.
                    let (store, slot) = (self.store().clone(), self.inner.verify_walk.clone());
                    tokio::spawn(async move {
                        let started = Instant::now();
                        let r = match tokio::task::spawn_blocking(move || store.verify()).await {
                            Ok(Ok(report)) => Ok(VerifyResponse {
                                ok: report.ok(),
                                checked: report.checked,
                                head_seq: report.head_seq,
                                first_bad_seq: report.first_bad_seq,
                                elapsed_ms: started.elapsed().as_millis() as u64,
                            }),
                            Ok(Err(e)) => Err(from_store(e)),
                            Err(_) => Err(Problem::internal()),
                        };
                        // Cleared before the answer goes out: a call after it
                        // starts a new walk.
                        *slot.lock() = None;
                        let _ = tx.send(r);
                    });
                    rx
                }
            }
        };
        answer.recv().await.map_err(|_| Problem::internal())?
    }

    /// `GET /v1/agents`.
    pub fn list_agents(&self, caller: &Caller) -> Result<AgentList, Problem> {
        self.check(caller, Action::ListAgents)?;
        Ok(AgentList {
            agents: self
                .gate()
                .registry()
                .list()
                .into_iter()
                .map(|r| AgentInfo {
                    id: r.agent,
                    role: r.role,
                    key_id: r.key_id,
                    revoked: r.revoked,
                })
                .collect(),
        })
    }

    /// Registers an agent and returns its credential, as
    /// [`add_agent_correlated`](Self::add_agent_correlated) outside any
    /// request: the `agent.registered` event has no `correlation_id` (the
    /// offline tools, setup).
    pub async fn add_agent(
        &self,
        caller: &Caller,
        id: &str,
        role: Role,
    ) -> Result<Credential, Problem> {
        self.register_agent(caller, None, id, role).await
    }

    /// `POST /v1/agents`: registers an agent and returns its credential;
    /// `request_id` is the `correlation_id` of its `agent.registered` event.
    pub async fn add_agent_correlated(
        &self,
        caller: &Caller,
        request_id: &str,
        id: &str,
        role: Role,
    ) -> Result<Credential, Problem> {
        self.register_agent(caller, Some(request_id), id, role)
            .await
    }

    async fn register_agent(
        &self,
        caller: &Caller,
        request_id: Option<&str>,
        id: &str,
        role: Role,
    ) -> Result<Credential, Problem> {
        self.check(caller, Action::ManageAgents)?;
        let mut cred = self
            .gate()
            .registry()
            .register(id, role, actor(caller, request_id))
            .await
            .map_err(from_security)?;
        cred.bridge = self.public_url().to_owned();
        Ok(cred)
    }

    /// Rotates an agent's key, as
    /// [`rotate_agent_correlated`](Self::rotate_agent_correlated) outside any
    /// request (no `correlation_id`).
    pub async fn rotate_agent(&self, caller: &Caller, id: &str) -> Result<Credential, Problem> {
        self.rotate_agent_key(caller, None, id).await
    }

    /// `POST /v1/agents/{id}/rotate`; `request_id` is the `correlation_id` of
    /// the `agent.key_rotated` event.
    pub async fn rotate_agent_correlated(
        &self,
        caller: &Caller,
        request_id: &str,
        id: &str,
    ) -> Result<Credential, Problem> {
        self.rotate_agent_key(caller, Some(request_id), id).await
    }

    async fn rotate_agent_key(
        &self,
        caller: &Caller,
        request_id: Option<&str>,
        id: &str,
    ) -> Result<Credential, Problem> {
        self.check(caller, Action::ManageAgents)?;
        let mut cred = self
            .gate()
            .registry()
            .rotate(id, actor(caller, request_id))
            .await
            .map_err(from_security)?;
        cred.bridge = self.public_url().to_owned();
        Ok(cred)
    }

    /// Revokes an agent, as
    /// [`revoke_agent_correlated`](Self::revoke_agent_correlated) outside any
    /// request (no `correlation_id`).
    pub async fn revoke_agent(&self, caller: &Caller, id: &str) -> Result<(), Problem> {
        self.revoke_agent_keys(caller, None, id).await
    }

    /// `DELETE /v1/agents/{id}`; `request_id` is the `correlation_id` of the
    /// `agent.revoked` event.
    pub async fn revoke_agent_correlated(
        &self,
        caller: &Caller,
        request_id: &str,
        id: &str,
    ) -> Result<(), Problem> {
        self.revoke_agent_keys(caller, Some(request_id), id).await
    }

    async fn revoke_agent_keys(
        &self,
        caller: &Caller,
        request_id: Option<&str>,
        id: &str,
    ) -> Result<(), Problem> {
        self.check(caller, Action::ManageAgents)?;
        let registry = self.gate().registry();
        // The offline tools' caller (bins/bridge, key id 0: no key signed
        // it) may revoke the last admin; a caller from the API has a key.
        let offline = caller.key_id == 0 && caller.agent == lighthouse_security::LOCAL_ADMIN_AGENT;
        if offline {
            registry.revoke_offline(id).await
        } else {
            registry.revoke(id, actor(caller, request_id)).await
        }
        .map_err(from_security)
    }

    /// `GET /v1/agents/me`.
    pub fn me(&self, caller: &Caller) -> Result<Me, Problem> {
        self.check(caller, Action::WhoAmI)?;
        Ok(Me {
            agent: caller.agent.clone(),
            role: caller.role,
            key_id: caller.key_id,
        })
    }

    /// `POST /v1/sessions`: a bearer token for the caller.
    pub fn create_session(
        &self,
        caller: &Caller,
        ttl_s: Option<u64>,
    ) -> Result<SessionResponse, Problem> {
        self.check(caller, Action::ManageOwnSession)?;
        let t = self
            .gate()
            .tokens()
            .issue(caller, ttl_s, self.clock().now())
            .map_err(from_security)?;
        Ok(SessionResponse {
            token: t.token,
            expires_at: t.expires_at,
        })
    }

    /// Revokes the presented token, as
    /// [`end_session_correlated`](Self::end_session_correlated) outside any
    /// request (no `correlation_id`).
    pub async fn end_session(&self, caller: &Caller, token: &str) -> Result<(), Problem> {
        self.revoke_session(caller, None, token).await
    }

    /// `DELETE /v1/sessions/current`: revokes the presented token;
    /// `request_id` is the `correlation_id` of the `security.token_revoked`
    /// event.
    pub async fn end_session_correlated(
        &self,
        caller: &Caller,
        request_id: &str,
        token: &str,
    ) -> Result<(), Problem> {
        self.revoke_session(caller, Some(request_id), token).await
    }

    async fn revoke_session(
        &self,
        caller: &Caller,
        request_id: Option<&str>,
        token: &str,
    ) -> Result<(), Problem> {
        self.check(caller, Action::ManageOwnSession)?;
        let tokens = self.gate().tokens();
        let claims = tokens
            .check(token.as_bytes(), self.clock().now())
            .map_err(|_| Problem::new(ErrorCode::Unauthenticated, "not a valid token"))?;
        if claims.agent != caller.agent {
            return Err(Problem::new(
                ErrorCode::Forbidden,
                "a token can only revoke itself",
            ));
        }
        let id = lighthouse_security::TokenId::from(claims);
        tokens
            .revoke(&id, actor(caller, request_id), self.clock().now())
            .await
            .map_err(from_security)
    }
}

fn flag_outcome(out: lighthouse_flags::WriteOutcome) -> FlagOutcome {
    FlagOutcome {
        flag: (*out.flag).clone(),
        changed: out.changed,
        seq: out.seq,
    }
}

/// `caller` as the actor of a change, in the request `request_id` if any.
fn actor<'a>(caller: &'a Caller, request_id: Option<&'a str>) -> Actor<'a> {
    let by = Actor::agent(&caller.agent);
    match request_id {
        Some(id) => by.with_correlation_id(id),
        None => by,
    }
}

fn attribution(
    caller: &Caller,
    request_id: &str,
    reason: Option<&str>,
) -> Result<Attribution, Problem> {
    let reason = reason
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .ok_or_else(|| Problem::invalid("/reason", "a reason is required for every flag change"))?;
    Ok(Attribution::new(caller.agent.clone(), reason).with_correlation_id(request_id))
}

/// How long a long-poll may hold a request.
pub fn wait_duration(wait_ms: u64) -> Duration {
    Duration::from_millis(wait_ms.min(MAX_WAIT_MS))
}
