//! Online backup to a single file, and restore into a new store.
//!
//! # File format (version 2)
//!
//! ```text
//! magic     10 bytes  "LHBACKUP" 0x01 '\n'
//! header    u32 LE length, then JSON:
//!           {"format":2,"head_seq":N,"created_at":"<RFC 3339>","key_check":"<hex>"}
//! frames    repeated: tag (1 byte), length (u32 LE), payload (a snapshot too
//!           large for a u32 length is left out with a warning: snapshots are
//!           derived from the log, which restores without them)
//!           tag 1 record:   the record exactly as stored (see `codec`), seq 1..=N
//!                           in order, at most 64 MiB
//!           tag 2 snapshot: name length (u16 LE), name, seq (u64 LE),
//!                           MAC (32 bytes, `ChainKey::snapshot_mac`), data
//!           tag 0 end:      SHA-256 of every byte of the file before this tag
//! ```
//!
//! Format 1 (written before snapshots carried their MAC) differs only in its
//! snapshot frames, which have no MAC: such a file still restores, its
//! snapshots left out (the projections replay the log).
//!
//! Records keep their MACs, so a restored store verifies with the same key, and a
//! restore checks the chain, every snapshot's MAC and the checksum before the new
//! store is put in place.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::backend::{Anchor, Backend, LogMode, RecordBatch, SledBackend};
use crate::codec::{ChainKey, GENESIS, MAC_LEN, RecordView};
use crate::error::{Error, Result};
use crate::model::Limits;
use crate::options::StoreOptions;
use crate::store::EventStore;

const MAGIC: &[u8; 10] = b"LHBACKUP\x01\n";
const TAG_END: u8 = 0;
const TAG_RECORD: u8 = 1;
const TAG_SNAPSHOT: u8 = 2;
/// Largest record frame a restore accepts: the largest event a store takes.
const MAX_RECORD_FRAME: usize = Limits::MAX_EVENT_BYTES;
/// Largest snapshot frame: what a u32 length can say. A snapshot holds a
/// projection (the elicitation service's is ~60 MB at its default limits), so
/// it is not held to the record bound; a restore still never allocates more
/// than the file has left.
const MAX_SNAPSHOT_FRAME: usize = u32::MAX as usize;
/// A restore commits its records in batches of at most this many records...
const RESTORE_BATCH: usize = 1000;
/// ... and commits a batch once it holds this many bytes, as the writer ends a
/// group (`writer::MAX_GROUP_BYTES`): each batch is one segment frame, whose
/// length is a u32 and which an open may read whole. 1,000 records of up to
/// 64 MiB each would otherwise make a frame of up to 64 GiB.
const RESTORE_BATCH_BYTES: usize = 64 << 20;
/// Backup format written: 2 carries each snapshot's MAC (a snapshot's data is
/// otherwise covered only by the file's plain SHA-256, which anyone can
/// recompute). Format 1 files still restore, their snapshots left out.
const FORMAT: u32 = 2;

#[derive(Serialize, Deserialize)]
struct Header {
    format: u32,
    head_seq: u64,
    created_at: String,
    key_check: String,
}

/// What a backup wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupReport {
    /// Events written (seq 1 to this).
    pub head_seq: u64,
    /// Snapshots written.
    pub snapshots: usize,
    /// File size.
    pub bytes: u64,
}

/// What a restore read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreReport {
    /// Events restored.
    pub head_seq: u64,
    /// Snapshots restored.
    pub snapshots: usize,
}

/// A writer that hashes everything it writes.
struct Hashing<W: Write> {
    inner: W,
    hash: Sha256,
    bytes: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

struct HashingReader<R: Read> {
    inner: R,
    hash: Sha256,
    read: u64,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        self.read += n as u64;
        Ok(n)
    }
}

fn frame<W: Write>(w: &mut W, tag: u8, payload: &[&[u8]]) -> std::io::Result<()> {
    let len: usize = payload.iter().map(|p| p.len()).sum();
    // The callers bound their frames; a longer one must not be cut silently.
    let len = u32::try_from(len).map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("a backup frame of {len} bytes is longer than a u32 length can say"),
        )
    })?;
    w.write_all(&[tag])?;
    w.write_all(&len.to_le_bytes())?;
    for p in payload {
        w.write_all(p)?;
    }
    Ok(())
}

