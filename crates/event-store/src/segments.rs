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
//! - A failed write or sync is not forgotten by a restart. After a failed
//!   `fsync` Linux may keep the unwritten pages in its cache, marked clean: a
//!   later open would read them back, find that they chain, and take them for
//!   durable. So before the failure is answered, the active segment is cut
//!   back (and synced) to where its data is known to be on disk; if that fails
//!   too, a small synced marker file, `FAILED`, names the segment and offset,
//!   and the next open cuts the log there before anything else (it never cuts
//!   records sled has indexed) and then removes the marker.

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
/// The failure marker in the segments folder: left by a failed write or sync
/// whose bytes could not be cut off the active segment (see the module docs).
/// `FAILED_MAGIC`, then the segment number and the offset where the log ends
/// (u64 LE each). Written as `FAILED.partial`, synced and renamed, so a marker
/// under its name is always whole.
const FAILED: &str = "FAILED";
const FAILED_PARTIAL: &str = "FAILED.partial";
const FAILED_MAGIC: &[u8; 8] = b"LHFAIL\0\x01";
const FAILED_LEN: usize = 24;
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
    /// Where the data known to be on disk ends: a failed sync cuts the file
    /// back to here.
    synced: u64,
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
    #[cfg(test)]
    faults: Arc<Faults>,
}

/// A failed append or sync of the segment log.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) error: std::io::Error,
    /// No later open will find what the failed call was writing (for a sync:
    /// anything written since the last successful sync): it wrote nothing,
    /// or the segment was cut back durably, or the `FAILED` marker says
    /// where the next open cuts it. When false, those bytes may or may not
    /// be found by the next open.
    pub(crate) undone: bool,
}

impl Failure {
    /// A failure before anything was written.
    fn nothing_written(error: std::io::Error) -> Failure {
        Failure {
            error,
            undone: true,
        }
    }
}

impl From<Failure> for std::io::Error {
    fn from(f: Failure) -> Self {
        f.error
    }
}

impl From<Failure> for Error {
    fn from(f: Failure) -> Self {
        Error::Io(f.error)
    }
}

/// A failure tests can inject into the segment log (`Faults`); without
/// `cfg(test)` nothing is ever injected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    /// The next sync of the active segment fails without syncing (its bytes
    /// stay in the file, as a failed writeback leaves them in the page cache).
    Sync,
    /// The next frame write writes the frame's header, then fails.
    Write,
    /// Cutting the active segment back after a failure fails.
    Cut,
    /// The next zero-fill extending the active segment fails (before the
    /// frame that needed it is written).
    Extend,
    /// Writing the `FAILED` marker fails.
    Marker,
    /// The backend's next insert of a group's locations into sled fails
    /// (checked by the backend, after the frame is written and synced).
    Index,
}

/// Armed faults of one segment log, each fired once.
#[cfg(test)]
#[derive(Debug, Default)]
pub(crate) struct Faults(Mutex<Vec<Fault>>);

#[cfg(test)]
impl Faults {
    /// Makes the next occasion of `fault` fail.
    pub(crate) fn arm(&self, fault: Fault) {
        self.0.lock().push(fault);
    }

