//! The pipeline worker: one thread that reads the queue in order, sessionizes, and commits each
//! batch's rows together with the batch's last sequence number. After a restart it replays every
//! entry still in the queue: entries at or below the committed position only rebuild session
//! state, later ones produce rows. Store failures are retried with backoff, batch by batch, so
//! nothing is lost or reordered.

use crate::sessionizer::Sessionizer;
use chrono_tz::Tz;
use plumb_core::event::EventKind;
use plumb_core::live::{LIVE_MEMORY_MS, LiveHit, LiveVisitors};
use plumb_core::time::{first_kept_day, local_day};
use plumb_core::{QueuedEvent, Row};
use plumb_meta::MetaStore;
use plumb_queue::Consumer;
use plumb_store::EventWriter;
use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct PipelineConfig {
    /// How long processed entries stay in the queue after their session's latest hit, for
    /// replay. At least the session timeout (the default) lets a restart rebuild every open
    /// session whole.
    pub retention: Duration,
    /// Entries per store commit at most.
    pub batch: usize,
    /// Where `plumb migrate` and `plumb backup` may ask for a snapshot of the store (embedded
    /// installs).
    pub handovers: Vec<crate::Handover>,
    /// Where `plumb import` hands over imported rows (embedded installs).
    pub imports: Option<crate::ImportInbox>,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            retention: Duration::from_millis(crate::sessionizer::SESSION_TIMEOUT_MS as u64),
            batch: 10_000,
            handovers: Vec::new(),
            imports: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Store(#[from] plumb_store::StoreError),
    #[error(transparent)]
    Queue(#[from] plumb_queue::QueueError),
    #[error("cannot start the pipeline thread: {0}")]
    Thread(#[from] std::io::Error),
}

pub struct PipelineHandle {
    pub live: Arc<LiveVisitors>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl PipelineHandle {
    /// Finishes the batch in hand, then stops.
    pub fn shutdown(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

pub struct Pipeline<C, W> {
    consumer: C,
    writer: W,
    meta: Arc<dyn MetaStore>,
    config: PipelineConfig,
    live: Option<Arc<LiveVisitors>>,
}

/// How often the pipeline reads the funnels to count (well within `FUNNEL_START_DELAY_MS`, so
/// that a hit seldom waits for a read).
const FUNNELS_EVERY: Duration = Duration::from_secs(2);

/// How long an idle pipeline sleeps between looks at the queue (it is woken by new entries).
const IDLE_WAIT: Duration = Duration::from_millis(250);

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl<C: Consumer, W: EventWriter> Pipeline<C, W> {
    pub fn new(consumer: C, writer: W, meta: Arc<dyn MetaStore>, config: PipelineConfig) -> Self {
        Self { consumer, writer, meta, config, live: None }
    }

    /// Records current visitors in `live` (say, one that also tells other processes) rather
    /// than in a set of its own.
    pub fn with_live(self, live: Arc<LiveVisitors>) -> Self {
        Self { live: Some(live), ..self }
    }

    /// Reads the committed position, makes sure the queue numbers new entries above it (even if
    /// the queue file was lost), then starts the worker thread.
    pub fn spawn(mut self) -> Result<PipelineHandle, PipelineError> {
        let committed = self.writer.position()?;
        self.consumer.resume_after(committed)?;
        let live = self.live.take().unwrap_or_default();
        let stop = Arc::new(AtomicBool::new(false));
        let (l, st) = (live.clone(), stop.clone());
        let thread = std::thread::Builder::new().name("pipeline".into()).spawn(move || self.run(committed, &l, &st))?;
        Ok(PipelineHandle { live, stop, thread: Some(thread) })
    }

    fn run(mut self, mut committed_pos: u64, live: &LiveVisitors, stop: &AtomicBool) {
        let mut sessions = Sessionizer::default();
        let mut zones: HashMap<u32, Option<Tz>> = HashMap::new();
        let mut read_pos = 0u64;
        let mut rows = Vec::new();
        let mut replayed = Vec::new();
        // Processed entries no session needs any more, deleted from the queue once committed.
        let mut to_release: Vec<u64> = Vec::new();
        let mut last_housekeeping = Instant::now();
        // When the first row not yet committed was produced.
        let mut pending_since: Option<Instant> = None;
        let retention_ms = self.config.retention.as_millis() as i64;
        let commit_every = self.writer.commit_interval();
        // Removed sites: their stored rows are deleted here, where the store is written, and
        // their events still in the queue produce no rows.
        let mut deleted: HashSet<u32> = HashSet::new();
        // Sites that keep their rows for a limited time: older rows are deleted from the store,
        // and produce none.
        let mut retention = Retention::default();
        // A snapshot was asked for: it is taken once everything read is committed.
        let mut snapshot_asked = false;
        self.purge_removed_sites(&mut deleted, stop);
        self.enforce_retention(&mut retention, &mut zones);
        let mut funnels_read = Instant::now();
        if !self.load_funnels(&mut sessions, stop) {
            return;
        }
        tracing::info!(committed = committed_pos, "pipeline started; replaying the queue window");
        // For operators (Prometheus): how far behind the queue's newest entry the pipeline reads,
        // the rows waiting for their commit, and how long commits take.
        let lag = metrics::gauge!("plumb_queue_lag_seconds");
        let waiting = metrics::gauge!("plumb_pipeline_uncommitted_rows");
        let depth = metrics::gauge!("plumb_queue_depth");
        let commit_time = metrics::histogram!("plumb_store_commit_seconds");

        while !stop.load(Ordering::SeqCst) {
            let entries = match self.consumer.read(read_pos, self.config.batch) {
                Ok(e) => e,
                Err(e) => {
                    tracing::warn!("pipeline cannot read the queue: {e}");
                    std::thread::sleep(Duration::from_millis(500));
                    continue;
                }
            };
            lag.set(entries.last().map_or(0.0, |e| (now_ms() - e.received_ms).max(0) as f64 / 1000.0));
            if let Some(last) = entries.last() {
                let now = now_ms();
                let mut hits = Vec::with_capacity(entries.len());
                for entry in &entries {
                    // Funnels made since the metadata was last read count hits received from a
                    // little after they were made: read it again before such a hit.
                    while !sessions.funnels_known_for(entry.received_ms) {
                        funnels_read = Instant::now();
                        if !self.load_funnels(&mut sessions, stop) {
                            return;
                        }
                        // Stamped by a clock ahead of this one: wait until this one catches up.
                        if stop.load(Ordering::SeqCst) {
                            return; // nothing of this batch is committed; the queue replays it
                        }
                        if !sessions.funnels_known_for(entry.received_ms) {
                            tracing::warn!(
                                seq = entry.seq,
                                "queue entry received in the future by this worker's clock; waiting for it"
                            );
                            std::thread::sleep(Duration::from_millis(500));
                        }
                    }
                    let ev = match QueuedEvent::decode(&entry.payload) {
                        Ok(ev) => ev,
                        Err(e) => {
                            // A bad entry is skipped alone; the rest of the batch goes on.
                            tracing::error!(seq = entry.seq, "skipping undecodable queue entry: {e}");
                            to_release.push(entry.seq);
                            continue;
                        }
                    };
                    if ev.ts_ms > now - LIVE_MEMORY_MS {
                        hits.push(LiveHit {
                            site_id: ev.site_id,
                            signature: ev.signature,
                            ts_ms: ev.ts_ms,
                            page: ev.pathname.clone(),
                            source: ev.visit.source.clone(),
                            engagement: ev.kind == EventKind::Engagement,
                            pageview: ev.kind == EventKind::Pageview,
                            event: (ev.kind == EventKind::Custom).then(|| ev.name.clone()),
                        });
                    }
                    let out = if entry.seq > committed_pos { &mut rows } else { &mut replayed };
                    sessions.apply(&ev, entry.seq, entry.received_ms, out);
                    replayed.clear();
                }
                live.record(hits);
                read_pos = last.seq;
                if read_pos > committed_pos {
                    pending_since.get_or_insert_with(Instant::now);
                }
            }
            // Commit in batches: a store transaction has a fixed cost (planning, WAL sync), so
            // under load rows gather for up to the store's commit interval; that is all the delay
            // it adds.
            let due = pending_since.is_some_and(|t| t.elapsed() >= commit_every)
                || rows.len() >= self.config.batch
                || (snapshot_asked && pending_since.is_some());
            if due {
                keep_stored(&mut rows, &deleted, &retention.kept_from);
                let (writer, batch) = (&mut self.writer, &rows);
                let started = Instant::now();
                if retry(stop, "commit to the event store", || writer.commit(batch, read_pos)).is_none() {
                    return; // stopping; the uncommitted rows are replayed on the next start
                }
                commit_time.record(started.elapsed().as_secs_f64());
                rows.clear();
                pending_since = None;
                committed_pos = read_pos;
            }
            waiting.set(rows.len() as f64);
            if snapshot_asked && pending_since.is_none() {
                snapshot_asked = false;
                for handover in self.config.handovers.iter().filter(|h| h.snapshot_requested()) {
                    match handover.take_snapshot(&mut self.writer) {
                        Ok(position) => {
                            tracing::info!(position, dir = %handover.dir().display(), "took a snapshot of the event store")
                        }
                        Err(e) => tracing::warn!(
                            "cannot take the snapshot asked for in {} (trying again): {e}",
                            handover.dir().display()
                        ),
                    }
                }
            }
            if last_housekeeping.elapsed() >= Duration::from_millis(500) {
                last_housekeeping = Instant::now();
                if let Some(n) = self.consumer.waiting(read_pos) {
                    depth.set(n as f64);
                }
                self.purge_removed_sites(&mut deleted, stop);
                self.enforce_retention(&mut retention, &mut zones);
                if funnels_read.elapsed() >= FUNNELS_EVERY {
                    funnels_read = Instant::now();
                    let at = now_ms();
                    match self.meta.funnels(None) {
                        Ok(f) => sessions.set_funnels(f, at),
                        Err(e) => tracing::warn!("pipeline cannot read the funnels (trying again): {e}"),
                    }
                }
                if let Some(inbox) = &self.config.imports {
                    inbox.serve(&mut self.writer);
                }
                snapshot_asked = self.config.handovers.iter().any(|h| h.snapshot_requested());
                let now = now_ms();
                // Each session's entries stay until it has had no hit for the retention window, so
                // a restart replays recent sessions whole, and leave together then, whatever other
                // visitors still do. Nothing uncommitted is ever released.
                to_release.extend(sessions.take_releasable(now, retention_ms));
                // While migrate hands the queue over, or a backup copies it, nothing leaves it.
                let holding = self.config.handovers.iter().any(|h| h.holds_releases());
                let (ready, later): (Vec<u64>, Vec<u64>) =
                    to_release.drain(..).partition(|s| *s <= committed_pos && !holding);
                to_release = later;
                if let Err(e) = self.consumer.release(&ready) {
                    tracing::warn!("pipeline cannot release queue entries (trying again): {e}");
                    to_release.extend(ready);
                }
                let meta = &self.meta;
                let evicted = sessions.evict(now, retention_ms, |site, day| {
                    // Unknown for now: keep the state and ask again next time.
                    let Some(tz) = zone(meta.as_ref(), &mut zones, site) else { return false };
                    // A removed site's visitor-days are over.
                    tz.is_none_or(|tz| local_day(tz, now) > day)
                });
                if evicted > 0 {
                    tracing::debug!(evicted, "visitor-days ended");
                }
                live.forget_older_than(now - LIVE_MEMORY_MS);
            }
            if entries.len() < self.config.batch {
                let timeout = pending_since.map_or(IDLE_WAIT, |t| commit_every.saturating_sub(t.elapsed()));
                self.consumer.wait(read_pos, timeout);
            }
        }
        keep_stored(&mut rows, &deleted, &retention.kept_from);
        if pending_since.is_some()
            && let Err(e) = self.writer.commit(&rows, read_pos)
        {
            tracing::warn!("last commit before stopping failed; the queue replays it on start: {e}");
        }
    }
}

impl<C: Consumer, W: EventWriter> Pipeline<C, W> {
    /// Reads the funnels to count, retrying until it can (hits wait rather than be counted
    /// without a funnel they belong to); false when stopping.
    fn load_funnels(&self, sessions: &mut Sessionizer, stop: &AtomicBool) -> bool {
        let meta = &self.meta;
        let read = retry(stop, "read the funnels", || {
            let at = now_ms();
            meta.funnels(None).map(|f| (f, at))
        });
        read.map(|(f, at)| sessions.set_funnels(f, at)).is_some()
    }

    /// Brings `r` up to the sites' retentions and deletes the stored rows of the days a site
    /// keeps no more, once per site and first kept day (a new month, a new setting). A deletion
    /// that fails is tried again a minute later rather than at once; each of its statements is
    /// bounded by the store's timeout.
    fn enforce_retention(&mut self, r: &mut Retention, zones: &mut HashMap<u32, Option<Tz>>) {
        let limits = match self.meta.retentions() {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!("pipeline cannot list the sites' retentions: {e}");
                return;
            }
        };
        let now = now_ms();
        r.kept_from = limits
            .into_iter()
            .filter_map(|(site, months)| match zone(self.meta.as_ref(), zones, site) {
                Some(Some(tz)) => Some((site, first_kept_day(local_day(tz, now), months.into()))),
                _ => None,
            })
            .collect();
        let kept_from = &r.kept_from;
        r.deleted_before.retain(|site, _| kept_from.contains_key(site));
        r.next_try.retain(|site, _| kept_from.contains_key(site));
        for (&site, &first) in &r.kept_from {
            let waiting = r.next_try.get(&site).is_some_and(|t| Instant::now() < *t);
            if waiting || r.deleted_before.get(&site) == Some(&first) {
                continue;
            }
            match self.writer.delete_before(site, first) {
                Ok(n) => {
                    if n > 0 {
                        tracing::info!(
                            site,
                            events = n,
                            first_kept_day = first,
                            "deleted rows past the site's retention"
                        );
                    }
                    r.deleted_before.insert(site, first);
                }
                Err(e) => {
                    tracing::warn!(
                        "cannot delete site {site}'s rows past its retention (trying again in a minute): {e}"
                    );
                    r.next_try.insert(site, Instant::now() + RETENTION_RETRY);
                }
            }
        }
    }

    /// Deletes the stored rows of sites removed since the last look (however they were removed:
    /// dashboard, API or CLI) and adds them to `deleted`.
    fn purge_removed_sites(&mut self, deleted: &mut HashSet<u32>, stop: &AtomicBool) {
        let removed = match self.meta.deleted_sites() {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!("pipeline cannot list removed sites: {e}");
                return;
            }
        };
        for (site, purged) in removed {
            deleted.insert(site);
            if purged {
                continue;
            }
            // Deleting twice is harmless: until it is recorded as done, it is done again.
            let writer = &mut self.writer;
            let Some(n) = retry(stop, "delete a removed site's rows", || writer.delete_site(site)) else { return };
            tracing::info!(site, events = n, "deleted the stored rows of a removed site");
            if let Err(e) = self.meta.mark_purged(site) {
                tracing::warn!("cannot record that site {site}'s rows are deleted (trying again): {e}");
            }
        }
    }
}

/// How long a failed deletion of rows past a retention waits before it is tried again.
const RETENTION_RETRY: Duration = Duration::from_secs(60);

/// The sites that keep their rows for a limited time.
#[derive(Default)]
struct Retention {
    /// The first day each keeps: rows of earlier days are not committed.
    kept_from: HashMap<u32, i32>,
    /// The day before which each one's stored rows are deleted.
    deleted_before: HashMap<u32, i32>,
    /// After a failed deletion, the site's next is not tried before then.
    next_try: HashMap<u32, Instant>,
}

/// A site's timezone, `Some(None)` for a removed site, `None` while the metadata cannot say.
fn zone(meta: &dyn MetaStore, zones: &mut HashMap<u32, Option<Tz>>, site: u32) -> Option<Option<Tz>> {
    match zones.entry(site) {
        Entry::Occupied(e) => Some(*e.get()),
        Entry::Vacant(e) => meta.site_by_id(site).ok().map(|found| *e.insert(found.map(|s| s.timezone))),
    }
}

/// Drops the rows a store may not take (of removed sites, of days before a site's retention) and
/// puts the rest in no visitor's order: made in the order of each visitor's hits, rows stored as
/// they are would follow one visitor through a batch; every sum is the same in any order. The
/// order comes from what a row says (site, day, hour, kind, and a hash of its name and page, so
/// that the strings are read once per row rather than at every comparison).
fn keep_stored(rows: &mut Vec<Row>, deleted: &HashSet<u32>, kept_from: &HashMap<u32, i32>) {
    rows.retain(|r| !deleted.contains(&r.site_id) && kept_from.get(&r.site_id).is_none_or(|first| r.day >= *first));
    let content = foldhash::fast::FixedState::default();
    rows.sort_by_cached_key(|r| (r.site_id, r.day, r.hour, r.kind as u8, content.hash_one((&r.name, &r.pathname))));
}

/// Runs `op` until it succeeds, backing off from 50 ms to 5 s; `None` if asked to stop first.
fn retry<T, E: std::fmt::Display>(stop: &AtomicBool, what: &str, mut op: impl FnMut() -> Result<T, E>) -> Option<T> {
    let mut delay = Duration::from_millis(50);
    loop {
        match op() {
            Ok(v) => return Some(v),
            Err(e) => {
                tracing::warn!("pipeline could not {what}, retrying in {delay:?}: {e}");
                if stop.load(Ordering::SeqCst) {
                    return None;
                }
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use plumb_core::Counters;
    use plumb_core::row::RowKind;

    fn row(site_id: u32, hour: u8, pathname: &str, visitor: i8) -> Row {
        Row {
            site_id,
            day: 20_000,
            hour,
            kind: RowKind::Pageview,
            name: String::new(),
            hostname: "example.com".into(),
            pathname: pathname.into(),
            entry_page: "/".into(),
            visit: Default::default(),
            props: Vec::new(),
            revenue: None,
            // Tells the visitors apart in the test only.
            counters: Counters { visitors: visitor, pageviews: 1, ..Default::default() },
        }
    }

    fn order(rows: &[Row]) -> Vec<(u32, u8, String)> {
        rows.iter().map(|r| (r.site_id, r.hour, r.pathname.clone())).collect()
    }

    #[test]
    fn stored_rows_follow_their_content_not_the_visitors_hits() {
        // Two visitors, each through three pages, their hits interleaved as they arrived.
        let pages = ["/a", "/b", "/c"];
        let arrived: Vec<Row> = pages.iter().flat_map(|p| [row(1, 9, p, 1), row(1, 9, p, 2)]).collect();
        let mut rows = arrived.clone();
        rows.extend([row(2, 8, "/a", 1), row(1, 8, "/z", 2)]);
        let mut other_arrival: Vec<Row> = rows.iter().rev().cloned().collect();
        keep_stored(&mut rows, &HashSet::new(), &HashMap::new());
        keep_stored(&mut other_arrival, &HashSet::new(), &HashMap::new());
        // Any order of arrival gives the same order of content.
        assert_eq!(order(&rows), order(&other_arrival));
        // Site, then hour, first; rows of one page side by side, whichever visitor they came from.
        assert_eq!((rows[0].site_id, rows[0].hour), (1, 8));
        assert_eq!(rows.last().unwrap().site_id, 2);
        for p in pages {
            let at: Vec<usize> = rows.iter().enumerate().filter(|(_, r)| r.pathname == p).map(|(i, _)| i).collect();
            assert_eq!(at[1], at[0] + 1, "{p}: {:?}", order(&rows));
        }
        // Removed sites and days before a site's retention are dropped.
        keep_stored(&mut rows, &HashSet::from([2]), &HashMap::from([(1, 20_001)]));
        assert!(rows.is_empty());
    }
}
