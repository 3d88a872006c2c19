//! The binary record format and its integrity chain.
//!
//! A record is a fixed 40-byte header, the variable fields, then a 32-byte MAC:
//!
//! ```text
//! offset size field
//!      0    1 format (1)
//!      1    8 seq            (u64 little endian)
//!      9    8 version        (u64 LE, position in the stream)
//!     17    8 time           (i64 LE, Unix milliseconds)
//!     25    1 id length      (1..=128)
//!     26    2 stream length  (u16 LE, 1..=256)
//!     28    1 type length    (1..=128)
//!     29    1 agent length   (0 = none)
//!     30    1 correlation id length (0 = none)
//!     31    1 causation id length   (0 = none)
//!     32    4 data length     (u32 LE, JSON text)
//!     36    4 metadata length (u32 LE, JSON text)
//!     40    . id, stream, type, agent, correlation id, causation id, data, metadata
//!   end-32 32 MAC = HMAC-SHA256(key, MAC of seq-1 || every byte before the MAC)
//! ```
//!
//! The MAC of "seq 0" is [`GENESIS`]. Because each MAC covers the previous one and
//! the record's own `seq`, changing, removing or reordering records breaks the chain
//! at the first affected position.

use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

use crate::clock::Timestamp;
use crate::error::Error;
use crate::model::{Event, NewEvent};

/// Size of the fixed header.
pub const HEADER_LEN: usize = 40;
/// Size of the MAC trailer.
pub const MAC_LEN: usize = 32;
/// The chain value that precedes seq 1.
pub const GENESIS: [u8; MAC_LEN] = [0u8; MAC_LEN];
const FORMAT: u8 = 1;

/// An HMAC-SHA256 key for the integrity chain, with its key schedule done once.
#[derive(Clone)]
pub struct ChainKey {
    mac: Hmac<Sha256>,
}

impl std::fmt::Debug for ChainKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ChainKey(..)")
    }
}

impl ChainKey {
    /// A chain key from secret bytes (any length; 32 random bytes recommended).
    pub fn new(secret: &[u8]) -> Self {
        // HMAC accepts keys of any length; this cannot fail.
        let mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).unwrap_or_else(|_| unreachable!());
        ChainKey { mac }
    }

    /// HMAC of `prev || body`.
    pub fn chain(&self, prev: &[u8; MAC_LEN], body: &[u8]) -> [u8; MAC_LEN] {
        let mut m = self.mac.clone();
        m.update(prev);
        m.update(body);
        m.finalize().into_bytes().into()
    }

    /// HMAC of a projection snapshot: its name, the seq it reflects and its
    /// bytes, under a label of its own (no record body can collide with it).
    pub fn snapshot_mac(&self, name: &str, seq: u64, data: &[u8]) -> [u8; MAC_LEN] {
        let mut m = self.mac.clone();
        m.update(b"lighthouse/event-store/snapshot/v1\0");
        m.update(&(name.len() as u64).to_be_bytes());
        m.update(name.as_bytes());
        m.update(&seq.to_be_bytes());
        m.update(&(data.len() as u64).to_be_bytes());
        m.update(data);
        m.finalize().into_bytes().into()
    }

    /// A value that identifies the key without revealing it, stored so that
    /// opening with the wrong key is refused.
    pub fn fingerprint(&self) -> [u8; MAC_LEN] {
        self.chain(&GENESIS, b"lighthouse/event-store/key-check/v1")
    }
}

/// The caller-side half of an encoded event: everything but the fields the writer
/// assigns (seq, version, time, id) and the MAC. Encoding JSON here, on the
/// caller's task, keeps the single writer thread's work small.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The event as given (data and metadata kept for publishing to subscribers).
    pub event: NewEvent,
    /// `stream, type, agent, correlation, causation, data, metadata` bytes.
    pub tail: Vec<u8>,
    data_len: u32,
    meta_len: u32,
}

