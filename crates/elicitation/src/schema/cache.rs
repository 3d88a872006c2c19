//! A bounded cache of compiled schemas, keyed by profile and schema text.
//!
//! Agents ask the same kinds of questions again and again, so most creates
//! carry a schema the service has compiled before. Compiling the form profile
//! cost about 4,900 instructions per create (more for the JSON Schema profile),
//! against one serialisation of the schema (which the size check needs anyway)
//! and a hash lookup here. A compile that fails is not cached, so its errors
//! (and refused reference retrievals) are reported every time.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use parking_lot::Mutex;
use serde_json::Value;

use super::CompiledSchema;
use crate::error::Error;
use crate::limits::Limits;
use crate::record::SchemaProfile;

/// Schemas longer than this (serialised) are compiled every time: the cache
/// holds at most `capacity` keys of at most this many bytes.
const MAX_CACHED_SCHEMA_BYTES: usize = 4096;

type Key = (SchemaProfile, Box<[u8]>);

/// Compiled schemas by (profile, serialised schema); first in, first out.
pub(crate) struct SchemaCache {
    capacity: usize,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    map: HashMap<Key, Arc<CompiledSchema>>,
    order: VecDeque<Key>,
}

impl SchemaCache {
    /// A cache of at most `capacity` schemas (0 turns it off).
    pub(crate) fn new(capacity: usize) -> Self {
        SchemaCache {
            capacity,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// The compiled `schema`, from the cache or compiled now (and then cached).
    /// Same errors as [`CompiledSchema::compile_counting`].
    pub(crate) fn compile(
        &self,
        profile: SchemaProfile,
        schema: &Value,
        limits: &Limits,
        attempts: &Arc<AtomicU64>,
    ) -> Result<Arc<CompiledSchema>, Error> {
        // Off, too long to keep, or unserialisable (the compile reports it):
        // no key, compiled every time.
        let key: Option<Key> = (self.capacity > 0)
            .then(|| serde_json::to_vec(schema).ok())
            .flatten()
            .filter(|t| t.len() <= MAX_CACHED_SCHEMA_BYTES)
            .map(|t| (profile, t.into_boxed_slice()));
        if let Some(key) = &key
            && let Some(c) = self.inner.lock().map.get(key)
        {
            return Ok(c.clone());
        }
        let compiled = Arc::new(CompiledSchema::compile_counting(
            profile, schema, limits, attempts,
        )?);
        let Some(key) = key else {
            return Ok(compiled);
        };
        let mut inner = self.inner.lock();
        if !inner.map.contains_key(&key) {
            while inner.order.len() >= self.capacity {
                let Some(old) = inner.order.pop_front() else {
                    break;
                };
                inner.map.remove(&old);
            }
            inner.order.push_back(key.clone());
            inner.map.insert(key, compiled.clone());
        }
        Ok(compiled)
    }

    /// How many schemas are held.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.inner.lock().map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema(n: u64) -> Value {
        json!({"type": "object",
               "properties": {"port": {"type": "integer", "minimum": n}},
               "required": ["port"]})
    }

    /// `schema(n)` through `cache`, which must accept it.
    fn compiled(cache: &SchemaCache, profile: SchemaProfile, n: u64) -> Arc<CompiledSchema> {
        let attempts = Arc::new(AtomicU64::new(0));
        cache
            .compile(profile, &schema(n), &Limits::default(), &attempts)
            .unwrap()
    }

    #[test]
    fn the_same_schema_is_compiled_once_and_checks_answers_alike() {
        let cache = SchemaCache::new(8);
        let a = compiled(&cache, SchemaProfile::Form, 1);
        let b = compiled(&cache, SchemaProfile::Form, 1);
        assert!(Arc::ptr_eq(&a, &b));
        assert!(b.check(&json!({"port": 1})).is_ok());
        assert!(b.check(&json!({"port": 0})).is_err());
        // Another profile is another entry.
        let c = compiled(&cache, SchemaProfile::JsonSchema, 1);
        assert!(!Arc::ptr_eq(&a, &c));
        assert_eq!(cache.len(), 2);
    }

    #[test]
    fn it_holds_at_most_its_capacity_and_forgets_the_oldest() {
        let cache = SchemaCache::new(3);
        let first = compiled(&cache, SchemaProfile::Form, 0);
        for n in 1..10 {
            compiled(&cache, SchemaProfile::Form, n);
            assert!(cache.len() <= 3);
        }
        let again = compiled(&cache, SchemaProfile::Form, 0);
        assert!(!Arc::ptr_eq(&first, &again));
    }

    #[test]
    fn a_refused_schema_is_refused_every_time_and_not_kept() {
        let cache = SchemaCache::new(8);
        let limits = Limits::default();
        let attempts = Arc::new(AtomicU64::new(0));
        let bad = json!({"type": "object", "properties": {"a": {"type": "object"}}});
        for _ in 0..2 {
            assert!(matches!(
                cache.compile(SchemaProfile::Form, &bad, &limits, &attempts),
                Err(Error::InvalidSchema { .. })
            ));
        }
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn capacity_zero_compiles_every_time() {
        let cache = SchemaCache::new(0);
        let a = compiled(&cache, SchemaProfile::Form, 1);
        let b = compiled(&cache, SchemaProfile::Form, 1);
        assert!(!Arc::ptr_eq(&a, &b));
        assert_eq!(cache.len(), 0);
    }
}
