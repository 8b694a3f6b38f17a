//! `plumb import`: other tools' history into the event store's imported rows (see
//! `plumb_query::imported` and `plumb_import`), listed and removed. A run is recorded in metadata
//! before its rows are written and read by queries only once all of them are stored; a later run
//! of the same source replaces it, and a run that fails leaves nothing any answer reads.

mod logs;

use crate::config::Config;
use anyhow::{Context, Result, bail};
use clap::Subcommand;
use plumb_import::Report;
use plumb_import::fathom::{self, FathomDb, FathomSite};
use plumb_meta::{Import, ImportState, MetaStore, Site, validate_domain};
use plumb_pipeline::ImportInbox;
use plumb_query::imported::{Dim, ImportedRow};
use plumb_store::{ClickHouseStore, EventWriter};
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::time::Duration;

/// Why rows made are not written: the site keeps those days no more.
const RETENTION_SKIP: &str = "imported rows of days the site's retention keeps no more";

/// How long a running server may take to store an import's rows.
const STORE_WAIT: Duration = Duration::from_secs(600);

#[derive(Subcommand)]
pub enum ImportCommand {
    /// Import a Fathom Lite database (its SQLite file, or a mysql:// or postgres:// URL): each of
    /// its sites goes to the Plumb site of the host most of its pageviews were on (made if
    /// missing), and its tracking id counts into that site from then on (old snippets' `sid`).
    FathomLite {
        source: String,
        /// The timezone of sites this makes.
        #[arg(long, default_value = "UTC")]
        timezone: String,
        /// Where a Fathom Lite site goes, as FATHOM_ID=DOMAIN (its numeric id or tracking id).
        #[arg(long = "site")]
        sites: Vec<String>,
    },
    /// Import Plausible's CSV export (the zip, or a folder of its CSV files) into a site (made if
    /// missing).
    Plausible {
        source: PathBuf,
        /// The site it goes to.
        #[arg(long)]
        site: String,
        /// The site's timezone, if this makes it.
        #[arg(long, default_value = "UTC")]
        timezone: String,
    },
    /// Import web server access logs (nginx's or Apache's combined format, gzip or plain) into a
    /// site (made if missing): its history from before its snippet, counted as live hits are.
    Logs {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// The site they go to.
        #[arg(long)]
        site: String,
        /// The site's timezone, if this makes it.
        #[arg(long, default_value = "UTC")]
        timezone: String,
    },
    /// List imports (of one site, or of all).
    List { domain: Option<String> },
    /// Remove an import (its id from `plumb import list`) and its rows.
    Remove { id: u32 },
}

pub fn run(config: &Config, cmd: ImportCommand) -> Result<()> {
    let meta = crate::serve::open_meta(config)?;
    let meta = meta.as_ref();
    match cmd {
        ImportCommand::FathomLite { source, timezone, sites } => fathom_lite(config, meta, &source, &timezone, &sites),
        ImportCommand::Plausible { source, site, timezone } => {
            let domain = validate_domain(&site)?;
            let (first, last) = plumb_import::plausible::date_range(&source)?;
            let site = site_or_new(meta, &domain, &timezone)?;
            let label = source.display().to_string();
            // One export of a range is one import: the same range again replaces it.
            let key = format!("{first}..{last}");
            let what = format!("Plausible's export of {first} to {last}");
            let site_id = site.id;
            let report = run_import(config, meta, &site, "plausible", &key, &label, &what, |sink| {
                plumb_import::plausible::read(&source, site_id, sink)
            })?;
            print_report(&report);
            Ok(())
        }
        ImportCommand::Logs { files, site, timezone } => {
            let site = site_or_new(meta, &validate_domain(&site)?, &timezone)?;
            let mut names = Vec::new();
            for f in &files {
                let path = f.canonicalize().with_context(|| format!("cannot read {}", f.display()))?;
                names.push(path.display().to_string());
            }
            // The same files again replace their first import.
            names.sort();
            let key = names.join("\n");
            let label = names.join(", ");
            let what = format!("{} access log file(s)", files.len());
            let (site_id, domain, tz) = (site.id, site.domain.clone(), site.timezone);
            let report = run_import(config, meta, &site, "logs", &key, &label, &what, |sink| {
                logs::read(&files, site_id, &domain, tz, sink)
            })?;
            print_report(&report);
            Ok(())
        }
        ImportCommand::List { domain } => {
            let site = domain.map(|d| crate::site_named(meta, &d)).transpose()?;
            let sites: Vec<Site> = meta.list_sites()?;
            println!("id\tsite\tkind\tdays\trows\tstate\tbreakdowns\tfrom");
            for i in meta.imports(site.map(|s| s.id))? {
                let domain = sites.iter().find(|s| s.id == i.site_id).map_or("?", |s| s.domain.as_str());
                let dims: Vec<&str> = i.dims.iter().filter_map(|d| Dim::from_code(*d)).map(Dim::api_name).collect();
                let days =
                    if i.rows == 0 { "-".to_owned() } else { format!("{}..{}", date(i.first_day), date(i.last_day)) };
                let state = i.state.name();
                println!(
                    "{}\t{domain}\t{}\t{days}\t{}\t{state}\t{}\t{}",
                    i.id,
                    i.kind,
                    i.rows,
                    dims.join(","),
                    i.label
                );
            }
            Ok(())
        }
        ImportCommand::Remove { id } => {
            let import = meta.mark_import_removing(id)?;
            remove(config, meta, &import)?;
            println!("removed import {id} ({} from {}, {} rows)", import.kind, import.label, import.rows);
            Ok(())
        }
    }
}

