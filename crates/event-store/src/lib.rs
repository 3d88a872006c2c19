//! `lighthouse-event-store`: the durable, tamper-evident event log every part of
//! Lighthouse writes to.
//!
//! What it is for: appending events (single or atomic batches, with optimistic
//! concurrency per stream and idempotent ids), reading them back through indexes,
//! subscribing from a position with a seamless switch from disk to live, saving
//! projection snapshots, verifying the integrity chain, and backing up and
//! restoring. What it is not for: knowing what events mean (that is the job of the
//! crates above it) or serving HTTP.
//!
//! # Invariants
//! - `seq` starts at 1 and has no gaps; `version` starts at 0 per stream and has no
//!   gaps; `time` never decreases along `seq`.
//! - An append is acknowledged only after its batch is committed atomically and, in
//!   [`Durability::Durable`] mode (the default), on disk: synced to the store's
//!   write-ahead log, which is replayed into sled on open. Concurrent appenders
//!   share one sync (group commit).
//! - A failed append is [`Error::WriteFailed`] only when none of it is stored,
//!   now or after a reopen (bytes a failed write or sync left in the log file
//!   are cut off durably first); otherwise [`Error::OutcomeUnknown`].
//! - Each record carries an HMAC-SHA256 chained with the previous record's; the
//!   chain head is stored with every batch. [`EventStore::verify`] finds the first
//!   changed, removed, reordered or truncated record.
//! - A subscription from position `P` delivers exactly the matching events after
//!   `P`, in order: from disk first, then live, with no gap or duplicate.
//!
//! # Example
//! ```
//! use lighthouse_event_store::{EventStore, StoreOptions, NewEvent, ExpectedVersion, Query, Filter};
//! use serde_json::json;
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let store = EventStore::open_temporary(StoreOptions::new(b"a secret key of 32 bytes or so.."))?;
//! let ev = NewEvent::new("orders-1", "order.placed", json!({"total": 12}))
//!     .with_agent("alice")
//!     .expect(ExpectedVersion::NoStream);
//! let pos = store.append_one(ev).await?;
//! assert_eq!((pos.seq, pos.version), (1, 0));
//! let page = store.read(&Query::new(Filter::stream("orders-1")))?;
//! assert_eq!(page.events[0].data, json!({"total": 12}));
//! assert!(store.verify()?.ok());
//! # Ok::<(), lighthouse_event_store::Error>(())
//! # }).unwrap();
//! ```
#![warn(missing_docs)]

pub mod backend;
mod backup;
pub mod clock;
pub mod codec;
mod error;
#[doc(hidden)]
pub mod index;
mod model;
mod options;
mod private;
mod query;
mod read;
mod request;
mod scan;
mod segments;
mod snapshot;
mod store;
mod subscription;
mod writer;

pub use backup::{BackupReport, RestoreReport};
pub use clock::{Clock, ManualClock, SharedClock, SystemClock, Timestamp};
pub use error::{Error, Field, Result};
pub use model::{
    AppendOutcome, Appended, Event, ExpectedVersion, Limits, NewEvent, json_size, validate_agent,
    validate_event_type, validate_stream, validate_token,
};
pub use options::{
    AppendObserver, DEFAULT_CACHE_BYTES, DEFAULT_MAX_SNAPSHOT_BYTES, Durability, StoreOptions,
};
pub use private::create_private_dir;
pub use query::{Filter, Order, Page, Query};
pub use store::{EventStore, Snapshot, StoreStats, VerifyReport};
pub use subscription::Subscription;
