//! How `plumb migrate` gets a running embedded server's rows without stopping it: through files
//! in the data directory's `migrate/` folder (the two run on one machine, over one data
//! directory). Migrate writes `snapshot.request`; the server's pipeline, between two commits,
//! copies its rows and position into `snapshot.duckdb` (renamed into place once whole) and
//! removes the request. From then until migrate writes `finished`, the pipeline releases no
//! queue entry, so every entry after the snapshot is still there for migrate to hand over to
//! the new queue, and every entry of a session still open at the snapshot too.

use plumb_store::{EventWriter, StoreError};
use std::path::{Path, PathBuf};

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

    /// Asks the server holding the store for a snapshot (migrate's side).
    pub fn request_snapshot(&self) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        std::fs::write(self.request(), b"")
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
        std::fs::rename(&part, self.snapshot_path()).map_err(io)?;
        let _ = std::fs::remove_file(self.request());
        Ok(position)
    }

    /// Whether queue entries must stay (a snapshot was taken, the hand-over is not finished).
    pub fn holds_releases(&self) -> bool {
        self.has_snapshot() && !self.is_finished()
    }

    /// Records that every queue entry has been handed over (migrate's side).
    pub fn finish(&self) -> std::io::Result<()> {
        std::fs::write(self.finished_path(), b"")
    }

    pub fn is_finished(&self) -> bool {
        self.finished_path().exists()
    }
}
