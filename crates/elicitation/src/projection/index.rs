//! Per-agent indexes of the projection: inbox, outbox, pending sets and the feed
//! of notifications, each keyed by store sequence.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// What the projection knows about one agent's elicitations (only those held in
/// memory: pending ones and the retained terminal ones).
#[derive(Debug, Default)]
pub(crate) struct AgentIndex {
    /// Elicitations addressed to the agent, by the seq of their `requested` event.
    pub inbox: BTreeMap<u64, Arc<str>>,
    /// Elicitations the agent created, by the seq of their `requested` event.
    pub outbox: BTreeMap<u64, Arc<str>>,
    /// The pending subset of `inbox` (seqs of `requested` events).
    pub inbox_pending: BTreeSet<u64>,
    /// The pending subset of `outbox`.
    pub outbox_pending: BTreeSet<u64>,
    /// Seqs of the events that notify the agent: `requested` addressed to it, and
    /// terminal events of elicitations it created or is addressed by.
    pub feed: BTreeMap<u64, Arc<str>>,
}

impl AgentIndex {
    pub(crate) fn is_empty(&self) -> bool {
        self.inbox.is_empty() && self.outbox.is_empty() && self.feed.is_empty()
    }
}

/// Which listing of an agent's elicitations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mailbox {
    /// Elicitations addressed to the caller.
    Inbox,
    /// Elicitations the caller created.
    Outbox,
}

impl Mailbox {
    /// Parses `inbox` or `outbox`.
    pub fn parse(s: &str) -> Option<Mailbox> {
        match s {
            "inbox" => Some(Mailbox::Inbox),
            "outbox" => Some(Mailbox::Outbox),
            _ => None,
        }
    }
}
