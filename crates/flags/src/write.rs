//! What a write asks for ([`Op`]), who asks ([`Attribution`]), what it decides
//! against the current flag ([`decide`]) and what it returns ([`WriteOutcome`]).

use std::sync::Arc;

use lighthouse_event_store::{Field, validate_token};

use crate::change::ChangeKind;
use crate::error::{Error, FieldError, Result};
use crate::limits::Limits;
use crate::model::{Flag, FlagSpec, RolloutPercent};
use crate::names::{self, AGENT_RULE};

/// Who makes a change and why. The actor is the authenticated agent, never a
/// name taken from a request body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribution {
    /// The agent making the change (an agent id).
    pub actor: String,
    /// Why; required, at most [`Limits::max_reason_bytes`].
    pub reason: String,
    /// The request id, stored as the event's `correlation_id`.
    pub correlation_id: Option<String>,
}

impl Attribution {
    /// A change by `actor` for `reason`.
    pub fn new(actor: impl Into<String>, reason: impl Into<String>) -> Self {
        Attribution {
            actor: actor.into(),
            reason: reason.into(),
            correlation_id: None,
        }
    }

    /// Sets the correlation id (the request id).
    pub fn with_correlation_id(mut self, id: impl Into<String>) -> Self {
        self.correlation_id = Some(id.into());
        self
    }

    pub(crate) fn check(&self, limits: &Limits) -> Result<()> {
        let mut errors = Vec::new();
        if !names::is_valid_agent(&self.actor) {
            errors.push(FieldError::new("/actor", format!("must be {AGENT_RULE}")));
        }
        if self.reason.trim().is_empty() {
            errors.push(FieldError::new(
                "/reason",
                "is required: say why the flag changes",
            ));
        } else if self.reason.len() > limits.max_reason_bytes {
            errors.push(FieldError::new(
                "/reason",
                format!(
                    "is {} bytes, the limit is {}",
                    self.reason.len(),
                    limits.max_reason_bytes
                ),
            ));
        }
        if let Some(c) = &self.correlation_id
            && validate_token(c, Field::CorrelationId).is_err()
        {
            errors.push(FieldError::new(
                "/correlation_id",
                "must be 1 to 128 of [A-Za-z0-9_.:-]",
            ));
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(Error::Invalid { errors })
        }
    }
}

/// The result of a write.
#[derive(Debug, Clone, PartialEq)]
pub struct WriteOutcome {
    /// The flag after the write.
    pub flag: Arc<Flag>,
    /// `false` when the write asked for the state the flag already had (a `PUT`
    /// of identical settings, a kill of a killed flag, an unkill of a live one):
    /// nothing was appended and the version did not move.
    pub changed: bool,
    /// Position of the appended event, when one was appended.
    pub seq: Option<u64>,
}

/// A requested change of one flag.
pub(crate) enum Op {
    /// Create or replace the settings; the percentage is already checked.
    Put {
        spec: FlagSpec,
        percent: RolloutPercent,
        expected_version: Option<u64>,
    },
    /// Set the kill switch, if the flag is at `expected_version` when given.
    Kill { expected_version: Option<u64> },
    /// Clear the kill switch, if the flag is at `expected_version` when given.
    Unkill { expected_version: Option<u64> },
}

/// What a write does to the flag.
pub(crate) enum Decision {
    /// The flag already is as asked: nothing to append.
    Unchanged(Arc<Flag>),
    /// Append a change of this kind producing this flag. `version`,
    /// `updated_at` and `updated_by` are still to be stamped.
    Change(ChangeKind, Flag),
}

/// Decides `op` on flag `key` whose current state is `before`, in a set that
/// holds `flags` flags.
pub(crate) fn decide(
    op: &Op,
    key: &str,
    before: Option<&Arc<Flag>>,
    flags: usize,
    limits: &Limits,
) -> Result<Decision> {
    match (op, before) {
        (
            Op::Put {
                spec,
                percent,
                expected_version,
            },
            _,
        ) => {
            let actual = before.map(|b| b.version);
            if let Some(expected) = *expected_version
                && actual.unwrap_or(0) != expected
            {
                return Err(Error::VersionConflict {
                    key: key.to_owned(),
                    expected,
                    actual,
                });
            }
            let after = Flag {
                key: key.to_owned(),
                description: spec.description.clone(),
                enabled: spec.enabled,
                rollout_percent: *percent,
                allow: spec.allow.clone(),
                deny: spec.deny.clone(),
                variants: spec.variants.clone(),
                requires: spec.requires.clone(),
                // The kill switch is not a setting: only kill and unkill move it.
                killed: before.is_some_and(|b| b.killed),
                version: 0,
                updated_at: lighthouse_event_store::Timestamp::EPOCH,
                updated_by: String::new(),
            };
            match before {
                Some(b) if b.same_settings(&after) => Ok(Decision::Unchanged(b.clone())),
                Some(_) => Ok(Decision::Change(ChangeKind::Updated, after)),
                None if flags >= limits.max_flags => Err(Error::TooManyFlags {
                    limit: limits.max_flags,
                }),
                None => Ok(Decision::Change(ChangeKind::Created, after)),
            }
        }
        // An unknown flag is not found whatever version was expected: there
        // is nothing to kill.
        (Op::Kill { .. } | Op::Unkill { .. }, None) => Err(Error::NotFound {
            key: key.to_owned(),
        }),
        (
            Op::Kill {
                expected_version: Some(expected),
            }
            | Op::Unkill {
                expected_version: Some(expected),
            },
            Some(b),
        ) if b.version != *expected => Err(Error::VersionConflict {
            key: key.to_owned(),
            expected: *expected,
            actual: Some(b.version),
        }),
        (Op::Kill { .. }, Some(b)) if b.killed => Ok(Decision::Unchanged(b.clone())),
        (Op::Unkill { .. }, Some(b)) if !b.killed => Ok(Decision::Unchanged(b.clone())),
        (Op::Kill { .. }, Some(b)) => Ok(Decision::Change(
            ChangeKind::Killed,
            Flag {
                killed: true,
                ..Flag::clone(b)
            },
        )),
        (Op::Unkill { .. }, Some(b)) => Ok(Decision::Change(
            ChangeKind::Unkilled,
            Flag {
                killed: false,
                ..Flag::clone(b)
            },
        )),
    }
}
