//! The store under storage failures: what each appender is told, and what a
//! reopen finds. Failures are injected into the segment log
//! (`segments::Fault`) or by a backend wrapper ([`Failing`]).

use std::sync::mpsc;

use serde_json::json;

use super::*;
use crate::backend::{RecordBatch, RecordBytes, RecordIter};
use crate::model::ExpectedVersion;
use crate::segments::{Fault, Faults};

const KEY: &[u8] = b"a test key of 32 bytes, or so...";

fn ev(stream: &str, n: i64) -> NewEvent {
    NewEvent::new(stream, "x.y", json!({ "n": n }))
}

fn durable() -> StoreOptions {
    StoreOptions::new(KEY)
}

/// Buffered, with no background checkpoint: only `flush` syncs.
fn buffered() -> StoreOptions {
    StoreOptions::new(KEY)
        .durability(Durability::Buffered)
        .buffered_flush_ms(3_600_000)
}

fn faults(s: &EventStore) -> Arc<Faults> {
    s.shared().backend.faults().unwrap()
}

#[tokio::test]
async fn a_group_whose_sync_failed_is_not_found_by_a_reopen() {
    // The segment is cut back at once; or, when that fails, by the next open
    // from the marker it leaves.
    for cut_fails in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = EventStore::open(dir.path(), durable()).unwrap();
            s.append_one(ev("a", 1)).await.unwrap();
            // The sync fails; the frame stays in the file, as a failed
            // writeback leaves it in the page cache.
            faults(&s).arm(Fault::Sync);
            if cut_fails {
                faults(&s).arm(Fault::Cut);
            }
            let r = s.append(vec![ev("a", 2), ev("b", 3)]).await;
            assert!(matches!(r, Err(Error::WriteFailed { .. })), "{r:?}");
            let r = s.append_one(ev("a", 4)).await;
            assert!(matches!(r, Err(Error::Poisoned)), "{r:?}");
        }
        let marker = dir.path().join("segments/FAILED");
        assert_eq!(marker.exists(), cut_fails);
        // Before the fix the reopen found the group's frame, chaining, and
        // indexed it: bytes the disk may never have received.
        let s = EventStore::open(dir.path(), durable()).unwrap();
        assert!(!marker.exists(), "removed once honoured");
        assert_eq!(s.head_seq(), 1);
        assert_eq!(s.stream_version("b"), None);
        assert!(s.get(2).unwrap().is_none());
        let next = s.append_one(ev("a", 5)).await.unwrap();
        assert_eq!((next.seq, next.version), (2, 1));
        assert!(s.verify().unwrap().ok());
        drop(s);
        let s = EventStore::open(dir.path(), durable()).unwrap();
        assert_eq!(s.head_seq(), 2, "what followed the failure is kept");
        assert_eq!(s.get(2).unwrap().unwrap().data, json!({ "n": 5 }));
    }
}

#[tokio::test]
async fn a_failure_that_cannot_be_undone_is_reported_as_an_unknown_outcome() {
    // A sync failing with its cut and the marker, or sled failing after the
    // frame was synced.
    let cases: [&[Fault]; 2] = [&[Fault::Sync, Fault::Cut, Fault::Marker], &[Fault::Index]];
    for armed in cases {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = EventStore::open(dir.path(), durable()).unwrap();
            s.append_one(ev("a", 1)).await.unwrap();
            for &f in armed {
                faults(&s).arm(f);
            }
            let r = s.append_one(ev("a", 2)).await;
            assert!(
                matches!(r, Err(Error::OutcomeUnknown { .. })),
                "{armed:?}: {r:?}"
            );
        }
        // Rightly not "nothing written": the reopen finds it (its bytes were
        // in the file).
        let s = EventStore::open(dir.path(), durable()).unwrap();
        assert_eq!(s.head_seq(), 2, "{armed:?}");
        assert!(s.verify().unwrap().ok());
    }
}

#[tokio::test]
async fn buffered_mode_cuts_what_a_failed_sync_did_not_make_durable() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = EventStore::open(dir.path(), buffered()).unwrap();
        for n in 1..=3 {
            s.append_one(ev("a", n)).await.unwrap();
        }
        s.flush().await.unwrap();
        // Acknowledged, not synced yet.
        for n in 4..=6 {
            s.append_one(ev("a", n)).await.unwrap();
        }
        faults(&s).arm(Fault::Sync);
        assert!(matches!(s.flush().await, Err(Error::Poisoned)));
        let r = s.append_one(ev("a", 7)).await;
        assert!(matches!(r, Err(Error::Poisoned)), "{r:?}");
    }
    // Lost as a power loss would lose them (buffered mode allows it), not
    // found again from the page cache and taken for synced.
    let s = EventStore::open(dir.path(), buffered()).unwrap();
    assert_eq!(s.damaged_on_open(), &[] as &[u64]);
    assert_eq!(s.head_seq(), 3);
    assert!(s.verify().unwrap().ok());
    let next = s.append_one(ev("a", 8)).await.unwrap();
    assert_eq!((next.seq, next.version), (4, 3));
}

