//! Events as the projection reads them: the few header fields it needs, and a
//! payload that is either the event's JSON value or was decoded ahead of time
//! from the stored JSON text by a replay's reader (no `serde_json::Value` in
//! between, and on another thread than the one applying).

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use lighthouse_event_store::codec::RecordView;
use lighthouse_event_store::{Event, Timestamp};
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::Value;
use serde_json::value::RawValue;

use crate::error::{Error, Result};
use crate::events::{self, Outcome, Requested};
use crate::record::SchemaProfile;

/// The header fields of an event the projection reads.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EventHead<'a> {
    pub seq: u64,
    pub version: u64,
    pub id: &'a str,
    pub stream: &'a str,
    pub event_type: &'a str,
}

impl<'a> EventHead<'a> {
    pub(crate) fn of(e: &'a Event) -> Self {
        EventHead {
            seq: e.seq,
            version: e.version,
            id: &e.id,
            stream: &e.stream,
            event_type: &e.event_type,
        }
    }
}

/// An event's payload as the projection gets it.
#[expect(
    clippy::large_enum_variant,
    reason = "lives on the stack for the one apply call; boxing would allocate per event"
)]
pub(crate) enum Payload<'a> {
    /// The event itself: its `data` value is decoded when needed.
    Json(&'a Event),
    /// Decoded ahead of time.
    Decoded(Decoded),
}

/// A `requested` payload whose `requested_schema` and `metadata` are values
/// shared with the other events of the replay that carry the same JSON text
/// (agents tend to send the same schema again and again: it is parsed once,
/// and held once).
#[derive(Debug)]
pub(crate) struct SharedRequested {
    /// The payload with `requested_schema` and `metadata` left `null`.
    pub req: Requested,
    pub requested_schema: Arc<Value>,
    pub metadata: Arc<Value>,
}

/// A `requested` payload and, when it was decoded ahead of time, its shared
/// `requested_schema` and `metadata` (else they are in the payload).
pub(crate) type RequestedPayload = (Requested, Option<(Arc<Value>, Arc<Value>)>);

/// A payload decoded ahead of time, by event type. A payload that does not
/// have its type's shape keeps its error: applying reports and skips it only
/// where the projection would decode it (exactly as with [`Payload::Json`]).
#[derive(Debug)]
pub(crate) enum Decoded {
    /// `elicitation.requested`.
    Requested(Result<SharedRequested>),
    /// One of the four terminal types.
    Outcome(Result<Outcome>),
    /// Any other type: its payload is never read.
    Other,
}

impl Payload<'_> {
    /// The payload of a `requested` event.
    pub(crate) fn requested(&mut self, h: &EventHead<'_>) -> Result<RequestedPayload> {
        match self {
            Payload::Json(e) => Ok((events::decode(e)?, None)),
            Payload::Decoded(d) => match std::mem::replace(d, Decoded::Other) {
                Decoded::Requested(r) => r.map(|s| (s.req, Some((s.requested_schema, s.metadata)))),
                _ => Err(not_decoded(h)),
            },
        }
    }

    /// The payload of a terminal event.
    pub(crate) fn outcome(&mut self, h: &EventHead<'_>) -> Result<Outcome> {
        match self {
            Payload::Json(e) => events::decode(e),
            Payload::Decoded(d) => match std::mem::replace(d, Decoded::Other) {
                Decoded::Outcome(r) => r,
                _ => Err(not_decoded(h)),
            },
        }
    }
}

/// A payload taken twice, or decoded as another type than its own; neither
/// happens, but it must not panic.
fn not_decoded(h: &EventHead<'_>) -> Error {
    Error::Corrupt {
        seq: h.seq,
        event_type: h.event_type.to_owned(),
        reason: "payload not decoded for this event type".into(),
    }
}

/// One elicitation event of a replay, decoded from its stored record.
#[derive(Debug)]
pub(crate) struct ReplayEvent {
    pub seq: u64,
    pub version: u64,
    /// The event id (only kept for `requested` events, the only ones that use it).
    pub id: String,
    pub stream: String,
    pub event_type: Cow<'static, str>,
    pub payload: Decoded,
}

/// The JSON text of a `requested` payload, with `requested_schema` and
/// `metadata` left as text (the fields and rules of [`Requested`]).
#[derive(Deserialize)]
struct RequestedText<'a> {
    id: String,
    from: String,
    to: String,
    message: String,
    #[serde(borrow)]
    requested_schema: &'a RawValue,
    schema_profile: SchemaProfile,
    #[serde(deserialize_with = "events::timestamp")]
    created_at: Timestamp,
    #[serde(deserialize_with = "events::timestamp")]
    expires_at: Timestamp,
    #[serde(borrow)]
    metadata: &'a RawValue,
    #[serde(default)]
    idempotency_key: Option<String>,
    #[serde(default)]
    request_hash: Option<String>,
}

/// Distinct JSON texts of one field remembered by a [`ReplayDecoder`] (all are forgotten
/// when one more comes), so memory stays bounded whatever the log holds.
pub(crate) const SHARED_VALUES: usize = 256;
/// Longer texts are parsed every time, never remembered.
pub(crate) const SHARED_VALUE_MAX_LEN: usize = 4_096;

/// Decodes the stored records of a replay into [`ReplayEvent`]s, parsing each
/// distinct `requested_schema` and `metadata` text once.
#[derive(Debug, Default)]
pub(crate) struct ReplayDecoder {
    schemas: SharedValues,
    metadata: SharedValues,
}

