//! Tampering with the stored records is detected by `verify`, which names the
//! first bad position.

use lighthouse_event_store::{Durability, EventStore, NewEvent, StoreOptions};
use serde_json::json;

const KEY: &[u8] = b"tamper test key, 32 bytes long..";

async fn store_with(n: u64) -> (EventStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let s = EventStore::open(
        dir.path(),
        StoreOptions::new(KEY).durability(Durability::Buffered),
    )
    .unwrap();
    for i in 0..n {
        s.append_one(NewEvent::new(
            format!("s{}", i % 4),
            "t.x",
            json!({"i": i, "text": "hello"}),
        ))
        .await
        .unwrap();
    }
    s.flush().await.unwrap();
    (s, dir)
}

fn reopened(dir: &tempfile::TempDir) -> EventStore {
    EventStore::open(dir.path(), StoreOptions::new(KEY)).unwrap()
}

#[tokio::test]
async fn an_intact_log_verifies() {
    let (s, _d) = store_with(200).await;
    let r = s.verify().unwrap();
    assert!(r.ok());
    assert_eq!((r.checked, r.head_seq), (200, 200));
}

#[tokio::test]
async fn a_flipped_byte_anywhere_in_a_record_is_found() {
    let (s, _d) = store_with(100).await;
    let original = s.raw_record(37).unwrap().unwrap();
    // Header, id, data and MAC bytes.
    for at in [3, 45, original.len() - 40, original.len() - 1] {
        let mut b = original.clone();
        b[at] ^= 0x20;
        s.tamper_raw(37, Some(&b)).unwrap();
        assert_eq!(s.verify().unwrap().first_bad_seq, Some(37), "byte {at}");
    }
    s.tamper_raw(37, Some(&original)).unwrap();
    assert!(s.verify().unwrap().ok());
}

#[tokio::test]
async fn a_changed_record_is_found_after_reopen() {
    let (s, d) = store_with(100).await;
    let mut b = s.raw_record(64).unwrap().unwrap();
    let text = b.windows(5).position(|w| w == b"hello").unwrap();
    b[text..text + 5].copy_from_slice(b"HELLO");
    s.tamper_raw(64, Some(&b)).unwrap();
    drop(s);
    let s = reopened(&d);
    assert_eq!(s.verify().unwrap().first_bad_seq, Some(64));
}

#[tokio::test]
async fn a_deleted_record_is_found() {
    let (s, _d) = store_with(100).await;
    s.tamper_raw(50, None).unwrap();
    assert_eq!(s.verify().unwrap().first_bad_seq, Some(50));
}

#[tokio::test]
async fn deleting_the_last_record_is_found_against_the_anchor() {
    let (s, _d) = store_with(100).await;
    s.tamper_raw(100, None).unwrap();
    assert_eq!(s.verify().unwrap().first_bad_seq, Some(100));
}

#[tokio::test]
async fn swapped_records_are_found() {
    let (s, _d) = store_with(100).await;
    let a = s.raw_record(20).unwrap().unwrap();
    let b = s.raw_record(80).unwrap().unwrap();
    s.tamper_raw(20, Some(&b)).unwrap();
    s.tamper_raw(80, Some(&a)).unwrap();
    assert_eq!(s.verify().unwrap().first_bad_seq, Some(20));
}

#[tokio::test]
async fn a_record_with_garbage_is_found_and_the_store_still_opens() {
    let (s, d) = store_with(100).await;
    s.tamper_raw(10, Some(&[1, 2, 3])).unwrap();
    drop(s);
    let s = reopened(&d);
    assert!(!s.damaged_on_open().is_empty());
    assert_eq!(s.verify().unwrap().first_bad_seq, Some(10));
    // Reads go on; writes are refused, since a stream's next version would be
    // counted without the damaged record and could repeat one already used.
    assert!(s.read_stream("s0", 0, 10).is_ok());
    let w = s
        .append_one(lighthouse_event_store::NewEvent::new(
            "s0",
            "x.y",
            serde_json::json!({}),
        ))
        .await;
    assert!(
        matches!(w, Err(lighthouse_event_store::Error::Damaged { seq: 10 })),
        "{w:?}"
    );
}

#[tokio::test]
async fn reads_report_a_damaged_record_instead_of_skipping_it() {
    use lighthouse_event_store::{Error, Filter, Query};
    let (s, _d) = store_with(40).await;
    s.tamper_raw(21, Some(&[9, 9, 9])).unwrap();
    let by_stream = s.read(&Query {
        limit: 1000,
        ..Query::new(Filter::stream("s0"))
    });
    assert!(
        matches!(by_stream, Err(Error::Corrupt { seq: 21, .. })),
        "{by_stream:?}"
    );
    let scan = s.read(&Query {
        limit: 1000,
        ..Query::default()
    });
    assert!(
        matches!(scan, Err(Error::Corrupt { seq: 21, .. })),
        "{scan:?}"
    );
    // Reads that do not touch the damage still work.
    assert_eq!(
        s.read(&Query {
            after: Some(30),
            ..Query::default()
        })
        .unwrap()
        .events
        .len(),
        10
    );
}

/// A backup checks the records as a restore will: a damaged or shortened log
/// fails the backup at once, leaving no file (nor a partial one) behind.
#[tokio::test]
async fn a_backup_of_a_damaged_log_fails_and_leaves_nothing() {
    let (s, d) = store_with(60).await;
    let out = d.path().join("b.lhbackup");
    // The backup's own files: the target, and its temporary `.b.lhbackup.*`.
    let backup_files = |d: &tempfile::TempDir| {
        std::fs::read_dir(d.path())
            .unwrap()
            .filter_map(|e| e.unwrap().file_name().into_string().ok())
            .filter(|n| n.contains("b.lhbackup"))
            .collect::<Vec<_>>()
    };
    let mut b = s.raw_record(30).unwrap().unwrap();
    let last = b.len() - 1;
    b[last] ^= 1;
    s.tamper_raw(30, Some(&b)).unwrap();
    assert!(s.backup(&out).is_err());
    assert!(backup_files(&d).is_empty(), "{:?}", backup_files(&d));
    // Undamaged again, then the last record gone.
    let (s, d) = store_with(60).await;
    let out = d.path().join("b.lhbackup");
    assert!(s.backup(&out).is_ok());
    std::fs::remove_file(&out).unwrap();
    s.tamper_raw(60, None).unwrap();
    assert!(s.backup(&out).is_err());
    assert!(backup_files(&d).is_empty(), "{:?}", backup_files(&d));
}

/// A failed backup leaves a previous good backup at the target as it was.
#[tokio::test]
async fn a_failed_backup_keeps_the_previous_file() {
    let (s, d) = store_with(20).await;
    let out = d.path().join("b.lhbackup");
    s.backup(&out).unwrap();
    let good = std::fs::read(&out).unwrap();
    let mut b = s.raw_record(10).unwrap().unwrap();
    let last = b.len() - 1;
    b[last] ^= 1;
    s.tamper_raw(10, Some(&b)).unwrap();
    assert!(s.backup(&out).is_err());
    assert_eq!(std::fs::read(&out).unwrap(), good);
}
