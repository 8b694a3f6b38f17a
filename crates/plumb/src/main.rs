//! `plumb`: one binary for every role. `serve` runs collector, pipeline and API in one process on
//! the embedded backends, `collect` and `work` run them apart on one data directory; `site`,
//! `goal`, `key`, `user`, `member`, `block`, `annotation`, `segment`, `funnel`, `report`, `alert`,
//! `webhook` and `invite` manage
//! metadata (also while a server runs); `migrate` moves an embedded install onto a cluster's backends; `backup` and `restore`
//! copy one; `import` brings other tools' history in.

mod backup;
mod config;
mod doctor;
mod http;
mod import;
mod metrics;
mod migrate;
mod notices;
mod serve;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use config::{CollectorArgs, Config, ServeArgs, ServerArgs, WorkerArgs};
use plumb_meta::{GoalKind, MetaError, MetaStore, NewUser, Role, RuleKind, Scope, Site, validate_domain};
use serve::Roles;
use std::path::PathBuf;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "plumb", version, about = "Privacy-first, cookieless web analytics")]
struct Cli {
    /// TOML configuration file (flags and PLUMB_* variables override it).
    #[arg(long, env = "PLUMB_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Where Plumb keeps its data [default: ./plumb-data].
    #[arg(long, env = "PLUMB_DATA_DIR", global = true)]
    data_dir: Option<PathBuf>,
    /// Metadata (sites, keys, users, salts) on PostgreSQL, postgres://USER[:PASSWORD]@HOST[:PORT]/DB,
    /// shared by every collector and worker [default: meta.db in the data directory].
    #[arg(long, env = "PLUMB_META", global = true, value_parser = config::parse_meta_url)]
    meta: Option<String>,
    /// The queue on NATS JetStream, nats://HOST:PORT (the server must sync every write:
    /// `jetstream { sync_interval: always }`) [default: queue.db in the data directory].
    #[arg(long, env = "PLUMB_QUEUE", global = true, value_parser = config::parse_queue_url)]
    queue: Option<String>,
    /// The event store on ClickHouse, clickhouse://HOST:HTTP_PORT/DB (the database is made if
    /// missing) [default: events.duckdb in the data directory].
    #[arg(long, env = "PLUMB_STORE", global = true, value_parser = config::parse_store_url)]
    store: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run collector, pipeline, API and dashboard in one process.
    Serve(ServeArgs),
    /// Run the collector alone: events in, onto the queue; run `plumb work` beside it on the same
    /// data directory.
    Collect {
        #[command(flatten)]
        server: ServerArgs,
        #[command(flatten)]
        collector: CollectorArgs,
    },
    /// Run the pipeline, the API and the dashboard alone, working off the queue `plumb collect`
    /// fills.
    Work {
        #[command(flatten)]
        server: ServerArgs,
        #[command(flatten)]
        worker: WorkerArgs,
        /// Read only these queue partitions (NATS; e.g. 0-7 on one worker, 8-15 on another), with
        /// the event store on ClickHouse, where workers write side by side [default: all].
        #[arg(long, env = "PLUMB_PARTITIONS", value_parser = config::parse_partitions)]
        partitions: Option<config::PartitionList>,
    },
    /// Run the API and the dashboard alone, over the event store on ClickHouse (`--store`), on as
    /// many hosts as needed; current visitors come from the workers over NATS (`--queue`).
    Web {
        #[command(flatten)]
        server: ServerArgs,
        #[command(flatten)]
        worker: WorkerArgs,
    },
    /// Move this install (the data directory's metadata, queue and event store) onto PostgreSQL,
    /// NATS and ClickHouse (`--meta`, `--queue`, `--store`) while its server goes on counting;
    /// run again to go on after a stop. README's "Moving to a cluster" says how the cut-over works.
    Migrate,
    /// Check a configuration and its data directory as `plumb serve` would use them
    /// (permissions, free disk, clock, salts, metadata, event store, SMTP) and say what is wrong.
    Doctor(ServeArgs),
    /// Copy this install (the data directory's metadata, queue and event store) into DEST, a new
    /// folder, at one instant, while its server goes on counting.
    Backup {
        /// Where the backup goes: a folder that is missing or empty.
        dest: PathBuf,
    },
    /// Put a backup made by `plumb backup` into the data directory (`--data-dir`), which must not
    /// hold an install yet; then start the server on it.
    Restore {
        /// The backup's folder.
        backup: PathBuf,
    },
    /// Bring history in from Fathom Lite, Plausible's CSV export or access logs; list and remove
    /// imports.
    #[command(subcommand)]
    Import(import::ImportCommand),
    /// Write a site's stats for a range as Plausible's CSV export (a zip, as the dashboard's
    /// export), or its stored rows as Parquet files.
    Export {
        domain: String,
        /// Where the zip (or, for Parquet, the folder) goes.
        out: PathBuf,
        /// A period (7d, 30d, month, year, 12mo, all…) or FROM,TO dates (YYYY-MM-DD).
        #[arg(long, default_value = "all")]
        date_range: String,
        #[arg(long, value_enum, default_value = "csv")]
        format: import::ExportFormat,
    },
    /// Manage sites.
    #[command(subcommand)]
    Site(SiteCommand),
    /// Manage API keys (Stats API and server-side ingestion).
    #[command(subcommand)]
    Key(KeyCommand),
    /// Manage a site's goals (conversions by page or custom event).
    #[command(subcommand)]
    Goal(GoalCommand),
    /// Manage dashboard users.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage who has a role on a site (users added with `plumb user add`).
    #[command(subcommand)]
    Member(MemberCommand),
    /// Manage a site's firewall rules (take effect within a second, also while serving).
    #[command(subcommand)]
    Block(BlockCommand),
    /// Manage a site's annotations: dated notes on its chart (deploys, campaigns).
    #[command(subcommand)]
    Annotation(AnnotationCommand),
    /// Manage a site's saved segments (filter sets the dashboard and the Stats API can name).
    #[command(subcommand)]
    Segment(SegmentCommand),
    /// Manage a site's funnels: goals a visit completes in order, counted from when they are made.
    #[command(subcommand)]
    Funnel(FunnelCommand),
    /// Manage a site's e-mail reports (weekly or monthly, per address).
    #[command(subcommand)]
    Report(notices::ReportCommand),
    /// Manage a site's traffic alerts (spike and drop).
    #[command(subcommand)]
    Alert(notices::AlertCommand),
    /// Manage a site's webhooks (alerts and daily totals, signed).
    #[command(subcommand)]
    Webhook(notices::WebhookCommand),
    /// Print a one-time link (valid 7 days) that gives the person with this e-mail address a role
    /// on a site (they sign in to their account, or create it).
    Invite {
        domain: String,
        /// The address the invite is for.
        #[arg(long)]
        email: String,
        /// viewer, admin or owner.
        #[arg(long, default_value = "viewer")]
        role: String,
        /// Where browsers reach Plumb [default: the configured public URL, else http://<listen>].
        #[arg(long, env = "PLUMB_PUBLIC_URL", value_parser = config::parse_public_url)]
        public_url: Option<String>,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Add a user; the password is read from standard input (first line), never from arguments.
    Add {
        #[arg(long)]
        email: String,
        /// Read the password from standard input (required: arguments show up in `ps`).
        #[arg(long, required = true)]
        password_stdin: bool,
    },
    List,
}

#[derive(Subcommand)]
enum MemberCommand {
    /// Give a user a role on a site (or change it).
    Add {
        domain: String,
        #[arg(long)]
        email: String,
        /// viewer, admin or owner.
        #[arg(long)]
        role: String,
    },
    List {
        domain: String,
    },
    Remove {
        domain: String,
        #[arg(long)]
        email: String,
    },
}

#[derive(Subcommand)]
enum AnnotationCommand {
    Add {
        domain: String,
        /// The site's local date, YYYY-MM-DD.
        date: String,
        /// 1 to 300 characters.
        text: String,
    },
    List {
        domain: String,
    },
    Remove {
        domain: String,
        /// The annotation's id, as `annotation list` shows it.
        id: u32,
    },
}

#[derive(Subcommand)]
enum FunnelCommand {
    /// Add a funnel of 2 to 8 of the site's goals; it counts visits from 10 seconds on.
    Add {
        domain: String,
        name: String,
        /// The goals' names, in order (as `goal list` shows them).
        #[arg(required = true)]
        steps: Vec<String>,
    },
    List {
        domain: String,
    },
    Remove {
        domain: String,
        /// The funnel's id, as `funnel list` shows it.
        id: u32,
    },
}

#[derive(Subcommand)]
enum SegmentCommand {
    /// Save a segment, shared with everyone who may read the site unless `--owner` names a user.
    Add {
        domain: String,
        name: String,
        /// The filters as JSON, as in a Stats API v2 query, e.g. '[["is","visit:country",["DE"]]]'.
        filters: String,
        /// The e-mail address of the user whose own segment it is.
        #[arg(long)]
        owner: Option<String>,
    },
    List {
        domain: String,
    },
    Remove {
        domain: String,
        /// The segment's id, as `segment list` shows it.
        id: u32,
    },
}

#[derive(Subcommand)]
enum BlockCommand {
    /// Block an address or range, a country or a path pattern, or allow only some hostnames.
    Add {
        domain: String,
        /// ip (address or CIDR), country (two letters), path (`*`, `**` wildcards) or allow_host
        /// (`example.com`, `*.example.com`).
        kind: String,
        value: String,
    },
    List {
        domain: String,
    },
    Remove {
        domain: String,
        /// The rule's id, as `block list` shows it.
        id: u32,
    },
}

#[derive(Subcommand)]
enum GoalCommand {
    /// Add a goal: a page path pattern (`*` within a segment, `**` across) or a custom event name.
    Add {
        domain: String,
        #[arg(long, conflicts_with = "event", required_unless_present = "event")]
        page: Option<String>,
        #[arg(long)]
        event: Option<String>,
        /// Name shown in reports [default: the event name, or `Visit <page>`].
        #[arg(long)]
        name: Option<String>,
        /// Event goals: report revenue sent with the event in this ISO 4217 currency (e.g. EUR).
        #[arg(long)]
        currency: Option<String>,
    },
    List {
        domain: String,
    },
    Remove {
        domain: String,
        /// The goal's id, as `goal list` shows it.
        id: u32,
    },
}

#[derive(Subcommand)]
enum SiteCommand {
    /// Register a site by its domain.
    Add {
        domain: String,
        /// IANA timezone that defines the site's days.
        #[arg(long, default_value = "UTC")]
        timezone: String,
    },
    List,
    /// Unregister a site and delete its stored events (its events are no longer accepted).
    Remove {
        domain: String,
    },
    /// Show, or set, how long a site's stored events are kept: a number of months (the current
    /// month and that many before it; the running worker deletes older days) or `forever`.
    Retention {
        domain: String,
        months: Option<String>,
    },
}

#[derive(Subcommand)]
enum KeyCommand {
    /// Create a key; the secret is printed once, on the last line.
    Create {
        #[arg(long)]
        name: String,
        /// stats:read, events:write or sites:admin; repeatable [default: stats:read and events:write].
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// Limit the key to this site (domain); repeatable [default: every site].
        #[arg(long = "site")]
        sites: Vec<String>,
    },
    List,
    Revoke {
        name: String,
    },
}

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let cli = Cli::parse();
    let mut config = Config::load(cli.config.as_deref())?;
    if let Some(dir) = cli.data_dir {
        config.data_dir = dir;
    }
    if let Some(url) = cli.meta {
        config.meta = Some(url);
    }
    if let Some(url) = cli.queue {
        config.queue = Some(url);
    }
    if let Some(url) = cli.store {
        config.store = Some(url);
    }
    // Which site's audit log a management command goes in (the configuration is used up below).
    let change = cli_change(&cli.command).map(|c| (c, config.clone()));
    let outcome = match cli.command {
        Command::Serve(args) => serve::run(config.with_serve_args(args)?, Roles::All),
        Command::Collect { server, collector } => {
            serve::run(config.with_server_args(server)?.with_collector_args(collector)?, Roles::Collect)
        }
        Command::Work { server, worker, partitions } => {
            if partitions.is_some() && (config.queue.is_none() || config.store.is_none()) {
                anyhow::bail!(
                    "--partitions splits the NATS queue (--queue) among workers writing one ClickHouse store (--store)"
                );
            }
            config.partitions = partitions.map(|p| p.0);
            serve::run(config.with_server_args(server)?.with_worker_args(worker)?, Roles::Work)
        }
        Command::Web { server, worker } => {
            serve::run(config.with_server_args(server)?.with_worker_args(worker)?, Roles::Web)
        }
        Command::Migrate => migrate::run(&config),
        Command::Doctor(args) => doctor::run(&config.with_serve_args(args)?),
        Command::Backup { dest } => backup::backup(&config, &dest),
        Command::Restore { backup } => backup::restore(&config, &backup),
        Command::Import(cmd) => import::run(&config, cmd),
        Command::Export { domain, out, date_range, format } => {
            import::export(&config, &domain, &date_range, &out, format)
        }
        Command::Site(cmd) => site(&*serve::open_meta(&config)?, &config, cmd),
        Command::Key(cmd) => key(&*serve::open_meta(&config)?, cmd),
        Command::Goal(cmd) => goal(&*serve::open_meta(&config)?, cmd),
        Command::User(cmd) => user(&*serve::open_meta(&config)?, cmd),
        Command::Block(cmd) => block(&*serve::open_meta(&config)?, cmd),
        Command::Annotation(cmd) => annotation(&*serve::open_meta(&config)?, cmd),
        Command::Funnel(cmd) => funnel(&*serve::open_meta(&config)?, cmd),
        Command::Report(cmd) => notices::report(&*serve::open_meta(&config)?, cmd),
        Command::Alert(cmd) => notices::alert(&*serve::open_meta(&config)?, cmd),
        Command::Webhook(cmd) => notices::webhook(&*serve::open_meta(&config)?, cmd),
        Command::Segment(cmd) => segment(&*serve::open_meta(&config)?, cmd),
        Command::Member(cmd) => member(&*serve::open_meta(&config)?, cmd),
        Command::Invite { domain, email, role, public_url } => {
            let meta = serve::open_meta(&config)?;
            let site = site_named(&*meta, &domain)?;
            let token = meta.create_invite(site.id, Role::parse(&role)?, &email)?;
            let base = public_url.or(config.public_url.clone()).unwrap_or_else(|| format!("http://{}", config.listen));
            println!("invite for {} to {} as {role} (one use, valid 7 days):", email.trim(), site.domain);
            println!("{base}/invite/{token}");
            Ok(())
        }
    };
    if let (Ok(()), Some(((domain, action), config))) = (&outcome, change) {
        record_cli_change(&config, &domain, action);
    }
    outcome
}

