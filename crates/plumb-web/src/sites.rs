//! Sites API (`/api/v1/sites`) and goals API (`/api/v1/sites/goals`), with Plausible's paths,
//! parameters and answer shapes. Writes need the `sites:admin` scope; creating a site needs a
//! key that is not limited to some sites.

use crate::Web;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::stats::site;
use axum::Json;
use axum::extract::{Path, Query as QueryParams, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use plumb_meta::permission::Action;
use plumb_meta::{Goal, GoalKind, Site};
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::sync::Arc;

type Params = HashMap<String, String>;

/// Request fields from a JSON object or a form body (Plausible's examples send forms).
pub(crate) fn fields(headers: &HeaderMap, body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    if content_type.starts_with("application/x-www-form-urlencoded") {
        return Ok(url::form_urlencoded::parse(body)
            .map(|(k, v)| (k.into_owned(), Value::from(v.into_owned())))
            .collect());
    }
    match serde_json::from_slice(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(ApiError::bad("the request body must be a JSON object")),
        Err(e) => Err(ApiError::bad(format!("the request body is not valid JSON: {e}"))),
    }
}

fn text<'a>(fields: &'a Map<String, Value>, name: &str) -> Result<Option<&'a str>, ApiError> {
    match fields.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(ApiError::bad(format!("`{name}` must be a string, got {other}"))),
    }
}

pub(crate) fn required<'a>(fields: &'a Map<String, Value>, name: &str) -> Result<&'a str, ApiError> {
    text(fields, name)?.ok_or_else(|| ApiError::bad(format!("`{name}` is required")))
}

fn site_json(s: &Site) -> Value {
    json!({"domain": s.domain, "timezone": s.timezone.name()})
}

fn goal_json(g: &Goal) -> Value {
    let (goal_type, event_name, page_path) = match &g.kind {
        GoalKind::Event(e) => ("event", Some(e), None),
        GoalKind::Page(p) => ("page", None, Some(p)),
    };
    json!({
        "id": g.id,
        "display_name": g.display_name,
        "goal_type": goal_type,
        "event_name": event_name,
        "page_path": page_path,
        "currency": g.currency,
    })
}

/// The site named by `site_id`, after checking the caller may do what the route asks on it.
pub(crate) fn authorized_site(web: &Web, caller: &Caller, domain: &str) -> Result<Site, ApiError> {
    // An unknown site in the path is a missing resource, not a malformed request.
    let site = site(web, domain).map_err(|e| match e.status {
        StatusCode::BAD_REQUEST => ApiError { status: StatusCode::NOT_FOUND, ..e },
        _ => e,
    })?;
    caller.authorize(web, Some(&site))?;
    Ok(site)
}

/// One page of `items` (already in cursor order and past `after`), as Plausible's list answers
/// it: `{field: [...], meta: {after, before, limit}}`, where `after` is the cursor of the page's
/// last item when more follow.
fn page<T>(
    field: &str,
    items: &[T],
    p: &Params,
    cursor: impl Fn(&T) -> Value,
    show: impl Fn(&T) -> Value,
) -> Result<Response, ApiError> {
    let limit = match p.get("limit") {
        None => 100,
        Some(l) => l
            .parse()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| ApiError::bad(format!("limit must be 1 to 1000, got `{l}`")))?,
    };
    let shown = &items[..limit.min(items.len())];
    let next = if items.len() > limit { shown.last().map(&cursor) } else { None };
    let list: Vec<Value> = shown.iter().map(show).collect();
    Ok(Json(json!({field: list, "meta": {"after": next, "before": null, "limit": limit}})).into_response())
}

/// `GET /api/v1/sites`: the sites the key can read, by domain, paged with `after`.
pub async fn list(
    State(web): State<Arc<Web>>,
    caller: Caller,
    QueryParams(p): QueryParams<Params>,
) -> Result<Response, ApiError> {
    let after = p.get("after").map(String::as_str).unwrap_or_default();
    let mut visible = Vec::new();
    for s in web.meta.list_sites()? {
        let can = caller.allows(&web, Action::Read, Some(&s))? || caller.allows(&web, Action::Manage, Some(&s))?;
        if can && s.domain.as_str() > after {
            visible.push(s);
        }
    }
    page("sites", &visible, &p, |s| json!(s.domain), site_json)
}

/// `POST /api/v1/sites` with `domain` and optional `timezone` (default UTC).
pub async fn create(
    State(web): State<Arc<Web>>,
    caller: Caller,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    caller.authorize(&web, None)?;
    let f = fields(&headers, &body)?;
    let timezone = text(&f, "timezone")?.unwrap_or("UTC");
    let s = web.meta.add_site(required(&f, "domain")?, timezone)?;
    Ok(Json(site_json(&s)).into_response())
}

