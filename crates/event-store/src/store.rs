//! [`EventStore`]: opening, appending with group commit, reading, verifying.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::backend::{Anchor, Backend, LogMode, SledBackend};
use crate::clock::Timestamp;
use crate::codec::{ChainKey, GENESIS, Prepared, RecordView};
use crate::error::{Error, Result};
use crate::index::{IndexEntry, Indexes};
use crate::model::{AppendOutcome, Appended, Event, Limits, NewEvent};
use crate::options::{Durability, StoreOptions};
use crate::query::Filter;
use crate::request::{Command, Done, Pending, Placed, Reply};
use crate::snapshot::SnapshotFiles;
use crate::subscription::Subscription;
use crate::writer::Writer;

/// State shared by the handle, the writer thread and subscriptions.
pub(crate) struct Shared {
    pub(crate) backend: Box<dyn Backend>,
    pub(crate) index: RwLock<Indexes>,
    pub(crate) head: AtomicU64,
    pub(crate) live: broadcast::Sender<crate::subscription::Live>,
    pub(crate) key: ChainKey,
    pub(crate) snapshots: SnapshotFiles,
    pub(crate) poisoned: AtomicBool,
    /// Records that could not be decoded when the store was opened.
    pub(crate) damaged_on_open: Vec<u64>,
}

struct Inner {
    shared: Arc<Shared>,
    tx: mpsc::Sender<Command>,
    limits: Limits,
    /// Whether appends are timed (an observer is set).
    timed: bool,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    _temp: Option<TempDir>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Closing the queue lets the writer finish what it holds, flush and exit.
        let (dead_tx, _) = mpsc::channel(1);
        drop(std::mem::replace(&mut self.tx, dead_tx));
        if let Some(h) = self.writer.lock().take() {
            // The last handle can go on the writer thread itself (captured by
            // an `append_then` function); it must not wait for itself. The
            // writer exits on its own once the queue is closed.
            if h.thread().id() != std::thread::current().id() {
                let _ = h.join();
            }
        }
    }
}

/// A directory removed when dropped, for temporary stores.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The result of [`EventStore::verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Records whose MAC was checked.
    pub checked: u64,
    /// The committed head the walk covered.
    pub head_seq: u64,
    /// The first position that is missing, damaged, out of place or whose MAC
    /// does not chain; `None` when the whole log is intact.
    pub first_bad_seq: Option<u64>,
}

impl VerifyReport {
    /// Whether the log is intact.
    pub fn ok(&self) -> bool {
        self.first_bad_seq.is_none()
    }
}

/// A projection snapshot: opaque bytes and the seq they reflect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// Every event up to and including this seq is reflected.
    pub seq: u64,
    /// The projection's bytes.
    pub data: Vec<u8>,
}

/// Counts describing the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreStats {
    /// Last committed seq.
    pub head_seq: u64,
    /// Distinct streams.
    pub streams: usize,
    /// Bytes on disk: sled, the segment files and the snapshot files.
    pub size_bytes: u64,
}

/// The durable event log. Cheap to clone; every clone is the same store.
#[derive(Clone)]
pub struct EventStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for EventStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventStore")
            .field("head_seq", &self.head_seq())
            .finish_non_exhaustive()
    }
}

const META_FORMAT: &str = "format";
const META_KEY_CHECK: &str = "key_check";
/// Format 2 keeps records in segment files (format 1 kept them in sled).
pub(crate) const FORMAT_VERSION: &[u8] = b"lighthouse-event-store/2";
const SNAPSHOT_PREFIX: &str = "snapshot/";
/// How often sled is flushed in durable mode; bounds how much of the segments a
/// restart indexes again.
const DURABLE_CHECKPOINT_EVERY: Duration = Duration::from_secs(1);
/// How many unreadable positions `damaged_on_open` lists at most.
const MAX_DAMAGED_LISTED: usize = 256;

