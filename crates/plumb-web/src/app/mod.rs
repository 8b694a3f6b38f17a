//! The dashboard web app: server-rendered pages with small plain JS modules, all embedded in the
//! binary. Pages read and change metadata directly; every number on a dashboard comes from the
//! public Stats API, called by the page's script with the session (or shared-link) cookie.
//!
//! Forms are protected against cross-site requests twice: a CSRF token (double-submit: a
//! `SameSite=Strict` cookie and the same value in the form) and a check that `Origin` and
//! `Sec-Fetch-Site`, when the browser sends them, name this site.

mod account;
mod assets;
mod dashboard;
mod export;

pub use export::plausible_zip;
mod html;
mod privacy;
mod sites;
mod unsubscribe;

pub use privacy::PrivacyFacts;

use crate::Web;
use crate::auth::{CSRF_COOKIE, cookie, signed_in};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use axum::{Extension, Router};
use html::{Page, esc};
use plumb_meta::accounts::{constant_time_eq, random_token};
use plumb_meta::permission::{Action, allowed, user_holders};
use plumb_meta::{MetaError, Role, Session, Site};
use std::collections::HashMap;
use std::sync::Arc;

type Handler = MethodRouter<Arc<Web>>;

/// The dashboard's routes: method, path, the action it needs (`plumb_meta::permission`) and the
/// handler, which receives that action with the request.
fn table() -> Vec<(&'static str, &'static str, Action, Handler)> {
    use Action::{Account, CreateSite, Manage, Own, Public, Read};
    vec![
        ("get", "/", Public, get(account::home)),
        ("get", "/setup", Public, get(account::setup_form)),
        ("post", "/setup", Public, post(account::setup)),
        ("get", "/login", Public, get(account::login_form)),
        ("post", "/login", Public, post(account::login)),
        ("get", "/login/2fa", Public, get(account::second_factor_form)),
        ("post", "/login/2fa", Public, post(account::second_factor)),
        ("post", "/logout", Public, post(account::logout)),
        ("get", "/account", Account, get(account::page)),
        ("post", "/account/logout-everywhere", Account, post(account::logout_everywhere)),
        ("post", "/account/2fa/start", Account, post(account::totp_start)),
        ("post", "/account/2fa/enable", Account, post(account::totp_enable)),
        ("post", "/account/2fa/disable", Account, post(account::totp_disable)),
        ("get", "/invite/{token}", Public, get(account::invite_form)),
        ("post", "/invite/{token}", Public, post(account::accept_invite)),
        ("get", "/sites", Account, get(sites::list)),
        ("get", "/sites/new", CreateSite, get(sites::new_form)),
        ("post", "/sites/new", CreateSite, post(sites::create)),
        ("get", "/sites/{domain}", Read, get(dashboard::page)),
        ("get", "/sites/{domain}/snippet", Manage, get(sites::snippet)),
        ("get", "/sites/{domain}/verify", Read, get(sites::verify)),
        ("get", "/sites/{domain}/settings", Manage, get(sites::settings)),
        ("post", "/sites/{domain}/settings", Manage, post(sites::update)),
        ("post", "/sites/{domain}/goals", Manage, post(sites::add_goal)),
        ("post", "/sites/{domain}/goals/{id}/delete", Manage, post(sites::remove_goal)),
        ("post", "/sites/{domain}/shares", Manage, post(sites::add_share)),
        ("post", "/sites/{domain}/shares/{slug}/delete", Manage, post(sites::remove_share)),
        ("post", "/sites/{domain}/invites", Manage, post(sites::invite)),
        ("post", "/sites/{domain}/firewall", Manage, post(sites::add_rule)),
        ("post", "/sites/{domain}/firewall/{id}/delete", Manage, post(sites::remove_rule)),
        ("post", "/sites/{domain}/members/{user_id}/delete", Own, post(sites::remove_member)),
        ("post", "/sites/{domain}/retention", Own, post(sites::set_retention)),
        ("post", "/sites/{domain}/delete", Own, post(sites::delete)),
        ("get", "/sites/{domain}/export.csv", Read, get(export::csv)),
        ("get", "/sites/{domain}/export.zip", Read, get(export::zip)),
        ("get", "/share/{slug}", Public, get(dashboard::share)),
        ("get", "/privacy/{domain}", Public, get(privacy::page)),
        ("post", "/share/{slug}", Public, post(dashboard::share_password)),
        ("get", "/assets/{name}", Public, get(assets::serve)),
        ("get", "/unsubscribe/{id}/{token}", Public, get(unsubscribe::form)),
        ("post", "/unsubscribe/{id}/{token}", Public, post(unsubscribe::unsubscribe)),
    ]
}

