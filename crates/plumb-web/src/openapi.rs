//! `GET /api/openapi.json`: an OpenAPI 3.1 document built from the endpoint table and from the
//! query model's own lists of metrics, dimensions, operators and periods.

use crate::endpoints;
use axum::Json;
use plumb_meta::permission::{Action, Holder};
use plumb_query::period::{PERIODS, SHORT_PERIODS};
use plumb_query::{Dimension, Metric, Op};
use serde_json::{Map, Value, json};

fn string_enum(values: impl IntoIterator<Item = &'static str>) -> Value {
    json!({"type": "string", "enum": values.into_iter().collect::<Vec<_>>()})
}

fn object(fields: &[(&str, bool, &str)]) -> Value {
    let properties: Map<String, Value> =
        fields.iter().map(|(n, _, d)| (n.to_string(), json!({"type": "string", "description": d}))).collect();
    let required: Vec<&str> = fields.iter().filter(|(_, r, _)| *r).map(|(n, _, _)| *n).collect();
    json!({"type": "object", "properties": properties, "required": required})
}

/// The v2 query body, with the enums the engine accepts.
fn query_schema() -> Value {
    json!({
        "type": "object",
        "required": ["site_id", "metrics", "date_range"],
        "additionalProperties": false,
        "properties": {
            "site_id": {"type": "string", "description": "the site's domain"},
            "metrics": {"type": "array", "minItems": 1, "items": string_enum(Metric::ALL.iter().map(|(n, _)| *n))},
            "date_range": {"oneOf": [
                string_enum(PERIODS.into_iter().chain(SHORT_PERIODS)),
                {"type": "string", "pattern": "^[1-9][0-9]*(d|mo)$", "description": "N days before today (N ≤ 5000) or N whole months before this one (N ≤ 100)"},
                {"type": "array", "minItems": 2, "maxItems": 2, "items": {"type": "string", "description": "YYYY-MM-DD or an ISO 8601 datetime"}},
            ]},
            "dimensions": {"type": "array", "items": string_enum(Dimension::names())},
            "filters": {"type": "array", "items": {
                "type": "array",
                "description": "[operator, dimension, [values], {\"case_sensitive\": bool}?], or [\"and\"|\"or\", [filters]], or [\"not\", filter]",
                "prefixItems": [string_enum(Op::ALL.iter().map(|(n, _)| *n).chain(["and", "or", "not"]))],
            }},
            "order_by": {"type": "array", "items": {"type": "array", "prefixItems": [
                {"type": "string", "description": "a metric or dimension of the query"},
                string_enum(["asc", "desc"]),
            ]}},
            "include": {"type": "object", "additionalProperties": false, "properties": {
                "time_labels": {"type": "boolean"},
                "total_rows": {"type": "boolean"},
                "comparisons": {"type": "object", "properties": {
                    "mode": string_enum(["previous_period", "year_over_year", "custom"]),
                    "date_range": {"type": "array", "items": {"type": "string"}},
                }},
            }},
            "pagination": {"type": "object", "properties": {
                "limit": {"type": "integer", "minimum": 1, "maximum": 10000},
                "offset": {"type": "integer", "minimum": 0},
            }},
        },
    })
}

pub fn document() -> Value {
    let error = json!({"description": "the request is invalid, unauthorised, forbidden, unknown or over the key's limit; `error` says which field and why",
        "content": {"application/json": {"schema": {"type": "object", "properties": {"error": {"type": "string"}}}}}});
    let mut paths: Map<String, Value> = Map::new();
    for e in endpoints() {
        let mut parameters: Vec<Value> = e
            .path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        parameters.extend(e.query.iter().map(|(name, required, description)| {
            json!({"name": name, "in": "query", "required": required, "description": description, "schema": {"type": "string"}})
        }));
        let mut op = json!({
            "summary": e.summary,
            "parameters": parameters,
            "responses": {"200": {"description": "OK", "content": {"application/json": {}}}, "4XX": error},
        });
        if e.action != Action::Public {
            let keys: Vec<String> = e
                .action
                .holders()
                .iter()
                .filter_map(|h| match h {
                    Holder::Key(s) => Some(format!("`{}`", s.name())),
                    Holder::UnlimitedKey(s) => Some(format!("`{}` (limited to no sites)", s.name())),
                    _ => None,
                })
                .collect();
            op["security"] = json!([{"apiKey": []}]);
            op["description"] = json!(format!(
                "Needs the `{}` permission: an API key with {}, or a session or shared link allowed it (see the README's permission table).",
                e.action.name(),
                keys.join(" or ")
            ));
        }
        // The v2 query is JSON only; the Sites API also takes forms, as Plausible's examples send.
        let content = if e.path == "/api/v2/query" {
            Some(json!({"application/json": {"schema": query_schema()}}))
        } else if e.body.is_empty() {
            None
        } else {
            let schema = object(e.body);
            Some(
                json!({"application/json": {"schema": schema.clone()}, "application/x-www-form-urlencoded": {"schema": schema}}),
            )
        };
        if let Some(content) = content {
            op["requestBody"] = json!({"required": true, "content": content});
        }
        paths.entry(e.path).or_insert_with(|| json!({}))[e.method] = op;
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": "Plumb API", "version": env!("CARGO_PKG_VERSION"),
            "description": "Stats API (Plausible-compatible v2 and v1), realtime, and Sites API."},
        "components": {"securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer",
            "description": "an API key from `plumb key create`"}}},
        "paths": paths,
    })
}

pub async fn serve() -> Json<Value> {
    Json(document())
}
