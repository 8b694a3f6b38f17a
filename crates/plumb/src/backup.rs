//! `plumb backup DEST` and `plumb restore BACKUP`: an embedded install's metadata, queue and
//! event store, copied while its server runs and put back into a fresh data directory.
//!
//! One consistent cut: the event store's snapshot comes first, taken by the running pipeline
//! between two commits at queue position P (see `plumb_pipeline::handover`); from then the
//! pipeline releases no queue entry until the backup is done, so the queue copied next holds
//! every entry after P (and those of sessions open at P). A restored install is one that stopped
//! right after the queue was copied: its pipeline replays the entries after P, counts them once,
//! and rebuilds open sessions from the earlier ones. The metadata is copied last, so every site an
//! entry names is in it. Each file is copied as it is at one instant (`VACUUM INTO` for the SQLite
//! files), and the manifest, `backup.json`, records each file's size and SHA-256, checked before
//! a restore writes anything.

use crate::config::Config;
use anyhow::{Context, Result, bail};
use plumb_meta::MetaStore;
use plumb_pipeline::Handover;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long to wait for the running server's snapshot.
const SNAPSHOT_WAIT: Duration = Duration::from_secs(600);
/// The manifest's name in a backup.
const MANIFEST: &str = "backup.json";

#[derive(Serialize, Deserialize)]
struct Manifest {
    /// The Plumb that wrote it.
    plumb: String,
    /// When the queue was copied (ms since the epoch): what the backup holds is what the install
    /// had accepted by then.
    taken_ms: i64,
    /// The queue position the event store's rows were committed up to.
    position: u64,
    files: Vec<FileEntry>,
}

#[derive(Serialize, Deserialize)]
struct FileEntry {
    name: String,
    bytes: u64,
    sha256: String,
}

/// The data directory's files a backup holds, by name there and in the backup.
fn files(config: &Config) -> [(PathBuf, &'static str); 3] {
    [(config.meta_path(), "meta.db"), (config.queue_path(), "queue.db"), (config.store_path(), "events.duckdb")]
}

fn refuse_external(config: &Config) -> Result<()> {
    if config.meta.is_some() || config.queue.is_some() || config.store.is_some() {
        bail!(
            "plumb backup and restore copy an embedded install (the data directory's files); back up PostgreSQL, \
             NATS and ClickHouse with their own tools (README: Backups)"
        );
    }
    Ok(())
}

/// A folder that is missing or empty, made if missing, readable by this user alone.
fn empty_dir(dir: &Path) -> Result<()> {
    if dir.exists()
        && std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))?.next().is_some()
    {
        bail!("{} is not empty: a backup goes into a new folder", dir.display());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))
}

/// Makes a file of a backup or a data directory readable by this user alone: it holds password
/// hashes, salts and visitor signatures.
fn private(path: &Path) -> Result<()> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot make {} private", path.display()))
}

fn sha256(path: &Path) -> Result<(u64, String)> {
    let mut file = File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let (mut hash, mut buf, mut bytes) = (Sha256::new(), vec![0; 1 << 20], 0u64);
    loop {
        let n = file.read(&mut buf).with_context(|| format!("cannot read {}", path.display()))?;
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
        bytes += n as u64;
    }
    Ok((bytes, hash.finalize().iter().map(|b| format!("{b:02x}")).collect()))
}

pub fn backup(config: &Config, dest: &Path) -> Result<()> {
    refuse_external(config)?;
    for (path, name) in [(config.meta_path(), "meta.db"), (config.store_path(), "events.duckdb")] {
        if !path.exists() {
            bail!("{} holds no Plumb install (no {name})", config.data_dir.display());
        }
    }
    if let (Some(d), Some(data)) = (resolved(dest), resolved(&config.data_dir))
        && d.starts_with(&data)
    {
        bail!("{} is inside the data directory: a backup goes elsewhere", dest.display());
    }
    empty_dir(dest)?;
    let handover = Handover::for_backup(&config.data_dir);
    let Some(lock) = handover.lock()? else {
        bail!("another plumb backup is running on {}", config.data_dir.display());
    };
    // What an earlier backup left (it was stopped, or it finished): this one starts afresh.
    for leftover in std::fs::read_dir(handover.dir())?.flatten().filter(|e| e.file_name() != "lock") {
        std::fs::remove_file(leftover.path())
            .with_context(|| format!("cannot remove {}", leftover.path().display()))?;
    }
    let snapshot = handover.snapshot(&config.store_path(), SNAPSHOT_WAIT, || {
        println!("asked the running server for a snapshot of its event store…")
    })?;
    let position = snapshot.position()?;
    drop(snapshot);
    let held = copy_while_held(config, &handover, dest);
    // Copied (or not): the server may release entries again.
    let finished = handover.finish().context("cannot end the hold on the queue");
    let written = held.and_then(|taken_ms| finished.map(|()| taken_ms)).and_then(|taken_ms| {
        let manifest = Manifest { plumb: env!("CARGO_PKG_VERSION").to_owned(), taken_ms, position, files: Vec::new() };
        write_rest(config, &handover, dest, manifest)
    });
    // Whatever happened, the snapshot goes: it is a copy of the rows that neither retention nor
    // site deletion would reach.
    let _ = std::fs::remove_file(handover.snapshot_path());
    let manifest = written?;
    drop(lock);
    let total: u64 = manifest.files.iter().map(|f| f.bytes).sum();
    println!(
        "backed up {} into {}: {} files, {:.1} MB; event store at queue position {position}",
        config.data_dir.display(),
        dest.display(),
        manifest.files.len(),
        total as f64 / 1e6
    );
    Ok(())
}

