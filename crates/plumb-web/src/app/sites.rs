//! The sites list, adding a site (with its snippet and the installation check) and a site's
//! settings: timezone, goals, shared links, people and deletion.

use super::html::{Page, button_form, csrf_field, esc};
use super::{
    Csrf, Reply, Result, base_url, error_page, field, form, hashing, internal, may_create_sites, meta_reply,
    site_access, user_session,
};
use crate::Web;
use crate::stats::run_query;
use axum::Extension;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use plumb_core::security::Reason;
use plumb_meta::permission::{Action, allowed, user_holders};
use plumb_meta::{GoalKind, Role, Session, Site};
use plumb_query::{DayRange, Dimension, Metric, Query, TimeBucket};
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;

/// A site's visitors per day over the 30 days before today (zero where none came), and today's:
/// typed queries straight to the engine.
async fn recent_visitors(web: &Web, site: &Site) -> (Vec<i64>, i64) {
    let today = plumb_core::time::local_day(site.timezone, chrono::Utc::now().timestamp_millis());
    let range = DayRange { from: today - 30, to: today - 1 };
    let by_day = one_metric(web, site, Metric::Visitors, range, Some(TimeBucket::Day)).await.unwrap_or_default();
    let days = plumb_query::time_labels(TimeBucket::Day, range, None)
        .into_iter()
        .map(|label| by_day.iter().find(|(l, _)| *l == label).map_or(0, |(_, n)| *n))
        .collect();
    let now = one_metric(web, site, Metric::Visitors, DayRange { from: today, to: today }, None).await;
    (days, now.ok().and_then(|v| v.first().map(|(_, n)| *n)).unwrap_or(0))
}

/// One metric of a site over a range, per time bucket or in all: (label, value) pairs.
async fn one_metric(
    web: &Web,
    site: &Site,
    metric: Metric,
    range: DayRange,
    bucket: Option<TimeBucket>,
) -> std::result::Result<Vec<(String, i64)>, crate::ApiError> {
    let q = Query {
        metrics: vec![metric],
        dimensions: bucket.map(Dimension::Time).into_iter().collect(),
        imports: crate::stats::import_refs(web.meta.as_ref(), site.id)?,
        ..Query::over(site.id, range)
    };
    let out = run_query(web, q).await?;
    Ok(out
        .results
        .iter()
        .map(|r| (r.dimensions.first().cloned().unwrap_or_default(), plumb_query::number(&r.metrics[0]) as i64))
        .collect())
}

/// A 30-day line as inline SVG (no script needed for the list).
fn sparkline(values: &[i64]) -> String {
    let max = values.iter().copied().max().unwrap_or(0).max(1) as f64;
    let n = values.len().max(2) as f64 - 1.0;
    let points: Vec<String> = values
        .iter()
        .enumerate()
        .map(|(i, v)| format!("{:.1},{:.1}", i as f64 * 120.0 / n, 30.0 - *v as f64 * 28.0 / max))
        .collect();
    format!(
        "<svg class=\"spark\" viewBox=\"0 0 120 32\" preserveAspectRatio=\"none\" aria-hidden=\"true\">\
         <polyline points=\"{}\"/></svg>",
        points.join(" ")
    )
}

pub async fn list(State(web): State<Arc<Web>>, headers: HeaderMap) -> Result<Reply> {
    let s = user_session(&web, &headers, "/sites")?;
    let sites = web.meta.user_sites(s.user.id).map_err(internal)?;
    let mut rows = String::new();
    for (site, role) in &sites {
        let (days, today) = recent_visitors(&web, site).await;
        rows.push_str(&format!(
            "<li class=\"site\"><a href=\"/sites/{d}\"><span class=\"domain\">{d}</span>\
             <span class=\"today\"><strong>{today}</strong> visitors today</span>{spark}</a>\
             <span class=\"role\">{role}</span></li>",
            d = esc(&site.domain),
            spark = sparkline(&days),
            role = role.name(),
        ));
    }
    let add = if may_create_sites(&s) { "<a class=\"button primary\" href=\"/sites/new\">Add a site</a>" } else { "" };
    let body = match (sites.is_empty(), add.is_empty()) {
        (true, false) => format!(
            "<section class=\"card narrow\"><h1>No sites yet</h1><p>Add your first site to get its snippet.</p>\
             <p>{add}</p></section>"
        ),
        (true, true) => "<section class=\"card narrow\"><h1>No sites yet</h1><p>You have no role on any site \
             yet. Ask a site's owner for an invite.</p></section>"
            .to_owned(),
        (false, _) => format!("<div class=\"bar\"><h1>Sites</h1>{add}</div><ul class=\"sites\">{rows}</ul>"),
    };
    let csrf = Csrf::of(&web, &headers);
    let page = Page::new("Sites", body).user(&s.user, &csrf.token).render();
    Ok(csrf.apply(Reply::html(StatusCode::OK, page)))
}

