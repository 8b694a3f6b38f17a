//! NATS JetStream queue, for collectors and workers on several machines. Entries live in one
//! file-backed stream, `PLUMB_EVENTS`, on the subjects `plumb.events.<partition>`, where a
//! message's partition is its key modulo the partition count, so that a worker can own a subset.
//!
//! Group commit: a server that syncs every write stores about 4,000 messages a second whatever
//! their size (measured here), so a producer packs the messages appended meanwhile to one
//! partition into one stream message (a batch), with at most one batch per partition in flight.
//! An entry's position is its batch's stream sequence shifted left by [`INDEX_BITS`], plus its
//! index in the batch. A batch is deleted once all its entries are released.
//!
//! Durability is the server's: a publish is acknowledged once the stream has stored it, which
//! means on disk only when the server runs with `jetstream { sync_interval: always }` (by default
//! it syncs every two minutes). Entries leave only when released: the stream has no age limit,
//! and its size limit makes a stalled worker show as refused appends (`503`), not a full disk.

use crate::{AppendFuture, Consumer, Entry, Message, Producer, QueueError};
use async_nats::connection::State;
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull};
use async_nats::jetstream::context::{PublishError, PublishErrorKind};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::{self, DeleteMessageErrorKind, DiscardPolicy, RetentionPolicy, StorageType};
use async_nats::jetstream::{self, ErrorCode};
use futures_util::StreamExt;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, sleep, timeout, timeout_at};

/// The stream holding every queued event.
pub const STREAM: &str = "PLUMB_EVENTS";
/// Subjects are `plumb.events.<partition>`.
const SUBJECT_PREFIX: &str = "plumb.events";
/// How long the server remembers message ids: a publish retried within it is stored once.
const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);
/// The most partitions a stream may be spread over (each is a subject a consumer may filter on).
pub const MAX_PARTITIONS: u16 = 1024;
/// Low bits of a position: the entry's index in its batch.
pub const INDEX_BITS: u32 = 16;
/// The most entries in one batch.
const MAX_BATCH_ENTRIES: usize = 1 << INDEX_BITS;
/// The most payload bytes in one batch (well below the server's 1 MiB message limit).
const MAX_BATCH_BYTES: usize = 256 << 10;
/// A batch is this version byte, then each payload as a little-endian u32 length and its bytes.
const BATCH_FORMAT: u8 = 1;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Every request to the server (stream info, consumers, fetches, deletes) gives up after this.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// A publish not acknowledged for this long is sent again, with the same id, while the append's
/// time lasts: a message lost in a reconnect gets no answer at all.
const ACK_WAIT: Duration = Duration::from_secs(1);
/// The pause before sending again after a refusal that may pass (JetStream not ready yet).
const RETRY_PAUSE: Duration = Duration::from_millis(50);
/// Entries waiting for their batch's acknowledgement, per producer; beyond this appends fail with
/// [`QueueError::Full`], as the spool sheds load past its pending limit.
const MAX_WAITING: usize = 16_384;
/// Publishes awaiting their acknowledgement, per connection: at most a batch per partition.
const MAX_IN_FLIGHT: usize = MAX_PARTITIONS as usize;
/// The longest pause between reconnection attempts: async-nats's own grows to 4 s, most of an
/// append's time.
const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(1);
/// How often an append that finds the connection down looks again.
const RECONNECT_POLL: Duration = Duration::from_millis(20);
/// Deletes in flight at once while erasing released entries.
const RELEASE_CONCURRENCY: usize = 64;
/// The most batches one fetch asks for (each up to `MAX_BATCH_BYTES`), so that what a read
/// holds beyond what it returns stays bounded.
const FETCH_BATCHES: usize = 64;
/// How much sooner than its caller's deadline a pull request held by `wait` expires.
const EXPIRY_MARGIN: Duration = Duration::from_millis(10);
/// How long the server keeps a consumer nobody reads from (its worker died).
const CONSUMER_IDLE: Duration = Duration::from_secs(600);

/// Where the queue is and how it is laid out. Producers and consumers of one stream must agree on
/// `partitions` and `max_bytes` (each makes sure the stream has the latter).
#[derive(Debug, Clone)]
pub struct NatsConfig {
    /// `nats://HOST:PORT`.
    pub url: String,
    /// How many subjects entries are spread over by key, 1..=[`MAX_PARTITIONS`].
    pub partitions: u16,
    /// The stream's size limit; past it appends fail with [`QueueError::Full`].
    pub max_bytes: u64,
    /// How long an append may take, retries included, before it fails.
    pub append_timeout: Duration,
}