impl EventStore {
    /// Writes a consistent copy of the log (up to the head committed when the
    /// backup starts) and of every snapshot to `path`, while appends go on.
    ///
    /// The file appears atomically, with mode 0600 (it holds the whole log): it
    /// is written to a new, uniquely named temporary file in `path`'s directory
    /// (created exclusively, so neither a symlink there nor a concurrent backup
    /// is followed or clobbered), synced, renamed over `path`, and the directory
    /// synced. On an error before the rename the temporary file is removed and
    /// `path` is left as it was. The directory's sync comes after the rename
    /// (it is what makes the rename durable): if only that sync fails, the
    /// error is returned with the new, complete and synced file already at
    /// `path`, whose name a power loss could then undo. A directory as `path`
    /// is refused ([`Error::BackupFile`]).
    ///
    /// Snapshots are copied one at a time, so a backup holds at most one
    /// snapshot in memory ([`StoreOptions::max_snapshot_bytes`]).
    pub fn backup(&self, path: impl AsRef<Path>) -> Result<BackupReport> {
        let path = path.as_ref();
        let target = |source: std::io::Error| Error::BackupFile {
            path: path.to_path_buf(),
            source,
        };
        if path.is_dir() {
            return Err(target(std::io::Error::new(
                std::io::ErrorKind::IsADirectory,
                "it is a directory; name the file to write",
            )));
        }
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let mut prefix = std::ffi::OsString::from(".");
        prefix.push(path.file_name().unwrap_or_else(|| "backup".as_ref()));
        prefix.push(".");
        // tempfile creates the file with O_EXCL and mode 0600; dropping it
        // (every early return below) removes it.
        let tmp = tempfile::Builder::new()
            .prefix(&prefix)
            .suffix(".partial")
            .tempfile_in(dir)
            .map_err(target)?;
        let report = self.backup_to(tmp.as_file(), path)?;
        tmp.persist(path).map_err(|e| target(e.error))?;
        sync_parent(path).map_err(|e| match e {
            Error::Io(source) => target(source),
            e => e,
        })?;
        Ok(report)
    }

    /// Writes the backup into `file` (named `path` in errors) and syncs it.
    fn backup_to(&self, file: &File, path: &Path) -> Result<BackupReport> {
        let target = |source: std::io::Error| Error::BackupFile {
            path: path.to_path_buf(),
            source,
        };
        let backend = self.backend();
        let start = backend.anchor()?;
        let head = start.map_or(0, |a| a.seq);
        let head_mac = start.map_or(GENESIS, |a| a.mac);
        let mut w = Hashing {
            inner: BufWriter::new(file),
            hash: Sha256::new(),
            bytes: 0,
        };
        let header = Header {
            format: FORMAT,
            head_seq: head,
            created_at: crate::clock::Clock::now(&crate::clock::SystemClock).to_string(),
            key_check: hex::encode(self.chain_key().fingerprint()),
        };
        let header =
            serde_json::to_vec(&header).map_err(|e| Error::InvalidBackup(e.to_string()))?;
        w.write_all(MAGIC).map_err(target)?;
        w.write_all(&(header.len() as u32).to_le_bytes())
            .map_err(target)?;
        w.write_all(&header).map_err(target)?;
        // The records are checked as restore will check them (every MAC of
        // the chain, none missing up to the anchor): a backup of a damaged log
        // fails now, not when it is needed.
        let key = self.chain_key();
        let mut prev = GENESIS;
        let mut written = 0u64;
        for (expect, item) in (1u64..).zip(backend.range(1, head, false)) {
            let (seq, bytes) = item?;
            let damaged = |reason: &str| Error::Corrupt {
                seq: expect,
                reason: format!("{reason}; run verify"),
            };
            if seq != expect {
                return Err(damaged("missing from the log"));
            }
            let v = RecordView::parse(&bytes).map_err(|_| damaged("unreadable"))?;
            if !v.follows(key, seq, &prev) {
                return Err(damaged("fails the integrity chain"));
            }
            prev = *v.mac;
            frame(&mut w, TAG_RECORD, &[&bytes]).map_err(target)?;
            written = seq;
        }
        if written != head || prev != head_mac {
            return Err(Error::Corrupt {
                seq: written + 1,
                reason: format!("the log ends at {written}, its anchor says {head}; run verify"),
            });
        }
        let mut snapshots = 0;
        // One at a time: each is loaded, written and dropped before the next.
        for name in self.snapshot_names()? {
            let Some((seq, data)) = self.backup_snapshot(&name)? else {
                continue;
            };
            if seq > head {
                continue;
            }
            if 2 + name.len() + 8 + MAC_LEN + data.len() > MAX_SNAPSHOT_FRAME {
                tracing::warn!(
                    snapshot = %name,
                    bytes = data.len(),
                    "snapshot too large for a backup frame; left out (the log restores without it)"
                );
                continue;
            }
            frame(
                &mut w,
                TAG_SNAPSHOT,
                &[
                    &(name.len() as u16).to_le_bytes(),
                    name.as_bytes(),
                    &seq.to_le_bytes(),
                    &key.snapshot_mac(&name, seq, &data),
                    &data,
                ],
            )
            .map_err(target)?;
            snapshots += 1;
        }
        let digest = w.hash.clone().finalize();
        w.inner.write_all(&[TAG_END]).map_err(target)?;
        w.inner.write_all(&32u32.to_le_bytes()).map_err(target)?;
        w.inner.write_all(&digest).map_err(target)?;
        let bytes = w.bytes + 1 + 4 + 32;
        let file = w.inner.into_inner().map_err(|e| target(e.into_error()))?;
        file.sync_all().map_err(target)?;
        Ok(BackupReport {
            head_seq: head,
            snapshots,
            bytes,
        })
    }

