//! The nonce journal: accepted nonces appended to segment files in a directory,
//! so a restart still refuses replays.
//!
//! File `nonces-<n>.log` (n increasing) is a sequence of frames: a magic, payload
//! length (u32 LE), payload, first 8 bytes of the payload's SHA-256. A payload is
//! records `[agent len u8][agent][nonce len u8][nonce][second i64 LE]`. In an
//! `"LHN2"` frame the second is the request's timestamp; in an `"LHN1"` frame
//! (written before timestamps were journaled) it is the nonce's expiry, the
//! timestamp plus the window of the run that wrote it. Expiry is computed when
//! loading, as that second plus the window in force now, so a restart with a
//! larger window still keeps every nonce a request inside it could carry; for an
//! `LHN1` record the expiry stands in for the unknown timestamp, which it is never
//! below, so it is kept longer, never shorter. Loading stops at the first damaged
//! frame of a file (a torn write at a crash): every frame before it was synced.
//!
//! Whole segments are deleted once every nonce in them has expired. Before any
//! is, the file `replay-floor` records a floor above every timestamp deleted: a
//! request signed before the floor is stale whatever the window or the clock of a
//! later run, so deleting never reopens a replay (the window growing between runs,
//! or the clock stepping back across a restart after segments were deleted on a
//! clock that ran ahead). Deletion waits until the floor is below the window's
//! lower edge, so in a run that keeps its window the floor refuses nothing the
//! window would not.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{BufReader, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// Frames written now: each record's second is the request's timestamp.
const MAGIC: &[u8; 4] = b"LHN2";
/// Frames written before timestamps were journaled: each record's second is the
/// nonce's expiry. Same record layout; a new magic because the second means
/// something else, and only the magic tells the two apart.
const MAGIC_V1: &[u8; 4] = b"LHN1";
/// Largest frame accepted when loading (a flush of a full store is far smaller).
const MAX_FRAME: usize = 256 << 20;
/// The file holding the floor (see the module docs), and the temporary file it
/// is written through so that a crash leaves either the old floor or the new one.
const FLOOR_FILE: &str = "replay-floor";
const FLOOR_TMP: &str = "replay-floor.tmp";
const FLOOR_HEADER: &str = "lighthouse nonce journal floor v1\n";

/// One remembered nonce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Record {
    pub agent: String,
    pub nonce: String,
    /// The request's timestamp; for a record of an `LHN1` frame, its expiry,
    /// which the timestamp is never above (so it keeps the nonce long enough).
    pub ts: i64,
}

/// Appends one record to `buf`. Agent ids are at most 64 bytes and nonces at most
/// 64, so both lengths fit a byte.
pub(crate) fn encode(buf: &mut Vec<u8>, agent: &str, nonce: &str, ts: i64) {
    buf.push(agent.len() as u8);
    buf.extend_from_slice(agent.as_bytes());
    buf.push(nonce.len() as u8);
    buf.extend_from_slice(nonce.as_bytes());
    buf.extend_from_slice(&ts.to_le_bytes());
}

/// Decodes a payload (either frame version: the layout is the same); `None` if
/// it is not a sequence of whole records. Returns the largest second.
fn decode(payload: &[u8], out: &mut Vec<Record>) -> Option<i64> {
    let mut max_ts = i64::MIN;
    let mut rest = payload;
    while !rest.is_empty() {
        let (agent, r) = take_prefixed(rest)?;
        let (nonce, r) = take_prefixed(r)?;
        let ts = i64::from_le_bytes(r.get(..8)?.try_into().ok()?);
        rest = &r[8..];
        max_ts = max_ts.max(ts);
        out.push(Record {
            agent: std::str::from_utf8(agent).ok()?.to_owned(),
            nonce: std::str::from_utf8(nonce).ok()?.to_owned(),
            ts,
        });
    }
    Some(max_ts)
}

fn take_prefixed(b: &[u8]) -> Option<(&[u8], &[u8])> {
    let n = usize::from(*b.first()?);
    let body = b.get(1..1 + n)?;
    Some((body, &b[1 + n..]))
}

