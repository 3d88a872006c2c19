//! The storage seam: the few operations the log needs from a storage engine.
//!
//! [`SledBackend`] is the embedded default. Everything above this trait (sequence
//! assignment, the integrity chain, indexes, subscriptions) is engine-independent,
//! so a PostgreSQL backend for several bridge nodes sharing one log implements
//! [`Backend`] without changing callers (it would additionally have to take over
//! sequence assignment under a lock; see docs/ARCHITECTURE.md).

use std::path::Path;

use crate::error::Result;

/// The head of the chain as stored with every committed batch: the last seq and
/// its MAC. Used to detect a truncated log and to resume the chain on open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Anchor {
    /// Last committed seq.
    pub seq: u64,
    /// Its MAC.
    pub mac: [u8; 32],
}

impl Anchor {
    fn encode(&self) -> [u8; 40] {
        let mut b = [0u8; 40];
        b[..8].copy_from_slice(&self.seq.to_be_bytes());
        b[8..].copy_from_slice(&self.mac);
        b
    }

    fn decode(b: &[u8]) -> Option<Anchor> {
        if b.len() != 40 {
            return None;
        }
        let seq = u64::from_be_bytes(b[..8].try_into().ok()?);
        let mac = b[8..].try_into().ok()?;
        Some(Anchor { seq, mac })
    }
}

/// A stored record's bytes.
pub type RecordBytes = sled::IVec;

/// An iterator over `(seq, record)` pairs.
pub type RecordIter<'a> = Box<dyn Iterator<Item = Result<(u64, RecordBytes)>> + Send + 'a>;

/// What the event log needs from a storage engine.
pub trait Backend: Send + Sync + 'static {
    /// Writes `records` (each `(seq, bytes)`) and the new anchor, all or nothing.
    fn commit(&self, records: &[(u64, Vec<u8>)], anchor: Anchor) -> Result<()>;
    /// Makes every commit so far durable.
    fn flush(&self) -> Result<()>;
    /// The record at `seq`.
    fn get(&self, seq: u64) -> Result<Option<RecordBytes>>;
    /// Records with `from <= seq <= to`, ascending or descending.
    fn range(&self, from: u64, to: u64, descending: bool) -> RecordIter<'_>;
    /// The stored anchor, `None` for an empty log.
    fn anchor(&self) -> Result<Option<Anchor>>;
    /// A metadata value.
    fn meta_get(&self, key: &str) -> Result<Option<Vec<u8>>>;
    /// Sets a metadata value (durable after the next flush).
    fn meta_put(&self, key: &str, value: &[u8]) -> Result<()>;
    /// Metadata keys starting with `prefix`.
    fn meta_keys(&self, prefix: &str) -> Result<Vec<String>>;
    /// Removes a record, bypassing the log's rules: only for tests that prove
    /// tampering is detected.
    #[doc(hidden)]
    fn raw_put(&self, seq: u64, bytes: Option<&[u8]>) -> Result<()>;
    /// Bytes used on disk.
    fn size_on_disk(&self) -> Result<u64>;
}

/// The log on sled.
///
/// Tree `log` holds records packed in chunks: the key is the big-endian seq of a
/// chunk's first record, the value its records back to back (each record carries
/// its own length in its header). A group commit writes one key per chunk of up to
/// [`CHUNK_RECORDS`] records or [`CHUNK_BYTES`] bytes instead of one key per
/// event, because sled's cost is per key written (CALIBRATION.md). The anchor sits
/// in the same tree under a 9-byte key that sorts after every seq, so one atomic
/// `apply_batch` writes a whole group and its anchor. Tree `meta` holds metadata
/// and snapshots.
pub struct SledBackend {
    db: sled::Db,
    log: sled::Tree,
    meta: sled::Tree,
}

/// Most records packed into one chunk.
pub const CHUNK_RECORDS: usize = 64;
/// A chunk is closed once it holds this many bytes (a larger record gets a chunk
/// of its own).
pub const CHUNK_BYTES: usize = 64 << 10;

const ANCHOR_KEY: [u8; 9] = [0xff; 9];

impl SledBackend {
    /// Opens (or creates) the database in `dir`. `flush_every_ms` is sled's
    /// background flush interval (`None` disables it).
    pub fn open(dir: &Path, cache_bytes: u64, flush_every_ms: Option<u64>) -> Result<Self> {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(cache_bytes)
            .flush_every_ms(flush_every_ms)
            .open()?;
        let log = db.open_tree("log")?;
        let meta = db.open_tree("meta")?;
        Ok(SledBackend { db, log, meta })
    }

    /// The chunk that holds `seq`: its first seq and bytes.
    fn chunk_of(&self, seq: u64) -> Result<Option<(u64, sled::IVec)>> {
        match self.log.range(..=seq.to_be_bytes()).next_back() {
            Some(kv) => {
                let (k, v) = kv?;
                Ok(seq_of(&k).map(|first| (first, v)))
            }
            None => Ok(None),
        }
    }
}

fn seq_of(key: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(key.try_into().ok()?))
}

/// Splits a chunk into `(seq, record)` pairs. Stops at bytes that do not parse as
/// a record header: what follows is unreadable and `verify` reports it.
fn split_chunk(first: u64, chunk: &sled::IVec) -> Vec<(u64, RecordBytes)> {
    let mut out = Vec::new();
    let mut off = 0;
    let mut seq = first;
    while off < chunk.len() {
        match crate::codec::stored_len(&chunk[off..]) {
            Some(len) if off + len <= chunk.len() => {
                out.push((seq, chunk.subslice(off, len)));
                off += len;
                seq += 1;
            }
            _ => break,
        }
    }
    out
}