/// `GET /api/v1/sites/{site_id}`.
pub async fn show(
    State(web): State<Arc<Web>>,
    caller: Caller,
    Path(domain): Path<String>,
) -> Result<Response, ApiError> {
    Ok(Json(site_json(&authorized_site(&web, &caller, &domain)?)).into_response())
}

/// `PUT /api/v1/sites/{site_id}` with a new `domain` and/or `timezone`.
pub async fn update(
    State(web): State<Arc<Web>>,
    caller: Caller,
    headers: HeaderMap,
    Path(domain): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let site = authorized_site(&web, &caller, &domain)?;
    let f = fields(&headers, &body)?;
    let (new_domain, timezone) = (text(&f, "domain")?, text(&f, "timezone")?);
    if new_domain.is_none() && timezone.is_none() {
        return Err(ApiError::bad("nothing to change: send `domain` and/or `timezone`"));
    }
    if new_domain.is_some() {
        caller.authorize_as(&web, Action::Own, Some(&site))?;
    }
    let s = web.meta.update_site(site.id, new_domain, timezone)?;
    Ok(Json(site_json(&s)).into_response())
}

/// `DELETE /api/v1/sites/{site_id}`: the site stops accepting events; its goals, links, roles
/// and stored rows go with it.
pub async fn delete(
    State(web): State<Arc<Web>>,
    caller: Caller,
    Path(domain): Path<String>,
) -> Result<Response, ApiError> {
    let site = authorized_site(&web, &caller, &domain)?;
    let purged = delete_site(&web, &site).await?;
    Ok(Json(json!({"deleted": true, "events_deleted": purged})).into_response())
}