impl NatsConfig {
    pub const DEFAULT_PARTITIONS: u16 = 16;
    pub const DEFAULT_MAX_BYTES: u64 = 8 << 30;
    pub const DEFAULT_APPEND_TIMEOUT: Duration = Duration::from_secs(5);

    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            partitions: Self::DEFAULT_PARTITIONS,
            max_bytes: Self::DEFAULT_MAX_BYTES,
            append_timeout: Self::DEFAULT_APPEND_TIMEOUT,
        }
    }

    /// Checks the settings; returns the server's `HOST:PORT`.
    fn validate(&self) -> Result<String, QueueError> {
        if !(1..=MAX_PARTITIONS).contains(&self.partitions) {
            return Err(QueueError::Config(format!(
                "NATS partitions must be 1..={MAX_PARTITIONS}, not {}",
                self.partitions
            )));
        }
        if self.max_bytes == 0 || self.max_bytes > i64::MAX as u64 {
            return Err(QueueError::Config(format!("NATS max_bytes must be 1..={}, not {}", i64::MAX, self.max_bytes)));
        }
        server_addr(&self.url)
    }
}

/// `HOST:PORT` of a `nats://HOST:PORT` URL.
fn server_addr(raw: &str) -> Result<String, QueueError> {
    let bad = |why: &str| QueueError::Config(format!("NATS URL `{raw}` {why}; expected nats://HOST:PORT"));
    let url = url::Url::parse(raw).map_err(|e| bad(&format!("is malformed ({e})")))?;
    if url.scheme() != "nats" {
        return Err(bad(&format!("has scheme `{}` (TLS and websockets are not supported)", url.scheme())));
    }
    if !url.username().is_empty() || url.password().is_some() {
        // Not echoed: the URL holds a secret.
        return Err(QueueError::Config(
            "NATS URL has credentials, which are not supported; expected nats://HOST:PORT".into(),
        ));
    }
    let host = url.host_str().filter(|h| !h.is_empty()).ok_or_else(|| bad("has no host"))?;
    let port = url.port().ok_or_else(|| bad("has no port"))?;
    if !matches!(url.path(), "" | "/") || url.query().is_some() || url.fragment().is_some() {
        return Err(bad("has more than a host and port"));
    }
    Ok(format!("{host}:{port}"))
}

fn subject(partition: u64) -> String {
    format!("{SUBJECT_PREFIX}.{partition}")
}

/// A connection whose stream is made sure of.
struct Link {
    addr: String,
    client: async_nats::Client,
    js: jetstream::Context,
    stream: stream::Stream,
}

async fn link(config: &NatsConfig, name: &str) -> Result<Link, QueueError> {
    let addr = config.validate()?;
    let client = async_nats::ConnectOptions::new()
        .name(name)
        .connection_timeout(CONNECT_TIMEOUT)
        .reconnect_delay_callback(|attempts| Duration::from_millis(1 << attempts.min(16)).min(MAX_RECONNECT_DELAY))
        .connect(format!("nats://{addr}"))
        .await
        .map_err(|e| QueueError::Storage(format!("cannot connect to NATS at {addr}: {e}")))?;
    let js = jetstream::ContextBuilder::new()
        .timeout(REQUEST_TIMEOUT)
        .max_ack_inflight(MAX_IN_FLIGHT)
        .backpressure_on_inflight(false)
        .build(client.clone());
    let stream = ensure_stream(&js, config).await.map_err(|e| QueueError::Storage(format!("NATS at {addr}: {e}")))?;
    Ok(Link { addr, client, js, stream })
}

/// Plumb's settings over a stream's configuration; the rest (replicas, placement) is the
/// operator's.
fn settings(base: stream::Config, config: &NatsConfig) -> stream::Config {
    stream::Config {
        name: STREAM.into(),
        subjects: vec![format!("{SUBJECT_PREFIX}.*")],
        storage: StorageType::File,
        retention: RetentionPolicy::Limits,
        discard: DiscardPolicy::New,
        max_bytes: config.max_bytes as i64,
        // Entries leave when released, never by age: an unprocessed one must not vanish.
        max_age: Duration::ZERO,
        duplicate_window: DUPLICATE_WINDOW,
        allow_direct: true,
        deny_delete: false,
        deny_purge: false,
        ..base
    }
}

/// Creates the stream, or checks the one there and brings its settings to Plumb's.
async fn ensure_stream(js: &jetstream::Context, config: &NatsConfig) -> Result<stream::Stream, String> {
    let stream = js
        .get_or_create_stream(settings(stream::Config::default(), config))
        .await
        .map_err(|e| format!("cannot create or open stream {STREAM}: {e}"))?;
    let current = &stream.cached_info().config;
    // Neither can be changed on an existing stream.
    if current.storage != StorageType::File || current.retention != RetentionPolicy::Limits {
        return Err(format!(
            "stream {STREAM} exists with {:?} storage and {:?} retention, where Plumb needs file storage and \
             limits retention; move its entries elsewhere and delete it",
            current.storage, current.retention
        ));
    }
    let wanted = settings(current.clone(), config);
    if &wanted != current {
        js.update_stream(&wanted).await.map_err(|e| format!("cannot update stream {STREAM}'s settings: {e}"))?;
    }
    Ok(stream)
}

/// The producer: packs messages into batches per partition and resolves an append once the
/// server has acknowledged every batch holding its messages.
pub struct NatsQueue {
    shared: Arc<Publisher>,
    lanes: Vec<Arc<Lane>>,
    append_timeout: Duration,
}

