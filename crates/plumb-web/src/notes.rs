//! Annotations (dated notes drawn on a site's chart) and segments (saved filter sets, personal or
//! shared), under `/api/v1/sites/{site_id}/…`. A v2 query names a segment as
//! `["is", "segment", [id]]`; [`expand_segments`] puts its filters in its place.

use crate::Web;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::sites::{authorized_site, fields, required};
use axum::Json;
use axum::extract::{Path, Query as QueryParams, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use plumb_core::time::date_of_day;
use plumb_meta::permission::Action;
use plumb_meta::{Annotation, MetaStore, Segment, Site};
use plumb_query::period::parse_day;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;

fn annotation_json(a: &Annotation) -> Value {
    json!({"id": a.id, "date": date_of_day(a.day).to_string(), "text": a.text})
}

/// A resource id from a path: `what` names the resource in the error.
pub(crate) fn id(what: &str, v: &str) -> Result<u32, ApiError> {
    v.parse().map_err(|_| ApiError::bad(format!("{what} id must be a number, got `{v}`")))
}

/// `GET /api/v1/sites/{site_id}/annotations?from=…&to=…`: by date (every one without a range).
pub async fn list_annotations(
    State(web): State<Arc<Web>>,
    caller: Caller,
    Path(domain): Path<String>,
    QueryParams(p): QueryParams<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let site = authorized_site(&web, &caller, &domain)?;
    let from = p.get("from").map(|v| parse_day("from", v)).transpose()?.unwrap_or(0);
    let to = p.get("to").map(|v| parse_day("to", v)).transpose()?.unwrap_or(i32::MAX);
    let list: Vec<Value> = web.meta.annotations(site.id, from, to)?.iter().map(annotation_json).collect();
    Ok(Json(json!({"annotations": list})).into_response())
}

/// `POST /api/v1/sites/{site_id}/annotations` with `date` and `text`.
pub async fn add_annotation(
    State(web): State<Arc<Web>>,
    caller: Caller,
    headers: HeaderMap,
    Path(domain): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let site = authorized_site(&web, &caller, &domain)?;
    let f = fields(&headers, &body)?;
    let day = parse_day("date", required(&f, "date")?)?;
    let a = web.meta.add_annotation(site.id, day, required(&f, "text")?)?;
    Ok((StatusCode::CREATED, Json(annotation_json(&a))).into_response())
}

/// `DELETE /api/v1/sites/{site_id}/annotations/{annotation_id}`.
pub async fn remove_annotation(
    State(web): State<Arc<Web>>,
    caller: Caller,
    Path((domain, annotation)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let site = authorized_site(&web, &caller, &domain)?;
    web.meta.remove_annotation(site.id, id("annotation", &annotation)?)?;
    Ok(Json(json!({"deleted": true})).into_response())
}

fn segment_json(s: &Segment) -> Value {
    let filters: Value = serde_json::from_str(&s.filters).unwrap_or(Value::Null);
    json!({"id": s.id, "name": s.name, "filters": filters, "shared": s.owner.is_none()})
}

/// Segments are the site's people's: a shared link reads the dashboard, not their saved views.
fn no_links(web: &Web, caller: &Caller, site: &Site) -> Result<(), ApiError> {
    if caller.reads_by_link_only(web, site)? {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "a shared link does not read the site's segments"));
    }
    Ok(())
}

/// Whether the caller sees a segment: shared ones, and a user's own.
fn visible(s: &Segment, caller: &Caller) -> bool {
    s.owner.is_none() || s.owner == caller.user_id()
}

/// `GET /api/v1/sites/{site_id}/segments`: the shared ones and the caller's own, by name.
pub async fn list_segments(
    State(web): State<Arc<Web>>,
    caller: Caller,
    Path(domain): Path<String>,
) -> Result<Response, ApiError> {
    let site = authorized_site(&web, &caller, &domain)?;
    let list: Vec<Value> =
        web.meta.segments(site.id)?.iter().filter(|s| visible(s, &caller)).map(segment_json).collect();
    Ok(Json(json!({"segments": list})).into_response())
}

