//! `plumb migrate`: moves an embedded install (metadata file, queue file, DuckDB store) onto
//! PostgreSQL, NATS JetStream and ClickHouse while its server goes on counting. Every step may
//! be run again, so a migration stopped anywhere goes on from where it stopped:
//!
//! 1. **Metadata:** every row copied, ids and salts kept (a visitor is signed alike by both).
//! 2. **Snapshot:** the event store's rows at one instant and the queue position P they were
//!    committed up to, taken by the running server between two commits (or here if none runs).
//! 3. **Rows:** the snapshot copied into ClickHouse, a chunk per insert, each exactly once.
//! 4. **Verification:** both stores' sums compared for every site, day, hour, event name and
//!    attribute value, over the days before today.
//! 5. **Queue:** the metadata copied again (sites added meanwhile), then the queue entries the
//!    server still holds (those of sessions open at P, and every later one) published to NATS in
//!    order; the position of the last one at or below P is recorded as where workers start:
//!    they replay those for session state only and count the rest, so a visit that spans the
//!    move is one visit. Then workers and collectors start and traffic moves to them; what the
//!    old server still takes is handed over as it comes, until it stops. Its queue file's
//!    entries are then erased.

use crate::config::Config;
use anyhow::{Context, Result, bail};
use plumb_core::QueuedEvent;
use plumb_meta::{MetaStore, PgMeta, SqliteMeta};
use plumb_pipeline::Handover;
use plumb_query::DayRange;
use plumb_queue::{Consumer, Entry, INDEX_BITS, NatsConfig, NatsQueue, SqliteConsumer};
use plumb_store::{ClickHouseReader, ClickHouseStore, DuckSnapshot, HANDOVER_WRITER};
use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How long the running server may take to answer the snapshot request.
const SNAPSHOT_WAIT: Duration = Duration::from_secs(600);
/// Queue entries read and handed over at a time.
const HANDOVER_CHUNK: usize = 2_000;
/// How often the old server's queue is looked at once everything in it is handed over.
const TAIL_POLL: Duration = Duration::from_millis(200);
/// How long a publish to NATS is tried again before migrate stops.
const PUBLISH_PATIENCE: Duration = Duration::from_secs(60);
/// How often the hold on the old queue is renewed while migrate hands it over.
const HOLD_RENEWAL: Duration = Duration::from_secs(60);
/// Differences described at most, per site.
const MAX_DIFFERENCES: usize = 10;

/// Where the queue hand-over has got to, kept in the migration folder so that a rerun goes on:
/// the last old-queue entry handed over, the NATS sequence of the last batch published, and the
/// last entry of a chunk being published (a rerun publishes that very chunk again, under the same
/// message ids, which NATS stores once within its two-minute duplicate window).
#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct Progress {
    entry: u64,
    batch: u64,
    pending: Option<u64>,
}

impl Progress {
    fn path(handover: &Handover) -> PathBuf {
        handover.dir().join("handed-over")
    }

    fn load(handover: &Handover) -> Result<Progress> {
        let path = Self::path(handover);
        let Ok(text) = std::fs::read_to_string(&path) else { return Ok(Progress::default()) };
        let mut fields = text.split_whitespace().map(str::parse::<u64>);
        match (fields.next(), fields.next(), fields.next()) {
            (Some(Ok(entry)), Some(Ok(batch)), None) => Ok(Progress { entry, batch, pending: None }),
            (Some(Ok(entry)), Some(Ok(batch)), Some(Ok(last))) => Ok(Progress { entry, batch, pending: Some(last) }),
            _ => bail!("{} is damaged (`{}`); it records where the hand-over got to", path.display(), text.trim()),
        }
    }

    /// Written to a new file, synced, then renamed over the old one: whole or not at all.
    fn save(&self, handover: &Handover) -> Result<()> {
        let path = Self::path(handover);
        let part = path.with_extension("part");
        let mut file = std::fs::File::create(&part).with_context(|| format!("cannot write {}", part.display()))?;
        match self.pending {
            None => writeln!(file, "{} {}", self.entry, self.batch)?,
            Some(last) => writeln!(file, "{} {} {last}", self.entry, self.batch)?,
        }
        file.sync_all()?;
        std::fs::rename(&part, &path).with_context(|| format!("cannot write {}", path.display()))?;
        Ok(())
    }
}

/// A progress line on a terminal (redrawn in place), or a line every few seconds in a log.
struct Bar {
    what: &'static str,
    started: Instant,
    shown: Option<Instant>,
    terminal: bool,
}

