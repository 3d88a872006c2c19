//! [`Published`]: the current [`FlagSet`] of a store, readable without locks.
//!
//! The snapshot lives in an `ArcSwap`. A writer stores a new snapshot, then
//! increments a generation counter. Evaluations go through [`Published::with`]:
//! each thread keeps the snapshot it last used with its generation, and while
//! the generation has not moved it evaluates on that snapshot after one plain
//! atomic load, instead of `arc-swap`'s load (a full-fence swap per call). When
//! the generation moved it loads the new snapshot once. A change is therefore
//! seen by every evaluation that starts after the writer incremented the
//! generation, which it does before the write returns.
//!
//! Memory: each thread holds at most one snapshot (of the store it last
//! evaluated on) until its next evaluation or its exit.

use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::{ArcSwap, Guard};

use crate::set::FlagSet;

/// Tells stores apart in the per-thread cache.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// (store id, generation, snapshot) of the last evaluation on this thread.
    static LAST: RefCell<Option<(u64, u64, Arc<FlagSet>)>> = const { RefCell::new(None) };
}

pub(crate) struct Published {
    id: u64,
    current: ArcSwap<FlagSet>,
    generation: AtomicU64,
}

impl Published {
    pub(crate) fn new(set: FlagSet) -> Self {
        Published {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            current: ArcSwap::from_pointee(set),
            generation: AtomicU64::new(0),
        }
    }

    /// The current snapshot, for reads that are not on the hot path.
    pub(crate) fn load(&self) -> Guard<Arc<FlagSet>> {
        self.current.load()
    }

    pub(crate) fn load_full(&self) -> Arc<FlagSet> {
        self.current.load_full()
    }

    /// Publishes `set`: every `with` that starts after this returns sees it.
    pub(crate) fn store(&self, set: FlagSet) {
        self.current.store(Arc::new(set));
        // Release pairs with the Acquire in `with`: whoever sees the new
        // generation also sees the new snapshot.
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// Runs `f` on the current snapshot. `f` is `Fn` so that it can run either
    /// on the cached snapshot or, when the cache is unavailable (thread
    /// teardown, or `with` re-entered from within `f`), on a fresh load.
    #[inline]
    pub(crate) fn with<R>(&self, f: impl Fn(&FlagSet) -> R) -> R {
        let generation = self.generation.load(Ordering::Acquire);
        let cached = LAST.try_with(|last| {
            let mut last = last.try_borrow_mut().ok()?;
            let fresh = matches!(&*last, Some((id, g, _)) if *id == self.id && *g == generation);
            if !fresh {
                // Loaded after reading `generation`, so at least that new.
                *last = Some((self.id, generation, self.current.load_full()));
            }
            last.as_ref().map(|(_, _, set)| f(set))
        });
        match cached {
            Ok(Some(r)) => r,
            _ => f(&self.current.load()),
        }
    }
}
