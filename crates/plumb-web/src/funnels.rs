//! Funnels: defined under `/api/v1/sites/{site_id}/funnels` from the site's goals, answered by
//! `POST /api/v2/funnel`. The pipeline counts a funnel from a little after it is made
//! (`counting_since`), as visits happen; every answer says so.

use crate::Web;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::sites::{authorized_site, fields, required};
use crate::stats::{parse_filters, rfc3339, run_blocking, shown_range, site, site_goals};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use plumb_core::time::{hour_start_ms, local_day_hour};
use plumb_meta::{Funnel, Site, funnel_steps};
use plumb_query::funnel::{FunnelQuery, run_funnel};
use plumb_query::period::resolve_window;
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;

fn funnel_json(f: &Funnel, site: &Site) -> Value {
    json!({
        "id": f.id,
        "name": f.name,
        "steps": f.steps.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
        "counting_since": rfc3339(site.timezone, f.starts_ms),
    })
}

/// `GET /api/v1/sites/{site_id}/funnels`.
pub async fn list(
    State(web): State<Arc<Web>>,
    caller: Caller,
    Path(domain): Path<String>,
) -> Result<Response, ApiError> {
    let site = authorized_site(&web, &caller, &domain)?;
    let list: Vec<Value> = web.meta.funnels(Some(site.id))?.iter().map(|f| funnel_json(f, &site)).collect();
    Ok(Json(json!({"funnels": list})).into_response())
}

/// `POST /api/v1/sites/{site_id}/funnels` with `name` and `steps`: the names of 2 to 8 of the
/// site's goals, in order (a JSON list, or one per line in a form).
pub async fn add(
    State(web): State<Arc<Web>>,
    caller: Caller,
    headers: HeaderMap,
    Path(domain): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let site = authorized_site(&web, &caller, &domain)?;
    let f = fields(&headers, &body)?;
    let names: Vec<String> = match f.get("steps") {
        Some(Value::Array(list)) => list
            .iter()
            .map(|v| v.as_str().map(str::to_owned).ok_or_else(|| ApiError::bad("`steps` must be a list of goal names")))
            .collect::<Result<_, _>>()?,
        Some(Value::String(lines)) => {
            lines.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect()
        }
        _ => return Err(ApiError::bad("`steps` is required: the names of 2 to 8 of the site's goals, in order")),
    };
    let steps = funnel_steps(&web.meta.list_goals(site.id)?, &names)?;
    let funnel = web.meta.add_funnel(site.id, required(&f, "name")?, &steps)?;
    Ok((StatusCode::CREATED, Json(funnel_json(&funnel, &site))).into_response())
}

/// `DELETE /api/v1/sites/{site_id}/funnels/{funnel_id}`.
pub async fn remove(
    State(web): State<Arc<Web>>,
    caller: Caller,
    Path((domain, funnel)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let site = authorized_site(&web, &caller, &domain)?;
    web.meta.remove_funnel(site.id, crate::notes::id("funnel", &funnel)?)?;
    Ok(Json(json!({"deleted": true})).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FunnelBody {
    site_id: String,
    funnel_id: u32,
    date_range: Value,
    #[serde(default)]
    filters: Vec<Value>,
}

/// `POST /api/v2/funnel`: visitors at each step of a funnel over a date range, for visits that
/// match visit filters (segments too).
pub async fn query(State(web): State<Arc<Web>>, caller: Caller, body: axum::body::Bytes) -> Result<Response, ApiError> {
    let body: FunnelBody =
        serde_json::from_slice(&body).map_err(|e| ApiError::bad(format!("invalid funnel query body: {e}")))?;
    let site = site(&web, &body.site_id)?;
    caller.authorize(&web, Some(&site))?;
    // Steps next to each other are differences of small groups.
    if caller.hidden_below(&web, &site)?.is_some() {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "this shared link hides small groups: funnels are not shown"));
    }
    let funnel = web
        .meta
        .funnels(Some(site.id))?
        .into_iter()
        .find(|f| f.id == body.funnel_id)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("funnel {} not found", body.funnel_id)))?;
    let (today, now_hour) = local_day_hour(site.timezone, Utc::now().timestamp_millis());
    let (range, hours) = resolve_window(&body.date_range, today, now_hour)?;
    let filters = crate::notes::expand_segments(&web, &caller, &site, &body.filters)?;
    let filter = parse_filters(&filters, range, &site_goals(&web, site.id)?)?;
    let q = FunnelQuery { site_id: site.id, funnel_id: funnel.id, steps: funnel.steps.len(), range, hours, filter };
    let answer = run_blocking(&web, move |reader| run_funnel(reader, &q)).await??;
    let tz = site.timezone;
    let steps: Vec<Value> = funnel
        .steps
        .iter()
        .zip(&answer.steps)
        .map(|(s, counts)| {
            let mut v = serde_json::to_value(counts).unwrap_or_default();
            v["name"] = json!(s.name);
            v
        })
        .collect();
    let mut meta = serde_json::Map::new();
    // Days before the funnel counted are in the range but not in the steps.
    let shown = shown_range(tz, range, hours);
    if hour_start_ms(tz, range.from, hours.map_or(0, |w| w.from_hour)) < funnel.starts_ms {
        meta.insert(
            "warning".into(),
            json!(format!(
                "Counted as visits happen, from {} on: earlier visits are not in this funnel.",
                rfc3339(tz, funnel.starts_ms)
            )),
        );
    }
    Ok(Json(json!({
        "funnel": funnel_json(&funnel, &site),
        "date_range": shown,
        "all_visitors": answer.all_visitors,
        "entering_visitors": answer.entering_visitors,
        "entering_visitors_percentage": answer.entering_visitors_percentage,
        "never_entering_visitors": answer.never_entering_visitors,
        "steps": steps,
        "meta": meta,
    }))
    .into_response())
}