/// What every batch is published with.
struct Publisher {
    addr: String,
    client: async_nats::Client,
    js: jetstream::Context,
    /// Random per producer, so message ids never repeat across producers and restarts.
    id: String,
    /// The next batch's number, the other half of its id.
    next: AtomicU64,
    /// Entries appended and not yet answered for (see [`MAX_WAITING`]).
    waiting: AtomicUsize,
}

/// One partition's messages waiting for a batch, and whether a batch of it is in flight (whose
/// task then takes these next).
#[derive(Default)]
struct Lane {
    waiting: Mutex<LaneState>,
}

#[derive(Default)]
struct LaneState {
    parts: VecDeque<Part>,
    flushing: bool,
}

/// An append's messages for one partition, small enough for one batch, and who waits for them.
struct Part {
    payloads: Vec<Vec<u8>>,
    bytes: usize,
    deadline: Instant,
    done: oneshot::Sender<Result<(), QueueError>>,
}

impl NatsQueue {
    /// Connects (on the calling tokio runtime) and makes sure the stream exists.
    pub async fn connect(config: &NatsConfig) -> Result<Self, QueueError> {
        let Link { addr, client, js, .. } = link(config, "plumb-collector").await?;
        let mut id = [0u8; 16];
        getrandom::fill(&mut id).map_err(|e| QueueError::Storage(format!("no randomness for the producer id: {e}")))?;
        let id = id.iter().map(|b| format!("{b:02x}")).collect();
        Ok(Self {
            shared: Arc::new(Publisher { addr, client, js, id, next: AtomicU64::new(0), waiting: AtomicUsize::new(0) }),
            lanes: (0..config.partitions).map(|_| Arc::default()).collect(),
            append_timeout: config.append_timeout,
        })
    }

    /// The partition a message with `key` goes to.
    pub fn partition_of(&self, key: u64) -> u16 {
        (key % self.lanes.len() as u64) as u16
    }

    /// Publishes entries moved from another queue (`plumb migrate` hands an embedded install's
    /// spool over), in order, on `partition`, as batches named `{id}-0`, `{id}-1`…: a batch is
    /// sent again under its name until acknowledged, so publishing the same entries under the
    /// same `id` again within the stream's duplicate window (two minutes) stores them once.
    /// Returns the last batch's stream sequence: its entries' positions are the highest.
    pub async fn publish_moved(&self, partition: u16, id: &str, payloads: Vec<Vec<u8>>) -> Result<u64, QueueError> {
        let mut last = 0;
        for (i, part) in parts(payloads).into_iter().enumerate() {
            let bytes = part.iter().map(|p| 4 + p.len()).sum();
            let batch = Outgoing {
                subject: subject(u64::from(partition)),
                id: format!("{id}-{i}"),
                payload: pack(part.iter(), bytes),
            };
            last = self.shared.publish(batch, part.len(), Instant::now() + self.append_timeout).await?;
        }
        Ok(last)
    }

    /// How many batches the stream holds, and the last one's sequence.
    pub async fn stream_state(&self) -> Result<(u64, u64), QueueError> {
        let failed =
            |e: String| QueueError::Storage(format!("cannot read {STREAM}'s state at {}: {e}", self.shared.addr));
        let mut stream = timeout(REQUEST_TIMEOUT, self.shared.js.get_stream(STREAM))
            .await
            .map_err(|_| failed("no answer".into()))?
            .map_err(|e| failed(e.to_string()))?;
        let info = timeout(REQUEST_TIMEOUT, stream.info())
            .await
            .map_err(|_| failed("no answer".into()))?
            .map_err(|e| failed(e.to_string()))?;
        Ok((info.state.messages, info.state.last_sequence))
    }
}