impl Bar {
    fn new(what: &'static str) -> Bar {
        Bar { what, started: Instant::now(), shown: None, terminal: std::io::stderr().is_terminal() }
    }

    /// `done` of `total`, or of an open-ended count.
    fn show(&mut self, done: u64, total: Option<u64>) {
        let every = if self.terminal { Duration::from_millis(100) } else { Duration::from_secs(5) };
        let finished = total.is_some_and(|t| done >= t);
        if !finished && self.shown.is_some_and(|t| t.elapsed() < every) {
            return;
        }
        self.shown = Some(Instant::now());
        let rate = done as f64 / self.started.elapsed().as_secs_f64().max(0.001);
        let line = match total {
            Some(total) => {
                let share = if total == 0 { 1.0 } else { done as f64 / total as f64 };
                let filled = (share * 30.0) as usize;
                format!(
                    "{}: [{}{}] {done}/{total} ({:.0}%), {rate:.0}/s",
                    self.what,
                    "#".repeat(filled),
                    " ".repeat(30 - filled),
                    share * 100.0
                )
            }
            None => format!("{}: {done}", self.what),
        };
        if self.terminal {
            eprint!("\r{line}");
            if finished {
                eprintln!();
            }
        } else {
            eprintln!("{line}");
        }
    }
}

pub fn run(config: &Config) -> Result<()> {
    let (Some(meta_url), Some(store_url), Some(queue_url)) = (&config.meta, &config.store, &config.queue) else {
        bail!(
            "plumb migrate moves the install in --data-dir onto PostgreSQL, ClickHouse and NATS: \
             give --meta postgres://…, --store clickhouse://… and --queue nats://…"
        );
    };
    for (path, what) in [(config.meta_path(), "metadata"), (config.store_path(), "event store")] {
        if !path.exists() {
            bail!("{} holds no {what} ({} is missing): nothing to migrate", config.data_dir.display(), path.display());
        }
    }
    let handover = Handover::for_migrate(&config.data_dir);
    if handover.is_finished() {
        println!("this install was migrated already ({} exists)", handover.dir().join("finished").display());
        return Ok(());
    }
    // One migration at a time: two would hand the same entries over twice.
    let Some(_lock) = handover.lock()? else {
        bail!("another plumb migrate is running on {}", config.data_dir.display());
    };
    if handover.hold_lapsed() {
        bail!(
            "the old server has been free to release queue entries since plumb migrate last ran more than {} hours \
             ago, so entries may be missing from the hand-over: start again (remove {} and empty the cluster's \
             ClickHouse database and NATS stream)",
            plumb_pipeline::handover::HOLD_LIMIT.as_secs() / 3600,
            handover.dir().display()
        );
    }
    let marker = ClickHouseStore::open_exact(store_url, HANDOVER_WRITER)?;
    let writers = marker.writers()?;
    let handed = writers.iter().any(|w| w == HANDOVER_WRITER);
    let position = if handed {
        // Handed over already: the cluster runs and has its own metadata and rows by now, so
        // only the old queue's tail is left to do.
        println!("queue handed over earlier: going on with the old server's new entries");
        DuckSnapshot::open(&handover.snapshot_path())?.position()?
    } else {
        let pg = PgMeta::connect(meta_url).context("cannot open the metadata on PostgreSQL")?;
        copy_metadata(config, &pg)?;
        let snapshot = handover.snapshot(&config.store_path(), SNAPSHOT_WAIT, || {
            println!("asked the running server for a snapshot of its event store…")
        })?;
        let position = snapshot.position()?;
        println!("snapshot: {} rows, committed up to queue entry {position}", snapshot.rows("events")?);
        let mut bar = Bar::new("rows");
        let rows = plumb_store::copy::copy_rows(&snapshot, store_url, plumb_store::copy::CHUNK_ROWS, |done, total| {
            bar.show(done, Some(total))
        })
        .context("cannot copy the rows into ClickHouse (run plumb migrate again to go on)")?;
        println!("rows: {rows} in ClickHouse, with their rollups");
        verify(config, &snapshot, store_url)?;
        // The salts of every date now current, made before the last copy, so that the old server
        // and the cluster sign a visitor alike whichever takes the hit.
        let meta = SqliteMeta::open(&config.meta_path())?;
        let now = chrono::Utc::now().timestamp_millis();
        for day in plumb_meta::live_days(now) {
            meta.salt_for_day(day, now)?;
        }
        copy_metadata(config, &pg)?;
        position
    };
    if !handed && let Some(worker) = writers.iter().find(|w| !w.starts_with("migrate:")) {
        bail!(
            "a worker ({worker}) has written to ClickHouse already: workers start after the queue is handed over, \
             or they count the entries handed over again; stop them and empty the database"
        );
    }
    hand_over_queue(config, &handover, position, (!handed).then_some(marker), queue_url)
}

