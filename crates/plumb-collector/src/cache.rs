//! Metadata look-ups on the hot path, cached in memory. A domain that is not registered is
//! remembered as such briefly, so a flood of unknown domains does not reach the metadata store.

use plumb_core::signature::{Salt, random_salt};
use plumb_meta::{MetaError, MetaStore, Site, day_is_live};
use std::collections::HashMap;
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

const SITE_TTL: Duration = Duration::from_secs(2);
const MAX_CACHED_DOMAINS: usize = 10_000;

#[derive(Default)]
pub struct SiteCache {
    entries: RwLock<HashMap<String, (Option<Site>, Instant)>>,
}

impl SiteCache {
    pub fn get(&self, meta: &dyn MetaStore, domain: &str) -> Result<Option<Site>, MetaError> {
        if let Some((site, at)) = self.entries.read().unwrap().get(domain)
            && at.elapsed() < SITE_TTL
        {
            return Ok(site.clone());
        }
        let site = meta.site_by_domain(domain)?;
        let mut entries = self.entries.write().unwrap();
        if entries.len() >= MAX_CACHED_DOMAINS {
            entries.clear();
        }
        entries.insert(domain.to_owned(), (site.clone(), Instant::now()));
        Ok(site)
    }
}

/// Salts by day. Days current somewhere come from the metadata store (shared by every collector
/// and deleted when the day ends everywhere). Back-dated events from authenticated senders get a
/// salt that exists only in this process's memory, forgotten after an hour unused: a back-fill
/// counts its visitors consistently while it runs, and nothing of it outlives it.
#[derive(Default)]
pub struct SaltCache {
    live: Mutex<HashMap<i32, Salt>>,
    backdated: Mutex<HashMap<i32, (Salt, Instant)>>,
}

const BACKDATED_IDLE: Duration = Duration::from_secs(3600);

impl SaltCache {
    pub fn get(&self, meta: &dyn MetaStore, day: i32, now_ms: i64) -> Result<Salt, MetaError> {
        if let Some(s) = self.live.lock().unwrap().get(&day) {
            return Ok(*s);
        }
        if let Some(salt) = meta.salt_for_day(day, now_ms)? {
            self.live.lock().unwrap().insert(day, salt);
            return Ok(salt);
        }
        let mut backdated = self.backdated.lock().unwrap();
        let entry = backdated.entry(day).or_insert_with(|| (random_salt(), Instant::now()));
        entry.1 = Instant::now();
        Ok(entry.0)
    }

    pub fn retain_live(&self, now_ms: i64) {
        self.live.lock().unwrap().retain(|day, _| day_is_live(*day, now_ms));
        self.backdated.lock().unwrap().retain(|_, (_, used)| used.elapsed() < BACKDATED_IDLE);
    }
}