impl Publisher {
    /// Waits, until `deadline`, for the connection to be up; sending while it is down would only
    /// queue the message in the client, to be stored after the append has failed.
    async fn connected(&self, deadline: Instant) -> bool {
        loop {
            if self.client.connection_state() == State::Connected {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            sleep(RECONNECT_POLL.min(deadline - Instant::now())).await;
        }
    }

    /// Publishes one batch, sending it again (same id) until acknowledged or `deadline`; returns
    /// its stream sequence.
    async fn publish(&self, batch: Outgoing, entries: usize, deadline: Instant) -> Result<u64, QueueError> {
        let mut tries = 0;
        let mut why = String::new();
        loop {
            if tries > 0 {
                sleep(RETRY_PAUSE.min(deadline.saturating_duration_since(Instant::now()))).await;
            }
            if Instant::now() >= deadline || !self.connected(deadline).await {
                let down = self.client.connection_state() != State::Connected;
                let why = if down { "not connected".into() } else { why };
                return Err(QueueError::Storage(format!(
                    "NATS at {} did not acknowledge a batch of {entries} entries in time ({tries} tries; {why})",
                    self.addr,
                )));
            }
            tries += 1;
            match self.attempt(&batch, deadline).await {
                Ok(sequence) => return Ok(sequence),
                Err(e) => match verdict(&e, &self.addr) {
                    Some(fatal) => return Err(fatal),
                    None => why = e.to_string(),
                },
            }
        }
    }

    /// Sends the batch once and waits a while for its acknowledgement.
    async fn attempt(&self, m: &Outgoing, deadline: Instant) -> Result<u64, PublishError> {
        let publish = PublishMessage::build().message_id(&m.id).payload(m.payload.clone());
        let ack = match timeout_at(deadline, self.js.send_publish(m.subject.clone(), publish)).await {
            Ok(sent) => sent?,
            Err(_) => return Err(PublishError::new(PublishErrorKind::TimedOut)),
        };
        // A duplicate was stored by an earlier try: as good as stored now.
        match timeout_at((Instant::now() + ACK_WAIT).min(deadline), ack).await {
            Ok(answer) => answer.map(|ack| ack.sequence),
            Err(_) => Err(PublishError::new(PublishErrorKind::TimedOut)),
        }
    }

    /// Publishes the lane's waiting parts, a batch at a time, until none is left.
    async fn flush(self: Arc<Self>, lane: Arc<Lane>, subject: String) {
        loop {
            let parts = {
                let mut state = lane.waiting.lock().unwrap();
                let (mut entries, mut bytes, mut take) = (0, 0, 0);
                for p in &state.parts {
                    let fits = entries + p.payloads.len() <= MAX_BATCH_ENTRIES && bytes + p.bytes <= MAX_BATCH_BYTES;
                    if take > 0 && !fits {
                        break;
                    }
                    (entries, bytes, take) = (entries + p.payloads.len(), bytes + p.bytes, take + 1);
                }
                if take == 0 {
                    state.flushing = false;
                    return;
                }
                state.parts.drain(..take).collect::<Vec<_>>()
            };
            let entries = parts.iter().map(|p| p.payloads.len()).sum();
            let payload = pack(parts.iter().flat_map(|p| &p.payloads), parts.iter().map(|p| p.bytes).sum());
            let n = self.next.fetch_add(1, Ordering::Relaxed);
            let batch = Outgoing { subject: subject.clone(), id: format!("{}-{n}", self.id), payload };
            // The batch lives as long as its most patient append; those whose time ran out
            // meanwhile have answered already.
            let deadline = parts.iter().map(|p| p.deadline).max().unwrap_or_else(Instant::now);
            let outcome = self.publish(batch, entries, deadline).await.map(drop);
            self.waiting.fetch_sub(entries, Ordering::Relaxed);
            for p in parts {
                let _ = p.done.send(outcome.clone());
            }
        }
    }
}

/// A batch's message: the format byte, then each entry's length and bytes.
fn pack<'a>(payloads: impl Iterator<Item = &'a Vec<u8>>, bytes: usize) -> bytes::Bytes {
    let mut payload = Vec::with_capacity(1 + bytes);
    payload.push(BATCH_FORMAT);
    for p in payloads {
        payload.extend_from_slice(&(p.len() as u32).to_le_bytes());
        payload.extend_from_slice(p);
    }
    payload.into()
}

/// One message on its way, kept whole so that a retry sends the very same id.
struct Outgoing {
    subject: String,
    id: String,
    payload: bytes::Bytes,
}

/// Whether a JetStream error is `code` saying `what`: some codes cover several causes, told apart
/// only by their description.
fn says(e: &jetstream::Error, code: ErrorCode, what: &str) -> bool {
    e.error_code() == code && e.to_string().contains(what)
}

/// What a failed publish means for the append: `None` when sending it again may work.
fn verdict(e: &PublishError, addr: &str) -> Option<QueueError> {
    match e.kind() {
        // No answer, a dropped connection, or no JetStream yet (a server starting up).
        PublishErrorKind::TimedOut | PublishErrorKind::BrokenPipe | PublishErrorKind::StreamNotFound => None,
        PublishErrorKind::MaxAckPending => Some(QueueError::Full),
        _ => Some(match std::error::Error::source(e).and_then(|s| s.downcast_ref::<jetstream::Error>()) {
            // The stream's `max_bytes` (discarding new), or the server's own storage limit.
            Some(j) if says(j, ErrorCode::STREAM_STORE_FAILED, "maximum bytes") => QueueError::Full,
            Some(j) if j.error_code() == ErrorCode::STORAGE_RESOURCES_EXCEEDED => QueueError::Full,
            _ => QueueError::Storage(format!("NATS at {addr} refused a message: {e}")),
        }),
    }
}