/// The largest timestamp in a payload (it was produced by [`encode`]).
fn max_ts(payload: &[u8]) -> i64 {
    let mut max = i64::MIN;
    let mut rest = payload;
    while let Some((_, r)) = take_prefixed(rest) {
        let Some((_, r)) = take_prefixed(r) else {
            break;
        };
        let Some(e) = r.get(..8).and_then(|b| b.try_into().ok()) else {
            break;
        };
        max = max.max(i64::from_le_bytes(e));
        rest = &r[8..];
    }
    max
}

fn checksum(payload: &[u8]) -> [u8; 8] {
    let d = Sha256::digest(payload);
    let mut out = [0u8; 8];
    out.copy_from_slice(&d[..8]);
    out
}

/// Whether a nonce with timestamp `ts` is expired at `now_s` under `window_s`:
/// a request carrying it is outside the window from then on.
fn expired(ts: i64, window_s: i64, now_s: i64) -> bool {
    ts.saturating_add(window_s) < now_s
}

/// Reads the floor; `None` when the file does not exist.
fn read_floor(dir: &Path) -> Result<Option<i64>> {
    let path = dir.join(FLOOR_FILE);
    let mut text = Vec::new();
    match File::open(&path) {
        Ok(f) => f
            .take(128)
            .read_to_end(&mut text)
            .map_err(|e| Error::io(&path, e))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(&path, e)),
    };
    std::str::from_utf8(&text)
        .ok()
        .and_then(|t| t.strip_prefix(FLOOR_HEADER))
        .and_then(|t| t.strip_suffix('\n'))
        .and_then(|t| t.parse().ok())
        .map(Some)
        .ok_or_else(|| {
            // Guessing a floor could let a deleted nonce be replayed: refuse to
            // open, and say how to set one that is certainly high enough.
            Error::io(
                &path,
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "damaged: the floor below which requests are refused as stale is lost; \
                     with the bridge stopped, write the file again as the line \
                     `lighthouse nonce journal floor v1` and then the current Unix second",
                ),
            )
        })
}

/// Replaces the floor atomically and durably: a temporary file, synced, renamed
/// over the old one, the directory synced.
fn write_floor(dir: &Path, floor: i64) -> Result<()> {
    let tmp = dir.join(FLOOR_TMP);
    let path = dir.join(FLOOR_FILE);
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| Error::io(&tmp, e))?;
    f.write_all(format!("{FLOOR_HEADER}{floor}\n").as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, e))
}

struct Segment {
    file: File,
    path: PathBuf,
    started_s: i64,
    max_ts: i64,
}

struct Sealed {
    path: PathBuf,
    max_ts: i64,
}

pub(crate) struct Journal {
    dir: PathBuf,
    next_number: u64,
    span_s: i64,
    window_s: i64,
    /// The floor on disk: every timestamp in a deleted segment is below it.
    floor_s: i64,
    current: Option<Segment>,
    sealed: Vec<Sealed>,
    /// A payload whose write failed, written first next time.
    retry: Vec<u8>,
}

fn segment_number(name: &str) -> Option<u64> {
    name.strip_prefix("nonces-")?
        .strip_suffix(".log")?
        .parse()
        .ok()
}

/// Reads the frames of one segment; returns its largest timestamp.
fn load_segment(path: &Path, out: &mut Vec<Record>) -> Result<i64> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut r = BufReader::new(file);
    let mut max = i64::MIN;
    loop {
        let mut head = [0u8; 8];
        if r.read_exact(&mut head).is_err() || (&head[..4] != MAGIC && &head[..4] != MAGIC_V1) {
            return Ok(max);
        }
        let len = u32::from_le_bytes([head[4], head[5], head[6], head[7]]) as usize;
        if len > MAX_FRAME {
            return Ok(max);
        }
        let mut payload = vec![0u8; len + 8];
        if r.read_exact(&mut payload).is_err() {
            return Ok(max);
        }
        let (body, sum) = payload.split_at(len);
        if checksum(body) != sum {
            return Ok(max);
        }
        let before = out.len();
        match decode(body, out) {
            Some(m) => max = max.max(m),
            None => {
                out.truncate(before);
                return Ok(max);
            }
        }
    }
}

