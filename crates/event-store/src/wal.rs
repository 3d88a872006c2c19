//! The write-ahead log that makes a durable append cheap.
//!
//! Making a group durable through sled cost more than the group's own work:
//! sled's `apply_batch` writes its I/O buffer twice per batch through its thread
//! pool, which wakes all of its idle threads for every write, and the sync
//! happens on another thread than the writer's (docs/EVENT_STORE.md, "The
//! write-ahead log"). So the writer thread applies each group to sled with plain
//! inserts, writes the group's records to this log as one frame and, in
//! [`Durability::Durable`](crate::Durability::Durable) mode, `fdatasync`s the log
//! itself: one `pwrite` pair and one sync per group, on the thread that already
//! holds the group. A background checkpointer flushes sled (about once a second
//! in durable mode) and then lets the log's older file be reused. On open, frames beyond what sled recovered are checked against
//! the integrity chain and applied to sled again.
//!
//! # Files
//!
//! Two files, `wal/0` and `wal/1`, take turns. Each starts with a 16-byte header
//! (`LHWAL\0\0\x01`, then a little-endian generation number); frames follow:
//!
//! ```text
//! offset size field
//!      0    4 payload length (u32 LE, > 0)
//!      4    4 record count   (u32 LE, > 0)
//!      8    8 generation     (u64 LE, the file's)
//!     16    8 first seq      (u64 LE)
//!     24    . records, back to back, exactly as stored in sled
//! ```
//!
//! A file is read from its header up to the first frame that is not complete and
//! of the file's generation. Frames left over from the file's earlier use carry an
//! older generation and stop the reading; zeros (the file is extended with zeros
//! ahead of the writes, so that a sync is a data sync without a size change to
//! journal) stop it too.
//!
//! # Invariants
//!
//! - A group is acknowledged only after its frame is synced.
//! - The checkpointer swaps files (syncing the outgoing one), then flushes sled.
//!   Every frame in the outgoing file was applied to sled before the swap, so once
//!   that flush returns, its frames are all in sled's durable state and the file
//!   may be overwritten. The file is reused only after the flush.
//! - Hence every frame in a reused file's leftover part is at or below sled's
//!   durable head, and replay skips it; replay applies only records above sled's
//!   anchor, each of which must have the next seq and chain from the previous MAC.
//!   A frame is applied whole or not at all, so a batch stays atomic.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;

use crate::backend::{Anchor, RecordBatch};
use crate::codec::{ChainKey, RecordView, stored_len};

const FILE_MAGIC: &[u8; 8] = b"LHWAL\0\0\x01";
const FILE_HEADER_LEN: u64 = 16;
const FRAME_HEADER_LEN: usize = 24;
/// A file grows in steps of at least this (and at most [`MAX_EXTEND`]), zero-filled.
const MIN_EXTEND: u64 = 256 << 10;
const MAX_EXTEND: u64 = 8 << 20;
/// A checkpoint is asked for as soon as the active file holds this many bytes.
pub(crate) const CHECKPOINT_BYTES: u64 = 64 << 20;
static ZEROS: [u8; 64 << 10] = [0u8; 64 << 10];

/// One of the two files.
struct Segment {
    file: File,
    generation: u64,
    /// Where the next frame goes.
    len: u64,
    /// Bytes written (frames or zeros) from the start: writes below this do not
    /// change the file's size.
    allocated: u64,
}

struct State {
    active: Segment,
    /// `None` while a checkpoint holds the outgoing file.
    spare: Option<Segment>,
    /// A frame was written to `active` and not synced yet.
    unsynced: bool,
}

/// The log. Shared by the writer (append, sync) and the checkpointer (rotate,
/// retire).
pub(crate) struct Wal {
    state: Mutex<State>,
    /// A write, sync or checkpoint failed: every later call fails.
    failed: AtomicBool,
}

/// The outgoing file of a checkpoint, returned to [`Wal::retire`] after sled's flush.
pub(crate) struct Retired(Segment);

