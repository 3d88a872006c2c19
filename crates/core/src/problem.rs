//! Library errors turned into protocol problems, in one place.
//!
//! Storage and internal failures become `500 internal` with a generic detail;
//! the cause is logged, never sent.

use lighthouse_event_store::Error as StoreError;

use crate::api::{ErrorCode, FieldError, Problem};

fn internal(what: &str, e: &dyn std::fmt::Display) -> Problem {
    tracing::error!(error = %e, "{what} failed");
    Problem::internal()
}

/// The problem for an event store error.
pub fn from_store(e: StoreError) -> Problem {
    match e {
        StoreError::VersionConflict {
            stream,
            expected,
            actual,
        } => {
            let mut p = Problem::new(
                ErrorCode::VersionConflict,
                format!(
                    "stream {stream} expected version {expected}; read the stream and retry with its current version"
                ),
            );
            p.actual_version = Some(actual);
            p
        }
        StoreError::DuplicateId { id } => Problem::invalid(
            "/id",
            format!("event id {id} was already used for another event; choose a fresh id"),
        ),
        StoreError::RepeatedId { id } => Problem::invalid(
            "/id",
            format!("event id {id} appears more than once in the batch"),
        ),
        StoreError::InvalidName { field, rule } => {
            Problem::invalid(format!("/{field}"), format!("must be {rule}"))
        }
        StoreError::TooLarge {
            what,
            actual,
            limit,
        } => Problem::invalid(
            "",
            format!("{what} is {actual} bytes but the limit is {limit}"),
        ),
        StoreError::EmptyBatch => Problem::invalid("", "nothing to append"),
        StoreError::Lagged { .. } | StoreError::Closed | StoreError::Poisoned => Problem::new(
            ErrorCode::Unavailable,
            "the event store is not accepting writes; retry later",
        ),
        // Still `500 internal` (a 5xx never says that nothing happened), with
        // a detail that says the write may have been stored.
        e @ StoreError::OutcomeUnknown { .. } => {
            tracing::error!(error = %e, "event store write failed with an unknown outcome");
            Problem::new(
                ErrorCode::Internal,
                "storage failed while the write was being stored, and whether it was is \
                 unknown: read it back before sending it again",
            )
        }
        StoreError::Damaged { seq } => {
            tracing::error!(
                seq,
                "the event store is damaged and refuses writes; restore it from a backup"
            );
            Problem::new(
                ErrorCode::Unavailable,
                "the event store is damaged and refuses writes; an operator must restore it",
            )
        }
        other => internal("event store", &other),
    }
}

/// The problem for an elicitation error.
pub fn from_elicitation(e: lighthouse_elicitation::Error) -> Problem {
    use lighthouse_elicitation::Error as E;
    let violations = |v: Vec<lighthouse_elicitation::Violation>| {
        v.into_iter()
            .map(|v| FieldError {
                path: v.path,
                message: v.message,
            })
            .collect::<Vec<_>>()
    };
    match e {
        E::NotFound { what } => Problem::not_found(what),
        E::Forbidden { reason } => Problem::new(ErrorCode::Forbidden, reason),
        E::AlreadyResolved { id, status } => Problem::new(
            ErrorCode::AlreadyResolved,
            format!("elicitation {id} is already {}", status.as_str()),
        ),
        E::Expired { id } => {
            Problem::new(ErrorCode::Expired, format!("elicitation {id} has expired"))
        }
        E::SchemaMismatch { errors } => Problem::new(
            ErrorCode::SchemaMismatch,
            "the content does not match the requested schema; the elicitation is still pending",
        )
        .with_errors(violations(errors)),
        E::InvalidSchema { problems } => Problem::new(
            ErrorCode::InvalidSchema,
            "requested_schema uses keywords outside the allowed profile",
        )
        .with_errors(
            problems
                .into_iter()
                .map(|p| FieldError {
                    path: format!("/requested_schema{}", p.path),
                    message: format!("keyword {}: {}", p.keyword, p.message),
                })
                .collect(),
        ),
        E::InvalidRequest { errors } => {
            Problem::new(ErrorCode::InvalidRequest, "the request is invalid")
                .with_errors(violations(errors))
        }
        // The one per-agent limit among the service's capacities (its name
        // in `notify.rs`): the caller holds every slot itself.
        E::Capacity {
            what: "subscriptions of one agent",
            limit,
        } => Problem::agent_limit(format!(
            "this agent already has {limit} agent streams (GET /v1/stream) open, its limit; \
             close one, then retry"
        )),
        E::Capacity { what, limit } => Problem::new(
            ErrorCode::Unavailable,
            format!("too many {what} (limit {limit}); retry later"),
        ),
        E::Lagged { .. } | E::Closed => Problem::new(
            ErrorCode::Unavailable,
            "the elicitation service is shutting down",
        ),
        e @ E::Behind => Problem::new(ErrorCode::Unavailable, e.to_string()),
        E::Store(s) => from_store(s),
        other => internal("elicitation", &other),
    }
}