fn date(day: i32) -> String {
    plumb_core::time::date_of_day(day).to_string()
}

/// Deletes an import's stored rows, then forgets it.
fn remove(config: &Config, meta: &dyn MetaStore, import: &Import) -> Result<()> {
    match &config.store {
        Some(url) => ClickHouseStore::open_exact(url, "import")?.remove_import(import.id)?,
        None => ImportInbox::new(&config.data_dir).remove(&config.store_path(), import.id, STORE_WAIT)?,
    }
    meta.delete_import(import.id)?;
    Ok(())
}

fn fathom_lite(config: &Config, meta: &dyn MetaStore, source: &str, timezone: &str, chosen: &[String]) -> Result<()> {
    let mut db = FathomDb::open(source)?;
    let label = fathom::label(source);
    let sites = db.sites()?;
    if sites.is_empty() {
        bail!("{label} has no sites and no stats");
    }
    let mut imported = 0;
    for site in &sites {
        let Some(domain) = destination(site, chosen)? else {
            eprintln!(
                "skipped Fathom Lite site {} ({}): it has no page stats to tell its host; name one with --site {}=DOMAIN",
                site.id, site.name, site.id
            );
            continue;
        };
        let plumb_site = site_or_new(meta, &domain, timezone)?;
        let key = format!("site {} {}", site.id, site.tracking_id.as_deref().unwrap_or(""));
        let what = format!("Fathom Lite site {} ({})", site.id, site.name);
        let (tz, site_id) = (plumb_site.timezone, plumb_site.id);
        let report = run_import(config, meta, &plumb_site, "fathom-lite", &key, &label, &what, |sink| {
            db.read_site(site, site_id, tz, sink)
        })?;
        if let Some(tracking_id) = &site.tracking_id {
            meta.set_alias(tracking_id, plumb_site.id)?;
            println!("  snippets sending sid={tracking_id} count into {}", plumb_site.domain);
        }
        print_report(&report);
        imported += 1;
    }
    if imported == 0 {
        bail!("nothing imported: no site of {label} has a host; name them with --site ID=DOMAIN");
    }
    Ok(())
}

/// The site named `domain`, made (in `timezone`) if missing.
fn site_or_new(meta: &dyn MetaStore, domain: &str, timezone: &str) -> Result<Site> {
    Ok(match meta.site_by_domain(domain)? {
        Some(s) => s,
        None => {
            let s = meta.add_site(domain, timezone)?;
            println!("added site {} ({})", s.domain, s.timezone);
            s
        }
    })
}

/// Where a Fathom Lite site goes: the domain `--site` names for it, else its main host.
fn destination(site: &FathomSite, chosen: &[String]) -> Result<Option<String>> {
    for choice in chosen {
        let Some((id, domain)) = choice.split_once('=') else {
            bail!("--site {choice}: expected FATHOM_ID=DOMAIN");
        };
        if id == site.id.to_string() || Some(id) == site.tracking_id.as_deref() {
            return Ok(Some(validate_domain(domain)?));
        }
    }
    Ok(site.host.as_deref().map(validate_domain).transpose()?)
}

