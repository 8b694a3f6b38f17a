//! `plumb backup` of a server under load and `plumb restore` into a fresh data directory: the
//! restored install counts exactly the events the source had accepted when its queue was copied,
//! each once, and knows the sessions open at that moment; a damaged backup, a used data directory
//! and a used backup folder are refused.

mod common;

use common::*;
use serde_json::json;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Sends pageviews of `/b/0`, `/b/1`, … one at a time, each from a visitor of its own, plus
/// every fifth a page of one visitor that keeps coming (`/k/…`); records how many got a 202.
fn load(url: String, stop: Arc<AtomicBool>, acked: Arc<AtomicUsize>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let c = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
        let mut n = 0;
        while !stop.load(Ordering::Relaxed) {
            let (path, agent) = if n % 5 == 4 {
                (format!("/k/{n}"), "Keeper/1".to_owned())
            } else {
                (format!("/b/{n}"), format!("B/{n}"))
            };
            let r = c
                .post(format!("{url}/api/event"))
                .header("user-agent", agent)
                .body(
                    json!({"n": "pageview", "u": format!("https://backup.test{path}"), "d": "backup.test"}).to_string(),
                )
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 202);
            n += 1;
            acked.store(n, Ordering::SeqCst);
        }
    })
}

fn plumb(data_dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(BIN).arg("--data-dir").arg(data_dir).args(args).output().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_under_load_restores_to_what_was_accepted_at_the_backup_once_each() {
    let (dir, dest, restored) = (temp_dir("backup-source"), temp_dir("backup-dest"), temp_dir("backup-restored"));
    cli(&dir, &["site", "add", "backup.test"]);
    let key = create_key(&dir, "reader");
    let mut server = Server::start(&dir, &[]);
    let (stop, acked) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0)));
    let sender = load(server.url.clone(), stop.clone(), acked.clone());
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let before = acked.load(Ordering::SeqCst);
    let backup_dir = dir.clone();
    let dest_arg = dest.join("b");
    let dest_str = dest_arg.to_str().unwrap().to_owned();
    let out = tokio::task::spawn_blocking(move || plumb(&backup_dir, &["backup", &dest_str])).await.unwrap();
    let after = acked.load(Ordering::SeqCst);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("asked the running server for a snapshot"), "the running server took it: {said}");
    println!("plumb backup said: {said}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    sender.await.unwrap();
    server.stop();
    assert!(before > 100, "the load was real: {before} events before the backup");

    // The backup holds password hashes, salts and signatures: its owner's alone.
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dest_arg), 0o700);
    for file in ["meta.db", "queue.db", "events.duckdb"] {
        assert_eq!(mode(&dest_arg.join(file)), 0o600, "{file}");
    }
    // Not into the data directory itself.
    let inside = plumb(&dir, &["backup", dir.join("copies").to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&inside.stderr).contains("inside the data directory"), "{inside:?}");
    assert!(!dir.join("copies").exists());

    // A used folder takes no backup.
    let refused = plumb(&dir, &["backup", dest_arg.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&refused.stderr).contains("is not empty"), "{refused:?}");

    // A damaged file is found before anything is written.
    let damaged = temp_dir("backup-damaged");
    let copy = damaged.join("copy");
    std::fs::create_dir_all(&copy).unwrap();
    for entry in std::fs::read_dir(&dest_arg).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), copy.join(entry.file_name())).unwrap();
    }
    let mut bytes = std::fs::read(copy.join("queue.db")).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 1;
    std::fs::write(copy.join("queue.db"), bytes).unwrap();
    let into = damaged.join("data");
    let out = plumb(&into, &["restore", copy.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not the file the backup wrote"), "{out:?}");
    assert!(!into.join("meta.db").exists(), "nothing restored");
    // No manifest, one that is not JSON, one naming a file outside a data directory: refused.
    let manifest = copy.join("backup.json");
    let written = std::fs::read_to_string(&manifest).unwrap();
    for (text, says) in [
        (None, "is not a Plumb backup"),
        (Some("{not json".to_owned()), "is not a manifest Plumb reads"),
        (Some(written.replacen("\"meta.db\"", "\"../../etc/passwd\"", 1)), "which is no file of a data directory"),
    ] {
        match &text {
            Some(t) => std::fs::write(&manifest, t).unwrap(),
            None => std::fs::remove_file(&manifest).unwrap(),
        }
        let out = plumb(&into, &["restore", copy.to_str().unwrap()]);
        assert!(String::from_utf8_lossy(&out.stderr).contains(says), "{says}: {out:?}");
        assert!(!into.join("meta.db").exists(), "nothing restored");
    }

    let out = plumb(&restored, &["restore", dest_arg.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let again = plumb(&restored, &["restore", dest_arg.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&again.stderr).contains("restore into a new data directory"), "{again:?}");

    // The restored server counts what the queue holds after the store's position, then takes
    // more from the visitor whose session was open at the backup.
    let mut server = Server::start(&restored, &[]);
    let c = client();
    let counted = Mutex::new(Vec::new());
    let settled = eventually(Duration::from_secs(30), || async {
        let pv =
            aggregate(&c, &server.url, &key, "backup.test", &["pageviews"], json!("day")).await[0].as_i64().unwrap();
        let mut seen = counted.lock().unwrap();
        seen.push(pv);
        // The same number for a second, and at least what was accepted before the backup.
        seen.len() >= 10 && seen[seen.len() - 10] == pv && pv >= before as i64
    })
    .await;
    assert!(settled, "the restored server counts: {:?}", counted.lock().unwrap());
    let r = c
        .post(format!("{}/api/event", server.url))
        .header("user-agent", "Keeper/1")
        .body(json!({"n": "pageview", "u": "https://backup.test/k/after", "d": "backup.test"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let pages = Mutex::new(0);
    assert!(
        eventually(Duration::from_secs(10), || async {
            let pv = aggregate(&c, &server.url, &key, "backup.test", &["pageviews"], json!("day")).await[0]
                .as_i64()
                .unwrap();
            *pages.lock().unwrap() = pv;
            pv == counted.lock().unwrap().last().copied().unwrap() + 1
        })
        .await,
        "the event after the restore is counted: {}",
        pages.lock().unwrap()
    );
    server.stop();

    // Exactly the events accepted up to some instant during the backup: a prefix of the sender's
    // sequence, each once; the visitor who kept coming is one visitor, before and after.
    let rows = stored_pages(&restored);
    let n_of = |p: &str| p.rsplit('/').next().unwrap().parse::<usize>().ok();
    let mut numbers: Vec<usize> = rows.iter().filter_map(|(p, _, _)| n_of(p)).collect();
    numbers.sort();
    let k = numbers.len();
    assert_eq!(numbers, (0..k).collect::<Vec<_>>(), "a prefix of what was sent, each once");
    assert!(before <= k && k <= after, "{before} accepted before the backup, {k} restored, {after} after it");
    println!("{before} events accepted before the backup, {k} restored, {after} accepted when it returned");
    let by_path: HashMap<&str, (i64, i64)> = rows.iter().map(|(p, pv, v)| (p.as_str(), (*pv, *v))).collect();
    assert!(by_path.values().all(|(pv, _)| *pv == 1), "each page once");
    let keeper: i64 = rows.iter().filter(|(p, _, _)| p.starts_with("/k/")).map(|(_, _, v)| v).sum();
    assert_eq!(keeper, 1, "the visitor who kept coming is one visitor");
    assert_eq!(by_path.get("/k/after").map(|(_, v)| *v), Some(0), "known from before the restore");
    for d in [dir, dest, restored, damaged] {
        let _ = std::fs::remove_dir_all(d);
    }
}