/// Method, path and action of every dashboard route.
pub fn routes() -> Vec<(&'static str, &'static str, Action)> {
    table().into_iter().map(|(m, p, a, _)| (m, p, a)).collect()
}

pub fn router(web: Arc<Web>) -> Router<Arc<Web>> {
    table()
        .into_iter()
        .fold(Router::new(), |r, (_, path, action, handler)| {
            let audited: Handler =
                handler.layer(axum::middleware::from_fn_with_state(web.clone(), crate::audit::layer));
            r.route(path, audited.layer(Extension(action)))
        })
        .layer(axum::middleware::map_response(security_headers))
}

/// Marks a response other sites may frame: a shared dashboard in embed mode.
#[derive(Clone, Copy)]
pub struct Framable;

/// Pages load nothing from elsewhere and run no inline script; only [`Framable`] ones may be
/// framed, by anyone.
async fn security_headers(mut r: Response) -> Response {
    let framable = r.extensions().get::<Framable>().is_some();
    let h = r.headers_mut();
    let csp = format!(
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; \
         frame-ancestors {}; form-action 'self'; base-uri 'none'",
        if framable { "*" } else { "'none'" }
    );
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_str(&csp).expect("ASCII"));
    if !framable {
        h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    h.entry(header::CACHE_CONTROL).or_insert(HeaderValue::from_static("no-store"));
    r
}

/// Password hashing and checking (Argon2id: tens of milliseconds of CPU and 19 MiB each) runs off
/// the async workers, at most `MAX_HASHES` at once, so a burst of sign-ins can neither stall other
/// requests nor exhaust memory; one that waits longer than `HASH_WAIT` for its turn gets `503`.
async fn hashing<T: Send + 'static>(web: &Web, work: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    let permit = tokio::time::timeout(crate::HASH_WAIT, web.hashing.clone().acquire_owned()).await;
    let Ok(Ok(permit)) = permit else {
        let mut r =
            error_page(StatusCode::SERVICE_UNAVAILABLE, "Busy", "Too many sign-ins at once. Try again shortly.");
        r.retry_after = Some(crate::HASH_WAIT.as_secs());
        return Err(r);
    };
    // The permit goes with the work: if the client leaves, the hash still counts until it ends.
    tokio::task::spawn_blocking(move || {
        let out = work();
        drop(permit);
        out
    })
    .await
    .map_err(internal)
}

/// One try at a secret (a password, a second factor, a shared link's password), counted before
/// it is checked: a token for the account and one for the client's network, taken at once, so
/// concurrent tries cannot outrun the limit. A right answer gives both back.
pub(super) struct Attempt<'a> {
    web: &'a Web,
    account: String,
    network: std::net::IpAddr,
}