fn timezone_options(selected: &str) -> String {
    chrono_tz::TZ_VARIANTS
        .iter()
        .map(|tz| {
            let n = tz.name();
            format!("<option{}>{}</option>", if n == selected { " selected" } else { "" }, esc(n))
        })
        .collect()
}

fn new_site_page(s: &Session, csrf: &str, error: Option<&str>, domain: &str, tz: &str) -> String {
    let error = error.map(|e| format!("<p class=\"error\" role=\"alert\">{}</p>", esc(e))).unwrap_or_default();
    let body = format!(
        "<section class=\"card narrow\"><h1>Add a site</h1>{error}\
         <form method=\"post\" action=\"/sites/new\" class=\"stack\">{csrf}\
         <label>Domain <input name=\"domain\" required value=\"{domain}\" placeholder=\"example.com\" \
         autocomplete=\"off\" autofocus></label><p class=\"hint\">Without <code>https://</code> or <code>www.</code></p>\
         <label>Timezone (days and hours in reports follow it) <select name=\"timezone\" id=\"timezone\" \
         data-guess=\"{guess}\">{options}</select></label>\
         <button type=\"submit\" class=\"primary\">Add site</button></form></section>",
        csrf = csrf_field(csrf),
        domain = esc(domain),
        guess = if tz.is_empty() { "1" } else { "" },
        options = timezone_options(if tz.is_empty() { "UTC" } else { tz }),
    );
    Page::new("Add a site", body).user(&s.user, csrf).script("site.js", json!({})).render()
}

/// `403` unless the user may add sites (the instance owner).
fn creator(web: &Web, headers: &HeaderMap) -> Result<Session> {
    let s = user_session(web, headers, "/sites/new")?;
    if !may_create_sites(&s) {
        return Err(error_page(
            StatusCode::FORBIDDEN,
            "Not allowed",
            "Only the owner of this Plumb adds sites. Ask them to add it and invite you.",
        ));
    }
    Ok(s)
}

pub async fn new_form(State(web): State<Arc<Web>>, headers: HeaderMap) -> Result<Reply> {
    let s = creator(&web, &headers)?;
    let csrf = Csrf::of(&web, &headers);
    let page = new_site_page(&s, &csrf.token, None, "", "");
    Ok(csrf.apply(Reply::html(StatusCode::OK, page)))
}

pub async fn create(State(web): State<Arc<Web>>, headers: HeaderMap, body: Bytes) -> Result<Reply> {
    let f = form(&headers, &body)?;
    let s = creator(&web, &headers)?;
    let (domain, tz) = (field(&f, "domain"), field(&f, "timezone"));
    // People paste addresses; keep the host.
    let domain = domain.trim_start_matches("https://").trim_start_matches("http://");
    let domain = domain.split('/').next().unwrap_or_default().trim_start_matches("www.");
    match web.meta.add_site(domain, if tz.is_empty() { "UTC" } else { tz }) {
        Ok(site) => {
            web.meta.set_role(s.user.id, site.id, Role::Owner).map_err(internal)?;
            Ok(Reply::redirect(&format!("/sites/{}/snippet", site.domain)))
        }
        Err(plumb_meta::MetaError::Invalid(m)) => {
            let page = new_site_page(&s, field(&f, "csrf"), Some(&m), domain, tz);
            Err(Reply::html(StatusCode::BAD_REQUEST, page))
        }
        Err(e) => Err(internal(e)),
    }
}

