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

use parking_lot::Mutex;

use crate::codec::ChainKey;
use crate::error::{Error, Result};
use crate::segments::{FILE_HEADER_LEN, Fault, Location, Recovery, SegmentLog};

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

    /// Gives back buffer capacity beyond `bytes` (the records are kept).
    pub fn shrink_to(&mut self, bytes: usize) {
        if self.bytes.capacity() > bytes {
            self.bytes.shrink_to(bytes.max(self.bytes.len()));
        }
        let ends = bytes / 64;
        if self.ends.capacity() > ends {
            self.ends.shrink_to(ends.max(self.ends.len()));
        }
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
    ///
    /// On an error, return [`Error::WriteFailed`](crate::Error::WriteFailed)
    /// only when nothing of the batch is stored, nor will be found after a
    /// reopen; any other error is taken as an unknown outcome (the writer
    /// answers [`Error::OutcomeUnknown`](crate::Error::OutcomeUnknown)).
    /// Return [`Error::Poisoned`](crate::Error::Poisoned), writing nothing,
    /// when the backend had [`failed`](Self::failed) before this commit: the
    /// group was decided against a log that may have lost records since, so
    /// none of its answers stands.
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
    /// Removes a metadata value (durable after the next flush).
    fn meta_remove(&self, key: &str) -> Result<()>;
    /// Metadata keys starting with `prefix`.
    fn meta_keys(&self, prefix: &str) -> Result<Vec<String>>;
    /// Removes a record, bypassing the log's rules: only for tests that prove
    /// tampering is detected.
    #[doc(hidden)]
    fn raw_put(&self, seq: u64, bytes: Option<&[u8]>) -> Result<()>;
    /// Bytes used on disk.
    fn size_on_disk(&self) -> Result<u64>;
    /// Makes the engine's own index durable without syncing the records, as
    /// sled does on its own when an I/O buffer fills. Exists only so tests can
    /// reproduce a power loss in buffered mode.
    #[doc(hidden)]
    fn flush_index_unsynced(&self) -> Result<()> {
        Ok(())
    }
    /// Whether a write, sync or checkpoint has failed: the backend refuses
    /// every later commit, and what was written since the last good sync may
    /// be gone from disk (a failed sync cuts it), so nothing is to be decided
    /// from the writer's view of the log any more.
    fn failed(&self) -> bool {
        false
    }
    /// The faults a test can arm in the segment log.
    #[cfg(test)]
    #[allow(private_interfaces)]
    fn faults(&self) -> Option<Arc<crate::segments::Faults>> {
        None
    }
}

/// The log on sled and segment files.
///
/// The records themselves live in append-only segment files
/// (`crate::segments`), written once. sled's tree `log` indexes them by chunk:
/// the key is the big-endian seq of a chunk's first record, the value a
/// 16-byte location (segment, offset, length) of up to [`CHUNK_RECORDS`] records
/// or [`CHUNK_BYTES`] bytes lying back to back (each record carries its own length
/// in its header). The anchor sits in the same tree under a 9-byte key that sorts
/// after every seq. Tree `meta` holds metadata (and, in stores written before
/// snapshots became files, snapshots).
///
/// A commit writes the group's records to the active segment as one frame
/// (synced at once when [`LogMode::sync_each_commit`]), then the chunks'
/// locations and the anchor to sled as plain inserts. sled is flushed by a
/// background checkpointer; on open, frames above sled's anchor are checked
/// against the integrity chain and their locations inserted again
/// (`SegmentLog::open`).
pub struct SledBackend {
    db: sled::Db,
    log: sled::Tree,
    meta: sled::Tree,
    segments: Option<Arc<SegmentLog>>,
    /// Sync every commit's frame before its locations go to sled.
    sync_each_commit: bool,
    /// Held by a commit and by a buffered-mode checkpoint (sync the segment,
    /// then flush sled), so that sled never makes a location durable before the
    /// bytes it points at.
    commit_lock: Arc<Mutex<()>>,
    /// Metadata was written since sled's last flush.
    meta_dirty: AtomicBool,
    checkpointer: Option<Checkpointer>,
}

/// How the segment log is synced.
#[derive(Debug, Clone, Copy)]
pub struct LogMode {
    /// Sync each commit before it returns (durable mode).
    pub sync_each_commit: bool,
    /// How often the checkpointer flushes sled (and, without
    /// `sync_each_commit`, syncs the segment first).
    pub checkpoint_every: Duration,
}