#[tokio::test]
async fn after_a_checkpoint_cut_records_nothing_is_answered_from_them() {
    let dir = tempfile::tempdir().unwrap();
    // Buffered, checkpointing every 10 ms.
    let options = || buffered().buffered_flush_ms(10);
    {
        let s = EventStore::open(dir.path(), options()).unwrap();
        s.append_one(ev("a", 1)).await.unwrap();
        s.flush().await.unwrap();
        // The checkpoint's sync of the next record fails: it is cut off the
        // segment (the process's head and index still hold it).
        faults(&s).arm(Fault::Sync);
        let second = s.append_one(ev("a", 2).with_id("id-2")).await.unwrap();
        assert_eq!(second.version, 1);
        let t = std::time::Instant::now();
        while !s.shared().backend.failed() {
            assert!(t.elapsed() < Duration::from_secs(10), "no checkpoint");
            std::thread::sleep(Duration::from_millis(5));
        }
        // Before the fix: a conflict against version 1 (the cut record's),
        // and the retry of the cut record answered as stored.
        let r = s
            .append_one(ev("a", 3).expect(ExpectedVersion::Exact(0)))
            .await;
        assert!(matches!(r, Err(Error::Poisoned)), "{r:?}");
        let r = s.append_one(ev("a", 2).with_id("id-2")).await;
        assert!(matches!(r, Err(Error::Poisoned)), "{r:?}");
    }
    let s = EventStore::open(dir.path(), options()).unwrap();
    assert_eq!(s.head_seq(), 1);
}

/// What a [`Failing`] backend does next.
#[derive(Default)]
struct Plan {
    /// The next commit sends on the first and waits for the second, then
    /// commits.
    hold: Option<(mpsc::SyncSender<()>, mpsc::Receiver<()>)>,
    /// The next commit (not held) fails with this, writing nothing.
    refuse: Option<Error>,
    /// The next flush fails with this.
    flush: Option<Error>,
}

/// A sled backend that fails as its [`Plan`] says.
struct Failing {
    inner: SledBackend,
    plan: Arc<Mutex<Plan>>,
}

impl Backend for Failing {
    fn commit(&self, records: &RecordBatch, anchor: Anchor) -> Result<()> {
        let hold = self.plan.lock().hold.take();
        if let Some((entered, release)) = hold {
            entered.send(()).unwrap();
            release.recv().unwrap();
        } else if let Some(e) = self.plan.lock().refuse.take() {
            return Err(e);
        }
        self.inner.commit(records, anchor)
    }
    fn flush(&self) -> Result<()> {
        match self.plan.lock().flush.take() {
            Some(e) => Err(e),
            None => self.inner.flush(),
        }
    }
    fn get(&self, seq: u64) -> Result<Option<RecordBytes>> {
        self.inner.get(seq)
    }
    fn range(&self, from: u64, to: u64, descending: bool) -> RecordIter<'_> {
        self.inner.range(from, to, descending)
    }
    fn anchor(&self) -> Result<Option<Anchor>> {
        self.inner.anchor()
    }
    fn meta_get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        self.inner.meta_get(key)
    }
    fn meta_put(&self, key: &str, value: &[u8]) -> Result<()> {
        self.inner.meta_put(key, value)
    }
    fn meta_remove(&self, key: &str) -> Result<()> {
        self.inner.meta_remove(key)
    }
    fn meta_keys(&self, prefix: &str) -> Result<Vec<String>> {
        self.inner.meta_keys(prefix)
    }
    fn raw_put(&self, seq: u64, bytes: Option<&[u8]>) -> Result<()> {
        self.inner.raw_put(seq, bytes)
    }
    fn size_on_disk(&self) -> Result<u64> {
        self.inner.size_on_disk()
    }
    fn failed(&self) -> bool {
        self.inner.failed()
    }
}