impl EventStore {
    /// Opens the store in `dir`, creating it if needed, and rebuilds the indexes
    /// from the log. Refuses a store created with another key ([`Error::WrongKey`]).
    ///
    /// A new `dir` is created with mode 0700, its segment and snapshot files
    /// with 0600 (a store holds the whole log); an existing `dir` keeps its
    /// mode.
    pub fn open(dir: impl AsRef<Path>, options: StoreOptions) -> Result<EventStore> {
        Self::open_inner(dir.as_ref(), options, None)
    }

    /// Whether `dir` holds a store: one [`open`](Self::open) has created there
    /// (its key recorded, its segment folder made). Lets a tool that must not
    /// create a store (a verify, a backup) refuse a missing or mistyped
    /// directory instead of opening, and so creating, an empty one.
    pub fn exists(dir: impl AsRef<Path>) -> bool {
        // The segment folder is made after the key is recorded and flushed
        // (`open_inner`: `check_key`, then `start_log`).
        dir.as_ref().join(crate::backend::SEGMENTS_DIR).is_dir()
    }

    /// A store in a fresh temporary directory, removed when the last handle is
    /// dropped. For tests and demos.
    pub fn open_temporary(options: StoreOptions) -> Result<EventStore> {
        let dir = std::env::temp_dir().join(format!(
            "lighthouse-store-{}-{}",
            std::process::id(),
            ulid::Ulid::generate()
        ));
        crate::private::create_dir(&dir)?;
        let temp = TempDir(dir.clone());
        Self::open_inner(&dir, options, Some(temp))
    }

    fn open_inner(dir: &Path, options: StoreOptions, temp: Option<TempDir>) -> Result<EventStore> {
        // Before sled, which would create it with the umask's mode.
        crate::private::create_dir(dir)?;
        crate::private::warn_if_shared(dir);
        let mut backend = SledBackend::open(dir, options.cache_bytes)?;
        // Durable mode syncs each group's frame; sled is flushed about once a
        // second. Buffered mode syncs the segment and flushes sled every
        // `buffered_flush_ms`.
        let mode = match options.durability {
            Durability::Durable => LogMode {
                sync_each_commit: true,
                checkpoint_every: DURABLE_CHECKPOINT_EVERY,
            },
            Durability::Buffered => LogMode {
                sync_each_commit: false,
                checkpoint_every: Duration::from_millis(options.buffered_flush_ms),
            },
        };
        // The key is checked before the segments are read: with a wrong key no
        // record would chain, and the frames above sled's anchor must not be
        // given up.
        let key = ChainKey::new(&options.key);
        check_key(&backend, &key)?;
        let recovery = backend.start_log(dir, &key, mode)?;
        Self::with_backend(
            Box::new(backend),
            dir,
            key,
            options,
            temp,
            recovery.damaged_at,
        )
    }

