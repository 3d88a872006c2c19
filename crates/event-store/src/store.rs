//! [`EventStore`]: opening, appending with group commit, reading, verifying.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::{Mutex, RwLock};
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::backend::{Anchor, Backend, SledBackend};
use crate::clock::{SharedClock, SystemClock, Timestamp};
use crate::codec::{ChainKey, GENESIS, Prepared, RecordView};
use crate::error::{Error, Result};
use crate::index::{Indexes, window};
use crate::model::{AppendOutcome, Appended, Event, Limits, NewEvent};
use crate::query::{Filter, Order, Page, Query};
use crate::subscription::Subscription;
use crate::writer::{Command, Writer};

/// When an append is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// After the batch is flushed to disk (fsync). Concurrent appends share one
    /// flush (group commit). The default.
    #[default]
    Durable,
    /// Before the flush: the storage engine flushes in the background every
    /// [`StoreOptions::buffered_flush_ms`], so a power loss or kernel crash loses
    /// up to that much acknowledged data. For tests and throwaway stores.
    Buffered,
}

/// How to open a store. Build with [`StoreOptions::new`] and the setters.
#[derive(Clone)]
pub struct StoreOptions {
    pub(crate) key: Vec<u8>,
    pub(crate) durability: Durability,
    pub(crate) limits: Limits,
    pub(crate) clock: SharedClock,
    pub(crate) live_buffer: usize,
    pub(crate) queue_depth: usize,
    pub(crate) max_group_events: usize,
    pub(crate) cache_bytes: u64,
    pub(crate) buffered_flush_ms: u64,
}

impl std::fmt::Debug for StoreOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreOptions")
            .field("durability", &self.durability)
            .field("limits", &self.limits)
            .field("live_buffer", &self.live_buffer)
            .field("queue_depth", &self.queue_depth)
            .field("max_group_events", &self.max_group_events)
            .field("cache_bytes", &self.cache_bytes)
            .field("buffered_flush_ms", &self.buffered_flush_ms)
            .finish_non_exhaustive()
    }
}

impl StoreOptions {
    /// Options with the integrity `key` (keep it secret; 32 random bytes
    /// recommended) and every other setting at its default.
    pub fn new(key: &[u8]) -> Self {
        StoreOptions {
            key: key.to_vec(),
            durability: Durability::Durable,
            limits: Limits::default(),
            clock: Arc::new(SystemClock),
            live_buffer: 4096,
            queue_depth: 16_384,
            max_group_events: 4096,
            cache_bytes: 256 << 20,
            buffered_flush_ms: 200,
        }
    }

    /// Durability mode (default [`Durability::Durable`]).
    pub fn durability(mut self, d: Durability) -> Self {
        self.durability = d;
        self
    }

    /// Size limits (default [`Limits::default`]).
    pub fn limits(mut self, l: Limits) -> Self {
        self.limits = l;
        self
    }

    /// The clock that stamps events (default the system clock).
    pub fn clock(mut self, c: SharedClock) -> Self {
        self.clock = c;
        self
    }

    /// Events kept for live subscribers (default 4096). A live subscriber that
    /// falls further behind gets [`Error::Lagged`]. Worst-case memory is this
    /// times the largest event.
    pub fn live_buffer(mut self, n: usize) -> Self {
        self.live_buffer = n.max(1);
        self
    }

    /// Append requests that may wait for the writer (default 16384); more wait
    /// in their callers (back-pressure).
    pub fn queue_depth(mut self, n: usize) -> Self {
        self.queue_depth = n.max(1);
        self
    }

    /// Most events one group commit writes (default 4096).
    pub fn max_group_events(mut self, n: usize) -> Self {
        self.max_group_events = n.max(1);
        self
    }

    /// The storage engine's page cache (default 256 MiB).
    pub fn cache_bytes(mut self, n: u64) -> Self {
        self.cache_bytes = n;
        self
    }

    /// Background flush interval in [`Durability::Buffered`] mode (default 200 ms).
    pub fn buffered_flush_ms(mut self, ms: u64) -> Self {
        self.buffered_flush_ms = ms.max(1);
        self
    }
}

/// State shared by the handle, the writer thread and subscriptions.
pub(crate) struct Shared {
    pub(crate) backend: Box<dyn Backend>,
    pub(crate) index: RwLock<Indexes>,
    pub(crate) head: AtomicU64,
    pub(crate) live: broadcast::Sender<Arc<Event>>,
    pub(crate) key: ChainKey,
    pub(crate) poisoned: AtomicBool,
    /// Records that could not be decoded when the store was opened.
    pub(crate) damaged_on_open: Vec<u64>,
}

