//! Signing in and out, first-run set-up, two-factor authentication and invites.

use super::html::{Page, button_form, csrf_field, esc};
use super::{
    Attempt, Csrf, Reply, Result, client, error_page, field, form, hashing, internal, local_path, meta_reply, secure,
    set_cookie, user_session,
};
use crate::Web;
use crate::auth::{SESSION_COOKIE, cookie, signed_in};
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use plumb_meta::accounts::{SESSION_TTL_MS, totp};
use plumb_meta::{NewUser, Session, User};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

type Params = Query<HashMap<String, String>>;

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Set-up is open until this Plumb has its owner (invited users never become it).
fn no_owner(web: &Web) -> Result<bool> {
    Ok(!web.meta.list_users().map_err(internal)?.iter().any(|u| u.is_owner))
}

pub async fn home(State(web): State<Arc<Web>>, headers: HeaderMap) -> Reply {
    let to = match (no_owner(&web), signed_in(&web, &headers)) {
        (Err(e), _) => return e,
        (Ok(true), _) => "/setup",
        (_, Ok(Some(_))) => "/sites",
        _ => "/login",
    };
    Reply::redirect(to)
}

/// Signs the user in: a new session cookie (the old session, if any, ends: no fixation).
fn start_session(web: &Web, headers: &HeaderMap, user: &User, to: &str) -> Result<Reply> {
    if let Some(old) = cookie(headers, SESSION_COOKIE) {
        web.meta.end_session(old).map_err(internal)?;
    }
    let token = web.meta.create_session(user.id, user.totp_enabled).map_err(internal)?;
    let to = if user.totp_enabled { format!("/login/2fa?next={}", super::url_escape(to)) } else { to.to_owned() };
    let c = set_cookie(SESSION_COOKIE, &token, Some(SESSION_TTL_MS / 1000), "Lax", secure(web, headers));
    Ok(Reply::redirect(&to).cookie(c))
}

fn credentials_form(action: &str, csrf: &str, next: &str, button: &str, new_password: bool) -> String {
    let autocomplete = if new_password { "new-password" } else { "current-password" };
    format!(
        "<form method=\"post\" action=\"{action}\" class=\"stack\">{csrf}\
         <input type=\"hidden\" name=\"next\" value=\"{next}\">\
         <label>E-mail <input type=\"email\" name=\"email\" required autocomplete=\"username\" autofocus></label>\
         <label>Password <input type=\"password\" name=\"password\" required minlength=\"10\" \
         autocomplete=\"{autocomplete}\"></label>\
         <button type=\"submit\" class=\"primary\">{button}</button></form>",
        action = esc(action),
        csrf = csrf_field(csrf),
        next = esc(next),
    )
}

fn card(title: &str, intro: &str, inner: &str) -> String {
    format!("<section class=\"card narrow\"><h1>{}</h1>{intro}{inner}</section>", esc(title))
}

pub async fn setup_form(State(web): State<Arc<Web>>, headers: HeaderMap) -> Result<Reply> {
    if !no_owner(&web)? {
        return Ok(Reply::redirect("/login"));
    }
    let csrf = Csrf::of(&web, &headers);
    let body = card(
        "Welcome to Plumb",
        "<p>Create the owner account. It can see and manage every site of this Plumb.</p>",
        &credentials_form("/setup", &csrf.token, "/sites/new", "Create account", true),
    );
    Ok(csrf.apply(Reply::html(StatusCode::OK, Page::new("Set up", body).render())))
}

pub async fn setup(State(web): State<Arc<Web>>, headers: HeaderMap, body: Bytes) -> Result<Reply> {
    let f = form(&headers, &body)?;
    if !no_owner(&web)? {
        return Err(error_page(StatusCode::FORBIDDEN, "Already set up", "This Plumb has an owner; sign in."));
    }
    let (meta, email, password) = (web.meta.clone(), field(&f, "email").to_owned(), field(&f, "password").to_owned());
    let user =
        hashing(&web, move || meta.add_user(&email, &password, NewUser::OwnerIfNone)).await?.map_err(meta_reply)?;
    if !user.is_owner {
        // Two set-up forms sent at once: the other one made the owner.
        return Err(error_page(StatusCode::FORBIDDEN, "Already set up", "This Plumb has an owner; sign in."));
    }
    start_session(&web, &headers, &user, "/sites/new")
}