    /// Starts a store over `backend`, whose key has been checked.
    fn with_backend(
        backend: Box<dyn Backend>,
        dir: &Path,
        key: ChainKey,
        options: StoreOptions,
        temp: Option<TempDir>,
        damaged_segment_at: Option<u64>,
    ) -> Result<EventStore> {
        let anchor = backend.anchor()?;
        let (index, mut damaged, last_time) = rebuild_index(backend.as_ref(), anchor)?;
        // Damage in the segment's frames that left every record readable still
        // refuses appends: where the next frame would go is not known.
        if let Some(seq) = damaged_segment_at
            && !damaged.contains(&seq)
        {
            damaged.push(seq);
            damaged.sort_unstable();
        }
        let head = anchor.map_or(0, |a| a.seq);
        let chain = anchor.map_or(GENESIS, |a| a.mac);
        let snapshots = SnapshotFiles::new(dir, options.max_snapshot_bytes);
        let partials = snapshots.remove_partials()?;
        if partials > 0 {
            tracing::info!(
                partials,
                "event store: removed the partial snapshot files a crash left"
            );
        }
        let mut past = snapshots.remove_past(&key, head)?;
        // Stores written before snapshots became files kept them in sled.
        for k in backend.meta_keys(SNAPSHOT_PREFIX)? {
            let seq = backend
                .meta_get(&k)?
                .and_then(|v| Some(u64::from_be_bytes(v.get(..8)?.try_into().ok()?)));
            if let Some(seq) = seq.filter(|&s| s > head) {
                backend.meta_remove(&k)?;
                let name = k.strip_prefix(SNAPSHOT_PREFIX).unwrap_or(&k).to_owned();
                past.push((name, seq));
            }
        }
        for (name, seq) in past {
            tracing::warn!(
                name,
                seq,
                head,
                "event store: removed a snapshot past the log's head (its records were lost \
                 after the last sync in buffered mode)"
            );
        }
        let last_id = last_generated_id(backend.as_ref(), head);
        let (live, _) = broadcast::channel(options.live_buffer);
        let shared = Arc::new(Shared {
            backend,
            index: RwLock::new(index),
            head: AtomicU64::new(head),
            live,
            key,
            snapshots,
            poisoned: AtomicBool::new(false),
            damaged_on_open: damaged,
        });
        let (tx, rx) = mpsc::channel(options.queue_depth);
        let writer = Writer::new(
            shared.clone(),
            rx,
            options.clock.clone(),
            options.durability,
            options.max_group_events,
            head,
            chain,
            last_time,
            last_id,
            options.observer.clone(),
        );
        let handle = std::thread::Builder::new()
            .name("lighthouse-store-writer".into())
            .spawn(move || writer.run())?;
        Ok(EventStore {
            inner: Arc::new(Inner {
                shared,
                tx,
                limits: options.limits,
                timed: options.observer.is_some(),
                writer: Mutex::new(Some(handle)),
                _temp: temp,
            }),
        })
    }

    pub(crate) fn shared(&self) -> &Shared {
        &self.inner.shared
    }

    /// Appends a batch atomically: after any crash either every event of it is
    /// stored or none. Resolves once the batch is durable (or written, in
    /// [`Durability::Buffered`] mode).
    ///
    /// When every event carries an `id` that was appended before, nothing is
    /// written and the original positions are returned (`deduplicated: true`).
    pub async fn append(&self, events: Vec<NewEvent>) -> Result<AppendOutcome> {
        Ok(self.submit(events).await?.into_outcome())
    }

    /// [`append`](Self::append) for callers outside an async runtime. Must not be
    /// called from within one.
    pub fn append_blocking(&self, events: Vec<NewEvent>) -> Result<AppendOutcome> {
        let (cmd, rx) = self.prepare(events)?;
        self.inner
            .tx
            .blocking_send(cmd)
            .map_err(|_| Error::Closed)?;
        let placed = rx.blocking_recv().map_err(|_| Error::Closed)??;
        Ok(placed.into_outcome())
    }

    /// Appends one event.
    pub async fn append_one(&self, event: NewEvent) -> Result<Appended> {
        self.submit(vec![event])
            .await?
            .into_first()
            .ok_or(Error::EmptyBatch)
    }

    /// Hands a batch to the writer and returns once it is queued, without
    /// waiting for the commit: `done` runs on the writer thread with what
    /// [`append`](Self::append) would have returned, exactly once (with
    /// [`Error::Closed`] if the store shuts down first). On success it runs
    /// before the events reach any subscriber, so what it registers for them
    /// is in place when a subscriber sees them.
    ///
    /// For services that learn of their own appends from a subscription and
    /// would otherwise wake twice per append. `done` must be quick and must not
    /// block: the writer commits nothing else while it runs. A panic in it is
    /// caught and logged; the append stands. A batch refused
    /// before it is queued (empty, too large, invalid) is an error here and
    /// `done` is not called.
    pub async fn append_then(
        &self,
        events: Vec<NewEvent>,
        done: impl FnOnce(Result<AppendOutcome>) + Send + 'static,
    ) -> Result<()> {
        let events = self.check(events)?;
        let cmd = Command::Append {
            events,
            reply: Reply::Call(Done::new(done)),
            enqueued: self.inner.timed.then(std::time::Instant::now),
        };
        // If the queue is closed the command is dropped, and `done` with it
        // hears `Closed`.
        let _ = self.inner.tx.send(cmd).await;
        Ok(())
    }

