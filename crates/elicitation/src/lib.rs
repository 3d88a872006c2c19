//! `lighthouse-elicitation`: elicitations and messages as an event-sourced service.
//!
//! One agent asks another a question whose answer must match a schema, within a
//! deadline, and both sides learn the outcome at once (PROTOCOL.md sections 4 to
//! 6). [`ElicitationService`] owns the state machine, the schema profiles, the
//! expiry timer, per-agent notifications, per-elicitation waiters, listings,
//! idempotency keys, the messages mailbox and drains.
//!
//! What it is not for: HTTP, authentication, feature flags or metrics. Callers
//! arrive already authenticated as a [`Caller`](lighthouse_security::Caller); the
//! bridge gates creation with its flag, maps [`Error`] to problem codes
//! ([`Error::code`]), and wires [`Hooks`] to its metrics and [`Directory`] to its
//! agent registry.
//!
//! # Invariants
//! - State is a projection of the log: every transition is an event
//!   (`elicitation.requested`, `.accepted`, `.declined`, `.cancelled`,
//!   `.expired` on stream `elicitation-<id>`; `message.sent` on
//!   `mailbox-<recipient>`), and the in-memory state is rebuilt on start from a
//!   snapshot plus the tail of the log. An operation is acknowledged only after
//!   its event is durable and applied.
//! - A terminal state is reached exactly once: transitions of one elicitation are
//!   serialized and appended with the stream's expected version, so the loser of
//!   a race between respond, cancel and expiry gets `already_resolved` or
//!   `expired`.
//! - Acting on a pending elicitation whose `expires_at` has passed is `expired`,
//!   even before the timer wrote the event; deadlines missed while the service
//!   was down are expired before [`ElicitationService::open`] returns.
//! - Notifications go out in log order; a subscription from position `P`
//!   delivers exactly the notifications after `P`, with no gap or duplicate.
//! - Every structure that grows with traffic is bounded by a [`Limits`] field.
//!
//! # Example
//! ```
//! use lighthouse_elicitation::{CreateRequest, ElicitationService, RespondRequest, ServiceOptions, Status};
//! use lighthouse_event_store::{EventStore, StoreOptions};
//! use lighthouse_security::{Caller, Role};
//! use serde_json::json;
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let store = EventStore::open_temporary(StoreOptions::new(b"a secret key of 32 bytes or so.."))?;
//! let svc = ElicitationService::open(store, ServiceOptions::new()).await?;
//! let alice = Caller { agent: "alice".into(), role: Role::Agent, key_id: 1 };
//! let bob = Caller { agent: "bob".into(), role: Role::Agent, key_id: 1 };
//!
//! let schema = json!({"type": "object",
//!     "properties": {"port": {"type": "integer", "minimum": 1, "maximum": 65535}},
//!     "required": ["port"]});
//! let asked = svc.create(&alice, "req-1", CreateRequest::new("bob", "Which port?", schema), None).await?;
//! let id = asked.record.id.clone();
//!
//! // A wrong answer is refused with every violation; the elicitation stays pending.
//! let wrong = svc.respond(&bob, "req-2", &id, RespondRequest::accept(json!({"port": 70000}))).await;
//! assert_eq!(wrong.unwrap_err().code(), "schema_mismatch");
//!
//! svc.respond(&bob, "req-3", &id, RespondRequest::accept(json!({"port": 8080}))).await?;
//! let seen = svc.get(&alice, &id, 0).await?;
//! assert_eq!(seen.status, Status::Accepted);
//! assert_eq!(seen.response.as_ref().unwrap().content, Some(json!({"port": 8080})));
//! # Ok::<(), lighthouse_elicitation::Error>(())
//! # }).unwrap();
//! ```
#![warn(missing_docs)]

mod error;
pub mod events;
mod hooks;
mod limits;
mod notify;
mod projection;
mod record;
mod request;
mod schema;
mod service;
mod wait;

pub use error::{Error, Result, SchemaProblem, Violation};
pub use hooks::{AnyAgent, Directory, Hooks, NoHooks};
pub use limits::Limits;
pub use notify::{Notification, NotificationKind, Payload};
pub use projection::Mailbox;
pub use record::{Action, Elicitation, Message, Response, SchemaProfile, Status};
pub use request::{
    CancelRequest, CreateRequest, DrainReport, DrainRequest, DrainThen, ListPage, ListQuery,
    MessagesPage, ReceiveQuery, RespondAction, RespondRequest, SendMessage, SentMessage,
};
pub use schema::CompiledSchema;
pub use service::{
    AgentSubscription, Created, DEFAULT_SNAPSHOT_NAME, ElicitationService, MemoryCounts,
    ServiceOptions,
};
pub use wait::WaitMeter;
