//! The records of PROTOCOL.md sections 4 and 6, exactly as they go on the wire.

use std::fmt;
use std::sync::Arc;

use lighthouse_event_store::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Where an elicitation is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Waiting for the target.
    Pending,
    /// The target answered with content matching the schema.
    Accepted,
    /// The target declined.
    Declined,
    /// The requester cancelled it, or an operator drained it.
    Cancelled,
    /// Its deadline passed.
    Expired,
}

impl Status {
    /// Every status, in lifecycle order.
    pub const ALL: [Status; 5] = [
        Status::Pending,
        Status::Accepted,
        Status::Declined,
        Status::Cancelled,
        Status::Expired,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Accepted => "accepted",
            Status::Declined => "declined",
            Status::Cancelled => "cancelled",
            Status::Expired => "expired",
        }
    }

    /// Whether the status is final.
    pub fn is_terminal(self) -> bool {
        self != Status::Pending
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What ended an elicitation (`response.action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// The target accepted and answered.
    Accept,
    /// The target declined.
    Decline,
    /// The requester (or a draining operator) cancelled.
    Cancel,
    /// The deadline passed.
    Expire,
}

impl Action {
    /// The terminal status this action leads to.
    pub fn status(self) -> Status {
        match self {
            Action::Accept => Status::Accepted,
            Action::Decline => Status::Declined,
            Action::Cancel => Status::Cancelled,
            Action::Expire => Status::Expired,
        }
    }
}

/// The outcome of a terminal elicitation. All four keys are always present.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    /// What ended it.
    pub action: Action,
    /// The answer for `accept`, else `null`.
    pub content: Option<Value>,
    /// A free-text reason, or `null`.
    pub reason: Option<String>,
    /// The agent that acted; `null` for `expire`.
    pub by: Option<String>,
}

/// Which schema language `requested_schema` is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum SchemaProfile {
    /// The MCP 2025-11-25 form profile (the default).
    #[default]
    #[serde(rename = "form")]
    Form,
    /// Full JSON Schema 2020-12, bounded.
    #[serde(rename = "json-schema")]
    JsonSchema,
}

impl SchemaProfile {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            SchemaProfile::Form => "form",
            SchemaProfile::JsonSchema => "json-schema",
        }
    }
}

/// An elicitation record (PROTOCOL.md section 4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Elicitation {
    /// `el_` followed by a ULID.
    pub id: Arc<str>,
    /// The requester.
    pub from: Arc<str>,
    /// The target.
    pub to: Arc<str>,
    /// The question.
    pub message: Arc<str>,
    /// The schema the answer must match (shared, not copied, between the
    /// versions of the record).
    pub requested_schema: Arc<Value>,
    /// Lifecycle state.
    pub status: Status,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it expires unless resolved before.
    pub expires_at: Timestamp,
    /// When it reached its terminal state, `null` while pending.
    pub resolved_at: Option<Timestamp>,
    /// The outcome, `null` while pending.
    pub response: Option<Response>,
    /// The requester's metadata object (`{}` when none).
    pub metadata: Arc<Value>,
}

impl Elicitation {
    /// Whether `agent` is the requester or the target.
    pub fn involves(&self, agent: &str) -> bool {
        *self.from == *agent || *self.to == *agent
    }

    /// The record as it was while pending (what a replayed `requested`
    /// notification shows).
    pub fn as_pending(&self) -> Elicitation {
        Elicitation {
            status: Status::Pending,
            resolved_at: None,
            response: None,
            ..self.clone()
        }
    }
}

/// A mailbox message (PROTOCOL.md section 6).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// `msg_` followed by a ULID.
    pub id: String,
    /// The store sequence of its `message.sent` event.
    pub seq: u64,
    /// The sender.
    pub from: String,
    /// The recipient.
    pub to: String,
    /// Any JSON.
    pub body: Value,
    /// When it was sent.
    pub created_at: Timestamp,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn record_serializes_with_every_key_of_the_protocol() {
        let r = Elicitation {
            id: "el_01JDX3".into(),
            from: "alice".into(),
            to: "bob".into(),
            message: "Which port?".into(),
            requested_schema: Arc::new(json!({"type": "object", "properties": {}})),
            status: Status::Expired,
            created_at: Timestamp::from_unix_millis(0),
            expires_at: Timestamp::from_unix_millis(30_000),
            resolved_at: Some(Timestamp::from_unix_millis(30_001)),
            response: Some(Response {
                action: Action::Expire,
                content: None,
                reason: None,
                by: None,
            }),
            metadata: Arc::new(json!({})),
        };
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(
            v,
            json!({"id": "el_01JDX3", "from": "alice", "to": "bob", "message": "Which port?",
                "requested_schema": {"type": "object", "properties": {}}, "status": "expired",
                "created_at": "1970-01-01T00:00:00.000Z", "expires_at": "1970-01-01T00:00:30.000Z",
                "resolved_at": "1970-01-01T00:00:30.001Z",
                "response": {"action": "expire", "content": null, "reason": null, "by": null},
                "metadata": {}})
        );
        let pending = r.as_pending();
        let v = serde_json::to_value(&pending).unwrap();
        assert_eq!(v["response"], Value::Null);
        assert_eq!(v["resolved_at"], Value::Null);
        assert_eq!(v["status"], "pending");
    }

    #[test]
    fn statuses_round_trip_their_names() {
        for s in Status::ALL {
            assert_eq!(Status::parse(s.as_str()), Some(s));
        }
        assert_eq!(Status::parse("done"), None);
        assert!(!Status::Pending.is_terminal());
        assert!(Status::Declined.is_terminal());
    }
}
