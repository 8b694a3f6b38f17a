//! Who is calling and what they may do. The API accepts three kinds of caller:
//! - an API key (`Authorization: Bearer …`), limited by scopes and sites, rate-limited per key;
//! - a signed-in dashboard user (session cookie), limited by their role on each site; their
//!   state-changing calls must also carry the CSRF token (`X-Plumb-CSRF` header);
//! - a shared link (slug in `X-Plumb-Share` or `?share=`), read-only on its one site; a link with
//!   a password also needs the cookie its password form sets.

use crate::Web;
use crate::stats::ApiError;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use plumb_meta::accounts::{constant_time_eq, sign};
use plumb_meta::{ApiKey, Role, Scope, Session, SharedLink, Site};
use std::sync::Arc;

pub const SESSION_COOKIE: &str = "plumb_session";
pub const CSRF_COOKIE: &str = "plumb_csrf";
pub const SHARE_COOKIE: &str = "plumb_share";
pub const CSRF_HEADER: &str = "x-plumb-csrf";
pub const SHARE_HEADER: &str = "x-plumb-share";

/// A caller of the API. At least one of the three is set.
pub struct Caller {
    pub key: Option<ApiKey>,
    pub session: Option<Session>,
    pub share: Option<SharedLink>,
    /// The request carried the CSRF token matching its cookie.
    csrf_ok: bool,
}

impl FromRequestParts<Arc<Web>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, web: &Arc<Web>) -> Result<Self, ApiError> {
        let headers = &parts.headers;
        if headers.contains_key(header::AUTHORIZATION) {
            let key = require_key(web, headers)?;
            return Ok(Caller { key: Some(key), session: None, share: None, csrf_ok: false });
        }
        let session = signed_in(web, headers)?;
        let slug = headers.get(SHARE_HEADER).and_then(|v| v.to_str().ok()).map(str::to_owned).or_else(|| {
            url::form_urlencoded::parse(parts.uri.query().unwrap_or_default().as_bytes())
                .find(|(k, _)| k == "share")
                .map(|(_, v)| v.into_owned())
        });
        let share = match slug {
            Some(slug) => Some(open_share(web, headers, &slug)?),
            None => None,
        };
        if session.is_none() && share.is_none() {
            return Err(ApiError::new(StatusCode::UNAUTHORIZED, "missing API key: send `Authorization: Bearer <key>`"));
        }
        let csrf_ok = csrf_header_ok(headers);
        Ok(Caller { key: None, session, share, csrf_ok })
    }
}

impl Caller {
    /// A signed-in user, for queries the app runs on their behalf.
    pub fn user(session: Session) -> Caller {
        Caller { key: None, session: Some(session), share: None, csrf_ok: false }
    }

    /// Whether the caller may do `scope` on `site`.
    pub fn can(&self, web: &Web, scope: Scope, site: &Site) -> Result<bool, ApiError> {
        if let Some(key) = &self.key {
            return Ok(key.allows(scope, site.id));
        }
        if let Some(s) = &self.session {
            let role = web.meta.role(s.user.id, site.id).map_err(ApiError::internal)?;
            let allowed = match scope {
                Scope::StatsRead => role.is_some(),
                Scope::SitesAdmin => role >= Some(Role::Admin),
                Scope::EventsWrite => false,
            };
            if allowed {
                return Ok(true);
            }
        }
        Ok(scope == Scope::StatsRead && self.share.as_ref().is_some_and(|l| l.site_id == site.id))
    }

    /// `403` unless the caller may do `scope` on `site`; a signed-in user's writes also need the
    /// CSRF token.
    pub fn authorize(&self, web: &Web, scope: Scope, site: &Site) -> Result<(), ApiError> {
        if !self.can(web, scope, site)? {
            let who = match (&self.key, &self.session) {
                (Some(k), _) => format!("API key `{}`", k.name),
                (None, Some(s)) => format!("user `{}`", s.user.email),
                (None, None) => "this shared link".to_owned(),
            };
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!("{who} lacks {} on `{}`", scope.name(), site.domain),
            ));
        }
        if self.key.is_none() && scope == Scope::SitesAdmin && !self.csrf_ok {
            return Err(ApiError::new(StatusCode::FORBIDDEN, "missing or wrong CSRF token (X-Plumb-CSRF header)"));
        }
        Ok(())
    }
}

/// The API key named by `Authorization: Bearer <key>` (`401` if missing or unknown), counted
/// against its rate limit (`429` with `Retry-After` when over it).
fn require_key(web: &Web, headers: &HeaderMap) -> Result<ApiKey, ApiError> {
    let secret = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "Authorization must be `Bearer <API key>`"))?;
    let key = web
        .meta
        .verify_key(secret.trim())
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "API key is invalid or revoked"))?;
    web.key_limiter.take(&key.id).map_err(|wait_secs| ApiError {
        retry_after_secs: Some(wait_secs),
        ..ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!("API key `{}` is over its limit of {} requests per minute", key.name, web.key_limiter.capacity),
        )
    })?;
    Ok(key)
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
    let session = web.meta.session(token).map_err(ApiError::internal)?;
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
pub fn open_share(web: &Web, headers: &HeaderMap, slug: &str) -> Result<SharedLink, ApiError> {
    let link = web
        .meta
        .shared_link(slug)
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "this shared link does not exist or was revoked"))?;
    if link.password_hash.is_some() {
        let want = share_cookie_value(&web.server_key, &link);
        if !cookie(headers, SHARE_COOKIE).is_some_and(|c| constant_time_eq(c, &want)) {
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