impl Journal {
    /// Opens the journal in `dir` under the acceptance window `window_s`,
    /// returning the unexpired records of every segment and deleting the segments
    /// that hold none (after raising the floor above them).
    pub(crate) fn open(
        dir: &Path,
        now_s: i64,
        window_s: u32,
        span_s: i64,
        none_accepted_before: bool,
    ) -> Result<(Journal, Vec<Record>)> {
        let window_s = i64::from(window_s);
        // Only a journal this open creates, or one of a deployment that never
        // accepted a request, is known to have lost nothing.
        let created = none_accepted_before || !dir.exists();
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| Error::io(dir, e))?;
        let mut numbered = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
            let entry = entry.map_err(|e| Error::io(dir, e))?;
            if let Some(n) = entry.file_name().to_str().and_then(segment_number) {
                numbered.push((n, entry.path()));
            }
        }
        numbered.sort();
        let stored_floor = read_floor(dir)?;
        let mut floor = match stored_floor {
            Some(f) => f,
            None if created => i64::MIN,
            // A journal without a floor was written by a version that deleted
            // segments without raising one, judging expiry by its own run's
            // window, which may have been smaller than this one; an empty
            // directory is what it leaves after a quiet spell. What it deleted
            // was signed before now (unless its clock was ahead), so now is a
            // floor.
            None => now_s,
        };
        let mut records = Vec::new();
        let mut sealed = Vec::new();
        let mut doomed = Vec::new();
        for (_, path) in &numbered {
            let mut recs = Vec::new();
            let max = load_segment(path, &mut recs)?;
            if expired(max, window_s, now_s) {
                floor = floor.max(max.saturating_add(1));
                doomed.push(path);
            } else {
                records.extend(recs.into_iter().filter(|r| !expired(r.ts, window_s, now_s)));
                sealed.push(Sealed {
                    path: path.clone(),
                    max_ts: max,
                });
            }
        }
        // The floor is on disk before any nonce below it leaves the disk.
        if stored_floor != Some(floor) {
            write_floor(dir, floor)?;
        }
        for path in doomed {
            std::fs::remove_file(path).map_err(|e| Error::io(path, e))?;
        }
        let next_number = numbered.last().map_or(0, |(n, _)| n + 1);
        Ok((
            Journal {
                dir: dir.to_path_buf(),
                next_number,
                span_s,
                window_s,
                floor_s: floor,
                current: None,
                sealed,
                retry: Vec::new(),
            },
            records,
        ))
    }

    /// Every timestamp the journal has forgotten is below this: a request signed
    /// earlier must be refused as stale.
    pub(crate) fn floor_s(&self) -> i64 {
        self.floor_s
    }

    pub(crate) fn take_retry(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.retry)
    }

    fn seal_current(&mut self) {
        if let Some(seg) = self.current.take() {
            self.sealed.push(Sealed {
                path: seg.path,
                max_ts: seg.max_ts,
            });
        }
    }

    fn open_segment(&mut self, now_s: i64) -> Result<&mut Segment> {
        let path = self
            .dir
            .join(format!("nonces-{:012}.log", self.next_number));
        self.next_number += 1;
        let file = OpenOptions::new()
            .append(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        if let Ok(d) = File::open(&self.dir) {
            let _ = d.sync_all();
        }
        Ok(self.current.insert(Segment {
            file,
            path,
            started_s: now_s,
            max_ts: i64::MIN,
        }))
    }

    /// Writes `payload` as one frame and syncs it, then deletes expired segments.
    /// On failure the payload is kept and written first by the next call.
    /// `now_s` is the store's time, which never goes back.
    pub(crate) fn write(&mut self, payload: Vec<u8>, now_s: i64) -> Result<()> {
        if self
            .current
            .as_ref()
            .is_some_and(|s| now_s - s.started_s >= self.span_s)
        {
            self.seal_current();
        }
        if !payload.is_empty()
            && let Err(e) = self.write_frame(&payload, now_s)
        {
            // The file may end in a torn frame: start a new segment next time.
            self.seal_current();
            self.retry = payload;
            return Err(e);
        }
        self.delete_expired(now_s)
    }

    /// Deletes the sealed segments whose nonces all expired, raising the floor
    /// above their timestamps first.
    fn delete_expired(&mut self, now_s: i64) -> Result<()> {
        let window_s = self.window_s;
        let Some(floor) = self
            .sealed
            .iter()
            .filter(|s| expired(s.max_ts, window_s, now_s))
            .map(|s| s.max_ts.saturating_add(1))
            .max()
        else {
            return Ok(());
        };
        if floor > self.floor_s {
            // On failure nothing is deleted: the next write tries again.
            write_floor(&self.dir, floor)?;
            self.floor_s = floor;
        }
        let mut first_error = None;
        self.sealed.retain(|s| {
            if !expired(s.max_ts, window_s, now_s) {
                return true;
            }
            // A segment that could not be deleted is below the floor: the next
            // open deletes it.
            if let Err(e) = std::fs::remove_file(&s.path) {
                first_error.get_or_insert(Error::io(&s.path, e));
            }
            false
        });
        first_error.map_or(Ok(()), Err)
    }

    fn write_frame(&mut self, payload: &[u8], now_s: i64) -> Result<()> {
        let len = u32::try_from(payload.len())
            .ok()
            .filter(|&l| l as usize <= MAX_FRAME)
            .ok_or(Error::InvalidConfig(
                "a nonce journal frame exceeds 256 MiB",
            ))?;
        let seg = match self.current {
            Some(ref mut s) => s,
            None => self.open_segment(now_s)?,
        };
        let mut frame = Vec::with_capacity(payload.len() + 16);
        frame.extend_from_slice(MAGIC);
        frame.extend_from_slice(&len.to_le_bytes());
        frame.extend_from_slice(payload);
        frame.extend_from_slice(&checksum(payload));
        seg.file
            .write_all(&frame)
            .and_then(|()| seg.file.sync_data())
            .map_err(|e| Error::io(&seg.path, e))?;
        seg.max_ts = seg.max_ts.max(max_ts(payload));
        Ok(())
    }

    /// Number of segment files on disk.
    #[cfg(test)]
    pub(crate) fn segments(&self) -> usize {
        self.sealed.len() + usize::from(self.current.is_some())
    }
}

