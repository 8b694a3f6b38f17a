//! Import benchmark: `plumb import fathom-lite` of a Fathom Lite SQLite database of N stats rows,
//! and `plumb import logs` of an access log of N bytes, each made here with made-up traffic,
//! timed with its peak memory (`/usr/bin/time`). Prints rows (or lines) per second and MB.

use std::io::Write;
use std::path::Path;
use std::process::Command;

/// Pages and referrers of the made-up site, each with a row every hour.
const PAGES: usize = 200;
const REFERRERS: usize = 40;

pub fn run(plumb: &Path, rows: usize, log_bytes: u64) {
    let dir = std::env::temp_dir().join(format!("plumb-bench-import-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("fathom.db");
    let made = std::time::Instant::now();
    let stats_rows = fathom_db(&db, rows);
    eprintln!("made a Fathom Lite database of {stats_rows} stats rows in {:.0?}", made.elapsed());
    let (seconds, peak_mb) = timed(plumb, &dir.join("data-fathom"), &["import", "fathom-lite", db.to_str().unwrap()]);
    let db_mb = std::fs::metadata(&db).unwrap().len() as f64 / 1e6;
    println!(
        "fathom-lite: {stats_rows} stats rows ({db_mb:.0} MB SQLite) in {seconds:.1} s = {:.0} rows/s, peak RSS {peak_mb:.0} MB",
        stats_rows as f64 / seconds
    );
    let log = dir.join("access.log");
    let made = std::time::Instant::now();
    let lines = access_log(&log, log_bytes);
    eprintln!("made an access log of {lines} lines in {:.0?}", made.elapsed());
    let (seconds, peak_mb) =
        timed(plumb, &dir.join("data-logs"), &["import", "logs", log.to_str().unwrap(), "--site", "bench.test"]);
    println!(
        "logs: {lines} lines ({:.0} MB) in {seconds:.1} s = {:.0} lines/s ({:.1} MB/s), peak RSS {peak_mb:.0} MB",
        log_bytes as f64 / 1e6,
        lines as f64 / seconds,
        log_bytes as f64 / 1e6 / seconds
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs `plumb ARGS` on a new data directory; returns its wall time and peak RSS in MB.
fn timed(plumb: &Path, data: &Path, args: &[&str]) -> (f64, f64) {
    let out = Command::new("/usr/bin/time")
        .args(["-f", "%e %M"])
        .arg(plumb)
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .output()
        .expect("/usr/bin/time runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "plumb {args:?} failed: {stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    let mut fields = last.split_whitespace().map(|f| f.parse::<f64>().unwrap_or(0.0));
    let (seconds, kb) = (fields.next().unwrap_or(0.0), fields.next().unwrap_or(0.0));
    eprint!("{}", String::from_utf8_lossy(&out.stdout));
    (seconds, kb / 1024.0)
}

/// A Fathom Lite database (its final schema) of about `rows` stats rows: one site, hour after
/// hour, a site row, a row per page and per referrer each hour. Returns the rows made.
fn fathom_db(path: &Path, rows: usize) -> usize {
    let db = rusqlite::Connection::open(path).unwrap();
    db.execute_batch(
        "PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF;
         CREATE TABLE sites (id INTEGER PRIMARY KEY AUTOINCREMENT, tracking_id VARCHAR(8) UNIQUE, name VARCHAR(100) NOT NULL);
         CREATE TABLE hostnames (id INTEGER PRIMARY KEY, name VARCHAR(255) NOT NULL);
         CREATE TABLE pathnames (id INTEGER PRIMARY KEY, name VARCHAR(255) NOT NULL);
         CREATE TABLE site_stats (site_id INTEGER NOT NULL DEFAULT 1, pageviews INTEGER NOT NULL, visitors INTEGER NOT NULL,
             sessions INTEGER NOT NULL, bounce_rate FLOAT NOT NULL, known_durations INTEGER NOT NULL DEFAULT 0,
             avg_duration FLOAT NOT NULL, ts DATETIME NOT NULL);
         CREATE TABLE page_stats (site_id INTEGER NOT NULL DEFAULT 1, hostname_id INTEGER NOT NULL, pathname_id INTEGER NOT NULL,
             pageviews INTEGER NOT NULL, visitors INTEGER NOT NULL, entries INTEGER NOT NULL, bounce_rate FLOAT NOT NULL,
             known_durations INTEGER NOT NULL DEFAULT 0, avg_duration FLOAT NOT NULL, ts DATETIME NOT NULL);
         CREATE TABLE referrer_stats (site_id INTEGER NOT NULL DEFAULT 1, hostname_id INTEGER NOT NULL, pathname_id INTEGER NOT NULL,
             groupname VARCHAR(255) NULL, pageviews INTEGER NOT NULL, visitors INTEGER NOT NULL, bounce_rate FLOAT NOT NULL,
             known_durations INTEGER NOT NULL DEFAULT 0, avg_duration FLOAT NOT NULL, ts DATETIME NOT NULL);
         CREATE TABLE pageviews (id VARCHAR(31) NOT NULL, site_tracking_id VARCHAR(8) NOT NULL, hostname VARCHAR(255) NOT NULL,
             pathname VARCHAR(255) NOT NULL, is_new_visitor TINYINT(1) NOT NULL, is_new_session TINYINT(1) NOT NULL,
             is_unique TINYINT(1) NOT NULL, is_bounce TINYINT(1) NULL, is_finished TINYINT(1) NOT NULL DEFAULT 0,
             referrer VARCHAR(255) NULL, duration INTEGER NULL, timestamp DATETIME NOT NULL);
         INSERT INTO sites (tracking_id, name) VALUES ('BENCH', 'Bench');
         INSERT INTO hostnames (id, name) VALUES (1, 'https://bench.test');",
    )
    .unwrap();
    let tx = db.unchecked_transaction().unwrap();
    {
        let mut host = tx.prepare("INSERT INTO hostnames (id, name) VALUES (?1, ?2)").unwrap();
        let mut path = tx.prepare("INSERT INTO pathnames (id, name) VALUES (?1, ?2)").unwrap();
        for i in 0..PAGES as i64 {
            path.execute(rusqlite::params![i + 1, format!("/page/{i}")]).unwrap();
        }
        for r in 0..REFERRERS as i64 {
            host.execute(rusqlite::params![r + 2, format!("https://ref{r}.example")]).unwrap();
        }
    }
    let hours = rows / (1 + PAGES + REFERRERS);
    let start = chrono::NaiveDate::from_ymd_opt(2020, 1, 1).unwrap().and_hms_opt(0, 0, 0).unwrap();
    {
        let mut site = tx.prepare("INSERT INTO site_stats VALUES (1, ?1, ?2, ?3, 0.5, ?3, 30.0, ?4)").unwrap();
        let mut page = tx.prepare("INSERT INTO page_stats VALUES (1, 1, ?1, ?2, ?3, 1, 0.5, 1, 12.5, ?4)").unwrap();
        let mut referrer =
            tx.prepare("INSERT INTO referrer_stats VALUES (1, ?1, 1, '', 2, 1, 0.5, 1, 20.0, ?2)").unwrap();
        for h in 0..hours as i64 {
            let ts = (start + chrono::Duration::hours(h)).format("%Y-%m-%d %H:%M:%S").to_string();
            site.execute(rusqlite::params![40 + h % 7, 20 + h % 5, 10 + h % 3, ts]).unwrap();
            for p in 0..PAGES as i64 {
                page.execute(rusqlite::params![p + 1, 1 + (h + p) % 9, 1 + (h + p) % 4, ts]).unwrap();
            }
            for r in 0..REFERRERS as i64 {
                referrer.execute(rusqlite::params![r + 2, ts]).unwrap();
            }
        }
    }
    tx.commit().unwrap();
    hours * (1 + PAGES + REFERRERS)
}

/// An access log of about `bytes` bytes: 30 days of requests from 50,000 visitors on five
/// browsers, pages, assets, a few bots and referrers. Returns the lines written.
fn access_log(path: &Path, bytes: u64) -> u64 {
    const UAS: [&str; 6] = [
        "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
        "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    ];
    const REFERRERS: [&str; 4] =
        ["-", "https://www.google.com/", "https://news.ycombinator.com/item?id=1", "https://bench.test/"];
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let (mut written, mut lines) = (0u64, 0u64);
    let start = chrono::NaiveDate::from_ymd_opt(2024, 1, 1).unwrap().and_hms_opt(0, 0, 0).unwrap();
    let per_line_ms = 30 * 86_400_000 / (bytes / 220).max(1);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    while written < bytes {
        // xorshift: made-up traffic, the same every run.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let visitor = x % 50_000;
        let at = start + chrono::Duration::milliseconds((lines * per_line_ms) as i64);
        let target = match x % 10 {
            0..=2 => format!("/assets/app.{}.js", x % 3),
            _ => format!("/page/{}?utm_source={}", (x >> 8) % 200, if x.is_multiple_of(17) { "news" } else { "" }),
        };
        let ua = UAS[if (x >> 12).is_multiple_of(50) { 5 } else { (visitor % 5) as usize }];
        let line = format!(
            "10.{}.{}.{} - - [{} +0000] \"GET {target} HTTP/1.1\" 200 {} \"{}\" \"{ua}\"\n",
            visitor >> 16,
            (visitor >> 8) & 255,
            visitor & 255,
            at.format("%d/%b/%Y:%H:%M:%S"),
            x % 50_000,
            REFERRERS[((x >> 20) % 4) as usize],
        );
        out.write_all(line.as_bytes()).unwrap();
        written += line.len() as u64;
        lines += 1;
    }
    out.flush().unwrap();
    lines
}
