//! Security counters: hits turned away, per site, hour and [`Reason`]. Counted in memory on the
//! hot path and written to metadata every few seconds; no address or User-Agent is kept, only
//! the counts.

use plumb_core::security::Reason;
use plumb_meta::SecurityCount;
use std::collections::HashMap;
use std::sync::Mutex;

const HOUR_MS: i64 = 3_600_000;

pub struct Tally {
    /// Counted on the hot path: adding allocates nothing.
    counts: Mutex<HashMap<(u32, i64, Reason), u64>>,
    /// Counts a flush could not write, merged into the next one.
    unsent: Mutex<Vec<SecurityCount>>,
    /// The same hits for Prometheus (`plumb_events_refused_total`), by reason in `Reason::ALL`'s
    /// order: handles made once, as looking a metric up by name on every hit would cost.
    refused: [metrics::Counter; Reason::ALL.len()],
}

impl Default for Tally {
    fn default() -> Tally {
        Tally {
            counts: Mutex::default(),
            unsent: Mutex::default(),
            refused: Reason::ALL.map(|r| metrics::counter!("plumb_events_refused_total", "reason" => r.name())),
        }
    }
}

impl Tally {
    pub fn add(&self, site_id: u32, reason: Reason, now_ms: i64) {
        let hour = now_ms.div_euclid(HOUR_MS);
        *self.counts.lock().unwrap().entry((site_id, hour, reason)).or_default() += 1;
        if let Some(i) = Reason::ALL.iter().position(|r| *r == reason) {
            self.refused[i].increment(1);
        }
    }

    /// Everything counted since the last call, with what could not be written before.
    pub fn take(&self) -> Vec<SecurityCount> {
        let fresh = std::mem::take(&mut *self.counts.lock().unwrap());
        let mut merged: HashMap<(u32, i64, String), u64> = HashMap::new();
        for c in std::mem::take(&mut *self.unsent.lock().unwrap()) {
            *merged.entry((c.site_id, c.hour, c.reason)).or_default() += c.count;
        }
        for ((site_id, hour, reason), n) in fresh {
            *merged.entry((site_id, hour, reason.name().to_owned())).or_default() += n;
        }
        merged
            .into_iter()
            .map(|((site_id, hour, reason), count)| SecurityCount { site_id, hour, reason, count })
            .collect()
    }

    /// Keeps counts that could not be written for the next flush, so none is lost.
    pub fn restore(&self, counts: Vec<SecurityCount>) {
        self.unsent.lock().unwrap().extend(counts);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_group_by_site_hour_and_reason() {
        let t = Tally::default();
        let h = 500 * HOUR_MS;
        t.add(1, Reason::Crawler, h + 1);
        t.add(1, Reason::Crawler, h + 2);
        t.add(1, Reason::Crawler, h + HOUR_MS);
        t.add(2, Reason::Headless, h);
        let mut got = t.take();
        got.sort_by_key(|c| (c.site_id, c.hour));
        let got: Vec<_> = got.iter().map(|c| (c.site_id, c.hour, c.reason.as_str(), c.count)).collect();
        assert_eq!(got, [(1, 500, "crawler", 2), (1, 501, "crawler", 1), (2, 500, "headless", 1)]);
        assert!(t.take().is_empty());
        t.add(1, Reason::Crawler, h);
        let first = t.take();
        t.restore(first.clone());
        t.add(1, Reason::Crawler, h);
        assert_eq!(t.take()[0].count, 2, "restored counts add up with new ones");
    }
}
