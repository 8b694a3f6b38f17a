//! `plumb import`: a Fathom Lite database (SQLite, MariaDB, PostgreSQL) built from its schema
//! imports to exactly its totals per site, page and referrer, with bounce rate and duration
//! weighted as Fathom Lite weighs them; old snippets keep counting; runs replace each other and
//! can be removed; Plausible's CSV export goes out and comes back to the same answers; a source
//! that cannot be read stops the import with its place named and leaves nothing counted.

mod common;

use common::*;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// Fathom Lite's tables after its last migration, in each database's types.
fn fathom_schema(dialect: &str) -> String {
    let (id, float, flag, time, text) = match dialect {
        "sqlite" => ("INTEGER PRIMARY KEY AUTOINCREMENT", "FLOAT", "TINYINT(1)", "DATETIME", "VARCHAR(255)"),
        "mysql" => ("INTEGER AUTO_INCREMENT PRIMARY KEY", "FLOAT", "TINYINT(1)", "DATETIME", "VARCHAR(255)"),
        _ => ("SERIAL PRIMARY KEY", "FLOAT", "BOOLEAN", "TIMESTAMP WITHOUT TIME ZONE", "VARCHAR(255)"),
    };
    let stats = |extra: &str| {
        format!(
            "site_id INTEGER NOT NULL DEFAULT 1, {extra} pageviews INTEGER NOT NULL, visitors INTEGER NOT NULL, \
             bounce_rate {float} NOT NULL, known_durations INTEGER NOT NULL DEFAULT 0, avg_duration {float} NOT NULL, \
             ts {time} NOT NULL"
        )
    };
    format!(
        "CREATE TABLE sites (id {id}, tracking_id VARCHAR(8) UNIQUE, name VARCHAR(100) NOT NULL);
         CREATE TABLE hostnames (id {id}, name {text} NOT NULL);
         CREATE TABLE pathnames (id {id}, name {text} NOT NULL);
         CREATE TABLE site_stats ({}, sessions INTEGER NOT NULL);
         CREATE TABLE page_stats ({}, entries INTEGER NOT NULL);
         CREATE TABLE referrer_stats ({});
         CREATE TABLE pageviews (id VARCHAR(31) NOT NULL, site_tracking_id VARCHAR(8) NOT NULL, hostname {text} NOT NULL,
             pathname {text} NOT NULL, is_new_visitor {flag} NOT NULL, is_new_session {flag} NOT NULL,
             is_unique {flag} NOT NULL, is_bounce {flag} NULL, is_finished {flag} NOT NULL DEFAULT {f},
             referrer {text} NULL, duration INTEGER NULL, timestamp {time} NOT NULL);",
        stats(""),
        stats("hostname_id INTEGER NOT NULL, pathname_id INTEGER NOT NULL,"),
        stats("hostname_id INTEGER NOT NULL, pathname_id INTEGER NOT NULL, groupname VARCHAR(255) NULL,"),
        f = if dialect == "postgres" { "FALSE" } else { "0" },
    )
}

/// What a site's numbers must come to: totals, and per page and referrer.
#[derive(Default, Debug)]
struct Expected {
    visitors: i64,
    visits: i64,
    pageviews: i64,
    /// Σ bounce_rate × sessions, Σ avg_duration × known_durations (seconds).
    bounces: f64,
    duration: f64,
    /// path → (visitors, pageviews)
    pages: BTreeMap<String, (i64, i64)>,
    /// referrer as Plumb keeps it → visitors
    referrers: BTreeMap<String, i64>,
}

const HOSTS: [&str; 5] = [
    "https://example.com",
    "https://shop.test",
    "https://www.google.com",
    "https://news.ycombinator.com",
    "https://orphan.test",
];
const PATHS: [&str; 5] = ["/", "/about", "/pricing?plan=pro", "", "/item"];