/// The site a management command changes and what it does, for that site's audit log (the API
/// and the dashboard record their own changes).
fn cli_change(cmd: &Command) -> Option<(String, &'static str)> {
    use notices::{AlertCommand as Alert, ReportCommand as Report, WebhookCommand as Webhook};
    let (domain, action) = match cmd {
        Command::Goal(GoalCommand::Add { domain, .. }) => (domain, "Add a goal"),
        Command::Goal(GoalCommand::Remove { domain, .. }) => (domain, "Remove a goal"),
        Command::Block(BlockCommand::Add { domain, .. }) => (domain, "Add a firewall rule"),
        Command::Block(BlockCommand::Remove { domain, .. }) => (domain, "Remove a firewall rule"),
        Command::Member(MemberCommand::Add { domain, .. }) => (domain, "Give a user a role"),
        Command::Member(MemberCommand::Remove { domain, .. }) => (domain, "Remove a user's role"),
        Command::Annotation(AnnotationCommand::Add { domain, .. }) => (domain, "Add an annotation"),
        Command::Annotation(AnnotationCommand::Remove { domain, .. }) => (domain, "Remove an annotation"),
        Command::Segment(SegmentCommand::Add { domain, .. }) => (domain, "Save a segment"),
        Command::Segment(SegmentCommand::Remove { domain, .. }) => (domain, "Remove a segment"),
        Command::Funnel(FunnelCommand::Add { domain, .. }) => (domain, "Add a funnel"),
        Command::Funnel(FunnelCommand::Remove { domain, .. }) => (domain, "Remove a funnel"),
        Command::Report(Report::Add { domain, .. }) => (domain, "Add an e-mail report"),
        Command::Report(Report::Remove { domain, .. }) => (domain, "Stop a report"),
        Command::Alert(Alert::Add { domain, .. }) => (domain, "Add a traffic alert"),
        Command::Alert(Alert::Remove { domain, .. }) => (domain, "Remove an alert"),
        Command::Webhook(Webhook::Add { domain, .. }) => (domain, "Add a webhook"),
        Command::Webhook(Webhook::Remove { domain, .. }) => (domain, "Remove a webhook"),
        Command::Site(SiteCommand::Retention { domain, .. }) => (domain, "Change the data retention"),
        Command::Invite { domain, .. } => (domain, "Invite someone"),
        _ => return None,
    };
    Some((domain.clone(), action))
}

