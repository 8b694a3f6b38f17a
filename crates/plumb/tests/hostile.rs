//! Hostile clients, one test per attack, each over real HTTP against the real binary and each
//! asserting the safe answer: sign-in guesses counted before they are checked, unbounded ranges,
//! event streams that outlive their right, slow bodies, connection floods, keys used beyond their
//! scope, batches cut by limits, events out of time order, neighbours in one IPv6 /64, what the
//! queue keeps of other visitors, sites removed from the command line, invites.

mod common;

use common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const SITE: &str = "shop.test";

/// A client that does not follow redirects.
fn raw() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .default_headers(browser_headers())
        .user_agent(BROWSER_UA)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// The CSRF cookie a sign-in form needs.
async fn csrf(c: &reqwest::Client, url: &str) -> String {
    let r = c.get(format!("{url}/login")).send().await.unwrap();
    let v = r.headers()["set-cookie"].to_str().unwrap();
    v.split(';').next().unwrap().trim_start_matches("plumb_csrf=").to_owned()
}

/// A sign-in attempt; its status and the session cookie it set.
async fn sign_in(c: &reqwest::Client, url: &str, email: &str, password: &str, xff: Option<&str>) -> (u16, String) {
    let token = csrf(c, url).await;
    let mut r = c.post(format!("{url}/login")).header("cookie", format!("plumb_csrf={token}")).form(&[
        ("email", email),
        ("password", password),
        ("csrf", &token),
        ("next", "/sites"),
    ]);
    if let Some(ip) = xff {
        r = r.header("x-forwarded-for", ip);
    }
    let r = r.send().await.unwrap();
    let session = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("plumb_session="))
        .map(|v| v.split(';').next().unwrap().to_owned())
        .unwrap_or_default();
    (r.status().as_u16(), format!("{session}; plumb_csrf={token}"))
}

/// The site's pageviews on `range`, as a key sees them.
async fn pageviews(url: &str, key: &str, range: Value) -> i64 {
    aggregate(&client(), url, key, SITE, &["pageviews"], range).await[0].as_i64().unwrap()
}