/// The background thread that flushes sled.
struct Checkpointer {
    /// Dropping it stops the thread.
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
        // Leave everything durable so that the next open replays nothing.
        if let Some(segments) = &self.segments
            && segments.sync().is_ok()
        {
            let _ = self.db.flush();
        }
    }
}

/// Most records in one chunk.
pub const CHUNK_RECORDS: usize = 64;
/// A chunk is closed once it holds this many bytes (a larger record gets a chunk
/// of its own). A read of one record reads its whole chunk, so chunks stay
/// small; a group of single appends makes a few of them.
pub const CHUNK_BYTES: usize = 8 << 10;
/// How much a forward range read fetches from a segment at once.
const READ_AHEAD: usize = 256 << 10;

const ANCHOR_KEY: [u8; 9] = [0xff; 9];

/// Key in tree `meta`, buffered mode only: the anchor up to which the segments
/// were synced when it was written (empty: nothing, an empty log).
///
/// In buffered mode a group's locations go to sled before its frame is synced,
/// and sled writes a full I/O buffer on its own, so after a power loss sled can
/// hold locations (and an anchor) past the segment bytes that reached the disk.
/// Those groups were acknowledged under buffered mode's promise (the last
/// `buffered_flush_ms` may be lost); what was synced must not be. The mark is
/// written, under the commit lock, only after a segment sync, so sled (which
/// recovers a prefix of its writes) never holds a mark past synced bytes. On
/// open, recovery starts from the mark instead of sled's anchor: a frame after
/// it that did not reach the disk is a torn tail, cut, and its locations removed;
/// damage before it is damage. Durable mode removes the mark on open (its frames
/// are synced before their locations go to sled).
const SYNCED_KEY: &[u8] = b"log/synced";

/// The folder of a store's directory that holds the segment files.
pub(crate) const SEGMENTS_DIR: &str = "segments";

/// How long [`SledBackend::open`] waits for sled's directory lock.
pub const LOCK_WAIT: Duration = Duration::from_secs(2);