    fn fire(&self, fault: Fault) -> bool {
        let mut armed = self.0.lock();
        match armed.iter().position(|&f| f == fault) {
            Some(i) => {
                armed.remove(i);
                true
            }
            None => false,
        }
    }
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
    ///
    /// A `FAILED` marker left by a failed write or sync is honoured first: in
    /// its segment, the first frame that ends past its offset and holds
    /// records above the anchor (sled has not indexed them) ends the log, and
    /// is cut off with everything after it, as a torn tail is. Records sled
    /// has indexed are never cut for a marker (they were on disk before sled
    /// heard of them); a marker past the data cuts nothing. The marker is
    /// removed once the cut is synced. The folder is synced on every open
    /// (marker or not) before anything is appended.
    pub(crate) fn open(
        dir: &Path,
        anchor: Option<Anchor>,
        anchor_segment: Option<u32>,
        key: &ChainKey,
        mut apply: impl FnMut(&RecordBatch, Anchor, u32, u64) -> Result<()>,
    ) -> Result<(SegmentLog, Recovery)> {
        crate::private::create_dir(dir)?;
        let marker = read_marker(dir, anchor.map_or(1, |a| a.seq + 1))?;
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
            // Where a failed write or sync ended this segment's data.
            let failed_at = marker
                .filter(|&(segment, _)| segment == n)
                .map(|(_, off)| off);
            let mut at_marker = false;
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
                let end = frame.payload_at + frame.payload.len() as u64;
                if n >= start && last > head.seq && failed_at.is_some_and(|off| end > off) {
                    // Written by the failed write, or not known to be on disk
                    // when a sync failed: the log ends before it.
                    at_marker = true;
                    torn = true;
                    break;
                }
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
                if at_marker {
                    tracing::warn!(
                        segment = n,
                        offset = at,
                        "event store: cutting the log where a failed write or sync left it \
                         (segments/{FAILED}); what followed was never acknowledged as durable"
                    );
                }
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
        // The cut it asked for is on disk (or there was nothing to cut): a
        // marker left in place would cut records appended from now on.
        if marker.is_some() {
            std::fs::remove_file(dir.join(FAILED))?;
        }
        // Synced on every open, marker or not, before anything is appended:
        // an earlier open may have removed the marker and then failed to
        // sync the folder, and a power loss could bring the marker back to
        // cut frames acknowledged since.
        sync_dir(dir)?;
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
                // The caller syncs what an earlier process may have left
                // unsynced before anything is appended (`sync_active`).
                synced: len,
            }),
            files: RwLock::new(files),
            closed_bytes: closed.into(),
            failed: AtomicBool::new(false),
            #[cfg(test)]
            faults: Arc::default(),
        };
        Ok((log, out))
    }

    fn check(&self) -> std::io::Result<()> {
        if self.failed.load(Ordering::Acquire) {
            return Err(io_err("segment log failed earlier"));
        }
        Ok(())
    }

    /// After a failed write or sync: refuses every later write, and keeps a
    /// later open from finding bytes that may not have reached the disk. When
    /// `dirty` (the file may hold such bytes past `cut_to`), the active
    /// segment is cut back to `cut_to` (at or past `synced`) and synced; if
    /// that fails, the `FAILED` marker names `synced` for the next open.
    fn fail(&self, a: &mut Active, error: std::io::Error, cut_to: u64, dirty: bool) -> Failure {
        self.failed.store(true, Ordering::Release);
        let undone = !dirty || self.cut_back(a, cut_to);
        Failure { error, undone }
    }

    /// Cuts the active segment back to `to` durably, or else leaves the
    /// marker; whether either worked.
    fn cut_back(&self, a: &mut Active, to: u64) -> bool {
        let cut = self
            .fault(Fault::Cut)
            .and_then(|()| a.file.set_len(to))
            .and_then(|()| a.file.sync_all());
        let cut_error = match cut {
            Ok(()) => {
                tracing::error!(
                    segment = a.number,
                    offset = to,
                    "event store: a segment write or sync failed; the segment was cut back \
                     to where its data is known to be on disk"
                );
                (a.len, a.allocated, a.synced, a.unsynced) = (to, to, to, false);
                return true;
            }
            Err(e) => e,
        };
        // The cut (or its sync) failed: everything since the last good sync
        // is in doubt, so the marker names that.
        let at = a.synced;
        match self
            .fault(Fault::Marker)
            .and_then(|()| write_marker(&self.dir, a.number, at))
        {
            Ok(()) => {
                tracing::error!(
                    segment = a.number,
                    offset = at,
                    error = %cut_error,
                    "event store: a segment write or sync failed and the segment could not be \
                     cut back; segments/{FAILED} makes the next open cut it there"
                );
                true
            }
            Err(e) => {
                tracing::error!(
                    segment = a.number,
                    offset = at,
                    error = %e,
                    cut_error = %cut_error,
                    "event store: a segment write or sync failed, and neither cutting the \
                     segment back nor writing segments/{FAILED} worked: the next open may \
                     find bytes that are not on disk"
                );
                false
            }
        }
    }

    /// Fails if a test armed `fault`.
    #[cfg(test)]
    pub(crate) fn fault(&self, fault: Fault) -> std::io::Result<()> {
        if self.faults.fire(fault) {
            return Err(io_err(format!("injected failure: {fault:?}")));
        }
        Ok(())
    }

    /// Fails if a test armed `fault` (never, outside tests).
    #[cfg(not(test))]
    pub(crate) fn fault(&self, _: Fault) -> std::io::Result<()> {
        Ok(())
    }

    /// The faults tests arm.
    #[cfg(test)]
    pub(crate) fn faults(&self) -> Arc<Faults> {
        self.faults.clone()
    }

    /// Writes `records` as one frame (not synced); returns the segment and the
    /// offset of its first record.
    pub(crate) fn append(&self, records: &RecordBatch) -> Result<(u32, u64), Failure> {
        let count = u32::try_from(records.len())
            .map_err(|_| Failure::nothing_written(io_err("frame too large")))?;
        self.append_raw(records.first_seq(), count, records.bytes())
    }

    /// Writes a frame of `count` records starting at `first_seq`, given as
    /// bytes. On a failure, [`Failure::undone`] is about this frame.
    pub(crate) fn append_raw(
        &self,
        first_seq: u64,
        count: u32,
        payload: &[u8],
    ) -> Result<(u32, u64), Failure> {
        self.check().map_err(Failure::nothing_written)?;
        if count == 0 || payload.is_empty() {
            return Err(Failure::nothing_written(io_err("empty frame")));
        }
        let len = u32::try_from(payload.len())
            .map_err(|_| Failure::nothing_written(io_err("frame too large")))?;
        let mut a = self.active.lock();
        if a.len > FILE_HEADER_LEN
            && a.len + FRAME_HEADER_LEN as u64 + payload.len() as u64 > SEGMENT_BYTES
            && let Err(e) = self.rotate(&mut a)
        {
            // Closing the segment syncs it: what was written since the last
            // sync is in doubt. This frame was not started.
            let (to, dirty) = (a.synced, a.unsynced);
            let f = self.fail(&mut a, e, to, dirty);
            return Err(Failure::nothing_written(f.error));
        }
        let mut header = [0u8; FRAME_HEADER_LEN];
        header[0..4].copy_from_slice(&len.to_le_bytes());
        header[4..8].copy_from_slice(&count.to_le_bytes());
        header[8..16].copy_from_slice(&u64::from(a.number).to_le_bytes());
        header[16..24].copy_from_slice(&first_seq.to_le_bytes());
        let at = a.len;
        let end = at + (FRAME_HEADER_LEN + payload.len()) as u64;
        if end > a.allocated
            && let Err(e) = self.fault(Fault::Extend).and_then(|()| extend(&mut a, end))
        {
            // Zeros only, past `at`: they end the data where they are read.
            // But frames acknowledged unsynced (buffered mode) lie before
            // `at`, and the log refuses every later sync: they are made
            // durable with the cut to `at`, or else the marker names the last
            // good sync, as for a failed write. This frame was not started.
            let f = self.fail(&mut a, e, at, true);
            return Err(Failure::nothing_written(f.error));
        }
        let r = a
            .file
            .write_all_at(&header, at)
            .and_then(|()| self.fault(Fault::Write))
            .and_then(|()| a.file.write_all_at(payload, at + FRAME_HEADER_LEN as u64));
        if let Err(e) = r {
            // Part of the frame may be in the file: it goes (and, should the
            // cut's sync fail, whatever was not synced before it).
            return Err(self.fail(&mut a, e, at, true));
        }
        a.len = end;
        a.unsynced = true;
        Ok((a.number, at + FRAME_HEADER_LEN as u64))
    }

    /// Closes the full active segment and starts the next one.
    fn rotate(&self, a: &mut Active) -> std::io::Result<()> {
        a.file.set_len(a.len)?;
        a.file.sync_all()?;
        (a.allocated, a.synced, a.unsynced) = (a.len, a.len, false);
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
            synced: FILE_HEADER_LEN,
        };
        Ok(())
    }

    /// Makes every written frame durable. On a failure, [`Failure::undone`]
    /// is about everything written since the last successful sync: the
    /// segment is cut back to it (see [`fail`](Self::fail)).
    pub(crate) fn sync(&self) -> Result<(), Failure> {
        let mut a = self.active.lock();
        if let Err(e) = self.check() {
            // Failed earlier (a checkpoint poisoned the log): nothing is
            // synced or cut here, so a frame written since is in doubt.
            let undone = !a.unsynced;
            return Err(Failure { error: e, undone });
        }
        if a.unsynced {
            let r = self.fault(Fault::Sync).and_then(|()| a.file.sync_data());
            if let Err(e) = r {
                let to = a.synced;
                return Err(self.fail(&mut a, e, to, true));
            }
            (a.synced, a.unsynced) = (a.len, false);
        }
        Ok(())
    }

    /// Syncs the active file whether or not this process wrote to it: what a
    /// previous process wrote (and was killed before syncing) may still be in
    /// the page cache only.
    pub(crate) fn sync_active(&self) -> std::io::Result<()> {
        self.check()?;
        let mut a = self.active.lock();
        if let Err(e) = a.file.sync_data() {
            self.failed.store(true, Ordering::Release);
            return Err(e);
        }
        (a.synced, a.unsynced) = (a.len, false);
        Ok(())
    }

    /// Whether a write or sync failed (or a checkpoint poisoned the log).
    pub(crate) fn failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
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