/// Runs [`NonceStore::flush`](crate::NonceStore::flush) every interval on a background thread until dropped.
///
/// The interval (default [`DEFAULT_FLUSH_INTERVAL`]) is what a crash may lose:
/// nonces accepted after the last completed flush (at most
/// [`NonceConfig::max_unflushed_per_shard`](crate::NonceConfig::max_unflushed_per_shard) per shard) are not on disk.
pub struct NonceFlusher {
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Default interval between journal flushes: 100 ms.
pub const DEFAULT_FLUSH_INTERVAL: std::time::Duration = std::time::Duration::from_millis(100);

impl NonceFlusher {
    /// Starts flushing `store` every `interval`.
    pub fn start(
        store: std::sync::Arc<crate::nonce::NonceStore>,
        interval: std::time::Duration,
    ) -> Result<Self> {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("nonce-flusher".into())
            .spawn(move || {
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                    rx.recv_timeout(interval)
                {
                    let _ = store.flush();
                }
                let _ = store.flush();
            })
            .map_err(|e| Error::io("nonce-flusher thread", e))?;
        Ok(NonceFlusher {
            stop: Some(tx),
            thread: Some(thread),
        })
    }
}

impl Drop for NonceFlusher {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nonce::{NonceConfig, NonceRefusal, NonceStore};
    use lighthouse_event_store::{ManualClock, Timestamp};
    use std::sync::Arc;

    const T0: i64 = 1_790_000_000;

    fn segment_files(dir: &Path) -> usize {
        std::fs::read_dir(dir)
            .unwrap()
            .filter(|e| segment_number(e.as_ref().unwrap().file_name().to_str().unwrap()).is_some())
            .count()
    }

    /// A segment as a version before timestamps were journaled wrote it: `LHN1`
    /// frames whose records carry the expiry (timestamp plus that run's window).
    fn write_v1_segment(dir: &Path, n: u64, records: &[(&str, &str, i64)]) {
        let mut payload = Vec::new();
        for (agent, nonce, expiry) in records {
            encode(&mut payload, agent, nonce, *expiry);
        }
        let mut frame = MAGIC_V1.to_vec();
        frame.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        frame.extend_from_slice(&payload);
        frame.extend_from_slice(&checksum(&payload));
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join(format!("nonces-{n:012}.log")), frame).unwrap();
    }