/// What [`recover`] found and applied.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Recovery {
    /// Records applied to sled from the log.
    pub(crate) replayed: u64,
    /// The log's frames ended with bytes that were not a whole frame of the
    /// current generation chaining from the head (a write cut by the crash).
    pub(crate) torn_tail: bool,
}

fn io_err(msg: impl Into<String>) -> std::io::Error {
    std::io::Error::other(msg.into())
}

impl Wal {
    /// Opens the two files in `dir` (creating them), with the active one at a
    /// generation above every one found. Call after [`recover`].
    pub(crate) fn open(dir: &Path) -> std::io::Result<Wal> {
        std::fs::create_dir_all(dir)?;
        let mut segs = Vec::with_capacity(2);
        let mut created = false;
        for name in ["0", "1"] {
            let path = dir.join(name);
            created |= !path.exists();
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)?;
            let allocated = file.metadata()?.len();
            let generation = read_header(&file).unwrap_or(0);
            segs.push(Segment {
                file,
                generation,
                len: FILE_HEADER_LEN,
                allocated,
            });
        }
        if created {
            File::open(dir)?.sync_all()?;
        }
        // The older file becomes active with a new generation; the newer one is
        // the spare (its frames are all in sled after recovery).
        segs.sort_by_key(|s| s.generation);
        let spare = segs.pop();
        let mut active = segs
            .pop()
            .ok_or_else(|| io_err("write-ahead log: no file"))?;
        let top = spare.as_ref().map_or(0, |s| s.generation);
        start_generation(&mut active, top + 1)?;
        Ok(Wal {
            state: Mutex::new(State {
                active,
                spare,
                unsynced: false,
            }),
            failed: AtomicBool::new(false),
        })
    }

    fn check(&self) -> std::io::Result<()> {
        if self.failed.load(Ordering::Acquire) {
            return Err(io_err("write-ahead log failed earlier"));
        }
        Ok(())
    }

    fn fail<T>(&self, r: std::io::Result<T>) -> std::io::Result<T> {
        if r.is_err() {
            self.failed.store(true, Ordering::Release);
        }
        r
    }

    /// Writes `records` as one frame (not synced). Returns whether the active
    /// file is large enough that a checkpoint should run.
    pub(crate) fn append(&self, records: &RecordBatch) -> std::io::Result<bool> {
        self.check()?;
        let payload = records.bytes();
        if records.is_empty() {
            return Ok(false);
        }
        let mut st = self.state.lock();
        let seg = &mut st.active;
        let mut header = [0u8; FRAME_HEADER_LEN];
        let len = u32::try_from(payload.len()).map_err(|_| io_err("frame too large"))?;
        let count = u32::try_from(records.len()).map_err(|_| io_err("frame too large"))?;
        header[0..4].copy_from_slice(&len.to_le_bytes());
        header[4..8].copy_from_slice(&count.to_le_bytes());
        header[8..16].copy_from_slice(&seg.generation.to_le_bytes());
        header[16..24].copy_from_slice(&records.first_seq().to_le_bytes());
        let at = seg.len;
        let end = at + (FRAME_HEADER_LEN + payload.len()) as u64;
        let r = (|| {
            if end > seg.allocated {
                extend(seg, end)?;
            }
            seg.file.write_all_at(&header, at)?;
            seg.file.write_all_at(payload, at + FRAME_HEADER_LEN as u64)
        })();
        self.fail(r)?;
        seg.len = end;
        st.unsynced = true;
        Ok(end >= CHECKPOINT_BYTES)
    }

    /// Makes every appended frame durable.
    pub(crate) fn sync(&self) -> std::io::Result<()> {
        self.check()?;
        let mut st = self.state.lock();
        if st.unsynced {
            let r = st.active.file.sync_data();
            self.fail(r)?;
            st.unsynced = false;
        }
        Ok(())
    }

    /// First half of a checkpoint: if the active file holds frames, syncs it and
    /// makes the spare active under the next generation. The caller flushes sled,
    /// then hands the result to [`retire`](Self::retire).
    pub(crate) fn rotate(&self) -> std::io::Result<Option<Retired>> {
        self.check()?;
        let mut st = self.state.lock();
        if st.active.len == FILE_HEADER_LEN {
            return Ok(None);
        }
        let Some(mut next) = st.spare.take() else {
            return Ok(None);
        };
        let r = (|| {
            start_generation(&mut next, st.active.generation + 1)?;
            if st.unsynced {
                st.active.file.sync_data()?;
            }
            Ok(())
        })();
        if let Err(e) = r {
            st.spare = Some(next);
            return self.fail(Err(e));
        }
        st.unsynced = false;
        let old = std::mem::replace(&mut st.active, next);
        Ok(Some(Retired(old)))
    }

    /// Second half of a checkpoint: sled has been flushed, so the outgoing file
    /// may be reused.
    pub(crate) fn retire(&self, old: Retired) {
        self.state.lock().spare = Some(old.0);
    }

    /// Marks the log failed (a checkpoint's sled flush failed).
    pub(crate) fn poison(&self) {
        self.failed.store(true, Ordering::Release);
    }

    /// Bytes of the two files.
    pub(crate) fn size_on_disk(&self) -> u64 {
        let st = self.state.lock();
        st.active.allocated + st.spare.as_ref().map_or(0, |s| s.allocated)
    }
}

