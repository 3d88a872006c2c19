//! Request bodies of PROTOCOL.md sections 4, 6 and 9, and their checks.
//!
//! The serde types refuse unknown fields, as the protocol requires. Nothing here
//! names the caller: identity is always the authenticated [`Caller`](lighthouse_security::Caller).

use lighthouse_event_store::{Field, validate_agent, validate_token};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Violation};
use crate::limits::Limits;
use crate::projection::Mailbox;
use crate::record::{SchemaProfile, Status};

/// `POST /v1/elicitations`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateRequest {
    /// The target agent.
    pub to: String,
    /// The question (at most [`Limits::max_message_bytes`]).
    pub message: String,
    /// The schema the answer must match.
    pub requested_schema: Value,
    /// Time to answer, from [`Limits::min_timeout_ms`] to [`Limits::max_timeout_ms`]
    /// (default [`Limits::default_timeout_ms`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Any JSON object, kept on the record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
    /// `"json-schema"` for full JSON Schema 2020-12; the form profile otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_profile: Option<SchemaProfile>,
}

impl CreateRequest {
    /// A create with the defaults: form profile, default timeout, no metadata.
    pub fn new(to: impl Into<String>, message: impl Into<String>, requested_schema: Value) -> Self {
        CreateRequest {
            to: to.into(),
            message: message.into(),
            requested_schema,
            timeout_ms: None,
            metadata: None,
            schema_profile: None,
        }
    }

    /// Sets `timeout_ms`.
    pub fn timeout_ms(mut self, ms: u64) -> Self {
        self.timeout_ms = Some(ms);
        self
    }

    /// Checks every field but the schema; returns the timeout to use.
    pub(crate) fn check(&self, limits: &Limits) -> Result<u64, Error> {
        let mut errors = Vec::new();
        if validate_agent(&self.to).is_err() {
            errors.push(Violation::new(
                "/to",
                "must be an agent id: 1 to 64 of [a-z0-9._-], starting with a-z or 0-9",
            ));
        }
        if self.message.len() > limits.max_message_bytes {
            errors.push(over(
                "/message",
                self.message.len(),
                limits.max_message_bytes,
            ));
        }
        let timeout = self.timeout_ms.unwrap_or(limits.default_timeout_ms);
        if !(limits.min_timeout_ms..=limits.max_timeout_ms).contains(&timeout) {
            errors.push(Violation::new(
                "/timeout_ms",
                format!(
                    "must be from {} to {}",
                    limits.min_timeout_ms, limits.max_timeout_ms
                ),
            ));
        }
        if let Some(m) = &self.metadata {
            check_metadata(m, limits, &mut errors);
        }
        if errors.is_empty() {
            Ok(timeout)
        } else {
            Err(Error::InvalidRequest { errors })
        }
    }
}

fn check_metadata(m: &Value, limits: &Limits, errors: &mut Vec<Violation>) {
    if !m.is_object() {
        errors.push(Violation::new("/metadata", "must be a JSON object"));
        return;
    }
    let size = json_size(m);
    if size > limits.max_metadata_bytes {
        errors.push(over("/metadata", size, limits.max_metadata_bytes));
    }
}

fn over(path: &str, size: usize, limit: usize) -> Violation {
    Violation::new(
        path,
        format!("is {size} bytes, more than the limit of {limit}"),
    )
}

/// What a target does with an elicitation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RespondAction {
    /// Answer with `content`.
    Accept,
    /// Decline, optionally with a reason.
    Decline,
}

/// `POST /v1/elicitations/{id}/respond`: `{action: "accept", content}` or
/// `{action: "decline", reason?}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RespondRequest {
    /// Accept or decline.
    pub action: RespondAction,
    /// The answer (accept only, required there). A `null` given is an answer
    /// (`Some(Value::Null)`, which a `json-schema` profile may allow), unlike
    /// no `content` at all.
    #[serde(
        default,
        deserialize_with = "given",
        skip_serializing_if = "Option::is_none"
    )]
    pub content: Option<Value>,
    /// Why (decline only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl RespondRequest {
    /// Accept with `content`.
    pub fn accept(content: Value) -> Self {
        RespondRequest {
            action: RespondAction::Accept,
            content: Some(content),
            reason: None,
        }
    }

    /// Decline with an optional reason.
    pub fn decline(reason: Option<String>) -> Self {
        RespondRequest {
            action: RespondAction::Decline,
            content: None,
            reason,
        }
    }

    pub(crate) fn check(&self, limits: &Limits) -> Result<(), Error> {
        let mut errors = Vec::new();
        match self.action {
            RespondAction::Accept => {
                match &self.content {
                    None => errors.push(Violation::new("/content", "is required to accept")),
                    Some(c) => {
                        let size = json_size(c);
                        if size > limits.max_content_bytes {
                            errors.push(over("/content", size, limits.max_content_bytes));
                        }
                    }
                }
                if self.reason.is_some() {
                    errors.push(Violation::new(
                        "/reason",
                        "is only allowed with action \"decline\"",
                    ));
                }
            }
            RespondAction::Decline => {
                // `null` is taken as no content here, as it always was.
                if self.content.as_ref().is_some_and(|c| !c.is_null()) {
                    errors.push(Violation::new(
                        "/content",
                        "is only allowed with action \"accept\"",
                    ));
                }
                check_reason(self.reason.as_deref(), limits, &mut errors);
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(Error::InvalidRequest { errors })
        }
    }
}