impl Producer for NatsQueue {
    /// Not atomic: when an append fails, some of its messages may have been stored (those in
    /// another partition's batch).
    fn append(&self, messages: Vec<Message>) -> AppendFuture<'_> {
        Box::pin(async move {
            let deadline = Instant::now() + self.append_timeout;
            let n = messages.len();
            if self.shared.waiting.fetch_add(n, Ordering::Relaxed) + n > MAX_WAITING {
                self.shared.waiting.fetch_sub(n, Ordering::Relaxed);
                return Err(QueueError::Full);
            }
            let mut by_lane: Vec<Vec<Vec<u8>>> = vec![Vec::new(); self.lanes.len()];
            for m in messages {
                by_lane[(m.key % self.lanes.len() as u64) as usize].push(m.payload);
            }
            let mut answers = Vec::new();
            for (partition, payloads) in by_lane.into_iter().enumerate().filter(|(_, p)| !p.is_empty()) {
                let lane = &self.lanes[partition];
                let mut state = lane.waiting.lock().unwrap();
                for part in parts(payloads) {
                    let (done, answer) = oneshot::channel();
                    state.parts.push_back(Part {
                        bytes: part.iter().map(|p| 4 + p.len()).sum(),
                        payloads: part,
                        deadline,
                        done,
                    });
                    answers.push(answer);
                }
                if !state.flushing {
                    state.flushing = true;
                    tokio::spawn(self.shared.clone().flush(lane.clone(), subject(partition as u64)));
                }
            }
            for answer in answers {
                let outcome = timeout_at(deadline, answer).await;
                match outcome {
                    Ok(Ok(result)) => result?,
                    Ok(Err(_)) => return Err(QueueError::Closed),
                    Err(_) => {
                        return Err(QueueError::Storage(format!(
                            "NATS at {} did not acknowledge within {:?}",
                            self.shared.addr, self.append_timeout
                        )));
                    }
                }
            }
            Ok(())
        })
    }
}

/// An append's payloads for one partition, cut into pieces that each fit a batch.
fn parts(payloads: Vec<Vec<u8>>) -> Vec<Vec<Vec<u8>>> {
    let mut out: Vec<Vec<Vec<u8>>> = vec![Vec::new()];
    let mut bytes = 0;
    for p in payloads {
        let last = out.last_mut().unwrap();
        if !last.is_empty() && (last.len() == MAX_BATCH_ENTRIES || bytes + 4 + p.len() > MAX_BATCH_BYTES) {
            out.push(Vec::new());
            bytes = 0;
        }
        bytes += 4 + p.len();
        out.last_mut().unwrap().push(p);
    }
    out
}

/// Which partitions a consumer reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Partitions {
    All,
    /// Partition numbers below [`NatsConfig::partitions`].
    Only(Vec<u16>),
}

impl Partitions {
    /// The consumer's subject filter; empty for all.
    fn filter(&self, partitions: u16) -> Result<Vec<String>, QueueError> {
        let Partitions::Only(owned) = self else { return Ok(Vec::new()) };
        if owned.is_empty() {
            return Err(QueueError::Config("a NATS consumer must own at least one partition".into()));
        }
        if let Some(p) = owned.iter().find(|p| **p >= partitions) {
            return Err(QueueError::Config(format!(
                "partition {p} does not exist: there are {partitions}, numbered from 0"
            )));
        }
        let mut owned = owned.clone();
        owned.sort_unstable();
        owned.dedup();
        Ok(owned.into_iter().map(|p| subject(u64::from(p))).collect())
    }
}

/// The consumer: blocking calls for the pipeline's own thread, served by a private runtime (it
/// must not be called from inside another tokio runtime).
pub struct NatsConsumer {
    addr: String,
    client: async_nats::Client,
    eraser: Eraser,
    stream: stream::Stream,
    /// Subjects of the partitions read; empty for all.
    filter: Vec<String>,
    cursor: Option<Cursor>,
    batches: Batches,
    /// Dropped last: the connection's task runs on it.
    rt: tokio::runtime::Runtime,
}

/// An ephemeral pull consumer reading the stream in order, and how far it got.
struct Cursor {
    consumer: PullConsumer,
    /// Position of the last entry handed out (at first, the one before the start).
    returned: u64,
    /// Deliveries so far: one whose delivery number is not the next means a message was lost on
    /// the way (a reconnect), so the cursor must start again from `returned`.
    delivered: u64,
    /// Entries of batches received that `read` has not handed out yet.
    unread: VecDeque<Entry>,
}

impl Cursor {
    /// Unpacks the batch into `unread` (entries at or before `returned` are skipped: a new cursor
    /// starts at the batch holding its position); `None` after a lost delivery.
    fn accept(&mut self, msg: jetstream::Message, batches: &mut Batches) -> Option<()> {
        let info = msg.info().ok()?;
        if info.consumer_sequence != self.delivered + 1 {
            return None;
        }
        self.delivered += 1;
        let (batch, received_ms) = (info.stream_sequence, (info.published.unix_timestamp_nanos() / 1_000_000) as i64);
        let payloads = unpack(&msg.message.payload);
        batches.entry(batch).or_insert_with(|| vec![false; payloads.len()]);
        let first = batch << INDEX_BITS;
        for (seq, payload) in (first..).zip(payloads) {
            if seq > self.returned {
                self.unread.push_back(Entry { seq, received_ms, payload });
            }
        }
        Some(())
    }

    /// Up to `max` unread entries.
    fn take(&mut self, max: usize, out: &mut Vec<Entry>) {
        let n = (max - out.len()).min(self.unread.len());
        out.extend(self.unread.drain(..n));
    }
}

