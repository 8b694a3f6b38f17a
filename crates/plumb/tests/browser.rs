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
    for name in [
        "login",
        "dashboard-light",
        "dashboard-dark",
        "dashboard-phone",
        "settings",
        "details",
        "annotations-segments",
        "funnel",
    ] {
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

/// `POST /api/v2/query`: the rows as (first dimension, first metric).
async fn rows(c: &reqwest::Client, url: &str, key: &str, query: Value) -> Vec<(String, i64)> {
    let r = c.post(format!("{url}/api/v2/query")).bearer_auth(key).json(&query).send().await.unwrap();
    let body: Value = r.json().await.unwrap();
    let results = body["results"].as_array().unwrap_or_else(|| panic!("query {query} failed: {body}"));
    let mut rows: Vec<(String, i64)> = results
        .iter()
        .map(|r| (r["dimensions"][0].as_str().unwrap().to_owned(), r["metrics"][0].as_i64().unwrap()))
        .collect();
    rows.sort();
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn automatic_events_from_plumbs_tracker_and_plausibles_npm_tracker_are_counted_once() {
    browser_tools();
    let dir = temp_dir("extensions-browser");
    let sites = ["ext.test", "npm.test", "manual.test", "init.test"];
    for site in sites {
        cli(&dir, &["site", "add", site]);
    }
    let key = create_key(&dir, "reader");
    let server = Server::start(&dir, &[]);
    let out = node(vec!["extensions.mjs".into(), server.url.clone()]).await;
    println!("the pages sent: {out}");
    let port = out["port"].as_u64().unwrap();
    let elsewhere = |path: &str| format!("http://elsewhere.test:{port}{path}");

    let c = client();
    let by_name =
        |site: &str| json!({"site_id": site, "metrics": ["events"], "date_range": "day", "dimensions": ["event:name"]});
    let by_prop = |site: &str, name: &str, prop: &str| {
        json!({"site_id": site, "metrics": ["events"], "date_range": "day",
               "dimensions": [format!("event:props:{prop}")], "filters": [["is", "event:name", [name]]]})
    };
    for site in ["ext.test", "npm.test"] {
        // Pageviews: /, /thanks (after the form), /missing, / again.
        let want_names: Vec<(String, i64)> = [
            ("404", 1),
            ("File Download", 1),
            ("Form: Submission", 1),
            ("Outbound Link: Click", 3),
            ("Signup Click", 1),
            ("pageview", 4),
        ]
        .iter()
        .map(|(n, c)| (n.to_string(), *c))
        .collect();
        let arrived = eventually(Duration::from_secs(10), || async {
            rows(&c, &server.url, &key, by_name(site)).await == want_names
        })
        .await;
        let got = rows(&c, &server.url, &key, by_name(site)).await;
        assert!(arrived, "{site}: events by name are {got:?}, expected {want_names:?}");
        for (name, prop, want) in [
            ("Outbound Link: Click", "url", vec![elsewhere("/blank"), elsewhere("/leave"), elsewhere("/middle")]),
            ("File Download", "url", vec![format!("http://{site}:{port}/files/report.pdf")]),
            ("Signup Click", "plan", vec!["pro".to_owned()]),
            ("404", "path", vec!["/missing".to_owned()]),
        ] {
            let got = rows(&c, &server.url, &key, by_prop(site, name, prop)).await;
            let want: Vec<(String, i64)> = want.into_iter().map(|v| (v, 1)).collect();
            assert_eq!(got, want, "{site}: `{name}` by its `{prop}`");
        }
    }

    // Manual mode: only the pageview the page asked for, at its own URL, with its props.
    let by_page = |site: &str| json!({"site_id": site, "metrics": ["pageviews"], "date_range": "day", "dimensions": ["event:page"]});
    assert_eq!(rows(&c, &server.url, &key, by_page("manual.test")).await, [("/custom/virtual".to_owned(), 1)]);
    assert_eq!(rows(&c, &server.url, &key, by_name("manual.test")).await, [("pageview".to_owned(), 1)]);
    assert_eq!(
        rows(&c, &server.url, &key, by_prop("manual.test", "pageview", "author")).await,
        [("ann".to_owned(), 1)]
    );

    // `plausible.init` on Plumb's script: its domain, hash routing and custom properties.
    assert_eq!(
        rows(&c, &server.url, &key, by_page("init.test")).await,
        [("/start".to_owned(), 1), ("/start#tab".to_owned(), 1)]
    );
    assert_eq!(rows(&c, &server.url, &key, by_prop("init.test", "pageview", "tier")).await, [("gold".to_owned(), 2)]);
    assert_eq!(
        rows(&c, &server.url, &key, by_prop("init.test", "Outbound Link: Click", "url")).await,
        [(elsewhere("/blank"), 1)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_legacy_script_name_is_served_and_does_what_its_name_says() {
    browser_tools();
    let dir = temp_dir("variants-browser");
    let server = Server::start(&dir, &[]);
    // Plausible's legacy extensions, then Plumb's own (see `EXTENSIONS`).
    let (legacy, own) = plumb_collector::tracker::EXTENSIONS.split_at(10);
    assert_eq!(own, ["form-submissions", "404"]);
    let out = node(vec!["variants.mjs".into(), server.url.clone(), legacy.join(","), own.join(",")]).await;
    println!("tracker variants in the browser: {out}");
    assert_eq!(out["variants"], 1 << legacy.len(), "every combination was probed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_site_serving_plumb_on_its_own_paths_keeps_counting_under_an_ad_blocker() {
    browser_tools();
    let dir = temp_dir("adblock-browser");
    cli(&dir, &["site", "add", "site.test"]);
    let key = create_key(&dir, "reader");
    let (script, event) = ("/assets-x/app.js", "/x/ingest");
    let server = Server::start(&dir, &["--script-path", script, "--event-path", event, "--trusted-proxy", "127.0.0.1"]);
    let out = node(vec!["adblock.mjs".into(), server.url.clone(), script.into(), event.into()]).await;
    println!("under the filter list: {out}");
    let blocked: Vec<&str> = out["blocked"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert!(out["rules"].as_u64().unwrap() > 10_000, "EasyPrivacy was loaded: {out}");
    // Plausible's paths are blocked: the script on /default, the event of /custom-script-only.
    assert!(blocked.contains(&"/js/script.js") && blocked.contains(&"/api/event"), "{blocked:?}");
    assert!(!blocked.iter().any(|b| *b == script || *b == event), "own paths blocked: {blocked:?}");

    let c = client();
    let query =
        json!({"site_id": "site.test", "metrics": ["pageviews"], "date_range": "day", "dimensions": ["event:page"]});
    let want = vec![("/custom".to_owned(), 1)];
    let counted =
        eventually(Duration::from_secs(10), || async { rows(&c, &server.url, &key, query.clone()).await == want })
            .await;
    let got = rows(&c, &server.url, &key, query.clone()).await;
    assert!(counted, "pageviews by page: {got:?}, expected {want:?}");
}
