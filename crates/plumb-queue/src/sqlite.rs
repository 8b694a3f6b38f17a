//! Embedded spool: one SQLite file in WAL mode. A single writer thread takes every append that
//! is waiting and commits them in one transaction with `synchronous=FULL` (group commit), so
//! durability costs one fsync per batch rather than per event. The consumer may live in the same
//! process (woken by the writer) or in another one on the same machine (`plumb collect` beside
//! `plumb work`), which looks for new entries every few milliseconds; SQLite's locking keeps the
//! two processes apart.

use crate::{AppendFuture, Consumer, Entry, Message, Producer, QueueError};
use rusqlite::{Connection, params};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::oneshot;

/// Appends waiting for the writer; beyond this the collector sheds load with `503`.
const PENDING_LIMIT: usize = 16_384;
/// Rows per transaction at most.
const MAX_GROUP: usize = 4_096;
/// How often, under load, the WAL is truncated so deleted entries leave the disk. A truncating
/// checkpoint briefly holds up the writer, so under load it runs this seldom; when the queue is
/// idle it runs right after a deletion.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(5);
/// How often a consumer in another process than the writer looks for new entries while waiting.
const POLL_EVERY: Duration = Duration::from_millis(20);

type Job = (Vec<Vec<u8>>, oneshot::Sender<Result<(), QueueError>>);

fn storage(e: rusqlite::Error) -> QueueError {
    QueueError::Storage(e.to_string())
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// The queue file's schema versions, in order (see `plumb_sqlite`).
const MIGRATIONS: [&str; 1] = [include_str!("../migrations/001_initial.sql")];

fn open(path: &Path) -> Result<Connection, QueueError> {
    plumb_sqlite::open(path, &MIGRATIONS).map_err(|e| QueueError::Storage(e.to_string()))
}

/// Highest committed sequence number, shared with waiting consumers.
#[derive(Default)]
struct Tail {
    last: Mutex<u64>,
    grew: Condvar,
}

pub struct SqliteSpool {
    path: PathBuf,
    tx: SyncSender<Job>,
    tail: Arc<Tail>,
}

impl SqliteSpool {
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, QueueError> {
        let path = path.into();
        let conn = open(&path)?;
        let last: i64 = conn.query_row("SELECT coalesce(max(seq), 0) FROM spool", [], |r| r.get(0)).map_err(storage)?;
        let tail = Arc::new(Tail { last: Mutex::new(last as u64), grew: Condvar::new() });
        let (tx, rx) = sync_channel(PENDING_LIMIT);
        let writer_tail = tail.clone();
        std::thread::Builder::new()
            .name("spool-writer".into())
            .spawn(move || write_loop(conn, rx, writer_tail))
            .map_err(|e| QueueError::Storage(e.to_string()))?;
        Ok(Self { path, tx, tail })
    }

    /// A consumer in this process, woken by the writer as entries commit.
    pub fn consumer(&self) -> Result<SqliteConsumer, QueueError> {
        SqliteConsumer::new(&self.path, Some(self.tail.clone()))
    }
}

impl SqliteConsumer {
    /// A consumer of a spool whose writer runs in another process (or not yet): it learns of new
    /// entries by looking.
    pub fn open(path: &Path) -> Result<Self, QueueError> {
        SqliteConsumer::new(path, None)
    }

    fn new(path: &Path, tail: Option<Arc<Tail>>) -> Result<Self, QueueError> {
        Ok(SqliteConsumer { conn: open(path)?, tail, last_checkpoint: Instant::now() })
    }

    /// The highest committed sequence number.
    fn last_seq(&self) -> Result<u64, QueueError> {
        match &self.tail {
            Some(tail) => Ok(*tail.last.lock().unwrap()),
            None => self
                .conn
                .query_row("SELECT coalesce(max(seq), 0) FROM spool", [], |r| r.get::<_, i64>(0))
                .map(|n| n as u64)
                .map_err(storage),
        }
    }
}

fn write_loop(mut conn: Connection, rx: Receiver<Job>, tail: Arc<Tail>) {
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        let mut rows = jobs[0].0.len();
        while rows < MAX_GROUP {
            match rx.try_recv() {
                Ok(job) => {
                    rows += job.0.len();
                    jobs.push(job);
                }
                Err(_) => break,
            }
        }
        let result = commit(&mut conn, &jobs);
        if let Ok(last) = result {
            *tail.last.lock().unwrap() = last;
            tail.grew.notify_all();
        }
        for (_, done) in jobs {
            let _ = done.send(result.as_ref().map(|_| ()).map_err(|e| QueueError::Storage(e.to_string())));
        }
    }
}