impl<'a> Attempt<'a> {
    /// `429` with `Retry-After` when the account or the network has no tries left.
    fn take(web: &'a Web, account: String, client: std::net::IpAddr) -> Result<Attempt<'a>> {
        let network = plumb_core::net::limit_key(client);
        let wait = match web.login_limiter.take(&account) {
            Err(w) => Some(w),
            Ok(()) => web.address_limiter.take(&network).err().inspect(|_| web.login_limiter.give_back(&account, 1)),
        };
        match wait {
            None => Ok(Attempt { web, account, network }),
            Some(secs) => {
                let mut r = error_page(
                    StatusCode::TOO_MANY_REQUESTS,
                    "Too many attempts",
                    &format!("Too many failed attempts. Try again in {} minute(s).", secs.div_ceil(60)),
                );
                r.retry_after = Some(secs);
                Err(r)
            }
        }
    }

    /// The secret was right: the try does not count.
    fn succeeded(self) {
        self.web.login_limiter.give_back(&self.account, 1);
        self.web.address_limiter.give_back(&self.network, 1);
    }
}

/// The client's address (behind a trusted proxy, the one it forwards).
fn client(web: &Web, peer: &std::net::SocketAddr, headers: &HeaderMap) -> std::net::IpAddr {
    web.client_ip(Some(peer.ip()), headers)
}

/// Cookies go out with `Secure` when browsers reach Plumb over HTTPS (the public URL says so,
/// or the proxy in front says `X-Forwarded-Proto: https`).
fn secure(web: &Web, headers: &HeaderMap) -> bool {
    web.public_url.as_deref().is_some_and(|u| u.starts_with("https://"))
        || headers.get("x-forwarded-proto").is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"))
}

/// A `Set-Cookie` value: never readable from scripts, sent back only to this site.
/// `max_age_secs = 0` deletes it.
fn set_cookie(name: &str, value: &str, max_age_secs: Option<i64>, same_site: &str, secure: bool) -> String {
    let mut c = format!("{name}={value}; Path=/; HttpOnly; SameSite={same_site}");
    if let Some(age) = max_age_secs {
        c.push_str(&format!("; Max-Age={age}"));
    }
    if secure {
        c.push_str("; Secure");
    }
    c
}

/// An answer page, a redirect or an error, with the cookies it sets.
pub struct Reply {
    status: StatusCode,
    location: Option<String>,
    body: String,
    cookies: Vec<String>,
    retry_after: Option<u64>,
}

impl Reply {
    fn html(status: StatusCode, body: String) -> Self {
        Reply { status, location: None, body, cookies: vec![], retry_after: None }
    }

    fn redirect(to: &str) -> Self {
        Reply { location: Some(to.to_owned()), ..Self::html(StatusCode::SEE_OTHER, String::new()) }
    }

    fn cookie(mut self, c: String) -> Self {
        self.cookies.push(c);
        self
    }
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        let mut r = (self.status, axum::response::Html(self.body)).into_response();
        let h = r.headers_mut();
        if let Some(to) = self.location.and_then(|l| HeaderValue::from_str(&l).ok()) {
            h.insert(header::LOCATION, to);
        }
        for c in self.cookies {
            if let Ok(v) = HeaderValue::from_str(&c) {
                h.append(header::SET_COOKIE, v);
            }
        }
        if let Some(s) = self.retry_after {
            h.insert(header::RETRY_AFTER, s.into());
        }
        r
    }
}

type Result<T> = std::result::Result<T, Reply>;

/// The page every refusal and failure shows: a status, a title and what to do.
fn error_page(status: StatusCode, title: &str, message: &str) -> Reply {
    let body = format!(
        "<section class=\"card narrow\"><h1>{}</h1><p>{}</p><p><a href=\"/\">Back to Plumb</a></p></section>",
        esc(title),
        esc(message)
    );
    Reply::html(status, Page::new(title, body).render())
}

fn internal(e: impl std::fmt::Display) -> Reply {
    tracing::error!("dashboard request failed: {e}");
    error_page(StatusCode::INTERNAL_SERVER_ERROR, "Something went wrong", "The error was logged. Try again.")
}

fn meta_reply(e: MetaError) -> Reply {
    match e {
        MetaError::Invalid(m) => error_page(StatusCode::BAD_REQUEST, "That did not work", &m),
        MetaError::NotFound(w) => error_page(StatusCode::NOT_FOUND, "Not found", &format!("{w} not found")),
        e @ MetaError::Storage(_) => internal(e),
    }
}

/// The CSRF token of this browser, and the cookie to set when it is new.
pub struct Csrf {
    pub token: String,
    set: Option<String>,
}

impl Csrf {
    fn of(web: &Web, headers: &HeaderMap) -> Csrf {
        match cookie(headers, CSRF_COOKIE).filter(|t| t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit())) {
            Some(t) => Csrf { token: t.to_owned(), set: None },
            None => {
                let token = random_token::<32>();
                let set = set_cookie(CSRF_COOKIE, &token, None, "Strict", secure(web, headers));
                Csrf { token, set: Some(set) }
            }
        }
    }

    /// Adds the cookie to a reply if this token is new.
    fn apply(self, reply: Reply) -> Reply {
        match self.set {
            Some(c) => reply.cookie(c),
            None => reply,
        }
    }
}

