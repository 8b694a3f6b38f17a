//! The event store: append-only analytics rows. The pipeline writes through [`EventWriter`]; the
//! API reads through [`EventReader`], the sums backend `plumb_query` answers queries from; each
//! backend compiles its sums queries with `plumb_query::sql` in its own dialect. Two backends:
//! [`DuckStore`], one embedded file, and [`ClickHouseStore`], a ClickHouse server.

pub mod clickhouse;
pub mod copy;
pub mod duck;
#[cfg(feature = "testing")]
pub mod testing;

pub use clickhouse::{ClickHouseReader, ClickHouseStore, HANDOVER_WRITER, TsvRows};
pub use duck::{DuckSnapshot, DuckStore};

use plumb_core::Row;
use plumb_query::SumsBackend;
use plumb_query::imported::ImportedRow;

pub use plumb_query::StoreError;

pub type Result<T> = std::result::Result<T, StoreError>;

pub trait EventWriter: Send + 'static {
    /// The queue sequence number of the last committed batch (0 if none).
    fn position(&mut self) -> Result<u64>;
    /// Appends `rows` and moves the position to `position` in one transaction: either both
    /// happen or neither, which is what makes counting exactly-once across crashes. Positions
    /// increase from commit to commit; a commit that failed is tried again with the same rows
    /// and position (ClickHouse's store, which may not know whether its insert got through,
    /// then stores what it lacks).
    fn commit(&mut self, rows: &[Row], position: u64) -> Result<()>;
    /// Deletes every stored row of a deleted site (events, rollups and imported rows). Returns
    /// the events deleted.
    fn delete_site(&mut self, site_id: u32) -> Result<u64>;
    /// Deletes a site's stored rows (events, rollups and imported rows) of the days before `day`
    /// (its retention). Returns the events deleted.
    fn delete_before(&mut self, site_id: u32, day: i32) -> Result<u64>;
    /// Stores the rows of import `import_id` (see `plumb_query::imported`) but those of days on or
    /// after its site's first live row (counted live); returns how many it stored. DuckDB stores
    /// them in one transaction, replacing any rows the id had; ClickHouse in inserts as they come,
    /// for an id of its own each run. Queries read them only once metadata marks the import
    /// finished, so an import cut short is never read.
    fn put_import(&mut self, import_id: u32, rows: &mut dyn Iterator<Item = Result<ImportedRow>>) -> Result<u64>;
    /// Deletes the rows of import `import_id`.
    fn remove_import(&mut self, import_id: u32) -> Result<()>;
    /// The longest a processed row waits for its commit: commits cost the store a fixed amount
    /// each (a transaction, a part to merge).
    fn commit_interval(&self) -> std::time::Duration {
        std::time::Duration::from_millis(100)
    }
    /// Copies the committed rows and position into a new store file at `dest`, at one instant,
    /// and returns the position: what `plumb migrate` moves to another store.
    fn snapshot(&mut self, dest: &std::path::Path) -> Result<u64> {
        Err(StoreError::Backend(format!("this event store takes no snapshots (asked for {})", dest.display())))
    }
}

/// A writer chosen at run time (by configuration) is still a writer.
impl<W: EventWriter + ?Sized> EventWriter for Box<W> {
    fn position(&mut self) -> Result<u64> {
        (**self).position()
    }
    fn commit(&mut self, rows: &[Row], position: u64) -> Result<()> {
        (**self).commit(rows, position)
    }
    fn delete_site(&mut self, site_id: u32) -> Result<u64> {
        (**self).delete_site(site_id)
    }
    fn delete_before(&mut self, site_id: u32, day: i32) -> Result<u64> {
        (**self).delete_before(site_id, day)
    }
    fn put_import(&mut self, import_id: u32, rows: &mut dyn Iterator<Item = Result<ImportedRow>>) -> Result<u64> {
        (**self).put_import(import_id, rows)
    }
    fn remove_import(&mut self, import_id: u32) -> Result<()> {
        (**self).remove_import(import_id)
    }
    fn commit_interval(&self) -> std::time::Duration {
        (**self).commit_interval()
    }
    fn snapshot(&mut self, dest: &std::path::Path) -> Result<u64> {
        (**self).snapshot(dest)
    }
}

/// Read side: sums per group (see [`query::run`] for everything built on them).
pub trait EventReader: SumsBackend + Send + Sync + 'static {}