/// How long deleting a site waits for the pipeline to delete its stored rows before answering.
const PURGE_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Removes the site's metadata (the collector refuses its events from then on), then waits until
/// the pipeline, which owns the event store, has deleted its stored rows. Returns whether they
/// are gone; if not yet, the pipeline deletes them when it next can.
pub async fn delete_site(web: &Arc<Web>, site: &Site) -> Result<bool, ApiError> {
    web.meta.remove_site(&site.domain)?;
    let deadline = tokio::time::Instant::now() + PURGE_WAIT;
    while tokio::time::Instant::now() < deadline {
        if web.meta.deleted_sites()?.contains(&(site.id, true)) {
            tracing::info!("deleted site {} and its stored events", site.domain);
            return Ok(true);
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    tracing::warn!("site {} removed; its stored events are not deleted yet", site.domain);
    Ok(false)
}

/// `GET /api/v1/sites/goals?site_id=…`.
pub async fn list_goals(
    State(web): State<Arc<Web>>,
    caller: Caller,
    QueryParams(p): QueryParams<Params>,
) -> Result<Response, ApiError> {
    let domain = p.get("site_id").ok_or_else(|| ApiError::bad("`site_id` is required"))?;
    let site = authorized_site(&web, &caller, domain)?;
    let after: u32 = match p.get("after") {
        None => 0,
        Some(a) => a.parse().map_err(|_| ApiError::bad(format!("after must be a goal id, got `{a}`")))?,
    };
    let mut goals = web.meta.list_goals(site.id)?;
    goals.sort_by_key(|g| g.id);
    goals.retain(|g| g.id > after);
    page("goals", &goals, &p, |g| json!(g.id), goal_json)
}

/// `PUT /api/v1/sites/goals` with `site_id`, `goal_type` (`event` or `page`) and `event_name` or
/// `page_path`, optionally `display_name`. Idempotent: the same goal again is the same goal.
pub async fn put_goal(
    State(web): State<Arc<Web>>,
    caller: Caller,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let f = fields(&headers, &body)?;
    let site = authorized_site(&web, &caller, required(&f, "site_id")?)?;
    let kind = match required(&f, "goal_type")? {
        "event" => GoalKind::Event(required(&f, "event_name")?.to_owned()),
        "page" => GoalKind::Page(required(&f, "page_path")?.to_owned()),
        other => return Err(ApiError::bad(format!("goal_type `{other}` must be event or page"))),
    };
    let g = web.meta.add_goal_with_currency(site.id, kind, text(&f, "display_name")?, text(&f, "currency")?)?;
    Ok(Json(goal_json(&g)).into_response())
}

/// `DELETE /api/v1/sites/goals/{goal_id}` with `site_id` in the body.
pub async fn delete_goal(
    State(web): State<Arc<Web>>,
    caller: Caller,
    headers: HeaderMap,
    Path(goal_id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let goal_id: u32 = goal_id.parse().map_err(|_| ApiError::bad(format!("goal_id `{goal_id}` is not a goal id")))?;
    let f = fields(&headers, &body)?;
    let site = authorized_site(&web, &caller, required(&f, "site_id")?)?;
    web.meta.remove_goal(site.id, goal_id)?;
    Ok(Json(json!({"deleted": true})).into_response())
}

/// `GET /api/v1/sites/{site_id}/security?hours=24`: hits turned away per hour and reason (see
/// `plumb_core::security::Reason`), with totals. No addresses are kept, only counts.
pub async fn security(
    State(web): State<Arc<Web>>,
    caller: Caller,
    Path(domain): Path<String>,
    QueryParams(p): QueryParams<Params>,
) -> Result<Response, ApiError> {
    let site = authorized_site(&web, &caller, &domain)?;
    let hours: i64 = match p.get("hours") {
        None => 24,
        Some(h) => h
            .parse()
            .ok()
            .filter(|n| (1..=24 * 90).contains(n))
            .ok_or_else(|| ApiError::bad(format!("hours must be 1 to 2160, got `{h}`")))?,
    };
    let (since, counts) = security_counts(&web, &site, hours)?;
    let mut totals = Map::new();
    for c in &counts {
        let t = totals.entry(c.reason.clone()).or_insert(json!(0));
        *t = json!(t.as_u64().unwrap_or(0) + c.count);
    }
    let hourly: Vec<Value> =
        counts.iter().map(|c| json!({"hour": hour_label(c.hour), "reason": c.reason, "count": c.count})).collect();
    Ok(Json(json!({"site_id": site.domain, "since": hour_label(since), "totals": totals, "hours": hourly}))
        .into_response())
}

/// `GET /api/v1/sites/{site_id}/audit?limit=100`: who changed what in the site's settings,
/// newest first (owners).
pub async fn audit(
    State(web): State<Arc<Web>>,
    caller: Caller,
    Path(domain): Path<String>,
    QueryParams(p): QueryParams<Params>,
) -> Result<Response, ApiError> {
    let site = authorized_site(&web, &caller, &domain)?;
    let max = plumb_meta::notices::MAX_AUDIT;
    let limit: u32 = match p.get("limit") {
        None => 100,
        Some(l) => l
            .parse()
            .ok()
            .filter(|n| (1..=max).contains(n))
            .ok_or_else(|| ApiError::bad(format!("limit must be 1 to {max}, got `{l}`")))?,
    };
    let entries: Vec<Value> = web
        .meta
        .audit_log(site.id, limit)?
        .into_iter()
        .map(|e| {
            json!({"at": crate::stats::rfc3339(site.timezone, e.at_ms), "actor": e.actor, "action": e.action, "request": e.detail})
        })
        .collect();
    Ok(Json(json!({"site_id": site.domain, "changes": entries})).into_response())
}

/// The site's security counts over the last `hours` hours (this one included), and the first
/// hour they cover.
pub fn security_counts(web: &Web, site: &Site, hours: i64) -> Result<(i64, Vec<plumb_meta::SecurityCount>), ApiError> {
    let since = chrono::Utc::now().timestamp().div_euclid(3600) - hours + 1;
    Ok((since, web.meta.security_counts(site.id, since)?))
}

fn hour_label(hour: i64) -> String {
    chrono::DateTime::from_timestamp(hour * 3600, 0).unwrap_or_default().format("%Y-%m-%dT%H:00:00Z").to_string()
}

fn rule_json(r: &plumb_meta::FirewallRule) -> Value {
    json!({"id": r.id, "kind": r.kind.name(), "value": r.kind.value()})
}

/// `GET /api/v1/sites/{site_id}/firewall`: the site's rules.
pub async fn list_rules(
    State(web): State<Arc<Web>>,
    caller: Caller,
    Path(domain): Path<String>,
) -> Result<Response, ApiError> {
    let site = authorized_site(&web, &caller, &domain)?;
    let rules: Vec<Value> = web.meta.rules(site.id)?.iter().map(rule_json).collect();
    Ok(Json(json!({"rules": rules})).into_response())
}

/// `POST /api/v1/sites/{site_id}/firewall` with `kind` and `value`; in effect within a second.
pub async fn add_rule(
    State(web): State<Arc<Web>>,
    caller: Caller,
    headers: HeaderMap,
    Path(domain): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let site = authorized_site(&web, &caller, &domain)?;
    let f = fields(&headers, &body)?;
    let kind = plumb_meta::RuleKind::parse(required(&f, "kind")?, required(&f, "value")?)?;
    let rule = web.meta.add_rule(site.id, kind)?;
    Ok(Json(rule_json(&rule)).into_response())
}

/// `DELETE /api/v1/sites/{site_id}/firewall/{rule_id}`.
pub async fn remove_rule(
    State(web): State<Arc<Web>>,
    caller: Caller,
    Path((domain, rule_id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let site = authorized_site(&web, &caller, &domain)?;
    web.meta.remove_rule(site.id, crate::notes::id("rule", &rule_id)?)?;
    Ok(Json(json!({"deleted": true})).into_response())
}