impl ReplayDecoder {
    /// Decodes a stored record. Fails, with the store's
    /// [`Corrupt`](lighthouse_event_store::Error::Corrupt) error, for exactly the
    /// records [`EventStore::read`](lighthouse_event_store::EventStore::read)
    /// refuses: those whose data or metadata is not JSON.
    pub(crate) fn decode(
        &mut self,
        r: &RecordView<'_>,
    ) -> Result<ReplayEvent, lighthouse_event_store::Error> {
        if serde_json::from_slice::<IgnoredAny>(r.metadata).is_err() {
            return Err(not_json(r.seq, "metadata is not JSON"));
        }
        let (event_type, payload) = match r.event_type {
            events::REQUESTED => (
                Cow::Borrowed(events::REQUESTED),
                Decoded::Requested(self.requested(r)?),
            ),
            t => match events::terminal_action(t) {
                Some(action) => (
                    Cow::Borrowed(events::terminal_type(action)),
                    Decoded::Outcome(payload(r)?),
                ),
                None => {
                    if serde_json::from_slice::<IgnoredAny>(r.data).is_err() {
                        return Err(not_json(r.seq, "data is not JSON"));
                    }
                    (Cow::Owned(t.to_owned()), Decoded::Other)
                }
            },
        };
        let id = if matches!(payload, Decoded::Requested(_)) {
            r.id.to_owned()
        } else {
            String::new()
        };
        Ok(ReplayEvent {
            seq: r.seq,
            version: r.version,
            id,
            stream: r.stream.to_owned(),
            event_type,
            payload,
        })
    }

    fn requested(
        &mut self,
        r: &RecordView<'_>,
    ) -> Result<Result<SharedRequested>, lighthouse_event_store::Error> {
        let t = match payload::<RequestedText<'_>>(r)? {
            Ok(t) => t,
            Err(e) => return Ok(Err(e)),
        };
        let shape = |e: serde_json::Error| Error::Corrupt {
            seq: r.seq,
            event_type: r.event_type.to_owned(),
            reason: e.to_string(),
        };
        let requested_schema = match self.schemas.get(t.requested_schema) {
            Ok(v) => v,
            Err(e) => return Ok(Err(shape(e))),
        };
        let metadata = match self.metadata.get(t.metadata) {
            Ok(v) => v,
            Err(e) => return Ok(Err(shape(e))),
        };
        Ok(Ok(SharedRequested {
            req: Requested {
                id: t.id,
                from: t.from,
                to: t.to,
                message: t.message,
                requested_schema: Value::Null,
                schema_profile: t.schema_profile,
                created_at: t.created_at,
                expires_at: t.expires_at,
                metadata: Value::Null,
                idempotency_key: t.idempotency_key,
                request_hash: t.request_hash,
            },
            requested_schema,
            metadata,
        }))
    }

    /// How many distinct schema and metadata texts are remembered (the last
    /// ones used are not counted: one each).
    #[cfg(test)]
    pub(crate) fn remembered(&self) -> (usize, usize) {
        (self.schemas.map.len(), self.metadata.map.len())
    }
}

/// Values parsed from JSON texts, by text: the last one used, then a bounded
/// map.
#[derive(Debug, Default)]
struct SharedValues {
    /// Checked first: consecutive events mostly carry the same text, and
    /// comparing it is cheaper than hashing it.
    last: Option<(Arc<str>, Arc<Value>)>,
    map: HashMap<Arc<str>, Arc<Value>>,
}

impl SharedValues {
    /// The value of a JSON text, shared with the earlier ones of the same text.
    fn get(&mut self, raw: &RawValue) -> serde_json::Result<Arc<Value>> {
        let text = raw.get();
        if text.len() > SHARED_VALUE_MAX_LEN {
            return Ok(Arc::new(serde_json::from_str(text)?));
        }
        if let Some((t, v)) = &self.last
            && **t == *text
        {
            return Ok(v.clone());
        }
        let (t, v) = match self.map.get_key_value(text) {
            Some((t, v)) => (t.clone(), v.clone()),
            None => {
                let v = Arc::new(serde_json::from_str::<Value>(text)?);
                if self.map.len() >= SHARED_VALUES {
                    self.map.clear();
                }
                let t: Arc<str> = Arc::from(text);
                self.map.insert(t.clone(), v.clone());
                (t, v)
            }
        };
        self.last = Some((t, v.clone()));
        Ok(v)
    }
}

/// The record's data decoded as `T`: the outer error when it is not JSON at
/// all, the inner one when it is JSON of another shape.
fn payload<'a, T: Deserialize<'a>>(
    r: &RecordView<'a>,
) -> Result<Result<T>, lighthouse_event_store::Error> {
    match serde_json::from_slice::<T>(r.data) {
        Ok(v) => Ok(Ok(v)),
        Err(_) if serde_json::from_slice::<IgnoredAny>(r.data).is_err() => {
            Err(not_json(r.seq, "data is not JSON"))
        }
        Err(e) => Ok(Err(Error::Corrupt {
            seq: r.seq,
            event_type: r.event_type.to_owned(),
            reason: e.to_string(),
        })),
    }
}

fn not_json(seq: u64, reason: &str) -> lighthouse_event_store::Error {
    lighthouse_event_store::Error::Corrupt {
        seq,
        reason: reason.into(),
    }
}
