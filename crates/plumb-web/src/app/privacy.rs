//! `/privacy/{domain}`: what Plumb does with a site's visitors' data, written from the running
//! configuration and the stored schema, for the site's own privacy policy to link to.

use super::html::{Page, esc};
use super::{Reply, Result, error_page, internal};
use crate::Web;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use plumb_core::schema::{ATTRS, Level};
use std::sync::Arc;

/// What the page says that comes from configuration rather than from the code.
#[derive(Debug, Clone, Default)]
pub struct PrivacyFacts {
    /// How long a queue entry (which holds the visitor signature) outlives its visit's last hit.
    pub queue_retention: std::time::Duration,
    /// Query parameters kept in page addresses.
    pub kept_query_params: Vec<String>,
    /// A location database is configured: region and city are looked up where it has them.
    pub location_db: bool,
}

fn minutes(d: std::time::Duration) -> String {
    match d.as_secs() {
        s if s < 120 => format!("{s} seconds"),
        s if s < 7200 => format!("{} minutes", s / 60),
        s => format!("{} hours", s / 3600),
    }
}

pub async fn page(State(web): State<Arc<Web>>, Path(domain): Path<String>) -> Result<Reply> {
    let site = web.meta.site_by_domain(&domain.trim().to_ascii_lowercase()).map_err(internal)?;
    let Some(site) = site else {
        return Err(error_page(StatusCode::NOT_FOUND, "Not found", "No site of this name is counted here."));
    };
    let kept = match web.meta.retention(site.id).map_err(internal)? {
        None => "until the site's operator deletes them".to_owned(),
        Some(m) => format!("for {m} month{}, then deleted", if m == 1 { "" } else { "s" }),
    };
    let facts = &web.privacy;
    let params = if facts.kept_query_params.is_empty() {
        "every query parameter is dropped (campaign tags are read into the fields below first)".to_owned()
    } else {
        format!(
            "query parameters other than {} are dropped (campaign tags are read into the fields below first)",
            facts.kept_query_params.iter().map(|p| format!("<code>{}</code>", esc(p))).collect::<Vec<_>>().join(", ")
        )
    };
    let place =
        if facts.location_db { "country (region and city where the location database has them)" } else { "country" };
    let fields: String = ATTRS
        .iter()
        .map(|a| {
            let level = match a.level {
                Level::Event => "the page view or event",
                Level::Visit => "the visit (same on each of its rows)",
            };
            format!("<tr><td><code>{}</code></td><td>{level}</td></tr>", esc(a.api))
        })
        .collect();
    let d = esc(&site.domain);
    let body = format!(
        "<section class=\"card prose\"><h1>Privacy: how {d} counts visits</h1>\
         <p>{d} counts its visitors with Plumb, a web analytics server run by the site's operator, without \
         cookies or anything else stored on visitors' devices. This page is written from the server's \
         running configuration.</p>\
         <h2>What a visit sends</h2><p>The page's address, the referring address, the screen width, and the \
         names and properties of events the site defines. As with any request, the browser also sends its IP \
         address and User-Agent string.</p>\
         <h2>What is dropped</h2><ul>\
         <li>The IP address and the User-Agent string are used in memory only: for the {place}, the browser, \
         operating system and device type, and a visitor signature — a hash of the site, IP address, \
         User-Agent and date under a random salt that changes every day and is deleted when that day has \
         ended everywhere. The signature is written only into the processing queue, which deletes it \
         {queue} after the visit's last hit. Neither the address nor the User-Agent is ever stored.</li>\
         <li>In page addresses, {params}.</li>\
         <li>Visits by bots and referrer spam are not stored; only how many were turned away.</li></ul>\
         <h2>What is stored, and for how long</h2>\
         <p>Each page view or event is stored as a row of counters (views, visitors, visits, bounces, time on \
         page, scroll depth) with the fields below. No row holds an identifier of a visitor or a visit, so \
         rows cannot be joined into one person's path, and a visitor on two days is two visitors. \
         Funnels the site defines are counted as visits happen: a row marks that a visit reached a \
         step, with the fields of the hit that reached it, never which visitor. \
         Rows are kept {kept}.</p>\
         <table><thead><tr><th>field</th><th>describes</th></tr></thead><tbody>{fields}</tbody></table>\
         <h2>Data processing terms</h2><p>The operator of {d} decides what is counted and is the controller \
         of this data; the server processes it only to produce these statistics for them, keeps it on the \
         operator's own infrastructure, passes it to no one else and uses no sub-processors. The data cannot \
         identify a person, so requests about one person's data have nothing to find; the operator can \
         delete the site's data at any time.</p></section>",
        queue = minutes(facts.queue_retention),
    );
    let title = format!("Privacy · {}", site.domain);
    Ok(Reply::html(StatusCode::OK, Page::new(&title, body).render()))
}
