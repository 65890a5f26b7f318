//! Bounded, thread-safe LRU cache of statement analyses, keyed by the
//! normalized statement text (see [`crate::lexer::normalize`]).
//!
//! The cache holds [`Analysis`] values, not verdicts: the verdict depends on
//! the identity and target, and matching is cheap, so it runs every time.
//!
//! The map is split into shards, each a `std::sync::Mutex` around a small
//! LRU (a hash map into a slab of doubly linked entries). A std mutex, not an
//! async one: critical sections are a few hash operations and never await.
//! A poisoned shard is recovered (its content is still consistent: every
//! mutation completes before anything can panic).

use std::collections::hash_map::{DefaultHasher, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::analyze::Analysis;

const NIL: usize = usize::MAX;
const SHARDS: usize = 8;

struct Entry {
    key: Arc<str>,
    value: Arc<Analysis>,
    prev: usize,
    next: usize,
}

/// One LRU shard: slab of entries linked most-recent-first.
struct Lru {
    map: HashMap<Arc<str>, usize>,
    slab: Vec<Entry>,
    head: usize,
    tail: usize,
    cap: usize,
}

impl Lru {
    fn new(cap: usize) -> Self {
        Lru {
            map: HashMap::with_capacity(cap.min(1024)),
            slab: Vec::new(),
            head: NIL,
            tail: NIL,
            cap: cap.max(1),
        }
    }

    fn unlink(&mut self, i: usize) {
        let (p, n) = (self.slab[i].prev, self.slab[i].next);
        if p == NIL {
            self.head = n;
        } else {
            self.slab[p].next = n;
        }
        if n == NIL {
            self.tail = p;
        } else {
            self.slab[n].prev = p;
        }
    }

    fn push_front(&mut self, i: usize) {
        self.slab[i].prev = NIL;
        self.slab[i].next = self.head;
        if self.head != NIL {
            self.slab[self.head].prev = i;
        }
        self.head = i;
        if self.tail == NIL {
            self.tail = i;
        }
    }

    fn get(&mut self, key: &str) -> Option<Arc<Analysis>> {
        let i = *self.map.get(key)?;
        if self.head != i {
            self.unlink(i);
            self.push_front(i);
        }
        Some(Arc::clone(&self.slab[i].value))
    }

    fn insert(&mut self, key: &str, value: Arc<Analysis>) {
        if let Some(&i) = self.map.get(key) {
            self.slab[i].value = value;
            self.unlink(i);
            self.push_front(i);
            return;
        }
        let key: Arc<str> = Arc::from(key);
        let i = if self.slab.len() < self.cap {
            self.slab.push(Entry {
                key: Arc::clone(&key),
                value,
                prev: NIL,
                next: NIL,
            });
            self.slab.len() - 1
        } else {
            // Evict the least recently used entry and reuse its slot.
            let i = self.tail;
            self.unlink(i);
            let old = std::mem::replace(&mut self.slab[i].key, Arc::clone(&key));
            self.map.remove(&old);
            self.slab[i].value = value;
            i
        };
        self.map.insert(key, i);
        self.push_front(i);
    }

    fn len(&self) -> usize {
        self.map.len()
    }
}

/// Cache statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CacheStats {
    /// Entries held.
    pub len: usize,
    /// Maximum entries.
    pub capacity: usize,
}

/// The sharded analysis cache.
pub struct AnalysisCache {
    shards: Vec<Mutex<Lru>>,
    capacity: usize,
}

impl AnalysisCache {
    /// Creates a cache holding at most `capacity` analyses (at least one per
    /// shard).
    #[must_use]
    pub fn new(capacity: usize) -> Self {
        let per = capacity.div_ceil(SHARDS).max(1);
        AnalysisCache {
            shards: (0..SHARDS).map(|_| Mutex::new(Lru::new(per))).collect(),
            capacity: per * SHARDS,
        }
    }

    fn shard(&self, key: &str) -> MutexGuard<'_, Lru> {
        let mut h = DefaultHasher::new();
        key.hash(&mut h);
        // Truncation is fine: only the low bits pick a shard.
        #[allow(clippy::cast_possible_truncation)]
        let i = (h.finish() as usize) % SHARDS;
        self.shards[i]
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Looks `key` up, marking it most recently used.
    #[must_use]
    pub fn get(&self, key: &str) -> Option<Arc<Analysis>> {
        self.shard(key).get(key)
    }

    /// Stores `value` under `key`, evicting the least recently used entry of
    /// the shard when full.
    pub fn insert(&self, key: &str, value: Arc<Analysis>) {
        self.shard(key).insert(key, value);
    }

    /// Drops every entry.
    pub fn clear(&self) {
        for s in &self.shards {
            let mut g = s.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let cap = g.cap;
            *g = Lru::new(cap);
        }
    }

    /// Current size and capacity.
    #[must_use]
    pub fn stats(&self) -> CacheStats {
        let len = self
            .shards
            .iter()
            .map(|s| {
                s.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .len()
            })
            .sum();
        CacheStats {
            len,
            capacity: self.capacity,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(n: usize) -> Arc<Analysis> {
        Arc::new(Analysis {
            statements: Vec::new(),
            cacheable: n.is_multiple_of(2),
        })
    }

    #[test]
    fn lru_evicts_least_recent() {
        let mut l = Lru::new(2);
        l.insert("a", a(0));
        l.insert("b", a(1));
        assert!(l.get("a").is_some()); // a is now most recent
        l.insert("c", a(2)); // evicts b
        assert!(l.get("b").is_none());
        assert!(l.get("a").is_some());
        assert!(l.get("c").is_some());
        assert_eq!(l.len(), 2);
        l.insert("c", a(3)); // update in place
        assert_eq!(l.len(), 2);
        assert!(!l.get("c").unwrap().cacheable);
    }

    #[test]
    fn bounded_under_many_inserts() {
        let c = AnalysisCache::new(64);
        for i in 0..10_000 {
            c.insert(&format!("k{i}"), a(i));
        }
        let s = c.stats();
        assert!(s.len <= s.capacity && s.capacity == 64, "{s:?}");
        assert!(c.get("k9999").is_some());
        c.clear();
        assert_eq!(c.stats().len, 0);
    }

    #[test]
    fn concurrent_use() {
        let c = Arc::new(AnalysisCache::new(100));
        let hs: Vec<_> = (0..4)
            .map(|t| {
                let c = Arc::clone(&c);
                std::thread::spawn(move || {
                    for i in 0..2000 {
                        let k = format!("k{}", (i * 7 + t) % 300);
                        if c.get(&k).is_none() {
                            c.insert(&k, a(i));
                        }
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        assert!(c.stats().len <= 104);
    }
}