fn snippet_html(web: &Web, headers: &HeaderMap, site: &Site) -> String {
    // The tracker sends its events back to where it was loaded from: the collector.
    let collector = web.collector_url.clone().unwrap_or_else(|| base_url(web, headers));
    let script = &web.tracker_paths.script;
    let tag = format!("<script defer data-domain=\"{}\" src=\"{collector}{script}\"></script>", site.domain);
    format!(
        "<p>Put this in the <code>&lt;head&gt;</code> of every page of <strong>{d}</strong>:</p>\
         <div class=\"snippet\"><pre><code id=\"snippet\">{tag}</code></pre>\
         <button type=\"button\" data-copy=\"snippet\">Copy</button></div>\
         <p>No cookies are set and nothing personal is stored, so no consent banner is needed for Plumb.</p>\
         <p>Outbound links, file downloads, form submissions, 404 pages and tagged elements are counted \
         when the script's name lists them, e.g. <code>{stem}.outbound-links.file-downloads.js</code> \
         (Plausible's names; see the README's <em>Tracker</em> section).</p>\
         <p>What is counted, dropped and kept is on <a href=\"{privacy}\">the site's privacy page</a>, \
         for your privacy policy to link to.</p>",
        stem = esc(web.tracker_paths.script_stem()),
        privacy = esc(&format!("{}/privacy/{}", base_url(web, headers), site.domain)),
        d = esc(&site.domain),
        tag = esc(&tag),
    )
}

pub async fn snippet(
    State(web): State<Arc<Web>>,
    Extension(action): Extension<Action>,
    headers: HeaderMap,
    Path(domain): Path<String>,
) -> Result<Reply> {
    let s = user_session(&web, &headers, &format!("/sites/{domain}/snippet"))?;
    let (site, _) = site_access(&web, &s, &domain, action)?;
    let body = format!(
        "<section class=\"card\"><h1>Install Plumb on {d}</h1>{snippet}\
         <div class=\"verify\" id=\"verify\" data-domain=\"{d}\" role=\"status\" aria-live=\"polite\">\
         <span class=\"dot\"></span><span class=\"text\">Waiting for the first pageview…</span></div>\
         <p><a class=\"button primary\" href=\"/sites/{d}\">Go to the dashboard</a></p></section>",
        d = esc(&site.domain),
        snippet = snippet_html(&web, &headers, &site),
    );
    let csrf = Csrf::of(&web, &headers);
    let page = Page::new("Install", body).user(&s.user, &csrf.token).script("site.js", json!({})).render();
    Ok(csrf.apply(Reply::html(StatusCode::OK, page)))
}

/// `{"received": bool}`: whether a pageview of the site has arrived (live, or stored).
pub async fn verify(
    State(web): State<Arc<Web>>,
    Extension(action): Extension<Action>,
    headers: HeaderMap,
    Path(domain): Path<String>,
) -> Result<Response> {
    let s = user_session(&web, &headers, "/sites")?;
    let (site, _) = site_access(&web, &s, &domain, action)?;
    let live = web.live.snapshot(site.id, chrono::Utc::now().timestamp_millis()).visitors > 0;
    let today = plumb_core::time::local_day(site.timezone, chrono::Utc::now().timestamp_millis());
    let stored = live || {
        let all = DayRange { from: 0, to: today };
        let pageviews = one_metric(&web, &site, Metric::Pageviews, all, None).await.map_err(|e| internal(e.message))?;
        pageviews.first().is_some_and(|(_, n)| *n > 0)
    };
    Ok(Json(json!({"received": stored})).into_response())
}