/// A durable store in `dir` over a [`Failing`] backend, and its plan.
fn open_failing(dir: &Path) -> (EventStore, Arc<Mutex<Plan>>) {
    let options = durable();
    let mut backend = SledBackend::open(dir, options.cache_bytes).unwrap();
    let key = ChainKey::new(&options.key);
    check_key(&backend, &key).unwrap();
    let mode = LogMode {
        sync_each_commit: true,
        checkpoint_every: DURABLE_CHECKPOINT_EVERY,
    };
    backend.start_log(dir, &key, mode).unwrap();
    let plan = Arc::new(Mutex::new(Plan::default()));
    let failing = Failing {
        inner: backend,
        plan: plan.clone(),
    };
    let store = EventStore::with_backend(Box::new(failing), dir, key, options, None, None).unwrap();
    (store, plan)
}

#[tokio::test]
async fn requests_refused_against_a_failed_group_are_told_nothing_of_them_was_written() {
    // A backend that says nothing was stored, and one that does not say.
    type Failure = fn() -> Error;
    let cases: [(Failure, bool); 2] = [
        (
            || Error::WriteFailed {
                reason: "disk full".into(),
            },
            false,
        ),
        (
            || Error::Io(std::io::Error::other("sled insert failed")),
            true,
        ),
    ];
    for (failure, unknown) in cases {
        let dir = tempfile::tempdir().unwrap();
        let (s, plan) = open_failing(dir.path());
        s.append_one(ev("t", 0)).await.unwrap();
        let (entered_tx, entered) = mpsc::sync_channel(1);
        let (release, release_rx) = mpsc::sync_channel(1);
        plan.lock().hold = Some((entered_tx, release_rx));
        let (tx, rx) = mpsc::channel();
        let send = |i: usize, events: Vec<NewEvent>| {
            let tx = tx.clone();
            s.append_then(events, move |r| tx.send((i, r)).unwrap())
        };
        send(0, vec![ev("h", 0)]).await.unwrap();
        // The writer is committing request 0: the next ones queue up and
        // form one group, which fails.
        entered.recv().unwrap();
        plan.lock().refuse = Some(failure());
        send(1, vec![ev("s", 1).with_id("id-1")]).await.unwrap();
        // A version only request 1 wrote.
        send(2, vec![ev("s", 2).expect(ExpectedVersion::NoStream)])
            .await
            .unwrap();
        // A retry of request 1.
        send(3, vec![ev("s", 1).with_id("id-1")]).await.unwrap();
        // A conflict with the log, whatever becomes of the group.
        send(4, vec![ev("t", 4).expect(ExpectedVersion::NoStream)])
            .await
            .unwrap();
        // An id only request 1 holds, beside a new one.
        send(
            5,
            vec![ev("u", 5).with_id("id-1"), ev("u", 5).with_id("id-5")],
        )
        .await
        .unwrap();
        release.send(()).unwrap();
        let mut got: Vec<_> = (0..6).map(|_| rx.recv().unwrap()).collect();
        got.sort_by_key(|(i, _)| *i);
        let answers: Vec<_> = got.into_iter().map(|(_, r)| r).collect();
        assert!(answers[0].is_ok());
        let group = |r: &Result<AppendOutcome>| match r {
            Err(Error::OutcomeUnknown { .. }) => unknown,
            Err(Error::WriteFailed { .. }) => !unknown,
            _ => false,
        };
        assert!(group(&answers[1]), "{:?}", answers[1]);
        assert!(
            group(&answers[3]),
            "its events are request 1's: {:?}",
            answers[3]
        );
        // Not conflicts computed against events that may not be stored: not
        // written, certainly.
        for i in [2, 5] {
            assert!(
                matches!(answers[i], Err(Error::WriteFailed { .. })),
                "{i}: {:?}",
                answers[i]
            );
        }
        assert!(
            matches!(
                answers[4],
                Err(Error::VersionConflict {
                    actual: Some(0),
                    ..
                })
            ),
            "{:?}",
            answers[4]
        );
    }
}

#[tokio::test]
async fn a_flush_failing_after_the_group_was_synced_is_not_reported_as_nothing_written() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (s, plan) = open_failing(dir.path());
        plan.lock().flush = Some(Error::Io(std::io::Error::other("sled flush failed")));
        let r = s.append_one(ev("a", 1)).await;
        assert!(matches!(r, Err(Error::OutcomeUnknown { .. })), "{r:?}");
    }
    // Its frame was synced: the reopen finds it.
    let s = EventStore::open(dir.path(), durable()).unwrap();
    assert_eq!(s.head_seq(), 1);
}
