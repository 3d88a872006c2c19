//! What the store leaves on disk: the modes of its files, the partial files a
//! crash leaves, a restore's staging directory, and the bound on snapshots.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use lighthouse_event_store::{Durability, Error, EventStore, NewEvent, StoreOptions};
use serde_json::json;

const KEY: &[u8] = b"test key: not a secret, 32 bytes";

fn opts() -> StoreOptions {
    StoreOptions::new(KEY).durability(Durability::Buffered)
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// The names in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut n: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    n.sort();
    n
}

/// A store in `dir` with `events` events and a snapshot `p`, backed up to
/// `file`.
async fn backed_up(dir: &Path, events: u64, file: &Path) -> EventStore {
    let s = EventStore::open(dir, opts()).unwrap();
    for n in 0..events {
        s.append_one(NewEvent::new("s", "t.x", json!({ "n": n })))
            .await
            .unwrap();
    }
    s.save_snapshot("p", events, b"projection".to_vec())
        .await
        .unwrap();
    s.backup(file).unwrap();
    s
}

/// Every directory the store creates is 0700 and every segment and snapshot
/// file 0600 (the store holds the whole log, as its backups do), in a store
/// opened and in one restored.
#[tokio::test]
async fn a_store_and_a_restored_store_are_readable_by_their_owner_only() {
    // A umask that lets group and others read: under 077 every mode checked
    // here comes out right without the store doing anything. The umask is
    // the process's: every test of this binary runs under 022 from here, and
    // none depends on a stricter one.
    // SAFETY: umask(2) cannot fail and touches no memory.
    unsafe { libc::umask(0o022) };
    let d = tempfile::tempdir().unwrap();
    let check = |store: &Path| {
        assert_eq!(mode(store), 0o700, "{}", store.display());
        for sub in ["segments", "snapshots"] {
            let sub = store.join(sub);
            assert_eq!(mode(&sub), 0o700, "{}", sub.display());
            let files = names(&sub);
            assert!(!files.is_empty());
            for f in files {
                assert_eq!(mode(&sub.join(&f)), 0o600, "{f}");
            }
        }
    };
    let file = d.path().join("b.lhbk");
    let s = backed_up(&d.path().join("s"), 3, &file).await;
    check(&d.path().join("s"));
    let (r, _) = EventStore::restore(&file, d.path().join("r"), opts()).unwrap();
    check(&d.path().join("r"));
    // Restored into a data directory that does not exist yet: it holds the
    // store, and is made the owner's only too.
    let data = d.path().join("data");
    let (r2, _) = EventStore::restore(&file, data.join("r"), opts()).unwrap();
    assert_eq!(mode(&data), 0o700);
    check(&data.join("r"));
    drop((s, r, r2));
}

/// A directory named like the old fixed staging directory (`<dir>.restoring`)
/// is someone else's: a restore leaves it as it is, and leaves nothing of its
/// own beside `dir`.
#[tokio::test]
async fn a_restore_never_removes_a_directory_it_did_not_create() {
    let d = tempfile::tempdir().unwrap();
    let file = d.path().join("b.lhbk");
    drop(backed_up(&d.path().join("s"), 5, &file).await);
    let theirs = d.path().join("r.restoring");
    std::fs::create_dir(&theirs).unwrap();
    std::fs::write(theirs.join("keep"), b"mine").unwrap();
    let (r, rep) = EventStore::restore(&file, d.path().join("r"), opts()).unwrap();
    assert_eq!(rep.head_seq, 5);
    assert!(r.verify().unwrap().ok());
    assert_eq!(std::fs::read(theirs.join("keep")).unwrap(), b"mine");
    assert_eq!(names(d.path()), ["b.lhbk", "r", "r.restoring", "s"]);
}

/// When the complete restore cannot be renamed into place, its staging
/// directory (a full copy of the log) is removed and the error returned.
#[tokio::test]
async fn a_restore_that_cannot_be_put_in_place_leaves_no_copy_behind() {
    let d = tempfile::tempdir().unwrap();
    let file = d.path().join("b.lhbk");
    drop(backed_up(&d.path().join("s"), 5, &file).await);
    // A symlink to an empty directory passes the emptiness check, but a
    // directory cannot be renamed over a symlink.
    let target = d.path().join("empty");
    std::fs::create_dir(&target).unwrap();
    let link = d.path().join("link");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    assert!(EventStore::restore(&file, &link, opts()).is_err());
    assert_eq!(names(d.path()), ["b.lhbk", "empty", "link", "s"]);
    assert!(names(&target).is_empty());
}

