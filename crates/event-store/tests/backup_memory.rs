//! A backup holds one snapshot in memory at a time, measured with a counting
//! allocator (this binary holds this one test, so nothing else allocates
//! alongside it but the store's own threads).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use lighthouse_event_store::{Durability, EventStore, NewEvent, StoreOptions};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is passed to `System` unchanged; only counters are kept.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract is `System`'s.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as above.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size >= layout.size() {
                let grown = new_size - layout.size();
                let live = LIVE.fetch_add(grown, Ordering::Relaxed) + grown;
                PEAK.fetch_max(live, Ordering::Relaxed);
            } else {
                LIVE.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const MIB: usize = 1 << 20;

#[test]
fn a_backup_holds_one_snapshot_at_a_time() {
    const SNAPSHOTS: usize = 6;
    const EACH: usize = 8 * MIB;
    let d = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let s = EventStore::open(
        d.path().join("s"),
        StoreOptions::new(b"k")
            .durability(Durability::Buffered)
            .cache_bytes(1 << 20),
    )
    .unwrap();
    rt.block_on(async {
        s.append_one(NewEvent::new("s", "t.x", serde_json::json!(1)))
            .await
            .unwrap();
        for n in 0..SNAPSHOTS {
            s.save_snapshot(&format!("p{n}"), 1, vec![n as u8; EACH])
                .await
                .unwrap();
        }
    });
    let before = LIVE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let rep = s.backup(d.path().join("b.lhbk")).unwrap();
    let peak = PEAK.load(Ordering::Relaxed) - before;
    assert_eq!(rep.snapshots, SNAPSHOTS);
    // One snapshot and the backup's buffers; all six would be 48 MiB.
    assert!(
        peak < 2 * EACH + 4 * MIB,
        "the backup held {} MiB at its peak",
        peak / MIB
    );
}