impl Prepared {
    /// Encodes the variable part of `event`. `metadata: null` is stored as `{}`.
    ///
    /// Data or metadata whose JSON text is longer than a record's u32 length
    /// fields can say is [`Error::TooLarge`] (a store refuses far smaller
    /// events: [`Limits::MAX_EVENT_BYTES`](crate::Limits::MAX_EVENT_BYTES)).
    /// The other lengths of the header are bounded by the names' rules, which
    /// the store checks first ([`NewEvent::validate`]).
    pub fn new(mut event: NewEvent) -> Result<Self, Error> {
        if event.metadata.is_null() {
            event.metadata = Value::Object(Default::default());
        }
        let mut tail = Vec::with_capacity(event.stream.len() + event.event_type.len() + 64 + 256);
        tail.extend_from_slice(event.stream.as_bytes());
        tail.extend_from_slice(event.event_type.as_bytes());
        for s in [&event.agent, &event.correlation_id, &event.causation_id]
            .into_iter()
            .flatten()
        {
            tail.extend_from_slice(s.as_bytes());
        }
        let before = tail.len();
        // Writing JSON into a Vec cannot fail for a `Value`.
        let _ = serde_json::to_writer(&mut tail, &event.data);
        let data_len = len_u32(tail.len() - before, "event data")?;
        let before = tail.len();
        let _ = serde_json::to_writer(&mut tail, &event.metadata);
        let meta_len = len_u32(tail.len() - before, "event metadata")?;
        Ok(Prepared {
            event,
            tail,
            data_len,
            meta_len,
        })
    }

    /// The size of the finished record with an id of `id_len` bytes.
    pub fn record_len(&self, id_len: usize) -> usize {
        HEADER_LEN + id_len + self.tail.len() + MAC_LEN
    }

    /// Writes the finished record and returns it with its MAC.
    pub fn finish(
        &self,
        key: &ChainKey,
        prev: &[u8; MAC_LEN],
        seq: u64,
        version: u64,
        time: Timestamp,
        id: &str,
    ) -> (Vec<u8>, [u8; MAC_LEN]) {
        let mut out = Vec::with_capacity(self.record_len(id.len()));
        let mac = self.finish_into(&mut out, key, prev, seq, version, time, id);
        (out, mac)
    }

    /// Appends the finished record to `out` (the writer packs a whole group into
    /// one buffer this way, without a buffer per record) and returns its MAC.
    #[allow(clippy::too_many_arguments)]
    pub fn finish_into(
        &self,
        out: &mut Vec<u8>,
        key: &ChainKey,
        prev: &[u8; MAC_LEN],
        seq: u64,
        version: u64,
        time: Timestamp,
        id: &str,
    ) -> [u8; MAC_LEN] {
        let e = &self.event;
        let mut header = [0u8; HEADER_LEN];
        header[0] = FORMAT;
        header[1..9].copy_from_slice(&seq.to_le_bytes());
        header[9..17].copy_from_slice(&version.to_le_bytes());
        header[17..25].copy_from_slice(&time.unix_millis().to_le_bytes());
        header[25] = id.len() as u8;
        header[26..28].copy_from_slice(&(e.stream.len() as u16).to_le_bytes());
        header[28] = e.event_type.len() as u8;
        header[29] = e.agent.as_ref().map_or(0, |s| s.len() as u8);
        header[30] = e.correlation_id.as_ref().map_or(0, |s| s.len() as u8);
        header[31] = e.causation_id.as_ref().map_or(0, |s| s.len() as u8);
        header[32..36].copy_from_slice(&self.data_len.to_le_bytes());
        header[36..40].copy_from_slice(&self.meta_len.to_le_bytes());
        let start = out.len();
        out.reserve(self.record_len(id.len()));
        out.extend_from_slice(&header);
        out.extend_from_slice(id.as_bytes());
        out.extend_from_slice(&self.tail);
        let mac = key.chain(prev, &out[start..]);
        out.extend_from_slice(&mac);
        mac
    }
}

