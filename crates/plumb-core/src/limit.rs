//! Token buckets per key (client address, site, API key…): cheap enough to run before a request
//! body is read.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::Instant;

/// Token buckets per key: `capacity` requests, refilled evenly over `period_secs`.
pub struct RateLimiter<K> {
    pub capacity: u32,
    per_sec: f64,
    buckets: Mutex<Buckets<K>>,
}

/// Tokens left and when they were counted, per key; and when full buckets were last dropped.
type Buckets<K> = (HashMap<K, (f64, Instant)>, Instant);

impl<K: Hash + Eq + Clone> RateLimiter<K> {
    pub fn new(capacity: u32, period_secs: u64) -> Self {
        let capacity = capacity.max(1);
        Self {
            capacity,
            per_sec: capacity as f64 / period_secs.max(1) as f64,
            buckets: Mutex::new((HashMap::new(), Instant::now())),
        }
    }

    pub fn per_minute(n: u32) -> Self {
        Self::new(n, 60)
    }

    /// Takes one token, or says in how many seconds one will be there.
    pub fn take(&self, key: &K) -> Result<(), u64> {
        self.take_n(key, 1)
    }

    /// Takes `n` tokens at once (a batch of events), or none. Taking none always succeeds.
    pub fn take_n(&self, key: &K, n: u32) -> Result<(), u64> {
        if n == 0 {
            return Ok(());
        }
        self.with_bucket(key, n as f64)
    }

    /// Returns `n` tokens taken for something that turned out not to count against the limit
    /// (a right password), or taken alongside another limiter's that refused.
    pub fn give_back(&self, key: &K, n: u32) {
        let mut guard = self.buckets.lock().unwrap();
        if let Some((tokens, _)) = guard.0.get_mut(key) {
            *tokens = (*tokens + n as f64).min(self.capacity as f64);
        }
    }

    /// Whether a token is there, without taking it.
    pub fn check(&self, key: &K) -> Result<(), u64> {
        self.with_bucket(key, 0.0)
    }

    /// Drops every full bucket: they carry no information, and their keys (a visitor's
    /// signature, say) need not be kept.
    pub fn forget_full(&self) {
        let mut guard = self.buckets.lock().unwrap();
        let (buckets, pruned_at) = &mut *guard;
        self.prune(buckets);
        *pruned_at = Instant::now();
    }

    fn prune(&self, buckets: &mut HashMap<K, (f64, Instant)>) {
        let (capacity, per_sec) = (self.capacity as f64, self.per_sec);
        buckets.retain(|_, (t, at)| *t + at.elapsed().as_secs_f64() * per_sec < capacity);
    }

    fn with_bucket(&self, key: &K, take: f64) -> Result<(), u64> {
        let capacity = self.capacity as f64;
        let mut guard = self.buckets.lock().unwrap();
        let (buckets, pruned_at) = &mut *guard;
        // Full buckets carry no information: drop them now and then so the map stays small. At
        // most once a second, so a flood from many addresses does not make every call walk it.
        if buckets.len() > 10_000 && pruned_at.elapsed().as_secs() >= 1 {
            self.prune(buckets);
            *pruned_at = Instant::now();
        }
        let (tokens, at) = buckets.entry(key.clone()).or_insert((capacity, Instant::now()));
        *tokens = (*tokens + at.elapsed().as_secs_f64() * self.per_sec).min(capacity);
        *at = Instant::now();
        let need = take.max(1.0);
        if *tokens >= need {
            *tokens -= take;
            Ok(())
        } else {
            Err(((need - *tokens) / self.per_sec).ceil().max(1.0) as u64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_refill_and_are_per_key() {
        let l = RateLimiter::per_minute(3);
        assert!(l.take(&1).is_ok() && l.take(&1).is_ok() && l.check(&1).is_ok() && l.take(&1).is_ok());
        // Three a minute: the next token comes in 20 s.
        assert_eq!(l.take(&1), Err(20));
        assert_eq!(l.check(&1), Err(20));
        assert!(l.take(&2).is_ok());
    }

    #[test]
    fn full_buckets_are_forgotten_and_others_kept() {
        let l = RateLimiter::new(2, 1);
        l.take(&"busy").unwrap();
        l.take(&"busy").unwrap();
        l.check(&"idle").unwrap(); // a bucket created full
        l.forget_full();
        let keys: Vec<_> = l.buckets.lock().unwrap().0.keys().copied().collect();
        assert_eq!(keys, ["busy"]);
        std::thread::sleep(std::time::Duration::from_millis(1100));
        l.forget_full();
        assert!(l.buckets.lock().unwrap().0.is_empty(), "refilled after a second, then forgotten");
    }

    #[test]
    fn tokens_given_back_count_again_up_to_the_capacity() {
        let l = RateLimiter::new(2, 3600);
        l.take(&"a").unwrap();
        l.take(&"a").unwrap();
        assert!(l.take(&"a").is_err());
        l.give_back(&"a", 1);
        assert!(l.take(&"a").is_ok());
        l.give_back(&"a", 10);
        assert!(l.take_n(&"a", 2).is_ok() && l.take(&"a").is_err(), "never above the capacity");
    }

    #[test]
    fn batches_take_several_tokens_or_none() {
        let l = RateLimiter::new(10, 10);
        assert!(l.take_n(&"a", 8).is_ok());
        assert_eq!(l.take_n(&"a", 5), Err(3), "two left, five wanted: three seconds at one a second");
        assert!(l.take_n(&"a", 2).is_ok());
    }
}
