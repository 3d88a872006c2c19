//! The events this crate writes: their types, streams and payloads.
//!
//! Every elicitation event carries `id`, `from` and `to`, so that each one is
//! self-describing (a reader can tell who may see it without looking elsewhere).

use std::sync::Arc;

use lighthouse_event_store::{Event, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::Error;
use crate::record::{Action, Elicitation, Message, Response, SchemaProfile, Status};

/// `elicitation.requested`: an elicitation was created.
pub const REQUESTED: &str = "elicitation.requested";
/// `elicitation.accepted`: the target answered.
pub const ACCEPTED: &str = "elicitation.accepted";
/// `elicitation.declined`: the target declined.
pub const DECLINED: &str = "elicitation.declined";
/// `elicitation.cancelled`: the requester or a draining operator cancelled.
pub const CANCELLED: &str = "elicitation.cancelled";
/// `elicitation.expired`: the deadline passed.
pub const EXPIRED: &str = "elicitation.expired";
/// `message.sent`: a mailbox message, on the recipient's mailbox stream.
pub const MESSAGE_SENT: &str = "message.sent";

/// Prefix of every elicitation stream.
pub const ELICITATION_STREAM_PREFIX: &str = "elicitation-";
/// Prefix of every mailbox stream.
pub const MAILBOX_STREAM_PREFIX: &str = "mailbox-";

/// The stream of elicitation `id`: `elicitation-<id>`.
pub fn elicitation_stream(id: &str) -> String {
    format!("{ELICITATION_STREAM_PREFIX}{id}")
}

/// The mailbox stream of `agent`: `mailbox-<agent>`.
pub fn mailbox_stream(agent: &str) -> String {
    format!("{MAILBOX_STREAM_PREFIX}{agent}")
}

/// The terminal event type of an action.
pub(crate) fn terminal_type(action: Action) -> &'static str {
    match action {
        Action::Accept => ACCEPTED,
        Action::Decline => DECLINED,
        Action::Cancel => CANCELLED,
        Action::Expire => EXPIRED,
    }
}

/// The action a terminal event type records.
pub(crate) fn terminal_action(event_type: &str) -> Option<Action> {
    match event_type {
        ACCEPTED => Some(Action::Accept),
        DECLINED => Some(Action::Decline),
        CANCELLED => Some(Action::Cancel),
        EXPIRED => Some(Action::Expire),
        _ => None,
    }
}

/// A fresh id: `prefix` followed by a ULID whose time part is `now`.
pub(crate) fn new_id(prefix: &str, now: Timestamp) -> String {
    let ms = u64::try_from(now.unix_millis()).unwrap_or(0);
    format!(
        "{prefix}{}",
        ulid::Ulid::from_parts(ms, rand::random::<u128>())
    )
}

/// Whether `s` is `el_` followed by a ULID.
pub fn is_elicitation_id(s: &str) -> bool {
    s.strip_prefix("el_")
        .is_some_and(|u| u.len() == 26 && ulid::Ulid::from_string(u).is_ok())
}

/// Payload of `elicitation.requested`: the whole pending record, plus what is
/// needed to rebuild the service's state from the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Requested {
    pub id: String,
    pub from: String,
    pub to: String,
    pub message: String,
    pub requested_schema: Value,
    pub schema_profile: SchemaProfile,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    pub metadata: Value,
    /// The requester's idempotency key, so retries are recognized after a restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// SHA-256 of the create request, to tell a retry from a reuse of the key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_hash: Option<String>,
}

impl Requested {
    /// The event payload: what `serde_json::to_value` gives, built directly
    /// (the create path's hot spot).
    pub(crate) fn to_value(&self) -> Value {
        let mut m = serde_json::Map::new();
        let s = |v: &str| Value::String(v.to_owned());
        m.insert("id".into(), s(&self.id));
        m.insert("from".into(), s(&self.from));
        m.insert("to".into(), s(&self.to));
        m.insert("message".into(), s(&self.message));
        m.insert("requested_schema".into(), self.requested_schema.clone());
        m.insert("schema_profile".into(), s(self.schema_profile.as_str()));
        m.insert(
            "created_at".into(),
            Value::String(self.created_at.to_rfc3339()),
        );
        m.insert(
            "expires_at".into(),
            Value::String(self.expires_at.to_rfc3339()),
        );
        m.insert("metadata".into(), self.metadata.clone());
        if let Some(k) = &self.idempotency_key {
            m.insert("idempotency_key".into(), s(k));
        }
        if let Some(h) = &self.request_hash {
            m.insert("request_hash".into(), s(h));
        }
        Value::Object(m)
    }

    /// The pending record this event creates.
    pub(crate) fn into_record(mut self) -> Elicitation {
        let schema = Arc::new(std::mem::take(&mut self.requested_schema));
        let metadata = Arc::new(std::mem::take(&mut self.metadata));
        self.into_record_sharing(schema, metadata)
    }

