//! The ClickHouse backend against a real server (Debian's clickhouse-server 18.16, started by the
//! test on free ports): the same rows give DuckDB's answers, commits are exactly-once across a
//! reopen, a deleted site's rows go, and a newer schema is refused; the same on a cluster of four
//! servers; a DuckDB snapshot copied in (`plumb migrate`).

use plumb_core::row::{RowKind, RowProp};
use plumb_core::{Counters, Revenue, Row, VisitInfo};
use plumb_query::imported::{ImportedQuery, ImportedRow, Key, MEASURES};
use plumb_query::{Attr, Column, Counter, DayRange, Filter, GroupSums, Op, Sum, SumsBackend, SumsQuery};
use plumb_store::testing::ClickHouseServer;
use plumb_store::{ClickHouseStore, DuckStore, EventWriter};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn row(i: usize) -> Row {
    let sources = ["", "Google", "Twitter", "Ünïcode Søurce"];
    let kind = if i % 4 == 3 { RowKind::Custom } else { RowKind::Pageview };
    let n = (i % 2) as i8;
    Row {
        site_id: 1 + i.is_multiple_of(7) as u32,
        day: 100 + (i % 3) as i32,
        hour: (i % 24) as u8,
        kind,
        name: if kind == RowKind::Custom { "Signup".into() } else { String::new() },
        hostname: "r.test".into(),
        pathname: format!("/p{}{}", i % 5, if i.is_multiple_of(11) { "/it's\ta \\ path" } else { "" }),
        entry_page: "/".into(),
        visit: Arc::new(VisitInfo {
            source: sources[i % 4].into(),
            device: "Mobile".into(),
            country: if i.is_multiple_of(3) { "DE".into() } else { String::new() },
            ..Default::default()
        }),
        props: if kind == RowKind::Custom {
            vec![RowProp { key: "plan".into(), value: ["free", "pro"][i % 2].into(), first_of_day: i % 8 == 3 }]
        } else {
            vec![]
        },
        revenue: (kind == RowKind::Custom && i % 2 == 1)
            .then(|| Revenue { amount_micros: 1_500_000 * i as i64, currency: "EUR".into() }),
        counters: Counters {
            pageviews: (kind == RowKind::Pageview) as i8,
            events: 1,
            visitors: n,
            visits: n,
            bounces: n,
            exits: 1,
            page_visitors: 1,
            name_visitors: (kind == RowKind::Custom) as i8,
            attr_first: if n == 1 { 0x1ff } else { 0 },
            duration_ms: 1000 * i as i64,
            engaged_ms: 7,
            last_hour_visitors: [1, 0, -1][i % 3],
            funnel_visitors: i.is_multiple_of(5) as i8,
            ..Default::default()
        },
    }
}