/// `POST /api/v1/sites/{site_id}/segments` with `name`, `filters` (as in a v2 query) and
/// `shared`: a user's own segment, or (with `manage`) one every reader of the site sees. Keys
/// have no user: theirs are shared.
pub async fn add_segment(
    State(web): State<Arc<Web>>,
    caller: Caller,
    headers: HeaderMap,
    Path(domain): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let site = authorized_site(&web, &caller, &domain)?;
    let f = fields(&headers, &body)?;
    let shared = match f.get("shared") {
        None | Some(Value::Null) => caller.user_id().is_none(),
        Some(Value::Bool(b)) => *b,
        Some(other) => return Err(ApiError::bad(format!("`shared` must be true or false, got {other}"))),
    };
    let owner = match (shared, caller.user_id()) {
        (true, _) => {
            caller.authorize_as(&web, Action::Manage, Some(&site))?;
            None
        }
        (false, Some(user)) => Some(user),
        (false, None) => {
            return Err(ApiError::bad("an API key has no user to keep a segment for: send `shared: true`"));
        }
    };
    let text = segment_filters(web.meta.as_ref(), site.id, f.get("filters").unwrap_or(&Value::Null))?;
    let s = web.meta.add_segment(site.id, required(&f, "name")?, &text, owner)?;
    Ok((StatusCode::CREATED, Json(segment_json(&s))).into_response())
}

/// `DELETE /api/v1/sites/{site_id}/segments/{segment_id}`: the caller's own, or (with `manage`)
/// a shared one; another user's is not there for the caller.
pub async fn remove_segment(
    State(web): State<Arc<Web>>,
    caller: Caller,
    Path((domain, segment)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let site = authorized_site(&web, &caller, &domain)?;
    let segment = id("segment", &segment)?;
    let found = web.meta.segments(site.id)?.into_iter().find(|s| s.id == segment && visible(s, &caller));
    let Some(s) = found else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("segment {segment} of site {} not found", site.domain),
        ));
    };
    if s.owner.is_none() {
        caller.authorize_as(&web, Action::Manage, Some(&site))?;
    }
    web.meta.remove_segment(site.id, segment)?;
    Ok(Json(json!({"deleted": true})).into_response())
}

/// A segment's filters as stored: checked as a query checks them (so a saved segment always
/// runs), naming no other segment.
pub fn segment_filters(meta: &dyn MetaStore, site_id: u32, filters: &Value) -> Result<String, ApiError> {
    let list = match filters {
        Value::Array(list) if !list.is_empty() => list,
        _ => return Err(ApiError::bad("`filters` must be a non-empty list of filters, as in a v2 query")),
    };
    if list.iter().any(names_segment) {
        return Err(ApiError::bad("filters: a segment cannot include another segment"));
    }
    let goals = crate::stats::goals_of(meta, site_id)?;
    crate::stats::parse_filters(list, plumb_query::DayRange { from: 0, to: 0 }, &goals)?;
    Ok(filters.to_string())
}

/// `["is", "segment", …]` at the top of a filter.
fn names_segment(f: &Value) -> bool {
    f.get(1).and_then(Value::as_str) == Some("segment")
}

/// A query's filters with each `["is", "segment", [ids]]` replaced by the segments' own filters
/// (several ids: any of them). Only segments the caller sees can be named.
pub fn expand_segments(web: &Web, caller: &Caller, site: &Site, filters: &[Value]) -> Result<Vec<Value>, ApiError> {
    if !filters.iter().any(names_segment) {
        return Ok(filters.to_vec());
    }
    no_links(web, caller, site)?;
    let segments = web.meta.segments(site.id)?;
    filters
        .iter()
        .map(|f| {
            if !names_segment(f) {
                return Ok(f.clone());
            }
            if f.get(0).and_then(Value::as_str) != Some("is") {
                return Err(ApiError::bad("filters: a segment is named with [\"is\", \"segment\", [id]]"));
            }
            let ids =
                f.get(2).and_then(Value::as_array).filter(|ids| !ids.is_empty()).ok_or_else(|| {
                    ApiError::bad("filters: [\"is\", \"segment\", [id]] needs at least one segment id")
                })?;
            let alternatives = ids
                .iter()
                .map(|id| {
                    let s = id
                        .as_u64()
                        .and_then(|id| segments.iter().find(|s| u64::from(s.id) == id && visible(s, caller)))
                        .ok_or_else(|| ApiError::bad(format!("filters: `{id}` is not a segment of this site")))?;
                    let saved: Value = serde_json::from_str(&s.filters)
                        .map_err(|e| ApiError::internal(format!("segment {} holds bad filters: {e}", s.id)))?;
                    Ok(json!(["and", saved]))
                })
                .collect::<Result<Vec<Value>, ApiError>>()?;
            Ok(json!(["or", alternatives]))
        })
        .collect()
}
