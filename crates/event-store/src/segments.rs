//! The log's records on disk: append-only segment files.
//!
//! Records are written once, to these files, and sled holds only a small
//! pointer per chunk of records (key-value separation, as in WiscKey). Keeping
//! the records themselves in sled cost more than everything else an append does:
//! sled appends keys in order to its rightmost leaf, rewrites that leaf every
//! ten updates and again on every split at 17 keys, so each record was copied to
//! disk four to five times (measured: 2,900 bytes written per 450-byte event,
//! docs/EVENT_STORE.md, "Segments"). A pointer is 16 bytes; those rewrites are
//! now of pointers.
//!
//! # Files
//!
//! `segments/<n>` for n = 1, 2, ... (the number in decimal, zero-padded to ten
//! digits). Each starts with a 16-byte header (`LHSEG\0\0\x01`, then the segment
//! number as a little-endian u64); frames follow, one per committed group:
//!
//! ```text
//! offset size field
//!      0    4 payload length (u32 LE, > 0)
//!      4    4 record count   (u32 LE, > 0)
//!      8    8 segment number (u64 LE, the file's)
//!     16    8 first seq      (u64 LE)
//!     24    . records, back to back (format: docs/EVENT_STORE.md)
//! ```
//!
//! The active segment is extended with zeros ahead of the writes, so that a sync
//! is a data sync without a size change to journal; reading stops at a zero
//! frame header. A segment is closed once it holds [`SEGMENT_BYTES`]: it is
//! synced, its zero tail is cut off, and the next number is created and synced
//! with its directory before anything is written to it. Files are never reused
//! or rewritten (except by the tamper hook, which appends).
//!
//! # Invariants
//!
//! - A group's frame is written before sled gets its pointers; in durable mode
//!   the frame is synced first, so a pointer that sled makes durable always points
//!   at durable bytes. In buffered mode the checkpointer syncs the segment and
//!   then flushes sled while holding the commit lock, with the same effect.
//! - So on open, every frame at or below sled's anchor is durable. Frames above
//!   it (acknowledged in durable mode, perhaps only partly written in buffered
//!   mode) are checked against the integrity chain and their pointers inserted, a
//!   frame whole or not at all; the log ends at the first frame that does not
//!   continue the chain, and the active segment is cut there.
//! - A closed segment was synced before the next one was created, so a frame
//!   that does not continue the chain in any segment but the last is damage, not
//!   a crash: open refuses the store rather than drop what follows.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::{Mutex, RwLock};

use crate::backend::{Anchor, RecordBatch};
use crate::codec::{ChainKey, RecordView, stored_len};
use crate::error::{Error, Result};

const FILE_MAGIC: &[u8; 8] = b"LHSEG\0\0\x01";
pub(crate) const FILE_HEADER_LEN: u64 = 16;
const FRAME_HEADER_LEN: usize = 24;
/// The active file grows in steps of at least this (and at most
/// [`MAX_EXTEND`]), zero-filled.
const MIN_EXTEND: u64 = 256 << 10;
/// The committing thread writes the zeros and the next commit's sync writes
/// them to disk, so a step stalls the commits behind it in proportion to its
/// size: 8 MiB steps took 2-4 ms to write and 6-8 ms more in that sync, about
/// once a second at 10,000 round trips/s (docs/PERFORMANCE.md, session 5).
/// Zeros written ahead by another thread (with `O_DIRECT`, so that they are not
/// dirty pages of the active file) were tried and made the common commit
/// slower, the fill's writes competing with the commits' syncs.
const MAX_EXTEND: u64 = 1 << 20;
/// A segment is closed once it holds this many bytes (a frame larger than what
/// is left still goes whole into the segment it starts in).
pub(crate) const SEGMENT_BYTES: u64 = 64 << 20;
static ZEROS: [u8; 64 << 10] = [0u8; 64 << 10];
/// Reads larger than this are checked against the file's size before their
/// buffer is allocated.
const LARGE_READ: usize = 1 << 20;

/// Where a run of consecutive records lies: sled's value for a chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Location {
    pub(crate) segment: u32,
    pub(crate) offset: u64,
    pub(crate) len: u32,
}

