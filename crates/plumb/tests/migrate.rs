//! `plumb migrate` from an embedded install with a year of history over three sites onto
//! PostgreSQL, NATS and ClickHouse (Debian's 18.16), while the embedded server goes on taking
//! events: the history answers alike on both sides, and visitors whose visits span the move
//! (hits before it, during it, after the hand-over on either side) are each one visitor with one
//! visit, every pageview counted once, also with migrate killed and run again during the
//! hand-over.

mod common;

use chrono::{Duration as Days, Utc};
use common::*;
use plumb_meta::testing::TestDb;
use plumb_queue::testing::NatsServer;
use plumb_store::testing::ClickHouseServer;
use serde_json::json;
use std::io::BufRead;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const SITES: [(&str, &str); 3] =
    [("alpha.test", "Europe/Berlin"), ("beta.test", "America/New_York"), ("gamma.test", "Asia/Tokyo")];
/// Visitors whose visit today spans the migration.
const LIVE_VISITORS: usize = 12;

/// A year of back-dated hits, up to two days ago: every day, a few visitors per site.
fn history() -> Vec<serde_json::Value> {
    let sources = ["", "https://www.google.com/", "https://news.example.org/a", "https://t.co/x"];
    let start = Utc::now() - Days::days(367);
    let mut hits = Vec::new();
    for day in 0..365i64 {
        for (s, (domain, _)) in SITES.iter().enumerate() {
            for v in 0..(1 + (day as usize + s) % 4) {
                let visitor = format!("{s}-{}", (day as usize * 7 + v) % 300);
                let at = start + Days::days(day) + Days::minutes(((v * 97 + s * 13) % 1200) as i64);
                for p in 0..(1 + (v + day as usize) % 3) {
                    let mut hit = json!({
                        "domain": domain,
                        "name": "pageview",
                        "url": format!("https://{domain}/page/{}", (v + p + day as usize) % 9),
                        "referrer": sources[(v + day as usize) % 4],
                        "ip": format!("10.9.{s}.{}", (day as usize * 7 + v) % 250),
                        "user_agent": format!("Mozilla/5.0 (X11; Linux x86_64) Visitor/{visitor}"),
                        "timestamp": (at + Days::seconds(40 * p as i64)).timestamp(),
                    });
                    if p == 1 {
                        hit["name"] = json!("Signup");
                        let plan = ["free", "pro"][v % 2];
                        hit["props"] = json!({ "plan": plan });
                    }
                    hits.push(hit);
                }
            }
        }
    }
    hits
}

/// Today's pageview of live visitor `v` on `path`.
fn live_hit(v: usize, path: &str) -> serde_json::Value {
    let domain = SITES[v % SITES.len()].0;
    json!({
        "domain": domain,
        "name": "pageview",
        "url": format!("https://{domain}{path}"),
        "ip": format!("10.77.0.{v}"),
        "user_agent": format!("Mozilla/5.0 (X11; Linux x86_64) LiveVisitor/{v}"),
    })
}

async fn send(c: &reqwest::Client, url: &str, key: &str, hits: &[serde_json::Value]) {
    for chunk in hits.chunks(500) {
        let r = c.post(format!("{url}/api/events")).bearer_auth(key).json(&chunk).send().await.unwrap();
        assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
    }
}

/// `plumb migrate` running, and its output's lines as they come.
fn start_migrate(dir: &std::path::Path, cluster: &[String]) -> (std::process::Child, mpsc::Receiver<String>) {
    let mut migrate = Command::new(BIN)
        .arg("--data-dir")
        .arg(dir)
        .args(cluster)
        .arg("migrate")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (lines, said) = mpsc::channel::<String>();
    let stdout = migrate.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    (migrate, said)
}

/// The queries whose answers must be the same from both installs, for one site and range.
fn queries(site: &str, range: serde_json::Value) -> Vec<serde_json::Value> {
    let metrics =
        json!(["visitors", "visits", "pageviews", "events", "bounce_rate", "visit_duration", "views_per_visit"]);
    let mut out = vec![json!({"site_id": site, "metrics": metrics, "date_range": range})];
    for dimension in [
        "visit:source",
        "event:page",
        "time:month",
        "time:day",
        "event:name",
        "event:props:plan",
        "visit:entry_page",
        "visit:exit_page",
    ] {
        // Session metrics only where the dimension is one of the visit.
        let metrics = match dimension {
            "visit:exit_page" => json!(["visitors", "visits"]),
            _ if dimension.starts_with("event:") => json!(["visitors", "pageviews", "events"]),
            _ => json!(["visitors", "visits", "pageviews", "bounce_rate"]),
        };
        out.push(json!({"site_id": site, "metrics": metrics, "date_range": range, "dimensions": [dimension], "pagination": {"limit": 10000}}));
    }
    out.push(json!({"site_id": site, "metrics": ["visitors", "pageviews"], "date_range": range,
        "filters": [["contains", "event:page", ["/page/1"]]], "dimensions": ["visit:source"]}));
    out
}