/// Writes a fresh header with `generation` at the start of `seg` and syncs it; the
/// file's old frames stay behind it, recognisable by their older generation.
fn start_generation(seg: &mut Segment, generation: u64) -> std::io::Result<()> {
    let mut h = [0u8; FILE_HEADER_LEN as usize];
    h[..8].copy_from_slice(FILE_MAGIC);
    h[8..].copy_from_slice(&generation.to_le_bytes());
    seg.file.write_all_at(&h, 0)?;
    seg.allocated = seg.allocated.max(FILE_HEADER_LEN);
    seg.file.sync_data()?;
    seg.generation = generation;
    seg.len = FILE_HEADER_LEN;
    Ok(())
}

/// Zero-fills `seg` from its allocated end to at least `end`.
fn extend(seg: &mut Segment, end: u64) -> std::io::Result<()> {
    let step = seg.allocated.clamp(MIN_EXTEND, MAX_EXTEND);
    let target = end.max(seg.allocated + step);
    let mut at = seg.allocated;
    while at < target {
        let n = ((target - at) as usize).min(ZEROS.len());
        seg.file.write_all_at(&ZEROS[..n], at)?;
        at += n as u64;
    }
    seg.allocated = target;
    Ok(())
}

fn read_header(file: &File) -> Option<u64> {
    let mut h = [0u8; FILE_HEADER_LEN as usize];
    file.read_exact_at(&mut h, 0).ok()?;
    (&h[..8] == FILE_MAGIC).then(|| u64::from_le_bytes(h[8..].try_into().unwrap_or_default()))
}

/// A frame read back: its first seq and records.
struct Frame {
    first_seq: u64,
    count: u32,
    payload: Vec<u8>,
}

