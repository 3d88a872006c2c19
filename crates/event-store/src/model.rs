//! The event model: what is stored ([`Event`]), what a caller appends ([`NewEvent`]),
//! and the rules for names.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::clock::Timestamp;
use crate::error::{Error, Field};

/// One stored event.
///
/// Serializes as the event JSON of PROTOCOL.md section 7:
/// `{seq, id, stream, version, type, time, agent, correlation_id, causation_id, data, metadata}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Global position in the log, from 1, without gaps.
    pub seq: u64,
    /// Unique id: a ULID chosen by the store, or the caller's id.
    pub id: String,
    /// The stream the event belongs to.
    pub stream: String,
    /// Position in its stream, from 0.
    pub version: u64,
    /// The event type, for example `elicitation.requested`.
    #[serde(rename = "type")]
    pub event_type: String,
    /// When the store appended it (store clock; never decreases along `seq`).
    pub time: Timestamp,
    /// The agent that caused it, when known.
    pub agent: Option<String>,
    /// Groups events caused by one action (the bridge uses the request id).
    pub correlation_id: Option<String>,
    /// The id of the event or command that caused this one.
    pub causation_id: Option<String>,
    /// The payload, any JSON, stored as given.
    pub data: Value,
    /// Caller metadata, any JSON (`{}` when none was given).
    pub metadata: Value,
}

/// The optimistic concurrency condition of an append, checked per stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExpectedVersion {
    /// No condition.
    #[default]
    Any,
    /// The stream must not exist yet.
    NoStream,
    /// The stream's last event must have exactly this version.
    Exact(u64),
}

/// An event to append. Build with [`NewEvent::new`] and the `with_*` methods.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// Target stream.
    pub stream: String,
    /// Event type.
    pub event_type: String,
    /// Payload.
    pub data: Value,
    /// Metadata (`{}` if `Null`).
    pub metadata: Value,
    /// Caller-chosen id; a repeated id returns the original result.
    pub id: Option<String>,
    /// Acting agent.
    pub agent: Option<String>,
    /// Correlation id.
    pub correlation_id: Option<String>,
    /// Causation id.
    pub causation_id: Option<String>,
    /// Condition on the stream's version just before this event is appended
    /// (earlier events of the same batch count).
    pub expected_version: ExpectedVersion,
}

impl NewEvent {
    /// An event of `event_type` on `stream` carrying `data`.
    pub fn new(stream: impl Into<String>, event_type: impl Into<String>, data: Value) -> Self {
        NewEvent {
            stream: stream.into(),
            event_type: event_type.into(),
            data,
            metadata: Value::Null,
            id: None,
            agent: None,
            correlation_id: None,
            causation_id: None,
            expected_version: ExpectedVersion::Any,
        }
    }

    /// Sets the caller-chosen id.
    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// Sets the acting agent.
    pub fn with_agent(mut self, agent: impl Into<String>) -> Self {
        self.agent = Some(agent.into());
        self
    }

    /// Sets the correlation id.
    pub fn with_correlation_id(mut self, id: impl Into<String>) -> Self {
        self.correlation_id = Some(id.into());
        self
    }

    /// Sets the causation id.
    pub fn with_causation_id(mut self, id: impl Into<String>) -> Self {
        self.causation_id = Some(id.into());
        self
    }

    /// Sets the metadata.
    pub fn with_metadata(mut self, metadata: Value) -> Self {
        self.metadata = metadata;
        self
    }

    /// Sets the optimistic concurrency condition.
    pub fn expect(mut self, expected: ExpectedVersion) -> Self {
        self.expected_version = expected;
        self
    }
}

/// Where one appended event landed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Appended {
    /// Global position.
    pub seq: u64,
    /// Event id.
    pub id: String,
    /// Position in its stream.
    pub version: u64,
}

/// The result of an append: one [`Appended`] per event, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendOutcome {
    /// Positions of the events of the batch.
    pub events: Vec<Appended>,
    /// `true` when every id of the batch had been appended before, so nothing new
    /// was written and `events` are the original positions.
    pub deduplicated: bool,
}

/// Size and count limits of the store. Every field has a documented default.
///
/// [`StoreOptions::limits`](crate::StoreOptions::limits) clamps the byte
/// limits to [`Limits::MAX_EVENT_BYTES`] and [`Limits::MAX_BATCH_BYTES`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest encoded event (header, data, metadata), default 1 MiB, at most
    /// [`Limits::MAX_EVENT_BYTES`].
    pub max_event_bytes: usize,
    /// Most events in one batch, default 1000.
    pub max_batch_events: usize,
    /// Largest batch, encoded, default 10 MiB, at most
    /// [`Limits::MAX_BATCH_BYTES`].
    pub max_batch_bytes: usize,
}