    /// Hands a request to the writer and waits for its answer.
    async fn submit(&self, events: Vec<NewEvent>) -> Result<Placed> {
        let (cmd, rx) = self.prepare(events)?;
        self.inner.tx.send(cmd).await.map_err(|_| Error::Closed)?;
        rx.await.map_err(|_| Error::Closed)?
    }

    fn prepare(
        &self,
        events: Vec<NewEvent>,
    ) -> Result<(Command, oneshot::Receiver<Result<Placed>>)> {
        let prepared = self.check(events)?;
        let (reply, rx) = oneshot::channel();
        Ok((
            Command::Append {
                events: prepared,
                reply: Reply::Wait(reply),
                // Only the observer reads it: no clock read without one.
                enqueued: self.inner.timed.then(std::time::Instant::now),
            },
            rx,
        ))
    }

    /// Validates a batch against the limits and encodes its events.
    fn check(&self, events: Vec<NewEvent>) -> Result<Vec<Pending>> {
        if let Some(&seq) = self.shared().damaged_on_open.first() {
            return Err(Error::Damaged { seq });
        }
        let limits = &self.inner.limits;
        if events.is_empty() {
            return Err(Error::EmptyBatch);
        }
        if events.len() > limits.max_batch_events {
            return Err(Error::TooLarge {
                what: "batch events",
                actual: events.len(),
                limit: limits.max_batch_events,
            });
        }
        let mut total = 0usize;
        let mut prepared = Vec::with_capacity(events.len());
        for e in events {
            e.validate()?;
            let p = Prepared::new(e)?;
            // A store-chosen id is a 26-character ULID.
            let len = p.record_len(p.event.id.as_ref().map_or(26, String::len));
            if len > limits.max_event_bytes {
                return Err(Error::TooLarge {
                    what: "event",
                    actual: len,
                    limit: limits.max_event_bytes,
                });
            }
            total += len;
            prepared.push(Pending::new(p));
        }
        // An id names one event: a batch naming two with it could not be
        // retried (the retry's answer would give both the first one's place).
        if prepared.len() > 1 {
            let mut seen = std::collections::HashSet::with_capacity(prepared.len());
            for p in &prepared {
                if let Some(id) = &p.prepared.event.id
                    && !seen.insert(id.as_str())
                {
                    return Err(Error::RepeatedId { id: id.clone() });
                }
            }
        }
        if total > limits.max_batch_bytes {
            return Err(Error::TooLarge {
                what: "batch bytes",
                actual: total,
                limit: limits.max_batch_bytes,
            });
        }
        Ok(prepared)
    }

    /// Waits until everything acknowledged so far is on disk (useful in
    /// [`Durability::Buffered`] mode and before a clean shutdown).
    pub async fn flush(&self) -> Result<()> {
        let (reply, rx) = oneshot::channel();
        self.inner
            .tx
            .send(Command::Flush { reply })
            .await
            .map_err(|_| Error::Closed)?;
        rx.await.map_err(|_| Error::Closed)?
    }

    /// The last committed seq (0 for an empty store).
    pub fn head_seq(&self) -> u64 {
        self.shared().head.load(Ordering::Acquire)
    }

    /// The last version of `stream`, `None` when it has no events.
    pub fn stream_version(&self, stream: &str) -> Option<u64> {
        self.shared().index.read().stream_version(stream)
    }

    /// Counts describing the store.
    pub fn stats(&self) -> Result<StoreStats> {
        Ok(StoreStats {
            head_seq: self.head_seq(),
            streams: self.shared().index.read().stream_count(),
            size_bytes: self.shared().backend.size_on_disk()?
                + self.shared().snapshots.size_on_disk()?,
        })
    }

    /// Positions whose records could not be decoded when the store was opened
    /// (they are left out of the indexes; [`verify`](Self::verify) reports them).
    pub fn damaged_on_open(&self) -> &[u64] {
        &self.shared().damaged_on_open
    }

