//! Dashboard security over real HTTP against the real binary: cookie flags, CSRF and
//! cross-site refusals, roles, sign-in and second-factor rate limits, logout everywhere, shared
//! links and deleting a site with its data.

mod common;

use common::*;
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, SET_COOKIE};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::Duration;

/// A cookie jar over a client that does not follow redirects, so each answer can be checked.
struct Browser {
    c: reqwest::Client,
    url: String,
    cookies: HashMap<String, String>,
    /// The raw `Set-Cookie` lines of the last answer.
    set: Vec<String>,
}

impl Browser {
    fn new(url: &str) -> Self {
        let c = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        Browser { c, url: url.to_owned(), cookies: HashMap::new(), set: vec![] }
    }

    fn cookie_header(&self) -> String {
        self.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ")
    }

    fn keep(&mut self, headers: &HeaderMap) {
        self.set = headers.get_all(SET_COOKIE).iter().map(|v| v.to_str().unwrap().to_owned()).collect();
        for line in &self.set {
            let (k, v) = line.split(';').next().unwrap().split_once('=').unwrap();
            if v.is_empty() {
                self.cookies.remove(k)
            } else {
                self.cookies.insert(k.into(), v.into())
            };
        }
    }

    async fn get(&mut self, path: &str) -> (StatusCode, HeaderMap, String) {
        let r = self.c.get(format!("{}{path}", self.url)).header("cookie", self.cookie_header()).send().await.unwrap();
        let (status, headers) = (r.status(), r.headers().clone());
        self.keep(&headers);
        (status, headers, r.text().await.unwrap())
    }

    fn csrf(&self) -> String {
        self.cookies.get("plumb_csrf").cloned().unwrap_or_default()
    }

    /// Posts a form with this browser's CSRF token (unless `fields` sets `csrf` itself).
    async fn post(
        &mut self,
        path: &str,
        fields: &[(&str, &str)],
        extra: &[(&str, &str)],
    ) -> (StatusCode, HeaderMap, String) {
        let csrf = self.csrf();
        let mut form: Vec<(&str, &str)> = fields.to_vec();
        if !fields.iter().any(|(k, _)| *k == "csrf") {
            form.push(("csrf", &csrf));
        }
        let mut req = self.c.post(format!("{}{path}", self.url)).header("cookie", self.cookie_header()).form(&form);
        for (k, v) in extra {
            req = req.header(*k, *v);
        }
        let r = req.send().await.unwrap();
        let (status, headers) = (r.status(), r.headers().clone());
        self.keep(&headers);
        (status, headers, r.text().await.unwrap())
    }

    /// A Stats/Sites API call with the session cookie (and the CSRF header if `csrf`).
    async fn api(&self, method: reqwest::Method, path: &str, body: Value, csrf: bool) -> (StatusCode, Value) {
        let mut req =
            self.c.request(method, format!("{}{path}", self.url)).header("cookie", self.cookie_header()).json(&body);
        if csrf {
            req = req.header("x-plumb-csrf", self.csrf());
        }
        let r = req.send().await.unwrap();
        (r.status(), r.json().await.unwrap_or(Value::Null))
    }

    /// A Stats API query as a shared link (slug header, plus whatever cookies this browser has).
    async fn share_query(&self, slug: &str, site: &str) -> StatusCode {
        let r = self.c.post(format!("{}/api/v2/query", self.url)).header("cookie", self.cookie_header());
        r.header("x-plumb-share", slug).json(&query(site)).send().await.unwrap().status()
    }

    async fn sign_in(&mut self, email: &str, password: &str) -> (StatusCode, HeaderMap, String) {
        self.get("/login").await;
        self.post("/login", &[("email", email), ("password", password), ("next", "/sites")], &[]).await
    }
}

fn location(h: &HeaderMap) -> &str {
    h.get("location").map(|v| v.to_str().unwrap()).unwrap_or_default()
}