    fn store(dir: &Path, now_s: i64, window_s: u32) -> NonceStore {
        let clock = ManualClock::new(Timestamp::from_unix_secs(now_s));
        let config = NonceConfig {
            window_s,
            ..NonceConfig::default()
        };
        NonceStore::open(dir, config, Arc::new(clock)).unwrap()
    }

    #[test]
    fn records_round_trip() {
        let mut buf = Vec::new();
        encode(&mut buf, "alice", "n0nce-0001-abcdef", 1_790_000_300);
        encode(&mut buf, "bob", &"x".repeat(64), -5);
        let mut out = Vec::new();
        assert_eq!(decode(&buf, &mut out), Some(1_790_000_300));
        assert_eq!(max_ts(&buf), 1_790_000_300);
        assert_eq!(out[1].nonce.len(), 64);
        assert_eq!(out[1].ts, -5);
        assert_eq!(decode(&buf[..buf.len() - 1], &mut Vec::new()), None);
    }

    #[test]
    fn torn_tail_is_ignored_and_expired_segments_deleted_above_a_floor() {
        let tmp = tempfile::tempdir().unwrap();
        // A directory the journal creates: nothing was deleted before it.
        let dir = tmp.path().join("nonces");
        let (mut j, recs) = Journal::open(dir.as_path(), 1000, 300, 300, false).unwrap();
        assert!(recs.is_empty());
        assert_eq!(read_floor(dir.as_path()).unwrap(), Some(i64::MIN));
        let mut p = Vec::new();
        encode(&mut p, "alice", "aaaaaaaaaaaaaaaa", 1000);
        j.write(p, 1000).unwrap();
        let mut p = Vec::new();
        encode(&mut p, "alice", "bbbbbbbbbbbbbbbb", 1001);
        j.write(p, 1001).unwrap();
        let path = j.current.as_ref().unwrap().path.clone();
        drop(j);
        // A crash in the middle of a third frame.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"LHN2\x20\x00\x00\x00abc").unwrap();
        let (j, recs) = Journal::open(dir.as_path(), 1100, 300, 300, false).unwrap();
        assert_eq!(recs.len(), 2);
        assert_eq!(j.segments(), 1);
        drop(j);
        let (mut j, recs) = Journal::open(dir.as_path(), 1301, 300, 300, false).unwrap();
        assert_eq!(
            recs.len(),
            1,
            "only the nonce with timestamp 1001 is still inside the window"
        );
        j.write(Vec::new(), 1302).unwrap();
        assert_eq!(j.segments(), 0);
        assert_eq!(segment_files(dir.as_path()), 0);
        // Deleting raised the floor above both timestamps first.
        assert_eq!(j.floor_s(), 1002);
        assert_eq!(read_floor(dir.as_path()).unwrap(), Some(1002));
    }

    #[test]
    fn a_journal_written_before_timestamps_were_journaled_still_protects_its_nonces() {
        let dir = tempfile::tempdir().unwrap();
        // The older version accepted this nonce at T0 under a 300 s window.
        write_v1_segment(dir.path(), 7, &[("alice", "nonce-older-00001", T0 + 300)]);
        let s = store(dir.path(), T0 + 120, 300);
        assert_eq!(s.len(), 1);
        // The older version may have deleted nonces by a smaller window than
        // this run's: whatever was signed before this first open is stale.
        assert_eq!(
            s.check_and_insert("alice", "nonce-older-00001", T0, at(T0 + 120)),
            Err(NonceRefusal::Stale)
        );
        assert_eq!(
            s.check_and_insert("alice", "nonce-older-00002", T0 + 119, at(T0 + 120)),
            Err(NonceRefusal::Stale)
        );
        // The old record is loaded: its nonce is used, whatever the timestamp.
        assert_eq!(
            s.check_and_insert("alice", "nonce-older-00001", T0 + 120, at(T0 + 120)),
            Err(NonceRefusal::Replayed)
        );
        assert_eq!(
            s.check_and_insert("alice", "nonce-older-00003", T0 + 120, at(T0 + 120)),
            Ok(())
        );
        s.flush().unwrap();
        drop(s);
        // A larger window, past the old record's expiry: its expiry stands in for
        // its timestamp, so it is kept a whole new window more.
        let s = store(dir.path(), T0 + 310, 600);
        assert_eq!(s.len(), 2);
        assert_eq!(
            s.check_and_insert("alice", "nonce-older-00001", T0 + 310, at(T0 + 310)),
            Err(NonceRefusal::Replayed)
        );
        assert_eq!(
            s.check_and_insert("alice", "nonce-older-00003", T0 + 120, at(T0 + 310)),
            Err(NonceRefusal::Replayed)
        );
        // New segments are written after the old one (never into it).
        s.check_and_insert("alice", "nonce-older-00004", T0 + 310, at(T0 + 310))
            .unwrap();
        s.flush().unwrap();
        for n in [7, 8, 9] {
            assert!(dir.path().join(format!("nonces-{n:012}.log")).exists());
        }
    }

