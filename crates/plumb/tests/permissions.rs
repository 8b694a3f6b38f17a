//! The authorization matrix, over real HTTP against the real binary: every route the server has
//! (the dashboard's, the API's and the collector's, as their own tables list them) × every kind
//! of caller → the status this test expects. What each route needs is written down here, apart
//! from the server's permission table, so the two are checked against each other; a route added
//! without an entry here fails the test.

mod common;

use common::*;
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A kind of caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Who {
    Anonymous,
    PublicLink,
    /// A password-protected link, without the cookie its password gives.
    LockedLink,
    /// The same link with that cookie.
    OpenedLink,
    /// Signed in, with no role on the site.
    NoRole,
    Viewer,
    Admin,
    Owner,
    /// The first account: owner of every site.
    InstanceOwner,
    KeyRead,
    KeyAdmin,
    KeyEvents,
    /// A key with every scope, limited to another site.
    KeyElsewhere,
}

const EVERYONE: [Who; 13] = [
    Who::Anonymous,
    Who::PublicLink,
    Who::LockedLink,
    Who::OpenedLink,
    Who::NoRole,
    Who::Viewer,
    Who::Admin,
    Who::Owner,
    Who::InstanceOwner,
    Who::KeyRead,
    Who::KeyAdmin,
    Who::KeyEvents,
    Who::KeyElsewhere,
];

/// The users behind the signed-in callers (password: `<name> password 1`).
const USERS: [(Who, &str); 5] = [
    (Who::InstanceOwner, "owner"),
    (Who::NoRole, "norole"),
    (Who::Viewer, "viewer"),
    (Who::Admin, "admin"),
    (Who::Owner, "siteowner"),
];

/// What this test expects a route to need.
#[derive(Clone, Copy, Debug)]
enum Need {
    Anyone,
    /// Any valid credential; what it sees is filtered (the sites list).
    AnyCredential,
    SignedIn,
    Read,
    /// One's own things on the site: personal segments.
    Personal,
    Manage,
    Own,
    CreateSite,
    /// Events: anyone as a browser; a key only with `events:write` on the site.
    SendEvents,
}

/// How a route takes credentials.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Style {
    /// Keys, sessions (writes with the CSRF header) and shared links; `401`/`403` when refused.
    Api,
    /// Pages and forms: only the session cookie counts; no session redirects to sign-in, a site
    /// the user has no role on is `404`, a role too low `403`.
    Page,
    /// The collector: browsers, and keys that must be allowed to send for the site.
    Collector,
}

fn may(who: Who, need: Need) -> bool {
    use Who::*;
    match need {
        Need::Anyone => true,
        Need::AnyCredential => !matches!(who, Anonymous | LockedLink),
        Need::SignedIn => matches!(who, NoRole | Viewer | Admin | Owner | InstanceOwner),
        Need::Read => matches!(who, PublicLink | OpenedLink | Viewer | Admin | Owner | InstanceOwner | KeyRead),
        Need::Personal => matches!(who, Viewer | Admin | Owner | InstanceOwner | KeyAdmin),
        Need::Manage => matches!(who, Admin | Owner | InstanceOwner | KeyAdmin),
        Need::Own => matches!(who, Owner | InstanceOwner | KeyAdmin),
        // The sites:admin key is limited to no sites.
        Need::CreateSite => matches!(who, InstanceOwner | KeyAdmin),
        Need::SendEvents => !matches!(who, KeyRead | KeyAdmin | KeyElsewhere),
    }
}

fn is_session(who: Who) -> bool {
    USERS.iter().any(|(w, _)| *w == who)
}

/// What the test sends.
enum Body {
    None,
    Json(Value),
    Form(Vec<(String, String)>),
}

struct Req {
    path: String,
    body: Body,
}

fn req(path: impl Into<String>, body: Body) -> Req {
    Req { path: path.into(), body }
}