fn pack(records: &[(u64, Vec<u8>)]) -> Vec<(u64, Vec<u8>)> {
    let mut chunks = Vec::new();
    let mut cur: Option<(u64, Vec<u8>, usize)> = None;
    for (seq, bytes) in records {
        if let Some((first, buf, n)) = cur.take() {
            if n < CHUNK_RECORDS && buf.len() < CHUNK_BYTES && first + n as u64 == *seq {
                let mut buf = buf;
                buf.extend_from_slice(bytes);
                cur = Some((first, buf, n + 1));
                continue;
            }
            chunks.push((first, buf));
        }
        let mut buf = Vec::with_capacity(bytes.len() * CHUNK_RECORDS.min(records.len()));
        buf.extend_from_slice(bytes);
        cur = Some((*seq, buf, 1));
    }
    if let Some((first, buf, _)) = cur {
        chunks.push((first, buf));
    }
    chunks
}

impl Backend for SledBackend {
    fn commit(&self, records: &[(u64, Vec<u8>)], anchor: Anchor) -> Result<()> {
        let mut batch = sled::Batch::default();
        for (first, chunk) in pack(records) {
            batch.insert(&first.to_be_bytes(), chunk);
        }
        batch.insert(&ANCHOR_KEY, &anchor.encode()[..]);
        self.log.apply_batch(batch)?;
        Ok(())
    }

    fn flush(&self) -> Result<()> {
        self.db.flush()?;
        Ok(())
    }

    fn get(&self, seq: u64) -> Result<Option<RecordBytes>> {
        let Some((first, chunk)) = self.chunk_of(seq)? else {
            return Ok(None);
        };
        // Walk the headers to the record without materialising the others.
        let mut off = 0;
        let mut at = first;
        while off < chunk.len() {
            match crate::codec::stored_len(&chunk[off..]) {
                Some(len) if off + len <= chunk.len() => {
                    if at == seq {
                        return Ok(Some(chunk.subslice(off, len)));
                    }
                    off += len;
                    at += 1;
                }
                _ => break,
            }
        }
        Ok(None)
    }

    fn range(&self, from: u64, to: u64, descending: bool) -> RecordIter<'_> {
        if from > to {
            return Box::new(std::iter::empty());
        }
        let start = match self.chunk_of(from) {
            Ok(Some((first, _))) => first,
            Ok(None) => from,
            Err(e) => return Box::new(std::iter::once(Err(e))),
        };
        let chunks = self.log.range(start.to_be_bytes()..=to.to_be_bytes());
        let expand =
            move |kv: sled::Result<(sled::IVec, sled::IVec)>| -> Vec<Result<(u64, RecordBytes)>> {
                match kv {
                    Ok((k, v)) => match seq_of(&k) {
                        Some(first) => {
                            let mut recs = split_chunk(first, &v);
                            recs.retain(|(s, _)| (from..=to).contains(s));
                            if descending {
                                recs.reverse();
                            }
                            recs.into_iter().map(Ok).collect()
                        }
                        None => Vec::new(),
                    },
                    Err(e) => vec![Err(e.into())],
                }
            };
        if descending {
            Box::new(chunks.rev().flat_map(expand))
        } else {
            Box::new(chunks.flat_map(expand))
        }
    }

    fn anchor(&self) -> Result<Option<Anchor>> {
        Ok(self.log.get(ANCHOR_KEY)?.and_then(|b| Anchor::decode(&b)))
    }

    fn meta_get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.meta.get(key.as_bytes())?.map(|v| v.to_vec()))
    }

    fn meta_put(&self, key: &str, value: &[u8]) -> Result<()> {
        self.meta.insert(key.as_bytes(), value)?;
        Ok(())
    }

    fn meta_keys(&self, prefix: &str) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for kv in self.meta.scan_prefix(prefix.as_bytes()) {
            let (k, _) = kv?;
            if let Ok(s) = std::str::from_utf8(&k) {
                out.push(s.to_owned());
            }
        }
        Ok(out)
    }

    fn raw_put(&self, seq: u64, bytes: Option<&[u8]>) -> Result<()> {
        // Rewrites the chunk holding `seq` with that record replaced or cut out.
        let Some((first, chunk)) = self.chunk_of(seq)? else {
            return Ok(());
        };
        let mut out = Vec::with_capacity(chunk.len());
        for (s, r) in split_chunk(first, &chunk) {
            if s == seq {
                if let Some(b) = bytes {
                    out.extend_from_slice(b);
                }
            } else {
                out.extend_from_slice(&r);
            }
        }
        self.log.insert(first.to_be_bytes(), out)?;
        self.db.flush()?;
        Ok(())
    }

    fn size_on_disk(&self) -> Result<u64> {
        Ok(self.db.size_on_disk()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packing_keeps_runs_of_consecutive_seqs_within_bounds() {
        let recs: Vec<(u64, Vec<u8>)> = (1..=150).map(|s| (s, vec![0u8; 10])).collect();
        let chunks = pack(&recs);
        let firsts: Vec<u64> = chunks.iter().map(|c| c.0).collect();
        assert_eq!(firsts, vec![1, 65, 129]);
        assert_eq!(chunks[2].1.len(), 22 * 10);
        let big: Vec<(u64, Vec<u8>)> = (1..=3).map(|s| (s, vec![0u8; CHUNK_BYTES])).collect();
        assert_eq!(pack(&big).len(), 3);
    }
}
