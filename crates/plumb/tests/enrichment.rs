//! Enrichment over real HTTP.
//! - Bots: crawler, headless, automated and User-Agent-less hits are answered like any other (so
//!   bots learn nothing) but not counted; they show up as security counters per site and reason,
//!   as do invalid events.
//!   Server-side events that carry a `user_agent` are judged the same way.
//! - Devices: the User-Agent names the browser, OS and device type; the tracker's window width
//!   settles the device type when the User-Agent cannot.

mod common;

use common::*;
use serde_json::{Value, json};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bot_hits_are_tallied_not_counted() {
    let dir = temp_dir("bots");
    cli(&dir, &["site", "add", "shop.test"]);
    let key = create_key(&dir, "server");
    let server = Server::start(&dir, &[]);
    let url = format!("{}/api/event", server.url);
    let page = |path: &str| json!({"n": "pageview", "u": format!("https://shop.test{path}"), "d": "shop.test"});
    let no_ua = reqwest::Client::new(); // sends no User-Agent at all
    let sends = [
        (Some("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"), page("/g"), None),
        (
            Some(
                "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/124.0 Safari/537.36",
            ),
            page("/h"),
            None,
        ),
        (Some(BROWSER_UA), json!({"n": "pageview", "u": "https://shop.test/wd", "d": "shop.test", "wd": true}), None),
        (None, page("/none"), None),
        // A server-side sender passing on a crawler's User-Agent.
        (
            Some(BROWSER_UA),
            json!({"n": "pageview", "u": "https://shop.test/s", "d": "shop.test", "ip": "203.0.113.9",
                   "user_agent": "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)"}),
            Some(key.as_str()),
        ),
        (Some(BROWSER_UA), page("/human"), None),
    ];
    for (ua, body, key) in sends {
        let mut r = no_ua.post(&url).json(&body);
        if let Some(ua) = ua {
            r = r.header("user-agent", ua);
        }
        if let Some(k) = key {
            r = r.bearer_auth(k);
        }
        let r = r.send().await.unwrap();
        assert_eq!(r.status(), 202, "{body}");
    }
    // An invalid event for the site is refused and counted too (one for an unknown site is not).
    for domain in ["shop.test", "elsewhere.test"] {
        let r = no_ua
            .post(&url)
            .header("user-agent", BROWSER_UA)
            .json(&json!({"n": "pageview", "u": "https://shop.test/", "d": domain, "h": "yes"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
    }
    let c = client();
    let reasons = json!({"automation": 1, "crawler": 2, "headless": 1, "invalid": 1, "no_user_agent": 1});
    let tallied = eventually(Duration::from_secs(10), || async {
        let r =
            c.get(format!("{}/api/v1/sites/shop.test/security", server.url)).bearer_auth(&key).send().await.unwrap();
        r.json::<Value>().await.unwrap()["totals"] == reasons
    })
    .await;
    let answer: Value = c
        .get(format!("{}/api/v1/sites/shop.test/security?hours=2", server.url))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(tallied, "security counters: {answer}");
    assert!(answer["hours"][0]["hour"].as_str().unwrap().ends_with(":00:00Z"), "{answer}");
    // Only the human was counted.
    assert_eq!(
        aggregate(&c, &server.url, &key, "shop.test", &["pageviews", "visitors"], json!("day")).await,
        [json!(1), json!(1)]
    );
    let bad = c
        .get(format!("{}/api/v1/sites/shop.test/security?hours=0", server.url))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_come_from_the_user_agent_and_the_window_width() {
    let dir = temp_dir("devices");
    cli(&dir, &["site", "add", "shop.test"]);
    let key = create_key(&dir, "reader");
    let server = Server::start(&dir, &[]);
    let c = reqwest::Client::new();
    let iphone = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1";
    let sends = [
        (iphone, json!(null)),
        (BROWSER_UA, json!(1440)),
        (BROWSER_UA, json!(390)), // a desktop browser in a phone-sized window
    ];
    for (n, (ua, width)) in sends.into_iter().enumerate() {
        let r = c
            .post(format!("{}/api/event", server.url))
            .header("user-agent", format!("{ua} v{n}"))
            .json(&json!({"n": "pageview", "u": "https://shop.test/", "d": "shop.test", "w": width}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
    }
    let bad = c
        .post(format!("{}/api/event", server.url))
        .header("user-agent", BROWSER_UA)
        .json(&json!({"n": "pageview", "u": "https://shop.test/", "d": "shop.test", "w": "wide"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    assert!(bad.text().await.unwrap().contains("screen_width"));
    let query = json!({"site_id": "shop.test", "metrics": ["visitors"], "date_range": "day",
                       "dimensions": ["visit:device", "visit:browser"], "order_by": [["visit:device", "asc"]]});
    let want = json!([
        {"dimensions": ["Desktop", "Firefox"], "metrics": [1]},
        {"dimensions": ["Mobile", "Firefox"], "metrics": [1]},
        {"dimensions": ["Mobile", "Mobile Safari"], "metrics": [1]},
    ]);
    let cc = client();
    let seen = eventually(Duration::from_secs(10), || async {
        let r = cc.post(format!("{}/api/v2/query", server.url)).bearer_auth(&key).json(&query).send().await.unwrap();
        r.json::<Value>().await.unwrap()["results"] == want
    })
    .await;
    let r = cc.post(format!("{}/api/v2/query", server.url)).bearer_auth(&key).json(&query).send().await.unwrap();
    assert!(seen, "{}", r.json::<Value>().await.unwrap()["results"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_configured_query_parameters_stay_in_page_paths() {
    let dir = temp_dir("keep-query");
    cli(&dir, &["site", "add", "shop.test"]);
    let key = create_key(&dir, "reader");
    let server = Server::start(&dir, &["--keep-query-params", "q,page"]);
    let c = client();
    for url in ["https://shop.test/search/?session=s3cr3t&q=red+shoes", "https://shop.test/blog?utm_source=x&id=7"] {
        let r = c
            .post(format!("{}/api/event", server.url))
            .json(&json!({"n": "pageview", "u": url, "d": "shop.test"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
    }
    let query = json!({"site_id": "shop.test", "metrics": ["pageviews"], "date_range": "day",
                       "dimensions": ["event:page"], "order_by": [["event:page", "asc"]]});
    let want = json!([
        {"dimensions": ["/blog"], "metrics": [1]},
        {"dimensions": ["/search?q=red+shoes"], "metrics": [1]},
    ]);
    let seen = eventually(Duration::from_secs(10), || async {
        let r = c.post(format!("{}/api/v2/query", server.url)).bearer_auth(&key).json(&query).send().await.unwrap();
        r.json::<Value>().await.unwrap()["results"] == want
    })
    .await;
    let r = c.post(format!("{}/api/v2/query", server.url)).bearer_auth(&key).json(&query).send().await.unwrap();
    assert!(seen, "{}", r.json::<Value>().await.unwrap()["results"]);
    let bad = std::process::Command::new(BIN)
        .arg("--data-dir")
        .arg(&dir)
        .args(["serve", "--keep-query-params", "a b"])
        .output()
        .unwrap();
    assert!(!bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("is not a query parameter name"));
}