fn query(site: &str) -> Value {
    json!({"site_id": site, "metrics": ["visitors"], "date_range": "day"})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_have_safe_cookies_and_forged_posts_are_refused() {
    let dir = temp_dir("dash-csrf");
    assert!(add_user(&dir, "owner@example.com", "owner password 1").0);
    let server = Server::start(&dir, &[]);
    let mut b = Browser::new(&server.url);

    let (status, _, _) = b.get("/login").await;
    assert_eq!(status, 200);
    let csrf_cookie = b.set.iter().find(|c| c.starts_with("plumb_csrf=")).expect("a CSRF cookie").clone();
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(csrf_cookie.contains(flag), "{csrf_cookie} lacks {flag}");
    }
    let (status, headers, _) =
        b.post("/login", &[("email", "owner@example.com"), ("password", "owner password 1")], &[]).await;
    assert_eq!((status, location(&headers)), (StatusCode::SEE_OTHER, "/sites"));
    let session = b.set.iter().find(|c| c.starts_with("plumb_session=")).expect("a session cookie").clone();
    for flag in ["HttpOnly", "SameSite=Lax", "Path=/", "Max-Age=2592000"] {
        assert!(session.contains(flag), "{session} lacks {flag}");
    }
    assert!(!session.contains("Secure"), "plain HTTP on loopback: no Secure flag ({session})");
    // Behind a TLS proxy the cookie is Secure.
    let mut tls = Browser::new(&server.url);
    tls.get("/login").await;
    tls.post(
        "/login",
        &[("email", "owner@example.com"), ("password", "owner password 1")],
        &[("x-forwarded-proto", "https")],
    )
    .await;
    assert!(tls.set.iter().any(|c| c.starts_with("plumb_session=") && c.contains("; Secure")), "{:?}", tls.set);

    // Cross-site attempts to add a site, each refused with 403 and nothing created.
    type Fields<'a> = &'a [(&'a str, &'a str)];
    let forged: [(Fields, Fields, &str); 4] = [
        (&[("domain", "evil1.test"), ("csrf", "")], &[], "no token"),
        (
            &[("domain", "evil2.test"), ("csrf", "0000000000000000000000000000000000000000000000000000000000000000")],
            &[],
            "wrong token",
        ),
        (&[("domain", "evil3.test")], &[("origin", "https://evil.example")], "foreign Origin"),
        (&[("domain", "evil4.test")], &[("sec-fetch-site", "cross-site")], "cross-site fetch"),
    ];
    for (fields, headers, what) in forged {
        let (status, _, body) = b.post("/sites/new", fields, headers).await;
        assert_eq!(status, 403, "{what}: {body}");
        assert!(body.contains("Form refused"), "{what}: {body}");
    }
    let (status, headers, _) = b.post("/sites/new", &[("domain", "shop.test"), ("timezone", "UTC")], &[]).await;
    assert_eq!((status, location(&headers)), (StatusCode::SEE_OTHER, "/sites/shop.test/snippet"));
    let (_, sites) = b.api(reqwest::Method::GET, "/api/v1/sites", Value::Null, false).await;
    let domains: Vec<&str> = sites["sites"].as_array().unwrap().iter().map(|s| s["domain"].as_str().unwrap()).collect();
    assert_eq!(domains, ["shop.test"], "no forged site was created");

    // Cookie-authenticated API writes need the CSRF header too.
    let goal = json!({"site_id": "shop.test", "goal_type": "event", "event_name": "Signup"});
    let (status, body) = b.api(reqwest::Method::PUT, "/api/v1/sites/goals", goal.clone(), false).await;
    assert_eq!(status, 403, "{body}");
    assert!(body["error"].as_str().unwrap().contains("CSRF"), "{body}");
    let (status, _) = b.api(reqwest::Method::PUT, "/api/v1/sites/goals", goal, true).await;
    assert_eq!(status, 200);

    // Pages may not be framed and run no inline script.
    let (_, headers, _) = b.get("/sites/shop.test").await;
    assert_eq!(headers["x-frame-options"], "DENY");
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("frame-ancestors 'none'") && csp.contains("script-src 'self'"), "{csp}");

    // Logging out everywhere ends the other browser's session too.
    assert_eq!(tls.api(reqwest::Method::POST, "/api/v2/query", query("shop.test"), false).await.0, 200);
    let (status, headers, _) = b.post("/account/logout-everywhere", &[], &[]).await;
    assert_eq!((status, location(&headers)), (StatusCode::SEE_OTHER, "/login"));
    assert_eq!(tls.api(reqwest::Method::POST, "/api/v2/query", query("shop.test"), false).await.0, 401);
    let (status, headers, _) = tls.get("/sites").await;
    assert_eq!((status, location(&headers)), (StatusCode::SEE_OTHER, "/login?next=%2Fsites"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewers_read_but_cannot_change_settings() {
    let dir = temp_dir("dash-roles");
    assert!(add_user(&dir, "owner@example.com", "owner password 1").0);
    cli(&dir, &["site", "add", "shop.test"]);
    cli(&dir, &["site", "add", "other.test"]);
    let printed = cli(
        &dir,
        &[
            "invite",
            "shop.test",
            "--email",
            "viewer@example.com",
            "--role",
            "viewer",
            "--public-url",
            "http://plumb.example",
        ],
    );
    let link = printed.lines().last().unwrap().trim();
    let token_path = link.strip_prefix("http://plumb.example").expect(link).to_owned();
    let server = Server::start(&dir, &[]);

    let mut v = Browser::new(&server.url);
    let (status, _, page) = v.get(&token_path).await;
    assert!(status == 200 && page.contains("shop.test") && page.contains("viewer@example.com"), "{page}");
    let (status, headers, _) = v.post(&token_path, &[("password", "viewer password 1")], &[]).await;
    assert_eq!((status, location(&headers)), (StatusCode::SEE_OTHER, "/sites/shop.test"));
    // The invite is used up.
    let mut late = Browser::new(&server.url);
    assert_eq!(late.get(&token_path).await.0, 404);

    assert_eq!(v.get("/sites/shop.test").await.0, 200);
    assert_eq!(v.api(reqwest::Method::POST, "/api/v2/query", query("shop.test"), false).await.0, 200);
    let (status, _, page) = v.get("/sites/shop.test/settings").await;
    assert!(status == 403 && page.contains("needs the admin role"), "{status} {page}");
    for (path, fields) in [
        ("/sites/shop.test/goals", vec![("kind", "event"), ("value", "Signup")]),
        ("/sites/shop.test/shares", vec![("name", "Mine")]),
        ("/sites/shop.test/invites", vec![("email", "x@example.com"), ("role", "viewer")]),
        ("/sites/shop.test/settings", vec![("timezone", "Asia/Tokyo")]),
        ("/sites/shop.test/delete", vec![("confirm", "shop.test")]),
    ] {
        let (status, _, _) = v.post(path, &fields, &[]).await;
        assert_eq!(status, 403, "a viewer posting to {path}");
    }
    let goal = json!({"site_id": "shop.test", "goal_type": "event", "event_name": "Signup"});
    let (status, body) = v.api(reqwest::Method::PUT, "/api/v1/sites/goals", goal, true).await;
    assert_eq!(status, 403, "{body}");
    let (status, _) = v.api(reqwest::Method::DELETE, "/api/v1/sites/shop.test", Value::Null, true).await;
    assert_eq!(status, 403);
    // Another site is not even visible.
    assert_eq!(v.get("/sites/other.test").await.0, 404);
    assert_eq!(v.api(reqwest::Method::POST, "/api/v2/query", query("other.test"), false).await.0, 403);
    let goals = cli(&dir, &["goal", "list", "shop.test"]);
    assert!(!goals.contains("Signup"), "no goal was added: {goals}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_passwords_and_codes_are_refused_and_rate_limited() {
    let dir = temp_dir("dash-limits");
    assert!(add_user(&dir, "owner@example.com", "owner password 1").0);
    assert!(add_user(&dir, "second@example.com", "second password").0);
    let server = Server::start(&dir, &[]);

    let mut b = Browser::new(&server.url);
    for attempt in 1..=5 {
        let (status, _, page) = b.sign_in("owner@example.com", "wrong password!").await;
        assert_eq!(status, 401, "attempt {attempt}");
        assert!(page.contains("Wrong e-mail or password"));
        assert!(!b.cookies.contains_key("plumb_session"));
    }
    // Out of attempts: even the right password waits.
    let (status, headers, page) = b.sign_in("owner@example.com", "owner password 1").await;
    assert_eq!(status, 429, "{page}");
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((60..=180).contains(&retry), "Retry-After {retry}");
    assert!(!b.cookies.contains_key("plumb_session"));

    // Two-factor: enrol the second user.
    let mut s = Browser::new(&server.url);
    assert_eq!(s.sign_in("second@example.com", "second password").await.0, 303);
    // Setting up a second factor needs the password again.
    let (status, _, _) = s.post("/account/2fa/start", &[("password", "not the password")], &[]).await;
    assert_eq!(status, 401);
    let (_, _, page) = s.post("/account/2fa/start", &[("password", "second password")], &[]).await;
    assert!(page.contains("<p class=\"secret\"><code>"), "{page}");
    let step = |offset: i64| chrono::Utc::now().timestamp() / 30 + offset;
    let (status, _, page) = s.post("/account/2fa/enable", &[("code", "000000")], &[]).await;
    assert!(status == 400 && page.contains("not valid"), "{status}");
    let (_, _, page) = s.post("/account/2fa/start", &[("password", "second password")], &[]).await;
    let key = page.split("<p class=\"secret\"><code>").nth(1).unwrap().split('<').next().unwrap().to_owned();
    let secret = data_encoding::BASE32_NOPAD.decode(key.as_bytes()).unwrap();
    let code = |step: i64| format!("{:06}", plumb_meta::accounts::totp::code_at(&secret, step));
    // The step the enrolment spends: later codes are counted from it, so a 30 s boundary passing
    // during the test changes nothing.
    let enrolled = step(0);
    let (status, _, page) = s.post("/account/2fa/enable", &[("code", &code(enrolled))], &[]).await;
    assert!(status == 200 && page.contains("Recovery codes"), "{status} {page}");
    let recovery = page.split("<li><code>").nth(1).unwrap().split('<').next().unwrap().to_owned();

    // Signing in now takes the password and then a code; until then the session opens nothing.
    let mut t = Browser::new(&server.url);
    let (status, headers, _) = t.sign_in("second@example.com", "second password").await;
    assert_eq!((status, location(&headers)), (StatusCode::SEE_OTHER, "/login/2fa?next=%2Fsites"));
    assert_eq!(t.get("/sites").await.0, 303, "a half-signed-in session sees no pages");
    assert_eq!(t.api(reqwest::Method::GET, "/api/v1/sites", Value::Null, false).await.0, 401);
    let (status, _, page) = t.post("/login/2fa", &[("code", "123456")], &[]).await;
    assert!(status == 401 && page.contains("not valid"), "{status}");
    // The enrolment code was spent; the next step's code (one step of drift allowed) works once.
    let (status, _, _) = t.post("/login/2fa", &[("code", &code(enrolled))], &[]).await;
    assert_eq!(status, 401, "a used code is refused");
    let (status, headers, _) = t.post("/login/2fa", &[("code", &code(enrolled + 1)), ("next", "/account")], &[]).await;
    assert_eq!((status, location(&headers)), (StatusCode::SEE_OTHER, "/account"));
    assert_eq!(t.get("/sites").await.0, 200);

    // A recovery code signs in once.
    let mut r = Browser::new(&server.url);
    r.sign_in("second@example.com", "second password").await;
    assert_eq!(r.post("/login/2fa", &[("code", &recovery)], &[]).await.0, 303);
    let mut r2 = Browser::new(&server.url);
    r2.sign_in("second@example.com", "second password").await;
    assert_eq!(r2.post("/login/2fa", &[("code", &recovery)], &[]).await.0, 401, "recovery codes work once");
    // Wrong codes run out too: three failures above (a wrong code, a spent code, a spent recovery
    // code), two more, then even a right code waits.
    for _ in 0..2 {
        assert_eq!(r2.post("/login/2fa", &[("code", "000000")], &[]).await.0, 401);
    }
    let (status, headers, _) = r2.post("/login/2fa", &[("code", &code(step(1)))], &[]).await;
    assert_eq!(status, 429);
    assert!(headers.contains_key("retry-after"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_links_need_their_password_and_deleting_a_site_deletes_its_data() {
    let dir = temp_dir("dash-share");
    assert!(add_user(&dir, "owner@example.com", "owner password 1").0);
    cli(&dir, &["site", "add", "shop.test"]);
    cli(&dir, &["site", "add", "other.test"]);
    let server = Server::start(&dir, &[]);
    let mut b = Browser::new(&server.url);
    b.sign_in("owner@example.com", "owner password 1").await;

    // A visit, counted.
    let c = client();
    let r = c
        .post(format!("{}/api/event", server.url))
        .header("user-agent", "Mozilla/5.0 (X11; Linux x86_64) Chrome/124.0 Safari/537.36")
        .json(&json!({"n": "pageview", "u": "https://shop.test/", "d": "shop.test"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let counted = eventually(Duration::from_secs(10), || async {
        let (_, body) = b.api(reqwest::Method::POST, "/api/v2/query", query("shop.test"), false).await;
        body["results"][0]["metrics"][0] == 1
    })
    .await;
    assert!(counted, "the visit is counted");

    b.post("/sites/shop.test/shares", &[("name", "Investors"), ("password", "investor password")], &[]).await;
    b.post("/sites/shop.test/shares", &[("name", "Public")], &[]).await;
    let (_, _, page) = b.get("/sites/shop.test/settings").await;
    let slugs: Vec<String> = page
        .split("/share/")
        .skip(1)
        .map(|s| s.chars().take_while(char::is_ascii_hexdigit).collect::<String>())
        .filter(|s| s.len() == 32)
        .collect();
    let (private, public) = (slugs[0].clone(), slugs.iter().find(|s| **s != slugs[0]).unwrap().clone());

    let mut stranger = Browser::new(&server.url);
    assert_eq!(stranger.share_query(&public, "shop.test").await, 200, "a public link reads its site");
    assert_eq!(stranger.share_query(&public, "other.test").await, 403, "and no other");
    assert_eq!(stranger.share_query(&private, "shop.test").await, 401, "a protected link needs its password");
    let (status, _, page) = stranger.get(&format!("/share/{private}")).await;
    assert!(status == 401 && page.contains("protected by a password") && !page.contains("id=\"stats\""));
    let (status, _, _) = stranger.post(&format!("/share/{private}"), &[("password", "not the password")], &[]).await;
    assert_eq!(status, 401);
    let (status, headers, _) =
        stranger.post(&format!("/share/{private}"), &[("password", "investor password")], &[]).await;
    assert_eq!((status, location(&headers)), (StatusCode::SEE_OTHER, format!("/share/{private}").as_str()));
    assert_eq!(stranger.share_query(&private, "shop.test").await, 200, "with its cookie, the link reads");
    let (status, headers, page) = stranger.get(&format!("/share/{private}?embed=true")).await;
    assert!(status == 200 && page.contains("id=\"stats\"") && !page.contains("class=\"top\""));
    assert!(!headers.contains_key("x-frame-options"), "embed mode may be framed");
    // CSV through the link.
    let csv = stranger
        .c
        .get(format!(
            "{}/sites/shop.test/export.csv?share={private}&q={}",
            server.url,
            url_escape(r#"{"metrics":["visitors"],"dimensions":["visit:source"],"date_range":"day"}"#)
        ))
        .header("cookie", stranger.cookie_header())
        .send()
        .await
        .unwrap();
    assert_eq!(csv.status(), 200);
    assert!(
        csv.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment; filename=\"shop.test_visit_source_")
    );
    assert_eq!(csv.text().await.unwrap(), "source,visitors\r\n,1\r\n");
    // Export parameters that are not JSON are named in a 400.
    for path in ["export.csv?q=not-json", "export.zip?filters=%5B", "export.csv?q=%5B%5D"] {
        let r = stranger
            .c
            .get(format!("{}/sites/shop.test/{path}&share={private}", server.url))
            .header("cookie", stranger.cookie_header())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{path}");
        let e = r.text().await.unwrap();
        assert!(e.contains("is not valid JSON") || e.contains("must be a v2 query object"), "{path}: {e}");
    }
    // Revoked: gone.
    b.post(&format!("/sites/shop.test/shares/{private}/delete"), &[], &[]).await;
    assert_eq!(stranger.share_query(&private, "shop.test").await, 404);

    // Deleting needs the domain typed; then the site, its links and its data are gone.
    let (status, _, _) = b.post("/sites/shop.test/delete", &[("confirm", "shop")], &[]).await;
    assert_eq!(status, 400);
    let (status, headers, _) = b.post("/sites/shop.test/delete", &[("confirm", "shop.test")], &[]).await;
    assert_eq!((status, location(&headers)), (StatusCode::SEE_OTHER, "/sites"));
    assert_eq!(stranger.share_query(&public, "shop.test").await, 404);
    let (status, body) = b.api(reqwest::Method::POST, "/api/v2/query", query("shop.test"), false).await;
    assert_eq!(status, 400, "{body}");
}

fn url_escape(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_run_creates_the_owner_once() {
    let dir = temp_dir("dash-setup");
    let server = Server::start(&dir, &[]);
    let mut b = Browser::new(&server.url);
    let (status, headers, _) = b.get("/").await;
    assert_eq!((status, location(&headers)), (StatusCode::SEE_OTHER, "/setup"));
    let (status, headers, _) = b.get("/login").await;
    assert_eq!((status, location(&headers)), (StatusCode::SEE_OTHER, "/setup"));
    b.get("/setup").await;
    let (status, _, page) =
        b.post("/setup", &[("email", "not an address"), ("password", "owner password 1")], &[]).await;
    assert!(status == 400 && page.contains("is not an e-mail address"), "{status} {page}");
    let (status, headers, _) =
        b.post("/setup", &[("email", "owner@example.com"), ("password", "owner password 1")], &[]).await;
    assert_eq!((status, location(&headers)), (StatusCode::SEE_OTHER, "/sites/new"));
    assert_eq!(b.get("/sites").await.0, 200, "signed in as the new owner");
    let mut other = Browser::new(&server.url);
    let (status, headers, _) = other.get("/setup").await;
    assert_eq!((status, location(&headers)), (StatusCode::SEE_OTHER, "/login"), "set-up is over");
    other.get("/login").await;
    let (status, _, page) =
        other.post("/setup", &[("email", "intruder@example.com"), ("password", "intruder password")], &[]).await;
    assert!(status == 403 && page.contains("Already set up"), "a second owner cannot be created: {status}");
    assert!(cli(&dir, &["user", "list"]).lines().count() == 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_link_can_hide_rows_of_few_visitors() {
    let dir = temp_dir("dash-hide");
    assert!(add_user(&dir, "owner@example.com", "owner password 1").0);
    assert!(add_user(&dir, "other@example.com", "other password 1").0);
    cli(&dir, &["site", "add", "few.test"]);
    let server = Server::start(&dir, &[]);
    let mut b = Browser::new(&server.url);
    b.sign_in("owner@example.com", "owner password 1").await;
    for (bad, msg) in [("abc", "is not a number of visitors"), ("1001", "at most 1000 visitors")] {
        let (status, _, page) = b.post("/sites/few.test/shares", &[("name", "Bad"), ("min_visitors", bad)], &[]).await;
        assert!(status == StatusCode::BAD_REQUEST && page.contains(msg), "{bad}: {status} {page}");
    }
    let (status, _, _) = b.post("/sites/few.test/shares", &[("name", "Board"), ("min_visitors", "3")], &[]).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (_, _, settings) = b.get("/sites/few.test/settings").await;
    assert!(settings.contains("hides rows under 3 visitors"), "the settings say so");
    let slug: String = settings.split("/share/").nth(1).unwrap().chars().take_while(char::is_ascii_hexdigit).collect();

    // Three visitors from Google, one from Bing, each a page view.
    let c = client();
    for (i, referrer) in
        ["https://www.google.com/", "https://www.google.com/", "https://www.google.com/", "https://www.bing.com/"]
            .iter()
            .enumerate()
    {
        let event = json!({"name": "pageview", "url": "https://few.test/", "domain": "few.test", "referrer": referrer});
        let r =
            c.post(format!("{}/api/event", server.url)).header("user-agent", format!("{BROWSER_UA} v{i}")).json(&event);
        assert_eq!(r.send().await.unwrap().status(), 202);
    }
    let ask = |body: Value, link: bool| {
        let mut r = c.post(format!("{}/api/v2/query", server.url)).json(&body);
        r = if link { r.header("x-plumb-share", &slug) } else { r.header("cookie", b.cookie_header()) };
        async move {
            let r = r.send().await.unwrap();
            (r.status(), r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let total = json!({"site_id": "few.test", "metrics": ["visitors"], "date_range": "day"});
    assert!(
        eventually(Duration::from_secs(10), || async {
            ask(total.clone(), true).await.1["results"][0]["metrics"][0] == 4
        })
        .await,
        "the link sees the site's total"
    );
    let by_source =
        json!({"site_id": "few.test", "metrics": ["pageviews"], "date_range": "day", "dimensions": ["visit:source"]});
    let (status, body) = ask(by_source.clone(), true).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["results"], json!([{"dimensions": ["Google"], "metrics": [3]}]), "Bing's one visitor is hidden");
    assert_eq!(body["meta"]["rows_hidden_below_visitors"], 3);
    let (_, body) = ask(by_source, false).await;
    assert_eq!(body["results"].as_array().unwrap().len(), 2, "the owner sees every row: {body}");
    let bing = json!({"site_id": "few.test", "metrics": ["visitors"], "date_range": "day",
                      "filters": [["is", "visit:source", ["Bing"]]]});
    assert_eq!(ask(bing, true).await.1["results"], json!([]), "a filter cannot single one visitor out");
    let not_google = json!({"site_id": "few.test", "metrics": ["visitors"], "date_range": "day",
                            "filters": [["is_not", "visit:source", ["Google"]]]});
    let (status, body) = ask(not_google, true).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "negations would tell small groups apart: {body}");
    // Rows kept on the current period's numbers are dropped for a small comparison period.
    let compared = json!({"site_id": "few.test", "metrics": ["visitors"], "date_range": "day",
        "dimensions": ["visit:source"], "include": {"total_rows": true,
        "comparisons": {"mode": "custom", "date_range": ["2020-01-01", "2020-01-01"]}}});
    let (_, body) = ask(compared, true).await;
    assert_eq!(body["results"], json!([]), "Google had no visitor on the comparison day: {body}");
    assert!(body["meta"].get("total_rows").is_none(), "no count of hidden rows: {body}");
    // Signed in without a role on the site, the link is still what lets one read it.
    let mut other = Browser::new(&server.url);
    other.sign_in("other@example.com", "other password 1").await;
    let by_source =
        json!({"site_id": "few.test", "metrics": ["visitors"], "date_range": "day", "dimensions": ["visit:source"]});
    let r = c
        .post(format!("{}/api/v2/query", server.url))
        .header("cookie", other.cookie_header())
        .header("x-plumb-share", &slug);
    let body: Value = r.json(&by_source).send().await.unwrap().json().await.unwrap();
    assert_eq!(
        body["results"].as_array().map(Vec::len),
        Some(1),
        "a session without a role does not lift the hiding: {body}"
    );
    let segments = c.get(format!("{}/api/v1/sites/few.test/segments", server.url)).header("x-plumb-share", &slug);
    assert_eq!(segments.send().await.unwrap().status(), StatusCode::FORBIDDEN, "links do not read segments");
    let v1 = c.get(format!("{}/api/v1/stats/aggregate?site_id=few.test", server.url)).header("x-plumb-share", &slug);
    assert_eq!(v1.send().await.unwrap().status(), StatusCode::FORBIDDEN, "v1 has no hiding: refused");
    let zip = c.get(format!("{}/sites/few.test/export.zip?share={slug}", server.url)).header("x-plumb-share", &slug);
    assert_eq!(zip.send().await.unwrap().status(), StatusCode::FORBIDDEN, "no export of every breakdown");
}