/// The frames of one file, in order, and whether reading stopped at bytes that
/// were neither a frame nor the zero fill.
fn read_file(path: &Path) -> std::io::Result<Option<(u64, Vec<Frame>, bool)>> {
    let mut bytes = Vec::new();
    match File::open(path) {
        Ok(mut f) => {
            f.read_to_end(&mut bytes)?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    }
    if bytes.len() < FILE_HEADER_LEN as usize || &bytes[..8] != FILE_MAGIC {
        return Ok(None);
    }
    let generation = u64::from_le_bytes(bytes[8..16].try_into().unwrap_or_default());
    let mut frames = Vec::new();
    let mut at = FILE_HEADER_LEN as usize;
    let mut torn = false;
    while at + FRAME_HEADER_LEN <= bytes.len() {
        let h = &bytes[at..at + FRAME_HEADER_LEN];
        let len = u32::from_le_bytes(h[0..4].try_into().unwrap_or_default()) as usize;
        let count = u32::from_le_bytes(h[4..8].try_into().unwrap_or_default());
        let g = u64::from_le_bytes(h[8..16].try_into().unwrap_or_default());
        let first_seq = u64::from_le_bytes(h[16..24].try_into().unwrap_or_default());
        if len == 0 && count == 0 && g == 0 && first_seq == 0 {
            break;
        }
        let body = at + FRAME_HEADER_LEN;
        if g != generation {
            // Left over from the file's earlier use.
            break;
        }
        if len == 0 || count == 0 || body + len > bytes.len() {
            torn = true;
            break;
        }
        frames.push(Frame {
            first_seq,
            count,
            payload: bytes[body..body + len].to_vec(),
        });
        at = body + len;
    }
    Ok(Some((generation, frames, torn)))
}

/// Replays the log in `dir` on top of sled's `anchor`: every record above it,
/// frame by frame, through `apply` (which writes one frame's records and the new
/// anchor atomically). Stops at the first frame that does not continue the chain.
pub(crate) fn recover(
    dir: &Path,
    anchor: Option<Anchor>,
    key: &ChainKey,
    mut apply: impl FnMut(&RecordBatch, Anchor) -> crate::error::Result<()>,
) -> crate::error::Result<Recovery> {
    let mut files = Vec::new();
    for name in ["0", "1"] {
        if let Some(f) = read_file(&dir.join(name))? {
            files.push(f);
        }
    }
    files.sort_by_key(|f| f.0);
    let mut head = anchor.unwrap_or(Anchor {
        seq: 0,
        mac: crate::codec::GENESIS,
    });
    let mut out = Recovery::default();
    'files: for (_, frames, torn) in files {
        for frame in frames {
            let last = frame.first_seq + u64::from(frame.count) - 1;
            if last <= head.seq {
                continue; // Already in sled.
            }
            match check_frame(&frame, head, key) {
                Some((batch, next)) => {
                    apply(&batch, next)?;
                    out.replayed += batch.len() as u64;
                    head = next;
                }
                None => {
                    out.torn_tail = true;
                    break 'files;
                }
            }
        }
        out.torn_tail |= torn;
    }
    Ok(out)
}

