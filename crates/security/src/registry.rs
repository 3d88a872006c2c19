//! The agent registry (PROTOCOL.md 2.1), kept as events on stream `$agents` and
//! rebuilt from them on open.
//!
//! Events (data fields):
//! - `agent.registered` `{agent, role, key_id}`
//! - `agent.key_rotated` `{agent, key_id, previous_key_id, previous_valid_until}`
//! - `agent.revoked` `{agent}`
//!
//! The event's `agent` field is the actor (the admin who made the change), its
//! `correlation_id` the request that made it ([`Actor`]).
//!
//! The registry appends its own events: every change is an append to `$agents`
//! with the stream version it was decided on as the expected version, then the
//! in-memory state catches up by reading the stream. A concurrent writer makes the
//! append fail with a version conflict; the registry then catches up and decides
//! again, so a decision never rests on a stale view. No event ever carries a
//! secret: secrets are derived from the master key.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use lighthouse_event_store::{
    Event, EventStore, ExpectedVersion, NewEvent, SharedClock, Timestamp,
};
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::caller::Role;
use crate::credential::Credential;
use crate::error::{Error, Result};
use crate::headers::valid_agent;
use crate::keys::{HmacSha256, MasterKey};

/// The stream the registry lives on.
pub const AGENTS_STREAM: &str = "$agents";
/// Event type of a registration.
pub const AGENT_REGISTERED: &str = "agent.registered";
/// Event type of a key rotation.
pub const AGENT_KEY_ROTATED: &str = "agent.key_rotated";
/// Event type of a revocation.
pub const AGENT_REVOKED: &str = "agent.revoked";

/// Default grace period of a rotated-out key: 24 hours.
pub const DEFAULT_KEY_GRACE_MS: i64 = 24 * 3600 * 1000;
/// Most rotated-out keys kept valid at once per agent; rotating more often than
/// this within a grace period retires the oldest early. A constant, not a
/// setting, so that replaying the log always gives the same answer.
pub const MAX_GRACE_KEYS: usize = 8;

/// How many times a change is decided again after a concurrent write.
const MAX_ATTEMPTS: usize = 8;
/// Events read per page while catching up.
const PAGE: usize = 1000;

/// A rotated-out key still accepted until `valid_until`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GraceKey {
    /// The old key id.
    pub key_id: u64,
    /// Refused from this instant on.
    pub valid_until: Timestamp,
}

/// What the registry knows about one agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentRecord {
    /// Agent id.
    pub agent: String,
    /// Role.
    pub role: Role,
    /// The current key id.
    pub key_id: u64,
    /// Older keys still inside their grace period (as of the last change).
    pub grace_keys: Vec<GraceKey>,
    /// Revoked agents are refused with every key, and their ids are never reused.
    pub revoked: bool,
    /// When the agent was registered.
    pub registered_at: Timestamp,
}

struct Entry {
    record: AgentRecord,
    /// Keyed MACs for the current key and every grace key, so verifying a request
    /// costs no key derivation.
    macs: Vec<(u64, HmacSha256)>,
}

#[derive(Default)]
struct State {
    agents: HashMap<String, Entry>,
    /// Version of the last applied `$agents` event.
    version: Option<u64>,
}

/// Registry settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegistryConfig {
    /// Grace period of a rotated-out key in milliseconds (default 24 h).
    pub key_grace_ms: i64,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            key_grace_ms: DEFAULT_KEY_GRACE_MS,
        }
    }
}

/// The actor the bridge's offline administration commands name in what they
/// write (they hold the master key and act without a registered agent). No
/// agent may be registered under it, so that an audit trail always tells an
/// offline change from one made over the API.
pub const LOCAL_ADMIN_AGENT: &str = "local-admin";

