//! CSV export of what the dashboard shows: one panel (`export.csv?q=<v2 query>`), or every panel
//! for a range and filters as a zip (`export.zip?date_range=…&filters=…`). Both run through the
//! Stats API's own query path, so a CSV holds exactly the numbers the dashboard shows.

use crate::Web;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::stats::answer_v2;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;

type Params = Query<HashMap<String, String>>;

/// Every panel of the dashboard, as file name, dimension and metrics.
const PANELS: &[(&str, &str, &[&str])] = &[
    ("channels", "visit:channel", &["visitors", "visits", "bounce_rate", "visit_duration"]),
    ("sources", "visit:source", &["visitors", "visits", "bounce_rate", "visit_duration"]),
    ("referrers", "visit:referrer", &["visitors", "visits", "bounce_rate", "visit_duration"]),
    ("utm_mediums", "visit:utm_medium", &["visitors", "visits", "bounce_rate", "visit_duration"]),
    ("utm_sources", "visit:utm_source", &["visitors", "visits", "bounce_rate", "visit_duration"]),
    ("utm_campaigns", "visit:utm_campaign", &["visitors", "visits", "bounce_rate", "visit_duration"]),
    ("utm_contents", "visit:utm_content", &["visitors", "visits", "bounce_rate", "visit_duration"]),
    ("utm_terms", "visit:utm_term", &["visitors", "visits", "bounce_rate", "visit_duration"]),
    ("pages", "event:page", &["visitors", "pageviews", "bounce_rate", "time_on_page"]),
    ("entry_pages", "visit:entry_page", &["visitors", "visits", "bounce_rate", "visit_duration"]),
    ("exit_pages", "visit:exit_page", &["visitors", "visits"]),
    ("countries", "visit:country_name", &["visitors"]),
    ("regions", "visit:region", &["visitors"]),
    ("cities", "visit:city", &["visitors"]),
    ("devices", "visit:device", &["visitors"]),
    ("browsers", "visit:browser", &["visitors"]),
    ("browser_versions", "visit:browser_version", &["visitors"]),
    ("operating_systems", "visit:os", &["visitors"]),
    ("operating_system_versions", "visit:os_version", &["visitors"]),
    ("goals", "event:goal", &["visitors", "events", "conversion_rate", "total_revenue", "average_revenue"]),
];

const OVERVIEW: &[&str] = &["visitors", "visits", "pageviews", "views_per_visit", "bounce_rate", "visit_duration"];

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

/// `GET /sites/{domain}/export.zip?date_range=…&filters=…`: the overview by day and every panel.
pub async fn zip(
    State(web): State<Arc<Web>>,
    caller: Caller,
    Path(domain): Path<String>,
    Query(p): Params,
) -> Result<Response, ApiError> {
    let range = parse_json(&p, "date_range", json!("30d"))?;
    let filters = parse_json(&p, "filters", json!([]))?;
    let query = |dims: Value, metrics: &[&str]| json!({"site_id": domain, "date_range": range, "filters": filters, "dimensions": dims, "metrics": metrics});
    let mut files =
        vec![("visitors".to_owned(), answer_v2(&web, &caller, query(json!(["time:day"]), OVERVIEW)).await?)];
    for (name, dim, metrics) in PANELS {
        if *dim == "event:goal" && web.meta.list_goals(site_id(&web, &domain)?)?.is_empty() {
            continue;
        }
        files.push((name.to_string(), answer_v2(&web, &caller, query(json!([dim]), metrics)).await?));
    }
    let label = range_label(&files[0].1);
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    for (name, answer) in &files {
        zip.start_file(format!("{name}.csv"), options).map_err(ApiError::internal)?;
        zip.write_all(to_csv(answer).as_bytes()).map_err(ApiError::internal)?;
    }
    let bytes = zip.finish().map_err(ApiError::internal)?.into_inner();
    Ok(attachment(bytes, "application/zip", &format!("{domain}_{label}.zip")))
}

fn site_id(web: &Web, domain: &str) -> Result<u32, ApiError> {
    Ok(crate::stats::site(web, domain)?.id)
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