impl Location {
    pub(crate) const ENCODED_LEN: usize = 16;

    pub(crate) fn encode(&self) -> [u8; Self::ENCODED_LEN] {
        let mut b = [0u8; Self::ENCODED_LEN];
        b[..4].copy_from_slice(&self.segment.to_le_bytes());
        b[4..12].copy_from_slice(&self.offset.to_le_bytes());
        b[12..].copy_from_slice(&self.len.to_le_bytes());
        b
    }

    pub(crate) fn decode(b: &[u8]) -> Option<Location> {
        if b.len() != Self::ENCODED_LEN {
            return None;
        }
        Some(Location {
            segment: u32::from_le_bytes(b[..4].try_into().ok()?),
            offset: u64::from_le_bytes(b[4..12].try_into().ok()?),
            len: u32::from_le_bytes(b[12..].try_into().ok()?),
        })
    }
}

/// The segment being appended to.
struct Active {
    number: u32,
    file: Arc<File>,
    /// Where the next frame goes.
    len: u64,
    /// Bytes written (frames or zeros) from the start.
    allocated: u64,
    /// A frame was written and not synced yet.
    unsynced: bool,
}

/// The segment files of one store.
pub(crate) struct SegmentLog {
    dir: PathBuf,
    active: Mutex<Active>,
    /// Every segment, for reads.
    files: RwLock<BTreeMap<u32, Arc<File>>>,
    /// Bytes of the closed segments.
    closed_bytes: std::sync::atomic::AtomicU64,
    /// A write or sync failed: every later write fails.
    failed: AtomicBool,
}

/// What [`SegmentLog::open`] found above sled's anchor.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Recovery {
    /// Records whose pointers were inserted again.
    pub(crate) replayed: u64,
    /// The last segment ended with bytes that were not a whole frame continuing
    /// the chain (a write cut by the crash); they were cut off.
    pub(crate) torn_tail: bool,
    /// The last segment is damaged before the end of what sled had indexed
    /// (media damage, not a torn write): nothing was cut, and the store opens
    /// refusing appends at this position (`damaged_on_open`).
    pub(crate) damaged_at: Option<u64>,
}

fn io_err(msg: impl Into<String>) -> std::io::Error {
    std::io::Error::other(msg.into())
}

fn file_name(n: u32) -> String {
    format!("{n:010}")
}