/// A shared link of the site made through the settings form, as `cookie`'s user.
async fn new_link(c: &reqwest::Client, url: &str, cookie: &str) -> String {
    let token = cookie.rsplit("plumb_csrf=").next().unwrap();
    let r = c
        .post(format!("{url}/sites/{SITE}/shares"))
        .header("cookie", cookie)
        .form(&[("name", "Public"), ("csrf", token)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let page = c.get(format!("{url}/sites/{SITE}/settings")).header("cookie", cookie).send().await.unwrap();
    let page = page.text().await.unwrap();
    page.split("/share/").nth(1).unwrap().chars().take_while(char::is_ascii_hexdigit).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_concurrent_wrong_passwords_are_five_checks() {
    let dir = temp_dir("hostile-guesses");
    assert!(add_user(&dir, "owner@example.com", "owner password 1").0);
    let server = Server::start(&dir, &[]);
    let c = raw();
    let guesses: Vec<_> = (0..60)
        .map(|i| {
            let (c, url) = (c.clone(), server.url.clone());
            tokio::spawn(
                async move { sign_in(&c, &url, "owner@example.com", &format!("wrong guess {i}"), None).await.0 },
            )
        })
        .collect();
    let mut statuses = Vec::new();
    for g in guesses {
        statuses.push(g.await.unwrap());
    }
    let checked = statuses.iter().filter(|s| **s == 401).count();
    let limited = statuses.iter().filter(|s| **s == 429).count();
    println!("60 concurrent wrong passwords: {checked} checked (401), {limited} refused (429)");
    assert_eq!((checked, limited), (5, 55), "{statuses:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unbounded_ranges_are_refused_at_once_even_for_a_shared_link() {
    let dir = temp_dir("hostile-ranges");
    assert!(add_user(&dir, "owner@example.com", "owner password 1").0);
    cli(&dir, &["site", "add", SITE]);
    let server = Server::start(&dir, &[]);
    let c = raw();
    let (_, owner) = sign_in(&c, &server.url, "owner@example.com", "owner password 1", None).await;
    let slug = new_link(&c, &server.url, &owner).await;
    let v2 =
        |body: Value| c.post(format!("{}/api/v2/query", server.url)).header("x-plumb-share", &slug).json(&body).send();
    let asks = [
        json!({"site_id": SITE, "metrics": ["visitors"], "date_range": ["0000-01-01", "9999-12-31"], "dimensions": ["time:hour"]}),
        json!({"site_id": SITE, "metrics": ["visitors"], "date_range": ["1970-01-01", "2199-12-31"], "dimensions": ["time:day"]}),
        json!({"site_id": SITE, "metrics": ["visitors"], "date_range": ["2020-01-01", "2021-12-31"], "dimensions": ["time:hour"]}),
    ];
    for ask in asks {
        let started = Instant::now();
        let r = v2(ask.clone()).await.unwrap();
        let took = started.elapsed();
        let (status, body) = (r.status(), r.text().await.unwrap());
        assert_eq!(status, 400, "{ask}: {body}");
        assert!(body.contains("between 1970 and 2199") || body.contains("time buckets"), "{body}");
        assert!(took < Duration::from_millis(100), "{ask} took {took:?}");
    }
    let started = Instant::now();
    let r = c
        .get(format!(
            "{}/api/v1/stats/timeseries?site_id={SITE}&period=custom&date=1970-01-01,2199-12-31&interval=hour",
            server.url
        ))
        .header("x-plumb-share", &slug)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(started.elapsed() < Duration::from_millis(100));
    // Months over the longest range fit.
    let r = v2(json!({"site_id": SITE, "metrics": ["visitors"], "date_range": ["1970-01-01", "2199-12-31"], "dimensions": ["time:month"]}))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// Reads an event stream until it ends; how long after `from` it ended (`None`: still open after
/// `limit`).
async fn stream_ends(mut r: reqwest::Response, from: Instant, limit: Duration) -> Option<Duration> {
    loop {
        let left = limit.saturating_sub(from.elapsed());
        match tokio::time::timeout(left, r.chunk()).await {
            Err(_) => return None,
            Ok(Ok(Some(_))) => continue,
            Ok(_) => return Some(from.elapsed()),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_streams_end_within_seconds_of_losing_their_right() {
    let dir = temp_dir("hostile-streams");
    assert!(add_user(&dir, "owner@example.com", "owner password 1").0);
    assert!(add_user(&dir, "viewer@example.com", "viewer password 1").0);
    assert!(add_user(&dir, "leaver@example.com", "leaver password 1").0);
    cli(&dir, &["site", "add", SITE]);
    cli(&dir, &["member", "add", SITE, "--email", "viewer@example.com", "--role", "viewer"]);
    cli(&dir, &["member", "add", SITE, "--email", "leaver@example.com", "--role", "viewer"]);
    let key = create_key_with(&dir, "streamer", &["--scope", "stats:read"]);
    let server = Server::start(&dir, &[]);
    let c = raw();
    let url = &server.url;
    let stream = |header: (&'static str, String)| {
        c.get(format!("{url}/api/v1/stats/realtime/stream?site_id={SITE}")).header(header.0, header.1).send()
    };
    let (_, owner) = sign_in(&c, url, "owner@example.com", "owner password 1", None).await;
    let (_, viewer) = sign_in(&c, url, "viewer@example.com", "viewer password 1", None).await;
    let (_, leaver) = sign_in(&c, url, "leaver@example.com", "leaver password 1", None).await;
    let slug = new_link(&c, url, &owner).await;

    // Per caller, at most five at once.
    let mut open = Vec::new();
    for _ in 0..5 {
        let r = stream(("authorization", format!("Bearer {key}"))).await.unwrap();
        assert_eq!(r.status(), 200);
        open.push(r);
    }
    let sixth = stream(("authorization", format!("Bearer {key}"))).await.unwrap();
    assert_eq!(sixth.status(), 429, "a sixth stream of one caller");
    let by_key = open.pop().unwrap();
    drop(open);

    let by_link = stream(("x-plumb-share", slug.clone())).await.unwrap();
    let by_member = stream(("cookie", viewer.clone())).await.unwrap();
    let by_session = stream(("cookie", leaver.clone())).await.unwrap();
    for r in [&by_link, &by_member, &by_session, &by_key] {
        assert_eq!(r.status(), 200);
    }
    let limit = Duration::from_secs(5);
    // Revoke the link, remove the member, log out everywhere, revoke the key.
    let token = owner.rsplit("plumb_csrf=").next().unwrap();
    let t = Instant::now();
    let r = c
        .post(format!("{url}/sites/{SITE}/shares/{slug}/delete"))
        .header("cookie", &owner)
        .form(&[("csrf", token)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let link_ended = stream_ends(by_link, t, limit).await;
    let t = Instant::now();
    cli(&dir, &["member", "remove", SITE, "--email", "viewer@example.com"]);
    let member_ended = stream_ends(by_member, t, limit).await;
    let t = Instant::now();
    let token = leaver.rsplit("plumb_csrf=").next().unwrap();
    let r = c
        .post(format!("{url}/account/logout-everywhere"))
        .header("cookie", &leaver)
        .form(&[("csrf", token)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let session_ended = stream_ends(by_session, t, limit).await;
    let t = Instant::now();
    cli(&dir, &["key", "revoke", "streamer"]);
    let key_ended = stream_ends(by_key, t, limit).await;
    println!(
        "streams ended after: link revoked {link_ended:?}, member removed {member_ended:?}, logged out everywhere \
         {session_ended:?}, key revoked {key_ended:?}"
    );
    for (what, ended) in
        [("link", link_ended), ("member", member_ended), ("session", session_ended), ("key", key_ended)]
    {
        assert!(ended.is_some(), "the {what}'s stream was still open after {limit:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_session_does_not_keep_another_visitors_entries_in_the_queue() {
    let dir = temp_dir("hostile-queue");
    cli(&dir, &["site", "add", SITE]);
    let server = Server::start(&dir, &["--queue-retention", "2s"]);
    let c = browser_without_user_agent();
    let hit = |ua: &'static str, path: String| {
        c.post(format!("{}/api/event", server.url))
            .header("user-agent", ua)
            .json(&json!({"n": "pageview", "u": format!("https://{SITE}{path}"), "d": SITE}))
            .send()
    };
    const STAYING: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0";
    const PASSING: &str = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15";
    assert_eq!(hit(STAYING, "/staying-0".into()).await.unwrap().status(), 202);
    assert_eq!(hit(PASSING, "/passer-by-marker".into()).await.unwrap().status(), 202);
    let on_disk = |marker: &str| {
        ["queue.db", "queue.db-wal"].iter().any(|f| {
            let bytes = std::fs::read(dir.join(f)).unwrap_or_default();
            bytes.windows(marker.len()).any(|w| w == marker.as_bytes())
        })
    };
    assert!(on_disk("/passer-by-marker"), "the entry is on disk at first");
    // The first visitor stays active, a hit every 300 ms; the other left. Retention is 2 s; the
    // write-ahead log is emptied every few seconds under load.
    let started = Instant::now();
    let mut gone_after = None;
    let mut n = 1;
    while started.elapsed() < Duration::from_secs(15) {
        assert_eq!(hit(STAYING, format!("/staying-{n}")).await.unwrap().status(), 202);
        n += 1;
        if gone_after.is_none() && !on_disk("/passer-by-marker") {
            gone_after = Some(started.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    println!("the passer-by's entry left the queue's files after {gone_after:?}, the other visitor still active");
    assert!(gone_after.is_some(), "another visitor's entry stayed on disk for 15 s");
    assert!(on_disk(&format!("/staying-{}", n - 1)), "the active session's entries are kept for replay");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn neighbours_in_one_ipv6_64_share_a_limit_and_proxies_pass_on_the_visitor() {
    let dir = temp_dir("hostile-v6");
    assert!(add_user(&dir, "owner@example.com", "owner password 1").0);
    for name in ["a", "b", "c", "d"] {
        assert!(add_user(&dir, &format!("{name}@example.com"), &format!("{name} password 1")).0);
    }
    cli(&dir, &["site", "add", SITE]);
    let server = Server::start(&dir, &["--trusted-proxy", "127.0.0.1", "--ip-rate-limit", "1"]);
    let c = raw();
    let send = |xff: &'static str| {
        c.post(format!("{}/api/event", server.url))
            .header("x-forwarded-for", xff)
            .json(&json!({"n": "pageview", "u": format!("https://{SITE}/"), "d": SITE}))
            .send()
    };
    for _ in 0..5 {
        assert_eq!(send("2001:db8:1:2::1").await.unwrap().status(), 202, "a burst of five");
    }
    assert_eq!(send("2001:db8:1:2:ffff:ffff:ffff:ffff").await.unwrap().status(), 429, "same /64");
    assert_eq!(send("2001:db8:1:3::1").await.unwrap().status(), 202, "the next /64");

    // Sign-in limits key on the visitor behind the proxy: twenty failures from one address lock
    // out that address only.
    for name in ["a", "b", "c", "d"] {
        for _ in 0..5 {
            let (status, _) =
                sign_in(&c, &server.url, &format!("{name}@example.com"), "wrong guess!", Some("203.0.113.1")).await;
            assert_eq!(status, 401);
        }
    }
    let (status, _) = sign_in(&c, &server.url, "owner@example.com", "owner password 1", Some("203.0.113.1")).await;
    assert_eq!(status, 429, "the guessing address is out of tries");
    let (status, _) = sign_in(&c, &server.url, "owner@example.com", "owner password 1", Some("203.0.113.2")).await;
    assert_eq!(status, 303, "everyone else signs in");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_send_only_where_they_may_and_guessing_them_is_rate_limited() {
    let dir = temp_dir("hostile-keys");
    cli(&dir, &["site", "add", SITE]);
    cli(&dir, &["site", "add", "other.test"]);
    let reader = create_key_with(&dir, "reader", &["--scope", "stats:read"]);
    let elsewhere = create_key_with(&dir, "elsewhere", &["--scope", "events:write", "--site", "other.test"]);
    let writer = create_key_with(&dir, "writer", &["--scope", "events:write", "--site", SITE]);
    let server = Server::start(&dir, &["--ip-rate-limit", "1"]);
    let c = client();
    let send = |key: &str| {
        c.post(format!("{}/api/event", server.url))
            .bearer_auth(key)
            .json(&json!({"n": "pageview", "u": format!("https://{SITE}/"), "d": SITE}))
            .send()
    };
    for (key, what) in [(&reader, "a stats:read key"), (&elsewhere, "a key for another site")] {
        let r = send(key).await.unwrap();
        assert_eq!(r.status(), 403, "{what} is not a trusted sender here");
        assert!(r.text().await.unwrap().contains("needs events:write on that site"));
    }
    // A key allowed to send is not held to the browsers' per-address limit (1/s, burst 5).
    for _ in 0..20 {
        assert_eq!(send(&writer).await.unwrap().status(), 202);
    }
    // Made-up keys cost the address: five refusals, then 429 without a look-up.
    for i in 0..5 {
        assert_eq!(send(&format!("not-a-key-{i}")).await.unwrap().status(), 401);
    }
    assert_eq!(send("not-a-key-6").await.unwrap().status(), 429);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_over_a_limit_are_refused_whole_and_keyed_senders_have_their_own() {
    let dir = temp_dir("hostile-batches");
    cli(&dir, &["site", "add", SITE]);
    let key = create_key(&dir, "backfill");
    let server = Server::start(&dir, &["--site-rate-limit", "5"]);
    let c = client();
    let batch = |n: usize, tag: &str| {
        let events: Vec<Value> =
            (0..n).map(|i| json!({"n": "pageview", "u": format!("https://{SITE}/{tag}/{i}"), "d": SITE})).collect();
        json!(events)
    };
    let post = |body: Value, key: Option<&str>| {
        let mut r = c.post(format!("{}/api/events", server.url)).json(&body);
        if let Some(k) = key {
            r = r.bearer_auth(k);
        }
        r.send()
    };
    // The site's burst is ten: eight pass, the next eight are refused together.
    assert_eq!(post(batch(8, "first"), None).await.unwrap().status(), 202);
    let r = post(batch(8, "second"), None).await.unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    let r = post(batch(11, "large"), None).await.unwrap();
    assert_eq!(r.status(), 413, "more than a burst can ever pass");
    // The browsers' traffic has used up the site's budget; a server-side sender has its own.
    assert_eq!(post(batch(8, "keyed"), Some(&key)).await.unwrap().status(), 202);
    let counted =
        eventually(Duration::from_secs(10), || async { pageviews(&server.url, &key, json!("day")).await == 16 }).await;
    assert!(
        counted,
        "8 + 8 stored, nothing of the refused batch: {}",
        pageviews(&server.url, &key, json!("day")).await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn visits_sent_newest_first_are_counted_as_separate_visits() {
    let dir = temp_dir("hostile-order");
    cli(&dir, &["site", "add", SITE]);
    let key = create_key(&dir, "backfill");
    let server = Server::start(&dir, &[]);
    let day = (chrono::Utc::now() - chrono::Duration::days(3)).format("%Y-%m-%d").to_string();
    // Three visits two hours apart, each two pages a minute apart; newest visit first.
    let mut events = Vec::new();
    for hour in [14, 12, 10] {
        for (minute, page) in [(0, "/landing"), (1, "/next")] {
            events.push(json!({"n": "pageview", "u": format!("https://{SITE}{page}"), "d": SITE,
                "timestamp": format!("{day}T{hour}:{minute:02}:00Z"), "ip": "198.51.100.4",
                "user_agent": BROWSER_UA}));
        }
    }
    let r = client().post(format!("{}/api/events", server.url)).bearer_auth(&key).json(&events).send().await.unwrap();
    assert_eq!(r.status(), 202);
    let range = json!([day, day]);
    let counted = eventually(Duration::from_secs(10), || async {
        aggregate(&client(), &server.url, &key, SITE, &["pageviews"], range.clone()).await[0] == 6
    })
    .await;
    assert!(counted);
    let m =
        aggregate(&client(), &server.url, &key, SITE, &["visitors", "visits", "bounce_rate", "visit_duration"], range)
            .await;
    let m: Vec<f64> = m.iter().map(|v| v.as_f64().unwrap()).collect();
    assert_eq!(m, vec![1.0, 3.0, 0.0, 60.0], "one visitor, three visits of a minute each");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_dashboard_bodies_and_connection_floods_leave_the_collector_alone() {
    let dir = temp_dir("hostile-slow");
    cli(&dir, &["site", "add", SITE]);
    // A quarter of 40 connections for the dashboard and API.
    let server = Server::start(&dir, &["--max-connections", "40"]);
    let addr = server.url.trim_start_matches("http://").to_owned();
    // A sign-in form whose body never arrives: cut off after the body timeout.
    let mut slow = TcpStream::connect(&addr).await.unwrap();
    slow.write_all(b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\nemail=").await.unwrap();
    let started = Instant::now();
    let mut answer = String::new();
    let _ = tokio::time::timeout(Duration::from_secs(15), slow.read_to_string(&mut answer)).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    println!("a stalled dashboard body was answered 408 after {:?}", started.elapsed());

    // Twelve dashboard connections kept open: ten get a place, the rest are turned away.
    let mut held = Vec::new();
    let mut statuses = Vec::new();
    for _ in 0..12 {
        let mut s = TcpStream::connect(&addr).await.unwrap();
        s.write_all(b"GET /login HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let mut buf = vec![0u8; 4096];
        let n = s.read(&mut buf).await.unwrap();
        statuses.push(String::from_utf8_lossy(&buf[..n]).split_whitespace().nth(1).unwrap_or_default().to_owned());
        held.push(s);
    }
    // No owner yet: the sign-in page sends browsers to set-up (303); any answer but 503 is a place.
    assert_eq!(statuses.iter().filter(|s| *s != "503").count(), 10, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| *s == "503").count(), 2, "{statuses:?}");
    // The collector still takes events.
    let r = client()
        .post(format!("{}/api/event", server.url))
        .json(&json!({"n": "pageview", "u": format!("https://{SITE}/"), "d": SITE}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_a_site_from_the_command_line_deletes_its_events_while_the_server_runs() {
    let dir = temp_dir("hostile-remove");
    cli(&dir, &["site", "add", SITE]);
    cli(&dir, &["site", "add", "kept.test"]);
    let key = create_key(&dir, "reader");
    let site_id: u32 = cli(&dir, &["site", "list"])
        .lines()
        .find(|l| l.contains(SITE))
        .unwrap()
        .split('\t')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let mut server = Server::start(&dir, &[]);
    let c = client();
    for site in [SITE, "kept.test"] {
        let r = c
            .post(format!("{}/api/event", server.url))
            .json(&json!({"n": "pageview", "u": format!("https://{site}/"), "d": site}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
    }
    assert!(
        eventually(Duration::from_secs(10), || async { pageviews(&server.url, &key, json!("day")).await == 1 }).await
    );
    let out = cli(&dir, &["site", "remove", SITE]);
    assert!(out.contains("the running server deletes its stored events"), "{out}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    server.stop();
    let db = duckdb::Connection::open(dir.join("events.duckdb")).unwrap();
    let count = |table: &str, id: u32| -> i64 {
        db.query_row(&format!("SELECT count(*) FROM {table} WHERE site_id = ?"), [id], |r| r.get(0)).unwrap()
    };
    for table in ["events", "rollup_days", "rollup_visits"] {
        assert_eq!(count(table, site_id), 0, "{table} still holds the removed site's rows");
    }
    assert!(count("events", site_id + 1) > 0, "the other site keeps its rows");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_links_and_sessions_are_rate_limited_like_keys() {
    let dir = temp_dir("hostile-callers");
    assert!(add_user(&dir, "owner@example.com", "owner password 1").0);
    cli(&dir, &["site", "add", SITE]);
    let server = Server::start(&dir, &["--key-rate-limit", "4"]);
    let c = raw();
    let (_, owner) = sign_in(&c, &server.url, "owner@example.com", "owner password 1", None).await;
    let slug = new_link(&c, &server.url, &owner).await;
    let ask = json!({"site_id": SITE, "metrics": ["visitors"], "date_range": "day"});
    for (header, value) in [("x-plumb-share", slug.as_str()), ("cookie", owner.as_str())] {
        let mut statuses = Vec::new();
        for _ in 0..5 {
            let r =
                c.post(format!("{}/api/v2/query", server.url)).header(header, value).json(&ask).send().await.unwrap();
            statuses.push(r.status().as_u16());
        }
        assert_eq!(statuses, [200, 200, 200, 200, 429], "{header}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invites_make_no_owner_reveal_no_account_and_sign_in_stays_on_the_site() {
    let dir = temp_dir("hostile-invites");
    cli(&dir, &["site", "add", SITE]);
    // An invite made before anyone set Plumb up, taken by whoever holds the link.
    let link = cli(&dir, &["invite", SITE, "--email", "stranger@example.com", "--public-url", "http://p.example"]);
    let path = link.lines().last().unwrap().trim_start_matches("http://p.example").to_owned();
    let server = Server::start(&dir, &[]);
    let c = raw();
    // Before set-up the sign-in page redirects; the invite page gives the CSRF cookie.
    let r = c.get(format!("{}{path}", server.url)).send().await.unwrap();
    let token = r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .trim_start_matches("plumb_csrf=")
        .to_owned();
    let r = c
        .post(format!("{}{path}", server.url))
        .header("cookie", format!("plumb_csrf={token}"))
        .form(&[("password", "stranger password"), ("csrf", &token)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303, "the stranger joins the site");
    assert_eq!(c.get(format!("{}/setup", server.url)).send().await.unwrap().status(), 200, "set-up is still open");
    let (added, out) = add_user(&dir, "owner@example.com", "owner password 1");
    assert!(added && out.contains("owner of every site"), "the stranger did not become the owner: {out}");

    // The invite page looks the same whether the address has an account or not.
    let page = |email: &str| {
        let out = cli(&dir, &["invite", SITE, "--email", email, "--public-url", "http://p.example"]);
        let path = out.lines().last().unwrap().trim_start_matches("http://p.example").to_owned();
        let (c, url, email) = (c.clone(), server.url.clone(), email.to_owned());
        async move {
            let text = c.get(format!("{url}{path}")).send().await.unwrap().text().await.unwrap();
            let token: String = text.split("name=\"csrf\" value=\"").nth(1).unwrap().chars().take(64).collect();
            text.replace(&path, "PATH").replace(&email, "EMAIL").replace(&token, "TOKEN")
        }
    };
    assert_eq!(page("stranger@example.com").await, page("new@example.com").await);

    // After signing in, only paths on this site are followed.
    let token = csrf(&c, &server.url).await;
    for (next, to) in
        [("/\t/evil.example", "/sites"), ("//evil.example", "/sites"), ("/sites/shop.test", "/sites/shop.test")]
    {
        let r = c
            .post(format!("{}/login", server.url))
            .header("cookie", format!("plumb_csrf={token}"))
            .form(&[("email", "owner@example.com"), ("password", "owner password 1"), ("csrf", &token), ("next", next)])
            .send()
            .await
            .unwrap();
        assert_eq!(r.headers()["location"], to, "next = {next:?}");
    }
}
