//! How `plumb migrate`, `plumb backup` and `plumb export` get a running embedded server's rows without stopping
//! it: through files in a folder of the data directory (`migrate/`, `backup/`, `export/`; the tool and the
//! server run on one machine, over one data directory). The tool writes `snapshot.request`; the
//! server's pipeline, between two commits, copies its rows and position into `snapshot.duckdb`
//! (renamed into place once whole) and removes the request. From then until the tool writes
//! `finished`, the pipeline releases no queue entry, so every entry after the snapshot is still
//! there for the tool to hand over or copy, and every entry of a session still open at the
//! snapshot too. The hold lasts [`HOLD_LIMIT`] after the tool last renewed it (`held`'s time),
//! not forever: a tool stopped half-way must not keep visitor signatures on disk.

use plumb_store::{DuckSnapshot, DuckStore, EventWriter, StoreError};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

/// How long queue entries stay held after the tool last renewed the hold.
pub const HOLD_LIMIT: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, Clone)]
pub struct Handover {
    dir: PathBuf,
}

impl Handover {
    /// `plumb migrate`'s.
    pub fn for_migrate(data_dir: &Path) -> Handover {
        Handover { dir: data_dir.join("migrate") }
    }

    /// `plumb backup`'s.
    pub fn for_backup(data_dir: &Path) -> Handover {
        Handover { dir: data_dir.join("backup") }
    }

    /// `plumb export`'s (it holds the queue only from its snapshot to its `finish` right after).
    pub fn for_export(data_dir: &Path) -> Handover {
        Handover { dir: data_dir.join("export") }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn request(&self) -> PathBuf {
        self.dir.join("snapshot.request")
    }

    pub fn snapshot_path(&self) -> PathBuf {
        self.dir.join("snapshot.duckdb")
    }

    fn finished_path(&self) -> PathBuf {
        self.dir.join("finished")
    }

    fn held_path(&self) -> PathBuf {
        self.dir.join("held")
    }

    /// How long ago the hold was last renewed, if there is one.
    fn held_for(&self) -> Option<Duration> {
        let renewed = std::fs::metadata(self.held_path()).and_then(|m| m.modified()).ok()?;
        Some(SystemTime::now().duration_since(renewed).unwrap_or_default())
    }

    /// The folder's lock, held while the returned file is open; `None` if another process holds
    /// it (one migration, or one backup, at a time).
    pub fn lock(&self) -> std::io::Result<Option<std::fs::File>> {
        std::fs::create_dir_all(&self.dir)?;
        let lock = std::fs::File::create(self.dir.join("lock"))?;
        Ok(lock.try_lock().is_ok().then_some(lock))
    }

    /// Renews the hold on the queue's entries (the tool's side, while it runs).
    pub fn renew_hold(&self) -> std::io::Result<()> {
        let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(self.held_path())?;
        file.set_modified(SystemTime::now())
    }

    /// Whether the hold ran out before the tool finished: the server may have released entries
    /// that were never handed over or copied, so the tool cannot go on.
    pub fn hold_lapsed(&self) -> bool {
        self.has_snapshot() && !self.is_finished() && self.held_for().is_none_or(|t| t >= HOLD_LIMIT)
    }

    /// Asks the server holding the store for a snapshot (the tool's side).
    pub fn request_snapshot(&self) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        std::fs::write(self.request(), b"")
    }

    /// Takes an unanswered request back (the tool gave up waiting): a snapshot taken later would
    /// hold the queue for nothing.
    pub fn withdraw_request(&self) {
        let _ = std::fs::remove_file(self.request());
    }

    pub fn snapshot_requested(&self) -> bool {
        self.request().exists()
    }

    pub fn has_snapshot(&self) -> bool {
        self.snapshot_path().exists()
    }

    /// Writes the snapshot of `writer`'s store and answers the request; returns its position.
    pub fn take_snapshot(&self, writer: &mut impl EventWriter) -> Result<u64, StoreError> {
        let io = |e: std::io::Error| StoreError::Backend(format!("{}: {e}", self.dir.display()));
        std::fs::create_dir_all(&self.dir).map_err(io)?;
        let part = self.dir.join("snapshot.duckdb.part");
        let position = writer.snapshot(&part)?;
        // Held from before the snapshot is there: no entry after it can leave in between.
        self.renew_hold().map_err(io)?;
        std::fs::rename(&part, self.snapshot_path()).map_err(io)?;
        let _ = std::fs::remove_file(self.request());
        Ok(position)
    }

    /// Whether queue entries must stay: the tool is under way and renewed the hold within
    /// [`HOLD_LIMIT`].
    pub fn holds_releases(&self) -> bool {
        !self.is_finished() && self.held_for().is_some_and(|t| t < HOLD_LIMIT)
    }

    /// Records that the tool needs the queue's entries no more (the tool's side).
    pub fn finish(&self) -> std::io::Result<()> {
        std::fs::write(self.finished_path(), b"")
    }

    pub fn is_finished(&self) -> bool {
        self.finished_path().exists()
    }

    /// The snapshot of the DuckDB store at `store`, taken now unless there is one: by the server
    /// holding the file, asked through the request file and waited for up to `wait`, or by this
    /// process when no server holds it. `asking` is called when the server is asked.
    pub fn snapshot(&self, store: &Path, wait: Duration, asking: impl FnOnce()) -> Result<DuckSnapshot, StoreError> {
        if !self.has_snapshot() {
            if plumb_store::duck::in_use(store) {
                asking();
                let io = |e: std::io::Error| StoreError::Backend(format!("cannot ask the server for a snapshot: {e}"));
                self.request_snapshot().map_err(io)?;
                let deadline = Instant::now() + wait;
                while !self.has_snapshot() {
                    if Instant::now() > deadline {
                        self.withdraw_request();
                        return Err(StoreError::Backend(format!(
                            "the server holding {} took no snapshot within {wait:?}: is it a Plumb from before \
                             snapshots? (its log says why if it tried)",
                            store.display()
                        )));
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
            } else {
                self.take_snapshot(&mut DuckStore::open(store)?)?;
            }
        }
        DuckSnapshot::open(&self.snapshot_path())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hold_lasts_a_day_after_its_last_renewal_and_ends_with_the_hand_over() {
        let dir = std::env::temp_dir().join(format!("plumb-handover-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let h = Handover::for_migrate(&dir);
        assert!(!h.holds_releases() && !h.hold_lapsed(), "no migration, no hold");
        std::fs::create_dir_all(h.dir()).unwrap();
        std::fs::write(h.snapshot_path(), b"").unwrap();
        assert!(h.hold_lapsed(), "a snapshot without a hold: entries may have left");
        h.renew_hold().unwrap();
        assert!(h.holds_releases() && !h.hold_lapsed());
        let file = std::fs::OpenOptions::new().write(true).open(h.held_path()).unwrap();
        file.set_modified(SystemTime::now() - HOLD_LIMIT - Duration::from_secs(1)).unwrap();
        assert!(!h.holds_releases() && h.hold_lapsed(), "abandoned for a day: released again");
        h.renew_hold().unwrap();
        h.finish().unwrap();
        assert!(!h.holds_releases() && !h.hold_lapsed(), "finished");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
