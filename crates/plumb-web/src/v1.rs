//! Stats API v1 (`/api/v1/stats/aggregate|timeseries|breakdown`): Plausible's query-string
//! parameters translated into the one query model, answers shaped as v1 clients expect.

use crate::Web;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::stats::{MAX_CONDITIONS, MAX_FILTER_VALUES, goal_filter, run_query, site, site_goals};
use axum::Json;
use axum::extract::{Query as QueryParams, State};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use plumb_core::url::wildcard_regex;
use plumb_query::period::{comparison_range, resolve_range};
use plumb_query::{DayRange, Dimension, Filter, GoalDef, Metric, Op, Query, TimeBucket};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::sync::Arc;

#[derive(Deserialize)]
pub struct Params {
    site_id: Option<String>,
    period: Option<String>,
    date: Option<String>,
    metrics: Option<String>,
    filters: Option<String>,
    compare: Option<String>,
    interval: Option<String>,
    property: Option<String>,
    limit: Option<usize>,
    page: Option<usize>,
}

enum Kind {
    Aggregate,
    Timeseries,
    Breakdown,
}

pub async fn aggregate(
    State(w): State<Arc<Web>>,
    c: Caller,
    QueryParams(p): QueryParams<Params>,
) -> Result<Response, ApiError> {
    run(w, c, p, Kind::Aggregate).await
}

pub async fn timeseries(
    State(w): State<Arc<Web>>,
    c: Caller,
    QueryParams(p): QueryParams<Params>,
) -> Result<Response, ApiError> {
    run(w, c, p, Kind::Timeseries).await
}

pub async fn breakdown(
    State(w): State<Arc<Web>>,
    c: Caller,
    QueryParams(p): QueryParams<Params>,
) -> Result<Response, ApiError> {
    run(w, c, p, Kind::Breakdown).await
}

/// `visit:source==Google|Twitter;event:page!=/blog*` — `;` joins conditions, `|` joins values,
/// `==` / `!=` compare (`*` is a wildcard), `~` / `!~` search.
fn parse_filters(s: &str, range: DayRange, goals: &[GoalDef]) -> Result<Option<Filter>, ApiError> {
    let mut all = Vec::new();
    for part in s.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let (dim, op, rest) = ["!=", "==", "!~", "~"]
            .iter()
            .find_map(|op| part.split_once(op).map(|(d, r)| (d.trim(), *op, r)))
            .ok_or_else(|| ApiError::bad(format!("filters: `{part}` needs ==, !=, ~ or !~")))?;
        let values: Vec<String> = rest.split('|').map(|v| v.trim().to_owned()).collect();
        if all.len() >= MAX_CONDITIONS || values.len() > MAX_FILTER_VALUES {
            return Err(ApiError::bad(format!(
                "filters: at most {MAX_CONDITIONS} conditions of at most {MAX_FILTER_VALUES} values each"
            )));
        }
        let column = match Dimension::parse(dim, range) {
            Some(Dimension::Column(c)) => c,
            Some(Dimension::Goal) if op == "==" => {
                all.push(goal_filter(Op::Is, &values, true, goals)?);
                continue;
            }
            Some(Dimension::Goal) => return Err(ApiError::bad("filters: `event:goal` can only be filtered with ==")),
            _ => return Err(ApiError::bad(format!("filters: unknown property `{dim}`"))),
        };
        let wildcard = values.iter().any(|v| v.contains('*'));
        let (op, values) = match op {
            "~" => (Op::Contains, values),
            "!~" => (Op::ContainsNot, values),
            _ if wildcard => {
                let patterns = values.iter().map(|v| wildcard_regex(v)).collect();
                (if op == "==" { Op::Matches } else { Op::MatchesNot }, patterns)
            }
            "==" => (Op::Is, values),
            _ => (Op::IsNot, values),
        };
        all.push(Filter::Condition { op, column, values, case_sensitive: true });
    }
    Ok(match all.len() {
        0 => None,
        1 => all.pop(),
        _ => Some(Filter::And(all)),
    })
}

/// The v1 name of a property's values in breakdown rows (`visit:source` → `source`).
fn property_key(property: &str) -> &str {
    property.rsplit(':').next().unwrap_or(property)
}

