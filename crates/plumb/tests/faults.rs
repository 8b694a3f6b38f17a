//! Faults under load on the distributed deployment: two `plumb collect` and one `plumb work`
//! meeting on NATS JetStream (a server of the test's own, syncing every write), the metadata on a
//! PostgreSQL server of the test's own, the event store the worker's DuckDB file or a ClickHouse
//! server of the test's own. Senders spread unique pageviews over both collectors as a
//! load balancer would; midway one part fails for a second (ClickHouse: a minute). No event is refused, and afterwards
//! every event that got a `202` is counted exactly once, and nothing is counted twice.

mod common;

use common::*;
use plumb_meta::testing::PgServer;
use plumb_queue::testing::NatsServer;
use plumb_store::testing::ClickHouseServer;
use serde_json::json;
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::task::block_in_place;

const SITE: &str = "fault.test";
const SENDERS: usize = 8;
/// Load before the fault, and after the failed part is back.
const BEFORE: Duration = Duration::from_millis(2500);
const AFTER: Duration = Duration::from_millis(2500);
/// How long the failed part stays down.
const DOWN: Duration = Duration::from_secs(1);
/// How long ClickHouse stays down: a minute, the worker holding off and the collectors going on.
const CLICKHOUSE_DOWN: Duration = Duration::from_secs(60);

enum Fault {
    /// The NATS server is killed (SIGKILL) and started again on its store.
    NatsRestart,
    /// A collector is killed (SIGKILL) and started again.
    CollectorKill,
    /// The worker is killed (SIGKILL); a new worker process takes over its partitions (with the
    /// embedded event store, one worker owns them all) and its store.
    WorkerTakeover,
    /// PostgreSQL stops as a crash would and starts again, recovering.
    PostgresRestart,
    /// ClickHouse (the event store) is killed (SIGKILL) and started again a minute later.
    ClickHouseRestart,
}

struct Cluster {
    nats: NatsServer,
    pg: PgServer,
    /// The event store, when not the worker's DuckDB file.
    clickhouse: Option<ClickHouseServer>,
    args: Vec<String>,
    worker_dir: std::path::PathBuf,
    collectors: Vec<Server>,
    worker: Server,
}

impl Cluster {
    fn start(name: &str, on_clickhouse: bool) -> (Cluster, String) {
        let (nats, pg) = (NatsServer::start(name), PgServer::start(name));
        let clickhouse = on_clickhouse.then(|| ClickHouseServer::start(name));
        let mut args = vec!["--queue".to_string(), nats.url(), "--meta".into(), pg.url()];
        if let Some(ch) = &clickhouse {
            args.extend(["--store".into(), ch.url("plumb")]);
        }
        let worker_dir = temp_dir(&format!("{name}-work"));
        let key = sites_and_key(&worker_dir, &args, &[(SITE, "UTC")]);
        let collectors = (0..2)
            .map(|i| Server::start_role(&temp_dir(&format!("{name}-collect-{i}")), "collect", &refs(&args)))
            .collect();
        let worker = Server::start_role(&worker_dir, "work", &refs(&args));
        (Cluster { nats, pg, clickhouse, args, worker_dir, collectors, worker }, key)
    }

    fn break_and_mend(&mut self, fault: &Fault) {
        match fault {
            Fault::NatsRestart => {
                self.nats.kill();
                std::thread::sleep(DOWN);
                self.nats.run();
            }
            Fault::CollectorKill => {
                self.collectors[0].kill9();
                std::thread::sleep(DOWN);
                self.collectors[0].restart();
            }
            Fault::WorkerTakeover => {
                self.worker.kill9();
                std::thread::sleep(DOWN);
                self.worker = Server::start_role(&self.worker_dir, "work", &refs(&self.args));
            }
            Fault::PostgresRestart => {
                self.pg.crash();
                std::thread::sleep(DOWN);
                self.pg.run();
            }
            Fault::ClickHouseRestart => {
                let ch = self.clickhouse.as_mut().expect("a cluster on ClickHouse");
                ch.kill();
                std::thread::sleep(CLICKHOUSE_DOWN);
                ch.run();
            }
        }
    }

    /// The stored rows summed per page: (path, pageviews, visitors).
    fn stored_pages(&self) -> Vec<(String, i64, i64)> {
        let Some(ch) = &self.clickhouse else { return stored_pages(&self.worker_dir) };
        let answer = ch.query(
            "SELECT pathname, sum(pageviews), sum(visitors) FROM plumb.events WHERE site_id != 0 GROUP BY pathname \
             FORMAT TabSeparated",
        );
        answer
            .lines()
            .map(|l| {
                let f: Vec<&str> = l.split('\t').collect();
                (f[0].to_owned(), f[1].parse().unwrap(), f[2].parse().unwrap())
            })
            .collect()
    }
}

