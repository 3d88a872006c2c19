//! `lighthouse-flags`: feature flags that gate behaviour per agent.
//!
//! What it is for: the flag model of PROTOCOL.md section 8 ([`Flag`],
//! [`FlagSpec`]), evaluating a flag for an agent in the protocol's order with
//! MurmurHash3 bucketing ([`FlagSet::evaluate`], [`bucket`]), and keeping the
//! flags on stream `$flags` of the event log ([`FlagStore`]): every change is an
//! event, the state is rebuilt from the log on open, and reads never take a lock.
//! What it is not for: HTTP, authentication or roles (the caller passes the
//! authenticated actor), or metrics about evaluations.
//!
//! # Invariants
//! - Evaluation order: unknown → off (`not_found`); killed → off (`killed`); a
//!   prerequisite off for the agent → off (`prerequisite`); in `deny` → off, in
//!   `allow` → on (`targeting`); not enabled → off (`disabled`); otherwise on iff
//!   `murmur3_x86_32("<key>:<agent>", 0) % 10000 < round(rollout_percent * 100)`
//!   (`split`). Raising the percentage only ever adds agents.
//! - A flag's variant is chosen by `murmur3_x86_32("<key>:<agent>", 86028157) %
//!   1000` against the cumulative weights, which sum to 1000.
//! - The prerequisite graph has no cycle and no unknown key: writes that would
//!   break this are refused, so evaluation always terminates.
//! - Every accepted change is exactly one `flag.*` event on `$flags` carrying
//!   actor, reason, the flag before and after and its new version; a flag's
//!   version is the number of its changes. Replaying `$flags` yields the same
//!   state the writer had.
//! - A change is visible to every evaluation that starts after the write
//!   returned. Evaluations take no lock, do not allocate and, while the flags
//!   do not change, write no memory shared between threads.
//! - Every list, the number of flags and their total size as JSON are bounded
//!   by [`Limits`]; replay reads the log in pages bounded in bytes.
//!
//! # Example
//! ```
//! use lighthouse_event_store::{EventStore, StoreOptions};
//! use lighthouse_flags::{Attribution, FlagSpec, FlagStore, FlagStoreOptions, Reason};
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let events = EventStore::open_temporary(StoreOptions::new(b"a secret key of 32 bytes or so.."))?;
//! let flags = FlagStore::open(events, FlagStoreOptions::new())?;
//!
//! let mut spec = FlagSpec::new(true, 25.0);
//! spec.allow = vec!["alice".into()];
//! let by = Attribution::new("ops-1", "first stage of the rollout");
//! let written = flags.put("elicitation_enabled", &spec, Some(0), &by).await?;
//! assert_eq!(written.flag.version, 1);
//!
//! let alice = flags.evaluate("elicitation_enabled", "alice")?;
//! assert!(alice.enabled && alice.reason == Reason::Targeting);
//! // bob's bucket is 3550 (PROTOCOL.md's vectors): not below 2500.
//! let bob = flags.evaluate("elicitation_enabled", "bob")?;
//! assert_eq!((bob.enabled, bob.reason, bob.bucket), (false, Reason::Split, 3550));
//!
//! flags.kill("elicitation_enabled", None, &Attribution::new("ops-1", "incident")).await?;
//! assert_eq!(flags.evaluate("elicitation_enabled", "alice")?.reason, Reason::Killed);
//! assert_eq!(flags.history("elicitation_enabled", None, 100)?.len(), 2);
//! # Ok::<(), lighthouse_flags::Error>(())
//! # }).unwrap();
//! ```
#![warn(missing_docs)]

pub mod bucket;
mod change;
mod error;
mod eval;
mod limits;
mod model;
pub mod names;
mod published;
mod replay;
mod set;
mod store;
mod variant_name;
mod write;

pub use change::{ChangeKind, FlagChange, STREAM};
pub use error::{Error, FieldError, Result};
pub use eval::{Evaluation, Reason};
pub use limits::Limits;
pub use model::{Flag, FlagSpec, RolloutPercent, Variant};
pub use set::FlagSet;
pub use store::{FlagStore, FlagStoreOptions};
pub use variant_name::VariantName;
pub use write::{Attribution, WriteOutcome};
