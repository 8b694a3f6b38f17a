//! The durable hand-off between collector and pipeline. The collector answers `202` only after
//! [`Producer::append`] resolves, i.e. after the entry is on disk. Entries are read in sequence
//! order, and stay readable for a replay window after processing so that a restarted pipeline can
//! rebuild its in-memory session state; then they are deleted for good.
//!
//! Two backends: [`SqliteSpool`], one file beside the process, and [`NatsQueue`] with
//! [`NatsConsumer`], a NATS JetStream stream that collectors and workers on several machines share.

mod nats;
mod sqlite;
#[cfg(feature = "testing")]
pub mod testing;

pub use nats::{
    INDEX_BITS, LIVE_SUBJECT, LiveFeed, MAX_PARTITIONS, NatsConfig, NatsConsumer, NatsQueue, Partitions, STREAM,
};
pub use sqlite::{SqliteConsumer, SqliteSpool};

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

#[derive(Debug, Clone, thiserror::Error)]
pub enum QueueError {
    #[error("queue storage failed: {0}")]
    Storage(String),
    /// Load shedding: more appends are waiting than the disk can take right now.
    #[error("queue is full, retry shortly")]
    Full,
    #[error("queue writer has stopped")]
    Closed,
    /// A setting that cannot work (a malformed server URL, a partition that does not exist).
    #[error("queue configuration is invalid: {0}")]
    Config(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Strictly increasing, never reused.
    pub seq: u64,
    /// Unix ms at which the entry was committed.
    pub received_ms: i64,
    pub payload: Vec<u8>,
}

/// A payload to append, with the key that places it: messages with the same key go to the same
/// partition, so one worker sees every hit of a visitor (queues without partitions ignore it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub key: u64,
    pub payload: Vec<u8>,
}

pub type AppendFuture<'a> = Pin<Box<dyn Future<Output = Result<(), QueueError>> + Send + 'a>>;

pub trait Producer: Send + Sync + 'static {
    /// Durably appends the messages; resolves once they are all committed. When it fails, the
    /// spool has stored none of them, but NATS may have stored some (each is its own publish).
    fn append(&self, messages: Vec<Message>) -> AppendFuture<'_>;
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
    /// Deletes these (processed) entries, so their bytes leave the disk: before returning (the
    /// spool), or soon after in the background (NATS, whose erasing deletes are slower than
    /// appends). An entry released twice is deleted once. An entry whose deletion a crash cut
    /// short is read again on the next start, and released again.
    fn release(&mut self, seqs: &[u64]) -> Result<(), QueueError>;
    /// How many entries after `after` wait to be read, when the queue can tell cheaply (for
    /// operators' metrics); `None` when it cannot.
    fn waiting(&mut self, _after: u64) -> Option<u64> {
        None
    }
}

/// A consumer chosen at run time (by configuration) is still a consumer.
impl<C: Consumer + ?Sized> Consumer for Box<C> {
    fn read(&mut self, after: u64, max: usize) -> Result<Vec<Entry>, QueueError> {
        (**self).read(after, max)
    }
    fn wait(&mut self, after: u64, timeout: Duration) {
        (**self).wait(after, timeout)
    }
    fn waiting(&mut self, after: u64) -> Option<u64> {
        (**self).waiting(after)
    }
    fn resume_after(&mut self, seq: u64) -> Result<(), QueueError> {
        (**self).resume_after(seq)
    }
    fn release(&mut self, seqs: &[u64]) -> Result<(), QueueError> {
        (**self).release(seqs)
    }
}
