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
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Instant;

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

/// Token buckets per key: `capacity` requests, refilled evenly over `period_secs`.
pub struct RateLimiter<K> {
    pub capacity: u32,
    per_sec: f64,
    buckets: Mutex<HashMap<K, (f64, Instant)>>,
}

impl<K: Hash + Eq + Clone> RateLimiter<K> {
    pub fn new(capacity: u32, period_secs: u64) -> Self {
        let capacity = capacity.max(1);
        Self { capacity, per_sec: capacity as f64 / period_secs.max(1) as f64, buckets: Mutex::new(HashMap::new()) }
    }

    pub fn per_minute(n: u32) -> Self {
        Self::new(n, 60)
    }

    /// Takes one token, or says in how many seconds one will be there.
    pub fn take(&self, key: &K) -> Result<(), u64> {
        self.with_bucket(key, true)
    }

    /// Whether a token is there, without taking it.
    pub fn check(&self, key: &K) -> Result<(), u64> {
        self.with_bucket(key, false)
    }

    fn with_bucket(&self, key: &K, take: bool) -> Result<(), u64> {
        let capacity = self.capacity as f64;
        let mut buckets = self.buckets.lock().unwrap();
        // Full buckets carry no information: drop them now and then so the map stays small.
        if buckets.len() > 10_000 {
            let per_sec = self.per_sec;
            buckets.retain(|_, (t, at)| *t + at.elapsed().as_secs_f64() * per_sec < capacity);
        }
        let (tokens, at) = buckets.entry(key.clone()).or_insert((capacity, Instant::now()));
        *tokens = (*tokens + at.elapsed().as_secs_f64() * self.per_sec).min(capacity);
        *at = Instant::now();
        if *tokens >= 1.0 {
            if take {
                *tokens -= 1.0;
            }
            Ok(())
        } else {
            Err(((1.0 - *tokens) / self.per_sec).ceil() as u64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_refill_and_are_per_key() {
        let l = RateLimiter::per_minute(3);
        assert!(l.take(&1).is_ok() && l.take(&1).is_ok() && l.check(&1).is_ok() && l.take(&1).is_ok());
        // Three a minute: the next token comes in 20 s.
        assert_eq!(l.take(&1), Err(20));
        assert_eq!(l.check(&1), Err(20));
        assert!(l.take(&2).is_ok());
    }

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