    /// The event at `seq`.
    pub fn get(&self, seq: u64) -> Result<Option<Event>> {
        if seq == 0 || seq > self.head_seq() {
            return Ok(None);
        }
        match self.shared().backend.get(seq)? {
            Some(bytes) => crate::read::decode(seq, &bytes).map(Some),
            None => Ok(None),
        }
    }

    /// Every event matching `filter` with `seq > after`: first those on disk, then
    /// live ones as they are committed, with no gap and no duplicate.
    ///
    /// An `after` beyond [`head_seq`](Self::head_seq) is taken at its word:
    /// the events up to it are skipped when they are written. A position from
    /// a client may come from elsewhere (a store restored from an older
    /// backup), so a server checks it against `head_seq` first (the head only
    /// grows, so a position at or below it stays valid).
    pub fn subscribe(&self, after: u64, filter: Filter) -> Subscription {
        // Subscribe before reading the head: the writer publishes after moving
        // the head, so every event above the head read here reaches the receiver.
        let rx = self.shared().live.subscribe();
        let until = self.head_seq();
        Subscription::new(self.clone(), rx, after, until, filter)
    }

    /// Walks the integrity chain from seq 1 to the committed head.
    pub fn verify(&self) -> Result<VerifyReport> {
        let shared = self.shared();
        let Some(anchor) = shared.backend.anchor()? else {
            let head = self.head_seq();
            return Ok(VerifyReport {
                checked: 0,
                head_seq: head,
                first_bad_seq: (head > 0).then_some(1),
            });
        };
        let mut prev = GENESIS;
        let mut expect = 1u64;
        let mut checked = 0u64;
        for item in shared.backend.range(1, anchor.seq, false) {
            let (seq, bytes) = item?;
            let bad = seq != expect
                || match RecordView::parse(&bytes) {
                    Ok(v) => {
                        let ok = v.follows(&shared.key, seq, &prev);
                        prev = *v.mac;
                        !ok
                    }
                    Err(_) => true,
                };
            if bad {
                return Ok(VerifyReport {
                    checked,
                    head_seq: anchor.seq,
                    first_bad_seq: Some(expect),
                });
            }
            checked += 1;
            expect += 1;
        }
        let intact = expect == anchor.seq + 1 && prev == anchor.mac;
        Ok(VerifyReport {
            checked,
            head_seq: anchor.seq,
            first_bad_seq: (!intact).then_some(expect.min(anchor.seq)),
        })
    }

    /// Saves a projection snapshot under `name`, reflecting events up to `seq`.
    /// Replaces an older one of that name; durable when this returns, and
    /// written on a blocking thread (`<dir>/snapshots/<name>.snap`,
    /// docs/EVENT_STORE.md).
    pub async fn save_snapshot(
        &self,
        name: &str,
        seq: u64,
        data: impl Into<Vec<u8>>,
    ) -> Result<()> {
        crate::model::validate_token(name, crate::error::Field::SnapshotName)?;
        // The log first: a snapshot must never reflect events a crash could
        // lose (in durable mode everything acknowledged already is on disk).
        self.flush().await?;
        let store = self.clone();
        let name = name.to_owned();
        let data = data.into();
        tokio::task::spawn_blocking(move || {
            let shared = store.shared();
            shared.snapshots.save(&shared.key, &name, seq, &data)?;
            // A store written before snapshots became files may still hold
            // this one in sled; the file supersedes it.
            shared
                .backend
                .meta_remove(&format!("{SNAPSHOT_PREFIX}{name}"))
        })
        .await
        .map_err(|_| Error::Closed)?
    }

    /// The snapshot saved under `name`, if any. `Corrupt` when its file is
    /// damaged or fails its MAC check.
    pub fn load_snapshot(&self, name: &str) -> Result<Option<Snapshot>> {
        crate::model::validate_token(name, crate::error::Field::SnapshotName)?;
        let shared = self.shared();
        if let Some(s) = shared.snapshots.load(&shared.key, name)? {
            return Ok(Some(s));
        }
        // Stores written before snapshots became files kept them in sled.
        let Some(v) = shared
            .backend
            .meta_get(&format!("{SNAPSHOT_PREFIX}{name}"))?
        else {
            return Ok(None);
        };
        if v.len() < 8 {
            return Err(Error::Corrupt {
                seq: 0,
                reason: format!("snapshot {name} is truncated"),
            });
        }
        let (seq, data) = v.split_at(8);
        let seq = u64::from_be_bytes(seq.try_into().unwrap_or([0; 8]));
        Ok(Some(Snapshot {
            seq,
            data: data.to_vec(),
        }))
    }

