//! Stats API: `POST /api/v2/query` (aggregates for now) and the realtime visitor count.

use crate::Web;
use crate::auth::require_key;
use axum::Json;
use axum::extract::{Query as QueryParams, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{Datelike, NaiveDate, Utc};
use chrono_tz::Tz;
use plumb_core::time::{date_of_day, day_number, day_start_ms};
use plumb_meta::Site;
use plumb_store::query::{Metric, Query};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;

pub struct ApiError(pub StatusCode, pub String);

impl ApiError {
    fn bad(msg: impl Into<String>) -> Self {
        ApiError(StatusCode::BAD_REQUEST, msg.into())
    }

    pub fn internal(e: impl std::fmt::Display) -> Self {
        tracing::error!("stats API failed: {e}");
        ApiError(StatusCode::INTERNAL_SERVER_ERROR, "internal error while answering the query".into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryBody {
    site_id: String,
    metrics: Vec<String>,
    date_range: Value,
    #[serde(default)]
    dimensions: Vec<String>,
    #[serde(default)]
    filters: Vec<Value>,
}

fn site(web: &Web, domain: &str) -> Result<Site, ApiError> {
    web.meta
        .site_by_domain(&domain.trim().to_ascii_lowercase())
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::bad(format!("site_id `{domain}` is not a site of this Plumb")))
}

/// Inclusive local days for a Plausible date range, relative to `today` in the site's timezone.
/// `Nd` ranges end yesterday (today is partial); `day`, `month` and `year` include today.
fn resolve_range(range: &Value, today: i32) -> Result<(i32, i32), ApiError> {
    let date = |v: &Value| -> Result<i32, ApiError> {
        let s = v.as_str().unwrap_or_default();
        let d = NaiveDate::parse_from_str(s.get(..10).unwrap_or(s), "%Y-%m-%d")
            .map_err(|_| ApiError::bad(format!("date_range: `{v}` is not a date (YYYY-MM-DD)")))?;
        Ok(day_number(d))
    };
    let t = date_of_day(today);
    match range {
        Value::String(s) => Ok(match s.as_str() {
            "day" => (today, today),
            "7d" => (today - 7, today - 1),
            "28d" => (today - 28, today - 1),
            "30d" => (today - 30, today - 1),
            "91d" => (today - 91, today - 1),
            "month" => (day_number(t.with_day(1).unwrap()), today),
            "year" => (day_number(t.with_ordinal(1).unwrap()), today),
            "all" => (i32::MIN / 2, today),
            other => return Err(ApiError::bad(format!("date_range: `{other}` is not a known period"))),
        }),
        Value::Array(pair) if pair.len() == 2 => {
            let (from, to) = (date(&pair[0])?, date(&pair[1])?);
            if from > to {
                return Err(ApiError::bad("date_range: the first date is after the second"));
            }
            Ok((from, to))
        }
        other => Err(ApiError::bad(format!("date_range must be a period or [from, to], got {other}"))),
    }
}

fn rfc3339(tz: Tz, ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default().with_timezone(&tz).to_rfc3339()
}

pub async fn query_v2(State(web): State<Arc<Web>>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    run_v2(web, headers, body).await.unwrap_or_else(IntoResponse::into_response)
}

async fn run_v2(web: Arc<Web>, headers: HeaderMap, body: axum::body::Bytes) -> Result<Response, ApiError> {
    require_key(web.meta.as_ref(), &headers)?;
    let body: QueryBody =
        serde_json::from_slice(&body).map_err(|e| ApiError::bad(format!("invalid query body: {e}")))?;
    let site = site(&web, &body.site_id)?;
    let metrics = body
        .metrics
        .iter()
        .map(|m| Metric::parse(m).ok_or_else(|| ApiError::bad(format!("metrics: unknown metric `{m}`"))))
        .collect::<Result<Vec<_>, _>>()?;
    if metrics.is_empty() {
        return Err(ApiError::bad("metrics: at least one metric is required"));
    }
    if let Some(d) = body.dimensions.first() {
        return Err(ApiError::bad(format!("dimensions: `{d}` is not supported yet")));
    }
    if !body.filters.is_empty() {
        return Err(ApiError::bad("filters are not supported yet"));
    }
    let today = plumb_core::time::local_day(site.timezone, Utc::now().timestamp_millis());
    let (from_day, to_day) = resolve_range(&body.date_range, today)?;
    let q = Query { site_id: site.id, metrics: metrics.clone(), from_day, to_day };
    let reader = web.reader.clone();
    let result = tokio::task::spawn_blocking(move || reader.query(&q))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    let values: Vec<Value> = metrics.iter().map(|m| m.finish(&result.totals)).collect();
    let tz = site.timezone;
    let range = if from_day == i32::MIN / 2 {
        Value::String("all".into())
    } else {
        json!([rfc3339(tz, day_start_ms(tz, from_day)), rfc3339(tz, day_start_ms(tz, to_day + 1) - 1000)])
    };
    Ok(Json(json!({
        "results": [{"metrics": values, "dimensions": []}],
        "meta": {},
        "query": {
            "site_id": site.domain,
            "metrics": body.metrics,
            "date_range": range,
            "dimensions": [],
            "filters": [],
        },
    }))
    .into_response())
}

#[derive(Deserialize)]
pub struct RealtimeParams {
    site_id: Option<String>,
}

pub async fn realtime_visitors(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    QueryParams(p): QueryParams<RealtimeParams>,
) -> Response {
    let answer = || -> Result<Response, ApiError> {
        require_key(web.meta.as_ref(), &headers)?;
        let domain = p.site_id.ok_or_else(|| ApiError::bad("site_id is required"))?;
        let site = site(&web, &domain)?;
        Ok(Json(web.live.current(site.id, Utc::now().timestamp_millis())).into_response())
    };
    answer().unwrap_or_else(IntoResponse::into_response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_resolve_to_whole_local_days() {
        let today = day_number(NaiveDate::from_ymd_opt(2024, 3, 15).unwrap());
        assert_eq!(resolve_range(&json!("day"), today).ok(), Some((today, today)));
        assert_eq!(resolve_range(&json!("7d"), today).ok(), Some((today - 7, today - 1)));
        let march1 = day_number(NaiveDate::from_ymd_opt(2024, 3, 1).unwrap());
        assert_eq!(resolve_range(&json!("month"), today).ok(), Some((march1, today)));
        assert_eq!(resolve_range(&json!(["2024-03-01", "2024-03-02"]), today).ok(), Some((march1, march1 + 1)));
        assert!(resolve_range(&json!(["2024-03-02", "2024-03-01"]), today).is_err());
        assert!(resolve_range(&json!("fortnight"), today).is_err());
        assert!(resolve_range(&json!(["2024-13-01", "2024-03-01"]), today).is_err());
    }
}
