//! `kill -9` in the middle of a concurrent load, then restart: every event that got a `202` is
//! counted exactly once, and nothing is counted twice.

mod common;

use common::*;
use serde_json::json;
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_events_survive_kill_9_exactly_once() {
    let dir = temp_dir("crash");
    cli(&dir, &["site", "add", "crash.test"]);
    let key = create_key(&dir, "reader");
    let mut server = Server::start(&dir, &[]);
    let url = server.url.clone();
    let stop = Arc::new(AtomicBool::new(false));

    // 16 senders, each sending unique pages, one visitor per event.
    let mut tasks = Vec::new();
    for sender in 0..16 {
        let (url, stop) = (url.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let c = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
            let mut acked = Vec::new();
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) && n < 100_000 {
                let path = format!("/e/{sender}/{n}");
                n += 1;
                let r = c
                    .post(format!("{url}/api/event"))
                    .header("user-agent", format!("CrashTest/{sender}-{n}"))
                    .body(
                        json!({"n": "pageview", "u": format!("https://crash.test{path}"), "d": "crash.test"})
                            .to_string(),
                    )
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status() == 202 => acked.push(path),
                    Ok(r) => panic!("unexpected status {}", r.status()),
                    // The server is gone (killed); an unanswered event may or may not be stored.
                    Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
            acked
        }));
    }
    tokio::time::sleep(Duration::from_millis(2500)).await;
    server.kill9();
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let mut acked = HashSet::new();
    for t in tasks {
        acked.extend(t.await.unwrap());
    }
    assert!(acked.len() > 500, "load was real: {} acknowledged events", acked.len());

    server.restart();
    let c = client();
    let settled = eventually(Duration::from_secs(60), || async {
        let pv =
            aggregate(&c, &server.url, &key, "crash.test", &["pageviews"], json!("day")).await[0].as_i64().unwrap();
        pv >= acked.len() as i64
    })
    .await;
    assert!(settled, "acknowledged events missing after restart");
    server.stop();

    // Look at the stored rows themselves: one pageview per acknowledged page, none twice.
    let rows = stored_pages(&dir);
    let stored: HashSet<&str> = rows.iter().map(|(p, _, _)| p.as_str()).collect();
    for (path, pageviews, visitors) in &rows {
        assert_eq!(*pageviews, 1, "{path} counted {pageviews} times");
        assert_eq!(*visitors, 1, "{path} visitor counted {visitors} times");
    }
    let missing: Vec<_> = acked.iter().filter(|p| !stored.contains(p.as_str())).collect();
    assert!(missing.is_empty(), "{} acknowledged events lost, e.g. {:?}", missing.len(), missing.first());
    println!(
        "{} acknowledged, {} stored (the rest were committed but unanswered at the kill)",
        acked.len(),
        rows.len()
    );
}
