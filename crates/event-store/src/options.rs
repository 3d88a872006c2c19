//! [`StoreOptions`] and [`Durability`]: how a store is opened.

use std::sync::Arc;

use crate::clock::{SharedClock, SystemClock};
use crate::model::Limits;

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

/// Default bound of the storage engine's page cache: 512 MiB.
///
/// Since records moved to segment files (format 2) sled caches only chunk
/// locations (16 bytes per chunk of records) and metadata; the records are read
/// through the kernel's page cache. The bound is kept at its earlier value; it
/// was not re-measured for the new layout.
pub const DEFAULT_CACHE_BYTES: u64 = 512 << 20;

/// Default bound of one projection snapshot: 1 GiB.
///
/// A snapshot is saved from, and loaded into, one buffer, and a backup holds
/// one at a time: this bounds that memory. The elicitation service's snapshot
/// of 100,000 elicitations is about 59 MB (docs/EVENT_STORE.md).
pub const DEFAULT_MAX_SNAPSHOT_BYTES: u64 = 1 << 30;

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
    pub(crate) max_snapshot_bytes: u64,
    pub(crate) observer: Option<Arc<dyn AppendObserver>>,
}

/// Told about every acknowledged append, for metrics. Called on the writer
/// thread after the group is committed: must be cheap and must not block.
pub trait AppendObserver: Send + Sync + 'static {
    /// `events` were acknowledged `latency` after the append was handed to the
    /// store; the head is now `head_seq`.
    fn appended(&self, events: usize, latency: std::time::Duration, head_seq: u64);

    /// The writer committed one group of `events` events in `elapsed`: the
    /// write, the sync (in durable mode) and the index updates, the part of an
    /// append's latency that belongs to the disk. Called once per group, on
    /// the writer thread, before the group's appends are acknowledged.
    fn committed(&self, events: usize, elapsed: std::time::Duration) {
        let _ = (events, elapsed);
    }
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
            .field("max_snapshot_bytes", &self.max_snapshot_bytes)
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
            cache_bytes: DEFAULT_CACHE_BYTES,
            buffered_flush_ms: 200,
            max_snapshot_bytes: DEFAULT_MAX_SNAPSHOT_BYTES,
            observer: None,
        }
    }

    /// Durability mode (default [`Durability::Durable`]).
    pub fn durability(mut self, d: Durability) -> Self {
        self.durability = d;
        self
    }

    /// Size limits (default [`Limits::default`]). `max_event_bytes` is
    /// brought down to [`Limits::MAX_EVENT_BYTES`] and `max_batch_bytes` to
    /// [`Limits::MAX_BATCH_BYTES`] (64 MiB each) when larger: a record's
    /// lengths are u32 on disk, and a larger event could be acknowledged, then
    /// neither read back nor restored from a backup.
    pub fn limits(mut self, l: Limits) -> Self {
        let clamped = l.clamped();
        if clamped != l {
            tracing::warn!(
                asked = ?l,
                used = ?clamped,
                "event store: size limits above 64 MiB brought down to 64 MiB"
            );
        }
        self.limits = clamped;
        self
    }

    /// The clock that stamps events (default the system clock).
    pub fn clock(mut self, c: SharedClock) -> Self {
        self.clock = c;
        self
    }

    /// Events kept for live subscribers (default 4096). A live subscriber that
    /// falls further behind gets [`Error::Lagged`](crate::Error::Lagged). Worst-case memory is this
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

    /// The storage engine's page cache (default [`DEFAULT_CACHE_BYTES`], 512 MiB).
    /// The cache is filled on demand; this bounds it.
    pub fn cache_bytes(mut self, n: u64) -> Self {
        self.cache_bytes = n;
        self
    }

    /// Observes every acknowledged append (metrics).
    pub fn observer(mut self, o: Arc<dyn AppendObserver>) -> Self {
        self.observer = Some(o);
        self
    }

    /// Largest projection snapshot, in bytes (default
    /// [`DEFAULT_MAX_SNAPSHOT_BYTES`], 1 GiB). A larger save is refused with
    /// [`Error::TooLarge`](crate::Error::TooLarge); a larger snapshot file is
    /// [`Error::Corrupt`](crate::Error::Corrupt) to load (nothing is allocated
    /// for it) and is left out of backups; a restore leaves out a backup's
    /// snapshot larger than this, with a warning.
    pub fn max_snapshot_bytes(mut self, n: u64) -> Self {
        self.max_snapshot_bytes = n;
        self
    }

    /// Background flush interval in [`Durability::Buffered`] mode (default 200 ms).
    pub fn buffered_flush_ms(mut self, ms: u64) -> Self {
        self.buffered_flush_ms = ms.max(1);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_limits_past_what_the_formats_hold_are_brought_down() {
        let asked = Limits {
            max_event_bytes: usize::MAX,
            max_batch_events: 7,
            max_batch_bytes: 5 << 30,
        };
        let o = StoreOptions::new(b"k").limits(asked);
        assert_eq!(
            o.limits,
            Limits {
                max_event_bytes: Limits::MAX_EVENT_BYTES,
                max_batch_events: 7,
                max_batch_bytes: Limits::MAX_BATCH_BYTES,
            }
        );
        let fits = Limits {
            max_event_bytes: 3,
            max_batch_events: 2,
            max_batch_bytes: 1,
        };
        assert_eq!(StoreOptions::new(b"k").limits(fits).limits, fits);
    }
}