impl SegmentLog {
    /// Opens the segments in `dir` (creating the first), and brings sled up to
    /// date: every frame above `anchor` that continues the chain under `key` is
    /// handed to `apply` (its records, the new anchor, the segment and the offset
    /// of its first record), frame by frame. `anchor_segment` is the segment
    /// holding the anchor's record, where the scan starts (the first segment when
    /// `None`). Check the key before calling this: with a wrong key nothing
    /// chains and the frames above the anchor would be cut off.
    pub(crate) fn open(
        dir: &Path,
        anchor: Option<Anchor>,
        anchor_segment: Option<u32>,
        key: &ChainKey,
        mut apply: impl FnMut(&RecordBatch, Anchor, u32, u64) -> Result<()>,
    ) -> Result<(SegmentLog, Recovery)> {
        crate::private::create_dir(dir)?;
        let mut numbers = list(dir)?;
        let mut head = anchor.unwrap_or(Anchor {
            seq: 0,
            mac: crate::codec::GENESIS,
        });
        let mut out = Recovery::default();
        // Frames up to sled's anchor were acknowledged and indexed: damage
        // before the anchor is reached is never a torn tail to cut.
        let anchor_seq = head.seq;
        let mut reached_anchor = anchor_seq == 0;
        // Segments whose frames were indexed again: synced before sled is
        // flushed with their locations (they may be in the page cache only).
        let mut replayed_in = Vec::new();
        // Where the last segment's valid frames end.
        let mut end_of_last = FILE_HEADER_LEN;
        let start = anchor_segment.unwrap_or(0);
        // A last file without a whole header was being created by the crash.
        if let Some(&last) = numbers.last() {
            let path = dir.join(file_name(last));
            if std::fs::metadata(&path)?.len() < FILE_HEADER_LEN {
                std::fs::remove_file(&path)?;
                numbers.pop();
            }
        }
        for (i, &n) in numbers.iter().enumerate() {
            let is_last = i + 1 == numbers.len();
            if n < start && !is_last {
                continue;
            }
            let bytes = std::fs::read(dir.join(file_name(n)))?;
            if bytes.len() < FILE_HEADER_LEN as usize
                || &bytes[..8] != FILE_MAGIC
                || u64::from_le_bytes(bytes[8..16].try_into().unwrap_or_default()) != u64::from(n)
            {
                return Err(damaged(n, 0, head.seq + 1));
            }
            let mut at = FILE_HEADER_LEN as usize;
            let mut torn = false;
            while let Some(frame) = read_frame(&bytes, at, n) {
                let Some(frame) = frame else {
                    torn = true;
                    break;
                };
                // The frame header's first seq is checked against its first
                // record: trusted alone, a damaged header could make an
                // acknowledged frame look indexed already and be skipped. The
                // record's seq is taken only when the frame then continues the
                // chain (a damaged record seq must not override a good header).
                let mut frame = frame;
                if n >= start
                    && let Some(first) = first_seq_of(frame.payload)
                    && first != frame.first_seq
                {
                    let by_record = Frame {
                        first_seq: first,
                        ..frame
                    };
                    let continues = first.saturating_add(u64::from(frame.count) - 1) > head.seq
                        && check_frame(&by_record, head, key).is_some();
                    tracing::warn!(
                        segment = n,
                        offset = at,
                        header = frame.first_seq,
                        record = first,
                        continues,
                        "event store: a frame header names another first seq than its record"
                    );
                    if continues {
                        frame = by_record;
                    }
                }
                let last = frame.first_seq.saturating_add(u64::from(frame.count) - 1);
                if n >= start && last > head.seq {
                    match check_frame(&frame, head, key) {
                        Some((batch, next, skip)) => {
                            apply(&batch, next, n, frame.payload_at + skip as u64)?;
                            out.replayed += batch.len() as u64;
                            head = next;
                            reached_anchor = true;
                            if replayed_in.last() != Some(&n) {
                                replayed_in.push(n);
                            }
                        }
                        None => {
                            torn = true;
                            break;
                        }
                    }
                } else if n >= start {
                    reached_anchor |= last >= anchor_seq;
                }
                at = frame.payload_at as usize + frame.payload.len();
            }
            if torn {
                if !is_last {
                    return Err(damaged(n, at as u64, head.seq + 1));
                }
                if !reached_anchor {
                    // Damage among frames sled had indexed: never a torn write.
                    // Nothing is cut (the records after it stay readable through
                    // their locations, and the evidence stays for a restore);
                    // the store opens refusing appends.
                    tracing::error!(
                        segment = n,
                        offset = at,
                        "event store: the last segment is damaged before the last indexed \
                         record; left as it is, appends refused; run verify, restore from a backup"
                    );
                    out.damaged_at = Some(head.seq + 1);
                    end_of_last = std::fs::metadata(dir.join(file_name(n)))?.len();
                    continue;
                }
                // Cut the torn tail so that the next frame follows the last good one.
                out.torn_tail = true;
                let f = OpenOptions::new()
                    .write(true)
                    .open(dir.join(file_name(n)))?;
                f.set_len(at as u64)?;
                f.sync_all()?;
            }
            if is_last {
                end_of_last = at as u64;
            }
        }
        // The last segment stays active unless it is full.
        let (number, len) = match numbers.last() {
            Some(&n) if end_of_last < SEGMENT_BYTES => (n, end_of_last),
            Some(&n) => (n + 1, FILE_HEADER_LEN),
            None => (1, FILE_HEADER_LEN),
        };
        for &n in &replayed_in {
            File::open(dir.join(file_name(n)))?.sync_all()?;
        }
        if numbers.last() != Some(&number) {
            create_segment(dir, number)?;
            numbers.push(number);
        }
        let mut files = BTreeMap::new();
        let mut closed = 0;
        for &n in &numbers {
            let file = OpenOptions::new()
                .read(true)
                .write(n == number)
                .open(dir.join(file_name(n)))?;
            if n != number {
                closed += file.metadata()?.len();
            }
            files.insert(n, Arc::new(file));
        }
        let file = files
            .get(&number)
            .cloned()
            .ok_or_else(|| io_err("segments: no active file"))?;
        let allocated = file.metadata()?.len();
        let log = SegmentLog {
            dir: dir.to_path_buf(),
            active: Mutex::new(Active {
                number,
                file,
                len,
                allocated,
                unsynced: false,
            }),
            files: RwLock::new(files),
            closed_bytes: closed.into(),
            failed: AtomicBool::new(false),
        };
        Ok((log, out))
    }