async fn run(web: Arc<Web>, caller: Caller, p: Params, kind: Kind) -> Result<Response, ApiError> {
    let domain = p.site_id.ok_or_else(|| ApiError::bad("site_id is required"))?;
    let site = site(&web, &domain)?;
    caller.authorize(&web, Some(&site))?;
    if caller.hidden_below(&web, &site)?.is_some() {
        return Err(ApiError::new(
            axum::http::StatusCode::FORBIDDEN,
            "this shared link hides rows of few visitors: it reads through POST /api/v2/query only",
        ));
    }
    let today = plumb_core::time::local_day(site.timezone, Utc::now().timestamp_millis());
    let period = p.period.as_deref().unwrap_or("30d");
    let range_value = match (period, p.date.as_deref()) {
        ("custom", Some(d)) => {
            let (a, b) = d.split_once(',').ok_or_else(|| ApiError::bad("date: custom period needs `from,to`"))?;
            json!([a.trim(), b.trim()])
        }
        ("custom", None) => return Err(ApiError::bad("date: custom period needs `from,to`")),
        (other, _) => json!(other),
    };
    // `date` moves "today" for the relative periods.
    let today = match (period, p.date.as_deref()) {
        ("custom", _) | (_, None) => today,
        (_, Some(d)) => resolve_range(&json!([d, d]), today)?.from,
    };
    let range = resolve_range(&range_value, today)?;
    let metric_names: Vec<String> =
        p.metrics.as_deref().unwrap_or("visitors").split(',').map(|m| m.trim().to_owned()).collect();
    let metrics = metric_names
        .iter()
        .map(|m| Metric::parse(m).ok_or_else(|| ApiError::bad(format!("metrics: unknown metric `{m}`"))))
        .collect::<Result<Vec<_>, _>>()?;
    let goals = site_goals(&web, site.id)?;
    let filter = parse_filters(p.filters.as_deref().unwrap_or(""), range, &goals)?;
    let (dimensions, limit, offset) = match kind {
        Kind::Aggregate => (vec![], 1, 0),
        Kind::Timeseries => {
            let bucket = match p.interval.as_deref().unwrap_or(if range.days() == 1 { "hour" } else { "date" }) {
                "hour" => TimeBucket::Hour,
                "date" | "day" => TimeBucket::Day,
                "week" => TimeBucket::Week,
                "month" => TimeBucket::Month,
                other => return Err(ApiError::bad(format!("interval: `{other}` must be hour, date, week or month"))),
            };
            (vec![Dimension::Time(bucket)], 10_000, 0)
        }
        Kind::Breakdown => {
            let prop = p.property.as_deref().ok_or_else(|| ApiError::bad("property is required"))?;
            let dim = Dimension::parse(prop, range)
                .filter(|d| !matches!(d, Dimension::Time(_)))
                .ok_or_else(|| ApiError::bad(format!("property: unknown property `{prop}`")))?;
            let limit = p.limit.unwrap_or(100);
            let page = p.page.unwrap_or(1).max(1);
            (vec![dim], limit, (page - 1).saturating_mul(limit))
        }
    };
    let comparison = match p.compare.as_deref() {
        None => None,
        Some(mode) => Some(comparison_range(&json!({"mode": mode}), range, today)?),
    };
    let q = Query {
        site_id: site.id,
        metrics: metrics.clone(),
        range,
        dimensions,
        filter,
        order_by: vec![],
        limit,
        offset,
        comparison,
        hours: None,
        total_rows: false,
        goals,
        imports: crate::stats::import_refs(web.meta.as_ref(), site.id)?,
    };
    let out = run_query(&web, q.clone()).await?;
    let results = match kind {
        Kind::Aggregate => {
            let row = out.results.first();
            let mut m = Map::new();
            for (i, name) in metric_names.iter().enumerate() {
                let mut v = json!({"value": row.map_or(Value::Null, |r| r.metrics[i].clone())});
                if let Some(c) = row.and_then(|r| r.comparison.as_ref()) {
                    v["comparison_value"] = c.metrics[i].clone();
                    v["change"] = c.change[i].clone();
                }
                m.insert(name.clone(), v);
            }
            Value::Object(m)
        }
        Kind::Timeseries | Kind::Breakdown => {
            let row = |key: &str, label: &str, metrics: &[Value]| {
                let mut m = Map::new();
                m.insert(key.to_owned(), json!(label));
                for (name, v) in metric_names.iter().zip(metrics) {
                    m.insert(name.clone(), v.clone());
                }
                Value::Object(m)
            };
            match (&kind, q.dimensions.first(), p.property.as_deref()) {
                // v1 timeseries list every bucket of the period, with zeros where nothing happened.
                (Kind::Timeseries, Some(Dimension::Time(bucket)), _) => {
                    let zeros = vec![json!(0); metric_names.len()];
                    let found: HashMap<&str, &[Value]> =
                        out.results.iter().map(|r| (r.dimensions[0].as_str(), r.metrics.as_slice())).collect();
                    plumb_query::time_labels(*bucket, range, None)
                        .iter()
                        .map(|label| row("date", label, found.get(label.as_str()).copied().unwrap_or(&zeros)))
                        .collect()
                }
                (_, _, prop) => {
                    let key = property_key(prop.unwrap_or("date"));
                    out.results.iter().map(|r| row(key, &r.dimensions[0], &r.metrics)).collect()
                }
            }
        }
    };
    Ok(Json(json!({ "results": results })).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use plumb_query::{Attr, Column};

    #[test]
    fn v1_filters_translate_to_the_query_model() {
        let r = DayRange { from: 0, to: 0 };
        let f = parse_filters("visit:source==Google|Twitter;event:page!=/blog*", r, &[]).unwrap().unwrap();
        let Filter::And(parts) = f else { panic!("two conditions are joined with and") };
        assert_eq!(
            parts[0],
            Filter::Condition {
                op: Op::Is,
                column: Column::Attr(Attr::Source),
                values: vec!["Google".into(), "Twitter".into()],
                case_sensitive: true
            }
        );
        assert_eq!(
            parts[1],
            Filter::Condition {
                op: Op::MatchesNot,
                column: Column::Attr(Attr::Pathname),
                values: vec!["^/blog[^/]*$".into()],
                case_sensitive: true
            }
        );
        assert!(parse_filters("visit:source=Google", r, &[]).is_err());
        assert!(parse_filters("visit:nope==x", r, &[]).is_err());
        assert!(parse_filters("event:goal==Signup", r, &[]).is_err(), "no such goal");
        assert_eq!(property_key("visit:utm_source"), "utm_source");
    }
}