/// The settings page; `notice` shows the result of the last action (a new invite link).
fn settings_page(web: &Web, headers: &HeaderMap, s: &Session, site: &Site, role: Role, notice: &str) -> Result<Reply> {
    let months = web.meta.retention(site.id).map_err(meta_reply)?;
    let csrf = Csrf::of(web, headers);
    let t = csrf.token.as_str();
    let d = esc(&site.domain);
    let base = format!("/sites/{}", site.domain);
    let owns = allowed(Action::Own, &user_holders(Some(role), s.user.is_owner));
    let goals: String = web
        .meta
        .list_goals(site.id)
        .map_err(internal)?
        .iter()
        .map(|g| {
            let what = match &g.kind {
                GoalKind::Page(p) => format!("pageview of <code>{}</code>", esc(p)),
                GoalKind::Event(n) => format!("event <code>{}</code>", esc(n)),
            };
            let what = match &g.currency {
                Some(c) => format!("{what} · revenue in {}", esc(c)),
                None => what,
            };
            format!(
                "<li><span><strong>{}</strong> · {what}</span>{}</li>",
                esc(&g.display_name),
                button_form(&format!("{base}/goals/{}/delete", g.id), t, "Remove", "link danger")
            )
        })
        .collect();
    let origin = base_url(web, headers);
    let shares: String = web
        .meta
        .shared_links(site.id)
        .map_err(internal)?
        .iter()
        .map(|l| {
            let url = format!("{origin}/share/{}", l.slug);
            let hides = match l.min_visitors {
                0 | 1 => String::new(),
                k => format!(" · hides rows under {k} visitors"),
            };
            format!(
                "<li><span><strong>{name}</strong>{lock}{hides}<br><a href=\"{url}\" class=\"share-url\">{url}</a>\
             <span class=\"hint\"> · embed: <code>{url}?embed=true</code></span></span>{revoke}</li>",
                name = esc(&l.name),
                lock = if l.password_hash.is_some() { " · password protected" } else { " · public" },
                url = esc(&url),
                revoke = button_form(&format!("{base}/shares/{}/delete", l.slug), t, "Revoke", "link danger"),
            )
        })
        .collect();
    let members: String = web
        .meta
        .members(site.id)
        .map_err(internal)?
        .iter()
        .map(|(u, r)| {
            let remove = if owns && u.id != s.user.id {
                button_form(&format!("{base}/members/{}/delete", u.id), t, "Remove", "link danger")
            } else {
                String::new()
            };
            format!("<li><span>{} · {}</span>{remove}</li>", esc(&u.email), r.name())
        })
        .collect();
    let role_options: String = Role::ALL
        .iter()
        .filter(|r| **r <= role)
        .map(|r| format!("<option{}>{}</option>", if *r == Role::Viewer { " selected" } else { "" }, r.name()))
        .collect();
    let danger = if owns {
        format!(
            "<section class=\"card danger-zone\"><h2>Delete site</h2><p>Deletes {d}, its goals, shared links and \
         every stored event. This cannot be undone.</p><form method=\"post\" action=\"{base}/delete\" \
         class=\"stack\">{c}<label><span>Type <strong>{d}</strong> to confirm</span> <input name=\"confirm\" required \
         autocomplete=\"off\"></label><button type=\"submit\" class=\"danger\">Delete site and data</button>\
         </form></section>",
            c = csrf_field(t)
        )
    } else {
        String::new()
    };
    let body = format!(
        "<div class=\"bar\"><h1>{d} · settings</h1><a href=\"{base}\">Back to dashboard</a></div>{notice}\
     <section class=\"card\"><h2>General</h2><form method=\"post\" action=\"{base}/settings\" class=\"row\">{c}\
     <label>Timezone <select name=\"timezone\">{tz}</select></label><button type=\"submit\">Save</button></form>\
     <p class=\"hint\">A new timezone applies to events from now on.</p></section>\
     <section class=\"card\"><h2>Data retention</h2><p>{kept}.</p>{retention}</section>\
     <section class=\"card\"><h2>Installation</h2>{snippet}<p><a href=\"{base}/snippet\">Check the installation</a></p></section>\
     <section class=\"card\"><h2>Goals</h2><ul class=\"list\">{goals}</ul>\
     <form method=\"post\" action=\"{base}/goals\" class=\"row\">{c}<label>Kind <select name=\"kind\">\
     <option value=\"event\">Custom event</option><option value=\"page\">Pageview</option></select></label>\
     <label>Event name or page path <input name=\"value\" required placeholder=\"Signup or /thanks/**\"></label>\
     <label>Display name <input name=\"name\" placeholder=\"optional\"></label>\
     <label>Revenue currency <input name=\"currency\" placeholder=\"EUR (optional)\" size=\"8\" \
     maxlength=\"3\"></label>\
     <button type=\"submit\">Add goal</button></form></section>\
     <section class=\"card\"><h2>Shared links</h2><p>Read-only dashboards for people without an account.</p>\
     <ul class=\"list\">{shares}</ul><form method=\"post\" action=\"{base}/shares\" class=\"row\">{c}\
     <label>Name <input name=\"name\" required placeholder=\"Team\"></label>\
     <label>Password <input type=\"password\" name=\"password\" minlength=\"10\" placeholder=\"optional\" \
     autocomplete=\"new-password\"></label><label>Hide rows under <input type=\"number\" name=\"min_visitors\" \
     min=\"0\" max=\"1000\" placeholder=\"0\" size=\"5\"> visitors</label>\
     <button type=\"submit\">Create link</button></form></section>\
     <section class=\"card\"><h2>People</h2><ul class=\"list\">{members}</ul>\
     <form method=\"post\" action=\"{base}/invites\" class=\"row\">{c}<label>E-mail <input type=\"email\" \
     name=\"email\" required autocomplete=\"off\"></label><label>Role <select name=\"role\">\
     {role_options}</select></label><button type=\"submit\">Create invite link</button></form>\
     <p class=\"hint\">An invite link is for one e-mail address and works once, within 7 days.</p></section>\
     <section class=\"card\"><h2>Firewall</h2><p>Hits matching a rule are refused (<code>403</code>) within a \
     second of adding it. Once any hostname is allowed, hits for other hostnames are refused.</p>\
     <ul class=\"list\">{rules}</ul><form method=\"post\" action=\"{base}/firewall\" class=\"row\">{c}\
     <label>Rule <select name=\"kind\"><option value=\"ip\">Block address or range</option>\
     <option value=\"country\">Block country</option><option value=\"path\">Block path pattern</option>\
     <option value=\"allow_host\">Allow hostname</option></select></label>\
     <label>Value <input name=\"value\" required placeholder=\"203.0.113.0/24, DE, /admin/**, *.example.com\"></label>\
     <button type=\"submit\">Add rule</button></form></section>\
     <section class=\"card\" id=\"notices\" data-domain=\"{d}\"><h2>Reports, alerts and webhooks</h2>\
     <div class=\"notices-body\"><p class=\"hint\">Loading…</p></div></section>\
     <section class=\"card\"><h2>Security</h2><p>Hits turned away in the last 24 hours (counts only; no \
     address or User-Agent is kept):</p>{security}</section>{audit}{danger}",
        c = csrf_field(t),
        security = security_table(web, site)?,
        audit = if owns { audit_card(web, site)? } else { String::new() },
        rules = rules_list(web, site, t)?,
        tz = timezone_options(site.timezone.name()),
        kept = retention_label(months),
        retention = if owns { retention_form(&base, t, months) } else { String::new() },
        snippet = snippet_html(web, headers, site),
    );
    let boot = json!({"csrf": t, "email": s.user.email});
    let page = Page::new("Settings", body).user(&s.user, t).script("site.js", boot).render();
    Ok(csrf.apply(Reply::html(StatusCode::OK, page)))
}