/// A batch's payloads. One that is not a well-formed batch comes out whole, as one payload, for
/// the pipeline to skip (and release) like any entry it cannot read.
fn unpack(batch: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    if let Some((&BATCH_FORMAT, mut rest)) = batch.split_first() {
        while let Some((len, tail)) = rest.split_first_chunk::<4>() {
            let len = u32::from_le_bytes(*len) as usize;
            if len > tail.len() || out.len() == MAX_BATCH_ENTRIES {
                break;
            }
            out.push(tail[..len].to_vec());
            rest = &tail[len..];
        }
        if rest.is_empty() && !out.is_empty() {
            return out;
        }
    }
    vec![batch.to_vec()]
}

/// Per batch read and not deleted yet, which of its entries were released.
type Batches = HashMap<u64, Vec<bool>>;

/// The cursor, made anew unless it stands at `after`.
async fn cursor_at<'a>(
    cursor: &'a mut Option<Cursor>,
    stream: &stream::Stream,
    filter: &[String],
    after: u64,
) -> Result<&'a mut Cursor, QueueError> {
    let fresh = match cursor.take() {
        Some(c) if c.returned == after => c,
        old => {
            if let Some(old) = old {
                // Best effort: an orphan leaves by itself after CONSUMER_IDLE.
                let _ = stream.delete_consumer(&old.consumer.cached_info().name).await;
            }
            let consumer = stream
                .create_consumer(pull::Config {
                    // The batch holding `after`, if any of it is left, else the first.
                    deliver_policy: DeliverPolicy::ByStartSequence { start_sequence: (after >> INDEX_BITS).max(1) },
                    ack_policy: AckPolicy::None,
                    filter_subjects: filter.to_vec(),
                    inactive_threshold: CONSUMER_IDLE,
                    memory_storage: true,
                    ..Default::default()
                })
                .await
                .map_err(|e| QueueError::Storage(format!("cannot start reading {STREAM} after {after}: {e}")))?;
            Cursor { consumer, returned: after, delivered: 0, unread: VecDeque::new() }
        }
    };
    Ok(cursor.insert(fresh))
}

impl NatsConsumer {
    /// Connects and makes sure the stream exists; reads the given partitions.
    pub fn connect(config: &NatsConfig, partitions: Partitions) -> Result<Self, QueueError> {
        let filter = partitions.filter(config.partitions)?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("nats-consumer")
            .enable_all()
            .build()
            .map_err(|e| QueueError::Storage(format!("cannot start the NATS consumer's runtime: {e}")))?;
        let Link { addr, client, stream, .. } = rt.block_on(link(config, "plumb-pipeline"))?;
        let eraser = Eraser::start(&rt, stream.clone(), addr.clone());
        Ok(Self { addr, client, eraser, stream, filter, cursor: None, batches: Batches::new(), rt })
    }

    /// Released entries not deleted yet.
    pub fn pending_releases(&self) -> u64 {
        self.eraser.pending.load(Ordering::Relaxed)
    }

    fn down(&self) -> Option<QueueError> {
        (self.client.connection_state() != State::Connected)
            .then(|| QueueError::Storage(format!("not connected to NATS at {}", self.addr)))
    }

    fn request_failed(&self, what: &str) -> QueueError {
        QueueError::Storage(format!("NATS at {} did not answer {what} within {REQUEST_TIMEOUT:?}", self.addr))
    }
}

