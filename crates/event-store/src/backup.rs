//! Online backup to a single file, and restore into a new store.
//!
//! # File format (version 1)
//!
//! ```text
//! magic     10 bytes  "LHBACKUP" 0x01 '\n'
//! header    u32 LE length, then JSON:
//!           {"format":1,"head_seq":N,"created_at":"<RFC 3339>","key_check":"<hex>"}
//! frames    repeated: tag (1 byte), length (u32 LE), payload (a snapshot too
//!           large for a u32 length is left out with a warning: snapshots are
//!           derived from the log, which restores without them)
//!           tag 1 record:   the record exactly as stored (see `codec`), seq 1..=N in order
//!           tag 2 snapshot: name length (u16 LE), name, seq (u64 LE), data
//!           tag 0 end:      SHA-256 of every byte of the file before this tag
//! ```
//!
//! Records keep their MACs, so a restored store verifies with the same key, and a
//! restore checks the chain and the checksum before the new store is put in place.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::backend::{Anchor, Backend, LogMode, RecordBatch, SledBackend};
use crate::codec::{ChainKey, GENESIS, MAC_LEN, RecordView};
use crate::error::{Error, Result};
use crate::options::StoreOptions;
use crate::store::EventStore;

const MAGIC: &[u8; 10] = b"LHBACKUP\x01\n";
const TAG_END: u8 = 0;
const TAG_RECORD: u8 = 1;
const TAG_SNAPSHOT: u8 = 2;
/// Largest record frame a restore accepts (a record is at most a few MiB).
const MAX_RECORD_FRAME: usize = 64 << 20;
/// Largest snapshot frame: what a u32 length can say. A snapshot holds a
/// projection (the elicitation service's is ~60 MB at its default limits), so
/// it is not held to the record bound; a restore still never allocates more
/// than the file has left.
const MAX_SNAPSHOT_FRAME: usize = u32::MAX as usize;
const RESTORE_BATCH: usize = 1000;
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
    w.write_all(&[tag])?;
    w.write_all(&(len as u32).to_le_bytes())?;
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
    /// synced. On any error the temporary file is removed and `path` is left as
    /// it was. A directory as `path` is refused ([`Error::BackupFile`]).
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
        for (name, seq, data) in self.all_snapshots()? {
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

    fn all_snapshots(&self) -> Result<Vec<(String, u64, Vec<u8>)>> {
        // Snapshot names are listed through the metadata keys they are stored under.
        let mut out = Vec::new();
        for name in self.snapshot_names()? {
            match self.load_snapshot(&name) {
                Ok(Some(s)) => out.push((name, s.seq, s.data)),
                Ok(None) => {}
                // A snapshot is derived from the log: a damaged one is left out
                // (the restored projection replays the log) rather than failing
                // the backup of the log itself.
                Err(Error::Corrupt { reason, .. }) => {
                    tracing::warn!(snapshot = %name, %reason, "damaged snapshot left out of the backup");
                }
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Restores the backup at `file` into the new directory `dir` (which must not
    /// exist or be empty) and opens it. The data is checked (format, key, every
    /// MAC of the chain, the checksum) and written to a sibling directory first,
    /// which is renamed into place only when complete: a failed restore leaves
    /// nothing behind at `dir`.
    pub fn restore(
        file: impl AsRef<Path>,
        dir: impl AsRef<Path>,
        options: StoreOptions,
    ) -> Result<(EventStore, RestoreReport)> {
        let dir = dir.as_ref();
        if dir.exists() && std::fs::read_dir(dir)?.next().is_some() {
            return Err(Error::NotEmpty {
                dir: dir.to_path_buf(),
            });
        }
        let staging = sibling(dir, "restoring");
        if staging.exists() {
            std::fs::remove_dir_all(&staging)?;
        }
        let result = restore_into(file.as_ref(), &staging, &options);
        let report = match result {
            Ok(r) => r,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&staging);
                return Err(e);
            }
        };
        // The files are synced; their directory entries too, before the
        // rename makes the store appear (a power loss after it must not find
        // a store whose segments folder is missing).
        if let Err(e) = sync_dirs(&staging) {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(e);
        }
        if dir.exists() {
            std::fs::remove_dir(dir)?;
        }
        std::fs::rename(&staging, dir)?;
        sync_parent(dir)?;
        let store = EventStore::open(dir, options)?;
        Ok((store, report))
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

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(format!(".{suffix}"));
    path.with_file_name(name)
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

fn restore_into(file: &Path, staging: &Path, options: &StoreOptions) -> Result<RestoreReport> {
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
    std::fs::create_dir_all(staging)?;
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
    let snapshot_files = crate::snapshot::SnapshotFiles::new(staging);
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
        let payload = read_exact_vec(&mut r, len)?;
        match tag {
            TAG_RECORD => {
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
                if batch.len() == RESTORE_BATCH {
                    backend.commit(&batch, Anchor { seq, mac: prev })?;
                    batch.reset(seq + 1);
                }
            }
            TAG_SNAPSHOT => {
                if payload.len() < 2 {
                    return Err(Error::InvalidBackup("short snapshot frame".into()));
                }
                let nl = u16::from_le_bytes([payload[0], payload[1]]) as usize;
                if payload.len() < 2 + nl + 8 {
                    return Err(Error::InvalidBackup("short snapshot frame".into()));
                }
                let name = std::str::from_utf8(&payload[2..2 + nl])
                    .map_err(|_| Error::InvalidBackup("snapshot name is not UTF-8".into()))?;
                crate::model::validate_token(name, crate::error::Field::SnapshotName).map_err(
                    |_| Error::InvalidBackup(format!("snapshot name {name:?} is not valid")),
                )?;
                let mut s = [0u8; 8];
                s.copy_from_slice(&payload[2 + nl..2 + nl + 8]);
                let snap_seq = u64::from_le_bytes(s);
                let rest = &payload[2 + nl + 8..];
                if header.format == 1 {
                    // Unauthenticated: the projections replay the log instead.
                    tracing::warn!(snapshot = %name, "a format 1 backup's snapshot carries no MAC; left out");
                    continue;
                }
                if rest.len() < MAC_LEN || snap_seq > header.head_seq {
                    return Err(Error::InvalidBackup(format!(
                        "snapshot {name} is not valid"
                    )));
                }
                let (mac, data) = rest.split_at(MAC_LEN);
                if key.snapshot_mac(name, snap_seq, data).as_slice() != mac {
                    return Err(Error::InvalidBackup(format!(
                        "snapshot {name} fails its MAC"
                    )));
                }
                snapshot_files.save(&key, name, snap_seq, data)?;
                snapshots += 1;
            }
            TAG_END => {
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
