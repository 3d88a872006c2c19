//! The crate's one error type: things that went wrong while managing keys,
//! credentials, the registry or persisted state. An expected "no" to a request is
//! not an error but a [`Refusal`](crate::Refusal).

use std::path::PathBuf;

/// Everything that can go wrong in `lighthouse-security` outside of refusing a request.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A key or credential file can be read by its group or by others. Fix with
    /// `chmod 600 <path>` (and rotate the key if others may have read it).
    #[error(
        "{path} has mode {mode:o}: it must not be readable by group or others; run `chmod 600 {path}`",
        path = .path.display()
    )]
    InsecureFileMode {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A key file already exists where a new one was to be created.
    #[error("{} already exists; refusing to overwrite a key", .path.display())]
    AlreadyExists {
        /// The file.
        path: PathBuf,
    },
    /// Key material is not in the expected form.
    #[error("invalid {what}: {expected}")]
    InvalidKey {
        /// What was being read (`master key`, `agent secret`, ...).
        what: &'static str,
        /// What it must look like.
        expected: &'static str,
    },
    /// A master key read from a file or an environment variable is not in the
    /// expected form.
    #[error("invalid master key in {from}: {reason}")]
    InvalidMasterKey {
        /// Where it was read: the file's path, or `the environment variable NAME`.
        from: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A credential file is not valid JSON of the PROTOCOL.md 2.1 shape.
    #[error("invalid credential file {}: {reason}", .path.display())]
    InvalidCredential {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The operating system's random source failed.
    #[error("the operating system's random source failed: {0}")]
    Random(getrandom::Error),
    /// A file operation failed.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The event store failed.
    #[error("event store: {0}")]
    Store(#[from] lighthouse_event_store::Error),
    /// An agent id does not match `^[a-z0-9][a-z0-9._-]{0,63}$`.
    #[error("invalid agent id {0:?}: must be 1 to 64 of [a-z0-9._-], starting with a-z or 0-9")]
    InvalidAgentId(String),
    /// The agent is registered already (revoked ids are never reused, so that no
    /// old credential or token can come back to life).
    #[error("agent {0} already exists (revoked ids are never reused)")]
    AgentExists(String),
    /// No such agent.
    #[error("no agent {0}")]
    UnknownAgent(String),
    /// The agent is revoked.
    #[error("agent {0} is revoked")]
    AgentRevoked(String),
    /// The id is reserved ([`LOCAL_ADMIN_AGENT`](crate::LOCAL_ADMIN_AGENT),
    /// [`ME_AGENT`](crate::ME_AGENT)); the second field says what for.
    #[error("agent id {0} is reserved: {1}; choose another id")]
    ReservedAgentId(String, &'static str),
    /// Revoking the agent would leave no active admin: nobody could manage
    /// agents over the API any more.
    #[error("agent {0} is the last active admin; register another admin before revoking it")]
    LastAdmin(String),
    /// A stored security event could not be understood: the log was written by
    /// something else or is damaged.
    #[error("security event at seq {seq} is invalid: {reason}")]
    InvalidEvent {
        /// The event's position.
        seq: u64,
        /// What is wrong.
        reason: String,
    },
    /// Another writer changed the `$agents` stream concurrently too many times.
    #[error("the agent registry changed concurrently; retry")]
    Contended,
    /// A token lifetime outside `1..=max`.
    #[error("token ttl_s must be between 1 and {max}, got {ttl_s}")]
    InvalidTtl {
        /// The lifetime asked for.
        ttl_s: u64,
        /// The largest allowed.
        max: u64,
    },
    /// The token is not one this bridge issued (or is expired).
    #[error("not a valid token")]
    InvalidToken,
    /// The set of revoked tokens is at its configured capacity.
    #[error("too many revoked tokens ({capacity}); raise max_revoked_tokens")]
    RevocationsFull {
        /// The configured capacity.
        capacity: usize,
    },
    /// A configuration value is out of range.
    #[error("invalid configuration: {0}")]
    InvalidConfig(&'static str),
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
