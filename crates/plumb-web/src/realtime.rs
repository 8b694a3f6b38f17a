//! Realtime: visitors of the last five minutes from the pipeline's in-memory state, as a number
//! (Plausible's `/api/v1/stats/realtime/visitors`), as JSON with pages and sources, and as a
//! server-sent-event stream that pushes the same JSON whenever it changes.

use crate::Web;
use crate::auth::Caller;
use crate::stats::{ApiError, site};
use axum::Json;
use axum::extract::{Query as QueryParams, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use plumb_core::live::LiveSnapshot;
use plumb_meta::{Scope, Site};
use serde::Deserialize;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

/// How often the stream looks for a change.
const STREAM_TICK: Duration = Duration::from_secs(1);

#[derive(Deserialize)]
pub struct Params {
    site_id: Option<String>,
    /// A shared link's slug (read by [`Caller`]; `EventSource` cannot send headers).
    #[serde(default, rename = "share")]
    _share: Option<String>,
}

fn readable_site(web: &Web, caller: &Caller, p: Params) -> Result<Site, ApiError> {
    let domain = p.site_id.ok_or_else(|| ApiError::bad("site_id is required"))?;
    let site = site(web, &domain)?;
    caller.authorize(web, Scope::StatsRead, &site)?;
    Ok(site)
}

fn snapshot(web: &Web, site: &Site) -> LiveSnapshot {
    web.live.snapshot(site.id, Utc::now().timestamp_millis())
}

/// `GET /api/v1/stats/realtime/visitors`: the number alone.
pub async fn visitors(
    State(web): State<Arc<Web>>,
    caller: Caller,
    QueryParams(p): QueryParams<Params>,
) -> Result<Response, ApiError> {
    let site = readable_site(&web, &caller, p)?;
    Ok(Json(snapshot(&web, &site).visitors).into_response())
}

/// `GET /api/v1/stats/realtime`: `{visitors, pages: [{name, visitors}], sources: [...]}`.
pub async fn breakdown(
    State(web): State<Arc<Web>>,
    caller: Caller,
    QueryParams(p): QueryParams<Params>,
) -> Result<Response, ApiError> {
    let site = readable_site(&web, &caller, p)?;
    Ok(Json(snapshot(&web, &site)).into_response())
}

/// `GET /api/v1/stats/realtime/stream`: an `event: realtime` with the breakdown's JSON at once
/// and after every change; comments keep idle connections open.
pub async fn stream(
    State(web): State<Arc<Web>>,
    caller: Caller,
    QueryParams(p): QueryParams<Params>,
) -> Result<Response, ApiError> {
    let site = readable_site(&web, &caller, p)?;
    let events = futures_util::stream::unfold(None::<LiveSnapshot>, move |last| {
        let (web, site) = (web.clone(), site.clone());
        async move {
            loop {
                let now = snapshot(&web, &site);
                if last.as_ref() != Some(&now) {
                    let event = Event::default().event("realtime").json_data(&now).unwrap_or_default();
                    return Some((Ok::<_, Infallible>(event), Some(now)));
                }
                tokio::time::sleep(STREAM_TICK).await;
            }
        }
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::default()).into_response())
}