/// The Fathom Lite data as SQL inserts, and what each Plumb site must show. Site 1 (ABCDE) is
/// example.com, site 2 (FGHIJ) shop.test with raw pageviews not summed yet, and stats of a site 3
/// no site row names are orphan.test's; site 1 also has a day's row from before hourly stats.
fn fathom_data(dialect: &str) -> (String, BTreeMap<&'static str, Expected>) {
    let b = |v: bool| if dialect == "postgres" { v.to_string().to_uppercase() } else { i32::from(v).to_string() };
    let mut sql = String::from(
        "INSERT INTO sites (tracking_id, name) VALUES ('ABCDE', 'My blog');
         INSERT INTO sites (tracking_id, name) VALUES ('FGHIJ', 'The shop');\n",
    );
    for (table, names) in [("hostnames", HOSTS), ("pathnames", PATHS)] {
        for n in names {
            sql.push_str(&format!("INSERT INTO {table} (name) VALUES ('{n}');\n"));
        }
    }
    let mut expected: BTreeMap<&'static str, Expected> = BTreeMap::new();
    let sites: [(i64, &str, i64, &[i64]); 3] =
        [(1, "example.com", 1, &[1, 2, 3]), (2, "shop.test", 2, &[1, 3]), (3, "orphan.test", 5, &[1])];
    for (site, domain, host, pages) in sites {
        let e = expected.entry(domain).or_default();
        for day in 0..3i64 {
            for hour in [0i64, 9, 17] {
                let ts = format!("2024-03-0{} {hour:02}:00:00", day + 1);
                let (visitors, sessions, pageviews) = (3 + day + hour % 5 + site, 4, 10 + hour);
                let bounce_rate = ((day + hour) % 5).min(4) as f64 / 4.0;
                let (avg, known) = (12.5 * (1 + hour % 3) as f64, 2 + day);
                sql.push_str(&format!(
                    "INSERT INTO site_stats (site_id, pageviews, visitors, sessions, bounce_rate, known_durations, avg_duration, ts) \
                     VALUES ({site}, {pageviews}, {visitors}, {sessions}, {bounce_rate}, {known}, {avg}, '{ts}');\n"
                ));
                e.visitors += visitors;
                e.visits += sessions;
                e.pageviews += pageviews;
                e.bounces += bounce_rate * sessions as f64;
                e.duration += avg * known as f64;
                for &path in pages {
                    let (visitors, pageviews) = (2 + day, 5 + hour % 4 + path);
                    sql.push_str(&format!(
                        "INSERT INTO page_stats (site_id, hostname_id, pathname_id, pageviews, visitors, entries, bounce_rate, \
                         known_durations, avg_duration, ts) VALUES ({site}, {host}, {path}, {pageviews}, {visitors}, 2, {}, 1, 10.0, '{ts}');\n",
                        ((day + hour) % 3) as f64 / 2.0
                    ));
                    let p = e.pages.entry(PATHS[path as usize - 1].to_owned()).or_default();
                    p.0 += visitors;
                    p.1 += pageviews;
                }
                for (referrer_host, referrer_path, name) in [(3, 4, "google.com"), (4, 5, "news.ycombinator.com/item")]
                {
                    let visitors = 1 + day;
                    sql.push_str(&format!(
                        "INSERT INTO referrer_stats (site_id, hostname_id, pathname_id, groupname, pageviews, visitors, \
                         bounce_rate, known_durations, avg_duration, ts) \
                         VALUES ({site}, {referrer_host}, {referrer_path}, '', 2, {visitors}, 0.5, 1, 20.0, '{ts}');\n"
                    ));
                    *e.referrers.entry(name.to_owned()).or_default() += visitors;
                }
            }
        }
    }
    // A whole day from before hourly stats (Fathom Lite 1.2 put them at midnight).
    sql.push_str(
        "INSERT INTO site_stats (site_id, pageviews, visitors, sessions, bounce_rate, known_durations, avg_duration, ts) \
         VALUES (1, 40, 20, 25, 0.4, 10, 30.0, '2024-02-28 00:00:00');\n",
    );
    let e = expected.get_mut("example.com").unwrap();
    (e.visitors, e.visits, e.pageviews, e.bounces, e.duration) =
        (e.visitors + 20, e.visits + 25, e.pageviews + 40, e.bounces + 10.0, e.duration + 300.0);
    // Raw pageviews of shop.test not summed yet: a new visitor's bounced session, and a session
    // of two pages from Bing lasting 40 s; one of a tracking id no site has.
    let raw = [
        ("FGHIJ", "/", true, true, true, Some(true), "", 0),
        ("FGHIJ", "/pricing?plan=pro", true, true, true, Some(false), "https://www.bing.com/search?q=x", 40),
        ("FGHIJ", "/", false, false, false, None, "", 0),
        ("ZZZZZ", "/", true, true, true, Some(true), "", 0),
    ];
    for (i, (sid, path, nv, ns, unique, bounce, referrer, duration)) in raw.into_iter().enumerate() {
        let bounce = bounce.map_or("NULL".to_owned(), b);
        sql.push_str(&format!(
            "INSERT INTO pageviews (id, site_tracking_id, hostname, pathname, is_new_visitor, is_new_session, is_unique, \
             is_bounce, is_finished, referrer, duration, timestamp) VALUES ('pv{i}', '{sid}', 'https://shop.test', '{path}', \
             {}, {}, {}, {bounce}, {}, '{referrer}', {duration}, '2024-03-03 13:0{i}:00');\n",
            b(nv),
            b(ns),
            b(unique),
            b(false),
        ));
    }
    let e = expected.get_mut("shop.test").unwrap();
    (e.visitors, e.visits, e.pageviews, e.bounces, e.duration) =
        (e.visitors + 2, e.visits + 2, e.pageviews + 3, e.bounces + 1.0, e.duration + 40.0);
    let page = e.pages.entry("/".to_owned()).or_default();
    (page.0, page.1) = (page.0 + 1, page.1 + 2);
    let page = e.pages.entry("/pricing?plan=pro".to_owned()).or_default();
    (page.0, page.1) = (page.0 + 1, page.1 + 1);
    e.referrers.insert("bing.com/search".to_owned(), 1);
    (sql, expected)
}

