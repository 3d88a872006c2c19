//! The nonce journal: accepted nonces appended to segment files in a directory,
//! so a restart still refuses replays.
//!
//! File `nonces-<n>.log` (n increasing) is a sequence of frames:
//! `"LHN1"`, payload length (u32 LE), payload, first 8 bytes of the payload's
//! SHA-256. A payload is records `[agent len u8][agent][nonce len u8][nonce][expiry
//! second i64 LE]`. Loading stops at the first damaged frame of a file (a torn
//! write at a crash): every frame before it was synced. Whole segments are deleted
//! once every nonce in them has expired.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{BufReader, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

const MAGIC: &[u8; 4] = b"LHN1";
/// Largest frame accepted when loading (a flush of a full store is far smaller).
const MAX_FRAME: usize = 256 << 20;

/// One remembered nonce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Record {
    pub agent: String,
    pub nonce: String,
    pub expiry: i64,
}

/// Appends one record to `buf`. Agent ids are at most 64 bytes and nonces at most
/// 64, so both lengths fit a byte.
pub(crate) fn encode(buf: &mut Vec<u8>, agent: &str, nonce: &str, expiry: i64) {
    buf.push(agent.len() as u8);
    buf.extend_from_slice(agent.as_bytes());
    buf.push(nonce.len() as u8);
    buf.extend_from_slice(nonce.as_bytes());
    buf.extend_from_slice(&expiry.to_le_bytes());
}

/// Decodes a payload; `None` if it is not a sequence of whole records.
fn decode(payload: &[u8], out: &mut Vec<Record>) -> Option<i64> {
    let mut max_expiry = i64::MIN;
    let mut rest = payload;
    while !rest.is_empty() {
        let (agent, r) = take_prefixed(rest)?;
        let (nonce, r) = take_prefixed(r)?;
        let expiry = i64::from_le_bytes(r.get(..8)?.try_into().ok()?);
        rest = &r[8..];
        max_expiry = max_expiry.max(expiry);
        out.push(Record {
            agent: std::str::from_utf8(agent).ok()?.to_owned(),
            nonce: std::str::from_utf8(nonce).ok()?.to_owned(),
            expiry,
        });
    }
    Some(max_expiry)
}

fn take_prefixed(b: &[u8]) -> Option<(&[u8], &[u8])> {
    let n = usize::from(*b.first()?);
    let body = b.get(1..1 + n)?;
    Some((body, &b[1 + n..]))
}

/// The largest expiry in a payload (it was produced by [`encode`]).
fn max_expiry(payload: &[u8]) -> i64 {
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

struct Segment {
    file: File,
    path: PathBuf,
    started_s: i64,
    max_expiry: i64,
}

struct Sealed {
    path: PathBuf,
    max_expiry: i64,
}

pub(crate) struct Journal {
    dir: PathBuf,
    next_number: u64,
    span_s: i64,
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

/// Reads the frames of one segment; returns its largest expiry.
fn load_segment(path: &Path, out: &mut Vec<Record>) -> Result<i64> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut r = BufReader::new(file);
    let mut max = i64::MIN;
    loop {
        let mut head = [0u8; 8];
        if r.read_exact(&mut head).is_err() || &head[..4] != MAGIC {
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
    /// Opens the journal in `dir`, returning the unexpired records of every segment
    /// and deleting the segments that hold none.
    pub(crate) fn open(dir: &Path, now_s: i64, span_s: i64) -> Result<(Journal, Vec<Record>)> {
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
        let mut records = Vec::new();
        let mut sealed = Vec::new();
        for (_, path) in &numbered {
            let mut recs = Vec::new();
            let max = load_segment(path, &mut recs)?;
            if max < now_s {
                std::fs::remove_file(path).map_err(|e| Error::io(path, e))?;
            } else {
                records.extend(recs.into_iter().filter(|r| r.expiry >= now_s));
                sealed.push(Sealed {
                    path: path.clone(),
                    max_expiry: max,
                });
            }
        }
        let next_number = numbered.last().map_or(0, |(n, _)| n + 1);
        Ok((
            Journal {
                dir: dir.to_path_buf(),
                next_number,
                span_s,
                current: None,
                sealed,
                retry: Vec::new(),
            },
            records,
        ))
    }

    pub(crate) fn take_retry(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.retry)
    }

    fn seal_current(&mut self) {
        if let Some(seg) = self.current.take() {
            self.sealed.push(Sealed {
                path: seg.path,
                max_expiry: seg.max_expiry,
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
            max_expiry: i64::MIN,
        }))
    }

    /// Writes `payload` as one frame and syncs it, then deletes expired segments.
    /// On failure the payload is kept and written first by the next call.
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
        let mut i = 0;
        while i < self.sealed.len() {
            if self.sealed[i].max_expiry < now_s {
                let s = self.sealed.remove(i);
                std::fs::remove_file(&s.path).map_err(|e| Error::io(&s.path, e))?;
            } else {
                i += 1;
            }
        }
        Ok(())
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
        seg.max_expiry = seg.max_expiry.max(max_expiry(payload));
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

    #[test]
    fn records_round_trip() {
        let mut buf = Vec::new();
        encode(&mut buf, "alice", "n0nce-0001-abcdef", 1_790_000_300);
        encode(&mut buf, "bob", &"x".repeat(64), -5);
        let mut out = Vec::new();
        assert_eq!(decode(&buf, &mut out), Some(1_790_000_300));
        assert_eq!(max_expiry(&buf), 1_790_000_300);
        assert_eq!(out[1].nonce.len(), 64);
        assert_eq!(out[1].expiry, -5);
        assert_eq!(decode(&buf[..buf.len() - 1], &mut Vec::new()), None);
    }

    #[test]
    fn torn_tail_is_ignored_and_expired_segments_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let (mut j, recs) = Journal::open(dir.path(), 1000, 300).unwrap();
        assert!(recs.is_empty());
        let mut p = Vec::new();
        encode(&mut p, "alice", "aaaaaaaaaaaaaaaa", 1300);
        j.write(p, 1000).unwrap();
        let mut p = Vec::new();
        encode(&mut p, "alice", "bbbbbbbbbbbbbbbb", 1301);
        j.write(p, 1001).unwrap();
        let path = j.current.as_ref().unwrap().path.clone();
        drop(j);
        // A crash in the middle of a third frame.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"LHN1\x20\x00\x00\x00abc").unwrap();
        let (j, recs) = Journal::open(dir.path(), 1100, 300).unwrap();
        assert_eq!(recs.len(), 2);
        assert_eq!(j.segments(), 1);
        drop(j);
        let (mut j, recs) = Journal::open(dir.path(), 1301, 300).unwrap();
        assert_eq!(
            recs.len(),
            1,
            "only the nonce expiring at 1301 is still live"
        );
        j.write(Vec::new(), 1302).unwrap();
        assert_eq!(j.segments(), 0);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
