//! The dashboard page, for signed-in users and for shared links. The server sends the frame and
//! what the script needs to know (site, timezone, today, goals, how to authenticate); the script
//! asks the Stats API for every number, each panel on its own.

use super::html::{Page, csrf_field, esc};
use super::{
    Attempt, Csrf, Framable, Reply, Result, client, error_page, field, form, hashing, internal, secure, set_cookie,
    site_access, user_session,
};
use crate::Web;
use crate::auth::{SHARE_COOKIE, open_share, share_cookie_value};
use axum::Extension;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use plumb_meta::permission::{Action, allowed, user_holders};
use plumb_meta::{Role, SharedLink, Site};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

/// What the dashboard script starts from.
fn boot(web: &Web, site: &Site, csrf: &str, share: Option<&SharedLink>, role: Option<Role>) -> Result<Value> {
    let goals = web.meta.list_goals(site.id).map_err(internal)?;
    let revenue = goals.iter().any(|g| g.currency.is_some());
    let goals: Vec<String> = goals.into_iter().map(|g| g.display_name).collect();
    let today = plumb_core::time::local_day(site.timezone, chrono::Utc::now().timestamp_millis());
    Ok(json!({
        "site": site.domain,
        "timezone": site.timezone.name(),
        "today": plumb_core::time::date_of_day(today).to_string(),
        "goals": goals,
        "revenue": revenue,
        "csrf": csrf,
        "share": share.map(|l| &l.slug),
        "canEdit": role.is_some_and(|r| allowed(Action::Manage, &user_holders(Some(r), false))),
        "canSave": role.is_some_and(|r| allowed(Action::Personal, &user_holders(Some(r), false))),
        "hiddenBelow": share.map(|l| l.min_visitors).filter(|k| *k > 1),
    }))
}

/// The frame the script fills in; every region has its place and a heading before data comes.
fn frame(web: &Web, site: &Site, settings: bool, others: &[(Site, Role)]) -> Result<String> {
    let switcher = if others.len() > 1 {
        let options: String = others
            .iter()
            .map(|(s, _)| {
                format!(
                    "<option{} value=\"{d}\">{d}</option>",
                    if s.id == site.id { " selected" } else { "" },
                    d = esc(&s.domain)
                )
            })
            .collect();
        format!(
            "<label class=\"sr-only\" for=\"site-switch\">Site</label><select id=\"site-switch\">{options}</select>"
        )
    } else {
        format!("<h1 class=\"site-name\">{}</h1>", esc(&site.domain))
    };
    let settings = if settings {
        format!("<a href=\"/sites/{}/settings\" class=\"button\">Settings</a>", esc(&site.domain))
    } else {
        String::new()
    };
    Ok(format!(
        "<div class=\"dash\" id=\"dash\">\
         <div class=\"dash-head\">{switcher}<button type=\"button\" id=\"live\" class=\"live\" \
         aria-live=\"polite\"><span class=\"dot\"></span><span id=\"live-count\">0</span> current visitors</button>\
         <span class=\"grow\"></span><span class=\"tz\" title=\"The site's timezone\">{tz}</span>\
         <span class=\"tz\" id=\"retention\" title=\"How long the site's data is kept\">{kept}</span>\
         <div class=\"range\" id=\"range\"></div>{settings}</div>\
         <div class=\"filters\" id=\"filters\" aria-label=\"Filters\"></div>\
         <section class=\"card stats-card\" aria-label=\"Overview\"><div class=\"stats\" id=\"stats\" role=\"tablist\"></div>\
         <div class=\"chart-head\"><span id=\"chart-title\"></span><select id=\"interval\" aria-label=\"Interval\"></select></div>\
         <div class=\"chart\" id=\"chart\"></div><div id=\"chart-note\" aria-live=\"polite\"></div>\
         <div class=\"notes\" id=\"notes\" aria-label=\"Annotations\"></div></section>\
         <div class=\"panels\" id=\"panels\"></div>\
         <section class=\"card funnels\" id=\"funnels\" aria-label=\"Funnels\"></section>\
         <div class=\"footer-actions\"><a id=\"export-all\" class=\"button\" href=\"#\">Export all (Plausible CSV zip)</a>\
         <span class=\"hint\">Keys: d today · y yesterday · w 7 days · t 30 days · m month · l last month · \
         r 12 months · a all time · c custom · Esc closes</span>{attribution}</div>\
         <dialog id=\"details\" aria-labelledby=\"details-title\"></dialog></div>",
        tz = esc(site.timezone.name()),
        kept = super::sites::retention_label(web.meta.retention(site.id).map_err(internal)?),
        attribution = web
            .geo_attribution
            .map(|(text, link)| format!("<a class=\"attribution\" href=\"{}\">{}</a>", esc(link), esc(text)))
            .unwrap_or_default(),
    ))
}

