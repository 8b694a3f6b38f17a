//! Sites API, goals API, realtime (JSON and server-sent events) and the OpenAPI document,
//! through HTTP on the real binary.

mod common;

use common::*;
use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;

/// Sends a request and returns status and JSON body (`Null` when the body is not JSON).
async fn call(c: &reqwest::Client, method: Method, url: String, key: &str, body: Option<Value>) -> (u16, Value) {
    let mut r = c.request(method, url).bearer_auth(key);
    if let Some(b) = body {
        r = r.json(&b);
    }
    let r = r.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn error_of(v: &Value) -> &str {
    v["error"].as_str().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sites_and_goals_are_managed_through_the_api() {
    let dir = temp_dir("sitesapi");
    cli(&dir, &["site", "add", "a.test"]);
    let admin = create_key_with(&dir, "admin", &["--scope", "sites:admin", "--scope", "stats:read"]);
    let limited = create_key_with(&dir, "limited", &["--scope", "sites:admin", "--site", "a.test"]);
    let reader = create_key(&dir, "reader");
    let server = Server::start(&dir, &[]);
    let c = client();
    let url = |p: &str| format!("{}{p}", server.url);

    // Create, by JSON and by form; duplicates and bad fields are 400s that say why.
    let (s, v) = call(
        &c,
        Method::POST,
        url("/api/v1/sites"),
        &admin,
        Some(json!({"domain": "New.test", "timezone": "Europe/Paris"})),
    )
    .await;
    assert_eq!((s, v), (200, json!({"domain": "new.test", "timezone": "Europe/Paris"})));
    let r = c
        .post(url("/api/v1/sites"))
        .bearer_auth(&admin)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("domain=form.test")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"domain": "form.test", "timezone": "UTC"}));
    for (key, body, status, msg) in [
        (&admin, json!({"domain": "new.test"}), 400, "site `new.test` already exists"),
        (&admin, json!({"timezone": "UTC"}), 400, "`domain` is required"),
        (&admin, json!({"domain": "b.test", "timezone": "Mars/Base"}), 400, "not an IANA timezone"),
        (&admin, json!({"domain": 7}), 400, "`domain` must be a string"),
        (&limited, json!({"domain": "b.test"}), 403, "lacks the `create site` permission"),
        (&reader, json!({"domain": "b.test"}), 403, "lacks the `create site` permission"),
    ] {
        let (s, v) = call(&c, Method::POST, url("/api/v1/sites"), key, Some(body)).await;
        assert_eq!(s, status, "{v}");
        assert!(error_of(&v).contains(msg), "{v} should say {msg}");
    }

    let r = c.post(url("/api/v1/sites")).bearer_auth(&admin).body("{domain").send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(error_of(&r.json().await.unwrap()).contains("not valid JSON"));

    // List with a cursor; a limited key sees only its site.
    let (_, v) = call(&c, Method::GET, url("/api/v1/sites?limit=2"), &admin, None).await;
    let domains = |v: &Value| v["sites"].as_array().unwrap().iter().map(|s| s["domain"].clone()).collect::<Vec<_>>();
    assert_eq!(domains(&v), vec![json!("a.test"), json!("form.test")]);
    assert_eq!(v["meta"]["after"], "form.test");
    let (_, v) = call(&c, Method::GET, url("/api/v1/sites?limit=2&after=form.test"), &admin, None).await;
    assert_eq!((domains(&v), &v["meta"]["after"]), (vec![json!("new.test")], &Value::Null));
    let (_, v) = call(&c, Method::GET, url("/api/v1/sites"), &limited, None).await;
    assert_eq!(domains(&v), vec![json!("a.test")]);
    let (s, v) = call(&c, Method::GET, url("/api/v1/sites?limit=0"), &admin, None).await;
    assert_eq!((s, error_of(&v).contains("limit must be 1 to 1000")), (400, true));

    // Show, update, and who may.
    let (s, v) = call(&c, Method::GET, url("/api/v1/sites/new.test"), &reader, None).await;
    assert_eq!((s, v), (200, json!({"domain": "new.test", "timezone": "Europe/Paris"})));
    assert_eq!(call(&c, Method::GET, url("/api/v1/sites/nope.test"), &admin, None).await.0, 404);
    let (s, v) =
        call(&c, Method::PUT, url("/api/v1/sites/new.test"), &admin, Some(json!({"timezone": "Asia/Tokyo"}))).await;
    assert_eq!((s, &v["timezone"]), (200, &json!("Asia/Tokyo")));
    let (s, v) = call(&c, Method::PUT, url("/api/v1/sites/new.test"), &reader, Some(json!({"domain": "x.test"}))).await;
    assert_eq!((s, error_of(&v).contains("lacks the `manage` permission on `new.test`")), (403, true), "{v}");
    let (s, v) = call(&c, Method::PUT, url("/api/v1/sites/new.test"), &admin, Some(json!({}))).await;
    assert_eq!((s, error_of(&v).contains("nothing to change")), (400, true), "{v}");

    // Goals: idempotent create, list, use in a query, delete.
    let goal = json!({"site_id": "a.test", "goal_type": "event", "event_name": "Signup"});
    let (s, signup) = call(&c, Method::PUT, url("/api/v1/sites/goals"), &limited, Some(goal.clone())).await;
    assert_eq!(s, 200, "{signup}");
    assert_eq!(
        (&signup["display_name"], &signup["goal_type"], &signup["page_path"]),
        (&json!("Signup"), &json!("event"), &Value::Null)
    );
    assert_eq!(call(&c, Method::PUT, url("/api/v1/sites/goals"), &limited, Some(goal)).await.1["id"], signup["id"]);
    let r = c
        .put(url("/api/v1/sites/goals"))
        .bearer_auth(&limited)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("site_id=a.test&goal_type=page&page_path=%2Fthanks%2F**")
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["display_name"], "Visit /thanks/**");
    for (body, status, msg) in [
        (json!({"site_id": "a.test", "goal_type": "click", "event_name": "x"}), 400, "goal_type `click`"),
        (json!({"site_id": "a.test", "goal_type": "page"}), 400, "`page_path` is required"),
        (json!({"site_id": "a.test", "goal_type": "page", "page_path": "thanks"}), 400, "must start with `/`"),
        (json!({"site_id": "new.test", "goal_type": "event", "event_name": "x"}), 403, "lacks the `manage` permission"),
        (json!({"site_id": "gone.test", "goal_type": "event", "event_name": "x"}), 404, "not a site"),
    ] {
        let (s, v) = call(&c, Method::PUT, url("/api/v1/sites/goals"), &limited, Some(body)).await;
        assert_eq!(s, status, "{v}");
        assert!(error_of(&v).contains(msg), "{v} should say {msg}");
    }
    let (_, v) = call(&c, Method::GET, url("/api/v1/sites/goals?site_id=a.test"), &reader, None).await;
    let names: Vec<&Value> = v["goals"].as_array().unwrap().iter().map(|g| &g["display_name"]).collect();
    assert_eq!(names, vec![&json!("Signup"), &json!("Visit /thanks/**")]);
    let (_, v) = call(&c, Method::GET, url("/api/v1/sites/goals?site_id=a.test&limit=1"), &reader, None).await;
    assert_eq!((v["goals"].as_array().unwrap().len(), &v["meta"]["after"]), (1, &signup["id"]));
    let (_, v) = call(
        &c,
        Method::GET,
        url(&format!("/api/v1/sites/goals?site_id=a.test&after={}", signup["id"])),
        &reader,
        None,
    )
    .await;
    assert_eq!((v["goals"][0]["display_name"].as_str(), &v["meta"]["after"]), (Some("Visit /thanks/**"), &Value::Null));
    let (s, v) = call(&c, Method::GET, url("/api/v1/sites/goals?site_id=a.test&after=x"), &reader, None).await;
    assert_eq!((s, error_of(&v).contains("after must be a goal id")), (400, true), "{v}");
    let q = json!({"site_id": "a.test", "metrics": ["visitors", "conversion_rate"], "date_range": "day", "dimensions": ["event:goal"]});
    let (s, v) = call(&c, Method::POST, url("/api/v2/query"), &reader, Some(q)).await;
    assert_eq!((s, &v["results"]), (200, &json!([])), "goals are known, nothing completed them yet: {v}");
    let delete_goal = url(&format!("/api/v1/sites/goals/{}", signup["id"]));
    let site_a = Some(json!({"site_id": "a.test"}));
    assert_eq!(
        call(&c, Method::DELETE, delete_goal.clone(), &limited, site_a.clone()).await,
        (200, json!({"deleted": true}))
    );
    assert_eq!(call(&c, Method::DELETE, delete_goal, &limited, site_a).await.0, 404);

    // Delete a site: gone from lookups.
    assert_eq!(
        call(&c, Method::DELETE, url("/api/v1/sites/form.test"), &admin, None).await,
        (200, json!({"deleted": true, "events_deleted": true}))
    );
    assert_eq!(call(&c, Method::GET, url("/api/v1/sites/form.test"), &admin, None).await.0, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn realtime_streams_current_visitors_and_the_openapi_document_matches_the_routes() {
    let dir = temp_dir("realtime");
    cli(&dir, &["site", "add", "rt.test"]);
    let key =
        create_key_with(&dir, "all", &["--scope", "stats:read", "--scope", "events:write", "--scope", "sites:admin"]);
    let server = Server::start(&dir, &[]);
    let c = client();
    let visit = |n: u8, page: &'static str, referrer: &'static str| {
        let (c, url, key) = (c.clone(), server.url.clone(), key.clone());
        async move {
            let e = json!({"n": "pageview", "u": format!("https://rt.test{page}"), "d": "rt.test", "r": referrer,
                "ip": format!("192.0.2.{n}"), "user_agent": format!("Mozilla/5.0 RealtimeVisitor/{n}")});
            let r = c.post(format!("{url}/api/event")).bearer_auth(key).json(&e).send().await.unwrap();
            assert_eq!(r.status(), 202);
        }
    };

    // The stream answers at once, then pushes each change.
    let mut stream = c
        .get(format!("{}/api/v1/stats/realtime/stream?site_id=rt.test", server.url))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    assert_eq!(stream.headers()["content-type"], "text/event-stream");
    let mut seen = String::new();
    let mut next_event = async || -> Value {
        loop {
            if let Some(end) = seen.find("\n\n") {
                let block: String = seen.drain(..end + 2).collect();
                if let Some(data) = block.lines().find_map(|l| l.strip_prefix("data: ")) {
                    assert!(block.contains("event: realtime"), "{block}");
                    return serde_json::from_str(data).unwrap();
                }
                continue; // a keep-alive comment
            }
            let chunk = tokio::time::timeout(Duration::from_secs(20), stream.chunk()).await;
            seen.push_str(&String::from_utf8_lossy(&chunk.expect("an event within 20 s").unwrap().unwrap()));
        }
    };
    assert_eq!(next_event().await, json!({"visitors": 0, "pages": [], "sources": []}));

    visit(1, "/a", "https://www.google.com/").await;
    visit(2, "/b", "").await;
    visit(2, "/a", "").await;
    let mut last = Value::Null;
    for _ in 0..10 {
        last = next_event().await;
        if last["visitors"] == 2 {
            break;
        }
    }
    assert_eq!(last["visitors"], 2, "{last}");
    assert_eq!(last["pages"], json!([{"name": "/a", "visitors": 2}]), "each visitor's latest page");
    assert_eq!(last["sources"], json!([{"name": "", "visitors": 1}, {"name": "Google", "visitors": 1}]));

    let (s, v) = call(&c, Method::GET, format!("{}/api/v1/stats/realtime", server.url), &key, None).await;
    assert_eq!((s, error_of(&v)), (400, "site_id is required"));
    let (s, v) =
        call(&c, Method::GET, format!("{}/api/v1/stats/realtime?site_id=rt.test", server.url), &key, None).await;
    assert_eq!((s, v), (200, last.clone()));
    let (s, v) =
        call(&c, Method::GET, format!("{}/api/v1/stats/realtime/visitors?site_id=rt.test", server.url), &key, None)
            .await;
    assert_eq!((s, v), (200, json!(2)));
    drop(stream);

    // The document lists the query model's own vocabulary...
    let doc: Value = c.get(format!("{}/api/openapi.json", server.url)).send().await.unwrap().json().await.unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let query_schema = &doc["paths"]["/api/v2/query"]["post"]["requestBody"]["content"]["application/json"]["schema"];
    let metrics = query_schema["properties"]["metrics"]["items"]["enum"].as_array().unwrap();
    for m in ["visitors", "conversion_rate", "scroll_depth", "time_on_page"] {
        assert!(metrics.contains(&json!(m)), "{m} documented");
    }
    let dims = query_schema["properties"]["dimensions"]["items"]["enum"].as_array().unwrap();
    for d in ["visit:exit_page", "event:goal", "event:props:<key>", "time:week"] {
        assert!(dims.contains(&json!(d)), "{d} documented");
    }
    // ...and every documented operation is served (an unknown path is the router's bare 404,
    // an unknown method its 405; the API's own 404s carry an error message).
    let mut operations = 0;
    let paths = doc["paths"].as_object().unwrap();
    for (path, methods) in paths {
        for method in methods.as_object().unwrap().keys() {
            let url = format!("{}{}", server.url, path.replace("{site_id}", "rt.test").replace("{goal_id}", "999"));
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let r = c.request(method.clone(), url).bearer_auth(&key).send().await.unwrap();
            let status = r.status().as_u16();
            let served = status != 405 && (status != 404 || r.headers().get("content-type").is_some());
            assert!(served, "{method} {path} is documented but answers {status}");
            assert_ne!(status, 500, "{method} {path}");
            operations += 1;
        }
    }
    assert!(operations >= 16, "{operations} operations documented");
    let r = c.get(format!("{}/api/v1/undocumented", server.url)).send().await.unwrap();
    assert_eq!((r.status().as_u16(), r.headers().get("content-type").is_none()), (404, true));
}

/// Every result row in Plausible's v2 shape: numbers (or null) for metrics, strings for dimensions.
fn assert_v2_shape(body: &Value, metrics: usize, dimensions: usize) {
    for r in body["results"].as_array().unwrap_or_else(|| panic!("results array: {body}")) {
        let m = r["metrics"].as_array().unwrap();
        assert_eq!(m.len(), metrics, "{r}");
        assert!(m.iter().all(|v| v.is_number() || v.is_null()), "{r}");
        let d = r["dimensions"].as_array().unwrap();
        assert_eq!(d.len(), dimensions, "{r}");
        assert!(d.iter().all(Value::is_string), "{r}");
    }
    assert!(body["meta"].is_object(), "{body}");
    let q = &body["query"];
    assert!(q["site_id"].is_string() && q["metrics"].is_array() && q["filters"].is_array(), "{q}");
    assert_eq!(q["date_range"].as_array().map(Vec::len), Some(2), "{q}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plausibles_documented_example_requests_work_unchanged() {
    let dir = temp_dir("compat");
    cli(&dir, &["site", "add", "dummy.site"]);
    let key = create_key(&dir, "compat");
    let server = Server::start(&dir, &[]);
    let c = client();
    // Yesterday (UTC, the site's zone): inside "7d", which ends yesterday.
    let noon = chrono::Utc::now().date_naive().pred_opt().unwrap().and_hms_opt(12, 0, 0).unwrap().and_utc();
    let events: Vec<Value> = (0..6)
        .map(|i| {
            let mut e = json!({"name": "pageview", "domain": "dummy.site",
                "url": format!("https://dummy.site/{}?utm_medium=social&utm_source=twitter", ["docs", "pricing", "blog/a"][i % 3]),
                "ip": format!("198.51.100.{i}"), "user_agent": format!("Mozilla/5.0 Compat/{i}"),
                "timestamp": (noon + chrono::Duration::minutes(i as i64)).to_rfc3339()});
            if i % 2 == 0 {
                e["name"] = json!("Signup");
                e["props"] = json!({"is_customer": if i == 0 { "true" } else { "false" }});
            }
            e
        })
        .collect();
    let r = c.post(format!("{}/api/events", server.url)).bearer_auth(&key).json(&events).send().await.unwrap();
    assert_eq!(r.status(), 202);
    let v2 = |body: Value| {
        let (c, url, key) = (c.clone(), server.url.clone(), key.clone());
        async move { call(&c, Method::POST, format!("{url}/api/v2/query"), &key, Some(body)).await }
    };
    let counted = eventually(Duration::from_secs(20), || async {
        v2(json!({"site_id": "dummy.site", "metrics": ["events"], "date_range": "7d"})).await.1["results"][0]["metrics"]
            [0]
            == 6
    })
    .await;
    assert!(counted, "the six events arrive");

    // The request bodies of Plausible's Stats API v2 documentation, verbatim.
    let examples = [
        (r#"{"site_id": "dummy.site", "metrics": ["visitors"], "date_range": "7d"}"#, 1, 0),
        (r#"{"site_id": "dummy.site", "metrics": ["visitors", "events"], "date_range": "7d"}"#, 2, 0),
        (r#"{"site_id": "dummy.site", "metrics": ["visitors"], "date_range": ["2024-08-01", "2024-08-15"]}"#, 1, 0),
        (
            r#"{"site_id": "dummy.site", "metrics": ["visitors", "pageviews", "bounce_rate"], "date_range": "7d",
                "filters": [["is_not", "visit:country_name", [""]]], "dimensions": ["visit:country_name", "visit:city_name"]}"#,
            3,
            2,
        ),
        (
            r#"{"site_id": "dummy.site", "metrics": ["visitors"], "date_range": "7d",
                "dimensions": ["time:day", "event:props:is_customer"], "order_by": [["time:day", "asc"], ["event:props:is_customer", "desc"]]}"#,
            1,
            2,
        ),
        (
            r#"{"site_id": "dummy.site", "metrics": ["visitors"], "date_range": "7d",
                "filters": [["contains", "event:page", ["/docs", "/pricing"]], ["is", "visit:country_name", ["Estonia", "United States of America"]]]}"#,
            1,
            0,
        ),
        (
            r#"{"site_id": "dummy.site", "metrics": ["visitors"], "date_range": "7d",
                "filters": [["contains", "event:page", ["blog"], {"case_sensitive": false}]]}"#,
            1,
            0,
        ),
        (
            r#"{"site_id": "dummy.site", "metrics": ["visitors", "events", "pageviews"], "date_range": "7d",
                "dimensions": ["visit:utm_medium", "visit:utm_source"], "include": { "total_rows": true }, "pagination": { "limit": 3, "offset": 1 }}"#,
            3,
            2,
        ),
        (
            r#"{"site_id": "dummy.site", "metrics": ["visitors"], "date_range": "day", "dimensions": ["time:hour"], "include": {"time_labels": true}}"#,
            1,
            1,
        ),
        (
            r#"{"site_id": "dummy.site", "metrics": ["visitors", "events"], "date_range": "7d",
                "filters": [["is", "visit:os", ["GNU/Linux", "Mac"]]], "dimensions": ["time:day"]}"#,
            2,
            1,
        ),
        (
            r#"{"site_id": "dummy.site", "metrics": ["visitors", "events", "pageviews"], "date_range": "7d", "dimensions": ["visit:utm_medium", "visit:utm_source"]}"#,
            3,
            2,
        ),
    ];
    for (body, metrics, dimensions) in examples {
        let (s, v) = v2(serde_json::from_str(body).unwrap()).await;
        assert_eq!(s, 200, "{body} -> {v}");
        assert_v2_shape(&v, metrics, dimensions);
    }
    // A few answers checked, not just shapes.
    let (_, v) = v2(json!({"site_id": "dummy.site", "metrics": ["visitors"], "date_range": "7d",
        "dimensions": ["time:day", "event:props:is_customer"], "order_by": [["time:day", "asc"], ["event:props:is_customer", "desc"]]}))
    .await;
    let day = noon.date_naive().to_string();
    assert_eq!(
        v["results"],
        json!([{"metrics": [1], "dimensions": [day, "true"]}, {"metrics": [2], "dimensions": [day, "false"]}])
    );
    let (_, v) =
        v2(json!({"site_id": "dummy.site", "metrics": ["visitors", "events", "pageviews"], "date_range": "7d",
        "dimensions": ["visit:utm_medium", "visit:utm_source"], "include": {"total_rows": true}}))
        .await;
    assert_eq!(v["results"], json!([{"metrics": [6, 6, 3], "dimensions": ["social", "twitter"]}]));
    assert_eq!(v["meta"]["total_rows"], 1);
    let (_, v) = v2(json!({"site_id": "dummy.site", "metrics": ["visitors"], "date_range": "day", "dimensions": ["time:hour"], "include": {"time_labels": true}})).await;
    assert_eq!(v["meta"]["time_labels"].as_array().unwrap().len(), 24);

    // Stats API v1, as its documentation calls it.
    for (path, check) in [
        ("realtime/visitors?site_id=dummy.site", json!(0)),
        ("aggregate?site_id=dummy.site&period=6mo&metrics=visitors,pageviews,bounce_rate,visit_duration", Value::Null),
        ("aggregate?site_id=dummy.site&period=7d&metrics=visitors,pageviews&compare=previous_period", Value::Null),
        ("timeseries?site_id=dummy.site&period=7d", Value::Null),
        (
            "breakdown?site_id=dummy.site&period=7d&property=visit:source&metrics=visitors,bounce_rate&limit=5",
            Value::Null,
        ),
        (
            "breakdown?site_id=dummy.site&period=7d&property=event:page&filters=visit:utm_source%3D%3Dtwitter",
            Value::Null,
        ),
    ] {
        let (s, v) = call(&c, Method::GET, format!("{}/api/v1/stats/{path}", server.url), &key, None).await;
        assert_eq!(s, 200, "{path} -> {v}");
        if !check.is_null() {
            assert_eq!(v, check, "{path}");
        }
    }
    let (_, v) = call(
        &c,
        Method::GET,
        format!(
            "{}/api/v1/stats/aggregate?site_id=dummy.site&period=7d&metrics=visitors,pageviews&compare=previous_period",
            server.url
        ),
        &key,
        None,
    )
    .await;
    assert_eq!(v["results"]["visitors"], json!({"value": 6, "comparison_value": 0, "change": 100}));
    assert_eq!(v["results"]["pageviews"]["value"], 3);
    let (_, v) = call(
        &c,
        Method::GET,
        format!("{}/api/v1/stats/timeseries?site_id=dummy.site&period=7d", server.url),
        &key,
        None,
    )
    .await;
    let days = v["results"].as_array().unwrap();
    assert_eq!(days.len(), 7, "every day of the period, with zeros: {v}");
    assert_eq!(days[6], json!({"date": day, "visitors": 6}));
    let (_, v) = call(&c, Method::GET, format!("{}/api/v1/stats/breakdown?site_id=dummy.site&period=7d&property=event:page&filters=visit:utm_source%3D%3Dtwitter", server.url), &key, None).await;
    let pages: Vec<&str> = v["results"].as_array().unwrap().iter().map(|r| r["page"].as_str().unwrap()).collect();
    assert_eq!(pages, vec!["/blog/a", "/docs", "/pricing"], "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revenue_goals_sum_the_revenue_sent_in_their_currency() {
    let dir = temp_dir("revenue");
    cli(&dir, &["site", "add", "shop.test"]);
    let admin = create_key_with(&dir, "admin", &["--scope", "sites:admin", "--scope", "stats:read"]);
    let server = Server::start(&dir, &[]);
    let c = client();
    let url = |p: &str| format!("{}{p}", server.url);
    let goal = |name: &str, currency: Option<&str>| json!({"site_id": "shop.test", "goal_type": "event", "event_name": name, "currency": currency});
    // A bad currency is refused before any goal is made.
    let (s, v) = call(&c, Method::PUT, url("/api/v1/sites/goals"), &admin, Some(goal("Buy", Some("euro")))).await;
    assert_eq!(s, 400, "{v}");
    assert!(error_of(&v).contains("not a currency code"), "{v}");
    let (s, v) = call(&c, Method::PUT, url("/api/v1/sites/goals"), &admin, Some(goal("Buy", Some("eur")))).await;
    assert_eq!((s, &v["currency"]), (200, &json!("EUR")), "{v}");
    let (s, _) = call(&c, Method::PUT, url("/api/v1/sites/goals"), &admin, Some(goal("Signup", None))).await;
    assert_eq!(s, 200);
    cli(&dir, &["goal", "add", "shop.test", "--event", "Tip", "--currency", "USD"]);

    // Three buyers in euros (one pays twice), one in dollars (left out of a euro goal), one tip.
    let events = [
        ("a", "Buy", Some(("EUR", "10.50"))),
        ("a", "Buy", Some(("EUR", "4.50"))),
        ("b", "Buy", Some(("EUR", "30"))),
        ("c", "Buy", Some(("USD", "99"))),
        ("d", "Signup", None),
        ("e", "Tip", Some(("USD", "2"))),
    ];
    for (who, name, revenue) in events {
        let mut body = json!({"n": name, "u": "https://shop.test/checkout", "d": "shop.test"});
        if let Some((currency, amount)) = revenue {
            body["$"] = json!({"currency": currency, "amount": amount});
        }
        let r = c
            .post(url("/api/event"))
            .header("user-agent", format!("Mozilla/5.0 (X11; Linux x86_64) Firefox/125.0 visitor-{who}"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
    }
    let query = json!({
        "site_id": "shop.test", "metrics": ["visitors", "events", "total_revenue", "average_revenue"],
        "date_range": "day", "dimensions": ["event:goal"], "order_by": [["visitors", "desc"]],
    });
    let want = json!([
        {"dimensions": ["Buy"], "metrics": [3, 4, {"value": 45.0, "currency": "EUR"}, {"value": 15.0, "currency": "EUR"}]},
        {"dimensions": ["Signup"], "metrics": [1, 1, null, null]},
        {"dimensions": ["Tip"], "metrics": [1, 1, {"value": 2.0, "currency": "USD"}, {"value": 2.0, "currency": "USD"}]},
    ]);
    let arrived = eventually(Duration::from_secs(10), || async {
        call(&c, Method::POST, url("/api/v2/query"), &admin, Some(query.clone())).await.1["results"] == want
    })
    .await;
    let (_, got) = call(&c, Method::POST, url("/api/v2/query"), &admin, Some(query)).await;
    assert!(arrived, "revenue by goal: {}", got["results"]);

    // Filtered by one revenue goal: its total; by goals of two currencies: a clear 400.
    let one = json!({"site_id": "shop.test", "metrics": ["total_revenue"], "date_range": "day",
        "filters": [["is", "event:goal", ["Buy"]]]});
    let (s, v) = call(&c, Method::POST, url("/api/v2/query"), &admin, Some(one)).await;
    assert_eq!((s, &v["results"][0]["metrics"][0]), (200, &json!({"value": 45.0, "currency": "EUR"})), "{v}");
    let mixed = json!({"site_id": "shop.test", "metrics": ["total_revenue"], "date_range": "day",
        "filters": [["is", "event:goal", ["Buy", "Tip"]]]});
    let (s, v) = call(&c, Method::POST, url("/api/v2/query"), &admin, Some(mixed)).await;
    assert_eq!(s, 400);
    assert!(error_of(&v).contains("different currencies"), "{v}");
    let no_goal = json!({"site_id": "shop.test", "metrics": ["total_revenue"], "date_range": "day"});
    let (s, v) = call(&c, Method::POST, url("/api/v2/query"), &admin, Some(no_goal)).await;
    assert!(s == 400 && error_of(&v).contains("needs an `event:goal`"), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn annotations_and_segments_are_kept_through_the_api_and_segments_filter_queries() {
    let dir = temp_dir("notesapi");
    cli(&dir, &["site", "add", "n.test"]);
    let admin = create_key_with(&dir, "admin", &["--scope", "sites:admin", "--scope", "stats:read"]);
    let reader = create_key(&dir, "reader");
    assert!(add_user(&dir, "ann@example.com", "ann password 1").0);
    let server = Server::start(&dir, &[]);
    let c = client();
    let url = |p: &str| format!("{}/api/v1/sites/n.test{p}", server.url);

    // Annotations: added by date, listed by range, bad input refused with the reason.
    let (s, deploy) =
        call(&c, Method::POST, url("/annotations"), &admin, Some(json!({"date": "2026-03-02", "text": " Deploy v2 "})))
            .await;
    assert_eq!((s, &deploy["date"], &deploy["text"]), (201, &json!("2026-03-02"), &json!("Deploy v2")));
    call(&c, Method::POST, url("/annotations"), &admin, Some(json!({"date": "2026-04-01", "text": "Campaign"}))).await;
    let (_, march) = call(&c, Method::GET, url("/annotations?from=2026-03-01&to=2026-03-31"), &reader, None).await;
    assert_eq!(march["annotations"].as_array().unwrap().len(), 1, "{march}");
    for (body, msg) in [
        (json!({"date": "2026-02-30", "text": "x"}), "date: `2026-02-30` is not a date"),
        (json!({"date": "1969-12-31", "text": "x"}), "is not between 1970 and 2199"),
        (json!({"date": "2026-03-01", "text": ""}), "1 to 300 characters"),
        (json!({"date": "2026-03-01", "text": "x".repeat(301)}), "1 to 300 characters"),
        (json!({"date": "2026-03-01", "text": "two\nlines"}), "on one line"),
        (json!({"text": "no date"}), "`date` is required"),
    ] {
        let (s, v) = call(&c, Method::POST, url("/annotations"), &admin, Some(body.clone())).await;
        assert!(s == 400 && error_of(&v).contains(msg), "{body}: {s} {v}");
    }
    let (s, _) =
        call(&c, Method::POST, url("/annotations"), &reader, Some(json!({"date": "2026-03-01", "text": "x"}))).await;
    assert_eq!(s, 403, "a stats:read key cannot annotate");
    let gone = url(&format!("/annotations/{}", deploy["id"]));
    assert_eq!(call(&c, Method::DELETE, gone.clone(), &admin, None).await.0, 200);
    assert_eq!(call(&c, Method::DELETE, gone, &admin, None).await.0, 404);
    let (_, all) = call(&c, Method::GET, url("/annotations"), &reader, None).await;
    assert_eq!(all["annotations"][0]["text"], "Campaign");

    // Two visits: one from Google, one from Bing.
    for (ua, referrer) in [("A", "https://www.google.com/"), ("B", "https://www.bing.com/")] {
        let event = json!({"name": "pageview", "url": "https://n.test/", "domain": "n.test", "referrer": referrer});
        let r =
            c.post(format!("{}/api/event", server.url)).header("user-agent", format!("{BROWSER_UA} {ua}")).json(&event);
        assert_eq!(r.send().await.unwrap().status(), 202);
    }
    let visitors = |filters: Value| {
        let body = json!({"site_id": "n.test", "metrics": ["visitors"], "date_range": "day", "filters": filters});
        let c = c.clone();
        let (u, k) = (format!("{}/api/v2/query", server.url), reader.clone());
        async move { call(&c, Method::POST, u, &k, Some(body)).await }
    };
    assert!(
        eventually(Duration::from_secs(10), || async { visitors(json!([])).await.1["results"][0]["metrics"][0] == 2 })
            .await
    );

    // Segments: a key's are shared; a query names one by id and gets what its filters give.
    let google = json!([["is", "visit:source", ["Google"]]]);
    let (s, seg) =
        call(&c, Method::POST, url("/segments"), &admin, Some(json!({"name": "Google", "filters": google}))).await;
    assert_eq!((s, &seg["shared"]), (201, &json!(true)), "{seg}");
    let direct = visitors(google.clone()).await.1["results"][0]["metrics"][0].clone();
    let named = visitors(json!([["is", "segment", [seg["id"]]]])).await.1["results"][0]["metrics"][0].clone();
    assert_eq!((direct, named), (json!(1), json!(1)));
    let (_, listed) = call(&c, Method::GET, url("/segments"), &admin, None).await;
    assert_eq!(listed["segments"].as_array().unwrap().len(), 1);
    for (body, msg) in [
        (json!({"name": "Bad", "filters": [["is", "visit:nope", ["x"]]]}), "unknown dimension"),
        (json!({"name": "Nested", "filters": [["is", "segment", [seg["id"]]]]}), "cannot include another segment"),
        (json!({"name": "Empty", "filters": []}), "non-empty list"),
        (json!({"name": "", "filters": google}), "1 to 100 characters"),
        (json!({"name": "Mine", "filters": google, "shared": false}), "an API key has no user"),
    ] {
        let (s, v) = call(&c, Method::POST, url("/segments"), &admin, Some(body.clone())).await;
        assert!(s == 400 && error_of(&v).contains(msg), "{body}: {s} {v}");
    }
    assert_eq!(
        call(&c, Method::POST, url("/segments"), &reader, Some(json!({"name": "R", "filters": google}))).await.0,
        403
    );
    // A user's own segment is theirs: a key neither sees nor names it.
    let own = cli(
        &dir,
        &["segment", "add", "n.test", "Ann's", r#"[["is","visit:source",["Bing"]]]"#, "--owner", "ann@example.com"],
    );
    let own_id: u64 = own.split_whitespace().nth(1).unwrap().parse().unwrap();
    let (_, listed) = call(&c, Method::GET, url("/segments"), &admin, None).await;
    assert_eq!(listed["segments"].as_array().unwrap().len(), 1, "{listed}");
    let (s, v) = visitors(json!([["is", "segment", [own_id]]])).await;
    assert!(s == 400 && error_of(&v).contains("is not a segment of this site"), "{s} {v}");
    assert_eq!(call(&c, Method::DELETE, url(&format!("/segments/{own_id}")), &admin, None).await.0, 404);
    assert_eq!(call(&c, Method::DELETE, url(&format!("/segments/{}", seg["id"])), &admin, None).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sites_privacy_page_says_what_the_running_configuration_does() {
    let dir = temp_dir("privacy");
    cli(&dir, &["site", "add", "p.test"]);
    cli(&dir, &["site", "retention", "p.test", "6"]);
    let server = Server::start(&dir, &["--keep-query-params", "q,page", "--queue-retention", "10m"]);
    let c = client();
    let page = c.get(format!("{}/privacy/p.test", server.url)).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let page = page.text().await.unwrap();
    for said in [
        "how p.test counts visits",
        "deletes it 10 minutes after the visit",
        "<code>q</code>, <code>page</code>",
        "kept for 6 months, then deleted",
        "<code>visit:source</code>",
        "<code>event:page</code>",
    ] {
        assert!(page.contains(said), "the privacy page does not say `{said}`");
    }
    let missing = c.get(format!("{}/privacy/nope.test", server.url)).send().await.unwrap();
    assert_eq!(missing.status(), 404);
}