    /// The snapshot `name` for a backup: its seq and data, `None` when it is
    /// gone or left out.
    fn backup_snapshot(&self, name: &str) -> Result<Option<(u64, Vec<u8>)>> {
        match self.load_snapshot(name) {
            Ok(s) => Ok(s.map(|s| (s.seq, s.data))),
            // A snapshot is derived from the log: a damaged one (or one past
            // max_snapshot_bytes) is left out (the restored projection
            // replays the log) rather than failing the backup of the log
            // itself.
            Err(Error::Corrupt { reason, .. }) => {
                tracing::warn!(snapshot = %name, %reason, "damaged snapshot left out of the backup");
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Restores the backup at `file` into the new directory `dir` (which must not
    /// exist or be empty) and opens it.
    ///
    /// The data is checked (format, key, every MAC of the chain and of the
    /// snapshots, the checksum) while it is written into a new staging
    /// directory beside `dir`, `<dir name>.restoring-<random>`, created
    /// exclusively with mode 0700 (so concurrent restores, or a retry while one
    /// runs, each have their own, and no existing directory is used or
    /// removed). Once complete and synced, the staging directory is renamed to
    /// `dir` (replacing it when it is an empty directory); any error before
    /// that removes the staging directory and leaves nothing at `dir`. If `dir`
    /// is no longer empty at the rename (another restore got there first), the
    /// answer is [`Error::NotEmpty`].
    ///
    /// After the rename the restored store is at `dir`, complete and checked:
    /// should syncing the parent directory or opening the store then fail, the
    /// error is returned and the store stays at `dir` (it is not removed: by
    /// then another process may have opened it). A process killed during a
    /// restore leaves its staging directory behind, and nothing removes it;
    /// nor is one removed whose removal failed (that is logged, with its
    /// path). A `<dir name>.restoring-*` beside a data directory can be
    /// deleted whenever no restore is running.
    pub fn restore(
        file: impl AsRef<Path>,
        dir: impl AsRef<Path>,
        options: StoreOptions,
    ) -> Result<(EventStore, RestoreReport)> {
        let dir = dir.as_ref();
        let not_empty = || Error::NotEmpty {
            dir: dir.to_path_buf(),
        };
        if dir.exists() && std::fs::read_dir(dir)?.next().is_some() {
            return Err(not_empty());
        }
        let parent = match dir.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        // The data directory a store lives in holds what the store holds:
        // made the owner's only, as the store's own directory is.
        crate::private::create_dir(parent)?;
        let mut prefix = dir.file_name().unwrap_or_default().to_os_string();
        prefix.push(".restoring-");
        let mut builder = tempfile::Builder::new();
        builder.prefix(&prefix);
        #[cfg(unix)]
        builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(
            crate::private::DIR_MODE,
        ));
        // Created exclusively (`mkdir`, a new random name on a clash); removed
        // when dropped, that is on every error below until it is renamed.
        let staging = Staging(Some(builder.tempdir_in(parent)?));
        let report = restore_into(file.as_ref(), staging.path(), &options, RESTORE_BATCH_BYTES)?;
        // The files are synced; their directory entries too, before the
        // rename makes the store appear (a power loss after it must not find
        // a store whose segments folder is missing).
        sync_dirs(staging.path())?;
        // rename(2) replaces an empty directory and refuses a non-empty one,
        // so a directory filled since the check above is never overwritten.
        match std::fs::rename(staging.path(), dir) {
            Ok(()) => {
                // Renamed: nothing is left at the staging path to remove.
                staging.keep();
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::DirectoryNotEmpty | std::io::ErrorKind::AlreadyExists
                ) =>
            {
                return Err(not_empty());
            }
            Err(e) => return Err(e.into()),
        }
        sync_parent(dir)?;
        let store = EventStore::open(dir, options)?;
        Ok((store, report))
    }
}

/// A restore's staging directory: removed when dropped unless kept, a
/// failed removal logged (`tempfile` ignores it, and a full copy of the log
/// would stay behind unnoticed).
struct Staging(Option<tempfile::TempDir>);

impl Staging {
    fn path(&self) -> &Path {
        self.0.as_ref().map_or(Path::new(""), |t| t.path())
    }

    /// Leaves the directory (renamed into place) alone.
    fn keep(mut self) {
        if let Some(t) = self.0.take() {
            let _ = t.keep();
        }
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        let Some(t) = self.0.take() else { return };
        let path = t.path().to_path_buf();
        if let Err(e) = t.close() {
            tracing::warn!(
                path = %path.display(),
                error = %e,
                "event store: a failed restore's staging directory (a copy of the log) could \
                 not be removed; delete it by hand"
            );
        }
    }
}

/// Syncs `dir`'s subdirectories, then `dir` itself.
fn sync_dirs(dir: &Path) -> Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            File::open(entry.path())?.sync_all()?;
        }
    }
    File::open(dir)?.sync_all()?;
    Ok(())
}