pub async fn page(
    State(web): State<Arc<Web>>,
    Extension(action): Extension<Action>,
    headers: HeaderMap,
    Path(domain): Path<String>,
) -> Result<Reply> {
    let s = user_session(&web, &headers, &format!("/sites/{domain}"))?;
    let (site, role) = site_access(&web, &s, &domain, action)?;
    let others = web.meta.user_sites(s.user.id).map_err(internal)?;
    let csrf = Csrf::of(&web, &headers);
    let boot = boot(&web, &site, &csrf.token, None, Some(role))?;
    let manages = allowed(Action::Manage, &user_holders(Some(role), s.user.is_owner));
    let page = Page::new(&site.domain, frame(&web, &site, manages, &others)?)
        .user(&s.user, &csrf.token)
        .script("dashboard.js", boot)
        .render();
    Ok(csrf.apply(Reply::html(StatusCode::OK, page)))
}

fn share_password_page(link: &SharedLink, csrf: &str, embed: bool, error: Option<&str>) -> String {
    let error = error.map(|e| format!("<p class=\"error\" role=\"alert\">{}</p>", esc(e))).unwrap_or_default();
    let body = format!(
        "<section class=\"card narrow\"><h1>{name}</h1>{error}<p>This dashboard is protected by a password.</p>\
         <form method=\"post\" action=\"/share/{slug}{embed}\" class=\"stack\">{csrf}\
         <label>Password <input type=\"password\" name=\"password\" required autocomplete=\"current-password\" autofocus></label>\
         <button type=\"submit\" class=\"primary\">Open</button></form></section>",
        name = esc(&link.name),
        slug = esc(&link.slug),
        embed = if embed { "?embed=true" } else { "" },
        csrf = csrf_field(csrf),
    );
    Page::new(&link.name, body).embed(embed).render()
}

/// Embedded shared dashboards may be framed by any site; everything else may not.
fn embeddable(reply: Reply, embed: bool) -> Response {
    let mut r = reply.into_response();
    if embed {
        r.extensions_mut().insert(Framable);
    }
    r
}

fn share_site(web: &Web, link: &SharedLink) -> Result<Site> {
    web.meta.site_by_id(link.site_id).map_err(internal)?.ok_or_else(|| {
        error_page(StatusCode::NOT_FOUND, "Not found", "This shared link does not exist or was revoked.")
    })
}

pub async fn share(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    Path(slug): Path<String>,
    Query(p): Query<HashMap<String, String>>,
) -> Response {
    let embed = p.get("embed").is_some_and(|v| v == "true");
    let go = || -> Result<Reply> {
        let link = web.meta.shared_link(&slug).map_err(internal)?.ok_or_else(|| {
            error_page(StatusCode::NOT_FOUND, "Not found", "This shared link does not exist or was revoked.")
        })?;
        let csrf = Csrf::of(&web, &headers);
        if open_share(&web, crate::auth::cookie(&headers, SHARE_COOKIE), &slug).is_err() {
            let page = share_password_page(&link, &csrf.token, embed, None);
            return Ok(csrf.apply(Reply::html(StatusCode::UNAUTHORIZED, page)));
        }
        let site = share_site(&web, &link)?;
        let boot = boot(&web, &site, &csrf.token, Some(&link), None)?;
        let page =
            Page::new(&site.domain, frame(&web, &site, false, &[])?).embed(embed).script("dashboard.js", boot).render();
        Ok(csrf.apply(Reply::html(StatusCode::OK, page)))
    };
    embeddable(go().unwrap_or_else(|e| e), embed)
}

pub async fn share_password(
    State(web): State<Arc<Web>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(slug): Path<String>,
    Query(p): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    let embed = p.get("embed").is_some_and(|v| v == "true");
    let go = async || -> Result<Reply> {
        let f = form(&headers, &body)?;
        let link = web.meta.shared_link(&slug).map_err(internal)?.ok_or_else(|| {
            error_page(StatusCode::NOT_FOUND, "Not found", "This shared link does not exist or was revoked.")
        })?;
        let attempt = Attempt::take(&web, format!("share:{slug}"), client(&web, &addr, &headers))?;
        let (meta, l, password) = (web.meta.clone(), link.clone(), field(&f, "password").to_owned());
        if !hashing(&web, move || meta.check_shared_password(&l, &password)).await? {
            let page = share_password_page(&link, field(&f, "csrf"), embed, Some("Wrong password."));
            return Err(Reply::html(StatusCode::UNAUTHORIZED, page));
        }
        attempt.succeeded();
        let value = share_cookie_value(&web.server_key, &link);
        // Lax: the cookie must come along when the link is opened from elsewhere.
        let c = set_cookie(SHARE_COOKIE, &value, Some(30 * 86_400), "Lax", secure(&web, &headers));
        let to = format!("/share/{slug}{}", if embed { "?embed=true" } else { "" });
        Ok(Reply::redirect(&to).cookie(c))
    };
    embeddable(go().await.unwrap_or_else(|e| e), embed)
}
