//! The storage seam: the few operations the log needs from a storage engine.
//!
//! [`SledBackend`] is the embedded default. Everything above this trait (sequence
//! assignment, the integrity chain, indexes, subscriptions) is engine-independent,
//! so a PostgreSQL backend for several bridge nodes sharing one log implements
//! [`Backend`] without changing callers (it would additionally have to take over
//! sequence assignment under a lock; see docs/ARCHITECTURE.md).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::codec::ChainKey;
use crate::error::Result;
use crate::wal::{Recovery, Wal};

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

/// Records with consecutive seqs, back to back in one buffer: what one group
/// commit (or one restore step) hands to [`Backend::commit`]. The writer keeps one
/// and reuses its buffers for every group, so encoding a record allocates nothing.
#[derive(Debug, Default, Clone)]
pub struct RecordBatch {
    first_seq: u64,
    bytes: Vec<u8>,
    /// End offset of each record in `bytes`.
    ends: Vec<usize>,
}

impl RecordBatch {
    /// An empty batch whose first record will have `first_seq`.
    pub fn starting_at(first_seq: u64) -> Self {
        RecordBatch {
            first_seq,
            ..Default::default()
        }
    }

    /// Empties the batch (keeping its buffers); the next record will have
    /// `first_seq`.
    pub fn reset(&mut self, first_seq: u64) {
        self.first_seq = first_seq;
        self.bytes.clear();
        self.ends.clear();
    }

    /// Seq of the first record.
    pub fn first_seq(&self) -> u64 {
        self.first_seq
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether the batch holds no record.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Appends a stored record (it gets the next seq).
    pub fn push(&mut self, record: &[u8]) {
        self.bytes.extend_from_slice(record);
        self.ends.push(self.bytes.len());
    }

    /// Appends one record written by `write` into the shared buffer (it gets the
    /// next seq); returns what `write` returns.
    pub fn push_with<R>(&mut self, write: impl FnOnce(&mut Vec<u8>) -> R) -> R {
        let r = write(&mut self.bytes);
        self.ends.push(self.bytes.len());
        r
    }

    /// Every record's bytes, back to back.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// `(seq, record)` pairs in order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &[u8])> + '_ {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        self.ends
            .iter()
            .zip(starts)
            .enumerate()
            .map(|(i, (&end, start))| (self.first_seq + i as u64, &self.bytes[start..end]))
    }

    /// Record `i`'s end offset in [`bytes`](Self::bytes).
    fn end(&self, i: usize) -> usize {
        self.ends[i]
    }
}

/// An iterator over `(seq, record)` pairs.
pub type RecordIter<'a> = Box<dyn Iterator<Item = Result<(u64, RecordBytes)>> + Send + 'a>;

/// What the event log needs from a storage engine.
pub trait Backend: Send + Sync + 'static {
    /// Writes `records` and the new anchor, all or nothing.
    fn commit(&self, records: &RecordBatch, anchor: Anchor) -> Result<()>;
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
///
/// Once [`enable_wal`](SledBackend::enable_wal) has been called (the store
/// does so on open, in both durability modes), a commit goes to sled as plain
/// inserts plus one frame of the write-ahead log of `crate::wal`, a flush syncs
/// that log instead of flushing sled, and sled is flushed by a background
/// checkpointer.
pub struct SledBackend {
    db: sled::Db,
    log: sled::Tree,
    meta: sled::Tree,
    wal: Option<Arc<Wal>>,
    /// Metadata was written since sled's last flush (it is not in the WAL).
    meta_dirty: AtomicBool,
    checkpointer: Option<Checkpointer>,
}