/// Makes a rename in `path`'s directory durable.
fn sync_parent(path: &Path) -> Result<()> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    File::open(parent)?.sync_all()?;
    Ok(())
}

fn read_exact_vec<R: Read>(r: &mut R, n: usize) -> Result<Vec<u8>> {
    let mut v = vec![0u8; n];
    r.read_exact(&mut v).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => Error::InvalidBackup("file ends early".into()),
        _ => Error::Io(e),
    })?;
    Ok(v)
}

fn read_u32<R: Read>(r: &mut R) -> Result<usize> {
    let b = read_exact_vec(r, 4)?;
    Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
}

/// Reads `n` bytes of `r` and throws them away, without holding them.
fn skip<R: Read>(r: &mut R, n: u64) -> Result<()> {
    let skipped = std::io::copy(&mut r.take(n), &mut std::io::sink())?;
    if skipped != n {
        return Err(Error::InvalidBackup("file ends early".into()));
    }
    Ok(())
}

fn read_u16<R: Read>(r: &mut R) -> Result<usize> {
    let b = read_exact_vec(r, 2)?;
    Ok(u16::from_le_bytes([b[0], b[1]]) as usize)
}

fn read_u64<R: Read>(r: &mut R) -> Result<u64> {
    let b = read_exact_vec(r, 8)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(&b);
    Ok(u64::from_le_bytes(a))
}

