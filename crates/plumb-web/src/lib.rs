//! The read side over HTTP: the Stats API (Plausible-compatible), authenticated by API key.
//! Every reader goes through the one query model in `plumb_store::query`.

mod auth;
mod stats;
mod v1;

use axum::Router;
use axum::routing::{get, post};
use plumb_core::live::LiveVisitors;
use plumb_meta::MetaStore;
use plumb_store::EventReader;
use std::sync::Arc;

pub use auth::KeyLimiter;

pub struct Web {
    pub meta: Arc<dyn MetaStore>,
    pub reader: Arc<dyn EventReader>,
    pub live: Arc<LiveVisitors>,
    pub limiter: KeyLimiter,
}

pub fn router(web: Arc<Web>) -> Router {
    Router::new()
        .route("/api/v2/query", post(stats::query_v2))
        .route("/api/v1/stats/realtime/visitors", get(stats::realtime_visitors))
        .route("/api/v1/stats/aggregate", get(v1::aggregate))
        .route("/api/v1/stats/timeseries", get(v1::timeseries))
        .route("/api/v1/stats/breakdown", get(v1::breakdown))
        .with_state(web)
}