/// Copies the queue, then the metadata, into `dest` while the server holds the queue's entries;
/// returns when the queue was copied.
fn copy_while_held(config: &Config, handover: &Handover, dest: &Path) -> Result<i64> {
    let [(meta, meta_name), (queue, queue_name), _] = files(config);
    if queue.exists() {
        plumb_sqlite::copy(&queue, &dest.join(queue_name)).context("cannot copy the queue")?;
    }
    let taken_ms = chrono::Utc::now().timestamp_millis();
    if handover.hold_lapsed() {
        bail!("the hold on the queue lapsed while the backup ran: entries may be missing; take it again");
    }
    plumb_sqlite::copy(&meta, &dest.join(meta_name)).context("cannot copy the metadata")?;
    Ok(taken_ms)
}

/// Copies the snapshot into `dest`, makes every file private and writes the manifest.
fn write_rest(config: &Config, handover: &Handover, dest: &Path, mut manifest: Manifest) -> Result<Manifest> {
    let names = files(config).map(|(_, name)| name);
    std::fs::copy(handover.snapshot_path(), dest.join(names[2])).context("cannot copy the snapshot")?;
    for name in names {
        let path = dest.join(name);
        if path.exists() {
            private(&path)?;
            let (bytes, sha256) = sha256(&path)?;
            manifest.files.push(FileEntry { name: name.to_owned(), bytes, sha256 });
        }
    }
    std::fs::write(dest.join(MANIFEST), serde_json::to_vec_pretty(&manifest)?).context("cannot write the manifest")?;
    Ok(manifest)
}

/// `path` made absolute with its symbolic links resolved, for the part of it that exists.
fn resolved(path: &Path) -> Option<PathBuf> {
    let absolute = std::path::absolute(path).ok()?;
    let mut existing = absolute.as_path();
    let mut missing = Vec::new();
    while !existing.exists() {
        missing.push(existing.file_name()?);
        existing = existing.parent()?;
    }
    let mut out = existing.canonicalize().ok()?;
    out.extend(missing.into_iter().rev());
    Some(out)
}

/// Copies the backup's files into the data directory and opens each as the server would
/// (migrations of an older backup run now; a file that does not open is reported here, not at
/// the first start). Returns the number of sites and the store's position.
fn put_back(config: &Config, from: &Path, manifest: &Manifest) -> Result<(usize, u64)> {
    for (path, name) in files(config) {
        if manifest.files.iter().any(|f| f.name == name) {
            let part = path.with_extension("part");
            std::fs::copy(from.join(name), &part).with_context(|| format!("cannot write {}", part.display()))?;
            private(&part)?;
            std::fs::rename(&part, &path).with_context(|| format!("cannot write {}", path.display()))?;
        }
    }
    let sites = plumb_meta::SqliteMeta::open(&config.meta_path())?.list_sites()?.len();
    let mut store = plumb_store::DuckStore::open(&config.store_path())?;
    let position = plumb_store::EventWriter::position(&mut store)?;
    if position != manifest.position {
        bail!("the event store is at queue position {position}, the manifest says {}", manifest.position);
    }
    Ok((sites, position))
}

pub fn restore(config: &Config, from: &Path) -> Result<()> {
    refuse_external(config)?;
    let text = std::fs::read_to_string(from.join(MANIFEST))
        .with_context(|| format!("{} is not a Plumb backup (no {MANIFEST})", from.display()))?;
    let manifest: Manifest = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a manifest Plumb reads", from.join(MANIFEST).display()))?;
    let known: Vec<&str> = files(config).iter().map(|(_, name)| *name).collect();
    for f in &manifest.files {
        if !known.contains(&f.name.as_str()) {
            bail!("{MANIFEST} names {}, which is no file of a data directory", f.name);
        }
        let (bytes, sha256) = sha256(&from.join(&f.name))?;
        if (bytes, &sha256) != (f.bytes, &f.sha256) {
            bail!(
                "{} is not the file the backup wrote ({bytes} bytes, SHA-256 {sha256}; the manifest says {} bytes, {}): \
                 nothing restored",
                from.join(&f.name).display(),
                f.bytes,
                f.sha256
            );
        }
    }
    for needed in ["meta.db", "events.duckdb"] {
        if !manifest.files.iter().any(|f| f.name == needed) {
            bail!("the backup has no {needed}: nothing restored");
        }
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&config.data_dir)
        .with_context(|| format!("cannot create data directory {}", config.data_dir.display()))?;
    for (path, _) in files(config) {
        if path.exists() {
            bail!("{} exists: restore into a new data directory (--data-dir)", path.display());
        }
    }
    let restored = put_back(config, from, &manifest);
    let (sites, position) = match restored {
        Ok(found) => found,
        Err(e) => {
            // Nothing half done: the next attempt finds the data directory as this one did.
            for (path, _) in files(config) {
                let beside = ["", ".wal", "-wal", "-shm"].map(|end| PathBuf::from(format!("{}{end}", path.display())));
                for leftover in beside.into_iter().chain([path.with_extension("part")]) {
                    let _ = std::fs::remove_file(leftover);
                }
            }
            return Err(e.context("nothing restored"));
        }
    };
    let taken = chrono::DateTime::from_timestamp_millis(manifest.taken_ms).unwrap_or_default();
    println!(
        "restored the backup of {taken} into {}: {sites} sites, event store at queue position {position}; start \
         plumb serve with --data-dir {} and the queue's entries after it are counted",
        config.data_dir.display(),
        config.data_dir.display()
    );
    Ok(())
}
