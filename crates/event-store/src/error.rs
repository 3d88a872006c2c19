//! The store's one error type.

use std::fmt;

/// Which field of an event broke a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// `stream`
    Stream,
    /// `type`
    Type,
    /// `id`
    Id,
    /// `agent`
    Agent,
    /// `correlation_id`
    CorrelationId,
    /// `causation_id`
    CausationId,
    /// `data`
    Data,
    /// `metadata`
    Metadata,
    /// a snapshot name
    SnapshotName,
}

impl Field {
    /// The field's name as it appears in event JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Field::Stream => "stream",
            Field::Type => "type",
            Field::Id => "id",
            Field::Agent => "agent",
            Field::CorrelationId => "correlation_id",
            Field::CausationId => "causation_id",
            Field::Data => "data",
            Field::Metadata => "metadata",
            Field::SnapshotName => "name",
        }
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything that can go wrong in the event store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A stream's version did not match the append's expectation. Nothing was written.
    #[error("version conflict on stream {stream}: expected {expected}, actual {}", display_version(*.actual))]
    VersionConflict {
        /// The stream whose condition failed.
        stream: String,
        /// What the append expected, as text (`no_stream`, `any` or a number).
        expected: String,
        /// The stream's last version, `None` if it does not exist.
        actual: Option<u64>,
    },
    /// Some but not all ids of a batch were appended before: a retry must resend
    /// the same batch, or new ids.
    #[error(
        "event id {id} was already appended in another batch; retry with the original batch or fresh ids"
    )]
    DuplicateId {
        /// The id that exists.
        id: String,
    },
    /// Two events of one batch carry the same id.
    #[error("event id {id} appears more than once in the batch")]
    RepeatedId {
        /// The repeated id.
        id: String,
    },
    /// A name does not follow its character set.
    #[error("invalid {field}: must be {rule}")]
    InvalidName {
        /// The field.
        field: Field,
        /// The rule it breaks.
        rule: &'static str,
    },
    /// An event, or a batch, is larger than the configured limit.
    #[error("{what} is {actual} but the limit is {limit}")]
    TooLarge {
        /// What was too large (`event`, `batch events`, `batch bytes`).
        what: &'static str,
        /// The size or count seen.
        actual: usize,
        /// The limit.
        limit: usize,
    },
    /// An empty batch was appended.
    #[error("a batch must hold at least one event")]
    EmptyBatch,
    /// A live subscriber fell behind the bounded buffer. Resume with
    /// `subscribe(last_seq, ..)`: nothing after `last_seq` has been delivered.
    #[error("subscriber lagged behind; resume after seq {last_seq}")]
    Lagged {
        /// Every matching event up to this position was delivered.
        last_seq: u64,
    },
    /// The store was opened with a different integrity key than it was created with.
    #[error("the integrity key does not match the one this store was created with")]
    WrongKey,
    /// A stored record could not be decoded: the store is damaged. Run `verify`.
    #[error("stored record at seq {seq} is damaged: {reason}")]
    Corrupt {
        /// The record's position.
        seq: u64,
        /// What is wrong.
        reason: String,
    },
    /// The directory holds a store of another on-disk format.
    #[error(
        "the store was written in format {found:?}, this build reads {expected:?}; export it \
         with a backup from the build that wrote it and restore into a new store"
    )]
    UnsupportedFormat {
        /// The format found.
        found: String,
        /// The format this build reads and writes.
        expected: String,
    },
    /// A write or flush failed earlier, so the store refuses further writes until
    /// it is reopened (the on-disk state is whatever was durably flushed).
    #[error("the store refused writes after an earlier storage failure; reopen it")]
    Poisoned,
    /// Writing a batch to storage failed and nothing of it is stored: it is
    /// not in the log, and a reopen will not find it (what had reached the
    /// log file was cut off durably, or is cut by the next open). The store
    /// refuses writes until reopened; the batch may be sent again then.
    ///
    /// Also the answer to a request that was refused on the strength of a
    /// batch that then failed (a version conflict or duplicate id found
    /// among that batch's events): it was not written either, and its
    /// conditions are checked again when it is sent again.
    #[error("writing to storage failed and nothing of the batch was stored: {reason}")]
    WriteFailed {
        /// The storage engine's message.
        reason: String,
    },
    /// Writing a batch to storage failed after it reached the log file, so
    /// whether it is stored is not known: a reopen may find it, whole, or not
    /// at all (never part of it). The store refuses writes until reopened.
    /// Not the same as [`WriteFailed`](Self::WriteFailed): do not report it as
    /// "nothing happened". After the reopen, read the log (the events' ids,
    /// or their stream) before sending the batch again; a batch whose events
    /// all carry ids may simply be sent again (it is answered `deduplicated`
    /// if it was stored).
    #[error(
        "writing to storage failed and whether the batch was stored is unknown: after the \
         store is reopened, read before sending it again (or resend it with the same event \
         ids): {reason}"
    )]
    OutcomeUnknown {
        /// The storage engine's message.
        reason: String,
    },
    /// The store was opened with a damaged or missing record, so the version
    /// of any stream after it cannot be trusted (the damaged record's stream is
    /// unknown): it reads, but refuses every write until it is restored from a
    /// backup. `verify` names the first bad position.
    #[error(
        "the store was opened with a damaged record at seq {seq}; it refuses writes until          restored from a backup (run verify)"
    )]
    Damaged {
        /// The first damaged position found on open.
        seq: u64,
    },
    /// The store is closed.
    #[error("the store is closed")]
    Closed,
    /// The target of a restore is not empty.
    #[error(
        "restore target {} is not empty: a restore never writes over existing data; \
         move that directory aside, or restore into a new one",
        .dir.display()
    )]
    NotEmpty {
        /// The directory asked to restore into.
        dir: std::path::PathBuf,
    },
    /// The backup file could not be written: its target is a directory, or
    /// creating, writing, syncing or renaming it failed. Nothing was left at
    /// `path` (a previous file there is unchanged), except when only the sync
    /// of its directory after the rename failed: then the new, complete file
    /// is at `path`, and a power loss could still undo the rename.
    #[error("cannot write the backup {}: {source}", .path.display())]
    BackupFile {
        /// The backup file asked for.
        path: std::path::PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A backup file is not valid.
    #[error("invalid backup file: {0}")]
    InvalidBackup(String),
    /// The storage engine failed.
    #[error("storage: {0}")]
    Storage(#[from] sled::Error),
    /// A file operation failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

fn display_version(v: Option<u64>) -> String {
    v.map_or_else(|| "no stream".to_owned(), |v| v.to_string())
}

/// Result type of the store.
pub type Result<T, E = Error> = std::result::Result<T, E>;