    fn check(&self) -> std::io::Result<()> {
        if self.failed.load(Ordering::Acquire) {
            return Err(io_err("segment log failed earlier"));
        }
        Ok(())
    }

    fn fail<T>(&self, r: std::io::Result<T>) -> std::io::Result<T> {
        if r.is_err() {
            self.failed.store(true, Ordering::Release);
        }
        r
    }

    /// Writes `records` as one frame (not synced); returns the segment and the
    /// offset of its first record.
    pub(crate) fn append(&self, records: &RecordBatch) -> std::io::Result<(u32, u64)> {
        let count = u32::try_from(records.len()).map_err(|_| io_err("frame too large"))?;
        self.append_raw(records.first_seq(), count, records.bytes())
    }

    /// Writes a frame of `count` records starting at `first_seq`, given as bytes.
    pub(crate) fn append_raw(
        &self,
        first_seq: u64,
        count: u32,
        payload: &[u8],
    ) -> std::io::Result<(u32, u64)> {
        self.check()?;
        if count == 0 || payload.is_empty() {
            return Err(io_err("empty frame"));
        }
        let len = u32::try_from(payload.len()).map_err(|_| io_err("frame too large"))?;
        let mut a = self.active.lock();
        if a.len > FILE_HEADER_LEN
            && a.len + FRAME_HEADER_LEN as u64 + payload.len() as u64 > SEGMENT_BYTES
        {
            let r = self.rotate(&mut a);
            self.fail(r)?;
        }
        let mut header = [0u8; FRAME_HEADER_LEN];
        header[0..4].copy_from_slice(&len.to_le_bytes());
        header[4..8].copy_from_slice(&count.to_le_bytes());
        header[8..16].copy_from_slice(&u64::from(a.number).to_le_bytes());
        header[16..24].copy_from_slice(&first_seq.to_le_bytes());
        let at = a.len;
        let end = at + (FRAME_HEADER_LEN + payload.len()) as u64;
        let r = (|| {
            if end > a.allocated {
                extend(&mut a, end)?;
            }
            a.file.write_all_at(&header, at)?;
            a.file.write_all_at(payload, at + FRAME_HEADER_LEN as u64)
        })();
        self.fail(r)?;
        a.len = end;
        a.unsynced = true;
        Ok((a.number, at + FRAME_HEADER_LEN as u64))
    }

    /// Closes the full active segment and starts the next one.
    fn rotate(&self, a: &mut Active) -> std::io::Result<()> {
        a.file.set_len(a.len)?;
        a.file.sync_all()?;
        let next = a.number + 1;
        create_segment(&self.dir, next)?;
        let file = Arc::new(
            OpenOptions::new()
                .read(true)
                .write(true)
                .open(self.dir.join(file_name(next)))?,
        );
        self.files.write().insert(next, file.clone());
        self.closed_bytes.fetch_add(a.len, Ordering::Relaxed);
        *a = Active {
            number: next,
            file,
            len: FILE_HEADER_LEN,
            allocated: FILE_HEADER_LEN,
            unsynced: false,
        };
        Ok(())
    }

    /// Makes every written frame durable.
    pub(crate) fn sync(&self) -> std::io::Result<()> {
        self.check()?;
        let mut a = self.active.lock();
        if a.unsynced {
            let r = a.file.sync_data();
            self.fail(r)?;
            a.unsynced = false;
        }
        Ok(())
    }

    /// Syncs the active file whether or not this process wrote to it: what a
    /// previous process wrote (and was killed before syncing) may still be in
    /// the page cache only.
    pub(crate) fn sync_active(&self) -> std::io::Result<()> {
        self.check()?;
        let mut a = self.active.lock();
        let r = a.file.sync_data();
        self.fail(r)?;
        a.unsynced = false;
        Ok(())
    }