/// Two restores into one directory at once: each works in a staging
/// directory of its own, one puts its store in place and the other is told
/// the directory is no longer empty; nothing else is left.
#[tokio::test]
async fn concurrent_restores_into_one_directory_give_one_whole_store() {
    let d = tempfile::tempdir().unwrap();
    let file = d.path().join("b.lhbk");
    drop(backed_up(&d.path().join("s"), 2_000, &file).await);
    let into = d.path().join("r");
    let results: Vec<_> = std::thread::scope(|scope| {
        let runs: Vec<_> = (0..2)
            .map(|_| scope.spawn(|| EventStore::restore(&file, &into, opts())))
            .collect();
        runs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut stores = Vec::new();
    let mut refused = 0;
    for r in results {
        match r {
            Ok((store, rep)) => stores.push((store, rep)),
            Err(Error::NotEmpty { dir }) => {
                assert_eq!(dir, into);
                refused += 1;
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!((stores.len(), refused), (1, 1));
    let (store, rep) = stores.pop().unwrap();
    assert_eq!(rep.head_seq, 2_000);
    let v = store.verify().unwrap();
    assert!(v.ok() && v.checked == 2_000, "{v:?}");
    assert_eq!(store.load_snapshot("p").unwrap().unwrap().seq, 2_000);
    drop(store);
    assert_eq!(names(d.path()), ["b.lhbk", "r", "s"]);
}

/// The partial snapshot files a crash leaves are removed when the store
/// opens; nothing else in the folder is touched.
#[tokio::test]
async fn partial_snapshot_files_left_by_a_crash_are_removed_on_open() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("s");
    let s = EventStore::open(&dir, opts()).unwrap();
    s.append_one(NewEvent::new("s", "t.x", json!(1)))
        .await
        .unwrap();
    s.save_snapshot("p", 1, b"whole".to_vec()).await.unwrap();
    drop(s);
    let snaps = dir.join("snapshots");
    std::fs::write(snaps.join("p.snap.partial"), vec![7u8; 100_000]).unwrap();
    std::fs::write(snaps.join("q.snap.partial"), b"cut short").unwrap();
    std::fs::write(snaps.join("notes.txt"), b"not the store's").unwrap();
    std::fs::write(snaps.join("not a name.snap.partial"), b"not the store's").unwrap();
    let s = EventStore::open(&dir, opts()).unwrap();
    assert_eq!(
        names(&snaps),
        ["not a name.snap.partial", "notes.txt", "p.snap"]
    );
    assert_eq!(s.load_snapshot("p").unwrap().unwrap().data, b"whole");
}

/// `max_snapshot_bytes` bounds a snapshot everywhere it is held whole: a
/// larger save is refused, a larger file is damage to load and is left out of
/// a backup, and a restore leaves out a backup's snapshot larger than the
/// restoring store takes.
#[tokio::test]
async fn snapshots_are_bounded_on_save_load_backup_and_restore() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("s");
    let s = EventStore::open(&dir, opts().max_snapshot_bytes(100)).unwrap();
    s.append_one(NewEvent::new("s", "t.x", json!(1)))
        .await
        .unwrap();
    match s.save_snapshot("p", 1, vec![1u8; 101]).await {
        Err(Error::TooLarge {
            what: "snapshot",
            actual: 101,
            limit: 100,
        }) => {}
        other => panic!("{other:?}"),
    }
    assert!(s.snapshot_names().unwrap().is_empty());
    assert!(!dir.join("snapshots").exists(), "nothing was written");
    s.save_snapshot("p", 1, vec![1u8; 100]).await.unwrap();
    s.save_snapshot("q", 1, vec![2u8; 10]).await.unwrap();
    drop(s);

    let file = d.path().join("b.lhbk");
    let small = EventStore::open(&dir, opts().max_snapshot_bytes(50)).unwrap();
    assert!(matches!(
        small.load_snapshot("p"),
        Err(Error::Corrupt { .. })
    ));
    assert_eq!(small.load_snapshot("q").unwrap().unwrap().data, [2u8; 10]);
    assert_eq!(small.backup(&file).unwrap().snapshots, 1);
    drop(small);

    let s = EventStore::open(&dir, opts().max_snapshot_bytes(100)).unwrap();
    assert_eq!(s.backup(&file).unwrap().snapshots, 2);
    drop(s);
    let (r, rep) =
        EventStore::restore(&file, d.path().join("r"), opts().max_snapshot_bytes(50)).unwrap();
    assert_eq!((rep.head_seq, rep.snapshots), (1, 1));
    assert_eq!(r.load_snapshot("p").unwrap(), None);
    assert_eq!(r.load_snapshot("q").unwrap().unwrap().data, [2u8; 10]);
    let (r2, rep) = EventStore::restore(&file, d.path().join("r2"), opts()).unwrap();
    assert_eq!(rep.snapshots, 2);
    assert_eq!(r2.load_snapshot("p").unwrap().unwrap().data, [1u8; 100]);
}