impl SledBackend {
    /// Opens (or creates) the database in `dir`; records cannot be read or
    /// written until [`start_log`](Self::start_log).
    ///
    /// sled takes an exclusive lock on the directory, and a database closed by
    /// this process releases it from sled's I/O threads a moment after the last
    /// handle is dropped; so a lock refusal is retried for up to
    /// [`LOCK_WAIT`] before it is returned (another process holding the store
    /// still gets the error, after that wait).
    pub fn open(dir: &Path, cache_bytes: u64) -> Result<Self> {
        // sled is flushed by the checkpointer, not by its own timer.
        let config = sled::Config::new()
            .path(dir)
            .cache_capacity(cache_bytes)
            .flush_every_ms(None);
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
            segments: None,
            sync_each_commit: false,
            commit_lock: Arc::new(Mutex::new(())),
            meta_dirty: AtomicBool::new(false),
            checkpointer: None,
        })
    }

    /// Opens the segment files in `dir/segments` and brings sled up to date with
    /// them: inserts the locations of every frame above sled's anchor that
    /// chains under `key`, removes locations above the head left by a group whose
    /// anchor never reached sled, flushes sled, then starts the checkpointer.
    /// Check the key before calling this.
    pub(crate) fn start_log(
        &mut self,
        dir: &Path,
        key: &ChainKey,
        mode: LogMode,
    ) -> Result<Recovery> {
        let anchor = self.recovery_base()?;
        let anchor_segment = match anchor {
            Some(a) => self.chunk_of(a.seq)?.map(|(_, loc)| loc.segment),
            None => None,
        };
        let (segments, recovery) = SegmentLog::open(
            &dir.join(SEGMENTS_DIR),
            anchor,
            anchor_segment,
            key,
            |records, anchor, segment, offset| self.index(records, anchor, segment, offset),
        )?;
        // Locations are inserted key by key (see `commit`), so a crash can leave
        // those of a group whose anchor never made it; sled recovers a prefix of
        // its writes, so they all lie above the anchor.
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
            for k in stray {
                self.log.remove(k)?;
            }
        }
        if recovery.replayed > 0 || recovery.torn_tail {
            tracing::info!(
                replayed = recovery.replayed,
                torn_tail = recovery.torn_tail,
                "event store: segment frames above sled's anchor indexed again (a torn tail \
                 is a group cut by the crash before it was acknowledged)"
            );
        }
        // Buffered mode marks the head as synced, after syncing the active
        // segment: frames at or below the recovery base may have been written
        // by a process killed before its next sync (closed segments were
        // synced when they were closed; frames indexed again were synced by
        // `SegmentLog::open`). Durable mode needs no mark, and a stale one
        // from a buffered run must not stay to lower a later recovery's base.
        if mode.sync_each_commit {
            self.meta.remove(SYNCED_KEY)?;
        } else {
            segments.sync_active()?;
            sync_and_mark(&segments, &self.log, &self.meta)?;
        }
        self.db.flush()?;
        let segments = Arc::new(segments);
        let (wake, rx) = std::sync::mpsc::sync_channel(1);
        let handle = {
            let (segments, db, lock) =
                (segments.clone(), self.db.clone(), self.commit_lock.clone());
            let (log, meta) = (self.log.clone(), self.meta.clone());
            let sync_first = !mode.sync_each_commit;
            std::thread::Builder::new()
                .name("lighthouse-store-checkpoint".into())
                .spawn(move || {
                    checkpoint_loop(
                        &segments,
                        (&db, &log, &meta),
                        &lock,
                        sync_first,
                        &rx,
                        mode.checkpoint_every,
                    )
                })?
        };
        self.segments = Some(segments);
        self.sync_each_commit = mode.sync_each_commit;
        self.checkpointer = Some(Checkpointer {
            wake: Some(wake),
            handle: Some(handle),
        });
        Ok(recovery)
    }

    /// Where recovery starts: sled's anchor, or the buffered-mode synced mark
    /// when that is lower (see [`SYNCED_KEY`]); in that case sled's anchor is
    /// set back to the mark first, so that the frames after it are checked and
    /// indexed again and the locations of those that did not reach the disk are
    /// removed as above the head.
    fn recovery_base(&self) -> Result<Option<Anchor>> {
        let anchor = self.anchor()?;
        let Some(mark) = self.meta.get(SYNCED_KEY)? else {
            return Ok(anchor);
        };
        let synced = if mark.is_empty() {
            None
        } else {
            Some(Anchor::decode(&mark).ok_or_else(|| {
                std::io::Error::other("event store: the synced mark is not an anchor")
            })?)
        };
        let seq = |a: Option<Anchor>| a.map_or(0, |a| a.seq);
        if seq(synced) >= seq(anchor) {
            return Ok(anchor);
        }
        tracing::warn!(
            synced = seq(synced),
            indexed = seq(anchor),
            "event store: buffered mode indexed records past the last segment sync; \
             recovering from the sync (records that did not reach the disk are lost, \
             as buffered durability allows)"
        );
        match synced {
            Some(a) => self.log.insert(ANCHOR_KEY, &a.encode()[..])?,
            None => self.log.remove(ANCHOR_KEY)?,
        };
        Ok(synced)
    }

    fn segments(&self) -> Result<&SegmentLog> {
        self.segments
            .as_deref()
            .ok_or_else(|| std::io::Error::other("event store: segment log not started").into())
    }

    /// Inserts the locations of `records`, written to `segment` from `offset`,
    /// then `anchor`.
    fn index(
        &self,
        records: &RecordBatch,
        anchor: Anchor,
        segment: u32,
        offset: u64,
    ) -> Result<()> {
        for (first, range) in pack(records) {
            let loc = Location {
                segment,
                offset: offset + range.start as u64,
                len: range.len() as u32,
            };
            self.log.insert(first.to_be_bytes(), &loc.encode()[..])?;
        }
        self.log.insert(ANCHOR_KEY, &anchor.encode()[..])?;
        Ok(())
    }

    /// The chunk that holds `seq`: its first seq and location.
    fn chunk_of(&self, seq: u64) -> Result<Option<(u64, Location)>> {
        match self.log.range(..=seq.to_be_bytes()).next_back() {
            Some(kv) => {
                let (k, v) = kv?;
                Ok(seq_of(&k).zip(Location::decode(&v)))
            }
            None => Ok(None),
        }
    }

    fn read_chunk(&self, loc: Location) -> Result<sled::IVec> {
        Ok(self
            .segments()?
            .read(loc.segment, loc.offset, loc.len as usize)?
            .into())
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

/// Every `every`: (when `sync_first`, sync the segment and, under the commit
/// lock) flush sled. Ends when the backend drops the sender.
fn checkpoint_loop(
    segments: &SegmentLog,
    (db, log, meta): (&sled::Db, &sled::Tree, &sled::Tree),
    lock: &Mutex<()>,
    sync_first: bool,
    wake: &std::sync::mpsc::Receiver<()>,
    every: Duration,
) {
    use std::sync::mpsc::RecvTimeoutError;
    loop {
        if let Err(RecvTimeoutError::Disconnected) = wake.recv_timeout(every) {
            return;
        }
        // The log is poisoned before the commit lock is let go: a commit that
        // takes the lock after a failed checkpoint is refused, never answered
        // with a frame this process would no longer sync.
        let failed = if sync_first {
            let _g = lock.lock();
            let r = sync_and_mark(segments, log, meta).and_then(|()| Ok(db.flush()?));
            if r.is_err() {
                segments.poison();
            }
            r
        } else {
            let r = db.flush().map_err(crate::error::Error::from);
            if r.is_err() {
                segments.poison();
            }
            r
        };
        if let Err(e) = failed {
            tracing::error!(error = %e, "event store checkpoint failed; refusing further writes");
            return;
        }
    }
}

/// Syncs the segments, then records (not flushed) that they are synced up to
/// sled's current anchor. Call under the commit lock (or before commits start),
/// so that no commit lies between the sync and the anchor read.
fn sync_and_mark(segments: &SegmentLog, log: &sled::Tree, meta: &sled::Tree) -> Result<()> {
    segments.sync()?;
    let anchor = log.get(ANCHOR_KEY)?;
    meta.insert(SYNCED_KEY, anchor.as_deref().unwrap_or(&[]))?;
    Ok(())
}

/// Reads chunks through one read-ahead buffer, so that a range read costs one
/// `pread` per [`READ_AHEAD`] bytes instead of one per chunk.
struct ChunkReader<'a> {
    segments: &'a SegmentLog,
    /// Segment, file offset of the buffer's first byte, the bytes.
    buf: Option<(u32, u64, sled::IVec)>,
}

