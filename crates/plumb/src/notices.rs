//! `plumb report`, `plumb alert` and `plumb webhook`: what a site's people are sent, set up from
//! the command line (the same rules as the API: `plumb_meta::notices`).

use crate::site_named;
use anyhow::Result;
use clap::Subcommand;
use plumb_meta::MetaStore;
use plumb_meta::notices::{AlertKind, ReportPeriod, WebhookEvent};

#[derive(Subcommand)]
pub enum ReportCommand {
    /// Mail an address the site's report every week or month (needs --smtp-url).
    Add {
        domain: String,
        #[arg(long)]
        email: String,
        /// week or month.
        #[arg(long, default_value = "week")]
        period: String,
    },
    List {
        domain: String,
    },
    Remove {
        domain: String,
        /// The report's id, as `report list` shows it.
        id: u32,
    },
}

#[derive(Subcommand)]
pub enum AlertCommand {
    /// Alert when current visitors reach a threshold (spike) or no pageview came for some
    /// minutes (drop), by e-mail and to the site's alert webhooks.
    Add {
        domain: String,
        /// spike or drop.
        #[arg(long)]
        kind: String,
        /// Current visitors (spike) or minutes without pageviews (drop).
        #[arg(long)]
        threshold: u32,
        /// Minutes after firing before it may fire again.
        #[arg(long, default_value_t = 60)]
        cooldown_minutes: u32,
        /// Where to mail it (needs --smtp-url).
        #[arg(long)]
        email: Option<String>,
    },
    List {
        domain: String,
    },
    Remove {
        domain: String,
        id: u32,
    },
}

#[derive(Subcommand)]
pub enum WebhookCommand {
    /// Call a URL with signed JSON on alerts, each day's totals and each minute's goal
    /// conversions; prints the signing secret.
    /// (Private and loopback addresses are refused when delivering unless the server allows them.)
    Add {
        domain: String,
        url: String,
        /// alert, daily, goal (comma-separated).
        #[arg(long, default_value = "alert,daily,goal")]
        events: String,
    },
    List {
        domain: String,
    },
    Remove {
        domain: String,
        id: u32,
    },
}

fn when(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default().to_rfc3339()
}

pub fn report(meta: &dyn MetaStore, cmd: ReportCommand) -> Result<()> {
    match cmd {
        ReportCommand::Add { domain, email, period } => {
            let site = site_named(meta, &domain)?;
            let r = meta.add_report(site.id, &email, ReportPeriod::parse(&period)?)?;
            println!("report {} on {}: {} gets the {} report", r.id, site.domain, r.email, r.period.name());
            println!("(mailed by a server started with --smtp-url)");
        }
        ReportCommand::List { domain } => {
            for r in meta.reports(Some(site_named(meta, &domain)?.id))? {
                println!("{}\t{}\t{}\t{}", r.id, r.email, r.period.name(), when(r.created_ms));
            }
        }
        ReportCommand::Remove { domain, id } => {
            meta.remove_report(site_named(meta, &domain)?.id, id)?;
            println!("removed report {id}");
        }
    }
    Ok(())
}

pub fn alert(meta: &dyn MetaStore, cmd: AlertCommand) -> Result<()> {
    match cmd {
        AlertCommand::Add { domain, kind, threshold, cooldown_minutes, email } => {
            let site = site_named(meta, &domain)?;
            let a = meta.add_alert(site.id, AlertKind::parse(&kind)?, threshold, cooldown_minutes, email.as_deref())?;
            println!(
                "alert {} on {}: {} at {}, cool-down {} min",
                a.id,
                site.domain,
                a.kind.name(),
                a.threshold,
                a.cooldown_minutes
            );
        }
        AlertCommand::List { domain } => {
            for a in meta.alerts(Some(site_named(meta, &domain)?.id))? {
                let fired = a.last_fired_ms.map(when).unwrap_or_else(|| "never".into());
                let email = a.email.as_deref().unwrap_or("-");
                println!(
                    "{}\t{}\t{}\t{} min\t{email}\tlast fired {fired}",
                    a.id,
                    a.kind.name(),
                    a.threshold,
                    a.cooldown_minutes
                );
            }
        }
        AlertCommand::Remove { domain, id } => {
            meta.remove_alert(site_named(meta, &domain)?.id, id)?;
            println!("removed alert {id}");
        }
    }
    Ok(())
}

pub fn webhook(meta: &dyn MetaStore, cmd: WebhookCommand) -> Result<()> {
    match cmd {
        WebhookCommand::Add { domain, url, events } => {
            let site = site_named(meta, &domain)?;
            let events = events.split(',').map(|e| WebhookEvent::parse(e.trim())).collect::<Result<Vec<_>, _>>()?;
            let h = meta.add_webhook(site.id, &url, &events)?;
            println!("webhook {} on {}: {}", h.id, site.domain, h.url);
            println!("signing secret (shown once): {}", h.secret);
        }
        WebhookCommand::List { domain } => {
            for h in meta.webhooks(Some(site_named(meta, &domain)?.id))? {
                let events: Vec<&str> = h.events.iter().map(|e| e.name()).collect();
                println!("{}\t{}\t{}", h.id, h.url, events.join(","));
            }
        }
        WebhookCommand::Remove { domain, id } => {
            meta.remove_webhook(site_named(meta, &domain)?.id, id)?;
            println!("removed webhook {id}");
        }
    }
    Ok(())
}
