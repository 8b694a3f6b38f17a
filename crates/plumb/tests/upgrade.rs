//! Upgrades: a data directory as Plumb 0.1 wrote it (metadata, queue and event store without
//! numbered migrations, the metadata without the tables and columns added since) opens, migrates
//! each file, and answers the same Stats API queries as before; a file from a newer Plumb is
//! refused with a clear error.

mod common;

use common::*;
use serde_json::{Value, json};
use std::time::Duration;

const SITE: &str = "upgrade.test";

async fn answers(url: &str, key: &str) -> Vec<Value> {
    let c = client();
    let mut out = Vec::new();
    for q in [
        json!({"site_id": SITE, "metrics": ["visitors", "visits", "pageviews", "bounce_rate", "events"], "date_range": "day"}),
        json!({"site_id": SITE, "metrics": ["visitors", "pageviews"], "date_range": "day", "dimensions": ["event:page"]}),
        json!({"site_id": SITE, "metrics": ["visitors"], "date_range": "day", "dimensions": ["visit:source"]}),
        json!({"site_id": SITE, "metrics": ["visitors", "events"], "date_range": "day", "dimensions": ["event:goal"]}),
    ] {
        let r = c.post(format!("{url}/api/v2/query")).bearer_auth(key).json(&q).send().await.unwrap();
        assert_eq!(r.status(), 200);
        out.push(r.json::<Value>().await.unwrap()["results"].clone());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_directory_of_the_previous_schema_migrates_and_answers_the_same() {
    let dir = temp_dir("upgrade");
    assert!(add_user(&dir, "owner@example.com", "owner password 1").0);
    cli(&dir, &["site", "add", SITE]);
    cli(&dir, &["goal", "add", SITE, "--event", "Signup"]);
    let key = create_key(&dir, "reader");
    let mut server = Server::start(&dir, &[]);
    let c = client();
    for (name, path, referrer) in
        [("pageview", "/", "https://www.google.com/"), ("pageview", "/pricing", ""), ("Signup", "/pricing", "")]
    {
        let r = c
            .post(format!("{}/api/event", server.url))
            .json(&json!({"n": name, "u": format!("https://{SITE}{path}"), "d": SITE, "r": referrer}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
    }
    let counted =
        eventually(Duration::from_secs(10), || async { answers(&server.url, &key).await[0][0]["metrics"][2] == 2 })
            .await;
    assert!(counted);
    let before = answers(&server.url, &key).await;
    server.stop();

    // Back to the schema Plumb 0.1 wrote: no recorded versions, no invite addresses, no site
    // tombstones, no retentions, no imports.
    let meta = rusqlite::Connection::open(dir.join("meta.db")).unwrap();
    meta.execute_batch(
        "DROP TABLE deleted_sites; DROP TABLE backdated_salts; DROP TABLE site_retention; DROP TABLE imports; \
         DROP TABLE site_aliases; DROP TABLE annotations; DROP TABLE segments; DROP TABLE funnel_steps; \
         DROP TABLE funnels; DROP TABLE reports; DROP TABLE alerts; DROP TABLE webhooks; DROP TABLE outbox; \
         DROP TABLE audit_log; \
         ALTER TABLE shared_links DROP COLUMN min_visitors; \
         ALTER TABLE invites DROP COLUMN email; PRAGMA user_version = 0;",
    )
    .unwrap();
    drop(meta);
    let queue = rusqlite::Connection::open(dir.join("queue.db")).unwrap();
    queue.execute_batch("PRAGMA user_version = 0;").unwrap();
    drop(queue);
    let store = duckdb::Connection::open(dir.join("events.duckdb")).unwrap();
    // Rollups of an older layout are made again from the rows: here, emptied and unlabelled. The
    // event columns added since version 1 go too (their rows get the columns' defaults back).
    store
        .execute_batch(
            "DROP TABLE schema_version; DROP TABLE rollup_layout; DELETE FROM rollup_days; DELETE FROM rollup_visits; \
             DROP TABLE imported;",
        )
        .unwrap();
    for c in plumb_core::schema::event_columns().iter().filter(|c| c.since > 1) {
        store.execute_batch(&format!("ALTER TABLE events DROP COLUMN {}", c.name)).unwrap();
    }
    drop(store);

    let server = Server::start(&dir, &[]);
    assert_eq!(answers(&server.url, &key).await, before, "the same answers after the upgrade");
    // The new parts work: invites for an address, a retention, a funnel, an alert, a webhook, a site
    // removed with its rows.
    cli(&dir, &["invite", SITE, "--email", "new@example.com"]);
    cli(&dir, &["goal", "add", SITE, "--page", "/pricing"]);
    assert!(cli(&dir, &["funnel", "add", SITE, "Sign-up", "Visit /pricing", "Signup"]).contains("(2 steps)"));
    assert!(cli(&dir, &["site", "retention", SITE, "24"]).contains("keeps its data for 24 months"));
    assert!(cli(&dir, &["alert", "add", SITE, "--kind", "drop", "--threshold", "60"]).contains("drop at 60"));
    assert!(cli(&dir, &["webhook", "add", SITE, "https://hooks.example.com/p"]).contains("signing secret"));
    drop(server);
    let version = |file: &str| -> u32 {
        rusqlite::Connection::open(dir.join(file)).unwrap().query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap()
    };
    assert_eq!((version("meta.db"), version("queue.db")), (plumb_meta::SqliteMeta::SCHEMA_VERSION, 1));
    let store = duckdb::Connection::open(dir.join("events.duckdb")).unwrap();
    let v: u32 = store.query_row("SELECT max(version) FROM schema_version", [], |r| r.get(0)).unwrap();
    assert_eq!(v, plumb_core::schema::version());
    drop(store);

    // A file from a newer Plumb is refused, not guessed at.
    let meta = rusqlite::Connection::open(dir.join("meta.db")).unwrap();
    meta.execute_batch("PRAGMA user_version = 99;").unwrap();
    drop(meta);
    let out = std::process::Command::new(BIN).arg("--data-dir").arg(&dir).args(["site", "list"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && err.contains(&format!(
                "schema version 99, newer than this Plumb knows ({})",
                plumb_meta::SqliteMeta::SCHEMA_VERSION
            )),
        "{err}"
    );
}
