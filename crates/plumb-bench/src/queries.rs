//! Query benchmark: fills a fresh DuckDB store with N synthetic pageview rows for one site
//! (log-uniform pages, sources and locations, weekly seasonality, 90 days), then times the
//! dashboard's query set through the query engine, unfiltered and with two filters, and prints
//! bytes per stored row. With `--clickhouse`, the same rows on ClickHouse (Debian's 18.16, a
//! server of its own) and the same query set, after DuckDB's.

use plumb_core::row::RowKind;
use plumb_core::{Counters, Row, VisitInfo};
use plumb_query::SumsBackend;
use plumb_query::{Attr, Column, DayRange, Dimension, Filter, Metric, Op, Query, TimeBucket};
use plumb_store::testing::ClickHouseServer;
use plumb_store::{ClickHouseStore, DuckStore, EventWriter};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// 0..n, heavily skewed to small values (log-uniform), like page and source popularity.
    fn skewed(&mut self, n: usize) -> usize {
        ((n as f64).powf(self.unit()) as usize).saturating_sub(1).min(n - 1)
    }
}

const DAYS: i32 = 90;
const FIRST_DAY: i32 = 19_800;

fn visit(rng: &mut Rng) -> Arc<VisitInfo> {
    const SOURCES: [&str; 8] = ["", "Google", "Twitter", "Bing", "DuckDuckGo", "Reddit", "news.example.org", "GitHub"];
    const COUNTRIES: [&str; 8] = ["US", "DE", "GB", "FR", "IN", "BR", "JP", "NL"];
    const BROWSERS: [&str; 5] = ["Chrome", "Safari", "Firefox", "Edge", "Samsung Internet"];
    const OS: [&str; 5] = ["Windows", "iOS", "Android", "Mac", "GNU/Linux"];
    let s = rng.skewed(SOURCES.len() + 200);
    let source = SOURCES.get(s).map(|s| s.to_string()).unwrap_or_else(|| format!("site{s}.example"));
    Arc::new(VisitInfo {
        channel: match source.as_str() {
            "" => "Direct",
            "Google" | "Bing" | "DuckDuckGo" => "Organic Search",
            "Twitter" | "Reddit" => "Organic Social",
            _ => "Referral",
        }
        .into(),
        referrer: source.clone(),
        source,
        utm_campaign: if rng.unit() < 0.1 { format!("campaign-{}", rng.skewed(30)) } else { String::new() },
        country: COUNTRIES[rng.skewed(COUNTRIES.len())].into(),
        city: format!("City {}", rng.skewed(500)),
        device: ["Desktop", "Mobile", "Tablet"][rng.skewed(3)].into(),
        browser: BROWSERS[rng.skewed(BROWSERS.len())].into(),
        browser_version: format!("{}", 100 + rng.skewed(30)),
        os: OS[rng.skewed(OS.len())].into(),
        os_version: format!("{}", 10 + rng.skewed(8)),
        ..Default::default()
    })
}

