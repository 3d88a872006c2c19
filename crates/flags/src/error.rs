//! The crate's one error type, and [`FieldError`], the typed description of one
//! invalid field.

use serde::{Deserialize, Serialize};

/// One invalid field of a write, named by JSON pointer (`/rollout_percent`,
/// `/allow/3`), in the shape of the `errors` of PROTOCOL.md section 3.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldError {
    /// JSON pointer to the field, relative to the flag (`/variants/1/weight`).
    pub path: String,
    /// What is wrong, in words an operator can act on.
    pub message: String,
}

impl FieldError {
    pub(crate) fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Everything that can go wrong with flags.
///
/// How the API layer maps them: [`Error::Invalid`], [`Error::PrerequisiteCycle`],
/// [`Error::UnknownPrerequisite`], [`Error::TooManyPrerequisites`] and
/// [`Error::TooManyFlags`] are `400 invalid_request`; [`Error::NotFound`] is `404`;
/// [`Error::VersionConflict`] is `409 version_conflict`; the rest are server errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// One or more fields break a rule; nothing was written.
    #[error("invalid flag: {}", join(errors))]
    Invalid {
        /// Every broken rule, by field.
        errors: Vec<FieldError>,
    },
    /// The flag does not exist.
    #[error("flag {key} does not exist")]
    NotFound {
        /// The key asked for.
        key: String,
    },
    /// The write named an `expected_version` that is not the flag's current
    /// version. Read the flag again, reapply the change, and retry.
    #[error("version conflict on flag {key}: expected {expected}, actual {}", display_version(*.actual))]
    VersionConflict {
        /// The flag.
        key: String,
        /// The version the writer expected (`0`: the flag must not exist).
        expected: u64,
        /// The flag's current version, `None` when it does not exist.
        actual: Option<u64>,
    },
    /// The write would make flags require each other in a circle.
    #[error("prerequisite cycle: {}", path.join(" -> "))]
    PrerequisiteCycle {
        /// The circle, starting and ending with the same key.
        path: Vec<String>,
    },
    /// A flag in `requires` does not exist; create it first.
    #[error("flag {key} requires {missing}, which does not exist; create it first")]
    UnknownPrerequisite {
        /// The flag being written.
        key: String,
        /// The required key that does not exist.
        missing: String,
    },
    /// A flag would depend on more flags, directly or through other flags, than
    /// [`Limits::max_prerequisites`](crate::Limits::max_prerequisites) allows.
    #[error(
        "flag {key} would depend on {count} flags (directly or indirectly); the limit is {limit}"
    )]
    TooManyPrerequisites {
        /// The flag whose prerequisites grew too many.
        key: String,
        /// How many it would depend on.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// Creating the flag would exceed [`Limits::max_flags`](crate::Limits::max_flags).
    #[error("there are already {limit} flags, the configured limit")]
    TooManyFlags {
        /// The limit.
        limit: usize,
    },
    /// The `$flags` stream holds an event this version cannot apply: the log was
    /// written by something else or is damaged. Nothing was changed.
    #[error("the flag log is damaged at seq {seq}: {reason}")]
    CorruptLog {
        /// Position of the offending event.
        seq: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// Another writer kept appending to `$flags` between this writer's catch-up and
    /// its append. Retry the write.
    #[error("the flag log changed under {attempts} consecutive attempts; retry")]
    Contention {
        /// How many attempts were made.
        attempts: u32,
    },
    /// Something that cannot happen did (a bug, not an input error).
    #[error("internal error: {0}")]
    Internal(String),
    /// The event store failed.
    #[error("event store: {0}")]
    Store(#[from] lighthouse_event_store::Error),
}

impl Error {
    /// An [`Error::Invalid`] with a single field error.
    pub(crate) fn invalid(path: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Invalid {
            errors: vec![FieldError::new(path, message)],
        }
    }
}

fn join(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

fn display_version(v: Option<u64>) -> String {
    v.map_or_else(
        || "none (flag does not exist)".to_owned(),
        |v| v.to_string(),
    )
}

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
