//! The crate's one error type.

/// Errors of `lighthouse-metrics`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration value is out of its allowed range.
    #[error("invalid metrics configuration: {field} {reason}")]
    InvalidConfig {
        /// The offending field.
        field: &'static str,
        /// What is wrong with it, and the allowed range.
        reason: String,
    },
    /// A window longer than the configured maximum, or zero, was asked for.
    #[error("window of {requested_s} s is out of range: ask for 1 to {max_s} s")]
    WindowOutOfRange {
        /// The window asked for, in seconds.
        requested_s: u64,
        /// The longest window kept, in seconds.
        max_s: u64,
    },
    /// Writing the text exposition failed.
    #[error("encoding the Prometheus exposition failed")]
    Encode(#[from] std::fmt::Error),
    /// Reading `/proc/self` failed or returned something unexpected.
    #[error("reading process metrics from {path}: {reason}")]
    Process {
        /// The file read.
        path: &'static str,
        /// What went wrong.
        reason: String,
    },
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
