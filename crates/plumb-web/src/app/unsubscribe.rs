//! A report's unsubscribe link: it works without signing in, as its address carries an HMAC of
//! the subscription (`plumb_notify::report::unsubscribe_token`). Opening it shows one button, so
//! a mail scanner that follows links unsubscribes nobody; mail clients that support one-click
//! unsubscribing (RFC 8058, `List-Unsubscribe-Post`) POST to it directly.

use super::html::{Page, esc};
use super::{Reply, Result, error_page, internal};
use crate::Web;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use plumb_meta::notices::Report;
use plumb_notify::report::token_matches;
use std::sync::Arc;

/// The subscription the link names, if its token is right (a wrong token and a removed
/// subscription look alike).
fn subscription(web: &Web, id: &str, token: &str) -> Result<Option<Report>> {
    let Ok(id) = id.parse::<u32>() else { return Ok(None) };
    if !token_matches(&web.server_key, id, token) {
        return Ok(None);
    }
    web.meta.report(id).map_err(internal)
}

fn page(title: &str, inner: String) -> Reply {
    let body = format!("<section class=\"card narrow\"><h1>{}</h1>{inner}</section>", esc(title));
    Reply::html(StatusCode::OK, Page::new(title, body).render())
}

fn gone() -> Reply {
    error_page(
        StatusCode::NOT_FOUND,
        "Already unsubscribed",
        "This address no longer gets this report (or the link is not complete).",
    )
}

/// `GET /unsubscribe/{id}/{token}`.
pub async fn form(State(web): State<Arc<Web>>, Path((id, token)): Path<(String, String)>) -> Result<Reply> {
    let report = subscription(&web, &id, &token)?.ok_or_else(gone)?;
    let site = web.meta.site_by_id(report.site_id).map_err(internal)?.map(|s| s.domain).unwrap_or_default();
    let inner = format!(
        "<p>Stop sending the {} report of <strong>{}</strong> to <strong>{}</strong>?</p>\
         <form method=\"post\" action=\"/unsubscribe/{}/{}\"><button type=\"submit\" class=\"primary\">Unsubscribe</button></form>",
        report.period.name(),
        esc(&site),
        esc(&report.email),
        report.id,
        esc(&token)
    );
    Ok(page("Unsubscribe", inner))
}

/// `POST /unsubscribe/{id}/{token}`: from the page's button or a mail client's one click.
pub async fn unsubscribe(State(web): State<Arc<Web>>, Path((id, token)): Path<(String, String)>) -> Result<Reply> {
    let report = subscription(&web, &id, &token)?.ok_or_else(gone)?;
    web.meta.remove_report(report.site_id, report.id).map_err(|_| gone())?;
    let entry = plumb_meta::notices::AuditEntry {
        at_ms: chrono::Utc::now().timestamp_millis(),
        actor: format!("`{}` (the report's unsubscribe link)", report.email),
        action: "Stop a report".into(),
        detail: format!("POST /unsubscribe/{}", report.id),
    };
    if let Err(e) = web.meta.record_audit(report.site_id, &entry) {
        tracing::error!("the audit log could not record an unsubscribe: {e}");
    }
    Ok(page(
        "Unsubscribed",
        format!(
            "<p><strong>{}</strong> gets no more {} reports of this site.</p>",
            esc(&report.email),
            report.period.name()
        ),
    ))
}
