//! Who is calling and what they may do. The API accepts three kinds of caller:
//! - an API key (`Authorization: Bearer …`), limited by scopes and sites;
//! - a signed-in dashboard user (session cookie), limited by their role on each site; their
//!   state-changing calls must also carry the CSRF token (`X-Plumb-CSRF` header);
//! - a shared link (slug in `X-Plumb-Share` or `?share=`), read-only on its one site; a link with
//!   a password also needs the cookie its password form sets.
//!
//! What each may do is `plumb_meta::permission`'s table; the action a route needs is declared
//! once, in the route tables (`lib.rs`, `app/mod.rs`), and reaches the handler with the request.
//! Every caller is rate-limited: per key, per user, and per shared link and client address.

use crate::Web;
use crate::error::ApiError;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use plumb_meta::accounts::{constant_time_eq, sign};
use plumb_meta::permission::{Action, Holder, allowed, key_holders, user_holders};
use plumb_meta::{ApiKey, Session, SharedLink, Site};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

pub const SESSION_COOKIE: &str = "plumb_session";
pub const CSRF_COOKIE: &str = "plumb_csrf";
pub const SHARE_COOKIE: &str = "plumb_share";
pub const CSRF_HEADER: &str = "x-plumb-csrf";
pub const SHARE_HEADER: &str = "x-plumb-share";

/// The credentials a request carried, kept so a long-lived answer (an event stream) can check
/// them again.
#[derive(Clone)]
struct Credentials {
    key_secret: Option<String>,
    session_token: Option<String>,
    share: Option<(String, Option<String>)>,
}

/// Who a caller is, for rate limits and stream caps.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CallerId {
    Key(u32),
    User(u32),
    /// A shared link, per client network (see `plumb_core::net::limit_key`): one reader cannot
    /// use up a public link for everyone.
    Link(String, IpAddr),
}

/// A caller of the API. At least one of the three is set.
pub struct Caller {
    pub key: Option<ApiKey>,
    pub session: Option<Session>,
    pub share: Option<SharedLink>,
    /// What the route asks for.
    action: Action,
    /// The request carried the CSRF token matching its cookie.
    csrf_ok: bool,
    credentials: Credentials,
    /// Who this is, for rate limits and stream caps.
    pub id: Option<CallerId>,
}

impl FromRequestParts<Arc<Web>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, web: &Arc<Web>) -> Result<Self, ApiError> {
        let action = *parts.extensions.get::<Action>().ok_or_else(|| ApiError::internal("route without an action"))?;
        let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
        let ip = web.client_ip(peer, &parts.headers);
        let credentials = Credentials {
            key_secret: bearer(&parts.headers)?,
            session_token: cookie(&parts.headers, SESSION_COOKIE).map(str::to_owned),
            share: parts
                .headers
                .get(SHARE_HEADER)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
                .or_else(|| {
                    url::form_urlencoded::parse(parts.uri.query().unwrap_or_default().as_bytes())
                        .find(|(k, _)| k == "share")
                        .map(|(_, v)| v.into_owned())
                })
                .map(|slug| (slug, cookie(&parts.headers, SHARE_COOKIE).map(str::to_owned))),
        };
        let mut caller = Caller::resolve(web, credentials, action)?;
        caller.csrf_ok = csrf_header_ok(&parts.headers);
        let id = caller.identify(ip).ok_or_else(|| {
            ApiError::new(StatusCode::UNAUTHORIZED, "missing API key: send `Authorization: Bearer <key>`")
        })?;
        caller.id = Some(id.clone());
        web.caller_limiter.take(&id).map_err(|wait| {
            let limit = web.caller_limiter.capacity;
            ApiError::too_many(format!("{} is over its limit of {limit} requests per minute", caller.who()), wait)
        })?;
        Ok(caller)
    }
}