/// Records a command-line change in the site's audit log; the command line is the detail, with
/// server addresses (which may hold passwords) left out.
fn record_cli_change(config: &Config, domain: &str, action: &str) {
    let args: Vec<String> =
        std::env::args().skip(1).map(|a| if a.contains("://") { "…".to_owned() } else { a }).collect();
    let entry = plumb_meta::notices::AuditEntry {
        at_ms: chrono::Utc::now().timestamp_millis(),
        actor: "the command line".into(),
        action: action.into(),
        detail: format!("plumb {}", args.join(" ")),
    };
    let recorded = serve::open_meta(config).and_then(|meta| {
        let site = site_named(&*meta, domain)?;
        Ok(meta.record_audit(site.id, &entry)?)
    });
    if let Err(e) = recorded {
        eprintln!("warning: the change is made, but the site's audit log could not record it: {e}");
    }
}

fn site(meta: &dyn MetaStore, config: &Config, cmd: SiteCommand) -> Result<()> {
    match cmd {
        SiteCommand::Add { domain, timezone } => {
            let s = meta.add_site(&domain, &timezone)?;
            println!("added {} ({}), site id {}", s.domain, s.timezone, s.id);
            println!("snippet: <script defer data-domain=\"{}\" src=\"http://HOST/js/script.js\"></script>", s.domain);
        }
        SiteCommand::List => {
            for s in meta.list_sites()? {
                println!("{}\t{}\t{}", s.id, s.domain, s.timezone);
            }
        }
        SiteCommand::Retention { domain, months } => {
            let site = site_named(meta, &domain)?;
            if let Some(months) = months {
                meta.set_retention(site.id, plumb_meta::parse_retention(&months)?)?;
            }
            let kept = meta.retention(site.id)?.map_or_else(|| "forever".to_owned(), |m| format!("for {m} months"));
            println!("{} keeps its data {kept}", site.domain);
        }
        SiteCommand::Remove { domain } => {
            let site = meta.remove_site(&domain)?;
            println!("removed {}", site.domain);
            // The stored rows go too: here if no server holds the event store, else the running
            // server's pipeline deletes them within a second (always so on ClickHouse).
            if config.store.is_some() {
                println!("the worker deletes its stored events within a second of running");
                return Ok(());
            }
            if !config.store_path().exists() {
                meta.mark_purged(site.id)?;
                return Ok(());
            }
            match plumb_store::DuckStore::open(&config.store_path()) {
                Ok(mut store) => {
                    let n = plumb_store::EventWriter::delete_site(&mut store, site.id)?;
                    meta.mark_purged(site.id)?;
                    println!("deleted its {n} stored events");
                }
                Err(e) if e.to_string().contains("lock") => {
                    println!("the running server deletes its stored events within a second")
                }
                Err(e) => println!("its stored events are deleted when Plumb next starts ({e})"),
            }
        }
    }
    Ok(())
}

