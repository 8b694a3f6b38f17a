use crate::Web;
use crate::stats::ApiError;
use axum::http::{HeaderMap, StatusCode, header};
use plumb_meta::{ApiKey, Scope, Site};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

/// The API key named by `Authorization: Bearer <key>` (`401` if missing or unknown), counted
/// against its rate limit (`429` with `Retry-After` when over it).
pub fn require_key(web: &Web, headers: &HeaderMap) -> Result<ApiKey, ApiError> {
    let value = headers.get(header::AUTHORIZATION).ok_or_else(|| {
        ApiError::new(StatusCode::UNAUTHORIZED, "missing API key: send `Authorization: Bearer <key>`")
    })?;
    let secret = value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "Authorization must be `Bearer <API key>`"))?;
    let key = web
        .meta
        .verify_key(secret.trim())
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "API key is invalid or revoked"))?;
    web.limiter.take(key.id).map_err(|wait_secs| ApiError {
        retry_after_secs: Some(wait_secs),
        ..ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!("API key `{}` is over its limit of {} requests per minute", key.name, web.limiter.per_minute),
        )
    })?;
    Ok(key)
}

/// `403` unless the key has `scope` on `site`.
pub fn authorize(key: &ApiKey, scope: Scope, site: &Site) -> Result<(), ApiError> {
    if key.allows(scope, site.id) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!("API key `{}` lacks {} on `{}`", key.name, scope.name(), site.domain),
        ))
    }
}

/// Per-key token buckets: `per_minute` requests a minute, with bursts up to that many.
pub struct KeyLimiter {
    pub per_minute: u32,
    buckets: Mutex<HashMap<u32, (f64, Instant)>>,
}

impl KeyLimiter {
    pub fn new(per_minute: u32) -> Self {
        Self { per_minute: per_minute.max(1), buckets: Mutex::new(HashMap::new()) }
    }

    /// Takes one token, or says in how many seconds one will be there.
    pub fn take(&self, key_id: u32) -> Result<(), u64> {
        let capacity = self.per_minute as f64;
        let per_sec = capacity / 60.0;
        let mut buckets = self.buckets.lock().unwrap();
        let (tokens, at) = buckets.entry(key_id).or_insert((capacity, Instant::now()));
        *tokens = (*tokens + at.elapsed().as_secs_f64() * per_sec).min(capacity);
        *at = Instant::now();
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - *tokens) / per_sec).ceil() as u64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_refill_and_are_per_key() {
        let l = KeyLimiter::new(3);
        assert!(l.take(1).is_ok() && l.take(1).is_ok() && l.take(1).is_ok());
        // Three a minute: the next token comes in 20 s.
        assert_eq!(l.take(1), Err(20));
        assert!(l.take(2).is_ok());
    }
}