/// The background thread that flushes sled and recycles the log's files.
struct Checkpointer {
    /// Asks for an early checkpoint; dropping it stops the thread.
    wake: Option<std::sync::mpsc::SyncSender<()>>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Drop for SledBackend {
    fn drop(&mut self) {
        if let Some(mut c) = self.checkpointer.take() {
            drop(c.wake.take());
            if let Some(h) = c.handle.take() {
                let _ = h.join();
            }
        }
        // Leave sled complete so that the next open replays nothing.
        if self.wal.is_some() {
            let _ = self.db.flush();
        }
    }
}

/// Most records packed into one chunk.
pub const CHUNK_RECORDS: usize = 64;
/// A chunk is closed once it holds this many bytes (a larger record gets a chunk
/// of its own).
///
/// Kept small because of how sled writes: it rewrites a whole leaf (up to about
/// 16 keys) each time it consolidates or splits it, and it writes a page larger
/// than a quarter of its 512 KiB segment to a separate blob file. With 64 KiB
/// chunks, the newest leaf went to a new blob file every few groups (file
/// creation and deletion on the writer thread); 16 chunks of 6 KiB stay inline.
/// Measured with `lighthouse-bench store --scenario buffered` (docs/PERFORMANCE.md).
pub const CHUNK_BYTES: usize = 6 << 10;

const ANCHOR_KEY: [u8; 9] = [0xff; 9];

/// How long [`SledBackend::open`] waits for sled's directory lock.
pub const LOCK_WAIT: Duration = Duration::from_secs(2);

impl SledBackend {
    /// Opens (or creates) the database in `dir`. `flush_every_ms` is sled's
    /// background flush interval (`None` disables it).
    ///
    /// sled takes an exclusive lock on the directory, and a database closed by
    /// this process releases it from sled's I/O threads a moment after the last
    /// handle is dropped; so a lock refusal is retried for up to
    /// [`LOCK_WAIT`] before it is returned (another process holding the store
    /// still gets the error, after that wait).
    pub fn open(dir: &Path, cache_bytes: u64, flush_every_ms: Option<u64>) -> Result<Self> {
        let config = sled::Config::new()
            .path(dir)
            .cache_capacity(cache_bytes)
            .flush_every_ms(flush_every_ms);
        let deadline = std::time::Instant::now() + LOCK_WAIT;
        let db = loop {
            match config.open() {
                Err(sled::Error::Io(e))
                    if e.to_string().contains("could not acquire lock")
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(20));
                }
                r => break r?,
            }
        };
        let log = db.open_tree("log")?;
        let meta = db.open_tree("meta")?;
        Ok(SledBackend {
            db,
            log,
            meta,
            wal: None,
            meta_dirty: AtomicBool::new(false),
            checkpointer: None,
        })
    }

    /// Makes commits durable through a write-ahead log in `dir` (the database's
    /// directory) from now on: first replays into sled every record of the log
    /// above sled's anchor that chains under `key`, flushes sled, then starts the
    /// checkpointer. Open sled without a background flush (`flush_every_ms:
    /// None`) and check the key before calling this.
    pub(crate) fn enable_wal(
        &mut self,
        dir: &Path,
        key: &ChainKey,
        checkpoint_every: Duration,
    ) -> Result<Recovery> {
        let wal_dir = dir.join("wal");
        let anchor = self.anchor()?;
        let recovery = crate::wal::recover(&wal_dir, anchor, key, |records, anchor| {
            self.apply(records, anchor)
        })?;
        // Commits in this mode write sled key by key (see `commit`), so a crash
        // can leave chunks of a group whose anchor never made it; sled recovers
        // a prefix of its writes, so such chunks all lie above the anchor.
        // Replayed frames have rewritten theirs; remove the rest.
        let head = self.anchor()?.map_or(0, |a| a.seq);
        let stray: Vec<sled::IVec> = self
            .log
            .range((head + 1).to_be_bytes().to_vec()..ANCHOR_KEY.to_vec())
            .keys()
            .collect::<std::result::Result<_, _>>()?;
        if !stray.is_empty() {
            tracing::info!(
                chunks = stray.len(),
                head,
                "event store: removing chunks of an unacknowledged group above the head"
            );
            let mut batch = sled::Batch::default();
            for k in stray {
                batch.remove(k);
            }
            self.log.apply_batch(batch)?;
        }
        if recovery.replayed > 0 || recovery.torn_tail {
            tracing::info!(
                replayed = recovery.replayed,
                torn_tail = recovery.torn_tail,
                "event store: write-ahead log replayed into sled (a torn tail is a group cut \
                 by the crash before it was acknowledged)"
            );
        }
        self.db.flush()?;
        let wal = Arc::new(Wal::open(&wal_dir)?);
        let (wake, rx) = std::sync::mpsc::sync_channel(1);
        let handle = {
            let (wal, db) = (wal.clone(), self.db.clone());
            std::thread::Builder::new()
                .name("lighthouse-store-checkpoint".into())
                .spawn(move || checkpoint_loop(&wal, &db, &rx, checkpoint_every))?
        };
        self.wal = Some(wal);
        self.checkpointer = Some(Checkpointer {
            wake: Some(wake),
            handle: Some(handle),
        });
        Ok(recovery)
    }

    /// Writes `records` and `anchor` to sled in one atomic batch.
    fn apply(&self, records: &RecordBatch, anchor: Anchor) -> Result<()> {
        let mut batch = sled::Batch::default();
        for (first, range) in pack(records) {
            batch.insert(&first.to_be_bytes(), &records.bytes()[range]);
        }
        batch.insert(&ANCHOR_KEY, &anchor.encode()[..]);
        self.log.apply_batch(batch)?;
        Ok(())
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

/// Splits a batch into chunks: `(first seq, byte range)` of runs of at most
/// [`CHUNK_RECORDS`] records, closed once they reach [`CHUNK_BYTES`].
fn pack(records: &RecordBatch) -> Vec<(u64, std::ops::Range<usize>)> {
    let mut chunks = Vec::new();
    // Index of the current chunk's first record, its first byte, the end of the
    // last record added to it.
    let (mut first, mut start, mut at) = (0usize, 0usize, 0usize);
    for i in 0..records.len() {
        let n = i - first;
        if n > 0 && (n >= CHUNK_RECORDS || at - start >= CHUNK_BYTES) {
            chunks.push((records.first_seq() + first as u64, start..at));
            (first, start) = (i, at);
        }
        at = records.end(i);
    }
    if !records.is_empty() {
        chunks.push((records.first_seq() + first as u64, start..at));
    }
    chunks
}

/// Every `every` or when woken: swap the log's files, flush sled, let the
/// outgoing file be reused. Ends when the backend drops the sender.
fn checkpoint_loop(
    wal: &Wal,
    db: &sled::Db,
    wake: &std::sync::mpsc::Receiver<()>,
    every: Duration,
) {
    use std::sync::mpsc::RecvTimeoutError;
    loop {
        if let Err(RecvTimeoutError::Disconnected) = wake.recv_timeout(every) {
            return;
        }
        match wal.rotate() {
            Ok(None) => {}
            Ok(Some(old)) => match db.flush() {
                Ok(_) => wal.retire(old),
                Err(e) => {
                    tracing::error!(error = %e, "event store checkpoint: sled flush failed; refusing further writes");
                    wal.poison();
                    return;
                }
            },
            Err(e) => {
                tracing::error!(error = %e, "event store checkpoint: write-ahead log failed; refusing further writes");
                return;
            }
        }
    }
}

impl Backend for SledBackend {
    fn commit(&self, records: &RecordBatch, anchor: Anchor) -> Result<()> {
        let Some(wal) = &self.wal else {
            return self.apply(records, anchor);
        };
        // The log makes the group atomic and durable, so sled gets plain inserts
        // (chunks first, the anchor last): sled's `apply_batch` seals and writes
        // its I/O buffer before and after every batch, which costs two writes,
        // two `sync_file_range`s and thread-pool wake-ups per group; inserts fill
        // the buffer and are written when it is full or at the checkpoint.
        // sled first, then the log: a checkpoint may recycle a log file once the
        // sled flush that follows its swap returns, so every frame in it must
        // already be in sled when it is written.
        for (first, range) in pack(records) {
            self.log
                .insert(first.to_be_bytes(), &records.bytes()[range])?;
        }
        self.log.insert(ANCHOR_KEY, &anchor.encode()[..])?;
        let due = wal.append(records)?;
        if due && let Some(wake) = self.checkpointer.as_ref().and_then(|c| c.wake.as_ref()) {
            let _ = wake.try_send(());
        }
        Ok(())
    }

    fn flush(&self) -> Result<()> {
        match &self.wal {
            None => {
                self.db.flush()?;
            }
            Some(wal) => {
                if self.meta_dirty.swap(false, Ordering::AcqRel) {
                    self.db.flush()?;
                }
                wal.sync()?;
            }
        }
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
        self.meta_dirty.store(true, Ordering::Release);
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
        let wal = self.wal.as_ref().map_or(0, |w| w.size_on_disk());
        Ok(self.db.size_on_disk()? + wal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packing_keeps_runs_of_consecutive_seqs_within_bounds() {
        let mut recs = RecordBatch::starting_at(1);
        for _ in 1..=150 {
            recs.push(&[0u8; 10]);
        }
        let chunks = pack(&recs);
        let firsts: Vec<u64> = chunks.iter().map(|c| c.0).collect();
        assert_eq!(firsts, vec![1, 65, 129]);
        assert_eq!(chunks[0].1, 0..640);
        assert_eq!(chunks[2].1.len(), 22 * 10);
        let mut big = RecordBatch::starting_at(7);
        for _ in 0..3 {
            big.push(&vec![0u8; CHUNK_BYTES]);
        }
        let chunks = pack(&big);
        assert_eq!(chunks.len(), 3);
        assert_eq!(chunks[2], (9, 2 * CHUNK_BYTES..3 * CHUNK_BYTES));
    }

    #[test]
    fn a_batch_lists_its_records_with_their_seqs() {
        let mut b = RecordBatch::starting_at(5);
        b.push(b"ab");
        let r = b.push_with(|out| {
            out.extend_from_slice(b"cde");
            7
        });
        assert_eq!(r, 7);
        let got: Vec<(u64, &[u8])> = b.iter().collect();
        assert_eq!(got, vec![(5, &b"ab"[..]), (6, &b"cde"[..])]);
        b.reset(9);
        assert!(b.is_empty());
        assert_eq!(b.iter().count(), 0);
    }
}
