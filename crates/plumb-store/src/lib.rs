//! The event store: append-only analytics rows, and the query model that reads them.
//! The pipeline writes through [`EventWriter`]; the API reads through [`EventReader`]. The
//! query model ([`query`]) is backend-neutral; each backend compiles it to its own SQL.

pub mod duck;
pub mod query;
mod rollup;
pub mod sql;

pub use duck::DuckStore;

use plumb_core::Row;
use query::SumsBackend;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("event store failed: {0}")]
    Backend(String),
    /// A query ran longer than its time budget and was stopped.
    #[error("the query ran longer than {0:?} and was stopped; narrow the range or add a filter")]
    Timeout(std::time::Duration),
    /// A query would answer more groups than one answer may hold, or needed more memory than the
    /// store may use.
    #[error("{0}")]
    TooLarge(String),
}

pub type Result<T> = std::result::Result<T, StoreError>;

pub trait EventWriter: Send + 'static {
    /// The queue sequence number of the last committed batch (0 if none).
    fn position(&mut self) -> Result<u64>;
    /// Appends `rows` and moves the position to `position` in one transaction: either both
    /// happen or neither, which is what makes counting exactly-once across crashes.
    fn commit(&mut self, rows: &[Row], position: u64) -> Result<()>;
    /// Deletes every stored row of a deleted site (events and rollups). Returns the events
    /// deleted.
    fn delete_site(&mut self, site_id: u32) -> Result<u64>;
}

/// Read side: sums per group (see [`query::run`] for everything built on them).
pub trait EventReader: SumsBackend + Send + Sync + 'static {}