/// The records of `frame` above `head`, if they are whole, continue the seqs and
/// chain from `head`'s MAC; with the new head.
fn check_frame(frame: &Frame, head: Anchor, key: &ChainKey) -> Option<(RecordBatch, Anchor)> {
    let mut batch = RecordBatch::starting_at(head.seq + 1);
    let mut prev = head;
    let mut off = 0;
    let mut seq = frame.first_seq;
    let mut n = 0u32;
    while off < frame.payload.len() {
        let len = stored_len(&frame.payload[off..])?;
        let rec = frame.payload.get(off..off + len)?;
        off += len;
        n += 1;
        if seq > head.seq {
            let v = RecordView::parse(rec).ok()?;
            if v.seq != prev.seq + 1 || key.chain(&prev.mac, v.body) != *v.mac {
                return None;
            }
            batch.push(rec);
            prev = Anchor {
                seq: v.seq,
                mac: *v.mac,
            };
        }
        seq += 1;
    }
    (n == frame.count && !batch.is_empty()).then_some((batch, prev))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Timestamp;
    use crate::codec::{GENESIS, Prepared};
    use crate::model::NewEvent;

    fn records(key: &ChainKey, prev: &mut Anchor, n: usize) -> RecordBatch {
        let mut b = RecordBatch::starting_at(prev.seq + 1);
        for _ in 0..n {
            let p = Prepared::new(NewEvent::new(
                "s-1",
                "t",
                serde_json::json!({"n": prev.seq}),
            ));
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

    /// A fresh log in a temporary directory, its key, and the empty head.
    fn new_log() -> (tempfile::TempDir, ChainKey, Wal, Anchor) {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::open(dir.path()).unwrap();
        let head = Anchor {
            seq: 0,
            mac: GENESIS,
        };
        (dir, ChainKey::new(b"k"), wal, head)
    }

    fn replay(dir: &Path, anchor: Option<Anchor>, key: &ChainKey) -> (Recovery, Vec<u64>) {
        let mut seqs = Vec::new();
        let r = recover(dir, anchor, key, |b, a| {
            assert_eq!(b.iter().last().map(|(s, _)| s), Some(a.seq));
            seqs.extend(b.iter().map(|(s, _)| s));
            Ok(())
        })
        .unwrap();
        (r, seqs)
    }

    #[test]
    fn frames_beyond_the_anchor_are_replayed_in_order() {
        let (dir, key, wal, mut head) = new_log();
        let mut anchors = Vec::new();
        for n in [3, 1, 5] {
            wal.append(&records(&key, &mut head, n)).unwrap();
            wal.sync().unwrap();
            anchors.push(head);
        }
        drop(wal);
        let (r, seqs) = replay(dir.path(), None, &key);
        assert_eq!(r.replayed, 9);
        assert!(!r.torn_tail);
        assert_eq!(seqs, (1..=9).collect::<Vec<_>>());
        // sled already holds the first two frames.
        let (r, seqs) = replay(dir.path(), Some(anchors[1]), &key);
        assert_eq!((r.replayed, seqs), (5, (5..=9).collect::<Vec<_>>()));
        // A wrong key replays nothing.
        let (r, _) = replay(dir.path(), None, &ChainKey::new(b"other"));
        assert_eq!(r.replayed, 0);
        assert!(r.torn_tail);
    }

    #[test]
    fn a_torn_last_frame_is_dropped_whole() {
        let (dir, key, wal, mut head) = new_log();
        wal.append(&records(&key, &mut head, 2)).unwrap();
        wal.append(&records(&key, &mut head, 4)).unwrap();
        wal.sync().unwrap();
        drop(wal);
        // The first file of a new log is the active one.
        let path = dir.path().join("0");
        // Flip a byte in the last record of the second frame.
        let mut bytes = std::fs::read(&path).unwrap();
        let end = bytes.iter().rposition(|&b| b != 0).unwrap();
        bytes[end - 40] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let (r, seqs) = replay(dir.path(), None, &key);
        assert_eq!(seqs, vec![1, 2]);
        assert!(r.torn_tail);
        // Cut in the middle of the second frame: same.
        let cut = end - 100;
        let mut cut_bytes = std::fs::read(&path).unwrap();
        cut_bytes.truncate(cut);
        std::fs::write(&path, &cut_bytes).unwrap();
        let (_, seqs) = replay(dir.path(), None, &key);
        assert_eq!(seqs, vec![1, 2]);
    }

    #[test]
    fn a_reused_file_replays_only_its_new_frames() {
        let (dir, key, wal, mut head) = new_log();
        // Fill the first file with many frames, checkpoint twice so it is reused.
        for _ in 0..20 {
            wal.append(&records(&key, &mut head, 3)).unwrap();
        }
        wal.sync().unwrap();
        let old = wal.rotate().unwrap().unwrap();
        wal.retire(old);
        wal.append(&records(&key, &mut head, 1)).unwrap();
        let flushed = head; // pretend sled was flushed here
        let old = wal.rotate().unwrap().unwrap();
        wal.retire(old);
        // The first file is active again, with one short frame over old ones.
        wal.append(&records(&key, &mut head, 2)).unwrap();
        wal.sync().unwrap();
        drop(wal);
        let (r, seqs) = replay(dir.path(), Some(flushed), &key);
        assert_eq!(seqs, vec![flushed.seq + 1, flushed.seq + 2]);
        assert!(!r.torn_tail);
        // Reopening makes a new active generation above both.
        let wal = Wal::open(dir.path()).unwrap();
        assert!(wal.state.lock().active.generation > 3);
    }
}