    #[test]
    fn a_damaged_floor_refuses_to_open_and_deletes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        write_v1_segment(dir.path(), 0, &[("alice", "nonce-damaged-0001", T0)]);
        std::fs::write(
            dir.path().join(FLOOR_FILE),
            "lighthouse nonce journal floor v1\n12x\n",
        )
        .unwrap();
        let clock = ManualClock::new(Timestamp::from_unix_secs(T0 + 10_000));
        let err = NonceStore::open(dir.path(), NonceConfig::default(), Arc::new(clock))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("replay-floor") && err.contains("current Unix second"),
            "{err}"
        );
        assert_eq!(segment_files(dir.path()), 1);
        std::fs::write(dir.path().join(FLOOR_FILE), format!("{FLOOR_HEADER}{T0}\n")).unwrap();
        let (j, _) = Journal::open(dir.path(), T0 + 10_000, 300, 300, false).unwrap();
        assert_eq!(j.floor_s(), T0 + 1);
        assert_eq!(segment_files(dir.path()), 0);
    }

    #[test]
    fn segments_stay_until_the_floor_above_them_is_written() {
        let tmp = tempfile::tempdir().unwrap();
        // A directory the journal creates: nothing was deleted before it.
        let dir = tmp.path().join("nonces");
        let (mut j, _) = Journal::open(dir.as_path(), T0, 300, 300, false).unwrap();
        let mut p = Vec::new();
        encode(&mut p, "alice", "nonce-floorfail-01", T0);
        j.write(p, T0).unwrap();
        // The floor's temporary file cannot be created.
        std::fs::create_dir(dir.as_path().join(FLOOR_TMP)).unwrap();
        assert!(j.write(Vec::new(), T0 + 400).is_err());
        assert_eq!(segment_files(dir.as_path()), 1);
        assert_eq!(read_floor(dir.as_path()).unwrap(), Some(i64::MIN));
        std::fs::remove_dir(dir.as_path().join(FLOOR_TMP)).unwrap();
        j.write(Vec::new(), T0 + 401).unwrap();
        assert_eq!(segment_files(dir.as_path()), 0);
        assert_eq!(read_floor(dir.as_path()).unwrap(), Some(T0 + 1));
    }

    /// An earlier version deleted every segment whose nonces had expired by
    /// its own window and wrote no floor: after a quiet spell its directory is
    /// empty. What it deleted may be back inside a larger window, so an
    /// existing directory without a floor starts with the open time as one.
    #[test]
    fn an_existing_directory_without_a_floor_refuses_what_was_signed_before_the_open() {
        let dir = tempfile::tempdir().unwrap();
        let (j, recs) = Journal::open(dir.path(), T0 + 310, 600, 300, false).unwrap();
        assert!(recs.is_empty());
        assert_eq!(j.floor_s(), T0 + 310);
        assert_eq!(read_floor(dir.path()).unwrap(), Some(T0 + 310));
        // A journal created by this open lost nothing.
        let fresh = dir.path().join("fresh");
        let (j, _) = Journal::open(&fresh, T0, 300, 300, false).unwrap();
        assert_eq!(j.floor_s(), i64::MIN);
    }

    fn at(s: i64) -> Timestamp {
        Timestamp::from_unix_secs(s)
    }
}