/// Makes the names in `dir` durable.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(test)]
    tests::DIR_SYNCS.with(|n| n.set(n.get() + 1));
    File::open(dir)?.sync_all()
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
    sync_dir(dir)
}

/// Writes the `FAILED` marker (segment `n`, `offset`) durably: a partial
/// file, synced, renamed into place, the folder synced.
fn write_marker(dir: &Path, n: u32, offset: u64) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut b = [0u8; FAILED_LEN];
    b[..8].copy_from_slice(FAILED_MAGIC);
    b[8..16].copy_from_slice(&u64::from(n).to_le_bytes());
    b[16..].copy_from_slice(&offset.to_le_bytes());
    let partial = dir.join(FAILED_PARTIAL);
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&partial)?;
    file.write_all_at(&b, 0)?;
    file.sync_all()?;
    std::fs::rename(&partial, dir.join(FAILED))?;
    sync_dir(dir)
}

/// The `FAILED` marker in `dir`, if any: (segment, offset). A leftover
/// partial marker (its writer failed before the rename) is removed. A marker
/// that cannot be read is `Corrupt` (`seq`: the next position): where the log
/// must end is then unknown, and opening could take unsynced bytes for
/// durable ones.
fn read_marker(dir: &Path, seq: u64) -> Result<Option<(u32, u64)>> {
    match std::fs::remove_file(dir.join(FAILED_PARTIAL)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
        _ => {}
    }
    let b = match std::fs::read(dir.join(FAILED)) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let word = |r: std::ops::Range<usize>| b.get(r).and_then(|w| w.try_into().ok());
    let marker = (b.len() == FAILED_LEN && &b[..8] == FAILED_MAGIC)
        .then(|| {
            let n = u32::try_from(u64::from_le_bytes(word(8..16)?)).ok()?;
            Some((n, u64::from_le_bytes(word(16..24)?)))
        })
        .flatten();
    match marker {
        Some(m) => Ok(Some(m)),
        None => Err(Error::Corrupt {
            seq,
            reason: format!(
                "segments/{FAILED} (left by a failed write or sync) is damaged, so where the \
                 log must end is unknown: restore from a backup, or remove the file to take \
                 the segments as they are"
            ),
        }),
    }
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

    thread_local! {
        /// Directory syncs by this thread (`sync_dir`).
        pub(super) static DIR_SYNCS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
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

    /// Length of segment 1 of the log in `dir`.
    fn seg1_len(dir: &Path) -> u64 {
        std::fs::metadata(dir.join(file_name(1))).unwrap().len()
    }

    /// A log holding one synced frame of 2 records and a second, unsynced
    /// frame of 3; returns the head after each and where the second starts.
    fn synced_then_written(
        log: &SegmentLog,
        key: &ChainKey,
        head: &mut Anchor,
    ) -> (Anchor, Anchor, u64) {
        log.append(&records(key, head, 2)).unwrap();
        log.sync().unwrap();
        let first = *head;
        let (_, off) = log.append(&records(key, head, 3)).unwrap();
        (first, *head, off - FRAME_HEADER_LEN as u64)
    }

    #[test]
    fn a_failed_sync_cuts_what_it_did_not_make_durable_so_a_reopen_does_not_find_it() {
        let (dir, key, log, mut head) = fresh();
        let (first, _, second_at) = synced_then_written(&log, &key, &mut head);
        // The sync fails; the frame's bytes stay in the file, as a failed
        // writeback leaves them in the page cache, marked clean.
        log.faults().arm(Fault::Sync);
        let f = log.sync().unwrap_err();
        assert!(f.undone, "the cut is synced: the frame is certainly gone");
        assert_eq!(seg1_len(dir.path()), second_at);
        let mut after = first;
        assert!(log.append(&records(&key, &mut after, 1)).is_err());
        assert!(!dir.path().join(FAILED).exists());
        drop(log);
        // Before the fix a reopen found the frame, chaining, and indexed it.
        let (log, r, seqs) = open(dir.path(), None, None, &key);
        assert_eq!(seqs, vec![1, 2]);
        assert!(!r.torn_tail);
        // The log goes on after the last durable frame.
        let mut head = first;
        log.append(&records(&key, &mut head, 1)).unwrap();
        log.sync().unwrap();
        drop(log);
        assert_eq!(open(dir.path(), None, None, &key).2, vec![1, 2, 3]);
    }

    #[test]
    fn a_failed_write_cuts_its_partial_frame() {
        let (dir, key, log, mut head) = fresh();
        // A synced frame, then one acknowledged unsynced (buffered mode):
        // the cut goes to the failed frame's start, not to the last sync.
        let (_, second, _) = synced_then_written(&log, &key, &mut head);
        let end = log.active.lock().len;
        // The header goes in, the records do not.
        log.faults().arm(Fault::Write);
        let f = log.append(&records(&key, &mut head, 2)).unwrap_err();
        assert!(f.undone);
        assert_eq!(seg1_len(dir.path()), end, "the partial frame is cut off");
        drop(log);
        let (_, r, seqs) = open(dir.path(), None, None, &key);
        assert_eq!(
            (seqs, r.torn_tail),
            ((1..=second.seq).collect::<Vec<_>>(), false)
        );
    }

    #[test]
    fn a_failed_zero_fill_keeps_the_unsynced_frames_before_it_durably_or_marks_them() {
        for cut_fails in [false, true] {
            let (dir, key, log, mut head) = fresh();
            // Frame 1 (synced) fills the first step; frame 2 is acknowledged
            // unsynced, as buffered mode does; frame 3 needs more zeros.
            let (first, second, _) = synced_then_written(&log, &key, &mut head);
            let end = log.active.lock().len;
            assert!(log.active.lock().allocated < end + (1 << 20));
            log.faults().arm(Fault::Extend);
            if cut_fails {
                log.faults().arm(Fault::Cut);
            }
            let big = "x".repeat(1 << 20);
            let mut third = second;
            let b = records_with(&key, &mut third, 1, |_| serde_json::json!({ "p": big }));
            let f = log.append(&b).unwrap_err();
            assert!(f.undone, "the third frame was not started");
            if cut_fails {
                // The next open cuts at the last good sync: frame 2 goes, as
                // a power loss would take it.
                let a = log.active.lock();
                assert!(a.synced < end);
                drop(a);
                assert!(dir.path().join(FAILED).exists());
                drop(log);
                let (_, _, seqs) = open(dir.path(), None, None, &key);
                assert_eq!(seqs, (1..=first.seq).collect::<Vec<_>>());
            } else {
                // Cut to the end of frame 2 and synced: it stays.
                assert_eq!(seg1_len(dir.path()), end);
                assert_eq!(log.active.lock().synced, end);
                drop(log);
                let (_, _, seqs) = open(dir.path(), None, None, &key);
                assert_eq!(seqs, (1..=second.seq).collect::<Vec<_>>());
            }
        }
    }

    #[test]
    fn a_cut_that_fails_leaves_a_marker_which_the_next_open_honours_once() {
        let (dir, key, log, mut head) = fresh();
        let (first, _, second_at) = synced_then_written(&log, &key, &mut head);
        log.faults().arm(Fault::Sync);
        log.faults().arm(Fault::Cut);
        let f = log.sync().unwrap_err();
        assert!(f.undone, "the marker makes the next open cut the frame");
        assert!(seg1_len(dir.path()) > second_at, "not cut yet");
        assert!(dir.path().join(FAILED).exists());
        drop(log);
        let (log, r, seqs) = open(dir.path(), None, None, &key);
        assert_eq!(
            seqs,
            vec![1, 2],
            "the frame after the marker is not indexed"
        );
        assert!(r.torn_tail);
        assert_eq!(seg1_len(dir.path()), second_at);
        assert!(!dir.path().join(FAILED).exists(), "removed once honoured");
        // Records appended after it are not cut by a second open.
        let mut head = first;
        log.append(&records(&key, &mut head, 4)).unwrap();
        log.sync().unwrap();
        drop(log);
        assert_eq!(
            open(dir.path(), None, None, &key).2,
            (1..=6).collect::<Vec<_>>()
        );
    }

    #[test]
    fn when_neither_the_cut_nor_the_marker_works_the_outcome_is_unknown() {
        let (dir, key, log, mut head) = fresh();
        synced_then_written(&log, &key, &mut head);
        for f in [Fault::Sync, Fault::Cut, Fault::Marker] {
            log.faults().arm(f);
        }
        assert!(!log.sync().unwrap_err().undone);
        assert!(!dir.path().join(FAILED).exists());
        assert!(!dir.path().join(FAILED_PARTIAL).exists());
    }

    #[test]
    fn a_marker_never_cuts_indexed_records_and_one_past_the_data_cuts_nothing() {
        let (dir, key, log, mut head) = fresh();
        let (first, second, second_at) = synced_then_written(&log, &key, &mut head);
        let mut third = second;
        log.append(&records(&key, &mut third, 1)).unwrap();
        log.sync().unwrap();
        drop(log);
        // A marker at the first frame, below what sled has indexed (the
        // second frame): the second frame stays, the third (above the
        // anchor) goes.
        write_marker(dir.path(), 1, FILE_HEADER_LEN).unwrap();
        let (log, r, seqs) = open(dir.path(), Some(second), Some(1), &key);
        assert_eq!((seqs, r.torn_tail, r.damaged_at), (vec![], true, None));
        assert!(seg1_len(dir.path()) > second_at);
        assert!(!dir.path().join(FAILED).exists());
        drop(log);
        // A marker past the data cuts nothing; nor does one naming another
        // segment.
        for (segment, offset) in [(1, u64::MAX), (7, FILE_HEADER_LEN)] {
            write_marker(dir.path(), segment, offset).unwrap();
            let (_, r, seqs) = open(dir.path(), Some(first), Some(1), &key);
            assert_eq!((seqs, r.torn_tail), (vec![3, 4, 5], false));
            assert!(!dir.path().join(FAILED).exists());
        }
    }

    #[test]
    fn every_open_syncs_the_segments_folder_marker_or_not() {
        // An open that honoured a marker, removed it and then failed to sync
        // the folder leaves no marker for the next open to see; unless that
        // open syncs the folder before it appends, a power loss can bring the
        // marker back and cut frames acknowledged after it.
        let (dir, key, log, _) = fresh();
        drop(log);
        write_marker(dir.path(), 1, FILE_HEADER_LEN).unwrap();
        let (log, _, _) = open(dir.path(), None, None, &key);
        drop(log);
        // No marker, no new segment.
        let before = DIR_SYNCS.with(|n| n.get());
        let (log, _, _) = open(dir.path(), None, None, &key);
        assert!(
            DIR_SYNCS.with(|n| n.get()) > before,
            "the folder was not synced"
        );
        drop(log);
    }

    #[test]
    fn a_damaged_marker_refuses_the_open() {
        let (dir, key, log, _) = fresh();
        drop(log);
        std::fs::write(dir.path().join(FAILED), b"LHFAIL").unwrap();
        let r = SegmentLog::open(dir.path(), None, None, &key, |_, _, _, _| Ok(()));
        assert!(matches!(r, Err(Error::Corrupt { .. })), "{:?}", r.err());
        // A partial marker (its writer failed before the rename) means nothing.
        std::fs::rename(dir.path().join(FAILED), dir.path().join(FAILED_PARTIAL)).unwrap();
        let (_, r, _) = open(dir.path(), None, None, &key);
        assert!(!r.torn_tail);
        assert!(!dir.path().join(FAILED_PARTIAL).exists());
    }
}
