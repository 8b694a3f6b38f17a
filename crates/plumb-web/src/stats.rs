//! Stats API v2: `POST /api/v2/query` over the query model.

use crate::Web;
use crate::auth::Caller;
use crate::error::ApiError;
use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use chrono_tz::Tz;
use plumb_core::time::{day_start_ms, hour_start_ms};
use plumb_core::url::wildcard_regex;
use plumb_meta::Site;
use plumb_meta::{GoalKind, ImportState, MetaStore};
use plumb_query::imported::ImportRef;
use plumb_query::period::{comparison_range, resolve_window};
use plumb_query::{
    Currency, DayRange, Dimension, Filter, GoalCondition, GoalDef, HourWindow, Metric, Op, OrderKey, Query,
    QueryOutput, SumsBackend,
};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;

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
    #[serde(default)]
    order_by: Vec<(String, String)>,
    #[serde(default)]
    include: Include,
    #[serde(default)]
    pagination: Pagination,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Include {
    #[serde(default)]
    time_labels: bool,
    #[serde(default)]
    total_rows: bool,
    comparisons: Option<Value>,
    /// Whether imported history joins the answer where it can (the default).
    imports: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Pagination {
    #[serde(default = "default_limit")]
    limit: usize,
    #[serde(default)]
    offset: usize,
}

fn default_limit() -> usize {
    plumb_query::MAX_LIMIT
}

impl Default for Pagination {
    fn default() -> Self {
        Self { limit: default_limit(), offset: 0 }
    }
}

pub fn site(web: &Web, domain: &str) -> Result<Site, ApiError> {
    web.meta
        .site_by_domain(&domain.trim().to_ascii_lowercase())?
        .ok_or_else(|| ApiError::bad(format!("site_id `{domain}` is not a site of this Plumb")))
}

/// A site's finished imports, as the query engine reads them.
pub fn import_refs(meta: &dyn MetaStore, site_id: u32) -> Result<Vec<ImportRef>, plumb_meta::MetaError> {
    let imports = meta.imports(Some(site_id))?.into_iter().filter(|i| i.state == ImportState::Done);
    Ok(imports
        .map(|i| ImportRef {
            id: i.id,
            kind: i.kind,
            range: DayRange { from: i.first_day, to: i.last_day },
            dims: i.dims,
        })
        .collect())
}

/// The site's goals as the query model takes them.
pub fn site_goals(web: &Web, site_id: u32) -> Result<Vec<GoalDef>, ApiError> {
    goals_of(web.meta.as_ref(), site_id)
}

pub fn goals_of(meta: &dyn MetaStore, site_id: u32) -> Result<Vec<GoalDef>, ApiError> {
    Ok(meta
        .list_goals(site_id)?
        .into_iter()
        .map(|g| GoalDef {
            name: g.display_name,
            condition: match g.kind {
                GoalKind::Page(p) => GoalCondition::Page(wildcard_regex(&p)),
                GoalKind::Event(e) => GoalCondition::Event(e),
            },
            currency: g.currency.as_deref().and_then(Currency::parse),
        })
        .collect())
}

/// `["is", "event:goal", names]` (or `contains`): completions of any of those goals.
pub fn goal_filter(op: Op, values: &[String], case_sensitive: bool, goals: &[GoalDef]) -> Result<Filter, ApiError> {
    let fold = |s: &str| if case_sensitive { s.to_owned() } else { s.to_lowercase() };
    let mut picked = Vec::new();
    for v in values {
        let hits: Vec<&GoalDef> = goals
            .iter()
            .filter(|g| match op {
                Op::Is => fold(&g.name) == fold(v),
                _ => fold(&g.name).contains(&fold(v)),
            })
            .collect();
        if op == Op::Is && hits.is_empty() {
            return Err(ApiError::bad(format!("filters: `{v}` is not a goal of this site")));
        }
        picked.extend(hits.into_iter().map(|g| Filter::Goal(g.condition.clone())));
    }
    Ok(Filter::Or(picked))
}

/// Through a link that hides small groups, filters may only pick values (`is`, `contains`, at the
/// top level): negations, patterns and combinations would let small groups be told apart by
/// difference.
fn only_plain_filters(filters: &[Value]) -> Result<(), ApiError> {
    for f in filters {
        let op = f.get(0).and_then(Value::as_str).unwrap_or_default();
        if !matches!(op, "is" | "contains") {
            return Err(ApiError::new(
                axum::http::StatusCode::FORBIDDEN,
                format!("this shared link hides small groups: filters may use `is` and `contains` only, not `{op}`"),
            ));
        }
    }
    Ok(())
}

/// Dimensions one query may group by.
pub const MAX_DIMENSIONS: usize = 5;

/// How much a query's filters may hold: conditions in all, nesting, values per condition and
/// bytes per value.
pub const MAX_CONDITIONS: usize = 30;
pub const MAX_FILTER_DEPTH: usize = 5;
pub const MAX_FILTER_VALUES: usize = 100;
pub const MAX_FILTER_VALUE_BYTES: usize = 2_000;

/// All the filters of a query, checked against the bounds above.
pub fn parse_filters(vs: &[Value], range: DayRange, goals: &[GoalDef]) -> Result<Option<Filter>, ApiError> {
    let mut conditions = 0;
    let mut filters =
        vs.iter().map(|f| parse_filter(f, range, goals, 1, &mut conditions)).collect::<Result<Vec<_>, _>>()?;
    Ok(match filters.len() {
        0 => None,
        1 => filters.pop(),
        _ => Some(Filter::And(filters)),
    })
}

fn parse_filter(
    v: &Value,
    range: DayRange,
    goals: &[GoalDef],
    depth: usize,
    conditions: &mut usize,
) -> Result<Filter, ApiError> {
    let bad = || ApiError::bad(format!("filters: `{v}` is not a filter like [\"is\", \"visit:source\", [\"Google\"]]"));
    if depth > MAX_FILTER_DEPTH {
        return Err(ApiError::bad(format!("filters: nested deeper than {MAX_FILTER_DEPTH} levels")));
    }
    let parts = v.as_array().ok_or_else(bad)?;
    let op = parts.first().and_then(Value::as_str).ok_or_else(bad)?;
    match op {
        "and" | "or" => {
            let inner = parts.get(1).and_then(Value::as_array).ok_or_else(bad)?;
            let fs = inner
                .iter()
                .map(|f| parse_filter(f, range, goals, depth + 1, conditions))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(if op == "and" { Filter::And(fs) } else { Filter::Or(fs) })
        }
        "not" => {
            Ok(Filter::Not(Box::new(parse_filter(parts.get(1).ok_or_else(bad)?, range, goals, depth + 1, conditions)?)))
        }
        _ => {
            *conditions += 1;
            if *conditions > MAX_CONDITIONS {
                return Err(ApiError::bad(format!("filters: more than {MAX_CONDITIONS} conditions")));
            }
            let op = Op::parse(op).ok_or_else(|| ApiError::bad(format!("filters: unknown operator `{op}`")))?;
            let dim = parts.get(1).and_then(Value::as_str).ok_or_else(bad)?;
            let dimension = Dimension::parse(dim, range);
            let values: Vec<String> = parts
                .get(2)
                .and_then(Value::as_array)
                .ok_or_else(bad)?
                .iter()
                .map(|x| match x {
                    Value::String(s) => Ok(s.clone()),
                    Value::Number(n) => Ok(n.to_string()),
                    other => Err(ApiError::bad(format!("filters: value {other} for `{dim}` must be a string"))),
                })
                .collect::<Result<Vec<_>, _>>()?;
            if values.len() > MAX_FILTER_VALUES {
                return Err(ApiError::bad(format!("filters: more than {MAX_FILTER_VALUES} values for `{dim}`")));
            }
            if let Some(long) = values.iter().find(|v| v.len() > MAX_FILTER_VALUE_BYTES) {
                let start: String = long.chars().take(20).collect();
                return Err(ApiError::bad(format!(
                    "filters: value `{start}…` for `{dim}` is longer than {MAX_FILTER_VALUE_BYTES} bytes"
                )));
            }
            let case_sensitive =
                parts.get(3).and_then(|m| m.get("case_sensitive")).and_then(Value::as_bool).unwrap_or(true);
            let column = match dimension {
                Some(Dimension::Column(c)) => c,
                Some(Dimension::Goal) if matches!(op, Op::Is | Op::Contains) => {
                    return goal_filter(op, &values, case_sensitive, goals);
                }
                Some(Dimension::Goal) => {
                    return Err(ApiError::bad("filters: `event:goal` can only be filtered with is or contains"));
                }
                Some(Dimension::Time(_)) => {
                    return Err(ApiError::bad(format!("filters: cannot filter by `{dim}`; use date_range")));
                }
                None => return Err(ApiError::bad(format!("filters: unknown dimension `{dim}`"))),
            };
            if matches!(op, Op::Matches | Op::MatchesNot) {
                for p in &values {
                    regex_syntax_ok(p)
                        .map_err(|e| ApiError::bad(format!("filters: `{p}` is not a valid regular expression: {e}")))?;
                }
            }
            Ok(Filter::Condition { op, column, values, case_sensitive })
        }
    }
}

/// Rejects patterns the engines' RE2 would reject: unbalanced groups and classes, and
/// look-around (RE2 has none).
fn regex_syntax_ok(p: &str) -> Result<(), String> {
    if p.contains("(?=") || p.contains("(?!") || p.contains("(?<=") || p.contains("(?<!") {
        return Err("look-around is not supported".into());
    }
    let (mut depth, mut class, mut escaped) = (0i32, false, false);
    for c in p.chars() {
        match (escaped, c) {
            (true, _) => escaped = false,
            (false, '\\') => escaped = true,
            (false, '[') if !class => class = true,
            (false, ']') if class => class = false,
            (false, '(') if !class => depth += 1,
            (false, ')') if !class => {
                depth -= 1;
                if depth < 0 {
                    return Err("unbalanced `)`".into());
                }
            }
            _ => {}
        }
    }
    if depth != 0 || class || escaped { Err("unbalanced brackets or trailing `\\`".into()) } else { Ok(()) }
}

/// `realtime` (the last 5 minutes) and `30m`: answered from the live memory of recent hits, as
/// stored rows keep no minutes.
fn live_window(range: &str) -> Option<i64> {
    match range {
        "realtime" => Some(plumb_core::live::REALTIME_WINDOW_MS),
        "30m" => Some(plumb_core::live::LIVE_MEMORY_MS),
        _ => None,
    }
}

/// A v2 query over the last minutes: visitors and pageviews, in total, by page or by source.
fn answer_live(
    web: &Web,
    caller: &Caller,
    site: &Site,
    body: &QueryBody,
    metrics: &[Metric],
    window_ms: i64,
) -> Result<Value, ApiError> {
    let range = body.date_range.as_str().unwrap_or_default();
    if let Some(m) = metrics.iter().find(|m| !matches!(m, Metric::Visitors | Metric::Pageviews)) {
        return Err(ApiError::bad(format!(
            "metrics: `{}` is not kept for the last minutes; `{range}` answers visitors and pageviews",
            m.name()
        )));
    }
    let dimension = match body.dimensions.as_slice() {
        [] => None,
        [d] if d == "event:page" || d == "visit:source" => Some(d.as_str()),
        _ => {
            return Err(ApiError::bad(format!(
                "dimensions: `{range}` breaks down by one of event:page and visit:source, or none"
            )));
        }
    };
    plumb_query::check_limit(body.pagination.limit)?;
    if !body.filters.is_empty() || !body.order_by.is_empty() || body.include.comparisons.is_some() {
        return Err(ApiError::bad(format!(
            "`{range}` takes no filters, order_by or comparisons (ordered by visitors)"
        )));
    }
    let now = Utc::now().timestamp_millis();
    let w = web.live.window(site.id, now, window_ms);
    let value = |m: &Metric, visitors: usize, pageviews: usize| match m {
        Metric::Visitors => json!(visitors),
        _ => json!(pageviews),
    };
    let mut results: Vec<Value> = match dimension {
        None => vec![
            json!({"dimensions": [], "metrics": metrics.iter().map(|m| value(m, w.visitors, w.pageviews)).collect::<Vec<_>>()}),
        ],
        Some(d) => {
            let counts = if d == "event:page" { w.pages } else { w.sources };
            // Through a link that hides small groups, rows of too few visitors go.
            let k = caller.hidden_below(web, site)?.unwrap_or(0) as usize;
            counts
                .into_iter()
                .filter(|c| c.visitors >= k)
                .map(|c| {
                    json!({"dimensions": [c.name], "metrics": metrics.iter().map(|m| value(m, c.visitors, c.pageviews)).collect::<Vec<_>>()})
                })
                .collect()
        }
    };
    let total = results.len();
    results = results.into_iter().skip(body.pagination.offset).take(body.pagination.limit).collect();
    let mut meta = serde_json::Map::new();
    if body.include.total_rows {
        meta.insert("total_rows".into(), json!(total));
    }
    let tz = site.timezone;
    Ok(json!({
        "results": results,
        "meta": meta,
        "query": {
            "site_id": site.domain,
            "metrics": body.metrics,
            "date_range": [rfc3339(tz, now - window_ms), rfc3339(tz, now)],
            "dimensions": body.dimensions,
            "filters": body.filters,
            "order_by": [[body.metrics[0], "desc"]],
            "pagination": {"limit": body.pagination.limit, "offset": body.pagination.offset},
        },
    }))
}

/// A range as the answer shows it: its first and last second.
pub(crate) fn shown_range(tz: Tz, range: DayRange, hours: Option<HourWindow>) -> Value {
    let (first, after) = match hours {
        Some(w) => (hour_start_ms(tz, range.from, w.from_hour), hour_start_ms(tz, range.to, w.to_hour) + 3_600_000),
        None => (day_start_ms(tz, range.from), day_start_ms(tz, range.to + 1)),
    };
    json!([rfc3339(tz, first), rfc3339(tz, after - 1000)])
}

pub(crate) fn rfc3339(tz: Tz, ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default().with_timezone(&tz).to_rfc3339()
}

/// Runs a query under the budgets every caller shares. It is checked first, so a query that makes
/// no sense or asks for too many time buckets is refused at once; then it waits at most
/// `QUERY_WAIT` for one of the places (one per core) and runs off the async workers, where the store
/// stops it once it is over its time budget.
pub async fn run_query(web: &Web, q: Query) -> Result<QueryOutput, ApiError> {
    q.validate().map_err(|i| ApiError::bad(i.0))?;
    Ok(run_blocking(web, move |reader| plumb_query::run(reader, &q)).await??)
}

/// Runs `f` over the event store under the budgets queries share: one of the places (one per
/// core), waited for at most `QUERY_WAIT`, off the async workers.
pub async fn run_blocking<T: Send + 'static>(
    web: &Web,
    f: impl FnOnce(&dyn SumsBackend) -> T + Send + 'static,
) -> Result<T, ApiError> {
    let permit = tokio::time::timeout(crate::QUERY_WAIT, web.queries.clone().acquire_owned())
        .await
        .map_err(|_| ApiError::busy("the server is answering too many queries; retry shortly", 5))?
        .map_err(ApiError::internal)?;
    let reader = web.reader.clone();
    tokio::task::spawn_blocking(move || {
        let started = std::time::Instant::now();
        let out = f(reader.as_ref());
        metrics::histogram!("plumb_query_seconds").record(started.elapsed().as_secs_f64());
        drop(permit);
        out
    })
    .await
    .map_err(ApiError::internal)
}

