//! [`RunningCalls`]: the tool calls `/mcp` is answering now, by agent and
//! JSON-RPC request id, so that a `notifications/cancelled` can stop one.
//!
//! The endpoint is stateless: a cancellation arrives as an HTTP request of
//! its own, which rmcp answers `202` and drops. The admission layer therefore
//! registers each admitted tool call here and fires the registered call's
//! token when the same agent names its request id in a
//! `notifications/cancelled`; the call's context waits on that token as on
//! rmcp's own. A cancellation from another agent finds nothing: the key holds
//! the authenticated agent.
//!
//! Bounded: at most `max` calls are registered at once (a call beyond it runs,
//! but only closing its stream can cancel it), request ids longer than
//! [`MAX_ID_BYTES`] are not registered, and an entry is removed when its call's
//! response ends or is dropped ([`RunningCall`]'s `Drop`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use lighthouse_core::ToolOutcome;
use rmcp::model::RequestId;
use tokio_util::sync::CancellationToken;

/// Longest string request id registered, in bytes (a body may be 1 MiB; the
/// registry must not hold that per call).
pub(crate) const MAX_ID_BYTES: usize = 256;

/// How a call cancelled by its client is recorded (nginx's "client closed
/// request", as for a stream the client closed).
const CLIENT_CLOSED_REQUEST: u16 = 499;

type Key = (String, RequestId);

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
    next_serial: u64,
}

/// The tool calls running now (see the module documentation).
pub(crate) struct RunningCalls {
    max: usize,
    calls: Mutex<Calls>,
}

impl RunningCalls {
    /// A registry of at most `max` calls.
    pub(crate) fn new(max: usize) -> Arc<Self> {
        Arc::new(RunningCalls {
            max,
            calls: Mutex::new(Calls::default()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Calls> {
        // Nothing in the critical sections panics; a poisoned lock still
        // holds consistent data.
        self.calls.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers `agent`'s call `id`, whose answer is recorded in `answered`.
    /// `None` when the registry is full or the id too long: the call runs,
    /// but a `notifications/cancelled` cannot reach it.
    pub(crate) fn register(
        self: &Arc<Self>,
        agent: &str,
        id: RequestId,
        answered: ToolOutcome,
    ) -> Option<RunningCall> {
        if matches!(&id, RequestId::String(s) if s.len() > MAX_ID_BYTES) {
            return None;
        }
        let token = CancellationToken::new();
        let key = (agent.to_owned(), id);
        let mut calls = self.lock();
        if calls.count >= self.max {
            tracing::debug!(
                max = self.max,
                "too many tool calls running to register one for cancellation"
            );
            return None;
        }
        let serial = calls.next_serial;
        calls.next_serial = serial.wrapping_add(1);
        calls.count += 1;
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

    /// Cancels `agent`'s running calls with request id `id` (the agent's
    /// clients may have reused an id: every call of it is cancelled, since a
    /// stateless endpoint cannot tell those clients apart). Returns how many.
    pub(crate) fn cancel(&self, agent: &str, id: &RequestId) -> usize {
        let key = (agent.to_owned(), id.clone());
        let calls = self.lock();
        let Some(entries) = calls.by_key.get(&key) else {
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

    #[test]
    fn only_the_same_agent_naming_the_same_id_cancels() {
        let calls = RunningCalls::new(10);
        let answered = ToolOutcome::default();
        let call = calls
            .register("alice", RequestId::Number(42), answered.clone())
            .unwrap();
        assert_eq!(calls.cancel("bob", &RequestId::Number(42)), 0);
        assert_eq!(calls.cancel("alice", &RequestId::String("42".into())), 0);
        assert_eq!(calls.cancel("alice", &RequestId::Number(41)), 0);
        assert!(!call.token().is_cancelled());
        assert_eq!(answered.status(), None);
        assert_eq!(calls.cancel("alice", &RequestId::Number(42)), 1);
        assert!(call.token().is_cancelled());
        assert_eq!(answered.status(), Some(CLIENT_CLOSED_REQUEST));
        drop(call);
        assert_eq!(calls.len(), 0);
        assert_eq!(calls.cancel("alice", &RequestId::Number(42)), 0);
    }

    #[test]
    fn the_registry_is_bounded_and_entries_go_when_dropped() {
        let calls = RunningCalls::new(2);
        let id = |n| RequestId::Number(n);
        let a = calls.register("alice", id(1), ToolOutcome::default());
        let b = calls.register("alice", id(1), ToolOutcome::default());
        assert!(a.is_some() && b.is_some());
        assert!(
            calls
                .register("alice", id(2), ToolOutcome::default())
                .is_none()
        );
        // Both calls of a reused id are cancelled; dropping one removes only it.
        assert_eq!(calls.cancel("alice", &id(1)), 2);
        drop(a);
        assert_eq!(calls.len(), 1);
        assert!(
            calls
                .register("alice", id(2), ToolOutcome::default())
                .is_some_and(|c| !c.token().is_cancelled())
        );
        drop(b);
        assert_eq!(calls.len(), 0);
        let long = RequestId::String("x".repeat(MAX_ID_BYTES + 1).into());
        assert!(
            calls
                .register("alice", long, ToolOutcome::default())
                .is_none()
        );
    }
}