impl ChunkReader<'_> {
    fn chunk(&mut self, loc: Location, forward: bool) -> Result<sled::IVec> {
        let len = loc.len as usize;
        // Saturating: a location from a damaged index must fail the read, not
        // overflow.
        let end = loc.offset.saturating_add(len as u64);
        if let Some((seg, start, buf)) = &self.buf
            && *seg == loc.segment
            && loc.offset >= *start
            && end <= start + buf.len() as u64
        {
            return Ok(buf.subslice((loc.offset - start) as usize, len));
        }
        let want = READ_AHEAD.max(len);
        // Forward reads fetch what follows the chunk, backward what precedes it.
        let start = if forward {
            loc.offset
        } else {
            end.saturating_sub(want as u64)
                .max(FILE_HEADER_LEN)
                .min(loc.offset)
        };
        let need = (loc.offset - start) as usize + len;
        let bytes: sled::IVec = self
            .segments
            .read_span(loc.segment, start, need, if forward { want } else { need })?
            .into();
        let chunk = bytes.subslice((loc.offset - start) as usize, len);
        self.buf = Some((loc.segment, start, bytes));
        Ok(chunk)
    }
}

impl Backend for SledBackend {
    fn commit(&self, records: &RecordBatch, anchor: Anchor) -> Result<()> {
        let segments = self.segments().map_err(|e| Error::WriteFailed {
            reason: e.to_string(),
        })?;
        let _g = self.commit_lock.lock();
        // Failed before this group (a checkpoint's sync, under this lock):
        // the group was placed against records that may have been cut since.
        // Checked under the lock, a failure cannot come between this check
        // and the append, so a group that passes was placed before it.
        if segments.failed() {
            return Err(Error::Poisoned);
        }
        // The frame first (synced in durable mode), then its locations: sled
        // must never hold a location whose bytes could be lost.
        let written = segments.append(records).and_then(|at| {
            if self.sync_each_commit {
                segments.sync()?;
            }
            Ok(at)
        });
        // A failed write or sync cuts the frame off the segment (or leaves a
        // marker that makes the next open do it): then it is certainly not
        // stored.
        let (segment, offset) = written.map_err(|f| {
            let reason = f.error.to_string();
            if f.undone {
                Error::WriteFailed { reason }
            } else {
                Error::OutcomeUnknown { reason }
            }
        })?;
        // The frame is in the segment (and synced, in durable mode): a reopen
        // may index it again.
        segments
            .fault(Fault::Index)
            .map_err(Error::from)
            .and_then(|()| self.index(records, anchor, segment, offset))
            .map_err(|e| Error::OutcomeUnknown {
                reason: e.to_string(),
            })
    }

