//! CSV export of what the dashboard shows: one panel (`export.csv?q=<v2 query>`), through the
//! Stats API's own query path, so it holds exactly the numbers the dashboard shows; or a range
//! (and filters) as Plausible's CSV export (`export.zip?date_range=…&filters=…`): sums per day of
//! every breakdown, which `plumb import plausible` (or Plausible) reads back.

use crate::Web;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::stats::answer_v2;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use plumb_core::time::date_of_day;
use plumb_query::imported::{MEASURES, Measure};
use plumb_query::{Column, DayRange, Dimension, Metric, QueryError, SumsBackend, TimeBucket, plausible};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;

type Params = Query<HashMap<String, String>>;

/// RFC 4180: fields with a comma, quote or line break are quoted, quotes doubled. A leading
/// `=`, `+`, `-` or `@` is prefixed with `'` so spreadsheets do not run page paths as formulas.
fn csv_field(s: &str) -> String {
    let s =
        if s.starts_with(['=', '+', '-', '@']) && s.parse::<f64>().is_err() { format!("'{s}") } else { s.to_owned() };
    if s.contains([',', '"', '\n', '\r']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s }
}

fn to_csv(answer: &Value) -> String {
    let q = &answer["query"];
    let names = |k: &str| q[k].as_array().cloned().unwrap_or_default();
    let header: Vec<String> = names("dimensions")
        .iter()
        .chain(names("metrics").iter())
        .map(|v| csv_field(&v.as_str().unwrap_or_default().replace("visit:", "").replace("event:", "")))
        .collect();
    let mut out = header.join(",") + "\r\n";
    for row in answer["results"].as_array().into_iter().flatten() {
        let cells: Vec<String> = row["dimensions"]
            .as_array()
            .into_iter()
            .flatten()
            .chain(row["metrics"].as_array().into_iter().flatten())
            .map(|v| match v {
                Value::String(s) => csv_field(s),
                Value::Null => String::new(),
                // Revenue: `{value, currency}`; the column says the currency.
                Value::Object(o) => o.get("value").map(Value::to_string).unwrap_or_default(),
                other => other.to_string(),
            })
            .collect();
        out.push_str(&cells.join(","));
        out.push_str("\r\n");
    }
    out
}

fn parse_json(p: &HashMap<String, String>, name: &str, default: Value) -> Result<Value, ApiError> {
    match p.get(name) {
        None => Ok(default),
        Some(s) => serde_json::from_str(s).map_err(|e| ApiError::bad(format!("`{name}` is not valid JSON: {e}"))),
    }
}

fn attachment(body: Vec<u8>, mime: &'static str, filename: &str) -> Response {
    let mut r = ([(header::CONTENT_TYPE, mime)], body).into_response();
    let safe: String = filename.chars().filter(|c| c.is_ascii_alphanumeric() || "._-".contains(*c)).collect();
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{safe}\"")) {
        r.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
    r
}

/// The dates a v2 answer covers, for file names.
fn range_label(answer: &Value) -> String {
    let d = |i: usize| {
        answer["query"]["date_range"][i].as_str().unwrap_or_default().get(..10).unwrap_or_default().to_owned()
    };
    format!("{}_{}", d(0), d(1))
}

/// `GET /sites/{domain}/export.csv?q=<v2 query JSON>`: one panel (the query's `site_id` is the
/// path's; pagination is lifted so the file holds every row).
pub async fn csv(
    State(web): State<Arc<Web>>,
    caller: Caller,
    Path(domain): Path<String>,
    Query(p): Params,
) -> Result<Response, ApiError> {
    let mut q = parse_json(&p, "q", Value::Null)?;
    let Some(obj) = q.as_object_mut() else { return Err(ApiError::bad("`q` must be a v2 query object")) };
    obj.insert("site_id".into(), json!(domain));
    obj.remove("pagination");
    let answer = answer_v2(&web, &caller, q).await?;
    let dim = answer["query"]["dimensions"][0].as_str().unwrap_or("overview").replace([':', '/'], "_");
    let name = format!("{domain}_{dim}_{}.csv", range_label(&answer));
    Ok(attachment(to_csv(&answer).into_bytes(), "text/csv; charset=utf-8", &name))
}

/// `GET /sites/{domain}/export.zip?date_range=…&filters=…`: Plausible's CSV export of the range
/// (see [`plausible_zip`]), under the same budgets as every query.
pub async fn zip(
    State(web): State<Arc<Web>>,
    caller: Caller,
    Path(domain): Path<String>,
    Query(p): Params,
) -> Result<Response, ApiError> {
    let range = parse_json(&p, "date_range", json!("30d"))?;
    let filters = parse_json(&p, "filters", json!([]))?;
    let site = crate::stats::site(&web, &domain)?;
    caller.authorize(&web, Some(&site))?;
    if caller.hidden_below(&web, &site)?.is_some() {
        let why = "this shared link hides rows of few visitors, so it offers no export of every breakdown";
        return Err(ApiError::new(axum::http::StatusCode::FORBIDDEN, why));
    }
    let today = plumb_core::time::local_day(site.timezone, chrono::Utc::now().timestamp_millis());
    let range = plumb_query::period::resolve_range(&range, today)?;
    let goals = crate::stats::site_goals(&web, site.id)?;
    let filters: Vec<Value> =
        serde_json::from_value(filters).map_err(|e| ApiError::bad(format!("filters: must be a list: {e}")))?;
    let filters = crate::notes::expand_segments(&web, &caller, &site, &filters)?;
    let filter = crate::stats::parse_filters(&filters, range, &goals)?;
    let base = plumb_query::Query {
        filter,
        goals,
        imports: crate::stats::import_refs(web.meta.as_ref(), site.id)?,
        ..plumb_query::Query::over(site.id, range)
    };
    let bytes = crate::stats::run_blocking(&web, move |reader| plausible_zip(reader, &base)).await??;
    let name = format!("{}_{}.zip", domain.replace('.', "_"), plumb_core::time::date_of_day(range.to).format("%Y%m%d"));
    Ok(attachment(bytes, "application/zip", &name))
}

