//! A bounded TTL cache for the gateway's hot-path lookups (API key → agent, agent → chain and
//! policies). Entries expire after the TTL and are dropped at once by invalidation events; when
//! full, the oldest entries go first. Holds no I/O.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct TtlCache<K, V> {
    ttl: Duration,
    entries_max: usize,
    inner: Mutex<HashMap<K, (Instant, V)>>,
}

impl<K: Eq + Hash + Clone, V: Clone> TtlCache<K, V> {
    pub fn new(ttl: Duration, entries_max: usize) -> TtlCache<K, V> {
        TtlCache {
            ttl,
            entries_max: entries_max.max(1),
            inner: Mutex::new(HashMap::new()),
        }
    }

    /// The entries. A panic under the lock leaves a consistent map (every change is one map
    /// operation), so a poisoned lock is recovered, never a reason to skip an invalidation.
    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<K, (Instant, V)>> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The cached value, if present and younger than the TTL.
    pub fn get(&self, key: &K) -> Option<V> {
        let guard = self.entries();
        let (inserted, value) = guard.get(key)?;
        (inserted.elapsed() < self.ttl).then(|| value.clone())
    }

    pub fn insert(&self, key: K, value: V) {
        let mut guard = self.entries();
        if guard.len() >= self.entries_max && !guard.contains_key(&key) {
            let ttl = self.ttl;
            guard.retain(|_, (inserted, _)| inserted.elapsed() < ttl);
            if guard.len() >= self.entries_max {
                // Evict the oldest tenth: amortised O(1) per insert under churn.
                let mut ages: Vec<(Instant, K)> =
                    guard.iter().map(|(k, (t, _))| (*t, k.clone())).collect();
                ages.sort_by_key(|(t, _)| *t);
                for (_, k) in ages.into_iter().take((self.entries_max / 10).max(1)) {
                    guard.remove(&k);
                }
            }
        }
        guard.insert(key, (Instant::now(), value));
    }

    /// Drops every entry for which `stale` is true.
    pub fn invalidate_where(&self, mut stale: impl FnMut(&K, &V) -> bool) {
        self.entries().retain(|k, (_, v)| !stale(k, v));
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.entries().len()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn entries_expire_and_the_cache_stays_bounded() {
        let cache = TtlCache::new(Duration::from_secs(60), 100);
        for i in 0..1000 {
            cache.insert(i, i * 2);
        }
        assert!(cache.len() <= 100);
        assert_eq!(cache.get(&999), Some(1998));
        cache.invalidate_where(|k, _| *k == 999);
        assert_eq!(cache.get(&999), None);
        let expired = TtlCache::new(Duration::ZERO, 10);
        expired.insert(1, 1);
        assert_eq!(expired.get(&1), None);
    }
}