/// Restores `file` into the new directory `staging`, committing the records
/// in batches of at most [`RESTORE_BATCH`] records, ended early once one holds
/// `batch_bytes`.
fn restore_into(
    file: &Path,
    staging: &Path,
    options: &StoreOptions,
    batch_bytes: usize,
) -> Result<RestoreReport> {
    let key = ChainKey::new(&options.key);
    let f = File::open(file)?;
    let file_len = f.metadata()?.len();
    let mut r = HashingReader {
        inner: BufReader::new(f),
        hash: Sha256::new(),
        read: 0,
    };
    if read_exact_vec(&mut r, MAGIC.len())? != MAGIC {
        return Err(Error::InvalidBackup(
            "not a Lighthouse backup (bad magic)".into(),
        ));
    }
    let n = read_u32(&mut r)?;
    if n > 64 << 10 {
        return Err(Error::InvalidBackup("header too large".into()));
    }
    let header: Header = serde_json::from_slice(&read_exact_vec(&mut r, n)?)
        .map_err(|e| Error::InvalidBackup(format!("bad header: {e}")))?;
    if header.format != 1 && header.format != FORMAT {
        return Err(Error::InvalidBackup(format!(
            "unknown format {}",
            header.format
        )));
    }
    if header.key_check != hex::encode(key.fingerprint()) {
        return Err(Error::WrongKey);
    }
    let mut backend = SledBackend::open(staging, options.cache_bytes)?;
    backend.meta_put("format", crate::store::FORMAT_VERSION)?;
    backend.meta_put("key_check", &key.fingerprint())?;
    // Synced once at the end (`flush` below); the staging directory is thrown
    // away if anything fails before that.
    backend.start_log(
        staging,
        &key,
        LogMode {
            sync_each_commit: false,
            checkpoint_every: std::time::Duration::from_secs(3600),
        },
    )?;
    let mut prev = GENESIS;
    let mut seq = 0u64;
    let mut batch = RecordBatch::starting_at(1);
    let mut snapshots = 0;
    let snapshot_files = crate::snapshot::SnapshotFiles::new(staging, options.max_snapshot_bytes);
    loop {
        let digest_so_far = r.hash.clone().finalize();
        let tag = read_exact_vec(&mut r, 1)?[0];
        let len = read_u32(&mut r)?;
        let max = if tag == TAG_SNAPSHOT {
            MAX_SNAPSHOT_FRAME
        } else {
            MAX_RECORD_FRAME
        };
        if len > max {
            return Err(Error::InvalidBackup(format!(
                "frame of {len} bytes is too large"
            )));
        }
        // A length the file cannot hold is damage; do not allocate for it.
        if len as u64 > file_len.saturating_sub(r.read) {
            return Err(Error::InvalidBackup("file ends early".into()));
        }
        match tag {
            TAG_RECORD => {
                let payload = read_exact_vec(&mut r, len)?;
                seq += 1;
                let v = RecordView::parse(&payload)
                    .map_err(|e| Error::InvalidBackup(format!("record {seq}: {}", e.0)))?;
                if !v.follows(&key, seq, &prev) {
                    return Err(Error::InvalidBackup(format!(
                        "record {seq} fails the integrity chain"
                    )));
                }
                prev = *v.mac;
                batch.push(&payload);
                if batch.len() == RESTORE_BATCH || batch.bytes().len() >= batch_bytes {
                    backend.commit(&batch, Anchor { seq, mac: prev })?;
                    batch.reset(seq + 1);
                }
            }
            TAG_SNAPSHOT => {
                // Read piece by piece: a snapshot past the store's bound is
                // read through (for the checksum), never held.
                let short = || Error::InvalidBackup("short snapshot frame".into());
                if len < 2 {
                    return Err(short());
                }
                let nl = read_u16(&mut r)?;
                if len < 2 + nl + 8 {
                    return Err(short());
                }
                let name = read_exact_vec(&mut r, nl)?;
                let name = String::from_utf8(name)
                    .map_err(|_| Error::InvalidBackup("snapshot name is not UTF-8".into()))?;
                crate::model::validate_token(&name, crate::error::Field::SnapshotName).map_err(
                    |_| Error::InvalidBackup(format!("snapshot name {name:?} is not valid")),
                )?;
                let snap_seq = read_u64(&mut r)?;
                let rest = len - 2 - nl - 8;
                if header.format == 1 {
                    // Unauthenticated: the projections replay the log instead.
                    tracing::warn!(snapshot = %name, "a format 1 backup's snapshot carries no MAC; left out");
                    skip(&mut r, rest as u64)?;
                    continue;
                }
                if rest < MAC_LEN || snap_seq > header.head_seq {
                    return Err(Error::InvalidBackup(format!(
                        "snapshot {name} is not valid"
                    )));
                }
                let mac = read_exact_vec(&mut r, MAC_LEN)?;
                let data_len = rest - MAC_LEN;
                if data_len as u64 > snapshot_files.max_bytes() {
                    tracing::warn!(
                        snapshot = %name,
                        bytes = data_len,
                        max_snapshot_bytes = snapshot_files.max_bytes(),
                        "a backup's snapshot is larger than this store takes; left out (the \
                         projection replays the log)"
                    );
                    skip(&mut r, data_len as u64)?;
                    continue;
                }
                let data = read_exact_vec(&mut r, data_len)?;
                if key.snapshot_mac(&name, snap_seq, &data).as_slice() != mac.as_slice() {
                    return Err(Error::InvalidBackup(format!(
                        "snapshot {name} fails its MAC"
                    )));
                }
                snapshot_files.save(&key, &name, snap_seq, &data)?;
                snapshots += 1;
            }
            TAG_END => {
                let payload = read_exact_vec(&mut r, len)?;
                if payload.as_slice() != digest_so_far.as_slice() {
                    return Err(Error::InvalidBackup("checksum mismatch".into()));
                }
                break;
            }
            t => return Err(Error::InvalidBackup(format!("unknown frame tag {t}"))),
        }
    }
    if seq != header.head_seq {
        return Err(Error::InvalidBackup(format!(
            "header announces {} events, file holds {seq}",
            header.head_seq
        )));
    }
    if !batch.is_empty() {
        backend.commit(&batch, Anchor { seq, mac: prev })?;
    }
    backend.flush()?;
    Ok(RestoreReport {
        head_seq: seq,
        snapshots,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Durability, NewEvent};

    /// (payload length, record count) of every frame of segment 1 in `store`.
    fn frames(store: &Path) -> Vec<(usize, usize)> {
        let bytes = std::fs::read(store.join("segments").join("0000000001")).unwrap();
        let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
        let (mut at, mut out) = (16, Vec::new());
        while at + 24 <= bytes.len() && u32_at(at) != 0 {
            let len = u32_at(at) as usize;
            out.push((len, u32_at(at + 4) as usize));
            at += 24 + len;
        }
        out
    }

    /// A restore's batch is one segment frame: it ends once it holds its byte
    /// bound, not only at 1,000 records (1,000 records of 64 MiB would make
    /// one frame of 64 GiB).
    #[tokio::test]
    async fn a_restore_ends_a_batch_once_it_holds_its_byte_bound() {
        let d = tempfile::tempdir().unwrap();
        let opts = || StoreOptions::new(b"k").durability(Durability::Buffered);
        let s = EventStore::open(d.path().join("s"), opts()).unwrap();
        let pad = "x".repeat(1000);
        let events = (0..100)
            .map(|n| NewEvent::new("s", "t.x", serde_json::json!({ "n": n, "pad": pad })))
            .collect();
        s.append(events).await.unwrap();
        let file = d.path().join("b.lhbk");
        s.backup(&file).unwrap();
        let record = s.raw_record(1).unwrap().unwrap().len();
        let bound = 10 * record;
        let staging = d.path().join("r");
        let rep = restore_into(&file, &staging, &opts(), bound).unwrap();
        assert_eq!(rep.head_seq, 100);
        let frames = frames(&staging);
        assert_eq!(frames.iter().map(|f| f.1).sum::<usize>(), 100);
        assert!(frames.len() >= 9, "{frames:?}");
        assert!(
            frames.iter().all(|&(len, _)| len < bound + 2 * record),
            "{frames:?}"
        );
        let r = EventStore::open(&staging, opts()).unwrap();
        assert!(r.verify().unwrap().ok());
        assert_eq!(r.get(100).unwrap().unwrap().data["n"], 99);
    }
}
