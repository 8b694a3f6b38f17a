//! The collector's public inputs: every bad request gets its precise 4xx and JSON error, good
//! events next to bad ones are unaffected, and the compatibility endpoints work.

mod common;

use common::*;
use serde_json::{Value, json};
use std::time::Duration;

struct Case {
    what: &'static str,
    path: &'static str,
    body: String,
    auth: Option<&'static str>,
    status: u16,
    error: &'static str,
}

fn case(what: &'static str, body: impl Into<String>, status: u16, error: &'static str) -> Case {
    Case { what, path: "/api/event", body: body.into(), auth: None, status, error }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_precise_error_and_good_input_is_counted() {
    let dir = temp_dir("ingestion");
    cli(&dir, &["site", "add", "shop.test", "--timezone", "Europe/Berlin"]);
    cli(&dir, &["site", "add", "blog.test"]);
    let key = create_key(&dir, "server");
    let server = Server::start(&dir, &[]);
    let c = client();
    let props31: serde_json::Map<String, Value> = (0..31).map(|i| (format!("k{i}"), json!("v"))).collect();

    let cases = vec![
        case("malformed JSON", "{\"n\": \"pageview\",", 400, "not a valid event"),
        case("not an object", "[1,2]", 400, "not a valid event"),
        case("missing name", json!({"u": "https://shop.test/", "d": "shop.test"}).to_string(), 400, "`name` is required"),
        case("missing url", json!({"n": "pageview", "d": "shop.test"}).to_string(), 400, "`url` is required"),
        case("bad url", json!({"n": "pageview", "u": "shop.test/x", "d": "shop.test"}).to_string(), 400, "not a valid absolute URL"),
        case("bad domain", json!({"n": "pageview", "u": "https://shop.test/", "d": "shop test"}).to_string(), 400, "not a valid domain"),
        case("unknown domain", json!({"n": "pageview", "u": "https://nope.test/", "d": "nope.test"}).to_string(), 400, "`nope.test` is not registered"),
        case("too many props", json!({"n": "Buy", "u": "https://shop.test/", "d": "shop.test", "p": props31}).to_string(), 400, "at most 30"),
        case("props not an object", json!({"n": "Buy", "u": "https://shop.test/", "d": "shop.test", "p": [1]}).to_string(), 400, "`props` must be an object"),
        case("bad revenue", json!({"n": "Buy", "u": "https://shop.test/", "d": "shop.test", "$": {"currency": "EUR", "amount": "lots"}}).to_string(), 400, "`revenue.amount`"),
        case("long name", json!({"n": "x".repeat(121), "u": "https://shop.test/", "d": "shop.test"}).to_string(), 400, "longer than 120"),
        case("bad scroll depth", json!({"n": "engagement", "u": "https://shop.test/", "d": "shop.test", "sd": 250}).to_string(), 400, "`sd`"),
        case("timestamp without key", json!({"n": "pageview", "u": "https://shop.test/", "d": "shop.test", "timestamp": 1700000000}).to_string(), 400, "`timestamp` may only be set"),
        case("ip without key", json!({"n": "pageview", "u": "https://shop.test/", "d": "shop.test", "ip": "1.2.3.4"}).to_string(), 400, "`ip` may only be set"),
        case("user_agent without key", json!({"n": "pageview", "u": "https://shop.test/", "d": "shop.test", "user_agent": "x"}).to_string(), 400, "`user_agent` may only be set"),
        case("oversized body", format!("{{\"n\":\"pageview\",\"u\":\"https://shop.test/\",\"d\":\"shop.test\",\"p\":{{\"k\":\"{}\"}}}}", "x".repeat(9000)), 413, "larger than 8192 bytes"),
        Case { auth: Some("Bearer plumb_not_a_key"), ..case("wrong key", json!({"n": "pageview", "u": "https://shop.test/", "d": "shop.test"}).to_string(), 401, "invalid or revoked") },
        Case { auth: Some("Basic abc"), ..case("wrong scheme", json!({"n": "pageview", "u": "https://shop.test/", "d": "shop.test"}).to_string(), 401, "Bearer") },
        Case { auth: Some("KEY"), ..case("future timestamp", json!({"n": "pageview", "u": "https://shop.test/", "d": "shop.test", "timestamp": "2999-01-01T00:00:00Z"}).to_string(), 400, "in the future") },
        Case { auth: Some("KEY"), ..case("bad ip", json!({"n": "pageview", "u": "https://shop.test/", "d": "shop.test", "ip": "999.1.1.1"}).to_string(), 400, "not an IP address") },
        Case { path: "/api/events", ..case("batch not an array", json!({"n": "pageview"}).to_string(), 400, "JSON array") },
        Case { path: "/api/events", ..case("batch too large", json!(vec![json!({}); 1001]).to_string(), 413, "at most 1000") },
        Case { path: "/api/events", ..case("batch all invalid", json!([{"n": "pageview"}]).to_string(), 400, "no event in the batch is valid") },
        Case { path: "/api/events", ..case("batch over 1 MB", format!("[{}]", "\"x\",".repeat(300_000) + "1"), 413, "larger than 1048576 bytes") },
    ];
    for case in &cases {
        let mut req =
            c.post(format!("{}{}", server.url, case.path)).header("content-type", "text/plain").body(case.body.clone());
        if let Some(auth) = case.auth {
            let auth = if auth == "KEY" { format!("Bearer {key}") } else { auth.to_owned() };
            req = req.header("authorization", auth);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        assert_eq!(status, case.status, "{}: {body}", case.what);
        let msg = body["error"].as_str().unwrap_or_default();
        assert!(msg.contains(case.error), "{}: error `{msg}` should mention `{}`", case.what, case.error);
    }

    // Good events: long and short names, JSON content type, comma-separated domains, a mixed
    // batch, and Fathom's pixel.
    let ok = |r: reqwest::Response| async move {
        let s = r.status();
        assert_eq!(s, 202, "{}", r.text().await.unwrap());
    };
    ok(c.post(format!("{}/api/event", server.url))
        .json(&json!({"name": "pageview", "url": "https://shop.test/a", "domain": "shop.test,blog.test"}))
        .send()
        .await
        .unwrap())
    .await;
    ok(c.post(format!("{}/api/event", server.url)).body(json!({"n": "Buy", "u": "https://shop.test/a", "d": "shop.test", "p": {"plan": "pro"}, "$": {"currency": "EUR", "amount": "9.90"}}).to_string()).send().await.unwrap()).await;
    let r = c
        .post(format!("{}/api/events", server.url))
        .body(json!([{"n": "pageview", "u": "https://shop.test/b", "d": "shop.test"}, {"n": "pageview"}, {"n": "pageview", "u": "https://shop.test/c", "d": "nope.test"}]).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let answer: Value = r.json().await.unwrap();
    assert_eq!(answer["accepted"], 1);
    assert_eq!(
        answer["rejected"].as_array().unwrap().iter().map(|e| e["index"].as_i64().unwrap()).collect::<Vec<_>>(),
        [1, 2]
    );
    let r = c
        .get(format!("{}/collect?p=%2Fpixel&h=https%3A%2F%2Fshop.test&r=&sid=shop.test", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "image/gif");
    // Fathom's own site code in `sid`: the site comes from the page's host.
    let r =
        c.get(format!("{}/collect?p=%2Fpixel2&h=https%3A%2F%2Fshop.test&sid=CDBUGS", server.url)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r =
        c.get(format!("{}/collect?p=pixel&h=https%3A%2F%2Fshop.test&sid=shop.test", server.url)).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let r = c.get(format!("{}/collect?p=%2F&sid=shop.test", server.url)).send().await.unwrap();
    assert_eq!(r.status(), 400);

    // shop.test: pageviews /a, /b, /pixel, /pixel2; one custom event. blog.test got /a too.
    let counted = eventually(Duration::from_secs(10), || async {
        aggregate(&c, &server.url, &key, "shop.test", &["pageviews", "events"], json!("day")).await
            == [json!(4), json!(5)]
            && aggregate(&c, &server.url, &key, "blog.test", &["pageviews"], json!("day")).await == [json!(1)]
    })
    .await;
    assert!(counted, "valid events were not all counted");

    // A site added while the server runs takes events at once.
    cli(&dir, &["site", "add", "late.test"]);
    let r = c
        .post(format!("{}/api/event", server.url))
        .body(json!({"n": "pageview", "u": "https://late.test/"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());

    let health: Value = c.get(format!("{}/api/health", server.url)).send().await.unwrap().json().await.unwrap();
    assert_eq!(health["status"], "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_api_requires_a_key_and_names_bad_fields() {
    let dir = temp_dir("statsapi");
    cli(&dir, &["site", "add", "stats.test"]);
    cli(&dir, &["site", "add", "nogoals.test"]);
    cli(&dir, &["goal", "add", "stats.test", "--event", "Signup"]);
    for (args, msg) in [
        (&["goal", "add", "stats.test", "--page", "blog"][..], "must start with `/`"),
        (&["goal", "add", "nope.test", "--event", "Signup"][..], "site `nope.test` not found"),
        (&["goal", "add", "stats.test", "--event", "pageview"][..], "not `pageview`"),
        (&["goal", "add", "stats.test"][..], "--page"),
        (&["goal", "remove", "stats.test", "99"][..], "goal 99"),
        (&["goal", "add", "stats.test", "--event", "Buy", "--currency", "euro"][..], "not a currency code"),
        (
            &["goal", "add", "stats.test", "--page", "/x", "--currency", "EUR"][..],
            "only custom-event goals carry revenue",
        ),
        (&["invite", "stats.test", "--email", "a@example.com", "--role", "root"][..], "is not a role"),
        (&["invite", "nope.test", "--email", "a@example.com"][..], "site `nope.test` not found"),
        (&["invite", "stats.test", "--email", "not-an-address"][..], "is not an e-mail address"),
        (&["invite", "stats.test"][..], "--email"),
        (
            &["member", "add", "stats.test", "--email", "nobody@example.com", "--role", "viewer"][..],
            "user `nobody@example.com` not found",
        ),
        (&["serve", "--query-timeout", "0s"][..], "query timeout"),
        (&["serve", "--key-event-rate-limit", "0"][..], "--key-event-rate-limit"),
        (&["block", "add", "stats.test", "port", "80"][..], "is not a rule kind"),
        (&["block", "add", "stats.test", "ip", "10.0.0.0/33"][..], "is not an IP address or CIDR range"),
        (&["block", "add", "stats.test", "country", "Germany"][..], "two-letter country code"),
        (&["block", "remove", "stats.test", "5"][..], "rule 5"),
        (&["annotation", "add", "stats.test", "2026-02-30", "x"][..], "`2026-02-30` is not a date"),
        (&["annotation", "add", "stats.test", "0001-01-01", "x"][..], "is not between 1970 and 2199"),
        (&["annotation", "add", "stats.test", "2026-03-01", " "][..], "1 to 300 characters"),
        (&["segment", "add", "stats.test", "S", r#"[["is","visit:nope",["x"]]]"#][..], "unknown dimension"),
        (&["segment", "add", "stats.test", "S", "not json"][..], "filters are not JSON"),
        (
            &["segment", "add", "stats.test", "S", r#"[["is","visit:source",["x"]]]"#, "--owner", "nobody@example.com"]
                [..],
            "nobody@example.com",
        ),
        (
            &["funnel", "add", "stats.test", "F", "Visit /nope", "Signup"][..],
            "`Visit /nope` is not a goal of this site",
        ),
        (&["funnel", "add", "stats.test", "F"][..], "<STEPS>"),
        (&["funnel", "add", "stats.test", "F", "Signup"][..], "a funnel has 2 to 8 steps, not 1"),
        (&["funnel", "remove", "stats.test", "7"][..], "funnel 7"),
        // Serving options are checked before anything starts.
        (&["serve", "--ip-rate-limit", "0"][..], "--ip-rate-limit"),
        (&["serve", "--visitor-rate-limit", "0"][..], "--visitor-rate-limit"),
        (&["serve", "--keep-www", "yes"][..], "unexpected argument"),
        (&["serve", "--max-connections", "0"][..], "--max-connections"),
        (&["serve", "--public-url", "ftp://stats.example.com"][..], "is not an http(s) address"),
        (&["serve", "--script-path", "/app.js"][..], "must be in a directory"),
        (&["serve", "--event-path", "/e?x"][..], "`?` is not allowed"),
        (&["serve", "--event-path", "/api/v2/query"][..], "Plumb already serves `/api/v2/query` there"),
        (&["serve", "--event-path", "/js/script.js"][..], "must not be in the script's directory /js"),
        (
            &["serve", "--script-path", "/s/app.js", "--event-path", "/js/x.js"][..],
            "Plumb already serves `/js/{file}` there",
        ),
        (&["serve", "--event-path", "/share/x"][..], "Plumb already serves `/share/{slug}` there"),
        (&["serve", "--script-path", "/sites/app.js"][..], "Plumb already serves `/sites"),
        (&["serve", "--script-path", "/assets/app.js"][..], "Plumb already serves `/assets/{name}` there"),
        // Each role takes only its own options.
        (&["work", "--ip-rate-limit", "5"][..], "unexpected argument"),
        (&["collect", "--public-url", "https://stats.example.com"][..], "unexpected argument"),
        (&["work", "--collector-url", "collect.example.com"][..], "is not an http(s) address"),
    ] {
        let out = std::process::Command::new(BIN).arg("--data-dir").arg(&dir).args(args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(msg), "plumb {args:?}: {err}");
    }
    let key = create_key(&dir, "reader");
    let server = Server::start(&dir, &[]);
    let c = client();
    let q = |body: Value, auth: Option<String>| {
        let mut r = c.post(format!("{}/api/v2/query", server.url)).json(&body);
        if let Some(a) = auth {
            r = r.bearer_auth(a);
        }
        r.send()
    };
    let good = json!({"site_id": "stats.test", "metrics": ["visitors"], "date_range": "day"});
    assert_eq!(q(good.clone(), None).await.unwrap().status(), 401);
    assert_eq!(q(good.clone(), Some("plumb_nope".into())).await.unwrap().status(), 401);
    let r = q(good.clone(), Some(key.clone())).await.unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["results"], json!([{"metrics": [0], "dimensions": []}]));
    assert_eq!(body["query"]["site_id"], "stats.test");
    for (body, msg) in [
        (json!({"site_id": "other.test", "metrics": ["visitors"], "date_range": "day"}), "`other.test` is not a site"),
        (json!({"site_id": "stats.test", "metrics": ["clicks"], "date_range": "day"}), "unknown metric `clicks`"),
        (json!({"site_id": "stats.test", "metrics": [], "date_range": "day"}), "at least one metric"),
        (
            json!({"site_id": "stats.test", "metrics": ["visitors"], "date_range": "fortnight"}),
            "`fortnight` is not a known period",
        ),
        (
            json!({"site_id": "stats.test", "metrics": ["visitors"], "date_range": ["2024-02-30", "2024-03-01"]}),
            "is not a date",
        ),
        (json!({"site_id": "stats.test", "metrics": ["visitors"]}), "missing field `date_range`"),
        (
            json!({"site_id": "stats.test", "metrics": ["visit_duration"], "date_range": "day", "dimensions": ["event:page"]}),
            "`visit_duration` is not valid here",
        ),
        (
            json!({"site_id": "stats.test", "metrics": ["visits"], "date_range": "day", "dimensions": ["event:name"]}),
            "`visits` is not valid here",
        ),
        (
            json!({"site_id": "stats.test", "metrics": ["time_on_page"], "date_range": "day"}),
            "needs an `event:page` dimension or filter",
        ),
        (
            json!({"site_id": "stats.test", "metrics": ["percentage"], "date_range": "day"}),
            "`percentage` is not valid here",
        ),
        (
            json!({"site_id": "stats.test", "metrics": ["visitors"], "date_range": "day", "dimensions": ["visit:shoe_size"]}),
            "unknown dimension `visit:shoe_size`",
        ),
        (
            json!({"site_id": "stats.test", "metrics": ["visitors"], "date_range": "day", "dimensions": ["time:day", "time:hour"]}),
            "at most one time dimension",
        ),
        (
            json!({"site_id": "stats.test", "metrics": ["visitors"], "date_range": "day", "dimensions": ["visit:source", "visit:source"]}),
            "is repeated",
        ),
        (
            json!({"site_id": "stats.test", "metrics": ["visitors"], "date_range": "day", "order_by": [["pageviews", "desc"]]}),
            "`pageviews` is not one of the query's",
        ),
        (
            json!({"site_id": "stats.test", "metrics": ["visitors"], "date_range": "day", "order_by": [["visitors", "up"]]}),
            "direction `up`",
        ),
        (
            json!({"site_id": "stats.test", "metrics": ["visitors"], "date_range": "day", "pagination": {"limit": 0}}),
            "limit must be 1 to 10000",
        ),
        (
            json!({"site_id": "stats.test", "metrics": ["visitors"], "date_range": "day", "filters": [["is", "visit:source"]]}),
            "is not a filter like",
        ),
        (
            json!({"site_id": "stats.test", "metrics": ["visitors"], "date_range": "day", "filters": [["resembles", "visit:source", ["x"]]]}),
            "unknown operator `resembles`",
        ),
        (
            json!({"site_id": "stats.test", "metrics": ["visitors"], "date_range": "day", "filters": [["matches", "event:page", ["(?!x)"]]]}),
            "not a valid regular expression",
        ),
        (
            json!({"site_id": "stats.test", "metrics": ["visitors"], "date_range": "day", "filters": [["is", "visit:source", [true]]]}),
            "must be a string",
        ),
        (
            json!({"site_id": "stats.test", "metrics": ["visitors"], "date_range": "day", "include": {"comparisons": {"mode": "yesterday"}}}),
            "`yesterday` is not previous_period",
        ),
        (
            json!({"site_id": "stats.test", "metrics": ["visitors"], "date_range": "day", "include": {"time_labels": true}}),
            "needs a time dimension",
        ),
        (
            json!({"site_id": "stats.test", "metrics": ["visitors"], "date_range": "day", "include": {"imports_too": true}}),
            "unknown field `imports_too`",
        ),
        (
            json!({"site_id": "stats.test", "metrics": ["visits"], "date_range": "day", "dimensions": ["event:props:plan"]}),
            "cannot be combined with `event:props`",
        ),
        (
            json!({"site_id": "stats.test", "metrics": ["visitors"], "date_range": "day", "dimensions": ["event:props:"]}),
            "unknown dimension `event:props:`",
        ),
        (
            json!({"site_id": "stats.test", "metrics": ["visitors"], "date_range": "day", "filters": [["is", "event:props:plan", ["(none)"]]]}),
            "`(none)` cannot be filtered for",
        ),
        (
            json!({"site_id": "stats.test", "metrics": ["conversion_rate"], "date_range": "day"}),
            "needs an `event:goal` dimension or filter",
        ),
        (
            json!({"site_id": "stats.test", "metrics": ["visits"], "date_range": "day", "dimensions": ["event:goal"]}),
            "goals are counted by visitors, events, conversion rate and revenue",
        ),
        (
            json!({"site_id": "nogoals.test", "metrics": ["visitors"], "date_range": "day", "dimensions": ["event:goal"]}),
            "`event:goal` needs goals; this site has none",
        ),
        (
            json!({"site_id": "stats.test", "metrics": ["visitors"], "date_range": "day", "filters": [["is", "event:goal", ["Nope"]]]}),
            "`Nope` is not a goal of this site",
        ),
        (
            json!({"site_id": "stats.test", "metrics": ["visitors"], "date_range": "day", "filters": [["is_not", "event:goal", ["Signup"]]]}),
            "can only be filtered with is or contains",
        ),
    ] {
        let r = q(body, Some(key.clone())).await.unwrap();
        assert_eq!(r.status(), 400);
        let e: Value = r.json().await.unwrap();
        assert!(e["error"].as_str().unwrap().contains(msg), "{e} should mention {msg}");
    }
    let r = c
        .get(format!("{}/api/v1/stats/realtime/visitors?site_id=stats.test", server.url))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap(), json!(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_scoped_and_rate_limited() {
    let dir = temp_dir("keyscopes");
    cli(&dir, &["site", "add", "one.test"]);
    cli(&dir, &["site", "add", "two.test"]);
    let reader = cli(&dir, &["key", "create", "--name", "reader", "--scope", "stats:read", "--site", "one.test"]);
    let reader = reader.lines().last().unwrap().to_owned();
    let writer = cli(&dir, &["key", "create", "--name", "writer", "--scope", "events:write"]);
    let writer = writer.lines().last().unwrap().to_owned();
    let listed = cli(&dir, &["key", "list"]);
    assert!(listed.contains("reader") && listed.contains("stats:read"), "{listed}");
    let out = std::process::Command::new(BIN)
        .arg("--data-dir")
        .arg(&dir)
        .args(["key", "create", "--name", "x", "--scope", "stats:write"])
        .output()
        .unwrap();
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("not a scope"));

    let server = Server::start(&dir, &["--key-rate-limit", "4"]);
    let c = client();
    let query = |key: &str, site: &str| {
        c.post(format!("{}/api/v2/query", server.url))
            .bearer_auth(key)
            .json(&json!({"site_id": site, "metrics": ["visitors"], "date_range": "day"}))
            .send()
    };
    let error = |r: reqwest::Response| async move {
        (r.status().as_u16(), r.json::<Value>().await.unwrap()["error"].as_str().unwrap().to_owned())
    };
    assert_eq!(query(&reader, "one.test").await.unwrap().status(), 200);
    let (status, msg) = error(query(&reader, "two.test").await.unwrap()).await;
    assert_eq!((status, msg.contains("lacks the `read` permission on `two.test`")), (403, true), "{msg}");
    let (status, msg) = error(query(&writer, "one.test").await.unwrap()).await;
    assert_eq!((status, msg.contains("lacks the `read` permission")), (403, true), "{msg}");

    // Server-side fields need events:write on the site.
    let send = |key: &str| {
        c.post(format!("{}/api/event", server.url))
            .bearer_auth(key)
            .json(&json!({"n": "pageview", "u": "https://one.test/", "d": "one.test", "ip": "192.0.2.1"}))
            .send()
    };
    assert_eq!(send(&writer).await.unwrap().status(), 202);
    let (status, msg) = error(send(&reader).await.unwrap()).await;
    assert_eq!((status, msg.contains("needs events:write")), (403, true), "{msg}");

    // Four requests a minute per key: the reader has used two; two more pass, then 429.
    assert_eq!(query(&reader, "one.test").await.unwrap().status(), 200);
    assert_eq!(query(&reader, "one.test").await.unwrap().status(), 200);
    let r = query(&reader, "one.test").await.unwrap();
    assert_eq!(r.status(), 429);
    let retry: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=15).contains(&retry), "Retry-After {retry}");
    assert!(error(r).await.1.contains("over its limit of 4 requests per minute"));
}

#[test]
fn users_are_added_with_a_password_from_stdin_only() {
    let dir = temp_dir("users");
    let add = |email: &str, password: &str| add_user(&dir, email, password);
    let (ok, out) = add("owner@example.com", "a long enough secret");
    assert!(ok && out.contains("added user owner@example.com"), "{out}");
    let (ok, out) = add("owner@example.com", "a long enough secret");
    assert!(!ok && out.contains("already exists"), "{out}");
    let (ok, out) = add("second@example.com", "short");
    assert!(!ok && out.contains("10 to 1024 characters"), "{out}");
    let listed = cli(&dir, &["user", "list"]);
    assert!(listed.contains("owner@example.com") && !listed.contains("second@"), "{listed}");
    // Without --password-stdin the command refuses to run.
    let out = std::process::Command::new(BIN)
        .arg("--data-dir")
        .arg(&dir)
        .args(["user", "add", "--email", "x@example.com"])
        .output()
        .unwrap();
    assert!(!out.status.success());
}