/// The id `GET /v1/agents/me` reads as "the caller". No agent may be
/// registered under it: `/v1/agents/me` could not name it, and
/// `POST /v1/agents/me/rotate` or `DELETE /v1/agents/me` acting on an agent
/// while `GET` means the caller is a trap. (One registered before the id was
/// reserved stays, and is managed by those paths.)
pub const ME_AGENT: &str = "me";

/// Why `agent` may not be registered, when it is a reserved id.
fn reserved(agent: &str) -> Option<&'static str> {
    match agent {
        LOCAL_ADMIN_AGENT => Some("it names the bridge's offline administration in audit trails"),
        ME_AGENT => Some("/v1/agents/me names the caller, so it cannot name an agent"),
        _ => None,
    }
}

/// Who makes a change that the bridge records as an event (a registry change,
/// a token revocation), and the request it belongs to: the event's `agent`
/// and `correlation_id`.
///
/// The methods that take one take anything that converts: `None` (the bridge
/// itself, no request), `Some("admin")` (an actor, no request), or an `Actor`
/// naming the request too:
///
/// ```
/// use lighthouse_security::Actor;
/// let by = Actor::agent("admin").with_correlation_id("req-01");
/// assert_eq!((by.agent, by.correlation_id), (Some("admin"), Some("req-01")));
/// assert_eq!(Actor::from(None), Actor::default());
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Actor<'a> {
    /// The agent making the change (the admin), the event's `agent`; `None`
    /// for the bridge's own setup.
    pub agent: Option<&'a str>,
    /// The request's id (`X-Request-Id`), the event's `correlation_id`.
    pub correlation_id: Option<&'a str>,
}

impl<'a> Actor<'a> {
    /// `agent`, in no particular request.
    pub fn agent(agent: &'a str) -> Self {
        Actor {
            agent: Some(agent),
            correlation_id: None,
        }
    }

    /// The same actor, in the request `id`.
    pub fn with_correlation_id(self, id: &'a str) -> Self {
        Actor {
            correlation_id: Some(id),
            ..self
        }
    }

    /// `event` attributed to this actor and request.
    pub(crate) fn stamp(self, mut event: NewEvent) -> NewEvent {
        if let Some(a) = self.agent {
            event = event.with_agent(a);
        }
        if let Some(id) = self.correlation_id {
            event = event.with_correlation_id(id);
        }
        event
    }
}

impl<'a> From<Option<&'a str>> for Actor<'a> {
    fn from(agent: Option<&'a str>) -> Self {
        Actor {
            agent,
            correlation_id: None,
        }
    }
}

/// The agent registry. Cheap to clone (shared state).
#[derive(Clone)]
pub struct AgentRegistry {
    inner: Arc<Inner>,
}