fn fill(store: &mut dyn EventWriter, rows: usize, first_day: i32) {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut batch = Vec::with_capacity(100_000);
    let mut written = 0;
    let mut session: Option<(Arc<VisitInfo>, String, u32)> = None;
    // Weekly seasonality: weekdays busier than weekends.
    let weights: Vec<f64> = (0..DAYS).map(|d| if (d + 4) % 7 >= 5 { 0.6 } else { 1.0 }).collect();
    let total: f64 = weights.iter().sum();
    let mut day = 0;
    let mut left_today = (rows as f64 * weights[0] / total) as usize;
    while written < rows {
        if left_today == 0 && day + 1 < DAYS {
            day += 1;
            left_today = (rows as f64 * weights[day as usize] / total) as usize;
        }
        left_today = left_today.saturating_sub(1);
        let page = format!("/docs/{}", rng.skewed(2_000));
        let new_session = session.as_ref().is_none_or(|(_, _, n)| *n > rng.skewed(6) as u32);
        if new_session {
            session = Some((visit(&mut rng), page.clone(), 0));
        }
        let (v, entry, n) = session.as_mut().unwrap();
        *n += 1;
        let first = *n == 1;
        batch.push(Row {
            site_id: 1,
            day: first_day + day,
            hour: (rng.skewed(24) as u8 + 8) % 24,
            kind: RowKind::Pageview,
            name: String::new(),
            hostname: "bench.test".into(),
            pathname: page,
            entry_page: entry.clone(),
            visit: v.clone(),
            props: vec![],
            revenue: None,
            counters: Counters {
                pageviews: 1,
                events: 1,
                visitors: (first && rng.unit() < 0.8) as i8,
                visits: first as i8,
                bounces: if first {
                    1
                } else if *n == 2 {
                    -1
                } else {
                    0
                },
                exits: 1,
                exit_visitors: 1,
                page_visitors: (rng.unit() < 0.9) as i8,
                page_visits: 1,
                hour_visitors: first as i8,
                attr_first: if first { 0x1ff } else { 0 },
                duration_ms: if first { 0 } else { rng.skewed(300_000) as i64 },
                ..Default::default()
            },
        });
        written += 1;
        if batch.len() == 100_000 || written == rows {
            // Positions 1, 2, …: a server opening the store later numbers its queue's entries after
            // the last (`Consumer::resume_after`).
            store.commit(&batch, written.div_ceil(100_000) as u64).expect("commit");
            batch.clear();
        }
    }
}

fn dashboard(last_days: i32, filter: Option<Filter>) -> Vec<(&'static str, Query)> {
    let range = DayRange { from: FIRST_DAY + DAYS - last_days, to: FIRST_DAY + DAYS - 1 };
    let base = |dims: Vec<Dimension>, metrics: Vec<Metric>| Query {
        site_id: 1,
        metrics,
        range,
        dimensions: dims,
        filter: filter.clone(),
        order_by: vec![],
        limit: 10,
        offset: 0,
        comparison: None,
        hours: None,
        total_rows: false,
        goals: vec![],
        imports: vec![],
    };
    let top = Query {
        comparison: Some(DayRange { from: range.from - last_days, to: range.from - 1 }),
        ..base(
            vec![],
            vec![
                Metric::Visitors,
                Metric::Visits,
                Metric::Pageviews,
                Metric::ViewsPerVisit,
                Metric::BounceRate,
                Metric::VisitDuration,
            ],
        )
    };
    let col = |c| vec![Dimension::Column(c)];
    vec![
        ("top stats + comparison", top),
        (
            "timeseries by day",
            Query { limit: 10_000, ..base(vec![Dimension::Time(TimeBucket::Day)], vec![Metric::Visitors]) },
        ),
        ("sources", base(col(Column::Attr(Attr::Source)), vec![Metric::Visitors])),
        ("pages", base(col(Column::Attr(Attr::Pathname)), vec![Metric::Visitors])),
        ("entry pages", base(col(Column::Attr(Attr::EntryPage)), vec![Metric::Visitors])),
        ("countries", base(col(Column::Attr(Attr::Country)), vec![Metric::Visitors])),
        ("devices", base(col(Column::Attr(Attr::Device)), vec![Metric::Visitors])),
        ("browsers", base(col(Column::Attr(Attr::Browser)), vec![Metric::Visitors])),
    ]
}

