//! How `plumb migrate` gets a running embedded server's rows without stopping it: through files
//! in the data directory's `migrate/` folder (the two run on one machine, over one data
//! directory). Migrate writes `snapshot.request`; the server's pipeline, between two commits,
//! copies its rows and position into `snapshot.duckdb` (renamed into place once whole) and
//! removes the request. From then until migrate writes `finished`, the pipeline releases no
//! queue entry, so every entry after the snapshot is still there for migrate to hand over to
//! the new queue, and every entry of a session still open at the snapshot too. The hold lasts
//! [`HOLD_LIMIT`] after migrate last renewed it (`held`'s time), not forever: a migration
//! abandoned half-way must not keep visitor signatures on disk.

use plumb_store::{EventWriter, StoreError};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// How long queue entries stay held after `plumb migrate` last ran.
pub const HOLD_LIMIT: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, Clone)]
pub struct Handover {
    dir: PathBuf,
}

impl Handover {
    pub fn in_data_dir(data_dir: &Path) -> Handover {
        Handover { dir: data_dir.join("migrate") }
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

    /// Renews the hold on the queue's entries (migrate's side, while it runs).
    pub fn renew_hold(&self) -> std::io::Result<()> {
        let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(self.held_path())?;
        file.set_modified(SystemTime::now())
    }

    /// Whether the hold ran out before the hand-over ended: the server may have released entries
    /// that were never handed over, so the migration cannot go on.
    pub fn hold_lapsed(&self) -> bool {
        self.has_snapshot() && !self.is_finished() && self.held_for().is_none_or(|t| t >= HOLD_LIMIT)
    }

    /// Asks the server holding the store for a snapshot (migrate's side).
    pub fn request_snapshot(&self) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        std::fs::write(self.request(), b"")
    }

    /// Takes an unanswered request back (migrate gave up waiting): a snapshot taken later would
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

    /// Whether queue entries must stay: the hand-over is under way and migrate renewed the hold
    /// within [`HOLD_LIMIT`].
    pub fn holds_releases(&self) -> bool {
        !self.is_finished() && self.held_for().is_some_and(|t| t < HOLD_LIMIT)
    }

    /// Records that every queue entry has been handed over (migrate's side).
    pub fn finish(&self) -> std::io::Result<()> {
        std::fs::write(self.finished_path(), b"")
    }

    pub fn is_finished(&self) -> bool {
        self.finished_path().exists()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hold_lasts_a_day_after_its_last_renewal_and_ends_with_the_hand_over() {
        let dir = std::env::temp_dir().join(format!("plumb-handover-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let h = Handover::in_data_dir(&dir);
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