impl Caller {
    /// The caller the credentials stand for now (`401` for a key, link or session that is not
    /// valid). A key, when present, is the only credential looked at.
    fn resolve(web: &Web, credentials: Credentials, action: Action) -> Result<Caller, ApiError> {
        let mut caller = Caller {
            key: None,
            session: None,
            share: None,
            action,
            csrf_ok: false,
            credentials: credentials.clone(),
            id: None,
        };
        if let Some(secret) = &credentials.key_secret {
            let key = web
                .meta
                .verify_key(secret)?
                .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "API key is invalid or revoked"))?;
            caller.key = Some(key);
            return Ok(caller);
        }
        if let Some(token) = &credentials.session_token {
            caller.session = web.meta.session(token)?.filter(|s| !s.mfa_pending);
        }
        if let Some((slug, cookie)) = &credentials.share {
            caller.share = Some(open_share(web, cookie.as_deref(), slug)?);
        }
        Ok(caller)
    }

    /// The same credentials, checked again (`Err` once they no longer hold): a revoked key or
    /// link, an ended session.
    pub fn recheck(&self, web: &Web) -> Result<Caller, ApiError> {
        let mut again = Caller::resolve(web, self.credentials.clone(), self.action)?;
        if again.key.is_none() && again.session.is_none() && again.share.is_none() {
            return Err(ApiError::new(StatusCode::UNAUTHORIZED, "the session has ended"));
        }
        again.id = self.id.clone();
        Ok(again)
    }

    /// Who this is, for rate limits and stream caps; `None` without any credential.
    fn identify(&self, ip: IpAddr) -> Option<CallerId> {
        match (&self.key, &self.session, &self.share) {
            (Some(k), _, _) => Some(CallerId::Key(k.id)),
            (None, Some(s), _) => Some(CallerId::User(s.user.id)),
            (None, None, Some(l)) => Some(CallerId::Link(l.slug.clone(), plumb_core::net::limit_key(ip))),
            (None, None, None) => None,
        }
    }

    /// What the caller is on `site` (or on no site in particular).
    fn holders(&self, web: &Web, site: Option<&Site>) -> Result<Vec<Holder>, ApiError> {
        let mut out = vec![Holder::Anyone];
        if let Some(key) = &self.key {
            return Ok(key_holders(key, site.map(|s| s.id)));
        }
        if let Some(s) = &self.session {
            let role = match site {
                Some(site) => web.meta.role(s.user.id, site.id)?,
                None => None,
            };
            out = user_holders(role, s.user.is_owner);
        }
        if self.share.as_ref().is_some_and(|l| site.is_some_and(|site| l.site_id == site.id)) {
            out.push(Holder::Link);
        }
        Ok(out)
    }

    /// How messages name the caller.
    fn who(&self) -> String {
        match (&self.key, &self.session) {
            (Some(k), _) => format!("API key `{}`", k.name),
            (None, Some(s)) => format!("user `{}`", s.user.email),
            (None, None) => "this shared link".to_owned(),
        }
    }

    /// Whether only the shared link lets the caller read `site` (a key, or a user with a role,
    /// reads it in their own right).
    pub fn reads_by_link_only(&self, web: &Web, site: &Site) -> Result<bool, ApiError> {
        let mut holders = self.holders(web, Some(site))?;
        let by_link = holders.contains(&Holder::Link);
        holders.retain(|h| *h != Holder::Link);
        Ok(by_link && !allowed(Action::Read, &holders))
    }

    /// When only a shared link that hides small groups lets the caller read `site`: the fewest
    /// visitors a row must have.
    pub fn hidden_below(&self, web: &Web, site: &Site) -> Result<Option<u32>, ApiError> {
        let k = self.share.as_ref().map_or(0, |l| l.min_visitors);
        Ok(if k > 1 && self.reads_by_link_only(web, site)? { Some(k) } else { None })
    }

    /// The signed-in user making the request (not when a key speaks).
    pub fn user_id(&self) -> Option<u32> {
        self.session.as_ref().filter(|_| self.key.is_none()).map(|s| s.user.id)
    }

    /// Whether the caller may do `action` on `site`.
    pub fn allows(&self, web: &Web, action: Action, site: Option<&Site>) -> Result<bool, ApiError> {
        Ok(allowed(action, &self.holders(web, site)?))
    }

    /// `403` unless the caller may do what its route asks on `site`; a signed-in user's changes
    /// also need the CSRF token.
    pub fn authorize(&self, web: &Web, site: Option<&Site>) -> Result<(), ApiError> {
        self.authorize_as(web, self.action, site)
    }

    /// [`authorize`](Self::authorize) for an action beyond the route's (a rename is `own`).
    pub fn authorize_as(&self, web: &Web, action: Action, site: Option<&Site>) -> Result<(), ApiError> {
        if !self.allows(web, action, site)? {
            let on = site.map(|s| format!(" on `{}`", s.domain)).unwrap_or_default();
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!("{} lacks the `{}` permission{on} ({})", self.who(), action.name(), action.describe()),
            ));
        }
        let changes = !matches!(action, Action::Public | Action::Account | Action::Read);
        if self.key.is_none() && changes && !self.csrf_ok {
            return Err(ApiError::new(StatusCode::FORBIDDEN, "missing or wrong CSRF token (X-Plumb-CSRF header)"));
        }
        if let Some(site) = site {
            crate::audit::note(site.id, self.who());
        }
        Ok(())
    }
}

