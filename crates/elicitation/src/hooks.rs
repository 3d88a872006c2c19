//! What the service tells the outside world ([`Hooks`]) and asks of it
//! ([`Directory`]). The bridge wires these to the metrics crate and to the agent
//! registry; this crate depends on neither.

use std::time::Duration;

use crate::notify::NotificationKind;
use crate::record::{Elicitation, Message};

/// Observations for metrics. Every method has an empty default.
///
/// Called from the service's single applier task, in log order, once per event
/// applied while the service runs (never for events replayed at start), so an
/// implementation must be cheap and must not block (atomics, a histogram record).
pub trait Hooks: Send + Sync + 'static {
    /// An elicitation was created (its `requested` event is durable and applied).
    fn elicitation_created(&self, record: &Elicitation) {
        let _ = record;
    }

    /// An elicitation reached its terminal state; `create_to_terminal` is
    /// `resolved_at - created_at` by the service clock (what
    /// `lighthouse_elicitation_duration_seconds` records).
    fn elicitation_resolved(&self, record: &Elicitation, create_to_terminal: Duration) {
        let _ = (record, create_to_terminal);
    }

    /// The number of pending elicitations changed (`lighthouse_elicitations_active`).
    /// Also called once when the service has started.
    fn pending_changed(&self, pending: usize) {
        let _ = pending;
    }

    /// A mailbox message was sent (`lighthouse_messages_total`).
    fn message_sent(&self, message: &Message) {
        let _ = message;
    }

    /// A live notification was handed to a subscriber's consumer; `since_durable`
    /// runs from the moment the service saw the event durable. Called from the
    /// consumer's task, not the applier.
    fn notification_delivered(&self, kind: NotificationKind, since_durable: Duration) {
        let _ = (kind, since_durable);
    }
}

/// Hooks that observe nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoHooks;

impl Hooks for NoHooks {}

/// Who may be addressed: the target of an elicitation and the recipient of a
/// message must be registered, unrevoked agents (PROTOCOL.md sections 4 and 6).
pub trait Directory: Send + Sync + 'static {
    /// Whether `agent` is a registered agent that is not revoked.
    fn is_active(&self, agent: &str) -> bool;
}

/// A directory in which every well-formed agent id is active (tests, benchmarks).
#[derive(Debug, Clone, Copy, Default)]
pub struct AnyAgent;

impl Directory for AnyAgent {
    fn is_active(&self, _agent: &str) -> bool {
        true
    }
}

impl<F: Fn(&str) -> bool + Send + Sync + 'static> Directory for F {
    fn is_active(&self, agent: &str) -> bool {
        self(agent)
    }
}
