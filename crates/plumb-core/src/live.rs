//! Who is on each site right now, kept only in memory: signature → time of last event, for the
//! last few minutes. Serves the realtime count; nothing here is ever written down.

use std::collections::HashMap;
use std::sync::Mutex;

pub const REALTIME_WINDOW_MS: i64 = 5 * 60_000;

#[derive(Default)]
pub struct LiveVisitors {
    sites: Mutex<HashMap<u32, HashMap<u64, i64>>>,
}

impl LiveVisitors {
    pub fn record(&self, hits: impl IntoIterator<Item = (u32, u64, i64)>) {
        let mut sites = self.sites.lock().unwrap();
        for (site, sig, ts) in hits {
            let last = sites.entry(site).or_default().entry(sig).or_insert(ts);
            *last = (*last).max(ts);
        }
    }

    /// Visitors with an event in the last five minutes before `now_ms`; older entries are
    /// forgotten on the way.
    pub fn current(&self, site: u32, now_ms: i64) -> usize {
        let mut sites = self.sites.lock().unwrap();
        let Some(visitors) = sites.get_mut(&site) else { return 0 };
        visitors.retain(|_, ts| *ts > now_ms - REALTIME_WINDOW_MS);
        visitors.values().filter(|ts| **ts <= now_ms).count()
    }

    pub fn forget_older_than(&self, cutoff_ms: i64) {
        let mut sites = self.sites.lock().unwrap();
        sites.values_mut().for_each(|v| v.retain(|_, ts| *ts > cutoff_ms));
        sites.retain(|_, v| !v.is_empty());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_distinct_visitors_in_the_window() {
        let live = LiveVisitors::default();
        let now = 10_000_000;
        live.record([(1, 11, now - 1000), (1, 11, now - 500), (1, 12, now - 6 * 60_000), (2, 13, now)]);
        assert_eq!(live.current(1, now), 1);
        assert_eq!(live.current(2, now), 1);
        assert_eq!(live.current(3, now), 0);
        live.forget_older_than(now);
        assert_eq!(live.current(1, now), 0);
    }
}