fn copy_metadata(config: &Config, pg: &PgMeta) -> Result<()> {
    let report = pg.copy_from_sqlite(&config.meta_path()).context("cannot copy the metadata")?;
    let added: u64 = report.iter().map(|t| t.added).sum();
    let read: u64 = report.iter().map(|t| t.read).sum();
    println!("metadata: {read} rows in {} tables, {added} new to PostgreSQL", report.len());
    for skipped in report.iter().flat_map(|t| &t.skipped) {
        println!("  skipped {skipped}");
    }
    // Imported history stays behind: its runs are not copied, so no answer expects its rows.
    let imports = plumb_meta::SqliteMeta::open(&config.meta_path())?.imports(None)?;
    if !imports.is_empty() {
        println!(
            "  not moved: {} import(s) of history (plumb import list); run those imports again against the cluster",
            imports.len()
        );
    }
    Ok(())
}

/// The snapshot of the event store: one taken earlier (a rerun), else taken here if no server
/// holds the store, else asked of the server that does.
/// Compares the snapshot with ClickHouse for every site, over the days before the site's today
/// (today's rows keep coming on both sides).
fn verify(config: &Config, snapshot: &DuckSnapshot, store_url: &str) -> Result<()> {
    let Some(first) = snapshot.first_day()? else {
        println!("verified: no rows to compare");
        return Ok(());
    };
    let meta = SqliteMeta::open(&config.meta_path())?;
    let ours = snapshot.reader(Duration::from_secs(600))?;
    let theirs = ClickHouseReader::open(store_url, Duration::from_secs(600))?;
    let now = chrono::Utc::now().timestamp_millis();
    let mut problems = Vec::new();
    for site in meta.list_sites()? {
        let range = DayRange { from: first, to: plumb_core::time::local_day(site.timezone, now) - 1 };
        if range.to < range.from {
            continue;
        }
        problems.extend(plumb_store::copy::differences(&ours, &theirs, site.id, range, MAX_DIFFERENCES)?);
    }
    if !problems.is_empty() {
        bail!("ClickHouse does not answer as the snapshot does:\n  {}", problems.join("\n  "));
    }
    println!("verified: every site's sums by day, hour, event and attribute agree up to yesterday");
    Ok(())
}

fn hand_over_queue(
    config: &Config,
    handover: &Handover,
    position: u64,
    unhanded: Option<ClickHouseStore>,
    queue_url: &str,
) -> Result<()> {
    // A thread of its own keeps the NATS connection answering while this one waits.
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    let nats = runtime
        .block_on(NatsQueue::connect(&NatsConfig::new(queue_url.to_owned())))
        .context("cannot open the queue on NATS")?;
    handover.renew_hold()?;
    let mut spool = SqliteConsumer::open(&config.queue_path()).context("cannot open the queue file")?;
    let mut progress = Progress::load(handover)?;
    // Not handed over yet: the marker's writer, to record where workers start.
    if let Some(mut marker) = unhanded {
        let (batches, _) = runtime.block_on(nats.stream_state())?;
        if progress == Progress::default() && batches > 0 {
            bail!(
                "the NATS stream holds {batches} batches already: the queue is handed over into an empty stream, \
                 before collectors start"
            );
        }
        let mut bar = Bar::new("queue entries up to the snapshot");
        forward(&runtime, &nats, &mut spool, handover, &mut progress, position, &mut bar)?;
        let (_, last) = runtime.block_on(nats.stream_state())?;
        if last != progress.batch {
            bail!(
                "the NATS stream's last batch is {last}, not the hand-over's last ({}): something else published \
                 to it; collectors start after the hand-over",
                progress.batch
            );
        }
        let start = (progress.batch << INDEX_BITS) | ((1 << INDEX_BITS) - 1);
        marker
            .commit_tsv("events", &marker.rows("events", start))
            .context("cannot record the hand-over position in ClickHouse")?;
        println!(
            "queue handed over (workers start at position {start}): start the workers, then the collectors, and \
             move traffic to them; stop this server once it gets none. Until then what it still takes is handed \
             over as it comes."
        );
    }
    let mut bar = Bar::new("queue entries after the snapshot");
    let mut renewed = Instant::now();
    loop {
        if renewed.elapsed() >= HOLD_RENEWAL {
            handover.renew_hold()?;
            renewed = Instant::now();
        }
        let stopped = !plumb_store::duck::in_use(&config.store_path());
        if forward(&runtime, &nats, &mut spool, handover, &mut progress, u64::MAX, &mut bar)? == 0 {
            if stopped {
                break;
            }
            std::thread::sleep(TAIL_POLL);
        }
    }
    // Erased before the end is recorded: a rerun after a stop here erases what is left.
    let erased = erase(&mut spool, progress.entry)?;
    handover.finish()?;
    // A copy of rows the data directory's own store still holds: nothing needs it any more.
    let _ = std::fs::remove_file(handover.snapshot_path());
    println!(
        "the old server has stopped and every queue entry is handed over ({erased} erased from its queue file): \
         the migration is done; {} keeps the old data for as long as you want it",
        config.data_dir.display()
    );
    Ok(())
}