impl Limits {
    /// The largest `max_event_bytes` a store accepts: 64 MiB. A record's data
    /// and metadata lengths are u32 in its header, a segment frame's length is
    /// a u32, and a backup's record frame is at most this long: a larger event
    /// could be acknowledged and then not be read back or restored.
    pub const MAX_EVENT_BYTES: usize = 64 << 20;
    /// The largest `max_batch_bytes` a store accepts: 64 MiB, the size at
    /// which the writer stops adding requests to a group commit, so that one
    /// group's frame stays far below what its u32 length can say.
    pub const MAX_BATCH_BYTES: usize = 64 << 20;

    /// These limits with the byte limits brought down to their maxima.
    pub(crate) fn clamped(self) -> Limits {
        Limits {
            max_event_bytes: self.max_event_bytes.min(Self::MAX_EVENT_BYTES),
            max_batch_events: self.max_batch_events,
            max_batch_bytes: self.max_batch_bytes.min(Self::MAX_BATCH_BYTES),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_event_bytes: 1 << 20,
            max_batch_events: 1000,
            max_batch_bytes: 10 << 20,
        }
    }
}

/// Stream names: `^[A-Za-z0-9$][A-Za-z0-9_.:$-]{0,255}$` (PROTOCOL.md).
pub fn validate_stream(s: &str) -> Result<(), Error> {
    let ok = !s.is_empty()
        && s.len() <= 256
        && s.bytes().enumerate().all(|(i, b)| {
            b.is_ascii_alphanumeric()
                || b == b'$'
                || (i > 0 && matches!(b, b'_' | b'.' | b':' | b'-'))
        });
    check(
        ok,
        Field::Stream,
        "1 to 256 of [A-Za-z0-9_.:$-], not starting with _ . : -",
    )
}

/// Event types: `^[a-z][a-z0-9_.]{0,127}$` (PROTOCOL.md).
pub fn validate_event_type(s: &str) -> Result<(), Error> {
    let ok = !s.is_empty()
        && s.len() <= 128
        && s.bytes().enumerate().all(|(i, b)| {
            b.is_ascii_lowercase() || (i > 0 && (b.is_ascii_digit() || b == b'_' || b == b'.'))
        });
    check(ok, Field::Type, "1 to 128 of [a-z0-9_.], starting with a-z")
}

/// Agent ids: `^[a-z0-9][a-z0-9._-]{0,63}$` (PROTOCOL.md).
pub fn validate_agent(s: &str) -> Result<(), Error> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.bytes().enumerate().all(|(i, b)| {
            b.is_ascii_lowercase()
                || b.is_ascii_digit()
                || (i > 0 && matches!(b, b'.' | b'_' | b'-'))
        });
    check(
        ok,
        Field::Agent,
        "1 to 64 of [a-z0-9._-], starting with a-z or 0-9",
    )
}

/// Event ids, correlation and causation ids: 1 to 128 bytes of `[A-Za-z0-9_.:-]`.
pub fn validate_token(s: &str, field: Field) -> Result<(), Error> {
    let ok = !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'));
    check(ok, field, "1 to 128 of [A-Za-z0-9_.:-]")
}

fn check(ok: bool, field: Field, rule: &'static str) -> Result<(), Error> {
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidName { field, rule })
    }
}

impl NewEvent {
    /// Checks every name of the event against its character set.
    pub fn validate(&self) -> Result<(), Error> {
        validate_stream(&self.stream)?;
        validate_event_type(&self.event_type)?;
        if let Some(id) = &self.id {
            validate_token(id, Field::Id)?;
        }
        if let Some(a) = &self.agent {
            validate_agent(a)?;
        }
        if let Some(c) = &self.correlation_id {
            validate_token(c, Field::CorrelationId)?;
        }
        if let Some(c) = &self.causation_id {
            validate_token(c, Field::CausationId)?;
        }
        Ok(())
    }
}

/// The size of `v` serialised as JSON, counted without building the bytes;
/// `usize::MAX` if it cannot be serialised, so that a size bound fails closed.
pub fn json_size(v: &impl serde::Serialize) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Count(0);
    match serde_json::to_writer(&mut c, v) {
        Ok(()) => c.0,
        Err(_) => usize::MAX,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_names_follow_the_protocol() {
        for ok in [
            "a",
            "elicitation-el_01JDX3",
            "$agents",
            "mailbox-bob",
            "x:y.z$1",
        ] {
            assert!(validate_stream(ok).is_ok(), "{ok}");
        }
        let long = "a".repeat(257);
        for bad in ["", "-a", "_a", "a b", "a/b", "é", long.as_str()] {
            assert!(validate_stream(bad).is_err(), "{bad}");
        }
        assert!(validate_stream(&"a".repeat(256)).is_ok());
    }

    #[test]
    fn event_types_follow_the_protocol() {
        assert!(validate_event_type("elicitation.requested").is_ok());
        for bad in ["", "Elicitation", "1a", "a-b", ".a"] {
            assert!(validate_event_type(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn agents_follow_the_protocol() {
        assert!(validate_agent("ops-1").is_ok());
        assert!(validate_agent("0x").is_ok());
        for bad in ["", "Alice", "-a", &"a".repeat(65)] {
            assert!(validate_agent(bad).is_err(), "{bad}");
        }
    }
}
