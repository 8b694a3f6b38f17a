//! Bots over real HTTP: crawler, headless, automated and User-Agent-less hits are answered like
//! any other (so bots learn nothing) but not counted; they show up as security counters per site
//! and reason. Server-side events that carry a `user_agent` are judged the same way.

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
    let c = client();
    let reasons = json!({"automation": 1, "crawler": 2, "headless": 1, "no_user_agent": 1});
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