fn site_named(meta: &dyn MetaStore, domain: &str) -> Result<Site> {
    Ok(meta
        .site_by_domain(&validate_domain(domain)?)?
        .ok_or_else(|| MetaError::NotFound(format!("site `{domain}`")))?)
}

fn user(meta: &dyn MetaStore, cmd: UserCommand) -> Result<()> {
    match cmd {
        UserCommand::Add { email, password_stdin: _ } => {
            let mut line = String::new();
            std::io::stdin().read_line(&mut line).context("cannot read the password from standard input")?;
            let password = line.trim_end_matches(['\r', '\n']);
            let u = meta.add_user(&email, password, NewUser::OwnerIfNone)?;
            let owner = if u.is_owner { ", owner of every site" } else { "" };
            println!("added user {} (id {}{owner})", u.email, u.id);
        }
        UserCommand::List => {
            for u in meta.list_users()? {
                let created = chrono::DateTime::from_timestamp_millis(u.created_ms).unwrap_or_default();
                println!("{}\t{}\t{}", u.id, u.email, created.format("%Y-%m-%d %H:%M UTC"));
            }
        }
    }
    Ok(())
}

fn user_named(meta: &dyn MetaStore, email: &str) -> Result<plumb_meta::User> {
    let email = plumb_meta::validate_email(email)?;
    Ok(meta
        .list_users()?
        .into_iter()
        .find(|u| u.email == email)
        .ok_or_else(|| MetaError::NotFound(format!("user `{email}`")))?)
}

