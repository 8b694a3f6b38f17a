//! Real browser: headless Chromium (Debian's, driven by playwright-core) loads a page carrying
//! the tracker, navigates by pushState and by hash, fires events, and the visit shows up in the
//! Stats API. Needs `chromium` and `npm`; the npm package is installed on first run.

mod common;

use common::*;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

fn tracker_tests_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tracker/tests")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_browser_visit_is_counted() {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&chromium).exists(),
        "this test needs Chromium at {chromium} (Debian: apt-get install chromium), or CHROMIUM=<path>"
    );
    let tests = tracker_tests_dir();
    if !tests.join("node_modules/playwright-core").exists() {
        let ok = Command::new("npm").args(["ci", "--no-audit", "--no-fund"]).current_dir(&tests).status();
        assert!(ok.is_ok_and(|s| s.success()), "npm ci in tracker/tests failed (needs node and npm)");
    }

    let dir = temp_dir("browser");
    cli(&dir, &["site", "add", "browser.test"]);
    let key = create_key(&dir, "reader");
    let server = Server::start(&dir, &[]);

    let url = server.url.clone();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("node").arg("browser.mjs").arg(&url).arg("browser.test").current_dir(tracker_tests_dir()).output()
    })
    .await
    .unwrap()
    .expect("node runs");
    assert!(out.status.success(), "browser script failed: {}", String::from_utf8_lossy(&out.stderr));
    let summary: Value = serde_json::from_slice(out.stdout.trim_ascii()).expect("browser script prints JSON");
    println!("browser sent: {summary}");
    let sent: Vec<&str> = summary["sent"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    for expected in
        ["Queued /app", "pageview /app", "Signup /app", "pageview /app/settings", "pageview /app/settings#tab2"]
    {
        assert!(sent.contains(&expected), "tracker did not send `{expected}`: {sent:?}");
    }
    assert!(sent.iter().any(|s| s.starts_with("engagement ")), "no engagement ping on leaving: {sent:?}");
    assert_eq!(summary["ignoredSent"], 0, "plumb_ignore must silence the tracker");

    let c = client();
    let metrics = ["visitors", "visits", "pageviews", "events", "bounce_rate"];
    let want = [json!(1), json!(1), json!(3), json!(5), json!(0)];
    let seen = eventually(Duration::from_secs(10), || async {
        aggregate(&c, &server.url, &key, "browser.test", &metrics, json!("day")).await == want
    })
    .await;
    let got = aggregate(&c, &server.url, &key, "browser.test", &metrics, json!("day")).await;
    assert!(seen, "Stats API shows {got:?}, expected {want:?} for {metrics:?}");
}