/// An empty directory of this test's own.
fn fresh_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Imported rows of two imports over three days and two breakdowns (a value with a tab and a quote
/// among them).
fn imported_rows() -> Vec<ImportedRow> {
    (0..40)
        .map(|i| ImportedRow {
            site_id: 1 + i as u32 % 2,
            // Before the days of the live rows (100-102), but a few on one of theirs: both stores
            // leave those to the live rows.
            day: if i % 7 == 0 { 101 } else { 90 + i % 3 },
            dim: [0, 1][i as usize / 2 % 2],
            value: ["", "/a", "/b\t'c"][i as usize % 3].to_owned(),
            measures: [i as i64, 2 * i as i64, 3, 4, 5000, 6],
        })
        .collect()
}

/// The imported reads a dashboard makes: totals, by day, by value.
fn imported_queries() -> Vec<ImportedQuery> {
    let mut out = Vec::new();
    for dim in [0, 1] {
        for group_by in [vec![], vec![Key::Day], vec![Key::Value], vec![Key::Value, Key::Day]] {
            out.push(ImportedQuery {
                site_id: 1,
                range: DayRange { from: 90, to: 101 },
                import_ids: vec![3, 4],
                dim,
                group_by,
                measures: MEASURES.to_vec(),
            });
        }
    }
    out
}

fn put_imports(store: &mut dyn EventWriter) {
    let rows = imported_rows();
    store.put_import(3, &mut rows[..20].iter().cloned().map(Ok)).unwrap();
    store.put_import(4, &mut rows[20..].iter().cloned().map(Ok)).unwrap();
}

fn sorted(mut g: Vec<GroupSums>) -> Vec<GroupSums> {
    g.sort_by(|a, b| a.keys.cmp(&b.keys));
    g
}

/// A query of site 1's days 100 and 101.
fn site_days(group_by: &[Column], filter: &Option<Filter>, prop_key: Option<&str>, sums: Vec<Sum>) -> SumsQuery {
    SumsQuery {
        site_id: 1,
        range: DayRange { from: 100, to: 101 },
        group_by: group_by.to_vec(),
        filter: filter.clone(),
        kinds: vec![],
        prop_key: prop_key.map(Into::into),
        sums,
    }
}

fn queries() -> Vec<SumsQuery> {
    let bit = Column::Attr(Attr::Source).first_session_bit().unwrap();
    let condition = |op, column, value: &str, case_sensitive| Filter::Condition {
        op,
        column,
        values: vec![value.into()],
        case_sensitive,
    };
    let filters = [
        None,
        Some(condition(Op::Contains, Column::Attr(Attr::Source), "OOG", false)),
        Some(condition(Op::Is, Column::Attr(Attr::Source), "ünïcode søurce", false)),
        Some(Filter::Not(Box::new(condition(Op::Matches, Column::Attr(Attr::Pathname), "^/p[12]$", true)))),
        Some(Filter::Or(vec![
            condition(Op::IsNot, Column::Attr(Attr::Country), "DE", true),
            condition(Op::Is, Column::Prop("plan".into()), "pro", true),
        ])),
        Some(Filter::And(vec![])),
        Some(Filter::Or(vec![])),
        // `24h`: from day 100 at 10:00 through day 101 at 09:59.
        Some(Filter::Hours { from: (100, 10), to: (101, 9) }),
    ];
    let groupings = [
        vec![],
        vec![Column::Attr(Attr::Source)],
        vec![Column::Attr(Attr::Pathname), Column::Day],
        vec![Column::EventName, Column::Hour],
        vec![Column::Prop("plan".into())],
        vec![Column::Attr(Attr::Country)],
    ];
    let mut out = Vec::new();
    for filter in &filters {
        for group_by in &groupings {
            let sums = vec![
                Sum::Counter(Counter::Visitors),
                Sum::Counter(Counter::Pageviews),
                Sum::Counter(Counter::DurationMs),
                Sum::FirstSessionVisitors(bit),
                Sum::NameVisitors,
                Sum::GoalVisitors,
                Sum::PropVisitors,
                Sum::RevenueMicros(plumb_query::Currency::parse("EUR").unwrap()),
                Sum::RevenueEvents(plumb_query::Currency::parse("EUR").unwrap()),
                Sum::WindowVisitors(100),
                Sum::Counter(Counter::FunnelVisitors),
            ];
            out.push(site_days(group_by, filter, Some("plan"), sums));
        }
    }
    out.push(SumsQuery { kinds: vec![RowKind::Custom as u8], ..out[1].clone() });
    out
}

/// Queries a rollup answers (`plumb_query::rollup::route`): the dashboard's panels, unfiltered
/// and filtered by visit attributes; a few mixed in that need raw rows.
fn rollup_queries() -> Vec<SumsQuery> {
    let bit = Column::Attr(Attr::Source).first_session_bit().unwrap();
    let device = |value: &str| Filter::Condition {
        op: Op::Is,
        column: Column::Attr(Attr::Device),
        values: vec![value.into()],
        case_sensitive: true,
    };
    let filters = [None, Some(device("Mobile")), Some(Filter::Not(Box::new(device("Desktop"))))];
    let groupings = [
        vec![],
        vec![Column::Day],
        vec![Column::Attr(Attr::Source)],
        vec![Column::Attr(Attr::Source), Column::Day],
        vec![Column::Attr(Attr::Pathname)],
        vec![Column::Attr(Attr::Country), Column::Attr(Attr::Device)],
    ];
    let mut out = Vec::new();
    for filter in &filters {
        for group_by in &groupings {
            let sums = [Counter::Visitors, Counter::Visits, Counter::Pageviews, Counter::Bounces, Counter::DurationMs];
            let mut sums: Vec<Sum> = sums.into_iter().map(Sum::Counter).collect();
            if group_by.first() == Some(&Column::Attr(Attr::Source)) {
                sums.push(Sum::FirstSessionVisitors(bit));
            }
            out.push(site_days(group_by, filter, None, sums));
        }
    }
    let routed = out.iter().filter(|q| plumb_query::rollup::route(q).is_some()).count();
    assert!(routed >= 12, "{routed} of the queries are answered by a rollup");
    out
}

/// Every query of [`queries`] and [`rollup_queries`] gets the same answer from both.
fn assert_same_answers(ours: &dyn SumsBackend, theirs: &dyn SumsBackend, context: &str) {
    let mut nonempty = 0;
    for q in queries().into_iter().chain(rollup_queries()) {
        let want = sorted(ours.sums(&q).unwrap());
        nonempty += want.iter().any(|g| g.sums.iter().any(|s| *s != 0)) as usize;
        assert_eq!(sorted(theirs.sums(&q).unwrap()), want, "{context}: {:?} {:?}", q.group_by, q.filter);
    }
    assert!(nonempty > 40, "the queries find something: {nonempty}");
}

#[test]
fn clickhouse_answers_what_duckdb_answers() {
    let server = ClickHouseServer::start("answers");
    let rows: Vec<Row> = (0..300).map(row).collect();
    let mut ch = ClickHouseStore::open(&server.url("plumb")).unwrap();
    ch.commit(&rows[..150], 1).unwrap();
    ch.commit(&rows[150..], 2).unwrap();
    let dir = fresh_dir("plumb-ch-vs-duck");
    let mut duck = DuckStore::open(&dir.join("events.duckdb")).unwrap();
    duck.commit(&rows, 2).unwrap();
    let (ch_reader, duck_reader) = (ch.reader(Duration::from_secs(10)), duck.reader(Duration::from_secs(10)).unwrap());
    assert_same_answers(&duck_reader, &ch_reader, "ClickHouse against DuckDB");
    put_imports(&mut ch);
    put_imports(&mut duck);
    for q in imported_queries() {
        let theirs = sorted(duck_reader.imported(&q).unwrap());
        assert!(!theirs.is_empty());
        assert_eq!(sorted(ch_reader.imported(&q).unwrap()), theirs, "{q:?}");
    }
    // Removed (a mutation, done in the background): the other import stays.
    ch.remove_import(3).unwrap();
    let q = imported_queries()[2].clone();
    let deadline = Instant::now() + Duration::from_secs(20);
    let want = sorted(duck_reader.imported(&ImportedQuery { import_ids: vec![4], ..q.clone() }).unwrap());
    while sorted(ch_reader.imported(&q).unwrap()) != want {
        assert!(Instant::now() < deadline, "import 3 is still there");
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A commit whose rollup insert fails after its rows were stored (a crash between the inserts,
/// made here by taking a rollup table away): retried, or after a restart, the missing rollup rows
/// are summed from the stored rows, once.
#[test]
fn rollup_rows_lost_between_inserts_are_made_again_from_the_rows_once() {
    let server = ClickHouseServer::start("rollup-faults");
    let url = server.url("plumb");
    let rows: Vec<Row> = (0..600).map(row).collect();
    let mut store = ClickHouseStore::open(&url).unwrap();
    store.commit(&rows[..100], 1).unwrap();
    let hide = |hidden: bool| {
        let (from, to) = if hidden { ("rollup_visits", "hidden") } else { ("hidden", "rollup_visits") };
        server.query(&format!("RENAME TABLE plumb.{from} TO plumb.{to}"));
    };
    // Retried by the pipeline: the same batch again.
    hide(true);
    let failed = store.commit(&rows[100..200], 2).unwrap_err().to_string();
    assert!(failed.contains("rollup_visits"), "{failed}");
    hide(false);
    store.commit(&rows[100..200], 2).unwrap();
    // Twice in a row, then the writer stops: the next start makes both commits' rollup rows.
    hide(true);
    assert!(store.commit(&rows[200..300], 3).is_err());
    hide(false);
    assert!(store.commit(&rows[300..400], 4).is_ok(), "a later commit first makes the missing rows");
    hide(true);
    assert!(store.commit(&rows[400..500], 5).is_err());
    hide(false);
    drop(store);
    let mut store = ClickHouseStore::open(&url).unwrap();
    assert_eq!(store.position().unwrap(), 5);
    store.commit(&rows[500..], 6).unwrap();
    // And a writer whose rollups are up to date makes nothing again.
    drop(store);
    let store = ClickHouseStore::open(&url).unwrap();

    let dir = fresh_dir("plumb-ch-rollup-faults");
    let mut duck = DuckStore::open(&dir.join("events.duckdb")).unwrap();
    duck.commit(&rows, 6).unwrap();
    let duck_reader = duck.reader(Duration::from_secs(10)).unwrap();
    assert_same_answers(&duck_reader, &store.reader(Duration::from_secs(10)), "after the faults");
    // Each table holds one marker per commit: none was written twice.
    for table in ["events", "rollup_days", "rollup_visits"] {
        let markers = server.query(&format!("SELECT count() FROM plumb.{table} WHERE site_id = 0"));
        assert_eq!(markers.trim(), "6", "{table}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn commits_are_exactly_once_across_a_reopen_and_markers_count_nothing() {
    let server = ClickHouseServer::start("commits");
    let url = server.url("plumb");
    let mut store = ClickHouseStore::open(&url).unwrap();
    assert_eq!(store.position().unwrap(), 0);
    store.commit(&[row(1), row(2)], 10).unwrap();
    // An empty batch still moves the position (entries that made no rows).
    store.commit(&[], 12).unwrap();
    drop(store);
    let mut store = ClickHouseStore::open(&url).unwrap();
    assert_eq!(store.position().unwrap(), 12);
    // A commit not after the position is a caller's mistake, not a commit stored already.
    let behind = store.commit(&[row(3)], 12).unwrap_err().to_string();
    assert!(behind.contains("positions increase"), "{behind}");
    let q = SumsQuery {
        site_id: 1,
        range: DayRange { from: 0, to: 1000 },
        group_by: vec![Column::Attr(Attr::Source)],
        filter: None,
        kinds: vec![],
        prop_key: None,
        sums: vec![Sum::Counter(Counter::Events)],
    };
    let got = store.reader(Duration::from_secs(10)).sums(&q).unwrap();
    let events: i64 = got.iter().map(|g| g.sums[0]).sum();
    assert_eq!(events, 2, "{got:?}");

    // Days before a site's retention go, rows and rollups (ClickHouse deletes in the background).
    store.commit(&[row(1), row(2)].map(|r| Row { day: 50, ..r }), 13).unwrap();
    assert_eq!(store.delete_before(1, 100).unwrap(), 2);
    let old_days = SumsQuery { range: DayRange { from: 0, to: 99 }, ..q.clone() };
    let deadline = Instant::now() + Duration::from_secs(20);
    // The sums may come from a rollup whose mutation ended first: wait for the rows too.
    let old_rows = || server.query("SELECT count() FROM plumb.events WHERE site_id = 1 AND day < 100");
    while !store.reader(Duration::from_secs(10)).sums(&old_days).unwrap().is_empty() || old_rows().trim() != "0" {
        assert!(Instant::now() < deadline, "site 1's older days are still there");
        std::thread::sleep(Duration::from_millis(100));
    }
    let got = store.reader(Duration::from_secs(10)).sums(&q).unwrap();
    assert_eq!(got.iter().map(|g| g.sums[0]).sum::<i64>(), 2, "later days stay: {got:?}");
    // A deleted site's rows go.
    assert_eq!(store.delete_site(1).unwrap(), 2);
    let reader = store.reader(Duration::from_secs(10));
    let deadline = Instant::now() + Duration::from_secs(20);
    while !reader.sums(&q).unwrap().is_empty() {
        assert!(Instant::now() < deadline, "site 1's rows are still there");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(store.position().unwrap(), 13, "the position is kept");
}

#[test]
fn a_database_from_a_newer_plumb_is_refused() {
    let server = ClickHouseServer::start("newer");
    let url = server.url("plumb");
    drop(ClickHouseStore::open(&url).unwrap());
    let newer = plumb_core::schema::version() + 1;
    let port = url.trim_start_matches("clickhouse://127.0.0.1:").trim_end_matches("/plumb").to_owned();
    let insert = format!("INSERT INTO plumb.plumb_schema VALUES ({newer})");
    let status = std::process::Command::new("curl")
        .args(["-sf", &format!("http://127.0.0.1:{port}/"), "--data-binary", &insert])
        .status()
        .unwrap();
    assert!(status.success());
    let Err(e) = ClickHouseStore::open(&url) else { panic!("a newer schema was accepted") };
    assert!(e.to_string().contains(&format!("schema version {newer}, newer than this Plumb knows")), "{e}");
}

/// The virtualenv with PyPI's `chdb` (a current ClickHouse, in-process), as `.ci/run` makes it.
fn chdb_python() -> std::path::PathBuf {
    std::env::var_os("PLUMB_CHDB_PYTHON").map(Into::into).unwrap_or_else(|| {
        std::path::PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/plumb-chdb/bin/python")
    })
}

#[test]
fn every_statement_runs_and_answers_alike_on_a_current_clickhouse() {
    let python = chdb_python();
    assert!(
        python.exists(),
        "{} is missing: python3 -m venv ~/.cache/plumb-chdb && ~/.cache/plumb-chdb/bin/pip install chdb (.ci/run does)",
        python.display()
    );
    let server = ClickHouseServer::start("replay");
    let rows: Vec<Row> = (0..300).map(row).collect();
    let ((), statements) = plumb_store::testing::recording(|| {
        let mut store = ClickHouseStore::open(&server.url("plumb")).unwrap();
        store.commit(&rows[..150], 1).unwrap();
        store.commit(&rows[150..], 2).unwrap();
        let reader = store.reader(Duration::from_secs(10));
        for q in queries().into_iter().chain(rollup_queries()) {
            reader.sums(&q).unwrap();
        }
        put_imports(&mut store);
        for q in imported_queries() {
            reader.imported(&q).unwrap();
        }
        store.remove_import(3).unwrap();
        assert_eq!(store.delete_site(2).unwrap(), rows.iter().filter(|r| r.site_id == 2).count() as u64);
    });
    let selects = statements.iter().filter(|s| s.sql.starts_with("SELECT")).count();
    assert!(selects > queries().len(), "{selects} queries recorded");
    let dir = fresh_dir("plumb-chdb-replay");
    // Answers are compared for reads; what writes answer (nothing) is not.
    let json: Vec<serde_json::Value> = statements
        .iter()
        .map(|s| {
            let answer = s.sql.starts_with("SELECT").then_some(s.answer.as_str());
            serde_json::json!({"sql": s.sql, "answer": answer})
        })
        .collect();
    let file = dir.join("statements.json");
    std::fs::write(&file, serde_json::to_vec(&json).unwrap()).unwrap();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/chdb_replay.py");
    let out = std::process::Command::new(&python).arg(script).arg(&file).arg(dir.join("chdb")).output().unwrap();
    let report = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    println!("{report}");
    assert!(out.status.success(), "{report}");
    assert!(report.contains(&format!("replayed {} statements, {selects} answers equal", statements.len())), "{report}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `plumb migrate`'s part here: a snapshot of a DuckDB store, copied into ClickHouse a chunk at a
/// time, stopped after two chunks and run again, holds every row once and answers as the
/// snapshot does; a row more on one side is found.
#[test]
fn a_snapshot_copied_in_chunks_across_a_stop_holds_every_row_once() {
    use plumb_store::copy::{copy_rows, differences};
    let server = ClickHouseServer::start("copy");
    let url = server.url("plumb");
    let dir = fresh_dir("plumb-ch-copy");
    let rows: Vec<Row> = (0..1050).map(row).collect();
    let mut duck = DuckStore::open(&dir.join("events.duckdb")).unwrap();
    duck.commit(&rows[..500], 40).unwrap();
    duck.commit(&rows[500..], 77).unwrap();
    assert_eq!(duck.snapshot(&dir.join("snapshot.duckdb")).unwrap(), 77);
    // Written after the snapshot: not in it.
    duck.commit(&rows[..10], 80).unwrap();
    let snapshot = plumb_store::DuckSnapshot::open(&dir.join("snapshot.duckdb")).unwrap();
    assert_eq!((snapshot.position().unwrap(), snapshot.rows("events").unwrap()), (77, 1050));
    let rollup_rows = snapshot.rows("rollup_days").unwrap() + snapshot.rows("rollup_visits").unwrap();
    let total = 1050 + rollup_rows;

    let mut seen = Vec::new();
    let stopped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        copy_rows(&snapshot, &url, 200, |done, total| {
            seen.push((done, total));
            assert!(done < 400, "stopped after two chunks");
        })
    }));
    assert!(stopped.is_err());
    assert_eq!(seen, [(0, total), (200, total), (400, total)]);
    let mut again = Vec::new();
    assert_eq!(copy_rows(&snapshot, &url, 200, |done, _| again.push(done)).unwrap(), 1050);
    assert_eq!(again[..5], [400, 600, 800, 1000, 1050], "the second run goes on after the two chunks stored");
    assert_eq!(again.last(), Some(&total), "then the rollups: {again:?}");
    assert_eq!(copy_rows(&snapshot, &url, 200, |_, _| ()).unwrap(), 1050, "a third run stores nothing");

    let ours = snapshot.reader(Duration::from_secs(10)).unwrap();
    // Workers may not start while the migration has not handed the queue over; readers may.
    let early = ClickHouseStore::open_as(&url, "partitions 0-7").err().map(|e| e.to_string()).unwrap_or_default();
    assert!(early.contains("has not handed its queue over yet"), "{early}");
    let theirs = plumb_store::ClickHouseReader::open(&url, Duration::from_secs(10)).unwrap();
    let days = DayRange { from: 90, to: 110 };
    for site in [1, 2] {
        assert_eq!(differences(&ours, &theirs, site, days, 5).unwrap(), Vec::<String>::new(), "site {site}");
    }
    assert_same_answers(&ours, &theirs, "the copy against its snapshot");
    let stored: i64 = server.query("SELECT count() FROM plumb.events WHERE site_id > 0").trim().parse().unwrap();
    assert_eq!(stored, 1050);

    // A row the snapshot lacks, committed by a worker after the hand-over, is found by every
    // grouping it shows in.
    let mut handover = ClickHouseStore::open_exact(&url, plumb_store::HANDOVER_WRITER).unwrap();
    handover.commit_tsv("events", &handover.rows("events", 100)).unwrap();
    let mut worker = ClickHouseStore::open_as(&url, "partitions 0-7").unwrap();
    assert_eq!(worker.position().unwrap(), 100);
    worker.commit(&[row(1)], 101).unwrap();
    let found = differences(&ours, &theirs, 1, days, 100).unwrap();
    assert!(found.len() > 5 && found[0].contains("site 1"), "{found:?}");
    // Another snapshot's rows do not go into the same database.
    let refused = copy_rows(&snapshot, &url, 300, |_, _| ()).unwrap_err().to_string();
    assert!(refused.contains("rows copied from another snapshot"), "{refused}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Two shards of two replicas each (four 18.16 servers and a ZooKeeper): rows go to the shard of
/// the server a writer is connected to, in a replicated table behind a Distributed one. Every
/// server answers what DuckDB answers over all the rows; a writer moved to its shard's other
/// replica finds its position there; a deleted site goes from every shard and replica.
#[test]
fn a_sharded_replicated_cluster_answers_what_duckdb_answers() {
    use plumb_store::testing::ClickHouseCluster;
    let cluster = ClickHouseCluster::start("cluster", 2, 2);
    let rows: Vec<Row> = (0..300).map(row).collect();
    // The first statements on a cluster have failed now and then (no answer at all): with the
    // servers' logs, the next failure says why.
    let open = |shard, partitions| {
        ClickHouseStore::open_as(&cluster.url(shard, 0, "plumb"), partitions)
            .unwrap_or_else(|e| panic!("{e}\nthe servers' error logs:\n{}", cluster.logs()))
    };
    let mut first = open(0, "partitions 0-7");
    let mut second = open(1, "partitions 8-15");
    first.commit(&rows[..100], 5).unwrap();
    second.commit(&rows[100..200], 7).unwrap();
    first.commit(&rows[200..], 9).unwrap();
    let dir = fresh_dir("plumb-ch-cluster");
    let mut duck = DuckStore::open(&dir.join("events.duckdb")).unwrap();
    duck.commit(&rows, 9).unwrap();
    let duck_reader = duck.reader(Duration::from_secs(10)).unwrap();

    // Each shard holds its writer's rows and markers, on both replicas once they have caught up.
    let local =
        |s: usize, r: usize| cluster.server(s, r).query("SELECT count() FROM plumb.events_local").trim().to_owned();
    let deadline = Instant::now() + Duration::from_secs(30);
    while [local(0, 0), local(0, 1), local(1, 0), local(1, 1)] != ["202", "202", "101", "101"] {
        assert!(Instant::now() < deadline, "replicas did not catch up: {:?}", [local(0, 1), local(1, 1)]);
        std::thread::sleep(Duration::from_millis(100));
    }
    for shard in 0..2 {
        for replica in 0..2 {
            let reader =
                ClickHouseStore::open(&cluster.url(shard, replica, "plumb")).unwrap().reader(Duration::from_secs(10));
            assert_same_answers(&duck_reader, &reader, &format!("shard {shard} replica {replica}"));
        }
    }

    // The first writer, moved to its shard's other replica, goes on from its position.
    drop(first);
    let mut moved = ClickHouseStore::open_as(&cluster.url(0, 1, "plumb"), "partitions 0-7").unwrap();
    assert_eq!(moved.position().unwrap(), 9);

    // Site 2 (rows on both shards) goes everywhere.
    assert!(second.delete_site(2).unwrap() > 0);
    let site2 = |s: usize, r: usize| {
        let tables = ["events_local", "rollup_days_local", "rollup_visits_local"];
        let counts =
            tables.map(|t| cluster.server(s, r).query(&format!("SELECT count() FROM plumb.{t} WHERE site_id = 2")));
        counts.iter().map(|c| c.trim()).collect::<Vec<_>>().join(" ")
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while [site2(0, 0), site2(0, 1), site2(1, 0), site2(1, 1)] != ["0 0 0"; 4] {
        assert!(Instant::now() < deadline, "site 2 is still stored somewhere");
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = std::fs::remove_dir_all(&dir);
}