fn member(meta: &dyn MetaStore, cmd: MemberCommand) -> Result<()> {
    match cmd {
        MemberCommand::Add { domain, email, role } => {
            let (site, user, role) = (site_named(meta, &domain)?, user_named(meta, &email)?, Role::parse(&role)?);
            meta.set_role(user.id, site.id, role)?;
            println!("{} is {} of {}", user.email, role.name(), site.domain);
        }
        MemberCommand::List { domain } => {
            for (u, r) in meta.members(site_named(meta, &domain)?.id)? {
                println!("{}\t{}", u.email, r.name());
            }
        }
        MemberCommand::Remove { domain, email } => {
            let (site, user) = (site_named(meta, &domain)?, user_named(meta, &email)?);
            meta.remove_member(user.id, site.id)?;
            println!("removed {} from {}", user.email, site.domain);
        }
    }
    Ok(())
}

fn annotation(meta: &dyn MetaStore, cmd: AnnotationCommand) -> Result<()> {
    match cmd {
        AnnotationCommand::Add { domain, date, text } => {
            let site = site_named(meta, &domain)?;
            let day = plumb_query::period::parse_day("date", &date).map_err(|e| anyhow::anyhow!(e.0))?;
            let a = meta.add_annotation(site.id, day, &text)?;
            println!("annotation {} on {} at {date}: {}", a.id, site.domain, a.text);
        }
        AnnotationCommand::List { domain } => {
            for a in meta.annotations(site_named(meta, &domain)?.id, 0, i32::MAX)? {
                println!("{}\t{}\t{}", a.id, plumb_core::time::date_of_day(a.day), a.text);
            }
        }
        AnnotationCommand::Remove { domain, id } => {
            meta.remove_annotation(site_named(meta, &domain)?.id, id)?;
            println!("removed annotation {id}");
        }
    }
    Ok(())
}