/// The latest changes to the site's settings, for its owners.
fn audit_card(web: &Web, site: &Site) -> Result<String> {
    let entries = web.meta.audit_log(site.id, 50).map_err(internal)?;
    let rows: String = entries
        .iter()
        .map(|e| {
            format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
                esc(&crate::stats::rfc3339(site.timezone, e.at_ms)),
                esc(&e.actor),
                esc(&e.action),
                esc(&e.detail)
            )
        })
        .collect();
    let table = if entries.is_empty() {
        "<p class=\"hint\">No changes recorded yet.</p>".to_owned()
    } else {
        format!(
            "<table class=\"rows\" id=\"audit\"><thead><tr><th scope=\"col\">When</th><th scope=\"col\">Who</th>\
             <th scope=\"col\">What</th><th scope=\"col\">Request</th></tr></thead><tbody>{rows}</tbody></table>"
        )
    };
    Ok(format!(
        "<section class=\"card\"><h2>Audit log</h2><p>Changes to these settings from the dashboard and the API, \
         newest first (the latest 50 here; all 5,000 kept through the API).</p>{table}</section>"
    ))
}

/// The site's firewall rules, each with its remove button.
fn rules_list(web: &Web, site: &Site, csrf: &str) -> Result<String> {
    Ok(web
        .meta
        .rules(site.id)
        .map_err(internal)?
        .iter()
        .map(|r| {
            let what = match r.kind.name() {
                "ip" => "address",
                "allow_host" => "allowed hostname",
                other => other,
            };
            format!(
                "<li><span>{what} <code>{}</code></span>{}</li>",
                esc(&r.kind.value()),
                button_form(&format!("/sites/{}/firewall/{}/delete", site.domain, r.id), csrf, "Remove", "link danger")
            )
        })
        .collect())
}