/// One run: recorded, its rows read into a rows file, checked against the site's other imports,
/// stored, then marked finished (replacing earlier runs of `key`); on failure, whatever was
/// stored is deleted again. Returns the report and the rows stored.
#[allow(clippy::too_many_arguments)]
fn run_import(
    config: &Config,
    meta: &dyn MetaStore,
    site: &Site,
    kind: &str,
    key: &str,
    label: &str,
    what: &str,
    read: impl FnOnce(&mut dyn FnMut(ImportedRow) -> Result<()>) -> Result<Report>,
) -> Result<(Report, u64)> {
    // Days the site's retention keeps no more are not imported.
    let today = plumb_core::time::local_day(site.timezone, chrono::Utc::now().timestamp_millis());
    let kept_from = meta.retention(site.id)?.map(|m| plumb_core::time::first_kept_day(today, m.into()));
    let import = meta.begin_import(site.id, kind, key, label)?;
    println!("importing {what} into {} (import {})", site.domain, import.id);
    // Two imports of the same days would count them twice (another run of this one replaces it).
    let overlap = |r: &Report| -> Result<()> {
        let (Some(first), Some(last)) = (r.first_day, r.last_day) else { return Ok(()) };
        let others = meta.imports(Some(site.id))?;
        let other = others.iter().find(|o| {
            o.state == ImportState::Done
                && (o.kind.as_str(), o.key.as_str()) != (kind, key)
                && o.first_day <= last
                && o.last_day >= first
        });
        match other {
            Some(o) => bail!(
                "its days ({} to {}) overlap import {} ({} from {}, {} to {}); remove that one first (plumb import remove {})",
                date(first),
                date(last),
                o.id,
                o.kind,
                o.label,
                date(o.first_day),
                date(o.last_day),
                o.id
            ),
            None => Ok(()),
        }
    };
    let outcome = load(config, import.id, kept_from, overlap, read).and_then(|(report, stored)| {
        let dims: Vec<u8> = report.dims.iter().copied().collect();
        let (first, last) = (report.first_day.unwrap_or(0), report.last_day.unwrap_or(0));
        let replaced = meta.finish_import(import.id, first, last, &dims, stored)?;
        for old in replaced {
            // This run is in force already: a replaced run left behind is no reason to undo it.
            match remove(config, meta, &old) {
                Ok(()) => println!("  replaced import {}", old.id),
                Err(e) => eprintln!(
                    "  replaced import {}, whose rows are not deleted yet ({e:#}); `plumb import remove {}` deletes them",
                    old.id, old.id
                ),
            }
        }
        Ok((report, stored))
    });
    if outcome.is_err() {
        // Nothing of a failed run may stay: it is in no answer, and its rows go.
        let _ = meta.mark_import_removing(import.id);
        if remove(config, meta, &import).is_err() {
            eprintln!(
                "import {} failed half-way; `plumb import remove {}` deletes what it stored",
                import.id, import.id
            );
        }
    }
    outcome.with_context(|| format!("cannot import {what}; nothing of it is counted"))
}

/// Reads the rows into the import's rows file, then stores them; returns the report and how
/// many rows were stored.
fn load(
    config: &Config,
    id: u32,
    kept_from: Option<i32>,
    check: impl FnOnce(&Report) -> Result<()>,
    read: impl FnOnce(&mut dyn FnMut(ImportedRow) -> Result<()>) -> Result<Report>,
) -> Result<(Report, u64)> {
    let inbox = ImportInbox::new(&config.data_dir);
    let part = inbox.rows_part(id).context("cannot make the import folder")?;
    let file = std::fs::File::create(&part).with_context(|| format!("cannot write {}", part.display()))?;
    let mut out = std::io::BufWriter::new(file);
    let mut line = String::new();
    let mut too_old = 0;
    let report = read(&mut |row: ImportedRow| {
        if kept_from.is_some_and(|d| row.day < d) {
            too_old += 1;
            return Ok(());
        }
        line.clear();
        row.encode(&mut line);
        out.write_all(line.as_bytes()).with_context(|| format!("cannot write {}", part.display()))
    });
    let report = report.and_then(|mut r| {
        out.flush().with_context(|| format!("cannot write {}", part.display()))?;
        if too_old > 0 {
            r.skipped.insert(RETENTION_SKIP.into(), too_old);
            r.first_day = r.first_day.max(kept_from);
        }
        Ok(r)
    });
    let report = match report.and_then(|r| check(&r).map(|()| r)) {
        Ok(r) => r,
        Err(e) => {
            let _ = std::fs::remove_file(&part);
            return Err(e);
        }
    };
    let stored = match &config.store {
        None => inbox.store(&config.store_path(), id, STORE_WAIT)?,
        Some(url) => {
            let mut store = ClickHouseStore::open_exact(url, "import")?;
            let file = std::fs::File::open(&part).with_context(|| format!("cannot read {}", part.display()))?;
            let mut rows = std::io::BufReader::new(file).lines().map(|l| {
                let l = l.map_err(|e| plumb_store::StoreError::Backend(e.to_string()))?;
                ImportedRow::decode(&l).map_err(plumb_store::StoreError::Backend)
            });
            let stored = store.put_import(id, &mut rows);
            let _ = std::fs::remove_file(&part);
            stored?
        }
    };
    Ok((report, stored))
}