fn commit(conn: &mut Connection, jobs: &[Job]) -> Result<u64, QueueError> {
    let tx = conn.transaction().map_err(storage)?;
    let now = now_ms();
    {
        let mut insert =
            tx.prepare_cached("INSERT INTO spool (received_ms, payload) VALUES (?1, ?2)").map_err(storage)?;
        for payload in jobs.iter().flat_map(|(p, _)| p) {
            insert.execute(params![now, payload]).map_err(storage)?;
        }
    }
    let last = tx.last_insert_rowid() as u64;
    tx.commit().map_err(storage)?;
    Ok(last)
}

impl Producer for SqliteSpool {
    fn append(&self, messages: Vec<Message>) -> AppendFuture<'_> {
        let payloads = messages.into_iter().map(|m| m.payload).collect();
        let (done, wait) = oneshot::channel();
        let sent = self.tx.try_send((payloads, done));
        Box::pin(async move {
            match sent {
                Ok(()) => wait.await.unwrap_or(Err(QueueError::Closed)),
                Err(TrySendError::Full(_)) => Err(QueueError::Full),
                Err(TrySendError::Disconnected(_)) => Err(QueueError::Closed),
            }
        })
    }
}

pub struct SqliteConsumer {
    conn: Connection,
    /// The writer's tail when it runs in this process; otherwise the file is asked.
    tail: Option<Arc<Tail>>,
    last_checkpoint: Instant,
}

impl Consumer for SqliteConsumer {
    /// Sequence numbers are handed out one after another, so the newest less the position read.
    fn waiting(&mut self, after: u64) -> Option<u64> {
        self.last_seq().ok().map(|last| last.saturating_sub(after))
    }