struct Inner {
    shared: Arc<Shared>,
    tx: mpsc::Sender<Command>,
    limits: Limits,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    _temp: Option<TempDir>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Closing the queue lets the writer finish what it holds, flush and exit.
        let (dead_tx, _) = mpsc::channel(1);
        drop(std::mem::replace(&mut self.tx, dead_tx));
        if let Some(h) = self.writer.lock().take() {
            let _ = h.join();
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
    /// Bytes on disk.
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
const FORMAT_VERSION: &[u8] = b"lighthouse-event-store/1";
const SNAPSHOT_PREFIX: &str = "snapshot/";

impl EventStore {
    /// Opens the store in `dir`, creating it if needed, and rebuilds the indexes
    /// from the log. Refuses a store created with another key ([`Error::WrongKey`]).
    pub fn open(dir: impl AsRef<Path>, options: StoreOptions) -> Result<EventStore> {
        Self::open_inner(dir.as_ref(), options, None)
    }

    /// A store in a fresh temporary directory, removed when the last handle is
    /// dropped. For tests and demos.
    pub fn open_temporary(options: StoreOptions) -> Result<EventStore> {
        let dir = std::env::temp_dir().join(format!(
            "lighthouse-store-{}-{}",
            std::process::id(),
            ulid::Ulid::generate()
        ));
        std::fs::create_dir_all(&dir)?;
        let temp = TempDir(dir.clone());
        Self::open_inner(&dir, options, Some(temp))
    }

    fn open_inner(dir: &Path, options: StoreOptions, temp: Option<TempDir>) -> Result<EventStore> {
        let flush_every = match options.durability {
            Durability::Durable => None,
            Durability::Buffered => Some(options.buffered_flush_ms),
        };
        let backend = SledBackend::open(dir, options.cache_bytes, flush_every)?;
        Self::with_backend(Box::new(backend), options, temp)
    }

    fn with_backend(
        backend: Box<dyn Backend>,
        options: StoreOptions,
        temp: Option<TempDir>,
    ) -> Result<EventStore> {
        let key = ChainKey::new(&options.key);
        match backend.meta_get(META_KEY_CHECK)? {
            Some(stored) if stored != key.fingerprint() => return Err(Error::WrongKey),
            Some(_) => {}
            None => {
                backend.meta_put(META_FORMAT, FORMAT_VERSION)?;
                backend.meta_put(META_KEY_CHECK, &key.fingerprint())?;
                backend.flush()?;
            }
        }
        let anchor = backend.anchor()?;
        let (index, damaged, last_time) = rebuild_index(backend.as_ref(), anchor)?;
        let head = anchor.map_or(0, |a| a.seq);
        let chain = anchor.map_or(GENESIS, |a| a.mac);
        let (live, _) = broadcast::channel(options.live_buffer);
        let shared = Arc::new(Shared {
            backend,
            index: RwLock::new(index),
            head: AtomicU64::new(head),
            live,
            key,
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
        );
        let handle = std::thread::Builder::new()
            .name("lighthouse-store-writer".into())
            .spawn(move || writer.run())?;
        Ok(EventStore {
            inner: Arc::new(Inner {
                shared,
                tx,
                limits: options.limits,
                writer: Mutex::new(Some(handle)),
                _temp: temp,
            }),
        })
    }

    fn shared(&self) -> &Shared {
        &self.inner.shared
    }

    /// Appends a batch atomically: after any crash either every event of it is
    /// stored or none. Resolves once the batch is durable (or written, in
    /// [`Durability::Buffered`] mode).
    ///
    /// When every event carries an `id` that was appended before, nothing is
    /// written and the original positions are returned (`deduplicated: true`).
    pub async fn append(&self, events: Vec<NewEvent>) -> Result<AppendOutcome> {
        let (cmd, rx) = self.prepare(events)?;
        self.inner.tx.send(cmd).await.map_err(|_| Error::Closed)?;
        rx.await.map_err(|_| Error::Closed)?
    }

    /// [`append`](Self::append) for callers outside an async runtime. Must not be
    /// called from within one.
    pub fn append_blocking(&self, events: Vec<NewEvent>) -> Result<AppendOutcome> {
        let (cmd, rx) = self.prepare(events)?;
        self.inner
            .tx
            .blocking_send(cmd)
            .map_err(|_| Error::Closed)?;
        rx.blocking_recv().map_err(|_| Error::Closed)?
    }

    /// Appends one event.
    pub async fn append_one(&self, event: NewEvent) -> Result<Appended> {
        let mut out = self.append(vec![event]).await?;
        out.events.pop().ok_or(Error::EmptyBatch)
    }

    fn prepare(
        &self,
        events: Vec<NewEvent>,
    ) -> Result<(Command, oneshot::Receiver<Result<AppendOutcome>>)> {
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
            let p = Prepared::new(e);
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
            prepared.push(p);
        }
        if total > limits.max_batch_bytes {
            return Err(Error::TooLarge {
                what: "batch bytes",
                actual: total,
                limit: limits.max_batch_bytes,
            });
        }
        let (reply, rx) = oneshot::channel();
        Ok((
            Command::Append {
                events: prepared,
                reply,
            },
            rx,
        ))
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
            size_bytes: self.shared().backend.size_on_disk()?,
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
            Some(bytes) => decode(seq, &bytes).map(Some),
            None => Ok(None),
        }
    }

    /// Events of `stream` with `version >= from_version`, at most `limit`, in order.
    pub fn read_stream(&self, stream: &str, from_version: u64, limit: usize) -> Result<Vec<Event>> {
        let q = Query {
            min_version: Some(from_version),
            limit,
            ..Query::new(Filter::stream(stream))
        };
        Ok(self.read(&q)?.events)
    }

    /// Runs a query. Exact filters are served by indexes: the cost is a binary
    /// search plus one step per candidate of the most selective filter.
    pub fn read(&self, q: &Query) -> Result<Page> {
        let limit = q.limit.clamp(1, Query::MAX_LIMIT);
        let Some((lo, hi)) = self.bounds(q) else {
            return Ok(Page {
                events: Vec::new(),
                next: None,
            });
        };
        let descending = q.order == Order::Descending;
        let mut events = Vec::with_capacity(limit.min(256));
        if has_exact(&q.filter) {
            self.read_indexed(q, lo, hi, descending, limit, &mut events)?;
        } else {
            for item in self.shared().backend.range(lo, hi, descending) {
                let (seq, bytes) = item?;
                if let Some(e) = self.matching(seq, &bytes, &q.filter)? {
                    events.push(e);
                    if events.len() == limit {
                        break;
                    }
                }
            }
        }
        let next = (events.len() == limit).then(|| events[events.len() - 1].seq);
        Ok(Page { events, next })
    }

    /// The seq window `[lo, hi]` a query covers, `None` if empty.
    fn bounds(&self, q: &Query) -> Option<(u64, u64)> {
        let head = self.head_seq();
        let mut lo = q.after.map_or(1, |a| a.saturating_add(1));
        let mut hi = q.before.map_or(head, |b| b.saturating_sub(1)).min(head);
        let idx = self.shared().index.read();
        if let Some(t) = q.since {
            lo = lo.max(idx.first_seq_at_or_after(t.unix_millis()));
        }
        if let Some(t) = q.until {
            hi = hi.min(idx.first_seq_at_or_after(t.unix_millis()).saturating_sub(1));
        }
        if let Some(stream) = &q.filter.stream {
            let list = idx.stream(stream);
            if let Some(v) = q.min_version {
                lo = lo.max(*list.get(usize::try_from(v).ok()?)?);
            }
            if let Some(&s) = q
                .max_version
                .and_then(|v| usize::try_from(v).ok())
                .and_then(|v| list.get(v))
            {
                hi = hi.min(s);
            }
        }
        (lo <= hi && hi > 0).then_some((lo, hi))
    }

    fn read_indexed(
        &self,
        q: &Query,
        mut lo: u64,
        mut hi: u64,
        descending: bool,
        limit: usize,
        out: &mut Vec<Event>,
    ) -> Result<()> {
        // Candidates are copied out in chunks so the index lock is held briefly and
        // a large posting list is never copied whole.
        let chunk = (limit * 2).clamp(64, 4096);
        loop {
            let candidates: Vec<u64> = {
                let idx = self.shared().index.read();
                let f = &q.filter;
                let lists = [
                    f.stream.as_deref().map(|s| idx.stream(s)),
                    f.event_type.as_deref().map(|t| idx.by_type(t)),
                    f.agent.as_deref().map(|a| idx.by_agent(a)),
                    f.correlation_id.as_deref().map(|c| idx.by_correlation(c)),
                ];
                let best = lists
                    .into_iter()
                    .flatten()
                    .map(|l| window(l, lo, hi))
                    .min_by_key(|l| l.len())
                    .unwrap_or(&[]);
                if descending {
                    best[best.len().saturating_sub(chunk)..]
                        .iter()
                        .rev()
                        .copied()
                        .collect()
                } else {
                    best[..best.len().min(chunk)].to_vec()
                }
            };
            let exhausted = candidates.len() < chunk;
            for &seq in &candidates {
                let Some(bytes) = self.shared().backend.get(seq)? else {
                    continue;
                };
                if let Some(e) = self.matching(seq, &bytes, &q.filter)? {
                    out.push(e);
                    if out.len() == limit {
                        return Ok(());
                    }
                }
            }
            match candidates.last() {
                Some(&last) if !exhausted => {
                    if descending {
                        hi = last - 1;
                    } else {
                        lo = last + 1;
                    }
                }
                _ => return Ok(()),
            }
            if lo > hi {
                return Ok(());
            }
        }
    }

    fn matching(&self, seq: u64, bytes: &[u8], f: &Filter) -> Result<Option<Event>> {
        let v = RecordView::parse(bytes).map_err(|e| Error::Corrupt {
            seq,
            reason: e.0.into(),
        })?;
        if !f.matches_parts(v.stream, v.event_type, v.agent, v.correlation_id) {
            return Ok(None);
        }
        v.to_event().map(Some).map_err(|e| Error::Corrupt {
            seq,
            reason: e.0.into(),
        })
    }

    /// Every event matching `filter` with `seq > after`: first those on disk, then
    /// live ones as they are committed, with no gap and no duplicate.
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
                        let ok = v.seq == seq && shared.key.chain(&prev, v.body) == *v.mac;
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
    /// Replaces an older one of that name; durable when this returns.
    pub async fn save_snapshot(&self, name: &str, seq: u64, data: &[u8]) -> Result<()> {
        crate::model::validate_token(name, crate::error::Field::SnapshotName)?;
        let mut v = Vec::with_capacity(8 + data.len());
        v.extend_from_slice(&seq.to_be_bytes());
        v.extend_from_slice(data);
        self.shared()
            .backend
            .meta_put(&format!("{SNAPSHOT_PREFIX}{name}"), &v)?;
        self.flush().await
    }

    /// The snapshot saved under `name`, if any.
    pub fn load_snapshot(&self, name: &str) -> Result<Option<Snapshot>> {
        let Some(v) = self
            .shared()
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
        Ok(self
            .shared()
            .backend
            .meta_keys(SNAPSHOT_PREFIX)?
            .into_iter()
            .filter_map(|k| k.strip_prefix(SNAPSHOT_PREFIX).map(str::to_owned))
            .collect())
    }

    pub(crate) fn backend(&self) -> &dyn Backend {
        self.shared().backend.as_ref()
    }

    pub(crate) fn chain_key(&self) -> &ChainKey {
        &self.shared().key
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

fn has_exact(f: &Filter) -> bool {
    f.stream.is_some() || f.event_type.is_some() || f.agent.is_some() || f.correlation_id.is_some()
}

fn decode(seq: u64, bytes: &[u8]) -> Result<Event> {
    RecordView::parse(bytes)
        .and_then(|v| v.to_event())
        .map_err(|e| Error::Corrupt {
            seq,
            reason: e.0.into(),
        })
}

/// Scans the log once and rebuilds the indexes; returns them, the seqs that could
/// not be decoded, and the last append time.
fn rebuild_index(
    backend: &dyn Backend,
    anchor: Option<Anchor>,
) -> Result<(Indexes, Vec<u64>, Timestamp)> {
    let mut idx = Indexes::new();
    let mut damaged = Vec::new();
    let mut last_time = Timestamp::EPOCH;
    let Some(anchor) = anchor else {
        return Ok((idx, damaged, last_time));
    };
    for item in backend.range(1, anchor.seq, false) {
        let (seq, bytes) = item?;
        match RecordView::parse(&bytes) {
            Ok(v) if v.seq == seq => {
                last_time = last_time.max(v.time);
                idx.add(&v);
            }
            _ => {
                tracing::error!(seq, "event store record is damaged; run verify");
                damaged.push(seq);
            }
        }
    }
    Ok((idx, damaged, last_time))
}
