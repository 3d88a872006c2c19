//! Projection snapshots, one file each in `<store dir>/snapshots/`.
//!
//! Snapshots used to be sled metadata values. A projection of 100,000
//! elicitations is about 59 MB, and sled's next flush of such a value held up
//! the writer's own sled inserts (the chunk locations of every commit) for
//! 160–200 ms: every append in flight waited (docs/PERFORMANCE.md, session 7).
//! As files they never touch sled, and they are written on a blocking thread.
//!
//! File layout (all integers big-endian):
//!
//! ```text
//! magic "LHSNAP01" | seq u64 | data length u64 | mac [u8; 32] | data
//! ```
//!
//! `mac` is an HMAC-SHA256 under the store's chain key of the name, the seq and
//! the data ([`ChainKey::snapshot_mac`]), so a snapshot edited on disk, or
//! copied under another name, is refused like a damaged record: the projection
//! is then rebuilt from the log, which stays the source of truth. A file is
//! written beside its final name (`<name>.snap.partial`), synced, renamed into
//! place and the directory synced, so a crash leaves the old snapshot or the
//! new one, never a mix; the partial file a crash leaves is removed when the
//! store next opens ([`SnapshotFiles::remove_partials`]).
//!
//! A snapshot is held whole in memory to save, load or back it up, so its size
//! is bounded ([`StoreOptions::max_snapshot_bytes`](crate::StoreOptions::max_snapshot_bytes)):
//! a larger save is `TooLarge`, a larger file `Corrupt` to load (nothing is
//! allocated for it). The directory is 0700 and the files 0600
//! (`crate::private`).

use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::path::{Path, PathBuf};

use crate::codec::{ChainKey, MAC_LEN};
use crate::error::{Error, Result};
use crate::store::Snapshot;

/// The directory under the store's directory.
pub(crate) const DIR: &str = "snapshots";
const MAGIC: &[u8; 8] = b"LHSNAP01";
const SUFFIX: &str = ".snap";
const PARTIAL_SUFFIX: &str = ".snap.partial";
const HEADER_LEN: usize = MAGIC.len() + 8 + 8 + MAC_LEN;

/// A snapshot is written and synced this many bytes at a time.
///
/// A disk with a write-back cache (here the host's, under a virtio disk) makes
/// a sync wait for everything written before it. Written whole, a 59 MB
/// snapshot sat in that cache and the log's next commit sync waited for it:
/// the slowest commit sync of a 10 s run at 15,000 round trips/s was 20-31 ms
/// with the whole write and 6.6-8.0 ms paced, and the round trips' p99 went
/// from 24-81 ms to 5-7 ms (docs/PERFORMANCE.md, session 11). Synced in steps,
/// at most one step is ever ahead of a commit's sync.
const PACE_BYTES: usize = 256 << 10;

/// Writes `data` to `f` in [`PACE_BYTES`] steps, each synced before the next
/// is written; what was written before `data` is synced with the first step.
fn write_paced(f: &mut File, data: &[u8]) -> std::io::Result<()> {
    for step in data.chunks(PACE_BYTES) {
        f.write_all(step)?;
        f.sync_data()?;
    }
    if data.is_empty() {
        f.sync_data()?;
    }
    Ok(())
}

/// The snapshot files of one store.
#[derive(Debug, Clone)]
pub(crate) struct SnapshotFiles {
    dir: PathBuf,
    /// Held by a save: two saves of one name would share its partial file.
    saving: std::sync::Arc<parking_lot::Mutex<()>>,
    /// Largest snapshot data saved or loaded.
    max_bytes: u64,
}

impl SnapshotFiles {
    /// The snapshots of the store in `store_dir` (the directory is created by
    /// the first save), each at most `max_bytes` of data.
    pub(crate) fn new(store_dir: &Path, max_bytes: u64) -> Self {
        SnapshotFiles {
            dir: store_dir.join(DIR),
            saving: Default::default(),
            max_bytes,
        }
    }

