//! A capped, insert-only table from first-use label values to their series,
//! read without locks.
//!
//! Label values come from traffic, so the table holds at most `cap` entries
//! plus one overflow entry for everything else. Entries are never removed,
//! which is what makes lock-free reads simple: the table is an open-addressed
//! array of write-once cells at most half full. A read hashes the key and
//! probes cells until it finds the key or an empty cell (only acquire loads);
//! only a first use takes the insert lock. References into the table live as
//! long as the table.

use parking_lot::Mutex;
use std::borrow::Borrow;
use std::hash::{Hash, Hasher};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A word-at-a-time multiplicative hash (the FxHash step) with a final mix,
/// fast for the short keys here. Flooding is not a concern: the cap bounds
/// the table, so even a fully colliding key set costs at most `cap` probes.
struct WordHash(u64);

impl WordHash {
    #[inline]
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

impl Hasher for WordHash {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        let mut word = [0u8; 8];
        word[..rest.len()].copy_from_slice(rest);
        self.add(u64::from_le_bytes(word) ^ ((rest.len() as u64) << 59));
    }

    #[inline]
    fn finish(&self) -> u64 {
        // The multiply leaves the low bits weak; the table indexes by them.
        let h = self.0 ^ (self.0 >> 33);
        let h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^ (h >> 33)
    }
}

fn hash<Q: Hash + ?Sized>(key: &Q) -> u64 {
    let mut h = WordHash(0);
    key.hash(&mut h);
    h.finish()
}

/// What a lookup returned.
#[derive(Debug)]
pub(crate) struct Admitted<'a, V> {
    pub(crate) value: &'a V,
    /// The key was invalid or the cap was reached: `value` is the overflow entry.
    pub(crate) folded: bool,
}

/// See the module documentation.
#[derive(Debug)]
pub(crate) struct LabelTable<K, V> {
    cells: Box<[OnceLock<(K, V)>]>,
    cap: usize,
    len: AtomicUsize,
    inserting: Mutex<()>,
    overflow: OnceLock<V>,
}

impl<K: Eq, V> LabelTable<K, V> {
    /// A table for at most `cap` keys.
    pub(crate) fn new(cap: usize) -> Self {
        // At most half full, so probes stay short and always meet an empty cell.
        let cells = (cap.saturating_mul(2) + 1).next_power_of_two();
        Self {
            cells: (0..cells).map(|_| OnceLock::new()).collect(),
            cap,
            len: AtomicUsize::new(0),
            inserting: Mutex::new(()),
            overflow: OnceLock::new(),
        }
    }

