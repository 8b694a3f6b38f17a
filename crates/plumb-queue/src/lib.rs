//! The durable hand-off between collector and pipeline. The collector answers `202` only after
//! [`Producer::append`] resolves, i.e. after the entry is on disk. Entries are read in sequence
//! order, and stay readable for a replay window after processing so that a restarted pipeline can
//! rebuild its in-memory session state; then they are deleted for good.

mod sqlite;

pub use sqlite::{SqliteConsumer, SqliteSpool};

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("queue storage failed: {0}")]
    Storage(String),
    /// Load shedding: more appends are waiting than the disk can take right now.
    #[error("queue is full, retry shortly")]
    Full,
    #[error("queue writer has stopped")]
    Closed,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Strictly increasing, never reused.
    pub seq: u64,
    /// Unix ms at which the entry was committed.
    pub received_ms: i64,
    pub payload: Vec<u8>,
}

pub type AppendFuture<'a> = Pin<Box<dyn Future<Output = Result<(), QueueError>> + Send + 'a>>;

pub trait Producer: Send + Sync + 'static {
    /// Durably appends the payloads (all or none); resolves once they are committed.
    fn append(&self, payloads: Vec<Vec<u8>>) -> AppendFuture<'_>;
}

/// Read side, used from the pipeline's own thread (blocking calls).
pub trait Consumer: Send + 'static {
    /// Up to `max` entries with `seq > after`, in order.
    fn read(&mut self, after: u64, max: usize) -> Result<Vec<Entry>, QueueError>;
    /// Returns when entries after `after` may exist, or after `timeout`.
    fn wait(&mut self, after: u64, timeout: Duration);
    /// Makes sure entries appended from now on are numbered above `seq` (the store's committed
    /// position), so a lost or recreated queue file cannot make new events look processed.
    fn resume_after(&mut self, seq: u64) -> Result<(), QueueError>;
    /// Deletes these (processed) entries, so their bytes leave the disk. Returns how many were
    /// deleted.
    fn release(&mut self, seqs: &[u64]) -> Result<u64, QueueError>;
}