/// Turned-away hits by reason over the last 24 hours.
fn security_table(web: &Web, site: &Site) -> Result<String> {
    let (_, counts) = crate::sites::security_counts(web, site, 24).map_err(|e| internal(e.message))?;
    let mut totals: std::collections::BTreeMap<&str, u64> = Default::default();
    for c in &counts {
        *totals.entry(c.reason.as_str()).or_default() += c.count;
    }
    if totals.is_empty() {
        return Ok("<p class=\"hint\" id=\"security\">None.</p>".into());
    }
    let rows: String = totals
        .iter()
        .map(|(reason, n)| {
            let what = Reason::from_name(reason).map(Reason::describe).unwrap_or_default();
            format!("<tr><td><code>{}</code></td><td>{}</td><td>{n}</td></tr>", esc(reason), esc(what))
        })
        .collect();
    Ok(format!(
        "<table class=\"rows\" id=\"security\"><thead><tr><th scope=\"col\">Reason</th>\
         <th scope=\"col\">What it means</th><th scope=\"col\">Hits</th></tr></thead><tbody>{rows}</tbody></table>"
    ))
}

pub async fn settings(
    State(web): State<Arc<Web>>,
    Extension(action): Extension<Action>,
    headers: HeaderMap,
    Path(domain): Path<String>,
) -> Result<Reply> {
    let s = user_session(&web, &headers, &format!("/sites/{domain}/settings"))?;
    let (site, role) = site_access(&web, &s, &domain, action)?;
    settings_page(&web, &headers, &s, &site, role, "")
}

/// A settings form, checked: its fields, the signed-in user, the site and their role (which
/// must allow `action`).
fn settings_form(
    web: &Web,
    headers: &HeaderMap,
    domain: &str,
    body: &Bytes,
    action: Action,
) -> Result<(HashMap<String, String>, Session, Site, Role)> {
    let f = form(headers, body)?;
    let s = user_session(web, headers, &format!("/sites/{domain}/settings"))?;
    let (site, role) = site_access(web, &s, domain, action)?;
    Ok((f, s, site, role))
}

fn back_to_settings(site: &Site) -> Result<Reply> {
    Ok(Reply::redirect(&format!("/sites/{}/settings", site.domain)))
}

pub async fn update(
    State(web): State<Arc<Web>>,
    Extension(action): Extension<Action>,
    headers: HeaderMap,
    Path(domain): Path<String>,
    body: Bytes,
) -> Result<Reply> {
    let (f, _, site, _) = settings_form(&web, &headers, &domain, &body, action)?;
    web.meta.update_site(site.id, None, Some(field(&f, "timezone"))).map_err(meta_reply)?;
    back_to_settings(&site)
}

/// The retention in force, as the dashboard and the settings say it.
pub fn retention_label(months: Option<u16>) -> String {
    format!("Data kept {}", retention_span(months))
}

/// How long a retention keeps data: "forever", "1 month", "12 months".
fn retention_span(months: Option<u16>) -> String {
    match months {
        None => "forever".to_owned(),
        Some(1) => "1 month".to_owned(),
        Some(m) => format!("{m} months"),
    }
}

/// Retentions offered in the settings (the CLI takes any from 1 to `MAX_RETENTION_MONTHS`).
const RETENTION_CHOICES: [u16; 7] = [3, 6, 12, 24, 36, 60, 120];