    /// Marks the log failed (a checkpoint failed).
    pub(crate) fn poison(&self) {
        self.failed.store(true, Ordering::Release);
    }

    /// Reads `len` bytes at `offset` of `segment`.
    pub(crate) fn read(&self, segment: u32, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
        self.read_span(segment, offset, len, len)
    }

    /// Reads at least `need` and up to `want` bytes at `offset` of `segment`
    /// (fewer than `want` where the file ends).
    pub(crate) fn read_span(
        &self,
        segment: u32,
        offset: u64,
        need: usize,
        want: usize,
    ) -> std::io::Result<Vec<u8>> {
        let file = self
            .files
            .read()
            .get(&segment)
            .cloned()
            .ok_or_else(|| io_err(format!("segment {segment} does not exist")))?;
        let end = offset.saturating_add(need as u64);
        let short = || {
            std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("segment {segment} ends before offset {end}"),
            )
        };
        let mut want = want.max(need);
        // A location read back from a damaged index could ask for gigabytes:
        // a large read is first checked against the file's size.
        if want > LARGE_READ {
            let size = file.metadata()?.len();
            if end > size {
                return Err(short());
            }
            want = want.min((size - offset) as usize);
        }
        let mut buf = vec![0u8; want];
        let mut got = 0;
        while got < buf.len() {
            match file.read_at(&mut buf[got..], offset + got as u64) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if got < need {
            return Err(short());
        }
        buf.truncate(got);
        Ok(buf)
    }

    /// Bytes of every segment file.
    pub(crate) fn size_on_disk(&self) -> u64 {
        self.closed_bytes.load(Ordering::Relaxed) + self.active.lock().allocated
    }
}

fn damaged(segment: u32, offset: u64, seq: u64) -> Error {
    Error::Corrupt {
        seq,
        reason: format!(
            "segment {segment} is damaged at offset {offset} (not a crash: closed segments \
             are synced before the next is created); restore from a backup"
        ),
    }
}

/// The seq of the first record in a frame's payload.
fn first_seq_of(payload: &[u8]) -> Option<u64> {
    let len = stored_len(payload)?;
    RecordView::parse(payload.get(..len)?).ok().map(|v| v.seq)
}

/// Segment numbers in `dir`, ascending.
fn list(dir: &Path) -> std::io::Result<Vec<u32>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        if let Some(n) = name.to_str().and_then(|s| s.parse::<u32>().ok()) {
            out.push(n);
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// Creates segment `n` (mode 0600, `crate::private`) with its header and
/// makes it and its name durable.
fn create_segment(dir: &Path, n: u32) -> std::io::Result<()> {
    let file = crate::private::file_options()
        .write(true)
        .create_new(true)
        .open(dir.join(file_name(n)))?;
    let mut h = [0u8; FILE_HEADER_LEN as usize];
    h[..8].copy_from_slice(FILE_MAGIC);
    h[8..].copy_from_slice(&u64::from(n).to_le_bytes());
    file.write_all_at(&h, 0)?;
    file.sync_all()?;
    File::open(dir)?.sync_all()
}

/// Zero-fills the active file from its allocated end to at least `end`.
fn extend(a: &mut Active, end: u64) -> std::io::Result<()> {
    let step = a.allocated.clamp(MIN_EXTEND, MAX_EXTEND);
    let target = end.max(a.allocated + step);
    let mut at = a.allocated;
    while at < target {
        let n = ((target - at) as usize).min(ZEROS.len());
        a.file.write_all_at(&ZEROS[..n], at)?;
        at += n as u64;
    }
    a.allocated = target;
    Ok(())
}

/// A frame read back.
struct Frame<'a> {
    first_seq: u64,
    count: u32,
    /// File offset of its first record.
    payload_at: u64,
    payload: &'a [u8],
}