/// The secret of `Authorization: Bearer <key>`, if the header is there (`401` if malformed).
fn bearer(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(v) = headers.get(header::AUTHORIZATION) else { return Ok(None) };
    let secret = v
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "Authorization must be `Bearer <API key>`"))?;
    Ok(Some(secret.trim().to_owned()))
}

/// The value of one cookie of the request.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The signed-in user's session, if the cookie names one that has passed its second factor.
pub fn signed_in(web: &Web, headers: &HeaderMap) -> Result<Option<Session>, ApiError> {
    let Some(token) = cookie(headers, SESSION_COOKIE) else { return Ok(None) };
    let session = web.meta.session(token)?;
    Ok(session.filter(|s| !s.mfa_pending))
}

fn csrf_header_ok(headers: &HeaderMap) -> bool {
    let sent = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
    matches!((sent, cookie(headers, CSRF_COOKIE)), (Some(a), Some(b)) if !b.is_empty() && constant_time_eq(a, b))
}

/// What the share cookie holds once a link's password was given: the slug and a MAC over the
/// slug and the password's hash, so changing or removing the password voids it.
pub fn share_cookie_value(key: &[u8; 32], link: &SharedLink) -> String {
    let mac = sign(key, &format!("share:{}:{}", link.slug, link.password_hash.as_deref().unwrap_or_default()));
    format!("{}.{mac}", link.slug)
}

/// The shared link named by `slug`; one with a password needs the cookie its form set.
pub fn open_share(web: &Web, share_cookie: Option<&str>, slug: &str) -> Result<SharedLink, ApiError> {
    let link = web
        .meta
        .shared_link(slug)?
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "this shared link does not exist or was revoked"))?;
    if link.password_hash.is_some() {
        let want = share_cookie_value(&web.server_key, &link);
        if !share_cookie.is_some_and(|c| constant_time_eq(c, &want)) {
            return Err(ApiError::new(StatusCode::UNAUTHORIZED, "this shared link needs its password"));
        }
    }
    Ok(link)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_among_several() {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, "a=1; plumb_session=abc; plumb_csrf=t0k".parse().unwrap());
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("abc"));
        assert_eq!(cookie(&h, "missing"), None);
        h.insert(CSRF_HEADER, "t0k".parse().unwrap());
        assert!(csrf_header_ok(&h));
        h.insert(CSRF_HEADER, "t0K".parse().unwrap());
        assert!(!csrf_header_ok(&h));
    }
}