impl Consumer for NatsConsumer {
    fn read(&mut self, after: u64, max: usize) -> Result<Vec<Entry>, QueueError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        if let Some(e) = self.down() {
            return Err(e);
        }
        let Self { rt, stream, filter, cursor, batches, .. } = self;
        // The timer must be made inside the runtime.
        let read = rt.block_on(async {
            timeout(REQUEST_TIMEOUT, async {
                let c = cursor_at(cursor, stream, filter, after).await?;
                let mut out = Vec::new();
                c.take(max, &mut out);
                let mut whole = true;
                while whole && out.len() < max {
                    // No wait: the server sends what it has now, then says there is no more.
                    let asked = (max - out.len()).min(FETCH_BATCHES);
                    let mut fetched = c
                        .consumer
                        .fetch()
                        .max_messages(asked)
                        .messages()
                        .await
                        .map_err(|e| QueueError::Storage(format!("cannot read {STREAM} after {after}: {e}")))?;
                    let mut got = 0;
                    while let Some(msg) = fetched.next().await {
                        let msg =
                            msg.map_err(|e| QueueError::Storage(format!("cannot read {STREAM} after {after}: {e}")))?;
                        if c.accept(msg, batches).is_none() {
                            whole = false;
                            break;
                        }
                        got += 1;
                    }
                    c.take(max, &mut out);
                    if got < asked {
                        break;
                    }
                }
                c.returned = out.last().map_or(c.returned, |e| e.seq);
                Ok::<_, QueueError>((out, whole))
            })
            .await
        });
        match read {
            Ok(Ok((out, true))) => Ok(out),
            // What came before a lost delivery is good; the next read starts again after it.
            Ok(Ok((out, false))) => {
                self.cursor = None;
                Ok(out)
            }
            Ok(Err(e)) => {
                self.cursor = None;
                Err(e)
            }
            Err(_) => {
                self.cursor = None;
                Err(self.request_failed("a read"))
            }
        }
    }

    /// Holds a pull request for one batch open on the server until `timeout`; the batch, if one
    /// comes, is kept for the next `read`.
    fn wait(&mut self, after: u64, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let down = self.down().is_some();
        let Self { rt, stream, filter, cursor, batches, .. } = self;
        let looked = if down {
            Err(())
        } else {
            rt.block_on(async {
                let waited = timeout_at(deadline, async {
                    let c = cursor_at(cursor, stream, filter, after).await.map_err(drop)?;
                    let left = deadline.saturating_duration_since(Instant::now());
                    if !c.unread.is_empty() || left <= EXPIRY_MARGIN {
                        return Ok(true);
                    }
                    // The server's expiry should end the request before the local deadline does:
                    // a request given up here stays open there, and a message delivered to it
                    // is lost (then found again, at the cost of a new cursor).
                    let expires = left - EXPIRY_MARGIN;
                    let mut batch =
                        c.consumer.batch().max_messages(1).expires(expires).messages().await.map_err(drop)?;
                    match batch.next().await {
                        Some(Ok(msg)) => Ok(c.accept(msg, batches).is_some()),
                        Some(Err(_)) => Err(()),
                        // Expired: nothing came.
                        None => Ok(true),
                    }
                })
                .await;
                // Timing out locally is the same as the server's expiry.
                waited.unwrap_or(Ok(true))
            })
        };
        match looked {
            Ok(true) => {}
            // A lost delivery: the next read starts again, at once.
            Ok(false) => self.cursor = None,
            Err(()) => {
                self.cursor = None;
                // Down or failing: wait out the time rather than spin.
                std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
            }
        }
    }

    /// Entries already in the stream keep their numbers, so this can only renumber an empty
    /// stream: one whose batches are all numbered below `seq`'s is purged to start at the batch
    /// after it. A stream holding batches at or below `seq`'s (recreated and written to before
    /// the pipeline started) is an error, as their entries could pass for processed.
    fn resume_after(&mut self, seq: u64) -> Result<(), QueueError> {
        let stream = &self.stream;
        let state = self
            .rt
            .block_on(async { timeout(REQUEST_TIMEOUT, stream.get_info()).await })
            .map_err(|_| self.request_failed("stream info"))?
            .map_err(|e| QueueError::Storage(format!("cannot read {STREAM}'s state at {}: {e}", self.addr)))?
            .state;
        // The next batch's entries are numbered from (last_sequence + 1) << INDEX_BITS on.
        let batch = seq >> INDEX_BITS;
        if state.last_sequence >= batch {
            return Ok(());
        }
        if state.messages > 0 {
            return Err(QueueError::Storage(format!(
                "{STREAM} holds {} batches numbered up to {}, at or below the event store's committed position \
                 {seq} (batch {batch}): the stream was recreated and written to before the pipeline started, and \
                 these entries would pass for processed; purge the stream, or move the position, to go on",
                state.messages, state.last_sequence
            )));
        }
        let purged = self
            .rt
            .block_on(async { timeout(REQUEST_TIMEOUT, stream.purge().sequence(batch + 1)).await })
            .map_err(|_| self.request_failed("a purge"))?
            .map_err(|e| QueueError::Storage(format!("cannot renumber {STREAM} from batch {}: {e}", batch + 1)))?
            .purged;
        // Appended between the look and the purge: acknowledged, and now gone.
        if purged > 0 {
            return Err(QueueError::Storage(format!(
                "renumbering {STREAM} from batch {} removed {purged} batches appended meanwhile",
                batch + 1
            )));
        }
        Ok(())
    }

    /// Marks the entries released; a batch all of whose entries are released goes to the eraser
    /// (see [`Eraser`]), and this returns at once. Entries of batches this consumer has not read
    /// are left alone.
    fn release(&mut self, seqs: &[u64]) -> Result<(), QueueError> {
        let mut done = Vec::new();
        for &seq in seqs {
            let (batch, index) = (seq >> INDEX_BITS, (seq & ((1 << INDEX_BITS) - 1)) as usize);
            let Some(released) = self.batches.get_mut(&batch) else { continue };
            if let Some(r) = released.get_mut(index) {
                *r = true;
            }
            if released.iter().all(|r| *r) {
                self.batches.remove(&batch);
                done.push(batch);
            }
        }
        if !done.is_empty() {
            self.eraser.pending.fetch_add(done.len() as u64, Ordering::Relaxed);
            self.eraser.send.send(done).map_err(|_| QueueError::Closed)?;
        }
        Ok(())
    }
}

/// Deletes released entries in the background, on the consumer's runtime, overwriting their bytes
/// on the server (no `no_erase`), as the spool's `secure_delete` does. Erasing in place costs the
/// server a rewrite each: about 430 a second here (no-erase deletes: about 2,300), fewer than
/// collectors append, so the pipeline must not wait for it. Deletes that fail are tried again;
/// those a crash cuts short are released again after the replay.
struct Eraser {
    /// Stream sequences of batches to delete.
    send: mpsc::UnboundedSender<Vec<u64>>,
    /// Batches handed over, not deleted yet.
    pending: Arc<AtomicU64>,
}

