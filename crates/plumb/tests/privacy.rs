//! After ingestion and the queue window, nothing under the data directory holds a test IP (as
//! text or bytes), a test User-Agent, or a visitor signature; the event schema has no visitor or
//! session identifier column.

mod common;

use common::*;
use plumb_core::signature::visitor_signature;
use plumb_core::time::local_day;
use serde_json::json;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

const IPS: [&str; 3] = ["203.0.113.77", "198.51.100.201", "2001:db8::beef:77"];
const UAS: [&str; 3] = [
    "Mozilla/5.0 PrivacyProbe-Alpha/1.0",
    "Mozilla/5.0 PrivacyProbe-Bravo/2.0",
    "Mozilla/5.0 PrivacyProbe-Charlie/3.0",
];

fn files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() { files(&path, out) } else { out.push(path) }
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_ip_user_agent_or_signature_reaches_disk_after_the_queue_window() {
    let dir = temp_dir("privacy");
    cli(&dir, &["site", "add", "private.test", "--timezone", "Europe/Paris"]);
    let key = create_key(&dir, "ingest");
    let mut server = Server::start(&dir, &["--queue-retention", "2s", "--trusted-proxy", "127.0.0.1"]);
    let c = client();

    // Browser-style hits through a trusted proxy, and server-side hits carrying ip/user_agent.
    for (ip, ua) in IPS.iter().zip(UAS) {
        for path in ["/", "/pricing"] {
            let r = c
                .post(format!("{}/api/event", server.url))
                .header("x-forwarded-for", *ip)
                .header("user-agent", ua)
                .body(
                    json!({"n": "pageview", "u": format!("https://private.test{path}"), "d": "private.test"})
                        .to_string(),
                )
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 202);
        }
        let r = c
            .post(format!("{}/api/events", server.url))
            .bearer_auth(&key)
            .json(&json!([{"n": "Signup", "u": "https://private.test/signup", "d": "private.test", "ip": ip, "user_agent": ua}]))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
    }
    let counted = eventually(Duration::from_secs(10), || async {
        aggregate(&c, &server.url, &key, "private.test", &["visitors", "events"], json!("day")).await
            == [json!(3), json!(9)]
    })
    .await;
    assert!(counted, "events were not counted as 3 visitors and 9 events");

    // The signatures as the collector computed them, from the salt still in the metadata store.
    let now = chrono::Utc::now().timestamp_millis();
    let tz: chrono_tz::Tz = "Europe/Paris".parse().unwrap();
    let day = local_day(tz, now);
    let meta = rusqlite::Connection::open(dir.join("meta.db")).unwrap();
    let salt: Vec<u8> = meta.query_row("SELECT salt FROM salts WHERE day = ?1", [day], |r| r.get(0)).unwrap();
    let site_id: u32 = meta.query_row("SELECT id FROM sites WHERE domain = 'private.test'", [], |r| r.get(0)).unwrap();
    drop(meta);
    let salt: [u8; 16] = salt.try_into().unwrap();
    let signatures: Vec<u64> =
        IPS.iter().zip(UAS).map(|(ip, ua)| visitor_signature(&salt, site_id, day, ip.parse().unwrap(), ua)).collect();

    let mut needles: Vec<(String, Vec<u8>)> = Vec::new();
    for ip in IPS {
        needles.push((format!("ip text {ip}"), ip.as_bytes().to_vec()));
        let bytes = match ip.parse::<IpAddr>().unwrap() {
            IpAddr::V4(v4) => v4.octets().to_vec(),
            IpAddr::V6(v6) => v6.octets().to_vec(),
        };
        needles.push((format!("ip bytes {ip}"), bytes));
    }
    for ua in UAS {
        needles.push((format!("user agent {ua}"), ua.as_bytes().to_vec()));
        needles.push((format!("user agent fragment of {ua}"), ua.split(' ').nth(1).unwrap().as_bytes().to_vec()));
    }
    for sig in &signatures {
        needles.push((format!("signature {sig}"), sig.to_string().into_bytes()));
        needles.push((format!("signature LE {sig}"), sig.to_le_bytes().to_vec()));
        needles.push((format!("signature BE {sig}"), sig.to_be_bytes().to_vec()));
    }
    let scan = |when: &str| {
        let mut all = Vec::new();
        files(&dir, &mut all);
        for file in &all {
            let bytes = std::fs::read(file).unwrap();
            for (what, needle) in &needles {
                assert!(!contains(&bytes, needle), "{when}: {} contains {what}", file.display());
            }
        }
        all.len()
    };

    // Let the queue window pass: processed entries are deleted and the WAL truncated while the
    // server runs; then again after a clean stop.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let running = scan("while running");
    server.stop();
    let stopped = scan("after stop");
    assert!(dir.join("events.duckdb").exists() && dir.join("queue.db").exists());

    let db = duckdb::Connection::open(dir.join("events.duckdb")).unwrap();
    let mut stmt =
        db.prepare("SELECT column_name FROM information_schema.columns WHERE table_name = 'events'").unwrap();
    let columns: Vec<String> = stmt.query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect();
    assert!(columns.contains(&"pathname".to_string()));
    for c in &columns {
        let identifying = ["ip", "user_agent", "visitor_id", "fingerprint"].contains(&c.as_str())
            || ["session", "signature", "hash"].iter().any(|w| c.contains(w));
        assert!(!identifying, "column `{c}` looks like a visitor or session identifier");
    }
    println!("scanned {running} files while running and {stopped} after stop, for {} needles", needles.len());
}