pub async fn query_v2(
    State(web): State<Arc<Web>>,
    caller: Caller,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let body: Value = serde_json::from_slice(&body).map_err(|e| ApiError::bad(format!("invalid query body: {e}")))?;
    Ok(Json(answer_v2(&web, &caller, body).await?).into_response())
}

/// Runs a v2 query body for the caller and returns the answer's JSON (also used for CSV).
pub async fn answer_v2(web: &Arc<Web>, caller: &Caller, body: Value) -> Result<Value, ApiError> {
    let body: QueryBody =
        serde_json::from_value(body).map_err(|e| ApiError::bad(format!("invalid query body: {e}")))?;
    let site = site(web, &body.site_id)?;
    caller.authorize(web, Some(&site))?;
    if body.metrics.len() > Metric::ALL.len() || body.dimensions.len() > MAX_DIMENSIONS {
        return Err(ApiError::bad(format!(
            "at most {} metrics and {MAX_DIMENSIONS} dimensions per query",
            Metric::ALL.len()
        )));
    }
    let metrics = body
        .metrics
        .iter()
        .map(|m| Metric::parse(m).ok_or_else(|| ApiError::bad(format!("metrics: unknown metric `{m}`"))))
        .collect::<Result<Vec<_>, _>>()?;
    if metrics.is_empty() {
        return Err(ApiError::bad("metrics: at least one metric is required"));
    }
    if let Some(window_ms) = body.date_range.as_str().and_then(live_window) {
        return answer_live(web, caller, &site, &body, &metrics, window_ms);
    }
    let (today, now_hour) = plumb_core::time::local_day_hour(site.timezone, Utc::now().timestamp_millis());
    let (range, hours) = resolve_window(&body.date_range, today, now_hour)?;
    // `time` picks hours for a day of hours.
    let bucket_range = if hours.is_some() { DayRange { from: today, to: today } } else { range };
    let dimensions = body
        .dimensions
        .iter()
        .map(|d| {
            Dimension::parse(d, bucket_range)
                .ok_or_else(|| ApiError::bad(format!("dimensions: unknown dimension `{d}`")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let goals = site_goals(web, site.id)?;
    let filters = crate::notes::expand_segments(web, caller, &site, &body.filters)?;
    // Through a link that hides small groups (the hiding itself is below).
    let hidden_below = caller.hidden_below(web, &site)?;
    if hidden_below.is_some() {
        only_plain_filters(&filters)?;
    }
    let filter = parse_filters(&filters, range, &goals)?;
    let order_by = body
        .order_by
        .iter()
        .map(|(key, dir)| {
            let desc = match dir.as_str() {
                "desc" => true,
                "asc" => false,
                other => return Err(ApiError::bad(format!("order_by: direction `{other}` must be asc or desc"))),
            };
            let k = if let Some(i) = body.metrics.iter().position(|m| m == key) {
                OrderKey::Metric(i)
            } else if let Some(i) = body.dimensions.iter().position(|d| d == key) {
                OrderKey::Dimension(i)
            } else {
                return Err(ApiError::bad(format!(
                    "order_by: `{key}` is not one of the query's metrics or dimensions"
                )));
            };
            Ok((k, desc))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let comparison = match (&body.include.comparisons, hours) {
        (None, _) => None,
        (Some(c), None) => Some(comparison_range(c, range, today)?),
        // A day of hours compares with the day of hours before, or with the same hours a year ago.
        (Some(c), Some(_)) => match c.get("mode").and_then(Value::as_str) {
            Some("previous_period") => Some(DayRange { from: range.from - 1, to: range.to - 1 }),
            // The same 24 hours a year before, whatever February did.
            Some("year_over_year") => {
                let before = comparison_range(c, DayRange { from: range.to, to: range.to }, today)?;
                Some(DayRange { from: before.to - 1, to: before.to })
            }
            _ => {
                return Err(ApiError::bad(
                    "include.comparisons: `24h` compares with previous_period or year_over_year, not custom days",
                ));
            }
        },
    };
    let q = Query {
        site_id: site.id,
        metrics,
        range,
        dimensions,
        filter,
        order_by,
        limit: body.pagination.limit,
        offset: body.pagination.offset,
        comparison,
        hours,
        total_rows: body.include.total_rows,
        goals,
        imports: if body.include.imports == Some(false) { vec![] } else { import_refs(web.meta.as_ref(), site.id)? },
    };
    let time_bucket = q.dimensions.iter().find_map(|d| if let Dimension::Time(t) = d { Some(*t) } else { None });
    // Through a link that hides small groups, a row of a breakdown or of a filtered answer needs
    // that many visitors (asked for at the end when the query did not ask).
    let grouped = q.filter.is_some() || q.dimensions.iter().any(|d| !matches!(d, Dimension::Time(_)));
    let hide = hidden_below.filter(|_| grouped);
    let mut asked = q.clone();
    let visitors_at = hide.map(|_| {
        asked.metrics.iter().position(|m| *m == Metric::Visitors).unwrap_or_else(|| {
            asked.metrics.push(Metric::Visitors);
            asked.metrics.len() - 1
        })
    });
    let mut out = run_query(web, asked).await?;
    if let (Some(k), Some(at)) = (hide, visitors_at) {
        // The comparison period's row too: a custom comparison range could single a day out.
        let enough = |v: &Value| v.as_f64().unwrap_or(0.0) >= f64::from(k);
        let compared = q.comparison.is_some();
        out.results.retain(|r| {
            enough(&r.metrics[at]) && (!compared || r.comparison.as_ref().is_some_and(|c| enough(&c.metrics[at])))
        });
        if at == q.metrics.len() {
            for r in &mut out.results {
                r.metrics.truncate(at);
                if let Some(c) = &mut r.comparison {
                    c.metrics.truncate(at);
                    c.change.truncate(at);
                }
            }
        }
    }
    let tz = site.timezone;
    let shown_range = shown_range(tz, range, hours);
    let mut meta = serde_json::Map::new();
    if body.include.time_labels {
        let Some(bucket) = time_bucket else {
            return Err(ApiError::bad("include.time_labels: needs a time dimension"));
        };
        meta.insert("time_labels".into(), json!(plumb_query::time_labels(bucket, range, hours)));
    }
    // Counting the rows would count the hidden ones too.
    if q.total_rows && hide.is_none() {
        meta.insert("total_rows".into(), json!(out.total_rows));
    }
    if let Some(k) = hide {
        meta.insert("rows_hidden_below_visitors".into(), json!(k));
    }
    let by_sessions = [Metric::Visits, Metric::BounceRate, Metric::VisitDuration, Metric::ViewsPerVisit];
    if hours.is_some() && (grouped || q.metrics.iter().any(|m| by_sessions.contains(m))) {
        meta.insert(
            "warning".into(),
            json!(
                "Over 24h, visitors in total and by hour are exact. With a filter or breakdown, the first \
                 day's part counts visitor-days whose first hit of that kind was in the window; visits, \
                 bounce rate and duration count sessions that began in it."
            ),
        );
    }
    // As Plausible says it, where the site has imported history for the range.
    if out.imports.relevant {
        meta.insert("imports_included".into(), json!(out.imports.included));
        if let Some(reason) = out.imports.skip_reason {
            meta.insert("imports_skip_reason".into(), json!(reason));
        }
        if let Some(warning) = &out.imports.warning {
            meta.insert("imports_warning".into(), json!(warning));
        }
    }
    // The order applied: the one asked for, else the engine's default (time ascending, else the
    // first metric descending), as Plausible echoes it.
    let effective_order = if !body.order_by.is_empty() {
        body.order_by.clone()
    } else if let Some(i) = q.dimensions.iter().position(|d| matches!(d, Dimension::Time(_))) {
        vec![(body.dimensions[i].clone(), "asc".to_owned())]
    } else {
        vec![(body.metrics[0].clone(), "desc".to_owned())]
    };
    Ok(json!({
        "results": out.results,
        "meta": meta,
        "query": {
            "site_id": site.domain,
            "metrics": body.metrics,
            "date_range": shown_range,
            "dimensions": body.dimensions,
            "filters": body.filters,
            "order_by": effective_order,
            "pagination": {"limit": q.limit, "offset": q.offset},
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comparisons_and_filters_parse() {
        let range = DayRange { from: 100, to: 106 };
        let f = parse_filters(
            &[
                json!(["or", [["is", "visit:source", ["Google"]], ["not", ["contains", "event:page", ["/blog"], {"case_sensitive": false}]]]]),
            ],
            range,
            &[],
        );
        assert!(f.is_ok());
        let bad = |v: Value| parse_filters(&[v], range, &[]).is_err();
        assert!(bad(json!(["is", "visit:nope", ["x"]])));
        assert!(bad(json!(["resembles", "visit:source", ["x"]])));
        assert!(bad(json!(["matches", "event:page", ["(unclosed"]])));
        assert!(bad(json!(["is", "time:day", ["2024-01-01"]])));
        // Bounded: conditions, nesting, values and their length.
        let many: Vec<Value> = (0..=MAX_CONDITIONS).map(|i| json!(["is", "visit:source", [i.to_string()]])).collect();
        assert!(parse_filters(&many, range, &[]).unwrap_err().message.contains("more than 30 conditions"));
        let mut deep = json!(["is", "visit:source", ["x"]]);
        for _ in 0..MAX_FILTER_DEPTH {
            deep = json!(["not", deep]);
        }
        assert!(bad(deep));
        assert!(bad(json!(["is", "visit:source", vec!["x"; MAX_FILTER_VALUES + 1]])));
        assert!(bad(json!(["is", "visit:source", ["x".repeat(MAX_FILTER_VALUE_BYTES + 1)]])));
    }

    #[test]
    fn goal_filters_name_existing_goals() {
        let range = DayRange { from: 0, to: 0 };
        let goals = vec![
            GoalDef { name: "Signup".into(), condition: GoalCondition::Event("Signup".into()), currency: None },
            GoalDef {
                name: "Visit /blog/**".into(),
                condition: GoalCondition::Page("^/blog/.*$".into()),
                currency: None,
            },
        ];
        let one = |v: Value| parse_filters(&[v], range, &goals).map(Option::unwrap);
        let f = one(json!(["is", "event:goal", ["Signup"]])).unwrap();
        assert_eq!(f, Filter::Or(vec![Filter::Goal(GoalCondition::Event("Signup".into()))]));
        let f = one(json!(["contains", "event:goal", ["visit"], {"case_sensitive": false}]));
        assert_eq!(f.unwrap(), Filter::Or(vec![Filter::Goal(GoalCondition::Page("^/blog/.*$".into()))]));
        let e = one(json!(["is", "event:goal", ["Nope"]])).unwrap_err();
        assert_eq!(e.message, "filters: `Nope` is not a goal of this site");
        assert!(one(json!(["is_not", "event:goal", ["Signup"]])).is_err());
    }
}