/// A Fathom Lite database of `dialect` with the data; returns its source for `plumb import` and
/// what must be kept alive while it is used.
fn fathom_db(dialect: &str, dir: &Path) -> (String, Box<dyn std::any::Any>, BTreeMap<&'static str, Expected>) {
    let (data, expected) = fathom_data(dialect);
    let schema = fathom_schema(dialect);
    match dialect {
        "sqlite" => {
            let path = dir.join("fathom.db");
            let db = rusqlite::Connection::open(&path).unwrap();
            db.execute_batch(&schema).unwrap();
            db.execute_batch(&format!("BEGIN; {data} COMMIT;")).unwrap();
            (path.display().to_string(), Box::new(()), expected)
        }
        _ => {
            // A database of the test's own, made and dropped with each server's own client.
            let name = format!("plumb_fathom_{}", std::process::id());
            let run = |db: &str, sql: &str| {
                let mut cmd = if dialect == "mysql" {
                    let mut c = Command::new("mariadb");
                    c.args(["-uroot", "-h127.0.0.1", "-P3306"]).args((!db.is_empty()).then_some(db)).arg("-e").arg(sql);
                    c
                } else {
                    let mut c = Command::new("psql");
                    c.args(["-h", "127.0.0.1", "-U", "postgres", "-v", "ON_ERROR_STOP=1", "-q"]);
                    c.args(["-d", if db.is_empty() { "postgres" } else { db }]).arg("-c").arg(sql);
                    c
                };
                let out = cmd.output().expect("the database's client runs");
                assert!(out.status.success(), "{dialect}: {}", String::from_utf8_lossy(&out.stderr));
            };
            let force = if dialect == "mysql" { "" } else { " WITH (FORCE)" };
            run("", &format!("DROP DATABASE IF EXISTS {name}{force}"));
            run("", &format!("CREATE DATABASE {name}"));
            run(&name, &format!("{schema} {data}"));
            struct Dropped(Box<dyn Fn()>);
            impl Drop for Dropped {
                fn drop(&mut self) {
                    (self.0)()
                }
            }
            let (drop_name, mysql) = (name.clone(), dialect == "mysql");
            let guard = Dropped(Box::new(move || {
                let sql = format!("DROP DATABASE IF EXISTS {drop_name}{}", if mysql { "" } else { " WITH (FORCE)" });
                let _ = if mysql {
                    Command::new("mariadb").args(["-uroot", "-h127.0.0.1", "-e", &sql]).output()
                } else {
                    Command::new("psql")
                        .args(["-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-c", &sql])
                        .output()
                };
            }));
            let url = if mysql {
                format!("mysql://root@127.0.0.1:3306/{name}")
            } else {
                format!("postgres://postgres@127.0.0.1:5432/{name}")
            };
            (url, Box::new(guard), expected)
        }
    }
}

const RANGE: [&str; 2] = ["2024-02-28", "2024-03-03"];

async fn query(c: &reqwest::Client, url: &str, key: &str, body: Value) -> Value {
    let r = c.post(format!("{url}/api/v2/query")).bearer_auth(key).json(&body).send().await.unwrap();
    let status = r.status();
    let body: Value = r.json().await.unwrap();
    assert_eq!(status, 200, "{body}");
    body
}