    /// Names of every saved snapshot.
    pub fn snapshot_names(&self) -> Result<Vec<String>> {
        let mut names = self.shared().snapshots.names()?;
        names.extend(
            self.shared()
                .backend
                .meta_keys(SNAPSHOT_PREFIX)?
                .into_iter()
                .filter_map(|k| k.strip_prefix(SNAPSHOT_PREFIX).map(str::to_owned)),
        );
        names.sort();
        names.dedup();
        Ok(names)
    }

    pub(crate) fn backend(&self) -> &dyn Backend {
        self.shared().backend.as_ref()
    }

    pub(crate) fn chain_key(&self) -> &ChainKey {
        &self.shared().key
    }

    /// Makes sled's index durable without syncing the segments, as sled does on
    /// its own when an I/O buffer fills. Exists only so tests can reproduce a
    /// power loss in [`Durability::Buffered`] mode.
    #[doc(hidden)]
    pub fn flush_index_unsynced(&self) -> Result<()> {
        self.backend().flush_index_unsynced()
    }

    /// Overwrites (or with `None` removes) the stored record at `seq`, bypassing
    /// every rule. Exists only so tests can prove that tampering is detected.
    #[doc(hidden)]
    pub fn tamper_raw(&self, seq: u64, bytes: Option<&[u8]>) -> Result<()> {
        self.backend().raw_put(seq, bytes)
    }

    /// The stored bytes of the record at `seq`. For tamper tests and tools.
    #[doc(hidden)]
    pub fn raw_record(&self, seq: u64) -> Result<Option<Vec<u8>>> {
        Ok(self.backend().get(seq)?.map(|b| b.to_vec()))
    }
}

/// The newest store-generated id among the last records (ids the callers
/// chose are skipped), so that ids keep increasing across a restart: the first
/// id of a new process may fall in the same millisecond as the last stored one.
fn last_generated_id(backend: &dyn Backend, head: u64) -> ulid::Ulid {
    /// How far back to look past records with the callers' own ids.
    const LOOK_BACK: u64 = 256;
    (head.saturating_sub(LOOK_BACK - 1).max(1)..=head)
        .rev()
        .find_map(|seq| {
            let bytes = backend.get(seq).ok()??;
            let v = RecordView::parse(&bytes).ok()?;
            // A generated id carries its record's time; a caller's ULID with
            // another time must not set where generated ids go on from.
            ulid::Ulid::from_string(v.id)
                .ok()
                .filter(|u| i64::try_from(u.timestamp_ms()).ok() == Some(v.time.unix_millis()))
        })
        .unwrap_or(ulid::Ulid::nil())
}

/// Refuses a store created with another key; records the key's fingerprint (and
/// the format) in a new store.
fn check_key(backend: &dyn Backend, key: &ChainKey) -> Result<()> {
    if let Some(found) = backend.meta_get(META_FORMAT)?
        && found != FORMAT_VERSION
    {
        return Err(Error::UnsupportedFormat {
            found: String::from_utf8_lossy(&found).into_owned(),
            expected: String::from_utf8_lossy(FORMAT_VERSION).into_owned(),
        });
    }
    match backend.meta_get(META_KEY_CHECK)? {
        Some(stored) if stored != key.fingerprint() => Err(Error::WrongKey),
        Some(_) => Ok(()),
        None => {
            backend.meta_put(META_FORMAT, FORMAT_VERSION)?;
            backend.meta_put(META_KEY_CHECK, &key.fingerprint())?;
            backend.flush()
        }
    }
}

/// Index entries handed to the second thread of a rebuild at a time.
const REBUILD_BATCH: usize = 4096;

