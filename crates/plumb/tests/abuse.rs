//! Abuse defences over loopback, bounded in time: a client flooding the collector is turned away
//! with `429` while another client's events are all accepted and counted; `X-Forwarded-For` is
//! believed only from a trusted proxy, so spoofing it neither splits visitors nor dodges limits.

mod common;

use common::*;
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const CHROME: &str =
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36";

async fn send(c: &reqwest::Client, url: &str, xff: &str, path: &str) -> reqwest::StatusCode {
    c.post(format!("{url}/api/event"))
        .header("user-agent", CHROME)
        .header("x-forwarded-for", xff)
        .json(&json!({"n": "pageview", "u": format!("https://shop.test{path}"), "d": "shop.test"}))
        .send()
        .await
        .unwrap()
        .status()
}

async fn pageviews(c: &reqwest::Client, url: &str, key: &str, page: &str) -> i64 {
    let r = c
        .post(format!("{url}/api/v2/query"))
        .bearer_auth(key)
        .json(&json!({"site_id": "shop.test", "metrics": ["pageviews"], "date_range": "day",
                      "filters": [["is", "event:page", [page]]]}))
        .send()
        .await
        .unwrap();
    r.json::<serde_json::Value>().await.unwrap()["results"][0]["metrics"][0].as_i64().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_client_is_limited_while_another_is_served() {
    let dir = temp_dir("flood");
    cli(&dir, &["site", "add", "shop.test"]);
    let key = create_key(&dir, "reader");
    let server = Server::start(&dir, &["--trusted-proxy", "127.0.0.1", "--ip-rate-limit", "50"]);
    let url = server.url.clone();
    let c = client();
    let flood_for = Duration::from_secs(3);
    let (accepted, limited, other) =
        (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let started = Instant::now();
    let flooders: Vec<_> = (0..4)
        .map(|_| {
            let (c, url, accepted, limited, other) =
                (c.clone(), url.clone(), accepted.clone(), limited.clone(), other.clone());
            tokio::spawn(async move {
                while started.elapsed() < flood_for {
                    match send(&c, &url, "203.0.113.1", "/flood").await.as_u16() {
                        202 => accepted.fetch_add(1, Ordering::Relaxed),
                        429 => limited.fetch_add(1, Ordering::Relaxed),
                        _ => other.fetch_add(1, Ordering::Relaxed),
                    };
                }
            })
        })
        .collect();
    // Meanwhile a second visitor sends one event every 50 ms.
    let mut latencies = Vec::new();
    let mut steady_ok = 0;
    while started.elapsed() < flood_for {
        let t = Instant::now();
        if send(&c, &url, "203.0.113.2", "/steady").await == 202 {
            steady_ok += 1;
        }
        latencies.push(t.elapsed().as_secs_f64() * 1000.0);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for f in flooders {
        f.await.unwrap();
    }
    let flood_secs = started.elapsed().as_secs_f64();
    latencies.sort_by(f64::total_cmp);
    let pct = |p: f64| latencies[((latencies.len() - 1) as f64 * p).round() as usize];
    let (a, l) = (accepted.load(Ordering::Relaxed), limited.load(Ordering::Relaxed));
    println!(
        "flooder: {} requests, {a} accepted, {l} limited (429); steady client: {steady_ok}/{} accepted, \
         latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        a + l,
        latencies.len(),
        pct(0.5),
        pct(0.99),
        pct(1.0)
    );
    assert_eq!(other.load(Ordering::Relaxed), 0, "the flooder got only 202s and 429s");
    assert!(l > 10 * a, "the flood was limited: {a} accepted, {l} limited");
    // 50 a second with a 5-second burst: at most 250 + 50 a second for as long as it lasted.
    let bound = 250.0 + 50.0 * flood_secs + 5.0;
    assert!(a as f64 <= bound, "{a} flood events got through in {flood_secs:.2} s (at most {bound:.0})");
    assert_eq!(steady_ok, latencies.len(), "every event of the second client was accepted");
    let counted = eventually(Duration::from_secs(10), || async {
        pageviews(&c, &url, &key, "/steady").await == steady_ok as i64
            && pageviews(&c, &url, &key, "/flood").await == a as i64
    })
    .await;
    assert!(
        counted,
        "accepted events are counted exactly: {} steady, {} flood",
        pageviews(&c, &url, &key, "/steady").await,
        pageviews(&c, &url, &key, "/flood").await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x_forwarded_for_is_believed_only_from_a_trusted_proxy() {
    let c = client();
    for (trusted, want_visitors) in [(false, 1), (true, 2)] {
        let dir = temp_dir(if trusted { "xff-trusted" } else { "xff-untrusted" });
        cli(&dir, &["site", "add", "shop.test"]);
        let key = create_key(&dir, "reader");
        let mut args = vec!["--ip-rate-limit", "1"];
        if trusted {
            args.extend(["--trusted-proxy", "127.0.0.1"]);
        }
        let server = Server::start(&dir, &args);
        // Two "visitors" that differ only by the address the header claims.
        assert_eq!(send(&c, &server.url, "198.51.100.1", "/a").await, 202);
        assert_eq!(send(&c, &server.url, "198.51.100.2", "/b").await, 202);
        let seen = eventually(Duration::from_secs(10), || async {
            aggregate(&c, &server.url, &key, "shop.test", &["visitors", "pageviews"], json!("day")).await
                == [json!(want_visitors), json!(2)]
        })
        .await;
        let got = aggregate(&c, &server.url, &key, "shop.test", &["visitors", "pageviews"], json!("day")).await;
        assert!(seen, "trusted proxy {trusted}: {got:?}, want {want_visitors} visitors");
        // One event a second with a 5-event burst: from an untrusted peer, new addresses in the
        // header do not make new buckets.
        let mut statuses = Vec::new();
        for i in 3..8 {
            statuses.push(send(&c, &server.url, &format!("198.51.100.{i}"), "/c").await.as_u16());
        }
        let limited = statuses.contains(&429);
        assert_eq!(limited, !trusted, "trusted proxy {trusted}: {statuses:?}");
    }
}

/// Writes raw bytes on a new connection and returns what the server answers before closing
/// (or before `wait` runs out).
async fn raw(addr: &str, send: &[u8], wait: Duration) -> (String, Duration) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let started = Instant::now();
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(send).await.unwrap();
    let mut got = Vec::new();
    let _ = tokio::time::timeout(wait, s.read_to_end(&mut got)).await;
    (String::from_utf8_lossy(&got).into_owned(), started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_bloated_clients_are_cut_off_and_connections_are_capped() {
    let dir = temp_dir("slow");
    cli(&dir, &["site", "add", "shop.test"]);
    let key = create_key(&dir, "reader");
    let server = Server::start(&dir, &["--max-connections", "3"]);
    let addr = server.url.trim_start_matches("http://").to_owned();
    let c = client();

    // Headers that never finish, and a body that never finishes, at the same time.
    let slow_head = raw(&addr, b"POST /api/event HTTP/1.1\r\nHost: x\r\n", Duration::from_secs(20));
    let slow_body = raw(
        &addr,
        b"POST /api/event HTTP/1.1\r\nHost: x\r\nOrigin: https://shop.test\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n\r\n{\"n\":",
        Duration::from_secs(20),
    );
    // Meanwhile the server answers others.
    let ok = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        send(&c, &server.url, "192.0.2.1", "/while-slow").await
    };
    let ((head, head_after), (body, body_after), status) = tokio::join!(slow_head, slow_body, ok);
    assert_eq!(status, 202, "a normal client is served while two slow ones hang");
    assert!(head_after >= Duration::from_secs(9) && head_after < Duration::from_secs(15), "{head_after:?}");
    assert!(!head.starts_with("HTTP/1.1 2"), "unfinished headers got an answer: {head}");
    assert!(body.starts_with("HTTP/1.1 408"), "slow body: {body}");
    assert!(body.contains("did not arrive within") && body_after < Duration::from_secs(15), "{body_after:?} {body}");
    // The slow body counts as invalid for the site its `Origin` names.
    let counted = eventually(Duration::from_secs(10), || async {
        security_totals(&c, &server.url, &key, "shop.test").await == json!({"invalid": 1})
    })
    .await;
    assert!(counted, "{}", security_totals(&c, &server.url, &key, "shop.test").await);

    // A head larger than 16 KiB is refused.
    let big = format!("POST /api/event HTTP/1.1\r\nHost: x\r\nX-Pad: {}\r\n\r\n", "a".repeat(20_000));
    let (answer, _) = raw(&addr, big.as_bytes(), Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "oversized head: {answer}");

    // Three idle connections take every slot; a fourth client waits until one is gone.
    let idle: Vec<tokio::net::TcpStream> = {
        let mut v = Vec::new();
        for _ in 0..3 {
            v.push(tokio::net::TcpStream::connect(&addr).await.unwrap());
        }
        v
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let quick = reqwest::Client::builder().user_agent(BROWSER_UA).timeout(Duration::from_millis(800)).build().unwrap();
    let blocked = quick.get(format!("{}/api/health", server.url)).send().await;
    assert!(blocked.is_err(), "a fourth connection is not served while three are open");
    drop(idle);
    let r = c.get(format!("{}/api/health", server.url)).send().await.unwrap();
    assert_eq!(r.status(), 200, "served once a slot is free");
}

async fn hit(c: &reqwest::Client, url: &str, xff: &str, page: &str) -> u16 {
    c.post(format!("{url}/api/event"))
        .header("user-agent", CHROME)
        .header("x-forwarded-for", xff)
        .json(&json!({"n": "pageview", "u": page, "d": "shop.test"}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Sends until the answer is `want` (or 3 s pass); returns how long that took.
async fn until(c: &reqwest::Client, url: &str, xff: &str, page: &str, want: u16) -> Duration {
    let t = Instant::now();
    while hit(c, url, xff, page).await != want {
        assert!(t.elapsed() < Duration::from_secs(3), "{page} from {xff} never answered {want}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    t.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firewall_rules_take_effect_within_a_second() {
    let dir = temp_dir("firewall");
    cli(&dir, &["site", "add", "shop.test"]);
    let admin = create_key_with(&dir, "admin", &["--scope", "sites:admin", "--scope", "stats:read"]);
    let server = Server::start(&dir, &["--trusted-proxy", "127.0.0.1"]);
    let (c, url) = (client(), server.url.clone());
    let rules = format!("{url}/api/v1/sites/shop.test/firewall");
    assert_eq!(hit(&c, &url, "203.0.113.5", "https://shop.test/").await, 202);

    // By API: a range.
    let r = c
        .post(&rules)
        .bearer_auth(&admin)
        .json(&json!({"kind": "ip", "value": "203.0.113.0/24"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let rule: serde_json::Value = r.json().await.unwrap();
    let took = until(&c, &url, "203.0.113.5", "https://shop.test/", 403).await;
    println!("ip rule in effect after {took:?}");
    assert!(took < Duration::from_millis(1500), "{took:?}");
    assert_eq!(hit(&c, &url, "198.51.100.7", "https://shop.test/").await, 202, "other addresses pass");

    // By CLI, while the server runs: a country (193.99.144.80 is in Germany) and a path.
    cli(&dir, &["block", "add", "shop.test", "country", "de"]);
    cli(&dir, &["block", "add", "shop.test", "path", "/admin/**"]);
    assert!(until(&c, &url, "193.99.144.80", "https://shop.test/", 403).await < Duration::from_millis(1500));
    assert_eq!(hit(&c, &url, "198.51.100.7", "https://shop.test/admin/users").await, 403);
    let listed = cli(&dir, &["block", "list", "shop.test"]);
    assert!(listed.contains("country\tDE") && listed.contains("path\t/admin/**"), "{listed}");

    // Allowed hostnames: others are refused.
    for host in ["*.shop.test", "shop.test"] {
        let r = c
            .post(&rules)
            .bearer_auth(&admin)
            .json(&json!({"kind": "allow_host", "value": host}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    until(&c, &url, "198.51.100.7", "https://copy.evil.test/", 403).await;
    assert_eq!(hit(&c, &url, "198.51.100.7", "https://blog.shop.test/").await, 202);

    // Removing the range lets the address in again; bad rules are 400s that say why.
    let r = c.delete(format!("{rules}/{}", rule["id"])).bearer_auth(&admin).send().await.unwrap();
    assert_eq!(r.status(), 200);
    until(&c, &url, "203.0.113.5", "https://shop.test/", 202).await;
    let r = c.post(&rules).bearer_auth(&admin).json(&json!({"kind": "ip", "value": "300.0.0.1"})).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("is not an IP address or CIDR range"));
    // Every refusal is counted.
    let blocked = eventually(Duration::from_secs(5), || async {
        let r = c.get(format!("{url}/api/v1/sites/shop.test/security")).bearer_auth(&admin).send().await.unwrap();
        r.json::<serde_json::Value>().await.unwrap()["totals"]["blocked"].as_u64().unwrap_or(0) >= 4
    })
    .await;
    assert!(blocked, "blocked hits are counted");
}