fn login_page(csrf: &str, next: &str, error: Option<&str>) -> String {
    let error = error.map(|e| format!("<p class=\"error\" role=\"alert\">{}</p>", esc(e))).unwrap_or_default();
    Page::new("Sign in", card("Sign in", &error, &credentials_form("/login", csrf, local_path(next), "Sign in", false)))
        .render()
}

pub async fn login_form(State(web): State<Arc<Web>>, headers: HeaderMap, Query(p): Params) -> Reply {
    match no_owner(&web) {
        Ok(true) => return Reply::redirect("/setup"),
        Err(e) => return e,
        Ok(false) => {}
    }
    let csrf = Csrf::of(&web, &headers);
    let next = p.get("next").map(String::as_str).unwrap_or("/sites");
    let page = login_page(&csrf.token, next, None);
    csrf.apply(Reply::html(StatusCode::OK, page))
}

pub async fn login(
    State(web): State<Arc<Web>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Reply> {
    let f = form(&headers, &body)?;
    let email = field(&f, "email").to_lowercase();
    let attempt = Attempt::take(&web, format!("login:{email}"), client(&web, &addr, &headers))?;
    let (meta, e, p) = (web.meta.clone(), email.clone(), field(&f, "password").to_owned());
    let user = hashing(&web, move || meta.check_password(&e, &p)).await?.map_err(internal)?;
    let Some(user) = user else {
        let csrf = cookie(&headers, super::CSRF_COOKIE).unwrap_or_default();
        let page = login_page(csrf, field(&f, "next"), Some("Wrong e-mail or password."));
        return Err(Reply::html(StatusCode::UNAUTHORIZED, page));
    };
    attempt.succeeded();
    start_session(&web, &headers, &user, local_path(field(&f, "next")))
}

/// The session that still owes its second factor.
fn pending_session(web: &Web, headers: &HeaderMap) -> Result<(String, Session)> {
    let token = cookie(headers, SESSION_COOKIE).unwrap_or_default().to_owned();
    match web.meta.session(&token).map_err(internal)? {
        Some(s) if s.mfa_pending => Ok((token, s)),
        Some(_) => Err(Reply::redirect("/sites")),
        None => Err(Reply::redirect("/login")),
    }
}

fn second_factor_page(csrf: &str, next: &str, error: Option<&str>) -> String {
    let error = error.map(|e| format!("<p class=\"error\" role=\"alert\">{}</p>", esc(e))).unwrap_or_default();
    let inner = format!(
        "<form method=\"post\" action=\"/login/2fa\" class=\"stack\">{}\
         <input type=\"hidden\" name=\"next\" value=\"{}\">\
         <label>Code from your authenticator app, or a recovery code \
         <input name=\"code\" required autocomplete=\"one-time-code\" inputmode=\"text\" autofocus></label>\
         <button type=\"submit\" class=\"primary\">Verify</button></form>",
        csrf_field(csrf),
        esc(local_path(next)),
    );
    Page::new("Two-factor authentication", card("Two-factor authentication", &error, &inner)).render()
}

pub async fn second_factor_form(State(web): State<Arc<Web>>, headers: HeaderMap, Query(p): Params) -> Reply {
    if let Err(r) = pending_session(&web, &headers) {
        return r;
    }
    let csrf = Csrf::of(&web, &headers);
    let page = second_factor_page(&csrf.token, p.get("next").map(String::as_str).unwrap_or("/sites"), None);
    csrf.apply(Reply::html(StatusCode::OK, page))
}

pub async fn second_factor(
    State(web): State<Arc<Web>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Reply> {
    let f = form(&headers, &body)?;
    let (token, session) = pending_session(&web, &headers)?;
    let attempt = Attempt::take(&web, format!("2fa:{}", session.user.id), client(&web, &addr, &headers))?;
    if !web.meta.check_second_factor(session.user.id, field(&f, "code"), now_ms()).map_err(internal)? {
        let csrf = cookie(&headers, super::CSRF_COOKIE).unwrap_or_default();
        let page = second_factor_page(csrf, field(&f, "next"), Some("That code is not valid."));
        return Err(Reply::html(StatusCode::UNAUTHORIZED, page));
    }
    attempt.succeeded();
    web.meta.complete_mfa(&token).map_err(internal)?;
    Ok(Reply::redirect(local_path(field(&f, "next"))))
}

fn clear_session(web: &Web, headers: &HeaderMap) -> Reply {
    Reply::redirect("/login").cookie(set_cookie(SESSION_COOKIE, "", Some(0), "Lax", secure(web, headers)))
}

pub async fn logout(State(web): State<Arc<Web>>, headers: HeaderMap, body: Bytes) -> Result<Reply> {
    form(&headers, &body)?;
    if let Some(token) = cookie(&headers, SESSION_COOKIE) {
        web.meta.end_session(token).map_err(internal)?;
    }
    Ok(clear_session(&web, &headers))
}

pub async fn logout_everywhere(State(web): State<Arc<Web>>, headers: HeaderMap, body: Bytes) -> Result<Reply> {
    form(&headers, &body)?;
    let s = user_session(&web, &headers, "/account")?;
    let n = web.meta.end_all_sessions(s.user.id).map_err(internal)?;
    tracing::info!("user {} ended {n} session(s)", s.user.email);
    Ok(clear_session(&web, &headers))
}

/// A form that changes two-factor authentication: it asks for the password again, so a
/// borrowed or stolen session cannot take over the second factor.
fn password_form(action: &str, csrf: &str, label: &str, button: &str, class: &str) -> String {
    format!(
        "<form method=\"post\" action=\"{action}\" class=\"stack\">{}\
         <label>{label} <input type=\"password\" name=\"password\" required autocomplete=\"current-password\"></label>\
         <button type=\"submit\" class=\"{class}\">{button}</button></form>",
        csrf_field(csrf)
    )
}

/// The account page; `extra` is what the last action has to show (a new key, recovery codes).
fn account_page(web: &Web, headers: &HeaderMap, s: &Session, extra: &str) -> Reply {
    let csrf = Csrf::of(web, headers);
    let t = &csrf.token;
    let two_factor = if s.user.totp_enabled {
        format!(
            "<p>Two-factor authentication is <strong>on</strong>.</p>{}{}",
            password_form(
                "/account/2fa/start",
                t,
                "Password, to set it up again (new key and recovery codes)",
                "Set up again",
                ""
            ),
            password_form("/account/2fa/disable", t, "Password, to turn it off", "Turn off", "danger"),
        )
    } else {
        format!(
            "<p>Two-factor authentication is off. With it on, signing in also asks for a code from an \
             authenticator app.</p>{}",
            password_form("/account/2fa/start", t, "Password", "Set up two-factor authentication", "primary")
        )
    };
    let body = format!(
        "<section class=\"card narrow\"><h1>Account</h1><p>Signed in as <strong>{email}</strong>{owner}.</p></section>\
         {extra}<section class=\"card narrow\"><h2>Two-factor authentication</h2>{two_factor}</section>\
         <section class=\"card narrow\"><h2>Sessions</h2><p>Sign out on every browser and device, this one included.</p>{everywhere}</section>",
        email = esc(&s.user.email),
        owner = if s.user.is_owner { " (owner of this Plumb)" } else { "" },
        everywhere = button_form("/account/logout-everywhere", t, "Log out everywhere", "danger"),
    );
    let page = Page::new("Account", body).user(&s.user, t).render();
    csrf.apply(Reply::html(StatusCode::OK, page))
}

pub async fn page(State(web): State<Arc<Web>>, headers: HeaderMap) -> Reply {
    match user_session(&web, &headers, "/account") {
        Ok(s) => account_page(&web, &headers, &s, ""),
        Err(r) => r,
    }
}

fn enrol_section(csrf: &str, secret: &[u8], email: &str, error: Option<&str>) -> String {
    let error = error.map(|e| format!("<p class=\"error\" role=\"alert\">{}</p>", esc(e))).unwrap_or_default();
    format!(
        "<section class=\"card narrow\" id=\"enrol\"><h2>Set up two-factor authentication</h2>{error}\
         <p>Add this key to your authenticator app (it may also accept the address below), then type the \
         6-digit code it shows.</p><p class=\"secret\"><code>{key}</code></p>\
         <details><summary>otpauth address</summary><code class=\"wrap\">{uri}</code></details>\
         <form method=\"post\" action=\"/account/2fa/enable\" class=\"stack\">{csrf}\
         <label>Code <input name=\"code\" required inputmode=\"numeric\" autocomplete=\"one-time-code\" \
         pattern=\"[0-9 ]{{6,7}}\"></label><button type=\"submit\" class=\"primary\">Turn on</button></form></section>",
        key = esc(&totp::base32(secret)),
        uri = esc(&totp::uri(secret, email)),
        csrf = csrf_field(csrf),
    )
}

/// The signed-in user, after they typed their password again (`401` if wrong; the try counts
/// against the sign-in limit).
async fn password_again(web: &Web, addr: &SocketAddr, headers: &HeaderMap, f: &Fields) -> Result<Session> {
    let s = user_session(web, headers, "/account")?;
    let attempt = Attempt::take(web, format!("login:{}", s.user.email), client(web, addr, headers))?;
    let (meta, e, p) = (web.meta.clone(), s.user.email.clone(), field(f, "password").to_owned());
    if hashing(web, move || meta.check_password(&e, &p)).await?.map_err(internal)?.is_none() {
        return Err(error_page(StatusCode::UNAUTHORIZED, "Wrong password", "Nothing was changed."));
    }
    attempt.succeeded();
    Ok(s)
}

type Fields = std::collections::HashMap<String, String>;

pub async fn totp_start(
    State(web): State<Arc<Web>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Reply> {
    let f = form(&headers, &body)?;
    let s = password_again(&web, &addr, &headers, &f).await?;
    let secret = web.meta.begin_totp(s.user.id).map_err(internal)?;
    Ok(account_page(&web, &headers, &s, &enrol_section(field(&f, "csrf"), &secret, &s.user.email, None)))
}

pub async fn totp_enable(State(web): State<Arc<Web>>, headers: HeaderMap, body: Bytes) -> Result<Reply> {
    let f = form(&headers, &body)?;
    let s = user_session(&web, &headers, "/account")?;
    match web.meta.enable_totp(s.user.id, field(&f, "code"), now_ms()) {
        Ok(codes) => {
            let list: String = codes.iter().map(|c| format!("<li><code>{}</code></li>", esc(c))).collect();
            let shown = format!(
                "<section class=\"card narrow\" id=\"recovery\"><h2>Recovery codes</h2><p>Two-factor \
                 authentication is on. Keep these codes somewhere safe: each signs you in once if you lose \
                 your device. They are shown only now.</p><ul class=\"codes\">{list}</ul></section>"
            );
            let s = Session { user: User { totp_enabled: true, ..s.user }, ..s };
            Ok(account_page(&web, &headers, &s, &shown))
        }
        Err(plumb_meta::MetaError::Invalid(m)) => {
            // The key being set up again, so the user can retry with the next code; a new one
            // needs the password.
            let section = match web.meta.pending_totp(s.user.id).map_err(internal)? {
                Some(secret) => enrol_section(field(&f, "csrf"), &secret, &s.user.email, Some(&m)),
                None => format!(
                    "<section class=\"card narrow\"><p class=\"error\" role=\"alert\">{}</p></section>",
                    esc(&m)
                ),
            };
            let mut r = account_page(&web, &headers, &s, &section);
            r.status = StatusCode::BAD_REQUEST;
            Ok(r)
        }
        Err(e) => Err(internal(e)),
    }
}

pub async fn totp_disable(
    State(web): State<Arc<Web>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Reply> {
    let f = form(&headers, &body)?;
    let s = password_again(&web, &addr, &headers, &f).await?;
    web.meta.disable_totp(s.user.id).map_err(internal)?;
    Ok(Reply::redirect("/account"))
}

fn invite_gone() -> Reply {
    error_page(StatusCode::NOT_FOUND, "Invite not valid", "This invite was used already or has expired.")
}

/// An invite is for one e-mail address: whoever holds the link signs in as that account, or
/// creates it. The page looks the same whether the account exists or not.
pub async fn invite_form(State(web): State<Arc<Web>>, headers: HeaderMap, Path(token): Path<String>) -> Result<Reply> {
    let invite = web.meta.invite(&token).map_err(internal)?.ok_or_else(invite_gone)?;
    let csrf = Csrf::of(&web, &headers);
    let intro = format!(
        "<p><strong>{}</strong> is invited to see <strong>{}</strong> as <strong>{}</strong>.</p>",
        esc(&invite.email),
        esc(&invite.site.domain),
        invite.role.name()
    );
    let action = format!("/invite/{token}");
    let inner = match signed_in(&web, &headers).map_err(|e| internal(e.message))? {
        Some(s) if s.user.email == invite.email => format!(
            "<p>You are signed in as {}.</p>{}",
            esc(&s.user.email),
            button_form(&action, &csrf.token, "Accept", "primary")
        ),
        Some(s) => format!(
            "<p>You are signed in as {}; this invite is for another address. Sign out, then open the \
             invite again.</p>",
            esc(&s.user.email)
        ),
        None => format!(
            "<form method=\"post\" action=\"{action}\" class=\"stack\">{}\
             <label>Password: the one of your account here, or a new one (10 characters or more) \
             <input type=\"password\" name=\"password\" required minlength=\"10\" autocomplete=\"current-password\" \
             autofocus></label><button type=\"submit\" class=\"primary\">Join</button></form>",
            csrf_field(&csrf.token)
        ),
    };
    let page = Page::new("Invite", card("Invite", &intro, &inner)).render();
    Ok(csrf.apply(Reply::html(StatusCode::OK, page)))
}

pub async fn accept_invite(
    State(web): State<Arc<Web>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(token): Path<String>,
    body: Bytes,
) -> Result<Reply> {
    let f = form(&headers, &body)?;
    let invite = web.meta.invite(&token).map_err(internal)?.ok_or_else(invite_gone)?;
    let to = format!("/sites/{}", invite.site.domain);
    if let Some(s) = signed_in(&web, &headers).map_err(|e| internal(e.message))? {
        web.meta.accept_invite(&token, s.user.id).map_err(meta_reply)?;
        return Ok(Reply::redirect(&to));
    }
    // Signed out: the password of the invited address's account, or a new account with it. A
    // wrong password counts against that account's sign-in limit.
    let attempt = Attempt::take(&web, format!("login:{}", invite.email), client(&web, &addr, &headers))?;
    let (meta, email, password) = (web.meta.clone(), invite.email.clone(), field(&f, "password").to_owned());
    let user = hashing(&web, move || meta.sign_in_or_join(&email, &password)).await?.map_err(meta_reply)?;
    let Some(user) = user else {
        let page = Page::new(
            "Invite",
            card(
                "Invite",
                "",
                "<p class=\"error\" role=\"alert\">That is not the password \
            of the account for this address.</p>",
            ),
        )
        .render();
        return Err(Reply::html(StatusCode::UNAUTHORIZED, page));
    };
    attempt.succeeded();
    web.meta.accept_invite(&token, user.id).map_err(meta_reply)?;
    // With a second factor, the invite is accepted and the session still owes the code.
    start_session(&web, &headers, &user, &to)
}
