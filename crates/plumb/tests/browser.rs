//! Real browser: headless Chromium (Debian's, driven by playwright-core).
//! - The tracker: a page carrying it navigates by pushState and by hash, fires events, and the
//!   visit shows up in the Stats API.
//! - The dashboard: sign in, add a site, see visits arrive, filter, change the range, share,
//!   export; screenshots of the main views are saved under the target's tmp dir.
//!
//! Needs `chromium` and `npm`; the npm package is installed on first run.

mod common;

use common::*;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

fn browser_tools() {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&chromium).exists(),
        "this test needs Chromium at {chromium} (Debian: apt-get install chromium), or CHROMIUM=<path>"
    );
    npm_test_packages();
}

/// Runs a script of `tests/browser` and returns the JSON it prints.
async fn node(args: Vec<String>) -> Value {
    let out =
        tokio::task::spawn_blocking(move || Command::new("node").args(&args).current_dir(npm_test_packages()).output())
            .await
            .unwrap()
            .expect("node runs");
    assert!(
        out.status.success(),
        "browser script failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(out.stdout.trim_ascii()).expect("browser script prints JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_works_in_a_real_browser() {
    browser_tools();
    let dir = temp_dir("dashboard-browser");
    let (ok, out) = add_user(&dir, "owner@example.com", "owner password 1");
    assert!(ok, "{out}");
    let server = Server::start(&dir, &[]);
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    let summary = node(vec![
        "dashboard.mjs".into(),
        server.url.clone(),
        "owner@example.com".into(),
        "owner password 1".into(),
        shots.display().to_string(),
    ])
    .await;
    println!("dashboard in the browser: {summary}");
    for name in ["login", "dashboard-light", "dashboard-dark", "dashboard-phone", "settings", "details"] {
        let file = shots.join(format!("{name}.png"));
        let bytes = std::fs::read(&file).unwrap_or_default();
        assert!(
            bytes.starts_with(b"\x89PNG") && bytes.len() > 10_000,
            "screenshot {} is missing or empty",
            file.display()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_browser_visit_is_counted() {
    browser_tools();

    let dir = temp_dir("browser");
    cli(&dir, &["site", "add", "browser.test"]);
    let key = create_key(&dir, "reader");
    let server = Server::start(&dir, &[]);

    let summary = node(vec!["tracker.mjs".into(), server.url.clone(), "browser.test".into()]).await;
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