/// Hands over the old queue's entries after `progress.entry` up to `until`, a chunk at a time;
/// returns how many.
fn forward(
    runtime: &tokio::runtime::Runtime,
    nats: &NatsQueue,
    spool: &mut SqliteConsumer,
    handover: &Handover,
    progress: &mut Progress,
    until: u64,
    bar: &mut Bar,
) -> Result<u64> {
    let mut moved = 0;
    loop {
        // A chunk whose publishing was cut short is published again whole, as it was.
        let last_wanted = progress.pending.unwrap_or(until);
        let entries: Vec<Entry> =
            spool.read(progress.entry, HANDOVER_CHUNK)?.into_iter().take_while(|e| e.seq <= last_wanted).collect();
        let Some(last) = entries.last().map(|e| e.seq) else { return Ok(moved) };
        let first = entries[0].seq;
        if progress.pending.is_none() {
            progress.pending = Some(last);
            progress.save(handover)?;
        }
        // By partition, in queue order within each, as the collector would have placed them.
        let mut parts: BTreeMap<u16, Vec<Vec<u8>>> = BTreeMap::new();
        for entry in entries.iter() {
            match QueuedEvent::decode(&entry.payload) {
                Ok(ev) => parts.entry(nats.partition_of(ev.partition_key())).or_default().push(entry.payload.clone()),
                Err(e) => eprintln!("skipping undecodable queue entry {} (the pipeline skips it too): {e}", entry.seq),
            }
        }
        for (partition, payloads) in parts {
            let id = format!("migrate-{first}-{last}-{partition}");
            let batch = publish(runtime, nats, partition, &id, payloads)?;
            progress.batch = progress.batch.max(batch);
        }
        (progress.entry, progress.pending) = (last, None);
        progress.save(handover)?;
        moved += entries.len() as u64;
        bar.show(moved, None);
    }
}

/// Publishes one partition's share of a chunk, trying again for a minute (same ids: stored once)
/// while NATS is unreachable or full.
fn publish(
    runtime: &tokio::runtime::Runtime,
    nats: &NatsQueue,
    partition: u16,
    id: &str,
    payloads: Vec<Vec<u8>>,
) -> Result<u64> {
    let deadline = Instant::now() + PUBLISH_PATIENCE;
    loop {
        match runtime.block_on(nats.publish_moved(partition, id, payloads.clone())) {
            Ok(batch) => return Ok(batch),
            Err(e) if Instant::now() < deadline => {
                eprintln!("cannot publish to NATS yet, trying again: {e}");
                std::thread::sleep(Duration::from_secs(1));
            }
            Err(e) => {
                return Err(e).context(
                    "cannot hand the queue over to NATS (run plumb migrate again within two minutes to go on)",
                );
            }
        }
    }
}

/// Erases the old queue's entries up to `last`: they are in NATS now, and hold signatures.
fn erase(spool: &mut SqliteConsumer, last: u64) -> Result<u64> {
    let mut erased = 0;
    loop {
        let seqs: Vec<u64> =
            spool.read(0, HANDOVER_CHUNK)?.into_iter().map(|e| e.seq).take_while(|s| *s <= last).collect();
        if seqs.is_empty() {
            return Ok(erased);
        }
        spool.release(&seqs)?;
        erased += seqs.len() as u64;
    }
}