/// The fields of a submitted form, after the cross-site checks: `403` if the request came from
/// another site or lacks this browser's CSRF token.
fn form(headers: &HeaderMap, body: &[u8]) -> Result<HashMap<String, String>> {
    let forged = || {
        error_page(
            StatusCode::FORBIDDEN,
            "Form refused",
            "This form came from another site, or its security token is missing or expired. \
             Reload the page and try again.",
        )
    };
    if headers.get("sec-fetch-site").is_some_and(|v| v == "cross-site") {
        return Err(forged());
    }
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or_default();
        let origin_host = origin.split_once("://").map(|(_, h)| h).unwrap_or(origin);
        if origin_host != host {
            return Err(forged());
        }
    }
    let fields: HashMap<String, String> = url::form_urlencoded::parse(body).into_owned().collect();
    let ok = match (fields.get("csrf"), cookie(headers, CSRF_COOKIE)) {
        (Some(sent), Some(kept)) => !kept.is_empty() && constant_time_eq(sent, kept),
        _ => false,
    };
    if ok { Ok(fields) } else { Err(forged()) }
}

fn field<'a>(f: &'a HashMap<String, String>, name: &str) -> &'a str {
    f.get(name).map(|s| s.trim()).unwrap_or_default()
}

/// The signed-in user, or a redirect to the sign-in page that comes back here afterwards.
fn user_session(web: &Web, headers: &HeaderMap, here: &str) -> Result<Session> {
    match signed_in(web, headers).map_err(|e| internal(e.message))? {
        Some(s) => Ok(s),
        None => Err(Reply::redirect(&format!("/login?next={}", url_escape(here)))),
    }
}

/// The site and the user's role on it, if the user may do `action` there: `404` if it does not
/// exist or the user has no role on it (so its existence is not revealed), `403` if the role does
/// not allow `action`.
fn site_access(web: &Web, s: &Session, domain: &str, action: Action) -> Result<(Site, Role)> {
    let not_found = || {
        error_page(
            StatusCode::NOT_FOUND,
            "Site not found",
            &format!("There is no site `{domain}` here that you can see."),
        )
    };
    let site = web.meta.site_by_domain(domain).map_err(internal)?.ok_or_else(not_found)?;
    let role = web.meta.role(s.user.id, site.id).map_err(internal)?.ok_or_else(not_found)?;
    if !allowed(action, &user_holders(Some(role), s.user.is_owner)) {
        let needed = action.holders().iter().find_map(|h| match h {
            plumb_meta::permission::Holder::Role(r) => Some(r.name()),
            _ => None,
        });
        return Err(error_page(
            StatusCode::FORBIDDEN,
            "Not allowed",
            &format!("This needs the {} role on {}; you are {}.", needed.unwrap_or("owner"), site.domain, role.name()),
        ));
    }
    crate::audit::note(site.id, format!("user `{}`", s.user.email));
    Ok((site, role))
}

/// Whether the signed-in user may add sites to this Plumb.
fn may_create_sites(s: &Session) -> bool {
    allowed(Action::CreateSite, &user_holders(None, s.user.is_owner))
}

/// Where browsers reach this Plumb: the configured public URL, else this request's host.
fn base_url(web: &Web, headers: &HeaderMap) -> String {
    if let Some(u) = &web.public_url {
        return u.clone();
    }
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("localhost");
    let scheme = if secure(web, headers) { "https" } else { "http" };
    format!("{scheme}://{host}")
}

fn url_escape(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Only paths on this site are followed after sign-in: a `/` and then no second `/` or `\\`, and
/// only visible ASCII (browsers drop tabs and line breaks from addresses, so `/\t/evil.example`
/// would become `//evil.example`, another site).
fn local_path(next: &str) -> &str {
    let visible = next.bytes().all(|b| b.is_ascii_graphic());
    let rest = next.strip_prefix('/');
    let safe = visible && rest.is_some_and(|r| !r.starts_with(['/', '\\'])) && !next.contains('\\');
    if safe { next } else { "/sites" }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths_are_followed() {
        for ok in ["/sites", "/sites/a.test?period=7d", "/"] {
            assert_eq!(local_path(ok), ok);
        }
        for bad in [
            "//evil.example",
            "/\\evil.example",
            "/\t/evil.example",
            "/\n/evil.example",
            "https://evil.example",
            "",
            "sites",
            "/ /x",
            "/%09/x\u{7f}",
        ] {
            assert_eq!(local_path(bad), "/sites", "{bad:?}");
        }
    }
}