async fn answers(c: &reqwest::Client, url: &str, key: &str, queries: &[serde_json::Value]) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    for q in queries {
        let r = c.post(format!("{url}/api/v2/query")).bearer_auth(key).json(q).send().await.unwrap();
        let status = r.status();
        let body = r.json::<serde_json::Value>().await.unwrap();
        assert_eq!(status, 200, "{q}: {body}");
        out.push(body["results"].clone());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_embedded_install_moves_to_a_cluster_while_it_counts_and_nothing_is_lost_or_doubled() {
    let (nats, db, clickhouse) = tokio::task::block_in_place(|| {
        (NatsServer::start("migrate"), TestDb::create(), ClickHouseServer::start("migrate"))
    });
    let cluster =
        vec!["--queue".to_owned(), nats.url(), "--meta".into(), db.url(), "--store".into(), clickhouse.url("plumb")];
    let c = client();

    // The embedded install, with a year of history and today's first pageviews.
    let dir = temp_dir("migrate");
    let key = sites_and_key(&dir, &[], &SITES);
    let mut old = Server::start(&dir, &[]);
    let history = history();
    send(&c, &old.url, &key, &history).await;
    let a: Vec<_> = (0..LIVE_VISITORS).map(|v| live_hit(v, "/a")).collect();
    send(&c, &old.url, &key, &a).await;
    let everything = history.iter().filter(|h| h["name"] == "pageview").count() as i64 + LIVE_VISITORS as i64;
    let counted = eventually(Duration::from_secs(60), || async {
        let mut n = 0;
        for (domain, _) in SITES {
            n += aggregate(&c, &old.url, &key, domain, &["pageviews"], json!("all")).await[0].as_i64().unwrap();
        }
        n == everything
    })
    .await;
    assert!(counted, "the embedded server did not count {everything} pageviews");

    // The migration, while the old server takes more of the live visitors' pageviews.
    let (mut migrate, said) = start_migrate(&dir, &cluster);
    let b: Vec<_> = (0..LIVE_VISITORS).map(|v| live_hit(v, "/b")).collect();
    send(&c, &old.url, &key, &b).await;
    let mut output = Vec::new();
    let handed_over = tokio::task::block_in_place(|| {
        while let Ok(line) = said.recv_timeout(Duration::from_secs(180)) {
            output.push(line);
            if output.last().unwrap().starts_with("queue handed over") {
                return true;
            }
        }
        false
    });
    assert!(handed_over, "no hand-over: {output:#?}");
    assert!(output.iter().any(|l| l.starts_with("verified:")), "{output:#?}");
    // One migration at a time.
    let second = Command::new(BIN).arg("--data-dir").arg(&dir).args(&cluster).arg("migrate").output().unwrap();
    let refused = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success() && refused.contains("another plumb migrate is running"), "{refused}");

    // The cluster: a collector, two workers splitting the partitions, a web process.
    let collector = Server::start_role(&temp_dir("migrate-collect"), "collect", &refs(&cluster));
    let mut apart = Vec::new();
    for (i, half) in ["0-7", "8-15"].into_iter().enumerate() {
        let with_half: Vec<String> = cluster.iter().cloned().chain(["--partitions".into(), half.into()]).collect();
        apart.push(Server::start_role(&temp_dir(&format!("migrate-work-{i}")), "work", &refs(&with_half)));
    }
    let web = Server::start_role(&temp_dir("migrate-web"), "web", &refs(&cluster));
    // Traffic moves over: some pageviews still reach the old server, the rest the new collector.
    let old_late: Vec<_> = (0..LIVE_VISITORS).map(|v| live_hit(v, "/b2")).collect();
    send(&c, &old.url, &key, &old_late).await;
    // Migrate killed while it hands over what the old server takes, then run again: it goes on.
    migrate.kill().unwrap();
    migrate.wait().unwrap();
    let (mut migrate, said) = start_migrate(&dir, &cluster);
    let new: Vec<_> = (0..LIVE_VISITORS).map(|v| live_hit(v, "/c")).collect();
    send(&c, &collector.url, &key, &new).await;
    let resumed = tokio::task::block_in_place(|| said.recv_timeout(Duration::from_secs(60)).unwrap_or_default());
    assert!(resumed.starts_with("queue handed over earlier"), "{resumed}");
    old.stop();
    let finished = tokio::task::block_in_place(|| {
        while let Ok(line) = said.recv_timeout(Duration::from_secs(60)) {
            output.push(line);
        }
        migrate.wait().unwrap()
    });
    let mut errors = String::new();
    std::io::Read::read_to_string(&mut migrate.stderr.take().unwrap(), &mut errors).unwrap();
    assert!(finished.success(), "{output:#?}\n{errors}");
    assert!(output.last().unwrap().contains("the migration is done"), "{output:#?}");
    assert!(output.iter().any(|l| l.starts_with("asked the running server for a snapshot")), "{output:#?}");
    println!("plumb migrate said:\n{}", output.join("\n"));

    // Today: each live visitor is one visitor with one visit of four pageviews.
    for (s, (domain, _)) in SITES.iter().enumerate() {
        let n = (0..LIVE_VISITORS).filter(|v| v % SITES.len() == s).count() as i64;
        let want = json!([n, n, 4 * n]);
        let metrics = ["visitors", "visits", "pageviews"];
        let today = eventually(Duration::from_secs(30), || async {
            json!(aggregate(&c, &web.url, &key, domain, &metrics, json!("day")).await) == want
        })
        .await;
        let got = aggregate(&c, &web.url, &key, domain, &metrics, json!("day")).await;
        assert!(today, "{domain} today: {got:?}, expected {want}");
    }

    // The history answers alike from the old install (started again) and the cluster.
    let old = Server::start(&dir, &[]);
    let range = json!([
        (Utc::now() - Days::days(370)).date_naive().to_string(),
        (Utc::now() - Days::days(2)).date_naive().to_string()
    ]);
    for (domain, _) in SITES {
        let qs = queries(domain, range.clone());
        let (before, after) = (answers(&c, &old.url, &key, &qs).await, answers(&c, &web.url, &key, &qs).await);
        for (q, (b, a)) in qs.iter().zip(before.iter().zip(&after)) {
            assert_eq!(a, b, "{domain}: {q}");
        }
        assert!(before[0][0]["metrics"][2].as_i64().unwrap() > 500, "{domain} has history: {}", before[0]);
    }

    // Nothing with a signature is left in the old queue; a second run has nothing to do.
    let spool = rusqlite::Connection::open(dir.join("queue.db")).unwrap();
    let left: i64 = spool.query_row("SELECT count(*) FROM spool", [], |r| r.get(0)).unwrap();
    drop(old);
    let again = cli(&dir, &[&refs(&cluster)[..], &["migrate"]].concat());
    assert!(again.contains("migrated already"), "{again}");
    assert_eq!(left, 0, "the old queue still holds entries");
    drop(apart);
}

