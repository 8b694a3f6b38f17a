//! Ranges shorter than days, end to end: visits over the last two days, sent with their
//! timestamps, must give the visitors and pageviews of the 24 local hours up to now (and of the 24
//! before, compared), and of the last 5 and 30 minutes, that an independent count of the same hits
//! expects.

mod common;

use common::*;
use serde_json::{Value, json};
use std::collections::HashSet;
use std::time::Duration;

const SITE: &str = "hours.test";
const HOUR: i64 = 3_600_000;

struct Hit {
    visitor: u32,
    ts_ms: i64,
    pageview: bool,
}

/// Visitor-days (by UTC date: the site is on UTC) with a hit in `[from, until)`, and pageviews there.
fn expected(hits: &[Hit], from: i64, until: i64) -> (usize, usize) {
    let inside = hits.iter().filter(|h| (from..until).contains(&h.ts_ms));
    let days: HashSet<(u32, i64)> = inside.clone().map(|h| (h.visitor, h.ts_ms.div_euclid(24 * HOUR))).collect();
    (days.len(), inside.filter(|h| h.pageview).count())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_day_of_hours_counts_what_the_hits_in_it_say() {
    let dir = temp_dir("periods");
    let key = sites_and_key(&dir, &[], &[(SITE, "UTC")]);
    let server = Server::start(&dir, &[]);
    let c = client();
    let now = chrono::Utc::now().timestamp_millis();
    // The window starts on the hour: the current hour and the 23 before it.
    let start = (now.div_euclid(HOUR) - 23) * HOUR;

    // 150 visitors, each with 1–5 hits spread over the last 47 hours, in time order.
    let mut rng = Rng(0x24_0000_beef);
    let mut hits = Vec::new();
    for visitor in 0..150 {
        let mut ts = now - rng.range(0, 47 * 60) * 60_000;
        for _ in 0..rng.range(1, 5) {
            hits.push(Hit { visitor, ts_ms: ts.min(now), pageview: rng.chance(0.7) });
            ts += rng.range(1, 600) * 60_000;
        }
    }
    // And 20 active in the last half hour, a minute or more apart.
    for visitor in 150..170 {
        for m in [rng.range(0, 4), rng.range(6, 29)] {
            hits.push(Hit { visitor, ts_ms: now - m * 60_000, pageview: rng.chance(0.7) });
        }
    }
    hits.retain(|h| h.ts_ms <= now);
    hits.sort_by_key(|h| h.ts_ms);
    let body: Vec<Value> = hits
        .iter()
        .map(|h| {
            json!({
                "domain": SITE,
                "name": if h.pageview { "pageview" } else { "Signup" },
                "url": format!("https://{SITE}/"),
                "ip": format!("10.24.0.{}", h.visitor),
                "user_agent": format!("Mozilla/5.0 (X11; Linux x86_64) HourVisitor/{}", h.visitor),
                "timestamp": h.ts_ms / 1000,
            })
        })
        .collect();
    for chunk in body.chunks(500) {
        let r = c.post(format!("{}/api/events", server.url)).bearer_auth(&key).json(chunk).send().await.unwrap();
        assert_eq!(r.status(), 202);
    }
    let pageviews = hits.iter().filter(|h| h.pageview).count();
    let counted = eventually(Duration::from_secs(30), || async {
        aggregate(&c, &server.url, &key, SITE, &["pageviews"], json!("all")).await[0] == json!(pageviews)
    })
    .await;
    assert!(counted, "the pipeline did not count {pageviews} pageviews");

    let (visitors, pageviews) = expected(&hits, start, now + 1);
    let (visitors_before, pageviews_before) = expected(&hits, start - 24 * HOUR, start);
    assert!(visitors > 20 && visitors_before > 20, "the hits exercise both windows: {visitors} {visitors_before}");
    println!(
        "24h: {visitors} visitors, {pageviews} pageviews; the 24 hours before: {visitors_before}, {pageviews_before}"
    );
    let q = json!({"site_id": SITE, "metrics": ["visitors", "pageviews"], "date_range": "24h",
                   "include": {"comparisons": {"mode": "previous_period"}}});
    let r = c.post(format!("{}/api/v2/query", server.url)).bearer_auth(&key).json(&q).send().await.unwrap();
    let answer: Value = r.json().await.unwrap();
    let row = &answer["results"][0];
    assert_eq!(row["metrics"], json!([visitors, pageviews]), "{answer}");
    assert_eq!(row["comparison"]["metrics"], json!([visitors_before, pageviews_before]), "{answer}");
    let shown = chrono::DateTime::parse_from_rfc3339(answer["query"]["date_range"][0].as_str().unwrap()).unwrap();
    assert_eq!(shown.timestamp_millis(), start, "{answer}");

    // By hour: the window's 24 hours, each with the visitor-days active in it.
    let q = json!({"site_id": SITE, "metrics": ["visitors"], "date_range": "24h", "dimensions": ["time:hour"],
                   "include": {"time_labels": true}});
    let r = c.post(format!("{}/api/v2/query", server.url)).bearer_auth(&key).json(&q).send().await.unwrap();
    let answer: Value = r.json().await.unwrap();
    assert_eq!(answer["meta"]["time_labels"].as_array().unwrap().len(), 24, "{answer}");
    let hours = answer["results"].as_array().unwrap();
    assert!(hours.len() > 12, "{answer}");
    for row in hours {
        let label = row["dimensions"][0].as_str().unwrap();
        let at =
            chrono::NaiveDateTime::parse_from_str(label, "%Y-%m-%d %H:%M:%S").unwrap().and_utc().timestamp_millis();
        assert!((start..=now).contains(&at), "{label} is outside the window");
        assert_eq!(row["metrics"][0], json!(expected(&hits, at, at + HOUR).0), "{label}");
    }

    // The last 5 and 30 minutes come from memory, not from stored rows: the same count.
    for (range, minutes) in [("realtime", 5), ("30m", 30)] {
        let from = now - minutes * 60_000 + 1;
        let (visitors, pageviews) = expected(&hits, from, now + 1);
        let viewers = hits
            .iter()
            .filter(|h| h.pageview && (from..=now).contains(&h.ts_ms))
            .map(|h| (h.visitor, h.ts_ms.div_euclid(24 * HOUR)))
            .collect::<HashSet<_>>()
            .len();
        let q = json!({"site_id": SITE, "metrics": ["visitors", "pageviews"], "date_range": range});
        let r = c.post(format!("{}/api/v2/query", server.url)).bearer_auth(&key).json(&q).send().await.unwrap();
        let answer: Value = r.json().await.unwrap();
        assert_eq!(answer["results"][0]["metrics"], json!([visitors, pageviews]), "{range}: {answer}");
        let q = json!({"site_id": SITE, "metrics": ["visitors", "pageviews"], "date_range": range,
                       "dimensions": ["event:page"]});
        let r = c.post(format!("{}/api/v2/query", server.url)).bearer_auth(&key).json(&q).send().await.unwrap();
        let answer: Value = r.json().await.unwrap();
        let expected_rows =
            if pageviews > 0 { json!([{"dimensions": ["/"], "metrics": [viewers, pageviews]}]) } else { json!([]) };
        assert_eq!(answer["results"], expected_rows, "{range}: {answer}");
        println!("{range}: {visitors} visitors, {pageviews} pageviews");
    }
    // What memory does not keep is refused, saying what it does.
    let q = json!({"site_id": SITE, "metrics": ["bounce_rate"], "date_range": "30m"});
    let r = c.post(format!("{}/api/v2/query", server.url)).bearer_auth(&key).json(&q).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("answers visitors and pageviews"));
    let q = json!({"site_id": SITE, "metrics": ["visitors"], "date_range": "realtime", "pagination": {"limit": 0}});
    let r = c.post(format!("{}/api/v2/query", server.url)).bearer_auth(&key).json(&q).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("limit must be 1 to 10000"));
}