    /// The largest snapshot this store saves or loads.
    pub(crate) fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}{SUFFIX}"))
    }

    /// Writes the snapshot `name` durably, replacing an older one. `name` must
    /// be a valid token (checked by the caller): it has no `/`. Data longer
    /// than the bound is `TooLarge`.
    pub(crate) fn save(&self, key: &ChainKey, name: &str, seq: u64, data: &[u8]) -> Result<()> {
        if data.len() as u64 > self.max_bytes {
            return Err(Error::TooLarge {
                what: "snapshot",
                actual: data.len(),
                limit: usize::try_from(self.max_bytes).unwrap_or(usize::MAX),
            });
        }
        let _one_at_a_time = self.saving.lock();
        crate::private::create_dir(&self.dir)?;
        let tmp = self.dir.join(format!("{name}{PARTIAL_SUFFIX}"));
        let written = (|| {
            // A fresh file, so that it gets the store's mode (a leftover keeps
            // its own) and a symlink in its place is not written through.
            match std::fs::remove_file(&tmp) {
                Err(e) if e.kind() != ErrorKind::NotFound => return Err(e),
                _ => {}
            }
            let mut f = crate::private::file_options()
                .write(true)
                .create_new(true)
                .open(&tmp)?;
            let mut header = [0u8; HEADER_LEN];
            header[..8].copy_from_slice(MAGIC);
            header[8..16].copy_from_slice(&seq.to_be_bytes());
            header[16..24].copy_from_slice(&(data.len() as u64).to_be_bytes());
            header[24..].copy_from_slice(&key.snapshot_mac(name, seq, data));
            f.write_all(&header)?;
            write_paced(&mut f, data)
        })();
        if let Err(e) = written.and_then(|()| std::fs::rename(&tmp, self.path(name))) {
            let _ = std::fs::remove_file(&tmp);
            return Err(e.into());
        }
        File::open(&self.dir)?.sync_all()?;
        Ok(())
    }

    /// Removes the partial files (`<name>.snap.partial`, for a valid name) a
    /// save cut short by a crash left behind, and returns how many. Called on
    /// open, under the store's lock, before any save can run; other files are
    /// left alone, and a removal that fails is logged, not fatal (the next
    /// save of that name replaces the file).
    pub(crate) fn remove_partials(&self) -> Result<usize> {
        let mut removed = 0;
        for entry in self.entries()? {
            let entry = entry?;
            let file_name = entry.file_name();
            let is_partial = file_name
                .to_str()
                .and_then(|f| f.strip_suffix(PARTIAL_SUFFIX))
                .is_some_and(|name| {
                    crate::model::validate_token(name, crate::error::Field::SnapshotName).is_ok()
                });
            if !is_partial || !entry.file_type()?.is_file() {
                continue;
            }
            match std::fs::remove_file(entry.path()) {
                Ok(()) => removed += 1,
                Err(e) => tracing::warn!(
                    file = %entry.path().display(),
                    error = %e,
                    "event store: could not remove a snapshot's partial file left by a crash"
                ),
            }
        }
        Ok(removed)
    }

    /// The snapshot `name`, `None` if there is no file. A file that is short,
    /// of another format, or whose MAC does not match is `Corrupt`.
    pub(crate) fn load(&self, key: &ChainKey, name: &str) -> Result<Option<Snapshot>> {
        let mut f = match File::open(self.path(name)) {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let corrupt = |reason: String| Error::Corrupt { seq: 0, reason };
        let file_len = f.metadata()?.len();
        let mut header = [0u8; HEADER_LEN];
        if file_len < HEADER_LEN as u64 {
            return Err(corrupt(format!("snapshot {name} is truncated")));
        }
        f.read_exact(&mut header)?;
        if &header[..8] != MAGIC {
            return Err(corrupt(format!("snapshot {name} is not a snapshot file")));
        }
        let seq = u64::from_be_bytes(header[8..16].try_into().unwrap_or([0; 8]));
        let len = u64::from_be_bytes(header[16..24].try_into().unwrap_or([0; 8]));
        if len > self.max_bytes {
            return Err(corrupt(format!(
                "snapshot {name} holds {len} bytes, more than the store's bound of {} \
                 (max_snapshot_bytes)",
                self.max_bytes
            )));
        }
        if len != file_len - HEADER_LEN as u64 {
            return Err(corrupt(format!(
                "snapshot {name} holds {} bytes of data, its header says {len}",
                file_len - HEADER_LEN as u64
            )));
        }
        let len =
            usize::try_from(len).map_err(|_| corrupt(format!("snapshot {name} is too large")))?;
        let mut data = Vec::new();
        data.try_reserve_exact(len).map_err(|_| {
            corrupt(format!(
                "snapshot {name} ({len} bytes) does not fit in memory"
            ))
        })?;
        f.take(len as u64).read_to_end(&mut data)?;
        if data.len() != len {
            return Err(corrupt(format!("snapshot {name} is truncated")));
        }
        if key.snapshot_mac(name, seq, &data)[..] != header[24..] {
            return Err(corrupt(format!("snapshot {name} fails its MAC check")));
        }
        Ok(Some(Snapshot { seq, data }))
    }

    /// Removes every snapshot that claims a position past `head`, and returns
    /// their names and positions.
    ///
    /// Such a snapshot reflects records the log no longer holds: in buffered
    /// mode a power loss can take the records after the last segment sync,
    /// while a snapshot saved (and synced) after them survives. Left in place it
    /// would be loaded once new records have taken those positions again. Only
    /// a file that passes its MAC check is removed (one that does not is left
    /// for `load` to report as damaged); a removal that fails is logged, not
    /// fatal: `load`'s callers check the position against the head as well.
    pub(crate) fn remove_past(&self, key: &ChainKey, head: u64) -> Result<Vec<(String, u64)>> {
        let mut removed = Vec::new();
        for name in self.names()? {
            let mut header = [0u8; HEADER_LEN];
            let read = File::open(self.path(&name)).and_then(|mut f| f.read_exact(&mut header));
            if read.is_err() || &header[..8] != MAGIC {
                continue;
            }
            let seq = u64::from_be_bytes(header[8..16].try_into().unwrap_or([0; 8]));
            if seq <= head || !matches!(self.load(key, &name), Ok(Some(s)) if s.seq == seq) {
                continue;
            }
            match std::fs::remove_file(self.path(&name)) {
                Ok(()) => removed.push((name, seq)),
                Err(e) => tracing::warn!(
                    name,
                    seq,
                    head,
                    error = %e,
                    "event store: could not remove a snapshot past the log's head"
                ),
            }
        }
        if !removed.is_empty() {
            File::open(&self.dir)?.sync_all()?;
        }
        Ok(removed)
    }

    /// The directory's entries; none before the first save created it.
    fn entries(&self) -> Result<impl Iterator<Item = std::io::Result<std::fs::DirEntry>>> {
        match std::fs::read_dir(&self.dir) {
            Ok(e) => Ok(Some(e).into_iter().flatten()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None.into_iter().flatten()),
            Err(e) => Err(e.into()),
        }
    }

    /// Bytes held by the snapshot files (the partial file of a save in
    /// progress included; those a crash left are removed on open).
    pub(crate) fn size_on_disk(&self) -> Result<u64> {
        let mut total = 0;
        for entry in self.entries()? {
            total += entry?.metadata()?.len();
        }
        Ok(total)
    }

    /// Names of the snapshot files (partial files left by a crash are not
    /// snapshots).
    pub(crate) fn names(&self) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for entry in self.entries()? {
            let entry = entry?;
            if let Some(name) = entry
                .file_name()
                .to_str()
                .and_then(|f| f.strip_suffix(SUFFIX))
                && crate::model::validate_token(name, crate::error::Field::SnapshotName).is_ok()
            {
                out.push(name.to_owned());
            }
        }
        out.sort();
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files() -> (tempfile::TempDir, SnapshotFiles) {
        let d = tempfile::tempdir().unwrap();
        let f = SnapshotFiles::new(d.path(), 8 << 20);
        (d, f)
    }

    #[test]
    fn a_snapshot_written_in_several_steps_reads_back_whole() {
        let (_d, f) = files();
        let key = ChainKey::new(b"k");
        let data: Vec<u8> = (0..PACE_BYTES * 3 + 17).map(|i| (i % 251) as u8).collect();
        f.save(&key, "p", 11, &data).unwrap();
        let s = f.load(&key, "p").unwrap().unwrap();
        assert_eq!((s.seq, s.data.len()), (11, data.len()));
        assert!(s.data == data);
    }

    #[test]
    fn save_load_replace_and_list() {
        let (_d, f) = files();
        let key = ChainKey::new(b"k");
        assert_eq!(f.load(&key, "p").unwrap(), None);
        assert!(f.names().unwrap().is_empty());
        f.save(&key, "p", 7, b"one").unwrap();
        f.save(&key, "p", 9, b"two").unwrap();
        f.save(&key, "q", 1, b"").unwrap();
        let s = f.load(&key, "p").unwrap().unwrap();
        assert_eq!((s.seq, s.data.as_slice()), (9, &b"two"[..]));
        assert_eq!(f.load(&key, "q").unwrap().unwrap().data, b"");
        assert_eq!(f.names().unwrap(), ["p", "q"]);
        assert_eq!(f.size_on_disk().unwrap(), 2 * HEADER_LEN as u64 + 3);
    }

    #[test]
    fn damage_wrong_key_and_renaming_are_refused() {
        let (d, f) = files();
        let key = ChainKey::new(b"k");
        f.save(&key, "p", 3, b"projection bytes").unwrap();
        let path = d.path().join(DIR).join("p.snap");
        // Another key.
        assert!(matches!(
            f.load(&ChainKey::new(b"other"), "p"),
            Err(Error::Corrupt { .. })
        ));
        // The same bytes under another name.
        std::fs::copy(&path, d.path().join(DIR).join("r.snap")).unwrap();
        assert!(matches!(f.load(&key, "r"), Err(Error::Corrupt { .. })));
        // One data byte flipped.
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        assert!(matches!(f.load(&key, "p"), Err(Error::Corrupt { .. })));
        // Truncated, in the header and in the data.
        for cut in [10, HEADER_LEN + 3] {
            std::fs::write(&path, &bytes[..cut]).unwrap();
            assert!(matches!(f.load(&key, "p"), Err(Error::Corrupt { .. })));
        }
        // Not a snapshot at all.
        std::fs::write(&path, vec![b'x'; 100]).unwrap();
        assert!(matches!(f.load(&key, "p"), Err(Error::Corrupt { .. })));
    }

    #[test]
    fn concurrent_saves_of_one_name_leave_one_of_them_whole() {
        let (_d, f) = files();
        let key = ChainKey::new(b"k");
        let data = |b: u8| vec![b; 1 << 20];
        std::thread::scope(|scope| {
            for (seq, b) in [(1, b'a'), (2, b'b')] {
                let (f, key, bytes) = (&f, &key, data(b));
                scope.spawn(move || f.save(key, "p", seq, &bytes).unwrap());
            }
        });
        let snap = f.load(&key, "p").unwrap().unwrap();
        let whole = [(1, data(b'a')), (2, data(b'b'))];
        assert!(
            whole
                .iter()
                .any(|(seq, d)| snap.seq == *seq && snap.data == *d)
        );
    }

    #[test]
    fn a_partial_file_is_not_a_snapshot() {
        let (d, f) = files();
        let key = ChainKey::new(b"k");
        f.save(&key, "p", 1, b"a").unwrap();
        std::fs::write(d.path().join(DIR).join("p.snap.partial"), b"junk").unwrap();
        assert_eq!(f.names().unwrap(), ["p"]);
        assert_eq!(f.load(&key, "p").unwrap().unwrap().data, b"a");
        // The next save replaces the leftover.
        f.save(&key, "p", 2, b"b").unwrap();
        assert_eq!(f.load(&key, "p").unwrap().unwrap().seq, 2);
    }

    #[test]
    fn a_save_whose_rename_fails_leaves_no_partial_file() {
        let (d, f) = files();
        let key = ChainKey::new(b"k");
        // A non-empty directory where the snapshot goes: the rename fails.
        let dir = d.path().join(DIR);
        std::fs::create_dir_all(dir.join("p.snap").join("inside")).unwrap();
        assert!(f.save(&key, "p", 1, b"data").is_err());
        let left: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, ["p.snap"]);
    }

    #[test]
    fn a_partial_file_is_created_afresh_never_written_through_a_symlink() {
        use std::os::unix::fs::PermissionsExt;
        let (d, f) = files();
        let key = ChainKey::new(b"k");
        let elsewhere = d.path().join("elsewhere");
        std::fs::write(&elsewhere, b"not to be touched").unwrap();
        let dir = d.path().join(DIR);
        std::fs::create_dir_all(&dir).unwrap();
        std::os::unix::fs::symlink(&elsewhere, dir.join("p.snap.partial")).unwrap();
        f.save(&key, "p", 1, b"data").unwrap();
        assert_eq!(std::fs::read(&elsewhere).unwrap(), b"not to be touched");
        let file = dir.join("p.snap");
        assert!(!std::fs::symlink_metadata(&file).unwrap().is_symlink());
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, crate::private::FILE_MODE);
        assert_eq!(f.load(&key, "p").unwrap().unwrap().data, b"data");
    }

    #[tokio::test]
    async fn a_snapshot_kept_in_sled_by_an_older_store_is_read_then_superseded() {
        use crate::{EventStore, StoreOptions};
        let d = tempfile::tempdir().unwrap();
        let store = EventStore::open(d.path(), StoreOptions::new(b"k")).unwrap();
        // A snapshot past the head is removed on open: the log reaches 6.
        for n in 0..6 {
            let e = crate::NewEvent::new("s", "t.x", serde_json::json!({ "n": n }));
            store.append_one(e).await.unwrap();
        }
        let mut legacy = 5u64.to_be_bytes().to_vec();
        legacy.extend_from_slice(b"old");
        store.backend().meta_put("snapshot/p", &legacy).unwrap();
        let s = store.load_snapshot("p").unwrap().unwrap();
        assert_eq!((s.seq, s.data.as_slice()), (5, &b"old"[..]));
        assert_eq!(store.snapshot_names().unwrap(), ["p"]);
        store.save_snapshot("p", 6, b"new").await.unwrap();
        assert_eq!(store.backend().meta_get("snapshot/p").unwrap(), None);
        assert_eq!(store.snapshot_names().unwrap(), ["p"]);
        drop(store);
        let store = EventStore::open(d.path(), StoreOptions::new(b"k")).unwrap();
        let s = store.load_snapshot("p").unwrap().unwrap();
        assert_eq!((s.seq, s.data.as_slice()), (6, &b"new"[..]));
        assert!(matches!(
            store.load_snapshot("../p"),
            Err(Error::InvalidName { .. })
        ));
    }

    #[tokio::test]
    async fn on_open_only_authentic_snapshots_past_the_head_are_removed_legacy_ones_too() {
        use crate::{EventStore, StoreOptions};
        let d = tempfile::tempdir().unwrap();
        {
            let store = EventStore::open(d.path(), StoreOptions::new(b"k")).unwrap();
            let mut legacy = 9u64.to_be_bytes().to_vec();
            legacy.extend_from_slice(b"old");
            store.backend().meta_put("snapshot/old", &legacy).unwrap();
            store.save_snapshot("ahead", 9, b"x").await.unwrap();
            store.save_snapshot("forged", 9, b"y").await.unwrap();
        }
        // A file whose MAC fails is damage to report, not to delete.
        let forged = d.path().join(DIR).join("forged.snap");
        let mut bytes = std::fs::read(&forged).unwrap();
        *bytes.last_mut().unwrap() ^= 1;
        std::fs::write(&forged, bytes).unwrap();
        let store = EventStore::open(d.path(), StoreOptions::new(b"k")).unwrap();
        assert!(store.load_snapshot("ahead").unwrap().is_none());
        assert!(store.load_snapshot("old").unwrap().is_none());
        assert!(matches!(
            store.load_snapshot("forged"),
            Err(Error::Corrupt { .. })
        ));
    }
}