/// What `plumb migrate` cannot do it says, before touching anything.
#[test]
fn migrate_refuses_what_it_cannot_do_with_a_clear_error() {
    let empty = temp_dir("migrate-refusals");
    let cluster = [
        "--meta",
        "postgres://p@127.0.0.1:1/none",
        "--queue",
        "nats://127.0.0.1:1",
        "--store",
        "clickhouse://127.0.0.1:1/plumb",
    ];
    for (args, want) in [
        (&[][..], "give --meta postgres://…, --store clickhouse://… and --queue nats://…"),
        (&cluster[..2], "give --meta postgres://…, --store clickhouse://… and --queue nats://…"),
        (&cluster[..], "holds no metadata"),
    ] {
        let out = Command::new(BIN).arg("--data-dir").arg(&empty).args(args).arg("migrate").output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(want), "{args:?}: {err}");
    }
    // With something to move, the store's URL is checked in full.
    let install = temp_dir("migrate-refusals-install");
    for file in ["meta.db", "events.duckdb"] {
        std::fs::write(install.join(file), b"").unwrap();
    }
    let bad_store = [&cluster[..4], &["--store", "clickhouse://127.0.0.1:1/plumb?cluster=a;b"]].concat();
    for (args, want) in [
        (bad_store, "has a query other than cluster=NAME"),
        (cluster.to_vec(), "ClickHouse at 127.0.0.1:1: unreachable"),
    ] {
        let out = Command::new(BIN).arg("--data-dir").arg(&install).args(&args).arg("migrate").output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(want), "{args:?}: {err}");
    }
}
