//! Evaluation of a flag for an agent, in the order of PROTOCOL.md section 8.

use serde::{Deserialize, Serialize};

use crate::bucket;
use crate::error::Error;
use crate::names::{self, AGENT_RULE};
use crate::set::{Entry, FlagSet};
use crate::variant_name::VariantName;

/// Why an evaluation came out as it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// There is no flag with that key: off.
    NotFound,
    /// The kill switch is set: off.
    Killed,
    /// A flag in `requires` is off for the agent: off.
    Prerequisite,
    /// The agent is in `deny` (off) or in `allow` (on).
    Targeting,
    /// The flag is not `enabled` and the agent is not in `allow`: off.
    Disabled,
    /// The percentage split decided: on when `bucket < round(rollout_percent * 100)`.
    Split,
}

impl Reason {
    /// The wire name (`not_found`, `killed`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::NotFound => "not_found",
            Reason::Killed => "killed",
            Reason::Prerequisite => "prerequisite",
            Reason::Targeting => "targeting",
            Reason::Disabled => "disabled",
            Reason::Split => "split",
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The result of evaluating a flag for an agent:
/// `{enabled, variant, reason, bucket}` on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evaluation {
    /// Whether the flag is on for the agent.
    pub enabled: bool,
    /// The agent's variant when the flag is on and has variants, else `None`.
    pub variant: Option<VariantName>,
    /// Why.
    pub reason: Reason,
    /// The agent's rollout bucket for this key, `0..10000`; reported for every
    /// outcome (it depends only on key and agent), so an operator can see where an
    /// agent falls before the flag exists or while it is killed.
    pub bucket: u32,
}

impl FlagSet {
    /// Evaluates flag `key` for `agent`, in the order of PROTOCOL.md section 8:
    /// unknown → off (`not_found`); killed → off (`killed`); any flag in
    /// `requires` off for the agent → off (`prerequisite`); in `deny` → off
    /// (`targeting`); in `allow` → on (`targeting`); not enabled → off
    /// (`disabled`); bucket below the threshold → on, else off (`split`).
    ///
    /// Refuses an `agent` that is not a valid agent id ([`Error::Invalid`] on
    /// `/agent`). Does not allocate and writes no shared memory.
    #[inline]
    pub fn evaluate(&self, key: &str, agent: &str) -> Result<Evaluation, Error> {
        if !names::is_valid_agent(agent) {
            return Err(Error::invalid("/agent", format!("must be {AGENT_RULE}")));
        }
        Ok(self.evaluate_valid(key, agent))
    }

    /// Whether flag `key` is on for `agent`; `false` for an invalid agent id.
    #[inline]
    pub fn is_enabled(&self, key: &str, agent: &str) -> bool {
        self.evaluate(key, agent).is_ok_and(|e| e.enabled)
    }

    fn evaluate_valid(&self, key: &str, agent: &str) -> Evaluation {
        let Some(entry) = self.entry(key) else {
            return off(Reason::NotFound, bucket::bucket(key, agent));
        };
        let gate = &entry.gate;
        let bucket = gate.bucket(agent);
        if gate.killed {
            return off(Reason::Killed, bucket);
        }
        for &p in entry.closure.iter() {
            if !self.entry_at(p).locally_on(agent) {
                return off(Reason::Prerequisite, bucket);
            }
        }
        if gate.targeted {
            if entry.rule.denies(agent) {
                return off(Reason::Targeting, bucket);
            }
            if entry.rule.allows(agent) {
                return on(entry, agent, Reason::Targeting, bucket);
            }
        }
        if !gate.enabled {
            return off(Reason::Disabled, bucket);
        }
        if bucket < gate.threshold {
            on(entry, agent, Reason::Split, bucket)
        } else {
            off(Reason::Split, bucket)
        }
    }
}

impl Entry {
    /// The flag's own conditions, without its prerequisites: what a dependent
    /// flag checks for each of its (transitive) prerequisites.
    #[inline]
    fn locally_on(&self, agent: &str) -> bool {
        let gate = &self.gate;
        if gate.killed {
            return false;
        }
        if gate.targeted {
            if self.rule.denies(agent) {
                return false;
            }
            if self.rule.allows(agent) {
                return true;
            }
        }
        gate.enabled && gate.bucket(agent) < gate.threshold
    }

    fn variant(&self, agent: &str) -> Option<VariantName> {
        if !self.gate.has_variants {
            return None;
        }
        let slot = self.gate.variant_slot(agent);
        let i = self.rule.cumulative.iter().position(|&c| slot < c)?;
        self.rule.variant_names.get(i).cloned()
    }
}

fn off(reason: Reason, bucket: u32) -> Evaluation {
    Evaluation {
        enabled: false,
        variant: None,
        reason,
        bucket,
    }
}

fn on(entry: &Entry, agent: &str, reason: Reason, bucket: u32) -> Evaluation {
    Evaluation {
        enabled: true,
        variant: entry.variant(agent),
        reason,
        bucket,
    }
}
