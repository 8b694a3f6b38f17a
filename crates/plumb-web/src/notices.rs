//! Reports, alerts and webhooks of a site under `/api/v1/sites/{site_id}/…`, and the webhook
//! delivery log. What they send goes through `plumb_notify`.

use crate::Web;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::notes::id;
use crate::sites::{authorized_site, fields, required};
use crate::stats::rfc3339;
use axum::Json;
use axum::extract::{MatchedPath, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use plumb_meta::Site;
use plumb_meta::notices::{Alert, AlertKind, Channel, MAX_LOG, Message, Report, ReportPeriod, Webhook, WebhookEvent};
use serde_json::{Map, Value, json};
use std::sync::Arc;

fn report_json(r: &Report, site: &Site) -> Value {
    json!({"id": r.id, "email": r.email, "period": r.period.name(), "created_at": rfc3339(site.timezone, r.created_ms)})
}

fn alert_json(a: &Alert, site: &Site) -> Value {
    json!({
        "id": a.id,
        "kind": a.kind.name(),
        "threshold": a.threshold,
        "cooldown_minutes": a.cooldown_minutes,
        "email": a.email,
        "last_fired_at": a.last_fired_ms.map(|ms| rfc3339(site.timezone, ms)),
    })
}

/// A webhook as listed: its secret is shown once, when it is made.
fn webhook_json(h: &Webhook, site: &Site) -> Value {
    json!({
        "id": h.id,
        "url": h.url,
        "events": h.events.iter().map(|e| e.name()).collect::<Vec<_>>(),
        "created_at": rfc3339(site.timezone, h.created_ms),
    })
}

fn delivery_json(m: &Message, site: &Site) -> Value {
    json!({
        "id": m.id,
        "key": m.key,
        "state": m.state.name(),
        "attempts": m.attempts,
        "created_at": rfc3339(site.timezone, m.created_ms),
        "next_attempt_or_done_at": rfc3339(site.timezone, m.due_ms),
        "last_error": m.last_error,
    })
}

/// A whole number field (a JSON number, or digits in a form).
fn number(f: &Map<String, Value>, name: &str) -> Result<u32, ApiError> {
    let bad = || ApiError::bad(format!("`{name}` must be a whole number"));
    match f.get(name) {
        Some(Value::Number(n)) => n.as_u64().and_then(|n| u32::try_from(n).ok()).ok_or_else(bad),
        Some(Value::String(s)) => s.trim().parse().map_err(|_| bad()),
        None | Some(Value::Null) => Err(ApiError::bad(format!("`{name}` is required"))),
        Some(_) => Err(bad()),
    }
}

/// Mail needs SMTP configured; say so rather than store what will never be sent.
fn needs_mail(web: &Web) -> Result<(), ApiError> {
    if web.notifier.mailing() { Ok(()) } else { Err(plumb_notify::not_mailing().into()) }
}

/// The collection a route is about: `…/{site_id}/reports…` is `reports`.
fn collection(route: &MatchedPath) -> &str {
    route.as_str().split('/').nth(5).unwrap_or_default()
}

/// `GET /api/v1/sites/{site_id}/reports`, `…/alerts` and `…/webhooks`.
pub async fn list(
    State(web): State<Arc<Web>>,
    caller: Caller,
    route: MatchedPath,
    Path(domain): Path<String>,
) -> Result<Response, ApiError> {
    let site = authorized_site(&web, &caller, &domain)?;
    let id = site.id;
    let answer = match collection(&route) {
        "reports" => json!({
            "reports": web.meta.reports(Some(id))?.iter().map(|r| report_json(r, &site)).collect::<Vec<_>>(),
            "mail_configured": web.notifier.mailing(),
        }),
        "alerts" => {
            json!({"alerts": web.meta.alerts(Some(id))?.iter().map(|a| alert_json(a, &site)).collect::<Vec<_>>()})
        }
        _ => {
            json!({"webhooks": web.meta.webhooks(Some(id))?.iter().map(|h| webhook_json(h, &site)).collect::<Vec<_>>()})
        }
    };
    Ok(Json(answer).into_response())
}

/// `DELETE /api/v1/sites/{site_id}/reports/{id}`, `…/alerts/{id}` and `…/webhooks/{id}`.
pub async fn remove(
    State(web): State<Arc<Web>>,
    caller: Caller,
    route: MatchedPath,
    Path((domain, item)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let site = authorized_site(&web, &caller, &domain)?;
    match collection(&route) {
        "reports" => web.meta.remove_report(site.id, id("report", &item)?)?,
        "alerts" => web.meta.remove_alert(site.id, id("alert", &item)?)?,
        _ => web.meta.remove_webhook(site.id, id("webhook", &item)?)?,
    }
    Ok(Json(json!({"deleted": true})).into_response())
}

/// `POST /api/v1/sites/{site_id}/reports` with `email` and `period` (`week` or `month`).
pub async fn add_report(
    State(web): State<Arc<Web>>,
    caller: Caller,
    headers: HeaderMap,
    Path(domain): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let site = authorized_site(&web, &caller, &domain)?;
    needs_mail(&web)?;
    let f = fields(&headers, &body)?;
    let period = ReportPeriod::parse(required(&f, "period")?)?;
    let report = web.meta.add_report(site.id, required(&f, "email")?, period)?;
    Ok((StatusCode::CREATED, Json(report_json(&report, &site))).into_response())
}

/// `POST /api/v1/sites/{site_id}/reports/{report_id}/send`: the last whole period's report now,
/// once per period (a repeat is `200` with `queued: false`, so this cannot flood an inbox).
pub async fn send_report(
    State(web): State<Arc<Web>>,
    caller: Caller,
    Path((domain, report)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let site = authorized_site(&web, &caller, &domain)?;
    let id = id("report", &report)?;
    let report = web.meta.report(id)?.filter(|r| r.site_id == site.id).ok_or_else(|| {
        ApiError::new(StatusCode::NOT_FOUND, format!("report {id} of site {} not found", site.domain))
    })?;
    let queued = web.notifier.send_report_now(&site, &report).await?;
    let status = if queued { StatusCode::ACCEPTED } else { StatusCode::OK };
    Ok((status, Json(json!({"queued": queued}))).into_response())
}

/// `POST /api/v1/sites/{site_id}/alerts` with `kind`, `threshold`, `cooldown_minutes` and an
/// optional `email`.
pub async fn add_alert(
    State(web): State<Arc<Web>>,
    caller: Caller,
    headers: HeaderMap,
    Path(domain): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let site = authorized_site(&web, &caller, &domain)?;
    let f = fields(&headers, &body)?;
    let kind = AlertKind::parse(required(&f, "kind")?)?;
    let email = match f.get("email") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.trim().is_empty() => None,
        Some(Value::String(s)) => Some(s.as_str()),
        Some(_) => return Err(ApiError::bad("`email` must be a string")),
    };
    if email.is_some() {
        needs_mail(&web)?;
    }
    let alert = web.meta.add_alert(site.id, kind, number(&f, "threshold")?, number(&f, "cooldown_minutes")?, email)?;
    Ok((StatusCode::CREATED, Json(alert_json(&alert, &site))).into_response())
}

/// `POST /api/v1/sites/{site_id}/webhooks` with `url` and `events` (a list, or comma-separated):
/// the answer holds the signing secret, shown this once.
pub async fn add_webhook(
    State(web): State<Arc<Web>>,
    caller: Caller,
    headers: HeaderMap,
    Path(domain): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let site = authorized_site(&web, &caller, &domain)?;
    let f = fields(&headers, &body)?;
    let names: Vec<String> = match f.get("events") {
        Some(Value::Array(list)) => list
            .iter()
            .map(|v| v.as_str().map(str::to_owned).ok_or_else(|| ApiError::bad("`events` must be a list of names")))
            .collect::<Result<_, _>>()?,
        Some(Value::String(s)) => s.split(',').map(|e| e.trim().to_owned()).filter(|e| !e.is_empty()).collect(),
        _ => return Err(ApiError::bad("`events` is required: `alert`, `daily`, `goal`, as a list or comma-separated")),
    };
    let events = names.iter().map(|n| WebhookEvent::parse(n)).collect::<Result<Vec<_>, _>>()?;
    let url = required(&f, "url")?;
    web.notifier.hooks().check_target(url).map_err(ApiError::bad)?;
    let hook = web.meta.add_webhook(site.id, url, &events)?;
    let mut shown = webhook_json(&hook, &site);
    shown["secret"] = json!(hook.secret);
    Ok((StatusCode::CREATED, Json(shown)).into_response())
}

/// `GET /api/v1/sites/{site_id}/webhooks/{webhook_id}/deliveries`: the latest deliveries,
/// newest first.
pub async fn deliveries(
    State(web): State<Arc<Web>>,
    caller: Caller,
    Path((domain, hook)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let site = authorized_site(&web, &caller, &domain)?;
    let hook = id("webhook", &hook)?;
    let target = hook.to_string();
    let list: Vec<Value> = web
        .meta
        .messages(site.id, Channel::Webhook, Some(&target), MAX_LOG)?
        .iter()
        .map(|m| delivery_json(m, &site))
        .collect();
    Ok(Json(json!({"deliveries": list})).into_response())
}
