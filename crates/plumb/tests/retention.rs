//! A site's retention: the running worker deletes the rows of older days, events sent later for
//! those days are not stored, the dashboard and the settings say what is kept, and a retention
//! out of bounds is refused.

mod common;

use common::*;
use serde_json::{Value, json};
use std::time::Duration;

const SITE: &str = "keep.test";

/// Pageviews over the last 500 days, as the Stats API answers.
async fn pageviews(c: &reqwest::Client, url: &str, key: &str) -> i64 {
    let today = chrono::Utc::now().date_naive();
    let from = today - chrono::Duration::days(500);
    aggregate(c, url, key, SITE, &["pageviews"], json!([from.to_string(), today.to_string()])).await[0]
        .as_i64()
        .unwrap()
}

/// A back-dated pageview `days_ago` days ago (noon UTC), from a visitor of its own.
fn backfill(days_ago: i64) -> Value {
    let noon = (chrono::Utc::now().date_naive() - chrono::Duration::days(days_ago)).and_hms_opt(12, 0, 0).unwrap();
    json!({"name": "pageview", "domain": SITE, "url": format!("https://{SITE}/{days_ago}"),
        "ip": format!("198.51.100.{}", days_ago % 250), "user_agent": format!("Mozilla/5.0 Old/{days_ago}"),
        "timestamp": noon.and_utc().to_rfc3339()})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_past_a_sites_retention_are_deleted_and_not_stored_again() {
    let dir = temp_dir("retention");
    cli(&dir, &["site", "add", SITE]);
    let key = create_key(&dir, "writer");
    assert!(add_user(&dir, "owner@example.com", "owner password 1").0);
    let server = Server::start(&dir, &[]);
    let c = client();
    let send = |days: Vec<i64>| {
        let (c, url, key) = (c.clone(), server.url.clone(), key.clone());
        async move {
            let events: Vec<Value> = days.into_iter().map(backfill).collect();
            let r = c.post(format!("{url}/api/events")).bearer_auth(&key).json(&events).send().await.unwrap();
            assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
        }
    };
    let settles_at = |want: i64| {
        let (c, url, key) = (c.clone(), server.url.clone(), key.clone());
        async move { eventually(Duration::from_secs(20), || async { pageviews(&c, &url, &key).await == want }).await }
    };
    send(vec![1, 100, 250, 400]).await;
    assert!(settles_at(4).await, "the back-filled history is counted");
    assert!(signed_in_page(&server.url, &format!("/sites/{SITE}")).await.contains("Data kept forever"));

    // Six months (this month and the six before it, whole: 181 to 212 days): the days 250 and
    // 400 ago go, the days 1 and 100 ago stay.
    assert_eq!(cli(&dir, &["site", "retention", SITE, "6"]).trim(), format!("{SITE} keeps its data for 6 months"));
    assert!(settles_at(2).await, "rows past the retention are deleted: {}", pageviews(&c, &server.url, &key).await);
    // Sent again for a day past it, nothing is stored; a recent day is.
    send(vec![300, 2]).await;
    assert!(settles_at(3).await, "only the recent event is stored: {}", pageviews(&c, &server.url, &key).await);
    let stats_of_old_days = |from: i64, to: i64| {
        let today = chrono::Utc::now().date_naive();
        json!([(today - chrono::Duration::days(from)).to_string(), (today - chrono::Duration::days(to)).to_string()])
    };
    let old = aggregate(&c, &server.url, &key, SITE, &["pageviews", "visitors"], stats_of_old_days(450, 240)).await;
    assert_eq!(old, [json!(0), json!(0)]);

    // Said where it is in force: the dashboard and the settings, with the owner's form.
    assert!(signed_in_page(&server.url, &format!("/sites/{SITE}")).await.contains("Data kept 6 months"));
    let settings = signed_in_page(&server.url, &format!("/sites/{SITE}/settings")).await;
    assert!(settings.contains("Data kept 6 months") && settings.contains("action=\"/sites/keep.test/retention\""));

    // Out of bounds or not a number: refused with the reason, the retention unchanged.
    for (bad, says) in [("0", "1 to 1200 months"), ("1201", "1 to 1200 months"), ("half", "neither a number")] {
        let out = std::process::Command::new(BIN)
            .arg("--data-dir")
            .arg(&dir)
            .args(["site", "retention", SITE, bad])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(says), "{bad}: {err}");
    }
    assert_eq!(cli(&dir, &["site", "retention", SITE]).trim(), format!("{SITE} keeps its data for 6 months"));
    assert_eq!(cli(&dir, &["site", "retention", SITE, "forever"]).trim(), format!("{SITE} keeps its data forever"));
    // Kept forever again: an old day is stored once more (the worker looks every 500 ms).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    send(vec![300]).await;
    assert!(settles_at(4).await, "back to forever: {}", pageviews(&c, &server.url, &key).await);
    let _ = std::fs::remove_dir_all(&dir);
}