/// What the senders saw.
#[derive(Default)]
struct Sent {
    acked: HashSet<String>,
    refused: usize,
    unanswered: usize,
}

/// One cluster at a time: four at once would share two cores and measure nothing.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn under_load(name: &str, fault: Fault, on_clickhouse: bool) {
    let _alone = ONE_AT_A_TIME.lock().await;
    let (mut cluster, key) = block_in_place(|| Cluster::start(name, on_clickhouse));
    let collectors: Arc<Vec<String>> = Arc::new(cluster.collectors.iter().map(|c| c.url.clone()).collect());
    let stop = Arc::new(AtomicBool::new(false));
    let sending = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for sender in 0..SENDERS {
        let (collectors, stop, sending) = (collectors.clone(), stop.clone(), sending.clone());
        tasks.push(tokio::spawn(async move {
            let c = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
            let mut sent = Sent::default();
            let mut at = sender;
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let path = format!("/e/{sender}/{n}");
                n += 1;
                sending.fetch_add(1, Ordering::Relaxed);
                let r = c
                    .post(format!("{}/api/event", collectors[at % collectors.len()]))
                    .header("user-agent", format!("FaultTest/{sender}-{n}"))
                    .body(json!({"n": "pageview", "u": format!("https://{SITE}{path}"), "d": SITE}).to_string())
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status() == 202 => {
                        sent.acked.insert(path);
                    }
                    // Not queued, and said so: the sender may try again later.
                    Ok(r) if r.status() == 503 => sent.refused += 1,
                    Ok(r) => panic!("unexpected status {} for {path}", r.status()),
                    // No answer (a killed collector): it may or may not have been queued. A load
                    // balancer sends the next request elsewhere.
                    Err(_) => {
                        sent.unanswered += 1;
                        at += 1;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
            sent
        }));
    }
    tokio::time::sleep(BEFORE).await;
    let broke = Instant::now();
    block_in_place(|| cluster.break_and_mend(&fault));
    let mended = broke.elapsed();
    tokio::time::sleep(AFTER).await;
    stop.store(true, Ordering::Relaxed);
    let mut sent = Sent::default();
    for t in tasks {
        let s = t.await.unwrap();
        sent.acked.extend(s.acked);
        sent.refused += s.refused;
        sent.unanswered += s.unanswered;
    }
    let acked = sent.acked.len() as i64;
    assert!(acked > 1000, "load was real: {acked} acknowledged events");
    // None of these faults lasts longer than a collector holds an append (5 s), and with the
    // metadata store down the collectors answer from their caches: nothing is turned away.
    assert_eq!(sent.refused, 0, "events refused with 503");

    let c = client();
    let worker = cluster.worker.url.clone();
    let settled = eventually(Duration::from_secs(60), || async {
        aggregate(&c, &worker, &key, SITE, &["pageviews"], json!("day")).await[0].as_i64().unwrap() >= acked
    })
    .await;
    assert!(settled, "acknowledged events missing after the fault");
    block_in_place(|| cluster.worker.stop());

    // The stored rows themselves: one pageview and one visitor per acknowledged page, none twice.
    let rows = cluster.stored_pages();
    for (path, pageviews, visitors) in &rows {
        assert_eq!((*pageviews, *visitors), (1, 1), "{path} counted {pageviews} times, {visitors} visitors");
    }
    let stored: HashSet<&str> = rows.iter().map(|(p, _, _)| p.as_str()).collect();
    let missing: Vec<_> = sent.acked.iter().filter(|p| !stored.contains(p.as_str())).collect();
    assert!(missing.is_empty(), "{} acknowledged events lost, e.g. {:?}", missing.len(), missing.first());
    println!(
        "{name}: {} sent, {acked} acknowledged, {} refused (503), {} unanswered, {} stored; down and back in {mended:?}",
        sending.load(Ordering::Relaxed),
        sent.refused,
        sent.unanswered,
        rows.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_restarted_mid_load_loses_and_doubles_nothing() {
    under_load("fault-nats", Fault::NatsRestart, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_killed_mid_load_loses_and_doubles_nothing() {
    under_load("fault-collector", Fault::CollectorKill, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_load_is_taken_over_and_nothing_is_lost_or_doubled() {
    under_load("fault-worker", Fault::WorkerTakeover, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresql_restarted_mid_load_loses_and_doubles_nothing() {
    under_load("fault-postgres", Fault::PostgresRestart, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_load_writing_clickhouse_is_taken_over_and_nothing_is_lost_or_doubled() {
    under_load("fault-worker-ch", Fault::WorkerTakeover, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clickhouse_killed_mid_load_loses_and_doubles_nothing() {
    under_load("fault-clickhouse", Fault::ClickHouseRestart, true).await;
}
