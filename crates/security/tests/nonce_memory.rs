//! The nonce store's memory: `heap_bytes()` (what the benchmark reports per
//! nonce) agrees with what the allocator really handed out, and the total stays
//! bounded by the capacity.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Arc;
use std::sync::atomic::{AtomicIsize, Ordering};

use lighthouse_event_store::{ManualClock, Timestamp};
use lighthouse_security::{NonceConfig, NonceRefusal, NonceStore, Unavailable};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::SeqCst);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Ordering::SeqCst);
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(new as isize - l.size() as isize, Ordering::SeqCst);
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const T0: i64 = 1_790_000_000;

// One test in this binary, so no other thread allocates while it measures.
#[test]
fn heap_bytes_matches_the_allocator_and_memory_is_bounded() {
    let clock = ManualClock::new(Timestamp::from_unix_secs(T0));
    let config = NonceConfig {
        capacity: 300_000,
        ..NonceConfig::default()
    };
    let names: Vec<String> = (0..100).map(|i| format!("agent-{i}")).collect();
    let nonces: Vec<String> = (0..300_000).map(|i| format!("nonce-{i:019}")).collect();
    let now = Timestamp::from_unix_secs(T0);

    let before = LIVE.load(Ordering::SeqCst);
    let store = NonceStore::in_memory(config, Arc::new(clock)).unwrap();
    for (i, n) in nonces.iter().take(250_000).enumerate() {
        store
            .check_and_insert(&names[i % names.len()], n, T0 - 100 + (i % 400) as i64, now)
            .unwrap();
    }
    let measured = (LIVE.load(Ordering::SeqCst) - before) as usize;
    let reported = store.heap_bytes();
    let ratio = reported as f64 / measured as f64;
    assert!(
        (0.9..=1.1).contains(&ratio),
        "heap_bytes {reported} vs allocator {measured}"
    );
    let per_nonce = measured as f64 / 250_000.0;
    assert!(per_nonce < 64.0, "{per_nonce} bytes per nonce");

    // Up to the capacity and no further.
    for (i, n) in nonces.iter().enumerate().skip(250_000) {
        let got = store.check_and_insert(&names[i % names.len()], n, T0, now);
        assert!(got.is_ok());
    }
    let at_capacity = LIVE.load(Ordering::SeqCst);
    for i in 0..10_000 {
        assert_eq!(
            store.check_and_insert("agent-0", &format!("extra-nonce-{i:010}"), T0, now),
            Err(NonceRefusal::Unavailable(Unavailable::NoncesFull))
        );
    }
    assert_eq!(store.len(), 300_000);
    let growth = LIVE.load(Ordering::SeqCst) - at_capacity;
    assert!(growth <= 0, "refused inserts grew memory by {growth} bytes");
    drop(store);
}
