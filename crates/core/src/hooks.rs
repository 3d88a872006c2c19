//! Wiring of the elicitation service to metrics and to the agent registry.

use std::sync::Arc;
use std::time::Duration;

use lighthouse_elicitation::{Directory, Elicitation, Hooks, Message, NotificationKind, Status};
use lighthouse_metrics::{Metrics, Outcome};
use lighthouse_security::AgentRegistry;

/// Reports elicitation observations to the metrics registry.
pub(crate) struct MetricsHooks {
    metrics: Arc<Metrics>,
}

impl MetricsHooks {
    pub(crate) fn new(metrics: Arc<Metrics>) -> Self {
        MetricsHooks { metrics }
    }
}

impl Hooks for MetricsHooks {
    fn elicitation_created(&self, _record: &Elicitation) {
        self.metrics.elicitation_created();
    }

    fn elicitation_resolved(&self, record: &Elicitation, create_to_terminal: Duration) {
        let outcome = match record.status {
            Status::Accepted => Outcome::parse("accepted"),
            Status::Declined => Outcome::parse("declined"),
            Status::Cancelled => Outcome::parse("cancelled"),
            Status::Expired => Outcome::parse("expired"),
            Status::Pending => None,
        };
        if let Some(o) = outcome {
            self.metrics.elicitation_resolved(o, create_to_terminal);
        }
    }

    fn pending_changed(&self, pending: usize) {
        self.metrics.set_active_elicitations(pending as u64);
    }

    fn message_sent(&self, _message: &Message) {
        self.metrics.message_sent();
    }

    fn notification_delivered(&self, kind: NotificationKind, since_durable: Duration) {
        // delivery_ms counts requests pushed to their target (PROTOCOL.md 9).
        if kind == NotificationKind::ElicitationRequested {
            self.metrics.elicitation_delivered(since_durable);
        }
    }
}

/// Targets and recipients must be registered, unrevoked agents.
pub(crate) struct RegistryDirectory(pub(crate) AgentRegistry);

impl Directory for RegistryDirectory {
    fn is_active(&self, agent: &str) -> bool {
        self.0.is_active(agent)
    }
}
