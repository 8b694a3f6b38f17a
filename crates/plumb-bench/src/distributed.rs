//! Distributed benchmark (`--nats`): durable events/s of `plumb collect` on the SQLite spool, on
//! NATS JetStream (one collector, then two sharing the load), next to a do-nothing server in the
//! same run. The NATS server is the tests' (nats-server 2.15 syncing every write, on a free port
//! with a temporary store); the metadata is on a database of its own on the machine's PostgreSQL.
//! No worker runs during the loads, so their events pile up in the stream; then `plumb work`
//! starts, and the time it takes to drain that backlog gives its rate. Last, `202` → visible
//! through a collector, NATS and the worker. With `--clickhouse`, the worker writes to a ClickHouse
//! 18.16 of the tests' own instead of its DuckDB file.

use crate::{
    LIFTED, LoadResult, POLLING, Proc, do_nothing, drain, fresh_data_dir, fresh_data_dir_with, load, load_spread,
    start, visibility,
};
use plumb_meta::testing::TestDb;
use plumb_queue::testing::NatsServer;
use plumb_store::testing::ClickHouseServer;
use std::path::Path;
use std::time::Instant;

pub fn run(plumb: &Path, seconds: u64, connections: usize, clickhouse: bool) {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let base = do_nothing(&rt, seconds, connections);

    // The collector on the SQLite spool, as `plumb collect` runs by default.
    let (dir, _) = fresh_data_dir(plumb, "spool");
    let (collector, port) = start(plumb, &dir, "collect", &LIFTED);
    let spool = rt.block_on(load(port, collector.0.id(), seconds, connections, 202));
    drop(collector);
    let _ = std::fs::remove_dir_all(&dir);

    // On NATS and PostgreSQL.
    let (nats, db) = (NatsServer::start("bench"), TestDb::create());
    let (nats_url, db_url) = (nats.url(), db.url());
    let store = clickhouse.then(|| ClickHouseServer::start("bench-drain"));
    let store_url = store.as_ref().map(|s| s.url("plumb"));
    let mut global = vec!["--queue", nats_url.as_str(), "--meta", db_url.as_str()];
    global.extend(store_url.iter().flat_map(|u| ["--store", u.as_str()]));
    let (dir, key) = fresh_data_dir_with(plumb, "nats-work", &global);
    let with_lifted = [&global[..], &LIFTED[..]].concat();
    let collectors: Vec<(Proc, u16)> = (0..2)
        .map(|i| {
            let own = std::env::temp_dir().join(format!("plumb-bench-{}-nats-collect-{i}", std::process::id()));
            start(plumb, &own, "collect", &with_lifted)
        })
        .collect();
    let down_since = Instant::now();
    let one = rt.block_on(load(collectors[0].1, collectors[0].0.0.id(), seconds, connections, 202));
    let servers: Vec<(u16, u32)> = collectors.iter().map(|(p, port)| (*port, p.0.id())).collect();
    let two = rt.block_on(load_spread(&servers, seconds, connections, 202));
    let backlog = (one.ok + two.ok) as i64;
    let down = down_since.elapsed();

    let (worker, work_port) = start(plumb, &dir, "work", &[&global[..], &POLLING[..]].concat());
    let started = Instant::now();
    rt.block_on(drain(work_port, &key, backlog, "plumb work, started after the loads,"));
    let drained = started.elapsed().as_secs_f64();
    rt.block_on(visibility(collectors[0].1, work_port, &key, backlog + 1));
    drop((worker, collectors));
    let _ = std::fs::remove_dir_all(&dir);

    println!(
        "distributed benchmark: {seconds} s per load, {connections} keep-alive connections, loopback, 2 cores shared by \
         the load generator, the collectors, NATS and PostgreSQL"
    );
    LoadResult::header();
    base.print("do-nothing axum");
    spool.print("plumb collect, SQLite spool");
    one.print("plumb collect, NATS");
    two.print("2 × plumb collect, NATS");
    for (name, r) in [("spool", &spool), ("one on NATS", &one), ("two on NATS", &two)] {
        println!("{name} / do-nothing: {:.0}%", 100.0 * r.rate() / base.rate());
    }
    println!(
        "backlog: worker down {:.0} s while {backlog} events were queued; drained into {} in {drained:.1} s ({:.0} \
         events/s, startup included)",
        down.as_secs_f64(),
        if clickhouse { "ClickHouse 18.16" } else { "DuckDB" },
        backlog as f64 / drained
    );
}
