//! [`RunningCalls`]: the tool calls `/mcp` is answering now, by agent and
//! JSON-RPC request id, so that a `notifications/cancelled` can stop one.
//!
//! The endpoint is stateless: a cancellation arrives as an HTTP request of
//! its own, which rmcp answers `202` and drops. The admission layer therefore
//! registers each admitted tool call here and fires the registered call's
//! token when the same agent, with the same bearer token, names its request
//! id in a `notifications/cancelled`; the call's context waits on that token
//! as on rmcp's own. A cancellation from another agent, or from another token
//! of the same agent (another client, which numbers its ids on its own),
//! finds nothing: the key holds the authenticated agent and a digest of the
//! token.
//!
//! Bounded: at most `max` calls are registered at once, and at most
//! `max / 16` (at least 1) of one agent, so that one agent's calls cannot
//! take every entry (a call beyond either bound runs, but only closing its
//! stream can cancel it); request ids longer than [`MAX_ID_BYTES`] are not
//! registered, and an entry is removed when its call's response ends or is
//! dropped ([`RunningCall`]'s `Drop`).
//!
//! A cancellation may arrive before its call is registered (the call still
//! reading its body, or waiting for body budget): one that finds nothing is
//! kept for `early_ttl` (the body read timeout) as a marker, which the call's
//! registration consumes to start already cancelled. At most `max / 16`
//! markers are kept at once, `max / 256` of one agent (each at least 1); a
//! cancellation beyond them is lost, as before.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use lighthouse_core::ToolOutcome;
use rmcp::model::RequestId;
use sha2::{Digest, Sha256};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Longest string request id registered, in bytes (a body may be 1 MiB; the
/// registry must not hold that per call).
pub(crate) const MAX_ID_BYTES: usize = 256;

/// How a call cancelled by its client is recorded (nginx's "client closed
/// request", as for a stream the client closed).
const CLIENT_CLOSED_REQUEST: u16 = 499;

/// The share of `max` one agent may hold, and the share of `max` kept as
/// markers of cancellations that came before their call.
const PER_AGENT_DIVISOR: usize = 16;

/// The share of `max` one agent may hold as markers.
const EARLY_PER_AGENT_DIVISOR: usize = 256;

/// The SHA-256 of the credential (the `Authorization` value) a call came
/// with: calls under different tokens never share a key, and the registry
/// does not hold the token itself.
pub(crate) type TokenDigest = [u8; 32];

/// The digest of `credential` (empty when there is none).
pub(crate) fn token_digest(credential: Option<&[u8]>) -> TokenDigest {
    Sha256::digest(credential.unwrap_or_default()).into()
}

/// Agent, token digest, request id.
type Key = (String, TokenDigest, RequestId);

/// One registered call's cancellation.
struct Entry {
    serial: u64,
    token: CancellationToken,
    answered: ToolOutcome,
}

#[derive(Default)]
struct Calls {
    by_key: HashMap<Key, Vec<Entry>>,
    count: usize,
    /// Registered calls by agent (only agents with at least one).
    by_agent: HashMap<String, usize>,
    next_serial: u64,
    /// Cancellations that found no call, until when they are kept.
    early: HashMap<Key, Instant>,
    /// The same in the order they expire (also entries since consumed).
    early_order: VecDeque<(Instant, Key)>,
    /// Markers by agent (only agents with at least one).
    early_by_agent: HashMap<String, usize>,
}

impl Calls {
    /// Forgets the markers whose time has passed.
    fn purge_early(&mut self, now: Instant) {
        while let Some((until, _)) = self.early_order.front() {
            if *until > now {
                break;
            }
            let Some((until, key)) = self.early_order.pop_front() else {
                break;
            };
            if self.early.get(&key) == Some(&until) {
                self.early.remove(&key);
                self.forget_early_of(&key.0);
            }
        }
    }

    fn forget_early_of(&mut self, agent: &str) {
        if let Some(n) = self.early_by_agent.get_mut(agent) {
            *n -= 1;
            if *n == 0 {
                self.early_by_agent.remove(agent);
            }
        }
    }
}

/// The tool calls running now (see the module documentation).
pub(crate) struct RunningCalls {
    max: usize,
    per_agent: usize,
    early_ttl: Duration,
    max_early: usize,
    early_per_agent: usize,
    calls: Mutex<Calls>,
}

impl RunningCalls {
    /// A registry of at most `max` calls, `max / 16` (at least 1) of one
    /// agent, keeping a cancellation that came before its call for
    /// `early_ttl`.
    pub(crate) fn new(max: usize, early_ttl: Duration) -> Arc<Self> {
        Arc::new(RunningCalls {
            max,
            per_agent: (max / PER_AGENT_DIVISOR).max(1),
            early_ttl,
            max_early: (max / PER_AGENT_DIVISOR).max(1),
            early_per_agent: (max / EARLY_PER_AGENT_DIVISOR).max(1),
            calls: Mutex::new(Calls::default()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Calls> {
        // Nothing in the critical sections panics; a poisoned lock still
        // holds consistent data.
        self.calls.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers `agent`'s call `id`, made with the token of digest `token`,
    /// whose answer is recorded in `answered`. `None` when the registry or the
    /// agent's share of it is full or the id too long: the call runs, but a
    /// `notifications/cancelled` cannot reach it.
    pub(crate) fn register(
        self: &Arc<Self>,
        agent: &str,
        token_digest: TokenDigest,
        id: RequestId,
        answered: ToolOutcome,
    ) -> Option<RunningCall> {
        if matches!(&id, RequestId::String(s) if s.len() > MAX_ID_BYTES) {
            return None;
        }
        let token = CancellationToken::new();
        let key = (agent.to_owned(), token_digest, id);
        let mut calls = self.lock();
        calls.purge_early(Instant::now());
        // Cancelled before it was registered: it starts cancelled.
        if calls.early.remove(&key).is_some() {
            calls.forget_early_of(agent);
            answered.answered(CLIENT_CLOSED_REQUEST);
            token.cancel();
        }
        if calls.count >= self.max {
            tracing::debug!(
                max = self.max,
                "too many tool calls running to register one for cancellation"
            );
            return None;
        }
        let of_agent = calls.by_agent.get(agent).copied().unwrap_or(0);
        if of_agent >= self.per_agent {
            tracing::debug!(
                max = self.per_agent,
                "too many tool calls of one agent running to register one for cancellation"
            );
            return None;
        }
        let serial = calls.next_serial;
        calls.next_serial = serial.wrapping_add(1);
        calls.count += 1;
        *calls.by_agent.entry(agent.to_owned()).or_default() += 1;
        calls.by_key.entry(key.clone()).or_default().push(Entry {
            serial,
            token: token.clone(),
            answered,
        });
        Some(RunningCall {
            calls: self.clone(),
            key,
            serial,
            token,
        })
    }

    /// Cancels `agent`'s running calls with request id `id` made with the
    /// token of digest `token` (a client may have reused an id: every call of
    /// it under that token is cancelled, since a stateless endpoint cannot
    /// tell two clients sharing a token apart). Returns how many.
    pub(crate) fn cancel(&self, agent: &str, token_digest: TokenDigest, id: &RequestId) -> usize {
        let key = (agent.to_owned(), token_digest, id.clone());
        let mut calls = self.lock();
        let now = Instant::now();
        calls.purge_early(now);
        let Some(entries) = calls.by_key.get(&key) else {
            // Perhaps its call is not registered yet: kept for it, within
            // bounds (a marker already there is left as it is).
            let of_agent = calls.early_by_agent.get(agent).copied().unwrap_or(0);
            if !calls.early.contains_key(&key)
                && calls.early_order.len() < self.max_early
                && of_agent < self.early_per_agent
            {
                let until = now + self.early_ttl;
                calls.early.insert(key.clone(), until);
                calls.early_order.push_back((until, key));
                *calls.early_by_agent.entry(agent.to_owned()).or_default() += 1;
            }
            return 0;
        };
        for e in entries {
            // Recorded as its client's cancellation, before the stream ends
            // without an answer (which would otherwise count as the bridge's
            // failure).
            e.answered.answered(CLIENT_CLOSED_REQUEST);
            e.token.cancel();
        }
        entries.len()
    }

    /// How many calls are registered.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().count
    }

    fn remove(&self, key: &Key, serial: u64) {
        let mut calls = self.lock();
        let Some(entries) = calls.by_key.get_mut(key) else {
            return;
        };
        let before = entries.len();
        entries.retain(|e| e.serial != serial);
        let removed = before - entries.len();
        if entries.is_empty() {
            calls.by_key.remove(key);
        }
        calls.count -= removed;
        if let Some(n) = calls.by_agent.get_mut(&key.0) {
            *n -= removed;
            if *n == 0 {
                calls.by_agent.remove(&key.0);
            }
        }
    }
}

/// A registered call: its cancellation token, and its entry, removed when
/// this is dropped.
pub(crate) struct RunningCall {
    calls: Arc<RunningCalls>,
    key: Key,
    serial: u64,
    token: CancellationToken,
}

impl RunningCall {
    /// Fired by a `notifications/cancelled` naming this call.
    pub(crate) fn token(&self) -> &CancellationToken {
        &self.token
    }
}

impl Drop for RunningCall {
    fn drop(&mut self) {
        self.calls.remove(&self.key, self.serial);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tok(t: &str) -> TokenDigest {
        token_digest(Some(t.as_bytes()))
    }

    #[test]
    fn only_the_same_agent_and_token_naming_the_same_id_cancels() {
        let calls = RunningCalls::new(16, Duration::from_secs(30));
        let answered = ToolOutcome::default();
        let (a1, a2) = (tok("Bearer a1"), tok("Bearer a2"));
        let call = calls
            .register("alice", a1, RequestId::Number(42), answered.clone())
            .unwrap();
        assert_eq!(calls.cancel("bob", a1, &RequestId::Number(42)), 0);
        assert_eq!(calls.cancel("alice", a2, &RequestId::Number(42)), 0);
        assert_eq!(
            calls.cancel("alice", a1, &RequestId::String("42".into())),
            0
        );
        assert_eq!(calls.cancel("alice", a1, &RequestId::Number(41)), 0);
        assert!(!call.token().is_cancelled());
        assert_eq!(answered.status(), None);
        assert_eq!(calls.cancel("alice", a1, &RequestId::Number(42)), 1);
        assert!(call.token().is_cancelled());
        assert_eq!(answered.status(), Some(CLIENT_CLOSED_REQUEST));
        drop(call);
        assert_eq!(calls.len(), 0);
        assert_eq!(calls.cancel("alice", a1, &RequestId::Number(42)), 0);
    }

    #[test]
    fn the_registry_is_bounded_and_entries_go_when_dropped() {
        // 32 in all, 2 of one agent.
        let calls = RunningCalls::new(32, Duration::from_secs(30));
        let a = tok("Bearer a");
        let id = |n| RequestId::Number(n);
        let reg = |agent: &str, n| calls.register(agent, a, id(n), ToolOutcome::default());
        let first = reg("alice", 1);
        let second = reg("alice", 1);
        assert!(first.is_some() && second.is_some());
        // Alice's share is full; bob still registers.
        assert!(reg("alice", 2).is_none());
        let bobs = reg("bob", 2);
        assert!(bobs.is_some());
        // Both calls of a reused id are cancelled; dropping one removes only it.
        assert_eq!(calls.cancel("alice", a, &id(1)), 2);
        drop(first);
        assert_eq!(calls.len(), 2);
        assert!(reg("alice", 2).is_some_and(|c| !c.token().is_cancelled()));
        drop((second, bobs));
        assert_eq!(calls.len(), 0);
        assert!(calls.lock().by_agent.is_empty());
        let long = RequestId::String("x".repeat(MAX_ID_BYTES + 1).into());
        assert!(
            calls
                .register("alice", a, long, ToolOutcome::default())
                .is_none()
        );
        // The global bound holds across agents.
        let small = RunningCalls::new(2, Duration::from_secs(30));
        let r1 = small.register("alice", a, id(1), ToolOutcome::default());
        let r2 = small.register("bob", a, id(1), ToolOutcome::default());
        assert!(r1.is_some() && r2.is_some());
        assert!(
            small
                .register("carol", a, id(1), ToolOutcome::default())
                .is_none()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancellation_before_its_call_is_kept_for_it_a_while() {
        let ttl = Duration::from_secs(30);
        // 512 in all: 32 markers at once, 2 of one agent.
        let calls = RunningCalls::new(512, ttl);
        let a = tok("Bearer a");
        let id = |n| RequestId::Number(n);
        assert_eq!(calls.cancel("alice", a, &id(1)), 0);
        // Another token's call of that id is not it.
        let other = calls
            .register("alice", tok("Bearer b"), id(1), ToolOutcome::default())
            .unwrap();
        assert!(!other.token().is_cancelled());
        let answered = ToolOutcome::default();
        let early = calls.register("alice", a, id(1), answered.clone()).unwrap();
        assert!(early.token().is_cancelled());
        assert_eq!(answered.status(), Some(CLIENT_CLOSED_REQUEST));
        // Consumed: a later call of that id is not cancelled.
        let later = calls
            .register("alice", a, id(1), ToolOutcome::default())
            .unwrap();
        assert!(!later.token().is_cancelled());
        drop((other, early, later));
        // Expired after the TTL.
        assert_eq!(calls.cancel("alice", a, &id(2)), 0);
        tokio::time::advance(ttl + Duration::from_millis(1)).await;
        let expired = calls
            .register("alice", a, id(2), ToolOutcome::default())
            .unwrap();
        assert!(!expired.token().is_cancelled());
        drop(expired);
        // Bounded per agent and in all.
        let reg = |agent: &str, n| {
            calls
                .register(agent, a, id(n), ToolOutcome::default())
                .unwrap()
        };
        for n in 10..13 {
            calls.cancel("alice", a, &id(n));
        }
        assert!(reg("alice", 10).token().is_cancelled());
        assert!(reg("alice", 11).token().is_cancelled());
        assert!(
            !reg("alice", 12).token().is_cancelled(),
            "over alice's share"
        );
        tokio::time::advance(ttl + Duration::from_millis(1)).await;
        let agents: Vec<String> = (0..33).map(|n| format!("agent{n}")).collect();
        for agent in &agents {
            calls.cancel(agent, a, &id(20));
        }
        let registered: Vec<RunningCall> = agents.iter().map(|agent| reg(agent, 20)).collect();
        assert!(registered[..32].iter().all(|c| c.token().is_cancelled()));
        assert!(!registered[32].token().is_cancelled(), "over the bound");
        assert!(calls.lock().early_by_agent.is_empty());
    }
}