/// `len` as a record header's u32 length field; [`Error::TooLarge`] naming
/// `what` when it does not fit (a silent truncation would make a record whose
/// MAC is good and whose fields cannot be read back).
fn len_u32(len: usize, what: &'static str) -> Result<u32, Error> {
    u32::try_from(len).map_err(|_| Error::TooLarge {
        what,
        actual: len,
        limit: u32::MAX as usize,
    })
}

/// The length of the record that starts at `b[0]`, read from its header; `None`
/// when `b` does not start with a complete header of a known format.
pub fn stored_len(b: &[u8]) -> Option<usize> {
    if b.len() < HEADER_LEN || b[0] != FORMAT {
        return None;
    }
    let var = b[25] as usize
        + u16::from_le_bytes([b[26], b[27]]) as usize
        + b[28] as usize
        + b[29] as usize
        + b[30] as usize
        + b[31] as usize
        + u32_at(b, 32) as usize
        + u32_at(b, 36) as usize;
    Some(HEADER_LEN + var + MAC_LEN)
}

/// A decoded view of a record that borrows its bytes (no JSON parsing).
#[derive(Debug, Clone, Copy)]
pub struct RecordView<'a> {
    /// Global position.
    pub seq: u64,
    /// Stream version.
    pub version: u64,
    /// Append time.
    pub time: Timestamp,
    /// Event id.
    pub id: &'a str,
    /// Stream.
    pub stream: &'a str,
    /// Type.
    pub event_type: &'a str,
    /// Agent.
    pub agent: Option<&'a str>,
    /// Correlation id.
    pub correlation_id: Option<&'a str>,
    /// Causation id.
    pub causation_id: Option<&'a str>,
    /// JSON text of `data`.
    pub data: &'a [u8],
    /// JSON text of `metadata`.
    pub metadata: &'a [u8],
    /// Every byte the MAC covers (all but the MAC).
    pub body: &'a [u8],
    /// The stored MAC.
    pub mac: &'a [u8; MAC_LEN],
}

/// Why bytes are not a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(pub &'static str);

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

impl<'a> RecordView<'a> {
    /// Whether this record is the one at `seq` of the integrity chain after the
    /// MAC `prev`: its seq is `seq` and its MAC chains from `prev` under `key`.
    pub fn follows(&self, key: &ChainKey, seq: u64, prev: &[u8; MAC_LEN]) -> bool {
        self.seq == seq && key.chain(prev, self.body) == *self.mac
    }

    /// Parses the header and slices the fields; checks lengths and UTF-8, not the MAC.
    pub fn parse(b: &'a [u8]) -> Result<Self, DecodeError> {
        if b.len() < HEADER_LEN + MAC_LEN {
            return Err(DecodeError("shorter than a header"));
        }
        if b[0] != FORMAT {
            return Err(DecodeError("unknown record format"));
        }
        let lens = [
            b[25] as usize,
            u16::from_le_bytes([b[26], b[27]]) as usize,
            b[28] as usize,
            b[29] as usize,
            b[30] as usize,
            b[31] as usize,
            u32_at(b, 32) as usize,
            u32_at(b, 36) as usize,
        ];
        let total: usize = HEADER_LEN + lens.iter().sum::<usize>() + MAC_LEN;
        if total != b.len() {
            return Err(DecodeError(
                "field lengths do not add up to the record length",
            ));
        }
        let mut at = HEADER_LEN;
        let mut next = |n: usize| {
            let s = &b[at..at + n];
            at += n;
            s
        };
        let text =
            |s: &'a [u8]| std::str::from_utf8(s).map_err(|_| DecodeError("field is not UTF-8"));
        let id = text(next(lens[0]))?;
        let stream = text(next(lens[1]))?;
        let event_type = text(next(lens[2]))?;
        let agent = text(next(lens[3]))?;
        let corr = text(next(lens[4]))?;
        let caus = text(next(lens[5]))?;
        let data = next(lens[6]);
        let metadata = next(lens[7]);
        let body = &b[..b.len() - MAC_LEN];
        let mac: &[u8; MAC_LEN] = b[b.len() - MAC_LEN..]
            .try_into()
            .map_err(|_| DecodeError("bad MAC length"))?;
        let opt = |s: &'a str| (!s.is_empty()).then_some(s);
        Ok(RecordView {
            seq: u64_at(b, 1),
            version: u64_at(b, 9),
            time: Timestamp::from_unix_millis(u64_at(b, 17) as i64),
            id,
            stream,
            event_type,
            agent: opt(agent),
            correlation_id: opt(corr),
            causation_id: opt(caus),
            data,
            metadata,
            body,
            mac,
        })
    }

