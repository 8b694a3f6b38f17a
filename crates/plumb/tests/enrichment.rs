//! Enrichment over real HTTP.
//! - Bots and spam: crawler, headless, automated and User-Agent-less hits, scripts posing as
//!   browsers, visitors faster than people and referrer spam are answered like any other (so
//!   they learn nothing) but not counted; they show up as security counters per site and reason,
//!   as do invalid events and refusals made before the body was read.
//!   Server-side events that carry a `user_agent` are judged by it the same way.
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
    let no_ua = browser_without_user_agent();
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
        // Referrer spam, by referrer (a subdomain of a listed domain) and by `utm_source`.
        (
            Some(BROWSER_UA),
            json!({"n": "pageview", "u": "https://shop.test/", "d": "shop.test",
                                  "r": "https://www.best.semalt.com/crawler"}),
            None,
        ),
        (Some(BROWSER_UA), page("/?utm_source=Free-Share-Buttons.com"), None),
        (Some(BROWSER_UA), page("/human"), None),
        // A server that speaks for a browser visitor with its key needs no browser headers.
        (
            None,
            json!({"n": "pageview", "u": "https://shop.test/server", "d": "shop.test", "ip": "203.0.113.10",
                   "user_agent": BROWSER_UA}),
            Some(key.as_str()),
        ),
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
    // A browser's User-Agent without any of a browser's headers: a script.
    let bare = reqwest::Client::new();
    let r = bare.post(&url).header("user-agent", BROWSER_UA).json(&page("/scripted")).send().await.unwrap();
    assert_eq!(r.status(), 202);
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
    let reasons = json!({"automation": 1, "crawler": 2, "headless": 1, "invalid": 1, "no_user_agent": 1,
                         "scripted": 1, "spam": 2});
    let tallied = eventually(Duration::from_secs(10), || async {
        security_totals(&c, &server.url, &key, "shop.test").await == reasons
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
    // Only the human and the server-side visitor were counted.
    let counted = eventually(Duration::from_secs(10), || async {
        aggregate(&c, &server.url, &key, "shop.test", &["pageviews", "visitors"], json!("day")).await
            == [json!(2), json!(2)]
    })
    .await;
    assert!(
        counted,
        "{:?}",
        aggregate(&c, &server.url, &key, "shop.test", &["pageviews", "visitors"], json!("day")).await
    );
    // The settings page explains each reason.
    assert!(add_user(&dir, "owner@example.com", "owner password 1").0);
    let settings = signed_in_page(&server.url, "/sites/shop.test/settings").await;
    assert!(settings.contains("<code>spam</code>") && settings.contains("Referrer spam"), "{settings}");
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
    let c = browser_without_user_agent();
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
async fn configured_query_parameters_and_www_stay_in_pages() {
    let dir = temp_dir("keep-query");
    cli(&dir, &["site", "add", "shop.test"]);
    let key = create_key(&dir, "reader");
    let server = Server::start(&dir, &["--keep-query-params", "q,page", "--keep-www"]);
    let c = client();
    // The site is found without `www.` (no `domain` given), but the page keeps its hostname.
    for (url, domain) in [
        ("https://shop.test/search/?session=s3cr3t&q=red+shoes", json!("shop.test")),
        ("https://WWW.shop.test/blog?utm_source=x&id=7", json!(null)),
    ] {
        let r = c
            .post(format!("{}/api/event", server.url))
            .json(&json!({"n": "pageview", "u": url, "d": domain}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
    }
    let query = json!({"site_id": "shop.test", "metrics": ["pageviews"], "date_range": "day",
                       "dimensions": ["event:hostname", "event:page"], "order_by": [["event:page", "asc"]]});
    let want = json!([
        {"dimensions": ["www.shop.test", "/blog"], "metrics": [1]},
        {"dimensions": ["shop.test", "/search?q=red+shoes"], "metrics": [1]},
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn visitors_faster_than_people_are_tallied_not_counted() {
    let dir = temp_dir("too-fast");
    cli(&dir, &["site", "add", "shop.test"]);
    let key = create_key(&dir, "server");
    let server = Server::start(&dir, &["--visitor-rate-limit", "10"]);
    let c = browser_without_user_agent();
    let send = |ua: &'static str, n: usize, keyed: bool| {
        let (c, url, key) = (c.clone(), format!("{}/api/event", server.url), key.clone());
        async move {
            for i in 0..n {
                let mut body = json!({"n": "pageview", "u": format!("https://shop.test/{i}"), "d": "shop.test"});
                let mut r = c.post(&url).header("user-agent", ua);
                if keyed {
                    body["ip"] = json!("203.0.113.7");
                    body["user_agent"] = json!(ua);
                    r = r.bearer_auth(&key);
                }
                assert_eq!(r.json(&body).send().await.unwrap().status(), 202);
            }
        }
    };
    // Ten events a minute per visitor: the fast one's last five are a script's; a slow visitor
    // and a server speaking for its visitors (exempt) are counted in full.
    send(BROWSER_UA, 15, false).await;
    send("Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 Version/17.4 Safari/605.1.15", 3, false)
        .await;
    send(BROWSER_UA, 15, true).await;
    let cc = client();
    let counted = eventually(Duration::from_secs(10), || async {
        aggregate(&cc, &server.url, &key, "shop.test", &["pageviews", "visitors"], json!("day")).await
            == [json!(10 + 3 + 15), json!(3)]
    })
    .await;
    let got = aggregate(&cc, &server.url, &key, "shop.test", &["pageviews", "visitors"], json!("day")).await;
    assert!(counted, "{got:?}");
    let tallied = eventually(Duration::from_secs(10), || async {
        security_totals(&cc, &server.url, &key, "shop.test").await == json!({"too_fast": 5})
    })
    .await;
    assert!(tallied, "{}", security_totals(&cc, &server.url, &key, "shop.test").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_before_the_events_are_read_count_for_the_origin_site() {
    let dir = temp_dir("unread");
    cli(&dir, &["site", "add", "shop.test"]);
    let key = create_key(&dir, "reader");
    let server = Server::start(&dir, &["--ip-rate-limit", "1"]);
    let c = client();
    let post = |origin: &'static str, body: &'static str| {
        c.post(format!("{}/api/event", server.url)).header("origin", origin).body(body).send()
    };
    // Bodies that are not events: counted as invalid for the site the request comes from, by
    // its `Origin` or (the pixel) its `Referer`; a site that is not registered counts nothing.
    assert_eq!(post("https://shop.test", "{not json").await.unwrap().status(), 400);
    assert_eq!(post("https://www.shop.test", "[1, 2]").await.unwrap().status(), 400);
    assert_eq!(post("https://other.test", "{not json").await.unwrap().status(), 400);
    let pixel =
        c.get(format!("{}/collect?p=/a", server.url)).header("referer", "https://shop.test/a").send().await.unwrap();
    assert_eq!(pixel.status(), 400, "no `h`");
    // One event a second, a burst of five: the rest are refused before their bodies are read.
    let mut limited = 0;
    for _ in 0..12 {
        let r = post("https://shop.test", r#"{"n":"pageview","u":"https://shop.test/","d":"shop.test"}"#).await;
        limited += u64::from(r.unwrap().status() == 429);
    }
    assert!(limited >= 6, "{limited} of 12 limited");
    let want = json!({"invalid": 3, "rate_limited": limited});
    let tallied = eventually(Duration::from_secs(10), || async {
        security_totals(&c, &server.url, &key, "shop.test").await == want
    })
    .await;
    assert!(tallied, "want {want}, got {}", security_totals(&c, &server.url, &key, "shop.test").await);
}
