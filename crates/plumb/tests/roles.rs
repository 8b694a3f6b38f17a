//! The roles apart: `plumb collect` and `plumb work` on one data directory, as two processes.
//! - Each serves only its own endpoints; events sent to the collector are counted by the worker,
//!   and the collector's security counters show in the worker's API; the dashboard's snippet
//!   points at the collector.
//! - Events wait in the queue while no worker runs, and a worker killed with `kill -9` in the
//!   middle of a load, then started again, counts every acknowledged event exactly once.

mod common;

use common::*;
use serde_json::json;
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

async fn pageviews(c: &reqwest::Client, url: &str, key: &str) -> i64 {
    aggregate(c, url, key, "shop.test", &["pageviews"], json!("day")).await[0].as_i64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_collector_and_the_worker_run_apart_on_one_data_directory() {
    let dir = temp_dir("roles");
    cli(&dir, &["site", "add", "shop.test"]);
    let key = create_key(&dir, "reader");
    let collect = Server::start_role(&dir, "collect", &[]);
    let work = Server::start_role(&dir, "work", &["--collector-url", &collect.url]);
    let c = client();
    for n in 0..20 {
        let r = c
            .post(format!("{}/api/event", collect.url))
            .header("user-agent", format!("{BROWSER_UA} visitor-{n}"))
            .json(&json!({"n": "pageview", "u": format!("https://shop.test/{n}"), "d": "shop.test"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
    }
    let crawler = c
        .post(format!("{}/api/event", collect.url))
        .header("user-agent", "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)")
        .json(&json!({"n": "pageview", "u": "https://shop.test/", "d": "shop.test"}))
        .send()
        .await
        .unwrap();
    assert_eq!(crawler.status(), 202);
    let counted = eventually(Duration::from_secs(10), || async { pageviews(&c, &work.url, &key).await == 20 }).await;
    assert!(counted, "the worker counted {} of 20", pageviews(&c, &work.url, &key).await);
    let tallied = eventually(Duration::from_secs(10), || async {
        security_totals(&c, &work.url, &key, "shop.test").await == json!({"crawler": 1})
    })
    .await;
    assert!(tallied, "the collector's counters reach the worker's API");

    // Each role answers for its own endpoints only.
    let status = |r: reqwest::Response| r.status().as_u16();
    assert_eq!(status(c.get(format!("{}/js/script.js", collect.url)).send().await.unwrap()), 200);
    assert_eq!(status(c.get(format!("{}/js/script.js", work.url)).send().await.unwrap()), 404);
    let query = json!({"site_id": "shop.test", "metrics": ["visitors"], "date_range": "day"});
    let on_collector = c.post(format!("{}/api/v2/query", collect.url)).bearer_auth(&key).json(&query).send().await;
    assert_eq!(status(on_collector.unwrap()), 404);
    let event = json!({"n": "pageview", "u": "https://shop.test/", "d": "shop.test"});
    assert_eq!(status(c.post(format!("{}/api/event", work.url)).json(&event).send().await.unwrap()), 404);

    // The dashboard's snippet loads the tracker from the collector.
    assert!(add_user(&dir, "owner@example.com", "owner password 1").0);
    let settings = signed_in_page(&work.url, "/sites/shop.test/settings").await;
    let src = format!("src=&quot;{}/js/script.js&quot;", collect.url);
    assert!(settings.contains(&src), "snippet should load {src}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_wait_for_the_worker_and_survive_its_kill_9_exactly_once() {
    let dir = temp_dir("roles-crash");
    cli(&dir, &["site", "add", "shop.test"]);
    let key = create_key(&dir, "reader");
    let collect = Server::start_role(&dir, "collect", &[]);
    let url = collect.url.clone();
    let stop = Arc::new(AtomicBool::new(false));
    // Four senders, each page unique, one visitor per event; no worker runs yet.
    let senders: Vec<_> = (0..4)
        .map(|sender| {
            let (url, stop) = (url.clone(), stop.clone());
            tokio::spawn(async move {
                let c = client();
                let mut acked = Vec::new();
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) && n < 100_000 {
                    n += 1;
                    let path = format!("/e/{sender}/{n}");
                    let r = c
                        .post(format!("{url}/api/event"))
                        .header("user-agent", format!("{BROWSER_UA} sender-{sender}-{n}"))
                        .json(&json!({"n": "pageview", "u": format!("https://shop.test{path}"), "d": "shop.test"}))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status(), 202);
                    acked.push(path);
                }
                acked
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(700)).await;
    // The worker starts with a backlog, and is killed while the load goes on.
    let mut work = Server::start_role(&dir, "work", &[]);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    work.kill9();
    tokio::time::sleep(Duration::from_millis(500)).await;
    work.restart();
    tokio::time::sleep(Duration::from_millis(800)).await;
    stop.store(true, Ordering::Relaxed);
    let mut acked = HashSet::new();
    for s in senders {
        acked.extend(s.await.unwrap());
    }
    assert!(acked.len() > 300, "load was real: {} acknowledged events", acked.len());
    let c = client();
    let all =
        eventually(Duration::from_secs(60), || async { pageviews(&c, &work.url, &key).await >= acked.len() as i64 })
            .await;
    assert!(all, "the worker counted {} of {}", pageviews(&c, &work.url, &key).await, acked.len());
    work.stop();

    // The stored rows themselves: every acknowledged page once, nothing else, nothing twice.
    let rows = stored_pages(&dir);
    for (path, pageviews, visitors) in &rows {
        assert_eq!((*pageviews, *visitors), (1, 1), "{path}");
    }
    let stored: HashSet<String> = rows.into_iter().map(|(p, _, _)| p).collect();
    assert_eq!(stored, acked, "stored pages are exactly the acknowledged ones");
    println!("{} events acknowledged by the collector, each stored once across a worker kill -9", acked.len());
}