/// The problem for a flag error.
pub fn from_flags(e: lighthouse_flags::Error) -> Problem {
    use lighthouse_flags::Error as E;
    match e {
        E::Invalid { errors } => Problem::new(ErrorCode::InvalidRequest, "the flag is invalid")
            .with_errors(
                errors
                    .into_iter()
                    .map(|f| FieldError {
                        path: f.path,
                        message: f.message,
                    })
                    .collect(),
            ),
        E::NotFound { key } => Problem::not_found(&format!("flag {key}")),
        E::VersionConflict {
            key,
            expected,
            actual,
        } => {
            let detail = if expected == 0 {
                format!("flag {key} already exists; read it and retry with its version")
            } else {
                format!("flag {key} is not at version {expected}; read it and retry")
            };
            let mut p = Problem::new(ErrorCode::VersionConflict, detail);
            p.actual_version = Some(actual);
            p
        }
        e @ (E::PrerequisiteCycle { .. }
        | E::UnknownPrerequisite { .. }
        | E::TooManyPrerequisites { .. }) => Problem::invalid("/requires", e.to_string()),
        // Like every other limit refusal, `errors` names what is over it: the
        // flag being created, as a whole ("", the body).
        e @ E::TooManyFlags { .. } => Problem::invalid(
            "",
            format!("{e} (max_flags): a new flag cannot be created; flags are never deleted"),
        ),
        e @ E::Contention { .. } => Problem::new(ErrorCode::Unavailable, e.to_string()),
        E::Store(s) => from_store(s),
        other => internal("flags", &other),
    }
}

/// The problem for a security error (agent management, sessions).
pub fn from_security(e: lighthouse_security::Error) -> Problem {
    use lighthouse_security::Error as E;
    match e {
        E::InvalidAgentId(id) => Problem::invalid(
            "/id",
            format!("{id:?} is not an agent id: 1 to 64 of [a-z0-9._-], starting with a-z or 0-9"),
        ),
        E::AgentExists(id) => Problem::new(
            ErrorCode::VersionConflict,
            format!("agent {id} already exists (revoked ids are never reused)"),
        ),
        E::UnknownAgent(id) => Problem::not_found(&format!("agent {id}")),
        E::AgentRevoked(id) => Problem::not_found(&format!("agent {id}")),
        e @ E::ReservedAgentId(..) => Problem::invalid("/id", e.to_string()),
        e @ E::LastAdmin(_) => Problem::new(ErrorCode::VersionConflict, e.to_string()),
        E::InvalidTtl { ttl_s, max } => Problem::invalid(
            "/ttl_s",
            format!("must be between 1 and {max}, got {ttl_s}"),
        ),
        E::InvalidToken => Problem::new(ErrorCode::Unauthenticated, "not a valid token"),
        e @ (E::RevocationsFull { .. } | E::Contended) => {
            Problem::new(ErrorCode::Unavailable, e.to_string())
        }
        E::Store(s) => from_store(s),
        other => internal("security", &other),
    }
}