fn segment(meta: &dyn MetaStore, cmd: SegmentCommand) -> Result<()> {
    match cmd {
        SegmentCommand::Add { domain, name, filters, owner } => {
            let site = site_named(meta, &domain)?;
            let parsed: serde_json::Value =
                serde_json::from_str(&filters).with_context(|| format!("filters are not JSON: {filters}"))?;
            let text = plumb_web::segment_filters(meta, site.id, &parsed).map_err(|e| anyhow::anyhow!(e.message))?;
            let owner = owner.map(|email| user_named(meta, &email)).transpose()?.map(|u| u.id);
            let s = meta.add_segment(site.id, &name, &text, owner)?;
            let whose = if owner.is_some() { "own" } else { "shared" };
            println!("segment {} on {} ({whose}): {}", s.id, site.domain, s.name);
        }
        SegmentCommand::List { domain } => {
            for s in meta.segments(site_named(meta, &domain)?.id)? {
                let whose = s.owner.map_or("shared".to_owned(), |o| format!("user {o}"));
                println!("{}\t{}\t{whose}\t{}", s.id, s.name, s.filters);
            }
        }
        SegmentCommand::Remove { domain, id } => {
            meta.remove_segment(site_named(meta, &domain)?.id, id)?;
            println!("removed segment {id}");
        }
    }
    Ok(())
}

fn funnel(meta: &dyn MetaStore, cmd: FunnelCommand) -> Result<()> {
    let since = |ms: i64| chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default().to_rfc3339();
    match cmd {
        FunnelCommand::Add { domain, name, steps } => {
            let site = site_named(meta, &domain)?;
            let steps = plumb_meta::funnel_steps(&meta.list_goals(site.id)?, &steps)?;
            let f = meta.add_funnel(site.id, &name, &steps)?;
            println!(
                "funnel {} on {}: {} ({} steps), counting from {}",
                f.id,
                site.domain,
                f.name,
                f.steps.len(),
                since(f.starts_ms)
            );
        }
        FunnelCommand::List { domain } => {
            for f in meta.funnels(Some(site_named(meta, &domain)?.id))? {
                let steps: Vec<&str> = f.steps.iter().map(|s| s.name.as_str()).collect();
                println!("{}\t{}\t{}\t{}", f.id, f.name, since(f.starts_ms), steps.join(" → "));
            }
        }
        FunnelCommand::Remove { domain, id } => {
            meta.remove_funnel(site_named(meta, &domain)?.id, id)?;
            println!("removed funnel {id}");
        }
    }
    Ok(())
}