    /// The pending record this event creates, with `requested_schema` and
    /// `metadata` given as values shared with other records (the fields of
    /// `self` are ignored).
    pub(crate) fn into_record_sharing(
        self,
        requested_schema: Arc<Value>,
        metadata: Arc<Value>,
    ) -> Elicitation {
        Elicitation {
            id: Arc::from(self.id),
            from: Arc::from(self.from),
            to: Arc::from(self.to),
            message: Arc::from(self.message),
            requested_schema,
            status: Status::Pending,
            created_at: self.created_at,
            expires_at: self.expires_at,
            resolved_at: None,
            response: None,
            metadata,
        }
    }
}

/// Payload of the four terminal events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Resolved {
    pub id: String,
    pub from: String,
    pub to: String,
    pub resolved_at: Timestamp,
    /// The answer (`accepted` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The acting agent (absent for `expired`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
}

impl Resolved {
    /// The event payload: what `serde_json::to_value` gives, built directly.
    pub(crate) fn to_value(&self) -> Value {
        let mut m = serde_json::Map::new();
        let s = |v: &str| Value::String(v.to_owned());
        m.insert("id".into(), s(&self.id));
        m.insert("from".into(), s(&self.from));
        m.insert("to".into(), s(&self.to));
        m.insert(
            "resolved_at".into(),
            Value::String(self.resolved_at.to_rfc3339()),
        );
        if let Some(c) = &self.content {
            m.insert("content".into(), c.clone());
        }
        if let Some(r) = &self.reason {
            m.insert("reason".into(), s(r));
        }
        if let Some(b) = &self.by {
            m.insert("by".into(), s(b));
        }
        Value::Object(m)
    }
}

/// What applying a terminal event needs of its payload (`id`, `from` and `to`
/// are not decoded: the pending record has them).
#[derive(Debug, Deserialize)]
pub(crate) struct Outcome {
    #[serde(deserialize_with = "timestamp")]
    pub resolved_at: Timestamp,
    #[serde(default)]
    pub content: Option<Value>,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub by: Option<String>,
}

impl Outcome {
    /// `pending` moved to its terminal state by this event (the record's shared
    /// parts are not copied).
    pub(crate) fn apply_to(self, pending: &Elicitation, action: Action) -> Elicitation {
        Elicitation {
            status: action.status(),
            resolved_at: Some(self.resolved_at),
            response: Some(Response {
                action,
                content: if action == Action::Accept {
                    self.content
                } else {
                    None
                },
                reason: self.reason,
                by: self.by,
            }),
            ..pending.clone()
        }
    }
}

/// Payload of `message.sent`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Sent {
    pub id: String,
    pub from: String,
    pub to: String,
    pub body: Value,
    pub created_at: Timestamp,
}

/// Deserializes a [`Timestamp`] as its own `Deserialize` does, reading the
/// form the store writes (`2026-11-26T07:00:00.123Z`) without the general
/// RFC 3339 parser (a replay reads two per elicitation); any other text goes to
/// that parser.
pub(crate) fn timestamp<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
    let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
    match written_millis(&s) {
        Some(ms) => Ok(Timestamp::from_unix_millis(ms)),
        None => Timestamp::parse_rfc3339(&s).map_err(serde::de::Error::custom),
    }
}

/// The Unix milliseconds of `YYYY-MM-DDTHH:MM:SS.mmmZ`; `None` for any other
/// text, and for days after the 28th (left to the general parser, which knows
/// the length of each month).
fn written_millis(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 24
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
        || b[19] != b'.'
        || b[23] != b'Z'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| {
        b[r].iter().try_fold(0i64, |n, &c| {
            c.is_ascii_digit().then(|| n * 10 + i64::from(c - b'0'))
        })
    };
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec, ms) = (num(11..13)?, num(14..16)?, num(17..19)?, num(20..23)?);
    if y < 1 || !(1..=12).contains(&m) || !(1..=28).contains(&d) || h > 23 || mi > 59 || sec > 59 {
        return None;
    }
    // Days from civil (H. Hinnant), years starting in March.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((days * 86_400 + h * 3_600 + mi * 60 + sec) * 1_000 + ms)
}

/// Decodes an event's payload.
pub(crate) fn decode<T: for<'de> Deserialize<'de>>(e: &Event) -> Result<T, Error> {
    T::deserialize(&e.data).map_err(|err| Error::Corrupt {
        seq: e.seq,
        event_type: e.event_type.clone(),
        reason: err.to_string(),
    })
}

/// The message a `message.sent` event carries.
pub(crate) fn message_of(e: &Event) -> Result<Arc<Message>, Error> {
    let s: Sent = decode(e)?;
    Ok(Arc::new(Message {
        id: s.id,
        seq: e.seq,
        from: s.from,
        to: s.to,
        body: s.body,
        created_at: s.created_at,
    }))
}

/// Folds the events of one elicitation stream into its record (for elicitations
/// no longer held in memory). `None` when there is no `requested` event.
/// The record of `id` as its events in the log say, `None` if it was never
/// created. Only the service's own events are read (types `elicitation.`, which
/// only the bridge may write): others' events on the stream, however many,
/// neither hide its outcome nor cost a read.
pub(crate) fn read_back(
    store: &lighthouse_event_store::EventStore,
    id: &str,
) -> Result<Option<Elicitation>, Error> {
    let q = lighthouse_event_store::Query {
        limit: 16,
        ..lighthouse_event_store::Query::new(lighthouse_event_store::Filter {
            stream: Some(elicitation_stream(id)),
            type_prefix: Some("elicitation.".into()),
            ..Default::default()
        })
    };
    fold(&store.read(&q)?.events)
}