    fn read(&mut self, after: u64, max: usize) -> Result<Vec<Entry>, QueueError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT seq, received_ms, payload FROM spool WHERE seq > ?1 ORDER BY seq LIMIT ?2")
            .map_err(storage)?;
        let rows = stmt
            .query_map(params![after as i64, max as i64], |r| {
                Ok(Entry { seq: r.get::<_, i64>(0)? as u64, received_ms: r.get(1)?, payload: r.get(2)? })
            })
            .map_err(storage)?;
        rows.collect::<Result<_, _>>().map_err(storage)
    }

    fn wait(&mut self, after: u64, timeout: Duration) {
        if let Some(tail) = &self.tail {
            let last = tail.last.lock().unwrap();
            if *last <= after {
                let _ = tail.grew.wait_timeout(last, timeout);
            }
            return;
        }
        let deadline = Instant::now() + timeout;
        // A failed look is the same as nothing new: the caller reads, and reports, anyway.
        while self.last_seq().is_ok_and(|last| last <= after) && Instant::now() < deadline {
            std::thread::sleep(POLL_EVERY.min(deadline.saturating_duration_since(Instant::now())));
        }
    }

    fn resume_after(&mut self, seq: u64) -> Result<(), QueueError> {
        let tx = self.conn.transaction().map_err(storage)?;
        let current: i64 = tx
            .query_row("SELECT coalesce(max(seq), 0) FROM sqlite_sequence WHERE name = 'spool'", [], |r| r.get(0))
            .map_err(storage)?;
        if (current as u64) < seq {
            tx.execute("DELETE FROM sqlite_sequence WHERE name = 'spool'", []).map_err(storage)?;
            tx.execute("INSERT INTO sqlite_sequence (name, seq) VALUES ('spool', ?1)", [seq as i64])
                .map_err(storage)?;
        }
        tx.commit().map_err(storage)
    }

    fn release(&mut self, seqs: &[u64]) -> Result<(), QueueError> {
        let mut n = 0;
        if !seqs.is_empty() {
            let tx = self.conn.transaction().map_err(storage)?;
            {
                let mut delete = tx.prepare_cached("DELETE FROM spool WHERE seq = ?1").map_err(storage)?;
                for seq in seqs {
                    n += delete.execute([*seq as i64]).map_err(storage)?;
                }
            }
            tx.commit().map_err(storage)?;
        }
        let idle = seqs.iter().max().is_some_and(|m| self.last_seq().is_ok_and(|last| last <= *m));
        if (n > 0 && idle) || self.last_checkpoint.elapsed() >= CHECKPOINT_EVERY {
            // TRUNCATE empties the WAL file, so frames holding deleted entries are gone too.
            let _ = self.conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
            self.last_checkpoint = Instant::now();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(payloads: Vec<Vec<u8>>) -> Vec<Message> {
        payloads.into_iter().map(|payload| Message { key: 0, payload }).collect()
    }

    fn temp_path(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("plumb-queue-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("spool.db")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn appends_are_durable_ordered_and_survive_reopen() {
        let path = temp_path("reopen");
        {
            let spool = Arc::new(SqliteSpool::open(&path).unwrap());
            let mut tasks = Vec::new();
            for i in 0..200u32 {
                let s = spool.clone();
                tasks.push(tokio::spawn(async move { s.append(messages(vec![i.to_le_bytes().to_vec()])).await }));
            }
            for t in tasks {
                t.await.unwrap().unwrap();
            }
        }
        let spool = SqliteSpool::open(&path).unwrap();
        let mut c = spool.consumer().unwrap();
        let all = c.read(0, 1000).unwrap();
        assert_eq!(all.len(), 200);
        assert!(all.windows(2).all(|w| w[0].seq < w[1].seq));
        let mut seen: Vec<u32> = all.iter().map(|e| u32::from_le_bytes(e.payload[..4].try_into().unwrap())).collect();
        seen.sort();
        assert_eq!(seen, (0..200).collect::<Vec<_>>());
        assert_eq!(c.read(all[99].seq, 1000).unwrap().len(), 100);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn release_deletes_exactly_the_entries_named_and_never_reuses_seq() {
        let path = temp_path("release");
        let spool = SqliteSpool::open(&path).unwrap();
        let mut c = spool.consumer().unwrap();
        spool.append(messages(vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()])).await.unwrap();
        let all = c.read(0, 10).unwrap();
        // The first and the third: the second stays.
        c.release(&[all[0].seq, all[2].seq]).unwrap();
        let rest = c.read(0, 10).unwrap();
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].payload, b"b");
        c.release(&[all[0].seq]).unwrap();
        assert_eq!(c.read(0, 10).unwrap(), rest, "released twice: nothing else goes");
        c.release(&[all[1].seq]).unwrap();
        spool.append(messages(vec![b"d".to_vec()])).await.unwrap();
        assert!(c.read(0, 10).unwrap()[0].seq > all[2].seq);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_recreated_queue_numbers_after_the_committed_position() {
        let path = temp_path("resume");
        let spool = SqliteSpool::open(&path).unwrap();
        let mut c = spool.consumer().unwrap();
        c.resume_after(1_000).unwrap();
        spool.append(messages(vec![b"x".to_vec()])).await.unwrap();
        assert_eq!(c.read(0, 10).unwrap()[0].seq, 1_001);
        // Never moves backwards.
        c.resume_after(10).unwrap();
        spool.append(messages(vec![b"y".to_vec()])).await.unwrap();
        assert_eq!(c.read(1_001, 10).unwrap()[0].seq, 1_002);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_consumer_without_the_writer_finds_new_entries_by_looking() {
        let path = temp_path("apart");
        // As `plumb work` would open it: the writer (here in the same test process) is not told.
        let mut c = SqliteConsumer::open(&path).unwrap();
        let spool = Arc::new(SqliteSpool::open(&path).unwrap());
        let started = Instant::now();
        c.wait(0, Duration::from_millis(100));
        assert!(started.elapsed() >= Duration::from_millis(100), "nothing to find: waits the whole timeout");
        let writer = spool.clone();
        let append = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            writer.append(messages(vec![b"late".to_vec()])).await
        });
        let waiting = Instant::now();
        let found = tokio::task::spawn_blocking(move || {
            c.wait(0, Duration::from_secs(10));
            (c.read(0, 10).unwrap(), c)
        });
        append.await.unwrap().unwrap();
        let (entries, mut c) = found.await.unwrap();
        assert_eq!(entries.len(), 1, "woke for the entry, not the timeout");
        assert!(waiting.elapsed() < Duration::from_secs(2), "{:?}", waiting.elapsed());
        c.release(&[entries[0].seq]).unwrap();
        assert!(c.read(0, 10).unwrap().is_empty());
    }
}
