//! The crate's one error type and the detail records it carries.

use serde::{Deserialize, Serialize};

use crate::record::Status;

/// One problem with a request or an answer, located by JSON pointer
/// (PROTOCOL.md section 3, the `errors` array of a problem body).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    /// JSON pointer into the request body (`invalid_request`) or into the
    /// answer's `content` (`schema_mismatch`); `""` is the whole value.
    pub path: String,
    /// What is wrong, for a person.
    pub message: String,
}

impl Violation {
    /// A violation at `path`.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Violation {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// One reason a requested schema is refused (`400 invalid_schema`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemaProblem {
    /// The keyword at fault, for example `pattern` or `type`.
    pub keyword: String,
    /// JSON pointer to that keyword inside `requested_schema`.
    pub path: String,
    /// What is wrong, for a person.
    pub message: String,
}

/// Everything that can go wrong in the elicitation service.
///
/// Each variant maps to one problem code of PROTOCOL.md section 3; the mapping is
/// done once, by the HTTP layer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The elicitation does not exist, or the caller may not see it (`404 not_found`).
    #[error("{what} not found")]
    NotFound {
        /// What was looked for (`elicitation`, `agent`).
        what: &'static str,
    },
    /// The caller may see the thing but not do this (`403 forbidden`).
    #[error("forbidden: {reason}")]
    Forbidden {
        /// Why, for a person.
        reason: &'static str,
    },
    /// The elicitation already reached a terminal state other than expiry
    /// (`409 already_resolved`).
    #[error("elicitation {id} is already {status}")]
    AlreadyResolved {
        /// The elicitation.
        id: String,
        /// Its terminal state.
        status: Status,
    },
    /// The elicitation expired, or its `expires_at` passed and the expiry event is
    /// about to be written (`409 expired`).
    #[error("elicitation {id} has expired")]
    Expired {
        /// The elicitation.
        id: String,
    },
    /// The answer does not match the requested schema; the elicitation stays
    /// pending (`422 schema_mismatch`).
    #[error("the response does not match the requested schema ({} violation(s), first at {:?}: {})",
        errors.len(),
        errors.first().map_or("", |v| v.path.as_str()),
        errors.first().map_or("", |v| v.message.as_str()))]
    SchemaMismatch {
        /// Every violation, by JSON pointer into `content`.
        errors: Vec<Violation>,
    },
    /// The requested schema is not allowed by its profile (`400 invalid_schema`).
    #[error("invalid requested_schema: keyword {:?} at {:?}: {}",
        problems.first().map_or("", |p| p.keyword.as_str()),
        problems.first().map_or("", |p| p.path.as_str()),
        problems.first().map_or("", |p| p.message.as_str()))]
    InvalidSchema {
        /// Every problem found (at least one).
        problems: Vec<SchemaProblem>,
    },
    /// A field is missing, malformed, over its limit or out of range
    /// (`400 invalid_request`).
    #[error("invalid request: {}", errors.iter().map(|v| format!("{} {}", v.path, v.message)).collect::<Vec<_>>().join("; "))]
    InvalidRequest {
        /// Every problem, by JSON pointer into the request body.
        errors: Vec<Violation>,
    },
    /// A bounded structure is full (`503 unavailable`): retry later.
    #[error("too many {what} (limit {limit}); retry later")]
    Capacity {
        /// What is full (`pending elicitations`, `subscriptions`, ...).
        what: &'static str,
        /// The configured limit.
        limit: usize,
    },
    /// A subscription fell behind its bounded buffer and was cut off. Resume with
    /// a new subscription after `last_seq`: nothing after it was delivered.
    #[error("subscriber lagged behind; resume after seq {last_seq}")]
    Lagged {
        /// Every notification up to this position was delivered.
        last_seq: u64,
    },
    /// The service was shut down.
    #[error("the elicitation service is shut down")]
    Closed,
    /// The elicitation's creation is in the log but the service has not
    /// caught up with it within a few seconds (`503 unavailable`): retry.
    #[error("the elicitation service is catching up with the log; retry shortly")]
    Behind,
    /// An event on an elicitation or mailbox stream could not be understood.
    #[error("event at seq {seq} is not a valid {event_type} event: {reason}")]
    Corrupt {
        /// Its position.
        seq: u64,
        /// Its type.
        event_type: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The event store failed.
    #[error("event store: {0}")]
    Store(lighthouse_event_store::Error),
}

impl From<lighthouse_event_store::Error> for Error {
    /// A closed store (or a service stopped while the call waited for its
    /// event to be applied) is [`Error::Closed`], "unavailable", like the
    /// service's own shutdown; every other store error is [`Error::Store`].
    fn from(e: lighthouse_event_store::Error) -> Self {
        match e {
            lighthouse_event_store::Error::Closed => Error::Closed,
            e => Error::Store(e),
        }
    }
}

impl Error {
    /// An `invalid_request` with one violation.
    pub(crate) fn invalid(path: impl Into<String>, message: impl Into<String>) -> Self {
        Error::InvalidRequest {
            errors: vec![Violation::new(path, message)],
        }
    }

    /// The problem code of PROTOCOL.md section 3 this error maps to.
    pub fn code(&self) -> &'static str {
        match self {
            Error::NotFound { .. } => "not_found",
            Error::Forbidden { .. } => "forbidden",
            Error::AlreadyResolved { .. } => "already_resolved",
            Error::Expired { .. } => "expired",
            Error::SchemaMismatch { .. } => "schema_mismatch",
            Error::InvalidSchema { .. } => "invalid_schema",
            Error::InvalidRequest { .. } => "invalid_request",
            Error::Capacity { .. } | Error::Closed | Error::Lagged { .. } | Error::Behind => {
                "unavailable"
            }
            Error::Corrupt { .. } | Error::Store(_) => "internal",
        }
    }
}

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