    /// The full event, parsing the JSON of data and metadata.
    pub fn to_event(&self) -> Result<Event, DecodeError> {
        let data =
            serde_json::from_slice(self.data).map_err(|_| DecodeError("data is not JSON"))?;
        let metadata = serde_json::from_slice(self.metadata)
            .map_err(|_| DecodeError("metadata is not JSON"))?;
        Ok(Event {
            seq: self.seq,
            id: self.id.to_owned(),
            stream: self.stream.to_owned(),
            version: self.version,
            event_type: self.event_type.to_owned(),
            time: self.time,
            agent: self.agent.map(str::to_owned),
            correlation_id: self.correlation_id.map(str::to_owned),
            causation_id: self.causation_id.map(str::to_owned),
            data,
            metadata,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample() -> Prepared {
        Prepared::new(
            NewEvent::new(
                "orders-1",
                "order.placed",
                json!({"total": 12.5, "items": ["a"]}),
            )
            .with_agent("alice")
            .with_correlation_id("req-1"),
        )
        .unwrap()
    }

    #[test]
    fn a_length_past_a_u32_is_refused_not_truncated() {
        assert_eq!(len_u32(7, "event data").unwrap(), 7);
        assert_eq!(len_u32(u32::MAX as usize, "event data").unwrap(), u32::MAX);
        match len_u32(u32::MAX as usize + 1, "event metadata") {
            Err(Error::TooLarge {
                what,
                actual,
                limit,
            }) => {
                assert_eq!(what, "event metadata");
                assert_eq!(actual, u32::MAX as usize + 1);
                assert_eq!(limit, u32::MAX as usize);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_record_round_trips() {
        let key = ChainKey::new(b"k");
        let (bytes, mac) = sample().finish(
            &key,
            &GENESIS,
            7,
            3,
            Timestamp::from_unix_millis(99),
            "ev-1",
        );
        let v = RecordView::parse(&bytes).unwrap();
        assert_eq!((v.seq, v.version, v.time.unix_millis()), (7, 3, 99));
        assert_eq!(v.mac, &mac);
        assert_eq!(key.chain(&GENESIS, v.body), mac);
        let e = v.to_event().unwrap();
        assert_eq!(e.id, "ev-1");
        assert_eq!(e.stream, "orders-1");
        assert_eq!(e.event_type, "order.placed");
        assert_eq!(e.agent.as_deref(), Some("alice"));
        assert_eq!(e.correlation_id.as_deref(), Some("req-1"));
        assert_eq!(e.causation_id, None);
        assert_eq!(e.data, json!({"total": 12.5, "items": ["a"]}));
        assert_eq!(e.metadata, json!({}));
    }

    #[test]
    fn truncated_or_padded_bytes_are_refused() {
        let key = ChainKey::new(b"k");
        let (bytes, _) = sample().finish(&key, &GENESIS, 1, 0, Timestamp::EPOCH, "x");
        assert!(RecordView::parse(&bytes[..bytes.len() - 1]).is_err());
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(RecordView::parse(&longer).is_err());
        assert!(RecordView::parse(&[]).is_err());
    }

    #[test]
    fn the_mac_depends_on_the_previous_mac() {
        let key = ChainKey::new(b"k");
        let p = sample();
        let (_, a) = p.finish(&key, &GENESIS, 1, 0, Timestamp::EPOCH, "x");
        let (_, b) = p.finish(&key, &[1u8; 32], 1, 0, Timestamp::EPOCH, "x");
        assert_ne!(a, b);
    }
}