fn retention_form(base: &str, csrf: &str, months: Option<u16>) -> String {
    let mut choices: Vec<Option<u16>> = std::iter::once(None).chain(RETENTION_CHOICES.map(Some)).collect();
    if !choices.contains(&months) {
        choices.push(months);
    }
    let options: String = choices
        .iter()
        .map(|m| {
            let value = m.map_or_else(|| "forever".to_owned(), |m| m.to_string());
            let selected = if *m == months { " selected" } else { "" };
            format!(
                "<option value=\"{value}\"{selected}>{}</option>",
                retention_label(*m).trim_start_matches("Data kept ")
            )
        })
        .collect();
    format!(
        "<form method=\"post\" action=\"{base}/retention\" class=\"row\">{c}<label>Keep data for \
         <select name=\"months\">{options}</select></label><button type=\"submit\">Save</button></form>\
         <p class=\"hint\">The current month and that many before it are kept. Stored events of older days \
         are deleted with their rollups, and events for those days are not stored; a shorter retention \
         deletes data for good.</p>",
        c = csrf_field(csrf)
    )
}

pub async fn set_retention(
    State(web): State<Arc<Web>>,
    Extension(action): Extension<Action>,
    headers: HeaderMap,
    Path(domain): Path<String>,
    body: Bytes,
) -> Result<Reply> {
    let (f, _, site, _) = settings_form(&web, &headers, &domain, &body, action)?;
    let months = plumb_meta::parse_retention(field(&f, "months")).map_err(meta_reply)?;
    web.meta.set_retention(site.id, months).map_err(meta_reply)?;
    back_to_settings(&site)
}

pub async fn add_goal(
    State(web): State<Arc<Web>>,
    Extension(action): Extension<Action>,
    headers: HeaderMap,
    Path(domain): Path<String>,
    body: Bytes,
) -> Result<Reply> {
    let (f, _, site, _) = settings_form(&web, &headers, &domain, &body, action)?;
    let value = field(&f, "value").to_owned();
    let kind = match field(&f, "kind") {
        "page" => GoalKind::Page(value),
        "event" => GoalKind::Event(value),
        other => {
            return Err(error_page(
                StatusCode::BAD_REQUEST,
                "Unknown goal kind",
                &format!("`{other}` is not page or event"),
            ));
        }
    };
    let name = Some(field(&f, "name")).filter(|n| !n.is_empty());
    let currency = Some(field(&f, "currency")).filter(|c| !c.is_empty());
    web.meta.add_goal_with_currency(site.id, kind, name, currency).map_err(meta_reply)?;
    back_to_settings(&site)
}

pub async fn remove_goal(
    State(web): State<Arc<Web>>,
    Extension(action): Extension<Action>,
    headers: HeaderMap,
    Path((domain, id)): Path<(String, u32)>,
    body: Bytes,
) -> Result<Reply> {
    let (_, _, site, _) = settings_form(&web, &headers, &domain, &body, action)?;
    web.meta.remove_goal(site.id, id).map_err(meta_reply)?;
    back_to_settings(&site)
}

pub async fn add_share(
    State(web): State<Arc<Web>>,
    Extension(action): Extension<Action>,
    headers: HeaderMap,
    Path(domain): Path<String>,
    body: Bytes,
) -> Result<Reply> {
    let (f, _, site, _) = settings_form(&web, &headers, &domain, &body, action)?;
    let password = f.get("password").filter(|p| !p.is_empty()).cloned();
    let min_visitors = match field(&f, "min_visitors").trim() {
        "" => 0,
        n => n.parse().map_err(|_| {
            let m = format!("hide rows under: `{n}` is not a number of visitors");
            meta_reply(plumb_meta::MetaError::Invalid(m))
        })?,
    };
    let (meta, name, id) = (web.meta.clone(), field(&f, "name").to_owned(), site.id);
    hashing(&web, move || meta.create_shared_link(id, &name, password.as_deref(), min_visitors))
        .await?
        .map_err(meta_reply)?;
    back_to_settings(&site)
}