struct Inner {
    store: EventStore,
    master: MasterKey,
    clock: SharedClock,
    config: RegistryConfig,
    state: RwLock<State>,
    /// One more than the version of a change that was written but could not
    /// be read back into `state` (a store read failed), 0 when there is none:
    /// every credential is refused (`503`) until `state` reaches it, since the
    /// change may have been a revocation. A version, not a flag, so that a
    /// catch-up that started before the change cannot clear it.
    unread: AtomicU64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Registered {
    agent: String,
    role: Role,
    key_id: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Rotated {
    agent: String,
    key_id: u64,
    previous_key_id: u64,
    previous_valid_until: Timestamp,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Revoked {
    agent: String,
}

impl AgentRegistry {
    /// Opens the registry: replays `$agents` from the store.
    pub fn open(
        store: EventStore,
        master: MasterKey,
        clock: SharedClock,
        config: RegistryConfig,
    ) -> Result<Self> {
        if config.key_grace_ms < 0 {
            return Err(Error::InvalidConfig("key_grace_ms must not be negative"));
        }
        let reg = AgentRegistry {
            inner: Arc::new(Inner {
                store,
                master,
                clock,
                config,
                state: RwLock::new(State::default()),
                unread: AtomicU64::new(0),
            }),
        };
        reg.catch_up()?;
        Ok(reg)
    }

    /// Applies `$agents` events appended since the last one applied.
    pub fn catch_up(&self) -> Result<()> {
        loop {
            let from = self.inner.state.read().version.map_or(0, |v| v + 1);
            let events = self.inner.store.read_stream(AGENTS_STREAM, from, PAGE)?;
            if events.is_empty() {
                let reached = self.inner.state.read().version.map_or(0, |v| v + 1);
                let unread = self.inner.unread.load(Ordering::Acquire);
                if unread != 0 && reached >= unread {
                    let _ = self.inner.unread.compare_exchange(
                        unread,
                        0,
                        Ordering::AcqRel,
                        Ordering::Acquire,
                    );
                }
                return Ok(());
            }
            let mut state = self.inner.state.write();
            for e in &events {
                // A concurrent catch-up may have applied some of them already.
                if state.version.is_some_and(|v| e.version <= v) {
                    continue;
                }
                self.apply(&mut state, e)?;
                state.version = Some(e.version);
            }
        }
    }

    fn apply(&self, state: &mut State, e: &Event) -> Result<()> {
        let invalid = |reason: String| Error::InvalidEvent { seq: e.seq, reason };
        let parse = |reason: serde_json::Error| invalid(reason.to_string());
        match e.event_type.as_str() {
            AGENT_REGISTERED => {
                let d: Registered = serde_json::from_value(e.data.clone()).map_err(parse)?;
                if state.agents.contains_key(&d.agent) {
                    return Err(invalid(format!("agent {} registered twice", d.agent)));
                }
                let record = AgentRecord {
                    agent: d.agent.clone(),
                    role: d.role,
                    key_id: d.key_id,
                    grace_keys: Vec::new(),
                    revoked: false,
                    registered_at: e.time,
                };
                let macs = self.macs(&record);
                state.agents.insert(d.agent, Entry { record, macs });
            }
            AGENT_KEY_ROTATED => {
                let d: Rotated = serde_json::from_value(e.data.clone()).map_err(parse)?;
                let entry = state
                    .agents
                    .get_mut(&d.agent)
                    .ok_or_else(|| invalid(format!("rotation of unknown agent {}", d.agent)))?;
                let r = &mut entry.record;
                r.grace_keys.retain(|g| g.valid_until > e.time);
                r.grace_keys.push(GraceKey {
                    key_id: d.previous_key_id,
                    valid_until: d.previous_valid_until,
                });
                if r.grace_keys.len() > MAX_GRACE_KEYS {
                    r.grace_keys.remove(0);
                }
                r.key_id = d.key_id;
                entry.macs = self.macs(&entry.record);
            }
            AGENT_REVOKED => {
                let d: Revoked = serde_json::from_value(e.data.clone()).map_err(parse)?;
                let entry = state
                    .agents
                    .get_mut(&d.agent)
                    .ok_or_else(|| invalid(format!("revocation of unknown agent {}", d.agent)))?;
                entry.record.revoked = true;
                entry.record.grace_keys.clear();
                entry.macs.clear();
            }
            other => {
                return Err(invalid(format!(
                    "unexpected type {other} on {AGENTS_STREAM}"
                )));
            }
        }
        Ok(())
    }

    fn macs(&self, r: &AgentRecord) -> Vec<(u64, HmacSha256)> {
        std::iter::once(r.key_id)
            .chain(r.grace_keys.iter().map(|g| g.key_id))
            .map(|k| (k, self.inner.master.agent_secret(&r.agent, k).mac()))
            .collect()
    }

    /// Decides a change on the current state and appends it, again after a
    /// concurrent write, until it lands.
    async fn change<F>(&self, actor: Actor<'_>, decide: F) -> Result<()>
    where
        F: Fn(&State, Timestamp) -> Result<(&'static str, serde_json::Value)>,
    {
        for _ in 0..MAX_ATTEMPTS {
            let (event, expected) = {
                let state = self.inner.state.read();
                let (ty, data) = decide(&state, self.inner.clock.now())?;
                let expected = match state.version {
                    None => ExpectedVersion::NoStream,
                    Some(v) => ExpectedVersion::Exact(v),
                };
                (NewEvent::new(AGENTS_STREAM, ty, data), expected)
            };
            let event = actor.stamp(event.expect(expected));
            match self.inner.store.append_one(event).await {
                Ok(a) => {
                    return self.catch_up().inspect_err(|e| {
                        self.inner.unread.fetch_max(a.version + 1, Ordering::AcqRel);
                        tracing::error!(
                            error = %e,
                            "agent registry: a change was written but could not be read back; \
                             refusing every credential until it is"
                        );
                    });
                }
                Err(lighthouse_event_store::Error::VersionConflict { .. }) => self.catch_up()?,
                Err(e) => return Err(e.into()),
            }
        }
        Err(Error::Contended)
    }

    /// Registers `agent` with `role` and key id 1, returning its credential
    /// (`bridge` left empty for the caller to fill in). `actor` (an
    /// [`Actor`], or `Option<&str>` for no request) is the event's `agent`
    /// and `correlation_id`, as for every change below.
    pub async fn register(
        &self,
        agent: &str,
        role: Role,
        actor: impl Into<Actor<'_>>,
    ) -> Result<Credential> {
        let actor = actor.into();
        check_agent_id(agent)?;
        if let Some(why) = reserved(agent) {
            return Err(Error::ReservedAgentId(agent.to_owned(), why));
        }
        self.change(actor, |state, _| {
            if state.agents.contains_key(agent) {
                return Err(Error::AgentExists(agent.to_owned()));
            }
            Ok((
                AGENT_REGISTERED,
                json!({"agent": agent, "role": role, "key_id": 1}),
            ))
        })
        .await?;
        self.credential(agent)
    }

    /// Makes key id `k+1` current; `k` stays valid for the grace period. Returns
    /// the new credential.
    pub async fn rotate(&self, agent: &str, actor: impl Into<Actor<'_>>) -> Result<Credential> {
        let actor = actor.into();
        let grace = self.inner.config.key_grace_ms;
        self.change(actor, |state, now| {
            let r = &active(state, agent)?.record;
            let next = r
                .key_id
                .checked_add(1)
                .ok_or(Error::InvalidConfig("key id space exhausted"))?;
            Ok((
                AGENT_KEY_ROTATED,
                json!({"agent": agent, "key_id": next, "previous_key_id": r.key_id,
                       "previous_valid_until": now.add_millis(grace)}),
            ))
        })
        .await?;
        self.credential(agent)
    }

    /// Revokes `agent`: every key and every token of it is refused from now on.
    /// The last active admin cannot be revoked ([`Error::LastAdmin`]): agents
    /// could no longer be managed over the API. The bridge's offline tools use
    /// [`revoke_offline`](Self::revoke_offline), which may.
    pub async fn revoke(&self, agent: &str, actor: impl Into<Actor<'_>>) -> Result<()> {
        self.revoke_checked(agent, actor.into(), true).await
    }

    /// [`revoke`](Self::revoke) for the bridge's offline tools (master key and
    /// data directory in hand, actor [`LOCAL_ADMIN_AGENT`]): the last active
    /// admin may be revoked, after a leak of the only admin key; the tools can
    /// register a new admin afterwards. Never reachable from the API.
    pub async fn revoke_offline(&self, agent: &str) -> Result<()> {
        self.revoke_checked(agent, Actor::agent(LOCAL_ADMIN_AGENT), false)
            .await
    }

    async fn revoke_checked(
        &self,
        agent: &str,
        actor: Actor<'_>,
        keep_last_admin: bool,
    ) -> Result<()> {
        self.change(actor, |state, _| {
            let entry = active(state, agent)?;
            if keep_last_admin
                && entry.record.role == Role::Admin
                && !state
                    .agents
                    .iter()
                    .any(|(id, e)| id != agent && e.record.role == Role::Admin && !e.record.revoked)
            {
                return Err(Error::LastAdmin(agent.to_owned()));
            }
            Ok((AGENT_REVOKED, json!({"agent": agent})))
        })
        .await
    }

    /// The current credential of an active agent (secret derived again).
    pub fn credential(&self, agent: &str) -> Result<Credential> {
        let state = self.inner.state.read();
        let r = &active(&state, agent)?.record;
        Ok(Credential {
            agent: r.agent.clone(),
            role: r.role,
            key_id: r.key_id,
            secret: self.inner.master.agent_secret(&r.agent, r.key_id),
            bridge: String::new(),
        })
    }

    /// The record of `agent`, revoked or not.
    pub fn get(&self, agent: &str) -> Option<AgentRecord> {
        self.inner
            .state
            .read()
            .agents
            .get(agent)
            .map(|e| e.record.clone())
    }

    /// Whether `agent` is registered and not revoked.
    pub fn is_active(&self, agent: &str) -> bool {
        self.inner
            .state
            .read()
            .agents
            .get(agent)
            .is_some_and(|e| !e.record.revoked)
    }

    /// Every agent, sorted by id.
    pub fn list(&self) -> Vec<AgentRecord> {
        let mut v: Vec<_> = self
            .inner
            .state
            .read()
            .agents
            .values()
            .map(|e| e.record.clone())
            .collect();
        v.sort_by(|a, b| a.agent.cmp(&b.agent));
        v
    }

    /// Number of agents, revoked included.
    pub fn len(&self) -> usize {
        self.inner.state.read().agents.len()
    }

    /// Whether no agent is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The keyed MAC and role for a request signed by `agent` with `key_id` at
    /// `now`, when that key is active: the agent exists, is not revoked, and the
    /// key is current or inside its grace period. The verifier asks
    /// [`current`](Self::current) first.
    pub(crate) fn signing_key(
        &self,
        agent: &str,
        key_id: u64,
        now: Timestamp,
    ) -> Option<(HmacSha256, Role)> {
        let state = self.inner.state.read();
        let e = state.agents.get(agent)?;
        if !key_active(&e.record, key_id, now) {
            return None;
        }
        let mac = e.macs.iter().find(|(k, _)| *k == key_id)?.1.clone();
        Some((mac, e.record.role))
    }

    /// Whether `key_id` is active for `agent` at `now`: the agent exists, is
    /// not revoked, and the key is current or inside its grace period. What a
    /// long-lived response (a stream) re-checks of the caller it admitted.
    /// While a written change is not read back, no key is active.
    pub fn key_is_active(&self, agent: &str, key_id: u64, now: Timestamp) -> bool {
        self.current() && self.active_role(agent, key_id, now).is_some()
    }

    /// The role of `agent` if `key_id` is active for it at `now`.
    /// The verifier asks [`current`](Self::current) first.
    pub(crate) fn active_role(&self, agent: &str, key_id: u64, now: Timestamp) -> Option<Role> {
        let state = self.inner.state.read();
        let e = state.agents.get(agent)?;
        key_active(&e.record, key_id, now).then_some(e.record.role)
    }

    /// Whether the state holds every change written: when a change could not
    /// be read back, tries again (fail closed until it can). The verifier
    /// refuses with `503 unavailable` while it does not; a credential cannot be
    /// judged meanwhile (which is not the same as its having been revoked).
    pub fn current(&self) -> bool {
        self.inner.unread.load(Ordering::Acquire) == 0
            || (self.catch_up().is_ok() && self.inner.unread.load(Ordering::Acquire) == 0)
    }

    /// For tests: as if the change at `version` had been written but could
    /// not be read back (the registry stays behind until a catch-up reaches
    /// it).
    #[doc(hidden)]
    pub fn mark_unread(&self, version: u64) {
        self.inner.unread.fetch_max(version + 1, Ordering::AcqRel);
    }

    pub(crate) fn master(&self) -> &MasterKey {
        &self.inner.master
    }
}

/// Refuses an agent id outside `^[a-z0-9][a-z0-9._-]{0,63}$`
/// ([`Error::InvalidAgentId`]): the rule [`AgentRegistry::register`] applies,
/// for callers that use an id (in a file name, say) before registering it.
pub fn check_agent_id(agent: &str) -> Result<()> {
    match valid_agent(agent.as_bytes()) {
        Some(_) => Ok(()),
        None => Err(Error::InvalidAgentId(agent.to_owned())),
    }
}

/// Whether `key_id` of the agent `r` signs at `now`. An agent named
/// [`LOCAL_ADMIN_AGENT`], which a store written before the id was reserved may
/// hold, never does: it must not act as what audit trails take for the
/// offline tools.
fn key_active(r: &AgentRecord, key_id: u64, now: Timestamp) -> bool {
    !r.revoked
        && r.agent != LOCAL_ADMIN_AGENT
        && (r.key_id == key_id
            || r.grace_keys
                .iter()
                .any(|g| g.key_id == key_id && now < g.valid_until))
}

fn active<'s>(state: &'s State, agent: &str) -> Result<&'s Entry> {
    match state.agents.get(agent) {
        None => Err(Error::UnknownAgent(agent.to_owned())),
        Some(e) if e.record.revoked => Err(Error::AgentRevoked(agent.to_owned())),
        Some(e) => Ok(e),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use lighthouse_event_store::{
        EventStore, ExpectedVersion, NewEvent, StoreOptions, SystemClock, Timestamp,
    };
    use serde_json::json;

    use super::*;
    use crate::keys::MasterKey;

    #[test]
    fn agent_ids_that_could_name_another_path_are_refused() {
        for ok in ["alice", "ops-1", "a.b_c", &"a".repeat(64)] {
            assert!(check_agent_id(ok).is_ok(), "{ok}");
        }
        for bad in ["", "../../x", "a/b", ".hidden", "Alice", &"a".repeat(65)] {
            assert!(
                matches!(check_agent_id(bad), Err(Error::InvalidAgentId(ref id)) if id == bad),
                "{bad}"
            );
        }
    }

    #[tokio::test]
    async fn the_last_active_admin_cannot_be_revoked() {
        let store = EventStore::open_temporary(StoreOptions::new(b"registry test key")).unwrap();
        let reg = AgentRegistry::open(
            store,
            MasterKey::generate().unwrap(),
            Arc::new(SystemClock),
            RegistryConfig::default(),
        )
        .unwrap();
        reg.register("admin", Role::Admin, None).await.unwrap();
        reg.register("ops", Role::Operator, None).await.unwrap();
        // An operator is no admin: nobody could manage agents afterwards.
        assert!(matches!(
            reg.revoke("admin", Some("admin")).await,
            Err(Error::LastAdmin(ref a)) if a == "admin"
        ));
        assert!(reg.is_active("admin"));
        reg.register("ops-admin", Role::Admin, Some("admin"))
            .await
            .unwrap();
        reg.revoke("admin", Some("ops-admin")).await.unwrap();
        assert!(!reg.is_active("admin"));
        // Now ops-admin is the last one.
        assert!(matches!(
            reg.revoke("ops-admin", Some("ops-admin")).await,
            Err(Error::LastAdmin(_))
        ));
        reg.revoke("ops", Some("ops-admin")).await.unwrap();
        // Naming the offline actor is not enough: only the offline path may.
        assert!(matches!(
            reg.revoke("ops-admin", Some(LOCAL_ADMIN_AGENT)).await,
            Err(Error::LastAdmin(_))
        ));
        // The offline tools may revoke the last admin (they can add one after).
        reg.revoke_offline("ops-admin").await.unwrap();
        assert!(!reg.is_active("ops-admin"));
        // The offline tools' actor cannot be registered.
        assert!(matches!(
            reg.register(LOCAL_ADMIN_AGENT, Role::Admin, Some("ops-admin"))
                .await,
            Err(Error::ReservedAgentId(..))
        ));
    }

    #[tokio::test]
    async fn reserved_ids_are_refused_but_one_registered_before_stays_manageable() {
        let store = EventStore::open_temporary(StoreOptions::new(b"registry test key")).unwrap();
        let reg = AgentRegistry::open(
            store.clone(),
            MasterKey::generate().unwrap(),
            Arc::new(SystemClock),
            RegistryConfig::default(),
        )
        .unwrap();
        reg.register("admin", Role::Admin, None).await.unwrap();
        for id in [ME_AGENT, LOCAL_ADMIN_AGENT] {
            let e = reg
                .register(id, Role::Agent, Some("admin"))
                .await
                .unwrap_err();
            assert!(
                matches!(e, Error::ReservedAgentId(ref a, _) if a == id),
                "{e}"
            );
            assert!(e.to_string().contains("reserved"), "{e}");
            assert!(reg.get(id).is_none());
        }
        // A store written before `me` was reserved may hold one: it loads,
        // signs, and can be rotated and revoked.
        store
            .append_one(
                NewEvent::new(
                    AGENTS_STREAM,
                    AGENT_REGISTERED,
                    json!({"agent": "me", "role": "agent", "key_id": 1}),
                )
                .expect(ExpectedVersion::Exact(0)),
            )
            .await
            .unwrap();
        reg.catch_up().unwrap();
        let now = Timestamp::from_unix_secs(2_000_000_000);
        assert!(reg.key_is_active(ME_AGENT, 1, now));
        assert_eq!(reg.rotate(ME_AGENT, Some("admin")).await.unwrap().key_id, 2);
        reg.revoke(ME_AGENT, Some("admin")).await.unwrap();
        assert!(!reg.is_active(ME_AGENT));
    }

    #[tokio::test]
    async fn a_change_written_but_not_read_back_refuses_until_it_is() {
        let store = EventStore::open_temporary(StoreOptions::new(b"registry test key")).unwrap();
        let reg = AgentRegistry::open(
            store.clone(),
            MasterKey::generate().unwrap(),
            Arc::new(SystemClock),
            RegistryConfig::default(),
        )
        .unwrap();
        reg.register("alice", Role::Agent, None).await.unwrap();
        let now = Timestamp::from_unix_secs(2_000_000_000);
        assert!(reg.key_is_active("alice", 1, now));
        // The revocation is in the log, but reading it back failed: the
        // state still shows alice active.
        store
            .append_one(
                NewEvent::new(AGENTS_STREAM, AGENT_REVOKED, json!({"agent": "alice"}))
                    .expect(ExpectedVersion::Exact(0)),
            )
            .await
            .unwrap();
        reg.mark_unread(1);
        // The next look-up reads it back before answering.
        assert!(!reg.key_is_active("alice", 1, now));
        assert!(reg.signing_key("alice", 1, now).is_none());
        assert_eq!(reg.inner.unread.load(Ordering::Acquire), 0);
        // While a written change cannot be read back, nothing is admitted (the
        // verifier answers 503): here a version the log does not hold yet.
        reg.register("bob", Role::Agent, None).await.unwrap();
        reg.mark_unread(9);
        assert!(!reg.current());
        assert!(!reg.key_is_active("bob", 1, now));
        // A catch-up that reaches it lets everything through again.
        for i in 0..7 {
            reg.register(&format!("c{i}"), Role::Agent, None)
                .await
                .unwrap();
        }
        assert!(reg.current());
        assert!(reg.key_is_active("bob", 1, now));
    }
}