/// Plausible's CSV export of `base`'s site, range and filter: every table of
/// `plumb_query::plausible`, per day, each a month at a time (so no answer holds too many groups).
pub fn plausible_zip(backend: &dyn SumsBackend, base: &plumb_query::Query) -> Result<Vec<u8>, ApiError> {
    let span = data_span(backend, base)?;
    let base = &plumb_query::Query { range: span, ..base.clone() };
    let (first, last) = (date_of_day(span.from), date_of_day(span.to));
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    for table in plausible::tables() {
        let keys: Vec<Column> = table
            .keys
            .iter()
            .filter_map(|(_, k)| if let plausible::Key::Column(c) = k { Some(c.clone()) } else { None })
            .collect();
        let mut csv = String::from("date");
        for name in table.keys.iter().map(|(n, _)| *n).chain(table.counts.iter().map(|c| c.name)) {
            csv.push(',');
            csv.push_str(name);
        }
        csv.push_str("\r\n");
        let mut from = base.range.from;
        while from <= base.range.to {
            let to = (from + 30).min(base.range.to);
            let q = plumb_query::Query {
                metrics: table.metrics.to_vec(),
                range: DayRange { from, to },
                dimensions: std::iter::once(Dimension::Time(TimeBucket::Day))
                    .chain(keys.iter().cloned().map(Dimension::Column))
                    .collect(),
                ..base.clone()
            };
            for (group, sums) in plumb_query::totals(backend, &q).map_err(query_error)? {
                // Pageviews are no custom event.
                if table.name == "custom_events" && group.get(1).is_some_and(|n| n == "pageview") {
                    continue;
                }
                let mut values = group[1..].iter();
                let mut cells = vec![group[0].clone()];
                for (_, key) in &table.keys {
                    cells.push(match key {
                        plausible::Key::Column(_) => csv_field(values.next().map_or("", String::as_str)),
                        plausible::Key::Constant(v) => (*v).to_owned(),
                    });
                }
                for count in &table.counts {
                    let i = MEASURES.iter().position(|m| *m == count.measure).expect("every measure is summed");
                    let v =
                        if count.measure == Measure::DurationMs { (sums[i] + 500).div_euclid(1000) } else { sums[i] };
                    cells.push(v.to_string());
                }
                csv.push_str(&cells.join(","));
                csv.push_str("\r\n");
            }
            from = to + 1;
        }
        zip.start_file(plausible::file_name(table.name, first, last), options).map_err(ApiError::internal)?;
        zip.write_all(csv.as_bytes()).map_err(ApiError::internal)?;
    }
    Ok(zip.finish().map_err(ApiError::internal)?.into_inner())
}

/// The first and last day of `base`'s range that have data (an "all time" range starts in 1970),
/// as Plausible names its files after them: found by month, then by day within those months.
fn data_span(backend: &dyn SumsBackend, base: &plumb_query::Query) -> Result<DayRange, ApiError> {
    let with_data = |bucket: TimeBucket, range: DayRange| -> Result<Option<DayRange>, ApiError> {
        let q = plumb_query::Query {
            metrics: vec![Metric::Visitors, Metric::Events],
            dimensions: vec![Dimension::Time(bucket)],
            range,
            ..base.clone()
        };
        let days: Vec<i32> = plumb_query::totals(backend, &q)
            .map_err(query_error)?
            .iter()
            .filter_map(|(keys, _)| chrono::NaiveDate::parse_from_str(&keys[0], "%Y-%m-%d").ok())
            .map(plumb_core::time::day_number)
            .collect();
        Ok(days.iter().min().zip(days.iter().max()).map(|(a, b)| DayRange { from: *a, to: *b }))
    };
    let Some(months) = with_data(TimeBucket::Month, base.range)? else { return Ok(base.range) };
    // The last month with data ends before the next one starts.
    let month_end = |day: i32| {
        let d = date_of_day(day);
        d.checked_add_months(chrono::Months::new(1)).map_or(day, |n| plumb_core::time::day_number(n) - 1)
    };
    let within = DayRange { from: months.from.max(base.range.from), to: month_end(months.to).min(base.range.to) };
    if i64::from(within.days()) > plumb_query::MAX_TIME_BUCKETS {
        return Ok(within);
    }
    Ok(with_data(TimeBucket::Day, within)?.unwrap_or(within))
}

fn query_error(e: QueryError) -> ApiError {
    match e {
        QueryError::Invalid(i) => ApiError::bad(i.0),
        QueryError::Store(e) => e.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_what_needs_quoting_and_defuses_formulas() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=HYPERLINK(1)"), "'=HYPERLINK(1)");
        assert_eq!(csv_field("-3"), "-3");
        let answer = json!({
            "query": {"dimensions": ["visit:source"], "metrics": ["visitors", "bounce_rate"]},
            "results": [{"dimensions": ["Google"], "metrics": [3, 50]}, {"dimensions": ["a,b"], "metrics": [1, null]}],
        });
        assert_eq!(to_csv(&answer), "source,visitors,bounce_rate\r\nGoogle,3,50\r\n\"a,b\",1,\r\n");
        let answer = json!({
            "query": {"dimensions": ["event:goal"], "metrics": ["total_revenue"]},
            "results": [{"dimensions": ["Buy"], "metrics": [{"value": 12.5, "currency": "EUR"}]}],
        });
        assert_eq!(to_csv(&answer), "goal,total_revenue\r\nBuy,12.5\r\n");
    }
}