    fn find<Q>(&self, key: &Q, h: u64) -> Result<&V, usize>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        let mask = self.cells.len() - 1;
        let mut i = (h as usize) & mask;
        for _ in 0..self.cells.len() {
            match self.cells[i].get() {
                Some((k, v)) if k.borrow() == key => return Ok(v),
                Some(_) => i = (i + 1) & mask,
                None => return Err(i),
            }
        }
        // Unreachable while the table is at most half full; treat as absent.
        Err(self.cells.len())
    }

    /// The entry for `key`, created with `make(Some(key))` on first use while
    /// under the cap. A key that `valid` refuses, or a new key once the cap is
    /// reached, gets the overflow entry, created with `make(None)` on first
    /// need. `valid` runs only for keys not in the table (only valid keys
    /// ever enter it), so the common path does not pay for validation.
    #[inline]
    pub(crate) fn get_or_create<Q>(
        &self,
        key: &Q,
        valid: impl FnOnce(&Q) -> bool,
        make: impl FnOnce(Option<&Q>) -> V,
    ) -> Admitted<'_, V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned + ?Sized,
        Q::Owned: Into<K>,
    {
        let h = hash(key);
        if let Ok(value) = self.find(key, h) {
            return Admitted {
                value,
                folded: false,
            };
        }
        if valid(key) {
            let _guard = self.inserting.lock();
            match self.find(key, h) {
                Ok(value) => {
                    return Admitted {
                        value,
                        folded: false,
                    };
                }
                Err(empty) if empty < self.cells.len() && self.len() < self.cap => {
                    // Only inserts fill cells, and they hold the lock: this
                    // cell is empty and the initialiser runs.
                    let (_, value) =
                        self.cells[empty].get_or_init(|| (key.to_owned().into(), make(Some(key))));
                    self.len.fetch_add(1, Ordering::Release);
                    return Admitted {
                        value,
                        folded: false,
                    };
                }
                Err(_) => {}
            }
        }
        Admitted {
            value: self.overflow.get_or_init(|| make(None)),
            folded: true,
        }
    }

    /// Distinct admitted keys (the overflow entry not included).
    pub(crate) fn len(&self) -> usize {
        self.len.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::labels::OVERFLOW_LABEL_VALUE;

    fn name(k: Option<&str>) -> String {
        k.map_or_else(|| OVERFLOW_LABEL_VALUE.to_string(), str::to_string)
    }

    #[test]
    fn a_table_never_holds_more_than_its_cap() {
        let table: LabelTable<Box<str>, String> = LabelTable::new(3);
        let mut folded = 0;
        for i in 0..1_000 {
            let key = format!("/r/{i}");
            let got = table.get_or_create(key.as_str(), |_| true, name);
            if got.folded {
                folded += 1;
                assert_eq!(got.value, OVERFLOW_LABEL_VALUE);
            } else {
                assert_eq!(got.value, &key);
            }
        }
        assert_eq!(table.len(), 3);
        assert_eq!(folded, 997);
        assert_eq!(table.cells.iter().filter(|c| c.get().is_some()).count(), 3);
        // An admitted key keeps its own entry after the cap is reached.
        let again = table.get_or_create("/r/1", |_| true, |_| unreachable!("exists"));
        assert!(!again.folded);
        assert_eq!(again.value, "/r/1");
    }

    #[test]
    fn an_invalid_key_is_folded_without_taking_a_slot() {
        let table: LabelTable<Box<str>, u32> = LabelTable::new(2);
        let got = table.get_or_create("bad", |_| false, |k| u32::from(k.is_some()));
        assert!(got.folded);
        assert_eq!(*got.value, 0);
        assert_eq!(table.len(), 0);
    }

    #[test]
    fn colliding_and_numeric_keys_are_found_again() {
        // A full table of u16 keys: every key inserted is found with its value.
        let table: LabelTable<u16, u32> = LabelTable::new(100);
        for code in 100u16..200 {
            let got = table.get_or_create(&code, |_| true, |k| u32::from(*k.unwrap()) * 10);
            assert!(!got.folded);
        }
        for code in 100u16..200 {
            let got = table.get_or_create(&code, |_| true, |_| unreachable!("exists"));
            assert_eq!(*got.value, u32::from(code) * 10);
        }
        assert!(table.get_or_create(&200, |_| true, |_| 0).folded);
    }

    #[test]
    fn concurrent_first_uses_create_each_key_once() {
        let table: LabelTable<Box<str>, AtomicUsize> = LabelTable::new(64);
        let created = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for i in 0..2_000 {
                        let key = format!("/k/{}", i % 50);
                        let got = table.get_or_create(
                            key.as_str(),
                            |_| true,
                            |_| {
                                created.fetch_add(1, Ordering::SeqCst);
                                AtomicUsize::new(0)
                            },
                        );
                        got.value.fetch_add(1, Ordering::SeqCst);
                    }
                });
            }
        });
        assert_eq!(created.load(Ordering::SeqCst), 50);
        assert_eq!(table.len(), 50);
        let total: usize = (0..50)
            .map(|i| {
                let key = format!("/k/{i}");
                table
                    .get_or_create(key.as_str(), |_| true, |_| unreachable!("exists"))
                    .value
                    .load(Ordering::SeqCst)
            })
            .sum();
        assert_eq!(total, 8_000);
    }
}
