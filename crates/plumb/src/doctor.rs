//! `plumb doctor`: checks a configuration and its data directory the way `plumb serve` would use
//! them, and says what it found: each check `ok`, `warn` (works, but look) or `FAIL` (the server
//! would not work as configured). Exits 1 if anything failed. It opens the metadata as every
//! command does, which brings its schema up to date.

use crate::config::Config;
use anyhow::Result;
use plumb_meta::MetaStore;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Free space below this on the data directory's disk is a failure; below ten times it, a warning.
const MIN_FREE_BYTES: u64 = 200 * 1024 * 1024;

enum Finding {
    Ok(String),
    Warn(String),
    Fail(String),
}

pub fn run(config: &Config) -> Result<()> {
    let mut found = Vec::new();
    data_dir(config, &mut found);
    let meta = match crate::serve::open_meta(config) {
        Ok(m) => {
            found.push(Finding::Ok(match &config.meta {
                Some(_) => "metadata on PostgreSQL opens and is up to date".into(),
                None => format!("metadata {} opens and is up to date", config.meta_path().display()),
            }));
            Some(m)
        }
        Err(e) => {
            found.push(Finding::Fail(format!("metadata: {e:#}")));
            None
        }
    };
    if let Some(meta) = &meta {
        metadata(meta.as_ref(), &mut found);
    }
    store(config, &mut found);
    mail(config, &mut found);
    let mut failed = false;
    for f in &found {
        let (mark, text) = match f {
            Finding::Ok(t) => ("ok  ", t),
            Finding::Warn(t) => ("warn", t),
            Finding::Fail(t) => {
                failed = true;
                ("FAIL", t)
            }
        };
        println!("{mark}  {text}");
    }
    if failed {
        anyhow::bail!("some checks failed (above)");
    }
    Ok(())
}

fn data_dir(config: &Config, found: &mut Vec<Finding>) {
    let dir = &config.data_dir;
    let Ok(info) = std::fs::metadata(dir) else {
        found.push(Finding::Warn(format!("data directory {} does not exist yet (the server makes it)", dir.display())));
        return;
    };
    if !info.is_dir() {
        found.push(Finding::Fail(format!("{} is not a directory", dir.display())));
        return;
    }
    let mode = info.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        found.push(Finding::Warn(format!(
            "data directory {} is open to other users (mode {mode:o}); it holds the day's salts and queued hits: chmod 700",
            dir.display()
        )));
    } else {
        found.push(Finding::Ok(format!("data directory {} is private to its owner", dir.display())));
    }
    let probe = dir.join(".plumb-doctor");
    match std::fs::write(&probe, b"x").and_then(|()| std::fs::remove_file(&probe)) {
        Ok(()) => found.push(Finding::Ok("data directory is writable".into())),
        Err(e) => found.push(Finding::Fail(format!("cannot write in {}: {e}", dir.display()))),
    }
    match rustix::fs::statvfs(dir) {
        Ok(s) => {
            let free = s.f_bavail.saturating_mul(s.f_frsize);
            let text = format!("{} MiB free on the data directory's disk", free / (1024 * 1024));
            found.push(match free {
                f if f < MIN_FREE_BYTES => Finding::Fail(format!("{text}: the queue and store need room to write")),
                f if f < 10 * MIN_FREE_BYTES => Finding::Warn(text),
                _ => Finding::Ok(text),
            });
        }
        Err(e) => found.push(Finding::Warn(format!("cannot tell the free disk space: {e}"))),
    }
}

fn metadata(meta: &dyn MetaStore, found: &mut Vec<Finding>) {
    let now = chrono::Utc::now().timestamp_millis();
    // The clock: nothing written before may be dated after now (a clock set back would give
    // visitors new signatures and put hits on the wrong days).
    match meta.list_sites() {
        Ok(sites) if sites.is_empty() => {
            found.push(Finding::Warn("no sites yet: add one with `plumb site add`".into()))
        }
        Ok(sites) => found.push(Finding::Ok(format!("{} site(s)", sites.len()))),
        Err(e) => found.push(Finding::Fail(format!("cannot list sites: {e}"))),
    }
    let latest = meta
        .imports(None)
        .ok()
        .into_iter()
        .flatten()
        .map(|i| i.created_ms)
        .chain(meta.reports(None).ok().into_iter().flatten().map(|r| r.created_ms));
    match latest.max() {
        Some(t) if t > now + 60_000 => found.push(Finding::Fail(format!(
            "the clock is behind: metadata was written at {} by this clock's reckoning, {} s from now",
            chrono::DateTime::from_timestamp_millis(t).unwrap_or_default().to_rfc3339(),
            (t - now) / 1000
        ))),
        _ => found.push(Finding::Ok(format!(
            "clock reads {} (UTC), not behind anything the metadata holds",
            chrono::DateTime::from_timestamp_millis(now).unwrap_or_default().format("%Y-%m-%d %H:%M:%S")
        ))),
    }
    // Salts: made on the first hit of a day; one missing for a live day only means no hit yet.
    let days: Vec<i32> = plumb_meta::live_days(now).collect();
    let mut have = 0;
    for day in &days {
        match meta.salt_for_day(*day, now) {
            Ok(Some(_)) => have += 1,
            Ok(None) => {}
            Err(e) => {
                found.push(Finding::Fail(format!("cannot read the daily salts: {e}")));
                return;
            }
        }
    }
    found.push(Finding::Ok(format!(
        "salts: {have} of the {} dates live in some timezone have one (the rest are made on their first hit)",
        days.len()
    )));
}

fn store(config: &Config, found: &mut Vec<Finding>) {
    if config.store.is_some() {
        found.push(Finding::Ok("event store on ClickHouse (checked when `plumb work` connects)".into()));
        return;
    }
    let path = config.store_path();
    if !path.exists() {
        found.push(Finding::Warn(format!("event store {} does not exist yet (the server makes it)", path.display())));
        return;
    }
    match plumb_store::DuckSnapshot::open(&path).and_then(|s| s.position()) {
        Ok(position) => found.push(Finding::Ok(format!(
            "event store {} is readable (committed up to queue entry {position})",
            path.display()
        ))),
        // DuckDB lets one process open its file; a running server is that process.
        Err(e) if e.to_string().contains("lock") => found.push(Finding::Ok(format!(
            "event store {} is held by a running server (it opens it alone)",
            path.display()
        ))),
        Err(e) => found.push(Finding::Fail(format!("event store {}: {e}", path.display()))),
    }
    if !Path::new(&config.queue_path()).exists() && config.queue.is_none() {
        found.push(Finding::Warn("queue file does not exist yet (the server makes it)".into()));
    }
}

fn mail(config: &Config, found: &mut Vec<Finding>) {
    let Some(url) = &config.smtp_url else {
        found.push(Finding::Ok("no mail configured (reports and mailed alerts are off)".into()));
        return;
    };
    match plumb_notify::outbox::Mailer::new(&url.0, config.mail_from.as_deref()) {
        Err(e) => found.push(Finding::Fail(format!("mail: {e}"))),
        Ok(mailer) => {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
            let reached = runtime.map_err(|e| e.to_string()).and_then(|r| r.block_on(mailer.check()));
            found.push(match reached {
                Ok(()) => Finding::Ok("the SMTP server answers".into()),
                Err(e) => Finding::Fail(format!("the SMTP server: {e}")),
            });
        }
    }
}