fn print_report((r, stored): &(Report, u64)) {
    let days = match (r.first_day, r.last_day) {
        (Some(a), Some(b)) => format!("{} to {}", date(a), date(b)),
        _ => "no days".to_owned(),
    };
    println!("  read {} records; stored {stored} rows, {days}", r.read);
    let live = r.rows.saturating_sub(r.skipped.get(RETENTION_SKIP).copied().unwrap_or(0)).saturating_sub(*stored);
    if live > 0 {
        println!("  left out {live} rows of days the site has live data for (they are counted live)");
    }
    let mut skipped: Vec<(&String, &u64)> = r.skipped.iter().collect();
    skipped.sort();
    for (why, n) in skipped {
        println!("  skipped {n} {why}");
    }
}

/// What `plumb export` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    /// Plausible's CSV export: a zip of sums per day of every breakdown.
    Csv,
    /// The stored rows themselves: a folder with `events.parquet` and `imported.parquet`.
    Parquet,
}

/// `plumb export DOMAIN OUT`: the site's range as Plausible's CSV export, or its stored rows as
/// Parquet, from the event store (a snapshot of it when a running server holds it).
pub fn export(config: &Config, domain: &str, range: &str, out: &std::path::Path, format: ExportFormat) -> Result<()> {
    let meta = crate::serve::open_meta(config)?;
    let site = crate::site_named(meta.as_ref(), domain)?;
    let range_value = match range.split_once(',') {
        Some((from, to)) => serde_json::json!([from.trim(), to.trim()]),
        None => serde_json::Value::String(range.to_owned()),
    };
    let today = plumb_core::time::local_day(site.timezone, chrono::Utc::now().timestamp_millis());
    let range = plumb_query::period::resolve_range(&range_value, today)
        .map_err(|e| anyhow::anyhow!("--date-range: {}", e.0))?;
    let base = plumb_query::Query {
        imports: plumb_web::import_refs(meta.as_ref(), site.id)?,
        ..plumb_query::Query::over(site.id, range)
    };
    let zip = |reader: &dyn plumb_query::SumsBackend| -> Result<String> {
        let bytes = plumb_web::plausible_zip(reader, &base).map_err(|e| anyhow::anyhow!("{}", e.message))?;
        std::fs::write(out, &bytes).with_context(|| format!("cannot write {}", out.display()))?;
        Ok(format!("{} bytes", bytes.len()))
    };
    let write = |reader: &plumb_store::duck::ReaderHandle| -> Result<String> {
        if format == ExportFormat::Csv {
            return zip(reader);
        }
        std::fs::create_dir_all(out).with_context(|| format!("cannot make {}", out.display()))?;
        let ids: Vec<u32> = base.imports.iter().map(|i| i.id).collect();
        let events = reader.write_parquet(site.id, range, None, &out.join("events.parquet"))?;
        let imported = reader.write_parquet(site.id, range, Some(&ids), &out.join("imported.parquet"))?;
        Ok(format!("{events} rows in events.parquet, {imported} in imported.parquet"))
    };
    let done = match &config.store {
        Some(_) if format == ExportFormat::Parquet => {
            bail!(
                "--format parquet reads the embedded event store; on ClickHouse, SELECT … FORMAT Parquet (ClickHouse 19 and later)"
            )
        }
        Some(url) => zip(&plumb_store::ClickHouseReader::open(url, STORE_WAIT)?)?,
        None if !plumb_store::duck::in_use(&config.store_path()) => {
            write(&plumb_store::DuckStore::open(&config.store_path())?.reader(STORE_WAIT)?)?
        }
        None => {
            let handover = plumb_pipeline::Handover::for_export(&config.data_dir);
            let Some(_lock) = handover.lock()? else { bail!("another plumb export is running") };
            for leftover in std::fs::read_dir(handover.dir())?.flatten().filter(|e| e.file_name() != "lock") {
                let _ = std::fs::remove_file(leftover.path());
            }
            let snapshot = handover.snapshot(&config.store_path(), STORE_WAIT, || {
                println!("asked the running server for a snapshot of its event store…")
            });
            // An export needs no queue entry: the hold ends at once.
            let finished = handover.finish();
            let done = snapshot.map_err(anyhow::Error::from).and_then(|s| {
                finished?;
                write(&s.reader(STORE_WAIT)?)
            });
            let _ = std::fs::remove_file(handover.snapshot_path());
            done?
        }
    };
    println!("exported {} ({} to {}) to {}: {done}", site.domain, date(range.from), date(range.to), out.display());
    Ok(())
}
