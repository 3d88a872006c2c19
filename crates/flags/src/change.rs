//! The events of stream `$flags` and the history entries read back from them.
//!
//! Every change of a flag is one event on `$flags` whose type is a
//! [`ChangeKind`] (`flag.created`, `flag.updated`, `flag.killed`,
//! `flag.unkilled`) and whose `data` is
//! `{key, version, actor, reason, before, after, previous_seq}`: the whole flag
//! before (`null` on creation) and after, so that replaying `after` of each event
//! in order rebuilds the state, and `previous_seq` (the `seq` of the flag's
//! previous event, `null` on creation) links a flag's events into a chain that
//! [`FlagStore::history`](crate::FlagStore::history) follows without scanning the
//! stream. The event's `agent` is the actor.

use lighthouse_event_store::{Event, Timestamp};
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::model::Flag;

/// The stream every flag change is appended to.
pub const STREAM: &str = "$flags";

/// What kind of change an event records; its event type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ChangeKind {
    /// A `PUT` of a flag that did not exist.
    #[serde(rename = "flag.created")]
    Created,
    /// A `PUT` that changed a flag's settings.
    #[serde(rename = "flag.updated")]
    Updated,
    /// The kill switch was set.
    #[serde(rename = "flag.killed")]
    Killed,
    /// The kill switch was cleared.
    #[serde(rename = "flag.unkilled")]
    Unkilled,
}

impl ChangeKind {
    /// The event type (`flag.created`, ...).
    pub fn event_type(self) -> &'static str {
        match self {
            ChangeKind::Created => "flag.created",
            ChangeKind::Updated => "flag.updated",
            ChangeKind::Killed => "flag.killed",
            ChangeKind::Unkilled => "flag.unkilled",
        }
    }

    /// The kind of an event type, `None` for a type this version does not know.
    pub fn from_event_type(t: &str) -> Option<ChangeKind> {
        Some(match t {
            "flag.created" => ChangeKind::Created,
            "flag.updated" => ChangeKind::Updated,
            "flag.killed" => ChangeKind::Killed,
            "flag.unkilled" => ChangeKind::Unkilled,
            _ => return None,
        })
    }
}

/// The `data` of a `flag.*` event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ChangePayload {
    pub(crate) key: String,
    pub(crate) version: u64,
    pub(crate) actor: String,
    pub(crate) reason: String,
    pub(crate) before: Option<Flag>,
    pub(crate) after: Flag,
    pub(crate) previous_seq: Option<u64>,
}

/// One entry of a flag's history: `GET /v1/flags/{key}/history`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlagChange {
    /// The flag's version after this change.
    pub version: u64,
    /// When the event was appended (event store clock).
    pub time: Timestamp,
    /// The agent that made the change.
    pub actor: String,
    /// Why, as the actor said.
    pub reason: String,
    /// The flag before, `None` when this change created it.
    pub before: Option<Flag>,
    /// The flag after.
    pub after: Flag,
    /// What kind of change (the event type).
    #[serde(rename = "type")]
    pub kind: ChangeKind,
    /// Global position of the event.
    pub seq: u64,
    /// The correlation id of the event (the request id of the write).
    pub correlation_id: Option<String>,
}

/// A checked event of `$flags`.
#[derive(Debug)]
pub(crate) struct Decoded {
    pub(crate) kind: ChangeKind,
    pub(crate) payload: ChangePayload,
    pub(crate) seq: u64,
    time: Timestamp,
    correlation_id: Option<String>,
}

impl Decoded {
    pub(crate) fn into_change(self) -> FlagChange {
        FlagChange {
            version: self.payload.version,
            time: self.time,
            actor: self.payload.actor,
            reason: self.payload.reason,
            before: self.payload.before,
            after: self.payload.after,
            kind: self.kind,
            seq: self.seq,
            correlation_id: self.correlation_id,
        }
    }
}

/// Decodes and checks one event of `$flags`: a known type, a payload that
/// decodes, and a payload consistent with itself and with the event type.
pub(crate) fn decode(event: Event) -> Result<Decoded, Error> {
    let seq = event.seq;
    let corrupt = |reason: String| Error::CorruptLog { seq, reason };
    let kind = ChangeKind::from_event_type(&event.event_type).ok_or_else(|| {
        corrupt(format!(
            "unknown event type {:?} on {STREAM}",
            event.event_type
        ))
    })?;
    let payload: ChangePayload = serde_json::from_value(event.data)
        .map_err(|e| corrupt(format!("undecodable {} payload: {e}", kind.event_type())))?;
    if payload.after.key != payload.key || payload.after.version != payload.version {
        return Err(corrupt(format!(
            "payload of flag {:?} version {} carries flag {:?} version {}",
            payload.key, payload.version, payload.after.key, payload.after.version
        )));
    }
    if (kind == ChangeKind::Created) != payload.before.is_none() {
        return Err(corrupt(format!(
            "{} event {} a `before` flag",
            kind.event_type(),
            if payload.before.is_some() {
                "with"
            } else {
                "without"
            }
        )));
    }
    Ok(Decoded {
        kind,
        payload,
        seq,
        time: event.time,
        correlation_id: event.correlation_id,
    })
}