pub async fn remove_share(
    State(web): State<Arc<Web>>,
    Extension(action): Extension<Action>,
    headers: HeaderMap,
    Path((domain, slug)): Path<(String, String)>,
    body: Bytes,
) -> Result<Reply> {
    let (_, _, site, _) = settings_form(&web, &headers, &domain, &body, action)?;
    web.meta.remove_shared_link(site.id, &slug).map_err(meta_reply)?;
    back_to_settings(&site)
}

pub async fn invite(
    State(web): State<Arc<Web>>,
    Extension(action): Extension<Action>,
    headers: HeaderMap,
    Path(domain): Path<String>,
    body: Bytes,
) -> Result<Reply> {
    let (f, s, site, role) = settings_form(&web, &headers, &domain, &body, action)?;
    let wanted = Role::parse(field(&f, "role")).map_err(meta_reply)?;
    if wanted > role {
        return Err(error_page(StatusCode::FORBIDDEN, "Not allowed", "You cannot invite someone above your own role."));
    }
    let email = field(&f, "email");
    let token = web.meta.create_invite(site.id, wanted, email).map_err(meta_reply)?;
    let link = format!("{}/invite/{token}", base_url(&web, &headers));
    let email = plumb_meta::validate_email(email).map_err(meta_reply)?;
    let mailed = web.notifier.send_invite(&site, &email, wanted.name(), &link).await.map_err(internal)?;
    let how = if mailed { "It was mailed to them; you can also send" } else { "Send" };
    let notice = format!(
        "<section class=\"card notice\" role=\"status\"><h2>Invite link</h2><p>{how} this link to the person \
         you invite ({}, {}). It works once, within 7 days, and is shown only now.</p>\
         <div class=\"snippet\"><pre><code id=\"invite-link\">{}</code></pre>\
         <button type=\"button\" data-copy=\"invite-link\">Copy</button></div></section>",
        esc(&email),
        wanted.name(),
        esc(&link)
    );
    settings_page(&web, &headers, &s, &site, role, &notice)
}

pub async fn add_rule(
    State(web): State<Arc<Web>>,
    Extension(action): Extension<Action>,
    headers: HeaderMap,
    Path(domain): Path<String>,
    body: Bytes,
) -> Result<Reply> {
    let (f, _, site, _) = settings_form(&web, &headers, &domain, &body, action)?;
    let kind = plumb_meta::RuleKind::parse(field(&f, "kind"), field(&f, "value")).map_err(meta_reply)?;
    web.meta.add_rule(site.id, kind).map_err(meta_reply)?;
    back_to_settings(&site)
}

pub async fn remove_rule(
    State(web): State<Arc<Web>>,
    Extension(action): Extension<Action>,
    headers: HeaderMap,
    Path((domain, id)): Path<(String, u32)>,
    body: Bytes,
) -> Result<Reply> {
    let (_, _, site, _) = settings_form(&web, &headers, &domain, &body, action)?;
    web.meta.remove_rule(site.id, id).map_err(meta_reply)?;
    back_to_settings(&site)
}

pub async fn remove_member(
    State(web): State<Arc<Web>>,
    Extension(action): Extension<Action>,
    headers: HeaderMap,
    Path((domain, user_id)): Path<(String, u32)>,
    body: Bytes,
) -> Result<Reply> {
    let (_, _, site, _) = settings_form(&web, &headers, &domain, &body, action)?;
    web.meta.remove_member(user_id, site.id).map_err(meta_reply)?;
    back_to_settings(&site)
}

pub async fn delete(
    State(web): State<Arc<Web>>,
    Extension(action): Extension<Action>,
    headers: HeaderMap,
    Path(domain): Path<String>,
    body: Bytes,
) -> Result<Reply> {
    let (f, _, site, _) = settings_form(&web, &headers, &domain, &body, action)?;
    if field(&f, "confirm") != site.domain {
        return Err(error_page(
            StatusCode::BAD_REQUEST,
            "Not deleted",
            &format!("Type the domain `{}` exactly to confirm.", site.domain),
        ));
    }
    crate::sites::delete_site(&web, &site).await.map_err(|e| internal(e.message))?;
    Ok(Reply::redirect("/sites"))
}