/// The most entries taken on at once.
const ERASE_BATCH: usize = 4096;
/// The pause before trying failed deletes again.
const ERASE_RETRY: Duration = Duration::from_secs(1);

impl Eraser {
    fn start(rt: &tokio::runtime::Runtime, stream: stream::Stream, addr: String) -> Eraser {
        let (send, mut receive) = mpsc::unbounded_channel::<Vec<u64>>();
        let pending = Arc::new(AtomicU64::new(0));
        let left = pending.clone();
        rt.spawn(async move {
            let mut batches = Vec::new();
            while receive.recv_many(&mut batches, ERASE_BATCH).await > 0 {
                let mut seqs: Vec<u64> = batches.drain(..).flatten().collect();
                while !seqs.is_empty() {
                    let (done, failed, why) = erase(&stream, seqs).await;
                    left.fetch_sub(done, Ordering::Relaxed);
                    seqs = failed;
                    if let Some(why) = why {
                        tracing::warn!("NATS at {addr}: {} released entries not deleted yet ({why})", seqs.len());
                        sleep(ERASE_RETRY).await;
                    }
                }
            }
        });
        Eraser { send, pending }
    }
}

/// Deletes the entries; returns how many are gone (deleted now or before), those that are not,
/// and why.
async fn erase(stream: &stream::Stream, seqs: Vec<u64>) -> (u64, Vec<u64>, Option<String>) {
    let outcomes: Vec<(u64, Result<(), String>)> = futures_util::stream::iter(seqs)
        .map(|seq| async move {
            let outcome = match timeout(REQUEST_TIMEOUT, stream.delete_message(seq)).await {
                Ok(Ok(_)) => Ok(()),
                // Deleted before (released twice, or before a restart).
                Ok(Err(e))
                    if matches!(e.kind(), DeleteMessageErrorKind::JetStream(j)
                        if says(&j, ErrorCode::STREAM_MESSAGE_DELETE_FAILED, "no message found")) =>
                {
                    Ok(())
                }
                Ok(Err(e)) => Err(format!("cannot delete entry {seq}: {e}")),
                Err(_) => Err(format!("deleting entry {seq} took over {REQUEST_TIMEOUT:?}")),
            };
            (seq, outcome)
        })
        .buffer_unordered(RELEASE_CONCURRENCY)
        .collect()
        .await;
    let (mut done, mut failed, mut why) = (0, Vec::new(), None);
    for (seq, outcome) in outcomes {
        match outcome {
            Ok(()) => done += 1,
            Err(e) => {
                failed.push(seq);
                why = Some(e);
            }
        }
    }
    (done, failed, why)
}

/// The subject live hits travel on, from workers to every process serving the realtime view.
pub const LIVE_SUBJECT: &str = "plumb.live";

/// Live hits between processes over NATS core: published and heard at once, stored nowhere (no
/// stream), lost when nobody listens, which is right for a five-minute view. Runs on a private
/// runtime, so it can be used from any thread.
pub struct LiveFeed {
    client: async_nats::Client,
    /// The connection's task runs on it; shut down without waiting when the feed is dropped,
    /// which may happen inside another runtime (the last holder may be an async task).
    rt: Option<tokio::runtime::Runtime>,
}

impl Drop for LiveFeed {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

impl LiveFeed {
    pub fn connect(url: &str) -> Result<Self, QueueError> {
        let addr = server_addr(url)?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("nats-live")
            .enable_all()
            .build()
            .map_err(|e| QueueError::Storage(format!("cannot start the live feed's runtime: {e}")))?;
        let client = rt
            .block_on(
                async_nats::ConnectOptions::new()
                    .name("plumb-live")
                    .connection_timeout(CONNECT_TIMEOUT)
                    .reconnect_delay_callback(|n| Duration::from_millis(1 << n.min(16)).min(MAX_RECONNECT_DELAY))
                    .connect(format!("nats://{addr}")),
            )
            .map_err(|e| QueueError::Storage(format!("cannot connect to NATS at {addr}: {e}")))?;
        Ok(Self { client, rt: Some(rt) })
    }

    fn rt(&self) -> &tokio::runtime::Runtime {
        self.rt.as_ref().expect("the runtime lives until the feed is dropped")
    }

    /// Sends without waiting; a message that cannot be sent now is dropped.
    pub fn publish(&self, payload: Vec<u8>) {
        let client = self.client.clone();
        self.rt().spawn(async move {
            let _ = client.publish(LIVE_SUBJECT, payload.into()).await;
        });
    }

    /// Calls `heard` with every message published from now on, for as long as the feed lives.
    pub fn subscribe(&self, heard: impl Fn(&[u8]) + Send + 'static) -> Result<(), QueueError> {
        let mut subscription = self
            .rt()
            .block_on(self.client.subscribe(LIVE_SUBJECT))
            .map_err(|e| QueueError::Storage(format!("cannot listen to {LIVE_SUBJECT}: {e}")))?;
        self.rt().spawn(async move {
            while let Some(msg) = subscription.next().await {
                heard(&msg.payload);
            }
        });
        Ok(())
    }
}