/// What the second thread of a rebuild gets per event: its seq, the length of
/// its stream name (the names lie back to back in the batch's text), and the
/// keyed hashes of its id and correlation id.
struct WideBatch {
    streams: String,
    entries: Vec<(u64, u32, u64, Option<u64>)>,
}

impl WideBatch {
    fn new() -> Self {
        WideBatch {
            streams: String::with_capacity(REBUILD_BATCH * 48),
            entries: Vec::with_capacity(REBUILD_BATCH),
        }
    }
}

/// Scans the log once and rebuilds the indexes; returns them, the seqs that could
/// not be decoded, and the last append time.
///
/// On two threads: this one reads and parses the log and indexes types,
/// agents and times; a second indexes streams, ids and correlation ids, the
/// maps with a key (nearly) per event: random inserts into tables that outgrow
/// the caches. Opening 1,000,000 elicitation events: docs/PERFORMANCE.md.
fn rebuild_index(
    backend: &dyn Backend,
    anchor: Option<Anchor>,
) -> Result<(Indexes, Vec<u64>, Timestamp)> {
    let mut damaged = Vec::new();
    let mut last_time = Timestamp::EPOCH;
    let Some(anchor) = anchor else {
        return Ok((Indexes::new(), damaged, last_time));
    };
    // Room for the ids of the events the anchor counts, up to 16M (beyond that
    // the map grows as usual; a damaged anchor cannot make the open reserve
    // more).
    let mut idx = Indexes::with_capacity(usize::try_from(anchor.seq.min(1 << 24)).unwrap_or(0));
    let mut wide = idx.take_wide();
    let (tx, rx) = crossbeam_channel::bounded::<WideBatch>(4);
    let wide = std::thread::scope(|scope| -> Result<_> {
        let filler = std::thread::Builder::new()
            .name("lighthouse-store-index".into())
            .spawn_scoped(scope, move || {
                for batch in rx {
                    let mut at = 0;
                    for (seq, len, id, correlation) in batch.entries {
                        let end = at + len as usize;
                        let stream = batch.streams.get(at..end).unwrap_or_default();
                        wide.insert(seq, stream, id, correlation);
                        at = end;
                    }
                }
                wide
            })?;
        // Positions that cannot be read are remembered (the first few hundred)
        // so that `damaged_on_open` can name them; `verify` gives the full answer.
        let note = |seq: u64, damaged: &mut Vec<u64>| {
            if damaged.len() < MAX_DAMAGED_LISTED {
                tracing::error!(seq, "event store record is damaged or missing; run verify");
                damaged.push(seq);
            }
        };
        let mut batch = WideBatch::new();
        let mut expect = 1u64;
        for item in backend.range(1, anchor.seq, false) {
            // On an error `tx` goes with this closure and the filler stops.
            let (seq, bytes) = item?;
            for missing in expect..seq.min(expect + MAX_DAMAGED_LISTED as u64) {
                note(missing, &mut damaged);
            }
            expect = seq + 1;
            match RecordView::parse(&bytes) {
                Ok(v) if v.seq == seq => {
                    last_time = last_time.max(v.time);
                    let (id, correlation) = idx.insert_narrow(&IndexEntry::of(&v));
                    batch.streams.push_str(v.stream);
                    let len = u32::try_from(v.stream.len()).unwrap_or(u32::MAX);
                    batch.entries.push((seq, len, id, correlation));
                    if batch.entries.len() == REBUILD_BATCH {
                        let full = std::mem::replace(&mut batch, WideBatch::new());
                        // Fails only if the filler is gone, which join reports.
                        let _ = tx.send(full);
                    }
                }
                _ => note(seq, &mut damaged),
            }
        }
        if expect <= anchor.seq {
            note(expect, &mut damaged);
        }
        let _ = tx.send(batch);
        drop(tx);
        filler
            .join()
            .map_err(|_| Error::Io(std::io::Error::other("the index rebuild thread failed")))
    })?;
    idx.put_wide(wide);
    Ok((idx, damaged, last_time))
}

#[cfg(test)]
mod tests;