/// The frame at `at` of segment `n`'s bytes: `None` at the end of the data (the
/// end of the file or the zero fill), `Some(None)` for bytes that are not a whole
/// frame of this segment.
fn read_frame(bytes: &[u8], at: usize, n: u32) -> Option<Option<Frame<'_>>> {
    let h = bytes.get(at..at + FRAME_HEADER_LEN)?;
    if h.iter().all(|&b| b == 0) {
        return None;
    }
    let word = |r: std::ops::Range<usize>| -> u64 {
        let mut b = [0u8; 8];
        b[..r.len()].copy_from_slice(&h[r]);
        u64::from_le_bytes(b)
    };
    let (len, count, segment, first_seq) = (
        word(0..4) as usize,
        word(4..8) as u32,
        word(8..16),
        word(16..24),
    );
    let body = at + FRAME_HEADER_LEN;
    if len == 0
        || count == 0
        || first_seq == 0
        || segment != u64::from(n)
        || body + len > bytes.len()
    {
        return Some(None);
    }
    Some(Some(Frame {
        first_seq,
        count,
        payload_at: body as u64,
        payload: &bytes[body..body + len],
    }))
}

/// The records of `frame` above `head`, if they are whole and continue the seqs
/// and the chain from `head`'s MAC; with the new head and the offset of the first
/// of them in the payload.
fn check_frame(
    frame: &Frame<'_>,
    head: Anchor,
    key: &ChainKey,
) -> Option<(RecordBatch, Anchor, usize)> {
    let mut batch = RecordBatch::starting_at(head.seq + 1);
    let mut prev = head;
    let mut off = 0;
    let mut skip = None;
    let mut seq = frame.first_seq;
    let mut n = 0u32;
    while off < frame.payload.len() {
        let len = stored_len(&frame.payload[off..])?;
        let rec = frame.payload.get(off..off + len)?;
        if seq > head.seq {
            let v = RecordView::parse(rec).ok()?;
            if !v.follows(key, prev.seq + 1, &prev.mac) {
                return None;
            }
            skip.get_or_insert(off);
            batch.push(rec);
            prev = Anchor {
                seq: v.seq,
                mac: *v.mac,
            };
        }
        off += len;
        n += 1;
        seq += 1;
    }
    (n == frame.count && !batch.is_empty()).then_some((batch, prev, skip.unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Timestamp;
    use crate::codec::{GENESIS, Prepared};
    use crate::model::NewEvent;

    fn records(key: &ChainKey, prev: &mut Anchor, n: usize) -> RecordBatch {
        records_with(key, prev, n, |seq| serde_json::json!({ "n": seq }))
    }

    /// `n` records chaining from `prev` (advanced to the last), each with the
    /// data `data(seq of the previous record)`.
    fn records_with(
        key: &ChainKey,
        prev: &mut Anchor,
        n: usize,
        data: impl Fn(u64) -> serde_json::Value,
    ) -> RecordBatch {
        let mut b = RecordBatch::starting_at(prev.seq + 1);
        for _ in 0..n {
            let p = Prepared::new(NewEvent::new("s-1", "t", data(prev.seq))).unwrap();
            let seq = prev.seq + 1;
            let id = format!("id-{seq}");
            let mac = b.push_with(|out| {
                p.finish_into(
                    out,
                    key,
                    &prev.mac,
                    seq,
                    seq - 1,
                    Timestamp::from_unix_millis(1),
                    &id,
                )
            });
            *prev = Anchor { seq, mac };
        }
        b
    }

    const GENESIS_HEAD: Anchor = Anchor {
        seq: 0,
        mac: GENESIS,
    };

    /// Opens the log in `dir` over `anchor`; returns it, what was recovered and
    /// the seqs handed to `apply`.
    fn open(
        dir: &Path,
        anchor: Option<Anchor>,
        segment: Option<u32>,
        key: &ChainKey,
    ) -> (SegmentLog, Recovery, Vec<u64>) {
        let mut seqs = Vec::new();
        let (log, r) = SegmentLog::open(dir, anchor, segment, key, |b, a, seg, off| {
            assert_eq!(b.iter().last().map(|(s, _)| s), Some(a.seq));
            assert!(seg >= 1 && off >= FILE_HEADER_LEN);
            seqs.extend(b.iter().map(|(s, _)| s));
            Ok(())
        })
        .unwrap();
        (log, r, seqs)
    }

    /// A new log in a temporary directory, its key and the empty head.
    fn fresh() -> (tempfile::TempDir, ChainKey, SegmentLog, Anchor) {
        let dir = tempfile::tempdir().unwrap();
        let key = ChainKey::new(b"k");
        let (log, _, seqs) = open(dir.path(), None, None, &key);
        assert!(seqs.is_empty());
        (dir, key, log, GENESIS_HEAD)
    }

    /// Writes a frame of 2 records and one of 4, syncs and closes the log;
    /// returns the head after the first frame. Segment 1 holds both.
    fn two_frames(log: SegmentLog, key: &ChainKey, head: &mut Anchor) -> Anchor {
        log.append(&records(key, head, 2)).unwrap();
        let after_two = *head;
        log.append(&records(key, head, 4)).unwrap();
        log.sync().unwrap();
        after_two
    }

    #[test]
    fn frames_beyond_the_anchor_are_replayed_in_order_and_readable() {
        let (dir, key, log, mut head) = fresh();
        let mut anchors = Vec::new();
        let mut places = Vec::new();
        for n in [3, 1, 5] {
            let b = records(&key, &mut head, n);
            let (seg, off) = log.append(&b).unwrap();
            log.sync().unwrap();
            assert_eq!(log.read(seg, off, b.bytes().len()).unwrap(), b.bytes());
            // A length from a damaged index fails before its buffer is allocated.
            assert!(log.read(seg, off, usize::MAX / 2).is_err());
            anchors.push(head);
            places.push(seg);
        }
        drop(log);
        let (_, r, seqs) = open(dir.path(), None, None, &key);
        assert_eq!(r.replayed, 9);
        assert!(!r.torn_tail);
        assert_eq!(seqs, (1..=9).collect::<Vec<_>>());
        // sled already holds the first two frames.
        let (_, r, seqs) = open(dir.path(), Some(anchors[1]), Some(places[1]), &key);
        assert_eq!((r.replayed, seqs), (5, (5..=9).collect::<Vec<_>>()));
    }

    /// File offset of the second frame's header in segment 1 of `two_frames`.
    fn second_frame_at(bytes: &[u8]) -> usize {
        let first = FILE_HEADER_LEN as usize;
        let len = u32::from_le_bytes(bytes[first..first + 4].try_into().unwrap()) as usize;
        first + FRAME_HEADER_LEN + len
    }

    #[test]
    fn a_frame_header_naming_another_first_seq_is_read_by_its_records() {
        let (dir, key, log, mut head) = fresh();
        two_frames(log, &key, &mut head);
        let path = dir.path().join(file_name(1));
        let mut bytes = std::fs::read(&path).unwrap();
        // The second frame (seqs 3 to 6) claims to start at 1: trusted, it
        // would look indexed already, be skipped, and the tail be cut.
        let at = second_frame_at(&bytes);
        bytes[at + 16..at + 24].copy_from_slice(&1u64.to_le_bytes());
        std::fs::write(&path, &bytes).unwrap();
        let (_, r, seqs) = open(dir.path(), None, None, &key);
        assert_eq!(seqs, (1..=6).collect::<Vec<_>>());
        assert!(!r.torn_tail && r.damaged_at.is_none());
    }

    #[test]
    fn a_damaged_record_seq_does_not_override_a_good_header() {
        let (dir, key, log, mut head) = fresh();
        two_frames(log, &key, &mut head);
        let path = dir.path().join(file_name(1));
        let mut bytes = std::fs::read(&path).unwrap();
        let len_before = bytes.len();
        // The seq (bytes 1..9 of a record) of the second frame's first record
        // says 40; its header (3) is right, and sled has indexed it.
        let rec = second_frame_at(&bytes) + FRAME_HEADER_LEN;
        bytes[rec + 1..rec + 9].copy_from_slice(&40u64.to_le_bytes());
        std::fs::write(&path, &bytes).unwrap();
        let (_, r, seqs) = open(dir.path(), Some(head), Some(1), &key);
        // Skipped as indexed (the store's read of that record reports it),
        // nothing replayed, nothing cut.
        assert!(seqs.is_empty());
        assert_eq!((r.torn_tail, r.damaged_at), (false, None));
        assert_eq!(std::fs::metadata(&path).unwrap().len() as usize, len_before);
    }

    #[test]
    fn damage_before_the_anchor_is_not_cut_as_a_torn_tail() {
        let (dir, key, log, mut head) = fresh();
        two_frames(log, &key, &mut head);
        let path = dir.path().join(file_name(1));
        let mut bytes = std::fs::read(&path).unwrap();
        let len_before = bytes.len();
        // The second frame's length is damaged; sled's anchor (6) is past it.
        let at = second_frame_at(&bytes);
        bytes[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        std::fs::write(&path, &bytes).unwrap();
        let (log, r, seqs) = open(dir.path(), Some(head), Some(1), &key);
        assert!(seqs.is_empty());
        assert_eq!((r.torn_tail, r.damaged_at), (false, Some(7)));
        // Nothing was cut: the acknowledged records are still there to read
        // or restore.
        assert_eq!(std::fs::metadata(&path).unwrap().len() as usize, len_before);
        assert!(log.read(1, (at + FRAME_HEADER_LEN) as u64, 10).is_ok());
    }

    #[test]
    fn a_torn_last_frame_is_cut_off_whole() {
        let (dir, key, log, mut head) = fresh();
        let after_two = two_frames(log, &key, &mut head);
        let path = dir.path().join(file_name(1));
        // Flip a byte in the last record of the second frame.
        let mut bytes = std::fs::read(&path).unwrap();
        let end = bytes.iter().rposition(|&b| b != 0).unwrap();
        bytes[end - 40] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let (log, r, seqs) = open(dir.path(), None, None, &key);
        assert_eq!(seqs, vec![1, 2]);
        assert!(r.torn_tail);
        // The next frame follows the last good one, and a reopen finds both.
        let mut head = after_two;
        log.append(&records(&key, &mut head, 1)).unwrap();
        log.sync().unwrap();
        drop(log);
        let (_, r, seqs) = open(dir.path(), None, None, &key);
        assert_eq!(seqs, vec![1, 2, 3]);
        assert!(!r.torn_tail);
    }

    #[test]
    fn a_cut_frame_is_dropped_and_damage_in_a_closed_segment_refuses_the_open() {
        let (dir, key, log, mut head) = fresh();
        two_frames(log, &key, &mut head);
        let path = dir.path().join(file_name(1));
        let bytes = std::fs::read(&path).unwrap();
        let end = bytes.iter().rposition(|&b| b != 0).unwrap();
        std::fs::write(&path, &bytes[..end - 100]).unwrap();
        let (log, r, seqs) = open(dir.path(), None, None, &key);
        assert_eq!(seqs, vec![1, 2]);
        assert!(r.torn_tail);
        // Close segment 1 by hand and damage it: open refuses.
        drop(log);
        create_segment(dir.path(), 2).unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let r = SegmentLog::open(dir.path(), None, None, &key, |_, _, _, _| Ok(()));
        assert!(matches!(r, Err(Error::Corrupt { .. })), "{:?}", r.err());
    }

    #[test]
    fn a_full_segment_is_closed_and_the_next_one_continues_the_log() {
        let (dir, key, log, mut head) = fresh();
        // Frames of ~1 MiB: the 64th or so goes to segment 2.
        let big = "x".repeat(1 << 20);
        let mut last_seg = 1;
        while last_seg == 1 {
            let b = records_with(&key, &mut head, 1, |_| serde_json::json!({ "p": big }));
            let (seg, off) = log.append(&b).unwrap();
            assert_eq!(log.read(seg, off, b.bytes().len()).unwrap(), b.bytes());
            last_seg = seg;
        }
        log.sync().unwrap();
        assert!(
            std::fs::metadata(dir.path().join(file_name(1)))
                .unwrap()
                .len()
                <= SEGMENT_BYTES
        );
        drop(log);
        let (_, r, seqs) = open(dir.path(), None, None, &key);
        assert_eq!(r.replayed, head.seq);
        assert_eq!(seqs.len() as u64, head.seq);
        // From an anchor in segment 2, only its later frames are replayed.
        let (_, r, _) = open(dir.path(), Some(head), Some(2), &key);
        assert_eq!(r.replayed, 0);
    }
}