pub(crate) fn fold(events: &[Event]) -> Result<Option<Elicitation>, Error> {
    let mut record: Option<Elicitation> = None;
    for e in events {
        if e.event_type == REQUESTED {
            record = Some(decode::<Requested>(e)?.into_record());
        } else if let (Some(action), Some(r)) = (terminal_action(&e.event_type), record.as_ref())
            && r.status == Status::Pending
        {
            let outcome: Outcome = decode(e)?;
            record = Some(outcome.apply_to(r, action));
        }
    }
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_direct_payload_equals_the_serde_one() {
        let mut r = Requested {
            id: "el_1".into(),
            from: "alice".into(),
            to: "bob".into(),
            message: "m\"q".into(),
            requested_schema: serde_json::json!({"type": "object", "properties": {"a": {"type": "string"}}}),
            schema_profile: SchemaProfile::JsonSchema,
            created_at: Timestamp::from_unix_millis(1),
            expires_at: Timestamp::from_unix_millis(30_001),
            metadata: serde_json::json!({"k": [1, 2]}),
            idempotency_key: None,
            request_hash: None,
        };
        assert_eq!(r.to_value(), serde_json::to_value(&r).unwrap());
        r.idempotency_key = Some("k".into());
        r.request_hash = Some("h".into());
        assert_eq!(r.to_value(), serde_json::to_value(&r).unwrap());
        let back: Requested = serde_json::from_value(r.to_value()).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn the_direct_terminal_payload_equals_the_serde_one() {
        let mut r = Resolved {
            id: "el_1".into(),
            from: "alice".into(),
            to: "bob".into(),
            resolved_at: Timestamp::from_unix_millis(5),
            content: Some(serde_json::json!({"port": 1})),
            reason: None,
            by: Some("bob".into()),
        };
        assert_eq!(r.to_value(), serde_json::to_value(&r).unwrap());
        r.content = None;
        r.reason = Some("why".into());
        r.by = None;
        assert_eq!(r.to_value(), serde_json::to_value(&r).unwrap());
    }

    proptest::proptest! {
        #[test]
        fn written_timestamps_read_back_as_the_general_parser_reads_them(
            ms in -62_135_596_800_000i64..=253_402_300_799_999,
        ) {
            let text = Timestamp::from_unix_millis(ms).to_string();
            let fast = written_millis(&text);
            proptest::prop_assert!(fast.is_none_or(|f| f == ms), "{text}: {fast:?}");
            let via = |t: &str| timestamp(serde_json::Value::String(t.into())).ok();
            proptest::prop_assert_eq!(via(&text), Some(Timestamp::from_unix_millis(ms)));
        }
    }

    #[test]
    fn other_timestamp_texts_go_to_the_general_parser() {
        let via = |t: &str| timestamp(serde_json::Value::String(t.into())).ok();
        for t in [
            "1970-01-01T00:00:00.000Z",
            "0001-01-01T00:00:00.000Z",
            "9999-12-31T23:59:59.999Z",
            "2024-02-29T12:00:00.000Z",
            "2026-11-26T07:00:00Z",
            "2026-11-26T08:00:00.123+01:00",
            "2026-11-26t07:00:00.123z",
        ] {
            assert_eq!(via(t), Timestamp::parse_rfc3339(t).ok(), "{t}");
            assert!(via(t).is_some(), "{t}");
        }
        assert_eq!(written_millis("1970-01-01T00:00:01.002Z"), Some(1_002));
        assert_eq!(written_millis("2024-02-29T12:00:00.000Z"), None);
        for bad in [
            "2026-02-30T00:00:00.000Z",
            "2026-13-01T00:00:00.000Z",
            "2026-11-26T24:00:00.000Z",
            "2026-11-26T07:60:00.000Z",
            "0000-01-01T00:00:00.000Z",
            "2026-1a-26T07:00:00.000Z",
            "2026-11-26T07:00:00.000",
            "",
        ] {
            assert_eq!(via(bad), None, "{bad}");
        }
    }

    #[test]
    fn ids_are_prefixed_ulids() {
        let id = new_id("el_", Timestamp::from_unix_millis(1_790_000_000_000));
        assert!(is_elicitation_id(&id), "{id}");
        assert_eq!(id.len(), 29);
        assert_ne!(
            id,
            new_id("el_", Timestamp::from_unix_millis(1_790_000_000_000))
        );
        assert!(!is_elicitation_id("el_short"));
        assert!(!is_elicitation_id("xx_01JDX3ABCDEFGHJKMNPQRSTVWX"));
        assert_eq!(elicitation_stream("el_1"), "elicitation-el_1");
        assert_eq!(mailbox_stream("bob"), "mailbox-bob");
    }
}