fn form(fields: &[(&str, &str)]) -> Body {
    Body::Form(fields.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
}

/// One route, as the test calls it.
struct Case {
    method: &'static str,
    /// The route as the server's table spells it.
    route: &'static str,
    need: Need,
    style: Style,
    /// The status an allowed caller gets.
    ok: fn(Who) -> u16,
    /// The request, made for this caller (resources it uses up are made fresh).
    prepare: fn(&Fixture, Who) -> Req,
    /// Signs callers out (their sessions are made again after it).
    ends_sessions: bool,
}

const SITE: &str = "t.test";

/// The server, and what the callers hold.
struct Fixture {
    server: Server,
    dir: PathBuf,
    c: reqwest::Client,
    /// Cookies per signed-in caller: session and CSRF.
    sessions: HashMap<Who, (String, String)>,
    /// Every caller's CSRF cookie (forms need one, signed in or not).
    csrf: String,
    keys: HashMap<Who, String>,
    public_slug: String,
    locked_slug: String,
    /// The cookie the locked link's password gives.
    opened_cookie: String,
    asset: String,
    n: AtomicUsize,
}

impl Fixture {
    fn next(&self) -> usize {
        self.n.fetch_add(1, Ordering::SeqCst)
    }

    fn cli(&self, args: &[&str]) -> String {
        cli(&self.dir, args)
    }

    /// A new site where the signed-in callers have the roles they have on the test site.
    fn fresh_site(&self) -> String {
        let domain = format!("fresh{}.test", self.next());
        self.cli(&["site", "add", &domain]);
        for (role, user) in [("viewer", "viewer"), ("admin", "admin"), ("owner", "siteowner")] {
            self.cli(&["member", "add", &domain, "--email", &format!("{user}@example.com"), "--role", role]);
        }
        domain
    }

    /// The id the CLI printed second on its line (`goal 7 …`, `rule 3 …`).
    fn created_id(&self, args: &[&str]) -> String {
        self.cli(args).split_whitespace().nth(1).unwrap().to_owned()
    }

    fn goal_id(&self) -> String {
        self.created_id(&["goal", "add", SITE, "--event", &format!("Gone{}", self.next())])
    }

    /// The goals funnels are made of (adding a goal again changes nothing).
    fn funnel_goals(&self) {
        for step in ["Step A", "Step B"] {
            self.cli(&["goal", "add", SITE, "--event", step]);
        }
    }

    fn funnel_id(&self) -> String {
        self.funnel_goals();
        self.created_id(&["funnel", "add", SITE, &format!("funnel {}", self.next()), "Step A", "Step B"])
    }

    /// The one funnel every caller queries (a site holds at most 20).
    fn queried_funnel(&self) -> String {
        let listed = self.cli(&["funnel", "list", SITE]);
        match listed.lines().find(|l| l.split('\t').nth(1) == Some("queried")) {
            Some(line) => line.split('\t').next().unwrap().to_owned(),
            None => {
                self.funnel_goals();
                self.created_id(&["funnel", "add", SITE, "queried", "Step A", "Step B"])
            }
        }
    }

    /// A new site with a report (the CLI adds it without SMTP; this server has none).
    fn report(&self) -> (String, String) {
        let site = self.fresh_site();
        (site.clone(), self.created_id(&["report", "add", &site, "--email", "r@example.com"]))
    }

    /// A new site with an alert (a site holds at most 10): its domain and the alert's id.
    fn alert(&self) -> (String, String) {
        let site = self.fresh_site();
        (site.clone(), self.created_id(&["alert", "add", &site, "--kind", "drop", "--threshold", "60"]))
    }

    /// A new site with a webhook (a site holds at most 5).
    fn webhook(&self) -> (String, String) {
        let site = self.fresh_site();
        (site.clone(), self.created_id(&["webhook", "add", &site, "https://hooks.example.com/plumb"]))
    }

    fn annotation_id(&self) -> String {
        self.created_id(&["annotation", "add", SITE, "2026-01-01", &format!("note {}", self.next())])
    }

    /// A segment the caller may delete: a user's own, or (for a key) a shared one.
    fn segment_id(&self, who: Who) -> String {
        let name = format!("segment {}", self.next());
        let mut args = vec!["segment", "add", SITE, &name, r#"[["is","visit:source",["Google"]]]"#];
        let owner = USERS.iter().find(|(w, _)| *w == who).map(|(_, n)| format!("{n}@example.com"));
        if let Some(email) = &owner {
            args.extend(["--owner", email]);
        }
        self.created_id(&args)
    }

    fn rule_id(&self) -> String {
        self.created_id(&["block", "add", SITE, "path", &format!("/gone{}", self.next())])
    }

    fn invite_token(&self) -> String {
        let email = format!("invited{}@example.com", self.next());
        let out = self.cli(&["invite", SITE, "--email", &email, "--public-url", "http://p.example"]);
        out.lines().last().unwrap().rsplit('/').next().unwrap().to_owned()
    }

    async fn sign_in(&mut self) {
        for (who, name) in USERS {
            let (csrf, _) = csrf_cookie(&self.c, &self.server.url).await;
            let r = self
                .c
                .post(format!("{}/login", self.server.url))
                .header("cookie", format!("plumb_csrf={csrf}"))
                .form(&[
                    ("email", format!("{name}@example.com")),
                    ("password", format!("{name} password 1")),
                    ("csrf", csrf.clone()),
                ])
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 303, "{name} signs in");
            let session = set_cookie(&r, "plumb_session").expect("a session cookie");
            self.sessions.insert(who, (session, csrf));
        }
    }

    /// A shared link of the test site made through the settings form; its slug.
    async fn new_link(&self, password: Option<&str>) -> String {
        let before = self.links().await;
        let name = format!("link{}", self.next());
        let mut fields = vec![("name", name.as_str())];
        if let Some(p) = password {
            fields.push(("password", p));
        }
        let r = self.send(Who::InstanceOwner, Method::POST, &req(format!("/sites/{SITE}/shares"), form(&fields))).await;
        assert_eq!(r.status(), 303, "a link is made");
        self.links().await.into_iter().find(|s| !before.contains(s)).expect("the new link is listed")
    }

    async fn links(&self) -> Vec<String> {
        let page =
            self.send(Who::InstanceOwner, Method::GET, &req(format!("/sites/{SITE}/settings"), Body::None)).await;
        let page = page.text().await.unwrap();
        page.split("/share/")
            .skip(1)
            .map(|s| s.chars().take_while(char::is_ascii_hexdigit).collect::<String>())
            .filter(|s| s.len() == 32)
            .collect()
    }

    /// Sends a request as `who`.
    async fn send(&self, who: Who, method: Method, r: &Req) -> reqwest::Response {
        let mut cookies = vec![format!("plumb_csrf={}", self.csrf)];
        let mut csrf = self.csrf.clone();
        let mut b = self.c.request(method, format!("{}{}", self.server.url, r.path));
        if let Some((session, token)) = self.sessions.get(&who) {
            cookies = vec![format!("plumb_session={session}"), format!("plumb_csrf={token}")];
            csrf = token.clone();
        }
        match who {
            Who::PublicLink => b = b.header("x-plumb-share", &self.public_slug),
            Who::LockedLink => b = b.header("x-plumb-share", &self.locked_slug),
            Who::OpenedLink => {
                b = b.header("x-plumb-share", &self.locked_slug);
                cookies.push(format!("plumb_share={}", self.opened_cookie));
            }
            _ => {}
        }
        if let Some(key) = self.keys.get(&who) {
            b = b.bearer_auth(key);
        }
        b = b.header("cookie", cookies.join("; ")).header("x-plumb-csrf", &csrf);
        b = match &r.body {
            Body::None => b,
            Body::Json(v) => b.json(v),
            Body::Form(fields) => {
                let mut fields = fields.clone();
                fields.push(("csrf".into(), csrf));
                b.form(&fields)
            }
        };
        b.send().await.unwrap()
    }
}

async fn csrf_cookie(c: &reqwest::Client, url: &str) -> (String, String) {
    let r = c.get(format!("{url}/login")).send().await.unwrap();
    let csrf = set_cookie(&r, "plumb_csrf").expect("a CSRF cookie");
    (csrf, r.text().await.unwrap())
}

fn set_cookie(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers().get_all("set-cookie").iter().filter_map(|v| v.to_str().ok()).find_map(|v| {
        let (k, rest) = v.split_once('=')?;
        (k == name).then(|| rest.split(';').next().unwrap_or_default().to_owned())
    })
}

fn ok(status: u16) -> fn(Who) -> u16 {
    match status {
        200 => |_| 200,
        201 => |_| 201,
        202 => |_| 202,
        303 => |_| 303,
        400 => |_| 400,
        403 => |_| 403,
        404 => |_| 404,
        _ => unreachable!("no case expects {status}"),
    }
}

fn cases() -> Vec<Case> {
    let c = |method, route, need, style, ok_status: u16, prepare: fn(&Fixture, Who) -> Req| Case {
        method,
        route,
        need,
        style,
        ok: ok(ok_status),
        prepare,
        ends_sessions: false,
    };
    use Need::*;
    use Style::{Api, Collector, Page};
    vec![
        // The Stats API.
        c("post", "/api/v2/funnel", Read, Api, 200, |f, _| {
            let id: u32 = f.queried_funnel().parse().unwrap();
            req("/api/v2/funnel", Body::Json(json!({"site_id": SITE, "funnel_id": id, "date_range": "day"})))
        }),
        c("post", "/api/v2/query", Read, Api, 200, |_, _| {
            req("/api/v2/query", Body::Json(json!({"site_id": SITE, "metrics": ["visitors"], "date_range": "day"})))
        }),
        c("get", "/api/v1/stats/aggregate", Read, Api, 200, |_, _| {
            req(format!("/api/v1/stats/aggregate?site_id={SITE}"), Body::None)
        }),
        c("get", "/api/v1/stats/timeseries", Read, Api, 200, |_, _| {
            req(format!("/api/v1/stats/timeseries?site_id={SITE}"), Body::None)
        }),
        c("get", "/api/v1/stats/breakdown", Read, Api, 200, |_, _| {
            req(format!("/api/v1/stats/breakdown?site_id={SITE}&property=visit:source"), Body::None)
        }),
        c("get", "/api/v1/stats/realtime/visitors", Read, Api, 200, |_, _| {
            req(format!("/api/v1/stats/realtime/visitors?site_id={SITE}"), Body::None)
        }),
        c("get", "/api/v1/stats/realtime", Read, Api, 200, |_, _| {
            req(format!("/api/v1/stats/realtime?site_id={SITE}"), Body::None)
        }),
        c("get", "/api/v1/stats/realtime/stream", Read, Api, 200, |_, _| {
            req(format!("/api/v1/stats/realtime/stream?site_id={SITE}"), Body::None)
        }),
        // The Sites API.
        c("get", "/api/v1/sites", AnyCredential, Api, 200, |_, _| req("/api/v1/sites", Body::None)),
        c("post", "/api/v1/sites", CreateSite, Api, 200, |f, _| {
            req("/api/v1/sites", Body::Json(json!({"domain": format!("made{}.test", f.next())})))
        }),
        c("get", "/api/v1/sites/goals", Read, Api, 200, |_, _| {
            req(format!("/api/v1/sites/goals?site_id={SITE}"), Body::None)
        }),
        c("put", "/api/v1/sites/goals", Manage, Api, 200, |f, _| {
            let goal = json!({"site_id": SITE, "goal_type": "event", "event_name": format!("Made{}", f.next())});
            req("/api/v1/sites/goals", Body::Json(goal))
        }),
        c("delete", "/api/v1/sites/goals/{goal_id}", Manage, Api, 200, |f, _| {
            req(format!("/api/v1/sites/goals/{}", f.goal_id()), Body::Json(json!({"site_id": SITE})))
        }),
        c("get", "/api/v1/sites/{site_id}", Read, Api, 200, |_, _| req(format!("/api/v1/sites/{SITE}"), Body::None)),
        c("get", "/api/v1/sites/{site_id}/firewall", Manage, Api, 200, |_, _| {
            req(format!("/api/v1/sites/{SITE}/firewall"), Body::None)
        }),
        c("post", "/api/v1/sites/{site_id}/firewall", Manage, Api, 200, |f, _| {
            let rule = json!({"kind": "path", "value": format!("/made{}", f.next())});
            req(format!("/api/v1/sites/{SITE}/firewall"), Body::Json(rule))
        }),
        c("delete", "/api/v1/sites/{site_id}/firewall/{rule_id}", Manage, Api, 200, |f, _| {
            req(format!("/api/v1/sites/{SITE}/firewall/{}", f.rule_id()), Body::None)
        }),
        c("get", "/api/v1/sites/{site_id}/annotations", Read, Api, 200, |_, _| {
            req(format!("/api/v1/sites/{SITE}/annotations"), Body::None)
        }),
        c("post", "/api/v1/sites/{site_id}/annotations", Manage, Api, 201, |f, _| {
            let note = json!({"date": "2026-02-01", "text": format!("made {}", f.next())});
            req(format!("/api/v1/sites/{SITE}/annotations"), Body::Json(note))
        }),
        c("delete", "/api/v1/sites/{site_id}/annotations/{annotation_id}", Manage, Api, 200, |f, _| {
            req(format!("/api/v1/sites/{SITE}/annotations/{}", f.annotation_id()), Body::None)
        }),
        c("get", "/api/v1/sites/{site_id}/funnels", Read, Api, 200, |_, _| {
            req(format!("/api/v1/sites/{SITE}/funnels"), Body::None)
        }),
        c("post", "/api/v1/sites/{site_id}/funnels", Manage, Api, 201, |f, _| {
            f.funnel_goals();
            let funnel = json!({"name": format!("made {}", f.next()), "steps": ["Step A", "Step B"]});
            req(format!("/api/v1/sites/{SITE}/funnels"), Body::Json(funnel))
        }),
        c("delete", "/api/v1/sites/{site_id}/funnels/{funnel_id}", Manage, Api, 200, |f, _| {
            req(format!("/api/v1/sites/{SITE}/funnels/{}", f.funnel_id()), Body::None)
        }),
        c("get", "/api/v1/sites/{site_id}/audit", Own, Api, 200, |_, _| {
            req(format!("/api/v1/sites/{SITE}/audit"), Body::None)
        }),
        c("get", "/api/v1/sites/{site_id}/reports", Manage, Api, 200, |_, _| {
            req(format!("/api/v1/sites/{SITE}/reports"), Body::None)
        }),
        // This server sends no mail: a caller who may is told so.
        c("post", "/api/v1/sites/{site_id}/reports", Manage, Api, 400, |_, _| {
            req(format!("/api/v1/sites/{SITE}/reports"), Body::Json(json!({"email": "a@b.test", "period": "week"})))
        }),
        c("delete", "/api/v1/sites/{site_id}/reports/{report_id}", Manage, Api, 200, |f, _| {
            let (site, id) = f.report();
            req(format!("/api/v1/sites/{site}/reports/{id}"), Body::None)
        }),
        c("post", "/api/v1/sites/{site_id}/reports/{report_id}/send", Manage, Api, 400, |f, _| {
            let (site, id) = f.report();
            req(format!("/api/v1/sites/{site}/reports/{id}/send"), Body::None)
        }),
        c("get", "/api/v1/sites/{site_id}/alerts", Manage, Api, 200, |_, _| {
            req(format!("/api/v1/sites/{SITE}/alerts"), Body::None)
        }),
        c("post", "/api/v1/sites/{site_id}/alerts", Manage, Api, 201, |f, _| {
            let alert = json!({"kind": "spike", "threshold": 100, "cooldown_minutes": 30});
            req(format!("/api/v1/sites/{}/alerts", f.fresh_site()), Body::Json(alert))
        }),
        c("delete", "/api/v1/sites/{site_id}/alerts/{alert_id}", Manage, Api, 200, |f, _| {
            let (site, id) = f.alert();
            req(format!("/api/v1/sites/{site}/alerts/{id}"), Body::None)
        }),
        c("get", "/api/v1/sites/{site_id}/webhooks", Manage, Api, 200, |_, _| {
            req(format!("/api/v1/sites/{SITE}/webhooks"), Body::None)
        }),
        c("post", "/api/v1/sites/{site_id}/webhooks", Manage, Api, 201, |f, _| {
            let hook = json!({"url": "https://hooks.example.com/made", "events": ["alert"]});
            req(format!("/api/v1/sites/{}/webhooks", f.fresh_site()), Body::Json(hook))
        }),
        c("delete", "/api/v1/sites/{site_id}/webhooks/{webhook_id}", Manage, Api, 200, |f, _| {
            let (site, id) = f.webhook();
            req(format!("/api/v1/sites/{site}/webhooks/{id}"), Body::None)
        }),
        c("get", "/api/v1/sites/{site_id}/webhooks/{webhook_id}/deliveries", Manage, Api, 200, |f, _| {
            let (site, id) = f.webhook();
            req(format!("/api/v1/sites/{site}/webhooks/{id}/deliveries"), Body::None)
        }),
        c("get", "/api/v1/sites/{site_id}/segments", Personal, Api, 200, |_, _| {
            req(format!("/api/v1/sites/{SITE}/segments"), Body::None)
        }),
        c("post", "/api/v1/sites/{site_id}/segments", Personal, Api, 201, |f, _| {
            let segment = json!({"name": format!("made {}", f.next()), "filters": [["is", "visit:source", ["Bing"]]]});
            req(format!("/api/v1/sites/{SITE}/segments"), Body::Json(segment))
        }),
        c("delete", "/api/v1/sites/{site_id}/segments/{segment_id}", Personal, Api, 200, |f, who| {
            req(format!("/api/v1/sites/{SITE}/segments/{}", f.segment_id(who)), Body::None)
        }),
        c("get", "/api/v1/sites/{site_id}/security", Read, Api, 200, |_, _| {
            req(format!("/api/v1/sites/{SITE}/security"), Body::None)
        }),
        c("put", "/api/v1/sites/{site_id}", Manage, Api, 200, |_, _| {
            req(format!("/api/v1/sites/{SITE}"), Body::Json(json!({"timezone": "UTC"})))
        }),
        // A new domain is the owner's to give.
        c("put", "/api/v1/sites/{site_id}", Own, Api, 200, |f, _| {
            let site = f.fresh_site();
            req(format!("/api/v1/sites/{site}"), Body::Json(json!({"domain": format!("renamed{}.test", f.next())})))
        }),
        c("delete", "/api/v1/sites/{site_id}", Own, Api, 200, |f, _| {
            req(format!("/api/v1/sites/{}", f.fresh_site()), Body::None)
        }),
        c("get", "/api/openapi.json", Anyone, Api, 200, |_, _| req("/api/openapi.json", Body::None)),
        // The dashboard.
        c("get", "/", Anyone, Page, 303, |_, _| req("/", Body::None)),
        c("get", "/setup", Anyone, Page, 303, |_, _| req("/setup", Body::None)),
        c("post", "/setup", Anyone, Page, 403, |_, _| {
            req("/setup", form(&[("email", "late@example.com"), ("password", "late password 1")]))
        }),
        c("get", "/login", Anyone, Page, 200, |_, _| req("/login", Body::None)),
        c("get", "/privacy/{domain}", Anyone, Page, 200, |_, _| req(format!("/privacy/{SITE}"), Body::None)),
        c("get", "/login/2fa", Anyone, Page, 303, |_, _| req("/login/2fa", Body::None)),
        c("post", "/login/2fa", Anyone, Page, 303, |_, _| req("/login/2fa", form(&[("code", "123456")]))),
        c("get", "/account", SignedIn, Page, 200, |_, _| req("/account", Body::None)),
        c("post", "/account/2fa/start", SignedIn, Page, 200, |_, who| {
            let name = USERS.iter().find(|(w, _)| *w == who).map_or("nobody", |(_, n)| *n);
            req("/account/2fa/start", Body::Form(vec![("password".into(), format!("{name} password 1"))]))
        }),
        c("post", "/account/2fa/enable", SignedIn, Page, 400, |_, _| {
            req("/account/2fa/enable", form(&[("code", "000000")]))
        }),
        c("post", "/account/2fa/disable", SignedIn, Page, 303, |_, who| {
            let name = USERS.iter().find(|(w, _)| *w == who).map_or("nobody", |(_, n)| *n);
            req("/account/2fa/disable", Body::Form(vec![("password".into(), format!("{name} password 1"))]))
        }),
        c("get", "/invite/{token}", Anyone, Page, 200, |f, _| req(format!("/invite/{}", f.invite_token()), Body::None)),
        Case {
            // The invite is for someone else than a signed-in caller (400); others join with it.
            ok: |who| if is_session(who) { 400 } else { 303 },
            ..c("post", "/invite/{token}", Anyone, Page, 303, |f, _| {
                req(format!("/invite/{}", f.invite_token()), form(&[("password", "invited password 1")]))
            })
        },
        c("get", "/sites", SignedIn, Page, 200, |_, _| req("/sites", Body::None)),
        c("get", "/sites/new", CreateSite, Page, 200, |_, _| req("/sites/new", Body::None)),
        c("post", "/sites/new", CreateSite, Page, 303, |f, _| {
            req(
                "/sites/new",
                Body::Form(vec![
                    ("domain".into(), format!("page{}.test", f.next())),
                    ("timezone".into(), "UTC".into()),
                ]),
            )
        }),
        c("get", "/sites/{domain}", Read, Page, 200, |_, _| req(format!("/sites/{SITE}"), Body::None)),
        c("get", "/sites/{domain}/snippet", Manage, Page, 200, |_, _| {
            req(format!("/sites/{SITE}/snippet"), Body::None)
        }),
        c("get", "/sites/{domain}/verify", Read, Page, 200, |_, _| req(format!("/sites/{SITE}/verify"), Body::None)),
        c("get", "/sites/{domain}/settings", Manage, Page, 200, |_, _| {
            req(format!("/sites/{SITE}/settings"), Body::None)
        }),
        c("post", "/sites/{domain}/settings", Manage, Page, 303, |_, _| {
            req(format!("/sites/{SITE}/settings"), form(&[("timezone", "UTC")]))
        }),
        c("post", "/sites/{domain}/goals", Manage, Page, 303, |f, _| {
            let value = format!("Form{}", f.next());
            req(
                format!("/sites/{SITE}/goals"),
                Body::Form(vec![("kind".into(), "event".into()), ("value".into(), value)]),
            )
        }),
        c("post", "/sites/{domain}/goals/{id}/delete", Manage, Page, 303, |f, _| {
            req(format!("/sites/{SITE}/goals/{}/delete", f.goal_id()), form(&[]))
        }),
        c("post", "/sites/{domain}/shares", Manage, Page, 303, |f, _| {
            req(format!("/sites/{SITE}/shares"), Body::Form(vec![("name".into(), format!("Link{}", f.next()))]))
        }),
        // Its slug is made by the test before the request (`prepare` cannot wait).
        c("post", "/sites/{domain}/shares/{slug}/delete", Manage, Page, 303, |_, _| req("", Body::None)),
        c("post", "/sites/{domain}/invites", Manage, Page, 200, |f, _| {
            let email = format!("asked{}@example.com", f.next());
            req(
                format!("/sites/{SITE}/invites"),
                Body::Form(vec![("email".into(), email), ("role".into(), "viewer".into())]),
            )
        }),
        c("post", "/sites/{domain}/firewall", Manage, Page, 303, |f, _| {
            let value = format!("/form{}", f.next());
            req(
                format!("/sites/{SITE}/firewall"),
                Body::Form(vec![("kind".into(), "path".into()), ("value".into(), value)]),
            )
        }),
        c("post", "/sites/{domain}/firewall/{id}/delete", Manage, Page, 303, |f, _| {
            req(format!("/sites/{SITE}/firewall/{}/delete", f.rule_id()), form(&[]))
        }),
        c("post", "/sites/{domain}/members/{user_id}/delete", Own, Page, 303, |f, _| {
            f.cli(&["member", "add", SITE, "--email", "extra@example.com", "--role", "viewer"]);
            let id = f
                .cli(&["user", "list"])
                .lines()
                .find(|l| l.contains("extra@example.com"))
                .unwrap()
                .split('\t')
                .next()
                .unwrap()
                .to_owned();
            req(format!("/sites/{SITE}/members/{id}/delete"), form(&[]))
        }),
        c("post", "/sites/{domain}/retention", Own, Page, 303, |_, _| {
            req(format!("/sites/{SITE}/retention"), form(&[("months", "forever")]))
        }),
        c("post", "/sites/{domain}/delete", Own, Page, 303, |f, _| {
            let site = f.fresh_site();
            req(format!("/sites/{site}/delete"), Body::Form(vec![("confirm".into(), site)]))
        }),
        c("get", "/sites/{domain}/export.csv", Read, Api, 200, |_, _| {
            req(
                format!(
                    "/sites/{SITE}/export.csv?q=%7B%22metrics%22%3A%5B%22visitors%22%5D%2C%22date_range%22%3A%22day%22%7D"
                ),
                Body::None,
            )
        }),
        c("get", "/sites/{domain}/export.zip", Read, Api, 200, |_, _| {
            req(format!("/sites/{SITE}/export.zip"), Body::None)
        }),
        c("get", "/share/{slug}", Anyone, Page, 200, |f, _| req(format!("/share/{}", f.public_slug), Body::None)),
        c("post", "/share/{slug}", Anyone, Page, 303, |f, _| {
            req(format!("/share/{}", f.locked_slug), form(&[("password", "locked password 1")]))
        }),
        c("get", "/assets/{name}", Anyone, Page, 200, |f, _| req(f.asset.clone(), Body::None)),
        // The link in a report: its token is checked before anything else, for everyone alike.
        c("get", "/unsubscribe/{id}/{token}", Anyone, Page, 404, |f, _| {
            req(format!("/unsubscribe/{}/00000000000000000000000000000000", f.report().1), Body::None)
        }),
        c("post", "/unsubscribe/{id}/{token}", Anyone, Page, 404, |f, _| {
            req(format!("/unsubscribe/{}/00000000000000000000000000000000", f.report().1), form(&[]))
        }),
        // The collector.
        c("post", "/api/event", SendEvents, Collector, 202, |_, _| {
            req("/api/event", Body::Json(json!({"n": "pageview", "u": format!("https://{SITE}/m"), "d": SITE})))
        }),
        c("post", "/api/events", SendEvents, Collector, 202, |_, _| {
            req("/api/events", Body::Json(json!([{"n": "pageview", "u": format!("https://{SITE}/m"), "d": SITE}])))
        }),
        c("get", "/collect", SendEvents, Collector, 200, |_, _| {
            req(format!("/collect?p=%2Fm&h=https%3A%2F%2F{SITE}&sid={SITE}"), Body::None)
        }),
        c("get", "/api/health", Anyone, Collector, 200, |_, _| req("/api/health", Body::None)),
        c("get", "/js/{file}", Anyone, Collector, 200, |_, _| req("/js/script.outbound-links.js", Body::None)),
        c("get", "/script.js", Anyone, Collector, 200, |_, _| req("/script.js", Body::None)),
        // Last: these end sessions (the callers sign in again after each).
        Case {
            ends_sessions: true,
            ..c("post", "/login", Anyone, Page, 303, |_, _| {
                req("/login", form(&[("email", "login@example.com"), ("password", "login password 1")]))
            })
        },
        Case { ends_sessions: true, ..c("post", "/logout", Anyone, Page, 303, |_, _| req("/logout", form(&[]))) },
        Case {
            ends_sessions: true,
            ..c("post", "/account/logout-everywhere", SignedIn, Page, 303, |_, _| {
                req("/account/logout-everywhere", form(&[]))
            })
        },
    ]
}

/// The status a caller the route refuses gets.
fn refused(who: Who, need: Need, style: Style) -> u16 {
    match style {
        Style::Api if matches!(who, Who::Anonymous | Who::LockedLink) => 401,
        Style::Api | Style::Collector => 403,
        Style::Page if !is_session(who) => 303,
        // A site the user has no role on is not revealed; adding sites is not about one.
        Style::Page if who == Who::NoRole && !matches!(need, Need::CreateSite) => 404,
        Style::Page => 403,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_every_kind_of_caller_as_the_permission_table_says() {
    // Every route the server has must be in the test's table.
    let cases = cases();
    let collector = plumb_collector::routes(&Default::default());
    let served: Vec<(&str, &str)> = plumb_web::routes()
        .into_iter()
        .map(|(m, p, _)| (m, p))
        .chain(collector.iter().map(|(m, p, _)| (*m, p.as_str())))
        .collect();
    let missing: Vec<_> =
        served.iter().filter(|(m, p)| !cases.iter().any(|c| c.method == *m && c.route == *p)).collect();
    assert!(missing.is_empty(), "routes without an expected answer in this test: {missing:?}");
    let stale: Vec<_> =
        cases.iter().filter(|c| !served.contains(&(c.method, c.route))).map(|c| (c.method, c.route)).collect();
    assert!(stale.is_empty(), "the server has no such routes: {stale:?}");

    let dir = temp_dir("permissions");
    assert!(add_user(&dir, "owner@example.com", "owner password 1").0);
    for name in ["norole", "viewer", "admin", "siteowner", "login", "extra"] {
        assert!(add_user(&dir, &format!("{name}@example.com"), &format!("{name} password 1")).0);
    }
    cli(&dir, &["site", "add", SITE]);
    cli(&dir, &["site", "add", "other.test"]);
    for (role, user) in [("viewer", "viewer"), ("admin", "admin"), ("owner", "siteowner")] {
        cli(&dir, &["member", "add", SITE, "--email", &format!("{user}@example.com"), "--role", role]);
    }
    let mut keys = HashMap::new();
    for (who, args) in [
        (Who::KeyRead, &["--scope", "stats:read"][..]),
        (Who::KeyAdmin, &["--scope", "sites:admin"][..]),
        (Who::KeyEvents, &["--scope", "events:write"][..]),
        (
            Who::KeyElsewhere,
            &["--scope", "stats:read", "--scope", "sites:admin", "--scope", "events:write", "--site", "other.test"][..],
        ),
    ] {
        keys.insert(who, create_key_with(&dir, &format!("{who:?}"), args));
    }
    let server = Server::start(&dir, &["--key-rate-limit", "1000000"]);
    let c = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .default_headers(browser_headers())
        .user_agent(BROWSER_UA)
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .unwrap();
    let (csrf, login_page) = csrf_cookie(&c, &server.url).await;
    let asset = login_page.split("\"/assets/").nth(1).unwrap().split('"').next().unwrap();
    let mut f = Fixture {
        asset: format!("/assets/{asset}"),
        server,
        dir,
        c,
        sessions: HashMap::new(),
        csrf,
        keys,
        public_slug: String::new(),
        locked_slug: String::new(),
        opened_cookie: String::new(),
        n: AtomicUsize::new(0),
    };
    f.sign_in().await;
    f.public_slug = f.new_link(None).await;
    f.locked_slug = f.new_link(Some("locked password 1")).await;
    let r = f
        .send(
            Who::Anonymous,
            Method::POST,
            &req(format!("/share/{}", f.locked_slug), form(&[("password", "locked password 1")])),
        )
        .await;
    f.opened_cookie = set_cookie(&r, "plumb_share").expect("the link's password opens it");

    let mut wrong = Vec::new();
    let mut checked = 0;
    for case in &cases {
        for who in EVERYONE {
            let mut r = (case.prepare)(&f, who);
            if case.route == "/sites/{domain}/shares/{slug}/delete" {
                r.path = format!("/sites/{SITE}/shares/{}/delete", f.new_link(None).await);
                r.body = form(&[]);
            }
            let method = Method::from_bytes(case.method.to_uppercase().as_bytes()).unwrap();
            let answer = f.send(who, method, &r).await;
            let status = answer.status().as_u16();
            let location = answer.headers().get("location").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
            let allowed = may(who, case.need)
                && (case.style != Style::Page || is_session(who) || matches!(case.need, Need::Anyone));
            let want = if allowed { (case.ok)(who) } else { refused(who, case.need, case.style) };
            // A page refused for want of a session sends the browser to sign in, and back after.
            let sent_to_sign_in = location.starts_with("/login?next=");
            let right = status == want && (allowed || case.style != Style::Page || is_session(who) || sent_to_sign_in);
            if !right {
                let body: String = answer.text().await.unwrap_or_default().chars().take(160).collect();
                wrong.push(format!(
                    "{} {} as {who:?}: got {status} {location}, expected {want} ({}): {body}",
                    case.method,
                    r.path,
                    if allowed { "allowed" } else { "refused" }
                ));
            }
            checked += 1;
            if case.ends_sessions {
                f.sign_in().await;
            }
        }
    }
    println!("{checked} requests over {} routes × {} kinds of caller", cases.len(), EVERYONE.len());
    assert!(wrong.is_empty(), "{} of {checked} answers differ:\n{}", wrong.len(), wrong.join("\n"));
}