pub fn run(rows: usize, clickhouse: bool) {
    let dir = std::env::temp_dir().join(format!("plumb-bench-queries-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("events.duckdb");
    let mut store = DuckStore::open(&path).expect("open store");
    let t = Instant::now();
    fill(&mut store, rows, FIRST_DAY);
    // The rows still in the write-ahead log are written into the file, compressed: part of the
    // fill's time and size.
    store.checkpoint().expect("checkpoint");
    let fill_secs = t.elapsed().as_secs_f64();
    let bytes: u64 = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().metadata().unwrap().len()).sum();
    let reader = store.reader(std::time::Duration::from_secs(600)).expect("reader");
    drop(store);
    println!(
        "DuckDB: {rows} rows over {DAYS} days written in {fill_secs:.1} s ({:.0} rows/s); store {:.1} MB = {:.1} bytes/row",
        rows as f64 / fill_secs,
        bytes as f64 / 1e6,
        bytes as f64 / rows as f64
    );
    time_dashboard(&reader);
    drop(reader);
    let _ = std::fs::remove_dir_all(&dir);
    if !clickhouse {
        return;
    }
    // Alive long enough for a hundred million rows.
    let server = ClickHouseServer::start_for("bench", std::time::Duration::from_secs(4 * 3600));
    let mut store = ClickHouseStore::open(&server.url("plumb")).expect("open ClickHouse");
    let t = Instant::now();
    fill(&mut store, rows, FIRST_DAY);
    let fill_secs = t.elapsed().as_secs_f64();
    let bytes: f64 = server
        .query("SELECT sum(bytes_on_disk) FROM system.parts WHERE database = 'plumb' AND active")
        .trim()
        .parse()
        .unwrap_or(f64::NAN);
    println!(
        "ClickHouse {}: {rows} rows written in {fill_secs:.1} s ({:.0} rows/s, commits of 100,000 with their rollups); {:.1} MB = {:.1} bytes/row",
        server.query("SELECT version()").trim(),
        rows as f64 / fill_secs,
        bytes / 1e6,
        bytes / rows as f64
    );
    time_dashboard(&store.reader(std::time::Duration::from_secs(600)));
}

/// The dashboard's query set, unfiltered and with two filters, over 30 and 90 days: one warm-up
/// pass, then the median of three.
fn time_dashboard(reader: &impl SumsBackend) {
    let two_filters = Filter::And(vec![
        Filter::Condition {
            op: Op::Is,
            column: Column::Attr(Attr::Source),
            values: vec!["Google".into()],
            case_sensitive: true,
        },
        Filter::Condition {
            op: Op::Is,
            column: Column::Attr(Attr::Device),
            values: vec!["Mobile".into()],
            case_sensitive: true,
        },
    ]);
    for (label, filter) in [("unfiltered", None), ("source=Google & device=Mobile", Some(two_filters))] {
        for days in [30, 90] {
            let set = dashboard(days, filter.clone());
            let mut totals = Vec::new();
            let mut per: Vec<Vec<f64>> = vec![Vec::new(); set.len()];
            for pass in 0..4 {
                let mut total = 0.0;
                for (i, (_, q)) in set.iter().enumerate() {
                    let t = Instant::now();
                    plumb_query::run(reader, q).expect("query");
                    let ms = t.elapsed().as_secs_f64() * 1000.0;
                    total += ms;
                    if pass > 0 {
                        per[i].push(ms);
                    }
                }
                if pass > 0 {
                    totals.push(total);
                }
            }
            totals.sort_by(f64::total_cmp);
            let detail: Vec<String> = set
                .iter()
                .zip(per.iter_mut())
                .map(|((name, _), ms)| {
                    ms.sort_by(f64::total_cmp);
                    format!("{name} {:.0}", ms[1])
                })
                .collect();
            println!(
                "  {label}, last {days} days: whole set {:.0} ms (median of 3) — {}",
                totals[1],
                detail.join(", ")
            );
        }
    }
}

/// A data directory `plumb serve` can open: site `bench.test` (site 1, UTC) with `rows` pageviews
/// over the 90 days up to today, and a user to sign in with. For measuring the dashboard in a
/// browser (`tests/browser/dashboard-perf.mjs`).
pub fn dashboard_data(dir: &Path, rows: usize) {
    use plumb_meta::{Accounts, MetaStore};
    std::fs::create_dir_all(dir).expect("create the data directory");
    let meta = plumb_meta::SqliteMeta::open(&dir.join("meta.db")).expect("open metadata");
    let site = meta.add_site("bench.test", "UTC").expect("add site bench.test (is the directory fresh?)");
    assert_eq!(site.id, 1, "the generated rows belong to site 1");
    meta.add_user("bench@example.com", "bench password", plumb_meta::NewUser::OwnerIfNone).expect("add user");
    let today = (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() / 86_400) as i32;
    let mut store = DuckStore::open(&dir.join("events.duckdb")).expect("open store");
    let t = Instant::now();
    fill(&mut store, rows, today - DAYS + 1);
    println!(
        "{rows} pageviews for bench.test in {} ({:.0} s); sign in as bench@example.com / bench password",
        dir.display(),
        t.elapsed().as_secs_f64()
    );
}