    fn flush(&self) -> Result<()> {
        // Before `start_log` there is only metadata to flush.
        if let Some(segments) = &self.segments {
            if self.sync_each_commit {
                segments.sync()?;
            } else {
                // The mark goes to disk with this flush: a mark left behind
                // would make a later recovery re-check, and cut as a torn tail,
                // frames this flush promised were durable.
                let _g = self.commit_lock.lock();
                sync_and_mark(segments, &self.log, &self.meta)?;
                self.meta_dirty.store(true, Ordering::Release);
            }
        }
        if self.meta_dirty.swap(false, Ordering::AcqRel) {
            self.db.flush()?;
        }
        Ok(())
    }

    fn get(&self, seq: u64) -> Result<Option<RecordBytes>> {
        let Some((first, loc)) = self.chunk_of(seq)? else {
            return Ok(None);
        };
        let chunk = self.read_chunk(loc)?;
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
        let segments = match self.segments() {
            Ok(s) => s,
            Err(e) => return Box::new(std::iter::once(Err(e))),
        };
        let start = match self.chunk_of(from) {
            Ok(Some((first, _))) => first,
            Ok(None) => from,
            Err(e) => return Box::new(std::iter::once(Err(e))),
        };
        let chunks = self.log.range(start.to_be_bytes()..=to.to_be_bytes());
        let mut reader = ChunkReader {
            segments,
            buf: None,
        };
        let expand =
            move |kv: sled::Result<(sled::IVec, sled::IVec)>| -> Vec<Result<(u64, RecordBytes)>> {
                let (k, v) = match kv {
                    Ok(kv) => kv,
                    Err(e) => return vec![Err(e.into())],
                };
                let (Some(first), Some(loc)) = (seq_of(&k), Location::decode(&v)) else {
                    return Vec::new();
                };
                match reader.chunk(loc, !descending) {
                    Ok(chunk) => {
                        let mut recs = split_chunk(first, &chunk);
                        recs.retain(|(s, _)| (from..=to).contains(s));
                        if descending {
                            recs.reverse();
                        }
                        recs.into_iter().map(Ok).collect()
                    }
                    Err(e) => vec![Err(e)],
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

    fn meta_remove(&self, key: &str) -> Result<()> {
        if self.meta.remove(key.as_bytes())?.is_some() {
            self.meta_dirty.store(true, Ordering::Release);
        }
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
        // Writes the chunk holding `seq`, with that record replaced or cut out,
        // as a new frame, and points the chunk's key at it. Its seqs are at or
        // below the anchor, so a reopen does not index it again.
        let Some((first, loc)) = self.chunk_of(seq)? else {
            return Ok(());
        };
        let chunk = self.read_chunk(loc)?;
        let mut out = Vec::with_capacity(chunk.len());
        let mut count = 0u32;
        for (s, r) in split_chunk(first, &chunk) {
            match (s == seq, bytes) {
                (true, Some(b)) => out.extend_from_slice(b),
                (true, None) => continue,
                (false, _) => out.extend_from_slice(&r),
            }
            count += 1;
        }
        let _g = self.commit_lock.lock();
        let segments = self.segments()?;
        let loc = if out.is_empty() {
            None
        } else {
            let (segment, offset) = segments.append_raw(first, count, &out)?;
            Some(Location {
                segment,
                offset,
                len: out.len() as u32,
            })
        };
        segments.sync()?;
        match loc {
            Some(loc) => self.log.insert(first.to_be_bytes(), &loc.encode()[..])?,
            None => self.log.remove(first.to_be_bytes())?,
        };
        self.db.flush()?;
        Ok(())
    }

    fn flush_index_unsynced(&self) -> Result<()> {
        self.db.flush()?;
        Ok(())
    }

    fn failed(&self) -> bool {
        self.segments.as_ref().is_some_and(|s| s.failed())
    }

    #[cfg(test)]
    #[allow(private_interfaces)]
    fn faults(&self) -> Option<Arc<crate::segments::Faults>> {
        self.segments.as_ref().map(|s| s.faults())
    }

    fn size_on_disk(&self) -> Result<u64> {
        let segments = self.segments.as_ref().map_or(0, |s| s.size_on_disk());
        Ok(self.db.size_on_disk()? + segments)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_gives_back_what_a_burst_grew_and_keeps_its_records() {
        let mut b = RecordBatch::starting_at(1);
        b.push(&vec![7u8; 32 << 20]);
        b.reset(2);
        b.shrink_to(1 << 20);
        assert!(b.bytes.capacity() <= 1 << 20, "{}", b.bytes.capacity());
        b.push(b"abc");
        b.shrink_to(0);
        assert_eq!(b.bytes(), b"abc", "records are never dropped");
        assert_eq!(b.len(), 1);
    }

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