fn block(meta: &dyn MetaStore, cmd: BlockCommand) -> Result<()> {
    match cmd {
        BlockCommand::Add { domain, kind, value } => {
            let site = site_named(meta, &domain)?;
            let r = meta.add_rule(site.id, RuleKind::parse(&kind, &value)?)?;
            println!("rule {} on {}: {} {}", r.id, site.domain, r.kind.name(), r.kind.value());
        }
        BlockCommand::List { domain } => {
            for r in meta.rules(site_named(meta, &domain)?.id)? {
                println!("{}\t{}\t{}", r.id, r.kind.name(), r.kind.value());
            }
        }
        BlockCommand::Remove { domain, id } => {
            meta.remove_rule(site_named(meta, &domain)?.id, id)?;
            println!("removed rule {id}");
        }
    }
    Ok(())
}

fn goal(meta: &dyn MetaStore, cmd: GoalCommand) -> Result<()> {
    match cmd {
        GoalCommand::Add { domain, page, event, name, currency } => {
            let site = site_named(meta, &domain)?;
            let kind = match (page, event) {
                (Some(p), _) => GoalKind::Page(p),
                (None, Some(e)) => GoalKind::Event(e),
                (None, None) => unreachable!("clap requires --page or --event"),
            };
            let g = meta.add_goal_with_currency(site.id, kind, name.as_deref(), currency.as_deref())?;
            let revenue = g.currency.map(|c| format!(", revenue in {c}")).unwrap_or_default();
            println!("goal {} `{}` on {}{revenue}", g.id, g.display_name, site.domain);
        }
        GoalCommand::List { domain } => {
            for g in meta.list_goals(site_named(meta, &domain)?.id)? {
                let (kind, value) = match &g.kind {
                    GoalKind::Page(p) => ("page", p),
                    GoalKind::Event(e) => ("event", e),
                };
                println!("{}\t{}\t{kind}\t{value}\t{}", g.id, g.display_name, g.currency.unwrap_or_default());
            }
        }
        GoalCommand::Remove { domain, id } => {
            meta.remove_goal(site_named(meta, &domain)?.id, id)?;
            println!("removed goal {id}");
        }
    }
    Ok(())
}

fn key(meta: &dyn MetaStore, cmd: KeyCommand) -> Result<()> {
    match cmd {
        KeyCommand::Create { name, scopes, sites } => {
            let scopes = if scopes.is_empty() {
                vec![Scope::StatsRead, Scope::EventsWrite]
            } else {
                scopes.iter().map(|s| Scope::parse(s)).collect::<Result<_, _>>()?
            };
            let site_ids = sites.iter().map(|d| site_named(meta, d).map(|s| s.id)).collect::<Result<Vec<u32>>>()?;
            let limit = (!site_ids.is_empty()).then_some(site_ids.as_slice());
            let (k, secret) = meta.create_key(&name, &scopes, limit)?;
            let scope_names: Vec<&str> = k.scopes.iter().map(|s| s.name()).collect();
            let on = if sites.is_empty() { "every site".to_owned() } else { sites.join(", ") };
            println!(
                "created key `{}` ({} on {on}); store it now, it is not shown again:",
                k.name,
                scope_names.join(", ")
            );
            println!("{secret}");
        }
        KeyCommand::List => {
            for k in meta.list_keys()? {
                let created = chrono::DateTime::from_timestamp_millis(k.created_ms).unwrap_or_default();
                let scopes: Vec<&str> = k.scopes.iter().map(|s| s.name()).collect();
                let sites = k.sites.as_ref().map_or("all sites".to_owned(), |s| format!("site ids {s:?}"));
                println!(
                    "{}\t{}…\t{}\t{sites}\t{}",
                    k.name,
                    k.prefix,
                    scopes.join(","),
                    created.format("%Y-%m-%d %H:%M UTC")
                );
            }
        }
        KeyCommand::Revoke { name } => {
            meta.revoke_key(&name)?;
            println!("revoked {name}");
        }
    }
    Ok(())
}
