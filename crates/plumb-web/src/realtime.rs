//! Realtime: visitors of the last five minutes from the pipeline's in-memory state, as a number
//! (Plausible's `/api/v1/stats/realtime/visitors`), as JSON with pages and sources, and as a
//! server-sent-event stream that pushes the same JSON whenever it changes.

use crate::Web;
use crate::auth::{Caller, CallerId};
use crate::error::ApiError;
use crate::stats::site;
use axum::Json;
use axum::extract::{Query as QueryParams, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use plumb_core::live::LiveSnapshot;
use plumb_meta::Site;
use serde::Deserialize;
use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
    caller.authorize(web, Some(&site))?;
    Ok(site)
}

/// The site's current visitors, with pages and sources of too few visitors left out for a link
/// that hides small groups.
fn snapshot(web: &Web, site: &Site, caller: &Caller) -> LiveSnapshot {
    let mut s = web.live.snapshot(site.id, Utc::now().timestamp_millis());
    // A check that fails (metadata unreachable) hides as much as the strictest link would.
    let hide = caller.hidden_below(web, site).unwrap_or(caller.share.as_ref().map(|l| l.min_visitors));
    if let Some(k) = hide.filter(|k| *k > 1) {
        s.pages.retain(|p| p.visitors >= k as usize);
        s.sources.retain(|p| p.visitors >= k as usize);
    }
    s
}

/// `GET /api/v1/stats/realtime/visitors`: the number alone.
pub async fn visitors(
    State(web): State<Arc<Web>>,
    caller: Caller,
    QueryParams(p): QueryParams<Params>,
) -> Result<Response, ApiError> {
    let site = readable_site(&web, &caller, p)?;
    Ok(Json(snapshot(&web, &site, &caller).visitors).into_response())
}

/// `GET /api/v1/stats/realtime`: `{visitors, pages: [{name, visitors}], sources: [...]}`.
pub async fn breakdown(
    State(web): State<Arc<Web>>,
    caller: Caller,
    QueryParams(p): QueryParams<Params>,
) -> Result<Response, ApiError> {
    let site = readable_site(&web, &caller, p)?;
    Ok(Json(snapshot(&web, &site, &caller)).into_response())
}

/// Event streams open at once per caller, and in all: each holds a connection and a timer.
pub const STREAMS_PER_CALLER: usize = 5;
pub const MAX_STREAMS: usize = 1_000;
/// How often a stream checks that its caller may still read the site (a revoked link or key,
/// an ended session or a removed member ends it within this time and a tick).
const RECHECK_EVERY: Duration = Duration::from_secs(2);

/// The event streams open now, per caller.
#[derive(Default)]
pub struct Streams {
    open: Mutex<HashMap<CallerId, usize>>,
}

/// One open stream; closing it (dropping this) frees its place.
pub struct StreamPlace {
    web: Arc<Web>,
    id: CallerId,
}

impl Streams {
    /// A place for one more stream of `id`, or `429` when the caller or the server has as many
    /// open as allowed.
    fn take(web: &Arc<Web>, id: CallerId) -> Result<StreamPlace, ApiError> {
        let mut open = web.streams.open.lock().unwrap();
        if open.values().sum::<usize>() >= MAX_STREAMS {
            return Err(ApiError::busy(format!("the server has {MAX_STREAMS} event streams open; retry later"), 10));
        }
        let mine = open.entry(id.clone()).or_default();
        if *mine >= STREAMS_PER_CALLER {
            return Err(ApiError::too_many(
                format!("at most {STREAMS_PER_CALLER} event streams may be open at once per caller"),
                10,
            ));
        }
        *mine += 1;
        metrics::gauge!("plumb_sse_streams").increment(1.0);
        Ok(StreamPlace { web: web.clone(), id })
    }
}

impl Drop for StreamPlace {
    fn drop(&mut self) {
        metrics::gauge!("plumb_sse_streams").decrement(1.0);
        let mut open = self.web.streams.open.lock().unwrap();
        if let Some(n) = open.get_mut(&self.id) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.id);
            }
        }
    }
}

/// What a stream carries from tick to tick.
struct StreamState {
    last: Option<LiveSnapshot>,
    caller: Caller,
    checked: Instant,
    _place: StreamPlace,
}

/// `GET /api/v1/stats/realtime/stream`: an `event: realtime` with the breakdown's JSON at once
/// and after every change; comments keep idle connections open. The stream ends when the
/// caller may no longer read the site.
pub async fn stream(
    State(web): State<Arc<Web>>,
    caller: Caller,
    QueryParams(p): QueryParams<Params>,
) -> Result<Response, ApiError> {
    let site = readable_site(&web, &caller, p)?;
    let id = caller.id.clone().ok_or_else(|| ApiError::internal("a stream without a caller"))?;
    let place = Streams::take(&web, id)?;
    let state = StreamState { last: None, caller, checked: Instant::now(), _place: place };
    let events = futures_util::stream::unfold(state, move |mut st| {
        let (web, site) = (web.clone(), site.clone());
        async move {
            loop {
                if st.checked.elapsed() >= RECHECK_EVERY {
                    let still = st.caller.recheck(&web).and_then(|c| c.authorize(&web, Some(&site)).map(|()| c));
                    match still {
                        Ok(c) => st.caller = c,
                        Err(_) => return None,
                    }
                    st.checked = Instant::now();
                }
                let now = snapshot(&web, &site, &st.caller);
                if st.last.as_ref() != Some(&now) {
                    let event = Event::default().event("realtime").json_data(&now).unwrap_or_default();
                    st.last = Some(now);
                    return Some((Ok::<_, Infallible>(event), st));
                }
                tokio::time::sleep(STREAM_TICK).await;
            }
        }
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::default()).into_response())
}