/// A field that is present, even as `null`, is `Some`.
fn given<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

fn check_reason(reason: Option<&str>, limits: &Limits, errors: &mut Vec<Violation>) {
    if let Some(r) = reason.filter(|r| r.len() > limits.max_reason_bytes) {
        errors.push(over("/reason", r.len(), limits.max_reason_bytes));
    }
}

pub(crate) fn check_reason_only(reason: Option<&str>, limits: &Limits) -> Result<(), Error> {
    let mut errors = Vec::new();
    check_reason(reason, limits, &mut errors);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Error::InvalidRequest { errors })
    }
}

/// `POST /v1/elicitations/{id}/cancel`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CancelRequest {
    /// Why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `GET /v1/elicitations?box=&status=&limit=&cursor=`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    /// Inbox or outbox.
    pub mailbox: Mailbox,
    /// Only this status (all when `None`).
    pub status: Option<Status>,
    /// Page size (default [`Limits::default_page_limit`], at most [`Limits::max_page_limit`]).
    pub limit: Option<usize>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// A page of elicitations: `{"items": [...], "next_cursor": ...}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ListPage {
    /// The records, oldest first.
    pub items: Vec<std::sync::Arc<crate::record::Elicitation>>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// `POST /v1/messages`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendMessage {
    /// The recipient.
    pub to: String,
    /// Any JSON (at most [`Limits::max_message_body_bytes`]).
    pub body: Value,
}

/// `{id, seq}` of a sent message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SentMessage {
    /// `msg_` followed by a ULID.
    pub id: String,
    /// The store sequence of its `message.sent` event.
    pub seq: u64,
}

/// `GET /v1/messages?after=&wait_ms=&limit=`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReceiveQuery {
    /// Only messages with `seq > after`.
    pub after: u64,
    /// Long-poll up to this long when there are none (at most [`Limits::max_wait_ms`]).
    pub wait_ms: u64,
    /// Most messages (default [`Limits::default_page_limit`], at most [`Limits::max_page_limit`]).
    pub limit: Option<usize>,
}

/// `{"messages": [...], "next_after": SEQ}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MessagesPage {
    /// Oldest first.
    pub messages: Vec<std::sync::Arc<crate::record::Message>>,
    /// The last `seq` returned, else the `after` given.
    pub next_after: u64,
}

/// What a drain does once its wait is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DrainThen {
    /// Cancel every elicitation still pending.
    Cancel,
    /// Leave them.
    #[default]
    None,
}

/// `POST /v1/ops/drain`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DrainRequest {
    /// How long to wait for pending elicitations to resolve (at most [`Limits::max_timeout_ms`]).
    pub timeout_ms: u64,
    /// What to do with the rest.
    #[serde(default)]
    pub then: DrainThen,
    /// Recorded on every cancellation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `{"resolved_while_draining", "cancelled", "remaining", "elapsed_ms"}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrainReport {
    /// Elicitations that reached a terminal state during the wait, by any other
    /// means (pending when the drain started or created during its wait), plus
    /// those the drain found past their deadline and expired.
    pub resolved_while_draining: u64,
    /// Elicitations the drain cancelled.
    pub cancelled: u64,
    /// Elicitations still pending when the drain returned.
    pub remaining: u64,
    /// How long the drain took.
    pub elapsed_ms: u64,
    /// The part of `elapsed_ms` spent waiting for others to resolve their
    /// elicitations. Not on the wire: the bridge marks it as waited, so that it
    /// stays out of `http.latency_ms` (PROTOCOL.md 9).
    #[serde(skip)]
    pub waited_ms: u64,
}

/// The size of a value serialized as JSON, counted without building the bytes.
pub(crate) use lighthouse_event_store::json_size;

/// Checks a request id, which becomes the `correlation_id` of the events written.
pub(crate) fn check_request_id(id: &str) -> Result<(), Error> {
    validate_token(id, Field::CorrelationId).map_err(|_| {
        Error::invalid(
            "/X-Request-Id",
            "the request id must be 1 to 128 of [A-Za-z0-9_.:-]",
        )
    })
}

/// Checks the cap on a wait, and the page limit.
pub(crate) fn page_limit(limit: Option<usize>, limits: &Limits) -> Result<usize, Error> {
    let l = limit.unwrap_or(limits.default_page_limit);
    if l == 0 || l > limits.max_page_limit {
        return Err(Error::invalid(
            "/limit",
            format!("must be from 1 to {}", limits.max_page_limit),
        ));
    }
    Ok(l)
}

pub(crate) fn wait_ms(ms: u64, limits: &Limits, field: &str) -> Result<u64, Error> {
    if ms > limits.max_wait_ms {
        return Err(Error::invalid(
            field,
            format!("must be from 0 to {}", limits.max_wait_ms),
        ));
    }
    Ok(ms)
}