/// `dimension` → its values' metrics, as the Stats API answers for the test's range.
async fn breakdown(
    c: &reqwest::Client,
    url: &str,
    key: &str,
    site: &str,
    dim: &str,
    metrics: &[&str],
) -> BTreeMap<String, Vec<Value>> {
    let body = json!({"site_id": site, "metrics": metrics, "date_range": RANGE, "dimensions": [dim]});
    let answer = query(c, url, key, body).await;
    answer["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["dimensions"][0].as_str().unwrap().to_owned(), r["metrics"].as_array().unwrap().clone()))
        .collect()
}

/// Imports the Fathom Lite database of `dialect` into a new install and checks every site's
/// numbers; returns the install's folder, the database's source (kept alive by the guard) and a
/// key.
async fn fathom_lite_imports_to_its_totals(
    dialect: &str,
) -> (std::path::PathBuf, String, Box<dyn std::any::Any>, String) {
    let dir = temp_dir(&format!("import-fathom-{dialect}"));
    let (source, keep, expected) = fathom_db(dialect, &dir);
    let key = create_key(&dir, "reader");
    let out = cli(&dir, &["import", "fathom-lite", &source]);
    assert!(out.contains("snippets sending sid=ABCDE count into example.com"), "{out}");
    assert!(out.contains("added site orphan.test"), "{out}");
    let server = Server::start(&dir, &[]);
    let c = client();
    let metrics = ["visitors", "visits", "pageviews", "bounce_rate", "visit_duration"];
    for (site, e) in &expected {
        let body = json!({"site_id": site, "metrics": metrics, "date_range": RANGE});
        let answer = query(&c, &server.url, &key, body).await;
        let want = json!([
            e.visitors,
            e.visits,
            e.pageviews,
            (100.0 * e.bounces / e.visits as f64).round() as i64,
            (e.duration / e.visits as f64).round() as i64
        ]);
        assert_eq!(answer["results"][0]["metrics"], want, "{dialect}: {site}");
        assert_eq!(answer["meta"]["imports_included"], true, "{answer}");
        let pages = breakdown(&c, &server.url, &key, site, "event:page", &["visitors", "pageviews"]).await;
        let want: BTreeMap<String, Vec<Value>> =
            e.pages.iter().map(|(p, (v, pv))| (p.clone(), vec![json!(v), json!(pv)])).collect();
        assert_eq!(pages, want, "{dialect}: {site} pages");
        let referrers = breakdown(&c, &server.url, &key, site, "visit:referrer", &["visitors"]).await;
        let mut want: BTreeMap<String, Vec<Value>> =
            e.referrers.iter().map(|(r, v)| (r.clone(), vec![json!(v)])).collect();
        // Whatever no referrer brought is direct.
        want.insert(String::new(), vec![json!(e.visitors - e.referrers.values().sum::<i64>())]);
        assert_eq!(referrers, want, "{dialect}: {site} referrers");
        let sources = breakdown(&c, &server.url, &key, site, "visit:source", &["visitors"]).await;
        assert_eq!(sources["Google"], want["google.com"], "{dialect}: {site} sources");
        assert_eq!(sources[""], want[""], "{dialect}: {site} direct");
        // What imported data cannot answer is said, not made up.
        let body =
            json!({"site_id": site, "metrics": ["visitors"], "date_range": RANGE, "dimensions": ["visit:browser"]});
        let answer = query(&c, &server.url, &key, body).await;
        assert_eq!(answer["meta"]["imports_included"], false, "{answer}");
        assert_eq!(answer["meta"]["imports_skip_reason"], "unsupported_query");
        assert!(answer["meta"]["imports_warning"].as_str().unwrap().contains("fathom-lite has no `visit:browser`"));
    }
    drop(server);
    (dir, source, keep, key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fathom_lite_on_mariadb_imports_to_its_totals() {
    fathom_lite_imports_to_its_totals("mysql").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fathom_lite_on_postgresql_imports_to_its_totals() {
    fathom_lite_imports_to_its_totals("postgres").await;
}

/// The SQLite one, then what comes after an import: old snippets, a second run, removal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fathom_lite_imports_once_keeps_old_snippets_counting_and_can_be_removed() {
    let (dir, source, _keep, key) = fathom_lite_imports_to_its_totals("sqlite").await;
    let server = Server::start(&dir, &[]);
    let c = client();
    let visitors = |site: &'static str| {
        let (c, url, key) = (c.clone(), server.url.clone(), key.clone());
        async move { aggregate(&c, &url, &key, site, &["visitors"], json!(RANGE)).await[0].as_i64().unwrap() }
    };
    let before = visitors("example.com").await;
    // A Fathom Lite snippet still on a page sends its tracking id: it counts into the site.
    let r =
        c.get(format!("{}/collect?p=%2Fold&h=https%3A%2F%2Fexample.com&sid=ABCDE", server.url)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let today =
        || async { aggregate(&c, &server.url, &key, "example.com", &["pageviews"], json!("day")).await[0].clone() };
    assert!(
        eventually(Duration::from_secs(10), || async { today().await == json!(1) }).await,
        "the old snippet counts"
    );
    // Imported again while the server runs: the second run replaces the first, not adds to it.
    let out = cli(&dir, &["import", "fathom-lite", &source]);
    assert!(out.contains("replaced import"), "{out}");
    assert_eq!(visitors("example.com").await, before);
    let list = cli(&dir, &["import", "list"]);
    let runs: Vec<&str> = list.lines().skip(1).collect();
    assert_eq!(runs.len(), 3, "one import per site: {list}");
    assert!(runs.iter().all(|l| l.contains("\tfathom-lite\t") && l.contains("\tdone\t")), "{list}");
    let example = runs.iter().find(|l| l.contains("\texample.com\t")).unwrap();
    assert!(example.contains("2024-02-28..2024-03-03"), "{example}");
    // Removed: its numbers go, the live pageview stays.
    let id = example.split('\t').next().unwrap();
    let out = cli(&dir, &["import", "remove", id]);
    assert!(out.starts_with(&format!("removed import {id}")), "{out}");
    assert_eq!(visitors("example.com").await, 0);
    assert_eq!(today().await, json!(1));
    assert_eq!(cli(&dir, &["import", "list", "example.com"]).lines().count(), 1, "only the header");
}

const UAS: [&str; 3] = [
    "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
];
const IPS: [&str; 3] = ["81.2.69.142", "8.8.8.8", "1.1.1.1"];

/// Three days of visits to `site`: visitors from search, a campaign and nowhere, on three kinds of
/// device, some viewing a second page a minute later, some signing up.
fn history(site: &str) -> Vec<Value> {
    let mut events = Vec::new();
    for day in 1..=3 {
        for v in 0..12usize {
            let at = |minute: u32| format!("2024-05-0{day}T{:02}:{minute:02}:00Z", 8 + v);
            let (ip, ua) = (format!("{}{v}", &IPS[v % 3][..IPS[v % 3].len() - 1]), UAS[v % 3]);
            let (url, referrer) = match v % 4 {
                0 => ("/", "https://www.google.com/"),
                1 => ("/pricing?utm_source=news&utm_medium=email&utm_campaign=spring", ""),
                2 => ("/blog/hello", "https://news.ycombinator.com/item?id=1"),
                _ => ("/", ""),
            };
            let base = |name: &str, url: &str, minute: u32| {
                json!({"name": name, "domain": site, "url": format!("https://{site}{url}"), "referrer": referrer,
                    "ip": ip, "user_agent": ua, "timestamp": at(minute)})
            };
            events.push(base("pageview", url, 0));
            if v % 3 != 0 {
                events.push(base("pageview", "/docs", 1 + v as u32 % 3));
            }
            if v % 5 == 0 {
                events.push(base("Signup", "/docs", 5));
            }
        }
    }
    events
}

/// Every answer the export must carry over: totals, days, and each exported breakdown.
async fn answers(c: &reqwest::Client, url: &str, key: &str, site: &str) -> Vec<(String, Value)> {
    let range = ["2024-05-01", "2024-05-03"];
    let visit = ["visitors", "visits", "pageviews", "bounce_rate", "visit_duration"];
    let mut asks: Vec<(Vec<&str>, Vec<&str>)> = vec![(vec![], visit.to_vec()), (vec!["time:day"], visit.to_vec())];
    for dim in [
        "visit:source",
        "visit:referrer",
        "visit:utm_source",
        "visit:utm_medium",
        "visit:utm_campaign",
        "visit:country",
        "visit:device",
        "visit:browser",
        "visit:browser_version",
        "visit:os",
        "visit:os_version",
    ] {
        asks.push((vec![dim], visit.to_vec()));
    }
    asks.push((vec!["visit:entry_page"], vec!["visitors", "visits", "bounce_rate", "visit_duration"]));
    asks.push((vec!["visit:exit_page"], vec!["visitors", "visits"]));
    asks.push((vec!["event:page"], vec!["visitors", "visits", "pageviews", "bounce_rate"]));
    asks.push((vec!["event:hostname"], vec!["visitors", "pageviews"]));
    let mut out = Vec::new();
    for (dims, metrics) in asks {
        let body = json!({"site_id": site, "metrics": metrics, "date_range": range, "dimensions": dims});
        let answer = query(c, url, key, body).await;
        out.push((format!("{dims:?} {metrics:?}"), answer["results"].clone()));
    }
    // Custom events (the export carries no pageview as an event name).
    let body =
        json!({"site_id": site, "metrics": ["visitors", "events"], "date_range": range, "dimensions": ["event:name"]});
    let names = query(c, url, key, body).await;
    let custom: Vec<Value> =
        names["results"].as_array().unwrap().iter().filter(|r| r["dimensions"][0] != "pageview").cloned().collect();
    out.push(("event:name".into(), Value::Array(custom)));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plausible_export_comes_back_to_the_same_answers() {
    let site = "round.test";
    let dir = temp_dir("import-plausible-out");
    cli(&dir, &["site", "add", site]);
    let key = create_key(&dir, "writer");
    let server = Server::start(&dir, &[]);
    let c = client();
    let events = history(site);
    let pageviews = events.iter().filter(|e| e["name"] == "pageview").count() as i64;
    let r = c.post(format!("{}/api/events", server.url)).bearer_auth(&key).json(&events).send().await.unwrap();
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
    let counted = eventually(Duration::from_secs(20), || async {
        aggregate(&c, &server.url, &key, site, &["pageviews"], json!(["2024-05-01", "2024-05-03"])).await[0]
            == json!(pageviews)
    })
    .await;
    assert!(counted, "the history is counted");
    let before = answers(&c, &server.url, &key, site).await;
    assert!(before.iter().all(|(_, r)| !r.as_array().unwrap().is_empty()), "every answer has rows: {before:?}");
    // Exported while the server runs (from a snapshot of its store).
    let zip = dir.join("round.zip");
    let out = cli(&dir, &["export", site, zip.to_str().unwrap(), "--date-range", "2024-05-01,2024-05-03"]);
    assert!(out.contains("asked the running server for a snapshot"), "{out}");

    // The stored rows themselves, as Parquet: every event row of the range, with its counters.
    let parquet = dir.join("rows");
    let out = cli(
        &dir,
        &["export", site, parquet.to_str().unwrap(), "--date-range", "2024-05-01,2024-05-03", "--format", "parquet"],
    );
    assert!(out.contains("rows in events.parquet"), "{out}");
    let (rows, stored_pageviews) = parquet_rows(&parquet.join("events.parquet"), "pageviews");
    assert!(rows >= events.len() as i64, "{rows} rows for {} events", events.len());
    assert_eq!(stored_pageviews, pageviews);

    let fresh = temp_dir("import-plausible-in");
    let fresh_key = create_key(&fresh, "reader");
    let out = cli(&fresh, &["import", "plausible", zip.to_str().unwrap(), "--site", site]);
    assert!(out.contains("importing Plausible's export of 2024-05-01 to 2024-05-03"), "{out}");
    let other = Server::start(&fresh, &[]);
    let after = answers(&c, &other.url, &fresh_key, site).await;
    for ((what, want), (_, got)) in before.iter().zip(&after) {
        assert_eq!(got, want, "{what}");
    }
    // The same export again replaces the first import.
    let out = cli(&fresh, &["import", "plausible", zip.to_str().unwrap(), "--site", site]);
    assert!(out.contains("replaced import"), "{out}");
    assert_eq!(answers(&c, &other.url, &fresh_key, site).await, after);
}

/// A Parquet file's rows, and the sum of one integer column.
fn parquet_rows(path: &Path, column: &str) -> (i64, i64) {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let reader = SerializedFileReader::new(std::fs::File::open(path).unwrap()).unwrap();
    let schema = reader.metadata().file_metadata().schema_descr_ptr();
    let at = schema.columns().iter().position(|c| c.name() == column).unwrap_or_else(|| panic!("no column {column}"));
    let (mut rows, mut sum) = (0, 0);
    for row in reader.get_row_iter(None).unwrap() {
        let row = row.unwrap();
        rows += 1;
        sum += match &row.get_column_iter().nth(at).unwrap().1 {
            parquet::record::Field::Byte(v) => i64::from(*v),
            parquet::record::Field::Short(v) => i64::from(*v),
            parquet::record::Field::Int(v) => i64::from(*v),
            parquet::record::Field::Long(v) => *v,
            other => panic!("{column} is {other:?}"),
        };
    }
    (rows, sum)
}

/// A zip as Plausible writes it, by hand: every table, with known numbers, its files named for
/// `dates` (`YYYYMMDD_YYYYMMDD`).
fn handmade_zip(path: &Path, dates: &str) {
    let files: [(&str, &str); 10] = [
        (
            "visitors",
            "date,visitors,pageviews,bounces,visits,visit_duration\n2023-01-01,10,30,4,12,600\n2023-01-02,5,8,5,5,0\n",
        ),
        (
            "sources",
            "date,source,referrer,utm_source,utm_medium,utm_campaign,utm_content,utm_term,pageviews,visitors,visits,visit_duration,bounces\n\
             2023-01-01,Google,google.com,,,,,,20,6,7,400,2\n2023-01-01,,,,,,,,10,4,5,200,2\n2023-01-02,\"Hacker News\",news.ycombinator.com,,,,,,8,5,5,0,5\n",
        ),
        (
            "pages",
            "date,hostname,page,visits,visitors,pageviews,total_scroll_depth,total_scroll_depth_visits,total_time_on_page,total_time_on_page_visits\n\
             2023-01-01,hand.test,/,10,9,20,0,0,0,0\n2023-01-01,hand.test,\"/a,b\",3,3,10,0,0,0,0\n2023-01-02,hand.test,/,5,5,8,0,0,0,0\n",
        ),
        (
            "entry_pages",
            "date,entry_page,visitors,entrances,visit_duration,bounces,pageviews\n2023-01-01,/,10,12,600,4,30\n",
        ),
        ("exit_pages", "date,exit_page,visitors,visit_duration,exits,bounces,pageviews\n2023-01-01,/,7,0,8,0,0\n"),
        (
            "custom_events",
            "date,name,link_url,path,visitors,events\n2023-01-01,Signup,,,3,4\n2023-01-02,Outbound Link: Click,https://x.test,,1,1\n",
        ),
        (
            "locations",
            "date,country,region,city,visitors,visits,visit_duration,bounces,pageviews\n2023-01-01,DE,DE-BE,2950159,6,7,300,2,18\n2023-01-01,ZZ,,0,4,5,300,2,12\n",
        ),
        (
            "devices",
            "date,device,visitors,visits,visit_duration,bounces,pageviews\n2023-01-01,Desktop,10,12,600,4,30\n",
        ),
        (
            "browsers",
            "date,browser,browser_version,visitors,visits,visit_duration,bounces,pageviews\n2023-01-01,Firefox,125.0,10,12,600,4,30\n",
        ),
        (
            "operating_systems",
            "date,operating_system,operating_system_version,visitors,visits,visit_duration,bounces,pageviews\n2023-01-01,Linux,,10,12,600,4,30\n",
        ),
    ];
    let mut zip = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    for (table, csv) in files {
        zip.start_file(format!("imported_{table}_{dates}.csv"), zip::write::SimpleFileOptions::default()).unwrap();
        std::io::Write::write_all(&mut zip, csv.as_bytes()).unwrap();
    }
    zip.finish().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handmade_plausible_zip_with_every_table_imports() {
    let dir = temp_dir("import-plausible-hand");
    let key = create_key(&dir, "reader");
    let zip = dir.join("hand.zip");
    handmade_zip(&zip, "20230101_20230102");
    let out = cli(&dir, &["import", "plausible", zip.to_str().unwrap(), "--site", "hand.test"]);
    assert!(out.contains("added site hand.test"), "{out}");
    let server = Server::start(&dir, &[]);
    let c = client();
    let (url, site) = (server.url.as_str(), "hand.test");
    let ask = |dims: Vec<&str>, metrics: Vec<&str>| {
        let body = json!({"site_id": site, "metrics": metrics, "date_range": ["2023-01-01", "2023-01-02"], "dimensions": dims});
        let (c, url, key) = (c.clone(), url.to_owned(), key.clone());
        async move {
            let answer = query(&c, &url, &key, body).await;
            let rows = answer["results"].as_array().unwrap().iter();
            rows.map(|r| {
                let dims: Vec<String> =
                    r["dimensions"].as_array().unwrap().iter().map(|d| d.as_str().unwrap().to_owned()).collect();
                (dims.join("|"), r["metrics"].clone())
            })
            .collect::<BTreeMap<String, Value>>()
        }
    };
    let totals = ask(vec![], vec!["visitors", "visits", "pageviews", "bounce_rate", "visit_duration", "events"]).await;
    // 17 visits, 9 bounced, 600 s; events: 38 pageviews and 5 custom events.
    assert_eq!(totals[""], json!([15, 17, 38, 53, 35, 43]));
    let sources = ask(vec!["visit:source"], vec!["visitors", "visits"]).await;
    assert_eq!(sources["Google"], json!([6, 7]));
    assert_eq!(sources["Hacker News"], json!([5, 5]));
    assert_eq!(sources[""], json!([4, 5]));
    let pages = ask(vec!["event:page"], vec!["visitors", "pageviews"]).await;
    assert_eq!(pages["/"], json!([14, 28]));
    assert_eq!(pages["/a,b"], json!([3, 10]));
    assert_eq!(ask(vec!["visit:entry_page"], vec!["visits", "bounce_rate"]).await["/"], json!([12, 33]));
    assert_eq!(ask(vec!["visit:exit_page"], vec!["visitors", "visits"]).await["/"], json!([7, 8]));
    let names = ask(vec!["event:name"], vec!["visitors", "events"]).await;
    assert_eq!(names["Signup"], json!([3, 4]));
    assert_eq!(names["Outbound Link: Click"], json!([1, 1]));
    let countries = ask(vec!["visit:country"], vec!["visitors"]).await;
    assert_eq!((countries["DE"].clone(), countries[""].clone()), (json!([6]), json!([4])), "ZZ is unknown");
    assert_eq!(ask(vec!["visit:region"], vec!["visitors"]).await["DE-BE"], json!([6]));
    assert_eq!(ask(vec!["visit:device"], vec!["visitors"]).await["Desktop"], json!([10]));
    assert_eq!(ask(vec!["visit:browser_version"], vec!["visitors"]).await["125.0"], json!([10]));
    assert_eq!(ask(vec!["visit:os"], vec!["visitors"]).await["Linux"], json!([10]));
    // Cities are GeoNames ids there: left out, and said so.
    let body = json!({"site_id": site, "metrics": ["visitors"], "date_range": ["2023-01-01", "2023-01-02"], "dimensions": ["visit:city"]});
    let answer = query(&c, url, &key, body).await;
    assert_eq!(answer["meta"]["imports_included"], false, "{answer}");
    assert_eq!(answer["results"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_that_cannot_be_read_stops_the_import_and_leaves_nothing() {
    let dir = temp_dir("import-bad");
    let key = create_key(&dir, "reader");
    let fail = |args: &[&str]| {
        let out = Command::new(BIN).arg("--data-dir").arg(&dir).args(args).output().unwrap();
        assert!(!out.status.success(), "{args:?} succeeded");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let e = fail(&["import", "fathom-lite", "/nonexistent/fathom.db"]);
    assert!(e.contains("is no file"), "{e}");
    // Bad choices on the command line are named.
    let e = fail(&["import", "plausible", "/nonexistent.zip", "--site", "not a domain"]);
    assert!(e.contains("not a domain") && !e.contains("nonexistent"), "the domain is checked first: {e}");
    cli(&dir, &["site", "add", "out.test"]);
    let e = fail(&["export", "out.test", dir.join("x.zip").to_str().unwrap(), "--date-range", "fortnight"]);
    assert!(e.contains("--date-range"), "{e}");
    let e = fail(&["export", "out.test", dir.join("x.zip").to_str().unwrap(), "--format", "xml"]);
    assert!(e.contains("xml"), "{e}");
    let other = dir.join("other.db");
    rusqlite::Connection::open(&other).unwrap().execute_batch("CREATE TABLE notes (text TEXT)").unwrap();
    let e = fail(&["import", "fathom-lite", other.to_str().unwrap()]);
    assert!(e.contains("is no Fathom Lite database") && e.contains("no table sites"), "{e}");
    // A Plausible export with a bad count on line 3 of one file: named, and nothing counted.
    let zip = dir.join("bad.zip");
    handmade_zip(&zip, "20230101_20230102");
    let mut archive =
        zip::ZipWriter::new_append(std::fs::OpenOptions::new().read(true).write(true).open(&zip).unwrap()).unwrap();
    archive.start_file("imported_devices_20230102_20230102.csv", zip::write::SimpleFileOptions::default()).unwrap();
    std::io::Write::write_all(&mut archive, b"date,device,visitors\n2023-01-02,Mobile,1\n2023-01-02,Tablet,many\n")
        .unwrap();
    archive.finish().unwrap();
    let e = fail(&["import", "plausible", zip.to_str().unwrap(), "--site", "bad.test"]);
    assert!(
        e.contains("imported_devices_20230102_20230102.csv") && e.contains("line 3: `visitors` is `many`, not a count"),
        "{e}"
    );
    assert!(e.contains("nothing of it is counted"), "{e}");
    assert_eq!(cli(&dir, &["import", "list"]).lines().count(), 1, "no import is left");
    let server = Server::start(&dir, &[]);
    let visitors =
        aggregate(&client(), &server.url, &key, "bad.test", &["visitors"], json!(["2023-01-01", "2023-01-02"])).await;
    assert_eq!(visitors, [json!(0)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_logs_count_like_live_hits() {
    let dir = temp_dir("import-logs");
    let key = create_key(&dir, "reader");
    let line = |ip: &str, time: &str, request: &str, status: u16, referrer: &str, ua: &str| {
        format!("{ip} - - [{time} +0000] \"{request} HTTP/1.1\" {status} 512 \"{referrer}\" \"{ua}\"\n")
    };
    let (firefox, chrome, safari) = (UAS[0], UAS[1], UAS[2]);
    let googlebot = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";
    let bingbot = "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)";
    // Day 1. A: from Google, two pages two minutes apart, then an hour later one more (a second
    // session); B: a campaign, one page; C (IPv6): a page answered 304, a POST and a 404. Two
    // bots, an asset, and a line that is no log line (line 9).
    let day1 = [
        line("203.0.113.1", "01/Jun/2024:10:00:00", "GET /", 200, "https://www.google.com/", firefox),
        line("203.0.113.1", "01/Jun/2024:10:01:00", "GET /style.css", 200, "https://logs.test/", firefox),
        line("203.0.113.1", "01/Jun/2024:10:02:00", "GET /about", 200, "https://logs.test/", firefox),
        line("203.0.113.2", "01/Jun/2024:10:05:00", "GET /?utm_source=news", 200, "-", chrome),
        line("2001:db8::1", "01/Jun/2024:10:10:00", "GET /", 304, "-", safari),
        line("2001:db8::1", "01/Jun/2024:10:11:00", "POST /form", 200, "https://logs.test/", safari),
        line("2001:db8::1", "01/Jun/2024:10:12:00", "GET /missing", 404, "-", safari),
        line("66.249.66.1", "01/Jun/2024:10:20:00", "GET /", 200, "-", googlebot),
        "this is not a log line\n".to_owned(),
        line("157.55.39.1", "01/Jun/2024:10:30:00", "GET /about", 200, "-", bingbot),
        line("203.0.113.1", "01/Jun/2024:11:00:00", "GET /pricing", 200, "-", firefox),
    ];
    let plain = dir.join("access.log");
    std::fs::write(&plain, day1.concat()).unwrap();
    // Day 2, gzip-compressed: A comes back (a new visitor-day).
    let gz = dir.join("access.log.2.gz");
    let mut encoder =
        flate2::write::GzEncoder::new(std::fs::File::create(&gz).unwrap(), flate2::Compression::default());
    std::io::Write::write_all(
        &mut encoder,
        line("203.0.113.1", "02/Jun/2024:09:00:00", "GET /", 200, "-", firefox).as_bytes(),
    )
    .unwrap();
    encoder.finish().unwrap();
    let out = cli(&dir, &["import", "logs", plain.to_str().unwrap(), gz.to_str().unwrap(), "--site", "logs.test"]);
    assert!(out.contains("skipped 2 requests from bots"), "{out}");
    assert!(
        out.contains(&format!("malformed lines were: {} line 9", plain.canonicalize().unwrap().display())),
        "{out}"
    );
    assert!(out.contains("read 12 records"), "{out}");
    let server = Server::start(&dir, &[]);
    let c = client();
    let range = json!(["2024-06-01", "2024-06-02"]);
    let totals = aggregate(
        &c,
        &server.url,
        &key,
        "logs.test",
        &["visitors", "visits", "pageviews", "bounce_rate", "visit_duration"],
        range.clone(),
    )
    .await;
    // 4 visitor-days, 5 sessions, 6 pageviews; 4 sessions of one page; 120 s over 5 sessions.
    assert_eq!(totals, [json!(4), json!(5), json!(6), json!(80), json!(24)]);
    let body = |dim: &str, metrics: Value| json!({"site_id": "logs.test", "metrics": metrics, "date_range": range, "dimensions": [dim]});
    let rows = |answer: Value| -> BTreeMap<String, Value> {
        answer["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (r["dimensions"][0].as_str().unwrap().to_owned(), r["metrics"].clone()))
            .collect()
    };
    let pages = rows(query(&c, &server.url, &key, body("event:page", json!(["visitors", "pageviews"]))).await);
    assert_eq!(
        pages,
        BTreeMap::from([
            ("/".into(), json!([4, 4])),
            ("/about".into(), json!([1, 1])),
            ("/pricing".into(), json!([1, 1]))
        ])
    );
    let sources = rows(query(&c, &server.url, &key, body("visit:source", json!(["visitors", "visits"]))).await);
    assert_eq!(
        sources,
        BTreeMap::from([("".into(), json!([3, 3])), ("Google".into(), json!([1, 1])), ("news".into(), json!([1, 1]))])
    );
    let browsers = rows(query(&c, &server.url, &key, body("visit:browser", json!(["visitors"]))).await);
    assert_eq!(browsers.values().map(|v| v[0].as_i64().unwrap()).sum::<i64>(), 4, "{browsers:?}");
    let exits = rows(query(&c, &server.url, &key, body("visit:exit_page", json!(["visits"]))).await);
    assert_eq!(
        exits,
        BTreeMap::from([("/".into(), json!([3])), ("/about".into(), json!([1])), ("/pricing".into(), json!([1]))])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imported_days_never_count_twice() {
    let (dir, site) = (temp_dir("import-twice"), "twice.test");
    cli(&dir, &["site", "add", site]);
    let key = create_key(&dir, "writer");
    let server = Server::start(&dir, &[]);
    let c = client();
    // A live pageview on 2023-01-02: that day is counted live.
    let live = json!([{"name": "pageview", "domain": site, "url": format!("https://{site}/"), "ip": "198.51.100.7",
        "user_agent": UAS[0], "timestamp": "2023-01-02T12:00:00Z"}]);
    let r = c.post(format!("{}/api/events", server.url)).bearer_auth(&key).json(&live).send().await.unwrap();
    assert_eq!(r.status(), 202);
    let range = json!(["2023-01-01", "2023-01-02"]);
    let visitors =
        || async { aggregate(&c, &server.url, &key, site, &["visitors"], range.clone()).await[0].as_i64().unwrap() };
    assert!(eventually(Duration::from_secs(10), || async { visitors().await == 1 }).await);
    // Imported while the server runs: 2023-01-01 is (10 visitors), 2023-01-02 is not.
    let zip = dir.join("a.zip");
    handmade_zip(&zip, "20230101_20230102");
    let out = cli(&dir, &["import", "plausible", zip.to_str().unwrap(), "--site", site]);
    assert!(out.contains("rows of days the site has live data for"), "{out}");
    assert_eq!(visitors().await, 11);
    // Another export sharing a day with the first import is refused, and counts nothing.
    let later = dir.join("b.zip");
    handmade_zip(&later, "20230101_20230101");
    let out = Command::new(BIN)
        .arg("--data-dir")
        .arg(&dir)
        .args(["import", "plausible", later.to_str().unwrap(), "--site", site])
        .output()
        .unwrap();
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && e.contains("overlap import") && e.contains("remove that one first"),
        "{e} {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(visitors().await, 11);
    assert_eq!(cli(&dir, &["import", "list", site]).lines().count(), 2, "one import");
}
